//! /healthz and /readyz.

use serde_json::{Value, json};

use crate::contract_tests;
use crate::helpers::*;

contract_tests!(health_and_readiness_are_200_when_the_store_answers);

async fn health_and_readiness_are_200_when_the_store_answers(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let store = if backend == Backend::Redis {
        "redis"
    } else {
        "embedded"
    };
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "store": store})
    );
}

#[tokio::test]
async fn every_response_echoes_or_generates_a_request_id() {
    let app = spawn_app(Backend::Embedded).await;
    let given = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let generated = app.http.get(app.url("/healthz")).send().await.unwrap();
    let first = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let second = app.http.get(app.url("/healthz")).send().await.unwrap();
    let second = second.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(first.len(), 21, "{first}");
    assert_ne!(first, second, "each request gets its own id");
    assert_eq!(first[..8], second[..8], "same process prefix");
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );
}
