//! The data upgrade that runs after start-up: messages stored by earlier releases exist only in
//! their FastAPI form (the `<REDIS_INBOUND_LIST>:<number>` lists, the embedded `inbound_messages`
//! rows without a business number), so the conversation API and the event stream would not know
//! them. This task gives each one a message record and a place in its conversation, once.
//!
//! - **In the background**: the service answers webhooks and `/get` at once; the import goes
//!   through the same store write as live traffic (same batching, same atomic chunks), so it never
//!   races a live message: an id stored live first is a duplicate for the import, and the other
//!   way round.
//! - **What an imported message is** ([`Origin::Imported`]): an inbound record (`source:
//!   "earlier_release"`) counted in its conversation but not unread, no 24-hour window, no second
//!   FastAPI entry and no event per message (the conversation's `conversation_updated` is
//!   written as for any write). Its business number is PHONE_NUMBER_ID (earlier releases did not
//!   record one), else `unknown`. Meta's message object (`raw`) is parsed as a live one would be,
//!   so the record has the same typed content; an item without `raw` (the FastAPI original's
//!   examples) becomes a text message of its `body`.
//! - **Once**: when every item was read, the store records it (Redis `P:upgrade:import`, SQLite
//!   `layout`), and later starts skip the walk. An interrupted import starts over at the next start;
//!   what it already imported is recognised by its records (duplicates), so nothing is counted
//!   twice. A store that is unreachable is retried every [`RETRY`].

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{InboundMessage, Origin, PhoneNumberId};
use crate::store::{LegacyCursor, Store, StoreError};
use crate::webhook::extract_batch;

/// Wait before trying again after the store failed.
pub const RETRY: Duration = Duration::from_secs(10);

/// Starts the import (see the module docs). It ends by itself once done.
pub fn spawn_import(store: Store, phone_number_id: Option<PhoneNumberId>) {
    let tenant = phone_number_id.unwrap_or_else(PhoneNumberId::unknown);
    tokio::spawn(async move {
        loop {
            match import(&store, &tenant).await {
                Ok(Some(imported)) => {
                    tracing::info!(
                        imported.messages = imported,
                        "store.upgrade messages of earlier releases have records and conversations"
                    );
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error.message = %e, retry_secs = RETRY.as_secs(), "store.upgrade importing messages of earlier releases failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

/// Imports everything not imported yet: how many messages got a record (`None`: nothing to do).
pub async fn import(store: &Store, tenant: &PhoneNumberId) -> Result<Option<usize>, StoreError> {
    if !store.import_pending().await? {
        return Ok(None);
    }
    let mut cursor = LegacyCursor::default();
    let mut imported = 0;
    while let Some(items) = store.legacy_page(&mut cursor).await? {
        let messages: Vec<InboundMessage> = items
            .iter()
            .filter_map(|json| legacy_message(json, tenant))
            .collect();
        imported += store.save_inbound(&messages).await?.stored;
    }
    store.import_finished().await?;
    Ok(Some(imported))
}

/// The FastAPI form: `{id, from, to, timestamp, type, body, raw}`.
#[derive(Deserialize)]
struct Legacy<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    /// A string as Meta sends it; a number in some hand-written items.
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default, borrow)]
    raw: Option<&'a RawValue>,
}

/// An item of an earlier release as the message a live webhook would have made of it, imported;
/// `None` for an item that cannot be one (not JSON, no id or sender): it stays in its list only.
pub fn legacy_message(json: &str, tenant: &PhoneNumberId) -> Option<InboundMessage> {
    let item: Legacy<'_> = serde_json::from_str(json).ok()?;
    let timestamp = match &item.timestamp {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let raw = match item.raw.filter(|r| r.get().starts_with('{')) {
        Some(raw) => raw.get().to_owned(),
        None => {
            let kind = item.kind.as_deref().unwrap_or("text");
            let mut message = serde_json::json!({
                "from": item.from?, "id": item.id?, "timestamp": timestamp,
                "type": kind,
            });
            if kind == "text" {
                message["text"] = serde_json::json!({ "body": item.body.unwrap_or_default() });
            }
            message.to_string()
        }
    };
    let body = format!(
        r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":{},"phone_number_id":{}}},"messages":[{raw}]}}}}]}}]}}"#,
        serde_json::to_string(item.to.as_deref().unwrap_or("")).ok()?,
        serde_json::to_string(tenant.as_str()).ok()?,
    );
    let mut message = extract_batch(body.as_bytes()).ok()?.messages.pop()?;
    message.origin = Origin::Imported;
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_with_raw_is_read_like_a_live_message() {
        let tenant = PhoneNumberId::parse("106540352242922").unwrap();
        let json = r#"{"id":"wamid.A","from":"919216598210","to":"15551713917","timestamp":"1757936743","type":"image","body":"[image]","raw":{"from":"919216598210","id":"wamid.A","timestamp":"1757936743","type":"image","image":{"id":"MEDIA1","mime_type":"image/jpeg","caption":"look"}}}"#;
        let m = legacy_message(json, &tenant).unwrap();
        assert_eq!(m.id.as_str(), "wamid.A");
        assert_eq!(m.from.as_str(), "919216598210");
        assert_eq!(m.phone_number_id, tenant);
        assert_eq!(m.to, "15551713917");
        assert_eq!(m.origin, Origin::Imported);
        assert_eq!(m.body, "look");
        assert!(matches!(m.content, crate::domain::Content::Image { .. }));
    }

    #[test]
    fn an_item_without_raw_becomes_a_text_and_junk_is_skipped() {
        let tenant = PhoneNumberId::unknown();
        let m = legacy_message(
            r#"{"id":"wamid.B","from":"919216598210","timestamp":1757936700,"body":"one"}"#,
            &tenant,
        )
        .unwrap();
        assert_eq!(m.body, "one");
        assert_eq!(m.timestamp, "1757936700");
        for junk in [
            "not json",
            "[]",
            r#"{"from":"919216598210"}"#,
            r#"{"id":"wamid.C"}"#,
        ] {
            assert!(legacy_message(junk, &tenant).is_none(), "{junk}");
        }
    }
}
