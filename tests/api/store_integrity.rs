//! No acknowledged message lost, no acknowledgement of a failed write (issue 6, section 2): the
//! Redis save script checks before writing and writes markers last, ids reused by another sender
//! are counted, big deliveries are written in bounded chunks, and the embedded store migrates a
//! database of the previous release.

use serde_json::{Value, json};

use crate::contract_tests;
use crate::helpers::*;

contract_tests!(id_reused_by_another_sender_is_not_stored_but_counted);

const A: &str = "919216598210";
const B: &str = "15550000002";

fn list(number: &str) -> String {
    format!("test:inbound:list:{number}")
}

async fn exists(redis: &TestRedis, key: &str) -> bool {
    redis.query::<i64>(redis::cmd("EXISTS").arg(key)).await == 1
}

async fn ack(app: &TestApp, body: &str) -> (u16, Value) {
    let response = app.post_webhook(body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A key of the wrong type at a number's list: the old script had already written the marker of
/// the message it failed on, so every retry was a "duplicate" and the message was never stored.
#[tokio::test]
async fn wrong_type_list_key_is_503_with_nothing_stored_and_the_retry_is_stored_once() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg(list(B)).arg("not a list"))
        .await;
    let body = webhook_with(vec![
        text_message("wamid.A1", A, "first"),
        text_message("wamid.B1", B, "second"),
    ]);
    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["detail"], "storage is unavailable; retry later");
    // Nothing of the delivery: no list entry, no marker, no index entry.
    assert!(app.ids_of(A).await.is_empty());
    for key in [
        "test:seen:wamid.A1",
        "test:seen:wamid.B1",
        "test:conversations",
    ] {
        assert!(!exists(redis, key).await, "{key} was written");
    }

    let _: () = redis.query(redis::cmd("DEL").arg(list(B))).await;
    let (status, answer) = ack(&app, &body).await;
    assert_eq!((status, &answer["stored"]), (200, &json!(2)), "{answer}");
    let (_, again) = ack(&app, &body).await;
    assert_eq!(again["duplicates"], 2);
    assert_eq!(app.ids_of(A).await, ["wamid.A1"]);
    assert_eq!(app.ids_of(B).await, ["wamid.B1"]);
}

#[tokio::test]
async fn wrong_type_conversations_key_is_503_with_nothing_stored_and_the_retry_is_stored_once() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg("test:convs").arg("oops"))
        .await;
    let body = webhook_with(vec![text_message("wamid.C1", A, "x")]);
    assert_eq!(ack(&app, &body).await.0, 503);
    assert!(app.ids_of(A).await.is_empty(), "nothing appended");
    assert!(!exists(redis, "test:msg:wamid.C1").await, "no record");
    assert!(
        !exists(redis, &format!("test:conv:{PHONE_NUMBER_ID}:{A}")).await,
        "the conversation is restored (it did not exist)"
    );
    assert!(
        !exists(redis, &format!("test:cmsgs:{PHONE_NUMBER_ID}:{A}")).await,
        "no index entry"
    );
    let events: i64 = redis.query(redis::cmd("XLEN").arg("test:events")).await;
    assert_eq!(events, 0, "the chunk's events are deleted again");

    let _: () = redis.query(redis::cmd("DEL").arg("test:convs")).await;
    assert_eq!(ack(&app, &body).await.1["stored"], 1);
    assert_eq!(ack(&app, &body).await.1["duplicates"], 1);
    assert_eq!(app.ids_of(A).await, ["wamid.C1"]);
}

/// A failed chunk restores an existing conversation hash exactly, fields it did not have
/// included: here one written by the previous release, without `last_inbound_id`, which the
/// failed chunk had set before the conversations zset refused its write.
#[tokio::test]
async fn a_failed_chunk_restores_a_previous_releases_conversation_exactly() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let conv = format!("test:conv:{PHONE_NUMBER_ID}:{A}");
    let first = webhook_with(vec![text_message("wamid.R1", A, "first")]);
    assert_eq!(ack(&app, &first).await.1["stored"], 1);
    let removed: i64 = redis
        .query(redis::cmd("HDEL").arg(&conv).arg("last_inbound_id"))
        .await;
    assert_eq!(removed, 1, "this release keeps the id");
    let before: std::collections::BTreeMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(&conv)).await;
    let _: () = redis.query(redis::cmd("DEL").arg("test:convs")).await;
    let _: () = redis
        .query(redis::cmd("SET").arg("test:convs").arg("oops"))
        .await;
    let mut newer = text_message("wamid.R2", A, "second");
    newer["timestamp"] = "1757936800".into();
    let second = webhook_with(vec![newer]);
    assert_eq!(ack(&app, &second).await.0, 503);
    let after: std::collections::BTreeMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(&conv)).await;
    assert_eq!(
        after, before,
        "the conversation is restored field for field"
    );
    assert_eq!(app.ids_of(A).await, ["wamid.R1"]);

    let _: () = redis.query(redis::cmd("DEL").arg("test:convs")).await;
    assert_eq!(ack(&app, &second).await.1["stored"], 1);
    let latest: Option<String> = redis
        .query(redis::cmd("HGET").arg(&conv).arg("last_inbound_id"))
        .await;
    assert_eq!(latest.as_deref(), Some("\"wamid.R2\""));
}

/// A contact can tell Meta things before their first message: a marketing preference, a call
/// (both kept on the conversation hash). A failed first chunk takes back only the conversation
/// fields it wrote and keeps those; the retry then shows them.
#[tokio::test]
async fn a_failed_first_chunk_keeps_what_the_contact_told_before_their_first_message() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let conv = format!("test:conv:{PHONE_NUMBER_ID}:{A}");
    let call_at = now_secs() - 3600;
    // As the notice script writes them (README, Storage).
    let _: () = redis
        .query(
            redis::cmd("HSET")
                .arg(&conv)
                .arg("marketing")
                .arg(r#"1731705721 {"value":"stop","timestamp":1731705721}"#)
                .arg("last_call_at")
                .arg(call_at),
        )
        .await;
    let before: std::collections::BTreeMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(&conv)).await;
    let _: () = redis
        .query(redis::cmd("SET").arg("test:convs").arg("oops"))
        .await;
    let mut old = text_message("wamid.F1", A, "first");
    old["timestamp"] = (now_secs() - 2 * 86_400).to_string().into();
    let body = webhook_with(vec![old]);
    assert_eq!(ack(&app, &body).await.0, 503);
    let after: std::collections::BTreeMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(&conv)).await;
    assert_eq!(after, before, "the hash keeps the preference and the call");

    let _: () = redis.query(redis::cmd("DEL").arg("test:convs")).await;
    assert_eq!(ack(&app, &body).await.1["stored"], 1);
    let list = app.get_json("/v1/conversations").await;
    let conversation = &list["conversations"][0];
    assert_eq!(
        conversation["contact"]["preferences"]["marketing_messages"]["value"], "stop",
        "{conversation}"
    );
    assert_eq!(
        conversation["window_expires_at"],
        call_at + 86_400,
        "the window is the call's, not the two-day-old message's: {conversation}"
    );
}

/// A failure *after* the script's first writes: ZADD disabled, as a command failing on this
/// server (e.g. `ZADD GT` on Redis < 6.2). The first message's list entry is written, then its
/// index entry fails: the append is popped again, and nothing of the chunk stays (no list entry,
/// no record, no event). After a restart on the same data without the rename, the retry stores
/// both exactly once.
#[tokio::test]
async fn a_failure_after_the_first_writes_is_503_and_the_retry_after_a_restart_stores_each_message_once()
 {
    let persistent = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ];
    let mut without_zadd = persistent.to_vec();
    without_zadd.extend(["--rename-command", "ZADD", ""]);
    let redis = TestRedis::start_with(&without_zadd);
    let mut app = spawn_app_on_redis(redis, |_| {}).await;
    let redis = app.redis.as_ref().unwrap();
    let body = webhook_with(vec![
        text_message("wamid.Z1", A, "indexed already"),
        text_message("wamid.Z2", B, "needs ZADD"),
    ]);
    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 503, "{answer}");
    // The index fails after the first append: it is undone; nothing of the chunk, no record.
    assert!(app.ids_of(A).await.is_empty(), "no list entry for A");
    assert!(!exists(redis, "test:msg:wamid.Z1").await, "no record");
    assert!(!exists(redis, "test:msg:wamid.Z2").await, "no record");
    assert!(!exists(redis, &list(B)).await, "no list entry");
    let events: i64 = redis.query(redis::cmd("XLEN").arg("test:events")).await;
    assert_eq!(events, 0, "no event");

    app.redis().set_args(&persistent);
    app.redis().restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let answer = loop {
        let (status, answer) = ack(&app, &body).await;
        if status == 200 {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        (&answer["stored"], &answer["duplicates"]),
        (&json!(2), &json!(0))
    );
    assert_eq!(app.ids_of(A).await, ["wamid.Z1"]);
    assert_eq!(app.ids_of(B).await, ["wamid.Z2"]);
    let redis = app.redis.as_ref().unwrap();
    let score: f64 = redis
        .query(
            redis::cmd("ZSCORE")
                .arg("test:convs")
                .arg(format!("{PHONE_NUMBER_ID}:{B}")),
        )
        .await;
    assert_eq!(score, 1757936743.0);
}

/// A key of another type at a previous-release marker's name (written by hand, say): it reads as
/// no marker, so the message is stored, once; a retry is then a duplicate (through its record).
/// (The first script's `SET NX` took the existing key for a marker: 200, and the message was
/// never stored.)
#[tokio::test]
async fn a_key_of_another_type_at_a_markers_name_does_not_swallow_the_message() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(redis::cmd("RPUSH").arg("test:seen:wamid.M2").arg("x"))
        .await;
    let body = webhook_with(vec![
        text_message("wamid.M1", A, "one"),
        text_message("wamid.M2", A, "two"),
    ]);
    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 2, "{answer}");
    assert_eq!(app.ids_of(A).await, ["wamid.M1", "wamid.M2"]);
    let owner: String = redis
        .query(
            redis::cmd("HGET")
                .arg("test:msg:wamid.M2")
                .arg(format!("{PHONE_NUMBER_ID}:from")),
        )
        .await;
    assert_eq!(owner, A, "the record names the sender");
    let (_, again) = ack(&app, &body).await;
    assert_eq!(again["duplicates"], 2);
    assert_eq!(app.ids_of(A).await, ["wamid.M1", "wamid.M2"]);
}

/// Markers written by the previous release hold "1": still duplicates, not conflicts.
#[tokio::test]
async fn markers_of_the_previous_release_still_deduplicate() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg("test:seen:wamid.OLD").arg("1"))
        .await;
    let (status, answer) = ack(
        &app,
        &webhook_with(vec![text_message("wamid.OLD", B, "retried")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&answer["stored"], &answer["duplicates"]),
        (&json!(0), &json!(1))
    );
    assert!(app.ids_of(B).await.is_empty());
    assert_eq!(
        app.metric("whatsapp_gateway_messages_id_conflict_total")
            .await,
        0.0
    );
    // New messages write no marker: their record is the marker.
    app.post_webhook(&webhook_with(vec![text_message("wamid.NEW", B, "x")]))
        .await;
    assert!(!exists(redis, "test:seen:wamid.NEW").await);
    let owner: String = redis
        .query(
            redis::cmd("HGET")
                .arg("test:msg:wamid.NEW")
                .arg(format!("{PHONE_NUMBER_ID}:from")),
        )
        .await;
    assert_eq!(owner, B);
}

/// A key of another type at a record's name fails the chunk before any write (503 naming the
/// key); once it is removed, the retry is stored once.
#[tokio::test]
async fn a_key_of_another_type_at_a_records_name_is_503_and_stores_nothing() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg("test:msg:wamid.R2").arg("x"))
        .await;
    let body = webhook_with(vec![
        text_message("wamid.R1", A, "one"),
        text_message("wamid.R2", A, "two"),
    ]);
    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(app.ids_of(A).await.is_empty());
    assert!(!exists(redis, "test:msg:wamid.R1").await);
    let _: () = redis
        .query(redis::cmd("DEL").arg("test:msg:wamid.R2"))
        .await;
    assert_eq!(ack(&app, &body).await.1["stored"], 2);
    assert_eq!(ack(&app, &body).await.1["duplicates"], 2);
    assert_eq!(app.ids_of(A).await, ["wamid.R1", "wamid.R2"]);
}

/// A key of another type at a caller's conversation: the calls notice's script fails on its
/// reads, before any write (503: no event, no marker, no call time); once the key is removed,
/// the retry is stored once and a repeat is a duplicate.
#[tokio::test]
async fn a_key_of_another_type_at_a_callers_conversation_is_503_and_stores_nothing() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let conv = format!("test:conv:{PHONE_NUMBER_ID}:{A}");
    let _: () = redis.query(redis::cmd("SET").arg(&conv).arg("x")).await;
    let body = calls_webhook(A, now_secs() - 5, "USER_INITIATED");
    let events = async || -> i64 { redis.query(redis::cmd("XLEN").arg("test:events")).await };
    let markers =
        async || -> Vec<String> { redis.query(redis::cmd("KEYS").arg("test:notice:*")).await };

    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(events().await, 0, "no event");
    assert!(markers().await.is_empty(), "no marker");

    let _: () = redis.query(redis::cmd("DEL").arg(&conv)).await;
    assert_eq!(ack(&app, &body).await.0, 200);
    assert_eq!(events().await, 1, "the calls event, once");
    assert_eq!(markers().await.len(), 1);
    assert_eq!(ack(&app, &body).await.0, 200);
    assert_eq!(events().await, 1, "the repeat is a duplicate");
}

async fn id_reused_by_another_sender_is_not_stored_but_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let conflicts = "whatsapp_gateway_messages_id_conflict_total";
    let first = webhook_with(vec![text_message("wamid.X", A, "from A")]);
    assert_eq!(ack(&app, &first).await.1["stored"], 1);

    let (status, answer) = ack(
        &app,
        &webhook_with(vec![text_message("wamid.X", B, "from B")]),
    )
    .await;
    assert_eq!(status, 200, "acknowledged like a duplicate");
    assert_eq!(
        (&answer["stored"], &answer["duplicates"]),
        (&json!(0), &json!(0))
    );
    assert!(app.ids_of(B).await.is_empty());
    assert_eq!(app.metric(conflicts).await, 1.0);
    // The same sender again is a plain duplicate.
    assert_eq!(ack(&app, &first).await.1["duplicates"], 1);
    assert_eq!(app.metric(conflicts).await, 1.0);
    // Within one delivery too.
    let (_, answer) = ack(
        &app,
        &webhook_with(vec![
            text_message("wamid.Y", A, "a"),
            text_message("wamid.Y", B, "b"),
            text_message("wamid.Y", A, "a again"),
        ]),
    )
    .await;
    assert_eq!(
        (&answer["stored"], &answer["duplicates"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(app.metric(conflicts).await, 2.0);
    assert_eq!(app.ids_of(A).await, ["wamid.X", "wamid.Y"]);
    assert!(app.ids_of(B).await.is_empty());
}

fn evalsha_calls(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// 2,000 messages go out as several script calls of at most MAX_MESSAGES_PER_WRITE; a failure in
/// a later chunk keeps the earlier chunks, and the retry stores each message exactly once.
#[tokio::test]
async fn a_large_delivery_is_written_in_bounded_chunks_on_redis() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    app.post_webhook(&webhook_with(vec![text_message("wamid.warm", A, "x")]))
        .await;
    let before = evalsha_calls(
        &redis
            .query::<String>(redis::cmd("INFO").arg("commandstats"))
            .await,
    );
    let mut messages = numbered_messages("big", A, 0, 1500);
    messages.extend(numbered_messages("big", B, 1500, 500));
    let (status, answer) = ack(&app, &webhook_with(messages)).await;
    assert_eq!((status, &answer["stored"]), (200, &json!(2000)));
    let calls = evalsha_calls(
        &redis
            .query::<String>(redis::cmd("INFO").arg("commandstats"))
            .await,
    ) - before;
    let chunks = 2000usize.div_ceil(whatsapp_gateway::store::MAX_MESSAGES_PER_WRITE) as u64;
    assert!(calls >= chunks, "{calls} script calls for 2,000 messages");
    let mut expected = vec!["wamid.warm".to_owned()];
    expected.extend(ids("big", 0..1500));
    assert_eq!(app.ids_of(A).await, expected);
    assert_eq!(app.ids_of(B).await, ids("big", 1500..2000));

    // A failure in a later chunk: C's list has the wrong type, C's messages come last.
    let (d, c) = ("15550000004", "15550000005");
    let _: () = redis
        .query(redis::cmd("SET").arg(list(c)).arg("not a list"))
        .await;
    let mut messages = numbered_messages("late", d, 0, 1500);
    messages.extend(numbered_messages("late", c, 1500, 500));
    let body = webhook_with(messages);
    assert_eq!(ack(&app, &body).await.0, 503);
    let stored_before_failure = app.ids_of(d).await;
    let per_chunk = whatsapp_gateway::store::MAX_MESSAGES_PER_WRITE;
    assert_eq!(
        stored_before_failure,
        ids("late", 0..1500 / per_chunk * per_chunk),
        "whole chunks before the failing one"
    );
    let _: () = redis.query(redis::cmd("DEL").arg(list(c))).await;
    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["stored"], 2000 - stored_before_failure.len());
    assert_eq!(answer["duplicates"], stored_before_failure.len());
    assert_eq!(app.ids_of(d).await, ids("late", 0..1500));
    assert_eq!(app.ids_of(c).await, ids("late", 1500..2000));
}

/// The embedded store bounds its transactions the same way: a failure in a later chunk keeps the
/// committed chunks, and the retry stores the rest exactly once.
#[tokio::test]
async fn a_large_delivery_is_written_in_bounded_transactions_on_the_embedded_store() {
    let app = spawn_app(Backend::Embedded).await;
    let db = app.database();
    db.execute_batch(
        "CREATE TRIGGER fail_late BEFORE INSERT ON inbound_messages WHEN NEW.id = 'e1800'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let body = webhook_with(numbered_messages("e", A, 0, 2000));
    assert_eq!(ack(&app, &body).await.0, 503);
    let per_chunk = whatsapp_gateway::store::MAX_MESSAGES_PER_WRITE;
    let committed = 1800 / per_chunk * per_chunk;
    assert_eq!(app.ids_of(A).await, ids("e", 0..committed));

    db.execute_batch("DROP TRIGGER fail_late;").unwrap();
    let (status, answer) = ack(&app, &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["stored"], 2000 - committed);
    assert_eq!(answer["duplicates"], committed);
    assert_eq!(app.ids_of(A).await, ids("e", 0..2000));
}

/// A database written by the first release (schema version 1) opens, keeps its messages and
/// dedupe, and is migrated to the current version.
#[tokio::test]
async fn a_database_of_the_previous_release_is_migrated_and_kept() {
    let data = tempfile::tempdir().unwrap();
    {
        let db = rusqlite::Connection::open(data.path().join("whatsapp-gateway.sqlite3")).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS inbound_messages (
                seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                id          TEXT    NOT NULL UNIQUE,
                number      TEXT    NOT NULL,
                timestamp   INTEGER NOT NULL,
                json        TEXT    NOT NULL,
                received_at INTEGER NOT NULL DEFAULT (unixepoch())
            );
            CREATE INDEX IF NOT EXISTS inbound_messages_by_number ON inbound_messages (number, seq);
            CREATE TABLE IF NOT EXISTS conversations (
                number         TEXT    PRIMARY KEY,
                last_timestamp INTEGER NOT NULL,
                message_count  INTEGER NOT NULL
            ) WITHOUT ROWID;
            PRAGMA user_version = 1;
            INSERT INTO inbound_messages (id, number, timestamp, json)
                VALUES ('wamid.V1', '919216598210', 1757936743, '{\"id\":\"wamid.V1\",\"from\":\"919216598210\"}');
            INSERT INTO conversations VALUES ('919216598210', 1757936743, 1);",
        )
        .unwrap();
    }
    let dir = data.path().display().to_string();
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("DATA_DIR".into(), dir);
    })
    .await;
    assert_eq!(app.ids_of(A).await, ["wamid.V1"]);
    let retry = webhook_with(vec![text_message("wamid.V1", A, "again")]);
    assert_eq!(ack(&app, &retry).await.1["duplicates"], 1);
    let new = webhook_with(vec![text_message("wamid.V2", A, "new")]);
    assert_eq!(ack(&app, &new).await.1["stored"], 1);
    assert_eq!(app.ids_of(A).await, ["wamid.V1", "wamid.V2"]);
    let db = rusqlite::Connection::open(data.path().join("whatsapp-gateway.sqlite3")).unwrap();
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, whatsapp_gateway::store::embedded::SCHEMA_VERSION);
    let keys: i64 = db
        .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 0, "the upgrade created the idempotency table");
    // Schema 6 keeps the contact's latest message with the conversation.
    let latest: Option<String> = db
        .query_row(
            "SELECT last_inbound_id FROM conversation WHERE contact = ?1",
            [A],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(latest.as_deref(), Some("\"wamid.V2\""));
    let records: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE id = 'wamid.V2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(records, 1, "new messages get a record");
    app.wait_readyz(200, std::time::Duration::from_secs(3))
        .await;
    let probed: i64 = db
        .query_row("SELECT count(*) FROM health", [], |r| r.get(0))
        .unwrap();
    assert_eq!(probed, 1, "the readiness probe writes its row");
}

/// An empty database as the previous release created it (schema version 2), in `dir`.
fn release_two_database(dir: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(dir.join("whatsapp-gateway.sqlite3")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
            CREATE TABLE inbound_messages (
                seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                id          TEXT    NOT NULL UNIQUE,
                number      TEXT    NOT NULL,
                timestamp   INTEGER NOT NULL,
                json        TEXT    NOT NULL,
                received_at INTEGER NOT NULL DEFAULT (unixepoch())
            );
            CREATE INDEX inbound_messages_by_number ON inbound_messages (number, seq);
            CREATE TABLE conversations (
                number         TEXT    PRIMARY KEY,
                last_timestamp INTEGER NOT NULL,
                message_count  INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE health (
                id        INTEGER PRIMARY KEY CHECK (id = 1),
                probed_at INTEGER NOT NULL
            );
            PRAGMA user_version = 2;",
    )
    .unwrap();
    db
}

/// A database written by the previous release (schema version 2: messages, conversations and the
/// probe's row) opens and is migrated to version 3 in place: its messages stay readable through
/// `/get` in their order, Meta's retry of one of them is still a duplicate, and new messages get
/// records and conversations beside them.
#[tokio::test]
async fn a_database_of_release_two_is_migrated_to_records_and_keeps_dedupe() {
    let data = tempfile::tempdir().unwrap();
    {
        let db = release_two_database(data.path());
        db.execute_batch(
            "INSERT INTO inbound_messages (id, number, timestamp, json) VALUES
                ('wamid.R2a', '919216598210', 1757936700, '{\"id\":\"wamid.R2a\",\"from\":\"919216598210\",\"body\":\"one\"}'),
                ('wamid.R2b', '919216598210', 1757936701, '{\"id\":\"wamid.R2b\",\"from\":\"919216598210\",\"body\":\"two\"}');
            INSERT INTO conversations VALUES ('919216598210', 1757936701, 2);",
        )
        .unwrap();
    }
    let dir = data.path().display().to_string();
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("DATA_DIR".into(), dir);
    })
    .await;
    let stored = app.messages_of(A).await;
    assert_eq!(
        stored,
        vec![
            json!({"id": "wamid.R2a", "from": "919216598210", "body": "one"}),
            json!({"id": "wamid.R2b", "from": "919216598210", "body": "two"}),
        ]
    );
    let retry = webhook_with(vec![text_message("wamid.R2b", A, "two")]);
    assert_eq!(ack(&app, &retry).await.1["duplicates"], 1);
    let new = webhook_with(vec![text_message("wamid.R2c", A, "three")]);
    assert_eq!(ack(&app, &new).await.1["stored"], 1);
    assert_eq!(app.ids_of(A).await, ["wamid.R2a", "wamid.R2b", "wamid.R2c"]);
    let message: Value = app
        .http
        .get(app.url("/v1/messages/wamid.R2c"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(message["body"], "three");
    let db = rusqlite::Connection::open(data.path().join("whatsapp-gateway.sqlite3")).unwrap();
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, whatsapp_gateway::store::embedded::SCHEMA_VERSION);
    let keys: i64 = db
        .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 0, "the upgrade created the idempotency table");
    // The AUTOINCREMENT sequence carried over: new rows come after the old ones.
    let seqs: Vec<i64> = db
        .prepare("SELECT seq FROM inbound_messages ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

/// FastAPI items as an earlier release stored them: Meta's message object in `raw`.
fn legacy_item(id: &str, from: &str, ts: i64, body: &str) -> String {
    json!({
        "id": id, "from": from, "to": "15551713917", "timestamp": ts.to_string(), "type": "text",
        "body": body,
        "raw": { "from": from, "id": id, "timestamp": ts.to_string(), "type": "text", "text": { "body": body } }
    })
    .to_string()
}

/// Polls the conversation list until it holds `n` conversations (the import runs in the
/// background), at most 10 s.
async fn conversations_once_imported(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = app.get_json("/v1/conversations").await;
        let conversations = list["conversations"].as_array().unwrap().clone();
        if conversations.len() >= n || std::time::Instant::now() > deadline {
            return conversations;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What the checks below expect of an upgraded store: A's three old messages and B's one are in
/// their conversations (counted, not unread, in Meta's order), typed, marked as imported, the
/// FastAPI lists unchanged; Meta's retry of an old id is still a duplicate; a new message counts
/// on top; a restart imports nothing again.
async fn assert_upgraded(app: &mut TestApp) {
    let conversations = conversations_once_imported(app, 2).await;
    assert_eq!(conversations.len(), 2, "{conversations:?}");
    let a = conversations
        .iter()
        .find(|c| c["contact"]["id"] == A)
        .expect("A's conversation");
    assert_eq!(a["message_count"], 3, "{a}");
    assert_eq!(a["unread_count"], 0, "{a}");
    assert_eq!(a["last_message"], "three", "{a}");
    assert_eq!(a["phone_number_id"], PHONE_NUMBER_ID);
    let page = app
        .get_json(&format!("/v1/conversations/{A}/messages"))
        .await;
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["wamid.L1", "wamid.L2", "wamid.L3"], "in Meta's order");
    let one = app.get_json("/v1/messages/wamid.L1").await;
    assert_eq!(one["source"], "earlier_release");
    assert_eq!(one["direction"], "inbound");
    assert_eq!(one["content"]["body"], "one", "{one}");
    assert_eq!(
        app.ids_of(A).await,
        ["wamid.L2", "wamid.L1", "wamid.L3"],
        "the FastAPI list keeps its arrival order and gains nothing"
    );
    let retry = webhook_with(vec![text_message("wamid.L2", A, "two")]);
    assert_eq!(ack(app, &retry).await.1["duplicates"], 1);
    let new = webhook_with(vec![text_message("wamid.L4", A, "four")]);
    assert_eq!(ack(app, &new).await.1["stored"], 1);
    app.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let conversations = conversations_once_imported(app, 2).await;
    let a = conversations
        .iter()
        .find(|c| c["contact"]["id"] == A)
        .unwrap();
    assert_eq!(a["message_count"], 4, "nothing imported twice: {a}");
    assert_eq!(a["unread_count"], 1, "{a}");
}

/// Redis data of the previous release (FastAPI lists, `seen` markers, the `conversations` zset)
/// gets records and conversations after the upgrade.
#[tokio::test]
async fn redis_data_of_the_previous_release_gets_records_and_conversations() {
    let redis = TestRedis::start();
    {
        let mut con = redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        // Arrival order differs from Meta's order: L2 came first.
        for (id, ts, body) in [
            ("wamid.L2", 1_757_936_702, "two"),
            ("wamid.L1", 1_757_936_701, "one"),
            ("wamid.L3", 1_757_936_703, "three"),
        ] {
            let _: () = redis::cmd("RPUSH")
                .arg(list(A))
                .arg(legacy_item(id, A, ts, body))
                .query_async(&mut con)
                .await
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("test:seen:{id}"))
                .arg(A)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        let _: () = redis::cmd("RPUSH")
            .arg(list(B))
            .arg(legacy_item("wamid.LB", B, 1_757_936_600, "from b"))
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = redis::cmd("ZADD")
            .arg("test:conversations")
            .arg(1_757_936_703)
            .arg(A)
            .arg(1_757_936_600)
            .arg(B)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let mut app = spawn_app_on_redis(redis, |_| {}).await;
    assert_upgraded(&mut app).await;
}

/// A database of the previous release (schema version 2) gets records and conversations for
/// its rows after the migration.
#[tokio::test]
async fn a_database_of_the_previous_release_gets_records_and_conversations() {
    let data = tempfile::tempdir().unwrap();
    {
        let db = release_two_database(data.path());
        for (id, number, ts, body) in [
            ("wamid.L2", A, 1_757_936_702, "two"),
            ("wamid.L1", A, 1_757_936_701, "one"),
            ("wamid.L3", A, 1_757_936_703, "three"),
            ("wamid.LB", B, 1_757_936_600, "from b"),
        ] {
            db.execute(
                "INSERT INTO inbound_messages (id, number, timestamp, json) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, number, ts, legacy_item(id, number, ts, body)],
            )
            .unwrap();
        }
    }
    let dir = data.path().display().to_string();
    let mut app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("DATA_DIR".into(), dir);
    })
    .await;
    assert_upgraded(&mut app).await;
}

/// The upgrade import walks every FastAPI list, which this release also writes: a message this
/// release stored under another business number is not imported a second time under the
/// default one.
#[tokio::test]
async fn the_redis_import_skips_messages_recorded_under_any_business_number() {
    let mut app = spawn_app(Backend::Redis).await;
    let other = "200000000000002";
    let body =
        webhook_with(vec![text_message("wamid.X1", A, "hi")]).replace(PHONE_NUMBER_ID, other);
    assert_eq!(ack(&app, &body).await.1["stored"], 1);
    // As if the data had come from an earlier release: the import runs again at start-up.
    let _: i64 = app
        .redis()
        .query(redis::cmd("DEL").arg("test:upgrade:import"))
        .await;
    app.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !exists(app.redis(), "test:upgrade:import").await {
        assert!(
            std::time::Instant::now() < deadline,
            "the import did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let list = app.get_json("/v1/conversations").await;
    let conversations = list["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "{list}");
    assert_eq!(conversations[0]["phone_number_id"], other);
    assert_eq!(conversations[0]["message_count"], 1);
}
