//! `GET /metrics`: Prometheus/OpenMetrics text. Behind API_KEY (scrapers send a bearer token) so
//! traffic figures are not public on an ngrok URL.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::http::AppState;

/// Renders every metric, refreshing the gauges that mirror other state first.
#[utoipa::path(get, path = "/metrics", tag = "health",
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "OpenMetrics text exposition", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "API key missing or wrong (when API_KEY is set)", body = crate::http::docs::Detail),
    ))]
pub async fn render_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state
        .metrics
        .store_queue_depth
        .set(state.store.queue_depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
