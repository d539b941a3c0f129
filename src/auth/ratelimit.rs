//! Limits on `POST /auth/token` per client address, designed so that nobody's valid key
//! is refused because of what others on the same address did.
//!
//! # Why the key is always looked up
//!
//! Many people can share one address (an office NAT, a carrier-grade NAT, every client
//! of a proxy the server does not trust). A limit that refuses an address before its key
//! is looked up lets ten wrong keys from anyone lock everyone there out. So the key is
//! looked up first, and:
//! - a valid key always gets its token, however many failures its address has;
//! - a wrong key gets 401 while its address has at most `--login-failures` failures in
//!   its window (one minute, started by the first failure), and 429 with `Retry-After`
//!   (the seconds left in the window) beyond them. The 429 tells a client that retries
//!   wrong keys in a loop to stop; it costs the server the same as a 401.
//!
//! Guessing is not what the limit stops: keys are 32 characters of 62 (190 bits), so a
//! million guesses a second for a century find a given key with a chance of about
//! 10^-42. What needs protecting is the server's CPU and its key store (SQLite, or Redis
//! in a cluster), and a lookup is cheap: a SHA-256 and one indexed read on a worker
//! thread, a few microseconds.
//!
//! # What bounds a flood: lookups in flight per address
//!
//! [`LookupGate`] lets one address have at most `--login-concurrency` exchanges (1,024
//! by default) queued for or running on the workers at once. Beyond it the request is
//! answered 429 with `Retry-After: 1` at once, without a lookup. A person has one
//! exchange in flight; a thousand people behind one NAT logging in at 100 a second have
//! a fraction of one (each takes microseconds). Only a flood reaches the bound, and then:
//! - the flood holds at most a quarter of the worker queue (4,096 jobs), so other
//!   addresses keep getting answers, behind at most that many lookups;
//! - the key store never sees more lookups at once than there are workers;
//! - whoever shares the flooding address is refused too while the flood lasts, valid
//!   keys included: before the lookup the server cannot tell them apart. They are told
//!   to retry after a second, and get in as soon as the flood leaves room.
//!
//! The bound needs no clock: a slot is taken when the request is parsed and given back
//! when its lookup ends ([`LookupPermit`] is dropped), whatever the outcome.
//!
//! # Addresses
//!
//! The address is the client's ([`crate::http::forwarded`]: the TCP peer, or what a
//! trusted proxy says). Both limits count an IPv6 client by its /64, the block one
//! subscriber line gets: its owner can pick any address in it, so counting single
//! addresses would let one client multiply its budget by 2^64 ([`limit_key`]).
//!
//! [`LoginLimiter`] counts failures in memory; a cluster counts them in Redis
//! (`crate::cluster::limiter`) under the same rule, so every node agrees. The gate is
//! per node: what it protects, the worker queue, is per node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// The window of the failed-login limit: `--login-failures-per-minute` counts per minute.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

const MAX_TRACKED: usize = 100_000;

/// The limiter seam: one node counts in memory ([`LoginLimiter`]); a cluster counts in a
/// shared store so that every node applies the same limit.
pub trait FailureLimiter: Send + Sync {
    /// Counts one failed attempt (a wrong key) from `ip`. `Some(retry_after_secs)` when
    /// `ip` is now beyond its limit: the answer is then 429 rather than 401.
    fn record_failure(&self, ip: IpAddr, now: Instant) -> Option<u64>;
}

/// The address both limits count by: an IPv4 address as it is, an IPv6 address by its
/// /64 (an IPv4-mapped one as its IPv4 address).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::from((u128::from(v6) & !(u128::MAX >> 64)).to_be_bytes()),
        v4 => v4,
    }
}

/// Failed logins per address in fixed windows, in memory.
///
/// The table is pruned of ended windows when it grows, so an attacker rotating addresses
/// cannot grow it beyond `MAX_TRACKED` live entries.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    table: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl LoginLimiter {
    /// `max_failures == 0` disables limiting.
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter { max_failures, window, table: Mutex::new(HashMap::new()) }
    }
}

impl FailureLimiter for LoginLimiter {
    fn record_failure(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        if self.max_failures == 0 {
            return None;
        }
        let ip = limit_key(ip);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= MAX_TRACKED && !table.contains_key(&ip) {
            let window = self.window;
            table.retain(|_, w| now < w.started + window);
            if table.len() >= MAX_TRACKED {
                // Still full of live windows: forget the oldest rather than grow.
                if let Some(oldest) = table.iter().min_by_key(|(_, w)| w.started).map(|(ip, _)| *ip)
                {
                    table.remove(&oldest);
                }
            }
        }
        let w = table.entry(ip).or_insert(Window { started: now, failures: 0 });
        if now >= w.started + self.window {
            *w = Window { started: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
        if w.failures <= self.max_failures {
            return None;
        }
        let left = (w.started + self.window).saturating_duration_since(now);
        Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }
}

/// Lookups in flight per address: at most `per_address` at once (0: no bound).
#[derive(Debug)]
pub struct LookupGate {
    per_address: usize,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
    metrics: Arc<Metrics>,
}

/// One admitted exchange: its slot is given back when the permit is dropped (the lookup
/// ended, or the job never ran).
#[derive(Debug)]
pub struct LookupPermit {
    gate: Arc<LookupGate>,
    ip: IpAddr,
}

impl LookupPermit {
    /// The client's address, as the exchange was admitted for it.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl LookupGate {
    pub fn new(per_address: usize, metrics: Arc<Metrics>) -> Arc<LookupGate> {
        Arc::new(LookupGate { per_address, in_flight: Mutex::new(HashMap::new()), metrics })
    }

    /// A permit for one lookup from `ip`, or `None` when `ip` already has its bound in
    /// flight. The table holds only addresses with lookups in flight, so its size is
    /// bounded by the worker queue.
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr) -> Option<LookupPermit> {
        let key = limit_key(ip);
        let mut table = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let n = table.entry(key).or_insert(0);
        if self.per_address > 0 && *n >= self.per_address {
            return None;
        }
        *n += 1;
        self.metrics.auth_lookups_in_flight.fetch_add(1, Relaxed);
        Some(LookupPermit { gate: self.clone(), ip })
    }

    fn leave(&self, ip: IpAddr) {
        let key = limit_key(ip);
        let mut table = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = table.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                table.remove(&key);
            }
            self.metrics.auth_lookups_in_flight.fetch_sub(1, Relaxed);
        }
    }

    /// Addresses with lookups in flight now.
    pub fn addresses(&self) -> usize {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for LookupPermit {
    fn drop(&mut self) {
        self.gate.leave(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn beyond_the_limit_a_failure_is_answered_with_the_seconds_left_in_the_window() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.record_failure(a, t0), None, "within the limit: 401");
        }
        assert_eq!(limiter.record_failure(a, t0 + Duration::from_secs(1)), Some(59));
        assert_eq!(limiter.record_failure(a, t0 + Duration::from_millis(59_500)), Some(1));
        assert_eq!(limiter.record_failure(b, t0), None, "other addresses are unaffected");
        // A new window starts with the first failure after the old one ended.
        assert_eq!(limiter.record_failure(a, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn zero_disables_limiting() {
        let limiter = LoginLimiter::new(0, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(limiter.record_failure(ip("::1"), now), None);
        }
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_address_as_ipv4() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(limit_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let limiter = LoginLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(limiter.record_failure(ip("2001:db8:1:2::1"), now), None);
        assert!(limiter.record_failure(ip("2001:db8:1:2::ffff"), now).is_some());
        assert_eq!(limiter.record_failure(ip("2001:db8:1:3::1"), now), None);
    }

    #[test]
    fn the_gate_admits_its_bound_per_address_and_a_dropped_permit_frees_its_slot() {
        let metrics = Arc::new(Metrics::new());
        let gate = LookupGate::new(2, metrics.clone());
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let first = gate.try_enter(a).expect("first");
        let second = gate.try_enter(a).expect("second");
        assert!(gate.try_enter(a).is_none(), "a third at once is refused");
        let other = gate.try_enter(b).expect("another address has its own bound");
        assert_eq!(metrics.auth_lookups_in_flight.load(Relaxed), 3);
        drop(first);
        let third = gate.try_enter(a).expect("a slot came back");
        assert_eq!(third.ip(), a);
        drop((second, third, other));
        assert_eq!((gate.addresses(), metrics.auth_lookups_in_flight.load(Relaxed)), (0, 0));
    }

    #[test]
    fn a_gate_of_zero_admits_everyone() {
        let gate = LookupGate::new(0, Arc::new(Metrics::new()));
        let permits: Vec<LookupPermit> =
            (0..10_000).map(|_| gate.try_enter(ip("10.0.0.1")).expect("admitted")).collect();
        assert_eq!(permits.len(), 10_000);
    }
}
