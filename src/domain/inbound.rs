//! Inbound messages: what a user sent to one of our business numbers.
//!
//! [`InboundMessage`] keeps Meta's original message object as raw JSON bytes ([`RawValue`]) so it is
//! stored exactly as received, never re-serialized; the typed fields beside it are what we index and
//! what the FastAPI original exposed (`id, from, to, timestamp, type, body, raw`).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::{
    Bsuid, ContactId, Content, MessageContext, MessageId, MetaError, PhoneNumber, PhoneNumberId,
    Referral,
};

/// The `type` of an inbound message. Unknown future types are kept as [`MessageKind::Other`] rather
/// than rejected: a 4xx for a real Meta delivery would make Meta retry it for seven days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Location,
    Contacts,
    Interactive,
    Button,
    Reaction,
    Order,
    System,
    RequestWelcome,
    Unsupported,
    /// Any other type string, kept verbatim (`unknown`, `edit`, `revoke`, future types).
    Other(String),
}

/// Meta's message `type` strings the gateway knows: the typed kinds above plus `edit`, `revoke`
/// (message changes) and `unknown` (Meta's own name for a type it could not deliver).
pub const KNOWN_TYPES: [&str; 18] = [
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "request_welcome",
    "unsupported",
    "unknown",
    "edit",
    "revoke",
];

impl MessageKind {
    /// Maps Meta's `type` string.
    pub fn parse(s: &str) -> Self {
        match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "location" => Self::Location,
            "contacts" => Self::Contacts,
            "interactive" => Self::Interactive,
            "button" => Self::Button,
            "reaction" => Self::Reaction,
            "order" => Self::Order,
            "system" => Self::System,
            "request_welcome" => Self::RequestWelcome,
            "unsupported" => Self::Unsupported,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Meta's `type` string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Interactive => "interactive",
            Self::Button => "button",
            Self::Reaction => "reaction",
            Self::Order => "order",
            Self::System => "system",
            Self::RequestWelcome => "request_welcome",
            Self::Unsupported => "unsupported",
            Self::Other(s) => s,
        }
    }
}

/// What Meta told us about the sender (`value.contacts[]` matched by identity, plus the
/// message's own `from` / `from_user_id`). Meta omits what a user withholds; so do we.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContactProfile {
    /// Phone digits (`wa_id` / `from`), when shared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<PhoneNumber>,
    /// Business-scoped user id (`user_id` / `from_user_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Bsuid>,
    /// Parent BSUID, when the business enabled them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_user_id: Option<Bsuid>,
    /// WhatsApp profile name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Username (2026+), e.g. `@sheena.n`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Serialize for PhoneNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Bsuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a message of a webhook comes from, which decides its direction and what it does to its
/// conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A user wrote to the business (`messages`): inbound, unread, opens the 24-hour window,
    /// projected to the FastAPI list, announced as `message_incoming`.
    #[default]
    User,
    /// The business wrote from the WhatsApp Business app (`smb_message_echoes`): outbound, no
    /// unread count and no window, announced as `message_outgoing`.
    Echo,
    /// An earlier message imported by a `history` back-fill, either direction: in the
    /// conversation's history and counts, but not unread, no window, no FastAPI list entry and no
    /// per-message event (a chunk holds thousands; the chunk gets one `history` event).
    History {
        /// Sent by the business (`from` is the business number).
        outbound: bool,
    },
    /// A user's message stored by an earlier release (only in its FastAPI list), given a record
    /// and a place in its conversation at upgrade time: like history, not unread, no window, no
    /// new list entry and no per-message event; and deduplicated by its record only (the earlier
    /// release's marker is its own trace, not a sign it was imported).
    Imported,
    /// The business sent it through this gateway (`POST /v1/messages`, `POST /send`), recorded
    /// once Meta accepted it: like an echo (outbound, no unread count, no window, no FastAPI list
    /// entry, announced as `message_outgoing`), with `source: "api"`.
    Api,
    /// An auto-reply of a rule ([`crate::rules`]), sent through the same path as [`Self::Api`]
    /// and recorded the same way, with `source: "auto_reply"`.
    Auto,
}

impl Origin {
    /// Whether the business sent it.
    pub fn is_outbound(self) -> bool {
        matches!(
            self,
            Self::Echo | Self::Api | Self::Auto | Self::History { outbound: true }
        )
    }
}

/// One inbound message, parsed from a webhook.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// Meta's message id (wamid): the deduplication key (per business number).
    pub id: MessageId,
    /// The user as a conversation key: for a user's message the sender, `from` (phone digits)
    /// when Meta sends it, else `from_user_id` (BSUID); for the business's own messages
    /// ([`Origin`]) the recipient. The store may move it to the key an alias of the user names
    /// ([`crate::store::alias`]); the FastAPI list is [`Self::list_contact`].
    pub from: ContactId,
    /// Where it comes from (a user, the business app, a history back-fill).
    pub origin: Origin,
    /// Everything known about the sender.
    pub profile: ContactProfile,
    /// The business number it was sent to (`metadata.display_phone_number`).
    pub to: String,
    /// The business phone-number id (`metadata.phone_number_id`): the tenant. Notifications
    /// without metadata (the FastAPI original's examples) get [`PhoneNumberId::unknown`].
    pub phone_number_id: PhoneNumberId,
    /// Unix seconds as Meta sends them: a string.
    pub timestamp: String,
    /// Message type.
    pub kind: MessageKind,
    /// Human-readable summary: the text, a caption, a reply title or a short description.
    pub body: String,
    /// Meta's message object, byte for byte.
    pub raw: Box<RawValue>,
    /// What the message says, typed. Not part of the stored compatibility form.
    pub content: Content,
    /// Reply, forward and product-inquiry information (`context`).
    pub context: Option<MessageContext>,
    /// The click-to-WhatsApp ad or post the conversation started from (`referral`).
    pub referral: Option<Referral>,
    /// The message's own `errors` (unsupported types, failed media).
    pub errors: Vec<MetaError>,
    /// The group it was sent in (`group_id`), for group messages.
    pub group_id: Option<String>,
}

/// The JSON shape stored per message and returned by `POST /get`; identical to the FastAPI
/// original's so data written by either is readable by both.
#[derive(Serialize)]
struct StoredMessageRef<'a> {
    id: &'a str,
    from: &'a str,
    to: &'a str,
    timestamp: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    body: &'a str,
    raw: &'a RawValue,
}

impl InboundMessage {
    /// Serializes the stored form: `{id, from, to, timestamp, type, body, raw}`.
    pub fn to_stored_json(&self) -> String {
        // Sized up front: the raw message dominates, and growing a Vec from 128 bytes costs
        // several reallocations per message.
        let capacity = self.raw.get().len() + self.body.len() + self.to.len() + 160;
        let mut out = Vec::with_capacity(capacity);
        serde_json::to_writer(
            &mut out,
            &StoredMessageRef {
                id: self.id.as_str(),
                from: self.list_contact(),
                to: &self.to,
                timestamp: &self.timestamp,
                kind: self.kind.as_str(),
                body: &self.body,
                raw: &self.raw,
            },
        )
        .expect("serializing strings and valid raw JSON cannot fail");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The FastAPI list the message goes to, and its stored form's `from`: the user's phone when
    /// Meta shares it (as the FastAPI original keyed them), else the conversation key. The two
    /// differ only for a user whose conversation is keyed by their BSUID
    /// ([`crate::store::alias`]).
    pub fn list_contact(&self) -> &str {
        self.profile
            .wa_id
            .as_ref()
            .map_or(self.from.as_str(), |p| p.as_str())
    }

    /// Unix timestamp as a number, for ordering conversations; 0 when Meta sent something odd.
    pub fn timestamp_secs(&self) -> i64 {
        self.timestamp.parse().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KNOWN_TYPES names every typed kind, and each of its names reads back as itself. The
    /// match gives each kind its own slot, so a new kind breaks the build until it has one, and
    /// then this test until KNOWN_TYPES names it.
    #[test]
    fn known_types_cover_every_typed_kind() {
        use MessageKind::*;
        const TYPED: usize = 15;
        let slot = |kind: &MessageKind| match kind {
            Text => Some(0),
            Image => Some(1),
            Video => Some(2),
            Audio => Some(3),
            Document => Some(4),
            Sticker => Some(5),
            Location => Some(6),
            Contacts => Some(7),
            Interactive => Some(8),
            Button => Some(9),
            Reaction => Some(10),
            Order => Some(11),
            System => Some(12),
            RequestWelcome => Some(13),
            Unsupported => Some(14),
            Other(_) => None,
        };
        let mut named = [false; TYPED];
        let mut others = Vec::new();
        for name in KNOWN_TYPES {
            let kind = MessageKind::parse(name);
            assert_eq!(kind.as_str(), name);
            match slot(&kind) {
                Some(i) => named[i] = true,
                None => others.push(name),
            }
        }
        let missing: Vec<usize> = (0..TYPED).filter(|&i| !named[i]).collect();
        assert!(
            missing.is_empty(),
            "typed kinds in slots {missing:?} are not in KNOWN_TYPES"
        );
        assert_eq!(others, ["unknown", "edit", "revoke"]);
    }

    #[test]
    fn kind_round_trips_known_and_unknown_types() {
        for s in [
            "text",
            "image",
            "request_welcome",
            "unsupported",
            "revoke",
            "poll",
        ] {
            assert_eq!(MessageKind::parse(s).as_str(), s);
        }
        assert_eq!(
            MessageKind::parse("poll"),
            MessageKind::Other("poll".into())
        );
    }

    #[test]
    fn stored_json_keeps_raw_bytes_verbatim() {
        let raw = RawValue::from_string(r#"{"text":{"body":"caf\u00e9 \/ ok"}}"#.into()).unwrap();
        let m = InboundMessage {
            id: MessageId::parse("wamid.A").unwrap(),
            from: ContactId::parse("919216598210").unwrap(),
            origin: Origin::User,
            profile: ContactProfile::default(),
            to: "15551713917".into(),
            phone_number_id: PhoneNumberId::parse("123").unwrap(),
            timestamp: "1757936743".into(),
            kind: MessageKind::Text,
            body: "café / ok".into(),
            raw,
            content: Content::Text {
                body: "café / ok".into(),
            },
            context: None,
            referral: None,
            errors: Vec::new(),
            group_id: None,
        };
        assert_eq!(
            m.to_stored_json(),
            r#"{"id":"wamid.A","from":"919216598210","to":"15551713917","timestamp":"1757936743","type":"text","body":"café / ok","raw":{"text":{"body":"caf\u00e9 \/ ok"}}}"#
        );
        assert_eq!(m.timestamp_secs(), 1757936743);
    }
}
