//! The send pacer's window on Redis, so that every instance on one Redis shares
//! SEND_RATE_PER_SECOND per business number (see [`crate::graph::pacer`]).
//!
//! `P:pace:<phone_number_id>` is a list of the start times (ms, Redis's clock) of the number's
//! latest `rate` sends, oldest first. One script call takes a slot: the same sliding-window rule
//! as the in-process window (the slot is now, or one window after the `rate`-th send before it),
//! computed on Redis's clock so instances with skewed clocks agree, and taken only when it is at
//! most `longest` away. Slots are taken in call order, so the list stays sorted. The key expires
//! one window after its last slot, so idle numbers cost nothing. Needs `TIME` before writes in a
//! script (script effects replication, the default since Redis 5, which the event log's streams
//! need anyway).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::RedisStore;
use crate::store::StoreError;

/// KEYS[1] = `<p>:pace:<number>`. ARGV: [1] rate, [2] window (ms), [3] longest wait (ms).
/// Returns `{1, wait ms}` when the slot was taken, `{0, wait ms}` when it is further than the
/// longest wait (nothing taken).
static PACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, window, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[1])
local slot = now
if n >= rate then
  local before = tonumber(redis.call('LINDEX', KEYS[1], n - rate))
  if before and before + window > slot then slot = before + window end
end
if slot - now > longest then return {0, slot - now} end
redis.call('RPUSH', KEYS[1], slot)
if n + 1 > rate then redis.call('LTRIM', KEYS[1], -rate, -1) end
redis.call('PEXPIRE', KEYS[1], slot - now + window)
return {1, slot - now}
",
    )
});

impl RedisStore {
    /// Takes the next send slot of `number` in the window every instance on this Redis shares:
    /// `Ok(wait)` to sleep before sending, or `Err(wait)` when the slot is more than `longest`
    /// away (nothing taken; the send is refused with that wait).
    pub async fn take_send_slot(
        &self,
        number: &str,
        rate: usize,
        window: Duration,
        longest: Duration,
    ) -> Result<Result<Duration, Duration>, StoreError> {
        let (taken, wait_ms): (i64, i64) = PACE
            .key(format!("{}:pace:{number}", self.prefix()))
            .arg(rate)
            .arg(window.as_millis() as u64)
            .arg(longest.as_millis() as u64)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        let wait = Duration::from_millis(wait_ms.max(0) as u64);
        Ok(if taken == 1 { Ok(wait) } else { Err(wait) })
    }
}
