//! What a run measures: counters, failure reasons and latency histograms, kept per
//! engine thread without sharing and merged at the end; plus the percentile helpers.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::frame::FrameError;
use crate::handshake::HandshakeError;

/// Histograms hold microseconds from 1 µs to 1 hour at 3 significant digits
/// (0.1 % resolution); larger values saturate at the top.
const HIST_MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
        Latency(Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant bounds are valid"))
    }
}

impl Latency {
    pub(crate) fn record(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub(crate) fn add(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic anyway.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at percentile `p` (0-100), or `None` when nothing was recorded.
    pub(crate) fn percentile(&self, p: f64) -> Option<u64> {
        (self.count() > 0).then(|| self.0.value_at_percentile(p))
    }

    pub(crate) fn max(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.0.max())
    }

    pub(crate) fn summary(&self) -> Percentiles {
        Percentiles {
            count: self.count(),
            p50: self.percentile(50.0),
            p90: self.percentile(90.0),
            p99: self.percentile(99.0),
            p999: self.percentile(99.9),
            max: self.max(),
        }
    }

    /// (percentile, value) points for a percentile-distribution plot, as the
    /// HdrHistogram plotter draws them (five steps per halving of the remaining tail).
    pub(crate) fn distribution(&self) -> Vec<(f64, u64)> {
        if self.count() == 0 {
            return Vec::new();
        }
        self.0
            .iter_quantiles(5)
            .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
            .collect()
    }
}

/// The percentiles every latency is reported with, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: Option<u64>,
    pub(crate) p90: Option<u64>,
    pub(crate) p99: Option<u64>,
    pub(crate) p999: Option<u64>,
    pub(crate) max: Option<u64>,
}

/// Why a connection failed to open, or ended before the tool closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Reason {
    Refused,
    Timeout,
    Reset,
    /// EADDRNOTAVAIL: usually the ephemeral ports of a source address ran out.
    NoLocalPort,
    /// EMFILE/ENFILE: the file descriptor limit.
    TooManyFiles,
    HttpStatus(u16),
    NotWebSocket,
    BadAccept,
    BadResponse,
    /// The server closed TCP without a close frame.
    Eof,
    /// The server sent a close frame with this code (0 when it gave none).
    ServerClose(u16),
    Protocol(FrameError),
    Os(i32),
}

impl Reason {
    pub(crate) fn from_io(err: &io::Error) -> Reason {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Reason::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Reason::Reset,
            io::ErrorKind::TimedOut => Reason::Timeout,
            io::ErrorKind::AddrNotAvailable => Reason::NoLocalPort,
            io::ErrorKind::UnexpectedEof => Reason::Eof,
            _ => match err.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => Reason::TooManyFiles,
                Some(code) => Reason::Os(code),
                None => Reason::Os(0),
            },
        }
    }
}

impl From<HandshakeError> for Reason {
    fn from(err: HandshakeError) -> Reason {
        match err {
            HandshakeError::Status(code) => Reason::HttpStatus(code),
            HandshakeError::NotWebSocket => Reason::NotWebSocket,
            HandshakeError::BadAccept => Reason::BadAccept,
            HandshakeError::Malformed => Reason::BadResponse,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Refused => f.write_str("refused"),
            Reason::Timeout => f.write_str("timeout"),
            Reason::Reset => f.write_str("reset"),
            Reason::NoLocalPort => f.write_str("no local port (add --bind addresses)"),
            Reason::TooManyFiles => f.write_str("too many open files (ulimit -n)"),
            Reason::HttpStatus(code) => write!(f, "http status {code}"),
            Reason::NotWebSocket => f.write_str("101 without Upgrade: websocket"),
            Reason::BadAccept => f.write_str("bad Sec-WebSocket-Accept"),
            Reason::BadResponse => f.write_str("bad HTTP response"),
            Reason::Eof => f.write_str("closed by server without close frame"),
            Reason::ServerClose(0) => f.write_str("server close frame"),
            Reason::ServerClose(code) => write!(f, "server close {code}"),
            Reason::Protocol(err) => write!(f, "protocol error: {err}"),
            Reason::Os(code) => write!(f, "{}", io::Error::from_raw_os_error(*code)),
        }
    }
}

/// Counters one engine thread keeps. "steady" fields count only inside the steady window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) attempted: u64,
    pub(crate) opened: u64,
    pub(crate) failed: BTreeMap<Reason, u64>,
    /// Open connections that ended before the tool closed them.
    pub(crate) dropped: BTreeMap<Reason, u64>,
    /// Connections whose close handshake completed at the end of the run.
    pub(crate) closed_clean: u64,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) steady_messages: u64,
    /// Messages in the steady window that carried a `seq`.
    pub(crate) steady_ticks: u64,
    pub(crate) steady_missed: u64,
    pub(crate) steady_repeats: u64,
    pub(crate) steady_backwards: u64,
    /// Messages whose `ts_us` lay in the future of the receive time (clock skew).
    pub(crate) steady_future_ts: u64,
    pub(crate) pings_answered: u64,
}

impl Counters {
    pub(crate) fn add(&mut self, o: &Counters) {
        self.attempted += o.attempted;
        self.opened += o.opened;
        for (k, v) in &o.failed {
            *self.failed.entry(*k).or_default() += v;
        }
        for (k, v) in &o.dropped {
            *self.dropped.entry(*k).or_default() += v;
        }
        self.closed_clean += o.closed_clean;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.steady_messages += o.steady_messages;
        self.steady_ticks += o.steady_ticks;
        self.steady_missed += o.steady_missed;
        self.steady_repeats += o.steady_repeats;
        self.steady_backwards += o.steady_backwards;
        self.steady_future_ts += o.steady_future_ts;
        self.pings_answered += o.pings_answered;
    }

    /// Ticks received / ticks the server sent to connections in the steady window, in
    /// percent; `None` when no message carried a `seq`.
    pub(crate) fn delivered_percent(&self) -> Option<f64> {
        let expected = self.steady_ticks + self.steady_missed;
        (expected > 0).then(|| self.steady_ticks as f64 * 100.0 / expected as f64)
    }
}

/// One thread's view of one second of the run, sent to the coordinator.
#[derive(Debug)]
pub(crate) struct Sample {
    /// Whole seconds since the run started.
    pub(crate) second: u64,
    pub(crate) open: u64,
    pub(crate) messages: u64,
    pub(crate) latency: Latency,
}

/// Everything one engine thread measured.
#[derive(Debug, Default)]
pub(crate) struct ThreadResult {
    pub(crate) counters: Counters,
    pub(crate) handshake: Latency,
    pub(crate) steady_latency: Latency,
    /// CPU time this thread used inside the steady window.
    pub(crate) steady_cpu: Duration,
    pub(crate) steady_wall: Duration,
}

impl ThreadResult {
    pub(crate) fn add(&mut self, o: &ThreadResult) {
        self.counters.add(&o.counters);
        self.handshake.add(&o.handshake);
        self.steady_latency.add(&o.steady_latency);
        self.steady_cpu += o.steady_cpu;
        self.steady_wall = self.steady_wall.max(o.steady_wall);
    }
}

/// Microseconds as a short human string: `850 µs`, `1.25 ms`, `3.40 s`.
pub(crate) fn fmt_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand_are_within_histogram_precision() {
        let mut h = Latency::default();
        for us in 1..=1000 {
            h.record(us);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50, Some(500));
        assert_eq!(s.p90, Some(900));
        assert_eq!(s.p99, Some(990));
        // hdrhistogram rounds the rank of 99.9 % of 1000 (998.99... in floating point) up.
        assert!(matches!(s.p999, Some(999 | 1000)), "{:?}", s.p999);
        assert_eq!(s.max, Some(1000));
    }

    #[test]
    fn large_values_keep_three_significant_digits() {
        let mut h = Latency::default();
        h.record(12_345_678);
        let p = h.percentile(50.0).unwrap();
        assert!((12_340_000..=12_360_000).contains(&p), "{p}");
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles_and_merging_adds_counts() {
        let mut a = Latency::default();
        assert_eq!(a.summary(), Percentiles::default());
        assert!(a.distribution().is_empty());
        let mut b = Latency::default();
        b.record(10);
        b.record(0); // recorded as 1 µs, never lost
        b.record(u64::MAX); // saturates at the top
        a.add(&b);
        a.add(&b);
        assert_eq!(a.count(), 6);
        assert_eq!(a.percentile(0.0), Some(1));
    }

    #[test]
    fn the_distribution_ends_at_the_hundredth_percentile_and_max() {
        let mut h = Latency::default();
        for us in 1..=10_000 {
            h.record(us);
        }
        let d = h.distribution();
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let (p, v) = *d.last().unwrap();
        assert_eq!(p, 100.0);
        assert!(h.0.equivalent(v, 10_000));
    }

    #[test]
    fn delivered_percent_counts_missed_ticks_against_received_ones() {
        let mut c = Counters { steady_ticks: 990, steady_missed: 10, ..Counters::default() };
        assert_eq!(c.delivered_percent(), Some(99.0));
        c.steady_ticks = 0;
        c.steady_missed = 0;
        assert_eq!(c.delivered_percent(), None);
    }

    #[test]
    fn io_errors_map_to_readable_reasons() {
        let r = |k| Reason::from_io(&io::Error::from(k));
        assert_eq!(r(io::ErrorKind::ConnectionRefused), Reason::Refused);
        assert_eq!(r(io::ErrorKind::ConnectionReset), Reason::Reset);
        assert_eq!(
            Reason::from_io(&io::Error::from_raw_os_error(libc::EMFILE)),
            Reason::TooManyFiles
        );
        assert_eq!(Reason::from(HandshakeError::Status(401)).to_string(), "http status 401");
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1250), "1.25 ms");
    }
}
