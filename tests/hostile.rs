//! Misbehaving clients and faults inside the server: slow consumers are conflated then
//! closed while everyone else keeps streaming; control frames are never lost to
//! conflation; silent clients are pinged then closed; running out of descriptors pauses
//! accepting instead of spinning; a panicking ticker is restarted.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crypto_ticker::ws::frame::{OpCode, encode_client_frame};
use tungstenite::Message;

use crate::util::*;

/// Many symbols make frames of ~10 KB so stalled sockets fill within seconds.
fn many_symbols() -> String {
    (0..200).map(|i| format!("SYM{i}-USD:{}", 100 + i)).collect::<Vec<_>>().join(",")
}

/// Reads ticks until `stop`, counting them and the `seq` numbers skipped. The `seq` is
/// scanned, not parsed from the ~10 KB JSON, so the readers keep up on a small machine.
fn count_ticks(mut ws: Ws, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut received, mut gaps, mut last) = (0u64, 0u64, None);
    while !stop.load(Ordering::Relaxed) {
        let Message::Text(text) = ws.read().expect("read") else { continue };
        let Some(seq) = scan_seq(text.as_str()) else { continue };
        if let Some(prev) = last {
            gaps += seq.saturating_sub(prev + 1);
        }
        last = Some(seq);
        received += 1;
    }
    (received, gaps)
}

/// Asks for a receive buffer of seconds of ticks: on a CI machine busy with other tests
/// (a browser among them) a reader thread can be descheduled for hundreds of ms, and
/// with the default 128 KiB (a dozen 10 KB ticks) the server would rightly conflate it.
/// This test is about the server never letting stalled sockets slow the others down.
fn give_slack(ws: &Ws) {
    use std::os::fd::AsRawFd;
    let tungstenite::stream::MaybeTlsStream::Plain(socket) = ws.get_ref() else { return };
    let bytes: libc::c_int = 4 << 20;
    // SAFETY: a valid descriptor and a c_int option value of the size passed. The kernel
    // clamps to net.core.rmem_max; failing is harmless (the default buffer stays).
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn scan_seq(text: &str) -> Option<u64> {
    let rest = &text[text.find(r#""seq":"#)? + 6..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

#[test]
fn two_hundred_raw_subscribers_are_closed_with_1008_while_fifty_readers_keep_every_tick() {
    const STALLED: usize = 200;
    const READERS: usize = 50;
    let s = TestServer::start_with(
        Opts::default()
            .arg("--symbols", &many_symbols())
            .arg("--slow-consumer-timeout", "3s")
            // Long enough for this test to come back and read each close frame.
            .arg("--close-linger", "120s"),
    );
    let token = s.token();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let ws = s.ws(&token);
            give_slack(&ws);
            let stop = stop.clone();
            std::thread::spawn(move || count_ticks(ws, stop))
        })
        .collect();
    let rss_before = rss_kib(s.pid());

    let stalled: Vec<_> = (0..STALLED).map(|_| s.raw_subscriber(&token)).collect();
    // Until the timeout closes them, the stalled sockets are full and conflated; memory
    // must stay flat meanwhile (queueing every tick would grow by ~200 MB/s here).
    let mut rss_peak = rss_before;
    let deadline = Instant::now() + PATIENCE * 2;
    while s.metric("ticker_slow_consumer_closes_total") < STALLED as f64 {
        assert!(Instant::now() < deadline, "stalled subscribers were not closed");
        rss_peak = rss_peak.max(rss_kib(s.pid()));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.metric("ticker_conflated_frames_total") > 0.0, "no conflation was counted");
    let growth_kib = rss_peak.saturating_sub(rss_before);
    assert!(growth_kib < 20 * 1024, "RSS grew by {growth_kib} KiB for {STALLED} stalled sockets");

    stop.store(true, Ordering::Relaxed);
    eprintln!("{STALLED} stalled: server RSS {rss_before} KiB before, peak +{growth_kib} KiB");
    let mut results = Vec::new();
    for reader in readers {
        results.push(reader.join().expect("reader thread"));
    }
    // Read after the readers stopped, so it covers every tick they could have missed.
    let superseded = s.metric("ticker_ticks_superseded_total") as u64;
    let takeovers = s.metric("ticker_fanout_takeovers_total") as u64;
    let skipped = superseded + takeovers;
    for (received, gaps) in results {
        eprintln!(
            "reader: {received} ticks, {gaps} skipped ({superseded} superseded, {takeovers} \
             taken over in loops)"
        );
        assert!(received > 100, "a reader got only {received} ticks");
        // A reader with room in its socket loses no tick of its own: the only gaps are
        // ticks its loop skipped for everyone while the machine starved it of CPU (a
        // newer tick queued, or one arriving mid-fan-out for the subscribers not yet
        // served), and the loops count every one.
        assert!(gaps <= skipped, "a reader missed {gaps} ticks, loops skipped {skipped}");
    }
    // Each stalled subscriber, once it reads, finds the frame in flight finished and
    // then the close frame.
    for socket in stalled {
        assert_eq!(read_until_close(&mut into_ws(socket)), Some(1008));
    }
    assert_eq!(s.metric("ticker_ws_sessions_open"), 0.0);
}

#[test]
fn pongs_are_not_dropped_by_conflation() {
    let s = TestServer::start_with(
        Opts::default().arg("--symbols", &many_symbols()).arg("--slow-consumer-timeout", "60s"),
    );
    let mut socket = s.raw_subscriber(&s.token());
    let deadline = Instant::now() + PATIENCE;
    while s.metric("ticker_conflated_frames_total") == 0.0 {
        assert!(Instant::now() < deadline, "the stalled socket never filled");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Asked while the socket is full: the answers queue behind the frame in flight,
    // apart from the one pending tick that conflation replaces.
    let mask = [1, 2, 3, 4];
    socket.write_all(&encode_client_frame(true, OpCode::Ping, b"probe", mask)).unwrap();
    socket
        .write_all(&encode_client_frame(true, OpCode::Text, br#"{"type":"ping"}"#, mask))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let mut ws = into_ws(socket);
    let (mut pong, mut json_pong, mut gap) = (false, false, false);
    let mut last_seq = None;
    let deadline = Instant::now() + PATIENCE;
    while !(pong && json_pong && gap) {
        assert!(Instant::now() < deadline, "pong {pong}, JSON pong {json_pong}, gap {gap}");
        match ws.read().expect("read") {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"probe");
                pong = true;
            }
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str() {
                    Some("pong") => json_pong = true,
                    Some("ticker") => {
                        let seq = v["seq"].as_u64().unwrap();
                        // A skipped seq: ticks were conflated while the socket was full.
                        gap |= last_seq.is_some_and(|prev: u64| seq > prev + 1);
                        last_seq = Some(seq);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let s = TestServer::start_with(
        Opts::default().arg("--ping-after", "500ms").arg("--dead-after", "1500ms"),
    );
    // Raw frames: tungstenite would answer the ping by itself.
    let mut socket = s.raw_subscriber(&s.token());
    assert_eq!(read_response(&mut socket).unwrap().status, 101);
    let (mut pings, mut ticks_after_ping) = (0, 0);
    let close = loop {
        match read_raw_frame(&mut socket) {
            (0x9, payload) => {
                assert_eq!(payload, b"hb");
                pings += 1;
            }
            (0x8, payload) => break payload,
            (0x1, _) if pings > 0 => ticks_after_ping += 1,
            _ => {}
        }
    };
    assert_eq!(pings, 1, "one ping, then the close");
    assert!(ticks_after_ping > 0, "ticks keep flowing between ping and close");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1001);
    assert_eq!(&close[2..], b"heartbeat timeout");
    let mut rest = Vec::new();
    assert_eq!(socket.read_to_end(&mut rest).unwrap_or(0), 0, "closed after the close frame");
    assert_eq!(s.metric("ticker_heartbeat_closes_total"), 1.0);
}

#[test]
fn a_client_that_answers_pings_stays_connected() {
    let s = TestServer::start_with(
        Opts::default().arg("--ping-after", "300ms").arg("--dead-after", "900ms"),
    );
    let mut ws = s.ws(&s.token());
    // tungstenite answers each ping with a pong while it reads; never sends otherwise.
    let mut pings = 0;
    while pings < 5 {
        match ws.read().expect("still open") {
            Message::Ping(p) => {
                assert_eq!(&p[..], b"hb");
                pings += 1;
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
    // Five pings are at least 1.5 s, well past the 0.9 s dead-after, and still ticking.
    next_of_type(&mut ws, "ticker");
    assert_eq!(s.metric("ticker_heartbeat_closes_total"), 0.0);
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning_and_recovers() {
    // 64 descriptors in all: the server runs out after a few dozen connections, while
    // its connection limit (1,000) would still admit them.
    let s = TestServer::start_with(Opts::default().fd_limit(64).arg("--max-connections", "1000"));
    let mut clients: Vec<_> = (0..100)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            c
        })
        .collect();
    s.wait_for_log("accept failed; pausing");
    // The listener stays readable with connections waiting; a loop that retried at once
    // would burn a whole core. Paused, it uses a small fraction of one.
    let (cpu_before, wall) = (cpu_seconds(s.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let busy = (cpu_seconds(s.pid()) - cpu_before) / wall.elapsed().as_secs_f64();
    assert!(busy < 0.5, "server used {:.0} % of a core while out of descriptors", busy * 100.0);

    // Connections that got in were answered; closing them lets the waiting ones in.
    let waiting = clients.split_off(90);
    drop(clients);
    for mut c in waiting {
        let r = read_response(&mut c).expect("served once descriptors were free");
        assert_eq!(r.status, 200);
    }
    assert_eq!(s.get("/healthz").status, 200);
    assert!(s.metric("ticker_accept_pauses_total") >= 1.0);
}

#[test]
fn a_panicking_ticker_is_restarted_and_sessions_keep_receiving() {
    let s = TestServer::start_with(Opts::default().env("TICKER_DEBUG_PANIC_AT_SEQ", "30"));
    let mut ws = s.ws(&s.token());
    let mut seq = 0;
    while seq < 60 {
        seq = next_of_type(&mut ws, "ticker")["seq"].as_u64().unwrap();
    }
    assert_eq!(s.metric("ticker_restarts_total"), 1.0);
    s.wait_for_log("ticker thread panicked; restarting");
}
