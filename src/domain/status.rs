//! Delivery statuses of the messages we sent: Meta's `value.statuses[]` items as domain types
//! ([`StatusUpdate`]), and the pure state machine that folds them into one message's status
//! ([`StatusState`]). The Redis (Lua) and SQL store backends mirror [`StatusState::record`]; the
//! rules below are the contract they implement.
//!
//! # Ranking
//!
//! `sent (1) < delivered (2) < read (3) < played (4) < deleted (5) < failed (6)`
//! ([`DeliveryStatus::rank`]). `sent` to `played` is the delivery progression. `deleted` (legacy:
//! the user deleted the message) and `failed` are *final*: no progression status moves a message
//! off them. Of the two, `failed` ranks higher, so a message reported both ways ends `failed` (its
//! errors are what an inbox must show) whatever the arrival order.
//!
//! # Invariants of [`StatusState`] (kept by [`StatusState::record`], the only mutator)
//!
//! 1. **One history entry per status**, whatever the number of duplicates: the history is keyed by
//!    status alone (an inbox shows "delivered at", not every report of it). Meta redelivers for
//!    seven days, so duplicates are normal.
//! 2. **History ordered by rank**, not by arrival or timestamp: the order is a function of the set
//!    of statuses seen, so it cannot depend on arrival order, and Meta's timestamps of different
//!    statuses are not guaranteed to be monotonic.
//! 3. **Each entry holds the earliest timestamp** reported for its status, and **the first
//!    non-empty error list** reported for it (an entry without errors adopts a duplicate's; an
//!    entry with errors keeps them). So `failed` never loses its errors.
//! 4. **`current` is the highest-ranked status in the history** and `current_at` is that entry's
//!    timestamp: the current status never moves backwards (a late `sent` after `read` joins the
//!    history but leaves `read` current), and `failed`, the top rank, is never left.
//! 5. **Order independence**: applying any permutation of a multiset of updates gives the same
//!    state. The one exception is two *different* non-empty error lists for the same status, where
//!    the first to arrive is kept; Meta's redeliveries repeat the item, so this does not arise.
//! 6. **`read` implies `delivered`**: Meta skips `delivered` when both happen at once. No entry is
//!    invented for it (the history is what Meta reported); ask [`StatusState::reached`], which
//!    answers through [`DeliveryStatus::implies`].
//!
//! Mirroring in a store: one row (or hash field) per `(message, status)` with
//! `timestamp = min(old, new)` and `errors = old if non-empty else new`; `current` = the status of
//! highest rank among the rows.
//!
//! # Parsing
//!
//! [`StatusUpdate::parse`] is lenient where Meta is: everything Meta may omit is optional, `null`
//! and `""` read as absent, unknown keys are ignored, unknown pricing values are kept verbatim.
//! It requires only `id` (a [`MessageId`]), `status` (one of the six) and `timestamp` (unix
//! seconds, as a string or a number). Call statuses (`type: "call"`, or an id starting `wacid.`)
//! share the `statuses[]` array but are not message statuses: they come back as
//! [`ParsedStatus::Call`], never fed to the state machine.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::{Bsuid, MessageId, MetaError};

/// Where a message is in its delivery, as Meta reports it in `statuses[].status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Meta sent the message (one grey tick).
    Sent,
    /// It reached the user's device (two grey ticks).
    Delivered,
    /// The user opened it (blue ticks). Implies `delivered`.
    Read,
    /// The user played a voice note (since 2025-11). Implies `read`.
    Played,
    /// Could not be delivered; the update carries Meta's errors. Final.
    Failed,
    /// Legacy: the user deleted the message. Final, but outranked by `failed`.
    Deleted,
}

impl DeliveryStatus {
    /// Every status, in rank order.
    pub const ALL: [Self; 6] = [
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Played,
        Self::Deleted,
        Self::Failed,
    ];

    /// Maps Meta's lowercase string (`"sent"`, `"delivered"`, …); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            "failed" => Self::Failed,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }

    /// Meta's lowercase string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    /// The rank: `sent 1 < delivered 2 < read 3 < played 4 < deleted 5 < failed 6`. The current
    /// status only ever moves to a higher rank (see the module documentation).
    pub fn rank(self) -> u8 {
        match self {
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Played => 4,
            Self::Deleted => 5,
            Self::Failed => 6,
        }
    }

    /// Whether no delivery-progression status (`sent` to `played`) can follow this one:
    /// `failed` and `deleted`.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::Deleted)
    }

    /// Whether being in this status means `other` happened too: within the progression a status
    /// implies every lower one (`read` implies `delivered` and `sent`, since Meta may skip them);
    /// `failed` and `deleted` imply only themselves.
    pub fn implies(self, other: Self) -> bool {
        self == other || (!self.is_final() && !other.is_final() && self.rank() > other.rank())
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `incoming` would become the current status of a message now in `current`: true for
/// the first status of a message and for any higher rank, false for duplicates and stale updates.
pub fn advances(current: Option<DeliveryStatus>, incoming: DeliveryStatus) -> bool {
    current.is_none_or(|c| incoming.rank() > c.rank())
}

/// Who a status is about: the `recipient_*` fields of a status item. All optional: which ones Meta
/// sends depends on how the message was addressed and on the user's phone-sharing settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// `recipient_id`: the phone digits if we sent to a phone, the group id for a group message;
    /// omitted when we sent to a BSUID and the phone is withheld.
    pub id: Option<String>,
    /// `recipient_user_id`: the recipient's BSUID.
    pub user_id: Option<Bsuid>,
    /// The recipient's parent BSUID, whichever of Meta's spellings carried it:
    /// `recipient_parent_user_id`, `parent_recipient_user_id` or `parent_user_id` (read in that
    /// order of precedence if several are present).
    pub parent_user_id: Option<Bsuid>,
    /// `recipient_type`: `"group"` on group-message statuses.
    pub kind: Option<String>,
    /// `recipient_participant_id`: a group participant's phone (only if we sent to phones).
    pub participant_id: Option<String>,
    /// `recipient_participant_user_id`: a group participant's BSUID.
    pub participant_user_id: Option<Bsuid>,
    /// `recipient_participant_parent_user_id`: a group participant's parent BSUID.
    pub participant_parent_user_id: Option<Bsuid>,
}

/// `conversation`: legacy conversation-based pricing; from Graph v24 only present inside an open
/// free-entry-point window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// `conversation.id`.
    pub id: Option<String>,
    /// `conversation.expiration_timestamp`, unix seconds.
    pub expiration_timestamp: Option<i64>,
    /// `conversation.origin.type`, e.g. `"service"`, `"free_entry_point"`.
    pub origin_type: Option<String>,
}

/// Declares a string-valued enum whose unknown values are kept verbatim in `Other`.
macro_rules! open_string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// Any other value, verbatim.
            Other(String),
        }

        impl $name {
            /// Maps Meta's string; an unknown value is kept as `Other`.
            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }

            /// Meta's string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self::parse(&String::deserialize(d)?))
            }
        }
    };
}

open_string_enum! {
    /// `pricing.pricing_model`.
    PricingModel {
        /// Per-message pricing (current).
        Pmp = "PMP",
        /// Conversation-based pricing (legacy).
        Cbp = "CBP",
    }
}

open_string_enum! {
    /// `pricing.type`.
    PricingType {
        /// Charged.
        Regular = "regular",
        /// Free: inside the customer-service window.
        FreeCustomerService = "free_customer_service",
        /// Free: inside a free-entry-point window (click-to-WhatsApp ads, page buttons).
        FreeEntryPoint = "free_entry_point",
    }
}

open_string_enum! {
    /// `pricing.category`.
    PricingCategory {
        /// Authentication template.
        Authentication = "authentication",
        /// Authentication template, international rate.
        AuthenticationInternational = "authentication_international",
        /// Marketing template.
        Marketing = "marketing",
        /// Marketing Messages Lite API.
        MarketingLite = "marketing_lite",
        /// Utility template.
        Utility = "utility",
        /// Service (non-template) message.
        Service = "service",
        /// Referral conversion.
        ReferralConversion = "referral_conversion",
        /// Group marketing.
        GroupMarketing = "group_marketing",
        /// Group utility.
        GroupUtility = "group_utility",
        /// Group service.
        GroupService = "group_service",
        /// General-purpose AI.
        GeneralPurposeAi = "general_purpose_ai",
    }
}

/// `pricing`: what the message costs. Appears on `sent` or on `delivered`/`read`, never on both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    /// `pricing.billable` (deprecated by Meta in favour of `type` and `category`).
    pub billable: Option<bool>,
    /// `pricing.pricing_model`.
    pub pricing_model: Option<PricingModel>,
    /// `pricing.type`.
    pub kind: Option<PricingType>,
    /// `pricing.category`.
    pub category: Option<PricingCategory>,
}

/// One message status: a `value.statuses[]` item that is not a call status.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// `id`: the wamid of the message we sent.
    pub message_id: MessageId,
    /// `status`.
    pub status: DeliveryStatus,
    /// `timestamp`, unix seconds (Meta sends a string).
    pub timestamp: i64,
    /// Who it is about.
    pub recipient: Recipient,
    /// `biz_opaque_callback_data`: the tracker string we put on the send, echoed back.
    pub biz_opaque_callback_data: Option<String>,
    /// `conversation`, when present.
    pub conversation: Option<Conversation>,
    /// `pricing`, when present.
    pub pricing: Option<Pricing>,
    /// `errors`: on `failed` (and some warnings).
    pub errors: Vec<MetaError>,
    /// The item exactly as received, byte for byte.
    pub raw: Box<RawValue>,
}

/// A `statuses[]` item about a call (`type: "call"` or an id starting `wacid.`): stored as a call
/// event, not a message status. Read leniently: nothing here can fail.
#[derive(Debug, Clone)]
pub struct CallStatus {
    /// `id`: the call id (`wacid.…`), if it is a string.
    pub id: Option<String>,
    /// `status` verbatim, e.g. `RINGING`, `ACCEPTED`, `REJECTED`.
    pub status: Option<String>,
    /// `timestamp`, unix seconds, if readable.
    pub timestamp: Option<i64>,
    /// The item exactly as received.
    pub raw: Box<RawValue>,
}

/// What a `statuses[]` item is.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "message statuses are the common case and are moved out at once; boxing them would cost an allocation per status"
)]
pub enum ParsedStatus {
    /// A message status: feed it to [`StatusState::apply`].
    Message(StatusUpdate),
    /// A call status: store it as a call event.
    Call(CallStatus),
}

impl ParsedStatus {
    /// The message status, if this is one.
    pub fn into_message(self) -> Option<StatusUpdate> {
        match self {
            Self::Message(update) => Some(update),
            Self::Call(_) => None,
        }
    }
}

/// A status item that breaks a rule: the field (`None` for the item as a whole) and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusParseError {
    /// The item's key, e.g. `"id"`, `"timestamp"`, `"pricing.billable"`.
    pub field: Option<&'static str>,
    /// The rule it broke, e.g. `"is required"`.
    pub rule: String,
}

impl StatusParseError {
    fn new(field: &'static str, rule: impl fmt::Display) -> Self {
        Self {
            field: Some(field),
            rule: rule.to_string(),
        }
    }
}

impl fmt::Display for StatusParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field}: {}", self.rule),
            None => f.write_str(&self.rule),
        }
    }
}

impl std::error::Error for StatusParseError {}

/// The keys of a status item that are read; each kept raw so a wrong type is reported under its
/// own name. `null` reads as absent.
#[derive(Deserialize)]
struct StatusWire<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    status: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_parent_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    parent_recipient_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    parent_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_type: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_participant_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_participant_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    recipient_participant_parent_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    biz_opaque_callback_data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    conversation: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pricing: Option<&'a RawValue>,
    #[serde(default, borrow)]
    errors: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ConversationWire<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    expiration_timestamp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    origin: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OriginWire<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PricingWire<'a> {
    #[serde(default, borrow)]
    billable: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pricing_model: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    category: Option<&'a RawValue>,
}

/// Rule text for an unknown `status`.
const STATUS_RULE: &str = "must be one of sent, delivered, read, played, failed, deleted";

/// A string field; absent, `null` and `""` read as `None`; `Err(())` when not a string.
fn text(raw: Option<&RawValue>) -> Result<Option<String>, ()> {
    match raw {
        None => Ok(None),
        Some(raw) => match serde_json::from_str::<Option<String>>(raw.get()) {
            Ok(s) => Ok(s.filter(|s| !s.is_empty())),
            Err(_) => Err(()),
        },
    }
}

/// An optional string field, or an error naming it.
fn opt_text(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<String>, StatusParseError> {
    text(raw).map_err(|()| StatusParseError::new(field, "must be a string"))
}

/// An optional BSUID field, or an error naming it.
fn opt_bsuid(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<Bsuid>, StatusParseError> {
    opt_text(raw, field)?
        .map(|s| Bsuid::parse(&s).map_err(|e| StatusParseError::new(field, e)))
        .transpose()
}

/// Unix seconds written as a JSON string of digits (Meta) or a non-negative JSON integer
/// (simulators); anything else is `None`. Reads the raw bytes: no allocation.
fn unix_seconds(raw: &RawValue) -> Option<i64> {
    let s = raw.get();
    let digits = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An optional unix-seconds field, or an error naming it. `null` and `""` read as absent.
fn opt_unix_seconds(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<i64>, StatusParseError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "\"\"" => Ok(None),
        Some(raw) => unix_seconds(raw)
            .map(Some)
            .ok_or_else(|| StatusParseError::new(field, "must be unix seconds")),
    }
}

/// An optional object field read into `T`, or an error naming it.
fn opt_object<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<T>, StatusParseError> {
    match raw {
        None => Ok(None),
        Some(raw) if !raw.get().trim_start().starts_with('{') => {
            Err(StatusParseError::new(field, "must be an object"))
        }
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|e| StatusParseError::new(field, e)),
    }
}

impl StatusUpdate {
    /// Parses one `statuses[]` item. A call status is returned as [`ParsedStatus::Call`] without
    /// further checks; a message status needs `id`, `status` and `timestamp`, and every other
    /// field, when present, must have its documented type.
    pub fn parse(raw: &RawValue) -> Result<ParsedStatus, StatusParseError> {
        let json = raw.get();
        if !json.trim_start().starts_with('{') {
            return Err(StatusParseError {
                field: None,
                rule: "must be a JSON object".to_owned(),
            });
        }
        let wire: StatusWire<'_> = serde_json::from_str(json).map_err(|e| StatusParseError {
            field: None,
            rule: format!("must be a JSON object with each key once: {e}"),
        })?;

        // Call statuses first: their `status` (RINGING, …) is not a delivery status.
        let id = text(wire.id);
        let is_call = text(wire.kind).ok().flatten().as_deref() == Some("call")
            || matches!(&id, Ok(Some(id)) if id.starts_with("wacid."));
        if is_call {
            return Ok(ParsedStatus::Call(CallStatus {
                id: id.ok().flatten(),
                status: text(wire.status).ok().flatten(),
                timestamp: wire.timestamp.and_then(unix_seconds),
                raw: raw.to_owned(),
            }));
        }

        let id = id
            .map_err(|()| StatusParseError::new("id", "must be a string"))?
            .ok_or_else(|| StatusParseError::new("id", "is required"))?;
        let message_id = MessageId::parse(&id).map_err(|e| StatusParseError::new("id", e))?;

        let status = text(wire.status)
            .map_err(|()| StatusParseError::new("status", STATUS_RULE))?
            .ok_or_else(|| StatusParseError::new("status", "is required"))?;
        let status = DeliveryStatus::parse(&status)
            .ok_or_else(|| StatusParseError::new("status", STATUS_RULE))?;

        let timestamp = opt_unix_seconds(wire.timestamp, "timestamp")?
            .ok_or_else(|| StatusParseError::new("timestamp", "is required"))?;

        let parent_user_id = [
            (wire.recipient_parent_user_id, "recipient_parent_user_id"),
            (wire.parent_recipient_user_id, "parent_recipient_user_id"),
            (wire.parent_user_id, "parent_user_id"),
        ]
        .into_iter()
        .map(|(raw, field)| opt_bsuid(raw, field))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .next();
        let recipient = Recipient {
            id: opt_text(wire.recipient_id, "recipient_id")?,
            user_id: opt_bsuid(wire.recipient_user_id, "recipient_user_id")?,
            parent_user_id,
            kind: opt_text(wire.recipient_type, "recipient_type")?,
            participant_id: opt_text(wire.recipient_participant_id, "recipient_participant_id")?,
            participant_user_id: opt_bsuid(
                wire.recipient_participant_user_id,
                "recipient_participant_user_id",
            )?,
            participant_parent_user_id: opt_bsuid(
                wire.recipient_participant_parent_user_id,
                "recipient_participant_parent_user_id",
            )?,
        };

        let conversation = opt_object::<ConversationWire<'_>>(wire.conversation, "conversation")?
            .map(|c| -> Result<Conversation, StatusParseError> {
                let origin = opt_object::<OriginWire<'_>>(c.origin, "conversation.origin")?;
                Ok(Conversation {
                    id: opt_text(c.id, "conversation.id")?,
                    expiration_timestamp: opt_unix_seconds(
                        c.expiration_timestamp,
                        "conversation.expiration_timestamp",
                    )?,
                    origin_type: origin
                        .map(|o| opt_text(o.kind, "conversation.origin.type"))
                        .transpose()?
                        .flatten(),
                })
            })
            .transpose()?;

        let pricing = opt_object::<PricingWire<'_>>(wire.pricing, "pricing")?
            .map(|p| -> Result<Pricing, StatusParseError> {
                let billable = p
                    .billable
                    .map(|raw| serde_json::from_str::<Option<bool>>(raw.get()))
                    .transpose()
                    .map_err(|_| {
                        StatusParseError::new("pricing.billable", "must be true or false")
                    })?
                    .flatten();
                Ok(Pricing {
                    billable,
                    pricing_model: opt_text(p.pricing_model, "pricing.pricing_model")?
                        .map(|s| PricingModel::parse(&s)),
                    kind: opt_text(p.kind, "pricing.type")?.map(|s| PricingType::parse(&s)),
                    category: opt_text(p.category, "pricing.category")?
                        .map(|s| PricingCategory::parse(&s)),
                })
            })
            .transpose()?;

        let errors = match wire.errors {
            None => Vec::new(),
            Some(raw) => serde_json::from_str::<Option<Vec<MetaError>>>(raw.get())
                .map_err(|_| StatusParseError::new("errors", "must be an array of error objects"))?
                .unwrap_or_default()
                .into_iter()
                .map(MetaError::with_hint)
                .collect(),
        };

        Ok(ParsedStatus::Message(StatusUpdate {
            message_id,
            status,
            timestamp,
            recipient,
            biz_opaque_callback_data: opt_text(
                wire.biz_opaque_callback_data,
                "biz_opaque_callback_data",
            )?,
            conversation,
            pricing,
            errors,
            raw: raw.to_owned(),
        }))
    }

    /// The history entry this update would add: its status, time and errors.
    pub fn transition(&self) -> StatusTransition {
        StatusTransition {
            status: self.status,
            timestamp: self.timestamp,
            errors: self.errors.clone(),
        }
    }
}

/// One entry of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusTransition {
    /// The status reached.
    pub status: DeliveryStatus,
    /// The earliest time Meta reported it, unix seconds.
    pub timestamp: i64,
    /// Meta's errors reported with it (the first non-empty list); empty when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MetaError>,
}

/// One message's delivery state, folded from its status updates (see the module documentation
/// for the invariants). The fields are public so a store can load a state it saved; only
/// [`StatusState::record`] keeps the invariants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusState {
    /// The highest-ranked status seen; `None` before the first update.
    pub current: Option<DeliveryStatus>,
    /// When `current` was (first) reported, unix seconds.
    pub current_at: Option<i64>,
    /// One entry per status seen, in rank order.
    pub history: Vec<StatusTransition>,
}

/// What one update changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The current status moved to a higher rank.
    pub advanced: bool,
    /// The history gained an entry (the first report of this status).
    pub recorded: bool,
    /// An existing entry changed: an earlier timestamp for its status, or errors where it had
    /// none. If that entry is the current status, `current_at` changed with it.
    pub amended: bool,
}

impl Applied {
    /// Whether the state changed at all (false for an exact duplicate or a later repeat).
    pub fn changed(self) -> bool {
        self.advanced || self.recorded || self.amended
    }
}

impl StatusState {
    /// A message with no status yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one update: [`StatusState::record`] of its status, timestamp and errors.
    pub fn apply(&mut self, update: &StatusUpdate) -> Applied {
        self.record(update.status, update.timestamp, &update.errors)
    }

    /// Applies one reported status (the whole state machine; the stores mirror this):
    /// - first report of `status`: a history entry is inserted at its rank (`recorded`);
    /// - repeat: the entry keeps the earliest timestamp and adopts `errors` if it had none
    ///   (`amended` if either changed);
    /// - `status` becomes current if it [`advances`] the current one (`advanced`); `current_at`
    ///   is always the current entry's timestamp.
    pub fn record(
        &mut self,
        status: DeliveryStatus,
        timestamp: i64,
        errors: &[MetaError],
    ) -> Applied {
        let mut applied = Applied::default();
        match self.history.iter_mut().find(|t| t.status == status) {
            Some(entry) => {
                if timestamp < entry.timestamp {
                    entry.timestamp = timestamp;
                    applied.amended = true;
                }
                if entry.errors.is_empty() && !errors.is_empty() {
                    entry.errors = errors.to_vec();
                    applied.amended = true;
                }
            }
            None => {
                let at = self
                    .history
                    .iter()
                    .position(|t| t.status.rank() > status.rank())
                    .unwrap_or(self.history.len());
                self.history.insert(
                    at,
                    StatusTransition {
                        status,
                        timestamp,
                        errors: errors.to_vec(),
                    },
                );
                applied.recorded = true;
            }
        }
        if advances(self.current, status) {
            self.current = Some(status);
            applied.advanced = true;
        }
        if self.current == Some(status) {
            self.current_at = self.transition(status).map(|t| t.timestamp);
        }
        applied
    }

    /// The history entry for `status`, if Meta reported it.
    pub fn transition(&self, status: DeliveryStatus) -> Option<&StatusTransition> {
        self.history.iter().find(|t| t.status == status)
    }

    /// Whether the message got at least as far as `status`, counting implied steps: after `read`
    /// (even with no `delivered` report) `reached(Delivered)` is true. See
    /// [`DeliveryStatus::implies`].
    pub fn reached(&self, status: DeliveryStatus) -> bool {
        self.history.iter().any(|t| t.status.implies(status))
    }

    /// Meta's errors for the failure, empty unless the message `failed` with errors.
    pub fn failure_errors(&self) -> &[MetaError] {
        self.transition(DeliveryStatus::Failed)
            .map(|t| t.errors.as_slice())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;
    use proptest::prelude::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn parse(json: &str) -> Result<ParsedStatus, StatusParseError> {
        StatusUpdate::parse(&raw(json))
    }

    fn message(json: &str) -> StatusUpdate {
        match parse(json) {
            Ok(ParsedStatus::Message(update)) => update,
            other => panic!("not a message status: {other:?}"),
        }
    }

    fn parse_error(json: &str) -> (Option<&'static str>, String) {
        let e = parse(json).expect_err(json);
        (e.field, e.rule)
    }

    fn error(code: i64) -> MetaError {
        MetaError {
            code: Some(code),
            ..MetaError::default()
        }
    }

    fn state_of(events: &[(DeliveryStatus, i64)]) -> StatusState {
        let mut state = StatusState::new();
        for &(status, at) in events {
            state.record(status, at, &[]);
        }
        state
    }

    fn statuses(state: &StatusState) -> Vec<DeliveryStatus> {
        state.history.iter().map(|t| t.status).collect()
    }

    // --- DeliveryStatus -------------------------------------------------------------------

    #[test]
    fn statuses_parse_from_and_print_as_metas_lowercase_strings() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<DeliveryStatus>(&json).unwrap(), s);
        }
        for s in ["", "Sent", "READ", "RINGING", "accepted", "read "] {
            assert_eq!(DeliveryStatus::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn ranks_go_sent_delivered_read_played_deleted_failed() {
        let ranks: Vec<u8> = DeliveryStatus::ALL.iter().map(|s| s.rank()).collect();
        assert_eq!(ranks, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            DeliveryStatus::ALL,
            [Sent, Delivered, Read, Played, Deleted, Failed]
        );
    }

    #[test]
    fn failed_and_deleted_are_final_and_failed_outranks_everything() {
        assert!(Failed.is_final() && Deleted.is_final());
        assert!(!Sent.is_final() && !Read.is_final() && !Played.is_final());
        for s in DeliveryStatus::ALL {
            assert!(!advances(Some(Failed), s), "{s} moved a failed message");
        }
        assert!(advances(Some(Deleted), Failed));
        for s in [Sent, Delivered, Read, Played, Deleted] {
            assert!(!advances(Some(Deleted), s), "{s} moved a deleted message");
        }
    }

    #[test]
    fn advances_only_to_a_higher_rank() {
        assert!(advances(None, Sent));
        assert!(advances(None, Failed));
        assert!(advances(Some(Sent), Delivered));
        assert!(advances(Some(Sent), Read));
        assert!(advances(Some(Read), Played));
        assert!(advances(Some(Read), Failed));
        assert!(!advances(Some(Read), Read));
        assert!(!advances(Some(Read), Delivered));
        assert!(!advances(Some(Played), Sent));
    }

    #[test]
    fn read_implies_delivered_and_sent_but_final_statuses_imply_only_themselves() {
        assert!(Read.implies(Delivered) && Read.implies(Sent) && Read.implies(Read));
        assert!(Played.implies(Read));
        assert!(!Delivered.implies(Read));
        assert!(!Failed.implies(Sent) && !Deleted.implies(Delivered));
        assert!(!Read.implies(Failed) && !Played.implies(Deleted));
    }

    // --- State machine ------------------------------------------------------------------

    #[test]
    fn the_first_status_of_a_message_advances_and_records() {
        let mut state = StatusState::new();
        let applied = state.record(Sent, 100, &[]);
        assert_eq!(
            applied,
            Applied {
                advanced: true,
                recorded: true,
                amended: false
            }
        );
        assert_eq!(state.current, Some(Sent));
        assert_eq!(state.current_at, Some(100));
    }

    #[test]
    fn statuses_in_order_advance_the_current_status_each_time() {
        let state = state_of(&[(Sent, 100), (Delivered, 110), (Read, 120), (Played, 130)]);
        assert_eq!(state.current, Some(Played));
        assert_eq!(state.current_at, Some(130));
        assert_eq!(statuses(&state), [Sent, Delivered, Read, Played]);
    }

    #[test]
    fn a_late_sent_after_read_leaves_read_current_but_joins_the_history() {
        let mut state = state_of(&[(Read, 120)]);
        let applied = state.record(Sent, 100, &[]);
        assert_eq!(
            applied,
            Applied {
                advanced: false,
                recorded: true,
                amended: false
            }
        );
        assert_eq!(state.current, Some(Read));
        assert_eq!(state.current_at, Some(120));
        assert_eq!(statuses(&state), [Sent, Read]);
    }

    #[test]
    fn a_duplicate_delivered_adds_no_second_history_entry() {
        let mut state = state_of(&[(Sent, 100), (Delivered, 110)]);
        let before = state.clone();
        let applied = state.record(Delivered, 110, &[]);
        assert!(!applied.changed());
        assert_eq!(state, before);
        let applied = state.record(Delivered, 115, &[]);
        assert!(!applied.changed(), "a later repeat changes nothing");
        assert_eq!(state, before);
    }

    #[test]
    fn an_earlier_duplicate_lowers_the_recorded_time() {
        let mut state = state_of(&[(Sent, 100), (Delivered, 110)]);
        let applied = state.record(Delivered, 105, &[]);
        assert_eq!(
            applied,
            Applied {
                advanced: false,
                recorded: false,
                amended: true
            }
        );
        assert_eq!(state.transition(Delivered).unwrap().timestamp, 105);
        assert_eq!(state.current_at, Some(105), "current_at follows its entry");
    }

    #[test]
    fn nothing_moves_a_failed_message_on() {
        let mut state = state_of(&[(Sent, 100)]);
        state.record(Failed, 105, &[error(131047)]);
        for (status, at) in [(Delivered, 110), (Read, 120), (Played, 130), (Deleted, 140)] {
            let applied = state.record(status, at, &[]);
            assert!(!applied.advanced, "{status} advanced a failed message");
        }
        assert_eq!(state.current, Some(Failed));
        assert_eq!(state.current_at, Some(105));
    }

    #[test]
    fn failed_after_read_becomes_current_because_failure_is_final() {
        let mut state = state_of(&[(Sent, 100), (Read, 120)]);
        assert!(state.record(Failed, 130, &[error(131026)]).advanced);
        assert_eq!(state.current, Some(Failed));
    }

    #[test]
    fn failed_keeps_its_errors_even_when_a_duplicate_has_none() {
        let mut state = StatusState::new();
        state.record(Failed, 200, &[error(131047)]);
        state.record(Failed, 150, &[]);
        assert_eq!(state.failure_errors(), [error(131047)]);
        assert_eq!(state.current_at, Some(150));
        state.record(Failed, 100, &[error(131026)]);
        assert_eq!(
            state.failure_errors(),
            [error(131047)],
            "the first error list is kept"
        );
    }

    #[test]
    fn a_failed_entry_without_errors_adopts_a_duplicates_errors() {
        let mut state = StatusState::new();
        state.record(Failed, 100, &[]);
        let applied = state.record(Failed, 100, &[error(131047)]);
        assert!(applied.amended && !applied.recorded && !applied.advanced);
        assert_eq!(state.failure_errors(), [error(131047)]);
    }

    #[test]
    fn read_without_delivered_still_counts_as_delivered() {
        let state = state_of(&[(Sent, 100), (Read, 120)]);
        assert!(state.reached(Delivered));
        assert!(state.reached(Sent));
        assert!(!state.reached(Played));
        assert_eq!(
            statuses(&state),
            [Sent, Read],
            "no entry is invented for delivered"
        );
        let failed = state_of(&[(Failed, 100)]);
        assert!(!failed.reached(Delivered) && !failed.reached(Sent));
    }

    #[test]
    fn the_history_is_ordered_by_rank_not_by_arrival_or_timestamp() {
        let state = state_of(&[(Read, 90), (Failed, 50), (Sent, 100), (Delivered, 95)]);
        assert_eq!(statuses(&state), [Sent, Delivered, Read, Failed]);
    }

    #[test]
    fn a_state_round_trips_through_json() {
        let mut state = state_of(&[(Sent, 100)]);
        state.record(Failed, 101, &[error(131047)]);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            json,
            r#"{"current":"failed","current_at":101,"history":[{"status":"sent","timestamp":100},{"status":"failed","timestamp":101,"errors":[{"code":131047}]}]}"#
        );
        assert_eq!(serde_json::from_str::<StatusState>(&json).unwrap(), state);
    }

    // --- Parsing ------------------------------------------------------------------------

    const MINIMAL: &str = r#"{"id":"wamid.A","status":"delivered","timestamp":"1750030073"}"#;

    #[test]
    fn id_status_and_timestamp_are_all_a_status_needs() {
        let u = message(MINIMAL);
        assert_eq!(u.message_id.as_str(), "wamid.A");
        assert_eq!(u.status, Delivered);
        assert_eq!(u.timestamp, 1750030073);
        assert_eq!(u.recipient, Recipient::default());
        assert!(u.conversation.is_none() && u.pricing.is_none() && u.errors.is_empty());
        assert!(u.biz_opaque_callback_data.is_none());
        assert_eq!(
            u.transition(),
            StatusTransition {
                status: Delivered,
                timestamp: 1750030073,
                errors: vec![]
            }
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        assert_eq!(
            parse_error(r#"{"status":"read","timestamp":"1"}"#),
            (Some("id"), "is required".into())
        );
        assert_eq!(
            parse_error(r#"{"id":"wamid.A","timestamp":"1"}"#),
            (Some("status"), "is required".into())
        );
        assert_eq!(
            parse_error(r#"{"id":"wamid.A","status":"read"}"#),
            (Some("timestamp"), "is required".into())
        );
        assert_eq!(
            parse_error(r#"{"id":"","status":"read","timestamp":"1"}"#),
            (Some("id"), "is required".into()),
            "an empty string is absent"
        );
    }

    #[test]
    fn an_unknown_status_names_the_allowed_values() {
        let expected = (Some("status"), STATUS_RULE.to_owned());
        assert_eq!(
            parse_error(r#"{"id":"wamid.A","status":"seen","timestamp":"1"}"#),
            expected
        );
        assert_eq!(
            parse_error(r#"{"id":"wamid.A","status":"READ","timestamp":"1"}"#),
            expected
        );
        assert_eq!(
            parse_error(r#"{"id":"wamid.A","status":3,"timestamp":"1"}"#),
            expected
        );
        assert_eq!(
            StatusParseError::new("status", STATUS_RULE).to_string(),
            "status: must be one of sent, delivered, read, played, failed, deleted"
        );
    }

    #[test]
    fn a_timestamp_must_be_unix_seconds_as_a_string_or_a_number() {
        let at = |t: &str| format!(r#"{{"id":"wamid.A","status":"read","timestamp":{t}}}"#);
        assert_eq!(message(&at("\"1750030073\"")).timestamp, 1750030073);
        assert_eq!(message(&at("1750030073")).timestamp, 1750030073);
        for bad in [
            "\"soon\"",
            "\"-5\"",
            "-5",
            "1.5",
            "\"1e9\"",
            "\" 1\"",
            "true",
            "{}",
            "\"99999999999999999999\"",
        ] {
            assert_eq!(
                parse_error(&at(bad)),
                (Some("timestamp"), "must be unix seconds".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_malformed_id_or_bsuid_is_named_with_its_rule() {
        assert_eq!(
            parse_error(r#"{"id":"wamid. x","status":"read","timestamp":"1"}"#),
            (Some("id"), "must be printable ASCII without spaces".into())
        );
        assert_eq!(
            parse_error(r#"{"id":7,"status":"read","timestamp":"1"}"#),
            (Some("id"), "must be a string".into())
        );
        let (field, _) = parse_error(
            r#"{"id":"wamid.A","status":"read","timestamp":"1","recipient_user_id":"16505551234"}"#,
        );
        assert_eq!(field, Some("recipient_user_id"));
        let (field, _) = parse_error(
            r#"{"id":"wamid.A","status":"read","timestamp":"1","parent_recipient_user_id":"x"}"#,
        );
        assert_eq!(field, Some("parent_recipient_user_id"));
    }

    #[test]
    fn each_parent_spelling_fills_the_one_parent_field() {
        for key in [
            "recipient_parent_user_id",
            "parent_recipient_user_id",
            "parent_user_id",
        ] {
            let u = message(&format!(
                r#"{{"id":"wamid.A","status":"read","timestamp":"1","{key}":"US.ENT.11815799212886844830"}}"#
            ));
            assert_eq!(
                u.recipient.parent_user_id.as_ref().map(Bsuid::as_str),
                Some("US.ENT.11815799212886844830"),
                "{key}"
            );
        }
        let u = message(
            r#"{"id":"wamid.A","status":"read","timestamp":"1","parent_user_id":"US.ENT.3","recipient_parent_user_id":"US.ENT.1"}"#,
        );
        assert_eq!(
            u.recipient.parent_user_id.unwrap().as_str(),
            "US.ENT.1",
            "recipient_parent_user_id takes precedence"
        );
    }

    #[test]
    fn empty_and_null_optional_fields_read_as_absent() {
        let u = message(
            r#"{"id":"wamid.A","status":"failed","timestamp":"1","recipient_id":"","recipient_user_id":null,
                "biz_opaque_callback_data":"","conversation":null,"pricing":null,"errors":null,"type":null}"#,
        );
        assert_eq!(u.recipient, Recipient::default());
        assert!(u.biz_opaque_callback_data.is_none());
        assert!(u.conversation.is_none() && u.pricing.is_none() && u.errors.is_empty());
    }

    #[test]
    fn group_statuses_keep_the_participant() {
        let u = message(
            r#"{"id":"wamid.G","status":"read","timestamp":"1","recipient_id":"120363040000000000","recipient_type":"group",
                "recipient_participant_id":"16505551234","recipient_participant_user_id":"US.1349",
                "recipient_participant_parent_user_id":"US.ENT.1181"}"#,
        );
        assert_eq!(u.recipient.id.as_deref(), Some("120363040000000000"));
        assert_eq!(u.recipient.kind.as_deref(), Some("group"));
        assert_eq!(u.recipient.participant_id.as_deref(), Some("16505551234"));
        assert_eq!(u.recipient.participant_user_id.unwrap().as_str(), "US.1349");
        assert_eq!(
            u.recipient.participant_parent_user_id.unwrap().as_str(),
            "US.ENT.1181"
        );
    }

    #[test]
    fn unknown_pricing_values_are_kept_verbatim() {
        let u = message(
            r#"{"id":"wamid.A","status":"sent","timestamp":"1",
                "pricing":{"pricing_model":"XYZ","type":"promo","category":"future_cat"},
                "conversation":{"expiration_timestamp":1750116400,"origin":{"type":"service"}}}"#,
        );
        let p = u.pricing.unwrap();
        assert_eq!(p.billable, None);
        assert_eq!(p.pricing_model, Some(PricingModel::Other("XYZ".into())));
        assert_eq!(p.kind, Some(PricingType::Other("promo".into())));
        assert_eq!(p.category.as_ref().unwrap().as_str(), "future_cat");
        assert_eq!(
            serde_json::to_string(&p.category).unwrap(),
            "\"future_cat\""
        );
        let c = u.conversation.unwrap();
        assert_eq!(c.id, None);
        assert_eq!(c.expiration_timestamp, Some(1750116400));
        assert_eq!(c.origin_type.as_deref(), Some("service"));
        for s in [
            "marketing_lite",
            "authentication_international",
            "group_service",
        ] {
            assert_eq!(PricingCategory::parse(s).as_str(), s);
            assert!(!matches!(
                PricingCategory::parse(s),
                PricingCategory::Other(_)
            ));
        }
    }

    #[test]
    fn wrongly_typed_nested_fields_are_named() {
        let with =
            |extra: &str| format!(r#"{{"id":"wamid.A","status":"sent","timestamp":"1",{extra}}}"#);
        for (extra, field, rule) in [
            (r#""pricing":"PMP""#, "pricing", "must be an object"),
            (
                r#""pricing":{"billable":"yes"}"#,
                "pricing.billable",
                "must be true or false",
            ),
            (
                r#""pricing":{"category":5}"#,
                "pricing.category",
                "must be a string",
            ),
            (r#""conversation":[]"#, "conversation", "must be an object"),
            (
                r#""conversation":{"origin":"service"}"#,
                "conversation.origin",
                "must be an object",
            ),
            (
                r#""conversation":{"expiration_timestamp":"tomorrow"}"#,
                "conversation.expiration_timestamp",
                "must be unix seconds",
            ),
            (
                r#""errors":{"code":1}"#,
                "errors",
                "must be an array of error objects",
            ),
            (
                r#""errors":["oops"]"#,
                "errors",
                "must be an array of error objects",
            ),
            (
                r#""recipient_id":16505551234"#,
                "recipient_id",
                "must be a string",
            ),
            (
                r#""biz_opaque_callback_data":{}"#,
                "biz_opaque_callback_data",
                "must be a string",
            ),
        ] {
            assert_eq!(
                parse_error(&with(extra)),
                (Some(field), rule.to_owned()),
                "{extra}"
            );
        }
    }

    #[test]
    fn an_item_that_is_not_an_object_is_refused_as_a_whole() {
        for json in ["[]", "\"sent\"", "null", "7"] {
            let e = parse(json).unwrap_err();
            assert_eq!(e.field, None, "{json}");
            assert_eq!(e.to_string(), "must be a JSON object");
        }
        let e = parse(r#"{"id":"wamid.A","id":"wamid.B","status":"read","timestamp":"1"}"#)
            .unwrap_err();
        assert_eq!(e.field, None);
        assert!(
            e.rule
                .starts_with("must be a JSON object with each key once"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let u = message(
            r#"{"id":"wamid.A","status":"read","timestamp":"1","recipient_identity_key_hash":"abc","new_field":{"x":[1]}}"#,
        );
        assert_eq!(u.status, Read);
    }

    #[test]
    fn call_statuses_are_set_apart_by_type_or_by_a_wacid_id() {
        for json in [
            r#"{"id":"wacid.X","type":"call","status":"RINGING","timestamp":"1750034000"}"#,
            r#"{"id":"wacid.X","status":"ACCEPTED","timestamp":"1750034000"}"#,
            r#"{"id":"wamid.X","type":"call","status":"REJECTED","timestamp":1750034000}"#,
            r#"{"type":"call","status":7,"timestamp":"soon"}"#,
        ] {
            match parse(json) {
                Ok(ParsedStatus::Call(call)) => {
                    assert_eq!(call.raw.get(), json);
                    assert!(call.id.is_none() || call.id.as_deref().unwrap().starts_with("wa"));
                }
                other => panic!("{json}: {other:?}"),
            }
        }
        let Ok(ParsedStatus::Call(call)) =
            parse(r#"{"id":"wacid.X","type":"call","status":"RINGING","timestamp":"1750034000"}"#)
        else {
            unreachable!()
        };
        assert_eq!(call.id.as_deref(), Some("wacid.X"));
        assert_eq!(call.status.as_deref(), Some("RINGING"));
        assert_eq!(call.timestamp, Some(1750034000));
        assert!(parse(MINIMAL).unwrap().into_message().is_some());
    }

    #[test]
    fn raw_keeps_the_items_exact_bytes() {
        let json = r#"{ "id" : "wamid.A", "status":"read","timestamp":"1","biz_opaque_callback_data":"caf\u00e9 \/ 1" }"#;
        let u = message(json);
        assert_eq!(u.raw.get(), json);
        assert_eq!(u.biz_opaque_callback_data.as_deref(), Some("café / 1"));
    }

    // --- Fixtures -----------------------------------------------------------------------

    /// Just enough of a notification to reach each `statuses[]` item as its exact bytes.
    #[derive(Deserialize)]
    struct Notification<'a> {
        object: String,
        #[serde(borrow)]
        entry: Vec<Entry<'a>>,
    }

    #[derive(Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        changes: Vec<Change<'a>>,
    }

    #[derive(Deserialize)]
    struct Change<'a> {
        field: &'a str,
        #[serde(borrow)]
        value: ChangeValue<'a>,
    }

    #[derive(Deserialize)]
    struct ChangeValue<'a> {
        #[serde(default, borrow)]
        statuses: Vec<&'a RawValue>,
    }

    /// Every `statuses[]` item of a fixture, with its change's `field`.
    fn status_items(json: &str) -> Vec<(&str, &RawValue)> {
        let n: Notification<'_> = serde_json::from_str(json).unwrap();
        assert_eq!(n.object, "whatsapp_business_account");
        let mut items = Vec::new();
        for entry in n.entry {
            for change in entry.changes {
                let field = change.field;
                items.extend(change.value.statuses.into_iter().map(|raw| (field, raw)));
            }
        }
        items
    }

    /// The single message status of a fixture, after checking it is one and `raw` is exact.
    fn only_message(json: &str) -> StatusUpdate {
        let items = status_items(json);
        assert_eq!(items.len(), 1);
        let (field, item) = items[0];
        assert_eq!(field, "messages");
        let u = StatusUpdate::parse(item).unwrap().into_message().unwrap();
        assert_eq!(u.raw.get(), item.get());
        u
    }

    /// `value.contacts[0]` of a fixture, as loose JSON.
    fn first_contact(json: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["entry"][0]["changes"][0]["value"]["contacts"][0].clone()
    }

    fn bsuid(s: &str) -> Option<Bsuid> {
        Some(Bsuid::parse(s).unwrap())
    }

    const SENT: &str = include_str!("../../tests/fixtures/statuses/sent.json");
    const DELIVERED: &str = include_str!("../../tests/fixtures/statuses/delivered.json");
    const READ: &str = include_str!("../../tests/fixtures/statuses/read.json");
    const PLAYED: &str = include_str!("../../tests/fixtures/statuses/played.json");
    const FAILED: &str = include_str!("../../tests/fixtures/statuses/failed.json");
    const DELETED: &str = include_str!("../../tests/fixtures/statuses/deleted.json");
    const PARENT_RECIPIENT: &str =
        include_str!("../../tests/fixtures/statuses/parent_recipient_spelling.json");
    const CALL: &str = include_str!("../../tests/fixtures/statuses/call_status.json");
    const BATCH: &str = include_str!("../../tests/fixtures/statuses/batch_mixed.json");

    #[test]
    fn fixture_sent_carries_pricing_conversation_and_tracker() {
        let u = only_message(SENT);
        assert_eq!(
            u.message_id.as_str(),
            "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3QTFCMkMzRDRFNUY2QTdCOEMA"
        );
        assert_eq!(u.status, Sent);
        assert_eq!(u.timestamp, 1750030000);
        assert_eq!(
            u.recipient,
            Recipient {
                id: Some("16505551234".into()),
                user_id: bsuid("US.13491208655302741918"),
                ..Recipient::default()
            }
        );
        assert_eq!(u.biz_opaque_callback_data.as_deref(), Some("order-7731"));
        assert_eq!(
            u.conversation,
            Some(Conversation {
                id: Some("8f2c5a1e0b7d4c39a6e1f0d2b3c4a5e6".into()),
                expiration_timestamp: Some(1750116400),
                origin_type: Some("free_entry_point".into()),
            })
        );
        assert_eq!(
            u.pricing,
            Some(Pricing {
                billable: Some(false),
                pricing_model: Some(PricingModel::Pmp),
                kind: Some(PricingType::FreeEntryPoint),
                category: Some(PricingCategory::Service),
            })
        );
        assert!(u.errors.is_empty());
    }

    #[test]
    fn fixture_delivered_in_the_bsuid_era_has_no_phone_and_a_parent() {
        let u = only_message(DELIVERED);
        assert_eq!(
            u.message_id.as_str(),
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
        );
        assert_eq!(u.status, Delivered);
        assert_eq!(u.timestamp, 1750030073);
        assert_eq!(
            u.recipient,
            Recipient {
                id: None,
                user_id: bsuid("US.13491208655302741918"),
                parent_user_id: bsuid("US.ENT.11815799212886844830"),
                ..Recipient::default()
            }
        );
        assert_eq!(
            u.pricing,
            Some(Pricing {
                billable: Some(true),
                pricing_model: Some(PricingModel::Pmp),
                kind: Some(PricingType::Regular),
                category: Some(PricingCategory::Marketing),
            })
        );
        assert!(u.conversation.is_none() && u.errors.is_empty());
        // The value-level contact names the same user: the caller joins on it.
        let contact = first_contact(DELIVERED);
        assert_eq!(contact["user_id"], "US.13491208655302741918");
        assert_eq!(contact["parent_user_id"], "US.ENT.11815799212886844830");
        assert_eq!(contact["profile"]["username"], "@pablomorales");
        assert!(contact.get("wa_id").is_none());
    }

    #[test]
    fn fixture_read_decodes_escapes_but_keeps_them_in_raw() {
        let u = only_message(READ);
        assert_eq!(
            u.message_id.as_str(),
            "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3QTFCMkMzRDRFNUY2QTdCOEMA"
        );
        assert_eq!(u.status, Read);
        assert_eq!(u.timestamp, 1750030190);
        assert_eq!(
            u.recipient,
            Recipient {
                id: Some("16505551234".into()),
                user_id: bsuid("US.13491208655302741918"),
                ..Recipient::default()
            }
        );
        assert_eq!(
            u.biz_opaque_callback_data.as_deref(),
            Some("promo/spring café")
        );
        assert!(u.raw.get().contains(r#""promo\/spring caf\u00e9""#));
        assert!(u.pricing.is_none() && u.conversation.is_none() && u.errors.is_empty());
        assert_eq!(first_contact(READ)["wa_id"], "16505551234");
    }

    #[test]
    fn fixture_played_is_a_voice_note_status() {
        let u = only_message(PLAYED);
        assert_eq!(
            u.message_id.as_str(),
            "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBJFRkY0QzU2QjdBOEQ5RTBGMUEA"
        );
        assert_eq!(u.status, Played);
        assert_eq!(u.timestamp, 1750031002);
        assert_eq!(u.recipient.id.as_deref(), Some("16505551234"));
        assert_eq!(u.recipient.user_id, bsuid("US.13491208655302741918"));
        assert!(u.pricing.is_none() && u.errors.is_empty());
    }

    #[test]
    fn fixture_failed_keeps_metas_error_object() {
        let u = only_message(FAILED);
        assert_eq!(
            u.message_id.as_str(),
            "wamid.HBgLMTY1MDU1NTk4NzYVAgARGBJCMkM0RDZFOEYwQTFCM0M1RDcA"
        );
        assert_eq!(u.status, Failed);
        assert_eq!(u.timestamp, 1750032400);
        assert_eq!(
            u.recipient,
            Recipient {
                id: Some("16505559876".into()),
                ..Recipient::default()
            }
        );
        assert_eq!(
            u.errors,
            [MetaError {
                code: Some(131047),
                title: Some("Re-engagement message".into()),
                message: Some("Re-engagement message".into()),
                details: Some("Message failed to send because more than 24 hours have passed since the customer last replied to this number.".into()),
                href: Some("/documentation/business-messaging/whatsapp/support/error-codes".into()),
                // Added by us: what to do about 131047.
                hint: crate::domain::meta_error::hint(131047).map(str::to_owned),
            }]
        );
        assert!(u.errors[0].hint.as_deref().unwrap().contains("template"));
        assert!(
            first_contact(FAILED).is_null(),
            "failed statuses carry no contacts"
        );
        let mut state = StatusState::new();
        state.apply(&u);
        assert_eq!(state.failure_errors(), u.errors.as_slice());
    }

    #[test]
    fn fixture_deleted_is_the_legacy_status() {
        let u = only_message(DELETED);
        assert_eq!(
            u.message_id.as_str(),
            "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBJEMUUyRjNBNEI1QzZENkU3RjgA"
        );
        assert_eq!(u.status, Deleted);
        assert_eq!(u.timestamp, 1750033000);
        assert_eq!(u.recipient.id.as_deref(), Some("16505551234"));
        assert!(u.recipient.user_id.is_none());
    }

    #[test]
    fn fixture_parent_recipient_spelling_fills_the_parent_field() {
        let u = only_message(PARENT_RECIPIENT);
        assert_eq!(u.status, Read);
        assert_eq!(u.timestamp, 1750030140);
        assert_eq!(
            u.recipient,
            Recipient {
                id: None,
                user_id: bsuid("US.13491208655302741918"),
                parent_user_id: bsuid("US.ENT.11815799212886844830"),
                ..Recipient::default()
            }
        );
        assert!(u.raw.get().contains("\"parent_recipient_user_id\""));
    }

    #[test]
    fn fixture_call_status_is_not_a_message_status() {
        let items = status_items(CALL);
        assert_eq!(items.len(), 1);
        let (field, item) = items[0];
        assert_eq!(field, "calls");
        let Ok(ParsedStatus::Call(call)) = StatusUpdate::parse(item) else {
            panic!("not a call status")
        };
        assert_eq!(
            call.id.as_deref(),
            Some("wacid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQjRDNUQ2RTdGOEEwQjFDMkQzRQA=")
        );
        assert_eq!(call.status.as_deref(), Some("RINGING"));
        assert_eq!(call.timestamp, Some(1750034000));
        assert_eq!(call.raw.get(), item.get());
    }

    #[test]
    fn fixture_batch_mixed_folds_out_of_order_statuses_per_message() {
        let items = status_items(BATCH);
        let updates: Vec<StatusUpdate> = items
            .iter()
            .map(|(_, item)| StatusUpdate::parse(item).unwrap().into_message().unwrap())
            .collect();
        let summary: Vec<(&str, DeliveryStatus, i64)> = updates
            .iter()
            .map(|u| (u.message_id.as_str(), u.status, u.timestamp))
            .collect();
        assert_eq!(
            summary,
            [
                ("wamid.BATCH.A", Read, 1750040130),
                ("wamid.BATCH.B", Delivered, 1750040020),
                ("wamid.BATCH.A", Sent, 1750040100),
                ("wamid.BATCH.C", Failed, 1750040050),
                ("wamid.BATCH.B", Sent, 1750040010),
                ("wamid.BATCH.A", Read, 1750040130),
                ("wamid.BATCH.C", Sent, 1750040040),
            ]
        );
        assert_eq!(
            updates[2].pricing.as_ref().unwrap().category,
            Some(PricingCategory::Utility)
        );

        let mut states: std::collections::BTreeMap<&str, StatusState> = Default::default();
        let mut applied = Vec::new();
        for u in &updates {
            applied.push(states.entry(u.message_id.as_str()).or_default().apply(u));
        }
        let flags: Vec<(bool, bool)> = applied.iter().map(|a| (a.advanced, a.recorded)).collect();
        assert_eq!(
            flags,
            [
                (true, true),   // A read
                (true, true),   // B delivered
                (false, true),  // A sent, late
                (true, true),   // C failed
                (false, true),  // B sent, late
                (false, false), // A read, duplicate
                (false, true),  // C sent, late
            ]
        );
        assert!(!applied[5].changed());

        let a = &states["wamid.BATCH.A"];
        assert_eq!((a.current, a.current_at), (Some(Read), Some(1750040130)));
        assert_eq!(statuses(a), [Sent, Read]);
        assert!(a.reached(Delivered));
        let b = &states["wamid.BATCH.B"];
        assert_eq!(
            (b.current, b.current_at),
            (Some(Delivered), Some(1750040020))
        );
        assert_eq!(statuses(b), [Sent, Delivered]);
        let c = &states["wamid.BATCH.C"];
        assert_eq!((c.current, c.current_at), (Some(Failed), Some(1750040050)));
        assert_eq!(statuses(c), [Sent, Failed]);
        assert_eq!(c.failure_errors()[0].code, Some(131026));
    }

    // --- Properties ---------------------------------------------------------------------

    /// One reported status: (status, timestamp, errors).
    type Event = (DeliveryStatus, i64, Vec<MetaError>);

    /// A set of distinct statuses for one message; each reported 1 to 3 times (Meta's
    /// redeliveries) at a base time plus 0-2 s, carrying either that status's error list or none;
    /// then shuffled.
    fn reports() -> impl Strategy<Value = Vec<Event>> {
        prop::sample::subsequence(DeliveryStatus::ALL.to_vec(), 1..=6)
            .prop_flat_map(|set| {
                set.into_iter()
                    .map(|status| {
                        (
                            0i64..1000,
                            any::<bool>(),
                            proptest::collection::vec((0i64..3, any::<bool>()), 1..=3),
                        )
                            .prop_map(move |(base, has_errors, copies)| {
                                let errors = if has_errors {
                                    vec![error(130000 + i64::from(status.rank()))]
                                } else {
                                    vec![]
                                };
                                copies
                                    .into_iter()
                                    .map(|(delay, with_errors)| {
                                        let errs =
                                            if with_errors { errors.clone() } else { vec![] };
                                        (status, base + delay, errs)
                                    })
                                    .collect::<Vec<Event>>()
                            })
                    })
                    .collect::<Vec<_>>()
            })
            .prop_map(|groups| groups.into_iter().flatten().collect::<Vec<Event>>())
            .prop_shuffle()
    }

    /// The state the rules define for a multiset of reports, computed without the state machine.
    fn expected(events: &[Event]) -> StatusState {
        let mut history: Vec<StatusTransition> = Vec::new();
        for s in DeliveryStatus::ALL {
            let of_s: Vec<&Event> = events.iter().filter(|e| e.0 == s).collect();
            if of_s.is_empty() {
                continue;
            }
            history.push(StatusTransition {
                status: s,
                timestamp: of_s.iter().map(|e| e.1).min().unwrap(),
                errors: of_s
                    .iter()
                    .find(|e| !e.2.is_empty())
                    .map(|e| e.2.clone())
                    .unwrap_or_default(),
            });
        }
        let last = history.last().unwrap();
        StatusState {
            current: Some(last.status),
            current_at: Some(last.timestamp),
            history,
        }
    }

    fn fold(events: impl IntoIterator<Item = Event>) -> StatusState {
        let mut state = StatusState::new();
        for (status, at, errors) in events {
            let before = state.clone();
            let applied = state.record(status, at, &errors);
            assert_eq!(applied.advanced, state.current != before.current);
            assert_eq!(
                applied.recorded,
                state.history.len() == before.history.len() + 1
            );
            assert_eq!(applied.changed(), state != before);
        }
        state
    }

    proptest! {
        #[test]
        fn any_order_and_any_duplication_of_reports_gives_the_same_state(events in reports()) {
            let state = fold(events.clone());
            let want = expected(&events);
            prop_assert_eq!(&state, &want);

            // The highest rank wins; failed whenever any report failed.
            let top = events.iter().map(|e| e.0).max_by_key(|s| s.rank());
            prop_assert_eq!(state.current, top);
            if events.iter().any(|e| e.0 == Failed) {
                prop_assert_eq!(state.current, Some(Failed));
            }
            // One entry per status, in rank order.
            let ranks: Vec<u8> = state.history.iter().map(|t| t.status.rank()).collect();
            prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{:?}", ranks);
            // Arrival order does not matter.
            prop_assert_eq!(fold(events.iter().rev().cloned()), state);
        }
    }
}
