//! Load generator for `scripts/bench`: drives the gateway (or `bare_baseline`) over raw hyper
//! HTTP/1.1 keep-alive connections and prints one JSON line with throughput, latency percentiles,
//! error counts and, optionally, server-side figures (peak RSS, CPU time per request, Redis CPU
//! time per request) and a loss/duplication check of what the server acknowledged.
//!
//! It runs on a current-thread tokio runtime so it fits on one pinned core (`taskset -c 1`), and it
//! builds the request bodies (and their `X-Hub-Signature-256`; up to 200,000 of them, the rest as it
//! goes) before the clock starts, so the numbers measure the server rather than the generator. One
//! connection per concurrent worker; a worker whose connection breaks reconnects and counts an
//! error. `client_cpu_pct` in the output is the generator's own CPU use (the whole process, SSE
//! clients included): near 100 means it, not the server, was the limit.
//!
//! Scenarios:
//! - `webhook`: POST /webhook with one text message per request, a unique id `<run-id>-<n>`, from
//!   sender `1555000` + 4-digit index (`--senders` of them, round robin). `--secret` signs the body
//!   like Meta does; `--duplicates-pct P` re-sends an already acknowledged body on P% of requests;
//!   `--verify` afterwards reads every sender back (POST /get, limit 0) and reports acknowledged ids
//!   that are missing (`lost`) or stored more than once (`duplicated`). `--sse-clients N` adds the
//!   fan-out measurement below.
//! - `get`: POST /get `{"number": --get-number, "limit": --get-limit}`.
//! - `messages`: GET /v1/conversations/`--contact`/messages?limit=`--get-limit` (the conversation
//!   history), with `X-API-Key: --api-key` when given. Every 2xx answer must be a JSON object with
//!   a `messages` array of `--expect-items` items (default: `--get-limit`); any other 2xx answer
//!   counts as `malformed`.
//! - `send`: POST /send `{"number": <sender>, "text": "hi"}`.
//! - `v1-send`: POST /v1/messages `{"to": <sender>, "type": "text", "text": {"body": "hi"}}`
//!   (with `X-API-Key: --api-key` when given).
//! - `ready`: polls GET /readyz every 5 ms until it answers 200 and prints
//!   `{"ready_ms": ...}`, measured from `--since-ns` (Unix epoch nanoseconds, taken by the caller
//!   just before it spawned the server); with `--pid` it gives up as soon as that process exits.
//!
//! `--expect-items N` also applies to `get`: every 2xx answer must then be a JSON array of N items
//! (the bare baseline) or an object with a `messages` array of N items (the gateway), else it
//! counts as `malformed`. The check parses each answer without building it (serde's
//! `IgnoredAny`), the same work for every server compared.
//!
//! `--api-key KEY` sends `X-API-Key: KEY` on every client request (`get`, `messages`, `send`, the
//! `--verify` read-back, the SSE clients), never on webhooks.
//!
//! **Redis CPU** (`--redis-port PORT`): `redis-cli -h 127.0.0.1 -p PORT INFO cpu` is run right
//! before the clock starts and right after the load (after the fan-out drain, see below), and
//! `redis_cpu_us_per_req` is the `used_cpu_sys + used_cpu_user` delta per completed request. Read
//! here rather than by the calling script so the window is the timed load only: it leaves out the
//! body preparation and the `--verify` read-back (which reads every stored message again).
//!
//! **SSE fan-out** (`--sse-clients N`, webhook scenario only): before the clock starts, N clients
//! open `GET /v1/events` (live events only, no cursor) and the load waits until every one of them
//! has its `200` response headers (the gateway subscribes a stream before it answers, so no event
//! of the load can be missed for lack of a subscription); clients that do not connect within 10 s
//! are reported (`sse_connected`) and their events count as missing. Then the webhook load runs
//! as usual. Each client parses its stream line by line as bytes arrive and, for every
//! `message_incoming` event whose message id is `<run-id>-<n>`, records when the chunk holding it
//! arrived (other event types, heartbeats and foreign ids are skipped). The worker records when
//! the 200 acknowledgement of webhook `n` arrived. Afterwards, per (client, acknowledged message):
//! delivered or missing (`sse_expected` = clients x acknowledged messages, `sse_missing` =
//! `sse_expected - sse_delivered`), and the delivery latency = event arrival - acknowledgement
//! arrival (`sse_p50_ms`, `sse_p99_ms`, `sse_max_ms`). The gateway writes the event before it
//! answers 200, so an event can arrive before the generator has read the acknowledgement: such a
//! latency counts as 0 and is counted in `sse_early`. After the last request the generator waits
//! for the outstanding events (until all expected arrived, 1 s without a new one, or 10 s), and
//! for this scenario the server and Redis CPU windows end after that wait, so they include the
//! fan-out of the last events. Clients that received `event: error` (e.g. `lagged`: they fell
//! more than EVENT_CLIENT_BUFFER events behind) or whose stream ended are counted
//! (`sse_error_events`, `sse_ended`). Without `--sse-resume` they are never retried: their later
//! events count as missing, and the latency percentiles cover the delivered events only (read
//! them together with `sse_missing`). With `--sse-resume` a client the server ended reconnects
//! at once with `Last-Event-ID` = the id of the last frame it got, as the README tells clients
//! to (`sse_resumes` counts it), and what it missed arrives from the event log, its latency
//! counted from the acknowledgement like any other.
//!
//! The SSE clients run in this process, on a second OS thread with its own current-thread tokio
//! runtime, using plain hyper connections: one process shares one monotonic clock, so the
//! acknowledgement and arrival times are joined in memory (`Instant`s, no cross-process clock, no
//! files), and the pinning of the generator (`taskset -c 1`) holds the clients on the same core,
//! so they take no more of the servers' CPU than the generator alone would. A thread of their own
//! (rather than tasks on the workers' runtime) lets the kernel interleave the two preemptively:
//! a burst of events to parse never stalls a worker between a response and its timestamp, and a
//! worker never delays a client's read. Their parsing is kept cheap: `memchr` for line ends,
//! one `memmem` search per `message_incoming` data line, one clock read per received chunk. Their
//! CPU is part of `client_cpu_pct` and is also given alone (`sse_client_cpu_pct`, over the timed
//! load); near 100 means the generator and clients together were the limit and the latencies
//! include their queueing (also when the servers' threads, which are not pinned, take turns on
//! the same core).
//!
//! **Outgoing webhooks** (`--hook-port PORT --hook-secret whsec_...`, webhook scenario only):
//! the generator is also the app a gateway subscription (WEBHOOK_URL
//! `http://127.0.0.1:PORT/hook`) delivers to: see [`hooks`] for what it checks and reports
//! (`hook_*`: delivery latency from each webhook's acknowledgement, deliveries per second, the
//! backlog left after the load). As with the SSE clients, the server and Redis CPU windows end
//! after the wait for the outstanding deliveries.
//!
//! It stops after `--requests` requests or `--max-seconds`, whichever comes first (requests still in
//! flight then are counted as `cut_off`, not as errors), and only ever connects to the host and
//! port of `--url` (and runs `redis-cli` against 127.0.0.1 with `--redis-port`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use whatsapp_gateway::outgoing::signature::SigningSecret;
use whatsapp_gateway::webhook::AppSecret;

mod hooks;

const USAGE: &str =
    "loadgen --url http://127.0.0.1:PORT --scenario webhook|get|messages|send|v1-send|ready
        [--requests N] [--concurrency C] [--senders S] [--secret SECRET] [--run-id STR]
        [--max-seconds T] [--duplicates-pct P] [--verify] [--pid PID]
        [--get-number DIGITS] [--get-limit L] [--contact DIGITS] [--expect-items N]
        [--api-key KEY] [--sse-clients N [--sse-resume]] [--hook-port PORT --hook-secret WHSEC]
        [--redis-port PORT] [--since-ns EPOCH_NS]";

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// How long the SSE clients get to receive their response headers.
const SSE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After the load: how long to wait for outstanding events at most, and without a new one.
const SSE_DRAIN_MAX: Duration = Duration::from_secs(10);
const SSE_DRAIN_QUIET: Duration = Duration::from_secs(1);
/// The SSE clients' thread (its CPU time is read by this name).
const SSE_THREAD: &str = "sse-clients";
/// At most this many (client, message) arrival slots (4 bytes each).
const SSE_SLOTS_MAX: usize = 50_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Webhook,
    Get,
    Messages,
    Send,
    V1Send,
    Ready,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Get => "get",
            Self::Messages => "messages",
            Self::Send => "send",
            Self::V1Send => "v1-send",
            Self::Ready => "ready",
        }
    }
}

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    host_header: HeaderValue,
    base_path: String,
    scenario: Scenario,
    requests: usize,
    concurrency: usize,
    senders: usize,
    secret: Option<String>,
    run_id: String,
    max_seconds: f64,
    duplicates_pct: usize,
    verify: bool,
    pid: Option<u32>,
    get_number: String,
    get_limit: u64,
    contact: String,
    expect_items: Option<usize>,
    api_key: Option<HeaderValue>,
    sse_clients: usize,
    sse_resume: bool,
    hook: Option<(u16, SigningSecret)>,
    redis_port: Option<u16>,
    since_ns: Option<u128>,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut scenario = None;
    let mut requests = 10_000usize;
    let mut concurrency = 64usize;
    let mut senders = 100usize;
    let mut secret = None;
    let mut run_id = None;
    let mut max_seconds = 60.0f64;
    let mut duplicates_pct = 0usize;
    let mut verify = false;
    let mut pid = None;
    let mut get_number = sender_number(0);
    let mut get_limit = 20u64;
    let mut contact = sender_number(0);
    let mut expect_items = None;
    let mut api_key = None;
    let mut sse_clients = 0usize;
    let mut sse_resume = false;
    let mut hook_port = None;
    let mut hook_secret = None;
    let mut redis_port = None;
    let mut since_ns = None;

    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--verify" {
            verify = true;
            continue;
        }
        if flag == "--sse-resume" {
            sse_resume = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {what} (got {value:?})");
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--scenario" => {
                scenario = Some(match value.as_str() {
                    "webhook" => Scenario::Webhook,
                    "get" => Scenario::Get,
                    "messages" => Scenario::Messages,
                    "send" => Scenario::Send,
                    "v1-send" => Scenario::V1Send,
                    "ready" => Scenario::Ready,
                    _ => return Err(bad("one of webhook, get, messages, send, v1-send, ready")),
                })
            }
            "--requests" => requests = value.parse().map_err(|_| bad("a count"))?,
            "--concurrency" => concurrency = value.parse().map_err(|_| bad("a count"))?,
            "--senders" => senders = value.parse().map_err(|_| bad("a count"))?,
            "--secret" => secret = Some(value.clone()),
            "--run-id" => run_id = Some(value.clone()),
            "--max-seconds" => max_seconds = value.parse().map_err(|_| bad("seconds"))?,
            "--duplicates-pct" => duplicates_pct = value.parse().map_err(|_| bad("0-100"))?,
            "--pid" => pid = Some(value.parse().map_err(|_| bad("a process id"))?),
            "--get-number" => get_number = value.clone(),
            "--get-limit" => get_limit = value.parse().map_err(|_| bad("a count"))?,
            "--contact" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("digits"));
                }
                contact = value.clone();
            }
            "--expect-items" => expect_items = Some(value.parse().map_err(|_| bad("a count"))?),
            "--api-key" => {
                api_key = Some(HeaderValue::from_str(&value).map_err(|_| bad("a header value"))?)
            }
            "--sse-clients" => sse_clients = value.parse().map_err(|_| bad("a count"))?,
            "--hook-port" => hook_port = Some(value.parse().map_err(|_| bad("a port"))?),
            "--hook-secret" => {
                hook_secret =
                    Some(SigningSecret::parse(&value).map_err(|e| format!("{flag}: {e}"))?)
            }
            "--redis-port" => redis_port = Some(value.parse().map_err(|_| bad("a port"))?),
            "--since-ns" => since_ns = Some(value.parse().map_err(|_| bad("epoch ns"))?),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let scenario = scenario.ok_or("--scenario is required")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| format!("--url: host must be IP:PORT (got {authority:?})"))?;
    if concurrency == 0 || senders == 0 || senders > 10_000 {
        return Err("--concurrency must be >= 1 and --senders 1-10000".into());
    }
    if duplicates_pct > 100 {
        return Err("--duplicates-pct must be 0-100".into());
    }
    if max_seconds.is_nan() || max_seconds <= 0.0 {
        return Err("--max-seconds must be > 0".into());
    }
    if sse_clients > 0 && scenario != Scenario::Webhook {
        return Err("--sse-clients needs --scenario webhook".into());
    }
    if sse_clients.saturating_mul(requests) > SSE_SLOTS_MAX {
        return Err(format!(
            "--sse-clients x --requests must be at most {SSE_SLOTS_MAX} (one arrival slot each)"
        ));
    }
    let hook = match (hook_port, hook_secret) {
        (Some(port), Some(secret)) if scenario == Scenario::Webhook => Some((port, secret)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("--hook-port needs --scenario webhook".into()),
        _ => return Err("--hook-port and --hook-secret go together".into()),
    };
    if expect_items.is_some() && !matches!(scenario, Scenario::Get | Scenario::Messages) {
        return Err("--expect-items applies to --scenario get or messages".into());
    }
    let expect_items = match scenario {
        Scenario::Messages => Some(expect_items.unwrap_or(get_limit as usize)),
        _ => expect_items,
    };
    Ok(Args {
        addr,
        host_header: HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
        base_path: path.to_owned(),
        scenario,
        requests,
        concurrency,
        senders,
        secret,
        run_id: run_id.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("wamid.bench{nanos}")
        }),
        max_seconds,
        duplicates_pct,
        verify,
        pid,
        get_number,
        get_limit,
        contact,
        expect_items,
        api_key,
        sse_clients,
        sse_resume,
        hook,
        redis_port,
        since_ns,
    })
}

/// Sender `index` as a phone number: `1555000` followed by the index in 4 digits.
fn sender_number(index: usize) -> String {
    format!("1555000{index:04}")
}

fn webhook_body(id: &str, from: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "1",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15551713917", "phone_number_id": "1"},
                    "contacts": [{"profile": {"name": "A"}, "wa_id": from}],
                    "messages": [{
                        "from": from,
                        "id": id,
                        "timestamp": "1757936743",
                        "type": "text",
                        "text": {"body": "hello"}
                    }]
                }
            }]
        }]
    })
    .to_string()
}

/// Most webhook bodies built before the clock starts; a longer run builds the rest as it goes
/// (bounded memory: ~100 MB at most for the pre-built ones).
const PREBUILD_MAX: usize = 200_000;

/// One request, built before the clock starts.
#[derive(Clone)]
struct Prepared {
    body: Bytes,
    signature: Option<HeaderValue>,
}

/// Everything the workers share.
struct Plan {
    args: Args,
    method: Method,
    path: String,
    bodies: Vec<Prepared>,
    /// Signs webhook bodies built after the clock started.
    secret: Option<AppSecret>,
    /// Next request number (all requests, fresh and duplicate).
    next: AtomicUsize,
    /// Next prepared body not yet sent.
    next_fresh: AtomicUsize,
    /// 1 + index of the most recently acknowledged fresh body (0: none yet).
    last_acked: AtomicUsize,
    deadline: Instant,
    /// With SSE clients: when each fresh webhook's acknowledgement arrived.
    acks: Option<Arc<AckTimes>>,
}

/// Microseconds since `t0` + 1 at which webhook `n`'s 2xx acknowledgement arrived (0: none). The
/// SSE clients measure their arrival times from the same `t0`.
struct AckTimes {
    t0: Instant,
    us: Vec<AtomicU32>,
}

impl AckTimes {
    fn now_us(t0: Instant) -> u32 {
        u32::try_from(t0.elapsed().as_micros())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
    }
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
    /// 2xx answers whose body is not what --expect-items asks for.
    malformed: u64,
    /// Requests still in flight when --max-seconds ran out (neither answered nor failed).
    cut_off: u64,
    /// Indexes of prepared bodies answered 2xx.
    acked: Vec<u32>,
    dup_sent: u64,
    dup_reported: u64,
}

async fn connect(args: &Args) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(args.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn build_request(plan: &Plan, prepared: &Prepared) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(plan.method.clone())
        .uri(plan.path.as_str())
        .header(HOST, plan.args.host_header.clone())
        .body(Full::new(prepared.body.clone()))
        .expect("static request parts are valid");
    let headers = request.headers_mut();
    if plan.method == Method::POST {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(signature) = &prepared.signature {
        headers.insert("x-hub-signature-256", signature.clone());
    }
    if plan.args.scenario != Scenario::Webhook
        && let Some(key) = &plan.args.api_key
    {
        headers.insert(X_API_KEY, key.clone());
    }
    request
}

/// A gateway page: an object with a `messages` array (other fields ignored).
#[derive(Deserialize)]
struct Page {
    messages: Vec<IgnoredAny>,
}

/// Whether an answer holds exactly `n` items: a JSON array of them (the bare baseline's /get) or
/// an object with a `messages` array of them (the gateway's /get and conversation pages; for
/// `messages` only the object form). Parses the whole answer without building it.
fn has_items(scenario: Scenario, body: &[u8], n: usize) -> bool {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') && scenario == Scenario::Get {
        serde_json::from_slice::<Vec<IgnoredAny>>(body).is_ok_and(|items| items.len() == n)
    } else {
        serde_json::from_slice::<Page>(body).is_ok_and(|page| page.messages.len() == n)
    }
}

async fn worker(plan: Arc<Plan>) -> Tally {
    let args = &plan.args;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(args.requests.min(PREBUILD_MAX) / args.concurrency + 1),
        ..Tally::default()
    };
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        if Instant::now() >= plan.deadline {
            break;
        }
        let n = plan.next.fetch_add(1, Ordering::Relaxed);
        if n >= args.requests {
            break;
        }
        // Which body: a duplicate of the latest acknowledged one, or the next fresh one.
        let last_acked = plan.last_acked.load(Ordering::Relaxed);
        let duplicate =
            args.scenario == Scenario::Webhook && last_acked > 0 && n % 100 < args.duplicates_pct;
        let index = if duplicate {
            last_acked - 1
        } else if args.scenario == Scenario::Webhook {
            plan.next_fresh.fetch_add(1, Ordering::Relaxed)
        } else {
            n % plan.bodies.len()
        };
        let request = match plan.bodies.get(index) {
            Some(prepared) => build_request(&plan, prepared),
            None if args.scenario == Scenario::Webhook && index < args.requests => {
                build_request(&plan, &webhook(args, plan.secret.as_ref(), index))
            }
            None => break,
        };

        let started = Instant::now();
        let outcome = tokio::time::timeout_at(plan.deadline.into(), async {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                sender = Some(connect(args).await.map_err(|e| e.to_string())?);
            }
            let s = sender.as_mut().expect("connected above");
            s.ready().await.map_err(|e| e.to_string())?;
            exchange(s, request).await
        })
        .await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(Ok((status, body))) => {
                tally
                    .latencies_us
                    .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                if status.is_success() {
                    if args.scenario == Scenario::Webhook {
                        tally.acked.push(u32::try_from(index).unwrap_or(u32::MAX));
                        if !duplicate {
                            plan.last_acked.fetch_max(index + 1, Ordering::Relaxed);
                            if let Some(acks) = &plan.acks
                                && let Some(slot) = acks.us.get(index)
                            {
                                slot.store(AckTimes::now_us(acks.t0), Ordering::Relaxed);
                            }
                        }
                    }
                    if let Some(n) = plan.args.expect_items
                        && !has_items(args.scenario, &body, n)
                    {
                        tally.malformed += 1;
                    }
                } else {
                    tally.non_2xx += 1;
                }
                if duplicate {
                    tally.dup_sent += 1;
                    if contains(&body, br#""duplicates":1"#) {
                        tally.dup_reported += 1;
                    }
                }
            }
            Ok(Err(_)) => {
                tally.errors += 1;
                sender = None;
            }
            // The hard stop hit this request in flight.
            Err(_) => {
                tally.cut_off += 1;
                break;
            }
        }
    }
    tally
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// utime + stime of `pid` in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> Option<u64> {
    process_cpu_ticks(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a /proc stat file (`/proc/self/stat` for the generator itself).
fn process_cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after "pid (comm) ".
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of this process's thread named `name` (its `comm`), from /proc/self/task.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        (comm.trim_end() == name)
            .then(|| process_cpu_ticks(dir.join("stat").to_str()?))
            .flatten()
    })
}

/// Whether `pid` exists and has not exited (an exited child stays a zombie until reaped).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A `Vm*:` line of /proc/PID/status, in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// POST `path` with `body` on a fresh connection; returns status and body.
async fn post_once(args: &Args, path: &str, body: String) -> Result<(u16, Bytes), String> {
    let mut sender = connect(args).await.map_err(|e| e.to_string())?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, args.host_header.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let mut request = request;
    if let Some(key) = &args.api_key {
        request.headers_mut().insert(X_API_KEY, key.clone());
    }
    let (status, body) = exchange(&mut sender, request).await?;
    Ok((status.as_u16(), body))
}

/// Sends one request on a ready connection and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Reads every sender back and compares with the acknowledged ids: (lost, duplicated).
async fn verify(plan: &Plan, acked: &HashSet<u32>) -> Result<(u64, u64), String> {
    let args = &plan.args;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let path = format!("{}/get", args.base_path);
    for s in 0..args.senders {
        let body = json!({"number": sender_number(s), "limit": 0}).to_string();
        let (status, bytes) = post_once(args, &path, body).await?;
        if status != 200 {
            return Err(format!("verify: POST /get answered {status}"));
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let messages = answer
            .get("messages")
            .and_then(Value::as_array)
            .ok_or("verify: /get answer has no messages array")?;
        for m in messages {
            if let Some(id) = m.get("id").and_then(Value::as_str)
                && id.starts_with(&args.run_id)
            {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let lost = acked
        .iter()
        .filter(|&&i| !seen.contains_key(&message_id(args, i as usize)))
        .count() as u64;
    let duplicated = seen.values().filter(|&&n| n > 1).count() as u64;
    Ok((lost, duplicated))
}

/// Latencies from each acknowledgement to its arrival (us). An arrival the generator saw before it
/// had read the acknowledgement counts as 0 and as `early`.
#[derive(Default)]
struct Latencies {
    us: Vec<u32>,
    early: u64,
}

impl Latencies {
    /// One (acknowledgement, arrival) pair; an arrival of 0 (none) adds nothing.
    fn add(&mut self, ack: u32, arrived: u32) {
        match arrived {
            0 => {}
            a if a < ack => {
                self.early += 1;
                self.us.push(0);
            }
            a => self.us.push(a - ack),
        }
    }

    fn len(&self) -> u64 {
        self.us.len() as u64
    }

    /// `<prefix>_p50_ms`, `_p90_ms`, `_p99_ms` and `_max_ms` (null without arrivals).
    fn percentiles(&mut self, prefix: &str) -> serde_json::Map<String, Value> {
        self.us.sort_unstable();
        [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)]
            .into_iter()
            .map(|(name, q)| {
                let value = (!self.us.is_empty()).then(|| percentile_ms(&self.us, q));
                (format!("{prefix}_{name}_ms"), json!(value))
            })
            .collect()
    }
}

/// CPU use in percent of one core over `seconds`, from two clock-tick readings.
fn cpu_pct(before: Option<u64>, after: Option<u64>, ticks: u64, seconds: f64) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if seconds > 0.0 => {
            Some(((after - before) as f64 * 100.0 / ticks as f64 / seconds).round())
        }
        _ => None,
    }
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    round3(f64::from(sorted_us[rank - 1]) / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn wait_ready(args: &Args) -> ExitCode {
    let since = args.since_ns.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_seconds);
    let path = format!("{}/readyz", args.base_path);
    loop {
        let attempt = async {
            let mut sender = connect(args).await.ok()?;
            let request = Request::builder()
                .method(Method::GET)
                .uri(path.as_str())
                .header(HOST, args.host_header.clone())
                .header(CONNECTION, "close")
                .body(Full::new(Bytes::new()))
                .ok()?;
            let response = sender.send_request(request).await.ok()?;
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            Some(ok)
        };
        let ok = tokio::time::timeout(Duration::from_secs(1), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false);
        if ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let ms = now.saturating_sub(since) as f64 / 1e6;
            println!("{}", json!({"scenario": "ready", "ready_ms": round3(ms)}));
            return ExitCode::SUCCESS;
        }
        if let Some(pid) = args.pid
            && !process_alive(pid)
        {
            eprintln!("loadgen: server process {pid} exited before {path} was ready");
            return ExitCode::FAILURE;
        }
        if Instant::now() >= deadline {
            eprintln!("loadgen: {path} not ready within {}s", args.max_seconds);
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The id of webhook message `n`.
fn message_id(args: &Args, n: usize) -> String {
    format!("{}-{n}", args.run_id)
}

/// Webhook request `n`: message `n` from sender `n mod senders`, signed when there is a secret.
fn webhook(args: &Args, secret: Option<&AppSecret>, n: usize) -> Prepared {
    let body = webhook_body(&message_id(args, n), &sender_number(n % args.senders));
    let signature = secret
        .map(|s| HeaderValue::from_str(&s.sign(body.as_bytes())).expect("hex is a valid header"));
    Prepared {
        body: Bytes::from(body),
        signature,
    }
}

fn prepare(args: &Args, secret: Option<&AppSecret>) -> Vec<Prepared> {
    match args.scenario {
        Scenario::Webhook => (0..args.requests.min(PREBUILD_MAX))
            .map(|n| webhook(args, secret, n))
            .collect(),
        Scenario::Get => {
            let body = json!({"number": args.get_number, "limit": args.get_limit}).to_string();
            vec![Prepared {
                body: Bytes::from(body),
                signature: None,
            }]
        }
        Scenario::Messages => vec![Prepared {
            body: Bytes::new(),
            signature: None,
        }],
        Scenario::Send => (0..args.senders)
            .map(|s| Prepared {
                body: Bytes::from(json!({"number": sender_number(s), "text": "hi"}).to_string()),
                signature: None,
            })
            .collect(),
        Scenario::V1Send => (0..args.senders)
            .map(|s| Prepared {
                body: Bytes::from(
                    json!({"to": sender_number(s), "type": "text", "text": {"body": "hi"}})
                        .to_string(),
                ),
                signature: None,
            })
            .collect(),
        Scenario::Ready => Vec::new(),
    }
}

/// `used_cpu_sys + used_cpu_user` of the Redis server on 127.0.0.1:`port`, in seconds, read with
/// `redis-cli INFO cpu`.
fn redis_cpu_seconds(port: u16) -> Result<f64, String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "INFO", "cpu"])
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("redis-cli INFO cpu failed: {}", text.trim()));
    }
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_end().strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
    };
    match (value("used_cpu_sys:"), value("used_cpu_user:")) {
        (Some(sys), Some(user)) => Ok(sys + user),
        _ => Err(format!(
            "redis-cli INFO cpu: no used_cpu_sys/used_cpu_user in {:?}",
            text.chars().take(200).collect::<String>()
        )),
    }
}

// --- SSE fan-out clients ------------------------------------------------------------------------

/// What every SSE client needs, and the counters the main thread watches.
struct SseShared {
    addr: SocketAddr,
    host_header: HeaderValue,
    path: String,
    api_key: Option<HeaderValue>,
    /// `<run-id>-`: the ids of this run's messages.
    id_prefix: Vec<u8>,
    /// Where the message id starts in a `message_incoming` envelope.
    data_id: memchr::memmem::Finder<'static>,
    t0: Instant,
    requests: usize,
    connected: AtomicUsize,
    failed: AtomicUsize,
    /// First arrivals of this run's messages, all clients together.
    arrivals: AtomicU64,
    /// Whether a client the server cut off resumes from its last event id (`--sse-resume`).
    resume: bool,
}

/// What one SSE client saw.
struct SseClient {
    /// Per message index: microseconds since `t0` + 1 of its first `message_incoming` (0: none).
    arrived_us: Vec<u32>,
    /// Why it never got its stream (connect error, timeout, non-200 status).
    failure: Option<String>,
    /// Why its stream ended before it was told to stop.
    ended: Option<String>,
    /// `event: error` frames (the first one's data in `error_data`).
    error_events: u64,
    error_data: Option<String>,
    resets: u64,
    /// The same message twice on one stream.
    duplicates: u64,
    /// `message_incoming` events whose id is not one of this run's (`<run-id>-<n>`, n < requests).
    foreign: u64,
    /// `message_incoming` events whose data holds no message id where the envelope puts it.
    unparsed: u64,
    /// Events of every type.
    events: u64,
    /// Times the stream was resumed from its last event id after the server ended it.
    resumes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    None,
    Incoming,
    Error,
    Reset,
    Other,
}

/// Splits a stream into lines as chunks arrive; keeps only an unfinished line between chunks.
struct SseParser {
    partial: Vec<u8>,
    kind: FrameKind,
    /// The current frame's first `data:` line was seen.
    data_seen: bool,
    /// The id of the last frame that had one (what a resume sends as `Last-Event-ID`).
    last_id: Option<Vec<u8>>,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8], now_us: u32, shared: &SseShared, out: &mut SseClient) {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..i]);
            self.line(&line, now_us, shared, out);
            line.clear();
            self.partial = line;
            rest = &rest[i + 1..];
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..i], now_us, shared, out);
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8], now_us: u32, shared: &SseShared, out: &mut SseClient) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.kind == FrameKind::Incoming && !self.data_seen {
                out.unparsed += 1;
            }
            self.kind = FrameKind::None;
            self.data_seen = false;
            return;
        }
        if line[0] == b':' {
            return; // a comment: the heartbeat
        }
        let field = |name: &[u8]| {
            line.strip_prefix(name)
                .map(|v| v.strip_prefix(b" ").unwrap_or(v))
        };
        if let Some(kind) = field(b"event:") {
            out.events += 1;
            self.kind = match kind {
                b"message_incoming" => FrameKind::Incoming,
                b"error" => {
                    out.error_events += 1;
                    FrameKind::Error
                }
                b"reset" => {
                    out.resets += 1;
                    FrameKind::Reset
                }
                _ => FrameKind::Other,
            };
            return;
        }
        if let Some(id) = field(b"id:") {
            self.last_id = Some(id.to_vec());
            return;
        }
        let Some(data) = field(b"data:") else {
            return; // anything else
        };
        let first = !self.data_seen;
        self.data_seen = true;
        match self.kind {
            FrameKind::Incoming if first => self.incoming(data, now_us, shared, out),
            FrameKind::Error if out.error_data.is_none() => {
                out.error_data = Some(String::from_utf8_lossy(&data[..data.len().min(300)]).into());
            }
            _ => {}
        }
    }

    /// The first data line of a `message_incoming` frame: `{"id":"<event id>",
    /// "type":"message_incoming","data":{"id":"<message id>",...`.
    fn incoming(&mut self, data: &[u8], now_us: u32, shared: &SseShared, out: &mut SseClient) {
        let Some(at) = shared.data_id.find(data) else {
            out.unparsed += 1;
            return;
        };
        let id = &data[at + shared.data_id.needle().len()..];
        let Some(end) = memchr::memchr(b'"', id) else {
            out.unparsed += 1;
            return;
        };
        let index = id[..end]
            .strip_prefix(shared.id_prefix.as_slice())
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n < shared.requests);
        let Some(index) = index else {
            out.foreign += 1;
            return;
        };
        let slot = &mut out.arrived_us[index];
        if *slot == 0 {
            *slot = now_us;
            shared.arrivals.fetch_add(1, Ordering::Relaxed);
        } else {
            out.duplicates += 1;
        }
    }
}

/// One SSE client: connects, reports its response headers, then reads until `stop`.
async fn sse_client(shared: Arc<SseShared>, mut stop: watch::Receiver<bool>) -> SseClient {
    let mut out = SseClient {
        arrived_us: vec![0; shared.requests],
        failure: None,
        ended: None,
        error_events: 0,
        error_data: None,
        resets: 0,
        duplicates: 0,
        foreign: 0,
        unparsed: 0,
        events: 0,
        resumes: 0,
    };
    let mut parser = SseParser {
        partial: Vec::with_capacity(4096),
        kind: FrameKind::None,
        data_seen: false,
        last_id: None,
    };
    loop {
        let resume = parser.last_id.clone();
        let mut body = match tokio::time::timeout(
            SSE_CONNECT_TIMEOUT,
            open_stream(&shared, resume.as_deref()),
        )
        .await
        {
            Ok(Ok(body)) => body,
            Ok(Err(e)) if resume.is_none() => {
                out.failure = Some(e);
                shared.failed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(_) if resume.is_none() => {
                out.failure = Some(format!(
                    "no response headers within {SSE_CONNECT_TIMEOUT:?}"
                ));
                shared.failed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(Err(e)) => {
                out.ended = Some(format!("the resume failed: {e}"));
                break;
            }
            Err(_) => {
                out.ended = Some("the resume got no response headers in time".into());
                break;
            }
        };
        if resume.is_none() {
            shared.connected.fetch_add(1, Ordering::Relaxed);
        }
        parser.partial.clear();
        parser.kind = FrameKind::None;
        parser.data_seen = false;
        let stopped = loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|&s| s) => break true,
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let now = AckTimes::now_us(shared.t0);
                            parser.feed(&data, now, &shared, &mut out);
                        }
                    }
                    Some(Err(e)) => {
                        out.ended.get_or_insert(e.to_string());
                        break false;
                    }
                    None => {
                        out.ended.get_or_insert("the server ended the stream".into());
                        break false;
                    }
                },
            }
        };
        // A client cut off (e.g. `lagged`) resumes from its last event id, as the README tells
        // clients to: what it missed comes from the event log.
        if stopped || !shared.resume || parser.last_id.is_none() {
            break;
        }
        out.resumes += 1;
    }
    out
}

/// Opens `GET /v1/events` (resuming after `last_id` when given): the response body once the
/// headers say 200.
async fn open_stream(
    shared: &SseShared,
    last_id: Option<&[u8]>,
) -> Result<hyper::body::Incoming, String> {
    let stream = TcpStream::connect(shared.addr)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(shared.path.as_str())
        .header(HOST, shared.host_header.clone())
        .header(ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    if let Some(key) = &shared.api_key {
        request.headers_mut().insert(X_API_KEY, key.clone());
    }
    if let Some(id) = last_id {
        let value = hyper::header::HeaderValue::from_bytes(id).map_err(|e| e.to_string())?;
        request.headers_mut().insert("last-event-id", value);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != hyper::StatusCode::OK {
        return Err(format!(
            "GET {} answered {}",
            shared.path,
            response.status()
        ));
    }
    Ok(response.into_body())
}

/// Starts `n` SSE clients on a thread of their own (a current-thread runtime); the thread returns
/// their results once `stop` turns true.
fn spawn_sse_clients(
    n: usize,
    shared: Arc<SseShared>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<Vec<SseClient>>> {
    std::thread::Builder::new()
        .name(SSE_THREAD.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the SSE clients' tokio runtime");
            runtime.block_on(async move {
                let clients: Vec<_> = (0..n)
                    .map(|_| tokio::spawn(sse_client(shared.clone(), stop.clone())))
                    .collect();
                let mut out = Vec::with_capacity(n);
                for c in clients {
                    if let Ok(c) = c.await {
                        out.push(c);
                    }
                }
                out
            })
        })
}

/// The fan-out figures: per (client, acknowledged message) delivered or missing, and the latency
/// from the acknowledgement to the event.
fn sse_report(
    clients_requested: usize,
    clients: &[SseClient],
    acks: &AckTimes,
    connected: usize,
    connect_ms: f64,
    drain_ms: f64,
) -> Value {
    let acked: Vec<(usize, u32)> = acks
        .us
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let a = a.load(Ordering::Relaxed);
            (a != 0).then_some((i, a))
        })
        .collect();
    let expected = (clients_requested * acked.len()) as u64;
    let mut latencies = Latencies::default();
    for c in clients {
        for &(i, ack) in &acked {
            latencies.add(ack, c.arrived_us[i]);
        }
    }
    // Events for messages this run never saw acknowledged (answered non-2xx, cut off, ...).
    let unacked: u64 = clients
        .iter()
        .map(|c| {
            c.arrived_us
                .iter()
                .zip(&acks.us)
                .filter(|&(&arrived, ack)| arrived != 0 && ack.load(Ordering::Relaxed) == 0)
                .count() as u64
        })
        .sum();
    let delivered = latencies.len();
    let sum = |f: fn(&SseClient) -> u64| clients.iter().map(f).sum::<u64>();
    // Diagnostics without double quotes, so that a flat reader of this line (scripts/bench's
    // `field`) gets them whole.
    let first = |f: fn(&SseClient) -> Option<&String>| {
        clients.iter().find_map(f).map(|s| s.replace('"', "'"))
    };
    let mut report = json!({
        "sse_clients": clients_requested,
        "sse_connected": connected,
        "sse_connect_ms": round3(connect_ms),
        "sse_acked_messages": acked.len(),
        "sse_expected": expected,
        "sse_delivered": delivered,
        "sse_missing": expected - delivered,
        "sse_early": latencies.early,
        "sse_drain_ms": round3(drain_ms),
        "sse_unacked": unacked,
        "sse_duplicates": sum(|c| c.duplicates),
        "sse_foreign": sum(|c| c.foreign),
        "sse_unparsed": sum(|c| c.unparsed),
        "sse_events": sum(|c| c.events),
        "sse_resets": sum(|c| c.resets),
        "sse_error_events": sum(|c| c.error_events),
        "sse_first_error": first(|c| c.error_data.as_ref()),
        "sse_failed": clients.iter().filter(|c| c.failure.is_some()).count()
            + clients_requested.saturating_sub(clients.len()),
        "sse_first_failure": first(|c| c.failure.as_ref()),
        "sse_ended": clients.iter().filter(|c| c.ended.is_some()).count(),
        "sse_resumes": sum(|c| c.resumes),
        "sse_first_end": first(|c| c.ended.as_ref()),
    });
    if let Value::Object(fields) = &mut report {
        fields.extend(latencies.percentiles("sse"));
    }
    report
}

/// After the load: waits until `done`, or `quiet` without a change of `progress`, or `max`.
/// Returns the wait in ms.
async fn wait_while_arriving(
    done: impl Fn() -> bool,
    progress: impl Fn() -> u64,
    quiet: Duration,
    max: Duration,
) -> f64 {
    let started = Instant::now();
    let mut last = progress();
    let mut last_change = started;
    while !done() {
        let now = progress();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if last_change.elapsed() >= quiet || started.elapsed() >= max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed().as_secs_f64() * 1e3
}

/// The SSE side of a fan-out run while it is under way.
struct Fanout {
    shared: Arc<SseShared>,
    acks: Arc<AckTimes>,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Vec<SseClient>>,
    connected: usize,
    connect_ms: f64,
}

/// Connects `args.sse_clients` clients and waits for all their response headers (at most
/// SSE_CONNECT_TIMEOUT).
async fn start_fanout(args: &Args, acks: Arc<AckTimes>) -> Result<Fanout, String> {
    let t0 = acks.t0;
    let shared = Arc::new(SseShared {
        addr: args.addr,
        host_header: args.host_header.clone(),
        path: format!("{}/v1/events", args.base_path),
        api_key: args.api_key.clone(),
        id_prefix: format!("{}-", args.run_id).into_bytes(),
        data_id: memchr::memmem::Finder::new(br#""data":{"id":""#).into_owned(),
        t0,
        requests: args.requests,
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        arrivals: AtomicU64::new(0),
        resume: args.sse_resume,
    });
    let (stop, stop_rx) = watch::channel(false);
    let thread = spawn_sse_clients(args.sse_clients, shared.clone(), stop_rx)
        .map_err(|e| format!("starting the SSE client thread: {e}"))?;
    let started = Instant::now();
    loop {
        let connected = shared.connected.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if connected + failed >= args.sse_clients
            || started.elapsed() > SSE_CONNECT_TIMEOUT + Duration::from_secs(1)
        {
            let connect_ms = started.elapsed().as_secs_f64() * 1e3;
            eprintln!(
                "loadgen: {connected} of {} SSE clients connected in {connect_ms:.0} ms ({failed} failed)",
                args.sse_clients
            );
            return Ok(Fanout {
                shared,
                acks,
                stop,
                thread,
                connected,
                connect_ms,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Fanout {
    /// Waits for the outstanding events: until every connected client has every acknowledged
    /// message, SSE_DRAIN_QUIET without a new arrival, or SSE_DRAIN_MAX. Returns the wait in ms.
    async fn drain(&self) -> f64 {
        let acked = self
            .acks
            .us
            .iter()
            .filter(|a| a.load(Ordering::Relaxed) != 0)
            .count() as u64;
        let target = acked * self.connected as u64;
        let arrivals = &self.shared.arrivals;
        wait_while_arriving(
            || arrivals.load(Ordering::Relaxed) >= target,
            || arrivals.load(Ordering::Relaxed),
            SSE_DRAIN_QUIET,
            SSE_DRAIN_MAX,
        )
        .await
    }

    /// Stops the clients and reports.
    async fn finish(self, clients_requested: usize, drain_ms: f64) -> Value {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let clients = tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        sse_report(
            clients_requested,
            &clients,
            &self.acks,
            self.connected,
            self.connect_ms,
            drain_ms,
        )
    }
}

async fn run(args: Args) -> ExitCode {
    if args.scenario == Scenario::Ready {
        return wait_ready(&args).await;
    }
    let secret = args
        .secret
        .as_ref()
        .map(|s| AppSecret::new(&SecretString::from(s.clone())));
    let bodies = prepare(&args, secret.as_ref());
    let (method, path) = match args.scenario {
        Scenario::Webhook => (Method::POST, format!("{}/webhook", args.base_path)),
        Scenario::Get => (Method::POST, format!("{}/get", args.base_path)),
        Scenario::Messages => (
            Method::GET,
            format!(
                "{}/v1/conversations/{}/messages?limit={}",
                args.base_path, args.contact, args.get_limit
            ),
        ),
        Scenario::Send => (Method::POST, format!("{}/send", args.base_path)),
        Scenario::V1Send => (Method::POST, format!("{}/v1/messages", args.base_path)),
        Scenario::Ready => unreachable!("handled above"),
    };
    // Acknowledgement times, for the SSE clients and the webhook receiver.
    let acks = (args.sse_clients > 0 || args.hook.is_some()).then(|| {
        Arc::new(AckTimes {
            t0: Instant::now(),
            us: (0..args.requests).map(|_| AtomicU32::new(0)).collect(),
        })
    });
    // The receiver listens and the SSE clients connect before the clock starts.
    let receiver = match (&args.hook, &acks) {
        (Some((port, secret)), Some(acks)) => {
            match hooks::Receiver::start(
                *port,
                secret.clone(),
                &args.run_id,
                acks.t0,
                args.requests,
            ) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let fanout = if let (true, Some(acks)) = (args.sse_clients > 0, &acks) {
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            eprintln!("loadgen: could not raise the open-file limit: {e}");
        }
        match start_fanout(&args, acks.clone()).await {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let redis_before = args.redis_port.map(redis_cpu_seconds);
    // Warm-up is deliberately absent: the servers are started fresh and their first requests are
    // part of what users see. The connections are opened inside the timed window too.
    let ticks = clock_ticks_per_second();
    let cpu_before = args.pid.and_then(cpu_ticks);
    let own_before = process_cpu_ticks("/proc/self/stat");
    let sse_before = fanout.as_ref().and_then(|_| thread_cpu_ticks(SSE_THREAD));
    let hook_before = receiver
        .as_ref()
        .and_then(|_| thread_cpu_ticks(hooks::HOOK_THREAD));
    let started = Instant::now();
    let plan = Arc::new(Plan {
        deadline: started + Duration::from_secs_f64(args.max_seconds),
        method,
        path,
        bodies,
        secret,
        next: AtomicUsize::new(0),
        next_fresh: AtomicUsize::new(0),
        last_acked: AtomicUsize::new(0),
        acks: acks.clone(),
        args,
    });
    let workers: Vec<_> = (0..plan.args.concurrency)
        .map(|_| tokio::spawn(worker(plan.clone())))
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => {
                tally.latencies_us.extend(t.latencies_us);
                tally.non_2xx += t.non_2xx;
                tally.errors += t.errors;
                tally.malformed += t.malformed;
                tally.cut_off += t.cut_off;
                tally.acked.extend(t.acked);
                tally.dup_sent += t.dup_sent;
                tally.dup_reported += t.dup_reported;
            }
            Err(e) => {
                eprintln!("loadgen: worker failed: {e}");
                tally.errors += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let own_after = process_cpu_ticks("/proc/self/stat");
    let sse_after = fanout.as_ref().and_then(|_| thread_cpu_ticks(SSE_THREAD));
    let hook_after = receiver
        .as_ref()
        .and_then(|_| thread_cpu_ticks(hooks::HOOK_THREAD));
    // With SSE clients or a receiver, the server and Redis CPU windows include the fan-out and
    // the deliveries of the last events.
    let drain_ms = match &fanout {
        Some(f) => Some(f.drain().await),
        None => None,
    };
    let hook_drain_ms = match (&receiver, &acks) {
        (Some(r), Some(acks)) => Some(r.drain(acks).await),
        _ => None,
    };
    let cpu_after = plan.args.pid.and_then(cpu_ticks);
    let redis_after = plan.args.redis_port.map(redis_cpu_seconds);
    let sse = match fanout {
        Some(f) => Some(
            f.finish(plan.args.sse_clients, drain_ms.unwrap_or(0.0))
                .await,
        ),
        None => None,
    };
    let hook = match (receiver, &acks) {
        (Some(r), Some(acks)) => Some(r.finish(acks, hook_drain_ms.unwrap_or(0.0)).await),
        _ => None,
    };
    let args = &plan.args;

    let completed = tally.latencies_us.len();
    tally.latencies_us.sort_unstable();
    let cpu_us_per_req = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if completed > 0 => Some(round3(
            (after - before) as f64 * 1e6 / ticks as f64 / completed as f64,
        )),
        _ => None,
    };
    let redis_cpu_us_per_req = match (redis_before, redis_after) {
        (Some(Ok(before)), Some(Ok(after))) if completed > 0 => {
            Some(round3((after - before) * 1e6 / completed as f64))
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            eprintln!("loadgen: {e}");
            None
        }
        _ => None,
    };
    // The generator's own CPU use over the timed run: near 100 means it, not the server, was the
    // limit.
    let client_cpu_pct = cpu_pct(own_before, own_after, ticks, seconds);
    // The SSE clients' and the receiver's shares of it (their threads alone).
    let sse_client_cpu_pct = cpu_pct(sse_before, sse_after, ticks, seconds);
    let hook_cpu_pct = cpu_pct(hook_before, hook_after, ticks, seconds);
    let peak_rss_kib = args.pid.and_then(|p| status_kib(p, "VmHWM:"));
    let rss_kib = args.pid.and_then(|p| status_kib(p, "VmRSS:"));

    let (lost, duplicated) = if args.verify && args.scenario == Scenario::Webhook {
        let acked: HashSet<u32> = tally.acked.iter().copied().collect();
        match verify(&plan, &acked).await {
            Ok((lost, duplicated)) => (Some(lost), Some(duplicated)),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        (None, None)
    };
    let mut line = json!({
        "scenario": args.scenario.name(),
        "requests": completed,
        "planned": args.requests,
        "concurrency": args.concurrency,
        "seconds": round3(seconds),
        "rps": (completed as f64 / seconds).round(),
        "p50_ms": percentile_ms(&tally.latencies_us, 0.50),
        "p90_ms": percentile_ms(&tally.latencies_us, 0.90),
        "p99_ms": percentile_ms(&tally.latencies_us, 0.99),
        "max_ms": percentile_ms(&tally.latencies_us, 1.0),
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "malformed": args.expect_items.map(|_| tally.malformed),
        "cut_off": tally.cut_off,
        "lost": lost,
        "duplicated": duplicated,
        "dup_sent": tally.dup_sent,
        "dup_reported": tally.dup_reported,
        "peak_rss_kib": peak_rss_kib,
        "rss_kib": rss_kib,
        "cpu_us_per_req": cpu_us_per_req,
        "redis_cpu_us_per_req": redis_cpu_us_per_req,
        "client_cpu_pct": client_cpu_pct,
        "stopped_by_time": completed < args.requests,
    });
    if let (Some(sse), Some(obj)) = (sse, line.as_object_mut())
        && let Value::Object(sse) = sse
    {
        obj.extend(sse);
        obj.insert("sse_client_cpu_pct".into(), json!(sse_client_cpu_pct));
    }
    if let (Some(Value::Object(hook)), Some(obj)) = (hook, line.as_object_mut()) {
        obj.extend(hook);
        obj.insert("hook_cpu_pct".into(), json!(hook_cpu_pct));
    }
    println!("{line}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    runtime.block_on(run(args))
}
