//! The live event stream: `GET /v1/events` (SSE) and `GET /v1/ws` (WebSocket), over real HTTP, on
//! both backends (a real redis-server; SQLite in a temp dir). Every wait is bounded.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::contract_tests;
use crate::helpers::*;

/// Longest wait for anything that should happen "at once".
const WAIT: Duration = Duration::from_secs(10);
/// A second business number.
const OTHER_PHONE_NUMBER_ID: &str = "999888777666";
const ALICE: &str = "919216598210";
const BOB: &str = "14155550123";

/// One SSE frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frame {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) comments: Vec<String>,
}

impl Frame {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data line")).expect("JSON data")
    }

    pub(crate) fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// An open SSE response, parsed frame by frame.
pub(crate) struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Sse {
    pub(crate) async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Self {
        let response = Self::request(app, query, last_event_id).await;
        assert_eq!(response.status(), 200, "GET /v1/events{query}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    async fn request(app: &TestApp, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = app.http.get(app.url(&format!("/v1/events{query}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the stream answers")
            .unwrap()
    }

    /// The next frame (events and comments alike), `None` when the stream ended.
    async fn next_frame(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(&String::from_utf8(raw).unwrap()));
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => panic!("no SSE frame within {within:?}"),
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None) | Err(_)) => return None,
            }
        }
    }

    /// The next frame that is not only a comment (a heartbeat).
    async fn next_event(&mut self, within: Duration) -> Frame {
        loop {
            let frame = self.next_frame(within).await.expect("the stream is open");
            if frame.event.is_some() || frame.data.is_some() {
                return frame;
            }
        }
    }

    pub(crate) async fn events(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(self.next_event(WAIT).await);
        }
        frames
    }

    /// Asserts that no event (comments aside) arrives for `quiet`.
    pub(crate) async fn assert_quiet(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let next = tokio::time::timeout(left, self.next_frame(quiet + WAIT)).await;
            match next {
                Err(_) => return,
                Ok(Some(frame)) if frame.event.is_none() && frame.data.is_none() => {}
                Ok(other) => panic!("expected no event, got {other:?}"),
            }
        }
    }
}

fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame::default();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => frame.id = Some(value),
            "event" => frame.event = Some(value),
            "data" => {
                frame.data = Some(match frame.data.take() {
                    Some(previous) => format!("{previous}\n{value}"),
                    None => value,
                })
            }
            _ => {}
        }
    }
    frame
}

/// An event id as an ordered tuple: `[ms, seq, index]` on Redis, `[n]` on SQLite.
fn order(id: &str) -> Vec<u64> {
    id.split('-').map(|part| part.parse().unwrap()).collect()
}

/// Asserts that `frames` are events with ids strictly increasing, each equal to its envelope's.
fn assert_increasing(frames: &[Frame]) {
    let mut previous = None;
    for frame in frames {
        let id = frame.id.as_deref().expect("an event id");
        assert_eq!(frame.json()["id"], id, "envelope id of {frame:?}");
        let key = order(id);
        if let Some(previous) = previous {
            assert!(key > previous, "ids not increasing: {frames:?}");
        }
        previous = Some(key);
    }
}

/// The `(type, message id)` of each event (`data.id`, or `data.last_message_id`).
fn summary(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|f| {
            let data = &f.json()["data"];
            let id = data["id"]
                .as_str()
                .or(data["last_message_id"].as_str())
                .unwrap_or_default();
            (f.kind().to_owned(), id.to_owned())
        })
        .collect()
}

fn pair(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}

/// A notification on `phone_number_id` carrying `messages`.
fn webhook_on(phone_number_id: &str, messages: Vec<Value>) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15551713917", "phone_number_id": phone_number_id },
            "messages": messages,
        }}]}]
    })
    .to_string()
}

/// Posts one text message from `from` with id `id`.
async fn post_message(app: &TestApp, id: &str, from: &str) {
    app.post_webhook_ok(&webhook_with(vec![text_message(id, from, "hi")]))
        .await;
}

async fn webhook_events_arrive_in_order_with_the_envelope(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "", None).await;

    post_message(&app, "wamid.A1", ALICE).await;

    let frames = sse.events(2).await;
    assert_increasing(&frames);
    assert_eq!(
        summary(&frames),
        [
            pair("message_incoming", "wamid.A1"),
            pair("conversation_updated", "wamid.A1")
        ]
    );
    let incoming = frames[0].json();
    assert_eq!(
        incoming.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["data", "id", "type"]
    );
    assert_eq!(incoming["type"], "message_incoming");
    let data = &incoming["data"];
    assert_eq!(data["direction"], "inbound");
    assert_eq!(data["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(data["contact"]["id"], ALICE);
    assert_eq!(data["body"], "hi");
    assert_eq!(data["raw"]["id"], "wamid.A1");
    let conversation = &frames[1].json()["data"];
    assert_eq!(conversation["contact"]["id"], ALICE);
    assert_eq!(conversation["message_count"], 1);
    assert_eq!(conversation["unread_count"], 1);
    sse.assert_quiet(Duration::from_millis(300)).await;
}

async fn resume_with_last_event_id_gets_exactly_the_missed_events_then_live_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut first = Sse::open(&app, "", None).await;
    post_message(&app, "wamid.R1", ALICE).await;
    let seen = first.events(2).await;
    let cursor = seen[1].id.clone().unwrap();
    drop(first);

    // Missed while disconnected.
    post_message(&app, "wamid.R2", BOB).await;
    post_message(&app, "wamid.R3", ALICE).await;

    let mut resumed = Sse::open(&app, "", Some(&cursor)).await;
    let mut frames = resumed.events(4).await;
    post_message(&app, "wamid.R4", BOB).await;
    frames.extend(resumed.events(2).await);
    assert_eq!(
        summary(&frames),
        [
            pair("message_incoming", "wamid.R2"),
            pair("conversation_updated", "wamid.R2"),
            pair("message_incoming", "wamid.R3"),
            pair("conversation_updated", "wamid.R3"),
            pair("message_incoming", "wamid.R4"),
            pair("conversation_updated", "wamid.R4"),
        ]
    );
    assert_increasing(&[&seen[..], &frames[..]].concat());
    resumed.assert_quiet(Duration::from_millis(300)).await;

    // `?after=` does the same; Last-Event-ID (what EventSource sends on reconnect) wins over it.
    let mut by_query = Sse::open(&app, &format!("?after={cursor}"), None).await;
    assert_eq!(summary(&by_query.events(6).await), summary(&frames));
    let newest = frames[5].id.clone().unwrap();
    let mut both = Sse::open(&app, &format!("?after={cursor}"), Some(&newest)).await;
    both.assert_quiet(Duration::from_millis(300)).await;
}

async fn resume_while_webhooks_keep_arriving_has_no_gap_and_no_duplicate(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let mut first = Sse::open(&app, "?types=message_incoming", None).await;
    const TOTAL: usize = 40;
    let poster = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                post_message(&app, &format!("wamid.G{i}"), ALICE).await;
            }
        })
    };
    let mut frames = first.events(5).await;
    let cursor = frames[4].id.clone().unwrap();
    drop(first);
    let mut resumed = Sse::open(&app, "?types=message_incoming", Some(&cursor)).await;
    frames.extend(resumed.events(TOTAL - 5).await);
    tokio::time::timeout(WAIT, poster).await.unwrap().unwrap();
    resumed.assert_quiet(Duration::from_millis(300)).await;

    assert_increasing(&frames);
    let ids: Vec<String> = summary(&frames).into_iter().map(|(_, id)| id).collect();
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("wamid.G{i}")).collect();
    assert_eq!(ids, expected, "every message once, in order");
}

async fn filters_select_by_contact_phone_number_id_and_types(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut by_contact = Sse::open(&app, "?contact=%2B91%2092165-98210", None).await;
    let mut by_number = Sse::open(
        &app,
        &format!("?phone_number_id={OTHER_PHONE_NUMBER_ID}"),
        None,
    )
    .await;
    let mut by_type = Sse::open(&app, "?types=conversation_updated", None).await;
    let mut combined = Sse::open(
        &app,
        &format!("?types=webhook_error,%20message_incoming&phone_number_id={PHONE_NUMBER_ID}"),
        None,
    )
    .await;

    app.post_webhook_ok(&webhook_on(
        PHONE_NUMBER_ID,
        vec![text_message("wamid.FA", ALICE, "a")],
    ))
    .await;
    app.post_webhook_ok(&webhook_on(
        OTHER_PHONE_NUMBER_ID,
        vec![text_message("wamid.FB", BOB, "b")],
    ))
    .await;
    // A message without an id cannot be attributed: quarantined, announced as webhook_error.
    app.post_webhook_ok(&webhook_on(
        PHONE_NUMBER_ID,
        vec![json!({ "from": ALICE, "type": "text" })],
    ))
    .await;
    // A status of Alice's message: a message_status event with her as the contact.
    let status = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID },
            "statuses": [{ "id": "wamid.FA", "status": "delivered", "timestamp": "1757936800", "recipient_id": ALICE }],
        }}]}]
    });
    app.post_webhook_ok(&status.to_string()).await;

    assert_eq!(
        summary(&by_contact.events(3).await),
        [
            pair("message_incoming", "wamid.FA"),
            pair("conversation_updated", "wamid.FA"),
            pair("message_status", "wamid.FA"),
        ]
    );
    assert_eq!(
        summary(&by_number.events(2).await),
        [
            pair("message_incoming", "wamid.FB"),
            pair("conversation_updated", "wamid.FB")
        ]
    );
    assert_eq!(
        summary(&by_type.events(2).await),
        [
            pair("conversation_updated", "wamid.FA"),
            pair("conversation_updated", "wamid.FB")
        ]
    );
    let frames = combined.events(2).await;
    assert_eq!(frames[0].kind(), "message_incoming");
    assert_eq!(frames[1].kind(), "webhook_error");
    let error = &frames[1].json()["data"];
    assert_eq!(error["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(error["path"], "entry[0].changes[0].value.messages[0].id");
    for stream in [&mut by_contact, &mut by_number, &mut by_type, &mut combined] {
        stream.assert_quiet(Duration::from_millis(200)).await;
    }
}

async fn invalid_cursors_and_filters_are_422(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in [
        "?after=abc",
        "?after=1-2-3-4",
        "?contact=12ab",
        "?phone_number_id=a:b",
        &format!("?types={}", "t,".repeat(100)),
    ] {
        let response = Sse::request(&app, query, None).await;
        assert_eq!(response.status(), 422, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"][0], "query", "{query}: {body}");
    }
    let response = Sse::request(&app, "", Some("not an id")).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["header", "last-event-id"]));
}

async fn a_cursor_older_than_the_retained_window_gets_reset_first(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_RETENTION".into(), "100".into());
    })
    .await;
    let mut first = Sse::open(&app, "", None).await;
    post_message(&app, "wamid.OLD", ALICE).await;
    let cursor = first.events(2).await[0].id.clone().unwrap();
    drop(first);
    // 250 writes of 2 events each: far past a retention of 100 events (SQLite rows) or 100
    // writes (Redis entries, trimmed by whole nodes of 100 entries). (A single write of more
    // events than the retention would trim some of its own events before anyone could read
    // them: live clients would get a reset too.)
    for n in 0..250 {
        post_message(&app, &format!("wamid.T{n}"), ALICE).await;
    }
    let newest = match backend {
        // The newest entry's last event.
        Backend::Redis => {
            let entries: Vec<(String, Vec<(String, String)>)> = app
                .redis
                .as_ref()
                .unwrap()
                .query(
                    redis::cmd("XREVRANGE")
                        .arg("test:events")
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1),
                )
                .await;
            format!("{}-{}", entries[0].0, entries[0].1.len() - 1)
        }
        // 2 events of wamid.OLD, then 250 x 2.
        Backend::Embedded => "502".to_owned(),
    };

    let mut resumed = Sse::open(&app, "", Some(&cursor)).await;
    let reset = resumed.next_event(WAIT).await;
    assert_eq!(reset.kind(), "reset");
    assert!(reset.id.is_none(), "a reset has no id: {reset:?}");
    let envelope = reset.json();
    assert_eq!(envelope["type"], "reset");
    assert_eq!(envelope["data"]["reason"], "cursor_expired");
    assert_eq!(envelope["data"]["cursor"], cursor.as_str());
    assert!(
        envelope["data"]["detail"]
            .as_str()
            .unwrap()
            .contains("REST API")
    );
    // Then the oldest retained event onwards, up to the newest.
    let mut frames = vec![resumed.next_event(WAIT).await];
    while frames.last().unwrap().id.as_deref() != Some(newest.as_str()) {
        frames.push(resumed.next_event(WAIT).await);
    }
    assert_increasing(&frames);
    assert!(order(frames[0].id.as_deref().unwrap()) > order(&cursor));
    assert!(
        frames.len() >= 100 && frames.len() < 502,
        "{} events",
        frames.len()
    );
    assert_eq!(frames.last().unwrap().kind(), "conversation_updated");
    resumed.assert_quiet(Duration::from_millis(200)).await;

    // A cursor ahead of the log (another store, or one that was reset) gets reset too.
    let ahead = match backend {
        Backend::Redis => "99999999999999-0-0",
        Backend::Embedded => "99999999",
    };
    let mut unknown = Sse::open(&app, "", Some(ahead)).await;
    let reset = unknown.next_event(WAIT).await;
    assert_eq!(reset.kind(), "reset");
    assert_eq!(reset.json()["data"]["reason"], "unknown_cursor");
}

/// A WebSocket client to `/v1/ws<query>`.
async fn open_ws(
    app: &TestApp,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/v1/ws{query}", app.address.replacen("http", "ws", 1));
    let (socket, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("the handshake completes")
        .expect("the handshake succeeds");
    assert_eq!(response.status(), 101);
    socket
}

/// The next WebSocket message that is not a ping or pong.
async fn next_ws<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> tungstenite::Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a valid message");
        if !matches!(
            message,
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)
        ) {
            return message;
        }
    }
}

fn text(message: tungstenite::Message) -> String {
    match message {
        tungstenite::Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn websocket_receives_the_same_envelopes_and_resumes_with_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "", None).await;
    let mut ws = open_ws(&app, "").await;

    post_message(&app, "wamid.W1", ALICE).await;

    let frames = sse.events(2).await;
    let messages = [text(next_ws(&mut ws).await), text(next_ws(&mut ws).await)];
    for (frame, message) in frames.iter().zip(&messages) {
        assert_eq!(
            frame.data.as_deref(),
            Some(message.as_str()),
            "same envelope"
        );
    }
    let cursor = frames[1].id.clone().unwrap();
    drop(ws);

    post_message(&app, "wamid.W2", BOB).await;
    let mut resumed = open_ws(&app, &format!("?after={cursor}&types=message_incoming")).await;
    let envelope: Value = serde_json::from_str(&text(next_ws(&mut resumed).await)).unwrap();
    assert_eq!(envelope["type"], "message_incoming");
    assert_eq!(envelope["data"]["id"], "wamid.W2");
    assert!(order(envelope["id"].as_str().unwrap()) > order(&cursor));
    post_message(&app, "wamid.W3", BOB).await;
    let envelope: Value = serde_json::from_str(&text(next_ws(&mut resumed).await)).unwrap();
    assert_eq!(envelope["data"]["id"], "wamid.W3");
}

async fn heartbeats_arrive_on_an_idle_stream(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_HEARTBEAT_SECS".into(), "1".into());
        // The request timeout bounds the handler, never a stream's body.
        vars.insert("REQUEST_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let mut sse = Sse::open(&app, "", None).await;
    let started = Instant::now();
    let frame = sse.next_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(frame.comments, ["keep-alive"], "{frame:?}");
    assert!(frame.event.is_none() && frame.data.is_none());
    assert!(started.elapsed() >= Duration::from_millis(500));
    for _ in 0..2 {
        let frame = sse.next_frame(Duration::from_secs(5)).await.unwrap();
        assert_eq!(frame.comments, ["keep-alive"]);
    }
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "open past REQUEST_TIMEOUT_SECS"
    );

    let mut ws = open_ws(&app, "").await;
    let ping = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a ping in time")
        .unwrap()
        .unwrap();
    assert!(matches!(ping, tungstenite::Message::Ping(_)), "{ping:?}");
}

async fn shutdown_ends_open_streams_promptly(backend: Backend) {
    let mut app = spawn_app_with(backend, |vars| {
        vars.insert("SHUTDOWN_GRACE_SECS".into(), "30".into());
    })
    .await;
    let mut sse = Sse::open(&app, "", None).await;
    let mut ws = open_ws(&app, "").await;
    // A stream that has replayed a backlog and is live.
    post_message(&app, "wamid.S1", ALICE).await;
    sse.events(2).await;

    let took = app.stop(Duration::from_secs(15)).await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        sse.next_frame(Duration::from_secs(5)).await.is_none(),
        "the SSE stream ended"
    );
    loop {
        match next_ws(&mut ws).await {
            tungstenite::Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            tungstenite::Message::Text(_) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn streams_have_their_own_cap_and_hold_no_client_slot(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("MAX_EVENT_STREAMS".into(), "2".into());
        vars.insert("CLIENT_CONCURRENCY_LIMIT".into(), "1".into());
        vars.insert("EVENT_HEARTBEAT_SECS".into(), "1".into());
    })
    .await;
    let first = Sse::open(&app, "", None).await;
    let _second = open_ws(&app, "").await;
    let refused = Sse::request(&app, "", None).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("MAX_EVENT_STREAMS"),
        "{body}"
    );
    // Open streams hold no CLIENT_CONCURRENCY_LIMIT slot: the client API still answers.
    assert_eq!(app.post_get(json!({ "number": ALICE })).await.status(), 200);
    assert_eq!(app.get_status("/metrics").await, 200);

    // A closed stream gives its slot back.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let response = Sse::request(&app, "", None).await;
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_stalled_client_is_disconnected_while_webhooks_stay_fast(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_CLIENT_BUFFER".into(), "4".into());
    })
    .await;
    // A client with a tiny receive window that sends its request and never reads.
    let mut stalled = small_window_connection(&app).await;
    stalled
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while app.metric("whatsapp_gateway_event_streams_open").await < 1.0 {
        assert!(Instant::now() < deadline, "the stream did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 200 webhooks with large messages (several MB of events for the stalled client).
    let text = "x".repeat(8000);
    let mut latencies = Vec::with_capacity(200);
    for i in 0..200 {
        let body = webhook_with(vec![text_message(&format!("wamid.L{i}"), ALICE, &text)]);
        let started = Instant::now();
        let response = app.post_webhook(&body).await;
        latencies.push(started.elapsed());
        assert_eq!(response.status(), 200);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");

    // The stalled client was cut off (after LAG_GRACE), its stream slot freed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.metric("whatsapp_gateway_event_streams_open").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled stream is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"whatsapp_gateway_event_streams_ended_total{reason="lagged"} 1"#),
        "{metrics}"
    );
    // Its connection is closed: reading it reaches the end.
    let mut sink = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(WAIT, async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection was not closed");
}

/// A TCP connection to `app` with a tiny receive window (so a client that does not read stalls
/// the server's writes after a few kilobytes).
async fn small_window_connection(app: &TestApp) -> tokio::net::TcpStream {
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(address).await.unwrap()
}

/// Posts webhooks with large messages until the server reports a stream ended as `lagged`
/// (at most 300).
async fn post_until_lagged(app: &TestApp) {
    let text = "x".repeat(8000);
    for i in 0..300 {
        let body = webhook_with(vec![text_message(&format!("wamid.SL{i}"), ALICE, &text)]);
        assert_eq!(app.post_webhook(&body).await.status(), 200);
        let metrics = app.metrics_text().await;
        if metrics.contains(r#"event_streams_ended_total{reason="lagged"} 1"#) {
            return;
        }
    }
    panic!("the slow client never lagged");
}

async fn a_slow_sse_client_gets_a_final_lagged_error(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_CLIENT_BUFFER".into(), "4".into());
    })
    .await;
    let mut slow = small_window_connection(&app).await;
    slow.write_all(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while app.metric("whatsapp_gateway_event_streams_open").await < 1.0 {
        assert!(Instant::now() < deadline, "the stream did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post_until_lagged(&app).await;
    // Reading again (within LAG_GRACE): what was queued, the `error` frame, then the end of the
    // response (the last chunk; the connection itself may stay open for the next request).
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    tokio::time::timeout(WAIT, async {
        while !received.ends_with(b"\r\n0\r\n\r\n") {
            match slow.read(&mut buffer).await.unwrap() {
                0 => break,
                n => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the stream ends");
    let received = String::from_utf8_lossy(&received);
    let last_frame = received.rsplit("event: ").next().unwrap();
    assert!(last_frame.starts_with("error\n"), "{last_frame}");
    assert!(last_frame.contains(r#""reason":"lagged""#), "{last_frame}");
    assert!(received.contains("event: message_incoming"));
}

async fn a_slow_websocket_client_is_closed_with_lagged(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_CLIENT_BUFFER".into(), "4".into());
    })
    .await;
    let stream = small_window_connection(&app).await;
    let url = format!("{}/v1/ws", app.address.replacen("http", "ws", 1));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .unwrap()
        .unwrap();
    post_until_lagged(&app).await;
    let mut events = 0;
    let error = loop {
        let message = text(next_ws(&mut ws).await);
        let envelope: Value = serde_json::from_str(&message).unwrap();
        if envelope["type"] == "error" {
            break envelope;
        }
        assert!(envelope["id"].is_string());
        events += 1;
    };
    assert!(events > 0);
    assert!(error.get("id").is_none());
    assert_eq!(error["data"]["reason"], "lagged");
    match next_ws(&mut ws).await {
        tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1013);
            assert_eq!(frame.reason.as_str(), "lagged");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

contract_tests!(
    webhook_events_arrive_in_order_with_the_envelope,
    resume_with_last_event_id_gets_exactly_the_missed_events_then_live_ones,
    resume_while_webhooks_keep_arriving_has_no_gap_and_no_duplicate,
    filters_select_by_contact_phone_number_id_and_types,
    invalid_cursors_and_filters_are_422,
    a_cursor_older_than_the_retained_window_gets_reset_first,
    websocket_receives_the_same_envelopes_and_resumes_with_after,
    heartbeats_arrive_on_an_idle_stream,
    shutdown_ends_open_streams_promptly,
    streams_have_their_own_cap_and_hold_no_client_slot,
    a_stalled_client_is_disconnected_while_webhooks_stay_fast,
    a_slow_sse_client_gets_a_final_lagged_error,
    a_slow_websocket_client_is_closed_with_lagged,
    taps_reactions_edits_and_deletions_have_their_own_events_and_so_do_reads_and_deletes,
    a_write_with_more_events_than_the_retention_reaches_live_clients_whole,
    echoes_are_outbound_messages_that_open_no_window,
    history_back_fill_is_stored_without_unread_window_or_message_events,
    other_notifications_are_kept_as_events_once_each,
    a_notice_value_is_kept_byte_for_byte,
    conversation_updated_has_one_shape_for_a_message_and_a_read,
    the_app_dashboard_test_samples_get_200,
    marketing_preferences_show_on_the_contact_latest_first,
);

async fn taps_reactions_edits_and_deletions_have_their_own_events_and_so_do_reads_and_deletes(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "", None).await;
    let at = |id: &str, ts: u32, rest: Value| {
        let mut m = json!({ "from": ALICE, "id": id, "timestamp": ts.to_string() });
        m.as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        m
    };
    let messages = vec![
        at(
            "wamid.O",
            100,
            json!({"type": "text", "text": {"body": "Menu?"}}),
        ),
        at(
            "wamid.B",
            101,
            json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}}),
        ),
        at(
            "wamid.L",
            102,
            json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r1", "title": "Row 1"}}}),
        ),
        at(
            "wamid.R",
            103,
            json!({"type": "reaction", "reaction": {"message_id": "wamid.O", "emoji": "👍"}}),
        ),
        at(
            "wamid.E",
            104,
            json!({"type": "edit", "edit": {"original_message_id": "wamid.O", "message": {"type": "text", "text": {"body": "Menu, please?"}}}}),
        ),
        at(
            "wamid.V",
            105,
            json!({"type": "revoke", "revoke": {"original_message_id": "wamid.O"}}),
        ),
    ];
    app.post_webhook_ok(&webhook_with(messages)).await;
    assert_eq!(
        summary(&sse.events(12).await),
        [
            pair("message_incoming", "wamid.O"),
            pair("message_incoming", "wamid.B"),
            pair("button_clicked", "wamid.B"),
            pair("message_incoming", "wamid.L"),
            pair("selection_made", "wamid.L"),
            pair("message_incoming", "wamid.R"),
            pair("reaction", "wamid.R"),
            pair("message_incoming", "wamid.E"),
            pair("message_edited", "wamid.E"),
            pair("message_incoming", "wamid.V"),
            pair("message_deleted", "wamid.V"),
            // Reactions, edits and deletions are not new messages of the conversation.
            pair("conversation_updated", "wamid.L"),
        ]
    );
    mark_read(&app, ALICE).await;
    let updated = sse.events(1).await;
    assert_eq!(updated[0].kind(), "conversation_updated");
    assert_eq!(updated[0].json()["data"]["unread_count"], 0);
    assert_eq!(updated[0].json()["data"]["message_count"], 3);
    assert_eq!(delete_conversation(&app, ALICE).await, 200);
    let gone = sse.events(1).await;
    assert_eq!(gone[0].kind(), "conversation_deleted");
    let data = &gone[0].json()["data"];
    assert_eq!(data["contact"]["id"], ALICE);
    assert_eq!(data["phone_number_id"], PHONE_NUMBER_ID);
    // Its 3 messages and the 3 that changed them: none stays readable.
    assert_eq!(data["messages_deleted"], 6);
    for id in ["wamid.O", "wamid.B", "wamid.R", "wamid.E", "wamid.V"] {
        let response = app
            .http
            .get(app.url(&format!("/v1/messages/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{id}");
    }
    sse.assert_quiet(Duration::from_millis(200)).await;
}

/// One delivery whose events outnumber EVENT_RETENTION: the store never trims the events of the
/// write that adds them, so a live client gets every one and no `reset`.
async fn a_write_with_more_events_than_the_retention_reaches_live_clients_whole(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_RETENTION".into(), "100".into());
    })
    .await;
    let mut sse = Sse::open(&app, "", None).await;
    app.post_webhook_ok(&webhook_with(numbered_messages("wamid.W", ALICE, 0, 150)))
        .await;
    let frames = sse.events(151).await;
    let kinds: Vec<&str> = frames.iter().map(Frame::kind).collect();
    assert!(!kinds.contains(&"reset"), "{kinds:?}");
    let incoming: Vec<String> = frames
        .iter()
        .filter(|f| f.kind() == "message_incoming")
        .map(|f| f.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..150).map(|i| format!("wamid.W{i}")).collect();
    assert_eq!(incoming, expected);
    assert_eq!(kinds[150], "conversation_updated");
}

#[tokio::test]
async fn a_webhook_on_one_instance_reaches_a_stream_on_another() {
    let a = spawn_app(Backend::Redis).await;
    let b = spawn_instance_sharing_redis(&a, |_| {}).await;
    let mut on_a = Sse::open(&a, "", None).await;
    let mut on_b = Sse::open(&b, "", None).await;
    let mut ws_on_b = open_ws(&b, "?types=message_incoming").await;

    post_message(&a, "wamid.X1", ALICE).await;
    post_message(&b, "wamid.X2", BOB).await;

    let expected = [
        pair("message_incoming", "wamid.X1"),
        pair("conversation_updated", "wamid.X1"),
        pair("message_incoming", "wamid.X2"),
        pair("conversation_updated", "wamid.X2"),
    ];
    let from_a = on_a.events(4).await;
    let from_b = on_b.events(4).await;
    assert_eq!(summary(&from_b), expected);
    assert_eq!(summary(&from_a), expected);
    let ids = |frames: &[Frame]| frames.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&from_a),
        ids(&from_b),
        "one log, the same ids everywhere"
    );
    let envelope: Value = serde_json::from_str(&text(next_ws(&mut ws_on_b).await)).unwrap();
    assert_eq!(envelope["data"]["id"], "wamid.X1");

    // B resumes from A's ids.
    let cursor = from_a[1].id.clone().unwrap();
    let mut resumed = Sse::open(&b, "", Some(&cursor)).await;
    assert_eq!(summary(&resumed.events(2).await), expected[2..]);
}

#[tokio::test]
async fn the_redis_reader_reconnects_after_redis_restarts() {
    let mut app = spawn_app(Backend::Redis).await;
    let mut sse = Sse::open(&app, "", None).await;
    post_message(&app, "wamid.B1", ALICE).await;
    sse.events(2).await;

    app.redis().restart();
    // Webhooks get 503 until the store reconnects; then the reader is back too.
    let deadline = Instant::now() + WAIT;
    loop {
        let response = app
            .post_webhook(&webhook_with(vec![text_message("wamid.B2", ALICE, "x")]))
            .await;
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted Redis lost the stream (no persistence here): the reader finds its last id
    // gone, so clients get reset, then the events written since.
    let reset = sse.next_event(WAIT).await;
    assert_eq!(reset.kind(), "reset");
    assert_eq!(reset.json()["data"]["reason"], "events_missed");
    let frames = sse.events(2).await;
    assert_eq!(
        summary(&frames),
        [
            pair("message_incoming", "wamid.B2"),
            pair("conversation_updated", "wamid.B2")
        ]
    );
}

#[tokio::test]
async fn streams_need_the_api_key_when_it_is_set() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("API_KEY".into(), "k-events".into());
    })
    .await;
    assert_eq!(app.get_status("/v1/events").await, 401);
    assert_eq!(app.get_status("/v1/ws").await, 401);
    let response = app
        .http
        .get(app.url("/v1/events"))
        .header("X-API-Key", "k-events")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut request = format!("{}/v1/ws", app.address.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer k-events".parse().unwrap());
    let (_socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
}

/// Without an API key, only the gateway's own pages may open the event stream: a page of
/// another site, or of another port on an allowed host (a dev server), is refused.
#[tokio::test]
async fn without_an_api_key_websockets_from_foreign_origins_are_refused() {
    let app = spawn_app(Backend::Embedded).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let other_port = if port == "3000" { "3001" } else { "3000" };
    let connect = |origin: String| {
        let mut request = format!("{}/v1/ws", app.address.replacen("http", "ws", 1))
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    for foreign in [
        "https://evil.example".to_owned(),
        format!("http://127.0.0.1:{other_port}"),
        "http://127.0.0.1".to_owned(),
    ] {
        match connect(foreign.clone()).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{foreign}")
            }
            other => panic!("expected 403 for {foreign}, got {other:?}"),
        }
    }
    assert!(connect(app.address.clone()).await.is_ok());
}

/// Without open streams the reader does not read the event log: webhooks cost Redis no `XREAD`.
/// The first stream wakes it; events after that stream opened reach it.
#[tokio::test]
async fn the_reader_reads_nothing_while_no_stream_is_open() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let xreads = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    // Let the reader settle into idling, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = xreads(redis.query(redis::cmd("INFO").arg("commandstats")).await);
    for i in 0..20 {
        post_message(&app, &format!("wamid.I{i}"), ALICE).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = xreads(redis.query(redis::cmd("INFO").arg("commandstats")).await);
    assert_eq!(after, before, "XREAD calls while no stream was open");
    let mut sse = Sse::open(&app, "", None).await;
    post_message(&app, "wamid.I99", ALICE).await;
    let frames = sse.events(2).await;
    assert_eq!(
        summary(&frames),
        [
            pair("message_incoming", "wamid.I99"),
            pair("conversation_updated", "wamid.I99")
        ]
    );
}

/// A notification with one change of `field` carrying `value`, on WABA `waba`.
fn change_webhook(waba: &str, field: &str, value: Value) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": waba, "time": 1731705721, "changes": [{ "field": field, "value": value }]}]
    })
    .to_string()
}

fn business_metadata() -> Value {
    json!({ "display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID })
}

/// `POST /v1/conversations/{contact}/read`, asserted 200: the conversation.
async fn mark_read(app: &TestApp, contact: &str) -> Value {
    let (status, answer) = post_read(app, contact).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn echoes_are_outbound_messages_that_open_no_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "?types=message_incoming,message_outgoing", None).await;
    let now = now_secs();
    let user = json!({ "from": ALICE, "id": "wamid.U1", "timestamp": (now - 120).to_string(),
                       "type": "text", "text": { "body": "Are you open?" } });
    app.post_webhook_ok(&webhook_with(vec![user])).await;
    let echo = change_webhook(
        "102290129340398",
        "smb_message_echoes",
        json!({
            "messaging_product": "whatsapp",
            "metadata": business_metadata(),
            "contacts": [{ "profile": { "username": "@kerry" }, "wa_id": ALICE,
                           "user_id": "US.13491208655302741918" }],
            "message_echoes": [{ "from": "15551713917", "to": ALICE,
                "to_user_id": "US.13491208655302741918", "id": "wamid.ECHO1",
                "timestamp": (now - 60).to_string(), "type": "text",
                "text": { "body": "On my way \u{1F697}" } }]
        }),
    );
    let answer = app.post_webhook_ok(&echo).await;
    assert_eq!(answer["stored"], 1, "{answer}");
    assert_eq!(
        app.post_webhook_ok(&echo).await["duplicates"],
        1,
        "a retry is a duplicate"
    );

    let frames = sse.events(2).await;
    assert_eq!(frames[0].kind(), "message_incoming");
    assert_eq!(frames[1].kind(), "message_outgoing");
    let record = &frames[1].json()["data"];
    assert_eq!(record["id"], "wamid.ECHO1");
    assert_eq!(record["direction"], "outbound");
    assert_eq!(record["source"], "business_app");
    assert_eq!(record["contact"]["id"], ALICE);
    assert_eq!(record["contact"]["username"], "@kerry");
    sse.assert_quiet(Duration::from_millis(200)).await;

    // One conversation: both messages counted, only the user's unread and opening the window;
    // the preview is the echo (the latest).
    let list = app.get_json("/v1/conversations").await;
    let conversation = &list["conversations"][0];
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(conversation["message_count"], 2, "{conversation}");
    assert_eq!(conversation["unread_count"], 1, "{conversation}");
    assert_eq!(
        conversation["window_expires_at"],
        now - 120 + 86_400,
        "{conversation}"
    );
    assert_eq!(conversation["last_message"], "On my way \u{1F697}");
    let history = app
        .get_json(&format!("/v1/conversations/{ALICE}/messages"))
        .await;
    let directions: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, ["inbound", "outbound"]);
    // The FastAPI list (POST /get) holds what the user sent, as the original did.
    assert_eq!(app.ids_of(ALICE).await, ["wamid.U1"]);
}

async fn history_back_fill_is_stored_without_unread_window_or_message_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "", None).await;
    let chunk = change_webhook(
        "102290129340398",
        "history",
        json!({
            "messaging_product": "whatsapp",
            "metadata": business_metadata(),
            "history": [{
                "metadata": { "phase": 1, "chunk_order": 3, "progress": 40 },
                "threads": [{
                    "id": BOB,
                    "context": { "wa_id": BOB, "user_id": "US.24817305912873645029" },
                    "messages": [
                        { "from": BOB, "id": "wamid.H1", "timestamp": "1736000000", "type": "text",
                          "text": { "body": "Are you open today?" },
                          "history_context": { "status": "READ" } },
                        { "from": "15551713917", "to": BOB, "id": "wamid.H2",
                          "timestamp": "1736000060", "type": "text",
                          "text": { "body": "Yes, until 6pm" },
                          "history_context": { "status": "DELIVERED" } }
                    ]
                }]
            }]
        }),
    );
    let answer = app.post_webhook_ok(&chunk).await;
    assert_eq!(answer["stored"], 2, "{answer}");
    assert_eq!(answer["notifications"], 1, "{answer}");
    // One `history` event for the chunk, no per-message events (a conversation_updated is
    // the state change of the conversation, not a "message received").
    let mut kinds = Vec::new();
    let mut progress = Value::Null;
    loop {
        let frame = sse.next_event(WAIT).await;
        let kind = frame.kind().to_owned();
        if kind == "history" {
            progress = frame.json()["data"].clone();
        }
        kinds.push(kind);
        if !progress.is_null() && kinds.iter().any(|k| k == "conversation_updated") {
            break;
        }
    }
    assert!(
        !kinds.iter().any(|k| k.starts_with("message_")),
        "{kinds:?}"
    );
    assert_eq!(progress["field"], "history");
    assert_eq!(progress["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(progress["waba_id"], "102290129340398");
    assert_eq!(progress["value"]["messages"], 2);
    assert_eq!(progress["value"]["metadata"]["chunk_order"], 3);
    sse.assert_quiet(Duration::from_millis(200)).await;

    let list = app.get_json("/v1/conversations").await;
    let conversation = &list["conversations"][0];
    assert_eq!(conversation["message_count"], 2, "{conversation}");
    assert_eq!(conversation["unread_count"], 0, "{conversation}");
    assert_eq!(
        conversation["window_expires_at"],
        Value::Null,
        "{conversation}"
    );
    let history = app
        .get_json(&format!("/v1/conversations/{BOB}/messages"))
        .await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[1]["direction"], "outbound");
    assert!(messages.iter().all(|m| m["source"] == "history"));
    assert_eq!(
        messages[0]["raw"]["history_context"]["status"], "READ",
        "kept as Meta sent it"
    );
    assert!(app.ids_of(BOB).await.is_empty(), "not in the FastAPI list");
    // Live traffic with an id the back-fill already stored is a duplicate.
    let again = webhook_with(vec![json!({ "from": BOB, "id": "wamid.H1",
        "timestamp": "1736000000", "type": "text", "text": { "body": "Are you open today?" } })]);
    assert_eq!(app.post_webhook_ok(&again).await["duplicates"], 1);
}

async fn other_notifications_are_kept_as_events_once_each(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "", None).await;
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [
            { "id": "102290129340398", "time": 1731705721, "changes": [
                { "field": "message_template_status_update", "value": {
                    "event": "APPROVED", "message_template_id": 123456789,
                    "message_template_name": "order_update", "message_template_language": "en_US",
                    "reason": "NONE" } },
                { "field": "account_update", "value": {
                    "phone_number": "15551713917", "event": "VERIFIED_ACCOUNT" } }
            ]},
            { "id": "102290129340398", "changes": [
                { "field": "user_preferences", "value": {
                    "messaging_product": "whatsapp", "metadata": business_metadata(),
                    "contacts": [{ "wa_id": ALICE, "user_id": "US.13491208655302741918" }],
                    "user_preferences": [{ "wa_id": ALICE, "user_id": "US.13491208655302741918",
                        "detail": "User requested to stop marketing messages",
                        "category": "marketing_messages", "value": "stop",
                        "timestamp": 1731705721 }] } },
                { "field": "messages", "value": {
                    "messaging_product": "whatsapp", "metadata": business_metadata(),
                    "errors": [{ "code": 130429, "title": "Rate limit hit",
                        "message": "Rate limit hit",
                        "error_data": { "details": "Cloud API message throughput has been reached." } }] } },
                { "field": "calls", "value": {
                    "messaging_product": "whatsapp", "metadata": business_metadata(),
                    "calls": [{ "id": "wacid.ABGGFjFVU2AfAgo6V", "from": ALICE, "to": "15551713917",
                        "event": "terminate", "timestamp": "1731705721",
                        "direction": "USER_INITIATED", "status": "COMPLETED", "duration": 35 }] } }
            ]}
        ]
    })
    .to_string();
    let answer = app.post_webhook_ok(&body).await;
    assert_eq!(answer["notifications"], 5, "{answer}");
    assert_eq!(answer["stored"], 0, "{answer}");
    let frames = sse.events(5).await;
    let kinds: Vec<&str> = frames.iter().map(Frame::kind).collect();
    assert_eq!(
        kinds,
        [
            "message_template_status_update",
            "account_update",
            "user_preferences",
            "meta_error",
            "calls"
        ]
    );
    let data: Vec<Value> = frames.iter().map(|f| f.json()["data"].clone()).collect();
    // Routed by entry.id when there is no metadata, by phone_number_id when there is.
    assert_eq!(data[0]["waba_id"], "102290129340398");
    assert_eq!(data[0]["phone_number_id"], Value::Null);
    assert_eq!(data[0]["value"]["message_template_name"], "order_update");
    assert_eq!(data[1]["value"]["event"], "VERIFIED_ACCOUNT");
    assert_eq!(data[2]["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(data[2]["value"]["user_preferences"][0]["value"], "stop");
    assert_eq!(data[3]["field"], "messages");
    assert_eq!(data[3]["value"][0]["code"], 130429);
    assert_eq!(data[4]["value"]["calls"][0]["status"], "COMPLETED");
    assert!(
        data.iter()
            .all(|d| d["received_at"].as_i64().unwrap() > 1_700_000_000)
    );
    // Meta's retry of the same delivery is acknowledged and kept nowhere twice.
    assert_eq!(app.post_webhook_ok(&body).await["notifications"], 5);
    sse.assert_quiet(Duration::from_millis(300)).await;
}

async fn the_app_dashboard_test_samples_get_200(backend: Backend) {
    let app = spawn_app(backend).await;
    // The "Test" button's canned samples: WABA "0", phone number id 123456123, a message id
    // without the `wamid.` prefix.
    let message = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "0", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "16505551111", "phone_number_id": "123456123" },
            "contacts": [{ "profile": { "name": "test user name" }, "wa_id": "16315551181" }],
            "messages": [{ "from": "16315551181", "id": "ABGGFlA5Fpa", "timestamp": "1504902988",
                           "type": "text", "text": { "body": "this is a text message" } }]
        }}]}]
    })
    .to_string();
    let answer = app.post_webhook_ok(&message).await;
    assert_eq!(answer["stored"], 1, "{answer}");
    let account = change_webhook(
        "0",
        "account_update",
        json!({ "phone_number": "16505551111", "event": "VERIFIED_ACCOUNT" }),
    );
    assert_eq!(app.post_webhook_ok(&account).await["notifications"], 1);
    let stored = app
        .get_json("/v1/messages/ABGGFlA5Fpa?phone_number_id=123456123")
        .await;
    assert_eq!(stored["phone_number_id"], "123456123");
}

fn preference_webhook(contact: &str, value: &str, ts: i64) -> String {
    change_webhook(
        "102290129340398",
        "user_preferences",
        json!({
            "messaging_product": "whatsapp",
            "metadata": business_metadata(),
            "contacts": [{ "wa_id": contact, "user_id": "US.13491208655302741918" }],
            "user_preferences": [{ "wa_id": contact, "user_id": "US.13491208655302741918",
                "detail": format!("User requested to {value} marketing messages"),
                "category": "marketing_messages", "value": value, "timestamp": ts }]
        }),
    )
}

async fn marketing_preferences_show_on_the_contact_latest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    // Before the contact has a conversation: kept, shown once there is one.
    app.post_webhook_ok(&preference_webhook(ALICE, "stop", 1_731_705_721))
        .await;
    assert_eq!(
        app.get_json("/v1/conversations").await["conversations"],
        json!([]),
        "a preference alone is no conversation"
    );
    app.post_webhook_ok(&webhook_with(vec![text_message("wamid.P1", ALICE, "hi")]))
        .await;
    let shown = |list: &Value| list["conversations"][0]["contact"]["preferences"].clone();
    let list = app.get_json("/v1/conversations").await;
    assert_eq!(
        shown(&list)["marketing_messages"]["value"],
        "stop",
        "{list}"
    );
    assert_eq!(list["conversations"][0]["contact"]["id"], ALICE);
    // A later resume wins; an older one arriving late does not.
    app.post_webhook_ok(&preference_webhook(ALICE, "resume", 1_731_705_800))
        .await;
    app.post_webhook_ok(&preference_webhook(ALICE, "stop", 1_731_705_750))
        .await;
    let list = app.get_json("/v1/conversations").await;
    assert_eq!(
        shown(&list)["marketing_messages"]["value"],
        "resume",
        "{list}"
    );
    assert_eq!(
        shown(&list)["marketing_messages"]["timestamp"],
        1_731_705_800
    );
    // Marking the conversation read answers the same contact.
    let read = mark_read(&app, ALICE).await;
    assert_eq!(
        read["contact"]["preferences"]["marketing_messages"]["value"], "resume",
        "{read}"
    );
    // Other contacts are untouched.
    app.post_webhook_ok(&webhook_with(vec![text_message("wamid.P2", BOB, "yo")]))
        .await;
    let list = app.get_json(&format!("/v1/conversations?q={BOB}")).await;
    assert_eq!(shown(&list), Value::Null, "{list}");
    // What the contact told Meta outlives a deletion of the conversation: their next message's
    // conversation shows it again.
    assert_eq!(delete_conversation(&app, ALICE).await, 200);
    app.post_webhook_ok(&webhook_with(vec![text_message("wamid.P3", ALICE, "back")]))
        .await;
    let list = app.get_json(&format!("/v1/conversations?q={ALICE}")).await;
    assert_eq!(
        shown(&list)["marketing_messages"]["value"],
        "resume",
        "{list}"
    );
}

/// A stream opened while the store does not answer is refused with a 503 within a few seconds
/// instead of waiting (holding its slot) for a reader that cannot reach the log.
#[tokio::test]
async fn a_stream_opened_while_redis_is_down_is_a_prompt_503() {
    let mut app = spawn_app(Backend::Redis).await;
    app.redis().kill();
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(15),
        app.http.get(app.url("/v1/events")).send(),
    )
    .await
    .expect("answered in time")
    .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("event log"),
        "{body}"
    );
}

/// A notice's `value` reaches the event as Meta sent it: key order, number forms and all.
async fn a_notice_value_is_kept_byte_for_byte(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = Sse::open(&app, "", None).await;
    let value = r#"{"zulu":1.50,"alpha":{"b":true,"a":null},"phone_number":"15551713917"}"#;
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"account_update","value":{value}}}]}}]}}"#
    );
    app.post_webhook_ok(&body).await;
    let frame = &sse.events(1).await[0];
    assert_eq!(frame.kind(), "account_update");
    let data = frame.data.as_deref().unwrap();
    assert!(data.contains(&format!(r#""value":{value}"#)), "{data}");
}

/// `conversation_updated` has one shape whatever wrote it, on both backends: the event of a
/// read shows the contact as the event of a new message does.
async fn conversation_updated_has_one_shape_for_a_message_and_a_read(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post_webhook_ok(&preference_webhook(ALICE, "stop", 1_731_705_721))
        .await;
    let mut sse = Sse::open(&app, "?types=conversation_updated", None).await;
    app.post_webhook_ok(&webhook_with(vec![text_message("wamid.S1", ALICE, "hi")]))
        .await;
    let read = mark_read(&app, ALICE).await;
    assert_eq!(read["unread_count"], 0, "{read}");
    let frames = sse.events(2).await;
    let contact = |i: usize| frames[i].json()["data"]["contact"].clone();
    assert_eq!(contact(0)["id"], ALICE, "{}", contact(0));
    assert_eq!(contact(0), contact(1));
}
