//! [`RedisLimiter`]: failed logins counted in the shared Redis, so the limit holds for
//! the cluster, not per node (an attacker spreading guesses over N nodes behind a load
//! balancer would otherwise get N times the budget).
//!
//! Same rule as the single node's [`crate::auth::ratelimit::LoginLimiter`] (whose module
//! doc has the reasoning): only wrong keys are counted and only wrong keys are refused,
//! so a valid key always gets its token. A failure beyond `max_failures` from one address
//! within a fixed window started by its first failure is answered with the seconds left
//! in the window (the 429's `Retry-After`) instead of 401; `max_failures == 0` disables
//! limiting. `{prefix}login:<address>` counts the failures (an IPv6 client by its /64,
//! [`limit_key`]) and expires with the window, so Redis forgets idle addresses by
//! itself. One script counts and reads the time left, one round trip per failure and
//! none for a valid key. Windows run on Redis's clock, so nodes with skewed clocks
//! agree; the `now` the seam passes in is not used.
//!
//! When Redis cannot be reached the limiter fails open (logins still work, unlimited)
//! and says so in one warning per outage, not one per request: an outage of the limiter
//! must not become an outage of logins.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Script;

use super::Keys;
use super::link::LinkError;
use super::pool::LinkPool;
use crate::auth::ratelimit::{FailureLimiter, limit_key};

/// KEYS: login:<address>. ARGV: window in ms. Counts one failure; the first one starts
/// the window (and a counter found without a ttl gets one, so it cannot block forever).
/// Returns the count and the ms left in the window.
const RECORD: &str = r"
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if n == 1 or left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
";

/// The cluster-wide failed-login limiter.
#[derive(Debug)]
pub struct RedisLimiter {
    pool: Arc<LinkPool>,
    keys: Keys,
    max_failures: u32,
    window: Duration,
    record: Script,
    /// Whether the last call failed, so an outage is logged once, at its start and end.
    failing: AtomicBool,
}

impl RedisLimiter {
    /// `max_failures == 0` disables limiting (and Redis is never asked).
    pub fn new(
        pool: Arc<LinkPool>,
        prefix: &str,
        max_failures: u32,
        window: Duration,
    ) -> RedisLimiter {
        RedisLimiter {
            pool,
            keys: Keys::new(prefix),
            max_failures,
            window,
            record: Script::new(RECORD),
            failing: AtomicBool::new(false),
        }
    }

    fn window_ms(&self) -> u64 {
        // At least 1: `PEXPIRE 0` would delete the counter at once.
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn reached(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            crate::info!("login limiter: Redis reachable again");
        }
    }

    fn unreachable(&self, err: &LinkError) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            crate::warn!(
                "login limiter: Redis unavailable; failed logins are not limited until it is back",
                error = err
            );
        }
    }
}

impl FailureLimiter for RedisLimiter {
    fn record_failure(&self, ip: IpAddr, _now: Instant) -> Option<u64> {
        if self.max_failures == 0 {
            return None;
        }
        let name = self.keys.login(limit_key(ip));
        let reply: Result<(u64, i64), LinkError> =
            self.pool.with_conn(|c| self.record.key(&name).arg(self.window_ms()).invoke(c));
        match reply {
            Ok((failures, left_ms)) => {
                self.reached();
                if failures <= u64::from(self.max_failures) {
                    return None;
                }
                Some(u64::try_from(left_ms).unwrap_or(0).div_ceil(1000).max(1))
            }
            Err(e) => {
                // Fails open: a wrong key is still refused (401), only not with 429.
                self.unreachable(&e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_redis::TestRedis;

    const MINUTE: Duration = Duration::from_secs(60);

    fn limiter(server: &TestRedis, max: u32, window: Duration) -> RedisLimiter {
        RedisLimiter::new(Arc::new(LinkPool::new(&server.url(), 1).unwrap()), "t:", max, window)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_limit_applies_per_address_and_is_shared_by_every_node() {
        let Some(server) = TestRedis::start() else { return };
        let (node_a, node_b) = (limiter(&server, 3, MINUTE), limiter(&server, 3, MINUTE));
        let (a, b) = (ip("10.0.0.1"), ip("2001:db8::1"));
        let now = Instant::now();
        // Failures spread over two nodes count together.
        assert_eq!(node_a.record_failure(a, now), None);
        assert_eq!(node_b.record_failure(a, now), None);
        assert_eq!(node_a.record_failure(a, now), None);
        for node in [&node_a, &node_b] {
            let retry = node.record_failure(a, now).expect("beyond the limit");
            assert!((59..=60).contains(&retry), "Retry-After {retry}");
        }
        assert_eq!(node_b.record_failure(b, now), None, "other addresses are unaffected");
        let ttl: i64 =
            redis::cmd("PTTL").arg("t:login:10.0.0.1").query(&mut server.conn()).unwrap();
        assert!(ttl > 59_000, "the window is not extended by later failures: {ttl}");
        let v6: i64 =
            redis::cmd("EXISTS").arg("t:login:2001:db8::").query(&mut server.conn()).unwrap();
        assert_eq!(v6, 1, "an IPv6 client is counted by its /64");
    }

    #[test]
    fn the_limit_ends_with_its_window() {
        let Some(server) = TestRedis::start() else { return };
        let l = limiter(&server, 2, Duration::from_millis(200));
        let a = ip("10.0.0.9");
        assert_eq!(l.record_failure(a, Instant::now()), None);
        assert_eq!(l.record_failure(a, Instant::now()), None);
        assert_eq!(l.record_failure(a, Instant::now()), Some(1), "a partial second rounds up");
        let deadline = Instant::now() + Duration::from_secs(5);
        // Once the window has ended, the next failure starts a new one (within the limit).
        while l.record_failure(a, Instant::now()).is_some() {
            assert!(Instant::now() < deadline, "the window never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn zero_disables_limiting_without_asking_redis() {
        let Some(server) = TestRedis::start() else { return };
        let l = limiter(&server, 0, MINUTE);
        for _ in 0..10 {
            assert_eq!(l.record_failure(ip("10.0.0.1"), Instant::now()), None);
        }
        let names: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.conn()).unwrap();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn an_unreachable_redis_fails_open() {
        let pool = Arc::new(LinkPool::new("redis://127.0.0.1:1/", 1).unwrap());
        let l = RedisLimiter::new(pool, "t:", 1, MINUTE);
        for _ in 0..5 {
            assert_eq!(l.record_failure(ip("10.0.0.1"), Instant::now()), None);
        }
        assert!(l.failing.load(Ordering::Relaxed));
    }
}
