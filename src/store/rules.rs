//! Storage of auto-reply rules (see [`crate::rules`]) and of the engine's state, on both
//! backends.
//!
//! Model, the same on both:
//! - A **rule** is its JSON document (the service owns its shape), by id.
//! - The **cursor** is the last event of the log the engine has judged. It is absent until the
//!   engine first starts (it then starts at the log's end: rules never answer the past).
//! - **Advancing** the cursor is a compare-and-set that also takes the page's **firings** in the
//!   same atomic step: for each, the rule's once-per-period mark for the contact (when the rule
//!   has `once_per`) and the contact's hourly count of auto-replies (the loop guard). So with
//!   several instances following one log, only the one whose compare-and-set wins sends the
//!   page's replies, and a reply a mark refuses is not sent by anyone. A reply is sent after
//!   its firing is stored: an instance dying in between loses that reply, never doubles it.
//! - **Releasing** a firing removes its once-per-period mark (the send certainly failed, so the
//!   contact's next message may be answered).
//!
//! Redis keys (`<p>` = REDIS_KEY_PREFIX): `<p>:rules` (hash id → document),
//! `<p>:rules:cursor` (string), `<p>:rules:once:<rule>:<number>:<contact>` (expires after the
//! rule's period), `<p>:rules:count:<number>:<contact>` (expires an hour after its first reply).
//! SQLite (schema version 8): `auto_reply_rules`, `auto_reply_cursor`, `auto_reply_marks` (the
//! same keys with their expiry time).

use super::{Store, StoreError};

/// How long the loop guard counts a contact's auto-replies.
pub const GUARD_WINDOW_MS: i64 = 60 * 60 * 1000;

/// How [`Store::rule_put`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePut<'a> {
    /// Only when the id is free.
    Create,
    /// Only when the stored document is still `expected` (a compare-and-set: two changes at
    /// once do not lose one, and a change racing a delete does not bring the rule back).
    Replace { expected: &'a str },
    /// Whatever is stored (the rules file at start-up).
    Upsert,
}

/// A reply the engine wants to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub rule: String,
    /// The business number.
    pub number: String,
    /// The contact (digits or BSUID).
    pub contact: String,
    /// The rule's `once_per` in ms.
    pub once_ms: Option<i64>,
}

impl Firing {
    /// The once-per-period mark's key (under the prefix).
    pub fn once_key(&self) -> String {
        format!("once:{}:{}:{}", self.rule, self.number, self.contact)
    }

    /// The loop guard's key.
    pub fn count_key(&self) -> String {
        format!("count:{}:{}", self.number, self.contact)
    }
}

/// What the store decided for a [`Firing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringVerdict {
    /// Send it.
    Fire,
    /// The rule already answered this contact within its period.
    OnceTaken,
    /// The contact got AUTO_REPLY_MAX_PER_HOUR auto-replies this hour.
    LoopGuard,
}

impl Store {
    /// Stores a rule document as `how` says; `false` when its condition did not hold.
    pub async fn rule_put(
        &self,
        id: &str,
        doc: &str,
        how: RulePut<'_>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Redis(s) => s.rule_put(id, doc, how).await,
            Store::Embedded(s) => s.rule_put(id, doc, how).await,
        }
    }

    /// A rule document.
    pub async fn rule_get(&self, id: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Redis(s) => s.rule_get(id).await,
            Store::Embedded(s) => s.rule_get(id).await,
        }
    }

    /// Every rule document, by id.
    pub async fn rule_list(&self) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Store::Redis(s) => s.rule_list().await,
            Store::Embedded(s) => s.rule_list().await,
        }
    }

    /// How many rules are stored.
    pub async fn rule_count(&self) -> Result<usize, StoreError> {
        match self {
            Store::Redis(s) => s.rule_count().await,
            Store::Embedded(s) => s.rule_count().await,
        }
    }

    /// Deletes a rule (`false`: there was none).
    pub async fn rule_delete(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Redis(s) => s.rule_delete(id).await,
            Store::Embedded(s) => s.rule_delete(id).await,
        }
    }

    /// The engine's cursor (`None`: never started; `Some("")`: the log's beginning).
    pub async fn rules_cursor(&self) -> Result<Option<String>, StoreError> {
        match self {
            Store::Redis(s) => s.rules_cursor().await,
            Store::Embedded(s) => s.rules_cursor().await,
        }
    }

    /// Moves the cursor from `expected` (`None`: absent) to `next` and takes `firings` (see
    /// the module doc), at most `max_per_hour` auto-replies per contact. `None`: the cursor
    /// was not `expected` (another instance moved it), nothing was taken.
    pub async fn rules_advance(
        &self,
        expected: Option<&str>,
        next: &str,
        firings: &[Firing],
        max_per_hour: u32,
        now_ms: i64,
    ) -> Result<Option<Vec<FiringVerdict>>, StoreError> {
        match self {
            Store::Redis(s) => {
                s.rules_advance(expected, next, firings, max_per_hour, now_ms)
                    .await
            }
            Store::Embedded(s) => {
                s.rules_advance(expected, next, firings, max_per_hour, now_ms)
                    .await
            }
        }
    }

    /// Removes a firing's once-per-period mark (its reply was certainly not sent).
    pub async fn rules_release(&self, firing: &Firing) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.rules_release(firing).await,
            Store::Embedded(s) => s.rules_release(firing).await,
        }
    }
}
