//! The HTTP edge: the axum router, its middleware stack and the shared [`AppState`].
//!
//! Handlers stay thin: extract, call a domain/store/graph function, map the error through
//! [`error::ApiError`]. Middleware, outermost first: request id (`x-request-id`, generated when
//! absent, echoed on the response) -> one tracing span per request (method, matched path, request
//! id; logs status and latency) -> load shedding (over CONCURRENCY_LIMIT in flight -> 503 at once)
//! -> request timeout (503). Body size (413) and whole-body deadline (408) are enforced where bodies
//! are read ([`extract::read_body`]).

pub mod auth;
pub mod docs;
pub mod error;
pub mod extract;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router, middleware};
use secrecy::SecretString;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::HttpSettings;
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
    /// Body size and time limits.
    pub body_limits: extract::BodyLimits,
}

/// Builds the router with every route and the middleware stack.
pub fn router(state: Arc<AppState>, http: &HttpSettings) -> Router {
    let client_routes = Router::new()
        .route("/send", post(messages::send_message))
        .route("/get", post(messages::get_messages))
        .route("/metrics", get(metrics::render_metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    let open_routes = Router::new()
        .route(
            "/webhook",
            get(webhook::verify_subscription).post(webhook::receive_webhook),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));

    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(on_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(HandleErrorLayer::new({
            let state = state.clone();
            move |error: BoxError| overloaded(state.clone(), error)
        }))
        .load_shed()
        // Global: Router::layer clones the stack per route, and a plain ConcurrencyLimit would
        // give each route its own semaphore.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            http.concurrency_limit,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            http.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(http.max_body_bytes));

    Router::new()
        .merge(client_routes)
        .merge(open_routes)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", docs::ApiDoc::openapi()))
        .fallback(not_found)
        .with_state(state)
        .layer(stack)
}

/// The request span. Only the path is recorded, never the query: the verification GET carries
/// `hub.verify_token` in it.
fn make_span(request: &Request) -> Span {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), path = %path, request_id = %request_id)
}

fn on_response(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        http.status_code = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request.finished"
    );
}

async fn overloaded(state: Arc<AppState>, error: BoxError) -> Response {
    let status = if error.is::<tower::load_shed::error::Overloaded>() {
        state.metrics.requests_shed.inc();
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    tracing::warn!(error.message = %error, "request.shed");
    (
        status,
        Json(serde_json::json!({ "detail": "server is at capacity; retry later" })),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "detail": "Not Found" })),
    )
        .into_response()
}
