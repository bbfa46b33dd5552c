//! The store's event log, read from outside the store: the reader that follows it (one per
//! instance) and the reads a resuming client needs (the backlog after its cursor, and whether the
//! log still covers that cursor).
//!
//! Both backends keep the latest EVENT_RETENTION events: a Redis stream trimmed with `MAXLEN ~`
//! (by whole radix-tree nodes, so somewhat more are kept) and SQLite rows with consecutive ids
//! (the writer deletes the oldest). Ids increase in commit order in both.
//!
//! Whether a cursor is covered ([`Window`]):
//! - SQLite ids are consecutive, so the answer is exact: events were missed iff the oldest
//!   retained id is greater than the cursor + 1; a cursor above the highest id ever written
//!   (`sqlite_sequence`) is unknown (another database, or a restored backup).
//! - Redis ids are timestamps, so a successor cannot be computed: a cursor whose own entry is still
//!   in the stream is covered; one older than the oldest retained entry counts as trimmed (this
//!   errs on the safe side when exactly the cursor's entry was trimmed and its successor was not);
//!   one newer than the newest entry is unknown.

pub mod redis;
pub mod sqlite;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Demand, Event, EventId, Live};
use crate::config::StoreSettings;
use crate::store::{Store, StoreError};

/// Most events read in one round trip (the reader's batches and a backlog's pages).
pub const READ_BATCH: usize = 256;
/// How often the SQLite reader looks for new events when no commit woke it.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether the log still holds every event after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// Every event after the cursor is retained.
    Covered,
    /// Events after the cursor are gone (trimmed) or the cursor is unknown.
    Reset {
        /// `cursor_expired` or `unknown_cursor`.
        reason: &'static str,
    },
}

/// The configured backend's event log.
pub enum EventLog {
    /// `<REDIS_KEY_PREFIX>:events`.
    Redis(redis::RedisLog),
    /// The `events` table of `<DATA_DIR>/whatsapp-gateway.sqlite3`.
    Sqlite(sqlite::SqliteLog),
}

impl EventLog {
    /// The log of the configured store (connections are made lazily).
    pub fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        Ok(match settings {
            StoreSettings::Redis(redis) => Self::Redis(redis::RedisLog::new(redis)?),
            StoreSettings::Embedded(embedded) => Self::Sqlite(sqlite::SqliteLog::new(embedded)),
        })
    }

    /// Parses a client's cursor in this log's id format.
    pub fn parse_id(&self, s: &str) -> Option<EventId> {
        match self {
            Self::Redis(_) => EventId::parse_stream(s),
            Self::Sqlite(_) => EventId::parse_row(s),
        }
    }

    /// What this log's ids look like, for error messages.
    pub fn id_format(&self) -> &'static str {
        match self {
            Self::Redis(_) => "a Redis event id such as 1763940000000-0-2",
            Self::Sqlite(_) => "an integer event id such as 42",
        }
    }

    /// Events after `after` (from the oldest retained when `None`), oldest first: a page of about
    /// `limit` (SQLite: at most `limit` events; Redis: the events of at most `limit` entries),
    /// empty only when the log holds nothing after `after`.
    pub async fn read_after(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        match self {
            Self::Redis(log) => log.read_after(after, limit).await,
            Self::Sqlite(log) => log.read_after(after, limit).await,
        }
    }

    /// The newest event's id; the log's beginning (`0`, `0-0-0`) when it is empty.
    pub async fn newest(&self) -> Result<EventId, StoreError> {
        Ok(match self {
            Self::Redis(log) => log.newest_id().await?.unwrap_or(EventId::Stream(0, 0, 0)),
            Self::Sqlite(log) => log.newest_id().await?.unwrap_or(EventId::Row(0)),
        })
    }

    /// Whether every event after `cursor` is still retained.
    pub async fn window(&self, cursor: EventId) -> Result<Window, StoreError> {
        match self {
            Self::Redis(log) => log.window(cursor).await,
            Self::Sqlite(log) => log.window(cursor).await,
        }
    }

    /// Starts the reader that broadcasts every new event on `live` until `shutdown`. Returns once
    /// the reader knows where the log ends (or could not find out in time: Redis down), so that
    /// every event written after start-up is broadcast.
    pub(crate) async fn spawn_reader(
        &self,
        store: &Store,
        live: broadcast::Sender<Live>,
        demand: Demand,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        match self {
            Self::Redis(log) => log.spawn_reader(live, demand, shutdown, tracker).await,
            Self::Sqlite(log) => {
                let commits = match store {
                    Store::Embedded(store) => Some(store.commits()),
                    Store::Redis(_) => None,
                };
                log.spawn_reader(commits, live, demand, shutdown, tracker)
                    .await
            }
        }
    }
}
