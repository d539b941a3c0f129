//! HTTP limits and timeouts: each limit gets its status, and a stalled
//! client is closed without stopping anyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::*;

#[test]
fn a_request_head_over_16_kib_is_431() {
    let s = TestServer::start();
    let mut req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 17 * 1024));
    req.extend(b"\r\n\r\n");
    let r = s.raw(&req);
    assert_eq!((r.status, r.error().as_str()), (431, "request header fields too large"));
}

#[test]
fn more_than_100_headers_is_431() {
    let s = TestServer::start();
    let mut req = String::from("GET / HTTP/1.1\r\n");
    for i in 0..101 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(s.raw(req.as_bytes()).status, 431);
}

#[test]
fn a_body_over_16_kib_is_413() {
    let s = TestServer::start();
    let r = s.raw(b"POST /auth/token HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n{");
    assert_eq!((r.status, r.error().as_str()), (413, "payload too large"));
}

#[test]
fn a_transfer_encoding_is_501() {
    let s = TestServer::start();
    let r = s.raw(b"POST /auth/token HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(r.status, 501);
}

#[test]
fn a_malformed_request_line_is_400() {
    let s = TestServer::start();
    let r = s.raw(b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.error().as_str()), (400, "malformed request"));
}

#[test]
fn two_thousand_stalled_partial_heads_are_closed_and_others_are_served_meanwhile() {
    // The test holds 2,000 sockets and the server as many again.
    let wanted = 2_000;
    let room = raise_own_fd_limit(wanted as u64 + 200);
    let count = wanted.min(room.saturating_sub(200) as usize);
    if count < wanted {
        eprintln!("NOTE: descriptor limit {room}: slowloris test runs with {count}, not {wanted}");
    }
    let s = TestServer::start_with(Opts::default().arg("--head-timeout", "2s"));
    let mut stalled: Vec<_> = (0..count)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ").unwrap();
            c
        })
        .collect();
    // A normal client still gets a token and ticks while they stall.
    let mut ws = s.ws(&s.token());
    next_of_type(&mut ws, "ticker");
    for c in &mut stalled {
        let r = read_response(c).expect("a 408 before the close");
        assert_eq!(r.status, 408);
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap_or(0), 0, "closed after the timeout");
    }
    next_of_type(&mut ws, "ticker");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start_with(Opts::default().arg("--keepalive-timeout", "1s"));
    let mut c = s.connect();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).unwrap().status, 200);
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "server closed the idle connection");
}

#[test]
fn beyond_the_connection_limit_new_connections_get_503() {
    let s = TestServer::start_with(Opts::default().arg("--max-connections", "5"));
    // Five keep-alive connections, each proven accepted by an answer.
    let held: Vec<_> = (0..5)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut c).unwrap().status, 200);
            c
        })
        .collect();
    let mut extra = s.connect();
    let r = read_response(&mut extra).expect("503 answer");
    assert_eq!((r.status, r.error().as_str()), (503, "server busy"));
    drop(held);
}

/// Stops (SIGSTOP) or resumes (SIGCONT) a server: stopped, it accepts nothing, as a loop
/// busy elsewhere would, while the kernel still completes handshakes into the backlog.
fn freeze(s: &TestServer, stopped: bool) {
    let signal = if stopped { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill(2) with our own child's pid.
    assert_eq!(unsafe { libc::kill(s.pid() as i32, signal) }, 0);
    // The signal is delivered asynchronously: until every thread has stopped, the event
    // loop may still accept what the test means to leave in the backlog.
    let deadline = std::time::Instant::now() + PATIENCE;
    while stopped && !all_threads_stopped(s.pid()) {
        assert!(std::time::Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(false)
    })
}

/// Lets this process hold `n` more sockets than it usually needs (the soft limit may be
/// 1024, and the other tests run alongside).
fn allow_descriptors(n: u64) {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < n + 1024 {
            lim.rlim_cur = (n + 1024).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128)
}

#[test]
fn a_connection_storm_waits_in_the_backlog_and_every_connection_is_served() {
    // More than two accept batches of 256, if the kernel lets the backlog hold them.
    let storm = 600.min(somaxconn() - 1);
    allow_descriptors(storm as u64);
    let s = TestServer::start_with(Opts::default().arg("--backlog", "1024"));
    freeze(&s, true);
    // Each handshake completes at once in the backlog; a dropped SYN would come back
    // only after a 1 s retransmit.
    let mut conns: Vec<TcpStream> = (0..storm)
        .map(|i| {
            TcpStream::connect_timeout(&s.addr, Duration::from_millis(900))
                .unwrap_or_else(|e| panic!("connection {i} of {storm} was not queued: {e}"))
        })
        .collect();
    freeze(&s, false);
    // One readiness event for the whole backlog: the loop must keep accepting past its
    // first batch without another event.
    for c in &mut conns {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = read_response(c).unwrap_or_else(|| panic!("connection {i} never served"));
        assert_eq!(r.status, 200, "connection {i}");
    }
}

#[test]
fn the_backlog_flag_bounds_the_queue_of_unaccepted_connections() {
    let s = TestServer::start_with(Opts::default().arg("--backlog", "8"));
    freeze(&s, true);
    let mut queued = Vec::new();
    while let Ok(c) = TcpStream::connect_timeout(&s.addr, Duration::from_millis(300)) {
        queued.push(c);
        assert!(queued.len() < 200, "a backlog of 8 held 200 connections");
    }
    freeze(&s, false);
    // Linux queues backlog + 1; leave other kernels a little room.
    assert!((8..=16).contains(&queued.len()), "{} connections queued", queued.len());
    for c in &mut queued {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(c).expect("served").status, 200);
    }
}
