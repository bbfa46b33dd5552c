//! One user, one conversation, whichever of their identifiers Meta sends (`meta-formats.md` §12):
//! a phone number, a BSUID, or both. The conversation keeps the key it was created with; the
//! other identifiers are its aliases (`store::alias`). Both backends, through real webhooks.

use serde_json::json;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

use crate::contract_tests;
use crate::helpers::*;
use crate::send_v1::{downgrade_and_restart, send_with};

contract_tests!(
    a_user_seen_by_phone_keeps_the_conversation_when_only_the_bsuid_comes,
    a_user_first_seen_by_bsuid_keeps_the_conversation_when_the_phone_comes,
    one_delivery_naming_the_user_both_ways_keeps_one_conversation,
    a_restarted_gateway_finds_the_conversation_from_the_stored_aliases,
    a_parent_bsuid_names_the_conversation_first,
    the_user_s_other_identifier_finds_the_conversation,
    the_window_of_the_conversation_holds_for_the_user_s_phone,
    concurrent_webhooks_of_users_keyed_otherwise_are_all_stored,
    a_contact_with_a_conversation_of_its_own_is_its_own_key,
);

const PHONE: &str = "16505551234";
const BSUID: &str = "US.13491208655302741918";

/// A webhook with one message from a user named by `phone`, `bsuid`, or both (in `from`,
/// `from_user_id` and the contact card, as Meta sends them).
fn from_user(id: &str, ts: i64, phone: Option<&str>, bsuid: Option<&str>) -> String {
    let mut card = json!({ "profile": { "name": "Pablo M." } });
    let mut message = json!({ "id": id, "timestamp": ts.to_string(), "type": "text",
        "text": { "body": format!("message {id}") } });
    if let Some(phone) = phone {
        card["wa_id"] = json!(phone);
        message["from"] = json!(phone);
    }
    if let Some(bsuid) = bsuid {
        card["user_id"] = json!(bsuid);
        message["from_user_id"] = json!(bsuid);
    }
    webhook_of(vec![card], vec![message])
}

/// Every conversation's key and message count, by key.
async fn conversations(app: &TestApp) -> Vec<(String, i64)> {
    let page = app.get_json("/v1/conversations").await;
    let mut all: Vec<(String, i64)> = page["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of conversations: {page}"))
        .iter()
        .map(|c| {
            (
                c["contact"]["id"].as_str().unwrap().to_owned(),
                c["message_count"].as_i64().unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

/// The ids of a conversation's messages, oldest first.
async fn messages_in(app: &TestApp, contact: &str) -> Vec<String> {
    let page = app
        .get_json(&format!("/v1/conversations/{contact}/messages"))
        .await;
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of messages: {page}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn stored(app: &TestApp, body: &str) -> (i64, i64) {
    let ack = app.post_webhook_ok(body).await;
    (
        ack["stored"].as_i64().unwrap(),
        ack["duplicates"].as_i64().unwrap(),
    )
}

/// Delivers [`from_user`]'s message and asserts it is stored as a new one.
async fn new_message(app: &TestApp, id: &str, ts: i64, phone: Option<&str>, bsuid: Option<&str>) {
    let body = from_user(id, ts, phone, bsuid);
    assert_eq!(stored(app, &body).await, (1, 0), "{id}");
}

/// A username user who never talked to the business: `<prefix>1` at `t` without a phone, then
/// `<prefix>2` a second later with [`PHONE`] too (from then on Meta shares it).
async fn bsuid_then_phone(app: &TestApp, prefix: &str, t: i64) {
    new_message(app, &format!("{prefix}1"), t, None, Some(BSUID)).await;
    new_message(app, &format!("{prefix}2"), t + 1, Some(PHONE), Some(BSUID)).await;
}

async fn a_user_seen_by_phone_keeps_the_conversation_when_only_the_bsuid_comes(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 60;
    new_message(&app, "wamid.P1", t, Some(PHONE), Some(BSUID)).await;
    // Later Meta withholds the phone.
    new_message(&app, "wamid.P2", t + 1, None, Some(BSUID)).await;
    assert_eq!(conversations(&app).await, [(PHONE.to_owned(), 2)]);
    assert_eq!(messages_in(&app, PHONE).await, ["wamid.P1", "wamid.P2"]);
    // The FastAPI list of the number has both, as the original's readers expect.
    assert_eq!(app.ids_of(PHONE).await, ["wamid.P1", "wamid.P2"]);
    assert!(app.ids_of(BSUID).await.is_empty());
    let record = app.get_json("/v1/messages/wamid.P2").await;
    assert_eq!(record["contact"]["id"], PHONE);
    assert_eq!(record["contact"]["user_id"], BSUID);
    // A retry of the BSUID-only message is a duplicate of what was stored.
    assert_eq!(
        stored(&app, &from_user("wamid.P2", t + 1, None, Some(BSUID))).await,
        (0, 1)
    );
}

async fn a_user_first_seen_by_bsuid_keeps_the_conversation_when_the_phone_comes(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 60;
    bsuid_then_phone(&app, "wamid.B", t).await;
    new_message(&app, "wamid.B3", t + 2, Some(PHONE), Some(BSUID)).await;
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 3)]);
    assert_eq!(
        messages_in(&app, BSUID).await,
        ["wamid.B1", "wamid.B2", "wamid.B3"]
    );
    let conversation = conversation_in(&app.get_json("/v1/conversations").await, BSUID);
    assert_eq!(conversation["unread_count"], 3);
    assert_eq!(conversation["contact"]["wa_id"], PHONE);
    // The FastAPI lists: each message under the number it came with, as the original kept them.
    assert_eq!(app.ids_of(BSUID).await, ["wamid.B1"]);
    let listed = app.messages_of(PHONE).await;
    let froms: Vec<&str> = listed.iter().map(|m| m["from"].as_str().unwrap()).collect();
    assert_eq!(froms, [PHONE, PHONE]);
    // Retries are duplicates, whichever key they were stored under.
    assert_eq!(
        stored(
            &app,
            &from_user("wamid.B2", t + 1, Some(PHONE), Some(BSUID))
        )
        .await,
        (0, 1)
    );
    assert_eq!(
        stored(&app, &from_user("wamid.B1", t, None, Some(BSUID))).await,
        (0, 1)
    );
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 3)]);
}

async fn one_delivery_naming_the_user_both_ways_keeps_one_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 60;
    let body = webhook_of(
        vec![json!({ "profile": { "name": "Pablo M." }, "wa_id": PHONE, "user_id": BSUID })],
        vec![
            json!({ "from_user_id": BSUID, "id": "wamid.D1", "timestamp": t.to_string(),
                "type": "text", "text": { "body": "first, no phone" } }),
            json!({ "from": PHONE, "from_user_id": BSUID, "id": "wamid.D2",
                "timestamp": (t + 1).to_string(), "type": "text", "text": { "body": "second" } }),
        ],
    );
    assert_eq!(stored(&app, &body).await, (2, 0));
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 2)]);
    assert_eq!(messages_in(&app, BSUID).await, ["wamid.D1", "wamid.D2"]);
    // The retry of the whole delivery stores nothing again.
    assert_eq!(stored(&app, &body).await, (0, 2));
}

async fn a_restarted_gateway_finds_the_conversation_from_the_stored_aliases(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let t = now_secs() - 60;
    new_message(&app, "wamid.R1", t, None, Some(BSUID)).await;
    // A new process knows no key yet: the store's aliases move the message to its conversation.
    app.restart().await;
    new_message(&app, "wamid.R2", t + 1, Some(PHONE), Some(BSUID)).await;
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 2)]);
    app.restart().await;
    // A phone-only message (an older client of Meta's, a test tool) finds it through the
    // phone's alias.
    new_message(&app, "wamid.R3", t + 2, Some(PHONE), None).await;
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 3)]);
    assert_eq!(
        messages_in(&app, BSUID).await,
        ["wamid.R1", "wamid.R2", "wamid.R3"]
    );
}

async fn a_parent_bsuid_names_the_conversation_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 60;
    let parent = "US.ENT.11815799212886844830";
    let with_parent = |id: &str, ts: i64, bsuid: &str| {
        webhook_of(
            vec![
                json!({ "profile": { "name": "Pablo M." }, "user_id": bsuid, "parent_user_id": parent }),
            ],
            vec![
                json!({ "from_user_id": bsuid, "from_parent_user_id": parent, "id": id,
                "timestamp": ts.to_string(), "type": "text", "text": { "body": "hi" } }),
            ],
        )
    };
    assert_eq!(
        stored(&app, &with_parent("wamid.E1", t, BSUID)).await,
        (1, 0)
    );
    // A message naming the same parent with another BSUID (the parent is what Meta shares
    // across linked portfolios) goes to the parent's conversation.
    assert_eq!(
        stored(
            &app,
            &with_parent("wamid.E2", t + 1, "US.99990000111122223333")
        )
        .await,
        (1, 0)
    );
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 2)]);
}

/// A database of the previous release (schema 9: no aliases) gets its aliases from the stored
/// conversations when it is opened: a user whose conversation is keyed by their phone, and whose
/// messages carried their BSUID too, keeps it when a BSUID-only message comes after the upgrade.
#[tokio::test]
async fn an_upgraded_database_knows_the_aliases_of_its_conversations() {
    let mut app = spawn_app(Backend::Embedded).await;
    let t = now_secs() - 60;
    new_message(&app, "wamid.M1", t, Some(PHONE), Some(BSUID)).await;
    let other = "US.55550000111122223333";
    new_message(&app, "wamid.M2", t, None, Some(other)).await;
    downgrade_and_restart(
        &mut app,
        "DROP TABLE contact_aliases; PRAGMA user_version = 9;",
    )
    .await;
    let db = app.database();
    let aliases: Vec<(String, String)> = db
        .prepare("SELECT alias, contact FROM contact_aliases ORDER BY alias")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        aliases,
        [
            (BSUID.to_owned(), PHONE.to_owned()),
            (other.to_owned(), other.to_owned())
        ]
    );
    new_message(&app, "wamid.M3", t + 1, None, Some(BSUID)).await;
    new_message(&app, "wamid.M4", t + 1, Some("447700900123"), Some(other)).await;
    assert_eq!(
        conversations(&app).await,
        [(PHONE.to_owned(), 2), (other.to_owned(), 2)]
    );
}

/// A client that knows the user by their phone reads, answers, marks read and deletes the
/// conversation keyed by their BSUID; what it sends is filed there too.
async fn the_user_s_other_identifier_finds_the_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 60;
    bsuid_then_phone(&app, "wamid.O", t).await;
    assert_eq!(messages_in(&app, PHONE).await, ["wamid.O1", "wamid.O2"]);
    // A free-form answer to the phone is sent once, to the number the client named, and filed
    // in the conversation (its window is `the_window_of_the_conversation_holds_...`'s test).
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"to": PHONE, "type": "text"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": PHONE, "wa_id": PHONE }],
            "messages": [{ "id": "wamid.OUT1" }]
        })))
        .expect(1)
        .mount(&app.graph)
        .await;
    let text = json!({"to": PHONE, "type": "text", "text": {"body": "Yes, in blue."}});
    let (status, body, _) = send_with(&app, None, &text).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 3)]);
    assert_eq!(
        messages_in(&app, BSUID).await,
        ["wamid.O1", "wamid.O2", "wamid.OUT1"]
    );
    let (status, read) = post_read(&app, PHONE).await;
    assert_eq!(status, 200, "{read}");
    let conversation = conversation_in(&app.get_json("/v1/conversations").await, BSUID);
    assert_eq!(conversation["unread_count"], 0);
    assert_eq!(delete_conversation(&app, PHONE).await, 200);
    assert!(conversations(&app).await.is_empty());
}

/// The 24-hour window is the conversation's, whichever identifier the client sends to: a
/// free-form message to the phone of a user whose BSUID-keyed conversation's window closed is
/// refused before it reaches Meta.
async fn the_window_of_the_conversation_holds_for_the_user_s_phone(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 25 * 3600;
    bsuid_then_phone(&app, "wamid.W", t).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&app.graph)
        .await;
    let text = json!({"to": PHONE, "type": "text", "text": {"body": "Still there?"}});
    let (status, body, _) = send_with(&app, None, &text).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("window"), "{body}");
}

/// After a restart nothing is cached: many users' messages arriving at once are each moved by
/// the store to their BSUID conversation (on Redis, in shared script calls, where one user's
/// move sends the whole call back). Every webhook is stored, once, where it belongs.
async fn concurrent_webhooks_of_users_keyed_otherwise_are_all_stored(backend: Backend) {
    const USERS: usize = 24;
    let mut app = spawn_app(backend).await;
    let t = now_secs() - 60;
    let user = |i: usize| (format!("1650555{i:04}"), format!("US.4000000000{i:04}"));
    for i in 0..USERS {
        new_message(&app, &format!("wamid.C{i}a"), t, None, Some(&user(i).1)).await;
    }
    app.restart().await;
    let app = &app;
    let second = (0..USERS).map(|i| async move {
        let (phone, bsuid) = user(i);
        let body = from_user(&format!("wamid.C{i}b"), t + 1, Some(&phone), Some(&bsuid));
        app.post_webhook_ok(&body).await
    });
    for ack in futures_util::future::join_all(second).await {
        assert_eq!(ack["stored"], 1, "{ack}");
    }
    let expected: Vec<(String, i64)> = (0..USERS).map(|i| (user(i).1, 2)).collect();
    assert_eq!(conversations(app).await, expected);
}

/// Two conversations of one user stored before anything linked them (a phone-only one, a
/// BSUID-only one) are not merged: new messages go where the aliases say, and each stays
/// reachable by its own key.
async fn a_contact_with_a_conversation_of_its_own_is_its_own_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_secs() - 60;
    new_message(&app, "wamid.S1", t, Some(PHONE), None).await;
    new_message(&app, "wamid.S2", t + 1, None, Some(BSUID)).await;
    new_message(&app, "wamid.S3", t + 2, Some(PHONE), Some(BSUID)).await;
    assert_eq!(
        conversations(&app).await,
        [(PHONE.to_owned(), 1), (BSUID.to_owned(), 2)]
    );
    assert_eq!(messages_in(&app, PHONE).await, ["wamid.S1"]);
    assert_eq!(messages_in(&app, BSUID).await, ["wamid.S2", "wamid.S3"]);
    assert_eq!(delete_conversation(&app, PHONE).await, 200);
    assert_eq!(conversations(&app).await, [(BSUID.to_owned(), 2)]);
}
