//! [`MetaError`]: the error object Meta puts in webhooks (`value.errors[]`, a message's `errors`,
//! a failed status's `errors`) and in Graph error answers: `{code, title, message,
//! error_data{details}, href}`. Every field is optional on the wire; what is present is kept.

use serde::{Deserialize, Serialize};

/// One of Meta's error objects, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaError {
    /// Meta's numeric code, e.g. 131047 (24-hour window closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Short title, e.g. "Re-engagement message".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Longer message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `error_data.details`, flattened.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "details",
        alias = "error_data",
        deserialize_with = "details"
    )]
    pub details: Option<String>,
    /// Link to Meta's documentation of the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

/// Reads `error_data: {details: "..."}` (the wire form) or `details: "..."` (the stored form).
fn details<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Data {
            #[serde(default)]
            details: Option<String>,
        },
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Wire>::deserialize(d)? {
        Some(Wire::Text(s)) => Some(s),
        Some(Wire::Data { details }) => details,
        Some(Wire::Other(_)) | None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_error_data_is_flattened_and_round_trips() {
        let wire = r#"{"code":131047,"title":"Re-engagement message","message":"More than 24 hours","error_data":{"details":"Message failed to send"},"href":"/documentation/x"}"#;
        let e: MetaError = serde_json::from_str(wire).unwrap();
        assert_eq!(e.code, Some(131047));
        assert_eq!(e.details.as_deref(), Some("Message failed to send"));
        let stored = serde_json::to_string(&e).unwrap();
        assert!(stored.contains(r#""details":"Message failed to send""#));
        assert_eq!(serde_json::from_str::<MetaError>(&stored).unwrap(), e);
    }

    #[test]
    fn odd_shapes_do_not_fail() {
        let e: MetaError = serde_json::from_str(r#"{"error_data":7,"extra":true}"#).unwrap();
        assert_eq!(e, MetaError::default());
    }
}
