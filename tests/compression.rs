//! permessage-deflate and changes-only (`?delta=1`) sessions, seen from real clients:
//! tungstenite (which offers no extension), and a client by hand that offers deflate and
//! inflates with flate2 (the same library as the server, so the Python client test in
//! `python_client.rs` and the browser test are the independent checks of the bytes).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;

use crypto_ticker::ws::frame::{OpCode, RSV1, encode_client_frame};
use flate2::{Decompress, FlushDecompress};
use serde_json::Value;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

use crate::util::*;

const FIVE: &str = "BTC-USD:42000,ETH-USD:2500,SOL-USD:95,ADA-USD:0.5,DOT-USD:7";

/// A session upgraded by hand: `query` after `/ws/ticker?`, `extensions` offered.
pub(crate) struct Raw {
    socket: TcpStream,
    /// The 101 answer's `Sec-WebSocket-Extensions`, if any.
    pub(crate) agreed: Option<String>,
}

impl Raw {
    pub(crate) fn open(s: &TestServer, token: &str, query: &str, extensions: Option<&str>) -> Raw {
        let mut socket = s.connect();
        let offer = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
        write!(
            socket,
            "GET /ws/ticker?{query} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n{}\r\n",
            offer.unwrap_or_default()
        )
        .unwrap();
        let r = read_response(&mut socket).expect("the upgrade answer");
        assert_eq!(r.status, 101, "{}", r.text());
        let agreed = r.header("Sec-WebSocket-Extensions").map(str::to_owned);
        Raw { socket, agreed }
    }

    /// One server frame: its first byte (FIN, RSV1, opcode) and payload.
    fn frame(&mut self) -> (u8, Vec<u8>) {
        read_raw_frame_whole(&mut self.socket)
    }

    /// The next text message as JSON (inflated if RSV1 is set), and its frame's first
    /// byte and wire payload.
    fn message(&mut self) -> (Value, u8, Vec<u8>) {
        loop {
            let (b0, payload) = self.frame();
            if b0 & 0x0F != 1 {
                continue;
            }
            let text = if b0 & 0x40 != 0 { inflate(&payload) } else { payload.clone() };
            return (serde_json::from_slice(&text).expect("JSON"), b0, payload);
        }
    }

    pub(crate) fn ticker(&mut self) -> (Value, u8, Vec<u8>) {
        loop {
            let m = self.message();
            if m.0["type"] == "ticker" {
                return m;
            }
        }
    }

    /// Sends a masked client text frame, compressed (RSV1) or not.
    fn send(&mut self, compressed: bool, payload: &[u8]) {
        let mut f = encode_client_frame(true, OpCode::Text, payload, [1, 2, 3, 4]);
        if compressed {
            f[0] |= RSV1;
        }
        self.socket.write_all(&f).unwrap();
    }
}

/// RFC 7692 section 7.2.2: append the sync tail and raw-inflate.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend([0, 0, 0xFF, 0xFF]);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).expect("valid DEFLATE");
    out
}

/// Raw DEFLATE of `text` with a sync flush, the tail removed: what a client sends.
fn deflate(text: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text, &mut out, flate2::FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

fn prices(v: &Value) -> BTreeMap<String, f64> {
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| (e["symbol"].as_str().unwrap().to_owned(), e["price"].as_f64().unwrap()))
        .collect()
}

#[test]
fn tungstenite_offers_no_extension_and_gets_todays_frames() {
    let s = TestServer::start();
    let mut req = s.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", s.token()).parse().unwrap());
    let (mut ws, resp) = tungstenite::connect(req).expect("upgrade");
    assert!(resp.headers().get("Sec-WebSocket-Extensions").is_none());
    let a = next_of_type(&mut ws, "ticker");
    let b = next_of_type(&mut ws, "ticker");
    assert!(a.get("delta").is_none() && a.get("prev_seq").is_none(), "{a}");
    assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
    assert_eq!(s.metric("ticker_ws_sessions_by_mode{mode=\"plain\"}"), 1.0);
}

#[test]
fn a_deflate_offer_gets_compressed_ticks_with_the_same_json() {
    let s = TestServer::start();
    let token = s.token();
    let mut z = Raw::open(&s, &token, "", Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(
        z.agreed.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut plain = s.ws(&token);
    let mut seen = BTreeMap::new();
    let mut compressed = 0;
    while seen.len() < 30 {
        let (v, b0, _) = z.ticker();
        compressed += usize::from(b0 == 0xC1);
        assert!(v.get("delta").is_none(), "{v}");
        seen.insert(v["seq"].as_u64().unwrap(), v);
    }
    // The ticker builds compressed frames from the tick after the session opened.
    assert!(compressed >= 28, "{compressed} of 30 compressed");
    let mut matched = 0;
    for _ in 0..40 {
        let t = next_of_type(&mut plain, "ticker");
        if let Some(v) = seen.get(&t["seq"].as_u64().unwrap()) {
            assert_eq!(v, &t);
            matched += 1;
        }
    }
    assert!(matched > 0, "the two sessions never shared a seq");
    assert_eq!(s.metric("ticker_ws_sessions_by_mode{mode=\"deflate\"}"), 1.0);
    // A compressed ping is inflated and answered.
    z.send(true, &deflate(br#"{"type":"ping"}"#));
    loop {
        let (v, _, _) = z.message();
        if v["type"] == "pong" {
            break;
        }
    }
}

#[test]
fn a_window_limit_is_echoed_and_larger_frames_go_uncompressed() {
    let many: Vec<String> = (0..30).map(|i| format!("S{i}-USD:{}", 100 + i)).collect();
    let s = TestServer::start_with(Opts::default().arg("--symbols", &many.join(",")));
    let token = s.token();
    let offer = "permessage-deflate; server_max_window_bits=9";
    let mut z = Raw::open(&s, &token, "", Some(offer));
    assert!(z.agreed.as_deref().unwrap().ends_with("; server_max_window_bits=9"));
    // 30 symbols are about 1.8 KB: more than a 512-byte window covers.
    for _ in 0..5 {
        let (v, b0, _) = z.ticker();
        assert_eq!(b0, 0x81, "uncompressed");
        assert_eq!(v["data"].as_array().unwrap().len(), 30);
    }
    // With four symbols chosen (about 300 bytes), the frame fits and is compressed.
    let four = "symbols=S1-USD,S2-USD,S3-USD,S4-USD";
    let mut one = Raw::open(&s, &token, four, Some(offer));
    let mut compressed = false;
    for _ in 0..10 {
        compressed |= one.ticker().1 == 0xC1;
    }
    assert!(compressed);
}

#[test]
fn bad_offers_are_declined_and_compression_off_never_agrees() {
    let s = TestServer::start();
    let token = s.token();
    let bad = Raw::open(&s, &token, "", Some("permessage-deflate; server_max_window_bits=20"));
    assert_eq!(bad.agreed, None);
    let second = Raw::open(&s, &token, "", Some("permessage-deflate; bogus, permessage-deflate"));
    assert!(second.agreed.is_some());
    let off = TestServer::start_with(Opts::default().arg("--compression", "off"));
    let mut r = Raw::open(&off, &off.token(), "", Some("permessage-deflate"));
    assert_eq!(r.agreed, None);
    assert_eq!(r.ticker().1, 0x81);
    // RSV1 from a client that agreed nothing is a protocol error.
    r.send(true, &deflate(b"{}"));
    loop {
        let (b0, payload) = r.frame();
        if b0 & 0x0F == 8 {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
            break;
        }
    }
}

#[test]
fn a_bad_delta_value_is_400() {
    let s = TestServer::start();
    let mut req = format!("{}?delta=yes", s.ws_url()).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", s.token()).parse().unwrap());
    match tungstenite::connect(req) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 400),
        other => panic!("{other:?}"),
    }
}

/// Reads a changes-only session until `n` ticker messages, checking the chain; returns
/// the messages.
fn delta_messages(r: &mut Raw, n: usize) -> Vec<Value> {
    chain_on(r, Vec::new(), n)
}

/// [`delta_messages`] after the messages already read.
fn chain_on(r: &mut Raw, mut out: Vec<Value>, n: usize) -> Vec<Value> {
    while out.len() < n {
        let (v, _, _) = r.ticker();
        if let Some(last) = out.last() {
            assert!(v["seq"].as_u64() > last["seq"].as_u64(), "seq went back: {v} after {last}");
        }
        if v["delta"] == true {
            let last = out.last().expect("a whole-state message comes first");
            assert_eq!(v["prev_seq"], last["seq"], "chain broken at {v}");
        }
        out.push(v);
    }
    out
}

#[test]
fn a_delta_session_rebuilds_exactly_the_prices_of_a_full_session_seq_by_seq() {
    let s =
        TestServer::start_with(Opts::default().arg("--symbols", FIVE).arg("--sim-activity", "0.2"));
    let token = s.token();
    let mut full = s.ws(&token);
    let mut delta = Raw::open(&s, &token, "delta=1", Some("permessage-deflate"));
    let messages = delta_messages(&mut delta, 120);
    assert_eq!(messages[0]["delta"], false);
    let last_seq = messages.last().unwrap()["seq"].as_u64().unwrap();
    let mut truth: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    loop {
        let t = next_of_type(&mut full, "ticker");
        let seq = t["seq"].as_u64().unwrap();
        truth.insert(seq, prices(&t));
        if seq >= last_seq {
            break;
        }
    }
    let mut state = BTreeMap::new();
    let (mut compared, mut partial, mut quiet_ticks) = (0, 0, 0);
    for pair in messages.windows(2) {
        let (before, seq) = (pair[0]["seq"].as_u64().unwrap(), pair[1]["seq"].as_u64().unwrap());
        assert!(seq > before, "seq {seq} after {before}: {}", pair[1]);
        quiet_ticks += seq - before - 1;
    }
    for m in &messages {
        if m["delta"] == false {
            state = prices(m);
        } else {
            partial += usize::from(m["data"].as_array().unwrap().len() < 5);
            state.extend(prices(m));
        }
        if let Some(expected) = truth.get(&m["seq"].as_u64().unwrap()) {
            assert_eq!(&state, expected, "state at {}", m["seq"]);
            compared += 1;
        }
    }
    assert!(compared >= 100, "compared only {compared}");
    // At 20 % activity most messages carry a few symbols and some ticks carry none.
    assert!(partial > 60, "{partial} partial messages");
    assert!(quiet_ticks > 0, "no tick was skipped");
    assert_eq!(s.metric("ticker_ws_sessions_by_mode{mode=\"delta_deflate\"}"), 1.0);
}

#[test]
fn a_quiet_delta_session_hears_an_empty_message_every_second() {
    let s = TestServer::start_with(Opts::default().arg("--sim-activity", "0"));
    let mut r = Raw::open(&s, &s.token(), "delta=1", None);
    let messages = delta_messages(&mut r, 4);
    for m in &messages[1..] {
        assert_eq!(m["delta"], true);
        assert_eq!(m["data"].as_array().unwrap().len(), 0, "{m}");
        // 100 ticks a second at the default 10 ms.
        assert_eq!(m["seq"].as_u64().unwrap() % 100, 0, "{m}");
    }
}

#[test]
fn a_stalled_delta_session_is_resynced_with_the_whole_state() {
    let many: Vec<String> = (0..60).map(|i| format!("S{i}-USD:{}", 100 + i)).collect();
    let s = TestServer::start_with(
        Opts::default().arg("--symbols", &many.join(",")).arg("--send-buffer", "4096"),
    );
    let mut r = Raw::open(&s, &s.token(), "delta=1", None);
    // Read nothing until the server has had to drop a tick for this session.
    let started = std::time::Instant::now();
    while s.metric("ticker_conflated_frames_total") == 0.0 {
        assert!(started.elapsed() < PATIENCE, "never conflated");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let messages = delta_messages(&mut r, 400);
    let wholes = messages.iter().filter(|m| m["delta"] == false).count();
    assert!(wholes >= 2, "no resync after the stall");
    assert!(s.metric("ticker_delta_resyncs_total") >= 1.0);
}

#[test]
fn a_subscription_change_sends_the_whole_new_set_and_the_chain_goes_on() {
    let s =
        TestServer::start_with(Opts::default().arg("--symbols", FIVE).arg("--sim-activity", "0.5"));
    let mut r = Raw::open(&s, &s.token(), "delta=1&symbols=BTC-USD", None);
    delta_messages(&mut r, 5);
    r.send(false, br#"{"type":"subscribe","symbols":["ETH-USD","SOL-USD"]}"#);
    let whole = loop {
        let (v, _, _) = r.message();
        if v["type"] == "ticker" && v["delta"] == false {
            break v;
        }
    };
    assert_eq!(prices(&whole).len(), 3, "{whole}");
    let chain = chain_on(&mut r, vec![whole], 20);
    for m in &chain[1..] {
        if m["delta"] == true {
            for e in m["data"].as_array().unwrap() {
                assert_ne!(e["symbol"], "ADA-USD");
            }
        }
    }
}

#[test]
fn an_inflate_bomb_is_closed_1009_while_a_subscriber_keeps_its_ticks() {
    let s = TestServer::start();
    let token = s.token();
    let mut watcher = s.ws(&token);
    next_of_type(&mut watcher, "ticker");
    // 16 MiB of spaces deflate to about 16 KiB: under the 32 KiB message limit.
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 32 << 10);
    for _ in 0..10 {
        let mut attacker = Raw::open(&s, &token, "", Some("permessage-deflate"));
        attacker.send(true, &bomb);
        loop {
            let (b0, payload) = attacker.frame();
            if b0 & 0x0F == 8 {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
                break;
            }
        }
    }
    // The subscriber's ticks went on (the loop never held more than the limit).
    let before = next_of_type(&mut watcher, "ticker")["seq"].as_u64().unwrap();
    let after = next_of_type(&mut watcher, "ticker")["seq"].as_u64().unwrap();
    assert!(after > before);
    match watcher.read() {
        Ok(Message::Text(_) | Message::Ping(_)) => {}
        other => panic!("{other:?}"),
    }
}
