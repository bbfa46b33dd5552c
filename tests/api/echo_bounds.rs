//! Echoed input is bounded: a huge bad value never comes back as a huge error body.

use serde_json::{Value, json};

use crate::helpers::*;

/// 3 MB: under MAX_BODY_BYTES (4 MiB), so the body is read and judged.
const HUGE: usize = 3_000_000;

/// Body of `response`, asserting its status and that it stays small.
async fn small_body(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let text = response.text().await.unwrap();
    assert!(text.len() < 4096, "{} bytes came back", text.len());
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_huge_bad_value_sent_to_send_or_get_gives_a_small_422() {
    let app = spawn_app(Backend::Embedded).await;
    let huge = "a".repeat(HUGE);
    let huge_digits = "9".repeat(HUGE);
    for body in [
        json!({"number": huge, "text": "hi"}),
        json!({"number": huge_digits, "text": "hi"}),
        json!({"number": [huge], "text": "hi"}),
        json!({"number": "919216598210", "text": huge}),
    ] {
        let detail = small_body(app.post_send(body).await, 422).await;
        assert!(detail["detail"][0]["msg"].is_string(), "{detail}");
    }
    // A string where a number is expected: serde's message quotes the value.
    let detail = small_body(
        app.post_get(json!({"number": "919216598210", "limit": huge}))
            .await,
        422,
    )
    .await;
    let msg = detail["detail"][0]["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("limit: invalid type: string \"aaa"),
        "{msg}"
    );
    assert!(msg.ends_with(" characters in all)"), "{msg}");
}

#[tokio::test]
async fn a_webhook_with_a_huge_bad_value_is_quarantined_with_a_small_answer() {
    let app = spawn_app(Backend::Embedded).await;
    let huge = "x".repeat(HUGE);
    let bad_from = json!({"from": huge, "id": "wamid.B1", "type": "text", "text": {"body": "hi"}});
    // A message must be an object; serde's message quotes the string it got. (A content field of
    // the wrong type, such as `"text": "…"`, no longer fails: it reads as absent.)
    let bad_message = json!(huge);
    for message in [bad_from, bad_message] {
        let response = app.post_webhook(&webhook_with(vec![message])).await;
        let ack = small_body(response, 200).await;
        assert_eq!(ack["quarantined"], 1, "{ack}");
    }
    assert!(app.ids_of("919216598210").await.is_empty());
}
