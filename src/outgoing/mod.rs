//! Outgoing webhooks: every event of the store's log handed to the apps that subscribed, signed
//! the Standard Webhooks way, retried on a durable schedule, in order per contact, and never to an
//! internal address unless allowed.
//!
//! - [`subscription`]: what a subscription is (URL, event types, number, secrets) and the API's
//!   request shapes; [`signature`]: the `webhook-signature` scheme and `whsec_` secrets;
//!   [`target`]: URL rules and the SSRF guard (checked after DNS, at delivery time).
//! - **Dispatcher** ([`dispatch`], a follower task per subscription): follows the event log by
//!   the subscription's own durable cursor, in pages (a few in flight), and attempts the events it
//!   wants straight from the log where nothing of their contact waits; one compare-and-set per page
//!   moves the cursor, logs the successes and stores the rest as deliveries. With several
//!   instances on one Redis a lease per subscription picks the instance that dispatches it. It
//!   wakes on every new event (a receiver of the event hub's broadcast) and at least every
//!   [`PASS_INTERVAL`].
//! - **Worker** ([`worker`], one task per instance): claims due deliveries under a lease, POSTs
//!   them, and completes them: 2xx done; 410 disables the subscription (the cache says so at
//!   once, and keeps saying so until the store has recorded it: the dispatcher starts no other
//!   attempt of it, whichever lane or page); anything else (3xx included: redirects are not
//!   followed; timeouts; refused targets) is retried after the next wait of
//!   WEBHOOK_RETRY_SCHEDULE (or Retry-After when longer), then dead-lettered. A subscription
//!   failing for WEBHOOK_DISABLE_AFTER is disabled. Both disables write a `webhook_disabled`
//!   event with the change. The dispatcher's and the worker's POSTs share WEBHOOK_CONCURRENCY
//!   (at most that many at once per instance).
//! - Storage (both backends, the same semantics): [`crate::store::hooks`]. Delivery is
//!   **at least once**: an instance that dies mid-attempt leaves a lease that runs out, and the
//!   delivery is attempted again; `webhook-id` (the event id) lets receivers drop the repeat.
//!
//! The body is `{"id", "type", "timestamp", "data"}`: our event vocabulary (the same `type` and
//! `data` as `/v1/events`), with the event's time as ISO 8601.

mod dispatch;
pub mod signature;
pub mod subscription;
pub mod target;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::OutgoingSettings;
use crate::events::EventHub;
use crate::metrics::{AttemptLabels, Metrics};
use crate::store::hooks::{DispatchLease, HookRow};
use crate::store::{Store, StoreError};
use subscription::{CONFIG_ID, HookConfig, ManagedBy, Subscription};

/// The dispatcher looks at the log (and reloads subscriptions) at least this often.
pub const PASS_INTERVAL: Duration = Duration::from_secs(1);

/// The worker looks for due deliveries at least this often.
pub const CLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// Longest a 410 keeps a subscription disabled in the cache while the store does not say so and
/// its attempt was never completed (its lane task ended without: a panic). Meanwhile its events
/// are stored as deliveries (the store keeps them while it is enabled there): nothing is lost.
const GONE_HOLD: Duration = Duration::from_secs(600);

/// Subscriptions a receiver answered 410 ([`Inner::note_gone`]) until a reload has read the
/// store after the attempt's completion was written ([`Inner::gone_recorded`]): until then a
/// reload keeps them disabled in the cache, whatever its (possibly older) rows say.
#[derive(Debug, Default)]
struct GoneMarks(HashMap<String, GoneMark>);

#[derive(Debug, Clone, Copy)]
struct GoneMark {
    noted: Instant,
    /// When the completion was written (or failed, or the page was given up).
    recorded: Option<Instant>,
}

impl GoneMarks {
    fn note(&mut self, id: &str, now: Instant) {
        self.0.insert(
            id.to_owned(),
            GoneMark {
                noted: now,
                recorded: None,
            },
        );
    }

    fn recorded(&mut self, id: &str, now: Instant) {
        if let Some(mark) = self.0.get_mut(id) {
            mark.recorded.get_or_insert(now);
        }
    }

    /// Whether rows read from `read_from` on may still say enabled for `id` wrongly
    /// ([`GoneMark::holds`]).
    fn holds(&self, id: &str, read_from: Instant, now: Instant) -> bool {
        self.0
            .get(id)
            .is_some_and(|mark| mark.holds(read_from, now))
    }

    /// After a reload whose rows were read from `read_from` on: forgets the marks those rows
    /// already reflect (recorded before the read, the subscription disabled or deleted there)
    /// and the stale ones.
    fn prune(&mut self, rows: &[HookRow], read_from: Instant, now: Instant) {
        self.0.retain(|id, mark| {
            mark.holds(read_from, now) && rows.iter().any(|r| r.id == *id && r.enabled)
        });
    }
}

impl GoneMark {
    /// Whether rows read from `read_from` on may still say enabled wrongly: the completion was
    /// not recorded before the read began (and the mark is not stale at `now`).
    fn holds(&self, read_from: Instant, now: Instant) -> bool {
        now.saturating_duration_since(self.noted) < GONE_HOLD
            && self.recorded.is_none_or(|at| at >= read_from)
    }
}

pub use dispatch::body as delivery_body;

/// This instance's dispatch lease: a random holder name, and [`worker::lease`] (also how long
/// a claim holds a delivery).
fn dispatch_lease(timeout: Duration) -> DispatchLease {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    DispatchLease {
        holder: format!("{}-{}", std::process::id(), hex::encode(bytes)),
        ms: worker::lease(timeout).as_millis() as i64,
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The outgoing-webhook runtime of this instance. Cheap to clone.
#[derive(Clone)]
pub struct Outgoing {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    hub: Arc<EventHub>,
    settings: OutgoingSettings,
    client: reqwest::Client,
    /// The subscriptions as last loaded, by id.
    subscriptions: RwLock<Arc<HashMap<String, Arc<Subscription>>>>,
    /// Subscriptions a receiver answered 410 whose disabling the store has not recorded yet,
    /// with when: a reload keeps them disabled ([`Inner::note_gone`]).
    gone: Mutex<GoneMarks>,
    /// Subscriptions changed: the dispatcher reloads them now.
    changed: Notify,
    /// Deliveries were enqueued or enabled: the worker claims now.
    due: Notify,
    /// The subscriptions were reloaded: the dispatcher's followers look again.
    reloaded: Notify,
    /// One per POST in flight (WEBHOOK_CONCURRENCY), the worker's and the dispatcher's.
    slots: Arc<Semaphore>,
    /// This instance's dispatch lease (its holder name; its length is also a claim's).
    lease: DispatchLease,
    attempts: Family<AttemptLabels, Counter>,
    /// config.env's subscription is still to be installed (the store failed at start-up).
    config_pending: AtomicBool,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Outgoing {
    /// Installs config.env's subscription (or removes a stale one) and starts the dispatcher
    /// and the worker.
    pub async fn start(
        settings: &OutgoingSettings,
        store: Store,
        hub: Arc<EventHub>,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let client = target::client(settings.allow_private, settings.timeout)
            .context("building the outgoing webhooks' HTTP client")?;
        let outgoing = Self {
            inner: Arc::new(Inner {
                store,
                hub,
                settings: settings.clone(),
                client,
                subscriptions: RwLock::default(),
                gone: Mutex::default(),
                changed: Notify::new(),
                due: Notify::new(),
                reloaded: Notify::new(),
                slots: Arc::new(Semaphore::new(settings.concurrency)),
                lease: dispatch_lease(settings.timeout),
                attempts: metrics.outgoing_attempts.clone(),
                config_pending: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        };
        if let Err(e) = outgoing.inner.install_configured().await {
            // The store may be down at start-up (Redis coming up after the gateway): the gateway
            // starts anyway (readiness says so) and the dispatcher tries again every pass.
            tracing::warn!(error.message = %e, "webhooks.config_subscription_not_installed (retrying)");
            outgoing.inner.config_pending.store(true, Ordering::Relaxed);
        }
        let inner = &outgoing.inner;
        inner.tracker.spawn(dispatch::run(inner.clone()));
        inner.tracker.spawn(worker::run(inner.clone()));
        Ok(outgoing)
    }

    /// The settings (WEBHOOK_*).
    pub fn settings(&self) -> &OutgoingSettings {
        &self.inner.settings
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The event hub (its log: cursors, replays).
    pub fn hub(&self) -> &Arc<EventHub> {
        &self.inner.hub
    }

    /// Subscriptions changed (created, updated, enabled, replayed): reload and deliver now.
    pub fn changed(&self) {
        self.inner.changed.notify_one();
        self.inner.due.notify_one();
    }

    /// Stops claiming and dispatching; attempts in flight finish ([`Outgoing::stopped`]).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
    }

    /// Completes when the dispatcher, the worker and every attempt have ended.
    pub async fn stopped(&self) {
        self.inner.tracker.wait().await;
    }
}

impl Inner {
    /// WEBHOOK_URL's subscription (id `config`): created at the log's end, or its configuration
    /// replaced (state, cursor and deliveries kept); removed when WEBHOOK_URL is gone.
    async fn install_configured(&self) -> Result<(), StoreError> {
        let store = &self.store;
        let Some(configured) = &self.settings.configured else {
            if store.hook_get(CONFIG_ID).await?.is_some() {
                store.hook_delete(CONFIG_ID).await?;
                tracing::info!(
                    "webhooks.config_subscription_removed (WEBHOOK_URL is no longer set)"
                );
            }
            return Ok(());
        };
        use secrecy::ExposeSecret;
        let now = now_ms() / 1000;
        let existing = store.hook_get(CONFIG_ID).await?;
        let created_at = existing
            .as_ref()
            .and_then(|row| serde_json::from_str::<HookConfig>(&row.config).ok())
            .map_or(now, |c| c.created_at);
        let config = HookConfig {
            url: configured.url.clone(),
            events: configured.events.clone(),
            phone_number_id: None,
            description: Some("WEBHOOK_URL in config.env".into()),
            secret: configured.secret.expose_secret().to_owned(),
            previous_secret: None,
            previous_until: None,
            created_at,
            updated_at: now,
            managed_by: ManagedBy::Config,
        };
        let row = HookRow {
            id: CONFIG_ID.into(),
            config: serde_json::to_string(&config).expect("a config serializes"),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            cursor: Some(self.hub.log().newest().await?.to_string()),
        };
        store.hook_put(&row, false).await?;
        let url = url::Url::parse(&configured.url)
            .map(|u| target::displayable(&u))
            .unwrap_or_default();
        tracing::info!(url, "webhooks.config_subscription_installed");
        Ok(())
    }

    /// Reloads the subscriptions from the store into the cache.
    async fn reload(&self) -> Result<Arc<HashMap<String, Arc<Subscription>>>, StoreError> {
        let read_from = Instant::now();
        let rows = self.store.hook_list().await?;
        let mut map = HashMap::with_capacity(rows.len());
        let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for row in &rows {
            match Subscription::from_row(row) {
                Ok(mut sub) => {
                    // A 410 the rows may not show yet (a page's attempt is completed when the
                    // page closes) stays disabled here.
                    if gone.holds(&sub.id, read_from, now) {
                        sub.enabled = false;
                    }
                    map.insert(sub.id.clone(), Arc::new(sub));
                }
                Err(e) => tracing::error!(error.message = %e, "webhooks.unreadable_subscription"),
            }
        }
        gone.prune(&rows, read_from, now);
        let map = Arc::new(map);
        // Written under `gone`'s lock, as `note_gone` writes: a 410 noted meanwhile is not
        // overwritten by this older view.
        *self
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner()) = map.clone();
        drop(gone);
        Ok(map)
    }

    /// Whether the cache holds an enabled subscription (the dispatcher reloads it every pass).
    fn any_enabled(&self) -> bool {
        self.subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|s| s.enabled)
    }

    /// A receiver answered 410: the cache says `id` is disabled from now on, so the dispatcher
    /// starts no attempt after this one (another lane, another page in flight) while the store
    /// records the disabling with the attempt's completion. Reloads keep it disabled until
    /// a reload has read the store after [`Inner::gone_recorded`] (or, should the attempt never
    /// be completed, for [`GONE_HOLD`]).
    fn note_gone(&self, id: &str) {
        let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.note(id, Instant::now());
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(sub) = subscriptions.get(id).filter(|s| s.enabled) else {
            return;
        };
        let mut disabled = Subscription::clone(sub);
        disabled.enabled = false;
        let mut map = HashMap::clone(&subscriptions);
        map.insert(id.to_owned(), Arc::new(disabled));
        *subscriptions = Arc::new(map);
    }

    /// The completion of a 410'd attempt was written (or failed, or its page was given up): a
    /// reload that reads the store after this says what the store holds (disabled, or enabled
    /// when the disabling was not applied).
    fn gone_recorded(&self, id: &str) {
        self.gone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recorded(id, Instant::now());
    }

    /// A subscription from the cache as it is.
    fn cached(&self, id: &str) -> Option<Arc<Subscription>> {
        self.subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// A subscription from the cache, reloading once when it is not there.
    async fn subscription(&self, id: &str) -> Option<Arc<Subscription>> {
        match self.cached(id) {
            Some(sub) => Some(sub),
            None => self.reload().await.ok()?.get(id).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, enabled: bool) -> HookRow {
        HookRow {
            id: id.into(),
            config: String::new(),
            enabled,
            disabled_reason: None,
            failing_since: None,
            cursor: None,
        }
    }

    #[test]
    fn a_410_holds_until_a_reload_reads_the_store_after_its_completion() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut gone = GoneMarks::default();
        gone.note("a", at(10));
        // Rows read before or after the 410, while the completion is not written: held, kept.
        assert!(gone.holds("a", at(0), at(20)));
        assert!(gone.holds("a", at(15), at(20)));
        gone.prune(&[row("a", true)], at(15), at(20));
        assert!(gone.holds("a", at(25), at(30)));
        assert!(!gone.holds("b", at(25), at(30)), "only the one noted");
        // Recorded at 40: rows read from before then may still be old, so it holds for them
        // and is kept...
        gone.recorded("a", at(40));
        assert!(gone.holds("a", at(35), at(50)));
        gone.prune(&[row("a", true)], at(35), at(50));
        assert!(gone.holds("a", at(35), at(50)));
        // ...while rows read after it show the store: not held, and forgotten.
        assert!(!gone.holds("a", at(45), at(50)));
        gone.prune(&[row("a", true)], at(45), at(50));
        assert!(gone.0.is_empty());

        // The store says disabled (or the subscription is gone): forgotten at once.
        gone.note("a", at(60));
        gone.note("b", at(60));
        gone.prune(&[row("a", false)], at(50), at(70));
        assert!(gone.0.is_empty());

        // Never recorded (its lane ended without completing): held for GONE_HOLD only.
        gone.note("c", at(0));
        let later = at(0) + GONE_HOLD;
        assert!(gone.holds("c", at(100), later - Duration::from_millis(1)));
        assert!(!gone.holds("c", at(100), later));
        gone.prune(&[row("c", true)], at(100), later);
        assert!(gone.0.is_empty());
    }
}
