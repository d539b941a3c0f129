//! The run's figures, derived once from the raw measurements (or read back from saved
//! runs, see [`crate::json`] and [`crate::merge`]), and the table on stdout; [`rows`]
//! words each figure for the table and the report. Every percentile is read from a
//! histogram the summary holds, so a merged summary's percentiles come from the merged
//! histograms, never from averaging.

mod rows;
mod wire;

pub(crate) use wire::ratio;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::args::{Args, Auth};
use crate::deflate::DeflateCounters;
use crate::delta::DeltaCounters;
use crate::run::{RunOutput, Second, ServerUsage};
use crate::stats::{ChurnCounters, Counters, Hists, Latency, Reason, SubscribeCounters};
use crate::subscribe::Subscription;

/// Everything reported about a run, in final units.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// The run's parameters as text; the URLs come first (as `url`, or `urls` when
    /// there are several, separated by spaces).
    pub(crate) params: Vec<(String, String)>,
    /// Every `--url`, as WebSocket URLs, in the order given.
    pub(crate) urls: Vec<String>,
    pub(crate) connections: u64,
    pub(crate) attempted: u64,
    pub(crate) opened: u64,
    pub(crate) failed: BTreeMap<String, u64>,
    pub(crate) dropped: BTreeMap<String, u64>,
    pub(crate) closed_clean: u64,
    pub(crate) ramp_seconds: f64,
    pub(crate) storm: Storm,
    pub(crate) steady_seconds: f64,
    pub(crate) messages_total: u64,
    pub(crate) bytes_total: u64,
    /// Bytes read in the steady window; `None` in files from before it was counted.
    pub(crate) steady_bytes: Option<u64>,
    pub(crate) steady_messages: u64,
    pub(crate) messages_per_sec: f64,
    pub(crate) ticks: u64,
    pub(crate) missed: u64,
    pub(crate) repeats: u64,
    pub(crate) backwards: u64,
    /// `None` without `--churn`.
    pub(crate) churn: Option<Churn>,
    /// `None` without `--subscribe` or `--subscribe-random` (every symbol).
    pub(crate) subscription: Option<Subscriptions>,
    /// `None` without `--deflate`.
    pub(crate) deflate: Option<DeflateCounters>,
    /// `None` without `--delta`.
    pub(crate) delta: Option<DeltaCounters>,
    pub(crate) hists: Hists,
    pub(crate) server: Option<ServerFigures>,
    pub(crate) tool_cores: f64,
    pub(crate) tool_thread_core_max: f64,
    pub(crate) threads: u64,
    pub(crate) interrupted: bool,
    pub(crate) warnings: Vec<String>,
    pub(crate) timeline: Vec<Second>,
    /// Steady window in seconds from the start; `None` if it never opened.
    pub(crate) window: Option<(f64, f64)>,
}

/// The ramp as a connection storm: when it started and when its last connection opened,
/// in seconds from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Storm {
    pub(crate) ramp_per_sec: f64,
    pub(crate) first_connect: Option<f64>,
    pub(crate) last_open: Option<f64>,
}

/// `--churn` figures; reasons as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Churn {
    pub(crate) per_sec: f64,
    pub(crate) closes: u64,
    pub(crate) closed_clean: u64,
    pub(crate) close_timeouts: u64,
    pub(crate) reconnects: u64,
    pub(crate) reconnected: u64,
    pub(crate) failed: BTreeMap<String, u64>,
    pub(crate) unfinished: u64,
    pub(crate) skipped: u64,
}

impl Churn {
    fn new(per_sec: f64, c: &ChurnCounters) -> Churn {
        Churn {
            per_sec,
            closes: c.closes,
            closed_clean: c.closed_clean,
            close_timeouts: c.close_timeouts,
            reconnects: c.reconnects,
            reconnected: c.reconnected,
            failed: by_text(&c.failed),
            unfinished: c.unfinished,
            skipped: c.skipped,
        }
    }

    pub(crate) fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// What `--subscribe` or `--subscribe-random` did; reasons as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscriptions {
    /// `sets` (`--subscribe`) or `random` (`--subscribe-random`).
    pub(crate) mode: String,
    /// `--subscribe-random`: K, the seed, and the most symbols a first ticker message
    /// listed (`None` if none did).
    pub(crate) k: Option<u64>,
    pub(crate) seed: Option<u64>,
    pub(crate) symbols: Option<u64>,
    /// Connections the server gave their set: opened with `?symbols=` (ramp and churn
    /// reconnects), or whose `subscribe` it answered.
    pub(crate) subscribed: u64,
    /// Distinct sets among those (a set is the same in any order).
    pub(crate) distinct_sets: u64,
    /// `subscribe` messages refused (or not sent: no symbols to pick from), by reason.
    pub(crate) refused: BTreeMap<String, u64>,
    /// `--subscribe`: each set in the order given, with its connections and ticks.
    pub(crate) sets: Vec<SetFigures>,
}

/// One `--subscribe` set: connections opened with it, and their steady-window ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SetFigures {
    pub(crate) symbols: Vec<String>,
    pub(crate) connections: u64,
    pub(crate) ticks: u64,
    pub(crate) missed: u64,
}

impl SetFigures {
    pub(crate) fn delivered_percent(&self) -> Option<f64> {
        delivered(self.ticks, self.missed)
    }
}

impl Subscriptions {
    fn new(subscription: &Subscription, c: &SubscribeCounters) -> Option<Subscriptions> {
        let refused = by_text(&c.refused);
        match subscription {
            Subscription::All => None,
            Subscription::Sets(sets) => {
                let sets: Vec<SetFigures> = sets
                    .iter()
                    .enumerate()
                    .map(|(i, set)| {
                        let n = c.sets.get(i).copied().unwrap_or_default();
                        SetFigures {
                            symbols: set.symbols.clone(),
                            connections: n.opened,
                            ticks: n.ticks,
                            missed: n.missed,
                        }
                    })
                    .collect();
                Some(Subscriptions {
                    mode: subscription.mode().to_string(),
                    k: None,
                    seed: None,
                    symbols: None,
                    subscribed: sets.iter().map(|s| s.connections).sum(),
                    distinct_sets: distinct_sets(&sets),
                    refused,
                    sets,
                })
            }
            Subscription::Random { k, seed } => Some(Subscriptions {
                mode: subscription.mode().to_string(),
                k: Some(*k as u64),
                seed: Some(*seed),
                symbols: (c.symbols_seen > 0).then_some(c.symbols_seen),
                subscribed: c.accepted,
                distinct_sets: c.distinct.len() as u64,
                refused,
                sets: Vec::new(),
            }),
        }
    }

    pub(crate) fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// How many of `sets` had a connection, counting a set once in any order.
pub(crate) fn distinct_sets(sets: &[SetFigures]) -> u64 {
    let used: BTreeSet<Vec<&str>> = sets
        .iter()
        .filter(|s| s.connections > 0)
        .map(|s| {
            let mut names: Vec<&str> = s.symbols.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            names
        })
        .collect();
    used.len() as u64
}

/// Received / (received + missed), in percent; `None` when nothing was expected.
fn delivered(ticks: u64, missed: u64) -> Option<f64> {
    let expected = ticks + missed;
    (expected > 0).then(|| ticks as f64 * 100.0 / expected as f64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ServerFigures {
    pub(crate) pid: u32,
    pub(crate) cpu_seconds: f64,
    pub(crate) cpu_cores: f64,
    pub(crate) cpu_s_per_million_frames: Option<f64>,
    pub(crate) rss_baseline: u64,
    pub(crate) rss_start: u64,
    pub(crate) rss_end: u64,
    pub(crate) rss_per_connection: Option<f64>,
}

/// The spread of the connections' own median tick latencies, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fairness {
    pub(crate) connections: u64,
    pub(crate) best: u64,
    pub(crate) median: u64,
    pub(crate) worst: u64,
}

impl Fairness {
    pub(crate) fn spread(&self) -> u64 {
        self.worst - self.best
    }
}

impl ServerFigures {
    /// `--server-pid`'s readings around the steady window of `steady_seconds`, per
    /// frame the connections got (`c`) and per connection opened.
    fn new(s: &ServerUsage, steady_seconds: f64, c: &Counters) -> ServerFigures {
        let cpu_seconds = s.end.cpu.saturating_sub(s.start.cpu).as_secs_f64();
        ServerFigures {
            pid: s.pid,
            cpu_seconds,
            cpu_cores: if steady_seconds > 0.0 { cpu_seconds / steady_seconds } else { 0.0 },
            cpu_s_per_million_frames: (c.steady_messages > 0)
                .then(|| cpu_seconds * 1e6 / c.steady_messages as f64),
            rss_baseline: s.baseline.rss_bytes,
            rss_start: s.start.rss_bytes,
            rss_end: s.end.rss_bytes,
            rss_per_connection: (c.opened > 0).then(|| {
                (s.start.rss_bytes as f64 - s.baseline.rss_bytes as f64) / c.opened as f64
            }),
        }
    }
}

/// The run's parameters as the table's first line shows them, the URLs first; and the
/// URLs.
fn params(args: &Args) -> (Vec<(String, String)>, Vec<String>) {
    let auth = match &args.auth {
        Auth::ApiKey(_) => "api key",
        Auth::Token(_) if args.token_in_query => "token (query)",
        Auth::Token(_) => "token",
        Auth::None => "none",
    };
    let urls: Vec<String> = args.targets.iter().map(|t| t.ws_url()).collect();
    let url_key = if urls.len() == 1 { "url" } else { "urls" };
    let mut params = vec![
        (url_key, urls.join(" ")),
        ("auth", auth.to_string()),
        ("connections", args.connections.to_string()),
        ("ramp", format!("{}/s", args.ramp_per_sec)),
        ("warmup", duration(args.warmup)),
        ("duration", duration(args.duration)),
        ("threads", args.threads.to_string()),
    ];
    if let Some(rate) = args.churn_per_sec {
        params.push(("churn", format!("{rate}/s")));
    }
    if !args.bind.is_empty() {
        let bind: Vec<String> = args.bind.iter().map(ToString::to_string).collect();
        params.push(("bind", bind.join(",")));
    }
    if let Some(ca) = &args.ca {
        params.push(("ca", ca.display().to_string()));
    }
    match &args.subscription {
        Subscription::All => {}
        Subscription::Sets(sets) => {
            let sets: Vec<String> = sets.iter().map(|s| s.text()).collect();
            params.push(("subscribe", sets.join(" ")));
        }
        Subscription::Random { k, seed } => {
            params.push(("subscribe random", k.to_string()));
            params.push(("seed", seed.to_string()));
        }
    }
    if args.deflate {
        params.push(("deflate", "offered".to_string()));
    }
    if args.delta {
        params.push(("delta", "on".to_string()));
    }
    if let Some(pid) = args.server_pid {
        params.push(("server pid", pid.to_string()));
    }
    (params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), urls)
}

impl Summary {
    /// The figures of a run made under `args`, from what it measured (`out`).
    pub(crate) fn new(args: &Args, out: &RunOutput) -> Summary {
        let c = &out.result.counters;
        let steady_seconds = out.window.map_or(0.0, |(a, b)| (b - a).max(0.0));
        let per_sec = |n: u64| if steady_seconds > 0.0 { n as f64 / steady_seconds } else { 0.0 };
        let server = out.server.map(|s| ServerFigures::new(&s, steady_seconds, c));
        let (params, urls) = params(args);
        Summary {
            params,
            urls,
            connections: args.connections as u64,
            attempted: c.attempted,
            opened: c.opened,
            failed: by_text(&c.failed),
            dropped: by_text(&c.dropped),
            closed_clean: c.closed_clean,
            ramp_seconds: out.ramp_seconds,
            storm: Storm {
                ramp_per_sec: args.ramp_per_sec,
                first_connect: out.first_connect,
                last_open: out.last_open,
            },
            steady_seconds,
            messages_total: c.messages,
            bytes_total: c.bytes,
            steady_bytes: Some(c.steady_bytes),
            steady_messages: c.steady_messages,
            messages_per_sec: per_sec(c.steady_messages),
            ticks: c.steady_ticks,
            missed: c.steady_missed,
            repeats: c.steady_repeats,
            backwards: c.steady_backwards,
            churn: args.churn_per_sec.map(|rate| Churn::new(rate, &c.churn)),
            subscription: Subscriptions::new(&args.subscription, &c.subscribe),
            deflate: args.deflate.then(|| c.deflate.clone()),
            delta: args.delta.then_some(c.delta),
            hists: out.result.hists.clone(),
            server,
            tool_cores: if steady_seconds > 0.0 {
                out.tool_cpu.as_secs_f64() / steady_seconds
            } else {
                0.0
            },
            tool_thread_core_max: out.per_thread_core.iter().copied().fold(0.0, f64::max),
            threads: args.threads as u64,
            interrupted: out.interrupted,
            warnings: out.warnings.clone(),
            timeline: out.timeline.clone(),
            window: out.window,
        }
    }

    pub(crate) fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Ticks received / ticks the server sent to connections in the steady window, in
    /// percent; `None` when no message carried a `seq`, or in a delta session (where seq
    /// gaps are normal: the chain tells of loss there).
    pub(crate) fn delivered_percent(&self) -> Option<f64> {
        if self.delta.is_some() {
            return None;
        }
        delivered(self.ticks, self.missed)
    }

    pub(crate) fn fairness(&self) -> Option<Fairness> {
        let h = &self.hists.conn_median;
        Some(Fairness {
            connections: h.count(),
            best: h.min()?,
            median: h.percentile(50.0)?,
            worst: h.max()?,
        })
    }

    /// The ramp as planned: connections / rate.
    pub(crate) fn planned_ramp(&self) -> f64 {
        self.connections as f64 / self.storm.ramp_per_sec
    }

    /// From the first connect to the last connection opened by the ramp.
    pub(crate) fn live_after(&self) -> Option<f64> {
        Some((self.storm.last_open? - self.storm.first_connect?).max(0.0))
    }

    /// [`Summary::live_after`] when every requested connection opened.
    pub(crate) fn all_live_after(&self) -> Option<f64> {
        self.live_after().filter(|_| self.opened >= self.connections)
    }

    /// Connection failures that were not churn: ramp failures, drops, reconnect
    /// failures; and `subscribe` messages refused.
    pub(crate) fn errors(&self) -> u64 {
        self.failed_total()
            + self.dropped_total()
            + self.churn.as_ref().map_or(0, Churn::failed_total)
            + self.subscribe_refused()
    }

    /// `subscribe` messages refused (or never sent: no symbols to pick from).
    pub(crate) fn subscribe_refused(&self) -> u64 {
        self.subscription.as_ref().map_or(0, Subscriptions::refused_total)
    }

    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "ticker-load: {}", params.join(", "));
        if self.interrupted {
            let _ = writeln!(out, "(interrupted: the run ended early)");
        }
        for (label, value) in self.rows() {
            let _ = writeln!(out, "  {label:<14} {value}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// (percentile 0-100, µs) points of the steady-window tick latency, for the report.
    pub(crate) fn distribution(&self) -> Vec<(f64, u64)> {
        self.hists.tick.distribution()
    }

    /// (share of connections 0-100, µs) points: every connection's median, sorted.
    pub(crate) fn fairness_curve(&self) -> Vec<(f64, u64)> {
        cumulative(&self.hists.conn_median)
    }
}

/// Each recorded value with the share of counts at or below it, in percent, starting
/// at (0, min).
fn cumulative(h: &Latency) -> Vec<(f64, u64)> {
    let total = h.count();
    let Some(min) = h.min() else { return Vec::new() };
    let mut points = vec![(0.0, min)];
    let mut seen = 0u64;
    h.for_each_recorded(|value, count| {
        seen += count;
        points.push((seen as f64 * 100.0 / total as f64, value));
    });
    points
}

fn by_text(counts: &BTreeMap<Reason, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(r, n)| (r.to_string(), *n)).collect()
}

/// A duration as the command line writes it: `2m`, `30s`, `500ms`.
fn duration(d: std::time::Duration) -> String {
    match (d.as_secs(), d.subsec_millis()) {
        (s, 0) if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes with a binary unit; negative values (memory given back) keep their sign.
pub(crate) fn bytes(n: f64) -> String {
    let (sign, n) = if n < 0.0 { ("-", -n) } else { ("", n) };
    match n {
        n if n < 1024.0 => format!("{sign}{n:.0} B"),
        n if n < 1024.0 * 1024.0 => format!("{sign}{:.1} KiB", n / 1024.0),
        n if n < 1024.0 * 1024.0 * 1024.0 => format!("{sign}{:.1} MiB", n / 1048576.0),
        n => format!("{sign}{:.2} GiB", n / 1073741824.0),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A summary with nothing measured, for tests to fill in.
    pub(crate) fn empty() -> Summary {
        Summary {
            params: vec![("url".into(), "ws://h:1/ws".into())],
            urls: vec!["ws://h:1/ws".into()],
            connections: 0,
            attempted: 0,
            opened: 0,
            failed: BTreeMap::new(),
            dropped: BTreeMap::new(),
            closed_clean: 0,
            ramp_seconds: 0.0,
            storm: Storm { ramp_per_sec: 500.0, first_connect: None, last_open: None },
            steady_seconds: 0.0,
            messages_total: 0,
            bytes_total: 0,
            steady_bytes: None,
            steady_messages: 0,
            messages_per_sec: 0.0,
            ticks: 0,
            missed: 0,
            repeats: 0,
            backwards: 0,
            churn: None,
            subscription: None,
            deflate: None,
            delta: None,
            hists: Hists::default(),
            server: None,
            tool_cores: 0.0,
            tool_thread_core_max: 0.0,
            threads: 1,
            interrupted: false,
            warnings: Vec::new(),
            timeline: Vec::new(),
            window: None,
        }
    }

    #[test]
    fn numbers_are_grouped_and_bytes_get_units() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(100), "100");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(4096.0), "4.0 KiB");
        assert_eq!(bytes(-2048.0), "-2.0 KiB");
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            [duration(ms(0)), duration(ms(1500)), duration(ms(30_000)), duration(ms(120_000))],
            ["0s", "1500ms", "30s", "2m"]
        );
    }

    #[test]
    fn delivered_percent_counts_missed_ticks_against_received_ones() {
        let mut s = Summary { ticks: 990, missed: 10, ..empty() };
        assert_eq!(s.delivered_percent(), Some(99.0));
        (s.ticks, s.missed) = (0, 0);
        assert_eq!(s.delivered_percent(), None);
    }
}
