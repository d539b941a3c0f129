//! Per-symbol subscriptions: `?symbols=` at the upgrade, `subscribe` / `unsubscribe`
//! messages answered with `subscriptions` and a snapshot, every refusal leaving the
//! session open with its set, the message rate limit, and 1,000 symbols from a file.

use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

use crate::util::*;

const FIVE: &str = "BTC-USD:42000,ETH-USD:2500,SOL-USD:95,ADA-USD:0.5,DOT-USD:7";

fn five() -> TestServer {
    TestServer::start_with(Opts::default().arg("--symbols", FIVE))
}

/// Opens a session with `query` appended to the ticker URL.
fn ws_with_query(s: &TestServer, query: &str) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("{}?{query}", s.ws_url()).into_client_request().unwrap();
    let token = s.token();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    s.ws_request(req)
}

/// The refusal of an upgrade: status and JSON body.
fn refused(s: &TestServer, query: &str) -> (u16, Value) {
    match ws_with_query(s, query) {
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (resp.status().as_u16(), serde_json::from_slice(&body).expect("JSON body"))
        }
        Ok(_) => panic!("upgrade with {query:?} accepted"),
        Err(e) => panic!("{e}"),
    }
}

fn symbols_of(tick: &Value) -> Vec<String> {
    tick["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["symbol"].as_str().expect("symbol").to_owned())
        .collect()
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

/// Reads until a message of `kind`; every ticker message on the way must carry exactly
/// `expect` (when given).
fn until_type(ws: &mut Ws, kind: &str, expect: Option<&[&str]>) -> Value {
    loop {
        let v = next_json(ws);
        if v["type"] == kind {
            return v;
        }
        if let (Some(expect), "ticker") = (expect, v["type"].as_str().unwrap_or("")) {
            assert_eq!(symbols_of(&v), expect, "a tick before the {kind} message");
        }
    }
}

fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next `n` ticks all carry exactly `expect`, with increasing seq.
fn ticks_carry(ws: &mut Ws, n: usize, expect: &[&str]) {
    let mut last = None;
    for _ in 0..n {
        let tick = until_type(ws, "ticker", None);
        assert_eq!(symbols_of(&tick), expect, "{tick}");
        let seq = tick["seq"].as_u64().unwrap();
        assert!(last.is_none_or(|l| seq > l), "seq went back: {last:?} then {seq}");
        last = Some(seq);
    }
}

#[test]
fn a_session_that_never_subscribes_gets_every_symbol() {
    let s = five();
    let mut ws = s.ws(&s.token());
    until_type(&mut ws, "welcome", None);
    ticks_carry(&mut ws, 5, &["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "DOT-USD"]);
}

#[test]
fn the_query_string_chooses_the_initial_set_in_display_order() {
    let s = five();
    let mut ws = ws_with_query(&s, "symbols=SOL-USD,BTC-USD").expect("upgrade");
    until_type(&mut ws, "welcome", None);
    // The snapshot right after the welcome already carries only the set.
    ticks_carry(&mut ws, 5, &["BTC-USD", "SOL-USD"]);
    // Percent-encoded commas work too.
    let mut ws = ws_with_query(&s, "symbols=ADA-USD%2CDOT-USD").expect("upgrade");
    ticks_carry(&mut ws, 2, &["ADA-USD", "DOT-USD"]);
    assert_eq!(s.metric("ticker_symbol_sets"), 2.0);
}

#[test]
fn bad_query_sets_are_refused_before_the_upgrade() {
    let s = TestServer::start_with(
        Opts::default().arg("--symbols", FIVE).arg("--max-session-symbols", "2"),
    );
    assert_eq!(
        refused(&s, "symbols=BTC-USD,NOPE,ALSO-NOPE"),
        (400, json!({ "error": "unknown symbol", "symbols": ["NOPE", "ALSO-NOPE"] }))
    );
    assert_eq!(refused(&s, "symbols=").0, 400);
    assert_eq!(refused(&s, "symbols=").1["error"], "empty symbol list");
    let (status, body) = refused(&s, "symbols=BTC-USD,ETH-USD,SOL-USD");
    assert_eq!((status, body["error"].as_str().unwrap()), (400, "too many symbols"));
    // Without a token the symbols are not even looked at: 401 first.
    let req = format!("{}?symbols=NOPE", s.ws_url()).into_client_request().unwrap();
    match s.ws_request(req) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn subscribe_and_unsubscribe_round_trip_with_the_set_and_a_snapshot() {
    let s = five();
    let mut ws = s.ws(&s.token());
    until_type(&mut ws, "welcome", None);

    // A first subscribe starts from none: only what was asked for.
    send(&mut ws, json!({ "type": "subscribe", "symbols": ["ETH-USD", "BTC-USD"] }));
    let answer = until_type(&mut ws, "subscriptions", None);
    assert_eq!(answer, json!({ "type": "subscriptions", "symbols": ["BTC-USD", "ETH-USD"] }));
    // At once a snapshot of the added symbols, then ticks of the set.
    let snapshot = until_type(&mut ws, "ticker", None);
    assert_eq!(symbols_of(&snapshot), ["BTC-USD", "ETH-USD"]);
    ticks_carry(&mut ws, 3, &["BTC-USD", "ETH-USD"]);

    send(&mut ws, json!({ "type": "subscribe", "symbols": ["DOT-USD"] }));
    let answer = until_type(&mut ws, "subscriptions", Some(&["BTC-USD", "ETH-USD"]));
    assert_eq!(answer["symbols"], json!(["BTC-USD", "ETH-USD", "DOT-USD"]));
    let snapshot = until_type(&mut ws, "ticker", None);
    assert_eq!(symbols_of(&snapshot), ["DOT-USD"], "the snapshot is of the added symbol");
    ticks_carry(&mut ws, 3, &["BTC-USD", "ETH-USD", "DOT-USD"]);

    send(&mut ws, json!({ "type": "unsubscribe", "symbols": ["BTC-USD", "DOT-USD"] }));
    let answer = until_type(&mut ws, "subscriptions", Some(&["BTC-USD", "ETH-USD", "DOT-USD"]));
    assert_eq!(answer["symbols"], json!(["ETH-USD"]));
    ticks_carry(&mut ws, 3, &["ETH-USD"]);
    assert_eq!(s.metric("ticker_subscription_changes_total"), 3.0);

    // The last symbol gone: no more ticks, heartbeats (and answers) only.
    send(&mut ws, json!({ "type": "unsubscribe", "symbols": ["ETH-USD"] }));
    let answer = until_type(&mut ws, "subscriptions", Some(&["ETH-USD"]));
    assert_eq!(answer["symbols"], json!([]));
    let ticks_then = s.metric("ticker_ticks_total");
    while s.metric("ticker_ticks_total") < ticks_then + 20.0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    send(&mut ws, json!({ "type": "ping" }));
    let next = next_json(&mut ws);
    assert_eq!(next["type"], "pong", "20 ticks went by, none was sent: {next}");
    // Subscribing again resumes with a snapshot.
    send(&mut ws, json!({ "type": "subscribe", "symbols": ["SOL-USD"] }));
    until_type(&mut ws, "subscriptions", Some(&[]));
    ticks_carry(&mut ws, 2, &["SOL-USD"]);
}

#[test]
fn a_first_unsubscribe_starts_from_every_symbol() {
    let s = five();
    let mut ws = s.ws(&s.token());
    send(&mut ws, json!({ "type": "unsubscribe", "symbols": ["ETH-USD", "ADA-USD"] }));
    let answer = until_type(&mut ws, "subscriptions", None);
    assert_eq!(answer["symbols"], json!(["BTC-USD", "SOL-USD", "DOT-USD"]));
    ticks_carry(&mut ws, 3, &["BTC-USD", "SOL-USD", "DOT-USD"]);
}

#[test]
fn refused_changes_answer_an_error_and_keep_the_session_and_its_set() {
    let s = TestServer::start_with(
        Opts::default()
            .arg("--symbols", FIVE)
            .arg("--max-session-symbols", "2")
            .arg("--max-symbol-sets", "2"),
    );
    let mut ws = ws_with_query(&s, "symbols=BTC-USD").expect("upgrade");
    let mut other = ws_with_query(&s, "symbols=ETH-USD").expect("upgrade");
    // A second holder of {BTC-USD}: leaving it frees no set, so a new one is over the cap.
    let _third = ws_with_query(&s, "symbols=BTC-USD").expect("upgrade");
    let set = ["BTC-USD"];
    let cases = [
        (json!({ "type": "subscribe", "symbols": ["NOPE"] }), "unknown symbol", json!(["NOPE"])),
        (
            json!({ "type": "subscribe", "symbols": "BTC-USD" }),
            "symbols must be a list of symbol names",
            json!([]),
        ),
        (
            json!({ "type": "unsubscribe", "symbols": [1, 2] }),
            "symbols must be a list of symbol names",
            json!([]),
        ),
        (json!({ "type": "subscribe" }), "symbols must be a list of symbol names", json!([])),
        (json!({ "type": "subscribe", "symbols": [] }), "empty symbol list", json!([])),
        (
            json!({ "type": "subscribe", "symbols": ["ETH-USD", "SOL-USD"] }),
            "too many symbols",
            json!(["ETH-USD", "SOL-USD"]),
        ),
        // Two distinct sets are served ({BTC}, {ETH}); a third is refused.
        (
            json!({ "type": "subscribe", "symbols": ["SOL-USD"] }),
            "too many distinct symbol sets",
            json!(["SOL-USD"]),
        ),
    ];
    for (message, error, symbols) in cases {
        send(&mut ws, message.clone());
        let answer = until_type(&mut ws, "error", Some(&set));
        assert_eq!(
            answer,
            json!({ "type": "error", "error": error, "symbols": symbols }),
            "{message}"
        );
        // Still open, still on its set.
        ticks_carry(&mut ws, 1, &set);
    }
    // Joining an existing set is no new set: allowed at the cap.
    send(&mut ws, json!({ "type": "unsubscribe", "symbols": ["BTC-USD"] }));
    until_type(&mut ws, "subscriptions", Some(&set));
    send(&mut ws, json!({ "type": "subscribe", "symbols": ["ETH-USD"] }));
    let answer = until_type(&mut ws, "subscriptions", None);
    assert_eq!(answer["symbols"], json!(["ETH-USD"]));
    ticks_carry(&mut ws, 2, &["ETH-USD"]);
    ticks_carry(&mut other, 2, &["ETH-USD"]);
    assert_eq!(s.metric("ticker_subscription_errors_total"), 7.0);
}

#[test]
fn more_messages_than_the_control_rate_close_the_session_with_1008() {
    let s = TestServer::start_with(Opts::default().arg("--control-rate", "5"));
    let mut ws = s.ws(&s.token());
    until_type(&mut ws, "welcome", None);
    // 50 messages in a burst: far over a budget of 5 plus 5 a second however slow the
    // machine is.
    for _ in 0..50 {
        if ws.send(Message::text(r#"{"type":"ping"}"#)).is_err() {
            break;
        }
    }
    assert_eq!(read_until_close(&mut ws), Some(1008));
    assert_eq!(s.metric("ticker_rate_limit_closes_total"), 1.0);
    // Others are not affected.
    let mut fresh = s.ws(&s.token());
    until_type(&mut fresh, "ticker", None);
}

#[test]
fn a_thousand_symbols_from_a_file_start_and_tick() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("symbols.txt");
    let mut text = String::from("# one SYMBOL:PRICE per line\n\n");
    for i in 0..1000 {
        text.push_str(&format!("SYM{i}-USD:{}\n", 1 + i));
    }
    std::fs::write(&file, text).unwrap();
    let s = TestServer::start_with(Opts::default().arg("--symbols-file", file.to_str().unwrap()));
    let mut ws = s.ws(&s.token());
    let tick = until_type(&mut ws, "ticker", None);
    let names = symbols_of(&tick);
    assert_eq!(names.len(), 1000);
    assert_eq!((names[0].as_str(), names[999].as_str()), ("SYM0-USD", "SYM999-USD"));
    send(&mut ws, json!({ "type": "subscribe", "symbols": ["SYM999-USD", "SYM500-USD"] }));
    until_type(&mut ws, "subscriptions", None);
    ticks_carry(&mut ws, 3, &["SYM500-USD", "SYM999-USD"]);
}

#[test]
fn a_bad_symbols_file_stops_the_server_at_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("symbols.txt");
    std::fs::write(&file, "BTC-USD:1\nBTC-USD:2\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["--addr", "127.0.0.1:0", "--symbols-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symbol BTC-USD listed twice"), "{err}");
}
