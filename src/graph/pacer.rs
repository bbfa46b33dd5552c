//! [`Pacer`]: the client-side throughput limit per business number (SEND_RATE_PER_SECOND,
//! default 80, Meta's default per number), so a burst queues briefly instead of failing with
//! Meta's 130429.
//!
//! It is a sliding window: at most `rate` sends start in any one second. Below the rate it adds
//! no wait at all (a burst of up to `rate` sends goes at once); above it, each send waits for
//! its slot (the time the `rate`-th send before it started, plus one second), but no longer than
//! the caller allows (a send: until GRAPH_TIMEOUT_SECS after it began); a slot further away is
//! not taken and the send is refused with the wait ([`crate::graph::GraphError::Paced`], a 429).
//! Slots are taken in arrival order, so waiting sends keep their order.
//!
//! **Where the window lives**: with Redis it is in Redis ([`Pacer::shared_on`],
//! `P:pace:<phone_number_id>`, one script call per send), so every instance on one Redis shares
//! the number's rate, as Meta counts it; with the embedded store (one instance) it is in this
//! process. When Redis does not answer, a send is paced by this process's window instead (logged
//! once per outage) rather than refused: Meta still enforces its own limit, and the send's record
//! needs Redis anyway.
//!
//! [`PairBackoff`]: Meta's pair rate (131056, about one message every 6 s from one number to one
//! user) is answered with a wait that grows as Meta advises, 4^X seconds for the X-th refusal in
//! a row (at least 6 s, at most [`PAIR_BACKOFF_MAX`]), so a client that honours Retry-After backs
//! off instead of retrying in a loop. An accepted send to the pair resets it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::redis::RedisStore;

/// The window's length.
const WINDOW: Duration = Duration::from_secs(1);

/// Sends per second per business number.
#[derive(Debug)]
pub struct Pacer {
    rate: usize,
    /// Per number, the start times of its latest `rate` sends (taken slots), oldest first.
    slots: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// The window every instance on this Redis shares; `None`: this process's only.
    shared: Option<RedisStore>,
    /// The shared window did not answer last time (so the outage is logged once).
    shared_failing: AtomicBool,
}

impl Pacer {
    /// At most `rate` sends per second per number (at least 1), counted in this process.
    pub fn new(rate: usize) -> Self {
        Self {
            rate: rate.max(1),
            slots: Mutex::new(HashMap::new()),
            shared: None,
            shared_failing: AtomicBool::new(false),
        }
    }

    /// The same limit, counted in `store`'s Redis for every instance on it.
    #[must_use]
    pub fn shared_on(self, store: RedisStore) -> Self {
        Self {
            shared: Some(store),
            ..self
        }
    }

    /// SEND_RATE_PER_SECOND.
    pub fn rate(&self) -> usize {
        self.rate
    }

    /// Waits until `number` may send again, taking that slot; when that is more than `longest`
    /// away, takes nothing and returns how long it is (the caller refuses the send rather than
    /// hold it past its deadline).
    pub async fn wait(&self, number: &str, longest: Duration) -> Result<(), Duration> {
        if let Some(store) = &self.shared {
            match store
                .take_send_slot(number, self.rate, WINDOW, longest)
                .await
            {
                Ok(Ok(wait)) => {
                    self.shared_recovered();
                    tokio::time::sleep(wait).await;
                    return Ok(());
                }
                Ok(Err(wait)) => {
                    self.shared_recovered();
                    return Err(wait);
                }
                Err(e) => {
                    if !self.shared_failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error.message = %e, "graph.pacer_unshared Redis does not answer; sends are paced by this instance's own window until it does");
                    }
                }
            }
        }
        let now = Instant::now();
        let slot = self.take(number, now, longest)?;
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    fn shared_recovered(&self) {
        if self.shared_failing.swap(false, Ordering::Relaxed) {
            tracing::info!("graph.pacer_shared Redis answers again; the send rate is shared again");
        }
    }

    /// Takes the next slot of `number` at `now` (the sliding window's rule), unless it is more
    /// than `longest` after `now`: then the wait for it.
    fn take(&self, number: &str, now: Instant, longest: Duration) -> Result<Instant, Duration> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let taken = slots.entry(number.to_owned()).or_default();
        let slot = match taken.len() {
            n if n < self.rate => now,
            n => now.max(taken[n - self.rate] + WINDOW),
        };
        if slot - now > longest {
            return Err(slot - now);
        }
        taken.push_back(slot);
        while taken.len() > self.rate {
            taken.pop_front();
        }
        Ok(slot)
    }
}

/// Longest pair-rate wait.
pub const PAIR_BACKOFF_MAX: Duration = Duration::from_secs(1024);
/// Refusals older than this no longer count.
const PAIR_MEMORY: Duration = Duration::from_secs(3600);
/// Pairs remembered before old ones are dropped.
const PAIR_CAPACITY: usize = 10_000;

/// Pair-rate refusals in a row per (business number, recipient); see the module doc.
#[derive(Debug, Default)]
pub struct PairBackoff {
    strikes: Mutex<HashMap<(String, String), (u32, Instant)>>,
}

impl PairBackoff {
    /// Counts a pair-rate refusal of a send from `from` to `to`; returns how long to wait
    /// before the next send to them.
    pub fn refused(&self, from: &str, to: &str) -> Duration {
        let now = Instant::now();
        let mut strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        if strikes.len() >= PAIR_CAPACITY {
            strikes.retain(|_, (_, at)| now.duration_since(*at) < PAIR_MEMORY);
            if strikes.len() >= PAIR_CAPACITY {
                strikes.clear();
            }
        }
        let entry = strikes
            .entry((from.to_owned(), to.to_owned()))
            .or_insert((0, now));
        if now.duration_since(entry.1) >= PAIR_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        pair_wait(entry.0)
    }

    /// An accepted send from `from` to `to`: the pair starts over.
    pub fn accepted(&self, from: &str, to: &str) {
        let mut strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        if !strikes.is_empty() {
            strikes.remove(&(from.to_owned(), to.to_owned()));
        }
    }
}

/// The wait after the `strike`-th refusal in a row: 4^strike seconds, within 6 s and
/// [`PAIR_BACKOFF_MAX`].
fn pair_wait(strike: u32) -> Duration {
    let secs = 4u64
        .saturating_pow(strike)
        .clamp(6, PAIR_BACKOFF_MAX.as_secs());
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_wait_grows_as_four_to_the_strike_and_resets_on_success() {
        let backoff = PairBackoff::default();
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(backoff.refused("A", "u1")), 6);
        assert_eq!(secs(backoff.refused("A", "u1")), 16);
        assert_eq!(secs(backoff.refused("A", "u1")), 64);
        // Another pair has its own count.
        assert_eq!(secs(backoff.refused("A", "u2")), 6);
        assert_eq!(secs(backoff.refused("B", "u1")), 6);
        assert_eq!(secs(backoff.refused("A", "u1")), 256);
        assert_eq!(secs(backoff.refused("A", "u1")), 1024);
        assert_eq!(secs(backoff.refused("A", "u1")), 1024);
        backoff.accepted("A", "u1");
        assert_eq!(secs(backoff.refused("A", "u1")), 6);
    }

    #[test]
    fn below_the_rate_nothing_waits_and_above_it_each_second_holds_at_most_rate() {
        let pacer = Pacer::new(3);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..8)
            .map(|_| pacer.take("1", t0, ANY).unwrap() - t0)
            .collect();
        let s = Duration::from_secs;
        assert_eq!(slots, [s(0), s(0), s(0), s(1), s(1), s(1), s(2), s(2)]);
        // Another number has its own window.
        assert_eq!(pacer.take("2", t0, ANY), Ok(t0));
    }

    const ANY: Duration = Duration::from_secs(3600);

    #[test]
    fn a_slot_further_away_than_the_longest_wait_is_refused_and_not_taken() {
        let pacer = Pacer::new(2);
        let t0 = Instant::now();
        let longest = Duration::from_millis(1500);
        for expected in [0, 0, 1, 1] {
            let slot = pacer.take("1", t0, longest).unwrap();
            assert_eq!(slot - t0, Duration::from_secs(expected));
        }
        // The next slot is 2 s away: refused with that wait, and nothing is taken.
        assert_eq!(pacer.take("1", t0, longest), Err(Duration::from_secs(2)));
        assert_eq!(pacer.take("1", t0, longest), Err(Duration::from_secs(2)));
        // Half a second later it is 1.5 s away: taken.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            pacer.take("1", later, longest),
            Ok(t0 + Duration::from_secs(2))
        );
    }

    #[test]
    fn sends_spaced_out_below_the_rate_never_wait() {
        let pacer = Pacer::new(2);
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + Duration::from_millis(600 * i);
            assert_eq!(pacer.take("1", now, ANY), Ok(now), "send {i}");
        }
    }
}
