//! Storage: one [`Store`] with two backends that pass the same contract tests (`tests/api/`:
//! webhook, get, conversations, store_faults, store_integrity run on both).
//!
//! - [`redis::RedisStore`] when REDIS_URL is set: the FastAPI original's lists plus our keys under
//!   REDIS_KEY_PREFIX; one Lua script (one round trip) per chunk of messages.
//! - [`embedded::EmbeddedStore`] otherwise: SQLite under DATA_DIR, one writer thread with group
//!   commit, versioned migrations.
//!
//! What one write stores (see [`record`] for the shapes): the **message record** (the primary
//! form, scoped by the business `phone_number_id`; it is also the dedupe marker), the **FastAPI
//! list entry** (a projection, so `/get` and the original's readers keep working), the
//! **conversation** (counters, last message, the 24-hour window) and the **events** describing
//! all of it (an outbox: Redis stream / `events` table). Statuses ([`Store::save_statuses`]) and
//! quarantined items ([`Store::save_quarantined`]) are written with their events the same way.
//! Nothing is published after a write: the event stream reads the outbox.
//!
//! Invariants both keep:
//! - a save is written in chunks of at most [`MAX_MESSAGES_PER_WRITE`] messages (one script call
//!   or one transaction each, so a huge signed delivery never blocks the store for long); a chunk
//!   is stored entirely or not at all (Redis: the script reads everything that can fail first,
//!   undoes its own writes if one fails anyway, and writes the records last);
//! - a message id already stored for a business number is never stored again; a failed chunk
//!   leaves no record, so Meta's retry stores exactly what is missing; markers of earlier
//!   releases still count;
//! - an id already stored for another sender is not stored again either, but counted as a
//!   conflict and logged (`webhook.id_conflict`, masked numbers);
//! - saving reports per message: stored, duplicate or conflict ([`Outcome`]), so later steps act
//!   on exactly the new ones.
//!
//! Readiness ([`Readiness`]) lives here, off the request path: a background probe performs a real
//! small write every [`PROBE_INTERVAL`], every save records its outcome too, and `/readyz` only
//! reads the latest. A store can also *refuse* writes (an evicting Redis, a deleted database
//! file): saves then fail with [`StoreError::Refused`], whose text says what to do.
//!
//! `Store` is an enum rather than a `dyn` trait: there are exactly two backends, static dispatch
//! needs no boxing of async methods, and the one `match` lives in `on_backend!`, so each method
//! is a line and adding one makes the compiler ask for it on both backends. Reads of the
//! conversation API are in [`view`] (shapes) and the backends' `reads` modules.

pub mod alias;
pub mod batch;
pub mod embedded;
pub mod hooks;
pub mod readiness;
pub mod record;
pub mod redis;
pub mod rules;
pub mod view;

use std::time::Duration;

use serde_json::value::RawValue;

pub use self::readiness::Readiness;
use crate::domain::{ContactId, InboundMessage};
use crate::webhook::{InboundStatus, Notice, Quarantined};
use record::{CallWrite, NoticeWrite, PreferenceWrite, StatusWrite};
use view::{ConversationsQuery, MessagesQuery, Page};

/// How long a dedupe marker is kept: 8 days, past Meta's 7-day retry horizon.
pub const DEDUPE_TTL_SECS: u64 = 8 * 24 * 60 * 60;
/// Most messages written by one Redis script call or one SQLite transaction. A larger save is split
/// into chunks written one after the other.
pub const MAX_MESSAGES_PER_WRITE: usize = 256;
/// Items per page of a large `/get` answer: results up to this size are read in one go, larger
/// ones are streamed page by page.
pub const READ_PAGE: usize = 500;
/// How often the background probe writes to the store (and re-checks its configuration).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Items per [`Store::legacy_page`].
const LEGACY_PAGE: usize = 256;

/// Where a [`Store::legacy_page`] walk stands (each backend uses its own part).
#[derive(Debug, Default)]
pub struct LegacyCursor {
    /// Redis: the `SCAN` cursor, whether the scan is complete, the keys found but not read yet,
    /// and the list being read with the next offset.
    scan: u64,
    scanned: bool,
    keys: Vec<String>,
    list: Option<(String, usize)>,
    /// SQLite: the last `seq` read.
    seq: i64,
}

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveReport {
    /// Messages newly stored.
    pub stored: usize,
    /// Messages already stored earlier (Meta retries), not stored again.
    pub duplicates: usize,
    /// Messages whose id was already stored for a *different* sender: not stored, counted, logged.
    pub conflicts: usize,
}

/// A quarantined item's event data; `raw` is embedded byte for byte.
#[derive(serde::Serialize)]
struct QuarantineData<'a> {
    path: &'a str,
    rule: &'a str,
    phone_number_id: Option<&'a str>,
    raw: &'a RawValue,
    received_at: i64,
}

/// A notice's event data; `value` is embedded as it came (key order and all).
#[derive(serde::Serialize)]
struct NoticeData<'a> {
    field: &'a str,
    waba_id: Option<&'a str>,
    phone_number_id: Option<&'a str>,
    value: &'a RawValue,
    received_at: i64,
}

/// A backend's answer to a chunk of messages.
#[derive(Debug)]
pub(crate) enum ChunkAnswer {
    /// Written (or found stored already): one outcome per message.
    Saved(Vec<Outcome>),
    /// Nothing written: the messages at these indexes belong to the conversation named (a
    /// stored alias of their user, [`alias`]). Empty: another chunk of the same write moved, so
    /// this one was not written either; write it again as it is.
    Moved(Vec<(usize, String)>),
}

/// How often a chunk is written again with the keys the store named before the save fails
/// (each time, another instance gave one of its users a conversation in between).
const MAX_MOVES: usize = 4;
/// How often a chunk is written again because another chunk of the same Redis call was moved
/// (it was not written, though its keys were right) before the save fails.
const MAX_REWRITES: usize = 64;

/// What happened to one message of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Stored,
    Duplicate,
    /// The id is stored for another sender (digits).
    Conflict {
        stored_from: String,
    },
}

/// How long a client's `Idempotency-Key` is remembered (Meta-side retries by clients happen
/// within minutes; a day covers a client that retries after an outage).
pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 60 * 60;

/// What to do with an `Idempotency-Key` (see [`Store::idempotency`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyOp {
    /// Take the key for a request with this body fingerprint, unless it is taken.
    Claim,
    /// Remember the answer of the request that holds the key.
    Finish { status: u16, body: String },
    /// Give the key back (the request certainly sent nothing): a retry may use it again.
    Release,
}

/// The state of an `Idempotency-Key` a request asked to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now.
    Fresh,
    /// A request with the same body holds the key and has no answer yet (in flight, or cut off
    /// before its outcome was known).
    InProgress,
    /// The key was used with another body.
    Mismatch,
    /// The answer of the first request with this key and body.
    Done { status: u16, body: String },
}

/// A store failure. Handlers answer 503 so Meta retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("embedded store is not running")]
    WriterGone,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store refuses writes until an operator fixes something; the text says what.
    #[error("{0}")]
    Refused(String),
    /// The embedded store's DATA_DIR is locked by another process ([`embedded::lock`]); the
    /// text names the directory, the lock file and the holder.
    #[error("{0}")]
    InUse(embedded::lock::InUse),
}

impl StoreError {
    /// Text an operator may see in a 503 body: only refusals, which carry no secret and say how
    /// to fix the store. Other causes stay in the log.
    pub fn public_detail(&self) -> Option<&str> {
        match self {
            Self::Refused(reason) => Some(reason),
            _ => None,
        }
    }
}

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Store {
    Redis(redis::RedisStore),
    Embedded(embedded::EmbeddedStore),
}

/// Runs `$call` with `$s` bound to the configured backend: the one `match` over the backends,
/// so each [`Store`] method is a single line.
macro_rules! on_backend {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            Store::Redis($s) => $call,
            Store::Embedded($s) => $call,
        }
    };
}

/// The answer to a read: small results in one piece, large ones page by page.
pub enum Fetched {
    /// Every message, oldest first.
    Complete(Vec<Box<RawValue>>),
    /// `count` messages, oldest first, read page by page from a snapshot taken at the first read.
    Paged(PagedRead),
}

/// A large read in progress: the first page is already read, the rest is read on demand.
pub struct PagedRead {
    /// How many messages the whole read returns.
    pub count: usize,
    first: Option<Vec<Box<RawValue>>>,
    cursor: Cursor,
    delivered: usize,
}

enum Cursor {
    Redis {
        store: redis::RedisStore,
        key: String,
        /// Next list index to read, and the last index of the snapshot (inclusive).
        next: i64,
        end: i64,
    },
    Embedded {
        store: embedded::EmbeddedStore,
        number: String,
        /// Next `seq` to read, and the last `seq` of the snapshot (inclusive).
        next: i64,
        end: i64,
    },
}

impl PagedRead {
    /// The next page (at most [`READ_PAGE`] messages), `None` after the last. Fails when the store
    /// fails or when the snapshot no longer holds what it promised (the answer must then be cut
    /// off rather than end as valid JSON with a wrong count).
    pub async fn next_page(&mut self) -> Result<Option<Vec<Box<RawValue>>>, StoreError> {
        let page = match self.first.take() {
            Some(first) => first,
            None => match &mut self.cursor {
                Cursor::Redis {
                    store,
                    key,
                    next,
                    end,
                } => {
                    if *next > *end {
                        Vec::new()
                    } else {
                        let last = (*next + READ_PAGE as i64 - 1).min(*end);
                        let page = store.range(key, *next, last).await?;
                        *next = last + 1;
                        page
                    }
                }
                Cursor::Embedded {
                    store,
                    number,
                    next,
                    end,
                } => {
                    if *next > *end {
                        Vec::new()
                    } else {
                        let (page, last_seq) = store.page(number.clone(), *next, *end).await?;
                        *next = last_seq.map_or(*end + 1, |s| s + 1);
                        page
                    }
                }
            },
        };
        if page.is_empty() {
            if self.delivered != self.count {
                return Err(StoreError::Io(std::io::Error::other(format!(
                    "the list shrank while it was read: {} of {} messages",
                    self.delivered, self.count
                ))));
            }
            return Ok(None);
        }
        self.delivered += page.len();
        if self.delivered > self.count {
            return Err(StoreError::Io(std::io::Error::other(
                "the read returned more messages than its snapshot",
            )));
        }
        Ok(Some(page))
    }
}

impl Store {
    /// Backend name for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Embedded(_) => "embedded",
        }
    }

    /// The store's readiness: the latest write outcome and any refusal, kept up to date by the
    /// background probe and by every save. Reading it costs no store call.
    pub fn readiness(&self) -> &Readiness {
        on_backend!(self, s => s.readiness())
    }

    /// Stores a webhook's messages, skipping ids already stored, in chunks of at most
    /// [`MAX_MESSAGES_PER_WRITE`]. The first failing chunk ends the save with its error; chunks
    /// stored before it keep their markers, so Meta's retry stores only the rest.
    pub async fn save_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> Result<SaveReport, StoreError> {
        let mut report = SaveReport::default();
        for chunk in messages.chunks(MAX_MESSAGES_PER_WRITE) {
            let (chunk, outcomes) = self.save_keyed(chunk).await;
            match &outcomes {
                Ok(_) => self.readiness().record_write(Ok(())),
                // A refusal is already what readiness reports; other failures are the news.
                Err(StoreError::Refused(_)) => {}
                Err(e) => self.readiness().record_write(Err(e.to_string())),
            }
            let outcomes = outcomes?;
            let aliases = on_backend!(self, s => s.aliases());
            for message in chunk.iter() {
                aliases.learn(message);
            }
            for (message, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    Outcome::Stored => report.stored += 1,
                    Outcome::Duplicate => report.duplicates += 1,
                    Outcome::Conflict { stored_from } => {
                        report.conflicts += 1;
                        let stored_from = ContactId::parse(&stored_from)
                            .map_or_else(|_| "***".to_owned(), |n| n.masked());
                        tracing::warn!(
                            message_id = message.id.as_str(),
                            from = %message.from.masked(),
                            stored_from = %stored_from,
                            "webhook.id_conflict message id already stored for another sender; not stored again"
                        );
                    }
                }
            }
        }
        Ok(report)
    }

    /// Writes one chunk under the conversation keys [`alias`] gives its users: the keys this
    /// process knows first, then the ones the store names when it refuses a key. The chunk as
    /// written (its messages' `from` is their key) and the outcome.
    async fn save_keyed<'a>(
        &self,
        chunk: &'a [InboundMessage],
    ) -> (
        std::borrow::Cow<'a, [InboundMessage]>,
        Result<Vec<Outcome>, StoreError>,
    ) {
        let mut chunk = std::borrow::Cow::Borrowed(chunk);
        let aliases = on_backend!(self, s => s.aliases());
        for i in 0..chunk.len() {
            if let Some(key) = aliases.known(&chunk[i]) {
                chunk.to_mut()[i].from = key;
            }
        }
        let (mut moved, mut rewritten) = (0, 0);
        while moved <= MAX_MOVES && rewritten <= MAX_REWRITES {
            match on_backend!(self, s => s.save_chunk(&chunk).await) {
                Ok(ChunkAnswer::Saved(outcomes)) => return (chunk, Ok(outcomes)),
                Ok(ChunkAnswer::Moved(moves)) if moves.is_empty() => rewritten += 1,
                Ok(ChunkAnswer::Moved(moves)) => {
                    moved += 1;
                    for (i, key) in moves {
                        let key = ContactId::parse(&key).map_err(|e| {
                            StoreError::Io(std::io::Error::other(format!(
                                "the store names an invalid conversation key for a user: {e}"
                            )))
                        });
                        match (key, chunk.to_mut().get_mut(i)) {
                            (Ok(key), Some(message)) => {
                                message.from = key;
                                // At once: the user's other webhooks in flight take it too.
                                aliases.learn(message);
                            }
                            (Err(e), _) => return (chunk, Err(e)),
                            (Ok(_), None) => {
                                let e = "the store moved a message the chunk does not have";
                                return (chunk, Err(StoreError::Io(std::io::Error::other(e))));
                            }
                        }
                    }
                }
                Err(e) => return (chunk, Err(e)),
            }
        }
        let e = format!(
            "the conversation keys of this chunk's users kept changing while it was written \
             ({moved} moves, {rewritten} rewrites); nothing of it was stored (the retry will be)"
        );
        (chunk, Err(StoreError::Io(std::io::Error::other(e))))
    }

    /// Applies a delivery's status updates (in chunks of at most [`MAX_MESSAGES_PER_WRITE`]):
    /// each is stored with a `message_status` event in one atomic write, unless it changes
    /// nothing (a retry, a duplicate). Returns how many changed something.
    pub async fn save_statuses(&self, statuses: &[InboundStatus]) -> Result<usize, StoreError> {
        let mut changed = 0;
        for chunk in statuses.chunks(MAX_MESSAGES_PER_WRITE) {
            let writes: Vec<StatusWrite> = chunk
                .iter()
                .map(|s| StatusWrite::new(&s.update, s.phone_number_id.as_str()))
                .collect();
            let result = on_backend!(self, s => s.save_statuses(&writes).await);
            match &result {
                Ok(_) => self.readiness().record_write(Ok(())),
                Err(StoreError::Refused(_)) => {}
                Err(e) => self.readiness().record_write(Err(e.to_string())),
            }
            changed += result?.into_iter().filter(|c| *c).count();
        }
        Ok(changed)
    }

    /// A message by id (either direction) with its current status and status history, as JSON:
    /// under `phone_number_id` when given, else under the lowest business number that has it.
    pub async fn message(
        &self,
        id: &str,
        phone_number_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        on_backend!(self, s => s.message(id, phone_number_id).await)
    }

    /// The latest message `contact` wrote to business number `phone_number_id`: its id, from the
    /// conversation's fields (one read); `None` when no inbound message of theirs is
    /// stored. (The window opens at the later of this and their latest call:
    /// [`Store::window_opened_at`].)
    pub async fn last_inbound(
        &self,
        phone_number_id: &str,
        contact: &ContactId,
    ) -> Result<Option<view::LastInbound>, StoreError> {
        on_backend!(self, s => s.last_inbound(phone_number_id, contact.as_str()).await)
    }

    /// When `contact`'s 24-hour customer-service window with `phone_number_id` opened: the later
    /// of their latest message and their latest call ([`record::window_opened_at`]); `None`
    /// when they never wrote or called. One store read (it also reads the contact's alias); two
    /// for a contact whose conversation is under another key ([`alias`]).
    pub async fn window_opened_at(
        &self,
        phone_number_id: &str,
        contact: &ContactId,
    ) -> Result<Option<i64>, StoreError> {
        let (opened, alias) =
            on_backend!(self, s => s.window_opened_at(phone_number_id, contact.as_str()).await)?;
        let Some(key) = alias
            .filter(|key| key != contact.as_str())
            .and_then(|key| ContactId::parse(&key).ok())
        else {
            return Ok(opened);
        };
        // The conversation is under its key: a second read. A call may be kept under the
        // identifier it came with, so the later of both.
        on_backend!(self, s => s.aliases()).remember_read(phone_number_id, contact.as_str(), &key);
        let (keyed, _) =
            on_backend!(self, s => s.window_opened_at(phone_number_id, key.as_str()).await)?;
        Ok(opened.max(keyed))
    }

    /// The conversation key of `contact` with business number `phone_number_id`: the key an
    /// alias of it names ([`alias`]: a user's phone when their conversation is keyed by their
    /// BSUID, or the other way round), else `contact` itself; also `contact` itself when it has
    /// a conversation of its own (two conversations stored for one user before the aliases
    /// knew them both stay reachable). Keys an earlier read found are cached; otherwise one
    /// store read.
    pub async fn conversation_key(
        &self,
        phone_number_id: &str,
        contact: &ContactId,
    ) -> Result<ContactId, StoreError> {
        let aliases = on_backend!(self, s => s.aliases());
        if let Some(key) = aliases.read(phone_number_id, contact.as_str()) {
            return Ok(key);
        }
        let found = on_backend!(self, s => s.alias_of(phone_number_id, contact.as_str()).await)?;
        let Some(key) = found.and_then(|key| ContactId::parse(&key).ok()) else {
            return Ok(contact.clone());
        };
        aliases.remember_read(phone_number_id, contact.as_str(), &key);
        Ok(key)
    }

    /// Claims, finishes or releases a client's `Idempotency-Key` with the fingerprint of its
    /// request body, in one atomic step; keys are kept [`IDEMPOTENCY_TTL_SECS`]. On Redis they
    /// are shared by every instance. `Finish` and `Release` answer [`Claim::Fresh`].
    pub async fn idempotency(
        &self,
        key: &str,
        fingerprint: &str,
        op: IdempotencyOp,
    ) -> Result<Claim, StoreError> {
        on_backend!(self, s => s.idempotency(key, fingerprint, op).await)
    }

    /// A page of conversations, most recent activity first.
    pub async fn conversations(&self, query: &ConversationsQuery) -> Result<Page, StoreError> {
        on_backend!(self, s => s.conversations(query).await)
    }

    /// A page of one conversation's messages in Meta-timestamp order, oldest first.
    pub async fn conversation_messages(&self, query: &MessagesQuery) -> Result<Page, StoreError> {
        on_backend!(self, s => s.conversation_messages(query).await)
    }

    /// Sets a conversation's unread count to 0 (one `conversation_updated` event when it was
    /// not 0, in the same atomic write). The conversation's JSON and the contact's latest
    /// message, in the same round trip; `None` when there is no such conversation.
    pub async fn mark_read(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<view::MarkedRead>, StoreError> {
        on_backend!(self, s => s.mark_read(phone_number_id, contact).await)
    }

    /// Deletes a conversation and the records and statuses of its messages for that business
    /// number (their ids still deduplicate Meta's retries; the FastAPI list is kept), with a
    /// `conversation_deleted` event in the same atomic write. The number of messages removed;
    /// `None` when there is no such conversation.
    pub async fn delete_conversation(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<u64>, StoreError> {
        on_backend!(self, s => s.delete_conversation(phone_number_id, contact).await)
    }

    /// A number's `/get` items (the FastAPI shape) after `since`, oldest first, at most `limit`
    /// (0: all), looking through the number's [`view::SINCE_WINDOW`] most recent messages:
    /// after a message id in arrival order (`None` when that id is not among them), or with a
    /// Meta timestamp later than a time.
    pub async fn messages_since(
        &self,
        contact: &ContactId,
        since: &view::Since,
        limit: usize,
    ) -> Result<Option<Vec<Box<RawValue>>>, StoreError> {
        let items = on_backend!(self, s => s.messages_since(contact.as_str(), since, limit).await)?;
        Ok(items.map(|items| items.into_iter().map(stored_item).collect()))
    }

    /// Keeps items of a delivery that could not be attributed, each with a `webhook_error`
    /// event, in one atomic write: `{"path","rule","phone_number_id","raw","received_at"}`.
    pub async fn save_quarantined(&self, items: &[Quarantined]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let received_at = view::now_secs();
        let items = items
            .iter()
            .map(|q| {
                serde_json::to_string(&QuarantineData {
                    path: &q.path,
                    rule: &q.rule,
                    phone_number_id: q.phone_number_id.as_ref().map(|p| p.as_str()),
                    raw: &q.raw,
                    received_at,
                })
                .expect("strings and raw JSON serialize")
            })
            .collect();
        let result = on_backend!(self, s => s.save_quarantined(items).await);
        if let Err(e) = &result
            && !matches!(e, StoreError::Refused(_))
        {
            self.readiness().record_write(Err(e.to_string()));
        }
        result
    }

    /// Keeps notifications that are not messages ([`Notice`]) as events, each once: a notice
    /// whose digest was kept within [`DEDUPE_TTL_SECS`] (Meta's retry) is skipped. Data:
    /// `{"field","waba_id","phone_number_id","value","received_at"}`. A `user_preferences`
    /// notice also sets the contacts' marketing preference (the latest by Meta's timestamp),
    /// shown on the contact in conversation views; a `calls` notice moves the callers'
    /// `last_call_at` forward (a user's call opens the 24-hour window; when it moves an
    /// existing conversation's window, a `conversation_updated` event follows). In chunks of
    /// [`MAX_MESSAGES_PER_WRITE`], each one atomic write.
    pub async fn save_notices(&self, notices: &[Notice]) -> Result<(), StoreError> {
        let received_at = view::now_secs();
        for chunk in notices.chunks(MAX_MESSAGES_PER_WRITE) {
            let items = chunk
                .iter()
                .map(|n| {
                    let data = serde_json::to_string(&NoticeData {
                        field: &n.field,
                        waba_id: n.waba_id.as_deref(),
                        phone_number_id: n.phone_number_id.as_ref().map(|p| p.as_str()),
                        value: &n.value,
                        received_at,
                    })
                    .expect("strings and raw JSON serialize");
                    NoticeWrite {
                        digest: n.digest(),
                        kind: n.kind.clone(),
                        data,
                        preferences: n
                            .preferences
                            .iter()
                            .map(|p| PreferenceWrite {
                                phone_number_id: p.phone_number_id.as_str().to_owned(),
                                contact: p.contact.as_str().to_owned(),
                                timestamp: p.timestamp,
                                json: p.item.get().to_owned(),
                            })
                            .collect(),
                        calls: n
                            .calls
                            .iter()
                            .map(|c| CallWrite {
                                phone_number_id: c.phone_number_id.as_str().to_owned(),
                                contact: c.contact.as_str().to_owned(),
                                timestamp: c.timestamp,
                            })
                            .collect(),
                    }
                })
                .collect();
            let result = on_backend!(self, s => s.save_notices(items).await);
            if let Err(e) = &result
                && !matches!(e, StoreError::Refused(_))
            {
                self.readiness().record_write(Err(e.to_string()));
            }
            result?;
        }
        Ok(())
    }

    /// Whether messages stored by an earlier release (only in their FastAPI form) still need
    /// records and conversations ([`crate::service::upgrade`]).
    pub async fn import_pending(&self) -> Result<bool, StoreError> {
        on_backend!(self, s => s.import_pending().await)
    }

    /// The next page of FastAPI JSON items written by earlier releases (`None`: there are no
    /// more), from `cursor`, which it advances. Redis: every FastAPI list (`SCAN ... TYPE list`),
    /// each read in pages; SQLite: the rows without a business number, in order.
    pub async fn legacy_page(
        &self,
        cursor: &mut LegacyCursor,
    ) -> Result<Option<Vec<String>>, StoreError> {
        on_backend!(self, s => s.legacy_page(cursor, LEGACY_PAGE).await)
    }

    /// Records that every message of earlier releases has its record and conversation.
    pub async fn import_finished(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.import_finished().await)
    }

    /// The most recent `limit` messages of `number` (all when `limit` is 0), oldest first, each as
    /// its stored JSON. Up to [`READ_PAGE`] messages come in one store round trip; more come as a
    /// [`PagedRead`] over a snapshot taken by the first round trip.
    pub async fn recent_messages(
        &self,
        number: &ContactId,
        limit: usize,
    ) -> Result<Fetched, StoreError> {
        on_backend!(self, s => s.recent_messages(number, limit).await)
    }

    /// Save requests waiting in process for the backend (the embedded writer queue); Redis
    /// requests are pipelined on the connection and not queued here.
    pub fn queue_depth(&self) -> usize {
        match self {
            Self::Redis(_) => 0,
            Self::Embedded(s) => s.queue_depth(),
        }
    }

    /// Runs the readiness probe once now (a real small write, plus the backend's configuration
    /// checks) and records its outcome. Start-up calls it before serving; afterwards the
    /// background probe calls it every [`PROBE_INTERVAL`].
    pub async fn probe(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.probe().await)
    }
}

/// Parses a stored item; an item that is not JSON (written by hand, say) is returned as a JSON
/// string instead of failing the whole read.
fn stored_item(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|e| {
        tracing::warn!(error.message = %e, "messages.fetch skipped_invalid_json");
        RawValue::from_string(r#""<invalid stored item>""#.to_owned()).expect("valid JSON literal")
    })
}
