//! The connection's state machine without sockets or sleeps: an in-memory socket, and a
//! clock that is only ever passed in. Each test walks one path of the diagram in
//! `conn.rs` and checks the bytes written, the state, and the counters.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use super::*;
use crate::auth::Auth;
use crate::auth::key_store::SqliteKeyStore;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::token::{TokenKey, Tokens};
use crate::server::Shared;
use crate::server::fanout::{Offered, offer};
use crate::server::handle::{self, LoopCtx};
use crate::workers::ConnKey;

/// A socket in memory: bytes to read, bytes written, and how many more it takes before
/// it would block (the kernel's send buffer).
#[derive(Default)]
struct MemSocket {
    input: VecDeque<u8>,
    output: Vec<u8>,
    room: usize,
    peer_closed: bool,
    write_shut: bool,
    /// As a TLS session near its key's confidentiality limit reports.
    key_used_up: bool,
}

impl Read for MemSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return if self.peer_closed { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(self.input.len());
        for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for MemSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for MemSocket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.write_shut = true;
        Ok(())
    }
    fn set_send_buffer(&self, _bytes: usize) {}
    fn key_nearly_used_up(&self) -> bool {
        self.key_used_up
    }
}

const ROOMY: usize = 1 << 20;

/// A loop context as one shard has it, with the timeouts the tests walk through.
fn ctx() -> LoopCtx {
    ctx_with(|_| {})
}

/// [`ctx`] with some options changed.
fn ctx_with(change: impl FnOnce(&mut Config)) -> LoopCtx {
    let mut config = Config {
        ping_after: Duration::from_secs(1),
        dead_after: Duration::from_secs(3),
        slow_consumer_timeout: Duration::from_secs(2),
        close_linger: Duration::from_millis(500),
        head_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    change(&mut config);
    let session_limits =
        crate::server::SessionLimits::new(config.max_sessions_per_key, config.max_sessions_per_ip);
    let metrics = Arc::new(Metrics::new());
    let auth = Auth::new(
        Tokens::in_memory(
            TokenKey::from_secret("0123456789abcdef-test").unwrap(),
            Duration::from_secs(60),
            16,
        ),
        Box::new(SqliteKeyStore::new(PathBuf::from("/nonexistent/auth.db"))),
        Box::new(LoginLimiter::new(10, Duration::from_secs(60))),
        0,
        metrics.clone(),
    );
    let (jobs, _) = crate::workers::job_queue(1);
    let shared = Shared {
        config,
        auth: Arc::new(auth),
        metrics,
        public_root: Arc::new(PathBuf::from("/nonexistent")),
        jobs,
        cluster_health: None,
        ticker_bell: Default::default(),
        symbols: Arc::new(crate::symbols::SymbolTable::new(["BTC-USD".to_string()])),
        symbol_sets: crate::symbols::sets::SetRegistry::new(4),
        open_conns: AtomicUsize::new(0),
        max_connections: 16,
        session_limits,
        tls: None,
        shutting_down: AtomicBool::new(false),
        controls: Vec::new(),
    };
    LoopCtx {
        shard: 0,
        shared: Arc::new(shared),
        snapshot: None,
        snapshot_gen: 0,
        snapshot_at: None,
        read_buf: vec![0; 4096].into(),
    }
}

fn token(ctx: &LoopCtx) -> String {
    let actor = Actor { id: "user:t".into(), user_id: "t".into(), role: "user".into() };
    let now = crate::auth::ids::unix_now();
    ctx.shared.auth.tokens.issue(actor, ApiKeyId(7), String::new(), now).unwrap().token
}

fn upgrade_request(token: &str) -> Vec<u8> {
    format!(
        "GET /ws/ticker HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )
    .into_bytes()
}

fn conn(now: Instant) -> Conn<MemSocket> {
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    Conn::new(MemSocket { room: ROOMY, ..MemSocket::default() }, 1, peer, now)
}

/// A connection upgraded through the real HTTP path, its output cleared.
fn session(ctx: &mut LoopCtx, now: Instant) -> Conn<MemSocket> {
    let mut c = conn(now);
    c.socket.input.extend(upgrade_request(&token(ctx)));
    assert_eq!(handle::on_readable(&mut c, ConnKey(0), ctx, now), Verdict::Open);
    assert!(c.is_subscriber());
    c.socket.output.clear();
    c
}

fn sessions_open(ctx: &LoopCtx) -> i64 {
    ctx.shared.metrics.ws_sessions_open.load(Relaxed)
}

/// The close frame's code and reason, if `bytes` is exactly one unmasked close frame.
fn close_frame(bytes: &[u8]) -> Option<(u16, String)> {
    let [0x88, len, rest @ ..] = bytes else { return None };
    if rest.len() != usize::from(*len) || rest.len() < 2 {
        return None;
    }
    let code = u16::from_be_bytes([rest[0], rest[1]]);
    Some((code, String::from_utf8_lossy(&rest[2..]).into_owned()))
}

#[test]
fn an_upgrade_turns_http_into_a_session_with_101_welcome_and_snapshot() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    ctx.snapshot = Some(tick(5, b"\x81\x02hi"));
    ctx.snapshot_gen = 41;
    ctx.snapshot_at = Some(t0);
    let mut c = conn(t0);
    c.socket.input.extend(upgrade_request(&token(&ctx)));
    assert_eq!(handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0), Verdict::Open);

    let out = String::from_utf8_lossy(&c.socket.output).into_owned();
    assert!(out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{out}");
    assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{out}");
    assert!(out.contains(r#"{"type":"welcome","user_id":"user:t"}"#), "{out}");
    assert!(c.socket.output.ends_with(b"\x81\x02hi"), "the snapshot follows the welcome");
    let State::WebSocket { session, feed } = &c.state else { panic!("not a session") };
    assert_eq!(feed.offered, Some(41), "the fan-out knows it has the snapshot's tick");
    assert_eq!(session.api_key_id, ApiKeyId(7));
    assert_eq!(sessions_open(&ctx), 1);
    assert_eq!(ctx.shared.metrics.ws_sessions_total.load(Relaxed), 1);
}

#[test]
fn a_bad_token_is_401_and_no_session() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.socket.input.extend(upgrade_request("not-a-token"));
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    assert!(c.socket.output.starts_with(b"HTTP/1.1 401 "));
    assert!(matches!(c.state, State::Http { .. }), "keep-alive: still HTTP");
    assert_eq!(sessions_open(&ctx), 0);
    assert_eq!(ctx.shared.metrics.ws_sessions_total.load(Relaxed), 0);
}

#[test]
fn a_silent_client_gets_one_ping_then_close_1001_at_dead_after() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let (cfg, m) = (ctx.shared.config.clone(), ctx.shared.metrics.clone());

    assert_eq!(c.on_timer(t0 + Duration::from_millis(999), &cfg, &m), TimerAction::Idle);
    assert_eq!(c.on_timer(t0 + cfg.ping_after, &cfg, &m), TimerAction::Flush);
    c.flush(t0 + cfg.ping_after, &m);
    assert_eq!(c.socket.output, b"\x89\x02hb", "one ping");
    c.socket.output.clear();
    assert_eq!(c.on_timer(t0 + Duration::from_secs(2), &cfg, &m), TimerAction::Idle, "only one");

    assert_eq!(c.on_timer(t0 + cfg.dead_after, &cfg, &m), TimerAction::Flush);
    c.flush(t0 + cfg.dead_after, &m);
    assert_eq!(close_frame(&c.socket.output), Some((1001, "heartbeat timeout".into())));
    assert!(matches!(c.state, State::Closing { write_shut: true, .. }));
    assert!(c.socket.write_shut, "FIN after the close frame");
    assert_eq!(sessions_open(&ctx), 0);
    assert_eq!(m.heartbeat_closes.load(Relaxed), 1);
}

#[test]
fn a_tls_session_near_its_key_limit_is_closed_1001_in_order_at_the_next_sweep() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let (cfg, m) = (ctx.shared.config.clone(), ctx.shared.metrics.clone());
    let later = t0 + Duration::from_millis(250);
    assert_eq!(c.on_timer(later, &cfg, &m), TimerAction::Idle);
    c.socket.key_used_up = true;
    assert_eq!(c.on_timer(later, &cfg, &m), TimerAction::Flush);
    c.flush(later, &m);
    assert_eq!(close_frame(&c.socket.output), Some((1001, "TLS key limit".into())));
    assert!(c.socket.write_shut, "FIN after the close frame");
    assert_eq!(sessions_open(&ctx), 0);
    assert_eq!(m.tls_key_limit_closes.load(Relaxed), 1);
}

#[test]
fn any_frame_from_the_client_resets_the_heartbeat() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let (cfg, m) = (ctx.shared.config.clone(), ctx.shared.metrics.clone());
    let t1 = t0 + Duration::from_millis(2500);
    c.socket.input.extend(frame::encode_client_frame(true, OpCode::Pong, b"hb", [1, 2, 3, 4]));
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t1);
    assert_eq!(c.on_timer(t0 + cfg.dead_after, &cfg, &m), TimerAction::Idle);
    assert!(c.is_subscriber());
}

#[test]
fn a_subscriber_that_stops_reading_is_closed_1008_after_the_slow_consumer_timeout() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let (cfg, m) = (ctx.shared.config.clone(), ctx.shared.metrics.clone());
    c.socket.room = 0; // the kernel buffer is full
    let tick: Arc<[u8]> = Arc::from(&b"\x81\x01a"[..]);
    assert_eq!(offer(&mut c.socket, &mut c.out, &mut c.last_progress, &tick, t0), Offered::Parked);
    let later = t0 + Duration::from_millis(100);
    assert_eq!(
        offer(&mut c.socket, &mut c.out, &mut c.last_progress, &tick, later),
        Offered::Conflated
    );
    // Heartbeats do not count as progress: the client keeps answering but never reads.
    c.last_read = t0 + Duration::from_millis(1900);
    assert_eq!(c.on_timer(t0 + Duration::from_millis(1999), &cfg, &m), TimerAction::Idle);
    assert_eq!(c.on_timer(t0 + cfg.slow_consumer_timeout, &cfg, &m), TimerAction::Flush);
    assert_eq!(sessions_open(&ctx), 0);
    assert_eq!(m.slow_consumer_closes.load(Relaxed), 1);

    c.socket.room = ROOMY;
    c.flush(t0 + cfg.slow_consumer_timeout, &m);
    assert_eq!(
        close_frame(&c.socket.output),
        Some((1008, "slow consumer".into())),
        "the pending tick is dropped, the close frame goes out"
    );
}

#[test]
fn a_closing_connection_lingers_then_is_dropped() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let (cfg, m) = (ctx.shared.config.clone(), ctx.shared.metrics.clone());
    assert!(c.close_session(CloseCode::GoingAway, "bye", t0, cfg.close_linger, &m));
    c.flush(t0, &m);
    assert!(c.socket.write_shut);
    // The peer's bytes are drained, not parsed, while waiting for its FIN.
    c.socket.input.extend(b"late garbage");
    assert_eq!(handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0), Verdict::Open);
    assert_eq!(c.on_timer(t0 + Duration::from_millis(499), &cfg, &m), TimerAction::Idle);
    assert_eq!(c.on_timer(t0 + cfg.close_linger, &cfg, &m), TimerAction::Drop);
    // ...or the peer's FIN ends it sooner.
    c.socket.peer_closed = true;
    assert_eq!(handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0), Verdict::Close);
    c.release(&m);
    assert_eq!(sessions_open(&ctx), 0, "released once, counted once");
}

#[test]
fn revocation_closes_a_session_once_with_1008() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let (linger, m) = (ctx.shared.config.close_linger, ctx.shared.metrics.clone());
    assert!(c.close_session(CloseCode::PolicyViolation, "revoked", t0, linger, &m));
    assert!(!c.close_session(CloseCode::PolicyViolation, "revoked", t0, linger, &m), "once");
    c.flush(t0, &m);
    assert_eq!(close_frame(&c.socket.output), Some((1008, "revoked".into())));
    assert_eq!(sessions_open(&ctx), 0);
}

#[test]
fn the_session_gauge_is_exact_through_every_way_out() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let m = ctx.shared.metrics.clone();
    let linger = ctx.shared.config.close_linger;

    // 1. The client closes: its code is echoed.
    let mut by_client = session(&mut ctx, t0);
    // 2. The server closes.
    let mut by_server = session(&mut ctx, t0);
    // 3. The socket fails: the loop drops it without a close handshake.
    let dropped = session(&mut ctx, t0);
    // 4. A protocol error (an unmasked frame) closes with 1002.
    let mut broken = session(&mut ctx, t0);
    assert_eq!(sessions_open(&ctx), 4);

    let close = frame::encode_client_frame(true, OpCode::Close, &1000u16.to_be_bytes(), [9; 4]);
    by_client.socket.input.extend(close);
    handle::on_readable(&mut by_client, ConnKey(0), &mut ctx, t0);
    assert_eq!(close_frame(&by_client.socket.output), Some((1000, String::new())));
    assert_eq!(sessions_open(&ctx), 3);

    by_server.close_session(CloseCode::GoingAway, "server shutting down", t0, linger, &m);
    assert_eq!(sessions_open(&ctx), 2);

    dropped.release(&m);
    assert_eq!(sessions_open(&ctx), 1);

    broken.socket.input.extend(frame::encode_frame(OpCode::Text, b"unmasked"));
    handle::on_readable(&mut broken, ConnKey(0), &mut ctx, t0);
    assert_eq!(close_frame(&broken.socket.output).map(|(code, _)| code), Some(1002));
    assert_eq!(sessions_open(&ctx), 0);

    // Dropping the closed ones later changes nothing.
    for c in [by_client, by_server, broken] {
        c.release(&m);
    }
    assert_eq!(sessions_open(&ctx), 0);
    assert_eq!(m.ws_sessions_total.load(Relaxed), 4);
}

#[test]
fn an_answer_without_keep_alive_closes_after_the_flush() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.socket.input.extend(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    assert!(c.socket.output.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(matches!(c.state, State::Closing { write_shut: true, .. }));
    assert_eq!(
        c.on_timer(t0 + CLOSE_LINGER, &ctx.shared.config, &ctx.shared.metrics),
        TimerAction::Drop
    );
}

#[test]
fn a_stalled_request_head_is_answered_408_and_closed() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = conn(t0);
    c.socket.input.extend(b"GET /healthz HTTP/1.1\r\nHost:");
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    assert!(c.socket.output.is_empty());
    let late = t0 + ctx.shared.config.head_timeout;
    assert_eq!(handle::on_timer(&mut c, &ctx, late), Verdict::Open);
    assert!(c.socket.output.starts_with(b"HTTP/1.1 408 "));
    assert!(matches!(c.state, State::Closing { .. }));
}

fn tick(seq: u64, frame: &'static [u8]) -> crate::ticker::Tick {
    crate::ticker::Tick {
        seq,
        ts_us: 0,
        frame: Arc::from(frame),
        sets: Arc::from(Vec::new()),
        entries: Default::default(),
        encoded: None,
        changes: None,
    }
}

#[test]
fn a_tick_that_arrives_during_a_fan_out_goes_to_the_rest_then_to_the_ones_served_before() {
    use crate::server::fanout::{Current, LOOK_FOR_NEWER_EVERY, fan_out};
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut conns = slab::Slab::new();
    let token = token(&ctx);
    for key in 0..200 {
        let mut c = conn(t0);
        c.socket.input.extend(upgrade_request(&token));
        assert_eq!(handle::on_readable(&mut c, ConnKey(key), &mut ctx, t0), Verdict::Open);
        c.socket.output.clear();
        conns.insert(c);
    }
    let outputs = |conns: &mut slab::Slab<Conn<MemSocket>>| -> Vec<Vec<u8>> {
        conns.iter_mut().map(|(_, c)| std::mem::take(&mut c.socket.output)).collect()
    };
    let (old, new) = (&b"\x81\x03old"[..], &b"\x81\x03new"[..]);
    let mut current = Current { tick: tick(1, old), count: 2 };
    let mut arrivals = vec![(tick(2, new), 0)];
    let mut dead = Vec::new();
    let zero = Duration::ZERO;

    // A fan-out that fits in a tick does not take over: the newer tick waits its turn.
    let mut first = Current { tick: tick(0, &b"\x81\x01a"[..]), count: 1 };
    let hour = Duration::from_secs(3600);
    let totals = fan_out(&mut conns, &mut first, 0, t0, &mut dead, hour, || arrivals.pop());
    assert_eq!((totals.frames, totals.takeovers, arrivals.len()), (200, 0, 1));
    assert!(outputs(&mut conns).iter().all(|out| out == b"\x81\x01a"));

    // One that has run for a tick hands the rest the newer tick. Served in slab order
    // from 0: the first look, before the 64th subscriber's offer,
    // finds the newer tick, which the rest get instead.
    let totals = fan_out(&mut conns, &mut current, 0, t0, &mut dead, zero, || arrivals.pop());
    let got = outputs(&mut conns);
    let served_old = LOOK_FOR_NEWER_EVERY - 1;
    assert!(got[..served_old].iter().all(|out| out == old));
    assert!(got[served_old..].iter().all(|out| out == new));
    assert_eq!((current.tick.seq, current.count), (2, 3), "left with the newest tick");
    // The ones served after the switch skipped the old tick: conflated.
    let skipped_old = (200 - served_old) as u64;
    assert_eq!((totals.frames, totals.takeovers, totals.conflated), (200, 1, skipped_old));

    // The caller's next pass with it reaches only the ones served before the switch.
    let totals = fan_out(&mut conns, &mut current, 5, t0, &mut dead, zero, || None);
    let got = outputs(&mut conns);
    assert!(got[..served_old].iter().all(|out| out == new));
    assert!(got[served_old..].iter().all(Vec::is_empty), "nobody gets a tick twice");
    assert_eq!((totals.frames, totals.takeovers, totals.conflated), (served_old as u64, 0, 0));
    let again = fan_out(&mut conns, &mut current, 9, t0, &mut dead, zero, || None);
    assert_eq!(again.frames, 0);

    // The next tick reaches everyone; one that comes after two skipped ticks counts
    // them as conflated for every session.
    let mut next = Current { tick: tick(3, &b"\x81\x01x"[..]), count: 4 };
    assert_eq!(fan_out(&mut conns, &mut next, 7, t0, &mut dead, zero, || None).frames, 200);
    let mut later = Current { tick: tick(6, &b"\x81\x01y"[..]), count: 7 };
    let totals = fan_out(&mut conns, &mut later, 7, t0, &mut dead, zero, || None);
    assert_eq!((totals.frames, totals.conflated), (200, 400));
    assert!(outputs(&mut conns).iter().all(|out| out == b"\x81\x01x\x81\x01y"));
    assert!(dead.is_empty());
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn pipelined_requests_beyond_the_turn_budget_wait_for_the_next_turn() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let mut c = conn(t0);
    for _ in 0..100 {
        c.socket.input.extend(HEALTH);
    }
    let budget = handle::MESSAGE_BUDGET as usize;
    for turn in 1..=3 {
        assert_eq!(handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0), Verdict::Open);
        assert_eq!(count(&c.socket.output, b"HTTP/1.1 200 OK"), turn * budget);
        assert_eq!(c.input, Input::OverBudget, "turn {turn} left input: revisit");
    }
    assert_eq!(handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0), Verdict::Open);
    assert_eq!(count(&c.socket.output, b"HTTP/1.1 200 OK"), 100);
    assert_eq!(c.input, Input::Drained);
}

#[test]
fn an_http_client_that_does_not_read_is_held_at_the_output_cap_then_dropped() {
    let mut ctx = ctx();
    let t0 = Instant::now();
    let (cfg, m) = (ctx.shared.config.clone(), ctx.shared.metrics.clone());
    let mut c = conn(t0);
    c.socket.room = 0; // the client reads nothing
    let flood = 20_000;
    for _ in 0..flood {
        c.socket.input.extend(HEALTH);
    }
    for _ in 0..100 {
        handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    }
    assert_eq!(c.input, Input::Held);
    let answered = ctx.shared.metrics.http_requests.load(Relaxed) as usize;
    assert!(answered < 1000, "reading stopped at the cap, after {answered} answers");
    assert!(c.out.owned_bytes() <= handle::HTTP_OUTPUT_CAP + 4096);
    assert!(c.socket.input.len() > (flood - 4000) * HEALTH.len(), "the rest stays unread");

    // The client reads: the held requests are answered as room appears.
    c.socket.room = ROOMY;
    c.flush(t0, &m);
    assert!(!handle::must_hold(&c, &ctx.shared));
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    assert!(ctx.shared.metrics.http_requests.load(Relaxed) as usize > answered);

    // It stops reading again, and makes no progress for the slow-consumer timeout.
    c.socket.room = 0;
    for _ in 0..10 {
        handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    }
    assert!(!c.out.is_empty());
    let stalled = c.last_progress;
    let before = stalled + cfg.slow_consumer_timeout - Duration::from_millis(1);
    assert_eq!(c.on_timer(before, &cfg, &m), TimerAction::Idle);
    assert_eq!(c.on_timer(stalled + cfg.slow_consumer_timeout, &cfg, &m), TimerAction::Drop);
    assert_eq!(m.slow_consumer_closes.load(Relaxed), 1);
}

#[test]
fn every_frame_counts_against_the_rate_and_a_ping_flood_is_closed_1008() {
    let mut ctx = ctx_with(|c| c.control_rate = 5);
    let t0 = Instant::now();
    let mut c = session(&mut ctx, t0);
    let ping = frame::encode_client_frame(true, OpCode::Ping, b"p", [1, 2, 3, 4]);
    for _ in 0..5 {
        c.socket.input.extend(&ping);
    }
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    let pong = frame::encode_frame(OpCode::Pong, b"p");
    assert_eq!(c.socket.output, pong.repeat(5), "five pongs within the rate");
    c.socket.output.clear();
    for _ in 0..15 {
        c.socket.input.extend(&ping);
    }
    handle::on_readable(&mut c, ConnKey(0), &mut ctx, t0);
    assert_eq!(close_frame(&c.socket.output), Some((1008, "rate limit".into())));
    assert_eq!(ctx.shared.metrics.rate_limit_closes.load(Relaxed), 1);
    assert_eq!(sessions_open(&ctx), 0);
}

#[test]
fn the_per_key_session_cap_answers_503_until_a_session_ends() {
    let mut ctx = ctx_with(|c| c.max_sessions_per_key = Some(1));
    let t0 = Instant::now();
    let (linger, m) = (ctx.shared.config.close_linger, ctx.shared.metrics.clone());
    let mut first = session(&mut ctx, t0);
    let mut second = conn(t0);
    second.socket.input.extend(upgrade_request(&token(&ctx)));
    handle::on_readable(&mut second, ConnKey(1), &mut ctx, t0);
    let out = String::from_utf8_lossy(&second.socket.output).into_owned();
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(out.ends_with(r#"{"error":"too many sessions for this API key"}"#), "{out}");
    assert_eq!(m.sessions_refused.get(crate::metrics::SessionLimit::PerKey), 1);
    assert!(!second.is_subscriber());

    // The first session's close gives its slot back.
    first.close_session(CloseCode::GoingAway, "bye", t0, linger, &m);
    second.socket.output.clear();
    second.socket.input.extend(upgrade_request(&token(&ctx)));
    handle::on_readable(&mut second, ConnKey(1), &mut ctx, t0);
    assert!(second.is_subscriber());
}

#[test]
fn after_an_idle_spell_a_new_session_gets_no_old_snapshot_but_the_next_tick() {
    use crate::server::fanout::{Current, fan_out};
    let mut ctx = ctx();
    let t0 = Instant::now();
    ctx.snapshot = Some(tick(5, b"\x81\x03old"));
    ctx.snapshot_gen = 41;
    ctx.snapshot_at = Some(t0);
    // The loop's last tick came 8 s before this upgrade (nobody listened meanwhile).
    let later = t0 + Duration::from_secs(8);
    let mut c = conn(later);
    c.socket.input.extend(upgrade_request(&token(&ctx)));
    assert_eq!(handle::on_readable(&mut c, ConnKey(0), &mut ctx, later), Verdict::Open);
    assert!(c.is_subscriber());
    assert!(!c.socket.output.ends_with(b"\x81\x03old"), "no 8 s old prices");
    c.socket.output.clear();

    // The tick the upgrade woke is its first: nothing skipped, nothing conflated.
    let mut conns = slab::Slab::new();
    conns.insert(c);
    let mut next = Current { tick: tick(6, b"\x81\x03new"), count: 42 };
    let hour = Duration::from_secs(3600);
    let totals = fan_out(&mut conns, &mut next, 0, later, &mut Vec::new(), hour, || None);
    assert_eq!((totals.frames, totals.conflated), (1, 0));
    assert_eq!(conns[0].socket.output, b"\x81\x03new");
}

#[test]
fn a_session_opened_before_the_loops_first_tick_misses_none_of_the_ticks_before_it() {
    use crate::server::fanout::{Current, fan_out};
    let mut ctx = ctx();
    let t0 = Instant::now();
    let c = session(&mut ctx, t0);
    assert!(matches!(&c.state, State::WebSocket { feed, .. } if feed.offered.is_none()));
    let mut conns = slab::Slab::new();
    conns.insert(c);
    let (hour, mut dead) = (Duration::from_secs(3600), Vec::new());
    // The loop's first tick came after two it skipped: none were this session's.
    let mut first = Current { tick: tick(3, b"\x81\x01a"), count: 3 };
    let totals = fan_out(&mut conns, &mut first, 0, t0, &mut dead, hour, || None);
    assert_eq!((totals.frames, totals.conflated), (1, 0));
    assert_eq!(fan_out(&mut conns, &mut first, 0, t0, &mut dead, hour, || None).frames, 0);
    let mut later = Current { tick: tick(5, b"\x81\x01b"), count: 5 };
    let totals = fan_out(&mut conns, &mut later, 0, t0, &mut dead, hour, || None);
    assert_eq!((totals.frames, totals.conflated), (1, 1), "tick 4 never reached it");
}
