//! `GET /v1/ws`: the event stream over a WebSocket.
//!
//! Every event is one text message holding the envelope (see [`super`]); `reset` and `error` are
//! text messages with the same shape and no `id`. Resume with `?after=<id>`; the filters are the
//! SSE endpoint's ([`super::sse::StreamQuery`]). Heartbeats are pings (the client's pongs are not
//! required; a dead peer is found when a ping cannot be written). The server closes with
//! 1013 `lagged` when the client fell more than EVENT_CLIENT_BUFFER events behind (after an
//! `error` message, when the client can still take one), 1011 `store_unavailable`, and 1001 at
//! shutdown. Messages from the client are ignored (pings are answered).
//!
//! While API_KEY is unset, a browser page of any origin could open this socket to a gateway on
//! the user's machine (WebSockets are not subject to CORS), so [`crate::http::auth`] refuses a
//! handshake whose `Origin` is not this host and port (403). With API_KEY set a page cannot
//! present the key (browsers send no custom headers on a WebSocket handshake), and the inbox's
//! session cookie, which a browser would send, is accepted only from the gateway's own pages
//! ([`crate::http::auth`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::pump::{EndReason, Out, Subscription};
use super::sse::{StreamQuery, error_data, no_slot, reset_data};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;

/// The WebSocket path.
pub const PATH: &str = "/v1/ws";
/// Largest message accepted from a client (it has nothing to say but control frames).
const MAX_CLIENT_MESSAGE: usize = 4096;
/// How long a write to the client may take before the connection is dropped at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Streams the events over a WebSocket.
#[utoipa::path(get, path = "/v1/ws", tag = "events",
    params(StreamQuery),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol. Every event is a text message `{\"id\",\"type\",\"data\"}` (the same envelope as SSE); `reset` and `error` messages have no `id`. Resume with `?after=<id>`. Pings every EVENT_HEARTBEAT_SECS when idle. Closes with 1013 `lagged`, 1011 `store_unavailable` or 1001 at shutdown."),
        (status = 400, description = "Not a WebSocket handshake", body = String),
        (status = 401, description = "API key missing or wrong (when API_KEY is set)", body = crate::http::docs::Detail),
        (status = 403, description = "API_KEY is unset (or the inbox's cookie signs in) and a browser's Origin is not this host and port", body = crate::http::docs::Detail),
        (status = 422, description = "An invalid cursor or filter", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "MAX_EVENT_STREAMS streams are open, or the server is shutting down", body = crate::http::docs::Detail),
    ))]
pub async fn stream_events_ws(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let hub = &state.events;
    let (after, filter) = query.parse(hub, None)?;
    let subscription = Subscription::open(hub, after, filter).ok_or_else(no_slot)?;
    // Before the client learns it is connected: a reader woken from idle starts at the log's
    // newest event, so an event stored between a response and that start would be missed.
    subscription
        .following()
        .await
        .map_err(super::sse::not_following)?;
    let tracker = hub.tracker.clone();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| tracker.track_future(run(socket, subscription))))
}

/// Most messages written before one flush.
const COALESCE_MESSAGES: usize = 64;

/// The WebSocket message of a queue item; `Err` for the stream's end.
fn message_of(out: Out) -> Result<Message, EndReason> {
    match out {
        Out::Event(event) => Ok(Message::Text(event.ws_text())),
        Out::Reset { reason, cursor } => Ok(control("reset", reset_data(reason, cursor))),
        Out::Heartbeat => Ok(Message::Ping(Default::default())),
        Out::End(reason) => Err(reason),
    }
}

/// Writes the queue to the socket until the stream ends or the client leaves. Items already
/// queued behind one are written with it and flushed once (a client that fell behind catches up
/// without one flush per event).
async fn run(mut socket: WebSocket, subscription: Subscription) {
    let abort = CancellationToken::new();
    let mut queue = subscription.start(abort.clone());
    let end = loop {
        let first = tokio::select! {
            biased;
            // The client did not take its last items in time: drop the connection.
            () = abort.cancelled() => return,
            out = queue.recv() => match out {
                Some(out) => out,
                None => return,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by the protocol layer; anything else is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let mut batch = Vec::new();
        let mut end = None;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match message_of(out) {
                Ok(message) => batch.push(message),
                Err(reason) => {
                    end = Some(reason);
                    break;
                }
            }
            if batch.len() < COALESCE_MESSAGES {
                next = queue.try_recv().ok();
            }
        }
        let written = async {
            for message in batch {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        tokio::select! {
            () = abort.cancelled() => return,
            sent = written => if sent.is_err() { return },
        }
        if let Some(reason) = end {
            break reason;
        }
    };
    // The queue is done: the pump stops waiting for it.
    drop(queue);
    close(socket, end, &abort).await;
}

/// Ends the stream: an `error` message (except at shutdown), then a close frame, each bounded
/// by the pump's grace (`abort`) and [`CLOSE_TIMEOUT`].
async fn close(mut socket: WebSocket, reason: EndReason, abort: &CancellationToken) {
    let (code, text) = match reason {
        EndReason::Lagged => (close_code::AGAIN, "lagged"),
        EndReason::StoreUnavailable => (close_code::ERROR, "store_unavailable"),
        EndReason::Shutdown => (close_code::AWAY, "server shutting down"),
    };
    let mut messages = Vec::with_capacity(2);
    if reason != EndReason::Shutdown {
        messages.push(control("error", error_data(reason)));
    }
    messages.push(Message::Close(Some(CloseFrame {
        code,
        reason: text.into(),
    })));
    for message in messages {
        tokio::select! {
            () = abort.cancelled() => return,
            sent = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(message)) => {
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
    // Let the client answer the close (bounded), so the closing handshake completes.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A control message (`reset`, `error`): the envelope without an id.
fn control(kind: &str, data: serde_json::Value) -> Message {
    Message::Text(json!({ "type": kind, "data": data }).to_string().into())
}
