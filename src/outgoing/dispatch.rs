//! The dispatcher: a task that keeps a follower task running per subscription (a slow receiver
//! holds up only its own); each follows the event log by its subscription's durable cursor and
//! hands it the events it wants (see [`super`]).
//!
//! A follower works in pages of the log, up to [`DEPTH`] in flight, closed in the order they
//! were opened; a lane's events in a later page wait for its earlier page (through
//! [`Chains`]) and are stored, not attempted, when that one did not clear the lane. Events of
//! lanes (contacts) with nothing waiting in the store are
//! POSTed straight from the log: the lanes at once (sharing WEBHOOK_CONCURRENCY with the
//! worker), a lane's events one after another in order, none started after the page's budget
//! ([`budget`]). Then one compare-and-set ([`Enqueue::FromLog`] with [`Direct`]) moves the
//! cursor, logs the attempts that succeeded and stores the rest as deliveries for the worker: a
//! failed attempt, stored claimed and then completed like any (so the retry schedule, dead
//! letters and disabling apply unchanged), the events behind it in its lane, the events of busy
//! lanes and those the budget left. A healthy receiver costs three store round trips per page
//! (log read, busy lanes, compare-and-set) instead of three writes per event.
//!
//! With several instances on one Redis every page's busy-lanes read takes (or renews) the
//! subscription's dispatch lease ([`crate::store::hooks::DispatchLease`], longer than a page can
//! take), so one instance opens and closes pages; it also answers the stored cursor, so nothing
//! is attempted from a stale one. An instance that dies mid-page leaves the cursor where it was:
//! its pages in flight are attempted again (at least once; `webhook-id` lets receivers drop the
//! repeats).
//! A disabled subscription's events go to the store as deliveries, which drops them unless it
//! was enabled meanwhile; a page read while it was enabled keeps what did not go out, for when
//! it is enabled again, and stops attempting once the cache says it was disabled (at once
//! after a 410 of any of its attempts).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::subscription::Subscription;
use super::worker::{self, Tried};
use super::{Inner, PASS_INTERVAL, now_ms};
use crate::events::log::EventLog;
use crate::events::{Event, EventId, Wakeups};
use crate::store::StoreError;
use crate::store::hooks::{Claimed, Direct, Enqueue, NewDelivery, Verdict};

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
/// Most pages in flight per subscription: their attempts overlap (a lane's wait for its
/// previous page), they are closed in order.
const DEPTH: usize = 4;
/// How long the oldest page in flight may hold up the next one (see [`follow`]).
const SLOW_PAGE: Duration = Duration::from_millis(50);
/// Most events in a page. Pages in flight are what a follower delivers at once: smaller ones
/// (128, 8 stream entries) cost more round trips per event and fell behind at 5,500 webhooks/s
/// (p99 650 ms); with 256 and 16 entries the same load kept a p99 of 10 ms, and full load (6,200
/// webhooks/s) 35 ms (BENCHMARKS.md, tenth session).
const PAGE_EVENTS: usize = 256;
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

/// What opening a page came to.
enum Opened {
    Page(Page),
    /// The log has nothing more for now.
    CaughtUp,
    /// Another instance holds the dispatch lease.
    Elsewhere,
    /// The stored cursor is not this follower's (another instance moved it): nothing attempted.
    Moved(Option<String>),
}

/// A page whose attempts are under way; closed (committed) in the order pages were opened.
struct Page {
    /// Its number in this follower's sequence.
    seq: u64,
    last: EventId,
    /// Deliveries stored as they are (a disabled subscription's events).
    plain: Vec<NewDelivery>,
    /// Its lanes' attempts under way, in order.
    lanes: VecDeque<JoinHandle<LaneRun>>,
    /// When it was opened.
    opened: Instant,
    /// Its lanes whose attempts ended ([`Page::settle`]).
    settled: Vec<LaneRun>,
    /// Read while the subscription was enabled (see [`Direct::read_enabled`]).
    read_enabled: bool,
}

impl Page {
    /// Stops its attempts (a page given up).
    fn abort(&self) {
        self.lanes.iter().for_each(JoinHandle::abort);
    }

    /// Waits until every lane's attempts ended. Cancel-safe: what ended is kept. A lane task
    /// ends by itself (its attempts are bounded); one that panicked is an error (the page is
    /// then attempted again).
    async fn settle(&mut self) -> Result<(), StoreError> {
        while let Some(task) = self.lanes.front_mut() {
            let run = task
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
            self.lanes.pop_front();
            self.settled.push(run);
        }
        Ok(())
    }
}

/// One lane's events in one page and how far their attempts got.
struct LaneRun {
    name: String,
    /// (event id, body), in order.
    events: Vec<(String, Bytes)>,
    /// Attempt logs of the first `delivered.len()` events, which were delivered.
    delivered: Vec<String>,
    /// The attempt of the event after them, when it failed.
    failed: Option<Tried>,
}

/// Whether each lane's events of the pages in flight all went out (`Some(true)`), or some
/// must be stored (`Some(false)`): a later page's events of the lane wait for it, and are
/// stored when it did not clear. Kept per lane with the page that set it, until that page is
/// closed (the store knows its outcome then).
type Chains = HashMap<String, (u64, watch::Receiver<Option<bool>>)>;

/// One subscription's follower: opens pages until [`DEPTH`] are in flight, closes the oldest,
/// and so on, until the subscription is gone or shutdown (pages in flight are closed first).
async fn follow(inner: Arc<Inner>, id: String) {
    let Some(sub) = inner.cached(&id) else {
        return;
    };
    let mut at = Position::new(&inner, sub.cursor.clone());
    let mut wake = Wakeups::default();
    wake.follow(&inner.hub, true).await;
    let mut pages: VecDeque<Page> = VecDeque::new();
    let mut chains = Chains::new();
    let mut read_at = at.at;
    let mut seq = 0u64;
    let mut failing = false;
    while let Some(sub) = inner.cached(&id) {
        let stopping = inner.shutdown.is_cancelled();
        let mut idle = None;
        while !stopping && pages.len() < DEPTH {
            match open(&inner, &sub, &at, read_at, &mut chains, seq).await {
                Ok(Opened::Page(page)) => {
                    read_at = Some(page.last);
                    seq += 1;
                    pages.push_back(page);
                }
                Ok(Opened::Moved(cursor)) if pages.is_empty() => {
                    at = Position::new(&inner, cursor);
                    read_at = at.at;
                }
                Ok(Opened::Moved(_) | Opened::Elsewhere) if !pages.is_empty() => break,
                Ok(other) => {
                    idle = Some(Ok(other));
                    break;
                }
                Err(e) => {
                    idle = Some(Err(e));
                    break;
                }
            }
        }
        // While there is room for more pages and the oldest one is slow (another contact's slow
        // receiver), a new event opens the next page at once instead of waiting for it. Not
        // before [`SLOW_PAGE`]: under load, pages then fill up rather than split into many small
        // ones (three store round trips each).
        let room = !stopping && pages.len() < DEPTH && matches!(idle, Some(Ok(Opened::CaughtUp)));
        if let Some(oldest) = pages.front_mut() {
            let settled = if room {
                let slow = tokio::time::Instant::from_std(oldest.opened + SLOW_PAGE);
                let woken = async {
                    tokio::time::sleep_until(slow).await;
                    wake.wait(&inner.shutdown, &inner.reloaded, PASS_INTERVAL)
                        .await
                };
                tokio::select! {
                    // A page that settled is closed before a new one opens.
                    biased;
                    settled = oldest.settle() => Some(settled),
                    _ = woken => None,
                }
            } else {
                Some(oldest.settle().await)
            };
            let Some(settled) = settled else {
                continue;
            };
            let page = pages.pop_front().expect("the oldest page");
            let closed = page.seq;
            let outcome = match settled {
                Ok(()) => close(&inner, &sub, &mut at, page).await,
                Err(e) => {
                    page.abort();
                    Err(e)
                }
            };
            match outcome {
                Ok(true) => {
                    chains.retain(|_, (opened, _)| *opened > closed);
                    continue;
                }
                outcome => {
                    // Moved by another instance, or not stored: the pages after it cannot be
                    // closed before it. They are given up (their attempts may be made again:
                    // at least once) and the follower starts over from the stored cursor.
                    pages.drain(..).for_each(|page| page.abort());
                    chains.clear();
                    // A 410 among them was not recorded: the cache follows the store again
                    // (the next attempt meets the 410 again and records it).
                    inner.gone_recorded(&id);
                    let outcome = match outcome {
                        Ok(_) => refresh(&inner, &id, &mut at).await,
                        Err(e) => Err(e),
                    };
                    read_at = at.at;
                    match outcome {
                        Ok(()) => continue,
                        Err(e) => idle = Some(Err(e)),
                    }
                }
            }
        }
        if stopping {
            break;
        }
        match idle {
            Some(Err(e)) => {
                if !failing {
                    tracing::warn!(subscription = %id, error.message = %e, "webhooks.dispatch_failed (retrying)");
                }
                failing = true;
            }
            Some(Ok(Opened::Elsewhere)) => {
                // Wait, then take up the cursor the holder moved on.
                tokio::select! {
                    () = inner.shutdown.cancelled() => {}
                    () = tokio::time::sleep(PASS_INTERVAL) => {}
                }
                if refresh(&inner, &id, &mut at).await.is_ok() {
                    read_at = at.at;
                }
                continue;
            }
            _ => {
                if failing {
                    tracing::info!(subscription = %id, "webhooks.dispatch_recovered");
                    failing = false;
                }
            }
        }
        if !wake
            .wait(&inner.shutdown, &inner.reloaded, PASS_INTERVAL)
            .await
        {
            // Shutdown: the loop closes what is in flight first.
            continue;
        }
    }
    // Gone (deleted): what is still in flight stops.
    pages.iter().for_each(Page::abort);
    // Let another instance take over at once.
    if let Err(e) = inner.store.hook_release(&id, &inner.lease.holder).await {
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

/// Reads the page after `read_at` and starts its attempts: each lane of it with nothing
/// waiting in the store gets a task, which waits for the lane's previous page in flight.
async fn open(
    inner: &Arc<Inner>,
    sub: &Arc<Subscription>,
    at: &Position,
    read_at: Option<EventId>,
    chains: &mut Chains,
    seq: u64,
) -> Result<Opened, StoreError> {
    let log = inner.hub.log();
    let entries = match log {
        EventLog::Redis(_) => STREAM_ENTRIES,
        EventLog::Sqlite(_) => PAGE_EVENTS,
    };
    let mut events = log.read_after(read_at, entries).await?;
    events.truncate(PAGE_EVENTS);
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(Opened::CaughtUp);
    };
    let now = now_ms();
    let mut lanes: Vec<(&str, Vec<&Event>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for e in events.iter().filter(|e| sub.wants(e)) {
        let name = e.contact().unwrap_or_default();
        let i = *index.entry(name).or_insert_with(|| {
            lanes.push((name, Vec::new()));
            lanes.len() - 1
        });
        lanes[i].1.push(e);
    }
    // Every page takes (or renews) the lease, those with nothing to attempt too: only its
    // holder moves the cursor, so no other instance closes a page under it. A disabled
    // subscription's page attempts nothing, so which lanes are busy does not matter to it.
    let names: Vec<&str> = if sub.enabled {
        lanes.iter().map(|l| l.0).collect()
    } else {
        Vec::new()
    };
    let Some(found) = inner
        .store
        .hook_busy_lanes(&sub.id, &names, &inner.lease)
        .await?
    else {
        return Ok(Opened::Elsewhere);
    };
    if found.cursor != at.stored {
        return Ok(Opened::Moved(found.cursor));
    }
    let mut page = Page {
        seq,
        last,
        plain: Vec::new(),
        lanes: VecDeque::new(),
        settled: Vec::new(),
        opened: Instant::now(),
        read_enabled: sub.enabled,
    };
    if !sub.enabled {
        // Handed to the store, which decides (drops them while the subscription is disabled):
        // an enable racing this page loses nothing. A later page's events of these lanes wait
        // for this one to be closed, and are stored behind them.
        for (name, events) in lanes {
            let (_, stored) = watch::channel(Some(false));
            chains.insert(name.to_owned(), (seq, stored));
            page.plain.extend(events.into_iter().map(|e| NewDelivery {
                event_id: e.id.to_string(),
                lane: name.to_owned(),
                body: body(e, now),
            }));
        }
        return Ok(Opened::Page(page));
    }
    let deadline = Instant::now() + budget(inner.settings.timeout);
    for (name, events) in lanes {
        let events = events
            .into_iter()
            .map(|e| (e.id.to_string(), Bytes::from(body(e, now))))
            .collect();
        let busy = found.busy.iter().any(|b| b == name);
        let (done, cleared) = watch::channel(busy.then_some(false));
        let previous = chains
            .insert(name.to_owned(), (seq, cleared))
            .map(|(_, rx)| rx);
        let run = LaneRun {
            name: name.to_owned(),
            events,
            delivered: Vec::new(),
            failed: None,
        };
        let task = attempt_lane(
            inner.clone(),
            sub.clone(),
            run,
            (!busy).then_some(previous),
            done,
            deadline,
        );
        page.lanes.push_back(inner.tracker.spawn(task));
    }
    Ok(Opened::Page(page))
}

/// Attempts a lane's events in order until one fails, the budget is spent or shutdown, once
/// its previous page in flight cleared it (`previous`: `None` when the store has deliveries of
/// it waiting, `Some(None)` when no page in flight has it). Says in `done` whether all went out.
async fn attempt_lane(
    inner: Arc<Inner>,
    sub: Arc<Subscription>,
    mut run: LaneRun,
    previous: Option<Option<watch::Receiver<Option<bool>>>>,
    done: watch::Sender<Option<bool>>,
    deadline: Instant,
) -> LaneRun {
    let clear = match previous {
        None => false,
        Some(None) => true,
        Some(Some(mut rx)) => rx
            .wait_for(Option::is_some)
            .await
            .is_ok_and(|v| *v == Some(true)),
    };
    if clear {
        for (event_id, body) in &run.events {
            // (A stop already begun ends the select below at once: it is polled first.)
            if Instant::now() >= deadline {
                break;
            }
            let slot = tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => break,
                slot = tokio::time::timeout_at(deadline.into(), inner.slots.acquire()) => slot,
            };
            let Ok(Ok(_slot)) = slot else {
                break;
            };
            // Checked once the slot is ours (the wait may have outlasted them): disabled (a 410
            // of an earlier page), deleted, or the stop began: no more attempts.
            let live = inner.cached(&sub.id).is_some_and(|s| s.enabled);
            if !live || inner.shutdown.is_cancelled() {
                break;
            }
            let tried = worker::attempt(&inner, &sub, event_id, body, 0, "direct").await;
            if tried.verdict == Verdict::Delivered {
                run.delivered.push(tried.log);
            } else {
                run.failed = Some(tried);
                break;
            }
        }
    }
    let _ = done.send(Some(run.delivered.len() == run.events.len()));
    run
}

/// Closes a page once its attempts ended ([`Page::settle`]): the compare-and-set that moves the
/// cursor to its last event, logs its successes and stores the rest; then completes its failed
/// attempts, all at once. `false`: the cursor was moved by another instance (or the subscription
/// is gone), nothing stored.
async fn close(
    inner: &Inner,
    sub: &Subscription,
    at: &mut Position,
    page: Page,
) -> Result<bool, StoreError> {
    let mut deliveries = page.plain;
    let mut direct = Direct {
        read_enabled: page.read_enabled,
        ..Direct::default()
    };
    let mut failures = Vec::new();
    for run in page.settled {
        let done = run.delivered.len();
        direct.delivered.extend(run.delivered);
        let mut failed = run.failed;
        for (event_id, bytes) in run.events.into_iter().skip(done) {
            let body = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(tried) = failed.take() {
                direct.failed.push(event_id.clone());
                failures.push((event_id.clone(), body.clone(), tried));
            }
            deliveries.push(NewDelivery {
                event_id,
                lane: run.name.clone(),
                body,
            });
        }
    }
    direct.claimed_until = now_ms() + inner.lease.ms;
    let token = direct.claimed_until;
    let next = page.last.to_string();
    let how = Enqueue::FromLog {
        expected: at.stored.clone(),
        next: next.clone(),
        direct,
    };
    let Some(n) = inner
        .store
        .hook_enqueue(&sub.id, &how, &deliveries, now_ms())
        .await?
    else {
        return Ok(false);
    };
    at.stored = Some(next);
    at.at = Some(page.last);
    // One failed attempt per lane at most, each completed on its own: at once, not one store
    // round trip after another (a receiver that is down fails every lane of the page).
    let completions = failures.into_iter().map(|(event_id, body, tried)| {
        let claimed = Claimed {
            subscription: sub.id.clone(),
            event_id,
            body,
            attempts: 0,
            token,
        };
        worker::complete(inner, sub, claimed, tried)
    });
    futures_util::future::join_all(completions).await;
    if n > 0 {
        inner.due.notify_one();
    }
    Ok(true)
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
