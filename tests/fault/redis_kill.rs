//! 1. Redis SIGKILLed during ingest and restarted on the same AOF: every id stored exactly once,
//!    none abandoned. Full: 20,000 unique webhooks over 200 numbers with 5% duplicate sends, kill
//!    at 5 s, restart 3 s later. CI: 3,000 over 50 numbers, kill at 1 s, restart 1 s later.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Gateway, TestRedis};
use crate::sim::{MetaSimulator, assert_exactly_once, deliveries, senders, stored_counts};
use crate::{gateway_env, scaled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_mid_ingest_loses_and_doubles_nothing() {
    let _serial = crate::serial().await;
    crate::quiet_disk();
    let count = scaled(20_000, 3_000);
    let numbers = scaled(200, 50);
    let kill_at = Duration::from_secs(scaled(5, 1) as u64);
    let down_for = Duration::from_secs(scaled(3, 1) as u64);

    let redis = Arc::new(Mutex::new(TestRedis::start_aof()));
    let url = redis.lock().unwrap().url();
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(&gateway_env(&[("REDIS_URL", &url)]), dir.path());
    gateway.wait_ready().await;

    let work = deliveries("rk", count, numbers, 5);
    let all_senders = senders(&work);
    let expected = work.iter().map(|d| d.id.clone()).collect();
    // Paced so the kill lands mid-ingest: 10 s of traffic (CI: 2 s).
    let sim = MetaSimulator::new(&gateway.url("")).with_rate(scaled(2_000, 1_500) as f64);
    let chaos = {
        let redis = redis.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(kill_at);
            redis.lock().unwrap().kill();
            std::thread::sleep(down_for);
            redis.lock().unwrap().restart(); // same port, same AOF
        })
    };
    let report = sim.run(work, 32, Duration::from_secs(60)).await;
    chaos.await.unwrap();

    println!(
        "redis kill: {} unique ids, {} attempts, failures by status {:?}, abandoned {}",
        report.acked.len(),
        report.attempts,
        report.failures,
        report.abandoned.len()
    );
    assert!(
        report.abandoned.is_empty(),
        "{} deliveries abandoned",
        report.abandoned.len()
    );
    assert!(
        report.failures.values().sum::<usize>() > 0,
        "the kill happened during ingest"
    );
    let counts = stored_counts(&gateway.url(""), all_senders).await;
    assert_exactly_once(&counts, &expected);
}
