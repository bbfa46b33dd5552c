//! OpenAPI document (`GET /openapi.json`) and Swagger UI (`GET /docs`), generated from the
//! handlers' annotations with utoipa, as FastAPI users are used to. The Swagger UI assets are
//! compiled in (`vendored` feature), so nothing is downloaded at build or run time.
//!
//! The schemas below exist only to document shapes that handlers build without a dedicated type
//! (error bodies, Meta's responses, stored messages kept as raw JSON).
//!
//! Statuses that come from the middleware or the body reader rather than from a handler are added
//! to every operation by [`CommonResponses`] (so a new route gets them too): 503 (over
//! CONCURRENCY_LIMIT or past REQUEST_TIMEOUT_SECS) everywhere; 408 and 413 where a body is read;
//! 415 (Content-Type not `application/json`) on every state-changing client operation; 403 (Host
//! not allowed while API_KEY is unset) and 429 (too many wrong API keys from the client's address,
//! [`crate::http::limiter`]) on every client endpoint (all but `/webhook`, `/healthz` and
//! `/readyz`).

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::events::{sse, ws};
use crate::http::{
    account, error::FieldError, health, media, messages, metrics, rules, send, v1, webhook,
    webhooks,
};

/// `{"detail": "<what went wrong>"}`.
#[derive(Serialize, ToSchema)]
pub struct Detail {
    /// Human-readable reason.
    pub detail: String,
}

/// 422 body: one entry per invalid field.
#[derive(Serialize, ToSchema)]
pub struct ValidationDetail {
    pub detail: Vec<FieldError>,
}

/// 400 body of /send: Meta's error JSON, verbatim, under `detail`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": {"error": {"message": "(#131030) Recipient phone number not in allowed list", "type": "OAuthException", "code": 131030, "error_subcode": 2655007, "error_data": {"messaging_product": "whatsapp", "details": "Recipient phone number not in allowed list"}, "fbtrace_id": "A1b2C3"}}}))]
pub struct GraphErrorDetail {
    /// `{"error": {message, type, code, error_subcode, error_data: {details}, fbtrace_id}}`.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Meta's answer to a send, returned verbatim.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"messaging_product": "whatsapp", "contacts": [{"input": "919216598210", "wa_id": "919216598210"}], "messages": [{"id": "wamid.HBgL..."}]}))]
pub struct SendResponse {
    pub messaging_product: String,
    #[schema(value_type = Vec<Object>)]
    pub contacts: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<serde_json::Value>,
}

/// A stored inbound message, as the FastAPI original stored it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "wamid.XXX", "from": "919216598210", "to": "15551713917", "timestamp": "1757936743", "type": "text", "body": "Hello", "raw": {"from": "919216598210", "id": "wamid.XXX", "timestamp": "1757936743", "type": "text", "text": {"body": "Hello"}}}))]
pub struct StoredMessage {
    /// WhatsApp message id (wamid).
    pub id: String,
    /// Sender, digits only.
    pub from: String,
    /// Business display number it was sent to.
    pub to: String,
    /// Unix seconds, as a string.
    pub timestamp: String,
    /// Message type (`text`, `image`, `interactive`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text, caption or reply title, or a short description such as `[sticker]`.
    pub body: String,
    /// Meta's original message object.
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "whatsapp-gateway", description = "WhatsApp Cloud API gateway: a drop-in replacement for the FastAPI + Redis server. Client endpoints need `Authorization: Bearer <API_KEY>` (or `X-API-Key`) when API_KEY is set."),
    paths(messages::send_message, messages::get_messages, send::post_message, send::read_message, send::typing, account::list_numbers, account::list_templates, media::upload, media::download, media::delete, webhook::verify_subscription, webhook::receive_webhook, health::healthz, health::readyz, metrics::render_metrics, v1::get_message, v1::list_conversations, v1::conversation_messages, v1::mark_read, v1::delete_conversation, sse::stream_events, ws::stream_events_ws, webhooks::create, webhooks::list, webhooks::get_one, webhooks::update, webhooks::delete, webhooks::rotate, webhooks::deliveries, webhooks::replay, rules::create, rules::list, rules::get_one, rules::update, rules::delete),
    components(schemas(Detail, ValidationDetail, GraphErrorDetail, SendResponse, StoredMessage, FieldError, crate::http::media::Uploaded)),
    modifiers(&SecuritySchemes, &CommonResponses),
    tags((name = "messages", description = "Send and read messages (client apps)"),
         (name = "webhook", description = "Called by Meta"),
         (name = "events", description = "The live event stream (SSE and WebSocket): every event the store records, as `{\"id\",\"type\",\"data\"}`"),
         (name = "webhooks", description = "Outgoing webhooks: events delivered to your apps, signed (Standard Webhooks), retried, in order per contact"),
         (name = "rules", description = "Auto-replies: rules that answer inbound messages (keywords, types, button replies, first message, outside opening hours) through the send path"),
         (name = "health", description = "Liveness and readiness"))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Adds the statuses every route (or every route of a kind) can answer; see the module docs.
struct CommonResponses;

const OVER_CAPACITY: &str = "Over capacity: more than CONCURRENCY_LIMIT requests in flight (answered at once), or the request ran past REQUEST_TIMEOUT_SECS";
const BODY_TOO_SLOW: &str =
    "The request body did not arrive within BODY_TIMEOUT_SECS (slow or stalled upload)";
const BODY_TOO_LARGE: &str = "The request body is larger than MAX_BODY_BYTES";
const NOT_JSON: &str =
    "Content-Type is not application/json (send -H 'Content-Type: application/json')";
const HOST_NOT_ALLOWED: &str = "Host header not allowed: while API_KEY is unset, client endpoints answer only requests addressed to ALLOWED_HOSTS (loopback names by default); add the host (e.g. a tunnel's name) or set API_KEY";

const TOO_MANY_WRONG_KEYS: &str = "Too many wrong API keys from this client address (10 a minute, sign-ins included): any key it presents is refused unchecked until Retry-After";

/// The endpoints outside the API key (and the Host check); every other path is a client
/// endpoint, Host-checked while API_KEY is unset.
const OPEN_PATHS: [&str; 3] = ["/webhook", "/healthz", "/readyz"];

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            let client = !OPEN_PATHS.contains(&path.as_str());
            // Whether each of those methods changes state (all but GET).
            let changes = [false, true, true, true, true];
            for (operation, changes) in operations.into_iter().zip(changes) {
                let Some(operation) = operation else { continue };
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                add_response(responses, "503", OVER_CAPACITY);
                if has_body {
                    add_response(responses, "408", BODY_TOO_SLOW);
                    add_response(responses, "413", BODY_TOO_LARGE);
                }
                // A state-changing client request must declare JSON (with a body always,
                // without one while API_KEY is unset: see `auth`).
                if client && changes {
                    add_response(responses, "415", NOT_JSON);
                }
                if client {
                    add_response(responses, "403", HOST_NOT_ALLOWED);
                    add_response(responses, "429", TOO_MANY_WRONG_KEYS);
                }
            }
        }
    }
}

/// Adds `status` with a `Detail` body, or appends `description` to the one the handler declared.
fn add_response(
    responses: &mut std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>>,
    status: &str,
    description: &str,
) {
    match responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if !existing.description.contains(description) {
                existing.description = format!("{}; or: {description}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Detail")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content)
                .build();
            responses.insert(status.to_owned(), RefOr::T(response));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::limiter::{MAX_WRONG_KEYS, WINDOW};

    #[test]
    fn the_documented_wrong_key_limit_is_the_limiters() {
        assert_eq!(
            WINDOW,
            std::time::Duration::from_secs(60),
            "the text says a minute"
        );
        assert!(
            TOO_MANY_WRONG_KEYS.contains(&format!("({MAX_WRONG_KEYS} a minute")),
            "{TOO_MANY_WRONG_KEYS}"
        );
    }
}
