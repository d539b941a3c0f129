//! The `--json` file, field for field: these types serialize to exactly the file's
//! objects (the names are the file's; `to_json` goes through a `Value`, whose map sorts
//! the keys, as serde_json does without its `preserve_order` feature).
//!
//! Figures derived from others (totals, percentiles, the fairness spread, `saturated`)
//! are written for the file's readers and skipped when it is read back
//! (`skip_deserializing`): [`super`] derives them again from the counts and the
//! histograms. Fields with a default read `null` or absence as that default
//! ([`or_default`]); see [`super::located`] for why `#[serde(default)]` is not enough.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::located::or_default;
use crate::run::Second;
use crate::stats::Percentiles;

#[derive(Serialize, Deserialize)]
pub(super) struct RunFile {
    #[serde(skip_deserializing)]
    pub(super) tool: String,
    #[serde(skip_deserializing)]
    pub(super) version: String,
    /// The summary's parameters, spaces in names as `_`; `url` (the first) and `urls`.
    #[serde(default, deserialize_with = "or_default")]
    pub(super) params: BTreeMap<String, Value>,
    pub(super) connections: ConnectionsFile,
    #[serde(skip_deserializing)]
    pub(super) errors: ErrorsFile,
    pub(super) ramp_seconds: f64,
    pub(super) storm: StormFile,
    #[serde(skip_deserializing)]
    pub(super) handshake_us: Percentiles,
    pub(super) steady: SteadyFile,
    /// `[start, end]` in seconds from the start of the run.
    pub(super) window_seconds: Option<(f64, f64)>,
    #[serde(skip_deserializing)]
    pub(super) tick_latency_us: Percentiles,
    #[serde(skip_deserializing)]
    pub(super) fairness: Option<FairnessFile>,
    pub(super) churn: Option<ChurnFile>,
    /// `{"mode": "all"}` without `--subscribe` or `--subscribe-random`.
    #[serde(serialize_with = "all_when_none", default, deserialize_with = "or_default")]
    pub(super) subscription: Option<SubscriptionFile>,
    pub(super) messages_total: u64,
    pub(super) bytes_total: u64,
    /// Absent in files from before the steady window's bytes were counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) wire: Option<WireFile>,
    /// `--deflate` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deflate: Option<DeflateFile>,
    /// `--delta` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) delta: Option<DeltaFile>,
    pub(super) server: Option<ServerFile>,
    pub(super) load_tool: LoadToolFile,
    #[serde(default, deserialize_with = "or_default")]
    pub(super) interrupted: bool,
    #[serde(default, deserialize_with = "or_default")]
    pub(super) warnings: Vec<String>,
    /// `format` ([`super::FORMAT`]) and each histogram by its name in
    /// [`crate::stats::Hists::named`].
    pub(super) histograms: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "or_default")]
    pub(super) timeline: Vec<Second>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ConnectionsFile {
    pub(super) requested: u64,
    pub(super) attempted: u64,
    pub(super) opened: u64,
    #[serde(skip_deserializing)]
    pub(super) failed: u64,
    pub(super) failed_by: BTreeMap<String, u64>,
    #[serde(skip_deserializing)]
    pub(super) dropped: u64,
    pub(super) dropped_by: BTreeMap<String, u64>,
    pub(super) closed_clean: u64,
}

/// Written only: each a total of counts found elsewhere in the file.
#[derive(Serialize, Default)]
pub(super) struct ErrorsFile {
    pub(super) failed: u64,
    pub(super) dropped: u64,
    pub(super) churn_failed: u64,
    pub(super) subscribe_refused: u64,
    pub(super) total: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StormFile {
    pub(super) ramp_per_sec: f64,
    #[serde(skip_deserializing)]
    pub(super) planned_seconds: f64,
    pub(super) first_connect_seconds: Option<f64>,
    pub(super) last_open_seconds: Option<f64>,
    #[serde(skip_deserializing)]
    pub(super) live_after_seconds: Option<f64>,
    #[serde(skip_deserializing)]
    pub(super) all_live_seconds: Option<f64>,
    #[serde(skip_deserializing)]
    pub(super) live: u64,
    #[serde(skip_deserializing)]
    pub(super) requested: u64,
    #[serde(skip_deserializing)]
    pub(super) handshake_us: Percentiles,
}

#[derive(Serialize, Deserialize)]
pub(super) struct SteadyFile {
    pub(super) seconds: f64,
    pub(super) messages: u64,
    pub(super) messages_per_sec: f64,
    pub(super) ticks: u64,
    pub(super) missed: u64,
    pub(super) repeats: u64,
    pub(super) out_of_order: u64,
    #[serde(skip_deserializing)]
    pub(super) delivered_percent: Option<f64>,
}

/// Written only: read from the `connection_median_us` histogram.
#[derive(Serialize)]
pub(super) struct FairnessFile {
    pub(super) connections: u64,
    pub(super) best_us: u64,
    pub(super) median_us: u64,
    pub(super) worst_us: u64,
    pub(super) spread_us: u64,
    pub(super) min_ticks: u32,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ChurnFile {
    pub(super) rate_per_sec: f64,
    pub(super) closes: u64,
    pub(super) closed_clean: u64,
    pub(super) close_timeouts: u64,
    pub(super) reconnects: u64,
    pub(super) reconnected: u64,
    #[serde(skip_deserializing)]
    pub(super) failed: u64,
    pub(super) failed_by: BTreeMap<String, u64>,
    pub(super) unfinished: u64,
    pub(super) skipped: u64,
    #[serde(skip_deserializing)]
    pub(super) reconnect_us: Percentiles,
    #[serde(skip_deserializing)]
    pub(super) token_us: Percentiles,
}

/// Read leniently: `{"mode": "all"}` has none of the other fields.
#[derive(Serialize, Deserialize)]
pub(super) struct SubscriptionFile {
    /// `sets` or `random`; `all` (or none) reads as every symbol.
    pub(super) mode: Option<String>,
    #[serde(deserialize_with = "or_default")]
    pub(super) distinct_sets: u64,
    #[serde(deserialize_with = "or_default")]
    pub(super) subscribed: u64,
    pub(super) k: Option<u64>,
    pub(super) seed: Option<u64>,
    pub(super) symbols: Option<u64>,
    #[serde(skip_deserializing)]
    pub(super) refused: u64,
    #[serde(deserialize_with = "or_default")]
    pub(super) refused_by: BTreeMap<String, u64>,
    #[serde(deserialize_with = "or_default")]
    pub(super) sets: Vec<SetFile>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct SetFile {
    pub(super) symbols: Vec<String>,
    pub(super) connections: u64,
    pub(super) ticks: u64,
    pub(super) missed: u64,
    #[serde(skip_deserializing)]
    pub(super) delivered_percent: Option<f64>,
}

/// Bytes read in the steady window (after TLS decryption), and per subscriber (a
/// connection the ramp opened).
#[derive(Serialize, Deserialize)]
pub(super) struct WireFile {
    pub(super) steady_bytes: u64,
    #[serde(skip_deserializing)]
    pub(super) bytes_per_subscriber_per_sec: Option<f64>,
    #[serde(skip_deserializing)]
    pub(super) bytes_per_message: Option<f64>,
    #[serde(skip_deserializing)]
    pub(super) messages_per_subscriber_per_sec: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct DeflateFile {
    #[serde(skip_deserializing)]
    pub(super) accepted: u64,
    /// Upgrades by the answer that accepted permessage-deflate.
    #[serde(deserialize_with = "or_default")]
    pub(super) accepted_by: BTreeMap<String, u64>,
    pub(super) declined: u64,
    /// Steady window: compressed messages, their payload bytes and what they inflated to.
    pub(super) messages: u64,
    pub(super) compressed_bytes: u64,
    pub(super) inflated_bytes: u64,
    #[serde(skip_deserializing)]
    pub(super) ratio: Option<f64>,
}

/// Steady window: ticker messages by what they did to the rebuilt state.
#[derive(Serialize, Deserialize)]
pub(super) struct DeltaFile {
    pub(super) full: u64,
    pub(super) changes: u64,
    pub(super) heartbeats: u64,
    pub(super) chain_breaks: u64,
    pub(super) unsynced: u64,
    /// Ticker messages without `"delta"` (the server ignored `?delta=1`).
    pub(super) plain: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ServerFile {
    pub(super) pid: u32,
    pub(super) cpu_seconds: f64,
    pub(super) cpu_cores: f64,
    pub(super) cpu_s_per_million_frames: Option<f64>,
    /// The same figure as `cpu_s_per_million_frames` (µs per frame), under the name
    /// `ticker-load compare` and older readers use.
    #[serde(skip_deserializing)]
    pub(super) cpu_us_per_frame: Option<f64>,
    pub(super) rss_baseline_bytes: u64,
    pub(super) rss_window_start_bytes: u64,
    pub(super) rss_window_end_bytes: u64,
    pub(super) rss_bytes_per_connection: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LoadToolFile {
    pub(super) threads: u64,
    pub(super) cpu_cores: f64,
    pub(super) busiest_thread_core_share: f64,
    #[serde(skip_deserializing)]
    pub(super) saturated: bool,
}

/// Every symbol (no subscription figures) is written `{"mode": "all"}`.
fn all_when_none<S: Serializer>(sub: &Option<SubscriptionFile>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct EverySymbol {
        mode: &'static str,
    }
    match sub {
        Some(sub) => sub.serialize(s),
        None => EverySymbol { mode: "all" }.serialize(s),
    }
}
