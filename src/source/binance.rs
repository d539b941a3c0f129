//! Binance's public market streams (`wss://stream.binance.com:9443/ws`): the `<symbol>@trade`
//! stream, subscribed with a `SUBSCRIBE` request. Pure: no I/O.
//!
//! Message shapes (from Binance's WebSocket Streams docs):
//! - trade: `{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",
//!   "T":1672515782136,"m":true,"M":true}`; `T` is the trade time in ms, `t` the trade id
//!   (increasing per symbol: used as the sequence).
//! - 24 h ticker (if a proxy sends it): `{"e":"24hrTicker","E":..,"s":"BNBBTC","c":"0.0025",..,"L":18150}`.
//! - the answer to a request: `{"result":null,"id":1}`, or `{"error":{"code":2,"msg":".."},"id":1}`.
//! - a combined stream (`/stream?streams=..`) wraps each event: `{"stream":"..","data":{..}}`.
//!
//! Liveness is WebSocket ping/pong (the server pings every 20 s; tungstenite answers), and
//! every connection is closed by Binance after 24 h.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Event, PriceUpdate, SourceError, price_str};

pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443/ws";

/// Binance ends a connection after 24 h; reconnect on our own schedule before that.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(23 * 3600 + 30 * 60);

/// Binance's symbol as its events spell it: `BTC-USD` → `BTCUSDT`. Binance has no USD
/// spot pairs; a `-USD` symbol follows the USDT pair (a stablecoin, not dollars).
pub fn symbol(base: &str, quote: &str) -> String {
    let quote = if quote.eq_ignore_ascii_case("USD") { "USDT" } else { quote };
    format!("{}{}", base.to_ascii_uppercase(), quote.to_ascii_uppercase())
}

/// `{"method":"SUBSCRIBE","params":["btcusdt@trade",..],"id":1}` (stream names are lower case).
pub fn subscribe(symbols: &[&str]) -> String {
    let streams: Vec<String> =
        symbols.iter().map(|s| format!("{}@trade", s.to_ascii_lowercase())).collect();
    serde_json::json!({"method": "SUBSCRIBE", "params": streams, "id": 1}).to_string()
}

/// A message: an event at the top level, or wrapped in `data` (combined streams), or
/// the answer to a request. One flat struct (no `flatten`, which would buffer every
/// field): unknown fields are skipped unread, strings borrow from the input.
#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    data: Option<Data<'a>>,
    e: Option<&'a str>,
    #[serde(rename = "E")]
    event_time: Option<u64>,
    s: Option<&'a str>,
    p: Option<&'a str>,
    c: Option<&'a str>,
    t: Option<u64>,
    #[serde(rename = "T")]
    trade_time: Option<u64>,
    #[serde(rename = "L")]
    last_trade: Option<u64>,
    id: Option<IgnoredAny>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct Data<'a> {
    e: Option<&'a str>,
    #[serde(rename = "E")]
    event_time: Option<u64>,
    s: Option<&'a str>,
    p: Option<&'a str>,
    c: Option<&'a str>,
    t: Option<u64>,
    #[serde(rename = "T")]
    trade_time: Option<u64>,
    #[serde(rename = "L")]
    last_trade: Option<u64>,
}

#[derive(Deserialize)]
struct ApiError {
    code: Option<i64>,
    msg: Option<String>,
}

pub fn parse(bytes: &[u8]) -> Result<Event<'_>, SourceError> {
    let m: Msg<'_> = serde_json::from_slice(bytes).map_err(SourceError::malformed)?;
    if let Some(err) = m.error {
        let reason = format!("code {}: {}", err.code.unwrap_or(0), err.msg.unwrap_or_default());
        return Ok(Event::Rejected { symbol: None, reason: Cow::Owned(reason) });
    }
    let event = m.data.unwrap_or(Data {
        e: m.e,
        event_time: m.event_time,
        s: m.s,
        p: m.p,
        c: m.c,
        t: m.t,
        trade_time: m.trade_time,
        last_trade: m.last_trade,
    });
    match event.e {
        Some("trade") => Ok(Event::Price(PriceUpdate {
            symbol: Cow::Borrowed(event.s.ok_or_else(|| missing("s"))?),
            price: price_str(event.p.ok_or_else(|| missing("p"))?)?,
            ts_ms: event.trade_time.or(event.event_time),
            seq: event.t,
        })),
        Some("24hrTicker") => Ok(Event::Price(PriceUpdate {
            symbol: Cow::Borrowed(event.s.ok_or_else(|| missing("s"))?),
            price: price_str(event.c.ok_or_else(|| missing("c"))?)?,
            ts_ms: event.event_time,
            seq: event.last_trade,
        })),
        Some(other) => Err(SourceError::Unknown(format!("event {other:?}"))),
        // `{"result":null,"id":1}`: the answer to our SUBSCRIBE.
        None if m.id.is_some() => Ok(Event::Control),
        None => Err(SourceError::Unknown("no event type".into())),
    }
}

fn missing(field: &str) -> SourceError {
    SourceError::Malformed(format!("event without {field:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trade example of Binance's WebSocket Streams documentation.
    const TRADE: &str = r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#;

    #[test]
    fn symbols_follow_the_usdt_pair_and_streams_are_lower_case() {
        assert_eq!(symbol("BTC", "USD"), "BTCUSDT");
        assert_eq!(symbol("eth", "btc"), "ETHBTC");
        let v: serde_json::Value =
            serde_json::from_str(&subscribe(&["BTCUSDT", "ETHUSDT"])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1})
        );
    }

    #[test]
    fn a_documented_trade_is_a_price_with_trade_time_and_id() {
        let Event::Price(u) = parse(TRADE.as_bytes()).unwrap() else { panic!() };
        assert_eq!((u.symbol.as_ref(), u.price), ("BNBBTC", 0.001));
        assert_eq!((u.ts_ms, u.seq), (Some(1_672_515_782_136), Some(12345)));
        let wrapped = format!(r#"{{"stream":"bnbbtc@trade","data":{TRADE}}}"#);
        let Event::Price(w) = parse(wrapped.as_bytes()).unwrap() else { panic!() };
        assert_eq!(w, u);
        let ticker = r#"{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}"#;
        let Event::Price(t) = parse(ticker.as_bytes()).unwrap() else { panic!() };
        assert_eq!((t.price, t.seq), (0.0025, Some(18150)));
    }

    #[test]
    fn answers_errors_and_junk_are_told_apart() {
        assert_eq!(parse(br#"{"result":null,"id":1}"#).unwrap(), Event::Control);
        let err = br#"{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":1}"#;
        assert!(matches!(parse(err).unwrap(), Event::Rejected { symbol: None, .. }));
        let cases: &[(&[u8], &str)] = &[
            (b"{", "malformed"),
            (br#"{"e":"trade","s":"BTCUSDT"}"#, "malformed"),
            (br#"{"e":"trade","s":"BTCUSDT","p":"0"}"#, "malformed"),
            (br#"{"e":"trade","s":"BTCUSDT","p":"1","t":-5}"#, "malformed"),
            (br#"{"e":"depthUpdate","s":"BTCUSDT"}"#, "unknown"),
            (br#"{"hello":1}"#, "unknown"),
        ];
        for (msg, label) in cases {
            let err = parse(msg).unwrap_err();
            assert_eq!(err.kind_label(), *label, "{}: {err}", String::from_utf8_lossy(msg));
        }
    }
}
