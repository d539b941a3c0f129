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

/// What TLS adds per subscriber per tick, apart from the syscall: rustls encrypting one
/// 260-byte frame into a record (AES-GCM, as negotiated with a rustls client) and handing
/// the ciphertext to a socket that takes everything. The plaintext twin is the `Open`
/// write above.
fn tls_record(c: &mut Criterion) {
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
    // The handshake, in memory.
    while client.is_handshaking() || server.is_handshaking() {
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut &wire[..]).unwrap();
        server.process_new_packets().unwrap();
        let mut wire = Vec::new();
        server.write_tls(&mut wire).unwrap();
        client.read_tls(&mut &wire[..]).unwrap();
        client.process_new_packets().unwrap();
    }
    let mut wire = Vec::new();
    server.write_tls(&mut wire).unwrap();

    let frame = vec![b'x'; 260];
    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encrypt_one_260_byte_frame_and_hand_it_over", |b| {
        let mut sink = Open(0);
        b.iter(|| {
            server.writer().write_all(black_box(&frame)).unwrap();
            while server.wants_write() {
                server.write_tls(&mut sink).unwrap();
            }
        })
    });
    g.bench_function("plaintext_write_of_the_same_frame", |b| {
        let mut sink = Open(0);
        b.iter(|| sink.write_all(black_box(&frame)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, fanout, tls_record);
criterion_main!(benches);
