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

/// An app whose GRAPH_API_BASE is `base`.
async fn app_with_graph_base(base: String) -> TestApp {
    spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("GRAPH_API_BASE".into(), base);
    })
    .await
}

/// Sends a text through `app`, expects 502 and returns the text `detail`.
async fn send_expecting_502(app: &TestApp) -> String {
    let response = app
        .post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    assert_eq!(response.status(), 502);
    response.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .expect("a text detail")
        .to_owned()
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
    // Meta's error verbatim, with a hint beside it for the codes people meet most.
    let mut expected = meta_error;
    expected["hint"] = json!(
        "The recipient is not in the test number's allowed list: add it in the App Dashboard (WhatsApp > API Setup > To), in the exact form WhatsApp shows (some countries, e.g. MX and AR, differ from the dialled form)."
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"detail": expected})
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
    // The documented shape: `detail` is a text naming Meta's status, code and message.
    let detail = response.json::<Value>().await.unwrap()["detail"].clone();
    let detail = detail.as_str().expect("a text detail");
    assert_eq!(
        detail,
        "Graph API answered 500: code 1: An unknown error occurred"
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
    let app = app_with_graph_base(format!("http://127.0.0.1:{closed_port}/v22.0")).await;
    let detail = send_expecting_502(&app).await;
    assert!(detail.starts_with("Graph API unreachable"), "{detail}");
    assert!(detail.contains("connection refused"), "{detail}");
    assert!(
        detail.contains(&format!(
            "GRAPH_API_BASE http://127.0.0.1:{closed_port}/v22.0"
        )),
        "{detail}"
    );
    assert!(!detail.contains(ACCESS_TOKEN));
}

#[tokio::test]
async fn unresolvable_graph_host_is_502_naming_dns() {
    let app = app_with_graph_base("http://nonexistent.invalid/v22.0".into()).await;
    let detail = send_expecting_502(&app).await;
    assert!(
        detail.starts_with("Graph API unreachable: DNS failure: could not resolve"),
        "{detail}"
    );
    assert!(detail.contains("nonexistent.invalid"), "{detail}");
    assert!(!detail.contains(ACCESS_TOKEN));
}

/// A Graph API answering `status` with a Location on another server: the answer is 502 naming the
/// redirect, and the other server receives nothing (neither the text nor the token).
async fn redirect_is_502_and_not_followed(status: u16) {
    let app = spawn_app(Backend::Embedded).await;
    let elsewhere = wiremock::MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(meta_success()))
        .mount(&elsewhere)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).insert_header(
            "location",
            format!("{}/v22.0/1/messages?x=1", elsewhere.uri()).as_str(),
        ))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app
        .post_send(json!({"number": "919216598210", "text": "secret text"}))
        .await;
    assert_eq!(response.status(), 502, "{status}");
    let body = response.json::<Value>().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert_eq!(
        detail,
        format!(
            "Graph API answered a redirect ({status} to 127.0.0.1); it was not followed and the message was not sent"
        )
    );
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "the redirect target was called"
    );
}

#[tokio::test]
async fn a_302_is_502_and_not_followed() {
    redirect_is_502_and_not_followed(302).await;
}

#[tokio::test]
async fn a_307_is_502_and_the_text_is_not_resent() {
    redirect_is_502_and_not_followed(307).await;
}

#[tokio::test]
async fn a_graph_response_over_one_mib_is_502_too_large() {
    let app = spawn_app(Backend::Embedded).await;
    // Valid JSON of 2 MiB: without the cap it would be relayed as a 200.
    let big = format!(
        r#"{{"messaging_product":"whatsapp","messages":[{{"id":"wamid.X"}}],"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
        .mount(&app.graph)
        .await;
    let detail = send_expecting_502(&app).await;
    assert!(detail.contains("response too large"), "{detail}");
}

#[tokio::test]
async fn an_endless_chunked_graph_response_is_cut_at_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // No Content-Length: only reading incrementally can stop it. GRAPH_TIMEOUT_SECS is 2, so a
    // client that kept reading would answer 504, not 502.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut request).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        let mut sent = 0usize;
        while socket.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 64 * 1024;
        }
        sent
    });
    let app = app_with_graph_base(format!("http://127.0.0.1:{port}/v22.0")).await;
    let detail = send_expecting_502(&app).await;
    assert!(detail.contains("response too large"), "{detail}");
    let sent = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    assert!(sent < 16 * 1024 * 1024, "{sent} bytes were read");
}

#[tokio::test]
async fn a_graph_server_error_with_a_huge_message_gives_a_bounded_text_detail() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"message": "m".repeat(500_000), "code": 2}})),
        )
        .mount(&app.graph)
        .await;
    let response = app
        .post_send(json!({"number": "919216598210", "text": "hi"}))
        .await;
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(body.len() < 1024, "{} bytes", body.len());
    let detail = serde_json::from_str::<Value>(&body).unwrap()["detail"].clone();
    let detail = detail.as_str().unwrap();
    assert!(
        detail.starts_with("Graph API answered 503: code 2: mmm"),
        "{detail}"
    );
    assert!(detail.contains("truncated"), "{detail}");
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

#[tokio::test]
async fn a_tls_failure_is_502_naming_tls() {
    // An https:// base pointing at a plain-HTTP server: the TLS handshake fails.
    let plain = wiremock::MockServer::start().await;
    let base = plain.uri().replace("http://", "https://");
    let app = app_with_graph_base(format!("{base}/v22.0")).await;
    let detail = send_expecting_502(&app).await;
    assert!(detail.starts_with("Graph API unreachable: TLS"), "{detail}");
}
