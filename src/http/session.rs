//! Inbox sessions: the API key exchanged once for an HttpOnly, SameSite=Strict cookie, and the
//! CSRF token that every state-changing request signed in by that cookie must carry.
//!
//! A session is a signed value, not a server-side row: `<expiry>.<nonce>.<mac>`, where `mac` is
//! HMAC-SHA256 over `expiry.nonce` under a key derived from API_KEY and a random secret drawn at
//! start-up. So a session ends when it expires, when the process restarts (new secret) or when
//! API_KEY changes, and signing out revokes its nonce in this process (a small set, pruned as
//! sessions expire). Sessions are per instance: behind a load balancer, pin the inbox to one
//! instance (sticky sessions) or sign in again after a switch.
//!
//! The CSRF token is a second HMAC over the nonce: a page gets it from `GET /inbox/session` (same
//! origin only: SameSite=Strict cookies and no CORS) and sends it as `X-CSRF-Token`. Together with
//! SameSite=Strict and the JSON Content-Type every state-changing route requires, a page on another
//! site cannot act through a signed-in browser. The key itself never leaves the sign-in request:
//! not in a URL, the page, a cookie or the browser's storage. Wrong keys at sign-in are counted
//! per client address, together with wrong keys in API headers ([`crate::http::limiter`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "wg_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in session, as its cookie proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, hex: names the session (CSRF token, revocation).
    pub nonce: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Issues and checks sessions (see the module doc).
pub struct Sessions {
    /// HMAC key: SHA-256 of the start-up secret and API_KEY.
    key: [u8; 32],
    ttl: Duration,
    revoked: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("ttl", &self.ttl).finish()
    }
}

impl Sessions {
    /// Sessions for `api_key` lasting `ttl`, under a fresh random secret.
    pub fn new(api_key: Option<&SecretString>, ttl: Duration) -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random source is available");
        let mut digest = Sha256::new();
        digest.update(secret);
        if let Some(key) = api_key {
            digest.update(key.expose_secret().as_bytes());
        }
        Self {
            key: digest.finalize().into(),
            ttl,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b".");
            }
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks `presented` against `expected` (the API key) and, if it matches, starts a session:
    /// returns the cookie value and the session. (Wrong keys are counted per client address by
    /// the caller: [`crate::http::limiter`].)
    pub fn sign_in(&self, presented: &str, expected: &SecretString) -> Option<(String, Session)> {
        crate::http::auth::key_matches(presented, expected).then(|| self.issue(unix_now()))
    }

    /// A new session starting at `now` (unix seconds).
    fn issue(&self, now: u64) -> (String, Session) {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).expect("the operating system's random source is available");
        let nonce = hex::encode(random);
        let expires_at = now + self.ttl.as_secs();
        let expiry = expires_at.to_string();
        let mac = self.mac(&["session", &expiry, &nonce]);
        (
            format!("{expiry}.{nonce}.{mac}"),
            Session { nonce, expires_at },
        )
    }

    /// The session a cookie value proves, if it is genuine, unexpired and not signed out.
    pub fn verify(&self, cookie: &str) -> Option<Session> {
        self.verify_at(cookie, unix_now())
    }

    fn verify_at(&self, cookie: &str, now: u64) -> Option<Session> {
        let mut parts = cookie.splitn(3, '.');
        let (expiry, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let expected = self.mac(&["session", expiry, nonce]);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let expires_at: u64 = expiry.parse().ok()?;
        if expires_at <= now {
            return None;
        }
        if self
            .revoked
            .lock()
            .expect("not poisoned")
            .contains_key(nonce)
        {
            return None;
        }
        Some(Session {
            nonce: nonce.to_owned(),
            expires_at,
        })
    }

    /// The CSRF token of `session`.
    pub fn csrf(&self, session: &Session) -> String {
        self.mac(&["csrf", &session.nonce])
    }

    /// Whether `token` is `session`'s CSRF token (constant time).
    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(token.as_bytes()))
    }

    /// The session a request's `wg_session` cookie proves, if any.
    pub fn from_headers(&self, headers: &axum::http::HeaderMap) -> Option<Session> {
        cookie_value(headers).and_then(|cookie| self.verify(cookie))
    }

    /// A state-changing request of `session` must carry its `X-CSRF-Token`.
    pub fn check_csrf(
        &self,
        headers: &axum::http::HeaderMap,
        session: &Session,
    ) -> Result<(), crate::http::error::ApiError> {
        let token = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if self.csrf_matches(session, token) {
            Ok(())
        } else {
            tracing::warn!(reason = "csrf", "auth.rejected");
            Err(crate::http::error::ApiError::CsrfMissing)
        }
    }

    /// Signs `session` out in this process.
    pub fn revoke(&self, session: &Session) {
        let now = unix_now();
        let mut revoked = self.revoked.lock().expect("not poisoned");
        revoked.retain(|_, expires_at| *expires_at > now);
        revoked.insert(session.nonce.clone(), session.expires_at);
    }
}

/// The `wg_session` cookie's value among a request's `Cookie` headers.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

fn unix_now() -> u64 {
    u64::try_from(crate::store::view::now_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from("k-123")
    }

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_own_secret() {
        let sessions = Sessions::new(Some(&key()), Duration::from_secs(3600));
        let (cookie, session) = sessions.sign_in("k-123", &key()).unwrap();
        assert_eq!(sessions.verify(&cookie), Some(session.clone()));
        assert_eq!(
            sessions.verify_at(&cookie, session.expires_at - 1),
            Some(session.clone())
        );
        assert_eq!(sessions.verify_at(&cookie, session.expires_at), None);
        // Another process (a restart) or another API_KEY has another secret.
        let restarted = Sessions::new(Some(&key()), Duration::from_secs(3600));
        assert_eq!(restarted.verify(&cookie), None);
        // A changed expiry or nonce breaks the MAC.
        let (expiry, rest) = cookie.split_once('.').unwrap();
        let later = format!("{}.{rest}", expiry.parse::<u64>().unwrap() + 1000);
        assert_eq!(sessions.verify(&later), None);
        for bad in ["", "1.2", "x.y.z", &cookie[..cookie.len() - 1]] {
            assert_eq!(sessions.verify(bad), None, "{bad}");
        }
        // The cookie does not contain the key.
        assert!(!cookie.contains("k-123"));
    }

    #[test]
    fn a_wrong_key_starts_no_session() {
        let sessions = Sessions::new(Some(&key()), Duration::from_secs(60));
        assert_eq!(sessions.sign_in("nope", &key()), None);
        assert!(sessions.sign_in(" k-123 ", &key()).is_some());
    }

    #[test]
    fn csrf_tokens_belong_to_their_session_and_sign_out_revokes() {
        let sessions = Sessions::new(Some(&key()), Duration::from_secs(60));
        let (cookie_a, a) = sessions.sign_in("k-123", &key()).unwrap();
        let (cookie_b, b) = sessions.sign_in("k-123", &key()).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert!(sessions.csrf_matches(&a, &sessions.csrf(&a)));
        assert!(!sessions.csrf_matches(&a, &sessions.csrf(&b)));
        assert!(!sessions.csrf_matches(&a, ""));
        sessions.revoke(&a);
        assert_eq!(sessions.verify(&cookie_a), None);
        assert_eq!(sessions.verify(&cookie_b), Some(b));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("cookie", "a=1; wg_session=v.a.l".parse().unwrap());
        assert_eq!(cookie_value(&headers), Some("v.a.l"));
        headers.clear();
        headers.append("cookie", "wg_sessionx=1".parse().unwrap());
        assert_eq!(cookie_value(&headers), None);
    }
}
