//! One line per event on stderr: timestamp, level, message, then `key=value` fields (or
//! one JSON object per line with `--log-format json`).
//!
//! Never pass a token or an API key as a field; the only exception the SPEC allows is
//! the demo key line at start. Use [`crate::auth::token::TokenStore::fingerprint`] when
//! a correlation id is needed.

use std::fmt::{self, Display, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" | "trace" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide level and format (once, at start).
pub fn init(level: Level, format: Format) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    FORMAT.store(matches!(format, Format::Json) as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one event. Use the [`info!`](crate::info) family of macros rather than this.
pub fn write(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) {
    let json = FORMAT.load(Ordering::Relaxed) == 1;
    let line = format_line(SystemTime::now(), level, msg, fields, json);
    // A failed write to stderr has nowhere better to be reported.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Formats one line (with its newline); separate from [`write`] so it can be tested.
pub fn format_line(
    at: SystemTime,
    level: Level,
    msg: &str,
    fields: &[(&str, &dyn Display)],
    json: bool,
) -> String {
    let mut line = String::with_capacity(128);
    let ts = Rfc3339(at);
    if json {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), ts.to_string().into());
        obj.insert("level".into(), level.name().to_ascii_lowercase().into());
        obj.insert("msg".into(), msg.into());
        for (k, v) in fields {
            obj.insert((*k).into(), v.to_string().into());
        }
        line.push_str(&serde_json::Value::Object(obj).to_string());
    } else {
        let _ = write!(line, "{ts} {:<5} {msg}", level.name());
        for (k, v) in fields {
            let v = v.to_string();
            let quote =
                v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=');
            if quote {
                let _ = write!(line, " {k}={v:?}");
            } else {
                let _ = write!(line, " {k}={v}");
            }
        }
    }
    line.push('\n');
    line
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-24T10:32:01.123Z`.
pub struct Rfc3339(pub SystemTime);

impl Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86400, secs % 86400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Logs an event: `info!("listening", addr = addr)`.
#[macro_export]
macro_rules! log_event {
    ($level:expr, $msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, $msg, &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*]);
        }
    };
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log_event!($crate::log::Level::Error, $($t)*) };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log_event!($crate::log::Level::Warn, $($t)*) };
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log_event!($crate::log::Level::Info, $($t)*) };
}

#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log_event!($crate::log::Level::Debug, $($t)*) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_732_400_000_123);
        assert_eq!(Rfc3339(t).to_string(), "2024-11-23T22:13:20.123Z");
        assert_eq!(Rfc3339(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn text_lines_quote_values_with_spaces() {
        let line = format_line(
            UNIX_EPOCH,
            Level::Info,
            "client left",
            &[("reason", &"going away"), ("id", &7)],
            false,
        );
        assert_eq!(line, "1970-01-01T00:00:00.000Z INFO  client left reason=\"going away\" id=7\n");
    }

    #[test]
    fn json_lines_are_one_object() {
        let line = format_line(UNIX_EPOCH, Level::Warn, "x", &[("a", &"b\"c")], true);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["a"], "b\"c");
    }
}
