//! The webhook simulator against the real gateway over HTTP: what it builds is stored as the
//! right type on both backends (BSUID-only senders under their BSUID, failed statuses with their
//! code, duplicates once, out-of-order statuses ending at `read`, batches whole, replays byte for
//! byte), a wrong app secret is refused 401, and `simulate verify` passes or fails the handshake.
//! The binary's `simulate` command runs as a child process, reading its defaults from a
//! `config.env` in its working directory.

use std::process::Output;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use whatsapp_gateway::simulate::payload::DEFAULT_CUSTOMER_PHONE;
use whatsapp_gateway::simulate::{
    Business, Customer, Delivery, Factory, Inbound, Receiver, Status, StatusError,
};

use crate::contract_tests;
use crate::helpers::*;

contract_tests!(
    every_generated_message_type_is_stored_with_its_type,
    a_bsuid_only_sender_is_stored_under_its_bsuid,
    a_failed_status_shows_its_code,
    a_duplicate_delivery_is_stored_once,
    out_of_order_statuses_end_at_read,
    the_binary_posts_a_batch_from_several_customers_in_one_post,
    the_binary_replays_a_file_byte_for_byte,
);

const BSUID: &str = "US.13491208655302741918";

fn factory() -> Factory {
    Factory::new(Business {
        phone_number_id: PHONE_NUMBER_ID.to_owned(),
        ..Business::default()
    })
}

fn receiver(app: &TestApp) -> Receiver {
    let secret = SecretString::from(APP_SECRET);
    Receiver::new(app.url("/webhook"), Some(&secret), Duration::from_secs(5)).unwrap()
}

/// Posts `delivery`, asserting 2xx; the gateway's acknowledgement.
async fn post_ok(receiver: &Receiver, delivery: &Delivery) -> Value {
    let answer = receiver.post(&delivery.body).await;
    assert!(
        answer.accepted(),
        "{}: {:?} {}",
        delivery.label,
        answer.status,
        answer.body
    );
    serde_json::from_str(&answer.body).unwrap()
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn id_of(message: &Value) -> String {
    message["id"].as_str().unwrap().to_owned()
}

async fn every_generated_message_type_is_stored_with_its_type(backend: Backend) {
    let app = spawn_app(backend).await;
    let receiver = receiver(&app);
    let mut f = factory();
    let customer = Customer::with_phone(DEFAULT_CUSTOMER_PHONE);
    let one = std::slice::from_ref(&customer);

    // The business's own message (an echo), which replies can quote.
    let echo = f.echo(&customer, "We have it in blue.");
    let echo_id = id_of(&echo);
    let ack = post_ok(
        &receiver,
        &Delivery::of("echo", &f.echoes_notification(one, vec![echo])),
    )
    .await;
    assert_eq!(ack["stored"], 1, "{ack}");
    let (status, stored) = get(&app, &format!("/v1/messages/{echo_id}")).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["direction"], "outbound");
    assert_eq!(stored["contact"]["id"], DEFAULT_CUSTOMER_PHONE);

    let original = f.wamid(&customer, false);
    let kinds = Inbound::every_kind(&original, &echo_id);
    let mut seen = std::collections::BTreeSet::new();
    for (i, what) in kinds.iter().enumerate() {
        let message = if i == 0 {
            f.message_with(&customer, what, &original, 1_781_290_000)
        } else {
            f.message(&customer, what)
        };
        let id = id_of(&message);
        let delivery = Delivery::of(
            what.label(),
            &f.messages_notification(one, vec![message.clone()]),
        );
        let ack = post_ok(&receiver, &delivery).await;
        assert_eq!(
            (ack["stored"].as_i64(), ack["quarantined"].as_i64()),
            (Some(1), Some(0)),
            "{}: {ack}",
            what.label()
        );
        let (status, stored) = get(&app, &format!("/v1/messages/{id}")).await;
        assert_eq!(status, 200, "{}: {stored}", what.label());
        assert_eq!(stored["type"], what.kind(), "{}", what.label());
        assert_eq!(
            stored["content"]["type"],
            what.kind(),
            "{}: {stored}",
            what.label()
        );
        assert_eq!(stored["direction"], "inbound");
        assert_eq!(stored["contact"]["id"], DEFAULT_CUSTOMER_PHONE);
        // Meta's escaped wire bytes are the same JSON as the message built.
        assert_eq!(stored["raw"], message, "{}", what.label());
        seen.insert(what.kind());
    }
    assert_eq!(seen, CONTENT_TYPES.into_iter().collect());

    // Details a receiver must see: the reply's quote, the voice flag, the file name, the ad.
    let (_, m) = get(&app, "/v1/conversations/16505551234/messages?limit=200").await;
    let history = m["messages"].as_array().unwrap();
    let quoted = history
        .iter()
        .find(|m| m["raw"]["context"]["id"] == echo_id.as_str())
        .expect("the reply to the echo");
    assert_eq!(quoted["type"], "text");
    // The edit, reaction and revoke changed the original instead of adding to the history.
    let (_, o) = get(&app, &format!("/v1/messages/{original}")).await;
    assert_eq!(
        o["edited"]["content"]["body"], "Hi! Does it come in blue, size M?",
        "{o}"
    );
    assert!(o["deleted"]["id"].is_string(), "{o}");
    assert_eq!(o["reaction"]["emoji"], Value::Null, "removed last: {o}");
}

async fn a_bsuid_only_sender_is_stored_under_its_bsuid(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut f = factory();
    let customer = Customer::bsuid_only(BSUID);
    let what = Inbound::Image {
        caption: Some("The part".into()),
    };
    let message = f.message(&customer, &what);
    assert_eq!(message.get("from"), None, "no phone in the payload");
    let id = id_of(&message);
    let delivery = Delivery::of(
        "image",
        &f.messages_notification(&[customer], vec![message]),
    );
    post_ok(&receiver(&app), &delivery).await;

    let (status, stored) = get(&app, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["contact"]["id"], BSUID);
    assert_eq!(stored["contact"]["user_id"], BSUID);
    assert_eq!(stored["contact"].get("wa_id"), None, "{stored}");
    assert_eq!(stored["type"], "image");
    assert_eq!(app.ids_of(BSUID).await, vec![id.clone()]);
    let (_, page) = get(&app, &format!("/v1/conversations/{BSUID}/messages")).await;
    assert_eq!(page["messages"][0]["id"], id.as_str());
}

async fn a_failed_status_shows_its_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let receiver = receiver(&app);
    let mut f = factory();
    let customer = Customer::with_phone(DEFAULT_CUSTOMER_PHONE);
    let one = std::slice::from_ref(&customer);
    let echo = f.echo(&customer, "Your order shipped");
    let id = id_of(&echo);
    post_ok(
        &receiver,
        &Delivery::of("echo", &f.echoes_notification(one, vec![echo])),
    )
    .await;

    let mut error = StatusError::for_code(131026);
    error.details = "The recipient's phone is off".into();
    let failed = f.status(&id, &customer, &Status::Failed(error), f.now());
    let ack = post_ok(
        &receiver,
        &Delivery::of("failed", &f.statuses_notification(one, vec![failed])),
    )
    .await;
    assert_eq!(ack["statuses"], 1, "{ack}");

    let (_, stored) = get(&app, &format!("/v1/messages/{id}")).await;
    assert_eq!(stored["status"], "failed", "{stored}");
    let errors = &stored["statuses"][0]["errors"][0];
    assert_eq!(errors["code"], 131026);
    assert_eq!(errors["title"], "Message undeliverable");
    assert_eq!(errors["details"], "The recipient's phone is off");
}

async fn a_duplicate_delivery_is_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    // The binary posts the same signed bytes three times.
    let out = simulate(
        &app,
        &["duplicate", "--repeat", "3", "--text", "Anyone there?"],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ids = wamids(&stdout);
    assert_eq!(ids.len(), 3, "{stdout}");
    assert!(ids.iter().all(|id| *id == ids[0]), "one id: {stdout}");
    assert_eq!(stdout.matches("\"stored\":1").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("\"duplicates\":1").count(), 2, "{stdout}");
    assert_eq!(
        app.ids_of(DEFAULT_CUSTOMER_PHONE).await,
        vec![ids[0].clone()]
    );
    let (_, list) = get(&app, "/v1/conversations").await;
    assert_eq!(list["conversations"][0]["message_count"], 1, "{list}");

    // Five copies at once, as Meta's concurrent retries: still one message.
    let out = simulate(
        &app,
        &[
            "duplicate",
            "--repeat",
            "5",
            "--concurrent",
            "--from",
            "15550002222",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ids = wamids(&stdout);
    assert_eq!(ids.len(), 5, "{stdout}");
    assert_eq!(stdout.matches("\"stored\":1").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("\"duplicates\":1").count(), 4, "{stdout}");
    assert_eq!(app.ids_of("15550002222").await, vec![ids[0].clone()]);
}

async fn out_of_order_statuses_end_at_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let out = simulate(&app, &["echo", "--text", "Your order shipped"]).await;
    assert!(out.status.success(), "{}", show(&out));
    let id = wamids(&String::from_utf8_lossy(&out.stdout)).remove(0);

    let out = simulate(&app, &["out-of-order", "--message-id", &id]).await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let order: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("status "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(order, ["read", "delivered", "sent"], "{stdout}");

    let (_, stored) = get(&app, &format!("/v1/messages/{id}")).await;
    assert_eq!(stored["status"], "read", "{stored}");
    let history: Vec<&str> = stored["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["sent", "delivered", "read"], "{stored}");
    // Meta's timestamps tell the real order, whatever the arrival order.
    let times: Vec<i64> = stored["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["timestamp"].as_i64().unwrap())
        .collect();
    assert!(times[0] < times[1] && times[1] < times[2], "{times:?}");
}

async fn the_binary_posts_a_batch_from_several_customers_in_one_post(backend: Backend) {
    let app = spawn_app(backend).await;
    let out = simulate(&app, &["batch", "--count", "25", "--senders", "3"]).await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let posts = stdout.lines().filter(|l| l.starts_with('[')).count();
    assert_eq!(posts, 1, "one POST: {stdout}");
    assert!(stdout.contains("\"stored\":25"), "{stdout}");
    let ids = wamids(&stdout);
    assert_eq!(ids.len(), 25);
    for id in &ids {
        let (status, stored) = get(&app, &format!("/v1/messages/{id}")).await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(stored["type"], "text");
    }
    let (_, list) = get(&app, "/v1/conversations").await;
    let mut contacts: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contact"]["id"].as_str().unwrap())
        .collect();
    contacts.sort();
    assert_eq!(contacts, ["16505551234", "16505551235", "16505551236"]);
}

async fn the_binary_replays_a_file_byte_for_byte(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    // A captured payload with Meta's escapes (\u00e9, \/): any re-serialization would change the
    // bytes, so only an exact replay verifies and stores the raw message unchanged.
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inbound/unicode_escapes.json"),
    )
    .unwrap();
    assert!(fixture.contains("\\u") && fixture.contains("\\/"));
    let single = dir.path().join("captured.json");
    std::fs::write(&single, &fixture).unwrap();
    let out = simulate(&app, &["replay", "--file", single.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", show(&out));
    let parsed: Value = serde_json::from_str(&fixture).unwrap();
    let message = &parsed["entry"][0]["changes"][0]["value"]["messages"][0];
    let id = id_of(message);
    assert_eq!(
        wamids(&String::from_utf8_lossy(&out.stdout)),
        vec![id.clone()]
    );
    let (_, stored) = get(&app, &format!("/v1/messages/{id}")).await;
    assert_eq!(&stored["raw"], message);

    // A JSON array: one POST per element.
    let two = |n: u32| {
        webhook_with(vec![text_message(
            &format!("wamid.REPLAY{n}"),
            "919216598210",
            "hi",
        )])
    };
    let array = dir.path().join("several.json");
    std::fs::write(&array, format!("[\n{},\n{}\n]\n", two(1), two(2))).unwrap();
    let out = simulate(&app, &["replay", "--file", array.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 of 2 POSTs answered 2xx"));
    let ids = app.ids_of("919216598210").await;
    assert_eq!(ids, ["wamid.REPLAY1", "wamid.REPLAY2"]);
}

// ---- The binary's own behaviour (one backend: nothing here depends on the store) ----

#[tokio::test]
async fn defaults_come_from_config_env_and_the_secret_is_never_printed() {
    let app = spawn_app(Backend::Embedded).await;
    let dir = tempfile::tempdir().unwrap();
    let port = app.address.rsplit(':').next().unwrap();
    std::fs::write(
        dir.path().join("config.env"),
        format!("PORT={port}\nAPP_SECRET={APP_SECRET}\nPHONE_NUMBER_ID={PHONE_NUMBER_ID}\n"),
    )
    .unwrap();
    // No --url, no --app-secret: both come from config.env.
    let out = run_binary(dir.path(), &["text", "--text", "From config.env"], &[]).await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(signed with APP_SECRET)"), "{stdout}");
    assert!(stdout.contains("200 OK in "), "{stdout}");
    let id = wamids(&stdout).remove(0);
    let (_, stored) = get(&app, &format!("/v1/messages/{id}")).await;
    assert_eq!(stored["body"], "From config.env");
    assert_eq!(stored["phone_number_id"], PHONE_NUMBER_ID);
    assert!(!show(&out).contains(APP_SECRET), "{}", show(&out));
}

#[tokio::test]
async fn a_wrong_app_secret_is_refused_401_and_the_command_fails() {
    let app = spawn_app(Backend::Embedded).await;
    let secret = "not-the-app-secret-4242";
    let out = simulate(&app, &["text", "--app-secret", secret]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("401 Unauthorized"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not answer 2xx"));
    assert!(
        !show(&out).contains(secret),
        "the secret leaked: {}",
        show(&out)
    );
    assert!(app.ids_of(DEFAULT_CUSTOMER_PHONE).await.is_empty());

    // Without any secret: a warning, unsigned, refused too.
    let dir = tempfile::tempdir().unwrap();
    let out = run_binary(dir.path(), &["text", "--url", &app.url("/webhook")], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sending unsigned"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("401"));
}

#[tokio::test]
async fn simulate_verify_passes_with_the_right_token_and_fails_clearly_with_a_wrong_one() {
    let app = spawn_app(Backend::Embedded).await;
    let out = simulate(&app, &["verify", "--verify-token", VERIFY_TOKEN]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("challenge echoed"));

    // VERIFY_TOKEN from the environment.
    let dir = tempfile::tempdir().unwrap();
    let env = [("VERIFY_TOKEN", VERIFY_TOKEN)];
    let out = run_binary(dir.path(), &["verify", "--url", &app.url("/webhook")], &env).await;
    assert!(out.status.success(), "{}", show(&out));

    let wrong = "wrong-token-777";
    let out = simulate(&app, &["verify", "--verify-token", wrong]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "verification failed: expected 200 with the challenge as the body, got 403 Forbidden"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hub.verify_token does not match VERIFY_TOKEN"),
        "{stderr}"
    );
    assert!(
        !show(&out).contains(wrong) && !show(&out).contains(VERIFY_TOKEN),
        "{}",
        show(&out)
    );

    // A receiver that answers 200 with something else than the bare challenge fails too.
    let mock = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::query_param("hub.verify_token", "t"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("\"ok\""))
        .expect(1)
        .mount(&mock)
        .await;
    let out = run_binary(
        dir.path(),
        &["verify", "--url", &mock.uri(), "--verify-token", "t"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("expected the body to be exactly the challenge")
    );

    // Nothing listening: a clear failure, not a hang.
    let closed = format!("http://127.0.0.1:{}/webhook", free_port());
    let out = run_binary(
        dir.path(),
        &["verify", "--url", &closed, "--verify-token", "t"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not connect"),
        "{}",
        show(&out)
    );

    // A peer that hangs up: reqwest's error text names the URL, which carries the verify token;
    // it must not be printed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hangs_up = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let out = run_binary(
        dir.path(),
        &[
            "verify",
            "--url",
            &hangs_up,
            "--verify-token",
            "vt-secret-4821",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!show(&out).contains("vt-secret-4821"), "{}", show(&out));
}

/// `simulate all --dry-run | head -1`: the reader goes away early; the simulator must not panic.
#[tokio::test]
async fn a_closed_stdout_does_not_make_the_simulator_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"))
        .args(["simulate", "all", "--dry-run"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .stdout(writer)
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn every_kind_of_the_binary_is_accepted_by_the_gateway() {
    let app = spawn_app(Backend::Embedded).await;
    let out = simulate(&app, &["all"]).await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("24 of 24 POSTs answered 2xx"), "{stdout}");
    assert!(!stdout.contains("\"quarantined\":1"), "{stdout}");
    for args in [
        &["voice"][..],
        &["document", "--filename", "offer.pdf"],
        &["reaction", "--emoji", "🎉"],
        &["revoke"],
        &["edit", "--text", "fixed"],
        &["number-change", "--new-number", "+1 650 555 0000"],
        &["status", "delivered"],
        &[
            "status",
            "failed",
            "--code",
            "131049",
            "--title",
            "Custom title",
        ],
        &["text", "--bsuid", BSUID, "--from", "15550001111"],
    ] {
        let out = simulate(&app, args).await;
        assert!(out.status.success(), "{args:?}: {}", show(&out));
    }
    // A BSUID with a phone: keyed by the phone, the BSUID kept on the contact.
    let (_, page) = get(&app, "/v1/conversations/15550001111/messages").await;
    assert_eq!(page["messages"][0]["contact"]["user_id"], BSUID, "{page}");
}

#[tokio::test]
async fn bad_usage_exits_2_and_a_dead_receiver_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_binary(dir.path(), &["status", "pending"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = run_binary(
        dir.path(),
        &["replay", "--file", "/nonexistent/x.json"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let closed = format!("http://127.0.0.1:{}/webhook", free_port());
    let out = run_binary(
        dir.path(),
        &["text", "--url", &closed, "--app-secret", "s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        show(&out)
    );
    let out = run_binary(dir.path(), &["--help"], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("out-of-order"));
}

/// Runs `whatsapp-gateway simulate <args> --url <app>/webhook` with the test app's secret and
/// number in the environment, in an empty directory.
async fn simulate(app: &TestApp, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let url = app.url("/webhook");
    let mut all = args.to_vec();
    all.extend(["--url", &url]);
    let env = [
        ("APP_SECRET", APP_SECRET),
        ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
    ];
    run_binary(dir.path(), &all, &env).await
}

/// Runs `whatsapp-gateway simulate <args>` in `cwd` with only `env` (and PATH) set. Async, so
/// the in-process gateway keeps serving while it runs.
async fn run_binary(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"))
        .arg("simulate")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(cwd)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("simulate finished within 60 s")
        .unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The wamids a run printed, in order (one per message, echo or status line).
fn wamids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| {
            l.starts_with("    ") && !l.trim_start().starts_with(|c: char| c.is_ascii_digit())
        })
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| w.starts_with("wamid."))
        .map(str::to_owned)
        .collect()
}

#[test]
fn wamids_are_read_from_the_report_lines() {
    let report = "POST x (signed)\n[1] text (3 bytes)\n    message (text) wamid.A\n    200 OK in 1 ms: {\"id\":\"wamid.B\"}\n";
    assert_eq!(wamids(report), ["wamid.A"]);
}
