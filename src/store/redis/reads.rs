//! The conversation API's reads on Redis, each one round trip: a message by id (`HGETALL` of its
//! hash), a page of conversations and a type-filtered page of one conversation's messages
//! (read-only scripts), and marking a conversation read (a script that writes the counter and its
//! `conversation_updated` event together). The exception: an unfiltered page of messages costs
//! two pipelined round trips, because moving records through Lua costs Redis far more than the
//! commands (see [`RedisStore::page_pipelined`]).
//!
//! The page scripts compute hash keys from the members they read (`<prefix>:conv:<member>`,
//! `<prefix>:msg:<id>`), which Redis Cluster would refuse; this backend targets a single Redis
//! (or a primary with replicas), as the FastAPI original did.

use std::sync::LazyLock;

use redis::Script;

use super::RedisStore;
use crate::store::StoreError;
use crate::store::record::window_opened_at;
use crate::store::view::{
    CHANGE_KINDS, ConversationFields, ConversationsQuery, LastInbound, MarkedRead, MessageCursor,
    MessagesQuery, Page, SINCE_WINDOW, Since, change_json, message_json, now_secs,
};

/// KEYS[1] = the conversations zset. ARGV: [1] the conversation hash prefix (`<p>:conv:`), [2]
/// the cursor's score (`+inf` for the first page), [3] the cursor's member (`` for the first
/// page), [4] limit, [5] phone_number_id filter (``: any), [6] `1`: unread only, [7] search text
/// (lower case, ``: none), [8] most entries scanned. Returns `{next score, next member, then 10
/// fields per conversation}` (its 8 own, the contact's `marketing` preference and
/// `last_call_at`); the next cursor is empty when the set is exhausted.
///
/// Order: most recent activity first (score descending), ties by member descending (what
/// `ZREVRANGEBYSCORE` gives), so a cursor `(score, member)` resumes exactly after its entry.
const CONVERSATIONS_SCRIPT: &str = r"
local limit, cap = tonumber(ARGV[4]), tonumber(ARGV[8])
local cscore, cmember = ARGV[2], ARGV[3]
local out, offset, scanned = {'', ''}, 0, 0
local found, last_score, last_member = 0, nil, nil
local done = false
while not done do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], cscore, '-inf', 'WITHSCORES', 'LIMIT', offset, 200)
  if #batch == 0 then return out end
  offset = offset + #batch / 2
  for j = 1, #batch, 2 do
    local member, score = batch[j], batch[j + 1]
    if not (cmember ~= '' and tonumber(score) == tonumber(cscore) and member >= cmember) then
      scanned = scanned + 1
      last_score, last_member = score, member
      local ok = ARGV[5] == '' or string.sub(member, 1, #ARGV[5] + 1) == ARGV[5] .. ':'
      local h
      if ok then
        h = redis.call('HMGET', ARGV[1] .. member, 'phone_number_id', 'contact', 'last_message',
          'last_message_id', 'last_message_at', 'last_inbound_at', 'message_count', 'unread_count',
          'marketing', 'last_call_at')
        ok = h[2] and h[3] and h[4]
        if ok and ARGV[6] == '1' then ok = (tonumber(h[8]) or 0) > 0 end
        if ok and ARGV[7] ~= '' then
          ok = string.find(string.lower(member .. ' ' .. h[2]), ARGV[7], 1, true) ~= nil
        end
      end
      if ok then
        for f = 1, 10 do out[#out + 1] = h[f] end
        found = found + 1
      end
      if found == limit or scanned >= cap then
        out[1], out[2] = last_score, last_member
        return out
      end
    end
  end
end
return out
";

/// KEYS[1] = the conversation's message index. ARGV: [1] the message hash prefix (`<p>:msg:`),
/// [2] phone_number_id, [3] mode (`latest`, `before`, `after`), [4] the cursor member, [5]
/// limit, [6] type filter (``: any), [7] most entries scanned. Returns `member, record, current
/// status, edited, deleted, reaction` per message (`` when absent), in index order (newest
/// first, or oldest first for `after`).
const MESSAGES_SCRIPT: &str = r"
local limit, cap = tonumber(ARGV[5]), tonumber(ARGV[7])
local mode, out, found, scanned, offset = ARGV[3], {}, 0, 0, 0
local prefix, pnid, kind = ARGV[1], ARGV[2], ARGV[6]
local st, edited, deleted, reaction = pnid .. ':st', pnid .. ':edited', pnid .. ':deleted', pnid .. ':reaction'
while true do
  -- Without a type filter every entry is a hit: fetch no more than the page needs.
  local want = 100
  if kind == '' then want = math.min(math.max(limit - found, 1), 100) end
  local batch
  if mode == 'after' then
    batch = redis.call('ZRANGEBYLEX', KEYS[1], '(' .. ARGV[4], '+', 'LIMIT', offset, want)
  elseif mode == 'before' then
    batch = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. ARGV[4], '-', 'LIMIT', offset, want)
  else
    batch = redis.call('ZREVRANGEBYLEX', KEYS[1], '+', '-', 'LIMIT', offset, want)
  end
  if #batch == 0 then return out end
  offset = offset + #batch
  for _, member in ipairs(batch) do
    scanned = scanned + 1
    local h = redis.call('HMGET', prefix .. string.sub(member, 12), pnid, st, edited, deleted, reaction)
    local ok = h[1]
    if ok and kind ~= '' then ok = cjson.decode(h[1])['type'] == kind end
    if ok then
      local n = #out
      out[n + 1], out[n + 2], out[n + 3] = member, h[1], h[2] or ''
      out[n + 4], out[n + 5], out[n + 6] = h[3] or '', h[4] or '', h[5] or ''
      found = found + 1
    end
    if found == limit or scanned >= cap then return out end
  end
end
";

/// KEYS[1] = the conversation hash, KEYS[2] = the event stream. ARGV[1] = MAXLEN. Sets the
/// unread count to 0 and, if it was not 0, adds a `conversation_updated` event with the
/// conversation's fields. Returns its 10 fields (as [`CONVERSATIONS_SCRIPT`] does; empty when
/// there is no such conversation), its `last_inbound_id` and whether it changed. The event's
/// window opens at the later of `last_inbound_at` and `last_call_at`.
const READ_SCRIPT: &str = concat!(
    conversation_updated_lua!(),
    r#"
local h = redis.call('HMGET', KEYS[1], 'phone_number_id', 'contact', 'last_message',
  'last_message_id', 'last_message_at', 'last_inbound_at', 'message_count', 'unread_count',
  'marketing', 'last_call_at', 'last_inbound_id')
if not h[2] then return {} end
if (tonumber(h[8]) or 0) == 0 then h[12] = '0'; return h end
redis.call('HSET', KEYS[1], 'unread_count', 0)
h[8] = '0'
local data = conversation_updated(h[1], h[2], h[3], h[4], h[5], h[7], '0',
  window_expires(tonumber(h[6]), tonumber(h[10])))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'conversation_updated', data)
h[12] = '1'
return h
"#
);

/// KEYS[1] = the conversation hash, KEYS[2] = its message index, KEYS[3] = the conversations
/// zset, KEYS[4] = the event stream, KEYS[5] = its index of changes (edits, deletions, reactions). ARGV: [1] the message hash prefix, [2] phone_number_id, [3]
/// the conversation's member in KEYS[3], [4] MAXLEN. Deletes the conversation and, per message,
/// its record and statuses for this business number, keeping the `<phone_number_id>:from` field
/// (so Meta's retries are still duplicates), with a `conversation_deleted` event. Returns the
/// number of messages, or -1 when there is no such conversation. The contact's `marketing` and
/// `last_call_at` in the conversation hash stay (as the embedded store keeps them).
const DELETE_SCRIPT: &str = concat!(
    r#"
local contact = redis.call('HGET', KEYS[1], 'contact')
if not contact then return -1 end
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, m in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do members[#members + 1] = m end
local pnid = ARGV[2]
local keep = pnid .. ':from'
for _, m in ipairs(members) do
  local key = ARGV[1] .. string.sub(m, 12)
  local drop = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if f == pnid or (string.sub(f, 1, #pnid + 1) == pnid .. ':' and f ~= keep) then drop[#drop + 1] = f end
  end
  if #drop > 0 then redis.call('HDEL', key, unpack(drop)) end
end
redis.call('HDEL', KEYS[1], 'phone_number_id', "#,
    conversation_fields_lua!(),
    r#")
redis.call('DEL', KEYS[2], KEYS[5])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'conversation_deleted',
  '{"phone_number_id":"' .. pnid .. '","contact":' .. contact .. ',"messages_deleted":' .. #members .. '}')
return #members
"#
);

/// KEYS[1] = a FastAPI list. ARGV: [1] `id` or `ts`, [2] the message id's `{"id":<JSON>` prefix
/// or the timestamp, [3] limit (0: all), [4] how many of the most recent items are looked
/// through. `id`: the items after that message (`nil` when it is not among them); `ts`: the items
/// whose `timestamp` is later; oldest first, at most `limit`. Items are matched as text (the
/// FastAPI shape starts with `{"id":` and has the top-level `timestamp` before `raw`), not
/// decoded.
const SINCE_SCRIPT: &str = r#"
local len = redis.call('LLEN', KEYS[1])
local first = math.max(0, len - tonumber(ARGV[4]))
local limit = tonumber(ARGV[3])
local out = {}
if ARGV[1] == 'id' then
  -- Our JSON is compact; the FastAPI original's (Python json.dumps) has a space after colons.
  local spaced = '{"id": ' .. string.sub(ARGV[2], 7)
  local idx, at = len - 1, nil
  while idx >= first and not at do
    local from = math.max(first, idx - 199)
    local items = redis.call('LRANGE', KEYS[1], from, idx)
    for j = #items, 1, -1 do
      local item = items[j]
      if (string.sub(item, 1, #ARGV[2]) == ARGV[2] and string.find(item, '^[,}]', #ARGV[2] + 1))
        or (string.sub(item, 1, #spaced) == spaced and string.find(item, '^[,}]', #spaced + 1)) then
        at = from + j - 1
        break
      end
    end
    idx = from - 1
  end
  if not at then return false end
  local last = len - 1
  if limit > 0 then last = math.min(last, at + limit) end
  if last <= at then return out end
  return redis.call('LRANGE', KEYS[1], at + 1, last)
end
local since = tonumber(ARGV[2])
local idx = first
while idx < len do
  local items = redis.call('LRANGE', KEYS[1], idx, idx + 199)
  for _, item in ipairs(items) do
    local ts = tonumber(string.match(item, '"timestamp": ?"?(%d+)') or '')
    if ts and ts > since then
      out[#out + 1] = item
      if limit > 0 and #out >= limit then return out end
    end
  end
  idx = idx + 200
end
return out
"#;

static CONVERSATIONS: LazyLock<Script> = LazyLock::new(|| Script::new(CONVERSATIONS_SCRIPT));
static MESSAGES: LazyLock<Script> = LazyLock::new(|| Script::new(MESSAGES_SCRIPT));
static MARK_READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_SCRIPT));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_SCRIPT));
static SINCE: LazyLock<Script> = LazyLock::new(|| Script::new(SINCE_SCRIPT));
static IDEMPOTENCY: LazyLock<Script> = LazyLock::new(|| Script::new(IDEMPOTENCY_SCRIPT));

/// KEYS[1] = the key's hash (`<p>:idem:<key>`: `fp`, then `status` and `body` once answered).
/// ARGV[1] = the body fingerprint, [2] = `claim` | `finish` | `release`, [3] = TTL seconds,
/// [4] = status, [5] = body (finish; the answer is then kept the TTL from now). Answers `{state, status?, body?}` with state `fresh`,
/// `pending`, `mismatch` or `done`.
const IDEMPOTENCY_SCRIPT: &str = r"
local fp, op = ARGV[1], ARGV[2]
local h = redis.call('HMGET', KEYS[1], 'fp', 'status', 'body')
if op == 'claim' then
  if not h[1] then
    redis.call('HSET', KEYS[1], 'fp', fp)
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return {'fresh'}
  end
  if h[1] ~= fp then return {'mismatch'} end
  if not h[2] then return {'pending'} end
  return {'done', h[2], h[3]}
end
if h[1] ~= fp then return {'fresh'} end
if op == 'finish' then
  redis.call('HSET', KEYS[1], 'status', ARGV[4], 'body', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
elseif not h[2] then
  redis.call('DEL', KEYS[1])
end
return {'fresh'}
";

/// Most index entries one page request scans (filters may skip many).
const SCAN_CAP: usize = 5_000;

fn fields(values: &[Option<String>]) -> Option<ConversationFields> {
    let text = |i: usize| values.get(i).cloned().flatten();
    let number = |i: usize| text(i).and_then(|s| s.parse::<i64>().ok());
    Some(ConversationFields {
        phone_number_id: text(0)?,
        contact_json: text(1)?,
        last_message: text(2)?,
        last_message_id: text(3)?,
        last_message_at: number(4).unwrap_or(0),
        last_inbound_at: number(5).unwrap_or(-1),
        last_call_at: number(9).unwrap_or(-1),
        message_count: number(6).unwrap_or(0),
        unread_count: number(7).unwrap_or(0),
        marketing: text(8),
    })
}

impl RedisStore {
    pub(super) fn prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// The contact's latest message to `phone_number_id`: the conversation hash's
    /// `last_inbound_at` and `last_inbound_id` (one `HMGET`).
    pub(crate) async fn last_inbound(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<LastInbound>, StoreError> {
        let (at, id): (Option<i64>, Option<String>) = redis::cmd("HMGET")
            .arg(super::conv_key(self.prefix(), phone_number_id, contact))
            .arg("last_inbound_at")
            .arg("last_inbound_id")
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(LastInbound::of(at, id.as_deref()))
    }

    /// When the contact's 24-hour window with `phone_number_id` opened: the later of the
    /// conversation hash's `last_inbound_at` and `last_call_at` (`HMGET`); and the key the
    /// contact's alias names, if any (`HGET`, pipelined: one round trip).
    pub(crate) async fn window_opened_at(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<(Option<i64>, Option<String>), StoreError> {
        type Fields = (Option<i64>, Option<i64>, Option<i64>);
        let ((at, call, count), alias): (Fields, Option<String>) = redis::pipe()
            .cmd("HMGET")
            .arg(super::conv_key(self.prefix(), phone_number_id, contact))
            .arg("last_inbound_at")
            .arg("last_call_at")
            .arg("message_count")
            .cmd("HGET")
            .arg(super::alias_key(self.prefix(), phone_number_id))
            .arg(contact)
            .query_async(&mut self.inner.connection.clone())
            .await?;
        let opened = window_opened_at(at.unwrap_or(-1), call.unwrap_or(-1));
        // A contact with a conversation of its own is its own key.
        Ok((
            (opened >= 0).then_some(opened),
            alias.filter(|_| count.is_none()),
        ))
    }

    /// The conversation key an alias of `identity` names ([`crate::store::alias`]), unless
    /// `identity` has a conversation of its own (`HGET` and `HEXISTS`, one round trip).
    pub(crate) async fn alias_of(
        &self,
        phone_number_id: &str,
        identity: &str,
    ) -> Result<Option<String>, StoreError> {
        let (alias, own): (Option<String>, bool) = redis::pipe()
            .cmd("HGET")
            .arg(super::alias_key(self.prefix(), phone_number_id))
            .arg(identity)
            .cmd("HEXISTS")
            .arg(super::conv_key(self.prefix(), phone_number_id, identity))
            .arg("message_count")
            .query_async(&mut self.inner.connection.clone())
            .await?;
        Ok(alias.filter(|_| !own))
    }

    /// A message by id with its status history: the record under `phone_number_id` (or under
    /// the lowest business number that has one).
    pub(crate) async fn message(
        &self,
        id: &str,
        phone_number_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(format!("{}:msg:{id}", self.prefix()))
            .query_async(&mut self.inner.connection.clone())
            .await?;
        let mut tenants: Vec<&str> = all
            .iter()
            .filter(|(field, _)| !field.contains(':'))
            .map(|(field, _)| field.as_str())
            .filter(|t| phone_number_id.is_none_or(|p| p == *t))
            .collect();
        tenants.sort_unstable();
        let Some(tenant) = tenants.first().copied() else {
            return Ok(None);
        };
        let record = all.iter().find(|(f, _)| f == tenant).map(|(_, v)| v);
        let current = all
            .iter()
            .find(|(f, _)| f.strip_prefix(tenant) == Some(":st"))
            .map(|(_, v)| v.as_str());
        let history = all
            .iter()
            .filter_map(|(f, v)| {
                let status = f.strip_prefix(tenant)?.strip_prefix(":s:")?;
                // `<timestamp> <0|1> <json>`
                let detail = v.splitn(3, ' ').nth(2)?;
                Some((status.to_owned(), detail.to_owned()))
            })
            .collect();
        let changes: Vec<(&str, &str)> = CHANGE_KINDS
            .iter()
            .filter_map(|kind| {
                let (_, value) = all.iter().find(|(f, _)| {
                    f.strip_prefix(tenant).and_then(|r| r.strip_prefix(':')) == Some(*kind)
                })?;
                Some((*kind, change_json(value)?))
            })
            .collect();
        Ok(record.map(|r| message_json(r, current, Some(history), &changes)))
    }

    /// A page of conversations, most recent activity first.
    pub(crate) async fn conversations(
        &self,
        query: &ConversationsQuery,
    ) -> Result<Page, StoreError> {
        let (score, member) = match query.cursor.as_deref().and_then(|c| c.split_once(' ')) {
            Some((score, member)) if score.parse::<f64>().is_ok() => (score, member),
            _ => ("+inf", ""),
        };
        let values: Vec<Option<String>> = CONVERSATIONS
            .key(format!("{}:convs", self.prefix()))
            .arg(format!("{}:conv:", self.prefix()))
            .arg(score)
            .arg(member)
            .arg(query.limit)
            .arg(query.phone_number_id.as_deref().unwrap_or(""))
            .arg(if query.unread_only { "1" } else { "0" })
            .arg(query.q.as_deref().unwrap_or(""))
            .arg(SCAN_CAP)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        let now = now_secs();
        let next_cursor = match (values.first(), values.get(1)) {
            (Some(Some(score)), Some(Some(member))) if !score.is_empty() => {
                Some(format!("{score} {member}"))
            }
            _ => None,
        };
        let items = values
            .get(2..)
            .unwrap_or_default()
            .chunks(10)
            .filter_map(|c| fields(c).map(|f| f.json(Some(now))))
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// A page of one conversation's messages, oldest first.
    pub(crate) async fn conversation_messages(
        &self,
        query: &MessagesQuery,
    ) -> Result<Page, StoreError> {
        let (mode, cursor) = match &query.cursor {
            MessageCursor::Latest => ("latest", ""),
            MessageCursor::Before(c) => ("before", c.as_str()),
            MessageCursor::After(c) => ("after", c.as_str()),
        };
        let index = format!(
            "{}:cmsgs:{}:{}",
            self.prefix(),
            query.phone_number_id,
            query.contact
        );
        let values = match self.page_pipelined(query, &index, mode, cursor).await? {
            Some(values) => values,
            None => {
                MESSAGES
                    .key(&index)
                    .arg(format!("{}:msg:", self.prefix()))
                    .arg(&query.phone_number_id)
                    .arg(mode)
                    .arg(cursor)
                    .arg(query.limit)
                    .arg(query.kind.as_deref().unwrap_or(""))
                    .arg(SCAN_CAP)
                    .invoke_async(&mut self.inner.connection.clone())
                    .await?
            }
        };
        let mut rows: Vec<(&str, String)> = values
            .chunks(6)
            .filter_map(|c| match c {
                [member, record, current, edited, deleted, reaction] => {
                    let changes: Vec<(&str, &str)> = CHANGE_KINDS
                        .iter()
                        .zip([edited, deleted, reaction])
                        .filter_map(|(kind, value)| Some((*kind, change_json(value)?)))
                        .collect();
                    let current = Some(current.as_str()).filter(|s| !s.is_empty());
                    Some((
                        member.as_str(),
                        message_json(record, current, None, &changes),
                    ))
                }
                _ => None,
            })
            .collect();
        let full = rows.len() == query.limit;
        if mode != "after" {
            rows.reverse();
        }
        // Older pages continue from the oldest item, newer ones from the newest.
        let next_cursor = if !full {
            None
        } else if mode == "after" {
            rows.last().map(|(m, _)| (*m).to_owned())
        } else {
            rows.first().map(|(m, _)| (*m).to_owned())
        };
        Ok(Page {
            items: rows.into_iter().map(|(_, json)| json).collect(),
            next_cursor,
        })
    }

    /// A page without a type filter in two pipelined round trips, the index entries then one
    /// `HMGET` per message, in the shape [`MESSAGES_SCRIPT`] answers (`None`: use the script).
    ///
    /// This is the one read that deliberately costs two round trips: moving a page of records
    /// through Lua costs Redis several times the CPU of the commands themselves (measured with a
    /// 1,000-message conversation, 20 per page: 118 µs of script time per page against 16 µs of
    /// commands; `scripts/bench`, history scenario), and without a filter every index entry is a
    /// hit, so nothing is gained by deciding in Redis. If a record is missing (the conversation
    /// was deleted between the two round trips), the page is read again by the script.
    async fn page_pipelined(
        &self,
        query: &MessagesQuery,
        index: &str,
        mode: &str,
        cursor: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        if query.kind.is_some() {
            return Ok(None);
        }
        let mut connection = self.inner.connection.clone();
        let mut range = match mode {
            "after" => {
                let mut c = redis::cmd("ZRANGEBYLEX");
                c.arg(index).arg(format!("({cursor}")).arg("+");
                c
            }
            "before" => {
                let mut c = redis::cmd("ZREVRANGEBYLEX");
                c.arg(index).arg(format!("({cursor}")).arg("-");
                c
            }
            _ => {
                let mut c = redis::cmd("ZREVRANGEBYLEX");
                c.arg(index).arg("+").arg("-");
                c
            }
        };
        let members: Vec<String> = range
            .arg("LIMIT")
            .arg(0)
            .arg(query.limit)
            .query_async(&mut connection)
            .await?;
        if members.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let pnid = &query.phone_number_id;
        let fields = [
            pnid.clone(),
            format!("{pnid}:st"),
            format!("{pnid}:edited"),
            format!("{pnid}:deleted"),
            format!("{pnid}:reaction"),
        ];
        let mut pipe = redis::pipe();
        for member in &members {
            let id = member.get(11..).unwrap_or_default();
            pipe.cmd("HMGET")
                .arg(format!("{}:msg:{id}", self.prefix()))
                .arg(&fields);
        }
        let hashes: Vec<Vec<Option<String>>> = pipe.query_async(&mut connection).await?;
        let mut values = Vec::with_capacity(members.len() * 6);
        for (member, hash) in members.into_iter().zip(hashes) {
            let mut hash = hash.into_iter();
            let Some(Some(record)) = hash.next() else {
                return Ok(None);
            };
            values.push(member);
            values.push(record);
            values.extend(hash.map(Option::unwrap_or_default));
        }
        Ok(Some(values))
    }

    /// See [`crate::store::Store::idempotency`].
    pub(crate) async fn idempotency(
        &self,
        key: &str,
        fingerprint: &str,
        op: crate::store::IdempotencyOp,
    ) -> Result<crate::store::Claim, StoreError> {
        use crate::store::{Claim, IdempotencyOp};
        let mut call = IDEMPOTENCY.key(format!("{}:idem:{key}", self.prefix()));
        let ttl = crate::store::IDEMPOTENCY_TTL_SECS;
        match op {
            IdempotencyOp::Claim => call.arg(fingerprint).arg("claim").arg(ttl),
            IdempotencyOp::Release => call.arg(fingerprint).arg("release").arg(ttl),
            IdempotencyOp::Finish { status, body } => call
                .arg(fingerprint)
                .arg("finish")
                .arg(ttl)
                .arg(status)
                .arg(body),
        };
        let answer: Vec<String> = call
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(match answer.first().map(String::as_str) {
            Some("pending") => Claim::InProgress,
            Some("mismatch") => Claim::Mismatch,
            Some("done") => Claim::Done {
                status: answer.get(1).and_then(|s| s.parse().ok()).unwrap_or(200),
                body: answer.get(2).cloned().unwrap_or_default(),
            },
            _ => Claim::Fresh,
        })
    }

    /// Sets a conversation's unread count to 0 (with a `conversation_updated` event when it
    /// was not 0). `None` when there is no such conversation.
    pub(crate) async fn mark_read(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<MarkedRead>, StoreError> {
        let values: Vec<Option<String>> = MARK_READ
            .key(super::conv_key(self.prefix(), phone_number_id, contact))
            .key(format!("{}:events", self.prefix()))
            .arg(self.inner.event_retention)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(fields(&values).map(|f| MarkedRead {
            json: f.json(Some(now_secs())),
            last_inbound: LastInbound::of(
                Some(f.last_inbound_at),
                values.get(10).cloned().flatten().as_deref(),
            ),
        }))
    }

    /// Deletes a conversation; the number of its messages, `None` when there is none.
    pub(crate) async fn delete_conversation(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<u64>, StoreError> {
        let p = self.prefix();
        let deleted: i64 = DELETE
            .key(super::conv_key(p, phone_number_id, contact))
            .key(format!("{p}:cmsgs:{phone_number_id}:{contact}"))
            .key(format!("{p}:convs"))
            .key(format!("{p}:events"))
            .key(format!("{p}:cchanges:{phone_number_id}:{contact}"))
            .arg(format!("{p}:msg:"))
            .arg(phone_number_id)
            .arg(format!("{phone_number_id}:{contact}"))
            .arg(self.inner.event_retention)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(u64::try_from(deleted).ok())
    }

    /// A number's FastAPI items after `since` (see [`crate::store::Store::messages_since`]).
    pub(crate) async fn messages_since(
        &self,
        contact: &str,
        since: &Since,
        limit: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let (mode, value) = match since {
            Since::Message(id) => (
                "id",
                format!(
                    "{{\"id\":{}",
                    serde_json::to_string(id).expect("strings serialize")
                ),
            ),
            Since::Timestamp(ts) => ("ts", ts.to_string()),
        };
        let items: Option<Vec<String>> = SINCE
            .key(self.list_key(contact))
            .arg(mode)
            .arg(value)
            .arg(limit)
            .arg(SINCE_WINDOW)
            .invoke_async(&mut self.inner.connection.clone())
            .await?;
        Ok(items)
    }
}
