//! Misbehaving clients and faults inside the server: slow consumers are conflated then
//! closed while everyone else keeps streaming; a panicking ticker is restarted.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::util::*;

/// Many symbols make frames of ~10 KB so stalled sockets fill within seconds.
fn many_symbols() -> String {
    (0..200).map(|i| format!("SYM{i}-USD:{}", 100 + i)).collect::<Vec<_>>().join(",")
}

#[test]
fn stalled_subscribers_are_closed_while_readers_keep_every_tick() {
    let s = TestServer::start_with(
        Opts::default().arg("--symbols", &many_symbols()).arg("--slow-consumer-timeout", "1s"),
    );
    let token = s.token();
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut readers: Vec<Ws> = (0..5).map(|_| s.ws(&token)).collect();
    for ws in &mut readers {
        next_of_type(ws, "ticker");
    }
    let rss_before = rss(s.pid());
    // Stalled subscribers: upgrade by hand with a tiny receive buffer, then never read.
    let stalled: Vec<_> = (0..30)
        .map(|_| {
            let mut c = s.connect();
            let small: libc::c_int = 4096;
            // SAFETY: setsockopt on our own open socket with a valid int option.
            unsafe {
                libc::setsockopt(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&small as *const libc::c_int).cast(), 4);
            }
            write!(c, "GET /ws/ticker HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
            c
        })
        .collect();

    // Readers read on; track seq gaps until every stalled subscriber was closed.
    let mut last: Vec<Option<u64>> = vec![None; readers.len()];
    let (mut received, mut gaps) = (0u64, 0u64);
    let deadline = Instant::now() + PATIENCE * 2;
    while s.metric("ticker_slow_consumer_closes_total") < 30.0 {
        assert!(Instant::now() < deadline, "stalled subscribers were not closed");
        for (i, ws) in readers.iter_mut().enumerate() {
            for _ in 0..20 {
                let seq = next_of_type(ws, "ticker")["seq"].as_u64().unwrap();
                if let Some(prev) = last[i] {
                    gaps += seq.saturating_sub(prev + 1);
                }
                last[i] = Some(seq);
                received += 1;
            }
        }
    }
    assert!(
        s.metric("ticker_conflated_frames_total") > 0.0,
        "stalled subscribers were conflated first"
    );
    // Readers that keep up lose nothing beyond scheduling noise.
    assert!(gaps * 100 <= received, "{gaps} ticks missed of {received}");
    // Memory stays flat: at most one partial frame and one pending tick per stalled socket.
    let growth_kb = rss(s.pid()).saturating_sub(rss_before);
    assert!(growth_kb < 20 * 1024, "RSS grew by {growth_kb} KiB");
    for ws in &mut readers {
        next_of_type(ws, "ticker");
    }
    drop(stalled);
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
