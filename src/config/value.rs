//! The value parsers of the option table, and [`ValueError`]: why a value was refused.
//!
//! Rules for every message, so that a refused value can be fixed from the message alone:
//! - It names the option; the caller prefixes it (`--tick` or `TICKER_TICK`, whichever
//!   was given), so a value parser never knows which one it is.
//! - It states what is accepted in the units a user types: `between 1ms and 1h`, not
//!   Rust's `1ms..=3600s`; `16777216 bytes (16 MiB)`; keywords (`auto`, `unlimited`) too.
//! - It repeats what was given, except a secret (`TICKER_TOKEN_KEY`), whose length only
//!   is shown.
//!
//! Everything here is pure: no I/O, no environment.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Why an option's value was refused. Its `Display` is a clause that follows the
/// option's name ([`ValueError::about`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Of the right form, outside the accepted bounds (both written as a user types them).
    OutOfRange { min: String, max: String, got: String },
    /// Not of the accepted form; `what` says what is accepted.
    Expected { what: String, got: String },
    /// Refused for a reason of its own (an unreadable file, a CIDR with host bits set),
    /// said in full.
    Refused(String),
}

impl ValueError {
    /// The whole message about option `name` (`--tick`, `TICKER_TICK`).
    pub fn about(&self, name: &str) -> String {
        match self {
            ValueError::Refused(why) => format!("{name}: {why}"),
            other => format!("{name} {other}"),
        }
    }

    /// The same error with `keyword` accepted too (`auto or a whole number ...`).
    fn or_keyword(self, keyword: &str) -> ValueError {
        match self {
            ValueError::Expected { what, got } => {
                ValueError::Expected { what: format!("{keyword} or {what}"), got }
            }
            other => other,
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::OutOfRange { min, max, got } => {
                write!(f, "must be between {min} and {max}, got {got}")
            }
            ValueError::Expected { what, got } => write!(f, "expects {what} (got {got:?})"),
            ValueError::Refused(why) => f.write_str(why),
        }
    }
}

impl From<String> for ValueError {
    fn from(why: String) -> ValueError {
        ValueError::Refused(why)
    }
}

/// The units [`parse_duration`] reads, for messages.
const DURATION_UNITS: &str = "a unit: ms, s, m or h";

/// Parses `10ms`, `2s`, `5m`, `1h` (fractions too: `1.5s`). A unit is required: `10`
/// alone is ambiguous. A value too large for a [`Duration`] saturates, so that a bound
/// check calls it out of range rather than malformed.
pub fn parse_duration(v: &str) -> Result<Duration, ValueError> {
    let v = v.trim();
    let expected = || ValueError::Expected {
        what: format!("a duration with {DURATION_UNITS} (e.g. 10ms, 2s, 1h)"),
        got: v.to_owned(),
    };
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number.parse().map_err(|_| expected())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(expected()),
    };
    // `n` is made of digits and dots only: never negative or NaN, at most infinite.
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// A duration in `min..=max`.
pub fn duration_in(v: &str, min: Duration, max: Duration) -> Result<Duration, ValueError> {
    let (low, high) = (human_duration(min), human_duration(max));
    let d = parse_duration(v).map_err(|_| ValueError::Expected {
        what: format!("a duration between {low} and {high} with {DURATION_UNITS}"),
        got: v.to_owned(),
    })?;
    if d < min || d > max {
        return Err(ValueError::OutOfRange { min: low, max: high, got: v.to_owned() });
    }
    Ok(d)
}

/// `keyword` (returned as `None`), or a duration in `min..=max`.
pub(super) fn keyword_or_duration(
    v: &str,
    keyword: &str,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, ValueError> {
    if v == keyword {
        return Ok(None);
    }
    duration_in(v, min, max).map(Some).map_err(|e| e.or_keyword(keyword))
}

/// A duration as a user would type it, in the largest of [`parse_duration`]'s units
/// that writes it whole: `1h`, `90s`, `250ms`, `720h` (so never `d`, which it does not
/// read).
pub fn human_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{d:?}");
    }
    let ms = d.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// What a whole number counts, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Things (connections, threads, symbols): the bare number.
    Count,
    /// Bytes: `16777216 bytes (16 MiB)`.
    Bytes,
}

fn whole_in(v: &str, min: usize, max: usize, unit: Unit) -> Result<usize, ValueError> {
    let (low, high) = match unit {
        Unit::Count => (min.to_string(), max.to_string()),
        Unit::Bytes => (min.to_string(), human_bytes(max)),
    };
    let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    let n: usize = match v.parse() {
        Ok(n) => n,
        // Only digits, and still no usize: above any bound.
        Err(_) if digits => {
            return Err(ValueError::OutOfRange { min: low, max: high, got: v.to_owned() });
        }
        Err(_) => {
            let what = match unit {
                Unit::Count => format!("a whole number between {low} and {high}"),
                Unit::Bytes => format!("a byte count between {low} and {high}"),
            };
            return Err(ValueError::Expected { what, got: v.to_owned() });
        }
    };
    if n < min || n > max {
        return Err(ValueError::OutOfRange { min: low, max: high, got: v.to_owned() });
    }
    Ok(n)
}

/// A whole number in `min..=max`.
pub(super) fn count_in(v: &str, min: usize, max: usize) -> Result<usize, ValueError> {
    whole_in(v, min, max, Unit::Count)
}

/// A number of bytes in `min..=max`.
pub(super) fn bytes_in(v: &str, min: usize, max: usize) -> Result<usize, ValueError> {
    whole_in(v, min, max, Unit::Bytes)
}

/// `keyword` (returned as `None`), or a whole number in `min..=max`.
pub(super) fn keyword_or_count(
    v: &str,
    keyword: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ValueError> {
    if v == keyword {
        return Ok(None);
    }
    count_in(v, min, max).map(Some).map_err(|e| e.or_keyword(keyword))
}

/// `1048576 bytes (1 MiB)`; the binary unit only when it is whole.
fn human_bytes(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(size, _)| n >= *size && n.is_multiple_of(*size)) {
        Some((size, name)) => format!("{n} bytes ({} {name})", n / size),
        None => format!("{n} bytes"),
    }
}

/// A listen address: `IP:PORT`, IPv6 in brackets. A host name is refused, not
/// resolved: parsing stays free of I/O, and a name can stand for several addresses
/// (`localhost` is `::1` and `127.0.0.1`) where a listener binds one. The message
/// suggests the two usual addresses with the port that was given.
pub(super) fn listen_addr(v: &str) -> Result<SocketAddr, ValueError> {
    v.parse().map_err(|_| {
        let port = v
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .map_or_else(|| "8081".to_owned(), |p| p.to_string());
        // A name, not an IP written wrong: letters (no IPv4 has any), and no IPv6 colon
        // or bracket.
        let host = v.rsplit_once(':').map_or(v, |(h, _)| h);
        let named = host.bytes().any(|b| b.is_ascii_alphabetic()) && !host.contains([':', '[']);
        let what = format!(
            "IP:PORT, e.g. 127.0.0.1:{port} (this machine only) or 0.0.0.0:{port} (every \
             interface){}",
            if named { "; host names are not resolved" } else { "" }
        );
        ValueError::Expected { what, got: v.to_owned() }
    })
}

/// A path that is not empty.
pub(super) fn non_empty_path(v: &str) -> Result<std::path::PathBuf, ValueError> {
    if v.is_empty() {
        return Err(ValueError::Expected { what: "a path".into(), got: String::new() });
    }
    Ok(std::path::PathBuf::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_duration_below_its_range_says_the_range_in_typed_units_and_what_was_given() {
        let err = duration_in("0ms", ms(1), Duration::from_secs(3600)).unwrap_err();
        assert_eq!(err.about("--tick"), "--tick must be between 1ms and 1h, got 0ms");
    }

    #[test]
    fn a_duration_without_a_unit_names_the_units_and_the_range() {
        let err = duration_in("10", ms(100), Duration::from_secs(3600)).unwrap_err();
        assert_eq!(
            err.about("TICKER_HEAD_TIMEOUT"),
            "TICKER_HEAD_TIMEOUT expects a duration between 100ms and 1h with a unit: ms, s, m \
             or h (got \"10\")"
        );
    }

    #[test]
    fn a_duration_too_large_for_the_clock_is_out_of_range_not_malformed() {
        let err = duration_in("99999999999999999999h", ms(1), ms(10)).unwrap_err();
        assert!(matches!(err, ValueError::OutOfRange { .. }), "{err}");
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
    }

    #[test]
    fn bounds_are_written_in_the_largest_unit_that_is_whole_and_that_the_parser_reads() {
        let cases = [
            (Duration::ZERO, "0s"),
            (ms(1), "1ms"),
            (ms(250), "250ms"),
            (ms(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(30 * 86400), "720h"),
        ];
        for (d, text) in cases {
            assert_eq!(human_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
        }
    }

    #[test]
    fn a_count_out_of_range_or_malformed_says_the_range_and_what_was_given() {
        assert_eq!(
            count_in("0", 1, 256).unwrap_err().about("--workers"),
            "--workers must be between 1 and 256, got 0"
        );
        assert_eq!(
            count_in("four", 1, 256).unwrap_err().about("--workers"),
            "--workers expects a whole number between 1 and 256 (got \"four\")"
        );
        let huge = count_in("99999999999999999999999", 1, 256).unwrap_err();
        assert!(matches!(huge, ValueError::OutOfRange { .. }), "{huge}");
    }

    #[test]
    fn byte_bounds_show_the_binary_unit_when_it_is_whole() {
        assert_eq!(
            bytes_in("100", 125, 1 << 24).unwrap_err().to_string(),
            "must be between 125 and 16777216 bytes (16 MiB), got 100"
        );
        assert_eq!(human_bytes(16384), "16384 bytes (16 KiB)");
        assert_eq!(human_bytes(125), "125 bytes");
    }

    #[test]
    fn a_keyword_alternative_is_named_in_the_message() {
        assert_eq!(keyword_or_count("auto", "auto", 1, 9), Ok(None));
        assert_eq!(
            keyword_or_count("lots", "unlimited", 1, 9).unwrap_err().to_string(),
            "expects unlimited or a whole number between 1 and 9 (got \"lots\")"
        );
        let err = keyword_or_duration("soon", "auto", ms(200), ms(1000)).unwrap_err();
        assert!(err.to_string().starts_with("expects auto or a duration between 200ms and 1s"));
    }

    #[test]
    fn a_host_name_or_a_bare_port_is_refused_with_the_two_usual_addresses() {
        let err = listen_addr("localhost:8085").unwrap_err().about("--addr");
        assert_eq!(
            err,
            "--addr expects IP:PORT, e.g. 127.0.0.1:8085 (this machine only) or 0.0.0.0:8085 \
             (every interface); host names are not resolved (got \"localhost:8085\")"
        );
        let err = listen_addr(":8085").unwrap_err().about("--addr");
        assert_eq!(
            err,
            "--addr expects IP:PORT, e.g. 127.0.0.1:8085 (this machine only) or 0.0.0.0:8085 \
             (every interface) (got \":8085\")"
        );
        assert!(listen_addr("[::1]:0").is_ok());
        assert!(listen_addr("127.0.0.1").unwrap_err().to_string().contains("127.0.0.1:8081"));
    }
}
