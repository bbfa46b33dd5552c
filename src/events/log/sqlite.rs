//! The embedded store's event log: `events (id INTEGER PRIMARY KEY AUTOINCREMENT, type, data,
//! created_at)` in `<DATA_DIR>/whatsapp-gateway.sqlite3`, read through read-only connections of
//! our own on the blocking pool (WAL lets them read beside the writer).
//!
//! The reader waits for the writer's commit signal ([`EmbeddedStore::commits`]) or
//! [`POLL_INTERVAL`], whichever comes first, then reads every row after the last id it
//! broadcast. Ids are consecutive (`AUTOINCREMENT` inside the writer's transactions; only the
//! oldest rows are ever deleted), so a first row above `last + 1` means rows were trimmed before
//! the reader got to them: subscribers then get `reset`.
//!
//! [`EmbeddedStore::commits`]: crate::store::embedded::EmbeddedStore::commits

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{POLL_INTERVAL, READ_BATCH, Window};
use crate::config::EmbeddedSettings;
use crate::events::{Demand, Event, EventId, Live};
use crate::store::StoreError;

/// Read-only connections kept open (the reader's and a resuming client's at once).
const IDLE_CONNECTIONS: usize = 2;

/// The `events` table. Cheap to clone.
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteLog {
    /// The log of the database under `settings.data_dir` (opened on first use: the store has
    /// created and migrated it by then).
    pub fn new(settings: &EmbeddedSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: settings.db_path(),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let taken = inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.busy_timeout(Duration::from_secs(5))?;
                    conn
                }
            };
            let result = f(&conn)?;
            let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(conn);
            }
            Ok(result)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    }

    /// Up to `limit` events with an id above `after` (all retained when `None`), oldest first.
    pub async fn read_after(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let after = row(after);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, type, data, created_at FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok(Event::new(
                    EventId::Row(r.get::<_, i64>(0)?.max(0) as u64),
                    r.get(1)?,
                    r.get(2)?,
                )
                .written_at(r.get::<_, i64>(3)?.saturating_mul(1000)))
            })?;
            rows.collect()
        })
        .await
    }

    /// The newest event's id (`None`: the log is empty).
    pub async fn newest_id(&self) -> Result<Option<EventId>, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT max(id) FROM events", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
        })
        .await
        .map(|id| id.map(|id| EventId::Row(id.max(0) as u64)))
    }

    /// The oldest retained id (`None` when the table is empty) and the highest id ever written
    /// (0 when none was).
    async fn bounds(&self) -> Result<(Option<u64>, u64), StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT (SELECT min(id) FROM events),
                        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                [],
                |r| {
                    let first: Option<i64> = r.get(0)?;
                    let last: i64 = r.get(1)?;
                    Ok((first.map(|f| f.max(0) as u64), last.max(0) as u64))
                },
            )
        })
        .await
    }

    /// Whether every event after `cursor` is retained (see the module docs of [`super`]).
    pub async fn window(&self, cursor: EventId) -> Result<Window, StoreError> {
        let cursor = row(Some(cursor)) as u64;
        let (first, last) = self.bounds().await?;
        Ok(if cursor > last {
            Window::Reset {
                reason: "unknown_cursor",
            }
        } else if cursor.saturating_add(1) < first.unwrap_or(last + 1) {
            Window::Reset {
                reason: "cursor_expired",
            }
        } else {
            Window::Covered
        })
    }

    /// Starts the reader after the highest id written so far.
    pub(crate) async fn spawn_reader(
        &self,
        commits: Option<watch::Receiver<()>>,
        live: broadcast::Sender<Live>,
        demand: Demand,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let start = match self.bounds().await {
            Ok((_, last)) => last,
            Err(e) => {
                tracing::warn!(error.message = %e, "events.reader cannot read the event log yet; starting from its beginning");
                0
            }
        };
        tracker.spawn(
            self.clone()
                .run_reader(start, commits, live, demand, shutdown),
        );
    }

    async fn run_reader(
        self,
        mut last: u64,
        mut commits: Option<watch::Receiver<()>>,
        live: broadcast::Sender<Live>,
        demand: Demand,
        shutdown: CancellationToken,
    ) {
        let mut failing = false;
        loop {
            match demand.wait(&live, &shutdown).await {
                None => return,
                Some(false) => {}
                // After an idle spell: follow from the newest row now.
                Some(true) => {
                    match self.bounds().await {
                        Ok((_, newest)) => last = newest,
                        Err(e) => {
                            tracing::warn!(error.message = %e, "events.reader cannot read the event log; continuing from the last row read")
                        }
                    }
                    demand.arm();
                    continue;
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = committed(&mut commits) => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            loop {
                let batch = match self.read_after(Some(EventId::Row(last)), READ_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error.message = %e, "events.reader reading the event log failed; retrying");
                            failing = true;
                        }
                        break;
                    }
                };
                if failing {
                    tracing::info!("events.reader reading the event log again");
                    failing = false;
                }
                if let Some(first) = batch.first()
                    && first.id > EventId::Row(last + 1)
                {
                    tracing::warn!(last, first = %first.id, "events.reader events were trimmed before they could be read; clients get reset");
                    let _ = live.send(Live::Gap {
                        last: EventId::Row(last),
                    });
                }
                let full = batch.len() == READ_BATCH;
                for event in batch {
                    if let EventId::Row(id) = event.id {
                        last = id;
                    }
                    // No subscriber is not an error.
                    let _ = live.send(Live::Event(Arc::new(event)));
                }
                if !full {
                    break;
                }
            }
        }
    }
}

/// Completes at the writer's next commit; never once the store is gone (polling remains).
async fn committed(commits: &mut Option<watch::Receiver<()>>) {
    match commits {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *commits = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// A cursor as the table's integer id.
fn row(id: Option<EventId>) -> i64 {
    match id {
        Some(EventId::Row(id)) => i64::try_from(id).unwrap_or(i64::MAX),
        // Not an id of this log: parse_id never makes one.
        Some(EventId::Stream(..)) | None => 0,
    }
}
