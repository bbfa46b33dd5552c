//! 13. Several instances on one Redis behave as one service: 3 gateway processes (the real
//!     binary) on one redis-server (AOF, `appendfsync everysec`) behind a round-robin TCP proxy
//!     written here, one outgoing webhook subscription (created through the proxy) pointing at a
//!     real receiver that verifies every Standard Webhooks signature, and a Meta simulator sending
//!     signed webhooks through the proxy (retrying everything but 200, as Meta does). One instance
//!     is SIGKILLed mid-run and restarted on the same port.
//!
//!     Passes when: every acknowledged message is stored exactly once; every `message_incoming`
//!     event of the log reached the receiver at least once, and exactly once after the receiver's
//!     dedupe by `webhook-id` (the distinct webhook-ids are exactly the log's `message_incoming`
//!     event ids, each carrying its own message); every signature verified; nothing pending or
//!     dead-lettered at the end; an SSE client on each of the two instances never killed saw
//!     every event of the log once, in order (no duplicate, no gap). Duplicated deliveries
//!     (at-least-once: what the killed instance had in flight is attempted again after its
//!     leases) are counted and printed, and bounded by what it could have had in flight (its
//!     dispatcher's pages not yet closed and its claimed deliveries, [`IN_FLIGHT`]): an event
//!     attempted by several instances in turn would exceed it. An
//!     auto-reply rule (`first_message`, created through the proxy) answers through a Graph mock
//!     all instances share: no contact is answered twice (a reply is at most once: one whose
//!     firing the killed instance had taken may be lost, never sent again).
//!
//!     Full: 10,000 webhooks; CI: 1,000.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::helpers::{Gateway, TestRedis, free_port};
use crate::sim::{MetaSimulator, assert_exactly_once, deliveries, senders, stored_counts};
use crate::{gateway_env, scaled};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PREFIX: &str = "multi";
/// WEBHOOK_CONCURRENCY: the most attempts one instance makes at once.
const CONCURRENCY: usize = 64;
/// The most events a kill can make the others attempt again (the receiver answers at once, so
/// nothing else repeats a delivery): the dispatcher's pages not yet closed (4 of at most 256
/// events, attempted but not yet recorded) and the worker's claims.
const IN_FLIGHT: usize = 4 * 256 + CONCURRENCY;
/// How long any wait of this test may last.
const WAIT: Duration = Duration::from_secs(60);

/// A round-robin HTTP proxy over `backends` (loopback ports), as a load balancer with failover:
/// each request goes to the next backend; one that refuses the connection is skipped for the
/// next; a request that fails once sent (the backend died under it), or finds no backend, is
/// answered 502, which the simulator retries like Meta. Per-request (not per-connection) turns
/// mean a restarted instance takes its share at once, whatever keep-alive connections exist.
struct RoundRobin {
    port: u16,
    /// Requests answered by each backend.
    answered: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    backends: Vec<u16>,
    next: AtomicUsize,
    answered: Arc<Vec<AtomicUsize>>,
    client: reqwest::Client,
}

async fn forward(
    State(proxy): State<Arc<ProxyState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let first = proxy.next.fetch_add(1, Ordering::Relaxed);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    for k in 0..proxy.backends.len() {
        let i = (first + k) % proxy.backends.len();
        let mut request = proxy
            .client
            .request(
                method.clone(),
                format!("http://127.0.0.1:{}{path}", proxy.backends[i]),
            )
            .body(body.clone());
        for (name, value) in &headers {
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let mut out_headers = HeaderMap::new();
                if let Some(t) = response.headers().get("content-type") {
                    out_headers.insert("content-type", t.clone());
                }
                let Ok(bytes) = response.bytes().await else {
                    return StatusCode::BAD_GATEWAY.into_response();
                };
                proxy.answered[i].fetch_add(1, Ordering::Relaxed);
                return (status, out_headers, bytes).into_response();
            }
            Err(e) if e.is_connect() => continue,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    StatusCode::BAD_GATEWAY.into_response()
}

impl RoundRobin {
    async fn start(backends: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answered: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let state = Arc::new(ProxyState {
            backends,
            next: AtomicUsize::new(0),
            answered: answered.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(1))
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            answered,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests answered so far, per backend.
    fn answered(&self) -> Vec<usize> {
        self.answered
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the receiver got: every delivery's webhook-id, and the event each webhook-id carried.
#[derive(Default)]
struct Received {
    /// Deliveries received (duplicates included).
    total: usize,
    /// Deliveries whose signature did not verify (answered 401, never recorded below).
    bad_signatures: usize,
    /// Per webhook-id: how many times it came, and the event's type and `data.id`.
    by_id: HashMap<String, (usize, String, String)>,
    /// Per webhook-id: when it came, each time.
    times: HashMap<String, Vec<Instant>>,
    /// A webhook-id that came with another body than the first time.
    inconsistent: Vec<String>,
}

/// The Standard Webhooks signature (`v1,<base64>`), computed here independently of the gateway.
fn standard_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

async fn receive(
    State(state): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let expected = standard_signature(&id, &timestamp, &body);
    let verified = header("webhook-signature")
        .split(' ')
        .any(|s| s == expected);
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (t - crate::helpers::now_secs()).abs() <= 300);
    let mut state = state.lock().unwrap();
    state.total += 1;
    if !verified || !fresh || id.is_empty() {
        state.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let kind = event["type"].as_str().unwrap_or_default().to_owned();
    let data_id = event["data"]["id"].as_str().unwrap_or_default().to_owned();
    let entry = state
        .by_id
        .entry(id.clone())
        .or_insert((0, kind.clone(), data_id.clone()));
    entry.0 += 1;
    let mismatched = entry.1 != kind || entry.2 != data_id;
    state
        .times
        .entry(id.clone())
        .or_default()
        .push(Instant::now());
    if mismatched || event["id"] != id.as_str() {
        state.inconsistent.push(id);
    }
    StatusCode::OK
}

/// Starts the receiver on a free loopback port; returns its URL and what it records.
async fn start_receiver() -> (String, Arc<Mutex<Received>>) {
    let state = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// The event ids an SSE client of one instance saw, in order, with the resets it got.
#[derive(Default)]
struct Seen {
    ids: Vec<String>,
    /// `reset` frames after the first event (one before it is the log's start on Redis).
    late_resets: usize,
    /// Why the stream ended, if it did.
    ended: Option<String>,
}

/// Follows `GET /v1/events?after=0-0` of one instance for the whole run, recording event ids.
fn follow_events(url: String) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            let client = reqwest::Client::new();
            let response = match client
                .get(format!("{url}/v1/events?after=0-0"))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => r,
                other => {
                    seen.lock().unwrap().ended = Some(format!("did not open: {other:?}"));
                    return;
                }
            };
            let mut response = response;
            let mut buffer = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
                    other => {
                        seen.lock().unwrap().ended = Some(format!("ended: {other:?}"));
                        return;
                    }
                }
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    let frame = String::from_utf8_lossy(&frame);
                    let mut id = None;
                    let mut kind = None;
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            kind = Some(v.to_owned());
                        }
                    }
                    let mut seen = seen.lock().unwrap();
                    match (id, kind.as_deref()) {
                        (Some(id), _) => seen.ids.push(id),
                        (None, Some("reset")) if !seen.ids.is_empty() => seen.late_resets += 1,
                        (None, Some("error")) => {
                            seen.ended = Some(format!("error frame: {frame}"));
                            return;
                        }
                        _ => {} // heartbeats, a reset before the first event
                    }
                }
            }
        }
    });
    (seen, task)
}

/// Every event id of the log (`<entry>-<index>`), in order, and those of `message_incoming`
/// events with the message id each carries; read straight from the Redis stream.
async fn log_events(redis: &TestRedis) -> (Vec<String>, HashMap<String, String>) {
    let entries: Vec<(String, Vec<String>)> = redis
        .query(
            redis::cmd("XRANGE")
                .arg(format!("{PREFIX}:events"))
                .arg("-")
                .arg("+"),
        )
        .await;
    let mut all = Vec::new();
    let mut incoming = HashMap::new();
    for (entry, fields) in entries {
        for (index, pair) in fields.chunks(2).enumerate() {
            let id = format!("{entry}-{index}");
            if pair[0] == "message_incoming" {
                let data: Value = serde_json::from_str(&pair[1]).unwrap();
                incoming.insert(id.clone(), data["id"].as_str().unwrap().to_owned());
            }
            all.push(id);
        }
    }
    (all, incoming)
}

/// `webhooks_received_total` of one instance, from its `/metrics`.
async fn webhooks_received(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("whatsapp_gateway_webhooks_received_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Polls `check` every 50 ms until it is true, for at most [`WAIT`]; panics with `what`.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_a_proxy_store_once_and_deliver_every_event_through_a_kill() {
    let _serial = crate::serial().await;
    crate::quiet_disk();
    let started = Instant::now();
    let count = scaled(10_000, 1_000);
    let redis = TestRedis::start_aof();
    let graph = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(crate::helpers::AcceptSends::default())
        .mount(&graph)
        .await;
    let graph_uri = graph.uri();
    let env = gateway_env(&[
        ("REDIS_URL", &redis.url()),
        ("ACCESS_TOKEN", crate::helpers::ACCESS_TOKEN),
        ("PHONE_NUMBER_ID", crate::helpers::PHONE_NUMBER_ID),
        ("GRAPH_API_BASE", &graph_uri),
        ("REDIS_KEY_PREFIX", PREFIX),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        // Short waits, and more of them than a kill can cost.
        (
            "WEBHOOK_RETRY_SCHEDULE",
            "200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
        ),
        // An attempt's limit; the lease a killed instance leaves behind is twice it plus 5 s.
        ("WEBHOOK_TIMEOUT_SECS", "1"),
        // The whole run's events stay in the log (each message writes two).
        ("EVENT_RETENTION", "100000"),
        ("EVENT_CLIENT_BUFFER", "65536"),
        ("WEBHOOK_CONCURRENCY", &CONCURRENCY.to_string()),
    ]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gateways: Vec<Gateway> = ports
        .iter()
        .zip(&dirs)
        .map(|(port, dir)| Gateway::spawn_on(*port, &env, dir.path()))
        .collect();
    for gateway in &mut gateways {
        gateway.wait_ready().await;
    }
    let proxy = RoundRobin::start(ports.clone()).await;
    let (receiver_url, received) = start_receiver().await;

    // One subscription, created through the proxy (so by any instance).
    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let created = http
        .post(proxy.url("/v1/webhooks"))
        .json(&json!({"url": receiver_url, "secret": SECRET, "events": ["message_incoming"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let subscription: Value = created.json().await.unwrap();
    let subscription = subscription["id"].as_str().unwrap().to_owned();
    let rule = http
        .post(proxy.url("/v1/rules"))
        .json(&json!({"id": "welcome", "when": {"first_message": true},
                      "reply": {"type": "text", "text": {"body": "welcome"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rule.status(), 201);

    // An SSE client on each instance that is never killed.
    let (seen_b, follow_b) = follow_events(gateways[1].url(""));
    let (seen_c, follow_c) = follow_events(gateways[2].url(""));

    let mut work = deliveries("mi", count, scaled(200, 20), 5);
    // Sent now (auto-replies answer only fresh messages).
    let now = format!("\"timestamp\":\"{}\"", crate::helpers::now_secs());
    for d in &mut work {
        assert!(d.body.contains("\"timestamp\":\"1757936743\""));
        d.body = Arc::new(d.body.replace("\"timestamp\":\"1757936743\"", &now));
    }
    let all_senders = senders(&work);
    let expected: HashSet<String> = work.iter().map(|d| d.id.clone()).collect();
    // Paced so the kill lands mid-run and the restarted instance takes traffic: 5 s of it (CI:
    // 2 s).
    let sim = MetaSimulator::new(&proxy.url("")).with_rate(scaled(2_000, 500) as f64);
    let run = tokio::spawn({
        let sim = sim.clone();
        async move { sim.run(work, 32, WAIT).await }
    });
    tokio::time::sleep(Duration::from_millis(scaled(1500, 500) as u64)).await;
    assert!(!run.is_finished(), "the kill lands while webhooks arrive");
    let kill_sent = Instant::now();
    gateways[0].signal("KILL");
    gateways[0].wait_exit(Duration::from_secs(5)).await;
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateways[0] = Gateway::spawn_on(ports[0], &env, dirs[0].path());
    gateways[0].wait_ready().await;
    let answered_before = proxy.answered()[0];
    println!(
        "multi-instance: instance 0 SIGKILLed and back in {} ms",
        killed_at.elapsed().as_millis()
    );
    let report = tokio::time::timeout(WAIT + Duration::from_secs(10), run)
        .await
        .expect("the simulator ends")
        .unwrap();
    let sent_in = started.elapsed();
    println!(
        "multi-instance: {} webhooks acked ({} attempts, failures {:?}, abandoned {}) in {:.1} s; requests answered per instance {:?}",
        report.acked.len(),
        report.attempts,
        report.failures,
        report.abandoned.len(),
        sent_in.as_secs_f64(),
        proxy.answered()
    );
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
    assert!(
        proxy.answered()[0] > answered_before,
        "the restarted instance took webhooks"
    );

    // Stored exactly once, read through the proxy (any instance answers the same).
    let counts = stored_counts(&proxy.url(""), all_senders).await;
    assert_exactly_once(&counts, &expected);

    // The log: one message_incoming event per stored message.
    let (log, incoming) = log_events(&redis).await;
    let messages: HashSet<&String> = incoming.values().collect();
    assert_eq!(incoming.len(), expected.len(), "one event per message");
    assert_eq!(messages, expected.iter().collect(), "the events' messages");

    // The receiver: every event at least once, exactly once after dedupe by webhook-id.
    until("every message_incoming event at the receiver", || {
        received.lock().unwrap().by_id.len() >= incoming.len()
    })
    .await;
    // A delivery is completed after the receiver answered it, and one the killed instance had
    // claimed waits for its lease: poll until none is pending (at most WAIT).
    let deadline = Instant::now() + WAIT;
    let deliveries_log = loop {
        let log: Value = http
            .get(proxy.url(&format!("/v1/webhooks/{subscription}/deliveries")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["pending"] == 0 || Instant::now() >= deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(deliveries_log["pending"], 0, "{deliveries_log}");
    assert_eq!(deliveries_log["dead"], 0, "{deliveries_log}");
    {
        let received = received.lock().unwrap();
        let distinct: BTreeSet<&String> = received.by_id.keys().collect();
        let wanted: BTreeSet<&String> = incoming.keys().collect();
        let missing: Vec<&&String> = wanted.difference(&distinct).take(5).collect();
        let unexpected: Vec<&&String> = distinct.difference(&wanted).take(5).collect();
        assert!(
            missing.is_empty(),
            "events never delivered, e.g. {missing:?}"
        );
        assert!(
            unexpected.is_empty(),
            "deliveries of no such event: {unexpected:?}"
        );
        for (id, (_, kind, data_id)) in &received.by_id {
            assert_eq!(kind, "message_incoming", "{id}");
            assert_eq!(
                Some(data_id),
                incoming.get(id),
                "{id} carried its own message"
            );
        }
        assert_eq!(received.bad_signatures, 0, "every signature verifies");
        assert!(
            received.inconsistent.is_empty(),
            "{:?}",
            received.inconsistent
        );
        let duplicates = received.total - received.by_id.len();
        let repeated: Vec<(&String, usize)> = received
            .by_id
            .iter()
            .filter(|(_, (n, ..))| *n > 1)
            .map(|(id, (n, ..))| (id, *n))
            .take(10)
            .collect();
        println!(
            "multi-instance: receiver got {} deliveries of {} events: {} duplicates (at least once), e.g. {:?}",
            received.total,
            received.by_id.len(),
            duplicates,
            repeated
        );
        // A repeat is the killed instance's attempt made again by another after its lease: it
        // came once before the kill (bytes already sent may land a moment after the signal),
        // and once more. Anything else would be an event enqueued twice.
        for (id, times) in &received.times {
            if times.len() > 1 {
                assert_eq!(times.len(), 2, "{id} delivered {} times", times.len());
                assert!(
                    times[0] < kill_sent + Duration::from_millis(500),
                    "{id} repeated, but its first delivery came {} ms after the kill",
                    times[0].duration_since(kill_sent).as_millis()
                );
            }
        }
        assert!(
            duplicates <= IN_FLIGHT,
            "{duplicates} duplicates: more than the killed instance could have had in flight \
             (each event must be enqueued once, by one instance)"
        );
    }

    // Each surviving instance's SSE client: every event of the log once, in order.
    for (name, seen) in [("instance 1", &seen_b), ("instance 2", &seen_c)] {
        let last = log.last().unwrap().clone();
        until(&format!("{name}'s SSE client at the log's end"), || {
            let seen = seen.lock().unwrap();
            seen.ended.is_some() || seen.ids.last() == Some(&last)
        })
        .await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.ended, None, "{name}'s stream ended");
        assert_eq!(seen.late_resets, 0, "{name} got a reset mid-stream");
        let unique: HashSet<&String> = seen.ids.iter().collect();
        assert_eq!(unique.len(), seen.ids.len(), "{name} saw an event twice");
        assert_eq!(seen.ids, log, "{name} saw every event of the log in order");
        println!(
            "multi-instance: {name}'s SSE client saw {} events, each once",
            seen.ids.len()
        );
    }
    follow_b.abort();
    follow_c.abort();

    // Auto-replies: one welcome per contact at most, whichever instance judged its messages.
    let contacts = senders_of(&graph).await;
    let mut per_contact: HashMap<String, usize> = HashMap::new();
    for to in &contacts {
        *per_contact.entry(to.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_contact.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "multi-instance: {} contacts welcomed of {} senders; none twice: {}",
        per_contact.len(),
        scaled(200, 20),
        twice.is_empty()
    );
    assert!(twice.is_empty(), "welcomed more than once: {twice:?}");
    assert!(
        per_contact.len() * 2 >= scaled(200, 20),
        "the rule answered (lost only what the killed instance had taken)"
    );

    let mut per_instance = Vec::new();
    for gateway in &gateways {
        per_instance.push(webhooks_received(&gateway.url("")).await);
    }
    println!(
        "multi-instance: webhooks received per instance since its start {per_instance:?}; whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The recipients of the sends Meta received, once the count stops growing.
async fn senders_of(graph: &wiremock::MockServer) -> Vec<String> {
    let mut last = usize::MAX;
    for _ in 0..50 {
        let n = graph.received_requests().await.unwrap_or_default().len();
        if n == last {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|b| b["to"].as_str().map(str::to_owned))
        .collect()
}
