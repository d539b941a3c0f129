//! The `--json` file: a [`Summary`] written out, and read back for `merge`.
//!
//! Besides the figures (percentiles in µs, counts, reasons), the file carries every
//! latency histogram in HdrHistogram's standard text form — the V2 compressed encoding
//! in base64, as in HdrHistogram log files — under `histograms`, and each second's
//! under `timeline[i].latency`. Any HdrHistogram library reads them; `merge` adds them
//! up, so a merged percentile is exact to the histograms' 3 significant digits.
//!
//! [`schema`] is the file, field for field; this module turns a [`Summary`] into it and
//! back. [`located`] reads it with errors that name the field.

mod located;
mod schema;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::deflate::DeflateCounters;
use crate::delta::DeltaCounters;
use crate::run::SATURATED;
use crate::stats::{Hists, Latency};
use crate::summary::{Churn, ServerFigures, SetFigures, Storm, Subscriptions, Summary};
use schema::{
    ChurnFile, ConnectionsFile, DeflateFile, DeltaFile, ErrorsFile, FairnessFile, LoadToolFile,
    RunFile, ServerFile, SetFile, SteadyFile, StormFile, SubscriptionFile, WireFile,
};

/// The value of `histograms.format`.
pub(crate) const FORMAT: &str = "HdrHistogram V2 compressed, base64";

pub(crate) fn to_json(s: &Summary) -> Value {
    // Only maps with string keys and finite-or-null numbers: serializing cannot fail.
    serde_json::to_value(RunFile::from(s)).unwrap_or(Value::Null)
}

/// Reads a summary back from [`to_json`]'s form. The histograms are required: without
/// them (a file from an older ticker-load) percentiles could only be averaged.
pub(crate) fn from_json(v: &Value) -> Result<Summary, String> {
    if !v.get("histograms").is_some_and(Value::is_object) {
        return Err("no \"histograms\" (saved by an older ticker-load?): percentiles cannot be \
                    merged exactly"
            .into());
    }
    located::from_value::<RunFile>(v)?.into_summary()
}

impl From<&Summary> for RunFile {
    fn from(s: &Summary) -> RunFile {
        let mut histograms: BTreeMap<String, Option<String>> =
            s.hists.named().into_iter().map(|(name, h)| (name.to_string(), h.encode())).collect();
        histograms.insert("format".into(), Some(FORMAT.into()));
        RunFile {
            tool: "ticker-load".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: params(s),
            connections: ConnectionsFile {
                requested: s.connections,
                attempted: s.attempted,
                opened: s.opened,
                failed: s.failed_total(),
                failed_by: s.failed.clone(),
                dropped: s.dropped_total(),
                dropped_by: s.dropped.clone(),
                closed_clean: s.closed_clean,
            },
            errors: ErrorsFile {
                failed: s.failed_total(),
                dropped: s.dropped_total(),
                churn_failed: s.churn.as_ref().map_or(0, Churn::failed_total),
                subscribe_refused: s.subscribe_refused(),
                total: s.errors(),
            },
            ramp_seconds: s.ramp_seconds,
            storm: StormFile {
                ramp_per_sec: s.storm.ramp_per_sec,
                planned_seconds: s.planned_ramp(),
                first_connect_seconds: s.storm.first_connect,
                last_open_seconds: s.storm.last_open,
                live_after_seconds: s.live_after(),
                all_live_seconds: s.all_live_after(),
                live: s.opened,
                requested: s.connections,
                handshake_us: s.hists.handshake.summary(),
            },
            handshake_us: s.hists.handshake.summary(),
            steady: SteadyFile {
                seconds: s.steady_seconds,
                messages: s.steady_messages,
                messages_per_sec: s.messages_per_sec,
                ticks: s.ticks,
                missed: s.missed,
                repeats: s.repeats,
                out_of_order: s.backwards,
                delivered_percent: s.delivered_percent(),
            },
            window_seconds: s.window,
            tick_latency_us: s.hists.tick.summary(),
            fairness: s.fairness().map(|f| FairnessFile {
                connections: f.connections,
                best_us: f.best,
                median_us: f.median,
                worst_us: f.worst,
                spread_us: f.spread(),
                min_ticks: crate::fairness::MIN_SAMPLES,
            }),
            churn: s.churn.as_ref().map(|c| churn_file(c, &s.hists)),
            subscription: s
                .subscription
                .as_ref()
                .map(|sub| subscription_file(sub, s.delta.is_some())),
            messages_total: s.messages_total,
            bytes_total: s.bytes_total,
            wire: s.steady_bytes.map(|steady_bytes| WireFile {
                steady_bytes,
                bytes_per_subscriber_per_sec: s.bytes_per_subscriber_per_sec(),
                bytes_per_message: s.bytes_per_message(),
                messages_per_subscriber_per_sec: s.messages_per_subscriber_per_sec(),
            }),
            deflate: s.deflate.as_ref().map(deflate_file),
            delta: s.delta.map(|d| DeltaFile {
                full: d.full,
                changes: d.changes,
                heartbeats: d.heartbeats,
                chain_breaks: d.breaks,
                unsynced: d.unsynced,
                plain: d.plain,
            }),
            server: s.server.map(server_file),
            load_tool: LoadToolFile {
                threads: s.threads,
                cpu_cores: s.tool_cores,
                busiest_thread_core_share: s.tool_thread_core_max,
                saturated: s.tool_thread_core_max >= SATURATED,
            },
            interrupted: s.interrupted,
            warnings: s.warnings.clone(),
            histograms,
            timeline: s.timeline.clone(),
        }
    }
}

/// `params` with `urls` as a list, and `url` kept as the first URL for readers of
/// files from before `--url` could repeat.
fn params(s: &Summary) -> BTreeMap<String, Value> {
    let mut params: BTreeMap<String, Value> = s
        .params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "url" | "urls"))
        .map(|(k, v)| (k.replace(' ', "_"), Value::from(v.as_str())))
        .collect();
    params.insert("url".into(), s.urls.first().map_or(Value::Null, |u| Value::from(u.as_str())));
    params.insert("urls".into(), Value::from(s.urls.clone()));
    params
}

fn churn_file(c: &Churn, hists: &Hists) -> ChurnFile {
    ChurnFile {
        rate_per_sec: c.per_sec,
        closes: c.closes,
        closed_clean: c.closed_clean,
        close_timeouts: c.close_timeouts,
        reconnects: c.reconnects,
        reconnected: c.reconnected,
        failed: c.failed_total(),
        failed_by: c.failed.clone(),
        unfinished: c.unfinished,
        skipped: c.skipped,
        reconnect_us: hists.reconnect.summary(),
        token_us: hists.token.summary(),
    }
}

/// `delta`: a delta session, where a set's delivered % is not known from seq gaps.
fn subscription_file(sub: &Subscriptions, delta: bool) -> SubscriptionFile {
    SubscriptionFile {
        mode: Some(sub.mode.clone()),
        distinct_sets: sub.distinct_sets,
        subscribed: sub.subscribed,
        k: sub.k,
        seed: sub.seed,
        symbols: sub.symbols,
        refused: sub.refused_total(),
        refused_by: sub.refused.clone(),
        sets: sub
            .sets
            .iter()
            .map(|set| SetFile {
                symbols: set.symbols.clone(),
                connections: set.connections,
                ticks: set.ticks,
                missed: set.missed,
                delivered_percent: set.delivered_percent().filter(|_| !delta),
            })
            .collect(),
    }
}

fn deflate_file(d: &DeflateCounters) -> DeflateFile {
    DeflateFile {
        accepted: d.accepted_total(),
        accepted_by: d.accepted.clone(),
        declined: d.declined,
        messages: d.messages,
        compressed_bytes: d.compressed_bytes,
        inflated_bytes: d.inflated_bytes,
        ratio: crate::summary::ratio(d),
    }
}

fn server_file(v: ServerFigures) -> ServerFile {
    ServerFile {
        pid: v.pid,
        cpu_seconds: v.cpu_seconds,
        cpu_cores: v.cpu_cores,
        cpu_s_per_million_frames: v.cpu_s_per_million_frames,
        cpu_us_per_frame: v.cpu_s_per_million_frames,
        rss_baseline_bytes: v.rss_baseline,
        rss_window_start_bytes: v.rss_start,
        rss_window_end_bytes: v.rss_end,
        rss_bytes_per_connection: v.rss_per_connection,
    }
}

impl RunFile {
    /// The summary the file was written from. Derived figures (totals, percentiles,
    /// the fairness spread) are not read: they come again from the counts and the
    /// histograms.
    fn into_summary(self) -> Result<Summary, String> {
        let hists = hists(&self.histograms)?;
        let (params, urls) = params_and_urls(self.params);
        let c = self.connections;
        Ok(Summary {
            params,
            urls,
            connections: c.requested,
            attempted: c.attempted,
            opened: c.opened,
            failed: c.failed_by,
            dropped: c.dropped_by,
            closed_clean: c.closed_clean,
            ramp_seconds: self.ramp_seconds,
            storm: Storm {
                ramp_per_sec: self.storm.ramp_per_sec,
                first_connect: self.storm.first_connect_seconds,
                last_open: self.storm.last_open_seconds,
            },
            steady_seconds: self.steady.seconds,
            messages_total: self.messages_total,
            bytes_total: self.bytes_total,
            steady_bytes: self.wire.map(|w| w.steady_bytes),
            steady_messages: self.steady.messages,
            messages_per_sec: self.steady.messages_per_sec,
            ticks: self.steady.ticks,
            missed: self.steady.missed,
            repeats: self.steady.repeats,
            backwards: self.steady.out_of_order,
            churn: self.churn.map(ChurnFile::into_churn),
            subscription: self.subscription.and_then(SubscriptionFile::into_subscriptions),
            deflate: self.deflate.map(|d| DeflateCounters {
                accepted: d.accepted_by,
                declined: d.declined,
                messages: d.messages,
                compressed_bytes: d.compressed_bytes,
                inflated_bytes: d.inflated_bytes,
            }),
            delta: self.delta.map(|d| DeltaCounters {
                full: d.full,
                changes: d.changes,
                heartbeats: d.heartbeats,
                breaks: d.chain_breaks,
                unsynced: d.unsynced,
                plain: d.plain,
            }),
            hists,
            server: self.server.map(ServerFile::into_figures),
            tool_cores: self.load_tool.cpu_cores,
            tool_thread_core_max: self.load_tool.busiest_thread_core_share,
            threads: self.load_tool.threads,
            interrupted: self.interrupted,
            warnings: self.warnings,
            timeline: self.timeline,
            window: self.window_seconds,
        })
    }
}

fn hists(encoded: &BTreeMap<String, Option<String>>) -> Result<Hists, String> {
    let mut hists = Hists::default();
    for (name, h) in hists.named_mut() {
        let Some(Some(text)) = encoded.get(name) else {
            return Err(format!("histograms.{name} missing"));
        };
        *h = Latency::decode(text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(hists)
}

/// The summary's parameters, the URLs first, and the URLs: from `urls`, or from `url`
/// in files from before `--url` could repeat.
fn params_and_urls(mut file: BTreeMap<String, Value>) -> (Vec<(String, String)>, Vec<String>) {
    let urls: Vec<String> = match (file.remove("urls"), file.remove("url")) {
        (Some(Value::Array(urls)), _) => {
            urls.iter().filter_map(Value::as_str).map(String::from).collect()
        }
        (_, Some(Value::String(url))) => vec![url],
        _ => Vec::new(),
    };
    let mut params =
        vec![(if urls.len() == 1 { "url" } else { "urls" }.to_string(), urls.join(" "))];
    for (k, val) in file {
        let text = val.as_str().map_or_else(|| val.to_string(), String::from);
        params.push((k.replace('_', " "), text));
    }
    (params, urls)
}

impl ChurnFile {
    fn into_churn(self) -> Churn {
        Churn {
            per_sec: self.rate_per_sec,
            closes: self.closes,
            closed_clean: self.closed_clean,
            close_timeouts: self.close_timeouts,
            reconnects: self.reconnects,
            reconnected: self.reconnected,
            failed: self.failed_by,
            unfinished: self.unfinished,
            skipped: self.skipped,
        }
    }
}

impl SubscriptionFile {
    /// `None` for `"mode": "all"` (every symbol), or no mode.
    fn into_subscriptions(self) -> Option<Subscriptions> {
        let mode = self.mode.filter(|m| m != "all")?;
        Some(Subscriptions {
            mode,
            k: self.k,
            seed: self.seed,
            symbols: self.symbols,
            subscribed: self.subscribed,
            distinct_sets: self.distinct_sets,
            refused: self.refused_by,
            sets: self
                .sets
                .into_iter()
                .map(|set| SetFigures {
                    symbols: set.symbols,
                    connections: set.connections,
                    ticks: set.ticks,
                    missed: set.missed,
                })
                .collect(),
        })
    }
}

impl ServerFile {
    fn into_figures(self) -> ServerFigures {
        ServerFigures {
            pid: self.pid,
            cpu_seconds: self.cpu_seconds,
            cpu_cores: self.cpu_cores,
            cpu_s_per_million_frames: self.cpu_s_per_million_frames,
            rss_baseline: self.rss_baseline_bytes,
            rss_start: self.rss_window_start_bytes,
            rss_end: self.rss_window_end_bytes,
            rss_per_connection: self.rss_bytes_per_connection,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::run::Second;
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
        s.steady_bytes = Some(123_456);
        s.deflate = Some(DeflateCounters {
            accepted: [("permessage-deflate; server_no_context_takeover".to_string(), 3)].into(),
            declined: 0,
            messages: 990,
            compressed_bytes: 50_000,
            inflated_bytes: 200_000,
        });
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
        assert_eq!(
            (back.steady_bytes, &back.deflate, back.delta),
            (s.steady_bytes, &s.deflate, s.delta)
        );

        // A delta session: seq gaps say nothing, so no delivered %, per set neither.
        let mut d = full();
        d.delta = Some(DeltaCounters {
            full: 3,
            changes: 987,
            heartbeats: 20,
            breaks: 1,
            unsynced: 2,
            plain: 0,
        });
        let v = to_json(&d);
        assert_eq!(from_json(&v).unwrap().delta, d.delta);
        assert_eq!(to_json(&from_json(&v).unwrap()), v);
        assert_eq!(v["delta"]["chain_breaks"], 1);
        assert_eq!(v["steady"]["delivered_percent"], Value::Null);
        assert_eq!(v["subscription"]["sets"][0]["delivered_percent"], Value::Null);
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
        // 123,456 bytes over 3 subscribers and 10 s; 1,000 messages.
        assert_eq!(v["wire"]["steady_bytes"], 123_456);
        assert_eq!(v["wire"]["bytes_per_subscriber_per_sec"], 4115.2);
        assert_eq!(v["wire"]["bytes_per_message"], 123.456);
        assert_eq!(v["deflate"]["accepted"], 3);
        assert_eq!(v["deflate"]["ratio"], 4.0);
    }

    #[test]
    fn a_file_without_the_wire_figures_reads_as_before() {
        let mut v = to_json(&full());
        for field in ["wire", "deflate", "delta"] {
            v.as_object_mut().unwrap().remove(field);
        }
        let s = from_json(&v).unwrap();
        assert_eq!((s.steady_bytes, &s.deflate, s.delta), (None, &None, None));
        assert_eq!(to_json(&s), v, "and writes out without them");
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

    /// Files written by ticker-load before the JSON was derived with serde (a run with
    /// `--subscribe` sets, `--churn` and `--server-pid`; one with `--subscribe-random`):
    /// read, and written again, they are what they were.
    #[test]
    fn files_of_the_hand_written_writer_read_back_and_write_out_the_same() {
        for text in [
            include_str!("../tests/data/run-sets-churn-server.json"),
            include_str!("../tests/data/run-random.json"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let s = from_json(&v).unwrap();
            assert!(s.hists.tick.count() > 0 && !s.timeline.is_empty());
            // Equal to the file as parsed (serde_json's float parsing may move a last
            // digit of the text, on the way in only), histograms compared by content:
            // their DEFLATE bytes depend on the zlib backend the build links (the
            // server's zlib-rs when the workspace is built together).
            assert_eq!(canonical_histograms(to_json(&s)), canonical_histograms(v));
        }
    }

    /// Every encoded histogram in a run file, re-encoded by this build.
    fn canonical_histograms(mut v: Value) -> Value {
        let again = |text: &mut Value| {
            if let Some(t) = text.as_str() {
                *text = json!(crate::stats::Latency::decode(t).unwrap().encode().unwrap());
            }
        };
        if let Some(map) = v["histograms"].as_object_mut() {
            map.iter_mut().filter(|(name, _)| *name != "format").for_each(|(_, h)| again(h));
        }
        if let Some(seconds) = v["timeline"].as_array_mut() {
            seconds.iter_mut().for_each(|second| again(&mut second["latency"]));
        }
        v
    }

    #[test]
    fn a_refused_field_is_named_by_its_path_and_what_it_must_be() {
        let broken = |edit: fn(&mut Value)| {
            let mut v = to_json(&full());
            edit(&mut v);
            from_json(&v).unwrap_err()
        };
        let mut v = to_json(&full());
        v["steady"]["from_a_newer_version"] = json!(1);
        assert!(from_json(&v).is_ok(), "a field it does not know is ignored");
        assert_eq!(
            broken(|v| {
                v["steady"].as_object_mut().unwrap().remove("ticks");
            }),
            "steady.ticks missing or not a whole number"
        );
        assert_eq!(
            broken(|v| v["storm"]["ramp_per_sec"] = json!("fast")),
            "storm.ramp_per_sec missing or not a number"
        );
        assert_eq!(
            broken(|v| v["timeline"][0]["open"] = json!(-1)),
            "timeline[0].open missing or not a whole number"
        );
        assert_eq!(
            broken(|v| v["churn"]["failed_by"]["refused"] = json!(1.5)),
            "churn.failed_by.refused missing or not a whole number"
        );
        for not_an_object in [json!([1, 0.5, 0.1]), json!("x"), Value::Null] {
            let mut v = to_json(&full());
            v["load_tool"] = not_an_object;
            assert_eq!(from_json(&v).unwrap_err(), "load_tool missing or not an object");
        }
        // Left out, an optional figure is none and a field with a default is its default.
        let mut v = to_json(&full());
        for field in ["server", "churn", "warnings", "interrupted", "timeline", "params"] {
            v.as_object_mut().unwrap().remove(field);
        }
        let s = from_json(&v).unwrap();
        assert_eq!((s.server, s.churn, s.timeline.len(), s.interrupted), (None, None, 0, false));
        assert_eq!(s.params, [("urls".to_string(), String::new())]);
    }
}
