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

use crate::domain::send::{Invalid, OutgoingMessage};
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::JsonBody;
use crate::service::send::{IdempotencyKey, SendError};
use crate::store::Claim;

/// The client's key for a request it may repeat.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer that repeats the first answer for its Idempotency-Key.
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Largest answer kept for an Idempotency-Key (answers are a few hundred bytes).
const MAX_KEPT_ANSWER: usize = 64 * 1024;

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
    request_body(content = serde_json::Value, description = "Meta's message object with Meta's field names: `to` (a phone number in any form, or a BSUID), `type`, the object named by `type`; optional `from` (a configured phone_number_id), `reply_to` (a message id), `outside_window`, `biz_opaque_callback_data`. Types: text, image, video, audio, voice, document, sticker, location, location_request, contacts, interactive (button, list, cta_url, product, product_list, catalog_message, location_request_message, flow), template, reaction, product, product_list, catalog.",
        example = json!({"to": "15551234567", "type": "text", "text": {"body": "Your order has shipped"}})),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Accepted by Meta: {id, to, from, status: \"accepted\", type, contact, message_status?, recorded}. Delivery is reported later (message_status events)"),
        (status = 400, description = "Meta refused the message (detail: message, code, error_subcode, details, fbtrace_id, hint, outcome)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "A field breaks a rule (nothing was sent), `from` is not a configured number, the 24-hour window is closed, or Meta refused a template", body = crate::http::docs::ValidationDetail),
        (status = 429, description = "Meta asked to slow down (throughput or pair rate); Retry-After says when to try again"),
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
    let (response, keep) = match state.sender.send(&message).await {
        Ok(sent) => {
            state.metrics.graph_call("ok", None);
            tracing::info!(to = %message.to.masked(), message_id = sent.id.as_str(), recorded = sent.recorded, "send.success");
            (Json(sent).into_response(), true)
        }
        Err(e) => {
            let mut unknown = false;
            if let SendError::Graph(g) = &e {
                state.metrics.graph_call(g.outcome(), g.meta_code());
                tracing::warn!(to = %message.to.masked(), outcome = g.outcome(), meta.code = g.meta_code(), "send.error");
                unknown = g.outcome_unknown();
            }
            (ApiError::from(e).into_response(), unknown)
        }
    };
    let Some(key) = key else {
        return Ok(response);
    };
    // Kept: an accepted send, and one that may have reached Meta (a repeat must not send it
    // again). Released: everything that certainly sent nothing, so the client may retry.
    if !keep {
        state.sender.settle(&key, None).await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_KEPT_ANSWER)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    state
        .sender
        .settle(&key, Some((parts.status.as_u16(), text)))
        .await;
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
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
