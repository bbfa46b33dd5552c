//! The dispatcher: turns the events of the log into deliveries, per subscription, by its
//! durable cursor (see [`super`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use super::subscription::Subscription;
use super::{Inner, PASS_INTERVAL, now_ms};
use crate::events::log::READ_BATCH;
use crate::events::{Event, EventId, Wakeups};
use crate::store::StoreError;
use crate::store::hooks::{Enqueue, NewDelivery};

/// Most pages of the log one pass reads before it looks at the subscriptions again.
const PAGES_PER_PASS: usize = 64;

/// The body POSTed for `event`: `{"id","type","timestamp","data"}`, `data` verbatim.
pub fn body(event: &Event, now_ms: i64) -> String {
    let ms = event.time_ms().unwrap_or(now_ms).max(0) as u64;
    let timestamp = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
    let kind = serde_json::Value::String(event.kind.clone()).to_string();
    format!(
        r#"{{"id":"{}","type":{kind},"timestamp":"{timestamp}","data":{}}}"#,
        event.id,
        event.data()
    )
}

/// The dispatcher loop: a pass, then wait for a new event, a change or [`PASS_INTERVAL`].
pub(super) async fn run(inner: Arc<Inner>) {
    let mut wake = Wakeups::default();
    let mut failing = false;
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        if inner.config_pending.load(Ordering::Relaxed) && inner.install_configured().await.is_ok()
        {
            inner.config_pending.store(false, Ordering::Relaxed);
        }
        match inner.reload().await {
            Ok(subs) => {
                // Follow the log live only while someone subscribed.
                wake.follow(&inner.hub, !subs.is_empty()).await;
                let subs: Vec<Arc<Subscription>> = subs.values().cloned().collect();
                match pass(&inner, subs).await {
                    Ok(enqueued) => {
                        if enqueued > 0 {
                            inner.due.notify_one();
                        }
                        if failing {
                            tracing::info!("webhooks.dispatch_recovered");
                            failing = false;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error.message = %e, "webhooks.dispatch_failed (retrying)");
                        }
                        failing = true;
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error.message = %e, "webhooks.dispatch_failed (retrying)");
                }
                failing = true;
            }
        }
        if !wake
            .wait(&inner.shutdown, &inner.changed, PASS_INTERVAL)
            .await
        {
            return;
        }
    }
}

/// One subscription's place in the log during a pass.
struct Follower {
    sub: Arc<Subscription>,
    /// The cursor as stored (the compare-and-set's expected value).
    stored: Option<String>,
    at: Option<EventId>,
}

/// Reads the log after the lowest cursor and enqueues each subscription's share of every page.
/// Returns how many deliveries were enqueued. A subscription whose cursor moved meanwhile
/// (another instance enqueued first) is dropped from the pass.
async fn pass(inner: &Inner, subs: Vec<Arc<Subscription>>) -> Result<usize, StoreError> {
    let log = inner.hub.log();
    let mut followers: Vec<Follower> = subs
        .into_iter()
        .map(|sub| {
            let at = sub.cursor.as_deref().and_then(|c| log.parse_id(c));
            Follower {
                stored: sub.cursor.clone(),
                sub,
                at,
            }
        })
        .collect();
    let mut total = 0;
    for _ in 0..PAGES_PER_PASS {
        let Some(lowest) = followers.iter().map(|f| f.at).min() else {
            break;
        };
        let events = log.read_after(lowest, READ_BATCH).await?;
        let Some(last) = events.last().map(|e| e.id) else {
            break;
        };
        let now = now_ms();
        let mut kept = Vec::with_capacity(followers.len());
        for mut f in followers {
            if f.at.is_some_and(|at| at >= last) {
                kept.push(f);
                continue;
            }
            // Built even when the cached subscription is disabled: the store decides (it drops
            // them for a subscription disabled *now*), so an enable racing this pass loses
            // nothing.
            let deliveries: Vec<NewDelivery> = events
                .iter()
                .filter(|e| f.at.is_none_or(|at| e.id > at) && f.sub.wants(e))
                .map(|e| NewDelivery {
                    event_id: e.id.to_string(),
                    lane: e.contact().unwrap_or_default().to_owned(),
                    body: body(e, now),
                })
                .collect();
            let next = last.to_string();
            let how = Enqueue::FromLog {
                expected: f.stored.clone(),
                next: next.clone(),
            };
            // `None`: moved by another instance, or deleted; the next pass reloads.
            if let Some(n) = inner
                .store
                .hook_enqueue(&f.sub.id, &how, &deliveries, now)
                .await?
            {
                total += n;
                f.stored = Some(next);
                f.at = Some(last);
                kept.push(f);
            }
        }
        followers = kept;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_event_with_its_time() {
        let data = r#"{"phone_number_id":"1","contact":{"id":"919216598210"},"x":"\u00e9"}"#;
        let event = Event::new(
            EventId::Stream(1_763_940_000_123, 0, 2),
            "message_status".into(),
            data.into(),
        );
        assert_eq!(
            body(&event, 0),
            format!(
                r#"{{"id":"1763940000123-0-2","type":"message_status","timestamp":"2025-11-23T23:20:00.123Z","data":{data}}}"#
            )
        );
        let row = Event::new(EventId::Row(5), "x".into(), "{}".into());
        assert!(body(&row, 1_000).contains(r#""timestamp":"1970-01-01T00:00:01.000Z""#));
        let dated = Event::new(EventId::Row(6), "x".into(), "{}".into()).written_at(2_000);
        assert!(body(&dated, 1_000).contains("00:00:02.000Z"));
    }
}
