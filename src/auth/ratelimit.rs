//! Failed-login limiting per client IP: after `max_failures` failed `/auth/token`
//! attempts within a window, further attempts from that IP get 429 with `Retry-After`
//! until the window ends. Successful logins are never slowed and other IPs are unaffected.
//!
//! Fixed windows per IP, started by the first failure; the table is pruned of ended
//! windows when it grows, so an attacker rotating addresses cannot grow it without bound
//! beyond `MAX_TRACKED` live entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const MAX_TRACKED: usize = 100_000;

/// The limiter seam: one node counts in memory ([`LoginLimiter`]); a cluster counts in a
/// shared store so that every node applies the same limit.
pub trait FailureLimiter: Send + Sync {
    /// `Err(retry_after_secs)` when `ip` is over its limit.
    fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64>;
    /// Counts one failed attempt from `ip`.
    fn record_failure(&self, ip: IpAddr, now: Instant);
}

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
    fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match table.get(&ip) {
            Some(w) if w.failures >= self.max_failures && now < w.started + self.window => {
                let left = (w.started + self.window).saturating_duration_since(now);
                Err(left.as_secs() + u64::from(left.subsec_nanos() > 0))
            }
            _ => Ok(()),
        }
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= MAX_TRACKED {
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
        w.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_applies_per_ip_and_ends_with_the_window() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(a, t0), Ok(()));
            limiter.record_failure(a, t0);
        }
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(1)), Err(59));
        assert_eq!(limiter.check(b, t0), Ok(()), "other addresses are unaffected");
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn zero_disables_limiting() {
        let limiter = LoginLimiter::new(0, Duration::from_secs(60));
        let ip: IpAddr = "::1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..100 {
            limiter.record_failure(ip, now);
        }
        assert_eq!(limiter.check(ip, now), Ok(()));
    }
}
