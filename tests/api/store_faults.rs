//! Store failures: nothing acknowledged unless stored, retries after a failure are stored exactly
//! once, the embedded store survives restarts.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn redis_down_gives_503_then_the_retry_is_stored_exactly_once() {
    let mut app = spawn_app(Backend::Redis).await;
    let first = webhook_with(vec![text_message("wamid.1", "919216598210", "before")]);
    assert_eq!(app.post_webhook(&first).await.status(), 200);

    app.redis().kill();
    let during = webhook_with(vec![
        text_message("wamid.2", "919216598210", "during"),
        text_message("wamid.3", "15550000001", "during"),
    ]);
    let started = Instant::now();
    let response = app.post_webhook(&during).await;
    assert_eq!(response.status(), 503, "Meta must retry");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fails fast, took {:?}",
        started.elapsed()
    );
    assert_eq!(
        response.json::<Value>().await.unwrap()["detail"],
        "storage is unavailable; retry later"
    );
    assert_eq!(app.get_status("/readyz").await, 503);

    app.redis().restart(); // no persistence configured: the restarted Redis is empty
    // Meta retries until acknowledged; the connection manager reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.post_webhook(&during).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no recovery within 10s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second retry of the same delivery is a duplicate.
    let again: Value = app.post_webhook(&during).await.json().await.unwrap();
    assert_eq!(again["duplicates"], 2);
    assert_eq!(app.ids_of("919216598210").await, ["wamid.2"]);
    assert_eq!(app.ids_of("15550000001").await, ["wamid.3"]);
    assert_eq!(app.get_status("/readyz").await, 200);
}

#[tokio::test]
async fn failed_sqlite_write_stores_nothing_and_the_retry_is_stored() {
    let app = spawn_app(Backend::Embedded).await;
    // Make the real database refuse one id, from a second connection, as a disk error would.
    let db = app.database();
    db.execute_batch(
        "CREATE TRIGGER fail_once BEFORE INSERT ON inbound_messages WHEN NEW.id = 'wamid.FAIL'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let body = webhook_with(vec![
        text_message("wamid.OK", "919216598210", "a"),
        text_message("wamid.FAIL", "919216598210", "b"),
    ]);
    assert_eq!(app.post_webhook(&body).await.status(), 503);
    assert!(
        app.ids_of("919216598210").await.is_empty(),
        "nothing partial"
    );

    db.execute_batch("DROP TRIGGER fail_once;").unwrap();
    let ack: Value = app.post_webhook(&body).await.json().await.unwrap();
    assert_eq!(
        (ack["stored"].as_u64(), ack["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(app.ids_of("919216598210").await, ["wamid.OK", "wamid.FAIL"]);
}

#[tokio::test]
async fn embedded_store_survives_a_restart_and_still_deduplicates() {
    let mut app = spawn_app(Backend::Embedded).await;
    let body = webhook_with(vec![text_message("wamid.P1", "919216598210", "kept")]);
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    app.restart().await;
    assert_eq!(app.ids_of("919216598210").await, ["wamid.P1"]);
    let retry: Value = app.post_webhook(&body).await.json().await.unwrap();
    assert_eq!(retry["duplicates"], 1);
    assert_eq!(app.ids_of("919216598210").await, ["wamid.P1"]);
}

#[tokio::test]
async fn redis_records_are_the_dedupe_markers_and_never_expire() {
    let app = spawn_app(Backend::Redis).await;
    app.post_webhook(&webhook_with(vec![text_message(
        "wamid.T",
        "919216598210",
        "x",
    )]))
    .await;
    let mut conn = app.redis_connection().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg("test:msg:wamid.T")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "kept like the list");
    let score: f64 = redis::cmd("ZSCORE")
        .arg("test:convs")
        .arg(format!("{PHONE_NUMBER_ID}:919216598210"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(score, 1757936743.0);
}
