//! POST /webhook on both backends: storing, deduplication, signatures, bad input.

use serde_json::{Value, json};

use crate::contract_tests;
use crate::helpers::*;

contract_tests!(
    text_message_is_stored_in_the_original_shape,
    every_message_of_every_entry_and_change_is_stored,
    duplicate_delivery_is_stored_once,
    statuses_and_errors_only_payloads_are_acknowledged_and_store_nothing,
    malformed_json_is_400_and_stores_nothing,
    json_not_shaped_like_a_notification_is_400,
    an_unattributable_message_is_quarantined_and_the_rest_stored,
    unknown_fields_and_message_types_are_accepted,
    correctly_signed_webhook_is_accepted,
    missing_wrong_or_tampered_signature_is_401_and_stores_nothing,
    unsigned_webhook_is_accepted_when_app_secret_is_unset,
    body_over_the_limit_is_413_and_a_3mb_payload_passes,
    raw_message_is_kept_byte_for_byte,
);

async fn text_message_is_stored_in_the_original_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_webhook(&webhook_with(vec![text_message(
            "wamid.XXX",
            "919216598210",
            "Good",
        )]))
        .await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(
        ack,
        json!({"status": "ok", "stored": 1, "duplicates": 0, "statuses": 0, "quarantined": 0, "notifications": 0})
    );

    let messages = app.messages_of("+919216598210").await;
    assert_eq!(
        messages,
        vec![json!({
            "id": "wamid.XXX", "from": "919216598210", "to": "15551713917", "timestamp": "1757936743",
            "type": "text", "body": "Good", "raw": text_message("wamid.XXX", "919216598210", "Good"),
        })]
    );
}

async fn every_message_of_every_entry_and_change_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let value = |msgs: Vec<Value>| json!({"field": "messages", "value": {"metadata": {"display_phone_number": "15551713917", "phone_number_id": "1"}, "messages": msgs}});
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [
            value(vec![text_message("m1", "15550000001", "a"), text_message("m2", "15550000002", "b")]),
            value(vec![text_message("m3", "15550000001", "c")]),
        ]},
        {"id": "2", "changes": [value(vec![text_message("m4", "15550000003", "d")])]},
    ]});
    let response = app.post_webhook(&body.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.ids_of("15550000001").await, ["m1", "m3"]);
    assert_eq!(app.ids_of("15550000002").await, ["m2"]);
    assert_eq!(app.ids_of("15550000003").await, ["m4"]);
}

async fn duplicate_delivery_is_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = webhook_with(vec![text_message("wamid.A", "919216598210", "one")]);
    assert_eq!(app.post_webhook(&first).await.status(), 200);
    // Meta's retry: same payload.
    let retry: Value = app.post_webhook(&first).await.json().await.unwrap();
    assert_eq!(
        (retry["stored"].clone(), retry["duplicates"].clone()),
        (json!(0), json!(1))
    );
    // A later delivery batching the old id with a new one, and the same id twice in one payload.
    let batched = webhook_with(vec![
        text_message("wamid.A", "919216598210", "one"),
        text_message("wamid.B", "919216598210", "two"),
        text_message("wamid.B", "919216598210", "two"),
    ]);
    let ack: Value = app.post_webhook(&batched).await.json().await.unwrap();
    assert_eq!(
        (ack["stored"].clone(), ack["duplicates"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(app.ids_of("919216598210").await, ["wamid.A", "wamid.B"]);
}

async fn statuses_and_errors_only_payloads_are_acknowledged_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let statuses = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15551713917", "phone_number_id": "1"},
        "statuses": [{"id": "wamid.S", "status": "read", "timestamp": "1", "recipient_id": "919216598210"}]}}]}]});
    let response = app.post_webhook(&statuses.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["statuses"], 1);
    let errors = json!({"entry": [{"changes": [{"field": "messages", "value": {"errors": [{"code": 130429, "title": "Rate limit hit"}]}}]}]});
    assert_eq!(app.post_webhook(&errors.to_string()).await.status(), 200);
    let other_field = json!({"entry": [{"changes": [{"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}]}]});
    assert_eq!(
        app.post_webhook(&other_field.to_string()).await.status(),
        200
    );
    assert!(app.messages_of("919216598210").await.is_empty());
}

async fn malformed_json_is_400_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let valid = webhook_with(vec![text_message("wamid.A", "919216598210", "x")]);
    let truncated = &valid[..valid.len() - 3];
    let response = app.post_webhook(truncated).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("malformed JSON"),
        "{body}"
    );
    assert!(app.messages_of("919216598210").await.is_empty());
}

async fn json_not_shaped_like_a_notification_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        r#"[]"#,
        r#"{"hello":"world"}"#,
        r#"{"entry":{}}"#,
        r#""text""#,
    ] {
        let response = app.post_webhook(body).await;
        assert_eq!(response.status(), 400, "for {body}");
        let detail: Value = response.json().await.unwrap();
        assert!(
            detail["detail"].as_str().unwrap().contains("entry"),
            "{detail}"
        );
    }
}

async fn an_unattributable_message_is_quarantined_and_the_rest_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut bad = text_message("wamid.BAD", "919216598210", "x");
    bad.as_object_mut().unwrap().remove("from");
    let body = webhook_with(vec![text_message("wamid.GOOD", "919216598210", "ok"), bad]);
    let response = app.post_webhook(&body).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["stored"], 1);
    assert_eq!(ack["quarantined"], 1);
    let stored = app.messages_of("919216598210").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], "wamid.GOOD");
    assert_eq!(
        app.metric("whatsapp_gateway_webhook_items_quarantined_total")
            .await,
        1.0
    );
    // Meta's retry stores nothing twice (the quarantined item is kept again: it has no id to
    // deduplicate on).
    let retry: Value = app.post_webhook(&body).await.json().await.unwrap();
    assert_eq!(
        (retry["stored"].clone(), retry["duplicates"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(app.messages_of("919216598210").await.len(), 1);
}

async fn unknown_fields_and_message_types_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let poll = json!({"from": "919216598210", "id": "wamid.P", "timestamp": "1", "type": "poll", "poll": {"q": 1}, "new_field": [1, 2]});
    let response = app.post_webhook(&webhook_with(vec![poll])).await;
    assert_eq!(response.status(), 200);
    let messages = app.messages_of("919216598210").await;
    assert_eq!(messages[0]["type"], "poll");
    assert_eq!(messages[0]["body"], "[poll]");
}

async fn correctly_signed_webhook_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = webhook_with(vec![text_message("wamid.S1", "919216598210", "signed")]);
    let response = app
        .post_webhook_raw(body.clone().into_bytes(), Some(&sign(body.as_bytes())))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.ids_of("919216598210").await, ["wamid.S1"]);
}

async fn missing_wrong_or_tampered_signature_is_401_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = webhook_with(vec![text_message("wamid.F", "919216598210", "forged")]);
    let good = sign(body.as_bytes());
    let mut tampered = body.clone().into_bytes();
    let i = tampered.iter().position(|&b| b == b'f').unwrap(); // "forged" -> "gorged"
    tampered[i] = b'g';
    let other_secret = whatsapp_gateway::webhook::AppSecret::new(&"other".to_string().into())
        .sign(body.as_bytes());
    let cases: Vec<(Vec<u8>, Option<String>, &str)> = vec![
        (
            body.clone().into_bytes(),
            None,
            "missing X-Hub-Signature-256 header",
        ),
        (
            body.clone().into_bytes(),
            Some(other_secret),
            "X-Hub-Signature-256 does not match the request body",
        ),
        (
            tampered,
            Some(good.clone()),
            "X-Hub-Signature-256 does not match the request body",
        ),
        (
            body.clone().into_bytes(),
            Some(good.replace("sha256=", "sha1=")),
            "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits",
        ),
        (
            body.clone().into_bytes(),
            Some("sha256=zz".into()),
            "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits",
        ),
    ];
    for (bytes, signature, expected) in cases {
        let response = app.post_webhook_raw(bytes, signature.as_deref()).await;
        assert_eq!(response.status(), 401);
        assert_eq!(response.json::<Value>().await.unwrap()["detail"], expected);
    }
    assert!(app.messages_of("919216598210").await.is_empty());
}

async fn unsigned_webhook_is_accepted_when_app_secret_is_unset(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.remove("APP_SECRET");
    })
    .await;
    let body = webhook_with(vec![text_message("wamid.U", "919216598210", "hi")]);
    assert_eq!(
        app.post_webhook_raw(body.into_bytes(), None).await.status(),
        200
    );
    assert_eq!(app.ids_of("919216598210").await, ["wamid.U"]);
}

async fn body_over_the_limit_is_413_and_a_3mb_payload_passes(backend: Backend) {
    let app = spawn_app(backend).await;
    // Meta's documented maximum is 3 MB: it must pass the default 4 MiB limit.
    let big_text = "x".repeat(3 * 1000 * 1000 - 1000);
    let body = webhook_with(vec![text_message("wamid.BIG", "919216598210", &big_text)]);
    assert!(
        body.len() > 2_990_000 && body.len() <= 3_000_000,
        "{}",
        body.len()
    );
    assert_eq!(app.post_webhook(&body).await.status(), 200);

    let huge = webhook_with(vec![text_message(
        "wamid.HUGE",
        "919216598210",
        &"y".repeat(4 * 1024 * 1024),
    )]);
    let response = app.post_webhook(&huge).await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.ids_of("919216598210").await, ["wamid.BIG"]);
}

async fn raw_message_is_kept_byte_for_byte(backend: Backend) {
    let app = spawn_app(backend).await;
    // Meta's escapes (\u00e9, \/) and key order must survive storage untouched.
    let raw = r#"{"type":"text","id":"wamid.E","from":"919216598210","timestamp":"1","text":{"body":"caf\u00e9 \/ \ud83d\ude00"}}"#;
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":"15551713917","phone_number_id":"1"}},"messages":[{raw}]}}}}]}}]}}"#
    );
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let text = app
        .post_get(json!({"number": "919216598210"}))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains(raw), "{text}");
    let messages = app.messages_of("919216598210").await;
    assert_eq!(messages[0]["body"], "café / 😀");
}
