//! Request limits: the request timeout (503) and the body limit when no Content-Length announces
//! the size (chunked bodies are counted while they are read).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn request_running_past_the_timeout_is_503() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("REQUEST_TIMEOUT_SECS".into(), "1".into());
        vars.insert("GRAPH_TIMEOUT_SECS".into(), "10".into());
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&app.graph)
        .await;
    let started = Instant::now();
    let response = app
        .post_send(json!({"number": "919216598210", "text": "slow"}))
        .await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413_and_stores_nothing() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("MAX_BODY_BYTES".into(), "2048".into());
        vars.remove("APP_SECRET");
    })
    .await;
    // A valid webhook padded past the limit, sent chunked: no Content-Length to refuse up front.
    let padding = "x".repeat(4096);
    let body = webhook_with(vec![text_message("wamid.CHUNK", "919216598210", &padding)]);
    let port = app.address.rsplit(':').next().unwrap();
    let mut stream = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut request = b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for chunk in body.as_bytes().chunks(1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(app.ids_of("919216598210").await.is_empty());
}
