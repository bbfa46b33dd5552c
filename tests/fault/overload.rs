//! 5. Overload: 2,000 concurrent connections (CI: 600) each posting one webhook against
//!    CONCURRENCY_LIMIT=64 while Redis answers slowly (200 ms added by the proxy). Excess requests
//!    get 503 quickly, RSS stays bounded, and every acknowledged message is stored.

use std::time::{Duration, Instant};

use crate::helpers::{Gateway, TestRedis};
use crate::proxy::ChaosProxy;
use crate::sim::{Delivery, MetaSimulator, assert_exactly_once, stored_counts};
use crate::{gateway_env, peak_rss_kib, scaled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_fast_503s_and_nothing_acknowledged_is_lost() {
    let _serial = crate::serial().await;
    let connections = scaled(2_000, 600);
    let redis = TestRedis::start();
    let proxy = ChaosProxy::start(redis.port).await;
    proxy.set_latency(Duration::from_millis(200));
    let data = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}/0", proxy.port);
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("REDIS_URL", &url),
            ("CONCURRENCY_LIMIT", "64"),
            ("REDIS_TIMEOUT_MS", "5000"),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let sim = MetaSimulator::new(&gateway.url("")).without_retries();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(connections));
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let sim = sim.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let delivery =
                    Delivery::new(format!("wamid.ovl.{i}"), format!("15550{:05}", i % 50));
                barrier.wait().await;
                let began = Instant::now();
                let status = sim.post(&delivery.body).await.unwrap_or(0);
                (status, began.elapsed(), delivery.id)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let rss_mib = peak_rss_kib(gateway.child.id()) as f64 / 1024.0;
    let mut shed: Vec<Duration> = results.iter().filter(|r| r.0 == 503).map(|r| r.1).collect();
    shed.sort();
    let acked: std::collections::HashSet<String> = results
        .iter()
        .filter(|r| r.0 == 200)
        .map(|r| r.2.clone())
        .collect();
    let other = results.iter().filter(|r| r.0 != 200 && r.0 != 503).count();
    let p99 = shed
        .get(shed.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "overload: {connections} connections, {} acked, {} shed (p99 {p99:?}), {other} other, peak RSS {rss_mib:.1} MiB",
        acked.len(),
        shed.len()
    );
    assert!(shed.len() >= connections / 2, "most of the excess is shed");
    assert!(!acked.is_empty(), "admitted requests still succeed");
    assert_eq!(other, 0, "only 200 or 503");
    // Shedding costs no Redis round trip; it is queueing for the accept loop and the CPU only.
    assert!(
        p99 < Duration::from_millis(1000),
        "503s must be fast, p99 {p99:?}"
    );
    assert!(rss_mib < 64.0, "peak RSS {rss_mib:.1} MiB");
    proxy.set_latency(Duration::ZERO);
    let counts = stored_counts(&gateway.url(""), (0..50).map(|n| format!("15550{n:05}"))).await;
    assert_exactly_once(&counts, &acked);
}
