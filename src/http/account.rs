//! `GET /v1/numbers` and `GET /v1/templates`: thin adapters over [`crate::service::account`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::graph::GraphError;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::send::{NumberParams, queried_number};
use crate::service::account::AccountError;

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NoWaba(_) => {
                ApiError::Meta(GraphError::NotConfigured("BUSINESS_ACCOUNT_ID"))
            }
            AccountError::Graph(e) => ApiError::Meta(e),
        }
    }
}

/// The configured business numbers, with what Meta says of each (cached for a minute).
#[utoipa::path(get, path = "/v1/numbers", tag = "messages",
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "{numbers: [{phone_number_id, display_phone_number, waba_id, default, meta: {display_phone_number, verified_name, quality_rating, messaging_limit_tier, throughput, status} | null, meta_error?}]}; a number Meta cannot describe now has meta null and meta_error"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
    ))]
pub async fn list_numbers(State(state): State<Arc<AppState>>) -> Response {
    Json(state.account.numbers().await).into_response()
}

/// The approved templates of a number's WhatsApp Business Account, with the parameters each
/// takes.
#[utoipa::path(get, path = "/v1/templates", tag = "messages", params(NumberParams),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "{phone_number_id, waba_id, templates: [{name, language, category, status, components, parameters: [{component, type | sub_type, placeholders?, index?}]}]}"),
        (status = 400, description = "Meta refused the read as invalid (detail: message, code, error_subcode, details, fbtrace_id, hint)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 422, description = "phone_number_id is not a configured number", body = crate::http::docs::ValidationDetail),
        (status = 429, description = "Meta asked to slow down; Retry-After says when to try again"),
        (status = 502, description = "Meta failed or could not be reached (after retries), or the token is expired or lacks a permission (detail has Meta's code and a hint)"),
        (status = 503, description = "No number, token or BUSINESS_ACCOUNT_ID configured", body = crate::http::docs::Detail),
        (status = 504, description = "Meta did not answer in time"),
    ))]
pub async fn list_templates(
    State(state): State<Arc<AppState>>,
    ApiQuery(params): ApiQuery<NumberParams>,
) -> Result<Response, ApiError> {
    let number = queried_number(&state.sender, params.phone_number_id.as_deref())?;
    Ok(Json(state.account.templates(number).await?).into_response())
}
