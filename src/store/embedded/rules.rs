//! Auto-reply rules and the engine's state on SQLite (model: [`crate::store::rules`]): changes
//! are jobs of the writer thread, each in the group's transaction; reads use the reader pool.
//! Expired marks count as absent and are swept a few at a time by each advance.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{EmbeddedStore, Job};
use crate::store::StoreError;
use crate::store::rules::{Firing, FiringVerdict, GUARD_WINDOW_MS, RulePut};

/// Version 8: auto-reply rules.
pub(super) const MIGRATION_V8: &str = "
CREATE TABLE auto_reply_rules (
    id  TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE auto_reply_cursor (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cursor TEXT    NOT NULL
);
CREATE TABLE auto_reply_marks (
    key   TEXT    PRIMARY KEY,
    count INTEGER NOT NULL,
    until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX auto_reply_marks_until ON auto_reply_marks (until);
";

/// Expired marks removed per advance.
const SWEEP: i64 = 64;

/// A change to rules or the engine's state, done by the writer thread.
#[derive(Debug)]
pub(super) enum RuleOp {
    Put {
        id: String,
        doc: String,
        /// `None`: create only; `Some(None)`: upsert; `Some(Some(expected))`: replace.
        replace: Option<Option<String>>,
    },
    Delete {
        id: String,
    },
    Advance {
        expected: Option<String>,
        next: String,
        firings: Vec<Firing>,
        max_per_hour: u32,
        now_ms: i64,
    },
    Release {
        once_key: String,
    },
}

impl RuleOp {
    /// Rows it writes, for the writer's group size.
    pub(super) fn rows(&self) -> usize {
        match self {
            Self::Advance { firings, .. } => firings.len().max(1),
            _ => 1,
        }
    }
}

/// The writer's answer to a [`RuleOp`].
#[derive(Debug)]
pub(super) enum RuleAnswer {
    Done(bool),
    Advanced(Option<Vec<FiringVerdict>>),
}

/// Applies one change inside the group's transaction.
pub(super) fn apply(tx: &Transaction<'_>, op: &RuleOp) -> rusqlite::Result<RuleAnswer> {
    match op {
        RuleOp::Put { id, doc, replace } => {
            let n = match replace {
                None => tx
                    .prepare_cached(
                        "INSERT INTO auto_reply_rules (id, doc) VALUES (?1, ?2)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![id, doc])?,
                Some(None) => tx
                    .prepare_cached(
                        "INSERT INTO auto_reply_rules (id, doc) VALUES (?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                    )?
                    .execute(params![id, doc])?,
                Some(Some(expected)) => tx
                    .prepare_cached(
                        "UPDATE auto_reply_rules SET doc = ?2 WHERE id = ?1 AND doc = ?3",
                    )?
                    .execute(params![id, doc, expected])?,
            };
            Ok(RuleAnswer::Done(n == 1))
        }
        RuleOp::Delete { id } => {
            let n = tx
                .prepare_cached("DELETE FROM auto_reply_rules WHERE id = ?1")?
                .execute(params![id])?;
            Ok(RuleAnswer::Done(n == 1))
        }
        RuleOp::Release { once_key } => {
            tx.prepare_cached("DELETE FROM auto_reply_marks WHERE key = ?1")?
                .execute(params![once_key])?;
            Ok(RuleAnswer::Done(true))
        }
        RuleOp::Advance {
            expected,
            next,
            firings,
            max_per_hour,
            now_ms,
        } => {
            let cursor: Option<String> = tx
                .prepare_cached("SELECT cursor FROM auto_reply_cursor WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()?;
            if cursor != *expected {
                return Ok(RuleAnswer::Advanced(None));
            }
            tx.prepare_cached(
                "INSERT INTO auto_reply_cursor (id, cursor) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor",
            )?
            .execute(params![next])?;
            tx.prepare_cached(
                "DELETE FROM auto_reply_marks WHERE key IN
                 (SELECT key FROM auto_reply_marks WHERE until <= ?1 LIMIT ?2)",
            )?
            .execute(params![now_ms, SWEEP])?;
            let mut verdicts = Vec::with_capacity(firings.len());
            for f in firings {
                let live = |key: &str| -> rusqlite::Result<Option<i64>> {
                    tx.prepare_cached(
                        "SELECT count FROM auto_reply_marks WHERE key = ?1 AND until > ?2",
                    )?
                    .query_row(params![key, now_ms], |r| r.get(0))
                    .optional()
                };
                let (once, count) = (f.once_key(), f.count_key());
                let verdict = if f.once_ms.is_some() && live(&once)?.is_some() {
                    FiringVerdict::OnceTaken
                } else if live(&count)?.unwrap_or(0) >= i64::from(*max_per_hour) {
                    FiringVerdict::LoopGuard
                } else {
                    // A live count goes up; an expired or absent one starts a new window.
                    tx.prepare_cached(
                        "INSERT INTO auto_reply_marks (key, count, until) VALUES (?1, 1, ?2)
                         ON CONFLICT (key) DO UPDATE SET
                           count = CASE WHEN until > ?3 THEN count + 1 ELSE 1 END,
                           until = CASE WHEN until > ?3 THEN until ELSE ?2 END",
                    )?
                    .execute(params![
                        count,
                        now_ms + GUARD_WINDOW_MS,
                        now_ms
                    ])?;
                    if let Some(ms) = f.once_ms {
                        tx.prepare_cached(
                            "INSERT INTO auto_reply_marks (key, count, until) VALUES (?1, 1, ?2)
                             ON CONFLICT (key) DO UPDATE SET count = 1, until = excluded.until",
                        )?
                        .execute(params![once, now_ms + ms])?;
                    }
                    FiringVerdict::Fire
                };
                verdicts.push(verdict);
            }
            Ok(RuleAnswer::Advanced(Some(verdicts)))
        }
    }
}

impl EmbeddedStore {
    async fn rule_job(&self, op: RuleOp) -> Result<RuleAnswer, StoreError> {
        self.ask(|reply| Job::Rules { op, reply }).await
    }

    async fn rule_done(&self, op: RuleOp) -> Result<bool, StoreError> {
        match self.rule_job(op).await? {
            RuleAnswer::Done(done) => Ok(done),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn rule_put(
        &self,
        id: &str,
        doc: &str,
        how: RulePut<'_>,
    ) -> Result<bool, StoreError> {
        self.rule_done(RuleOp::Put {
            id: id.to_owned(),
            doc: doc.to_owned(),
            replace: match how {
                RulePut::Create => None,
                RulePut::Upsert => Some(None),
                RulePut::Replace { expected } => Some(Some(expected.to_owned())),
            },
        })
        .await
    }

    pub(crate) async fn rule_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.rule_done(RuleOp::Delete { id: id.to_owned() }).await
    }

    pub(crate) async fn rules_release(&self, firing: &Firing) -> Result<(), StoreError> {
        self.rule_done(RuleOp::Release {
            once_key: firing.once_key(),
        })
        .await
        .map(drop)
    }

    pub(crate) async fn rules_advance(
        &self,
        expected: Option<&str>,
        next: &str,
        firings: &[Firing],
        max_per_hour: u32,
        now_ms: i64,
    ) -> Result<Option<Vec<FiringVerdict>>, StoreError> {
        match self
            .rule_job(RuleOp::Advance {
                expected: expected.map(str::to_owned),
                next: next.to_owned(),
                firings: firings.to_vec(),
                max_per_hour,
                now_ms,
            })
            .await?
        {
            RuleAnswer::Advanced(verdicts) => Ok(verdicts),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn rule_get(&self, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT doc FROM auto_reply_rules WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()
        })
        .await
    }

    pub(crate) async fn rule_list(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id, doc FROM auto_reply_rules ORDER BY id")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await
    }

    pub(crate) async fn rule_count(&self) -> Result<usize, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT count(*) FROM auto_reply_rules")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as usize)
        })
        .await
    }

    pub(crate) async fn rules_cursor(&self) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT cursor FROM auto_reply_cursor WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()
        })
        .await
    }
}

fn mismatched(answer: RuleAnswer) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "internal error: mismatched answer {answer:?}"
    )))
}
