//! [`ApiError`]: the one error type of the HTTP edge, with the one `IntoResponse`.
//!
//! Bodies follow FastAPI's shape so clients of the original keep working: `{"detail": "<text>"}`,
//! validation errors as `422 {"detail": [{"loc": ["body", "number"], "msg": …, "type": …}]}`, and a
//! Graph API rejection (Meta's 4xx) as `400 {"detail": <Meta's error JSON verbatim>}`. Every other
//! error, 502/503/504 included, is `{"detail": "<text with the reason>"}`; a Meta 5xx names Meta's
//! code and message in that text. A store failure's cause is logged here (inside the request span,
//! so with its request id), not sent.
//!
//! Echoed input is bounded: every text that may carry a client's value (validation messages,
//! malformed-JSON and webhook extraction errors, Meta's 5xx text) is cut to [`MAX_ECHO_CHARS`]
//! characters by [`bounded`], so a 3 MB bad value never comes back as a 3 MB body.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::graph::GraphError;
use crate::graph::error::{Class, hint};
use crate::service::send::SendError;
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
    /// An invalid query parameter.
    pub fn query(field: &str, msg: impl std::fmt::Display) -> Self {
        Self::parameter("query", field, msg)
    }

    /// An invalid request parameter in `place` (`query` or `path`).
    pub fn parameter(place: &str, field: &str, msg: impl std::fmt::Display) -> Self {
        Self {
            loc: vec![place.into(), field.into()],
            msg: format!("{field} {msg}"),
            kind: "value_error",
        }
    }

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
    /// 403: a state-changing request signed in by the inbox's session cookie without its
    /// `X-CSRF-Token`.
    #[error(
        "missing or wrong X-CSRF-Token: a state-changing request signed in by the inbox's session cookie must carry the session's token (GET /inbox/session gives it)"
    )]
    CsrfMissing,
    /// 401: an inbox sign-in with the wrong key.
    #[error("wrong API key")]
    WrongKey,
    /// 429: too many wrong API keys from the client's address lately
    /// ([`crate::http::limiter`]); the key presented was not checked.
    #[error(
        "too many wrong API keys from your address; try again after Retry-After (the key was not checked)"
    )]
    TooManyWrongKeys(std::time::Duration),
    /// 400 or 403: Meta's verification handshake refused.
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// 413: body over MAX_BODY_BYTES.
    #[error("request body is larger than the configured limit (MAX_BODY_BYTES)")]
    PayloadTooLarge,
    /// 413 with its own text: an upload over its limit, naming the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415 with its own text: a body or file of a type the route does not take, naming the
    /// types it does.
    #[error("{0}")]
    UnsupportedType(String),
    /// 403: a state-changing request or a WebSocket handshake from a web page of another origin
    /// while API_KEY is unset.
    #[error(
        "cross-origin request refused: API_KEY is not set, so state-changing requests and WebSocket connections from a web page are accepted only from the gateway's own pages (Origin {0:?} is not this host); set API_KEY to call the API from another origin"
    )]
    CrossOrigin(String),
    /// 403: a request signed in by the inbox's session cookie from a page of another origin.
    #[error(
        "cross-site request refused: the inbox's session cookie is accepted only from the gateway's own pages (Origin {0:?}); other clients send the API key"
    )]
    CrossSiteSession(String),
    /// 408: the body did not arrive within BODY_TIMEOUT_SECS.
    #[error("request body was not received in time")]
    BodyTimeout,
    /// 400: a multipart form that does not parse, with the reason.
    #[error("the multipart form could not be read: {0}")]
    MalformedForm(String),
    /// 400: the body could not be read for another reason.
    #[error("could not read the request body")]
    UnreadableBody,
    /// 503: a capacity or upload budget is exhausted; the text names which (and its variable).
    #[error("{0}")]
    Overloaded(&'static str),
    /// 415: a client endpoint got a body that is not declared as JSON.
    #[error(
        "Content-Type must be application/json (found {0}); send the header 'Content-Type: application/json'"
    )]
    UnsupportedMediaType(String),
    /// 403: API_KEY is unset and the Host header is not in ALLOWED_HOSTS.
    #[error(
        "Host {0:?} is not allowed: API_KEY is not set, so the client API answers only the host names in ALLOWED_HOSTS (default localhost, 127.0.0.1, ::1). To call it through a tunnel or another name, set API_KEY (recommended) or add the host name to ALLOWED_HOSTS"
    )]
    HostNotAllowed(String),
    /// 404: nothing stored under the id or contact asked for; the text says what.
    #[error("{0}")]
    NotFound(String),
    /// 500: a bug (a task of the request panicked); the text says what is known.
    #[error("{0}")]
    Internal(&'static str),
    /// 409: the request conflicts with one in flight; the text says which and what to do.
    #[error("{0}")]
    Conflict(&'static str),
    /// 409: the id a client chose is taken, or what it changes changed meanwhile; the text says
    /// what to do.
    #[error("{0}")]
    Taken(String),
    /// 405: the path exists, the method does not.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// 503: the store failed; Meta retries webhooks answered with 5xx.
    #[error("storage is unavailable; retry later")]
    Store(#[from] StoreError),
    /// Graph API failures of the drop-in `/send`, as the original answered them: 400 (Meta
    /// rejected; Meta's body verbatim), 502, 503 (not configured), 504.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A `/v1` Graph call other than a send (templates, media) that failed: the status follows
    /// Meta's error code as a send's does ([`GraphError::class`]: a throttle is a 429 with
    /// Retry-After, an expired token a 502, not the client's 400), and the body keeps Meta's
    /// fields with a hint.
    #[error(transparent)]
    Meta(GraphError),
    /// A `/v1` send that was not made or not accepted: the status follows Meta's error code
    /// ([`GraphError::class`]) and the body keeps Meta's fields with a hint.
    #[error(transparent)]
    Send(SendError),
}

impl From<SendError> for ApiError {
    /// A store failure before the send is the store's 503 (its cause logged, not sent).
    fn from(e: SendError) -> Self {
        match e {
            SendError::Store(e) => Self::Store(e),
            other => Self::Send(other),
        }
    }
}

impl ApiError {
    /// 422 for a query string that does not decode (a key given twice, bytes that are not
    /// UTF-8), with axum's reason.
    pub fn bad_query(rejection: &QueryRejection) -> Self {
        Self::Validation(vec![FieldError {
            loc: vec!["query".into()],
            msg: bounded(&rejection.body_text()).into_owned(),
            kind: "value_error",
        }])
    }

    /// 422 for the path parameter `name` when it does not decode (percent-encoded bytes that
    /// are not UTF-8), naming it.
    pub fn bad_path(name: &str, rejection: &PathRejection) -> Self {
        Self::Validation(vec![FieldError::parameter(
            "path",
            name,
            bounded(&rejection.body_text()),
        )])
    }

    /// The metric/log label of an error met while reading a request body.
    pub fn body_failure_reason(&self) -> &'static str {
        match self {
            Self::PayloadTooLarge | Self::TooLarge(_) => "payload_too_large",
            Self::BodyTimeout => "body_timeout",
            _ => "unreadable_body",
        }
    }

    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_)
            | Self::InvalidWebhook(_)
            | Self::UnreadableBody
            | Self::MalformedForm(_) => StatusCode::BAD_REQUEST,
            Self::BadSignature(_) | Self::Unauthorized | Self::WrongKey => StatusCode::UNAUTHORIZED,
            Self::CsrfMissing => StatusCode::FORBIDDEN,
            Self::TooManyWrongKeys(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Handshake(HandshakeError::MissingParameter(_)) => StatusCode::BAD_REQUEST,
            Self::Handshake(_) => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CrossOrigin(_) | Self::CrossSiteSession(_) => StatusCode::FORBIDDEN,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Store(_) | Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HostNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::Taken(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Graph(e) if e.is_client_rejection() => StatusCode::BAD_REQUEST,
            Self::Graph(
                GraphError::Rejected { .. }
                | GraphError::Unreachable { .. }
                | GraphError::Redirected { .. }
                | GraphError::TooLarge { .. }
                | GraphError::InvalidResponse { .. },
            ) => StatusCode::BAD_GATEWAY,
            Self::Graph(GraphError::NotConfigured(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Graph(GraphError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Self::Graph(GraphError::Paced { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Self::Meta(e) => graph_status(e),
            Self::Send(e) => send_status(e),
        }
    }

    /// When a throttled client may try again (the Retry-After header): Meta's throttles and
    /// pair rate on `/v1` calls, and the gateway's own send rate on every send.
    fn retry_after(&self) -> Option<std::time::Duration> {
        let graph = match self {
            Self::TooManyWrongKeys(wait) => return Some(*wait),
            Self::Meta(e) | Self::Send(SendError::Graph(e)) => e,
            Self::Graph(e @ GraphError::Paced { .. }) => e,
            _ => return None,
        };
        match graph.class() {
            Class::Throttled { wait } | Class::PairRate { wait } => Some(wait),
            _ => None,
        }
    }
}

/// The status of a failed `/v1` send.
fn send_status(e: &SendError) -> StatusCode {
    match e {
        SendError::UnknownNumber { .. } | SendError::WindowClosed { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        SendError::NotConfigured | SendError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        SendError::Graph(e) => graph_status(e),
    }
}

/// The status of a failed `/v1` Graph call, by what the client can do about it.
fn graph_status(e: &GraphError) -> StatusCode {
    match e {
        GraphError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
        GraphError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        GraphError::Rejected { .. } | GraphError::Paced { .. } => match e.class() {
            Class::Invalid => StatusCode::BAD_REQUEST,
            Class::Template => StatusCode::UNPROCESSABLE_ENTITY,
            Class::Throttled { .. } | Class::PairRate { .. } => StatusCode::TOO_MANY_REQUESTS,
            Class::Credentials | Class::Permission | Class::Upstream => StatusCode::BAD_GATEWAY,
        },
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The body of a failed `/v1` send: `{"detail": {"message", "outcome", "hint"?, and Meta's
/// "code", "error_subcode", "details", "fbtrace_id" when Meta answered}}`. `outcome` is
/// `not_sent` or `unknown` (the message may have reached Meta: do not send it again blindly).
fn send_detail(e: &SendError) -> serde_json::Value {
    let SendError::Graph(graph) = e else {
        let loc = match e {
            SendError::UnknownNumber { .. } => Some("from"),
            SendError::WindowClosed { .. } => Some("to"),
            _ => None,
        };
        return match loc {
            Some(field) => json!([FieldError::value(field, e)]),
            None => json!({"message": e.to_string(), "outcome": "not_sent"}),
        };
    };
    let outcome = if graph.outcome_unknown() {
        "unknown"
    } else {
        "not_sent"
    };
    let mut detail = graph_detail(graph);
    detail["outcome"] = outcome.into();
    if outcome == "unknown" && detail.get("hint").is_none() {
        detail["hint"] = "The message may have reached Meta: do not send it again blindly. Its status (a message_status event, or the conversation) will show whether it arrived; a retry with the same Idempotency-Key never sends twice.".into();
    }
    detail
}

/// The body of a failed `/v1` Graph call: `{"message", "hint"?, and Meta's "code",
/// "error_subcode", "type", "details", "fbtrace_id" when Meta answered}`.
fn graph_detail(graph: &GraphError) -> serde_json::Value {
    let mut detail = json!({});
    match graph.meta_error() {
        Some(meta) => {
            detail["message"] = meta
                .get("message")
                .cloned()
                .unwrap_or_else(|| graph.to_string().into());
            for key in ["code", "error_subcode", "type", "fbtrace_id"] {
                if let Some(v) = meta.get(key) {
                    detail[key] = v.clone();
                }
            }
            if let Some(details) = meta.pointer("/error_data/details") {
                detail["details"] = details.clone();
            }
        }
        None => detail["message"] = graph.to_string().into(),
    }
    if let Some(advice) = graph.meta_code().and_then(hint) {
        detail["hint"] = advice.into();
    }
    detail
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Validation(errors) => {
                let errors: Vec<FieldError> = errors
                    .iter()
                    .map(|e| FieldError {
                        msg: bounded(&e.msg).into_owned(),
                        ..e.clone()
                    })
                    .collect();
                json!({ "detail": errors })
            }
            // Meta's 4xx error object verbatim, as the original's HTTPException(detail=resp.json())
            // (its size is capped where it is read, graph::error::MAX_RESPONSE_BYTES).
            Self::Graph(e @ GraphError::Rejected { body, .. }) if e.is_client_rejection() => {
                let mut body = body.clone();
                if let (Some(hint), Some(object)) =
                    (e.meta_code().and_then(hint), body.as_object_mut())
                {
                    object.insert("hint".into(), hint.into());
                }
                json!({ "detail": body })
            }
            Self::Send(e) => json!({ "detail": send_detail(e) }),
            // Not configured is our own text, as every other 503's.
            Self::Meta(e) if !matches!(e, GraphError::NotConfigured(_)) => {
                json!({ "detail": graph_detail(e) })
            }
            // Our own texts, whose client values are bounded where they are made.
            Self::TooLarge(text) | Self::UnsupportedType(text) => json!({ "detail": text }),
            Self::Store(cause) => {
                tracing::error!(error.message = %bounded(&cause.to_string()), "store.error");
                match cause.public_detail() {
                    Some(reason) => json!({ "detail": format!("{self}: {reason}") }),
                    None => json!({ "detail": self.to_string() }),
                }
            }
            _ => json!({ "detail": bounded(&self.to_string()) }),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(wait) = self.retry_after() {
            // Whole seconds, rounded up: a client must not come back before the slot.
            let secs = wait.as_millis().div_ceil(1000).max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED && matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Longest echoed text, in characters, before [`bounded`] cuts it.
pub const MAX_ECHO_CHARS: usize = 200;

/// `text` if it has at most [`MAX_ECHO_CHARS`] characters; else its first [`MAX_ECHO_CHARS`]
/// characters (cut on a character boundary), `…` and the original length. For every text that
/// may echo a client's (or Meta's) value into a body or a log line.
pub fn bounded(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!(
            "{}… (truncated; {} characters in all)",
            &text[..cut],
            text.chars().count()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_kept_and_long_ones_cut_on_a_char_boundary() {
        assert_eq!(bounded("number is required"), "number is required");
        let exact = "é".repeat(MAX_ECHO_CHARS);
        assert_eq!(bounded(&exact), exact.as_str());
        let long = "é".repeat(3_000_000);
        let cut = bounded(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_ECHO_CHARS)));
        assert!(
            cut.ends_with("… (truncated; 3000000 characters in all)"),
            "{cut}"
        );
        assert!(cut.chars().count() < MAX_ECHO_CHARS + 50);
    }

    #[test]
    fn validation_messages_and_other_echoes_are_bounded_in_the_body() {
        let huge = "x".repeat(1_000_000);
        for error in [
            ApiError::Validation(vec![FieldError::value("limit", &huge)]),
            ApiError::MalformedJson(huge.clone()),
        ] {
            let response = error.into_response();
            let body = futures_body(response);
            assert!(body.len() < 1024, "{} bytes", body.len());
            assert!(body.contains("truncated"));
        }
    }

    fn futures_body(response: Response) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
