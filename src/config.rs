//! Configuration from the environment.
//!
//! Variable names are the FastAPI original's (ACCESS_TOKEN, PHONE_NUMBER_ID, BUSINESS_ACCOUNT_ID,
//! GRAPH_API_BASE, VERIFY_TOKEN, REDIS_URL, REDIS_INBOUND_LIST) so its `config.env` works unchanged;
//! the rest are new and all have defaults. `main` loads `config.env` then `.env` with dotenvy; real
//! environment variables win. An empty value counts as unset (config.env files often carry `KEY=`).
//!
//! [`Settings::from_lookup`] collects *every* problem before failing, so one start-up names every
//! bad variable. Secrets are [`SecretString`]s: their `Debug` prints `[REDACTED]`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Default Graph API base, as in the original.
pub const DEFAULT_GRAPH_API_BASE: &str = "https://graph.facebook.com/v22.0";
/// Default Redis list prefix, as in the original.
pub const DEFAULT_INBOUND_LIST: &str = "whatsapp:inbound:list";
/// Default prefix of the keys the original did not have (dedupe markers, conversation index).
pub const DEFAULT_KEY_PREFIX: &str = "whatsapp";
/// Default request body limit: Meta sends webhooks up to 3 MB, which must pass.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default memory budget of all request bodies being received at once.
pub const DEFAULT_UPLOAD_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// Everything the service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub graph: GraphSettings,
    pub webhook: WebhookSettings,
    /// When set, client endpoints require `Authorization: Bearer <API_KEY>` or `X-API-Key`.
    pub api_key: Option<SecretString>,
    pub store: StoreSettings,
    pub log_format: LogFormat,
    /// The live event stream (`GET /v1/events`, `GET /v1/ws`).
    pub events: EventSettings,
    /// INBOX_SESSION_HOURS (default 12, 1-720): how long an inbox sign-in lasts.
    pub inbox_session: Duration,
    /// Outgoing webhooks (`WEBHOOK_*`, see [`crate::outgoing`]).
    pub outgoing: OutgoingSettings,
    /// Auto-replies (`AUTO_REPLY_*`, see [`crate::rules`]).
    pub rules: RulesSettings,
}

/// Auto-replies.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// AUTO_REPLY_RULES_FILE: a TOML file of `[[rules]]`, installed at start-up.
    pub file: Option<std::path::PathBuf>,
    /// AUTO_REPLY_MAX_PER_HOUR (default 20, 1-10000): auto-replies one contact gets an hour at
    /// most (a loop guard against another bot).
    pub max_per_hour: u32,
    /// AUTO_REPLY_MAX_AGE (default `1h`, 1s-24h): messages older than this when judged (after an
    /// outage) are not answered.
    pub max_age: Duration,
}

/// Outgoing webhooks to client apps.
#[derive(Debug, Clone)]
pub struct OutgoingSettings {
    /// WEBHOOK_ALLOW_PRIVATE (default false): deliveries may go to loopback, private and
    /// link-local addresses.
    pub allow_private: bool,
    /// WEBHOOK_RETRY_SCHEDULE (default `5s,5m,30m,2h,5h,10h,10h`): the waits before each retry;
    /// after the last one's attempt fails the delivery is dead.
    pub retry_schedule: Vec<Duration>,
    /// WEBHOOK_DISABLE_AFTER (default `5days`): a subscription whose deliveries all failed this
    /// long is disabled.
    pub disable_after: Duration,
    /// WEBHOOK_TIMEOUT_SECS (default 15, 1-60): one attempt's time limit.
    pub timeout: Duration,
    /// WEBHOOK_CONCURRENCY (default 64): attempts in flight per instance.
    pub concurrency: usize,
    /// WEBHOOK_URL, WEBHOOK_SECRET, WEBHOOK_EVENTS: the subscription config.env defines (id
    /// `config`).
    pub configured: Option<ConfiguredHook>,
}

/// The subscription config.env defines.
#[derive(Debug, Clone)]
pub struct ConfiguredHook {
    pub url: String,
    pub secret: SecretString,
    /// `None`: every event type.
    pub events: Option<Vec<String>>,
}

/// The default WEBHOOK_RETRY_SCHEDULE (svix's).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// Parses a retry schedule: 1 to 20 comma-separated durations (`5s`, `500ms`, `2h`, `1day`),
/// each at most 7 days.
pub fn parse_retry_schedule(v: &str) -> Option<Vec<Duration>> {
    let waits: Vec<Duration> = v
        .split(',')
        .map(|d| humantime::parse_duration(d.trim()).ok())
        .collect::<Option<_>>()?;
    ((1..=20).contains(&waits.len()) && waits.iter().all(|w| *w <= Duration::from_secs(7 * 86_400)))
        .then_some(waits)
}

/// The listener and its limits.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// HOST (default 127.0.0.1; the Docker image sets 0.0.0.0).
    pub host: IpAddr,
    /// PORT (default 8000; 0 picks a free port, used by tests).
    pub port: u16,
    /// MAX_BODY_BYTES (default 4 MiB): larger bodies get 413.
    pub max_body_bytes: usize,
    /// REQUEST_TIMEOUT_SECS (default 30): a request still running after this gets 503.
    pub request_timeout: Duration,
    /// BODY_TIMEOUT_SECS (default 10): a body still arriving after this gets 408.
    pub body_timeout: Duration,
    /// CONCURRENCY_LIMIT (default 1024): Meta webhook requests processed at once; beyond this
    /// they get 503 at once (Meta retries). Counted after the body has arrived.
    pub concurrency_limit: usize,
    /// CLIENT_CONCURRENCY_LIMIT (default 256): client API requests (`/send`, `/get`, `/metrics`,
    /// `/docs`) processed at once, a budget of their own so slow sends cannot starve webhooks.
    pub client_concurrency_limit: usize,
    /// SHUTDOWN_GRACE_SECS (default 10): how long in-flight requests may finish after SIGTERM.
    /// In-flight sends get at least GRAPH_TIMEOUT_SECS (+1 s), so Meta's answer is not cut off.
    pub shutdown_grace: Duration,
    /// MAX_CONNECTIONS (default: 3/4 of the open-file limit, at most 16384): open connections
    /// beyond this are closed at once, so the process never runs out of file descriptors.
    pub max_connections: Option<usize>,
    /// HEADER_READ_TIMEOUT_SECS (default 10): a request head must arrive complete within this
    /// time, counted from the connection's start or, on a keep-alive connection, from the end of
    /// the previous response; so it is also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// MAX_UPLOADS (default 2048): request bodies being received at once; more get 503 at once.
    pub max_uploads: usize,
    /// MAX_UPLOADS_PER_CLIENT (default 128): request bodies being received at once from one
    /// client address.
    pub max_uploads_per_client: usize,
    /// UPLOAD_MEMORY_BYTES (default 64 MiB): memory all request bodies being received may take
    /// together; an upload that would pass it gets 503 at once.
    pub upload_memory_bytes: usize,
    /// MIN_UPLOAD_BYTES_PER_SEC (default 1024; 0 disables): after a 2 s grace, a body arriving
    /// slower than this on average is cut off with 408.
    pub min_upload_rate: u64,
    /// MEDIA_UPLOAD_MAX_BYTES (default 100 MiB, Meta's largest: documents): the largest file
    /// `POST /v1/media` takes; Meta's smaller limits per kind apply below it. That route streams
    /// its body to Meta instead of buffering it, so MAX_BODY_BYTES and UPLOAD_MEMORY_BYTES do not
    /// apply to it (its request may be up to 64 KiB larger than the file, for the form).
    pub media_upload_max_bytes: u64,
    /// MEDIA_UPLOAD_TIMEOUT_SECS (default 600): the whole of a `POST /v1/media`, upload to Meta
    /// included, must end within this (instead of REQUEST_TIMEOUT_SECS and BODY_TIMEOUT_SECS);
    /// MIN_UPLOAD_BYTES_PER_SEC still applies to it.
    pub media_upload_timeout: Duration,
    /// HTTP2 (default false): accept HTTP/2 over cleartext (prior knowledge) besides HTTP/1.1.
    pub http2: bool,
    /// HTTP2_MAX_STREAMS (default 32): concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// ALLOWED_HOSTS (default `localhost,127.0.0.1,::1`): while API_KEY is unset, client
    /// endpoints answer only requests whose Host is one of these (DNS rebinding protection);
    /// `*` allows any. Ignored when API_KEY is set; never applied to `/webhook`.
    pub allowed_hosts: AllowedHosts,
    /// TRUSTED_PROXIES (default none): addresses or CIDR ranges of the reverse proxies in front
    /// of the gateway. A request whose TCP peer is one of them is counted (wrong-key limit,
    /// upload budgets) under the client address its `X-Forwarded-For` names: the rightmost entry
    /// that is not itself a trusted proxy. From any other peer the header is ignored.
    pub trusted_proxies: TrustedProxies,
}

/// The reverse proxies whose `X-Forwarded-For` is believed (TRUSTED_PROXIES).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// A comma- or space-separated list of IP addresses and CIDR ranges (`10.0.0.0/8`,
    /// `127.0.0.1`, `::1`, `fd00::/8`); `None` when an entry is neither, or is a /0 (it would
    /// trust every client, and with it whatever address a client writes). An IPv4-mapped entry
    /// (`::ffff:10.0.0.0/104`, as dual-stack logs show peers) is kept as its IPv4 range, the
    /// form [`Self::contains`] compares.
    pub fn parse(value: &str) -> Option<Self> {
        value
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                    .map(|net| match net {
                        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => {
                            match v6.addr().to_ipv4_mapped() {
                                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                                    .map_or(net, ipnet::IpNet::V4),
                                None => net,
                            }
                        }
                        _ => net,
                    })
                    .map(|net| net.trunc())
                    .filter(|net| net.prefix_len() > 0)
            })
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// Whether `address` is one of them (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }
}

/// Host names the client API answers while API_KEY is unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// `*`: every host.
    Any,
    /// Lowercase host names or IP literals, without port (`::1` without brackets).
    Only(Vec<String>),
}

impl AllowedHosts {
    /// The default: loopback names only.
    pub fn loopback() -> Self {
        Self::Only(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
    }

    /// Whether a `Host` header value (`name`, `name:port`, `[v6]:port`) is allowed.
    pub fn allows(&self, host_header: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => {
                let host = host_name(host_header);
                names.iter().any(|n| n.eq_ignore_ascii_case(host))
            }
        }
    }

    fn parse(value: &str) -> Option<Self> {
        let names: Vec<String> = value
            .split(',')
            .map(|n| {
                n.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .filter(|n| !n.is_empty())
            .collect();
        if names.iter().any(|n| n == "*") {
            return (names.len() == 1).then_some(Self::Any);
        }
        let valid = |n: &String| {
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
        };
        (!names.is_empty() && names.iter().all(valid)).then_some(Self::Only(names))
    }
}

/// The host part of a Host header: strips the port and IPv6 brackets.
fn host_name(header: &str) -> &str {
    let header = header.trim();
    if let Some(rest) = header.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match header.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => header,
    }
    .trim_end_matches('.')
}

/// How to reach Meta's Graph API.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// GRAPH_API_BASE, without a trailing slash.
    pub base_url: String,
    /// ACCESS_TOKEN; without it /send answers 503.
    pub access_token: Option<SecretString>,
    /// PHONE_NUMBER_ID; without it /send answers 503.
    pub phone_number_id: Option<String>,
    /// BUSINESS_ACCOUNT_ID (kept for templates and later features).
    pub business_account_id: Option<String>,
    /// GRAPH_TIMEOUT_SECS (default 15): whole-request timeout for Graph calls.
    pub timeout: Duration,
    /// Every business number we send from: PHONE_NUMBER_ID first (the default), then the ones
    /// PHONE_NUMBERS adds, each once.
    pub numbers: Vec<BusinessNumber>,
    /// SEND_RATE_PER_SECOND (default 80, Meta's default throughput per number; up to 100,000 for
    /// a stub or a number Meta upgraded): sends per second per business number; a burst above it
    /// queues briefly ([`crate::graph::pacer`]).
    pub send_rate: usize,
}

impl GraphSettings {
    /// What keeps the configured numbers from sending or from reading templates: none at all,
    /// a number without a token, a number without a WABA.
    fn number_warnings(&self) -> Vec<String> {
        let Some(default) = self.numbers.first() else {
            return vec!["No business number is configured (PHONE_NUMBER_ID, or PHONE_NUMBERS): POST /send and POST /v1/messages answer 503 until one is set with its ACCESS_TOKEN.".to_owned()];
        };
        let mut warnings = Vec::new();
        if self.phone_number_id.is_none() {
            warnings.push(format!("PHONE_NUMBER_ID is not set: {} (the first of PHONE_NUMBERS) is the default number, which POST /send and sends without `from` use.", default.id));
        }
        let lacking = |lacks: fn(&BusinessNumber) -> bool| -> Vec<&str> {
            self.numbers
                .iter()
                .filter(|n| lacks(n))
                .map(|n| n.id.as_str())
                .collect()
        };
        let tokenless = lacking(|n| n.access_token.is_none());
        if !tokenless.is_empty() {
            warnings.push(format!("No access token for {} (neither ACCESS_TOKEN_<id> nor ACCESS_TOKEN is set): sends from it answer 503.", tokenless.join(", ")));
        }
        let wabaless = lacking(|n| n.waba_id.is_none());
        if !wabaless.is_empty() {
            warnings.push(format!("No WhatsApp Business Account for {} (neither BUSINESS_ACCOUNT_ID_<id> nor BUSINESS_ACCOUNT_ID is set): GET /v1/templates answers 503 for it.", wabaless.join(", ")));
        }
        warnings
    }
}

/// A business number we send from.
///
/// PHONE_NUMBER_ID is the default: its token is ACCESS_TOKEN, its display number
/// DISPLAY_PHONE_NUMBER and its WABA BUSINESS_ACCOUNT_ID. PHONE_NUMBERS (a comma-separated list of
/// phone_number_ids) adds more. Every number, the default included, may have its own
/// `ACCESS_TOKEN_<id>`, `DISPLAY_PHONE_NUMBER_<id>` and `BUSINESS_ACCOUNT_ID_<id>`, and falls back
/// to the shared ACCESS_TOKEN and BUSINESS_ACCOUNT_ID (one system-user token usually covers every
/// number of a portfolio).
#[derive(Debug, Clone)]
pub struct BusinessNumber {
    /// Meta's phone_number_id (digits).
    pub id: String,
    /// The number as people dial it (digits), when configured.
    pub display_phone_number: Option<String>,
    /// The WhatsApp Business Account it belongs to, when configured.
    pub waba_id: Option<String>,
    /// Its token, else the shared ACCESS_TOKEN; none when neither is set.
    pub access_token: Option<SecretString>,
}

/// What Meta's webhook calls are checked against.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// VERIFY_TOKEN for the GET handshake; without it every handshake is refused.
    pub verify_token: Option<SecretString>,
    /// APP_SECRET for X-Hub-Signature-256; without it webhooks are unauthenticated.
    pub app_secret: Option<SecretString>,
    /// SIGNATURE_UNICODE_FALLBACK (default false): also accept a signature computed over the body
    /// with its non-ASCII characters re-escaped as `\uXXXX`, for proxies that decode Meta's
    /// escapes. Off by default: it costs a second pass over the body for every wrong signature.
    pub unicode_fallback: bool,
    /// WEBHOOK_SILENCE_MINUTES (default 60, 1-10080): after deliveries had arrived, this long
    /// without one is reported as a likely set-up failure ([`crate::service::delivery`]).
    pub silence_warning: Duration,
}

/// Which store backend, chosen by whether REDIS_URL is set.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    Redis(RedisSettings),
    Embedded(EmbeddedSettings),
}

/// The Redis backend.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// REDIS_URL (may hold a password, hence secret).
    pub url: SecretString,
    /// REDIS_INBOUND_LIST: per-number lists are `<this>:<digits>`.
    pub inbound_list: String,
    /// REDIS_KEY_PREFIX (default `whatsapp`): every key of ours but the FastAPI lists starts with it.
    pub key_prefix: String,
    /// REDIS_TIMEOUT_MS (default 2000): connect and response timeout, so a dead Redis yields a
    /// quick 503 rather than a hung webhook.
    pub timeout: Duration,
    /// REDIS_ALLOW_EVICTION (default false): accept a Redis whose `maxmemory-policy` evicts keys.
    /// Eviction silently deletes acknowledged messages and dedupe markers, so by default such a
    /// Redis is refused (start-up fails, and saves get 503 if the policy changes at runtime).
    pub allow_eviction: bool,
    /// EVENT_RETENTION: events kept for clients that resume (see [`DEFAULT_EVENT_RETENTION`]).
    pub event_retention: usize,
}

/// EVENT_RETENTION default: how many of the latest events the store keeps at least for
/// event-stream clients that reconnect: a row cap in SQLite; in Redis the number of stream
/// entries (`MAXLEN ~`, trimmed by whole nodes, so somewhat more), where one entry holds one
/// write's events (a webhook chunk's, 1 or more), so at least this many events. A client that was
/// away for more events than this may get a `reset` event.
pub const DEFAULT_EVENT_RETENTION: usize = 10_000;

/// The embedded (SQLite) backend.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    /// DATA_DIR (default `./data`); the database is `<DATA_DIR>/whatsapp-gateway.sqlite3`.
    pub data_dir: PathBuf,
    /// EVENT_RETENTION (see [`DEFAULT_EVENT_RETENTION`]).
    pub event_retention: usize,
}

impl EmbeddedSettings {
    /// The SQLite database: `<DATA_DIR>/whatsapp-gateway.sqlite3`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(crate::store::embedded::DB_FILE)
    }
}

/// The live event stream's limits.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// MAX_EVENT_STREAMS (default 1000): event streams (SSE and WebSocket) open at once; past it
    /// a new one gets 503. Streams have this budget of their own: they never hold a
    /// CLIENT_CONCURRENCY_LIMIT slot after their first answer.
    pub max_streams: usize,
    /// EVENT_HEARTBEAT_SECS (default 15): how often an idle stream gets a heartbeat (an SSE
    /// comment, a WebSocket ping), so proxies keep it open and dead peers are found.
    pub heartbeat: Duration,
    /// EVENT_CLIENT_BUFFER (default 256): events queued for one client beyond what its connection
    /// holds; a client further behind is disconnected (`lagged`) instead of slowing anything.
    pub client_buffer: usize,
}

/// LOG_FORMAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable (default).
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Every invalid variable, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup` (tests pass a map instead of mutating the process env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env {
            lookup: &|key| lookup(key).filter(|v| !v.trim().is_empty()),
            problems: Default::default(),
        };
        let secret = |key: &str| env.get(key).map(SecretString::from);

        let http = HttpSettings {
            host: env.parsed_with(
                "HOST",
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                "an IP address such as 127.0.0.1 or 0.0.0.0",
                |v| {
                    if v == "localhost" {
                        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    } else {
                        v.parse().ok()
                    }
                },
            ),
            port: env.parsed("PORT", 8000, "a port number 0-65535"),
            max_body_bytes: env.bounded("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, usize::MAX),
            request_timeout: Duration::from_secs(env.bounded("REQUEST_TIMEOUT_SECS", 30, 1, 3600)),
            body_timeout: Duration::from_secs(env.bounded("BODY_TIMEOUT_SECS", 10, 1, 3600)),
            concurrency_limit: env.bounded("CONCURRENCY_LIMIT", 1024, 1, 1_000_000),
            client_concurrency_limit: env.bounded("CLIENT_CONCURRENCY_LIMIT", 256, 1, 1_000_000),
            shutdown_grace: Duration::from_secs(env.bounded("SHUTDOWN_GRACE_SECS", 10, 0, 3600)),
            max_connections: env.parsed_opt(
                "MAX_CONNECTIONS",
                "an integer from 16 to 1000000",
                |v| v.parse().ok().filter(|n| (16..=1_000_000).contains(n)),
            ),
            header_read_timeout: Duration::from_secs(env.bounded(
                "HEADER_READ_TIMEOUT_SECS",
                10,
                1,
                3600,
            )),
            max_uploads: env.bounded("MAX_UPLOADS", 2048, 1, 1_000_000),
            max_uploads_per_client: env.bounded("MAX_UPLOADS_PER_CLIENT", 128, 1, 1_000_000),
            upload_memory_bytes: env.bounded(
                "UPLOAD_MEMORY_BYTES",
                DEFAULT_UPLOAD_MEMORY_BYTES,
                1024,
                usize::MAX >> 4,
            ),
            min_upload_rate: env.bounded("MIN_UPLOAD_BYTES_PER_SEC", 1024, 0, u64::MAX >> 4),
            media_upload_max_bytes: env.bounded(
                "MEDIA_UPLOAD_MAX_BYTES",
                100 * 1024 * 1024,
                1024,
                1 << 40,
            ),
            media_upload_timeout: Duration::from_secs(env.bounded(
                "MEDIA_UPLOAD_TIMEOUT_SECS",
                600,
                1,
                86_400,
            )),
            http2: env.parsed_with("HTTP2", false, "true or false", parse_bool),
            http2_max_streams: env.bounded("HTTP2_MAX_STREAMS", 32, 1, 1000),
            allowed_hosts: env.parsed_with(
                "ALLOWED_HOSTS",
                AllowedHosts::loopback(),
                "a comma-separated list of host names or IP addresses (no ports), or *",
                AllowedHosts::parse,
            ),
            trusted_proxies: env.parsed_with(
                "TRUSTED_PROXIES",
                TrustedProxies::default(),
                "a comma-separated list of IP addresses or CIDR ranges other than /0 (e.g. 127.0.0.1,10.0.0.0/8,::1)",
                TrustedProxies::parse,
            ),
        };
        if http.upload_memory_bytes < http.max_body_bytes {
            env.problem(
                "UPLOAD_MEMORY_BYTES",
                "must be at least MAX_BODY_BYTES (one largest body must fit)",
            );
        }
        let graph = GraphSettings {
            base_url: env.parsed_with(
                "GRAPH_API_BASE",
                DEFAULT_GRAPH_API_BASE.to_owned(),
                "an http:// or https:// URL",
                |v| {
                    (v.starts_with("http://") || v.starts_with("https://"))
                        .then(|| v.trim_end_matches('/').to_owned())
                },
            ),
            access_token: secret("ACCESS_TOKEN"),
            phone_number_id: env.parsed_opt(
                "PHONE_NUMBER_ID",
                "digits only (the id from Meta's dashboard, not the phone number)",
                |v| v.bytes().all(|b| b.is_ascii_digit()).then(|| v.to_owned()),
            ),
            business_account_id: waba_id(&env, "BUSINESS_ACCOUNT_ID"),
            timeout: Duration::from_secs(env.bounded("GRAPH_TIMEOUT_SECS", 15, 1, 300)),
            numbers: Vec::new(),
            send_rate: env.bounded("SEND_RATE_PER_SECOND", 80, 1, 100_000),
        };
        let graph = GraphSettings {
            numbers: business_numbers(&env, &graph),
            ..graph
        };
        let webhook = WebhookSettings {
            verify_token: secret("VERIFY_TOKEN"),
            app_secret: secret("APP_SECRET"),
            unicode_fallback: env.parsed_with(
                "SIGNATURE_UNICODE_FALLBACK",
                false,
                "true or false",
                parse_bool,
            ),
            silence_warning: Duration::from_secs(
                60 * env.bounded("WEBHOOK_SILENCE_MINUTES", 60, 1, 10_080),
            ),
        };
        let event_retention =
            env.bounded("EVENT_RETENTION", DEFAULT_EVENT_RETENTION, 100, 10_000_000);
        let store = match env.get("REDIS_URL") {
            Some(url) => {
                if !["redis://", "rediss://", "unix://", "redis+unix://"]
                    .iter()
                    .any(|s| url.starts_with(s))
                {
                    env.problem(
                        "REDIS_URL",
                        "must start with redis://, rediss:// or unix://",
                    );
                }
                StoreSettings::Redis(RedisSettings {
                    url: SecretString::from(url),
                    inbound_list: env
                        .get("REDIS_INBOUND_LIST")
                        .unwrap_or_else(|| DEFAULT_INBOUND_LIST.to_owned()),
                    key_prefix: env
                        .get("REDIS_KEY_PREFIX")
                        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned()),
                    timeout: Duration::from_millis(env.bounded(
                        "REDIS_TIMEOUT_MS",
                        2000,
                        10,
                        600_000,
                    )),
                    allow_eviction: env.parsed_with(
                        "REDIS_ALLOW_EVICTION",
                        false,
                        "true or false",
                        parse_bool,
                    ),
                    event_retention,
                })
            }
            None => StoreSettings::Embedded(EmbeddedSettings {
                data_dir: env
                    .get("DATA_DIR")
                    .unwrap_or_else(|| "./data".to_owned())
                    .into(),
                event_retention,
            }),
        };
        let log_format = env.parsed_with(
            "LOG_FORMAT",
            LogFormat::Pretty,
            "'pretty' or 'json'",
            |v| match v {
                "pretty" => Some(LogFormat::Pretty),
                "json" => Some(LogFormat::Json),
                _ => None,
            },
        );
        let api_key = secret("API_KEY");
        let events = EventSettings {
            max_streams: env.bounded("MAX_EVENT_STREAMS", 1000, 1, 1_000_000),
            heartbeat: Duration::from_secs(env.bounded("EVENT_HEARTBEAT_SECS", 15, 1, 3600)),
            client_buffer: env.bounded("EVENT_CLIENT_BUFFER", 256, 1, 65_536),
        };
        let inbox_session =
            Duration::from_secs(3600 * env.bounded("INBOX_SESSION_HOURS", 12, 1, 720));
        let outgoing = outgoing_settings(&env);
        let rules = RulesSettings {
            file: env
                .get("AUTO_REPLY_RULES_FILE")
                .filter(|f| !f.is_empty())
                .map(Into::into),
            max_per_hour: env.bounded("AUTO_REPLY_MAX_PER_HOUR", 20, 1, 10_000),
            max_age: env.parsed_with(
                "AUTO_REPLY_MAX_AGE",
                Duration::from_secs(3600),
                "a duration from 1s to 24h, such as 10m or 1h",
                |v| duration_within(v, Duration::from_secs(1), Duration::from_secs(86_400)),
            ),
        };

        let problems = env.problems.into_inner();
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Self {
            http,
            graph,
            webhook,
            api_key,
            store,
            log_format,
            events,
            inbox_session,
            outgoing,
            rules,
        })
    }

    /// Risky but allowed combinations, for start-up warnings.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.webhook.app_secret.is_none() {
            warnings.push("APP_SECRET is not set: POST /webhook accepts unsigned requests, so anyone who finds the URL can inject messages. Set it to your Meta app secret (App Dashboard > Settings > Basic).".to_owned());
        }
        if self.api_key.is_none() {
            let exposed = if self.http.host.is_loopback() {
                ""
            } else {
                " HOST is not loopback, so the whole network can."
            };
            let hosts = match &self.http.allowed_hosts {
                AllowedHosts::Any => "ALLOWED_HOSTS=* lets every host name through.".to_owned(),
                AllowedHosts::Only(names) => format!(
                    "ALLOWED_HOSTS ({}) only keeps browser pages out (DNS rebinding): any other client can send one of those Host names, so it is no access control.",
                    names.join(", ")
                ),
            };
            warnings.push(format!("API_KEY is not set: anyone who can reach this port (an ngrok URL exposes it) can send and read messages.{exposed} {hosts}"));
        }
        if self.webhook.verify_token.is_none() {
            warnings.push("VERIFY_TOKEN is not set: Meta's webhook verification (GET /webhook) will be refused.".to_owned());
        }
        if self.http.request_timeout < self.graph.timeout * 2 {
            warnings.push(format!("REQUEST_TIMEOUT_SECS ({}) is less than twice GRAPH_TIMEOUT_SECS ({}): a send that Meta answers slowly (and is tried again) can outlast the request, so the client gets a 503 while the send completes (its record and Idempotency-Key answer are still kept). Raise REQUEST_TIMEOUT_SECS.", self.http.request_timeout.as_secs(), self.graph.timeout.as_secs()));
        }
        warnings.extend(self.graph.number_warnings());
        if let StoreSettings::Redis(redis) = &self.store
            && redis.allow_eviction
        {
            warnings.push("REDIS_ALLOW_EVICTION is true: if Redis's maxmemory-policy evicts keys, acknowledged messages and dedupe markers can silently disappear (measured: 41% of messages lost under allkeys-lru). Use maxmemory-policy noeviction and unset it.".to_owned());
        }
        warnings
    }
}

/// A WhatsApp Business Account id from `key`: digits, as Meta's dashboard shows it. Anything else
/// (a pasted URL, the business name) would make every template and number call fail later with
/// a confusing Graph error, so it is refused at start-up.
fn waba_id(env: &Env<'_>, key: &str) -> Option<String> {
    env.parsed_opt(
        key,
        "digits only (the WhatsApp Business Account id from Meta's dashboard)",
        |v| {
            (!v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.to_owned())
        },
    )
}

/// PHONE_NUMBER_ID, then PHONE_NUMBERS (see [`BusinessNumber`]).
fn business_numbers(env: &Env<'_>, graph: &GraphSettings) -> Vec<BusinessNumber> {
    let digits = |v: &str| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit());
    let display = |key: &str| {
        env.parsed_opt(
            key,
            "the phone number in digits (a leading + is fine)",
            |v| {
                let v = v.trim_start_matches('+');
                digits(v).then(|| v.to_owned())
            },
        )
    };
    let mut numbers = Vec::new();
    if let Some(id) = &graph.phone_number_id {
        // The default number's own `_<id>` variables win over the shared ones too.
        numbers.push(BusinessNumber {
            id: id.clone(),
            display_phone_number: display(&format!("DISPLAY_PHONE_NUMBER_{id}"))
                .or_else(|| display("DISPLAY_PHONE_NUMBER")),
            waba_id: waba_id(env, &format!("BUSINESS_ACCOUNT_ID_{id}"))
                .or_else(|| graph.business_account_id.clone()),
            access_token: env
                .get(&format!("ACCESS_TOKEN_{id}"))
                .map(SecretString::from)
                .or_else(|| graph.access_token.clone()),
        });
    }
    let listed = env
        .parsed_opt(
            "PHONE_NUMBERS",
            "a comma-separated list of phone_number_ids (digits, from Meta's dashboard)",
            |v| {
                let ids: Vec<String> = v.split(',').map(|id| id.trim().to_owned()).collect();
                ids.iter().all(|id| digits(id)).then_some(ids)
            },
        )
        .unwrap_or_default();
    for id in listed {
        if numbers.iter().any(|n: &BusinessNumber| n.id == id) {
            continue;
        }
        numbers.push(BusinessNumber {
            display_phone_number: display(&format!("DISPLAY_PHONE_NUMBER_{id}")),
            waba_id: waba_id(env, &format!("BUSINESS_ACCOUNT_ID_{id}"))
                .or_else(|| graph.business_account_id.clone()),
            access_token: env
                .get(&format!("ACCESS_TOKEN_{id}"))
                .map(SecretString::from)
                .or_else(|| graph.access_token.clone()),
            id,
        });
    }
    numbers
}

/// Why `file` could not be read, without quoting the file: dotenvy's own text quotes the line
/// it could not parse, which may be a secret without its `=` (`ACCESS_TOKEN EAAG...`).
pub fn unreadable_env_file(file: &str, e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(text, _) => {
            let first = text.lines().next().unwrap_or_default();
            let number = std::fs::read_to_string(file).ok().and_then(|content| {
                content
                    .lines()
                    .position(|line| line == first)
                    .map(|i| i + 1)
            });
            match number {
                Some(n) => format!(
                    "{file} line {n} is not a KEY=value line (its text is not shown: it may hold a secret)"
                ),
                None => format!(
                    "{file} has a line that is not KEY=value (its text is not shown: it may hold a secret)"
                ),
            }
        }
        other => format!("{file} could not be read: {other}"),
    }
}

/// Loads `config.env`, then `.env`, from the working directory: each fills in only what the
/// environment (and the file before it) does not set. Returns the files read and, for each file
/// that exists but does not parse, why ([`unreadable_env_file`]: never its text).
pub fn load_env_files() -> (Vec<&'static str>, Vec<String>) {
    let (mut read, mut problems) = (Vec::new(), Vec::new());
    for file in ["config.env", ".env"] {
        match dotenvy::from_filename(file) {
            Ok(_) => read.push(file),
            Err(e) if e.not_found() => {}
            Err(e) => problems.push(unreadable_env_file(file, &e)),
        }
    }
    (read, problems)
}

/// The `WEBHOOK_*` variables of outgoing webhooks.
fn outgoing_settings(env: &Env<'_>) -> OutgoingSettings {
    let allow_private =
        env.parsed_with("WEBHOOK_ALLOW_PRIVATE", false, "true or false", parse_bool);
    let configured = match (env.get("WEBHOOK_URL"), env.get("WEBHOOK_SECRET")) {
        (Some(url), secret) => {
            if let Err(rule) = crate::outgoing::target::parse_url(&url, allow_private) {
                env.problem("WEBHOOK_URL", &rule);
            }
            match &secret {
                None => env.problem(
                    "WEBHOOK_SECRET",
                    "is needed with WEBHOOK_URL: whsec_ followed by the base64 of 24 to 64 random bytes (e.g. echo whsec_$(openssl rand -base64 32))",
                ),
                Some(s) => {
                    if let Err(rule) = crate::outgoing::signature::SigningSecret::parse(s) {
                        env.problem("WEBHOOK_SECRET", rule);
                    }
                }
            }
            let events = env.parsed_opt(
                "WEBHOOK_EVENTS",
                "a comma-separated list of event types (letters, digits, _ and .), at most 64",
                |v| {
                    crate::outgoing::subscription::parse_event_types(v.split(',').map(str::trim))
                        .ok()
                },
            );
            secret.map(|secret| ConfiguredHook {
                url,
                secret: SecretString::from(secret),
                events,
            })
        }
        (None, Some(_)) => {
            env.problem(
                "WEBHOOK_SECRET",
                "is set but WEBHOOK_URL is not: set both or neither",
            );
            None
        }
        (None, None) => {
            if env.get("WEBHOOK_EVENTS").is_some() {
                env.problem("WEBHOOK_EVENTS", "is set but WEBHOOK_URL is not");
            }
            None
        }
    };
    OutgoingSettings {
        allow_private,
        retry_schedule: env.parsed_with(
            "WEBHOOK_RETRY_SCHEDULE",
            parse_retry_schedule(DEFAULT_RETRY_SCHEDULE).unwrap_or_default(),
            "1 to 20 comma-separated durations such as 5s,5m,30m,2h (each at most 7 days)",
            parse_retry_schedule,
        ),
        disable_after: env.parsed_with(
            "WEBHOOK_DISABLE_AFTER",
            Duration::from_secs(5 * 86_400),
            "a duration from 1s to 365days, such as 5days or 12h",
            |v| duration_within(v, Duration::from_secs(1), MAX_DURATION),
        ),
        timeout: Duration::from_secs(env.bounded("WEBHOOK_TIMEOUT_SECS", 15, 1, 60)),
        concurrency: env.bounded("WEBHOOK_CONCURRENCY", 64, 1, 10_000),
        configured,
    }
}

/// The longest duration a setting or a rule takes (`WEBHOOK_DISABLE_AFTER`, a rule's `once_per`).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// A humantime duration (`90s`, `24h`, `7days`) from `min` to `max`, both included.
pub fn duration_within(text: &str, min: Duration, max: Duration) -> Option<Duration> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| (min..=max).contains(d))
}

/// Variable reader that records problems instead of stopping at the first.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: std::cell::RefCell<Vec<String>>,
}

impl Env<'_> {
    fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key).map(|v| v.trim().to_owned())
    }

    fn problem(&self, key: &str, rule: &str) {
        self.problems.borrow_mut().push(format!("{key}: {rule}"));
    }

    fn parsed_opt<T>(&self, key: &str, rule: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let raw = self.get(key)?;
        let value = parse(&raw);
        if value.is_none() {
            // The value itself is not echoed: the variable might be a secret put in the wrong place.
            self.problem(key, &format!("must be {rule}"));
        }
        value
    }

    fn parsed_with<T>(
        &self,
        key: &str,
        default: T,
        rule: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        self.parsed_opt(key, rule, parse).unwrap_or(default)
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str, default: T, rule: &str) -> T {
        self.parsed_with(key, default, rule, |v| v.parse().ok())
    }

    fn bounded<T>(&self, key: &str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let rule = if max.to_string().len() > 12 {
            format!("an integer >= {min}")
        } else {
            format!("an integer from {min} to {max}")
        };
        self.parsed_with(key, default, &rule, |v| {
            v.parse().ok().filter(|n| *n >= min && *n <= max)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_variables() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.http.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.http.port, 8000);
        assert_eq!(s.http.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(s.graph.base_url, "https://graph.facebook.com/v22.0");
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert!(
            matches!(s.store, StoreSettings::Embedded(ref e) if e.data_dir == std::path::Path::new("./data"))
        );
        assert_eq!(s.warnings().len(), 4);
        assert_eq!(s.events.max_streams, 1000);
        assert_eq!(s.events.heartbeat, Duration::from_secs(15));
        assert_eq!(s.events.client_buffer, 256);
    }

    #[test]
    fn business_numbers_are_the_default_then_phone_numbers_with_their_own_or_shared_settings() {
        let s = settings(&[
            ("ACCESS_TOKEN", "shared-token"),
            ("PHONE_NUMBER_ID", "111"),
            ("DISPLAY_PHONE_NUMBER", "+15550001111"),
            ("BUSINESS_ACCOUNT_ID", "900"),
            ("PHONE_NUMBERS", "222, 111,333"),
            ("ACCESS_TOKEN_222", "own-token"),
            ("DISPLAY_PHONE_NUMBER_222", "15550002222"),
            ("BUSINESS_ACCOUNT_ID_333", "901"),
        ])
        .unwrap();
        let n = &s.graph.numbers;
        let ids: Vec<&str> = n.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["111", "222", "333"]);
        let token = |i: usize| {
            n[i].access_token
                .as_ref()
                .unwrap()
                .expose_secret()
                .to_owned()
        };
        assert_eq!(
            (token(0), token(1), token(2)),
            (
                "shared-token".into(),
                "own-token".into(),
                "shared-token".into()
            )
        );
        assert_eq!(n[0].display_phone_number.as_deref(), Some("15550001111"));
        assert_eq!(n[1].display_phone_number.as_deref(), Some("15550002222"));
        assert_eq!(n[2].display_phone_number, None);
        let wabas: Vec<Option<&str>> = n.iter().map(|n| n.waba_id.as_deref()).collect();
        assert_eq!(wabas, [Some("900"), Some("900"), Some("901")]);

        let e = settings(&[("PHONE_NUMBERS", "222,+1555")]).unwrap_err();
        assert!(e.problems[0].starts_with("PHONE_NUMBERS: must be a comma-separated list"));
        assert!(settings(&[]).unwrap().graph.numbers.is_empty());
    }

    #[test]
    fn business_account_ids_must_be_digits() {
        let e = settings(&[
            (
                "BUSINESS_ACCOUNT_ID",
                "https://business.facebook.com/settings",
            ),
            ("PHONE_NUMBERS", "222"),
            ("BUSINESS_ACCOUNT_ID_222", "Acme Ltd"),
        ])
        .unwrap_err();
        assert_eq!(
            e.problems,
            [
                "BUSINESS_ACCOUNT_ID: must be digits only (the WhatsApp Business Account id from Meta's dashboard)",
                "BUSINESS_ACCOUNT_ID_222: must be digits only (the WhatsApp Business Account id from Meta's dashboard)",
            ]
        );
        let s = settings(&[("BUSINESS_ACCOUNT_ID", " 900 "), ("PHONE_NUMBER_ID", "111")]).unwrap();
        assert_eq!(s.graph.numbers[0].waba_id.as_deref(), Some("900"));
    }

    #[test]
    fn outgoing_webhook_variables_are_checked_and_name_the_variable() {
        let problems = |vars: &[(&str, &str)]| settings(vars).unwrap_err().problems;
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let p = problems(&[("WEBHOOK_URL", "https://crm.example.com/in")]);
        assert!(
            p.len() == 1 && p[0].starts_with("WEBHOOK_SECRET: is needed with WEBHOOK_URL"),
            "{p:?}"
        );
        let p = problems(&[("WEBHOOK_SECRET", secret)]);
        assert!(
            p.len() == 1 && p[0].starts_with("WEBHOOK_SECRET: is set but WEBHOOK_URL is not"),
            "{p:?}"
        );
        let p = problems(&[("WEBHOOK_EVENTS", "message_status")]);
        assert!(p.len() == 1 && p[0].starts_with("WEBHOOK_EVENTS:"), "{p:?}");
        let p = problems(&[
            ("WEBHOOK_URL", "http://127.0.0.1:9000/in"),
            ("WEBHOOK_SECRET", "whsec_short"),
            ("WEBHOOK_EVENTS", "message status"),
            ("WEBHOOK_RETRY_SCHEDULE", "5s,soon"),
            ("WEBHOOK_DISABLE_AFTER", "500ms"),
            ("WEBHOOK_TIMEOUT_SECS", "0"),
        ]);
        let named: Vec<&str> = p.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            named,
            [
                "WEBHOOK_URL",
                "WEBHOOK_SECRET",
                "WEBHOOK_EVENTS",
                "WEBHOOK_RETRY_SCHEDULE",
                "WEBHOOK_DISABLE_AFTER",
                "WEBHOOK_TIMEOUT_SECS",
            ],
            "{p:?}"
        );
        assert!(
            p.iter().all(|p| !p.contains("whsec_short")),
            "secrets are not echoed: {p:?}"
        );
        let s = settings(&[
            ("WEBHOOK_URL", "http://127.0.0.1:9000/in"),
            ("WEBHOOK_SECRET", secret),
            ("WEBHOOK_EVENTS", "message_incoming, message_status"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_RETRY_SCHEDULE", "100ms,2h"),
        ])
        .unwrap();
        let hook = s.outgoing.configured.unwrap();
        assert_eq!(hook.events.unwrap(), ["message_incoming", "message_status"]);
        assert_eq!(
            s.outgoing.retry_schedule,
            [Duration::from_millis(100), Duration::from_secs(7200)]
        );
        let defaults = settings(&[]).unwrap().outgoing;
        assert_eq!(defaults.retry_schedule.len(), 7);
        assert_eq!(defaults.disable_after, Duration::from_secs(5 * 86_400));
        assert!(!defaults.allow_private && defaults.configured.is_none());
    }

    #[test]
    fn number_warnings_follow_the_configured_numbers() {
        let warnings = |vars: &[(&str, &str)]| -> Vec<String> {
            let s = settings(vars).unwrap();
            s.graph.number_warnings()
        };
        let none = warnings(&[("ACCESS_TOKEN", "t")]);
        assert_eq!(none.len(), 1);
        assert!(
            none[0].starts_with("No business number is configured"),
            "{none:?}"
        );
        // Every number with its token and WABA: nothing to say, with or without PHONE_NUMBER_ID's
        // shared token.
        assert!(
            warnings(&[
                ("ACCESS_TOKEN", "t"),
                ("PHONE_NUMBER_ID", "111"),
                ("BUSINESS_ACCOUNT_ID", "900"),
            ])
            .is_empty()
        );
        assert!(
            warnings(&[
                ("PHONE_NUMBER_ID", "111"),
                ("PHONE_NUMBERS", "222"),
                ("ACCESS_TOKEN_111", "a"),
                ("ACCESS_TOKEN_222", "b"),
                ("BUSINESS_ACCOUNT_ID", "900"),
            ])
            .is_empty()
        );
        // Only PHONE_NUMBERS, one without a token, one without a WABA.
        let w = warnings(&[
            ("PHONE_NUMBERS", "222,333"),
            ("ACCESS_TOKEN_222", "tok-secret-222"),
            ("BUSINESS_ACCOUNT_ID_333", "901"),
        ]);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("PHONE_NUMBER_ID is not set: 222 (the first of PHONE_NUMBERS)"));
        assert!(w[1].starts_with("No access token for 333 "), "{}", w[1]);
        assert!(
            w[2].starts_with("No WhatsApp Business Account for 222 "),
            "{}",
            w[2]
        );
        // A token never appears in a warning.
        assert!(!w.iter().any(|w| w.contains("tok-secret")));
    }

    #[test]
    fn inbox_session_and_webhook_silence_take_their_values_within_bounds() {
        let s = settings(&[
            ("INBOX_SESSION_HOURS", "48"),
            ("WEBHOOK_SILENCE_MINUTES", "15"),
        ])
        .unwrap();
        assert_eq!(s.inbox_session, Duration::from_secs(48 * 3600));
        assert_eq!(s.webhook.silence_warning, Duration::from_secs(15 * 60));
        let defaults = settings(&[]).unwrap();
        assert_eq!(defaults.inbox_session, Duration::from_secs(12 * 3600));
        assert_eq!(defaults.webhook.silence_warning, Duration::from_secs(3600));
        let e = settings(&[
            ("INBOX_SESSION_HOURS", "0"),
            ("WEBHOOK_SILENCE_MINUTES", "10081"),
        ])
        .unwrap_err();
        assert_eq!(
            e.problems,
            [
                "WEBHOOK_SILENCE_MINUTES: must be an integer from 1 to 10080",
                "INBOX_SESSION_HOURS: must be an integer from 1 to 720",
            ]
        );
    }

    #[test]
    fn a_request_timeout_shorter_than_two_graph_timeouts_is_warned_about() {
        let warned = |vars: &[(&str, &str)]| {
            settings(vars)
                .unwrap()
                .warnings()
                .iter()
                .any(|w| w.starts_with("REQUEST_TIMEOUT_SECS"))
        };
        assert!(!warned(&[]));
        assert!(warned(&[("REQUEST_TIMEOUT_SECS", "20")]));
        assert!(!warned(&[
            ("REQUEST_TIMEOUT_SECS", "20"),
            ("GRAPH_TIMEOUT_SECS", "10")
        ]));
    }

    #[test]
    fn original_config_env_selects_redis_with_its_list_name() {
        let s = settings(&[
            ("ACCESS_TOKEN", "EAAG"),
            ("PHONE_NUMBER_ID", "123456"),
            ("GRAPH_API_BASE", "https://graph.facebook.com/v22.0/"),
            ("VERIFY_TOKEN", "MY_VERIFY_TOKEN"),
            ("REDIS_URL", "redis://localhost:6379/0"),
            ("REDIS_INBOUND_LIST", "custom:list"),
        ])
        .unwrap();
        assert_eq!(s.graph.base_url, "https://graph.facebook.com/v22.0");
        assert_eq!(
            s.graph.access_token.as_ref().unwrap().expose_secret(),
            "EAAG"
        );
        let StoreSettings::Redis(r) = &s.store else {
            panic!("expected redis")
        };
        assert_eq!(r.inbound_list, "custom:list");
        assert_eq!(r.key_prefix, "whatsapp");
    }

    #[test]
    fn every_invalid_variable_is_named_at_once() {
        let err = settings(&[
            ("PORT", "eighty"),
            ("HOST", "my host"),
            ("LOG_FORMAT", "xml"),
            ("REDIS_URL", "localhost:6379"),
            ("MAX_BODY_BYTES", "12"),
            ("PHONE_NUMBER_ID", "+1 555"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for key in [
            "PORT",
            "HOST",
            "LOG_FORMAT",
            "REDIS_URL",
            "MAX_BODY_BYTES",
            "PHONE_NUMBER_ID",
            "TRUSTED_PROXIES",
        ] {
            assert!(
                text.contains(&format!("{key}: must")),
                "{key} missing from {text}"
            );
        }
        assert_eq!(err.problems.len(), 7);
    }

    #[test]
    fn trusted_proxies_are_addresses_and_ranges() {
        let s = settings(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8 ::1,fd00::/8")]).unwrap();
        let trusted = &s.http.trusted_proxies;
        for inside in [
            "127.0.0.1",
            "10.200.3.4",
            "::1",
            "fd00::9",
            "::ffff:10.0.0.1",
        ] {
            assert!(trusted.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["127.0.0.2", "11.0.0.1", "::2", "2001:db8::1"] {
            assert!(!trusted.contains(outside.parse().unwrap()), "{outside}");
        }
        // A range written from a host address means the range.
        assert!(
            TrustedProxies::parse("10.1.2.3/16")
                .unwrap()
                .contains("10.1.99.1".parse().unwrap())
        );
        assert_eq!(
            settings(&[]).unwrap().http.trusted_proxies,
            TrustedProxies::default()
        );
        // IPv4-mapped entries, as dual-stack logs show peers, mean their IPv4 addresses.
        let mapped = TrustedProxies::parse("::ffff:127.0.0.1 ::ffff:10.0.0.0/104").unwrap();
        for inside in ["127.0.0.1", "10.9.8.7", "::ffff:10.9.8.7"] {
            assert!(mapped.contains(inside.parse().unwrap()), "{inside}");
        }
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0.1-10.0.0.9",
            "0.0.0.0/0",
            "10.0.0.0/8,::/0",
            "::ffff:0.0.0.0/96",
        ] {
            let err = settings(&[("TRUSTED_PROXIES", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("TRUSTED_PROXIES: must"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = settings(&[("APP_SECRET", ""), ("REDIS_URL", "  ")]).unwrap();
        assert!(s.webhook.app_secret.is_none());
        assert!(matches!(s.store, StoreSettings::Embedded(_)));
    }

    #[test]
    fn allowed_hosts_match_names_without_ports() {
        let hosts = AllowedHosts::loopback();
        for ok in [
            "localhost",
            "localhost:8000",
            "LOCALHOST:1",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[::1]",
            "localhost.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8000",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "",
            "[::2]:80",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        let s = settings(&[("ALLOWED_HOSTS", "abc.ngrok.io, Example.COM")]).unwrap();
        assert!(s.http.allowed_hosts.allows("abc.ngrok.io"));
        assert!(s.http.allowed_hosts.allows("example.com:443"));
        assert!(!s.http.allowed_hosts.allows("localhost"));
        let any = settings(&[("ALLOWED_HOSTS", "*")]).unwrap();
        assert_eq!(any.http.allowed_hosts, AllowedHosts::Any);
        assert!(settings(&[("ALLOWED_HOSTS", "a b")]).is_err());
        assert!(settings(&[("ALLOWED_HOSTS", "*,x")]).is_err());
    }

    #[test]
    fn edge_limits_have_safe_defaults_and_are_checked() {
        let s = settings(&[]).unwrap();
        assert!(!s.http.http2);
        assert!(!s.webhook.unicode_fallback);
        assert_eq!(s.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.http.min_upload_rate, 1024);
        assert!(s.http.upload_memory_bytes >= s.http.max_body_bytes);
        let err = settings(&[("UPLOAD_MEMORY_BYTES", "2048"), ("HTTP2", "maybe")]).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let s = settings(&[("HTTP2", "true"), ("SIGNATURE_UNICODE_FALLBACK", "1")]).unwrap();
        assert!(s.http.http2 && s.webhook.unicode_fallback);
    }

    #[test]
    fn redis_eviction_is_refused_unless_explicitly_allowed() {
        let redis = |vars: &[(&str, &str)]| {
            let s = settings(vars).unwrap();
            let StoreSettings::Redis(r) = &s.store else {
                panic!("expected redis")
            };
            (r.allow_eviction, s.warnings())
        };
        let (allowed, warnings) = redis(&[("REDIS_URL", "redis://localhost")]);
        assert!(!allowed);
        assert!(!warnings.iter().any(|w| w.contains("REDIS_ALLOW_EVICTION")));
        for yes in ["true", "TRUE", "1", "yes"] {
            let (allowed, warnings) = redis(&[
                ("REDIS_URL", "redis://localhost"),
                ("REDIS_ALLOW_EVICTION", yes),
            ]);
            assert!(allowed, "{yes}");
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("REDIS_ALLOW_EVICTION is true")),
                "{warnings:?}"
            );
        }
        let (allowed, _) = redis(&[
            ("REDIS_URL", "redis://localhost"),
            ("REDIS_ALLOW_EVICTION", "false"),
        ]);
        assert!(!allowed);
        let err = settings(&[
            ("REDIS_URL", "redis://localhost"),
            ("REDIS_ALLOW_EVICTION", "maybe"),
        ])
        .unwrap_err();
        assert_eq!(
            err.problems,
            ["REDIS_ALLOW_EVICTION: must be true or false"]
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = settings(&[
            ("ACCESS_TOKEN", "tok-SECRET-1"),
            ("APP_SECRET", "app-SECRET-2"),
            ("API_KEY", "key-SECRET-3"),
            ("VERIFY_TOKEN", "ver-SECRET-4"),
            ("REDIS_URL", "redis://:pw-SECRET-5@localhost"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
    }
}
