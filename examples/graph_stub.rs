//! A stand-in for Meta's Graph API, for `scripts/bench`: answers `POST /{phone_number_id}/messages`
//! (under any version prefix such as `/v22.0`) with a fixed 200 success body, so `/send` can be
//! benchmarked without the internet and without Meta's latency. `GET /healthz` answers 200.
//!
//! Usage: `graph_stub [PORT]` (or the `PORT` environment variable). It listens on 127.0.0.1 only
//! and runs on a current-thread runtime so it takes at most one core from the server under test.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};

const SUCCESS: &str = r#"{"messaging_product":"whatsapp","contacts":[{"input":"x","wa_id":"x"}],"messages":[{"id":"wamid.stub"}]}"#;

async fn messages() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], SUCCESS)
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
