//! The bundled load tool against the real server: a few subscribers, a short window,
//! and the numbers it reports checked for consistency.

use std::process::Command;

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
