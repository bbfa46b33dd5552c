//! `GET /v1/media/{id}` and `DELETE /v1/media/{id}`: media Meta holds, by id (ids from inbound
//! webhooks or from uploads). A download resolves Meta's short-lived URL (`GET /{id}`, retried
//! like every read) right before fetching it with the number's token, and streams the bytes to
//! the client chunk by chunk with Meta's Content-Type and Content-Length: the file is never held
//! in memory whole, and nothing is stored on our disk.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::config::BusinessNumber;
use crate::graph::GraphError;
use crate::graph::error::transport_cause;
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};
use crate::http::send::{NumberParams, queried_number};

/// The media id of the path and the business number of the query, both checked before any
/// Graph call. A media id: Meta's are digits; letters, `_`, `-` and `.` are let through,
/// nothing that could change the Graph URL it is put into.
fn target(
    state: &AppState,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<NumberParams>, QueryRejection>,
) -> Result<(String, &BusinessNumber), ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_path("id", &e))?;
    let Query(params) = params.map_err(|e| ApiError::bad_query(&e))?;
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(ApiError::Validation(vec![FieldError::parameter(
            "path",
            "id",
            "must be a media id: 1-128 letters, digits, '_', '-' or '.'",
        )]));
    }
    let number = queried_number(&state.sender, params.phone_number_id.as_deref())?;
    Ok((id, number))
}

/// Meta's refusal of an id it does not know (100: "object does not exist"; 404) or of an
/// expired download URL, as a 404; everything else as the Graph error it is.
fn not_found_or(e: GraphError, id: &str) -> ApiError {
    let unknown = matches!(&e, GraphError::Rejected { status, .. } if matches!(status, 400 | 403 | 404 | 410))
        && matches!(e.meta_code(), None | Some(100));
    if unknown {
        ApiError::NotFound(format!(
            "media {id:?} is unknown to Meta or has expired (ids from webhooks last about 7 days, uploads 30 days)"
        ))
    } else {
        ApiError::Graph(e)
    }
}

/// Streams a media file's bytes.
#[utoipa::path(get, path = "/v1/media/{id}", tag = "messages",
    params(("id" = String, Path, description = "Meta's media id (from a webhook's image/audio/... or an upload)"), NumberParams),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The file, with Meta's Content-Type and Content-Length, streamed"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "Meta does not know the id, or it expired", body = crate::http::docs::Detail),
        (status = 422, description = "Not a media id, or phone_number_id is not a configured number", body = crate::http::docs::ValidationDetail),
        (status = 502, description = "Meta failed or could not be reached (after retries)", body = crate::http::docs::Detail),
        (status = 503, description = "Sending (the token) is not configured", body = crate::http::docs::Detail),
    ))]
pub async fn download(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<NumberParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (id, number) = target(&state, id, params)?;
    let id = id.as_str();
    let graph = state.sender.graph();
    let meta = graph
        .get(number, &format!("/{id}?phone_number_id={}", number.id))
        .await
        .map_err(|e| not_found_or(e, id))?;
    let Some(url) = meta["url"].as_str() else {
        return Err(ApiError::Graph(GraphError::InvalidResponse { status: 200 }));
    };
    let mut upstream = graph
        .open_download(number, url)
        .await
        .map_err(|e| not_found_or(e, id))?;
    let content_type = upstream
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .or_else(|| {
            meta["mime_type"]
                .as_str()
                .and_then(|m| HeaderValue::from_str(m).ok())
        })
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let length = upstream.content_length();
    tracing::info!(media_id = id, bytes = length, "media.download");
    // The cause only: reqwest's own text names the URL, whose query is Meta's signature.
    let https = url.starts_with("https://");
    let first = upstream.chunk().await.map_err(|e| {
        ApiError::Graph(GraphError::Unreachable {
            cause: transport_cause(&e, https),
            base: "the media URL".into(),
            maybe_sent: false,
        })
    })?;
    let stream = futures_util::stream::unfold(
        (Some(upstream), first),
        move |(upstream, pending)| async move {
            if let Some(chunk) = pending {
                return Some((Ok(chunk), (upstream, None)));
            }
            let mut upstream = upstream?;
            match upstream.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), (Some(upstream), None))),
                Ok(None) => None,
                Err(e) => {
                    let cause = transport_cause(&e, https);
                    tracing::warn!(error.message = %cause, "media.download_cut the download from Meta broke off");
                    Some((Err(std::io::Error::other(e)), (None, None)))
                }
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// Deletes a media file Meta holds.
#[utoipa::path(delete, path = "/v1/media/{id}", tag = "messages",
    params(("id" = String, Path, description = "Meta's media id"), NumberParams),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "{id, deleted: true}"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 404, description = "Meta does not know the id", body = crate::http::docs::Detail),
        (status = 422, description = "Not a media id, or phone_number_id is not a configured number", body = crate::http::docs::ValidationDetail),
        (status = 502, description = "Meta failed or could not be reached", body = crate::http::docs::Detail),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<NumberParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (id, number) = target(&state, id, params)?;
    let id = id.as_str();
    state
        .sender
        .graph()
        .delete_media(number, id)
        .await
        .map_err(|e| not_found_or(e, id))?;
    Ok(axum::Json(serde_json::json!({"id": id, "deleted": true})).into_response())
}
