//! A stand-in for Meta's Graph API, for `scripts/bench`: answers `POST /{phone_number_id}/messages`
//! (under any version prefix such as `/v22.0`) with a 200 success body carrying a new message id
//! each time (`wamid.stub.<n>`: the gateway records every send by its id), so `/send` and
//! `/v1/messages` can be benchmarked without the internet and without Meta's latency.
//! `GET /{version}/{media_id}` describes a media file whose `url` is this stub's
//! `GET /dl/{media_id}`, which streams MEDIA_BYTES bytes (default 50 MiB) of `application/pdf`
//! from one static 64 KiB chunk (the stub itself holds no file), for the media download bench.
//! `GET /healthz` answers 200.
//!
//! Usage: `graph_stub [PORT]` (or the `PORT` environment variable). It listens on 127.0.0.1 only
//! and runs on a current-thread runtime so it takes at most one core from the server under test.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
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

/// The port this stub listens on (for the download URLs it gives out).
static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

/// One chunk of every download.
static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// The size of every media file.
fn media_bytes() -> u64 {
    std::env::var("MEDIA_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50 * 1024 * 1024)
}

/// `GET /{version}/{media_id}`: Meta's description of a media file, pointing at `/dl/{id}`.
async fn describe(Path((_version, id)): Path<(String, String)>) -> impl IntoResponse {
    let port = PORT.get().copied().unwrap_or_default();
    let body = format!(
        r#"{{"url":"http://127.0.0.1:{port}/dl/{id}","mime_type":"application/pdf","sha256":"x","file_size":{},"id":"{id}","messaging_product":"whatsapp"}}"#,
        media_bytes()
    );
    ([(CONTENT_TYPE, "application/json")], body)
}

/// `GET /dl/{media_id}`: the file, streamed.
async fn download() -> impl IntoResponse {
    let total = media_bytes();
    let chunks = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let n = (total - sent).min(CHUNK.len() as u64) as usize;
        let chunk = bytes::Bytes::from_static(&CHUNK[..n]);
        Some((Ok::<_, std::convert::Infallible>(chunk), sent + n as u64))
    });
    (
        [
            (CONTENT_TYPE, "application/pdf".to_owned()),
            (CONTENT_LENGTH, total.to_string()),
        ],
        Body::from_stream(chunks),
    )
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other("usage: graph_stub PORT (or set PORT)"))?;
    let _ = PORT.set(port);
    let app = Router::new()
        .route("/{a}/messages", post(messages))
        .route("/{a}/{b}/messages", post(messages))
        .route("/{a}/{b}", get(describe))
        .route("/dl/{a}", get(download))
        .route("/healthz", get(|| async { "ok" }));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            axum::serve(listener, app).await
        })
}
