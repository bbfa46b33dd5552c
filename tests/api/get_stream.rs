//! Large `/get` answers are streamed page by page and are identical to what one read would have
//! returned: same shape (`count` first), same items, oldest first, same `limit` semantics.

use serde_json::{Value, json};

use crate::helpers::*;

const A: &str = "919216598210";
const ITEMS: usize = 5000;

/// Limits around the page size and the list length.
const LIMITS: [usize; 11] = [0, 1, 499, 500, 501, 1000, 1001, 3000, 4999, 5000, 10_000];

/// POST /get; returns whether the body was streamed (no content-length) and the raw text.
async fn get_raw(app: &TestApp, limit: usize) -> (bool, String) {
    let response = app.post_get(json!({"number": A, "limit": limit})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let streamed = response.headers().get("content-length").is_none();
    (streamed, response.text().await.unwrap())
}

/// What one unstreamed read returns for `limit` over `all` (oldest first).
fn expected(all: &[Value], limit: usize) -> Value {
    let start = if limit == 0 {
        0
    } else {
        all.len().saturating_sub(limit)
    };
    json!({"count": all.len() - start, "messages": all[start..]})
}

async fn check_every_limit(app: &TestApp, all: &[Value]) {
    for limit in LIMITS {
        let (streamed, text) = get_raw(app, limit).await;
        let want = expected(all, limit);
        let count = want["count"].as_u64().unwrap() as usize;
        assert!(
            text.starts_with(&format!(r#"{{"count":{count},"messages":["#)),
            "limit {limit}: {}",
            &text[..60.min(text.len())]
        );
        let got: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("limit {limit}: invalid JSON ({e})"));
        assert!(got == want, "limit {limit}: answer differs");
        assert_eq!(
            streamed,
            count > whatsapp_gateway::store::READ_PAGE,
            "limit {limit}: only answers over a page are streamed"
        );
    }
}

#[tokio::test]
async fn a_large_redis_list_is_streamed_identically() {
    let app = spawn_app(Backend::Redis).await;
    let mut items: Vec<String> = (0..ITEMS)
        .map(|i| json!({"id": format!("s{i}"), "from": A, "body": format!("t{i}")}).to_string())
        .collect();
    // A hand-written item that is not JSON is still answered as a JSON string, in place.
    items[2500] = "not json".to_owned();
    let redis = app.redis.as_ref().unwrap();
    let _: () = redis
        .query(
            redis::cmd("RPUSH")
                .arg("test:inbound:list:919216598210")
                .arg(&items),
        )
        .await;
    let all: Vec<Value> = items
        .iter()
        .map(|s| serde_json::from_str(s).unwrap_or_else(|_| json!("<invalid stored item>")))
        .collect();
    check_every_limit(&app, &all).await;
}

#[tokio::test]
async fn a_large_embedded_list_is_streamed_identically() {
    let app = spawn_app(Backend::Embedded).await;
    for batch in 0..ITEMS / 250 {
        let messages = numbered_messages("s", A, batch * 250, 250);
        assert_eq!(
            app.post_webhook(&webhook_with(messages)).await.status(),
            200
        );
    }
    // The unstreamed truth: every stored document, oldest first, read from the file.
    let db = app.database();
    let mut stmt = db
        .prepare("SELECT json FROM inbound_messages WHERE number = ?1 ORDER BY seq")
        .unwrap();
    let all: Vec<Value> = stmt
        .query_map([A], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|s| serde_json::from_str(&s.unwrap()).unwrap())
        .collect();
    assert_eq!(all.len(), ITEMS);
    assert_eq!(all[4999]["id"], "s4999");
    check_every_limit(&app, &all).await;
}
