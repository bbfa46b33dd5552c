//! Request body extraction with our error shapes and limits: [`JsonBody`] for client endpoints,
//! [`read_body`] for the webhook (which needs the raw bytes for the signature).
//!
//! `JsonBody` requires `Content-Type: application/json` (or any `+json` type), else 415. FastAPI
//! parsed a body without a Content-Type too, but a browser can send exactly that (or `text/plain`,
//! or a form) to `http://127.0.0.1:8000/send` from any web page without a CORS preflight; requiring
//! the JSON type makes such a cross-site request impossible, while every real API client (curl -H,
//! requests' `json=`, PowerShell's `-ContentType`) already sends it.
//!
//! Bodies are received by [`crate::http::edge`] under its budgets before a handler runs; reading
//! them here is a copy-free hand-over.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};

/// A JSON body deserialized into `T`; 400 for malformed JSON, 422 naming the field otherwise.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        require_json_content_type(req.headers())?;
        let bytes = read_body(req, state.body_limits).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Accepts `application/json` and `application/<anything>+json`, with any parameters.
fn require_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType("no Content-Type".to_owned()));
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if json {
        Ok(())
    } else {
        let shown: String = text.chars().take(60).collect();
        Err(ApiError::UnsupportedMediaType(format!("{shown:?}")))
    }
}

/// Parses `bytes` as `T`, mapping serde's errors to [`ApiError`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de);
    if value.is_ok() {
        // Trailing data after the JSON value is malformed JSON too.
        de.end()
            .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    }
    value.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::MalformedJson(inner.to_string());
        }
        let message = strip_position(&inner.to_string());
        // serde reports a missing field at the parent's path with the name in backticks.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            return ApiError::Validation(vec![FieldError {
                loc: vec!["body".into(), field.into()],
                msg: format!("{field} is required"),
                kind: "missing",
            }]);
        }
        let mut loc = vec!["body".to_owned()];
        if path != "." {
            loc.extend(path.split('.').map(str::to_owned));
        }
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::Validation(vec![FieldError {
            loc,
            msg: format!("{field}: {message}"),
            kind: "type_error",
        }])
    })
}

/// serde_json appends " at line 1 column 17"; clients need the rule, not the column.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Limits on reading a request body, from HttpSettings.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// MAX_BODY_BYTES.
    pub max_bytes: usize,
    /// BODY_TIMEOUT_SECS: a deadline for the *whole* body. (tower-http's RequestBodyTimeout resets
    /// on every frame, so a client trickling one byte a second would never be cut off.)
    pub timeout: std::time::Duration,
}

/// Reads the whole body: over MAX_BODY_BYTES -> 413 (checked against Content-Length first, so a
/// large upload is refused before it is read), not complete within BODY_TIMEOUT_SECS -> 408,
/// broken connection -> 400.
pub async fn read_body(request: Request, limits: BodyLimits) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let body = request.into_body();
    match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.max_bytes)).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::PayloadTooLarge);
                }
                source = err.source();
            }
            Err(ApiError::UnreadableBody)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn with_type(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn json_content_types_are_accepted() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
        ] {
            assert!(
                require_json_content_type(&with_type(Some(ok))).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn what_a_cross_site_form_can_send_is_refused() {
        for bad in [
            None,
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
            Some("text/json"),
        ] {
            let err = require_json_content_type(&with_type(bad)).unwrap_err();
            assert_eq!(
                err.status(),
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{bad:?}"
            );
        }
    }
}
