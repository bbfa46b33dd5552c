//! `POST /v1/messages`: a thin adapter from HTTP to [`crate::service::send`]. The body is parsed
//! into an [`OutgoingMessage`] first (every rule Meta enforces; all broken rules in one 422),
//! so nothing reaches Meta that Meta would refuse for its shape.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::domain::send::{Invalid, OutgoingMessage};
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::JsonBody;

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
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let message = OutgoingMessage::parse(&body)
        .map_err(|errors| ApiError::Validation(errors.into_iter().map(Into::into).collect()))?;
    tracing::info!(to = %message.to.masked(), kind = message.meta_type(), "send.request");
    match state.sender.send(&message).await {
        Ok(sent) => {
            state.metrics.graph_call("ok", None);
            tracing::info!(to = %message.to.masked(), message_id = sent.id.as_str(), recorded = sent.recorded, "send.success");
            Ok(Json(sent).into_response())
        }
        Err(e) => {
            if let crate::service::send::SendError::Graph(g) = &e {
                state.metrics.graph_call(g.outcome(), g.meta_code());
                tracing::warn!(to = %message.to.masked(), outcome = g.outcome(), meta.code = g.meta_code(), "send.error");
            }
            Err(e.into())
        }
    }
}
