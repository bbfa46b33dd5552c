//! 3. SIGTERM with 500 requests in flight: every accepted request completes, new connections are
//!    refused, the process exits within 10 s. (Same count in CI and full runs.)

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::gateway_env;
use crate::helpers::{ACCESS_TOKEN, Gateway, PHONE_NUMBER_ID};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_completes_500_in_flight_requests_and_refuses_new_ones() {
    let _serial = crate::serial().await;
    const IN_FLIGHT: usize = 500;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messages": [{"id": "wamid.x"}]}))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&graph)
        .await;
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("ACCESS_TOKEN", ACCESS_TOKEN),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
            ("GRAPH_API_BASE", &graph.uri()),
            // 500 sends at once: above the default client limit (256), which is not under test.
            ("CLIENT_CONCURRENCY_LIMIT", "1024"),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let request = client
                .post(gateway.url("/send"))
                .json(&json!({"number": "919216598210", "text": format!("m{i}")}));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Wait until every request has reached the (slow) Graph API: all 500 are in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while graph.received_requests().await.unwrap().len() < IN_FLIGHT {
        assert!(Instant::now() < deadline, "requests did not all arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    gateway.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new()
        .get(gateway.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        fresh.is_err(),
        "a new connection after SIGTERM must be refused"
    );

    let mut ok = 0;
    for request in requests {
        if matches!(request.await.unwrap(), Ok(200)) {
            ok += 1;
        }
    }
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    println!(
        "sigterm: {ok}/{IN_FLIGHT} completed with 200, exit {status} after {:?}",
        signalled.elapsed()
    );
    assert_eq!(ok, IN_FLIGHT);
    assert!(status.success());
    assert!(signalled.elapsed() < Duration::from_secs(10));
}
