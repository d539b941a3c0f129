//! One hostile connection against everyone else: while it floods the server (pipelined
//! requests, answers it never reads, control frames, long symbol lists), an ordinary
//! tungstenite subscriber keeps receiving ticks, a new client is answered, and the
//! server's memory stays bounded. Each test counts ticks received *while the flood is
//! still going*; a server whose loop the flood captured delivers none and the test
//! fails at the patience deadline (a hang guard, not a speed assertion).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crypto_ticker::ws::frame::{OpCode, encode_client_frame};
use tungstenite::Message;

use crate::util::*;

/// Ticks the subscriber must receive while a flood goes on: half a second of ticks.
const TICKS_DURING_FLOOD: u64 = 50;
/// The most the server's RSS may grow during a flood.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// A subscriber on its own thread, counting the ticks it receives.
struct TickCounter {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TickCounter {
    fn start(s: &TestServer, token: &str) -> TickCounter {
        let mut ws = s.ws(token);
        let (ticks, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (t, st) = (ticks.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(Message::Text(text)) if text.as_str().starts_with(r#"{"type":"ticker""#) => {
                        t.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let counter = TickCounter { ticks, stop, thread: Some(thread) };
        counter.wait_for(counter.count() + 5); // streaming before the flood starts
        counter
    }

    fn count(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    fn wait_for(&self, n: u64) {
        let deadline = Instant::now() + PATIENCE;
        while self.count() < n {
            assert!(Instant::now() < deadline, "the subscriber stopped at {} ticks", self.count());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TickCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a flood did by the time the subscriber had its ticks.
#[derive(Debug, Default)]
struct FloodReport {
    bytes_sent: u64,
    bytes_read: u64,
    peak_rss_growth_kib: u64,
    /// The server ended the attacker's connection (EOF or reset).
    ended_by_server: bool,
}

/// Sends `unit` over and over on `attacker` (never breaking a unit), reading what comes
/// back if `read` is set, until `counter` has received [`TICKS_DURING_FLOOD`] ticks
/// since the flood began and the flood has sent at least `min_bytes`. Fails if the
/// subscriber's ticks do not come within the patience deadline.
fn flood(
    s: &TestServer,
    counter: &TickCounter,
    attacker: &mut TcpStream,
    unit: &[u8],
    read: bool,
    min_bytes: u64,
) -> FloodReport {
    attacker.set_nonblocking(true).unwrap();
    let batch = unit.repeat((65536 / unit.len()).max(1));
    let (mut at, mut report) = (0usize, FloodReport::default());
    let rss_before = rss_kib(s.pid());
    let start_ticks = counter.count();
    let deadline = Instant::now() + PATIENCE;
    let mut sink = vec![0u8; 1 << 20];
    let mut rounds = 0u64;
    while counter.count() < start_ticks + TICKS_DURING_FLOOD || report.bytes_sent < min_bytes {
        assert!(
            Instant::now() < deadline,
            "during the flood the subscriber got {} ticks ({report:?})",
            counter.count() - start_ticks
        );
        match attacker.write(&batch[at..]) {
            Ok(n) => {
                report.bytes_sent += n as u64;
                at = (at + n) % batch.len();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                report.ended_by_server = true;
                break;
            }
        }
        if read {
            loop {
                match attacker.read(&mut sink) {
                    Ok(0) => {
                        report.ended_by_server = true;
                        break;
                    }
                    Ok(n) => report.bytes_read += n as u64,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        report.ended_by_server = true;
                        break;
                    }
                }
            }
        }
        if report.ended_by_server {
            break;
        }
        rounds += 1;
        if rounds.is_multiple_of(64) {
            let growth = rss_kib(s.pid()).saturating_sub(rss_before);
            report.peak_rss_growth_kib = report.peak_rss_growth_kib.max(growth);
        }
    }
    let growth = rss_kib(s.pid()).saturating_sub(rss_before);
    report.peak_rss_growth_kib = report.peak_rss_growth_kib.max(growth);
    eprintln!("flood: {report:?}");
    report
}

/// An upgrade request on a raw socket; the caller reads the 101.
fn upgrade(s: &TestServer, token: &str, query: &str) -> TcpStream {
    let mut c = s.connect();
    write!(
        c,
        "GET /ws/ticker?x-auth-token={token}{query} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    c
}

/// A raw session: upgraded, the 101 answer read.
fn raw_session(s: &TestServer, token: &str) -> TcpStream {
    let mut c = upgrade(s, token, "");
    let r = read_response(&mut c).expect("an answer to the upgrade");
    assert_eq!(r.status, 101);
    c
}

#[test]
fn pipelined_requests_on_one_connection_do_not_stop_anyone_elses_ticks() {
    let s = TestServer::start();
    let counter = TickCounter::start(&s, &s.token());
    let mut attacker = s.connect();
    let report = flood(&s, &counter, &mut attacker, b"GET /ws HTTP/1.1\r\n\r\n", true, 4 << 20);
    assert!(!report.ended_by_server, "pipelining is allowed; it is only slowed");
    assert!(report.bytes_read > 0, "the attacker's requests are answered");
    // A new client is answered while the flood goes on (the attacker's socket is full).
    assert_eq!(s.get("/healthz").status, 200);
    assert!(
        report.peak_rss_growth_kib < RSS_GROWTH_LIMIT_KIB,
        "RSS grew by {} KiB",
        report.peak_rss_growth_kib
    );
}

#[test]
fn a_client_that_never_reads_its_answers_is_held_at_a_small_cap_then_dropped() {
    let s = TestServer::start_with(Opts::default().arg("--slow-consumer-timeout", "2s"));
    let counter = TickCounter::start(&s, &s.token());
    let mut attacker = s.connect();
    let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    let report = flood(&s, &counter, &mut attacker, request, false, 256 << 10);
    assert!(
        report.peak_rss_growth_kib < RSS_GROWTH_LIMIT_KIB,
        "the unread answers grew the RSS by {} KiB",
        report.peak_rss_growth_kib
    );
    // It made no write progress for the slow-consumer timeout: dropped.
    let deadline = Instant::now() + PATIENCE;
    while s.metric("ticker_slow_consumer_closes_total") < 1.0 {
        assert!(Instant::now() < deadline, "the client that never reads was not dropped");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_pong_flood_within_a_huge_rate_still_leaves_ticks_for_everyone() {
    // The rate limit out of the way: the per-turn budget alone protects the others.
    let s = TestServer::start_with(Opts::default().arg("--control-rate", "100000"));
    let token = s.token();
    let counter = TickCounter::start(&s, &token);
    let mut attacker = raw_session(&s, &token);
    let pong = encode_client_frame(true, OpCode::Pong, b"", [1, 2, 3, 4]);
    let report = flood(&s, &counter, &mut attacker, &pong, true, 4 << 20);
    assert!(report.peak_rss_growth_kib < RSS_GROWTH_LIMIT_KIB, "{report:?}");
}

#[test]
fn a_ping_flood_is_closed_1008_at_the_frame_rate() {
    let s = TestServer::start_with(Opts::default().arg("--control-rate", "20"));
    let token = s.token();
    let counter = TickCounter::start(&s, &token);
    let mut attacker = raw_session(&s, &token);
    let ping = encode_client_frame(true, OpCode::Ping, b"x", [1, 2, 3, 4]);
    attacker.write_all(&ping.repeat(1000)).unwrap();
    let socket = tungstenite::stream::MaybeTlsStream::Plain(attacker);
    let role = tungstenite::protocol::Role::Client;
    let mut ws = tungstenite::WebSocket::from_raw_socket(socket, role, None);
    assert_eq!(read_until_close(&mut ws), Some(1008));
    assert_eq!(s.metric("ticker_rate_limit_closes_total"), 1.0);
    counter.wait_for(counter.count() + 10);
}

#[test]
fn pipelined_upgrades_with_thousands_of_unknown_symbols_do_not_stop_the_ticks() {
    let s = TestServer::start();
    let token = s.token();
    let counter = TickCounter::start(&s, &token);
    // 3,000 distinct unknown names, within the 16 KiB head limit.
    let names: Vec<String> = (0..3000).map(|i| format!("{i:x}")).collect();
    let request = format!(
        "GET /ws/ticker?x-auth-token={token}&symbols={} HTTP/1.1\r\nHost: t\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        names.join(",")
    );
    // One answer first: refused, and the list is not echoed back.
    let mut probe = s.connect();
    probe.write_all(request.as_bytes()).unwrap();
    let r = read_response(&mut probe).expect("an answer");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "too many symbols");
    let mut attacker = s.connect();
    let report = flood(&s, &counter, &mut attacker, request.as_bytes(), true, 4 << 20);
    assert!(report.bytes_read > 0, "{report:?}");
}

#[test]
fn session_caps_per_key_and_per_address_answer_503_and_free_up_when_a_session_ends() {
    let s = TestServer::start_with(Opts::default().arg("--max-sessions-per-ip", "2"));
    let token = s.token();
    let first = s.ws(&token);
    let _second = s.ws(&token);
    let mut third = upgrade(&s, &token, "");
    let r = read_response(&mut third).expect("an answer");
    assert_eq!(r.status, 503);
    assert_eq!(r.error(), "too many sessions from this address");
    assert_eq!(s.metric("ticker_sessions_refused_total{limit=\"per_ip\"}"), 1.0);
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut again = upgrade(&s, &token, "");
        let r = read_response(&mut again).expect("an answer");
        if r.status == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the closed session's slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }

    let s = TestServer::start_with(Opts::default().arg("--max-sessions-per-key", "1"));
    let token = s.token();
    let _only = s.ws(&token);
    let mut over = upgrade(&s, &token, "");
    let r = read_response(&mut over).expect("an answer");
    assert_eq!(r.status, 503);
    assert_eq!(r.error(), "too many sessions for this API key");
}

#[test]
fn behind_a_trusted_proxy_the_per_address_cap_counts_the_forwarded_client() {
    let s = TestServer::start_with(
        Opts::default().arg("--trusted-proxies", "127.0.0.1").arg("--max-sessions-per-ip", "1"),
    );
    let token = s.token();
    let via_proxy = |client: &str| {
        let mut c = s.connect();
        write!(
            c,
            "GET /ws/ticker?x-auth-token={token} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nX-Forwarded-For: {client}\r\n\r\n"
        )
        .unwrap();
        let status = read_response(&mut c).expect("an answer").status;
        (status, c)
    };
    let (first, _a) = via_proxy("198.51.100.7");
    let (other, _b) = via_proxy("203.0.113.9");
    let (again, _c) = via_proxy("198.51.100.7");
    assert_eq!((first, other, again), (101, 101, 503));
}
