//! 10. Attacks on the edge by a client with no credentials, each with a numeric pass criterion.
//!     Attackers connect from other loopback addresses (127.0.0.2 and up) than Meta's simulator
//!     (127.0.0.1), as they would from other machines. Full counts under `scripts/fault`.
//!
//! - stalled uploads + slow headers: 1,100 `POST /webhook` that never send their body and 1,100
//!   connections sending headers at 1 byte/s, reopened as soon as the server drops them, while
//!   signed webhooks all get 200 with p99 <= 200 ms, every `/healthz` is 200 and the accept
//!   queue never overflows;
//! - 1,000 unfinished 4 MB uploads: peak RSS < 160 MiB (UPLOAD_MEMORY_BYTES is 64 MiB), the
//!   excess refused with 503 within 1 s;
//! - idle keep-alive connections are closed after HEADER_READ_TIMEOUT_SECS;
//! - 1,024 slow `/send` calls do not starve webhooks (all 200, p99 <= 200 ms);
//! - shutdown lets an in-flight send finish past SHUTDOWN_GRACE_SECS, and closes idle
//!   connections at once;
//! - a wrong signature on a 4 MB non-ASCII body costs no more CPU than on an ASCII one (the
//!   unicode fallback is off by default).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::Gateway;
use crate::sim::{Delivery, MetaSimulator};
use crate::{gateway_env, peak_rss_kib, scaled};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(source: u8, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
        0,
    ))?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
}

fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// The kernel's count of connections dropped because a listener's accept queue was full
/// (`TcpExt: ListenOverflows` in /proc/net/netstat), system-wide.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").expect("reading /proc/net/netstat");
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let column = names
            .split_whitespace()
            .position(|name| name == "ListenOverflows")
            .expect("TcpExt has ListenOverflows");
        return values
            .split_whitespace()
            .nth(column)
            .unwrap()
            .parse()
            .unwrap();
    }
    panic!("no TcpExt line in /proc/net/netstat");
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// What attackers saw: connections opened, answers by status.
#[derive(Default)]
struct AttackTally {
    opened: AtomicUsize,
    answered_503: AtomicUsize,
    answered_408: AtomicUsize,
    closed_silently: AtomicUsize,
}

/// Keeps one stalled upload open from `source`, reopening it when the server drops it.
async fn stalled_uploader(port: u16, source: u8, stop: Arc<AtomicBool>, tally: Arc<AttackTally>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(source, port).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        let head = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 256];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Err(_) => continue,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    tally.closed_silently.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(n)) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.starts_with("HTTP/1.1 503") {
                        tally.answered_503.fetch_add(1, Ordering::Relaxed);
                    } else if text.starts_with("HTTP/1.1 408") {
                        tally.answered_408.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
        }
        // An attacker reopens at once; a tiny pause keeps refused sources from spinning.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps one connection sending its request head at 1 byte/s, reopening it when dropped.
async fn slow_header_sender(port: u16, source: u8, stop: Arc<AtomicBool>, tally: Arc<AttackTally>) {
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(source, port).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        for byte in head.iter() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if stream.write_all(&[*byte]).await.is_err() {
                tally.closed_silently.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await
            {
                tally.closed_silently.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_and_slow_headers_do_not_take_down_webhooks_or_health() {
    let _serial = crate::serial().await;
    raise_fd_limit();
    let attackers = scaled(1_100, 300);
    let window = Duration::from_secs(scaled(12, 5) as u64);
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[("DATA_DIR", data.path().to_str().unwrap())]),
        data.path(),
    );
    gateway.wait_ready().await;
    let port = gateway.port;
    let overflows_before = listen_overflows();

    let stop = Arc::new(AtomicBool::new(false));
    let uploads = Arc::new(AttackTally::default());
    let headers = Arc::new(AttackTally::default());
    let mut tasks = Vec::new();
    for _ in 0..attackers {
        tasks.push(tokio::spawn(stalled_uploader(
            port,
            2,
            stop.clone(),
            uploads.clone(),
        )));
        tasks.push(tokio::spawn(slow_header_sender(
            port,
            3,
            stop.clone(),
            headers.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let health = {
        let url = gateway.url("/healthz");
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        })
    };
    let sim = MetaSimulator::new(&gateway.url("")).without_retries();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let began = Instant::now();
    let mut i = 0;
    while began.elapsed() < window {
        let delivery = Delivery::new(format!("wamid.attack.{i}"), "15550000001".into());
        let started = Instant::now();
        match sim.post(&delivery.body).await {
            Ok(200) => latencies.push(started.elapsed()),
            other => failures.push(other),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (health_ok, health_failed) = health.await.unwrap();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    let overflows = listen_overflows() - overflows_before;
    latencies.sort();
    let p99 = percentile(&latencies, 99);
    println!(
        "edge attack: {attackers} stalled uploads ({} opened, {} refused 503, {} cut 408) + {attackers} slow-header connections ({} opened, {} closed); {} webhooks 200, {} failed, p50 {:?} p99 {p99:?}; /healthz {health_ok} ok, {health_failed} failed; {overflows} accept-queue overflows",
        uploads.opened.load(Ordering::Relaxed),
        uploads.answered_503.load(Ordering::Relaxed),
        uploads.answered_408.load(Ordering::Relaxed),
        headers.opened.load(Ordering::Relaxed),
        headers.closed_silently.load(Ordering::Relaxed),
        latencies.len(),
        failures.len(),
        percentile(&latencies, 50),
    );
    assert!(failures.is_empty(), "webhooks failed: {failures:?}");
    // A full accept queue drops every client's handshake, Meta's too, each then waiting out a 1 s
    // SYN retransmit: with std's 128-deep backlog this attack overflowed it (webhook p99 1.05 s).
    assert_eq!(
        overflows, 0,
        "the gateway's accept queue overflowed under {attackers}+{attackers} attack connections"
    );
    assert!(latencies.len() >= 20, "too few webhooks measured");
    // The criterion (p99 <= 200 ms) is judged at full counts on the release build
    // (`scripts/fault`). The reduced run is CI's debug build, whose p99 under the same attack
    // swings between about 120 and 300 ms from run to run on a 2-core machine (measured on this
    // and the previous release alike), so it gets twice the budget: it still fails if the
    // attack takes webhooks down.
    let p99_limit = Duration::from_millis(scaled(200, 400) as u64);
    assert!(p99 <= p99_limit, "webhook p99 {p99:?} over {p99_limit:?}");
    assert_eq!(health_failed, 0, "/healthz failed during the attack");
    assert!(health_ok >= 10);
    assert!(
        uploads.answered_503.load(Ordering::Relaxed) + uploads.answered_408.load(Ordering::Relaxed)
            > 0,
        "the stalled uploads were refused or cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_unfinished_4mb_uploads() {
    let _serial = crate::serial().await;
    raise_fd_limit();
    let uploads = scaled(1_000, 200);
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("BODY_TIMEOUT_SECS", "10"),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let port = gateway.port;
    let refused_fast = Arc::new(AtomicUsize::new(0));
    let refused_slow = Arc::new(AtomicUsize::new(0));
    let chunk = vec![b' '; 64 * 1024];
    let chunk: Arc<[u8]> = chunk.into();
    let tasks: Vec<_> = (0..uploads)
        .map(|i| {
            // 125 per address, under MAX_UPLOADS_PER_CLIENT (128): memory is the binding budget.
            let source = 10 + (i / 125) as u8;
            let (refused_fast, refused_slow, chunk) =
                (refused_fast.clone(), refused_slow.clone(), chunk.clone());
            tokio::spawn(async move {
                let Ok(stream) = connect_from(source, port).await else {
                    return;
                };
                let began = Instant::now();
                let (mut reader, mut writer) = stream.into_split();
                // The answer is read while the body is being written: a refusal arrives while the
                // client is still sending.
                let answer = tokio::spawn(async move {
                    let mut buf = [0u8; 512];
                    match tokio::time::timeout(Duration::from_secs(14), reader.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => Some((
                            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503"),
                            began.elapsed(),
                        )),
                        _ => None,
                    }
                });
                let head = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n";
                if writer.write_all(head.as_bytes()).await.is_ok() {
                    // Send 3.9 MB of the 4 MB, then stall.
                    let mut sent = 0;
                    while sent < 3_900_000 && !answer.is_finished() {
                        let n = chunk.len().min(3_900_000 - sent);
                        match tokio::time::timeout(Duration::from_secs(2), writer.write_all(&chunk[..n]))
                            .await
                        {
                            Ok(Ok(())) => sent += n,
                            _ => break,
                        }
                    }
                }
                match answer.await.unwrap() {
                    Some((true, took)) if took < Duration::from_secs(1) => {
                        refused_fast.fetch_add(1, Ordering::Relaxed);
                    }
                    Some((true, _)) => {
                        refused_slow.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                drop(writer);
            })
        })
        .collect();
    let pid = gateway.child.id();
    let mut health_failed = 0;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for task in tasks {
        while !task.is_finished() {
            if !matches!(client.get(gateway.url("/healthz")).send().await, Ok(r) if r.status() == 200)
            {
                health_failed += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        task.await.unwrap();
    }
    let rss_mib = peak_rss_kib(pid) as f64 / 1024.0;
    let fast = refused_fast.load(Ordering::Relaxed);
    println!(
        "4 MB uploads: {uploads} unfinished, {fast} refused with 503 within 1 s, {} refused later; peak RSS {rss_mib:.1} MiB; /healthz failures {health_failed}",
        refused_slow.load(Ordering::Relaxed)
    );
    assert!(rss_mib < 160.0, "peak RSS {rss_mib:.1} MiB");
    assert!(
        fast >= uploads / 2,
        "most uploads past the budget are refused fast ({fast})"
    );
    assert_eq!(health_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let _serial = crate::serial().await;
    raise_fd_limit();
    let count = scaled(1_100, 200);
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("HEADER_READ_TIMEOUT_SECS", "2"),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let mut idle = Vec::new();
    for _ in 0..count {
        let mut stream = connect_from(4, gateway.port).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(stream.read(&mut buf).await.unwrap() > 0);
        idle.push(stream);
    }
    let began = Instant::now();
    let mut closed_after = Vec::new();
    for mut stream in idle {
        let mut buf = [0u8; 64];
        let result = tokio::time::timeout_at(
            tokio::time::Instant::from_std(began + Duration::from_secs(5)),
            stream.read(&mut buf),
        )
        .await;
        assert!(
            matches!(result, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection is still open after 5 s"
        );
        closed_after.push(began.elapsed());
    }
    let last = closed_after.iter().max().unwrap();
    println!("idle: {count} keep-alive connections all closed within {last:?} (timeout 2 s)");
    assert!(*last < Duration::from_millis(3_500));
    assert_eq!(
        reqwest::get(gateway.url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sends_do_not_starve_webhooks() {
    let _serial = crate::serial().await;
    raise_fd_limit();
    let sends = scaled(1_024, 300);
    let graph = crate::slow_graph(Duration::from_secs(5)).await;
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(&crate::sending_env(data.path(), &graph, &[]), data.path());
    gateway.wait_ready().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let calls: Vec<_> = (0..sends)
        .map(|i| {
            let request = client
                .post(gateway.url("/send"))
                .json(&json!({"number": "919216598210", "text": format!("m{i}")}));
            tokio::spawn(async move {
                let began = Instant::now();
                let status = request.send().await.map(|r| r.status().as_u16());
                (status, began.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sim = MetaSimulator::new(&gateway.url("")).without_retries();
    let mut latencies = Vec::new();
    for i in 0..scaled(300, 100) {
        let delivery = Delivery::new(format!("wamid.starve.{i}"), "15550000002".into());
        let began = Instant::now();
        assert_eq!(sim.post(&delivery.body).await, Ok(200), "webhook {i}");
        latencies.push(began.elapsed());
    }
    let (mut ok, mut shed, mut shed_slowest) = (0, 0, Duration::ZERO);
    for call in calls {
        match call.await.unwrap() {
            (Ok(200), _) => ok += 1,
            (Ok(503), took) => {
                shed += 1;
                shed_slowest = shed_slowest.max(took);
            }
            other => panic!("unexpected send outcome {other:?}"),
        }
    }
    latencies.sort();
    let p99 = percentile(&latencies, 99);
    println!(
        "slow sends: {sends} concurrent, {ok} sent, {shed} shed (slowest {shed_slowest:?}); webhooks p99 {p99:?}"
    );
    // The criterion (p99 <= 200 ms) is judged at full counts on the release build
    // (`scripts/fault`). The reduced run is CI's debug build, whose p99 under the same attack
    // swings between about 120 and 300 ms from run to run on a 2-core machine (measured on this
    // and the previous release alike), so it gets twice the budget: it still fails if the
    // attack takes webhooks down.
    let p99_limit = Duration::from_millis(scaled(200, 400) as u64);
    assert!(p99 <= p99_limit, "webhook p99 {p99:?} over {p99_limit:?}");
    assert!(
        ok <= 256,
        "CLIENT_CONCURRENCY_LIMIT bounds the sends in flight"
    );
    assert_eq!(ok + shed, sends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_sends_finish_and_closes_idle_connections_at_once() {
    let _serial = crate::serial().await;
    let graph = crate::slow_graph(Duration::from_secs(3)).await;
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &crate::sending_env(
            data.path(),
            &graph,
            &[("SHUTDOWN_GRACE_SECS", "1"), ("GRAPH_TIMEOUT_SECS", "6")],
        ),
        data.path(),
    );
    gateway.wait_ready().await;
    let send = reqwest::Client::new()
        .post(gateway.url("/send"))
        .json(&json!({"number": "919216598210", "text": "in flight at SIGTERM"}))
        .timeout(Duration::from_secs(10))
        .send();
    let send = tokio::spawn(send);
    let deadline = Instant::now() + Duration::from_secs(5);
    while graph.received_requests().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the send never reached Graph");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    gateway.signal("TERM");
    let status = send.await.unwrap().expect("answered").status();
    let answered_after = signalled.elapsed();
    let exit = gateway.wait_exit(Duration::from_secs(8)).await;
    println!("shutdown: send answered {status} {answered_after:?} after SIGTERM (grace 1 s)");
    assert_eq!(status, 200, "the send in flight finished");
    assert!(answered_after > Duration::from_secs(2));
    assert!(exit.success());

    // With only an idle keep-alive connection open, a long grace is not waited out.
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("SHUTDOWN_GRACE_SECS", "10"),
        ]),
        data.path(),
    );
    gateway.wait_ready().await;
    let mut idle = TcpStream::connect(("127.0.0.1", gateway.port))
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    let signalled = Instant::now();
    gateway.signal("TERM");
    gateway.wait_exit(Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    println!("shutdown with an idle connection: exit after {took:?} (grace 10 s)");
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
}

/// CPU time (user + system) of a process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signatures_on_non_ascii_bodies_cost_no_extra_cpu() {
    let _serial = crate::serial().await;
    let rounds = scaled(20, 8);
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &gateway_env(&[("DATA_DIR", data.path().to_str().unwrap())]),
        data.path(),
    );
    gateway.wait_ready().await;
    let pid = gateway.child.id();
    let client = reqwest::Client::new();
    let wrong = format!("sha256={}", "0".repeat(64));
    let ascii = format!("{{\"entry\":[],\"pad\":\"{}\"}}", "e".repeat(4_000_000));
    let non_ascii = format!("{{\"entry\":[],\"pad\":\"{}\"}}", "é".repeat(2_000_000));
    let cost = |body: String| {
        let client = client.clone();
        let url = gateway.url("/webhook");
        let wrong = wrong.clone();
        async move {
            let before = cpu_time(pid);
            for _ in 0..rounds {
                let status = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", &wrong)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 401);
            }
            cpu_time(pid) - before
        }
    };
    let ascii_cost = cost(ascii).await;
    let non_ascii_cost = cost(non_ascii).await;
    let ratio = non_ascii_cost.as_secs_f64() / ascii_cost.as_secs_f64().max(0.01);
    println!(
        "wrong signatures on 4 MB bodies: ASCII {:?}/request, non-ASCII {:?}/request (ratio {ratio:.2})",
        ascii_cost / rounds as u32,
        non_ascii_cost / rounds as u32
    );
    assert!(ratio < 1.5, "non-ASCII costs {ratio:.2}x ASCII");
}
