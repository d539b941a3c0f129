//! The client's JSON messages on a session and the server's answers to them, apart from
//! any socket (fuzzed by `fuzz/fuzz_targets/control_message.rs`).
//!
//! - `{"type":"ping"}` → `{"type":"pong"}`
//! - `{"type":"subscribe","symbols":[..]}` / `{"type":"unsubscribe","symbols":[..]}` →
//!   `{"type":"subscriptions","symbols":[..the whole set, in display order..]}`, or
//!   `{"type":"error","error":"..","symbols":[..]}` with the session left as it was.
//! - Any other JSON, and text that is not JSON, is ignored, but still counts
//!   against the session's message rate ([`RateBudget`]).
//!
//! The full protocol is documented in `docs/asyncapi.yaml`.

use std::time::Instant;

use serde_json::{Value, json};

/// A client text message, as far as the server acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Ping,
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    /// Not JSON, or JSON the server does not act on.
    Ignored,
}

/// Why a subscription change was refused; the session keeps its previous set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionError {
    /// `symbols` missing, not a list, or holding something other than strings.
    NotAList,
    /// `subscribe` with no symbols.
    EmptyList,
    /// Names that are not configured symbols.
    UnknownSymbols(Vec<String>),
    /// The resulting set would exceed the per-session limit (`--max-session-symbols`).
    TooManySymbols(Vec<String>),
    /// The list names more entries than a session could ever hold (its length given);
    /// refused before any name is looked up.
    TooManyNames(usize),
    /// The server already serves its maximum of distinct sets.
    TooManySets(Vec<String>),
}

impl SubscriptionError {
    pub fn message(&self) -> &'static str {
        match self {
            SubscriptionError::NotAList => "symbols must be a list of symbol names",
            SubscriptionError::EmptyList => "empty symbol list",
            SubscriptionError::UnknownSymbols(_) => "unknown symbol",
            SubscriptionError::TooManySymbols(_) | SubscriptionError::TooManyNames(_) => {
                "too many symbols"
            }
            SubscriptionError::TooManySets(_) => "too many distinct symbol sets",
        }
    }

    /// The symbols the error is about (the unknown ones, or those requested).
    pub fn symbols(&self) -> &[String] {
        match self {
            SubscriptionError::NotAList
            | SubscriptionError::EmptyList
            | SubscriptionError::TooManyNames(_) => &[],
            SubscriptionError::UnknownSymbols(s)
            | SubscriptionError::TooManySymbols(s)
            | SubscriptionError::TooManySets(s) => s,
        }
    }

    /// `{"type":"error","error":"..","symbols":[..]}`.
    pub fn to_json(&self) -> Vec<u8> {
        let v = json!({ "type": "error", "error": self.message(), "symbols": self.symbols() });
        v.to_string().into_bytes()
    }
}

/// Parses one client text message. `Err` only for a `subscribe`/`unsubscribe` whose
/// `symbols` is unusable; everything the server does not act on is `Ignored`.
pub fn parse(text: &[u8]) -> Result<ClientMessage, SubscriptionError> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(text) else {
        return Ok(ClientMessage::Ignored);
    };
    let kind = map.get("type").and_then(Value::as_str);
    let subscribe = match kind {
        Some("ping") => return Ok(ClientMessage::Ping),
        Some("subscribe") => true,
        Some("unsubscribe") => false,
        _ => return Ok(ClientMessage::Ignored),
    };
    let Some(Value::Array(items)) = map.get("symbols") else {
        return Err(SubscriptionError::NotAList);
    };
    let names = items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
        .ok_or(SubscriptionError::NotAList)?;
    if subscribe && names.is_empty() {
        return Err(SubscriptionError::EmptyList);
    }
    Ok(if subscribe { ClientMessage::Subscribe(names) } else { ClientMessage::Unsubscribe(names) })
}

impl ClientMessage {
    /// The message as a client would send it (`Ignored` has no form: `None`).
    pub fn to_json(&self) -> Option<Vec<u8>> {
        let v = match self {
            ClientMessage::Ping => json!({ "type": "ping" }),
            ClientMessage::Subscribe(s) => json!({ "type": "subscribe", "symbols": s }),
            ClientMessage::Unsubscribe(s) => json!({ "type": "unsubscribe", "symbols": s }),
            ClientMessage::Ignored => return None,
        };
        Some(v.to_string().into_bytes())
    }
}

pub const PONG: &[u8] = br#"{"type":"pong"}"#;

/// `{"type":"subscriptions","symbols":[..]}`.
pub fn subscriptions<'a>(symbols: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let symbols: Vec<&str> = symbols.collect();
    json!({ "type": "subscriptions", "symbols": symbols }).to_string().into_bytes()
}

/// A token bucket of client messages: `rate` per second, bursts of up to `rate`.
#[derive(Debug, Clone)]
pub struct RateBudget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl RateBudget {
    pub fn new(rate: u32, now: Instant) -> RateBudget {
        RateBudget { rate: f64::from(rate), tokens: f64::from(rate), at: now }
    }

    /// Takes one message from the budget; `false` when the session is over its rate.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_three_messages_parse_and_round_trip() {
        for m in [
            ClientMessage::Ping,
            ClientMessage::Subscribe(vec!["BTC-USD".into(), "ETH-USD".into()]),
            ClientMessage::Unsubscribe(vec![]),
        ] {
            assert_eq!(parse(&m.to_json().unwrap()).unwrap(), m);
        }
        assert_eq!(
            parse(br#"{"symbols":["A"],"type":"subscribe","extra":1}"#).unwrap(),
            ClientMessage::Subscribe(vec!["A".into()])
        );
    }

    #[test]
    fn other_json_and_non_json_are_ignored() {
        for text in [&b"not json"[..], b"[1,2]", br#"{"type":"other"}"#, b"{}", b"\"ping\""] {
            assert_eq!(parse(text).unwrap(), ClientMessage::Ignored, "{text:?}");
        }
    }

    #[test]
    fn unusable_symbol_lists_are_errors_with_their_message() {
        for text in [
            &br#"{"type":"subscribe"}"#[..],
            br#"{"type":"subscribe","symbols":"BTC-USD"}"#,
            br#"{"type":"unsubscribe","symbols":[1]}"#,
            br#"{"type":"subscribe","symbols":{"a":1}}"#,
        ] {
            assert_eq!(parse(text).unwrap_err(), SubscriptionError::NotAList, "{text:?}");
        }
        assert_eq!(
            parse(br#"{"type":"subscribe","symbols":[]}"#).unwrap_err(),
            SubscriptionError::EmptyList
        );
        let e = SubscriptionError::UnknownSymbols(vec!["X\"Y".into()]);
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v, json!({ "type": "error", "error": "unknown symbol", "symbols": ["X\"Y"] }));
    }

    #[test]
    fn subscriptions_list_the_whole_set() {
        let v: Value = serde_json::from_slice(&subscriptions(["A", "B"].into_iter())).unwrap();
        assert_eq!(v, json!({ "type": "subscriptions", "symbols": ["A", "B"] }));
    }

    #[test]
    fn the_budget_allows_a_burst_of_rate_then_refills_over_time() {
        let t0 = Instant::now();
        let mut budget = RateBudget::new(10, t0);
        assert!((0..10).all(|_| budget.take(t0)));
        assert!(!budget.take(t0));
        assert!(budget.take(t0 + Duration::from_millis(100)));
        assert!(!budget.take(t0 + Duration::from_millis(100)));
        assert!((0..10).all(|_| budget.take(t0 + Duration::from_secs(5))));
    }
}
