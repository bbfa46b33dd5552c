//! `X-Hub-Signature-256` verification.
//!
//! Meta signs the exact bytes it sends with HMAC-SHA256 keyed by the app secret. We verify over those
//! raw bytes, before any JSON parsing: re-serialized JSON differs (Meta escapes non-ASCII as `\uXXXX`
//! and `/` as `\/`), so checking a parsed-then-reprinted body would reject genuine deliveries. The
//! comparison is constant time (`Mac::verify_slice`).
//!
//! One fallback, as whatsapp-api-js does: if a proxy in front of us decoded the escapes (the body
//! then holds non-ASCII UTF-8), we re-escape every character above `~` the way Meta does and try once
//! more. An attacker gains nothing from this: the fallback still needs a valid HMAC.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header Meta puts the signature in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// Header present but not `sha256=` followed by 64 hex digits.
    #[error("X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits")]
    Malformed,
    /// Well-formed, but not the HMAC of this body under our app secret.
    #[error("X-Hub-Signature-256 does not match the request body")]
    Mismatch,
}

impl SignatureError {
    /// Short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// The decoded 32-byte digest from an `X-Hub-Signature-256` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureHeader([u8; 32]);

impl SignatureHeader {
    /// Parses `sha256=<64 hex digits>` (hex in either case; Meta sends lowercase).
    pub fn parse(value: &[u8]) -> Result<Self, SignatureError> {
        let hex_digest = value
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| SignatureError::Malformed)?;
        Ok(Self(digest))
    }
}

/// The Meta app secret, ready to verify signatures. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct AppSecret {
    mac: HmacSha256,
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecret([REDACTED])")
    }
}

impl AppSecret {
    /// Keys the HMAC once; every request clones the keyed state instead of re-deriving it.
    pub fn new(secret: &SecretString) -> Self {
        let mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        Self { mac }
    }

    /// Checks `header` (the raw `X-Hub-Signature-256` value, if any) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let signature = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
        if self.matches(&signature, body) {
            return Ok(());
        }
        // A proxy may have decoded Meta's \uXXXX escapes; retry over the re-escaped form.
        if !body.is_ascii()
            && let Ok(text) = std::str::from_utf8(body)
            && self.matches(&signature, escape_non_ascii(text).as_bytes())
        {
            return Ok(());
        }
        Err(SignatureError::Mismatch)
    }

    /// Signs `body` as Meta would: `sha256=<lowercase hex>`. Used by tests, the benchmark's load
    /// generator and the webhook simulator.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn matches(&self, signature: &SignatureHeader, body: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(&signature.0).is_ok()
    }
}

/// Escapes every character above `~` as `\uXXXX` (lowercase hex, UTF-16 code units), the form
/// Meta's wire JSON uses.
fn escape_non_ascii(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c <= '~' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> AppSecret {
        AppSecret::new(&SecretString::from("app-secret"))
    }

    #[test]
    fn signature_of_the_exact_body_is_accepted() {
        let body = br#"{"entry":[{"id":"caf\u00e9 \/"}]}"#;
        let header = secret().sign(body);
        assert_eq!(secret().verify(Some(header.as_bytes()), body), Ok(()));
    }

    #[test]
    fn known_vector_matches_openssl() {
        // printf '{"a":1}' | openssl dgst -sha256 -hmac app-secret
        let header = secret().sign(br#"{"a":1}"#);
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert!(header.starts_with("sha256="));
        let upper = header.to_uppercase().replacen("SHA256=", "sha256=", 1);
        assert_eq!(
            secret().verify(Some(upper.as_bytes()), br#"{"a":1}"#),
            Ok(())
        );
    }

    #[test]
    fn missing_malformed_and_wrong_signatures_are_refused() {
        let body = b"{}";
        let good = secret().sign(body);
        assert_eq!(secret().verify(None, body), Err(SignatureError::Missing));
        assert_eq!(
            secret().verify(Some(b""), body),
            Err(SignatureError::Malformed)
        );
        let sha1 = good.replacen("sha256=", "sha1=", 1);
        assert_eq!(
            secret().verify(Some(sha1.as_bytes()), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            secret().verify(Some(&good.as_bytes()[..good.len() - 2]), body),
            Err(SignatureError::Malformed)
        );
        let other = AppSecret::new(&SecretString::from("other")).sign(body);
        assert_eq!(
            secret().verify(Some(other.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            secret().verify(Some(good.as_bytes()), b"{ }"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn body_decoded_by_a_proxy_still_verifies() {
        let wire = r#"{"body":"caf\u00e9 \ud83d\ude00"}"#;
        let decoded = "{\"body\":\"café 😀\"}";
        let header = secret().sign(wire.as_bytes());
        assert_eq!(escape_non_ascii(decoded), wire);
        assert_eq!(
            secret().verify(Some(header.as_bytes()), decoded.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", secret()), "AppSecret([REDACTED])");
    }
}
