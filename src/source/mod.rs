//! Price sources: where each tick's prices come from.
//!
//! The seam is [`PriceSource`]: the seed's random walk ([`PriceSource::Sim`], the
//! default, reproducible with `--seed`) or an exchange's public WebSocket stream
//! ([`PriceSource::Upstream`]). The ticker asks it for the quotes of the next tick and
//! never learns which one it has.
//!
//! An upstream source is two halves that share a [`Book`] (`book.rs`):
//! - the upstream thread ([`upstream`]) connects, subscribes, parses each message with
//!   the exchange's pure parser ([`coinbase`], [`binance`], [`kraken`]) and offers the
//!   price to the book: parse first, then one short per-symbol lock to store it, so a
//!   burst costs the ticker nothing but a newer price (conflation: the newest wins);
//! - the ticker copies the book once per tick ([`Book::snapshot_into`]), deciding
//!   staleness from the time each price arrived.
//!
//! Neither the event loops nor the ticker ever touch the upstream socket.
//!
//! Start-up and `source-check` come in through [`exchanges`], which a build without the
//! `exchanges` feature answers with "not built".

pub mod binance;
mod book;
#[cfg(feature = "exchanges")]
pub mod check;
pub mod coinbase;
pub mod exchanges;
pub mod kraken;
pub mod time;
#[cfg(feature = "exchanges")]
pub mod upstream;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::{Label, SourceMessageKind};
use crate::ticker::prices::{PriceModel, Quote};

pub use book::{Book, Offer, SymbolStats};
pub use time::parse_rfc3339_ms;
#[cfg(feature = "exchanges")]
pub use upstream::Upstream;

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
    /// Its kind, as the metrics count it.
    pub fn message_kind(&self) -> SourceMessageKind {
        match self {
            SourceError::Malformed(_) => SourceMessageKind::Malformed,
            SourceError::Unknown(_) => SourceMessageKind::Unknown,
        }
    }

    pub fn kind_label(&self) -> &'static str {
        self.message_kind().value()
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

/// Checks that `url` is a `ws://` or `wss://` URL with a host (`--source-url`).
pub fn check_url(url: &str) -> Result<(), String> {
    use tungstenite::client::IntoClientRequest;
    const FORMS: &str = "ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH";
    let req =
        url.into_client_request().map_err(|e| format!("{e}; expected {FORMS} (got {url:?})"))?;
    let uri = req.uri();
    match (uri.scheme_str(), uri.host()) {
        (Some("ws" | "wss"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(format!("expected {FORMS} (got {url:?})")),
    }
}

/// The price source's state as `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceHealth {
    /// `--source sim`: the random walk, always there.
    Simulated,
    /// Every symbol's price is fresh.
    Live,
    /// Connected, but `stale` of the `of` symbols have stale prices (not listed by the
    /// exchange, or silent for longer than `--stale-after`).
    Partial { stale: usize, of: usize },
    /// Disconnected, or every price stale: what subscribers see are the last known
    /// prices (each marked `"stale": true`), or the configured start prices.
    Down,
}

impl SourceHealth {
    /// From per-symbol stale flags: `of == 0` means the prices carry none (simulated).
    pub fn from_counts(stale: usize, of: usize) -> SourceHealth {
        match (stale, of) {
            (_, 0) => SourceHealth::Simulated,
            (0, _) => SourceHealth::Live,
            (s, o) if s >= o => SourceHealth::Down,
            (stale, of) => SourceHealth::Partial { stale, of },
        }
    }

    /// The `source` field of `/healthz`.
    pub fn label(self) -> &'static str {
        match self {
            SourceHealth::Simulated => "sim",
            SourceHealth::Live => "live",
            SourceHealth::Partial { .. } => "partial",
            SourceHealth::Down => "down",
        }
    }
}

/// Where the ticker gets each tick's quotes.
pub enum PriceSource {
    /// The seed's random walk. Its quotes carry no `source_ts`/`stale`, so its frames
    /// are byte-identical to the ones before real sources existed.
    Sim(PriceModel),
    #[cfg(feature = "exchanges")]
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
            #[cfg(feature = "exchanges")]
            PriceSource::Upstream(up) => up.next_quotes(),
        }
    }

    /// Continues from prices published before (a new cluster leader).
    pub fn restore(&mut self, prices: &[(String, f64)]) {
        match self {
            PriceSource::Sim(model) => model.restore(prices),
            #[cfg(feature = "exchanges")]
            PriceSource::Upstream(up) => up.restore(prices),
        }
    }

    /// Starts consuming the upstream (no-op for the simulation, or when already on).
    pub fn activate(&mut self) -> std::io::Result<()> {
        match self {
            PriceSource::Sim(_) => Ok(()),
            #[cfg(feature = "exchanges")]
            PriceSource::Upstream(up) => up.activate(),
        }
    }

    /// Stops consuming the upstream (a cluster node that stops leading): its prices go
    /// stale, the book keeps the last ones.
    pub fn deactivate(&mut self) {
        #[cfg(feature = "exchanges")]
        if let PriceSource::Upstream(up) = self {
            up.deactivate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_health_follows_the_stale_count() {
        assert_eq!(SourceHealth::from_counts(0, 0), SourceHealth::Simulated);
        assert_eq!(SourceHealth::from_counts(0, 3), SourceHealth::Live);
        assert_eq!(SourceHealth::from_counts(1, 3), SourceHealth::Partial { stale: 1, of: 3 });
        assert_eq!(SourceHealth::from_counts(3, 3), SourceHealth::Down);
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
}
