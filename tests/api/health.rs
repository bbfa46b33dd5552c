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
        json!({"status": "ready", "store": store,
               "webhooks": {"last_received_at": null, "silent_for_secs": null}})
    );
}

/// When Meta last reached the webhook: in /readyz's detail and /metrics. A refused (unsigned)
/// delivery does not count.
#[tokio::test]
async fn the_last_webhook_delivery_is_tracked_for_readyz_and_metrics() {
    let app = spawn_app(Backend::Embedded).await;
    let body = webhook_with(vec![text_message("wamid.H1", "919216598210", "hi")]);
    let unsigned = app.post_webhook_raw(body.clone().into_bytes(), None).await;
    assert_eq!(unsigned.status(), 401);
    let readyz = |app: &TestApp| {
        let request = app.http.get(app.url("/readyz"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(
        readyz(&app).await["webhooks"]["last_received_at"],
        Value::Null
    );
    assert_eq!(
        app.metric("whatsapp_gateway_webhook_last_received_timestamp_seconds")
            .await,
        0.0
    );
    let before = now_secs();
    app.post_webhook_ok(&body).await;
    let webhooks = readyz(&app).await["webhooks"].clone();
    let at = webhooks["last_received_at"].as_i64().unwrap();
    assert!((before..before + 5).contains(&at), "{webhooks}");
    assert!(webhooks["silent_for_secs"].as_i64().unwrap() < 5);
    assert!(webhooks.get("warning").is_none(), "{webhooks}");
    assert_eq!(
        app.metric("whatsapp_gateway_webhook_last_received_timestamp_seconds")
            .await,
        at as f64
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
