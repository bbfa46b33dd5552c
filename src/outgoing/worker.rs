//! The worker: claims due deliveries, POSTs them, completes them (see [`super`]). Its attempt
//! ([`attempt`]) and completion ([`complete`]) are also the dispatcher's, for the events it
//! attempts straight from the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::signature::signature_header;
use super::subscription::Subscription;
use super::{CLAIM_INTERVAL, Inner, now_ms, target};
use crate::metrics::AttemptLabels;
use crate::store::hooks::{Claimed, Completed, Completion, GONE_REASON, Verdict, failing_reason};

/// Most deliveries claimed at once.
const CLAIM_BATCH: usize = 64;
/// Response bytes kept in the attempt log.
const SNIPPET_BYTES: usize = 1024;
/// Longest Retry-After honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a claim holds a delivery: longer than an attempt can take.
pub fn lease(timeout: Duration) -> Duration {
    timeout * 2 + Duration::from_secs(5)
}

/// The worker loop.
pub(super) async fn run(inner: Arc<Inner>) {
    let slots = inner.slots.clone();
    let lease_ms = inner.lease.ms;
    let mut failing = false;
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        if !inner.any_enabled() {
            // Nothing can be due: no claim (on SQLite a claim is a write transaction).
            tokio::select! {
                () = inner.shutdown.cancelled() => return,
                () = inner.due.notified() => {}
                () = tokio::time::sleep(CLAIM_INTERVAL) => {}
            }
            continue;
        }
        // The slots are taken before the claim: the dispatcher's attempts share them. One slot
        // in line with the dispatcher's lanes (the semaphore is fair; at once when one is free),
        // and it is kept: given back, it would go straight to the next lane waiting, and under
        // steady direct load the worker would never claim. Then whatever else is free.
        let mut permits = tokio::select! {
            () = inner.shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let more = slots.available_permits().min(CLAIM_BATCH - 1);
        if more > 0
            && let Ok(extra) = slots.clone().try_acquire_many_owned(more as u32)
        {
            permits.merge(extra);
        }
        let free = permits.num_permits();
        let now = now_ms();
        let (claimed, next) = match inner.store.hook_claim(now, lease_ms, free).await {
            Ok(answer) => {
                if failing {
                    tracing::info!("webhooks.claim_recovered");
                    failing = false;
                }
                answer
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error.message = %e, "webhooks.claim_failed (retrying)");
                }
                failing = true;
                (Vec::new(), Some(now + CLAIM_INTERVAL.as_millis() as i64))
            }
        };
        let full = claimed.len() == free;
        for c in claimed {
            // At most `free` were claimed: one of the slots taken for each; the rest are given
            // back when `permits` is dropped.
            let Some(permit) = permits.split(1) else {
                break;
            };
            inner.tracker.spawn(deliver(inner.clone(), c, permit));
        }
        drop(permits);
        if full {
            continue;
        }
        let wait =
            next.map_or(CLAIM_INTERVAL, |at| {
                Duration::from_millis(
                    (at - now_ms()).clamp(0, CLAIM_INTERVAL.as_millis() as i64) as u64
                )
            });
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.due.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What one POST came to.
#[derive(Debug, Default)]
struct Attempt {
    status: Option<u16>,
    error: Option<String>,
    response: Option<String>,
    retry_after: Option<Duration>,
}

/// One attempt of one claimed delivery, completed in the store.
async fn deliver(inner: Arc<Inner>, claimed: Claimed, _slot: OwnedSemaphorePermit) {
    let Some(sub) = inner.subscription(&claimed.subscription).await else {
        // Deleted meanwhile: the claim runs out and the store drops the orphan.
        return;
    };
    if !sub.enabled {
        // Disabled meanwhile, a 410 whose completion is not written yet included (the store
        // handed this out as enabled): no attempt. The claim runs out and the delivery is
        // handed out again once the subscription is enabled.
        return;
    }
    let body = Bytes::from(claimed.body.clone());
    let tried = attempt(
        &inner,
        &sub,
        &claimed.event_id,
        &body,
        claimed.attempts,
        "queued",
    )
    .await;
    complete(&inner, &sub, claimed, tried).await;
    // The lane's next delivery is due now (delivered, dead), or this one is due at a time the
    // worker's current wait may overshoot (a retry sooner than CLAIM_INTERVAL): look again.
    // Wake-ups coalesce, so a burst of completions costs one claim.
    inner.due.notify_one();
}

/// What one attempt came to, judged.
pub(super) struct Tried {
    pub verdict: Verdict,
    /// The attempt as JSON, for the subscription's attempt log.
    pub log: String,
}

/// The `made + 1`th attempt of an event for `sub`: POSTs it and judges the answer by the retry
/// schedule (counted in the attempts metric, with its `path`: `direct` or `queued`).
pub(super) async fn attempt(
    inner: &Inner,
    sub: &Subscription,
    event_id: &str,
    body: &Bytes,
    made: u32,
    path: &'static str,
) -> Tried {
    let started = Instant::now();
    let attempt = post(inner, sub, event_id, body).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let now = now_ms();
    let schedule = &inner.settings.retry_schedule;
    let made = made as usize;
    let verdict = match attempt.status {
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(410) => {
            inner.note_gone(&sub.id);
            Verdict::Gone
        }
        _ => match schedule.get(made) {
            Some(wait) => {
                let wait = attempt
                    .retry_after
                    .map_or(*wait, |r| r.min(MAX_RETRY_AFTER).max(*wait));
                Verdict::Retry {
                    at_ms: now + jittered(wait).as_millis() as i64,
                }
            }
            None => Verdict::Dead,
        },
    };
    let outcome = match verdict {
        Verdict::Delivered => "delivered",
        Verdict::Retry { .. } => "retry",
        Verdict::Dead => "dead",
        Verdict::Gone => "gone",
    };
    let log = serde_json::json!({
        "event_id": event_id,
        "attempt": made + 1,
        "at": now / 1000,
        "outcome": outcome,
        "status": attempt.status,
        "latency_ms": latency_ms,
        "response": attempt.response,
        "error": attempt.error,
        "next_attempt_at": match verdict { Verdict::Retry { at_ms } => Some(at_ms / 1000), _ => None },
    })
    .to_string();
    inner
        .attempts
        .get_or_create(&AttemptLabels {
            reason: outcome,
            path,
        })
        .inc();
    Tried { verdict, log }
}

/// Records the end of a claimed delivery's attempt in the store.
pub(super) async fn complete(inner: &Inner, sub: &Subscription, claimed: Claimed, tried: Tried) {
    let Tried { verdict, log } = tried;
    let now = now_ms();
    let disabled_reason = match verdict {
        Verdict::Gone => GONE_REASON.to_owned(),
        _ => failing_reason(inner.settings.disable_after.as_millis() as i64),
    };
    let disabled_event = serde_json::json!({
        "id": sub.id,
        "url": target::displayable(&sub.url),
        "reason": disabled_reason,
        "disabled_at": now / 1000,
    })
    .to_string();
    let completion = Completion {
        claimed,
        verdict,
        log,
        now_ms: now,
        disable_after_ms: inner.settings.disable_after.as_millis() as i64,
        disabled_reason,
        disabled_event,
    };
    let outcome = inner.store.hook_complete(&completion).await;
    if verdict == Verdict::Gone {
        inner.gone_recorded(&sub.id);
    }
    match outcome {
        Ok(Completed::Disabled) => {
            tracing::warn!(subscription = %sub.id, url = %target::displayable(&sub.url), reason = %completion.disabled_reason, "webhooks.subscription_disabled");
            inner.changed.notify_one();
        }
        Ok(Completed::Stale) => {
            tracing::debug!(subscription = %sub.id, event.id = %completion.claimed.event_id, "webhooks.claim_lost (another instance took the delivery over)");
        }
        Ok(Completed::Applied) => {}
        Err(e) => {
            // The claim runs out and the delivery is attempted again: at least once.
            tracing::warn!(subscription = %sub.id, error.message = %e, "webhooks.complete_failed");
        }
    }
}

/// `wait` plus up to a tenth more, so retries of many deliveries spread out.
fn jittered(wait: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    let fraction = u16::from_le_bytes(byte) as u32;
    wait + wait / 10 * fraction / u32::from(u16::MAX)
}

/// POSTs an event, signed, reading at most [`SNIPPET_BYTES`] of the answer.
async fn post(inner: &Inner, sub: &Subscription, event_id: &str, body: &Bytes) -> Attempt {
    if !inner.settings.allow_private
        && let Some(why) = target::refused_literal(&sub.url)
    {
        return Attempt {
            error: Some(format!(
                "target refused: the URL points to {why} (set WEBHOOK_ALLOW_PRIVATE=true to allow)"
            )),
            ..Attempt::default()
        };
    }
    let timestamp = now_ms() / 1000;
    let signature = signature_header(sub.secrets(timestamp), event_id, timestamp, body);
    let sent = inner
        .client
        .post(sub.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            return Attempt {
                error: Some(describe(e)),
                ..Attempt::default()
            };
        }
    };
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let status = response.status().as_u16();
    let mut snippet = Vec::new();
    let mut error = None;
    while snippet.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = SNIPPET_BYTES - snippet.len();
                snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(describe(e));
                break;
            }
        }
    }
    Attempt {
        status: Some(status),
        error: error.or_else(|| {
            response.status().is_redirection().then(|| {
                "redirects are not followed: the subscription's URL must answer 2xx itself"
                    .to_owned()
            })
        }),
        response: (!snippet.is_empty()).then(|| String::from_utf8_lossy(&snippet).into_owned()),
        retry_after,
    }
}

/// An HTTP error as text for the attempt log: without the URL (its query may hold a token), with
/// its causes.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        let later = std::time::SystemTime::now() + Duration::from_secs(600);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            parsed > Duration::from_secs(590) && parsed <= Duration::from_secs(600),
            "{parsed:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(10) && j <= Duration::from_secs(11),
                "{j:?}"
            );
        }
    }
}
