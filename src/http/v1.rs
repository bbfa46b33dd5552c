//! The conversation API under `/v1` (behind API_KEY like `/send`): thin adapters from HTTP to
//! [`crate::service::conversations`]. Query parameters arrive as strings and are parsed by the
//! service, so a bad one is a 422 naming it, like a bad body field.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::service::conversations::{ConversationError, PageParams};
use crate::store::view::Page;

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> Self {
        match e {
            ConversationError::Invalid { place, field, rule } => {
                ApiError::Validation(vec![FieldError::parameter(place.as_str(), field, rule)])
            }
            ConversationError::NotFound(what) => ApiError::NotFound(what),
            ConversationError::Store(e) => ApiError::Store(e),
        }
    }
}

/// A JSON body that is already serialized.
fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"<name>": [items], "next_cursor": "..."|null}`.
fn page_json(name: &str, page: Page) -> Response {
    let size = page.items.iter().map(|i| i.len() + 1).sum::<usize>() + 64;
    let mut out = String::with_capacity(size);
    out.push_str("{\"");
    out.push_str(name);
    out.push_str("\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push_str("],\"next_cursor\":");
    match page.next_cursor {
        Some(c) => out.push_str(&serde_json::to_string(&c).expect("strings serialize")),
        None => out.push_str("null"),
    }
    out.push('}');
    json(out)
}

fn parse_limit(limit: Option<String>) -> Result<Option<i64>, ApiError> {
    limit
        .map(|l| {
            l.parse::<i64>().map_err(|_| {
                ApiError::Validation(vec![FieldError::query("limit", "must be an integer")])
            })
        })
        .transpose()
}

/// Query of `GET /v1/messages/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MessageParams {
    /// The business number, when the same id is stored under several.
    pub phone_number_id: Option<String>,
}

/// One message (either direction) with its current status and status history.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Meta's message id (wamid)"), MessageParams),
    responses(
        (status = 200, description = "The message: id, direction, phone_number_id, contact, timestamp, type, body, raw, status, statuses"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No message with this id", body = crate::http::docs::Detail),
        (status = 422, description = "A parameter breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "The store is unavailable", body = crate::http::docs::Detail),
    ),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<MessageParams>,
) -> Result<Response, ApiError> {
    Ok(json(
        state
            .conversations
            .message(&id, params.phone_number_id.as_deref())
            .await?,
    ))
}

/// Query of `GET /v1/conversations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConversationsParams {
    /// Only this business number's conversations.
    pub phone_number_id: Option<String>,
    /// `true`: only conversations with unread messages.
    pub unread: Option<String>,
    /// Search text: part of the contact's number (any form), BSUID, name or username.
    pub q: Option<String>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Conversations, most recent activity first, with unread counts and the 24-hour window.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", params(ConversationsParams),
    responses(
        (status = 200, description = "{\"conversations\": [{phone_number_id, contact, last_message, last_message_id, last_message_at, message_count, unread_count, window_expires_at}], \"next_cursor\"}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "A parameter breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "The store is unavailable", body = crate::http::docs::Detail),
    ),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list_conversations(
    State(state): State<Arc<AppState>>,
    ApiQuery(params): ApiQuery<ConversationsParams>,
) -> Result<Response, ApiError> {
    let unread = match params.unread.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::query(
                "unread",
                "must be true or false",
            )]));
        }
    };
    let page = state
        .conversations
        .list(
            params.phone_number_id.as_deref(),
            unread,
            params.q.as_deref(),
            PageParams {
                limit: parse_limit(params.limit)?,
                cursor: params.cursor,
            },
        )
        .await?;
    Ok(page_json("conversations", page))
}

/// Query of `GET /v1/conversations/{contact}/messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MessagesParams {
    /// The business number (default PHONE_NUMBER_ID).
    pub phone_number_id: Option<String>,
    /// Older messages than this cursor (`next_cursor` of a page).
    pub before: Option<String>,
    /// Newer messages than this cursor.
    pub after: Option<String>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<String>,
    /// Only messages of this Meta type (`text`, `image`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A conversation's messages in both directions, ordered by Meta's timestamp, oldest first
/// within a page; without a cursor the most recent ones.
#[utoipa::path(get, path = "/v1/conversations/{contact}/messages", tag = "conversations",
    params(("contact" = String, Path, description = "A phone number in any accepted form, or a BSUID"), MessagesParams),
    responses(
        (status = 200, description = "{\"messages\": [...], \"next_cursor\"}: pass next_cursor back as before (or after) for the next page"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "A parameter breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "The store is unavailable", body = crate::http::docs::Detail),
    ),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn conversation_messages(
    State(state): State<Arc<AppState>>,
    ApiPath(contact): ApiPath<String>,
    ApiQuery(params): ApiQuery<MessagesParams>,
) -> Result<Response, ApiError> {
    let page = state
        .conversations
        .messages(
            &contact,
            params.phone_number_id.as_deref(),
            params.before,
            params.after,
            parse_limit(params.limit)?,
            params.kind,
        )
        .await?;
    Ok(page_json("messages", page))
}

/// Query of `POST /v1/conversations/{contact}/read`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReadParams {
    /// The business number (default PHONE_NUMBER_ID).
    pub phone_number_id: Option<String>,
}

/// Marks a conversation read: its unread count becomes 0 (a `conversation_updated` event says
/// so), and Meta's read receipt goes out for the contact's latest message (the answer says
/// whether it did). While API_KEY is unset, the request must carry `Content-Type: application/json`, so a
/// web page cannot trigger it with a plain form.
#[utoipa::path(post, path = "/v1/conversations/{contact}/read", tag = "conversations",
    params(("contact" = String, Path, description = "A phone number in any accepted form, or a BSUID"), ReadParams),
    responses(
        (status = 200, description = "The conversation after the change, with `read_receipt`: whether Meta's read receipt for the contact's latest message was sent (`{sent: true, message_id}` or `{sent: false, reason}`)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such conversation", body = crate::http::docs::Detail),
        (status = 415, description = "API_KEY is unset and the request is not declared as JSON", body = crate::http::docs::Detail),
        (status = 422, description = "A parameter breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "The store is unavailable", body = crate::http::docs::Detail),
    ),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn mark_read(
    State(state): State<Arc<AppState>>,
    ApiPath(contact): ApiPath<String>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    let (contact, marked) = state
        .conversations
        .mark_read(&contact, params.phone_number_id.as_deref())
        .await?;
    let receipt = read_receipt(
        &state,
        &contact,
        params.phone_number_id.as_deref(),
        marked.last_inbound,
    )
    .await;
    // `{...conversation, "read_receipt": {...}}`
    let mut body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&marked.json)
            .map_err(|_| ApiError::Internal("the stored conversation does not read as JSON"))?;
    body.insert("read_receipt".into(), receipt);
    Ok(axum::Json(body).into_response())
}

/// Meta's read receipt for the conversation's latest inbound message (`last`, read with the
/// local mark), after the local mark: `{"sent": true, "message_id"}` or `{"sent": false,
/// "reason"}` (the local mark stands either way; the reason says why the user's phone was not
/// told).
async fn read_receipt(
    state: &AppState,
    contact: &crate::domain::ContactId,
    phone_number_id: Option<&str>,
    last: Option<crate::store::view::LastInbound>,
) -> serde_json::Value {
    let not_sent = |reason: String| serde_json::json!({"sent": false, "reason": reason});
    let number = match state.sender.number(phone_number_id) {
        Ok(number) => number,
        Err(e) => return not_sent(e.to_string()),
    };
    let latest = match state.sender.inbound_id(&number.id, contact, last).await {
        Ok(Some(id)) => id,
        Ok(None) => return not_sent("no message from the contact is stored".into()),
        Err(e) => return not_sent(format!("the store failed: {e}")),
    };
    match state.sender.read_receipt(number, &latest, false).await {
        Ok(()) => serde_json::json!({"sent": true, "message_id": latest.as_str()}),
        Err(e) => {
            tracing::warn!(
                outcome = e.outcome(),
                meta.code = e.meta_code(),
                "read_receipt.error"
            );
            not_sent(crate::http::error::bounded(&e.to_string()).into_owned())
        }
    }
}

/// Deletes a conversation: its counters, and the records and statuses of its messages for this
/// business number. Their ids still deduplicate Meta's retries, so a deleted conversation does
/// not come back from a retry; the FastAPI list (`/get`) is kept. While API_KEY is unset the
/// request must carry `Content-Type: application/json`.
#[utoipa::path(delete, path = "/v1/conversations/{contact}", tag = "conversations",
    params(("contact" = String, Path, description = "A phone number in any accepted form, or a BSUID"), ReadParams),
    responses(
        (status = 200, description = "{\"deleted\": true, \"messages_deleted\": n}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such conversation", body = crate::http::docs::Detail),
        (status = 415, description = "API_KEY is unset and the request is not declared as JSON", body = crate::http::docs::Detail),
        (status = 422, description = "A parameter breaks a rule", body = crate::http::docs::ValidationDetail),
        (status = 503, description = "The store is unavailable", body = crate::http::docs::Detail),
    ),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn delete_conversation(
    State(state): State<Arc<AppState>>,
    ApiPath(contact): ApiPath<String>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    let deleted = state
        .conversations
        .delete(&contact, params.phone_number_id.as_deref())
        .await?;
    Ok(json(format!(
        "{{\"deleted\":true,\"messages_deleted\":{deleted}}}"
    )))
}
