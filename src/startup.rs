//! [`Application`]: builds the store, Graph client and router from [`Settings`], binds the
//! listener (port 0 picks a free one: tests read it back with [`Application::port`]) and serves
//! until a shutdown signal, then drains in-flight requests for up to SHUTDOWN_GRACE_SECS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::ServiceExt;
use tokio::net::TcpListener;

use crate::config::{Settings, StoreSettings};
use crate::graph::GraphClient;
use crate::http::{self, AppState};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::webhook::AppSecret;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: http::AppService,
    state: Arc<AppState>,
    shutdown_grace: Duration,
}

impl Application {
    /// Opens the store, builds the router and binds HOST:PORT.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings.store).await?;
        let graph = GraphClient::new(&settings.graph).context("building the Graph API client")?;
        let state = Arc::new(AppState {
            store,
            graph,
            verify_token: settings.webhook.verify_token.clone(),
            app_secret: settings.webhook.app_secret.as_ref().map(AppSecret::new),
            api_key: settings.api_key.clone(),
            metrics: crate::metrics::Metrics::new(),
            body_limits: crate::http::extract::BodyLimits {
                max_bytes: settings.http.max_body_bytes,
                timeout: settings.http.body_timeout,
            },
        });
        let app = http::app(state.clone(), &settings.http);
        let address = SocketAddr::new(settings.http.host, settings.http.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} (set HOST and PORT)"))?;
        Ok(Self {
            listener,
            app,
            state,
            shutdown_grace: settings.http.shutdown_grace,
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

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// for up to the grace period, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let address = self.local_addr();
        tracing::info!(%address, store = self.state.store.backend(), "server.listening");
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("server.shutdown draining in-flight requests");
            let _ = stopping_tx.send(());
        };
        let serve =
            axum::serve(self.listener, self.app.into_make_service()).with_graceful_shutdown(signal);
        let grace = self.shutdown_grace;
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => { tracing::info!("server.stopped"); result }
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "server.shutdown grace period over; dropping remaining requests");
                Ok(())
            }
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
            let path = embedded.data_dir.join(crate::store::embedded::DB_FILE);
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
