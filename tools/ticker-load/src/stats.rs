//! What a run measures: counters, failure reasons and latency histograms, kept per
//! engine thread without sharing and merged at the end; plus the percentile helpers and
//! the histograms' text form (HdrHistogram V2 compressed, base64) for the JSON file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use crate::deflate::{DeflateCounters, InflateError};
use crate::delta::DeltaCounters;
use crate::frame::FrameError;
use crate::handshake::HandshakeError;
use crate::subscribe::Refusal;
use crate::tls::{self, TlsFailure};

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

    pub(crate) fn min(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.0.min())
    }

    /// Calls `f(value, count)` for each value recorded, in ascending order (each value
    /// as the highest of its equivalence range).
    pub(crate) fn for_each_recorded(&self, mut f: impl FnMut(u64, u64)) {
        for v in self.0.iter_recorded() {
            f(v.value_iterated_to(), v.count_at_value());
        }
    }

    /// HdrHistogram's standard text form: the V2 compressed encoding in base64, as in
    /// HdrHistogram log files (`HISTF...`). Readable by every HdrHistogram library.
    /// `None` only if the encoder fails, which it does not for a histogram in memory.
    pub(crate) fn encode(&self) -> Option<String> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&self.0, &mut bytes).ok()?;
        Some(STANDARD.encode(bytes))
    }

    /// Reads [`Latency::encode`]'s form back. Counts are re-recorded into this tool's
    /// bounds, so histograms from any source add up.
    pub(crate) fn decode(text: &str) -> Result<Latency, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("not an HdrHistogram: {e:?}"))?;
        let mut out = Latency::default();
        out.add(&Latency(h));
        Ok(out)
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

/// The percentiles every latency is reported with, in microseconds; serialized as in
/// the `--json` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: Option<u64>,
    pub(crate) p90: Option<u64>,
    pub(crate) p99: Option<u64>,
    #[serde(rename = "p99.9")]
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
    /// `--deflate`: a `Sec-WebSocket-Extensions` answer not offered or not acceptable.
    BadExtension,
    /// `--deflate`: a compressed message that would not inflate (or inflates too big).
    Inflate(InflateError),
    /// The server closed TCP without a close frame.
    Eof,
    /// The server sent a close frame with this code (0 when it gave none).
    ServerClose(u16),
    Protocol(FrameError),
    /// A churn reconnect's `POST /auth/token` was answered with this status.
    TokenStatus(u16),
    /// A churn reconnect's `POST /auth/token` answer was not HTTP or had no token.
    TokenResponse,
    /// TLS failed: the handshake (an untrusted certificate, most often) or a record.
    Tls(TlsFailure),
    /// A subscription the server refused: at the upgrade (`?symbols=`, with the HTTP
    /// status of the refusal), or in answer to a `subscribe` message (`None`).
    Subscribe(Refusal, Option<u16>),
    Os(i32),
}

impl Reason {
    pub(crate) fn from_io(err: &io::Error) -> Reason {
        if let Some(e) = tls::inner_error(err) {
            return Reason::Tls(TlsFailure::of(e));
        }
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
            HandshakeError::Refused(code, refusal) => Reason::Subscribe(refusal, Some(code)),
            HandshakeError::NotWebSocket => Reason::NotWebSocket,
            HandshakeError::BadAccept => Reason::BadAccept,
            HandshakeError::Malformed => Reason::BadResponse,
            HandshakeError::BadExtension => Reason::BadExtension,
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
            Reason::BadExtension => f.write_str("bad Sec-WebSocket-Extensions answer"),
            Reason::Inflate(e) => write!(f, "permessage-deflate: {e}"),
            Reason::Eof => f.write_str("closed by server without close frame"),
            Reason::ServerClose(0) => f.write_str("server close frame"),
            Reason::ServerClose(code) => write!(f, "server close {code}"),
            Reason::Protocol(err) => write!(f, "protocol error: {err}"),
            Reason::TokenStatus(code) => write!(f, "token exchange: http status {code}"),
            Reason::TokenResponse => f.write_str("token exchange: bad response"),
            Reason::Tls(failure) => failure.fmt(f),
            Reason::Subscribe(Refusal::NoSymbols, _) => {
                write!(f, "subscribe-random: {}", Refusal::NoSymbols)
            }
            Reason::Subscribe(refusal, None) => write!(f, "subscribe refused: {refusal}"),
            Reason::Subscribe(refusal, Some(code)) => {
                write!(f, "subscribe refused: {refusal} (http {code})")
            }
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
    /// Every byte read from the sockets, in all phases (after TLS decryption: frames and
    /// HTTP heads, not TLS records or TCP/IP headers).
    pub(crate) bytes: u64,
    /// The same, in the steady window.
    pub(crate) steady_bytes: u64,
    pub(crate) steady_messages: u64,
    /// Messages in the steady window that carried a `seq`.
    pub(crate) steady_ticks: u64,
    pub(crate) steady_missed: u64,
    pub(crate) steady_repeats: u64,
    pub(crate) steady_backwards: u64,
    /// Messages whose `ts_us` lay in the future of the receive time (clock skew).
    pub(crate) steady_future_ts: u64,
    pub(crate) pings_answered: u64,
    pub(crate) churn: ChurnCounters,
    pub(crate) subscribe: SubscribeCounters,
    pub(crate) deflate: DeflateCounters,
    pub(crate) delta: DeltaCounters,
}

/// What `--subscribe` and `--subscribe-random` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubscribeCounters {
    /// `--subscribe`: per set, by its index in the order given.
    pub(crate) sets: Vec<SetCounters>,
    /// `--subscribe-random`: `subscribe` messages sent, and the ones the server applied.
    pub(crate) sent: u64,
    pub(crate) accepted: u64,
    /// Fingerprints of the sets the server applied ([`crate::subscribe::fingerprint`]).
    pub(crate) distinct: BTreeSet<u64>,
    /// Subscriptions refused in answer to a `subscribe` (the connection stays open, on
    /// the set it had), or never sent (no symbol list to pick from).
    pub(crate) refused: BTreeMap<Reason, u64>,
    /// The most symbol names a first ticker message listed.
    pub(crate) symbols_seen: u64,
}

/// One `--subscribe` set's connections and their ticks in the steady window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SetCounters {
    /// Connections opened with the set (the ramp's and churn reconnects).
    pub(crate) opened: u64,
    pub(crate) ticks: u64,
    pub(crate) missed: u64,
}

impl SubscribeCounters {
    /// Set `i`'s counters, made on first use.
    pub(crate) fn set_mut(&mut self, i: u32) -> &mut SetCounters {
        let i = i as usize;
        if self.sets.len() <= i {
            self.sets.resize(i + 1, SetCounters::default());
        }
        &mut self.sets[i]
    }

    pub(crate) fn add(&mut self, o: &SubscribeCounters) {
        for (i, s) in o.sets.iter().enumerate() {
            let into = self.set_mut(i as u32);
            into.opened += s.opened;
            into.ticks += s.ticks;
            into.missed += s.missed;
        }
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.distinct.extend(&o.distinct);
        for (k, v) in &o.refused {
            *self.refused.entry(*k).or_default() += v;
        }
        self.symbols_seen = self.symbols_seen.max(o.symbols_seen);
    }
}

/// What `--churn` did. Churn closes and reconnects are counted here only: a churned
/// close is neither a drop nor a failure, and a reconnect's failure is counted apart
/// from the ramp's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChurnCounters {
    /// Open connections the tool closed (close frame sent) to churn them.
    pub(crate) closes: u64,
    /// Churn closes whose close handshake ended: echo, or the server closed TCP.
    pub(crate) closed_clean: u64,
    /// Churn closes still unanswered after the close grace: the socket was dropped.
    pub(crate) close_timeouts: u64,
    /// Reconnects started (one per churn close).
    pub(crate) reconnects: u64,
    /// Reconnects that are open again: token (with an API key), connect and upgrade done.
    pub(crate) reconnected: u64,
    /// Reconnects that failed, by reason.
    pub(crate) failed: BTreeMap<Reason, u64>,
    /// Reconnects still opening when the window ended (neither opened nor failed).
    pub(crate) unfinished: u64,
    /// Churns that were due while no connection of the thread was open.
    pub(crate) skipped: u64,
}

impl ChurnCounters {
    pub(crate) fn add(&mut self, o: &ChurnCounters) {
        self.closes += o.closes;
        self.closed_clean += o.closed_clean;
        self.close_timeouts += o.close_timeouts;
        self.reconnects += o.reconnects;
        self.reconnected += o.reconnected;
        for (k, v) in &o.failed {
            *self.failed.entry(*k).or_default() += v;
        }
        self.unfinished += o.unfinished;
        self.skipped += o.skipped;
    }
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
        self.steady_bytes += o.steady_bytes;
        self.steady_messages += o.steady_messages;
        self.steady_ticks += o.steady_ticks;
        self.steady_missed += o.steady_missed;
        self.steady_repeats += o.steady_repeats;
        self.steady_backwards += o.steady_backwards;
        self.steady_future_ts += o.steady_future_ts;
        self.pings_answered += o.pings_answered;
        self.churn.add(&o.churn);
        self.subscribe.add(&o.subscribe);
        self.deflate.add(&o.deflate);
        self.delta.add(&o.delta);
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

/// Every latency histogram of a run, in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hists {
    /// TCP connect + upgrade of the ramp's connections (the storm).
    pub(crate) handshake: Latency,
    /// Receive time − `ts_us`, steady window only.
    pub(crate) tick: Latency,
    /// One value per connection: the median of its own tick latencies in the steady
    /// window (see [`crate::fairness`]). Its min and max are the best and worst connection.
    pub(crate) conn_median: Latency,
    /// Churn reconnects: from the churn close to open again (token, connect, upgrade).
    pub(crate) reconnect: Latency,
    /// Churn reconnects with an API key: from the churn close to the token in hand.
    pub(crate) token: Latency,
}

impl Hists {
    pub(crate) fn add(&mut self, o: &Hists) {
        self.handshake.add(&o.handshake);
        self.tick.add(&o.tick);
        self.conn_median.add(&o.conn_median);
        self.reconnect.add(&o.reconnect);
        self.token.add(&o.token);
    }

    /// Each histogram with its name in the JSON file.
    pub(crate) fn named(&self) -> [(&'static str, &Latency); 5] {
        [
            ("handshake_us", &self.handshake),
            ("tick_latency_us", &self.tick),
            ("connection_median_us", &self.conn_median),
            ("churn_reconnect_us", &self.reconnect),
            ("churn_token_us", &self.token),
        ]
    }

    pub(crate) fn named_mut(&mut self) -> [(&'static str, &mut Latency); 5] {
        [
            ("handshake_us", &mut self.handshake),
            ("tick_latency_us", &mut self.tick),
            ("connection_median_us", &mut self.conn_median),
            ("churn_reconnect_us", &mut self.reconnect),
            ("churn_token_us", &mut self.token),
        ]
    }
}

/// Everything one engine thread measured.
#[derive(Debug, Default)]
pub(crate) struct ThreadResult {
    pub(crate) counters: Counters,
    pub(crate) hists: Hists,
    /// CPU time this thread used inside the steady window.
    pub(crate) steady_cpu: Duration,
    pub(crate) steady_wall: Duration,
    /// When the thread started its first ramp connect.
    pub(crate) first_connect: Option<Instant>,
    /// When the last of the thread's ramp connections opened.
    pub(crate) last_open: Option<Instant>,
}

impl ThreadResult {
    pub(crate) fn add(&mut self, o: &ThreadResult) {
        self.counters.add(&o.counters);
        self.hists.add(&o.hists);
        self.steady_cpu += o.steady_cpu;
        self.steady_wall = self.steady_wall.max(o.steady_wall);
        self.first_connect = earliest(self.first_connect, o.first_connect);
        self.last_open = self.last_open.max(o.last_open);
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
    fn the_text_form_is_hdrhistogram_v2_compressed_and_reads_back_exactly() {
        let mut h = Latency::default();
        for us in [1, 7, 800, 800, 1_250, 99_999, 12_345_678] {
            h.record(us);
        }
        let text = h.encode().unwrap();
        // "HISTF" is the base64 of the V2 compressed cookie 0x1c849314.
        assert!(text.starts_with("HISTF"), "{text}");
        let back = Latency::decode(&text).unwrap();
        assert_eq!(back.0, h.0);
        assert_eq!(back.summary(), h.summary());
        assert_eq!(Latency::decode(&Latency::default().encode().unwrap()).unwrap().count(), 0);
        assert!(Latency::decode("not base64!").is_err());
        assert!(Latency::decode("AAAA").is_err());
    }

    #[test]
    fn subscribe_counters_add_up_set_by_set() {
        let mut a = SubscribeCounters::default();
        a.set_mut(1).ticks = 5;
        a.distinct.insert(7);
        a.symbols_seen = 30;
        let mut b = SubscribeCounters::default();
        b.set_mut(0).opened = 2;
        b.set_mut(1).ticks = 3;
        b.set_mut(2).missed = 1;
        b.distinct.extend([7, 8]);
        b.refused.insert(Reason::Subscribe(Refusal::UnknownSymbol, None), 1);
        a.add(&b);
        let sets: Vec<(u64, u64, u64)> =
            a.sets.iter().map(|s| (s.opened, s.ticks, s.missed)).collect();
        assert_eq!(sets, [(2, 0, 0), (0, 8, 0), (0, 0, 1)]);
        assert_eq!(a.distinct.len(), 2);
        assert_eq!((a.symbols_seen, a.refused.len()), (30, 1));
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
        assert_eq!(
            Reason::from(HandshakeError::Refused(400, Refusal::UnknownSymbol)).to_string(),
            "subscribe refused: unknown symbol (http 400)"
        );
        assert_eq!(
            Reason::Subscribe(Refusal::TooManySets, None).to_string(),
            "subscribe refused: too many distinct symbol sets"
        );
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1250), "1.25 ms");
    }
}
