//! [`Pacer`]: the client-side throughput limit per business number (SEND_RATE_PER_SECOND,
//! default 80, Meta's default per number), so a burst queues briefly instead of failing with
//! Meta's 130429.
//!
//! It is a sliding window: at most `rate` sends start in any one second. Below the rate it adds
//! no wait at all (a burst of up to `rate` sends goes at once); above it, each send waits for
//! its slot (the time the `rate`-th send before it started, plus one second). Slots are taken in
//! arrival order, so waiting sends keep their order. The window is per process: instances on
//! one Redis each keep their own (set the rate to Meta's divided by the instances if they share
//! a number's traffic evenly).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The window's length.
const WINDOW: Duration = Duration::from_secs(1);

/// Sends per second per business number.
#[derive(Debug)]
pub struct Pacer {
    rate: usize,
    /// Per number, the start times of its latest `rate` sends (taken slots), oldest first.
    slots: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Pacer {
    /// At most `rate` sends per second per number (at least 1).
    pub fn new(rate: usize) -> Self {
        Self {
            rate: rate.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `number` may send again, taking that slot.
    pub async fn wait(&self, number: &str) {
        let slot = self.take(number, Instant::now());
        tokio::time::sleep_until(slot).await;
    }

    /// Takes the next slot of `number` at `now` (the sliding window's rule).
    fn take(&self, number: &str, now: Instant) -> Instant {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let taken = slots.entry(number.to_owned()).or_default();
        let slot = match taken.len() {
            n if n < self.rate => now,
            n => now.max(taken[n - self.rate] + WINDOW),
        };
        taken.push_back(slot);
        while taken.len() > self.rate {
            taken.pop_front();
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_rate_nothing_waits_and_above_it_each_second_holds_at_most_rate() {
        let pacer = Pacer::new(3);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..8).map(|_| pacer.take("1", t0) - t0).collect();
        let s = Duration::from_secs;
        assert_eq!(slots, [s(0), s(0), s(0), s(1), s(1), s(1), s(2), s(2)]);
        // Another number has its own window.
        assert_eq!(pacer.take("2", t0), t0);
    }

    #[test]
    fn sends_spaced_out_below_the_rate_never_wait() {
        let pacer = Pacer::new(2);
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + Duration::from_millis(600 * i);
            assert_eq!(pacer.take("1", now), now, "send {i}");
        }
    }
}
