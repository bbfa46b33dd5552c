//! What one stored webhook message costs **Redis**, measured without load: the gateway's store
//! (the real [`RedisStore`], its batcher and save script) writes `--messages` bench-shaped
//! messages in chunks of `--chunk` (one script call each, one after the other, so no other
//! process competes for the CPU), and Redis's own `used_cpu_*` and `INFO commandstats` are read
//! before and after. The same messages are then appended with a bare `RPUSH` each (pipelined per
//! chunk), the least any store can do, for the ratio.
//!
//! `scripts/bench` measures the whole service under load; this isolates the store's share, so a
//! change to the save script can be judged in seconds and without the noise of a shared machine.
//!
//! ```text
//! redis-server --port 6399 --save '' --appendonly yes &
//! cargo run --release --example store_cost -- --redis redis://127.0.0.1:6399/0
//! ```
//! The Redis must be empty (the harness flushes nothing, so a second run counts duplicates).

use std::time::Instant;

use secrecy::SecretString;
use whatsapp_gateway::config::RedisSettings;
use whatsapp_gateway::store::Store;
use whatsapp_gateway::store::redis::RedisStore;
use whatsapp_gateway::webhook::extract_batch;

struct Args {
    redis: String,
    messages: usize,
    chunk: usize,
    senders: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        redis: "redis://127.0.0.1:6399/0".to_owned(),
        messages: 20_000,
        chunk: 10,
        senders: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: a positive integer, got {value:?}"))
        };
        match flag.as_str() {
            "--redis" => args.redis = value.clone(),
            "--messages" => args.messages = number()?,
            "--chunk" => args.chunk = number()?.min(256),
            "--senders" => args.senders = number()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// A bench-shaped delivery (the same as `loadgen`'s): one text message from `from`.
fn body(id: &str, from: &str) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15551713917", "phone_number_id": "1"},
            "contacts": [{"profile": {"name": "A"}, "wa_id": from}],
            "messages": [{"from": from, "id": id, "timestamp": "1757936743", "type": "text",
                          "text": {"body": "hello"}}]
        }}]}]
    })
    .to_string()
}

/// Redis's own CPU seconds (main process, user + system) and per-command totals.
async fn redis_cpu(con: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(con)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

async fn commandstats(con: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .expect("INFO commandstats");
    let mut rows = Vec::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        rows.push((name.to_owned(), field("calls"), field("usec")));
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.2));
    rows
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| {
        format!("{e}\nusage: store_cost [--redis URL] [--messages N] [--chunk K] [--senders S]")
    })?;
    let run = std::process::id();
    let messages: Vec<_> = (0..args.messages)
        .flat_map(|n| {
            let from = format!("1555000{:04}", n % args.senders);
            extract_batch(body(&format!("wamid.cost{run}-{n}"), &from).as_bytes())
                .expect("a bench body parses")
                .messages
        })
        .collect();
    let store = Store::Redis(RedisStore::new(&RedisSettings {
        url: SecretString::from(args.redis.clone()),
        inbound_list: "cost:inbound".to_owned(),
        key_prefix: format!("cost{run}"),
        timeout: std::time::Duration::from_secs(5),
        allow_eviction: true,
        event_retention: 10_000,
    })?);
    let mut con = redis::Client::open(args.redis.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    store.probe().await?;

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await?;
    let cpu0 = redis_cpu(&mut con).await;
    let started = Instant::now();
    let mut stored = 0;
    for chunk in messages.chunks(args.chunk) {
        stored += store.save_inbound(chunk).await?.stored;
    }
    let elapsed = started.elapsed();
    let cpu1 = redis_cpu(&mut con).await;
    let stats = commandstats(&mut con).await;
    let n = args.messages as f64;
    println!(
        "gateway store: {stored} stored of {} in chunks of {}: Redis CPU {:.1} us/message, {:.0} messages/s sequential",
        args.messages,
        args.chunk,
        (cpu1 - cpu0) * 1e6 / n,
        n / elapsed.as_secs_f64()
    );
    println!("  command            calls   us/call   us/message");
    for (name, calls, usec) in stats.iter().filter(|s| s.1 > 0 && s.0 != "info") {
        println!(
            "  {name:<16} {calls:>7} {:>9.2} {:>11.2}",
            *usec as f64 / *calls as f64,
            *usec as f64 / n
        );
    }

    let cpu2 = redis_cpu(&mut con).await;
    for (c, chunk) in messages.chunks(args.chunk).enumerate() {
        let mut pipe = redis::pipe();
        for (i, m) in chunk.iter().enumerate() {
            pipe.cmd("RPUSH")
                .arg(format!(
                    "cost{run}:bare:{}",
                    (c * args.chunk + i) % args.senders
                ))
                .arg(m.to_stored_json())
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await?;
    }
    let cpu3 = redis_cpu(&mut con).await;
    println!(
        "bare RPUSH (pipelined per chunk): Redis CPU {:.1} us/message",
        (cpu3 - cpu2) * 1e6 / n
    );
    Ok(())
}
