//! TLS (`--tls-cert`, `--tls-key`): every route over https:// and wss://, the SIGHUP
//! reload, and hostile clients that must cost only their own connection. Certificates
//! are made per test with rcgen (a test CA and leaves signed by it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::Role;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, WebSocket};

use crate::util::{
    Opts, PATIENCE, TestServer, Ws, next_of_type, read_response, read_until_close, rss_kib,
};

type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// A test certificate authority (the source tests use it for their fake exchanges too).
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) cert: CertificateDer<'static>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { issuer: Issuer::new(params, key), cert: cert.der().clone() }
    }

    /// A leaf for `localhost` and 127.0.0.1: (certificate PEM, key PEM, certificate DER).
    pub(crate) fn leaf(&self, cn: &str, serial: u64) -> (String, String, CertificateDer<'static>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    /// The CA's own certificate.
    #[cfg_attr(not(feature = "exchanges"), allow(dead_code))]
    pub(crate) fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    /// A client that trusts this CA only.
    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A server with a leaf of `ca` in its temp folder; returns it and the leaf's DER.
pub(crate) fn start_tls(ca: &Ca, extra: &[(&str, &str)]) -> (TestServer, CertificateDer<'static>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (cert, key, der) = ca.leaf("ticker one", 1);
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let mut opts = Opts { dir: Some(dir), ..Opts::default() }
        .arg("--tls-cert", cert_path.to_str().unwrap())
        .arg("--tls-key", key_path.to_str().unwrap());
    for (flag, value) in extra {
        opts = opts.arg(flag, value);
    }
    (TestServer::start_with(opts), der)
}

/// A finished TLS handshake with the server.
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<TlsClient, rustls::Error> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = StreamOwned::new(ClientConnection::new(config, name)?, tcp);
    while client.conn.is_handshaking() {
        if let Err(e) = client.conn.complete_io(&mut client.sock) {
            return Err(match e.into_inner().map(|inner| inner.downcast::<rustls::Error>()) {
                Some(Ok(tls)) => *tls,
                other => panic!("handshake I/O failed: {other:?}"),
            });
        }
    }
    Ok(client)
}

/// One request over TLS; the answer, read to its `Content-Length`.
fn https(addr: SocketAddr, config: Arc<ClientConfig>, request: &str) -> crate::util::HttpResponse {
    let mut client = tls_connect(addr, config).expect("handshake");
    client.write_all(request.as_bytes()).unwrap();
    read_response(&mut client).expect("a response")
}

fn token_over_tls(s: &TestServer, config: Arc<ClientConfig>) -> String {
    let body = format!(r#"{{"api_key":"{}"}}"#, s.demo_key);
    let r = https(
        s.addr,
        config,
        &format!(
            "POST /auth/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

/// A wss:// session, past its welcome.
fn wss(s: &TestServer, config: Arc<ClientConfig>, token: &str) -> Ws {
    let url = format!("wss://localhost:{}/ws/ticker", s.addr.port());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let tcp = TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let (mut ws, response) =
        tungstenite::client_tls_with_config(req, tcp, None, Some(Connector::Rustls(config)))
            .expect("wss upgrade");
    assert_eq!(response.status(), 101);
    assert_eq!(next_of_type(&mut ws, "welcome")["user_id"], "user:demo");
    ws
}

/// Reads ticks until `seq` has moved on by a few: the session is alive and served.
fn keeps_ticking(ws: &mut Ws) {
    let first = next_of_type(ws, "ticker")["seq"].as_u64().unwrap();
    loop {
        let seq = next_of_type(ws, "ticker")["seq"].as_u64().unwrap();
        if seq >= first + 3 {
            return;
        }
    }
}

/// Reads until the server ends the connection (EOF or reset); returns what it sent. A
/// connection still open after [`PATIENCE`] fails the test.
fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
}

/// The first flight of a real TLS client, as bytes.
fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn the_page_the_token_route_and_the_ticker_all_work_over_tls() {
    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    let page = https(
        s.addr,
        ca.client(),
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html"), "the page: {}", page.text());

    // A browser offers h2 first; the server picks HTTP/1.1.
    let mut browser_like = (*ca.client()).clone();
    browser_like.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = tls_connect(s.addr, Arc::new(browser_like)).unwrap();
    assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN http/1.1");

    let token = token_over_tls(&s, ca.client());
    let mut ws = wss(&s, ca.client(), &token);
    keeps_ticking(&mut ws);
}

/// A client that offers only `suite` (and its protocol version).
fn client_with_suite(ca: &Ca, suite: rustls::SupportedCipherSuite) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![suite];
    let version = match suite {
        rustls::SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
        rustls::SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// After the upgrade the server runs the session's TLS records itself (keys taken from
/// rustls): both directions must still work in every suite it offers, and the end must
/// be an orderly close (close frame, then close_notify, then FIN).
#[test]
fn an_upgraded_session_talks_both_ways_in_every_suite_and_closes_cleanly() {
    use rustls::crypto::ring::cipher_suite as cs;
    use tungstenite::Message;
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;

    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    let token = token_over_tls(&s, ca.client());
    for suite in [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let name = format!("{:?}", suite.suite());
        let mut ws = wss(&s, client_with_suite(&ca, suite), &token);
        keeps_ticking(&mut ws);
        // Client → server records: a subscription change, an app-level ping, a
        // WebSocket ping; each answered.
        ws.send(Message::text(r#"{"type":"subscribe","symbols":["BTC-USD"]}"#)).unwrap();
        let answer = next_of_type(&mut ws, "subscriptions");
        assert_eq!(answer["symbols"], serde_json::json!(["BTC-USD"]), "{name}");
        let tick = next_of_type(&mut ws, "ticker");
        let symbols: Vec<&str> = tick["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["symbol"].as_str().unwrap())
            .collect();
        assert_eq!(symbols, ["BTC-USD"], "{name}: {tick}");
        ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
        next_of_type(&mut ws, "pong");
        ws.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "{name}: no pong frame");
            if let Message::Pong(data) = ws.read().unwrap() {
                assert_eq!(&data[..], b"are you there", "{name}");
                break;
            }
        }
        ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
        assert_eq!(read_until_close(&mut ws), Some(1000), "{name}");
        // The server's close_notify then FIN: the TLS stream ends cleanly, no truncation.
        let MaybeTlsStream::Rustls(tls) = ws.get_mut() else { panic!("not TLS") };
        let mut rest = Vec::new();
        let end = tls.read_to_end(&mut rest);
        assert!(end.is_ok(), "{name}: the session ended without close_notify: {end:?}");
    }
}

/// A TLS 1.3 key update from the client after the upgrade cannot be followed by keys
/// taken out of rustls: that session ends, and only that one.
#[test]
fn a_key_update_after_the_upgrade_ends_that_session_only() {
    use tungstenite::Message;

    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    let token = token_over_tls(&s, ca.client());
    let mut bystander = wss(&s, ca.client(), &token);
    let tls13 =
        client_with_suite(&ca, rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256);
    let mut ws = wss(&s, tls13, &token);
    keeps_ticking(&mut ws);
    let MaybeTlsStream::Rustls(tls) = ws.get_mut() else { panic!("not TLS") };
    tls.conn.refresh_traffic_keys().unwrap();
    let _ = ws.send(Message::text(r#"{"type":"ping"}"#));
    read_until_ended(&mut ws, "the key update");
    keeps_ticking(&mut bystander);
}

/// Reads (ticks keep coming) until the server ends the session; fails after [`PATIENCE`].
fn read_until_ended(ws: &mut Ws, after: &str) {
    let deadline = Instant::now() + PATIENCE;
    while ws.read().is_ok() {
        assert!(Instant::now() < deadline, "the session outlived {after}");
    }
}

/// Records the session's keys do not authenticate (forged, or sent in clear) end that
/// session after the upgrade, as rustls would have before it, and only that one.
#[test]
fn forged_records_after_the_upgrade_end_that_session_only() {
    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    let token = token_over_tls(&s, ca.client());
    let mut bystander = wss(&s, ca.client(), &token);
    let mut forged_data = vec![23, 3, 3, 0, 40];
    forged_data.extend_from_slice(&[0x5a; 40]);
    let clear_alert = vec![21, 3, 3, 0, 2, 2, 40];
    for (what, bytes) in
        [("forged application data", forged_data), ("an alert in clear", clear_alert)]
    {
        let mut ws = wss(&s, ca.client(), &token);
        keeps_ticking(&mut ws);
        let MaybeTlsStream::Rustls(tls) = ws.get_mut() else { panic!("not TLS") };
        tls.sock.write_all(&bytes).unwrap();
        read_until_ended(&mut ws, what);
        keeps_ticking(&mut bystander);
    }
}

#[test]
fn the_port_speaks_only_tls_and_an_untrusted_certificate_is_refused() {
    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    let other = Ca::new("some other CA");
    let Err(refused) = tls_connect(s.addr, other.client()) else { panic!("an unknown issuer") };
    assert!(
        matches!(
            refused,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{refused:?}"
    );
    // A plaintext request gets no HTTP answer, only the end of the connection.
    let mut plain = TcpStream::connect(s.addr).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut plain);
    assert!(!answer.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&answer));
}

#[test]
fn sighup_reloads_the_certificate_for_new_clients_and_keeps_live_sessions() {
    let ca = Ca::new("test CA");
    let (s, first) = start_tls(&ca, &[]);
    let token = token_over_tls(&s, ca.client());
    let mut old = wss(&s, ca.client(), &token);
    let seen = tls_connect(s.addr, ca.client()).unwrap();
    assert_eq!(seen.conn.peer_certificates().unwrap()[0], first);

    let (cert, key, second) = ca.leaf("ticker two", 2);
    std::fs::write(s.dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(s.dir.path().join("key.pem"), key).unwrap();
    // SAFETY: kill(2) with the server's pid.
    unsafe { libc::kill(s.pid() as i32, libc::SIGHUP) };
    s.wait_for_log("TLS certificate reloaded");
    let fresh = tls_connect(s.addr, ca.client()).unwrap();
    assert_eq!(fresh.conn.peer_certificates().unwrap()[0], second, "new clients: new cert");
    keeps_ticking(&mut old);

    // A bad file: logged, and the certificate in use stays.
    std::fs::write(s.dir.path().join("cert.pem"), "not a certificate").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(s.pid() as i32, libc::SIGHUP) };
    s.wait_for_log("TLS reload failed");
    let after = tls_connect(s.addr, ca.client()).unwrap();
    assert_eq!(after.conn.peer_certificates().unwrap()[0], second);
    let page =
        https(s.addr, ca.client(), "GET /healthz HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n");
    assert_eq!(page.status, 200);
    keeps_ticking(&mut old);
}

#[test]
fn hostile_tls_clients_cost_only_their_own_connection() {
    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[("--head-timeout", "1s"), ("--log-level", "debug")]);
    let token = token_over_tls(&s, ca.client());
    let mut session = wss(&s, ca.client(), &token);
    let hello = client_hello(ca.client());

    // Plain HTTP to the TLS port.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_until_closed(&mut c);
    s.wait_for_log("TLS error; closing");
    keeps_ticking(&mut session);

    // Garbage.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(&[0xFF; 512]).unwrap();
    read_until_closed(&mut c);
    keeps_ticking(&mut session);

    // A ClientHello cut short, then FIN.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(&hello[..hello.len() / 2]).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut c);
    keeps_ticking(&mut session);

    // A TLS 1.0-only ClientHello (by hand: rustls cannot speak 1.0): refused with an alert.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(&tls10_client_hello()).unwrap();
    let answer = read_until_closed(&mut c);
    assert_eq!(answer.first(), Some(&0x15), "an alert record: {answer:?}");
    keeps_ticking(&mut session);

    // A handshake that never finishes: half a ClientHello, then silence, until the head
    // timeout closes it.
    let started = Instant::now();
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(&hello[..hello.len() / 2]).unwrap();
    read_until_closed(&mut c);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
    keeps_ticking(&mut session);
}

/// A client that comes back resumes its session (TLS 1.3 tickets, TLS 1.2 session ids),
/// its handshake run by the handshake pool like a full one, and is served.
#[test]
fn a_returning_client_resumes_its_session_over_tls_13_and_12() {
    use rustls::HandshakeKind::{Full, Resumed};
    use rustls::crypto::ring::cipher_suite as cs;

    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    for suite in [cs::TLS13_AES_128_GCM_SHA256, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256] {
        // One configuration, so one client-side session cache.
        let config = client_with_suite(&ca, suite);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut c = tls_connect(s.addr, config.clone()).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n").unwrap();
            // The TLS 1.3 tickets come before the answer, so they are stored by now.
            assert_eq!(read_response(&mut c).expect("an answer").status, 200);
            kinds.push(c.conn.handshake_kind());
        }
        assert_eq!(kinds, [Some(Full), Some(Resumed)], "{:?}", suite.suite());
    }
}

/// One metric's value, scraped over TLS.
fn metric(s: &TestServer, config: Arc<ClientConfig>, name: &str) -> f64 {
    let text =
        https(s.addr, config, "GET /metrics HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            .text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn stalled_tls_subscribers_are_conflated_then_closed_with_1008_and_memory_stays_flat() {
    const STALLED: usize = 40;
    // ~10 KB frames fill a stalled socket within seconds.
    let symbols: Vec<String> = (0..200).map(|i| format!("SYM{i}-USD:{}", 100 + i)).collect();
    let ca = Ca::new("test CA");
    let (s, _) = start_tls(
        &ca,
        &[
            ("--symbols", &symbols.join(",")),
            ("--slow-consumer-timeout", "3s"),
            ("--close-linger", "120s"),
        ],
    );
    let token = token_over_tls(&s, ca.client());
    let mut reader = wss(&s, ca.client(), &token);
    let rss_before = rss_kib(s.pid());
    // Upgraded, then never read: the 101, the ticks and the TLS records pile up.
    let stalled: Vec<TlsClient> = (0..STALLED)
        .map(|_| {
            let mut c = tls_connect(s.addr, ca.client()).unwrap();
            write!(
                c,
                "GET /ws/ticker HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .unwrap();
            c
        })
        .collect();
    let mut rss_peak = rss_before;
    let deadline = Instant::now() + PATIENCE * 2;
    while metric(&s, ca.client(), "ticker_slow_consumer_closes_total") < STALLED as f64 {
        assert!(Instant::now() < deadline, "stalled subscribers were not closed");
        rss_peak = rss_peak.max(rss_kib(s.pid()));
        // The reader reads on meanwhile (and so is not a slow consumer itself).
        next_of_type(&mut reader, "ticker");
    }
    assert!(metric(&s, ca.client(), "ticker_conflated_frames_total") > 0.0, "no conflation");
    let growth_kib = rss_peak.saturating_sub(rss_before);
    eprintln!("{STALLED} stalled TLS subscribers: RSS {rss_before} KiB, peak +{growth_kib} KiB");
    assert!(growth_kib < 20 * 1024, "RSS grew by {growth_kib} KiB");
    keeps_ticking(&mut reader);
    // Each stream is intact: once read, the frame in flight is whole, then the close.
    for mut c in stalled {
        let r = read_response(&mut c).expect("the upgrade answer");
        assert_eq!(r.status, 101);
        let mut ws = WebSocket::from_raw_socket(MaybeTlsStream::Rustls(c), Role::Client, None);
        assert_eq!(read_until_close(&mut ws), Some(1008));
    }
}

/// A ClientHello offering TLS 1.0 and nothing newer: record and client version 3.1, one
/// cipher suite, no extensions.
fn tls10_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x01];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x02, 0x00, 0x2F]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn a_missing_file_a_mismatched_key_or_a_lone_flag_stop_the_server_at_start() {
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = ca.leaf("one", 1);
    let (_, other_key, _) = ca.leaf("two", 2);
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, other_key).unwrap();
    let start = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
            .args(["--addr", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("auth.db"))
            .args(args)
            .env("TICKER_TOKEN_KEY", "test-key-0123456789abcdef")
            .output()
            .unwrap();
        assert!(!out.status.success(), "it started with {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let (cert_arg, key_arg) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let missing = start(&["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key_arg]);
    assert!(missing.contains("/nonexistent/cert.pem"), "{missing}");
    let mismatch = start(&["--tls-cert", cert_arg, "--tls-key", key_arg]);
    assert!(mismatch.contains("cannot start") && mismatch.contains("--tls-cert"), "{mismatch}");
    let lone = start(&["--tls-cert", cert_arg]);
    assert!(lone.contains("--tls-key"), "{lone}");
}

/// The upgrade request for `token` as raw HTTP, `pad` bytes of `X-Pad` making it longer.
fn upgrade_request(token: &str, pad: usize) -> String {
    format!(
        "GET /ws/ticker HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(pad)
    )
}

/// The TLS records of `messages`, one record each, as the client would send them.
fn records_of(client: &mut TlsClient, messages: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
    let (mut wire, mut ends) = (Vec::new(), Vec::new());
    for message in messages {
        client.conn.writer().write_all(message).unwrap();
        while client.conn.wants_write() {
            client.conn.write_tls(&mut wire).unwrap();
        }
        ends.push(wire.len());
    }
    (wire, ends)
}

/// At the upgrade the server's record layer takes over from rustls: a WebSocket frame
/// that came in the same TCP write as the upgrade request must still be read, whether
/// its record came whole behind the request (here it straddles the 4 KiB that rustls
/// reads from a socket at once) or only its beginning did (the rest is sent once the
/// 101 is in). Either way the client's `ping` is answered with `pong`.
#[test]
fn a_frame_sent_in_the_same_tcp_write_as_the_upgrade_request_is_served() {
    use rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    use tungstenite::Message;

    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[]);
    let token = token_over_tls(&s, ca.client());
    let ping = crypto_ticker::ws::frame::encode_client_frame(
        true,
        crypto_ticker::ws::frame::OpCode::Text,
        br#"{"type":"ping"}"#,
        [1, 2, 3, 4],
    );
    // TLS 1.3 with AES-GCM: a record is its plaintext + 22 bytes, so the request's
    // record can be made to end 20 bytes short of 4 KiB.
    let overhead = 22;
    let short = upgrade_request(&token, 0).len();
    let straddling = 4096 - 20 - overhead - short;
    for (what, pad, cut_inside_frame) in
        [("whole, across 4 KiB", straddling, false), ("cut inside its record", 0, true)]
    {
        let mut c = tls_connect(s.addr, client_with_suite(&ca, TLS13_AES_128_GCM_SHA256)).unwrap();
        // Read the session tickets: the server has processed the client's Finished, so
        // the request's record is at the start of what it reads next.
        c.conn.complete_io(&mut c.sock).unwrap();
        let request = upgrade_request(&token, pad);
        let (wire, ends) = records_of(&mut c, &[request.as_bytes(), &ping]);
        assert_eq!(ends[0], request.len() + overhead, "{what}");
        let sent_first = if cut_inside_frame { ends[0] + 10 } else { wire.len() };
        c.sock.write_all(&wire[..sent_first]).unwrap();
        let r = read_response(&mut c).expect("the upgrade answer");
        assert_eq!(r.status, 101, "{what}");
        let mut ws = WebSocket::from_raw_socket(MaybeTlsStream::Rustls(c), Role::Client, None);
        assert_eq!(next_of_type(&mut ws, "welcome")["user_id"], "user:demo", "{what}");
        let MaybeTlsStream::Rustls(tls) = ws.get_mut() else { panic!("not TLS") };
        tls.sock.write_all(&wire[sent_first..]).unwrap();
        next_of_type(&mut ws, "pong");
        // The session goes on both ways.
        ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
        next_of_type(&mut ws, "pong");
        keeps_ticking(&mut ws);
    }
}

/// One flood connection: a replayed ClientHello, then the server's first answer (so the
/// server has done the key exchange and signed), then gone. `true` if it answered.
fn replay_hello(addr: SocketAddr, hello: &[u8]) -> bool {
    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    if c.write_all(hello).is_err() {
        return false;
    }
    let mut answer = [0u8; 512];
    matches!(c.read(&mut answer), Ok(n) if n > 0)
}

/// A ClientHello flood from several connections (each round a new connection, its
/// ClientHello answered by a key exchange and a signature) must not take an ordinary
/// subscriber's ticks, nor logins: the handshakes run on the handshake pool, not the
/// event loop. Count-based: of the ticks the ticker made while the flood ran (their
/// `seq` numbers), the subscriber received most, and a new client got a token and its
/// `wss://` upgrade while the flood was on.
#[test]
fn a_client_hello_flood_leaves_subscribers_their_ticks_and_new_clients_their_logins() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    // More connections than the handshake slots (64 for one thread), so steps wait and
    // accepting pauses.
    const FLOODERS: usize = 96;
    const MAX_ROUNDS: usize = 5_000;
    const TICKS: u64 = 150;
    let ca = Ca::new("test CA");
    let (s, _) = start_tls(&ca, &[("--tls-threads", "1")]);
    let token = token_over_tls(&s, ca.client());
    let mut ws = wss(&s, ca.client(), &token);
    let hello = Arc::new(client_hello(ca.client()));
    let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let (stop, answered, hello, addr) =
                (stop.clone(), answered.clone(), hello.clone(), s.addr);
            std::thread::spawn(move || {
                for round in 0..MAX_ROUNDS {
                    if stop.load(Relaxed) {
                        return round;
                    }
                    if replay_hello(addr, &hello) {
                        answered.fetch_add(1, Relaxed);
                    }
                }
                MAX_ROUNDS
            })
        })
        .collect();
    // The flood has started once the server answered a few of its ClientHellos.
    while answered.load(Relaxed) < FLOODERS {
        next_of_type(&mut ws, "ticker");
    }
    let first = next_of_type(&mut ws, "ticker")["seq"].as_u64().unwrap();
    let (mut last, mut received) = (first, 1u64);
    let mut login = None;
    while received < TICKS {
        last = next_of_type(&mut ws, "ticker")["seq"].as_u64().unwrap();
        received += 1;
        if received == 20 {
            // A new client, in the middle of the flood: token, then a wss:// session.
            let (s_addr, config, port) = (s.addr, ca.client(), s.addr.port());
            let demo_key = s.demo_key.clone();
            login =
                Some(std::thread::spawn(move || login_and_tick(s_addr, port, config, &demo_key)));
        }
    }
    let answered_during = answered.load(Relaxed);
    stop.store(true, Relaxed);
    let rounds: Vec<usize> = flooders.into_iter().map(|f| f.join().unwrap()).collect();
    let waits = metric(&s, ca.client(), "ticker_tls_handshake_waits_total");
    eprintln!(
        "flood: {answered_during} ClientHellos answered while the subscriber got {received} \
         ticks of seq {first}..={last}; rounds per flooder {rounds:?}; \
         {waits} handshake steps waited for a slot"
    );
    assert!(waits > 0.0, "the flood never filled the handshake slots");
    assert!(
        rounds.iter().all(|&r| r < MAX_ROUNDS),
        "the flood ended before the subscriber got {TICKS} ticks: {rounds:?}"
    );
    // Before the handshakes left the loop, this flood cost the subscriber a third of
    // its ticks and more (62 % received in a debug build, 2 cores).
    let made = last - first + 1;
    assert!(received * 4 >= made * 3, "the subscriber got {received} of the {made} ticks made");
    let login = login.expect("a login was started").join().expect("the login during the flood");
    assert_eq!(login, 101);
    // And after it.
    assert_eq!(login_and_tick(s.addr, s.addr.port(), ca.client(), &s.demo_key), 101);
    keeps_ticking(&mut ws);
}

/// A whole login over TLS: the token, the `wss://` upgrade, a tick; returns the upgrade's
/// status.
fn login_and_tick(addr: SocketAddr, port: u16, config: Arc<ClientConfig>, demo_key: &str) -> u16 {
    let body = format!(r#"{{"api_key":"{demo_key}"}}"#);
    let r = https(
        addr,
        config.clone(),
        &format!(
            "POST /auth/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let mut req = format!("wss://localhost:{port}/ws/ticker").into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let (mut ws, response) =
        tungstenite::client_tls_with_config(req, tcp, None, Some(Connector::Rustls(config)))
            .expect("wss upgrade");
    next_of_type(&mut ws, "ticker");
    response.status().as_u16()
}
