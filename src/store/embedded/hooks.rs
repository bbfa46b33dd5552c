//! Outgoing webhooks on SQLite (model: [`crate::store::hooks`]): changes are jobs of the writer
//! thread, each in the group's transaction; reads use the reader pool. A lane's head is its
//! oldest delivery that is not dead (`seq` order); only heads are claimed.
//!
//! Only a lane's head has a due time; the deliveries behind it wait with `due_at` =
//! [`FOLLOWER`] (as only heads are in Redis's due set), and become due when the head leaves the
//! lane (delivered or dead). A claim then reads the due heads through the `due_at` index and
//! stops after `limit` of them, whatever the backlog behind them; before, every waiting
//! delivery was due and a claim stepped over the whole backlog. Deliveries written by earlier
//! releases (followers with a time) stay correct: a claim also checks that a row is its lane's
//! head. A subscription's attempt log is trimmed to [`LOG_KEPT`] after a random one in
//! [`TRIM_ONE_IN`] of its attempts rather than after each (a trim steps over the kept attempts);
//! reads never show more than [`LOG_KEPT`].

use rusqlite::{OptionalExtension, Transaction, params};

use super::{EmbeddedStore, Job};
use crate::store::StoreError;
use crate::store::hooks::{
    Backlog, BusyLanes, Claimed, Completed, Completion, ConfigChange, DEAD_KEPT, Enqueue, HookRow,
    HookUpdate, LOG_KEPT, NewDelivery, Verdict,
};

/// `due_at` of a delivery waiting behind its lane's head (never due by time).
const FOLLOWER: i64 = i64::MAX;
/// Whether a subscription (?1) has deliveries waiting in a lane (?2).
const LANE_OCCUPIED: &str = "SELECT EXISTS (SELECT 1 FROM webhook_deliveries
                             WHERE subscription = ?1 AND lane = ?2 AND dead_at IS NULL)";
/// A subscription's attempt log is trimmed after one in this many of its attempts, at random
/// (attempt ids are shared by all subscriptions, so they cannot pick the attempts): it holds
/// [`LOG_KEPT`] + 32 attempts on average, and more than [`LOG_KEPT`] + 300 with a chance under
/// one in 100.
const TRIM_ONE_IN: u8 = 64;

/// Whether this attempt trims its subscription's log (see [`TRIM_ONE_IN`]).
fn trim_now() -> bool {
    let mut byte = [0u8; 1];
    getrandom::fill(&mut byte).is_err() || byte[0] % TRIM_ONE_IN == 0
}

/// Version 7: outgoing webhooks.
pub(super) const MIGRATION_V7: &str = "
CREATE TABLE webhook_subscriptions (
    id              TEXT    PRIMARY KEY,
    config          TEXT    NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    failing_since   INTEGER,
    cursor          TEXT
) WITHOUT ROWID;
CREATE TABLE webhook_deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    lane         TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL,
    dead_at      INTEGER,
    UNIQUE (subscription, event_id)
);
CREATE INDEX webhook_deliveries_lane ON webhook_deliveries (subscription, lane, seq)
    WHERE dead_at IS NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_at) WHERE dead_at IS NULL;
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (subscription, dead_at)
    WHERE dead_at IS NOT NULL;
CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT    NOT NULL,
    attempt      TEXT    NOT NULL
);
CREATE INDEX webhook_attempts_by_subscription ON webhook_attempts (subscription, id);
";

/// A change to outgoing webhooks, done by the writer thread.
#[derive(Debug)]
pub(super) enum HookOp {
    Put {
        row: HookRow,
        create_only: bool,
    },
    Update {
        id: String,
        /// (from, to): see [`ConfigChange`].
        config: Option<(String, String)>,
        enabled: Option<(bool, String)>,
    },
    Delete {
        id: String,
    },
    Enqueue {
        id: String,
        how: Enqueue,
        deliveries: Vec<NewDelivery>,
        now_ms: i64,
    },
    Claim {
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    },
    Complete(Box<Completion>),
}

impl HookOp {
    /// Rows it writes, for the writer's group size.
    pub(super) fn rows(&self) -> usize {
        match self {
            Self::Enqueue { deliveries, .. } => deliveries.len().max(1),
            Self::Claim { limit, .. } => (*limit).max(1),
            _ => 1,
        }
    }
}

/// The writer's answer to a [`HookOp`].
#[derive(Debug)]
pub(super) enum HookAnswer {
    Done(bool),
    Updated(HookUpdate),
    Enqueued(Option<usize>),
    Claimed(Vec<Claimed>, Option<i64>),
    Completed(Completed),
}

/// Applies one change inside the group's transaction.
pub(super) fn apply(tx: &Transaction<'_>, op: &HookOp) -> rusqlite::Result<HookAnswer> {
    match op {
        HookOp::Put { row, create_only } => {
            let exists = exists(tx, &row.id)?;
            if exists && *create_only {
                return Ok(HookAnswer::Done(false));
            }
            if exists {
                tx.prepare_cached("UPDATE webhook_subscriptions SET config = ?2 WHERE id = ?1")?
                    .execute(params![row.id, row.config])?;
            } else {
                tx.prepare_cached(
                    "INSERT INTO webhook_subscriptions (id, config, enabled, cursor)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![row.id, row.config, row.enabled, row.cursor])?;
            }
            Ok(HookAnswer::Done(true))
        }
        HookOp::Update {
            id,
            config,
            enabled,
        } => {
            if let Some((from, to)) = config {
                let stored: Option<String> = tx
                    .prepare_cached("SELECT config FROM webhook_subscriptions WHERE id = ?1")?
                    .query_row(params![id], |r| r.get(0))
                    .optional()?;
                match stored {
                    None => return Ok(HookAnswer::Updated(HookUpdate::Missing)),
                    Some(stored) if stored != *from => {
                        return Ok(HookAnswer::Updated(HookUpdate::Changed));
                    }
                    Some(_) => {}
                }
                tx.prepare_cached("UPDATE webhook_subscriptions SET config = ?2 WHERE id = ?1")?
                    .execute(params![id, to])?;
            } else if !exists(tx, id)? {
                return Ok(HookAnswer::Updated(HookUpdate::Missing));
            }
            match enabled {
                Some((true, _)) => {
                    // Deliveries disabled by a completion were made due then (as Redis parks
                    // them); claimed ones keep their lease.
                    tx.prepare_cached(
                        "UPDATE webhook_subscriptions
                         SET enabled = 1, disabled_reason = NULL, failing_since = NULL
                         WHERE id = ?1 AND enabled = 0",
                    )?
                    .execute(params![id])?;
                }
                Some((false, reason)) => {
                    tx.prepare_cached(
                        "UPDATE webhook_subscriptions SET enabled = 0, disabled_reason = ?2
                         WHERE id = ?1 AND enabled = 1",
                    )?
                    .execute(params![id, reason])?;
                }
                None => {}
            }
            Ok(HookAnswer::Updated(HookUpdate::Applied))
        }
        HookOp::Delete { id } => {
            tx.prepare_cached("DELETE FROM webhook_deliveries WHERE subscription = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("DELETE FROM webhook_attempts WHERE subscription = ?1")?
                .execute(params![id])?;
            let n = tx
                .prepare_cached("DELETE FROM webhook_subscriptions WHERE id = ?1")?
                .execute(params![id])?;
            Ok(HookAnswer::Done(n > 0))
        }
        HookOp::Enqueue {
            id,
            how,
            deliveries,
            now_ms,
        } => enqueue(tx, id, how, deliveries, *now_ms).map(HookAnswer::Enqueued),
        HookOp::Claim {
            now_ms,
            lease_ms,
            limit,
        } => claim(tx, *now_ms, *lease_ms, *limit).map(|(c, n)| HookAnswer::Claimed(c, n)),
        HookOp::Complete(c) => complete(tx, c).map(HookAnswer::Completed),
    }
}

fn exists(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM webhook_subscriptions WHERE id = ?1")?
        .query_row(params![id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn enqueue(
    tx: &Transaction<'_>,
    id: &str,
    how: &Enqueue,
    given: &[NewDelivery],
    now_ms: i64,
) -> rusqlite::Result<Option<usize>> {
    if !exists(tx, id)? {
        return Ok(None);
    }
    let revived;
    let mut failed: &[String] = &[];
    let mut claimed_until = now_ms;
    let deliveries = match how {
        Enqueue::FromLog {
            expected,
            next,
            direct,
        } => {
            let moved = tx
                .prepare_cached(
                    "UPDATE webhook_subscriptions SET cursor = ?3 WHERE id = ?1 AND cursor IS ?2",
                )?
                .execute(params![id, expected, next])?;
            if moved == 0 {
                return Ok(None);
            }
            if !direct.delivered.is_empty() {
                let mut log = tx.prepare_cached(
                    "INSERT INTO webhook_attempts (subscription, attempt) VALUES (?1, ?2)",
                )?;
                for attempt in &direct.delivered {
                    log.execute(params![id, attempt])?;
                }
                // A trim chance per attempt, as in `complete`.
                if direct.delivered.iter().any(|_| trim_now()) {
                    trim_log(tx, id)?;
                }
                tx.prepare_cached(
                    "UPDATE webhook_subscriptions SET failing_since = NULL
                     WHERE id = ?1 AND failing_since IS NOT NULL",
                )?
                .execute(params![id])?;
            }
            let enabled: bool = tx
                .prepare_cached("SELECT enabled FROM webhook_subscriptions WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))?;
            if !enabled && !direct.read_enabled {
                // A disabled subscription collects no events; its cursor follows the log.
                return Ok(Some(0));
            }
            failed = &direct.failed;
            claimed_until = direct.claimed_until;
            given
        }
        Enqueue::Replay => given,
        Enqueue::DeadLetters { limit } => {
            let mut stmt = tx.prepare_cached(
                "SELECT event_id, lane, body FROM webhook_deliveries
                 WHERE subscription = ?1 AND dead_at IS NOT NULL
                 ORDER BY dead_at, seq LIMIT ?2",
            )?;
            revived = stmt
                .query_map(params![id, *limit as i64], |r| {
                    Ok(NewDelivery {
                        event_id: r.get(0)?,
                        lane: r.get(1)?,
                        body: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            &revived
        }
    };
    let mut drop_dead = tx.prepare_cached(
        "DELETE FROM webhook_deliveries
         WHERE subscription = ?1 AND event_id = ?2 AND dead_at IS NOT NULL",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (subscription, event_id, lane, body, due_at)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (subscription, event_id) DO NOTHING",
    )?;
    let mut occupied = tx.prepare_cached(LANE_OCCUPIED)?;
    let mut n = 0;
    for d in deliveries {
        drop_dead.execute(params![id, d.event_id])?;
        // Appended to its lane (`seq` grows): its head when the lane is empty.
        let behind: bool = occupied.query_row(params![id, d.lane], |r| r.get(0))?;
        let due = if behind {
            FOLLOWER
        } else if failed.contains(&d.event_id) {
            // A failed direct attempt is claimed: its completion follows.
            claimed_until
        } else {
            now_ms
        };
        n += insert.execute(params![id, d.event_id, d.lane, d.body, due])?;
    }
    Ok(Some(n))
}

/// Keeps a subscription's newest [`LOG_KEPT`] attempts.
fn trim_log(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "DELETE FROM webhook_attempts WHERE subscription = ?1 AND id <=
             (SELECT id FROM webhook_attempts WHERE subscription = ?1
              ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![id, LOG_KEPT as i64])?;
    Ok(())
}

fn claim(
    tx: &Transaction<'_>,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<Claimed>, Option<i64>)> {
    let token = now_ms + lease_ms;
    let claimed = {
        let mut stmt = tx.prepare_cached(
            // The head check is for deliveries of earlier releases (every one had a due time).
            "SELECT d.seq, d.subscription, d.event_id, d.body, d.attempts
             FROM webhook_deliveries d
             JOIN webhook_subscriptions s ON s.id = d.subscription AND s.enabled = 1
             WHERE d.dead_at IS NULL AND d.due_at <= ?1
               AND d.seq = (SELECT min(e.seq) FROM webhook_deliveries e
                            WHERE e.subscription = d.subscription AND e.lane = d.lane
                              AND e.dead_at IS NULL)
             ORDER BY d.due_at LIMIT ?2",
        )?;
        stmt.query_map(params![now_ms, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Claimed {
                    subscription: r.get(1)?,
                    event_id: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get::<_, i64>(4)?.max(0) as u32,
                    token,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut lease =
        tx.prepare_cached("UPDATE webhook_deliveries SET due_at = ?2 WHERE seq = ?1")?;
    for (seq, _) in &claimed {
        lease.execute(params![seq, token])?;
    }
    let next: Option<i64> = tx
        .prepare_cached(
            "SELECT min(due_at) FROM webhook_deliveries
             WHERE dead_at IS NULL AND due_at > ?1 AND due_at < ?2",
        )?
        .query_row(params![now_ms, FOLLOWER], |r| r.get(0))?;
    // Heads that are due but were not claimed (past the limit) are due now.
    let next = if claimed.len() == limit {
        Some(now_ms)
    } else {
        next
    };
    Ok((claimed.into_iter().map(|(_, c)| c).collect(), next))
}

fn complete(tx: &Transaction<'_>, c: &Completion) -> rusqlite::Result<Completed> {
    let sub = &c.claimed.subscription;
    let row: Option<(i64, i64, String)> = tx
        .prepare_cached(
            "SELECT seq, due_at, lane FROM webhook_deliveries
             WHERE subscription = ?1 AND event_id = ?2 AND dead_at IS NULL",
        )?
        .query_row(params![sub, c.claimed.event_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((seq, _, lane)) = row.filter(|(_, due_at, _)| *due_at == c.claimed.token) else {
        return Ok(Completed::Stale);
    };
    tx.prepare_cached("INSERT INTO webhook_attempts (subscription, attempt) VALUES (?1, ?2)")?
        .execute(params![sub, c.log])?;
    if trim_now() {
        trim_log(tx, sub)?;
    }
    let (enabled, failing_since): (bool, Option<i64>) = tx
        .prepare_cached("SELECT enabled, failing_since FROM webhook_subscriptions WHERE id = ?1")?
        .query_row(params![sub], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut disable = false;
    if matches!(c.verdict, Verdict::Retry { .. } | Verdict::Dead) {
        match failing_since {
            None => {
                tx.prepare_cached(
                    "UPDATE webhook_subscriptions SET failing_since = ?2 WHERE id = ?1",
                )?
                .execute(params![sub, c.now_ms / 1000])?;
            }
            Some(since) => disable = enabled && c.now_ms - (since + 1) * 1000 >= c.disable_after_ms,
        }
    }
    if c.verdict == Verdict::Gone && enabled {
        disable = true;
    }
    match c.verdict {
        Verdict::Delivered => {
            tx.prepare_cached("DELETE FROM webhook_deliveries WHERE seq = ?1")?
                .execute(params![seq])?;
            if failing_since.is_some() {
                tx.prepare_cached(
                    "UPDATE webhook_subscriptions SET failing_since = NULL WHERE id = ?1",
                )?
                .execute(params![sub])?;
            }
        }
        Verdict::Retry { at_ms } => {
            // Disabled by this failure: due as soon as the subscription is enabled again.
            let at = if disable { c.now_ms } else { at_ms };
            tx.prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, due_at = ?2 WHERE seq = ?1",
            )?
            .execute(params![seq, at])?;
        }
        Verdict::Gone => {
            tx.prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, due_at = ?2 WHERE seq = ?1",
            )?
            .execute(params![seq, c.now_ms])?;
        }
        Verdict::Dead => {
            tx.prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, dead_at = ?2 WHERE seq = ?1",
            )?
            .execute(params![seq, c.now_ms])?;
            tx.prepare_cached(
                "DELETE FROM webhook_deliveries WHERE seq IN (
                     SELECT seq FROM webhook_deliveries
                     WHERE subscription = ?1 AND dead_at IS NOT NULL
                     ORDER BY dead_at DESC, seq DESC LIMIT -1 OFFSET ?2)",
            )?
            .execute(params![sub, DEAD_KEPT as i64])?;
        }
    }
    if matches!(c.verdict, Verdict::Delivered | Verdict::Dead) {
        // It left its lane: the next delivery there is the head now, due at once.
        tx.prepare_cached(
            "UPDATE webhook_deliveries SET due_at = ?3
             WHERE seq = (SELECT min(seq) FROM webhook_deliveries
                          WHERE subscription = ?1 AND lane = ?2 AND dead_at IS NULL)
               AND due_at = ?4",
        )?
        .execute(params![sub, lane, c.now_ms, FOLLOWER])?;
    }
    if disable {
        tx.prepare_cached(
            "UPDATE webhook_subscriptions SET enabled = 0, disabled_reason = ?2 WHERE id = ?1",
        )?
        .execute(params![sub, c.disabled_reason])?;
        tx.prepare_cached("INSERT INTO events (type, data) VALUES ('webhook_disabled', ?1)")?
            .execute(params![c.disabled_event])?;
        return Ok(Completed::Disabled);
    }
    Ok(Completed::Applied)
}

impl EmbeddedStore {
    async fn hook_job(&self, op: HookOp) -> Result<HookAnswer, StoreError> {
        self.ask(|reply| Job::Hooks { op, reply }).await
    }

    pub(crate) async fn hook_put(
        &self,
        row: &HookRow,
        create_only: bool,
    ) -> Result<bool, StoreError> {
        match self
            .hook_job(HookOp::Put {
                row: row.clone(),
                create_only,
            })
            .await?
        {
            HookAnswer::Done(done) => Ok(done),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn hook_update(
        &self,
        id: &str,
        config: Option<ConfigChange<'_>>,
        enabled: Option<(bool, &str)>,
        _now_ms: i64,
    ) -> Result<HookUpdate, StoreError> {
        match self
            .hook_job(HookOp::Update {
                id: id.to_owned(),
                config: config.map(|c| (c.from.to_owned(), c.to.to_owned())),
                enabled: enabled.map(|(e, r)| (e, r.to_owned())),
            })
            .await?
        {
            HookAnswer::Updated(updated) => Ok(updated),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn hook_delete(&self, id: &str) -> Result<bool, StoreError> {
        match self.hook_job(HookOp::Delete { id: id.to_owned() }).await? {
            HookAnswer::Done(done) => Ok(done),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn hook_enqueue(
        &self,
        id: &str,
        how: &Enqueue,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<Option<usize>, StoreError> {
        match self
            .hook_job(HookOp::Enqueue {
                id: id.to_owned(),
                how: how.clone(),
                deliveries: deliveries.to_vec(),
                now_ms,
            })
            .await?
        {
            HookAnswer::Enqueued(n) => Ok(n),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn hook_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<(Vec<Claimed>, Option<i64>), StoreError> {
        match self
            .hook_job(HookOp::Claim {
                now_ms,
                lease_ms,
                limit: limit.max(1),
            })
            .await?
        {
            HookAnswer::Claimed(c, next) => Ok((c, next)),
            other => Err(mismatched(other)),
        }
    }

    pub(crate) async fn hook_complete(&self, c: &Completion) -> Result<Completed, StoreError> {
        match self.hook_job(HookOp::Complete(Box::new(c.clone()))).await? {
            HookAnswer::Completed(done) => Ok(done),
            other => Err(mismatched(other)),
        }
    }

    /// The busy ones of `lanes` (see [`crate::store::Store::hook_busy_lanes`]); no lease: one
    /// instance per DATA_DIR. One point read per lane, whatever the backlog.
    pub(crate) async fn hook_busy_lanes(
        &self,
        id: &str,
        lanes: &[&str],
    ) -> Result<Option<BusyLanes>, StoreError> {
        let id = id.to_owned();
        let lanes: Vec<String> = lanes.iter().map(|l| (*l).to_owned()).collect();
        self.read(move |conn| {
            let Some(cursor) = conn
                .prepare_cached("SELECT cursor FROM webhook_subscriptions WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, Option<String>>(0))
                .optional()?
            else {
                return Ok(None);
            };
            let mut occupied = conn.prepare_cached(LANE_OCCUPIED)?;
            let mut busy = Vec::new();
            for lane in lanes {
                if occupied.query_row(params![id, lane], |r| r.get::<_, bool>(0))? {
                    busy.push(lane);
                }
            }
            Ok(Some(BusyLanes { cursor, busy }))
        })
        .await
    }

    pub(crate) async fn hook_list(&self) -> Result<Vec<HookRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, config, enabled, disabled_reason, failing_since, cursor
                 FROM webhook_subscriptions ORDER BY id",
            )?;
            stmt.query_map([], hook_row)?.collect()
        })
        .await
    }

    pub(crate) async fn hook_get(&self, id: &str) -> Result<Option<HookRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, config, enabled, disabled_reason, failing_since, cursor
                 FROM webhook_subscriptions WHERE id = ?1",
            )?
            .query_row(params![id], hook_row)
            .optional()
        })
        .await
    }

    pub(crate) async fn hook_attempts(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT attempt FROM webhook_attempts WHERE subscription = ?1
                 ORDER BY id DESC LIMIT ?2",
            )?;
            stmt.query_map(params![id, limit as i64], |r| r.get(0))?
                .collect()
        })
        .await
    }

    pub(crate) async fn hook_backlog(&self, id: &str) -> Result<Backlog, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT count(*) FILTER (WHERE dead_at IS NULL), count(*) FILTER (WHERE dead_at IS NOT NULL)
                 FROM webhook_deliveries WHERE subscription = ?1",
            )?
            .query_row(params![id], |r| {
                Ok(Backlog {
                    pending: r.get::<_, i64>(0)?.max(0) as u64,
                    dead: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })
        })
        .await
    }
}

/// A subscription row (`id, config, enabled, disabled_reason, failing_since, cursor`).
fn hook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HookRow> {
    Ok(HookRow {
        id: r.get(0)?,
        config: r.get(1)?,
        enabled: r.get(2)?,
        disabled_reason: r.get(3)?,
        failing_since: r.get(4)?,
        cursor: r.get(5)?,
    })
}

fn mismatched(answer: HookAnswer) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "internal error: mismatched answer {answer:?}"
    )))
}
