//! API key check for client endpoints (`/send`, `/get`, and every later client route).
//!
//! When API_KEY is set, a request must carry `Authorization: Bearer <API_KEY>` or
//! `X-API-Key: <API_KEY>`. `/webhook` (Meta has its own signature) and health checks stay open.
//! Keys are compared in constant time over their SHA-256 digests, which also hides their length.
//! The inbox's browser session is the other way in: its cookie ([`crate::http::session`]) counts
//! as the key, and a state-changing request signed in that way must also carry the session's
//! `X-CSRF-Token`. A wrong key in a header counts against the client's address, as a wrong
//! sign-in does: past the limit, keys from that address are answered 429 without being checked
//! ([`crate::http::limiter`]); the session cookie still works from there.
//!
//! While API_KEY is unset, the client endpoints answer only requests whose `Host` is in
//! ALLOWED_HOSTS (loopback names by default): a web page the operator visits could otherwise read
//! `/get` through DNS rebinding (its own host name resolving to 127.0.0.1). `/webhook` is never
//! Host-checked: Meta arrives through tunnels with their own names, and the signature protects it.
//! Also while API_KEY is unset, every state-changing client request (any method but GET, HEAD,
//! OPTIONS and TRACE) must declare a JSON Content-Type: a plain HTML form on another site cannot send
//! one, so a page the operator visits cannot send, mark read or delete through the gateway. The
//! one form route, `POST /v1/media` (multipart, which any page can send), instead refuses a
//! request a browser marks as coming from another origin (`Origin`, `Sec-Fetch-Site`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::AppState;
use crate::http::error::ApiError;

/// Middleware: passes the request on only with the right key (or when no key is configured).
pub async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &state.api_key {
        Some(expected) => {
            let keys = presented_keys(request.headers());
            let by_key = if keys.iter().all(Option::is_none) {
                false
            } else {
                // A key in a header is a guess, counted per client address; from a blocked
                // address it is not even checked ([`crate::http::limiter`]).
                let client = crate::http::edge::client_address(request.extensions());
                if let Some(retry_after) = state.wrong_keys.blocked(client) {
                    tracing::warn!(reason = "too_many_wrong_keys", "auth.rejected");
                    state.metrics.refuse("too_many_wrong_keys");
                    return Err(ApiError::TooManyWrongKeys(retry_after));
                }
                let matches = keys
                    .iter()
                    .flatten()
                    .any(|presented| key_matches(presented, expected));
                if !matches {
                    state.wrong_keys.record(client);
                }
                matches
            };
            if !by_key {
                let Some(session) = state.sessions.from_headers(request.headers()) else {
                    tracing::warn!(reason = "api_key", "auth.rejected");
                    return Err(ApiError::Unauthorized);
                };
                // A cookie goes with every request the browser makes to this site, whichever
                // page makes it; SameSite ignores ports, so a page on another local port would
                // count as "same site". Only the gateway's own pages may use the session (a
                // WebSocket upgrade, which is a GET without CORS, included).
                require_same_origin(request.headers(), request_host(&request)).map_err(
                    |e| match e {
                        ApiError::CrossOrigin(origin) => ApiError::CrossSiteSession(origin),
                        other => other,
                    },
                )?;
                if !request.method().is_safe() {
                    state.sessions.check_csrf(request.headers(), &session)?;
                }
            }
        }
        None => {
            let host = require_allowed_host(&state, &request)?;
            if !request.method().is_safe() {
                if request.uri().path() == crate::http::edge::MEDIA_UPLOAD_PATH {
                    require_same_origin(request.headers(), host)?;
                } else {
                    crate::http::extract::require_json_content_type(request.headers())?;
                }
            } else if is_websocket_upgrade(request.headers()) {
                // A page may open a WebSocket to any origin (no CORS), and a page on another
                // port of an allowed host (a dev server) is not this host's page: only the
                // gateway's own pages may read the event stream.
                require_same_origin(request.headers(), host)?;
            }
        }
    }
    Ok(next.run(request).await)
}

/// For a form upload (a multipart body, which any web page may send) and a WebSocket handshake
/// while API_KEY is unset, and for every request signed in by the inbox's cookie: a browser says
/// where the page that sends it comes from (`Origin`, `Sec-Fetch-Site`); it must be this host's
/// own page. Clients that are not browsers (curl, apps) send neither header.
fn require_same_origin(headers: &HeaderMap, host: &str) -> Result<(), ApiError> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let origin_host = origin.map(|o| {
        o.split_once("://")
            .map_or("", |(_, rest)| rest)
            .trim_end_matches('/')
    });
    let cross_site = matches!(site, "cross-site" | "same-site")
        || origin_host.is_some_and(|o| !o.eq_ignore_ascii_case(host));
    if cross_site {
        let shown = crate::http::error::bounded(origin.unwrap_or(site)).into_owned();
        tracing::warn!(reason = "cross_origin", "auth.rejected");
        return Err(ApiError::CrossOrigin(shown));
    }
    Ok(())
}

/// A WebSocket handshake (`Upgrade: websocket`).
fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// While API_KEY is unset: the request's host name must be in ALLOWED_HOSTS (so a DNS-rebinding
/// page cannot reach the open endpoints). Returns the host.
pub(crate) fn require_allowed_host<'r>(
    state: &AppState,
    request: &'r Request,
) -> Result<&'r str, ApiError> {
    let host = request_host(request);
    if !state.allowed_hosts.allows(host) {
        tracing::warn!(reason = "host_not_allowed", "auth.rejected");
        return Err(ApiError::HostNotAllowed(
            crate::http::error::bounded(host).into_owned(),
        ));
    }
    Ok(host)
}

/// The Host header, or the URI's authority (HTTP/2), or "" when neither is there.
fn request_host(request: &Request) -> &str {
    request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

/// The API key header, as a `HeaderName` (a string would be parsed on every lookup).
const X_API_KEY: axum::http::HeaderName = axum::http::HeaderName::from_static("x-api-key");

/// The keys a request presents: `Authorization: Bearer <key>` and `X-API-Key: <key>` (each
/// trimmed; `None` for a header it does not carry).
fn presented_keys(headers: &HeaderMap) -> [Option<&str>; 2] {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let header_key = headers
        .get(&X_API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    [bearer, header_key]
}

#[cfg(test)]
fn presented_key_matches(headers: &HeaderMap, expected: &SecretString) -> bool {
    presented_keys(headers)
        .into_iter()
        .flatten()
        .any(|presented| key_matches(presented, expected))
}

/// Whether `presented` (surrounding spaces ignored) is the key, compared in constant time over
/// SHA-256 digests (which also hides the key's length).
pub(crate) fn key_matches(presented: &str, expected: &SecretString) -> bool {
    let expected = Sha256::digest(expected.expose_secret().as_bytes());
    bool::from(Sha256::digest(presented.trim().as_bytes()).ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_x_api_key_are_accepted() {
        let key = SecretString::from("k-123");
        assert!(presented_key_matches(
            &headers(&[("authorization", "Bearer k-123")]),
            &key
        ));
        assert!(presented_key_matches(
            &headers(&[("x-api-key", "k-123")]),
            &key
        ));
    }

    #[test]
    fn a_form_upload_is_refused_from_another_origin_only() {
        let host = "127.0.0.1:8000";
        assert!(require_same_origin(&headers(&[]), host).is_ok());
        assert!(
            require_same_origin(&headers(&[("origin", "http://127.0.0.1:8000")]), host).is_ok()
        );
        assert!(require_same_origin(&headers(&[("sec-fetch-site", "same-origin")]), host).is_ok());
        assert!(require_same_origin(&headers(&[("sec-fetch-site", "none")]), host).is_ok());
        assert!(
            require_same_origin(&headers(&[("origin", "https://evil.example")]), host).is_err()
        );
        assert!(require_same_origin(&headers(&[("origin", "null")]), host).is_err());
        assert!(require_same_origin(&headers(&[("sec-fetch-site", "cross-site")]), host).is_err());
        assert!(
            require_same_origin(&headers(&[("origin", "http://127.0.0.1:9000")]), host).is_err()
        );
    }

    #[test]
    fn wrong_missing_and_basic_auth_are_refused() {
        let key = SecretString::from("k-123");
        assert!(!presented_key_matches(&headers(&[]), &key));
        assert!(!presented_key_matches(
            &headers(&[("authorization", "Bearer k-1234")]),
            &key
        ));
        assert!(!presented_key_matches(
            &headers(&[("authorization", "Basic k-123")]),
            &key
        ));
        assert!(!presented_key_matches(&headers(&[("x-api-key", "")]), &key));
    }
}
