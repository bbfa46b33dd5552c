//! The outgoing-webhook receiver of the load generator (`--hook-port PORT`): the local app a
//! subscription delivers to, answering `200` at once to every POST.
//!
//! It listens on `127.0.0.1:PORT` (bound before the clock starts, so the gateway's first delivery
//! finds it) on a thread of its own with a current-thread tokio runtime, like the SSE clients:
//! under `taskset -c 1` it shares the generator's core and takes none of the servers'. For every
//! delivery it checks, as a receiver should, the Standard Webhooks signature
//! (`webhook-signature` over `{webhook-id}.{webhook-timestamp}.{body}` with `--hook-secret`), and
//! counts a `webhook-id` seen twice. For a `message_incoming` event whose message id is this run's
//! `<run-id>-<n>` it records when it arrived, on the same monotonic clock (`t0`) as the webhook
//! acknowledgements, so the delivery latency is arrival - acknowledgement of webhook `n` (an
//! event delivered before the generator read the 200 counts as 0, `hook_early`).
//!
//! Reported (`hook_*`): acknowledged messages, delivered and missing `message_incoming` events,
//! latency percentiles, all deliveries (every event type) and deliveries per second (all
//! deliveries over the span from the clock's start to the last delivery), the wait after the
//! load for the outstanding ones (`hook_drain_ms`: the backlog the load left), bad signatures,
//! repeated webhook ids, foreign or unparsable bodies, and the receiver thread's CPU.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use whatsapp_gateway::outgoing::signature::SigningSecret;

use super::{AckTimes, Latencies, round3, wait_while_arriving};

/// The receiver thread (its CPU time is read by this name).
pub const HOOK_THREAD: &str = "hook-receiver";
/// After the load: the longest wait for outstanding deliveries, and the longest without one.
const DRAIN_MAX: Duration = Duration::from_secs(30);
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// What the handler records; read by the main thread.
struct Shared {
    t0: Instant,
    secret: SigningSecret,
    /// `<run-id>-`: the ids of this run's messages.
    id_prefix: String,
    /// Per message index: microseconds since `t0` + 1 of its first `message_incoming` (0: none).
    arrived_us: Vec<AtomicU32>,
    /// First arrivals of this run's messages.
    arrivals: AtomicU64,
    /// Every POST, whatever its event type.
    deliveries: AtomicU64,
    /// Microseconds since `t0` + 1 of the latest delivery.
    last_us: AtomicU32,
    bad_signatures: AtomicU64,
    /// A `webhook-id` delivered again (at-least-once delivery: a receiver drops the repeat).
    repeated_ids: AtomicU64,
    seen_ids: Mutex<HashSet<String>>,
    /// The same message in two different events.
    duplicates: AtomicU64,
    /// `message_incoming` events for a message that is not one of this run's.
    foreign: AtomicU64,
    /// Bodies that are not the documented envelope.
    unparsed: AtomicU64,
}

/// The envelope of a delivery: `{"id", "type", "timestamp", "data"}`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    id: Option<&'a str>,
}

async fn deliver(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = AckTimes::now_us(shared.t0);
    shared.deliveries.fetch_add(1, Ordering::Relaxed);
    shared.last_us.fetch_max(now, Ordering::Relaxed);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header("webhook-id"),
        header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        header("webhook-signature"),
    ) else {
        shared.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    };
    let expected = shared.secret.sign(id, timestamp, &body);
    if !signatures
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
    {
        shared.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }
    let fresh = shared
        .seen_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_owned());
    if !fresh {
        shared.repeated_ids.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&body) else {
        shared.unparsed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    };
    if envelope.kind != "message_incoming" {
        return StatusCode::OK;
    }
    let index = envelope
        .data
        .id
        .and_then(|id| id.strip_prefix(shared.id_prefix.as_str()))
        .and_then(|n| n.parse::<usize>().ok());
    match index.and_then(|n| shared.arrived_us.get(n)) {
        Some(slot) => {
            if slot
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                shared.arrivals.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            shared.foreign.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::OK
}

/// The receiver while a run is under way.
pub struct Receiver {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Receiver {
    /// Binds `127.0.0.1:port` and starts answering on its own thread.
    pub fn start(
        port: u16,
        secret: SigningSecret,
        run_id: &str,
        t0: Instant,
        requests: usize,
    ) -> Result<Self, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("--hook-port: cannot listen on {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("--hook-port: {e}"))?;
        let shared = Arc::new(Shared {
            t0,
            secret,
            id_prefix: format!("{run_id}-"),
            arrived_us: (0..requests).map(|_| AtomicU32::new(0)).collect(),
            arrivals: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            last_us: AtomicU32::new(0),
            bad_signatures: AtomicU64::new(0),
            repeated_ids: AtomicU64::new(0),
            seen_ids: Mutex::new(HashSet::new()),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            unparsed: AtomicU64::new(0),
        });
        let (stop, mut stop_rx) = watch::channel(false);
        let app = axum::Router::new()
            .route("/hook", post(deliver))
            .with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name(HOOK_THREAD.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the receiver's tokio runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a non-blocking listener");
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop_rx.wait_for(|s| *s).await;
                        })
                        .await;
                });
            })
            .map_err(|e| format!("starting the receiver thread: {e}"))?;
        Ok(Self {
            shared,
            stop,
            thread,
        })
    }

    /// Waits for the outstanding deliveries: until every acknowledged message's event arrived,
    /// DRAIN_QUIET without a new delivery, or DRAIN_MAX. Returns the wait in ms.
    pub async fn drain(&self, acks: &AckTimes) -> f64 {
        let target = acks
            .us
            .iter()
            .filter(|a| a.load(Ordering::Relaxed) != 0)
            .count() as u64;
        let shared = &self.shared;
        wait_while_arriving(
            || shared.arrivals.load(Ordering::Relaxed) >= target,
            || shared.deliveries.load(Ordering::Relaxed),
            DRAIN_QUIET,
            DRAIN_MAX,
        )
        .await
    }

    /// Stops the receiver and reports.
    pub async fn finish(self, acks: &AckTimes, drain_ms: f64) -> Value {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let shared = &self.shared;
        let mut latencies = Latencies::default();
        let mut expected = 0u64;
        for (ack, arrived) in acks.us.iter().zip(&shared.arrived_us) {
            let ack = ack.load(Ordering::Relaxed);
            if ack != 0 {
                expected += 1;
                latencies.add(ack, arrived.load(Ordering::Relaxed));
            }
        }
        let delivered = latencies.len();
        let deliveries = shared.deliveries.load(Ordering::Relaxed);
        let span_s = f64::from(shared.last_us.load(Ordering::Relaxed)) / 1e6;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut report = json!({
            "hook_acked_messages": expected,
            "hook_delivered": delivered,
            "hook_missing": expected - delivered,
            "hook_early": latencies.early,
            "hook_drain_ms": round3(drain_ms),
            "hook_deliveries": deliveries,
            "hook_deliveries_per_s": (span_s > 0.0).then(|| (deliveries as f64 / span_s).round()),
            "hook_bad_signatures": load(&shared.bad_signatures),
            "hook_repeated_ids": load(&shared.repeated_ids),
            "hook_duplicates": load(&shared.duplicates),
            "hook_foreign": load(&shared.foreign),
            "hook_unparsed": load(&shared.unparsed),
        });
        if let Value::Object(fields) = &mut report {
            fields.extend(latencies.percentiles("hook"));
        }
        report
    }
}
