//! [`GraphError`]: every way a Graph API call can fail, with Meta's own error kept intact.
//!
//! The `Display` texts are what clients read in a 502/503/504 `detail` and what `send.error`
//! logs: each names the reason, and none carries the access token or a query string.
//!
//! [`GraphError::class`] sorts a failure by Meta's error **code** (never by the HTTP status, which
//! Meta does not fix for throttling codes) into what a client can do about it, and [`hint`] gives
//! the short advice for the codes people meet most.

use std::time::Duration;

use serde_json::Value;

/// Largest Graph API response read into memory; a larger one is a [`GraphError::TooLarge`].
/// Meta's answers to a send are a few hundred bytes.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A failed Graph API call.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// ACCESS_TOKEN or PHONE_NUMBER_ID is missing.
    #[error("sending is not configured: set {0}")]
    NotConfigured(&'static str),
    /// Meta answered with an error status. `body` is Meta's JSON (`{"error": {...}}`) verbatim.
    #[error("Graph API answered {status}: {}", summary(.body))]
    Rejected {
        status: u16,
        body: Value,
        /// Meta's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No answer within GRAPH_TIMEOUT_SECS.
    #[error("Graph API did not answer in time")]
    Timeout,
    /// Could not connect, or the connection broke. `cause` is short and human (e.g. `connection
    /// refused`); `base` is GRAPH_API_BASE without credentials or query.
    #[error("Graph API unreachable: {cause} (GRAPH_API_BASE {base})")]
    Unreachable {
        cause: String,
        base: String,
        /// Whether the request may have reached Meta: false when no connection was made (DNS,
        /// refused, TLS handshake), so a send certainly did not happen and may be retried.
        maybe_sent: bool,
    },
    /// Meta (or something in between) answered a redirect. Redirects are never followed: a
    /// followed 302 turns the POST into a GET that "succeeds" without sending, and a followed 307
    /// re-sends the text and the token to another host. Only the target's host is kept.
    #[error(
        "Graph API answered a redirect ({status}{}); it was not followed and the message was not sent",
        .location_host.as_deref().map(|h| format!(" to {h}")).unwrap_or_default()
    )]
    Redirected {
        status: u16,
        location_host: Option<String>,
    },
    /// The response body exceeded [`MAX_RESPONSE_BYTES`]; reading stopped there.
    #[error(
        "Graph API response too large (status {status}, over {MAX_RESPONSE_BYTES} bytes); it was not read"
    )]
    TooLarge { status: u16 },
    /// Meta answered 2xx with something that is not JSON.
    #[error("Graph API sent an unreadable response (status {status})")]
    InvalidResponse { status: u16 },
    /// The number's send rate (SEND_RATE_PER_SECOND) is taken for longer than a send may wait
    /// (GRAPH_TIMEOUT_SECS): the send was not made, and may be made after `wait`.
    #[error(
        "too many sends are queued for this business number (SEND_RATE_PER_SECOND): its next free slot is {} ms away; the message was not sent, retry after Retry-After",
        .wait.as_millis()
    )]
    Paced { wait: Duration },
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
            Self::Unreachable { .. } => "unreachable",
            Self::Redirected { .. } => "redirected",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Paced { .. } => "paced",
        }
    }

    /// True for a rejection that the client must see verbatim (Meta's 4xx: the drop-in contract).
    pub fn is_client_rejection(&self) -> bool {
        matches!(self, Self::Rejected { status, .. } if *status < 500)
    }

    /// Whether a send that failed this way may nevertheless have reached Meta (and may be
    /// delivered): a timeout after the request was written, a connection broken mid-answer, a
    /// Meta 5xx, or an answer we could not read. Such a send is never retried blindly.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::NotConfigured(_) | Self::Redirected { .. } | Self::Paced { .. } => false,
            Self::Unreachable { maybe_sent, .. } => *maybe_sent,
            Self::Timeout | Self::TooLarge { .. } | Self::InvalidResponse { .. } => true,
            // By Meta's code, not the HTTP status: "something went wrong" codes may come with a
            // 4xx, and a 5xx may carry a code that says the request itself was refused.
            Self::Rejected { .. } => self.class() == Class::Upstream,
        }
    }

    /// What a client can do about the failure, from Meta's error code.
    pub fn class(&self) -> Class {
        let Self::Rejected {
            status,
            retry_after,
            ..
        } = self
        else {
            if let Self::Paced { wait } = self {
                return Class::Throttled { wait: *wait };
            }
            return Class::Upstream;
        };
        let code = self.meta_code();
        let wait = |default: u64| retry_after.unwrap_or(Duration::from_secs(default));
        match code {
            Some(130429) => Class::Throttled { wait: wait(1) },
            Some(131057) => Class::Throttled { wait: wait(60) },
            Some(4 | 80007) => Class::Throttled { wait: wait(60) },
            Some(131056) => Class::PairRate { wait: wait(6) },
            Some(0 | 190) => Class::Credentials,
            Some(3 | 10 | 200..=299) => Class::Permission,
            Some(132000..=132016 | 132018 | 132068 | 132069) => Class::Template,
            Some(1 | 2 | 131000 | 131016) => Class::Upstream,
            _ if *status >= 500 => Class::Upstream,
            _ => Class::Invalid,
        }
    }

    /// Meta's error object (`error` of the body), when Meta sent one.
    pub fn meta_error(&self) -> Option<&Value> {
        match self {
            Self::Rejected { body, .. } => body.get("error").filter(|e| e.is_object()),
            _ => None,
        }
    }
}

/// What a client can do about a failed Graph call; see [`GraphError::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The request breaks one of Meta's rules (100, 131008, 131009, 131026, 131047, 131053, ...):
    /// fix it; retrying the same request fails the same way.
    Invalid,
    /// Meta asked to slow down (130429 throughput, 131057 throughput upgrade, 4/80007 API-call
    /// limits): the same request may be sent again after `wait`.
    Throttled { wait: Duration },
    /// Too many messages to this one user (131056): wait before the next one to them.
    PairRate { wait: Duration },
    /// The access token is expired or invalid (190, 0): a configuration problem on our side.
    Credentials,
    /// The token lacks a permission (3, 10, 200-299): a configuration problem on our side.
    Permission,
    /// A template does not match what was approved, is paused or disabled (132000-132016), or
    /// a parameter has line breaks (132018).
    Template,
    /// Meta failed (5xx, 1, 2, 131000, 131016), or the call failed on the way.
    Upstream,
}

/// Short advice for the codes people meet most (kept with Meta's error object, in the domain).
pub use crate::domain::meta_error::hint;

fn summary(body: &Value) -> String {
    let error = &body["error"];
    match (error["code"].as_i64(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("code {code}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => "no error details".to_owned(),
    }
}

/// A short human cause for a transport failure, from the error's `source()` chain: DNS failure,
/// connection refused / reset / timed out, TLS or certificate problem (`https` says whether the
/// connection was TLS), connection closed early. TLS causes carry the TLS library's own reason
/// (e.g. `invalid peer certificate: UnknownIssuer`); otherwise an unclassified failure falls back
/// to the innermost error's text (reqwest's outer text, which names the URL, is never used).
pub fn transport_cause(error: &(dyn std::error::Error + 'static), https: bool) -> String {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        chain.push(e);
        // An io::Error's source() skips the error it wraps; descend into that one instead.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    let innermost = chain
        .last()
        .filter(|_| chain.len() > 1)
        .map(|e| e.to_string());
    let texts: Vec<String> = chain.iter().map(|e| e.to_string().to_lowercase()).collect();
    let any = |needles: &[&str]| texts.iter().any(|t| needles.iter().any(|n| t.contains(n)));
    if any(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no such host",
    ]) {
        return "DNS failure: could not resolve the host name".to_owned();
    }
    let mut invalid_data = false;
    for e in &chain {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let cause = match io.kind() {
                ConnectionRefused => "connection refused",
                ConnectionReset => "connection reset by the server",
                ConnectionAborted => "connection aborted",
                TimedOut => "connection timed out",
                HostUnreachable => "host unreachable",
                NetworkUnreachable => "network unreachable",
                AddrNotAvailable => "address not available",
                UnexpectedEof => "connection closed before the answer was complete",
                InvalidData => {
                    invalid_data = true;
                    continue;
                }
                _ => continue,
            };
            return cause.to_owned();
        }
    }
    let reason = innermost.as_deref().unwrap_or("handshake failed");
    if any(&["certificate", "unknownissuer", "notvalidforname"]) {
        return format!("TLS/certificate error: {reason}");
    }
    // rustls reports handshake failures as invalid data on the connection.
    if https && (invalid_data || any(&["tls", "handshake"])) {
        return format!("TLS error: {reason}");
    }
    if any(&["connection closed", "incomplete message", "broken pipe"]) {
        return "connection closed before the answer was complete".to_owned();
    }
    innermost.unwrap_or_else(|| "error sending request".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request for url (https://graph.example/x)")]
    struct Outer(#[source] std::io::Error);

    fn cause(inner: std::io::Error, https: bool) -> String {
        transport_cause(&Outer(inner), https)
    }

    #[test]
    fn causes_are_classified_from_the_source_chain() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            cause(Error::from(ErrorKind::ConnectionRefused), false),
            "connection refused"
        );
        assert_eq!(
            cause(Error::from(ErrorKind::ConnectionReset), true),
            "connection reset by the server"
        );
        assert_eq!(
            cause(
                Error::other("dns error: failed to lookup address information"),
                true
            ),
            "DNS failure: could not resolve the host name"
        );
        assert_eq!(
            cause(
                Error::new(
                    ErrorKind::InvalidData,
                    "invalid peer certificate: UnknownIssuer"
                ),
                true
            ),
            "TLS/certificate error: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            cause(
                Error::new(ErrorKind::InvalidData, "received corrupt message"),
                true
            ),
            "TLS error: received corrupt message"
        );
        // Unclassified: the innermost text, never the outer one with the URL.
        let other = cause(Error::other("something odd"), false);
        assert_eq!(other, "something odd");
    }
}
