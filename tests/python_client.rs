//! An independent client of the changes-only feed: `tools/delta_client.py` with Debian's
//! python3-websockets (10.4), whose own permessage-deflate both inflates what the server
//! sends and compresses what it sends. It holds a `?delta=1` session and a plain one
//! side by side and prints a JSON summary; this test starts the server and asserts on it.
//!
//! Only Debian's `/usr/bin/python3` imports that module (not a `python3` earlier on PATH).
//! Without it the test says SKIPPED; `.ci/run` installs it and sets `TICKER_REQUIRE_PYWS`,
//! so CI fails rather than skips.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

const PYTHON: &str = "/usr/bin/python3";

/// A hang guard for the whole script (its phases wait 10 s at most each).
const SCRIPT_GUARD: Duration = Duration::from_secs(120);

/// Whether Debian's Python imports `websockets`, or `None` after saying SKIPPED (or
/// failing when it is required).
fn python_websockets_or_skip() -> Option<()> {
    let found = Command::new(PYTHON)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        missing_tool(
            "TICKER_REQUIRE_PYWS",
            "/usr/bin/python3 cannot import websockets (apt-get install python3-websockets)",
        );
    }
    found.then_some(())
}

/// Runs the client against `s` and returns its summary.
fn run_client(s: &TestServer, extra: &[&str]) -> Value {
    let mut child = Command::new(PYTHON)
        .arg(repo_path("tools/delta_client.py"))
        .args(["--addr", &s.addr.to_string(), "--token", &s.token()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    // Both pipes are drained while it runs, so a chatty script cannot block on them.
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Python client ran past {SCRIPT_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "the Python client failed ({status}):\n{stderr}\n{stdout}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{stdout}\n{stderr}"))
}

#[test]
fn a_python_websockets_client_rebuilds_the_compressed_changes_only_feed() {
    let Some(()) = python_websockets_or_skip() else { return };
    // Each symbol moves in about a third of the ticks: most changes messages are partial.
    let s = TestServer::start_with(Opts::default().arg("--sim-activity", "0.3"));
    let summary = run_client(&s, &["--changes", "100", "--subscribe", "ETH-USD,SOL-USD"]);
    let show = serde_json::to_string_pretty(&summary).unwrap();

    // The extension as the server answers it to websockets' default offer.
    assert_eq!(
        summary["extensions"],
        json!("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{show}"
    );
    assert_eq!(summary["agreed"], json!(["PerMessageDeflate"]), "{show}");
    // The server's larger messages came compressed; those under 160 bytes (one symbol's
    // change, a heartbeat, replies) come plain, which the protocol allows. The client's
    // ping and subscribe went compressed.
    let wire = &summary["wire"];
    assert!(wire["received"]["compressed"].as_u64().unwrap() >= 20, "{show}");
    assert_eq!(wire["sent"]["compressed"], json!(2), "{show}");
    assert_eq!(wire["sent"]["uncompressed"], json!(0), "{show}");

    // A full message first, then changes on an unbroken chain.
    assert_eq!(summary["first"], json!({ "delta": false, "prev_seq": null }), "{show}");
    let counts = &summary["counts"];
    assert_eq!(counts["no_delta_key"], json!(0), "{show}");
    // The first and the new set's (and one after any conflation the server did).
    assert!(counts["full"].as_u64().unwrap() >= 2, "{show}");
    assert!(counts["changes"].as_u64().unwrap() >= 200, "{show}");
    assert_eq!(summary["breaks"], json!([]), "no chain break: {show}");
    assert_eq!(summary["entries_outside_set"], json!(0), "{show}");

    // The answers to the compressed messages.
    assert_eq!(summary["pong"], json!(true), "{show}");
    assert_eq!(summary["subscriptions"], json!(["ETH-USD", "SOL-USD"]), "{show}");
    assert_eq!(summary["full_after_subscribe"], json!(["ETH-USD", "SOL-USD"]), "{show}");
    assert!(!summary["answers"].as_array().unwrap().iter().any(|a| a == "error"), "{show}");
    // The new set's full message is the next ticker message after the answer.
    let events: Vec<&str> =
        summary["events"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let answer = events.iter().position(|e| *e == "subscriptions").expect("the answer");
    assert!(events.get(answer + 1).is_some_and(|e| e.starts_with("full ")), "{show}");
    let last = &summary["final"];
    assert_eq!(last["exact"], json!(true), "{show}");
    let mut symbols: Vec<&String> = last["prices"].as_object().unwrap().keys().collect();
    symbols.sort();
    assert_eq!(symbols, ["ETH-USD", "SOL-USD"], "{show}");

    // The plain session beside it: whole frames, no extension.
    assert_eq!(summary["plain"]["extensions"], Value::Null, "{show}");
    assert_eq!(summary["plain"]["with_delta_key"], json!(0), "{show}");
    assert!(summary["plain"]["frames"].as_u64().unwrap() > 200, "{show}");

    // The rebuilt state equals the plain session's prices at every seq both saw, and
    // at the last of them.
    let cmp = &summary["comparison"];
    assert_eq!(cmp["mismatch_count"], json!(0), "{show}");
    assert!(cmp["compared_seqs"].as_u64().unwrap() > 100, "{show}");
    assert_eq!(cmp["last_common_equal"], json!(true), "{show}");
}
