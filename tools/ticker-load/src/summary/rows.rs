//! The summary in words: one (label, text) row per figure, for the table on stdout and
//! the report. Which rows appear depends on the run: the storm line only for a fast ramp
//! or a slow server, churn rows only with `--churn`, subscription rows only with
//! `--subscribe` or `--subscribe-random`, server rows only with `--server-pid`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Churn, Subscriptions, Summary, bytes, group};
use crate::run::SATURATED;
use crate::stats::{Percentiles, fmt_us};

/// Above this ramp rate the storm line is always shown.
const STORM_RAMP: f64 = 1000.0;
/// Or when the ramp took this much longer than planned.
const STORM_OVER_PLAN: f64 = 1.2;

impl Summary {
    /// Whether the table shows the storm line: a ramp of [`STORM_RAMP`] or more, or one
    /// the server took more than [`STORM_OVER_PLAN`] times the plan to open.
    pub(crate) fn storm_shown(&self) -> bool {
        self.storm.ramp_per_sec >= STORM_RAMP
            || self.live_after().is_some_and(|t| t > STORM_OVER_PLAN * self.planned_ramp())
    }

    /// Rows of (label, value) for the table and the report.
    pub(crate) fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            (
                "connections",
                format!(
                    "{} opened of {} ({} failed, {} dropped, {} closed cleanly)",
                    self.opened,
                    self.connections,
                    self.failed_total(),
                    self.dropped_total(),
                    self.closed_clean
                ),
            ),
            ("ramp", format!("{:.1} s until every connection opened or failed", self.ramp_seconds)),
        ];
        if self.storm_shown() {
            rows.push(("storm", self.storm_text()));
        }
        if !self.failed.is_empty() {
            rows.push(("failed", reasons(&self.failed)));
        }
        if !self.dropped.is_empty() {
            rows.push(("dropped", reasons(&self.dropped)));
        }
        rows.push(("handshake", percentiles(&self.hists.handshake.summary())));
        rows.push(("steady window", format!("{:.1} s", self.steady_seconds)));
        rows.push((
            "messages",
            format!(
                "{} in window, {} msgs/s ({} in all, {})",
                group(self.steady_messages),
                group(self.messages_per_sec.round() as u64),
                group(self.messages_total),
                bytes(self.bytes_total as f64)
            ),
        ));
        rows.push((
            "ticks",
            match self.delivered_percent() {
                None if self.delta.is_some() => format!(
                    "{} received; seq gaps not counted in a delta session (see delta)",
                    group(self.ticks)
                ),
                Some(d) => format!(
                    "{} received, {} missed ({d:.3}% delivered), {} repeats, {} out of order",
                    group(self.ticks),
                    group(self.missed),
                    self.repeats,
                    self.backwards
                ),
                None => "no seq in the messages: gaps not checked".to_string(),
            },
        ));
        if let Some(sub) = &self.subscription {
            subscription_rows(sub, self.delta.is_some(), &mut rows);
        }
        self.wire_rows(&mut rows);
        rows.push(("tick latency", percentiles(&self.hists.tick.summary())));
        rows.push(("fairness", self.fairness_text()));
        if let Some(churn) = &self.churn {
            self.churn_rows(churn, &mut rows);
        }
        if let Some(s) = &self.server {
            rows.push((
                "server cpu",
                format!(
                    "{:.2} cores; {} per million delivered frames ({} per frame)",
                    s.cpu_cores,
                    s.cpu_s_per_million_frames.map_or("-".into(), |v| format!("{v:.2} s")),
                    s.cpu_s_per_million_frames.map_or("-".into(), |v| format!("{v:.2} µs")),
                ),
            ));
            rows.push((
                "server rss",
                format!(
                    "{} before, {} at window start, {} at end; {} per connection",
                    bytes(s.rss_baseline as f64),
                    bytes(s.rss_start as f64),
                    bytes(s.rss_end as f64),
                    s.rss_per_connection.map_or("-".into(), bytes)
                ),
            ));
        }
        rows.push((
            "load tool cpu",
            format!(
                "{:.2} cores with {} thread(s); busiest thread {:.0}% of a core{}",
                self.tool_cores,
                self.threads,
                self.tool_thread_core_max * 100.0,
                if self.tool_thread_core_max >= SATURATED { " (SATURATED)" } else { "" }
            ),
        ));
        rows
    }

    fn storm_text(&self) -> String {
        let plan = format!(
            "planned {:.2} s at {}/s",
            self.planned_ramp(),
            group(self.storm.ramp_per_sec.round() as u64)
        );
        let over = |t: f64| {
            let planned = self.planned_ramp();
            if planned > 0.0 {
                format!(", {:+.0} %", (t / planned - 1.0) * 100.0)
            } else {
                String::new()
            }
        };
        match (self.all_live_after(), self.live_after()) {
            (Some(t), _) => {
                format!("all {} live after {t:.2} s ({plan}{})", self.connections, over(t))
            }
            (None, Some(t)) => format!(
                "{} of {} live after {t:.2} s ({plan}); {} never opened",
                self.opened,
                self.connections,
                self.connections.saturating_sub(self.opened)
            ),
            (None, None) => format!("no connection opened ({plan})"),
        }
    }

    fn fairness_text(&self) -> String {
        match self.fairness() {
            Some(f) => format!(
                "per-connection median tick latency: best {}, median {}, worst {}; worst − best {} \
                 ({} connections)",
                fmt_us(f.best),
                fmt_us(f.median),
                fmt_us(f.worst),
                fmt_us(f.spread()),
                group(f.connections)
            ),
            None => {
                format!("no connection had {} ticks in the window", crate::fairness::MIN_SAMPLES)
            }
        }
    }

    fn churn_rows(&self, c: &Churn, rows: &mut Vec<(&'static str, String)>) {
        let mut text = format!(
            "{}/s in the window: {} closed and reopened; {} open again, {} failed",
            c.per_sec,
            group(c.closes),
            group(c.reconnected),
            c.failed_total()
        );
        if c.unfinished > 0 {
            let _ = write!(text, ", {} still opening at the end", c.unfinished);
        }
        if c.close_timeouts > 0 {
            let _ = write!(text, "; {} closes unanswered", c.close_timeouts);
        }
        if c.skipped > 0 {
            let _ = write!(text, "; {} skipped (nothing open)", c.skipped);
        }
        rows.push(("churn", text));
        if !c.failed.is_empty() {
            rows.push(("churn failed", reasons(&c.failed)));
        }
        rows.push(("reconnect", percentiles(&self.hists.reconnect.summary())));
        if self.hists.token.count() > 0 {
            rows.push(("token", percentiles(&self.hists.token.summary())));
        }
    }
}

/// The mode and the distinct sets; per `--subscribe` set its connections and ticks; the
/// refused `subscribe` messages.
/// In a delta session (`delta`) a set's delivered % is not known from seq gaps.
fn subscription_rows(sub: &Subscriptions, delta: bool, rows: &mut Vec<(&'static str, String)>) {
    let text = match sub.k {
        Some(k) => {
            let of = sub.symbols.map_or_else(String::new, |n| format!(" of {n}"));
            let seed = sub.seed.map_or_else(String::new, |s| format!(" (seed {s})"));
            format!(
                "random {k}{of} symbols per connection{seed}: {} subscribed, {} distinct {}",
                group(sub.subscribed),
                group(sub.distinct_sets),
                if sub.distinct_sets == 1 { "set" } else { "sets" }
            )
        }
        None => format!(
            "{} --subscribe {}, {} distinct in use; {} connections opened on them",
            sub.sets.len(),
            if sub.sets.len() == 1 { "set" } else { "sets" },
            group(sub.distinct_sets),
            group(sub.subscribed)
        ),
    };
    let refused = sub.refused_total();
    let text = if refused > 0 { format!("{text}, {} refused", group(refused)) } else { text };
    rows.push(("subscription", text));
    if !sub.sets.is_empty() {
        let sets: Vec<String> = sub
            .sets
            .iter()
            .map(|s| {
                let delivered = s
                    .delivered_percent()
                    .filter(|_| !delta)
                    .map_or_else(String::new, |d| format!(" ({d:.3}%)"));
                format!(
                    "{}: {} conn, {} ticks{delivered}",
                    s.symbols.join(","),
                    group(s.connections),
                    group(s.ticks)
                )
            })
            .collect();
        rows.push(("per set", sets.join("; ")));
    }
    if !sub.refused.is_empty() {
        rows.push(("not subscribed", reasons(&sub.refused)));
    }
}

fn percentiles(p: &Percentiles) -> String {
    let f = |v: Option<u64>| v.map_or_else(|| "-".to_string(), fmt_us);
    if p.count == 0 {
        return "no samples".to_string();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        f(p.p50),
        f(p.p90),
        f(p.p99),
        f(p.p999),
        f(p.max),
        group(p.count)
    )
}

fn reasons(items: &BTreeMap<String, u64>) -> String {
    items.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::empty;
    use crate::summary::{SetFigures, Storm};

    fn row(s: &Summary, label: &str) -> Option<String> {
        s.rows().into_iter().find(|(k, _)| *k == label).map(|(_, v)| v)
    }

    #[test]
    fn fairness_is_the_spread_of_the_connections_medians() {
        let mut s = empty();
        assert_eq!(s.fairness(), None);
        assert!(row(&s, "fairness").unwrap().contains("no connection had"));
        for us in [1100, 1200, 1250, 1900] {
            s.hists.conn_median.record(us);
        }
        let f = s.fairness().unwrap();
        assert_eq!(
            (f.connections, f.best, f.median, f.worst, f.spread()),
            (4, 1100, 1200, 1900, 800)
        );
        let text = row(&s, "fairness").unwrap();
        assert!(
            text.contains("best 1.10 ms, median 1.20 ms, worst 1.90 ms; worst − best 800 µs"),
            "{text}"
        );
        let curve = s.fairness_curve();
        assert_eq!(curve.first(), Some(&(0.0, 1100)));
        assert_eq!(curve.last(), Some(&(100.0, 1900)));
    }

    #[test]
    fn the_storm_line_shows_for_fast_ramps_and_slow_servers_only() {
        let at = |rate, first, last| Summary {
            connections: 1000,
            opened: 1000,
            storm: Storm { ramp_per_sec: rate, first_connect: Some(first), last_open: Some(last) },
            ..empty()
        };
        // 1000 at 500/s: planned 2 s; done in 2.3 s (+15 %): not shown.
        assert!(!at(500.0, 0.0, 2.3).storm_shown());
        assert!(row(&at(500.0, 0.0, 2.3), "storm").is_none());
        // +25 %: shown.
        let slow = at(500.0, 0.0, 2.5);
        assert_eq!(
            row(&slow, "storm").unwrap(),
            "all 1000 live after 2.50 s (planned 2.00 s at 500/s, +25 %)"
        );
        // 1000/s or more: always shown.
        let fast = at(1000.0, 0.1, 1.0);
        assert_eq!(fast.all_live_after(), Some(0.9));
        assert!(row(&fast, "storm").unwrap().starts_with("all 1000 live after 0.90 s"));
        let short = Summary { opened: 900, ..at(2000.0, 0.0, 3.0) };
        assert_eq!(short.all_live_after(), None);
        assert!(row(&short, "storm").unwrap().starts_with("900 of 1000 live after 3.00 s"));
    }

    #[test]
    fn churn_is_reported_apart_and_its_failures_count_as_errors() {
        let mut s = Summary { dropped: [("reset".to_string(), 1)].into(), ..empty() };
        assert_eq!(s.errors(), 1);
        assert!(row(&s, "churn").is_none());
        s.churn = Some(Churn {
            per_sec: 20.0,
            closes: 100,
            closed_clean: 99,
            close_timeouts: 1,
            reconnects: 100,
            reconnected: 97,
            failed: [("token exchange: http status 503".to_string(), 2)].into(),
            unfinished: 1,
            skipped: 0,
        });
        s.hists.reconnect.record(3000);
        assert_eq!(s.errors(), 3);
        let text = row(&s, "churn").unwrap();
        assert!(
            text.starts_with(
                "20/s in the window: 100 closed and reopened; 97 open again, 2 failed"
            ),
            "{text}"
        );
        assert!(text.contains("1 still opening") && text.contains("1 closes unanswered"), "{text}");
        assert_eq!(row(&s, "churn failed").unwrap(), "token exchange: http status 503: 2");
        assert!(row(&s, "reconnect").unwrap().starts_with("p50 3.00 ms"));
        assert!(row(&s, "token").is_none(), "no token exchange without an API key");
    }

    #[test]
    fn subscriptions_show_the_mode_the_distinct_sets_and_each_sets_ticks() {
        let s = empty();
        assert!(row(&s, "subscription").is_none(), "every symbol: nothing to say");
        let set = |symbols: &[&str], connections, ticks, missed| SetFigures {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            connections,
            ticks,
            missed,
        };
        let sets =
            vec![set(&["A", "B"], 2, 990, 10), set(&["B", "A"], 1, 500, 0), set(&["C"], 0, 0, 0)];
        let s = Summary {
            subscription: Some(Subscriptions {
                mode: "sets".into(),
                k: None,
                seed: None,
                symbols: None,
                subscribed: 3,
                distinct_sets: crate::summary::distinct_sets(&sets),
                refused: BTreeMap::new(),
                sets,
            }),
            ..empty()
        };
        assert_eq!(
            row(&s, "subscription").unwrap(),
            "3 --subscribe sets, 1 distinct in use; 3 connections opened on them"
        );
        assert_eq!(
            row(&s, "per set").unwrap(),
            "A,B: 2 conn, 990 ticks (99.000%); B,A: 1 conn, 500 ticks (100.000%); C: 0 conn, 0 ticks"
        );
        assert!(row(&s, "not subscribed").is_none());

        let s = Summary {
            subscription: Some(Subscriptions {
                mode: "random".into(),
                k: Some(5),
                seed: Some(42),
                symbols: Some(30),
                subscribed: 4,
                distinct_sets: 4,
                refused: [("subscribe refused: too many symbols".to_string(), 1)].into(),
                sets: Vec::new(),
            }),
            ..empty()
        };
        assert_eq!(
            row(&s, "subscription").unwrap(),
            "random 5 of 30 symbols per connection (seed 42): 4 subscribed, 4 distinct sets, 1 refused"
        );
        assert!(row(&s, "per set").is_none());
        assert_eq!(row(&s, "not subscribed").unwrap(), "subscribe refused: too many symbols: 1");
        assert_eq!(s.errors(), 1, "a refused subscribe is an error");
    }
}
