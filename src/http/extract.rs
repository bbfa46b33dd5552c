//! Request body extraction with our error shapes: [`JsonBody`] for client endpoints, [`read_body`]
//! for the webhook (which needs the raw bytes for the signature).
//!
//! `JsonBody` parses whatever the Content-Type says: the original's clients (PowerShell, curl -d)
//! do not always send `application/json`, and FastAPI accepted them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::http::error::{ApiError, FieldError};

/// A JSON body deserialized into `T`; 400 for malformed JSON, 422 naming the field otherwise.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(Bytes::from_request(req, state).await)?;
        parse_json(&bytes).map(JsonBody)
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

/// Maps a body-reading failure: over MAX_BODY_BYTES -> 413, too slow -> 408, else 400.
pub fn read_body(result: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    result.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(e) = source {
            if e.is::<tower_http::timeout::TimeoutError>() {
                return ApiError::BodyTimeout;
            }
            source = e.source();
        }
        ApiError::UnreadableBody
    })
}
