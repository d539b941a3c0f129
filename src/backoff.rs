//! [`Backoff`]: the jittered exponential schedule of reconnect attempts, shared by the
//! cluster's Redis link and the upstream price client.
//!
//! It takes `now` as an argument and draws its jitter from a seeded generator, so its
//! schedule is tested without sleeps.

use std::time::{Duration, Instant};

/// How reconnect attempts are spaced: `initial`, doubling after every consecutive
/// failure up to `max`, each delay then moved by up to ±`jitter_percent` so that nodes
/// that lost Redis together do not all come back in the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub jitter_percent: u32,
}

impl Default for BackoffPolicy {
    fn default() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            jitter_percent: 20,
        }
    }
}

impl BackoffPolicy {
    /// The delay before the next attempt after `failures` consecutive failures (0 for
    /// the first one), before jitter: `initial * 2^failures`, capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).map_or(self.max, |d| d.min(self.max))
    }
}

/// The reconnect schedule: when the next attempt may be made. Pure: time comes in as
/// `now`, randomness from a seeded generator.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Consecutive failures since the last success.
    failures: u32,
    /// No attempt before this instant; `None` after a success.
    retry_at: Option<Instant>,
    /// SplitMix64 state for the jitter (decorrelation, not security).
    rng: u64,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff { policy, failures: 0, retry_at: None, rng: seed }
    }

    /// `Ok` if an attempt may be made at `now`, else how long is left to wait.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.retry_at {
            Some(at) if now < at => Err(at - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt at `now`; returns the (jittered) delay before the next.
    pub fn on_failure(&mut self, now: Instant) -> Duration {
        let base = self.policy.base_delay(self.failures);
        let delay = self.jitter(base);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + delay);
        delay
    }

    /// Records a success: the next failure starts again from `initial`.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// `base` scaled by a uniform factor in [1 - j, 1 + j].
    fn jitter(&mut self, base: Duration) -> Duration {
        let j = f64::from(self.policy.jitter_percent.min(100)) / 100.0;
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 1.0 + j * (2.0 * unit - 1.0);
        // try_from: a huge configured `max` must not panic on overflow; keep it unjittered.
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
    }

    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A seed that differs between processes, so their jitters differ. Falls back to the
/// clock and pid: the jitter only needs decorrelation, not secrecy.
pub fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_base_delay_doubles_from_50ms_and_stops_at_2s() {
        let p = BackoffPolicy::default();
        let ms: Vec<u128> = (0..9).map(|n| p.base_delay(n).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        // Far past the cap the shift overflows; it must still be the cap, not a panic.
        assert_eq!(p.base_delay(40), p.max);
        assert_eq!(p.base_delay(u32::MAX), p.max);
    }

    #[test]
    fn each_delay_stays_within_20_percent_of_its_base() {
        let p = BackoffPolicy::default();
        for seed in 0..200 {
            let mut b = Backoff::new(p, seed);
            let t0 = Instant::now();
            for n in 0..10 {
                let base = p.base_delay(n).as_secs_f64();
                let d = b.on_failure(t0).as_secs_f64();
                assert!(d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9, "{n}: {d} vs {base}");
            }
        }
    }

    #[test]
    fn jitter_spreads_nodes_that_failed_together() {
        let t0 = Instant::now();
        let mut delays: Vec<Duration> = (0..50)
            .map(|seed| Backoff::new(BackoffPolicy::default(), seed).on_failure(t0))
            .collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
        assert!(delays[delays.len() - 1] - delays[0] > 10 * MS);
    }

    #[test]
    fn no_attempt_is_allowed_until_the_delay_has_passed() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::default(), 7);
        assert_eq!(b.check(t0), Ok(()));
        let d = b.on_failure(t0);
        assert_eq!(b.check(t0), Err(d));
        assert_eq!(b.check(t0 + d - MS), Err(MS));
        assert_eq!(b.check(t0 + d), Ok(()));
        // The second failure, counted from when it happened, waits about twice as long.
        let t1 = t0 + d + 3 * MS;
        let d2 = b.on_failure(t1);
        assert!(d2 >= 80 * MS && d2 <= 120 * MS, "{d2:?}");
        assert!(b.check(t1 + d2 - MS).is_err());
        assert_eq!(b.failures(), 2);
    }

    #[test]
    fn a_success_resets_the_schedule() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::default(), 1);
        for _ in 0..8 {
            b.on_failure(t0);
        }
        b.on_success();
        assert_eq!(b.check(t0), Ok(()));
        assert_eq!(b.failures(), 0);
        assert!(b.on_failure(t0) <= 60 * MS);
    }

    #[test]
    fn zero_jitter_gives_the_exact_schedule() {
        let p = BackoffPolicy { jitter_percent: 0, ..BackoffPolicy::default() };
        let mut b = Backoff::new(p, 99);
        let t0 = Instant::now();
        let ms: Vec<u128> = (0..4).map(|_| b.on_failure(t0).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400]);
    }
}
