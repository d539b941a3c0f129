//! What a connection's bytes travel over: plain TCP, or (feature `tls`) TLS over TCP,
//! [`TlsStream`] in `transport/tls_stream.rs`. Both are nonblocking byte streams to the
//! rest of the server, so the state machine, the outbox and the fan-out do not know
//! which one they write to. The one thing only the shard sees: a TLS connection's
//! handshake steps, which it sends to the handshake pool (`handshakes.rs`).
//!
//! [`Socket`] is what a connection needs of any of them (and of the in-memory socket of
//! `conn`'s unit tests): `conn` imports it from here, and nothing here imports `conn`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

#[cfg(feature = "tls")]
mod tls_stream;
#[cfg(feature = "tls")]
pub(crate) use tls_stream::{HandshakeStep, TlsStream};

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
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

impl Socket for Transport {
    /// TLS: close_notify first, so the peer can tell an orderly end from a truncation.
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.shutdown_write(),
        }
    }

    fn set_send_buffer(&self, bytes: usize) {
        match self {
            Transport::Plain(tcp) => tcp.set_send_buffer(bytes),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.tcp().set_send_buffer(bytes),
        }
    }

    fn send_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.send_ciphertext(),
        }
    }

    fn start_session(&mut self) {
        #[cfg(feature = "tls")]
        if let Transport::Tls(tls) = self {
            tls.start_session();
        }
    }

    fn key_nearly_used_up(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
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

impl Transport {
    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.tcp_mut(),
        }
    }
}
