//! Token exchanges per second that a running server sustains: `C` keep-alive clients,
//! each a thread sending `POST /auth/token` back to back on one connection, for a fixed
//! time; prints the rate and the latency percentiles.
//!
//! ```text
//! cargo build --release
//! target/release/crypto-ticker --addr 127.0.0.1:18090 --db /tmp/x/auth.db &
//! cargo run --release --example token_bench -- 127.0.0.1:18090 API_KEY [CLIENTS=64] [SECONDS=5]
//! ```
//!
//! The API key may also come from `TICKER_BENCH_API_KEY` (then give `-` in its place),
//! which keeps it out of `ps`.
//!
//! `token_bench --in-process DB [THREADS=1] [SECONDS=5]` measures the worker's half
//! alone, without HTTP or the event loop: `Auth::exchange` (SQLite lookup, SHA-256 of
//! the key, signing, the token store, the log line) called back to back by `THREADS`
//! threads, on a fresh database at `DB` with the server's stores and defaults. Send
//! stderr to /dev/null: each exchange logs a line, as in the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--in-process") {
        return in_process(&args[1..]);
    }
    if args.len() < 2 {
        eprintln!("usage: token_bench HOST:PORT API_KEY|- [CLIENTS] [SECONDS]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[0].parse().expect("HOST:PORT");
    let key = match args[1].as_str() {
        "-" => std::env::var("TICKER_BENCH_API_KEY").expect("TICKER_BENCH_API_KEY"),
        k => k.to_owned(),
    };
    let clients: usize = args.get(2).map_or(64, |v| v.parse().expect("CLIENTS"));
    let seconds: u64 = args.get(3).map_or(5, |v| v.parse().expect("SECONDS"));

    let body = format!(r#"{{"api_key":"{key}"}}"#);
    let request = Arc::new(format!(
        "POST /auth/token HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (request, stop) = (request.clone(), stop.clone());
            std::thread::spawn(move || client(addr, &request, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut failures = 0u64;
    for t in threads {
        let (lat, failed) = t.join().expect("client thread");
        latencies.extend(lat);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len() - 1);
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{:.0} tokens/s ({} ok, {failures} failed, {clients} clients, {elapsed:.1} s) \
         latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        latencies.len() as f64 / elapsed,
        latencies.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
    );
}

/// `Auth::admit` and `Auth::exchange` back to back, as the server's loop and workers run
/// them.
fn in_process(args: &[String]) {
    use crypto_ticker::auth::Auth;
    use crypto_ticker::auth::key_store::SqliteKeyStore;
    use crypto_ticker::auth::ratelimit::LoginLimiter;
    use crypto_ticker::auth::token::{MemoryTokenStore, TokenKey, Tokens};
    use crypto_ticker::config::Config;
    use crypto_ticker::metrics::Metrics;

    let db = std::path::PathBuf::from(args.first().expect("DB path"));
    let threads: usize = args.get(1).map_or(1, |v| v.parse().expect("THREADS"));
    let seconds: u64 = args.get(2).map_or(5, |v| v.parse().expect("SECONDS"));
    let config = Config::default();
    let tokens = Tokens::new(
        TokenKey::random().expect("randomness"),
        config.token_ttl,
        Box::new(MemoryTokenStore::new(config.token_capacity, config.per_key_bound())),
    );
    let auth = Arc::new(Auth::new(
        tokens,
        Box::new(SqliteKeyStore::new(db)),
        Box::new(LoginLimiter::new(config.login_failures_per_minute, Duration::from_secs(60))),
        config.login_concurrency,
        Arc::new(Metrics::new()),
    ));
    let (demo, _) = auth.prepare().expect("database");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (auth, stop, key) = (auth.clone(), stop.clone(), demo.key.clone());
            std::thread::spawn(move || {
                let ip = std::net::IpAddr::from([127, 0, 0, 1]);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let permit = auth.admit(ip).expect("a lookup slot");
                    auth.exchange(&key, permit).expect("a token");
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().expect("thread")).sum();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{:.0} exchanges/s in process ({threads} threads, {elapsed:.1} s): {:.1} µs each per thread",
        total as f64 / elapsed,
        elapsed * 1e6 * threads as f64 / total as f64
    );
}

/// One keep-alive client: requests until `stop`; the latency of each 200, and how many
/// requests got anything else.
fn client(addr: SocketAddr, request: &str, stop: &AtomicBool) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut conn: Option<TcpStream> = None;
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let s = match &mut conn {
            Some(s) => s,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn.insert(s)
                }
                Err(_) => {
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match exchange(s, request.as_bytes(), &mut buf) {
            Some(200) => latencies.push(sent.elapsed()),
            Some(_) => failed += 1,
            None => {
                failed += 1;
                conn = None;
            }
        }
    }
    (latencies, failed)
}

/// Sends one request and reads one response with a `Content-Length` body; its status.
fn exchange(s: &mut TcpStream, request: &[u8], buf: &mut [u8]) -> Option<u16> {
    s.write_all(request).ok()?;
    let mut filled = 0;
    loop {
        let n = s.read(&mut buf[filled..]).ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        let text = std::str::from_utf8(&buf[..filled]).ok()?;
        let Some(head_end) = text.find("\r\n\r\n") else { continue };
        let head = &text[..head_end];
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if filled >= head_end + 4 + len {
            return Some(status);
        }
        if filled == buf.len() {
            return None;
        }
    }
}
