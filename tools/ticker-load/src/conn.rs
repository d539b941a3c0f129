//! One client connection: its socket, its state (connecting → [authenticating →
//! connecting again →] handshaking → open → closing), its queued output (token request,
//! upgrade request, pongs, close) and its unconsumed input.
//!
//! Rules, as in mio's examples: every readiness event may be spurious; writes are
//! drained until `WouldBlock`; `Interrupted` is retried; `WRITABLE` interest is held only
//! while output is queued (or the TCP connect is pending). Reads stop early after a
//! short read unless the event says the peer closed: on Linux a short read from a TCP
//! socket means its receive queue was empty, and data arriving later raises a new edge.
//! That saves one `read` syscall (the one returning `WouldBlock`) per tick per
//! connection, a third of the tool's syscalls.
//!
//! A churn reconnect with an API key first gets a token on a TCP connection of its own
//! (`POST /auth/token`, `Connection: close`), then connects again for the upgrade, as a
//! browser does (`fetch`, then `new WebSocket`): the same slab entry and mio token, a
//! new socket.
//!
//! With `--subscribe-random`, the connection sends its `subscribe` once its first
//! ticker message has listed the symbols ([`ConnSub`]); with `--subscribe`, its set went
//! in the upgrade request and there is nothing more to do.
//!
//! With `--deflate` the upgrade offers permessage-deflate; when the answer accepts it,
//! compressed messages are inflated and then handled as any other. With `--delta` the connection keeps the state the server's full and
//! change messages describe ([`DeltaState`]), and checks their chain.
//!
//! Under it all is a [`Transport`]: plain TCP, or TLS over it. Over TLS the connection
//! also holds `WRITABLE` interest while rustls has ciphertext to send, and reads go on
//! until `WouldBlock` (a short read says nothing about the socket there). The plain
//! path makes the same syscalls as it did before TLS.

mod transport;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::{Interest, Registry, Token};

use crate::auth::{self, AuthError};
use crate::deflate::{self, Accepted, Inflater};
use crate::delta::{DeltaState, DeltaStep};
use crate::endpoint;
use crate::fairness::ConnLatency;
use crate::frame::{self, OpCode, Status};
use crate::handshake;
use crate::meter::Meter;
pub(crate) use crate::outcome::{End, Origin};
use crate::receiver::{Event, Receiver, SeqTracker};
use crate::scan::{self, Fields, Kind};
use crate::stats::Reason;
use crate::subscribe::{ConnSub, SubStep};
use crate::tls::TlsTarget;

pub(crate) use transport::Transport;

/// Frames up to this size are buffered whole; larger ones are counted from their start
/// and skipped (see [`Receiver`]). Bounds the input a connection keeps between reads.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// The per-thread read buffer: room for a connection's kept input plus a large read.
pub(crate) const READ_BUF: usize = 4 * MAX_FRAME;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Non-blocking TCP connect in flight; done when the socket turns writable.
    Connecting,
    /// `POST /auth/token` queued or sent; waiting for the token (churn reconnects with
    /// an API key only). Over TLS, the TLS handshake comes first.
    Authenticating,
    /// Upgrade request queued or sent; waiting for the 101. Over TLS, the TLS handshake
    /// comes first (the request waits in the session until it is done).
    Handshaking,
    /// Receiving ticks.
    Open,
    /// The tool sent its close frame; waiting for the echo.
    Closing(Closer),
}

impl State {
    /// Connecting, authenticating or handshaking: neither open nor ended yet.
    pub(crate) fn is_opening(self) -> bool {
        matches!(self, State::Connecting | State::Authenticating | State::Handshaking)
    }
}

/// Why the tool closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closer {
    /// The run is over.
    EndOfRun,
    /// `--churn`: it is reopened at once; its close is neither a drop nor a failure.
    Churn,
}

/// What the connections ask of the server's messages at the upgrade.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wire {
    /// `--deflate`: offer permessage-deflate.
    pub(crate) deflate: bool,
    /// `--delta`: `delta=1` in the query (the path carries it), and the state rebuilt.
    pub(crate) delta: bool,
}

/// Where a churn reconnect goes once it has its token.
#[derive(Debug, Clone)]
pub(crate) struct Upgrade {
    pub(crate) remote: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    /// TLS for the upgrade's connection too, as for the token's.
    pub(crate) tls: Option<TlsTarget>,
    pub(crate) host_header: String,
    /// The WebSocket path before the token is added.
    pub(crate) ws_path: String,
    pub(crate) token_in_query: bool,
}

/// An upgrade waiting for its token, with the key its accept was computed from.
struct AfterToken {
    to: Upgrade,
    key: String,
}

pub(crate) struct Conn {
    transport: Transport,
    state: State,
    origin: Origin,
    /// When the current connect started (a churn reconnect: when the churn close was
    /// sent); once closing, when the close frame was queued. Timeouts count from it.
    started: Instant,
    accept: String,
    /// Set while the current socket is the token exchange.
    after_token: Option<Box<AfterToken>>,
    out: Vec<u8>,
    out_pos: usize,
    /// Input bytes not yet consumed: a partial response head or frame.
    pending: Vec<u8>,
    rx: Receiver,
    seq: SeqTracker,
    latency: ConnLatency,
    sub: ConnSub,
    mask_state: u64,
    wants_write: bool,
    wire: Wire,
    /// Set once the upgrade's answer accepted permessage-deflate.
    deflate: Option<Accepted>,
    /// The connection's own inflater, made on first use: with context takeover, or for
    /// a message that arrives in pieces. A message compressed alone that arrives whole
    /// (crypto-ticker's every message) uses the thread's ([`deflate::inflate_alone`]).
    inflater: Option<Box<Inflater>>,
    /// The compressed message being inflated: its payload bytes so far, and its output.
    compressed_len: usize,
    inflated: Vec<u8>,
    /// `--delta`: the state rebuilt from the messages.
    delta: Option<Box<DeltaState>>,
}

impl Conn {
    /// A connection whose TCP connect has started, with the upgrade request (written by
    /// `request` with the handshake key) queued. It takes every symbol unless
    /// [`Conn::subscribing`] says otherwise.
    pub(crate) fn new(
        transport: Transport,
        started: Instant,
        origin: Origin,
        request: impl FnOnce(&mut Vec<u8>, &str),
        random: [u8; 16],
        mask_seed: u64,
    ) -> Conn {
        let key = handshake::new_key(random);
        let mut out = Vec::with_capacity(256);
        request(&mut out, &key);
        Conn {
            transport,
            state: State::Connecting,
            origin,
            started,
            accept: handshake::accept_for(&key),
            after_token: None,
            out,
            out_pos: 0,
            pending: Vec::new(),
            rx: Receiver::default(),
            seq: SeqTracker::default(),
            latency: ConnLatency::default(),
            sub: ConnSub::AtUpgrade(None),
            mask_state: mask_seed | 1,
            wants_write: true,
            wire: Wire::default(),
            deflate: None,
            inflater: None,
            compressed_len: 0,
            inflated: Vec::new(),
            delta: None,
        }
    }

    /// What the connection asks of the server's messages (the request written by
    /// [`Conn::new`] must carry the same: the offer, the `delta=1`).
    pub(crate) fn asking(mut self, wire: Wire) -> Conn {
        self.wire = wire;
        self.delta = wire.delta.then(Box::default);
        self
    }

    /// A churn reconnect (or, with `--token-per-connection`, a ramp connection) whose
    /// connect to get a token has started (`transport` goes to the server's
    /// `POST /auth/token`); the upgrade to `to` follows with that token.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn token_first(
        transport: Transport,
        origin: Origin,
        started: Instant,
        host_header: &str,
        api_key: &str,
        to: Upgrade,
        random: [u8; 16],
        mask_seed: u64,
    ) -> Conn {
        let mut key = String::new();
        let mut conn = Conn::new(
            transport,
            started,
            origin,
            |out, k| {
                auth::write_request(out, host_header, api_key);
                key = k.to_string();
            },
            random,
            mask_seed,
        );
        conn.after_token = Some(Box::new(AfterToken { to, key }));
        conn
    }

    /// The subscription the connection carries out: its `--subscribe` set (already in
    /// its upgrade request) or its random pick to send.
    pub(crate) fn subscribing(mut self, sub: ConnSub) -> Conn {
        self.sub = sub;
        self
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(self.transport.tcp(), token, Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// The `--subscribe` set the connection was opened with, if any.
    pub(crate) fn set(&self) -> Option<u32> {
        self.sub.slot()
    }

    /// The connection's own steady-window latency record, for the fairness figures.
    pub(crate) fn latency_mut(&mut self) -> &mut ConnLatency {
        &mut self.latency
    }

    /// Handles a readiness event (possibly spurious). `Err` ends the connection.
    pub(crate) fn on_ready(
        &mut self,
        registry: &Registry,
        token: Token,
        buf: &mut [u8],
        meter: &mut Meter,
        peer_closed: bool,
    ) -> Result<(), End> {
        if self.state == State::Connecting {
            match self.transport.tcp().take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Err(End::Failed(Reason::from_io(&e))),
            }
            match self.transport.tcp().peer_addr() {
                Ok(_) if self.after_token.is_some() => self.state = State::Authenticating,
                Ok(_) => self.state = State::Handshaking,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(End::Failed(Reason::from_io(&e))),
            }
        }
        self.flush()?;
        if let Some(token_value) = self.read_all(buf, meter, peer_closed)? {
            self.upgrade_with(registry, token, &token_value)?;
        }
        self.flush()?;
        self.update_interest(registry, token)
    }

    /// Starts the close handshake (1000) at `now`, for the reason `closer`.
    pub(crate) fn close(
        &mut self,
        registry: &Registry,
        token: Token,
        closer: Closer,
        now: Instant,
    ) -> Result<(), End> {
        let mask = self.next_mask();
        frame::write_close(&mut self.out, 1000, mask);
        self.state = State::Closing(closer);
        self.started = now;
        self.flush()?;
        self.update_interest(registry, token)
    }

    /// The token is in: the token connection is closed and a new connect starts (with a
    /// new TLS session over TLS), with the upgrade request carrying the token queued.
    fn upgrade_with(&mut self, registry: &Registry, token: Token, value: &str) -> Result<(), End> {
        let Some(after) = self.after_token.take() else { return Ok(()) };
        let to = &after.to;
        let failed = |e: io::Error| End::Failed(Reason::from_io(&e));
        let mut transport =
            Transport::connect(to.remote, to.source, to.tls.as_ref()).map_err(failed)?;
        // Deregistering can only fail if the socket is already gone from the poll set.
        let _ = registry.deregister(self.transport.tcp());
        registry
            .register(transport.tcp(), token, Interest::READABLE | Interest::WRITABLE)
            .map_err(failed)?;
        self.transport = transport; // the token connection closes here
        let (path, authorization) =
            endpoint::request_target(&to.ws_path, Some(value), to.token_in_query);
        self.out.clear();
        self.out_pos = 0;
        handshake::write_request(
            &mut self.out,
            &to.host_header,
            &path,
            authorization.as_deref(),
            &after.key,
            self.wire.deflate,
        );
        self.pending.clear();
        self.state = State::Connecting;
        self.wants_write = true;
        Ok(())
    }

    /// Reads until `WouldBlock`, or until a short read when the peer has not closed.
    /// Returns the token when a token exchange has just completed (then the socket
    /// read is the token connection, and nothing more is read from it).
    fn read_all(
        &mut self,
        buf: &mut [u8],
        meter: &mut Meter,
        peer_closed: bool,
    ) -> Result<Option<String>, End> {
        loop {
            let kept = self.pending.len();
            buf[..kept].copy_from_slice(&self.pending);
            let space = buf.len() - kept;
            let n = match self.transport.read(&mut buf[kept..]) {
                Ok(0) => return Err(self.ended(Reason::Eof)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.ended(Reason::from_io(&e))),
            };
            meter.on_bytes(n);
            let data = &buf[..kept + n];
            if self.state == State::Authenticating {
                let got = self.token_answer(data, meter)?;
                if got.is_some() {
                    return Ok(got);
                }
                self.pending.clear();
                self.pending.extend_from_slice(data);
            } else {
                let consumed = self.process(data, meter, unix_micros())?;
                self.pending.clear();
                self.pending.extend_from_slice(&data[consumed..]);
            }
            if n < space && !peer_closed && self.transport.short_read_drains() {
                return Ok(None);
            }
        }
    }

    /// The token in the answer to `POST /auth/token`, once the answer is complete.
    fn token_answer(&mut self, data: &[u8], meter: &mut Meter) -> Result<Option<String>, End> {
        let failed = |r| Err(End::Failed(r));
        let (status, body) = match auth::parse_response(data) {
            Ok(Some(answer)) => answer,
            Ok(None) if data.len() <= auth::MAX_RESPONSE => return Ok(None),
            Ok(None) | Err(_) => return failed(Reason::TokenResponse),
        };
        match auth::token_from(status, body) {
            Ok(token) => {
                // The churn figures time the token apart; a ramp connection's handshake
                // time covers its token exchange and upgrade together.
                if self.origin == Origin::Churn {
                    meter.on_token(self.started.elapsed());
                }
                Ok(Some(token))
            }
            Err(AuthError::Status(code, _)) => failed(Reason::TokenStatus(code)),
            Err(_) => failed(Reason::TokenResponse),
        }
    }

    /// Consumes what it can of `data`; returns the number of bytes consumed.
    fn process(&mut self, data: &[u8], meter: &mut Meter, now_us: u64) -> Result<usize, End> {
        let mut at = 0;
        if self.state == State::Handshaking {
            match handshake::parse_response(data, &self.accept, self.wire.deflate) {
                Ok(Status::Partial) => return Ok(0),
                Ok(Status::Complete { consumed, value: accepted }) => {
                    at = consumed;
                    if self.wire.deflate {
                        meter.on_deflate_answer(accepted.as_ref());
                    }
                    if let Some(accepted) = accepted {
                        self.rx = Receiver::deflating();
                        self.deflate = Some(accepted);
                    }
                    self.state = State::Open;
                    meter.on_open(self.origin, self.started.elapsed(), Instant::now());
                    if let Some(set) = self.sub.slot() {
                        meter.on_set_open(set);
                    }
                }
                Err(e) => return Err(End::Failed(e.into())),
            }
        }
        loop {
            let event = match self.rx.next(&data[at..], MAX_FRAME) {
                Ok(Status::Complete { value, consumed }) => {
                    at += consumed;
                    value
                }
                Ok(Status::Partial) => return Ok(at),
                Err(e) => return Err(self.ended(Reason::Protocol(e))),
            };
            match event {
                Event::Message(fields, payload) => self.on_message(fields, payload, meter, now_us),
                Event::Compressed { piece, end } => {
                    self.on_compressed(piece, end, meter, now_us)?
                }
                Event::Ping(payload) => {
                    let mask = self.next_mask();
                    frame::write_client_frame(&mut self.out, OpCode::Pong, payload, mask);
                    meter.counters.pings_answered += 1;
                }
                Event::Pong | Event::Progress => {}
                Event::Close(code) => {
                    if self.state == State::Open {
                        // Echo the close (RFC 6455 5.5.1); the server then closes TCP.
                        let mask = self.next_mask();
                        frame::write_close(&mut self.out, code.unwrap_or(1000), mask);
                        let _ = self.flush();
                    }
                    return Err(self.ended(Reason::ServerClose(code.unwrap_or(0))));
                }
            }
        }
    }

    /// A piece of a compressed message; at its `end`, the inflated message is handled.
    fn on_compressed(
        &mut self,
        piece: &[u8],
        end: bool,
        meter: &mut Meter,
        now_us: u64,
    ) -> Result<(), End> {
        // The receiver passes compressed pieces only once deflate was accepted.
        let Some(accepted) = self.deflate else {
            return Err(self.ended(Reason::Protocol(frame::FrameError::ReservedBits)));
        };
        let whole = end && self.compressed_len == 0;
        self.compressed_len += piece.len();
        let done = if whole && accepted.server_no_context_takeover {
            deflate::inflate_alone(piece, &mut self.inflated)
        } else {
            let inflater = self.inflater.get_or_insert_with(|| Box::new(Inflater::new(&accepted)));
            let mut done = inflater.feed(piece, &mut self.inflated);
            if end && done.is_ok() {
                done = inflater.finish(&mut self.inflated);
            }
            done
        };
        if let Err(e) = done {
            return Err(self.ended(Reason::Inflate(e)));
        }
        if end {
            let mut payload = std::mem::take(&mut self.inflated);
            meter.on_compressed(self.compressed_len, payload.len());
            self.on_message(scan::scan(&payload, true), Some(&payload), meter, now_us);
            self.compressed_len = 0;
            // Keep the buffer for the next message unless one was unusually large.
            if payload.capacity() <= MAX_FRAME {
                payload.clear();
                self.inflated = payload;
            }
        }
        Ok(())
    }

    /// One data message: its subscription part first (an answer re-arms the seq
    /// tracker for the snapshot that follows it), then the counts.
    fn on_message(
        &mut self,
        fields: Fields,
        payload: Option<&[u8]>,
        meter: &mut Meter,
        now_us: u64,
    ) {
        if fields.kind == Kind::Subscriptions {
            self.seq.resubscribed();
        }
        // Nothing may follow the tool's close frame.
        if self.state == State::Open && self.sub.wants(fields.kind) {
            let step = self.sub.on_message(fields.kind, payload);
            if let SubStep::Send { message, .. } = &step {
                let mask = self.next_mask();
                frame::write_client_frame(&mut self.out, OpCode::Text, message, mask);
            }
            meter.on_subscribe(&step);
        }
        let delta = match (&mut self.delta, fields.kind, payload) {
            (Some(state), Kind::Ticker, Some(payload)) => Some(state.apply(payload)),
            (Some(_), Kind::Ticker, None) => Some(DeltaStep::Unreadable), // fragmented
            _ => None,
        };
        let slot = self.sub.slot();
        meter.on_message(&mut self.seq, &mut self.latency, fields, slot, now_us, delta);
    }

    /// The end of an open or closing connection, by `reason`.
    fn ended(&self, reason: Reason) -> End {
        match self.state {
            State::Connecting | State::Authenticating | State::Handshaking => End::Failed(reason),
            State::Open => End::Dropped(reason),
            State::Closing(Closer::EndOfRun) => End::Closed,
            State::Closing(Closer::Churn) => End::Churned,
        }
    }

    /// Writes queued output until done or `WouldBlock`; over TLS, then sends what the
    /// session has queued (the handshake's messages too).
    fn flush(&mut self) -> Result<(), End> {
        if self.state == State::Connecting {
            return Ok(());
        }
        while self.out_pos < self.out.len() {
            match self.transport.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(self.ended(Reason::Reset)),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.ended(Reason::from_io(&e))),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        self.transport.send_queued().map_err(|e| self.ended(Reason::from_io(&e)))
    }

    fn update_interest(&mut self, registry: &Registry, token: Token) -> Result<(), End> {
        let wants_write = self.state == State::Connecting
            || self.out_pos < self.out.len()
            || self.transport.wants_write();
        if wants_write != self.wants_write {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry
                .reregister(self.transport.tcp(), token, interest)
                .map_err(|e| self.ended(Reason::from_io(&e)))?;
            self.wants_write = wants_write;
        }
        Ok(())
    }

    /// Masks only need to be unpredictable to intermediaries, not secret: xorshift.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_ne_bytes()
    }
}

/// Wall-clock time in microseconds since the Unix epoch, to compare with `ts_us`.
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
