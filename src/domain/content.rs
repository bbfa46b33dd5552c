//! What an inbound message says, typed: [`Content`] has one variant per Meta message type, plus
//! the message-level parts that are not about who sent it ([`MessageContext`], [`Referral`]).
//!
//! Invariants: every message has a `Content` (a future type, or a known type whose object is
//! missing or malformed, is [`Content::Unknown`] with Meta's object kept as JSON, never text);
//! the serde form is ours, stored as JSON and read back unchanged (it round-trips), tagged by
//! Meta's `type` with Meta's field names. The wire-to-domain conversion lives in
//! `webhook::content`; this module knows nothing of the wire DTOs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::MetaError;

/// Longest [`Content::preview`], in characters.
pub const PREVIEW_MAX_CHARS: usize = 200;

/// The content of an inbound message, by Meta's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// `text`: `text.body`.
    Text {
        /// The text (up to 4096 characters).
        body: String,
    },
    /// `image`.
    Image(Media),
    /// `video`.
    Video(Media),
    /// `audio`; `voice` marks a voice note.
    Audio(Media),
    /// `document`; usually has a `filename`.
    Document(Media),
    /// `sticker`; `animated` marks an animated one.
    Sticker(Media),
    /// `location`: a pin.
    Location(Location),
    /// `contacts`: shared contact cards (not the sender's identity).
    Contacts {
        /// The cards, in order.
        contacts: Vec<ContactCard>,
        /// Message-level `origin`, set when the user shared their own card in answer to a
        /// template's request-contact-info button (values not settled by Meta; kept raw).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    /// `interactive`: the answer to one of our interactive messages.
    Interactive {
        /// Which kind of answer, and its fields.
        interactive: Interactive,
    },
    /// `button`: a tap on a template's quick-reply button.
    Button {
        /// The button's label.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// The payload set on the button when the template was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
    },
    /// `reaction`: an emoji on an earlier message, or its removal.
    Reaction {
        /// The wamid reacted to (often one we sent).
        message_id: String,
        /// The emoji; `None` when the reaction was removed (Meta sends `""` or no key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emoji: Option<String>,
    },
    /// `order`: a cart sent from a catalog.
    Order(Order),
    /// `system`: a change to the user (new number, new BSUID, new identity key).
    System {
        /// The event and its fields.
        system: SystemEvent,
    },
    /// `request_welcome`: a first-time user opened the chat; no content.
    RequestWelcome,
    /// `edit`: the user edited an earlier message; update that message rather than add one.
    Edit {
        /// The wamid of the message edited.
        original_message_id: String,
        /// Its new content.
        message: Box<Content>,
        /// The edited message's `context`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<MessageContext>,
    },
    /// `revoke`: the user deleted an earlier message.
    Revoke {
        /// The wamid of the message deleted.
        original_message_id: String,
    },
    /// `unsupported` (older: `unknown`): a type Meta does not deliver to the API.
    Unsupported {
        /// `unsupported.type`, e.g. `poll`, when Meta names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subtype: Option<String>,
        /// The message's `errors` (usually 131051, "Message type unknown").
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<MetaError>,
    },
    /// Any other type, or a known type whose object is missing or unusable: kept, not guessed.
    Unknown {
        /// Meta's `type` string as received (empty when the message had none).
        kind: String,
        /// The message's object named by its type (`message[kind]`), or `null` if there is none.
        raw: Value,
    },
}

/// An image, video, audio, document or sticker. Download it with `id` (usable for about 7 days)
/// or `url` (both need the access token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Media id for `GET /{media-id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// MIME type, e.g. `image/jpeg`, `audio/ogg; codecs=opus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// SHA-256 of the file, as Meta gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Caption (image, video, document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// File name (document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Download URL (since late 2025; still needs the access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Audio recorded as a voice note.
    #[serde(default, skip_serializing_if = "is_false")]
    pub voice: bool,
    /// Animated sticker.
    #[serde(default, skip_serializing_if = "is_false")]
    pub animated: bool,
}

/// A location pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Place name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Place URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One shared contact card (vCard-like). Phone numbers in it are free-form, as the user stored
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCard {
    /// Name parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ContactName>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<ContactPhone>,
    /// E-mail addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<ContactEmail>,
    /// Postal addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<ContactAddress>,
    /// Organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<ContactOrg>,
    /// Web sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<ContactUrl>,
    /// Birthday, `YYYY-MM-DD` as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
    /// The raw vCard text, when Meta includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcard: Option<String>,
}

/// A contact card's name parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactName {
    /// Full name as displayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_name: Option<String>,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A phone number on a contact card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPhone {
    /// As the user stored it (`+`, spaces, dashes…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The number's WhatsApp id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// `CELL`, `HOME`, `WORK`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An e-mail address on a contact card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEmail {
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `HOME`, `WORK`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A postal address on a contact card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactAddress {
    /// Street and number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Two-letter country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// `HOME`, `WORK`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The organization on a contact card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactOrg {
    /// Company name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A web site on a contact card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactUrl {
    /// The URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `HOME`, `WORK`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The answer to an interactive message, by `interactive.type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Interactive {
    /// A reply button was tapped.
    ButtonReply {
        /// The button id we set.
        id: String,
        /// The button's label.
        title: String,
    },
    /// A list row was picked.
    ListReply {
        /// The row id we set.
        id: String,
        /// The row's title.
        title: String,
        /// The row's description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A Flow was completed.
    NfmReply {
        /// Usually `flow`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Usually `Sent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// The Flow's answers, as the JSON text Meta sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_json: Option<String>,
        /// `response_json` parsed, when it is valid JSON (usually an object with `flow_token`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<Value>,
    },
    /// The user answered a call-permission request.
    CallPermissionReply {
        /// `accept` or `reject`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<String>,
        /// Until when the permission holds (Unix seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expiration_timestamp: Option<i64>,
        /// How the user answered, e.g. `user_action`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_source: Option<String>,
    },
    /// Any other `interactive.type`, or a known one whose object is missing: kept raw.
    Other {
        /// `interactive.type` as received (empty when absent).
        subtype: String,
        /// The whole `interactive` object.
        raw: Value,
    },
}

/// A cart sent from a catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The catalog the products are from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    /// The user's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The lines of the cart.
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

/// One line of an order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductItem {
    /// The product's SKU in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_retailer_id: Option<String>,
    /// How many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// Unit price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_price: Option<f64>,
    /// ISO 4217 currency code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A `system` message: something changed about the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemEvent {
    /// `user_changed_number`, `user_changed_user_id`, `customer_identity_changed`, … kept as
    /// received.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Meta's human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The user's new phone (`wa_id`, older payloads `new_wa_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// The user's new BSUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's parent BSUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_user_id: Option<String>,
    /// The user's BSUID before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_user_id: Option<String>,
    /// The message-level `identity` of a `customer_identity_changed` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityChange>,
}

/// The new identity key of a user (`customer_identity_changed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityChange {
    /// Whether the change was acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<bool>,
    /// When the identity was created (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp: Option<i64>,
    /// The identity key hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// A message's `context`: what it replies to, whether it was forwarded, which product it asks
/// about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageContext {
    /// The wamid replied to (render it as a quote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who sent the message replied to (usually our display number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Forwarded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forwarded: bool,
    /// Forwarded many times.
    #[serde(default, skip_serializing_if = "is_false")]
    pub frequently_forwarded: bool,
    /// The product asked about ("Message business" on a product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_product: Option<ReferredProduct>,
}

/// A product a message asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferredProduct {
    /// Its catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    /// Its SKU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_retailer_id: Option<String>,
}

/// Where a conversation started: the click-to-WhatsApp ad or Page post the user tapped (first
/// message only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// The ad's or post's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// The ad's or post's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// `ad` or `post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// The ad's headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// The ad's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `image` or `video`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The ad's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The ad's video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_url: Option<String>,
    /// The video's thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Click id for conversion reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctwa_clid: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Content {
    /// A one-line preview for conversation lists: the text or caption, else a short label such
    /// as `📷 Photo`. Line breaks become spaces; at most [`PREVIEW_MAX_CHARS`] characters (cut on
    /// a character boundary, ending in `…` when cut).
    pub fn preview(&self) -> String {
        bounded(&self.full_preview())
    }

    fn full_preview(&self) -> String {
        let labelled = |icon: &str, text: Option<&str>, fallback: &str| match text {
            Some(t) if !t.trim().is_empty() => format!("{icon} {t}"),
            _ => format!("{icon} {fallback}"),
        };
        match self {
            Self::Text { body } => body.clone(),
            Self::Image(m) => labelled("📷", m.caption.as_deref(), "Photo"),
            Self::Video(m) => labelled("🎥", m.caption.as_deref(), "Video"),
            Self::Audio(m) if m.voice => "🎤 Voice message".to_owned(),
            Self::Audio(_) => "🎵 Audio".to_owned(),
            Self::Document(m) => labelled(
                "📄",
                non_empty(&m.caption).or(non_empty(&m.filename)),
                "Document",
            ),
            Self::Sticker(_) => "💟 Sticker".to_owned(),
            Self::Location(l) => labelled(
                "📍",
                non_empty(&l.name).or(non_empty(&l.address)),
                "Location",
            ),
            Self::Contacts { contacts, .. } => {
                let first = contacts
                    .first()
                    .and_then(|c| non_empty(&c.name.as_ref()?.formatted_name));
                match (first, contacts.len()) {
                    (Some(name), 1) => format!("👤 {name}"),
                    (Some(name), n) => format!("👤 {name} and {} more", n - 1),
                    (None, 0 | 1) => "👤 Contact".to_owned(),
                    (None, n) => format!("👤 {n} contacts"),
                }
            }
            Self::Interactive { interactive } => match interactive {
                Interactive::ButtonReply { title, .. } | Interactive::ListReply { title, .. } => {
                    title.clone()
                }
                Interactive::NfmReply { body, .. } => labelled("📝", body.as_deref(), "Form sent"),
                Interactive::CallPermissionReply { response, .. } => {
                    labelled("📞", response.as_deref(), "Call permission answered")
                }
                Interactive::Other { subtype, .. } => format!("[interactive {subtype}]"),
            },
            Self::Button { text, payload } => non_empty(text)
                .or(non_empty(payload))
                .map_or_else(|| "[button]".to_owned(), str::to_owned),
            Self::Reaction { emoji, .. } => match emoji {
                Some(e) => format!("Reacted {e}"),
                None => "Removed a reaction".to_owned(),
            },
            Self::Order(o) => match non_empty(&o.text) {
                Some(t) => format!("🛒 {t}"),
                None => match o.product_items.len() {
                    1 => "🛒 Order: 1 item".to_owned(),
                    n => format!("🛒 Order: {n} items"),
                },
            },
            Self::System { system } => {
                non_empty(&system.body).map_or_else(|| "System message".to_owned(), str::to_owned)
            }
            Self::RequestWelcome => "👋 Opened the chat".to_owned(),
            Self::Edit { message, .. } => format!("✏️ {}", message.full_preview()),
            Self::Revoke { .. } => "🚫 Message deleted".to_owned(),
            Self::Unsupported { subtype, .. } => match non_empty(subtype) {
                Some(s) => format!("Unsupported message ({s})"),
                None => "Unsupported message".to_owned(),
            },
            Self::Unknown { kind, .. } => format!("[{kind}]"),
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.trim().is_empty())
}

/// Line breaks and other control characters to spaces, then at most [`PREVIEW_MAX_CHARS`]
/// characters.
fn bounded(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(PREVIEW_MAX_CHARS * 4));
    for (n, c) in s.chars().enumerate() {
        if n == PREVIEW_MAX_CHARS - 1 && s.chars().nth(PREVIEW_MAX_CHARS).is_some() {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn media(caption: Option<&str>, filename: Option<&str>) -> Media {
        Media {
            id: Some("1".into()),
            caption: caption.map(Into::into),
            filename: filename.map(Into::into),
            ..Media::default()
        }
    }

    fn text(body: &str) -> Content {
        Content::Text { body: body.into() }
    }

    #[test]
    fn preview_shows_text_captions_and_labels() {
        let card = |name: &str| ContactCard {
            name: Some(ContactName {
                formatted_name: Some(name.into()),
                ..ContactName::default()
            }),
            ..ContactCard::default()
        };
        let cases = [
            (text("Does it come in blue?"), "Does it come in blue?"),
            (Content::Image(media(Some("look"), None)), "📷 look"),
            (Content::Image(media(None, None)), "📷 Photo"),
            (Content::Video(media(Some(" "), None)), "🎥 Video"),
            (
                Content::Audio(Media {
                    voice: true,
                    ..Media::default()
                }),
                "🎤 Voice message",
            ),
            (Content::Audio(Media::default()), "🎵 Audio"),
            (
                Content::Document(media(None, Some("invoice.pdf"))),
                "📄 invoice.pdf",
            ),
            (
                Content::Document(media(Some("April"), Some("invoice.pdf"))),
                "📄 April",
            ),
            (Content::Sticker(Media::default()), "💟 Sticker"),
            (
                Content::Location(Location {
                    latitude: 1.0,
                    longitude: 2.0,
                    name: None,
                    address: Some("1 Main St".into()),
                    url: None,
                }),
                "📍 1 Main St",
            ),
            (
                Content::Contacts {
                    contacts: vec![card("Ann"), card("Bob"), card("Cy")],
                    origin: None,
                },
                "👤 Ann and 2 more",
            ),
            (
                Content::Contacts {
                    contacts: vec![],
                    origin: None,
                },
                "👤 Contact",
            ),
            (
                Content::Interactive {
                    interactive: Interactive::ListReply {
                        id: "r".into(),
                        title: "Row".into(),
                        description: None,
                    },
                },
                "Row",
            ),
            (
                Content::Interactive {
                    interactive: Interactive::NfmReply {
                        name: Some("flow".into()),
                        body: Some("Sent".into()),
                        response_json: None,
                        response: None,
                    },
                },
                "📝 Sent",
            ),
            (
                Content::Interactive {
                    interactive: Interactive::Other {
                        subtype: "x_reply".into(),
                        raw: Value::Null,
                    },
                },
                "[interactive x_reply]",
            ),
            (
                Content::Button {
                    text: None,
                    payload: Some("STOP".into()),
                },
                "STOP",
            ),
            (
                Content::Reaction {
                    message_id: "w".into(),
                    emoji: Some("👍".into()),
                },
                "Reacted 👍",
            ),
            (
                Content::Reaction {
                    message_id: "w".into(),
                    emoji: None,
                },
                "Removed a reaction",
            ),
            (
                Content::Order(Order {
                    product_items: vec![ProductItem::default(); 3],
                    ..Order::default()
                }),
                "🛒 Order: 3 items",
            ),
            (
                Content::System {
                    system: SystemEvent {
                        body: Some("User changed number".into()),
                        ..SystemEvent::default()
                    },
                },
                "User changed number",
            ),
            (Content::RequestWelcome, "👋 Opened the chat"),
            (
                Content::Edit {
                    original_message_id: "w".into(),
                    message: Box::new(text("Blue, size M")),
                    context: None,
                },
                "✏️ Blue, size M",
            ),
            (
                Content::Revoke {
                    original_message_id: "w".into(),
                },
                "🚫 Message deleted",
            ),
            (
                Content::Unsupported {
                    subtype: Some("poll".into()),
                    errors: vec![],
                },
                "Unsupported message (poll)",
            ),
            (
                Content::Unknown {
                    kind: "poll".into(),
                    raw: json!({"q": 1}),
                },
                "[poll]",
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(content.preview(), expected, "for {content:?}");
        }
    }

    #[test]
    fn preview_is_one_line() {
        assert_eq!(text("a\nb\r\tc").preview(), "a b  c");
    }

    #[test]
    fn preview_is_cut_to_200_characters_on_a_character_boundary() {
        let long = text(&"é".repeat(500)).preview();
        assert_eq!(long.chars().count(), PREVIEW_MAX_CHARS);
        assert!(long.ends_with("é…"));
        let exact = "😀".repeat(PREVIEW_MAX_CHARS);
        assert_eq!(
            text(&exact).preview(),
            exact,
            "200 characters are kept whole"
        );
        let one_more = text(&format!("{exact}x")).preview();
        assert_eq!(one_more.chars().count(), PREVIEW_MAX_CHARS);
        assert!(one_more.ends_with("😀…"));
    }

    #[test]
    fn every_variant_round_trips_through_json() {
        let values = [
            text("hi"),
            Content::Audio(Media {
                voice: true,
                ..media(None, None)
            }),
            Content::Location(Location {
                latitude: 37.4248593,
                longitude: -122.1232459,
                name: Some("Philz".into()),
                address: None,
                url: None,
            }),
            Content::Interactive {
                interactive: Interactive::NfmReply {
                    name: Some("flow".into()),
                    body: None,
                    response_json: Some(r#"{"flow_token":"t","n":[1,2.5]}"#.into()),
                    response: Some(json!({"flow_token": "t", "n": [1, 2.5]})),
                },
            },
            Content::Interactive {
                interactive: Interactive::CallPermissionReply {
                    response: Some("reject".into()),
                    expiration_timestamp: Some(-1),
                    response_source: None,
                },
            },
            Content::Order(Order {
                catalog_id: Some("c".into()),
                text: None,
                product_items: vec![ProductItem {
                    product_retailer_id: Some("p".into()),
                    quantity: Some(2),
                    item_price: Some(12.99),
                    currency: Some("EUR".into()),
                }],
            }),
            Content::Edit {
                original_message_id: "wamid.O".into(),
                message: Box::new(Content::Edit {
                    original_message_id: "wamid.P".into(),
                    message: Box::new(Content::Document(media(Some("c"), Some("f.pdf")))),
                    context: None,
                }),
                context: Some(MessageContext {
                    id: Some("wamid.Q".into()),
                    forwarded: true,
                    ..MessageContext::default()
                }),
            },
            Content::Unsupported {
                subtype: None,
                errors: vec![MetaError {
                    code: Some(131051),
                    details: Some("d".into()),
                    ..MetaError::default()
                }],
            },
            Content::Unknown {
                kind: "poll".into(),
                raw: json!({"q": "é", "n": [1, -2, 3.5, null, true], "big": 18446744073709551615u64}),
            },
            Content::Unknown {
                kind: String::new(),
                raw: Value::Null,
            },
        ];
        for content in values {
            let stored = serde_json::to_string(&content).unwrap();
            let back: Content = serde_json::from_str(&stored).unwrap();
            assert_eq!(back, content, "{stored}");
        }
    }

    #[test]
    fn unknown_keeps_its_kind_beside_the_tag() {
        let stored = serde_json::to_value(Content::Unknown {
            kind: "poll".into(),
            raw: json!({"q": 1}),
        })
        .unwrap();
        assert_eq!(
            stored,
            json!({"type": "unknown", "kind": "poll", "raw": {"q": 1}})
        );
    }
}
