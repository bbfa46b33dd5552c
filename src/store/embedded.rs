//! Embedded backend: one SQLite file (`<DATA_DIR>/whatsapp-gateway.sqlite3`), so the service runs
//! with no Redis at all and survives restarts.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a committed transaction is fsynced before
//! the webhook is acknowledged. Throughput: **group commit**. One writer thread owns the write
//! connection; it takes every save request waiting in its queue (up to [`MAX_GROUP`]) and commits
//! them in one transaction with one fsync, then answers each. Under load many webhooks share an
//! fsync; alone, a webhook waits for exactly one. If the transaction fails, every request in the
//! group gets the error (503) and nothing of it is stored, so Meta's retries are not deduplicated
//! away.
//!
//! Reads use a separate connection (WAL lets readers run beside the writer) on the blocking pool.
//! Dedupe markers are the messages themselves (`id` is UNIQUE), kept forever.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, params};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{SaveReport, StoreError, stored_item};
use crate::config::EmbeddedSettings;
use crate::domain::{InboundMessage, PhoneNumber};

/// Database file name inside DATA_DIR.
pub const DB_FILE: &str = "whatsapp-gateway.sqlite3";
/// Most save requests committed in one transaction.
pub const MAX_GROUP: usize = 512;
/// Queue length in front of the writer; when full, callers wait (back-pressure), bounded by the
/// request timeout.
const QUEUE: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbound_messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    number      TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    json        TEXT    NOT NULL,
    received_at INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE INDEX IF NOT EXISTS inbound_messages_by_number ON inbound_messages (number, seq);
CREATE TABLE IF NOT EXISTS conversations (
    number         TEXT    PRIMARY KEY,
    last_timestamp INTEGER NOT NULL,
    message_count  INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
";

/// One save request: the rows to insert and where to send the outcome.
struct SaveJob {
    rows: Vec<Row>,
    reply: oneshot::Sender<Result<SaveReport, StoreError>>,
}

struct Row {
    id: String,
    number: String,
    timestamp: i64,
    json: String,
}

/// The embedded backend. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    writer: mpsc::Sender<SaveJob>,
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStore")
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(settings: &EmbeddedSettings) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&settings.data_dir)?;
        let path = settings.data_dir.join(DB_FILE);
        let writer_conn = open_writer(&path)?;
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer_conn, rx))?;
        Ok(Self {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    pub(super) async fn save_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> Result<SaveReport, StoreError> {
        let rows = messages
            .iter()
            .map(|m| Row {
                id: m.id.as_str().to_owned(),
                number: m.from.as_str().to_owned(),
                timestamp: m.timestamp_secs(),
                json: m.to_stored_json(),
            })
            .collect();
        let (reply, outcome) = oneshot::channel();
        self.writer
            .send(SaveJob { rows, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        outcome.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(super) async fn recent_messages(
        &self,
        number: &PhoneNumber,
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>, StoreError> {
        let number = number.as_str().to_owned();
        // SQLite treats a negative LIMIT as "no limit".
        let limit = if limit == 0 {
            -1
        } else {
            i64::try_from(limit).unwrap_or(i64::MAX)
        };
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT json FROM (
                     SELECT seq, json FROM inbound_messages WHERE number = ?1 ORDER BY seq DESC LIMIT ?2
                 ) ORDER BY seq ASC",
            )?;
            let rows = stmt.query_map(params![number, limit], |row| row.get::<_, String>(0))?;
            rows.map(|r| r.map(stored_item)).collect::<Result<Vec<_>, _>>()
        })
        .await
    }

    pub(super) fn queue_depth(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::WriterGone);
        }
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// The writer loop: one transaction (one fsync) per group of waiting jobs.
fn run_writer(mut conn: Connection, mut queue: mpsc::Receiver<SaveJob>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match write_group(&mut conn, &group) {
            Ok(reports) => {
                for (job, report) in group.drain(..).zip(reports) {
                    let _ = job.reply.send(Ok(report));
                }
            }
            Err(e) => {
                tracing::error!(error.message = %e, jobs = group.len(), "store.embedded commit_failed");
                let message = e.to_string();
                for job in group.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Io(std::io::Error::other(message.clone()))));
                }
            }
        }
    }
}

fn write_group(conn: &mut Connection, group: &[SaveJob]) -> rusqlite::Result<Vec<SaveReport>> {
    let tx = conn.transaction()?;
    let mut reports = Vec::with_capacity(group.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO inbound_messages (id, number, timestamp, json) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO NOTHING",
        )?;
        let mut index = tx.prepare_cached(
            "INSERT INTO conversations (number, last_timestamp, message_count) VALUES (?1, ?2, 1)
             ON CONFLICT (number) DO UPDATE SET
                 last_timestamp = max(last_timestamp, excluded.last_timestamp),
                 message_count = message_count + 1",
        )?;
        for job in group {
            let mut report = SaveReport::default();
            for row in &job.rows {
                if insert.execute(params![row.id, row.number, row.timestamp, row.json])? == 1 {
                    index.execute(params![row.number, row.timestamp])?;
                    report.stored += 1;
                } else {
                    report.duplicates += 1;
                }
            }
            reports.push(report);
        }
    }
    tx.commit()?;
    Ok(reports)
}
