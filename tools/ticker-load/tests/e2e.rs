//! End to end: the real `ticker-load` binary against a small tungstenite server in the
//! test that behaves like crypto-ticker (token exchange, welcome, snapshot, a seq'd
//! tick every 10 ms, pings) and either deliberately skips every tenth seq, or sends
//! every tick of one server-wide seq (as crypto-ticker does).

mod common;
use common::ticker_load;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tungstenite::Message;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};

const KEY: &str = "demo-key";
const TOKEN: &str = "tok.123=";

/// How the test server numbers its ticks.
#[derive(Clone, Copy, PartialEq)]
enum Ticks {
    /// Each session counts from 1000 and never sends every tenth seq.
    SkipTenth,
    /// One server-wide seq (ticks since the server started); every tick is sent.
    Global,
}

#[derive(Default)]
struct Seen {
    /// `POST /auth/token` requests answered.
    token_requests: AtomicUsize,
    /// WebSocket upgrades accepted.
    sessions: AtomicUsize,
    pongs: AtomicUsize,
    closes: AtomicUsize,
}

fn start_server() -> (SocketAddr, Arc<Seen>) {
    start_server_with(Ticks::SkipTenth)
}

fn start_server_with(ticks: Ticks) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = Arc::clone(&seen);
    let started = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&seen2);
            std::thread::spawn(move || {
                let mut head = [0u8; 4];
                while stream.peek(&mut head).unwrap_or(0) < 4 {
                    // A connection closed before its request (e.g. at the end of a run).
                    if stream.peek(&mut head).ok() == Some(0) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let first_seq = match ticks {
                    Ticks::SkipTenth => 1000,
                    Ticks::Global => 1000 + started.elapsed().as_millis() as u64 / 10,
                };
                if &head == b"POST" {
                    token_endpoint(stream, &seen)
                } else {
                    ticker(stream, &seen, first_seq, ticks == Ticks::SkipTenth)
                }
            });
        }
    });
    (addr, seen)
}

fn token_endpoint(mut stream: TcpStream, seen: &Seen) {
    seen.token_requests.fetch_add(1, Ordering::Relaxed);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains('}') {
        let n = stream.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let (status, body) = if text.contains(&format!(r#""api_key":"{KEY}""#)) {
        (
            "200 OK",
            format!(r#"{{"token":"{TOKEN}","user_id":"demo","role":"user","expires_in":3600}}"#),
        )
    } else {
        ("401 Unauthorized", r#"{"error":"invalid API key"}"#.to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).unwrap();
}

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn tick(seq: u64) -> Message {
    Message::text(format!(
        r#"{{"type":"ticker","seq":{seq},"ts_us":{},"data":[{{"symbol":"BTC-USD","price":42000.0,"timestamp":1}}]}}"#,
        now_us()
    ))
}

// tungstenite's callback signature fixes the error type.
#[allow(clippy::result_large_err)]
fn check_token(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    let bearer = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let query = req.uri().query().unwrap_or("");
    if req.uri().path() != "/ws/ticker"
        || bearer == Some(&format!("Bearer {TOKEN}"))
        || query == "x-auth-token=tok.123%3D"
    {
        Ok(resp)
    } else {
        let mut denied = ErrorResponse::new(Some("authentication required".into()));
        *denied.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
        Err(denied)
    }
}

fn ticker(stream: TcpStream, seen: &Seen, first_seq: u64, skip_tenth: bool) {
    let Ok(mut ws) = tungstenite::accept_hdr(stream, check_token) else { return };
    seen.sessions.fetch_add(1, Ordering::Relaxed);
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    ws.get_mut().set_nodelay(true).unwrap(); // a ticker server must not wait for ACKs (Nagle)
    let mut seq = first_seq;
    let _ = ws.send(Message::text(r#"{"type":"welcome","user_id":"user:demo"}"#));
    let _ = ws.send(tick(seq)); // the snapshot
    let _ = ws.send(tick(seq)); // a repeat of the current tick is not a gap
    let mut next = Instant::now();
    loop {
        next += Duration::from_millis(10);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        seq += 1;
        let sent = if skip_tenth && seq.is_multiple_of(10) { Ok(()) } else { ws.send(tick(seq)) };
        if seq.is_multiple_of(50) {
            let _ = ws.send(Message::Ping(b"hb".to_vec().into()));
        }
        if sent.is_err() {
            return;
        }
        loop {
            match ws.read() {
                Ok(Message::Pong(_)) => {
                    seen.pongs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Message::Close(_)) => {
                    seen.closes.fetch_add(1, Ordering::Relaxed);
                    let _ = ws.flush(); // sends the queued close echo
                    return;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

/// A folder for one test's output files, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("ticker-load-e2e-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_json(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr).and_then(Value::as_f64).unwrap_or_else(|| panic!("{ptr} missing in {v:#}"))
}

#[test]
fn an_api_key_run_opens_every_connection_counts_gaps_answers_pings_and_closes_cleanly() {
    let dir = TempDir::new("an_api_key_run_opens_eve");
    let (addr, seen) = start_server();
    let json = dir.file("auth.json");
    let report = dir.file("auth.html");
    let url = format!("http://{addr}");
    let out = ticker_load(&[
        "--url",
        &url,
        "--api-key",
        KEY,
        "--connections",
        "6",
        "--ramp",
        "200/s",
        "--warmup",
        "300ms",
        "--duration",
        "1500ms",
        "--threads",
        "2",
        "--server-pid",
        &std::process::id().to_string(),
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("tick latency"), "{stdout}");
    assert!(stderr.contains("steady"), "no live line: {stderr}");

    let v = read_json(&json);
    assert_eq!(f(&v, "/connections/opened"), 6.0);
    assert_eq!(f(&v, "/connections/failed"), 0.0);
    assert_eq!(f(&v, "/connections/closed_clean"), 6.0);
    assert_eq!(f(&v, "/handshake_us/count"), 6.0);
    // Every tenth seq is never sent: about 90 % delivered, never a negative gap.
    let delivered = f(&v, "/steady/delivered_percent");
    assert!((85.0..=95.0).contains(&delivered), "delivered {delivered}");
    assert!(f(&v, "/steady/missed") > 0.0);
    assert_eq!(f(&v, "/steady/out_of_order"), 0.0);
    assert!(f(&v, "/steady/messages_per_sec") > 6.0 * 50.0);
    assert!(f(&v, "/tick_latency_us/count") > 0.0);
    assert!(f(&v, "/tick_latency_us/p99") < 1_000_000.0);
    assert!(f(&v, "/server/cpu_seconds") >= 0.0);
    assert!(v.pointer("/timeline/0/open").is_some());
    assert!(seen.pongs.load(Ordering::Relaxed) >= 6, "pings were not answered");
    assert_eq!(seen.closes.load(Ordering::Relaxed), 6);

    // Fairness: every connection's own median, best <= median <= worst.
    assert_eq!(f(&v, "/fairness/connections"), 6.0);
    let (best, median, worst) =
        (f(&v, "/fairness/best_us"), f(&v, "/fairness/median_us"), f(&v, "/fairness/worst_us"));
    assert!(best <= median && median <= worst, "{best} {median} {worst}");
    assert_eq!(f(&v, "/fairness/spread_us"), worst - best);
    assert!(stdout.contains("worst − best"), "{stdout}");
    // The storm is always in the JSON; 6 connections at 200/s is no storm on the table.
    assert_eq!(f(&v, "/storm/all_live_seconds"), f(&v, "/storm/live_after_seconds"));
    // Connection 5 is due 25 ms after the start; the first connect may start late.
    let live = f(&v, "/storm/all_live_seconds");
    assert!(live > 0.0 && live < 5.0 && f(&v, "/storm/last_open_seconds") >= 0.025, "{live}");
    assert_eq!(f(&v, "/storm/handshake_us/count"), 6.0);
    assert_eq!(v["churn"], Value::Null);
    assert_eq!(f(&v, "/errors/total"), 0.0);
    for name in ["handshake_us", "tick_latency_us", "connection_median_us"] {
        let text = v["histograms"][name].as_str().unwrap();
        assert!(text.starts_with("HISTF"), "{name}: {text}");
    }
    assert!(v["timeline"][0]["latency"].as_str().unwrap().starts_with("HISTF"));

    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.matches("<svg").count() == 5);
    assert!(html.contains("Fairness"));
    for external in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "the report must load nothing: found {external}");
    }
}

#[test]
fn repeated_urls_share_the_connections_round_robin_and_each_node_issues_its_own_tokens() {
    let dir = TempDir::new("repeated_urls_share_the_");
    let (addr_a, seen_a) = start_server();
    let (addr_b, seen_b) = start_server();
    let json = dir.file("cluster.json");
    let (url_a, url_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
    let out = ticker_load(&[
        "--url",
        &url_a,
        "--url",
        &url_b,
        "--api-key",
        KEY,
        "-c",
        "4",
        "--warmup",
        "0",
        "--duration",
        "300ms",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v = read_json(&json);
    assert_eq!(f(&v, "/connections/opened"), 4.0);
    assert_eq!(f(&v, "/connections/closed_clean"), 4.0);
    for seen in [&seen_a, &seen_b] {
        assert_eq!(seen.sessions.load(Ordering::Relaxed), 2, "connection i goes to url[i % 2]");
        assert_eq!(seen.token_requests.load(Ordering::Relaxed), 1, "one token per URL");
    }
    let (ws_a, ws_b) = (format!("ws://{addr_a}/ws/ticker"), format!("ws://{addr_b}/ws/ticker"));
    assert_eq!(v["params"]["urls"], serde_json::json!([ws_a, ws_b]));
    assert_eq!(v["params"]["url"], ws_a.as_str(), "the old single field: the first URL");
    assert!(stdout.contains(&format!("urls {ws_a} {ws_b}")), "{stdout}");
}

#[test]
fn a_no_auth_run_with_the_token_nowhere_and_a_bound_source_address_works_on_any_path() {
    let dir = TempDir::new("a_no_auth_run_with_the_t");
    let (addr, _) = start_server();
    let json = dir.file("noauth.json");
    let svg = dir.file("noauth.svg");
    let url = format!("ws://{addr}/any");
    let out = ticker_load(&[
        "--url",
        &url,
        "--no-auth",
        "-c",
        "3",
        "--warmup",
        "0",
        "--duration",
        "500ms",
        "--bind",
        "127.0.0.2",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--report",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "--quiet: {}", String::from_utf8_lossy(&out.stderr));
    let v = read_json(&json);
    assert_eq!(f(&v, "/connections/opened"), 3.0);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

#[test]
fn a_token_in_the_query_is_percent_encoded_and_accepted() {
    let dir = TempDir::new("a_token_in_the_query_is_");
    let (addr, _) = start_server();
    let json = dir.file("query.json");
    let url = format!("http://{addr}");
    let out = ticker_load(&[
        "--url",
        &url,
        "--token",
        TOKEN,
        "--token-in-query",
        "-c",
        "2",
        "--warmup",
        "0",
        "--duration",
        "300ms",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(f(&read_json(&json), "/connections/opened"), 2.0);
}

#[test]
fn failures_are_counted_by_reason_and_an_all_failed_run_exits_non_zero() {
    let dir = TempDir::new("failures_are_counted_by_");
    let (addr, _) = start_server();
    let json = dir.file("denied.json");
    let url = format!("http://{addr}");
    let out = ticker_load(&[
        "--url",
        &url,
        "--token",
        "wrong",
        "-c",
        "3",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(f(&read_json(&json), "/connections/failed_by/http status 401"), 3.0);

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped: port closed
    let url = format!("ws://{closed}/");
    let out = ticker_load(&[
        "--url",
        &url,
        "--no-auth",
        "-c",
        "2",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(f(&read_json(&json), "/connections/failed_by/refused"), 2.0);

    let out = ticker_load(&["--url", &format!("http://{addr}"), "--api-key", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn bad_arguments_exit_with_two_and_help_documents_every_flag() {
    assert_eq!(ticker_load(&["--connections", "x", "--no-auth"]).status.code(), Some(2));
    let help = String::from_utf8(ticker_load(&["--help"]).stdout).unwrap();
    for flag in [
        "--url",
        "--path",
        "--api-key",
        "--token",
        "--token-in-query",
        "--no-auth",
        "--connections",
        "--ramp",
        "--warmup",
        "--duration",
        "--connect-timeout",
        "--threads",
        "--bind",
        "--server-pid",
        "--json",
        "--report",
        "--quiet",
        "--churn",
        "--token-per-connection",
        "--subscribe",
        "--subscribe-random",
        "--seed",
        "compare",
        "merge",
    ] {
        assert!(help.contains(flag), "{flag} undocumented");
    }
}

#[test]
fn churn_reopens_connections_with_a_fresh_token_each_and_counts_no_drop_failure_or_gap() {
    let dir = TempDir::new("churn_reopens_connectio");
    let (addr_a, seen_a) = start_server_with(Ticks::Global);
    let (addr_b, seen_b) = start_server_with(Ticks::Global);
    let json = dir.file("churn.json");
    let (url_a, url_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
    let out = ticker_load(&[
        "--url",
        &url_a,
        "--url",
        &url_b,
        "--api-key",
        KEY,
        "-c",
        "8",
        "--ramp",
        "1000/s",
        "--warmup",
        "200ms",
        "--duration",
        "2s",
        "--churn",
        "10/s",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v = read_json(&json);
    let closes = f(&v, "/churn/closes");
    assert!((15.0..=22.0).contains(&closes), "about 10/s for 2 s: {closes}");
    assert_eq!(f(&v, "/churn/reconnects"), closes);
    let reconnected = f(&v, "/churn/reconnected");
    assert_eq!(reconnected + f(&v, "/churn/unfinished"), closes, "{v:#}");
    assert_eq!(f(&v, "/churn/failed"), 0.0);
    assert!(f(&v, "/churn/reconnect_us/count") == reconnected);
    assert!(f(&v, "/churn/token_us/count") >= reconnected, "a token per reconnect");
    // Churned closes are neither drops nor failures, and cost no ticks: every
    // reconnect starts a new seq baseline although the server's seq moved on.
    assert_eq!(f(&v, "/connections/dropped"), 0.0, "{v:#}");
    assert_eq!(f(&v, "/connections/failed"), 0.0);
    assert_eq!(f(&v, "/errors/total"), 0.0);
    assert_eq!(f(&v, "/steady/out_of_order"), 0.0);
    let delivered = f(&v, "/steady/delivered_percent");
    assert!(delivered > 99.0, "churn must not count as missed ticks: {delivered}");
    // Every reconnect asked its node for a token and upgraded there, round-robin.
    let tokens = seen_a.token_requests.load(Ordering::Relaxed)
        + seen_b.token_requests.load(Ordering::Relaxed);
    let sessions =
        seen_a.sessions.load(Ordering::Relaxed) + seen_b.sessions.load(Ordering::Relaxed);
    // A reconnect still opening when the window closed may have reached the server.
    let unfinished = f(&v, "/churn/unfinished");
    let tokens_seen = 2.0 + f(&v, "/churn/token_us/count"); // one per URL, one per reconnect
    assert!((tokens_seen..=tokens_seen + unfinished).contains(&(tokens as f64)), "{tokens}");
    let sessions_seen = 8.0 + reconnected;
    assert!((sessions_seen..=sessions_seen + unfinished).contains(&(sessions as f64)));
    assert!(
        seen_a.sessions.load(Ordering::Relaxed).abs_diff(seen_b.sessions.load(Ordering::Relaxed))
            <= 1
    );
    // Fairness counts each connection lifetime with enough ticks, at most once.
    let lifetimes = f(&v, "/fairness/connections");
    assert!((1.0..=8.0 + reconnected).contains(&lifetimes), "{lifetimes}");
    // 1000/s is a storm: the table says when all were live.
    assert!(stdout.contains("all 8 live after"), "{stdout}");
    assert!(stdout.contains("churn") && stdout.contains("reconnect"), "{stdout}");
}

#[test]
fn token_per_connection_makes_every_ramp_connection_exchange_its_own_token() {
    let dir = TempDir::new("token_per_connection");
    let (addr, seen) = start_server_with(Ticks::Global);
    let json = dir.file("storm.json");
    let url = format!("http://{addr}");
    let out = ticker_load(&[
        "--url",
        &url,
        "--api-key",
        KEY,
        "--token-per-connection",
        "-c",
        "6",
        "--ramp",
        "1000/s",
        "--warmup",
        "100ms",
        "--duration",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v = read_json(&json);
    assert_eq!(f(&v, "/connections/opened"), 6.0, "{v:#}");
    assert_eq!(f(&v, "/connections/failed"), 0.0);
    // One token when the run starts, then one per connection, each before its upgrade.
    assert_eq!(seen.token_requests.load(Ordering::Relaxed), 1 + 6);
    assert_eq!(seen.sessions.load(Ordering::Relaxed), 6);
    assert!(f(&v, "/steady/delivered_percent") > 99.0);
}

#[test]
fn merge_adds_two_saved_runs_into_one_summary_json_and_report() {
    let dir = TempDir::new("merge_adds_two_saved_run");
    let (addr, _) = start_server();
    let url = format!("ws://{addr}/any");
    let mut files = Vec::new();
    for (name, connections) in [("a.json", "3"), ("b.json", "2")] {
        let file = dir.file(name);
        let out = ticker_load(&[
            "--url",
            &url,
            "--no-auth",
            "-c",
            connections,
            "--warmup",
            "0",
            "--duration",
            "1s",
            "--quiet",
            "--json",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        files.push(file);
    }
    let (merged, report) = (dir.file("merged.json"), dir.file("merged.svg"));
    let out = ticker_load(&[
        "merge",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("5 opened of 5"), "{stdout}");
    let (a, b, m) = (read_json(&files[0]), read_json(&files[1]), read_json(&merged));
    for ptr in ["/connections/opened", "/steady/ticks", "/steady/missed", "/tick_latency_us/count"]
    {
        assert_eq!(f(&m, ptr), f(&a, ptr) + f(&b, ptr), "{ptr}");
    }
    assert_eq!(f(&m, "/fairness/connections"), 5.0);
    let worst = f(&a, "/fairness/worst_us").max(f(&b, "/fairness/worst_us"));
    assert_eq!(f(&m, "/fairness/worst_us"), worst);
    assert!(std::fs::read_to_string(&report).unwrap().starts_with("<svg"));

    // A file without histograms cannot be merged exactly: refused, not averaged.
    let mut old = a.clone();
    old.as_object_mut().unwrap().remove("histograms");
    let old_file = dir.file("old.json");
    std::fs::write(&old_file, old.to_string()).unwrap();
    let out = ticker_load(&["merge", old_file.to_str().unwrap(), files[1].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("histograms"));
}
