//! Process counters for `GET /metrics`, in the Prometheus text exposition format 0.0.4.
//!
//! | file | holds |
//! |---|---|
//! | `table.rs` | the metric table: each metric declared once (field, name, help; kind and label by its type) |
//! | `family.rs` | the storage types (counter, gauge, labelled counter, histogram...) and their sample lines |
//! | `labels.rs` | the label enums: a label value that does not exist cannot be counted |
//!
//! [`Metrics::render`] walks the table; `docs/operations.md` documents every row and
//! `tests/docs.rs` holds the two together. Values owned elsewhere are read when
//! rendered: the upstream's book through [`UpstreamState`], the Redis master watch's
//! failovers through [`OwnedCounter`]; so this module depends on no other part of the
//! server but the key store's error kind (a label).
//!
//! Everything is a relaxed atomic: the hot path adds its per-tick totals once per tick
//! (never once per subscriber), so the counters cost nothing per delivered frame. A
//! labelled counter is an array indexed by its enum: no lookup, no lock, no allocation.

mod family;
mod labels;
mod table;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

pub use family::{
    Bounds, Counter, Family, Gauge, Histogram, Kind, LabelDef, Labelled, MetricDef, OwnedCounter,
    Samples, UpstreamPriceAges, UpstreamSlot, UpstreamState, UpstreamUp,
};
pub use labels::{
    AuthOutcome, Label, RedisErrorKind, SessionLimit, SessionMode, SourceMessageKind, WsAuthOutcome,
};
pub use table::{DelayBuckets, FanoutBuckets, Metrics, TABLE};

use crate::auth::keys::DbErrorKind;

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth_requests.inc(outcome);
    }

    pub fn ws_auth(&self, outcome: WsAuthOutcome) {
        self.ws_auth.inc(outcome);
    }

    pub fn db_error(&self, kind: DbErrorKind) {
        self.db_errors.inc(kind);
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

    pub fn redis_error(&self, kind: RedisErrorKind) {
        self.redis_errors.inc(kind);
    }

    /// Counts one upstream message by kind.
    pub fn source_message(&self, kind: SourceMessageKind) {
        self.source_messages.inc(kind);
    }

    /// Upstream messages so far, by kind.
    pub fn source_message_counts(&self) -> Vec<(&'static str, u64)> {
        SourceMessageKind::ALL.iter().map(|k| (k.value(), self.source_messages.get(*k))).collect()
    }

    /// Registers the upstream (once; a second one is ignored): its gauges are rendered
    /// from then on.
    pub fn set_upstream(&self, upstream: Arc<dyn UpstreamState>) {
        self.source_up.0.set(upstream.clone());
        self.source_price_ages.0.set(upstream);
    }

    /// The upstream, when prices come from an exchange.
    pub fn upstream(&self) -> Option<&Arc<dyn UpstreamState>> {
        self.source_up.0.get()
    }

    /// Renders every metric of the table, in its order, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (def, family) in TABLE.iter().zip(self.families()) {
            if family.shown() {
                let (name, kind) = (def.name, def.kind.as_str());
                let _ = write!(out, "# HELP {name} {}\n# TYPE {name} {kind}\n", def.help);
                family.write_samples(name, &mut out);
            }
        }
        out
    }
}
