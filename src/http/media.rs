//! `POST /v1/media`, `GET /v1/media/{id}` and `DELETE /v1/media/{id}`: media Meta holds, by id
//! (ids from inbound webhooks or from uploads).
//!
//! An upload is a multipart form whose `file` is streamed to Meta as it arrives (the edge hands
//! this route its body unbuffered: [`crate::http::edge::MEDIA_UPLOAD_PATH`]). Before anything is
//! sent, the form fields ahead of `file` (`from`, `type`) are read and the file's type is checked
//! against Meta's table ([`crate::domain::media`]); while it streams, its size is held to Meta's
//! limit for its kind (a file over it is cut off, so Meta never keeps it, and answered 413) and its
//! SHA-256 is computed for the answer. A download resolves Meta's short-lived URL (`GET /{id}`, retried
//! like every read) right before fetching it with the number's token, and streams the bytes to
//! the client chunk by chunk with Meta's Content-Type and Content-Length: the file is never held
//! in memory whole, and nothing is stored on our disk.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::config::BusinessNumber;
use crate::domain::media::{MediaKind, MediaType, essence, human_bytes, sticker_limit};
use crate::graph::GraphError;
use crate::graph::error::transport_cause;
use crate::http::AppState;
use crate::http::error::{ApiError, FieldError, bounded};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::send::{NumberParams, queried_number};
use crate::service::send::SendError;
use axum::http::StatusCode;
use sha2::Digest;

/// The media id of the path and the business number of the query, both checked before any
/// Graph call. A media id: Meta's are digits; letters, `_`, `-` and `.` are let through,
/// nothing that could change the Graph URL it is put into.
fn target(
    state: &AppState,
    id: String,
    params: NumberParams,
) -> Result<(String, &BusinessNumber), ApiError> {
    // At least one letter or digit: "." and ".." would be path segments of the Graph URL.
    let ok = id.len() <= 128
        && id.bytes().any(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(ApiError::Validation(vec![FieldError::parameter(
            "path",
            "id",
            "must be a media id: 1-128 letters, digits, '_', '-' or '.', at least one a letter or digit",
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
        ApiError::Meta(e)
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
        (status = 429, description = "Meta asked to slow down; Retry-After says when to try again"),
        (status = 502, description = "Meta failed or could not be reached (after retries), or the token is expired or lacks a permission (detail: message, code, fbtrace_id, hint)"),
        (status = 503, description = "Sending (the token) is not configured", body = crate::http::docs::Detail),
        (status = 504, description = "Meta did not answer in time"),
    ))]
pub async fn download(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<NumberParams>,
) -> Result<Response, ApiError> {
    let (id, number) = target(&state, id, params)?;
    let id = id.as_str();
    let graph = state.sender.graph();
    let meta = graph
        .get(number, &format!("/{id}?phone_number_id={}", number.id))
        .await
        .map_err(|e| not_found_or(e, id))?;
    let Some(url) = meta["url"].as_str() else {
        return Err(ApiError::Meta(GraphError::InvalidResponse { status: 200 }));
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
        ApiError::Meta(GraphError::Unreachable {
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
    mark_untrusted(headers, &content_type);
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

/// Media types a browser may show inline from this origin: pictures (not SVG, which runs
/// scripts), audio and video.
fn shown_inline(content_type: &HeaderValue) -> bool {
    let essence = essence(content_type.to_str().unwrap_or_default());
    matches!(
        essence.as_str(),
        "image/jpeg" | "image/png" | "image/webp" | "image/gif"
    ) || essence.starts_with("audio/")
        || essence.starts_with("video/")
}

/// A file a customer sent is served from the gateway's own origin, where the inbox's session
/// cookie lives, with the type its sender declared: a browser must never run it. So no type
/// sniffing, a sandbox with nothing allowed, and anything but a picture, a sound or a video
/// is a download (`Content-Disposition: attachment`), never a page.
fn mark_untrusted(headers: &mut HeaderMap, content_type: &HeaderValue) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if !shown_inline(content_type) {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
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
        (status = 429, description = "Meta asked to slow down; Retry-After says when to try again"),
        (status = 502, description = "Meta failed or could not be reached, or the token is expired or lacks a permission (detail: message, code, fbtrace_id, hint)"),
        (status = 503, description = "Sending (the token) is not configured", body = crate::http::docs::Detail),
        (status = 504, description = "Meta did not answer in time"),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<NumberParams>,
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

/// `?phone_number_id=` (or `?from=`) of an upload; a `from` form field ahead of `file` does the same.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The business number to upload with (default PHONE_NUMBER_ID); the media can be sent
    /// from that number only.
    pub from: Option<String>,
    /// Same as `from`.
    pub phone_number_id: Option<String>,
}

/// An uploaded file as Meta keeps it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Meta's media id: send it as `image.id`, `document.id`, ... (valid 30 days).
    pub id: String,
    /// What it can be sent as: image, video, audio, document or sticker.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The MIME type it was declared to Meta with (normalized).
    pub mime_type: &'static str,
    /// Bytes.
    pub file_size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// The file name Meta got.
    pub filename: String,
    /// The business number it was uploaded with.
    pub from: String,
}

/// Form fields other than `file`: at most this many, each at most [`MAX_FIELD_BYTES`].
const MAX_FIELDS: usize = 8;
const MAX_FIELD_BYTES: usize = 1024;

/// Uploads a file to Meta (multipart form field `file`), streamed: it is never held whole.
#[utoipa::path(post, path = "/v1/media", tag = "messages",
    params(UploadParams),
    request_body(content_type = "multipart/form-data", description = "Form fields: `file` (the file, with its name and Content-Type) and, ahead of it, optional `from` (a configured phone_number_id) and `type` (a MIME type overriding the file's)"),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Meta's media id for the file, its type, size, SHA-256 and name", body = Uploaded),
        (status = 400, description = "The form could not be read (detail is a text), or Meta refused the file as invalid (detail: message, code, fbtrace_id, hint)"),
        (status = 401, description = "API key missing or wrong", body = crate::http::docs::Detail),
        (status = 403, description = "API_KEY unset and the form came from another origin's page", body = crate::http::docs::Detail),
        (status = 408, description = "The upload arrived below MIN_UPLOAD_BYTES_PER_SEC", body = crate::http::docs::Detail),
        (status = 413, description = "The file is over Meta's limit for its kind (named), or over MEDIA_UPLOAD_MAX_BYTES", body = crate::http::docs::Detail),
        (status = 415, description = "Not a multipart form, or a file type WhatsApp does not take (the accepted ones are listed)", body = crate::http::docs::Detail),
        (status = 422, description = "No `file` field, an empty file, an unknown field, or `from` is not a configured number", body = crate::http::docs::ValidationDetail),
        (status = 429, description = "Meta asked to slow down; Retry-After says when to try again"),
        (status = 502, description = "Meta failed or could not be reached, or the token is expired or lacks a permission (detail: message, code, fbtrace_id, hint)"),
        (status = 503, description = "Sending (the token) is not configured, or too many uploads at once", body = crate::http::docs::Detail),
        (status = 504, description = "Meta did not answer in time once the file was sent"),
    ))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    ApiQuery(params): ApiQuery<UploadParams>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        let shown: String = content_type.chars().take(60).collect();
        ApiError::UnsupportedType(format!(
            "Content-Type must be multipart/form-data with a boundary (found {shown:?}); send the file as the form field 'file', e.g. curl -F file=@photo.jpg"
        ))
    })?;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut form = multer::Multipart::new(request.into_body().into_data_stream(), boundary);
    // The number, with where it was given (place and name), for the 422 of an unknown one.
    let mut from = match (params.from, params.phone_number_id) {
        (Some(v), _) => Some((v, "query", "from")),
        (None, Some(v)) => Some((v, "query", "phone_number_id")),
        (None, None) => None,
    };
    let mut declared_type = None;
    let mut fields = 0;
    let file = loop {
        let field = form.next_field().await.map_err(form_error)?;
        let Some(mut field) = field else {
            return Err(ApiError::Validation(vec![FieldError::parameter(
                "body",
                "file",
                "is required: send the file as the multipart form field 'file' (after 'from' and 'type', if given)",
            )]));
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            break field;
        }
        fields += 1;
        let known = matches!(
            name.as_str(),
            "from" | "phone_number_id" | "type" | "messaging_product"
        );
        if !known || fields > MAX_FIELDS {
            let rule = if known {
                format!(
                    "is one field too many: a form has at most {MAX_FIELDS} fields besides 'file'"
                )
            } else {
                "is not a field of this form: send 'file' and, ahead of it, optional 'from' and 'type'".to_owned()
            };
            return Err(ApiError::Validation(vec![FieldError::parameter(
                "body",
                &bounded(&name),
                rule,
            )]));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(form_error)? {
            if value.len() + chunk.len() > MAX_FIELD_BYTES {
                return Err(ApiError::Validation(vec![FieldError::parameter(
                    "body",
                    &name,
                    format!("must be at most {MAX_FIELD_BYTES} bytes"),
                )]));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8_lossy(&value).trim().to_owned();
        match name.as_str() {
            "from" => from = Some((value, "body", "from")),
            "phone_number_id" => from = Some((value, "body", "phone_number_id")),
            "type" => declared_type = Some(value),
            _ => {} // messaging_product: the gateway sends "whatsapp" itself
        }
    };
    let number = match &from {
        None => queried_number(&state.sender, None)?,
        Some((id, place, name)) => state.sender.number(Some(id)).map_err(|e| match e {
            SendError::UnknownNumber { .. } => {
                ApiError::Validation(vec![FieldError::parameter(place, name, e)])
            }
            other => other.into(),
        })?,
    };
    let media = MediaType::parse(
        declared_type
            .as_deref()
            .or(file.content_type().map(|m| m.as_ref())),
        file.file_name(),
    )
    .map_err(|e| ApiError::UnsupportedType(e.to_string()))?;
    let filename = file_name(file.file_name(), media);
    let uploaded = upload_file(&state, number, media, filename, declared, file).await?;
    // A field after the file came too late to count: the upload may have used the wrong number
    // or type, so it is deleted again and refused.
    if let Some(late) = form.next_field().await.ok().flatten() {
        let name = bounded(late.name().unwrap_or_default()).into_owned();
        if let Err(e) = state
            .sender
            .graph()
            .delete_media(number, &uploaded.id)
            .await
        {
            tracing::warn!(media_id = %uploaded.id, error.message = %e, "media.delete_failed an upload refused for a late field stays at Meta until it expires");
        }
        return Err(ApiError::Validation(vec![FieldError::parameter(
            "body",
            &name,
            "must come before 'file' (fields after it are not read; the upload was deleted)",
        )]));
    }
    tracing::info!(media_id = %uploaded.id, kind = uploaded.kind, bytes = uploaded.file_size, "media.uploaded");
    Ok((StatusCode::CREATED, axum::Json(uploaded)).into_response())
}

/// The name a file is given to Meta: the client's without any directory part, else
/// `file.<extension>`.
fn file_name(given: Option<&str>, media: MediaType) -> String {
    let base = given
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or_default().trim())
        .filter(|n| !n.is_empty());
    match base {
        Some(name) => name.to_owned(),
        None => format!("file.{}", media.extension()),
    }
}

/// Streams `file` to Meta from `number`, held to the limit of its kind (a request whose
/// `declared` length is surely over it is refused before any call), and returns what Meta keeps.
async fn upload_file(
    state: &AppState,
    number: &BusinessNumber,
    media: MediaType,
    filename: String,
    declared: Option<u64>,
    mut file: multer::Field<'static>,
) -> Result<Uploaded, ApiError> {
    // The first bytes: an empty file is refused before any call, and a sticker's header says
    // whether it is animated (its limit).
    let mut head = bytes::BytesMut::new();
    while head.len() < 32 {
        match file.chunk().await.map_err(form_error)? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(ApiError::Validation(vec![FieldError::parameter(
            "body", "file", "is empty",
        )]));
    }
    let kind_limit = match media.kind() {
        MediaKind::Sticker => sticker_limit(&head),
        kind => kind.max_bytes(),
    };
    let configured = state.edge.media_upload_max_bytes();
    let limit = kind_limit.min(configured);
    let too_large = || {
        if kind_limit <= configured {
            ApiError::TooLarge(format!(
                "the file is larger than {}, WhatsApp's limit for {} ({}){}",
                human_bytes(kind_limit),
                media.kind(),
                media.mime(),
                if media.kind() == MediaKind::Sticker {
                    " (stickers: 100 KiB static, 500 KiB animated)"
                } else {
                    ""
                }
            ))
        } else {
            ApiError::TooLarge(crate::http::edge::upload_too_large(configured))
        }
    };
    if declared.is_some_and(|n| n > limit + crate::http::edge::UPLOAD_FORM_OVERHEAD) {
        return Err(too_large());
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stream = futures_util::stream::unfold(
        (Some(file), Some(head.freeze()), tally.clone()),
        move |(file, pending, tally)| async move {
            let mut file = file?;
            let next = match pending {
                Some(chunk) => Ok(Some(chunk)),
                None => file.chunk().await,
            };
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            match next {
                Ok(Some(chunk)) => {
                    t.size += chunk.len() as u64;
                    if t.size > limit {
                        t.cut = Some(Cut::TooLarge);
                        drop(t);
                        return Some((
                            Err(std::io::Error::other("over the limit")),
                            (None, None, tally),
                        ));
                    }
                    t.sha256.update(&chunk);
                    drop(t);
                    Some((Ok(chunk), (Some(file), None, tally)))
                }
                Ok(None) => None,
                Err(e) => {
                    t.cut = Some(Cut::Form(e));
                    drop(t);
                    Some((
                        Err(std::io::Error::other("the upload broke off")),
                        (None, None, tally),
                    ))
                }
            }
        },
    );
    let uploaded = state
        .sender
        .graph()
        .upload_media(number, media, &filename, stream)
        .await;
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    match t.cut.take() {
        Some(Cut::TooLarge) => return Err(too_large()),
        Some(Cut::Form(e)) => return Err(form_error(e)),
        None => {}
    }
    let id = uploaded.map_err(ApiError::Meta)?;
    let size = t.size;
    let sha256 = hex::encode(std::mem::take(&mut t.sha256).finalize());
    drop(t);
    Ok(Uploaded {
        id,
        kind: media.kind().as_str(),
        mime_type: media.mime(),
        file_size: size,
        sha256,
        filename,
        from: number.id.to_string(),
    })
}

/// What passed through an upload so far.
#[derive(Default)]
struct Tally {
    size: u64,
    sha256: sha2::Sha256,
    cut: Option<Cut>,
}

/// Why an upload stopped before its end.
enum Cut {
    TooLarge,
    Form(multer::Error),
}

/// A form that could not be read: cut off by the edge (over the size limit: 413; too slow:
/// 408) or broken (400, with multer's reason).
fn form_error(e: multer::Error) -> ApiError {
    match crate::http::edge::BodyCut::find(&e) {
        Some(crate::http::edge::BodyCut::TooLarge { max }) => {
            ApiError::TooLarge(crate::http::edge::upload_too_large(*max))
        }
        Some(crate::http::edge::BodyCut::TooSlow) => ApiError::BodyTimeout,
        None => ApiError::MalformedForm(bounded(&e.to_string()).into_owned()),
    }
}
