//! The real binary as a child process: start-up errors, start-up warnings, logs without secrets,
//! graceful shutdown on SIGTERM, durability across SIGKILL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_naming_every_variable() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("LOG_FORMAT", "xml"),
            ("REDIS_URL", "localhost:6379"),
            ("GRAPH_API_BASE", "graph.facebook.com"),
        ]),
        dir.path(),
    );
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(2));
    let output = gateway.output();
    for expected in [
        "LOG_FORMAT: must be 'pretty' or 'json'",
        "REDIS_URL: must start with",
        "GRAPH_API_BASE: must be an http:// or https:// URL",
    ] {
        assert!(output.contains(expected), "{expected:?} not in {output}");
    }
}

#[tokio::test]
async fn config_env_in_the_working_directory_is_loaded_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.env"),
        "VERIFY_TOKEN=from-file\nAPI_KEY=file-key\nLOG_FORMAT=json\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("API_KEY", "env-key"),
            ("DATA_DIR", data.path().to_str().unwrap()),
        ]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let client = reqwest::Client::new();
    let verify = client
        .get(gateway.url("/webhook?hub.mode=subscribe&hub.verify_token=from-file&hub.challenge=42"))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.text().await.unwrap(), "42");
    let with_env_key = client
        .post(gateway.url("/get"))
        .bearer_auth("env-key")
        .json(&json!({"number": "919216598210"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_env_key.status(), 200);
    let with_file_key = client
        .post(gateway.url("/get"))
        .bearer_auth("file-key")
        .json(&json!({"number": "919216598210"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_file_key.status(), 401);
}

#[tokio::test]
async fn start_up_warns_when_webhooks_and_client_endpoints_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &vars(&[("DATA_DIR", dir.path().to_str().unwrap())]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let output = gateway.output();
    assert!(output.contains("APP_SECRET is not set"), "{output}");
    assert!(output.contains("API_KEY is not set"), "{output}");
    assert!(
        output.contains("store.ready") && output.contains("embedded"),
        "{output}"
    );
}

/// A misspelt message type in the rules file is taken (a file an earlier release started with
/// keeps starting) but said at start-up, naming the rule, the field and the name.
#[tokio::test]
async fn a_misspelt_type_in_the_rules_file_is_taken_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[[rules]]\nid = \"typo\"\nwhen = { types = [\"text\", \"txet\"] }\n\
         reply = { type = \"text\", text = { body = \"hi\" } }\n\n\
         [[rules]]\nid = \"fine\"\nwhen = { types = \"image\" }\n\
         reply = { type = \"text\", text = { body = \"nice\" } }\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("DATA_DIR", data.to_str().unwrap()),
            ("AUTO_REPLY_RULES_FILE", file.to_str().unwrap()),
            ("ACCESS_TOKEN", "token"),
            ("PHONE_NUMBER_ID", "1001"),
        ]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let rules: serde_json::Value = reqwest::get(gateway.url("/v1/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = rules["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of rules: {rules}"))
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["fine", "typo"], "both rules taken: {rules}");
    let output = gateway.output();
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("rules.unknown_type"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, for the typo only: {output}"
    );
    for expected in ["typo", "when.types", "txet"] {
        assert!(
            warnings[0].contains(expected),
            "{expected} in {}",
            warnings[0]
        );
    }
}

#[tokio::test]
async fn logs_carry_the_original_event_names_and_never_a_secret() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "Invalid OAuth access token", "code": 190, "fbtrace_id": "X"}})))
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        "tok-SECRET-access",
        "app-SECRET-hmac",
        "key-SECRET-client",
        "ver-SECRET-verify",
        "pw-SECRET-redis",
    ];
    let redis = TestRedis::start_with(&["--save", "", "--requirepass", secrets[4]]);
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("ACCESS_TOKEN", secrets[0]),
            ("APP_SECRET", secrets[1]),
            ("API_KEY", secrets[2]),
            ("VERIFY_TOKEN", secrets[3]),
            (
                "REDIS_URL",
                &format!("redis://:{}@127.0.0.1:{}/0", secrets[4], redis.port),
            ),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
            ("GRAPH_API_BASE", &graph.uri()),
            ("RUST_LOG", "debug"),
            ("LOG_FORMAT", "json"),
        ]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let client = reqwest::Client::new();
    let secret = whatsapp_gateway::webhook::AppSecret::new(&secrets[1].to_string().into());
    let body = webhook_with(vec![text_message("wamid.L", "919216598210", "hi")]);
    let good = client
        .post(gateway.url("/webhook"))
        .header("X-Hub-Signature-256", secret.sign(body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let bad = client
        .post(gateway.url("/webhook"))
        .header("X-Hub-Signature-256", sign(body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    for token in [secrets[3], "wrong-token"] {
        client
            .get(gateway.url(&format!(
                "/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1"
            )))
            .send()
            .await
            .unwrap();
    }
    let get = client
        .post(gateway.url("/get"))
        .bearer_auth(secrets[2])
        .json(&json!({"number": "919216598210"}))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let send = client
        .post(gateway.url("/send"))
        .header("X-API-Key", secrets[2])
        .json(&json!({"number": "919216598210", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 400);
    let send_body = send.text().await.unwrap();
    assert_eq!(
        client
            .post(gateway.url("/get"))
            .bearer_auth("nope")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(10)).await.success());

    let output = gateway.output();
    for secret in secrets {
        assert!(!output.contains(secret), "{secret} leaked into logs");
        assert!(
            !send_body.contains(secret),
            "{secret} leaked into an error body"
        );
    }
    for event in [
        "webhook.store success",
        "messages.fetch success",
        "send.request",
        "send.error",
        "webhook.verify",
        "webhook.rejected",
        "request_id",
    ] {
        assert!(output.contains(event), "{event} missing from logs");
    }
    assert!(
        !output.contains("919216598210"),
        "full phone numbers are masked in logs"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messages": [{"id": "wamid.slow"}]}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("ACCESS_TOKEN", ACCESS_TOKEN),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
            ("GRAPH_API_BASE", &graph.uri()),
            ("DATA_DIR", dir.path().to_str().unwrap()),
        ]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let url = gateway.url("/send");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"number": "919216598210", "text": "slow"}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    gateway.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = reqwest::Client::new()
        .get(gateway.url("/healthz"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "new connections are refused while draining"
    );
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn embedded_store_keeps_every_acknowledged_message_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let env = vars(&[("DATA_DIR", dir.path().to_str().unwrap())]);
    let mut gateway = Gateway::spawn(&env, dir.path());
    gateway.wait_ready().await;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let id = format!("wamid.K{i}");
        let body = webhook_with(vec![text_message(&id, "919216598210", "x")]);
        if client
            .post(gateway.url("/webhook"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            acknowledged.push(id);
        }
    }
    assert_eq!(acknowledged.len(), 40);
    gateway.signal("KILL");
    gateway.wait_exit(Duration::from_secs(5)).await;

    let mut restarted = Gateway::spawn(&env, dir.path());
    restarted.wait_ready().await;
    let ids = stored_ids(&restarted.url(""), "919216598210").await;
    assert_eq!(ids, acknowledged);
}

/// The embedded store is single-instance: a second gateway on the same DATA_DIR refuses to start
/// (naming the directory, the lock file and the holder, and pointing to REDIS_URL) before it
/// opens the database; the first keeps serving; once the first is SIGKILLed the kernel has
/// released the lock and a new gateway starts on the same data.
#[tokio::test]
async fn a_second_gateway_on_the_same_data_dir_refuses_to_start_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let env = vars(&[("DATA_DIR", data)]);
    let mut first = Gateway::spawn(&env, dir.path());
    first.wait_ready().await;
    let client = reqwest::Client::new();
    let post = |url: String, id: &str| {
        let body = webhook_with(vec![text_message(id, "919216598210", "x")]);
        let request = client.post(url).body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(first.url("/webhook"), "wamid.L1").await, 200);

    let mut second = Gateway::spawn(&env, dir.path());
    let status = second.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1), "{}", second.output());
    let output = second.output();
    let lock_file = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("whatsapp-gateway.lock");
    for expected in [
        format!("DATA_DIR {data} is in use"),
        format!(
            "process {} holds its lock {}",
            first.child.id(),
            lock_file.display()
        ),
        "The embedded store is single-instance".to_owned(),
        "set REDIS_URL".to_owned(),
    ] {
        assert!(output.contains(&expected), "{expected:?} not in {output}");
    }
    // The first keeps serving, and nobody else answers on the second's port.
    assert_eq!(post(first.url("/webhook"), "wamid.L2").await, 200);
    assert_eq!(
        client
            .get(first.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(client.get(second.url("/healthz")).send().await.is_err());

    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await;
    let mut third = Gateway::spawn(&env, dir.path());
    third.wait_ready().await;
    assert_eq!(post(third.url("/webhook"), "wamid.L3").await, 200);
    let ids = stored_ids(&third.url(""), "919216598210").await;
    assert_eq!(ids, ["wamid.L1", "wamid.L2", "wamid.L3"]);
}

#[tokio::test]
async fn pretty_logs_to_a_pipe_have_no_colour_codes_and_echo_no_huge_text() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "z".repeat(200_000), "code": 1}})),
        )
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    // stdout is a file here, not a terminal; LOG_FORMAT defaults to pretty.
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("ACCESS_TOKEN", ACCESS_TOKEN),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
            ("GRAPH_API_BASE", &graph.uri()),
            ("DATA_DIR", dir.path().to_str().unwrap()),
        ]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let send = reqwest::Client::new()
        .post(gateway.url("/send"))
        .json(&json!({"number": "919216598210", "text": "the private text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 502);
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(10)).await.success());
    let output = gateway.output();
    assert!(output.contains("server.listening"), "{output}");
    assert!(output.contains("send.error"), "{output}");
    assert!(
        !output.contains("\x1b["),
        "ANSI codes in piped logs: {output:?}"
    );
    assert!(!output.contains("the private text"), "message text logged");
    assert!(output.len() < 16 * 1024, "{} bytes of logs", output.len());
}

#[tokio::test]
async fn an_unreachable_graph_api_is_logged_with_its_cause() {
    let closed_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{closed_port}/v22.0");
    let mut gateway = Gateway::spawn(
        &vars(&[
            ("ACCESS_TOKEN", ACCESS_TOKEN),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
            ("GRAPH_API_BASE", &base),
            ("DATA_DIR", dir.path().to_str().unwrap()),
        ]),
        dir.path(),
    );
    gateway.wait_ready().await;
    let send = reqwest::Client::new()
        .post(gateway.url("/send"))
        .json(&json!({"number": "919216598210", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 502);
    gateway.signal("TERM");
    gateway.wait_exit(Duration::from_secs(10)).await;
    let output = gateway.output();
    let line = output
        .lines()
        .find(|l| l.contains("send.error"))
        .unwrap_or_else(|| panic!("no send.error in {output}"));
    assert!(
        line.contains(&format!(
            "Graph API unreachable: connection refused (GRAPH_API_BASE {base})"
        )),
        "{line}"
    );
    assert!(!output.contains(ACCESS_TOKEN));
}
