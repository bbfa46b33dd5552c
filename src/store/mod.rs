//! Message storage: one [`Store`] with two backends that pass the same contract tests
//! (`tests/api/store_contract.rs`).
//!
//! - [`redis::RedisStore`] when REDIS_URL is set: the FastAPI original's key layout, one Lua script
//!   (one round trip) per webhook that dedupes, appends and indexes atomically.
//! - [`embedded::EmbeddedStore`] otherwise: SQLite under DATA_DIR with group commit.
//!
//! Invariants both keep: a batch is stored entirely or not at all; a message id already stored is
//! never stored again (markers live at least 8 days, past Meta's 7-day retry horizon); a failed
//! store leaves no marker, so Meta's retry is stored, not dropped as a duplicate.
//!
//! `Store` is an enum rather than a `dyn` trait: there are exactly two backends, static dispatch
//! needs no boxing of async methods, and adding a method makes the compiler list both backends.

pub mod embedded;
pub mod redis;

use serde_json::value::RawValue;

use crate::domain::{InboundMessage, PhoneNumber};

/// How long a dedupe marker is kept: 8 days, past Meta's 7-day retry horizon.
pub const DEDUPE_TTL_SECS: u64 = 8 * 24 * 60 * 60;

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveReport {
    /// Messages newly stored.
    pub stored: usize,
    /// Messages already stored earlier (Meta retries), not stored again.
    pub duplicates: usize,
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
}

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Store {
    Redis(redis::RedisStore),
    Embedded(embedded::EmbeddedStore),
}

impl Store {
    /// Backend name for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Embedded(_) => "embedded",
        }
    }

    /// Stores a webhook's messages atomically, skipping ids already stored.
    pub async fn save_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> Result<SaveReport, StoreError> {
        if messages.is_empty() {
            return Ok(SaveReport::default());
        }
        match self {
            Self::Redis(s) => s.save_inbound(messages).await,
            Self::Embedded(s) => s.save_inbound(messages).await,
        }
    }

    /// The most recent `limit` messages of `number` (all when `limit` is 0), oldest first, each as
    /// its stored JSON.
    pub async fn recent_messages(
        &self,
        number: &PhoneNumber,
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>, StoreError> {
        match self {
            Self::Redis(s) => s.recent_messages(number, limit).await,
            Self::Embedded(s) => s.recent_messages(number, limit).await,
        }
    }

    /// Save requests waiting in process for the backend (the embedded writer queue); Redis
    /// requests are pipelined on the connection and not queued here.
    pub fn queue_depth(&self) -> usize {
        match self {
            Self::Redis(_) => 0,
            Self::Embedded(s) => s.queue_depth(),
        }
    }

    /// Checks the backend answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Redis(s) => s.ping().await,
            Self::Embedded(s) => s.ping().await,
        }
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
