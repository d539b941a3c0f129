//! What a connection's bytes travel over: plain TCP, or TLS over TCP (`TlsStream` in
//! `transport/tls_stream.rs`). Both are nonblocking byte streams to the rest of the
//! server, so the state machine, the outbox and the fan-out do not know which one they
//! write to. The one thing only the shard sees: a TLS connection's handshake steps,
//! which it sends to the handshake pool (`handshakes.rs`).
//!
//! [`Socket`] is what a connection needs of any of them (and of the in-memory socket of
//! `conn`'s unit tests): `conn` imports it from here, and nothing here imports `conn`.
//!
//! Without the `tls` feature, `TlsStream` is a stand-in with no values
//! (`transport/no_tls.rs`): [`Transport::Tls`] cannot be built, its arms below compile
//! to nothing, and a plain connection's transport is its socket and no more (no tag, no
//! branch, no indirection; the test at the end checks its size).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::Shared;

// The TLS stream, or without TLS its stand-in: the one switch between the two builds.
// Visible to the handshake pool, which drives a stream's handshake steps.
#[cfg(feature = "tls")]
pub(super) mod tls_stream;
#[cfg(not(feature = "tls"))]
#[path = "transport/no_tls.rs"]
pub(super) mod tls_stream;

pub(crate) use tls_stream::TlsBox;

/// What a connection needs of its socket: bytes both ways, a half-close, and a cap on
/// the kernel's send buffer.
pub(crate) trait Socket: Read + Write {
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Best effort: on failure the kernel default stays.
    fn set_send_buffer(&self, bytes: usize);
    /// Sends bytes the socket layer itself still holds (TLS records encrypted by an
    /// earlier write); `Ok(true)` once none are left, `Ok(false)` while the socket is
    /// full. A plain socket holds none.
    fn send_pending(&mut self) -> io::Result<bool> {
        Ok(true)
    }
    /// The connection became a WebSocket session (TLS hands its records over to the
    /// server's own record layer).
    fn start_session(&mut self) {}
    /// A TLS session whose sending key is close to its confidentiality limit: the session
    /// should end in order (a close frame the client reconnects on) before it must end
    /// abruptly.
    fn key_nearly_used_up(&self) -> bool {
        false
    }
}

impl Socket for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// `SO_SNDBUF` (the kernel doubles the value).
    fn set_send_buffer(&self, bytes: usize) {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt on a socket this connection owns, with a valid int option.
        let rc = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            crate::debug!("SO_SNDBUF not set", error = io::Error::last_os_error());
        }
    }
}

/// A connection's transport.
pub(crate) enum Transport {
    Plain(TcpStream),
    /// Boxed with TLS on ([`TlsBox`]), so a plain connection's transport stays small.
    Tls(TlsBox),
}

impl Transport {
    /// The transport of a connection just accepted: TLS when the port speaks it (the
    /// session starts here; its handshake runs in the reads that follow, so one that
    /// never finishes is closed by the head timeout like a stalled request), else the
    /// socket itself. `Err` gives the socket back when its TLS session could not be
    /// created (logged).
    #[inline]
    pub(crate) fn accepted(
        socket: TcpStream,
        shared: &Shared,
        peer: SocketAddr,
    ) -> Result<Transport, TcpStream> {
        if !shared.speaks_tls() {
            return Ok(Transport::Plain(socket));
        }
        tls_stream::accept(socket, shared, peer).map(Transport::Tls)
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.tcp_mut(),
        }
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

impl Socket for Transport {
    /// TLS: close_notify first, so the peer can tell an orderly end from a truncation.
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.shutdown(Shutdown::Write),
            Transport::Tls(tls) => tls.shutdown_write(),
        }
    }

    fn set_send_buffer(&self, bytes: usize) {
        match self {
            Transport::Plain(tcp) => tcp.set_send_buffer(bytes),
            Transport::Tls(tls) => tls.tcp().set_send_buffer(bytes),
        }
    }

    fn send_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(tls) => tls.send_ciphertext(),
        }
    }

    fn start_session(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.start_session();
        }
    }

    fn key_nearly_used_up(&self) -> bool {
        match self {
            Transport::Tls(tls) => tls.key_nearly_used_up(),
            Transport::Plain(_) => false,
        }
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// Without TLS the `Tls` variant has no values and takes no room: the transport is
    /// its socket, with no tag for the plain path to test. With TLS, a tag and a box at
    /// most, never the stream inline.
    #[test]
    fn a_transport_is_its_socket_and_at_most_a_boxed_stream() {
        let size = size_of::<Transport>();
        if size_of::<TlsBox>() == 0 {
            assert_eq!(size, size_of::<TcpStream>());
        } else {
            assert!(size <= 2 * size_of::<usize>(), "{size} bytes");
        }
    }
}
