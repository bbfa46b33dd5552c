//! [`ApiError`]: the one error type of the HTTP edge, with the one `IntoResponse`.
//!
//! Bodies follow FastAPI's shape so clients of the original keep working: `{"detail": "<text>"}`,
//! validation errors as `422 {"detail": [{"loc": ["body", "number"], "msg": …, "type": …}]}`, and a
//! Graph API rejection as `400 {"detail": <Meta's error JSON verbatim>}`. 5xx bodies are opaque;
//! the cause is logged here (inside the request span, so with its request id), never in handlers.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::graph::GraphError;
use crate::store::StoreError;
use crate::webhook::{ExtractError, HandshakeError, SignatureError};

/// One invalid field, FastAPI style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Where: `["body", "<field>"]`.
    pub loc: Vec<String>,
    /// The rule it broke, e.g. `number must have 7-15 digits (found 3)`.
    pub msg: String,
    /// Kind: `missing`, `value_error` or `type_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl FieldError {
    /// An invalid value in the body.
    pub fn value(field: &str, msg: impl std::fmt::Display) -> Self {
        Self {
            loc: vec!["body".into(), field.into()],
            msg: format!("{field} {msg}"),
            kind: "value_error",
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the body is JSON but a field is missing or breaks a rule.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400: a webhook body not shaped like Meta's notification.
    #[error("invalid webhook payload: {0}")]
    InvalidWebhook(#[from] ExtractError),
    /// 401: webhook signature missing or wrong.
    #[error("{0}")]
    BadSignature(#[from] SignatureError),
    /// 401: API key missing or wrong.
    #[error(
        "missing or invalid API key: send 'Authorization: Bearer <API_KEY>' or 'X-API-Key: <API_KEY>'"
    )]
    Unauthorized,
    /// 400 or 403: Meta's verification handshake refused.
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// 413: body over MAX_BODY_BYTES.
    #[error("request body is larger than the configured limit (MAX_BODY_BYTES)")]
    PayloadTooLarge,
    /// 408: the body did not arrive within BODY_TIMEOUT_SECS.
    #[error("request body was not received in time")]
    BodyTimeout,
    /// 400: the body could not be read for another reason.
    #[error("could not read the request body")]
    UnreadableBody,
    /// 503: the store failed; Meta retries webhooks answered with 5xx.
    #[error("storage is unavailable; retry later")]
    Store(#[from] StoreError),
    /// Graph API failures: 400 (Meta rejected), 502, 503 (not configured), 504.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl ApiError {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) | Self::InvalidWebhook(_) | Self::UnreadableBody => {
                StatusCode::BAD_REQUEST
            }
            Self::BadSignature(_) | Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Handshake(HandshakeError::MissingParameter(_)) => StatusCode::BAD_REQUEST,
            Self::Handshake(_) => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Graph(GraphError::Rejected { status, .. }) if *status < 500 => {
                StatusCode::BAD_REQUEST
            }
            Self::Graph(
                GraphError::Rejected { .. }
                | GraphError::Unreachable(_)
                | GraphError::InvalidResponse { .. },
            ) => StatusCode::BAD_GATEWAY,
            Self::Graph(GraphError::NotConfigured(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Graph(GraphError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Validation(errors) => json!({ "detail": errors }),
            // Meta's error object verbatim, as the original's HTTPException(detail=resp.json()).
            Self::Graph(GraphError::Rejected { body, .. }) => json!({ "detail": body }),
            Self::Store(cause) => {
                tracing::error!(error.message = %cause, "store.error");
                match cause.public_detail() {
                    Some(reason) => json!({ "detail": format!("{self}: {reason}") }),
                    None => json!({ "detail": self.to_string() }),
                }
            }
            _ => json!({ "detail": self.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED && matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
