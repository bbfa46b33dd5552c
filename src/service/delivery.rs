//! Delivery health: when Meta last reached `POST /webhook` (a delivery that passed the signature
//! check and parsed), and whether that has gone quiet for longer than WEBHOOK_SILENCE_MINUTES
//! after traffic had flowed. A sudden silence is how the usual set-up failures show: a revoked
//! or expired token, an app unsubscribed from the WhatsApp Business Account, a webhook URL
//! changed in the dashboard, a tunnel that went away.
//!
//! Kept in memory, per instance, since it started (an instance that has received nothing yet
//! reports nothing rather than a false alarm). It is read by `/readyz` (as detail: silence does
//! not make the gateway unready), `/metrics` (`webhook_last_received_timestamp_seconds`) and the
//! inbox.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// What `/readyz` and the inbox say about Meta's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryReport {
    /// Unix seconds of the last delivery; `null` when none arrived since this instance started.
    pub last_received_at: Option<i64>,
    /// Seconds since then.
    pub silent_for_secs: Option<i64>,
    /// Set when the silence is longer than WEBHOOK_SILENCE_MINUTES: what it likely means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The last delivery's time, shared by the webhook handler and its readers.
#[derive(Debug)]
pub struct DeliveryHealth {
    last: AtomicI64,
    silence: Duration,
}

impl DeliveryHealth {
    /// A tracker warning after `silence` without a delivery.
    pub fn new(silence: Duration) -> Self {
        Self {
            last: AtomicI64::new(0),
            silence,
        }
    }

    /// Notes a delivery at `now` (unix seconds).
    pub fn record(&self, now: i64) {
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// Unix seconds of the last delivery, 0 when none.
    pub fn last_received(&self) -> i64 {
        self.last.load(Ordering::Relaxed)
    }

    /// The report at `now` (unix seconds).
    pub fn report(&self, now: i64) -> DeliveryReport {
        let last = self.last_received();
        if last == 0 {
            return DeliveryReport {
                last_received_at: None,
                silent_for_secs: None,
                warning: None,
            };
        }
        let silent = (now - last).max(0);
        let warning = (silent as u64 > self.silence.as_secs()).then(|| {
            format!(
                "no webhook from Meta for {} minutes, after deliveries had arrived: if your users are writing, check that the access token is valid, that the app is still subscribed to the WhatsApp Business Account and that the callback URL in Meta's dashboard still reaches this gateway (`whatsapp-gateway doctor` checks all three)",
                silent / 60
            )
        });
        DeliveryReport {
            last_received_at: Some(last),
            silent_for_secs: Some(silent),
            warning,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_reported_only_after_traffic_and_past_the_threshold() {
        let health = DeliveryHealth::new(Duration::from_secs(3600));
        assert_eq!(
            health.report(10_000),
            DeliveryReport {
                last_received_at: None,
                silent_for_secs: None,
                warning: None
            }
        );
        health.record(10_000);
        // A late, older delivery does not move the time back.
        health.record(9_000);
        let quiet = health.report(10_000 + 3600);
        assert_eq!(quiet.last_received_at, Some(10_000));
        assert_eq!(quiet.silent_for_secs, Some(3600));
        assert_eq!(
            quiet.warning, None,
            "exactly the threshold is not yet silence"
        );
        let silent = health.report(10_000 + 3601 + 14 * 60);
        assert!(
            silent
                .warning
                .as_deref()
                .is_some_and(|w| w.starts_with("no webhook from Meta for 74 minutes")),
            "{silent:?}"
        );
        health.record(20_000);
        assert_eq!(health.report(20_005).warning, None);
    }
}
