//! `--delta`: the session asks for changes only (`?delta=1`), and each connection
//! rebuilds the state the server means it to have (symbol → price, stale) from full
//! messages (`"delta":false`, the whole state) and changes (`"delta":true`, applied on
//! top of the state as of message `prev_seq`).
//!
//! The chain: every change must name as `prev_seq` the `seq` of the last ticker
//! message the connection received. A change that does not is a chain break: the state
//! is no longer exact. Until the next full message the connection is unsynced: changes
//! arriving then are counted as "unsynced" (not as further breaks, so one loss counts
//! once) and not applied. In a delta session `seq` values are not contiguous (a tick
//! that changed none of the session's symbols sends nothing), so seq gaps mean nothing
//! there: the chain is the only measure of loss.
//!
//! Ticker messages are parsed whole here (serde), unlike the scanner's fast path: delta
//! messages are small, and the state needs every entry.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

/// A ticker message as far as the state goes.
#[derive(Deserialize)]
struct Ticker<'a> {
    seq: u64,
    delta: Option<bool>,
    prev_seq: Option<u64>,
    #[serde(borrow, default)]
    data: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    price: f64,
    #[serde(default)]
    stale: bool,
}

/// One symbol's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quote {
    pub(crate) price: f64,
    pub(crate) stale: bool,
}

/// What one ticker message did to the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeltaStep {
    /// `"delta":false`: the state replaced.
    Full,
    /// `"delta":true` on the chain: applied. `heartbeat` when its data was empty.
    Chained { heartbeat: bool },
    /// `"delta":true` off the chain: the state is unknown from here.
    Break,
    /// `"delta":true` after a break, before the next full message: not applied.
    Unsynced,
    /// No `"delta"` key: the server did not take `?delta=1` (a plain session's message).
    Plain,
    /// Not a ticker message the state can read (bad JSON, no `seq`).
    Unreadable,
}

/// One connection's rebuilt state.
#[derive(Debug, Default)]
pub(crate) struct DeltaState {
    quotes: HashMap<Box<str>, Quote>,
    /// `seq` of the last ticker message received.
    last_seq: Option<u64>,
    /// A full message came and no break since: the state is exact.
    synced: bool,
}

impl DeltaState {
    /// Applies one ticker message (`"type":"ticker"`, whole payload).
    pub(crate) fn apply(&mut self, payload: &[u8]) -> DeltaStep {
        let Ok(msg) = serde_json::from_slice::<Ticker<'_>>(payload) else {
            return DeltaStep::Unreadable;
        };
        let last = self.last_seq.replace(msg.seq);
        match msg.delta {
            None => DeltaStep::Plain,
            Some(false) => {
                self.quotes.clear();
                self.put(msg.data);
                self.synced = true;
                DeltaStep::Full
            }
            Some(true) if !self.synced => DeltaStep::Unsynced,
            Some(true) if msg.prev_seq.is_some() && msg.prev_seq == last => {
                let heartbeat = msg.data.is_empty();
                self.put(msg.data);
                DeltaStep::Chained { heartbeat }
            }
            Some(true) => {
                self.synced = false;
                DeltaStep::Break
            }
        }
    }

    fn put(&mut self, entries: Vec<Entry<'_>>) {
        for e in entries {
            let quote = Quote { price: e.price, stale: e.stale };
            match self.quotes.get_mut(&*e.symbol) {
                Some(q) => *q = quote,
                None => {
                    self.quotes.insert(e.symbol.into(), quote);
                }
            }
        }
    }

    /// A symbol's state, while the state is exact.
    #[cfg(test)]
    pub(crate) fn quote(&self, symbol: &str) -> Option<Quote> {
        self.synced.then(|| self.quotes.get(symbol).copied()).flatten()
    }

    #[cfg(test)]
    pub(crate) fn symbols(&self) -> usize {
        self.quotes.len()
    }
}

/// `--delta`, steady window: ticker messages by what they did to the rebuilt state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeltaCounters {
    pub(crate) full: u64,
    /// Changes on the chain, heartbeats (empty changes) included.
    pub(crate) changes: u64,
    pub(crate) heartbeats: u64,
    pub(crate) breaks: u64,
    /// Changes between a break and the next full message, not applied.
    pub(crate) unsynced: u64,
    /// Ticker messages without `"delta"` (the server ignored `?delta=1`), or unreadable.
    pub(crate) plain: u64,
}

impl DeltaCounters {
    pub(crate) fn count(&mut self, step: DeltaStep) {
        match step {
            DeltaStep::Full => self.full += 1,
            DeltaStep::Chained { heartbeat } => {
                self.changes += 1;
                self.heartbeats += u64::from(heartbeat);
            }
            DeltaStep::Break => self.breaks += 1,
            DeltaStep::Unsynced => self.unsynced += 1,
            DeltaStep::Plain | DeltaStep::Unreadable => self.plain += 1,
        }
    }

    pub(crate) fn add(&mut self, o: &DeltaCounters) {
        self.full += o.full;
        self.changes += o.changes;
        self.heartbeats += o.heartbeats;
        self.breaks += o.breaks;
        self.unsynced += o.unsynced;
        self.plain += o.plain;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(seq: u64, data: &str) -> String {
        format!(r#"{{"type":"ticker","seq":{seq},"ts_us":1,"delta":false,"data":[{data}]}}"#)
    }

    fn change(seq: u64, prev: u64, data: &str) -> String {
        format!(
            r#"{{"type":"ticker","seq":{seq},"ts_us":1,"delta":true,"prev_seq":{prev},"data":[{data}]}}"#
        )
    }

    const BTC: &str = r#"{"symbol":"BTC-USD","price":42000.5,"timestamp":1}"#;
    const ETH: &str = r#"{"symbol":"ETH-USD","price":3000,"timestamp":1}"#;

    fn price(s: &DeltaState, symbol: &str) -> Option<f64> {
        s.quote(symbol).map(|q| q.price)
    }

    #[test]
    fn changes_on_the_chain_apply_on_top_of_the_full_state() {
        let mut s = DeltaState::default();
        assert_eq!(s.apply(full(120, &format!("{BTC},{ETH}")).as_bytes()), DeltaStep::Full);
        let btc = r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":2,"stale":true}"#;
        assert_eq!(
            s.apply(change(125, 120, btc).as_bytes()),
            DeltaStep::Chained { heartbeat: false }
        );
        assert_eq!(
            s.apply(change(126, 125, "").as_bytes()),
            DeltaStep::Chained { heartbeat: true }
        );
        assert_eq!(s.quote("BTC-USD"), Some(Quote { price: 42001.17, stale: true }));
        assert_eq!(price(&s, "ETH-USD"), Some(3000.0), "unchanged entries keep their state");
        assert_eq!(s.symbols(), 2);
    }

    #[test]
    fn a_change_off_the_chain_breaks_it_until_the_next_full_message() {
        let mut s = DeltaState::default();
        s.apply(full(10, BTC).as_bytes());
        assert_eq!(s.apply(change(14, 12, ETH).as_bytes()), DeltaStep::Break, "13 missed");
        assert_eq!(price(&s, "BTC-USD"), None, "the state is not exact any more");
        // Even a change that follows the one just received is not applied: its base is lost.
        assert_eq!(s.apply(change(15, 14, ETH).as_bytes()), DeltaStep::Unsynced);
        assert_eq!(s.apply(full(16, ETH).as_bytes()), DeltaStep::Full);
        assert_eq!((price(&s, "ETH-USD"), price(&s, "BTC-USD")), (Some(3000.0), None));
        assert_eq!(s.symbols(), 1, "a full message replaces the whole state");
        assert_eq!(
            s.apply(change(17, 16, BTC).as_bytes()),
            DeltaStep::Chained { heartbeat: false }
        );
    }

    #[test]
    fn a_change_before_any_full_message_or_without_prev_seq_is_not_on_the_chain() {
        let mut s = DeltaState::default();
        assert_eq!(s.apply(change(5, 4, BTC).as_bytes()), DeltaStep::Unsynced);
        s.apply(full(6, BTC).as_bytes());
        let no_prev = r#"{"type":"ticker","seq":7,"ts_us":1,"delta":true,"data":[]}"#;
        assert_eq!(s.apply(no_prev.as_bytes()), DeltaStep::Break);
        // A repeat of a seq is off the chain too: prev_seq must be the last seq.
        s.apply(full(8, BTC).as_bytes());
        assert_eq!(s.apply(change(8, 7, "").as_bytes()), DeltaStep::Break);
    }

    #[test]
    fn plain_and_unreadable_messages_are_told_apart() {
        let mut s = DeltaState::default();
        let plain = format!(r#"{{"type":"ticker","seq":3,"ts_us":1,"data":[{BTC}]}}"#);
        assert_eq!(s.apply(plain.as_bytes()), DeltaStep::Plain);
        assert_eq!(s.apply(b"{\"type\":\"ticker\"}"), DeltaStep::Unreadable);
        assert_eq!(s.apply(b"not json"), DeltaStep::Unreadable);
    }
}
