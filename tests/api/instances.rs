//! Two instances on one Redis share each number's send rate (SEND_RATE_PER_SECOND, counted in
//! Redis). Both apps are the real router in this process with their own Graph API mock; only
//! Redis is common. Idempotency-Keys across instances: `send_v1`; events, outgoing deliveries
//! and storage across three processes through a kill: the fault suite's `multi_instance`.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const USER: &str = "15551234567";

/// Meta accepting every send with a new message id.
struct NewIds(AtomicUsize);

impl wiremock::Respond for NewIds {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": USER, "wa_id": USER}],
            "messages": [{"id": format!("wamid.out.{n}")}]
        }))
    }
}

/// Two apps on one Redis (same key prefix), each with Meta accepting every send, configured
/// by `configure` too.
async fn two_instances(
    configure: fn(&mut std::collections::HashMap<String, String>),
) -> [TestApp; 2] {
    let first = spawn_app_on_redis(TestRedis::start(), configure).await;
    let url = first.redis.as_ref().unwrap().url();
    let second = spawn_app_with(Backend::Embedded, move |vars| {
        vars.insert("REDIS_URL".into(), url);
        vars.insert("REDIS_INBOUND_LIST".into(), "test:inbound:list".into());
        vars.insert("REDIS_KEY_PREFIX".into(), "test".into());
        configure(vars);
    })
    .await;
    for app in [&first, &second] {
        Mock::given(method("POST"))
            .respond_with(NewIds(AtomicUsize::new(0)))
            .mount(&app.graph)
            .await;
    }
    [first, second]
}

/// `POST /v1/messages`: status, JSON, headers.
async fn send(app: &TestApp, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = app
        .http
        .post(app.url("/v1/messages"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

/// One send a second per number, shared: six sends at once, three through each instance, are
/// paced as six through one (seconds 0-2 may wait for their slots, the rest are refused with
/// 429). With a window per instance, each would let its first two or three through.
#[tokio::test]
async fn instances_on_one_redis_share_a_numbers_send_rate() {
    let apps = two_instances(|vars| {
        vars.insert("SEND_RATE_PER_SECOND".into(), "1".into());
        vars.insert("GRAPH_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    let sends = (0..6).map(|i| {
        let app = &apps[i % 2];
        let body = json!({"to": USER, "type": "text", "text": {"body": format!("burst {i}")}, "outside_window": true});
        async move { send(app, &body).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted = answers.iter().filter(|(s, ..)| *s == 200).count();
    let refused = answers.iter().filter(|(s, ..)| *s == 429).count();
    assert_eq!(accepted + refused, 6, "{answers:?}");
    assert!((2..=3).contains(&accepted), "{answers:?}");
    let mut reached = 0;
    for app in &apps {
        reached += app.graph.received_requests().await.unwrap().len();
    }
    assert_eq!(reached, accepted, "only the accepted sends reached Meta");
}
