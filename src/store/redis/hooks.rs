//! Outgoing webhooks on Redis (model and keys: [`crate::store::hooks`]): every change is one
//! script call, so a claim, a completion or an enqueue is atomic and one round trip. The
//! dispatch lease is a key with an expiry (`SET ... PX`), taken and renewed by the script that
//! reads the busy lanes.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::RedisStore;
use crate::store::StoreError;
use crate::store::hooks::{
    Backlog, BusyLanes, Claimed, Completed, Completion, ConfigChange, DEAD_KEPT, Direct,
    DispatchLease, Enqueue, HookRow, HookUpdate, LOG_KEPT, NewDelivery, Verdict,
};

/// ARGV: [1] prefix, [2] id, [3] config, [4] `1` create only, [5] enabled and [6] cursor on
/// creation (both kept when the subscription exists).
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = ARGV[1] .. ':hook:' .. ARGV[2]
if redis.call('EXISTS', h) == 1 then
  if ARGV[4] == '1' then return 0 end
  redis.call('HSET', h, 'config', ARGV[3])
  return 1
end
redis.call('HSET', h, 'config', ARGV[3], 'enabled', ARGV[5], 'cursor', ARGV[6])
redis.call('SADD', ARGV[1] .. ':hooks', ARGV[2])
return 1
",
    )
});

/// ARGV: [1] prefix, [2] id, [3] config (`` = keep), [4] enabled (`1`, `0`, `` = keep), [5]
/// reason of a disable, [6] now (ms), [7] the config [3] was made from. Returns 1 applied, 0 no
/// such subscription, -1 its config is no longer [7] (nothing done).
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id = ARGV[1], ARGV[2]
local h = p .. ':hook:' .. id
if redis.call('EXISTS', h) == 0 then return 0 end
if ARGV[3] ~= '' then
  if redis.call('HGET', h, 'config') ~= ARGV[7] then return -1 end
  redis.call('HSET', h, 'config', ARGV[3])
end
if ARGV[4] == '1' and redis.call('HGET', h, 'enabled') ~= '1' then
  redis.call('HSET', h, 'enabled', '1')
  redis.call('HDEL', h, 'disabled_reason', 'failing_since')
  for _, ev in ipairs(redis.call('SMEMBERS', h .. ':parked')) do
    redis.call('ZADD', p .. ':hooks:due', ARGV[6], id .. ' ' .. ev)
  end
  redis.call('DEL', h .. ':parked')
elseif ARGV[4] == '0' and redis.call('HGET', h, 'enabled') ~= '0' then
  redis.call('HSET', h, 'enabled', '0', 'disabled_reason', ARGV[5])
end
return 1
",
    )
});

/// ARGV: [1] prefix, [2] id.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id = ARGV[1], ARGV[2]
local h = p .. ':hook:' .. id
if redis.call('EXISTS', h) == 0 then return 0 end
for _, ev in ipairs(redis.call('HKEYS', h .. ':meta')) do
  redis.call('ZREM', p .. ':hooks:due', id .. ' ' .. ev)
end
for _, lane in ipairs(redis.call('SMEMBERS', h .. ':lanes')) do
  redis.call('DEL', h .. ':lane:' .. lane)
end
redis.call('DEL', h, h .. ':lanes', h .. ':body', h .. ':meta', h .. ':parked', h .. ':dead', h .. ':log',
  h .. ':dispatcher')
redis.call('SREM', p .. ':hooks', id)
return 1
",
    )
});

/// ARGV: [1] prefix, [2] id, [3] holder, [4] lease (ms), then lanes. Returns `{cursor, busy
/// lanes...}`, or nil when another holder has the lease or the subscription is gone.
static BUSY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = ARGV[1] .. ':hook:' .. ARGV[2]
if redis.call('EXISTS', h) == 0 then return false end
local held = redis.call('GET', h .. ':dispatcher')
if held and held ~= ARGV[3] then return false end
redis.call('SET', h .. ':dispatcher', ARGV[3], 'PX', ARGV[4])
local busy = {redis.call('HGET', h, 'cursor') or ''}
for i = 5, #ARGV do
  if redis.call('SISMEMBER', h .. ':lanes', ARGV[i]) == 1 then busy[#busy + 1] = ARGV[i] end
end
return busy
",
    )
});

/// ARGV: [1] prefix, [2] id, [3] holder.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local k = ARGV[1] .. ':hook:' .. ARGV[2] .. ':dispatcher'
if redis.call('GET', k) == ARGV[3] then redis.call('DEL', k) end
return 1
",
    )
});

/// ARGV: [1] prefix, [2] id, [3] mode (`log`, `replay`, `dead`), [4] expected cursor (`` =
/// none), [5] next cursor, [6] now (ms), [7] dead limit, [8] claimed until (ms), [9] log kept,
/// [10] count F of failed direct attempts, [11] count D of delivered ones, [12] `1`: keep them
/// when disabled (read while enabled), then F event ids, D attempt logs, (event id, lane, body)
/// triples. Returns the number enqueued, or -1 (no such
/// subscription) / -2 (the cursor moved).
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id, mode = ARGV[1], ARGV[2], ARGV[3]
local h = p .. ':hook:' .. id
if redis.call('EXISTS', h) == 0 then return -1 end
if mode == 'log' and (redis.call('HGET', h, 'cursor') or '') ~= ARGV[4] then return -2 end
local enabled = redis.call('HGET', h, 'enabled') == '1'
local nf, nd = tonumber(ARGV[10]), tonumber(ARGV[11])
local failed = {}
for i = 13, 12 + nf do failed[ARGV[i]] = true end
if nd > 0 then
  for i = 13 + nf, 12 + nf + nd do redis.call('LPUSH', h .. ':log', ARGV[i]) end
  redis.call('LTRIM', h .. ':log', 0, tonumber(ARGV[9]) - 1)
  redis.call('HDEL', h, 'failing_since')
end
local items = {}
if mode == 'log' and not enabled and ARGV[12] ~= '1' then
  -- A disabled subscription collects no events; its cursor follows the log.
elseif mode == 'dead' then
  local dead = redis.call('ZRANGE', h .. ':dead', 0, tonumber(ARGV[7]) - 1)
  for _, ev in ipairs(dead) do
    local meta = redis.call('HGET', h .. ':meta', ev)
    local body = redis.call('HGET', h .. ':body', ev)
    redis.call('ZREM', h .. ':dead', ev)
    redis.call('HDEL', h .. ':meta', ev)
    redis.call('HDEL', h .. ':body', ev)
    if meta and body then
      items[#items + 1] = {ev, string.match(meta, '^%d+ (.*)$') or '', body}
    end
  end
else
  for i = 13 + nf + nd, #ARGV, 3 do items[#items + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2]} end
end
local n = 0
for _, it in ipairs(items) do
  local ev, lane, body = it[1], it[2], it[3]
  if redis.call('ZSCORE', h .. ':dead', ev) then
    redis.call('ZREM', h .. ':dead', ev)
    redis.call('HDEL', h .. ':body', ev)
    redis.call('HDEL', h .. ':meta', ev)
  end
  if redis.call('HSETNX', h .. ':body', ev, body) == 1 then
    redis.call('HSET', h .. ':meta', ev, '0 ' .. lane)
    redis.call('SADD', h .. ':lanes', lane)
    if redis.call('RPUSH', h .. ':lane:' .. lane, ev) == 1 then
      if enabled then
        -- A failed direct attempt is claimed: its completion follows.
        local at = ARGV[6]
        if failed[ev] then at = ARGV[8] end
        redis.call('ZADD', p .. ':hooks:due', at, id .. ' ' .. ev)
      else
        redis.call('SADD', h .. ':parked', ev)
      end
    end
    n = n + 1
  end
end
if mode == 'log' then redis.call('HSET', h, 'cursor', ARGV[5]) end
return n
",
    )
});

/// ARGV: [1] prefix, [2] now (ms), [3] lease end (ms), [4] limit. Returns `{next due or '',
/// then (id, event id, body, attempts) per claim}`.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, now, untl, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local due = p .. ':hooks:due'
local out = {''}
local found, rounds = 0, 0
while found < limit and rounds < 4 do
  rounds = rounds + 1
  local members = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit - found)
  if #members == 0 then break end
  for _, m in ipairs(members) do
    local sp = string.find(m, ' ', 1, true)
    local id, ev = string.sub(m, 1, sp - 1), string.sub(m, sp + 1)
    local h = p .. ':hook:' .. id
    local enabled = redis.call('HGET', h, 'enabled')
    local meta = redis.call('HGET', h .. ':meta', ev)
    local body = redis.call('HGET', h .. ':body', ev)
    if enabled == '1' and meta and body then
      redis.call('ZADD', due, untl, m)
      out[#out + 1] = id
      out[#out + 1] = ev
      out[#out + 1] = body
      out[#out + 1] = string.match(meta, '^(%d+)')
      found = found + 1
    else
      redis.call('ZREM', due, m)
      if enabled == '0' and meta then redis.call('SADD', h .. ':parked', ev) end
    end
  end
end
local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
if first[2] then out[1] = first[2] end
return out
",
    )
});

/// KEYS[1] the event stream. ARGV: [1] prefix, [2] id, [3] event id, [4] token, [5] verdict
/// (`delivered`, `retry`, `dead`, `gone`), [6] now (ms), [7] retry at (ms), [8] attempt log
/// JSON, [9] log kept, [10] disable after (ms), [11] disabled reason, [12] disabled event data,
/// [13] event retention, [14] dead kept. Returns 0 stale, 1 applied, 2 applied and disabled.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id, ev = ARGV[1], ARGV[2], ARGV[3]
local h = p .. ':hook:' .. id
local due, m = p .. ':hooks:due', id .. ' ' .. ARGV[3]
local score = redis.call('ZSCORE', due, m)
if not score or tonumber(score) ~= tonumber(ARGV[4]) then return 0 end
local verdict, now = ARGV[5], tonumber(ARGV[6])
redis.call('LPUSH', h .. ':log', ARGV[8])
redis.call('LTRIM', h .. ':log', 0, tonumber(ARGV[9]) - 1)
local meta = redis.call('HGET', h .. ':meta', ev) or '0 '
local attempts, lane = string.match(meta, '^(%d+) (.*)$')
attempts = tonumber(attempts or '0') + 1
lane = lane or ''
local disabled = false
local function disable()
  redis.call('HSET', h, 'enabled', '0', 'disabled_reason', ARGV[11])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[13], '*', 'webhook_disabled', ARGV[12])
  disabled = true
end
if verdict == 'retry' or verdict == 'dead' then
  local since = redis.call('HGET', h, 'failing_since')
  if not since then
    redis.call('HSET', h, 'failing_since', math.floor(now / 1000))
  elseif redis.call('HGET', h, 'enabled') == '1'
    and now - (tonumber(since) + 1) * 1000 >= tonumber(ARGV[10]) then
    disable()
  end
end
if verdict == 'retry' or verdict == 'gone' then
  redis.call('HSET', h .. ':meta', ev, attempts .. ' ' .. lane)
  if verdict == 'gone' and redis.call('HGET', h, 'enabled') == '1' then disable() end
  if disabled then
    redis.call('ZREM', due, m)
    redis.call('SADD', h .. ':parked', ev)
  else
    redis.call('ZADD', due, ARGV[7], m)
  end
else
  redis.call('ZREM', due, m)
  if verdict == 'dead' then
    redis.call('HSET', h .. ':meta', ev, attempts .. ' ' .. lane)
    redis.call('ZADD', h .. ':dead', now, ev)
    local extra = redis.call('ZCARD', h .. ':dead') - tonumber(ARGV[14])
    if extra > 0 then
      for _, old in ipairs(redis.call('ZRANGE', h .. ':dead', 0, extra - 1)) do
        redis.call('HDEL', h .. ':body', old)
        redis.call('HDEL', h .. ':meta', old)
      end
      redis.call('ZREMRANGEBYRANK', h .. ':dead', 0, extra - 1)
    end
  else
    redis.call('HDEL', h .. ':body', ev)
    redis.call('HDEL', h .. ':meta', ev)
    redis.call('HDEL', h, 'failing_since')
  end
  local lk = h .. ':lane:' .. lane
  if redis.call('LINDEX', lk, 0) == ev then redis.call('LPOP', lk) else redis.call('LREM', lk, 1, ev) end
  local nxt = redis.call('LINDEX', lk, 0)
  if nxt then
    if redis.call('HGET', h, 'enabled') == '1' then
      redis.call('ZADD', due, now, id .. ' ' .. nxt)
    else
      redis.call('SADD', h .. ':parked', nxt)
    end
  else
    redis.call('SREM', h .. ':lanes', lane)
  end
end
if disabled then return 2 end
return 1
",
    )
});

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A subscription from its [`RedisStore::hook_fields`]; `None` when it has no configuration
/// (no such subscription).
fn hook_row(id: String, mut f: Vec<Option<String>>) -> Option<HookRow> {
    let config = f.get_mut(0)?.take()?;
    Some(HookRow {
        id,
        config,
        enabled: f.get(1)?.as_deref() == Some("1"),
        disabled_reason: f.get_mut(2)?.take(),
        failing_since: f.get(3)?.as_deref().and_then(|s| s.parse().ok()),
        cursor: f.get_mut(4)?.take(),
    })
}

impl RedisStore {
    pub(crate) async fn hook_put(
        &self,
        row: &HookRow,
        create_only: bool,
    ) -> Result<bool, StoreError> {
        let n: i64 = PUT
            .prepare_invoke()
            .arg(self.prefix())
            .arg(&row.id)
            .arg(&row.config)
            .arg(if create_only { "1" } else { "0" })
            .arg(if row.enabled { "1" } else { "0" })
            .arg(row.cursor.as_deref().unwrap_or_default())
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn hook_update(
        &self,
        id: &str,
        config: Option<ConfigChange<'_>>,
        enabled: Option<(bool, &str)>,
        now_ms: i64,
    ) -> Result<HookUpdate, StoreError> {
        let n: i64 = UPDATE
            .prepare_invoke()
            .arg(self.prefix())
            .arg(id)
            .arg(config.map(|c| c.to).unwrap_or_default())
            .arg(match enabled {
                Some((true, _)) => "1",
                Some((false, _)) => "0",
                None => "",
            })
            .arg(enabled.map(|(_, r)| r).unwrap_or_default())
            .arg(now_ms)
            .arg(config.map(|c| c.from).unwrap_or_default())
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(match n {
            1 => HookUpdate::Applied,
            0 => HookUpdate::Missing,
            _ => HookUpdate::Changed,
        })
    }

    pub(crate) async fn hook_delete(&self, id: &str) -> Result<bool, StoreError> {
        let n: i64 = DELETE
            .prepare_invoke()
            .arg(self.prefix())
            .arg(id)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn hook_list(&self) -> Result<Vec<HookRow>, StoreError> {
        let mut conn = self.inner.connection.clone();
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:hooks", self.prefix()))
            .query_async(&mut conn)
            .await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.add_command(self.hook_fields(id));
        }
        let rows: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(rows)
            .filter_map(|(id, fields)| hook_row(id, fields))
            .collect())
    }

    pub(crate) async fn hook_get(&self, id: &str) -> Result<Option<HookRow>, StoreError> {
        let fields: Vec<Option<String>> = self
            .hook_fields(id)
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(hook_row(id.to_owned(), fields))
    }

    /// `HMGET` of a subscription's fields, in [`hook_row`]'s order.
    fn hook_fields(&self, id: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(format!("{}:hook:{id}", self.prefix())).arg(&[
            "config",
            "enabled",
            "disabled_reason",
            "failing_since",
            "cursor",
        ]);
        cmd
    }

    pub(crate) async fn hook_enqueue(
        &self,
        id: &str,
        how: &Enqueue,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<Option<usize>, StoreError> {
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation.arg(self.prefix()).arg(id);
        let none = Direct::default();
        let direct = match how {
            Enqueue::FromLog {
                expected,
                next,
                direct,
            } => {
                invocation
                    .arg("log")
                    .arg(expected.as_deref().unwrap_or_default())
                    .arg(next);
                direct
            }
            Enqueue::Replay => {
                invocation.arg("replay").arg("").arg("");
                &none
            }
            Enqueue::DeadLetters { .. } => {
                invocation.arg("dead").arg("").arg("");
                &none
            }
        };
        let limit = match how {
            Enqueue::DeadLetters { limit } => *limit,
            _ => 0,
        };
        invocation
            .arg(now_ms)
            .arg(limit.max(1))
            .arg(direct.claimed_until)
            .arg(LOG_KEPT)
            .arg(direct.failed.len())
            .arg(direct.delivered.len())
            .arg(if direct.read_enabled { "1" } else { "0" });
        for ev in &direct.failed {
            invocation.arg(ev);
        }
        for log in &direct.delivered {
            invocation.arg(log);
        }
        if !matches!(how, Enqueue::DeadLetters { .. }) {
            for d in deliveries {
                invocation.arg(&d.event_id).arg(&d.lane).arg(&d.body);
            }
        }
        let n: i64 = invocation
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok((n >= 0).then_some(n as usize))
    }

    pub(crate) async fn hook_busy_lanes(
        &self,
        id: &str,
        lanes: &[&str],
        lease: &DispatchLease,
    ) -> Result<Option<BusyLanes>, StoreError> {
        let mut invocation = BUSY.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(id)
            .arg(&lease.holder)
            .arg(lease.ms.max(1));
        for lane in lanes {
            invocation.arg(*lane);
        }
        let found: Option<Vec<String>> = invocation
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(found.map(|mut found| {
            let cursor = found.remove(0);
            BusyLanes {
                // `hook_put` stores a missing cursor as "".
                cursor: (!cursor.is_empty()).then_some(cursor),
                busy: found,
            }
        }))
    }

    pub(crate) async fn hook_release(&self, id: &str, holder: &str) -> Result<(), StoreError> {
        let _: i64 = RELEASE
            .prepare_invoke()
            .arg(self.prefix())
            .arg(id)
            .arg(holder)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(())
    }

    pub(crate) async fn hook_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<(Vec<Claimed>, Option<i64>), StoreError> {
        let token = now_ms + lease_ms;
        let reply: Vec<Value> = CLAIM
            .prepare_invoke()
            .arg(self.prefix())
            .arg(now_ms)
            .arg(token)
            .arg(limit.max(1))
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        let next = reply.first().and_then(int);
        let claimed = reply
            .get(1..)
            .unwrap_or_default()
            .chunks_exact(4)
            .filter_map(|c| {
                Some(Claimed {
                    subscription: text(&c[0])?,
                    event_id: text(&c[1])?,
                    body: text(&c[2])?,
                    attempts: int(&c[3])?.max(0) as u32,
                    token,
                })
            })
            .collect();
        Ok((claimed, next))
    }

    pub(crate) async fn hook_complete(&self, c: &Completion) -> Result<Completed, StoreError> {
        let (verdict, at) = match c.verdict {
            Verdict::Delivered => ("delivered", 0),
            Verdict::Retry { at_ms } => ("retry", at_ms),
            Verdict::Dead => ("dead", 0),
            Verdict::Gone => ("gone", 0),
        };
        let n: i64 = COMPLETE
            .prepare_invoke()
            .key(format!("{}:events", self.prefix()))
            .arg(self.prefix())
            .arg(&c.claimed.subscription)
            .arg(&c.claimed.event_id)
            .arg(c.claimed.token)
            .arg(verdict)
            .arg(c.now_ms)
            .arg(at)
            .arg(&c.log)
            .arg(LOG_KEPT)
            .arg(c.disable_after_ms)
            .arg(&c.disabled_reason)
            .arg(&c.disabled_event)
            .arg(self.inner.event_retention + 1)
            .arg(DEAD_KEPT)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(match n {
            0 => Completed::Stale,
            2 => Completed::Disabled,
            _ => Completed::Applied,
        })
    }

    pub(crate) async fn hook_attempts(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(redis::cmd("LRANGE")
            .arg(format!("{}:hook:{id}:log", self.prefix()))
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .query_async(&mut self.inner.connection.clone())
            .await?)
    }

    pub(crate) async fn hook_backlog(&self, id: &str) -> Result<Backlog, StoreError> {
        let h = format!("{}:hook:{id}", self.prefix());
        let (meta, dead): (u64, u64) = redis::pipe()
            .cmd("HLEN")
            .arg(format!("{h}:meta"))
            .cmd("ZCARD")
            .arg(format!("{h}:dead"))
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(Backlog {
            pending: meta.saturating_sub(dead),
            dead,
        })
    }
}
