//! `GET /v1/events`: the event stream as Server-Sent Events (`text/event-stream`).
//!
//! Each event is one frame: `id: <id>`, `event: <type>`, then the envelope (see [`super`]) as
//! `data:` lines, then a blank line. The envelope is one line unless the stored data itself holds
//! line breaks (JSON whitespace in Meta's raw objects); each line then gets its own `data:`
//! prefix, and an SSE client joins them with `\n`, as the format specifies.
//!
//! - **Resume**: the `Last-Event-ID` header (what `EventSource` sends when it reconnects) or
//!   `?after=<id>`; the header wins when both are present (the query of an `EventSource` URL
//!   stays as first given). The events after it still retained come first, then live ones.
//!   Without either, only live events.
//! - **`reset`** (`event: reset`, no `id`): the cursor is older than what the log keeps (or
//!   unknown); re-read state through the REST API; the stream continues with the oldest retained
//!   event.
//! - **Heartbeats**: a comment line (`: keep-alive`) after EVENT_HEARTBEAT_SECS without a frame.
//! - **`error`** (`event: error`, no `id`), last frame before the stream ends: `lagged` (the client
//!   fell more than EVENT_CLIENT_BUFFER events behind) or `store_unavailable`. At shutdown the
//!   stream just ends.
//! - Filters: `contact`, `phone_number_id`, `types` ([`StreamQuery`]).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::pump::{EndReason, Out, Subscription};
use super::{EventHub, EventId, Filter, MAX_CURSOR_LEN, MAX_FILTER_TYPES, StreamAbort};
use crate::domain::{ContactId, PhoneNumberId};
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};

/// The SSE path (the accept loop gives its requests a [`StreamAbort`]).
pub const PATH: &str = "/v1/events";

/// The header `EventSource` sends when it reconnects.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The heartbeat frame: an SSE comment, ignored by clients.
const HEARTBEAT: &[u8] = b": keep-alive\n\n";

/// Query parameters of `GET /v1/events` and `GET /v1/ws`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this event id: the events after it that are still retained come first.
    /// (SSE: the `Last-Event-ID` header wins over it.)
    pub after: Option<String>,
    /// Only events whose `data.contact.id` is this contact: a phone number in any form
    /// (`+91 92165-98210`) or a BSUID (`US.13491208655302741918`).
    pub contact: Option<String>,
    /// Only events whose `data.phone_number_id` is this business number id.
    pub phone_number_id: Option<String>,
    /// Only these event types, comma-separated (`message_incoming,conversation_updated`).
    pub types: Option<String>,
}

impl StreamQuery {
    /// Parses the filters and the cursor (`last_event_id` wins over `after`); 422 names every
    /// invalid parameter.
    pub(crate) fn parse(
        self,
        hub: &EventHub,
        last_event_id: Option<&str>,
    ) -> Result<(Option<EventId>, Filter), ApiError> {
        let mut errors = Vec::new();
        let mut invalid = |loc: [&str; 2], msg: String| {
            errors.push(FieldError {
                loc: loc.iter().map(|s| s.to_string()).collect(),
                msg,
                kind: "value_error",
            })
        };
        let (cursor_loc, cursor) = match last_event_id {
            Some(id) => (["header", "last-event-id"], Some(id.trim())),
            None => (["query", "after"], self.after.as_deref().map(str::trim)),
        };
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => match (c.len() <= MAX_CURSOR_LEN)
                .then(|| hub.log().parse_id(c))
                .flatten()
            {
                Some(id) => Some(id),
                None => {
                    invalid(
                        cursor_loc,
                        format!("{} must be {}", cursor_loc[1], hub.log().id_format()),
                    );
                    None
                }
            },
        };
        let mut filter = Filter::default();
        if let Some(contact) = self.contact.as_deref().filter(|c| !c.trim().is_empty()) {
            match ContactId::parse(contact) {
                Ok(contact) => filter.contact = Some(contact),
                Err(e) => invalid(["query", "contact"], format!("contact {e}")),
            }
        }
        if let Some(id) = self.phone_number_id.as_deref().filter(|c| !c.is_empty()) {
            match PhoneNumberId::parse(id.trim()) {
                Ok(id) => filter.phone_number_id = Some(id),
                Err(e) => invalid(["query", "phone_number_id"], format!("phone_number_id {e}")),
            }
        }
        if let Some(types) = self.types.as_deref() {
            let types: Vec<String> = types
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if types.len() > MAX_FILTER_TYPES || types.iter().any(|t| t.len() > 64) {
                invalid(
                    ["query", "types"],
                    format!(
                        "types must list at most {MAX_FILTER_TYPES} types of at most 64 characters"
                    ),
                );
            } else if !types.is_empty() {
                filter.types = Some(types);
            }
        }
        if errors.is_empty() {
            Ok((after, filter))
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// 503 when no stream slot is free.
pub(crate) fn no_slot() -> ApiError {
    ApiError::Overloaded(
        "too many event streams are open (MAX_EVENT_STREAMS), or the server is shutting down; retry later",
    )
}

/// A stream that could not start following the log (see [`super::pump::NotFollowing`]): 503.
pub(crate) fn not_following(reason: super::pump::NotFollowing) -> ApiError {
    match reason {
        super::pump::NotFollowing::Shutdown => no_slot(),
        super::pump::NotFollowing::Unavailable => ApiError::Overloaded(
            "the event log cannot be read now (the store does not answer); retry later",
        ),
    }
}

/// Streams the events as Server-Sent Events.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (sent by EventSource when it reconnects); wins over `after`")),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "The stream. Each event: `id: <id>`, `event: <type>`, `data: {\"id\",\"type\",\"data\"}` (the envelope; `data` is the stored JSON verbatim), blank line. Types: `message_incoming`, `message_outgoing`, `button_clicked`, `selection_made`, `reaction`, `message_edited`, `message_deleted`, `conversation_updated`, `message_status`, `conversation_deleted`, `webhook_error`, and Meta's other notifications (`meta_error`, `call_status`, `history`, `user_preferences`, one per other field such as `message_template_status_update`); ignore types you do not know. With a cursor the retained events after it come first; `event: reset` when the cursor is older than the retained window (re-read state through the REST API; the stream continues from the oldest retained event). `: keep-alive` every EVENT_HEARTBEAT_SECS when idle. `event: error` with reason `lagged` (the client fell more than EVENT_CLIENT_BUFFER events behind) or `store_unavailable` ends the stream."),
        (status = 401, description = "API key missing or wrong (when API_KEY is set)", body = crate::http::docs::Detail),
        (status = 422, description = "An invalid cursor or filter", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "MAX_EVENT_STREAMS streams are open, or the server is shutting down", body = crate::http::docs::Detail),
    ))]
pub async fn stream_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    abort: Option<Extension<StreamAbort>>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_query(&e))?;
    let hub = &state.events;
    let last_event_id = headers
        .get(&LAST_EVENT_ID)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (after, filter) = query.parse(hub, last_event_id)?;
    let subscription = Subscription::open(hub, after, filter).ok_or_else(no_slot)?;
    // Before the client learns it is connected: a reader woken from idle starts at the log's
    // newest event, so an event stored between a response and that start would be missed.
    subscription.following().await.map_err(not_following)?;
    let abort = abort.map_or_else(CancellationToken::new, |Extension(a)| a.0);
    let queue = subscription.start(abort);
    let frames = futures_util::stream::unfold(Some(queue), |queue| async move {
        let mut queue = queue?;
        let first = queue.recv().await?;
        let (chunk, more) = coalesce(first, &mut queue);
        let queue = more.then_some(queue);
        chunk.map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), queue))
    });
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx not to buffer the stream.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// Most frames written in one chunk, and the size past which no more are added.
const COALESCE_FRAMES: usize = 64;
const COALESCE_BYTES: usize = 64 * 1024;

/// The SSE bytes of `first` and of the items already queued behind it (up to [`COALESCE_FRAMES`]
/// or [`COALESCE_BYTES`]), so a client that fell behind catches up with one write instead of one
/// per event; and whether the stream goes on (`false` after its end). `None` bytes: the stream
/// ends with nothing more to send (shutdown).
fn coalesce(first: Out, queue: &mut tokio::sync::mpsc::Receiver<Out>) -> (Option<Bytes>, bool) {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let mut next = Some(first);
    let mut more = true;
    while let Some(out) = next.take() {
        let frame = match out {
            Out::Event(event) => event.sse_frame(),
            Out::Reset { reason, cursor } => control("reset", reset_data(reason, cursor)),
            Out::Heartbeat => Bytes::from_static(HEARTBEAT),
            Out::End(EndReason::Shutdown) => {
                more = false;
                break;
            }
            Out::End(reason) => {
                more = false;
                frames.push(control("error", error_data(reason)));
                break;
            }
        };
        size += frame.len();
        frames.push(frame);
        if frames.len() < COALESCE_FRAMES && size < COALESCE_BYTES {
            next = queue.try_recv().ok();
        }
    }
    let chunk = match frames.len() {
        0 => None,
        // A lone frame goes out as it is (shared by every client, not copied).
        1 => frames.pop(),
        _ => {
            let mut chunk = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            for frame in &frames {
                chunk.extend_from_slice(frame);
            }
            Some(chunk.freeze())
        }
    };
    (chunk, more)
}

/// The `data` of a `reset`.
pub(crate) fn reset_data(reason: &str, cursor: EventId) -> serde_json::Value {
    let detail = match reason {
        "events_missed" => {
            "this server missed events of the log (they were trimmed before it could read them)"
        }
        "unknown_cursor" => {
            "the cursor is not an id of this event log (another store, or a store that was reset)"
        }
        _ => "the events after the cursor are no longer retained (EVENT_RETENTION)",
    };
    json!({
        "reason": reason,
        "cursor": cursor.to_string(),
        "detail": format!("{detail}: re-read the state you keep (conversations, messages) through the REST API; the stream continues with the oldest retained event"),
    })
}

/// The `data` of an `error`.
pub(crate) fn error_data(reason: EndReason) -> serde_json::Value {
    json!({ "reason": reason.as_str(), "detail": reason.detail() })
}

/// A control frame (`reset`, `error`): the envelope without an id.
fn control(kind: &str, data: serde_json::Value) -> Bytes {
    let envelope = json!({ "type": kind, "data": data }).to_string();
    frame(None, kind, &envelope)
}

/// One SSE frame. `kind` loses any line break (it would end the field); the envelope gets one
/// `data:` line per line.
pub(crate) fn frame(id: Option<&str>, kind: &str, envelope: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(envelope.len() + kind.len() + 48);
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"event: ");
    for c in kind.chars() {
        if c == '\n' || c == '\r' {
            out.put_u8(b'_');
        } else {
            let mut buf = [0u8; 4];
            out.put_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out.put_u8(b'\n');
    // Line breaks: \r\n, \r or \n (only JSON whitespace can hold them).
    let mut rest = envelope;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.put_slice(b"data: ");
        out.put_slice(&rest.as_bytes()[..end]);
        out.put_u8(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.put_u8(b'\n');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_id_event_and_one_data_line_per_line() {
        let f = frame(Some("7"), "message_incoming", r#"{"a":1}"#);
        assert_eq!(
            &f[..],
            b"id: 7\nevent: message_incoming\ndata: {\"a\":1}\n\n"
        );
        let f = frame(None, "x\ny", "{\r\n\"a\":\n1\r}");
        assert_eq!(
            &f[..],
            b"event: x_y\ndata: {\ndata: \"a\":\ndata: 1\ndata: }\n\n"
        );
    }
}
