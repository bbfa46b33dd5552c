//! [`GraphClient`]: one reqwest client for the whole process (connection pooling, TLS sessions),
//! built at start-up with timeouts from configuration. Tests point `base_url` at a wiremock server.
//!
//! Each send kind is a method that builds Meta's documented body; today only text. The token is sent
//! as `Authorization: Bearer` and never logged.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::GraphSettings;
use crate::domain::OutboundText;
use crate::graph::GraphError;

/// Client for `POST {GRAPH_API_BASE}/{PHONE_NUMBER_ID}/messages` and friends.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    messages_url: Option<String>,
    access_token: Option<SecretString>,
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
            .build()?;
        Ok(Self {
            http,
            messages_url: settings
                .phone_number_id
                .as_ref()
                .map(|id| format!("{}/{id}/messages", settings.base_url)),
            access_token: settings.access_token.clone(),
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
        let response = self
            .http
            .post(url)
            .bearer_auth(token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
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
}

fn transport_error(e: reqwest::Error) -> GraphError {
    if e.is_timeout() {
        GraphError::Timeout
    } else {
        // Without the URL: it is ours, not news to the caller, and keeps error bodies short.
        GraphError::Unreachable(e.without_url().to_string())
    }
}
