//! Redis backend, compatible with the FastAPI original's layout:
//!
//! - `<REDIS_INBOUND_LIST>:<digits>`: list of stored message JSON, oldest first (RPUSH), exactly
//!   as the original wrote it, so data from either service is readable by both;
//! - `<REDIS_KEY_PREFIX>:seen:<wamid>`: dedupe marker, expires after [`DEDUPE_TTL_SECS`];
//! - `<REDIS_KEY_PREFIX>:conversations`: sorted set of numbers scored by their last message time.
//!
//! A webhook costs one round trip: [`SAVE_SCRIPT`] sets each marker with `SET NX EX` and, only if
//! it was new, appends and indexes, all inside one atomic script. Marker and message are written
//! together or not at all, so a failure never leaves a marker that would swallow Meta's retry.
//! The connection is a [`ConnectionManager`]: it reconnects by itself; while Redis is down calls
//! fail fast (REDIS_TIMEOUT_MS) and the webhook answers 503, so Meta retries.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use secrecy::ExposeSecret;
use serde_json::value::RawValue;

use super::{DEDUPE_TTL_SECS, SaveReport, StoreError, stored_item};
use crate::config::RedisSettings;
use crate::domain::{InboundMessage, PhoneNumber};

/// KEYS[1] = conversations zset; then per message i: KEYS[2i] = marker, KEYS[2i+1] = list.
/// ARGV[1] = marker TTL; then per message i: ARGV[3i-1] = JSON, ARGV[3i] = number, ARGV[3i+1] = ts.
/// All keys are declared in KEYS, so the script is also valid where Redis checks key access.
/// Returns the number of messages newly stored.
pub const SAVE_SCRIPT: &str = r"
local stored = 0
for i = 1, (#KEYS - 1) / 2 do
  if redis.call('SET', KEYS[2 * i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('RPUSH', KEYS[2 * i + 1], ARGV[3 * i - 1])
    redis.call('ZADD', KEYS[1], 'GT', ARGV[3 * i + 1], ARGV[3 * i])
    stored = stored + 1
  end
end
return stored
";

/// The Redis backend. Cheap to clone: the connection is shared and multiplexed.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    script: Script,
    inbound_list: String,
    key_prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("inbound_list", &self.inbound_list)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Creates the store. The connection is made lazily, so the service starts (and `/readyz`
    /// reports 503) while Redis is still coming up.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client = Client::open(settings.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            script: Script::new(SAVE_SCRIPT),
            inbound_list: settings.inbound_list.clone(),
            key_prefix: settings.key_prefix.clone(),
        })
    }

    /// The list key of a number: `<REDIS_INBOUND_LIST>:<digits>`.
    pub fn list_key(&self, number: &PhoneNumber) -> String {
        format!("{}:{}", self.inbound_list, number.as_str())
    }

    pub(super) async fn save_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> Result<SaveReport, StoreError> {
        // EVALSHA built directly into one command buffer (redis's ScriptInvocation would copy
        // every key and argument into its own Vec first). Keys go through one scratch buffer.
        let stored_json: Vec<String> = messages
            .iter()
            .map(InboundMessage::to_stored_json)
            .collect();
        let data_size = stored_json.iter().map(|j| j.len() + 96).sum::<usize>() + 128;
        let mut cmd = redis::Cmd::with_capacity(4 + 5 * messages.len(), data_size);
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(1 + 2 * messages.len());
        let mut key = Vec::with_capacity(128);
        let mut push_key = |cmd: &mut redis::Cmd, parts: &[&str]| {
            key.clear();
            for part in parts {
                key.extend_from_slice(part.as_bytes());
            }
            cmd.arg(&key[..]);
        };
        push_key(&mut cmd, &[&self.key_prefix, ":conversations"]);
        for m in messages {
            push_key(&mut cmd, &[&self.key_prefix, ":seen:", m.id.as_str()]);
            push_key(&mut cmd, &[&self.inbound_list, ":", m.from.as_str()]);
        }
        cmd.arg(DEDUPE_TTL_SECS);
        for (m, json) in messages.iter().zip(&stored_json) {
            cmd.arg(json.as_str())
                .arg(m.from.as_str())
                .arg(m.timestamp_secs());
        }
        let mut connection = self.connection.clone();
        let stored: usize = match cmd.query_async(&mut connection).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // First call after a Redis restart (scripts are not persisted): load it, retry.
                self.script
                    .prepare_invoke()
                    .load_async(&mut connection)
                    .await?;
                cmd.query_async(&mut connection).await?
            }
            result => result?,
        };
        Ok(SaveReport {
            stored,
            duplicates: messages.len() - stored,
        })
    }

    pub(super) async fn recent_messages(
        &self,
        number: &PhoneNumber,
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>, StoreError> {
        // LRANGE with a negative start takes the last `limit` items, still oldest first.
        let start = if limit == 0 {
            0
        } else {
            -(limit.min(isize::MAX as usize) as isize)
        };
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(self.list_key(number))
            .arg(start)
            .arg(-1)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(items.into_iter().map(stored_item).collect())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }
}
