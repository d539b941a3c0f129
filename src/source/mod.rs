//! Price sources: where each tick's prices come from.
//!
//! The seam is [`PriceSource`]: the seed's random walk ([`PriceSource::Sim`], the
//! default, reproducible with `--seed`) or an exchange's public WebSocket stream
//! ([`PriceSource::Upstream`]). The ticker asks it for the quotes of the next tick and
//! never learns which one it has.
//!
//! An upstream source is two halves that share a [`Book`]:
//! - the upstream thread ([`upstream`]) connects, subscribes, parses each message with
//!   the exchange's pure parser ([`coinbase`], [`binance`], [`kraken`]) and offers the
//!   price to the book: parse first, then one short per-symbol lock to store it, so a
//!   burst costs the ticker nothing but a newer price (conflation: the newest wins);
//! - the ticker copies the book once per tick ([`Book::snapshot_into`]), deciding
//!   staleness from the time each price arrived.
//!
//! Neither the event loops nor the ticker ever touch the upstream socket.

pub mod binance;
pub mod check;
pub mod coinbase;
pub mod kraken;
mod time;
pub mod upstream;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::SymbolSpec;
use crate::metrics::Metrics;
use crate::ticker::prices::{PriceModel, Quote, SourceStamp, round2};

pub use time::parse_rfc3339_ms;

/// An exchange whose public stream can feed the ticker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    Coinbase,
    Binance,
    Kraken,
}

/// What `--source` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sim,
    Exchange(Exchange),
}

impl SourceKind {
    pub fn parse(v: &str) -> Option<SourceKind> {
        match v.to_ascii_lowercase().as_str() {
            "sim" => Some(SourceKind::Sim),
            "coinbase" => Some(SourceKind::Exchange(Exchange::Coinbase)),
            "binance" => Some(SourceKind::Exchange(Exchange::Binance)),
            "kraken" => Some(SourceKind::Exchange(Exchange::Kraken)),
            _ => None,
        }
    }
}

impl Exchange {
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Coinbase => "coinbase",
            Exchange::Binance => "binance",
            Exchange::Kraken => "kraken",
        }
    }

    /// The exchange's public WebSocket endpoint.
    pub fn default_url(self) -> &'static str {
        match self {
            Exchange::Coinbase => coinbase::DEFAULT_URL,
            Exchange::Binance => binance::DEFAULT_URL,
            Exchange::Kraken => kraken::DEFAULT_URL,
        }
    }

    /// How long the connection may stay silent before it is declared dead. Coinbase and
    /// Kraken send a heartbeat every second; Binance only pings every 20 s (the client
    /// pings too, at half this bound, so a quiet pair still proves the link alive).
    pub fn default_silence(self) -> Duration {
        match self {
            Exchange::Coinbase | Exchange::Kraken => Duration::from_secs(5),
            Exchange::Binance => Duration::from_secs(30),
        }
    }

    /// Binance closes every connection after 24 h; reconnecting a little before that
    /// avoids a gap at a time of its choosing.
    pub fn max_connection_age(self) -> Option<Duration> {
        match self {
            Exchange::Binance => Some(binance::MAX_CONNECTION_AGE),
            Exchange::Coinbase | Exchange::Kraken => None,
        }
    }

    /// The exchange's name for one of our symbols (`BASE-QUOTE`), or `None` when it has
    /// no such form.
    pub fn symbol(self, ours: &str) -> Option<String> {
        let (base, quote) = ours.split_once('-')?;
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid(base) || !valid(quote) {
            return None;
        }
        Some(match self {
            Exchange::Coinbase => coinbase::symbol(base, quote),
            Exchange::Binance => binance::symbol(base, quote),
            Exchange::Kraken => kraken::symbol(base, quote),
        })
    }

    /// The text messages to send after connecting, for the exchange names `symbols`.
    pub fn subscribe(self, symbols: &[&str]) -> Vec<String> {
        match self {
            Exchange::Coinbase => vec![coinbase::subscribe(symbols)],
            Exchange::Binance => vec![binance::subscribe(symbols)],
            Exchange::Kraken => kraken::subscribe(symbols),
        }
    }

    /// Parses one message from the exchange.
    pub fn parse(self, bytes: &[u8]) -> Result<Event<'_>, SourceError> {
        match self {
            Exchange::Coinbase => coinbase::parse(bytes),
            Exchange::Binance => binance::parse(bytes),
            Exchange::Kraken => kraken::parse(bytes),
        }
    }

    /// Whether one bad symbol makes the exchange refuse the whole subscribe request
    /// (Coinbase does), so the rest must be subscribed again without it.
    pub fn rejects_whole_subscribe(self) -> bool {
        matches!(self, Exchange::Coinbase)
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One price as an exchange reported it. `symbol` is the exchange's name, borrowed from
/// the message when it has no escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceUpdate<'a> {
    pub symbol: Cow<'a, str>,
    pub price: f64,
    /// The exchange's time of this price, milliseconds since the Unix epoch.
    pub ts_ms: Option<u64>,
    /// The exchange's sequence number, where it has one: a lower one than the last seen
    /// for the symbol is an out-of-order update (gaps are normal: Coinbase's ticker
    /// sequences are not contiguous).
    pub seq: Option<u64>,
}

/// What one upstream message means.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Price(PriceUpdate<'a>),
    /// Several prices in one message (Kraken batches them).
    Prices(Vec<PriceUpdate<'a>>),
    /// A liveness signal and nothing more.
    Heartbeat,
    /// The exchange refused (part of) a subscription.
    Rejected {
        symbol: Option<Cow<'a, str>>,
        reason: Cow<'a, str>,
    },
    /// A known message with nothing for the ticker (subscription acks, status, pongs).
    Control,
}

/// Why an upstream message was skipped. Both are counted, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Not JSON, or a known message with fields missing or of the wrong type, or a
    /// price that is not a positive finite number.
    Malformed(String),
    /// Well-formed JSON of a kind this parser does not know.
    Unknown(String),
}

impl SourceError {
    pub fn kind_label(&self) -> &'static str {
        match self {
            SourceError::Malformed(_) => "malformed",
            SourceError::Unknown(_) => "unknown",
        }
    }

    pub(crate) fn malformed(e: impl fmt::Display) -> SourceError {
        SourceError::Malformed(e.to_string())
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Malformed(d) => write!(f, "malformed upstream message: {d}"),
            SourceError::Unknown(d) => write!(f, "unknown upstream message: {d}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// Parses a decimal price string (exchanges send prices as strings to keep precision).
pub(crate) fn price_str(s: &str) -> Result<f64, SourceError> {
    let p: f64 = s.parse().map_err(|_| SourceError::Malformed(format!("bad price {s:?}")))?;
    positive(p)
}

pub(crate) fn positive(p: f64) -> Result<f64, SourceError> {
    if p.is_finite() && p > 0.0 {
        Ok(p)
    } else {
        Err(SourceError::Malformed(format!("price out of range: {p}")))
    }
}

/// Where an upstream connects and how long it tolerates silence.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub exchange: Exchange,
    pub url: String,
    /// A PEM file of extra trusted CAs (a private CA, a TLS-intercepting proxy).
    pub ca: Option<PathBuf>,
    pub silence: Duration,
    pub stale_after: Duration,
}

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

    /// Copies every symbol's newest price into `quotes` (reusing its strings). A price
    /// is stale while disconnected, when the exchange does not list the symbol, before
    /// its first update, and when its last update arrived more than `stale_after` ago.
    pub fn snapshot_into(&self, quotes: &mut Vec<Quote>, now: Instant, stale_after: Duration) {
        let connected = self.is_connected();
        quotes.truncate(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            let l = *s.latest.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh =
                l.received.is_some_and(|at| now.saturating_duration_since(at) <= stale_after);
            let stale = !connected || !fresh || s.unlisted.load(Ordering::Relaxed);
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

/// Where the ticker gets each tick's quotes.
pub enum PriceSource {
    /// The seed's random walk. Its quotes carry no `source_ts`/`stale`, so its frames
    /// are byte-identical to the ones before real sources existed.
    Sim(PriceModel),
    Upstream(Upstream),
}

impl PriceSource {
    /// The quotes of the next tick. The simulation steps its walk (except for the first
    /// tick, the start prices); an upstream copies its book.
    pub fn next_quotes(&mut self, first: bool) -> &[Quote] {
        match self {
            PriceSource::Sim(model) => {
                if !first {
                    model.step();
                }
                model.quotes()
            }
            PriceSource::Upstream(up) => {
                up.book.snapshot_into(&mut up.quotes, Instant::now(), up.config.stale_after);
                &up.quotes
            }
        }
    }

    /// Continues from prices published before (a new cluster leader).
    pub fn restore(&mut self, prices: &[(String, f64)]) {
        match self {
            PriceSource::Sim(model) => model.restore(prices),
            PriceSource::Upstream(up) => up.book.restore(prices),
        }
    }

    /// Starts consuming the upstream (no-op for the simulation, or when already on).
    pub fn activate(&mut self) -> std::io::Result<()> {
        match self {
            PriceSource::Sim(_) => Ok(()),
            PriceSource::Upstream(up) => up.activate(),
        }
    }

    /// Stops consuming the upstream (a cluster node that stops leading): its prices go
    /// stale, the book keeps the last ones.
    pub fn deactivate(&mut self) {
        if let PriceSource::Upstream(up) = self {
            up.deactivate();
        }
    }
}

/// An exchange feed: the book and, while active, the thread that fills it.
pub struct Upstream {
    config: UpstreamConfig,
    book: Arc<Book>,
    metrics: Arc<Metrics>,
    tls: Arc<rustls::ClientConfig>,
    thread: Option<upstream::UpstreamThread>,
    quotes: Vec<Quote>,
}

impl Upstream {
    /// Checks the configuration (URL, CA file) and logs the symbols the exchange cannot
    /// have; connects only on [`PriceSource::activate`].
    pub fn new(
        config: UpstreamConfig,
        symbols: &[SymbolSpec],
        metrics: Arc<Metrics>,
    ) -> Result<Upstream, upstream::ConnectError> {
        upstream::check_url(&config.url)?;
        let tls = upstream::tls_config(config.ca.as_deref())?;
        let book = Arc::new(Book::new(symbols, config.exchange));
        for symbol in book.unmappable() {
            crate::warn!(
                "source: symbol has no name on the exchange; it stays on its start price, stale",
                source = config.exchange,
                symbol = symbol
            );
        }
        metrics.set_source_book(book.clone());
        Ok(Upstream { config, book, metrics, tls, thread: None, quotes: Vec::new() })
    }

    pub fn book(&self) -> &Arc<Book> {
        &self.book
    }

    fn activate(&mut self) -> std::io::Result<()> {
        if self.thread.is_none() {
            self.thread = Some(upstream::spawn(
                self.config.clone(),
                self.tls.clone(),
                self.book.clone(),
                self.metrics.clone(),
            )?);
        }
        Ok(())
    }

    fn deactivate(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
        self.book.set_connected(false);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.deactivate();
    }
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
    fn symbols_map_to_each_exchanges_names() {
        assert_eq!(Exchange::Coinbase.symbol("BTC-USD").as_deref(), Some("BTC-USD"));
        assert_eq!(Exchange::Binance.symbol("BTC-USD").as_deref(), Some("BTCUSDT"));
        assert_eq!(Exchange::Binance.symbol("ETH-BTC").as_deref(), Some("ETHBTC"));
        assert_eq!(Exchange::Kraken.symbol("BTC-USD").as_deref(), Some("BTC/USD"));
        assert_eq!(Exchange::Kraken.symbol("sol-usd").as_deref(), Some("SOL/USD"));
        assert_eq!(Exchange::Coinbase.symbol("DOGE"), None);
        assert_eq!(Exchange::Coinbase.symbol("A-B-C"), None);
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
