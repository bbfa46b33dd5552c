//! Builders of Meta-shaped webhook payloads: inbound messages of every type, echoes of what the
//! business sent from the WhatsApp Business app, message statuses, and the notification envelope
//! around them. Shapes follow Meta's webhook reference (see `shared/meta-formats.md` §3-§5, §13).
//!
//! Invariants of what [`Factory`] builds:
//! - every message and status id is a fresh wamid in Meta's form ([`wire::wamid`]), every
//!   timestamp a string of unix seconds;
//! - a [`Customer`] with a phone is sent as `from` (and `wa_id` in `contacts[]`); one with a BSUID
//!   also gets `from_user_id` (and `user_id`); one with a BSUID only has no `from` and no `wa_id`,
//!   as Meta sends users whose phone number is withheld;
//! - system messages and `failed` statuses carry no `contacts[]`, as Meta's do.
//!
//! The builders return `serde_json::Value`s; [`wire::to_wire`] turns a notification into the
//! bytes Meta would send. Nothing here does I/O, so other tools (a sandbox playing customers,
//! tests) can build payloads the same way.

use serde_json::{Map, Value, json};

use crate::simulate::wire::{self, Rng};

/// Meta's sample WhatsApp Business Account id (the `entry[].id` default).
pub const DEFAULT_WABA_ID: &str = "102290129340398";
/// Meta's sample phone-number id (the `metadata.phone_number_id` default).
pub const DEFAULT_PHONE_NUMBER_ID: &str = "106540352242922";
/// Meta's sample business number (the `metadata.display_phone_number` default).
pub const DEFAULT_DISPLAY_PHONE_NUMBER: &str = "15550783881";
/// The default customer's number.
pub const DEFAULT_CUSTOMER_PHONE: &str = "16505551234";
/// The default customer's profile name.
pub const DEFAULT_CUSTOMER_NAME: &str = "Sheena Nelson";

/// The business number the notifications are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    /// `entry[].id`: the WhatsApp Business Account.
    pub waba_id: String,
    /// `metadata.phone_number_id`: the tenant.
    pub phone_number_id: String,
    /// `metadata.display_phone_number`: digits, as Meta shows them.
    pub display_phone_number: String,
}

impl Default for Business {
    fn default() -> Self {
        Self {
            waba_id: DEFAULT_WABA_ID.to_owned(),
            phone_number_id: DEFAULT_PHONE_NUMBER_ID.to_owned(),
            display_phone_number: DEFAULT_DISPLAY_PHONE_NUMBER.to_owned(),
        }
    }
}

/// A WhatsApp user: a phone number, a business-scoped user id (BSUID, e.g.
/// `US.13491208655302741918`), or both. With neither, messages carry no sender at all (a
/// receiver should refuse or quarantine them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// `wa_id` / `from`: digits without `+`; `None` when Meta withholds the number.
    pub phone: Option<String>,
    /// `user_id` / `from_user_id`.
    pub bsuid: Option<String>,
    /// `contacts[].profile.name`.
    pub name: String,
    /// `contacts[].profile.username` (e.g. `@sheena.n`).
    pub username: Option<String>,
}

impl Customer {
    /// A user known by phone number only (the shape before BSUIDs).
    pub fn with_phone(phone: impl Into<String>) -> Self {
        Self {
            phone: Some(phone.into()),
            bsuid: None,
            name: DEFAULT_CUSTOMER_NAME.to_owned(),
            username: None,
        }
    }

    /// A user whose phone number Meta withholds: only the BSUID identifies them.
    pub fn bsuid_only(bsuid: impl Into<String>) -> Self {
        Self {
            phone: None,
            bsuid: Some(bsuid.into()),
            name: DEFAULT_CUSTOMER_NAME.to_owned(),
            username: None,
        }
    }

    /// The id a receiver keys this user by: the phone number, else the BSUID.
    pub fn key(&self) -> &str {
        self.phone
            .as_deref()
            .or(self.bsuid.as_deref())
            .unwrap_or("")
    }

    /// The user's `value.contacts[]` entry.
    pub fn contact(&self) -> Value {
        let mut profile = Map::new();
        profile.insert("name".into(), json!(self.name));
        if let Some(username) = &self.username {
            profile.insert("username".into(), json!(username));
        }
        let mut contact = Map::new();
        contact.insert("profile".into(), Value::Object(profile));
        if let Some(phone) = &self.phone {
            contact.insert("wa_id".into(), json!(phone));
        }
        if let Some(bsuid) = &self.bsuid {
            contact.insert("user_id".into(), json!(bsuid));
        }
        Value::Object(contact)
    }
}

/// An error Meta attaches to a `failed` status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    /// Meta's error code (131047, 131026, ...).
    pub code: i64,
    /// `title`.
    pub title: String,
    /// `message`.
    pub message: String,
    /// `error_data.details`.
    pub details: String,
}

impl StatusError {
    /// The error Meta sends with `code`: its usual title and details for the codes a business
    /// meets most, a generic text for others.
    pub fn for_code(code: i64) -> Self {
        let (title, details) = match code {
            131047 => (
                "Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            ),
            131026 => (
                "Message undeliverable",
                "Unable to deliver message. The recipient may not be on WhatsApp or has not accepted the latest terms.",
            ),
            131049 => (
                "This message was not delivered to maintain healthy ecosystem engagement.",
                "Meta chose not to deliver this marketing message (per-user marketing limit).",
            ),
            131050 => (
                "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
                "The user stopped marketing messages from this business.",
            ),
            131053 => (
                "Media upload error",
                "Unable to upload the media used in the message.",
            ),
            131000 => ("Something went wrong", "Message failed to send."),
            130472 => (
                "User's number is part of an experiment",
                "Message was not sent as part of an experiment.",
            ),
            131036 => (
                "Time to live expired",
                "The message could not be delivered before its time to live expired.",
            ),
            137000 => (
                "Identity key mismatch",
                "The recipient's identity key hash did not match.",
            ),
            _ => (
                "Simulated error",
                "A failure sent by the webhook simulator.",
            ),
        };
        Self {
            code,
            title: title.to_owned(),
            message: title.to_owned(),
            details: details.to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "title": self.title,
            "message": self.message,
            "error_data": { "details": self.details },
            "href": "/documentation/business-messaging/whatsapp/support/error-codes",
        })
    }
}

/// A message status Meta reports about a message the business sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Meta accepted it and sent it (carries the pricing).
    Sent,
    /// It reached the user's phone.
    Delivered,
    /// The user opened it.
    Read,
    /// It could not be delivered; final.
    Failed(StatusError),
}

impl Status {
    /// Meta's `status` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed(_) => "failed",
        }
    }
}

/// What a user sends: one variant per message `type` (and the interactive answers).
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `text`, optionally a reply to `reply_to` (a message the business sent: `context.from` is
    /// the business number).
    Text {
        body: String,
        reply_to: Option<String>,
    },
    /// `image` with an optional caption.
    Image { caption: Option<String> },
    /// `video` with an optional caption.
    Video { caption: Option<String> },
    /// `audio` (a music file or recording, not a voice note).
    Audio,
    /// `audio` with `voice: true` (a voice note, ogg/opus).
    Voice,
    /// `document` with its file name.
    Document {
        filename: String,
        caption: Option<String>,
    },
    /// `sticker` (webp).
    Sticker { animated: bool },
    /// `location`: a pin with a name and an address.
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// `contacts`: one shared contact card.
    Contacts,
    /// `interactive` `button_reply`: the user tapped a reply button.
    ButtonReply { id: String, title: String },
    /// `interactive` `list_reply`: the user picked a list row.
    ListReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// `interactive` `nfm_reply`: the user completed a Flow (`response_json` is a JSON string).
    FlowReply { response_json: String },
    /// `button`: the user tapped a template's quick-reply button.
    Button { text: String, payload: String },
    /// `reaction` to `message_id`; `emoji: None` removes the user's reaction (`"emoji": ""`).
    Reaction {
        message_id: String,
        emoji: Option<String>,
    },
    /// `order`: a cart sent from the catalog.
    Order,
    /// `system` `user_changed_number`: the user moved to `new_phone` (and a new BSUID).
    NumberChange {
        new_phone: String,
        new_bsuid: Option<String>,
    },
    /// `text` that started from a click-to-WhatsApp ad (`referral`).
    Referral { body: String },
    /// `unsupported` (e.g. a poll), with Meta's error 131051.
    Unsupported { subtype: String },
    /// `edit`: the user edited `original_message_id`; the new text is `body`.
    Edit {
        original_message_id: String,
        body: String,
    },
    /// `revoke`: the user deleted `original_message_id`.
    Revoke { original_message_id: String },
    /// `request_welcome`: a user opened the chat for the first time (no content).
    RequestWelcome,
}

impl Inbound {
    /// Meta's `type` of the message.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } | Self::Referral { .. } => "text",
            Self::Image { .. } => "image",
            Self::Video { .. } => "video",
            Self::Audio | Self::Voice => "audio",
            Self::Document { .. } => "document",
            Self::Sticker { .. } => "sticker",
            Self::Location { .. } => "location",
            Self::Contacts => "contacts",
            Self::ButtonReply { .. } | Self::ListReply { .. } | Self::FlowReply { .. } => {
                "interactive"
            }
            Self::Button { .. } => "button",
            Self::Reaction { .. } => "reaction",
            Self::Order => "order",
            Self::NumberChange { .. } => "system",
            Self::Unsupported { .. } => "unsupported",
            Self::Edit { .. } => "edit",
            Self::Revoke { .. } => "revoke",
            Self::RequestWelcome => "request_welcome",
        }
    }

    /// A short name for reports (`voice`, `button_reply`, `referral`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Voice => "voice",
            Self::ButtonReply { .. } => "button_reply",
            Self::ListReply { .. } => "list_reply",
            Self::FlowReply { .. } => "nfm_reply",
            Self::Referral { .. } => "referral",
            Self::NumberChange { .. } => "user_changed_number",
            Self::Reaction { emoji: None, .. } => "reaction removed",
            other => other.kind(),
        }
    }

    /// One example of every kind, with `original` as the message that edits, revokes and
    /// reactions refer to and `business_message` as the message replies and buttons answer.
    pub fn every_kind(original: &str, business_message: &str) -> Vec<Inbound> {
        vec![
            Inbound::Text {
                body: "Hi! Does it come in blue?".into(),
                reply_to: None,
            },
            Inbound::RequestWelcome,
            Inbound::Text {
                body: "Yes, that one".into(),
                reply_to: Some(business_message.into()),
            },
            Inbound::Image {
                caption: Some("Is this the right part?".into()),
            },
            Inbound::Video {
                caption: Some("The noise it makes".into()),
            },
            Inbound::Audio,
            Inbound::Voice,
            Inbound::Document {
                filename: "invoice-2291.pdf".into(),
                caption: Some("My invoice".into()),
            },
            Inbound::Sticker { animated: false },
            Inbound::Location {
                latitude: 37.483_872,
                longitude: -122.148_358,
                name: Some("Head office".into()),
                address: Some("1 Hacker Way, Menlo Park, CA 94025".into()),
            },
            Inbound::Contacts,
            Inbound::ButtonReply {
                id: "confirm-yes".into(),
                title: "Yes, confirm".into(),
            },
            Inbound::ListReply {
                id: "slot-0930".into(),
                title: "09:30".into(),
                description: Some("Tomorrow morning".into()),
            },
            Inbound::FlowReply {
                response_json: r#"{"flow_token":"flow-token-1","size":"M","colour":"blue"}"#.into(),
            },
            Inbound::Button {
                text: "Track my order".into(),
                payload: "TRACK_ORDER".into(),
            },
            Inbound::Reaction {
                message_id: original.into(),
                emoji: Some("👍".into()),
            },
            Inbound::Reaction {
                message_id: original.into(),
                emoji: None,
            },
            Inbound::Order,
            Inbound::Referral {
                body: "Hi! Is the summer sale still on?".into(),
            },
            Inbound::Unsupported {
                subtype: "poll".into(),
            },
            Inbound::Edit {
                original_message_id: original.into(),
                body: "Hi! Does it come in blue, size M?".into(),
            },
            Inbound::Revoke {
                original_message_id: original.into(),
            },
            Inbound::NumberChange {
                new_phone: "16505559876".into(),
                new_bsuid: None,
            },
        ]
    }
}

/// Builds payloads for one business number: fresh ids from its [`Rng`], timestamps from its
/// clock (the system clock unless fixed with [`Factory::at`]).
#[derive(Debug, Clone)]
pub struct Factory {
    /// The business number of every notification.
    pub business: Business,
    rng: Rng,
    clock: Option<u64>,
}

impl Factory {
    /// A factory with random ids and the system clock.
    pub fn new(business: Business) -> Self {
        Self {
            business,
            rng: Rng::from_entropy(),
            clock: None,
        }
    }

    /// Reproducible ids from `seed`.
    pub fn seeded(mut self, seed: u64) -> Self {
        self.rng = Rng::seeded(seed);
        self
    }

    /// Timestamps at `unix_seconds` instead of now.
    pub fn at(mut self, unix_seconds: u64) -> Self {
        self.clock = Some(unix_seconds);
        self
    }

    /// The current time, unix seconds.
    pub fn now(&self) -> u64 {
        self.clock.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        })
    }

    /// The generator behind the ids (for challenges and other random values).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A fresh wamid of a message `user` sent (`outbound: false`) or received from the business.
    pub fn wamid(&mut self, user: &Customer, outbound: bool) -> String {
        wire::wamid(&mut self.rng, user.key(), outbound)
    }

    /// A `messages[]` object: `what` sent by `from` now, with a fresh id.
    pub fn message(&mut self, from: &Customer, what: &Inbound) -> Value {
        let id = self.wamid(from, false);
        let timestamp = self.now();
        self.message_with(from, what, &id, timestamp)
    }

    /// A `messages[]` object with a given id and time.
    pub fn message_with(
        &mut self,
        from: &Customer,
        what: &Inbound,
        id: &str,
        timestamp: u64,
    ) -> Value {
        let mut m = Map::new();
        if let Some(phone) = &from.phone {
            m.insert("from".into(), json!(phone));
        }
        if let Some(bsuid) = &from.bsuid {
            m.insert("from_user_id".into(), json!(bsuid));
        }
        m.insert("id".into(), json!(id));
        m.insert("timestamp".into(), json!(timestamp.to_string()));
        m.insert("type".into(), json!(what.kind()));
        let business = self.business.display_phone_number.clone();
        let context = |id: &str| json!({ "from": business, "id": id });
        match what {
            Inbound::Text { body, reply_to } => {
                m.insert("text".into(), json!({ "body": body }));
                if let Some(reply_to) = reply_to {
                    m.insert("context".into(), context(reply_to));
                }
            }
            Inbound::Image { caption } => {
                let media = self.media("image/jpeg", caption.as_deref(), None);
                m.insert("image".into(), media);
            }
            Inbound::Video { caption } => {
                let media = self.media("video/mp4", caption.as_deref(), None);
                m.insert("video".into(), media);
            }
            Inbound::Audio => {
                let media = self.media("audio/mpeg", None, None);
                m.insert("audio".into(), media);
            }
            Inbound::Voice => {
                let mut media = self.media("audio/ogg; codecs=opus", None, None);
                media["voice"] = json!(true);
                m.insert("audio".into(), media);
            }
            Inbound::Document { filename, caption } => {
                let media = self.media("application/pdf", caption.as_deref(), Some(filename));
                m.insert("document".into(), media);
            }
            Inbound::Sticker { animated } => {
                let mut media = self.media("image/webp", None, None);
                media["animated"] = json!(animated);
                m.insert("sticker".into(), media);
            }
            Inbound::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let mut location = json!({ "latitude": latitude, "longitude": longitude });
                if let Some(name) = name {
                    location["name"] = json!(name);
                }
                if let Some(address) = address {
                    location["address"] = json!(address);
                }
                m.insert("location".into(), location);
            }
            Inbound::Contacts => {
                m.insert(
                    "contacts".into(),
                    json!([{
                        "name": { "formatted_name": "Ana Lima", "first_name": "Ana", "last_name": "Lima" },
                        "phones": [{ "phone": "+1 650-555-0199", "wa_id": "16505550199", "type": "CELL" }],
                        "emails": [{ "email": "ana.lima@example.com", "type": "WORK" }],
                        "org": { "company": "Example Supplies", "title": "Buyer" },
                    }]),
                );
            }
            Inbound::ButtonReply { id, title } => {
                m.insert(
                    "interactive".into(),
                    json!({ "type": "button_reply", "button_reply": { "id": id, "title": title } }),
                );
                let asked = self.business_wamid(from);
                m.insert("context".into(), context(&asked));
            }
            Inbound::ListReply {
                id,
                title,
                description,
            } => {
                let mut reply = json!({ "id": id, "title": title });
                if let Some(description) = description {
                    reply["description"] = json!(description);
                }
                m.insert(
                    "interactive".into(),
                    json!({ "type": "list_reply", "list_reply": reply }),
                );
                let asked = self.business_wamid(from);
                m.insert("context".into(), context(&asked));
            }
            Inbound::FlowReply { response_json } => {
                m.insert(
                    "interactive".into(),
                    json!({ "type": "nfm_reply", "nfm_reply": {
                        "name": "flow", "body": "Sent", "response_json": response_json } }),
                );
                let asked = self.business_wamid(from);
                m.insert("context".into(), context(&asked));
            }
            Inbound::Button { text, payload } => {
                m.insert("button".into(), json!({ "payload": payload, "text": text }));
                let asked = self.business_wamid(from);
                m.insert("context".into(), context(&asked));
            }
            Inbound::Reaction { message_id, emoji } => {
                m.insert(
                    "reaction".into(),
                    json!({ "message_id": message_id, "emoji": emoji.as_deref().unwrap_or("") }),
                );
            }
            Inbound::Order => {
                m.insert(
                    "order".into(),
                    json!({
                        "catalog_id": "1537962210443871",
                        "text": "Please deliver after 6pm",
                        "product_items": [
                            { "product_retailer_id": "MUG-BLUE-M", "quantity": 2, "item_price": 12.5, "currency": "USD" },
                            { "product_retailer_id": "TEE-WHITE-L", "quantity": 1, "item_price": 19.99, "currency": "USD" },
                        ],
                    }),
                );
            }
            Inbound::NumberChange {
                new_phone,
                new_bsuid,
            } => {
                let old = from.phone.as_deref().unwrap_or(from.key());
                let mut system = json!({
                    "body": format!("User {} changed from {old} to {new_phone}", from.name),
                    "type": "user_changed_number",
                    "wa_id": new_phone,
                });
                if let Some(new_bsuid) = new_bsuid {
                    system["user_id"] = json!(new_bsuid);
                }
                m.insert("system".into(), system);
            }
            Inbound::Referral { body } => {
                m.insert("text".into(), json!({ "body": body }));
                let clid = format!("ARA{}", self.rng.hex_upper(40));
                m.insert(
                    "referral".into(),
                    json!({
                        "source_url": "https://fb.me/3cr4Wqqkv",
                        "source_id": self.rng.digits(18),
                        "source_type": "ad",
                        "headline": "Summer sale: 30% off mugs",
                        "body": "Tap to chat with us on WhatsApp",
                        "media_type": "image",
                        "image_url": "https://scontent.xx.fbcdn.net/v/t45.1600-4/summer-mugs.jpg",
                        "thumbnail_url": "https://scontent.xx.fbcdn.net/v/t45.1600-4/summer-mugs-thumb.jpg",
                        "ctwa_clid": clid,
                    }),
                );
            }
            Inbound::Unsupported { subtype } => {
                m.insert(
                    "errors".into(),
                    json!([{
                        "code": 131051,
                        "title": "Message type unknown",
                        "message": "Message type unknown",
                        "error_data": { "details": "Message type is currently not supported." },
                    }]),
                );
                m.insert("unsupported".into(), json!({ "type": subtype }));
            }
            Inbound::Edit {
                original_message_id,
                body,
            } => {
                m.insert(
                    "edit".into(),
                    json!({
                        "original_message_id": original_message_id,
                        "message": { "type": "text", "text": { "body": body } },
                    }),
                );
            }
            Inbound::Revoke {
                original_message_id,
            } => {
                m.insert(
                    "revoke".into(),
                    json!({ "original_message_id": original_message_id }),
                );
            }
            Inbound::RequestWelcome => {}
        }
        Value::Object(m)
    }

    /// A media object as Meta sends it: id, MIME type, SHA-256 (base64), the lookaside URL and,
    /// when given, caption and file name.
    fn media(&mut self, mime_type: &str, caption: Option<&str>, filename: Option<&str>) -> Value {
        let id = self.rng.digits(16);
        let sha256 = wire::base64(&self.rng.bytes(32));
        let expires = self.now() + 7 * 24 * 3600;
        let hash = self.rng.hex_upper(24);
        let mut media = json!({
            "id": id,
            "mime_type": mime_type,
            "sha256": sha256,
            "url": format!(
                "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={id}&ext={expires}&hash={hash}"
            ),
        });
        if let Some(caption) = caption {
            media["caption"] = json!(caption);
        }
        if let Some(filename) = filename {
            media["filename"] = json!(filename);
        }
        media
    }

    /// The id of a message the business sent `user` (what a button or reply refers to).
    fn business_wamid(&mut self, user: &Customer) -> String {
        self.wamid(user, true)
    }

    /// A `message_echoes[]` object: `body` sent now from the WhatsApp Business app to `to`.
    pub fn echo(&mut self, to: &Customer, body: &str) -> Value {
        let id = self.wamid(to, true);
        let mut m = Map::new();
        m.insert(
            "from".into(),
            json!(self.business.display_phone_number.clone()),
        );
        if let Some(phone) = &to.phone {
            m.insert("to".into(), json!(phone));
        }
        if let Some(bsuid) = &to.bsuid {
            m.insert("to_user_id".into(), json!(bsuid));
        }
        m.insert("id".into(), json!(id));
        m.insert("timestamp".into(), json!(self.now().to_string()));
        m.insert("type".into(), json!("text"));
        m.insert("text".into(), json!({ "body": body }));
        Value::Object(m)
    }

    /// A `statuses[]` object: `status` of message `id` (sent to `to`) at `timestamp`. `sent`
    /// carries Meta's per-message pricing; `failed` its error.
    pub fn status(&self, id: &str, to: &Customer, status: &Status, timestamp: u64) -> Value {
        let mut s = Map::new();
        s.insert("id".into(), json!(id));
        s.insert("status".into(), json!(status.as_str()));
        s.insert("timestamp".into(), json!(timestamp.to_string()));
        if let Some(phone) = &to.phone {
            s.insert("recipient_id".into(), json!(phone));
        }
        if let Some(bsuid) = &to.bsuid {
            s.insert("recipient_user_id".into(), json!(bsuid));
        }
        match status {
            Status::Sent => {
                s.insert(
                    "pricing".into(),
                    json!({ "billable": false, "pricing_model": "PMP",
                        "type": "free_customer_service", "category": "service" }),
                );
            }
            Status::Failed(error) => {
                s.insert("errors".into(), json!([error.to_json()]));
            }
            Status::Delivered | Status::Read => {}
        }
        Value::Object(s)
    }

    /// A `messages` notification carrying `messages`, with the `contacts[]` of `senders` (each
    /// once; none for a notification of system messages only, as Meta sends those).
    pub fn messages_notification(&self, senders: &[Customer], messages: Vec<Value>) -> Value {
        let only_system = !messages.is_empty() && messages.iter().all(|m| m["type"] == "system");
        let contacts = if only_system {
            Vec::new()
        } else {
            contacts_of(senders)
        };
        self.notification("messages", contacts, "messages", messages)
    }

    /// A `messages` notification carrying `statuses`; the recipients' `contacts[]` come with
    /// `sent`/`delivered`/`read` of users with a BSUID (as Meta sends them since 2026), never
    /// with `failed`.
    pub fn statuses_notification(&self, recipients: &[Customer], statuses: Vec<Value>) -> Value {
        let any_failed = statuses.iter().any(|s| s["status"] == "failed");
        let with_bsuid: Vec<Customer> = recipients
            .iter()
            .filter(|c| c.bsuid.is_some())
            .cloned()
            .collect();
        let contacts = if any_failed {
            Vec::new()
        } else {
            contacts_of(&with_bsuid)
        };
        self.notification("messages", contacts, "statuses", statuses)
    }

    /// An `smb_message_echoes` notification carrying `echoes` to `recipients`.
    pub fn echoes_notification(&self, recipients: &[Customer], echoes: Vec<Value>) -> Value {
        self.notification(
            "smb_message_echoes",
            contacts_of(recipients),
            "message_echoes",
            echoes,
        )
    }

    /// The envelope: one entry (the WABA), one change of `field` whose value holds the business
    /// number's metadata, `contacts` (when any) and `items` under `list`.
    pub fn notification(
        &self,
        field: &str,
        contacts: Vec<Value>,
        list: &str,
        items: Vec<Value>,
    ) -> Value {
        let mut value = Map::new();
        value.insert("messaging_product".into(), json!("whatsapp"));
        value.insert(
            "metadata".into(),
            json!({
                "display_phone_number": self.business.display_phone_number,
                "phone_number_id": self.business.phone_number_id,
            }),
        );
        if !contacts.is_empty() {
            value.insert("contacts".into(), Value::Array(contacts));
        }
        value.insert(list.into(), Value::Array(items));
        json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": self.business.waba_id,
                "changes": [{ "value": Value::Object(value), "field": field }],
            }],
        })
    }
}

/// The `contacts[]` entries of `customers`, each user once.
fn contacts_of(customers: &[Customer]) -> Vec<Value> {
    let mut seen: Vec<&str> = Vec::new();
    let mut contacts = Vec::new();
    for customer in customers {
        if seen.contains(&customer.key()) {
            continue;
        }
        seen.push(customer.key());
        contacts.push(customer.contact());
    }
    contacts
}

/// The ids a notification carries, for reports: `(role, id)` for each message (`message`), echo
/// (`echo`) and status (`status <value>`), in payload order. Anything unreadable is skipped.
pub fn ids_in(notification: &Value) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    let entries = notification["entry"].as_array().into_iter().flatten();
    for change in entries.flat_map(|e| e["changes"].as_array().into_iter().flatten()) {
        let value = &change["value"];
        for (list, role) in [("messages", "message"), ("message_echoes", "echo")] {
            for m in value[list].as_array().into_iter().flatten() {
                if let Some(id) = m["id"].as_str() {
                    let kind = m["type"].as_str().unwrap_or("?");
                    ids.push((format!("{role} ({kind})"), id.to_owned()));
                }
            }
        }
        for s in value["statuses"].as_array().into_iter().flatten() {
            if let Some(id) = s["id"].as_str() {
                let status = s["status"].as_str().unwrap_or("?");
                ids.push((format!("status {status} for"), id.to_owned()));
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContactId, Content, MessageKind};
    use crate::webhook::extract_batch;

    const BSUID: &str = "US.13491208655302741918";

    fn factory() -> Factory {
        Factory::new(Business::default())
            .seeded(42)
            .at(1_781_290_000)
    }

    /// Every kind, built and put through the gateway's own extractor, comes out as its type
    /// with nothing quarantined.
    #[test]
    fn every_kind_is_extracted_as_its_type() {
        let mut f = factory();
        let customer = Customer::with_phone(DEFAULT_CUSTOMER_PHONE);
        let kinds = Inbound::every_kind("wamid.ORIGINAL", "wamid.BUSINESS");
        assert!(kinds.len() >= 20);
        for what in &kinds {
            let message = f.message(&customer, what);
            let body = wire::to_wire(
                &f.messages_notification(std::slice::from_ref(&customer), vec![message]),
            );
            let batch = extract_batch(&body).expect("extracts");
            assert!(
                batch.quarantined.is_empty(),
                "{what:?}: {:?}",
                batch.quarantined
            );
            assert_eq!(batch.messages.len(), 1, "{what:?}");
            let m = &batch.messages[0];
            assert_eq!(m.kind, MessageKind::parse(what.kind()), "{what:?}");
            assert_eq!(m.from.as_str(), DEFAULT_CUSTOMER_PHONE);
            let typed = !matches!(m.content, Content::Unknown { .. });
            assert!(typed, "{what:?} read as unknown: {:?}", m.content);
        }
    }

    #[test]
    fn a_bsuid_only_sender_has_no_phone_anywhere() {
        let mut f = factory();
        let customer = Customer::bsuid_only(BSUID);
        let what = Inbound::Text {
            body: "hi".into(),
            reply_to: None,
        };
        let message = f.message(&customer, &what);
        assert_eq!(message.get("from"), None);
        assert_eq!(message["from_user_id"], BSUID);
        let notification = f.messages_notification(&[customer], vec![message]);
        let contact = &notification["entry"][0]["changes"][0]["value"]["contacts"][0];
        assert_eq!(contact.get("wa_id"), None);
        assert_eq!(contact["user_id"], BSUID);
        let batch = extract_batch(&wire::to_wire(&notification)).unwrap();
        assert_eq!(
            batch.messages[0].from,
            ContactId::parse(BSUID).unwrap(),
            "keyed by the BSUID"
        );
    }

    #[test]
    fn a_failed_status_carries_its_error_and_no_contacts() {
        let f = factory();
        let to = Customer {
            bsuid: Some(BSUID.into()),
            ..Customer::with_phone(DEFAULT_CUSTOMER_PHONE)
        };
        let failed = Status::Failed(StatusError::for_code(131026));
        let status = f.status("wamid.X", &to, &failed, 10);
        let n = f.statuses_notification(std::slice::from_ref(&to), vec![status]);
        let value = &n["entry"][0]["changes"][0]["value"];
        assert_eq!(value.get("contacts"), None);
        assert_eq!(value["statuses"][0]["errors"][0]["code"], 131026);
        assert_eq!(
            value["statuses"][0]["errors"][0]["title"],
            "Message undeliverable"
        );
        let batch = extract_batch(&wire::to_wire(&n)).unwrap();
        assert_eq!(batch.statuses.len(), 1);
        assert!(batch.quarantined.is_empty());
        // A delivered status to a BSUID user comes with the contact.
        let delivered = f.status("wamid.X", &to, &Status::Delivered, 11);
        let n = f.statuses_notification(&[to], vec![delivered]);
        assert_eq!(
            n["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"],
            BSUID
        );
    }

    #[test]
    fn an_echo_is_extracted_as_outbound_to_the_customer() {
        let mut f = factory();
        let to = Customer::with_phone(DEFAULT_CUSTOMER_PHONE);
        let echo = f.echo(&to, "On my way!");
        let n = f.echoes_notification(std::slice::from_ref(&to), vec![echo]);
        assert_eq!(n["entry"][0]["changes"][0]["field"], "smb_message_echoes");
        let batch = extract_batch(&wire::to_wire(&n)).unwrap();
        assert_eq!(batch.messages.len(), 1);
        assert!(batch.messages[0].origin.is_outbound());
        assert_eq!(batch.messages[0].from.as_str(), DEFAULT_CUSTOMER_PHONE);
    }

    #[test]
    fn system_notifications_have_no_contacts_and_ids_are_reported() {
        let mut f = factory();
        let c = Customer::with_phone(DEFAULT_CUSTOMER_PHONE);
        let what = Inbound::NumberChange {
            new_phone: "16505559876".into(),
            new_bsuid: None,
        };
        let m = f.message(&c, &what);
        let id = m["id"].as_str().unwrap().to_owned();
        let n = f.messages_notification(&[c], vec![m]);
        assert_eq!(n["entry"][0]["changes"][0]["value"].get("contacts"), None);
        assert_eq!(ids_in(&n), vec![("message (system)".to_owned(), id)]);
    }
}
