//! 9. Durability with `appendfsync everysec`: acknowledged-but-lost ids after SIGKILL of Redis,
//!    measured over 5 runs (CI: 2). Redis writes the AOF (to the OS) before it replies, and
//!    `everysec` only delays the fsync, so killing the *process* loses nothing acknowledged on a
//!    disk that keeps up; an OS crash or power loss can lose up to the last second, and while an
//!    fsync is still running Redis may postpone its write by up to 2 s and answer anyway (see
//!    README, Operations, and [`crate::quiet_disk`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Gateway, TestRedis};
use crate::sim::{MetaSimulator, deliveries, senders, stored_counts};
use crate::{gateway_env, scaled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everysec_loses_no_acknowledged_message_when_redis_is_killed() {
    let _serial = crate::serial().await;
    crate::quiet_disk();
    let runs = scaled(5, 2);
    let mut lost_per_run = Vec::new();
    for run in 0..runs {
        let redis = Arc::new(Mutex::new(TestRedis::start_aof()));
        let url = redis.lock().unwrap().url();
        let dir = tempfile::tempdir().unwrap();
        let mut gateway = Gateway::spawn(&gateway_env(&[("REDIS_URL", &url)]), dir.path());
        gateway.wait_ready().await;
        let work = deliveries(&format!("dur{run}"), scaled(5_000, 2_000), 20, 0);
        let all_senders = senders(&work);
        // One attempt per delivery: we measure what was acknowledged, not what retries recover.
        let sim = MetaSimulator::new(&gateway.url(""))
            .without_retries()
            .with_rate(2_000.0);
        let killer = {
            let redis = redis.clone();
            tokio::task::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(300 + 150 * run as u64));
                redis.lock().unwrap().kill();
            })
        };
        let report = sim.run(work, 32, Duration::from_secs(30)).await;
        killer.await.unwrap();
        tokio::task::spawn_blocking({
            let redis = redis.clone();
            move || redis.lock().unwrap().restart()
        })
        .await
        .unwrap();
        gateway.wait_ready().await;
        let counts = stored_counts(&gateway.url(""), all_senders).await;
        let lost = report
            .acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .count();
        let doubled = counts.values().filter(|n| **n > 1).count();
        println!(
            "durability run {run}: acknowledged {}, refused {}, lost {lost}, doubled {doubled}",
            report.acked.len(),
            report.abandoned.len()
        );
        assert!(
            !report.abandoned.is_empty(),
            "the kill happened during ingest"
        );
        assert_eq!(doubled, 0);
        lost_per_run.push(lost);
    }
    println!(
        "durability (appendfsync everysec, SIGKILL of redis-server): lost per run {lost_per_run:?}"
    );
    assert!(
        lost_per_run.iter().all(|l| *l == 0),
        "acknowledged messages lost: {lost_per_run:?}"
    );
}
