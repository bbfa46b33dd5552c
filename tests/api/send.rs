//! POST /send against a wiremock Graph API that checks Meta's exact request.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

fn meta_success() -> Value {
    json!({"messaging_product": "whatsapp", "contacts": [{"input": "919216598210", "wa_id": "919216598210"}],
           "messages": [{"id": "wamid.HBgMOTE5MjE2NTk4MjEwFQIAERgSQ0E="}]})
}

#[tokio::test]
async fn text_is_sent_with_metas_exact_body_and_bearer() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"messaging_product": "whatsapp", "to": "919216598210", "type": "text", "text": {"body": "Hello from Rust"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(meta_success()))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app
        .post_send(json!({"number": "+91 92165-98210", "text": "Hello from Rust"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), meta_success());
}

#[tokio::test]
async fn meta_error_is_400_carrying_metas_error_verbatim() {
    let app = spawn_app(Backend::Embedded).await;
    let meta_error = json!({"error": {"message": "(#131030) Recipient phone number not in allowed list", "type": "OAuthException",
        "code": 131030, "error_subcode": 2655007, "error_data": {"messaging_product": "whatsapp", "details": "Recipient phone number not in allowed list"},
        "fbtrace_id": "AbCdEf123"}});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(meta_error.clone()))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app
        .post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"detail": meta_error})
    );
}

#[tokio::test]
async fn graph_server_error_is_502_and_timeout_is_504() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "An unknown error occurred", "code": 1}}),
            ),
        )
        .up_to_n_times(1)
        .mount(&app.graph)
        .await;
    let response = app
        .post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.json::<Value>().await.unwrap()["detail"]["error"]["code"],
        1
    );

    // GRAPH_TIMEOUT_SECS is 2 in tests.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(meta_success())
                .set_delay(Duration::from_secs(4)),
        )
        .mount(&app.graph)
        .await;
    let response = app
        .post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    assert_eq!(response.status(), 504);
    assert_eq!(
        response.json::<Value>().await.unwrap()["detail"],
        "Graph API did not answer in time"
    );
}

#[tokio::test]
async fn unreachable_graph_is_502() {
    let closed_port = free_port();
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert(
            "GRAPH_API_BASE".into(),
            format!("http://127.0.0.1:{closed_port}/v22.0"),
        );
    })
    .await;
    let response = app
        .post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    assert_eq!(response.status(), 502);
    let detail = response.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.starts_with("Graph API unreachable"), "{detail}");
    assert!(!detail.contains(ACCESS_TOKEN));
}

#[tokio::test]
async fn missing_access_token_or_phone_number_id_is_503_naming_the_variable() {
    for missing in ["ACCESS_TOKEN", "PHONE_NUMBER_ID"] {
        let app = spawn_app_with(Backend::Embedded, |vars| {
            vars.remove(missing);
        })
        .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&app.graph)
            .await;
        let response = app
            .post_send(json!({"number": "919216598210", "text": "hi"}))
            .await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.json::<Value>().await.unwrap()["detail"],
            format!("sending is not configured: set {missing}")
        );
    }
}

#[tokio::test]
async fn invalid_number_or_text_is_422_and_nothing_is_sent() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&app.graph)
        .await;
    let cases = [
        (
            json!({"number": "12", "text": "hi"}),
            "number",
            "number must have 7-15 digits (found 2)",
        ),
        (
            json!({"number": "919216598210", "text": ""}),
            "text",
            "text must have 1-4096 characters and not be only whitespace",
        ),
        (
            json!({"number": "919216598210", "text": "   "}),
            "text",
            "text must have 1-4096 characters and not be only whitespace",
        ),
        (
            json!({"number": "919216598210", "text": "a".repeat(4097)}),
            "text",
            "text must have 1-4096 characters (found 4097)",
        ),
        (
            json!({"number": "919216598210"}),
            "text",
            "text is required",
        ),
    ];
    for (body, field, msg) in cases {
        let response = app.post_send(body).await;
        assert_eq!(response.status(), 422);
        let detail = &response.json::<Value>().await.unwrap()["detail"][0];
        assert_eq!(detail["loc"], json!(["body", field]));
        assert_eq!(detail["msg"], msg);
    }
}

#[tokio::test]
async fn exactly_4096_characters_are_sent() {
    let app = spawn_app(Backend::Embedded).await;
    let text = "é".repeat(4096);
    Mock::given(method("POST"))
        .and(body_json(json!({"messaging_product": "whatsapp", "to": "919216598210", "type": "text", "text": {"body": text}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(meta_success()))
        .expect(1)
        .mount(&app.graph)
        .await;
    assert_eq!(
        app.post_send(json!({"number": "919216598210", "text": text}))
            .await
            .status(),
        200
    );
}
