//! Load generator for `scripts/bench`: drives the gateway (or `bare_baseline`) over raw hyper
//! HTTP/1.1 keep-alive connections and prints one JSON line with throughput, latency percentiles,
//! error counts and, optionally, server-side figures (peak RSS, CPU time per request) and a
//! loss/duplication check of what the server acknowledged.
//!
//! It runs on a current-thread tokio runtime so it fits on one pinned core (`taskset -c 1`), and it
//! builds the request bodies (and their `X-Hub-Signature-256`; up to 200,000 of them, the rest as it
//! goes) before the clock starts, so the numbers measure the server rather than the generator. One
//! connection per concurrent worker; a worker whose connection breaks reconnects and counts an
//! error. `client_cpu_pct` in the output is the generator's own CPU use: near 100 means it, not the
//! server, was the limit.
//!
//! Scenarios:
//! - `webhook`: POST /webhook with one text message per request, a unique id `<run-id>-<n>`, from
//!   sender `1555000` + 4-digit index (`--senders` of them, round robin). `--secret` signs the body
//!   like Meta does; `--duplicates-pct P` re-sends an already acknowledged body on P% of requests;
//!   `--verify` afterwards reads every sender back (POST /get, limit 0) and reports acknowledged ids
//!   that are missing (`lost`) or stored more than once (`duplicated`).
//! - `get`: POST /get `{"number": --get-number, "limit": --get-limit}`.
//! - `send`: POST /send `{"number": <sender>, "text": "hi"}`.
//! - `ready`: polls GET /readyz every 5 ms until it answers 200 and prints
//!   `{"ready_ms": ...}`, measured from `--since-ns` (Unix epoch nanoseconds, taken by the caller
//!   just before it spawned the server); with `--pid` it gives up as soon as that process exits.
//!
//! It stops after `--requests` requests or `--max-seconds`, whichever comes first (requests still in
//! flight then are counted as `cut_off`, not as errors), and only ever connects to the host and
//! port of `--url`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use whatsapp_gateway::webhook::AppSecret;

const USAGE: &str = "loadgen --url http://127.0.0.1:PORT --scenario webhook|get|send|ready
        [--requests N] [--concurrency C] [--senders S] [--secret SECRET] [--run-id STR]
        [--max-seconds T] [--duplicates-pct P] [--verify] [--pid PID]
        [--get-number DIGITS] [--get-limit L] [--since-ns EPOCH_NS]";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Webhook,
    Get,
    Send,
    Ready,
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
    let mut since_ns = None;

    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--verify" {
            verify = true;
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
                    "send" => Scenario::Send,
                    "ready" => Scenario::Ready,
                    _ => return Err(bad("one of webhook, get, send, ready")),
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
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
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
        .method(Method::POST)
        .uri(plan.path.as_str())
        .header(HOST, plan.args.host_header.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(prepared.body.clone()))
        .expect("static request parts are valid");
    if let Some(signature) = &prepared.signature {
        request
            .headers_mut()
            .insert("x-hub-signature-256", signature.clone());
    }
    request
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
                        }
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
        Scenario::Send => (0..args.senders)
            .map(|s| Prepared {
                body: Bytes::from(json!({"number": sender_number(s), "text": "hi"}).to_string()),
                signature: None,
            })
            .collect(),
        Scenario::Ready => Vec::new(),
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
    let path = format!(
        "{}/{}",
        args.base_path,
        match args.scenario {
            Scenario::Webhook => "webhook",
            Scenario::Get => "get",
            Scenario::Send => "send",
            Scenario::Ready => unreachable!("handled above"),
        }
    );
    // Warm-up is deliberately absent: the servers are started fresh and their first requests are
    // part of what users see. The connections are opened inside the timed window too.
    let ticks = clock_ticks_per_second();
    let cpu_before = args.pid.and_then(cpu_ticks);
    let own_before = process_cpu_ticks("/proc/self/stat");
    let started = Instant::now();
    let plan = Arc::new(Plan {
        deadline: started + Duration::from_secs_f64(args.max_seconds),
        path,
        bodies,
        secret,
        next: AtomicUsize::new(0),
        next_fresh: AtomicUsize::new(0),
        last_acked: AtomicUsize::new(0),
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
    let cpu_after = plan.args.pid.and_then(cpu_ticks);
    let own_after = process_cpu_ticks("/proc/self/stat");
    let args = &plan.args;

    let completed = tally.latencies_us.len();
    tally.latencies_us.sort_unstable();
    let cpu_us_per_req = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if completed > 0 => Some(round3(
            (after - before) as f64 * 1e6 / ticks as f64 / completed as f64,
        )),
        _ => None,
    };
    // The generator's own CPU use over the timed run: near 100 means it, not the server, was the
    // limit.
    let client_cpu_pct = match (own_before, own_after) {
        (Some(before), Some(after)) if seconds > 0.0 => {
            Some(((after - before) as f64 * 100.0 / ticks as f64 / seconds).round())
        }
        _ => None,
    };
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
    let scenario = match args.scenario {
        Scenario::Webhook => "webhook",
        Scenario::Get => "get",
        Scenario::Send => "send",
        Scenario::Ready => "ready",
    };
    let line = json!({
        "scenario": scenario,
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
        "cut_off": tally.cut_off,
        "lost": lost,
        "duplicated": duplicated,
        "dup_sent": tally.dup_sent,
        "dup_reported": tally.dup_reported,
        "peak_rss_kib": peak_rss_kib,
        "rss_kib": rss_kib,
        "cpu_us_per_req": cpu_us_per_req,
        "client_cpu_pct": client_cpu_pct,
        "stopped_by_time": completed < args.requests,
    });
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
