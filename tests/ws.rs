//! `GET /ws/ticker`: token sources, refusals before the upgrade, the message sequence,
//! and RFC 6455 behaviour checked with tungstenite as the client.

use std::io::{Read, Write};
use std::time::Duration;

use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::util::*;

fn assert_welcome_snapshot_ticks(ws: &mut Ws) {
    let welcome = next_of_type(ws, "welcome");
    assert_eq!(welcome["user_id"], "user:demo");
    let snapshot = next_of_type(ws, "ticker");
    let mut seq = snapshot["seq"].as_u64().unwrap();
    for _ in 0..20 {
        let tick = next_of_type(ws, "ticker");
        let next = tick["seq"].as_u64().unwrap();
        assert_eq!(next, seq + 1, "seq increases by one per tick");
        seq = next;
        assert!(tick["ts_us"].as_u64().unwrap() > 1_600_000_000_000_000);
        let data = tick["data"].as_array().unwrap();
        let symbols: Vec<&str> = data.iter().map(|d| d["symbol"].as_str().unwrap()).collect();
        assert_eq!(symbols, ["BTC-USD", "ETH-USD", "SOL-USD"], "configured order");
        for d in data {
            let price = d["price"].as_f64().unwrap();
            assert!(price > 0.0);
            assert_eq!((price * 100.0).round() / 100.0, price, "2 decimals: {price}");
            assert!(d["timestamp"].as_u64().unwrap() > 1_600_000_000);
        }
    }
}

#[test]
fn a_bearer_token_gets_welcome_then_snapshot_then_contiguous_ticks() {
    let s = TestServer::start();
    let mut ws = s.ws(&s.token());
    assert_welcome_snapshot_ticks(&mut ws);
}

#[test]
fn the_token_may_come_from_the_query_parameter() {
    let s = TestServer::start();
    let url = format!("{}?x-auth-token={}", s.ws_url(), s.token());
    let mut ws = s.ws_request(url.into_client_request().unwrap()).unwrap();
    assert_welcome_snapshot_ticks(&mut ws);
}

#[test]
fn the_token_may_come_from_the_cookie() {
    let s = TestServer::start();
    let mut req = s.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("Cookie", format!("theme=dark; x-auth-token={}", s.token()).parse().unwrap());
    let mut ws = s.ws_request(req).unwrap();
    assert_welcome_snapshot_ticks(&mut ws);
}

fn upgrade_status(s: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut req = s.ws_url().into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match s.ws_request(req) {
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (resp.status().as_u16(), v["error"].as_str().unwrap().to_owned())
        }
        Ok(_) => panic!("upgrade accepted with token {token:?}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn missing_malformed_and_tampered_tokens_are_401_before_the_upgrade() {
    let s = TestServer::start();
    let good = s.token();
    assert_eq!(upgrade_status(&s, None), (401, "authentication required".into()));
    assert_eq!(upgrade_status(&s, Some("garbage")), (401, "authentication required".into()));
    // Flip one character of the signature, then of the random part.
    let mut sig = good.clone().into_bytes();
    let last = sig.len() - 3;
    sig[last] = if sig[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        upgrade_status(&s, Some(std::str::from_utf8(&sig).unwrap())),
        (401, "authentication required".into())
    );
    let mut id = good.clone().into_bytes();
    id[0] = if id[0] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        upgrade_status(&s, Some(std::str::from_utf8(&id).unwrap())),
        (401, "authentication required".into())
    );
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let a = TestServer::start();
    let b = TestServer::start_with(
        Opts::default().env("TICKER_TOKEN_KEY", "another-key-fedcba9876543210"),
    );
    assert_eq!(upgrade_status(&a, Some(&b.token())).0, 401);
}

#[test]
fn an_expired_token_is_401() {
    let s = TestServer::start_with(Opts::default().arg("--token-ttl", "1s"));
    let token = s.token();
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(upgrade_status(&s, Some(&token)), (401, "authentication required".into()));
}

#[test]
fn a_json_ping_gets_a_json_pong() {
    let s = TestServer::start();
    let mut ws = s.ws(&s.token());
    next_of_type(&mut ws, "welcome");
    ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
    ws.send(Message::text("not json at all")).unwrap();
    ws.send(Message::text(r#"{"type":"other"}"#)).unwrap();
    next_of_type(&mut ws, "pong");
    // Still streaming after the ignored messages.
    next_of_type(&mut ws, "ticker");
}

#[test]
fn a_websocket_ping_gets_a_pong_with_the_same_payload() {
    let s = TestServer::start();
    let mut ws = s.ws(&s.token());
    ws.send(Message::Ping(b"hello-42".to_vec().into())).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(p.as_ref(), b"hello-42");
                break;
            }
            Message::Text(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_client_close_is_echoed_and_the_connection_ends() {
    let s = TestServer::start();
    let mut ws = s.ws(&s.token());
    next_of_type(&mut ws, "welcome");
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Normal);
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A raw upgrade with a hand-written request, returning the socket after the 101.
fn raw_upgrade(s: &TestServer) -> std::net::TcpStream {
    let mut c = s.raw_subscriber(&s.token());
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    c
}

/// Reads raw server frames until a close frame; returns its code.
fn raw_close_code(c: &mut std::net::TcpStream) -> u16 {
    loop {
        if let (0x8, payload) = read_raw_frame(c) {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[test]
fn an_unmasked_client_frame_is_closed_with_1002() {
    let s = TestServer::start();
    let mut c = raw_upgrade(&s);
    // FIN + text, no mask bit, payload "hi".
    c.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(raw_close_code(&mut c), 1002);
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    let s = TestServer::start();
    let mut c = raw_upgrade(&s);
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8, 0xfe];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.write_all(&frame).unwrap();
    assert_eq!(raw_close_code(&mut c), 1007);
}

#[test]
fn a_message_over_32_kib_is_closed_with_1009() {
    let s = TestServer::start();
    let mut ws = s.ws(&s.token());
    let _ = ws.send(Message::text("x".repeat(33 * 1024)));
    assert_eq!(read_until_close(&mut ws), Some(1009));
}

#[test]
fn a_fragmented_ping_message_is_reassembled() {
    let s = TestServer::start();
    let mut c = raw_upgrade(&s);
    let mask = [9u8, 8, 7, 6];
    let masked = |fin_op: u8, p: &[u8]| {
        let mut f = vec![fin_op, 0x80 | p.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    let mut bytes = masked(0x01, br#"{"type""#); // text, not final
    bytes.extend(masked(0x89, b"mid")); // a ping between fragments
    bytes.extend(masked(0x80, br#":"ping"}"#)); // final continuation
    c.write_all(&bytes).unwrap();
    // Read raw frames until the pong text appears.
    let mut seen = String::new();
    let mut chunk = [0u8; 65536];
    while !seen.contains(r#"{"type":"pong"}"#) {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

#[test]
fn upgrade_refusals_have_their_status() {
    let s = TestServer::start();
    let token = s.token();
    let ask = |extra: &str, method: &str| {
        s.raw(format!("{method} /ws/ticker HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n{extra}\r\n").as_bytes())
    };
    let r = ask("", "GET");
    assert_eq!((r.status, r.error().as_str()), (426, "websocket upgrade required"));
    let r = ask("", "POST");
    assert_eq!(r.status, 405);
    let r = ask(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        "GET",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn a_disallowed_origin_is_403() {
    let s = TestServer::start_with(Opts::default().arg("--allowed-origins", "https://ok.example"));
    let mut req = s.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", s.token()).parse().unwrap());
    req.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    match s.ws_request(req) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut req = s.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", s.token()).parse().unwrap());
    req.headers_mut().insert("Origin", "https://ok.example".parse().unwrap());
    let mut ws = s.ws_request(req).unwrap();
    next_of_type(&mut ws, "welcome");
}

fn unix_micros_now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("a clock after 1970").as_micros() as u64
}

/// The first two `ticker` messages of a new session: their `seq` and `ts_us`.
fn first_two_ticks(ws: &mut Ws) -> [(u64, u64); 2] {
    let mut read = || {
        let t = next_of_type(ws, "ticker");
        (t["seq"].as_u64().expect("seq"), t["ts_us"].as_u64().expect("ts_us"))
    };
    [read(), read()]
}

#[test]
fn a_subscriber_after_an_idle_spell_gets_the_current_prices_first_and_consecutive_seq() {
    let s = TestServer::start();
    let token = s.token();
    let mut before = s.ws(&token);
    let [_, (seen, _)] = first_two_ticks(&mut before);
    drop(before);
    let deadline = std::time::Instant::now() + PATIENCE;
    while s.metric("ticker_ws_sessions_open") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "the session never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nobody listens for a while: the ticker sleeps and the loop's last tick grows old.
    std::thread::sleep(Duration::from_millis(1500));

    let asked = unix_micros_now();
    let mut ws = s.ws(&token);
    let [(first, made), (second, _)] = first_two_ticks(&mut ws);
    // Made after the upgrade was asked for: the current prices, not the ones from
    // before the idle spell.
    assert!(made >= asked, "the first tick was made {} µs before the upgrade", asked - made);
    assert!(first > seen, "seq {first} after {seen}: it continues");
    assert_eq!(second, first + 1, "no jump after the first tick");
}
