//! `crypto-ticker source-check --source NAME [--for 5s]`: connects to the exchange the
//! way the server would (same thread, same book, same options), waits, and prints what
//! arrived: per symbol the price, updates and rate, the exchange's time and the clock
//! skew (arrival here minus the exchange's time), and the messages by kind. Lets a user
//! verify a source on their own network before serving from it.
//!
//! It only reads: no key database, no file written, whatever the options.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PriceSource, SourceKind, Upstream};
use crate::config::{self, Config};
use crate::metrics::Metrics;

/// The server options `source-check` shares.
const FLAGS: &[&str] =
    &["source", "source-url", "source-ca", "source-timeout", "stale-after", "symbols"];

/// `--for`'s bounds: a check is for a person watching.
const MAX_WATCH: Duration = Duration::from_secs(3600);

/// `source-check --help`; lines fit [`config::HELP_WIDTH`] columns, as the server's
/// `--help`.
pub fn usage() -> String {
    let mut usage = String::from(
        "crypto-ticker source-check: try a price source from this network

USAGE:
    crypto-ticker source-check --source coinbase|binance|kraken [--for 5s]
        [--source-url URL] [--source-ca PEM] [--symbols BTC-USD:0,...] [--source-timeout 5s]

Connects the way the server would, for a few seconds (--for, 0s to 1h, default 5s), and
prints the prices, message rate and clock skew that arrived. It writes no file and needs
no key database. Exit status: 0 when at least one price arrived, 1 when none did, 2 for
bad arguments.

OPTIONS (the server's: same variables and defaults):
",
    );
    usage.push_str(&config::options_text(FLAGS));
    usage
}

/// Runs the check; `Ok(true)` when at least one price arrived. The report goes to
/// stdout, the connection's log lines to stderr.
pub fn run(args: &[String]) -> Result<bool, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", usage());
        return Ok(true);
    }
    let env = |name: &str| std::env::var(name).ok();
    let (config, rest) = config::parse_subset(args, env, FLAGS).map_err(|e| e.to_string())?;
    let mut duration = Duration::from_secs(5);
    let mut rest = rest.into_iter();
    while let Some(arg) = rest.next() {
        let value = match arg.strip_prefix("--for") {
            Some("") => rest.next().ok_or("--for needs a value")?,
            Some(v) if v.starts_with('=') => v[1..].to_owned(),
            _ => return Err(format!("unexpected argument {arg:?}\n\n{}", usage())),
        };
        duration =
            config::duration_in(&value, Duration::ZERO, MAX_WATCH).map_err(|e| e.about("--for"))?;
    }
    check(&config, duration)
}

fn check(config: &Config, duration: Duration) -> Result<bool, String> {
    let SourceKind::Exchange(exchange) = config.source else {
        return Err(format!("source-check needs --source coinbase|binance|kraken\n\n{}", usage()));
    };
    let upstream_config = config.upstream_config(exchange);
    let url = upstream_config.url.clone();
    let metrics = Arc::new(Metrics::new());
    let upstream = Upstream::new(upstream_config, &config.symbols, metrics.clone())
        .map_err(|e| format!("--source: {e}"))?;
    let book = upstream.book().clone();
    let mut source = PriceSource::Upstream(upstream);
    let started = Instant::now();
    source.activate().map_err(|e| format!("cannot start the upstream thread: {e}"))?;
    std::thread::sleep(duration);
    let now = Instant::now();
    let elapsed = now.duration_since(started).as_secs_f64();
    let connected = book.is_connected();
    let stats = book.stats(now);
    source.deactivate();

    let mut out = String::new();
    let _ = writeln!(out, "source {exchange} at {url}, watched for {elapsed:.1} s");
    let _ = writeln!(
        out,
        "connected at the end: {}; reconnects: {}; failed connects: {}",
        if connected { "yes" } else { "no" },
        metrics.source_reconnects.load(std::sync::atomic::Ordering::Relaxed),
        metrics.source_connect_failures.load(std::sync::atomic::Ordering::Relaxed),
    );
    let messages = metrics.source_message_counts();
    let total: u64 = messages.iter().map(|(_, n)| n).sum();
    let kinds: Vec<String> =
        messages.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "messages: {total} ({:.1}/s){}{}",
        total as f64 / elapsed.max(0.001),
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(", ")
    );
    let _ = writeln!(
        out,
        "\n{:<12} {:<12} {:>14} {:>8} {:>8} {:>15} {:>9}",
        "symbol", "exchange", "price", "updates", "per s", "source_ts (ms)", "skew ms"
    );
    let mut any = false;
    for s in &stats {
        any |= s.updates > 0;
        let remote = match (&s.remote, s.unlisted) {
            (None, _) => "(none)".to_owned(),
            (Some(r), true) => format!("{r} (unlisted)"),
            (Some(r), false) => r.clone(),
        };
        let dash = || "-".to_owned();
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:>14} {:>8} {:>8.1} {:>15} {:>9}",
            s.symbol,
            remote,
            if s.updates > 0 { format!("{}", s.price) } else { dash() },
            s.updates,
            s.updates as f64 / elapsed.max(0.001),
            s.ts_ms.map_or_else(dash, |t| t.to_string()),
            s.skew_ms.map_or_else(dash, |k| format!("{k:+}")),
        );
    }
    if !any {
        let _ = writeln!(out, "\nno price arrived (see the log lines above for why)");
    }
    print!("{out}");
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_source_check_help_fits_100_columns() {
        let help = usage();
        assert_eq!(config::too_wide(&help), Vec::<&str>::new());
        for flag in FLAGS {
            assert!(help.contains(&format!("--{flag} <value>")), "{flag}: {help}");
        }
    }

    #[test]
    fn a_watch_time_out_of_range_names_for_and_its_bounds() {
        let args = ["--source", "coinbase", "--for", "2h"].map(String::from);
        let err = run(&args).unwrap_err();
        assert_eq!(err, "--for must be between 0s and 1h, got 2h");
    }
}
