//! GET /metrics: Prometheus text with the counters the issue asks for, behind API_KEY.

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    response.text().await.unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
}

#[tokio::test]
async fn webhook_store_and_graph_outcomes_are_counted() {
    let app = spawn_app(Backend::Embedded).await;
    let body = webhook_with(vec![text_message("wamid.M1", "919216598210", "a")]);
    app.post_webhook(&body).await;
    app.post_webhook(&body).await;
    app.post_webhook_raw(body.into_bytes(), None).await;
    app.post_webhook("{").await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": {"message": "bad", "code": 131030}})),
        )
        .mount(&app.graph)
        .await;
    app.post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    app.post_get(json!({"number": "919216598210"})).await;
    // A read (a media URL) is counted too, under its own operation.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Error validating access token", "code": 190}}),
        ))
        .mount(&app.graph)
        .await;
    let media = app
        .http
        .get(app.url("/v1/media/1234567"))
        .send()
        .await
        .unwrap();
    assert_eq!(media.status(), 502);
    // An upload (Meta refuses it: the POST mock above) and a delete, each under its operation.
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Error validating access token", "code": 190}}),
        ))
        .mount(&app.graph)
        .await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"\x89PNG\r\n\x1a\n".to_vec())
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let upload = app
        .http
        .post(app.url("/v1/media"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(upload.status().is_client_error(), "{}", upload.status());
    let delete = app
        .http
        .delete(app.url("/v1/media/1234567"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 502);

    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "whatsapp_gateway_webhooks_received_total"),
        4.0
    );
    assert_eq!(value(&text, "whatsapp_gateway_messages_stored_total"), 1.0);
    assert_eq!(
        value(&text, "whatsapp_gateway_messages_duplicate_total"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"whatsapp_gateway_webhooks_rejected_total{reason="signature_missing"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"whatsapp_gateway_webhooks_rejected_total{reason="invalid_payload"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"whatsapp_gateway_graph_requests_total{operation="send",outcome="rejected",code="131030"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"whatsapp_gateway_graph_requests_total{operation="read",outcome="rejected",code="190"}"#
        ),
        1.0
    );
    for series in [
        r#"whatsapp_gateway_graph_requests_total{operation="upload",outcome="rejected",code="131030"}"#,
        r#"whatsapp_gateway_graph_requests_total{operation="delete",outcome="rejected",code="190"}"#,
    ] {
        assert_eq!(value(&text, series), 1.0, "{series}");
    }
    assert_eq!(
        value(
            &text,
            r#"whatsapp_gateway_store_duration_seconds_count{operation="save"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"whatsapp_gateway_store_duration_seconds_count{operation="fetch"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "whatsapp_gateway_store_queue_depth"), 0.0);
    assert_eq!(
        value(&text, "whatsapp_gateway_http_requests_shed_total"),
        0.0
    );
}

#[tokio::test]
async fn metrics_need_the_api_key_when_set() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("API_KEY".into(), "metrics-key".into());
    })
    .await;
    assert_eq!(app.get_status("/metrics").await, 401);
    let ok = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("metrics-key")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
