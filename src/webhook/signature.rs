//! `X-Hub-Signature-256` verification.
//!
//! Meta signs the exact bytes it sends with HMAC-SHA256 keyed by the app secret. We verify over those
//! raw bytes, before any JSON parsing: re-serialized JSON differs (Meta escapes non-ASCII as `\uXXXX`
//! and `/` as `\/`), so checking a parsed-then-reprinted body would reject genuine deliveries. The
//! comparison is constant time (`Mac::verify_slice`).
//!
//! The HTTP edge hashes the body while it arrives ([`AppSecret::hasher`]), so a webhook costs one
//! pass over its bytes and the check itself is a 32-byte comparison ([`AppSecret::verify_digest`]).
//!
//! One opt-in fallback (SIGNATURE_UNICODE_FALLBACK, as whatsapp-api-js does): if a proxy in front
//! of us decoded the escapes (the body then holds non-ASCII UTF-8), we re-escape every character
//! above `~` the way Meta does and try once more. An attacker cannot forge anything with it (it
//! still needs a valid HMAC), but every wrong signature on a non-ASCII body costs a second pass, so
//! it is off by default; the pass streams into the HMAC (no copy of the body), linear in its size.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Header Meta puts the signature in (a `HeaderName`, so looking it up does not parse a string on
/// every webhook).
pub const SIGNATURE_HEADER: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-hub-signature-256");

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
    unicode_fallback: bool,
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecret([REDACTED])")
    }
}

/// The HMAC-SHA256 of a whole body under the app secret, computed while the body arrived.
#[derive(Clone, Copy)]
pub struct BodyDigest([u8; 32]);

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyDigest(..)")
    }
}

/// An HMAC over a body that arrives in chunks ([`AppSecret::hasher`]).
#[derive(Clone)]
pub struct BodyHasher(HmacSha256);

impl BodyHasher {
    /// Feeds the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> BodyDigest {
        BodyDigest(self.0.finalize().into_bytes().into())
    }
}

impl AppSecret {
    /// Keys the HMAC once; every request clones the keyed state instead of re-deriving it. The
    /// unicode-escape fallback is off.
    pub fn new(secret: &SecretString) -> Self {
        let mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        Self {
            mac,
            unicode_fallback: false,
        }
    }

    /// Turns the unicode-escape fallback (SIGNATURE_UNICODE_FALLBACK) on or off.
    pub fn with_unicode_fallback(mut self, enabled: bool) -> Self {
        self.unicode_fallback = enabled;
        self
    }

    /// An incremental hasher keyed with the secret.
    pub fn hasher(&self) -> BodyHasher {
        BodyHasher(self.mac.clone())
    }

    /// Checks `header` (the raw `X-Hub-Signature-256` value, if any) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let mut hasher = self.hasher();
        hasher.update(body);
        self.verify_digest(header, &hasher.finish(), body)
    }

    /// Checks `header` against `digest`, the HMAC of `body` computed while it arrived. `body` is
    /// only read again by the unicode-escape fallback, when that is on.
    pub fn verify_digest(
        &self,
        header: Option<&[u8]>,
        digest: &BodyDigest,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let signature = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
        if bool::from(signature.0.ct_eq(&digest.0)) {
            return Ok(());
        }
        // A proxy may have decoded Meta's \uXXXX escapes; retry over the re-escaped form.
        if self.unicode_fallback
            && !body.is_ascii()
            && let Ok(text) = std::str::from_utf8(body)
        {
            let mut hasher = self.hasher();
            escape_non_ascii_into(text, &mut hasher);
            if bool::from(signature.0.ct_eq(&hasher.finish().0)) {
                return Ok(());
            }
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
}

/// Writes `c` as JSON `\uXXXX` escapes, the form Meta's wire JSON uses: lowercase hex, one
/// 6-byte escape per UTF-16 code unit (two, a surrogate pair, for a character beyond the BMP),
/// each handed to `put`. Also used by the simulator's wire form.
pub(crate) fn unicode_escape(c: char, mut put: impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        let u = *unit as usize;
        put(&[
            b'\\',
            b'u',
            HEX[u >> 12],
            HEX[(u >> 8) & 0xf],
            HEX[(u >> 4) & 0xf],
            HEX[u & 0xf],
        ]);
    }
}

/// Feeds `text` to `hasher` with every character above `~` escaped as `\uXXXX`
/// ([`unicode_escape`]). ASCII runs go in as slices of the input; nothing is copied but the 6 or
/// 12 bytes of one escape.
fn escape_non_ascii_into(text: &str, hasher: &mut BodyHasher) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    for (i, c) in text.char_indices() {
        if c <= '~' {
            continue;
        }
        hasher.update(&bytes[run_start..i]);
        run_start = i + c.len_utf8();
        unicode_escape(c, |escape| hasher.update(escape));
    }
    hasher.update(&bytes[run_start..]);
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
    fn body_decoded_by_a_proxy_verifies_only_with_the_fallback_on() {
        let wire = r#"{"body":"caf\u00e9 \ud83d\ude00"}"#;
        let decoded = "{\"body\":\"café 😀\"}";
        let header = secret().sign(wire.as_bytes());
        let mut hasher = secret().hasher();
        escape_non_ascii_into(decoded, &mut hasher);
        let mut expected = secret().hasher();
        expected.update(wire.as_bytes());
        assert_eq!(hasher.finish().0, expected.finish().0);
        assert_eq!(
            secret().verify(Some(header.as_bytes()), decoded.as_bytes()),
            Err(SignatureError::Mismatch),
            "off by default"
        );
        let fallback = secret().with_unicode_fallback(true);
        assert_eq!(
            fallback.verify(Some(header.as_bytes()), decoded.as_bytes()),
            Ok(())
        );
        // The fallback never accepts a body whose escaped form was not signed.
        let other = "{\"body\":\"cafe 😀\"}";
        assert_eq!(
            fallback.verify(Some(header.as_bytes()), other.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn digest_computed_in_chunks_equals_the_whole_body_digest() {
        let body = br#"{"entry":[{"changes":[]}],"pad":"0123456789"}"#;
        let header = secret().sign(body);
        for split in [0, 1, 7, body.len()] {
            let mut hasher = secret().hasher();
            hasher.update(&body[..split]);
            hasher.update(&body[split..]);
            let digest = hasher.finish();
            assert_eq!(
                secret().verify_digest(Some(header.as_bytes()), &digest, body),
                Ok(())
            );
        }
        let mut wrong = secret().hasher();
        wrong.update(b"{}");
        assert_eq!(
            secret().verify_digest(Some(header.as_bytes()), &wrong.finish(), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn one_lowercase_escape_per_utf16_unit() {
        let escaped = |c| {
            let mut out = Vec::new();
            unicode_escape(c, |escape| out.extend_from_slice(escape));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(escaped('é'), r"\u00e9");
        assert_eq!(escaped('\u{1f600}'), r"\ud83d\ude00");
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", secret()), "AppSecret([REDACTED])");
    }
}
