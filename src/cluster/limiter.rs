//! [`RedisLimiter`]: failed logins counted in the shared Redis, so the limit holds for
//! the cluster, not per node (an attacker spreading guesses over N nodes behind a load
//! balancer would otherwise get N times the budget).
//!
//! Same rule as the single node's [`crate::auth::ratelimit::LoginLimiter`]: after
//! `max_failures` failed exchanges from one IP within a fixed window started by its first
//! failure, `check` answers with the seconds left in the window (the 429's
//! `Retry-After`); `max_failures == 0` disables limiting. `{prefix}login:<ip>` counts the
//! failures and expires with the window, so Redis forgets idle addresses by itself.
//! Windows run on Redis's clock, so nodes with skewed clocks agree; the `now` the seam
//! passes in is not used.
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
use crate::auth::ratelimit::FailureLimiter;

/// KEYS: login:<ip>. ARGV: window in ms. Counts one failure; the first one starts the
/// window (and a counter found without a ttl gets one, so it cannot block forever).
const RECORD: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
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
    fn check(&self, ip: IpAddr, _now: Instant) -> Result<(), u64> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let name = self.keys.login(ip);
        let reply = self
            .pool
            .with_conn(|c| redis::pipe().cmd("GET").arg(&name).cmd("PTTL").arg(&name).query(c));
        match reply {
            Ok((failures, left_ms)) => {
                self.reached();
                let failures: Option<u64> = failures;
                let left_ms: i64 = left_ms;
                // A negative PTTL: no key (-2) or no ttl (-1, fixed by the next failure).
                match (failures, u64::try_from(left_ms)) {
                    (Some(n), Ok(ms)) if n >= u64::from(self.max_failures) && ms > 0 => {
                        Err(ms.div_ceil(1000))
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => {
                self.unreachable(&e);
                Ok(())
            }
        }
    }

    fn record_failure(&self, ip: IpAddr, _now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let name = self.keys.login(ip);
        let reply: Result<i64, LinkError> =
            self.pool.with_conn(|c| self.record.key(&name).arg(self.window_ms()).invoke(c));
        match reply {
            Ok(_) => self.reached(),
            Err(e) => self.unreachable(&e),
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
    fn the_limit_applies_per_ip_and_is_shared_by_every_node() {
        let Some(server) = TestRedis::start() else { return };
        let (node_a, node_b) = (limiter(&server, 3, MINUTE), limiter(&server, 3, MINUTE));
        let (a, b) = (ip("10.0.0.1"), ip("2001:db8::1"));
        let now = Instant::now();
        // Failures spread over two nodes count together.
        node_a.record_failure(a, now);
        node_b.record_failure(a, now);
        assert_eq!(node_a.check(a, now), Ok(()));
        node_a.record_failure(a, now);
        for node in [&node_a, &node_b] {
            let retry = node.check(a, now).unwrap_err();
            assert!((59..=60).contains(&retry), "Retry-After {retry}");
        }
        assert_eq!(node_b.check(b, now), Ok(()), "other addresses are unaffected");
        let ttl: i64 =
            redis::cmd("PTTL").arg("t:login:10.0.0.1").query(&mut server.conn()).unwrap();
        assert!(ttl > 59_000, "the window is not extended by later failures: {ttl}");
    }

    #[test]
    fn the_limit_ends_with_its_window() {
        let Some(server) = TestRedis::start() else { return };
        let l = limiter(&server, 2, Duration::from_millis(200));
        let a = ip("10.0.0.9");
        l.record_failure(a, Instant::now());
        l.record_failure(a, Instant::now());
        assert_eq!(l.check(a, Instant::now()), Err(1), "a partial second rounds up");
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.check(a, Instant::now()).is_err() {
            assert!(Instant::now() < deadline, "the window never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn zero_disables_limiting_without_asking_redis() {
        let Some(server) = TestRedis::start() else { return };
        let l = limiter(&server, 0, MINUTE);
        for _ in 0..10 {
            l.record_failure(ip("10.0.0.1"), Instant::now());
        }
        assert_eq!(l.check(ip("10.0.0.1"), Instant::now()), Ok(()));
        let names: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.conn()).unwrap();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn an_unreachable_redis_fails_open() {
        let pool = Arc::new(LinkPool::new("redis://127.0.0.1:1/", 1).unwrap());
        let l = RedisLimiter::new(pool, "t:", 1, MINUTE);
        for _ in 0..5 {
            l.record_failure(ip("10.0.0.1"), Instant::now());
            assert_eq!(l.check(ip("10.0.0.1"), Instant::now()), Ok(()));
        }
        assert!(l.failing.load(Ordering::Relaxed));
    }
}
