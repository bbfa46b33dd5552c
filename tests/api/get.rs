//! POST /get on both backends: limit semantics, number normalization, validation, compatibility
//! with data the FastAPI original wrote.

use serde_json::{Value, json};

use crate::contract_tests;
use crate::helpers::*;

contract_tests!(
    limit_returns_the_most_recent_messages_oldest_first,
    number_is_normalized_in_every_accepted_spelling,
    unknown_number_has_count_zero,
    invalid_fields_are_422_naming_field_and_rule,
    malformed_json_is_400,
    since_a_message_id_returns_only_what_came_after_it,
    since_a_timestamp_returns_only_later_messages,
    since_must_be_a_known_id_or_a_timestamp,
);

async fn since_a_message_id_returns_only_what_came_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    store_five(&app).await;
    let number = "+91 92165 98210";
    assert_eq!(
        ids(&app, json!({"number": number, "since": "m2"})).await,
        ["m3", "m4", "m5"]
    );
    // With a limit: the first ones after it, so a poller that continues from the last id
    // misses nothing.
    assert_eq!(
        ids(&app, json!({"number": number, "since": "m2", "limit": 2})).await,
        ["m3", "m4"]
    );
    assert!(
        ids(&app, json!({"number": number, "since": "m5"}))
            .await
            .is_empty()
    );
    // `m1` is a prefix of no other id here, but `m` must not match `m1`.
    let response = app.post_get(json!({"number": number, "since": "m"})).await;
    assert_eq!(response.status(), 422);
}

async fn since_a_timestamp_returns_only_later_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let messages = (1..=4)
        .map(|i| {
            json!({ "from": "919216598210", "id": format!("t{i}"), "timestamp": (1000 + i).to_string(),
                    "type": "text", "text": { "body": "x" } })
        })
        .collect();
    assert_eq!(
        app.post_webhook(&webhook_with(messages)).await.status(),
        200
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "since": 1002})).await,
        ["t3", "t4"]
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "since": "1003"})).await,
        ["t4"]
    );
}

async fn since_must_be_a_known_id_or_a_timestamp(backend: Backend) {
    let app = spawn_app(backend).await;
    store_five(&app).await;
    for since in [
        json!(-1),
        json!(true),
        json!("has space"),
        json!("wamid.UNKNOWN"),
    ] {
        let response = app
            .post_get(json!({"number": "919216598210", "since": since}))
            .await;
        assert_eq!(response.status(), 422, "{since}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "since"]),
            "{since}"
        );
    }
}

async fn store_five(app: &TestApp) {
    let messages = (1..=5)
        .map(|i| text_message(&format!("m{i}"), "919216598210", &format!("t{i}")))
        .collect();
    assert_eq!(
        app.post_webhook(&webhook_with(messages)).await.status(),
        200
    );
}

async fn ids(app: &TestApp, body: Value) -> Vec<String> {
    let response = app.post_get(body).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let ids: Vec<String> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(body["count"], ids.len());
    ids
}

async fn limit_returns_the_most_recent_messages_oldest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    store_five(&app).await;
    let all = ["m1", "m2", "m3", "m4", "m5"];
    assert_eq!(ids(&app, json!({"number": "919216598210"})).await, all);
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "limit": 0})).await,
        all
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "limit": null})).await,
        all
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "limit": 2})).await,
        ["m4", "m5"]
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "limit": 1})).await,
        ["m5"]
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "limit": 50})).await,
        all
    );
}

async fn number_is_normalized_in_every_accepted_spelling(backend: Backend) {
    let app = spawn_app(backend).await;
    store_five(&app).await;
    for spelling in [
        "919216598210",
        "+919216598210",
        "+91 92165 98210",
        "+91-92165-98210",
        " (91) 92165.98210 ",
    ] {
        assert_eq!(
            ids(&app, json!({"number": spelling, "limit": 1})).await,
            ["m5"],
            "{spelling}"
        );
    }
}

async fn unknown_number_has_count_zero(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.post_get(json!({"number": "15550000000"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"count": 0, "messages": []})
    );
}

async fn invalid_fields_are_422_naming_field_and_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (
            json!({"number": "12345"}),
            json!([{"loc": ["body", "number"], "msg": "number must have 7-15 digits (found 5)", "type": "value_error"}]),
        ),
        (
            json!({"number": "91921659821a"}),
            json!([{"loc": ["body", "number"], "msg": "number must contain only digits, optionally with a leading '+', spaces, dashes, dots or parentheses (found 'a')", "type": "value_error"}]),
        ),
        (
            json!({"number": "919216598210", "limit": -1}),
            json!([{"loc": ["body", "limit"], "msg": "limit must be >= 0 (found -1)", "type": "value_error"}]),
        ),
        (
            json!({"limit": 3}),
            json!([{"loc": ["body", "number"], "msg": "number is required", "type": "missing"}]),
        ),
        (
            json!({"number": 919216598210u64}),
            json!([{"loc": ["body", "number"], "msg": "number: invalid type: integer `919216598210`, expected a string", "type": "type_error"}]),
        ),
        (
            json!({"number": "919216598210", "limit": "ten"}),
            json!([{"loc": ["body", "limit"], "msg": "limit: invalid type: string \"ten\", expected i64", "type": "type_error"}]),
        ),
    ];
    for (body, expected) in cases {
        let response = app.post_get(body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["detail"],
            expected,
            "{body}"
        );
    }
    // Both invalid fields are reported at once.
    let both: Value = app
        .post_get(json!({"number": "1", "limit": -5}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(both["detail"].as_array().unwrap().len(), 2);
}

async fn malformed_json_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .post(app.url("/get"))
        .header("content-type", "application/json")
        .body(r#"{"number": "9192"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn messages_written_by_the_fastapi_original_are_readable() {
    let app = spawn_app(Backend::Redis).await;
    let original = json!({"id": "wamid.OLD", "from": "919216598210", "to": "15551713917", "timestamp": "1757936743",
        "type": "text", "body": "Hello", "raw": {"from": "919216598210", "id": "wamid.OLD", "type": "text", "text": {"body": "Hello"}}});
    let mut conn = app.redis_connection().await;
    // The original's layout: <REDIS_INBOUND_LIST>:<digits>, one JSON document per RPUSH.
    let _: () = redis::cmd("RPUSH")
        .arg("test:inbound:list:919216598210")
        .arg(original.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    app.post_webhook(&webhook_with(vec![text_message(
        "wamid.NEW",
        "919216598210",
        "Hi",
    )]))
    .await;
    let messages = app.messages_of("919216598210").await;
    assert_eq!(messages[0], original);
    assert_eq!(messages[1]["id"], "wamid.NEW");
    // And ours is readable by the original: the same list, the same JSON fields.
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg("test:inbound:list:919216598210")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        raw[1].starts_with(r#"{"id":"wamid.NEW","from":"919216598210","to":"15551713917","timestamp":"1757936743","type":"text","body":"Hi","raw":{"#),
        "{}",
        raw[1]
    );
}

/// The FastAPI original wrote its JSON with Python's `json.dumps` (a space after each colon and
/// comma); `since` finds its messages too.
#[tokio::test]
async fn since_finds_messages_the_fastapi_original_wrote() {
    let app = spawn_app(Backend::Redis).await;
    let mut conn = app.redis_connection().await;
    let python = r#"{"id": "wamid.PY1", "from": "919216598210", "to": "15551713917", "timestamp": "1000", "type": "text", "body": "old", "raw": {"timestamp": "1000"}}"#;
    let _: () = redis::cmd("RPUSH")
        .arg("test:inbound:list:919216598210")
        .arg(python)
        .query_async(&mut conn)
        .await
        .unwrap();
    app.post_webhook(&webhook_with(vec![text_message(
        "wamid.PY2",
        "919216598210",
        "new",
    )]))
    .await;
    assert_eq!(
        ids(
            &app,
            json!({"number": "919216598210", "since": "wamid.PY1"})
        )
        .await,
        ["wamid.PY2"]
    );
    assert_eq!(
        ids(&app, json!({"number": "919216598210", "since": 999})).await,
        ["wamid.PY1", "wamid.PY2"]
    );
}
