//! Auto-reply rules and the engine's state on Redis (model and keys: [`crate::store::rules`]).
//! Advancing is one script call: the compare-and-set and every firing's marks, atomically.

use std::sync::LazyLock;

use redis::Script;

use super::RedisStore;
use crate::store::StoreError;
use crate::store::rules::{Firing, FiringVerdict, GUARD_WINDOW_MS, RulePut};

/// ARGV: [1] the rules hash, [2] id, [3] document, [4] mode (`create`, `replace`, `upsert`),
/// [5] the expected document (replace). Returns 1 when written.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('HGET', ARGV[1], ARGV[2])
if ARGV[4] == 'create' and current then return 0 end
if ARGV[4] == 'replace' and current ~= ARGV[5] then return 0 end
redis.call('HSET', ARGV[1], ARGV[2], ARGV[3])
return 1
",
    )
});

/// ARGV: [1] prefix, [2] `1` when a cursor is expected (`0`: absent), [3] the expected cursor,
/// [4] the next cursor, [5] most auto-replies per contact per window, [6] the window (ms),
/// then (once key, once period in ms or ``, count key) per firing. Returns nil when the cursor
/// moved, else one verdict per firing: 0 fire, 1 once taken, 2 loop guard.
static ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p = ARGV[1] .. ':rules:'
local cursor = redis.call('GET', p .. 'cursor')
if ARGV[2] == '0' then
  if cursor then return false end
elseif cursor ~= ARGV[3] then
  return false
end
redis.call('SET', p .. 'cursor', ARGV[4])
local out, max = {}, tonumber(ARGV[5])
for i = 7, #ARGV, 3 do
  local once, ms, count = p .. ARGV[i], ARGV[i + 1], p .. ARGV[i + 2]
  local verdict = 0
  if ms ~= '' and redis.call('EXISTS', once) == 1 then
    verdict = 1
  elseif tonumber(redis.call('GET', count) or '0') >= max then
    verdict = 2
  else
    if redis.call('INCR', count) == 1 then redis.call('PEXPIRE', count, ARGV[6]) end
    if ms ~= '' then redis.call('SET', once, '1', 'PX', ms) end
  end
  out[#out + 1] = verdict
end
return out
",
    )
});

impl RedisStore {
    fn rules_key(&self) -> String {
        format!("{}:rules", self.prefix())
    }

    pub(crate) async fn rule_put(
        &self,
        id: &str,
        doc: &str,
        how: RulePut<'_>,
    ) -> Result<bool, StoreError> {
        let (mode, expected) = match how {
            RulePut::Create => ("create", ""),
            RulePut::Replace { expected } => ("replace", expected),
            RulePut::Upsert => ("upsert", ""),
        };
        let n: i64 = PUT
            .prepare_invoke()
            .arg(self.rules_key())
            .arg(id)
            .arg(doc)
            .arg(mode)
            .arg(expected)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn rule_get(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("HGET")
            .arg(self.rules_key())
            .arg(id)
            .query_async(&mut self.inner.connection.clone())
            .await?)
    }

    pub(crate) async fn rule_list(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut rows: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.rules_key())
            .query_async(&mut self.inner.connection.clone())
            .await?;
        rows.sort();
        Ok(rows)
    }

    pub(crate) async fn rule_count(&self) -> Result<usize, StoreError> {
        Ok(redis::cmd("HLEN")
            .arg(self.rules_key())
            .query_async(&mut self.inner.connection.clone())
            .await?)
    }

    pub(crate) async fn rule_delete(&self, id: &str) -> Result<bool, StoreError> {
        let n: i64 = redis::cmd("HDEL")
            .arg(self.rules_key())
            .arg(id)
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn rules_cursor(&self) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("GET")
            .arg(format!("{}:rules:cursor", self.prefix()))
            .query_async(&mut self.inner.connection.clone())
            .await?)
    }

    pub(crate) async fn rules_advance(
        &self,
        expected: Option<&str>,
        next: &str,
        firings: &[Firing],
        max_per_hour: u32,
        _now_ms: i64,
    ) -> Result<Option<Vec<FiringVerdict>>, StoreError> {
        let mut call = ADVANCE.prepare_invoke();
        call.arg(self.prefix())
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(next)
            .arg(max_per_hour)
            .arg(GUARD_WINDOW_MS);
        for f in firings {
            call.arg(f.once_key())
                .arg(f.once_ms.map(|ms| ms.to_string()).unwrap_or_default())
                .arg(f.count_key());
        }
        let verdicts: Option<Vec<i64>> = call
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(verdicts.map(|v| {
            v.into_iter()
                .map(|n| match n {
                    0 => FiringVerdict::Fire,
                    1 => FiringVerdict::OnceTaken,
                    _ => FiringVerdict::LoopGuard,
                })
                .collect()
        }))
    }

    pub(crate) async fn rules_release(&self, firing: &Firing) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{}:rules:{}", self.prefix(), firing.once_key()))
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(())
    }
}
