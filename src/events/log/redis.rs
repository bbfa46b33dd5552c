//! The Redis backend's event log: the stream `<REDIS_KEY_PREFIX>:events`, appended by the store's
//! scripts with `XADD ... MAXLEN ~`. One entry holds **every event of one write**, as fields
//! `<event type> <JSON>` in order (one `XADD` per write, not per event: a webhook chunk's events
//! cost one command); entries of the form `type <event type> data <JSON>` (one event, as earlier
//! builds wrote them) are read too. An event's id is its entry's id and its index in the entry
//! ([`EventId::Stream`]), so resuming inside an entry replays exactly the events after the cursor.
//!
//! Two kinds of connections of our own, apart from the store's:
//! - the **reader's**, dedicated to it: `XREAD BLOCK` holds a connection for up to
//!   [`BLOCK`], which on the store's shared multiplexed connection would stall every webhook
//!   queued behind it. Its response timeout is `BLOCK` + REDIS_TIMEOUT_MS; when it fails (Redis
//!   down, a partition), the reader reconnects with backoff ([`MIN_BACKOFF`] doubling to
//!   [`MAX_BACKOFF`]) and continues after the last id it broadcast. If the entries after that id
//!   were trimmed meanwhile, subscribers get `reset`.
//! - a lazily connected [`ConnectionManager`] for resuming clients' reads (`XRANGE`, short).
//!
//! Replies are parsed from [`redis::Value`] directly, in both RESP2 (arrays) and RESP3 (maps)
//! form.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, Value};
use secrecy::ExposeSecret;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{READ_BATCH, Window};
use crate::config::RedisSettings;
use crate::events::{Demand, Event, EventId, Live};
use crate::store::StoreError;

/// How long one `XREAD` blocks waiting for new entries.
pub const BLOCK: Duration = Duration::from_secs(5);
/// First wait before reconnecting the reader.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The event stream. Cheap to clone.
#[derive(Clone)]
pub struct RedisLog {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    key: String,
    timeout: Duration,
    reads: ConnectionManager,
}

impl RedisLog {
    /// The stream of `settings` (nothing is connected yet).
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client = Client::open(settings.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let reads = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                key: format!("{}:events", settings.key_prefix),
                timeout: settings.timeout,
                reads,
            }),
        })
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The events of up to `limit` entries (at least 2) after `after` (from the oldest retained
    /// when `None`), oldest first; empty only when the log holds nothing after `after`.
    pub async fn read_after(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        // The cursor's own entry is read again (inclusive start) for the events after it there;
        // with at least two entries per read, a read that filters that entry out entirely still
        // returns the next one's events when there is one.
        let start = after
            .and_then(EventId::entry)
            .unwrap_or_else(|| "-".to_owned());
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.inner.key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(2))
            .query_async(&mut self.inner.reads.clone())
            .await?;
        let mut events = entries(&reply)?;
        if let Some(after) = after {
            events.retain(|e| e.id > after);
        }
        Ok(events)
    }

    /// The newest event's id (`None`: the log is empty).
    pub async fn newest_id(&self) -> Result<Option<EventId>, StoreError> {
        Self::newest(&mut self.inner.reads.clone(), &self.inner.key).await
    }

    /// Whether every entry after `cursor` is retained (see the module docs of [`super`]).
    pub async fn window(&self, cursor: EventId) -> Result<Window, StoreError> {
        window_on(&mut self.inner.reads.clone(), &self.inner.key, cursor).await
    }

    /// Connects the reader's own connection.
    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(BLOCK + self.inner.timeout));
        Ok(self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// The id of the newest entry's last event, `None` for an empty or missing stream.
    async fn newest(
        conn: &mut impl ConnectionLike,
        key: &str,
    ) -> Result<Option<EventId>, StoreError> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(entries(&reply)?.last().map(|e| e.id))
    }

    /// Starts the reader after the newest entry. Waits for Redis up to twice REDIS_TIMEOUT_MS to
    /// learn where the stream ends; if Redis does not answer by then, the reader starts wherever
    /// the stream ends when it first connects.
    pub(crate) async fn spawn_reader(
        &self,
        live: broadcast::Sender<Live>,
        demand: Demand,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let first = tokio::time::timeout(self.inner.timeout * 2, async {
            let mut conn = self.connect().await?;
            let newest = Self::newest(&mut conn, &self.inner.key).await?;
            Ok::<_, StoreError>((conn, newest.unwrap_or(EventId::Stream(0, 0, 0))))
        })
        .await;
        let first = match first {
            Ok(Ok(first)) => Some(first),
            Ok(Err(e)) => {
                tracing::warn!(error.message = %e, "events.reader Redis is not reachable yet; reconnecting in the background");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "events.reader Redis did not answer in time; reconnecting in the background"
                );
                None
            }
        };
        tracker.spawn(self.clone().run_reader(first, live, demand, shutdown));
    }

    async fn run_reader(
        self,
        first: Option<(redis::aio::MultiplexedConnection, EventId)>,
        live: broadcast::Sender<Live>,
        demand: Demand,
        shutdown: CancellationToken,
    ) {
        // Set after an idle spell: `last` must jump to the newest entry before the next read.
        let mut stale = false;
        let key = self.inner.key.clone();
        let (mut connection, mut last) = match first {
            Some((conn, last)) => (Some(conn), Some(last)),
            None => (None, None),
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut conn = match connection.take() {
                Some(conn) => conn,
                None => {
                    let connected = tokio::select! {
                        () = shutdown.cancelled() => return,
                        connected = self.connect() => connected,
                    };
                    let resumed = match connected {
                        Ok(mut conn) => match last {
                            // First connection: start where the stream ends now.
                            None => Self::newest(&mut conn, &key).await.map(|newest| {
                                last = Some(newest.unwrap_or(EventId::Stream(0, 0, 0)));
                                conn
                            }),
                            // Again: were entries we never read trimmed meanwhile, or is the
                            // stream not the one we read (Redis lost its data)?
                            Some(previous) => {
                                window_on(&mut conn, &key, previous).await.map(|window| {
                                    if let Window::Reset { reason } = window {
                                        tracing::warn!(last = %previous, reason, "events.reader events were lost while Redis was unreachable; clients get reset");
                                        let _ = live.send(Live::Gap { last: previous });
                                        if reason == "unknown_cursor" {
                                            // Our last id is ahead of the whole stream: read
                                            // everything it holds now.
                                            last = Some(EventId::Stream(0, 0, 0));
                                        }
                                    }
                                    conn
                                })
                            }
                        },
                        Err(e) => Err(e),
                    };
                    match resumed {
                        Ok(conn) => {
                            if backoff > MIN_BACKOFF {
                                tracing::info!("events.reader reconnected to Redis");
                            }
                            backoff = MIN_BACKOFF;
                            conn
                        }
                        Err(e) => {
                            if backoff == MIN_BACKOFF {
                                tracing::warn!(error.message = %e, "events.reader cannot reach Redis; retrying with backoff");
                            }
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    }
                }
            };
            if !stale {
                match demand.wait(&live, &shutdown).await {
                    None => return,
                    Some(idled) => stale = idled,
                }
            }
            if stale {
                match Self::newest(&mut conn, &key).await {
                    Ok(newest) => {
                        last = Some(newest.unwrap_or(EventId::Stream(0, 0, 0)));
                        stale = false;
                        demand.arm();
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "events.reader finding the end of the event stream failed; reconnecting");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(MIN_BACKOFF) => {}
                        }
                        continue;
                    }
                }
            }
            let after = last.unwrap_or(EventId::Stream(0, 0, 0));
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                read = xread(&mut conn, &key, after) => read,
            };
            match read {
                Ok(events) => {
                    for event in events {
                        last = Some(event.id);
                        // No subscriber is not an error.
                        let _ = live.send(Live::Event(Arc::new(event)));
                    }
                    connection = Some(conn);
                }
                Err(e) => {
                    tracing::warn!(error.message = %e, "events.reader reading the event stream failed; reconnecting");
                    backoff = MIN_BACKOFF * 2;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(MIN_BACKOFF) => {}
                    }
                }
            }
        }
    }
}

/// One blocking read of up to [`READ_BATCH`] entries after the entry of `after` (the reader
/// always stops at the end of an entry, so nothing of that entry is left to read).
async fn xread(
    conn: &mut impl ConnectionLike,
    key: &str,
    after: EventId,
) -> Result<Vec<Event>, StoreError> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_BATCH)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(key)
        .arg(after.entry().unwrap_or_else(|| "0-0".to_owned()))
        .query_async(conn)
        .await?;
    // Nil on timeout; else one (key, entries) pair, as an array (RESP2) or a map (RESP3).
    match &reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(pair)) if pair.len() == 2 => entries(&pair[1]),
            Some(other) => Err(unexpected("XREAD", other)),
            None => Ok(Vec::new()),
        },
        Value::Map(streams) => match streams.first() {
            Some((_, list)) => entries(list),
            None => Ok(Vec::new()),
        },
        other => Err(unexpected("XREAD", other)),
    }
}

/// Whether every event after `cursor` is retained: the cursor's own entry, the oldest and the
/// newest, read atomically.
async fn window_on(
    conn: &mut impl ConnectionLike,
    key: &str,
    cursor: EventId,
) -> Result<Window, StoreError> {
    let id = cursor.entry().unwrap_or_else(|| "0-0".to_owned());
    let (own, oldest, newest): (Value, Value, Value) = redis::pipe()
        .atomic()
        .cmd("XRANGE")
        .arg(key)
        .arg(&id)
        .arg(&id)
        .cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    if !entries(&own)?.is_empty() {
        return Ok(Window::Covered);
    }
    let oldest = entries(&oldest)?.first().map(|e| e.id);
    let newest = entries(&newest)?.last().map(|e| e.id);
    Ok(match (oldest, newest) {
        (_, Some(newest)) if cursor > newest => Window::Reset {
            reason: "unknown_cursor",
        },
        (Some(oldest), _) if cursor < oldest => Window::Reset {
            reason: "cursor_expired",
        },
        // An id between two retained entries (one a failed write removed again) is covered.
        (Some(_), Some(_)) => Window::Covered,
        // An empty stream holds nothing after any cursor but its beginning.
        _ if cursor.is_zero() => Window::Covered,
        _ => Window::Reset {
            reason: "unknown_cursor",
        },
    })
}

/// Parses `XRANGE`/`XREAD` entries, `[[id, [field, value, ...]], ...]`, into their events in
/// order: each `<type> <JSON object>` pair is one event, as is a `type <type> data <JSON>` run.
/// An entry without events (not written by the gateway) is skipped.
fn entries(reply: &Value) -> Result<Vec<Event>, StoreError> {
    let list = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(list) | Value::Set(list) => list,
        other => return Err(unexpected("XRANGE", other)),
    };
    let mut events = Vec::with_capacity(list.len());
    for entry in list {
        let Value::Array(parts) = entry else {
            return Err(unexpected("a stream entry", entry));
        };
        let (Some(id), Some(fields)) = (parts.first(), parts.get(1)) else {
            return Err(unexpected("a stream entry", entry));
        };
        let Some(EventId::Stream(ms, seq, _)) = text(id).and_then(|s| EventId::parse_stream(&s))
        else {
            return Err(unexpected("a stream entry id", id));
        };
        let pairs: Vec<(&Value, &Value)> = match fields {
            Value::Array(flat) => flat
                .chunks_exact(2)
                .map(|pair| (&pair[0], &pair[1]))
                .collect(),
            Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
            _ => Vec::new(),
        };
        let before = events.len();
        let mut index = 0;
        let mut kind = None;
        for (name, value) in pairs {
            let (Some(name), Some(value)) = (text(name), text(value)) else {
                continue;
            };
            let (kind, data) = match name.as_str() {
                "type" => {
                    kind = Some(value);
                    continue;
                }
                "data" => match kind.take() {
                    Some(kind) => (kind, value),
                    None => continue,
                },
                // Only an object is an event's data (every event the gateway writes is one); a
                // field someone else added to an entry is not an event.
                _ if value.starts_with('{') => (name, value),
                _ => continue,
            };
            events.push(Event::new(EventId::Stream(ms, seq, index), kind, data));
            index += 1;
        }
        if events.len() == before {
            tracing::warn!(event.entry = %format!("{ms}-{seq}"), "events.skipped a stream entry without events");
        }
    }
    Ok(events)
}

/// A bulk or simple string as text (lossy for invalid UTF-8).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn unexpected(what: &str, value: &Value) -> StoreError {
    let shown = format!("{value:?}");
    StoreError::Io(std::io::Error::other(format!(
        "unexpected reply for {what}: {}",
        crate::http::error::bounded(&shown)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_are_parsed_from_resp2_and_resp3_shapes() {
        // One entry as earlier builds wrote it (`type`/`data`), one packed entry of three events
        // (a type may repeat within an entry).
        let resp2 = Value::Array(vec![
            Value::Array(vec![
                bulk("1763940000000-1"),
                Value::Array(vec![
                    bulk("type"),
                    bulk("x"),
                    bulk("data"),
                    bulk("{\"a\":1}"),
                ]),
            ]),
            Value::Array(vec![
                bulk("1763940000001-0"),
                Value::Array(vec![
                    bulk("message_incoming"),
                    bulk("{\"n\":1}"),
                    bulk("message_incoming"),
                    bulk("{\"n\":2}"),
                    bulk("conversation_updated"),
                    bulk("{\"n\":3}"),
                ]),
            ]),
        ]);
        let resp3 = Value::Array(vec![
            Value::Array(vec![
                bulk("1763940000000-1"),
                Value::Map(vec![
                    (bulk("type"), bulk("x")),
                    (bulk("data"), bulk("{\"a\":1}")),
                ]),
            ]),
            Value::Array(vec![
                bulk("1763940000001-0"),
                Value::Map(vec![
                    (bulk("message_incoming"), bulk("{\"n\":1}")),
                    (bulk("message_incoming"), bulk("{\"n\":2}")),
                    (bulk("conversation_updated"), bulk("{\"n\":3}")),
                ]),
            ]),
        ]);
        for reply in [resp2, resp3] {
            let events = entries(&reply).unwrap();
            let ids: Vec<_> = events.iter().map(|e| e.id).collect();
            assert_eq!(
                ids,
                [
                    EventId::Stream(1763940000000, 1, 0),
                    EventId::Stream(1763940000001, 0, 0),
                    EventId::Stream(1763940000001, 0, 1),
                    EventId::Stream(1763940000001, 0, 2),
                ]
            );
            assert_eq!(
                events[0].envelope(),
                r#"{"id":"1763940000000-1-0","type":"x","data":{"a":1}}"#
            );
            assert_eq!(
                events[3].envelope(),
                r#"{"id":"1763940000001-0-2","type":"conversation_updated","data":{"n":3}}"#
            );
        }
        assert!(entries(&Value::Nil).unwrap().is_empty());
        assert!(entries(&Value::Int(3)).is_err());
    }

    #[test]
    fn entries_without_events_are_skipped() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("other"), bulk("x"), bulk("data"), bulk("{}")]),
        ])]);
        assert!(entries(&reply).unwrap().is_empty());
    }
}
