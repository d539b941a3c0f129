//! Kraken's public WebSocket API v2 (`wss://ws.kraken.com/v2`): the `ticker` channel.
//! Pure: no I/O.
//!
//! Message shapes (from Kraken's WebSocket v2 docs):
//! - subscribe: `{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"]}}`;
//!   acknowledged per symbol: `{"method":"subscribe","result":{"channel":"ticker",
//!   "symbol":"BTC/USD",..},"success":true,..}` or `{"method":"subscribe","error":
//!   "Currency pair not supported XYZ/USD","success":false,"symbol":"XYZ/USD",..}`.
//! - prices: `{"channel":"ticker","type":"snapshot"|"update","data":[{"symbol":"ALGO/USD",
//!   "bid":0.10025,..,"last":0.10035,..,"timestamp":"2023-10-06T17:28:31.372Z"}]}`
//!   (numbers, not strings; `timestamp` only in newer versions: without it the arrival
//!   time stands in). No sequence numbers: order is the connection's.
//! - liveness: `{"channel":"heartbeat"}` about every second once subscribed;
//!   `{"channel":"status",..}` on connect; `{"method":"pong",..}` answers a ping.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Event, PriceUpdate, SourceError, parse_rfc3339_ms, positive};

pub const DEFAULT_URL: &str = "wss://ws.kraken.com/v2";

/// Kraken v2 names pairs `BTC/USD`.
pub fn symbol(base: &str, quote: &str) -> String {
    format!("{}/{}", base.to_ascii_uppercase(), quote.to_ascii_uppercase())
}

/// One request for every symbol (Kraken acknowledges each symbol on its own).
pub fn subscribe(symbols: &[&str]) -> Vec<String> {
    vec![
        serde_json::json!({
            "method": "subscribe",
            "params": {"channel": "ticker", "symbol": symbols},
        })
        .to_string(),
    ]
}

#[derive(Deserialize)]
struct Msg<'a> {
    channel: Option<&'a str>,
    method: Option<&'a str>,
    #[serde(borrow)]
    data: Option<Vec<Entry<'a>>>,
    success: Option<bool>,
    error: Option<String>,
    symbol: Option<String>,
    result: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    symbol: &'a str,
    last: f64,
    timestamp: Option<&'a str>,
}

pub fn parse(bytes: &[u8]) -> Result<Event<'_>, SourceError> {
    // Non-ticker channels carry other `data` shapes: look at the channel first.
    #[derive(Deserialize)]
    struct Head<'a> {
        channel: Option<&'a str>,
    }
    let head: Head<'_> = serde_json::from_slice(bytes).map_err(SourceError::malformed)?;
    if let Some(channel) = head.channel
        && channel != "ticker"
    {
        return match channel {
            "heartbeat" => Ok(Event::Heartbeat),
            "status" => Ok(Event::Control),
            other => Err(SourceError::Unknown(format!("channel {other:?}"))),
        };
    }
    let m: Msg<'_> = serde_json::from_slice(bytes).map_err(SourceError::malformed)?;
    if m.channel == Some("ticker") {
        let data = m.data.ok_or_else(|| SourceError::Malformed("ticker without data".into()))?;
        let mut prices = Vec::with_capacity(data.len());
        for e in data {
            let ts_ms = match e.timestamp {
                Some(t) => Some(
                    parse_rfc3339_ms(t)
                        .ok_or_else(|| SourceError::Malformed(format!("bad timestamp {t:?}")))?,
                ),
                None => None,
            };
            prices.push(PriceUpdate {
                symbol: Cow::Borrowed(e.symbol),
                price: positive(e.last)?,
                ts_ms,
                seq: None,
            });
        }
        return Ok(match prices.len() {
            1 => Event::Price(prices.remove(0)),
            _ => Event::Prices(prices),
        });
    }
    match m.method {
        Some("subscribe") if m.success == Some(false) => Ok(Event::Rejected {
            symbol: m.symbol.map(Cow::Owned),
            reason: Cow::Owned(m.error.unwrap_or_default()),
        }),
        Some("subscribe") if m.result.is_some() || m.success == Some(true) => Ok(Event::Control),
        Some("pong" | "unsubscribe") => Ok(Event::Control),
        Some(other) => Err(SourceError::Unknown(format!("method {other:?}"))),
        None => Err(SourceError::Unknown("neither channel nor method".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ticker snapshot example of Kraken's v2 docs (with the newer `timestamp`).
    const SNAPSHOT: &str = r#"{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,"bid_qty":740.0,"ask":0.10035,"ask_qty":740.0,"last":0.10035,"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,"change_pct":-0.17,"timestamp":"2023-10-06T17:28:31.372Z"}]}"#;

    #[test]
    fn the_subscribe_request_names_the_ticker_channel_and_pairs() {
        let msgs = subscribe(&["BTC/USD", "ETH/USD"]);
        let v: serde_json::Value = serde_json::from_str(&msgs[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD","ETH/USD"]}})
        );
    }

    #[test]
    fn a_documented_snapshot_is_a_price() {
        let Event::Price(u) = parse(SNAPSHOT.as_bytes()).unwrap() else { panic!() };
        assert_eq!((u.symbol.as_ref(), u.price), ("ALGO/USD", 0.10035));
        assert_eq!((u.ts_ms, u.seq), (Some(1_696_613_311_372), None));
        let two = r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","last":42000.1},{"symbol":"ETH/USD","last":2500.5}]}"#;
        let Event::Prices(v) = parse(two.as_bytes()).unwrap() else { panic!() };
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].ts_ms, None);
    }

    #[test]
    fn control_messages_and_rejections_are_recognised() {
        assert_eq!(parse(br#"{"channel":"heartbeat"}"#).unwrap(), Event::Heartbeat);
        let status = r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":12393906104898154338,"system":"online","version":"2.0.4"}]}"#;
        assert_eq!(parse(status.as_bytes()).unwrap(), Event::Control);
        let ack = r#"{"method":"subscribe","result":{"channel":"ticker","event_trigger":"trades","snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#;
        assert_eq!(parse(ack.as_bytes()).unwrap(), Event::Control);
        let nack = r#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#;
        match parse(nack.as_bytes()).unwrap() {
            Event::Rejected { symbol, .. } => assert_eq!(symbol.as_deref(), Some("XYZ/USD")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_and_unknown_messages_are_typed_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "malformed"),
            (br#"{"channel":"ticker"}"#, "malformed"),
            (br#"{"channel":"ticker","data":[{"symbol":"BTC/USD"}]}"#, "malformed"),
            (br#"{"channel":"ticker","data":[{"symbol":"BTC/USD","last":"1"}]}"#, "malformed"),
            (br#"{"channel":"ticker","data":[{"symbol":"BTC/USD","last":-1}]}"#, "malformed"),
            (br#"{"channel":"book","data":[]}"#, "unknown"),
            (br#"{"method":"edit_order"}"#, "unknown"),
            (br#"{}"#, "unknown"),
        ];
        for (msg, label) in cases {
            let err = parse(msg).unwrap_err();
            assert_eq!(err.kind_label(), *label, "{}: {err}", String::from_utf8_lossy(msg));
        }
    }
}
