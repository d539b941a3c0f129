//! The bytes under a connection: plain TCP, or TLS over it (`https://`, `wss://`).
//!
//! [`Transport::Plain`] is the socket itself: each call is the one syscall it was before
//! TLS existed, behind a test of the enum's tag. [`Transport::Tls`] drives a rustls
//! `ClientConnection` without blocking, as rustls' mio examples do: ciphertext comes in
//! with `read_tls` until the socket would block, `process_new_packets` decrypts it (and
//! moves the handshake on), plaintext comes out of `reader()`; output goes into
//! `writer()` and leaves with `write_tls` while `wants_write`. The TLS handshake starts
//! at the first flush after the TCP connect, while the connection is handshaking, so the
//! handshake latency (connect start → 101) includes it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use rustls::ClientConnection;

use crate::sock;
use crate::tls::{self, TlsTarget};

pub(crate) enum Transport {
    Plain(TcpStream),
    /// Boxed: a session is about a kilobyte, which plain connections need not carry.
    Tls(Box<Tls>),
}

pub(crate) struct Tls {
    tcp: TcpStream,
    session: ClientConnection,
}

impl Transport {
    /// Starts a non-blocking connect to `remote` (from `source` if given), with a TLS
    /// session ready to greet the server once connected when `tls` is given.
    pub(crate) fn connect(
        remote: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<&TlsTarget>,
    ) -> io::Result<Transport> {
        let tcp = sock::connect(remote, source)?;
        Ok(match tls {
            None => Transport::Plain(tcp),
            Some(target) => {
                let session = target.session().map_err(tls::io_error)?;
                Transport::Tls(Box::new(Tls { tcp, session }))
            }
        })
    }

    /// The TCP socket: for mio registration, the connect's outcome, the peer address.
    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => &mut tls.tcp,
        }
    }

    /// Reads plaintext into `buf`, as `Read::read` does: `Ok(0)` at the end of the
    /// stream, `WouldBlock` once the socket is drained. A TLS failure is an error of kind
    /// `InvalidData` carrying the `rustls::Error` ([`tls::inner_error`]).
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }

    /// Whether a read shorter than the buffer shows that the socket's receive queue is
    /// empty (see [`crate::conn`]). Not over TLS: a read returns at most what rustls has
    /// decrypted, while more ciphertext may wait in the socket.
    #[inline]
    pub(crate) fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Writes some of `data`, as `Write::write` does. Over TLS, `data` is encrypted into
    /// the session's buffer (kept there until the handshake is done), and only when that
    /// buffer is full does this send ciphertext first; [`Transport::send_queued`] sends
    /// the rest.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(data),
            Transport::Tls(tls) => tls.write(data),
        }
    }

    /// Sends the ciphertext the TLS session has queued (handshake messages, records,
    /// alerts) until there is none or the socket would block. Nothing to do for plain.
    #[inline]
    pub(crate) fn send_queued(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(tls) => tls.send_queued(),
        }
    }

    /// True while TLS has ciphertext to send: the socket's `WRITABLE` interest must stay.
    #[inline]
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.session.wants_write(),
        }
    }
}

impl Tls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Decrypted plaintext first; `WouldBlock` means rustls holds none.
            match self.session.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Ok(0): close_notify; UnexpectedEof: TCP closed without it.
                other => return other,
            }
            match self.session.read_tls(&mut self.tcp) {
                // The end of TCP: rustls notes it, and the reader says which end it was.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                // rustls has queued an alert that tells the server why; best effort.
                let _ = self.session.write_tls(&mut self.tcp);
                return Err(tls::io_error(e));
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            let n = self.session.writer().write(data)?;
            if n > 0 || data.is_empty() {
                return Ok(n);
            }
            // The session's buffer is full: make room by sending, or wait for the socket
            // (or, during the handshake, for the server's answer).
            if !self.session.wants_write() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if self.session.write_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
        }
    }

    fn send_queued(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.tcp) {
                // Counted as the plain flush counts a zero write: a reset.
                Ok(0) => return Err(io::ErrorKind::BrokenPipe.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
