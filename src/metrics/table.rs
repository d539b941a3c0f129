//! The metric table: every metric this process renders on `/metrics`, declared once —
//! its field, its name, its help text, and through the field's type its kind and label.
//! The rows are in rendering order. `docs/operations.md` documents each row, and
//! `tests/docs.rs` holds the two together both ways.

use super::family::{
    Bounds, Counter, Family, Gauge, Histogram, Labelled, LabelledGauge, MetricDef, OwnedCounter,
    Samples, UpstreamPriceAges, UpstreamUp,
};
use super::labels::{
    AuthOutcome, RedisErrorKind, SessionLimit, SessionMode, SourceMessageKind, WsAuthOutcome,
};
use crate::auth::keys::DbErrorKind;

/// Declares the [`Metrics`] struct (a field per row), [`TABLE`] (a [`MetricDef`] per
/// row) and the walk of both in the same order.
macro_rules! metric_table {
    (
        $(
            $(#[doc = $doc:literal])*
            $vis:vis $field:ident: $family:ty = $name:literal, $help:literal;
        )*
    ) => {
        /// Every metric's storage, a field per row of [`TABLE`].
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[doc = $doc])* $vis $field: $family, )*
        }

        /// Every metric, in rendering order.
        pub const TABLE: &[MetricDef] = &[
            $(
                MetricDef {
                    name: $name,
                    kind: <$family as Family>::KIND,
                    help: $help,
                    label: <$family as Family>::LABEL,
                },
            )*
        ];

        impl Metrics {
            /// Each row's storage, in [`TABLE`]'s order.
            pub(super) fn families(&self) -> [&dyn Samples; TABLE.len()] {
                [$(&self.$field),*]
            }
        }
    };
}

metric_table! {
    pub connections_open: Gauge =
        "ticker_connections_open", "Open TCP connections (HTTP and WebSocket).";
    pub connections_accepted: Counter =
        "ticker_connections_accepted_total", "TCP connections accepted.";
    pub accept_pauses: Counter = "ticker_accept_pauses_total",
        "Times accepting paused because the process ran out of file descriptors.";
    pub connections_rejected: Counter = "ticker_connections_rejected_total",
        "Connections answered 503 because the connection limit was reached.";
    /// Token exchanges admitted and not finished: queued for or running on a worker.
    pub auth_lookups_in_flight: Gauge = "ticker_auth_lookups_in_flight",
        "Token exchanges admitted and not yet answered (queued for or on a worker).";
    pub ws_sessions_open: Gauge = "ticker_ws_sessions_open", "Open WebSocket sessions.";
    pub ws_sessions_total: Counter = "ticker_ws_sessions_total", "WebSocket sessions opened.";
    /// What the ticker reads to build only the kinds of frames someone is sent.
    pub ws_sessions_by_mode: LabelledGauge<SessionMode> = "ticker_ws_sessions_by_mode",
        "Open WebSocket sessions by how they are sent ticks (changes only, compressed).";
    pub http_requests: Counter = "ticker_http_requests_total", "HTTP requests answered.";
    pub ticks: Counter = "ticker_ticks_total", "Ticks built by the ticker thread.";
    pub tick_overruns: Counter =
        "ticker_tick_overruns_total", "Tick deadlines missed because the ticker ran late.";
    pub ticker_restarts: Counter =
        "ticker_restarts_total", "Ticker thread restarts after a panic.";
    pub frames_sent: Counter =
        "ticker_frames_sent_total", "Ticker frames fully written to subscribers.";
    pub bytes_sent: Counter =
        "ticker_bytes_sent_total", "Bytes of ticker frames written to subscribers.";
    /// Per tick and frame, not per subscriber: the ticker's compression budget.
    pub deflate_skipped: Counter = "ticker_deflate_skipped_total",
        "Tick frames left uncompressed because the tick's compression budget ran out.";
    /// Per subscriber: a changes-only session whose chain broke (conflation, a new set).
    pub delta_resyncs: Counter = "ticker_delta_resyncs_total",
        "Whole-state messages sent to changes-only sessions after a gap in their chain.";
    pub conflated_frames: Counter = "ticker_conflated_frames_total",
        "Ticks dropped for a subscriber because a newer tick replaced them.";
    /// Ticks a loop never offered because a newer one was already queued (the loop was
    /// behind the ticker): a capacity signal, also counted per subscriber in
    /// `conflated_frames`.
    pub superseded_ticks: Counter = "ticker_ticks_superseded_total",
        "Ticks an event loop skipped because a newer tick was queued (loop behind).";
    /// Ticks that arrived during a fan-out and took over for the subscribers not yet
    /// served (a fan-out longer than a tick); the ones served before skip them.
    pub fanout_takeovers: Counter = "ticker_fanout_takeovers_total",
        "Ticks that arrived during a fan-out and went to the subscribers not yet served.";
    pub slow_consumer_closes: Counter = "ticker_slow_consumer_closes_total",
        "Subscribers closed with 1008 for making no write progress.";
    pub heartbeat_closes: Counter =
        "ticker_heartbeat_closes_total", "Sessions closed with 1001 after client silence.";
    pub protocol_error_closes: Counter = "ticker_protocol_error_closes_total",
        "Sessions closed for breaking RFC 6455 or the message limit.";
    pub revoked_closes: Counter = "ticker_revoked_closes_total",
        "Sessions closed because their token or API key was revoked.";
    /// Sessions closed for sending more client messages than `--control-rate`.
    pub rate_limit_closes: Counter = "ticker_rate_limit_closes_total",
        "Sessions closed 1008 for sending more messages than --control-rate.";
    /// Upgrades refused 503 by `--max-sessions-per-key` and by `--max-sessions-per-ip`.
    pub sessions_refused: Labelled<SessionLimit> =
        "ticker_sessions_refused_total", "Upgrades refused 503 by a session cap.";
    /// TLS sessions closed 1001 before their sending key's confidentiality limit.
    pub tls_key_limit_closes: Counter = "ticker_tls_key_limit_closes_total",
        "TLS sessions closed 1001 as their sending key neared its confidentiality limit.";
    /// TLS handshake steps that waited for a slot of the handshake pool.
    pub tls_handshake_waits: Counter = "ticker_tls_handshake_waits_total",
        "TLS handshake steps that waited for a free slot of the handshake pool.";
    /// Accepted `subscribe`/`unsubscribe` messages, and refused ones.
    pub subscription_changes: Counter = "ticker_subscription_changes_total",
        "Accepted subscribe and unsubscribe messages.";
    pub subscription_errors: Counter = "ticker_subscription_errors_total",
        "Refused subscribe and unsubscribe messages (the session keeps its set).";
    pub(super) auth_requests: Labelled<AuthOutcome> =
        "ticker_auth_requests_total", "POST /auth/token results by outcome.";
    pub(super) ws_auth: Labelled<WsAuthOutcome> =
        "ticker_ws_auth_total", "Token checks on WebSocket upgrades by outcome.";
    pub(super) db_errors: Labelled<DbErrorKind> =
        "ticker_db_errors_total", "API-key database errors by kind.";
    pub(super) fanout: Histogram<FanoutBuckets> = "ticker_fanout_duration_seconds",
        "Time for one event loop to offer one tick to all its subscribers.";
    pub(super) tick_delay: Histogram<DelayBuckets> = "ticker_tick_delay_seconds",
        "From a tick's ts_us (made by this node's ticker or the cluster leader) to the start of an event loop's fan-out.";
    /// Cluster mode: 1 while this node holds the ticker lease.
    pub cluster_leader: Gauge = "ticker_cluster_leader",
        "1 while this node holds the cluster's ticker lease (cluster mode).";
    pub lease_acquisitions: Counter = "ticker_cluster_lease_acquisitions_total",
        "Times this node became the cluster's ticking leader.";
    pub cluster_ticks_received: Counter = "ticker_cluster_ticks_received_total",
        "Ticks received from the cluster's channel.";
    pub(super) redis_errors: Labelled<RedisErrorKind> =
        "ticker_redis_errors_total", "Redis errors by kind (cluster mode).";
    /// Kept by the cluster's master watch, which registers its reading.
    pub redis_failovers: OwnedCounter = "ticker_redis_failovers_total",
        "Changes of Redis master this node has seen (cluster mode behind Redis Sentinel).";
    pub(super) source_up: UpstreamUp = "ticker_source_up",
        "1 while the upstream price stream is connected (on a cluster node: only the leader connects).";
    pub(super) source_price_ages: UpstreamPriceAges = "ticker_source_price_age_seconds",
        "Time since the newest upstream price of each symbol arrived (+Inf: none yet).";
    pub(super) source_messages: Labelled<SourceMessageKind> = "ticker_source_messages_total",
        "Upstream messages by kind (malformed and unknown ones are skipped).";
    /// Upstream connections made after the first (`--source` other than sim).
    pub source_reconnects: Counter = "ticker_source_reconnects_total",
        "Upstream connections made after the first.";
    pub source_connect_failures: Counter = "ticker_source_connect_failures_total",
        "Upstream connection attempts that failed.";
    /// The symbol-set registry's size, stored by the event loop before it renders.
    pub symbol_sets: Gauge = "ticker_symbol_sets", "Distinct symbol sets subscribed now.";
}

/// Upper bounds (seconds) of the fan-out duration histogram buckets.
#[derive(Debug)]
pub struct FanoutBuckets;
impl Bounds for FanoutBuckets {
    const BOUNDS: &'static [f64] =
        &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
}

/// Upper bounds (seconds) of the tick-delay histogram: fine around the 0.1–5 ms where
/// a healthy delay lies, so p50 and p99 can be read off it.
#[derive(Debug)]
pub struct DelayBuckets;
impl Bounds for DelayBuckets {
    const BOUNDS: &'static [f64] = &[
        0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
        0.01, 0.025, 0.05, 0.1, 1.0,
    ];
}
