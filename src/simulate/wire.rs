//! Meta's byte form of a webhook body, and the random parts of a payload.
//!
//! [`to_wire`] writes JSON the way Meta's servers do: ASCII only (every character above `~` as a
//! `\uXXXX` escape with lowercase hex, astral characters as UTF-16 surrogate pairs), `/` as `\/`,
//! no whitespace, and keys in the order Meta's samples use (`value` before `field`, `from` and
//! `id` before `type`, ...). A receiver that re-serializes such a body before checking
//! `X-Hub-Signature-256` fails on it, as it would on Meta's. (`serde_json::Value` sorts its keys,
//! so the order is restored here from a fixed ranking; keys it does not rank follow, sorted.)
//!
//! [`Rng`] is a small SplitMix64 generator: payloads need unique, plausible ids, not secrets.

use std::hash::{BuildHasher, RandomState};

use serde_json::Value;

use crate::webhook::signature::unicode_escape;

/// Keys in the order Meta's payloads list them; a key's rank only matters against the other
/// keys of the same object.
const KEY_ORDER: &[&str] = &[
    "object",
    "entry",
    "from",
    "from_user_id",
    "from_parent_user_id",
    "to",
    "to_user_id",
    "id",
    "time",
    "changes",
    "value",
    "field",
    "messaging_product",
    "metadata",
    "display_phone_number",
    "phone_number_id",
    "contacts",
    "profile",
    "name",
    "username",
    "wa_id",
    "user_id",
    "parent_user_id",
    "messages",
    "message_echoes",
    "statuses",
    "status",
    "timestamp",
    "recipient_id",
    "recipient_user_id",
    "type",
];

fn rank(key: &str) -> usize {
    KEY_ORDER
        .iter()
        .position(|k| *k == key)
        .unwrap_or(KEY_ORDER.len())
}

/// `value` as Meta's wire bytes (see the module doc).
pub fn to_wire(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Stable: unranked keys keep the map's (sorted) order.
            entries.sort_by_key(|(k, _)| rank(k));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' => out.extend_from_slice(b"\\/"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => unicode_escape(c, |escape| out.extend_from_slice(escape)),
        }
    }
    out.push(b'"');
}

/// A SplitMix64 generator for ids, hashes and challenges (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the process's hash randomness, the clock and the process id: two runs (or
    /// two generators of one run) produce different ids.
    pub fn from_entropy() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self(RandomState::new().hash_one((now, std::process::id())))
    }

    /// A fixed sequence, for reproducible payloads.
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// `n` decimal digits, the first not zero (media ids, challenges, BSUID bodies).
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|i| {
                let d = if i == 0 {
                    1 + self.next_u64() % 9
                } else {
                    self.next_u64() % 10
                };
                char::from(b'0' + d as u8)
            })
            .collect()
    }

    /// `n` upper-case hex digits (the random part of a wamid).
    pub fn hex_upper(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789ABCDEF"[(self.next_u64() % 16) as usize]))
            .collect()
    }
}

/// Standard base64 with padding (the alphabet of wamids and of Meta's `sha256` fields).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A message id in Meta's form: `wamid.` + base64 of a small binary record holding the user's
/// number (or BSUID) and a random hex part; inbound ids and the ids of the business's own
/// messages differ in that record, as Meta's do.
pub fn wamid(rng: &mut Rng, user: &str, outbound: bool) -> String {
    let user = &user.as_bytes()[..user.len().min(255)];
    let mut record = vec![0x1c, 0x18, user.len() as u8];
    record.extend_from_slice(user);
    let random_len = if outbound { 18 } else { 20 };
    record.extend_from_slice(&[0x15, 0x02, 0x00, if outbound { 0x11 } else { 0x12 }, 0x18]);
    record.push(random_len as u8);
    record.extend_from_slice(rng.hex_upper(random_len).as_bytes());
    record.push(0x00);
    format!("wamid.{}", base64(&record))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wire_form_escapes_non_ascii_and_slashes_like_meta() {
        let value = json!({"text": {"body": "café 😀 a/b \"q\"\n"}});
        let wire = String::from_utf8(to_wire(&value)).unwrap();
        assert_eq!(
            wire,
            r#"{"text":{"body":"caf\u00e9 \ud83d\ude00 a\/b \"q\"\n"}}"#
        );
        assert!(wire.is_ascii());
        // It is still the same JSON.
        assert_eq!(serde_json::from_str::<Value>(&wire).unwrap(), value);
    }

    #[test]
    fn wire_form_puts_keys_in_meta_s_order() {
        let value = json!({"field": "messages", "value": {"messages": [
            {"type": "text", "timestamp": "1", "text": {"body": "x"}, "id": "wamid.A", "from": "1"}
        ], "metadata": {}, "messaging_product": "whatsapp"}});
        let wire = String::from_utf8(to_wire(&value)).unwrap();
        assert_eq!(
            wire,
            r#"{"value":{"messaging_product":"whatsapp","metadata":{},"messages":[{"from":"1","id":"wamid.A","timestamp":"1","type":"text","text":{"body":"x"}}]},"field":"messages"}"#
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn wamids_look_like_meta_s() {
        let mut rng = Rng::seeded(7);
        let inbound = wamid(&mut rng, "16505551234", false);
        // The same prefix as a real inbound wamid from this number.
        assert!(
            inbound.starts_with("wamid.HBgLMTY1MDU1NTEyMzQVAgASGB"),
            "{inbound}"
        );
        assert!(inbound.ends_with("A="), "{inbound}");
        let outbound = wamid(&mut rng, "16505551234", true);
        assert!(
            outbound.starts_with("wamid.HBgLMTY1MDU1NTEyMzQVAgARGB"),
            "{outbound}"
        );
        assert_ne!(wamid(&mut rng, "16505551234", false), inbound);
    }

    #[test]
    fn digits_never_start_with_zero() {
        let mut rng = Rng::seeded(1);
        for _ in 0..200 {
            let d = rng.digits(3);
            assert_eq!(d.len(), 3);
            assert!(!d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
