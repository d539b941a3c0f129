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

criterion_group!(benches, fanout);
criterion_main!(benches);
