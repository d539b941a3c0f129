//! Criterion benches of the pure protocol pieces: HTTP request parsing, WebSocket frame
//! encoding and decoding, token issue and verification, building one tick's frame (plain,
//! compressed, changes only), and what a hostile 32 KB `subscribe` costs the event loop.
//! `cargo bench --bench protocol`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crypto_ticker::auth::ids::{Actor, ApiKeyId};
use crypto_ticker::auth::token::{TokenKey, Tokens};
use crypto_ticker::control::{self, ClientMessage};
use crypto_ticker::http::request::{Limits, parse_request};
use crypto_ticker::symbols::parse_symbols;
use crypto_ticker::symbols::sets::SetRegistry as Registry;
use crypto_ticker::symbols::sets::{ActiveCache, ActiveSets, SetRegistry};
use crypto_ticker::symbols::{Change, SymbolTable, choose};
use crypto_ticker::ticker::prices::{PriceModel, Rng};
use crypto_ticker::ticker::variants::{TickBuilder, Wanted};
use crypto_ticker::ticker::{Tick, unix_micros};
use crypto_ticker::ws::codec::Decoder;
use crypto_ticker::ws::deflate::Deflater;
use crypto_ticker::ws::frame::{OpCode, encode_client_frame, encode_frame};

fn http_parse(c: &mut Criterion) {
    let req = b"GET /ws/ticker HTTP/1.1\r\nHost: localhost:8081\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Authorization: Bearer sc2BtyNnwuSX_3QbU58NC4RsnlCjVNV26I3vWIECh5g=.unVpBZB5bVYPUdC7MXGqgdY9ImC4ornNRL-h_OpRYkM=\r\n\r\n";
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function("parse_upgrade_request", |b| {
        b.iter(|| parse_request(black_box(req), &Limits::default()))
    });
    g.finish();
}

fn ws_decode(c: &mut Criterion) {
    let frame = encode_client_frame(true, OpCode::Text, br#"{"type":"ping"}"#, [1, 2, 3, 4]);
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode_masked_text", |b| {
        let mut d = Decoder::new(32 * 1024);
        b.iter(|| {
            let mut buf = frame.clone();
            black_box(d.decode(&mut buf).ok());
        })
    });
    g.finish();
}

fn token_verify(c: &mut Criterion) {
    let store = Tokens::in_memory(
        TokenKey::from_secret("bench-key-0123456789").unwrap(),
        Duration::from_secs(3600),
        1000,
    );
    let actor = Actor { id: "user:demo".into(), user_id: "demo".into(), role: "user".into() };
    let token = store.issue(actor, ApiKeyId(1), "127.0.0.1".into(), 0).unwrap().token;
    c.bench_function("token/verify", |b| b.iter(|| store.verify(black_box(&token), 1)));
    c.bench_function("token/issue", |b| {
        // A fresh table per batch keeps it from filling up.
        b.iter_batched_ref(
            || {
                Tokens::in_memory(
                    TokenKey::from_secret("bench-key-0123456789").unwrap(),
                    Duration::from_secs(3600),
                    1 << 20,
                )
            },
            |store| {
                store.issue(
                    Actor { id: "user:demo".into(), user_id: "demo".into(), role: "user".into() },
                    ApiKeyId(1),
                    "127.0.0.1".into(),
                    0,
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn ws_encode(c: &mut Criterion) {
    let payload = vec![b'x'; 250];
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("encode_server_text_frame", |b| {
        b.iter(|| encode_frame(OpCode::Text, black_box(&payload)))
    });
    g.finish();
}

fn tick_build(c: &mut Criterion) {
    let symbols = parse_symbols("BTC-USD:42000,ETH-USD:2500,SOL-USD:95").unwrap();
    let mut model = PriceModel::new(&symbols, Rng::from_seed(1));
    let none = ActiveSets::default();
    let len = Tick::build(0, 0, model.quotes(), &none).frame.len();
    let mut g = c.benchmark_group("ticker");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("step_and_build_frame", |b| {
        let mut seq = 0;
        b.iter(|| {
            model.step();
            seq += 1;
            Tick::build(seq, unix_micros(SystemTime::now()), model.quotes(), &none)
        })
    });
    g.finish();
}

/// One tick at 1,000 symbols: every symbol only, then with symbol sets in use: 10 sets
/// of 3 (issue 12's case b), 1,000 random sets of 5 of the first 100 (case c), and the
/// configured bound (1,024 distinct sets of 100 symbols, the defaults of
/// `--max-symbol-sets` and `--max-session-symbols`).
fn tick_build_sets(c: &mut Criterion) {
    let spec: String =
        (0..1000).map(|i| format!("S{i}-USD:{}", 100 + i)).collect::<Vec<_>>().join(",");
    let symbols = parse_symbols(&spec).unwrap();
    let table = SymbolTable::new(symbols.iter().map(|s| s.name.clone()));
    let mut model = PriceModel::new(&symbols, Rng::from_seed(1));
    let mut rng = Rng::from_seed(7);
    let mut pick = |k: usize, of: usize| -> Vec<String> {
        (0..k).map(|_| format!("S{}-USD", rng.next_u64() as usize % of)).collect()
    };
    let cases: Vec<(&str, Vec<Vec<String>>)> = vec![
        ("all_symbols_only", vec![]),
        ("10_sets_of_3", (0..10).map(|_| pick(3, 30)).collect()),
        ("1000_sets_of_5_of_100", (0..1000).map(|_| pick(5, 100)).collect()),
        ("1024_sets_of_100", (0..1024).map(|_| pick(100, 1000)).collect()),
    ];
    let mut g = c.benchmark_group("ticker_1000_symbols");
    g.sample_size(20);
    for (name, sets) in cases {
        let registry = SetRegistry::new(4096);
        let leases: Vec<_> = sets
            .iter()
            .map(|names| {
                registry.acquire(table.resolve(names.iter().map(String::as_str)).unwrap(), None)
            })
            .collect();
        let mut cache = ActiveCache::default();
        let active = registry.active(&mut cache).clone();
        g.bench_function(name, |b| {
            let mut seq = 0;
            b.iter(|| {
                model.step();
                seq += 1;
                Tick::build(seq, unix_micros(SystemTime::now()), model.quotes(), &active)
            })
        });
        drop(leases);
    }
    g.finish();
}

/// Compressing one tick's frame (permessage-deflate, level `deflate::LEVEL`) at 3, 30
/// and 100 symbols: what each distinct frame costs the ticker once per tick.
fn deflate_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate");
    for n in [3usize, 30, 100] {
        let spec: String =
            (0..n).map(|i| format!("S{i}-USD:{}", 100 + i)).collect::<Vec<_>>().join(",");
        let mut model = PriceModel::new(&parse_symbols(&spec).unwrap(), Rng::from_seed(1));
        model.step();
        let frame =
            Tick::build(1, unix_micros(SystemTime::now()), model.quotes(), &ActiveSets::default())
                .frame;
        let payload = crypto_ticker::ws::frame::payload_of(&frame).to_vec();
        let mut deflater = Deflater::default();
        let z = deflater.frame(OpCode::Text, &payload).unwrap();
        println!(
            "deflate {n} symbols: {} -> {} bytes ({:.1} %)",
            frame.len(),
            z.len(),
            100.0 * z.len() as f64 / frame.len() as f64
        );
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(format!("{n}_symbols"), |b| {
            b.iter(|| deflater.frame(OpCode::Text, black_box(&payload)))
        });
    }
    g.finish();
}

/// One tick's build with every kind of session open (plain, compressed, changes only,
/// both): 100 symbols for everyone at activity 1 and 0.02, and the worst case at the
/// default caps (1,024 distinct sets of 100 of 1,000 symbols, every price moving), where
/// the compression budget (half the 10 ms tick) bounds the build and the rest of the
/// frames go uncompressed.
fn tick_build_encoded(c: &mut Criterion) {
    let wanted = Wanted { plain: true, deflated: true, delta: true, delta_deflated: true };
    let mut g = c.benchmark_group("ticker_encoded");
    g.sample_size(20);
    let cases: [(&str, usize, f64, usize); 3] = [
        ("100_symbols_activity_1", 100, 1.0, 0),
        ("100_symbols_activity_0.02", 100, 0.02, 0),
        ("1024_sets_of_100_of_1000", 1000, 1.0, 1024),
    ];
    for (name, symbols, activity, sets) in cases {
        let spec: String =
            (0..symbols).map(|i| format!("S{i}-USD:{}", 100 + i)).collect::<Vec<_>>().join(",");
        let parsed = parse_symbols(&spec).unwrap();
        let table = SymbolTable::new(parsed.iter().map(|s| s.name.clone()));
        let mut model = PriceModel::new(&parsed, Rng::from_seed(1)).with_activity(activity);
        let mut rng = Rng::from_seed(7);
        let registry = SetRegistry::new(4096);
        let leases: Vec<_> = (0..sets)
            .map(|_| {
                let names: Vec<String> = (0..100)
                    .map(|_| format!("S{}-USD", rng.next_u64() as usize % symbols))
                    .collect();
                registry.acquire(table.resolve(names.iter().map(String::as_str)).unwrap(), None)
            })
            .collect();
        let mut cache = ActiveCache::default();
        let active = registry.active(&mut cache).clone();
        let mut builder = TickBuilder::new(Duration::from_millis(10));
        let (mut seq, mut skipped, mut builds) = (0u64, 0u64, 0u64);
        g.bench_function(name, |b| {
            b.iter(|| {
                model.step();
                seq += 1;
                let now = unix_micros(SystemTime::now());
                let built = builder.build(seq, now, model.quotes(), &active, wanted);
                skipped += built.deflate_skipped;
                builds += 1;
                built.tick
            })
        });
        println!(
            "{name}: {:.1} frames left uncompressed per tick",
            skipped as f64 / builds.max(1) as f64
        );
        drop(leases);
    }
    g.finish();
}

/// One 32 KB `subscribe` as the event loop handles it: parse, resolve against the
/// table, and the answer. The worst cases: a table of 1,000 symbols (so a list may name
/// 1,000) filled with long unknown names, and a list of thousands of short unknown
/// names (refused by the length cap before any lookup).
fn hostile_subscribe(c: &mut Criterion) {
    let table = SymbolTable::new((0..1000).map(|i| format!("S{i}-USD")));
    let registry = Registry::new(1024);
    let message = |names: Vec<String>| {
        let m = serde_json::json!({ "type": "subscribe", "symbols": names }).to_string();
        assert!(m.len() <= 32 * 1024, "{} bytes", m.len());
        m.into_bytes()
    };
    let long_unknown =
        message((0..1000).map(|i| format!("UNKNOWN-{i:04}-{}", "x".repeat(15))).collect());
    let many_unknown = message((0..4000).map(|i| format!("{i:x}")).collect());
    let mut g = c.benchmark_group("subscribe_32k");
    for (name, text) in
        [("1000_long_unknown_names", long_unknown), ("4000_short_unknown_names", many_unknown)]
    {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let Ok(ClientMessage::Subscribe(names)) = control::parse(black_box(&text)) else {
                    unreachable!("a subscribe")
                };
                let change = Change::Subscribe(&names);
                let refused = choose(&table, &registry, 100, None, None, change).unwrap_err();
                refused.to_json()
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    hostile_subscribe,
    http_parse,
    ws_decode,
    ws_encode,
    token_verify,
    tick_build,
    tick_build_sets,
    deflate_frame,
    tick_build_encoded
);
criterion_main!(benches);
