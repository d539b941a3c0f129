//! The run's figures, derived once from the raw measurements, and their two plain
//! renderings: the table on stdout and the JSON file. `compare` reads JSON files back
//! into one table row each.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::args::{Args, Auth};
use crate::run::{RunOutput, SATURATED};
use crate::stats::{Percentiles, fmt_us};

/// Everything reported about a run, in final units.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// The run's parameters as text; the URLs come first (as `url`, or `urls` when
    /// there are several, separated by spaces).
    pub(crate) params: Vec<(&'static str, String)>,
    /// Every `--url`, as WebSocket URLs, in the order given.
    pub(crate) urls: Vec<String>,
    pub(crate) connections: usize,
    pub(crate) attempted: u64,
    pub(crate) opened: u64,
    pub(crate) failed: Vec<(String, u64)>,
    pub(crate) dropped: Vec<(String, u64)>,
    pub(crate) closed_clean: u64,
    pub(crate) handshake: Percentiles,
    pub(crate) ramp_seconds: f64,
    pub(crate) steady_seconds: f64,
    pub(crate) messages_total: u64,
    pub(crate) bytes_total: u64,
    pub(crate) steady_messages: u64,
    pub(crate) messages_per_sec: f64,
    pub(crate) ticks: u64,
    pub(crate) missed: u64,
    pub(crate) repeats: u64,
    pub(crate) backwards: u64,
    pub(crate) delivered_percent: Option<f64>,
    pub(crate) latency: Percentiles,
    pub(crate) server: Option<ServerFigures>,
    pub(crate) tool_cores: f64,
    pub(crate) tool_thread_core_max: f64,
    pub(crate) threads: usize,
    pub(crate) interrupted: bool,
    pub(crate) warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
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

impl Summary {
    pub(crate) fn new(args: &Args, out: &RunOutput) -> Summary {
        let c = &out.result.counters;
        let steady_seconds = out.window.map_or(0.0, |(a, b)| (b - a).max(0.0));
        let per_sec = |n: u64| if steady_seconds > 0.0 { n as f64 / steady_seconds } else { 0.0 };
        let server = out.server.map(|s| {
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
        });
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
        if !args.bind.is_empty() {
            let bind: Vec<String> = args.bind.iter().map(ToString::to_string).collect();
            params.push(("bind", bind.join(",")));
        }
        if let Some(pid) = args.server_pid {
            params.push(("server pid", pid.to_string()));
        }
        Summary {
            params,
            urls,
            connections: args.connections,
            attempted: c.attempted,
            opened: c.opened,
            failed: c.failed.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            dropped: c.dropped.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            closed_clean: c.closed_clean,
            handshake: out.result.handshake.summary(),
            ramp_seconds: out.ramp_seconds,
            steady_seconds,
            messages_total: c.messages,
            bytes_total: c.bytes,
            steady_messages: c.steady_messages,
            messages_per_sec: per_sec(c.steady_messages),
            ticks: c.steady_ticks,
            missed: c.steady_missed,
            repeats: c.steady_repeats,
            backwards: c.steady_backwards,
            delivered_percent: c.delivered_percent(),
            latency: out.result.steady_latency.summary(),
            server,
            tool_cores: if steady_seconds > 0.0 {
                out.tool_cpu.as_secs_f64() / steady_seconds
            } else {
                0.0
            },
            tool_thread_core_max: out.per_thread_core.iter().copied().fold(0.0, f64::max),
            threads: args.threads,
            interrupted: out.interrupted,
            warnings: out.warnings.clone(),
        }
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
                    self.failed.iter().map(|f| f.1).sum::<u64>(),
                    self.dropped.iter().map(|f| f.1).sum::<u64>(),
                    self.closed_clean
                ),
            ),
            ("ramp", format!("{:.1} s until every connection opened or failed", self.ramp_seconds)),
        ];
        if !self.failed.is_empty() {
            rows.push(("failed", reasons(&self.failed)));
        }
        if !self.dropped.is_empty() {
            rows.push(("dropped", reasons(&self.dropped)));
        }
        rows.push(("handshake", percentiles(&self.handshake)));
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
            match self.delivered_percent {
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
        rows.push(("tick latency", percentiles(&self.latency)));
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

    /// `params` with `urls` as a list, and `url` kept as the first URL for readers of
    /// files from before `--url` could repeat.
    fn params_json(&self) -> Value {
        let mut params: serde_json::Map<String, Value> = self
            .params
            .iter()
            .filter(|(k, _)| !matches!(*k, "url" | "urls"))
            .map(|(k, v)| (k.replace(' ', "_"), json!(v)))
            .collect();
        params.insert("url".into(), json!(self.urls.first()));
        params.insert("urls".into(), json!(self.urls));
        Value::Object(params)
    }

    pub(crate) fn json(&self, timeline: &[crate::run::Second]) -> Value {
        let map = |items: &[(String, u64)]| {
            Value::Object(items.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        };
        json!({
            "tool": "ticker-load",
            "version": env!("CARGO_PKG_VERSION"),
            "params": self.params_json(),
            "connections": {
                "requested": self.connections,
                "attempted": self.attempted,
                "opened": self.opened,
                "failed": self.failed.iter().map(|f| f.1).sum::<u64>(),
                "failed_by": map(&self.failed),
                "dropped": self.dropped.iter().map(|f| f.1).sum::<u64>(),
                "dropped_by": map(&self.dropped),
                "closed_clean": self.closed_clean,
            },
            "ramp_seconds": self.ramp_seconds,
            "handshake_us": percentiles_json(&self.handshake),
            "steady": {
                "seconds": self.steady_seconds,
                "messages": self.steady_messages,
                "messages_per_sec": self.messages_per_sec,
                "ticks": self.ticks,
                "missed": self.missed,
                "repeats": self.repeats,
                "out_of_order": self.backwards,
                "delivered_percent": self.delivered_percent,
            },
            "tick_latency_us": percentiles_json(&self.latency),
            "messages_total": self.messages_total,
            "bytes_total": self.bytes_total,
            "server": self.server.map(|s| json!({
                "pid": s.pid,
                "cpu_seconds": s.cpu_seconds,
                "cpu_cores": s.cpu_cores,
                "cpu_s_per_million_frames": s.cpu_s_per_million_frames,
                "cpu_us_per_frame": s.cpu_s_per_million_frames,
                "rss_baseline_bytes": s.rss_baseline,
                "rss_window_start_bytes": s.rss_start,
                "rss_window_end_bytes": s.rss_end,
                "rss_bytes_per_connection": s.rss_per_connection,
            })),
            "load_tool": {
                "threads": self.threads,
                "cpu_cores": self.tool_cores,
                "busiest_thread_core_share": self.tool_thread_core_max,
                "saturated": self.tool_thread_core_max >= SATURATED,
            },
            "interrupted": self.interrupted,
            "warnings": self.warnings,
            "timeline": timeline.iter().map(|s| json!({
                "t": s.t, "open": s.open, "messages": s.messages, "p50_us": s.p50_us, "p99_us": s.p99_us,
            })).collect::<Vec<_>>(),
        })
    }
}

fn percentiles_json(p: &Percentiles) -> Value {
    json!({ "count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "p99.9": p.p999, "max": p.max })
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

fn reasons(items: &[(String, u64)]) -> String {
    items.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ")
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

/// `ticker-load compare`: one row per saved run, the columns of the benchmark table.
pub(crate) fn compare(files: &[impl AsRef<Path>]) -> Result<String, String> {
    let mut out = format!(
        "{:>11} {:>8} {:>11} {:>10} {:>10} {:>12} {:>11} {:>9}\n",
        "subscribers",
        "opened",
        "delivered%",
        "p50",
        "p99",
        "srv µs/frame",
        "srv rss/conn",
        "tool cpu"
    );
    for file in files {
        let path = file.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let num = |ptr: &str| v.pointer(ptr).and_then(Value::as_f64);
        let us = |ptr: &str| num(ptr).map_or_else(|| "-".to_string(), |x| fmt_us(x as u64));
        let _ = writeln!(
            out,
            "{:>11} {:>8} {:>11} {:>10} {:>10} {:>12} {:>11} {:>9}",
            num("/connections/requested").map_or("-".into(), |x| format!("{x}")),
            num("/connections/opened").map_or("-".into(), |x| format!("{x}")),
            num("/steady/delivered_percent").map_or("-".into(), |x| format!("{x:.3}")),
            us("/tick_latency_us/p50"),
            us("/tick_latency_us/p99"),
            num("/server/cpu_us_per_frame").map_or("-".into(), |x| format!("{x:.2}")),
            num("/server/rss_bytes_per_connection").map_or("-".into(), bytes),
            num("/load_tool/cpu_cores").map_or("-".into(), |x| {
                let saturated =
                    v.pointer("/load_tool/saturated").and_then(Value::as_bool) == Some(true);
                format!("{:.0}%{}", x * 100.0, if saturated { " SAT" } else { "" })
            }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn compare_reads_the_benchmark_columns_from_saved_json() {
        let dir = std::env::temp_dir().join(format!("ticker-load-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("run.json");
        let run = json!({
            "connections": {"requested": 500, "opened": 500},
            "steady": {"delivered_percent": 99.5},
            "tick_latency_us": {"p50": 800, "p99": 2500},
            "server": {"cpu_us_per_frame": 1.25, "rss_bytes_per_connection": 8192.0},
            "load_tool": {"cpu_cores": 0.4},
        });
        std::fs::write(&file, run.to_string()).unwrap();
        let table = compare(&[&file]).unwrap();
        let row = table.lines().nth(1).unwrap();
        for want in ["500", "99.500", "800 µs", "2.50 ms", "1.25", "8.0 KiB", "40%"] {
            assert!(row.contains(want), "{want} missing in {row}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
