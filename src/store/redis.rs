//! Redis backend, compatible with the FastAPI original's layout (the README's Storage section
//! lists every key; `P` is REDIS_KEY_PREFIX):
//!
//! - `<REDIS_INBOUND_LIST>:<digits or BSUID>`: the FastAPI projection, stored message JSON oldest
//!   first (RPUSH), exactly as the original wrote it, so data from either service is readable by
//!   both;
//! - `P:msg:<wamid>`: the message record hash, per business number: `<pnid>` = the record,
//!   `<pnid>:from` = the sender (the dedupe marker, written last), statuses and changes beside;
//! - `P:conv:<pnid>:<contact>` (counters, the time and id of the contact's latest message, the
//!   contact's `marketing` preference), `P:cmsgs:<pnid>:<contact>` (the history, a zset of
//!   `<ts10>:<wamid>`), `P:cchanges:<pnid>:<contact>` (edits, deletions, reactions), `P:convs`
//!   (every conversation by last activity);
//! - `P:events`: the event log (one stream entry per write; see [`crate::events::log::redis`]);
//! - `P:quarantine`, `P:health:probe` (the readiness probe's write, expires after 60 s);
//! - `P:notice:<digest>`: a non-message notification already kept as an event (expires after
//!   [`super::DEDUPE_TTL_SECS`], past Meta's retries);
//! - `P:idem:<key>`: a client's Idempotency-Key (`fp`, then `status` and `body`; see
//!   [`crate::store::Store::idempotency`]);
//! - `P:pace:<phone_number_id>`: the send pacer's window shared by every instance (the start
//!   times of the number's latest SEND_RATE_PER_SECOND sends; see [`pace`]);
//! - `P:seen:<wamid>`: markers of the previous release, still read so its messages stay deduped;
//! - `P:upgrade:import`: set once the FastAPI lists of earlier releases have records and
//!   conversations ([`crate::service::upgrade`]).
//!
//! A chunk of up to [`MAX_MESSAGES_PER_WRITE`] messages costs one round trip: [`SAVE_SCRIPT`].
//! Redis does not roll a failing script back, so the script reads everything that can fail
//! first, undoes its own writes if one fails anyway, and writes the records (the markers)
//! **last**: a failure part-way (a key of the wrong type, a command disabled or failing on this
//! server) leaves no message and no marker of the chunk, and Meta's retry stores it exactly once.
//! No `TYPE` pre-checks; per chunk one `MGET` and one `XADD`, per message `HGET`, `RPUSH`, `ZADD`
//! and `HSET`, per conversation `HMGET` and `HSET` (`scripts/bench` and `examples/store_cost.rs`
//! measure it). The connection is a [`ConnectionManager`]: it reconnects by itself; while Redis
//! is down calls fail fast (REDIS_TIMEOUT_MS) and the webhook answers 503, so Meta retries.
//!
//! **Eviction is refused**: a Redis whose `maxmemory-policy` is not `noeviction` may silently
//! delete acknowledged messages and dedupe markers. The readiness probe reads the policy from
//! `INFO memory` (CONFIG may be disabled on managed Redis) every [`PROBE_INTERVAL`]; while it is
//! not `noeviction`, saves are refused (503 with the fix in the detail) and `/readyz` is 503,
//! unless REDIS_ALLOW_EVICTION=true.
//!
//! **Batching** (group commit, as in the embedded store): saves go through a queue to a batcher
//! task that runs one script call for the chunks waiting, up to [`MAX_MESSAGES_PER_WRITE`]
//! messages per call, with up to [`MAX_IN_FLIGHT`] calls pipelined. Alone, a webhook's script
//! runs at once; under load, many webhooks share one call, which divides the script's fixed cost
//! and the round trip among them. Each webhook still gets an answer only after its own messages
//! are stored; if the call fails, every chunk in it gets the error.
//!
//! [`PROBE_INTERVAL`]: super::PROBE_INTERVAL

/// The conversation hash's own fields besides `phone_number_id`, as the items of a Lua list:
/// what a message write sets, and what a failed chunk's undo and a conversation's deletion
/// remove. The contact's `marketing` and `last_call_at` in the same hash stay.
macro_rules! conversation_fields_lua {
    () => {
        "'last_message_at', 'last_inbound_at', 'message_count', 'unread_count', 'last_message', 'last_message_id', 'contact', 'last_inbound_id'"
    };
}

/// Two Lua functions the scripts that announce a conversation share, so its
/// `conversation_updated` JSON has one shape: `window_expires(inbound_at, call_at)` (numbers or
/// nil) gives `window_expires_at` as JSON, 24 hours after the later of the two or `null`;
/// `conversation_updated(...)` builds the event from the hash's stored values, already JSON
/// (`contact`, `last_message`, `last_message_id`) or digits.
macro_rules! conversation_updated_lua {
    () => {
        r#"
local function window_expires(inbound_at, call_at)
  local opened = math.max(inbound_at or -1, call_at or -1)
  if opened < 0 then return 'null' end
  return string.format('%d', opened + 86400)
end
local function conversation_updated(pnid, contact, preview, last_id, at, count, unread, window)
  return '{"phone_number_id":"' .. pnid .. '","contact":' .. contact
    .. ',"last_message":' .. preview .. ',"last_message_id":' .. last_id
    .. ',"last_message_at":' .. at .. ',"message_count":' .. count
    .. ',"unread_count":' .. unread .. ',"window_expires_at":' .. window .. '}'
end
"#
    };
}

mod hooks;
mod pace;
mod reads;
mod rules;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use secrecy::ExposeSecret;
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::alias::AliasCache;
use super::batch::{Batched, Grouper};
use super::readiness::spawn_probe;
use super::record::{MessageWrite, NoticeWrite, StatusWrite};
use super::{
    ChunkAnswer, Fetched, MAX_MESSAGES_PER_WRITE, Outcome, PagedRead, READ_PAGE, Readiness,
    StoreError, stored_item,
};
use crate::config::RedisSettings;
use crate::domain::{ContactId, InboundMessage};

/// KEYS[1] = the conversations zset, KEYS[2] = the event stream; then per message i, at
/// `k = 2 + 7(i-1)`: KEYS[k+1] = the previous release's marker (read only), KEYS[k+2] = the
/// message hash, KEYS[k+3] = the FastAPI list, KEYS[k+4] = the conversation's message index (for
/// an edit, a deletion or a reaction: the conversation's index of changes),
/// KEYS[k+5] = the conversation hash, KEYS[k+6] = the hash of the message it changes (an edit's,
/// a deletion's or a reaction's target; else its own hash again), KEYS[k+7] = the business
/// number's aliases ([`super::alias`]).
/// ARGV[1] = the event stream's MAXLEN; then per message i, at `a = 1 + 17(i-1)`: ARGV[a+1] =
/// phone_number_id, a+2 = contact, a+3 = record JSON, a+4 = FastAPI JSON (`` for messages not
/// listed there: the business's own, history back-fill), a+5 = timestamp,
/// a+6 = preview (JSON literal), a+7 = contact (JSON object), a+8 = `1` when from the user
/// (unread, opens the window), a+9 = index member, a+10 = the id (JSON literal), a+11 = `1` when
/// it is a new message of its conversation, a+12 = its specific event type (or ``), a+13 = the
/// kind of change it makes to its target (`edited`, `deleted`, `reaction`, or ``), a+14 = the
/// change's timestamp, a+15 = the change's JSON, a+16 = its event type (`message_incoming`,
/// `message_outgoing`, or `` for none), a+17 = the user's identifiers, space-separated, in the
/// alias rule's order.
/// All keys are declared in KEYS, so the script is also valid where Redis checks key access.
/// An import from an earlier release's list (KEYS[k+1] is then its own hash) is a duplicate of
/// a record of its id under any business number.
/// Returns one entry per message: 1 newly stored, 0 already stored by the same sender (a
/// duplicate), or the contact the id is already stored for (a conflict). Or, having written
/// nothing, `moved` followed by pairs (index of a message, the conversation key its user's
/// aliases name) when a message's key (ARGV[a+2]) is not that one.
///
/// A chunk is written all or nothing, because Redis does not roll a failing script back.
/// (0) **Keys**: each identifier's alias (`HGET`), also those the chunk's earlier messages add;
/// the first one found is the message's key. (1) **Reads**: the previous release's markers in
/// one `MGET` (a key of another type reads as absent), then per message the `<phone_number_id>:from` field of its hash, per conversation
/// its counters and per change target the current value; a key of another type there fails the
/// chunk before any write. (2) **Writes**, each through `pcall`: the FastAPI list (`RPUSH`), the
/// conversation index (`ZADD`), the change on the target (`HSET`), the conversation hash (`HSET`)
/// and the conversations zset (`ZADD` when newer than the hash's `last_message_at`, which is its
/// score), the new aliases (`HSETNX`), then **every event of the chunk in one stream entry**
/// (one `XADD`: per event a field named by its type whose value is its JSON; [`crate::events::log::redis`] reads them back in
/// order). If one write fails (a key of another type, a command disabled or missing on this
/// server), what was written is undone from what the script knows (`RPOP`, `ZREM`, the values
/// read, `XDEL`; a conversation the chunk began loses the fields it got and keeps the contact's
/// marketing preference and last call), newest first, and the script fails naming the cause;
/// nothing is allocated for undoing on the way when nothing fails. (3) The message hashes,
/// **last**: they are the dedupe markers, so a failed chunk never leaves one. Out-of-memory can
/// only refuse a script's first write. Edits, deletions and reactions are stored and listed like
/// any message but are not new messages of their conversation (indexed apart, no counters or
/// preview). Numbers reach Redis as strings formatted once (`%d`): a Lua number argument would
/// be formatted as a float per use.
/// A `conversation_updated` event's window opens at the later of the contact's latest message
/// and `last_call_at` (a user's call, kept by [`NOTICE_SCRIPT`]).
pub const SAVE_SCRIPT: &str = concat!(
    conversation_updated_lua!(),
    r#"
local call, try = redis.call, redis.pcall
local KS, AS = 7, 17
local n = (#KEYS - 2) / KS
local FIELDS = {"#,
    conversation_fields_lua!(),
    r#"}
local READ = {unpack(FIELDS)}
READ[#READ + 1] = 'last_call_at'
local fresh, nfresh, pushed, zadded, changes, order, evid = {}, 0, {}, {}, {}, {}, nil
local newaliases, aliased = {}, 0
local function fail(what, err)
  if evid then try('XDEL', KEYS[2], evid) end
  for j = aliased, 1, -1 do try('HDEL', newaliases[j][1], newaliases[j][2]) end
  for j = #order, 1, -1 do
    local c = order[j]
    if c.zs then
      if c.zs == true then try('ZREM', KEYS[1], c.member) else try('ZADD', KEYS[1], c.zs, c.member) end
    end
    if c.written then
      if c.old[3] then
        local back, gone = {'HSET', c.key}, {'HDEL', c.key}
        for j, name in ipairs(FIELDS) do
          if c.old[j] then back[#back + 1] = name; back[#back + 1] = c.old[j] else gone[#gone + 1] = name end
        end
        try(unpack(back))
        if #gone > 2 then try(unpack(gone)) end
      else
        try('HDEL', c.key, 'phone_number_id', unpack(FIELDS))
      end
    end
  end
  for f = nfresh, 1, -1 do
    local i = fresh[f]
    local k, a = 2 + KS * (i - 1), 1 + AS * (i - 1)
    local ch = changes[i]
    if ch and ch.written then
      if ch.before then try('HSET', KEYS[k + 6], ch.field, ch.before) else try('HDEL', KEYS[k + 6], ch.field) end
    end
    if zadded[f] then try('ZREM', KEYS[k + 4], ARGV[a + 9]) end
    if pushed[f] then try('RPOP', KEYS[k + 3]) end
  end
  return redis.error_reply('ERR ' .. what .. ' failed (' .. tostring(err)
    .. '); nothing of this chunk was stored (a key of another type there must be removed or renamed; the retry will be stored)')
end
local known, moved = {}, {'moved'}
for i = 1, n do
  local k, a = 2 + KS * (i - 1), 1 + AS * (i - 1)
  local ak, contact = KEYS[k + 7], ARGV[a + 2]
  local mine = known[ak]
  if not mine then mine = {}; known[ak] = mine end
  local want = nil
  for id in string.gmatch(ARGV[a + 17], '%S+') do
    if mine[id] == nil then
      local r = try('HGET', ak, id)
      if type(r) == 'table' and r.err then return fail('reading ' .. ak, r.err) end
      mine[id] = r
    end
    want = want or mine[id] or nil
  end
  if want and want ~= contact then
    moved[#moved + 1] = i
    moved[#moved + 1] = want
  end
  -- A BSUID always, a phone unless it is the key; under the key the message will have (the
  -- chunk's later messages see the aliases it is going to write).
  local key = want or contact
  for id in string.gmatch(ARGV[a + 17], '%S+') do
    if not mine[id] and (id ~= key or string.find(id, '.', 1, true)) then
      mine[id] = key
      newaliases[#newaliases + 1] = {ak, id, key}
    end
  end
end
if #moved > 1 then return moved end
local old = {}
for i = 1, n do old[i] = KEYS[2 + KS * (i - 1) + 1] end
local olds = call('MGET', unpack(old))
local out, owner = {}, {}
for i = 1, n do
  local k, a = 2 + KS * (i - 1), 1 + AS * (i - 1)
  local key, contact = KEYS[k + 2], ARGV[a + 2]
  local mine = owner[key]
  local seen = mine and mine[ARGV[a + 1]]
  if not seen then
    local r = try('HGET', key, ARGV[a + 1] .. ':from')
    if type(r) == 'table' and r.err then return fail('reading ' .. key, r.err) end
    seen = r
  end
  if not seen and olds[i] then seen = (olds[i] == '1') and contact or olds[i] end
  -- An import (its marker key is its own record hash) is a duplicate of any record of the id,
  -- under whichever business number: this release also lists what it stores.
  if not seen and KEYS[k + 1] == key and call('EXISTS', key) == 1 then seen = contact end
  if seen then
    out[i] = (seen == contact) and 0 or seen
  else
    out[i] = 1
    if not mine then mine = {}; owner[key] = mine end
    mine[ARGV[a + 1]] = contact
    nfresh = nfresh + 1
    fresh[nfresh] = i
  end
end
local convs, targets = {}, {}
for f = 1, nfresh do
  local i = fresh[f]
  local k, a = 2 + KS * (i - 1), 1 + AS * (i - 1)
  if ARGV[a + 13] ~= '' then
    local tf = ARGV[a + 1] .. ':' .. ARGV[a + 13]
    local slot = KEYS[k + 6] .. ' ' .. tf
    if targets[slot] == nil then
      local r = try('HGET', KEYS[k + 6], tf)
      if type(r) == 'table' and r.err then return fail('reading ' .. KEYS[k + 6], r.err) end
      targets[slot] = r
    end
    changes[i] = {field = tf, slot = slot}
  end
  if ARGV[a + 11] == '1' then
    local ck = KEYS[k + 5]
    local c = convs[ck]
    if not c then
      local r = try('HMGET', ck, unpack(READ))
      if type(r) == 'table' and r.err then return fail('reading ' .. ck, r.err) end
      c = { key = ck, pnid = ARGV[a + 1], member = ARGV[a + 1] .. ':' .. ARGV[a + 2], old = r,
            at = tonumber(r[1]) or -1, inat = tonumber(r[2]) or -1,
            count = tonumber(r[3]) or 0, unread = tonumber(r[4]) or 0, call = tonumber(r[9]) or -1,
            preview = r[5], last_id = r[6], contact = r[7], inid = r[8] }
      convs[ck] = c
      order[#order + 1] = c
    end
    local ts = tonumber(ARGV[a + 5])
    c.count = c.count + 1
    -- The contact (profile name, username) as the user's latest message gave it: our own
    -- messages carry no profile.
    if ARGV[a + 8] == '1' then
      c.unread = c.unread + 1
      if ts >= c.inat then c.inat, c.inid, c.contact = ts, ARGV[a + 10], ARGV[a + 7] end
    end
    if ts >= c.at then
      c.at, c.preview, c.last_id = ts, ARGV[a + 6], ARGV[a + 10]
    end
    if not c.contact then c.contact = ARGV[a + 7] end
  end
end
local ev, nev = {}, 0
for f = 1, nfresh do
  local i = fresh[f]
  local k, a = 2 + KS * (i - 1), 1 + AS * (i - 1)
  local r
  if ARGV[a + 4] ~= '' then
    r = try('RPUSH', KEYS[k + 3], ARGV[a + 4])
    if type(r) == 'table' and r.err then return fail('appending to ' .. KEYS[k + 3], r.err) end
    pushed[f] = true
  end
  r = try('ZADD', KEYS[k + 4], 0, ARGV[a + 9])
  if type(r) == 'table' and r.err then return fail('indexing ' .. KEYS[k + 4], r.err) end
  zadded[f] = (r == 1)
  if ARGV[a + 16] ~= '' then ev[nev + 1] = ARGV[a + 16]; ev[nev + 2] = ARGV[a + 3]; nev = nev + 2 end
  if ARGV[a + 12] ~= '' then ev[nev + 1] = ARGV[a + 12]; ev[nev + 2] = ARGV[a + 3]; nev = nev + 2 end
  local ch = changes[i]
  if ch then
    local before = targets[ch.slot]
    local prev = before and tonumber(string.match(before, '^(%-?%d+) '))
    if not prev or prev <= tonumber(ARGV[a + 14]) then
      local value = ARGV[a + 14] .. ' ' .. ARGV[a + 15]
      r = try('HSET', KEYS[k + 6], ch.field, value)
      if type(r) == 'table' and r.err then return fail('updating ' .. KEYS[k + 6], r.err) end
      ch.written, ch.before, targets[ch.slot] = true, before, value
    end
  end
end
for _, c in ipairs(order) do
  local at, count, unread = string.format('%d', c.at), string.format('%d', c.count), string.format('%d', c.unread)
  local set = {'HSET', c.key, 'last_message_at', at, 'last_inbound_at', string.format('%d', c.inat),
    'message_count', count, 'unread_count', unread, 'last_message', c.preview, 'last_message_id', c.last_id,
    'contact', c.contact}
  if not c.old[3] then set[#set + 1] = 'phone_number_id'; set[#set + 1] = c.pnid end
  if c.inid then set[#set + 1] = 'last_inbound_id'; set[#set + 1] = c.inid end
  local r = try(unpack(set))
  if type(r) == 'table' and r.err then return fail('updating ' .. c.key, r.err) end
  c.written = true
  local prev = tonumber(c.old[1])
  if not (prev and prev >= c.at) then
    r = try('ZADD', KEYS[1], at, c.member)
    if type(r) == 'table' and r.err then return fail('indexing ' .. KEYS[1], r.err) end
    c.zs = c.old[1] or true
  end
  ev[nev + 1] = 'conversation_updated'
  ev[nev + 2] = conversation_updated(c.pnid, c.contact, c.preview, c.last_id, at, count, unread,
    window_expires(c.inat, c.call))
  nev = nev + 2
end
for j, al in ipairs(newaliases) do
  local r = try('HSETNX', al[1], al[2], al[3])
  if type(r) == 'table' and r.err then return fail('recording an alias in ' .. al[1], r.err) end
  aliased = j
end
if nev > 0 then
  local r = try('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ev, 1, nev))
  if type(r) == 'table' and r.err then return fail('appending events to ' .. KEYS[2], r.err) end
  evid = r
end
for f = 1, nfresh do
  local i = fresh[f]
  local k, a = 2 + KS * (i - 1), 1 + AS * (i - 1)
  call('HSET', KEYS[k + 2], ARGV[a + 1], ARGV[a + 3], ARGV[a + 1] .. ':from', ARGV[a + 2])
end
return out
"#
);

/// Keys per message in [`SAVE_SCRIPT`]'s KEYS.
pub const SAVE_KEYS: usize = 7;
/// Arguments per message in [`SAVE_SCRIPT`]'s ARGV (see there).
pub const SAVE_ARGS: usize = 17;

/// KEYS[1] = the quarantine list, KEYS[2] = the event stream; ARGV[1] = the stream's MAXLEN,
/// ARGV[2] = how many quarantined items are kept, ARGV[3..] = the items' JSON. Every item's
/// `webhook_error` event goes into one stream entry first, then the items to the list (newest
/// first, trimmed).
pub const QUARANTINE_SCRIPT: &str = r"
local ev = {}
for i = 3, #ARGV do
  ev[#ev + 1] = 'webhook_error'
  ev[#ev + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ev))
for i = 3, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return #ARGV - 2
";

/// KEYS[1] = the event stream; KEYS[1+i] = the message hash of status i.
/// ARGV[1] = the stream's MAXLEN; per status i at `a = 1 + 7(i-1)`: ARGV[a+1] = phone_number_id,
/// a+2 = status, a+3 = its rank, a+4 = timestamp, a+5 = `1` when it has errors, a+6 = the
/// transition JSON, a+7 = the event data after its `status` key.
/// Returns per status 1 when it changed something (and a `message_status` event was added), 0
/// when it was a duplicate.
///
/// In the message hash (shared with the record, so a status that arrives before its message is
/// simply there when the record is written): `<phone_number_id>:st` = the current status (the
/// highest rank seen: sent 1 < delivered 2 < read 3 < played 4 < deleted 5 < failed 6, so it never
/// moves backwards and failed is final) and `<phone_number_id>:s:<status>` = `<timestamp> <0|1
/// errors> <transition JSON>`, one per status: a repeat keeps the earliest timestamp and the first
/// non-empty errors. The chunk is written all or nothing: every hash is read first (a key of
/// another type fails here, before any write; statuses of one message within the chunk see each
/// other), then the events go into one stream entry, then the hashes are written. A retry of a
/// stored status changes nothing.
pub const STATUS_SCRIPT: &str = r#"
local call, try = redis.call, redis.pcall
local ranks = {sent = 1, delivered = 2, read = 3, played = 4, deleted = 5, failed = 6}
local out, ev, writes, state = {}, {}, {}, {}
for i = 1, #KEYS - 1 do
  local key, a = KEYS[1 + i], 1 + 7 * (i - 1)
  local pnid, status, ts, e, detail = ARGV[a + 1], ARGV[a + 2], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local cf, sf = pnid .. ':st', pnid .. ':s:' .. status
  local known = state[key]
  if not known then known = {}; state[key] = known end
  local current, old = known[cf], known[sf]
  if current == nil or old == nil then
    local r = try('HMGET', key, cf, sf)
    if type(r) == 'table' and r.err then
      return redis.error_reply('ERR reading ' .. key .. ' failed (' .. tostring(r.err)
        .. '); no status of this chunk was stored, the retry stores them')
    end
    if current == nil then current = r[1] end
    if old == nil then old = r[2] end
  end
  local value = nil
  if not old then
    value = ts .. ' ' .. e .. ' ' .. detail
  else
    local ots, oe, ojson = string.match(old, '^(%-?%d+) (%d) (.*)$')
    if ots then
      local newts = math.min(tonumber(ots), tonumber(ts))
      if newts ~= tonumber(ots) or (oe == '0' and e == '1') then
        local o = cjson.decode(ojson)
        o.timestamp = newts
        local newe = oe
        if oe == '0' and e == '1' then
          o.errors = cjson.decode(detail).errors
          newe = '1'
        end
        value = string.format('%d', newts) .. ' ' .. newe .. ' ' .. cjson.encode(o)
      end
    else
      value = ts .. ' ' .. e .. ' ' .. detail
    end
  end
  local newcur = current
  if not current or tonumber(ARGV[a + 3]) > (ranks[current] or 0) then newcur = status end
  if value or newcur ~= current then
    ev[#ev + 1] = 'message_status'
    ev[#ev + 1] = '{"status":"' .. newcur .. '",' .. ARGV[a + 7]
    writes[#writes + 1] = {key, cf, newcur, sf, value}
    known[cf] = newcur
    if value then known[sf] = value else known[sf] = old end
    out[i] = 1
  else
    known[cf], known[sf] = current, old
    out[i] = 0
  end
end
if #ev > 0 then
  local id = try('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ev))
  if type(id) == 'table' and id.err then
    return redis.error_reply('ERR appending events to ' .. KEYS[1] .. ' failed (' .. tostring(id.err)
      .. '); no status of this chunk was stored, the retry stores them')
  end
end
for _, w in ipairs(writes) do
  if w[5] then call('HSET', w[1], w[2], w[3], w[4], w[5]) else call('HSET', w[1], w[2], w[3]) end
end
return out
"#;

/// KEYS[1] = the event stream, KEYS[1+i] = notice i's marker (`P:notice:<digest>`) for the N
/// notices, then per notice one conversation hash per preference and one per call (in order).
/// ARGV[1] = the stream's MAXLEN, ARGV[2] = the markers' expiry in seconds, ARGV[3] = N; then
/// per notice its event type, its data, its number of preferences and its number of calls,
/// followed by that many (timestamp, JSON) pairs and that many call timestamps.
/// Notices whose marker exists (a retry, or a repeat within the call) are skipped. Reads first
/// (the markers, the current preferences, call times and conversations: a key of another type
/// fails here, before any write), then the new notices' events in one stream entry, then each
/// preference that is not older than the stored one (`marketing` = `<timestamp> <JSON>` on the
/// conversation hash) and each call later than the stored `last_call_at`, then the markers.
/// A call that moves an existing conversation's 24-hour window (later than the stored call and
/// than the contact's latest message) adds one `conversation_updated` per conversation after
/// the notices' events, in the shape [`SAVE_SCRIPT`] writes (a conversation missing one of
/// those fields, never written by this release, is not announced).
/// Returns how many notices were new.
pub const NOTICE_SCRIPT: &str = concat!(
    conversation_updated_lua!(),
    r#"
local n = tonumber(ARGV[3])
local a, kp = 4, n + 2
local ev, fresh, seen, prefs, current, calls = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local key, np, nc = KEYS[1 + i], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local new = false
  if not seen[key] then
    seen[key] = true
    new = redis.call('EXISTS', key) == 0
  end
  if new then
    ev[#ev + 1] = ARGV[a]
    ev[#ev + 1] = ARGV[a + 1]
    fresh[#fresh + 1] = key
  end
  a = a + 4
  for _ = 1, np do
    if new then prefs[#prefs + 1] = {KEYS[kp], tonumber(ARGV[a]), ARGV[a] .. ' ' .. ARGV[a + 1]} end
    kp, a = kp + 1, a + 2
  end
  for _ = 1, nc do
    if new then calls[#calls + 1] = {KEYS[kp], tonumber(ARGV[a]), ARGV[a]} end
    kp, a = kp + 1, a + 1
  end
end
for _, p in ipairs(prefs) do
  if current[p[1]] == nil then current[p[1]] = redis.call('HGET', p[1], 'marketing') end
end
-- Per conversation hash: its fields as read, and the latest call (`at`: its ARGV string, set
-- only when later than the stored one).
local moved, by_key = {}, {}
for _, c in ipairs(calls) do
  local m = by_key[c[1]]
  if not m then
    local r = redis.call('HMGET', c[1], 'last_call_at', 'last_inbound_at', 'phone_number_id', 'contact',
      'last_message', 'last_message_id', 'last_message_at', 'message_count', 'unread_count')
    m = {key = c[1], r = r, latest = tonumber(r[1]) or -1}
    by_key[c[1]] = m
    moved[#moved + 1] = m
  end
  if c[2] > m.latest then m.latest, m.at = c[2], c[3] end
end
for _, m in ipairs(moved) do
  local r = m.r
  if m.at and m.latest > (tonumber(r[2]) or -1) and r[3] and r[4] and r[5] and r[6]
    and r[7] and r[8] and r[9] then
    ev[#ev + 1] = 'conversation_updated'
    ev[#ev + 1] = conversation_updated(r[3], r[4], r[5], r[6], r[7], r[8], r[9],
      window_expires(tonumber(r[2]), m.latest))
  end
end
if #ev > 0 then redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ev)) end
for _, p in ipairs(prefs) do
  local old = current[p[1]]
  local ts = old and tonumber(string.match(old, '^(%-?%d+) '))
  if not ts or ts <= p[2] then
    redis.call('HSET', p[1], 'marketing', p[3])
    current[p[1]] = p[3]
  end
end
for _, m in ipairs(moved) do
  if m.at then redis.call('HSET', m.key, 'last_call_at', m.at) end
end
for _, key in ipairs(fresh) do redis.call('SET', key, '1', 'EX', ARGV[2]) end
return #fresh
"#
);

/// Quarantined items kept in Redis (the newest).
pub const QUARANTINE_KEPT: usize = 10_000;

/// Script calls pipelined on the connection at once; while all are busy, saves queue up and go
/// out together in the next call.
pub const MAX_IN_FLIGHT: usize = 4;
/// Saves waiting for the batcher; when full, callers wait (bounded by the request timeout).
const QUEUE: usize = 4096;
/// Expiry of the probe's key.
const PROBE_TTL_SECS: u64 = 60;

/// One message, ready for the script: its keys and its prepared strings.
struct PreparedMessage {
    keys: [String; SAVE_KEYS],
    write: MessageWrite,
    member: String,
}

/// One chunk of a webhook's messages and where its outcome goes.
struct SaveJob {
    messages: Vec<PreparedMessage>,
    reply: oneshot::Sender<Result<ChunkAnswer, StoreError>>,
}

impl Batched for SaveJob {
    fn size(&self) -> usize {
        self.messages.len()
    }
}

/// The Redis backend. Cheap to clone: the connection is shared and multiplexed.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    saves: mpsc::Sender<SaveJob>,
    inbound_list: String,
    key_prefix: String,
    event_retention: usize,
    status_script: Script,
    quarantine_script: Script,
    notice_script: Script,
    allow_eviction: bool,
    readiness: Readiness,
    /// INFO was refused once (disabled on this server) and that was logged.
    info_refused_logged: AtomicBool,
    /// Conversation keys learned from the aliases ([`super::alias`]).
    aliases: AliasCache,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("inbound_list", &self.inner.inbound_list)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Creates the store and starts its batcher and readiness probe. The connection is made
    /// lazily, so the service starts (and `/readyz` reports 503) while Redis is still coming up.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client = Client::open(settings.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let (saves, queue) = mpsc::channel(QUEUE);
        let batcher = Batcher {
            connection: connection.clone(),
            script: Arc::new(Script::new(SAVE_SCRIPT)),
            conversations_key: Arc::from(format!("{}:convs", settings.key_prefix)),
            events_key: Arc::from(format!("{}:events", settings.key_prefix)),
            event_retention: settings.event_retention,
        };
        tokio::spawn(batcher.run(queue));
        let store = Self {
            inner: Arc::new(Inner {
                connection,
                saves,
                inbound_list: settings.inbound_list.clone(),
                key_prefix: settings.key_prefix.clone(),
                event_retention: settings.event_retention,
                status_script: Script::new(STATUS_SCRIPT),
                quarantine_script: Script::new(QUARANTINE_SCRIPT),
                notice_script: Script::new(NOTICE_SCRIPT),
                allow_eviction: settings.allow_eviction,
                readiness: Readiness::default(),
                info_refused_logged: AtomicBool::new(false),
                aliases: AliasCache::default(),
            }),
        };
        spawn_probe(Arc::downgrade(&store.inner), |inner| async move {
            let _ = Self { inner }.probe().await;
        });
        Ok(store)
    }

    /// The list key of a contact: `<REDIS_INBOUND_LIST>:<digits or BSUID>`.
    pub fn list_key(&self, contact: &str) -> String {
        format!("{}:{contact}", self.inner.inbound_list)
    }

    /// Applies status updates (at most [`MAX_MESSAGES_PER_WRITE`] per call) in one script call;
    /// per update, whether it changed something.
    pub(super) async fn save_statuses(
        &self,
        writes: &[StatusWrite],
    ) -> Result<Vec<bool>, StoreError> {
        if let Some(reason) = self.inner.readiness.refused() {
            return Err(StoreError::Refused(reason));
        }
        let p = &self.inner.key_prefix;
        let mut invocation = self.inner.status_script.prepare_invoke();
        invocation.key(format!("{p}:events"));
        for w in writes {
            invocation.key(format!("{p}:msg:{}", w.message_id));
        }
        invocation.arg(self.inner.event_retention + 1);
        for w in writes {
            invocation
                .arg(&w.phone_number_id)
                .arg(w.status)
                .arg(super::record::status_rank(w.status))
                .arg(w.timestamp)
                .arg(if w.has_errors { "1" } else { "0" })
                .arg(&w.detail)
                .arg(&w.event_rest);
        }
        let changed: Vec<i64> = invocation
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(changed.into_iter().map(|c| c == 1).collect())
    }

    /// Whether the FastAPI lists of earlier releases still need records and conversations
    /// (`P:upgrade:import` is set once they have them).
    pub(super) async fn import_pending(&self) -> Result<bool, StoreError> {
        let done: bool = redis::cmd("EXISTS")
            .arg(format!("{}:upgrade:import", self.inner.key_prefix))
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(!done)
    }

    /// The next page of FastAPI items of earlier releases: every list (`SCAN ... TYPE list`
    /// over `<REDIS_INBOUND_LIST>:*`), each read in pages of `page`; `None` when all were read.
    pub(super) async fn legacy_page(
        &self,
        cursor: &mut super::LegacyCursor,
        page: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut connection = self.inner.connection.clone();
        loop {
            if let Some((key, offset)) = &mut cursor.list {
                let items: Vec<String> = redis::cmd("LRANGE")
                    .arg(&*key)
                    .arg(*offset)
                    .arg(*offset + page - 1)
                    .query_async(&mut connection)
                    .await?;
                if !items.is_empty() {
                    *offset += items.len();
                    return Ok(Some(items));
                }
                cursor.list = None;
            }
            if let Some(key) = cursor.keys.pop() {
                cursor.list = Some((key, 0));
                continue;
            }
            if cursor.scanned {
                return Ok(None);
            }
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor.scan)
                .arg("MATCH")
                .arg(format!("{}:*", self.inner.inbound_list))
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("list")
                .query_async(&mut connection)
                .await?;
            cursor.keys = keys;
            cursor.scan = next;
            cursor.scanned = next == 0;
        }
    }

    /// Records that the import is done.
    pub(super) async fn import_finished(&self) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(format!("{}:upgrade:import", self.inner.key_prefix))
            .arg("done")
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(())
    }

    /// Keeps notices as events, each once, and applies their preferences, in one script call.
    pub(super) async fn save_notices(&self, notices: Vec<NoticeWrite>) -> Result<(), StoreError> {
        if let Some(reason) = self.inner.readiness.refused() {
            return Err(StoreError::Refused(reason));
        }
        let p = &self.inner.key_prefix;
        let mut invocation = self.inner.notice_script.prepare_invoke();
        invocation.key(format!("{p}:events"));
        for notice in &notices {
            invocation.key(format!("{p}:notice:{}", notice.digest));
        }
        for notice in &notices {
            for pref in &notice.preferences {
                invocation.key(conv_key(p, &pref.phone_number_id, &pref.contact));
            }
            for call in &notice.calls {
                invocation.key(conv_key(p, &call.phone_number_id, &call.contact));
            }
        }
        invocation
            .arg(self.inner.event_retention + 1)
            .arg(super::DEDUPE_TTL_SECS)
            .arg(notices.len());
        for notice in &notices {
            invocation
                .arg(&notice.kind)
                .arg(&notice.data)
                .arg(notice.preferences.len())
                .arg(notice.calls.len());
            for pref in &notice.preferences {
                invocation.arg(pref.timestamp).arg(&pref.json);
            }
            for call in &notice.calls {
                invocation.arg(call.timestamp);
            }
        }
        let _: i64 = invocation
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(())
    }

    /// Keeps quarantined items (each item's JSON) with a `webhook_error` event each, in one
    /// script call.
    pub(super) async fn save_quarantined(&self, items: Vec<String>) -> Result<(), StoreError> {
        let p = &self.inner.key_prefix;
        let mut invocation = self.inner.quarantine_script.prepare_invoke();
        invocation
            .key(format!("{p}:quarantine"))
            .key(format!("{p}:events"))
            .arg(self.inner.event_retention + 1)
            .arg(QUARANTINE_KEPT);
        for item in &items {
            invocation.arg(item);
        }
        let _: i64 = invocation
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(())
    }

    /// The keys [`SAVE_SCRIPT`] needs for one message, in its order.
    fn message_keys(&self, w: &MessageWrite) -> [String; SAVE_KEYS] {
        let p = &self.inner.key_prefix;
        let target = w.change.as_ref().map_or(&w.id, |c| &c.target);
        [
            // An import must not be a duplicate of the marker its own original left: read the
            // record hash there instead, which `MGET` reads as absent (a hash is not a string).
            if w.legacy_dedupe {
                format!("{p}:seen:{}", w.id)
            } else {
                format!("{p}:msg:{}", w.id)
            },
            format!("{p}:msg:{}", w.id),
            self.list_key(&w.list_contact),
            // New messages go to the conversation's history, edits, deletions and reactions to
            // its index of changes (so deleting the conversation finds them too).
            if w.is_new_message {
                format!("{p}:cmsgs:{}:{}", w.phone_number_id, w.contact)
            } else {
                format!("{p}:cchanges:{}:{}", w.phone_number_id, w.contact)
            },
            conv_key(p, &w.phone_number_id, &w.contact),
            format!("{p}:msg:{target}"),
            alias_key(p, &w.phone_number_id),
        ]
    }

    pub(super) fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    pub(super) fn aliases(&self) -> &AliasCache {
        &self.inner.aliases
    }

    /// Stores one chunk (at most [`MAX_MESSAGES_PER_WRITE`] messages).
    pub(super) async fn save_chunk(
        &self,
        messages: &[InboundMessage],
    ) -> Result<ChunkAnswer, StoreError> {
        if let Some(reason) = self.inner.readiness.refused() {
            return Err(StoreError::Refused(reason));
        }
        let messages = messages
            .iter()
            .map(|m| {
                let write = MessageWrite::inbound(m);
                PreparedMessage {
                    keys: self.message_keys(&write),
                    member: write.index_member(),
                    write,
                }
            })
            .collect();
        let (reply, outcome) = oneshot::channel();
        let gone = || StoreError::Io(std::io::Error::other("redis batcher stopped"));
        self.inner
            .saves
            .send(SaveJob { messages, reply })
            .await
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    pub(super) async fn recent_messages(
        &self,
        number: &ContactId,
        limit: usize,
    ) -> Result<Fetched, StoreError> {
        let key = self.list_key(number.as_str());
        let page = READ_PAGE as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        if limit != 0 && limit <= page {
            // The common small read: one LRANGE, as the original did. A negative start takes the
            // last `limit` items, still oldest first.
            let items = self.range(&key, -limit, -1).await?;
            return Ok(Fetched::Complete(items));
        }
        // All, or more than a page: one atomic round trip reads the length (the snapshot: lists
        // only grow, so indices below it stay valid) and the first page of the expected range.
        let (guess_start, guess_end) = if limit == 0 {
            (0, page - 1)
        } else {
            (-limit, -limit + page - 1)
        };
        let (len, items): (i64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("LLEN")
            .arg(&key)
            .cmd("LRANGE")
            .arg(&key)
            .arg(guess_start)
            .arg(guess_end)
            .query_async(&mut self.inner.connection.clone())
            .await?;
        let count = if limit == 0 || limit > len {
            len
        } else {
            limit
        };
        let start = len - count;
        let first_end = start + count.min(page) - 1;
        let first = if limit == 0 || limit <= len {
            items.into_iter().map(stored_item).collect()
        } else {
            // Fewer items than the limit asked for: the guess was off; read the first page.
            self.range(&key, start, first_end).await?
        };
        if count <= page {
            return Ok(Fetched::Complete(first));
        }
        Ok(Fetched::Paged(PagedRead {
            count: count as usize,
            first: Some(first),
            cursor: super::Cursor::Redis {
                store: self.clone(),
                key,
                next: first_end + 1,
                end: len - 1,
            },
            delivered: 0,
        }))
    }

    /// `LRANGE key start end` (inclusive, negative from the end).
    pub(super) async fn range(
        &self,
        key: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<Box<RawValue>>, StoreError> {
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(key)
            .arg(start)
            .arg(end)
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(items.into_iter().map(stored_item).collect())
    }

    /// Reads the eviction policy, then (unless writes are refused) writes the probe key; records
    /// the outcome in [`Readiness`].
    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        let outcome = self.probe_once().await;
        match &outcome {
            Ok(()) => self.inner.readiness.record_write(Ok(())),
            Err(StoreError::Refused(_)) => {}
            Err(e) => self.inner.readiness.record_write(Err(e.to_string())),
        }
        outcome
    }

    async fn probe_once(&self) -> Result<(), StoreError> {
        let mut connection = self.inner.connection.clone();
        let info: Result<String, redis::RedisError> = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await;
        match info {
            Ok(info) => self.check_eviction_policy(&info),
            Err(e)
                if matches!(
                    e.kind(),
                    redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
                ) =>
            {
                // INFO disabled (renamed away on some managed services): the policy cannot be
                // read; say so once and go on.
                if !self.inner.info_refused_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error.message = %e, "store.redis info_unavailable cannot check maxmemory-policy; make sure it is noeviction");
                }
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(reason) = self.inner.readiness.refused() {
            return Err(StoreError::Refused(reason));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _: () = redis::cmd("SET")
            .arg(format!("{}:health:probe", self.inner.key_prefix))
            .arg(now)
            .arg("EX")
            .arg(PROBE_TTL_SECS)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// Sets or clears the refusal from `INFO memory`'s `maxmemory_policy`.
    fn check_eviction_policy(&self, info: &str) {
        let refusal = eviction_refusal(info, self.inner.allow_eviction);
        let before = self.inner.readiness.refused();
        match (&before, &refusal) {
            (None, Some(reason)) => {
                tracing::error!(reason = %reason, "store.redis eviction_refused")
            }
            (Some(_), None) => {
                tracing::info!("store.redis eviction_policy_fixed writes accepted again")
            }
            _ => {}
        }
        if before != refusal {
            self.inner.readiness.set_refused(refusal);
        }
    }
}

/// Why writes must be refused given `INFO memory` text: any `maxmemory_policy` but `noeviction`,
/// unless eviction is explicitly allowed.
/// The key of a conversation's hash: `<prefix>:conv:<phone_number_id>:<contact>`.
pub(crate) fn conv_key(prefix: &str, phone_number_id: &str, contact: &str) -> String {
    format!("{prefix}:conv:{phone_number_id}:{contact}")
}

/// The hash of a business number's aliases: identifier -> conversation key ([`super::alias`]).
pub(crate) fn alias_key(prefix: &str, phone_number_id: &str) -> String {
    format!("{prefix}:alias:{phone_number_id}")
}

pub fn eviction_refusal(info: &str, allow_eviction: bool) -> Option<String> {
    let policy = info
        .lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))?
        .trim();
    if policy == "noeviction" || allow_eviction {
        return None;
    }
    Some(format!(
        "Redis maxmemory-policy is {policy}: Redis may evict keys, which silently deletes \
         acknowledged messages and dedupe markers, so writes are refused. Fix: run \
         `CONFIG SET maxmemory-policy noeviction` and put `maxmemory-policy noeviction` in \
         redis.conf (or set REDIS_ALLOW_EVICTION=true to accept losing messages)"
    ))
}

/// Owns the queue of saves and turns waiting saves into batched script calls.
struct Batcher {
    connection: ConnectionManager,
    script: Arc<Script>,
    conversations_key: Arc<str>,
    events_key: Arc<str>,
    event_retention: usize,
}

impl Batcher {
    async fn run(self, queue: mpsc::Receiver<SaveJob>) {
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut groups = Grouper::new(queue, usize::MAX, MAX_MESSAGES_PER_WRITE);
        // Wait for work, then for a free slot, and only then take the group: while every slot
        // is busy, saves pile up in the queue and leave together.
        while groups.ready().await {
            let Ok(slot) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let Some(jobs) = groups.next_async().await else {
                return;
            };
            let call = BatchCall {
                connection: self.connection.clone(),
                script: self.script.clone(),
                conversations_key: self.conversations_key.clone(),
                events_key: self.events_key.clone(),
                event_retention: self.event_retention,
            };
            tokio::spawn(async move {
                call.execute(jobs).await;
                drop(slot);
            });
        }
    }
}

/// One script call for a batch of saves.
struct BatchCall {
    connection: ConnectionManager,
    script: Arc<Script>,
    conversations_key: Arc<str>,
    events_key: Arc<str>,
    event_retention: usize,
}

impl BatchCall {
    async fn execute(mut self, jobs: Vec<SaveJob>) {
        let messages: Vec<&PreparedMessage> = jobs.iter().flat_map(|j| &j.messages).collect();
        let data_size = messages
            .iter()
            .map(|m| {
                let w = &m.write;
                m.keys.iter().map(String::len).sum::<usize>()
                    + w.record.len()
                    + w.compat.len()
                    + w.contact_json.len()
                    + w.preview_json.len()
                    + m.member.len()
                    + w.id_json.len()
                    + 2 * w.contact.len()
                    + w.identities.iter().map(|i| i.len() + 1).sum::<usize>()
                    + w.change
                        .as_ref()
                        .map_or(0, |c| c.json.len() + c.target.len())
                    + 96
            })
            .sum::<usize>();
        // EVALSHA written into one buffer (redis's ScriptInvocation would copy every key and
        // argument into its own Vec first).
        let mut cmd =
            redis::Cmd::with_capacity(5 + (5 + SAVE_ARGS) * messages.len(), data_size + 128);
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(2 + SAVE_KEYS * messages.len());
        cmd.arg(&*self.conversations_key).arg(&*self.events_key);
        for m in &messages {
            for key in &m.keys {
                cmd.arg(key);
            }
        }
        // The call's events are one stream entry, and `MAXLEN ~` counts entries: the stream
        // keeps at least EVENT_RETENTION events besides the new entry, so trimming never drops
        // an event of the write that adds it before a reader saw it.
        cmd.arg(self.event_retention + 1);
        for m in &messages {
            let w = &m.write;
            cmd.arg(&w.phone_number_id)
                .arg(&w.contact)
                .arg(&w.record)
                .arg(&w.compat)
                .arg(w.timestamp)
                .arg(&w.preview_json)
                .arg(&w.contact_json)
                .arg(if w.from_user { "1" } else { "0" })
                .arg(&m.member)
                .arg(&w.id_json)
                .arg(if w.is_new_message { "1" } else { "0" })
                .arg(w.kind_event.unwrap_or(""));
            match &w.change {
                Some(c) => cmd.arg(c.kind).arg(c.timestamp).arg(&c.json),
                None => cmd.arg("").arg(0).arg(""),
            };
            cmd.arg(w.event.unwrap_or(""));
            cmd.arg(w.identities.join(" "));
        }
        let outcome: Result<Vec<redis::Value>, redis::RedisError> = match cmd
            .query_async(&mut self.connection)
            .await
        {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // First call after a Redis restart (scripts are not persisted): load it, retry.
                match self
                    .script
                    .prepare_invoke()
                    .load_async(&mut self.connection)
                    .await
                {
                    Ok(_) => cmd.query_async(&mut self.connection).await,
                    Err(e) => Err(e),
                }
            }
            result => result,
        };
        let total = messages.len();
        drop(messages);
        let outcome = outcome.map_err(StoreError::Redis);
        let outcome = match outcome.as_deref().ok().and_then(script_moves) {
            Some(Ok(moves)) => return answer_moves(jobs, moves),
            Some(Err(e)) => Err(e),
            None => outcome,
        };
        let outcomes: Result<Vec<Outcome>, StoreError> = outcome.and_then(|values| {
            if values.len() != total {
                return Err(StoreError::Io(std::io::Error::other(format!(
                    "save script answered {} entries for {total} messages",
                    values.len()
                ))));
            }
            values
                .into_iter()
                .map(script_outcome)
                .collect::<Result<_, String>>()
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))
        });
        match outcomes {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for job in jobs {
                    let mine = outcomes.by_ref().take(job.messages.len()).collect();
                    let _ = job.reply.send(Ok(ChunkAnswer::Saved(mine)));
                }
            }
            Err(e) => {
                for job in jobs {
                    let error = match &e {
                        StoreError::Redis(e) => StoreError::Redis(e.clone()),
                        other => StoreError::Io(std::io::Error::other(other.to_string())),
                    };
                    let _ = job.reply.send(Err(error));
                }
            }
        }
    }
}

/// The pairs of a `moved` answer (index in the call from 0, the key), `None` for any other
/// answer; `Some(Err)` for a `moved` answer with a pair that does not read as one.
fn script_moves(values: &[redis::Value]) -> Option<Result<Vec<(usize, String)>, StoreError>> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    if values.first().and_then(text).as_deref() != Some("moved") {
        return None;
    }
    let pairs = &values[1..];
    let malformed = || {
        StoreError::Io(std::io::Error::other(format!(
            "save script answered a malformed move: {pairs:?}"
        )))
    };
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Some(Err(malformed()));
    }
    Some(
        pairs
            .chunks_exact(2)
            .map(|pair| match (&pair[0], text(&pair[1])) {
                (redis::Value::Int(i), Some(key)) if *i >= 1 => Ok((*i as usize - 1, key)),
                _ => Err(malformed()),
            })
            .collect(),
    )
}

/// Answers each job of a call the script refused with the moves of its own messages (indexes
/// in the job); a job with none is written again as it is.
fn answer_moves(jobs: Vec<SaveJob>, moves: Vec<(usize, String)>) {
    let mut start = 0;
    for job in jobs {
        let end = start + job.messages.len();
        let mine = moves
            .iter()
            .filter(|(i, _)| (start..end).contains(i))
            .map(|(i, key)| (i - start, key.clone()))
            .collect();
        start = end;
        let _ = job.reply.send(Ok(ChunkAnswer::Moved(mine)));
    }
}

/// One entry of the script's answer.
fn script_outcome(value: redis::Value) -> Result<Outcome, String> {
    match value {
        redis::Value::Int(1) => Ok(Outcome::Stored),
        redis::Value::Int(0) => Ok(Outcome::Duplicate),
        redis::Value::BulkString(sender) => Ok(Outcome::Conflict {
            stored_from: String::from_utf8_lossy(&sender).into_owned(),
        }),
        redis::Value::SimpleString(sender) => Ok(Outcome::Conflict {
            stored_from: sender,
        }),
        other => Err(format!("save script answered {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::eviction_refusal;

    #[test]
    fn only_noeviction_is_accepted_unless_allowed() {
        let info = "# Memory\r\nused_memory:1000\r\nmaxmemory_policy:allkeys-lru\r\n";
        let reason = eviction_refusal(info, false).unwrap();
        assert!(reason.contains("allkeys-lru"), "{reason}");
        assert!(
            reason.contains("CONFIG SET maxmemory-policy noeviction"),
            "{reason}"
        );
        assert!(reason.contains("REDIS_ALLOW_EVICTION"), "{reason}");
        assert_eq!(eviction_refusal(info, true), None);
        assert_eq!(
            eviction_refusal("maxmemory_policy:noeviction\r\n", false),
            None
        );
        // A server whose INFO does not report the policy cannot be judged.
        assert_eq!(eviction_refusal("# Memory\r\n", false), None);
    }
}
