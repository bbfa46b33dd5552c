//! `GET /healthz` (the process answers) and `GET /readyz` (the store takes writes), for Docker and
//! load balancers. Neither needs the API key.
//!
//! `/readyz` makes no store call: it reads the store's [`crate::store::Readiness`], which a
//! background probe (a real small write every second) and every save keep up to date. It cannot
//! queue behind slow reads or writes, and it tells the truth when writes fail (disk full, Redis out
//! of memory) or are refused (an evicting Redis, the database file deleted).

use std::sync::Arc;

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
    /// Why the store is unavailable (the last write's error, or why writes are refused); on a
    /// 503 from /readyz only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When Meta last delivered a webhook here, and a warning when that stopped; on /readyz
    /// only (a silence does not make the gateway unready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<crate::service::delivery::DeliveryReport>,
}

/// Liveness: always 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = HealthStatus)))]
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok",
        store: None,
        reason: None,
        webhooks: None,
    })
}

/// Readiness: 200 when the store's most recent write (a save or the once-a-second probe write)
/// succeeded and nothing makes it refuse writes; else 503 with the reason. Answered from memory,
/// without calling the store.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The store takes writes", body = HealthStatus),
    (status = 503, description = "The store's last write failed or writes are refused; `reason` says why", body = HealthStatus)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<HealthStatus>) {
    let store = Some(state.store.backend());
    let webhooks = Some(state.delivery.report(crate::store::view::now_secs()));
    match state.store.readiness().status() {
        Ok(()) => (
            StatusCode::OK,
            Json(HealthStatus {
                status: "ready",
                store,
                reason: None,
                webhooks,
            }),
        ),
        Err(reason) => {
            tracing::warn!(reason = %reason, "readyz.unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthStatus {
                    status: "unavailable",
                    store,
                    reason: Some(reason),
                    webhooks,
                }),
            )
        }
    }
}
