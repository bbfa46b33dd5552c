//! Prometheus metrics, served at `GET /metrics` (behind API_KEY like every client endpoint).
//!
//! Counters and histograms are lock-free atomics, so recording costs nanoseconds on the hot path;
//! gauges that mirror other state (the embedded store's write queue) are read at scrape time.
//! Names are prefixed `whatsapp_gateway_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a webhook was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// An outgoing webhook attempt: its outcome and whether the dispatcher made it straight from
/// the log (`direct`) or the worker from a stored delivery (`queued`: retries, and events that
/// waited behind one).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub reason: &'static str,
    pub path: &'static str,
}

/// A store operation (`save` or `fetch`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

/// A Graph API call's operation (`send`, `read`, `download`, `upload`, `delete`, `admin`),
/// outcome and Meta's error code (`none` when Meta sent none).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GraphLabels {
    pub operation: &'static str,
    pub outcome: &'static str,
    pub code: String,
}

/// Builds store latency histograms: 100 µs to ~3 s.
#[derive(Clone)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0001, 2.0, 16))
    }
}

/// Every metric the service records.
pub struct Metrics {
    registry: Registry,
    pub webhooks_received: Counter,
    /// Unix seconds of the last authenticated webhook delivery (0: none since start).
    pub webhook_last_received: Gauge,
    pub webhooks_rejected: Family<ReasonLabels, Counter>,
    pub messages_stored: Counter,
    pub messages_duplicate: Counter,
    pub statuses_received: Counter,
    pub store_duration: Family<OperationLabels, Histogram, LatencyBuckets>,
    pub store_errors: Family<OperationLabels, Counter>,
    pub graph_requests: Family<GraphLabels, Counter>,
    pub requests_shed: Counter,
    pub requests_refused: Family<ReasonLabels, Counter>,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    pub store_queue_depth: Gauge,
    // Store integrity (issue 6).
    pub messages_id_conflict: Counter,
    // Inbound (issue 7).
    pub webhook_items_quarantined: Counter,
    // Live event stream (issue 7).
    pub event_streams_open: Gauge,
    pub event_streams_ended: Family<ReasonLabels, Counter>,
    /// Outgoing webhook attempts by outcome (`delivered`, `retry`, `dead`, `gone`) and path
    /// (`direct`, `queued`).
    pub outgoing_attempts: Family<AttemptLabels, Counter>,
    /// Auto-replies by outcome (`sent`, `failed`, `outcome_unknown`, `once_per`, `loop_guard`,
    /// `stale`, `invalid_reply`).
    pub auto_replies: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("whatsapp_gateway");
        let metrics = Self {
            webhooks_received: Counter::default(),
            webhook_last_received: Gauge::default(),
            webhooks_rejected: Family::default(),
            messages_stored: Counter::default(),
            messages_duplicate: Counter::default(),
            statuses_received: Counter::default(),
            store_duration: Family::new_with_constructor(LatencyBuckets),
            store_errors: Family::default(),
            graph_requests: Family::default(),
            requests_shed: Counter::default(),
            requests_refused: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            store_queue_depth: Gauge::default(),
            messages_id_conflict: Counter::default(),
            webhook_items_quarantined: Counter::default(),
            event_streams_open: Gauge::default(),
            event_streams_ended: Family::default(),
            outgoing_attempts: Family::default(),
            auto_replies: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "webhooks_received",
            "Webhook POSTs received",
            metrics.webhooks_received.clone(),
        );
        registry.register(
            "webhook_last_received_timestamp_seconds",
            "Unix time of the last webhook delivery that passed the signature check (0: none since start); alert on time() minus this",
            metrics.webhook_last_received.clone(),
        );
        registry.register(
            "webhooks_rejected",
            "Webhook POSTs refused, by reason",
            metrics.webhooks_rejected.clone(),
        );
        registry.register(
            "messages_stored",
            "Inbound messages newly stored",
            metrics.messages_stored.clone(),
        );
        registry.register(
            "messages_duplicate",
            "Inbound messages already stored (Meta retries)",
            metrics.messages_duplicate.clone(),
        );
        registry.register(
            "statuses_received",
            "Status updates received",
            metrics.statuses_received.clone(),
        );
        registry.register(
            "store_duration_seconds",
            "Store operation latency",
            metrics.store_duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed",
            metrics.store_errors.clone(),
        );
        registry.register(
            "graph_requests",
            "Graph API calls (after their retries) by operation, outcome and Meta error code",
            metrics.graph_requests.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests refused with 503 over CONCURRENCY_LIMIT or CLIENT_CONCURRENCY_LIMIT",
            metrics.requests_shed.clone(),
        );
        registry.register(
            "http_requests_refused",
            "Requests refused by reason: 503 at the edge (capacity_webhook, capacity_client, upload_limit, upload_limit_per_client, upload_memory), 429 for an address with too many wrong API keys (too_many_wrong_keys)",
            metrics.requests_refused.clone(),
        );
        registry.register(
            "http_connections_open",
            "Open client connections",
            metrics.connections_open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections closed at once over MAX_CONNECTIONS",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "store_queue_depth",
            "Save requests waiting for the embedded store's writer",
            metrics.store_queue_depth.clone(),
        );
        registry.register(
            "messages_id_conflict",
            "Inbound messages whose id was already stored for another sender (not stored)",
            metrics.messages_id_conflict.clone(),
        );
        registry.register(
            "webhook_items_quarantined",
            "Items of Meta deliveries that could not be attributed (kept in the quarantine, not stored as messages)",
            metrics.webhook_items_quarantined.clone(),
        );
        registry.register(
            "event_streams_open",
            "Event streams (SSE and WebSocket) open now",
            metrics.event_streams_open.clone(),
        );
        registry.register(
            "event_streams_ended",
            "Event streams ended, by reason (client_gone, lagged, shutdown, store_unavailable)",
            metrics.event_streams_ended.clone(),
        );
        registry.register(
            "outgoing_webhook_attempts",
            "Attempts to deliver an event to a subscribed app, by outcome (reason: delivered, retry, dead, gone) and path (direct: straight from the event log; queued: a stored delivery, e.g. a retry)",
            metrics.outgoing_attempts.clone(),
        );
        registry.register(
            "auto_replies",
            "Auto-replies of rules by outcome (reason: sent, failed, outcome_unknown, once_per, loop_guard, stale, invalid_reply)",
            metrics.auto_replies.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a refused webhook.
    pub fn reject(&self, reason: &'static str) {
        self.webhooks_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a request refused at the edge.
    pub fn refuse(&self, reason: &'static str) {
        self.requests_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records a store operation's latency and outcome.
    pub fn observe_store(&self, operation: &'static str, seconds: f64, ok: bool) {
        let labels = OperationLabels { operation };
        self.store_duration.get_or_create(&labels).observe(seconds);
        if !ok {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
