//! [`TlsStream`]: a connection's TLS over TCP, rustls for the handshake and HTTP, then
//! this server's record layer (`crate::tls::records`) once it is a WebSocket session.
//!
//! TLS write rules, which keep conflation and bounded memory as they are in plain TCP:
//! - `write` first pushes out ciphertext still pending from an earlier write; if some
//!   stays pending, it returns `WouldBlock` and encrypts nothing, so the outbox keeps
//!   only the newest tick exactly as with a full TCP socket.
//! - Otherwise it encrypts `buf` (up to rustls' buffer limit) and sends what the socket
//!   takes, returning the plaintext length even when some ciphertext stays pending.
//!   Pending ciphertext is thus at most one write's worth, and it is only left behind
//!   after a TCP write hit `WouldBlock`, so an edge-triggered writable event will come
//!   and [`Socket::send_pending`] sends the rest.
//!
//! Read rules, which keep handshake crypto off the event loop and lose no byte at the
//! hand-over:
//! - Ciphertext is read from TCP here (into the loop's read buffer) and rustls is given
//!   whole records only ([`records::feedable`]); the end of a record still arriving
//!   waits in `unfed`. So rustls never holds half a record, and at the hand-over the
//!   plaintext rustls decrypted but the connection has not read, then `unfed`, become
//!   the record layer's first input: a WebSocket frame sent in the same TCP write as
//!   the upgrade request is read like any other.
//! - While handshaking, fed records are not processed here: the read reports a
//!   handshake step ([`HandshakeStep::Due`]) and returns `WouldBlock`; the shard sends
//!   the `ServerConnection` (boxed) to the handshake pool (`server/handshakes.rs`), where
//!   `process_new_packets` runs the key exchange and the signature, and gives it back
//!   with [`TlsStream::step_done`]. Until then the connection reads nothing (its input
//!   waits in the kernel). A client that closed right after its flight is seen here
//!   (`peek`) and ends without any crypto spent on it.
//! - After the handshake, records (HTTP requests) are opened here: symmetric crypto on
//!   a few hundred bytes, no more than the record layer does for a session.
//! - A TLS error (plain HTTP, garbage, an old protocol version) is an `InvalidData`
//!   read error once its alert is sent: the caller closes that connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;
use rustls::{ServerConnection, SupportedCipherSuite};

use crate::server::Shared;
use crate::tls::records::{self, Records};

mod session;
use session::Session;

/// Cap on what rustls buffers per connection, plaintext waiting for the handshake plus
/// ciphertext waiting for the socket: a TLS record's worth (16 KiB) and its overhead.
/// Larger writes (an HTTP answer) are taken in pieces by the outbox's partial writes.
const TLS_BUFFER_LIMIT: usize = 18 * 1024;

/// Ciphertext taken from TCP at once while rustls runs the records: one record of the
/// largest size rustls reads. More is read only once `unfed` holds no whole record, so
/// `unfed` stays below two such records.
const READ_MAX: usize = records::MAX_RECORD;

/// How a `Transport` holds a TLS stream: boxed, so that a plain connection's
/// transport is not as large as a TLS one.
pub(crate) type TlsBox = Box<TlsStream>;

/// The TLS stream of a connection just accepted on a port that speaks TLS; the socket
/// back if its session could not be created (logged).
pub(super) fn accept(
    socket: TcpStream,
    shared: &Shared,
    peer: SocketAddr,
) -> Result<TlsBox, TcpStream> {
    // Called only when the port speaks TLS (`Shared::speaks_tls`).
    let Some(tls) = &shared.tls else { return Err(socket) };
    match tls.accept() {
        Ok(session) => Ok(Box::new(TlsStream::new(socket, session, peer))),
        Err(e) => {
            crate::warn!("TLS session not created", error = e);
            Err(socket)
        }
    }
}

/// A server-side TLS session over a TCP socket.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    mode: Mode,
    /// Ciphertext read from TCP and not given to rustls yet: the beginning of a record
    /// still arriving, or whole records beyond what rustls takes in one go. Empty (and
    /// unallocated) most of the time; the record layer takes it over with the session.
    unfed: Vec<u8>,
    peer: SocketAddr,
}

/// Who runs the TLS records: rustls until the connection becomes a WebSocket session
/// and rustls has sent everything it holds, this server's record layer after. rustls'
/// state is inline like the session's (one allocation per connection, the stream's, in
/// either phase); a handshake step boxes it for its trip to the pool and back.
enum Mode {
    Rustls {
        conn: ServerConnection,
        next: Next,
    },
    /// The handshake pool runs a step: nothing is read or sent until it is back.
    Away,
    Records(Session),
    /// The hand-over failed (rustls refused to give up the keys): only an error is left.
    Failed,
}

/// What a connection in rustls' hands waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Input: read, feed rustls; after the handshake, open the records here.
    Read,
    /// Handshake records were fed: a step for the pool. Reads wait.
    Step,
    /// The step waits in the shard's queue for a free slot. Reads wait.
    Parked,
    /// The session started: hand over once rustls' pending ciphertext is out.
    HandOver,
}

/// Where a connection's handshake stands, for the shard that sends steps to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeStep {
    /// Nothing for the pool.
    Idle,
    /// New handshake input waits for the pool; `under_way`: an earlier step ran (the
    /// ClientHello was answered), so this one finishes a handshake.
    Due { under_way: bool },
    /// Waiting in the shard's queue.
    Parked,
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, mut tls: ServerConnection, peer: SocketAddr) -> TlsStream {
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let mode = Mode::Rustls { conn: tls, next: Next::Read };
        TlsStream { tcp, mode, unfed: Vec::new(), peer }
    }

    /// Writes pending ciphertext until none is left (`Ok(true)`) or the socket is full
    /// (`Ok(false)`, and a writable event is due). With nothing left and a session
    /// started, the record layer takes over.
    pub(crate) fn send_ciphertext(&mut self) -> io::Result<bool> {
        match &mut self.mode {
            Mode::Rustls { conn, next } => {
                while conn.wants_write() {
                    match conn.write_tls(&mut SendOne(&mut self.tcp)) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if *next == Next::HandOver {
                    self.hand_over()?;
                }
                Ok(true)
            }
            // What the step makes goes out when it is back (`step_done`).
            Mode::Away => Ok(true),
            Mode::Records(session) => session.send_pending(&mut self.tcp),
            Mode::Failed => Err(handed_over_failed()),
        }
    }

    /// rustls → this server's record layer: the traffic keys and sequence numbers are
    /// taken out of rustls, which is dropped (its buffers with it). Only called with
    /// nothing left to send; a connection whose keys cannot be taken ends. What rustls
    /// decrypted and was not read yet, then the ciphertext it was never given
    /// (`unfed`), are the session's first input, in that order.
    fn hand_over(&mut self) -> io::Result<()> {
        let Mode::Rustls { mut conn, .. } = std::mem::replace(&mut self.mode, Mode::Failed) else {
            return Ok(());
        };
        let mut rx = Vec::new();
        // Ends with `WouldBlock` once the plaintext is drained (what was read stays in
        // `rx`), or `Ok` at the peer's close_notify.
        let peer_closed = conn.reader().read_to_end(&mut rx).is_ok();
        let plain = 0..rx.len();
        rx.append(&mut self.unfed);
        self.unfed = Vec::new();
        let limit = match conn.negotiated_cipher_suite() {
            Some(SupportedCipherSuite::Tls13(s)) => s.common.confidentiality_limit,
            Some(SupportedCipherSuite::Tls12(s)) => s.common.confidentiality_limit,
            None => 0,
        };
        let version = conn.protocol_version();
        // Deprecated in favour of the unbuffered connection's kernel hand-over, which
        // adds key updates; the buffered connection serves HTTP here, so this is the one.
        #[allow(deprecated)]
        let taken =
            conn.dangerous_extract_secrets().map_err(|e| e.to_string()).and_then(|secrets| {
                let version = version.ok_or_else(|| "no protocol version".to_string())?;
                Records::new(version, limit, secrets).map_err(|e| e.to_string())
            });
        match taken {
            Ok(records) => {
                self.mode = Mode::Records(Session::new(records, rx, plain, peer_closed));
                Ok(())
            }
            Err(e) => {
                crate::warn!("TLS session hand-over failed; closing", peer = self.peer, error = e);
                Err(handed_over_failed())
            }
        }
    }

    /// The connection became a WebSocket session: its records go to this server's
    /// record layer as soon as rustls has nothing left to send (at once, normally).
    pub(crate) fn start_session(&mut self) {
        if let Mode::Rustls { next, .. } = &mut self.mode {
            *next = Next::HandOver;
        }
        // A full socket defers it to the writable event; an error closes at the next
        // read or write.
        let _ = self.send_ciphertext();
    }

    /// A TLS protocol error: send the alert rustls queued (best effort), log, and turn it
    /// into the read error that closes the connection.
    fn fail(&mut self, e: impl std::fmt::Display) -> io::Error {
        let _ = self.send_ciphertext();
        crate::debug!("TLS error; closing", peer = self.peer, error = e);
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }

    /// Where the handshake stands (see [`HandshakeStep`]).
    pub(crate) fn handshake_step(&self) -> HandshakeStep {
        match &self.mode {
            Mode::Rustls { conn, next: Next::Step } => {
                // rustls picks the suite when it answers the ClientHello.
                HandshakeStep::Due { under_way: conn.negotiated_cipher_suite().is_some() }
            }
            Mode::Rustls { next: Next::Parked, .. } => HandshakeStep::Parked,
            _ => HandshakeStep::Idle,
        }
    }

    /// The due step waits in the shard's queue.
    pub(crate) fn park(&mut self) {
        if let Mode::Rustls { next: next @ Next::Step, .. } = &mut self.mode {
            *next = Next::Parked;
        }
    }

    /// The due (or parked) step's rustls state, for the pool; the connection is then
    /// away until [`TlsStream::step_done`].
    pub(crate) fn take_step(&mut self) -> Option<Box<ServerConnection>> {
        if !matches!(self.mode, Mode::Rustls { next: Next::Step | Next::Parked, .. }) {
            return None;
        }
        match std::mem::replace(&mut self.mode, Mode::Away) {
            Mode::Rustls { conn, .. } => Some(Box::new(conn)),
            _ => None,
        }
    }

    /// The pool ran the step (`result` is `process_new_packets`'): the handshake's
    /// answer goes out now (or at the writable event), and reading resumes; a TLS error
    /// sends its alert and is the error that closes the connection.
    pub(crate) fn step_done(
        &mut self,
        conn: Box<ServerConnection>,
        result: Result<(), rustls::Error>,
    ) -> io::Result<()> {
        self.mode = Mode::Rustls { conn: *conn, next: Next::Read };
        if let Err(e) = result {
            return Err(self.fail(e));
        }
        self.send_ciphertext().map(drop)
    }

    /// Whole records were fed to rustls: a handshake's wait for the pool (`Ok(true)`),
    /// anything else is opened here and what rustls answers goes out.
    fn fed(&mut self) -> io::Result<bool> {
        let Mode::Rustls { conn, next } = &mut self.mode else { return Ok(false) };
        if conn.is_handshaking() {
            *next = Next::Step;
            return Ok(true);
        }
        if let Err(e) = conn.process_new_packets() {
            return Err(self.fail(e));
        }
        // Alerts, a TLS 1.2 refusal to renegotiate: out now, or at the writable event.
        self.send_ciphertext()?;
        Ok(false)
    }
}

/// Gives rustls the whole records at the front of `bytes` ([`records::feedable`]);
/// returns how many bytes it took. rustls takes up to 4 KiB a call, and its buffer
/// holds a record of the largest size once it has processed what it held before.
fn feed(conn: &mut ServerConnection, bytes: &[u8]) -> io::Result<usize> {
    let n = records::feedable(bytes, records::MAX_RECORD);
    let mut rest = &bytes[..n];
    // `Ok(0)`: rustls saw close_notify and ignores the rest, as it would have.
    while !rest.is_empty() && conn.read_tls(&mut rest)? > 0 {}
    Ok(n)
}

fn handed_over_failed() -> io::Error {
    io::Error::other("TLS session hand-over failed")
}

/// rustls hands its ciphertext over as a list of buffers (`write_vectored`). A record
/// is one buffer: sent with `send`, as plain TCP sends, because `writev` takes a longer
/// way through the kernel (the file's position lock, the generic vectored write).
/// Several buffers (a handshake flight) still go out in one `writev`.
struct SendOne<'a>(&'a mut TcpStream);

impl Write for SendOne<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        match (full.next(), full.next()) {
            (Some(one), None) => self.0.write(one),
            (None, _) => Ok(0),
            _ => self.0.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TlsStream {
    /// Before the hand-over, one call reads TCP at most once: records that yield no
    /// plaintext (empty ones, a record still arriving) end the call with `Interrupted`,
    /// which the event loop charges to the connection's turn budget and calls again
    /// within it. A peer streaming such records cannot keep one call going.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut read_tcp = false;
        loop {
            let (conn, next) = match &mut self.mode {
                Mode::Rustls { conn, next } => (conn, *next),
                Mode::Records(session) => {
                    return session.read(&mut self.tcp, buf).map_err(|e| {
                        if e.kind() == io::ErrorKind::InvalidData {
                            crate::debug!("TLS error; closing", peer = self.peer, error = e);
                        }
                        e
                    });
                }
                // The pool has it: the input waits in the kernel.
                Mode::Away => return Err(io::ErrorKind::WouldBlock.into()),
                Mode::Failed => return Err(handed_over_failed()),
            };
            // Plaintext already decrypted goes first; `Ok(0)` here is the peer's
            // close_notify, an orderly end.
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if matches!(next, Next::Step | Next::Parked) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // Whole records read before, then new ciphertext: fed straight from the
            // caller's buffer, and only a record's beginning is copied into `unfed`.
            if read_tcp {
                return Err(io::ErrorKind::Interrupted.into());
            }
            read_tcp = true;
            let fed = if self.unfed.is_empty() {
                let room = buf.len().min(READ_MAX);
                let n = match self.tcp.read(&mut buf[..room]) {
                    // TCP EOF without close_notify: treated as EOF, as for plain TCP
                    // (HTTP framing says whether anything was cut short).
                    Ok(0) => return Ok(0),
                    Ok(n) => n,
                    Err(e) => return Err(e),
                };
                let fed = feed(conn, &buf[..n])?;
                self.unfed.extend_from_slice(&buf[fed..n]);
                fed
            } else {
                let fed = feed(conn, &self.unfed)?;
                if fed == 0 {
                    let room = buf.len().min(READ_MAX);
                    match self.tcp.read(&mut buf[..room]) {
                        Ok(0) => return Ok(0),
                        Ok(n) => self.unfed.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                self.unfed.drain(..fed);
                if self.unfed.is_empty() {
                    self.unfed = Vec::new();
                }
                fed
            };
            if fed > 0 && self.fed()? {
                // A client that closed right behind its flight cannot finish the
                // handshake: EOF now, before the pool spends any crypto on it.
                return match self.tcp.peek(&mut [0u8; 1]) {
                    Ok(0) => Ok(0),
                    Ok(_) => Err(io::ErrorKind::WouldBlock.into()),
                    Err(e) => Err(e),
                };
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A session's own record layer checks its pending record itself.
        if let Mode::Records(session) = &mut self.mode {
            return session.write(&mut self.tcp, buf);
        }
        if !self.send_ciphertext()? {
            // Still full: encrypt nothing more (the caller keeps, and conflates, plaintext).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let conn = match &mut self.mode {
            Mode::Rustls { conn, .. } => conn,
            // The pending ciphertext just went out and the records were handed over.
            Mode::Records(session) => return session.write(&mut self.tcp, buf),
            // Nothing is written before the handshake, which is on the pool.
            Mode::Away => return Err(io::ErrorKind::WouldBlock.into()),
            Mode::Failed => return Err(handed_over_failed()),
        };
        let n = conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // Only while handshaking with the buffer at its limit; the handshake's own
            // progress (a read, a writable event) comes first.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the socket does not take now waits for the writable event.
        self.send_ciphertext()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_ciphertext().map(drop)
    }
}

impl TlsStream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// close_notify first, so the peer can tell an orderly end from a truncation.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.mode {
            Mode::Rustls { conn, .. } => {
                conn.send_close_notify();
                let _ = self.send_ciphertext();
            }
            Mode::Records(session) => session.close_notify(&mut self.tcp),
            Mode::Away | Mode::Failed => {}
        }
        self.tcp.shutdown(Shutdown::Write)
    }

    /// The sending key is close to its confidentiality limit: time to close in order.
    pub(crate) fn key_nearly_used_up(&self) -> bool {
        match &self.mode {
            Mode::Records(session) => session.key_nearly_used_up(),
            _ => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
