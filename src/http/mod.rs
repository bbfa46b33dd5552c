//! The HTTP edge: the axum router, its middleware stack and the shared [`AppState`].
//!
//! Handlers stay thin: extract, call a domain/store/graph function, map the error through
//! [`error::ApiError`]. Middleware, outermost first: request id (`x-request-id` when it is short
//! and safe, else generated; echoed on the response) -> one tracing span per request (method, path
//! without query, request id; logs status and latency) -> [`edge`] admission (bodies received
//! under their own budgets, then a processing slot per route class: webhook, client API; health
//! checks are never shed; `POST /v1/media` streamed through under an upload slot) and the request
//! timeout (503; MEDIA_UPLOAD_TIMEOUT_SECS for uploads) -> the router. Connections themselves
//! (header-read timeout, connection cap, HTTP/2 off by default) are [`crate::startup`]'s.

pub mod account;
pub mod auth;
pub mod docs;
pub mod edge;
pub mod error;
pub mod extract;
pub mod health;
pub mod inbox;
pub mod limiter;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod rules;
pub mod send;
pub mod session;
pub mod v1;
pub mod webhook;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use secrecy::SecretString;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::events;
use crate::graph::GraphClient;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::webhook::AppSecret;

/// What every handler can reach. Built once at start-up.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub graph: GraphClient,
    /// VERIFY_TOKEN.
    pub verify_token: Option<SecretString>,
    /// APP_SECRET, keyed for HMAC.
    pub app_secret: Option<AppSecret>,
    /// API_KEY.
    pub api_key: Option<SecretString>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Admission budgets and capacity ([`edge`]).
    pub edge: Arc<edge::Edge>,
    /// ALLOWED_HOSTS, checked on client endpoints while API_KEY is unset.
    pub allowed_hosts: crate::config::AllowedHosts,
    /// The conversation service.
    pub conversations: crate::service::conversations::Conversations,
    /// The send service.
    pub sender: crate::service::send::Sender,
    /// Numbers and templates as Meta describes them.
    pub account: crate::service::account::Account,
    /// The live event stream's reader and subscribers ([`crate::events`]).
    pub events: Arc<crate::events::EventHub>,
    /// The inbox's sign-in sessions ([`session`]).
    pub sessions: session::Sessions,
    /// Wrong API keys per client address, at sign-in and in API headers ([`limiter`]).
    pub wrong_keys: limiter::WrongKeys,
    /// When Meta last reached the webhook ([`crate::service::delivery`]).
    pub delivery: crate::service::delivery::DeliveryHealth,
    /// Outgoing webhook subscriptions ([`crate::service::webhooks`]).
    pub webhooks: crate::service::webhooks::Webhooks,
    /// The outgoing webhooks' dispatcher and worker ([`crate::outgoing`]).
    pub outgoing: crate::outgoing::Outgoing,
    /// Auto-reply rules ([`crate::service::rules`]).
    pub rules: crate::service::rules::Rules,
    /// The auto-reply engine ([`crate::rules`]).
    pub auto_replies: crate::rules::AutoReplies,
}

/// The whole HTTP application: the middleware stack around the router, as one cloneable service.
pub type AppService = BoxCloneSyncService<Request, Response, Infallible>;

/// Builds the application: every route, and the middleware stack around the router.
///
/// The stack wraps the router from outside rather than through `Router::layer`, which would wrap
/// (and clone, per request) every route separately: measured with callgrind, this saves several
/// boxed-service clones per request. The span therefore records the request path (never the
/// query) rather than axum's matched route; every route here is a fixed path, so they agree.
pub fn app(state: Arc<AppState>) -> AppService {
    let stack = ServiceBuilder::new()
        // The trace layer wraps response bodies; axum::serve wants its own Body type back.
        .map_response(|response: axum::http::Response<_>| response.map(axum::body::Body::new))
        .map_request(drop_unsafe_request_id)
        .layer(SetRequestIdLayer::x_request_id(SequentialRequestId::new()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(on_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        // The edge also applies REQUEST_TIMEOUT_SECS around the router (per route: an upload has
        // MEDIA_UPLOAD_TIMEOUT_SECS instead).
        .layer_fn({
            let state = state.clone();
            move |inner| edge::EdgeService::new(inner, state.clone())
        });
    BoxCloneSyncService::new(stack.service(router(state)))
}

/// The request id header, as a `HeaderName` (a string would be parsed on every lookup).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `x-request-id` taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Removes an `x-request-id` that is too long or holds anything but letters, digits and
/// `-_.:`, so a generated one replaces it: ids are echoed and logged, and a client must not be
/// able to put 60 KB or control characters into every log line.
fn drop_unsafe_request_id(mut request: Request) -> Request {
    if let Some(id) = request.headers().get(&X_REQUEST_ID)
        && !is_safe_request_id(id)
    {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

fn is_safe_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Every route, without the middleware stack.
fn router(state: Arc<AppState>) -> Router {
    let client_routes = Router::new()
        .route("/send", post(messages::send_message))
        .route("/get", post(messages::get_messages))
        .route("/metrics", get(metrics::render_metrics))
        .route("/v1/messages", post(send::post_message))
        .route("/v1/numbers", get(account::list_numbers))
        .route(edge::MEDIA_UPLOAD_PATH, post(media::upload))
        .route("/v1/media/{id}", get(media::download).delete(media::delete))
        .route("/v1/templates", get(account::list_templates))
        .route("/v1/messages/{id}", get(v1::get_message))
        .route("/v1/messages/{id}/read", post(send::read_message))
        .route("/v1/conversations/{contact}/typing", post(send::typing))
        .route("/v1/conversations", get(v1::list_conversations))
        .route(
            "/v1/conversations/{contact}/messages",
            get(v1::conversation_messages),
        )
        .route("/v1/conversations/{contact}/read", post(v1::mark_read))
        .route(
            "/v1/conversations/{contact}",
            axum::routing::delete(v1::delete_conversation),
        )
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get_one)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/rotate", post(webhooks::rotate))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/replay", post(webhooks::replay))
        .route("/v1/rules", post(rules::create).get(rules::list))
        .route(
            "/v1/rules/{id}",
            get(rules::get_one)
                .patch(rules::update)
                .delete(rules::delete),
        )
        .route(events::sse::PATH, get(events::sse::stream_events))
        .route(events::ws::PATH, get(events::ws::stream_events_ws))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    let inbox_routes = Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/inbox") }),
        )
        .route("/inbox", get(inbox::page))
        .route("/inbox/app.js", get(inbox::script))
        .route("/inbox/app.css", get(inbox::styles))
        .route(
            "/inbox/session",
            get(inbox::session)
                .post(inbox::sign_in)
                .delete(inbox::sign_out),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), inbox::guard));
    let open_routes = Router::new()
        .route(
            "/webhook",
            get(webhook::verify_subscription).post(webhook::receive_webhook),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    Router::new()
        .merge(client_routes)
        .merge(inbox_routes)
        .merge(open_routes)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", docs::ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Request ids `<8 hex: process>-<12 hex: sequence>`, e.g. `5f3a9c01-00000000002a`: unique per
/// process run (the prefix mixes the start time and pid) and in arrival order, which makes log
/// lines easy to follow. Cheaper than a random UUID per request (no RNG, one small format).
#[derive(Clone)]
struct SequentialRequestId {
    prefix: u32,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mixed = nanos ^ (u64::from(std::process::id()) << 32);
        let prefix = (mixed ^ (mixed >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        Self {
            prefix: prefix as u32,
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = [b'-'; 21];
        for i in 0..8 {
            id[i] = HEX[(self.prefix >> (28 - 4 * i)) as usize & 0xf];
        }
        for i in 0..12 {
            id[9 + i] = HEX[(n >> (44 - 4 * i)) as usize & 0xf];
        }
        axum::http::HeaderValue::from_bytes(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// The request span. Only the path is recorded ([`logged_path`]), never the query: the
/// verification GET carries `hub.verify_token` in it. The fields are computed only when the span
/// is enabled (the macro evaluates them lazily), so with `RUST_LOG=warn` a request pays no header
/// lookup for it.
fn make_span(request: &Request) -> Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %logged_path(request.uri().path()),
        request_id = %request
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    )
}

/// A path as logs show it: a contact in `/v1/conversations/{contact}...` is masked as every log
/// line masks numbers (full numbers and BSUIDs are personal data); anything there that is not a
/// contact id is hidden whole.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    const PREFIX: &str = "/v1/conversations/";
    let Some(rest) = path.strip_prefix(PREFIX).filter(|r| !r.is_empty()) else {
        return path.into();
    };
    let (contact, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let decoded = contact.replace("%2B", "+").replace("%2b", "+");
    let shown = crate::domain::identity::ContactId::parse(&decoded)
        .map_or_else(|_| "***".to_owned(), |c| c.masked());
    format!("{PREFIX}{shown}{tail}").into()
}

fn on_response(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        http.status_code = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request.finished"
    );
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::MethodNotAllowed
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "detail": "Not Found" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_mask_the_contact() {
        for (path, logged) in [
            (
                "/v1/conversations/919216598210",
                "/v1/conversations/***8210",
            ),
            (
                "/v1/conversations/%2B919216598210/messages",
                "/v1/conversations/***8210/messages",
            ),
            (
                "/v1/conversations/not a number/read",
                "/v1/conversations/***/read",
            ),
            ("/v1/conversations", "/v1/conversations"),
            ("/v1/conversations/", "/v1/conversations/"),
            ("/v1/messages/wamid.X/read", "/v1/messages/wamid.X/read"),
        ] {
            assert_eq!(logged_path(path), logged, "{path}");
        }
        let bsuid = logged_path("/v1/conversations/US.13491208655302741918/typing");
        assert!(!bsuid.contains("13491208655302741918"), "{bsuid}");
        assert!(bsuid.ends_with("/typing"), "{bsuid}");
    }

    #[test]
    fn only_short_safe_request_ids_are_kept() {
        for ok in ["abc", "5f3a9c01-00000000002a", "a.b_c:d", &"x".repeat(64)] {
            assert!(
                is_safe_request_id(&HeaderValue::from_str(ok).unwrap()),
                "{ok}"
            );
        }
        for bad in ["", "a b", "a\tb", "<script>", "a/b", &"x".repeat(65)] {
            assert!(
                !is_safe_request_id(&HeaderValue::from_str(bad).unwrap()),
                "{bad:?}"
            );
        }
    }
}
