//! The live event stream: the events the store writes to its outbox (in the same atomic write as
//! the data they describe), pushed to client apps over Server-Sent Events (`GET /v1/events`,
//! [`sse`]) and WebSocket (`GET /v1/ws`, [`ws`]).
//!
//! **One reader per instance** ([`EventHub`]) follows the store's event log and broadcasts every
//! event to this instance's subscribers ([`log`]):
//! - Redis: a dedicated connection (never the store's shared multiplexed one, which a blocking
//!   read would stall for everyone) loops on `XREAD BLOCK` over `<REDIS_KEY_PREFIX>:events` from
//!   the last id it saw, reconnecting with backoff when Redis goes away. Every instance on one
//!   Redis reads the same stream, so a webhook received by any instance reaches the clients of all.
//! - SQLite: a read-only connection reads `events WHERE id > <last>`; the writer thread wakes it
//!   after every commit ([`crate::store::embedded::EmbeddedStore::commits`]), and it polls every
//!   [`log::POLL_INTERVAL`] besides.
//!
//! The reader reads only while the instance has subscribers (see `Demand`): without open streams
//! the event stream costs nothing per webhook.
//!
//! **The envelope**, the same on every transport:
//! `{"id": "<event id>", "type": "<event type>", "data": <data>}`, where `data` is the stored JSON
//! embedded verbatim (never re-serialized) and the id is the log's own: for Redis the stream entry
//! id and the event's index in that entry (`1763940000000-0-2`, ordered as the triple; one write's
//! events share one entry), or the SQLite row id (`42`). Control
//! messages have the same shape without an `id`: `reset` (`data.reason`, `data.cursor`,
//! `data.detail`) and `error` (`data.reason`: `lagged` or `store_unavailable`, `data.detail`).
//! Types are not a closed list: whatever type the store writes is delivered, and the `types`
//! filter takes any type string.
//!
//! Invariants:
//! - **Resume has no gap and no duplicate.** A client's broadcast subscription is taken *before*
//!   its backlog (the retained events after its cursor) is read, and live events whose id is at or
//!   below the last id replayed are skipped: an event committed before the backlog read is in the
//!   backlog, one committed after it is broadcast after the subscription was taken.
//! - **A cursor the log no longer covers gets `reset` first** (the events after it were trimmed,
//!   past EVENT_RETENTION, or it is ahead of the log), then the stream continues from the oldest
//!   retained event. The same `reset` goes to every live client if the reader itself missed
//!   events (Redis unreachable while more than EVENT_RETENTION events were written).
//! - **Nothing here slows a webhook down.** The store's write is the same with or without
//!   clients; the reader runs beside it; broadcasting never waits for a subscriber. Each client
//!   has a bounded queue (EVENT_CLIENT_BUFFER events beyond what its connection holds); a client
//!   further behind gets a final `error` (`lagged`) when it can still take one and is disconnected,
//!   its connection cut if it does not take even that within [`LAG_GRACE`] (with HTTP2=true the
//!   whole connection, every stream multiplexed on it included).
//! - **Streams have their own capacity**: at most MAX_EVENT_STREAMS at once (503 past it). The
//!   handler returns at once, so a stream holds no CLIENT_CONCURRENCY_LIMIT slot and the request
//!   timeout never cuts it (both bound the handler, not the body).
//! - **Shutdown ends streams** instead of waiting them out: SSE bodies end, WebSockets get close
//!   1001, the reader stops. Every task here runs on one [`TaskTracker`].

pub mod log;
mod pump;
pub mod sse;
pub mod ws;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{EventSettings, Settings};
use crate::domain::{ContactId, PhoneNumberId};
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::Store;

pub use self::log::EventLog;

/// Events the broadcast keeps for subscribers that have not taken them yet. A subscriber further
/// behind than this (only possible while it replays a long backlog) is `lagged`.
pub const BROADCAST_CAPACITY: usize = 4096;
/// How long a client that fell behind gets to take what is queued (its final `error` included)
/// before its connection is cut.
pub const LAG_GRACE: Duration = Duration::from_secs(5);
/// How long a client gets at shutdown to take what is queued before its connection is cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Longest cursor (`Last-Event-ID`, `?after=`) accepted.
pub const MAX_CURSOR_LEN: usize = 64;
/// Most types in one `types` filter.
pub const MAX_FILTER_TYPES: usize = 64;

/// An event's position in the store's log; ids of one log are totally ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventId {
    /// The embedded store's row id.
    Row(u64),
    /// An event of a Redis stream entry: the entry id `<ms>-<seq>` and the event's place in the
    /// entry (a write stores all its events in one entry), shown as `<ms>-<seq>-<index>`.
    Stream(u64, u64, u64),
}

impl EventId {
    /// Parses a row id (`42`).
    pub fn parse_row(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok().map(Self::Row))
            .flatten()
    }

    /// Parses a stream event id (`1763940000000-0-2`), or an entry id (`1763940000000-0`,
    /// its first event).
    pub fn parse_stream(s: &str) -> Option<Self> {
        let number = |p: &str| {
            (!p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        };
        let mut parts = s.split('-');
        let ms = number(parts.next()?)?;
        let seq = number(parts.next()?)?;
        let index = parts.next().map_or(Some(0), number)?;
        parts
            .next()
            .is_none()
            .then_some(Self::Stream(ms, seq, index))
    }

    /// The stream entry id holding this event (`<ms>-<seq>`); `None` for a row id.
    pub fn entry(self) -> Option<String> {
        match self {
            Self::Stream(ms, seq, _) => Some(format!("{ms}-{seq}")),
            Self::Row(_) => None,
        }
    }

    /// Whether this is the log's very beginning (`0`, `0-0`).
    pub fn is_zero(self) -> bool {
        matches!(self, Self::Row(0) | Self::Stream(0, 0, 0))
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Row(id) => write!(f, "{id}"),
            Self::Stream(ms, seq, index) => write!(f, "{ms}-{seq}-{index}"),
        }
    }
}

/// One event of the log, with its envelope rendered once for every subscriber.
#[derive(Debug)]
pub struct Event {
    /// Its id in the log.
    pub id: EventId,
    /// Its type (`message_incoming`, `conversation_updated`, ...).
    pub kind: String,
    envelope: Utf8Bytes,
    /// The SSE frame, rendered by the first SSE subscriber that sends it.
    sse: OnceLock<Bytes>,
    /// `data.contact.id` and `data.phone_number_id`, for the filters.
    contact: Option<String>,
    phone_number_id: Option<String>,
    /// Where `data` starts in the envelope.
    data_at: usize,
    /// When the event was written (ms), when the log knows it.
    time_ms: Option<i64>,
}

/// The fields of `data` the filters look at; anything else (or another shape) is ignored.
#[derive(Default, Deserialize)]
struct Routing {
    #[serde(default)]
    phone_number_id: Option<String>,
    #[serde(default)]
    contact: Option<RoutingContact>,
}

#[derive(Deserialize)]
struct RoutingContact {
    #[serde(default)]
    id: Option<String>,
}

impl Event {
    /// An event as the log stores it. `data` is embedded verbatim when it is JSON (the store only
    /// writes JSON); anything else is sent as a JSON string rather than breaking the envelope.
    pub fn new(id: EventId, kind: String, data: String) -> Self {
        let routing = serde_json::from_str::<Routing>(&data);
        let data = match &routing {
            Ok(_) => data,
            Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(&data).is_ok() => data,
            Err(e) => {
                tracing::warn!(event.id = %id, error.message = %e, "events.invalid_data sent as a JSON string");
                serde_json::Value::String(data).to_string()
            }
        };
        let routing = routing.unwrap_or_default();
        let kind_json = serde_json::Value::String(kind.clone()).to_string();
        let head = format!(r#"{{"id":"{id}","type":{kind_json},"data":"#);
        let data_at = head.len();
        let envelope = format!("{head}{data}}}");
        let time_ms = match id {
            EventId::Stream(ms, ..) => i64::try_from(ms).ok(),
            EventId::Row(_) => None,
        };
        Self {
            id,
            kind,
            envelope: Utf8Bytes::from(envelope),
            sse: OnceLock::new(),
            contact: routing.contact.and_then(|c| c.id),
            phone_number_id: routing.phone_number_id,
            data_at,
            time_ms,
        }
    }

    /// The same event, written at `ms` (for logs whose ids carry no time).
    pub fn written_at(mut self, ms: i64) -> Self {
        self.time_ms = Some(ms);
        self
    }

    /// The event's `data` JSON, as stored.
    pub fn data(&self) -> &str {
        &self.envelope.as_str()[self.data_at..self.envelope.as_str().len() - 1]
    }

    /// `data.contact.id`, if the event is about a contact.
    pub fn contact(&self) -> Option<&str> {
        self.contact.as_deref()
    }

    /// `data.phone_number_id`, if the event names a business number.
    pub fn phone_number_id(&self) -> Option<&str> {
        self.phone_number_id.as_deref()
    }

    /// When the event was written (ms since the epoch), when the log knows it.
    pub fn time_ms(&self) -> Option<i64> {
        self.time_ms
    }

    /// The envelope JSON: `{"id","type","data"}`.
    pub fn envelope(&self) -> &str {
        self.envelope.as_str()
    }

    /// The envelope as a WebSocket text payload (shared, not copied).
    pub(crate) fn ws_text(&self) -> Utf8Bytes {
        self.envelope.clone()
    }

    /// The SSE frame: `id`, `event` and `data` lines (see [`sse`]).
    pub(crate) fn sse_frame(&self) -> Bytes {
        self.sse
            .get_or_init(|| {
                sse::frame(
                    Some(&self.id.to_string()),
                    &self.kind,
                    self.envelope.as_str(),
                )
            })
            .clone()
    }
}

/// What the reader broadcasts.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    /// The next event of the log.
    Event(Arc<Event>),
    /// The reader missed events (they were trimmed before it could read them); it continues
    /// after `last`. Subscribers get `reset`.
    Gap { last: EventId },
}

/// Whether the reader follows the log. It reads only while this instance has subscribers: an
/// instance without open streams costs the store nothing per webhook (no `XREAD` of every event
/// on Redis, no query per commit on SQLite). A subscriber arms the reader before it reads its
/// backlog ([`Demand::armed`]), and a reader armed after being idle starts from the log's newest
/// entry *then*, so every event after the subscriber's backlog read reaches it live.
#[derive(Clone)]
pub(crate) struct Demand {
    inner: Arc<DemandInner>,
}

struct DemandInner {
    wanted: tokio::sync::Notify,
    armed: tokio::sync::watch::Sender<bool>,
}

impl Demand {
    fn new() -> Self {
        Self {
            inner: Arc::new(DemandInner {
                wanted: tokio::sync::Notify::new(),
                armed: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// For the reader, before each read: returns at once while there are subscribers
    /// (`Some(false)`; the reader is armed), else disarms and waits until one arrives
    /// (`Some(true)`: the reader must restart from the log's newest entry, then call
    /// [`Demand::arm`]). `None` on shutdown.
    pub(crate) async fn wait(
        &self,
        live: &broadcast::Sender<Live>,
        shutdown: &CancellationToken,
    ) -> Option<bool> {
        if live.receiver_count() > 0 {
            self.arm();
            return Some(false);
        }
        self.inner.armed.send_replace(false);
        // A subscriber that came between the count and the disarm saw the reader armed and will
        // not ask again: keep following for it.
        if live.receiver_count() > 0 {
            self.arm();
            return Some(false);
        }
        tokio::select! {
            () = shutdown.cancelled() => None,
            () = self.inner.wanted.notified() => Some(true),
        }
    }

    /// The reader follows the log (again).
    pub(crate) fn arm(&self) {
        self.inner
            .armed
            .send_if_modified(|armed| !std::mem::replace(armed, true));
    }

    /// For a subscriber already subscribed to the broadcast: completes once the reader follows
    /// the log, waking it if it is idle. `false` on shutdown.
    pub(crate) async fn armed(&self, shutdown: &CancellationToken) -> bool {
        let mut armed = self.inner.armed.subscribe();
        if *armed.borrow_and_update() {
            return true;
        }
        self.inner.wanted.notify_one();
        tokio::select! {
            () = shutdown.cancelled() => false,
            result = armed.wait_for(|a| *a) => result.is_ok(),
        }
    }
}

/// Which events a client wants (every given filter must match).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `data.contact.id` equals this contact (digits or BSUID).
    pub contact: Option<ContactId>,
    /// `data.phone_number_id` equals this.
    pub phone_number_id: Option<PhoneNumberId>,
    /// The type is one of these.
    pub types: Option<Vec<String>>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.contact
            .as_ref()
            .is_none_or(|c| event.contact.as_deref() == Some(c.as_str()))
            && self
                .phone_number_id
                .as_ref()
                .is_none_or(|p| event.phone_number_id.as_deref() == Some(p.as_str()))
            && self
                .types
                .as_ref()
                .is_none_or(|types| types.contains(&event.kind))
    }
}

/// A request extension the accept loop puts on stream requests: cancelling it closes the
/// request's connection. A stalled client's connection is never polled for the response body, so
/// ending the body cannot end it; this can.
#[derive(Debug, Clone)]
pub struct StreamAbort(pub CancellationToken);

/// The stream metrics (shared handles of [`Metrics`]' entries).
#[derive(Clone)]
struct StreamMetrics {
    open: Gauge,
    ended: Family<ReasonLabels, Counter>,
}

/// The instance's event reader, its broadcast and the open streams' budget. Built once at
/// start-up ([`EventHub::start`]); [`EventHub::shutdown`] ends everything.
pub struct EventHub {
    live: broadcast::Sender<Live>,
    demand: Demand,
    log: EventLog,
    streams: Arc<Semaphore>,
    settings: EventSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    metrics: StreamMetrics,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("subscribers", &self.live.receiver_count())
            .finish_non_exhaustive()
    }
}

/// Wakes a task that reads the log by its own cursor (the outgoing webhooks' dispatcher, the
/// auto-replies' engine): on a new event while it follows the log live, on a change, or after
/// an interval. While it follows, it holds a receiver of the hub, so the reader follows the log.
#[derive(Default)]
pub(crate) struct Wakeups(Option<broadcast::Receiver<Live>>);

impl Wakeups {
    /// Follows the log live (`live`: someone needs every event at once) or stops.
    pub(crate) async fn follow(&mut self, hub: &EventHub, live: bool) {
        if !live {
            self.0 = None;
        } else if self.0.is_none() {
            self.0 = hub.wakeups().await;
        }
    }

    /// Waits for a new event (while following), `changed` or `interval`; false on shutdown.
    pub(crate) async fn wait(
        &mut self,
        shutdown: &CancellationToken,
        changed: &tokio::sync::Notify,
        interval: Duration,
    ) -> bool {
        let woken = async {
            match self.0.as_mut() {
                Some(rx) => match rx.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Take the rest of the burst: the follower reads the log itself.
                        while rx.try_recv().is_ok() {}
                    }
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                },
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = changed.notified() => true,
            () = woken => true,
            () = tokio::time::sleep(interval) => true,
        }
    }
}

impl EventHub {
    /// Opens the event log of the configured store and starts its reader.
    pub async fn start(
        settings: &Settings,
        store: &Store,
        metrics: &Metrics,
    ) -> anyhow::Result<Arc<Self>> {
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let log = EventLog::open(&settings.store)?;
        let demand = Demand::new();
        log.spawn_reader(
            store,
            live.clone(),
            demand.clone(),
            shutdown.clone(),
            &tracker,
        )
        .await;
        Ok(Arc::new(Self {
            live,
            demand,
            log,
            streams: Arc::new(Semaphore::new(settings.events.max_streams)),
            settings: settings.events.clone(),
            shutdown,
            tracker,
            metrics: StreamMetrics {
                open: metrics.event_streams_open.clone(),
                ended: metrics.event_streams_ended.clone(),
            },
        }))
    }

    /// The log this hub follows.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// A receiver that sees every new event; while it exists the reader follows the log.
    /// `None` on shutdown.
    async fn wakeups(&self) -> Option<broadcast::Receiver<Live>> {
        let receiver = self.live.subscribe();
        self.demand.armed(&self.shutdown).await.then_some(receiver)
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.settings.max_streams - self.streams.available_permits()
    }

    /// Ends every stream and stops the reader; returns at once ([`EventHub::stopped`] waits).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
    }

    /// Completes when every task of the hub has finished (after [`EventHub::shutdown`]).
    pub async fn stopped(&self) {
        self.tracker.wait().await;
    }

    /// A stream slot, or `None` when MAX_EVENT_STREAMS are open or the hub is shutting down.
    fn open_stream(&self) -> Option<OwnedSemaphorePermit> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        self.streams.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_in_their_log_format_and_order_as_triples() {
        assert_eq!(EventId::parse_row("42"), Some(EventId::Row(42)));
        assert_eq!(
            EventId::parse_stream("1763940000000-12-3"),
            Some(EventId::Stream(1763940000000, 12, 3))
        );
        // An entry id is its first event.
        assert_eq!(
            EventId::parse_stream("1763940000000-12"),
            Some(EventId::Stream(1763940000000, 12, 0))
        );
        for bad in ["", "-1", "4 2", "1e3", &"9".repeat(21)] {
            assert_eq!(EventId::parse_row(bad), None, "{bad:?}");
        }
        for bad in [
            "", "1", "1-", "-1", "1-2-", "1-2-3-4", "a-1", "1-+2", "1-2-x",
        ] {
            assert_eq!(EventId::parse_stream(bad), None, "{bad:?}");
        }
        assert!(EventId::Stream(9, 0, 5) < EventId::Stream(10, 0, 0));
        assert!(EventId::Stream(1, 9, 7) < EventId::Stream(1, 10, 0));
        assert!(EventId::Stream(1, 10, 1) < EventId::Stream(1, 10, 2));
        assert_eq!(EventId::Stream(1, 10, 2).to_string(), "1-10-2");
        assert_eq!(EventId::Stream(1, 10, 2).entry().as_deref(), Some("1-10"));
        assert!(EventId::Stream(0, 0, 0).is_zero() && EventId::Row(0).is_zero());
    }

    #[test]
    fn the_envelope_embeds_data_verbatim() {
        let data = r#"{ "phone_number_id": "1", "contact": {"id": "919216598210"}, "raw": {"x": "\u00e9"} }"#;
        let event = Event::new(EventId::Row(7), "message_incoming".into(), data.into());
        assert_eq!(
            event.envelope(),
            format!(r#"{{"id":"7","type":"message_incoming","data":{data}}}"#)
        );
        assert_eq!(event.data(), data);
        assert_eq!(event.contact(), Some("919216598210"));
        assert_eq!(event.phone_number_id(), Some("1"));
        // Not JSON (never written by the store): sent as a string, the envelope stays valid.
        let odd = Event::new(EventId::Row(8), "x\"y".into(), "not json".into());
        let parsed: serde_json::Value = serde_json::from_str(odd.envelope()).unwrap();
        assert_eq!(parsed["data"], "not json");
        assert_eq!(parsed["type"], "x\"y");
    }

    #[test]
    fn filters_match_contact_number_and_types() {
        let event = Event::new(
            EventId::Row(1),
            "conversation_updated".into(),
            r#"{"phone_number_id":"106540352242922","contact":{"id":"919216598210"}}"#.into(),
        );
        let contact = |c: &str| Filter {
            contact: Some(ContactId::parse(c).unwrap()),
            ..Filter::default()
        };
        assert!(Filter::default().matches(&event));
        assert!(contact("+91 92165-98210").matches(&event));
        assert!(!contact("14155550123").matches(&event));
        let number = |p: &str| Filter {
            phone_number_id: Some(PhoneNumberId::parse(p).unwrap()),
            ..Filter::default()
        };
        assert!(number("106540352242922").matches(&event));
        assert!(!number("1").matches(&event));
        let types = |t: &[&str]| Filter {
            types: Some(t.iter().map(|s| s.to_string()).collect()),
            ..Filter::default()
        };
        assert!(types(&["message_incoming", "conversation_updated"]).matches(&event));
        assert!(!types(&["message_incoming"]).matches(&event));
        // An event without a contact never matches a contact filter.
        let error = Event::new(EventId::Row(2), "webhook_error".into(), "{}".into());
        assert!(!contact("919216598210").matches(&error));
    }
}
