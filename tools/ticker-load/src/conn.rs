//! One client connection: its socket, its state (connecting → handshaking → open →
//! closing), its queued output (handshake request, pongs, close) and its unconsumed input.
//!
//! Rules, as in mio's examples: every readiness event may be spurious; writes are
//! drained until `WouldBlock`; `Interrupted` is retried; `WRITABLE` interest is held only
//! while output is queued (or the TCP connect is pending). Reads stop early after a
//! short read unless the event says the peer closed: on Linux a short read from a TCP
//! socket means its receive queue was empty, and data arriving later raises a new edge.
//! That saves one `read` syscall (the one returning `WouldBlock`) per tick per
//! connection, a third of the tool's syscalls.

use std::io::{self, Read, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::frame::{self, OpCode, Status};
use crate::handshake;
use crate::meter::Meter;
use crate::receiver::{Event, Receiver, SeqTracker};
use crate::stats::Reason;

/// Frames up to this size are buffered whole; larger ones are counted from their start
/// and skipped (see [`Receiver`]). Bounds the input a connection keeps between reads.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// The per-thread read buffer: room for a connection's kept input plus a large read.
pub(crate) const READ_BUF: usize = 4 * MAX_FRAME;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Non-blocking TCP connect in flight; done when the socket turns writable.
    Connecting,
    /// Upgrade request queued or sent; waiting for the 101.
    Handshaking,
    /// Receiving ticks.
    Open,
    /// The tool sent its close frame at the end of the run; waiting for the echo.
    Closing,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Never opened.
    Failed(Reason),
    /// Opened, then ended before the tool closed it.
    Dropped(Reason),
    /// The close handshake the tool started completed (or the server then closed TCP).
    Closed,
}

pub(crate) struct Conn {
    stream: TcpStream,
    state: State,
    started: Instant,
    accept: String,
    out: Vec<u8>,
    out_pos: usize,
    /// Input bytes not yet consumed: a partial response head or frame.
    pending: Vec<u8>,
    rx: Receiver,
    seq: SeqTracker,
    mask_state: u64,
    wants_write: bool,
}

impl Conn {
    /// A connection whose TCP connect has started, with the upgrade request queued.
    pub(crate) fn new(
        stream: TcpStream,
        started: Instant,
        request: impl FnOnce(&mut Vec<u8>, &str),
        random: [u8; 16],
        mask_seed: u64,
    ) -> Conn {
        let key = handshake::new_key(random);
        let mut out = Vec::with_capacity(256);
        request(&mut out, &key);
        Conn {
            stream,
            state: State::Connecting,
            started,
            accept: handshake::accept_for(&key),
            out,
            out_pos: 0,
            pending: Vec::new(),
            rx: Receiver::default(),
            seq: SeqTracker::default(),
            mask_state: mask_seed | 1,
            wants_write: true,
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
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
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Err(End::Failed(Reason::from_io(&e))),
            }
            match self.stream.peer_addr() {
                Ok(_) => self.state = State::Handshaking,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(End::Failed(Reason::from_io(&e))),
            }
        }
        self.flush()?;
        self.read_all(buf, meter, peer_closed)?;
        self.flush()?;
        self.update_interest(registry, token)
    }

    /// Starts the close handshake at the end of the run.
    pub(crate) fn close(&mut self, registry: &Registry, token: Token) -> Result<(), End> {
        let mask = self.next_mask();
        frame::write_close(&mut self.out, 1000, mask);
        self.state = State::Closing;
        self.flush()?;
        self.update_interest(registry, token)
    }

    /// Reads until `WouldBlock`, or until a short read when the peer has not closed.
    fn read_all(
        &mut self,
        buf: &mut [u8],
        meter: &mut Meter,
        peer_closed: bool,
    ) -> Result<(), End> {
        loop {
            let kept = self.pending.len();
            buf[..kept].copy_from_slice(&self.pending);
            let space = buf.len() - kept;
            let n = match self.stream.read(&mut buf[kept..]) {
                Ok(0) => return Err(self.ended(Reason::Eof)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.ended(Reason::from_io(&e))),
            };
            meter.counters.bytes += n as u64;
            let data = &buf[..kept + n];
            let consumed = self.process(data, meter, unix_micros())?;
            self.pending.clear();
            self.pending.extend_from_slice(&data[consumed..]);
            if n < space && !peer_closed {
                return Ok(());
            }
        }
    }

    /// Consumes what it can of `data`; returns the number of bytes consumed.
    fn process(&mut self, data: &[u8], meter: &mut Meter, now_us: u64) -> Result<usize, End> {
        let mut at = 0;
        if self.state == State::Handshaking {
            match handshake::parse_response(data, &self.accept) {
                Ok(Status::Partial) => return Ok(0),
                Ok(Status::Complete { consumed, .. }) => {
                    at = consumed;
                    self.state = State::Open;
                    meter.on_open(self.started.elapsed());
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
                Event::Message(fields) => meter.on_message(&mut self.seq, fields, now_us),
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

    /// The end of an open or closing connection, by `reason`.
    fn ended(&self, reason: Reason) -> End {
        match self.state {
            State::Connecting | State::Handshaking => End::Failed(reason),
            State::Open => End::Dropped(reason),
            State::Closing => End::Closed,
        }
    }

    /// Writes queued output until done or `WouldBlock`.
    fn flush(&mut self) -> Result<(), End> {
        if self.state == State::Connecting {
            return Ok(());
        }
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(self.ended(Reason::Reset)),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.ended(Reason::from_io(&e))),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    fn update_interest(&mut self, registry: &Registry, token: Token) -> Result<(), End> {
        let wants_write = self.state == State::Connecting || self.out_pos < self.out.len();
        if wants_write != self.wants_write {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry
                .reregister(&mut self.stream, token, interest)
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
