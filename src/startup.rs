//! [`Application`]: builds the store, Graph client and router from [`Settings`], binds the
//! listener (port 0 picks a free one: tests read it back with [`Application::port`]) and serves
//! until a shutdown signal, then drains in-flight requests for up to SHUTDOWN_GRACE_SECS.
//!
//! The accept loop is ours rather than `axum::serve`, for what an anonymous client must not be
//! able to take:
//! - **the accept queue**: the listener asks for a backlog of [`LISTEN_BACKLOG`] (the kernel caps
//!   it at `net.core.somaxconn`) instead of std's 128. Under a connection flood of a few hundred
//!   sockets a 128-deep queue overflows, and the kernel then drops the handshakes of legitimate
//!   clients too, which costs each of them a 1 s SYN retransmit (measured: a webhook p99 of
//!   1.05 s in the edge-attack fault test, against about 0.1 s with the deep queue);
//! - **connections**: at most MAX_CONNECTIONS open (default 3/4 of the open-file limit, whose soft
//!   value is raised to the hard one at start-up); past it a new connection is closed at once, so
//!   the process never hits "Too many open files" and stops accepting;
//! - **slow or idle connections**: hyper's header-read timeout (HEADER_READ_TIMEOUT_SECS) closes a
//!   connection whose request head is not complete in time, counted from the start and, on
//!   keep-alive connections, from the end of the previous response (so it is also the idle
//!   timeout);
//! - **HTTP/2 cleartext** is off unless HTTP2=true, and then capped at HTTP2_MAX_STREAMS streams
//!   per connection;
//! - **shutdown** first ends the event streams ([`crate::events`]: they would otherwise hold the
//!   whole grace period), then closes idle connections at once (hyper's graceful shutdown), lets
//!   requests in flight finish for SHUTDOWN_GRACE_SECS, and lets sends in flight finish for up to
//!   GRAPH_TIMEOUT_SECS + 1 s: Meta may already have the message, and cutting the answer off would
//!   make the client send it again.
//!
//! HTTP/1 connections are served with upgrades (for `GET /v1/ws`); an upgraded connection leaves
//! the connection cap and counts against MAX_EVENT_STREAMS instead. Requests for `GET /v1/events`
//! carry a [`StreamAbort`] token that closes their connection: a stalled SSE client's connection
//! is never polled for the body, so only this can cut it off.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::{Settings, StoreSettings};
use crate::events::{EventHub, StreamAbort};
use crate::graph::GraphClient;
use crate::http::{self, AppState};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::webhook::AppSecret;

/// The listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 on current
/// Linux). See the module docs for why std's 128 is not enough.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` with `SO_REUSEADDR` (as std does, so a restart does not wait out TIME_WAIT)
/// and a [`LISTEN_BACKLOG`]-deep accept queue.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept free for everything but client connections (store, Graph API, logs).
const RESERVED_FDS: u64 = 128;
/// Largest read buffer of one HTTP/1 connection (hyper's default grows to ~400 KB; with
/// thousands of uploads that alone would be gigabytes). Also bounds a request head.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Highest default MAX_CONNECTIONS.
const DEFAULT_MAX_CONNECTIONS_CAP: usize = 16_384;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: http::AppService,
    state: Arc<AppState>,
    shutdown_grace: Duration,
    send_grace: Duration,
    connections: ConnectionSettings,
    /// TRUSTED_PROXIES: whose `X-Forwarded-For` names the client address.
    trusted_proxies: Arc<crate::config::TrustedProxies>,
}

/// How connections are served.
#[derive(Debug, Clone, Copy)]
struct ConnectionSettings {
    max_connections: usize,
    header_read_timeout: Duration,
    http2: bool,
    http2_max_streams: u32,
}

impl Application {
    /// Opens the store, builds the router and binds HOST:PORT.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let open_files = raise_open_file_limit();
        let max_connections = settings.http.max_connections.unwrap_or_else(|| {
            let usable = open_files.saturating_sub(RESERVED_FDS) * 3 / 4;
            (usable as usize).clamp(16, DEFAULT_MAX_CONNECTIONS_CAP)
        });
        if max_connections as u64 + RESERVED_FDS > open_files {
            tracing::warn!(
                max_connections,
                open_files,
                "config.warning MAX_CONNECTIONS is close to the open-file limit: the process may run out of file descriptors; lower it or raise the limit (ulimit -n)"
            );
        }
        let store = open_store(&settings.store).await?;
        let metrics = crate::metrics::Metrics::new();
        let mut graph = GraphClient::new(&settings.graph)
            .context("building the Graph API client")?
            .counting(metrics.graph_requests.clone());
        if let Store::Redis(redis) = &store {
            // Instances on one Redis share each number's send rate, as Meta counts it.
            graph = graph.pacing_shared(redis.clone());
        }
        let default_number = settings
            .graph
            .phone_number_id
            .as_deref()
            .and_then(|id| crate::domain::PhoneNumberId::parse(id).ok());
        crate::service::upgrade::spawn_import(store.clone(), default_number.clone());
        let conversations =
            crate::service::conversations::Conversations::new(store.clone(), default_number);
        let events = EventHub::start(&settings, &store, &metrics)
            .await
            .context("starting the event reader")?;
        let outgoing = crate::outgoing::Outgoing::start(
            &settings.outgoing,
            store.clone(),
            events.clone(),
            &metrics,
        )
        .await
        .context("starting the outgoing webhooks")?;
        let sender = crate::service::send::Sender::new(graph.clone(), store.clone());
        let auto_replies = crate::rules::AutoReplies::start(
            &settings.rules,
            store.clone(),
            events.clone(),
            sender.clone(),
            &metrics,
        )
        .await
        .context("starting the auto-replies")?;
        let account = crate::service::account::Account::new(graph.clone());
        let state = Arc::new(AppState {
            conversations,
            sender,
            account,
            store,
            graph,
            verify_token: settings.webhook.verify_token.clone(),
            app_secret: settings.webhook.app_secret.as_ref().map(|s| {
                AppSecret::new(s).with_unicode_fallback(settings.webhook.unicode_fallback)
            }),
            api_key: settings.api_key.clone(),
            metrics,
            edge: Arc::new(crate::http::edge::Edge::new(&settings.http)),
            allowed_hosts: settings.http.allowed_hosts.clone(),
            events,
            sessions: crate::http::session::Sessions::new(
                settings.api_key.as_ref(),
                settings.inbox_session,
            ),
            wrong_keys: crate::http::limiter::WrongKeys::default(),
            delivery: crate::service::delivery::DeliveryHealth::new(
                settings.webhook.silence_warning,
            ),
            webhooks: crate::service::webhooks::Webhooks::new(outgoing.clone()),
            outgoing,
            rules: crate::service::rules::Rules::new(auto_replies.clone()),
            auto_replies,
        });
        let app = http::app(state.clone());
        let address = SocketAddr::new(settings.http.host, settings.http.port);
        let listener =
            listen(address).with_context(|| format!("binding {address} (set HOST and PORT)"))?;
        tracing::debug!(max_connections, open_files, "server.limits");
        Ok(Self {
            listener,
            app,
            state,
            shutdown_grace: settings.http.shutdown_grace,
            send_grace: settings.graph.timeout + Duration::from_secs(1),
            connections: ConnectionSettings {
                max_connections,
                header_read_timeout: settings.http.header_read_timeout,
                http2: settings.http.http2,
                http2_max_streams: settings.http.http2_max_streams,
            },
            trusted_proxies: Arc::new(settings.http.trusted_proxies.clone()),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, closes idle connections, lets
    /// in-flight requests finish for up to the grace period (sends for up to the Graph timeout),
    /// and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let address = self.local_addr();
        let limits = self.connections;
        tracing::info!(%address, store = self.state.store.backend(), max_connections = limits.max_connections, http2 = limits.http2, "server.listening");
        // Every connection task, and the signal that starts their graceful shutdown.
        let connections = TaskTracker::new();
        let draining = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(READ_BUFFER_BYTES)
            .keep_alive(true);
        let mut auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(READ_BUFFER_BYTES)
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .max_pending_accept_reset_streams(Some(limits.http2_max_streams as usize));
        let auto = Arc::new(auto);
        let metrics = &self.state.metrics;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::error!(error.message = %e, "server.accept_failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics.connections_refused.inc();
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "server.connection_refused"
                );
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let app = self.app.clone();
            // Decided once per connection: only a trusted proxy's requests have their
            // X-Forwarded-For read.
            let peer = crate::http::edge::Peer::new(peer.ip(), &self.trusted_proxies);
            let abort = CancellationToken::new();
            let stream_abort = abort.clone();
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    let connection = peer.connection(request.headers());
                    request.extensions_mut().insert(connection);
                    if request.uri().path() == crate::events::sse::PATH {
                        request
                            .extensions_mut()
                            .insert(StreamAbort(stream_abort.clone()));
                    }
                    app.clone().oneshot(request)
                },
            );
            let io = TokioIo::new(stream);
            let state = self.state.clone();
            state.metrics.connections_open.inc();
            let draining = draining.clone();
            if limits.http2 {
                let conn = auto
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                connections.spawn(async move {
                    serve(conn, |c| c.graceful_shutdown(), draining, abort).await;
                    state.metrics.connections_open.dec();
                    drop(slot);
                });
            } else {
                let conn = http1.serve_connection(io, service).with_upgrades();
                connections.spawn(async move {
                    serve(conn, |c| c.graceful_shutdown(), draining, abort).await;
                    state.metrics.connections_open.dec();
                    drop(slot);
                });
            }
        }
        drop(self.listener);
        // Event streams end first: open streams would otherwise hold the whole grace period.
        self.state.events.shutdown();
        self.state.outgoing.shutdown();
        self.state.auto_replies.shutdown();
        tracing::info!("server.shutdown draining in-flight requests");
        draining.cancel();
        connections.close();
        let mut drained = std::pin::pin!(async {
            connections.wait().await;
            // WebSocket tasks (their connections left hyper at the upgrade) send their close.
            self.state.events.stopped().await;
            // Outgoing attempts in flight finish (or their lease runs out after a cut-off).
            self.state.outgoing.stopped().await;
            // Auto-replies being sent finish (the engine takes no new page).
            self.state.auto_replies.stopped().await;
        });
        if tokio::time::timeout(self.shutdown_grace, &mut drained)
            .await
            .is_ok()
        {
            tracing::info!("server.stopped");
            return Ok(());
        }
        let sends = self.state.edge.sends_in_flight();
        if sends > 0 {
            let extra = self.send_grace.saturating_sub(self.shutdown_grace);
            tracing::info!(
                sends,
                wait_secs = extra.as_secs(),
                "server.shutdown waiting for sends in flight (GRAPH_TIMEOUT_SECS)"
            );
            let _ = tokio::time::timeout(extra, self.state.edge.sends_finished()).await;
            // Let the answers be written.
            if tokio::time::timeout(Duration::from_secs(1), &mut drained)
                .await
                .is_ok()
            {
                tracing::info!("server.stopped");
                return Ok(());
            }
        }
        tracing::warn!(
            grace_secs = self.shutdown_grace.as_secs(),
            "server.shutdown grace period over; dropping remaining requests"
        );
        Ok(())
    }
}

/// Serves one connection until it ends, starting its graceful shutdown (no new requests; idle
/// connections close at once) when `draining` fires, and dropping it when `abort` fires.
async fn serve<C: Future>(
    conn: C,
    graceful_shutdown: impl FnOnce(std::pin::Pin<&mut C>),
    draining: CancellationToken,
    abort: CancellationToken,
) {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = abort.cancelled() => return,
        () = draining.cancelled() => graceful_shutdown(conn.as_mut()),
    }
    tokio::select! {
        _ = conn => {}
        () = abort.cancelled() => {}
    }
}

/// Raises the soft open-file limit to the hard limit and returns the limit now in force (the
/// usual soft default of 1024 is far below what a server holding many connections needs).
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error.message = %e, "server.limits could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

async fn open_store(settings: &StoreSettings) -> anyhow::Result<Store> {
    match settings {
        StoreSettings::Redis(redis) => {
            let store = Store::Redis(RedisStore::new(redis).context("REDIS_URL")?);
            // The first readiness probe: reads maxmemory-policy and writes the probe key.
            match tokio::time::timeout(redis.timeout * 2, store.probe()).await {
                Ok(Ok(())) => {
                    tracing::info!(backend = "redis", list = %redis.inbound_list, "store.ready")
                }
                Ok(Err(crate::store::StoreError::Refused(reason))) => {
                    anyhow::bail!("refusing to start on this Redis: {reason}")
                }
                _ => tracing::warn!(
                    backend = "redis",
                    "store.unreachable Redis does not answer yet; /readyz reports 503 and webhooks get 503 until it does"
                ),
            }
            Ok(store)
        }
        StoreSettings::Embedded(embedded) => {
            let path = embedded.db_path();
            let store = Store::Embedded(EmbeddedStore::open(embedded).with_context(|| {
                format!(
                    "opening the embedded store at {} (set DATA_DIR)",
                    path.display()
                )
            })?);
            // The first readiness probe, so /readyz is truthful from the first request.
            if let Err(e) = store.probe().await {
                tracing::warn!(backend = "embedded", error.message = %e, "store.unavailable the first write failed; /readyz reports 503");
            }
            tracing::info!(backend = "embedded", path = %path.display(), "store.ready");
            Ok(store)
        }
    }
}

/// Completes on SIGTERM (Docker, systemd) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
