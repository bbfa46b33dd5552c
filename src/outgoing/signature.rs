//! The Standard Webhooks (v1.0.0) symmetric signature our outgoing deliveries carry, and the
//! signing secrets (`whsec_` + base64 of 24-64 random bytes).
//!
//! Signed content: `{webhook-id}.{webhook-timestamp}.{body}`, the body exactly as sent;
//! signature: `base64(HMAC-SHA256(key, content))` where the key is the base64-decoded part after
//! `whsec_`; header: `webhook-signature: v1,<sig>`, space-separated when two secrets are valid
//! (rotation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret.
const GENERATED_BYTES: usize = 32;

/// A subscription's signing secret: its text form (`whsec_...`) and the HMAC key it names.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_BYTES];
        getrandom::fill(&mut key).expect("the operating system's random source is available");
        Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)),
            key,
        }
    }

    /// Parses `whsec_<base64 of 24 to 64 bytes>`; the error says what is wrong (never echoing
    /// the value).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or("must start with whsec_ (then the base64 of 24 to 64 random bytes)")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "must be whsec_ followed by standard base64 (A-Z a-z 0-9 + / =)")?;
        if !(24..=64).contains(&key.len()) {
            return Err("must encode 24 to 64 random bytes after whsec_");
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The secret as users see it (`whsec_...`): show it once, never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

/// The `webhook-signature` header value: `v1,<sig>` for each secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a SigningSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|s| format!("v1,{}", s.sign(id, timestamp, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_test_vector_verifies() {
        // From the Standard Webhooks reference library's tests (../shared/meta-formats.md §15).
        let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            signature_header(
                [&secret],
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                body
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn the_readme_test_vector_verifies() {
        // The vector README.md gives receivers ("Outgoing webhooks").
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"id":"1763940000000-0-0","type":"message_incoming","timestamp":"2025-11-23T23:20:00.000Z","data":{"id":"wamid.XXX"}}"#;
        assert_eq!(
            signature_header([&secret], "1763940000000-0-0", 1763940000, body),
            "v1,ehPnIPKiRZcWGagozBLJr96YJBDMPLTtN6lJOnpo1mU="
        );
        let readme = include_str!("../../README.md");
        assert!(readme.contains("v1,ehPnIPKiRZcWGagozBLJr96YJBDMPLTtN6lJOnpo1mU="));
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let (a, b) = (SigningSecret::generate(), SigningSecret::generate());
        let header = signature_header([&a, &b], "1", 5, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [
                format!("v1,{}", a.sign("1", 5, b"{}")),
                format!("v1,{}", b.sign("1", 5, b"{}"))
            ]
        );
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn generated_secrets_parse_back_and_bad_ones_say_why() {
        let secret = SigningSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(secret.expose()).unwrap(), secret);
        assert_ne!(SigningSecret::generate(), secret);
        assert!(
            SigningSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
                .unwrap_err()
                .contains("whsec_")
        );
        assert!(
            SigningSecret::parse("whsec_!!!")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            SigningSecret::parse("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("24 to 64")
        );
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }
}
