//! Readiness that tells the truth (issue 6): `/readyz` follows the last write (a real save or the
//! probe's write), an evicting Redis is refused, a deleted SQLite file is detected (503, rescue
//! copy), and `/readyz` does not queue behind large reads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const A: &str = "919216598210";

async fn post(app: &TestApp, body: &str) -> (u16, Value) {
    let response = app.post_webhook(body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn reason(body: &Value) -> &str {
    body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {body}"))
}

/// Redis out of memory (`noeviction`): webhooks 503, `/readyz` 503 with the reason, then
/// recovery once memory is freed. (`/readyz` used to PING, which works while every write fails.)
#[tokio::test]
async fn redis_out_of_memory_is_not_ready_until_memory_is_freed() {
    let redis = TestRedis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "noeviction",
    ]);
    let app = spawn_app_on_redis(redis, |_| {}).await;
    assert_eq!(app.readyz().await.0, 200);
    let client = app.redis.as_ref().unwrap().client();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Fill until even small writes fail (big values first, then smaller ones, so that freeing a
    // big value's query buffer does not leave room for a probe's write).
    let mut filled = 0;
    for size in [64 * 1024, 4 * 1024, 256, 16] {
        let filler = "x".repeat(size);
        loop {
            let set: redis::RedisResult<()> = redis::cmd("SET")
                .arg(format!("fill:{filled}"))
                .arg(&filler)
                .query_async(&mut conn)
                .await;
            match set {
                Ok(()) => filled += 1,
                Err(e) => {
                    assert!(e.to_string().contains("OOM"), "{e}");
                    break;
                }
            }
            assert!(filled < 200_000, "never ran out of memory");
        }
    }
    // Filled to the brim, used memory still moves by a few KB (query buffers, the script cache):
    // lower the limit well below it, so every write is refused whatever the small changes.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1mb")
        .query_async(&mut conn)
        .await
        .unwrap();
    let body = webhook_with(vec![text_message("wamid.OOM", A, "x")]);
    assert_eq!(post(&app, &body).await.0, 503);
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["store"], "redis");
    assert!(reason(&ready).contains("OOM"), "{ready}");
    // Still not ready a few probes later: the probe's own write fails too.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.readyz().await.0, 503);

    for i in 0..filled {
        let _: () = redis::cmd("DEL")
            .arg(format!("fill:{i}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("2mb")
        .query_async(&mut conn)
        .await
        .unwrap();
    app.wait_readyz(200, Duration::from_secs(5)).await;
    assert_eq!(post(&app, &body).await.1["stored"], 1);
    assert_eq!(app.ids_of(A).await, ["wamid.OOM"]);
}

/// Every write of the embedded store failing (triggers stand in for a failing disk): not ready,
/// with the cause; ready again once writes succeed.
#[tokio::test]
async fn embedded_write_failures_make_it_not_ready() {
    let app = spawn_app(Backend::Embedded).await;
    assert_eq!(app.readyz().await.0, 200);
    let db = app.database();
    db.execute_batch(
        "CREATE TRIGGER no_messages BEFORE INSERT ON inbound_messages
             BEGIN SELECT RAISE(ABORT, 'injected disk failure'); END;
         CREATE TRIGGER no_probe_insert BEFORE INSERT ON health
             BEGIN SELECT RAISE(ABORT, 'injected disk failure'); END;
         CREATE TRIGGER no_probe_update BEFORE UPDATE ON health
             BEGIN SELECT RAISE(ABORT, 'injected disk failure'); END;",
    )
    .unwrap();
    let body = webhook_with(vec![text_message("wamid.DISK", A, "x")]);
    assert_eq!(post(&app, &body).await.0, 503);
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert!(reason(&ready).contains("injected disk failure"), "{ready}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.readyz().await.0, 503, "the probe's writes fail too");

    db.execute_batch(
        "DROP TRIGGER no_messages; DROP TRIGGER no_probe_insert; DROP TRIGGER no_probe_update;",
    )
    .unwrap();
    app.wait_readyz(200, Duration::from_secs(5)).await;
    assert_eq!(post(&app, &body).await.1["stored"], 1);
}

/// maxmemory-policy switched to an evicting one at runtime: writes are refused within a few probe
/// intervals, with the fix in the detail; switching back makes the store ready again.
#[tokio::test]
async fn redis_switched_to_eviction_at_runtime_refuses_writes() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg("allkeys-lru"),
        )
        .await;
    let body = webhook_with(vec![text_message("wamid.EV", A, "x")]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let (status, answer) = post(&app, &body).await;
        if status == 503 {
            break answer;
        }
        assert!(Instant::now() < deadline, "still accepted: {answer}");
        // Accepted before the probe noticed: make the next attempt a new message.
        let _: () = redis
            .query(redis::cmd("DEL").arg("test:seen:wamid.EV"))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detail = answer["detail"].as_str().unwrap();
    assert!(detail.contains("allkeys-lru"), "{detail}");
    assert!(
        detail.contains("CONFIG SET maxmemory-policy noeviction"),
        "{detail}"
    );
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503);
    assert!(reason(&ready).contains("allkeys-lru"), "{ready}");

    let _: () = redis
        .query(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg("noeviction"),
        )
        .await;
    app.wait_readyz(200, Duration::from_secs(5)).await;
    assert_eq!(post(&app, &body).await.0, 200);
}

#[tokio::test]
async fn evicting_redis_is_accepted_with_the_explicit_override() {
    let redis = TestRedis::start_with(&["--save", "", "--maxmemory-policy", "allkeys-lru"]);
    let app = spawn_app_on_redis(redis, |vars| {
        vars.insert("REDIS_ALLOW_EVICTION".into(), "true".into());
    })
    .await;
    assert_eq!(app.readyz().await.0, 200);
    let (status, answer) = post(&app, &webhook_with(vec![text_message("wamid.OV", A, "x")])).await;
    assert_eq!((status, &answer["stored"]), (200, &json!(1)));
}

/// The binary refuses to start on an evicting Redis and says why and how to fix it.
#[tokio::test]
async fn the_binary_refuses_to_start_on_an_evicting_redis() {
    let redis = TestRedis::start_with(&["--save", "", "--maxmemory-policy", "allkeys-lru"]);
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [("REDIS_URL", redis.url()), ("LOG_FORMAT", "json".into())]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let mut gateway = Gateway::spawn(&vars, dir.path());
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "{status}");
    let output = gateway.output();
    assert!(output.contains("allkeys-lru"), "{output}");
    assert!(output.contains("maxmemory-policy noeviction"), "{output}");
}

/// The SQLite file deleted under the running service: the next webhook is 503 (not 200),
/// readiness fails with the reason, and a rescue copy holds everything acknowledged before.
#[tokio::test]
async fn deleted_sqlite_file_is_detected_refused_and_rescued() {
    let app = spawn_app(Backend::Embedded).await;
    let acknowledged = numbered_messages("kept", A, 0, 10);
    assert_eq!(post(&app, &webhook_with(acknowledged)).await.0, 200);
    std::fs::remove_file(app.data_path().join("whatsapp-gateway.sqlite3")).unwrap();

    let (status, answer) = post(
        &app,
        &webhook_with(vec![text_message("wamid.AFTER", A, "x")]),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("deleted"),
        "{answer}"
    );
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503);
    assert!(reason(&ready).contains("was deleted"), "{ready}");
    assert!(reason(&ready).contains("rescued"), "{ready}");
    // It stays refused (a later probe does not make it ready again).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.readyz().await.0, 503);
    assert_eq!(
        post(
            &app,
            &webhook_with(vec![text_message("wamid.LATER", A, "y")])
        )
        .await
        .0,
        503
    );

    let rescued: Vec<_> = std::fs::read_dir(app.data_path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("whatsapp-gateway.rescued-") && name.ends_with(".sqlite3")
        })
        .collect();
    assert_eq!(rescued.len(), 1, "{rescued:?}");
    let db = rusqlite::Connection::open(&rescued[0]).unwrap();
    let mut stmt = db
        .prepare("SELECT id FROM inbound_messages WHERE number = ?1 ORDER BY seq")
        .unwrap();
    let ids: Vec<String> = stmt
        .query_map([A], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("kept{i}")).collect();
    assert_eq!(ids[..10], expected[..]);
    assert!(reason(&ready).contains(&rescued[0].display().to_string()));
}

/// The probe alone notices a deleted file, without any webhook.
#[tokio::test]
async fn deleted_sqlite_file_fails_readiness_without_traffic() {
    let app = spawn_app(Backend::Embedded).await;
    assert_eq!(app.readyz().await.0, 200);
    std::fs::remove_file(app.data_path().join("whatsapp-gateway.sqlite3")).unwrap();
    let ready = app.wait_readyz(503, Duration::from_secs(3)).await;
    assert!(reason(&ready).contains("was deleted"), "{ready}");
}

/// `/readyz` answers from memory: 16 concurrent reads of a large list on the embedded store do not
/// delay it (it used to wait for the single reader connection, then fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_stays_fast_while_large_reads_run_on_the_embedded_store() {
    const STORED: usize = 20_000;
    let app = spawn_app(Backend::Embedded).await;
    for batch in 0..STORED / 250 {
        let messages = numbered_messages("r", A, batch * 250, 250);
        assert_eq!(post(&app, &webhook_with(messages)).await.0, 200);
    }
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let http = app.http.clone();
            let url = app.url("/get");
            tokio::spawn(async move {
                let body = http
                    .post(url)
                    .json(&json!({"number": A}))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                body.starts_with(format!(r#"{{"count":{STORED},"messages":["#).as_bytes())
                    && body.ends_with(b"]}")
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut polls = 0;
    while !readers.iter().all(|r| r.is_finished()) {
        let started = Instant::now();
        let (status, ready) = app.readyz().await;
        assert_eq!(status, 200, "{ready}");
        slowest = slowest.max(started.elapsed());
        polls += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for reader in readers {
        assert!(reader.await.unwrap(), "a complete answer");
    }
    assert!(polls >= 3, "the reads ended before readiness was polled");
    assert!(
        slowest < Duration::from_millis(500),
        "slowest /readyz {slowest:?} while {polls} polls ran beside the reads"
    );
}
