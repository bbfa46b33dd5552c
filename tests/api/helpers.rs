//! Test harness: a real `redis-server` on a free loopback port ([`TestRedis`]), a wiremock Graph
//! API, the real router served over HTTP on a random port ([`spawn_app`]), and the real binary as a
//! child process ([`Gateway`]). Shared by the `api` and `fault` test binaries (each uses a subset,
//! hence the `dead_code` allowance).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use whatsapp_gateway::config::Settings;
use whatsapp_gateway::startup::Application;
use whatsapp_gateway::webhook::AppSecret;
use wiremock::MockServer;

/// Which store backend a contract test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Embedded,
}

pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const ACCESS_TOKEN: &str = "test-access-token";
pub const PHONE_NUMBER_ID: &str = "106540352242922";

/// Every `content.type` the gateway stores a WhatsApp message as (besides `unknown`).
pub const CONTENT_TYPES: [&str; 17] = [
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "unsupported",
    "edit",
    "revoke",
    "request_welcome",
];

/// Generates `redis` and `embedded` test modules running each listed async fn with that backend.
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod redis_backend {
            $( #[tokio::test] async fn $name() { super::$name($crate::helpers::Backend::Redis).await } )*
        }
        mod embedded_backend {
            $( #[tokio::test] async fn $name() { super::$name($crate::helpers::Backend::Embedded).await } )*
        }
    };
}

/// The conversation with `contact` on a `GET /v1/conversations` page (panics when absent).
pub fn conversation_in(page: &Value, contact: &str) -> Value {
    page["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of conversations: {page}"))
        .iter()
        .find(|c| c["contact"]["id"] == contact)
        .cloned()
        .unwrap_or_else(|| panic!("no conversation with {contact} in {page}"))
}

/// Now, in unix seconds (Meta's timestamps).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `check` every 50 ms until it gives `Some`, for at most 10 s; each check may take at
/// most 5 s (one that hangs, a browser call say, must not hang the test).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(value)) = tokio::time::timeout(Duration::from_secs(5), check()).await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` arguments of the compose set-up: AOF on, `appendfsync everysec`, no RDB.
pub const AOF_EVERYSEC: [&str; 6] = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
];

/// A `redis-server` child process on loopback, killed on drop.
pub struct TestRedis {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl TestRedis {
    /// Starts a fresh server (no persistence) on a free port.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts a fresh server with AOF on and `appendfsync everysec` (the compose set-up).
    pub fn start_aof() -> Self {
        Self::start_with(&AOF_EVERYSEC)
    }

    /// Starts a fresh server with extra arguments (e.g. AOF settings).
    pub fn start_with(args: &[&str]) -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server with SIGKILL (no clean shutdown, no final fsync).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port and directory, waiting until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}); run scripts/test, which installs it")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer within 10s",
            self.port
        );
    }

    /// True when the server answers PING (or asks for the password it was started with).
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .map(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
                .unwrap_or(false)
    }

    /// A plain client for assertions and seeding.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running app with its collaborators.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub graph: MockServer,
    pub redis: Option<TestRedis>,
    pub data_dir: TempDir,
    pub vars: HashMap<String, String>,
    server: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Configuration variables for a test app; tests edit them before [`spawn_app_with`].
pub fn default_vars(graph_uri: &str) -> HashMap<String, String> {
    [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("ACCESS_TOKEN", ACCESS_TOKEN),
        ("PHONE_NUMBER_ID", PHONE_NUMBER_ID),
        ("VERIFY_TOKEN", VERIFY_TOKEN),
        ("APP_SECRET", APP_SECRET),
        ("GRAPH_API_BASE", graph_uri),
        ("GRAPH_TIMEOUT_SECS", "2"),
        ("REDIS_TIMEOUT_MS", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app on `backend`, letting `configure` change variables first.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let redis = match backend {
        Backend::Redis => Some(TestRedis::start()),
        Backend::Embedded => None,
    };
    spawn_app_on(redis, configure).await
}

/// Starts the app on `redis` (the embedded store when `None`), with a per-test key prefix.
async fn spawn_app_on(
    redis: Option<TestRedis>,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let graph = MockServer::start().await;
    let mut vars = default_vars(&graph.uri());
    if let Some(redis) = &redis {
        vars.insert("REDIS_URL".into(), redis.url());
        // A per-test prefix, as the original's list name is configurable.
        vars.insert("REDIS_INBOUND_LIST".into(), "test:inbound:list".into());
        vars.insert("REDIS_KEY_PREFIX".into(), "test".into());
    }
    let data_dir = tempfile::tempdir().unwrap();
    vars.insert("DATA_DIR".into(), data_dir.path().display().to_string());
    configure(&mut vars);
    let mut app = TestApp {
        address: String::new(),
        http: reqwest::Client::new(),
        graph,
        redis,
        data_dir,
        vars,
        server: tokio::spawn(async {}),
        stop: None,
    };
    app.start().await;
    app
}

impl TestApp {
    async fn start(&mut self) {
        let vars = self.vars.clone();
        let settings =
            Settings::from_lookup(|k| vars.get(k).cloned()).expect("valid test settings");
        let application = Application::build(settings).await.expect("app builds");
        self.address = format!("http://127.0.0.1:{}", application.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        self.server = tokio::spawn(async move {
            application
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    }

    /// Stops the server (gracefully) and starts a new one with the same configuration and data.
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(15), server)
            .await
            .expect("server stops")
            .unwrap();
        self.start().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs a webhook signed with the test app secret.
    pub async fn post_webhook(&self, body: &str) -> reqwest::Response {
        let signature = sign(body.as_bytes());
        self.post_webhook_raw(body.as_bytes().to_vec(), Some(&signature))
            .await
    }

    /// POSTs a webhook with an explicit (or no) signature header.
    pub async fn post_webhook_raw(
        &self,
        body: Vec<u8>,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url("/webhook"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send().await.unwrap()
    }

    /// GET `path`, returning the status.
    pub async fn get_status(&self, path: &str) -> reqwest::StatusCode {
        self.http.get(self.url(path)).send().await.unwrap().status()
    }

    /// A plain connection to the app's Redis, for assertions and seeding.
    pub async fn redis_connection(&self) -> redis::aio::MultiplexedConnection {
        let redis = self.redis.as_ref().expect("a Redis-backed app");
        redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// POST /get with a JSON body.
    pub async fn post_get(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/get"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POST /get, asserting 200, returning the messages.
    pub async fn messages_of(&self, number: &str) -> Vec<Value> {
        let response = self.post_get(json!({ "number": number })).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let messages = body["messages"].as_array().unwrap().clone();
        assert_eq!(body["count"], messages.len());
        messages
    }

    /// Ids of the stored messages of `number`, oldest first.
    pub async fn ids_of(&self, number: &str) -> Vec<String> {
        self.messages_of(number)
            .await
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// POST /send with a JSON body.
    pub async fn post_send(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/send"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub fn redis(&mut self) -> &mut TestRedis {
        self.redis.as_mut().expect("a Redis-backed app")
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// A connection of its own to an embedded app's database file.
    pub fn database(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_path().join("whatsapp-gateway.sqlite3")).unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Ids of the messages stored for `number`, oldest first, read through `POST /get` of the
/// service at `base_url` (an in-process app or a spawned binary).
pub async fn stored_ids(base_url: &str, number: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .post(format!("{base_url}/get"))
        .json(&json!({ "number": number }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = body["messages"].as_array().expect("a /get answer");
    messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `sha256=<hex>` of `body` under the test app secret.
pub fn sign(body: &[u8]) -> String {
    AppSecret::new(&SecretString::from(APP_SECRET)).sign(body)
}

/// `POST /v1/conversations/{contact}/read`: the status and the JSON answer.
pub async fn post_read(app: &TestApp, contact: &str) -> (u16, Value) {
    post_empty(app, &format!("/v1/conversations/{contact}/read")).await
}

/// `DELETE /v1/conversations/{contact}` (declared JSON, as a state-changing request must be
/// while API_KEY is unset): its status.
pub async fn delete_conversation(app: &TestApp, contact: &str) -> u16 {
    app.http
        .delete(app.url(&format!("/v1/conversations/{contact}")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A bodiless `POST path` (declared JSON, as a state-changing request must be while API_KEY is
/// unset): status and JSON (null when the answer is not JSON).
pub async fn post_empty(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Meta's error answer with `code`, as the Graph API sends it (`type`, `error_subcode`,
/// `error_data.details`, `fbtrace_id`), with HTTP `status`.
pub fn meta_error(code: i64, status: u16) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status).set_body_json(json!({"error": {
        "message": format!("(#{code}) something"), "type": "OAuthException", "code": code,
        "error_subcode": 2494010, "error_data": {"messaging_product": "whatsapp", "details": "the details"},
        "fbtrace_id": "AbC123"}}))
}

/// One inbound text message object as Meta sends it.
pub fn text_message(id: &str, from: &str, body: &str) -> Value {
    json!({ "from": from, "id": id, "timestamp": "1757936743", "type": "text", "text": { "body": body } })
}

/// A `calls` notification of one call by `from` (a phone, or a BSUID as `from_user_id`) at
/// `ts`, in `direction` (`USER_INITIATED`, `BUSINESS_INITIATED`).
pub fn calls_webhook(from: &str, ts: i64, direction: &str) -> String {
    let mut call = json!({
        "id": format!("wacid.{from}.{ts}.{direction}"), "to": "15551713917",
        "event": "connect", "timestamp": ts.to_string(), "direction": direction,
        "session": {"sdp_type": "offer", "sdp": "v=0"}
    });
    let caller = if from.contains('.') {
        "from_user_id"
    } else {
        "from"
    };
    call[caller] = from.into();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "calls", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Kerry"}, "wa_id": from}],
            "calls": [call]}}]}]})
    .to_string()
}

/// A notification with one entry and one change carrying `messages` (Kerry's contact card).
pub fn webhook_with(messages: Vec<Value>) -> String {
    webhook_of(
        vec![json!({ "profile": { "name": "Kerry" }, "wa_id": "919216598210" })],
        messages,
    )
}

/// The same with the contact cards `contacts`.
pub fn webhook_of(contacts: Vec<Value>, messages: Vec<Value>) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15551713917", "phone_number_id": PHONE_NUMBER_ID },
            "contacts": contacts,
            "messages": messages,
        }}]}]
    })
    .to_string()
}

/// A running `whatsapp-gateway` binary whose output goes to a file.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Gateway {
    pub fn spawn(vars: &HashMap<String, String>, cwd: &Path) -> Self {
        Self::spawn_on(free_port(), vars, cwd)
    }

    /// Starts the binary on a given port (to restart it where clients expect it).
    pub fn spawn_on(port: u16, vars: &HashMap<String, String>, cwd: &Path) -> Self {
        Self::spawn_command(port, &[], vars, cwd)
    }

    /// Starts `whatsapp-gateway <args>` (e.g. `sandbox`) with PORT set to `port`.
    pub fn spawn_command(
        port: u16,
        args: &[&str],
        vars: &HashMap<String, String>,
        cwd: &Path,
    ) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars)
            .env("PORT", port.to_string())
            .current_dir(cwd)
            .stdout(log.reopen().unwrap())
            .stderr(File::options().append(true).open(log.path()).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited with {status}: {}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gateway not ready within 10s: {}", self.output());
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- Store integrity and readiness helpers (issue 6) ----

impl TestRedis {
    /// Replaces the extra arguments used by the next [`TestRedis::restart`] (same port, same
    /// directory, so AOF/RDB data carries over).
    pub fn set_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
    }

    /// Runs one command on a fresh connection.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let mut conn = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }
}

/// Starts the app on a Redis the test started itself (with its own arguments).
pub async fn spawn_app_on_redis(
    redis: TestRedis,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    spawn_app_on(Some(redis), configure).await
}

impl TestApp {
    /// GET /readyz: status and JSON body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = self.http.get(self.url("/readyz")).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Polls `/readyz` until it answers `status`, for up to `within`; returns its last body.
    pub async fn wait_readyz(&self, status: u16, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (got, body) = self.readyz().await;
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {got} after {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GET `path`, asserted 200: its JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// POST /webhook `body` (signed), asserted 200 (the answer in the message otherwise): the
    /// acknowledgement's JSON.
    pub async fn post_webhook_ok(&self, body: &str) -> Value {
        let response = self.post_webhook(body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The value of one unlabelled metric (e.g. `whatsapp_gateway_messages_id_conflict_total`).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} not in {text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// `count` text messages from `from` with ids `<prefix><i>`, i from `first`.
pub fn numbered_messages(prefix: &str, from: &str, first: usize, count: usize) -> Vec<Value> {
    (first..first + count)
        .map(|i| text_message(&format!("{prefix}{i}"), from, &format!("text {i}")))
        .collect()
}

// ---- Live event stream helpers (issue 7) ----

/// Starts a second gateway instance on `first`'s Redis, with the same key prefixes (its own data
/// directory and Graph mock), letting `configure` change variables first.
pub async fn spawn_instance_sharing_redis(
    first: &TestApp,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let shared: Vec<(String, String)> = ["REDIS_URL", "REDIS_INBOUND_LIST", "REDIS_KEY_PREFIX"]
        .iter()
        .filter_map(|k| Some((k.to_string(), first.vars.get(*k)?.clone())))
        .collect();
    assert!(!shared.is_empty(), "the first instance must use Redis");
    spawn_app_on(None, move |vars| {
        vars.extend(shared);
        configure(vars);
    })
    .await
}

impl TestApp {
    /// Stops the server gracefully (as SIGTERM does) and returns how long it took; panics after
    /// `within`.
    pub async fn stop(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        tokio::time::timeout(within, server)
            .await
            .unwrap_or_else(|_| panic!("server did not stop within {within:?}"))
            .unwrap();
        started.elapsed()
    }
}

/// Meta accepting every send (a Graph mock's responder): the recipient as `wa_id` and a fresh
/// wamid (`wamid.AUTO<n>`) each time.
#[derive(Default)]
pub struct AcceptSends(std::sync::atomic::AtomicU64);

impl wiremock::Respond for AcceptSends {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": format!("wamid.AUTO{n}")}],
        }))
    }
}
