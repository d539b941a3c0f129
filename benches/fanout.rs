//! The per-subscriber cost the event loop adds on top of the `write` syscall: one tick
//! offered to 1,000 in-memory subscribers whose sockets take everything (the common
//! case), and to 1,000 whose sockets are full (conflation).
//! `cargo bench --bench fanout`; throughput is in subscribers.

use std::hint::black_box;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crypto_ticker::server::Outbox;
use crypto_ticker::server::fanout::offer;
#[cfg(feature = "tls")]
use crypto_ticker::tls::records::{APPLICATION_DATA, Records};

/// A socket with room for everything: counts bytes, copies nothing.
struct Open(usize);

impl Write for Open {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket whose buffer is full.
struct Full;

impl Write for Full {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const SUBSCRIBERS: usize = 1000;

fn fanout(c: &mut Criterion) {
    let frame: Arc<[u8]> = Arc::from(vec![b'x'; 260]);
    let now = Instant::now();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));

    let mut open: Vec<(Open, Outbox, Instant)> =
        (0..SUBSCRIBERS).map(|_| (Open(0), Outbox::default(), now)).collect();
    g.bench_function("1000_subscribers_socket_takes_all", |b| {
        b.iter(|| {
            for (sock, out, progress) in &mut open {
                black_box(offer(sock, out, progress, &frame, now));
            }
        })
    });

    let mut full: Vec<(Full, Outbox, Instant)> =
        (0..SUBSCRIBERS).map(|_| (Full, Outbox::default(), now)).collect();
    g.bench_function("1000_subscribers_socket_full_conflates", |b| {
        b.iter(|| {
            for (sock, out, progress) in &mut full {
                black_box(offer(sock, out, progress, &frame, now));
            }
        })
    });
    g.finish();
}

/// What TLS adds per subscriber per tick, apart from the syscall: one 260-byte frame
/// sealed into a record (AES-128-GCM, TLS 1.3, as negotiated with a rustls client) and
/// handed to a socket that takes everything. `own_record_layer` is what the server runs
/// for an upgraded session (`tls::records`, one scratch buffer); `rustls_buffered` is
/// rustls' buffered connection, which the server used before and still uses for HTTP.
/// The plaintext twin is the `Open` write above.
#[cfg(feature = "tls")]
fn tls_record(c: &mut Criterion) {
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let provider = Arc::new(provider);
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    server_config.enable_secret_extraction = true;
    let server_config = Arc::new(server_config);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client_config = Arc::new(client_config);
    // A finished handshake, in memory.
    let handshake = || {
        let mut server = rustls::ServerConnection::new(server_config.clone()).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(client_config.clone(), name).unwrap();
        while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut &wire[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut &wire[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        server
    };

    let frame = vec![b'x'; 260];
    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(1));
    let mut server = handshake();
    g.bench_function("rustls_buffered", |b| {
        let mut sink = Open(0);
        b.iter(|| {
            server.writer().write_all(black_box(&frame)).unwrap();
            while server.wants_write() {
                server.write_tls(&mut sink).unwrap();
            }
        })
    });
    let server = handshake();
    let version = server.protocol_version().unwrap();
    #[allow(deprecated)]
    let secrets = server.dangerous_extract_secrets().unwrap();
    let mut records = Records::new(version, u64::MAX, secrets).unwrap();
    g.bench_function("own_record_layer", |b| {
        let (mut sink, mut scratch) = (Open(0), Vec::new());
        b.iter(|| {
            scratch.clear();
            records.seal(APPLICATION_DATA, black_box(&frame), &mut scratch).unwrap();
            sink.write_all(&scratch).unwrap();
        })
    });
    g.bench_function("plaintext_write_of_the_same_frame", |b| {
        let mut sink = Open(0);
        b.iter(|| sink.write_all(black_box(&frame)).unwrap())
    });
    g.finish();
}

#[cfg(feature = "tls")]
criterion_group!(benches, fanout, tls_record);
#[cfg(not(feature = "tls"))]
criterion_group!(benches, fanout);
criterion_main!(benches);
