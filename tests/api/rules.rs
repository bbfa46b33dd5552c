//! Auto-replies (`/v1/rules`, AUTO_REPLY_RULES_FILE): signed webhooks in, and Meta's exact send
//! bodies out, checked at the Graph mock. Each matcher, the reply's placeholders and quote,
//! once-per-period, the loop guard, never answering echoes, our own sends, our own numbers or
//! other auto-replies, never the past, the file, and (on Redis) two instances answering once.
//!
//! A message that must *not* be answered is followed by one that must: the engine judges the
//! log in order, so once the second is answered the first has been judged.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::contract_tests;
use crate::helpers::*;

const KERRY: &str = "919216598210";
/// The business number's display number in these tests (DISPLAY_PHONE_NUMBER).
const OWN_DISPLAY: &str = "15551713917";

contract_tests!(
    keyword_rules_answer_once_through_the_send_path,
    every_matcher_decides,
    echoes_sends_our_numbers_and_auto_replies_are_never_answered,
    once_per_period_and_the_loop_guard_hold,
    a_failed_reply_frees_its_period,
    rules_are_validated_listed_changed_and_deleted,
    the_rules_file_seeds_rules_and_refuses_mistakes,
    a_new_rule_never_answers_the_past,
    a_burst_of_first_messages_is_welcomed_once,
    stale_and_unfillable_messages_are_not_answered,
    a_file_rule_never_takes_over_an_api_rule,
    an_unreadable_cursor_starts_again_at_the_end,
    replies_to_one_contact_go_out_in_order,
    rules_are_bounded_in_number_and_size,
    a_stored_rule_naming_an_unknown_type_keeps_working,
);

async fn rule_app(
    backend: Backend,
    configure: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> TestApp {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DISPLAY_PHONE_NUMBER".into(), OWN_DISPLAY.into());
        configure(vars);
    })
    .await;
    accept_sends(&app).await;
    app
}

async fn accept_sends(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .respond_with(AcceptSends::default())
        .mount(&app.graph)
        .await;
}

/// A text from `from`, sent now.
fn text_from(id: &str, from: &str, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": now_secs().to_string(), "type": "text", "text": {"body": body}})
}

fn text(id: &str, body: &str) -> Value {
    text_from(id, KERRY, body)
}

async fn receive(app: &TestApp, messages: Vec<Value>) {
    let answer = app.post_webhook_ok(&webhook_with(messages)).await;
    assert!(answer["stored"].as_u64().unwrap() >= 1, "{answer}");
}

async fn create_rule(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/rules"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn rule(app: &TestApp, body: Value) -> Value {
    let (status, answer) = create_rule(app, body).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

async fn request(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path));
    r = match body {
        Some(body) => r.json(&body),
        None => r.header("content-type", "application/json"),
    };
    let response = r.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `PATCH /v1/rules/{id}` with `body`: the status and the answer.
async fn patch_rule(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    request(
        app,
        reqwest::Method::PATCH,
        &format!("/v1/rules/{id}"),
        Some(body),
    )
    .await
}

/// The bodies Meta received for sends, oldest first.
async fn sends(app: &TestApp) -> Vec<Value> {
    app.graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/messages"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Waits until Meta received `n` sends, then checks that no more come.
async fn expect_sends(app: &TestApp, n: usize) -> Vec<Value> {
    eventually(&format!("{n} sends reach Meta"), || async {
        let got = sends(app).await;
        (got.len() >= n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sends(app).await;
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

fn text_body(send: &Value) -> &str {
    send["text"]["body"].as_str().unwrap_or_default()
}

async fn keyword_rules_answer_once_through_the_send_path(backend: Backend) {
    let app = rule_app(backend, |_| {}).await;
    let created = rule(
        &app,
        json!({"id": "prices", "name": "Prices", "when": {"keyword": {"contains": ["price", "cost"]}},
               "reply": {"type": "text", "text": {"body": "Hi {{name}}! Our prices: https://example.com/p"}}}),
    )
    .await;
    assert_eq!(created["managed_by"], "api");
    assert_eq!(created["enabled"], true, "defaults are shown");
    assert_eq!(created["priority"], 100);
    receive(&app, vec![text("wamid.K1", "hello")]).await;
    receive(&app, vec![text("wamid.K2", "What is the PRICE?")]).await;
    let sent = expect_sends(&app, 1).await;
    assert_eq!(
        sent[0],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": KERRY,
               "type": "text", "text": {"body": "Hi Kerry! Our prices: https://example.com/p"}}),
        "Meta's documented send body"
    );
    // Recorded like any send, marked automatic, with its message_outgoing event.
    let page = app
        .get_json(&format!("/v1/conversations/{KERRY}/messages"))
        .await;
    let auto: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == "auto_reply")
        .collect();
    assert_eq!(auto.len(), 1, "{page}");
    assert_eq!(auto[0]["direction"], "outbound");
    assert_eq!(
        auto[0]["body"],
        "Hi Kerry! Our prices: https://example.com/p"
    );
    assert_eq!(
        app.metric("whatsapp_gateway_auto_replies_total{reason=\"sent\"}")
            .await,
        1.0
    );
    // A retry of the webhook is a duplicate: no second reply.
    let retry = app
        .post_webhook_ok(&webhook_with(vec![text("wamid.K2", "What is the PRICE?")]))
        .await;
    assert_eq!(retry["duplicates"], 1);
    receive(&app, vec![text("wamid.K3", "cost of shipping?")]).await;
    let sent = expect_sends(&app, 2).await;
    assert_eq!(sent[1]["to"], KERRY);
}

async fn every_matcher_decides(backend: Backend) {
    let app = rule_app(backend, |_| {}).await;
    let reply = |body: &str| json!({"type": "text", "text": {"body": body}});
    // Priorities: the first matching rule answers, only one reply per message.
    rule(&app, json!({"id": "exact", "priority": 1, "when": {"keyword": {"exact": ["hi", "hello"]}}, "reply": reply("exact")})).await;
    rule(&app, json!({"id": "regex", "priority": 2, "when": {"keyword": {"regex": "^order\\s+\\d+$"}}, "quote": true, "reply": reply("order {{text}}")})).await;
    rule(&app, json!({"id": "images", "priority": 3, "when": {"types": ["image"]}, "reply": reply("image")})).await;
    rule(&app, json!({"id": "poll", "priority": 4, "when": {"reply_id": ["poll_yes", "poll_no"]}, "reply": reply("vote {{text}}")})).await;
    rule(&app, json!({"id": "sensitive", "priority": 5, "when": {"keyword": {"exact": "STOP", "case_sensitive": true}}, "reply": reply("stopped")})).await;
    rule(&app, json!({"id": "shadowed", "priority": 9, "when": {"keyword": {"exact": "hi"}}, "reply": reply("never")})).await;
    receive(&app, vec![text("wamid.M1", " Hello ")]).await;
    receive(
        &app,
        vec![
            text("wamid.M2", "hello there"),
            text("wamid.M3", "Order 42"),
        ],
    )
    .await;
    let image = json!({"from": KERRY, "id": "wamid.M4", "timestamp": now_secs().to_string(), "type": "image",
                       "image": {"id": "1234", "mime_type": "image/jpeg", "sha256": "abc"}});
    let tapped = json!({"from": KERRY, "id": "wamid.M5", "timestamp": now_secs().to_string(), "type": "interactive",
                        "interactive": {"type": "button_reply", "button_reply": {"id": "poll_yes", "title": "Yes!"}}});
    let other_button = json!({"from": KERRY, "id": "wamid.M6", "timestamp": now_secs().to_string(), "type": "interactive",
                        "interactive": {"type": "button_reply", "button_reply": {"id": "other", "title": "Other"}}});
    receive(&app, vec![image, tapped, other_button]).await;
    receive(
        &app,
        vec![text("wamid.M7", "stop"), text("wamid.M8", "STOP")],
    )
    .await;
    let sent = expect_sends(&app, 5).await;
    let mut bodies: Vec<&str> = sent.iter().map(text_body).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["exact", "image", "order Order 42", "stopped", "vote Yes!"]
    );
    let quoted = sent
        .iter()
        .find(|s| text_body(s) == "order Order 42")
        .unwrap();
    assert_eq!(quoted["context"]["message_id"], "wamid.M3", "quote: true");

    // first_message: only the contact's first message of the conversation.
    let app = rule_app(backend, |_| {}).await;
    rule(
        &app,
        json!({"id": "welcome", "when": {"first_message": true}, "reply": reply("welcome")}),
    )
    .await;
    receive(&app, vec![text("wamid.F1", "hi")]).await;
    expect_sends(&app, 1).await;
    receive(&app, vec![text("wamid.F2", "hi again")]).await;
    receive(&app, vec![text_from("wamid.F3", "5511988887777", "hello")]).await;
    let sent = expect_sends(&app, 2).await;
    assert_eq!(
        sent[1]["to"], "5511988887777",
        "another contact's first message"
    );

    // outside_hours: a rule whose hours are now is silent; one whose hours are not answers.
    let app = rule_app(backend, |_| {}).await;
    let hour = (now_secs() / 3600 + 12) % 24;
    let elsewhen = format!("{hour:02}:00-{:02}:00", hour + 1);
    rule(&app, json!({"id": "open-now", "priority": 1, "when": {"outside_hours": {"timezone": "UTC", "open": {"mon-sun": "00:00-24:00"}}}, "reply": reply("never")})).await;
    rule(&app, json!({"id": "closed", "priority": 2, "when": {"outside_hours": {"timezone": "UTC", "open": {"mon-sun": elsewhen}}}, "reply": reply("closed")})).await;
    receive(&app, vec![text("wamid.H1", "anyone there?")]).await;
    let sent = expect_sends(&app, 1).await;
    assert_eq!(text_body(&sent[0]), "closed");
}

async fn echoes_sends_our_numbers_and_auto_replies_are_never_answered(backend: Backend) {
    let app = rule_app(backend, |_| {}).await;
    rule(&app, json!({"id": "everything", "when": {}, "reply": {"type": "text", "text": {"body": "auto"}}})).await;
    // An echo of a message the business sent from the WhatsApp Business app.
    let echo = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "smb_message_echoes", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": OWN_DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
            "message_echoes": [{"from": OWN_DISPLAY, "to": KERRY, "id": "wamid.E1",
                "timestamp": now_secs().to_string(), "type": "text", "text": {"body": "hello from the app"}}]
        }}]}]
    });
    receive_raw(&app, &echo.to_string()).await;
    // A message from our own number (a test message to ourselves), and a reaction.
    receive(&app, vec![text_from("wamid.O1", OWN_DISPLAY, "self test")]).await;
    let reaction = json!({"from": KERRY, "id": "wamid.R1", "timestamp": now_secs().to_string(), "type": "reaction",
                          "reaction": {"message_id": "wamid.E1", "emoji": "👍"}});
    receive(&app, vec![reaction]).await;
    // The first customer message: one reply, whose own message_outgoing event is not answered.
    receive(&app, vec![text("wamid.C1", "hi")]).await;
    expect_sends(&app, 1).await;
    // A send through the API is not answered either.
    let (status, answer) = request(
        &app,
        reqwest::Method::POST,
        "/v1/messages",
        Some(json!({"to": KERRY, "type": "text", "text": {"body": "from the API"}})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    receive(&app, vec![text("wamid.C2", "hi again")]).await;
    let sent = expect_sends(&app, 3).await;
    let autos = sent.iter().filter(|s| text_body(s) == "auto").count();
    assert_eq!(autos, 2, "one per customer message: {sent:#?}");
}

async fn receive_raw(app: &TestApp, body: &str) {
    let answer = app.post_webhook_ok(body).await;
    assert_eq!(answer["stored"], 1, "{answer}");
}

async fn once_per_period_and_the_loop_guard_hold(backend: Backend) {
    let app = rule_app(backend, |vars| {
        vars.insert("AUTO_REPLY_MAX_PER_HOUR".into(), "3".into());
    })
    .await;
    rule(&app, json!({"id": "hours", "priority": 1, "when": {"keyword": {"contains": "hours"}}, "once_per": "1h",
                      "reply": {"type": "text", "text": {"body": "9 to 5"}}})).await;
    rule(
        &app,
        json!({"id": "echo", "priority": 2, "when": {"types": "text"},
                      "reply": {"type": "text", "text": {"body": "you said {{text}}"}}}),
    )
    .await;
    // Two messages in one delivery, one after: the once-per rule answers once; the second and
    // third match it, so no other rule answers them either.
    receive(
        &app,
        vec![text("wamid.P1", "hours?"), text("wamid.P2", "your hours??")],
    )
    .await;
    receive(&app, vec![text("wamid.P3", "hours please")]).await;
    receive(&app, vec![text_from("wamid.P4", "5511988887777", "hours?")]).await;
    let sent = expect_sends(&app, 2).await;
    assert_eq!(
        sent.iter()
            .map(|s| s["to"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [KERRY, "5511988887777"],
        "once per contact"
    );
    assert_eq!(
        app.metric("whatsapp_gateway_auto_replies_total{reason=\"once_per\"}")
            .await,
        2.0
    );
    // The loop guard: Kerry got 1 auto-reply this hour; 2 more are allowed, then none.
    for i in 0..4 {
        receive(
            &app,
            vec![text(&format!("wamid.L{i}"), &format!("ping {i}"))],
        )
        .await;
    }
    let sent = expect_sends(&app, 4).await;
    let mut later: Vec<&str> = sent[2..].iter().map(text_body).collect();
    later.sort_unstable();
    assert_eq!(later, ["you said ping 0", "you said ping 1"]);
    assert_eq!(
        app.metric("whatsapp_gateway_auto_replies_total{reason=\"loop_guard\"}")
            .await,
        2.0
    );
}

async fn a_failed_reply_frees_its_period(backend: Backend) {
    let app = spawn_app(backend).await;
    // Meta refuses the first send (a template that is not approved), then accepts.
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .respond_with(meta_error(132001, 400))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.graph)
        .await;
    accept_sends(&app).await;
    rule(&app, json!({"id": "welcome", "once_per": "24h", "when": {},
                      "reply": {"type": "template", "template": {"name": "welcome", "language": {"code": "en_US"}}}})).await;
    receive(&app, vec![text("wamid.W1", "hi")]).await;
    eventually("the refused send", || async {
        let text = app.metrics_text().await;
        text.contains("whatsapp_gateway_auto_replies_total{reason=\"failed\"} 1\n")
            .then_some(())
    })
    .await;
    receive(&app, vec![text("wamid.W2", "hello?")]).await;
    let sent = expect_sends(&app, 2).await;
    assert_eq!(
        sent[1],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": KERRY, "type": "template",
               "template": {"name": "welcome", "language": {"code": "en_US"}}})
    );
    receive(&app, vec![text("wamid.W3", "and again")]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sends(&app).await.len(),
        2,
        "the period holds after a reply went out"
    );
}

async fn rules_are_validated_listed_changed_and_deleted(backend: Backend) {
    let app = rule_app(backend, |_| {}).await;
    let (status, answer) = create_rule(
        &app,
        json!({"id": "Bad Id", "when": {"keyword": {"regex": "("}, "first": true}, "once_per": "often",
               "phone_number_id": "999", "reply": {"type": "text", "text": {"body": ""}, "to": "123"},
               "created_at": 5}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let shown = answer.to_string();
    for field in [
        "id",
        "when.keyword.regex",
        "when.first",
        "once_per",
        "phone_number_id",
        "reply.to",
        "created_at",
    ] {
        assert!(
            answer["detail"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["msg"].as_str().unwrap().starts_with(&format!("{field} "))),
            "{field} is named: {shown}"
        );
    }
    let (status, answer) = create_rule(
        &app,
        json!({"reply": {"type": "text", "text": {"body": ""}}}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(answer.to_string().contains("reply.text.body"), "{answer}");
    assert!(sends(&app).await.is_empty());
    assert_eq!(
        app.get_json("/v1/rules").await,
        json!({"data": []}),
        "nothing partial"
    );

    let generated = rule(
        &app,
        json!({"priority": 50, "reply": {"type": "text", "text": {"body": "b"}}}),
    )
    .await;
    let id = generated["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rule_"), "{id}");
    rule(&app, json!({"id": "a", "phone_number_id": PHONE_NUMBER_ID, "when": {"keyword": {"exact": "x"}}, "reply": {"type": "text", "text": {"body": "a"}}})).await;
    let (status, answer) = create_rule(
        &app,
        json!({"id": "a", "reply": {"type": "text", "text": {"body": "a"}}}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let list = app.get_json("/v1/rules").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), "a"], "by priority");

    // PATCH: disable, then enable with a new reply; null removes a field.
    let (status, changed) = patch_rule(
        &app,
        "a",
        json!({"enabled": false, "phone_number_id": null}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["enabled"], false);
    assert!(changed.get("phone_number_id").is_none());
    receive(&app, vec![text("wamid.X1", "x")]).await;
    let (status, _) = patch_rule(
        &app,
        "a",
        json!({"enabled": true, "reply": {"type": "text", "text": {"body": "a2"}}}),
    )
    .await;
    assert_eq!(status, 200);
    receive(&app, vec![text("wamid.X2", "x")]).await;
    let sent = expect_sends(&app, 2).await;
    // The generated rule (priority 50, matching everything) goes first: it answers both.
    assert_eq!(text_body(&sent[0]), "b");
    assert_eq!(text_body(&sent[1]), "b");
    let (status, answer) = patch_rule(&app, &id, json!({"priority": 500})).await;
    assert_eq!(status, 200, "{answer}");
    receive(&app, vec![text("wamid.X3", "x")]).await;
    let sent = expect_sends(&app, 3).await;
    assert_eq!(text_body(&sent[2]), "a2", "the changed rule answers now");
    let (status, answer) =
        patch_rule(&app, "a", json!({"when": {"keyword": {"regex": "["}}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        app.get_json("/v1/rules/a").await["when"],
        json!({"keyword": {"exact": "x"}}),
        "unchanged"
    );
    let (status, _) = patch_rule(&app, "a", json!({"id": "b"})).await;
    assert_eq!(status, 422);
    let (status, answer) = patch_rule(&app, "a", json!({"when": null})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("{} to answer every message"),
        "{answer}"
    );
    // A misspelt message type would never match: refused, naming the field and the known types.
    let (status, answer) = patch_rule(&app, "a", json!({"when": {"types": ["text", "txt"]}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "when", "types"]));
    assert!(
        answer["detail"][0]["msg"].as_str().unwrap().starts_with(
            "when.types has \"txt\", which is not a Meta message type; expected text, image"
        ),
        "{answer}"
    );
    // A name the parse refuses for its shape is reported once, by the parse.
    let (status, answer) = patch_rule(&app, "a", json!({"when": {"types": ["Text"]}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"].as_array().unwrap().len(), 1, "{answer}");
    assert!(
        answer["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("must hold Meta message types"),
        "{answer}"
    );
    let (status, _) = patch_rule(&app, "a", json!({"starts_after": "0"})).await;
    assert_eq!(status, 422, "gateway fields");

    let (status, _) = request(&app, reqwest::Method::DELETE, "/v1/rules/a", None).await;
    assert_eq!(status, 204);
    for (m, p) in [
        (reqwest::Method::GET, "/v1/rules/a"),
        (reqwest::Method::DELETE, "/v1/rules/a"),
        (reqwest::Method::GET, "/v1/rules/..%2F"),
    ] {
        let (status, answer) = request(&app, m, p, None).await;
        assert_eq!(status, 404, "{p}: {answer}");
    }
    let (status, _) = patch_rule(&app, "a", json!({"enabled": true})).await;
    assert_eq!(status, 404);
}

async fn the_rules_file_seeds_rules_and_refuses_mistakes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        r#"
[[rules]]
id = "welcome"
once_per = "24h"
reply = { type = "text", text = { body = "Welcome, {{name}}!" } }
[rules.when]
first_message = true

[[rules]]
id = "hours"
when = { keyword = { contains = ["open", "hours"] } }
reply = { type = "interactive", interactive = { type = "button", body = { text = "We open 9-17. Call you?" }, action = { buttons = [
  { type = "reply", reply = { id = "call_yes", title = "Yes" } },
  { type = "reply", reply = { id = "call_no", title = "No" } } ] } } }
"#,
    )
    .unwrap();
    let path = file.display().to_string();
    let mut app = rule_app(backend, |vars| {
        vars.insert("AUTO_REPLY_RULES_FILE".into(), path.clone());
    })
    .await;
    let list = app.get_json("/v1/rules").await;
    let rules = list["data"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{list}");
    assert!(rules.iter().all(|r| r["managed_by"] == "file"), "{list}");
    let (status, answer) = patch_rule(&app, "hours", json!({"enabled": false})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("AUTO_REPLY_RULES_FILE")
    );
    let (status, _) = request(&app, reqwest::Method::DELETE, "/v1/rules/hours", None).await;
    assert_eq!(status, 409);
    receive(&app, vec![text("wamid.T1", "hi")]).await;
    receive(&app, vec![text("wamid.T2", "when are you open?")]).await;
    let sent = expect_sends(&app, 2).await;
    assert_eq!(text_body(&sent[0]), "Welcome, Kerry!");
    assert_eq!(
        sent[1]["interactive"],
        json!({"type": "button", "body": {"text": "We open 9-17. Call you?"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "call_yes", "title": "Yes"}},
            {"type": "reply", "reply": {"id": "call_no", "title": "No"}}]}})
    );

    // A rule dropped from the file is deleted at the next start; API rules stay.
    rule(&app, json!({"id": "mine", "when": {"keyword": {"exact": "zzz"}}, "reply": {"type": "text", "text": {"body": "z"}}})).await;
    std::fs::write(&file, "[[rules]]\nid = \"hours\"\nwhen = { keyword = { contains = \"hours\" } }\nreply = { type = \"text\", text = { body = \"9-17\" } }\n").unwrap();
    app.restart().await;
    let list = app.get_json("/v1/rules").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hours", "mine"], "{list}");
    assert_eq!(list["data"][0]["reply"]["text"]["body"], "9-17");

    // Mistakes stop the start with the file, the rule and the field named.
    for (content, expected) in [
        (
            "[[rules]]\nid = \"x\"\nreply = { type = \"text\", text = { body = \"\" } }\n",
            "reply.text.body",
        ),
        (
            "[[rules]]\nreply = { type = \"text\", text = { body = \"a\" } }\n",
            "needs an id",
        ),
        ("rules = 5\n", "array of tables"),
        ("[[rule]]\nid = \"x\"\n", "unknown key"),
        ("[[rules]\n", "not valid TOML"),
    ]
    .map(|(content, expected)| (content.to_owned(), expected))
    .into_iter()
    // As big a rule as the API refuses (64 KiB of JSON).
    .chain([(
        format!(
            "[[rules]]\nid = \"big\"\nreply = {{ type = \"text\", text = {{ body = \"a\" }} }}\nname = \"{}\"\n",
            "n".repeat(70_000)
        ),
        "bytes of JSON; at most 65536",
    )]) {
        std::fs::write(&file, &content).unwrap();
        let mut vars = app.vars.clone();
        // Its own data directory: the running app keeps the embedded store's.
        let other = tempfile::tempdir().unwrap();
        vars.insert("DATA_DIR".into(), other.path().display().to_string());
        let settings =
            whatsapp_gateway::config::Settings::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let error = match whatsapp_gateway::startup::Application::build(settings).await {
            Ok(_) => panic!("started with {content:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("AUTO_REPLY_RULES_FILE") && error.contains(&path),
            "{error}"
        );
        assert!(error.contains(expected), "{expected} in {error}");
    }
}

async fn a_new_rule_never_answers_the_past(backend: Backend) {
    let mut app = rule_app(backend, |_| {}).await;
    receive(&app, vec![text("wamid.B1", "before the rule")]).await;
    // Right after: whether or not the engine judged B1 yet, the rule starts after it.
    rule(
        &app,
        json!({"id": "all", "when": {}, "quote": true, "reply": {"type": "text", "text": {"body": "hi"}}}),
    )
    .await;
    receive(&app, vec![text("wamid.B2", "after the rule")]).await;
    let sent = expect_sends(&app, 1).await;
    assert_eq!(sent[0]["to"], KERRY);
    assert_eq!(
        sent[0]["context"]["message_id"], "wamid.B2",
        "B2 answered, not B1"
    );
    // A restart resumes from the shared cursor: nothing is answered again.
    app.restart().await;
    receive(&app, vec![text("wamid.B3", "after the restart")]).await;
    expect_sends(&app, 2).await;
}

/// Two instances on one Redis: every message is answered exactly once between them.
#[tokio::test]
async fn two_instances_on_one_redis_answer_each_message_once() {
    let first = rule_app(Backend::Redis, |_| {}).await;
    let second = spawn_instance_sharing_redis(&first, |vars| {
        vars.insert("DISPLAY_PHONE_NUMBER".into(), OWN_DISPLAY.into());
    })
    .await;
    accept_sends(&second).await;
    rule(&first, json!({"id": "echo", "when": {"types": "text"}, "reply": {"type": "text", "text": {"body": "got {{text}}"}}})).await;
    let count = 60;
    for i in 0..count {
        // Spread over both instances, as a load balancer would.
        let app = if i % 2 == 0 { &first } else { &second };
        receive(
            app,
            vec![text_from(
                &format!("wamid.I{i}"),
                &format!("55119{i:08}"),
                &format!("m{i}"),
            )],
        )
        .await;
    }
    let total = eventually("every message answered", || async {
        let n = sends(&first).await.len() + sends(&second).await.len();
        (n >= count).then_some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bodies: Vec<String> = sends(&first)
        .await
        .into_iter()
        .chain(sends(&second).await)
        .map(|s| text_body(&s).to_owned())
        .collect();
    assert_eq!(bodies.len(), total);
    bodies.sort();
    let mut expected: Vec<String> = (0..count).map(|i| format!("got m{i}")).collect();
    expected.sort();
    assert_eq!(
        bodies, expected,
        "each message answered once, by one instance"
    );
}

async fn a_burst_of_first_messages_is_welcomed_once(backend: Backend) {
    let app = rule_app(backend, |_| {}).await;
    rule(&app, json!({"id": "welcome", "priority": 1, "when": {"first_message": true}, "reply": {"type": "text", "text": {"body": "welcome"}}})).await;
    rule(&app, json!({"id": "help", "priority": 2, "when": {"keyword": {"contains": "help"}}, "reply": {"type": "text", "text": {"body": "help"}}})).await;
    // An album, or "hi" and a question sent together: one second, one delivery.
    let now = now_secs().to_string();
    let burst: Vec<Value> = ["hi", "photo", "I need help"]
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"from": KERRY, "id": format!("wamid.Z{}", 3 - i), "timestamp": now, "type": "text", "text": {"body": body}}))
        .collect();
    receive(&app, burst).await;
    // A second later: no longer a first message.
    let later = json!({"from": KERRY, "id": "wamid.ZZ", "timestamp": (now_secs() + 1).to_string(), "type": "text", "text": {"body": "help again"}});
    receive(&app, vec![later]).await;
    let sent = expect_sends(&app, 2).await;
    let bodies: Vec<&str> = sent.iter().map(text_body).collect();
    assert_eq!(bodies, ["welcome", "help"], "one welcome for the burst");
}

async fn stale_and_unfillable_messages_are_not_answered(backend: Backend) {
    let app = rule_app(backend, |vars| {
        vars.insert("AUTO_REPLY_MAX_AGE".into(), "10m".into());
    })
    .await;
    rule(&app, json!({"id": "echo", "when": {}, "reply": {"type": "text", "text": {"body": "You said: {{text}}"}}})).await;
    // Delivered late (Meta retried after an outage): 11 minutes old.
    let late = json!({"from": KERRY, "id": "wamid.S1", "timestamp": (now_secs() - 660).to_string(), "type": "text", "text": {"body": "late"}});
    receive(&app, vec![late]).await;
    // With the text filled in, the reply passes Meta's 4096 characters.
    receive(&app, vec![text("wamid.S2", &"x".repeat(4090))]).await;
    receive(&app, vec![text("wamid.S3", "fresh")]).await;
    let sent = expect_sends(&app, 1).await;
    assert_eq!(text_body(&sent[0]), "You said: fresh");
    let metrics = app.metrics_text().await;
    for reason in ["stale", "invalid_reply"] {
        assert!(
            metrics.contains(&format!(
                "whatsapp_gateway_auto_replies_total{{reason=\"{reason}\"}} 1\n"
            )),
            "{reason}: {metrics}"
        );
    }
}

async fn a_file_rule_never_takes_over_an_api_rule(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    let mut app = rule_app(backend, |_| {}).await;
    rule(&app, json!({"id": "hours", "when": {"keyword": {"contains": "hours"}}, "reply": {"type": "text", "text": {"body": "from the API"}}})).await;
    std::fs::write(&file, "[[rules]]\nid = \"hours\"\nreply = { type = \"text\", text = { body = \"from the file\" } }\n\n[[rules]]\nid = \"other\"\nwhen = { keyword = { exact = \"zzz\" } }\nreply = { type = \"text\", text = { body = \"z\" } }\n").unwrap();
    app.vars
        .insert("AUTO_REPLY_RULES_FILE".into(), file.display().to_string());
    app.restart().await;
    let hours = app.get_json("/v1/rules/hours").await;
    assert_eq!(hours["managed_by"], "api", "{hours}");
    assert_eq!(hours["reply"]["text"]["body"], "from the API");
    assert_eq!(app.get_json("/v1/rules/other").await["managed_by"], "file");
    assert_eq!(
        app.get_json("/v1/rules/other").await["enabled"],
        true,
        "defaults shown"
    );
}

/// An earlier release took any lowercase name in `when.types`. Such a stored rule still loads and
/// answers after the upgrade, and can be paused without fixing it; only a change that writes
/// `when` must name known types.
async fn a_stored_rule_naming_an_unknown_type_keeps_working(backend: Backend) {
    let mut app = rule_app(backend, |_| {}).await;
    rule(
        &app,
        json!({"id": "old", "when": {"types": ["text"]}, "reply": {"type": "text", "text": {"body": "hi"}}}),
    )
    .await;
    app.stop(Duration::from_secs(15)).await;
    let (from, to) = (r#""types":["text"]"#, r#""types":["text","txt"]"#);
    match backend {
        Backend::Redis => {
            let mut redis = app.redis_connection().await;
            let doc: String = redis::cmd("HGET")
                .arg("test:rules")
                .arg("old")
                .query_async(&mut redis)
                .await
                .unwrap();
            assert!(doc.contains(from), "{doc}");
            let _: () = redis::cmd("HSET")
                .arg("test:rules")
                .arg("old")
                .arg(doc.replace(from, to))
                .query_async(&mut redis)
                .await
                .unwrap();
        }
        Backend::Embedded => {
            let changed = app
                .database()
                .execute(
                    "UPDATE auto_reply_rules SET doc = replace(doc, ?1, ?2) WHERE id = 'old'",
                    [from, to],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
    }
    app.restart().await;
    assert_eq!(
        app.get_json("/v1/rules/old").await["when"]["types"],
        json!(["text", "txt"])
    );
    receive(&app, vec![text("wamid.T1", "hello")]).await;
    let sent = expect_sends(&app, 1).await;
    assert_eq!(text_body(&sent[0]), "hi", "it still answers");
    let (status, answer) = patch_rule(&app, "old", json!({"enabled": false})).await;
    assert_eq!(
        (status, &answer["enabled"]),
        (200, &json!(false)),
        "{answer}"
    );
    let (status, answer) =
        patch_rule(&app, "old", json!({"when": {"types": ["txt", "image"]}})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "when", "types"]));
}

async fn an_unreadable_cursor_starts_again_at_the_end(backend: Backend) {
    let mut app = rule_app(backend, |_| {}).await;
    receive(&app, vec![text("wamid.U1", "old")]).await;
    rule(
        &app,
        json!({"id": "all", "when": {}, "quote": true, "reply": {"type": "text", "text": {"body": "hi"}}}),
    )
    .await;
    receive(&app, vec![text("wamid.U2", "new")]).await;
    expect_sends(&app, 1).await;
    app.stop(Duration::from_secs(15)).await;
    // A cursor this backend cannot read (say, copied from the other backend).
    match backend {
        Backend::Redis => {
            let mut redis = app.redis_connection().await;
            let _: () = redis::cmd("SET")
                .arg("test:rules:cursor")
                .arg("not-an-id")
                .query_async(&mut redis)
                .await
                .unwrap();
        }
        Backend::Embedded => {
            let changed = app
                .database()
                .execute("UPDATE auto_reply_cursor SET cursor = 'not-an-id'", [])
                .unwrap();
            assert_eq!(changed, 1);
        }
    }
    app.restart().await;
    // The engine starts over at the log's end: U1 and U2 are not answered again, and a message
    // stored after the reset is.
    eventually("the engine resets its cursor", || async {
        let cursor: Option<String> = match backend {
            Backend::Redis => redis::cmd("GET")
                .arg("test:rules:cursor")
                .query_async(&mut app.redis_connection().await)
                .await
                .unwrap(),
            Backend::Embedded => app
                .database()
                .query_row("SELECT cursor FROM auto_reply_cursor", [], |r| r.get(0))
                .ok(),
        };
        (cursor.as_deref() != Some("not-an-id")).then_some(())
    })
    .await;
    receive(&app, vec![text("wamid.U3", "after")]).await;
    let sent = expect_sends(&app, 2).await;
    assert!(sent.iter().all(|s| text_body(s) == "hi"));
    let answered: Vec<&Value> = sent.iter().map(|s| &s["context"]["message_id"]).collect();
    assert_eq!(answered, ["wamid.U2", "wamid.U3"], "U2 not answered again");
}

/// Meta answering the first send after a delay, recording when each send arrived.
struct SlowFirst(std::sync::Mutex<Vec<std::time::Instant>>);

impl wiremock::Respond for SlowFirst {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let mut arrivals = self.0.lock().unwrap();
        arrivals.push(std::time::Instant::now());
        let n = arrivals.len();
        let answer = wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp", "contacts": [{"input": KERRY, "wa_id": KERRY}],
            "messages": [{"id": format!("wamid.SLOW{n}")}]}));
        if n == 1 {
            answer.set_delay(Duration::from_millis(800))
        } else {
            answer
        }
    }
}

async fn replies_to_one_contact_go_out_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let slow = std::sync::Arc::new(SlowFirst(std::sync::Mutex::default()));
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .respond_with(ArcResponder(slow.clone()))
        .mount(&app.graph)
        .await;
    rule(
        &app,
        json!({"id": "echo", "when": {}, "reply": {"type": "text", "text": {"body": "{{text}}"}}}),
    )
    .await;
    receive(&app, vec![text("wamid.Q1", "first")]).await;
    // The first reply is at Meta (and held there) before the second message arrives.
    eventually("the first reply reaches Meta", || async {
        (!slow.0.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    receive(&app, vec![text("wamid.Q2", "second")]).await;
    let sent = expect_sends(&app, 2).await;
    assert_eq!(
        sent.iter().map(text_body).collect::<Vec<_>>(),
        ["first", "second"]
    );
    let arrivals = slow.0.lock().unwrap().clone();
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(750),
        "the second reply waited for the first to be answered: {:?}",
        arrivals[1] - arrivals[0]
    );
}

/// Lets a test keep a handle on its responder.
struct ArcResponder<T>(std::sync::Arc<T>);

impl<T: wiremock::Respond> wiremock::Respond for ArcResponder<T> {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        self.0.respond(request)
    }
}

async fn rules_are_bounded_in_number_and_size(backend: Backend) {
    let app = rule_app(backend, |_| {}).await;
    // Past 64 KiB of JSON: 100 keywords of 1,000 characters.
    let long: Vec<String> = (0..100)
        .map(|i| format!("{i:04}{}", "k".repeat(996)))
        .collect();
    let (status, answer) = create_rule(
        &app,
        json!({"id": "big", "when": {"keyword": {"contains": long}}, "reply": {"type": "text", "text": {"body": "x"}}}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("at most 65536"), "{answer}");
    use futures_util::StreamExt;
    let created: Vec<u16> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let app = &app;
            async move {
                create_rule(app, json!({"id": format!("r{i}"), "when": {"keyword": {"exact": format!("w{i}")}}, "reply": {"type": "text", "text": {"body": "x"}}}))
                    .await
                    .0
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        created.iter().all(|s| *s == 201),
        "{:?}",
        created.iter().filter(|s| **s != 201).count()
    );
    let (status, answer) = create_rule(
        &app,
        json!({"id": "one-more", "reply": {"type": "text", "text": {"body": "x"}}}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("1000 rules already"),
        "{answer}"
    );
    assert_eq!(
        app.get_json("/v1/rules").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1000
    );
}
