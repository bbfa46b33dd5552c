//! Sending: which business number a send goes from, the 24-hour window, the Graph call, and the
//! record of what Meta accepted.
//!
//! The flow of `POST /v1/messages` (and, for its record, `POST /send`):
//! 1. the business number: `from` (a configured phone_number_id) or the default; an unknown one
//!    is refused before anything else;
//! 2. the window: a free-form message to a contact whose last stored inbound message and last
//!    call to the number (Meta opens the window on both) are older than 24 hours is refused
//!    (Meta would fail it with 131047 after accepting it), unless the client says
//!    `outside_window`; a contact with neither stored goes to Meta, which has the last word.
//!    One store read.
//! 3. the Graph call ([`GraphClient::send`]: never repeated where that could send twice);
//! 4. the record: the message as Meta accepted it, in the conversation of (from, contact) with
//!    its `message_outgoing` event in the same atomic write ([`crate::domain::Origin::Api`]). The contact is the
//!    id Meta answered with (`contacts[0].wa_id`, which can differ from the number dialled, or
//!    `user_id`), so the status webhooks that follow land in the same conversation.
//!
//! The record is built the way an echo of the message would be (Meta's body written as an echo's
//! message object, read by the same extractor), so a message sent here and one sent from the
//! WhatsApp Business app read the same. If storing the record fails, the send is still
//! answered as accepted (with `recorded: false`): Meta has the message, and an error would invite
//! the client to send it again.

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::BusinessNumber;
use crate::domain::send::OutgoingMessage;
use crate::domain::{ContactId, InboundMessage, MessageId, Origin};
use crate::graph::error::Class;
use crate::graph::pacer::PairBackoff;
use crate::graph::{GraphClient, GraphError};
use crate::store::record::WINDOW_SECS;
use crate::store::view::{LastInbound, now_secs};
use crate::store::{Claim, IdempotencyOp, Store, StoreError};

/// Why a send was not made.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// `from` names no configured business number.
    #[error("is not a configured business number (configured: {configured})")]
    UnknownNumber { configured: String },
    /// No business number is configured at all.
    #[error("sending is not configured: set PHONE_NUMBER_ID and ACCESS_TOKEN")]
    NotConfigured,
    /// The contact's last message (and call) is older than the 24-hour window.
    #[error(
        "the 24-hour customer-service window with this contact closed at {closed_at} (unix seconds; their last message or call was 24 hours before): only a template can reach them now. Send type \"template\", or set \"outside_window\": true to let Meta decide"
    )]
    WindowClosed { closed_at: i64 },
    /// The window could not be read (nothing was sent).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Meta did not accept the message (or its answer was lost: see
    /// [`GraphError::outcome_unknown`]).
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A message Meta accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// Meta's message id (wamid).
    pub id: String,
    /// The conversation's contact: the id Meta answered with, else the recipient as sent.
    pub to: String,
    /// The business number (phone_number_id) it was sent from.
    pub from: String,
    /// Always `accepted`: delivery is reported later by status webhooks and events.
    pub status: &'static str,
    /// Meta's `type` of the message.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Meta's `contacts[0]`: `input` (as sent), `wa_id` and/or `user_id`.
    pub contact: Value,
    /// Meta's `message_status` for templates (`accepted`, `held_for_quality_assessment`,
    /// `paused`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_status: Option<String>,
    /// Whether the record (and its `message_outgoing` event) was stored; false only when the
    /// store failed after Meta accepted the message.
    pub recorded: bool,
}

/// The send service.
#[derive(Debug, Clone)]
pub struct Sender {
    graph: GraphClient,
    store: Store,
    /// Pair-rate refusals in a row, for the Retry-After of the next one.
    pairs: std::sync::Arc<PairBackoff>,
}

impl Sender {
    pub fn new(graph: GraphClient, store: Store) -> Self {
        Self {
            graph,
            store,
            pairs: std::sync::Arc::default(),
        }
    }

    /// The Graph call of a send from `number` to `to`, with Meta's pair-rate refusals answered
    /// with a growing wait ([`PairBackoff`]): the error's Retry-After becomes at least that.
    async fn call(
        &self,
        number: &BusinessNumber,
        to: &str,
        body: &impl Serialize,
    ) -> Result<Box<serde_json::value::RawValue>, GraphError> {
        match self.graph.send(number, body).await {
            Ok(answer) => {
                self.pairs.accepted(&number.id, to);
                Ok(answer)
            }
            Err(mut e) => {
                if let Class::PairRate { wait } = e.class()
                    && let GraphError::Rejected { retry_after, .. } = &mut e
                {
                    *retry_after = Some(wait.max(self.pairs.refused(&number.id, to)));
                }
                Err(e)
            }
        }
    }

    /// The Graph client (for reads and media, which need no send flow).
    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    /// The business number `from` names, else the default (PHONE_NUMBER_ID, the first).
    pub fn number(&self, from: Option<&str>) -> Result<&BusinessNumber, SendError> {
        let numbers = self.graph.numbers();
        match from {
            None => numbers.first().ok_or(SendError::NotConfigured),
            Some(id) => numbers.iter().find(|n| n.id == id).ok_or_else(|| {
                let ids: Vec<&str> = numbers.iter().map(|n| n.id.as_str()).collect();
                SendError::UnknownNumber {
                    configured: if ids.is_empty() {
                        "none".to_owned()
                    } else {
                        ids.join(", ")
                    },
                }
            }),
        }
    }

    /// Sends `message` (steps 1-4 of the module doc).
    pub async fn send(&self, message: &OutgoingMessage) -> Result<Sent, SendError> {
        self.send_as(message, Origin::Api).await
    }

    /// Sends `message` as an auto-reply: the same flow, recorded with `source: "auto_reply"`.
    pub async fn send_auto_reply(&self, message: &OutgoingMessage) -> Result<Sent, SendError> {
        self.send_as(message, Origin::Auto).await
    }

    async fn send_as(&self, message: &OutgoingMessage, origin: Origin) -> Result<Sent, SendError> {
        let number = self.number(message.from.as_deref())?;
        if message.needs_window() && !message.outside_window {
            let opened = self.store.window_opened_at(&number.id, &message.to).await?;
            if let Some(opened) = opened {
                let closed_at = opened + WINDOW_SECS;
                if now_secs() >= closed_at {
                    return Err(SendError::WindowClosed { closed_at });
                }
            }
        }
        let body = message.meta_body();
        let answer = self.call(number, message.to.as_str(), &body).await?;
        let answer: Value = serde_json::from_str(answer.get()).unwrap_or(Value::Null);
        let accepted = Accepted::of(&answer, &message.to);
        if MessageId::parse(&accepted.id).is_err() {
            // Meta answered 2xx without a message id: it may or may not have taken the message.
            return Err(GraphError::InvalidResponse { status: 200 }.into());
        }
        let contact = accepted.contact_id.unwrap_or_else(|| message.to.clone());
        let recorded = self
            .record(
                &body,
                message.reply_to.as_ref(),
                number,
                &accepted.id,
                &contact,
                origin,
            )
            .await;
        Ok(Sent {
            id: accepted.id,
            to: contact.as_str().to_owned(),
            from: number.id.clone(),
            status: "accepted",
            kind: message.meta_type(),
            contact: accepted.contact,
            message_status: accepted.message_status,
            recorded,
        })
    }
}

impl Sender {
    /// `POST /send`: a text from the default number, as the FastAPI original sent it (no window
    /// check), recorded like any other send. Returns Meta's answer verbatim.
    pub async fn send_compat(
        &self,
        message: &crate::domain::OutboundText,
    ) -> Result<Box<serde_json::value::RawValue>, GraphError> {
        let number = self
            .graph
            .numbers()
            .first()
            .ok_or(GraphError::NotConfigured("PHONE_NUMBER_ID"))?;
        // The original's body, exactly: no `recipient_type`.
        let body = json!({"messaging_product": "whatsapp", "to": message.to.as_str(),
                          "type": "text", "text": {"body": message.text.as_str()}});
        let answer = self.call(number, message.to.as_str(), &body).await?;
        let to = ContactId::Phone(message.to.clone());
        let parsed: Value = serde_json::from_str(answer.get()).unwrap_or(Value::Null);
        let accepted = Accepted::of(&parsed, &to);
        let contact = accepted.contact_id.unwrap_or(to);
        self.record(&body, None, number, &accepted.id, &contact, Origin::Api)
            .await;
        Ok(answer)
    }

    /// Stores the record of an accepted message; false (logged) when that fails.
    async fn record(
        &self,
        body: &Value,
        reply_to: Option<&MessageId>,
        number: &BusinessNumber,
        id: &str,
        contact: &ContactId,
        origin: Origin,
    ) -> bool {
        let Some(mut record) = record_of(body, reply_to, number, id, contact) else {
            tracing::error!(
                message_id = id,
                "send.record_failed the accepted message could not be shaped into a record"
            );
            return false;
        };
        record.origin = origin;
        match self.store.save_inbound(&[record]).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(message_id = id, error.message = %e, "send.record_failed Meta accepted the message but its record was not stored");
                false
            }
        }
    }
}

/// How many of a conversation's latest messages are searched for the latest inbound one (the
/// message a read receipt or a typing indicator is about) when the conversation was last
/// written by a release that did not keep its id.
const LATEST_SCAN: usize = 50;

impl Sender {
    /// Meta's read receipt for message `id`, sent from business number `number`; with `typing`,
    /// the typing indicator too (Meta shows it until the reply, at most 25 s). Marking a message
    /// read also marks the earlier ones of that chat read on the user's phone.
    pub async fn read_receipt(
        &self,
        number: &BusinessNumber,
        id: &MessageId,
        typing: bool,
    ) -> Result<(), GraphError> {
        let mut body =
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": id.as_str()});
        if typing {
            body["typing_indicator"] = json!({"type": "text"});
        }
        self.graph.send(number, &body).await.map(drop)
    }

    /// The id of the latest message `contact` wrote to `number`: one read of the conversation's
    /// fields, after finding its key ([`crate::store::Store::conversation_key`]: a read unless
    /// cached).
    pub async fn latest_inbound(
        &self,
        number: &str,
        contact: &ContactId,
    ) -> Result<Option<MessageId>, StoreError> {
        let contact = &self.store.conversation_key(number, contact).await?;
        let last = self.store.last_inbound(number, contact).await?;
        self.inbound_id(number, contact, last).await
    }

    /// The id of the message `last` describes. A conversation last written by a release that
    /// did not keep that id has only its time: then the conversation's latest [`LATEST_SCAN`]
    /// messages are looked through (once the contact writes again, the id is kept).
    pub async fn inbound_id(
        &self,
        number: &str,
        contact: &ContactId,
        last: Option<LastInbound>,
    ) -> Result<Option<MessageId>, StoreError> {
        let Some(last) = last else {
            return Ok(None);
        };
        if let Some(id) = last.id {
            return Ok(MessageId::parse(&id).ok());
        }
        let page = self
            .store
            .conversation_messages(&crate::store::view::MessagesQuery {
                phone_number_id: number.to_owned(),
                contact: contact.as_str().to_owned(),
                cursor: crate::store::view::MessageCursor::Latest,
                limit: LATEST_SCAN,
                kind: None,
            })
            .await?;
        // Oldest first within the page: the last inbound one is the latest.
        Ok(page
            .items
            .iter()
            .rev()
            .filter_map(|item| serde_json::from_str::<Value>(item).ok())
            .find(|m| m["direction"] == "inbound")
            .and_then(|m| MessageId::parse(m["id"].as_str()?).ok()))
    }
}

/// A client's `Idempotency-Key` with the fingerprint of its request body: a repeated request
/// (a client retrying after a timeout) gets the first answer and sends nothing again, for
/// [`crate::store::IDEMPOTENCY_TTL_SECS`], across every instance on one Redis; the same key with
/// another body is refused.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: String,
}

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

impl IdempotencyKey {
    /// A key of 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters (a UUID is typical), for
    /// `body` (its fingerprint is the SHA-256 of its JSON with keys sorted, so the same request
    /// formatted differently is still the same request).
    pub fn parse(key: &str, body: &Value) -> Result<Self, String> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(format!(
                "must have 1-{MAX_IDEMPOTENCY_KEY} characters (found {})",
                key.len()
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters (a UUID is a good key)".to_owned());
        }
        use sha2::Digest;
        let canonical = serde_json::to_vec(body).expect("a JSON value serializes");
        Ok(Self {
            key: key.to_owned(),
            fingerprint: hex::encode(sha2::Sha256::digest(&canonical)),
        })
    }
}

impl Sender {
    /// Claims `key` for this request, or says who holds it.
    pub async fn claim(&self, key: &IdempotencyKey) -> Result<Claim, StoreError> {
        self.store
            .idempotency(&key.key, &key.fingerprint, IdempotencyOp::Claim)
            .await
    }

    /// Settles a claimed key: `Some(answer)` is kept and given to every repeat of the request;
    /// `None` releases the key (nothing was sent, so a retry may send). A failure is logged: the
    /// answer to this request stands either way.
    pub async fn settle(&self, key: &IdempotencyKey, answer: Option<(u16, String)>) {
        let op = match answer {
            Some((status, body)) => IdempotencyOp::Finish { status, body },
            None => IdempotencyOp::Release,
        };
        if let Err(e) = self.store.idempotency(&key.key, &key.fingerprint, op).await {
            tracing::error!(error.message = %e, "send.idempotency_not_saved the answer was not kept for this Idempotency-Key; a repeat of the request will get 409");
        }
    }
}

/// What Meta's answer to a send says.
struct Accepted {
    id: String,
    contact: Value,
    contact_id: Option<ContactId>,
    message_status: Option<String>,
}

impl Accepted {
    /// `{"contacts":[{"input","wa_id"?,"user_id"?}],"messages":[{"id","message_status"?}]}`.
    fn of(answer: &Value, to: &ContactId) -> Self {
        let contact = answer
            .pointer("/contacts/0")
            .cloned()
            .unwrap_or_else(|| json!({ "input": to.as_str() }));
        let same_kind = |id: ContactId| {
            matches!(
                (&id, to),
                (ContactId::Phone(_), ContactId::Phone(_))
                    | (ContactId::User(_), ContactId::User(_))
            )
            .then_some(id)
        };
        let contact_id = ["wa_id", "user_id"]
            .iter()
            .filter_map(|key| contact.get(*key)?.as_str())
            .filter_map(|id| ContactId::parse(id).ok())
            .find_map(same_kind);
        Self {
            id: answer
                .pointer("/messages/0/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            contact,
            contact_id,
            message_status: answer
                .pointer("/messages/0/message_status")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// Keys of Meta's send body that are not part of the message object an echo carries.
const NOT_ECHOED: [&str; 6] = [
    "messaging_product",
    "recipient_type",
    "to",
    "recipient",
    "context",
    "biz_opaque_callback_data",
];

/// The record of a sent message: Meta's body written as the message object of an echo (the
/// business's display number `from`, the contact `to`/`to_user_id`, Meta's `id`, now as
/// `timestamp`, the reply's `context`, then the body's own fields), extracted like an echo's
/// message ([`crate::webhook::sent_message`]), with [`crate::domain::Origin::Api`]. The object is written
/// straight from the body (no copy of it, no notification around it): this runs for every send.
fn record_of(
    body: &Value,
    reply_to: Option<&MessageId>,
    number: &BusinessNumber,
    id: &str,
    contact: &ContactId,
) -> Option<InboundMessage> {
    use serde::ser::{SerializeMap, Serializer as _};
    let object = body.as_object()?;
    let display = number.display_phone_number.as_deref().unwrap_or(&number.id);
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = ser.serialize_map(None).ok()?;
    map.serialize_entry("from", display).ok()?;
    let to_key = match contact {
        ContactId::Phone(_) => "to",
        ContactId::User(_) => "to_user_id",
    };
    map.serialize_entry(to_key, contact.as_str()).ok()?;
    map.serialize_entry("id", id).ok()?;
    map.serialize_entry("timestamp", &now_secs().to_string())
        .ok()?;
    if let Some(reply_to) = reply_to {
        map.serialize_entry("context", &json!({ "id": reply_to.as_str() }))
            .ok()?;
    }
    for (key, value) in object {
        if !NOT_ECHOED.contains(&key.as_str()) {
            map.serialize_entry(key, value).ok()?;
        }
    }
    map.end().ok()?;
    let raw = serde_json::value::RawValue::from_string(String::from_utf8(out).ok()?).ok()?;
    let phone_number_id = crate::domain::PhoneNumberId::parse(&number.id).ok()?;
    match crate::webhook::sent_message(&raw, display, &phone_number_id) {
        Ok(record) => Some(record),
        Err(rule) => {
            tracing::error!(message_id = id, error.message = %rule, "send.record_failed the sent message does not read as a message");
            None
        }
    }
}
