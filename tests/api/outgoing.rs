//! Outgoing webhooks (`/v1/webhooks`): a real HTTP receiver in the test verifies every delivery's
//! Standard Webhooks signature with its own HMAC code (not the gateway's) and records what came,
//! answering what each test scripts (failures, 410, Retry-After). Retry schedules are compressed
//! (`WEBHOOK_RETRY_SCHEDULE`) so a whole schedule runs in a second.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::contract_tests;
use crate::events::Sse;
use crate::helpers::*;
use redis::AsyncCommands;
use whatsapp_gateway::store::Store;
use whatsapp_gateway::store::embedded::EmbeddedStore;
use whatsapp_gateway::store::hooks::{
    BusyLanes, Completed, Completion, ConfigChange, Direct, DispatchLease, Enqueue, HookRow,
    HookUpdate, NewDelivery, Verdict,
};
use whatsapp_gateway::store::redis::RedisStore;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const KERRY: &str = "919216598210";
const ANA: &str = "5511988887777";
const LEA: &str = "4915112345678";

contract_tests!(
    a_subscription_gets_every_event_signed_and_in_order,
    failures_are_retried_on_the_schedule_then_dead_lettered_and_replayed,
    a_later_event_of_a_contact_waits_while_an_earlier_one_is_retried,
    gone_disables_the_subscription_with_an_event_and_enabling_resumes,
    a_rotated_secret_signs_beside_the_new_one,
    redirects_fail_retry_after_is_honoured_and_answers_are_cut_at_a_kib,
    a_subscription_failing_too_long_is_disabled_with_an_event,
    retries_survive_a_restart,
    the_config_subscription_comes_from_config_env,
    subscriptions_are_validated_and_filtered,
    deleting_a_subscription_stops_its_deliveries,
    a_config_change_made_from_a_replaced_document_changes_nothing,
    concurrent_rotations_and_changes_are_each_applied,
    a_lane_hands_out_its_deliveries_one_at_a_time_in_order,
    a_page_attempted_from_the_log_stores_only_what_did_not_go_out,
    a_graceful_stop_records_the_attempts_in_flight_and_stores_the_rest,
    events_read_before_a_410_wait_for_the_subscription_to_be_enabled_again,
    a_410_stops_the_attempts_of_other_contacts_under_way,
    a_lane_waiting_for_the_only_slot_attempts_nothing_after_a_410,
    a_stored_retry_goes_out_while_direct_attempts_keep_every_slot_busy,
    a_410_stops_stored_retries_before_it_is_recorded,
);

/// The Standard Webhooks signature, computed here independently of the gateway.
fn standard_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[derive(Clone)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    /// A body of this many bytes instead of `answer <status>`.
    long_body: Option<usize>,
}

/// What the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: i64,
    /// The `v1,` signatures of the header, in order.
    signatures: Vec<String>,
    body: Value,
    /// Which known secrets verified one of the signatures.
    verified_by: Vec<String>,
    answered: u16,
    received: std::time::Instant,
}

#[derive(Default)]
struct Recorded {
    secrets: Mutex<Vec<String>>,
    /// Deliveries of the message with this `data.id` fail with 500 this many more times.
    failing: Mutex<Vec<(String, usize)>>,
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Option<Reply>>,
    /// How long each answer takes.
    delay: Mutex<Duration>,
    /// Events of this contact (`data.contact.id`) are answered 410 (after at most 100 ms).
    gone_contact: Mutex<Option<String>>,
    got: Mutex<Vec<Got>>,
}

struct Receiver {
    url: String,
    state: Arc<Recorded>,
}

async fn receive(State(state): State<Arc<Recorded>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let signatures: Vec<String> = header("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,").map(str::to_owned))
        .collect();
    let verified_by = state
        .secrets
        .lock()
        .unwrap()
        .iter()
        .filter(|secret| {
            let expected = standard_signature(secret, &id, &timestamp, &body);
            signatures.contains(&expected)
        })
        .cloned()
        .collect();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let failing = {
        let mut failing = state.failing.lock().unwrap();
        match failing
            .iter_mut()
            .find(|(id, n)| *n > 0 && parsed["data"]["id"] == id.as_str())
        {
            Some((_, n)) => {
                *n -= 1;
                true
            }
            None => false,
        }
    };
    let gone = state
        .gone_contact
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|c| parsed["data"]["contact"]["id"] == c);
    let scripted = if failing {
        Some(Reply::status(500))
    } else if gone {
        Some(Reply::status(410))
    } else {
        state.script.lock().unwrap().pop_front()
    };
    let reply = scripted
        .or_else(|| state.otherwise.lock().unwrap().clone())
        .unwrap_or(Reply::status(200));
    state.got.lock().unwrap().push(Got {
        id,
        timestamp: timestamp.parse().unwrap_or(0),
        signatures,
        body: parsed,
        verified_by,
        answered: reply.status,
        received: std::time::Instant::now(),
    });
    let delay = *state.delay.lock().unwrap();
    // A 410 comes soon, but not before the attempts started with it are under way.
    let delay = if gone {
        delay.min(Duration::from_millis(100))
    } else {
        delay
    };
    tokio::time::sleep(delay).await;
    let text = match reply.long_body {
        Some(n) => "x".repeat(n),
        None => format!("answer {}", reply.status),
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), text).into_response();
    if (300..400).contains(&reply.status) {
        // A redirect to the receiver itself: followed, it would be recorded again at once.
        response
            .headers_mut()
            .insert("location", "/hook".parse().unwrap());
    }
    if let Some(after) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

impl Reply {
    /// A plain answer with this status.
    fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            long_body: None,
        }
    }
}

impl Receiver {
    async fn start(secret: &str) -> Self {
        let state = Arc::new(Recorded::default());
        state.secrets.lock().unwrap().push(secret.to_owned());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// The next answers, in order (then [`Receiver::otherwise`]'s, or 200).
    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// The next answers are plain ones with these statuses.
    fn script_statuses(&self, statuses: &[u16]) {
        self.script(statuses.iter().map(|s| Reply::status(*s)));
    }

    /// Deliveries of the message `id` (`data.id`) fail with 500 the next `times` times.
    fn fail(&self, id: &str, times: usize) {
        self.state.failing.lock().unwrap().push((id.into(), times));
    }

    fn otherwise(&self, status: u16) {
        *self.state.otherwise.lock().unwrap() = Some(Reply::status(status));
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries were answered 2xx; returns every delivery so far.
    async fn wait_delivered(&self, n: usize) -> Vec<Got> {
        eventually(&format!("{n} deliveries answered 2xx"), || async {
            let got = self.got();
            (got.iter().filter(|g| g.answered < 300).count() >= n).then_some(got)
        })
        .await
    }

    /// Waits until exactly `n` requests arrived (answered or not: an attempt in flight counts);
    /// returns them.
    async fn wait_got(&self, n: usize) -> Vec<Got> {
        eventually(&format!("{n} requests received"), || async {
            let got = self.got();
            (got.len() == n).then_some(got)
        })
        .await
    }
}

/// An app whose outgoing webhooks may reach the test's loopback receiver, with a schedule of
/// `schedule`.
async fn hook_app(backend: Backend, schedule: &str) -> TestApp {
    hook_app_with(backend, schedule, |_| {}).await
}

/// [`hook_app`], letting `configure` change variables too.
async fn hook_app_with(
    backend: Backend,
    schedule: &str,
    configure: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> TestApp {
    let schedule = schedule.to_owned();
    spawn_app_with(backend, move |vars| {
        vars.insert("WEBHOOK_ALLOW_PRIVATE".into(), "true".into());
        vars.insert("WEBHOOK_RETRY_SCHEDULE".into(), schedule);
        vars.insert("WEBHOOK_TIMEOUT_SECS".into(), "2".into());
        configure(vars);
    })
    .await
}

/// Waits until subscription `id` shows disabled; its view then.
async fn disabled(app: &TestApp, id: &str) -> Value {
    eventually("the subscription disabled", || async {
        let view = app.get_json(&format!("/v1/webhooks/{id}")).await;
        (view["enabled"] == false).then_some(view)
    })
    .await
}

async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/webhooks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    // State-changing client requests declare JSON even without a body.
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("content-type", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `PATCH /v1/webhooks/{id}` with `{"enabled": true}`: the status and the view.
async fn enable(app: &TestApp, id: &str) -> (u16, Value) {
    let path = format!("/v1/webhooks/{id}");
    send_json(
        app,
        reqwest::Method::PATCH,
        &path,
        Some(json!({"enabled": true})),
    )
    .await
}

/// `GET /v1/webhooks/{id}/deliveries` once it holds at least `n` attempts: an attempt is logged
/// when it is completed, which is after the receiver answered.
async fn attempt_log(app: &TestApp, id: &str, n: usize) -> Value {
    eventually(&format!("{n} attempts in the log"), || async {
        let log = app.get_json(&format!("/v1/webhooks/{id}/deliveries")).await;
        (log["data"].as_array().unwrap().len() >= n).then_some(log)
    })
    .await
}

/// The first `webhook_disabled` event of the log (its envelope), read from `/v1/events`.
async fn disabled_event(app: &TestApp, backend: Backend) -> Value {
    let start = match backend {
        Backend::Redis => "0-0",
        Backend::Embedded => "0",
    };
    let mut sse = Sse::open(app, &format!("?after={start}&types=webhook_disabled"), None).await;
    // A `reset` comes first where the log no longer holds the very beginning (Redis).
    loop {
        let frame = sse.events(1).await.remove(0);
        if frame.kind() == "webhook_disabled" {
            return frame.json();
        }
    }
}

/// Subscribes `receiver` (secret [`SECRET`]) to `message_incoming` events; returns the id.
async fn subscribe_incoming(app: &TestApp, receiver: &Receiver) -> String {
    let (status, sub) = create(
        app,
        json!({"url": receiver.url, "secret": SECRET, "events": ["message_incoming"]}),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    sub["id"].as_str().unwrap().to_owned()
}

fn message_from(id: &str, from: &str, body: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Someone"}, "wa_id": from}],
        "messages": [{"from": from, "id": id, "timestamp": now_secs().to_string(), "type": "text", "text": {"body": body}}]
    }}]}]})
    .to_string()
}

async fn a_subscription_gets_every_event_signed_and_in_order(backend: Backend) {
    let app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    // Events before the subscription are not delivered.
    app.post_webhook_ok(&message_from("wamid.before", KERRY, "too early"))
        .await;
    let (status, sub) = create(
        &app,
        json!({"url": receiver.url, "secret": SECRET, "description": "crm"}),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["secret"], SECRET);
    assert_eq!(sub["enabled"], true);
    assert!(sub["id"].as_str().unwrap().starts_with("wh_"), "{sub}");
    let id = sub["id"].as_str().unwrap().to_owned();
    // Another subscription of the same receiver, for another business number only: it gets
    // nothing here (else the receiver would see every event twice).
    let (status, other) = create(
        &app,
        json!({"url": receiver.url, "secret": SECRET, "phone_number_id": "999"}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    // Listing never shows the secret.
    let list = app.get_json("/v1/webhooks").await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str())
    );
    assert!(!list.to_string().contains(SECRET), "{list}");

    let batch = webhook_with(vec![
        text_message("wamid.1", KERRY, "one"),
        text_message("wamid.2", KERRY, "two"),
        text_message("wamid.3", KERRY, "three"),
    ]);
    app.post_webhook_ok(&batch).await;
    // 3 message_incoming + conversation_updated events.
    let got = receiver.wait_delivered(4).await;
    for g in &got {
        assert_eq!(g.verified_by, [SECRET], "{g:?}");
        assert_eq!(g.signatures.len(), 1);
        assert_eq!(g.body["id"], g.id.as_str(), "webhook-id is the event id");
        assert!(!g.id.contains('.'));
        assert!((g.timestamp - now_secs()).abs() <= 5, "{}", g.timestamp);
        assert!(
            g.body["timestamp"].as_str().unwrap().ends_with('Z'),
            "{}",
            g.body
        );
    }
    let incoming: Vec<&Got> = got
        .iter()
        .filter(|g| g.body["type"] == "message_incoming")
        .collect();
    let ids: Vec<&str> = incoming
        .iter()
        .map(|g| g.body["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["wamid.1", "wamid.2", "wamid.3"],
        "in order, and nothing from before"
    );
    assert_eq!(incoming[0].body["data"]["contact"]["id"], KERRY);
    assert!(got.iter().all(|g| g.body["data"]["id"] != "wamid.before"));
    // The attempt log.
    let log = attempt_log(&app, &id, 4).await;
    let attempts = log["data"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"], "delivered");
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["response"], "answer 200");
    assert_eq!(log["pending"], 0);
    // A receiver that answers at once gets every event straight from the log: no delivery was
    // stored for the worker.
    assert_eq!(
        attempt_counts(&app).await,
        counts(&[("delivered", "direct", 4)])
    );
}

type Counts = std::collections::BTreeMap<(String, String), u64>;

/// Attempt counts by (reason, path).
fn counts(of: &[(&str, &str, u64)]) -> Counts {
    of.iter()
        .map(|(reason, path, n)| (((*reason).to_owned(), (*path).to_owned()), *n))
        .collect()
}

/// `outgoing_webhook_attempts_total` from /metrics: count by (reason, path).
async fn attempt_counts(app: &TestApp) -> Counts {
    let text = app.metrics_text().await;
    text.lines()
        .filter_map(|line| {
            let rest =
                line.strip_prefix("whatsapp_gateway_outgoing_webhook_attempts_total{reason=\"")?;
            let (reason, rest) = rest.split_once("\",path=\"")?;
            let (path, count) = rest.split_once("\"} ")?;
            Some(((reason.to_owned(), path.to_owned()), count.parse().ok()?))
        })
        .collect()
}

async fn failures_are_retried_on_the_schedule_then_dead_lettered_and_replayed(backend: Backend) {
    let app = hook_app(backend, "100ms,100ms").await;
    let receiver = Receiver::start(SECRET).await;
    receiver.otherwise(500);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.f1", KERRY, "hello"))
        .await;
    // One attempt and two retries, then dead.
    let log = eventually("three attempts, the last dead", || async {
        let log = app.get_json(&format!("/v1/webhooks/{id}/deliveries")).await;
        (log["dead"] == 1 && log["data"].as_array().unwrap().len() == 3).then_some(log)
    })
    .await;
    let attempts = log["data"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["dead", "retry", "retry"], "{log}");
    let numbers: Vec<i64> = attempts
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert!(
        attempts
            .iter()
            .all(|a| a["status"] == 500 && a["response"] == "answer 500")
    );
    assert!(attempts[1]["next_attempt_at"].is_i64());
    assert_eq!(log["pending"], 0);
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|g| g.id == got[0].id),
        "webhook-id is the same on every retry"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 3, "nothing after the last attempt");
    // Replay of the dead letters, once the receiver works again.
    receiver.otherwise(200);
    let (status, replayed) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/replay"),
        Some(json!({"dead_letters": true})),
    )
    .await;
    assert_eq!(
        (status, replayed["enqueued"].as_i64()),
        (200, Some(1)),
        "{replayed}"
    );
    let got = receiver.wait_delivered(1).await;
    assert_eq!(got.last().unwrap().id, got[0].id);
    let view = app.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(
        (
            view["dead_deliveries"].as_i64(),
            view["pending_deliveries"].as_i64()
        ),
        (Some(0), Some(0)),
        "{view}"
    );
    // Replay from an event id: the retained events after it, again.
    let first = got[0].id.clone();
    let (status, replayed) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/replay"),
        Some(json!({"since": 0})),
    )
    .await;
    assert_eq!(
        (status, replayed["enqueued"].as_i64()),
        (200, Some(1)),
        "{replayed}"
    );
    receiver.wait_delivered(2).await;
    let start = match backend {
        Backend::Redis => "0-0",
        Backend::Embedded => "0",
    };
    let (status, replayed) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/replay"),
        Some(json!({ "after": start })),
    )
    .await;
    assert_eq!(
        (status, replayed["enqueued"].as_i64()),
        (200, Some(1)),
        "{replayed}"
    );
    let got = receiver.wait_delivered(3).await;
    assert_eq!(got.last().unwrap().id, first);
    let (status, bad) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/replay"),
        Some(json!({"after": "x y"})),
    )
    .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["detail"][0]["loc"], json!(["body", "after"]));
    let (status, _) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/replay"),
        Some(json!({"after": first, "since": 1})),
    )
    .await;
    assert_eq!(status, 422);
}

async fn a_later_event_of_a_contact_waits_while_an_earlier_one_is_retried(backend: Backend) {
    let app = hook_app(backend, "300ms,300ms,300ms").await;
    let receiver = Receiver::start(SECRET).await;
    // Kerry's first message fails twice.
    receiver.fail("wamid.k1", 2);
    subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.k1", KERRY, "first"))
        .await;
    app.post_webhook_ok(&message_from("wamid.k2", KERRY, "second"))
        .await;
    app.post_webhook_ok(&message_from("wamid.a1", ANA, "other contact"))
        .await;
    let got = receiver.wait_delivered(3).await;
    let order: Vec<(&str, u16)> = got
        .iter()
        .map(|g| (g.body["data"]["id"].as_str().unwrap(), g.answered))
        .collect();
    // Kerry's second message only after the first was delivered; Ana's is not held up by Kerry's.
    let k1_ok = order.iter().position(|o| *o == ("wamid.k1", 200)).unwrap();
    let k2 = order.iter().position(|o| o.0 == "wamid.k2").unwrap();
    let a1 = order.iter().position(|o| o.0 == "wamid.a1").unwrap();
    assert!(k2 > k1_ok, "{order:?}");
    assert!(
        a1 < k1_ok,
        "another contact's event waits for nobody: {order:?}"
    );
    assert_eq!(
        order.iter().filter(|o| o.0 == "wamid.k1").count(),
        3,
        "{order:?}"
    );
    // k1's first attempt and Ana's event went straight from the log; k1's retries and k2,
    // which waited behind it, came from stored deliveries.
    let counts = eventually("the attempts counted", || async {
        let counts = attempt_counts(&app).await;
        (counts.values().sum::<u64>() == 5).then_some(counts)
    })
    .await;
    assert_eq!(
        counts,
        self::counts(&[
            ("delivered", "direct", 1),
            ("retry", "direct", 1),
            ("retry", "queued", 1),
            ("delivered", "queued", 2),
        ])
    );
}

/// One attempt slot (WEBHOOK_CONCURRENCY=1) and far more events than it can take (a receiver
/// that answers in 100 ms, so at most 10 a second; two new contacts' messages every 25 ms): the
/// dispatcher's lanes always wait for it. A stored retry still gets its turn while that goes on:
/// the worker, in line for the slot with the lanes, keeps the one it waited for (given back, it
/// would go to the next lane waiting, and the retry would wait for the load to end).
async fn a_stored_retry_goes_out_while_direct_attempts_keep_every_slot_busy(backend: Backend) {
    let app = hook_app_with(backend, "1s", |vars| {
        vars.insert("WEBHOOK_CONCURRENCY".into(), "1".into());
    })
    .await;
    let receiver = Receiver::start(SECRET).await;
    receiver.fail("wamid.retried", 1);
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(100);
    subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.retried", KERRY, "first"))
        .await;
    receiver.wait_got(1).await;

    // The load, until the retry went out or for 15 s.
    let started = std::time::Instant::now();
    let retried = |got: &[Got]| {
        got.iter()
            .any(|g| g.body["data"]["id"] == "wamid.retried" && g.answered == 200)
    };
    let mut sent = 0usize;
    while !retried(&receiver.got()) && started.elapsed() < Duration::from_secs(15) {
        for _ in 0..2 {
            let from = format!("1555{:07}", 1000 + sent);
            app.post_webhook_ok(&message_from(&format!("wamid.load{sent}"), &from, "load"))
                .await;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let load = started.elapsed();
    let got = receiver.got();
    assert!(
        retried(&got),
        "the retry did not go out during {load:?} of load ({sent} events)"
    );
    // The slot was wanted all along: when the retry went out, many of the load's events had
    // not reached the receiver yet.
    let arrived = got
        .iter()
        .filter(|g| {
            g.body["data"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("wamid.load"))
        })
        .count();
    assert!(
        sent >= arrived + 10,
        "the load kept the slot busy: {arrived} of {sent} events had arrived when the retry went out"
    );
}

async fn gone_disables_the_subscription_with_an_event_and_enabling_resumes(backend: Backend) {
    let app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    receiver.script_statuses(&[410]);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.g1", KERRY, "hi"))
        .await;
    let view = disabled(&app, &id).await;
    assert!(
        view["disabled_reason"].as_str().unwrap().contains("410"),
        "{view}"
    );
    assert_eq!(view["pending_deliveries"], 1, "the delivery waits: {view}");
    // The change is an event of the log.
    let event = disabled_event(&app, backend).await;
    assert_eq!(event["data"]["id"], id.as_str(), "{event}");
    assert!(
        event["data"]["reason"].as_str().unwrap().contains("410"),
        "{event}"
    );
    assert!(!event.to_string().contains(SECRET));
    // Nothing goes out while disabled.
    app.post_webhook_ok(&message_from("wamid.g2", KERRY, "while disabled"))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.got().len(), 1);
    let (status, view) = enable(&app, &id).await;
    assert_eq!(
        (
            status,
            view["enabled"].clone(),
            view["disabled_reason"].clone()
        ),
        (200, json!(true), Value::Null),
        "{view}"
    );
    let got = receiver.wait_delivered(1).await;
    assert_eq!(
        got.last().unwrap().body["data"]["id"],
        "wamid.g1",
        "the waiting delivery resumes"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver
            .got()
            .iter()
            .all(|g| g.body["data"]["id"] != "wamid.g2"),
        "a disabled subscription does not collect events"
    );
}

/// A 410 disables the subscription while a later page of the log is already in flight: that
/// page's events, read while the subscription was enabled, wait with the 410'd delivery for it
/// to be enabled again (they are not dropped as events written while it is disabled are).
async fn events_read_before_a_410_wait_for_the_subscription_to_be_enabled_again(backend: Backend) {
    let app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    receiver.script_statuses(&[410]);
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(800);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.r1", KERRY, "answered 410"))
        .await;
    receiver.wait_got(1).await;
    // A second page while r1's answer is pending: Ana's event goes out, Kerry's second waits
    // behind r1.
    app.post_webhook_ok(&webhook_with(vec![
        text_message("wamid.r2", KERRY, "behind r1"),
        text_message("wamid.a1", ANA, "another contact"),
    ]))
    .await;
    // Once the second page is closed (after a1's answer), both of Kerry's wait.
    eventually("disabled, with both of Kerry's waiting", || async {
        let view = app.get_json(&format!("/v1/webhooks/{id}")).await;
        (view["enabled"] == false && view["pending_deliveries"] == 2).then_some(())
    })
    .await;
    assert_eq!(
        receiver.got().len(),
        2,
        "nothing more went out while disabled"
    );
    *receiver.state.delay.lock().unwrap() = Duration::ZERO;
    let (status, _) = enable(&app, &id).await;
    assert_eq!(status, 200);
    let got = receiver.wait_delivered(3).await;
    let order: Vec<&str> = got
        .iter()
        .map(|g| g.body["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["wamid.r1", "wamid.a1", "wamid.r1", "wamid.r2"]);
}

/// A 410 for one contact's event stops the other contacts' attempts of the same page at once:
/// Ana's lane, one event after another, makes no attempt after Kerry's 410, and what it did not
/// attempt waits with Kerry's event for the subscription to be enabled again.
async fn a_410_stops_the_attempts_of_other_contacts_under_way(backend: Backend) {
    let app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    *receiver.state.gone_contact.lock().unwrap() = Some(KERRY.to_owned());
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(300);
    let id = subscribe_incoming(&app, &receiver).await;
    let mut messages = vec![text_message("wamid.k1", KERRY, "answered 410")];
    messages.extend(numbered_messages("wamid.a", ANA, 1, 5));
    app.post_webhook_ok(&webhook_with(messages)).await;
    // Ana's lane had a1 under way when the 410 came 100 ms later (both started together; a1
    // takes 300 ms); nothing after it. Before, the lane went on to a5 (1.5 s).
    let view = eventually("disabled, with the rest waiting", || async {
        let view = app.get_json(&format!("/v1/webhooks/{id}")).await;
        (view["enabled"] == false && view["pending_deliveries"] != 0).then_some(view)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut got: Vec<String> = receiver
        .got()
        .iter()
        .map(|g| g.body["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["wamid.a1", "wamid.k1"], "no attempt after the 410");
    assert_eq!(view["pending_deliveries"], 5, "k1 and a2-a5 wait: {view}");

    *receiver.state.gone_contact.lock().unwrap() = None;
    *receiver.state.delay.lock().unwrap() = Duration::ZERO;
    let (status, _) = enable(&app, &id).await;
    assert_eq!(status, 200);
    let got = receiver.wait_delivered(6).await;
    let later: Vec<&str> = got[2..]
        .iter()
        .map(|g| g.body["data"]["id"].as_str().unwrap())
        .collect();
    let ana: Vec<&str> = later
        .iter()
        .copied()
        .filter(|i| i.starts_with("wamid.a"))
        .collect();
    assert_eq!(
        ana,
        ["wamid.a2", "wamid.a3", "wamid.a4", "wamid.a5"],
        "in order"
    );
    assert!(later.contains(&"wamid.k1"), "{later:?}");
    assert_eq!(later.len(), 5, "each once: {later:?}");
}

/// With one slot (`WEBHOOK_CONCURRENCY=1`) Ana's lane waits for it while Kerry's attempt is
/// answered 410: once the slot is its own, the lane finds the subscription disabled and attempts
/// nothing more. (The lanes take the slot in turn, so one of Ana's events may go first.)
async fn a_lane_waiting_for_the_only_slot_attempts_nothing_after_a_410(backend: Backend) {
    let app = hook_app_with(backend, "100ms", |vars| {
        vars.insert("WEBHOOK_CONCURRENCY".into(), "1".into());
    })
    .await;
    let receiver = Receiver::start(SECRET).await;
    *receiver.state.gone_contact.lock().unwrap() = Some(KERRY.to_owned());
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(200);
    let id = subscribe_incoming(&app, &receiver).await;
    let mut messages = vec![text_message("wamid.k1", KERRY, "answered 410")];
    messages.extend(numbered_messages("wamid.a", ANA, 1, 3));
    app.post_webhook_ok(&webhook_with(messages)).await;
    disabled(&app, &id).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got: Vec<(String, u16)> = receiver
        .got()
        .iter()
        .map(|g| {
            (
                g.body["data"]["id"].as_str().unwrap().to_owned(),
                g.answered,
            )
        })
        .collect();
    let last = got.last().expect("Kerry's attempt");
    assert_eq!(
        (last.0.as_str(), last.1),
        ("wamid.k1", 410),
        "no attempt after the 410: {got:?}"
    );
    assert!(got.len() <= 2, "{got:?}");
}

/// A 410 also stops the worker's stored deliveries at once, before the page that got it is
/// closed and the store records it: a retry that falls due meanwhile is not attempted, and goes
/// out once the subscription is enabled again (after its claim ran out).
async fn a_410_stops_stored_retries_before_it_is_recorded(backend: Backend) {
    const OLIVIA: &str = "447700900123";
    let app = hook_app(backend, "700ms").await;
    let receiver = Receiver::start(SECRET).await;
    receiver.fail("wamid.o1", 1);
    let id = subscribe_incoming(&app, &receiver).await;
    // Another subscription stays enabled, so the worker goes on claiming.
    let other = Receiver::start(SECRET).await;
    subscribe_incoming(&app, &other).await;
    app.post_webhook_ok(&message_from("wamid.o1", OLIVIA, "retried"))
        .await;
    receiver.wait_got(1).await;
    // Its retry falls due in 700 ms. Meanwhile Kerry's event gets a 410 within 100 ms, and
    // Ana's, in the same page, takes 1.5 s: the page (and the 410's record) closes after the
    // retry fell due.
    *receiver.state.gone_contact.lock().unwrap() = Some(KERRY.to_owned());
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(1500);
    let messages = vec![
        text_message("wamid.k1", KERRY, "answered 410"),
        text_message("wamid.a1", ANA, "slow"),
    ];
    app.post_webhook_ok(&webhook_with(messages)).await;
    disabled(&app, &id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let olivia = |got: &[Got]| {
        got.iter()
            .filter(|g| g.body["data"]["id"] == "wamid.o1")
            .count()
    };
    assert_eq!(olivia(&receiver.got()), 1, "no retry while the 410 stands");

    *receiver.state.gone_contact.lock().unwrap() = None;
    *receiver.state.delay.lock().unwrap() = Duration::ZERO;
    let (status, _) = enable(&app, &id).await;
    assert_eq!(status, 200);
    // The claim the worker let run out lasts 2 x the 2 s timeout + 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while olivia(&receiver.got()) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = receiver.got();
    assert!(
        got.iter()
            .any(|g| g.body["data"]["id"] == "wamid.o1" && g.answered == 200),
        "the retry went out once enabled: {:?}",
        got.iter()
            .map(|g| (&g.body["data"]["id"], g.answered))
            .collect::<Vec<_>>()
    );
}

async fn a_rotated_secret_signs_beside_the_new_one(backend: Backend) {
    let app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    let id = subscribe_incoming(&app, &receiver).await;
    let (status, rotated) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let fresh = rotated["secret"].as_str().unwrap().to_owned();
    assert!(fresh.starts_with("whsec_") && fresh != SECRET);
    let until = rotated["previous_secret_valid_until"].as_i64().unwrap();
    assert!((until - now_secs() - 86_400).abs() <= 5, "{rotated}");
    receiver.state.secrets.lock().unwrap().push(fresh.clone());
    app.post_webhook_ok(&message_from("wamid.r1", KERRY, "hi"))
        .await;
    let got = receiver.wait_delivered(1).await;
    assert_eq!(got[0].signatures.len(), 2, "{:?}", got[0]);
    assert_eq!(
        got[0].verified_by,
        [SECRET.to_owned(), fresh],
        "both secrets verify"
    );
}

/// A store of `backend` opened directly (not through an app), and what keeps its data alive.
fn open_store(backend: Backend) -> (Store, Box<dyn std::any::Any>) {
    match backend {
        Backend::Redis => {
            let redis = TestRedis::start();
            let settings = whatsapp_gateway::config::RedisSettings {
                url: redis.url().into(),
                inbound_list: "whatsapp:inbound".into(),
                key_prefix: "cas".into(),
                timeout: Duration::from_secs(2),
                allow_eviction: false,
                event_retention: 100,
            };
            let store = Store::Redis(RedisStore::new(&settings).unwrap());
            (store, Box::new(redis))
        }
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::Embedded(
                EmbeddedStore::open(&whatsapp_gateway::config::EmbeddedSettings {
                    data_dir: dir.path().to_owned(),
                    event_retention: 100,
                })
                .unwrap(),
            );
            (store, Box::new(dir))
        }
    }
}

/// PATCH and rotate change a subscription's configuration by compare-and-set: a change computed
/// from a document that another change replaced meanwhile is refused and changes nothing (its
/// `enabled` part included), so the service computes it again instead of undoing the other.
async fn a_config_change_made_from_a_replaced_document_changes_nothing(backend: Backend) {
    let (store, _keep) = open_store(backend);
    put_subscription(&store, "wh_cas", r#"{"v":0}"#).await;
    let change = |from, to| Some(ConfigChange { from, to });
    let now = now_secs() * 1000;
    assert_eq!(
        store
            .hook_update("wh_cas", change(r#"{"v":0}"#, r#"{"v":1}"#), None, now)
            .await
            .unwrap(),
        HookUpdate::Applied
    );
    assert_eq!(
        store
            .hook_update(
                "wh_cas",
                change(r#"{"v":0}"#, r#"{"v":2}"#),
                Some((false, "stale")),
                now
            )
            .await
            .unwrap(),
        HookUpdate::Changed
    );
    let stored = store.hook_get("wh_cas").await.unwrap().unwrap();
    assert_eq!(stored.config, r#"{"v":1}"#);
    assert!(stored.enabled, "nothing of the refused change was applied");
    // Enabling alone needs no document.
    assert_eq!(
        store
            .hook_update("wh_cas", None, Some((false, "paused")), now)
            .await
            .unwrap(),
        HookUpdate::Applied
    );
    assert!(!store.hook_get("wh_cas").await.unwrap().unwrap().enabled);
    for config in [change(r#"{"v":1}"#, r#"{"v":3}"#), None] {
        assert_eq!(
            store
                .hook_update("wh_none", config, Some((true, "")), now)
                .await
                .unwrap(),
            HookUpdate::Missing
        );
    }
}

/// Stores a new enabled subscription `id` with the configuration document `config`.
async fn put_subscription(store: &Store, id: &str, config: &str) {
    let row = HookRow {
        id: id.into(),
        config: config.into(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        cursor: None,
    };
    assert!(store.hook_put(&row, true).await.unwrap());
}

/// A delivery of `event` in `lane` (its body names the event).
fn delivery(event: &str, lane: &str) -> NewDelivery {
    NewDelivery {
        event_id: event.into(),
        lane: lane.into(),
        body: format!(r#"{{"id":"{event}"}}"#),
    }
}

/// A subscription with three deliveries of one contact (lane) and one of another.
async fn lanes_with_deliveries(store: &Store) {
    put_subscription(store, "wh_lane", "{}").await;
    let deliveries: Vec<NewDelivery> = [("e1", "a"), ("e2", "a"), ("e3", "a"), ("e4", "b")]
        .into_iter()
        .map(|(event, lane)| delivery(event, lane))
        .collect();
    let now = now_secs() * 1000;
    assert_eq!(
        store
            .hook_enqueue("wh_lane", &Enqueue::Replay, &deliveries, now)
            .await
            .unwrap(),
        Some(4)
    );
}

/// The completion of a claimed attempt with `verdict` at `now` (a log of `{}`; disabling after a
/// day).
fn completion(
    claimed: whatsapp_gateway::store::hooks::Claimed,
    verdict: Verdict,
    now: i64,
) -> Completion {
    Completion {
        claimed,
        verdict,
        log: "{}".into(),
        now_ms: now,
        disable_after_ms: 86_400_000,
        disabled_reason: String::new(),
        disabled_event: "{}".into(),
    }
}

/// Claims and completes every delivery it can now, `rounds` times; the event ids per round.
async fn claim_rounds(store: &Store, rounds: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        let now = now_secs() * 1000;
        let (claimed, _) = store.hook_claim(now, 60_000, 10).await.unwrap();
        let mut ids: Vec<String> = claimed.iter().map(|c| c.event_id.clone()).collect();
        ids.sort();
        for c in claimed {
            let completion = completion(c, Verdict::Delivered, now);
            assert_eq!(
                store.hook_complete(&completion).await.unwrap(),
                Completed::Applied
            );
        }
        out.push(ids);
    }
    out
}

/// Per contact (lane) one delivery at a time, in order: a claim hands out each lane's head only,
/// and the next one of a lane after its head was completed.
async fn a_lane_hands_out_its_deliveries_one_at_a_time_in_order(backend: Backend) {
    let (store, _keep) = open_store(backend);
    lanes_with_deliveries(&store).await;
    assert_eq!(
        claim_rounds(&store, 4).await,
        [vec!["e1", "e4"], vec!["e2"], vec!["e3"], vec![]]
    );
}

/// A page the dispatcher attempted straight from the log: one compare-and-set logs its
/// successes (the subscription is no longer failing), stores its failed attempt claimed for its
/// completion and the event behind it as waiting, and moves the cursor; a stale cursor changes
/// nothing. The busy-lanes read answers the cursor and the lanes with deliveries waiting, and
/// on Redis holds the dispatch lease for one holder at a time.
async fn a_page_attempted_from_the_log_stores_only_what_did_not_go_out(backend: Backend) {
    let (store, _keep) = open_store(backend);
    put_subscription(&store, "wh_direct", "{}").await;
    let now = now_secs() * 1000;
    // A failing subscription: lane z retries in an hour.
    store
        .hook_enqueue("wh_direct", &Enqueue::Replay, &[delivery("e0", "z")], now)
        .await
        .unwrap();
    let (claimed, _) = store.hook_claim(now, 60_000, 10).await.unwrap();
    let retry = Completion {
        log: r#"{"event_id":"e0"}"#.into(),
        ..completion(
            claimed[0].clone(),
            Verdict::Retry {
                at_ms: now + 3_600_000,
            },
            now,
        )
    };
    assert_eq!(
        store.hook_complete(&retry).await.unwrap(),
        Completed::Applied
    );
    assert!(
        store
            .hook_get("wh_direct")
            .await
            .unwrap()
            .unwrap()
            .failing_since
            .is_some()
    );

    let lease = |holder: &str| DispatchLease {
        holder: holder.into(),
        ms: 60_000,
    };
    let found = store
        .hook_busy_lanes("wh_direct", &["a", "z", "b"], &lease("one"))
        .await
        .unwrap();
    assert_eq!(
        found,
        Some(BusyLanes {
            cursor: None,
            busy: vec!["z".into()]
        })
    );

    // The page: e1 (lane a) went out, e2 (lane a) failed, e3 (lane a) waits behind it.
    let until = now + 60_000;
    let page = Enqueue::FromLog {
        expected: None,
        next: "7".into(),
        direct: Direct {
            delivered: vec![r#"{"event_id":"e1","outcome":"delivered"}"#.into()],
            failed: vec!["e2".into()],
            claimed_until: until,
            read_enabled: true,
        },
    };
    let rest = [delivery("e2", "a"), delivery("e3", "a")];
    assert_eq!(
        store
            .hook_enqueue("wh_direct", &page, &rest, now)
            .await
            .unwrap(),
        Some(2)
    );
    let stored = store.hook_get("wh_direct").await.unwrap().unwrap();
    assert_eq!(stored.cursor.as_deref(), Some("7"));
    assert_eq!(stored.failing_since, None, "a delivery went out");
    let attempts = store.hook_attempts("wh_direct", 10).await.unwrap();
    assert_eq!(
        attempts,
        [
            r#"{"event_id":"e1","outcome":"delivered"}"#,
            r#"{"event_id":"e0"}"#
        ]
    );
    // e2 is claimed (by its token), e3 waits behind it: nothing to claim now.
    assert_eq!(
        store.hook_claim(now, 60_000, 10).await.unwrap().0,
        Vec::new()
    );
    assert_eq!(store.hook_backlog("wh_direct").await.unwrap().pending, 3);
    // The same page again from a stale cursor changes nothing.
    assert_eq!(
        store
            .hook_enqueue("wh_direct", &page, &rest, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.hook_backlog("wh_direct").await.unwrap().pending, 3);
    assert_eq!(store.hook_attempts("wh_direct", 10).await.unwrap().len(), 2);

    let found = store
        .hook_busy_lanes("wh_direct", &["a", "b", "z"], &lease("one"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.cursor.as_deref(), Some("7"));
    assert_eq!(found.busy, ["a", "z"]);
    match backend {
        Backend::Redis => {
            // One holder at a time; given back, the other takes it.
            assert_eq!(
                store
                    .hook_busy_lanes("wh_direct", &["a"], &lease("two"))
                    .await
                    .unwrap(),
                None
            );
            store.hook_release("wh_direct", "two").await.unwrap();
            assert!(
                store
                    .hook_busy_lanes("wh_direct", &["a"], &lease("two"))
                    .await
                    .unwrap()
                    .is_none(),
                "only the holder gives the lease back"
            );
            store.hook_release("wh_direct", "one").await.unwrap();
            assert!(
                store
                    .hook_busy_lanes("wh_direct", &["a"], &lease("two"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        // One instance per DATA_DIR: no lease.
        Backend::Embedded => {}
    }
    assert_eq!(
        store
            .hook_busy_lanes("wh_gone", &["a"], &lease("one"))
            .await
            .unwrap(),
        None
    );

    // The failed attempt's completion applies with the page's token; e3 is due next.
    let claimed = whatsapp_gateway::store::hooks::Claimed {
        subscription: "wh_direct".into(),
        event_id: "e2".into(),
        body: r#"{"id":"e2"}"#.into(),
        attempts: 0,
        token: until,
    };
    let failed = completion(claimed, Verdict::Delivered, now);
    assert_eq!(
        store.hook_complete(&failed).await.unwrap(),
        Completed::Applied
    );
    let (claimed, _) = store.hook_claim(now, 60_000, 10).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.event_id.as_str()).collect();
    assert_eq!(ids, ["e3"]);

    // Disabled meanwhile: a page read while it was disabled leaves nothing; one read while it
    // was enabled keeps its deliveries for when it is enabled again.
    assert_eq!(
        store
            .hook_update("wh_direct", None, Some((false, "paused")), now)
            .await
            .unwrap(),
        HookUpdate::Applied
    );
    let pending = store.hook_backlog("wh_direct").await.unwrap().pending;
    for (read_enabled, from, to, event, kept) in
        [(false, "7", "8", "e4", 0), (true, "8", "9", "e5", 1)]
    {
        let page = Enqueue::FromLog {
            expected: Some(from.into()),
            next: to.into(),
            direct: Direct {
                read_enabled,
                ..Direct::default()
            },
        };
        assert_eq!(
            store
                .hook_enqueue("wh_direct", &page, &[delivery(event, "c")], now)
                .await
                .unwrap(),
            Some(kept)
        );
    }
    assert_eq!(
        store.hook_backlog("wh_direct").await.unwrap().pending,
        pending + 1
    );
    assert!(
        store
            .hook_claim(now, 60_000, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    store
        .hook_update("wh_direct", None, Some((true, "")), now)
        .await
        .unwrap();
    let (claimed, _) = store.hook_claim(now, 60_000, 10).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.event_id.as_str()).collect();
    assert!(ids.contains(&"e5"), "{ids:?}");
}

/// Deliveries an earlier release wrote (every delivery of a lane had a due time; now only its
/// head has) are still handed out one at a time per lane, in order.
#[tokio::test]
async fn deliveries_of_an_earlier_release_keep_their_lane_order() {
    let dir = tempfile::tempdir().unwrap();
    let settings = whatsapp_gateway::config::EmbeddedSettings {
        data_dir: dir.path().to_owned(),
        event_retention: 100,
    };
    let store = Store::Embedded(EmbeddedStore::open(&settings).unwrap());
    lanes_with_deliveries(&store).await;
    // As the earlier release stored them: due since their enqueueing.
    let db = rusqlite::Connection::open(settings.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = db
        .execute(
            "UPDATE webhook_deliveries SET due_at = ?1",
            [now_secs() * 1000 - 1000],
        )
        .unwrap();
    assert_eq!(changed, 4);
    drop(db);
    assert_eq!(
        claim_rounds(&store, 4).await,
        [vec!["e1", "e4"], vec!["e2"], vec!["e3"], vec![]]
    );
}

/// Rotations and changes sent at once are all applied (each is computed again from the document
/// another one replaced): every request answers 200, the deliveries are signed with the last
/// two rotated secrets, and the description is the one of a request.
async fn concurrent_rotations_and_changes_are_each_applied(backend: Backend) {
    let app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    let id = subscribe_incoming(&app, &receiver).await;
    let rotate = format!("/v1/webhooks/{id}/rotate");
    let patch = format!("/v1/webhooks/{id}");
    let rotations = (0..4).map(|_| send_json(&app, reqwest::Method::POST, &rotate, None));
    let descriptions: Vec<String> = (0..4).map(|i| format!("change {i}")).collect();
    let changes = descriptions.iter().map(|d| {
        send_json(
            &app,
            reqwest::Method::PATCH,
            &patch,
            Some(json!({"description": d})),
        )
    });
    let (rotated, changed) = tokio::join!(
        futures_util::future::join_all(rotations),
        futures_util::future::join_all(changes)
    );
    for (status, body) in rotated.iter().chain(&changed) {
        assert_eq!(*status, 200, "{body}");
    }
    let secrets: Vec<String> = rotated
        .iter()
        .map(|(_, body)| body["secret"].as_str().unwrap().to_owned())
        .collect();
    let sub = app.get_json(&patch).await;
    assert!(
        descriptions.iter().any(|d| sub["description"] == *d),
        "{sub}"
    );
    receiver
        .state
        .secrets
        .lock()
        .unwrap()
        .extend(secrets.clone());
    app.post_webhook_ok(&message_from("wamid.cas1", KERRY, "hi"))
        .await;
    let got = receiver.wait_delivered(1).await;
    assert_eq!(got[0].signatures.len(), 2, "{:?}", got[0]);
    assert_eq!(got[0].verified_by.len(), 2, "{:?}", got[0]);
    assert!(
        got[0].verified_by.iter().all(|s| secrets.contains(s)),
        "signed with rotated secrets only (4 rotations applied): {:?}",
        got[0].verified_by
    );
}

async fn retries_survive_a_restart(backend: Backend) {
    let mut app = hook_app(backend, "1500ms").await;
    let receiver = Receiver::start(SECRET).await;
    receiver.script_statuses(&[503]);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.s1", KERRY, "hi"))
        .await;
    receiver.wait_got(1).await;
    app.restart().await;
    let got = receiver.wait_delivered(1).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].id, got[0].id);
    let log = attempt_log(&app, &id, 2).await;
    let outcomes: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "retry"], "{log}");
}

/// A graceful stop while events are being attempted straight from the log, in two pages: the
/// attempts in flight finish and are recorded, the event waiting behind one of them (same
/// contact, in the later page) is stored and goes out after the restart; nothing is sent twice.
/// A new event is attempted while an earlier page still waits for a slow answer.
async fn a_graceful_stop_records_the_attempts_in_flight_and_stores_the_rest(backend: Backend) {
    let mut app = hook_app(backend, "100ms").await;
    let receiver = Receiver::start(SECRET).await;
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(1500);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&webhook_with(vec![
        text_message("wamid.g1", KERRY, "first"),
        text_message("wamid.g3", ANA, "other contact"),
    ]))
    .await;
    // g1 and g3 are in flight (the receiver answers after 1.5 s).
    receiver.wait_got(2).await;
    // A second page: Lea's event goes out at once, Kerry's second waits behind g1.
    app.post_webhook_ok(&webhook_with(vec![
        text_message("wamid.g2", KERRY, "second"),
        text_message("wamid.g4", LEA, "third contact"),
    ]))
    .await;
    let got = receiver.wait_got(3).await;
    assert_eq!(got[2].body["data"]["id"], "wamid.g4");
    assert!(
        got[2].received.duration_since(got[0].received) < Duration::from_millis(1200),
        "not held up by the first page's slow answers"
    );
    app.restart().await;
    *receiver.state.delay.lock().unwrap() = Duration::ZERO;
    let got = receiver.wait_delivered(4).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.body["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "each once: {ids:?}");
    assert_eq!(ids[3], "wamid.g2", "{ids:?}");
    let log = attempt_log(&app, &id, 4).await;
    assert_eq!(log["pending"], 0, "{log}");
    // The new process made one attempt, of the stored delivery.
    assert_eq!(
        attempt_counts(&app).await,
        counts(&[("delivered", "queued", 1)])
    );
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 4);
}

async fn the_config_subscription_comes_from_config_env(backend: Backend) {
    let receiver = Receiver::start(SECRET).await;
    let url = receiver.url.clone();
    let mut app = spawn_app_with(backend, move |vars| {
        vars.insert("WEBHOOK_ALLOW_PRIVATE".into(), "true".into());
        vars.insert("WEBHOOK_URL".into(), url);
        vars.insert("WEBHOOK_SECRET".into(), SECRET.into());
        vars.insert("WEBHOOK_EVENTS".into(), "message_incoming".into());
    })
    .await;
    let list = app.get_json("/v1/webhooks").await;
    assert_eq!(list["data"][0]["id"], "config", "{list}");
    assert_eq!(list["data"][0]["managed_by"], "config");
    assert_eq!(list["data"][0]["events"], json!(["message_incoming"]));
    app.post_webhook_ok(&message_from("wamid.c1", KERRY, "hi"))
        .await;
    let got = receiver.wait_delivered(1).await;
    assert_eq!(got[0].verified_by, [SECRET]);
    for (method, path) in [
        (reqwest::Method::PATCH, "/v1/webhooks/config"),
        (reqwest::Method::DELETE, "/v1/webhooks/config"),
        (reqwest::Method::POST, "/v1/webhooks/config/rotate"),
    ] {
        let body = (method == reqwest::Method::PATCH)
            .then(|| json!({"url": "https://example.com/elsewhere", "enabled": false}));
        let (status, answer) = send_json(&app, method.clone(), path, body).await;
        assert_eq!(status, 409, "{method} {path}: {answer}");
        assert!(answer["detail"].as_str().unwrap().contains("WEBHOOK_URL"));
    }
    // Its settings live in config.env, but it can be paused and resumed here (after a 410 or a
    // long failure this is how it comes back).
    for enabled in [false, true] {
        let (status, view) = send_json(
            &app,
            reqwest::Method::PATCH,
            "/v1/webhooks/config",
            Some(json!({ "enabled": enabled })),
        )
        .await;
        assert_eq!(
            (status, view["enabled"].as_bool()),
            (200, Some(enabled)),
            "{view}"
        );
    }
    // Restarted with a new secret: the same subscription, signing with it.
    let fresh = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    app.vars.insert("WEBHOOK_SECRET".into(), fresh.into());
    receiver.state.secrets.lock().unwrap().push(fresh.into());
    app.restart().await;
    app.post_webhook_ok(&message_from("wamid.c2", KERRY, "again"))
        .await;
    let got = receiver.wait_delivered(2).await;
    assert_eq!(got[1].verified_by, [fresh]);
    // Without WEBHOOK_URL the subscription is gone at the next start.
    for key in ["WEBHOOK_URL", "WEBHOOK_SECRET", "WEBHOOK_EVENTS"] {
        app.vars.remove(key);
    }
    app.restart().await;
    assert_eq!(app.get_json("/v1/webhooks").await["data"], json!([]));
}

async fn subscriptions_are_validated_and_filtered(backend: Backend) {
    // Without WEBHOOK_ALLOW_PRIVATE.
    let app = spawn_app(backend).await;
    for (body, field, says) in [
        (json!({}), "url", "required"),
        (json!({"url": "http://127.0.0.1:9/h"}), "url", "loopback"),
        (json!({"url": "http://[::1]/h"}), "url", "loopback"),
        (
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
            "url",
            "link-local",
        ),
        (json!({"url": "http://localhost:9/h"}), "url", "loopback"),
        (json!({"url": "ftp://example.com/h"}), "url", "http"),
        (
            json!({"url": "https://example.com/h", "events": ["message incoming"]}),
            "events",
            "letters",
        ),
        (
            json!({"url": "https://example.com/h", "events": []}),
            "events",
            "at least one",
        ),
        (
            json!({"url": "https://example.com/h", "secret": "hunter2"}),
            "secret",
            "whsec_",
        ),
        (
            json!({"url": "https://example.com/h", "phone_number_id": "a b"}),
            "phone_number_id",
            "letters",
        ),
    ] {
        let (status, answer) = create(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(
            answer["detail"][0]["loc"],
            json!(["body", field]),
            "{body}: {answer}"
        );
        assert!(
            answer["detail"][0]["msg"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
        assert!(
            !answer.to_string().contains("hunter2"),
            "the secret is never echoed"
        );
    }
    let (status, answer) = create(
        &app,
        json!({"url": "https://example.com/h", "colour": "red"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let list = app.get_json("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "nothing partial was stored");
    for path in [
        "/v1/webhooks/wh_0123",
        "/v1/webhooks/nonsense",
        "/v1/webhooks/wh_0123/deliveries",
    ] {
        let (status, _) = send_json(&app, reqwest::Method::GET, path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    // A name that resolves to loopback passes creation but is refused at delivery time, after
    // DNS. (Names from /etc/hosts, so no network is needed.)
    let mut name = None;
    for candidate in ["runsc", "vm", "ip6-localhost", "ip6-loopback"] {
        if let Ok(mut addrs) = tokio::net::lookup_host((candidate, 80)).await
            && addrs.next().is_some_and(|a| a.ip().is_loopback())
        {
            name = Some(candidate);
            break;
        }
    }
    let name =
        name.expect("a name of /etc/hosts that resolves to loopback (runsc, vm or ip6-localhost)");
    let receiver = Receiver::start(SECRET).await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_owned();
    let (status, sub) = create(&app, json!({"url": format!("http://{name}:{port}/hook"), "secret": SECRET, "events": ["message_incoming"]})).await;
    assert_eq!(status, 201, "{sub}");
    let id = sub["id"].as_str().unwrap().to_owned();
    // A filter by number: another number's events are not delivered.
    let (_, other) = create(
        &app,
        json!({"url": "https://example.com/h", "phone_number_id": "999", "enabled": false}),
    )
    .await;
    assert_eq!(other["enabled"], false);
    app.post_webhook_ok(&message_from("wamid.p1", KERRY, "hi"))
        .await;
    let log = eventually("an attempt refused", || async {
        let log = app.get_json(&format!("/v1/webhooks/{id}/deliveries")).await;
        (!log["data"].as_array().unwrap().is_empty()).then_some(log)
    })
    .await;
    let error = log["data"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("target refused") && error.contains("127.0.0.1"),
        "{log}"
    );
    assert_eq!(log["data"][0]["status"], Value::Null);
    assert!(
        receiver.got().is_empty(),
        "nothing reached the loopback receiver"
    );
    let (status, answer) = send_json(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhooks/{id}/deliveries?limit=0"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    for field in ["url", "enabled"] {
        let (status, answer) = send_json(
            &app,
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({ field: null })),
        )
        .await;
        assert_eq!(
            status, 422,
            "{field}: null is refused, not ignored: {answer}"
        );
        assert_eq!(
            answer["detail"][0]["loc"],
            json!(["body", field]),
            "{answer}"
        );
    }
    // Delete: gone, with its deliveries.
    let (status, _) = send_json(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send_json(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

async fn redirects_fail_retry_after_is_honoured_and_answers_are_cut_at_a_kib(backend: Backend) {
    let app = hook_app(backend, "100ms,100ms,100ms").await;
    let receiver = Receiver::start(SECRET).await;
    let reply = |status, retry_after, long_body| Reply {
        status,
        retry_after,
        long_body,
    };
    receiver.script(vec![
        reply(302, None, None),
        reply(429, Some("2"), None),
        reply(500, None, Some(10_000)),
    ]);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.x1", KERRY, "hi"))
        .await;
    let got = receiver.wait_delivered(1).await;
    let answered: Vec<u16> = got.iter().map(|g| g.answered).collect();
    assert_eq!(answered, [302, 429, 500, 200], "a redirect is not followed");
    // Retry-After (2 s) outweighs the schedule's 100 ms.
    let waited = got[2].received - got[1].received;
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(got[1].received - got[0].received < Duration::from_millis(1500));
    let log = attempt_log(&app, &id, 4).await;
    let attempts = log["data"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "retry", "retry", "retry"], "{log}");
    let redirect = &attempts[3];
    assert_eq!(redirect["status"], 302);
    assert!(
        redirect["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{redirect}"
    );
    let throttled = &attempts[2];
    assert!(
        throttled["next_attempt_at"].as_i64().unwrap() >= throttled["at"].as_i64().unwrap() + 2,
        "{throttled}"
    );
    assert_eq!(
        attempts[1]["response"].as_str().unwrap().len(),
        1024,
        "the answer is cut at 1 KiB"
    );
}

async fn a_subscription_failing_too_long_is_disabled_with_an_event(backend: Backend) {
    let schedule = "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms";
    let app = hook_app_with(backend, schedule, |vars| {
        vars.insert("WEBHOOK_DISABLE_AFTER".into(), "1s".into());
    })
    .await;
    let receiver = Receiver::start(SECRET).await;
    receiver.otherwise(500);
    // Slow answers: both lanes' attempts are in flight together when one disables.
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(200);
    let id = subscribe_incoming(&app, &receiver).await;
    // Two contacts: two lanes failing side by side.
    app.post_webhook_ok(&message_from("wamid.d1", KERRY, "hi"))
        .await;
    app.post_webhook_ok(&message_from("wamid.d2", ANA, "hi"))
        .await;
    let view = disabled(&app, &id).await;
    assert_eq!(
        view["disabled_reason"], "every delivery failed for 1s",
        "{view}"
    );
    assert_eq!(view["pending_deliveries"], 2, "the deliveries wait: {view}");
    let attempts = receiver.got().len();
    assert!(
        (4..=16).contains(&attempts),
        "disabled after one to two seconds of failures: {attempts}"
    );
    // One event, however many lanes were failing.
    let start = match backend {
        Backend::Redis => "0-0",
        Backend::Embedded => "0",
    };
    let mut sse = Sse::open(
        &app,
        &format!("?after={start}&types=webhook_disabled"),
        None,
    )
    .await;
    let mut disabled = Vec::new();
    while disabled.is_empty() {
        let frame = sse.events(1).await.remove(0);
        if frame.kind() == "webhook_disabled" {
            disabled.push(frame.json());
        }
    }
    sse.assert_quiet(Duration::from_millis(700)).await;
    assert_eq!(disabled[0]["data"]["id"], id.as_str());
    assert_eq!(
        disabled[0]["data"]["reason"],
        "every delivery failed for 1s"
    );
    assert_eq!(
        receiver.got().len(),
        attempts,
        "nothing more while disabled"
    );
    // Enabled again with a working receiver, both waiting deliveries go out.
    receiver.otherwise(200);
    *receiver.state.delay.lock().unwrap() = Duration::ZERO;
    let (status, _) = enable(&app, &id).await;
    assert_eq!(status, 200);
    let got = receiver.wait_delivered(2).await;
    let mut delivered: Vec<&str> = got
        .iter()
        .filter(|g| g.answered == 200)
        .map(|g| g.body["data"]["id"].as_str().unwrap())
        .collect();
    delivered.sort();
    assert_eq!(delivered, ["wamid.d1", "wamid.d2"]);
}

async fn deleting_a_subscription_stops_its_deliveries(backend: Backend) {
    let app = hook_app(backend, "300ms,300ms,300ms,300ms,300ms").await;
    let receiver = Receiver::start(SECRET).await;
    receiver.otherwise(500);
    let id = subscribe_incoming(&app, &receiver).await;
    app.post_webhook_ok(&message_from("wamid.del1", KERRY, "hi"))
        .await;
    eventually("a first failed attempt", || async {
        (!receiver.got().is_empty()).then_some(())
    })
    .await;
    let (status, _) = send_json(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let seen = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.got().len(), seen, "no retry after the delete");
    if backend == Backend::Redis {
        // Nothing of it is left in the shared schedule.
        let due: i64 = app
            .redis_connection()
            .await
            .zcard("test:hooks:due")
            .await
            .unwrap();
        assert_eq!(due, 0);
    }
}

/// Redis is down when the gateway starts with a new WEBHOOK_URL: the subscription is installed
/// once Redis is back, without a restart of the gateway.
#[tokio::test]
async fn the_config_subscription_is_installed_once_the_store_answers() {
    let receiver = Receiver::start(SECRET).await;
    let mut app = hook_app(Backend::Redis, "100ms").await;
    app.redis().kill();
    app.vars.insert("WEBHOOK_URL".into(), receiver.url.clone());
    app.vars.insert("WEBHOOK_SECRET".into(), SECRET.into());
    app.restart().await;
    app.redis().restart();
    let list = eventually("config.env's subscription installed", || async {
        let response = app.http.get(app.url("/v1/webhooks")).send().await.ok()?;
        let list: Value = response.json().await.ok()?;
        (list["data"][0]["id"] == "config").then_some(list)
    })
    .await;
    assert_eq!(list["data"][0]["managed_by"], "config");
    app.post_webhook_ok(&message_from("wamid.late1", KERRY, "hi"))
        .await;
    let got = receiver.wait_delivered(1).await;
    assert_eq!(got[0].verified_by, [SECRET]);
}
