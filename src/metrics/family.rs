//! The storage of one metric family and how its samples are written: a counter, a
//! gauge, a counter per label value, a histogram, a counter kept by its owner, and the
//! upstream's gauges. Each storage type knows its Prometheus kind and label, so a row
//! of the table (`table.rs`) names only the field, the metric's name and its help.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::labels::Label;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One row of the metric table, as the docs and the tests see it.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub label: Option<LabelDef>,
}

/// A metric's label: its name and, for a closed set, its values.
#[derive(Debug, Clone, Copy)]
pub struct LabelDef {
    pub name: &'static str,
    /// The values in rendering order; `None` for an open set (the configured symbols).
    pub values: Option<fn() -> Vec<&'static str>>,
}

/// A metric family's storage: its kind and label, as constants for the table.
pub trait Family: Samples {
    const KIND: Kind;
    const LABEL: Option<LabelDef> = None;
}

/// Writes a family's sample lines (the `# HELP` and `# TYPE` lines are the table's).
pub trait Samples {
    /// Whether the family is rendered at all (the upstream's gauges: only with one).
    fn shown(&self) -> bool {
        true
    }
    fn write_samples(&self, name: &str, out: &mut String);
}

/// A count that only goes up. Derefs to its atomic: an update is one relaxed
/// `fetch_add`, no lock and no allocation.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Deref for Counter {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

impl Family for Counter {
    const KIND: Kind = Kind::Counter;
}

impl Samples for Counter {
    fn write_samples(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "{name} {}", self.0.load(Relaxed));
    }
}

/// A value that goes up and down. Derefs to its atomic, like [`Counter`].
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Deref for Gauge {
    type Target = AtomicI64;
    fn deref(&self) -> &AtomicI64 {
        &self.0
    }
}

impl Family for Gauge {
    const KIND: Kind = Kind::Gauge;
}

impl Samples for Gauge {
    fn write_samples(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "{name} {}", self.0.load(Relaxed));
    }
}

/// Most values a label may have.
const MAX_LABEL_VALUES: usize = 8;

/// A counter per value of the label `L`: an array indexed by the value.
pub struct Labelled<L> {
    counts: [AtomicU64; MAX_LABEL_VALUES],
    label: PhantomData<L>,
}

impl<L: Label> Labelled<L> {
    /// Evaluated where a `Labelled<L>` is made: a label too big fails the build.
    const FITS: () = assert!(L::ALL.len() <= MAX_LABEL_VALUES, "raise MAX_LABEL_VALUES");

    pub fn inc(&self, value: L) {
        self.counts[value.index()].fetch_add(1, Relaxed);
    }

    pub fn get(&self, value: L) -> u64 {
        self.counts[value.index()].load(Relaxed)
    }
}

impl<L: Label> Default for Labelled<L> {
    fn default() -> Self {
        let () = Self::FITS;
        Labelled { counts: Default::default(), label: PhantomData }
    }
}

impl<L: Label> fmt::Debug for Labelled<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(L::ALL.iter().map(|v| (v.value(), self.get(*v)))).finish()
    }
}

/// A gauge per value of the label `L` (it never goes below zero: every `dec` follows
/// an `inc` of the same value).
pub struct LabelledGauge<L>(Labelled<L>);

impl<L: Label> Default for LabelledGauge<L> {
    fn default() -> Self {
        LabelledGauge(Labelled::default())
    }
}

impl<L: Label> fmt::Debug for LabelledGauge<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<L: Label> LabelledGauge<L> {
    pub fn inc(&self, value: L) {
        self.0.inc(value);
    }

    pub fn dec(&self, value: L) {
        self.0.counts[value.index()].fetch_sub(1, Relaxed);
    }

    pub fn get(&self, value: L) -> u64 {
        self.0.get(value)
    }
}

impl<L: Label> Family for LabelledGauge<L> {
    const KIND: Kind = Kind::Gauge;
    const LABEL: Option<LabelDef> = <Labelled<L> as Family>::LABEL;
}

impl<L: Label> Samples for LabelledGauge<L> {
    fn write_samples(&self, name: &str, out: &mut String) {
        self.0.write_samples(name, out);
    }
}

/// The values of `L`, for [`LabelDef::values`].
fn values_of<L: Label>() -> Vec<&'static str> {
    L::ALL.iter().map(|v| v.value()).collect()
}

impl<L: Label> Family for Labelled<L> {
    const KIND: Kind = Kind::Counter;
    const LABEL: Option<LabelDef> =
        Some(LabelDef { name: L::NAME, values: Some(values_of::<L> as fn() -> Vec<&'static str>) });
}

impl<L: Label> Samples for Labelled<L> {
    fn write_samples(&self, name: &str, out: &mut String) {
        // The writing is shared by every label type (one copy in the binary); only
        // naming a value is per type. `ALL[i].index() == i` (unit-tested).
        write_labelled(name, L::NAME, L::ALL.len(), |i| L::ALL[i].value(), &self.counts, out);
    }
}

#[inline(never)]
fn write_labelled(
    name: &str,
    label: &str,
    values: usize,
    value: fn(usize) -> &'static str,
    counts: &[AtomicU64],
    out: &mut String,
) {
    for (i, count) in counts.iter().enumerate().take(values) {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {}", value(i), count.load(Relaxed));
    }
}

/// A histogram's bucket bounds (seconds), as a type so each histogram knows its own.
pub trait Bounds {
    const BOUNDS: &'static [f64];
}

/// Most buckets a histogram may have.
const MAX_BUCKETS: usize = 16;

/// A Prometheus histogram over `B::BOUNDS` (seconds), lock-free.
pub struct Histogram<B> {
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
    bounds: PhantomData<B>,
}

impl<B: Bounds> Histogram<B> {
    /// Evaluated where a `Histogram<B>` is made: too many bounds fail the build.
    const FITS: () = assert!(B::BOUNDS.len() <= MAX_BUCKETS, "raise MAX_BUCKETS");

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = B::BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }
}

impl<B: Bounds> Default for Histogram<B> {
    fn default() -> Self {
        let () = Self::FITS;
        Histogram {
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            bounds: PhantomData,
        }
    }
}

impl<B> fmt::Debug for Histogram<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram").field("count", &self.count.load(Relaxed)).finish()
    }
}

impl<B: Bounds> Family for Histogram<B> {
    const KIND: Kind = Kind::Histogram;
}

impl<B: Bounds> Samples for Histogram<B> {
    fn write_samples(&self, name: &str, out: &mut String) {
        // The writing is shared by every histogram (one copy in the binary).
        write_histogram(name, B::BOUNDS, &self.buckets, &self.count, &self.sum_ns, out);
    }
}

#[inline(never)]
fn write_histogram(
    name: &str,
    bounds: &[f64],
    buckets: &[AtomicU64],
    count: &AtomicU64,
    sum_ns: &AtomicU64,
    out: &mut String,
) {
    let mut cumulative = 0;
    for (bound, bucket) in bounds.iter().zip(buckets) {
        cumulative += bucket.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = count.load(Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", sum_ns.load(Relaxed) as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {count}");
}

/// A counter its owner keeps (the Redis master watch counts failovers), read when
/// rendered through the function the owner registered; 0 until one is.
#[derive(Debug, Default)]
pub struct OwnedCounter(OnceLock<fn() -> u64>);

impl OwnedCounter {
    /// Registers the reading (once; a second one is ignored).
    pub fn read_from(&self, read: fn() -> u64) {
        let _ = self.0.set(read);
    }

    pub fn get(&self) -> u64 {
        self.0.get().map_or(0, |read| read())
    }
}

impl Family for OwnedCounter {
    const KIND: Kind = Kind::Counter;
}

impl Samples for OwnedCounter {
    fn write_samples(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "{name} {}", self.get());
    }
}

/// The upstream's state as `/metrics` and `/healthz` read it. Implemented by the
/// upstream's book (`source::Book`); a trait so that `metrics` does not depend on
/// `source`.
pub trait UpstreamState: Send + Sync {
    /// Whether the price stream is connected now.
    fn is_connected(&self) -> bool;
    /// Calls `each` with every configured symbol and the age of its newest price
    /// (`None`: none yet).
    fn each_price_age(&self, now: Instant, each: &mut dyn FnMut(&str, Option<Duration>));
    /// How many symbols are stale now, of how many.
    fn stale_symbols(&self, now: Instant, stale_after: Duration) -> (usize, usize);
}

/// The upstream, once registered (prices from an exchange); shared by its gauges.
#[derive(Default)]
pub struct UpstreamSlot(OnceLock<Arc<dyn UpstreamState>>);

impl UpstreamSlot {
    pub fn get(&self) -> Option<&Arc<dyn UpstreamState>> {
        self.0.get()
    }

    /// Registers the upstream (once; a second one is ignored).
    pub fn set(&self, upstream: Arc<dyn UpstreamState>) {
        let _ = self.0.set(upstream);
    }
}

impl fmt::Debug for UpstreamSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "UpstreamSlot(registered)"
        } else {
            "UpstreamSlot(none)"
        })
    }
}

/// `1` while the upstream is connected; rendered only with an upstream.
#[derive(Debug, Default)]
pub struct UpstreamUp(pub UpstreamSlot);

impl Family for UpstreamUp {
    const KIND: Kind = Kind::Gauge;
}

impl Samples for UpstreamUp {
    fn shown(&self) -> bool {
        self.0.get().is_some()
    }
    fn write_samples(&self, name: &str, out: &mut String) {
        if let Some(upstream) = self.0.get() {
            let _ = writeln!(out, "{name} {}", i64::from(upstream.is_connected()));
        }
    }
}

/// The age of each symbol's newest upstream price; rendered only with an upstream.
#[derive(Debug, Default)]
pub struct UpstreamPriceAges(pub UpstreamSlot);

impl Family for UpstreamPriceAges {
    const KIND: Kind = Kind::Gauge;
    const LABEL: Option<LabelDef> = Some(LabelDef { name: "symbol", values: None });
}

impl Samples for UpstreamPriceAges {
    fn shown(&self) -> bool {
        self.0.get().is_some()
    }
    fn write_samples(&self, name: &str, out: &mut String) {
        if let Some(upstream) = self.0.get() {
            upstream.each_price_age(Instant::now(), &mut |symbol, age| {
                let _ = match age {
                    Some(age) => {
                        writeln!(out, "{name}{{symbol=\"{symbol}\"}} {}", age.as_secs_f64())
                    }
                    None => writeln!(out, "{name}{{symbol=\"{symbol}\"}} +Inf"),
                };
            });
        }
    }
}
