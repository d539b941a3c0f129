//! Saved runs read back: `ticker-load compare` (one table row per run) and
//! `ticker-load merge` (runs made together, e.g. one per load machine, as one summary).
//!
//! Merging sums the counts and adds the histograms; every percentile is then read from
//! the merged histogram, never averaged. The runs are taken to have started together
//! (as a script starts its load machines): per-second timelines are added second by
//! second, the steady window spans all of theirs, the storm runs from the earliest
//! first connect to the latest last open, and rates (messages/s, ramp, churn) add up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::json;
use crate::run::Second;
use crate::stats::fmt_us;
use crate::summary::{self, Churn, ServerFigures, Subscriptions, Summary, bytes};

/// Reads one saved run.
pub(crate) fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `ticker-load merge`: the saved runs at `files` as one summary.
pub(crate) fn merge_files(files: &[impl AsRef<Path>]) -> Result<Summary, String> {
    let mut runs = Vec::with_capacity(files.len());
    for file in files {
        let path = file.as_ref();
        let v = read(path)?;
        runs.push(json::from_json(&v).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let names: Vec<String> = files.iter().map(|f| f.as_ref().display().to_string()).collect();
    merge(runs, &names).map_err(|e| format!("merging: {e}"))
}

/// Adds up `runs` (named by `names` in the parameters).
pub(crate) fn merge(runs: Vec<Summary>, names: &[String]) -> Result<Summary, String> {
    let mut it = runs.into_iter();
    let Some(first) = it.next() else { return Err("no runs".into()) };
    let rest: Vec<Summary> = it.collect();
    let mut m = first.clone();
    m.params = merged_params(&first, &rest, names);
    m.server = merged_server(std::iter::once(&first).chain(&rest));
    for r in &rest {
        add_counts(&mut m, r);
        m.hists.add(&r.hists);
        m.timeline = add_timelines(&m.timeline, &r.timeline)?;
        m.window = match (m.window, r.window) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (w, None) | (None, w) => w,
        };
        m.storm.ramp_per_sec += r.storm.ramp_per_sec;
        m.storm.first_connect = pick(m.storm.first_connect, r.storm.first_connect, f64::min);
        m.storm.last_open = pick(m.storm.last_open, r.storm.last_open, f64::max);
        m.churn = match (m.churn.take(), &r.churn) {
            (Some(a), Some(b)) => Some(add_churn(a, b)),
            (a, b) => a.or_else(|| b.clone()),
        };
        m.deflate = match (m.deflate.take(), &r.deflate) {
            (Some(mut a), Some(b)) => {
                a.add(b);
                Some(a)
            }
            (a, b) => a.or_else(|| b.clone()),
        };
        m.delta = match (m.delta.take(), r.delta) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        m.subscription = match (m.subscription.take(), &r.subscription) {
            (Some(a), Some(b)) => Some(add_subscriptions(a, b)),
            (a, b) => a.or_else(|| b.clone()),
        };
        for url in &r.urls {
            if !m.urls.contains(url) {
                m.urls.push(url.clone());
            }
        }
        m.warnings.extend(r.warnings.iter().cloned());
    }
    if let Some(server) = m.server {
        m.server = Some(ServerFigures {
            cpu_s_per_million_frames: (m.steady_messages > 0)
                .then(|| server.cpu_seconds * 1e6 / m.steady_messages as f64),
            ..server
        });
    }
    m.params[0] = (if m.urls.len() == 1 { "url" } else { "urls" }.into(), m.urls.join(" "));
    Ok(m)
}

fn add_counts(m: &mut Summary, r: &Summary) {
    m.connections += r.connections;
    m.attempted += r.attempted;
    m.opened += r.opened;
    add_map(&mut m.failed, &r.failed);
    add_map(&mut m.dropped, &r.dropped);
    m.closed_clean += r.closed_clean;
    m.ramp_seconds = m.ramp_seconds.max(r.ramp_seconds);
    m.steady_seconds = m.steady_seconds.max(r.steady_seconds);
    m.messages_total += r.messages_total;
    m.bytes_total += r.bytes_total;
    // A run without the figure (an older file) leaves the sum unknown.
    m.steady_bytes = m.steady_bytes.zip(r.steady_bytes).map(|(a, b)| a + b);
    m.steady_messages += r.steady_messages;
    m.messages_per_sec += r.messages_per_sec;
    m.ticks += r.ticks;
    m.missed += r.missed;
    m.repeats += r.repeats;
    m.backwards += r.backwards;
    m.tool_cores += r.tool_cores;
    m.tool_thread_core_max = m.tool_thread_core_max.max(r.tool_thread_core_max);
    m.threads += r.threads;
    m.interrupted |= r.interrupted;
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn add_churn(mut a: Churn, b: &Churn) -> Churn {
    a.per_sec += b.per_sec;
    a.closes += b.closes;
    a.closed_clean += b.closed_clean;
    a.close_timeouts += b.close_timeouts;
    a.reconnects += b.reconnects;
    a.reconnected += b.reconnected;
    add_map(&mut a.failed, &b.failed);
    a.unfinished += b.unfinished;
    a.skipped += b.skipped;
    a
}

/// Subscriptions of runs made together: counts added, `--subscribe` sets added set by
/// set (by their symbols), and the distinct sets counted again from them. Random picks
/// leave no list of sets behind: their distinct count is the largest of the runs' (a
/// lower bound).
fn add_subscriptions(mut a: Subscriptions, b: &Subscriptions) -> Subscriptions {
    a.subscribed += b.subscribed;
    add_map(&mut a.refused, &b.refused);
    a.symbols = a.symbols.max(b.symbols);
    for set in &b.sets {
        match a.sets.iter_mut().find(|s| s.symbols == set.symbols) {
            Some(into) => {
                into.connections += set.connections;
                into.ticks += set.ticks;
                into.missed += set.missed;
            }
            None => a.sets.push(set.clone()),
        }
    }
    a.distinct_sets = if a.sets.is_empty() {
        a.distinct_sets.max(b.distinct_sets)
    } else {
        summary::distinct_sets(&a.sets)
    };
    a
}

/// `choose(a, b)` when both are set, else whichever is.
fn pick(a: Option<f64>, b: Option<f64>, choose: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(choose(a, b)),
        (a, b) => a.or(b),
    }
}

/// Second by second: counts added, histograms merged, percentiles read again.
fn add_timelines(a: &[Second], b: &[Second]) -> Result<Vec<Second>, String> {
    let mut by_t: BTreeMap<u64, Second> = a.iter().map(|s| (s.t, s.clone())).collect();
    for s in b {
        match by_t.get_mut(&s.t) {
            None => {
                by_t.insert(s.t, s.clone());
            }
            Some(into) => {
                into.open += s.open;
                into.messages += s.messages;
                let mut h = into.decoded_latency()?;
                h.add(&s.decoded_latency()?);
                into.set_latency(&h);
            }
        }
    }
    Ok(by_t.into_values().collect())
}

/// Parameters: the files merged, then every parameter any run has, with the runs'
/// values joined by " | " where they differ ("-" for a run without it).
fn merged_params(first: &Summary, rest: &[Summary], names: &[String]) -> Vec<(String, String)> {
    let runs: Vec<&Summary> = std::iter::once(first).chain(rest).collect();
    let mut keys: Vec<&str> = Vec::new();
    for (key, _) in runs.iter().flat_map(|r| &r.params) {
        if !matches!(key.as_str(), "url" | "urls") && !keys.contains(&key.as_str()) {
            keys.push(key);
        }
    }
    let mut params =
        vec![("urls".to_string(), String::new()), ("merged".to_string(), names.join(" "))];
    for key in keys {
        let mut values: Vec<&str> = Vec::new();
        for r in &runs {
            let v = r.params.iter().find(|(k, _)| k == key).map_or("-", |(_, v)| v.as_str());
            if !values.contains(&v) {
                values.push(v);
            }
        }
        params.push((key.to_string(), values.join(" | ")));
    }
    params
}

/// Server figures: one per server process (runs that watched the same pid measured the
/// same process: the first one counts), summed over processes (cluster nodes).
fn merged_server<'a>(runs: impl Iterator<Item = &'a Summary>) -> Option<ServerFigures> {
    let mut by_pid: BTreeMap<u32, ServerFigures> = BTreeMap::new();
    let mut opened_by_pid: BTreeMap<u32, u64> = BTreeMap::new();
    for r in runs {
        if let Some(s) = r.server {
            by_pid.entry(s.pid).or_insert(s);
            *opened_by_pid.entry(s.pid).or_default() += r.opened;
        }
    }
    let mut it = by_pid.values();
    let mut sum = *it.next()?;
    for s in it {
        sum.cpu_seconds += s.cpu_seconds;
        sum.cpu_cores += s.cpu_cores;
        sum.rss_baseline += s.rss_baseline;
        sum.rss_start += s.rss_start;
        sum.rss_end += s.rss_end;
    }
    let opened: u64 = opened_by_pid.values().sum();
    sum.rss_per_connection =
        (opened > 0).then(|| (sum.rss_start as f64 - sum.rss_baseline as f64) / opened as f64);
    Some(sum)
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
        let v = read(file.as_ref())?;
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
    use crate::stats::Latency;
    use crate::summary::tests::empty;
    use serde_json::json;

    /// A temporary folder removed at the end of the test.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("ticker-load-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A run whose tick latencies are `samples`, as a saved JSON file would hold it.
    fn run_of(samples: &[u64], connections: u64, missed: u64) -> Summary {
        let mut s = empty();
        s.connections = connections;
        s.opened = connections;
        s.ticks = samples.len() as u64;
        s.missed = missed;
        s.steady_messages = samples.len() as u64;
        s.messages_per_sec = samples.len() as f64 / 10.0;
        for &us in samples {
            s.hists.tick.record(us);
        }
        let mut second = Second { t: 2, open: connections, messages: s.ticks, ..Second::default() };
        second.set_latency(&s.hists.tick);
        s.timeline = vec![second];
        s
    }

    #[test]
    fn one_runs_samples_split_in_two_files_merge_to_the_histogram_of_all_samples() {
        // Deterministic spread-out samples: 1 µs to about 80 ms, with a heavy tail.
        let all: Vec<u64> = (1..=20_000u64).map(|i| (i * i * 7919) % 80_000 + i % 13).collect();
        let (a, b) = all.split_at(7_777);
        let dir = Dir::new("merge");
        let (fa, fb) = (dir.0.join("a.json"), dir.0.join("b.json"));
        std::fs::write(&fa, json::to_json(&run_of(a, 300, 4)).to_string()).unwrap();
        std::fs::write(&fb, json::to_json(&run_of(b, 200, 6)).to_string()).unwrap();

        let merged = merge_files(&[&fa, &fb]).unwrap();
        let mut whole = Latency::default();
        for &us in &all {
            whole.record(us);
        }
        assert_eq!(merged.hists.tick.summary(), whole.summary(), "same percentiles, same count");
        assert_eq!(merged.hists.tick.distribution(), whole.distribution());
        for p in [0.0, 10.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0] {
            assert_eq!(merged.hists.tick.percentile(p), whole.percentile(p), "p{p}");
        }
        assert_eq!(merged.hists.tick.encode(), whole.encode(), "identical histograms");
        assert_eq!((merged.connections, merged.opened), (500, 500));
        assert_eq!((merged.ticks, merged.missed), (20_000, 10));
        assert_eq!(merged.messages_per_sec, 2000.0, "rates of runs made together add up");
        let second = &merged.timeline[0];
        assert_eq!((second.t, second.open, second.messages), (2, 500, 20_000));
        assert_eq!(second.p99_us, whole.percentile(99.0), "per-second percentiles merged too");
        assert_eq!(
            merged.params[1],
            ("merged".into(), format!("{} {}", fa.display(), fb.display()))
        );
        let out = json::to_json(&merged);
        assert_eq!(out["tick_latency_us"]["p99"], json!(whole.percentile(99.0)));
    }

    #[test]
    fn failures_churn_and_fairness_add_up() {
        let mut a = run_of(&[1000; 20], 10, 0);
        a.failed.insert("refused".into(), 2);
        a.hists.conn_median.record(900);
        a.storm.first_connect = Some(0.1);
        a.storm.last_open = Some(1.0);
        let mut b = run_of(&[2000; 20], 10, 0);
        b.failed.insert("refused".into(), 1);
        b.dropped.insert("reset".into(), 1);
        b.hists.conn_median.record(1900);
        b.storm.first_connect = Some(0.0);
        b.storm.last_open = Some(1.5);
        b.params.push(("churn".into(), "5/s".into()));
        b.churn = Some(Churn {
            per_sec: 5.0,
            closes: 3,
            closed_clean: 3,
            close_timeouts: 0,
            reconnects: 3,
            reconnected: 3,
            failed: BTreeMap::new(),
            unfinished: 0,
            skipped: 0,
        });
        let m = merge(vec![a, b], &["a".into(), "b".into()]).unwrap();
        assert_eq!(m.failed.get("refused"), Some(&3));
        assert_eq!(m.errors(), 4);
        let f = m.fairness().unwrap();
        assert_eq!((f.best, f.worst, f.spread()), (900, 1900, 1000));
        assert_eq!((m.storm.first_connect, m.storm.last_open), (Some(0.0), Some(1.5)));
        assert_eq!(m.storm.ramp_per_sec, 1000.0);
        assert_eq!(m.churn.unwrap().closes, 3);
        assert!(m.params.contains(&("churn".into(), "- | 5/s".into())), "{:?}", m.params);
    }

    #[test]
    fn wire_bytes_deflate_and_delta_figures_add_up_through_the_saved_files() {
        use crate::deflate::DeflateCounters;
        use crate::delta::DeltaCounters;
        let run = |opened, bytes, compressed, breaks| {
            let mut s = run_of(&[1000; 100], opened, 0);
            s.steady_seconds = 10.0;
            s.steady_bytes = Some(bytes);
            s.deflate = Some(DeflateCounters {
                accepted: [("permessage-deflate".to_string(), opened)].into(),
                declined: 1,
                messages: 100,
                compressed_bytes: compressed,
                inflated_bytes: 3 * compressed,
            });
            s.delta = Some(DeltaCounters { full: 1, changes: 99, breaks, ..Default::default() });
            s
        };
        let dir = Dir::new("merge-wire");
        let (fa, fb) = (dir.0.join("a.json"), dir.0.join("b.json"));
        std::fs::write(&fa, json::to_json(&run(3, 30_000, 1000, 1)).to_string()).unwrap();
        std::fs::write(&fb, json::to_json(&run(2, 20_000, 2000, 0)).to_string()).unwrap();
        let m = merge_files(&[&fa, &fb]).unwrap();
        assert_eq!(m.steady_bytes, Some(50_000));
        // 50,000 bytes over 5 subscribers and 10 s; 200 messages over the same.
        assert_eq!(m.bytes_per_subscriber_per_sec(), Some(1000.0));
        assert_eq!(m.bytes_per_message(), Some(250.0));
        assert_eq!(m.messages_per_subscriber_per_sec(), Some(4.0));
        let d = m.deflate.as_ref().unwrap();
        assert_eq!((d.accepted_total(), d.declined, d.compressed_bytes), (5, 2, 3000));
        assert_eq!(crate::summary::ratio(d), Some(3.0));
        let delta = m.delta.unwrap();
        assert_eq!((delta.full, delta.changes, delta.breaks), (2, 198, 1));
        let out = json::to_json(&m);
        assert_eq!(out["wire"]["bytes_per_subscriber_per_sec"], 1000.0);
        // A run saved before bytes were counted: the merged figure is unknown, not short.
        let old = Summary { steady_bytes: None, ..run(1, 5, 1, 0) };
        let m = merge(vec![run(3, 30_000, 1000, 1), old], &["a".into(), "b".into()]).unwrap();
        assert_eq!(m.steady_bytes, None);
    }

    #[test]
    fn server_figures_count_each_server_process_once() {
        let figures = |pid, cpu| ServerFigures {
            pid,
            cpu_seconds: cpu,
            cpu_cores: cpu / 10.0,
            cpu_s_per_million_frames: None,
            rss_baseline: 100,
            rss_start: 300,
            rss_end: 300,
            rss_per_connection: None,
        };
        let with =
            |pid, cpu| Summary { server: Some(figures(pid, cpu)), ..run_of(&[10; 10], 10, 0) };
        let same = merge(vec![with(1, 2.0), with(1, 2.5)], &[]).unwrap().server.unwrap();
        assert_eq!(same.cpu_seconds, 2.0, "the same process is not counted twice");
        let nodes = merge(vec![with(1, 2.0), with(2, 3.0)], &[]).unwrap().server.unwrap();
        assert_eq!((nodes.cpu_seconds, nodes.rss_start), (5.0, 600));
        assert_eq!(nodes.cpu_s_per_million_frames, Some(5.0 * 1e6 / 20.0));
        assert_eq!(nodes.rss_per_connection, Some(400.0 / 20.0));
    }

    #[test]
    fn compare_reads_the_benchmark_columns_from_saved_json() {
        let dir = Dir::new("compare");
        let file = dir.0.join("run.json");
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
    }

    #[test]
    fn subscribe_sets_of_runs_made_together_add_up_set_by_set() {
        use crate::summary::SetFigures;
        let set = |names: &[&str], connections, ticks| SetFigures {
            symbols: names.iter().map(|s| s.to_string()).collect(),
            connections,
            ticks,
            missed: 0,
        };
        let with = |sets: Vec<SetFigures>| Summary {
            subscription: Some(Subscriptions {
                mode: "sets".into(),
                k: None,
                seed: None,
                symbols: None,
                subscribed: sets.iter().map(|s| s.connections).sum(),
                distinct_sets: summary::distinct_sets(&sets),
                refused: BTreeMap::new(),
                sets,
            }),
            ..run_of(&[10; 10], 10, 0)
        };
        let a = with(vec![set(&["A"], 5, 100), set(&["B", "C"], 5, 90)]);
        let b = with(vec![set(&["B", "C"], 4, 80), set(&["D"], 6, 70)]);
        let m = merge(vec![a, b], &[]).unwrap().subscription.unwrap();
        assert_eq!(m.subscribed, 20);
        assert_eq!(m.distinct_sets, 3);
        let sets: Vec<(u64, u64)> = m.sets.iter().map(|s| (s.connections, s.ticks)).collect();
        assert_eq!(sets, [(5, 100), (9, 170), (6, 70)]);
    }
}
