//! What a connection does with the bytes it reads: HTTP requests are routed and answered
//! (or handed to a worker, or upgraded) here; an open session's WebSocket frames are
//! decoded and answered in `ws` (`handle/ws.rs`).
//!
//! Functions here take the connection, the loop's context and `now`; they queue bytes in
//! the connection's outbox and return a [`Verdict`]. Only `shard.rs` polls and closes.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use crossbeam_channel::TrySendError;

use super::conn::{
    Awaiting, Conn, Feed, HandshakeCheck, HttpPhase, Input, Session, State, TimerAction,
    UpgradeAsk, Verdict,
};
use super::transport::Socket;
use super::{Reply, Shared};
use crate::auth::token::VerifiedToken;
use crate::control::RateBudget;
use crate::error::HttpError;
use crate::http::request::{Request, parse_request};
use crate::http::response::Response;
use crate::http::routes::{self, Route};
use crate::http::static_files;
use crate::http::{cors, forwarded};
use crate::metrics::WsAuthOutcome;
use crate::parse::Status;
use crate::symbols::{self, Change};
use crate::ticker::Tick;
use crate::ticker::variants::Encoding;
use crate::workers::{ConnKey, Job, ReplyTo};
use crate::ws::codec::Decoder;
use crate::ws::deflate::{self, Compression};
use crate::ws::handshake;

mod ws;

/// The event loop's state that handlers need, apart from the connection table.
pub(crate) struct LoopCtx {
    pub(crate) shard: usize,
    pub(crate) shared: Arc<Shared>,
    /// The newest tick, sent to a new subscriber right after `welcome`, and the loop's
    /// count of it ([`Feed::offered`]; meaningful only while `snapshot` holds a tick).
    pub(crate) snapshot: Option<Tick>,
    pub(crate) snapshot_gen: u64,
    /// When the loop received the snapshot's tick: it is the current prices only while
    /// ticks keep coming (see [`fresh_snapshot`]).
    pub(crate) snapshot_at: Option<Instant>,
    /// One read buffer for every connection of this loop.
    pub(crate) read_buf: Box<[u8]>,
}

/// Bytes one connection may have read in one loop turn: one fill of the loop's read
/// buffer. Enough for any whole request (16 KiB head + 16 KiB body) or message (32 KiB).
pub(crate) const READ_BUDGET: usize = 64 * 1024;
/// Requests or WebSocket frames one connection may have handled in one loop turn. A
/// turn of 32 small requests costs the loop about 0.1 ms; the rest waits for the next
/// turn, after ticks, accepts, timers and every other ready connection.
pub(crate) const MESSAGE_BUDGET: u32 = 32;
/// Unsent answers an HTTP connection may have queued before the server stops reading
/// and parsing its requests: a few responses (the largest, `/metrics`, is a few KiB).
/// Reading resumes as the client takes them; one that never does is dropped by the
/// slow-consumer rule.
pub(crate) const HTTP_OUTPUT_CAP: usize = 64 * 1024;
/// The least a read is charged, however few bytes it returned: a TLS read may have opened
/// a record for one byte of plaintext, and the cost is per read. At most 64 reads a turn.
const READ_CHARGE_MIN: usize = 1024;
/// What a read that took ciphertext but yielded no plaintext yet (`Interrupted` from the
/// TLS transport) is charged: one TLS record's worth of input, so at most four a turn.
const NO_PLAINTEXT_CHARGE: usize = 16 * 1024;

/// What a connection may still make the loop do in this turn.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnBudget {
    bytes: usize,
    messages: u32,
}

impl TurnBudget {
    pub(crate) fn new() -> TurnBudget {
        TurnBudget { bytes: READ_BUDGET, messages: MESSAGE_BUDGET }
    }

    fn spent(&self) -> bool {
        self.bytes == 0 || self.messages == 0
    }

    /// Takes one request or frame; `false` when none is left.
    fn take_message(&mut self) -> bool {
        if self.messages == 0 {
            return false;
        }
        self.messages -= 1;
        true
    }
}

/// Handles input left from an earlier turn, then reads and handles more until the socket
/// would block, the turn's [`TurnBudget`] is spent, or the connection's own answers must
/// drain first; records which in `conn.input`, then flushes.
pub(crate) fn on_readable<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    now: Instant,
) -> Verdict {
    let mut budget = TurnBudget::new();
    loop {
        conn.input = Input::Drained;
        if process(conn, key, ctx, now, &mut budget) == Verdict::Close
            || read_and_process(conn, key, ctx, now, &mut budget) == Verdict::Close
        {
            return Verdict::Close;
        }
        conn.trim_inbuf();
        if conn.flush(now, &ctx.shared.metrics) == Verdict::Close {
            return Verdict::Close;
        }
        // Held for its own answers, and the socket took them at once: no writable event
        // will come to resume it, so go on here, within this turn's budget.
        if conn.input != Input::Held || must_hold(conn, &ctx.shared) {
            return Verdict::Open;
        }
        if budget.spent() {
            conn.input = Input::OverBudget;
            return Verdict::Open;
        }
    }
}

/// The reading half of [`on_readable`]: reads until the socket would block, the budget
/// is spent or reading must wait, handling what arrives.
fn read_and_process<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    now: Instant,
    budget: &mut TurnBudget,
) -> Verdict {
    loop {
        if must_hold(conn, &ctx.shared) {
            conn.input = Input::Held;
            return Verdict::Open;
        }
        // Out of budget, or whole requests/frames still waiting in `inbuf`: come back
        // next turn rather than read more.
        if budget.spent() || conn.input == Input::OverBudget {
            conn.input = Input::OverBudget;
            return Verdict::Open;
        }
        let room = budget.bytes.min(ctx.read_buf.len());
        match conn.socket.read(&mut ctx.read_buf[..room]) {
            Ok(0) => return on_eof(conn, ctx, now),
            Ok(n) => {
                budget.bytes = budget.bytes.saturating_sub(n.max(READ_CHARGE_MIN));
                conn.last_read = now;
                if let State::Closing { .. } = conn.state {
                    continue; // draining towards EOF, within the budget
                }
                if let State::Http { phase: HttpPhase::Reading, head_since, .. } = &mut conn.state {
                    head_since.get_or_insert(now);
                }
                conn.inbuf.extend_from_slice(&ctx.read_buf[..n]);
                if process(conn, key, ctx, now, budget) == Verdict::Close {
                    return Verdict::Close;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Verdict::Open,
            // EINTR, or a TLS read that took records but has no plaintext yet: input was
            // consumed, so it counts against the turn like a read.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                budget.bytes = budget.bytes.saturating_sub(NO_PLAINTEXT_CHARGE);
            }
            Err(_) => return Verdict::Close,
        }
    }
}

/// Reading waits for this connection's own output: a worker is preparing its answer and
/// it already holds a whole request's worth of pipelined bytes, or its unsent answers
/// are over [`HTTP_OUTPUT_CAP`]. What it sends meanwhile stays in the kernel.
pub(crate) fn must_hold<S: Socket>(conn: &Conn<S>, shared: &Shared) -> bool {
    let State::Http { phase, .. } = &conn.state else { return false };
    let limits = shared.config.http_limits();
    // Room for one whole request (head + body) plus one read's worth of the next.
    let cap = limits.max_head + limits.max_body + 4096;
    match phase {
        HttpPhase::Waiting { .. } => conn.inbuf.len() >= cap,
        HttpPhase::Reading => conn.out.owned_bytes() >= HTTP_OUTPUT_CAP,
    }
}

/// The peer closed its side.
fn on_eof<S: Socket>(conn: &mut Conn<S>, ctx: &LoopCtx, now: Instant) -> Verdict {
    match &mut conn.state {
        // A half-closed HTTP client still gets the answer it asked for.
        State::Http { phase: HttpPhase::Waiting { keep_alive, .. }, .. } => {
            *keep_alive = false;
            Verdict::Open
        }
        State::Http { .. } if !conn.out.is_empty() => {
            conn.close_after_flush(now, &ctx.shared.metrics);
            Verdict::Open
        }
        _ => Verdict::Close,
    }
}

/// Handles the complete requests or frames `inbuf` holds, as many as `budget` allows;
/// sets `conn.input` to [`Input::OverBudget`] if it left some.
pub(crate) fn process<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    now: Instant,
    budget: &mut TurnBudget,
) -> Verdict {
    if let State::Http { .. } = conn.state {
        process_http(conn, key, ctx, now, budget);
    }
    if let State::WebSocket { .. } = conn.state {
        ws::process_frames(conn, ctx, now, budget);
    }
    if let State::Closing { .. } = conn.state {
        conn.inbuf.clear();
    }
    Verdict::Open
}

fn process_http<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    now: Instant,
    budget: &mut TurnBudget,
) {
    let limits = ctx.shared.config.http_limits();
    while let State::Http { phase: HttpPhase::Reading, .. } = conn.state {
        if conn.inbuf.is_empty() || must_hold(conn, &ctx.shared) {
            break;
        }
        // The request borrows the bytes it was parsed from, so they leave the
        // connection while it is handled (handling never reads more).
        let mut inbuf = std::mem::take(&mut conn.inbuf);
        match parse_request(&inbuf, &limits) {
            Ok(Status::Partial) => {
                conn.inbuf = inbuf;
                break;
            }
            Ok(Status::Complete { .. }) if !budget.take_message() => {
                conn.inbuf = inbuf;
                conn.input = Input::OverBudget;
                break;
            }
            Ok(Status::Complete { value: req, consumed }) => {
                if let State::Http { served, head_since, idle_since, .. } = &mut conn.state {
                    *served += 1;
                    *head_since = (inbuf.len() > consumed).then_some(now);
                    *idle_since = now;
                }
                ctx.shared.metrics.http_requests.fetch_add(1, Relaxed);
                handle_request(conn, key, ctx, req, now);
                inbuf.drain(..consumed);
                conn.inbuf = inbuf;
            }
            Err(e) => {
                crate::debug!("bad request", peer = conn.peer, error = e);
                send_error(conn, ctx, &e, true, None, now);
                break;
            }
        }
    }
}

fn handle_request<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    req: Request<'_>,
    now: Instant,
) {
    let shared = ctx.shared.clone();
    let keep_alive = req.keep_alive() && !shared.is_shutting_down();
    // CORS applies to the API routes (static files are same-origin), and only for an
    // allowed origin; `origin` is carried to the response already filtered.
    let origin = req
        .header("Origin")
        .filter(|o| routes::is_api_path(req.path) && shared.config.allowed_origins.allows(o))
        .map(str::to_owned);
    match routes::route(&req, &shared.config.allowed_origins) {
        Route::Respond(r) => send_response(conn, ctx, r, keep_alive, origin.as_deref(), now),
        Route::Health => {
            let unhealthy = shared.unhealthy_reason();
            let source = shared.source_health();
            let master = shared.redis_master();
            let master = master.as_ref().map(|(addr, since_unix, failovers)| routes::MasterInfo {
                addr,
                since_unix: *since_unix,
                failovers: *failovers,
            });
            let r =
                routes::health_response(unhealthy.as_deref(), source, shared.clustered(), master);
            send_response(conn, ctx, r, keep_alive, origin.as_deref(), now);
        }
        Route::Metrics { head_only } => {
            let sets = i64::try_from(shared.symbol_sets.len()).unwrap_or(i64::MAX);
            shared.metrics.symbol_sets.store(sets, Relaxed);
            let r = routes::metrics_response(shared.metrics.render(), head_only);
            send_response(conn, ctx, r, keep_alive, origin.as_deref(), now);
        }
        Route::IssueToken { api_key } => {
            let ip = client_ip(&req, conn, &shared);
            let permit = match shared.auth.admit(ip) {
                Ok(permit) => permit,
                Err(e) => return send_error(conn, ctx, &e, keep_alive, origin.as_deref(), now),
            };
            let auth = shared.auth.clone();
            let work = move || {
                Reply::Answer(match auth.exchange(&api_key, permit) {
                    Ok(grant) => grant.to_response(),
                    Err(e) => Response::error(&e),
                })
            };
            submit(conn, key, ctx, Box::new(work), keep_alive, origin, Awaiting::Answer, now);
        }
        Route::Static(sreq) => {
            let root = shared.public_root.clone();
            let work = move || Reply::Answer(static_files::serve(&root, &sreq));
            submit(conn, key, ctx, Box::new(work), keep_alive, origin, Awaiting::Answer, now);
        }
        Route::RevokeToken { token } if shared.auth.tokens.lookups_block() => {
            // A cluster's store: the revocation reaches every node's sessions, this
            // one's included, through the revocation feed.
            let auth = shared.auth.clone();
            let work = move || {
                Reply::Answer(match auth.revoke_own(&token) {
                    Ok(_) => revoked_response(),
                    Err(e) => Response::error(&e),
                })
            };
            submit(conn, key, ctx, Box::new(work), keep_alive, origin, Awaiting::Answer, now);
        }
        Route::RevokeToken { token } => match shared.auth.revoke_own(&token) {
            Ok(verified) => {
                shared.broadcast(super::Control::RevokeToken(verified.id));
                send_response(conn, ctx, revoked_response(), keep_alive, origin.as_deref(), now);
            }
            Err(e) => send_error(conn, ctx, &e, keep_alive, origin.as_deref(), now),
        },
        Route::Upgrade { token: Some(token) } if shared.auth.tokens.lookups_block() => {
            // The handshake is checked now (the request is gone when the worker
            // answers) but answered after the token: 401 comes before 426/400.
            let compression = shared.config.compression;
            let handshake = check_upgrade(&req, client_ip(&req, conn, &shared), compression);
            let auth = shared.auth.clone();
            let work = move || Reply::Authorized(auth.authorize_upgrade(Some(&token)));
            let awaiting = Awaiting::Token(Box::new(handshake));
            submit(conn, key, ctx, Box::new(work), req.keep_alive(), origin, awaiting, now);
        }
        Route::Upgrade { token } => {
            let verified = shared.auth.authorize_upgrade(token.as_deref());
            let compression = shared.config.compression;
            let handshake = check_upgrade(&req, client_ip(&req, conn, &shared), compression);
            finish_upgrade(conn, ctx, verified, handshake, req.keep_alive(), origin, now);
        }
    }
}

/// The client's address: the peer, or what a trusted proxy says (`--trusted-proxies`).
fn client_ip<S: Socket>(req: &Request<'_>, conn: &Conn<S>, shared: &Shared) -> IpAddr {
    forwarded::client_ip_of(req, conn.peer.ip(), &shared.config.trusted_proxies)
}

/// The handshake's checks, and the symbols asked for in `?symbols=A,B` (resolved once
/// the token is accepted, so a refused token learns nothing about them).
fn check_upgrade(req: &Request<'_>, client: IpAddr, compression: Compression) -> HandshakeCheck {
    let key = match handshake::check_upgrade(req) {
        Ok(key) => key,
        Err(e) => return HandshakeCheck::Refused(e),
    };
    let symbols = req.query_param("symbols").map(|v| {
        v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    });
    let delta = match req.query_param("delta").as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return HandshakeCheck::Refused(HttpError::BadDeltaParameter),
    };
    let deflate = match compression {
        Compression::Off => None,
        Compression::Deflate => deflate::negotiate(req.header_values("Sec-WebSocket-Extensions")),
    };
    let encoding = Encoding { delta, deflate };
    HandshakeCheck::Passed(UpgradeAsk { key, symbols, client, encoding })
}

fn revoked_response() -> Response {
    Response::json(200, &serde_json::json!({ "revoked": true }))
}

/// Hands blocking work to the pool; the answer comes back through `on_completion`.
#[allow(clippy::too_many_arguments)]
fn submit<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    work: Box<dyn FnOnce() -> Reply + Send>,
    keep_alive: bool,
    origin: Option<String>,
    awaiting: Awaiting,
    now: Instant,
) {
    let job = Job { work, reply: ReplyTo { shard: ctx.shard, conn: key, serial: conn.serial } };
    match ctx.shared.jobs.try_send(job) {
        Ok(()) => {
            if let State::Http { phase, .. } = &mut conn.state {
                *phase = HttpPhase::Waiting { keep_alive, origin, awaiting };
            }
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            crate::warn!("worker queue full; answering 503");
            send_error(conn, ctx, &HttpError::ServerBusy, keep_alive, origin.as_deref(), now);
        }
    }
}

/// A worker's answer for this connection.
pub(crate) fn on_completion<S: Socket>(
    conn: &mut Conn<S>,
    key: ConnKey,
    ctx: &mut LoopCtx,
    reply: Reply,
    now: Instant,
) -> Verdict {
    let State::Http { phase, idle_since, .. } = &mut conn.state else { return Verdict::Open };
    let HttpPhase::Waiting { keep_alive, origin, awaiting } =
        std::mem::replace(phase, HttpPhase::Reading)
    else {
        return Verdict::Open;
    };
    *idle_since = now;
    match (reply, awaiting) {
        (Reply::Authorized(verified), Awaiting::Token(handshake)) => {
            finish_upgrade(conn, ctx, verified, *handshake, keep_alive, origin, now);
        }
        (Reply::Answer(response), _) => {
            let keep_alive = keep_alive && !ctx.shared.is_shutting_down();
            send_response(conn, ctx, response, keep_alive, origin.as_deref(), now);
        }
        (Reply::Authorized(_), Awaiting::Answer) => {
            // A token check is only ever submitted with its handshake.
            send_error(conn, ctx, &HttpError::Internal, false, origin.as_deref(), now);
        }
    }
    // Pipelined requests may be waiting in `inbuf` and in the kernel: handled as a read
    // would be, within a turn's budget.
    on_readable(conn, key, ctx, now)
}

/// Answers an error: status and body from [`HttpError`], and the connection closes
/// afterwards when the error says so ([`HttpError::closes_connection`]).
fn send_error<S: Socket>(
    conn: &mut Conn<S>,
    ctx: &LoopCtx,
    e: &HttpError,
    keep_alive: bool,
    origin: Option<&str>,
    now: Instant,
) {
    let keep_alive = keep_alive && !e.closes_connection();
    send_response(conn, ctx, Response::error(e), keep_alive, origin, now);
}

/// Queues a response; without keep-alive the connection then closes after the flush.
fn send_response<S: Socket>(
    conn: &mut Conn<S>,
    ctx: &LoopCtx,
    mut r: Response,
    keep_alive: bool,
    origin: Option<&str>,
    now: Instant,
) {
    if let Some(origin) = origin.filter(|_| !r.has_header("Access-Control-Allow-Origin")) {
        cors::allow_origin(&mut r, origin);
    }
    conn.queue(r.to_bytes(keep_alive, SystemTime::now()), now);
    if !keep_alive {
        conn.close_after_flush(now, &ctx.shared.metrics);
    }
}

/// `GET /ws/ticker` once the token was checked: the token's refusal first (401 before
/// any upgrade), then the handshake's, then the session.
fn finish_upgrade<S: Socket>(
    conn: &mut Conn<S>,
    ctx: &mut LoopCtx,
    verified: Result<VerifiedToken, HttpError>,
    handshake: HandshakeCheck,
    keep_alive: bool,
    origin: Option<String>,
    now: Instant,
) {
    let shared = ctx.shared.clone();
    let origin = origin.as_deref();
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return send_error(conn, ctx, &e, keep_alive, origin, now),
    };
    let ask = match handshake {
        HandshakeCheck::Passed(ask) => ask,
        HandshakeCheck::Refused(e) => return send_error(conn, ctx, &e, keep_alive, origin, now),
    };
    if shared.is_shutting_down() {
        return send_error(conn, ctx, &HttpError::ServerBusy, keep_alive, origin, now);
    }
    let subscribed = match &ask.symbols {
        None => None,
        Some(names) => {
            let max = shared.config.max_session_symbols;
            let (table, sets) = (&shared.symbols, &shared.symbol_sets);
            match symbols::choose(table, sets, max, None, None, Change::Choose(names)) {
                Ok(subscribed) => Some(subscribed),
                Err(e) => {
                    return send_error(conn, ctx, &HttpError::Symbols(e), keep_alive, origin, now);
                }
            }
        }
    };
    // The caps come last: a refused token or handshake takes no slot.
    let permit = match &shared.session_limits {
        None => None,
        Some(limits) => match limits.admit(verified.api_key_id, ask.client) {
            Ok(permit) => Some(permit),
            Err(cap) => {
                shared.metrics.sessions_refused.inc(cap.limit());
                let e = HttpError::TooManySessions(cap);
                return send_error(conn, ctx, &e, keep_alive, origin, now);
            }
        },
    };
    shared.metrics.ws_auth(WsAuthOutcome::Accepted);
    crate::debug!("session opened", user_id = verified.actor.id, peer = conn.peer);
    if shared.config.send_buffer > 0 {
        // A small kernel buffer bounds what a stalled subscriber holds in the kernel and
        // makes conflation deliver fresh ticks instead of seconds-old queued ones.
        conn.socket.set_send_buffer(shared.config.send_buffer);
    }
    let welcome =
        serde_json::json!({ "type": "welcome", "user_id": verified.actor.id }).to_string();
    let (chosen, set) = match subscribed {
        Some(s) => (Some(s.set), s.lease),
        None => (None, None),
    };
    let encoding = ask.encoding;
    let (snapshot, last_seq) = match fresh_snapshot(ctx, now) {
        None => (None, None),
        Some(tick) => tick.snapshot_for(encoding, set.as_ref()),
    };
    // The snapshot's tick counts as offered even when it was too old to send: the
    // fan-out starts from the loop's next one.
    let offered = ctx.snapshot.as_ref().map(|_| ctx.snapshot_gen);
    let feed = Feed { set, offered, encoding, last_seq };
    let max_message = shared.config.max_message;
    let session = Session {
        decoder: match encoding.deflate {
            Some(_) => Decoder::with_deflate(max_message),
            None => Decoder::new(max_message),
        },
        actor: verified.actor,
        api_key_id: verified.api_key_id,
        token_id: verified.id,
        ping_outstanding: false,
        chosen,
        budget: RateBudget::new(shared.config.control_rate, now),
        permit,
    };
    let extensions = encoding.deflate.map(|agreed| agreed.response());
    let accept =
        handshake::switching_protocols(&handshake::accept_key(&ask.key), extensions.as_deref());
    conn.open_session(session, accept, welcome.as_bytes(), snapshot, feed, now, &shared.metrics);
    // Wake the ticker, which builds nothing while nobody listens. Rung on every upgrade
    // (a lock and a notify): watching for "the first" session would miss two loops
    // opening their first ones at once (0 → 2).
    shared.ticker_bell.ring();
}

/// The loop's newest tick if it is at most one tick interval old. After an idle spell
/// (the ticker builds nothing while no session is open anywhere, a cluster follower
/// builds nothing while it has none) the loop's last tick can be minutes old: a new
/// session then gets no snapshot, and its first `ticker` message is the tick its upgrade
/// wakes (the ticker ticks at once when rung; a cluster's leader ticks regardless), a
/// tick later at most, with `seq` consecutive from there.
fn fresh_snapshot(ctx: &LoopCtx, now: Instant) -> Option<&Tick> {
    let interval = ctx.shared.config.tick_interval;
    let at = ctx.snapshot_at?;
    ctx.snapshot.as_ref().filter(|_| now.saturating_duration_since(at) <= interval)
}

/// The periodic check of one connection: the transitions are the connection's own
/// ([`Conn::on_timer`]); this answers the overdue head with 408 and flushes.
pub(crate) fn on_timer<S: Socket>(conn: &mut Conn<S>, ctx: &LoopCtx, now: Instant) -> Verdict {
    let metrics = &ctx.shared.metrics;
    match conn.on_timer(now, &ctx.shared.config, metrics) {
        TimerAction::Idle => Verdict::Open,
        TimerAction::Flush => conn.flush(now, metrics),
        TimerAction::HeadTimeout => {
            crate::debug!("request head timeout", peer = conn.peer);
            send_error(conn, ctx, &HttpError::RequestTimeout, false, None, now);
            conn.flush(now, metrics)
        }
        TimerAction::Drop => Verdict::Close,
    }
}
