//! The edge: cross-site requests and DNS rebinding refused, upload budgets, per-class capacity,
//! connection timeouts and caps, HTTP/2 off by default, request ids, 405 bodies, the opt-in
//! unicode signature fallback. Over real HTTP (and raw TCP where a misbehaving client is needed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

/// A TCP connection to the app from the loopback address `127.0.0.<source>`.
pub async fn connect_from(source: u8, address: &str) -> TcpStream {
    let target: SocketAddr = address.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
            0,
        ))
        .unwrap();
    socket.connect(target).await.unwrap()
}

/// Starts a `POST path` whose body (of `declared` bytes) never comes.
async fn stalled_upload(source: u8, address: &str, path: &str, declared: usize) -> TcpStream {
    let mut stream = connect_from(source, address).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads what the server sends until it closes or `within` passes; `None` on timeout.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn cross_site_form_posts_are_refused_with_415_and_nothing_is_sent() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []})))
        .expect(0)
        .mount(&app.graph)
        .await;
    let body = r#"{"number":"919216598210","text":"from a web page"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=----x"),
    ] {
        for endpoint in ["/send", "/get"] {
            let mut request = app.http.post(app.url(endpoint)).body(body);
            if let Some(t) = content_type {
                request = request.header("content-type", t);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 415, "{endpoint} {content_type:?}");
            let detail: Value = response.json().await.unwrap();
            assert!(
                detail["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Content-Type must be application/json"),
                "{detail}"
            );
        }
    }
    // Real API clients send the JSON type and keep working.
    let ok = app
        .post_get(json!({"number": "919216598210", "limit": 0}))
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_rebinding_host_is_refused_without_api_key_but_webhooks_are_not_host_checked() {
    let app = spawn_app(Backend::Embedded).await;
    let get = |host: &'static str| {
        app.http
            .post(app.url("/get"))
            .header("host", host)
            .header("content-type", "application/json")
            .body(r#"{"number":"919216598210"}"#)
            .send()
    };
    let refused = get("attacker.example:8000").await.unwrap();
    assert_eq!(refused.status(), 403);
    let detail = refused.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("ALLOWED_HOSTS") && detail.contains("API_KEY"),
        "{detail}"
    );
    for host in ["localhost:8000", "127.0.0.1", "[::1]:8000"] {
        assert_eq!(get(host).await.unwrap().status(), 200, "{host}");
    }
    for endpoint in ["/send", "/metrics"] {
        let status = app
            .http
            .request(
                if endpoint == "/send" {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::GET
                },
                app.url(endpoint),
            )
            .header("host", "attacker.example")
            .header("content-type", "application/json")
            .body(r#"{"number":"919216598210","text":"x"}"#)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{endpoint}");
    }
    // Meta comes through a tunnel's host name: never Host-checked.
    let body = webhook_with(vec![text_message("wamid.HOST1", "919216598210", "hi")]);
    let response = app
        .http
        .post(app.url("/webhook"))
        .header("host", "abc123.ngrok.io")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.ids_of("919216598210").await, ["wamid.HOST1"]);
}

#[tokio::test]
async fn allowed_hosts_and_api_key_let_other_host_names_through() {
    let tunnel = spawn_app_with(Backend::Embedded, |v| {
        v.insert("ALLOWED_HOSTS".into(), "abc123.ngrok.io".into());
    })
    .await;
    let call = |app: &TestApp, host: &'static str, key: Option<&'static str>| {
        let mut request = app
            .http
            .post(app.url("/get"))
            .header("host", host)
            .header("content-type", "application/json")
            .body(r#"{"number":"919216598210"}"#);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(
        call(&tunnel, "abc123.ngrok.io", None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(&tunnel, "localhost", None).await.unwrap().status(),
        403
    );

    let keyed = spawn_app_with(Backend::Embedded, |v| {
        v.insert("API_KEY".into(), "k-edge".into());
    })
    .await;
    assert_eq!(
        call(&keyed, "anything.example", Some("k-edge"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(&keyed, "anything.example", None)
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn long_or_unsafe_request_ids_are_replaced_safe_ones_echoed() {
    let app = spawn_app(Backend::Embedded).await;
    let echo = |id: String| {
        let request = app.http.get(app.url("/healthz")).header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(echo("client-id-42".into()).await, "client-id-42");
    let long = "a".repeat(1000);
    let replaced = echo(long).await;
    assert!(replaced.len() <= 64, "{}", replaced.len());
    // 60 KB of headers do not even fit the connection's read buffer: refused before routing.
    let huge = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "a".repeat(60 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 431);
    let replaced = echo("<script>alert(1)</script>".into()).await;
    assert!(!replaced.contains('<'), "{replaced}");
}

#[tokio::test]
async fn wrong_methods_get_405_with_a_json_detail() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.http.get(app.url("/send")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"detail": "Method Not Allowed"})
    );
}

#[tokio::test]
async fn the_unicode_signature_fallback_is_opt_in() {
    let wire = webhook_with(vec![text_message("wamid.UNI1", "919216598210", "café")])
        .replace("café", "caf\\u00e9");
    let decoded = wire.replace("caf\\u00e9", "café");
    let signature = sign(wire.as_bytes());
    let strict = spawn_app(Backend::Embedded).await;
    let refused = strict
        .post_webhook_raw(decoded.clone().into_bytes(), Some(&signature))
        .await;
    assert_eq!(refused.status(), 401);
    assert_eq!(strict.ids_of("919216598210").await, Vec::<String>::new());

    let lenient = spawn_app_with(Backend::Embedded, |v| {
        v.insert("SIGNATURE_UNICODE_FALLBACK".into(), "true".into());
    })
    .await;
    let accepted = lenient
        .post_webhook_raw(decoded.into_bytes(), Some(&signature))
        .await;
    assert_eq!(accepted.status(), 200);
    assert_eq!(lenient.ids_of("919216598210").await, ["wamid.UNI1"]);
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_cut_off_after_the_grace() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("BODY_TIMEOUT_SECS".into(), "30".into());
    })
    .await;
    let mut stream = stalled_upload(1, &app.address, "/webhook", 100_000).await;
    let started = Instant::now();
    // 200 bytes a second: far below 1 KB/s.
    let mut closed = None;
    for _ in 0..20 {
        if stream.write_all(&[b' '; 100]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
        {
            closed = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    let elapsed = started.elapsed();
    let response = closed.expect("the server answered");
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}, expected just past the 2 s grace (not the 30 s deadline)"
    );
}

#[tokio::test]
async fn stalled_uploads_hold_no_processing_slot() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("CONCURRENCY_LIMIT".into(), "2".into());
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(stalled_upload(2, &app.address, "/webhook", 100).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        let body = webhook_with(vec![text_message(
            &format!("wamid.SLOT{i}"),
            "919216598210",
            "hi",
        )]);
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    assert_eq!(app.get_status("/healthz").await, 200);
    drop(stalled);
}

#[tokio::test]
async fn uploads_per_client_address_are_capped_others_are_not_affected() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("MAX_UPLOADS_PER_CLIENT".into(), "3".into());
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stalled_upload(2, &app.address, "/webhook", 100).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = stalled_upload(2, &app.address, "/webhook", 100).await;
    let response = read_until_closed(&mut fourth, Duration::from_secs(1))
        .await
        .expect("refused at once");
    assert_eq!(status_of(&response), 503, "{response}");
    assert!(response.contains("MAX_UPLOADS_PER_CLIENT"), "{response}");
    // Another address (Meta's) is unaffected.
    let body = webhook_with(vec![text_message("wamid.PC1", "919216598210", "hi")]);
    let mut stream = connect_from(3, &app.address).await;
    let request = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sign(body.as_bytes()),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status_of(&response), 200, "{response}");
    drop(held);
}

#[tokio::test]
async fn uploads_past_the_memory_budget_get_503_at_once() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("MAX_BODY_BYTES".into(), "65536".into());
        v.insert("UPLOAD_MEMORY_BYTES".into(), "65536".into());
        v.insert("BODY_TIMEOUT_SECS".into(), "3".into());
    })
    .await;
    // One upload sends 60 KB of its 64 KB and stops: it holds most of the budget.
    let mut hog = stalled_upload(2, &app.address, "/webhook", 65_000).await;
    hog.write_all(&vec![b' '; 60_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = webhook_with(vec![text_message(
        "wamid.MEM1",
        "919216598210",
        &"x".repeat(8_000),
    )]);
    let started = Instant::now();
    let refused = app.post_webhook(&body).await;
    assert_eq!(refused.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("UPLOAD_MEMORY_BYTES"),
        "names the budget"
    );
    // The hog is cut off by the whole-body deadline (its average rate is high); the budget is
    // free again.
    let response = read_until_closed(&mut hog, Duration::from_secs(8))
        .await
        .unwrap();
    assert_eq!(status_of(&response), 408, "{response}");
    assert_eq!(app.post_webhook(&body).await.status(), 200);
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_upload_memory() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("MAX_BODY_BYTES".into(), "65536".into());
        v.insert("UPLOAD_MEMORY_BYTES".into(), "262144".into());
        v.insert("BODY_TIMEOUT_SECS".into(), "3".into());
    })
    .await;
    // The share is max(256 KiB / 4, 64 KiB) = 64 KiB: one 60 KB upload from 127.0.0.2 fills it.
    let mut hog = stalled_upload(2, &app.address, "/webhook", 65_000).await;
    hog.write_all(&vec![b' '; 60_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = stalled_upload(2, &app.address, "/webhook", 20_000).await;
    // Half the body: the connection is closed after the answer (a complete body would keep it).
    let _ = second.write_all(&vec![b' '; 10_000]).await;
    let response = read_until_closed(&mut second, Duration::from_secs(2))
        .await
        .expect("refused at once");
    assert_eq!(status_of(&response), 503, "{response}");
    assert!(response.contains("your address"), "{response}");
    // Another address still has the rest of the budget.
    let body = webhook_with(vec![text_message(
        "wamid.SHARE1",
        "919216598210",
        &"x".repeat(8_000),
    )]);
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    drop(hog);
}

#[tokio::test]
async fn slow_client_calls_do_not_take_the_webhooks_capacity() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("CLIENT_CONCURRENCY_LIMIT".into(), "2".into());
        v.insert("GRAPH_TIMEOUT_SECS".into(), "10".into());
    })
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messages": [{"id": "wamid.OUT"}]}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&app.graph)
        .await;
    let sends: Vec<_> = (0..2)
        .map(|_| {
            let request = app
                .http
                .post(app.url("/send"))
                .json(&json!({"number": "919216598210", "text": "slow"}));
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = app
        .post_send(json!({"number": "919216598210", "text": "third"}))
        .await;
    assert_eq!(third.status(), 503);
    assert!(
        third
            .text()
            .await
            .unwrap()
            .contains("CLIENT_CONCURRENCY_LIMIT")
    );
    let started = Instant::now();
    let body = webhook_with(vec![text_message("wamid.CAP1", "919216598210", "hi")]);
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(app.get_status("/readyz").await, 200);
    for send in sends {
        assert_eq!(send.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn unfinished_headers_and_idle_keep_alive_connections_are_closed() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("HEADER_READ_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let mut slow = connect_from(1, &app.address).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(4))
            .await
            .is_some(),
        "slow header connection closed"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut idle = connect_from(1, &app.address).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(4))
            .await
            .is_some(),
        "idle keep-alive connection closed"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let app = spawn_app_with(Backend::Embedded, |v| {
        v.insert("MAX_CONNECTIONS".into(), "16".into());
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..16 {
        let mut c = connect_from(1, &app.address).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(c.read(&mut buf).await.unwrap() > 0);
        open.push(c);
    }
    let mut extra = connect_from(1, &app.address).await;
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut extra, Duration::from_secs(2))
        .await
        .expect("closed at once");
    assert_eq!(answer, "", "closed without an answer");
    open.truncate(8);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.get_status("/healthz").await, 200);
}

#[tokio::test]
async fn http2_cleartext_is_off_by_default() {
    let app = spawn_app(Backend::Embedded).await;
    let mut stream = connect_from(1, &app.address).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(3))
        .await
        .expect("closed");
    // hyper's HTTP/1 server refuses the preface (505 or a plain close), never an h2 SETTINGS frame.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 "),
        "{answer:?}"
    );

    let h2 = spawn_app_with(Backend::Embedded, |v| {
        v.insert("HTTP2".into(), "true".into());
        v.insert("HTTP2_MAX_STREAMS".into(), "7".into());
    })
    .await;
    let mut stream = connect_from(1, &h2.address).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        n >= 9 && buf[3] == 0x04,
        "an h2 SETTINGS frame: {:?}",
        &buf[..n]
    );
    // Its entries are 6 bytes (id, value); SETTINGS_MAX_CONCURRENT_STREAMS (0x3) is the cap.
    let length = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
    let entries = &buf[9..(9 + length).min(n)];
    let max_streams = entries
        .chunks_exact(6)
        .find(|e| e[0..2] == [0, 3])
        .map(|e| u32::from_be_bytes([e[2], e[3], e[4], e[5]]));
    assert_eq!(max_streams, Some(7), "HTTP2_MAX_STREAMS is advertised");
}

/// While API_KEY is unset, every state-changing client route refuses a request that does not
/// declare JSON (an HTML form on another site cannot), bodiless ones included, before it does
/// anything: no read receipt, typing indicator or media deletion reaches Meta.
#[tokio::test]
async fn every_state_changing_client_route_refuses_a_form_without_json_while_api_key_is_unset() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(0)
        .mount(&app.graph)
        .await;
    for (verb, path) in [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/wamid.A/read"),
        ("POST", "/v1/conversations/15551234567/typing"),
        ("POST", "/v1/conversations/15551234567/read"),
        ("DELETE", "/v1/conversations/15551234567"),
        ("DELETE", "/v1/media/1479537139650973"),
    ] {
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let response = app
            .http
            .request(method, app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=b")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{verb} {path}");
    }
}
