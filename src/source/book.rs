//! The latest-price [`Book`]: written by the upstream thread, read by the ticker once
//! per tick. Conflation is the book itself: each symbol holds only its newest price.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Exchange, PriceUpdate};
use crate::metrics::UpstreamState;
use crate::symbols::spec::SymbolSpec;
use crate::ticker::prices::{Quote, SourceStamp, round2};

/// The newest price of one symbol.
#[derive(Debug, Clone, Copy)]
struct Latest {
    price: f64,
    ts_ms: Option<u64>,
    seq: Option<u64>,
    /// When it arrived here: staleness is judged on this clock, not the exchange's.
    received: Option<Instant>,
    /// Prices taken, and the last one's arrival minus its exchange time (for
    /// `source-check`).
    updates: u64,
    skew_ms: Option<i64>,
}

#[derive(Debug)]
struct Slot {
    symbol: String,
    /// The exchange's name of the symbol (`None`: it has none; never subscribed).
    remote: Option<String>,
    latest: Mutex<Latest>,
    /// The exchange said it does not list this symbol.
    unlisted: AtomicBool,
}

impl Slot {
    /// A price is stale while disconnected, when the exchange does not list the symbol,
    /// before its first update, and when its last update arrived more than
    /// `stale_after` ago.
    fn is_stale(&self, l: &Latest, connected: bool, now: Instant, stale_after: Duration) -> bool {
        let fresh = l.received.is_some_and(|at| now.saturating_duration_since(at) <= stale_after);
        !connected || !fresh || self.unlisted.load(Ordering::Relaxed)
    }
}

/// What [`Book::offer`] did with a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Taken,
    /// A sequence number not above the last one taken for the symbol: dropped.
    OutOfOrder,
}

/// The latest price of every configured symbol, written by the upstream thread and read
/// by the ticker once per tick. Each symbol has its own lock, held only to copy a few
/// words in or out, never while parsing or doing I/O.
#[derive(Debug)]
pub struct Book {
    slots: Vec<Slot>,
    connected: AtomicBool,
}

impl Book {
    /// A book for `symbols` (configured order, start prices until the first update).
    pub fn new(symbols: &[SymbolSpec], exchange: Exchange) -> Book {
        let slots = symbols
            .iter()
            .map(|s| Slot {
                symbol: s.name.clone(),
                remote: exchange.symbol(&s.name),
                latest: Mutex::new(Latest {
                    price: round2(s.start_price),
                    ts_ms: None,
                    seq: None,
                    received: None,
                    updates: 0,
                    skew_ms: None,
                }),
                unlisted: AtomicBool::new(false),
            })
            .collect();
        Book { slots, connected: AtomicBool::new(false) }
    }

    /// The slot of an exchange symbol (a linear scan: a handful of symbols, no hashing).
    pub fn slot_of(&self, remote: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.remote.as_deref() == Some(remote))
    }

    /// Our symbol of a slot.
    pub fn symbol(&self, slot: usize) -> Option<&str> {
        self.slots.get(slot).map(|s| s.symbol.as_str())
    }

    /// `(ours, exchange's)` of every symbol the exchange may list, for subscribing.
    pub fn subscribable(&self) -> Vec<(&str, &str)> {
        self.slots
            .iter()
            .filter(|s| !s.unlisted.load(Ordering::Relaxed))
            .filter_map(|s| Some((s.symbol.as_str(), s.remote.as_deref()?)))
            .collect()
    }

    /// Our symbols that have no name on the exchange.
    pub fn unmappable(&self) -> Vec<&str> {
        self.slots.iter().filter(|s| s.remote.is_none()).map(|s| s.symbol.as_str()).collect()
    }

    /// Stores a price unless its sequence number shows it is older than the one held.
    pub fn offer(&self, slot: usize, u: &PriceUpdate<'_>, now: Instant, wall_ms: u64) -> Offer {
        let Some(slot) = self.slots.get(slot) else { return Offer::OutOfOrder };
        let mut l = slot.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(new), Some(old)) = (u.seq, l.seq)
            && new <= old
        {
            return Offer::OutOfOrder;
        }
        l.price = u.price;
        l.ts_ms = Some(u.ts_ms.unwrap_or(wall_ms));
        l.seq = u.seq.or(l.seq);
        l.received = Some(now);
        l.updates += 1;
        l.skew_ms = u.ts_ms.map(|ts| wall_ms as i64 - ts as i64);
        Offer::Taken
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A new connection is a new ordering domain: an exchange that restarted may start
    /// its sequences again, so the last numbers seen are forgotten.
    pub fn reset_sequences(&self) {
        for s in &self.slots {
            s.latest.lock().unwrap_or_else(PoisonError::into_inner).seq = None;
        }
    }

    pub fn mark_unlisted(&self, slot: usize) {
        if let Some(s) = self.slots.get(slot) {
            s.unlisted.store(true, Ordering::Relaxed);
        }
    }

    /// Takes over prices published before (a new cluster leader continues from the last
    /// tick): they stand until the upstream sends newer ones, stale meanwhile.
    pub fn restore(&self, prices: &[(String, f64)]) {
        for s in &self.slots {
            if let Some((_, p)) = prices.iter().find(|(sym, _)| *sym == s.symbol)
                && p.is_finite()
                && *p > 0.0
            {
                let mut l = s.latest.lock().unwrap_or_else(PoisonError::into_inner);
                if l.received.is_none() {
                    l.price = *p;
                }
            }
        }
    }

    /// Copies every symbol's newest price into `quotes` (reusing its strings), each
    /// marked stale or not ([`Slot::is_stale`]).
    pub fn snapshot_into(&self, quotes: &mut Vec<Quote>, now: Instant, stale_after: Duration) {
        let connected = self.is_connected();
        quotes.truncate(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            let l = *s.latest.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = s.is_stale(&l, connected, now, stale_after);
            let stamp = Some(SourceStamp { ts_ms: l.ts_ms, stale });
            match quotes.get_mut(i) {
                Some(q) => {
                    if q.symbol != s.symbol {
                        q.symbol.clone_from(&s.symbol);
                    }
                    q.price = l.price;
                    q.source = stamp;
                }
                None => {
                    quotes.push(Quote { symbol: s.symbol.clone(), price: l.price, source: stamp })
                }
            }
        }
    }

    /// Per symbol: ours, seconds since its newest price arrived (`None`: never), updates
    /// taken, last clock skew in ms (arrival minus exchange time).
    pub fn stats(&self, now: Instant) -> Vec<SymbolStats> {
        self.slots
            .iter()
            .map(|s| {
                let l = *s.latest.lock().unwrap_or_else(PoisonError::into_inner);
                SymbolStats {
                    symbol: s.symbol.clone(),
                    remote: s.remote.clone(),
                    price: l.price,
                    ts_ms: l.ts_ms,
                    age: l.received.map(|at| now.saturating_duration_since(at)),
                    updates: l.updates,
                    skew_ms: l.skew_ms,
                    unlisted: s.unlisted.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// What `/metrics` and `/healthz` read of the upstream.
impl UpstreamState for Book {
    fn is_connected(&self) -> bool {
        Book::is_connected(self)
    }

    fn each_price_age(&self, now: Instant, each: &mut dyn FnMut(&str, Option<Duration>)) {
        for s in self.stats(now) {
            each(&s.symbol, s.age);
        }
    }

    /// For `/healthz`: stale by the same rule as [`Book::snapshot_into`].
    fn stale_symbols(&self, now: Instant, stale_after: Duration) -> (usize, usize) {
        let connected = self.is_connected();
        let stale = self
            .slots
            .iter()
            .filter(|s| {
                let l = *s.latest.lock().unwrap_or_else(PoisonError::into_inner);
                s.is_stale(&l, connected, now, stale_after)
            })
            .count();
        (stale, self.slots.len())
    }
}

/// One symbol's state in the book, for metrics and `source-check`.
#[derive(Debug, Clone)]
pub struct SymbolStats {
    pub symbol: String,
    pub remote: Option<String>,
    pub price: f64,
    pub ts_ms: Option<u64>,
    pub age: Option<Duration>,
    pub updates: u64,
    pub skew_ms: Option<i64>,
    pub unlisted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> Vec<SymbolSpec> {
        ["BTC-USD:42000", "ETH-USD:2500", "DOGE:1"]
            .iter()
            .map(|s| {
                let (n, p) = s.split_once(':').unwrap();
                SymbolSpec { name: n.into(), start_price: p.parse().unwrap() }
            })
            .collect()
    }

    fn update(symbol: &str, price: f64, seq: Option<u64>) -> PriceUpdate<'_> {
        PriceUpdate { symbol: symbol.into(), price, ts_ms: Some(1_700_000_000_000), seq }
    }

    #[test]
    fn the_newest_price_wins_and_older_sequences_are_dropped() {
        let book = Book::new(&symbols(), Exchange::Coinbase);
        let now = Instant::now();
        let i = book.slot_of("BTC-USD").unwrap();
        assert_eq!(book.offer(i, &update("BTC-USD", 1.0, Some(10)), now, 0), Offer::Taken);
        assert_eq!(book.offer(i, &update("BTC-USD", 2.0, Some(25)), now, 0), Offer::Taken);
        assert_eq!(book.offer(i, &update("BTC-USD", 3.0, Some(20)), now, 0), Offer::OutOfOrder);
        assert_eq!(book.offer(i, &update("BTC-USD", 4.0, None), now, 0), Offer::Taken);
        book.set_connected(true);
        let mut quotes = Vec::new();
        book.snapshot_into(&mut quotes, now, Duration::from_secs(10));
        assert_eq!(quotes[0].price, 4.0);
        assert_eq!(
            quotes[0].source,
            Some(SourceStamp { ts_ms: Some(1_700_000_000_000), stale: false })
        );
        book.reset_sequences();
        assert_eq!(book.offer(i, &update("BTC-USD", 5.0, Some(1)), now, 0), Offer::Taken);
    }

    #[test]
    fn prices_go_stale_by_age_disconnection_and_before_the_first_update() {
        let book = Book::new(&symbols(), Exchange::Coinbase);
        let t0 = Instant::now();
        book.offer(0, &update("BTC-USD", 1.0, None), t0, 0);
        book.set_connected(true);
        let mut q = Vec::new();
        let stale = |q: &[Quote]| q.iter().map(|q| q.source.unwrap().stale).collect::<Vec<_>>();
        book.snapshot_into(&mut q, t0 + Duration::from_secs(10), Duration::from_secs(10));
        assert_eq!(stale(&q), [false, true, true]);
        assert_eq!(q[1].price, 2500.0, "start price until the first update");
        assert_eq!(q[1].source.unwrap().ts_ms, None);
        book.snapshot_into(&mut q, t0 + Duration::from_millis(10_001), Duration::from_secs(10));
        assert_eq!(stale(&q), [true, true, true]);
        book.set_connected(false);
        book.snapshot_into(&mut q, t0, Duration::from_secs(10));
        assert_eq!(stale(&q), [true, true, true]);
        assert_eq!(book.unmappable(), ["DOGE"]);
    }
}
