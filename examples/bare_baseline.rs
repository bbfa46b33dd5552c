//! The benchmark's reference "limit": the least an axum + Redis server can do per request, with
//! the same axum, redis and reqwest crates as the gateway but none of its work (no signature, no
//! parsing, no deduplication, no middleware). `scripts/bench` runs the same load against it and
//! against the gateway; the ratio shows what the gateway's own work costs.
//!
//! - `POST /webhook`: one `RPUSH bare:inbound:<n>` of the raw body (n = FNV-1a of the body mod 100),
//!   then 200 `{"status":"ok"}`.
//! - `POST /get`: one `LRANGE bare:get -20 -1` of a list filled with 1,000 message-sized items at
//!   start-up, answered as a JSON array of those items.
//! - `POST /send`: one POST of the raw request body to `GRAPH_URL` (one reqwest client for the
//!   process), answered with the stub's body.
//! - `GET /readyz`: `PING`.
//!
//! Configuration: `PORT`, `REDIS_URL` (default redis://127.0.0.1:6379), `GRAPH_URL` (full URL of
//! the messages endpoint, e.g. http://127.0.0.1:9000/v22.0/1/messages), from the environment or as
//! `--port`, `--redis-url`, `--graph-url`. Listens on 127.0.0.1 with tokio's default multi-thread
//! runtime, like the gateway.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use redis::aio::ConnectionManager;

const GET_LIST: &str = "bare:get";
const GET_ITEMS: usize = 1000;

struct Bare {
    redis: ConnectionManager,
    http: reqwest::Client,
    graph_url: String,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

async fn webhook(State(bare): State<Arc<Bare>>, body: Bytes) -> Response {
    let key = format!("bare:inbound:{}", fnv1a(&body) % 100);
    let pushed: redis::RedisResult<i64> = redis::cmd("RPUSH")
        .arg(key)
        .arg(body.as_ref())
        .query_async(&mut bare.redis.clone())
        .await;
    match pushed {
        Ok(_) => ([(CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn get_messages(State(bare): State<Arc<Bare>>) -> Response {
    let items: redis::RedisResult<Vec<String>> = redis::cmd("LRANGE")
        .arg(GET_LIST)
        .arg(-20)
        .arg(-1)
        .query_async(&mut bare.redis.clone())
        .await;
    match items {
        // The items are JSON already: join them rather than parse and re-serialize.
        Ok(items) => {
            let mut out =
                String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
            out.push('[');
            out.push_str(&items.join(","));
            out.push(']');
            ([(CONTENT_TYPE, "application/json")], out).into_response()
        }
        Err(e) => unavailable(e),
    }
}

async fn send(State(bare): State<Arc<Bare>>, body: Bytes) -> Response {
    let sent = bare
        .http
        .post(&bare.graph_url)
        .header(AUTHORIZATION, "Bearer bench")
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(bytes) => (status, [(CONTENT_TYPE, "application/json")], bytes).into_response(),
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn readyz(State(bare): State<Arc<Bare>>) -> Response {
    let pong: redis::RedisResult<String> = redis::cmd("PING")
        .query_async(&mut bare.redis.clone())
        .await;
    match pong {
        Ok(_) => "ready".into_response(),
        Err(e) => unavailable(e),
    }
}

/// `--name value` from the command line, else the environment variable `env`.
fn setting(name: &str, env: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.is_empty())
}

/// A stored-message-sized JSON item, like the gateway keeps per message.
fn sample_item(n: usize) -> String {
    serde_json::json!({
        "id": format!("wamid.bare-{n}"),
        "from": "15550000000",
        "to": "1",
        "timestamp": "1757936743",
        "type": "text",
        "body": "hello",
        "raw": {"from": "15550000000", "id": format!("wamid.bare-{n}"), "timestamp": "1757936743",
                "type": "text", "text": {"body": "hello"}}
    })
    .to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = setting("--port", "PORT")
        .ok_or_else(|| anyhow::anyhow!("set PORT or --port"))?
        .parse()?;
    let redis_url =
        setting("--redis-url", "REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let graph_url = setting("--graph-url", "GRAPH_URL")
        .ok_or_else(|| anyhow::anyhow!("set GRAPH_URL or --graph-url"))?;

    let mut redis = ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    // Fill the /get list once: DEL, then RPUSH in one pipeline.
    let mut fill = redis::pipe();
    fill.atomic().cmd("DEL").arg(GET_LIST).ignore();
    for n in 0..GET_ITEMS {
        fill.cmd("RPUSH").arg(GET_LIST).arg(sample_item(n)).ignore();
    }
    let () = fill.query_async(&mut redis).await?;

    let bare = Arc::new(Bare {
        redis,
        http: reqwest::Client::new(),
        graph_url,
    });
    let app = Router::new()
        .route("/webhook", post(webhook))
        .route("/get", post(get_messages))
        .route("/send", post(send))
        .route("/readyz", get(readyz))
        .with_state(bare);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
