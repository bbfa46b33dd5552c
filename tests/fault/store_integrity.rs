//! Store integrity under Meta's retries (issue 6, sections 2 and 5), against the real binary:
//!
//! 1. A key of the wrong type at one number's list while webhooks flow, removed 1 s later: every
//!    id stored exactly once, none abandoned (the old script swallowed the retries as duplicates).
//! 2. A save command failing part-way through the script (ZADD disabled, as `ZADD GT` on Redis
//!    < 6.2), then Redis restarted without it on the same AOF: every id stored exactly once.
//! 3. The SQLite file deleted mid-ingest: every id acknowledged with 200 is in the rescue copy,
//!    nothing is acknowledged after the deletion is noticed, and `/readyz` is 503.
//!
//! Full: 5,000 deliveries over 20 numbers; CI: 1,000.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{AOF_EVERYSEC as AOF, Gateway, TestRedis};
use crate::sim::{
    MetaSimulator, SimReport, assert_exactly_once, deliveries, senders, stored_counts,
};
use crate::{gateway_env, scaled};

/// The verdict of a fault run under Meta's retries: the fault was hit (some 503s), no delivery
/// was abandoned, and every id is stored exactly once.
async fn assert_every_id_stored_once(
    label: &str,
    report: &SimReport,
    base_url: &str,
    all_senders: Vec<String>,
    expected: &std::collections::HashSet<String>,
) {
    println!(
        "{label}: {} ids, {} attempts, failures {:?}",
        report.acked.len(),
        report.attempts,
        report.failures
    );
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
    assert!(
        report.failures.get(&503).copied().unwrap_or(0) > 0,
        "{label}: the fault was never hit"
    );
    let counts = stored_counts(base_url, all_senders).await;
    assert_exactly_once(&counts, expected);
}

fn redis_query<T: redis::FromRedisValue>(redis: &TestRedis, cmd: &mut redis::Cmd) -> T {
    let mut conn = redis.client().get_connection().unwrap();
    cmd.query(&mut conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_key_during_ingest_loses_and_doubles_nothing() {
    let _serial = crate::serial().await;
    let count = scaled(5_000, 1_000);
    let redis = TestRedis::start_aof();
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(&gateway_env(&[("REDIS_URL", &redis.url())]), dir.path());
    gateway.wait_ready().await;

    let work = deliveries("wt", count, 20, 5);
    let poisoned = format!("whatsapp:inbound:list:{}", work[0].from);
    let _: () = redis_query(&redis, redis::cmd("SET").arg(&poisoned).arg("not a list"));
    let all_senders = senders(&work);
    let expected = work.iter().map(|d| d.id.clone()).collect();
    let sim = MetaSimulator::new(&gateway.url("")).with_rate(scaled(2_000, 1_000) as f64);
    let url = redis.url();
    let fix = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(1));
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("DEL").arg(poisoned).query(&mut conn).unwrap();
    });
    let report = sim.run(work, 32, Duration::from_secs(60)).await;
    fix.await.unwrap();
    assert_every_id_stored_once(
        "wrong-type key",
        &report,
        &gateway.url(""),
        all_senders,
        &expected,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_failing_mid_script_then_fixed_loses_and_doubles_nothing() {
    let _serial = crate::serial().await;
    let count = scaled(5_000, 1_000);
    let mut without_zadd = AOF.to_vec();
    without_zadd.extend(["--rename-command", "ZADD", ""]);
    let redis = TestRedis::start_with(&without_zadd);
    let work = deliveries("mid", count, 20, 5);
    // Half the numbers are already indexed with a later time, so their messages need no ZADD and
    // are written completely, while the others fail at ZADD: batches fail part-way.
    for (i, number) in senders(&work).iter().enumerate() {
        if i % 2 == 0 {
            let _: f64 = redis_query(
                &redis,
                redis::cmd("ZINCRBY")
                    .arg("whatsapp:conversations")
                    .arg(9_999_999_999u64)
                    .arg(number),
            );
        }
    }
    let redis = Arc::new(Mutex::new(redis));
    let url = redis.lock().unwrap().url();
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(&gateway_env(&[("REDIS_URL", &url)]), dir.path());
    gateway.wait_ready().await;
    let all_senders = senders(&work);
    let expected = work.iter().map(|d| d.id.clone()).collect();
    let sim = MetaSimulator::new(&gateway.url("")).with_rate(scaled(2_000, 1_000) as f64);
    let fix = {
        let redis = redis.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_secs(1));
            let mut redis = redis.lock().unwrap();
            redis.set_args(&AOF);
            redis.restart(); // same port, same AOF, ZADD back
        })
    };
    let report = sim.run(work, 32, Duration::from_secs(60)).await;
    fix.await.unwrap();
    assert_every_id_stored_once(
        "mid-script failure",
        &report,
        &gateway.url(""),
        all_senders,
        &expected,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_sqlite_file_acknowledges_nothing_that_is_not_rescued() {
    let _serial = crate::serial().await;
    let count = scaled(5_000, 1_000);
    let data = tempfile::tempdir().unwrap();
    let db_path = data.path().join("whatsapp-gateway.sqlite3");
    let mut gateway = Gateway::spawn(
        &gateway_env(&[("DATA_DIR", data.path().to_str().unwrap())]),
        data.path(),
    );
    gateway.wait_ready().await;
    let work = deliveries("del", count, 20, 0);
    // Paced over ~2 s; the file goes at 0.5 s; retries give up after 4 s.
    let sim = MetaSimulator::new(&gateway.url("")).with_rate(count as f64 / 2.0);
    let delete = {
        let db_path = db_path.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::remove_file(db_path).unwrap();
        })
    };
    let report = sim.run(work, 32, Duration::from_secs(4)).await;
    delete.await.unwrap();

    let ready = reqwest::get(gateway.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let rescued: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("whatsapp-gateway.rescued-"))
        .collect();
    assert_eq!(rescued.len(), 1, "{rescued:?}");
    let db = rusqlite::Connection::open(&rescued[0]).unwrap();
    let mut stmt = db.prepare("SELECT id FROM inbound_messages").unwrap();
    let in_rescue: std::collections::HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let lost: Vec<&String> = report
        .acked
        .iter()
        .filter(|id| !in_rescue.contains(*id))
        .collect();
    println!(
        "deleted file: {} acknowledged, {} in the rescue copy, {} abandoned, failures {:?}",
        report.acked.len(),
        in_rescue.len(),
        report.abandoned.len(),
        report.failures
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged ids not in the rescue copy, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        !report.abandoned.is_empty(),
        "the deletion happened during ingest (later deliveries must not be acknowledged)"
    );
    assert!(
        gateway.output().contains("database_file_missing"),
        "{}",
        gateway.output()
    );
}
