//! The message record: the primary stored form of a message, written by both backends in the same
//! atomic step as the FastAPI compatibility list, the conversation and the events.
//!
//! [`MessageWrite`] is one message prepared for a backend: every string a write needs, built once
//! in Rust, so the Redis script and the SQLite writer only place them. The record JSON is also the
//! `data` of the message's `message_incoming` event, so an event and `GET /v1/messages/{id}`
//! describe a message in the same words.
//!
//! Record shape (`direction`, `phone_number_id`, `contact`, `timestamp` as a number, Meta's
//! `type`, the FastAPI `body`, the typed `content` ([`Content`]), Meta's message object as `raw`):
//! `{"id","direction":"inbound"|"outbound","phone_number_id","contact":{"id","wa_id"?,"user_id"?,
//! "parent_user_id"?,"name"?,"username"?},"timestamp","type","body","content","context"?,
//! "referral"?,"errors"?,"group_id"?,"source"?,"raw"}` (`source`: `business_app` for an echo of
//! a message the business sent from the WhatsApp Business app, `api` for one sent through this
//! gateway, `auto_reply` for an auto-reply of a rule, `history` for a back-filled one,
//! `earlier_release` for one imported at upgrade from an earlier release's FastAPI list).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::{
    ContactId, ContactProfile, Content, InboundMessage, MessageContext, MetaError, Origin, Referral,
};

/// Longest conversation preview kept (characters).
pub const PREVIEW_CHARS: usize = 120;
/// How long after a contact's last inbound message the business may answer freely (Meta's
/// customer-service window).
pub const WINDOW_SECS: i64 = 24 * 60 * 60;

/// The contact as records, conversations and events show it.
#[derive(Debug, Serialize)]
pub struct ContactView<'a> {
    /// The conversation key: phone digits or BSUID.
    pub id: &'a ContactId,
    #[serde(flatten)]
    pub profile: &'a ContactProfile,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    id: &'a str,
    direction: &'static str,
    phone_number_id: &'a str,
    /// The contact, serialized once ([`MessageWrite::contact_json`]) and embedded as is.
    contact: &'a RawValue,
    timestamp: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    body: &'a str,
    content: &'a Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a MessageContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referral: Option<&'a Referral>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [MetaError],
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    /// `business_app` for an echo, `history` for a back-filled message; absent for live traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    raw: &'a RawValue,
}

/// One message ready for a backend.
#[derive(Debug, Clone)]
pub struct MessageWrite {
    /// Meta's message id.
    pub id: String,
    /// The tenant.
    pub phone_number_id: String,
    /// The conversation key (digits or BSUID), as [`super::alias`] decides it.
    pub contact: String,
    /// The FastAPI list it goes to: the user's phone when Meta shares it, else `contact`
    /// ([`InboundMessage::list_contact`]).
    pub list_contact: String,
    /// The user's identifiers the alias rule reads and records (`alias::identities`).
    pub identities: Vec<String>,
    /// Meta's timestamp, unix seconds (0 when Meta sent something odd).
    pub timestamp: i64,
    /// The record JSON (see the module doc).
    pub record: String,
    /// The FastAPI original's JSON for `<REDIS_INBOUND_LIST>:<contact>`; empty for messages the
    /// original would never have listed (the business's own, history back-fill).
    pub compat: String,
    /// The conversation preview as a JSON string literal.
    pub preview_json: String,
    /// The contact as a JSON object ([`ContactView`]).
    pub contact_json: String,
    /// The id as a JSON string literal (ids may hold `"` or `\`).
    pub id_json: String,
    /// Whether the message counts as unread and opens the 24-hour window (a user's message; not
    /// history back-fill, the business's own echoes or Meta's `system` notices about the user,
    /// which the user did not write and which carry no profile).
    pub from_user: bool,
    /// Whether it is a new message of its conversation (in its history, counters and preview).
    /// Edits, deletions and reactions are not: they change an earlier message.
    pub is_new_message: bool,
    /// The message's event (its data is the record): `message_incoming` for a user's message,
    /// `message_outgoing` for the business's own; none for history back-fill.
    pub event: Option<&'static str>,
    /// The specific event written after it (same data): `button_clicked`, `selection_made`,
    /// `reaction`, `message_edited` or `message_deleted`.
    pub kind_event: Option<&'static str>,
    /// What the message changes on an earlier one, see [`Change`].
    pub change: Option<Change>,
    /// Whether an earlier release's trace of the id (its dedupe marker or FastAPI row) makes it
    /// a duplicate: yes for everything Meta delivers, no for a message imported from that very
    /// trace at upgrade ([`Origin::Imported`]).
    pub legacy_dedupe: bool,
}

/// A notice ready for a backend: kept as one event (unless its digest was seen, a retry), and
/// the contact preferences it carries applied.
#[derive(Debug, Clone)]
pub struct NoticeWrite {
    /// [`crate::webhook::Notice::digest`].
    pub digest: String,
    /// The event type.
    pub kind: String,
    /// The event data.
    pub data: String,
    /// Marketing preferences it sets (a `user_preferences` change).
    pub preferences: Vec<PreferenceWrite>,
    /// Calls users made (a `calls` change): each moves the contact's `last_call_at` forward.
    pub calls: Vec<CallWrite>,
}

/// A user's call to a business number: the conversation's `last_call_at` becomes its time
/// when that is later than the stored one. It opens the 24-hour window as a message does
/// ([`window_opened_at`]).
#[derive(Debug, Clone)]
pub struct CallWrite {
    /// The business number.
    pub phone_number_id: String,
    /// The caller (digits or BSUID).
    pub contact: String,
    /// Meta's timestamp of the call.
    pub timestamp: i64,
}

/// When the contact's 24-hour customer-service window opened: their latest message or their
/// latest call to the business number, whichever is later (negative: neither). Meta opens and
/// resets the window on both.
pub fn window_opened_at(last_inbound_at: i64, last_call_at: i64) -> i64 {
    last_inbound_at.max(last_call_at)
}

/// A contact's marketing preference (`stop`, `resume`, ...); the latest by Meta's timestamp is
/// kept and shown on the contact.
#[derive(Debug, Clone)]
pub struct PreferenceWrite {
    /// The business number.
    pub phone_number_id: String,
    /// The contact (digits or BSUID).
    pub contact: String,
    /// Meta's timestamp.
    pub timestamp: i64,
    /// Meta's `user_preferences[]` item as it came.
    pub json: String,
}

/// A change an edit, a deletion or a reaction makes to an earlier message (its target), kept on
/// the target whether or not the target is stored yet (it shows once the target arrives). Of
/// several changes of a kind the latest by Meta's timestamp wins.
#[derive(Debug, Clone)]
pub struct Change {
    /// The target's message id.
    pub target: String,
    /// `edited`, `deleted` or `reaction`: the key the target's view shows it under.
    pub kind: &'static str,
    /// Meta's timestamp of the change.
    pub timestamp: i64,
    /// `{"id": <the changing message>, "timestamp", ...}`: for an edit the new `content` (and
    /// `context`), for a reaction the `emoji` (`null` when removed).
    pub json: String,
}

impl Change {
    /// The change of `message`, if it is an edit, a deletion or a reaction.
    fn of(message: &InboundMessage, timestamp: i64) -> Option<Self> {
        let id = message.id.as_str();
        let (target, kind, json) = match &message.content {
            Content::Edit {
                original_message_id,
                message: content,
                context,
            } => (
                original_message_id,
                "edited",
                serde_json::json!({"id": id, "timestamp": timestamp, "content": content, "context": context}),
            ),
            Content::Revoke {
                original_message_id,
            } => (
                original_message_id,
                "deleted",
                serde_json::json!({"id": id, "timestamp": timestamp}),
            ),
            Content::Reaction { message_id, emoji } => (
                message_id,
                "reaction",
                serde_json::json!({"id": id, "timestamp": timestamp, "emoji": emoji, "from": message.from}),
            ),
            _ => return None,
        };
        crate::domain::MessageId::parse(target).ok()?;
        Some(Self {
            target: target.clone(),
            kind,
            timestamp,
            json: json.to_string(),
        })
    }
}

/// The specific event of a message's content, beside `message_incoming`.
fn kind_event(content: &Content) -> Option<&'static str> {
    use crate::domain::content::Interactive;
    match content {
        Content::Button { .. } => Some("button_clicked"),
        Content::Interactive { interactive } => match interactive {
            Interactive::ButtonReply { .. } => Some("button_clicked"),
            Interactive::ListReply { .. } => Some("selection_made"),
            _ => None,
        },
        Content::Reaction { .. } => Some("reaction"),
        Content::Edit { .. } => Some("message_edited"),
        Content::Revoke { .. } => Some("message_deleted"),
        _ => None,
    }
}

impl MessageWrite {
    /// Prepares a message of a webhook (a user's, an echo or a history message: see
    /// [`Origin`]).
    pub fn inbound(message: &InboundMessage) -> Self {
        let origin = message.origin;
        let timestamp = message.timestamp_secs();
        let contact = serde_json::value::to_raw_value(&ContactView {
            id: &message.from,
            profile: &message.profile,
        })
        .expect("strings serialize");
        let record = serde_json::to_string(&RecordRef {
            id: message.id.as_str(),
            direction: if origin.is_outbound() {
                "outbound"
            } else {
                "inbound"
            },
            phone_number_id: message.phone_number_id.as_str(),
            contact: &contact,
            timestamp,
            kind: message.kind.as_str(),
            body: &message.body,
            content: &message.content,
            context: message.context.as_ref(),
            referral: message.referral.as_ref(),
            errors: &message.errors,
            group_id: message.group_id.as_deref(),
            source: match origin {
                Origin::User => None,
                Origin::Echo => Some("business_app"),
                Origin::History { .. } => Some("history"),
                Origin::Imported => Some("earlier_release"),
                Origin::Api => Some("api"),
                Origin::Auto => Some("auto_reply"),
            },
            raw: &message.raw,
        })
        .expect("serializing strings and valid raw JSON cannot fail");
        Self {
            id: message.id.as_str().to_owned(),
            phone_number_id: message.phone_number_id.as_str().to_owned(),
            contact: message.from.as_str().to_owned(),
            list_contact: message.list_contact().to_owned(),
            identities: super::alias::identities(message)
                .map(str::to_owned)
                .collect(),
            timestamp,
            record,
            compat: if origin == Origin::User {
                message.to_stored_json()
            } else {
                String::new()
            },
            preview_json: json_string(&preview(&message.content.preview())),
            contact_json: Box::<str>::from(contact).into(),
            id_json: json_string(message.id.as_str()),
            from_user: origin == Origin::User && !matches!(message.content, Content::System { .. }),
            is_new_message: !matches!(
                message.content,
                Content::Edit { .. } | Content::Revoke { .. } | Content::Reaction { .. }
            ),
            event: match origin {
                Origin::User => Some("message_incoming"),
                Origin::Echo | Origin::Api | Origin::Auto => Some("message_outgoing"),
                Origin::History { .. } | Origin::Imported => None,
            },
            kind_event: match origin {
                Origin::History { .. } | Origin::Imported => None,
                Origin::User | Origin::Echo | Origin::Api | Origin::Auto => {
                    kind_event(&message.content)
                }
            },
            legacy_dedupe: origin != Origin::Imported,
            change: Change::of(message, timestamp),
        }
    }

    /// The key of the message in its conversation's index: Meta's timestamp (10 digits, zero
    /// padded) then the id, so the index sorts by time and ties by id, and a cursor is a point in
    /// that order that stays valid while messages arrive.
    pub fn index_member(&self) -> String {
        index_key(self.timestamp, &self.id)
    }
}

/// A conversation index key (see [`InboundRecord::index_member`]); with an empty `id`, the point
/// just before every message of second `timestamp`.
pub fn index_key(timestamp: i64, id: &str) -> String {
    format!("{:010}:{id}", timestamp.clamp(0, 9_999_999_999))
}

/// `s` cut to [`PREVIEW_CHARS`] characters (on a character boundary), with `…` when cut.
pub fn preview(s: &str) -> String {
    match s.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Bsuid, MessageId, MessageKind, PhoneNumber, PhoneNumberId};

    /// A user's text message to business number 1065, from a BSUID-keyed user with a name.
    pub(crate) fn message(id: &str, body: &str) -> InboundMessage {
        InboundMessage {
            id: MessageId::parse(id).unwrap(),
            from: ContactId::parse("US.13491208655302741918").unwrap(),
            origin: crate::domain::Origin::User,
            profile: ContactProfile {
                name: Some("Sheena \"N\"".into()),
                ..ContactProfile::default()
            },
            to: "15550783881".into(),
            phone_number_id: PhoneNumberId::parse("1065").unwrap(),
            timestamp: "1749416383".into(),
            kind: MessageKind::Text,
            body: body.into(),
            raw: RawValue::from_string(r#"{"text":{"body":"x"}}"#.into()).unwrap(),
            content: crate::domain::Content::Text { body: body.into() },
            context: None,
            referral: None,
            errors: Vec::new(),
            group_id: None,
        }
    }

    /// The same from a user known by `phone` and/or `bsuid` (at least one), keyed by the phone
    /// when there is one, as a webhook's message would be.
    pub(crate) fn message_from(
        id: &str,
        phone: Option<&str>,
        bsuid: Option<&str>,
    ) -> InboundMessage {
        let mut m = message(id, "hi");
        m.profile = ContactProfile {
            wa_id: phone.map(|p| PhoneNumber::parse(p).unwrap()),
            user_id: bsuid.map(|b| Bsuid::parse(b).unwrap()),
            ..ContactProfile::default()
        };
        m.from = ContactId::parse(phone.or(bsuid).expect("a phone or a BSUID")).unwrap();
        m
    }

    #[test]
    fn the_record_names_direction_tenant_and_contact() {
        let w = MessageWrite::inbound(&message("wamid.A", "hi"));
        assert_eq!(
            w.record,
            r#"{"id":"wamid.A","direction":"inbound","phone_number_id":"1065","contact":{"id":"US.13491208655302741918","name":"Sheena \"N\""},"timestamp":1749416383,"type":"text","body":"hi","content":{"type":"text","body":"hi"},"raw":{"text":{"body":"x"}}}"#
        );
        assert_eq!(w.contact, "US.13491208655302741918");
        assert_eq!(w.index_member(), "1749416383:wamid.A");
        assert!(
            w.compat
                .starts_with(r#"{"id":"wamid.A","from":"US.13491208655302741918""#)
        );
    }

    #[test]
    fn ids_and_previews_are_json_literals() {
        let w = MessageWrite::inbound(&message("wamid.\"\\x", &"é".repeat(200)));
        assert_eq!(w.id_json, r#""wamid.\"\\x""#);
        let preview: String = serde_json::from_str(&w.preview_json).unwrap();
        assert_eq!(preview.chars().count(), PREVIEW_CHARS + 1);
        assert!(preview.ends_with('…'));
    }
}

/// Ranks of delivery statuses as the stores compare them (mirrors
/// [`crate::domain::DeliveryStatus::rank`]; the Redis script has the same table).
pub fn status_rank(status: &str) -> u8 {
    crate::domain::DeliveryStatus::parse(status).map_or(0, |s| s.rank())
}

/// One status update ready for a backend.
#[derive(Debug, Clone)]
pub struct StatusWrite {
    /// The wamid the status is about.
    pub message_id: String,
    /// The tenant.
    pub phone_number_id: String,
    /// `sent`, `delivered`, ...
    pub status: &'static str,
    /// Meta's timestamp.
    pub timestamp: i64,
    /// Whether Meta sent errors with it.
    pub has_errors: bool,
    /// The stored transition: `{"status","timestamp","errors"?,"raw"}`.
    pub detail: String,
    /// The `message_status` event's data after its `status` key: `"id":…,"phone_number_id":…,
    /// "contact":{"id":…}|null,"reported":<detail>}` (the closing brace included), so a backend
    /// writes `{"status":"<current>",` + this.
    pub event_rest: String,
}

impl StatusWrite {
    /// Prepares a status update that arrived on `phone_number_id`.
    pub fn new(update: &crate::domain::StatusUpdate, phone_number_id: &str) -> Self {
        let detail = serde_json::json!({
            "status": update.status.as_str(),
            "timestamp": update.timestamp,
        });
        let mut detail = match detail {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("json! of an object"),
        };
        if !update.errors.is_empty() {
            detail.insert(
                "errors".into(),
                serde_json::to_value(&update.errors).expect("errors serialize"),
            );
        }
        let mut detail = serde_json::Value::Object(detail).to_string();
        // `raw` verbatim (Meta's pricing, conversation and recipient fields, byte for byte).
        detail.pop();
        detail.push_str(",\"raw\":");
        detail.push_str(update.raw.get());
        detail.push('}');
        let contact = update
            .recipient
            .id
            .as_deref()
            .and_then(|id| crate::domain::PhoneNumber::parse(id).ok())
            .map(|p| p.as_str().to_owned())
            .or_else(|| {
                update
                    .recipient
                    .user_id
                    .as_ref()
                    .map(|u| u.as_str().to_owned())
            });
        let contact = match contact {
            Some(id) => format!("{{\"id\":{}}}", json_string(&id)),
            None => "null".to_owned(),
        };
        let event_rest = format!(
            "\"id\":{},\"phone_number_id\":{},\"contact\":{contact},\"reported\":{detail}}}",
            json_string(update.message_id.as_str()),
            json_string(phone_number_id),
        );
        Self {
            message_id: update.message_id.as_str().to_owned(),
            phone_number_id: phone_number_id.to_owned(),
            status: update.status.as_str(),
            timestamp: update.timestamp,
            has_errors: !update.errors.is_empty(),
            detail,
            event_rest,
        }
    }

    /// The `message_status` event's data given the message's current status after the write.
    pub fn event_json(&self, current: &str) -> String {
        format!("{{\"status\":\"{current}\",{}", self.event_rest)
    }
}
