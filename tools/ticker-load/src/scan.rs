//! Finds `seq`, `ts_us` and the `type` in a ticker message without parsing the JSON.
//!
//! The tool reads thousands of messages per millisecond; a full JSON parse per message
//! would make the generator the bottleneck. The scanner looks for the first `"seq"` and
//! `"ts_us"` keys followed by `:` and an unsigned integer, and the first `"type"` key
//! followed by `:` and a string. A message without them (a welcome, a peer server's own
//! format) is still counted, just without seq or latency.

/// What the scanner found in one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) seq: Option<u64>,
    pub(crate) ts_us: Option<u64>,
    pub(crate) kind: Kind,
}

/// The message's `type`, as far as the tool acts on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No `type`, or one the tool does not act on (`welcome`, `pong`...).
    #[default]
    Other,
    /// `"type":"ticker"`: a tick, or a snapshot.
    Ticker,
    /// `"type":"subscriptions"`: the answer to a subscription change (not a tick).
    Subscriptions,
    /// `"type":"error"`: a refused request (not a tick).
    Error,
}

/// Scans a message payload. `whole` is false when `payload` is only the start of the
/// message: then a number that runs to the end of the slice may be cut, and is ignored.
pub(crate) fn scan(payload: &[u8], whole: bool) -> Fields {
    Fields {
        seq: find_number(payload, b"\"seq\"", whole),
        ts_us: find_number(payload, b"\"ts_us\"", whole),
        kind: find_kind(payload),
    }
}

fn find_kind(hay: &[u8]) -> Kind {
    const KEY: &[u8] = b"\"type\"";
    let Some(at) = find(hay, KEY) else { return Kind::Other };
    let rest = skip_space(&hay[at + KEY.len()..]);
    let Some(rest) = rest.strip_prefix(b":") else { return Kind::Other };
    let rest = skip_space(rest);
    let value = |v: &[u8]| rest.strip_prefix(v).is_some_and(|r| r.first() == Some(&b'"'));
    if value(b"\"ticker") {
        Kind::Ticker
    } else if value(b"\"subscriptions") {
        Kind::Subscriptions
    } else if value(b"\"error") {
        Kind::Error
    } else {
        Kind::Other
    }
}

fn find_number(hay: &[u8], key: &[u8], whole: bool) -> Option<u64> {
    let at = find(hay, key)?;
    let rest = skip_space(&hay[at + key.len()..]);
    let rest = skip_space(rest.strip_prefix(b":")?);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (!whole && digits == rest.len()) {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn skip_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).count();
    &s[n..]
}

/// First index of `needle` in `hay`. The keys sit near the start of a ticker message,
/// so a first-byte search is as fast as anything cleverer here.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if hay.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticker_message_yields_seq_and_ts() {
        let msg = br#"{"type":"ticker","seq":1234,"ts_us":1732400000123456,"data":[{"symbol":"BTC-USD"}]}"#;
        assert_eq!(
            scan(msg, true),
            Fields { seq: Some(1234), ts_us: Some(1732400000123456), kind: Kind::Ticker }
        );
    }

    #[test]
    fn subscription_answers_and_errors_are_told_apart_from_ticks() {
        let kind = |m: &[u8]| scan(m, true).kind;
        assert_eq!(kind(br#"{"type":"subscriptions","symbols":["A"]}"#), Kind::Subscriptions);
        assert_eq!(kind(br#"{"type" : "error","error":"unknown symbol"}"#), Kind::Error);
        assert_eq!(kind(br#"{"type":"welcome","user_id":"u"}"#), Kind::Other);
        assert_eq!(kind(br#"{"type":"tickers"}"#), Kind::Other);
        assert_eq!(kind(br#"{"type":"ticker""#), Kind::Ticker, "a prefix is enough");
        assert_eq!(kind(br#"{"type":7,"seq":1}"#), Kind::Other);
        assert_eq!(kind(br#"{"seq":1}"#), Kind::Other);
    }

    #[test]
    fn whitespace_around_the_colon_is_allowed() {
        let msg = b"{ \"seq\" :\n 7 , \"ts_us\": 9 }";
        assert_eq!(scan(msg, true), Fields { seq: Some(7), ts_us: Some(9), kind: Kind::Other });
    }

    #[test]
    fn a_welcome_message_has_neither_field() {
        assert_eq!(scan(br#"{"type":"welcome","user_id":"user:demo"}"#, true), Fields::default());
    }

    #[test]
    fn non_numbers_and_overflow_are_ignored() {
        assert_eq!(scan(br#"{"seq":"12","ts_us":-5}"#, true), Fields::default());
        assert_eq!(scan(br#"{"seq":99999999999999999999}"#, true).seq, None);
    }

    #[test]
    fn a_number_cut_by_the_end_of_a_prefix_is_ignored() {
        assert_eq!(scan(br#"{"seq":12"#, false).seq, None);
        assert_eq!(scan(br#"{"seq":12"#, true).seq, Some(12));
        assert_eq!(scan(br#"{"seq":12,"#, false).seq, Some(12));
    }

    #[test]
    fn a_key_that_only_starts_like_seq_does_not_match() {
        assert_eq!(scan(br#"{"sequence":5,"seq":6}"#, true).seq, Some(6));
    }
}
