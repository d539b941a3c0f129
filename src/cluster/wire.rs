//! [`TickData`]: one tick as data on the Redis channel, from which every node builds the
//! same WebSocket frame. It is not a frame itself, so the frame format can change
//! without touching what travels between nodes.
//!
//! The encoding is compact JSON, readable with `redis-cli`:
//! `{"seq":7,"ts_us":1732400000123456,"fence":3,"prices":[["BTC-USD","42001.17"]]}`.
//! Prices travel as strings holding Rust's shortest round-trip form of the `f64`, parsed
//! back with `str::parse`, which is correctly rounded: every finite price comes back
//! bit-exact, so every node formats the same bytes. (serde_json's default float parser
//! is off by one ulp for roughly one long price in ten.)
//!
//! A leader fed by an exchange (`--source`) adds `"sources":[[source_ts|null,stale],..]`,
//! one pair per price, which the followers put in their frames as they are. A simulated
//! tick has no `sources` (the same bytes as before real sources), and a tick without
//! it decodes as simulated, so older leaders' ticks still read.
//!
//! [`TickData::decode`] is a parser over bytes from the network: it returns a typed
//! [`WireError`] for anything that is not a whole tick and never panics.

use std::fmt;

use redis::{Commands, Connection, RedisResult};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::Keys;
use crate::ticker::prices::SourceStamp;

/// One tick of every symbol's price, as the leader published it.
#[derive(Debug, Clone, PartialEq)]
pub struct TickData {
    pub seq: u64,
    /// Wall-clock time of the tick, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The leader's fence when it published this tick.
    pub fence: u64,
    /// `(symbol, price)` in configured order. Prices are finite.
    pub prices: Vec<(String, f64)>,
    /// One stamp per price when the leader's prices come from an exchange; empty when
    /// simulated.
    pub sources: Vec<SourceStamp>,
}

impl TickData {
    /// Appends the encoding to `out`. Prices must be finite: a NaN or infinite price
    /// encodes, but [`TickData::decode`] rejects it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let view = WireOut {
            seq: self.seq,
            ts_us: self.ts_us,
            fence: self.fence,
            prices: PricesOut(&self.prices),
            sources: self.sources.iter().map(|s| (s.ts_ms, s.stale)).collect(),
        };
        // Cannot fail: writing to a Vec never errors and every field is an integer, a
        // string or a seq of them (no maps with non-string keys, no fallible Serialize).
        serde_json::to_writer(out, &view).expect("TickData always serializes");
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 32 * self.prices.len());
        self.encode(&mut out);
        out
    }

    /// Parses exactly one encoded tick (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<TickData, WireError> {
        let wire: WireIn = serde_json::from_slice(bytes).map_err(WireError::from_json)?;
        let mut prices = Vec::with_capacity(wire.prices.len());
        for (symbol, PriceIn(price)) in wire.prices {
            if !price.is_finite() {
                return Err(WireError::NonFinitePrice { symbol });
            }
            prices.push((symbol, price));
        }
        if !wire.sources.is_empty() && wire.sources.len() != prices.len() {
            return Err(WireError::Shape(format!(
                "{} sources for {} prices",
                wire.sources.len(),
                prices.len()
            )));
        }
        let sources =
            wire.sources.into_iter().map(|(ts_ms, stale)| SourceStamp { ts_ms, stale }).collect();
        Ok(TickData { seq: wire.seq, ts_us: wire.ts_us, fence: wire.fence, prices, sources })
    }
}

/// Why bytes are not a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end in the middle of a tick.
    Truncated,
    /// Not JSON, or JSON followed by more bytes. The detail is serde_json's message.
    Syntax(String),
    /// Well-formed JSON that is not a tick: a field missing, of the wrong type, or a
    /// price string that is not a number.
    Shape(String),
    /// A NaN or infinite price.
    NonFinitePrice { symbol: String },
}

impl WireError {
    /// A short stable label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::Syntax(_) => "syntax",
            WireError::Shape(_) => "shape",
            WireError::NonFinitePrice { .. } => "non_finite_price",
        }
    }

    fn from_json(err: serde_json::Error) -> WireError {
        use serde_json::error::Category;
        match err.classify() {
            Category::Eof => WireError::Truncated,
            Category::Syntax => WireError::Syntax(err.to_string()),
            Category::Data | Category::Io => WireError::Shape(err.to_string()),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("tick data truncated"),
            WireError::Syntax(d) => write!(f, "tick data is not JSON: {d}"),
            WireError::Shape(d) => write!(f, "tick data is not a tick: {d}"),
            WireError::NonFinitePrice { symbol } => {
                write!(f, "tick data has a non-finite price for {symbol}")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// What `{prefix}last` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum LastTick {
    /// No tick was ever published (or Redis lost its data).
    Missing,
    Found(TickData),
    /// Something that is not a tick. Kept apart from Redis errors on purpose: retrying
    /// will not fix it, so the new leader must decide (log it, start afresh).
    Corrupt(WireError),
}

/// Reads the last published tick, for a new leader to continue `seq` and prices from.
pub fn last_tick(conn: &mut Connection, prefix: &str) -> RedisResult<LastTick> {
    let bytes: Option<Vec<u8>> = conn.get(Keys::new(prefix).last)?;
    Ok(match bytes {
        None => LastTick::Missing,
        Some(bytes) => match TickData::decode(&bytes) {
            Ok(tick) => LastTick::Found(tick),
            Err(err) => LastTick::Corrupt(err),
        },
    })
}

#[derive(Serialize)]
struct WireOut<'a> {
    seq: u64,
    ts_us: u64,
    fence: u64,
    prices: PricesOut<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<(Option<u64>, bool)>,
}

/// Serializes as `[["SYM","price"],..]` without building the strings first.
struct PricesOut<'a>(&'a [(String, f64)]);

impl Serialize for PricesOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (symbol, price) in self.0 {
            seq.serialize_element(&(symbol, PriceOut(*price)))?;
        }
        seq.end()
    }
}

struct PriceOut(f64);

impl Serialize for PriceOut {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `{:?}` is the shortest string that parses back to the same bits (`42001.17`,
        // `1e-7`), unlike `{}`, which spells out every zero of 1e300.
        serializer.collect_str(&format_args!("{:?}", self.0))
    }
}

#[derive(Deserialize)]
struct WireIn {
    seq: u64,
    ts_us: u64,
    fence: u64,
    prices: Vec<(String, PriceIn)>,
    #[serde(default)]
    sources: Vec<(Option<u64>, bool)>,
}

struct PriceIn(f64);

impl<'de> Deserialize<'de> for PriceIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PriceIn, D::Error> {
        struct PriceVisitor;
        impl Visitor<'_> for PriceVisitor {
            type Value = PriceIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a price as a decimal string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PriceIn, E> {
                v.parse::<f64>()
                    .map(PriceIn)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(PriceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::lease::Lease;
    use crate::cluster::test_redis::TestRedis;

    fn tick(prices: &[(&str, f64)]) -> TickData {
        TickData {
            seq: 1234,
            ts_us: 1_732_400_000_123_456,
            fence: 3,
            prices: prices.iter().map(|(s, p)| (s.to_string(), *p)).collect(),
            sources: Vec::new(),
        }
    }

    fn assert_bit_exact(a: &TickData, b: &TickData) {
        assert_eq!((a.seq, a.ts_us, a.fence), (b.seq, b.ts_us, b.fence));
        assert_eq!(a.prices.len(), b.prices.len());
        for ((sa, pa), (sb, pb)) in a.prices.iter().zip(&b.prices) {
            assert_eq!(sa, sb);
            assert_eq!(pa.to_bits(), pb.to_bits(), "{pa:?} came back as {pb:?}");
        }
    }

    #[test]
    fn the_encoding_is_compact_readable_json() {
        let t = tick(&[("BTC-USD", 42001.17), ("SOL-USD", 95.0)]);
        assert_eq!(
            String::from_utf8(t.to_vec()).unwrap(),
            r#"{"seq":1234,"ts_us":1732400000123456,"fence":3,"prices":[["BTC-USD","42001.17"],["SOL-USD","95.0"]]}"#
        );
    }

    #[test]
    fn real_prices_carry_their_stamps_and_older_ticks_still_decode() {
        let mut t = tick(&[("BTC-USD", 42001.17), ("SOL-USD", 95.0)]);
        t.sources = vec![
            SourceStamp { ts_ms: Some(1_732_400_000_061), stale: false },
            SourceStamp { ts_ms: None, stale: true },
        ];
        let bytes = t.to_vec();
        assert!(
            String::from_utf8_lossy(&bytes)
                .ends_with(r#""sources":[[1732400000061,false],[null,true]]}"#),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(TickData::decode(&bytes).unwrap(), t);
        let old = br#"{"seq":1,"ts_us":2,"fence":3,"prices":[["A","1.5"]]}"#;
        assert_eq!(TickData::decode(old).unwrap().sources, []);
        let short = br#"{"seq":1,"ts_us":2,"fence":3,"prices":[["A","1.5"],["B","2"]],"sources":[[null,true]]}"#;
        assert_eq!(TickData::decode(short).unwrap_err().kind_label(), "shape");
    }

    #[test]
    fn encode_appends_to_what_is_already_in_the_buffer() {
        let mut out = b"prefix".to_vec();
        tick(&[("A", 1.5)]).encode(&mut out);
        assert!(out.starts_with(b"prefix{"));
        assert_eq!(TickData::decode(&out[6..]).unwrap(), tick(&[("A", 1.5)]));
    }

    #[test]
    fn prices_round_trip_bit_exactly() {
        let fixed = [
            0.01,
            1e6 + 0.07,
            42001.17,
            0.1 + 0.2,
            95.0,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            -f64::MAX,
            1e300,
            1.0 / 3.0,
            109324.41362430429, // serde_json's default parser gets this one wrong
        ];
        let t = tick(&fixed.iter().map(|p| ("X", *p)).collect::<Vec<_>>());
        assert_bit_exact(&t, &TickData::decode(&t.to_vec()).unwrap());

        // Many random prices: cents-rounded walks, arbitrary-digit prices, and raw bits.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut prices = Vec::new();
        for _ in 0..20_000 {
            let r = next();
            prices.push(((r % 10_000_000_000) as f64 / 100.0, r));
            prices.push(((r % 10_000_000_000) as f64 / 1e4 * 1.000_001, r));
            let raw = f64::from_bits(next());
            if raw.is_finite() {
                prices.push((raw, r));
            }
        }
        let t = TickData {
            seq: u64::MAX,
            ts_us: u64::MAX,
            fence: u64::MAX,
            prices: prices.iter().map(|(p, r)| (format!("S{}", r % 97), *p)).collect(),
            sources: Vec::new(),
        };
        assert_bit_exact(&t, &TickData::decode(&t.to_vec()).unwrap());
    }

    #[test]
    fn symbols_that_need_escaping_round_trip() {
        let t = tick(&[("we\"ird\\sym\u{1}", 1.0), ("ünïcode", 2.0), ("", 3.0)]);
        assert_bit_exact(&t, &TickData::decode(&t.to_vec()).unwrap());
    }

    #[test]
    fn every_truncation_of_a_tick_is_truncated_never_a_panic() {
        let bytes = tick(&[("BTC-USD", 42001.17), ("ETH-USD", 2500.5)]).to_vec();
        for n in 0..bytes.len() {
            let err = TickData::decode(&bytes[..n]).unwrap_err();
            assert_eq!(err, WireError::Truncated, "cut at {n}: {:?}", &bytes[..n]);
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "syntax"),
            (b"\xff\xfe\x00", "syntax"),
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[]}x"#, "syntax"),
            (b"[]", "shape"),
            (b"null", "shape"),
            (b"{}", "shape"),
            (br#"{"seq":-1,"ts_us":0,"fence":0,"prices":[]}"#, "shape"),
            (br#"{"seq":1.5,"ts_us":0,"fence":0,"prices":[]}"#, "shape"),
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[["A",1.5]]}"#, "shape"),
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[["A","1.5x"]]}"#, "shape"),
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[["A"]]}"#, "shape"),
            // serde_json reports a long tuple as trailing characters inside the array.
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[["A","1","2"]]}"#, "syntax"),
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[["A","NaN"]]}"#, "non_finite_price"),
            (br#"{"seq":1,"ts_us":0,"fence":0,"prices":[["A","-inf"]]}"#, "non_finite_price"),
        ];
        for (bytes, label) in cases {
            let err = TickData::decode(bytes).unwrap_err();
            assert_eq!(err.kind_label(), *label, "{}: {err}", String::from_utf8_lossy(bytes));
        }
        // Pseudo-random bytes, and random single-byte corruptions of a valid tick.
        let valid = tick(&[("BTC-USD", 42001.17)]).to_vec();
        let mut x: u64 = 99;
        for _ in 0..5_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (x >> 58) as usize;
            let noise: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = TickData::decode(&noise);
            let mut bent = valid.clone();
            bent[(x >> 33) as usize % valid.len()] = (x >> 17) as u8;
            let _ = TickData::decode(&bent);
        }
    }

    #[test]
    fn last_tick_reads_what_the_leader_published() {
        let Some(server) = TestRedis::start() else { return };
        let mut conn = server.conn();
        assert_eq!(last_tick(&mut conn, "t:").unwrap(), LastTick::Missing);

        let lease = Lease::new("t:", "a".into(), std::time::Duration::from_secs(5));
        let fence = match lease.try_acquire_or_renew(&mut conn, std::time::Instant::now()) {
            Ok(crate::cluster::lease::LeaseState::Leader { fence, .. }) => fence,
            other => panic!("{other:?}"),
        };
        let t = TickData { fence, ..tick(&[("BTC-USD", 42001.17), ("ETH-USD", 2500.03)]) };
        assert!(lease.publish_tick(&mut conn, fence, "t:ticks", &t.to_vec()).unwrap());
        match last_tick(&mut conn, "t:").unwrap() {
            LastTick::Found(got) => assert_bit_exact(&t, &got),
            other => panic!("{other:?}"),
        }

        redis::cmd("SET").arg("t:last").arg(r#"{"seq":"#).exec(&mut conn).unwrap();
        assert_eq!(last_tick(&mut conn, "t:").unwrap(), LastTick::Corrupt(WireError::Truncated));
    }
}
