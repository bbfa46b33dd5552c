//! Two instances on one Redis share each number's send rate (SEND_RATE_PER_SECOND, counted in
//! Redis). Both apps are the real router in this process with their own Graph API mock; only
//! Redis is common. Idempotency-Keys across instances: `send_v1`; events, outgoing deliveries
//! and storage across three processes through a kill: the fault suite's `multi_instance`.

use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::method;

use crate::helpers::*;
use crate::send_v1::send_with;

const USER: &str = "15551234567";

/// Two apps on one Redis (same key prefix), each with Meta accepting every send, configured
/// by `configure` too.
async fn two_instances(
    configure: fn(&mut std::collections::HashMap<String, String>),
) -> [TestApp; 2] {
    let first = spawn_app_on_redis(TestRedis::start(), configure).await;
    let second = spawn_instance_sharing_redis(&first, configure).await;
    for app in [&first, &second] {
        Mock::given(method("POST"))
            .respond_with(AcceptSends::default())
            .mount(&app.graph)
            .await;
    }
    [first, second]
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
        async move { send_with(app, None, &body).await }
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
