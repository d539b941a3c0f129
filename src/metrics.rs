//! Process counters for `GET /metrics`, in the Prometheus text exposition format 0.0.4.
//!
//! Everything is a relaxed atomic: the hot path adds its per-tick totals once per tick
//! (never once per subscriber), so the counters cost nothing per delivered frame.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::auth::keys::DbErrorKind;
use crate::source::Book;

/// Kinds of upstream messages (`--source` other than sim), in label order.
pub const SOURCE_MESSAGE_KINDS: [&str; 7] =
    ["price", "heartbeat", "control", "rejected", "out_of_order", "malformed", "unknown"];

/// Outcomes of `POST /auth/token`, in label order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Issued,
    InvalidJson,
    MissingKey,
    InvalidKey,
    /// A wrong key from an address beyond its failure limit (429).
    RateLimited,
    /// Refused before any lookup: its address had its bound of lookups in flight (429).
    AddressBusy,
    DatabaseError,
    StoreFull,
}

const AUTH_OUTCOMES: [(AuthOutcome, &str); 8] = [
    (AuthOutcome::Issued, "issued"),
    (AuthOutcome::InvalidJson, "invalid_json"),
    (AuthOutcome::MissingKey, "missing_key"),
    (AuthOutcome::InvalidKey, "invalid_key"),
    (AuthOutcome::RateLimited, "rate_limited"),
    (AuthOutcome::AddressBusy, "address_busy"),
    (AuthOutcome::DatabaseError, "database_error"),
    (AuthOutcome::StoreFull, "store_full"),
];

/// Outcomes of the token check on `GET /ws/ticker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsAuthOutcome {
    Accepted,
    Missing,
    Invalid,
    Expired,
}

const WS_AUTH_OUTCOMES: [(WsAuthOutcome, &str); 4] = [
    (WsAuthOutcome::Accepted, "accepted"),
    (WsAuthOutcome::Missing, "missing"),
    (WsAuthOutcome::Invalid, "invalid"),
    (WsAuthOutcome::Expired, "expired"),
];

/// Kinds of database errors, in label order (the log line has SQLite's own words).
const DB_ERROR_KINDS: [DbErrorKind; 7] = [
    DbErrorKind::Missing,
    DbErrorKind::Busy,
    DbErrorKind::Corrupt,
    DbErrorKind::Io,
    DbErrorKind::NoRandomness,
    DbErrorKind::Unreachable,
    DbErrorKind::Other,
];

/// Upper bounds (seconds) of the fan-out duration histogram buckets.
const FANOUT_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub accept_pauses: AtomicU64,
    pub ws_sessions_open: AtomicI64,
    pub ws_sessions_total: AtomicU64,
    pub http_requests: AtomicU64,
    pub ticks: AtomicU64,
    pub tick_overruns: AtomicU64,
    pub ticker_restarts: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub conflated_frames: AtomicU64,
    /// Ticks a loop never offered because a newer one was already queued (the loop was
    /// behind the ticker): a capacity signal, also counted per subscriber in
    /// `conflated_frames`.
    pub superseded_ticks: AtomicU64,
    /// Ticks that arrived during a fan-out and took over for the subscribers not yet
    /// served (a fan-out longer than a tick); the ones served before skip them.
    pub fanout_takeovers: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub heartbeat_closes: AtomicU64,
    pub protocol_error_closes: AtomicU64,
    pub revoked_closes: AtomicU64,
    /// Sessions closed for sending more client messages than `--control-rate`.
    pub rate_limit_closes: AtomicU64,
    /// TLS sessions closed 1001 before their sending key's confidentiality limit.
    pub tls_key_limit_closes: AtomicU64,
    /// Upgrades refused 503 by `--max-sessions-per-key` and by `--max-sessions-per-ip`.
    pub sessions_refused_per_key: AtomicU64,
    pub sessions_refused_per_ip: AtomicU64,
    /// TLS handshake steps that waited for a slot of the handshake pool.
    pub tls_handshake_waits: AtomicU64,
    /// Accepted `subscribe`/`unsubscribe` messages, and refused ones.
    pub subscription_changes: AtomicU64,
    pub subscription_errors: AtomicU64,
    auth: [AtomicU64; 8],
    /// Token exchanges admitted and not finished: queued for or running on a worker.
    pub auth_lookups_in_flight: AtomicI64,
    ws_auth: [AtomicU64; 4],
    db_errors: [AtomicU64; 7],
    fanout: Histogram<FanoutBuckets>,
    tick_delay: Histogram<DelayBuckets>,
    /// Cluster mode: 1 while this node holds the ticker lease.
    pub cluster_leader: AtomicI64,
    pub lease_acquisitions: AtomicU64,
    pub cluster_ticks_received: AtomicU64,
    redis_errors: [AtomicU64; 5],
    /// Upstream connections made after the first (`--source` other than sim).
    pub source_reconnects: AtomicU64,
    pub source_connect_failures: AtomicU64,
    source_messages: [AtomicU64; 7],
    /// The upstream's book, for its state and the age of each price at render time.
    source_book: OnceLock<Arc<Book>>,
}

/// Kinds of Redis errors, as `cluster::link::LinkError::kind_label` names them.
pub const REDIS_ERROR_KINDS: [&str; 5] = ["unreachable", "timeout", "backoff", "protocol", "url"];

/// Upper bounds (seconds) of the tick-delay histogram: fine around the 0.1–5 ms where
/// a healthy delay lies, so p50 and p99 can be read off it.
const DELAY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
    0.025, 0.05, 0.1, 1.0,
];

/// A histogram's bucket bounds, as a type so each histogram field knows its own.
trait Bounds {
    const BOUNDS: &'static [f64];
}

#[derive(Debug)]
struct FanoutBuckets;
impl Bounds for FanoutBuckets {
    const BOUNDS: &'static [f64] = &FANOUT_BUCKETS;
}

#[derive(Debug)]
struct DelayBuckets;
impl Bounds for DelayBuckets {
    const BOUNDS: &'static [f64] = &DELAY_BUCKETS;
}

/// Most buckets a histogram may have.
const MAX_BUCKETS: usize = 16;

/// A Prometheus histogram over `B::BOUNDS` (seconds), lock-free.
#[derive(Debug)]
struct Histogram<B> {
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
    bounds: std::marker::PhantomData<B>,
}

impl<B> Default for Histogram<B> {
    fn default() -> Self {
        Histogram {
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            bounds: std::marker::PhantomData,
        }
    }
}

impl<B: Bounds> Histogram<B> {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = B::BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (i, bound) in B::BOUNDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn auth(&self, outcome: AuthOutcome) {
        if let Some(i) = AUTH_OUTCOMES.iter().position(|(o, _)| *o == outcome) {
            self.auth[i].fetch_add(1, Relaxed);
        }
    }

    pub fn ws_auth(&self, outcome: WsAuthOutcome) {
        if let Some(i) = WS_AUTH_OUTCOMES.iter().position(|(o, _)| *o == outcome) {
            self.ws_auth[i].fetch_add(1, Relaxed);
        }
    }

    pub fn db_error(&self, kind: DbErrorKind) {
        if let Some(i) = DB_ERROR_KINDS.iter().position(|k| *k == kind) {
            self.db_errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Records how long one event loop took to offer one tick to all its subscribers.
    pub fn observe_fanout(&self, took: Duration) {
        self.fanout.observe(took);
    }

    /// Records how late an event loop started a tick's fan-out after the tick was made
    /// (in a cluster: after the leader made it, so the Redis hop is included).
    pub fn observe_tick_delay(&self, delay: Duration) {
        self.tick_delay.observe(delay);
    }

    /// Counts a Redis error by its kind label (see [`REDIS_ERROR_KINDS`]).
    pub fn redis_error(&self, kind: &str) {
        if let Some(i) = REDIS_ERROR_KINDS.iter().position(|k| *k == kind) {
            self.redis_errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts one upstream message by kind (see [`SOURCE_MESSAGE_KINDS`]).
    pub fn source_message(&self, kind: &str) {
        if let Some(i) = SOURCE_MESSAGE_KINDS.iter().position(|k| *k == kind) {
            self.source_messages[i].fetch_add(1, Relaxed);
        }
    }

    /// Upstream messages so far, by kind.
    pub fn source_message_counts(&self) -> Vec<(&'static str, u64)> {
        SOURCE_MESSAGE_KINDS
            .iter()
            .zip(&self.source_messages)
            .map(|(k, n)| (*k, n.load(Relaxed)))
            .collect()
    }

    /// Registers the upstream's book (once; a second book is ignored).
    pub fn set_source_book(&self, book: Arc<Book>) {
        let _ = self.source_book.set(book);
    }

    /// The upstream's book, when prices come from an exchange.
    pub fn source_book(&self) -> Option<&Arc<Book>> {
        self.source_book.get()
    }

    /// Renders every metric in the Prometheus text format.
    /// Appends a gauge kept outside [`Metrics`] (e.g. the symbol-set registry's size).
    pub fn render_gauge(out: &mut String, name: &str, help: &str, v: usize) {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
        };
        gauge(
            &mut out,
            "ticker_connections_open",
            "Open TCP connections (HTTP and WebSocket).",
            self.connections_open.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_connections_accepted_total",
            "TCP connections accepted.",
            self.connections_accepted.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_accept_pauses_total",
            "Times accepting paused because the process ran out of file descriptors.",
            self.accept_pauses.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_connections_rejected_total",
            "Connections answered 503 because the connection limit was reached.",
            self.connections_rejected.load(Relaxed),
        );
        gauge(
            &mut out,
            "ticker_auth_lookups_in_flight",
            "Token exchanges admitted and not yet answered (queued for or on a worker).",
            self.auth_lookups_in_flight.load(Relaxed),
        );
        gauge(
            &mut out,
            "ticker_ws_sessions_open",
            "Open WebSocket sessions.",
            self.ws_sessions_open.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_ws_sessions_total",
            "WebSocket sessions opened.",
            self.ws_sessions_total.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_http_requests_total",
            "HTTP requests answered.",
            self.http_requests.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_ticks_total",
            "Ticks built by the ticker thread.",
            self.ticks.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_tick_overruns_total",
            "Tick deadlines missed because the ticker ran late.",
            self.tick_overruns.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_restarts_total",
            "Ticker thread restarts after a panic.",
            self.ticker_restarts.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_frames_sent_total",
            "Ticker frames fully written to subscribers.",
            self.frames_sent.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_bytes_sent_total",
            "Bytes of ticker frames written to subscribers.",
            self.bytes_sent.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_conflated_frames_total",
            "Ticks dropped for a subscriber because a newer tick replaced them.",
            self.conflated_frames.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_ticks_superseded_total",
            "Ticks an event loop skipped because a newer tick was queued (loop behind).",
            self.superseded_ticks.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_fanout_takeovers_total",
            "Ticks that arrived during a fan-out and went to the subscribers not yet served.",
            self.fanout_takeovers.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_slow_consumer_closes_total",
            "Subscribers closed with 1008 for making no write progress.",
            self.slow_consumer_closes.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_heartbeat_closes_total",
            "Sessions closed with 1001 after client silence.",
            self.heartbeat_closes.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_protocol_error_closes_total",
            "Sessions closed for breaking RFC 6455 or the message limit.",
            self.protocol_error_closes.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_revoked_closes_total",
            "Sessions closed because their token or API key was revoked.",
            self.revoked_closes.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_rate_limit_closes_total",
            "Sessions closed 1008 for sending more messages than --control-rate.",
            self.rate_limit_closes.load(Relaxed),
        );
        out.push_str(
            "# HELP ticker_sessions_refused_total Upgrades refused 503 by a session cap.\n\
             # TYPE ticker_sessions_refused_total counter\n",
        );
        for (limit, n) in
            [("per_key", &self.sessions_refused_per_key), ("per_ip", &self.sessions_refused_per_ip)]
        {
            let _ = writeln!(
                out,
                "ticker_sessions_refused_total{{limit=\"{limit}\"}} {}",
                n.load(Relaxed)
            );
        }
        counter(
            &mut out,
            "ticker_tls_key_limit_closes_total",
            "TLS sessions closed 1001 as their sending key neared its confidentiality limit.",
            self.tls_key_limit_closes.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_tls_handshake_waits_total",
            "TLS handshake steps that waited for a free slot of the handshake pool.",
            self.tls_handshake_waits.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_subscription_changes_total",
            "Accepted subscribe and unsubscribe messages.",
            self.subscription_changes.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_subscription_errors_total",
            "Refused subscribe and unsubscribe messages (the session keeps its set).",
            self.subscription_errors.load(Relaxed),
        );

        out.push_str("# HELP ticker_auth_requests_total POST /auth/token results by outcome.\n# TYPE ticker_auth_requests_total counter\n");
        for (i, (_, label)) in AUTH_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "ticker_auth_requests_total{{outcome=\"{label}\"}} {}",
                self.auth[i].load(Relaxed)
            );
        }
        out.push_str("# HELP ticker_ws_auth_total Token checks on WebSocket upgrades by outcome.\n# TYPE ticker_ws_auth_total counter\n");
        for (i, (_, label)) in WS_AUTH_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "ticker_ws_auth_total{{outcome=\"{label}\"}} {}",
                self.ws_auth[i].load(Relaxed)
            );
        }
        out.push_str("# HELP ticker_db_errors_total API-key database errors by kind.\n# TYPE ticker_db_errors_total counter\n");
        for (i, kind) in DB_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "ticker_db_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.db_errors[i].load(Relaxed)
            );
        }

        self.fanout.render(
            &mut out,
            "ticker_fanout_duration_seconds",
            "Time for one event loop to offer one tick to all its subscribers.",
        );
        self.tick_delay.render(
            &mut out,
            "ticker_tick_delay_seconds",
            "From a tick's ts_us (made by this node's ticker or the cluster leader) to the start of an event loop's fan-out.",
        );
        gauge(
            &mut out,
            "ticker_cluster_leader",
            "1 while this node holds the cluster's ticker lease (cluster mode).",
            self.cluster_leader.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_cluster_lease_acquisitions_total",
            "Times this node became the cluster's ticking leader.",
            self.lease_acquisitions.load(Relaxed),
        );
        counter(
            &mut out,
            "ticker_cluster_ticks_received_total",
            "Ticks received from the cluster's channel.",
            self.cluster_ticks_received.load(Relaxed),
        );
        out.push_str("# HELP ticker_redis_errors_total Redis errors by kind (cluster mode).\n# TYPE ticker_redis_errors_total counter\n");
        for (i, kind) in REDIS_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "ticker_redis_errors_total{{kind=\"{kind}\"}} {}",
                self.redis_errors[i].load(Relaxed)
            );
        }
        #[cfg(feature = "cluster")]
        let failovers = crate::cluster::target::MASTER.failovers();
        #[cfg(not(feature = "cluster"))]
        let failovers = 0;
        counter(
            &mut out,
            "ticker_redis_failovers_total",
            "Changes of Redis master this node has seen (cluster mode behind Redis Sentinel).",
            failovers,
        );
        self.render_source(&mut out);
        out
    }

    /// The upstream's metrics; only the counters when prices are simulated.
    fn render_source(&self, out: &mut String) {
        if let Some(book) = self.source_book.get() {
            let _ = write!(
                out,
                "# HELP ticker_source_up 1 while the upstream price stream is connected (on a cluster node: only the leader connects).\n# TYPE ticker_source_up gauge\nticker_source_up {}\n",
                i64::from(book.is_connected())
            );
            out.push_str("# HELP ticker_source_price_age_seconds Time since the newest upstream price of each symbol arrived (+Inf: none yet).\n# TYPE ticker_source_price_age_seconds gauge\n");
            for s in book.stats(Instant::now()) {
                let age = s.age.map_or_else(|| "+Inf".to_owned(), |a| a.as_secs_f64().to_string());
                let _ = writeln!(
                    out,
                    "ticker_source_price_age_seconds{{symbol=\"{}\"}} {age}",
                    s.symbol
                );
            }
        }
        out.push_str("# HELP ticker_source_messages_total Upstream messages by kind (malformed and unknown ones are skipped).\n# TYPE ticker_source_messages_total counter\n");
        for (kind, n) in self.source_message_counts() {
            let _ = writeln!(out, "ticker_source_messages_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = write!(
            out,
            "# HELP ticker_source_reconnects_total Upstream connections made after the first.\n# TYPE ticker_source_reconnects_total counter\nticker_source_reconnects_total {}\n",
            self.source_reconnects.load(Relaxed)
        );
        let _ = write!(
            out,
            "# HELP ticker_source_connect_failures_total Upstream connection attempts that failed.\n# TYPE ticker_source_connect_failures_total counter\nticker_source_connect_failures_total {}\n",
            self.source_connect_failures.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_count() {
        let m = Metrics::new();
        m.observe_fanout(Duration::from_micros(50));
        m.observe_fanout(Duration::from_millis(3));
        m.observe_fanout(Duration::from_secs(5));
        let text = m.render();
        assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ticker_fanout_duration_seconds_count 3\n"));
    }

    #[test]
    fn auth_outcomes_are_labelled() {
        let m = Metrics::new();
        m.auth(AuthOutcome::InvalidKey);
        m.auth(AuthOutcome::InvalidKey);
        assert!(m.render().contains("ticker_auth_requests_total{outcome=\"invalid_key\"} 2\n"));
    }
}
