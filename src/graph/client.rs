//! [`GraphClient`]: one reqwest client for the whole process (connection pooling, TLS sessions),
//! built at start-up with timeouts from configuration. Tests point `base_url` at a wiremock server.
//!
//! Each send kind is a method that builds Meta's documented body; today only text. The token is sent
//! as `Authorization: Bearer` and never logged.
//!
//! Redirects are never followed (any 3xx is a [`GraphError::Redirected`]), a response is read
//! incrementally up to [`MAX_RESPONSE_BYTES`], and a transport failure names its cause (DNS,
//! refused, reset, TLS, ...) with GRAPH_API_BASE, never the token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::GraphSettings;
use crate::domain::OutboundText;
use crate::graph::GraphError;
use crate::graph::error::{MAX_RESPONSE_BYTES, transport_cause};

/// Client for `POST {GRAPH_API_BASE}/{PHONE_NUMBER_ID}/messages` and friends.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    messages_url: Option<String>,
    access_token: Option<SecretString>,
    /// GRAPH_API_BASE without user info, query or fragment, for error texts.
    base_for_errors: String,
}

/// Meta's text message body.
#[derive(Serialize)]
struct TextMessageBody<'a> {
    messaging_product: &'static str,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    text: TextBody<'a>,
}

#[derive(Serialize)]
struct TextBody<'a> {
    body: &'a str,
}

impl GraphClient {
    /// Builds the client; fails only if the TLS backend cannot initialize.
    pub fn new(settings: &GraphSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("whatsapp-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            messages_url: settings
                .phone_number_id
                .as_ref()
                .map(|id| format!("{}/{id}/messages", settings.base_url)),
            access_token: settings.access_token.clone(),
            base_for_errors: displayable_base(&settings.base_url),
        })
    }

    /// Sends a text message. Returns Meta's response JSON verbatim.
    pub async fn send_text(&self, message: &OutboundText) -> Result<Box<RawValue>, GraphError> {
        self.post_message(&TextMessageBody {
            messaging_product: "whatsapp",
            to: message.to.as_str(),
            kind: "text",
            text: TextBody {
                body: message.text.as_str(),
            },
        })
        .await
    }

    async fn post_message(&self, body: &impl Serialize) -> Result<Box<RawValue>, GraphError> {
        let token = self
            .access_token
            .as_ref()
            .ok_or(GraphError::NotConfigured("ACCESS_TOKEN"))?;
        let url = self
            .messages_url
            .as_ref()
            .ok_or(GraphError::NotConfigured("PHONE_NUMBER_ID"))?;
        let mut response = self
            .http
            .post(url)
            .bearer_auth(token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_redirection() {
            let location_host = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| response.url().join(location).ok())
                .and_then(|target| target.host_str().map(str::to_owned));
            return Err(GraphError::Redirected {
                status: status.as_u16(),
                location_host,
            });
        }
        let bytes = self.read_capped(&mut response).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| GraphError::InvalidResponse {
                status: status.as_u16(),
            });
        }
        // Meta's errors are JSON; a proxy's HTML error page is kept as text so the client sees it.
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            serde_json::json!({ "error": { "message": text } })
        });
        Err(GraphError::Rejected {
            status: status.as_u16(),
            body,
        })
    }

    /// Reads the body chunk by chunk, giving up as soon as it exceeds [`MAX_RESPONSE_BYTES`]
    /// (a declared Content-Length over the cap is refused before reading anything).
    async fn read_capped(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, GraphError> {
        let too_large = GraphError::TooLarge {
            status: response.status().as_u16(),
        };
        let declared = response.content_length().unwrap_or(0);
        if declared > MAX_RESPONSE_BYTES as u64 {
            return Err(too_large);
        }
        let mut bytes = Vec::with_capacity(declared as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    fn transport_error(&self, e: &reqwest::Error) -> GraphError {
        if e.is_timeout() {
            return GraphError::Timeout;
        }
        let https = self.base_for_errors.starts_with("https://");
        GraphError::Unreachable {
            cause: transport_cause(e, https),
            base: self.base_for_errors.clone(),
        }
    }
}

/// GRAPH_API_BASE as it may appear in an error: scheme, host, port and path only.
fn displayable_base(base: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_in_errors_has_no_credentials_or_query() {
        assert_eq!(
            displayable_base("https://user:pw@graph.example.com/v22.0?access_token=x#f"),
            "https://graph.example.com/v22.0"
        );
        assert_eq!(displayable_base("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }
}
