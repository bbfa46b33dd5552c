//! `POST /v1/messages`: a thin adapter from HTTP to [`crate::service::send`]. The body is parsed
//! into an [`OutgoingMessage`] first (every rule Meta enforces; all broken rules in one 422),
//! so nothing reaches Meta that Meta would refuse for its shape. With an `Idempotency-Key`
//! header, the key is claimed before the send and the answer kept after it (an accepted send,
//! or one whose outcome is unknown), so a repeat gets the same answer (`Idempotent-Replayed:
//! true`) and nothing is sent twice; a send that certainly sent nothing releases the key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::BusinessNumber;
use crate::domain::send::{Invalid, OutgoingMessage};
use crate::graph::GraphError;
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{ApiPath, ApiQuery, JsonBody};
use crate::service::send::{IdempotencyKey, SendError, Sender};
use crate::store::Claim;

/// The client's key for a request it may repeat.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer that repeats the first answer for its Idempotency-Key.
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Largest answer kept for an Idempotency-Key: answers are a few hundred bytes, but Meta's
/// error object (up to `graph::error::MAX_RESPONSE_BYTES`) is part of an error's answer.
const MAX_KEPT_ANSWER: usize = 2 * 1024 * 1024;

impl From<Invalid> for FieldError {
    fn from(e: Invalid) -> Self {
        let mut loc = vec!["body".to_owned()];
        loc.extend(
            e.field
                .split(['.', '['])
                .filter(|p| !p.is_empty())
                .map(|p| p.trim_end_matches(']').to_owned()),
        );
        let msg = if e.field.is_empty() {
            e.rule
        } else {
            format!("{} {}", e.field, e.rule)
        };
        Self {
            loc,
            msg,
            kind: "value_error",
        }
    }
}

/// Sends any kind of WhatsApp message.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    request_body(content = serde_json::Value, description = "Meta's message object with Meta's field names: `to` (a phone number in any form, or a BSUID; or Meta's `recipient` instead), `type`, the object named by `type`; optional `from` (a configured phone_number_id), `reply_to` (a message id), `outside_window`, `biz_opaque_callback_data`. Types: text, image, video, audio, voice, document, sticker, location, location_request, contacts, interactive (button, list, cta_url, product, product_list, catalog_message, location_request_message, flow, voice_call, call_permission_request, request_contact_info, carousel), template, reaction, product, product_list, catalog.",
        example = json!({"to": "15551234567", "type": "text", "text": {"body": "Your order has shipped"}})),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Accepted by Meta: {id, to, from, status: \"accepted\", type, contact, message_status?, recorded}. Delivery is reported later (message_status events)"),
        (status = 400, description = "Meta refused the message (detail: message, code, error_subcode, details, fbtrace_id, hint, outcome)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "A field breaks a rule (nothing was sent), `from` is not a configured number, the 24-hour window is closed, or Meta refused a template", body = crate::http::docs::ValidationDetail),
        (status = 429, description = "Meta asked to slow down (throughput or pair rate), or the number's send rate (SEND_RATE_PER_SECOND) is taken for longer than GRAPH_TIMEOUT_SECS ahead (nothing was sent); Retry-After says when to try again"),
        (status = 502, description = "Meta failed, the token is expired or lacks a permission, or Meta could not be reached; detail.outcome says whether the message may have been sent"),
        (status = 503, description = "Sending is not configured, or the store is unavailable (nothing was sent)", body = crate::http::docs::Detail),
        (status = 504, description = "Meta did not answer in time: the outcome is unknown (detail.outcome = unknown)"),
    ))]
pub async fn post_message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let message = OutgoingMessage::parse(&body)
        .map_err(|errors| ApiError::Validation(errors.into_iter().map(Into::into).collect()))?;
    let key = idempotency_key(&headers, &body)?;
    if let Some(key) = &key {
        match state.sender.claim(key).await? {
            Claim::Fresh => {}
            Claim::Done { status, body } => return Ok(replayed(status, body)),
            Claim::Mismatch => {
                return Err(ApiError::Validation(vec![FieldError::parameter(
                    "header",
                    "Idempotency-Key",
                    "was already used for a different request body; use a new key for a new message",
                )]));
            }
            Claim::InProgress => {
                return Err(ApiError::Conflict(
                    "a request with this Idempotency-Key is in progress, or was cut off before its outcome was known; nothing is sent again under this key: check the conversation or the message_outgoing events before sending with a new key",
                ));
            }
        }
    }
    tracing::info!(to = %message.to.masked(), kind = message.meta_type(), "send.request");
    // The send, its record and the key's answer run in a task of their own: a client that
    // hangs up, or the request timeout, must not stop them halfway (a message sent but neither
    // recorded nor its key settled would answer 409 to every retry for a day).
    // The client gets its answer before the edge's request timeout would cut it off with a
    // bare 503 (which reads as "nothing was sent" and invites a blind retry): past 90% of
    // REQUEST_TIMEOUT_SECS it is a 504 saying the outcome is unknown, while the task goes on to
    // its end (and settles the key, so a keyed retry gets the real answer).
    let answer_by = state.edge.request_timeout().mul_f64(0.9);
    let task = tokio::spawn(send_and_settle(state, message, key));
    match tokio::time::timeout(answer_by, task).await {
        Ok(done) => done.map_err(|_| {
            ApiError::Internal(
                "the send failed inside the gateway (see its log); its outcome is unknown",
            )
        }),
        Err(_) => {
            tracing::warn!(
                "send.slow the send outlasts the request; answered 504 (outcome unknown) while it goes on"
            );
            Err(SendError::Graph(GraphError::Timeout).into())
        }
    }
}

/// Steps 3-4 of [`post_message`]: the send, then the key's settlement.
async fn send_and_settle(
    state: Arc<AppState>,
    message: OutgoingMessage,
    key: Option<IdempotencyKey>,
) -> Response {
    let (response, keep) = match state.sender.send(&message).await {
        Ok(sent) => {
            tracing::info!(to = %message.to.masked(), message_id = sent.id.as_str(), recorded = sent.recorded, "send.success");
            (Json(sent).into_response(), true)
        }
        Err(e) => {
            let mut unknown = false;
            if let SendError::Graph(g) = &e {
                tracing::warn!(to = %message.to.masked(), outcome = g.outcome(), meta.code = g.meta_code(), "send.error");
                unknown = g.outcome_unknown();
            }
            (ApiError::from(e).into_response(), unknown)
        }
    };
    let Some(key) = key else {
        return response;
    };
    // Kept: an accepted send, and one that may have reached Meta (a repeat must not send it
    // again). Released: everything that certainly sent nothing, so the client may retry.
    if !keep {
        state.sender.settle(&key, None).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_KEPT_ANSWER).await {
        Ok(bytes) => bytes,
        Err(_) => axum::body::Bytes::from_static(
            br#"{"detail":{"message":"the answer could not be kept","outcome":"unknown"}}"#,
        ),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    state
        .sender
        .settle(&key, Some((parts.status.as_u16(), text)))
        .await;
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The `Idempotency-Key` header, if any, with the body's fingerprint.
fn idempotency_key(
    headers: &HeaderMap,
    body: &serde_json::Value,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = |rule: String| {
        ApiError::Validation(vec![FieldError::parameter(
            "header",
            "Idempotency-Key",
            rule,
        )])
    };
    let key = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII characters".to_owned()))?;
    IdempotencyKey::parse(key, body).map(Some).map_err(invalid)
}

/// The first answer given for an Idempotency-Key, again.
fn replayed(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    response
}

/// Query of the read-receipt and typing endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct NumberParams {
    /// The business number (default: the message's own, else PHONE_NUMBER_ID).
    pub phone_number_id: Option<String>,
}

/// Sends Meta's read receipt for a message a user sent (two blue ticks on their phone; earlier
/// messages of the chat are marked read with it). The conversation's unread count is not
/// changed: `POST /v1/conversations/{contact}/read` does both.
#[utoipa::path(post, path = "/v1/messages/{id}/read", tag = "messages",
    params(("id" = String, Path, description = "The wamid of a message a user sent"), NumberParams),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Meta accepted the read receipt: {id, phone_number_id, status: \"read\"}"),
        (status = 400, description = "Meta refused it (e.g. 131009: unknown id or older than 30 days); detail has Meta's fields and a hint"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "The id is not a message id, names a message the business sent, or phone_number_id is not a configured number", body = crate::http::docs::ValidationDetail),
        (status = 502, description = "Meta failed or could not be reached"),
        (status = 503, description = "Sending is not configured, or the store is unavailable", body = crate::http::docs::Detail),
    ))]
pub async fn read_message(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<NumberParams>,
) -> Result<Response, ApiError> {
    let id = crate::domain::MessageId::parse(&id)
        .map_err(|e| ApiError::Validation(vec![FieldError::parameter("path", "id", e)]))?;
    let asked = params.phone_number_id.as_deref();
    /// The two fields of the stored record this needs.
    #[derive(serde::Deserialize)]
    struct Stored {
        direction: Option<String>,
        phone_number_id: Option<String>,
    }
    let record = state.store.message(id.as_str(), asked).await?;
    let record: Option<Stored> = record.and_then(|r| serde_json::from_str(&r).ok());
    if record
        .as_ref()
        .is_some_and(|r| r.direction.as_deref() == Some("outbound"))
    {
        return Err(ApiError::Validation(vec![FieldError::parameter(
            "path",
            "id",
            "is a message the business sent; read receipts are for messages users sent",
        )]));
    }
    let stored_number = record.and_then(|r| r.phone_number_id);
    let number = queried_number(&state.sender, asked.or(stored_number.as_deref()))?;
    state
        .sender
        .read_receipt(number, &id, false)
        .await
        .map_err(SendError::Graph)?;
    Ok(
        Json(
            serde_json::json!({"id": id.as_str(), "phone_number_id": number.id, "status": "read"}),
        )
        .into_response(),
    )
}

/// Shows the typing indicator to a contact: Meta's read receipt for their latest message with
/// the indicator on it (Meta shows it until the reply is sent, at most 25 s; send it only when
/// a reply is coming).
#[utoipa::path(post, path = "/v1/conversations/{contact}/typing", tag = "conversations",
    params(("contact" = String, Path, description = "A phone number in any accepted form, or a BSUID"), NumberParams),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Meta shows the indicator: {message_id, phone_number_id, typing: true}"),
        (status = 400, description = "Meta refused it; detail has Meta's fields and a hint"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No message from this contact is stored (there is nothing to answer)", body = crate::http::docs::Detail),
        (status = 422, description = "A parameter breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 502, description = "Meta failed or could not be reached"),
        (status = 503, description = "Sending is not configured, or the store is unavailable", body = crate::http::docs::Detail),
    ))]
pub async fn typing(
    State(state): State<Arc<AppState>>,
    ApiPath(contact): ApiPath<String>,
    ApiQuery(params): ApiQuery<NumberParams>,
) -> Result<Response, ApiError> {
    let contact = crate::domain::ContactId::parse(&contact)
        .map_err(|e| ApiError::Validation(vec![FieldError::parameter("path", "contact", e)]))?;
    let number = queried_number(&state.sender, params.phone_number_id.as_deref())?;
    let latest = state
        .sender
        .latest_inbound(&number.id, &contact)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no message from {} to business number {} is stored: there is nothing to answer",
                contact.masked(),
                number.id
            ))
        })?;
    state
        .sender
        .read_receipt(number, &latest, true)
        .await
        .map_err(SendError::Graph)?;
    Ok(Json(serde_json::json!({"message_id": latest.as_str(), "phone_number_id": number.id, "typing": true})).into_response())
}

/// The business number a request names in its `phone_number_id` query, else the default; an
/// unknown one is a 422 naming the parameter.
pub(crate) fn queried_number<'s>(
    sender: &'s Sender,
    phone_number_id: Option<&str>,
) -> Result<&'s BusinessNumber, ApiError> {
    sender.number(phone_number_id).map_err(|e| match e {
        SendError::UnknownNumber { .. } => {
            ApiError::Validation(vec![FieldError::query("phone_number_id", e)])
        }
        other => other.into(),
    })
}
