//! Wrong API keys, counted per client address: the inbox's sign-in (`POST /inbox/session`) and
//! the `Authorization: Bearer` / `X-API-Key` headers of every client route share one count.
//!
//! An address that presented [`MAX_WRONG_KEYS`] wrong keys within [`WINDOW`] is *blocked* until
//! the oldest of them leaves the window: a key it presents meanwhile is answered 429 with
//! Retry-After **without being checked**, the right key included. Checking it would let a blocked
//! guesser tell a right guess (let in) from a wrong one (429) at full speed, and the limit would
//! slow nothing. What a blocked address does not lose: requests that present no key header, a valid
//! session cookie among them (a 256-bit MAC, not a guess, so an inbox already signed in keeps
//! working). Other addresses are never affected, so a guesser cannot lock the operator out from
//! another address; but see below for proxies and tunnels.
//!
//! The address is the client address of [`crate::http::edge::Connection`]: the TCP peer, or
//! behind a proxy listed in TRUSTED_PROXIES the address its `X-Forwarded-For` names (from any
//! other peer the header is ignored). Without that setting, behind a tunnel or reverse proxy
//! every request comes from the proxy's address, so its clients share one count (and one block).
//! A tunnel agent such as ngrok or cloudflared connects from 127.0.0.1, the address of local
//! keyed clients too: ten wrong keys a minute through the tunnel then hold back the local
//! clients' keys (and the inbox sign-in) as well, for as long as they keep coming. IPv6
//! addresses are counted by their /64 (one host usually has a whole /64 to pick from);
//! IPv4-mapped ones as IPv4: [`crate::http::edge::ClientKey`], as the upload budgets are.
//!
//! Memory is bounded: at most [`MAX_ADDRESSES`] addresses are tracked, each with at most
//! [`MAX_WRONG_KEYS`] instants. When the table is full, addresses whose failures all left the
//! window are dropped first; if none had, the stalest quarter goes at once (so the full scan runs
//! at most once per quarter of the table's inserts, not for every new address).
//!
//! Cost on the keyed hot path: while no address is blocked, checking is one atomic load (the
//! latest time any block can last); the table's lock is taken only while some address may be
//! blocked, and for wrong keys.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http::edge::ClientKey;

/// Wrong keys one address may present per [`WINDOW`]; the next key waits (429).
pub const MAX_WRONG_KEYS: usize = 10;
/// The window over which wrong keys are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// The per-address count of wrong keys (see the module doc).
#[derive(Debug)]
pub struct WrongKeys {
    by_address: Mutex<HashMap<ClientKey, VecDeque<Instant>>>,
    max_addresses: usize,
    /// Time zero of `blocked_until`.
    base: Instant,
    /// No address is blocked from this time on (ms after `base`): the latest end of any block
    /// recorded. Before it, [`WrongKeys::blocked`] looks in the table.
    blocked_until: AtomicU64,
}

impl Default for WrongKeys {
    fn default() -> Self {
        Self::with_capacity(MAX_ADDRESSES)
    }
}

impl WrongKeys {
    /// A limiter tracking at most `max_addresses` addresses (at least one).
    pub fn with_capacity(max_addresses: usize) -> Self {
        Self {
            by_address: Mutex::default(),
            max_addresses: max_addresses.max(1),
            base: Instant::now(),
            blocked_until: AtomicU64::new(0),
        }
    }

    /// How long `client` must wait before a key it presents is checked; `None`: not blocked.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        self.blocked_at(client, Instant::now())
    }

    /// Counts a wrong key presented by `client`.
    pub fn record(&self, client: IpAddr) {
        self.record_at(client, Instant::now());
    }

    /// How many addresses are tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, VecDeque<Instant>>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn since_base(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    fn blocked_at(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        if self.since_base(now) >= self.blocked_until.load(Ordering::Relaxed) {
            return None;
        }
        let mut by_address = self.lock();
        let key = ClientKey::of(client);
        let failures = by_address.get_mut(&key)?;
        expire(failures, now);
        if failures.is_empty() {
            by_address.remove(&key);
            return None;
        }
        if failures.len() < MAX_WRONG_KEYS {
            return None;
        }
        let oldest = failures.front().copied().unwrap_or(now);
        let wait = WINDOW.saturating_sub(now.saturating_duration_since(oldest));
        Some(wait.max(Duration::from_secs(1)))
    }

    fn record_at(&self, client: IpAddr, now: Instant) {
        let mut by_address = self.lock();
        let key = ClientKey::of(client);
        if !by_address.contains_key(&key) && by_address.len() >= self.max_addresses {
            by_address.retain(|_, failures| {
                expire(failures, now);
                !failures.is_empty()
            });
            if by_address.len() >= self.max_addresses {
                // The stalest quarter (at least one) goes, by latest failure.
                let mut latest: Vec<(Option<Instant>, ClientKey)> = by_address
                    .iter()
                    .map(|(address, failures)| (failures.back().copied(), *address))
                    .collect();
                let drop = (latest.len() / 4).max(1);
                latest.select_nth_unstable(drop - 1);
                for (_, address) in &latest[..drop] {
                    by_address.remove(address);
                }
            }
        }
        let failures = by_address.entry(key).or_default();
        expire(failures, now);
        // Concurrent checks may record more than the limit; only the newest count.
        while failures.len() >= MAX_WRONG_KEYS {
            failures.pop_front();
        }
        failures.push_back(now);
        if failures.len() >= MAX_WRONG_KEYS {
            let oldest = failures.front().copied().unwrap_or(now);
            let until = self.since_base(oldest + WINDOW) + 1;
            self.blocked_until.fetch_max(until, Ordering::Relaxed);
        }
    }
}

/// Drops the failures that left the window.
fn expire(failures: &mut VecDeque<Instant>, now: Instant) {
    while failures
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_blocked_after_the_limit_until_its_oldest_failure_leaves_the_window() {
        let limiter = WrongKeys::default();
        let start = Instant::now();
        let a = ip("203.0.113.7");
        for i in 0..MAX_WRONG_KEYS {
            assert_eq!(limiter.blocked_at(a, start), None, "after {i}");
            limiter.record_at(a, start + Duration::from_secs(i as u64));
        }
        let now = start + Duration::from_secs(10);
        assert_eq!(limiter.blocked_at(a, now), Some(Duration::from_secs(50)));
        // Another address is not affected.
        assert_eq!(limiter.blocked_at(ip("203.0.113.8"), now), None);
        // The first failure leaves the window: one more key may be checked.
        assert_eq!(limiter.blocked_at(a, start + WINDOW), None);
        // All gone: not blocked (the check no longer needs the table; expired entries are
        // dropped when the table is full, see below).
        assert_eq!(limiter.blocked_at(a, start + 2 * WINDOW), None);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limiter = WrongKeys::default();
        let now = Instant::now();
        for i in 0..MAX_WRONG_KEYS {
            limiter.record_at(ip(&format!("2001:db8:1:2::{:x}", i + 1)), now);
        }
        assert!(
            limiter
                .blocked_at(ip("2001:db8:1:2:ffff::1"), now)
                .is_some()
        );
        assert_eq!(limiter.blocked_at(ip("2001:db8:1:3::1"), now), None);
        for _ in 0..MAX_WRONG_KEYS {
            limiter.record_at(ip("::ffff:198.51.100.1"), now);
        }
        assert!(limiter.blocked_at(ip("198.51.100.1"), now).is_some());
    }

    #[test]
    fn memory_is_bounded_expired_addresses_go_first_then_the_stalest() {
        let limiter = WrongKeys::with_capacity(3);
        let start = Instant::now();
        let (a, b, c, d, e) = (
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.3"),
            ip("192.0.2.4"),
            ip("192.0.2.5"),
        );
        limiter.record_at(a, start);
        limiter.record_at(b, start + Duration::from_secs(30));
        for _ in 0..MAX_WRONG_KEYS {
            limiter.record_at(c, start + Duration::from_secs(40));
        }
        assert_eq!(limiter.tracked(), 3);
        // a's failure has expired by then: a goes, b and c stay.
        let later = start + WINDOW + Duration::from_secs(1);
        limiter.record_at(d, later);
        assert_eq!(limiter.tracked(), 3);
        assert!(limiter.blocked_at(c, later).is_some());
        // Full of live entries: the stalest (b) goes.
        limiter.record_at(e, later);
        assert_eq!(limiter.tracked(), 3);
        let map = limiter.lock();
        let key = ClientKey::of;
        assert!(
            !map.contains_key(&key(b)) && map.contains_key(&key(c)) && map.contains_key(&key(e))
        );
    }

    #[test]
    fn a_full_table_of_live_addresses_drops_its_stalest_quarter_at_once() {
        let limiter = WrongKeys::with_capacity(100);
        let start = Instant::now();
        for i in 0..100u32 {
            limiter.record_at(
                IpAddr::V4((0x0a00_0000 + i).into()),
                start + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(limiter.tracked(), 100);
        // One new address makes room for 25: the next 24 need no scan.
        let later = start + Duration::from_secs(1);
        limiter.record_at(ip("192.0.2.200"), later);
        assert_eq!(limiter.tracked(), 76);
        let map = limiter.lock();
        // The 25 stalest (10.0.0.0 - 10.0.0.24) went, the newest stayed.
        assert!(
            (0..25u32)
                .all(|i| !map.contains_key(&ClientKey::of(IpAddr::V4((0x0a00_0000 + i).into()))))
        );
        assert!(
            (25..100u32)
                .all(|i| map.contains_key(&ClientKey::of(IpAddr::V4((0x0a00_0000 + i).into()))))
        );
    }

    #[test]
    fn nobody_blocked_means_no_lock_is_taken() {
        let limiter = WrongKeys::default();
        let now = Instant::now();
        limiter.record_at(ip("192.0.2.9"), now);
        // Held by another thread: a check that needed it would wait forever.
        let held = limiter.lock();
        std::thread::scope(|scope| {
            let checked = scope.spawn(|| limiter.blocked_at(ip("192.0.2.9"), now));
            assert_eq!(checked.join().unwrap(), None);
        });
        drop(held);
        // Once an address is blocked, checks look in the table (and end with the block).
        for _ in 0..MAX_WRONG_KEYS {
            limiter.record_at(ip("192.0.2.10"), now);
        }
        assert!(limiter.blocked_at(ip("192.0.2.10"), now).is_some());
        assert_eq!(limiter.blocked_at(ip("192.0.2.11"), now), None);
        assert_eq!(limiter.blocked_at(ip("192.0.2.10"), now + WINDOW), None);
    }
}
