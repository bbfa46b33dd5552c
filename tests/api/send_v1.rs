//! `POST /v1/messages` against a wiremock Graph API that checks Meta's exact body, path and
//! bearer token: every kind of message, the rules checked before any Graph call, business
//! numbers, the 24-hour window, retries that never send twice, Meta's errors with hints, and
//! the record (with its `message_outgoing` event) of what Meta accepted, on both backends.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::events::Sse;
use crate::helpers::*;

const WAMID: &str = "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA";
const USER: &str = "15551234567";
const BSUID: &str = "US.13491208655302741918";

fn accepted(input: &str, wa_id: Option<&str>) -> Value {
    let mut contact = json!({ "input": input });
    match wa_id {
        Some(w) => contact["wa_id"] = w.into(),
        None => contact["user_id"] = input.into(),
    }
    json!({"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": WAMID}]})
}

/// Meta accepting exactly `times` sends (to [`USER`]), on any number.
async fn mount_accepted(app: &TestApp, times: u64) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER))))
        .expect(times)
        .mount(&app.graph)
        .await;
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    send_with(app, None, body).await
}

/// `POST /v1/messages` with `body`, under an Idempotency-Key when given: status, JSON, headers.
pub(crate) async fn send_with(
    app: &TestApp,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = app.http.post(app.url("/v1/messages")).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

/// Mounts a Graph mock that accepts exactly `meta` (once) on the default number.
async fn expect_body(app: &TestApp, meta: Value, answer: Value) {
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .and(body_json(meta))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(&app.graph)
        .await;
}

/// Client body -> the exact body Meta receives, for one variant of each family of types (the
/// unit tests of `domain::send` cover every variant and rule of the mapping itself).
fn cases() -> Vec<(Value, Value)> {
    let meta = |rest: Value| {
        let mut body =
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": USER});
        body.as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        body
    };
    // A client body Meta receives as it is (plus what the gateway adds).
    let passes_through = |object: Value| {
        let mut client = json!({"to": USER});
        client
            .as_object_mut()
            .unwrap()
            .extend(object.as_object().unwrap().clone());
        (client, meta(object))
    };
    vec![
        (
            json!({"to": "+1 (555) 123-4567", "type": "text", "text": {"body": "Hello", "preview_url": true}}),
            meta(json!({"type": "text", "text": {"body": "Hello", "preview_url": true}})),
        ),
        (
            json!({"to": USER, "type": "image", "image": {"id": "1479537139650973", "caption": "The receipt"}, "reply_to": "wamid.earlier"}),
            meta(
                json!({"type": "image", "image": {"id": "1479537139650973", "caption": "The receipt"}, "context": {"message_id": "wamid.earlier"}}),
            ),
        ),
        (
            json!({"to": USER, "type": "voice", "voice": {"link": "https://example.com/note.ogg"}}),
            meta(
                json!({"type": "audio", "audio": {"link": "https://example.com/note.ogg", "voice": true}}),
            ),
        ),
        passes_through(
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick one"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}}, {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}}),
        ),
        passes_through(
            json!({"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "4521"}]}]}}),
        ),
        passes_through(
            json!({"type": "location", "location": {"latitude": 52.52, "longitude": 13.405, "name": "Office"}}),
        ),
        passes_through(
            json!({"type": "reaction", "reaction": {"message_id": "wamid.earlier", "emoji": "\u{1F44D}"}}),
        ),
        passes_through(
            json!({"type": "interactive", "interactive": {"type": "voice_call",
                   "body": {"text": "Call us on WhatsApp"},
                   "action": {"name": "voice_call", "parameters": {"display_text": "Call on WhatsApp", "ttl_minutes": 100, "payload": "support"}}}}),
        ),
        passes_through(
            json!({"type": "interactive", "interactive": {"type": "call_permission_request",
                   "body": {"text": "May we call you about your order?"}, "action": {"name": "call_permission_request"}}}),
        ),
        passes_through(
            json!({"type": "interactive", "interactive": {"type": "request_contact_info",
                   "body": {"text": "Share your number so we can update you about your order."},
                   "action": {"name": "request_contact_info"}}}),
        ),
        (
            // card_index and the URL cards' type are filled in.
            json!({"to": USER, "type": "interactive", "interactive": {"type": "carousel",
                   "body": {"text": "Two of our latest arrivals"},
                   "action": {"cards": [
                       {"header": {"type": "image", "image": {"link": "https://example.com/echeveria.jpeg"}},
                        "body": {"text": "*Blue Echeveria*\n\nUnder $25"},
                        "action": {"name": "cta_url", "parameters": {"display_text": "Buy now", "url": "https://example.com/p/1"}}},
                       {"header": {"type": "image", "image": {"link": "https://example.com/aloe.jpeg"}},
                        "action": {"name": "cta_url", "parameters": {"display_text": "Buy now", "url": "https://example.com/p/2"}}}]}}}),
            meta(
                json!({"type": "interactive", "interactive": {"type": "carousel",
                       "body": {"text": "Two of our latest arrivals"},
                       "action": {"cards": [
                           {"card_index": 0, "type": "cta_url",
                            "header": {"type": "image", "image": {"link": "https://example.com/echeveria.jpeg"}},
                            "body": {"text": "*Blue Echeveria*\n\nUnder $25"},
                            "action": {"name": "cta_url", "parameters": {"display_text": "Buy now", "url": "https://example.com/p/1"}}},
                           {"card_index": 1, "type": "cta_url",
                            "header": {"type": "image", "image": {"link": "https://example.com/aloe.jpeg"}},
                            "action": {"name": "cta_url", "parameters": {"display_text": "Buy now", "url": "https://example.com/p/2"}}}]}}}),
            ),
        ),
        passes_through(
            json!({"type": "interactive", "interactive": {"type": "carousel",
                   "body": {"text": "Pick a plant"},
                   "action": {"cards": [
                       {"card_index": 0, "header": {"type": "video", "video": {"link": "https://example.com/1.mp4"}},
                        "action": {"buttons": [{"type": "quick_reply", "quick_reply": {"id": "learn-1", "title": "Learn more"}}]}},
                       {"card_index": 1, "header": {"type": "video", "video": {"link": "https://example.com/2.mp4"}},
                        "action": {"buttons": [{"type": "quick_reply", "quick_reply": {"id": "learn-2", "title": "Learn more"}}]}}]}}}),
        ),
        (
            // A media card carousel template (Meta's guide); card_index is filled in.
            json!({"to": USER, "type": "template", "template": {"name": "summer_carousel",
                   "language": {"code": "en_US"}, "components": [
                       {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]},
                       {"type": "carousel", "cards": [
                           {"components": [
                               {"type": "header", "parameters": [{"type": "image", "image": {"id": "1558081531584829"}}]},
                               {"type": "button", "sub_type": "quick_reply", "index": "0",
                                "parameters": [{"type": "payload", "payload": "more-aloe"}]}]},
                           {"components": [
                               {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/b.png"}}]},
                               {"type": "button", "sub_type": "quick_reply", "index": "0",
                                "parameters": [{"type": "payload", "payload": "more-bird"}]}]}]}]}}),
            meta(
                json!({"type": "template", "template": {"name": "summer_carousel",
                       "language": {"code": "en_US"}, "components": [
                           {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]},
                           {"type": "carousel", "cards": [
                               {"card_index": 0, "components": [
                                   {"type": "header", "parameters": [{"type": "image", "image": {"id": "1558081531584829"}}]},
                                   {"type": "button", "sub_type": "quick_reply", "index": "0",
                                    "parameters": [{"type": "payload", "payload": "more-aloe"}]}]},
                               {"card_index": 1, "components": [
                                   {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/b.png"}}]},
                                   {"type": "button", "sub_type": "quick_reply", "index": "0",
                                    "parameters": [{"type": "payload", "payload": "more-bird"}]}]}]}]}}),
            ),
        ),
        // A limited-time offer template with its coupon code.
        passes_through(
            json!({"type": "template", "template": {"name": "holiday_offer",
                   "language": {"code": "en_US"}, "components": [
                       {"type": "limited_time_offer", "parameters": [{"type": "limited_time_offer",
                        "limited_time_offer": {"expiration_time_ms": 1_767_225_600_000u64}}]},
                       {"type": "button", "sub_type": "copy_code", "index": "0",
                        "parameters": [{"type": "coupon_code", "coupon_code": "HOLIDAY25"}]}]}}),
        ),
    ]
}

async fn every_kind_reaches_meta_with_its_exact_body(backend: Backend) {
    for (client, meta) in cases() {
        let app = spawn_app(backend).await;
        expect_body(&app, meta, accepted(USER, Some(USER))).await;
        let (status, answer, _) = post(&app, &client).await;
        assert_eq!(status, 200, "{client} -> {answer}");
        assert_eq!(answer["id"], WAMID);
        assert_eq!(answer["status"], "accepted");
        assert_eq!(answer["from"], PHONE_NUMBER_ID);
        assert_eq!(answer["to"], USER);
        assert_eq!(answer["recorded"], true);
        // wiremock's expect(1) is checked when the app (and its mock) drops.
    }
}

async fn a_bsuid_recipient_is_sent_as_recipient_and_recorded_under_it(backend: Backend) {
    let app = spawn_app(backend).await;
    expect_body(
        &app,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "recipient": BSUID,
               "type": "text", "text": {"body": "Your order has shipped"}}),
        accepted(BSUID, None),
    )
    .await;
    let (status, answer, _) = post(
        &app,
        &json!({"to": BSUID, "type": "text", "text": {"body": "Your order has shipped"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["to"], BSUID);
    assert_eq!(answer["contact"]["user_id"], BSUID);
    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["contact"]["id"], BSUID);
    assert_eq!(record["direction"], "outbound");
}

async fn broken_rules_are_422_naming_the_field_and_nothing_is_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    mount_accepted(&app, 0).await;
    let buttons: Vec<Value> = (0..4)
        .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("B{i}")}}))
        .collect();
    let cases = [
        (
            json!({"to": USER, "type": "text", "text": {"body": "x".repeat(4097)}}),
            "text.body",
        ),
        (
            json!({"to": USER, "type": "audio", "audio": {"id": "1", "caption": "no"}}),
            "audio.caption",
        ),
        (
            json!({"to": USER, "type": "image", "image": {"id": "1", "link": "https://example.com/a.jpg"}}),
            "image",
        ),
        (
            json!({"to": USER, "type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": buttons}}}),
            "interactive.action.buttons",
        ),
        (
            json!({"to": USER, "type": "template", "template": {"name": "order_update"}}),
            "template.language",
        ),
        (
            // A carousel's cards must all have the same buttons.
            json!({"to": USER, "type": "interactive", "interactive": {"type": "carousel", "body": {"text": "Pick"},
                   "action": {"cards": [
                       {"header": {"type": "image", "image": {"link": "https://example.com/1.jpeg"}},
                        "action": {"name": "cta_url", "parameters": {"display_text": "Buy", "url": "https://example.com/1"}}},
                       {"header": {"type": "image", "image": {"link": "https://example.com/2.jpeg"}},
                        "action": {"buttons": [{"type": "quick_reply", "quick_reply": {"id": "q", "title": "Buy"}}]}}]}}}),
            "interactive.action.cards[1].action",
        ),
        (
            json!({"to": "12", "type": "text", "text": {"body": "hi"}}),
            "to",
        ),
    ];
    for (body, field) in cases {
        let (status, answer, _) = post(&app, &body).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        let fields: Vec<String> = answer["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["msg"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            fields.iter().any(|m| m.starts_with(field)),
            "{field} not named in {fields:?}"
        );
    }
    let (status, answer, _) = post(
        &app,
        &json!({"to": USER, "from": "999", "type": "text", "text": {"body": "hi"}}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "from"]));
    assert!(
        answer["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains(PHONE_NUMBER_ID),
        "{answer}"
    );
}

async fn a_second_number_sends_with_its_own_token_and_path(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("PHONE_NUMBERS".into(), "200000000000002".into());
        vars.insert("ACCESS_TOKEN_200000000000002".into(), "second-token".into());
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/200000000000002/messages"))
        .and(header("authorization", "Bearer second-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER))))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(
        &app,
        &json!({"to": USER, "from": "200000000000002", "type": "text", "text": {"body": "hi"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["from"], "200000000000002");
    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["phone_number_id"], "200000000000002");
}

/// A user's message `age` seconds old, stored through the webhook.
async fn inbound_from_user(app: &TestApp, id: &str, age: i64) {
    let ts = now_secs() - age;
    let mut message = text_message(id, USER, "hello");
    message["timestamp"] = ts.to_string().into();
    let mut webhook: Value = serde_json::from_str(&webhook_with(vec![message])).unwrap();
    // The user's profile, as Meta sends it with their messages.
    webhook["entry"][0]["changes"][0]["value"]["contacts"] =
        json!([{"profile": {"name": "Kerry"}, "wa_id": USER}]);
    app.post_webhook_ok(&webhook.to_string()).await;
}

async fn a_closed_window_refuses_free_form_but_not_templates_or_an_override(backend: Backend) {
    let app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.old", 25 * 3600).await;
    let text = json!({"to": USER, "type": "text", "text": {"body": "Still there?"}});
    let (status, answer, _) = post(&app, &text).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "to"]));
    let msg = answer["detail"][0]["msg"].as_str().unwrap();
    assert!(msg.contains("24-hour") && msg.contains("template"), "{msg}");
    assert_eq!(app.graph.received_requests().await.unwrap().len(), 0);

    mount_accepted(&app, 2).await;
    let mut forced = text.clone();
    forced["outside_window"] = true.into();
    assert_eq!(post(&app, &forced).await.0, 200);
    let template = json!({"to": USER, "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    assert_eq!(post(&app, &template).await.0, 200);
    // Our own sends do not open the window: free-form is still refused.
    let (status, answer, _) = post(&app, &text).await;
    assert_eq!(status, 422, "{answer}");
}

/// A `calls` notification of one call by `from`, `age` seconds old, in `direction`.
async fn call_from(app: &TestApp, from: &str, age: i64, direction: &str) {
    app.post_webhook_ok(&calls_webhook(from, now_secs() - age, direction))
        .await;
}

/// The conversation with [`USER`] as `GET /v1/conversations` lists it.
async fn conversation_with_user(app: &TestApp) -> Value {
    conversation_in(&app.get_json("/v1/conversations").await, USER)
}

async fn a_users_call_opens_the_window_as_a_message_does(backend: Backend) {
    let mut app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.old", 25 * 3600).await;
    if backend == Backend::Embedded {
        // A database of the previous release (schema 8, no calls kept) is upgraded in place.
        downgrade_and_restart(
            &mut app,
            "DROP TABLE contact_aliases; DROP TABLE user_calls; PRAGMA user_version = 8;",
        )
        .await;
    }
    let text = json!({"to": USER, "type": "text", "text": {"body": "You called?"}});
    assert_eq!(
        conversation_with_user(&app).await["window_expires_at"],
        Value::Null
    );
    let mut stream = Sse::open(&app, "?types=conversation_updated", None).await;
    // The business's own call does not open the window.
    call_from(&app, USER, 60, "BUSINESS_INITIATED").await;
    let (status, answer, _) = post(&app, &text).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(app.graph.received_requests().await.unwrap().len(), 0);

    // The user's call does, 24 hours from the call, and the conversation's event says so at
    // once (the inbox's composer opens); an older call arriving later changes nothing.
    call_from(&app, USER, 3600, "USER_INITIATED").await;
    let opened = now_secs() - 3600;
    call_from(&app, USER, 20 * 3600, "USER_INITIATED").await;
    let expires = conversation_with_user(&app).await["window_expires_at"]
        .as_i64()
        .expect("the window is open");
    assert!(
        (opened + 86_400..=opened + 86_401).contains(&expires),
        "the window expires at {expires}, 24 h after the call at about {opened}"
    );
    let event = stream.events(1).await.remove(0).json();
    let data = &event["data"];
    assert_eq!(data["window_expires_at"], expires, "{data}");
    assert_eq!(data["last_message_id"], "wamid.old", "{data}");
    assert_eq!(data["message_count"], 1, "{data}");
    assert_eq!(data["unread_count"], 1, "{data}");
    assert_eq!(data["contact"]["id"], USER, "{data}");
    assert_eq!(data["phone_number_id"], PHONE_NUMBER_ID, "{data}");
    stream.assert_quiet(Duration::from_millis(300)).await;
    // The conversation's events keep saying so: after a late message older than the call, and
    // after a read mark.
    inbound_from_user(&app, "wamid.late", 26 * 3600).await;
    let (status, read) = post_read(&app, USER).await;
    assert_eq!(status, 200, "{read}");
    for event in stream.events(2).await {
        let data = &event.json()["data"];
        assert_eq!(data["window_expires_at"], expires, "{data}");
    }
    mount_accepted(&app, 1).await;
    let (status, answer, _) = post(&app, &text).await;
    assert_eq!(status, 200, "{answer}");
    let sent = stream.events(1).await.remove(0).json();
    assert_eq!(sent["data"]["last_message"], "You called?", "{sent}");
    // The call is not a message: two from the user, one sent, none unread after the mark.
    let conversation = conversation_with_user(&app).await;
    assert_eq!(conversation["message_count"], 3, "{conversation}");
    assert_eq!(conversation["unread_count"], 0, "{conversation}");

    // A caller with no message at all: their call is their window, open or closed (and there
    // is no conversation to update).
    call_from(&app, BSUID, 30 * 3600, "USER_INITIATED").await;
    stream.assert_quiet(Duration::from_millis(300)).await;
    let to_bsuid = json!({"to": BSUID, "type": "text", "text": {"body": "Sorry we missed you"}});
    let (status, answer, _) = post(&app, &to_bsuid).await;
    assert_eq!(status, 422, "a call 30 h ago: closed; {answer}");
    call_from(&app, BSUID, 10, "USER_INITIATED").await;
    app.graph.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(BSUID, None)))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(&app, &to_bsuid).await;
    assert_eq!(status, 200, "a call 10 s ago: open; {answer}");

    // Deleting a conversation deletes its messages, not the contact's call (as it keeps their
    // marketing preference), on both backends: a call 30 h ago still closes the window.
    const OTHER: &str = "15557654321";
    let mut message = text_message("wamid.other", OTHER, "hello");
    message["timestamp"] = (now_secs() - 40 * 3600).to_string().into();
    app.post_webhook_ok(&webhook_with(vec![message])).await;
    // (The stream's event of this message: the stub answered the reply to BSUID with the
    // message id it gave USER's, so that reply is not a new record.)
    let pending = stream.events(1).await.remove(0).json();
    assert_eq!(pending["data"]["contact"]["id"], OTHER, "{pending}");
    // A first call older than the contact's latest message moves no window: no event.
    call_from(&app, OTHER, 50 * 3600, "USER_INITIATED").await;
    stream.assert_quiet(Duration::from_millis(300)).await;
    call_from(&app, OTHER, 30 * 3600, "USER_INITIATED").await;
    assert_eq!(delete_conversation(&app, OTHER).await, 200);
    let to_other = json!({"to": OTHER, "type": "text", "text": {"body": "Hello again"}});
    let (status, answer, _) = post(&app, &to_other).await;
    assert_eq!(status, 422, "the call is kept: closed; {answer}");
}

async fn an_open_window_and_an_unknown_contact_are_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.recent", 3600).await;
    mount_accepted(&app, 2).await;
    let text = json!({"to": USER, "type": "text", "text": {"body": "Yes"}});
    assert_eq!(post(&app, &text).await.0, 200);
    let stranger = json!({"to": "15559990000", "type": "text", "text": {"body": "Hi"}});
    assert_eq!(post(&app, &stranger).await.0, 200);
}

async fn the_send_is_recorded_with_its_event_and_later_statuses_attach(backend: Backend) {
    let app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.question", 60).await;
    let mut stream = Sse::open(&app, "?types=message_outgoing,message_status", None).await;
    // Meta answers with the canonical wa_id, which differs from the number dialled.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(accepted("+1 555 123 4567", Some(USER))),
        )
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(
        &app,
        &json!({"to": "+1 555 123 4567", "type": "text", "text": {"body": "On its way"}, "reply_to": "wamid.question"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let event = &stream.events(1).await[0];
    assert_eq!(event.kind(), "message_outgoing");
    let data = &event.json()["data"];
    assert_eq!(data["id"], WAMID);
    assert_eq!(data["direction"], "outbound");
    assert_eq!(data["source"], "api");
    assert_eq!(data["body"], "On its way");

    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["status"], "accepted", "{record}");
    assert_eq!(record["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(record["contact"]["id"], USER);
    assert_eq!(record["context"]["id"], "wamid.question", "{record}");

    let conversations = app.get_json("/v1/conversations").await;
    let conversation = &conversations["conversations"][0];
    assert_eq!(conversation["message_count"], 2, "{conversation}");
    assert_eq!(conversation["unread_count"], 1, "{conversation}");
    assert_eq!(conversation["last_message_id"], WAMID);
    // Our send carries no profile: the name the user's message gave stays.
    assert_eq!(conversation["contact"]["name"], "Kerry", "{conversation}");
    // Sent messages are not in the FastAPI list: that holds what users wrote.
    assert_eq!(app.ids_of(USER).await, ["wamid.question"]);

    let status_webhook = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [{"id": WAMID, "status": "delivered", "timestamp": "1757936800", "recipient_id": USER}]}}]}]});
    app.post_webhook_ok(&status_webhook.to_string()).await;
    let event = &stream.events(1).await[0];
    assert_eq!(event.kind(), "message_status");
    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["status"], "delivered", "{record}");
}

async fn send_compat_records_too(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER))))
        .mount(&app.graph)
        .await;
    let response = app.post_send(json!({"number": USER, "text": "hi"})).await;
    assert_eq!(response.status(), 200);
    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["direction"], "outbound");
    assert_eq!(record["body"], "hi");
    assert_eq!(record["source"], "api");
    let messages = app
        .get_json(&format!("/v1/conversations/{USER}/messages"))
        .await;
    assert_eq!(messages["messages"][0]["id"], WAMID);
}

async fn post_keyed(
    app: &TestApp,
    key: &str,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    send_with(app, Some(key), body).await
}

async fn a_repeated_idempotency_key_gets_the_first_answer_and_sends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    mount_accepted(&app, 1).await;
    let body = text();
    let (status, first, headers) = post_keyed(&app, "order-4521-shipped", &body).await;
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    // The same request, its keys in another order: the same request.
    let reordered: Value =
        serde_json::from_str(r#"{"type": "text", "text": {"body": "hi"}, "to": "15551234567"}"#)
            .unwrap();
    let (status, again, headers) = post_keyed(&app, "order-4521-shipped", &reordered).await;
    assert_eq!(status, 200);
    assert_eq!(again, first);
    assert_eq!(headers["idempotent-replayed"], "true");
    // The same key with another body is refused, and sends nothing either.
    let other = json!({"to": USER, "type": "text", "text": {"body": "something else"}});
    let (status, answer, _) = post_keyed(&app, "order-4521-shipped", &other).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["detail"][0]["loc"],
        json!(["header", "Idempotency-Key"])
    );
    // One outbound record.
    let conversation = &app.get_json("/v1/conversations").await["conversations"][0];
    assert_eq!(conversation["message_count"], 1, "{conversation}");
    let (status, answer, _) = post_keyed(&app, "", &body).await;
    assert_eq!(status, 422, "{answer}");
}

async fn a_repeat_while_the_first_is_in_flight_is_a_409_and_sends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(accepted(USER, Some(USER)))
                .set_delay(Duration::from_millis(800)),
        )
        .expect(1)
        .mount(&app.graph)
        .await;
    let body = text();
    let first = {
        let request = app
            .http
            .post(app.url("/v1/messages"))
            .header("idempotency-key", "in-flight-1")
            .json(&body);
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer, _) = post_keyed(&app, "in-flight-1", &body).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("in progress"),
        "{answer}"
    );
    assert_eq!(first.await.unwrap(), 200);
}

async fn a_send_that_outlasts_the_request_is_a_504_and_its_key_then_answers(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("REQUEST_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    // Meta takes 1.5 s (within GRAPH_TIMEOUT_SECS=2), longer than the request may last.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(accepted(USER, Some(USER)))
                .set_delay(Duration::from_millis(1500)),
        )
        .expect(1)
        .mount(&app.graph)
        .await;
    let body = text();
    let (status, answer, _) = post_keyed(&app, "slow-1", &body).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["detail"]["outcome"], "unknown");
    // The send went on to its end: recorded, and the key answers with it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, again, headers) = post_keyed(&app, "slow-1", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], WAMID);
    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["direction"], "outbound", "{record}");
}

async fn a_send_that_certainly_failed_releases_its_key(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("POST"))
        .respond_with(meta_error(131009, 400))
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.graph)
        .await;
    mount_accepted(&app, 1).await;
    let (status, _, _) = post_keyed(&app, "k-1", &text()).await;
    assert_eq!(status, 400);
    let (status, answer, headers) = post_keyed(&app, "k-1", &text()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(headers.get("idempotent-replayed").is_none());
}

fn read_body(id: &str, typing: bool) -> Value {
    let mut body = json!({"messaging_product": "whatsapp", "status": "read", "message_id": id});
    if typing {
        body["typing_indicator"] = json!({"type": "text"});
    }
    body
}

async fn read_receipts_and_typing_reach_meta_for_the_latest_inbound_message(backend: Backend) {
    let app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.first", 120).await;
    inbound_from_user(&app, "wamid.second", 60).await;
    let ok = || ResponseTemplate::new(200).set_body_json(json!({"success": true}));
    for (body, times) in [
        (read_body("wamid.first", false), 1),
        (read_body("wamid.second", true), 1),
        (read_body("wamid.second", false), 1),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
            .and(header(
                "authorization",
                format!("Bearer {ACCESS_TOKEN}").as_str(),
            ))
            .and(body_json(body))
            .respond_with(ok())
            .expect(times)
            .mount(&app.graph)
            .await;
    }
    let (status, answer) = post_empty(&app, "/v1/messages/wamid.first/read").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"id": "wamid.first", "phone_number_id": PHONE_NUMBER_ID, "status": "read"})
    );

    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/typing")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message_id"], "wamid.second");

    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/read")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread_count"], 0);
    assert_eq!(
        answer["read_receipt"],
        json!({"sent": true, "message_id": "wamid.second"})
    );

    // Nothing to answer: no message from this contact.
    let (status, answer) = post_empty(&app, "/v1/conversations/15559990000/typing").await;
    assert_eq!(status, 404, "{answer}");
}

/// Meta answering every send with a new message id (`wamid.out.<n>`), so each is recorded.
struct NewIds(std::sync::atomic::AtomicUsize);

impl wiremock::Respond for NewIds {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut answer = accepted(USER, Some(USER));
        answer["messages"][0]["id"] = format!("wamid.out.{n}").into();
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

/// Mounts the read receipt (with or without typing) for `id`, expected once.
pub(crate) async fn expect_read(app: &TestApp, id: &str, typing: bool) {
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .and(body_json(read_body(id, typing)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&app.graph)
        .await;
}

/// The latest inbound message is kept with the conversation: 60 replies after it (more than
/// any page of history) do not hide it from typing and read receipts, and an older message
/// that arrives late does not replace it.
async fn typing_and_read_receipts_find_the_latest_inbound_message_behind_many_replies(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.latest", 60).await;
    inbound_from_user(&app, "wamid.older", 600).await;
    Mock::given(method("POST"))
        .and(body_json(json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": USER, "type": "text", "text": {"body": "hi"}})))
        .respond_with(NewIds(Default::default()))
        .expect(60)
        .mount(&app.graph)
        .await;
    for _ in 0..60 {
        let (status, answer, _) = post(&app, &text()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let page = app
        .get_json(&format!("/v1/conversations/{USER}/messages?limit=50"))
        .await;
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["direction"] == "outbound"),
        "the latest page holds only replies: {page}"
    );
    expect_read(&app, "wamid.latest", true).await;
    expect_read(&app, "wamid.latest", false).await;
    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/typing")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message_id"], "wamid.latest");
    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/read")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["read_receipt"],
        json!({"sent": true, "message_id": "wamid.latest"})
    );
}

/// A conversation written by the previous release has no `last_inbound_id`: typing and read
/// receipts still find its latest inbound message (in its history), and the next inbound
/// message is kept with the conversation again.
async fn a_conversation_of_the_previous_release_still_gets_read_receipts(backend: Backend) {
    let mut app = spawn_app(backend).await;
    inbound_from_user(&app, "wamid.before", 60).await;
    match backend {
        Backend::Redis => {
            let mut redis = app.redis_connection().await;
            let key = format!("test:conv:{PHONE_NUMBER_ID}:{USER}");
            let removed: i64 = redis::cmd("HDEL")
                .arg(&key)
                .arg("last_inbound_id")
                .query_async(&mut redis)
                .await
                .unwrap();
            assert_eq!(removed, 1, "the conversation keeps the id");
        }
        Backend::Embedded => {
            downgrade_and_restart(
                &mut app,
                "DROP TABLE contact_aliases; DROP TABLE user_calls; DROP TABLE auto_reply_marks; DROP TABLE auto_reply_cursor; DROP TABLE auto_reply_rules; DROP TABLE webhook_attempts; DROP TABLE webhook_deliveries; DROP TABLE webhook_subscriptions; ALTER TABLE conversation DROP COLUMN last_inbound_id; PRAGMA user_version = 5;",
            )
            .await;
        }
    }
    expect_read(&app, "wamid.before", true).await;
    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/typing")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message_id"], "wamid.before");
    inbound_from_user(&app, "wamid.after", 30).await;
    expect_read(&app, "wamid.after", false).await;
    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/read")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread_count"], 0);
    assert_eq!(
        answer["read_receipt"],
        json!({"sent": true, "message_id": "wamid.after"})
    );
}

async fn read_receipt_refusals_are_clear_and_a_local_read_stands_without_meta(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("POST"))
        .and(body_json(json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": USER, "type": "text", "text": {"body": "hi"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER))))
        .mount(&app.graph)
        .await;
    assert_eq!(post(&app, &text()).await.0, 200);
    // Our own message cannot be "read" by us.
    let (status, answer) = post_empty(&app, &format!("/v1/messages/{WAMID}/read")).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["path", "id"]));
    // Meta refuses the receipt: the local read stands and says why the phone was not told.
    inbound_from_user(&app, "wamid.q", 30).await;
    Mock::given(method("POST"))
        .and(body_json(read_body("wamid.q", false)))
        .respond_with(meta_error(131009, 400))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer) = post_empty(&app, &format!("/v1/conversations/{USER}/read")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread_count"], 0);
    assert_eq!(answer["read_receipt"]["sent"], false);
    assert!(
        answer["read_receipt"]["reason"]
            .as_str()
            .unwrap()
            .contains("131009"),
        "{answer}"
    );
}

/// Meta's `sent`/`delivered` webhooks can overtake its answer to the send: they are kept and
/// attach to the record once it is written.
async fn statuses_that_arrive_before_the_send_is_recorded_attach_to_it(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(accepted(USER, Some(USER)))
                .set_delay(Duration::from_millis(600)),
        )
        .mount(&app.graph)
        .await;
    let body = text();
    let send = post(&app, &body);
    let early = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let webhook = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [
                {"id": WAMID, "status": "sent", "timestamp": "1757936800", "recipient_id": USER},
                {"id": WAMID, "status": "delivered", "timestamp": "1757936801", "recipient_id": USER}]}}]}]});
        app.post_webhook_ok(&webhook.to_string()).await;
    };
    let ((status, answer, _), ()) = tokio::join!(send, early);
    assert_eq!(status, 200, "{answer}");
    let record = app.get_json(&format!("/v1/messages/{WAMID}")).await;
    assert_eq!(record["status"], "delivered", "{record}");
    assert_eq!(record["direction"], "outbound");
    let statuses: Vec<&str> = record["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "delivered"]);
}

crate::contract_tests!(
    statuses_that_arrive_before_the_send_is_recorded_attach_to_it,
    read_receipts_and_typing_reach_meta_for_the_latest_inbound_message,
    typing_and_read_receipts_find_the_latest_inbound_message_behind_many_replies,
    a_conversation_of_the_previous_release_still_gets_read_receipts,
    read_receipt_refusals_are_clear_and_a_local_read_stands_without_meta,
    a_repeated_idempotency_key_gets_the_first_answer_and_sends_nothing,
    a_send_that_certainly_failed_releases_its_key,
    a_repeat_while_the_first_is_in_flight_is_a_409_and_sends_nothing,
    a_send_that_outlasts_the_request_is_a_504_and_its_key_then_answers,
    every_kind_reaches_meta_with_its_exact_body,
    a_bsuid_recipient_is_sent_as_recipient_and_recorded_under_it,
    broken_rules_are_422_naming_the_field_and_nothing_is_sent,
    a_second_number_sends_with_its_own_token_and_path,
    a_closed_window_refuses_free_form_but_not_templates_or_an_override,
    a_users_call_opens_the_window_as_a_message_does,
    an_open_window_and_an_unknown_contact_are_sent,
    the_send_is_recorded_with_its_event_and_later_statuses_attach,
    send_compat_records_too,
);

// Retries and errors do not depend on the store: the embedded one.

fn text() -> Value {
    json!({"to": USER, "type": "text", "text": {"body": "hi"}})
}

#[tokio::test]
async fn throughput_errors_wait_for_retry_after_then_succeed() {
    let app = spawn_app(Backend::Embedded).await;
    // Code 4's own wait is 60 s: only Meta's Retry-After makes this a retry within the request.
    Mock::given(method("POST"))
        .respond_with(meta_error(4, 400).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.graph)
        .await;
    mount_accepted(&app, 1).await;
    let started = std::time::Instant::now();
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_timeout_is_one_call_and_a_504_with_an_unknown_outcome() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(accepted(USER, Some(USER)))
                .set_delay(Duration::from_secs(4)),
        )
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["detail"]["outcome"], "unknown");
    assert!(
        answer["detail"]["hint"]
            .as_str()
            .unwrap()
            .contains("do not send it again blindly")
    );
}

#[tokio::test]
async fn a_meta_server_error_is_not_retried() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(meta_error(131000, 500))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["detail"]["outcome"], "unknown");
    assert_eq!(answer["detail"]["code"], 131000);
}

#[tokio::test]
async fn an_unreachable_graph_is_a_502_that_says_nothing_was_sent() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert(
            "GRAPH_API_BASE".into(),
            format!("http://127.0.0.1:{}", free_port()),
        );
    })
    .await;
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["detail"]["outcome"], "not_sent");
    assert!(
        answer["detail"]["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{answer}"
    );
}

#[tokio::test]
async fn metas_errors_map_to_statuses_with_metas_fields_and_a_hint() {
    let cases = [
        (131047, 400, 400, "template"),
        (131026, 400, 400, "Do not retry"),
        (131030, 400, 400, "allowed list"),
        (131050, 400, 400, "opt-out"),
        (131053, 400, 400, "media"),
        (131062, 400, 400, "BSUID"),
        (100, 400, 400, "error_data.details"),
        (190, 401, 502, "access token"),
        (132001, 400, 422, "template"),
        (132018, 400, 422, "line break"),
        (131056, 400, 429, "wait"),
    ];
    for (code, meta_status, expected, hint) in cases {
        let app = spawn_app(Backend::Embedded).await;
        Mock::given(method("POST"))
            .respond_with(meta_error(code, meta_status))
            .expect(1)
            .mount(&app.graph)
            .await;
        let (status, answer, headers) = post(&app, &text()).await;
        assert_eq!(status, expected, "{code}: {answer}");
        let detail = &answer["detail"];
        assert_eq!(detail["code"], code);
        assert_eq!(detail["error_subcode"], 2494010);
        assert_eq!(detail["details"], "the details");
        assert_eq!(detail["fbtrace_id"], "AbC123");
        assert_eq!(detail["outcome"], "not_sent");
        assert!(
            detail["hint"].as_str().unwrap().contains(hint),
            "{code}: {detail}"
        );
        if expected == 429 {
            assert_eq!(headers["retry-after"], "6");
        }
    }
}

#[tokio::test]
async fn an_unknown_outcome_is_kept_for_its_key_so_a_repeat_sends_nothing() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(meta_error(131000, 500))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, first, _) = post_keyed(&app, "k-unknown", &text()).await;
    assert_eq!(status, 502);
    assert_eq!(first["detail"]["outcome"], "unknown");
    let (status, again, headers) = post_keyed(&app, "k-unknown", &text()).await;
    assert_eq!(status, 502);
    assert_eq!(again, first);
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn an_idempotency_key_holds_across_two_instances_on_one_redis() {
    let first = spawn_app(Backend::Redis).await;
    let graph = first.graph.uri();
    let second = spawn_instance_sharing_redis(&first, |vars| {
        vars.insert("GRAPH_API_BASE".into(), graph);
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(accepted(USER, Some(USER)))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&first.graph)
        .await;
    // Concurrently: one sends, the other finds the key taken (409) or, if it comes later, the
    // answer (200, replayed). Never two sends.
    let body = text();
    let (a, b) = tokio::join!(
        post_keyed(&first, "shared-key", &body),
        post_keyed(&second, "shared-key", &body)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert!(
        statuses == [200, 409] || statuses == [200, 200],
        "{statuses:?}: {} / {}",
        a.1,
        b.1
    );
    // Afterwards both instances give the first answer.
    let (status, answer, headers) = post_keyed(&second, "shared-key", &text()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["id"], WAMID);
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, _, headers) = post_keyed(&first, "shared-key", &text()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
}

/// A database of the previous release (schema 4, no idempotency table) is upgraded in place:
/// its messages stay readable and keyed sends work.
#[tokio::test]
async fn a_schema_4_database_is_upgraded_and_keyed_sends_work() {
    let mut app = spawn_app(Backend::Embedded).await;
    app.post_webhook_ok(&webhook_with(vec![text_message(
        "wamid.before",
        USER,
        "hello",
    )]))
    .await;
    // Schema 4 as an earlier release left it: no idempotency table, no conversation column of
    // schema 6, no outgoing webhook tables of schema 7.
    downgrade_and_restart(
        &mut app,
        "DROP TABLE contact_aliases; DROP TABLE user_calls; DROP TABLE auto_reply_marks; DROP TABLE auto_reply_cursor; DROP TABLE auto_reply_rules; DROP TABLE webhook_attempts; DROP TABLE webhook_deliveries; DROP TABLE webhook_subscriptions; DROP TABLE idempotency; ALTER TABLE conversation DROP COLUMN last_inbound_id;
         PRAGMA user_version = 4;",
    )
    .await;
    assert_eq!(app.ids_of(USER).await, ["wamid.before"]);
    mount_accepted(&app, 1).await;
    let mut body = text();
    body["outside_window"] = true.into();
    assert_eq!(post_keyed(&app, "after-upgrade", &body).await.0, 200);
    let (status, _, headers) = post_keyed(&app, "after-upgrade", &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
}

/// A send whose slot is further away than GRAPH_TIMEOUT_SECS is not held past its deadline: it
/// is refused unsent with 429 and a Retry-After, and never reaches Meta.
#[tokio::test]
async fn a_send_whose_slot_is_too_far_ahead_is_a_429_and_never_reaches_meta() {
    let app = paced_app().await;
    let sends = (0..6).map(|i| {
        let body = json!({"to": USER, "type": "text", "text": {"body": format!("burst {i}")}, "outside_window": true});
        let app = &app;
        async move { post(app, &body).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted = answers.iter().filter(|(s, ..)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, ..)| *s == 429).collect();
    assert_eq!(accepted + refused.len(), 6, "{answers:?}");
    assert!((2..=3).contains(&accepted), "{answers:?}");
    for (_, answer, headers) in &refused {
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((2..=6).contains(&wait), "Retry-After {wait}");
        assert_eq!(answer["detail"]["outcome"], "not_sent", "{answer}");
        assert!(
            answer["detail"]["message"]
                .as_str()
                .unwrap()
                .contains("SEND_RATE_PER_SECOND"),
            "{answer}"
        );
    }
    let reached = app.graph.received_requests().await.unwrap().len();
    assert_eq!(reached, accepted, "only the accepted sends reached Meta");
}

/// An app sending one message a second with GRAPH_TIMEOUT_SECS=2, and Meta accepting every send.
/// Six sends at once: those of seconds 0-2 may wait for their slots, those of seconds 3-5 may
/// not (the one at exactly 2 s goes either way, by microseconds).
async fn paced_app() -> TestApp {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("SEND_RATE_PER_SECOND".into(), "1".into());
        vars.insert("GRAPH_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(NewIds(Default::default()))
        .mount(&app.graph)
        .await;
    app
}

/// The drop-in `/send` goes through the same pacer: a send whose slot is too far ahead is a
/// 429 with Retry-After (a text detail, as the original's errors) and never reaches Meta.
#[tokio::test]
async fn a_drop_in_send_whose_slot_is_too_far_ahead_is_a_429_too() {
    let app = paced_app().await;
    let sends = (0..6).map(|i| {
        let app = &app;
        async move {
            let response = app
                .post_send(json!({"number": USER, "text": format!("burst {i}")}))
                .await;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            (status, body, retry_after)
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted = answers.iter().filter(|(s, ..)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, ..)| *s == 429).collect();
    assert_eq!(accepted + refused.len(), 6, "{answers:?}");
    assert!((2..=3).contains(&accepted), "{answers:?}");
    for (_, body, retry_after) in &refused {
        let wait: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((2..=6).contains(&wait), "Retry-After {wait}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("SEND_RATE_PER_SECOND"),
            "{body}"
        );
    }
    let reached = app.graph.received_requests().await.unwrap().len();
    assert_eq!(reached, accepted, "only the accepted sends reached Meta");
}

/// Stops the (embedded) app, turns its database back into an earlier release's with `sql`,
/// restarts it and checks the start-up migrated it to this release's schema.
pub(crate) async fn downgrade_and_restart(app: &mut TestApp, sql: &str) {
    app.stop(Duration::from_secs(15)).await;
    app.database().execute_batch(sql).unwrap();
    app.restart().await;
    let version: i64 = app
        .database()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, whatsapp_gateway::store::embedded::SCHEMA_VERSION);
}

/// Records when each request reached the Graph mock.
struct Clock(std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>);

impl wiremock::Respond for Clock {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(std::time::Instant::now());
        ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER)))
    }
}

#[tokio::test]
async fn a_burst_of_200_sends_is_held_to_the_configured_rate() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("SEND_RATE_PER_SECOND".into(), "80".into());
    })
    .await;
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Clock(arrivals.clone()))
        .expect(200)
        .mount(&app.graph)
        .await;
    let started = std::time::Instant::now();
    let sends = (0..200).map(|i| {
        let body = json!({"to": USER, "type": "text", "text": {"body": format!("burst {i}")}});
        let app = &app;
        async move { post(app, &body).await.0 }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // 80 at once, 80 a second later, 40 a second after that: about 2 s. A send of the k-th
    // second starts no earlier than k s after the burst began (its slot), whatever the load,
    // so at most 80 arrive within the first second and 160 within the first two.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1950), "{elapsed:?}");
    let times = arrivals.lock().unwrap().clone();
    assert_eq!(times.len(), 200);
    let before = |secs: u64| {
        times
            .iter()
            .filter(|t| t.duration_since(started) < Duration::from_secs(secs))
            .count()
    };
    assert!(before(1) <= 80, "{} sends in the first second", before(1));
    assert!(
        before(2) <= 160,
        "{} sends in the first two seconds",
        before(2)
    );
}

/// The first attempt finds no Graph API listening (connection refused: certainly not sent); the
/// second, after the backoff, reaches it: one message, sent once.
#[tokio::test]
async fn a_refused_connection_is_tried_again_and_sends_once() {
    let port = free_port();
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("GRAPH_API_BASE".into(), format!("http://127.0.0.1:{port}"));
    })
    .await;
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let graph = wiremock::MockServer::builder()
            .listener(listener)
            .start()
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER))))
            .expect(1)
            .mount(&graph)
            .await;
        graph
    });
    let started = std::time::Instant::now();
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    let graph = late.await.unwrap();
    assert_eq!(graph.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_code_meta_uses_for_its_own_failures_is_an_unknown_outcome_even_with_a_4xx() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(meta_error(131000, 400))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post_keyed(&app, "k-131000", &text()).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["detail"]["outcome"], "unknown");
    // Kept for the key: the repeat sends nothing.
    let (_, again, headers) = post_keyed(&app, "k-131000", &text()).await;
    assert_eq!(again, answer);
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_2xx_without_a_message_id_is_an_unknown_outcome() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"messaging_product": "whatsapp"})),
        )
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["detail"]["outcome"], "unknown");
}

#[tokio::test]
async fn a_throughput_wait_longer_than_ten_seconds_is_a_429_with_retry_after() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(meta_error(131057, 400))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, headers) = post(&app, &text()).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(headers["retry-after"], "60");
    assert!(
        answer["detail"]["hint"]
            .as_str()
            .unwrap()
            .contains("maintenance")
    );
}

#[tokio::test]
async fn pair_rate_refusals_get_a_retry_after_growing_as_four_to_the_x_and_are_not_retried() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(meta_error(131056, 400))
        .up_to_n_times(4)
        .expect(4)
        .mount(&app.graph)
        .await;
    let mut waits = Vec::new();
    for _ in 0..3 {
        let (status, answer, headers) = post(&app, &text()).await;
        assert_eq!(status, 429, "{answer}");
        waits.push(headers["retry-after"].to_str().unwrap().to_owned());
    }
    assert_eq!(waits, ["6", "16", "64"]);
    // Another user is another pair.
    let other = json!({"to": "+4915100000001", "type": "text", "text": {"body": "hi"}});
    let (status, _, headers) = post(&app, &other).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "6");
    // An accepted send to the first user starts it over.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(USER, Some(USER))))
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, answer, _) = post(&app, &text()).await;
    assert_eq!(status, 200, "{answer}");
    Mock::given(method("POST"))
        .respond_with(meta_error(131056, 400))
        .expect(1)
        .mount(&app.graph)
        .await;
    let (status, _, headers) = post(&app, &text()).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "6");
}
