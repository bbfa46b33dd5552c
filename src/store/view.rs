//! Read models shared by both backends: the queries the conversation API asks and the JSON it
//! answers with, composed from stored strings without re-parsing them.
//!
//! - A message view is its record (see [`super::record`]) plus `status` (the current delivery
//!   status, `null` when none) and, for `GET /v1/messages/{id}`, `statuses` (the history, one
//!   transition per status in rank order).
//! - A conversation view is the conversation's stored fields in the shape of the
//!   `conversation_updated` event, except that `window_expires_at` is `null` once the 24-hour
//!   window has closed. A user's call that moves an existing conversation's window also writes
//!   this event (after its `calls` event), on both backends.
//! - Cursors are opaque strings that only the backend that issued them reads.

use super::record::{WINDOW_SECS, status_rank, window_opened_at};

/// Most items one page may hold.
pub const MAX_PAGE: usize = 200;
/// Items per page when the client gives no `limit`.
pub const DEFAULT_PAGE: usize = 50;

/// Which messages of a conversation a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageCursor {
    /// The most recent.
    Latest,
    /// Older than the cursor (a `next_cursor` of an earlier page).
    Before(String),
    /// Newer than the cursor.
    After(String),
}

/// A page of `GET /v1/conversations/{contact}/messages`.
#[derive(Debug, Clone)]
pub struct MessagesQuery {
    pub phone_number_id: String,
    pub contact: String,
    pub cursor: MessageCursor,
    pub limit: usize,
    /// Only messages of this Meta `type`.
    pub kind: Option<String>,
}

/// A page of `GET /v1/conversations`.
#[derive(Debug, Clone, Default)]
pub struct ConversationsQuery {
    pub phone_number_id: Option<String>,
    pub unread_only: bool,
    /// Lower-cased search text, matched against the contact id, name and username.
    pub q: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// One page of JSON items (oldest first for messages, most recent activity first for
/// conversations) and the cursor of the next page, if there may be one.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<String>,
    pub next_cursor: Option<String>,
}

/// The kinds of change a message may carry from later messages, as its view names them.
pub const CHANGE_KINDS: [&str; 3] = ["edited", "deleted", "reaction"];

/// A stored change value `<timestamp> <json>` (see [`super::record::Change`]): its JSON.
pub fn change_json(value: &str) -> Option<&str> {
    value.split_once(' ').map(|(_, json)| json)
}

/// A record with its status: `{...record, "status": <current or null>}` and, when `history` is
/// given, `"statuses": [...]` (each transition's JSON, sorted by rank); then each change made by
/// later messages under its kind (`"edited": {...}`, `"deleted": {...}`, `"reaction": {...}`).
pub fn message_json(
    record: &str,
    current: Option<&str>,
    history: Option<Vec<(String, String)>>,
    changes: &[(&str, &str)],
) -> String {
    let mut out = String::with_capacity(
        record.len() + 64 + changes.iter().map(|(_, j)| j.len() + 16).sum::<usize>(),
    );
    out.push_str(record.strip_suffix('}').unwrap_or(record));
    for (kind, json) in changes {
        out.push_str(",\"");
        out.push_str(kind);
        out.push_str("\":");
        out.push_str(json);
    }
    match current {
        Some(status) => {
            out.push_str(",\"status\":\"");
            out.push_str(status);
            out.push('"');
        }
        // A message sent through this gateway is `accepted` until its first status webhook
        // (`source` is serialized right before `raw`, the last key, so this cannot match inside
        // message content).
        None if record.contains(",\"source\":\"api\",\"raw\":") => {
            out.push_str(",\"status\":\"accepted\"");
        }
        None => out.push_str(",\"status\":null"),
    }
    if let Some(mut history) = history {
        history.sort_by_key(|(status, _)| status_rank(status));
        out.push_str(",\"statuses\":[");
        for (i, (_, detail)) in history.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(detail);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// The stored fields of a conversation.
#[derive(Debug, Clone)]
pub struct ConversationFields {
    pub phone_number_id: String,
    pub contact_json: String,
    pub last_message: String,
    pub last_message_id: String,
    pub last_message_at: i64,
    pub last_inbound_at: i64,
    /// The contact's latest call to the business number (negative: none); it opens the window
    /// as a message does.
    pub last_call_at: i64,
    pub message_count: i64,
    pub unread_count: i64,
    /// The contact's marketing preference as stored: `<timestamp> <JSON of Meta's item>`.
    pub marketing: Option<String>,
}

impl ConversationFields {
    /// The contact JSON, with `preferences` when the contact told Meta one.
    fn contact(&self) -> std::borrow::Cow<'_, str> {
        let preference = self
            .marketing
            .as_deref()
            .and_then(|m| m.split_once(' '))
            .map(|(_, json)| json);
        match (preference, self.contact_json.strip_suffix('}')) {
            (Some(json), Some(open)) => {
                let sep = if open.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                format!(r#"{open}{sep}"preferences":{{"marketing_messages":{json}}}}}"#).into()
            }
            _ => self.contact_json.as_str().into(),
        }
    }

    /// The conversation's JSON. With `now`, `window_expires_at` is `null` once the window has
    /// closed (the read view); without, it is the expiry time (the event).
    pub fn json(&self, now: Option<i64>) -> String {
        let opened = window_opened_at(self.last_inbound_at, self.last_call_at);
        let expires = opened + WINDOW_SECS;
        let window = if opened >= 0 && now.is_none_or(|now| expires > now) {
            expires.to_string()
        } else {
            "null".to_owned()
        };
        format!(
            r#"{{"phone_number_id":"{}","contact":{},"last_message":{},"last_message_id":{},"last_message_at":{},"message_count":{},"unread_count":{},"window_expires_at":{window}}}"#,
            self.phone_number_id,
            self.contact(),
            self.last_message,
            self.last_message_id,
            self.last_message_at,
            self.message_count,
            self.unread_count,
        )
    }
}

/// The contact's latest message to a business number (from the conversation's fields), the
/// message a read receipt names. (The 24-hour window is read apart:
/// [`crate::store::Store::window_opened_at`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastInbound {
    /// Its id; `None` for a conversation last written by a release that did not keep it (the
    /// caller then looks through the history).
    pub id: Option<String>,
}

impl LastInbound {
    /// From the stored fields: `last_inbound_at` (negative: the contact never wrote, so there is
    /// none) and `last_inbound_id` (a JSON string literal, as `last_message_id` is kept).
    pub fn of(at: Option<i64>, id_json: Option<&str>) -> Option<Self> {
        at.filter(|at| *at >= 0).map(|_| Self {
            id: id_json.and_then(|json| serde_json::from_str::<String>(json).ok()),
        })
    }
}

/// A conversation after a read mark.
#[derive(Debug, Clone)]
pub struct MarkedRead {
    /// Its JSON (the read view).
    pub json: String,
    /// The contact's latest message, the one Meta's read receipt names.
    pub last_inbound: Option<LastInbound>,
}

/// The `conversation_deleted` event's data.
pub fn deleted_event_json(phone_number_id: &str, contact_json: &str, messages: u64) -> String {
    format!(
        r#"{{"phone_number_id":"{phone_number_id}","contact":{contact_json},"messages_deleted":{messages}}}"#
    )
}

/// Where a `/get` poller left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Messages after this one in the number's list (arrival order).
    Message(String),
    /// Messages whose Meta timestamp is later than this (unix seconds).
    Timestamp(i64),
}

/// How many of a number's most recent messages a `since` read looks through.
pub const SINCE_WINDOW: usize = 10_000;

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_view_adds_status_and_history_in_rank_order() {
        let json = message_json(
            r#"{"id":"a"}"#,
            Some("read"),
            Some(vec![
                ("read".into(), r#"{"status":"read"}"#.into()),
                ("sent".into(), r#"{"status":"sent"}"#.into()),
            ]),
            &[("edited", r#"{"id":"e"}"#)],
        );
        assert_eq!(
            json,
            r#"{"id":"a","edited":{"id":"e"},"status":"read","statuses":[{"status":"sent"},{"status":"read"}]}"#
        );
        assert_eq!(
            message_json(r#"{"id":"a"}"#, None, None, &[]),
            r#"{"id":"a","status":null}"#
        );
    }

    #[test]
    fn the_window_closes_24_hours_after_the_last_inbound_message() {
        let c = ConversationFields {
            phone_number_id: "1".into(),
            contact_json: r#"{"id":"919216598210"}"#.into(),
            last_message: r#""hi""#.into(),
            last_message_id: r#""w""#.into(),
            last_message_at: 1000,
            last_inbound_at: 1000,
            last_call_at: -1,
            message_count: 1,
            unread_count: 1,
            marketing: None,
        };
        assert!(
            c.json(Some(1000 + WINDOW_SECS - 1))
                .contains(r#""window_expires_at":87400"#)
        );
        assert!(
            c.json(Some(1000 + WINDOW_SECS))
                .contains(r#""window_expires_at":null"#)
        );
        assert!(c.json(None).contains(r#""window_expires_at":87400"#));
        // A later call of the user's opens it again; an earlier one changes nothing.
        let called = |at| ConversationFields {
            last_call_at: at,
            ..c.clone()
        };
        assert!(
            called(5000)
                .json(Some(1000 + WINDOW_SECS))
                .contains(r#""window_expires_at":91400"#)
        );
        assert!(
            called(900)
                .json(None)
                .contains(r#""window_expires_at":87400"#)
        );
        // A user who only called has a window too.
        let only_called = ConversationFields {
            last_inbound_at: -1,
            ..called(2000)
        };
        assert!(
            only_called
                .json(None)
                .contains(r#""window_expires_at":88400"#)
        );
        let stopped = ConversationFields {
            marketing: Some(r#"1731705721 {"value":"stop","timestamp":1731705721}"#.into()),
            ..c
        };
        let json: serde_json::Value = serde_json::from_str(&stopped.json(None)).unwrap();
        assert_eq!(json["contact"]["id"], "919216598210");
        assert_eq!(
            json["contact"]["preferences"]["marketing_messages"]["value"],
            "stop"
        );
    }
}
