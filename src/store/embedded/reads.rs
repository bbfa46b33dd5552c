//! The conversation API's reads on SQLite, each one query batch on a reader connection (WAL lets
//! them run beside the writer): a message by id with its statuses, a page of conversations
//! (keyset pagination on `conversation_by_activity`) and a page of one conversation's messages
//! (keyset pagination on `messages_by_conversation`, the same `(timestamp, id)` order as the
//! Redis index's `<timestamp 10 digits>:<id>` members, so cursors mean the same on both).

use rusqlite::{OptionalExtension, params};

use super::EmbeddedStore;
use crate::store::StoreError;
use crate::store::view::{
    CHANGE_KINDS, ConversationFields, ConversationsQuery, LastInbound, MessageCursor,
    MessagesQuery, Page, SINCE_WINDOW, Since, message_json, now_secs,
};

/// A cursor `<10-digit timestamp>:<id>` as the pair it stands for.
fn split_member(cursor: &str) -> Option<(i64, String)> {
    let (ts, id) = cursor.split_once(':')?;
    Some((ts.parse().ok()?, id.to_owned()))
}

/// Stored changes in the order every view lists them ([`CHANGE_KINDS`]).
fn ordered_changes(changes: &[(String, String)]) -> Vec<(&str, &str)> {
    CHANGE_KINDS
        .iter()
        .filter_map(|kind| {
            let (_, json) = changes.iter().find(|(k, _)| k == kind)?;
            Some((*kind, json.as_str()))
        })
        .collect()
}

/// The current status among the statuses stored for a message: the highest rank.
fn current_of<'a>(statuses: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    statuses.max_by_key(|s| crate::store::record::status_rank(s))
}

pub(super) fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationFields> {
    Ok(ConversationFields {
        phone_number_id: r.get(0)?,
        contact_json: r.get(1)?,
        last_message: r.get(2)?,
        last_message_id: r.get(3)?,
        last_message_at: r.get(4)?,
        last_inbound_at: r.get(5)?,
        last_call_at: r.get::<_, Option<i64>>(8)?.unwrap_or(-1),
        message_count: r.get(6)?,
        unread_count: r.get(7)?,
        marketing: None,
    })
}

/// The contact's stored marketing preference, as a column after [`conversation_columns`] (a
/// literal too).
macro_rules! marketing_column {
    () => {
        "(SELECT marketing FROM preferences p \
         WHERE p.phone_number_id = conversation.phone_number_id AND p.contact = conversation.contact)"
    };
}
pub(super) use marketing_column;

/// The columns [`conversation_row`] reads, in order, as a literal (so that statements can be
/// `concat!`ed constants): the conversation's own, then the contact's latest call to the
/// business number (`NULL`: none).
/// A subquery: the conversation key the alias of `?2` names with business number `?1`, unless
/// `?2` has a conversation of its own ([`crate::store::alias`]); NULL when none.
macro_rules! alias_of_subquery {
    () => {
        "(SELECT contact FROM contact_aliases WHERE phone_number_id = ?1 AND alias = ?2
            AND NOT EXISTS (SELECT 1 FROM conversation
                            WHERE phone_number_id = ?1 AND contact = ?2))"
    };
}

macro_rules! conversation_columns {
    () => {
        "phone_number_id, contact_json, last_message, last_message_id, last_message_at, \
         last_inbound_at, message_count, unread_count, \
         (SELECT last_call_at FROM user_calls u WHERE u.phone_number_id = \
         conversation.phone_number_id AND u.contact = conversation.contact)"
    };
}
pub(super) use conversation_columns;

/// A page of the conversation list (see [`EmbeddedStore::conversations`]).
const CONVERSATION_PAGE: &str = concat!(
    "SELECT ",
    conversation_columns!(),
    ", contact, ",
    marketing_column!(),
    " FROM conversation
     WHERE (?1 OR (last_message_at, phone_number_id, contact) < (?2, ?3, ?4))
       AND (?5 IS NULL OR phone_number_id = ?5)
       AND (NOT ?6 OR unread_count > 0)
       AND (?7 IS NULL OR lower(contact || ' ' || contact_json) LIKE ?7 ESCAPE '\\')
     ORDER BY last_message_at DESC, phone_number_id DESC, contact DESC
     LIMIT ?8"
);

impl EmbeddedStore {
    /// The contact's latest message to `phone_number_id` (see
    /// [`crate::store::Store::last_inbound`]).
    pub(crate) async fn last_inbound(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<LastInbound>, StoreError> {
        let (tenant, contact) = (phone_number_id.to_owned(), contact.to_owned());
        self.read(move |conn| {
            let found: Option<(i64, Option<String>)> = conn
                .prepare_cached(
                    "SELECT last_inbound_at, last_inbound_id FROM conversation
                     WHERE phone_number_id = ?1 AND contact = ?2",
                )?
                .query_row(params![tenant, contact], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(found.and_then(|(at, id)| LastInbound::of(Some(at), id.as_deref())))
        })
        .await
    }

    /// When the contact's 24-hour window opened (see
    /// [`crate::store::Store::window_opened_at`]): the later of the conversation's
    /// `last_inbound_at` and the contact's `user_calls` row; and the key the contact's alias
    /// names, if any. One query.
    pub(crate) async fn window_opened_at(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<(Option<i64>, Option<String>), StoreError> {
        let (tenant, contact) = (phone_number_id.to_owned(), contact.to_owned());
        self.read(move |conn| {
            let (opened, alias): (i64, Option<String>) = conn
                .prepare_cached(concat!(
                    "SELECT max(
                         coalesce((SELECT last_inbound_at FROM conversation
                                   WHERE phone_number_id = ?1 AND contact = ?2), -1),
                         coalesce((SELECT last_call_at FROM user_calls
                                   WHERE phone_number_id = ?1 AND contact = ?2), -1)), ",
                    alias_of_subquery!()
                ))?
                .query_row(params![tenant, contact], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(((opened >= 0).then_some(opened), alias))
        })
        .await
    }

    /// The conversation key an alias of `identity` names ([`crate::store::alias`]), unless
    /// `identity` has a conversation of its own.
    pub(crate) async fn alias_of(
        &self,
        phone_number_id: &str,
        identity: &str,
    ) -> Result<Option<String>, StoreError> {
        let (tenant, identity) = (phone_number_id.to_owned(), identity.to_owned());
        self.read(move |conn| {
            // One row always: NULL when there is no alias.
            conn.prepare_cached(concat!("SELECT ", alias_of_subquery!()))?
                .query_row(params![tenant, identity], |r| r.get(0))
        })
        .await
    }

    /// A message by id with its status history (see [`crate::store::Store::message`]).
    pub(crate) async fn message(
        &self,
        id: &str,
        phone_number_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let id = id.to_owned();
        let tenant = phone_number_id.map(str::to_owned);
        self.read(move |conn| {
            let found: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT phone_number_id, record FROM messages
                     WHERE id = ?1 AND (?2 IS NULL OR phone_number_id = ?2) AND record IS NOT NULL
                     ORDER BY phone_number_id LIMIT 1",
                )?
                .query_row(params![id, tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((tenant, record)) = found else {
                return Ok(None);
            };
            let statuses: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT status, detail FROM statuses
                     WHERE phone_number_id = ?1 AND message_id = ?2",
                )?
                .query_map(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let current = current_of(statuses.iter().map(|(s, _)| s.as_str())).map(str::to_owned);
            let changes: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT kind, change FROM message_changes
                     WHERE phone_number_id = ?1 AND message_id = ?2",
                )?
                .query_map(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let changes = ordered_changes(&changes);
            Ok(Some(message_json(
                &record,
                current.as_deref(),
                Some(statuses),
                &changes,
            )))
        })
        .await
    }

    /// A page of conversations, most recent activity first.
    pub(crate) async fn conversations(
        &self,
        query: &ConversationsQuery,
    ) -> Result<Page, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            // Cursor: `<last_message_at> <phone_number_id>:<contact>` of the last item.
            let cursor = query.cursor.as_deref().and_then(|c| {
                let (at, rest) = c.split_once(' ')?;
                let (pnid, contact) = rest.split_once(':')?;
                Some((at.parse::<i64>().ok()?, pnid.to_owned(), contact.to_owned()))
            });
            let (at, pnid, contact) = cursor.unwrap_or((i64::MAX, String::new(), String::new()));
            let first = query.cursor.is_none();
            let like = query.q.as_ref().map(|q| {
                format!(
                    "%{}%",
                    q.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )
            });
            let mut statement = conn.prepare_cached(CONVERSATION_PAGE)?;
            let rows: Vec<(ConversationFields, String)> = statement
                .query_map(
                    params![
                        first,
                        at,
                        pnid,
                        contact,
                        query.phone_number_id,
                        query.unread_only,
                        like,
                        query.limit as i64
                    ],
                    |r| {
                        let mut fields = conversation_row(r)?;
                        fields.marketing = r.get(10)?;
                        Ok((fields, r.get(9)?))
                    },
                )?
                .collect::<rusqlite::Result<_>>()?;
            let next_cursor = (rows.len() == query.limit)
                .then(|| rows.last())
                .flatten()
                .map(|(f, contact)| {
                    format!("{} {}:{contact}", f.last_message_at, f.phone_number_id)
                });
            let now = now_secs();
            Ok(Page {
                items: rows.iter().map(|(f, _)| f.json(Some(now))).collect(),
                next_cursor,
            })
        })
        .await
    }

    /// A page of one conversation's messages, oldest first.
    pub(crate) async fn conversation_messages(
        &self,
        query: &MessagesQuery,
    ) -> Result<Page, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            let (after, cursor) = match &query.cursor {
                MessageCursor::Latest => (false, None),
                MessageCursor::Before(c) => (false, Some(c.as_str())),
                MessageCursor::After(c) => (true, Some(c.as_str())),
            };
            let (ts, id) = match cursor.map(split_member) {
                // An unreadable cursor reads as the end of the list, not as everything.
                Some(None) => return Ok(Page::default()),
                Some(Some(pair)) => pair,
                None => (i64::MAX, String::new()),
            };
            let sql = if after {
                "SELECT m.timestamp, m.id, m.record, (SELECT group_concat(status) FROM statuses s
                     WHERE s.phone_number_id = m.phone_number_id AND s.message_id = m.id),
                     (SELECT json_group_array(json_array(kind, change)) FROM message_changes c
                     WHERE c.phone_number_id = m.phone_number_id AND c.message_id = m.id)
                 FROM messages m
                 WHERE m.phone_number_id = ?1 AND m.contact = ?2 AND (m.timestamp, m.id) > (?3, ?4)
                   AND m.record IS NOT NULL AND m.in_history
                   AND (?5 IS NULL OR json_extract(m.record, '$.type') = ?5)
                 ORDER BY m.timestamp, m.id LIMIT ?6"
            } else {
                "SELECT m.timestamp, m.id, m.record, (SELECT group_concat(status) FROM statuses s
                     WHERE s.phone_number_id = m.phone_number_id AND s.message_id = m.id),
                     (SELECT json_group_array(json_array(kind, change)) FROM message_changes c
                     WHERE c.phone_number_id = m.phone_number_id AND c.message_id = m.id)
                 FROM messages m
                 WHERE m.phone_number_id = ?1 AND m.contact = ?2 AND (m.timestamp, m.id) < (?3, ?4)
                   AND m.record IS NOT NULL AND m.in_history
                   AND (?5 IS NULL OR json_extract(m.record, '$.type') = ?5)
                 ORDER BY m.timestamp DESC, m.id DESC LIMIT ?6"
            };
            let mut rows: Vec<(String, String)> = conn
                .prepare_cached(sql)?
                .query_map(
                    params![
                        query.phone_number_id,
                        query.contact,
                        ts,
                        id,
                        query.kind,
                        query.limit as i64
                    ],
                    |r| {
                        let ts: i64 = r.get(0)?;
                        let id: String = r.get(1)?;
                        let record: String = r.get(2)?;
                        let statuses: Option<String> = r.get(3)?;
                        let changes: Option<String> = r.get(4)?;
                        let changes: Vec<(String, String)> = changes
                            .and_then(|c| serde_json::from_str(&c).ok())
                            .unwrap_or_default();
                        let current = statuses
                            .as_deref()
                            .and_then(|s| current_of(s.split(',')))
                            .map(str::to_owned);
                        Ok((
                            crate::store::record::index_key(ts, &id),
                            message_json(
                                &record,
                                current.as_deref(),
                                None,
                                &ordered_changes(&changes),
                            ),
                        ))
                    },
                )?
                .collect::<rusqlite::Result<_>>()?;
            let full = rows.len() == query.limit;
            if !after {
                rows.reverse();
            }
            let next_cursor = if !full {
                None
            } else if after {
                rows.last().map(|(m, _)| m.clone())
            } else {
                rows.first().map(|(m, _)| m.clone())
            };
            Ok(Page {
                items: rows.into_iter().map(|(_, json)| json).collect(),
                next_cursor,
            })
        })
        .await
    }

    /// A number's FastAPI items after `since` (see [`crate::store::Store::messages_since`]).
    pub(crate) async fn messages_since(
        &self,
        contact: &str,
        since: &Since,
        limit: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let contact = contact.to_owned();
        let since = since.clone();
        self.read(move |conn| {
            // The window: the number's SINCE_WINDOW most recent rows, as on Redis.
            let first: i64 = conn
                .prepare_cached(
                    "SELECT coalesce(min(seq), 0) FROM (SELECT seq FROM inbound_messages
                     WHERE number = ?1 ORDER BY seq DESC LIMIT ?2)",
                )?
                .query_row(params![contact, SINCE_WINDOW as i64], |r| r.get(0))?;
            let limit = if limit == 0 { -1 } else { limit as i64 };
            let after = match &since {
                Since::Message(id) => {
                    let at: Option<i64> = conn
                        .prepare_cached(
                            "SELECT seq FROM inbound_messages
                             WHERE number = ?1 AND id = ?2 AND seq >= ?3",
                        )?
                        .query_row(params![contact, id, first], |r| r.get(0))
                        .optional()?;
                    match at {
                        Some(at) => at,
                        None => return Ok(None),
                    }
                }
                Since::Timestamp(_) => first - 1,
            };
            let ts = match since {
                Since::Timestamp(ts) => ts,
                Since::Message(_) => i64::MIN,
            };
            let items = conn
                .prepare_cached(
                    "SELECT json FROM inbound_messages
                     WHERE number = ?1 AND seq > ?2 AND timestamp > ?3 ORDER BY seq LIMIT ?4",
                )?
                .query_map(params![contact, after, ts, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(items))
        })
        .await
    }
}
