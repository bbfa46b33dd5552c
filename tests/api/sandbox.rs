//! The sandbox: the gateway against its built-in Meta. Customers write in through the real
//! `/webhook` (signed), sends go through the real `/v1/messages` and Graph client, and Meta's
//! double answers as Meta does, posts the statuses back and lets the customer answer.

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
    sandbox
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
}

#[tokio::test]
async fn the_sandbox_command_serves_the_inbox_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"))
        .args(["sandbox", "--port", &port.to_string(), "--quiet-customers"])
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually("the sandbox to be ready", || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let inbox = http.get(format!("{base}/inbox")).send().await.unwrap();
    assert_eq!(inbox.status(), 200);
    // Sends work with no token configured anywhere but the sandbox's own.
    let sent = http
        .post(format!("{base}/v1/messages"))
        .json(&json!({"to": "919216598210", "type": "text", "text": {"body": "Hello"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let _ = std::process::Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        (status, out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(15), status)
        .await
        .expect("the sandbox stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        out.contains(&format!("open http://127.0.0.1:{port}/inbox")),
        "{out}"
    );
}
