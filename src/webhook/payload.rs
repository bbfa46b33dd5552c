//! Wire DTOs mirroring Meta's webhook JSON. Permissive on purpose: unknown fields are ignored and
//! nearly everything is optional, so a new Meta field never turns a delivery into a 4xx (which
//! Meta would retry for seven days). Message objects are borrowed as [`RawValue`] so they can be
//! stored byte for byte.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level notification.
#[derive(Debug, Deserialize)]
pub struct WebhookPayload<'a> {
    /// Always `whatsapp_business_account` from Meta; the FastAPI original's examples omit it, so we
    /// do not require it.
    #[serde(default)]
    pub object: Option<String>,
    #[serde(borrow)]
    pub entry: Vec<EntryPayload<'a>>,
}

/// One `entry[]`: a WhatsApp Business Account and its changes.
#[derive(Debug, Deserialize)]
pub struct EntryPayload<'a> {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, borrow)]
    pub changes: Vec<ChangePayload<'a>>,
}

/// One `changes[]`. The value is kept raw until we know the field is `messages`: other fields
/// (`account_update`, template updates, …) have unrelated shapes.
#[derive(Debug, Deserialize)]
pub struct ChangePayload<'a> {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default, borrow)]
    pub value: Option<&'a RawValue>,
}

/// The `value` of a `messages` change.
#[derive(Debug, Deserialize)]
pub struct MessagesValuePayload<'a> {
    #[serde(default)]
    pub metadata: Option<MetadataPayload>,
    #[serde(default, borrow)]
    pub messages: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub statuses: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub errors: Vec<&'a RawValue>,
}

/// Which business number the change is about.
#[derive(Debug, Default, Deserialize)]
pub struct MetadataPayload {
    #[serde(default)]
    pub display_phone_number: String,
    #[serde(default)]
    pub phone_number_id: String,
}

/// The fields of a message object we read. Every content field is optional: which one is present
/// depends on `type`.
#[derive(Debug, Deserialize)]
pub struct MessagePayload {
    pub id: Option<String>,
    pub from: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub text: Option<TextPayload>,
    pub image: Option<MediaPayload>,
    pub video: Option<MediaPayload>,
    pub audio: Option<MediaPayload>,
    pub document: Option<MediaPayload>,
    pub sticker: Option<MediaPayload>,
    pub location: Option<LocationPayload>,
    pub contacts: Option<Vec<SharedContactPayload>>,
    pub interactive: Option<InteractivePayload>,
    pub button: Option<ButtonPayload>,
    pub reaction: Option<ReactionPayload>,
    pub order: Option<OrderPayload>,
    pub system: Option<SystemPayload>,
    pub errors: Option<Vec<MessageErrorPayload>>,
}

#[derive(Debug, Deserialize)]
pub struct TextPayload {
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Deserialize)]
pub struct MediaPayload {
    pub caption: Option<String>,
    pub filename: Option<String>,
    #[serde(default)]
    pub voice: bool,
}

#[derive(Debug, Deserialize)]
pub struct LocationPayload {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SharedContactPayload {
    pub name: Option<SharedContactName>,
}

#[derive(Debug, Deserialize)]
pub struct SharedContactName {
    pub formatted_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InteractivePayload {
    pub button_reply: Option<ReplyPayload>,
    pub list_reply: Option<ReplyPayload>,
    pub nfm_reply: Option<FlowReplyPayload>,
}

#[derive(Debug, Deserialize)]
pub struct ReplyPayload {
    #[serde(default)]
    pub title: String,
}

#[derive(Debug, Deserialize)]
pub struct FlowReplyPayload {
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ButtonPayload {
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ReactionPayload {
    pub emoji: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OrderPayload {
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub struct SystemPayload {
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MessageErrorPayload {
    pub title: Option<String>,
}

/// Meta sends timestamps as strings; some simulators send numbers. Accept both.
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        String(String),
        Number(serde_json::Number),
    }
    Ok(
        Option::<StringOrNumber>::deserialize(deserializer)?.map(|v| match v {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }),
    )
}
