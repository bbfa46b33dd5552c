//! `/v1/webhooks` (behind API_KEY): thin adapters from HTTP to [`crate::service::webhooks`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{ApiPath, ApiQuery, JsonBody};
use crate::outgoing::subscription::{CreateRequest, UpdateRequest};
use crate::service::webhooks::{ReplayRequest, WebhookError};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(fields) => ApiError::Validation(
                fields
                    .into_iter()
                    .map(|(field, rule)| FieldError::value(field, rule))
                    .collect(),
            ),
            WebhookError::NotFound(what) => ApiError::NotFound(what),
            WebhookError::Managed => ApiError::Conflict(crate::service::webhooks::MANAGED),
            WebhookError::Busy => ApiError::Conflict(crate::service::webhooks::BUSY),
            WebhookError::Store(e) => ApiError::Store(e),
        }
    }
}

/// Creates a subscription: `{"url", "events"?, "phone_number_id"?, "secret"?, "description"?,
/// "enabled"?}`. The answer holds the signing `secret` (`whsec_...`), shown only here.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = Object, description = "url (required), events (list of event types; absent or null: all), phone_number_id, secret (whsec_...; generated when absent), description, enabled"),
    responses(
        (status = 201, description = "The subscription, with its secret (shown once)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "A field breaks a rule (named)", body = crate::http::docs::ValidationDetail),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    let view = state.webhooks.create(request).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Every subscription, with its backlog (never the secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "{\"data\": [subscriptions]}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
    ))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(Json(state.webhooks.list().await?).into_response())
}

/// One subscription with its backlog (`pending_deliveries`, `dead_deliveries`).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id (wh_...)")),
    responses(
        (status = 200, description = "The subscription"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such subscription", body = crate::http::docs::Detail),
    ))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.webhooks.get(&id).await?).into_response())
}

/// Changes a subscription: any of `url`, `events`, `phone_number_id`, `description` (null
/// clears the last three) and `enabled` (true resumes a disabled one).
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id")),
    request_body(content = Object, description = "url, events, phone_number_id, description, enabled"),
    responses(
        (status = 200, description = "The subscription after the change"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such subscription", body = crate::http::docs::Detail),
        (status = 409, description = "The subscription comes from config.env and the change is more than `enabled`, or other requests kept changing it while this one was applied (nothing applied; send it again)", body = crate::http::docs::Detail),
        (status = 422, description = "A field breaks a rule (named)", body = crate::http::docs::ValidationDetail),
    ))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<UpdateRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.webhooks.update(&id, request).await?).into_response())
}

/// Deletes a subscription with its waiting deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such subscription", body = crate::http::docs::Detail),
        (status = 409, description = "The subscription comes from config.env (unset WEBHOOK_URL to remove it)", body = crate::http::docs::Detail),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.webhooks.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new signing secret (shown once); for 24 hours deliveries carry a second signature made
/// with the old one.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "{\"id\", \"secret\", \"previous_secret_valid_until\"}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such subscription", body = crate::http::docs::Detail),
        (status = 409, description = "The subscription comes from config.env (change WEBHOOK_SECRET instead), or other requests kept changing it while this one was applied (nothing applied; send it again)", body = crate::http::docs::Detail),
    ))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.webhooks.rotate(&id).await?).into_response())
}

/// Query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveriesParams {
    /// Attempts to show, newest first (1-1000, default 100).
    pub limit: Option<String>,
}

/// The newest attempts (event id, attempt, outcome, status, latency, response snippet, error,
/// next attempt) and how many deliveries wait and are dead.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id"), DeliveriesParams),
    responses(
        (status = 200, description = "{\"data\": [attempts], \"pending\", \"dead\"}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such subscription", body = crate::http::docs::Detail),
        (status = 422, description = "limit is not an integer from 1 to 1000", body = crate::http::docs::ValidationDetail),
    ))]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeliveriesParams>,
) -> Result<Response, ApiError> {
    let limit = params
        .limit
        .map(|l| {
            l.parse::<usize>()
                .ok()
                .filter(|l| (1..=crate::service::webhooks::MAX_ATTEMPTS_SHOWN).contains(l))
                .ok_or_else(|| {
                    ApiError::Validation(vec![FieldError::query(
                        "limit",
                        "must be an integer from 1 to 1000",
                    )])
                })
        })
        .transpose()?;
    Ok(Json(state.webhooks.deliveries(&id, limit).await?).into_response())
}

/// Sends events again: `{"after": "<event id>"}`, `{"since": <unix seconds>}` (retained events
/// the subscription wants) or `{"dead_letters": true}`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id")),
    request_body(content = Object, description = "exactly one of after, since, dead_letters"),
    responses(
        (status = 200, description = "{\"enqueued\": n, \"truncated\"?: bool}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such subscription", body = crate::http::docs::Detail),
        (status = 422, description = "Not exactly one of after, since, dead_letters; or a bad event id", body = crate::http::docs::ValidationDetail),
    ))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<ReplayRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.webhooks.replay(&id, request).await?).into_response())
}
