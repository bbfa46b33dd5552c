//! `simulate verify`: Meta's subscription handshake against any URL. Meta sends
//! `GET <url>?hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<random>` and registers
//! the URL only when the answer is 200 with the challenge, exactly, as the whole body (no quotes,
//! no JSON, no trailing newline). [`check`] does the same and says what was wrong otherwise.

use std::time::{Duration, Instant};

use crate::simulate::deliver::{describe_error, excerpt};

/// What the receiver answered to the handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The challenge sent.
    pub challenge: String,
    /// The HTTP status, `None` when no answer came.
    pub status: Option<reqwest::StatusCode>,
    /// Time to the end of the answer.
    pub elapsed: Duration,
    /// The answer's body (bounded), or why none came.
    pub body: String,
    /// The answer's body was exactly the challenge.
    pub echoed: bool,
}

impl Handshake {
    /// Meta would accept it: 200 and the challenge as the body.
    pub fn passed(&self) -> bool {
        self.status == Some(reqwest::StatusCode::OK) && self.echoed
    }

    /// One line saying what was expected and what came, for a failed handshake.
    pub fn problem(&self) -> Option<String> {
        if self.passed() {
            return None;
        }
        Some(match self.status {
            None => self.body.clone(),
            Some(status) if status != reqwest::StatusCode::OK => format!(
                "expected 200 with the challenge as the body, got {status}: {}",
                self.body
            ),
            Some(_) => format!(
                "expected the body to be exactly the challenge {:?}, got {:?}",
                self.challenge, self.body
            ),
        })
    }
}

/// Sends the handshake to `url` with `verify_token` and `challenge` (added to any query the URL
/// already has) and reports the answer. Redirects are not followed (Meta does not follow them).
pub async fn check(
    url: &str,
    verify_token: &str,
    challenge: &str,
    timeout: Duration,
) -> Result<Handshake, String> {
    let mut url = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    url.query_pairs_mut()
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.verify_token", verify_token)
        .append_pair("hub.challenge", challenge);
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let request = http.get(url);
    let started = Instant::now();
    let handshake = match request.send().await {
        Ok(response) => {
            let status = response.status();
            let (body, echoed) = match response.bytes().await {
                Ok(bytes) => (
                    excerpt(&String::from_utf8_lossy(&bytes)),
                    bytes.as_ref() == challenge.as_bytes(),
                ),
                Err(e) => (format!("(answer body unreadable: {e})"), false),
            };
            Handshake {
                challenge: challenge.to_owned(),
                status: Some(status),
                elapsed: started.elapsed(),
                body,
                echoed,
            }
        }
        Err(e) => Handshake {
            challenge: challenge.to_owned(),
            status: None,
            elapsed: started.elapsed(),
            body: describe_error(&e),
            echoed: false,
        },
    };
    Ok(handshake)
}
