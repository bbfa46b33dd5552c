//! 3. SIGTERM with 500 requests in flight: every accepted request completes, new connections are
//!    refused, the process exits within 10 s. (Same count in CI and full runs.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::Gateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_completes_500_in_flight_requests_and_refuses_new_ones() {
    let _serial = crate::serial().await;
    const IN_FLIGHT: usize = 500;
    let graph = crate::slow_graph(Duration::from_secs(2)).await;
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        // 500 sends at once: above the default client limit (256), which is not under test.
        &crate::sending_env(data.path(), &graph, &[("CLIENT_CONCURRENCY_LIMIT", "1024")]),
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
