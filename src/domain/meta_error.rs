//! [`MetaError`]: the error object Meta puts in webhooks (`value.errors[]`, a message's `errors`,
//! a failed status's `errors`) and in Graph error answers: `{code, title, message,
//! error_data{details}, href}`. Every field is optional on the wire; what is present is kept.
//! [`hint`]: what to do about the codes people meet most, for API answers and failed statuses.

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
    /// Our short advice for the code ([`hint`]), added to a failed status's errors when it is
    /// recorded (Meta sends no such field), so whoever shows the failure can say what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl MetaError {
    /// This error with [`hint`] for its code, when there is one.
    #[must_use]
    pub fn with_hint(self) -> Self {
        let hint = self.code.and_then(hint).map(str::to_owned);
        Self { hint, ..self }
    }
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

/// Short advice for the codes people meet most; `None` for the others.
pub fn hint(code: i64) -> Option<&'static str> {
    Some(match code {
        131047 => {
            "More than 24 hours have passed since the user last wrote: only a template can reach them now. Send a template (type \"template\")."
        }
        131026 => {
            "Meta could not deliver to this user: the number may not be on WhatsApp, the user may use an old app version or not have accepted the terms, or they blocked this business. Do not retry."
        }
        131030 => {
            "The recipient is not in the test number's allowed list: add it in the App Dashboard (WhatsApp > API Setup > To), in the exact form WhatsApp shows (some countries, e.g. MX and AR, differ from the dialled form)."
        }
        131050 => {
            "The user stopped marketing messages from this business. Honour the opt-out; do not retry."
        }
        131053 => {
            "Meta could not use the media: check its type and size (images JPEG/PNG, audio as audio/ogg; codecs=opus, stickers WebP) and upload it again."
        }
        131062 => {
            "This message cannot be sent to a business-scoped user id (BSUID): send it to the user's phone number if you know it."
        }
        190 => {
            "The access token is expired or invalid: create a new one (a system-user token does not expire) and set ACCESS_TOKEN (or ACCESS_TOKEN_<phone_number_id>), then restart."
        }
        100 | 131008 | 131009 => "A parameter is missing or invalid: error_data.details names it.",
        130429 => "Meta's throughput limit for this number was reached: send more slowly.",
        131056 => {
            "Too many messages to this user in a short time: wait before sending to them again (about one message per 6 seconds)."
        }
        131057 => {
            "The number is in maintenance (its throughput is being upgraded): retry in a minute."
        }
        133010 => {
            "The phone number is not registered on the Cloud API: register it (POST /{phone_number_id}/register) first."
        }
        132018 => {
            "A template parameter has a line break, a tab or more than 4 consecutive spaces: Meta refuses them there. Send each line as its own parameter, or put the text in the template."
        }
        132000..=132016 => {
            "The template parameters do not match the approved template (count, format, or a paused/disabled template): check GET /v1/templates."
        }
        _ => return None,
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
