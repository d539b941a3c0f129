//! The TLS stream over loopback sockets against a rustls client: writes refused rather
//! than buffered when the socket is full, and nothing lost at the hand-over to the
//! record layer.

use std::io::ErrorKind::WouldBlock;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::session::MAX_EMPTY_RECORDS;
use super::*;
use crate::server::transport::{Socket, Transport};
use crate::tls::Tls;

/// The server's TLS side for a fresh self-signed certificate, a client configuration
/// that trusts it, and a loopback listener.
pub(crate) fn fixture() -> (Tls, Arc<rustls::ClientConfig>, std::net::TcpListener) {
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
    (tls, Arc::new(client_config), listener)
}

/// The server side of the listener's next connection, before its handshake.
pub(crate) fn accept(tls: &Tls, listener: &std::net::TcpListener) -> Transport {
    let (tcp, peer) = listener.accept().unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp = TcpStream::from_std(tcp);
    Transport::Tls(Box::new(TlsStream::new(tcp, tls.accept().unwrap(), peer)))
}

/// A server-side TLS transport on loopback with a tiny send buffer, its handshake
/// done, and a blocking rustls client in a thread that reads nothing until told to,
/// then reads to EOF and returns the plaintext byte count.
fn pair() -> (Transport, mpsc::Sender<()>, std::thread::JoinHandle<usize>) {
    let (tls, client_config, listener) = fixture();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client_config, name).unwrap();
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
    let mut server = accept(&tls, &listener);
    server.set_send_buffer(4096);
    read_hello(&mut server);
    (server, go, client)
}

/// Runs the server side of the handshake (the pool's steps done here) until the
/// client's first plaintext, which must be `hello`.
fn read_hello(server: &mut Transport) {
    let mut buf = [0u8; 64];
    loop {
        match server.read(&mut buf) {
            Ok(n) => {
                assert_eq!(&buf[..n], b"hello");
                return;
            }
            // Interrupted: records but no plaintext yet; call again, as the loop does.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == WouldBlock => {
                if !run_due_step(server) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("handshake: {e}"),
        }
    }
}

/// Does the handshake pool's work for a due step, here; `false` if none was due.
fn run_due_step(server: &mut Transport) -> bool {
    let Transport::Tls(tls) = server else { return false };
    let Some(mut step) = tls.take_step() else { return false };
    let result = step.process_new_packets().map(drop);
    tls.step_done(step, result).expect("the step");
    true
}

/// Writes far more than the socket buffers hold: the transport must refuse, not
/// queue; then the reader drains, what was accepted (the last write's records
/// included) goes out through `send_pending`, then close_notify and FIN, and the
/// client reads every accepted byte to a clean EOF.
fn refuses_when_full_and_loses_nothing(session: bool) {
    let (mut server, go, client) = pair();
    if session {
        server.start_session();
        assert!(
            matches!(&server, Transport::Tls(tls) if matches!(tls.mode, Mode::Records(_))),
            "the records were handed over"
        );
    }
    let chunk = [b'x'; 1000];
    let mut accepted = 0;
    let mut refused = 0;
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

#[test]
fn a_full_socket_refuses_plaintext_instead_of_buffering_it_and_loses_nothing() {
    refuses_when_full_and_loses_nothing(false);
}

#[test]
fn after_the_hand_over_a_full_socket_still_refuses_and_loses_nothing() {
    refuses_when_full_and_loses_nothing(true);
}

/// The client's Finished, the upgrade request, a first frame and the beginning of a
/// second one come in one TCP write: the handshake step decrypts the request and the
/// first frame, the connection reads only the request before its session starts, and
/// the second frame's record is still arriving. After the hand-over the record layer
/// reads the frame rustls had decrypted, then the second one, whole.
#[test]
fn the_hand_over_keeps_what_rustls_decrypted_and_the_record_still_arriving() {
    let (tls, client_config, listener) = fixture();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // By hand, not `complete_io`: the client's Finished stays queued and leaves
        // with the records below.
        while conn.is_handshaking() {
            while conn.wants_write() {
                conn.write_tls(&mut tcp).unwrap();
            }
            conn.read_tls(&mut tcp).unwrap();
            conn.process_new_packets().unwrap();
        }
        for message in [&b"UPGRADE"[..], b"FRAME-ONE", b"FRAME-TWO"] {
            conn.writer().write_all(message).unwrap();
        }
        let mut wire = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
        let cut = wire.len() - 10;
        tcp.write_all(&wire[..cut]).unwrap();
        wait.recv().unwrap();
        tcp.write_all(&wire[cut..]).unwrap();
        // Open until the server has read everything.
        wait.recv().unwrap();
    });
    let mut server = accept(&tls, &listener);
    let mut buf = [0u8; 4096];
    let mut steps = 0;
    while steps < 2 {
        match server.read(&mut buf) {
            Ok(n) => panic!("{n} bytes of plaintext during the handshake"),
            // Interrupted: records but no plaintext yet; call again, as the loop does.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == WouldBlock => {
                if run_due_step(&mut server) {
                    steps += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("handshake: {e}"),
        }
    }
    let mut request = [0u8; 7];
    assert_eq!(server.read(&mut request).unwrap(), 7);
    assert_eq!(&request, b"UPGRADE");
    let Transport::Tls(stream) = &server else { panic!("not TLS") };
    assert!(!stream.unfed.is_empty(), "the last record is still arriving");
    server.start_session();
    let Transport::Tls(stream) = &server else { panic!("not TLS") };
    assert!(matches!(stream.mode, Mode::Records(_)), "the records were handed over");
    let n = server.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"FRAME-ONE", "what rustls had decrypted");
    assert_eq!(server.read(&mut buf).unwrap_err().kind(), WouldBlock);
    go.send(()).unwrap();
    let n = loop {
        match server.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("after the hand-over: {e}"),
        }
    };
    assert_eq!(&buf[..n], b"FRAME-TWO", "the record that was still arriving");
    go.send(()).unwrap();
    client.join().unwrap();
}

/// After the hand-over, a peer's run of empty application-data records: up to
/// [`MAX_EMPTY_RECORDS`] of them, then data, reads as the data; one more is refused
/// as a flood (each is a decryption that yields nothing).
#[test]
fn a_long_run_of_empty_records_is_refused_and_a_short_one_is_read_through() {
    for (empties, refused) in [(MAX_EMPTY_RECORDS, false), (MAX_EMPTY_RECORDS + 1, true)] {
        let (tls, client_config, listener) = fixture();
        let mut client_config = (*client_config).clone();
        client_config.enable_secret_extraction = true;
        let addr = listener.local_addr().unwrap();
        let (go, wait) = mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream.write_all(b"hello").unwrap();
            stream.flush().unwrap();
            wait.recv().unwrap();
            let (conn, mut tcp) = stream.into_parts();
            let version = conn.protocol_version().unwrap();
            #[allow(deprecated)]
            let secrets = conn.dangerous_extract_secrets().unwrap();
            let mut records = Records::new(version, u64::MAX, secrets).unwrap();
            let mut wire = Vec::new();
            for _ in 0..empties {
                records.seal(records::APPLICATION_DATA, b"", &mut wire).unwrap();
            }
            records.seal(records::APPLICATION_DATA, b"x", &mut wire).unwrap();
            tcp.write_all(&wire).unwrap();
            wait.recv().unwrap();
        });
        let mut server = accept(&tls, &listener);
        read_hello(&mut server);
        let mut buf = [0u8; 64];
        server.start_session();
        go.send(()).unwrap();
        let got = loop {
            match server.read(&mut buf) {
                // Interrupted: records but no plaintext yet; call again, as the loop does.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                other => break other,
            }
        };
        match (got, refused) {
            (Ok(n), false) => assert_eq!(&buf[..n], b"x", "{empties} empty records"),
            (Err(e), true) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}"),
            (other, _) => panic!("{empties} empty records: {other:?}"),
        }
        go.send(()).unwrap();
        client.join().unwrap();
    }
}
