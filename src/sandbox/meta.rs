//! The sandbox's Meta: a local double of the Graph API calls the gateway makes, which answers as
//! Meta does (wamids, Meta's error objects) and then plays Meta's side of the conversation: the
//! `sent`, `delivered` and `read` status webhooks of every message, signed with the app secret,
//! and the simulated customer's answer ([`super::customers`]).
//!
//! Served under `/v22.0` (the gateway's GRAPH_API_BASE points here): `POST /{phone_number_id}/messages`
//! (sends, read receipts, typing), `POST /{phone_number_id}/media` (uploads, kept in memory up to
//! [`MAX_MEDIA_BYTES`] in all), `GET /{media_id}` and `DELETE /{media_id}`, `GET /{phone_number_id}`
//! (the number), `GET /{waba_id}/message_templates`; files at `/media-files/{id}`. Any other
//! call is answered with Meta's "unsupported request" error, so a gateway bug shows as Meta would
//! show it. A media id the double has not seen (the customers' photos) is served as a small
//! picture.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::simulate::payload::{Business, Customer, Factory, Status};
use crate::simulate::{Receiver, wire};

/// The access token the sandbox's gateway sends (not a secret: nothing real is behind it).
pub const ACCESS_TOKEN: &str = "sandbox-access-token";
/// Most bytes of uploads kept at once; older ones are dropped past it.
pub const MAX_MEDIA_BYTES: usize = 32 * 1024 * 1024;
/// The picture served for media ids the double did not receive.
const PHOTO: &[u8] = include_bytes!("../../assets/sandbox/photo.png");

/// How long Meta's side takes for each step after a send.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Until the `sent` status.
    pub sent: Duration,
    /// Until `delivered`.
    pub delivered: Duration,
    /// Until `read`.
    pub read: Duration,
    /// Until the customer answers.
    pub reply: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            sent: Duration::from_millis(400),
            delivered: Duration::from_millis(1200),
            read: Duration::from_millis(2500),
            reply: Duration::from_millis(3500),
        }
    }
}

/// Uploaded files, oldest first, at most [`MAX_MEDIA_BYTES`] of them (ids and types counted).
#[derive(Default)]
struct Shelf {
    files: std::collections::VecDeque<(String, String, Bytes)>,
    bytes: usize,
}

impl Shelf {
    fn size((id, mime, bytes): &(String, String, Bytes)) -> usize {
        id.len() + mime.len() + bytes.len()
    }

    /// Keeps a file, dropping the oldest ones past the limit.
    fn put(&mut self, file: (String, String, Bytes)) {
        self.bytes += Self::size(&file);
        self.files.push_back(file);
        while self.bytes > MAX_MEDIA_BYTES {
            let Some(old) = self.files.pop_front() else {
                break;
            };
            self.bytes -= Self::size(&old);
        }
    }

    /// The type and bytes of file `id`.
    fn get(&self, id: &str) -> Option<(&str, &Bytes)> {
        self.files
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, mime, bytes)| (mime.as_str(), bytes))
    }

    fn remove(&mut self, id: &str) {
        if let Some(at) = self.files.iter().position(|(i, _, _)| i == id)
            && let Some(file) = self.files.remove(at)
        {
            self.bytes -= Self::size(&file);
        }
    }
}

/// The double's state.
pub struct Double {
    pub business: Business,
    factory: Mutex<Factory>,
    /// The gateway's webhook, known once it listens.
    pub webhook: OnceLock<Receiver>,
    /// Where the double itself listens (for media URLs).
    pub base: OnceLock<String>,
    media: Mutex<Shelf>,
    pace: Pace,
}

impl std::fmt::Debug for Double {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Double")
            .field("business", &self.business)
            .finish_non_exhaustive()
    }
}

impl Double {
    /// A double for `business`, pacing Meta's side with `pace`.
    pub fn new(business: Business, pace: Pace) -> Arc<Self> {
        Arc::new(Self {
            factory: Mutex::new(Factory::new(business.clone())),
            business,
            webhook: OnceLock::new(),
            base: OnceLock::new(),
            media: Mutex::new(Shelf::default()),
            pace,
        })
    }

    /// A fresh wamid, a customer's message or a notification, from the shared factory.
    pub fn with_factory<T>(&self, f: impl FnOnce(&mut Factory) -> T) -> T {
        f(&mut self.factory.lock().expect("not poisoned"))
    }

    /// Posts `notification` to the gateway, signed, as Meta would; failures are logged.
    pub async fn deliver(&self, notification: &Value) {
        let Some(webhook) = self.webhook.get() else {
            return;
        };
        let answer = webhook.post(&wire::to_wire(notification)).await;
        if !answer.accepted() {
            tracing::warn!(answer = ?answer, "sandbox.webhook_refused");
        }
    }
}

/// The routes of the double.
pub fn router(double: Arc<Double>) -> Router {
    Router::new()
        .route("/v22.0/{node}/messages", post(messages))
        .route("/v22.0/{node}/media", post(upload))
        .route("/v22.0/{node}", get(node).delete(delete_media))
        .route("/v22.0/{node}/message_templates", get(templates))
        .route("/media-files/{id}", get(file))
        // Every route wants the token; the fallbacks answer without one, as Meta does.
        .route_layer(axum::middleware::from_fn(require_token))
        .fallback(unsupported)
        .method_not_allowed_fallback(unsupported)
        .layer(DefaultBodyLimit::max(MAX_MEDIA_BYTES))
        .with_state(double)
}

/// Meta's error object with HTTP status `status`.
fn meta_error(status: StatusCode, code: i64, message: &str, details: Option<&str>) -> Response {
    let mut error = json!({
        "message": message, "type": "OAuthException", "code": code,
        "fbtrace_id": "AsandboxTRACE",
    });
    if let Some(details) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// Meta's answer for an id it does not know.
fn no_such_object(method: &str, node: &str) -> Response {
    meta_error(
        StatusCode::BAD_REQUEST,
        100,
        &format!("Unsupported {method} request. Object with ID '{node}' does not exist"),
        None,
    )
}

async fn unsupported() -> Response {
    meta_error(
        StatusCode::BAD_REQUEST,
        100,
        "Unsupported request - method type: not supported by the sandbox",
        None,
    )
}

/// Meta's "(#100) Invalid parameter" error, saying what is wrong in `details`.
fn invalid_parameter(details: &str) -> Response {
    meta_error(
        StatusCode::BAD_REQUEST,
        100,
        "(#100) Invalid parameter",
        Some(details),
    )
}

/// Passes requests with the right bearer token on; answers Meta's error to a missing or wrong one.
async fn require_token(request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(ACCESS_TOKEN) {
        return meta_error(
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            None,
        );
    }
    next.run(request).await
}

/// `POST /{phone_number_id}/messages`: a send, a read receipt or a typing indicator.
async fn messages(
    State(double): State<Arc<Double>>,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    if node != double.business.phone_number_id {
        return no_such_object("post", &node);
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return invalid_parameter("the body is not JSON");
    };
    if message["status"] == "read" {
        return axum::Json(json!({"success": true})).into_response();
    }
    if message["messaging_product"] != "whatsapp" {
        return invalid_parameter("messaging_product must be \"whatsapp\"");
    }
    let to = match (message["to"].as_str(), message["recipient"].as_str()) {
        (Some(to), None) | (None, Some(to)) if !to.is_empty() => to.to_owned(),
        _ => return invalid_parameter("exactly one of to or recipient is required"),
    };
    let Some(kind) = message["type"].as_str() else {
        return invalid_parameter("type is required");
    };
    if !message[kind].is_object() {
        return invalid_parameter(&format!("the {kind} object is required"));
    }
    // One of the cast when it is one (their names on statuses and answers), else a stranger.
    let customer = super::customers::known(&if to.bytes().all(|b| b.is_ascii_digit()) {
        Customer::with_phone(to.clone())
    } else {
        Customer::bsuid_only(to.clone())
    });
    let id = double.with_factory(|f| f.wamid(&customer, true));
    let contact = if customer.phone.is_some() {
        json!({"input": to, "wa_id": to})
    } else {
        json!({"input": to, "user_id": to})
    };
    let mut sent = json!({"id": id});
    if kind == "template" {
        sent["message_status"] = json!("accepted");
    }
    tokio::spawn(play_meta(double, customer, id, message));
    axum::Json(json!({"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]}))
        .into_response()
}

/// Meta's side after a send: the three statuses, then the customer's answer.
async fn play_meta(double: Arc<Double>, customer: Customer, id: String, message: Value) {
    let pace = double.pace;
    let mut waited = Duration::ZERO;
    for (status, at) in [
        (Status::Sent, pace.sent),
        (Status::Delivered, pace.delivered),
        (Status::Read, pace.read),
    ] {
        tokio::time::sleep(at.saturating_sub(waited)).await;
        waited = at;
        let notification = double.with_factory(|f| {
            let now = f.now();
            let status = f.status(&id, &customer, &status, now);
            f.statuses_notification(std::slice::from_ref(&customer), vec![status])
        });
        double.deliver(&notification).await;
    }
    if let Some(answer) = super::customers::answer_to(&message, &id) {
        tokio::time::sleep(pace.reply.saturating_sub(waited)).await;
        let business = double.business.display_phone_number.clone();
        let notification = double.with_factory(|f| {
            let mut m = f.message(&customer, &answer);
            // An answer quotes the message it answers, as Meta's do (a tapped button's context
            // is the interactive message).
            m["context"] = json!({"from": business, "id": id});
            f.messages_notification(std::slice::from_ref(&customer), vec![m])
        });
        double.deliver(&notification).await;
    }
}

/// `POST /{phone_number_id}/media`: keeps the `file` part and answers a media id.
async fn upload(State(double): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else {
        return invalid_parameter("a multipart form is required");
    };
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() != Some("file") {
            continue;
        }
        let mime = field.content_type().map_or_else(
            || "application/octet-stream".to_owned(),
            ToString::to_string,
        );
        let Ok(bytes) = field.bytes().await else {
            break;
        };
        let id = double.with_factory(|f| f.rng().digits(16));
        double
            .media
            .lock()
            .expect("not poisoned")
            .put((id.clone(), mime, bytes));
        return axum::Json(json!({ "id": id })).into_response();
    }
    invalid_parameter("the file field is required")
}

/// `GET /{node}`: the business number, or a media file's description.
async fn node(State(double): State<Arc<Double>>, Path(node): Path<String>) -> Response {
    if node == double.business.phone_number_id {
        return axum::Json(json!({
            "id": node,
            "display_phone_number": double.business.display_phone_number,
            "verified_name": "Sandbox Shop",
            "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_1K",
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }))
        .into_response();
    }
    if node.is_empty() || !node.bytes().all(|b| b.is_ascii_digit()) {
        return no_such_object("get", &node);
    }
    let (mime, size) = {
        let media = double.media.lock().expect("not poisoned");
        media
            .get(&node)
            .map_or(("image/png".to_owned(), PHOTO.len()), |(mime, b)| {
                (mime.to_owned(), b.len())
            })
    };
    let base = double.base.get().cloned().unwrap_or_default();
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "url": format!("{base}/media-files/{node}"),
        "mime_type": mime,
        "file_size": size,
        "id": node,
    }))
    .into_response()
}

/// `DELETE /{media_id}`.
async fn delete_media(State(double): State<Arc<Double>>, Path(node): Path<String>) -> Response {
    double.media.lock().expect("not poisoned").remove(&node);
    axum::Json(json!({"success": true})).into_response()
}

/// `GET /media-files/{id}`: the bytes (a picture for ids the double did not receive).
async fn file(State(double): State<Arc<Double>>, Path(id): Path<String>) -> Response {
    let found = double
        .media
        .lock()
        .expect("not poisoned")
        .get(&id)
        .map(|(mime, bytes)| (mime.to_owned(), bytes.clone()));
    let (mime, bytes) = found.unwrap_or_else(|| ("image/png".into(), Bytes::from_static(PHOTO)));
    ([(header::CONTENT_TYPE, mime)], bytes).into_response()
}

/// `GET /{waba_id}/message_templates`: two approved templates, one with a parameter.
async fn templates(State(double): State<Arc<Double>>, Path(node): Path<String>) -> Response {
    if node != double.business.waba_id {
        return no_such_object("get", &node);
    }
    axum::Json(json!({"data": [
        {"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
         "components": [{"type": "BODY", "text": "Your order {{1}} ships today. Reply STOP to opt out."}]},
        {"name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
         "components": [{"type": "HEADER", "format": "TEXT", "text": "Hello World"},
                        {"type": "BODY", "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp message notification from the Cloud API, hosted by Meta."}]}
    ], "paging": {"cursors": {"before": "", "after": ""}}}))
    .into_response()
}
