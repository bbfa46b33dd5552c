//! Wire DTOs -> domain: walks every `entry[] x changes[] x value.messages[]` of a notification and
//! produces [`InboundMessage`]s, or one [`ExtractError`] naming the JSON path and rule that failed.
//! Extraction is all-or-nothing, so a bad message never leaves a batch half stored.
//!
//! Rules: the body must be a JSON object with an `entry` array (else 400). Changes whose `field`
//! is not `messages` are counted and ignored (200). Within a messages change, each message needs an
//! `id` (a [`MessageId`]) and a `from` (a [`PhoneNumber`]); `type` defaults to `unknown`.
//! `statuses[]` and `errors[]` are counted for logging; they get their own storage later.

use serde_json::value::RawValue;

use crate::domain::{InboundMessage, MessageId, MessageKind, PhoneNumber};
use crate::webhook::content::take_details;
use crate::webhook::payload::{MessagePayload, MetadataPayload, RawList, WebhookPayload};

/// Everything a notification carried.
#[derive(Debug, Default)]
pub struct WebhookBatch {
    /// Inbound messages, in payload order.
    pub messages: Vec<InboundMessage>,
    /// Number of `statuses[]` objects.
    pub statuses: usize,
    /// Number of `errors[]` objects at value level.
    pub errors: usize,
    /// Changes with a field other than `messages`.
    pub ignored_changes: usize,
}

/// A notification that is not shaped like Meta's: where, and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct ExtractError {
    /// JSON path, e.g. `entry[0].changes[1].value.messages[2].from`.
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
            for (name, list) in [
                ("messages", &value.messages),
                ("statuses", &value.statuses),
                ("errors", &value.errors),
            ] {
                if matches!(list, RawList::NotAList) {
                    return Err(ExtractError::new(
                        format!("{}.{name}", path()),
                        "must be an array",
                    ));
                }
            }
            let metadata: MetadataPayload<'_> = match value.metadata {
                Some(raw) => serde_json::from_str(raw.get())
                    .map_err(|err| ExtractError::new(format!("{}.metadata", path()), err))?,
                None => MetadataPayload::default(),
            };
            let messages = value.messages.items();
            batch.statuses += value.statuses.items().len();
            batch.errors += value.errors.items().len();
            batch.messages.reserve(messages.len());
            for (m, raw) in messages.iter().enumerate() {
                let message = extract_message(
                    raw,
                    &metadata.display_phone_number,
                    &metadata.phone_number_id,
                )
                .map_err(|(field, rule)| {
                    let field = field.map(|f| format!(".{f}")).unwrap_or_default();
                    ExtractError::new(format!("{}.messages[{m}]{field}", path()), rule)
                })?;
                batch.messages.push(message);
            }
        }
    }
    Ok(batch)
}

/// One message; on failure the offending field (if any) and the rule.
fn extract_message(
    raw: &RawValue,
    display_phone_number: &str,
    phone_number_id: &str,
) -> Result<InboundMessage, (Option<&'static str>, String)> {
    let mut message: MessagePayload<'_> =
        serde_json::from_str(raw.get()).map_err(|e| (None, e.to_string()))?;
    let id = message
        .id
        .as_deref()
        .ok_or((Some("id"), "is required".to_owned()))?;
    let id = MessageId::parse(id).map_err(|e| (Some("id"), e.to_string()))?;
    let from = message
        .from
        .as_deref()
        .ok_or((Some("from"), "is required".to_owned()))?;
    let from = PhoneNumber::parse(from).map_err(|e| (Some("from"), e.to_string()))?;
    let kind = MessageKind::parse(message.kind.as_deref().unwrap_or("unknown"));
    let body = summarize(&kind, &message);
    let details = take_details(&mut message, raw);
    Ok(InboundMessage {
        body,
        id,
        from,
        to: display_phone_number.to_owned(),
        phone_number_id: phone_number_id.to_owned(),
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
        assert_eq!(m.phone_number_id, "123456");
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
    fn statuses_errors_and_other_fields_are_counted_not_stored() {
        let body = r#"{"entry":[{"changes":[
            {"field":"messages","value":{"metadata":{},"statuses":[{"id":"wamid.S","status":"read"}]}},
            {"field":"messages","value":{"errors":[{"code":130429}]}},
            {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT"}}]}]}"#;
        let batch = extract_batch(body.as_bytes()).unwrap();
        assert!(batch.messages.is_empty());
        assert_eq!(
            (batch.statuses, batch.errors, batch.ignored_changes),
            (1, 1, 1)
        );
    }

    #[test]
    fn missing_or_invalid_fields_are_named_by_path() {
        let no_id = envelope(r#"{"from":"919216598210","type":"text"}"#);
        let err = extract_batch(no_id.as_bytes()).unwrap_err();
        assert_eq!(err.path, "entry[0].changes[0].value.messages[0].id");
        assert_eq!(err.rule, "is required");

        let bad_from = envelope(
            r#"{"from":"919216598210","id":"a","type":"text"},{"from":"12","id":"b","type":"text"}"#,
        );
        let err = extract_batch(bad_from.as_bytes()).unwrap_err();
        assert_eq!(err.path, "entry[0].changes[0].value.messages[1].from");
        assert!(err.rule.contains("7-15 digits"), "{}", err.rule);
    }

    #[test]
    fn malformed_json_and_wrong_shapes_are_rejected() {
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
        let err = extract_batch(
            br#"{"entry":[{"changes":[{"field":"messages","value":{"messages":{}}}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "entry[0].changes[0].value.messages");
        assert_eq!(err.rule, "must be an array");
        let err =
            extract_batch(br#"{"entry":[{"changes":[{"value":{"metadata":"x"}}]}]}"#).unwrap_err();
        assert_eq!(err.path, "entry[0].changes[0].value.metadata");
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
