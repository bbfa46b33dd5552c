//! Client endpoints of the original: `POST /send` (text via the Graph API) and `POST /get`
//! (stored messages of one number). Both parse their bodies into domain types first and answer 422
//! naming the field and rule when that fails.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::{ContactId, MessageId, MessageText, OutboundText, PhoneNumber};
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError, bounded};
use crate::http::extract::JsonBody;
use crate::store::view::Since;
use crate::store::{Fetched, PagedRead};

/// Body of `POST /send`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"number": "919216598210", "text": "Hello"}))]
pub struct SendRequest {
    /// Recipient: 7-15 digits; `+`, spaces, dashes, dots and parentheses are ignored.
    pub number: String,
    /// Message text: 1-4096 characters, not only whitespace.
    pub text: String,
}

/// Body of `POST /get`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"number": "+919216598210", "limit": 0}))]
pub struct GetRequest {
    /// Whose messages: 7-15 digits (`+`, spaces, dashes, dots and parentheses are ignored), or the
    /// BSUID of a user whose phone number Meta withholds (e.g. `US.13491208655302741918`).
    pub number: String,
    /// How many of the most recent messages; 0 or omitted for all. Must be >= 0. With `since`:
    /// at most this many of the messages after it, the oldest first.
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only what is new since a poll: a message id (the messages stored after it) or a unix
    /// timestamp, as a number or a string of digits (the messages whose Meta timestamp is later).
    /// Looks through the number's 10,000 most recent messages.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=")]
    pub since: Option<serde_json::Value>,
}

/// `since` of `POST /get`, parsed.
fn parse_since(since: Option<&serde_json::Value>) -> Result<Option<Since>, FieldError> {
    let rule = "must be a message id or a unix timestamp";
    match since {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .map(|n| Some(Since::Timestamp(n)))
            .ok_or_else(|| FieldError::value("since", rule)),
        Some(serde_json::Value::String(s))
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse()
                .map(|n| Some(Since::Timestamp(n)))
                .map_err(|_| FieldError::value("since", rule))
        }
        Some(serde_json::Value::String(s)) => MessageId::parse(s)
            .map(|id| Some(Since::Message(id.as_str().to_owned())))
            .map_err(|e| FieldError::value("since", e)),
        Some(_) => Err(FieldError::value("since", rule)),
    }
}

/// Answer of `POST /get`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GetResponse {
    /// Number of messages returned.
    pub count: usize,
    /// Oldest first.
    #[schema(value_type = Vec<crate::http::docs::StoredMessage>)]
    pub messages: Vec<Box<RawValue>>,
}

impl IntoResponse for GetResponse {
    /// Serializes into a buffer sized for the messages up front: a page of stored messages is
    /// tens of kilobytes, and growing from axum's default 128 bytes costs about eight
    /// reallocations and copies per request.
    fn into_response(self) -> Response {
        let size = 32
            + self
                .messages
                .iter()
                .map(|m| m.get().len() + 1)
                .sum::<usize>();
        let mut body = Vec::with_capacity(size);
        serde_json::to_writer(&mut body, &self)
            .expect("counts and valid raw JSON always serialize");
        let mut response = body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Sends a text message through the WhatsApp Cloud API; answers with Meta's response.
#[utoipa::path(post, path = "/send", tag = "messages", request_body = SendRequest,
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Accepted by Meta (delivery is reported later by status webhooks)", body = crate::http::docs::SendResponse),
        (status = 400, description = "Meta rejected the message: `detail` is Meta's error object (message, code, error_subcode, error_data.details, fbtrace_id). Also malformed JSON (then `detail` is a text)", body = crate::http::docs::GraphErrorDetail),
        (status = 401, description = "API key missing or wrong (when API_KEY is set)", body = crate::http::docs::Detail),
        (status = 422, description = "A field is missing or breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 429, description = "The number's send rate (SEND_RATE_PER_SECOND) is taken for longer than GRAPH_TIMEOUT_SECS ahead: nothing was sent; Retry-After says when a slot is free", body = crate::http::docs::Detail),
        (status = 502, description = "The message was not accepted by Meta; `detail` says why: Graph API unreachable (DNS failure, connection refused or reset, TLS/certificate error; with GRAPH_API_BASE), Meta answered a server error (5xx; Meta's code and message in the text), answered a redirect (3xx, never followed), sent a response over 1 MiB, or an unreadable one", body = crate::http::docs::Detail),
        (status = 503, description = "ACCESS_TOKEN or PHONE_NUMBER_ID not configured", body = crate::http::docs::Detail),
        (status = 504, description = "Graph API did not answer within GRAPH_TIMEOUT_SECS", body = crate::http::docs::Detail),
    ))]
pub async fn send_message(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<SendRequest>,
) -> Result<Response, ApiError> {
    let number = PhoneNumber::parse(&request.number).map_err(|e| FieldError::value("number", e));
    let text = MessageText::parse(request.text).map_err(|e| FieldError::value("text", e));
    let message = match (number, text) {
        (Ok(to), Ok(text)) => OutboundText { to, text },
        (number, text) => {
            return Err(ApiError::Validation(
                number.err().into_iter().chain(text.err()).collect(),
            ));
        }
    };
    tracing::info!(to = %message.to.masked(), chars = message.text.as_str().chars().count(), "send.request");
    match state.sender.send_compat(&message).await {
        Ok(response) => {
            tracing::info!(to = %message.to.masked(), "send.success");
            let mut http = response.get().to_owned().into_response();
            http.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(http)
        }
        Err(e) => {
            // Bounded: Meta's (or a proxy's) text is echoed in the message; never the text sent.
            tracing::warn!(to = %message.to.masked(), outcome = e.outcome(), meta.code = e.meta_code(), error.message = %bounded(&e.to_string()), "send.error");
            Err(e.into())
        }
    }
}

/// Returns the stored messages of one number, oldest first.
#[utoipa::path(post, path = "/get", tag = "messages", request_body = GetRequest,
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Messages, oldest first; count 0 for an unknown number", body = GetResponse),
        (status = 400, description = "Malformed JSON, or a body that could not be read", body = crate::http::docs::Detail),
        (status = 401, description = "API key missing or wrong (when API_KEY is set)", body = crate::http::docs::Detail),
        (status = 422, description = "A field is missing or breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "Store unavailable", body = crate::http::docs::Detail),
    ))]
pub async fn get_messages(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<GetRequest>,
) -> Result<Response, ApiError> {
    let number = ContactId::parse(&request.number).map_err(|e| FieldError::value("number", e));
    let limit = match request.limit.unwrap_or(0) {
        n if n < 0 => Err(FieldError::value(
            "limit",
            format_args!("must be >= 0 (found {n})"),
        )),
        n => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let since = parse_since(request.since.as_ref());
    let (number, limit, since) = match (number, limit, since) {
        (Ok(number), Ok(limit), Ok(since)) => (number, limit, since),
        (number, limit, since) => {
            return Err(ApiError::Validation(
                number
                    .err()
                    .into_iter()
                    .chain(limit.err())
                    .chain(since.err())
                    .collect(),
            ));
        }
    };
    if let Some(since) = since {
        let messages = state
            .store
            .messages_since(&number, &since, limit)
            .await?
            .ok_or_else(|| {
                ApiError::Validation(vec![FieldError::value(
                    "since",
                    "is not among this number's 10,000 most recent messages; poll again without since",
                )])
            })?;
        tracing::info!(number = %number.masked(), count = messages.len(), since = true, "messages.fetch success");
        return Ok(GetResponse {
            count: messages.len(),
            messages,
        }
        .into_response());
    }
    let started = std::time::Instant::now();
    let fetched = state.store.recent_messages(&number, limit).await;
    state
        .metrics
        .observe_store("fetch", started.elapsed().as_secs_f64(), fetched.is_ok());
    match fetched? {
        Fetched::Complete(messages) => {
            tracing::info!(number = %number.masked(), count = messages.len(), "messages.fetch success");
            Ok(GetResponse {
                count: messages.len(),
                messages,
            }
            .into_response())
        }
        Fetched::Paged(read) => {
            tracing::info!(number = %number.masked(), count = read.count, streamed = true, "messages.fetch success");
            Ok(streamed_response(read))
        }
    }
}

/// A large answer, streamed page by page: the same bytes [`GetResponse`] would serialize
/// (`{"count":N,"messages":[...]}`, `count` first), with memory bounded by one page. If the store
/// fails part-way, the body is cut off (the client sees an incomplete response, never a
/// well-formed but short answer).
fn streamed_response(read: PagedRead) -> Response {
    enum Step {
        Head(PagedRead),
        Next(PagedRead),
        Done,
    }
    let stream = futures_util::stream::unfold(Step::Head(read), |step| async move {
        let (mut read, head) = match step {
            Step::Head(read) => (read, true),
            Step::Next(read) => (read, false),
            Step::Done => return None,
        };
        match read.next_page().await {
            Ok(page) => {
                let mut chunk = Vec::with_capacity(
                    32 + page
                        .iter()
                        .flatten()
                        .map(|m| m.get().len() + 1)
                        .sum::<usize>(),
                );
                if head {
                    chunk.extend_from_slice(
                        format!(r#"{{"count":{},"messages":["#, read.count).as_bytes(),
                    );
                }
                let Some(page) = page else {
                    chunk.extend_from_slice(b"]}");
                    return Some((Ok(Bytes::from(chunk)), Step::Done));
                };
                for (i, message) in page.iter().enumerate() {
                    if !(head && i == 0) {
                        chunk.push(b',');
                    }
                    chunk.extend_from_slice(message.get().as_bytes());
                }
                Some((Ok(Bytes::from(chunk)), Step::Next(read)))
            }
            Err(e) => {
                tracing::error!(error.message = %e, "messages.fetch stream_failed");
                Some((Err(e), Step::Done))
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
