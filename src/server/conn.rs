//! One connection and its state machine. Every transition is a method here: the only
//! place a state is built and the only place the open-sessions gauge changes. The clock
//! is never read (`now` is passed in) and the socket is a type parameter, so the whole
//! lifecycle runs in unit tests against an in-memory socket.
//!
//! ```text
//!  Http{Reading} ⇄ Http{Waiting}            a worker prepares the answer
//!  Http ──open_session──► WebSocket         101, welcome, snapshot        (sessions +1)
//!  WebSocket ──close_session──► Closing     server's close frame          (sessions −1)
//!  WebSocket ──echo_close─────► Closing     the client's close, echoed    (sessions −1)
//!  Http ──close_after_flush───► Closing     last answer, then FIN
//!  Closing ──peer FIN or linger deadline──► dropped (release)
//!  any ──socket error / EOF──► dropped (release: sessions −1 if it was a session)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub(crate) use super::outbox::MAX_QUEUED;
pub use super::outbox::Outbox;
use super::transport::{Socket, Transport};
use crate::auth::ids::{Actor, ApiKeyId, TokenId};
use crate::config::Config;
use crate::control::RateBudget;
use crate::error::CloseCode;
use crate::metrics::Metrics;
use crate::symbols::SymbolSet;
use crate::symbols::sets::SetLease;
use crate::ticker::variants::Encoding;
use crate::ws::codec::Decoder;
use crate::ws::frame::{self, OpCode};

/// How long a closing HTTP connection may take to flush and see the peer's FIN
/// (WebSocket sessions use `--close-linger`).
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Whether the connection stays open after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Open,
    Close,
}

/// What the periodic check decided beyond the transitions it made itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerAction {
    /// Nothing to write.
    Idle,
    /// Something was queued (a heartbeat ping, a close frame): flush it.
    Flush,
    /// A request head is overdue: answer 408 and close.
    HeadTimeout,
    /// Drop the connection now.
    Drop,
}

/// Whether a connection has input the loop has not handled yet, and why (the per-turn
/// budget: see `shard.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// Everything read was handled and the last read would block: the next readable
    /// event brings more.
    Drained,
    /// The turn's budget ran out with input left (in `inbuf` or the kernel): the loop
    /// comes back to this connection on its next turn, after everyone else.
    OverBudget,
    /// Reading waits until this connection's own answers are out (or a worker's answer
    /// is in): a flush or a completion resumes it.
    Held,
}

/// Where an HTTP connection is in its request/response cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpPhase {
    /// Reading the next request (answers to earlier ones may still be in the outbox).
    Reading,
    /// A worker is preparing the answer; pipelined requests wait in `inbuf`.
    Waiting {
        keep_alive: bool,
        origin: Option<String>,
        /// The answer, or an upgrade's token check.
        awaiting: Awaiting,
    },
}

/// What a worker is preparing for a connection in [`HttpPhase::Waiting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Awaiting {
    /// The whole answer (a token exchange, a static file, a revocation).
    Answer,
    /// The token check of an upgrade (the token store's lookups may block). The
    /// handshake was checked while the request was at hand and is answered only after
    /// the token: 401 comes before 426 or 400. Boxed: inline it would make every
    /// connection's state (the fan-out walks them all) larger.
    Token(Box<HandshakeCheck>),
}

/// What the checks of an upgrade's handshake found (the token is checked apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeCheck {
    /// The handshake is good: the session opens once the token is.
    Passed(UpgradeAsk),
    /// The handshake is refused with this answer (if the token is good; else 401).
    Refused(crate::error::HttpError),
}

/// An upgrade request that passed the handshake checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpgradeAsk {
    /// `Sec-WebSocket-Key`.
    pub(crate) key: String,
    /// `?symbols=A,B`: the names asked for (checked once the token is).
    pub(crate) symbols: Option<Vec<String>>,
    /// The client's address, as `--max-sessions-per-ip` counts it.
    pub(crate) client: std::net::IpAddr,
    /// `?delta=1`, and permessage-deflate if offered and `--compression deflate`.
    pub(crate) encoding: Encoding,
}

/// An open WebSocket session.
pub(crate) struct Session {
    pub(crate) decoder: Decoder,
    pub(crate) actor: Arc<Actor>,
    pub(crate) api_key_id: ApiKeyId,
    pub(crate) token_id: TokenId,
    /// A heartbeat ping went out and no frame came back since.
    pub(crate) ping_outstanding: bool,
    /// The symbols the session chose (`?symbols=`, `subscribe`, `unsubscribe`);
    /// `None` until it chooses: every symbol (the seed's behaviour).
    pub(crate) chosen: Option<SymbolSet>,
    /// Client frames allowed from here on (`--control-rate`).
    pub(crate) budget: RateBudget,
    /// This session's place under `--max-sessions-per-key`/`-ip`, given back when the
    /// session is dropped (closing, failing or ending with its connection).
    #[expect(dead_code, reason = "held only for its Drop")]
    pub(crate) permit: Option<crate::server::SessionPermit>,
}

/// What the fan-out reads of a session each tick. Kept in the connection's state, not
/// behind the session's box, so the hot path reads no memory per subscriber beyond the
/// connection's own.
pub(crate) struct Feed {
    /// Which of a tick's frames this session is sent: `None` for every symbol, else the
    /// interned set it chose (released when the session ends).
    pub(crate) set: Option<SetLease>,
    /// The loop's count of the newest tick offered to this session (its snapshot's at
    /// the upgrade), `None` while the loop had none to offer: a fan-out passes over a
    /// session that already has its tick, and counts the ticks one skipped as conflated.
    pub(crate) offered: Option<u64>,
    /// Changes only and/or compressed, as agreed at the upgrade.
    pub(crate) encoding: Encoding,
    /// A changes-only session's last ticker message's `seq` (its chain: the next
    /// changes message must name it as `prev_seq`, or the session is sent the whole
    /// state). `None` before its first.
    pub(crate) last_seq: Option<u64>,
}

pub(crate) enum State {
    /// `idle_since`: when the last answer was queued (or the connection accepted);
    /// `head_since`: when the first byte of the request being read arrived.
    Http { phase: HttpPhase, idle_since: Instant, head_since: Option<Instant>, served: u32 },
    /// An open session.
    WebSocket {
        session: Box<Session>,
        /// What the fan-out reads of the session, inline (see [`Feed`]).
        feed: Feed,
    },
    /// Flushing the last bytes (a close frame, a final response); after them the write
    /// side is shut and the peer's FIN awaited, so no unread byte turns our FIN into a
    /// RST that could destroy the answer. The deadline bounds it all.
    Closing { deadline: Instant, write_shut: bool },
}

pub(crate) struct Conn<S = Transport> {
    pub(crate) socket: S,
    pub(crate) serial: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) state: State,
    /// Bytes read but not yet consumed by a parser (empty most of the time).
    pub(crate) inbuf: Vec<u8>,
    pub(crate) input: Input,
    pub(crate) out: Outbox,
    pub(crate) last_read: Instant,
    /// Last write progress, or when the outbox last became non-empty: a subscriber whose
    /// outbox stays non-empty past this by the slow-consumer timeout is closed.
    pub(crate) last_progress: Instant,
}

impl<S: Socket> Conn<S> {
    pub(crate) fn new(socket: S, serial: u64, peer: SocketAddr, now: Instant) -> Conn<S> {
        Conn {
            socket,
            serial,
            peer,
            state: State::Http {
                phase: HttpPhase::Reading,
                idle_since: now,
                head_since: None,
                served: 0,
            },
            inbuf: Vec::new(),
            input: Input::Drained,
            out: Outbox::default(),
            last_read: now,
            last_progress: now,
        }
    }

    pub(crate) fn is_subscriber(&self) -> bool {
        matches!(self.state, State::WebSocket { .. })
    }

    /// Releases `inbuf`'s memory once it is empty and large, keeping idle sessions lean.
    pub(crate) fn trim_inbuf(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 4096 {
            self.inbuf = Vec::new();
        }
    }

    /// Queues owned bytes, starting the slow-consumer clock if the outbox was empty.
    /// The event loop flushes every connection it touched before it polls again, so
    /// anything queued here goes out (or waits for a writable event) without a timer.
    pub(crate) fn queue(&mut self, bytes: Vec<u8>, now: Instant) {
        if self.out.is_empty() {
            self.last_progress = now;
        }
        self.out.push(bytes);
    }

    /// HTTP → WebSocket: queues the 101 answer, `welcome` and the newest tick (the one
    /// `feed.offered` counts), and counts the session.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_session(
        &mut self,
        session: Session,
        switching_protocols: Vec<u8>,
        welcome: &[u8],
        snapshot: Option<Arc<[u8]>>,
        feed: Feed,
        now: Instant,
        metrics: &Metrics,
    ) {
        debug_assert!(matches!(self.state, State::Http { .. }));
        self.socket.start_session();
        self.queue(switching_protocols, now);
        self.out.push(frame::encode_frame(OpCode::Text, welcome));
        if let Some(snapshot) = snapshot {
            self.out.offer_tick(snapshot);
        }
        self.last_read = now;
        metrics.ws_sessions_by_mode.inc(feed.encoding.mode());
        self.state = State::WebSocket { session: Box::new(session), feed };
        metrics.ws_sessions_open.fetch_add(1, Relaxed);
        metrics.ws_sessions_total.fetch_add(1, Relaxed);
    }

    /// Server-initiated close of a session: drops what is pending (but finishes the
    /// frame in flight), queues the close frame, then lingers. `false` if this is not a
    /// session (nothing changes).
    pub(crate) fn close_session(
        &mut self,
        code: CloseCode,
        reason: &str,
        now: Instant,
        linger: Duration,
        metrics: &Metrics,
    ) -> bool {
        if !self.is_subscriber() {
            return false;
        }
        self.out.clear_pending();
        self.queue(frame::encode_close(code, reason), now);
        self.enter_closing(now + linger, metrics);
        true
    }

    /// The client closed the session: echo its code and linger (the handshake is done).
    pub(crate) fn echo_close(
        &mut self,
        code: Option<CloseCode>,
        now: Instant,
        linger: Duration,
        metrics: &Metrics,
    ) {
        let reply = match code {
            Some(code) => frame::encode_close(code, ""),
            None => frame::encode_frame(OpCode::Close, &[]),
        };
        self.out.clear_pending();
        self.queue(reply, now);
        self.enter_closing(now + linger, metrics);
    }

    /// An HTTP connection ends after its last answer: flush, then FIN, then linger.
    pub(crate) fn close_after_flush(&mut self, now: Instant, metrics: &Metrics) {
        self.enter_closing(now + CLOSE_LINGER, metrics);
    }

    /// The one place a closing state is built.
    fn enter_closing(&mut self, deadline: Instant, metrics: &Metrics) {
        self.leave_session(metrics);
        // Replacing the session's state releases its set: no more ticks, so the set's
        // frame need not be built for this session.
        self.state = State::Closing { deadline, write_shut: false };
    }

    /// The connection leaves the event loop (closed, failed or dropped at a deadline);
    /// taking `self` makes a second release impossible.
    pub(crate) fn release(self, metrics: &Metrics) {
        self.leave_session(metrics);
    }

    /// The session gauges' side of a session ending (nothing if this is no session).
    fn leave_session(&self, metrics: &Metrics) {
        if let State::WebSocket { feed, .. } = &self.state {
            metrics.ws_sessions_open.fetch_sub(1, Relaxed);
            metrics.ws_sessions_by_mode.dec(feed.encoding.mode());
        }
    }

    /// Writes what the outbox holds; half-closes a closing connection once it is flushed.
    pub(crate) fn flush(&mut self, now: Instant, metrics: &Metrics) -> Verdict {
        if !self.out.is_empty() {
            match self.out.flush(&mut self.socket) {
                Ok(done) => {
                    if done.bytes > 0 {
                        self.last_progress = now;
                        metrics.bytes_sent.fetch_add(done.bytes as u64, Relaxed);
                        if done.ticks > 0 {
                            metrics.frames_sent.fetch_add(done.ticks as u64, Relaxed);
                        }
                    }
                }
                Err(_) => return Verdict::Close,
            }
        }
        // TLS records left over from the last write go out at this (writable) event.
        let sent_all = match self.socket.send_pending() {
            Ok(all) => all,
            Err(_) => return Verdict::Close,
        };
        if sent_all
            && self.out.is_empty()
            && let State::Closing { write_shut, .. } = &mut self.state
            && !*write_shut
        {
            // FIN after the last byte; the peer's FIN (or the deadline) ends it.
            let _ = self.socket.shutdown_write();
            *write_shut = true;
        }
        Verdict::Open
    }

    /// Periodic checks with `now`: head and idle timeouts, heartbeat, slow consumers,
    /// closing deadlines. Makes the session transitions itself; the caller flushes,
    /// answers 408 or drops as the returned action says.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        cfg: &Config,
        metrics: &Metrics,
    ) -> TimerAction {
        // An HTTP client that asks without reading: the same rule as for subscribers.
        if let State::Http { .. } = self.state
            && !self.out.is_empty()
            && now >= self.last_progress + cfg.slow_consumer_timeout
        {
            crate::debug!("slow HTTP client dropped", peer = self.peer);
            metrics.slow_consumer_closes.fetch_add(1, Relaxed);
            return TimerAction::Drop;
        }
        match &mut self.state {
            State::Http { phase: HttpPhase::Reading, head_since, idle_since, served } => {
                let head_expired = head_since.is_some_and(|t| now >= t + cfg.head_timeout);
                let idle_limit =
                    if *served == 0 { cfg.head_timeout } else { cfg.keepalive_timeout };
                let idle_expired =
                    head_since.is_none() && self.out.is_empty() && now >= *idle_since + idle_limit;
                if head_expired {
                    TimerAction::HeadTimeout
                } else if idle_expired {
                    TimerAction::Drop
                } else {
                    TimerAction::Idle
                }
            }
            State::Http { phase: HttpPhase::Waiting { .. }, .. } => TimerAction::Idle,
            State::WebSocket { session, .. } => {
                // A subscriber that stopped reading, or a client gone silent: one close
                // path, each with its own code, reason and counter.
                let close = if !self.out.is_empty()
                    && now >= self.last_progress + cfg.slow_consumer_timeout
                {
                    crate::info!(
                        "slow consumer closed",
                        user_id = session.actor.id,
                        peer = self.peer
                    );
                    Some((
                        CloseCode::PolicyViolation,
                        "slow consumer",
                        &metrics.slow_consumer_closes,
                    ))
                } else if now >= self.last_read + cfg.dead_after {
                    crate::debug!("heartbeat timeout", peer = self.peer);
                    Some((CloseCode::GoingAway, "heartbeat timeout", &metrics.heartbeat_closes))
                } else if self.socket.key_nearly_used_up() {
                    crate::info!("TLS key limit: session closed", peer = self.peer);
                    Some((CloseCode::GoingAway, "TLS key limit", &metrics.tls_key_limit_closes))
                } else {
                    None
                };
                if let Some((code, reason, counter)) = close {
                    counter.fetch_add(1, Relaxed);
                    self.close_session(code, reason, now, cfg.close_linger, metrics);
                    return TimerAction::Flush;
                }
                if now >= self.last_read + cfg.ping_after && !session.ping_outstanding {
                    session.ping_outstanding = true;
                    self.queue(frame::encode_frame(OpCode::Ping, b"hb"), now);
                    return TimerAction::Flush;
                }
                TimerAction::Idle
            }
            State::Closing { deadline, .. } => {
                if now >= *deadline {
                    TimerAction::Drop
                } else {
                    TimerAction::Idle
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
