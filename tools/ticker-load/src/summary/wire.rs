//! What the wire carried: bytes and messages per subscriber, and what `--deflate` and
//! `--delta` did. A subscriber is a connection the ramp opened; the bytes are every
//! byte read from the sockets in the steady window, after TLS decryption.

use super::{Summary, bytes, group};
use crate::deflate::DeflateCounters;
use crate::delta::DeltaCounters;

impl Summary {
    /// `n` (counted in the steady window) per subscriber per second.
    fn per_subscriber_per_sec(&self, n: u64) -> Option<f64> {
        (self.opened > 0 && self.steady_seconds > 0.0)
            .then(|| n as f64 / self.opened as f64 / self.steady_seconds)
    }

    pub(crate) fn bytes_per_subscriber_per_sec(&self) -> Option<f64> {
        self.per_subscriber_per_sec(self.steady_bytes?)
    }

    pub(crate) fn messages_per_subscriber_per_sec(&self) -> Option<f64> {
        self.per_subscriber_per_sec(self.steady_messages)
    }

    /// Steady-window bytes per message received (HTTP heads and control frames are in
    /// the bytes, not in the messages).
    pub(crate) fn bytes_per_message(&self) -> Option<f64> {
        let b = self.steady_bytes?;
        (self.steady_messages > 0).then(|| b as f64 / self.steady_messages as f64)
    }

    /// The `wire`, `deflate` and `delta` rows, those that apply.
    pub(super) fn wire_rows(&self, rows: &mut Vec<(&'static str, String)>) {
        if let Some(total) = self.steady_bytes {
            let or_dash = |v: Option<f64>, f: fn(f64) -> String| v.map_or("-".into(), f);
            rows.push((
                "wire",
                format!(
                    "{}/s per subscriber, {} per message, {} msgs/s per subscriber \
                     ({} read in the window)",
                    or_dash(self.bytes_per_subscriber_per_sec(), bytes),
                    or_dash(self.bytes_per_message(), |b| format!("{b:.1} B")),
                    or_dash(self.messages_per_subscriber_per_sec(), |m| format!("{m:.2}")),
                    bytes(total as f64)
                ),
            ));
        }
        if let Some(d) = &self.deflate {
            rows.push(("deflate", deflate_text(d)));
        }
        if let Some(d) = &self.delta {
            rows.push(("delta", delta_text(d)));
        }
    }
}

/// Inflated bytes per compressed payload byte; `None` before any compressed message.
pub(crate) fn ratio(d: &DeflateCounters) -> Option<f64> {
    (d.compressed_bytes > 0).then(|| d.inflated_bytes as f64 / d.compressed_bytes as f64)
}

fn deflate_text(d: &DeflateCounters) -> String {
    let answers: Vec<String> = d.accepted.iter().map(|(a, n)| format!("{a}: {n}")).collect();
    let mut text = format!(
        "accepted by {} upgrades, declined by {} (uncompressed)",
        group(d.accepted_total()),
        group(d.declined)
    );
    if !answers.is_empty() {
        text = format!("{text} [{}]", answers.join("; "));
    }
    let ratio = ratio(d).map_or_else(String::new, |r| format!(", {r:.2}:1"));
    format!(
        "{text}; {} compressed messages in the window, {} inflated to {}{ratio}",
        group(d.messages),
        bytes(d.compressed_bytes as f64),
        bytes(d.inflated_bytes as f64)
    )
}

fn delta_text(d: &DeltaCounters) -> String {
    let mut text = format!(
        "{} full, {} changes ({} heartbeats), {} chain breaks, {} unsynced after a break",
        group(d.full),
        group(d.changes),
        group(d.heartbeats),
        group(d.breaks),
        group(d.unsynced)
    );
    if d.plain > 0 {
        text = format!("{text}; {} ticker messages without \"delta\"", group(d.plain));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::empty;

    fn row(s: &Summary, label: &str) -> Option<String> {
        s.rows().into_iter().find(|(k, _)| *k == label).map(|(_, v)| v)
    }

    #[test]
    fn wire_bytes_are_per_subscriber_per_second_and_per_message() {
        let mut s = Summary { opened: 4, steady_seconds: 10.0, steady_messages: 400, ..empty() };
        assert!(row(&s, "wire").is_none(), "a file from before bytes were counted");
        s.steady_bytes = Some(40_960);
        assert_eq!(s.bytes_per_subscriber_per_sec(), Some(1024.0));
        assert_eq!(s.bytes_per_message(), Some(102.4));
        assert_eq!(s.messages_per_subscriber_per_sec(), Some(10.0));
        assert_eq!(
            row(&s, "wire").unwrap(),
            "1.0 KiB/s per subscriber, 102.4 B per message, 10.00 msgs/s per subscriber \
             (40.0 KiB read in the window)"
        );
        let none = Summary { steady_bytes: Some(0), ..empty() };
        assert_eq!(none.bytes_per_subscriber_per_sec(), None, "nothing opened");
    }

    #[test]
    fn deflate_and_delta_rows_say_what_was_negotiated_and_how_the_chain_held() {
        let mut s = empty();
        assert!(row(&s, "deflate").is_none() && row(&s, "delta").is_none());
        s.deflate = Some(DeflateCounters {
            accepted: [("permessage-deflate; server_no_context_takeover".to_string(), 3)].into(),
            declined: 1,
            messages: 10,
            compressed_bytes: 1000,
            inflated_bytes: 4000,
        });
        s.delta = Some(DeltaCounters {
            full: 2,
            changes: 30,
            heartbeats: 5,
            breaks: 1,
            unsynced: 3,
            plain: 0,
        });
        assert_eq!(
            row(&s, "deflate").unwrap(),
            "accepted by 3 upgrades, declined by 1 (uncompressed) \
             [permessage-deflate; server_no_context_takeover: 3]; 10 compressed messages in \
             the window, 1000 B inflated to 3.9 KiB, 4.00:1"
        );
        assert_eq!(
            row(&s, "delta").unwrap(),
            "2 full, 30 changes (5 heartbeats), 1 chain breaks, 3 unsynced after a break"
        );
        s.ticks = 33;
        assert!(row(&s, "ticks").unwrap().contains("seq gaps not counted"));
    }
}
