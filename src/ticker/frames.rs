//! Building one tick's frames. Each symbol's JSON entry is formatted once per tick
//! ([`Entries`]); the all-symbols frame and the frame of every active symbol set are
//! then assembled from those entries, which is copying a few dozen bytes per member, no
//! number formatting. Every frame is one complete WebSocket text frame in an
//! `Arc<[u8]>`, shared by every subscriber it goes to.

use std::io::Write;
use std::sync::Arc;

use super::prices::Quote;
use crate::symbols::SymbolIndex;
use crate::symbols::sets::{ActiveSets, SetLease};
use crate::ws::frame::{self, OpCode};

/// Each symbol's entry of one tick, `{"symbol":..,"price":..,"timestamp":..}`, in
/// configured order, in one buffer.
#[derive(Debug, Default)]
pub struct Entries {
    bytes: Vec<u8>,
    /// End of entry `i` in `bytes` (its start is the previous end).
    ends: Vec<u32>,
}

impl Entries {
    /// Formats every quote's entry; `secs` is the tick's whole seconds.
    pub fn format(quotes: &[Quote], secs: u64) -> Entries {
        let mut bytes = Vec::with_capacity(quotes.len() * 64);
        let mut ends = Vec::with_capacity(quotes.len());
        for q in quotes {
            write_entry(&mut bytes, q, secs);
            ends.push(bytes.len() as u32);
        }
        Entries { bytes, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// Every entry, comma-separated (the all-symbols `data` array's inside).
    fn total_len(&self) -> usize {
        self.bytes.len() + self.len().saturating_sub(1)
    }
}

/// One entry of `data`: `{"symbol":..,"price":..,"timestamp":..}`, and for a real
/// source `"source_ts":..` (the exchange's ms, once it priced the symbol) and `"stale":..`.
/// Simulated quotes carry neither, so their frames are the same bytes as before sources.
pub fn write_entry(out: &mut Vec<u8>, q: &Quote, secs: u64) {
    // Writes into a Vec cannot fail. Symbol names are validated as `[A-Za-z0-9._-]` in
    // config, so no escaping is needed.
    let _ =
        write!(out, r#"{{"symbol":"{}","price":{},"timestamp":{secs}"#, q.symbol, Price(q.price));
    if let Some(stamp) = q.source {
        if let Some(ts) = stamp.ts_ms {
            let _ = write!(out, r#","source_ts":{ts}"#);
        }
        let _ = write!(out, r#","stale":{}"#, stamp.stale);
    }
    out.push(b'}');
}

/// `{"type":"ticker","seq":..,"ts_us":..,"data":[` … `]}` around the chosen entries.
fn prefix(seq: u64, ts_us: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    let _ = write!(p, r#"{{"type":"ticker","seq":{seq},"ts_us":{ts_us},"data":["#);
    p
}

/// The prefix of a changes-only session's message: `"delta":true` with `prev_seq`, or
/// `"delta":false` (the whole state) without.
pub fn delta_prefix(seq: u64, ts_us: u64, prev_seq: Option<u64>) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    let _ = write!(p, r#"{{"type":"ticker","seq":{seq},"ts_us":{ts_us},"#);
    let _ = match prev_seq {
        Some(prev) => write!(p, r#""delta":true,"prev_seq":{prev},"data":["#),
        None => write!(p, r#""delta":false,"data":["#),
    };
    p
}

const SUFFIX: &[u8] = b"]}";

/// The frame of `members` (`None`: every symbol) from `entries`, sized exactly once.
pub fn assemble(prefix: &[u8], entries: &Entries, members: Option<&[SymbolIndex]>) -> Arc<[u8]> {
    let data_len = match members {
        None => entries.total_len(),
        Some(m) => {
            m.iter().map(|&i| entries.get(usize::from(i)).len()).sum::<usize>()
                + m.len().saturating_sub(1)
        }
    };
    let payload_len = prefix.len() + data_len + SUFFIX.len();
    let (header, header_len) = frame::server_header(OpCode::Text, payload_len);
    let mut bytes = Vec::with_capacity(header_len + payload_len);
    bytes.extend_from_slice(&header[..header_len]);
    bytes.extend_from_slice(prefix);
    match members {
        None => {
            for i in 0..entries.len() {
                if i > 0 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(entries.get(i));
            }
        }
        Some(m) => {
            for (k, &i) in m.iter().enumerate() {
                if k > 0 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(entries.get(usize::from(i)));
            }
        }
    }
    bytes.extend_from_slice(SUFFIX);
    debug_assert_eq!(bytes.len(), header_len + payload_len);
    Arc::from(bytes)
}

/// One tick, ready to write: the all-symbols frame, the frame of each active set, and
/// the formatted entries (from which a loop builds the frame of a set the ticker did
/// not know yet, or a snapshot of newly subscribed symbols).
#[derive(Debug, Clone)]
pub struct Tick {
    pub seq: u64,
    /// When the tick was made (Unix microseconds, the frame's `ts_us`): the event loops
    /// measure from it how late their fan-out starts.
    pub ts_us: u64,
    /// Every symbol: what a session that never subscribed is sent.
    pub frame: Arc<[u8]>,
    /// Indexed by set id; `None` for an id that was free when the tick was built.
    pub sets: Arc<[Option<Arc<[u8]>>]>,
    pub entries: Arc<Entries>,
    /// The frames of compressed and changes-only sessions (`variants.rs`); `None` when
    /// only plain sessions were open.
    pub encoded: Option<Arc<super::encoded::Encoded>>,
    /// What changed in this tick (`changes.rs`), for changes-only sessions' `prev_seq`.
    pub changes: Option<Arc<super::changes::Changes>>,
}

impl Tick {
    /// Builds the tick's frames: every symbol, then each active set.
    pub fn build(seq: u64, ts_us: u64, quotes: &[Quote], active: &ActiveSets) -> Tick {
        Tick::build_plain(seq, ts_us, quotes, active, true)
    }

    /// The plain frames: every symbol, then each active set if `sets` (no plain or
    /// compressed session open: a set's plain frame would go to nobody).
    pub fn build_plain(
        seq: u64,
        ts_us: u64,
        quotes: &[Quote],
        active: &ActiveSets,
        sets: bool,
    ) -> Tick {
        let entries = Entries::format(quotes, ts_us / 1_000_000);
        let prefix = prefix(seq, ts_us);
        let frame = assemble(&prefix, &entries, None);
        let slots = if sets { active.slots } else { 0 };
        let mut set_frames = vec![None; slots];
        for (id, members) in active.sets.iter().filter(|_| sets) {
            // Members index the configured symbols; a set from another configuration
            // (never the case on one node) is skipped rather than trusted.
            if members.iter().all(|&i| usize::from(i) < entries.len()) {
                set_frames[*id as usize] = Some(assemble(&prefix, &entries, Some(members)));
            }
        }
        let (sets, entries) = (Arc::from(set_frames), Arc::new(entries));
        Tick { seq, ts_us, frame, sets, entries, encoded: None, changes: None }
    }

    /// The frame of set `id` if the ticker built it.
    #[inline]
    pub fn set_frame(&self, id: u32) -> Option<&Arc<[u8]>> {
        self.sets.get(id as usize).and_then(Option::as_ref)
    }

    /// The frame a session with `feed` is sent of this tick, built if the ticker did
    /// not know the set (off the hot path: an upgrade or a subscription change). `None`
    /// for the empty set.
    pub fn frame_for_feed(&self, feed: Option<&SetLease>) -> Option<Arc<[u8]>> {
        match feed {
            None => Some(self.frame.clone()),
            Some(lease) if lease.members().is_empty() => None,
            Some(lease) => Some(
                self.set_frame(lease.id())
                    .cloned()
                    .unwrap_or_else(|| self.build_for(lease.members())),
            ),
        }
    }

    /// This tick's frame of `members`, built now (off the hot path: a set the ticker
    /// had not seen when it built the tick, or a snapshot of newly added symbols).
    pub fn build_for(&self, members: &[SymbolIndex]) -> Arc<[u8]> {
        assemble(&prefix(self.seq, self.ts_us), &self.entries, Some(members))
    }
}

/// Formats a price as JSON with at most 2 decimals (shortest form: `95`, `95.5`, `95.05`).
struct Price(f64);

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{:.2}", self.0);
        f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::SymbolTable;
    use crate::symbols::sets::{ActiveCache, SetRegistry};
    use std::time::UNIX_EPOCH;

    fn quotes() -> Vec<Quote> {
        vec![
            Quote { symbol: "BTC-USD".into(), price: 42001.17, source: None },
            Quote { symbol: "ETH-USD".into(), price: 2500.5, source: None },
            Quote { symbol: "SOL-USD".into(), price: 95.0, source: None },
        ]
    }

    fn payload(frame: &[u8]) -> serde_json::Value {
        let (len, start) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        assert_eq!(frame[0], 0x81, "FIN + text");
        assert_eq!(frame.len(), start + len);
        serde_json::from_slice(&frame[start..]).unwrap()
    }

    fn symbols(v: &serde_json::Value) -> Vec<&str> {
        v["data"].as_array().unwrap().iter().map(|e| e["symbol"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_tick_frame_is_one_text_frame_of_the_documented_json() {
        let ts_us = 1_732_400_000_123_456;
        let tick = Tick::build(1234, ts_us, &quotes(), &ActiveSets::default());
        let v = payload(&tick.frame);
        assert_eq!(v["type"], "ticker");
        assert_eq!(v["seq"], 1234);
        assert_eq!(v["ts_us"], ts_us);
        assert_eq!(v["data"][0]["symbol"], "BTC-USD");
        assert_eq!(v["data"][0]["price"], 42001.17);
        assert_eq!(v["data"][0]["timestamp"], 1_732_400_000);
        assert_eq!(v["data"][2]["price"], 95.0);
        assert!(UNIX_EPOCH.elapsed().is_ok());
    }

    #[test]
    fn each_active_set_gets_its_frame_with_the_same_seq_and_entries() {
        let t = SymbolTable::new(quotes().into_iter().map(|q| q.symbol));
        let registry = SetRegistry::new(8);
        let a = registry.acquire(t.resolve(["SOL-USD", "BTC-USD"]).unwrap(), None).unwrap();
        let b = registry.acquire(t.resolve(["ETH-USD"]).unwrap(), None).unwrap();
        let mut cache = ActiveCache::default();
        let tick = Tick::build(7, 1_000_000, &quotes(), registry.active(&mut cache));
        let all = payload(&tick.frame);
        let fa = payload(tick.set_frame(a.id()).unwrap());
        let fb = payload(tick.set_frame(b.id()).unwrap());
        assert_eq!(symbols(&fa), ["BTC-USD", "SOL-USD"]);
        assert_eq!(symbols(&fb), ["ETH-USD"]);
        assert_eq!(fa["seq"], 7);
        assert_eq!(fa["data"][1], all["data"][2]);
        // A loop building the same set from the entries gets the same bytes.
        assert_eq!(tick.build_for(a.members()), *tick.set_frame(a.id()).unwrap());
        assert!(tick.set_frame(99).is_none());
    }

    #[test]
    fn large_frames_use_the_long_length_forms() {
        let many: Vec<Quote> = (0..1000)
            .map(|i| Quote { symbol: format!("SYM{i}-USD"), price: 1.0 + i as f64, source: None })
            .collect();
        let tick = Tick::build(1, 2_000_000, &many, &ActiveSets::default());
        assert_eq!(symbols(&payload(&tick.frame)).len(), 1000);
        let one = tick.build_for(&[999]);
        assert_eq!(symbols(&payload(&one)), ["SYM999-USD"]);
        assert_eq!(payload(&tick.build_for(&[]))["data"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn simulated_entries_are_unchanged_and_real_ones_carry_source_ts_and_stale() {
        use crate::ticker::prices::SourceStamp;
        let entry = |source| {
            let mut out = Vec::new();
            write_entry(&mut out, &Quote { symbol: "BTC-USD".into(), price: 42001.17, source }, 7);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(entry(None), r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":7}"#);
        assert_eq!(
            entry(Some(SourceStamp { ts_ms: Some(1_700_000_000_123), stale: false })),
            r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":7,"source_ts":1700000000123,"stale":false}"#
        );
        assert_eq!(
            entry(Some(SourceStamp { ts_ms: None, stale: true })),
            r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":7,"stale":true}"#
        );
    }

    #[test]
    fn prices_print_with_at_most_two_decimals() {
        assert_eq!(Price(95.0).to_string(), "95");
        assert_eq!(Price(95.5).to_string(), "95.5");
        assert_eq!(Price(42001.17).to_string(), "42001.17");
        assert_eq!(Price(0.05).to_string(), "0.05");
    }
}
