//! Storage of outgoing webhooks (see [`crate::outgoing`]): subscriptions, their deliveries
//! waiting or being retried, the dead-letter list and the attempt log, on both backends.
//!
//! Model, the same on both:
//! - A **subscription** is its configuration (a JSON document the service owns, changed only
//!   through the API or config) plus state the delivery path changes: `enabled`,
//!   `disabled_reason`, `failing_since` (unix seconds of the first failure since the last
//!   success) and `cursor` (the last event of the log dealt with: attempted straight from the log
//!   or turned into deliveries).
//! - A **delivery** is one event for one subscription: the exact body to POST, its **lane** (the
//!   event's contact, `""` for events without one), how many attempts were made, and when it is
//!   due. Deliveries of one lane go out one at a time in the order they were enqueued: only a
//!   lane's oldest delivery is ever due, so a later event waits while an earlier one is retried.
//! - **Claiming** makes due deliveries invisible for a lease (their due time moves to the lease's
//!   end, which is also the claim's token); **completing** applies only with that token, so an
//!   instance whose lease ran out (another took the delivery over) changes nothing. A dead
//!   instance's claims simply fall due again.
//! - **Enqueueing** from the log is a compare-and-set on the cursor, so when several instances
//!   follow one log only one turns each event into deliveries. The dispatcher attempts most
//!   events before that, straight from the log, in lanes with nothing waiting ([`Direct`]): the
//!   same compare-and-set then records the attempts that succeeded (attempt log, no longer
//!   failing) and stores only the rest, a failed attempt claimed for its completion and the
//!   events behind it in its lane as waiting deliveries. A healthy receiver costs no delivery
//!   writes at all.
//! - **Dispatching** one subscription is one instance's job at a time: a lease
//!   ([`DispatchLease`]) taken with the read of the busy lanes, renewed by every page, given
//!   back on shutdown. SQLite has one instance (its DATA_DIR lock), so no lease there.
//! - A completed delivery is removed (its attempts stay in the log); a delivery out of attempts
//!   moves to the dead-letter list, which keeps its body for a replay ([`DEAD_KEPT`] newest).
//! - Disabling (410 Gone, or failing longer than WEBHOOK_DISABLE_AFTER) writes its
//!   `webhook_disabled` event in the same atomic step.
//!
//! Redis keys (`<p>` = REDIS_KEY_PREFIX): `<p>:hooks` (set of ids), `<p>:hook:<id>` (hash:
//! `config`, `enabled`, `disabled_reason`, `failing_since`, `cursor`), `<p>:hooks:due` (zset of
//! `<id> <event id>` by due time in ms, lane heads of enabled subscriptions only),
//! `<p>:hook:<id>:lane:<lane>` (list of event ids), `:lanes` (set), `:body` and `:meta` (hashes by
//! event id; meta = `<attempts> <lane>`), `:parked` (heads of a disabled subscription), `:dead`
//! (zset by time), `:log` (the newest [`LOG_KEPT`] attempts), `:dispatcher` (the dispatch lease's
//! holder, with its expiry). The scripts compute these keys, like
//! the conversation reads do (single Redis, not Cluster). SQLite: `webhook_subscriptions`,
//! `webhook_deliveries`, `webhook_attempts` (schema version 7).

use super::{Store, StoreError};

/// Attempts kept per subscription in its log.
pub const LOG_KEPT: usize = 1000;
/// Dead deliveries kept per subscription (the oldest are dropped past it).
pub const DEAD_KEPT: usize = 10_000;

/// A new configuration document for a subscription, made from the document `from`. No `Debug`:
/// the documents hold the secrets.
#[derive(Clone, Copy)]
pub struct ConfigChange<'a> {
    /// The stored document the change was computed from.
    pub from: &'a str,
    /// The document to store instead.
    pub to: &'a str,
}

/// What [`Store::hook_update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookUpdate {
    Applied,
    /// No such subscription.
    Missing,
    /// Its configuration is no longer the change's `from` (changed meanwhile): nothing done.
    Changed,
}

/// A subscription as stored. Its `Debug` leaves the configuration (which holds the secrets) out.
#[derive(Clone, PartialEq, Eq)]
pub struct HookRow {
    /// `wh_...`, or `config` for the one from config.env.
    pub id: String,
    /// The configuration document (JSON, see `crate::outgoing::subscription`).
    pub config: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Unix seconds of the first failure since the last success.
    pub failing_since: Option<i64>,
    /// The last event dealt with: attempted, or turned into deliveries (the log's id format).
    pub cursor: Option<String>,
}

impl std::fmt::Debug for HookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRow")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .field("failing_since", &self.failing_since)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// One delivery to enqueue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The event's id (also `webhook-id`).
    pub event_id: String,
    /// The contact the event is about (`""`: none); one delivery at a time per lane.
    pub lane: String,
    /// The exact body to POST.
    pub body: String,
}

/// How deliveries are enqueued.
#[derive(Debug, Clone)]
pub enum Enqueue {
    /// From the log: only if the subscription's cursor is still `expected`; then it becomes
    /// `next`. A subscription disabled at that moment gets none of them (it collects no events
    /// while disabled; unless [`Direct::read_enabled`]), but its cursor moves.
    FromLog {
        expected: Option<String>,
        next: String,
        /// What was attempted straight from the log.
        direct: Direct,
    },
    /// A replay (the cursor stays): deliveries already waiting are left as they are; dead ones
    /// come back.
    Replay,
    /// The oldest `limit` dead deliveries come back, in the order they died (the given list is
    /// ignored).
    DeadLetters { limit: usize },
}

/// Attempts the dispatcher made straight from the log, recorded with the page's enqueue.
#[derive(Debug, Clone, Default)]
pub struct Direct {
    /// The attempts that succeeded, as JSON for the attempt log, oldest first: logged, and the
    /// subscription is no longer failing.
    pub delivered: Vec<String>,
    /// Events among the enqueued deliveries whose attempt failed: each is stored claimed until
    /// [`Direct::claimed_until`] (its [`Claimed::token`]), so the completion that follows
    /// applies the usual retry, dead-letter and disable rules. When its lane is no longer free
    /// it waits there like any delivery (and its completion is stale).
    pub failed: Vec<String>,
    pub claimed_until: i64,
    /// The page was read while the subscription was enabled: its deliveries are kept even if it
    /// has been disabled since (they wait for it to be enabled again), as they would have been
    /// had they been stored at once. Otherwise a disabled subscription gets none.
    pub read_enabled: bool,
}

/// Who dispatches a subscription: a lease per subscription, so that instances sharing a Redis
/// never attempt the same page twice. A holder that dies is replaced when its lease runs out.
#[derive(Debug, Clone)]
pub struct DispatchLease {
    /// This instance's dispatcher (random, per process).
    pub holder: String,
    /// How long a page may take: the lease runs out this long after the holder's last read.
    pub ms: i64,
}

/// What [`Store::hook_busy_lanes`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyLanes {
    /// The subscription's cursor now (the dispatcher attempts nothing from a stale one).
    pub cursor: Option<String>,
    /// The lanes asked about that have deliveries waiting.
    pub busy: Vec<String>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub subscription: String,
    pub event_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The claim's token (its lease end, ms): completing needs it.
    pub token: i64,
}

/// What happened to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the delivery is done; the lane's next one is due now.
    Delivered,
    /// Try again at this time (ms).
    Retry { at_ms: i64 },
    /// Out of attempts: to the dead-letter list; the lane's next one is due now.
    Dead,
    /// 410 Gone: the subscription is disabled; the delivery waits for it to be enabled again.
    Gone,
}

/// The end of one claimed attempt.
#[derive(Debug, Clone)]
pub struct Completion {
    pub claimed: Claimed,
    pub verdict: Verdict,
    /// The attempt as JSON, for the subscription's log.
    pub log: String,
    /// Now (ms).
    pub now_ms: i64,
    /// A failure disables the subscription once it has been failing this long (ms). The first
    /// failure's time is kept in whole seconds, so the span is counted from the end of that
    /// second: never less than this, at most a second more.
    pub disable_after_ms: i64,
    /// Why, if this completion disables the subscription (410, or failing too long).
    pub disabled_reason: String,
    /// The `webhook_disabled` event data written if it does.
    pub disabled_event: String,
}

/// What completing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// Applied.
    Applied,
    /// Applied, and the subscription was disabled by it.
    Disabled,
    /// The claim's lease had passed to someone else: nothing changed.
    Stale,
}

/// Deliveries waiting and dead, per subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub pending: u64,
    pub dead: u64,
}

/// The reason text written when a subscription has failed longer than allowed.
pub fn failing_reason(after_ms: i64) -> String {
    format!(
        "every delivery failed for {}",
        humantime::format_duration(std::time::Duration::from_millis(after_ms.max(0) as u64))
    )
}

/// The reason text written on 410 Gone.
pub const GONE_REASON: &str = "the receiver answered 410 Gone";

impl Store {
    /// Stores a subscription; with `create_only`, only when the id is free (`false` otherwise).
    /// Replacing keeps the state and the deliveries (config.env's subscription at start-up).
    pub async fn hook_put(&self, row: &HookRow, create_only: bool) -> Result<bool, StoreError> {
        match self {
            Store::Redis(s) => s.hook_put(row, create_only).await,
            Store::Embedded(s) => s.hook_put(row, create_only).await,
        }
    }

    /// Changes a subscription's configuration (only while it is still the document the change
    /// was made from: a compare-and-set, so two concurrent changes cannot undo each other)
    /// and/or enables or disables it (`reason` is kept with a disable). Enabling clears the
    /// failure state and makes its waiting deliveries due. Nothing is changed unless the answer
    /// is [`HookUpdate::Applied`].
    pub async fn hook_update(
        &self,
        id: &str,
        config: Option<ConfigChange<'_>>,
        enabled: Option<(bool, &str)>,
        now_ms: i64,
    ) -> Result<HookUpdate, StoreError> {
        match self {
            Store::Redis(s) => s.hook_update(id, config, enabled, now_ms).await,
            Store::Embedded(s) => s.hook_update(id, config, enabled, now_ms).await,
        }
    }

    /// Deletes a subscription with its deliveries and log. `false` when there was none.
    pub async fn hook_delete(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Redis(s) => s.hook_delete(id).await,
            Store::Embedded(s) => s.hook_delete(id).await,
        }
    }

    /// Every subscription, by id.
    pub async fn hook_list(&self) -> Result<Vec<HookRow>, StoreError> {
        match self {
            Store::Redis(s) => s.hook_list().await,
            Store::Embedded(s) => s.hook_list().await,
        }
    }

    /// One subscription (one read).
    pub async fn hook_get(&self, id: &str) -> Result<Option<HookRow>, StoreError> {
        match self {
            Store::Redis(s) => s.hook_get(id).await,
            Store::Embedded(s) => s.hook_get(id).await,
        }
    }

    /// Enqueues deliveries for a subscription (see [`Enqueue`]); each lane's first becomes due
    /// at `now_ms` when nothing of its lane is waiting. `None`: the subscription is gone or (for
    /// [`Enqueue::FromLog`]) its cursor moved meanwhile; else how many were enqueued.
    pub async fn hook_enqueue(
        &self,
        id: &str,
        how: &Enqueue,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<Option<usize>, StoreError> {
        match self {
            Store::Redis(s) => s.hook_enqueue(id, how, deliveries, now_ms).await,
            Store::Embedded(s) => s.hook_enqueue(id, how, deliveries, now_ms).await,
        }
    }

    /// Of `lanes`, those that have deliveries waiting (the dispatcher's events for them must
    /// wait behind), and the subscription's cursor, taking or renewing its dispatch lease.
    /// `None`: another instance holds the lease (or the subscription is gone).
    pub async fn hook_busy_lanes(
        &self,
        id: &str,
        lanes: &[&str],
        lease: &DispatchLease,
    ) -> Result<Option<BusyLanes>, StoreError> {
        match self {
            Store::Redis(s) => s.hook_busy_lanes(id, lanes, lease).await,
            Store::Embedded(s) => s.hook_busy_lanes(id, lanes).await,
        }
    }

    /// Gives the dispatch lease back, if `holder` still has it (on shutdown, so another
    /// instance takes over at once).
    pub async fn hook_release(&self, id: &str, holder: &str) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.hook_release(id, holder).await,
            Store::Embedded(_) => Ok(()),
        }
    }

    /// Claims up to `limit` due deliveries of enabled subscriptions until `now_ms + lease_ms`;
    /// also answers when the next one is due (ms), if any is waiting.
    pub async fn hook_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<(Vec<Claimed>, Option<i64>), StoreError> {
        match self {
            Store::Redis(s) => s.hook_claim(now_ms, lease_ms, limit).await,
            Store::Embedded(s) => s.hook_claim(now_ms, lease_ms, limit).await,
        }
    }

    /// Records a claimed attempt's end.
    pub async fn hook_complete(&self, completion: &Completion) -> Result<Completed, StoreError> {
        match self {
            Store::Redis(s) => s.hook_complete(completion).await,
            Store::Embedded(s) => s.hook_complete(completion).await,
        }
    }

    /// The newest `limit` attempts of a subscription (JSON), newest first.
    pub async fn hook_attempts(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Redis(s) => s.hook_attempts(id, limit).await,
            Store::Embedded(s) => s.hook_attempts(id, limit).await,
        }
    }

    /// How many deliveries of a subscription wait and how many are dead.
    pub async fn hook_backlog(&self, id: &str) -> Result<Backlog, StoreError> {
        match self {
            Store::Redis(s) => s.hook_backlog(id).await,
            Store::Embedded(s) => s.hook_backlog(id).await,
        }
    }
}
