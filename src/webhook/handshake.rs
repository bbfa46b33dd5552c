//! Meta's subscription handshake: `GET /webhook?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The query Meta sends. All fields are optional here so that a missing one gets a 400 naming it,
/// not axum's generic rejection.
#[derive(Debug, Default, Deserialize)]
pub struct HandshakeQuery {
    #[serde(rename = "hub.mode")]
    pub mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    pub verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    pub challenge: Option<String>,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A `hub.*` parameter is absent (400).
    #[error("missing query parameter {0}")]
    MissingParameter(&'static str),
    /// `hub.mode` is not `subscribe` (403).
    #[error("hub.mode must be 'subscribe'")]
    WrongMode,
    /// Token differs from VERIFY_TOKEN (403).
    #[error("hub.verify_token does not match VERIFY_TOKEN")]
    WrongToken,
    /// VERIFY_TOKEN is not configured, so no token can match (403).
    #[error(
        "VERIFY_TOKEN is not set on the server: set it to the Verify Token entered in Meta's dashboard"
    )]
    NotConfigured,
}

impl HandshakeQuery {
    /// Returns the challenge to echo when the handshake is valid.
    pub fn verify(self, expected: Option<&SecretString>) -> Result<String, HandshakeError> {
        let mode = self
            .mode
            .ok_or(HandshakeError::MissingParameter("hub.mode"))?;
        let token = self
            .verify_token
            .ok_or(HandshakeError::MissingParameter("hub.verify_token"))?;
        let challenge = self
            .challenge
            .ok_or(HandshakeError::MissingParameter("hub.challenge"))?;
        if mode != "subscribe" {
            return Err(HandshakeError::WrongMode);
        }
        let expected = expected.ok_or(HandshakeError::NotConfigured)?;
        if !bool::from(token.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
            return Err(HandshakeError::WrongToken);
        }
        Ok(challenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(mode: Option<&str>, token: Option<&str>, challenge: Option<&str>) -> HandshakeQuery {
        HandshakeQuery {
            mode: mode.map(Into::into),
            verify_token: token.map(Into::into),
            challenge: challenge.map(Into::into),
        }
    }

    #[test]
    fn right_token_echoes_the_challenge() {
        let token = SecretString::from("tok");
        let q = query(Some("subscribe"), Some("tok"), Some("1158201444"));
        assert_eq!(q.verify(Some(&token)).unwrap(), "1158201444");
    }

    #[test]
    fn wrong_token_wrong_mode_and_unset_verify_token_are_refused() {
        let token = SecretString::from("tok");
        let q = query(Some("subscribe"), Some("tok2"), Some("c"));
        assert_eq!(q.verify(Some(&token)), Err(HandshakeError::WrongToken));
        let q = query(Some("unsubscribe"), Some("tok"), Some("c"));
        assert_eq!(q.verify(Some(&token)), Err(HandshakeError::WrongMode));
        let q = query(Some("subscribe"), Some(""), Some("c"));
        assert_eq!(q.verify(None), Err(HandshakeError::NotConfigured));
        let q = query(Some("subscribe"), Some("tok"), Some("c"));
        assert_eq!(q.verify(None), Err(HandshakeError::NotConfigured));
    }

    #[test]
    fn missing_parameters_are_named() {
        let q = query(Some("subscribe"), None, Some("c"));
        assert_eq!(
            q.verify(None),
            Err(HandshakeError::MissingParameter("hub.verify_token"))
        );
    }
}
