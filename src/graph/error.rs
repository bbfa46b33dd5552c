//! [`GraphError`]: every way a Graph API call can fail, with Meta's own error kept intact.

use serde_json::Value;

/// A failed Graph API call.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// ACCESS_TOKEN or PHONE_NUMBER_ID is missing.
    #[error("sending is not configured: set {0}")]
    NotConfigured(&'static str),
    /// Meta answered with an error status. `body` is Meta's JSON (`{"error": {...}}`) verbatim.
    #[error("Graph API answered {status}: {}", summary(.body))]
    Rejected { status: u16, body: Value },
    /// No answer within GRAPH_TIMEOUT_SECS.
    #[error("Graph API did not answer in time")]
    Timeout,
    /// Could not connect, or the connection broke.
    #[error("Graph API unreachable: {0}")]
    Unreachable(String),
    /// Meta answered 2xx with something that is not JSON.
    #[error("Graph API sent an unreadable response (status {status})")]
    InvalidResponse { status: u16 },
}

impl GraphError {
    /// Meta's numeric error code, when Meta sent one.
    pub fn meta_code(&self) -> Option<i64> {
        match self {
            Self::Rejected { body, .. } => body.pointer("/error/code")?.as_i64(),
            _ => None,
        }
    }

    /// Short label for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "not_configured",
            Self::Rejected { .. } => "rejected",
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::InvalidResponse { .. } => "invalid_response",
        }
    }
}

fn summary(body: &Value) -> String {
    let error = &body["error"];
    match (error["code"].as_i64(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("code {code}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => "no error details".to_owned(),
    }
}
