//! Coinbase Exchange's public feed (`wss://ws-feed.exchange.coinbase.com`): the `ticker`
//! channel for prices and the `heartbeat` channel for liveness. Pure: builds the
//! subscribe request and parses messages over bytes, no I/O.
//!
//! Message shapes (from Coinbase's WebSocket channel docs):
//! - `{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22",
//!   ...,"time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.43"}`;
//!   `sequence` grows per product but is not contiguous (gaps are normal).
//! - `{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",
//!   "time":"2014-11-07T08:19:28.464459Z"}`, one per product per second.
//! - `{"type":"subscriptions","channels":[..]}` acknowledges a subscribe.
//! - `{"type":"error","message":"Failed to subscribe","reason":"X-Y is not a valid product"}`:
//!   one unknown product fails the whole request.

use std::borrow::Cow;

use serde::Deserialize;

use super::{Event, PriceUpdate, SourceError, parse_rfc3339_ms, price_str};

pub const DEFAULT_URL: &str = "wss://ws-feed.exchange.coinbase.com";

/// Coinbase names products as we do: `BTC-USD`.
pub fn symbol(base: &str, quote: &str) -> String {
    format!("{}-{}", base.to_ascii_uppercase(), quote.to_ascii_uppercase())
}

/// `{"type":"subscribe","product_ids":[..],"channels":["ticker","heartbeat"]}`.
pub fn subscribe(products: &[&str]) -> String {
    serde_json::json!({
        "type": "subscribe",
        "product_ids": products,
        "channels": ["ticker", "heartbeat"],
    })
    .to_string()
}

/// Every field any message we read may have; unknown fields are skipped unread. The hot
/// fields borrow from the input (they never hold JSON escapes; one that does is
/// malformed).
#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    product_id: Option<&'a str>,
    price: Option<&'a str>,
    time: Option<&'a str>,
    sequence: Option<u64>,
    message: Option<String>,
    reason: Option<String>,
}

pub fn parse(bytes: &[u8]) -> Result<Event<'_>, SourceError> {
    let m: Msg<'_> = serde_json::from_slice(bytes).map_err(SourceError::malformed)?;
    let kind = m.kind.ok_or_else(|| SourceError::Malformed("no \"type\"".into()))?;
    match kind {
        "ticker" => {
            let symbol = m.product_id.ok_or_else(|| missing("product_id"))?;
            let price = price_str(m.price.ok_or_else(|| missing("price"))?)?;
            let ts_ms = match m.time {
                Some(t) => Some(parse_rfc3339_ms(t).ok_or_else(|| bad("time", t))?),
                None => None,
            };
            Ok(Event::Price(PriceUpdate {
                symbol: Cow::Borrowed(symbol),
                price,
                ts_ms,
                seq: m.sequence,
            }))
        }
        "heartbeat" => Ok(Event::Heartbeat),
        "subscriptions" => Ok(Event::Control),
        "error" => {
            let reason = m.reason.or(m.message).unwrap_or_default();
            let symbol = reason
                .strip_suffix(" is not a valid product")
                .map(|s| Cow::Owned(s.trim().to_owned()));
            Ok(Event::Rejected { symbol, reason: Cow::Owned(reason) })
        }
        other => Err(SourceError::Unknown(format!("type {other:?}"))),
    }
}

fn missing(field: &str) -> SourceError {
    SourceError::Malformed(format!("ticker without {field}"))
}

fn bad(field: &str, v: &str) -> SourceError {
    SourceError::Malformed(format!("bad {field} {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ticker example of Coinbase's channel documentation.
    pub(crate) const TICKER: &str = r#"{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}"#;

    #[test]
    fn the_subscribe_request_asks_for_ticker_and_heartbeat() {
        let v: serde_json::Value =
            serde_json::from_str(&subscribe(&["BTC-USD", "ETH-USD"])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["ticker","heartbeat"]})
        );
    }

    #[test]
    fn a_documented_ticker_is_a_price_with_time_and_sequence() {
        let Event::Price(u) = parse(TICKER.as_bytes()).unwrap() else { panic!() };
        assert_eq!(u.symbol, "ETH-USD");
        assert!(matches!(u.symbol, Cow::Borrowed(_)), "no allocation for the symbol");
        assert_eq!(u.price, 1285.22);
        assert_eq!(u.ts_ms, Some(1_666_222_102_061));
        assert_eq!(u.seq, Some(37_475_248_783));
    }

    #[test]
    fn heartbeats_acks_and_errors_are_recognised() {
        let hb = r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#;
        assert_eq!(parse(hb.as_bytes()).unwrap(), Event::Heartbeat);
        let ack =
            r#"{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]}]}"#;
        assert_eq!(parse(ack.as_bytes()).unwrap(), Event::Control);
        let err = r#"{"type":"error","message":"Failed to subscribe","reason":"FOO-USD is not a valid product"}"#;
        match parse(err.as_bytes()).unwrap() {
            Event::Rejected { symbol, .. } => assert_eq!(symbol.as_deref(), Some("FOO-USD")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_and_unknown_messages_are_typed_errors() {
        let cases: &[(&str, &str)] = &[
            ("not json", "malformed"),
            ("[]", "malformed"),
            ("{}", "malformed"),
            (r#"{"type":"ticker","product_id":"BTC-USD"}"#, "malformed"),
            (r#"{"type":"ticker","product_id":"BTC-USD","price":"abc"}"#, "malformed"),
            (r#"{"type":"ticker","product_id":"BTC-USD","price":"-1"}"#, "malformed"),
            (r#"{"type":"ticker","product_id":"BTC-USD","price":"NaN"}"#, "malformed"),
            (
                r#"{"type":"ticker","product_id":"BTC-USD","price":"1","time":"yesterday"}"#,
                "malformed",
            ),
            (r#"{"type":"ticker","product_id":"BTC-USD","price":1}"#, "malformed"),
            (r#"{"type":"l2update","product_id":"BTC-USD","changes":[]}"#, "unknown"),
        ];
        for (msg, label) in cases {
            assert_eq!(parse(msg.as_bytes()).unwrap_err().kind_label(), *label, "{msg}");
        }
        for n in 0..TICKER.len() {
            assert!(parse(&TICKER.as_bytes()[..n]).is_err());
        }
    }
}
