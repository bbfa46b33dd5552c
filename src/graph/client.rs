//! [`GraphClient`]: one reqwest client for the whole process (connection pooling, TLS sessions),
//! built at start-up with timeouts from configuration. Tests point `base_url` at a wiremock server.
//!
//! [`GraphClient::send`] posts a message body (built by [`crate::domain::send`]) from one of the
//! configured business numbers, with that number's token as `Authorization: Bearer` (never
//! logged). **It never sends twice**: a send is tried again only when it certainly did not reach
//! Meta (no connection could be made) or when Meta refused it to slow us down (130429, 131057,
//! 4/80007), after Meta's `Retry-After` or the wait Meta documents for the code, at most
//! [`MAX_SEND_ATTEMPTS`] times, only while the wait is at most [`MAX_RETRY_WAIT`] and every
//! attempt starts within GRAPH_TIMEOUT_SECS of the first (so a send ends within twice that). Each
//! attempt is a `graph.call` span (method, path without the token, status, Meta's code). A send that
//! may have reached Meta (a timeout after writing it, a 5xx, a broken answer) is returned as is:
//! see [`GraphError::outcome_unknown`].
//!
//! Every operation (a send or a read with its retries, a download, an upload, a delete) is counted
//! once by operation, outcome and Meta's code in `graph_requests_total`, when the client was given
//! the counter ([`GraphClient::counting`]).
//!
//! Redirects are never followed (any 3xx is a [`GraphError::Redirected`]), a response is read
//! incrementally up to [`MAX_RESPONSE_BYTES`], and a transport failure names its cause (DNS,
//! refused, reset, TLS, ...) with GRAPH_API_BASE, never the token.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::value::RawValue;
use tracing::Instrument;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::{BusinessNumber, GraphSettings};
use crate::graph::GraphError;
use crate::graph::error::{Class, MAX_RESPONSE_BYTES, transport_cause};
use crate::metrics::GraphLabels;

/// Most attempts of one send (the first included); see the module doc for when it is repeated.
pub const MAX_SEND_ATTEMPTS: u32 = 3;
/// Longest wait before another attempt; when Meta asks for longer, the client gets the error
/// (with `Retry-After`) instead of a request held open.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Client for `POST {GRAPH_API_BASE}/{phone_number_id}/messages` and friends.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
    /// The configured business numbers, the default (PHONE_NUMBER_ID) first.
    numbers: Vec<BusinessNumber>,
    /// GRAPH_API_BASE without user info, query or fragment, for error texts.
    base_for_errors: String,
    /// SEND_RATE_PER_SECOND per number, shared by every clone (and, on Redis, every instance).
    pacer: std::sync::Arc<crate::graph::pacer::Pacer>,
    /// GRAPH_TIMEOUT_SECS: one call's limit, and the time within which every attempt of one
    /// send must start (so a send takes at most twice this).
    timeout: Duration,
    /// For media downloads: no total timeout (a large file takes what it takes) but a read
    /// timeout, and Meta's media URL may redirect (at most 5 times; reqwest drops the token on a
    /// redirect to another host).
    download: reqwest::Client,
    /// For media uploads: no total or read timeout (reqwest's read timeout would run from the
    /// request's start, and a 100 MB document takes what it takes; the edge holds the client's
    /// side to a minimum rate), never redirected (a streamed body cannot be sent twice). Meta
    /// must answer within GRAPH_TIMEOUT_SECS once the whole file is sent ([`Self::upload_media`]).
    upload: reqwest::Client,
    /// `graph_requests_total`, when counted (see [`Self::counting`]).
    calls: Option<Family<GraphLabels, Counter>>,
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
        let download = reqwest::Client::builder()
            .read_timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("whatsapp-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        let upload = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("whatsapp-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            download,
            upload,
            base_url: settings.base_url.clone(),
            numbers: settings.numbers.clone(),
            base_for_errors: displayable_base(&settings.base_url),
            pacer: std::sync::Arc::new(crate::graph::pacer::Pacer::new(settings.send_rate)),
            timeout: settings.timeout,
            calls: None,
        })
    }

    /// Paces sends in `store`'s Redis, so every instance on it shares SEND_RATE_PER_SECOND per
    /// number ([`crate::graph::pacer`]).
    #[must_use]
    pub fn pacing_shared(self, store: crate::store::redis::RedisStore) -> Self {
        let pacer = crate::graph::pacer::Pacer::new(self.pacer.rate()).shared_on(store);
        Self {
            pacer: std::sync::Arc::new(pacer),
            ..self
        }
    }

    /// Counts every operation of this client (and its clones) in `calls`.
    #[must_use]
    pub fn counting(self, calls: Family<GraphLabels, Counter>) -> Self {
        Self {
            calls: Some(calls),
            ..self
        }
    }

    /// Counts one finished operation.
    fn count<T>(&self, operation: &'static str, result: &Result<T, GraphError>) {
        if let Some(calls) = &self.calls {
            let (outcome, code) = match result {
                Ok(_) => ("ok", "none".to_owned()),
                Err(e) => (
                    e.outcome(),
                    e.meta_code()
                        .map_or_else(|| "none".to_owned(), |c| c.to_string()),
                ),
            };
            calls
                .get_or_create(&GraphLabels {
                    operation,
                    outcome,
                    code,
                })
                .inc();
        }
    }

    /// Runs `op`, one operation, and counts its result under `operation`.
    async fn counted<T>(
        &self,
        operation: &'static str,
        op: impl Future<Output = Result<T, GraphError>>,
    ) -> Result<T, GraphError> {
        let result = op.await;
        self.count(operation, &result);
        result
    }

    /// Whether another attempt may follow one that failed with `wait` to go: attempt `attempt`
    /// was not the last of [`MAX_SEND_ATTEMPTS`], the wait is at most [`MAX_RETRY_WAIT`], and the
    /// next attempt would start within GRAPH_TIMEOUT_SECS of `started`, the first.
    fn may_retry(&self, attempt: u32, wait: Duration, started: tokio::time::Instant) -> bool {
        attempt < MAX_SEND_ATTEMPTS
            && wait <= MAX_RETRY_WAIT
            && started.elapsed() + wait < self.timeout
    }

    /// The configured business numbers, the default first.
    pub fn numbers(&self) -> &[BusinessNumber] {
        &self.numbers
    }

    /// Sends a message body from `number`, trying again only where that cannot send it twice
    /// (see the module doc). Returns Meta's response JSON verbatim.
    pub async fn send(
        &self,
        number: &BusinessNumber,
        body: &impl Serialize,
    ) -> Result<Box<RawValue>, GraphError> {
        self.counted("send", self.send_attempts(number, body)).await
    }

    /// [`Self::send`] without its count.
    async fn send_attempts(
        &self,
        number: &BusinessNumber,
        body: &impl Serialize,
    ) -> Result<Box<RawValue>, GraphError> {
        let token = token(number)?;
        let path = format!("/{}/messages", number.id);
        let url = format!("{}{path}", self.base_url);
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            // A send waits for its slot at most until GRAPH_TIMEOUT_SECS after it began (so it
            // still ends within the request's time); past that it is refused, unsent, with the
            // wait as its Retry-After.
            let longest = self.timeout.saturating_sub(started.elapsed());
            if let Err(wait) = self.pacer.wait(&number.id, longest).await {
                tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    attempt,
                    "graph.paced the number's send rate is taken too far ahead; the send is refused"
                );
                return Err(GraphError::Paced { wait });
            }
            let span = tracing::info_span!(
                "graph.call",
                http.method = "POST",
                graph.path = %path,
                attempt,
                http.status = tracing::field::Empty,
                meta.code = tracing::field::Empty,
            );
            let request = self
                .http
                .post(&url)
                .bearer_auth(token.expose_secret())
                .json(body);
            let result = self.execute(request).instrument(span.clone()).await;
            match &result {
                Ok(_) => span.record("http.status", 200),
                Err(GraphError::Rejected { status, .. }) => span.record("http.status", *status),
                Err(_) => &span,
            };
            if let Some(code) = result.as_ref().err().and_then(GraphError::meta_code) {
                span.record("meta.code", code);
            }
            let wait = match &result {
                Err(e @ GraphError::Unreachable { .. }) if !e.outcome_unknown() => {
                    Some(backoff(attempt))
                }
                Err(e) => match e.class() {
                    // At least 100 ms, plus up to 20% jitter so waiting clients spread out.
                    Class::Throttled { wait } => {
                        let wait = wait.max(Duration::from_millis(100));
                        Some(wait + jitter(wait / 5))
                    }
                    _ => None,
                },
                Ok(_) => None,
            };
            match wait {
                Some(wait) if self.may_retry(attempt, wait, started) => {
                    tracing::info!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        meta.code = result.as_ref().err().and_then(GraphError::meta_code),
                        "graph.retry the send did not reach Meta or Meta asked to slow down; trying again"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    /// Reads `path_and_query` (e.g. `/{waba}/message_templates?...`) with `number`'s token.
    /// A read is safe to repeat: it is tried again (up to [`MAX_SEND_ATTEMPTS`] times, with
    /// backoff) after a connection failure, a timeout, Meta's failure (5xx or its failure codes)
    /// or a throttle of at most [`MAX_RETRY_WAIT`], while the attempt starts within
    /// GRAPH_TIMEOUT_SECS of the first (so a read ends within twice that, inside the request's
    /// own timeout).
    pub async fn get(
        &self,
        number: &BusinessNumber,
        path_and_query: &str,
    ) -> Result<serde_json::Value, GraphError> {
        self.counted("read", self.get_attempts(number, path_and_query))
            .await
    }

    /// [`Self::get`] without its count.
    async fn get_attempts(
        &self,
        number: &BusinessNumber,
        path_and_query: &str,
    ) -> Result<serde_json::Value, GraphError> {
        let token = token(number)?;
        let url = format!("{}{path_and_query}", self.base_url);
        let path = path_and_query.split('?').next().unwrap_or_default();
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let span =
                tracing::info_span!("graph.call", http.method = "GET", graph.path = %path, attempt);
            let request = self.http.get(&url).bearer_auth(token.expose_secret());
            let result = self.execute(request).instrument(span).await;
            // Only what another attempt can change: not a redirect, an oversized or unreadable
            // answer, or a refusal of the request itself.
            let wait = match &result {
                Ok(_) => None,
                Err(GraphError::Unreachable { .. } | GraphError::Timeout) => Some(backoff(attempt)),
                Err(e @ GraphError::Rejected { .. }) => match e.class() {
                    Class::Upstream => Some(backoff(attempt)),
                    Class::Throttled { wait } => Some(wait.max(Duration::from_millis(100))),
                    _ => None,
                },
                Err(_) => None,
            };
            match wait {
                // Like a send's: every attempt starts within GRAPH_TIMEOUT_SECS of the first.
                Some(wait) if self.may_retry(attempt, wait, started) => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => {
                    return result.and_then(|raw| {
                        serde_json::from_str(raw.get())
                            .map_err(|_| GraphError::InvalidResponse { status: 200 })
                    });
                }
            }
        }
    }

    /// Posts an administrative call (e.g. `/{waba_id}/subscribed_apps`, which subscribes the
    /// token's app to a WABA's webhooks) with `number`'s token and no body, once: no retry, no
    /// pacing (it sends no message). Meta's JSON answer.
    pub async fn post_empty(
        &self,
        number: &BusinessNumber,
        path: &str,
    ) -> Result<serde_json::Value, GraphError> {
        self.counted("admin", self.post_empty_once(number, path))
            .await
    }

    /// [`Self::post_empty`] without its count.
    async fn post_empty_once(
        &self,
        number: &BusinessNumber,
        path: &str,
    ) -> Result<serde_json::Value, GraphError> {
        let token = token(number)?;
        let span = tracing::info_span!("graph.call", http.method = "POST", graph.path = %path);
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(token.expose_secret());
        let raw = self.execute(request).instrument(span).await?;
        serde_json::from_str(raw.get()).map_err(|_| GraphError::InvalidResponse { status: 200 })
    }

    /// Opens the download of a media file: Meta's short-lived `url` (from [`Self::get`] of the
    /// media id), fetched with `number`'s token. The answer's body is not read here: the caller
    /// streams it on. A non-2xx answer is a [`GraphError::Rejected`] (its body read, capped).
    pub async fn open_download(
        &self,
        number: &BusinessNumber,
        url: &str,
    ) -> Result<reqwest::Response, GraphError> {
        self.counted("download", self.download_once(number, url))
            .await
    }

    /// [`Self::open_download`] without its count.
    async fn download_once(
        &self,
        number: &BusinessNumber,
        url: &str,
    ) -> Result<reqwest::Response, GraphError> {
        let token = token(number)?;
        let span = tracing::info_span!("graph.download", http.method = "GET");
        let mut response = self
            .download
            .get(url)
            .bearer_auth(token.expose_secret())
            .send()
            .instrument(span)
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = self.read_capped(&mut response).await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::json!({ "error": { "message": format!("download answered {status}") } }));
        Err(GraphError::Rejected {
            status: status.as_u16(),
            body,
            retry_after: None,
        })
    }

    /// Uploads a media file (`POST /{phone_number_id}/media`, multipart: `messaging_product`,
    /// `type`, then `file` with its name and type), streaming `file` as it comes: nothing is
    /// buffered whole. Tried once (a stream cannot be replayed; a failed upload leaves at most an
    /// unused media id, which Meta drops after 30 days). Once `file` has ended, Meta must answer
    /// within GRAPH_TIMEOUT_SECS, else [`GraphError::Timeout`]. Returns Meta's media id.
    pub async fn upload_media<S>(
        &self,
        number: &BusinessNumber,
        media: crate::domain::media::MediaType,
        filename: &str,
        file: S,
    ) -> Result<String, GraphError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        self.counted("upload", self.upload_once(number, media, filename, file))
            .await
    }

    /// [`Self::upload_media`] without its count.
    async fn upload_once<S>(
        &self,
        number: &BusinessNumber,
        media: crate::domain::media::MediaType,
        filename: &str,
        file: S,
    ) -> Result<String, GraphError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let token = token(number)?;
        // The end of the file starts the wait for Meta's answer.
        let (sent, all_sent) = tokio::sync::oneshot::channel::<()>();
        let mut sent = Some(sent);
        let file = futures_util::StreamExt::chain(
            file,
            futures_util::stream::poll_fn(move |_| {
                if let Some(sent) = sent.take() {
                    let _ = sent.send(());
                }
                std::task::Poll::Ready(None)
            }),
        );
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(file))
            .file_name(filename.to_owned())
            .mime_str(media.mime())
            .expect("every MediaType is a valid MIME type (tested in domain::media)");
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", media.mime())
            .part("file", part);
        let path = format!("/{}/media", number.id);
        let span = tracing::info_span!("graph.call", http.method = "POST", graph.path = %path);
        let request = self
            .upload
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(token.expose_secret())
            .multipart(form);
        let answer = tokio::select! {
            answer = self.execute(request).instrument(span) => answer?,
            () = async {
                if all_sent.await.is_err() {
                    // The stream was dropped before its end: the request's own error comes.
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(self.timeout).await;
            } => return Err(GraphError::Timeout),
        };
        #[derive(serde::Deserialize)]
        struct Uploaded {
            id: String,
        }
        serde_json::from_str::<Uploaded>(answer.get())
            .map(|u| u.id)
            .map_err(|_| GraphError::InvalidResponse { status: 200 })
    }

    /// Deletes a media file Meta holds (`DELETE /{media-id}?phone_number_id=`).
    pub async fn delete_media(&self, number: &BusinessNumber, id: &str) -> Result<(), GraphError> {
        self.counted("delete", self.delete_once(number, id)).await
    }

    /// [`Self::delete_media`] without its count.
    async fn delete_once(&self, number: &BusinessNumber, id: &str) -> Result<(), GraphError> {
        let token = token(number)?;
        let url = format!("{}/{id}?phone_number_id={}", self.base_url, number.id);
        let span = tracing::info_span!(
            "graph.call",
            http.method = "DELETE",
            graph.path = "/{media-id}"
        );
        let request = self.http.delete(&url).bearer_auth(token.expose_secret());
        self.execute(request).instrument(span).await.map(drop)
    }

    /// Runs one prepared request: no redirect followed, the answer read up to
    /// [`MAX_RESPONSE_BYTES`], Meta's error kept.
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<Box<RawValue>, GraphError> {
        let mut response = request.send().await.map_err(|e| self.transport_error(&e))?;
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
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
            retry_after,
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
        // A failure to connect (DNS, refused, TLS handshake, connect timeout) happens before
        // anything is written: the request certainly did not reach Meta.
        let connected = !e.is_connect();
        if e.is_timeout() && connected {
            return GraphError::Timeout;
        }
        let https = self.base_for_errors.starts_with("https://");
        GraphError::Unreachable {
            cause: transport_cause(e, https),
            base: self.base_for_errors.clone(),
            maybe_sent: connected,
        }
    }
}

/// `number`'s access token, or the error that says sending is not configured.
fn token(number: &BusinessNumber) -> Result<&secrecy::SecretString, GraphError> {
    number
        .access_token
        .as_ref()
        .ok_or(GraphError::NotConfigured("ACCESS_TOKEN"))
}

/// The wait before attempt `attempt + 1` after a failed connection: 200 ms, 400 ms, ... with
/// up to 50% jitter (so instances that lost Meta at once do not come back at once).
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200 << attempt.saturating_sub(1).min(5));
    base + jitter(base / 2)
}

/// A pseudo-random duration up to `most` (from the clock's nanoseconds: enough to spread
/// clients out, no generator needed).
fn jitter(most: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let most = most.as_nanos() as u64;
    Duration::from_nanos(if most == 0 { 0 } else { nanos % (most + 1) })
}

/// GRAPH_API_BASE as it may appear in an error: scheme, host, port and path only.
pub(crate) fn displayable_base(base: &str) -> String {
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
