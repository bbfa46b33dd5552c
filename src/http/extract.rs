//! Request body extraction with our error shapes and limits: [`JsonBody`] for client endpoints,
//! [`take_body`] for the webhook (which needs the raw bytes for the signature).
//!
//! `JsonBody` requires `Content-Type: application/json` (or any `+json` type), else 415. FastAPI
//! parsed a body without a Content-Type too, but a browser can send exactly that (or `text/plain`,
//! or a form) to `http://127.0.0.1:8000/send` from any web page without a CORS preflight; requiring
//! the JSON type makes such a cross-site request impossible, while every real API client (curl -H,
//! requests' `json=`, PowerShell's `-ContentType`) already sends it.
//!
//! [`ApiPath`] and [`ApiQuery`] are axum's `Path` and `Query` with the same 422 shape as bodies:
//! a path parameter that does not decode is named (`["path", "<name>"]`), a query string that does
//! not decode is `["query"]` with axum's reason.
//!
//! Bodies are received by [`crate::http::edge`] under its budgets before a handler runs; reading
//! them here is a copy-free hand-over.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::http::AppState;
use crate::http::error::{ApiError, FieldError};

/// axum's `Path<T>`, refused as a 422 that names the route's parameter.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => {
                // Our routes have one parameter each: name it from the route's template
                // (`/v1/messages/{id}`); the values themselves may be what failed to decode.
                let name = parts
                    .extensions
                    .get::<MatchedPath>()
                    .and_then(|route| {
                        let (_, rest) = route.as_str().split_once('{')?;
                        Some(rest.split_once('}')?.0.to_owned())
                    })
                    .unwrap_or_else(|| "path".to_owned());
                Err(ApiError::bad_path(&name, &rejection))
            }
        }
    }
}

/// axum's `Query<T>`, refused as a 422 at `["query"]` with axum's reason.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_query(&rejection))
    }
}

/// A JSON body deserialized into `T`; 400 for malformed JSON, 422 naming the field otherwise.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        require_json_content_type(req.headers())?;
        let bytes = take_body(req).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Accepts `application/json` and `application/<anything>+json`, with any parameters.
pub fn require_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType("no Content-Type".to_owned()));
    };
    let text = value.to_str().unwrap_or_default();
    let essence = crate::domain::media::essence(text);
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

/// Takes the request's body, which [`crate::http::edge`] has already received whole under its
/// limits (size, rate, deadline, memory): no second limit check and no timer here, only the
/// hand-over of the buffered bytes.
pub async fn take_body(request: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .map_err(|_| ApiError::UnreadableBody)
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
