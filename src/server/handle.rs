//! What a connection does with the bytes it reads: HTTP requests are routed and answered
//! (or handed to a worker, or upgraded), WebSocket frames are decoded and answered.
//!
//! Functions here take the connection, the loop's context and `now`; they queue bytes in
//! the connection's outbox and return a [`Verdict`]. Only `shard.rs` polls and closes.

use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::TrySendError;

use super::Shared;
use super::conn::{Conn, HttpPhase, MAX_QUEUED, Session, State};
use crate::auth::token::{TokenError, unix_now};
use crate::error::{CloseCode, HttpError};
use crate::http::cors;
use crate::http::request::{Request, parse_request};
use crate::http::response::Response;
use crate::http::routes::{self, Route};
use crate::metrics::WsAuthOutcome;
use crate::parse::Status;
use crate::ticker::Tick;
use crate::workers::{Job, ReplyTo, Task};
use crate::ws::codec::{Decoder, Message};
use crate::ws::frame::{self, OpCode};
use crate::ws::handshake;

/// How long a closing HTTP connection may take to flush and see the peer's FIN
/// (WebSocket sessions use `--close-linger`).
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Whether the connection stays open after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Open,
    Close,
}

/// The event loop's state that handlers need, apart from the connection table.
pub(crate) struct LoopCtx {
    pub(crate) shard: usize,
    pub(crate) shared: Arc<Shared>,
    /// The newest tick, sent to a new subscriber right after `welcome`.
    pub(crate) snapshot: Option<Tick>,
    /// One read buffer for every connection of this loop.
    pub(crate) read_buf: Box<[u8]>,
}

/// Reads until the socket would block, handling what arrives, then flushes.
pub(crate) fn on_readable(conn: &mut Conn, key: usize, ctx: &mut LoopCtx, now: Instant) -> Verdict {
    let cap =
        ctx.shared.config.http_limits.max_head + ctx.shared.config.http_limits.max_body + 4096;
    loop {
        // A connection waiting on a worker holds at most `cap` pipelined bytes; the rest
        // stays in the kernel and is read when the answer is out (see `on_completion`).
        if matches!(conn.state, State::Http { phase: HttpPhase::Waiting { .. }, .. })
            && conn.inbuf.len() >= cap
        {
            break;
        }
        match conn.socket.read(&mut ctx.read_buf) {
            Ok(0) => {
                if on_eof(conn, now) == Verdict::Close {
                    return Verdict::Close;
                }
                break;
            }
            Ok(n) => {
                conn.last_read = now;
                if let State::Closing { .. } = conn.state {
                    continue; // draining towards EOF
                }
                if let State::Http { phase: HttpPhase::Reading, head_since, .. } = &mut conn.state {
                    head_since.get_or_insert(now);
                }
                conn.inbuf.extend_from_slice(&ctx.read_buf[..n]);
                if process(conn, key, ctx, now) == Verdict::Close {
                    return Verdict::Close;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Verdict::Close,
        }
    }
    conn.trim_inbuf();
    flush(conn, ctx, now)
}

/// The peer closed its side.
fn on_eof(conn: &mut Conn, now: Instant) -> Verdict {
    match &mut conn.state {
        // A half-closed HTTP client still gets the answer it asked for.
        State::Http { phase: HttpPhase::Waiting { keep_alive, .. }, .. } => {
            *keep_alive = false;
            Verdict::Open
        }
        State::Http { .. } if !conn.out.is_empty() => {
            conn.state = State::Closing { deadline: now + CLOSE_LINGER, write_shut: false };
            Verdict::Open
        }
        _ => Verdict::Close,
    }
}

/// Handles whatever complete requests or frames `inbuf` holds.
pub(crate) fn process(conn: &mut Conn, key: usize, ctx: &mut LoopCtx, now: Instant) -> Verdict {
    if let State::Http { .. } = conn.state
        && process_http(conn, key, ctx, now) == Verdict::Close
    {
        return Verdict::Close;
    }
    if let State::WebSocket(_) = conn.state {
        return process_ws(conn, ctx, now);
    }
    if let State::Closing { .. } = conn.state {
        conn.inbuf.clear();
    }
    Verdict::Open
}

fn process_http(conn: &mut Conn, key: usize, ctx: &mut LoopCtx, now: Instant) -> Verdict {
    let limits = ctx.shared.config.http_limits;
    while let State::Http { phase: HttpPhase::Reading, .. } = conn.state {
        if conn.inbuf.is_empty() {
            break;
        }
        match parse_request(&conn.inbuf, &limits) {
            Ok(Status::Partial) => break,
            Ok(Status::Complete { value: req, consumed }) => {
                conn.inbuf.drain(..consumed);
                if let State::Http { served, head_since, idle_since, .. } = &mut conn.state {
                    *served += 1;
                    *head_since = (!conn.inbuf.is_empty()).then_some(now);
                    *idle_since = now;
                }
                ctx.shared.metrics.http_requests.fetch_add(1, Relaxed);
                handle_request(conn, key, ctx, req, now);
            }
            Err(e) => {
                crate::debug!("bad request", peer = conn.peer, error = e);
                conn.inbuf.clear();
                send_response(conn, Response::error(&e), false, None, now);
                break;
            }
        }
    }
    Verdict::Open
}

fn handle_request(conn: &mut Conn, key: usize, ctx: &mut LoopCtx, req: Request, now: Instant) {
    let shared = ctx.shared.clone();
    let keep_alive = req.keep_alive() && !shared.is_shutting_down();
    // CORS applies to the API routes (static files are same-origin), and only for an
    // allowed origin; `origin` is carried to the response already filtered.
    let origin = req
        .header("Origin")
        .filter(|o| routes::is_api_path(&req.path) && shared.config.allowed_origins.allows(o))
        .map(str::to_owned);
    match routes::route(&req, &shared.config.allowed_origins) {
        Route::Respond(r) => send_response(conn, r, keep_alive, origin.as_deref(), now),
        Route::Health => {
            let r = Response::json(200, &serde_json::json!({ "status": "ok" }));
            send_response(conn, r, keep_alive, origin.as_deref(), now);
        }
        Route::Metrics { head_only } => {
            let mut r = Response::new(200)
                .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            r.body = shared.metrics.render().into_bytes();
            r.head_only = head_only;
            send_response(conn, r, keep_alive, origin.as_deref(), now);
        }
        Route::IssueToken { api_key } => submit(
            conn,
            key,
            ctx,
            Task::IssueToken { api_key, ip: conn.peer.ip() },
            keep_alive,
            origin,
            now,
        ),
        Route::Static(sreq) => submit(conn, key, ctx, Task::Static(sreq), keep_alive, origin, now),
        Route::RevokeToken { token } => {
            let r = match shared.tokens.verify(&token, unix_now()) {
                Ok(verified) => {
                    shared.tokens.revoke_token(&token);
                    shared.broadcast(super::Control::RevokeToken(verified.id));
                    crate::info!(
                        "token revoked by its holder",
                        user_id = verified.actor.user_id,
                        token = crate::auth::token::TokenStore::fingerprint(&token)
                    );
                    Response::json(200, &serde_json::json!({ "revoked": true }))
                }
                Err(_) => Response::error(&HttpError::AuthenticationRequired),
            };
            send_response(conn, r, keep_alive, origin.as_deref(), now);
        }
        Route::Upgrade { token } => upgrade(conn, ctx, &req, token, origin, now),
    }
}

/// Hands blocking work to the pool; the answer comes back through `on_completion`.
fn submit(
    conn: &mut Conn,
    key: usize,
    ctx: &mut LoopCtx,
    task: Task,
    keep_alive: bool,
    origin: Option<String>,
    now: Instant,
) {
    let job = Job { task, reply: ReplyTo { shard: ctx.shard, conn: key, serial: conn.serial } };
    match ctx.shared.jobs.try_send(job) {
        Ok(()) => {
            if let State::Http { phase, .. } = &mut conn.state {
                *phase = HttpPhase::Waiting { keep_alive, origin };
            }
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            crate::warn!("worker queue full; answering 503");
            send_response(
                conn,
                Response::error(&HttpError::ServerBusy),
                false,
                origin.as_deref(),
                now,
            );
        }
    }
}

/// A worker's answer for this connection.
pub(crate) fn on_completion(
    conn: &mut Conn,
    key: usize,
    ctx: &mut LoopCtx,
    response: Response,
    now: Instant,
) -> Verdict {
    let State::Http { phase: HttpPhase::Waiting { keep_alive, origin }, .. } = &mut conn.state
    else {
        return Verdict::Open;
    };
    let (keep_alive, origin) = (*keep_alive && !ctx.shared.is_shutting_down(), origin.take());
    if let State::Http { phase, idle_since, .. } = &mut conn.state {
        *phase = HttpPhase::Reading;
        *idle_since = now;
    }
    send_response(conn, response, keep_alive, origin.as_deref(), now);
    // Pipelined requests may be waiting in `inbuf` and in the kernel.
    if process(conn, key, ctx, now) == Verdict::Close {
        return Verdict::Close;
    }
    on_readable(conn, key, ctx, now)
}

/// Queues a response; without keep-alive the connection then closes after the flush.
fn send_response(
    conn: &mut Conn,
    mut r: Response,
    keep_alive: bool,
    origin: Option<&str>,
    now: Instant,
) {
    if let Some(origin) = origin.filter(|_| !r.has_header("Access-Control-Allow-Origin")) {
        cors::allow_origin(&mut r, origin);
    }
    queue(conn, r.to_bytes(keep_alive, SystemTime::now()), now);
    if !keep_alive {
        conn.state = State::Closing { deadline: now + CLOSE_LINGER, write_shut: false };
    }
}

/// Queues owned bytes, starting the slow-consumer clock if the outbox was empty.
fn queue(conn: &mut Conn, bytes: Vec<u8>, now: Instant) {
    if conn.out.is_empty() {
        conn.last_progress = now;
    }
    conn.out.push(bytes);
}

/// `GET /ws/ticker`: the token first (401 before any upgrade), then the handshake.
fn upgrade(
    conn: &mut Conn,
    ctx: &mut LoopCtx,
    req: &Request,
    token: Option<String>,
    origin: Option<String>,
    now: Instant,
) {
    let shared = ctx.shared.clone();
    let metrics = &shared.metrics;
    let refuse = |conn: &mut Conn, e: HttpError| {
        send_response(conn, Response::error(&e), req.keep_alive(), origin.as_deref(), now)
    };
    let Some(token) = token else {
        metrics.ws_auth(WsAuthOutcome::Missing);
        return refuse(conn, HttpError::AuthenticationRequired);
    };
    let verified = match shared.tokens.verify(&token, unix_now()) {
        Ok(v) => v,
        Err(e) => {
            metrics.ws_auth(if e == TokenError::Expired {
                WsAuthOutcome::Expired
            } else {
                WsAuthOutcome::Invalid
            });
            return refuse(conn, HttpError::AuthenticationRequired);
        }
    };
    let key = match handshake::check_upgrade(req) {
        Ok(key) => key,
        Err(e) => return refuse(conn, e),
    };
    if shared.is_shutting_down() {
        return refuse(conn, HttpError::ServerBusy);
    }
    metrics.ws_auth(WsAuthOutcome::Accepted);
    metrics.ws_sessions_open.fetch_add(1, Relaxed);
    metrics.ws_sessions_total.fetch_add(1, Relaxed);
    crate::debug!("session opened", user_id = verified.actor.id, peer = conn.peer);

    if shared.config.send_buffer > 0 {
        // A small kernel buffer bounds what a stalled subscriber holds in the kernel and
        // makes conflation deliver fresh ticks instead of seconds-old queued ones.
        conn.set_send_buffer(shared.config.send_buffer);
    }
    queue(conn, handshake::switching_protocols(&handshake::accept_key(&key)), now);
    let welcome =
        serde_json::json!({ "type": "welcome", "user_id": verified.actor.id }).to_string();
    conn.out.push(frame::encode_frame(OpCode::Text, welcome.as_bytes()));
    if let Some(snapshot) = &ctx.snapshot {
        conn.out.offer_tick(snapshot.frame.clone());
    }
    conn.last_read = now;
    conn.state = State::WebSocket(Box::new(Session {
        decoder: Decoder::new(shared.config.max_message),
        actor: verified.actor,
        api_key_id: verified.api_key_id,
        token_id: verified.id,
        ping_outstanding: false,
    }));
}

fn process_ws(conn: &mut Conn, ctx: &mut LoopCtx, now: Instant) -> Verdict {
    loop {
        let State::WebSocket(session) = &mut conn.state else { return Verdict::Open };
        if conn.inbuf.is_empty() {
            return Verdict::Open;
        }
        let message = match session.decoder.decode(&mut conn.inbuf) {
            Ok(Status::Partial) => return Verdict::Open,
            Ok(Status::Complete { value, consumed }) => {
                conn.inbuf.drain(..consumed);
                session.ping_outstanding = false;
                value
            }
            Err(e) => {
                crate::debug!("protocol error", peer = conn.peer, error = e);
                ctx.shared.metrics.protocol_error_closes.fetch_add(1, Relaxed);
                start_close(conn, ctx, e.close_code(), e.reason(), now);
                return Verdict::Open;
            }
        };
        let Some(message) = message else { continue };
        match message {
            Message::Text(text) => {
                let is_ping = serde_json::from_str::<serde_json::Value>(&text)
                    .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("ping"));
                if is_ping {
                    queue(conn, frame::encode_frame(OpCode::Text, br#"{"type":"pong"}"#), now);
                }
            }
            Message::Binary(_) | Message::Pong(_) => {}
            Message::Ping(payload) => queue(conn, frame::encode_frame(OpCode::Pong, &payload), now),
            Message::Close(code) => {
                // Echo the code and finish: the close handshake is complete.
                let reply = match code {
                    Some((code, _)) => frame::encode_close(CloseCode::from_u16(code), ""),
                    None => frame::encode_frame(OpCode::Close, &[]),
                };
                leave_session(conn, ctx);
                conn.out.clear_pending();
                queue(conn, reply, now);
                let deadline = now + ctx.shared.config.close_linger;
                conn.state = State::Closing { deadline, write_shut: false };
                return Verdict::Open;
            }
        }
        if conn.out.queued() > MAX_QUEUED {
            start_close(conn, ctx, CloseCode::PolicyViolation, "too many unread replies", now);
            return Verdict::Open;
        }
    }
}

/// Server-initiated close of a WebSocket session: drop what is pending (but finish the
/// frame in flight), send the close frame, then linger briefly.
pub(crate) fn start_close(
    conn: &mut Conn,
    ctx: &LoopCtx,
    code: CloseCode,
    reason: &str,
    now: Instant,
) {
    if !conn.is_subscriber() {
        return;
    }
    leave_session(conn, ctx);
    conn.out.clear_pending();
    queue(conn, frame::encode_close(code, reason), now);
    let deadline = now + ctx.shared.config.close_linger;
    conn.state = State::Closing { deadline, write_shut: false };
}

/// Bookkeeping when a connection stops being a WebSocket session.
pub(crate) fn leave_session(conn: &Conn, ctx: &LoopCtx) {
    if conn.is_subscriber() {
        ctx.shared.metrics.ws_sessions_open.fetch_sub(1, Relaxed);
    }
}

/// Writes what the outbox holds; half-closes a closing connection once it is flushed.
pub(crate) fn flush(conn: &mut Conn, ctx: &LoopCtx, now: Instant) -> Verdict {
    if !conn.out.is_empty() {
        match conn.out.flush(&mut conn.socket) {
            Ok(done) => {
                if done.bytes > 0 {
                    conn.last_progress = now;
                    let m = &ctx.shared.metrics;
                    m.bytes_sent.fetch_add(done.bytes as u64, Relaxed);
                    if done.ticks > 0 {
                        m.frames_sent.fetch_add(done.ticks as u64, Relaxed);
                    }
                }
            }
            Err(_) => return Verdict::Close,
        }
    }
    if conn.out.is_empty()
        && let State::Closing { write_shut, .. } = &mut conn.state
        && !*write_shut
    {
        // FIN after the last byte; the peer's FIN (or the deadline) ends it.
        let _ = conn.socket.shutdown(Shutdown::Write);
        *write_shut = true;
    }
    Verdict::Open
}

/// Periodic checks with `now`: head and idle timeouts, heartbeat, slow consumers,
/// closing deadlines.
pub(crate) fn on_timer(conn: &mut Conn, ctx: &LoopCtx, now: Instant) -> Verdict {
    let cfg = &ctx.shared.config;
    match &mut conn.state {
        State::Http { phase: HttpPhase::Reading, head_since, idle_since, served } => {
            let head_expired = head_since.is_some_and(|t| now >= t + cfg.head_timeout);
            let idle_limit = if *served == 0 { cfg.head_timeout } else { cfg.keepalive_timeout };
            let idle_expired =
                head_since.is_none() && conn.out.is_empty() && now >= *idle_since + idle_limit;
            if head_expired {
                crate::debug!("request head timeout", peer = conn.peer);
                send_response(conn, Response::error(&HttpError::RequestTimeout), false, None, now);
                return flush(conn, ctx, now);
            }
            if idle_expired {
                return Verdict::Close;
            }
            Verdict::Open
        }
        State::Http { phase: HttpPhase::Waiting { .. }, .. } => Verdict::Open,
        State::WebSocket(session) => {
            if !conn.out.is_empty() && now >= conn.last_progress + cfg.slow_consumer_timeout {
                crate::info!("slow consumer closed", user_id = session.actor.id, peer = conn.peer);
                ctx.shared.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                start_close(conn, ctx, CloseCode::PolicyViolation, "slow consumer", now);
                return flush(conn, ctx, now);
            }
            if now >= conn.last_read + cfg.dead_after {
                crate::debug!("heartbeat timeout", peer = conn.peer);
                ctx.shared.metrics.heartbeat_closes.fetch_add(1, Relaxed);
                start_close(conn, ctx, CloseCode::GoingAway, "heartbeat timeout", now);
                return flush(conn, ctx, now);
            }
            if now >= conn.last_read + cfg.ping_after && !session.ping_outstanding {
                session.ping_outstanding = true;
                queue(conn, frame::encode_frame(OpCode::Ping, b"hb"), now);
                return flush(conn, ctx, now);
            }
            Verdict::Open
        }
        State::Closing { deadline, .. } => {
            if now >= *deadline {
                Verdict::Close
            } else {
                Verdict::Open
            }
        }
    }
}
