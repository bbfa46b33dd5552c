//! 6. Slow clients (headers, then 1 byte per second) are cut off (408, by the minimum upload rate
//!    or BODY_TIMEOUT_SECS), or refused at once (503) past MAX_UPLOADS_PER_CLIENT (128: they all
//!    come from 127.0.0.1), while healthy webhooks keep p99 under 200 ms. Full: 200 slow
//!    connections; CI: 50.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::Gateway;
use crate::sim::{Delivery, MetaSimulator};
use crate::{gateway_env, scaled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_off_and_healthy_traffic_stays_fast() {
    let _serial = crate::serial().await;
    let slow_count = scaled(200, 50);
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("BODY_TIMEOUT_SECS", "2"),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let port = gateway.port;

    let slow: Vec<_> = (0..slow_count)
        .map(|_| {
            tokio::spawn(async move {
                let began = Instant::now();
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let head = format!("POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
                stream.write_all(head.as_bytes()).await.unwrap();
                let mut response = Vec::new();
                // Trickle one byte a second until the server answers or closes (bounded at 15 s).
                for _ in 0..15 {
                    if stream.write_all(b"{").await.is_err() {
                        break;
                    }
                    let mut buf = [0u8; 512];
                    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => {
                            response.extend_from_slice(&buf[..n]);
                            break;
                        }
                        Err(_) => {}
                    }
                }
                (began.elapsed(), String::from_utf8_lossy(&response).into_owned())
            })
        })
        .collect();

    // Healthy traffic while the slow connections hang on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sim = MetaSimulator::new(&gateway.url("")).without_retries();
    let mut latencies = Vec::new();
    for i in 0..scaled(400, 150) {
        let delivery = Delivery::new(format!("wamid.healthy.{i}"), "15550000001".into());
        let began = Instant::now();
        assert_eq!(sim.post(&delivery.body).await, Ok(200));
        latencies.push(began.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];

    let mut cut_off_after = Vec::new();
    let mut refused = 0;
    for s in slow {
        let (elapsed, response) = s.await.unwrap();
        if response.starts_with("HTTP/1.1 503") {
            assert!(
                response.contains("MAX_UPLOADS_PER_CLIENT"),
                "unexpected 503 {response:?}"
            );
            refused += 1;
        } else {
            assert!(
                response.is_empty() || response.starts_with("HTTP/1.1 408"),
                "unexpected answer {response:?}"
            );
        }
        cut_off_after.push(elapsed);
    }
    let slowest_cut = cut_off_after.iter().max().unwrap();
    println!(
        "slow clients: {slow_count} ({refused} refused at once over the per-address upload limit) cut off within {slowest_cut:?}; healthy p99 {p99:?}"
    );
    assert!(
        refused <= slow_count.saturating_sub(128),
        "only the excess over MAX_UPLOADS_PER_CLIENT is refused"
    );
    assert!(
        *slowest_cut < Duration::from_secs(6),
        "slow clients held for {slowest_cut:?}"
    );
    assert!(p99 < Duration::from_millis(200), "healthy p99 {p99:?}");
}
