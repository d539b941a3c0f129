//! Symbol subscriptions, pure: what `--subscribe` and `--subscribe-random` ask for, and
//! how one connection carries it out.
//!
//! - `--subscribe A,B` (repeatable): connection `i` takes set `i mod n`, chosen at the
//!   upgrade with `?symbols=A,B` ([`with_symbols`]): no message, nothing to wait for. The
//!   server refuses an unknown name before the upgrade (400 `{"error":"unknown symbol"}`),
//!   a failure counted as [`Refusal`].
//! - `--subscribe-random K`: each connection reads the symbol names in its first `ticker`
//!   message (the snapshot after `welcome` carries every symbol), picks K of them
//!   ([`pick`], seeded per connection by [`conn_seed`]) and sends
//!   `{"type":"subscribe","symbols":[..]}`. The server answers `subscriptions` (or
//!   `error`: a [`Refusal`]), then a snapshot of the added symbols that repeats the latest
//!   `seq` — which [`crate::receiver::SeqTracker`] treats as neutral.
//!
//! [`ConnSub`] is one connection's part: its set, or its random pick in progress.

use std::fmt;

use serde_json::{Value, json};

use crate::scan::Kind;

/// What every connection of the run subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Subscription {
    /// Every symbol, the server's default: nothing is asked.
    #[default]
    All,
    /// `--subscribe`, in the order given; never empty. Connection `i` takes `i mod n`.
    Sets(Vec<SymbolSet>),
    /// `--subscribe-random K`, with the run's seed (`--seed`, or drawn at start).
    Random { k: usize, seed: u64 },
}

impl Subscription {
    /// The name of the mode in the report: `all`, `sets` or `random`.
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Subscription::All => "all",
            Subscription::Sets(_) => "sets",
            Subscription::Random { .. } => "random",
        }
    }
}

/// One `--subscribe` value: symbol names, duplicates dropped, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SymbolSet {
    pub(crate) symbols: Vec<String>,
}

impl SymbolSet {
    /// `A,B,C`: names separated by commas, spaces around them ignored; `None` if there is
    /// no name.
    pub(crate) fn parse(v: &str) -> Option<SymbolSet> {
        let mut symbols: Vec<String> = Vec::new();
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !symbols.iter().any(|s| s == name) {
                symbols.push(name.to_string());
            }
        }
        (!symbols.is_empty()).then_some(SymbolSet { symbols })
    }

    /// As given: `A,B`.
    pub(crate) fn text(&self) -> String {
        self.symbols.join(",")
    }

    /// The `symbols` query value: each name percent-encoded, commas kept.
    fn query(&self) -> String {
        self.symbols.iter().map(|s| percent_encode(s)).collect::<Vec<_>>().join(",")
    }
}

/// `path` with `symbols=` added to its query (`?` or `&` as the path needs).
pub(crate) fn with_symbols(path: &str, set: &SymbolSet) -> String {
    with_param(path, &format!("symbols={}", set.query()))
}

/// `path` with `param` (`name=value`, encoded) added to its query.
pub(crate) fn with_param(path: &str, param: &str) -> String {
    let sep = match path.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some((_, q)) if q.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{path}{sep}{param}")
}

/// Whether a request target's query already has a `symbols` parameter.
pub(crate) fn has_symbols_param(path: &str) -> bool {
    has_param(path, "symbols")
}

/// Whether a request target's query has a parameter `name`.
pub(crate) fn has_param(path: &str, name: &str) -> bool {
    path.split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.split_once('=').map_or(p, |(k, _)| k) == name))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as
/// `encodeURIComponent` does (for a token or a symbol name in a query).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// splitmix64: one step of a good 64-bit mixer.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Connection `i`'s own seed from the run's: the same run seed gives every connection
/// the same pick again, and neighbouring connections unrelated ones.
pub(crate) fn conn_seed(run_seed: u64, i: usize) -> u64 {
    mix(run_seed ^ mix(i as u64))
}

/// `k` distinct names of `symbols` (all of them when `k` is not smaller), drawn with
/// `seed`, in the order of `symbols`.
pub(crate) fn pick(symbols: &[String], k: usize, seed: u64) -> Vec<&str> {
    let n = symbols.len();
    let mut idx: Vec<usize> = (0..n).collect();
    if k < n {
        // A partial Fisher-Yates shuffle: the first k places are a uniform k-subset.
        let mut state = seed;
        for j in 0..k {
            state = mix(state);
            let r = j + (state % (n - j) as u64) as usize;
            idx.swap(j, r);
        }
        idx.truncate(k);
        idx.sort_unstable();
    }
    idx.into_iter().map(|i| symbols[i].as_str()).collect()
}

/// The symbol names of a ticker message (`data[].symbol`), each once, in its order.
pub(crate) fn symbols_of_ticker(payload: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for entry in v.get("data").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = entry.get("symbol").and_then(Value::as_str)
            && !out.iter().any(|s| s == name)
        {
            out.push(name.to_string());
        }
    }
    out
}

/// `{"type":"subscribe","symbols":[..]}`.
pub(crate) fn subscribe_message(symbols: &[&str]) -> Vec<u8> {
    json!({ "type": "subscribe", "symbols": symbols }).to_string().into_bytes()
}

/// A set's identity, whatever the order of its names, for counting distinct sets.
pub(crate) fn fingerprint(symbols: &[&str]) -> u64 {
    let mut sorted = symbols.to_vec();
    sorted.sort_unstable();
    // FNV-1a over the sorted names, each ended by a byte no name contains in JSON.
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for name in sorted {
        for b in name.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01B3);
        }
    }
    h
}

/// Why a subscription was not applied: the server's `error` text (in an `error` message
/// or the JSON body of a refused upgrade), or no symbol list to pick from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Refusal {
    UnknownSymbol,
    TooManySymbols,
    TooManySets,
    EmptyList,
    NotAList,
    /// An `error` message with another text.
    Other,
    /// `--subscribe-random`: the first ticker message listed no `data[].symbol`.
    NoSymbols,
}

impl Refusal {
    /// The refusal crypto-ticker's error text names; `Other` for any other text.
    pub(crate) fn from_text(text: &str) -> Refusal {
        match text {
            "unknown symbol" => Refusal::UnknownSymbol,
            "too many symbols" => Refusal::TooManySymbols,
            "too many distinct symbol sets" => Refusal::TooManySets,
            "empty symbol list" => Refusal::EmptyList,
            "symbols must be a list of symbol names" => Refusal::NotAList,
            _ => Refusal::Other,
        }
    }

    /// The refusal in a JSON `{"error": ".."}` (an `error` message, an HTTP error body).
    pub(crate) fn of_json(payload: &[u8]) -> Refusal {
        serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(Refusal::from_text))
            .unwrap_or(Refusal::Other)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::UnknownSymbol => "unknown symbol",
            Refusal::TooManySymbols => "too many symbols",
            Refusal::TooManySets => "too many distinct symbol sets",
            Refusal::EmptyList => "empty symbol list",
            Refusal::NotAList => "symbols must be a list of symbol names",
            Refusal::Other => "error message",
            Refusal::NoSymbols => "no symbol list in the first ticker message",
        })
    }
}

/// One connection's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnSub {
    /// Nothing to send: every symbol (`None`), or the `--subscribe` set of this index,
    /// asked for at the upgrade.
    AtUpgrade(Option<u32>),
    /// `--subscribe-random`: K names to pick with this connection's seed.
    Random { k: usize, seed: u64, state: RandomState },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RandomState {
    /// Waiting for the first ticker message, to learn the symbols.
    Ticker,
    /// `subscribe` sent (the fingerprint of the set asked for); waiting for the answer.
    Answer(u64),
    /// Subscribed, refused, or nothing to pick from: nothing more to do.
    Done,
}

/// What the connection must do about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubStep {
    Nothing,
    /// Send this `subscribe` message; `available` names were there to pick from.
    Send {
        message: Vec<u8>,
        available: usize,
    },
    /// The server applied the set with this fingerprint.
    Accepted(u64),
    Refused(Refusal),
}

impl ConnSub {
    pub(crate) fn random(k: usize, seed: u64) -> ConnSub {
        ConnSub::Random { k, seed, state: RandomState::Ticker }
    }

    /// The `--subscribe` set index, for the per-set counts.
    pub(crate) fn slot(&self) -> Option<u32> {
        match self {
            ConnSub::AtUpgrade(slot) => *slot,
            ConnSub::Random { .. } => None,
        }
    }

    /// Whether messages of `kind` may move this subscription on (cheap: asked per message).
    pub(crate) fn wants(&self, kind: Kind) -> bool {
        match self {
            ConnSub::AtUpgrade(_) => false,
            ConnSub::Random { state, .. } => match state {
                RandomState::Ticker => kind == Kind::Ticker,
                RandomState::Answer(_) => matches!(kind, Kind::Subscriptions | Kind::Error),
                RandomState::Done => false,
            },
        }
    }

    /// A message of `kind` arrived, with its payload when it came whole in one frame.
    pub(crate) fn on_message(&mut self, kind: Kind, payload: Option<&[u8]>) -> SubStep {
        let ConnSub::Random { k, seed, state } = self else { return SubStep::Nothing };
        match (*state, kind) {
            (RandomState::Ticker, Kind::Ticker) => {
                // A message that came in pieces is not read: the next one will be.
                let Some(payload) = payload else { return SubStep::Nothing };
                let symbols = symbols_of_ticker(payload);
                if symbols.is_empty() {
                    *state = RandomState::Done;
                    return SubStep::Refused(Refusal::NoSymbols);
                }
                let chosen = pick(&symbols, *k, *seed);
                *state = RandomState::Answer(fingerprint(&chosen));
                SubStep::Send { message: subscribe_message(&chosen), available: symbols.len() }
            }
            (RandomState::Answer(fp), Kind::Subscriptions) => {
                *state = RandomState::Done;
                SubStep::Accepted(fp)
            }
            (RandomState::Answer(_), Kind::Error) => {
                *state = RandomState::Done;
                SubStep::Refused(payload.map_or(Refusal::Other, Refusal::of_json))
            }
            _ => SubStep::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("S{i}-USD")).collect()
    }

    #[test]
    fn a_set_is_names_separated_by_commas_each_once() {
        let s = SymbolSet::parse(" BTC-USD, ETH-USD ,,BTC-USD").unwrap();
        assert_eq!(s.symbols, ["BTC-USD", "ETH-USD"]);
        assert_eq!(s.text(), "BTC-USD,ETH-USD");
        assert_eq!(SymbolSet::parse(" , "), None);
    }

    #[test]
    fn symbols_are_added_to_the_query_the_path_has_or_not() {
        let set = SymbolSet::parse("BTC-USD,ETH USD").unwrap();
        assert_eq!(with_symbols("/ws/ticker", &set), "/ws/ticker?symbols=BTC-USD,ETH%20USD");
        assert_eq!(with_symbols("/feed?x=1", &set), "/feed?x=1&symbols=BTC-USD,ETH%20USD");
        assert_eq!(with_symbols("/feed?", &set), "/feed?symbols=BTC-USD,ETH%20USD");
        assert_eq!(with_symbols("/feed?x=1&", &set), "/feed?x=1&symbols=BTC-USD,ETH%20USD");
        assert!(has_symbols_param("/ws?x=1&symbols=A"));
        assert!(has_symbols_param("/ws?symbols"));
        assert!(!has_symbols_param("/ws?my_symbols=A"));
        assert!(!has_symbols_param("/symbols"));
    }

    #[test]
    fn a_random_pick_is_k_distinct_names_and_the_same_again_with_the_same_seed() {
        let all = names(30);
        for seed in 0..200 {
            let p = pick(&all, 5, seed);
            assert_eq!(p.len(), 5);
            let mut unique = p.clone();
            unique.dedup();
            assert_eq!(unique.len(), 5, "distinct and in the list's order: {p:?}");
            assert!(p.iter().all(|n| all.iter().any(|s| s == n)));
            assert_eq!(pick(&all, 5, seed), p, "deterministic");
        }
        // Different seeds give different picks, and every name gets picked sometimes.
        let picks: Vec<Vec<&str>> = (0..200).map(|s| pick(&all, 5, conn_seed(7, s))).collect();
        assert!(picks.windows(2).any(|w| w[0] != w[1]));
        for name in &all {
            assert!(picks.iter().any(|p| p.contains(&name.as_str())), "{name} never picked");
        }
        assert_eq!(conn_seed(7, 3), conn_seed(7, 3));
        assert_ne!(conn_seed(7, 3), conn_seed(8, 3));
        assert_ne!(conn_seed(7, 3), conn_seed(7, 4));
    }

    #[test]
    fn k_at_or_above_the_number_of_names_takes_them_all() {
        let all = names(3);
        assert_eq!(pick(&all, 3, 1), ["S0-USD", "S1-USD", "S2-USD"]);
        assert_eq!(pick(&all, 10, 1), ["S0-USD", "S1-USD", "S2-USD"]);
        assert!(pick(&[], 2, 1).is_empty());
    }

    #[test]
    fn a_set_has_one_fingerprint_whatever_the_order() {
        assert_eq!(fingerprint(&["A", "B"]), fingerprint(&["B", "A"]));
        assert_ne!(fingerprint(&["A", "B"]), fingerprint(&["AB"]));
        assert_ne!(fingerprint(&["A"]), fingerprint(&["A", "B"]));
    }

    #[test]
    fn refusals_are_read_from_the_servers_error_text() {
        let msg = br#"{"type":"error","error":"unknown symbol","symbols":["NOPE"]}"#;
        assert_eq!(Refusal::of_json(msg), Refusal::UnknownSymbol);
        assert_eq!(
            Refusal::of_json(br#"{"error":"too many distinct symbol sets","symbols":[]}"#),
            Refusal::TooManySets
        );
        assert_eq!(Refusal::of_json(br#"{"error":"nope"}"#), Refusal::Other);
        assert_eq!(Refusal::of_json(b"not json"), Refusal::Other);
        assert_eq!(Refusal::TooManySymbols.to_string(), "too many symbols");
    }

    #[test]
    fn a_random_connection_picks_from_its_first_ticker_then_waits_for_the_answer() {
        let tick = br#"{"type":"ticker","seq":9,"ts_us":1,"data":[{"symbol":"A","price":1},{"symbol":"B","price":2},{"symbol":"C","price":3}]}"#;
        let mut sub = ConnSub::random(2, 42);
        assert_eq!(sub.slot(), None);
        assert!(!sub.wants(Kind::Other) && sub.wants(Kind::Ticker));
        assert_eq!(sub.on_message(Kind::Ticker, None), SubStep::Nothing, "a fragmented one");
        let SubStep::Send { message, available } = sub.on_message(Kind::Ticker, Some(tick)) else {
            panic!("no subscribe sent")
        };
        assert_eq!(available, 3);
        let v: Value = serde_json::from_slice(&message).unwrap();
        assert_eq!(v["type"], "subscribe");
        let asked: Vec<&str> =
            v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(asked.len(), 2);
        assert!(!sub.wants(Kind::Ticker) && sub.wants(Kind::Subscriptions));
        assert_eq!(sub.on_message(Kind::Ticker, Some(tick)), SubStep::Nothing);
        let answer = br#"{"type":"subscriptions","symbols":["A","B"]}"#;
        assert_eq!(sub.on_message(Kind::Subscriptions, Some(answer)), {
            SubStep::Accepted(fingerprint(&asked))
        });
        assert!(!sub.wants(Kind::Subscriptions) && !sub.wants(Kind::Error));

        let mut refused = ConnSub::random(2, 42);
        let _ = refused.on_message(Kind::Ticker, Some(tick));
        let error = br#"{"type":"error","error":"too many symbols","symbols":["A","B"]}"#;
        assert_eq!(
            refused.on_message(Kind::Error, Some(error)),
            SubStep::Refused(Refusal::TooManySymbols)
        );

        let mut empty = ConnSub::random(2, 42);
        let other = br#"{"type":"ticker","seq":1,"price":3}"#;
        assert_eq!(empty.on_message(Kind::Ticker, Some(other)), {
            SubStep::Refused(Refusal::NoSymbols)
        });
        assert_eq!(ConnSub::AtUpgrade(Some(3)).slot(), Some(3));
        assert!(!ConnSub::AtUpgrade(None).wants(Kind::Ticker));
    }
}
