//! Per-connection tick latency, to tell whether the server serves its connections fairly.
//!
//! Each connection keeps its own small histogram of the tick latencies it saw in the
//! steady window; when the connection ends (or the window does) its median goes into
//! one run-wide HdrHistogram ([`crate::stats::Hists::conn_median`]). The spread of those
//! medians — best, median and worst connection, worst − best — is the fairness figure.
//!
//! A full HdrHistogram per connection (about 188 KiB at this tool's bounds) would cost
//! close to 1 GiB at 5,000 connections, so the per-connection record is log-linear:
//! values under 32 µs exactly, then 16 buckets per power of two up to 2^24 µs (16.8 s;
//! larger values count in the top bucket). A bucket is at most 1/16 of its values wide,
//! and the median is reported as its bucket's midpoint: within ±3.2 % (±65 µs at 2 ms).
//! 336 `u32` counts, 1,344 bytes, allocated at the connection's first steady tick:
//! 6.6 MiB at 5,000 connections.

/// Values below this are their own bucket.
const EXACT: u32 = 32;
/// log2 of [`EXACT`]: the first power of two split into sub-buckets.
const FIRST_OCTAVE: u32 = 5;
/// Sub-buckets per power of two (4 bits below the leading one).
const SUB_BITS: u32 = 4;
const SUB: u32 = 1 << SUB_BITS;
/// Values at or above 2^TOP_OCTAVE µs count in the last bucket.
const TOP_OCTAVE: u32 = 24;
const BUCKETS: usize = (EXACT + (TOP_OCTAVE - FIRST_OCTAVE) * SUB) as usize;

/// A connection needs this many steady-window ticks (half a second at 10 ms) for its
/// median to be counted: the median of fewer is mostly sampling noise (at 10 samples
/// about ±0.2 ms where ticks spread 2-4 ms), and a connection churned moments after it
/// opened says little.
pub(crate) const MIN_SAMPLES: u32 = 50;

/// One connection's tick latencies in the steady window.
#[derive(Debug, Default)]
pub(crate) struct ConnLatency {
    counts: Option<Box<[u32; BUCKETS]>>,
    samples: u32,
}

impl ConnLatency {
    /// Records one tick latency in µs. The hot path: an index computation and an add.
    pub(crate) fn record(&mut self, us: u64) {
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let i = bucket(us);
        counts[i] = counts[i].saturating_add(1);
        self.samples = self.samples.saturating_add(1);
    }

    #[cfg(test)]
    pub(crate) fn samples(&self) -> u32 {
        self.samples
    }

    /// The median in µs (the lower median for an even count), as its bucket's midpoint;
    /// `None` below [`MIN_SAMPLES`].
    pub(crate) fn median(&self) -> Option<u64> {
        let counts = self.counts.as_ref().filter(|_| self.samples >= MIN_SAMPLES)?;
        let rank = u64::from(self.samples).div_ceil(2);
        let mut seen = 0u64;
        for (i, &n) in counts.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(midpoint(i));
            }
        }
        None
    }

    /// The median, then an empty record (the memory is given back).
    pub(crate) fn take_median(&mut self) -> Option<u64> {
        std::mem::take(self).median()
    }
}

/// The bucket of `us`.
fn bucket(us: u64) -> usize {
    let v = us.min((1 << TOP_OCTAVE) - 1) as u32;
    if v < EXACT {
        return v as usize;
    }
    let octave = 31 - v.leading_zeros(); // FIRST_OCTAVE..TOP_OCTAVE
    let sub = (v >> (octave - SUB_BITS)) & (SUB - 1);
    (EXACT + (octave - FIRST_OCTAVE) * SUB + sub) as usize
}

/// The middle of bucket `i` (the value itself below [`EXACT`]).
fn midpoint(i: usize) -> u64 {
    let i = i as u32;
    if i < EXACT {
        return u64::from(i);
    }
    let octave = FIRST_OCTAVE + (i - EXACT) / SUB;
    let sub = (i - EXACT) % SUB;
    let width = 1u64 << (octave - SUB_BITS);
    u64::from(SUB + sub) * width + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_midpoint_is_within_three_point_two_percent() {
        let mut v = 0u64;
        while v < 1 << TOP_OCTAVE {
            let mid = midpoint(bucket(v));
            let err = mid.abs_diff(v) as f64 / v.max(1) as f64;
            assert!(err <= 1.0 / 32.0 + 1e-9, "{v} -> {mid}");
            v = v * 17 / 16 + 1;
        }
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(31), 31);
        assert_eq!(bucket(32), 32);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1, "large values saturate");
        assert_eq!(std::mem::size_of::<[u32; BUCKETS]>(), 1344);
    }

    #[test]
    fn buckets_are_ordered_and_contiguous() {
        for i in 1..BUCKETS {
            assert!(midpoint(i) > midpoint(i - 1));
        }
        // The first value of each bucket maps to it, the one before to the previous one.
        for v in 1..(1u64 << 16) {
            assert!(bucket(v) == bucket(v - 1) || bucket(v) == bucket(v - 1) + 1, "{v}");
        }
    }

    #[test]
    fn the_median_is_the_middle_sample_within_bucket_precision() {
        let mut c = ConnLatency::default();
        let values = [900, 1000, 1100, 5000, 20_000, 1050, 950, 980, 1020, 70_000, 990];
        for _ in 0..5 {
            for us in values {
                c.record(us);
            }
        }
        // Sorted: 900 950 980 990 1000 [1020] 1050 1100 5000 20000 70000, five of each.
        let m = c.median().unwrap();
        assert!(m.abs_diff(1020) <= 1020 / 32, "{m}");
        assert_eq!(c.samples(), 55);
    }

    #[test]
    fn too_few_samples_give_no_median_and_taking_empties_the_record() {
        let mut c = ConnLatency::default();
        assert_eq!(c.median(), None);
        for _ in 0..MIN_SAMPLES - 1 {
            c.record(10);
        }
        assert_eq!(c.median(), None);
        c.record(10);
        assert_eq!(c.take_median(), Some(10));
        assert_eq!((c.samples(), c.median()), (0, None));
        assert!(c.counts.is_none());
    }
}
