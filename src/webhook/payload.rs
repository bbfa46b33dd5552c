//! Wire DTOs mirroring Meta's webhook JSON. Permissive on purpose: unknown fields are ignored and
//! nearly everything is optional, so a new Meta field never turns a delivery into a 4xx (which
//! Meta would retry for seven days). Message objects are borrowed as [`RawValue`] so they can be
//! stored byte for byte, and the strings read on every webhook borrow from the body (`Cow`: owned
//! only when Meta escaped something in them), so parsing allocates little.

use std::borrow::Cow;

use serde::{Deserialize, de};
use serde_json::value::RawValue;

use crate::webhook::lenient;

/// The top-level notification.
#[derive(Debug, Deserialize)]
pub struct WebhookPayload<'a> {
    // `object` is always `whatsapp_business_account` from Meta, but the FastAPI original's
    // examples omit it, so it is neither required nor read.
    #[serde(borrow)]
    pub entry: Vec<EntryPayload<'a>>,
}

/// One `entry[]`: a WhatsApp Business Account and its changes.
#[derive(Debug, Deserialize)]
pub struct EntryPayload<'a> {
    /// The WABA id (`"0"` in the App Dashboard's test samples): the tenant of changes without
    /// `metadata` (template and account updates). Read leniently: a number is kept as digits.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: Option<String>,
    /// When Meta produced the entry (unix seconds; sent with template, account and other
    /// non-message updates): what tells a repeated update from Meta's retry of the same one.
    #[serde(default, deserialize_with = "lenient::string")]
    pub time: Option<String>,
    #[serde(default, borrow)]
    pub changes: Vec<ChangePayload<'a>>,
}

/// One `changes[]`. Meta sends `value` before `field`, so the value is kept raw here and read
/// once the field is known: message-bearing fields (`messages`, `smb_message_echoes`,
/// `history`) leniently as a [`ChangeValuePayload`], every other field (`account_update`,
/// template updates, `calls`, `user_preferences`, …) kept as it came. Any JSON value is
/// accepted, so an unexpected shape never fails the delivery.
#[derive(Debug, Deserialize)]
pub struct ChangePayload<'a> {
    #[serde(default, borrow)]
    pub field: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub value: Option<&'a RawValue>,
}

/// The parts of a message-bearing change's `value`. Lists hold each element's raw bytes;
/// `metadata` stays raw until the change is known to be about messages. Anything that is not an
/// object (or a list that is not an array) reads as absent / [`RawList::NotAList`] instead of
/// failing; whether that is an error is decided once the field is known.
#[derive(Debug, Default)]
pub struct ChangeValuePayload<'a> {
    pub metadata: Option<&'a RawValue>,
    pub contacts: RawList<'a>,
    pub messages: RawList<'a>,
    pub statuses: RawList<'a>,
    pub errors: RawList<'a>,
    /// `smb_message_echoes`: what the business sent from the WhatsApp Business app.
    pub message_echoes: RawList<'a>,
    /// `history`: back-fill chunks of earlier chats.
    pub history: RawList<'a>,
}

/// A JSON array kept as its elements' raw bytes, or a note that the value was something else.
#[derive(Debug, Default)]
pub enum RawList<'a> {
    /// Key absent.
    #[default]
    Absent,
    /// An array.
    List(Vec<&'a RawValue>),
    /// Present but not an array.
    NotAList,
}

impl<'a> RawList<'a> {
    /// The elements; none when absent or not an array.
    pub fn items(&self) -> &[&'a RawValue] {
        match self {
            Self::List(items) => items,
            _ => &[],
        }
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ValueKey {
    Metadata,
    Contacts,
    Messages,
    Statuses,
    Errors,
    MessageEchoes,
    History,
    #[serde(other)]
    Other,
}

/// Accepts any JSON value: a map is read key by key, anything else is drained and ignored.
struct LenientVisitor<T>(std::marker::PhantomData<T>);

/// The scalar `visit_*` methods of a lenient visitor: a scalar becomes `$value`, `null` `$null`.
macro_rules! scalars_become {
    ($value:expr, null => $null:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($null)
        }
    };
}

impl<'de: 'a, 'a> de::Visitor<'de> for LenientVisitor<ChangeValuePayload<'a>> {
    type Value = ChangeValuePayload<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = ChangeValuePayload::default();
        while let Some(key) = map.next_key::<ValueKey>()? {
            match key {
                ValueKey::Metadata => value.metadata = Some(map.next_value()?),
                ValueKey::Contacts => value.contacts = map.next_value()?,
                ValueKey::Messages => value.messages = map.next_value()?,
                ValueKey::Statuses => value.statuses = map.next_value()?,
                ValueKey::Errors => value.errors = map.next_value()?,
                ValueKey::MessageEchoes => value.message_echoes = map.next_value()?,
                ValueKey::History => value.history = map.next_value()?,
                ValueKey::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(value)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(ChangeValuePayload::default())
    }

    scalars_become!(ChangeValuePayload::default(), null => ChangeValuePayload::default());
}

impl<'de: 'a, 'a> de::Visitor<'de> for LenientVisitor<RawList<'a>> {
    type Value = RawList<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(item) = seq.next_element::<&'a RawValue>()? {
            items.push(item);
        }
        Ok(RawList::List(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(RawList::NotAList)
    }

    // `null` reads as absent, as for every other optional field.
    scalars_become!(RawList::NotAList, null => RawList::Absent);
}

impl<'de: 'a, 'a> Deserialize<'de> for ChangeValuePayload<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor::<Self>(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawList<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor::<Self>(std::marker::PhantomData))
    }
}

/// One `history[]` chunk of a back-fill: its progress, its threads, or the errors Meta sent
/// instead (the business declined to share its history).
#[derive(Debug, Default, Deserialize)]
pub struct HistoryChunkPayload<'a> {
    #[serde(default, borrow)]
    pub metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "lenient::vec")]
    pub threads: Vec<ThreadPayload<'a>>,
    #[serde(default, borrow)]
    pub errors: RawList<'a>,
}

/// One chat of a history chunk: the user (`id`, the phone, or `context` when it is withheld) and
/// its messages in both directions.
#[derive(Debug, Default, Deserialize)]
pub struct ThreadPayload<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub context: Option<ContactPayload<'a>>,
    #[serde(default, borrow)]
    pub messages: RawList<'a>,
}

/// Which business number the change is about.
#[derive(Debug, Default, Deserialize)]
pub struct MetadataPayload<'a> {
    #[serde(default, borrow)]
    pub display_phone_number: Cow<'a, str>,
    #[serde(default, borrow)]
    pub phone_number_id: Cow<'a, str>,
}

/// One `value.contacts[]` profile. Withheld fields are omitted (older payloads send `""`, read
/// as absent by the extractor).
#[derive(Debug, Default, Deserialize)]
pub struct ContactPayload<'a> {
    #[serde(default, borrow)]
    pub wa_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub parent_user_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub profile: Option<ProfilePayload>,
}

/// `contacts[].profile`.
#[derive(Debug, Default, Deserialize)]
pub struct ProfilePayload {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// The fields of a message object we read. Every content field is optional: which one is present
/// depends on `type`. Content fields are read leniently ([`lenient`]): a value of the wrong JSON
/// type reads as absent instead of failing the message. Objects a message rarely has are boxed:
/// the struct is moved several times while it is built, and inline they made it ~2 KB.
#[derive(Debug, Deserialize)]
pub struct MessagePayload<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub from: Option<Cow<'a, str>>,
    /// The recipient, on the business's own messages (echoes, outbound history).
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub to: Option<Cow<'a, str>>,
    /// The recipient's BSUID, on the business's own messages.
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub to_user_id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    /// Sender BSUID (2026+); may be the only identity when the phone is withheld.
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub from_user_id: Option<Cow<'a, str>>,
    /// Sender parent BSUID, when the business enabled them.
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub from_parent_user_id: Option<Cow<'a, str>>,
    /// Group messages only.
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub group_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub context: Option<Box<ContextPayload<'a>>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub referral: Option<Box<ReferralPayload<'a>>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub text: Option<TextPayload<'a>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub image: Option<Box<MediaPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub video: Option<Box<MediaPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub audio: Option<Box<MediaPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub document: Option<Box<MediaPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub sticker: Option<Box<MediaPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub location: Option<Box<LocationPayload>>,
    #[serde(default, deserialize_with = "lenient::list")]
    pub contacts: Option<Vec<SharedContactPayload>>,
    /// Set on a contacts message that answers a request-contact-info button.
    #[serde(default, borrow, deserialize_with = "lenient::cow")]
    pub origin: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub interactive: Option<Box<InteractivePayload<'a>>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub button: Option<Box<ButtonPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub reaction: Option<Box<ReactionPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub order: Option<Box<OrderPayload>>,
    #[serde(default, deserialize_with = "lenient::object")]
    pub system: Option<Box<SystemPayload>>,
    /// Beside `system` on `customer_identity_changed`.
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub identity: Option<Box<IdentityPayload<'a>>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub edit: Option<Box<EditPayload<'a>>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub revoke: Option<Box<RevokePayload<'a>>>,
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub unsupported: Option<Box<UnsupportedPayload<'a>>>,
    #[serde(default, deserialize_with = "lenient::list")]
    pub errors: Option<Vec<MessageErrorPayload>>,
}

#[derive(Debug, Deserialize)]
pub struct TextPayload<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::cow_or_empty")]
    pub body: Cow<'a, str>,
}

/// `image`, `video`, `audio`, `document` and `sticker` objects.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MediaPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub mime_type: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub sha256: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub caption: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub filename: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub url: Option<String>,
    #[serde(deserialize_with = "lenient::flag")]
    pub voice: bool,
    #[serde(deserialize_with = "lenient::flag")]
    pub animated: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LocationPayload {
    #[serde(deserialize_with = "lenient::number")]
    pub latitude: Option<f64>,
    #[serde(deserialize_with = "lenient::number")]
    pub longitude: Option<f64>,
    #[serde(deserialize_with = "lenient::string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub address: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub url: Option<String>,
}

/// One shared contact card.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactPayload {
    #[serde(deserialize_with = "lenient::object")]
    pub name: Option<SharedContactName>,
    #[serde(deserialize_with = "lenient::vec")]
    pub phones: Vec<SharedContactPhone>,
    #[serde(deserialize_with = "lenient::vec")]
    pub emails: Vec<SharedContactEmail>,
    #[serde(deserialize_with = "lenient::vec")]
    pub addresses: Vec<SharedContactAddress>,
    #[serde(deserialize_with = "lenient::object")]
    pub org: Option<SharedContactOrg>,
    #[serde(deserialize_with = "lenient::vec")]
    pub urls: Vec<SharedContactUrl>,
    #[serde(deserialize_with = "lenient::string")]
    pub birthday: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub vcard: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactName {
    #[serde(deserialize_with = "lenient::string")]
    pub formatted_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub first_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub last_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub middle_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub suffix: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactPhone {
    #[serde(deserialize_with = "lenient::string")]
    pub phone: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub wa_id: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactEmail {
    #[serde(deserialize_with = "lenient::string")]
    pub email: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactAddress {
    #[serde(deserialize_with = "lenient::string")]
    pub street: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub city: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub state: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub zip: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub country: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub country_code: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactOrg {
    #[serde(deserialize_with = "lenient::string")]
    pub company: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub department: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub title: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SharedContactUrl {
    #[serde(deserialize_with = "lenient::string")]
    pub url: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InteractivePayload<'a> {
    #[serde(rename = "type", borrow, deserialize_with = "lenient::cow")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(deserialize_with = "lenient::object")]
    pub button_reply: Option<ReplyPayload>,
    #[serde(deserialize_with = "lenient::object")]
    pub list_reply: Option<ReplyPayload>,
    #[serde(deserialize_with = "lenient::object")]
    pub nfm_reply: Option<FlowReplyPayload>,
    #[serde(deserialize_with = "lenient::object")]
    pub call_permission_reply: Option<CallPermissionReplyPayload>,
}

/// `button_reply` and `list_reply`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReplyPayload {
    #[serde(deserialize_with = "lenient::string_or_empty")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string_or_empty")]
    pub title: String,
    #[serde(deserialize_with = "lenient::string")]
    pub description: Option<String>,
}

/// `nfm_reply`: a completed Flow.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FlowReplyPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub body: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub response_json: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CallPermissionReplyPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub response: Option<String>,
    #[serde(deserialize_with = "lenient::integer")]
    pub expiration_timestamp: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub response_source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ButtonPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub text: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub payload: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReactionPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub message_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub emoji: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OrderPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub catalog_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub text: Option<String>,
    #[serde(deserialize_with = "lenient::vec")]
    pub product_items: Vec<ProductItemPayload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProductItemPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub product_retailer_id: Option<String>,
    #[serde(deserialize_with = "lenient::integer")]
    pub quantity: Option<i64>,
    #[serde(deserialize_with = "lenient::number")]
    pub item_price: Option<f64>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SystemPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub body: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub wa_id: Option<String>,
    /// Older payloads' name for `wa_id`.
    #[serde(deserialize_with = "lenient::string")]
    pub new_wa_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub user_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub parent_user_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub previous_user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IdentityPayload<'a> {
    #[serde(deserialize_with = "lenient::opt_flag")]
    pub acknowledged: Option<bool>,
    #[serde(deserialize_with = "lenient::integer")]
    pub created_timestamp: Option<i64>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub hash: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ContextPayload<'a> {
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub from: Option<Cow<'a, str>>,
    #[serde(deserialize_with = "lenient::flag")]
    pub forwarded: bool,
    #[serde(deserialize_with = "lenient::flag")]
    pub frequently_forwarded: bool,
    #[serde(borrow, deserialize_with = "lenient::object")]
    pub referred_product: Option<ReferredProductPayload<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReferredProductPayload<'a> {
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub catalog_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub product_retailer_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReferralPayload<'a> {
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub source_url: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub source_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub source_type: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub headline: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub body: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub media_type: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub image_url: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub video_url: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub thumbnail_url: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub ctwa_clid: Option<Cow<'a, str>>,
}

/// `edit`: the new version of an earlier message, itself a message object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EditPayload<'a> {
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub original_message_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::object")]
    pub message: Option<Box<MessagePayload<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevokePayload<'a> {
    #[serde(borrow, deserialize_with = "lenient::cow")]
    pub original_message_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UnsupportedPayload<'a> {
    #[serde(rename = "type", borrow, deserialize_with = "lenient::cow")]
    pub kind: Option<Cow<'a, str>>,
}

/// An entry of a message's `errors`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MessageErrorPayload {
    #[serde(deserialize_with = "lenient::integer")]
    pub code: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub title: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub message: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    pub error_data: Option<ErrorDataPayload>,
    /// Older payloads put `details` beside `title` instead of in `error_data`.
    #[serde(deserialize_with = "lenient::string")]
    pub details: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub href: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDataPayload {
    #[serde(deserialize_with = "lenient::string")]
    pub details: Option<String>,
}

/// Meta sends timestamps as strings; some simulators send numbers. Accept both (a visitor, not an
/// untagged enum: that would buffer the value first, on every message).
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}
