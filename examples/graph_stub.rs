//! A stand-in for Meta's Graph API, for `scripts/bench`: answers `POST /{phone_number_id}/messages`
//! (under any version prefix such as `/v22.0`) with a 200 success body carrying a new message id
//! each time (`wamid.stub.<n>`: the gateway records every send by its id), so `/send` and
//! `/v1/messages` can be benchmarked without the internet and without Meta's latency.
//! `GET /healthz` answers 200.
//!
//! Usage: `graph_stub [PORT]` (or the `PORT` environment variable). It listens on 127.0.0.1 only
//! and runs on a current-thread runtime so it takes at most one core from the server under test.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use std::sync::atomic::{AtomicU64, Ordering};

/// Message ids given so far.
static SENT: AtomicU64 = AtomicU64::new(0);

async fn messages() -> impl IntoResponse {
    let n = SENT.fetch_add(1, Ordering::Relaxed);
    let body = format!(
        r#"{{"messaging_product":"whatsapp","contacts":[{{"input":"x"}}],"messages":[{{"id":"wamid.stub.{n}"}}]}}"#
    );
    ([(CONTENT_TYPE, "application/json")], body)
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other("usage: graph_stub PORT (or set PORT)"))?;
    let app = Router::new()
        .route("/{id}/messages", post(messages))
        .route("/{version}/{id}/messages", post(messages))
        .route("/healthz", get(|| async { "ok" }));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            axum::serve(listener, app).await
        })
}
