//! The web inbox (`/inbox`): its page and assets, embedded in the binary (no CDN, no build step:
//! plain HTML, CSS and JavaScript under `assets/inbox/`), and its sign-in (`/inbox/session`).
//!
//! The page talks to the same `/v1` API as any client (conversations, messages, sends, media,
//! templates) and listens to `/v1/events`; it holds no logic the API does not have. Sign-in
//! exchanges API_KEY for a session cookie ([`crate::http::session`]); while API_KEY is unset the
//! inbox is open (the page shows a warning), and, like every client route, it then answers only
//! Host names in ALLOWED_HOSTS.
//!
//! The assets are served with a strong `ETag` (a hash of the embedded bytes, computed once) and
//! `Cache-Control: no-cache`: the browser revalidates each time (an upgrade shows at once) and an
//! unchanged asset is a 304 with no body.
//!
//! Every page response carries a strict Content-Security-Policy (scripts, styles and connections
//! from this origin only; no inline script), `X-Frame-Options: DENY` and `no-referrer`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http::AppState;
use crate::http::edge::ClientAddress;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::JsonBody;
use crate::http::session::{COOKIE, Session};

/// The page.
const INDEX_HTML: &str = include_str!("../../assets/inbox/index.html");
/// Its script.
const APP_JS: &str = include_str!("../../assets/inbox/app.js");
/// Its styles.
const APP_CSS: &str = include_str!("../../assets/inbox/app.css");

/// Content-Security-Policy of every inbox response. `blob:` lets media fetched through the
/// proxy (with the session) be shown; nothing else comes from anywhere but this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Middleware for the inbox's routes: while API_KEY is unset, only Host names in ALLOWED_HOSTS
/// (as for every client route), so a DNS-rebinding page cannot use the open inbox.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.api_key.is_none() {
        crate::http::auth::require_allowed_host(&state, &request)?;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// One embedded asset and its validator.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    /// A strong ETag: the first 16 bytes of the body's SHA-256, quoted hex.
    etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, body: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Self {
            content_type,
            body,
            etag: HeaderValue::from_str(&etag).expect("quoted hex is a header value"),
        }
    }

    /// 200 with the body, or 304 with none when the browser's copy is this one
    /// (`If-None-Match`). Either way `no-cache`: always revalidated, so an upgrade shows at
    /// once, and an unchanged asset costs one round trip and no bytes.
    fn serve(&self, headers: &HeaderMap) -> Response {
        let fresh = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim())
            // Weak comparison, as If-None-Match uses.
            .any(|tag| {
                tag == "*"
                    || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == self.etag.as_bytes()
            });
        let cache = [
            (header::ETAG, self.etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, cache).into_response();
        }
        (
            cache,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

/// The embedded assets, each hashed once (on first use).
static PAGE: LazyLock<Asset> = LazyLock::new(|| Asset::new("text/html; charset=utf-8", INDEX_HTML));
static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/javascript; charset=utf-8", APP_JS));
static STYLES: LazyLock<Asset> = LazyLock::new(|| Asset::new("text/css; charset=utf-8", APP_CSS));

/// `GET /inbox`: the page.
pub async fn page(headers: HeaderMap) -> Response {
    PAGE.serve(&headers)
}

/// `GET /inbox/app.js`.
pub async fn script(headers: HeaderMap) -> Response {
    SCRIPT.serve(&headers)
}

/// `GET /inbox/app.css`.
pub async fn styles(headers: HeaderMap) -> Response {
    STYLES.serve(&headers)
}

/// `GET /inbox/session`: whether this browser is signed in, and its CSRF token. 200 with
/// `{"auth": "session", "csrf", "expires_at"}`, or `{"auth": "open", "warning"}` while API_KEY
/// is unset; 401 when a sign-in is needed.
pub async fn session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if state.api_key.is_none() {
        return session_body(&state, None).into_response();
    }
    match state.sessions.from_headers(&headers) {
        Some(session) => session_body(&state, Some(&session)).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "sign in with the API key"})),
        )
            .into_response(),
    }
}

/// What `/inbox/session` answers: the session and its CSRF token (`None`: the open inbox, with
/// its warning), and Meta's delivery health.
fn session_body(state: &AppState, session: Option<&Session>) -> Json<serde_json::Value> {
    let webhooks = state.delivery.report(crate::store::view::now_secs());
    Json(match session {
        Some(session) => json!({
            "auth": "session",
            "csrf": state.sessions.csrf(session),
            "expires_at": session.expires_at,
            "webhooks": webhooks,
        }),
        None => json!({
            "auth": "open",
            "csrf": null,
            "webhooks": webhooks,
            "warning": "API_KEY is not set: anyone who can reach this port can read and send messages. Set API_KEY to require a sign-in.",
        }),
    })
}

/// Body of `POST /inbox/session`.
#[derive(Deserialize)]
pub struct SignIn {
    key: String,
}

/// `POST /inbox/session` (`{"key": "<API_KEY>"}`, JSON only, so no other site's form can post
/// it): sets the session cookie and answers like [`session`]. 401 for a wrong key, 429 with
/// Retry-After while the client's address is blocked for too many wrong keys (the key is then
/// not checked: [`crate::http::limiter`]), 409 while API_KEY is unset (nothing to sign in to).
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.api_key else {
        return Ok((
            StatusCode::CONFLICT,
            Json(json!({"detail": "API_KEY is not set: the inbox is open, there is nothing to sign in to"})),
        )
            .into_response());
    };
    if body.key.is_empty() {
        return Err(ApiError::Validation(vec![FieldError::value(
            "key",
            "must be the API key (not empty)",
        )]));
    }
    if let Some(retry_after) = state.wrong_keys.blocked(client) {
        tracing::warn!(reason = "too_many_wrong_keys", "inbox.sign_in_refused");
        state.metrics.refuse("too_many_wrong_keys");
        return Err(ApiError::TooManyWrongKeys(retry_after));
    }
    let Some((cookie, session)) = state.sessions.sign_in(&body.key, expected) else {
        state.wrong_keys.record(client);
        tracing::warn!(reason = "wrong_key", "inbox.sign_in_refused");
        return Err(ApiError::WrongKey);
    };
    tracing::info!("inbox.signed_in");
    let mut response = session_body(&state, Some(&session)).into_response();
    let cookie = set_cookie(&cookie, state.sessions.ttl(), secure(&headers));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `DELETE /inbox/session`: signs this browser out (the session is revoked, the cookie
/// cleared). Needs the session's CSRF token, like every state-changing call.
pub async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(session) = state.sessions.from_headers(&headers) {
        if let Err(refused) = state.sessions.check_csrf(&headers, &session) {
            return refused.into_response();
        }
        state.sessions.revoke(&session);
        tracing::info!("inbox.signed_out");
    }
    let mut response = Json(json!({"signed_out": true})).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", Duration::ZERO, secure(&headers)),
    );
    response
}

/// Whether the browser reached us over HTTPS (a tunnel or proxy in front says so), so the
/// cookie can be marked `Secure`. On plain `http://localhost` a `Secure` cookie would be lost.
fn secure(headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("https://"));
    forwarded || origin
}

fn set_cookie(value: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        ttl.as_secs()
    );
    HeaderValue::from_str(&cookie).expect("a session value is hex, digits and dots")
}
