//! The dispatcher: follows the event log for each subscription by its durable cursor, one task
//! per subscription (a slow receiver holds up only its own), and hands it the events it wants
//! (see [`super`]).
//!
//! A page of the log at a time. Events of lanes (contacts) with nothing waiting in the store are
//! POSTed straight from the log: the lanes at once (sharing WEBHOOK_CONCURRENCY with the
//! worker), a lane's events one after another in order, none started after the page's budget
//! ([`budget`]). Then one compare-and-set ([`Enqueue::FromLog`] with [`Direct`]) moves the
//! cursor, logs the attempts that succeeded and stores the rest as deliveries for the worker: a
//! failed attempt, stored claimed and then completed like any (so the retry schedule, dead
//! letters and disabling apply unchanged), the events behind it in its lane, the events of busy
//! lanes and those the budget left. A healthy receiver costs three store round trips per page
//! (log read, busy lanes, compare-and-set) instead of three writes per event.
//!
//! With several instances on one Redis the busy-lanes read takes the subscription's dispatch
//! lease ([`DispatchLease`], longer than a page can take), so one instance attempts a page; it
//! also answers the stored cursor, so nothing is attempted from a stale one. An instance that
//! dies mid-page leaves the cursor where it was: the page is attempted again (at least once;
//! `webhook-id` lets receivers drop the repeats). A disabled subscription's events go to the
//! store as deliveries, which drops them unless it was enabled meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::task::JoinHandle;

use super::subscription::Subscription;
use super::worker::{self, Tried};
use super::{Inner, PASS_INTERVAL, now_ms};
use crate::events::log::EventLog;
use crate::events::{Event, EventId, Wakeups};
use crate::store::StoreError;
use crate::store::hooks::{Claimed, Direct, DispatchLease, Enqueue, NewDelivery, Verdict};

/// The body POSTed for `event`: `{"id","type","timestamp","data"}`, `data` verbatim.
pub fn body(event: &Event, now_ms: i64) -> String {
    let ms = event.time_ms().unwrap_or(now_ms).max(0) as u64;
    let timestamp = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
    let kind = serde_json::Value::String(event.kind.clone()).to_string();
    format!(
        r#"{{"id":"{}","type":{kind},"timestamp":"{timestamp}","data":{}}}"#,
        event.id,
        event.data()
    )
}

/// The dispatcher: keeps a follower task running for every subscription (reloaded on a change
/// and every [`PASS_INTERVAL`]); installs config.env's subscription when the store failed at
/// start-up.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut followers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut failing = false;
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        if inner.config_pending.load(Ordering::Relaxed) && inner.install_configured().await.is_ok()
        {
            inner.config_pending.store(false, Ordering::Relaxed);
        }
        match inner.reload().await {
            Ok(subs) => {
                if failing {
                    tracing::info!("webhooks.dispatch_recovered");
                    failing = false;
                }
                // A follower ends by itself when its subscription is gone.
                followers.retain(|_, task| !task.is_finished());
                for id in subs.keys() {
                    if !followers.contains_key(id) {
                        let task = inner.tracker.spawn(follow(inner.clone(), id.clone()));
                        followers.insert(id.clone(), task);
                    }
                }
                inner.reloaded.notify_waiters();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error.message = %e, "webhooks.dispatch_failed (retrying)");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.changed.notified() => {}
            () = tokio::time::sleep(PASS_INTERVAL) => {}
        }
    }
}

/// The longest a page goes on starting attempts: the timeout, at most [`MAX_BUDGET`]. A page
/// then ends within the budget plus one timeout, well inside [`super::worker::lease`].
fn budget(timeout: Duration) -> Duration {
    timeout.min(MAX_BUDGET)
}

/// See [`budget`].
const MAX_BUDGET: Duration = Duration::from_secs(5);
/// Most events in a page. A page's events wait for its slowest lane before the next page
/// starts, so its size is the delivery latency under load: small pages keep it low, at three
/// store round trips each.
const PAGE_EVENTS: usize = 128;
/// Stream entries read for a page on Redis (an entry holds the events of one ingest batch, up
/// to a few dozen under load; a SQLite row holds one event); the events past [`PAGE_EVENTS`]
/// are read again by the next page.
const STREAM_ENTRIES: usize = 16;

/// Where a follower is in the log.
struct Position {
    /// The cursor as stored (the compare-and-set's expected value).
    stored: Option<String>,
    at: Option<EventId>,
}

impl Position {
    fn new(inner: &Inner, stored: Option<String>) -> Self {
        let at = stored.as_deref().and_then(|c| inner.hub.log().parse_id(c));
        Self { stored, at }
    }
}

/// What a page came to.
enum Step {
    /// Done, and there may be more after it (or the cursor was corrected): go on at once.
    More,
    /// Done, and the log has nothing more for now.
    CaughtUp,
    /// Another instance holds the dispatch lease.
    Elsewhere,
}

/// One subscription's follower: pages until the subscription is gone or shutdown.
async fn follow(inner: Arc<Inner>, id: String) {
    let Some(sub) = inner.cached(&id) else {
        return;
    };
    let mut at = Position::new(&inner, sub.cursor.clone());
    let mut wake = Wakeups::default();
    wake.follow(&inner.hub, true).await;
    let mut failing = false;
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let Some(sub) = inner.cached(&id) else {
            break;
        };
        let step = page(&inner, &sub, &mut at).await;
        let step = match step {
            Ok(Step::Elsewhere) => {
                // Wait, then take up the cursor the holder moved on.
                tokio::select! {
                    () = inner.shutdown.cancelled() => break,
                    () = tokio::time::sleep(PASS_INTERVAL) => {}
                }
                refresh(&inner, &id, &mut at).await.map(|()| Step::More)
            }
            other => other,
        };
        match step {
            Ok(step) => {
                if failing {
                    tracing::info!(subscription = %id, "webhooks.dispatch_recovered");
                    failing = false;
                }
                if matches!(step, Step::More) {
                    continue;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(subscription = %id, error.message = %e, "webhooks.dispatch_failed (retrying)");
                }
                failing = true;
            }
        }
        if !wake
            .wait(&inner.shutdown, &inner.reloaded, PASS_INTERVAL)
            .await
        {
            break;
        }
    }
    // Let another instance take over at once.
    if let Err(e) = inner.store.hook_release(&id, &inner.holder).await {
        tracing::debug!(subscription = %id, error.message = %e, "webhooks.dispatch_lease_not_released");
    }
}

/// Takes up the stored cursor (another instance moved it).
async fn refresh(inner: &Inner, id: &str, at: &mut Position) -> Result<(), StoreError> {
    if let Some(row) = inner.store.hook_get(id).await? {
        *at = Position::new(inner, row.cursor);
    }
    Ok(())
}

/// The events of one lane in a page, in order, with how far their attempts got.
struct Lane<'a> {
    name: &'a str,
    events: Vec<(&'a Event, Bytes)>,
    busy: bool,
    /// Attempt logs of the events delivered (the first `delivered.len()` events).
    delivered: Vec<String>,
    /// The attempt of the event after them, when it failed.
    failed: Option<Tried>,
}

/// One page of the log for one subscription.
async fn page(inner: &Inner, sub: &Subscription, at: &mut Position) -> Result<Step, StoreError> {
    let log = inner.hub.log();
    let entries = match log {
        EventLog::Redis(_) => STREAM_ENTRIES,
        EventLog::Sqlite(_) => PAGE_EVENTS,
    };
    let mut events = log.read_after(at.at, entries).await?;
    events.truncate(PAGE_EVENTS);
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(Step::CaughtUp);
    };
    // Look again at once: the log may hold more (an empty read then says it is caught up).
    let more = Step::More;
    let now = now_ms();
    let next = last.to_string();
    let wanted = events.iter().filter(|e| sub.wants(e));
    if !sub.enabled {
        // Handed to the store, which decides (drops them while the subscription is disabled):
        // an enable racing this page loses nothing.
        let deliveries: Vec<NewDelivery> = wanted
            .map(|e| NewDelivery {
                event_id: e.id.to_string(),
                lane: e.contact().unwrap_or_default().to_owned(),
                body: body(e, now),
            })
            .collect();
        return commit(
            inner,
            sub,
            at,
            last,
            next,
            deliveries,
            Direct::default(),
            more,
        )
        .await;
    }
    let mut lanes: Vec<Lane<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for e in wanted {
        let name = e.contact().unwrap_or_default();
        let i = *index.entry(name).or_insert_with(|| {
            lanes.push(Lane {
                name,
                events: Vec::new(),
                busy: false,
                delivered: Vec::new(),
                failed: None,
            });
            lanes.len() - 1
        });
        lanes[i].events.push((e, Bytes::from(body(e, now))));
    }
    if !lanes.is_empty() {
        let names: Vec<&str> = lanes.iter().map(|l| l.name).collect();
        let lease = DispatchLease {
            holder: inner.holder.clone(),
            ms: worker::lease(inner.settings.timeout).as_millis() as i64,
        };
        let Some(found) = inner.store.hook_busy_lanes(&sub.id, &names, &lease).await? else {
            return Ok(Step::Elsewhere);
        };
        if found.cursor != at.stored {
            // Moved by another instance before this one took the lease: nothing attempted.
            *at = Position::new(inner, found.cursor);
            return Ok(Step::More);
        }
        for lane in &mut lanes {
            lane.busy = found.busy.iter().any(|b| b == lane.name);
        }
        let deadline = Instant::now() + budget(inner.settings.timeout);
        join_all(
            lanes
                .iter_mut()
                .filter(|l| !l.busy)
                .map(|lane| attempt_lane(inner, sub, lane, deadline)),
        )
        .await;
    }
    let mut direct = Direct {
        claimed_until: now_ms() + worker::lease(inner.settings.timeout).as_millis() as i64,
        ..Direct::default()
    };
    let mut deliveries = Vec::new();
    let mut failures = Vec::new();
    for lane in lanes {
        let done = lane.delivered.len();
        direct.delivered.extend(lane.delivered);
        let mut failed = lane.failed;
        for (e, bytes) in lane.events.into_iter().skip(done) {
            let event_id = e.id.to_string();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(tried) = failed.take() {
                direct.failed.push(event_id.clone());
                failures.push((event_id.clone(), body.clone(), tried));
            }
            deliveries.push(NewDelivery {
                event_id,
                lane: lane.name.to_owned(),
                body,
            });
        }
    }
    let token = direct.claimed_until;
    let step = commit(inner, sub, at, last, next, deliveries, direct, more).await?;
    for (event_id, body, tried) in failures {
        let claimed = Claimed {
            subscription: sub.id.clone(),
            event_id,
            body,
            attempts: 0,
            token,
        };
        worker::complete(inner, sub, claimed, tried).await;
    }
    Ok(step)
}

/// Attempts a lane's events in order until one fails, the budget is spent or shutdown.
async fn attempt_lane(inner: &Inner, sub: &Subscription, lane: &mut Lane<'_>, deadline: Instant) {
    for (e, body) in &lane.events {
        if inner.shutdown.is_cancelled() || Instant::now() >= deadline {
            return;
        }
        let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline.into(), inner.slots.acquire()).await
        else {
            return;
        };
        let tried = worker::attempt(inner, sub, &e.id.to_string(), body, 0).await;
        if tried.verdict == Verdict::Delivered {
            lane.delivered.push(tried.log);
        } else {
            lane.failed = Some(tried);
            return;
        }
    }
}

/// The page's compare-and-set: the cursor moves to `last` with the deliveries stored.
#[allow(clippy::too_many_arguments)]
async fn commit(
    inner: &Inner,
    sub: &Subscription,
    at: &mut Position,
    last: EventId,
    next: String,
    deliveries: Vec<NewDelivery>,
    direct: Direct,
    more: Step,
) -> Result<Step, StoreError> {
    let how = Enqueue::FromLog {
        expected: at.stored.clone(),
        next: next.clone(),
        direct,
    };
    match inner
        .store
        .hook_enqueue(&sub.id, &how, &deliveries, now_ms())
        .await?
    {
        Some(n) => {
            if n > 0 {
                inner.due.notify_one();
            }
            at.stored = Some(next);
            at.at = Some(last);
            Ok(more)
        }
        None => {
            // Moved by another instance (or the subscription is gone): take up its cursor.
            refresh(inner, &sub.id, at).await?;
            Ok(Step::More)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_event_with_its_time() {
        let data = r#"{"phone_number_id":"1","contact":{"id":"919216598210"},"x":"\u00e9"}"#;
        let event = Event::new(
            EventId::Stream(1_763_940_000_123, 0, 2),
            "message_status".into(),
            data.into(),
        );
        assert_eq!(
            body(&event, 0),
            format!(
                r#"{{"id":"1763940000123-0-2","type":"message_status","timestamp":"2025-11-23T23:20:00.123Z","data":{data}}}"#
            )
        );
        let row = Event::new(EventId::Row(5), "x".into(), "{}".into());
        assert!(body(&row, 1_000).contains(r#""timestamp":"1970-01-01T00:00:01.000Z""#));
        let dated = Event::new(EventId::Row(6), "x".into(), "{}".into()).written_at(2_000);
        assert!(body(&dated, 1_000).contains("00:00:02.000Z"));
    }
}
