//! End to end, `--deflate` and `--delta`: the real `ticker-load` binary against a small
//! server in the test that speaks the upgrade and the frames by hand, as crypto-ticker
//! does with compression and changes-only sessions: compressed frames (RSV1, raw DEFLATE
//! with the sync-flush tail stripped, each message on its own), full and change
//! messages with `prev_seq`, heartbeats, and deliberate chain breaks.

mod common;
use common::ticker_load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::{Compress, Compression, FlushCompress};
use serde_json::Value;
use sha1::{Digest, Sha1};

/// What the test server does with a permessage-deflate offer.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Accepts it (no context takeover) and compresses every ticker message.
    Deflate,
    /// Declines it; after a few messages sends one frame with RSV1 all the same.
    DeclineThenRsv1,
    /// Accepts it, then sends a message that inflates past the tool's bound.
    Bomb,
}

#[derive(Default)]
struct Seen {
    /// Upgrade requests, as received.
    requests: Mutex<Vec<String>>,
    closes: AtomicUsize,
}

fn start_server(mode: Mode) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    // Compressed before any client comes: 17 MiB of spaces in a few KiB.
    let bomb: Arc<[u8]> = match mode {
        Mode::Bomb => frame(0xC2, &deflate(&vec![b' '; 17 << 20])).into(),
        Mode::Deflate | Mode::DeclineThenRsv1 => Arc::new([]),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (seen, bomb) = (Arc::clone(&shared), Arc::clone(&bomb));
            std::thread::spawn(move || session(stream, mode, &seen, &bomb));
        }
    });
    (addr, seen)
}

/// The request head, up to the blank line.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn accept_for(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("the upgrade carries a key");
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha.finalize())
}

/// A server frame: `first` is the first byte (FIN, RSV1, opcode).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=65535 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Raw DEFLATE of `msg` on its own, sync flush, `00 00 FF FF` stripped (RFC 7692).
fn deflate(msg: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(msg.len() / 4 + 64);
    loop {
        let at = z.total_in() as usize;
        z.compress_vec(&msg[at..], &mut out, FlushCompress::Sync).unwrap();
        if z.total_in() as usize == msg.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    out.truncate(out.len() - 4);
    out
}

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

/// Ticker message `i` of the script: a full one first; then changes two seqs apart,
/// every 10th an empty heartbeat; every 25th names a wrong `prev_seq` (a break), the
/// one after it is a change still (unsynced), and a full one follows.
fn script(i: u64) -> (u64, String) {
    let seq = 1000 + 2 * i;
    let ts = now_us();
    let btc = format!(r#"{{"symbol":"BTC-USD","price":{}.5,"timestamp":1}}"#, 42000 + i);
    let eth = r#"{"symbol":"ETH-USD","price":2500,"timestamp":1}"#;
    let text = match i % 25 {
        0 | 3 => format!(
            r#"{{"type":"ticker","seq":{seq},"ts_us":{ts},"delta":false,"data":[{btc},{eth}]}}"#
        ),
        1 => format!(
            r#"{{"type":"ticker","seq":{seq},"ts_us":{ts},"delta":true,"prev_seq":{},"data":[{btc}]}}"#,
            seq - 3
        ),
        _ if i.is_multiple_of(10) => format!(
            r#"{{"type":"ticker","seq":{seq},"ts_us":{ts},"delta":true,"prev_seq":{},"data":[]}}"#,
            seq - 2
        ),
        _ => format!(
            r#"{{"type":"ticker","seq":{seq},"ts_us":{ts},"delta":true,"prev_seq":{},"data":[{btc}]}}"#,
            seq - 2
        ),
    };
    (seq, text)
}

fn session(mut stream: TcpStream, mode: Mode, seen: &Seen, bomb: &[u8]) {
    let Some(head) = read_head(&mut stream) else { return };
    seen.requests.lock().unwrap().push(head.clone());
    let extension = match mode {
        Mode::Deflate | Mode::Bomb => {
            "Sec-WebSocket-Extensions: permessage-deflate; \
                                       server_no_context_takeover; client_no_context_takeover\r\n"
        }
        Mode::DeclineThenRsv1 => "",
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extension}\r\n",
        accept_for(&head)
    );
    if stream.write_all(answer.as_bytes()).is_err() {
        return;
    }
    // The tool sends nothing but its close frame: once it comes, echo it and stop.
    let closing = Arc::new(AtomicBool::new(false));
    let mut reader = stream.try_clone().unwrap();
    let flag = Arc::clone(&closing);
    std::thread::spawn(move || {
        let mut two = [0u8; 2];
        if reader.read_exact(&mut two).is_ok() && two[0] & 0x0F == 0x8 {
            flag.store(true, Ordering::SeqCst);
        }
    });
    // The welcome goes uncompressed even when deflate was agreed (RFC 7692 allows it).
    let welcome = frame(0x81, br#"{"type":"welcome","user_id":"user:demo"}"#);
    if stream.write_all(&welcome).is_err() {
        return;
    }
    for i in 0.. {
        if closing.load(Ordering::SeqCst) {
            seen.closes.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&frame(0x88, &1000u16.to_be_bytes()));
            return;
        }
        let (_, text) = script(i);
        let bytes = match mode {
            Mode::Bomb if i == 5 => bomb.to_vec(),
            Mode::Deflate | Mode::Bomb => frame(0xC1, &deflate(text.as_bytes())),
            Mode::DeclineThenRsv1 if i == 30 => frame(0xC1, &deflate(text.as_bytes())),
            Mode::DeclineThenRsv1 => frame(0x81, text.as_bytes()),
        };
        if stream.write_all(&bytes).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `--json` file of a run against `addr` with `flags`, and the run's stdout.
fn run(addr: SocketAddr, test: &str, flags: &[&str]) -> (Value, String) {
    let json: PathBuf =
        std::env::temp_dir().join(format!("ticker-load-wire-{}-{test}.json", std::process::id()));
    let url = format!("ws://{addr}/ws/ticker?x=1");
    let mut args = vec!["--url", &url, "--no-auth", "-c", "3", "--warmup", "0"];
    args.extend_from_slice(&["--duration", "1s", "--quiet", "--json", json.to_str().unwrap()]);
    args.extend_from_slice(flags);
    let out = ticker_load(&args);
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_str(&text.unwrap()).unwrap(), stdout)
}

fn n(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr).and_then(Value::as_f64).unwrap_or_else(|| panic!("{ptr} missing in {v:#}"))
}

#[test]
fn compressed_changes_are_inflated_and_their_chain_checked() {
    let (addr, seen) = start_server(Mode::Deflate);
    let (v, stdout) = run(addr, "deflate-delta", &["--deflate", "--delta"]);
    for head in seen.requests.lock().unwrap().iter() {
        assert!(head.starts_with("GET /ws/ticker?x=1&delta=1 HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(
                "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            ),
            "{head}"
        );
    }
    assert_eq!((n(&v, "/connections/opened"), n(&v, "/connections/dropped")), (3.0, 0.0));
    assert_eq!(
        v["deflate"]["accepted_by"]["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
        3
    );
    assert_eq!(n(&v, "/deflate/declined"), 0.0);
    let messages = n(&v, "/deflate/messages");
    assert!(messages > 0.0 && n(&v, "/deflate/ratio") > 1.0, "{:#}", v["deflate"]);
    // Every ticker message came compressed and was read: each is a full one or a change.
    let d = &v["delta"];
    let by_kind = n(d, "/full") + n(d, "/changes") + n(d, "/chain_breaks") + n(d, "/unsynced");
    assert_eq!(by_kind, messages, "{d:#}");
    assert_eq!(n(d, "/plain"), 0.0);
    // The script breaks its chain every 25 messages, and each break is followed by one
    // unsynced change and a full message (the window may cut the last one short on
    // each of the 3 connections, at either end).
    let breaks = n(d, "/chain_breaks");
    assert!(breaks >= 1.0 && n(d, "/heartbeats") >= 1.0, "{d:#}");
    assert!((n(d, "/unsynced") - breaks).abs() <= 3.0, "{d:#}");
    // Seqs two apart are no missed ticks in a delta session.
    assert_eq!(n(&v, "/steady/missed"), 0.0);
    assert!(n(&v, "/wire/steady_bytes") > 0.0);
    let inflated_per_message = n(&v, "/deflate/inflated_bytes") / messages;
    let wire_per_message = n(&v, "/wire/bytes_per_message");
    assert!(wire_per_message < inflated_per_message, "{wire_per_message} on the wire per message");
    assert!(n(&v, "/wire/bytes_per_subscriber_per_sec") > 0.0);
    assert!(stdout.contains("chain breaks") && stdout.contains("compressed messages"), "{stdout}");
    assert_eq!(seen.closes.load(Ordering::SeqCst), 3, "every session closed cleanly");
}

#[test]
fn a_declined_offer_goes_on_uncompressed_and_rsv1_then_is_a_protocol_error() {
    let (addr, _) = start_server(Mode::DeclineThenRsv1);
    let (v, _) = run(addr, "declined", &["--deflate"]);
    assert_eq!(n(&v, "/deflate/declined"), 3.0);
    assert_eq!(n(&v, "/deflate/accepted"), 0.0);
    assert_eq!(v["connections"]["dropped_by"]["protocol error: reserved bits set"], 3);
    assert!(v.get("delta").is_none(), "no --delta, no delta figures");
}

#[test]
fn a_message_inflating_past_the_bound_drops_its_connection() {
    let (addr, _) = start_server(Mode::Bomb);
    let (v, _) = run(addr, "bomb", &["--deflate"]);
    assert_eq!(n(&v, "/deflate/accepted"), 3.0);
    assert_eq!(
        v["connections"]["dropped_by"]["permessage-deflate: message inflates past 16 MiB"],
        3
    );
}
