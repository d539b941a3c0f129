use std::sync::Arc;
use std::time::Duration;

use super::*;

#[test]
fn histogram_buckets_are_cumulative_and_end_in_count() {
    let m = Metrics::new();
    m.observe_fanout(Duration::from_micros(50));
    m.observe_fanout(Duration::from_millis(3));
    m.observe_fanout(Duration::from_secs(5));
    let text = m.render();
    assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
    assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"0.005\"} 2\n"));
    assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"1\"} 2\n"));
    assert!(text.contains("ticker_fanout_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert!(text.contains("ticker_fanout_duration_seconds_count 3\n"));
}

#[test]
fn auth_outcomes_are_labelled() {
    let m = Metrics::new();
    m.auth(AuthOutcome::InvalidKey);
    m.auth(AuthOutcome::InvalidKey);
    assert!(m.render().contains("ticker_auth_requests_total{outcome=\"invalid_key\"} 2\n"));
}

/// An upstream with one fresh symbol and one that never had a price.
struct FakeUpstream;

impl UpstreamState for FakeUpstream {
    fn is_connected(&self) -> bool {
        true
    }
    fn each_price_age(
        &self,
        _now: std::time::Instant,
        each: &mut dyn FnMut(&str, Option<Duration>),
    ) {
        each("BTC-USD", Some(Duration::from_millis(1500)));
        each("ETH-USD", None);
    }
    fn stale_symbols(&self, _now: std::time::Instant, _stale_after: Duration) -> (usize, usize) {
        (1, 2)
    }
}

fn with_upstream() -> Metrics {
    let m = Metrics::new();
    m.set_upstream(Arc::new(FakeUpstream));
    m
}

#[test]
fn every_metric_of_the_table_is_rendered_once_with_its_help_and_type_in_table_order() {
    let text = with_upstream().render();
    let declared: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    let table: Vec<String> =
        TABLE.iter().map(|d| format!("{} {}", d.name, d.kind.as_str())).collect();
    assert_eq!(declared, table);
    for def in TABLE {
        let help = format!("# HELP {} {}\n# TYPE {} ", def.name, def.help, def.name);
        assert_eq!(text.matches(&help).count(), 1, "{}", def.name);
    }
    // Every sample belongs to the family declared just above it.
    let mut family = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap_or_default();
        } else if !line.starts_with('#') {
            let sample = line.split(['{', ' ']).next().unwrap_or_default();
            let own = sample == family
                || ["_bucket", "_sum", "_count"].iter().any(|s| *sample == format!("{family}{s}"));
            assert!(own, "{line:?} is not a sample of {family}");
        }
    }
}

#[test]
fn names_and_help_follow_the_prometheus_conventions() {
    let mut names: Vec<&str> = TABLE.iter().map(|d| d.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), TABLE.len(), "a name is declared twice");
    for def in TABLE {
        let name = def.name;
        assert!(name.starts_with("ticker_"), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        match def.kind {
            Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
            Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
            Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
        }
        assert!(def.help.ends_with('.') && !def.help.contains('\n'), "{name}: {:?}", def.help);
        if let Some(label) = def.label {
            assert!(label.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        }
    }
}

#[test]
fn a_labelled_metric_renders_one_sample_per_value_of_its_label() {
    let text = with_upstream().render();
    let mut labelled = 0;
    for def in TABLE {
        let Some(label) = def.label else { continue };
        let samples = text.lines().filter(|l| l.starts_with(&format!("{}{{", def.name))).count();
        let Some(values) = label.values else {
            // An open set: the upstream's symbols.
            assert_eq!(samples, 2, "{}", def.name);
            continue;
        };
        let values = values();
        assert_eq!(samples, values.len(), "{}", def.name);
        for value in values {
            let sample = format!("{}{{{}=\"{value}\"}} 0\n", def.name, label.name);
            assert_eq!(text.matches(&sample).count(), 1, "{sample}");
        }
        labelled += 1;
    }
    assert_eq!(
        labelled, 7,
        "sessions by mode, sessions_refused, auth, ws_auth, db, redis and source messages"
    );
}

/// Every value once, and at the slot its index names.
fn assert_label_is_sound<L: Label + PartialEq + std::fmt::Debug>() {
    for (i, v) in L::ALL.iter().enumerate() {
        assert_eq!(v.index(), i, "{v:?}");
    }
    let mut values: Vec<&str> = L::ALL.iter().map(|v| v.value()).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), L::ALL.len(), "{}: a value twice", L::NAME);
}

#[test]
fn label_enums_list_each_value_once_at_its_index() {
    assert_label_is_sound::<AuthOutcome>();
    assert_label_is_sound::<WsAuthOutcome>();
    assert_label_is_sound::<SessionLimit>();
    assert_label_is_sound::<crate::metrics::SessionMode>();
    assert_label_is_sound::<RedisErrorKind>();
    assert_label_is_sound::<SourceMessageKind>();
    assert_label_is_sound::<DbErrorKind>();
}

#[test]
fn every_database_error_kind_is_a_label_value() {
    // A new kind fails to build here until it is placed in `ALL` too.
    let slot = |k: DbErrorKind| match k {
        DbErrorKind::Missing => 0,
        DbErrorKind::Busy => 1,
        DbErrorKind::Corrupt => 2,
        DbErrorKind::Io => 3,
        DbErrorKind::NoRandomness => 4,
        DbErrorKind::Unreachable => 5,
        DbErrorKind::Other => 6,
    };
    assert_eq!(DbErrorKind::ALL.len(), 7);
    for (i, k) in DbErrorKind::ALL.iter().enumerate() {
        assert_eq!(slot(*k), i);
        assert_eq!(k.value(), k.label());
    }
}

#[test]
fn counting_a_label_value_moves_only_its_sample() {
    let m = Metrics::new();
    m.redis_error(RedisErrorKind::Timeout);
    m.source_message(SourceMessageKind::OutOfOrder);
    m.sessions_refused.inc(SessionLimit::PerIp);
    m.db_error(DbErrorKind::NoRandomness);
    m.ws_auth(WsAuthOutcome::Expired);
    let text = m.render();
    for sample in [
        "ticker_redis_errors_total{kind=\"timeout\"} 1\n",
        "ticker_redis_errors_total{kind=\"unreachable\"} 0\n",
        "ticker_source_messages_total{kind=\"out_of_order\"} 1\n",
        "ticker_source_messages_total{kind=\"price\"} 0\n",
        "ticker_sessions_refused_total{limit=\"per_ip\"} 1\n",
        "ticker_sessions_refused_total{limit=\"per_key\"} 0\n",
        "ticker_db_errors_total{kind=\"no_randomness\"} 1\n",
        "ticker_ws_auth_total{outcome=\"expired\"} 1\n",
    ] {
        assert!(text.contains(sample), "{sample}");
    }
    let counts = m.source_message_counts();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1);
    assert!(counts.contains(&("out_of_order", 1)));
}

#[test]
fn counters_and_gauges_render_name_help_type_and_value() {
    let m = Metrics::new();
    m.ticks.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    m.ws_sessions_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let text = m.render();
    assert!(text.contains(
        "# HELP ticker_ticks_total Ticks built by the ticker thread.\n\
         # TYPE ticker_ticks_total counter\nticker_ticks_total 3\n"
    ));
    assert!(text.contains(
        "# HELP ticker_ws_sessions_open Open WebSocket sessions.\n\
         # TYPE ticker_ws_sessions_open gauge\nticker_ws_sessions_open -1\n"
    ));
}

#[test]
fn the_upstream_gauges_are_rendered_only_with_an_upstream() {
    let text = Metrics::new().render();
    assert!(!text.contains("ticker_source_up"), "{text}");
    assert!(!text.contains("ticker_source_price_age_seconds"), "{text}");
    let m = with_upstream();
    let text = m.render();
    assert!(text.contains("\nticker_source_up 1\n"));
    assert!(text.contains("\nticker_source_price_age_seconds{symbol=\"BTC-USD\"} 1.5\n"));
    assert!(text.contains("\nticker_source_price_age_seconds{symbol=\"ETH-USD\"} +Inf\n"));
    let now = std::time::Instant::now();
    assert_eq!(m.upstream().map(|u| u.stale_symbols(now, Duration::ZERO)), Some((1, 2)));
}

#[test]
fn an_owned_counter_reads_its_owner_once_registered() {
    let m = Metrics::new();
    assert!(m.render().contains("\nticker_redis_failovers_total 0\n"));
    m.redis_failovers.read_from(|| 3);
    assert!(m.render().contains("\nticker_redis_failovers_total 3\n"));
}

#[test]
fn the_symbol_set_gauge_renders_what_the_loop_stored() {
    let m = Metrics::new();
    m.symbol_sets.store(4, std::sync::atomic::Ordering::Relaxed);
    assert!(m.render().ends_with(
        "# HELP ticker_symbol_sets Distinct symbol sets subscribed now.\n\
         # TYPE ticker_symbol_sets gauge\nticker_symbol_sets 4\n"
    ));
}
