//! Embedded backend: one SQLite file (`<DATA_DIR>/whatsapp-gateway.sqlite3`), so the service runs
//! with no Redis at all and survives restarts.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a committed transaction is fsynced before
//! the webhook is acknowledged. Throughput: **group commit**. One writer thread owns the write
//! connection; it takes the save requests waiting in its queue (up to [`MAX_GROUP`] requests and
//! [`MAX_TX_ROWS`] messages) and commits them in one transaction with one fsync, then answers
//! each. Under load many webhooks share an fsync; alone, a webhook waits for exactly one. If the
//! transaction fails, every request in the group gets the error (503) and nothing of it is
//! stored, so Meta's retries are not deduplicated away.
//!
//! **The file under the service**: the file's identity (device and inode) is recorded at open and
//! checked after every commit (one `stat` per group) and by the readiness probe. If the file was
//! deleted or replaced, the open connection still holds everything: the writer writes a rescue
//! copy once (`VACUUM INTO <DATA_DIR>/whatsapp-gateway.rescued-<unix-ts>.sqlite3`), logs
//! `store.embedded database_file_missing` with instructions, and from then on refuses every write
//! (503) and readiness fails with the reason, so nothing more is acknowledged into a file that a
//! restart would not find.
//!
//! **Readiness**: the probe is a tiny write through the writer thread (an UPSERT into `health`,
//! committed and fsynced like everything else), so it fails when writes fail.
//!
//! Reads use a small pool of read-only connections ([`READERS`]; WAL lets readers run beside the
//! writer) on the blocking pool. A large read takes a snapshot (the highest `seq` of the number)
//! and then reads page by page, each page on whichever connection is free, so one long read does
//! not block the others. Dedupe markers are the messages themselves (`id` is UNIQUE), kept
//! forever; an id already stored for another number is a conflict, not stored.
//!
//! Schema versions (`PRAGMA user_version`): 1 = the FastAPI table `inbound_messages` and
//! per-number counters; 2 adds `health`; 3 adds message records (`messages`), `statuses`,
//! `message_changes`, `conversation`, `quarantine` and the event outbox (`events`), and drops the
//! FastAPI table's global `UNIQUE (id)` (dedupe is per business number in `messages`; rows of
//! earlier releases still deduplicate through a partial index); 4 adds `notices` (digests of the
//! non-message notifications kept as events, so a retry is not kept twice); 5 adds
//! `idempotency` (clients' Idempotency-Keys and their answers); 6 adds the conversation's
//! `last_inbound_id` (the contact's latest message, which read receipts and typing indicators
//! name; `NULL` on rows of earlier releases until the contact writes again); 7 adds the outgoing
//! webhooks' `webhook_subscriptions`, `webhook_deliveries` and `webhook_attempts` ([`hooks`]);
//! 8 adds the auto-replies' `auto_reply_rules`, `auto_reply_cursor` and `auto_reply_marks`
//! ([`rules`]); 9 adds `user_calls` (each contact's latest call to a business number, which
//! opens the 24-hour window as a message does); 10 adds `contact_aliases` (which conversation
//! each identifier of a user names, [`super::alias`]), filled from the stored conversations.
//! Opening an older file migrates it in place, one transaction per version.
//!
//! **Single-instance**: the store takes DATA_DIR's lock ([`lock`]) before it opens the database
//! for writing, so a second gateway process on the same directory refuses to start instead of
//! writing beside the first.
//!
//! What one group writes per new message: its record, its FastAPI row, its conversation (unless
//! it is an edit, a deletion or a reaction, which change their target in `message_changes`
//! instead) and its events; statuses, read marks, deletions and quarantined items are jobs of
//! the same queue, each with its events in the same transaction.

mod hooks;
pub mod lock;
mod reads;
mod rules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::alias::AliasCache;
use super::batch::{Batched, Grouper};
use super::readiness::spawn_probe;
use super::record::{MessageWrite, NoticeWrite, StatusWrite, status_rank};
use super::view::ConversationFields;
use super::{
    ChunkAnswer, Fetched, Outcome, PagedRead, READ_PAGE, Readiness, StoreError, stored_item,
};
use crate::config::EmbeddedSettings;
use crate::domain::{ContactId, InboundMessage};

/// Database file name inside DATA_DIR.
pub const DB_FILE: &str = "whatsapp-gateway.sqlite3";
/// Most save requests committed in one transaction.
pub const MAX_GROUP: usize = 512;
/// Most messages committed in one transaction (a save request holds at most
/// [`super::MAX_MESSAGES_PER_WRITE`]).
pub const MAX_TX_ROWS: usize = 1024;
/// Read-only connections for `/get`.
pub const READERS: usize = 4;
/// The schema version this release writes.
pub const SCHEMA_VERSION: i64 = 10;
/// A probe that the writer does not answer within this time counts as a failed write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queue length in front of the writer; when full, callers wait (back-pressure), bounded by the
/// request timeout.
const QUEUE: usize = 4096;

/// Version 1: what the first release created.
const SCHEMA_V1: &str = "
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
";

/// Version 1 -> 2: the readiness probe's row.
const MIGRATION_V2: &str = "
CREATE TABLE IF NOT EXISTS health (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
";

/// Version 2 -> 3: message records, conversations per (business number, contact), the event
/// outbox; the FastAPI table loses its global `UNIQUE (id)` (dedupe is per business number now,
/// in `messages`) and gains `phone_number_id`, NULL on the rows of earlier releases, which still
/// deduplicate Meta's retries through a partial index.
const MIGRATION_V3: &str = "
CREATE TABLE inbound_messages_v3 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL,
    number          TEXT    NOT NULL,
    timestamp       INTEGER NOT NULL,
    json            TEXT    NOT NULL,
    received_at     INTEGER NOT NULL DEFAULT (unixepoch()),
    phone_number_id TEXT
);
INSERT INTO inbound_messages_v3 (seq, id, number, timestamp, json, received_at)
    SELECT seq, id, number, timestamp, json, received_at FROM inbound_messages ORDER BY seq;
DROP TABLE inbound_messages;
ALTER TABLE inbound_messages_v3 RENAME TO inbound_messages;
CREATE INDEX inbound_messages_by_number ON inbound_messages (number, seq);
CREATE INDEX inbound_messages_legacy_id ON inbound_messages (id) WHERE phone_number_id IS NULL;
-- `record` is NULL once its conversation was deleted: the row stays, so Meta's retries of the
-- message are still duplicates.
CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number_id TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    contact         TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    timestamp       INTEGER NOT NULL,
    record          TEXT,
    -- 0 for edits, deletions and reactions: stored, but not messages of the conversation's history.
    in_history      INTEGER NOT NULL DEFAULT 1,
    UNIQUE (phone_number_id, id)
);
CREATE INDEX messages_by_id ON messages (id);
CREATE INDEX messages_by_conversation ON messages (phone_number_id, contact, timestamp, id);
CREATE TABLE conversation (
    phone_number_id TEXT    NOT NULL,
    contact         TEXT    NOT NULL,
    contact_json    TEXT    NOT NULL,
    last_message    TEXT    NOT NULL,
    last_message_id TEXT    NOT NULL,
    last_message_at INTEGER NOT NULL,
    last_inbound_at INTEGER NOT NULL,
    message_count   INTEGER NOT NULL,
    unread_count    INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, contact)
) WITHOUT ROWID;
CREATE INDEX conversation_by_activity ON conversation (last_message_at, phone_number_id, contact);
CREATE TABLE statuses (
    phone_number_id TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    timestamp       INTEGER NOT NULL,
    has_errors      INTEGER NOT NULL,
    detail          TEXT    NOT NULL,
    PRIMARY KEY (phone_number_id, message_id, status)
) WITHOUT ROWID;
-- What edits, deletions and reactions changed on an earlier message (the target may arrive
-- later): the latest of each kind by Meta's timestamp.
CREATE TABLE message_changes (
    phone_number_id TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    timestamp       INTEGER NOT NULL,
    change          TEXT    NOT NULL,
    PRIMARY KEY (phone_number_id, message_id, kind)
) WITHOUT ROWID;
CREATE TABLE quarantine (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    item        TEXT    NOT NULL,
    received_at INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
);
";

/// Version 4: notifications that are not messages (template, account, call updates, ...) are
/// kept as events once each: `notices` remembers their digests for [`super::DEDUPE_TTL_SECS`];
/// `preferences` keeps each contact's latest marketing preference.
const MIGRATION_V4: &str = "
CREATE TABLE notices (
    digest      TEXT    PRIMARY KEY,
    received_at INTEGER NOT NULL DEFAULT (unixepoch())
) WITHOUT ROWID;
CREATE INDEX notices_received_at ON notices (received_at);
-- Steps of the data upgrade done after start-up (`import` = `done` once the FastAPI rows of
-- earlier releases have records and conversations).
CREATE TABLE layout (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
-- A contact's marketing preference (`user_preferences`): `<timestamp> <JSON>`, the latest.
CREATE TABLE preferences (
    phone_number_id TEXT NOT NULL,
    contact         TEXT NOT NULL,
    marketing       TEXT NOT NULL,
    PRIMARY KEY (phone_number_id, contact)
) WITHOUT ROWID;
";

/// Version 5: clients' `Idempotency-Key`s (see [`super::Store::idempotency`]): the body
/// fingerprint, and the answer once there is one.
const MIGRATION_V5: &str = "
CREATE TABLE idempotency (
    key         TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      INTEGER,
    body        TEXT,
    created_at  INTEGER NOT NULL DEFAULT (unixepoch())
) WITHOUT ROWID;
CREATE INDEX idempotency_created_at ON idempotency (created_at);
";

/// Version 6: the id of the contact's latest message (a JSON string literal, as
/// `last_message_id`), beside its time `last_inbound_at`.
const MIGRATION_V6: &str = "
ALTER TABLE conversation ADD COLUMN last_inbound_id TEXT;
";

/// Version 9: each contact's latest user-initiated call to a business number (a `calls`
/// notification), by Meta's timestamp: it opens the 24-hour window as a message does, and may
/// come before the conversation's first message.
const MIGRATION_V9: &str = "
CREATE TABLE user_calls (
    phone_number_id TEXT    NOT NULL,
    contact         TEXT    NOT NULL,
    last_call_at    INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, contact)
) WITHOUT ROWID;
";

/// Version 10: the aliases of each user's conversation key ([`super::alias`]), filled from the
/// conversations already stored: each one's BSUID and parent BSUID (from its contact) name it,
/// unless the identifier is a conversation's key itself (then it names that one); of two
/// conversations claiming an identifier, the one whose latest message is the oldest wins. A
/// phone is an alias of a conversation keyed otherwise unless it has a conversation of its own.
const MIGRATION_V10: &str = "
CREATE TABLE contact_aliases (
    phone_number_id TEXT NOT NULL,
    alias           TEXT NOT NULL,
    contact         TEXT NOT NULL,
    PRIMARY KEY (phone_number_id, alias)
) WITHOUT ROWID;
INSERT OR IGNORE INTO contact_aliases (phone_number_id, alias, contact)
    SELECT phone_number_id, contact, contact FROM conversation WHERE contact LIKE '%.%';
INSERT OR IGNORE INTO contact_aliases (phone_number_id, alias, contact)
    SELECT c.phone_number_id, j.value, c.contact
    FROM conversation AS c,
         json_each(json_object('p', json_extract(c.contact_json, '$.parent_user_id'),
                               'u', json_extract(c.contact_json, '$.user_id'),
                               'w', json_extract(c.contact_json, '$.wa_id'))) AS j
    WHERE j.value IS NOT NULL AND j.value <> c.contact
      AND NOT EXISTS (SELECT 1 FROM conversation AS o
                      WHERE o.phone_number_id = c.phone_number_id AND o.contact = j.value)
    ORDER BY c.last_message_at, c.contact;
";

/// A new message's conversation: created, or its counters, preview, window and contact moved
/// on. Every SET expression reads the row as it was before this statement. The contact (its
/// profile name, username) is the one the user's latest message gave: our own messages carry no
/// profile. Returns the row as [`reads::conversation_row`] reads it (one constant: a statement
/// built per write group would cost a format per group on the hot path).
const UPSERT_CONVERSATION: &str = concat!(
    "INSERT INTO conversation (phone_number_id, contact, contact_json, last_message,
         last_message_id, last_message_at, last_inbound_at, message_count, unread_count,
         last_inbound_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9)
     ON CONFLICT (phone_number_id, contact) DO UPDATE SET
         message_count = message_count + 1,
         unread_count = unread_count + excluded.unread_count,
         last_inbound_id = iif(excluded.last_inbound_id IS NOT NULL
             AND excluded.last_inbound_at >= last_inbound_at,
             excluded.last_inbound_id, last_inbound_id),
         last_inbound_at = max(last_inbound_at, excluded.last_inbound_at),
         contact_json = iif(excluded.unread_count = 1
             AND excluded.last_inbound_at >= last_inbound_at,
             excluded.contact_json, contact_json),
         last_message = iif(excluded.last_message_at >= last_message_at,
             excluded.last_message, last_message),
         last_message_id = iif(excluded.last_message_at >= last_message_at,
             excluded.last_message_id, last_message_id),
         last_message_at = max(last_message_at, excluded.last_message_at)
     RETURNING ",
    reads::conversation_columns!()
);

/// The state of each conversation a writer group's saves changed, in order of first change:
/// one `conversation_updated` each, written after the group's `message_incoming` events (as the
/// Redis script does for the chunks of one call). A mark-read or a deletion of the conversation
/// in the same group first writes the event of what came before it ([`Changed::flush`]), so
/// events keep the order of the writes (Redis runs them as separate scripts).
#[derive(Default)]
struct Changed(Vec<((String, String), ConversationFields)>);

impl Changed {
    /// The conversation's state after a change (replacing an earlier state of the group).
    fn note(&mut self, tenant: &str, contact: &str, state: ConversationFields) {
        match self
            .0
            .iter_mut()
            .find(|((t, c), _)| t == tenant && c == contact)
        {
            Some((_, s)) => *s = state,
            None => self
                .0
                .push(((tenant.to_owned(), contact.to_owned()), state)),
        }
    }

    /// Writes the conversation's pending event now, with `event` (the events `INSERT`).
    fn flush(
        &mut self,
        event: &mut rusqlite::Statement<'_>,
        tenant: &str,
        contact: &str,
    ) -> rusqlite::Result<()> {
        if let Some(at) = self
            .0
            .iter()
            .position(|((t, c), _)| t == tenant && c == contact)
        {
            let (_, state) = self.0.remove(at);
            event.execute(params!["conversation_updated", state.json(None)])?;
        }
        Ok(())
    }
}

/// A conversation's fields as [`reads::conversation_row`] reads them, by key.
const CONVERSATION_STATE: &str = concat!(
    "SELECT ",
    reads::conversation_columns!(),
    " FROM conversation WHERE phone_number_id = ?1 AND contact = ?2"
);

/// What the writer answers one job with, once its transaction committed.
enum Answer {
    Saved(ChunkAnswer),
    Changed(Vec<bool>),
    Marked(Option<super::view::MarkedRead>),
    Deleted(Option<u64>),
    Claim(super::Claim),
    Hooks(hooks::HookAnswer),
    Rules(rules::RuleAnswer),
    Done,
}

/// One request to the writer thread.
enum Job {
    Save {
        rows: Vec<Row>,
        /// Quarantined items (their JSON), kept with a `webhook_error` event each.
        quarantine: Vec<String>,
        /// Notices, each kept as its event unless its digest was seen within
        /// [`super::DEDUPE_TTL_SECS`].
        notices: Vec<NoticeWrite>,
        reply: oneshot::Sender<Result<ChunkAnswer, StoreError>>,
    },
    /// Status updates; the answer says per update whether it changed something.
    Statuses {
        writes: Vec<StatusWrite>,
        reply: oneshot::Sender<Result<Vec<bool>, StoreError>>,
    },
    /// Sets a conversation's unread count to 0; answers its JSON (`None`: no such
    /// conversation).
    MarkRead {
        phone_number_id: String,
        contact: String,
        reply: oneshot::Sender<Result<Option<super::view::MarkedRead>, StoreError>>,
    },
    /// Deletes a conversation; answers how many messages it held (`None`: no such
    /// conversation).
    DeleteConversation {
        phone_number_id: String,
        contact: String,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Records a step of the data upgrade in `layout`.
    Layout {
        key: &'static str,
        value: &'static str,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Claims, finishes or releases an idempotency key.
    Idempotency {
        key: String,
        fingerprint: String,
        op: super::IdempotencyOp,
        reply: oneshot::Sender<Result<super::Claim, StoreError>>,
    },
    /// A change to outgoing webhooks ([`hooks`]).
    Hooks {
        op: hooks::HookOp,
        reply: oneshot::Sender<Result<hooks::HookAnswer, StoreError>>,
    },
    /// A change to auto-reply rules or the engine's state ([`rules`]).
    Rules {
        op: rules::RuleOp,
        reply: oneshot::Sender<Result<rules::RuleAnswer, StoreError>>,
    },
}

impl Batched for Job {
    fn size(&self) -> usize {
        self.rows()
    }
}

impl Job {
    fn rows(&self) -> usize {
        match self {
            Self::Save {
                rows,
                quarantine,
                notices,
                ..
            } => rows.len() + quarantine.len() + notices.len(),
            Self::Statuses { writes, .. } => writes.len(),
            Self::Hooks { op, .. } => op.rows(),
            Self::Rules { op, .. } => op.rows(),
            Self::MarkRead { .. }
            | Self::DeleteConversation { .. }
            | Self::Probe { .. }
            | Self::Layout { .. }
            | Self::Idempotency { .. } => 1,
        }
    }

    fn fail(self, error: &str) {
        let error = || StoreError::Io(std::io::Error::other(error.to_owned()));
        match self {
            Self::Save { reply, .. } => drop(reply.send(Err(error()))),
            Self::Statuses { reply, .. } => drop(reply.send(Err(error()))),
            Self::MarkRead { reply, .. } => drop(reply.send(Err(error()))),
            Self::DeleteConversation { reply, .. } => drop(reply.send(Err(error()))),
            Self::Probe { reply } | Self::Layout { reply, .. } => drop(reply.send(Err(error()))),
            Self::Idempotency { reply, .. } => drop(reply.send(Err(error()))),
            Self::Hooks { reply, .. } => drop(reply.send(Err(error()))),
            Self::Rules { reply, .. } => drop(reply.send(Err(error()))),
        }
    }

    fn refuse(self, reason: &str) {
        let error = || StoreError::Refused(reason.to_owned());
        match self {
            Self::Save { reply, .. } => drop(reply.send(Err(error()))),
            Self::Statuses { reply, .. } => drop(reply.send(Err(error()))),
            Self::MarkRead { reply, .. } => drop(reply.send(Err(error()))),
            Self::DeleteConversation { reply, .. } => drop(reply.send(Err(error()))),
            Self::Probe { reply } | Self::Layout { reply, .. } => drop(reply.send(Err(error()))),
            Self::Idempotency { reply, .. } => drop(reply.send(Err(error()))),
            Self::Hooks { reply, .. } => drop(reply.send(Err(error()))),
            Self::Rules { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

type Row = MessageWrite;

/// The embedded backend. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: mpsc::Sender<Job>,
    readers: Readers,
    readiness: Readiness,
    /// Marked changed after every commit (the event reader's wake-up).
    committed: watch::Sender<()>,
    /// DATA_DIR's lock, held while the store (or its writer thread) lives.
    _lock: Arc<lock::DataDirLock>,
    /// Conversation keys learned from the aliases ([`super::alias`]).
    aliases: AliasCache,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStore")
    }
}

/// The first read of a `/get`, done in one blocking call.
enum FirstRead {
    Complete(Vec<Box<RawValue>>),
    Paged {
        count: usize,
        first: Vec<Box<RawValue>>,
        next: i64,
        end: i64,
    },
}

impl EmbeddedStore {
    /// Opens (creating or migrating if needed) the database and starts the writer thread and the
    /// readiness probe.
    pub fn open(settings: &EmbeddedSettings) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&settings.data_dir)?;
        // Before anything is opened for writing: another process's database is not ours to
        // migrate, probe or trim.
        let lock = lock::DataDirLock::acquire(&settings.data_dir)?;
        let path = settings.db_path();
        let conn = open_writer(&path)?;
        let identity = file_identity(&path)?;
        let readers = Readers::open(&path)?;
        let readiness = Readiness::default();
        let (committed, _) = watch::channel(());
        let writer = Writer {
            committed: committed.clone(),
            conn,
            path,
            data_dir: settings.data_dir.clone(),
            identity,
            lost: None,
            readiness: readiness.clone(),
            event_retention: settings.event_retention,
            _lock: lock.clone(),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))?;
        let store = Self {
            inner: Arc::new(Inner {
                writer: tx,
                readers,
                readiness,
                committed,
                _lock: lock,
                aliases: AliasCache::default(),
            }),
        };
        spawn_probe(Arc::downgrade(&store.inner), |inner| async move {
            let _ = Self { inner }.probe().await;
        });
        Ok(store)
    }

    pub(super) fn aliases(&self) -> &AliasCache {
        &self.inner.aliases
    }

    pub(super) fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// Marked changed after every commit, so the event reader reads new events at once.
    pub fn commits(&self) -> watch::Receiver<()> {
        self.inner.committed.subscribe()
    }

    /// Stores one chunk (at most [`super::MAX_MESSAGES_PER_WRITE`] messages) in one transaction.
    pub(super) async fn save_chunk(
        &self,
        messages: &[InboundMessage],
    ) -> Result<ChunkAnswer, StoreError> {
        let rows = messages.iter().map(MessageWrite::inbound).collect();
        self.ask(|reply| Job::Save {
            rows,
            quarantine: Vec::new(),
            notices: Vec::new(),
            reply,
        })
        .await
    }

    /// Keeps notices (see [`crate::store::Store::save_notices`]) in one transaction.
    pub(super) async fn save_notices(&self, notices: Vec<NoticeWrite>) -> Result<(), StoreError> {
        self.ask(|reply| Job::Save {
            rows: Vec::new(),
            quarantine: Vec::new(),
            notices,
            reply,
        })
        .await
        .map(drop)
    }

    /// Whether the FastAPI rows of earlier releases still need records and conversations.
    pub(super) async fn import_pending(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT count(*) FROM layout WHERE key = 'import' AND value = 'done'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .map(|done| done == 0)
    }

    /// The next page of FastAPI rows of earlier releases (no business number), in `seq` order,
    /// at most `page`; `None` when all were read.
    pub(super) async fn legacy_page(
        &self,
        cursor: &mut super::LegacyCursor,
        page: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let after = cursor.seq;
        let rows: Vec<(i64, String)> = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT seq, json FROM inbound_messages
                     WHERE phone_number_id IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![after, page as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
            })
            .await?;
        let Some((last, _)) = rows.last() else {
            return Ok(None);
        };
        cursor.seq = *last;
        Ok(Some(rows.into_iter().map(|(_, json)| json).collect()))
    }

    /// Records that the import is done.
    pub(super) async fn import_finished(&self) -> Result<(), StoreError> {
        self.ask(|reply| Job::Layout {
            key: "import",
            value: "done",
            reply,
        })
        .await
    }

    /// Queues the job `job` builds around its reply channel and waits for the writer's answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.inner
            .writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        outcome.await.map_err(|_| StoreError::WriterGone)?
    }

    /// See [`crate::store::Store::idempotency`].
    pub(crate) async fn idempotency(
        &self,
        key: &str,
        fingerprint: &str,
        op: super::IdempotencyOp,
    ) -> Result<super::Claim, StoreError> {
        self.ask(|reply| Job::Idempotency {
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
            op,
            reply,
        })
        .await
    }

    /// Sets a conversation's unread count to 0 (see [`crate::store::Store::mark_read`]).
    pub(crate) async fn mark_read(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<super::view::MarkedRead>, StoreError> {
        self.ask(|reply| Job::MarkRead {
            phone_number_id: phone_number_id.to_owned(),
            contact: contact.to_owned(),
            reply,
        })
        .await
    }

    /// Deletes a conversation (see [`crate::store::Store::delete_conversation`]).
    pub(crate) async fn delete_conversation(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.ask(|reply| Job::DeleteConversation {
            phone_number_id: phone_number_id.to_owned(),
            contact: contact.to_owned(),
            reply,
        })
        .await
    }

    /// Applies status updates in one transaction; per update, whether it changed something.
    pub(super) async fn save_statuses(
        &self,
        writes: &[StatusWrite],
    ) -> Result<Vec<bool>, StoreError> {
        self.ask(|reply| Job::Statuses {
            writes: writes.to_vec(),
            reply,
        })
        .await
    }

    /// Keeps quarantined items (each item's JSON) with a `webhook_error` event each, in one
    /// transaction.
    pub(super) async fn save_quarantined(&self, items: Vec<String>) -> Result<(), StoreError> {
        self.ask(|reply| Job::Save {
            rows: Vec::new(),
            quarantine: items,
            notices: Vec::new(),
            reply,
        })
        .await
        .map(drop)
    }

    pub(super) async fn recent_messages(
        &self,
        number: &ContactId,
        limit: usize,
    ) -> Result<Fetched, StoreError> {
        let number = number.as_str().to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let wanted = number.clone();
        let first = self
            .read(move |conn| {
                // One read transaction: the count and the rows come from the same snapshot.
                let tx = conn.unchecked_transaction()?;
                let (total, last_seq): (i64, Option<i64>) = tx.query_row(
                    "SELECT count(*), max(seq) FROM inbound_messages WHERE number = ?1",
                    params![wanted],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                let count = if limit == 0 || limit > total {
                    total
                } else {
                    limit
                };
                if count <= READ_PAGE as i64 {
                    let mut stmt = tx.prepare_cached(
                        "SELECT json FROM (
                             SELECT seq, json FROM inbound_messages WHERE number = ?1 ORDER BY seq DESC LIMIT ?2
                         ) ORDER BY seq ASC",
                    )?;
                    let rows =
                        stmt.query_map(params![wanted, count], |row| row.get::<_, String>(0))?;
                    let items = rows
                        .map(|r| r.map(stored_item))
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok(FirstRead::Complete(items));
                }
                let end = last_seq.unwrap_or(0);
                let start: i64 = tx.query_row(
                    "SELECT seq FROM inbound_messages WHERE number = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                    params![wanted, count - 1],
                    |row| row.get(0),
                )?;
                let (first, last) = read_page(&tx, &wanted, start, end)?;
                Ok(FirstRead::Paged {
                    count: count as usize,
                    first,
                    next: last.map_or(end + 1, |s| s + 1),
                    end,
                })
            })
            .await?;
        Ok(match first {
            FirstRead::Complete(items) => Fetched::Complete(items),
            FirstRead::Paged {
                count,
                first,
                next,
                end,
            } => Fetched::Paged(PagedRead {
                count,
                first: Some(first),
                cursor: super::Cursor::Embedded {
                    store: self.clone(),
                    number,
                    next,
                    end,
                },
                delivered: 0,
            }),
        })
    }

    /// The messages of `number` with `seq` in `next..=end`, at most a page, and the last `seq`.
    pub(super) async fn page(
        &self,
        number: String,
        next: i64,
        end: i64,
    ) -> Result<(Vec<Box<RawValue>>, Option<i64>), StoreError> {
        self.read(move |conn| read_page(conn, &number, next, end))
            .await
    }

    pub(super) fn queue_depth(&self) -> usize {
        let writer = &self.inner.writer;
        writer.max_capacity() - writer.capacity()
    }

    /// A tiny write through the writer thread (fsynced like any save, followed by the file
    /// identity check); records the outcome in [`Readiness`].
    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        let result =
            match tokio::time::timeout(PROBE_TIMEOUT, self.ask(|reply| Job::Probe { reply })).await
            {
                Ok(result) => result,
                Err(_) => Err(StoreError::Io(std::io::Error::other(format!(
                    "the store's writer did not complete a write within {}s",
                    PROBE_TIMEOUT.as_secs()
                )))),
            };
        match &result {
            Ok(()) => self.inner.readiness.record_write(Ok(())),
            Err(StoreError::Refused(_)) => {}
            Err(e) => self.inner.readiness.record_write(Err(e.to_string())),
        }
        result
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = &self.inner.readers;
        let _permit = readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let conn = match readers.take() {
            Some(conn) => conn,
            None => open_reader(&readers.path)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = f(&conn).map_err(StoreError::from);
            (conn, result)
        })
        .await
        .map_err(|_| StoreError::WriterGone)?;
        readers.give_back(conn);
        result
    }
}

/// Reads one page of `number`'s messages with `seq` in `next..=end`.
fn read_page(
    conn: &Connection,
    number: &str,
    next: i64,
    end: i64,
) -> rusqlite::Result<(Vec<Box<RawValue>>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, json FROM inbound_messages WHERE number = ?1 AND seq >= ?2 AND seq <= ?3
         ORDER BY seq LIMIT ?4",
    )?;
    let mut last = None;
    let mut items = Vec::with_capacity(READ_PAGE);
    let mut rows = stmt.query(params![number, next, end, READ_PAGE as i64])?;
    while let Some(row) = rows.next()? {
        last = Some(row.get::<_, i64>(0)?);
        items.push(stored_item(row.get(1)?));
    }
    Ok((items, last))
}

/// A few read-only connections, handed out one per blocking read.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let idle = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            permits: Semaphore::new(READERS),
        })
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrate(&conn)?;
    Ok(conn)
}

/// One idempotency-key step (see [`super::Store::idempotency`]), inside the group's transaction.
fn idempotency(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    fingerprint: &str,
    op: &super::IdempotencyOp,
) -> rusqlite::Result<super::Claim> {
    use super::{Claim, IdempotencyOp};
    match op {
        IdempotencyOp::Claim => {
            tx.prepare_cached("DELETE FROM idempotency WHERE created_at < unixepoch() - ?1")?
                .execute(params![super::IDEMPOTENCY_TTL_SECS as i64])?;
            let fresh = tx
                .prepare_cached(
                    "INSERT INTO idempotency (key, fingerprint) VALUES (?1, ?2)
                     ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![key, fingerprint])?;
            if fresh == 1 {
                return Ok(Claim::Fresh);
            }
            let (stored, status, body): (String, Option<u16>, Option<String>) = tx
                .prepare_cached("SELECT fingerprint, status, body FROM idempotency WHERE key = ?1")?
                .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(match (stored == fingerprint, status) {
                (false, _) => Claim::Mismatch,
                (true, None) => Claim::InProgress,
                (true, Some(status)) => Claim::Done {
                    status,
                    body: body.unwrap_or_default(),
                },
            })
        }
        IdempotencyOp::Finish { status, body } => {
            tx.prepare_cached(
                "UPDATE idempotency SET status = ?3, body = ?4, created_at = unixepoch()
                 WHERE key = ?1 AND fingerprint = ?2",
            )?
            .execute(params![key, fingerprint, status, body])?;
            Ok(Claim::Fresh)
        }
        IdempotencyOp::Release => {
            tx.prepare_cached(
                "DELETE FROM idempotency WHERE key = ?1 AND fingerprint = ?2 AND status IS NULL",
            )?
            .execute(params![key, fingerprint])?;
            Ok(Claim::Fresh)
        }
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction per step.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let steps: [&str; 10] = [
        SCHEMA_V1,
        MIGRATION_V2,
        MIGRATION_V3,
        MIGRATION_V4,
        MIGRATION_V5,
        MIGRATION_V6,
        hooks::MIGRATION_V7,
        rules::MIGRATION_V8,
        MIGRATION_V9,
        MIGRATION_V10,
    ];
    match version {
        0..SCHEMA_VERSION => {
            // Each step in its own transaction: a crash between two leaves a consistent,
            // numbered schema that the next start continues from.
            for (from, step) in (version..SCHEMA_VERSION).zip(&steps[version as usize..]) {
                conn.execute_batch(&format!(
                    "BEGIN; {step} PRAGMA user_version = {}; COMMIT;",
                    from + 1
                ))?;
                if from > 0 {
                    tracing::info!(from, to = from + 1, "store.embedded schema_migrated");
                }
            }
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the database has schema version {newer}, newer than this release's \
                 {SCHEMA_VERSION}: run the newer release (or restore a backup)"
            ))));
        }
    }
    Ok(())
}

/// Device and inode of a file.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    path: PathBuf,
    data_dir: PathBuf,
    identity: (u64, u64),
    /// Set once the database file is found deleted or replaced: why writes are refused.
    lost: Option<String>,
    readiness: Readiness,
    event_retention: usize,
    committed: watch::Sender<()>,
    /// DATA_DIR's lock; declared after `conn`, so it is released after the connection closed.
    _lock: Arc<lock::DataDirLock>,
}

impl Writer {
    /// The writer loop: one transaction (one fsync) per group of waiting jobs.
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        let mut groups = Grouper::new(queue, MAX_GROUP, MAX_TX_ROWS);
        while let Some(mut group) = groups.next_blocking() {
            if let Some(reason) = &self.lost {
                for job in group.drain(..) {
                    job.refuse(reason);
                }
                continue;
            }
            let written = write_group(&mut self.conn, &group, self.event_retention);
            // Before answering: is the file we committed to still the one a restart would open?
            let written =
                written.map_err(|e| e.to_string()).and_then(|outcomes| {
                    match file_identity(&self.path) {
                        Ok(identity) if identity == self.identity => Ok(outcomes),
                        Ok(_) => Err(self.file_lost("replaced by another file")),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Err(self.file_lost("deleted"))
                        }
                        Err(e) => Err(format!("cannot check the database file: {e}")),
                    }
                });
            match written {
                Ok(outcomes) => {
                    self.committed.send_replace(());
                    for (job, answer) in group.drain(..).zip(outcomes) {
                        match (job, answer) {
                            (Job::Save { reply, .. }, Answer::Saved(o)) => drop(reply.send(Ok(o))),
                            (Job::Statuses { reply, .. }, Answer::Changed(c)) => {
                                drop(reply.send(Ok(c)))
                            }
                            (Job::MarkRead { reply, .. }, Answer::Marked(c)) => {
                                drop(reply.send(Ok(c)))
                            }
                            (Job::DeleteConversation { reply, .. }, Answer::Deleted(d)) => {
                                drop(reply.send(Ok(d)))
                            }
                            (Job::Probe { reply } | Job::Layout { reply, .. }, Answer::Done) => {
                                drop(reply.send(Ok(())))
                            }
                            (Job::Idempotency { reply, .. }, Answer::Claim(c)) => {
                                drop(reply.send(Ok(c)))
                            }
                            (Job::Hooks { reply, .. }, Answer::Hooks(h)) => drop(reply.send(Ok(h))),
                            (Job::Rules { reply, .. }, Answer::Rules(r)) => drop(reply.send(Ok(r))),
                            (job, _) => job.fail("internal error: mismatched answer"),
                        }
                    }
                }
                Err(_) if self.lost.is_some() => {
                    let reason = self.lost.clone().unwrap_or_default();
                    for job in group.drain(..) {
                        job.refuse(&reason);
                    }
                }
                Err(e) => {
                    tracing::error!(error.message = %e, jobs = group.len(), "store.embedded commit_failed");
                    for job in group.drain(..) {
                        job.fail(&e);
                    }
                }
            }
        }
    }

    /// The database file is gone or replaced: write a rescue copy from the open connection (it
    /// still holds everything), refuse writes from now on, fail readiness. Returns the reason.
    fn file_lost(&mut self, what: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rescue = self
            .data_dir
            .join(format!("whatsapp-gateway.rescued-{now}.sqlite3"));
        let _ = std::fs::create_dir_all(&self.data_dir);
        let copied = self.conn.execute(
            "VACUUM INTO ?1",
            params![rescue.to_string_lossy().into_owned()],
        );
        let path = self.path.display();
        let reason = match copied {
            Ok(_) => format!(
                "the database file {path} was {what} while the service was running; writes are \
                 refused. Everything stored so far was copied to {}: stop the service, move that \
                 file to {path}, and start the service again",
                rescue.display()
            ),
            Err(e) => format!(
                "the database file {path} was {what} while the service was running; writes are \
                 refused. Writing a rescue copy to {} failed ({e}): do not stop the service yet, \
                 the running process still holds the data; copy the deleted file out through \
                 /proc/<pid>/fd/ (ls -l shows it as '(deleted)'), put the copy at {path}, then \
                 restart",
                rescue.display()
            ),
        };
        tracing::error!(path = %path, rescue = %rescue.display(), reason = %reason, "store.embedded database_file_missing");
        self.readiness.set_refused(Some(reason.clone()));
        self.lost = Some(reason.clone());
        reason
    }
}

fn write_group(
    conn: &mut Connection,
    group: &[Job],
    event_retention: usize,
) -> rusqlite::Result<Vec<Answer>> {
    // IMMEDIATE: the write lock is taken (with the busy wait) before the group's first read, so
    // the transaction never upgrades a read snapshot to a write. A deferred one can fail at once
    // ("database is locked", SQLITE_BUSY_SNAPSHOT, no busy wait) when the WAL index changed
    // after its first read; the bench saw that once under heavy concurrent reads (a group of
    // webhooks answered 500, and Meta would have retried them).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // The newest event before this group: trimming never reaches the group's own events, so a
    // write with more events than EVENT_RETENTION still reaches every reader.
    let events_before: i64 = tx
        .prepare_cached("SELECT coalesce(max(id), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut find = tx.prepare_cached(
            "SELECT contact FROM messages WHERE phone_number_id = ?1 AND id = ?2",
        )?;
        let mut legacy = tx.prepare_cached(
            "SELECT number FROM inbound_messages WHERE id = ?1 AND phone_number_id IS NULL",
        )?;
        let mut insert_record = tx.prepare_cached(
            "INSERT INTO messages
                 (phone_number_id, id, contact, direction, timestamp, record, in_history)
             VALUES (?1, ?2, ?3, 'inbound', ?4, ?5, ?6)",
        )?;
        let mut insert_compat = tx.prepare_cached(
            "INSERT INTO inbound_messages (id, number, timestamp, json, phone_number_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut upsert_conversation = tx.prepare_cached(UPSERT_CONVERSATION)?;
        let mut event = tx.prepare_cached("INSERT INTO events (type, data) VALUES (?1, ?2)")?;
        let mut probe = tx.prepare_cached(
            "INSERT INTO health (id, probed_at) VALUES (1, unixepoch())
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )?;
        let mut changed = Changed::default();
        for job in group.iter() {
            let (rows, quarantine, notices) = match job {
                Job::Save {
                    rows,
                    quarantine,
                    notices,
                    ..
                } => (rows, quarantine, notices),
                Job::Statuses { writes, .. } => {
                    let mut mine = Vec::with_capacity(writes.len());
                    for w in writes {
                        mine.push(apply_status(&tx, w)?);
                    }
                    outcomes.push(Answer::Changed(mine));
                    continue;
                }
                Job::MarkRead {
                    phone_number_id,
                    contact,
                    ..
                } => {
                    changed.flush(&mut event, phone_number_id, contact)?;
                    outcomes.push(Answer::Marked(mark_read(&tx, phone_number_id, contact)?));
                    continue;
                }
                Job::DeleteConversation {
                    phone_number_id,
                    contact,
                    ..
                } => {
                    changed.flush(&mut event, phone_number_id, contact)?;
                    outcomes.push(Answer::Deleted(delete_conversation(
                        &tx,
                        phone_number_id,
                        contact,
                    )?));
                    continue;
                }
                Job::Probe { .. } => {
                    probe.execute([])?;
                    outcomes.push(Answer::Done);
                    continue;
                }
                Job::Layout { key, value, .. } => {
                    tx.prepare_cached(
                        "INSERT INTO layout (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![key, value])?;
                    outcomes.push(Answer::Done);
                    continue;
                }
                Job::Idempotency {
                    key,
                    fingerprint,
                    op,
                    ..
                } => {
                    outcomes.push(Answer::Claim(idempotency(&tx, key, fingerprint, op)?));
                    continue;
                }
                Job::Hooks { op, .. } => {
                    outcomes.push(Answer::Hooks(hooks::apply(&tx, op)?));
                    continue;
                }
                Job::Rules { op, .. } => {
                    outcomes.push(Answer::Rules(rules::apply(&tx, op)?));
                    continue;
                }
            };
            if !rows.is_empty() {
                let moves = check_keys(&tx, rows)?;
                if !moves.is_empty() {
                    outcomes.push(Answer::Saved(ChunkAnswer::Moved(moves)));
                    continue;
                }
            }
            for item in quarantine {
                tx.prepare_cached("INSERT INTO quarantine (item) VALUES (?1)")?
                    .execute(params![item])?;
                event.execute(params!["webhook_error", item])?;
            }
            if !notices.is_empty() {
                tx.prepare_cached("DELETE FROM notices WHERE received_at < unixepoch() - ?1")?
                    .execute(params![super::DEDUPE_TTL_SECS as i64])?;
            }
            for notice in notices {
                let new = tx
                    .prepare_cached("INSERT OR IGNORE INTO notices (digest) VALUES (?1)")?
                    .execute(params![notice.digest])?;
                if new != 1 {
                    continue;
                }
                event.execute(params![notice.kind, notice.data])?;
                for p in &notice.preferences {
                    // The latest by Meta's timestamp wins, whatever order they arrive in.
                    tx.prepare_cached(
                        "INSERT INTO preferences (phone_number_id, contact, marketing)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (phone_number_id, contact) DO UPDATE
                         SET marketing = excluded.marketing
                         WHERE CAST(substr(marketing, 1, instr(marketing, ' ') - 1) AS INTEGER)
                               <= ?4",
                    )?
                    .execute(params![
                        p.phone_number_id,
                        p.contact,
                        format!("{} {}", p.timestamp, p.json),
                        p.timestamp
                    ])?;
                }
                for c in &notice.calls {
                    // The latest by Meta's timestamp, whatever order they arrive in.
                    let later = tx
                        .prepare_cached(
                            "INSERT INTO user_calls (phone_number_id, contact, last_call_at)
                             VALUES (?1, ?2, ?3)
                             ON CONFLICT (phone_number_id, contact) DO UPDATE
                             SET last_call_at = excluded.last_call_at
                             WHERE excluded.last_call_at > last_call_at",
                        )?
                        .execute(params![c.phone_number_id, c.contact, c.timestamp])?;
                    if later == 0 {
                        continue;
                    }
                    // A call that moves an existing conversation's window updates it as a
                    // message does (one `conversation_updated` after the group's events).
                    let state = tx
                        .prepare_cached(CONVERSATION_STATE)?
                        .query_row(
                            params![c.phone_number_id, c.contact],
                            reads::conversation_row,
                        )
                        .optional()?;
                    if let Some(state) = state.filter(|s| c.timestamp > s.last_inbound_at) {
                        changed.note(&c.phone_number_id, &c.contact, state);
                    }
                }
            }
            let mut mine = Vec::with_capacity(rows.len());
            for row in rows {
                let owner: Option<String> = match find
                    .query_row(params![row.phone_number_id, row.id], |r| r.get(0))
                    .optional()?
                {
                    Some(owner) => Some(owner),
                    None if row.legacy_dedupe => {
                        legacy.query_row(params![row.id], |r| r.get(0)).optional()?
                    }
                    None => None,
                };
                if let Some(owner) = owner {
                    mine.push(if owner == row.contact {
                        Outcome::Duplicate
                    } else {
                        Outcome::Conflict { stored_from: owner }
                    });
                    continue;
                }
                insert_record.execute(params![
                    row.phone_number_id,
                    row.id,
                    row.contact,
                    row.timestamp,
                    row.record,
                    row.is_new_message
                ])?;
                if !row.compat.is_empty() {
                    insert_compat.execute(params![
                        row.id,
                        row.list_contact,
                        row.timestamp,
                        row.compat,
                        row.phone_number_id
                    ])?;
                }
                if let Some(kind) = row.event {
                    event.execute(params![kind, row.record])?;
                }
                if let Some(kind) = row.kind_event {
                    event.execute(params![kind, row.record])?;
                }
                if let Some(change) = &row.change {
                    tx.prepare_cached(
                        "INSERT INTO message_changes
                             (phone_number_id, message_id, kind, timestamp, change)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (phone_number_id, message_id, kind) DO UPDATE SET
                             timestamp = excluded.timestamp, change = excluded.change
                         WHERE excluded.timestamp >= timestamp",
                    )?
                    .execute(params![
                        row.phone_number_id,
                        change.target,
                        change.kind,
                        change.timestamp,
                        change.json
                    ])?;
                }
                if !row.is_new_message {
                    mine.push(Outcome::Stored);
                    continue;
                }
                let state = upsert_conversation.query_row(
                    params![
                        row.phone_number_id,
                        row.contact,
                        row.contact_json,
                        row.preview_json,
                        row.id_json,
                        row.timestamp,
                        if row.from_user { row.timestamp } else { -1 },
                        i64::from(row.from_user),
                        row.from_user.then_some(&row.id_json),
                    ],
                    reads::conversation_row,
                )?;
                changed.note(&row.phone_number_id, &row.contact, state);
                mine.push(Outcome::Stored);
            }
            outcomes.push(Answer::Saved(ChunkAnswer::Saved(mine)));
        }
        for (_, state) in &changed.0 {
            event.execute(params!["conversation_updated", state.json(None)])?;
        }
        if group.iter().any(|j| !matches!(j, Job::Probe { .. })) {
            let last: i64 = tx
                .prepare_cached("SELECT coalesce(max(id), 0) FROM events")?
                .query_row([], |r| r.get(0))?;
            let cutoff = (last - event_retention as i64).min(events_before);
            if cutoff > 0 {
                tx.prepare_cached("DELETE FROM events WHERE id <= ?1")?
                    .execute(params![cutoff])?;
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Checks each row's conversation key against its user's aliases ([`super::alias`]), those
/// stored and those the rows before it add: the rows whose key is not the one named (index,
/// key), else nothing, and then the new aliases are recorded.
fn check_keys(
    tx: &rusqlite::Transaction<'_>,
    rows: &[Row],
) -> rusqlite::Result<Vec<(usize, String)>> {
    let mut find = tx.prepare_cached(
        "SELECT contact FROM contact_aliases WHERE phone_number_id = ?1 AND alias = ?2",
    )?;
    let mut known: HashMap<(&str, &str), Option<String>> = HashMap::new();
    let mut moves = Vec::new();
    let mut new = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let mut want: Option<String> = None;
        for id in &row.identities {
            let slot = (row.phone_number_id.as_str(), id.as_str());
            let stored = match known.entry(slot) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    find.query_row(params![row.phone_number_id, id], |r| r.get(0))
                        .optional()?,
                ),
            };
            if want.is_none() {
                want.clone_from(stored);
            }
        }
        // Under the key the row will have: the rows after it see the aliases it is going to
        // write.
        let key = want.unwrap_or_else(|| row.contact.clone());
        if key != row.contact {
            moves.push((i, key.clone()));
        }
        for id in &row.identities {
            let slot = (row.phone_number_id.as_str(), id.as_str());
            if known[&slot].is_none() && super::alias::recorded(id, &key) {
                known.insert(slot, Some(key.clone()));
                new.push((row.phone_number_id.as_str(), id.as_str(), key.clone()));
            }
        }
    }
    if moves.is_empty() {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO contact_aliases (phone_number_id, alias, contact)
             VALUES (?1, ?2, ?3)",
        )?;
        for (pnid, id, key) in new {
            insert.execute(params![pnid, id, key])?;
        }
    }
    Ok(moves)
}

/// Deletes a conversation: its row, and the records and statuses of its messages (their rows
/// stay with a NULL record, so Meta's retries are still duplicates), with a
/// `conversation_deleted` event. The FastAPI table is not touched. `None`: no such conversation.
fn delete_conversation(
    tx: &rusqlite::Transaction<'_>,
    phone_number_id: &str,
    contact: &str,
) -> rusqlite::Result<Option<u64>> {
    let contact_json: Option<String> = tx
        .prepare_cached(
            "DELETE FROM conversation WHERE phone_number_id = ?1 AND contact = ?2
             RETURNING contact_json",
        )?
        .query_row(params![phone_number_id, contact], |r| r.get(0))
        .optional()?;
    let Some(contact_json) = contact_json else {
        return Ok(None);
    };
    tx.prepare_cached(
        "DELETE FROM statuses WHERE phone_number_id = ?1 AND message_id IN
             (SELECT id FROM messages WHERE phone_number_id = ?1 AND contact = ?2)",
    )?
    .execute(params![phone_number_id, contact])?;
    let removed = tx
        .prepare_cached(
            "UPDATE messages SET record = NULL
             WHERE phone_number_id = ?1 AND contact = ?2 AND record IS NOT NULL",
        )?
        .execute(params![phone_number_id, contact])?;
    tx.prepare_cached("INSERT INTO events (type, data) VALUES ('conversation_deleted', ?1)")?
        .execute(params![super::view::deleted_event_json(
            phone_number_id,
            &contact_json,
            removed as u64
        )])?;
    Ok(Some(removed as u64))
}

/// The conversation [`mark_read`] reads, with its marketing preference and latest inbound id.
const MARK_READ_SELECT: &str = concat!(
    "SELECT ",
    reads::conversation_columns!(),
    ", ",
    reads::marketing_column!(),
    ", last_inbound_id FROM conversation WHERE phone_number_id = ?1 AND contact = ?2"
);

/// Sets a conversation's unread count to 0, with a `conversation_updated` event when it was
/// not 0. Returns the conversation's JSON, `None` when there is no such conversation.
fn mark_read(
    tx: &rusqlite::Transaction<'_>,
    phone_number_id: &str,
    contact: &str,
) -> rusqlite::Result<Option<super::view::MarkedRead>> {
    let found = tx
        .prepare_cached(MARK_READ_SELECT)?
        .query_row(params![phone_number_id, contact], |r| {
            let mut fields = reads::conversation_row(r)?;
            fields.marketing = r.get(9)?;
            Ok((fields, r.get::<_, Option<String>>(10)?))
        })
        .optional()?;
    let Some((mut fields, last_inbound_id)) = found else {
        return Ok(None);
    };
    if fields.unread_count != 0 {
        tx.prepare_cached(
            "UPDATE conversation SET unread_count = 0 WHERE phone_number_id = ?1 AND contact = ?2",
        )?
        .execute(params![phone_number_id, contact])?;
        fields.unread_count = 0;
        // The event has the shape of every other `conversation_updated` (on both backends): the
        // contact without its marketing preference, which only the read answer shows.
        let event = ConversationFields {
            marketing: None,
            ..fields.clone()
        };
        tx.prepare_cached("INSERT INTO events (type, data) VALUES ('conversation_updated', ?1)")?
            .execute(params![event.json(None)])?;
    }
    Ok(Some(super::view::MarkedRead {
        json: fields.json(Some(super::view::now_secs())),
        last_inbound: super::view::LastInbound::of(
            Some(fields.last_inbound_at),
            last_inbound_id.as_deref(),
        ),
    }))
}

/// Applies one status update with the rules of the Redis [`super::redis::STATUS_SCRIPT`]: one row
/// per (message, status) keeping the earliest timestamp and the first non-empty errors; the
/// current status is the highest rank among the rows. Adds a `message_status` event when
/// something changed; returns whether it did.
fn apply_status(tx: &rusqlite::Transaction<'_>, w: &StatusWrite) -> rusqlite::Result<bool> {
    let rows: Vec<(String, i64, bool, String)> = tx
        .prepare_cached(
            "SELECT status, timestamp, has_errors, detail FROM statuses
             WHERE phone_number_id = ?1 AND message_id = ?2",
        )?
        .query_map(params![w.phone_number_id, w.message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let current = rows
        .iter()
        .map(|(s, ..)| s.as_str())
        .max_by_key(|s| status_rank(s));
    let new_current = match current {
        Some(c) if status_rank(c) >= status_rank(w.status) => c.to_owned(),
        _ => w.status.to_owned(),
    };
    let old = rows.iter().find(|(s, ..)| s == w.status);
    let value: Option<(i64, bool, String)> = match old {
        None => Some((w.timestamp, w.has_errors, w.detail.clone())),
        Some((_, ts, has_errors, detail)) => {
            let new_ts = (*ts).min(w.timestamp);
            let add_errors = !has_errors && w.has_errors;
            if new_ts != *ts || add_errors {
                let mut merged: serde_json::Value =
                    serde_json::from_str(detail).unwrap_or_default();
                merged["timestamp"] = new_ts.into();
                if add_errors {
                    let new: serde_json::Value =
                        serde_json::from_str(&w.detail).unwrap_or_default();
                    merged["errors"] = new["errors"].clone();
                }
                Some((new_ts, *has_errors || w.has_errors, merged.to_string()))
            } else {
                None
            }
        }
    };
    if value.is_none() && current == Some(new_current.as_str()) {
        return Ok(false);
    }
    if let Some((ts, has_errors, detail)) = value {
        tx.prepare_cached(
            "INSERT INTO statuses (phone_number_id, message_id, status, timestamp, has_errors, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (phone_number_id, message_id, status) DO UPDATE SET
                 timestamp = excluded.timestamp, has_errors = excluded.has_errors,
                 detail = excluded.detail",
        )?
        .execute(params![
            w.phone_number_id,
            w.message_id,
            w.status,
            ts,
            has_errors,
            detail
        ])?;
    }
    tx.prepare_cached("INSERT INTO events (type, data) VALUES ('message_status', ?1)")?
        .execute(params![w.event_json(&new_current)])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's message from phone `from` to business number 1065, as a row.
    fn row(id: &str, from: &str) -> Row {
        MessageWrite::inbound(&crate::store::record::tests::message_from(
            id,
            Some(from),
            None,
        ))
    }

    /// The events of the group's transaction: (type, unread_count of a conversation event).
    fn events(conn: &Connection) -> Vec<(String, Option<i64>)> {
        let mut statement = conn
            .prepare("SELECT type, data FROM events ORDER BY id")
            .unwrap();
        statement
            .query_map([], |r| {
                let (kind, data): (String, String) = (r.get(0)?, r.get(1)?);
                let data: serde_json::Value = serde_json::from_str(&data).unwrap();
                Ok((kind, data["unread_count"].as_i64()))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A message and a mark-read (or a deletion) of its conversation in one group: the
    /// message's `conversation_updated` comes before the mark-read's (or the deletion's)
    /// event, as the writes happened, never after it with the state before the mark.
    #[test]
    fn a_conversation_s_events_keep_the_order_of_the_group_s_writes() {
        for delete in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = Connection::open(dir.path().join("db")).unwrap();
            migrate(&conn).unwrap();
            let (save, _a) = oneshot::channel();
            let (second, third) = if delete {
                let (reply, rx) = oneshot::channel();
                drop(rx);
                let job = Job::DeleteConversation {
                    phone_number_id: "1065".into(),
                    contact: "15551234567".into(),
                    reply,
                };
                (job, "conversation_deleted")
            } else {
                let (reply, rx) = oneshot::channel();
                drop(rx);
                let job = Job::MarkRead {
                    phone_number_id: "1065".into(),
                    contact: "15551234567".into(),
                    reply,
                };
                (job, "conversation_updated")
            };
            let group = [
                Job::Save {
                    rows: vec![row("wamid.A", "15551234567")],
                    quarantine: Vec::new(),
                    notices: Vec::new(),
                    reply: save,
                },
                second,
            ];
            write_group(&mut conn, &group, 1000).unwrap();
            let got = events(&conn);
            let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                kinds,
                ["message_incoming", "conversation_updated", third],
                "{got:?}"
            );
            assert_eq!(got[1].1, Some(1), "the message's state: {got:?}");
            if !delete {
                assert_eq!(got[2].1, Some(0), "the mark's state, last: {got:?}");
            }
        }
    }
}
