//! Posting webhooks: one [`Delivery`] (the exact bytes, and the ids they carry) is one POST to a
//! [`Receiver`], signed with the app secret as Meta signs (`X-Hub-Signature-256: sha256=<hex
//! HMAC-SHA256 of the raw body>`, [`AppSecret::sign`]), or unsigned when there is none. The
//! bytes are never re-serialized between signing and sending.
//!
//! [`replay`] turns a file into deliveries: a JSON array becomes one delivery per element (each
//! element's own bytes, as they are in the file), anything else is one delivery of the whole file
//! byte for byte, so hand-edited or captured payloads go out exactly as written.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::simulate::payload::ids_in;
use crate::simulate::wire::to_wire;
use crate::webhook::AppSecret;

/// Longest part of a receiver's answer kept for a report (bytes).
pub const MAX_ANSWER_EXCERPT: usize = 500;

/// One POST: what it is, its exact body and the ids it carries.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// What it carries, for reports (`text from 16505551234`).
    pub label: String,
    /// The body, sent byte for byte.
    pub body: Vec<u8>,
    /// `(role, id)` of every message, echo and status in it.
    pub ids: Vec<(String, String)>,
}

impl Delivery {
    /// A notification in Meta's wire form ([`to_wire`]), its ids read from it.
    pub fn of(label: impl Into<String>, notification: &Value) -> Self {
        Self {
            label: label.into(),
            body: to_wire(notification),
            ids: ids_in(notification),
        }
    }

    /// Bytes as they are (a replayed file); ids read from them when they are JSON.
    pub fn raw(label: impl Into<String>, body: Vec<u8>) -> Self {
        let ids = serde_json::from_slice::<Value>(&body)
            .map(|v| ids_in(&v))
            .unwrap_or_default();
        Self {
            label: label.into(),
            body,
            ids,
        }
    }
}

/// Why a file cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// It starts with `[` but is not a JSON array.
    #[error("{path} starts with '[' but is not a JSON array of payloads: {source}")]
    NotAnArray {
        path: String,
        source: serde_json::Error,
    },
    /// An empty file or an empty array: nothing to post.
    #[error("{path} holds no payload")]
    Empty { path: String },
}

/// The deliveries of a replay of `bytes` (read from `path`): one per element of a JSON array
/// (the element's bytes as written), else the whole content as it is.
pub fn replay(path: &str, bytes: Vec<u8>) -> Result<Vec<Delivery>, ReplayError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| bytes[i]) {
        None => Err(ReplayError::Empty {
            path: path.to_owned(),
        }),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(&bytes).map_err(|source| ReplayError::NotAnArray {
                    path: path.to_owned(),
                    source,
                })?;
            if items.is_empty() {
                return Err(ReplayError::Empty {
                    path: path.to_owned(),
                });
            }
            let count = items.len();
            Ok(items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    Delivery::raw(
                        format!("{path} [{}/{count}]", i + 1),
                        item.get().as_bytes().to_vec(),
                    )
                })
                .collect())
        }
        Some(_) => Ok(vec![Delivery::raw(path.to_owned(), bytes)]),
    }
}

/// What a receiver answered to one POST.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status, `None` when no answer came (connection refused, timeout).
    pub status: Option<reqwest::StatusCode>,
    /// From sending the request to the end of the answer's body.
    pub elapsed: Duration,
    /// The answer's body, at most [`MAX_ANSWER_EXCERPT`] bytes of it (or why none came).
    pub body: String,
}

impl Answer {
    /// The receiver accepted the delivery (any 2xx, as Meta counts it delivered).
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }
}

/// A webhook receiver: its URL, the secret to sign with, and an HTTP client.
#[derive(Debug, Clone)]
pub struct Receiver {
    url: String,
    secret: Option<AppSecret>,
    http: reqwest::Client,
}

impl Receiver {
    /// A receiver at `url`; deliveries are signed with `app_secret` when given. Each request
    /// must complete within `timeout`.
    pub fn new(
        url: impl Into<String>,
        app_secret: Option<&SecretString>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // Meta does not follow redirects; neither do we, so a redirect shows as such.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            url: url.into(),
            secret: app_secret.map(AppSecret::new),
            http,
        })
    }

    /// The URL deliveries go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether deliveries are signed.
    pub fn signs(&self) -> bool {
        self.secret.is_some()
    }

    /// The `X-Hub-Signature-256` value for `body`, when signing.
    pub fn signature(&self, body: &[u8]) -> Option<String> {
        self.secret.as_ref().map(|s| s.sign(body))
    }

    /// POSTs `body` as Meta does and reads the answer.
    pub async fn post(&self, body: &[u8]) -> Answer {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("user-agent", "facebookexternalua")
            .body(body.to_vec());
        if let Some(signature) = self.signature(body) {
            request = request.header("x-hub-signature-256", signature);
        }
        let started = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let body = match response.bytes().await {
                    Ok(bytes) => excerpt(&String::from_utf8_lossy(&bytes)),
                    Err(e) => format!("(answer body unreadable: {e})"),
                };
                Answer {
                    status: Some(status),
                    elapsed: started.elapsed(),
                    body,
                }
            }
            Err(e) => Answer {
                status: None,
                elapsed: started.elapsed(),
                body: describe_error(&e),
            },
        }
    }
}

/// `text` cut to [`MAX_ANSWER_EXCERPT`] bytes (on a character boundary), marked when cut.
pub fn excerpt(text: &str) -> String {
    if text.len() <= MAX_ANSWER_EXCERPT {
        return text.to_owned();
    }
    let mut cut = MAX_ANSWER_EXCERPT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// A transport error with its causes (reqwest's own text omits them: "error sending request").
pub fn describe_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer: timed out".to_owned()
    } else if e.is_connect() {
        "no answer: could not connect".to_owned()
    } else {
        // reqwest's text names the URL, whose query may hold a secret (the verify token).
        let shown = e.to_string();
        let shown = match e.url() {
            Some(url) => shown.replace(url.as_str(), "(the URL)"),
            None => shown,
        };
        format!("no answer: {shown}")
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_array_is_replayed_element_by_element_byte_for_byte() {
        let file = b"[ {\"entry\":[], \"a\":\"caf\\u00e9 \\/\"} ,\n{\"entry\":[1]}]\n".to_vec();
        let deliveries = replay("f.json", file).unwrap();
        assert_eq!(deliveries.len(), 2);
        assert_eq!(
            deliveries[0].body,
            b"{\"entry\":[], \"a\":\"caf\\u00e9 \\/\"}".to_vec()
        );
        assert_eq!(deliveries[1].body, b"{\"entry\":[1]}".to_vec());
        assert_eq!(deliveries[1].label, "f.json [2/2]");
    }

    #[test]
    fn anything_else_is_replayed_whole_as_it_is() {
        let file = b"  {\"entry\": []}\n\n".to_vec();
        let deliveries = replay("f.json", file.clone()).unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].body, file);
        // Not JSON at all: still sent as written (the receiver decides).
        let deliveries = replay("f.txt", b"not json".to_vec()).unwrap();
        assert_eq!(deliveries[0].body, b"not json");
        assert!(deliveries[0].ids.is_empty());
    }

    #[test]
    fn empty_files_and_broken_arrays_are_refused() {
        assert!(matches!(
            replay("f", b" \n".to_vec()),
            Err(ReplayError::Empty { .. })
        ));
        assert!(matches!(
            replay("f", b"[]".to_vec()),
            Err(ReplayError::Empty { .. })
        ));
        assert!(matches!(
            replay("f", b"[{\"a\":1},".to_vec()),
            Err(ReplayError::NotAnArray { .. })
        ));
    }

    #[test]
    fn the_signature_is_meta_s_over_the_exact_bytes() {
        let secret = SecretString::from("s3cret");
        let receiver = Receiver::new(
            "http://127.0.0.1:9/webhook",
            Some(&secret),
            Duration::from_secs(1),
        )
        .unwrap();
        let body = br#"{"a":"\u00e9"}"#;
        let header = receiver.signature(body).unwrap();
        assert_eq!(
            AppSecret::new(&secret).verify(Some(header.as_bytes()), body),
            Ok(())
        );
        let unsigned =
            Receiver::new("http://127.0.0.1:9/webhook", None, Duration::from_secs(1)).unwrap();
        assert_eq!(unsigned.signature(body), None);
    }

    #[test]
    fn long_answers_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = excerpt(&long);
        assert!(cut.ends_with("… (800 bytes)"), "{cut}");
        assert_eq!(excerpt("short"), "short");
    }
}
