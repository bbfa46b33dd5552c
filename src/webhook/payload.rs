//! Wire DTOs mirroring Meta's webhook JSON. Permissive on purpose: unknown fields are ignored and
//! nearly everything is optional, so a new Meta field never turns a delivery into a 4xx (which
//! Meta would retry for seven days). Message objects are borrowed as [`RawValue`] so they can be
//! stored byte for byte, and the strings read on every webhook borrow from the body (`Cow`: owned
//! only when Meta escaped something in them), so parsing allocates little.

use std::borrow::Cow;

use serde::{Deserialize, de};
use serde_json::value::RawValue;

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
    #[serde(default, borrow)]
    pub changes: Vec<ChangePayload<'a>>,
}

/// One `changes[]`. Meta sends `value` before `field`, so the value is read in the same pass
/// without knowing its field yet: leniently ([`ChangeValuePayload`]), so the unrelated shapes of
/// other fields (`account_update`, template updates, …) never fail parsing.
#[derive(Debug, Deserialize)]
pub struct ChangePayload<'a> {
    #[serde(default, borrow)]
    pub field: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub value: Option<ChangeValuePayload<'a>>,
}

/// The parts of a change's `value` a `messages` change has. Lists hold each element's raw bytes;
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
#[serde(field_identifier, rename_all = "lowercase")]
enum ValueKey {
    Metadata,
    Contacts,
    Messages,
    Statuses,
    Errors,
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
/// depends on `type`.
#[derive(Debug, Deserialize)]
pub struct MessagePayload<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub from: Option<Cow<'a, str>>,
    /// The sender's BSUID (2026+); may be the only identity when the phone is withheld.
    #[serde(default, borrow)]
    pub from_user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub from_parent_user_id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub text: Option<TextPayload<'a>>,
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
pub struct TextPayload<'a> {
    #[serde(default, borrow)]
    pub body: Cow<'a, str>,
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
