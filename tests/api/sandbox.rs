//! The sandbox: the gateway against its built-in Meta. Customers write in through the real
//! `/webhook` (signed), sends go through the real `/v1/messages` and Graph client, and Meta's
//! double answers as Meta does, posts the statuses back and lets the customer answer.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use whatsapp_gateway::sandbox::{Options, Sandbox, meta};

use crate::helpers::*;

/// A sandbox on a free port with Meta's side sped up; stops when dropped.
struct Running {
    base: String,
    meta: String,
    http: reqwest::Client,
    _data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Running {
    async fn start(opening: bool) -> Self {
        let data = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(Options {
            port: 0,
            data_dir: data.path().to_owned(),
            api_key: None,
            opening,
            pace: meta::Pace {
                sent: Duration::from_millis(50),
                delivered: Duration::from_millis(100),
                read: Duration::from_millis(150),
                reply: Duration::from_millis(200),
            },
        })
        .await
        .unwrap();
        let base = format!("http://127.0.0.1:{}", sandbox.port());
        let meta = format!("http://{}", sandbox.meta_address);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            sandbox
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            meta,
            http: reqwest::Client::new(),
            _data: data,
            stop: Some(stop),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn send(&self, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The messages of `contact`'s conversation, oldest first.
    async fn thread(&self, contact: &str) -> Vec<Value> {
        let page = self
            .get(&format!("/v1/conversations/{contact}/messages?limit=50"))
            .await;
        page["messages"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn the_customers_write_in_through_the_real_webhook() {
    let sandbox = Running::start(true).await;
    let conversations = eventually("the three customers' conversations", || async {
        let list = sandbox.get("/v1/conversations").await;
        let all = list["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kerry = all.iter().find(|c| c["contact"]["id"] == "919216598210");
        (all.len() == 3 && kerry.is_some_and(|k| k["message_count"] == 2)).then_some(all)
    })
    .await;
    let names: Vec<&str> = conversations
        .iter()
        .map(|c| c["contact"]["name"].as_str().unwrap())
        .collect();
    for name in ["Ana Souza", "Kerry Fisher", "Luis Romero"] {
        assert!(names.contains(&name), "{names:?}");
    }
    // Luis is known by his BSUID only.
    let luis = conversations
        .iter()
        .find(|c| c["contact"]["name"] == "Luis Romero")
        .unwrap();
    assert_eq!(luis["contact"]["id"], "US.13491208655302741918");
    assert!(luis["contact"].get("wa_id").is_none());
    // Kerry's photo is served through the media proxy from Meta's double.
    let kerry = sandbox.thread("919216598210").await;
    let image = kerry.iter().find(|m| m["type"] == "image").unwrap();
    let id = image["content"]["id"].as_str().unwrap();
    let photo = sandbox
        .http
        .get(format!("{}/v1/media/{id}", sandbox.base))
        .send()
        .await
        .unwrap();
    assert_eq!(photo.status(), 200);
    assert_eq!(photo.headers()["content-type"], "image/png");
    assert!(photo.bytes().await.unwrap().starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn a_send_gets_meta_s_statuses_and_the_customer_s_answer() {
    let sandbox = Running::start(false).await;
    let sent = sandbox
        .send(json!({"to": "+55 11 98888-7777", "type": "text", "text": {"body": "It ships Monday, ok?"}}))
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wamid."), "{sent}");
    let record = eventually("the read status", || async {
        let m = sandbox.get(&format!("/v1/messages/{id}")).await;
        (m["status"] == "read").then_some(m)
    })
    .await;
    let history: Vec<&str> = record["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["sent", "delivered", "read"]);
    let answer = eventually("Ana's answer", || async {
        let thread = sandbox.thread("5511988887777").await;
        thread.into_iter().find(|m| m["direction"] == "inbound")
    })
    .await;
    assert_eq!(answer["body"], "Yes, that works for me 👍");
    assert_eq!(answer["context"]["id"], id.as_str(), "it quotes the send");
    assert_eq!(answer["contact"]["name"], "Ana Souza");

    // Reply buttons: the customer taps the first.
    let buttons = sandbox
        .send(
            json!({"to": "919216598210", "type": "interactive", "interactive": {"type": "button",
            "body": {"text": "Deliver tomorrow?"}, "action": {"buttons": [
                {"type": "reply", "reply": {"id": "yes-tomorrow", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "later", "title": "Later"}}]}}}),
        )
        .await;
    let tapped = eventually("Kerry's button reply", || async {
        let thread = sandbox.thread("919216598210").await;
        thread
            .into_iter()
            .find(|m| m["type"] == "interactive" && m["direction"] == "inbound")
    })
    .await;
    assert_eq!(
        tapped["content"]["interactive"]["id"], "yes-tomorrow",
        "{tapped}"
    );
    assert_eq!(
        tapped["context"]["id"], buttons["id"],
        "the tap quotes the interactive message"
    );
}

#[tokio::test]
async fn uploads_round_trip_and_meta_s_double_refuses_like_meta() {
    let sandbox = Running::start(false).await;
    let bytes = b"%PDF-1.4 sandbox test document".to_vec();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone())
            .file_name("terms.pdf")
            .mime_str("application/pdf")
            .unwrap(),
    );
    let uploaded: Value = sandbox
        .http
        .post(format!("{}/v1/media", sandbox.base))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uploaded["id"].as_str().unwrap();
    let back = sandbox
        .http
        .get(format!("{}/v1/media/{id}", sandbox.base))
        .send()
        .await
        .unwrap();
    assert_eq!(back.headers()["content-type"], "application/pdf");
    assert_eq!(back.bytes().await.unwrap().to_vec(), bytes);

    // What the gateway would never send, straight at the double: Meta's error objects.
    let messages = format!(
        "{}/v22.0/{}/messages",
        sandbox.meta,
        whatsapp_gateway::simulate::payload::DEFAULT_PHONE_NUMBER_ID
    );
    let no_type = sandbox
        .http
        .post(&messages)
        .bearer_auth(meta::ACCESS_TOKEN)
        .json(&json!({"messaging_product": "whatsapp", "to": "919216598210"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 400);
    let error: Value = no_type.json().await.unwrap();
    assert_eq!(error["error"]["code"], 100);
    assert_eq!(error["error"]["error_data"]["details"], "type is required");
    let no_token = sandbox
        .http
        .post(&messages)
        .json(&json!({"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {"body": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let error: Value = no_token.json().await.unwrap();
    assert_eq!(error["error"]["code"], 190);
    // A method Meta does not take there: Meta's error object, not a bare 405.
    let put = sandbox
        .http
        .put(&messages)
        .bearer_auth(meta::ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 400);
    let error: Value = put.json().await.unwrap();
    assert_eq!(error["error"]["code"], 100);
}

#[tokio::test]
async fn the_sandbox_command_serves_the_inbox_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let mut sandbox = Gateway::spawn_command(
        free_port(),
        &["sandbox", "--quiet-customers", "--data-dir", &data],
        &HashMap::new(),
        dir.path(),
    );
    sandbox.wait_ready().await;
    let http = reqwest::Client::new();
    let inbox = http.get(sandbox.url("/inbox")).send().await.unwrap();
    assert_eq!(inbox.status(), 200);
    // Sends work with no token configured anywhere but the sandbox's own.
    let sent = http
        .post(sandbox.url("/v1/messages"))
        .json(&json!({"to": "919216598210", "type": "text", "text": {"body": "Hello"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    sandbox.signal("TERM");
    let status = sandbox.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}: {}", sandbox.output());
    let out = sandbox.output();
    assert!(
        out.contains(&format!("open http://127.0.0.1:{}/inbox", sandbox.port)),
        "{out}"
    );
    assert!(
        out.contains("the customers answer what you send them"),
        "{out}"
    );
}

/// A flag that does not parse (or a $PORT that is not a port) is a usage error naming it.
#[tokio::test]
async fn bad_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, port, named) in [
        (&["sandbox", "--port", "abc"][..], None, "--port"),
        (&["sandbox", "--data-dir"][..], None, "--data-dir"),
        (&["sandbox"][..], Some("eighty"), "--port"),
        (&["sandbox", "--verbose"][..], None, "--verbose"),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(dir.path());
        if let Some(port) = port {
            command.env("PORT", port);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing started, nothing created"
    );
}

/// The sandbox never reads `config.env` (or `.env`): with both in its working directory, full of
/// settings that would change what it does (a key to sign in with, a Redis that is not there, a
/// real-looking token, number, Graph base and app secret), it runs exactly as without them: an
/// open inbox, its own store, sends answered by its own Meta from its own number, and that Meta's
/// signed statuses accepted.
#[tokio::test]
async fn the_sandbox_command_does_not_read_config_env() {
    let dir = tempfile::tempdir().unwrap();
    let settings = "API_KEY=from-config-env\n\
                    REDIS_URL=redis://127.0.0.1:1/0\n\
                    ACCESS_TOKEN=token-from-config-env\n\
                    PHONE_NUMBER_ID=999000999\n\
                    GRAPH_API_BASE=http://127.0.0.1:1/v22.0\n\
                    APP_SECRET=secret-from-config-env\n\
                    ALLOWED_HOSTS=nowhere.example\n";
    for file in ["config.env", ".env"] {
        std::fs::write(dir.path().join(file), settings).unwrap();
    }
    let data = dir.path().join("data").display().to_string();
    let mut sandbox = Gateway::spawn_command(
        free_port(),
        &["sandbox", "--quiet-customers", "--data-dir", &data],
        &HashMap::new(),
        dir.path(),
    );
    // Ready: its store answers (no Redis on port 1 is tried).
    sandbox.wait_ready().await;
    let http = reqwest::Client::new();
    let session: Value = http
        .get(sandbox.url("/inbox/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        session["auth"], "open",
        "no API_KEY from config.env: {session}"
    );
    let sent = http
        .post(sandbox.url("/v1/messages"))
        .json(&json!({"to": "919216598210", "type": "text", "text": {"body": "Hello"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "its own Meta and token answer");
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(
        sent["from"],
        whatsapp_gateway::simulate::payload::DEFAULT_PHONE_NUMBER_ID,
        "{sent}"
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    // Its Meta's statuses are signed with its own APP_SECRET and accepted.
    eventually("the sent status from the sandbox's Meta", || async {
        let m: Value = http
            .get(sandbox.url(&format!("/v1/messages/{id}")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (m["status"] != "accepted" && m["status"].is_string()).then_some(())
    })
    .await;
    assert!(std::path::Path::new(&data).is_dir(), "its own store");
    sandbox.signal("TERM");
    let status = sandbox.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}: {}", sandbox.output());
}
