//! Wire DTOs -> domain: walks every `entry[] x changes[] x value.messages[]` of a notification and
//! produces [`InboundMessage`]s. An item that cannot be attributed is **quarantined**, not a reason
//! to refuse the rest: it is returned as a [`Quarantined`] naming its JSON path, the rule it broke
//! and its raw JSON, and the other messages of the delivery are stored (Meta would otherwise retry
//! the whole delivery, good messages included, for seven days).
//!
//! Rules: the body must be a JSON object with an `entry` array, else [`ExtractError`] (400): that
//! is the only batch-wide refusal. Changes whose `field` is not `messages` are counted and
//! ignored. Within a messages change:
//! - a `messages`, `statuses`, `errors` or `contacts` value that is not an array, or `metadata`
//!   that is not an object, quarantines that part of the change;
//! - each message needs an `id` (a [`MessageId`]) and a sender: `from` (a [`PhoneNumber`]) or
//!   `from_user_id` (a [`Bsuid`]); the contact is the phone when it parses, else the BSUID. A
//!   message with neither usable is quarantined (path and rule of the field that failed);
//! - the sender's profile (name, username, user_id, parent_user_id) comes from `value.contacts[]`
//!   matched by identity: `user_id == from_user_id`, else `wa_id == from`; `""` reads as absent;
//! - `type` defaults to `unknown`; the tenant is `metadata.phone_number_id`
//!   ([`PhoneNumberId::unknown`] when absent).
//!
//! `statuses[]` items become [`InboundStatus`]es (a status breaking a rule of
//! [`StatusUpdate::parse`] is quarantined; call statuses are counted). Value-level `errors[]` are
//! counted for logging.

use serde_json::value::RawValue;

use crate::domain::{
    Bsuid, ContactId, ContactProfile, InboundMessage, MessageId, MessageKind, ParsedStatus,
    PhoneNumber, PhoneNumberId, StatusUpdate,
};
use crate::webhook::content::take_details;
use crate::webhook::payload::{
    ContactPayload, MessagePayload, MetadataPayload, RawList, WebhookPayload,
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
    /// Call statuses (`type: "call"`): counted; stored with the calls work later.
    pub call_statuses: usize,
    /// Number of `errors[]` objects at value level.
    pub errors: usize,
    /// Changes with a field other than `messages`.
    pub ignored_changes: usize,
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
        for (c, change) in entry.changes.iter().enumerate() {
            let is_messages = change.field.as_deref().is_none_or(|f| f == "messages");
            let Some(value) = change.value.as_ref().filter(|_| is_messages) else {
                batch.ignored_changes += 1;
                continue;
            };
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
            let messages = value.messages.items();
            batch.errors += value.errors.items().len();
            for (i, raw) in value.statuses.items().iter().enumerate() {
                match StatusUpdate::parse(raw) {
                    Ok(ParsedStatus::Message(update)) => batch.statuses.push(InboundStatus {
                        phone_number_id: tenant.clone(),
                        update,
                    }),
                    Ok(ParsedStatus::Call(_)) => batch.call_statuses += 1,
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
            if messages.is_empty() {
                continue;
            }
            let contacts: Vec<ContactPayload<'_>> = value
                .contacts
                .items()
                .iter()
                .map(|raw| serde_json::from_str(raw.get()).unwrap_or_default())
                .collect();
            batch.messages.reserve(messages.len());
            for (m, raw) in messages.iter().enumerate() {
                match extract_message(raw, &metadata.display_phone_number, &tenant, &contacts) {
                    Ok(message) => batch.messages.push(message),
                    Err((field, rule)) => {
                        let field = field.map(|f| format!(".{f}")).unwrap_or_default();
                        batch.quarantine(
                            format!("{}.messages[{m}]{field}", path()),
                            rule,
                            Some(tenant.clone()),
                            Some(raw),
                        );
                    }
                }
            }
        }
    }
    Ok(batch)
}

impl WebhookBatch {
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

/// A non-empty string field, `""` read as absent (older payloads sent withheld fields as `""`).
fn present<'s>(field: &'s Option<std::borrow::Cow<'_, str>>) -> Option<&'s str> {
    field.as_deref().filter(|s| !s.is_empty())
}

/// The sender: the phone when `from` parses, else the BSUID of `from_user_id`; with the profile
/// from the matching `contacts[]` entry.
fn identify(
    message: &MessagePayload<'_>,
    contacts: &[ContactPayload<'_>],
) -> Result<(ContactId, ContactProfile), (Option<&'static str>, String)> {
    let phone = present(&message.from).map(PhoneNumber::parse);
    let user = present(&message.from_user_id).map(Bsuid::parse);
    let from = match (&phone, &user) {
        (Some(Ok(p)), _) => ContactId::Phone(p.clone()),
        (_, Some(Ok(u))) => ContactId::User(u.clone()),
        (Some(Err(e)), _) => return Err((Some("from"), e.to_string())),
        (None, Some(Err(e))) => return Err((Some("from_user_id"), e.to_string())),
        // A `user_changed_user_id` system message has no sender fields: it belongs to the
        // conversation of the user's previous BSUID (else the new one, else the phone).
        (None, None) if system_contact(message).is_some() => {
            let contact = system_contact(message).expect("checked");
            return Ok((contact, ContactProfile::default()));
        }
        (None, None) => {
            return Err((
                Some("from"),
                "is required (or from_user_id, the sender's BSUID)".to_owned(),
            ));
        }
    };
    let user_id = user.and_then(Result::ok);
    let wa_id = phone.and_then(Result::ok);
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
    let profile = ContactProfile {
        user_id: user_id.or_else(|| card.and_then(|c| Bsuid::parse(present(&c.user_id)?).ok())),
        parent_user_id: present(&message.from_parent_user_id)
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

/// One message; on failure the offending field (if any) and the rule.
fn extract_message(
    raw: &RawValue,
    display_phone_number: &str,
    phone_number_id: &PhoneNumberId,
    contacts: &[ContactPayload<'_>],
) -> Result<InboundMessage, (Option<&'static str>, String)> {
    let mut message: MessagePayload<'_> =
        serde_json::from_str(raw.get()).map_err(|e| (None, e.to_string()))?;
    let id = message
        .id
        .as_deref()
        .ok_or((Some("id"), "is required".to_owned()))?;
    let id = MessageId::parse(id).map_err(|e| (Some("id"), e.to_string()))?;
    let (from, profile) = identify(&message, contacts)?;
    let kind = MessageKind::parse(message.kind.as_deref().unwrap_or("unknown"));
    let body = summarize(&kind, &message);
    let details = take_details(&mut message, raw);
    Ok(InboundMessage {
        body,
        id,
        from,
        profile,
        to: display_phone_number.to_owned(),
        phone_number_id: phone_number_id.clone(),
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
            (1, 1, 1)
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
    fn other_fields_may_carry_any_shape() {
        // Even a `messages` key that is not a list, when the field is not `messages`.
        let other = br#"{"entry":[{"changes":[
            {"value":{"messages":"x","metadata":7},"field":"history"},
            {"field":"calls","value":[1,{"a":null}]},
            {"field":"x","value":"s"},
            {"field":"messages","value":null}]}]}"#;
        let batch = extract_batch(other).unwrap();
        assert_eq!(batch.ignored_changes, 4);
        assert!(batch.messages.is_empty());
    }
}
