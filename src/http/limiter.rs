//! Wrong API keys, counted per client address: the inbox's sign-in (`POST /inbox/session`) and
//! the `Authorization: Bearer` / `X-API-Key` headers of every client route share one count.
//!
//! An address that presented [`MAX_WRONG_KEYS`] wrong keys within [`WINDOW`] is *blocked* until
//! the oldest of them leaves the window: a key it presents meanwhile is answered 429 with
//! Retry-After **without being checked**, the right key included. Checking it would let a blocked
//! guesser tell a right guess (let in) from a wrong one (429) at full speed, and the limit would
//! slow nothing. What a blocked address does not lose: a valid session cookie (a 256-bit MAC, not
//! a guess, so an inbox already signed in keeps working), and requests that present no key. Other
//! addresses are never affected, so a guesser cannot lock the operator out from elsewhere.
//!
//! The address is the TCP peer the gateway sees ([`crate::http::edge::Connection`]); no
//! `X-Forwarded-For` is trusted. Behind a tunnel or reverse proxy every request comes from the
//! proxy's address, so its clients share one count (and one block). IPv6 addresses are counted by
//! their /64 (one host usually has a whole /64 to pick from); IPv4-mapped ones as IPv4.
//!
//! Memory is bounded: at most [`MAX_ADDRESSES`] addresses are tracked, each with at most
//! [`MAX_WRONG_KEYS`] instants. When the table is full, addresses whose failures all left the
//! window are dropped first, then the one whose latest failure is oldest.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong keys one address may present per [`WINDOW`]; the next key waits (429).
pub const MAX_WRONG_KEYS: usize = 10;
/// The window over which wrong keys are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// The per-address count of wrong keys (see the module doc).
#[derive(Debug)]
pub struct WrongKeys {
    by_address: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    max_addresses: usize,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn blocked_at(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let mut by_address = self.lock();
        let key = bucket(client);
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
        let key = bucket(client);
        if !by_address.contains_key(&key) && by_address.len() >= self.max_addresses {
            by_address.retain(|_, failures| {
                expire(failures, now);
                !failures.is_empty()
            });
            if by_address.len() >= self.max_addresses {
                let stalest = by_address
                    .iter()
                    .min_by_key(|(_, failures)| failures.back().copied())
                    .map(|(address, _)| *address);
                if let Some(address) = stalest {
                    by_address.remove(&address);
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

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
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
        // All gone: the entry is dropped.
        assert_eq!(limiter.blocked_at(a, start + 2 * WINDOW), None);
        assert_eq!(limiter.tracked(), 0);
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
        assert!(!map.contains_key(&b) && map.contains_key(&c) && map.contains_key(&e));
    }
}
