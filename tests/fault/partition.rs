//! 4. Network partition between the gateway and Redis (through [`ChaosProxy`]): only 5xx while
//!    partitioned, no request hangs beyond its timeout, 200 again within 2 s of healing, and
//!    Meta's retries then store everything exactly once. Full: 5 s partition; CI: 2 s.

use std::time::{Duration, Instant};

use crate::helpers::{Gateway, TestRedis};
use crate::proxy::ChaosProxy;
use crate::sim::{Delivery, MetaSimulator, assert_exactly_once, stored_counts};
use crate::{gateway_env, scaled};

/// REDIS_TIMEOUT_MS in this test.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_gives_prompt_5xx_and_recovers_within_2s() {
    let _serial = crate::serial().await;
    let redis = TestRedis::start();
    let proxy = ChaosProxy::start(redis.port).await;
    let data = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}/0", proxy.port);
    let mut gateway = Gateway::spawn(
        &gateway_env(&[("REDIS_URL", &url), ("REDIS_TIMEOUT_MS", "500")]),
        data.path(),
    );
    gateway.wait_ready().await;
    let sim = MetaSimulator::new(&gateway.url("")).without_retries();

    let partition_for = Duration::from_secs(scaled(5, 2) as u64);
    let start = Instant::now();
    let partition_at = Duration::from_millis(800);
    let heal_at = partition_at + partition_for;
    let end_at = heal_at + Duration::from_secs(3);
    // (start offset, end offset, status, id) of every attempt; 4 concurrent streams of webhooks.
    let mut streams = Vec::new();
    for stream in 0..4 {
        let sim = sim.clone();
        streams.push(tokio::spawn(async move {
            let mut log = Vec::new();
            let mut i = 0;
            while start.elapsed() < end_at {
                let delivery = Delivery::new(
                    format!("wamid.part.{stream}.{i}"),
                    format!("155500000{stream:02}"),
                );
                let began = start.elapsed();
                let status = sim.post(&delivery.body).await.unwrap_or(0);
                log.push((began, start.elapsed(), status, delivery));
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            log
        }));
    }
    tokio::time::sleep(partition_at).await;
    proxy.partition();
    tokio::time::sleep(partition_for).await;
    proxy.heal();
    let mut log = Vec::new();
    for s in streams {
        log.extend(s.await.unwrap());
    }

    let within_partition: Vec<_> = log
        .iter()
        .filter(|(b, e, _, _)| *b >= partition_at && *e <= heal_at)
        .collect();
    let acked_in_partition = within_partition
        .iter()
        .filter(|(_, _, s, _)| *s == 200)
        .count();
    let slowest = log.iter().map(|(b, e, _, _)| *e - *b).max().unwrap();
    let first_ok_after_heal = log
        .iter()
        .filter(|(b, _, s, _)| *b >= heal_at && *s == 200)
        .map(|(_, e, _, _)| *e)
        .min();
    let statuses: std::collections::BTreeMap<u16, usize> =
        log.iter().fold(Default::default(), |mut m, (_, _, s, _)| {
            *m.entry(*s).or_default() += 1;
            m
        });
    println!(
        "partition: {} attempts {statuses:?}; {} inside the partition, {acked_in_partition} acked there; slowest {slowest:?}; first 200 after heal at +{:?}",
        log.len(),
        within_partition.len(),
        first_ok_after_heal.map(|t| t - heal_at)
    );
    assert!(
        within_partition.len() >= 4,
        "traffic ran during the partition"
    );
    assert_eq!(
        acked_in_partition, 0,
        "nothing may be acknowledged while Redis is unreachable"
    );
    assert!(
        within_partition
            .iter()
            .all(|(_, _, s, _)| (500..600).contains(s)),
        "only 5xx during the partition"
    );
    assert!(
        slowest <= REDIS_TIMEOUT * 3,
        "a request took {slowest:?}, more than its timeout allows"
    );
    let recovered = first_ok_after_heal.expect("no 200 after healing") - heal_at;
    assert!(
        recovered <= Duration::from_secs(2),
        "recovery took {recovered:?}"
    );

    // Meta retries everything not acknowledged; then every id is stored exactly once.
    let failed: Vec<Delivery> = log
        .iter()
        .filter(|(_, _, s, _)| *s != 200)
        .map(|(_, _, _, d)| d.clone())
        .collect();
    let retry = MetaSimulator::new(&gateway.url(""))
        .run(failed, 8, Duration::from_secs(20))
        .await;
    assert!(retry.abandoned.is_empty());
    let expected = log.iter().map(|(_, _, _, d)| d.id.clone()).collect();
    let counts = stored_counts(&gateway.url(""), (0..4).map(|s| format!("155500000{s:02}"))).await;
    assert_exactly_once(&counts, &expected);
}
