//! Wire DTOs -> domain: walks every `entry[] x changes[]` of a notification and produces
//! [`InboundMessage`]s, statuses and [`Notice`]s. An item that cannot be attributed is
//! **quarantined**, not a reason to refuse the rest: it is returned as a [`Quarantined`] naming
//! its JSON path, the rule it broke and its raw JSON, and the other messages of the delivery are
//! stored (Meta would otherwise retry the whole delivery, good messages included, for seven
//! days).
//!
//! Rules: the body must be a JSON object with an `entry` array, else [`ExtractError`] (400): that
//! is the only batch-wide refusal. Per change, by `field`:
//! - `messages` (or no field): user messages ([`Origin::User`]), `statuses`, value-level
//!   `errors` (one `meta_error` [`Notice`]) and call statuses (a `call_status` notice each);
//! - `smb_message_echoes`: what the business sent from the WhatsApp Business app
//!   ([`Origin::Echo`], the contact is the recipient `to`, else `to_user_id`);
//! - `history`: back-fill chunks; each thread's messages are stored ([`Origin::History`], outbound
//!   when `from` is the business number; the contact is the thread's user when a message names
//!   none) and each chunk is one `history` notice (its progress and counts);
//! - every other field (template, account, user preference, user id, call, group updates, ...)
//!   becomes one notice named after the field, with the change's `value` as it came, routed by
//!   `metadata.phone_number_id` when present and `entry.id` (the WABA) always.
//!
//! Within a message-bearing change:
//! - a `messages`, `statuses`, `errors`, `contacts`, `message_echoes` or `history` value that is
//!   not an array, or `metadata` that is not an object, quarantines that part of the change;
//! - each message needs an `id` (a [`MessageId`]) and a user: for a user's message `from` (a
//!   [`PhoneNumber`]) or `from_user_id` (a [`Bsuid`]), for the business's own `to` or
//!   `to_user_id`; the contact is the phone when it parses, else the BSUID. A message with
//!   neither usable is quarantined (path and rule of the field that failed);
//! - the user's profile (name, username, user_id, parent_user_id) comes from `value.contacts[]`
//!   matched by identity: `user_id`, else `wa_id`; `""` reads as absent;
//! - `type` defaults to `unknown`; the tenant is `metadata.phone_number_id`
//!   ([`PhoneNumberId::unknown`] when absent).
//!
//! `statuses[]` items become [`InboundStatus`]es (a status breaking a rule of
//! [`StatusUpdate::parse`] is quarantined). The App Dashboard's *Test* samples (WABA `0`, ids
//! without `wamid.`) are ordinary notifications and are stored like any other.

use serde_json::value::RawValue;

use crate::domain::{
    Bsuid, ContactId, ContactProfile, InboundMessage, MessageId, MessageKind, Origin, ParsedStatus,
    PhoneNumber, PhoneNumberId, StatusUpdate,
};
use crate::webhook::content::take_details;
use crate::webhook::payload::{
    ChangeValuePayload, ContactPayload, EntryPayload, HistoryChunkPayload, MessagePayload,
    MetadataPayload, RawList, WebhookPayload,
};

/// Everything a notification carried.
#[derive(Debug, Default)]
pub struct WebhookBatch {
    /// Inbound messages, in payload order.
    pub messages: Vec<InboundMessage>,
    /// Items that could not be attributed, in payload order.
    pub quarantined: Vec<Quarantined>,
    /// Message statuses (`statuses[]` items about messages), in payload order.
    pub statuses: Vec<InboundStatus>,
    /// Call statuses (`type: "call"`): counted here, kept as `call_status` notices.
    pub call_statuses: usize,
    /// Number of `errors[]` objects at value level (kept as a `meta_error` notice per change).
    pub errors: usize,
    /// Changes without a `value`.
    pub ignored_changes: usize,
    /// Everything else Meta said that is not a message or a message status, kept as events:
    /// value-level errors, call statuses, history progress and every other field (template,
    /// account, user preference, user id, call, group updates, ...).
    pub notices: Vec<Notice>,
}

/// Something Meta notified that is not a message: stored as one event of type `kind` whose data
/// is `{"field", "waba_id", "phone_number_id", "value", "received_at"}`, at most once (a retry of
/// the same notification is recognised by [`Notice::digest`]).
#[derive(Debug, Clone)]
pub struct Notice {
    /// The event type: Meta's field name (`account_update`, `message_template_status_update`,
    /// `calls`, `user_preferences`, `user_id_update`, ...; `notification` when the field is not a
    /// plain name), `meta_error` for value-level errors, `call_status` for call statuses,
    /// `history` for a back-fill chunk's progress.
    pub kind: String,
    /// Meta's field name (`messages` for errors and call statuses).
    pub field: String,
    /// `entry[].id`, the WhatsApp Business Account: the tenant of changes without `metadata`.
    pub waba_id: Option<String>,
    /// `metadata.phone_number_id`, when the change has one.
    pub phone_number_id: Option<PhoneNumberId>,
    /// What Meta sent: the change's `value` as it came (for errors the `errors` array, for a
    /// call status its object, for history a summary of the chunk).
    pub value: Box<RawValue>,
    /// The marketing preferences a `user_preferences` change sets, per contact.
    pub preferences: Vec<Preference>,
    /// The calls a user made to the business number (a `calls` change): each opens the
    /// contact's 24-hour customer-service window as a message does.
    pub calls: Vec<UserCall>,
    /// Which delivery it came in: `time:<entry.time>` when Meta dated the entry, else
    /// `body:<SHA-256 of the whole request body>` (a retry repeats the body byte for byte).
    pub delivery: String,
}

/// One `user_preferences[]` item about marketing messages: shown on the contact.
#[derive(Debug, Clone)]
pub struct Preference {
    /// The business number (the change's `metadata.phone_number_id`).
    pub phone_number_id: PhoneNumberId,
    /// The user: `wa_id`, else `user_id`.
    pub contact: ContactId,
    /// Meta's timestamp (a number here; a string is accepted).
    pub timestamp: i64,
    /// The item as it came.
    pub item: Box<RawValue>,
}

/// A `calls[]` item with `direction: "USER_INITIATED"`: the user called the business number,
/// which opens (or resets) the 24-hour customer-service window like a message of theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCall {
    /// The business number called (the change's `metadata.phone_number_id`).
    pub phone_number_id: PhoneNumberId,
    /// The caller: `from`, else `from_user_id`.
    pub contact: ContactId,
    /// Meta's timestamp of the call event (unix seconds).
    pub timestamp: i64,
}

impl Notice {
    /// Identifies a notification across Meta's retries: SHA-256 over the kind, the WABA, the
    /// value and [`Notice::delivery`], hex. A retry repeats all four; the same update sent again
    /// later (a template paused a second time, a second rate-limit error) differs in its entry's
    /// time, or else in its request body, and is kept again.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            self.kind.as_bytes(),
            b"\0",
            self.waba_id.as_deref().unwrap_or("").as_bytes(),
            b"\0",
            self.value.get().as_bytes(),
            b"\0",
            self.delivery.as_bytes(),
        ] {
            hash.update(part);
        }
        hex::encode(hash.finalize())
    }
}

/// A notification that is not shaped like Meta's: where, and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct ExtractError {
    /// JSON path, e.g. `body`.
    pub path: String,
    /// The rule it broke.
    pub rule: String,
}

impl ExtractError {
    fn new(path: impl Into<String>, rule: impl std::fmt::Display) -> Self {
        Self {
            path: path.into(),
            rule: rule.to_string(),
        }
    }
}

/// A message status and the business number it arrived on.
#[derive(Debug, Clone)]
pub struct InboundStatus {
    /// The tenant (`metadata.phone_number_id`).
    pub phone_number_id: PhoneNumberId,
    /// The status.
    pub update: StatusUpdate,
}

/// One item of a delivery that could not be attributed: kept, counted and announced, never
/// stored as a message.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// JSON path, e.g. `entry[0].changes[1].value.messages[2].from`.
    pub path: String,
    /// The rule it broke.
    pub rule: String,
    /// The business number of its change, when known.
    pub phone_number_id: Option<PhoneNumberId>,
    /// The item's JSON as received (`null` when the item was not JSON of its own, e.g. a
    /// `messages` value that is not an array).
    pub raw: Box<RawValue>,
}

/// Longest rule text kept for a quarantined item (bytes).
pub const MAX_RULE_LEN: usize = 300;

/// Parses a raw (already signature-checked) notification body.
pub fn extract_batch(body: &[u8]) -> Result<WebhookBatch, ExtractError> {
    let payload: WebhookPayload<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ExtractError::new("body", format_args!("malformed JSON: {e}"))
        } else {
            ExtractError::new(
                "body",
                format_args!(
                    "not a WhatsApp webhook notification (an object with an 'entry' array): {e}"
                ),
            )
        }
    })?;
    let mut batch = WebhookBatch::default();
    for (e, entry) in payload.entry.iter().enumerate() {
        let first_notice = batch.notices.len();
        batch.extract_entry(e, entry);
        if let Some(time) = &entry.time {
            for notice in &mut batch.notices[first_notice..] {
                notice.delivery = format!("time:{time}");
            }
        }
    }
    if batch.notices.iter().any(|n| n.delivery.is_empty()) {
        use sha2::{Digest, Sha256};
        let body = format!("body:{}", hex::encode(Sha256::digest(body)));
        for notice in batch.notices.iter_mut().filter(|n| n.delivery.is_empty()) {
            notice.delivery.clone_from(&body);
        }
    }
    Ok(batch)
}

impl WebhookBatch {
    /// Every change of one entry (`e` is its index, for quarantine paths).
    fn extract_entry(&mut self, e: usize, entry: &EntryPayload<'_>) {
        let batch = self;
        for (c, change) in entry.changes.iter().enumerate() {
            let Some(raw_value) = change.value else {
                batch.ignored_changes += 1;
                continue;
            };
            let field = change.field.as_deref().unwrap_or("messages");
            if !matches!(field, "messages" | "smb_message_echoes" | "history") {
                batch.notice_of(field, entry.id.as_deref(), raw_value);
                continue;
            }
            // Any JSON value reads (leniently) as a value; it was validated as JSON already.
            let value: ChangeValuePayload<'_> =
                serde_json::from_str(raw_value.get()).unwrap_or_default();
            // Paths are built only on failure: the happy path allocates no error text.
            let path = || format!("entry[{e}].changes[{c}].value");
            let metadata: MetadataPayload<'_> = match value.metadata {
                Some(raw) => match serde_json::from_str(raw.get()) {
                    Ok(metadata) => metadata,
                    Err(err) => {
                        batch.quarantine(format!("{}.metadata", path()), err, None, Some(raw));
                        continue;
                    }
                },
                None => MetadataPayload::default(),
            };
            let tenant = if metadata.phone_number_id.is_empty() {
                PhoneNumberId::unknown()
            } else {
                match PhoneNumberId::parse(&metadata.phone_number_id) {
                    Ok(id) => id,
                    Err(err) => {
                        batch.quarantine(
                            format!("{}.metadata.phone_number_id", path()),
                            err,
                            None,
                            value.metadata,
                        );
                        continue;
                    }
                }
            };
            for (name, list) in [
                ("messages", &value.messages),
                ("statuses", &value.statuses),
                ("errors", &value.errors),
                ("contacts", &value.contacts),
                ("message_echoes", &value.message_echoes),
                ("history", &value.history),
            ] {
                if matches!(list, RawList::NotAList) {
                    batch.quarantine(
                        format!("{}.{name}", path()),
                        "must be an array",
                        Some(tenant.clone()),
                        None,
                    );
                }
            }
            let known_tenant = (!metadata.phone_number_id.is_empty()).then(|| tenant.clone());
            if let RawList::List(errors) = &value.errors
                && !errors.is_empty()
            {
                batch.errors += errors.len();
                batch.notices.push(Notice {
                    kind: "meta_error".to_owned(),
                    field: field.to_owned(),
                    waba_id: entry.id.clone(),
                    phone_number_id: known_tenant.clone(),
                    // Raw values serialize byte for byte.
                    value: serde_json::value::to_raw_value(errors).expect("raw JSON serializes"),
                    preferences: Vec::new(),
                    calls: Vec::new(),
                    delivery: String::new(),
                });
            }
            for (i, raw) in value.statuses.items().iter().enumerate() {
                match StatusUpdate::parse(raw) {
                    Ok(ParsedStatus::Message(update)) => batch.statuses.push(InboundStatus {
                        phone_number_id: tenant.clone(),
                        update,
                    }),
                    Ok(ParsedStatus::Call(_)) => {
                        batch.call_statuses += 1;
                        batch.notices.push(Notice {
                            kind: "call_status".to_owned(),
                            field: field.to_owned(),
                            waba_id: entry.id.clone(),
                            phone_number_id: known_tenant.clone(),
                            value: (*raw).to_owned(),
                            preferences: Vec::new(),
                            calls: Vec::new(),
                            delivery: String::new(),
                        });
                    }
                    Err(e) => {
                        let field = e.field.map(|f| format!(".{f}")).unwrap_or_default();
                        batch.quarantine(
                            format!("{}.statuses[{i}]{field}", path()),
                            &e.rule,
                            Some(tenant.clone()),
                            Some(raw),
                        );
                    }
                }
            }
            let lists = [
                ("messages", Origin::User, value.messages.items()),
                ("message_echoes", Origin::Echo, value.message_echoes.items()),
            ];
            if lists.iter().all(|l| l.2.is_empty()) && value.history.items().is_empty() {
                continue;
            }
            let contacts: Vec<ContactPayload<'_>> = value
                .contacts
                .items()
                .iter()
                .map(|raw| serde_json::from_str(raw.get()).unwrap_or_default())
                .collect();
            let business = Business {
                display_phone_number: &metadata.display_phone_number,
                phone_number_id: &tenant,
            };
            for (name, origin, items) in lists {
                batch.messages.reserve(items.len());
                for (m, raw) in items.iter().enumerate() {
                    let at = || format!("{}.{name}[{m}]", path());
                    batch.message(raw, &business, origin, &contacts, None, at);
                }
            }
            for (h, raw) in value.history.items().iter().enumerate() {
                let chunk: HistoryChunkPayload<'_> =
                    serde_json::from_str(raw.get()).unwrap_or_default();
                let before = batch.messages.len();
                for (t, thread) in chunk.threads.iter().enumerate() {
                    // The thread's user: its phone, else the BSUID of its context.
                    let user = phone_or_bsuid(present(&thread.id), None).or_else(|| {
                        let context = thread.context.as_ref()?;
                        phone_or_bsuid(present(&context.wa_id), present(&context.user_id))
                    });
                    for (m, raw) in thread.messages.items().iter().enumerate() {
                        let at = || format!("{}.history[{h}].threads[{t}].messages[{m}]", path());
                        // The direction is read from the message itself (its `from`).
                        let origin = Origin::History { outbound: false };
                        batch.message(raw, &business, origin, &contacts, user.as_ref(), at);
                    }
                }
                let summary = serde_json::json!({
                    "metadata": chunk.metadata,
                    "threads": chunk.threads.len(),
                    "messages": batch.messages.len() - before,
                    "errors": chunk.errors.items(),
                });
                batch.notices.push(Notice {
                    kind: "history".to_owned(),
                    field: field.to_owned(),
                    waba_id: entry.id.clone(),
                    phone_number_id: known_tenant.clone(),
                    value: serde_json::value::to_raw_value(&summary).expect("JSON serializes"),
                    preferences: Vec::new(),
                    calls: Vec::new(),
                    delivery: String::new(),
                });
            }
        }
    }
}

/// The business number a change arrived on.
struct Business<'s> {
    display_phone_number: &'s str,
    phone_number_id: &'s PhoneNumberId,
}

impl Business<'_> {
    /// Whether `from` is this business number (a history message the business sent).
    fn sent(&self, from: Option<&str>) -> bool {
        !self.display_phone_number.is_empty() && from == Some(self.display_phone_number)
    }
}

/// Names a notice may not take as its event type: the gateway's own events (a field named so
/// would pose as one) and `type`/`data`, the field names of the event log's earlier entry form
/// (an event named so would be read back as half of such a pair and lost).
const RESERVED_KINDS: [&str; 17] = [
    "type",
    "data",
    "message_incoming",
    "message_outgoing",
    "message_status",
    "button_clicked",
    "selection_made",
    "reaction",
    "message_edited",
    "message_deleted",
    "conversation_updated",
    "conversation_deleted",
    "webhook_error",
    "meta_error",
    "call_status",
    "reset",
    "error",
];

/// An event type made of Meta's field name when it is a plain name of its own, else
/// `notification`.
fn notice_kind(field: &str) -> String {
    let plain = !field.is_empty()
        && field.len() <= 64
        && field
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !RESERVED_KINDS.contains(&field);
    if plain { field } else { "notification" }.to_owned()
}

/// A user named by a phone number, else by a BSUID: the phone when it parses.
fn phone_or_bsuid(phone: Option<&str>, bsuid: Option<&str>) -> Option<ContactId> {
    phone
        .and_then(|p| PhoneNumber::parse(p).ok().map(ContactId::Phone))
        .or_else(|| Bsuid::parse(bsuid?).ok().map(ContactId::User))
}

/// Just the business number of a change that is not about messages, and its preference items.
#[derive(Default, serde::Deserialize)]
struct NoticeValue<'a> {
    #[serde(default, deserialize_with = "crate::webhook::lenient::object")]
    metadata: Option<NoticeMetadata>,
    #[serde(default, borrow)]
    user_preferences: RawList<'a>,
    #[serde(default, borrow)]
    calls: RawList<'a>,
}

/// One `calls[]` item, the parts that say who called whom, when.
#[derive(Default, serde::Deserialize)]
struct CallPayload {
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    from: Option<String>,
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    from_user_id: Option<String>,
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    direction: Option<String>,
    #[serde(default, deserialize_with = "crate::webhook::lenient::integer")]
    timestamp: Option<i64>,
}

/// One `user_preferences[]` item, the parts that say whom and when.
#[derive(Default, serde::Deserialize)]
struct PreferencePayload {
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    wa_id: Option<String>,
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    category: Option<String>,
    #[serde(default, deserialize_with = "crate::webhook::lenient::integer")]
    timestamp: Option<i64>,
}

#[derive(Default, serde::Deserialize)]
struct NoticeMetadata {
    #[serde(default, deserialize_with = "crate::webhook::lenient::string")]
    phone_number_id: Option<String>,
}

impl WebhookBatch {
    /// Keeps a change of another field than messages as a notice, routed by its
    /// `metadata.phone_number_id` when it has one, else by `entry.id`.
    fn notice_of(&mut self, field: &str, waba_id: Option<&str>, value: &RawValue) {
        let parsed = serde_json::from_str::<NoticeValue<'_>>(value.get()).unwrap_or_default();
        let phone_number_id = parsed
            .metadata
            .and_then(|m| m.phone_number_id)
            .and_then(|p| PhoneNumberId::parse(&p).ok());
        // Marketing preferences need the business number and a user to be shown anywhere.
        let preferences = match (&phone_number_id, field) {
            (Some(pnid), "user_preferences") => parsed
                .user_preferences
                .items()
                .iter()
                .filter_map(|raw| {
                    let item: PreferencePayload = serde_json::from_str(raw.get()).ok()?;
                    if item.category.as_deref() != Some("marketing_messages") {
                        return None;
                    }
                    let contact = phone_or_bsuid(item.wa_id.as_deref(), item.user_id.as_deref())?;
                    Some(Preference {
                        phone_number_id: pnid.clone(),
                        contact,
                        timestamp: item.timestamp?,
                        item: (*raw).to_owned(),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        // A user's call opens the window; the business's own calls do not.
        let calls = match (&phone_number_id, field) {
            (Some(pnid), "calls") => parsed
                .calls
                .items()
                .iter()
                .filter_map(|raw| {
                    let item: CallPayload = serde_json::from_str(raw.get()).ok()?;
                    if !item
                        .direction
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case("USER_INITIATED"))
                    {
                        return None;
                    }
                    let contact =
                        phone_or_bsuid(item.from.as_deref(), item.from_user_id.as_deref())?;
                    Some(UserCall {
                        phone_number_id: pnid.clone(),
                        contact,
                        timestamp: item.timestamp?,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        self.notices.push(Notice {
            kind: notice_kind(field),
            field: field.to_owned(),
            waba_id: waba_id.map(str::to_owned),
            phone_number_id,
            value: value.to_owned(),
            preferences,
            calls,
            delivery: String::new(),
        });
    }

    /// Extracts one message (a user's, an echo or a history message), or quarantines it.
    fn message(
        &mut self,
        raw: &RawValue,
        business: &Business<'_>,
        origin: Origin,
        contacts: &[ContactPayload<'_>],
        thread_user: Option<&ContactId>,
        path: impl FnOnce() -> String,
    ) {
        match extract_message(raw, business, origin, contacts, thread_user) {
            Ok(message) => self.messages.push(message),
            Err((field, rule)) => {
                let field = field.map(|f| format!(".{f}")).unwrap_or_default();
                self.quarantine(
                    format!("{}{field}", path()),
                    rule,
                    Some(business.phone_number_id.clone()),
                    Some(raw),
                );
            }
        }
    }

    fn quarantine(
        &mut self,
        path: String,
        rule: impl std::fmt::Display,
        phone_number_id: Option<PhoneNumberId>,
        raw: Option<&RawValue>,
    ) {
        let raw = raw.map_or_else(
            || RawValue::from_string("null".to_owned()).expect("valid JSON"),
            ToOwned::to_owned,
        );
        let mut rule = rule.to_string();
        if rule.len() > MAX_RULE_LEN {
            // Serde quotes the offending value: a 3 MB string must not become a 3 MB rule.
            let mut cut = MAX_RULE_LEN;
            while !rule.is_char_boundary(cut) {
                cut -= 1;
            }
            rule.truncate(cut);
            rule.push('…');
        }
        self.quarantined.push(Quarantined {
            path,
            rule,
            phone_number_id,
            raw,
        });
    }
}

/// The record of a message the business sent through the API: `raw` is its message object as an
/// echo would carry it (`from` the business's display number, `to` or `to_user_id`, `id`,
/// `timestamp`, `type` and the type's object), extracted the way an echo's message is (so a
/// message sent here and one sent from the WhatsApp Business app read the same), with
/// [`Origin::Api`]. One parse of the object, no notification around it. On failure, the field
/// and the rule it breaks.
pub fn sent_message(
    raw: &RawValue,
    display_phone_number: &str,
    phone_number_id: &PhoneNumberId,
) -> Result<InboundMessage, String> {
    let business = Business {
        display_phone_number,
        phone_number_id,
    };
    extract_message(raw, &business, Origin::Api, &[], None).map_err(|(field, rule)| match field {
        Some(field) => format!("{field} {rule}"),
        None => rule,
    })
}

/// A non-empty string field, `""` read as absent (older payloads sent withheld fields as `""`).
fn present<'s>(field: &'s Option<std::borrow::Cow<'_, str>>) -> Option<&'s str> {
    field.as_deref().filter(|s| !s.is_empty())
}

/// The user of a message, with the profile from the matching `contacts[]` entry: for a user's
/// message the sender (the phone when `from` parses, else the BSUID of `from_user_id`); for the
/// business's own messages (echoes, outbound history) the recipient (`to`, else `to_user_id`).
/// A history message without those fields belongs to its thread's user.
fn identify(
    message: &MessagePayload<'_>,
    contacts: &[ContactPayload<'_>],
    origin: Origin,
    thread_user: Option<&ContactId>,
) -> Result<(ContactId, ContactProfile), (Option<&'static str>, String)> {
    let outbound = origin.is_outbound();
    let (phone_field, user_field, phone, user) = if outbound {
        ("to", "to_user_id", &message.to, &message.to_user_id)
    } else {
        ("from", "from_user_id", &message.from, &message.from_user_id)
    };
    let phone = present(phone).map(PhoneNumber::parse);
    let user = present(user).map(Bsuid::parse);
    let from = match (&phone, &user) {
        (Some(Ok(p)), _) => ContactId::Phone(p.clone()),
        (_, Some(Ok(u))) => ContactId::User(u.clone()),
        (Some(Err(e)), _) => return Err((Some(phone_field), e.to_string())),
        (None, Some(Err(e))) => return Err((Some(user_field), e.to_string())),
        // A `user_changed_user_id` system message has no sender fields: it belongs to the
        // conversation of the user's previous BSUID (else the new one, else the phone).
        (None, None) if !outbound && system_contact(message).is_some() => {
            let contact = system_contact(message).expect("checked");
            return Ok((contact, ContactProfile::default()));
        }
        (None, None) if thread_user.is_some() => thread_user.expect("checked").clone(),
        (None, None) if outbound => {
            return Err((
                Some("to"),
                "is required (or to_user_id, the recipient's BSUID)".to_owned(),
            ));
        }
        (None, None) => {
            return Err((
                Some("from"),
                "is required (or from_user_id, the sender's BSUID)".to_owned(),
            ));
        }
    };
    let user_id = user.and_then(Result::ok).or_else(|| match &from {
        ContactId::User(u) => Some(u.clone()),
        ContactId::Phone(_) => None,
    });
    let wa_id = phone.and_then(Result::ok).or_else(|| match &from {
        ContactId::Phone(p) => Some(p.clone()),
        ContactId::User(_) => None,
    });
    let card = contacts.iter().find(|c| {
        let same_user = user_id
            .as_ref()
            .is_some_and(|u| present(&c.user_id) == Some(u.as_str()));
        let same_phone = wa_id
            .as_ref()
            .is_some_and(|p| present(&c.wa_id) == Some(p.as_str()));
        same_user || same_phone
    });
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let parent = if outbound {
        None
    } else {
        present(&message.from_parent_user_id)
    };
    let profile = ContactProfile {
        user_id: user_id.or_else(|| card.and_then(|c| Bsuid::parse(present(&c.user_id)?).ok())),
        parent_user_id: parent
            .or_else(|| card.and_then(|c| present(&c.parent_user_id)))
            .and_then(|s| Bsuid::parse(s).ok()),
        wa_id,
        name: card.and_then(|c| c.profile.as_ref().and_then(|p| nonempty(&p.name))),
        username: card.and_then(|c| c.profile.as_ref().and_then(|p| nonempty(&p.username))),
    };
    Ok((from, profile))
}

/// The contact a system message without `from` is about: `previous_user_id`, else `user_id`,
/// else `wa_id` of its `system` object.
fn system_contact(message: &MessagePayload<'_>) -> Option<ContactId> {
    let system = message.system.as_ref()?;
    let bsuid = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| Bsuid::parse(s).ok())
            .map(ContactId::User)
    };
    bsuid(&system.previous_user_id)
        .or_else(|| bsuid(&system.user_id))
        .or_else(|| {
            system
                .wa_id
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok())
                .map(ContactId::Phone)
        })
}

/// One message; on failure the offending field (if any) and the rule. A history message's
/// direction (`origin` `History`) is decided here, from its `from`.
fn extract_message(
    raw: &RawValue,
    business: &Business<'_>,
    origin: Origin,
    contacts: &[ContactPayload<'_>],
    thread_user: Option<&ContactId>,
) -> Result<InboundMessage, (Option<&'static str>, String)> {
    let mut message: MessagePayload<'_> =
        serde_json::from_str(raw.get()).map_err(|e| (None, e.to_string()))?;
    let origin = match origin {
        Origin::History { .. } => Origin::History {
            outbound: business.sent(message.from.as_deref()),
        },
        other => other,
    };
    let id = message
        .id
        .as_deref()
        .ok_or((Some("id"), "is required".to_owned()))?;
    let id = MessageId::parse(id).map_err(|e| (Some("id"), e.to_string()))?;
    let (from, profile) = identify(&message, contacts, origin, thread_user)?;
    let kind = MessageKind::parse(message.kind.as_deref().unwrap_or("unknown"));
    let body = summarize(&kind, &message);
    let details = take_details(&mut message, raw);
    Ok(InboundMessage {
        body,
        id,
        from,
        origin,
        profile,
        to: business.display_phone_number.to_owned(),
        phone_number_id: business.phone_number_id.clone(),
        timestamp: message.timestamp.unwrap_or_default(),
        kind,
        raw: raw.to_owned(),
        content: details.content,
        context: details.context,
        referral: details.referral,
        errors: details.errors,
        group_id: details.group_id,
    })
}

/// The `body` shown for a message: its text, a caption or reply title, else a short bracketed
/// description such as `[image]`.
fn summarize(kind: &MessageKind, m: &MessagePayload<'_>) -> String {
    let bracket = |s: &str| format!("[{s}]");
    let media = |p: &Option<Box<crate::webhook::payload::MediaPayload>>, name: &str| {
        p.as_ref()
            .and_then(|p| p.caption.clone().or_else(|| p.filename.clone()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| bracket(name))
    };
    match kind {
        MessageKind::Text => m
            .text
            .as_ref()
            .map(|t| t.body.clone().into_owned())
            .unwrap_or_default(),
        MessageKind::Image => media(&m.image, "image"),
        MessageKind::Video => media(&m.video, "video"),
        MessageKind::Document => media(&m.document, "document"),
        MessageKind::Sticker => bracket("sticker"),
        MessageKind::Audio => {
            let voice = m.audio.as_ref().is_some_and(|a| a.voice);
            bracket(if voice { "voice note" } else { "audio" })
        }
        MessageKind::Location => match &m.location {
            Some(l) => match (&l.name, &l.address) {
                (Some(n), Some(a)) => format!("[location] {n}, {a}"),
                (Some(s), None) | (None, Some(s)) => format!("[location] {s}"),
                (None, None) => format!(
                    "[location] {},{}",
                    l.latitude.unwrap_or_default(),
                    l.longitude.unwrap_or_default()
                ),
            },
            None => bracket("location"),
        },
        MessageKind::Contacts => {
            let names: Vec<&str> = m
                .contacts
                .iter()
                .flatten()
                .filter_map(|c| c.name.as_ref()?.formatted_name.as_deref())
                .collect();
            format!("[contacts] {}", names.join(", "))
                .trim_end()
                .to_owned()
        }
        MessageKind::Interactive => m
            .interactive
            .as_ref()
            .and_then(|i| {
                i.button_reply
                    .as_ref()
                    .or(i.list_reply.as_ref())
                    .map(|r| r.title.clone())
                    .or_else(|| i.nfm_reply.as_ref().and_then(|f| f.body.clone()))
            })
            .unwrap_or_else(|| bracket("interactive")),
        MessageKind::Button => m
            .button
            .as_ref()
            .and_then(|b| b.text.clone())
            .unwrap_or_else(|| bracket("button")),
        MessageKind::Reaction => match m.reaction.as_ref().and_then(|r| r.emoji.as_deref()) {
            Some(e) if !e.is_empty() => format!("[reaction] {e}"),
            _ => bracket("reaction removed"),
        },
        MessageKind::Order => m
            .order
            .as_ref()
            .map(|o| match &o.text {
                Some(t) if !t.is_empty() => t.clone(),
                _ => format!("[order] {} items", o.product_items.len()),
            })
            .unwrap_or_else(|| bracket("order")),
        MessageKind::System => m
            .system
            .as_ref()
            .and_then(|s| s.body.clone())
            .unwrap_or_else(|| bracket("system")),
        MessageKind::Unsupported | MessageKind::Other(_) => {
            let title = m.errors.iter().flatten().find_map(|e| e.title.as_deref());
            match title {
                Some(t) => format!("[{}] {t}", kind.as_str()),
                None => bracket(kind.as_str()),
            }
        }
        MessageKind::RequestWelcome => bracket("request_welcome"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Origin;

    fn envelope(messages: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"WABA","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15551713917","phone_number_id":"123456"}},"messages":[{messages}]}}}}]}}]}}"#
        )
    }

    #[test]
    fn text_message_is_normalized() {
        let body = envelope(
            r#"{"from":"919216598210","id":"wamid.XXX","timestamp":"1757936743","type":"text","text":{"body":"Good"}}"#,
        );
        let batch = extract_batch(body.as_bytes()).unwrap();
        let m = &batch.messages[0];
        assert_eq!(m.id.as_str(), "wamid.XXX");
        assert_eq!(m.from.as_str(), "919216598210");
        assert_eq!(m.to, "15551713917");
        assert_eq!(m.phone_number_id.as_str(), "123456");
        assert_eq!(m.body, "Good");
        assert_eq!(m.kind, MessageKind::Text);
        assert!(m.raw.get().starts_with(r#"{"from":"919216598210""#));
    }

    #[test]
    fn bodies_summarize_every_type() {
        let cases = [
            (
                r#""type":"image","image":{"id":"1","caption":"look"}"#,
                "look",
            ),
            (r#""type":"image","image":{"id":"1"}"#, "[image]"),
            (
                r#""type":"document","document":{"id":"1","filename":"a.pdf"}"#,
                "a.pdf",
            ),
            (
                r#""type":"audio","audio":{"id":"1","voice":true}"#,
                "[voice note]",
            ),
            (r#""type":"sticker","sticker":{"id":"1"}"#, "[sticker]"),
            (
                r#""type":"location","location":{"latitude":1.5,"longitude":2,"name":"Home"}"#,
                "[location] Home",
            ),
            (
                r#""type":"contacts","contacts":[{"name":{"formatted_name":"Ann"}}]"#,
                "[contacts] Ann",
            ),
            (
                r#""type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"b","title":"Yes"}}"#,
                "Yes",
            ),
            (
                r#""type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"r","title":"Row"}}"#,
                "Row",
            ),
            (
                r#""type":"button","button":{"payload":"p","text":"Stop"}"#,
                "Stop",
            ),
            (
                r#""type":"reaction","reaction":{"message_id":"wamid.A","emoji":"👍"}"#,
                "[reaction] 👍",
            ),
            (
                r#""type":"reaction","reaction":{"message_id":"wamid.A"}"#,
                "[reaction removed]",
            ),
            (
                r#""type":"order","order":{"catalog_id":"c","product_items":[{},{}]}"#,
                "[order] 2 items",
            ),
            (
                r#""type":"system","system":{"body":"changed number"}"#,
                "changed number",
            ),
            (
                r#""type":"unsupported","errors":[{"code":131051,"title":"Message type unknown"}]"#,
                "[unsupported] Message type unknown",
            ),
            (r#""type":"request_welcome""#, "[request_welcome]"),
            (r#""type":"poll""#, "[poll]"),
        ];
        for (fields, expected) in cases {
            let body = envelope(&format!(
                r#"{{"from":"919216598210","id":"wamid.1","timestamp":"1",{fields}}}"#
            ));
            let batch = extract_batch(body.as_bytes()).unwrap();
            assert_eq!(batch.messages[0].body, expected, "for {fields}");
        }
    }

    #[test]
    fn several_entries_changes_and_messages_are_all_extracted() {
        let msg = |id: &str, from: &str| {
            format!(
                r#"{{"from":"{from}","id":"{id}","timestamp":"1","type":"text","text":{{"body":"{id}"}}}}"#
            )
        };
        let value = |msgs: String| {
            format!(
                r#"{{"field":"messages","value":{{"metadata":{{"display_phone_number":"1555","phone_number_id":"1"}},"messages":[{msgs}]}}}}"#
            )
        };
        let body = format!(
            r#"{{"entry":[{{"changes":[{},{}]}},{{"changes":[{}]}}]}}"#,
            value(format!(
                "{},{}",
                msg("a", "15550000001"),
                msg("b", "15550000002")
            )),
            value(msg("c", "15550000001")),
            value(msg("d", "15550000003")),
        );
        let batch = extract_batch(body.as_bytes()).unwrap();
        let ids: Vec<&str> = batch.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
    }

    #[test]
    fn statuses_are_parsed_with_their_tenant_and_the_rest_counted() {
        let body = r#"{"entry":[{"changes":[
            {"field":"messages","value":{"metadata":{"phone_number_id":"77"},"statuses":[
                {"id":"wamid.S","status":"read","timestamp":"1700000000","recipient_id":"919216598210"},
                {"id":"wamid.T","status":"read"},
                {"id":"wacid.C","type":"call","status":"RINGING"}]}},
            {"field":"messages","value":{"errors":[{"code":130429}]}},
            {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT"}}]}]}"#;
        let batch = extract_batch(body.as_bytes()).unwrap();
        assert!(batch.messages.is_empty());
        let [status] = &batch.statuses[..] else {
            panic!("{:?}", batch.statuses)
        };
        assert_eq!(status.phone_number_id.as_str(), "77");
        assert_eq!(status.update.message_id.as_str(), "wamid.S");
        assert_eq!(status.update.timestamp, 1_700_000_000);
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.statuses[1].timestamp"
        );
        assert_eq!(
            (batch.call_statuses, batch.errors, batch.ignored_changes),
            (1, 1, 0)
        );
        let kinds: Vec<&str> = batch.notices.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds, ["call_status", "meta_error", "account_update"]);
        assert_eq!(
            batch.notices[0]
                .phone_number_id
                .as_ref()
                .map(|p| p.as_str()),
            Some("77")
        );
        assert_eq!(batch.notices[1].value.get(), r#"[{"code":130429}]"#);
        assert_eq!(batch.notices[1].phone_number_id, None, "no metadata there");
        assert_eq!(
            batch.notices[2].value.get(),
            r#"{"event":"VERIFIED_ACCOUNT"}"#
        );
    }

    #[test]
    fn unattributable_messages_are_quarantined_by_path_and_the_rest_kept() {
        let no_id = envelope(
            r#"{"from":"919216598210","type":"text"},{"from":"919216598210","id":"ok","type":"text"}"#,
        );
        let batch = extract_batch(no_id.as_bytes()).unwrap();
        assert_eq!(batch.messages.len(), 1);
        assert_eq!(batch.messages[0].id.as_str(), "ok");
        let q = &batch.quarantined[0];
        assert_eq!(q.path, "entry[0].changes[0].value.messages[0].id");
        assert_eq!(q.rule, "is required");
        assert_eq!(q.phone_number_id.as_ref().unwrap().as_str(), "123456");
        assert_eq!(q.raw.get(), r#"{"from":"919216598210","type":"text"}"#);

        let bad_from = envelope(
            r#"{"from":"919216598210","id":"a","type":"text"},{"from":"12","id":"b","type":"text"}"#,
        );
        let batch = extract_batch(bad_from.as_bytes()).unwrap();
        assert_eq!(batch.messages.len(), 1);
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.messages[1].from"
        );
        assert!(
            batch.quarantined[0].rule.contains("7-15 digits"),
            "{}",
            batch.quarantined[0].rule
        );

        let nobody = envelope(r#"{"id":"c","type":"text"}"#);
        let batch = extract_batch(nobody.as_bytes()).unwrap();
        assert!(batch.messages.is_empty());
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.messages[0].from"
        );
        assert!(batch.quarantined[0].rule.contains("from_user_id"));
    }

    #[test]
    fn a_bsuid_only_sender_is_keyed_by_the_bsuid_with_its_profile() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{
  "field":"messages","value":{"messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Sheena N.","username":"@sheena.n"},
               "user_id":"US.13491208655302741918","parent_user_id":"US.ENT.11815799212886844830"}],
  "messages":[{"from_user_id":"US.13491208655302741918",
               "from_parent_user_id":"US.ENT.11815799212886844830",
               "id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
               "timestamp":"1749416383","type":"text","text":{"body":"Does it come in blue?"}}]}}]}]}"#;
        let batch = extract_batch(body.as_bytes()).unwrap();
        assert!(batch.quarantined.is_empty());
        let m = &batch.messages[0];
        assert_eq!(m.from.as_str(), "US.13491208655302741918");
        assert!(m.from.phone().is_none());
        assert_eq!(m.phone_number_id.as_str(), "106540352242922");
        assert_eq!(m.profile.name.as_deref(), Some("Sheena N."));
        assert_eq!(m.profile.username.as_deref(), Some("@sheena.n"));
        assert_eq!(
            m.profile.parent_user_id.as_ref().unwrap().as_str(),
            "US.ENT.11815799212886844830"
        );
        assert!(m.profile.wa_id.is_none());
    }

    #[test]
    fn the_phone_wins_over_the_bsuid_and_the_profile_is_matched_by_identity() {
        // Two contacts, listed in the opposite order to the messages.
        let body = r#"{"entry":[{"changes":[{"field":"messages","value":{
  "metadata":{"display_phone_number":"15550783881","phone_number_id":"1065"},
  "contacts":[{"profile":{"name":"Bob"},"wa_id":"16505550002","user_id":"US.2"},
              {"profile":{"name":"Ann","username":""},"wa_id":"16505550001","user_id":"US.1"}],
  "messages":[{"from":"16505550001","from_user_id":"US.1","id":"w1","timestamp":"1","type":"text","text":{"body":"a"}},
              {"from":"16505550002","id":"w2","timestamp":"2","type":"text","text":{"body":"b"}}]}}]}]}"#;
        let batch = extract_batch(body.as_bytes()).unwrap();
        let [ann, bob] = &batch.messages[..] else {
            panic!("{:?}", batch.messages)
        };
        assert_eq!(ann.from.as_str(), "16505550001");
        assert_eq!(ann.profile.name.as_deref(), Some("Ann"));
        assert_eq!(ann.profile.username, None, "\"\" reads as absent");
        assert_eq!(ann.profile.user_id.as_ref().unwrap().as_str(), "US.1");
        assert_eq!(bob.profile.name.as_deref(), Some("Bob"));
        assert_eq!(bob.profile.user_id.as_ref().unwrap().as_str(), "US.2");
    }

    #[test]
    fn missing_metadata_is_the_unknown_tenant() {
        let body = br#"{"entry":[{"changes":[{"value":{"messages":[{"from":"919216598210","id":"x","type":"text"}]}}]}]}"#;
        let batch = extract_batch(body).unwrap();
        assert_eq!(batch.messages[0].phone_number_id.as_str(), "unknown");
    }

    #[test]
    fn malformed_json_and_wrong_shapes_are_rejected_or_quarantined() {
        assert!(
            extract_batch(b"{")
                .unwrap_err()
                .rule
                .starts_with("malformed JSON")
        );
        assert!(
            extract_batch(b"[]")
                .unwrap_err()
                .rule
                .starts_with("not a WhatsApp")
        );
        assert!(
            extract_batch(br#"{"hello":1}"#)
                .unwrap_err()
                .rule
                .starts_with("not a WhatsApp")
        );
        // Parts of a change that have the wrong shape are quarantined, not a 400.
        let batch = extract_batch(
            br#"{"entry":[{"changes":[{"field":"messages","value":{"messages":{}}},
                {"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"from":"919216598210","id":"y"}]}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.messages"
        );
        assert_eq!(batch.quarantined[0].rule, "must be an array");
        assert_eq!(batch.quarantined[0].raw.get(), "null");
        assert_eq!(batch.messages.len(), 1);
        let batch =
            extract_batch(br#"{"entry":[{"changes":[{"value":{"metadata":"x"}}]}]}"#).unwrap();
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.metadata"
        );
        assert_eq!(batch.quarantined[0].raw.get(), r#""x""#);
        let batch = extract_batch(
            br#"{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"a:b"},"messages":[]}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.metadata.phone_number_id"
        );
    }

    #[test]
    fn the_same_update_delivered_again_later_is_a_new_notice_and_a_retry_is_not() {
        let update = |time: &str, extra: &str| {
            format!(
                r#"{{"entry":[{{"id":"55",{time}"changes":[{{"field":"message_template_status_update","value":{{"event":"PAUSED","message_template_id":7}}}}]}}{extra}]}}"#
            )
        };
        let digest = |body: &str| extract_batch(body.as_bytes()).unwrap().notices[0].digest();
        // Dated entries: the time tells a new delivery from a retry.
        let first = update(r#""time":1700000000,"#, "");
        assert_eq!(digest(&first), digest(&first));
        assert_ne!(digest(&first), digest(&update(r#""time":1700003600,"#, "")));
        // Undated: a byte-for-byte retry is the same; another delivery (another body) is not.
        let undated = update("", "");
        assert_eq!(digest(&undated), digest(&undated));
        assert_ne!(
            digest(&undated),
            digest(&update("", r#",{"id":"55","changes":[]}"#))
        );
    }

    #[test]
    fn other_fields_may_carry_any_shape_and_are_kept_as_they_came() {
        // Even a `messages` key that is not a list, when the field is not about messages.
        let other = br#"{"entry":[{"id":"55","changes":[
            {"value":{"messages":"x","metadata":7},"field":"flows"},
            {"field":"calls","value":[1,{"a":null}]},
            {"field":"Weird Field!","value":"s"},
            {"field":"message_status","value":{}},
            {"field":"type","value":{}},
            {"field":"messages","value":null}]}]}"#;
        let batch = extract_batch(other).unwrap();
        assert_eq!(batch.ignored_changes, 1);
        assert!(batch.messages.is_empty() && batch.quarantined.is_empty());
        let notices: Vec<(&str, &str, &str)> = batch
            .notices
            .iter()
            .map(|n| (n.kind.as_str(), n.field.as_str(), n.value.get()))
            .collect();
        assert_eq!(
            notices,
            [
                ("flows", "flows", r#"{"messages":"x","metadata":7}"#),
                ("calls", "calls", r#"[1,{"a":null}]"#),
                ("notification", "Weird Field!", r#""s""#),
                ("notification", "message_status", "{}"),
                ("notification", "type", "{}"),
            ]
        );
        assert!(
            batch
                .notices
                .iter()
                .all(|n| n.waba_id.as_deref() == Some("55"))
        );
        // A retry is recognised by its digest; another value is another notice.
        let again = extract_batch(other).unwrap();
        assert_eq!(again.notices[0].digest(), batch.notices[0].digest());
        assert_ne!(batch.notices[0].digest(), batch.notices[1].digest());
    }

    #[test]
    fn a_users_call_is_noted_for_the_window_and_the_business_own_calls_are_not() {
        let body = br#"{"entry":[{"id":"55","changes":[{"field":"calls","value":{
            "metadata":{"phone_number_id":"106540352242922"},
            "calls":[
              {"id":"wacid.1","from":"+1 555 123 4567","event":"connect","timestamp":"1752583107","direction":"USER_INITIATED"},
              {"id":"wacid.2","from_user_id":"US.13491208655302741918","event":"terminate","timestamp":1752583200,"direction":"user_initiated"},
              {"id":"wacid.3","from":"16315553601","to":"15551234567","event":"connect","timestamp":"1752583300","direction":"BUSINESS_INITIATED"},
              {"id":"wacid.4","from":"15551234567","event":"connect","direction":"USER_INITIATED"},
              {"id":"wacid.5","from":"not a number","event":"connect","timestamp":"1","direction":"USER_INITIATED"},
              "not a call"]}}]},
            {"id":"56","changes":[{"field":"calls","value":{"calls":[
              {"id":"wacid.6","from":"15551234567","timestamp":"1","direction":"USER_INITIATED"}]}}]}]}"#;
        let batch = extract_batch(body).unwrap();
        assert_eq!(batch.notices.len(), 2);
        assert!(batch.notices.iter().all(|n| n.kind == "calls"));
        let pnid = PhoneNumberId::parse("106540352242922").unwrap();
        assert_eq!(
            batch.notices[0].calls,
            [
                UserCall {
                    phone_number_id: pnid.clone(),
                    contact: ContactId::parse("15551234567").unwrap(),
                    timestamp: 1_752_583_107,
                },
                UserCall {
                    phone_number_id: pnid,
                    contact: ContactId::parse("US.13491208655302741918").unwrap(),
                    timestamp: 1_752_583_200,
                },
            ],
            "only users' calls with a caller and a time"
        );
        // Without the business number the call cannot be placed in a conversation.
        assert!(batch.notices[1].calls.is_empty());
    }

    #[test]
    fn echoes_and_history_messages_name_the_user_they_were_sent_to() {
        let body = br#"{"entry":[{"id":"1","changes":[
            {"field":"smb_message_echoes","value":{
                "metadata":{"display_phone_number":"15550783881","phone_number_id":"77"},
                "message_echoes":[
                    {"from":"15550783881","to":"16505551234","id":"wamid.E1","timestamp":"1","type":"text","text":{"body":"a"}},
                    {"from":"15550783881","to_user_id":"US.13491208655302741918","id":"wamid.E2","timestamp":"2","type":"text","text":{"body":"b"}},
                    {"from":"15550783881","id":"wamid.E3","timestamp":"3","type":"text","text":{"body":"c"}}]}},
            {"field":"history","value":{
                "metadata":{"display_phone_number":"15550783881","phone_number_id":"77"},
                "history":[{"metadata":{"phase":0,"chunk_order":1,"progress":100},"threads":[
                    {"context":{"user_id":"US.24817305912873645029"},"messages":[
                        {"from":"15550783881","id":"wamid.H1","timestamp":"4","type":"text","text":{"body":"d"}},
                        {"from_user_id":"US.24817305912873645029","id":"wamid.H2","timestamp":"5","type":"text","text":{"body":"e"}},
                        {"id":"wamid.H3","timestamp":"6","type":"text","text":{"body":"f"}}]}]}]}}]}]}"#;
        let batch = extract_batch(body).unwrap();
        let got: Vec<(&str, &str, Origin)> = batch
            .messages
            .iter()
            .map(|m| (m.id.as_str(), m.from.as_str(), m.origin))
            .collect();
        let outbound = Origin::History { outbound: true };
        let inbound = Origin::History { outbound: false };
        assert_eq!(
            got,
            [
                ("wamid.E1", "16505551234", Origin::Echo),
                ("wamid.E2", "US.13491208655302741918", Origin::Echo),
                ("wamid.H1", "US.24817305912873645029", outbound),
                ("wamid.H2", "US.24817305912873645029", inbound),
                ("wamid.H3", "US.24817305912873645029", inbound),
            ]
        );
        // An echo naming no recipient cannot be attributed.
        assert_eq!(
            batch.quarantined[0].path,
            "entry[0].changes[0].value.message_echoes[2].to"
        );
        let [history] = &batch.notices[..] else {
            panic!("{:?}", batch.notices)
        };
        assert_eq!(history.kind, "history");
        let summary: serde_json::Value = serde_json::from_str(history.value.get()).unwrap();
        assert_eq!(summary["messages"], 3);
        assert_eq!(summary["metadata"]["progress"], 100);
    }
}
