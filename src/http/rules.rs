//! `/v1/rules` (behind API_KEY): thin adapters from HTTP to [`crate::service::rules`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, JsonBody};
use crate::service::rules::RuleError;

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Invalid(fields) => {
                ApiError::Validation(fields.into_iter().map(Into::into).collect())
            }
            RuleError::NotFound(what) => ApiError::NotFound(what),
            RuleError::Conflict(what) => ApiError::Taken(what),
            RuleError::Managed => ApiError::Conflict(crate::service::rules::MANAGED),
            RuleError::Store(e) => ApiError::Store(e),
        }
    }
}

/// Creates an auto-reply rule.
#[utoipa::path(post, path = "/v1/rules", tag = "rules",
    request_body(content = Object, description = "id (a-z, 0-9, _, -, .; generated when absent), name, enabled (default true), priority (0-1000000, default 100; lower is tried first), phone_number_id (only messages to this number), when ({keyword: {exact|contains|regex, case_sensitive}, types, reply_id, first_message, outside_hours: {timezone, open}}; all must hold; empty matches every message), reply (a POST /v1/messages body without to/from; {{text}}, {{name}}, {{contact}} are filled in), quote (the reply quotes the message), once_per (a duration: at most one reply per contact in it)",
        example = json!({"id": "prices", "when": {"keyword": {"contains": ["price", "cost"]}}, "reply": {"type": "text", "text": {"body": "Our price list: https://example.com/prices"}}, "once_per": "24h"})),
    responses(
        (status = 201, description = "The rule as stored (with managed_by, created_at, updated_at)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 409, description = "A rule with this id exists", body = crate::http::docs::Detail),
        (status = 422, description = "A field breaks a rule (named; reply fields as reply.<field>)", body = crate::http::docs::ValidationDetail),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let rule = state.rules.create(body).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// Every rule, in the order they are tried.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses(
        (status = 200, description = "{\"data\": [rules]} by priority, then id"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
    ))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(Json(state.rules.list().await?).into_response())
}

/// One rule.
#[utoipa::path(get, path = "/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule id")),
    responses(
        (status = 200, description = "The rule"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such rule", body = crate::http::docs::Detail),
    ))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.rules.get(&id).await?).into_response())
}

/// Changes a rule: the fields given replace the stored ones (`when` and `reply` as a whole);
/// `null` removes an optional one.
#[utoipa::path(patch, path = "/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule id")),
    request_body(content = Object, description = "Any rule field but id"),
    responses(
        (status = 200, description = "The rule after the change"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such rule", body = crate::http::docs::Detail),
        (status = 409, description = "The rule comes from AUTO_REPLY_RULES_FILE, or it changed while this change ran (read it again)", body = crate::http::docs::Detail),
        (status = 422, description = "A field breaks a rule (named)", body = crate::http::docs::ValidationDetail),
    ))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    Ok(Json(state.rules.update(&id, patch).await?).into_response())
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "No such rule", body = crate::http::docs::Detail),
        (status = 409, description = "The rule comes from AUTO_REPLY_RULES_FILE", body = crate::http::docs::Detail),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.rules.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
