//! 11. What a web page the operator visits, or a hostile Graph endpoint, can make the binary do,
//!     with the careless default (API_KEY unset):
//! - a cross-site form POST (text/plain, urlencoded, multipart, or a `no-cors` fetch without a
//!   Content-Type) to `/send` sends nothing (415) and to `/get` reads nothing;
//! - a DNS-rebinding request (`Host: attacker.example`) to `/get` is refused (403);
//! - a Graph API that answers with a redirect (302, 307) is not followed: `/send` is 502 and the
//!   redirect target receives nothing.
//!
//! Pass criterion: 0 messages sent, 0 reads answered, 0 requests at the redirect target.

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::gateway_env;
use crate::helpers::{ACCESS_TOKEN, Gateway, PHONE_NUMBER_ID};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_rebinding_and_graph_redirects_achieve_nothing() {
    let _serial = crate::serial().await;
    let graph = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&elsewhere)
        .await;
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("ACCESS_TOKEN", ACCESS_TOKEN),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
            ("GRAPH_API_BASE", &graph.uri()),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let client = reqwest::Client::new();
    let send = r#"{"number":"919216598210","text":"sent by a web page"}"#;

    // Cross-site forms and no-cors fetches: every content type a page can send without a preflight.
    let mut answered = 0;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        for endpoint in ["/send", "/get"] {
            let mut request = client
                .post(gateway.url(endpoint))
                .header("origin", "https://attacker.example")
                .body(send);
            if let Some(t) = content_type {
                request = request.header("content-type", t);
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 415, "{endpoint} with {content_type:?}");
            if status.is_success() {
                answered += 1;
            }
        }
    }
    assert!(
        graph.received_requests().await.unwrap().is_empty(),
        "nothing reached the Graph API"
    );

    // DNS rebinding: the page's own host name now resolves to 127.0.0.1.
    let rebound = client
        .post(gateway.url("/get"))
        .header("host", "attacker.example:8000")
        .header("content-type", "application/json")
        .body(r#"{"number":"919216598210"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    if rebound.status().is_success() {
        answered += 1;
    }

    // A Graph API answering with redirects: never followed.
    for status in [302, 307] {
        graph.reset().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("location", format!("{}/stolen", elsewhere.uri()).as_str()),
            )
            .mount(&graph)
            .await;
        let response = client
            .post(gateway.url("/send"))
            .header("content-type", "application/json")
            .body(send)
            .send()
            .await
            .unwrap();
        let code = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(code, 502, "a {status} is a failure: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    let leaked = elsewhere.received_requests().await.unwrap().len();
    println!(
        "browser attacks: {answered} cross-site/rebinding requests answered, {leaked} requests reached the redirect target"
    );
    assert_eq!(answered, 0);
    assert_eq!(leaked, 0);
}
