//! 2. The gateway SIGKILLed under load and restarted on the same port, on both stores: every
//!    acknowledged id is present, none twice, and Meta's retries get everything in. Full: 20,000
//!    webhooks; CI: 2,000.

use std::time::Duration;

use crate::helpers::{Gateway, TestRedis, free_port};
use crate::sim::{MetaSimulator, assert_exactly_once, deliveries, senders, stored_counts};
use crate::{gateway_env, scaled};

async fn kill_gateway_under_load(vars: std::collections::HashMap<String, String>) {
    let count = scaled(20_000, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut gateway = Gateway::spawn_on(port, &vars, dir.path());
    gateway.wait_ready().await;

    let work = deliveries("pk", count, 20, 5);
    let all_senders = senders(&work);
    let expected = work.iter().map(|d| d.id.clone()).collect();
    // Paced so the kill lands mid-load: 10 s of traffic (CI: 2 s).
    let sim = MetaSimulator::new(&gateway.url("")).with_rate(scaled(2_000, 1_000) as f64);
    let run = tokio::spawn({
        let sim = sim.clone();
        async move { sim.run(work, 32, Duration::from_secs(60)).await }
    });
    tokio::time::sleep(Duration::from_millis(scaled(3000, 400) as u64)).await;
    gateway.signal("KILL");
    gateway.wait_exit(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut restarted = Gateway::spawn_on(port, &vars, dir.path());
    restarted.wait_ready().await;
    let report = run.await.unwrap();

    println!(
        "gateway kill: acked {}, failures {:?}, abandoned {}",
        report.acked.len(),
        report.failures,
        report.abandoned.len()
    );
    assert!(
        report.failures.values().sum::<usize>() > 0,
        "the kill happened during the load"
    );
    assert!(report.abandoned.is_empty());
    let counts = stored_counts(&restarted.url(""), all_senders).await;
    assert_exactly_once(&counts, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigkill_on_redis_loses_nothing_acknowledged() {
    let _serial = crate::serial().await;
    let redis = TestRedis::start_aof();
    kill_gateway_under_load(gateway_env(&[("REDIS_URL", &redis.url())])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigkill_on_embedded_store_loses_nothing_acknowledged() {
    let _serial = crate::serial().await;
    let data = tempfile::tempdir().unwrap();
    kill_gateway_under_load(gateway_env(&[("DATA_DIR", data.path().to_str().unwrap())])).await;
}
