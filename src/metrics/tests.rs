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
