//! The `--json` file: a [`Summary`] written out, and read back for `merge`.
//!
//! Besides the figures (percentiles in µs, counts, reasons), the file carries every
//! latency histogram in HdrHistogram's standard text form — the V2 compressed encoding
//! in base64, as in HdrHistogram log files — under `histograms`, and each second's
//! under `timeline[i].latency`. Any HdrHistogram library reads them; `merge` adds them
//! up, so a merged percentile is exact to the histograms' 3 significant digits.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::run::{SATURATED, Second};
use crate::stats::{Latency, Percentiles};
use crate::summary::{Churn, ServerFigures, SetFigures, Storm, Subscriptions, Summary};

/// The value of `histograms.format`.
pub(crate) const FORMAT: &str = "HdrHistogram V2 compressed, base64";

pub(crate) fn to_json(s: &Summary) -> Value {
    let map = |items: &BTreeMap<String, u64>| {
        Value::Object(items.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    };
    let mut histograms = Map::new();
    histograms.insert("format".into(), json!(FORMAT));
    for (name, h) in s.hists.named() {
        histograms.insert(name.into(), json!(h.encode()));
    }
    let fairness = s.fairness().map(|f| {
        json!({
            "connections": f.connections,
            "best_us": f.best,
            "median_us": f.median,
            "worst_us": f.worst,
            "spread_us": f.spread(),
            "min_ticks": crate::fairness::MIN_SAMPLES,
        })
    });
    let churn = s.churn.as_ref().map(|c| {
        json!({
            "rate_per_sec": c.per_sec,
            "closes": c.closes,
            "closed_clean": c.closed_clean,
            "close_timeouts": c.close_timeouts,
            "reconnects": c.reconnects,
            "reconnected": c.reconnected,
            "failed": c.failed_total(),
            "failed_by": map(&c.failed),
            "unfinished": c.unfinished,
            "skipped": c.skipped,
            "reconnect_us": percentiles_json(&s.hists.reconnect.summary()),
            "token_us": percentiles_json(&s.hists.token.summary()),
        })
    });
    let subscription = match &s.subscription {
        None => json!({ "mode": "all" }),
        Some(sub) => json!({
            "mode": sub.mode,
            "distinct_sets": sub.distinct_sets,
            "subscribed": sub.subscribed,
            "k": sub.k,
            "seed": sub.seed,
            "symbols": sub.symbols,
            "refused": sub.refused_total(),
            "refused_by": map(&sub.refused),
            "sets": sub.sets.iter().map(|set| json!({
                "symbols": set.symbols,
                "connections": set.connections,
                "ticks": set.ticks,
                "missed": set.missed,
                "delivered_percent": set.delivered_percent(),
            })).collect::<Vec<_>>(),
        }),
    };
    json!({
        "tool": "ticker-load",
        "version": env!("CARGO_PKG_VERSION"),
        "params": params_json(s),
        "connections": {
            "requested": s.connections,
            "attempted": s.attempted,
            "opened": s.opened,
            "failed": s.failed_total(),
            "failed_by": map(&s.failed),
            "dropped": s.dropped_total(),
            "dropped_by": map(&s.dropped),
            "closed_clean": s.closed_clean,
        },
        "errors": {
            "failed": s.failed_total(),
            "dropped": s.dropped_total(),
            "churn_failed": s.churn.as_ref().map_or(0, Churn::failed_total),
            "subscribe_refused": s.subscribe_refused(),
            "total": s.errors(),
        },
        "ramp_seconds": s.ramp_seconds,
        "storm": {
            "ramp_per_sec": s.storm.ramp_per_sec,
            "planned_seconds": s.planned_ramp(),
            "first_connect_seconds": s.storm.first_connect,
            "last_open_seconds": s.storm.last_open,
            "live_after_seconds": s.live_after(),
            "all_live_seconds": s.all_live_after(),
            "live": s.opened,
            "requested": s.connections,
            "handshake_us": percentiles_json(&s.hists.handshake.summary()),
        },
        "handshake_us": percentiles_json(&s.hists.handshake.summary()),
        "steady": {
            "seconds": s.steady_seconds,
            "messages": s.steady_messages,
            "messages_per_sec": s.messages_per_sec,
            "ticks": s.ticks,
            "missed": s.missed,
            "repeats": s.repeats,
            "out_of_order": s.backwards,
            "delivered_percent": s.delivered_percent(),
        },
        "window_seconds": s.window.map(|(a, b)| [a, b]),
        "tick_latency_us": percentiles_json(&s.hists.tick.summary()),
        "fairness": fairness,
        "churn": churn,
        "subscription": subscription,
        "messages_total": s.messages_total,
        "bytes_total": s.bytes_total,
        "server": s.server.map(|v| json!({
            "pid": v.pid,
            "cpu_seconds": v.cpu_seconds,
            "cpu_cores": v.cpu_cores,
            "cpu_s_per_million_frames": v.cpu_s_per_million_frames,
            "cpu_us_per_frame": v.cpu_s_per_million_frames,
            "rss_baseline_bytes": v.rss_baseline,
            "rss_window_start_bytes": v.rss_start,
            "rss_window_end_bytes": v.rss_end,
            "rss_bytes_per_connection": v.rss_per_connection,
        })),
        "load_tool": {
            "threads": s.threads,
            "cpu_cores": s.tool_cores,
            "busiest_thread_core_share": s.tool_thread_core_max,
            "saturated": s.tool_thread_core_max >= SATURATED,
        },
        "interrupted": s.interrupted,
        "warnings": s.warnings,
        "histograms": histograms,
        "timeline": s.timeline.iter().map(|t| json!({
            "t": t.t, "open": t.open, "messages": t.messages, "p50_us": t.p50_us,
            "p99_us": t.p99_us, "latency": t.latency,
        })).collect::<Vec<_>>(),
    })
}

/// `params` with `urls` as a list, and `url` kept as the first URL for readers of
/// files from before `--url` could repeat.
fn params_json(s: &Summary) -> Value {
    let mut params: Map<String, Value> = s
        .params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "url" | "urls"))
        .map(|(k, v)| (k.replace(' ', "_"), json!(v)))
        .collect();
    params.insert("url".into(), json!(s.urls.first()));
    params.insert("urls".into(), json!(s.urls));
    Value::Object(params)
}

fn percentiles_json(p: &Percentiles) -> Value {
    json!({ "count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "p99.9": p.p999, "max": p.max })
}

/// Reads a summary back from [`to_json`]'s form. The histograms are required: without
/// them (a file from an older ticker-load) percentiles could only be averaged.
pub(crate) fn from_json(v: &Value) -> Result<Summary, String> {
    let r = Reader(v);
    let hist_map = v.get("histograms").and_then(Value::as_object).ok_or(
        "no \"histograms\" (saved by an older ticker-load?): percentiles cannot be merged exactly",
    )?;
    let mut hists = crate::stats::Hists::default();
    for (name, h) in hists.named_mut() {
        *h = match hist_map.get(name) {
            Some(Value::String(text)) => {
                Latency::decode(text).map_err(|e| format!("{name}: {e}"))?
            }
            _ => return Err(format!("histograms.{name} missing")),
        };
    }
    let urls: Vec<String> = match v.pointer("/params/urls").and_then(Value::as_array) {
        Some(urls) => urls.iter().filter_map(Value::as_str).map(String::from).collect(),
        None => {
            v.pointer("/params/url").and_then(Value::as_str).map(String::from).into_iter().collect()
        }
    };
    let mut params =
        vec![(if urls.len() == 1 { "url" } else { "urls" }.to_string(), urls.join(" "))];
    if let Some(map) = v.get("params").and_then(Value::as_object) {
        for (k, val) in map.iter().filter(|(k, _)| !matches!(k.as_str(), "url" | "urls")) {
            let text = val.as_str().map_or_else(|| val.to_string(), String::from);
            params.push((k.replace('_', " "), text));
        }
    }
    let churn = match v.get("churn") {
        Some(c) if c.is_object() => {
            let c = Reader(c);
            Some(Churn {
                per_sec: c.f("/rate_per_sec")?,
                closes: c.u("/closes")?,
                closed_clean: c.u("/closed_clean")?,
                close_timeouts: c.u("/close_timeouts")?,
                reconnects: c.u("/reconnects")?,
                reconnected: c.u("/reconnected")?,
                failed: c.counts("/failed_by")?,
                unfinished: c.u("/unfinished")?,
                skipped: c.u("/skipped")?,
            })
        }
        _ => None,
    };
    let subscription = match v.get("subscription") {
        Some(sub) if sub.get("mode").and_then(Value::as_str).is_some_and(|m| m != "all") => {
            Some(subscription(sub)?)
        }
        _ => None,
    };
    let server = match v.get("server") {
        Some(s) if s.is_object() => {
            let s = Reader(s);
            Some(ServerFigures {
                pid: u32::try_from(s.u("/pid")?).map_err(|_| "server.pid: not a pid")?,
                cpu_seconds: s.f("/cpu_seconds")?,
                cpu_cores: s.f("/cpu_cores")?,
                cpu_s_per_million_frames: s.opt_f("/cpu_s_per_million_frames"),
                rss_baseline: s.u("/rss_baseline_bytes")?,
                rss_start: s.u("/rss_window_start_bytes")?,
                rss_end: s.u("/rss_window_end_bytes")?,
                rss_per_connection: s.opt_f("/rss_bytes_per_connection"),
            })
        }
        _ => None,
    };
    let timeline = match v.get("timeline").and_then(Value::as_array) {
        Some(seconds) => seconds.iter().map(second).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let window = match v.get("window_seconds").and_then(Value::as_array).map(Vec::as_slice) {
        Some([a, b]) => a.as_f64().zip(b.as_f64()),
        _ => None,
    };
    Ok(Summary {
        params,
        urls,
        connections: r.u("/connections/requested")?,
        attempted: r.u("/connections/attempted")?,
        opened: r.u("/connections/opened")?,
        failed: r.counts("/connections/failed_by")?,
        dropped: r.counts("/connections/dropped_by")?,
        closed_clean: r.u("/connections/closed_clean")?,
        ramp_seconds: r.f("/ramp_seconds")?,
        storm: Storm {
            ramp_per_sec: r.f("/storm/ramp_per_sec")?,
            first_connect: r.opt_f("/storm/first_connect_seconds"),
            last_open: r.opt_f("/storm/last_open_seconds"),
        },
        steady_seconds: r.f("/steady/seconds")?,
        messages_total: r.u("/messages_total")?,
        bytes_total: r.u("/bytes_total")?,
        steady_messages: r.u("/steady/messages")?,
        messages_per_sec: r.f("/steady/messages_per_sec")?,
        ticks: r.u("/steady/ticks")?,
        missed: r.u("/steady/missed")?,
        repeats: r.u("/steady/repeats")?,
        backwards: r.u("/steady/out_of_order")?,
        churn,
        subscription,
        hists,
        server,
        tool_cores: r.f("/load_tool/cpu_cores")?,
        tool_thread_core_max: r.f("/load_tool/busiest_thread_core_share")?,
        threads: r.u("/load_tool/threads")?,
        interrupted: v.get("interrupted").and_then(Value::as_bool).unwrap_or(false),
        warnings: v
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| w.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default(),
        timeline,
        window,
    })
}

fn subscription(v: &Value) -> Result<Subscriptions, String> {
    let r = Reader(v);
    let sets = match v.get("sets").and_then(Value::as_array) {
        Some(sets) => sets
            .iter()
            .map(|set| {
                let r = Reader(set);
                Ok(SetFigures {
                    symbols: set
                        .get("symbols")
                        .and_then(Value::as_array)
                        .ok_or_else(|| missing("/subscription/sets/symbols", "a list"))?
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                    connections: r.u("/connections")?,
                    ticks: r.u("/ticks")?,
                    missed: r.u("/missed")?,
                })
            })
            .collect::<Result<_, String>>()?,
        None => Vec::new(),
    };
    Ok(Subscriptions {
        mode: v.get("mode").and_then(Value::as_str).unwrap_or("sets").to_string(),
        k: v.get("k").and_then(Value::as_u64),
        seed: v.get("seed").and_then(Value::as_u64),
        symbols: v.get("symbols").and_then(Value::as_u64),
        subscribed: r.u("/subscribed")?,
        distinct_sets: r.u("/distinct_sets")?,
        refused: r.counts("/refused_by")?,
        sets,
    })
}

fn second(v: &Value) -> Result<Second, String> {
    let r = Reader(v);
    let latency = match v.get("latency") {
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    Ok(Second {
        t: r.u("/t")?,
        open: r.u("/open")?,
        messages: r.u("/messages")?,
        p50_us: v.get("p50_us").and_then(Value::as_u64),
        p99_us: v.get("p99_us").and_then(Value::as_u64),
        latency,
    })
}

/// Field access by JSON pointer, with errors that name the field.
struct Reader<'a>(&'a Value);

impl Reader<'_> {
    fn u(&self, ptr: &str) -> Result<u64, String> {
        self.0.pointer(ptr).and_then(Value::as_u64).ok_or_else(|| missing(ptr, "a whole number"))
    }

    fn f(&self, ptr: &str) -> Result<f64, String> {
        self.opt_f(ptr).ok_or_else(|| missing(ptr, "a number"))
    }

    fn opt_f(&self, ptr: &str) -> Option<f64> {
        self.0.pointer(ptr).and_then(Value::as_f64)
    }

    fn counts(&self, ptr: &str) -> Result<BTreeMap<String, u64>, String> {
        let map = self
            .0
            .pointer(ptr)
            .and_then(Value::as_object)
            .ok_or_else(|| missing(ptr, "an object"))?;
        map.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_u64().ok_or_else(|| missing(ptr, "counts"))?)))
            .collect()
    }
}

fn missing(ptr: &str, what: &str) -> String {
    format!("{} missing or not {what}", ptr.trim_start_matches('/').replace('/', "."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::empty;

    /// A summary with every part filled in.
    fn full() -> Summary {
        let mut s = empty();
        s.connections = 4;
        s.attempted = 4;
        s.opened = 3;
        s.failed.insert("refused".into(), 1);
        s.storm = Storm { ramp_per_sec: 1000.0, first_connect: Some(0.0), last_open: Some(0.5) };
        (s.ticks, s.missed, s.steady_messages, s.steady_seconds) = (990, 10, 1000, 10.0);
        for us in [800, 900, 1000, 5000] {
            s.hists.tick.record(us);
        }
        s.hists.handshake.record(1500);
        s.hists.conn_median.record(950);
        s.churn = Some(Churn {
            per_sec: 5.0,
            closes: 10,
            closed_clean: 10,
            close_timeouts: 0,
            reconnects: 10,
            reconnected: 9,
            failed: [("token exchange: http status 503".to_string(), 1)].into(),
            unfinished: 0,
            skipped: 0,
        });
        s.server = Some(ServerFigures {
            pid: 7,
            cpu_seconds: 1.5,
            cpu_cores: 0.15,
            cpu_s_per_million_frames: Some(1.5),
            rss_baseline: 1 << 20,
            rss_start: 2 << 20,
            rss_end: 2 << 20,
            rss_per_connection: Some(1024.0),
        });
        let mut second = Second { t: 3, open: 3, messages: 300, ..Second::default() };
        second.set_latency(&s.hists.tick);
        s.timeline = vec![second];
        s.window = Some((1.0, 11.0));
        s.subscription = Some(Subscriptions {
            mode: "sets".into(),
            k: None,
            seed: None,
            symbols: None,
            subscribed: 3,
            distinct_sets: 2,
            refused: BTreeMap::new(),
            sets: vec![
                SetFigures {
                    symbols: vec!["A".into(), "B".into()],
                    connections: 2,
                    ticks: 600,
                    missed: 10,
                },
                SetFigures { symbols: vec!["C".into()], connections: 1, ticks: 390, missed: 0 },
            ],
        });
        s
    }

    #[test]
    fn a_summary_reads_back_from_its_json_as_it_was() {
        let s = full();
        let v = to_json(&s);
        let back = from_json(&v).unwrap();
        assert_eq!(to_json(&back), v, "nothing lost on the way");
        assert_eq!(back.hists.tick.summary(), s.hists.tick.summary());
        assert_eq!(back.timeline, s.timeline);
        assert_eq!(back.churn, s.churn);
        assert_eq!(back.subscription, s.subscription);
        assert_eq!(back.params[0], ("url".to_string(), "ws://h:1/ws".to_string()));
    }

    #[test]
    fn the_json_carries_every_histogram_fairness_storm_churn_and_errors() {
        let v = to_json(&full());
        assert_eq!(v["histograms"]["format"], FORMAT);
        for name in [
            "handshake_us",
            "tick_latency_us",
            "connection_median_us",
            "churn_reconnect_us",
            "churn_token_us",
        ] {
            let text = v["histograms"][name].as_str().unwrap_or_else(|| panic!("{name}"));
            assert!(text.starts_with("HISTF"), "{name}: {text}");
        }
        assert!(v["timeline"][0]["latency"].as_str().unwrap().starts_with("HISTF"));
        assert_eq!(v["fairness"]["spread_us"], 0);
        assert_eq!(v["storm"]["all_live_seconds"], Value::Null, "3 of 4 opened");
        assert_eq!(v["storm"]["live_after_seconds"], 0.5);
        assert_eq!(v["churn"]["failed"], 1);
        assert_eq!(v["errors"]["total"], 2, "one ramp failure and one reconnect failure");
        assert_eq!(v["steady"]["delivered_percent"], 99.0);
        assert_eq!(v["tick_latency_us"]["p50"], 900);
        let sub = &v["subscription"];
        assert_eq!((sub["mode"].as_str(), sub["distinct_sets"].as_u64()), (Some("sets"), Some(2)));
        assert_eq!(sub["sets"][0]["symbols"], json!(["A", "B"]));
        assert_eq!(sub["sets"][1]["delivered_percent"], 100.0);
    }

    #[test]
    fn a_random_subscription_reads_back_and_every_symbol_is_mode_all() {
        let mut s = empty();
        assert_eq!(to_json(&s)["subscription"], json!({ "mode": "all" }));
        assert_eq!(from_json(&to_json(&s)).unwrap().subscription, None);
        s.subscription = Some(Subscriptions {
            mode: "random".into(),
            k: Some(5),
            seed: Some(u64::MAX),
            symbols: Some(30),
            subscribed: 4,
            distinct_sets: 4,
            refused: [("subscribe refused: too many symbols".to_string(), 1)].into(),
            sets: Vec::new(),
        });
        let v = to_json(&s);
        assert_eq!(
            (v["subscription"]["k"].as_u64(), v["subscription"]["refused"].as_u64()),
            (Some(5), Some(1))
        );
        assert_eq!(v["errors"]["subscribe_refused"], 1);
        assert_eq!(v["errors"]["total"], 1);
        assert_eq!(from_json(&v).unwrap().subscription, s.subscription);
        // A file from before subscriptions: every symbol.
        let mut old = to_json(&empty());
        old.as_object_mut().unwrap().remove("subscription");
        assert_eq!(from_json(&old).unwrap().subscription, None);
    }

    #[test]
    fn a_file_without_histograms_or_with_a_broken_one_is_refused() {
        let mut v = to_json(&full());
        v["histograms"]["tick_latency_us"] = json!("AAAA");
        assert!(from_json(&v).unwrap_err().starts_with("tick_latency_us"));
        v.as_object_mut().unwrap().remove("histograms");
        assert!(from_json(&v).unwrap_err().contains("older ticker-load"));
        let mut v = to_json(&full());
        v["connections"]["opened"] = json!("3");
        assert_eq!(from_json(&v).unwrap_err(), "connections.opened missing or not a whole number");
    }
}
