//! The edge admission layer: what a request must pass before a handler runs, so that no anonymous
//! client can take the capacity that complete, legitimate requests need.
//!
//! In order, for every request:
//! 1. **Classify** by path: Meta's `/webhook`, the health checks (`/healthz`, `/readyz`), or the
//!    client API (everything else). Health checks never wait for or count against any limit.
//! 2. **Receive the body** (requests that have one), with budgets of its own that are separate from
//!    the processing capacity: at most MAX_UPLOADS bodies arriving at once, at most
//!    MAX_UPLOADS_PER_CLIENT from one client address, and at most UPLOAD_MEMORY_BYTES of body
//!    buffers held by all of them together, a quarter of it (at least MAX_BODY_BYTES) by one
//!    address (charged as buffers grow, so a declared `Content-Length` costs nothing until it is
//!    sent). An IPv6 client is counted by its /64 ([`ClientKey`]). A body must keep a minimum
//!    average rate (MIN_UPLOAD_BYTES_PER_SEC after a 2 s grace) and finish within
//!    BODY_TIMEOUT_SECS, else 408; over MAX_BODY_BYTES is 413 (refused from `Content-Length`
//!    before reading). Over a budget the answer is 503 at once. For `/webhook` the body is hashed
//!    (HMAC-SHA256 under APP_SECRET) as it arrives, so the signature check is a 32-byte
//!    comparison (the digest travels in the request's [`Connection`] extension).
//! 3. **Take a processing slot** of the request's class: CONCURRENCY_LIMIT for webhooks,
//!    CLIENT_CONCURRENCY_LIMIT for the client API; none free -> 503 at once (load shedding, no
//!    queue). A stalled upload therefore never holds a slot: it holds only upload budget, which
//!    it loses by the minimum rate.
//! 4. Count sends in flight, so shutdown can let them finish ([`Edge::sends_in_flight`]).
//! 5. Run the request within REQUEST_TIMEOUT_SECS (else an empty 503).
//!
//! One route is streamed instead: `POST /v1/media` ([`MEDIA_UPLOAD_PATH`]) hands its body to the
//! handler as it arrives (the handler streams it to Meta), under an upload slot held until the
//! answer, MEDIA_UPLOAD_MAX_BYTES (413), the minimum rate (408) and MEDIA_UPLOAD_TIMEOUT_SECS for
//! the whole request; it holds no memory budget and no processing slot.
//!
//! A body already complete when the edge first looks (the usual webhook: it came in the same
//! packets as its headers, at most one 16 KiB read buffer) is not "being received": it takes no
//! upload slot and no per-client share, only its bytes from the global memory budget, and is
//! handed on without a copy. The memory charge is held until the response is produced; the body's
//! bytes are freed by then. "Client address" is the TCP peer's, or behind a reverse proxy listed
//! in TRUSTED_PROXIES the one its `X-Forwarded-For` names ([`Peer::connection`]).
//!
//! This is a tower service rather than `axum::middleware::from_fn`: it sits on the hot path of
//! every webhook, and one boxed future per request is all it costs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{HttpSettings, TrustedProxies};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::metrics::Metrics;
use crate::webhook::{AppSecret, BodyDigest, BodyHasher};

/// What the edge knows of a request's connection, in one request extension (set by the accept
/// loop; one extension insert per request, the edge fills in the digest in place: extension
/// inserts cost about a thousand instructions each on the webhook's hot path).
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The client's address: the peer's, or behind a trusted proxy the one its
    /// `X-Forwarded-For` names ([`Peer::connection`]).
    pub client: IpAddr,
    /// For `POST /webhook` with APP_SECRET set: the HMAC of the body, computed while it arrived.
    pub body_digest: Option<BodyDigest>,
}

impl Connection {
    /// A connection from `peer`, the client (an IPv4-mapped address as IPv4), no digest yet.
    pub fn new(peer: IpAddr) -> Self {
        Self {
            client: peer.to_canonical(),
            body_digest: None,
        }
    }

    /// A request from the trusted proxy `proxy` with `headers`: the client is the rightmost
    /// `X-Forwarded-For` entry (every such header, in order) that is not itself a `trusted`
    /// proxy; if every entry is, the leftmost. An entry that is not an IP address (`unknown`, an
    /// obfuscated name, garbage) ends the walk: the client is the hop that added it.
    fn forwarded(proxy: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        let mut client = proxy;
        // Right to left; a header that is not text reads as one entry that is no address.
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for entry in entries {
            let Some(address) = forwarded_address(entry.trim()) else {
                break;
            };
            client = address;
            if !trusted.contains(address) {
                break;
            }
        }
        Self::new(client)
    }
}

/// A connection's TCP peer, with whether it is a trusted proxy decided once, when the
/// connection is accepted.
#[derive(Debug, Clone)]
pub struct Peer {
    ip: IpAddr,
    /// TRUSTED_PROXIES when the peer is one of them: its requests' `X-Forwarded-For` is read.
    trusted: Option<Arc<TrustedProxies>>,
}

impl Peer {
    /// The peer `ip`, a trusted proxy when `proxies` lists it.
    pub fn new(ip: IpAddr, proxies: &Arc<TrustedProxies>) -> Self {
        Self {
            ip,
            trusted: proxies.contains(ip).then(|| Arc::clone(proxies)),
        }
    }

    /// The [`Connection`] of one of its requests: from a trusted proxy, the client its
    /// `X-Forwarded-For` names (the rightmost entry that is not itself a trusted proxy); from any
    /// other peer the header is ignored, so a client cannot choose the address it is counted under.
    pub fn connection(&self, headers: &HeaderMap) -> Connection {
        match &self.trusted {
            None => Connection::new(self.ip),
            Some(trusted) => Connection::forwarded(self.ip, headers, trusted),
        }
    }
}

/// An `X-Forwarded-For` entry's address: `192.0.2.1`, `2001:db8::1`, or with a port
/// (`192.0.2.1:443`, `[2001:db8::1]:443`), as proxies write them.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })
}

/// How long a body may arrive below the minimum rate before the rate is enforced.
pub const UPLOAD_GRACE: Duration = Duration::from_secs(2);

/// The request classes with separate capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Meta's `POST`/`GET /webhook`.
    Webhook,
    /// `/healthz`, `/readyz`: never shed.
    Health,
    /// Everything else: `/send`, `/get`, `/metrics`, `/docs`, ...
    Client,
}

impl RouteClass {
    /// The class of a request path.
    pub fn of(path: &str) -> Self {
        match path {
            "/webhook" => Self::Webhook,
            "/healthz" | "/readyz" => Self::Health,
            _ => Self::Client,
        }
    }
}

/// The address a client is counted under by every per-client budget (upload slots and memory
/// here, wrong keys in [`crate::http::limiter`]): IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its
/// /64, since one host usually has a whole /64 to pick its addresses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key `client` is counted under.
    pub fn of(client: IpAddr) -> Self {
        Self(match client.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
            v4 => v4,
        })
    }
}

/// Shared admission state: budgets, capacity and counters. Built once at start-up.
pub struct Edge {
    webhook_slots: Arc<Semaphore>,
    client_slots: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    by_client: Mutex<HashMap<ClientKey, ClientUse>>,
    max_uploads_per_client: usize,
    upload_memory: Arc<Semaphore>,
    upload_memory_per_client: usize,
    max_body_bytes: usize,
    body_timeout: Duration,
    min_upload_rate: u64,
    request_timeout: Duration,
    media_upload_max_bytes: u64,
    media_upload_timeout: Duration,
    sends: AtomicUsize,
    sends_done: Notify,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("sends_in_flight", &self.sends_in_flight())
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// The budgets of `settings`.
    pub fn new(settings: &HttpSettings) -> Self {
        Self {
            webhook_slots: Arc::new(Semaphore::new(settings.concurrency_limit)),
            client_slots: Arc::new(Semaphore::new(settings.client_concurrency_limit)),
            uploads: Arc::new(Semaphore::new(settings.max_uploads)),
            by_client: Mutex::default(),
            max_uploads_per_client: settings.max_uploads_per_client,
            upload_memory_per_client: per_client_memory(settings),
            upload_memory: Arc::new(Semaphore::new(
                settings.upload_memory_bytes.min(Semaphore::MAX_PERMITS),
            )),
            max_body_bytes: settings.max_body_bytes,
            body_timeout: settings.body_timeout,
            min_upload_rate: settings.min_upload_rate,
            request_timeout: settings.request_timeout,
            media_upload_max_bytes: settings.media_upload_max_bytes,
            media_upload_timeout: settings.media_upload_timeout,
            sends: AtomicUsize::new(0),
            sends_done: Notify::new(),
        }
    }

    /// REQUEST_TIMEOUT_SECS.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// MEDIA_UPLOAD_MAX_BYTES.
    pub fn media_upload_max_bytes(&self) -> u64 {
        self.media_upload_max_bytes
    }

    /// `POST /send` requests being processed now.
    pub fn sends_in_flight(&self) -> usize {
        self.sends.load(Ordering::Acquire)
    }

    /// Completes when no send is in flight.
    pub async fn sends_finished(&self) {
        loop {
            let notified = self.sends_done.notified();
            if self.sends_in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Takes an upload slot for `client`, globally and per address.
    fn start_upload(self: &Arc<Self>, client: ClientKey) -> Result<UploadSlot, Refusal> {
        let global = self
            .uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Uploads)?;
        let mut by_client = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        let usage = by_client.entry(client).or_default();
        if usage.uploads >= self.max_uploads_per_client {
            return Err(Refusal::UploadsPerClient);
        }
        usage.uploads += 1;
        Ok(UploadSlot {
            edge: self.clone(),
            client,
            _global: global,
        })
    }

    /// Charges `bytes` more of body buffers to `client` and to the global budget.
    fn charge(&self, charge: &mut MemoryCharge, bytes: usize) -> Result<(), Refusal> {
        if let Some(client) = charge.client {
            let mut by_client = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
            let usage = by_client.entry(client).or_default();
            if usage.bytes + bytes > self.upload_memory_per_client {
                return Err(Refusal::UploadMemoryPerClient);
            }
            usage.bytes += bytes;
        }
        // Counted from here on: `charge` gives it back when dropped.
        charge.bytes += bytes;
        let permit = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.upload_memory.clone().try_acquire_many_owned(n).ok())
            .ok_or(Refusal::UploadMemory)?;
        match &mut charge.permit {
            Some(held) => held.merge(permit),
            None => charge.permit = Some(permit),
        }
        Ok(())
    }

    /// Removes `client`'s entry once it holds nothing.
    fn release(&self, client: ClientKey, uploads: usize, bytes: usize) {
        let mut by_client = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = by_client.get_mut(&client) {
            usage.uploads -= uploads;
            usage.bytes -= bytes;
            if usage.uploads == 0 && usage.bytes == 0 {
                by_client.remove(&client);
            }
        }
    }
}

/// The default share of the upload memory one client address may hold: a quarter of the budget,
/// and at least one largest body.
fn per_client_memory(settings: &HttpSettings) -> usize {
    (settings.upload_memory_bytes / 4).max(settings.max_body_bytes)
}

/// What one client address holds now.
#[derive(Debug, Default)]
struct ClientUse {
    uploads: usize,
    bytes: usize,
}

/// One upload in progress; frees its slots when dropped.
struct UploadSlot {
    edge: Arc<Edge>,
    client: ClientKey,
    _global: OwnedSemaphorePermit,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.edge.release(self.client, 1, 0);
    }
}

/// Body buffer memory charged to a client and the global budget, held until the response is
/// produced.
pub struct MemoryCharge {
    edge: Arc<Edge>,
    /// `None` for a body that was complete on arrival: charged to the global budget only.
    client: Option<ClientKey>,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        if let Some(client) = self.client
            && self.bytes > 0
        {
            self.edge.release(client, 0, self.bytes);
        }
    }
}

/// Marks a send in flight until dropped.
struct SendGuard(Arc<Edge>);

impl Drop for SendGuard {
    fn drop(&mut self) {
        if self.0.sends.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.sends_done.notify_waiters();
        }
    }
}

/// Why the edge refused a request before it reached a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Uploads,
    UploadsPerClient,
    UploadMemory,
    UploadMemoryPerClient,
    Capacity(RouteClass),
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::Uploads => "upload_limit",
            Self::UploadsPerClient => "upload_limit_per_client",
            Self::UploadMemory => "upload_memory",
            Self::UploadMemoryPerClient => "upload_memory_per_client",
            Self::Capacity(RouteClass::Webhook) => "capacity_webhook",
            Self::Capacity(_) => "capacity_client",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::Uploads => {
                "too many request bodies are being received (MAX_UPLOADS); retry later"
            }
            Self::UploadsPerClient => {
                "too many request bodies are being received from your address (MAX_UPLOADS_PER_CLIENT); retry later"
            }
            Self::UploadMemory => {
                "request bodies being received fill the upload memory budget (UPLOAD_MEMORY_BYTES); retry later"
            }
            Self::UploadMemoryPerClient => {
                "request bodies being received from your address fill its share of the upload memory budget (a quarter of UPLOAD_MEMORY_BYTES); retry later"
            }
            Self::Capacity(RouteClass::Webhook) => {
                "server is at capacity for webhooks (CONCURRENCY_LIMIT); retry later"
            }
            Self::Capacity(_) => {
                "server is at capacity for client requests (CLIENT_CONCURRENCY_LIMIT); retry later"
            }
        }
    }
}

/// How receiving a body failed.
enum BodyFailure {
    Refused(Refusal),
    Error(ApiError),
}

/// The admission layer around the router (see the module docs).
#[derive(Clone)]
pub struct EdgeService<S> {
    inner: S,
    state: Arc<AppState>,
}

impl<S> EdgeService<S> {
    /// Wraps `inner` (the router with its timeout).
    pub fn new(inner: S, state: Arc<AppState>) -> Self {
        Self { inner, state }
    }
}

impl<S> tower::Service<Request> for EdgeService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready; capacity is decided per request in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let class = RouteClass::of(request.uri().path());
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let request_timeout = self.state.edge.request_timeout;
        if class == RouteClass::Health {
            let mut inner = inner;
            return Box::pin(within(request_timeout, inner.call(request)));
        }
        if request.method() == Method::POST && request.uri().path() == MEDIA_UPLOAD_PATH {
            return Box::pin(admit_stream(inner, self.state.clone(), request));
        }
        let hasher = (class == RouteClass::Webhook && request.method() == Method::POST)
            .then(|| self.state.app_secret.as_ref().map(AppSecret::hasher))
            .flatten();
        Box::pin(admit(inner, self.state.clone(), class, hasher, request))
    }
}

async fn admit<S>(
    mut inner: S,
    state: Arc<AppState>,
    class: RouteClass,
    hasher: Option<BodyHasher>,
    request: Request,
) -> Result<Response, Infallible>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let edge = &state.edge;
    let metrics = &state.metrics;
    let is_webhook_post = class == RouteClass::Webhook && request.method() == Method::POST;
    if is_webhook_post {
        metrics.webhooks_received.inc();
    }
    // Receive the body first: an upload in progress holds upload budget, not a processing slot.
    let (request, _memory) = if has_body(&request) {
        match receive_body(edge, request, hasher).await {
            Ok(received) => received,
            Err(BodyFailure::Refused(refusal)) => {
                return Ok(refuse(metrics, refusal, is_webhook_post));
            }
            Err(BodyFailure::Error(error)) => {
                if is_webhook_post {
                    let reason = error.body_failure_reason();
                    metrics.reject(reason);
                    tracing::warn!(reason, "webhook.rejected");
                }
                return Ok(error.into_response());
            }
        }
    } else {
        (request, None)
    };
    let slots = match class {
        RouteClass::Webhook => &edge.webhook_slots,
        _ => &edge.client_slots,
    };
    let Ok(_slot) = slots.clone().try_acquire_owned() else {
        metrics.requests_shed.inc();
        return Ok(refuse(metrics, Refusal::Capacity(class), is_webhook_post));
    };
    let path = request.uri().path();
    let _send = (path == "/send" || path == "/v1/messages").then(|| {
        edge.sends.fetch_add(1, Ordering::AcqRel);
        SendGuard(edge.clone())
    });
    within(edge.request_timeout, inner.call(request)).await
}

/// The request's answer, or an empty 503 when it takes longer than `limit`
/// (REQUEST_TIMEOUT_SECS; MEDIA_UPLOAD_TIMEOUT_SECS for uploads).
async fn within<F>(limit: Duration, answer: F) -> Result<Response, Infallible>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    match tokio::time::timeout(limit, answer).await {
        Ok(answer) => answer,
        Err(_) => Ok(axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()),
    }
}

/// The one route whose body is streamed through instead of received first.
pub const MEDIA_UPLOAD_PATH: &str = "/v1/media";

/// Most bytes of form around the file in an upload (field headers, boundaries, `from`, `type`).
pub const UPLOAD_FORM_OVERHEAD: u64 = 64 * 1024;

/// `POST /v1/media`: the body is handed to the handler as it arrives (it streams the file to
/// Meta), under an upload slot (MAX_UPLOADS, MAX_UPLOADS_PER_CLIENT) held until the answer,
/// MEDIA_UPLOAD_MAX_BYTES (+ the form's overhead; refused from `Content-Length` before reading),
/// the minimum rate and MEDIA_UPLOAD_TIMEOUT_SECS for the whole request. It holds no memory
/// budget (nothing is buffered beyond a chunk) and no processing slot: like a body being received
/// elsewhere, a slow upload holds only its upload slot, which it loses by the minimum rate.
async fn admit_stream<S>(
    mut inner: S,
    state: Arc<AppState>,
    request: Request,
) -> Result<Response, Infallible>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let edge = &state.edge;
    let limit = edge.media_upload_max_bytes + UPLOAD_FORM_OVERHEAD;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(
            ApiError::TooLarge(upload_too_large(edge.media_upload_max_bytes)).into_response(),
        );
    }
    let client = ClientKey::of(client_address(request.extensions()));
    let _upload = match edge.start_upload(client) {
        Ok(slot) => slot,
        Err(refusal) => return Ok(refuse(&state.metrics, refusal, false)),
    };
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let body = Body::new(PacedBody {
        inner: body,
        received: 0,
        limit,
        started,
        min_rate: edge.min_upload_rate,
        hard: started + edge.media_upload_timeout,
        timer: Box::pin(tokio::time::sleep_until(frame_deadline(
            started,
            started + edge.media_upload_timeout,
            0,
            edge.min_upload_rate,
        ))),
    });
    within(
        edge.media_upload_timeout,
        inner.call(Request::from_parts(parts, body)),
    )
    .await
}

/// The 413 text of an upload over MEDIA_UPLOAD_MAX_BYTES.
pub fn upload_too_large(max: u64) -> String {
    format!(
        "the upload is larger than MEDIA_UPLOAD_MAX_BYTES ({}); WhatsApp takes documents up to 100 MiB, audio and video up to 16 MiB, images up to 5 MiB",
        crate::domain::media::human_bytes(max)
    )
}

/// Why a streamed upload's body was cut off by the edge (found by the handler in the error's
/// source chain).
#[derive(Debug)]
pub enum BodyCut {
    /// Over MEDIA_UPLOAD_MAX_BYTES (`max`) and the form's overhead.
    TooLarge {
        /// MEDIA_UPLOAD_MAX_BYTES.
        max: u64,
    },
    /// Below MIN_UPLOAD_BYTES_PER_SEC, or past MEDIA_UPLOAD_TIMEOUT_SECS.
    TooSlow,
}

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooLarge { .. } => "the upload is over its size limit",
            Self::TooSlow => "the upload arrives too slowly",
        })
    }
}

impl std::error::Error for BodyCut {}

impl BodyCut {
    /// The cut in `error`'s source chain, if the edge cut the body.
    pub fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyCut> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(cut) = e.downcast_ref::<BodyCut>() {
                return Some(cut);
            }
            next = e.source();
        }
        None
    }
}

/// A request body passed on as it arrives, cut off ([`BodyCut`]) past its byte limit, below the
/// minimum average rate (after [`UPLOAD_GRACE`]) or past its deadline.
struct PacedBody {
    inner: Body,
    received: u64,
    limit: u64,
    started: Instant,
    min_rate: u64,
    hard: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for PacedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        let max = this.limit - UPLOAD_FORM_OVERHEAD;
                        return Poll::Ready(Some(Err(axum::Error::new(BodyCut::TooLarge { max }))));
                    }
                    let deadline = frame_deadline(
                        this.started,
                        this.hard,
                        usize::try_from(this.received).unwrap_or(usize::MAX),
                        this.min_rate,
                    );
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyCut::TooSlow)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn refuse(metrics: &Metrics, refusal: Refusal, is_webhook: bool) -> Response {
    metrics.refuse(refusal.reason());
    if is_webhook {
        metrics.reject(refusal.reason());
    }
    tracing::warn!(reason = refusal.reason(), "request.shed");
    ApiError::Overloaded(refusal.detail()).into_response()
}

/// Whether the request carries a body to receive (a declared non-zero length or a chunked body).
fn has_body(request: &Request) -> bool {
    use axum::body::HttpBody as _;
    !request.body().is_end_stream() && request.body().size_hint().upper() != Some(0)
}

/// Receives the whole body under the upload budgets, returning the request with the body
/// buffered (and, for webhooks, its digest) and the memory charge it holds.
async fn receive_body(
    edge: &Arc<Edge>,
    request: Request,
    mut hasher: Option<BodyHasher>,
) -> Result<(Request, Option<MemoryCharge>), BodyFailure> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > edge.max_body_bytes as u64) {
        return Err(BodyFailure::Error(ApiError::PayloadTooLarge));
    }
    let (mut parts, mut body) = request.into_parts();
    // The usual webhook: its body came with the headers and is complete in hyper's buffer. It is
    // not being received, so it takes no upload slot and no per-client share; it is kept as hyper
    // handed it over (no copy) and charged to the global memory budget.
    let mut pending = body.frame().now_or_never();
    if let Some(Some(Ok(frame))) = &pending
        && frame
            .data_ref()
            .is_some_and(|d| !d.is_empty() && declared == Some(d.len() as u64))
    {
        let Some(Some(Ok(frame))) = pending.take() else {
            unreachable!("matched just above")
        };
        let data = frame.into_data().unwrap_or_default();
        let mut memory = MemoryCharge {
            edge: edge.clone(),
            client: None,
            bytes: 0,
            permit: None,
        };
        edge.charge(&mut memory, data.len())
            .map_err(BodyFailure::Refused)?;
        if let Some(mut hasher) = hasher {
            hasher.update(&data);
            set_digest(&mut parts.extensions, hasher);
        }
        return Ok((Request::from_parts(parts, Body::from(data)), Some(memory)));
    }

    let client = ClientKey::of(client_address(&parts.extensions));
    let _upload = edge.start_upload(client).map_err(BodyFailure::Refused)?;
    // The body is copied into one buffer that grows by doubling, and the budget is charged for
    // the buffer's capacity before it grows: what the budget counts is what is allocated. (Keeping
    // hyper's chunks instead would pin one read buffer per chunk, so a body trickled in tiny
    // pieces would hold far more memory than it sent.)
    let limit = declared.map_or(edge.max_body_bytes, |n| n as usize);
    let mut buffer = BytesMut::new();
    let mut memory = MemoryCharge {
        edge: edge.clone(),
        client: Some(client),
        bytes: 0,
        permit: None,
    };
    let started = Instant::now();
    let hard_deadline = started + edge.body_timeout;
    loop {
        // A frame already buffered is taken without arming a timer.
        let next = match pending.take().or_else(|| body.frame().now_or_never()) {
            Some(next) => next,
            None => {
                let deadline =
                    frame_deadline(started, hard_deadline, buffer.len(), edge.min_upload_rate);
                tokio::time::timeout_at(deadline, body.frame())
                    .await
                    .map_err(|_| BodyFailure::Error(ApiError::BodyTimeout))?
            }
        };
        let frame = match next {
            None => break,
            Some(Err(_)) => return Err(BodyFailure::Error(ApiError::UnreadableBody)),
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        let needed = buffer.len() + data.len();
        if needed > edge.max_body_bytes {
            return Err(BodyFailure::Error(ApiError::PayloadTooLarge));
        }
        if needed > buffer.capacity() {
            let target = needed
                .max(buffer.capacity() * 2)
                .max(8 * 1024)
                .min(limit.max(needed));
            // Exact capacity (BytesMut::reserve may round up), so the charge is predictable.
            let mut grown = BytesMut::with_capacity(target);
            grown.extend_from_slice(&buffer);
            buffer = grown;
            let extra = buffer.capacity().saturating_sub(memory.bytes);
            edge.charge(&mut memory, extra)
                .map_err(BodyFailure::Refused)?;
        }
        if let Some(hasher) = &mut hasher {
            hasher.update(&data);
        }
        buffer.extend_from_slice(&data);
    }
    if let Some(hasher) = hasher {
        set_digest(&mut parts.extensions, hasher);
    }
    let bytes = buffer.freeze();
    Ok((Request::from_parts(parts, Body::from(bytes)), Some(memory)))
}

/// The client's address from the request's [`Connection`] (unspecified when there is none: a
/// request made in-process, as in unit tests): the TCP peer, or behind a proxy listed in
/// TRUSTED_PROXIES the address its `X-Forwarded-For` names ([`Peer::connection`]).
pub fn client_address(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<Connection>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.client)
}

/// Extractor: the client's address ([`client_address`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_address(&parts.extensions)))
    }
}

/// Puts the body's digest into the request's [`Connection`] extension.
fn set_digest(extensions: &mut axum::http::Extensions, hasher: BodyHasher) {
    let digest = Some(hasher.finish());
    match extensions.get_mut::<Connection>() {
        Some(connection) => connection.body_digest = digest,
        None => {
            extensions.insert(Connection {
                body_digest: digest,
                ..Connection::new(IpAddr::from([0, 0, 0, 0]))
            });
        }
    }
}

/// When the next frame must have arrived: by the whole-body deadline, and, once the grace is
/// over, before the average rate since the start drops below `min_rate`.
fn frame_deadline(started: Instant, hard: Instant, received: usize, min_rate: u64) -> Instant {
    if min_rate == 0 {
        return hard;
    }
    // `received` bytes at `min_rate` cover this long past the grace.
    let covered = Duration::from_secs_f64(received as f64 / min_rate as f64);
    (started + UPLOAD_GRACE + covered).min(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client address of a request from `peer` with these `X-Forwarded-For` headers.
    fn client_of(peer: &str, forwarded: &[&str], trusted: &str) -> IpAddr {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        let trusted = Arc::new(TrustedProxies::parse(trusted).unwrap());
        let peer: SocketAddr = peer.parse().unwrap();
        Peer::new(peer.ip(), &trusted).connection(&headers).client
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_forwarded_client_is_believed_only_from_a_trusted_proxy() {
        let trusted = "127.0.0.1, 10.0.0.0/8, fd00::/8";
        // From a trusted proxy: the entry it added (the rightmost).
        assert_eq!(
            client_of("127.0.0.1:5000", &["203.0.113.7"], trusted),
            ip("203.0.113.7")
        );
        // A client's own made-up entries to the left do not count...
        assert_eq!(
            client_of("127.0.0.1:5000", &["198.51.100.1, 203.0.113.7"], trusted),
            ip("203.0.113.7")
        );
        // ...but trusted hops on the right are skipped, across several headers too.
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &["198.51.100.1, 203.0.113.7", "10.1.2.3"],
                trusted
            ),
            ip("203.0.113.7")
        );
        // From any other peer the header is ignored.
        assert_eq!(
            client_of("192.0.2.9:5000", &["203.0.113.7"], trusted),
            ip("192.0.2.9")
        );
        assert_eq!(
            client_of("192.0.2.9:5000", &["203.0.113.7"], ""),
            ip("192.0.2.9")
        );
        // No header: the proxy itself.
        assert_eq!(client_of("10.0.0.5:5000", &[], trusted), ip("10.0.0.5"));
        // Every entry trusted: the leftmost.
        assert_eq!(
            client_of("127.0.0.1:5000", &["10.0.0.8, 10.0.0.9"], trusted),
            ip("10.0.0.8")
        );
        // An entry that is not an address ends the walk at the hop that added it.
        assert_eq!(
            client_of("127.0.0.1:5000", &["203.0.113.7, unknown"], trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &["203.0.113.7, unknown, 10.0.0.4"],
                trusted
            ),
            ip("10.0.0.4")
        );
        // Ports and brackets as proxies write them; IPv6 and IPv4-mapped peers.
        assert_eq!(
            client_of("127.0.0.1:5000", &["[2001:db8::1]:443"], trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_of("127.0.0.1:5000", &["[2001:db8::1]"], trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_of("127.0.0.1:5000", &["203.0.113.7:51000"], trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_of("[fd00::1]:5000", &["2001:db8::2"], trusted),
            ip("2001:db8::2")
        );
        assert_eq!(
            client_of("[::ffff:10.0.0.5]:5000", &["::ffff:203.0.113.7"], trusted),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_forwarded_header_that_is_not_text_ends_the_walk() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        headers.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"198.51.100.\xe9").unwrap(),
        );
        let trusted = Arc::new(TrustedProxies::parse("127.0.0.1").unwrap());
        let c = Peer::new(ip("127.0.0.1"), &trusted).connection(&headers);
        assert_eq!(c.client, ip("127.0.0.1"));
    }

    #[test]
    fn routes_are_classified_by_path() {
        assert_eq!(RouteClass::of("/webhook"), RouteClass::Webhook);
        assert_eq!(RouteClass::of("/healthz"), RouteClass::Health);
        assert_eq!(RouteClass::of("/readyz"), RouteClass::Health);
        assert_eq!(RouteClass::of("/send"), RouteClass::Client);
        assert_eq!(RouteClass::of("/webhook/"), RouteClass::Client);
    }

    #[test]
    fn the_minimum_rate_moves_the_deadline_with_the_bytes_received() {
        let start = Instant::now();
        let hard = start + Duration::from_secs(10);
        assert_eq!(frame_deadline(start, hard, 0, 1024), start + UPLOAD_GRACE);
        assert_eq!(
            frame_deadline(start, hard, 2048, 1024),
            start + UPLOAD_GRACE + Duration::from_secs(2)
        );
        assert_eq!(frame_deadline(start, hard, 1 << 30, 1024), hard);
        assert_eq!(frame_deadline(start, hard, 0, 0), hard);
    }

    /// An edge with MAX_UPLOADS_PER_CLIENT 2 and 64 KiB of body memory per client.
    fn small_edge() -> Arc<Edge> {
        let settings = crate::config::Settings::from_lookup(|key| match key {
            "MAX_UPLOADS_PER_CLIENT" => Some("2".into()),
            "MAX_BODY_BYTES" => Some("65536".into()),
            "UPLOAD_MEMORY_BYTES" => Some("262144".into()),
            _ => None,
        })
        .unwrap();
        Arc::new(Edge::new(&settings.http))
    }

    #[test]
    fn upload_budgets_count_an_ipv6_client_by_its_64_and_mapped_ipv4_as_ipv4() {
        let edge = small_edge();
        let key = |s: &str| ClientKey::of(ip(s));
        let a = edge.start_upload(key("2001:db8:1:2::1")).ok().unwrap();
        let _b = edge.start_upload(key("2001:db8:1:2:ffff::9")).ok().unwrap();
        // A third address of the same /64 is the same client: refused.
        assert!(matches!(
            edge.start_upload(key("2001:db8:1:2::3")),
            Err(Refusal::UploadsPerClient)
        ));
        // The next /64 is another client.
        let _c = edge.start_upload(key("2001:db8:1:3::1")).ok().unwrap();
        drop(a);
        let _d = edge.start_upload(key("2001:db8:1:2::3")).ok().unwrap();

        // Memory: 64 KiB per client, charged across the /64's addresses together.
        let charge = |client: &str| MemoryCharge {
            edge: edge.clone(),
            client: Some(key(client)),
            bytes: 0,
            permit: None,
        };
        let mut first = charge("2001:db8:5:6::1");
        edge.charge(&mut first, 40_000).unwrap();
        let mut second = charge("2001:db8:5:6::2");
        assert!(matches!(
            edge.charge(&mut second, 40_000),
            Err(Refusal::UploadMemoryPerClient)
        ));
        let mut elsewhere = charge("2001:db8:5:7::2");
        edge.charge(&mut elsewhere, 40_000).unwrap();
        drop(first);
        edge.charge(&mut second, 40_000).unwrap();

        // IPv4-mapped IPv6 and IPv4 are one client.
        assert_eq!(key("::ffff:198.51.100.1"), key("198.51.100.1"));
        assert_ne!(key("198.51.100.1"), key("198.51.100.2"));
    }
}
