//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers), for Docker and load
//! balancers. Neither needs the API key.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::http::AppState;

/// Health or readiness.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthStatus {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Store backend (`redis` or `embedded`); on /readyz only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
}

/// Liveness: always 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = HealthStatus)))]
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok",
        store: None,
    })
}

/// Readiness: 200 when the store answers within 2 s, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The store is reachable", body = HealthStatus),
    (status = 503, description = "The store is not reachable", body = HealthStatus)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<HealthStatus>) {
    let store = Some(state.store.backend());
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(HealthStatus {
                status: "ready",
                store,
            }),
        ),
        outcome => {
            let cause = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 2s".to_owned(),
            };
            tracing::warn!(error.message = %cause, "readyz.unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthStatus {
                    status: "unavailable",
                    store,
                }),
            )
        }
    }
}
