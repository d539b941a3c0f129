//! What a connection's bytes travel over: plain TCP, or TLS over TCP (rustls). Both are
//! nonblocking byte streams to the rest of the server, so the state machine, the outbox
//! and the fan-out do not know which one they write to.
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
//! Reads pull TLS records from TCP, process them (the handshake, including the private-key
//! signature, runs here, on the event loop) and hand out plaintext; handshake records
//! rustls wants to send go out straight away. A TLS error (plain HTTP, garbage, an old
//! protocol version) is an `InvalidData` read error: the caller closes that connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

use super::conn::Socket;

/// Cap on what rustls buffers per connection, plaintext waiting for the handshake plus
/// ciphertext waiting for the socket: a TLS record's worth (16 KiB) and its overhead.
/// Larger writes (an HTTP answer) are taken in pieces by the outbox's partial writes.
const TLS_BUFFER_LIMIT: usize = 18 * 1024;

/// A connection's transport.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A server-side TLS session over a TCP socket.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    peer: SocketAddr,
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, mut tls: ServerConnection, peer: SocketAddr) -> TlsStream {
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        TlsStream { tcp, tls, peer }
    }

    /// Writes pending ciphertext until none is left (`Ok(true)`) or the socket is full
    /// (`Ok(false)`, and a writable event is due).
    fn send_ciphertext(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// A TLS protocol error: send the alert rustls queued (best effort), log, and turn it
    /// into the read error that closes the connection.
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        let _ = self.send_ciphertext();
        crate::debug!("TLS error; closing", peer = self.peer, error = e);
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Plaintext already decrypted goes first; `Ok(0)` here is the peer's
            // close_notify, an orderly end.
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.tcp) {
                // TCP EOF without close_notify: treated as EOF, as for plain TCP (HTTP
                // framing says whether anything was cut short).
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        return Err(self.fail(e));
                    }
                    // Handshake messages, tickets, alerts: out now, or at the writable
                    // event a full socket promises.
                    self.send_ciphertext()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.send_ciphertext()? {
            // Still full: encrypt nothing more (the caller keeps, and conflates, plaintext).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(buf)?;
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
            Transport::Tls(tls) => {
                tls.tls.send_close_notify();
                let _ = tls.send_ciphertext();
                tls.tcp.shutdown(Shutdown::Write)
            }
        }
    }

    fn set_send_buffer(&self, bytes: usize) {
        match self {
            Transport::Plain(tcp) => tcp.set_send_buffer(bytes),
            Transport::Tls(tls) => tls.tcp.set_send_buffer(bytes),
        }
    }

    fn send_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(tls) => tls.send_ciphertext(),
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
            Transport::Tls(tls) => &mut tls.tcp,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind::WouldBlock;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use rustls::pki_types::ServerName;

    use super::*;
    use crate::server::tls::Tls;

    /// A server-side TLS transport on loopback with a tiny send buffer, its handshake
    /// done, and a blocking rustls client in a thread that reads nothing until told to,
    /// then reads to EOF and returns the plaintext byte count.
    fn pair() -> (Transport, mpsc::Sender<()>, std::thread::JoinHandle<usize>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let tls = Tls::load(&cert_path, &key_path).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, wait) = mpsc::channel();
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream.write_all(b"hello").unwrap();
            wait.recv().unwrap();
            let mut sink = Vec::new();
            // The server ends with close_notify, so this is a clean EOF.
            stream.read_to_end(&mut sink).unwrap();
            sink.len()
        });
        let (tcp, peer) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let tcp = TcpStream::from_std(tcp);
        tcp.set_send_buffer(4096);
        let mut server = Transport::Tls(Box::new(TlsStream::new(tcp, tls.accept().unwrap(), peer)));
        let mut buf = [0u8; 64];
        loop {
            match server.read(&mut buf) {
                Ok(n) => {
                    assert_eq!(&buf[..n], b"hello");
                    break;
                }
                Err(e) if e.kind() == WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("handshake: {e}"),
            }
        }
        (server, go, client)
    }

    #[test]
    fn a_full_socket_refuses_plaintext_instead_of_buffering_it_and_loses_nothing() {
        let (mut server, go, client) = pair();
        let chunk = [b'x'; 1000];
        let mut accepted = 0;
        let mut refused = 0;
        // Far more than the socket buffers hold: the transport must refuse, not queue.
        for _ in 0..10_000 {
            match server.write(&chunk) {
                Ok(n) => {
                    assert!(n <= chunk.len());
                    accepted += n;
                }
                Err(e) if e.kind() == WouldBlock => refused += 1,
                Err(e) => panic!("write: {e}"),
            }
        }
        assert!(refused > 9_000, "writes were buffered: {accepted} bytes accepted");
        assert!(accepted < 10_000 * chunk.len());
        // The reader drains; what was accepted (the last write's records included) goes
        // out through `send_pending`, then close_notify and FIN.
        go.send(()).unwrap();
        loop {
            match server.send_pending() {
                Ok(true) => break,
                Ok(false) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("send_pending: {e}"),
            }
        }
        server.shutdown_write().unwrap();
        assert_eq!(client.join().unwrap(), accepted, "every accepted byte arrived");
    }
}
