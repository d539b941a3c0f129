//! The bundled load tool against the real server: a few subscribers, a short window,
//! and the numbers it reports checked for consistency.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

#[cfg(feature = "tls")]
use crate::tls::{Ca, start_tls};
use crate::util::*;

/// Builds `ticker-load` into its own target folder (a nested cargo must not wait on the
/// lock of the cargo running these tests) and returns the binary.
fn load_tool_binary() -> std::path::PathBuf {
    let target = repo_path("target/nested-load-tool");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "ticker-load", "--target-dir"])
        .arg(&target)
        .current_dir(repo_path("."))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building ticker-load failed");
    target.join("debug").join("ticker-load")
}

#[test]
fn the_load_tool_measures_a_few_subscribers_of_the_real_server() {
    let bin = load_tool_binary();
    let s = TestServer::start();
    let json = s.dir.path().join("run.json");
    let report = s.dir.path().join("report.html");
    let out = Command::new(bin)
        .args(["--url", &format!("http://{}", s.addr), "--connections", "5", "--ramp", "100/s"])
        .args(["--warmup", "1s", "--duration", "2s", "--quiet"])
        .args(["--server-pid", &s.pid().to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&report)
        .env("TICKER_LOAD_API_KEY", &s.demo_key)
        .output()
        .expect("run ticker-load");
    assert!(
        out.status.success(),
        "ticker-load failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["connections"]["opened"], 5);
    assert_eq!(v["connections"]["failed"], 0);
    let steady = &v["steady"];
    assert!(steady["messages"].as_u64().unwrap() > 0);
    assert!(steady["ticks"].as_u64().unwrap() > 0);
    let delivered = steady["delivered_percent"].as_f64().unwrap();
    assert!(delivered > 0.0 && delivered <= 100.0, "{delivered}");
    assert!(
        v["tick_latency_us"]["p50"].as_f64().unwrap()
            <= v["tick_latency_us"]["max"].as_f64().unwrap()
    );
    assert!(v["server"]["cpu_us_per_frame"].as_f64().is_some(), "server figures with --server-pid");
    // The server saw the same sessions the tool opened.
    assert_eq!(s.metric("ticker_ws_sessions_total"), 5.0);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<svg") && !html.contains("http://cdn") && !html.contains("https://"),
        "self-contained report"
    );
}

/// The CA's certificate as a PEM file in `dir`, for `--ca`.
#[cfg(feature = "tls")]
fn write_ca_pem(ca: &Ca, dir: &Path) -> std::path::PathBuf {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let b64 = STANDARD.encode(&ca.cert);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// Runs the tool for a short window, with the demo key unless `--no-auth` is given; its
/// output and its JSON summary (`Null` if it wrote none).
fn run_tool(bin: &Path, s: &TestServer, name: &str, args: &[&str]) -> (Output, Value) {
    let json = s.dir.path().join(format!("{name}.json"));
    let mut cmd = Command::new(bin);
    cmd.args(args).args(["--ramp", "100/s", "--warmup", "1s", "--quiet", "--json"]).arg(&json);
    if args.contains(&"--no-auth") {
        cmd.env_remove("TICKER_LOAD_API_KEY");
    } else {
        cmd.env("TICKER_LOAD_API_KEY", &s.demo_key);
    }
    let out = cmd.output().expect("run ticker-load");
    let v = std::fs::read_to_string(&json)
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(Value::Null);
    (out, v)
}

fn output_text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
#[cfg(feature = "tls")]
fn the_load_tool_speaks_tls_to_the_real_server_with_a_private_ca() {
    let bin = load_tool_binary();
    let ca = Ca::new("load test CA");
    let (s, _) = start_tls(&ca, &[]);
    let ca_pem = write_ca_pem(&ca, s.dir.path());
    let ca_pem = ca_pem.to_str().unwrap();
    let port = s.addr.port();

    // https://: the token from POST /auth/token over TLS, the stream over wss://, on
    // one symbol chosen at the upgrade.
    let url = format!("https://127.0.0.1:{port}");
    let (out, v) = run_tool(
        &bin,
        &s,
        "https",
        &["--url", &url, "--ca", ca_pem, "--connections", "5", "--duration", "2s"]
            .into_iter()
            .chain(["--subscribe", "ETH-USD"])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "ticker-load failed:\n{}", output_text(&out));
    assert_eq!(v["params"]["urls"][0], format!("wss://127.0.0.1:{port}/ws/ticker"), "{v:#}");
    assert_eq!(v["connections"]["opened"], 5, "{v:#}");
    assert_eq!(v["connections"]["failed"], 0, "{v:#}");
    assert!(v["steady"]["ticks"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["steady"]["delivered_percent"].as_f64().unwrap() > 0.0);
    // The handshake figures include the TLS handshake: one per connection, measured.
    assert_eq!(v["handshake_us"]["count"], 5);
    assert!(v["handshake_us"]["p50"].as_u64().unwrap() > 0);
    assert_eq!(v["subscription"]["sets"][0]["connections"], 5, "{v:#}");

    // wss://HOST:PORT/PATH, the token in the query, and churn: each reopen gets its
    // token on a TLS connection of its own, then upgrades on another; each connection
    // sends its random pick of 2 symbols over TLS.
    let url = format!("wss://localhost:{port}/ws/ticker");
    let (out, v) = run_tool(
        &bin,
        &s,
        "wss",
        &["--url", &url, "--ca", ca_pem, "--token-in-query", "--connections", "3"]
            .into_iter()
            .chain(["--duration", "2s", "--churn", "3/s", "--subscribe-random", "2"])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "ticker-load failed:\n{}", output_text(&out));
    assert_eq!(v["connections"]["opened"], 3, "{v:#}");
    assert_eq!(v["connections"]["failed"], 0, "{v:#}");
    assert!(v["steady"]["ticks"].as_u64().unwrap() > 0, "{v:#}");
    let churn = &v["churn"];
    assert!(churn["reconnected"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(churn["failed"], 0, "{v:#}");
    // Every connection, reconnects included, subscribed: the 3 of the ramp at least.
    assert_eq!(v["subscription"]["refused"], 0, "{v:#}");
    assert!(v["subscription"]["subscribed"].as_u64().unwrap() >= 3, "{v:#}");
    assert_eq!(v["steady"]["repeats"], 0, "{v:#}");
}

#[test]
#[cfg(feature = "tls")]
fn without_the_private_ca_the_load_tool_refuses_the_certificate_and_says_so() {
    let bin = load_tool_binary();
    let ca = Ca::new("unknown CA");
    let (s, _) = start_tls(&ca, &[]);
    let port = s.addr.port();

    // With an API key, the token exchange is the first to meet the certificate.
    let url = format!("https://127.0.0.1:{port}");
    let (out, _) = run_tool(&bin, &s, "token", &["--url", &url, "--connections", "2"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("certificate") && text.contains("--ca"), "{text}");

    // Without one, every connection fails its TLS handshake, counted by that reason.
    let url = format!("wss://127.0.0.1:{port}/ws/ticker");
    let args = ["--url", &url, "--no-auth", "--connections", "2", "--duration", "1s"];
    let (out, v) = run_tool(&bin, &s, "stream", &args);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "no connection opened: {text}");
    assert_eq!(v["connections"]["opened"], 0, "{v:#}");
    assert_eq!(v["connections"]["failed"], 2, "{v:#}");
    let reasons = v["connections"]["failed_by"].as_object().unwrap();
    assert!(reasons.keys().all(|r| r.contains("certificate")), "{reasons:?}");
    assert!(text.contains("unknown issuer"), "the table names the reason: {text}");
}

/// `--symbols S0-USD:1,S1-USD:2,...` for `n` symbols.
fn symbols_arg(n: usize) -> String {
    (0..n).map(|i| format!("S{i}-USD:{}", i + 1)).collect::<Vec<_>>().join(",")
}

#[test]
fn the_load_tool_subscribes_its_connections_to_symbol_sets_of_the_real_server() {
    let bin = load_tool_binary();
    let s = TestServer::start_with(Opts::default().arg("--symbols", &symbols_arg(30)));
    let url = format!("http://{}", s.addr);

    // Two --subscribe sets over 4 connections: two each, chosen at the upgrade.
    let args = ["--url", &url, "--connections", "4", "--duration", "2s"];
    let sets = ["--subscribe", "S0-USD,S1-USD,S2-USD", "--subscribe", "S3-USD,S4-USD"];
    let (out, v) = run_tool(&bin, &s, "sets", &[&args[..], &sets[..]].concat());
    assert!(out.status.success(), "ticker-load failed:\n{}", output_text(&out));
    assert_eq!(v["connections"]["opened"], 4, "{v:#}");
    assert_eq!(v["connections"]["failed"], 0, "{v:#}");
    assert_eq!(v["errors"]["total"], 0, "{v:#}");
    assert!(v["steady"]["ticks"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["steady"]["delivered_percent"].as_f64().unwrap() > 0.0, "{v:#}");
    assert_eq!(v["steady"]["repeats"], 0, "{v:#}");
    let sub = &v["subscription"];
    assert_eq!(sub["mode"], "sets", "{v:#}");
    assert_eq!(sub["distinct_sets"], 2, "{v:#}");
    assert_eq!(sub["subscribed"], 4, "{v:#}");
    assert_eq!(sub["refused"], 0, "{v:#}");
    let per_set = sub["sets"].as_array().unwrap();
    assert_eq!(per_set.len(), 2);
    assert_eq!(per_set[0]["symbols"], serde_json::json!(["S0-USD", "S1-USD", "S2-USD"]));
    let set_ticks: u64 = per_set.iter().map(|s| s["ticks"].as_u64().unwrap()).sum();
    assert_eq!(set_ticks, v["steady"]["ticks"].as_u64().unwrap(), "every tick in one set");
    for set in per_set {
        assert_eq!(set["connections"], 2, "{v:#}");
        assert!(set["ticks"].as_u64().unwrap() > 0, "{v:#}");
        assert!(set["delivered_percent"].as_f64().unwrap() > 0.0, "{v:#}");
    }
    assert!(output_text(&out).contains("2 --subscribe sets, 2 distinct in use"));

    // A random 5 of the 30 symbols per connection, sent as `subscribe` messages.
    let changes = s.metric("ticker_subscription_changes_total");
    let args = ["--url", &url, "--connections", "5", "--duration", "2s"];
    let random = ["--subscribe-random", "5", "--seed", "7"];
    let (out, v) = run_tool(&bin, &s, "random", &[&args[..], &random[..]].concat());
    assert!(out.status.success(), "ticker-load failed:\n{}", output_text(&out));
    assert_eq!(v["connections"]["opened"], 5, "{v:#}");
    assert_eq!(v["connections"]["failed"], 0, "{v:#}");
    assert_eq!(v["errors"]["total"], 0, "{v:#}");
    assert!(v["steady"]["ticks"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["steady"]["delivered_percent"].as_f64().unwrap() > 0.0, "{v:#}");
    // The snapshot after each `subscribe` repeats the latest seq: neutral.
    assert_eq!(v["steady"]["repeats"], 0, "{v:#}");
    assert_eq!(v["steady"]["out_of_order"], 0, "{v:#}");
    let sub = &v["subscription"];
    assert_eq!(sub["mode"], "random", "{v:#}");
    assert_eq!(sub["k"], 5, "{v:#}");
    assert_eq!(sub["seed"], 7, "{v:#}");
    assert_eq!(sub["symbols"], 30, "{v:#}");
    assert_eq!(sub["subscribed"], 5, "{v:#}");
    assert_eq!(sub["refused"], 0, "{v:#}");
    let distinct = sub["distinct_sets"].as_u64().unwrap();
    assert!((1..=5).contains(&distinct), "{v:#}");
    assert_eq!(v["params"]["seed"], "7", "{v:#}");
    assert_eq!(s.metric("ticker_subscription_changes_total") - changes, 5.0);

    // An unknown symbol: the server refuses the upgrade (400), each connection fails.
    let args = ["--url", &url, "--connections", "2", "--duration", "1s"];
    let (out, v) = run_tool(&bin, &s, "nope", &[&args[..], &["--subscribe", "NOPE-USD"]].concat());
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "no connection opened: {text}");
    assert_eq!(v["connections"]["opened"], 0, "{v:#}");
    assert_eq!(v["connections"]["failed"], 2, "{v:#}");
    let reasons = v["connections"]["failed_by"].as_object().unwrap();
    assert!(reasons.keys().all(|r| r.contains("unknown symbol")), "{reasons:?}");
    assert!(text.contains("subscribe refused: unknown symbol"), "{text}");
}
