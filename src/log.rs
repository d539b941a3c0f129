//! One line per event on stderr: timestamp, level, message, then `key=value` fields (or
//! one JSON object per line with `--log-format json`).
//!
//! Never pass a token or an API key as a field; the only exception is the demo key line
//! at start. Use [`crate::auth::token::Tokens::fingerprint`] when a correlation id is
//! needed.
//!
//! Values come from outside (user ids from the database, what peers send, error text),
//! so a line never carries a character that a terminal or a log viewer would act on:
//! - text: a value with whitespace, `"`, `=`, `\`, a control character (ESC, CR, DEL,
//!   C1) or another invisible one (bidirectional overrides, ...) is quoted with Rust's
//!   escapes (`user_id="evil\u{1b}[2J"`); other values stand bare. The message gets the
//!   same escapes without quotes. One event is always one line.
//! - JSON: the same characters are written as `\uXXXX` escapes, so the line stays valid
//!   JSON and decodes to exactly the value logged.

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
        escape_json_invisibles(&serde_json::Value::Object(obj).to_string(), &mut line);
    } else {
        let _ = write!(line, "{ts} {:<5} ", level.name());
        for c in msg.chars() {
            if is_invisible(c) {
                let _ = write!(line, "{}", c.escape_debug());
            } else {
                line.push(c);
            }
        }
        for (k, v) in fields {
            let v = v.to_string();
            let bare = !v.is_empty()
                && !v.contains(|c: char| {
                    c.is_whitespace() || c == '"' || c == '=' || c == '\\' || is_invisible(c)
                });
            if bare {
                let _ = write!(line, " {k}={v}");
            } else {
                let _ = write!(line, " {k}={v:?}");
            }
        }
    }
    line.push('\n');
    line
}

/// A character a terminal or viewer may act on or hide: a control character (C0, DEL,
/// C1: ESC starts terminal sequences, CR rewrites the line) or a non-ASCII character
/// that Rust's `Debug` escapes (format characters such as bidirectional overrides,
/// line and paragraph separators, unassigned code points).
fn is_invisible(c: char) -> bool {
    c.is_control() || (!c.is_ascii() && c.escape_debug().nth(1).is_some())
}

/// Copies serde_json's output, writing the invisible characters it leaves raw (it
/// escapes only C0) as `\uXXXX`. They can only occur inside strings, where the escape
/// means the same character.
fn escape_json_invisibles(json: &str, out: &mut String) {
    for c in json.chars() {
        if !is_invisible(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
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
    fn control_characters_in_text_lines_are_escaped_and_quoted() {
        let evil = "mallory\u{1b}[2J\u{1b}]0;pwned\u{7}";
        let line = format_line(
            UNIX_EPOCH,
            Level::Info,
            "token issued\r",
            &[("user_id", &evil), ("c1", &"a\u{9b}b"), ("bidi", &"x\u{202e}y"), ("ok", &"plain")],
            false,
        );
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z INFO  token issued\\r \
             user_id=\"mallory\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\" c1=\"a\\u{9b}b\" \
             bidi=\"x\\u{202e}y\" ok=plain\n"
        );
        assert!(!line.trim_end_matches('\n').contains(|c: char| c.is_control()));
        // A backslash is quoted too, so an escape in the log always means an escape.
        let line = format_line(UNIX_EPOCH, Level::Info, "m", &[("v", &"a\\u{1b}")], false);
        assert!(
            line.ends_with(
                r#" v="a\\u{1b}"
"#
            ),
            "{line}"
        );
    }

    #[test]
    fn json_lines_escape_every_invisible_character_and_stay_valid() {
        let evil = "mallory\u{1b}[2J\u{7f}\u{9b}\u{202e}\u{2028}\u{e0001}é";
        let line = format_line(UNIX_EPOCH, Level::Info, "m\u{1b}", &[("user_id", &evil)], true);
        assert!(!line.trim_end_matches('\n').contains(is_invisible), "{line}");
        assert!(line.contains(r"\u001b[2J\u007f\u009b\u202e\u2028\udb40\udc01é"), "{line}");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!((v["user_id"].as_str(), v["msg"].as_str()), (Some(evil), Some("m\u{1b}")));
    }

    #[test]
    fn json_lines_are_one_object() {
        let line = format_line(UNIX_EPOCH, Level::Warn, "x", &[("a", &"b\"c")], true);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["a"], "b\"c");
    }
}
