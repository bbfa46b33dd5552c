//! The web inbox: its sign-in over HTTP (cookie, CSRF, limits, headers), then the whole page in
//! a real headless Chromium driven through chromedriver (WebDriver, `fantoccini`): sign in, the
//! conversation list, a message arriving live, opening it (unread clears, Meta gets the read
//! receipt), a reply (the Graph mock sees Meta's exact body), ticks following status webhooks, a
//! failure with Meta's reason, the template picker on a closed window, a reload after missed
//! events, and a restart that ends the session (signed in again, a message stored while the page
//! reads the state again still arrives); then, in a second test, the page's other promises: its
//! weight and its first render (written to `target/inbox-screenshots/timings.json`, not
//! asserted), older messages on scrolling up, the typing indicator once per 20 s, a reply's
//! context and quote, an attachment uploaded then sent, and a stream that goes down and resumes
//! from the last event id; in a third test, a tab cut off for lag resumes after its last event
//! and shows what it missed. Screenshots of each screen go to `target/inbox-screenshots/`. Over
//! HTTP: wrong keys limited per client address, and the assets' ETag.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::contract_tests;
use crate::helpers::*;

const KEY: &str = "inbox-test-key";
const KERRY: &str = "919216598210";
const ANA: &str = "5511988887777";
const OLD: &str = "447700900123";
const WABA: &str = "102290129340398";

contract_tests!(
    the_inbox_works_end_to_end_in_a_real_browser,
    a_tab_that_falls_behind_resumes_after_its_last_event
);

/// A notification with one text message from `from` (profile `name`) at `ts`.
fn inbound(id: &str, from: &str, name: &str, ts: i64, body: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": name}, "wa_id": from}],
        "messages": [{"from": from, "id": id, "timestamp": ts.to_string(), "type": "text", "text": {"body": body}}]
    }}]}]})
    .to_string()
}

/// A notification with one status of our message `id` to `to`.
fn status(id: &str, to: &str, status: &str, ts: i64, errors: Option<Value>) -> String {
    let mut item =
        json!({"id": id, "status": status, "timestamp": ts.to_string(), "recipient_id": to});
    if let Some(errors) = errors {
        item["errors"] = errors;
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [item]
    }}]}]})
    .to_string()
}

// ---------- sign-in over HTTP ----------

async fn keyed_app() -> TestApp {
    spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("API_KEY".into(), KEY.into());
    })
    .await
}

async fn sign_in(app: &TestApp, key: &str) -> reqwest::Response {
    app.http
        .post(app.url("/inbox/session"))
        .header("content-type", "application/json")
        .body(json!({ "key": key }).to_string())
        .send()
        .await
        .unwrap()
}

/// The cookie pair (`wg_session=...`) and CSRF token of a successful sign-in.
async fn session_of(app: &TestApp) -> (String, String) {
    let response = sign_in(app, KEY).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (pair, body["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_that_works_as_the_key() {
    let app = keyed_app().await;
    // Not signed in: the page loads (it shows the sign-in form), the session and the API do not.
    let page = app.http.get(app.url("/inbox")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"signin-form\""));
    let session = app
        .http
        .get(app.url("/inbox/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 401);

    let response = sign_in(&app, KEY).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(KEY), "the key is not the cookie");
    assert!(
        !cookie.contains("Secure"),
        "plain http://127.0.0.1 would lose a Secure cookie"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["auth"], "session");
    assert_eq!(body["csrf"].as_str().unwrap().len(), 64);
    assert!(
        body["webhooks"].is_object(),
        "delivery health comes with it: {body}"
    );
    assert!(!body.to_string().contains(KEY));
    let pair = cookie.split(';').next().unwrap();

    // The cookie reads the API and the session.
    let list = app
        .http
        .get(app.url("/v1/conversations"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let again: Value = app
        .http
        .get(app.url("/inbox/session"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["csrf"], body["csrf"]);

    // Behind an HTTPS tunnel the cookie is Secure.
    let tunnelled = app
        .http
        .post(app.url("/inbox/session"))
        .header("content-type", "application/json")
        .header("x-forwarded-proto", "https")
        .body(json!({ "key": KEY }).to_string())
        .send()
        .await
        .unwrap();
    assert!(
        tunnelled.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn a_state_changing_request_by_cookie_needs_the_session_s_csrf_token() {
    let app = keyed_app().await;
    app.post_webhook_ok(&inbound("wamid.C1", KERRY, "Kerry", now_secs(), "hi"))
        .await;
    let (cookie, csrf) = session_of(&app).await;
    let read = |token: Option<&str>| {
        let mut request = app
            .http
            .post(app.url(&format!("/v1/conversations/{KERRY}/read")))
            .header("content-type", "application/json")
            .header("cookie", &cookie);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    let missing = read(None).await.unwrap();
    assert_eq!(missing.status(), 403);
    let detail: Value = missing.json().await.unwrap();
    assert!(detail["detail"].as_str().unwrap().contains("X-CSRF-Token"));
    assert_eq!(
        read(Some("0".repeat(64).as_str())).await.unwrap().status(),
        403
    );
    // Nothing changed by the refused calls.
    let (_, list) = get_json(&app, "/v1/conversations").await;
    assert_eq!(list["conversations"][0]["unread_count"], 1);
    assert_eq!(read(Some(&csrf)).await.unwrap().status(), 200);
    let (_, list) = get_json(&app, "/v1/conversations").await;
    assert_eq!(list["conversations"][0]["unread_count"], 0);
    // A key still works without any token (API clients are not browsers).
    let keyed = app
        .http
        .post(app.url(&format!("/v1/conversations/{KERRY}/read")))
        .header("content-type", "application/json")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
}

/// SameSite ignores ports: a page on another local port would send the cookie. Only the
/// gateway's own pages may use it, for reads, the event stream and the WebSocket alike.
#[tokio::test]
async fn the_session_cookie_is_refused_from_other_origins_the_websocket_included() {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let app = keyed_app().await;
    let (cookie, _) = session_of(&app).await;
    let read = |headers: &[(&str, &str)]| {
        let mut request = app
            .http
            .get(app.url("/v1/conversations"))
            .header("cookie", &cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let other_port = read(&[("origin", "http://127.0.0.1:3000")]).await.unwrap();
    assert_eq!(other_port.status(), 403);
    let detail: Value = other_port.json().await.unwrap();
    assert!(
        detail["detail"]
            .as_str()
            .unwrap()
            .contains("session cookie"),
        "{detail}"
    );
    let same_site = read(&[("sec-fetch-site", "same-site")]).await.unwrap();
    assert_eq!(same_site.status(), 403);
    let own = app.address.trim_start_matches("http://").to_owned();
    let own_page = read(&[
        ("origin", &format!("http://{own}")),
        ("sec-fetch-site", "same-origin"),
    ])
    .await
    .unwrap();
    assert_eq!(own_page.status(), 200);

    let ws = |origin: &str| {
        let mut request = format!("{}/v1/ws", app.address.replacen("http", "ws", 1))
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match ws("http://127.0.0.1:3000").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(ws(&format!("http://{own}")).await.is_ok());
}

/// GET with the key, for checks.
async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .http
        .get(app.url(path))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn wrong_keys_are_refused_then_limited_and_sign_out_revokes_the_session() {
    let app = keyed_app().await;
    let (cookie, csrf) = session_of(&app).await;
    for _ in 0..10 {
        let wrong = sign_in(&app, "guess").await;
        assert_eq!(wrong.status(), 401);
        assert!(wrong.headers().get("set-cookie").is_none());
    }
    let limited = sign_in(&app, KEY).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // An empty key names the field; a form post (what another site could send) is refused.
    let form = app
        .http
        .post(app.url("/inbox/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    // A missing, mistyped or empty key is a 422 naming `key`, and no cookie.
    for body in [json!({}), json!({"key": 1}), json!({"key": ""})] {
        let refused = app
            .http
            .post(app.url("/inbox/session"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422, "{body}");
        assert!(refused.headers().get("set-cookie").is_none());
        let detail: Value = refused.json().await.unwrap();
        assert_eq!(
            detail["detail"][0]["loc"],
            json!(["body", "key"]),
            "{body}: {detail}"
        );
    }

    // Sign-out needs the token, then the cookie no longer works.
    let sign_out = |token: &str| {
        app.http
            .delete(app.url("/inbox/session"))
            .header("cookie", &cookie)
            .header("x-csrf-token", token)
            .send()
    };
    assert_eq!(sign_out("nope").await.unwrap().status(), 403);
    let out = sign_out(&csrf).await.unwrap();
    assert_eq!(out.status(), 200);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = app
        .http
        .get(app.url("/v1/conversations"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

/// Wrong keys count per client address, sign-ins and API headers together: past ten in a minute
/// that address waits (429, its keys not checked, the right one included), while another
/// address (127.0.0.2 here) and a session signed in before still work.
#[tokio::test]
async fn wrong_keys_are_limited_per_client_address_at_sign_in_and_in_api_headers() {
    let app = keyed_app().await;
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let (cookie, _) = session_of(&app).await;
    let list = |client: &reqwest::Client, header: Option<(&'static str, String)>| {
        let mut request = client.get(app.url("/v1/conversations"));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    // Ten wrong keys from 127.0.0.1: sign-ins and both API headers, all counted together.
    for i in 0..10 {
        let status = match i % 3 {
            0 => sign_in(&app, "guess").await.status(),
            1 => list(&app.http, Some(("x-api-key", "guess".into())))
                .await
                .unwrap()
                .status(),
            _ => list(&app.http, Some(("authorization", "Bearer guess".into())))
                .await
                .unwrap()
                .status(),
        };
        assert_eq!(status, 401, "wrong key {i}");
    }
    // Now 127.0.0.1 waits, whatever key it presents and wherever.
    let retry_after = |response: &reqwest::Response| -> u64 {
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let blocked_sign_in = sign_in(&app, KEY).await;
    assert_eq!(blocked_sign_in.status(), 429);
    assert!((1..=60).contains(&retry_after(&blocked_sign_in)));
    assert!(blocked_sign_in.headers().get("set-cookie").is_none());
    for header in [
        ("x-api-key", KEY.to_owned()),
        ("authorization", format!("Bearer {KEY}")),
        ("x-api-key", "guess".to_owned()),
    ] {
        let blocked = list(&app.http, Some(header.clone())).await.unwrap();
        assert_eq!(blocked.status(), 429, "{header:?}");
        assert!((1..=60).contains(&retry_after(&blocked)), "{header:?}");
        let detail: Value = blocked.json().await.unwrap();
        assert!(
            detail["detail"].as_str().unwrap().contains("your address"),
            "{detail}"
        );
    }
    // A session signed in before is no guess: it still reads. No key at all is a 401.
    let by_cookie = list(&app.http, Some(("cookie", cookie.clone())))
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(list(&app.http, None).await.unwrap().status(), 401);

    // 127.0.0.2 is counted apart: the right key works there, by header and at sign-in, and its
    // own wrong key is a plain 401.
    let keyed = list(&other, Some(("x-api-key", KEY.to_owned())))
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    let signed_in = other
        .post(app.url("/inbox/session"))
        .header("content-type", "application/json")
        .body(json!({ "key": KEY }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let wrong = list(&other, Some(("authorization", "Bearer guess".into())))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Requests without a key are not guesses: many of them (a signed-out page's own calls) do
    // not block 127.0.0.2, whose right key still works after them.
    for _ in 0..12 {
        assert_eq!(list(&other, None).await.unwrap().status(), 401);
    }
    let keyed = list(&other, Some(("x-api-key", KEY.to_owned())))
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    // Operators see the refusals: one sign-in and three header keys were answered 429.
    let metrics = other
        .get(app.url("/metrics"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"http_requests_refused_total{reason="too_many_wrong_keys"} 4"#),
        "{metrics}"
    );
}

/// Behind a reverse proxy listed in TRUSTED_PROXIES, wrong keys count per address its
/// `X-Forwarded-For` names; without it the header is ignored (a client cannot pick the address
/// it is counted under), so everyone behind the proxy shares the proxy's count.
#[tokio::test]
async fn wrong_keys_count_per_forwarded_client_only_behind_a_trusted_proxy() {
    async fn list(app: &TestApp, forwarded: Option<&str>, key: &str) -> u16 {
        let mut request = app
            .http
            .get(app.url("/v1/conversations"))
            .header("x-api-key", key);
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        request.send().await.unwrap().status().as_u16()
    }
    let guesser = Some("198.51.100.1, 203.0.113.7");
    let neighbour = Some("203.0.113.8");

    let proxied = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("API_KEY".into(), KEY.into());
        vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    for i in 0..10 {
        assert_eq!(list(&proxied, guesser, "guess").await, 401, "wrong key {i}");
    }
    assert_eq!(list(&proxied, guesser, KEY).await, 429, "the guesser waits");
    // Its own made-up entry to the left does not get it a fresh count.
    assert_eq!(
        list(&proxied, Some("192.0.2.1, 203.0.113.7"), KEY).await,
        429
    );
    assert_eq!(list(&proxied, neighbour, KEY).await, 200, "another client");
    assert_eq!(
        list(&proxied, None, KEY).await,
        200,
        "the proxy's own requests"
    );

    let direct = keyed_app().await;
    for i in 0..10 {
        assert_eq!(list(&direct, guesser, "guess").await, 401, "wrong key {i}");
    }
    assert_eq!(
        list(&direct, neighbour, KEY).await,
        429,
        "without TRUSTED_PROXIES the header is ignored: one address, one count"
    );
}

#[tokio::test]
async fn the_page_is_embedded_with_a_strict_policy_and_no_secret_in_it() {
    let app = keyed_app().await;
    let mut total = 0;
    for (path, kind) in [
        ("/inbox", "text/html"),
        ("/inbox/app.js", "text/javascript"),
        ("/inbox/app.css", "text/css"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(headers["x-frame-options"], "DENY");
        let body = response.text().await.unwrap();
        assert!(!body.contains(KEY) && !body.contains(ACCESS_TOKEN));
        // No asset from anywhere else.
        assert!(!body.contains("https://"), "{path} loads nothing external");
        total += body.len();
    }
    assert!(total < 150 * 1024, "{total} bytes of assets");
    // `/` leads to the inbox.
    let root = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/inbox");
}

/// Each asset has a strong ETag, the hash of the bytes served, and `no-cache`; a browser that
/// has those bytes gets a 304 with no body.
#[tokio::test]
async fn the_assets_carry_an_etag_of_their_bytes_and_revalidate_to_304() {
    use sha2::Digest;
    let app = keyed_app().await;
    let mut etags = std::collections::HashSet::new();
    for path in ["/inbox", "/inbox/app.js", "/inbox/app.css"] {
        let get = |if_none_match: Option<&str>| {
            let mut request = app.http.get(app.url(path));
            if let Some(tag) = if_none_match {
                request = request.header("if-none-match", tag);
            }
            request.send()
        };
        let first = get(None).await.unwrap();
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(first.headers()["cache-control"], "no-cache", "{path}");
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        let body = first.bytes().await.unwrap();
        let digest = sha2::Sha256::digest(&body);
        assert_eq!(
            etag,
            format!("\"{}\"", hex::encode(&digest[..16])),
            "{path}: the ETag is the hash of the bytes served"
        );
        assert!(etags.insert(etag.clone()), "{path}: its own ETag");

        for matching in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"something-else\", {etag}"),
            "*".to_owned(),
        ] {
            let again = get(Some(&matching)).await.unwrap();
            assert_eq!(again.status(), 304, "{path} with {matching}");
            assert_eq!(again.headers()["etag"], etag.as_str());
            assert_eq!(again.headers()["cache-control"], "no-cache");
            assert!(again.headers().contains_key("content-security-policy"));
            assert!(again.bytes().await.unwrap().is_empty(), "{path}: no body");
        }
        // Another version in the cache, garbage, or a tag prefixed twice: the whole asset again.
        for other in [
            "\"0123456789abcdef0123456789abcdef\"".to_owned(),
            ",,, \"x".to_owned(),
            format!("W/W/{etag}"),
        ] {
            let stale = get(Some(&other)).await.unwrap();
            assert_eq!(stale.status(), 200, "{path} with {other}");
            assert_eq!(stale.bytes().await.unwrap(), body, "{path}");
        }
    }
}

#[tokio::test]
async fn without_an_api_key_the_inbox_is_open_with_a_warning_and_host_checked() {
    let app = spawn_app(Backend::Embedded).await;
    let session: Value = app
        .http
        .get(app.url("/inbox/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["auth"], "open");
    assert!(
        session["warning"]
            .as_str()
            .unwrap()
            .contains("API_KEY is not set")
    );
    // Meta's delivery health comes with it (nothing received yet: no warning).
    assert_eq!(
        session["webhooks"],
        json!({"last_received_at": null, "silent_for_secs": null})
    );
    let conflict = sign_in(&app, "anything").await;
    assert_eq!(conflict.status(), 409);
    // A DNS-rebinding page reaches us under its own host name: refused.
    let rebound = app
        .http
        .get(app.url("/inbox/session"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
}

// ---------- the page in a real browser ----------

/// chromedriver on a free loopback port, with its Chromium; both killed on drop.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{binary} could not start ({e}): scripts/test installs chromium and chromium-driver")
            });
        Self {
            child,
            port,
            profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn connect(&self) -> Client {
        let chrome = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,860",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ]
            }
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{}", self.port))
                .await
            {
                Ok(client) => return client,
                // chromedriver may not listen yet.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session with Chromium: {e}"),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver and the browser it started share its process group.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clicks the first element matching `css` (which must be there).
async fn click(client: &Client, css: &str) {
    let element = client.find(Locator::Css(css)).await;
    let element = element.unwrap_or_else(|e| panic!("no {css} to click: {e}"));
    element.click().await.unwrap();
}

/// The text of the first element matching `css`, if any.
async fn text_of(client: &Client, css: &str) -> Option<String> {
    let element = client.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

async fn shoot(client: &Client, backend: Backend, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/inbox-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(
        dir.join(format!("{backend:?}-{name}.png").to_lowercase()),
        png,
    )
    .unwrap();
}

/// The Graph requests with JSON bodies posted to `/{PHONE_NUMBER_ID}/messages`.
async fn sent_bodies(app: &TestApp) -> Vec<Value> {
    let messages = format!("/{PHONE_NUMBER_ID}/messages");
    app.graph
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == messages)
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// Graph's messages endpoint for the browser tests: read receipts and typing indicators answer
/// `success`; every other POST is a send, answered with the message id `{prefix}{n}` (n from 1)
/// and counted in the returned counter.
async fn mount_graph_messages(
    graph: &wiremock::MockServer,
    prefix: &'static str,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let messages = format!("/{PHONE_NUMBER_ID}/messages");
    Mock::given(method("POST"))
        .and(path(messages.clone()))
        .and(body_partial_json(json!({"status": "read"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .with_priority(1)
        .mount(graph)
        .await;
    let sends = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sends.clone();
    Mock::given(method("POST"))
        .and(path(messages))
        .respond_with(move |request: &wiremock::Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let to = body["to"].as_str().unwrap_or_default().to_owned();
            ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": format!("{prefix}{n}")}]
            }))
        })
        .with_priority(2)
        .mount(graph)
        .await;
    sends
}

async fn the_inbox_works_end_to_end_in_a_real_browser(backend: Backend) {
    // A fixed port: the page reconnects to the same address after a restart.
    let port = free_port();
    let mut app = spawn_app_with(backend, |vars| {
        vars.insert("PORT".into(), port.to_string());
        vars.insert("API_KEY".into(), KEY.into());
        vars.insert("BUSINESS_ACCOUNT_ID".into(), WABA.into());
    })
    .await;
    let sends = mount_graph_messages(&app.graph, "wamid.INBOX").await;
    Mock::given(method("GET"))
        .and(path_regex(format!("^/{WABA}/message_templates$")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{
            "name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Order {{1}} ships today"},
                           {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SAVE15"}]}]
        }]})))
        .mount(&app.graph)
        .await;

    let t = now_secs();
    app.post_webhook_ok(&inbound(
        "wamid.K1",
        KERRY,
        "Kerry",
        t - 120,
        "Is my order ready?",
    ))
    .await;
    app.post_webhook_ok(&inbound(
        "wamid.O1",
        OLD,
        "Olivia",
        t - 3 * 86_400,
        "Thanks!",
    ))
    .await;

    let (app, sends) = (&mut app, &sends);
    in_browser(|client| async move { browse(app, &client, backend, sends).await }).await;
}

/// Runs `test` in a fresh headless Chromium. The browser is stopped whatever happens; a
/// failure is raised after that.
async fn in_browser<F: std::future::Future<Output = ()>>(test: impl FnOnce(Client) -> F) {
    let driver = Driver::start();
    let client = driver.connect().await;
    let outcome =
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(client.clone())))
            .await;
    // Ending the session asks Chromium to quit, which it may take its time over; the process
    // group is killed right after anyway.
    let _ = tokio::time::timeout(Duration::from_secs(3), client.close()).await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The browser part of [`the_inbox_works_end_to_end_in_a_real_browser`].
async fn browse(
    app: &mut TestApp,
    client: &Client,
    backend: Backend,
    sends: &std::sync::atomic::AtomicUsize,
) {
    let t = now_secs() - 1;
    client.goto(&app.url("/inbox")).await.unwrap();

    // Sign in: a wrong key is refused on the page, the right one opens the list.
    let key = eventually("the sign-in form", || async {
        let form = client
            .find(Locator::Css("#signin:not([hidden]) #key"))
            .await
            .ok()?;
        Some(form)
    })
    .await;
    shoot(client, backend, "1-sign-in").await;
    key.send_keys("not-the-key").await.unwrap();
    click(client, "#signin-form button[type=submit]").await;
    let refused = eventually("the refusal", || async {
        text_of(client, "#signin-error")
            .await
            .filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(refused, "Wrong API key.");
    key.clear().await.unwrap();
    key.send_keys(KEY).await.unwrap();
    click(client, "#signin-form button[type=submit]").await;
    let first = eventually("the conversation list", || async {
        text_of(client, "#conversations li:first-child .conv-name").await
    })
    .await;
    assert_eq!(first, "Kerry", "newest activity first");
    let badge = text_of(client, "#conversations li:first-child .badge").await;
    assert_eq!(badge.as_deref(), Some("1"));
    // The key is nowhere in the page or the browser's storage.
    let stored: Value = client
        .execute(
            "return [document.documentElement.outerHTML, JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie];",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        !stored.to_string().contains(KEY),
        "the key leaked: {stored}"
    );

    // A message from a new contact appears live, at the top, without a reload.
    app.post_webhook_ok(&inbound(
        "wamid.A1",
        ANA,
        "Ana",
        t - 60,
        "Olá! Do you ship to Brazil?",
    ))
    .await;
    eventually("Ana's live message", || async {
        (text_of(client, "#conversations li:first-child .conv-name").await? == "Ana").then_some(())
    })
    .await;
    shoot(client, backend, "2-list").await;

    // Open Kerry: the thread shows, the unread count clears, Meta gets the read receipt.
    let kerry = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}'] button");
    click(client, &kerry).await;
    eventually("Kerry's message in the thread", || async {
        text_of(client, "#m-wamid\\.K1")
            .await
            .filter(|t| t.contains("Is my order ready?"))
    })
    .await;
    eventually("the unread badge to clear", || async {
        let li = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}']");
        client.find(Locator::Css(&li)).await.ok()?;
        client
            .find(Locator::Css(&format!("{li} .badge")))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let (_, list) = get_json(app, "/v1/conversations").await;
    let kerry_entry = conversation_in(&list, KERRY);
    assert_eq!(kerry_entry["unread_count"], 0, "stored as read too");
    eventually("the read receipt to Meta", || async {
        sent_bodies(app)
            .await
            .iter()
            .any(|b| b["status"] == "read" && b["message_id"] == "wamid.K1")
            .then_some(())
    })
    .await;

    // Reply: Meta gets exactly its documented body; the bubble shows, then its ticks move.
    let text = client.find(Locator::Css("#text")).await.unwrap();
    text.send_keys("Yes, it ships today").await.unwrap();
    text.send_keys("\u{E007}").await.unwrap(); // Enter
    let sent = eventually("the send to Meta", || async {
        sent_bodies(app)
            .await
            .into_iter()
            .find(|b| b["type"] == "text")
    })
    .await;
    assert_eq!(
        sent,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": KERRY,
               "type": "text", "text": {"body": "Yes, it ships today"}})
    );
    let out = "#m-wamid\\.INBOX1";
    eventually("the sent bubble", || async {
        text_of(client, out)
            .await
            .filter(|t| t.contains("Yes, it ships today"))
    })
    .await;
    let tick = |status: &'static str| {
        let client = &client;
        async move {
            eventually(&format!("the {status} tick"), || async {
                let t = client
                    .find(Locator::Css(&format!("{out} .tick")))
                    .await
                    .ok()?;
                (t.attr("data-status").await.ok()?? == status).then_some(())
            })
            .await
        }
    };
    tick("accepted").await;
    app.post_webhook_ok(&status("wamid.INBOX1", KERRY, "delivered", t, None))
        .await;
    tick("delivered").await;
    app.post_webhook_ok(&status("wamid.INBOX1", KERRY, "read", t + 1, None))
        .await;
    tick("read").await;
    shoot(client, backend, "3-thread").await;

    // A second reply fails at Meta: the bubble says why, with Meta's code and details.
    text.send_keys("Here is the tracking link\u{E007}")
        .await
        .unwrap();
    eventually("the second bubble", || async {
        text_of(client, "#m-wamid\\.INBOX2").await
    })
    .await;
    let errors = json!([{"code": 131047, "title": "Re-engagement message",
        "message": "Re-engagement message", "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]);
    app.post_webhook_ok(&status(
        "wamid.INBOX2",
        KERRY,
        "failed",
        t + 2,
        Some(errors),
    ))
    .await;
    let failure = eventually("the failure's reason", || async {
        text_of(client, "#m-wamid\\.INBOX2 .failure")
            .await
            .filter(|t| t.contains("131047"))
    })
    .await;
    assert!(failure.contains("Re-engagement message"), "{failure}");
    assert!(
        failure.contains("only a template can reach them"),
        "the hint: {failure}"
    );
    shoot(client, backend, "4-failure").await;

    // Meta answers too late (after GRAPH_TIMEOUT_SECS): the outcome is unknown and the page says
    // "Not sent". Pressing Enter again sends the same message with the same Idempotency-Key, so
    // Meta sees it once.
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/messages")))
        .and(body_partial_json(json!({"text": {"body": "Slow one"}})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(3))
                .set_body_json(json!({"messaging_product": "whatsapp",
                    "contacts": [{"input": KERRY, "wa_id": KERRY}], "messages": [{"id": "wamid.SLOW"}]})),
        )
        .with_priority(1)
        .mount(&app.graph)
        .await;
    let slow = |b: &Value| b["text"]["body"] == "Slow one";
    for attempt in 1..=2 {
        if attempt == 1 {
            text.send_keys("Slow one").await.unwrap();
        }
        text.send_keys("\u{E007}").await.unwrap();
        eventually("the send's unknown outcome", || async {
            let shown = client
                .find(Locator::Css("#send-error:not([hidden])"))
                .await
                .ok()?;
            shown.text().await.ok().filter(|t| t.contains("Not sent"))
        })
        .await;
        // The next attempt starts once this one has been answered.
        client
            .execute(
                "document.getElementById('send-error').hidden = true;",
                vec![],
            )
            .await
            .unwrap();
    }
    let slow_sends = sent_bodies(app).await.iter().filter(|b| slow(b)).count();
    assert_eq!(slow_sends, 1, "the same key twice: one send");
    text.clear().await.unwrap();

    // A reaction on Kerry's message (its buttons show on hover or focus; clicked by script).
    let reacted: Value = client
        .execute(
            "const b = document.querySelector('#m-wamid\\\\.K1 .actions button[aria-label=\"React with 👍\"]'); if (b) b.click(); return !!b;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        reacted,
        json!(true),
        "a reaction button on the customer's message"
    );
    let reaction = eventually("the reaction to Meta", || async {
        sent_bodies(app)
            .await
            .into_iter()
            .find(|b| b["type"] == "reaction")
    })
    .await;
    assert_eq!(
        reaction,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": KERRY,
               "type": "reaction", "reaction": {"message_id": "wamid.K1", "emoji": "👍"}})
    );
    eventually("the reaction on its bubble", || async {
        text_of(client, "#m-wamid\\.K1 .reaction")
            .await
            .filter(|t| t == "👍")
    })
    .await;

    // Olivia wrote three days ago: the composer is a template picker, and the template goes out
    // with its parameter.
    let olivia = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{OLD}'] button");
    click(client, &olivia).await;
    let param = eventually("the template picker", || async {
        client
            .find(Locator::Css(
                "#templates:not([hidden]) #template-params input",
            ))
            .await
            .ok()
    })
    .await;
    assert!(
        client.find(Locator::Css("#composer[hidden]")).await.is_ok(),
        "no free text into a closed window"
    );
    param.send_keys("4521").await.unwrap();
    // The copy-code button's coupon, the second field.
    client
        .find(Locator::Css("#template-params label:nth-child(2) input"))
        .await
        .unwrap()
        .send_keys("SAVE15")
        .await
        .unwrap();
    shoot(client, backend, "5-template").await;
    click(client, "#send-template").await;
    let template = eventually("the template send", || async {
        sent_bodies(app)
            .await
            .into_iter()
            .find(|b| b["type"] == "template")
    })
    .await;
    assert_eq!(
        template,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": OLD,
               "type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
               "components": [{"type": "body", "parameters": [{"type": "text", "text": "4521"}]},
                              {"type": "button", "sub_type": "copy_code", "index": "0",
                               "parameters": [{"type": "coupon_code", "coupon_code": "SAVE15"}]}]}})
    );

    // Away (the tab closed), a message arrives; back, it is there.
    client.goto("about:blank").await.unwrap();
    app.post_webhook_ok(&inbound(
        "wamid.K2",
        KERRY,
        "Kerry",
        now_secs() + 5,
        "Great, thanks!",
    ))
    .await;
    client.goto(&app.url("/inbox")).await.unwrap();
    eventually("the missed message after a reload", || async {
        let li = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}']");
        let preview = text_of(client, &format!("{li} .conv-preview")).await?;
        let badge = text_of(client, &format!("{li} .badge")).await?;
        (preview == "Great, thanks!" && badge == "1").then_some(())
    })
    .await;

    // The gateway restarts, which ends the session: the stream's reconnect is refused (401) and
    // the page asks to sign in again. Signed in, it reads the state again; a message stored while
    // that read is on its way (the test holds the answer) still arrives, through a stream that
    // resumes after the last event the page had, and the older read does not undo it.
    app.post_webhook_ok(&inbound(
        "wamid.O2",
        OLD,
        "Olivia",
        now_secs() + 6,
        "One more thing",
    ))
    .await;
    let olivia = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{OLD}'] .conv-preview");
    eventually("Olivia's live message", || async {
        (text_of(client, &olivia).await? == "One more thing").then_some(())
    })
    .await;
    run(
        client,
        "window.__sameDocument = true; window.__hold = false; window.__held = []; \
         const f = window.fetch; window.fetch = async (...a) => { const r = await f(...a); \
         if (window.__hold && String(a[0]).startsWith('/v1/conversations?')) \
           await new Promise((go) => window.__held.push(go)); \
         return r; };",
    )
    .await;
    app.restart().await;
    let key = eventually("the sign-in form after the restart", || async {
        client
            .find(Locator::Css("#signin:not([hidden]) #key"))
            .await
            .ok()
    })
    .await;
    run(client, "window.__hold = true;").await;
    key.send_keys(KEY).await.unwrap();
    click(client, "#signin-form button[type=submit]").await;
    eventually("the list's read, held", || async {
        (run(client, "return window.__held.length;").await.as_u64()? >= 1).then_some(())
    })
    .await;
    app.post_webhook_ok(&inbound(
        "wamid.K3",
        KERRY,
        "Kerry",
        now_secs() + 7,
        "Still there?",
    ))
    .await;
    run(
        client,
        "window.__hold = false; window.__held.splice(0).forEach((go) => go());",
    )
    .await;
    eventually("the message stored during the read", || async {
        let li = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}']");
        let preview = text_of(client, &format!("{li} .conv-preview")).await?;
        let badge = text_of(client, &format!("{li} .badge")).await?;
        (preview == "Still there?" && badge == "2").then_some(())
    })
    .await;
    assert_eq!(
        run(client, "return window.__sameDocument === true;").await,
        json!(true),
        "no reload"
    );
    // At phone width one pane shows at a time: the list, then the thread with a way back.
    client.set_window_size(390, 844).await.unwrap();
    let displayed = |css: &'static str| async move {
        let element = client.find(Locator::Css(css)).await.ok()?;
        element.is_displayed().await.ok()
    };
    assert_eq!(displayed(".list-pane").await, Some(true));
    assert_eq!(displayed(".thread-pane").await, Some(false));
    click(client, &kerry).await;
    eventually("the thread alone at phone width", || async {
        (displayed(".thread-pane").await? && !displayed(".list-pane").await?).then_some(())
    })
    .await;
    shoot(client, backend, "6-phone").await;
    click(client, "#back").await;
    eventually("the list again", || async {
        displayed(".list-pane").await?.then_some(())
    })
    .await;

    assert_eq!(
        sends.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "two replies, a reaction and a template, each once"
    );
}

// ---------- what the page promises, in one browser session ----------

/// The messages of Kerry's long thread: `count` texts `message {i}`, a minute apart, the last
/// a minute ago (so the 24-hour window is open).
fn long_thread(count: usize) -> String {
    let t = now_secs() - 60 * count as i64;
    let messages: Vec<Value> = (0..count)
        .map(|i| {
            json!({"from": KERRY, "id": format!("wamid.K{i:02}"), "timestamp": (t + 60 * i as i64).to_string(),
                   "type": "text", "text": {"body": format!("message {i}")}})
        })
        .collect();
    webhook_with(messages)
}

/// The page's other promises, in one browser on an open inbox over Redis: its weight and first
/// render (written to `target/inbox-screenshots/timings.json`), older messages on scrolling up,
/// the typing indicator at most once per 20 s, a reply with its quote that jumps to the quoted
/// message, an attachment uploaded then sent by id, and a stream that goes down (banner) and
/// resumes from the last event id without a reload, showing what happened meanwhile.
#[tokio::test]
async fn the_page_keeps_its_promises_in_a_real_browser() {
    let port = free_port();
    let mut app = spawn_app_with(Backend::Redis, |vars| {
        vars.insert("PORT".into(), port.to_string());
    })
    .await;
    let sends = mount_graph_messages(&app.graph, "wamid.PAGE").await;
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/media")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "4490709327384033"})))
        .mount(&app.graph)
        .await;
    app.post_webhook_ok(&long_thread(50)).await;
    app.post_webhook_ok(&inbound("wamid.A1", ANA, "Ana", now_secs() - 3600, "Olá!"))
        .await;

    let app = &mut app;
    in_browser(|client| async move { promises(app, &client).await }).await;
    assert_eq!(
        sends.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a reply and a document, each once"
    );
}

/// How many elements match `css`.
async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map_or(0, |all| all.len())
}

/// Runs `script` in the page, returning its value.
async fn run(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// The Graph requests for Meta's typing indicator.
async fn typing_bodies(app: &TestApp) -> Vec<Value> {
    sent_bodies(app)
        .await
        .into_iter()
        .filter(|b| b.get("typing_indicator").is_some())
        .collect()
}

/// The browser part of [`the_page_keeps_its_promises_in_a_real_browser`].
async fn promises(app: &mut TestApp, client: &Client) {
    let backend = Backend::Redis;
    client.goto(&app.url("/inbox")).await.unwrap();
    let kerry = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}'] button");
    eventually("the conversation list", || async {
        client.find(Locator::Css(&kerry)).await.ok()
    })
    .await;

    // f. Weight and first render, as this browser saw them over HTTP.
    let timings = eventually("the page's timings", || async {
        let timings = run(
            client,
            r#"
            const nav = performance.getEntriesByType('navigation')[0];
            const paint = Object.fromEntries(performance.getEntriesByType('paint').map((p) => [p.name, p.startTime]));
            const list = performance.getEntriesByName('inbox:conversations')[0];
            const assets = [nav, ...performance.getEntriesByType('resource')
                .filter((r) => /^\/inbox\/app\.(js|css)$/.test(new URL(r.name).pathname))]
                .map((e) => ({ url: new URL(e.name).pathname, body_bytes: e.encodedBodySize, transfer_bytes: e.transferSize }));
            if (!nav || nav.loadEventEnd === 0 || !paint['first-contentful-paint'] || !list) return null;
            return {
              first_paint_ms: paint['first-paint'] ?? null,
              first_contentful_paint_ms: paint['first-contentful-paint'],
              dom_content_loaded_ms: nav.domContentLoadedEventEnd,
              load_event_end_ms: nav.loadEventEnd,
              conversations_rendered_ms: list.startTime,
              assets,
            };"#,
        )
        .await;
        (!timings.is_null()).then_some(timings)
    })
    .await;
    let assets = timings["assets"].as_array().unwrap();
    let served: Vec<&str> = assets.iter().map(|a| a["url"].as_str().unwrap()).collect();
    assert_eq!(
        served,
        ["/inbox", "/inbox/app.css", "/inbox/app.js"],
        "{timings}"
    );
    let bytes: u64 = assets
        .iter()
        .map(|a| a["body_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        assets.iter().all(|a| a["body_bytes"].as_u64() > Some(0)),
        "{timings}"
    );
    assert!(bytes < 150 * 1024, "{bytes} bytes of inbox assets served");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/inbox-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut record = timings.clone();
    record["total_asset_bytes"] = bytes.into();
    record["measured"] = "headless Chromium via chromedriver, fresh profile, gateway (debug build, Redis) on loopback; ms since navigation start".into();
    std::fs::write(
        dir.join("timings.json"),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();

    // e. Kerry's thread shows its newest page; scrolled to the top, the older messages load.
    click(client, &kerry).await;
    eventually("the newest page of the thread", || async {
        (count(client, "#messages .bubble").await == 40).then_some(())
    })
    .await;
    assert!(
        client.find(Locator::Css("#m-wamid\\.K09")).await.is_err(),
        "older than the first page"
    );
    run(client, "document.getElementById('messages').scrollTop = 0;").await;
    eventually("the older messages", || async {
        (count(client, "#messages .bubble").await == 50).then_some(())
    })
    .await;
    let first = text_of(client, "#messages .bubble:first-of-type").await;
    assert!(
        first.is_some_and(|t| t.contains("message 0")),
        "oldest first"
    );

    // c, d. Reply to an old message while typing: Meta's typing indicator goes out once.
    let replied = run(
        client,
        "const b = [...document.querySelectorAll('#m-wamid\\\\.K05 .actions button')].find((b) => b.textContent === 'Reply'); if (b) b.click(); return !!b;",
    )
    .await;
    assert_eq!(replied, json!(true), "a Reply button on the message");
    let replying = text_of(client, "#replying:not([hidden]) #replying-text").await;
    assert_eq!(replying.as_deref(), Some("Replying to: message 5"));
    let text = client.find(Locator::Css("#text")).await.unwrap();
    for chunk in ["About ", "that ", "one"] {
        text.send_keys(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let typing = eventually("Meta's typing indicator", || async {
        typing_bodies(app).await.into_iter().next()
    })
    .await;
    assert_eq!(
        typing,
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.K49",
               "typing_indicator": {"type": "text"}})
    );
    text.send_keys("\u{E007}").await.unwrap(); // Enter
    let reply = eventually("the reply to Meta", || async {
        sent_bodies(app)
            .await
            .into_iter()
            .find(|b| b["type"] == "text")
    })
    .await;
    assert_eq!(
        reply,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": KERRY,
               "type": "text", "text": {"body": "About that one"},
               "context": {"message_id": "wamid.K05"}})
    );
    let quote = eventually("the reply's quote", || async {
        text_of(client, "#m-wamid\\.PAGE1 .quote")
            .await
            .filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(quote, "message 5");
    shoot(client, backend, "7-reply").await;
    let in_view = "const m = document.getElementById('messages').getBoundingClientRect(); \
                   const r = document.getElementById('m-wamid.K05').getBoundingClientRect(); \
                   return r.bottom > m.top && r.top < m.bottom;";
    assert_eq!(run(client, in_view).await, json!(false), "K05 is far up");
    click(client, "#m-wamid\\.PAGE1 .quote").await;
    eventually("the quoted message in view and highlighted", || async {
        let highlighted = run(
            client,
            "const n = document.getElementById('m-wamid.K05'); return n.classList.contains('flash') && document.activeElement === n;",
        )
        .await;
        (highlighted == json!(true) && run(client, in_view).await == json!(true)).then_some(())
    })
    .await;
    // More typing within 20 s sends no second indicator.
    text.send_keys("and ").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    text.send_keys("more").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(typing_bodies(app).await.len(), 1, "at most once per 20 s");
    text.clear().await.unwrap();

    // b. An attachment: uploaded to Meta, then sent by the id Meta gave.
    let files = tempfile::tempdir().unwrap();
    let pdf = files.path().join("invoice.pdf");
    let pdf_bytes =
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    std::fs::write(&pdf, pdf_bytes).unwrap();
    client
        .find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(&pdf.display().to_string())
        .await
        .unwrap();
    let document = eventually("the document send", || async {
        sent_bodies(app)
            .await
            .into_iter()
            .find(|b| b["type"] == "document")
    })
    .await;
    assert_eq!(
        document,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": KERRY,
               "type": "document", "document": {"id": "4490709327384033", "filename": "invoice.pdf"}})
    );
    let uploads: Vec<wiremock::Request> = app
        .graph
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == format!("/{PHONE_NUMBER_ID}/media"))
        .collect();
    assert_eq!(uploads.len(), 1);
    let form = String::from_utf8_lossy(&uploads[0].body);
    for part in [
        "name=\"messaging_product\"\r\n\r\nwhatsapp\r\n",
        "name=\"type\"\r\n\r\napplication/pdf\r\n",
        "filename=\"invoice.pdf\"",
        std::str::from_utf8(pdf_bytes).unwrap(),
    ] {
        assert!(form.contains(part), "{part:?} in {form}");
    }
    eventually("the document's bubble", || async {
        text_of(client, "#m-wamid\\.PAGE2")
            .await
            .filter(|t| t.contains("invoice.pdf"))
    })
    .await;

    // d. The indicator is per conversation: typing to Ana right after Kerry sends hers.
    click(
        client,
        &format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{ANA}'] button"),
    )
    .await;
    eventually("Ana's thread", || async {
        text_of(client, "#m-wamid\\.A1").await
    })
    .await;
    text.send_keys("Hi Ana").await.unwrap();
    let to_ana = eventually("Ana's typing indicator", || async {
        typing_bodies(app).await.into_iter().nth(1)
    })
    .await;
    assert_eq!(to_ana["message_id"], "wamid.A1", "{to_ana}");
    text.clear().await.unwrap();
    click(client, &kerry).await;
    eventually("Kerry's thread again", || async {
        text_of(client, "#m-wamid\\.PAGE2").await
    })
    .await;
    // Back in Kerry's conversation within 20 s of its indicator: still none (each conversation
    // keeps its own pace).
    text.send_keys("Back to Kerry").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        typing_bodies(app).await.len(),
        2,
        "Kerry's pace survives a visit to Ana"
    );
    text.clear().await.unwrap();

    // a. The gateway goes away: the banner shows. Meanwhile Kerry writes (received by another
    // instance on the same Redis). Back on the same port, the page resumes after the last event
    // it had, without a reload or a re-read: the message arrives through the stream.
    run(
        client,
        "window.__sameDocument = true; window.__reads = []; const f = window.fetch; \
         window.fetch = (...a) => { window.__reads.push(String(a[0])); return f(...a); };",
    )
    .await;
    let other = spawn_instance_sharing_redis(app, |_| {}).await;
    let address = app.address.clone();
    app.stop(Duration::from_secs(15)).await;
    eventually("the disconnected banner", || async {
        let banner = client.find(Locator::Css("#live")).await.ok()?;
        banner.is_displayed().await.ok()?.then_some(())
    })
    .await;
    other
        .post_webhook_ok(&inbound(
            "wamid.K99",
            KERRY,
            "Kerry",
            now_secs(),
            "Sent while you were away",
        ))
        .await;
    shoot(client, backend, "8-disconnected").await;
    app.restart().await;
    assert_eq!(app.address, address, "the same port");
    eventually("the missed message, live", || async {
        text_of(client, "#m-wamid\\.K99")
            .await
            .filter(|t| t.contains("Sent while you were away"))
    })
    .await;
    eventually("the banner gone", || async {
        let banner = client.find(Locator::Css("#live")).await.ok()?;
        (!banner.is_displayed().await.ok()?).then_some(())
    })
    .await;
    let after = run(
        client,
        "return [window.__sameDocument === true, window.__reads];",
    )
    .await;
    assert_eq!(after[0], json!(true), "no reload");
    let reads: Vec<&str> = after[1]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|u| u.contains("/messages?") || u.starts_with("/v1/conversations?"))
        .collect();
    assert!(reads.is_empty(), "nothing re-read: {reads:?}");
    let list_preview = text_of(
        client,
        &format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}'] .conv-preview"),
    )
    .await;
    assert_eq!(list_preview.as_deref(), Some("Sent while you were away"));
    shoot(client, backend, "9-resumed").await;
}

// ---------- a tab that falls behind the stream ----------

/// A tab that falls behind its stream (`event: error`, `lagged`) opens a new one after the last
/// event it received and shows everything it had missed, without reading the list again. The
/// gateway queues one event per client here (EVENT_CLIENT_BUFFER=1), so one delivery of many
/// messages cuts the tab off; the test checks that it was cut off.
async fn a_tab_that_falls_behind_resumes_after_its_last_event(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("EVENT_CLIENT_BUFFER".into(), "1".into());
    })
    .await;
    app.post_webhook_ok(&inbound(
        "wamid.L0",
        KERRY,
        "Kerry",
        now_secs() - 600,
        "before",
    ))
    .await;

    let app = &app;
    in_browser(|client| async move { fall_behind(app, &client, backend).await }).await;
}

/// The browser part of [`a_tab_that_falls_behind_resumes_after_its_last_event`].
async fn fall_behind(app: &TestApp, client: &Client, backend: Backend) {
    const BURST: usize = 60;
    client.goto(&app.url("/inbox")).await.unwrap();
    let kerry = format!("#conversations li[data-key='{PHONE_NUMBER_ID}:{KERRY}']");
    eventually("the conversation list", || async {
        client.find(Locator::Css(&kerry)).await.ok()
    })
    .await;
    eventually("the page's stream", || async {
        (app.metric("whatsapp_gateway_event_streams_open").await == 1.0).then_some(())
    })
    .await;
    // Open on the page's side too (a stream that opens late reads the list again when it does).
    eventually("the page's stream open", || async {
        let open = "return !!state.events && state.events.readyState === EventSource.OPEN;";
        (run(client, open).await == json!(true)).then_some(())
    })
    .await;
    // From now on, count the page's reads of the conversation list.
    run(
        client,
        "window.listReads = 0; const f = window.fetch; window.fetch = (input, init) => { if (String(input).startsWith('/v1/conversations?')) window.listReads += 1; return f(input, init); }; return true;",
    )
    .await;

    // One delivery of many messages: far more events at once than the tab's queue holds.
    let t = now_secs() - 300;
    let burst: Vec<Value> = (1..=BURST)
        .map(|i| {
            json!({"from": KERRY, "id": format!("wamid.L{i}"), "timestamp": (t + i as i64).to_string(),
                   "type": "text", "text": {"body": format!("burst {i}")}})
        })
        .collect();
    app.post_webhook_ok(&webhook_with(burst)).await;

    eventually("the tab cut off for lag", || async {
        app.metrics_text()
            .await
            .contains(r#"whatsapp_gateway_event_streams_ended_total{reason="lagged"} 1"#)
            .then_some(())
    })
    .await;
    let last = format!("burst {BURST}");
    let unread = (BURST + 1).to_string();
    eventually("every message of the burst on the list", || async {
        let preview = text_of(client, &format!("{kerry} .conv-preview")).await?;
        let badge = text_of(client, &format!("{kerry} .badge")).await?;
        (preview == last && badge == unread).then_some(())
    })
    .await;
    shoot(client, backend, "lagged-and-resumed").await;
    assert_eq!(
        run(client, "return window.listReads;").await,
        json!(0),
        "the tab resumed its stream after its last event instead of reading the list again"
    );
    assert_eq!(
        app.metric("whatsapp_gateway_event_streams_open").await,
        1.0,
        "one stream open again"
    );
}
