//! One client's stream, shared by both transports: a task (the *pump*) that replays the backlog
//! after the client's cursor, then forwards live events, filtered, into a bounded queue that the
//! transport (the SSE body, the WebSocket writer) drains.
//!
//! The pump runs apart from the transport because a stalled client's connection is not polled at
//! all: only a task of its own can notice that the client fell behind and cut it off. The queue
//! holds EVENT_CLIENT_BUFFER items plus one slot kept free for the final item ([`Out::End`]), so
//! the end can always be queued: live events are queued only while two slots are free.
//!
//! Order of events in one stream: `reset` (if the cursor is not covered), the backlog in log
//! order, then live events in log order; live events at or below the last id replayed are
//! skipped (see [`super`] for why this has no gap and no duplicate).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::log::{READ_BATCH, Window};
use super::{
    BROADCAST_CAPACITY, Event, EventHub, EventId, Filter, LAG_GRACE, Live, SHUTDOWN_GRACE,
};
use crate::metrics::ReasonLabels;

/// What the transport sends next.
#[derive(Debug)]
pub(crate) enum Out {
    /// An event.
    Event(Arc<Event>),
    /// The client's cursor is not covered, or events were missed: the client must re-read its
    /// state. `cursor` is the cursor concerned.
    Reset {
        reason: &'static str,
        cursor: EventId,
    },
    /// Nothing happened for EVENT_HEARTBEAT_SECS.
    Heartbeat,
    /// The last item: the stream ends.
    End(EndReason),
}

/// Why a stream ends (the server's side; a client that goes away needs no item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The client fell more than its buffer behind.
    Lagged,
    /// The server is shutting down.
    Shutdown,
    /// The backlog could not be read.
    StoreUnavailable,
}

impl EndReason {
    /// The `reason` of the `error` item and the metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Lagged => "lagged",
            Self::Shutdown => "shutdown",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    /// What the client should do, for the `error` item.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::Lagged => {
                "the client did not keep up with the events (EVENT_CLIENT_BUFFER); reconnect with the id of the last event received to resume"
            }
            Self::Shutdown => "the server is shutting down; reconnect to resume",
            Self::StoreUnavailable => {
                "the event log could not be read; reconnect with the id of the last event received to resume"
            }
        }
    }
}

/// How long a new stream waits for the reader to follow the log before it is refused.
pub(crate) const FOLLOW_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a new stream cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotFollowing {
    /// The server is shutting down.
    Shutdown,
    /// The reader could not reach the event log within [`FOLLOW_TIMEOUT`].
    Unavailable,
}

/// A client's stream before it starts: subscribed to the broadcast and holding a stream slot.
pub(crate) struct Subscription {
    hub: Arc<EventHub>,
    live: broadcast::Receiver<Live>,
    after: Option<EventId>,
    filter: Filter,
    _slot: OwnedSemaphorePermit,
}

impl Subscription {
    /// Takes a stream slot and subscribes to the broadcast now (before any backlog read), or
    /// `None` when MAX_EVENT_STREAMS are open or the server is shutting down.
    pub(crate) fn open(
        hub: &Arc<EventHub>,
        after: Option<EventId>,
        filter: Filter,
    ) -> Option<Self> {
        let slot = hub.open_stream()?;
        Some(Self {
            hub: hub.clone(),
            live: hub.live.subscribe(),
            after,
            filter,
            _slot: slot,
        })
    }

    /// Completes once the instance's reader follows the log (waking it when it is idle), so
    /// every event stored after this returns reaches the subscriber live: a transport waits for
    /// it before it tells the client it is connected (response headers, the WebSocket
    /// handshake). Fails on shutdown, and after [`FOLLOW_TIMEOUT`] (the reader cannot reach
    /// the log: a store that does not answer), so a request never hangs on it.
    pub(crate) async fn following(&self) -> Result<(), NotFollowing> {
        match tokio::time::timeout(FOLLOW_TIMEOUT, self.hub.demand.armed(&self.hub.shutdown)).await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotFollowing::Shutdown),
            Err(_) => Err(NotFollowing::Unavailable),
        }
    }

    /// Starts the pump; the transport reads the returned queue. Cancelling `abort` must close the
    /// client's connection: the pump does so when the client does not take its last item within
    /// [`LAG_GRACE`] (or [`SHUTDOWN_GRACE`]).
    pub(crate) fn start(self, abort: CancellationToken) -> mpsc::Receiver<Out> {
        let buffer = self.hub.settings.client_buffer;
        let (tx, rx) = mpsc::channel(buffer + 1);
        let hub = self.hub.clone();
        hub.tracker.spawn(pump(self, tx, abort));
        rx
    }
}

/// Why the pump stopped forwarding.
enum Stop {
    /// The client went away (the queue's reader was dropped).
    Gone,
    /// The stream ends for this reason.
    End(EndReason),
}

async fn pump(mut sub: Subscription, tx: mpsc::Sender<Out>, abort: CancellationToken) {
    let metrics = sub.hub.metrics.clone();
    metrics.open.inc();
    let stop = forward(&mut sub, &tx).await;
    let reason = match stop {
        Stop::Gone => "client_gone",
        Stop::End(reason) => reason.as_str(),
    };
    metrics.ended.get_or_create(&ReasonLabels { reason }).inc();
    if let Stop::End(reason) = stop {
        // The slot kept free: the end always fits.
        let _ = tx.try_send(Out::End(reason));
        let grace = match reason {
            EndReason::Shutdown => SHUTDOWN_GRACE,
            _ => LAG_GRACE,
        };
        if tokio::time::timeout(grace, tx.closed()).await.is_err() {
            tracing::info!(
                reason = reason.as_str(),
                "events.stream_cut the client did not take its last events in time"
            );
            abort.cancel();
        }
    }
    // Give the stream slot back only now: the connection has ended or been cut.
    drop(sub);
    metrics.open.dec();
}

async fn forward(sub: &mut Subscription, tx: &mpsc::Sender<Out>) -> Stop {
    let hub = sub.hub.clone();
    let shutdown = hub.shutdown.clone();
    // The transport waited for `following` already: the reader follows the log.
    // The last id replayed (or the cursor): live events at or below it were sent or are older.
    let mut last = None;
    if let Some(cursor) = sub.after {
        let window = tokio::select! {
            () = shutdown.cancelled() => return Stop::End(EndReason::Shutdown),
            window = hub.log.window(cursor) => window,
        };
        let mut next = match window {
            Ok(Window::Covered) => {
                last = Some(cursor);
                Some(cursor)
            }
            Ok(Window::Reset { reason }) => {
                if let Err(stop) = queue(sub, tx, Out::Reset { reason, cursor }).await {
                    return stop;
                }
                None
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "events.backlog reading the event log failed");
                return Stop::End(EndReason::StoreUnavailable);
            }
        };
        loop {
            let page = tokio::select! {
                () = shutdown.cancelled() => return Stop::End(EndReason::Shutdown),
                page = hub.log.read_after(next, READ_BATCH) => page,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error.message = %e, "events.backlog reading the event log failed");
                    return Stop::End(EndReason::StoreUnavailable);
                }
            };
            // Only an empty page is the end: a Redis page holds whole entries, so its size says
            // nothing about what is left.
            if page.is_empty() {
                break;
            }
            for event in page {
                last = Some(event.id);
                next = last;
                if sub.filter.matches(&event)
                    && let Err(stop) = queue(sub, tx, Out::Event(Arc::new(event))).await
                {
                    return stop;
                }
            }
        }
    }

    let mut heartbeat = tokio::time::interval(hub.settings.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    heartbeat.reset();
    loop {
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Stop::End(EndReason::Shutdown),
            () = tx.closed() => return Stop::Gone,
            received = sub.live.recv() => received,
            _ = heartbeat.tick() => {
                // Only on an idle stream: queued events keep it alive already.
                if tx.capacity() < tx.max_capacity() {
                    continue;
                }
                if let Err(stop) = enqueue(tx, Out::Heartbeat) {
                    return stop;
                }
                continue;
            }
        };
        // Then everything else already broadcast, without waking again: events come in
        // bursts (one store write holds many), and one wake per burst instead of per event is
        // what lets hundreds of streams keep up.
        let mut next = Some(received);
        while let Some(received) = next {
            let item = match received {
                Ok(Live::Event(event)) => {
                    if last.is_some_and(|last| event.id <= last) || !sub.filter.matches(&event) {
                        None
                    } else {
                        Some(Out::Event(event))
                    }
                }
                Ok(Live::Gap { last: cursor }) => {
                    // Whatever the reader broadcasts next is what the log holds now.
                    last = None;
                    Some(Out::Reset {
                        reason: "events_missed",
                        cursor,
                    })
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Stop::End(EndReason::Lagged),
                // The reader is gone: only at shutdown.
                Err(broadcast::error::RecvError::Closed) => return Stop::End(EndReason::Shutdown),
            };
            if let Some(item) = item
                && let Err(stop) = enqueue(tx, item)
            {
                return stop;
            }
            next = match sub.live.try_recv() {
                Ok(live) => Some(Ok(live)),
                Err(broadcast::error::TryRecvError::Empty) => None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Some(Err(broadcast::error::RecvError::Lagged(n)))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    Some(Err(broadcast::error::RecvError::Closed))
                }
            };
        }
        heartbeat.reset();
    }
}

/// Queues a live item if two slots are free (one for it, one kept for the end); else the
/// client is `lagged`.
fn enqueue(tx: &mpsc::Sender<Out>, item: Out) -> Result<(), Stop> {
    match tx.try_reserve_many(2) {
        Ok(mut permits) => {
            if let Some(permit) = permits.next() {
                permit.send(item);
            }
            Ok(())
        }
        Err(mpsc::error::TrySendError::Full(())) => Err(Stop::End(EndReason::Lagged)),
        Err(mpsc::error::TrySendError::Closed(())) => Err(Stop::Gone),
    }
}

/// Queues a backlog item, waiting while the client's queue is full (a backlog is the client's
/// own catching up, not lag). While waiting, live events pile up in the broadcast: once more are
/// waiting than it keeps, the client is `lagged`.
async fn queue(sub: &Subscription, tx: &mpsc::Sender<Out>, item: Out) -> Result<(), Stop> {
    let shutdown = &sub.hub.shutdown;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Err(Stop::End(EndReason::Shutdown)),
            permits = tx.reserve_many(2) => {
                let Ok(mut permits) = permits else {
                    return Err(Stop::Gone);
                };
                if let Some(permit) = permits.next() {
                    permit.send(item);
                }
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if sub.live.len() >= BROADCAST_CAPACITY {
                    return Err(Stop::End(EndReason::Lagged));
                }
            }
        }
    }
}
