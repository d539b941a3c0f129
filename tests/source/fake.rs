//! A fake exchange: a tungstenite server on 127.0.0.1 (plain `ws://`, or TLS with a
//! certificate of a test CA) that speaks one exchange's documented subscribe handshake
//! and message formats. Tests publish prices through it, make it flood, go silent, or
//! die and come back on the same port.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::util::PATIENCE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Coinbase,
    Binance,
    Kraken,
}

impl Kind {
    pub fn flag(self) -> &'static str {
        match self {
            Kind::Coinbase => "coinbase",
            Kind::Binance => "binance",
            Kind::Kraken => "kraken",
        }
    }

    /// The exchange's name of our `BTC-USD`-style symbol.
    pub fn remote(self, ours: &str) -> String {
        let (base, quote) = ours.split_once('-').unwrap();
        match self {
            Kind::Coinbase => ours.to_owned(),
            Kind::Binance => format!("{base}{}", if quote == "USD" { "USDT" } else { quote }),
            Kind::Kraken => format!("{base}/{quote}"),
        }
    }

    /// One price message with the exchange's documented field set.
    pub fn price(self, ours: &str, price: f64, ts_ms: u64, seq: u64) -> String {
        let remote = self.remote(ours);
        match self {
            Kind::Coinbase => format!(
                r#"{{"type":"ticker","sequence":{seq},"product_id":"{remote}","price":"{price}","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"{price}","best_bid_size":"0.46688654","best_ask":"{price}","best_ask_size":"1.56637040","side":"buy","time":"{}","trade_id":{seq},"last_size":"0.01"}}"#,
                rfc3339(ts_ms)
            ),
            Kind::Binance => format!(
                r#"{{"e":"trade","E":{ts_ms},"s":"{remote}","t":{seq},"p":"{price}","q":"0.01","T":{ts_ms},"m":true,"M":true}}"#
            ),
            Kind::Kraken => format!(
                r#"{{"channel":"ticker","type":"update","data":[{{"symbol":"{remote}","bid":{price},"bid_qty":0.5,"ask":{price},"ask_qty":0.5,"last":{price},"volume":1234.5,"vwap":{price},"low":{price},"high":{price},"change":0.0,"change_pct":0.0,"timestamp":"{}"}}]}}"#,
                rfc3339(ts_ms)
            ),
        }
    }

    /// What the exchange answers to a subscribe request (`unlisted` products refused).
    fn answers(self, request: &serde_json::Value, unlisted: &[String]) -> Vec<String> {
        match self {
            Kind::Coinbase => {
                let products: Vec<String> = request["product_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if let Some(bad) = products.iter().find(|p| unlisted.contains(p)) {
                    // Coinbase refuses the whole request for one unknown product.
                    return vec![format!(
                        r#"{{"type":"error","message":"Failed to subscribe","reason":"{bad} is not a valid product"}}"#
                    )];
                }
                vec![
                    serde_json::json!({"type":"subscriptions","channels":[
                        {"name":"ticker","product_ids":products},
                        {"name":"heartbeat","product_ids":products}]})
                    .to_string(),
                ]
            }
            Kind::Binance => vec![r#"{"result":null,"id":1}"#.to_owned()],
            Kind::Kraken => request["params"]["symbol"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .map(|s| {
                    if unlisted.iter().any(|u| u == s) {
                        format!(
                            r#"{{"error":"Currency pair not supported {s}","method":"subscribe","success":false,"symbol":"{s}","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}}"#
                        )
                    } else {
                        format!(
                            r#"{{"method":"subscribe","result":{{"channel":"ticker","event_trigger":"trades","snapshot":true,"symbol":"{s}"}},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}}"#
                        )
                    }
                })
                .collect(),
        }
    }

    /// The exchange's liveness message (Binance uses WebSocket pings instead).
    fn heartbeat(self, n: u64) -> Option<Message> {
        match self {
            Kind::Coinbase => Some(Message::text(format!(
                r#"{{"type":"heartbeat","sequence":{n},"last_trade_id":{n},"product_id":"BTC-USD","time":"{}"}}"#,
                rfc3339(now_ms())
            ))),
            Kind::Kraken => Some(Message::text(r#"{"channel":"heartbeat"}"#)),
            Kind::Binance => Some(Message::Ping(Vec::new().into())),
        }
    }
}

/// What the test controls and observes, shared with the connection threads.
#[derive(Default)]
struct Shared {
    /// Every text message any client sent (the subscribe requests).
    received: Mutex<Vec<String>>,
    /// Everything published so far; each connection sends what it has not sent yet.
    published: Mutex<Vec<String>>,
    connections: AtomicUsize,
    /// Silent: no heartbeats, no reads (so no pongs), nothing sent.
    silent: AtomicBool,
    /// Messages per second to flood with (0: none).
    flood_per_sec: AtomicU64,
    flood_sent: AtomicU64,
    unlisted: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct FakeExchange {
    pub kind: Kind,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<Arc<ServerConfig>>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeExchange {
    pub fn start(kind: Kind) -> FakeExchange {
        FakeExchange::start_at(kind, "127.0.0.1:0".parse().unwrap(), None, Arc::default())
    }

    /// With TLS, serving `cert_pem`/`key_pem`.
    pub fn start_tls(kind: Kind, cert_pem: &str, key_pem: &str) -> FakeExchange {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        FakeExchange::start_at(
            kind,
            "127.0.0.1:0".parse().unwrap(),
            Some(Arc::new(config)),
            Arc::default(),
        )
    }

    fn start_at(
        kind: Kind,
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        shared: Arc<Shared>,
    ) -> FakeExchange {
        let (addr, acceptor) = spawn_acceptor(kind, addr, tls.clone(), shared.clone());
        FakeExchange { kind, addr, shared, tls, acceptor: Some(acceptor) }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let host = if self.tls.is_some() { "localhost" } else { "127.0.0.1" };
        format!("{scheme}://{host}:{}/", self.addr.port())
    }

    /// Kills every connection (no close frame) and stops listening.
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
    }

    /// Comes back on the same port, remembering what it was told and saw.
    pub fn revive(&mut self) {
        let (_, acceptor) =
            spawn_acceptor(self.kind, self.addr, self.tls.clone(), self.shared.clone());
        self.acceptor = Some(acceptor);
    }

    pub fn publish(&self, msg: String) {
        self.shared.published.lock().unwrap().push(msg);
    }

    pub fn publish_price(&self, ours: &str, price: f64, ts_ms: u64, seq: u64) {
        self.publish(self.kind.price(ours, price, ts_ms, seq));
    }

    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::Relaxed);
    }

    pub fn flood(&self, per_sec: u64) {
        self.shared.flood_per_sec.store(per_sec, Ordering::Relaxed);
    }

    pub fn flood_sent(&self) -> u64 {
        self.shared.flood_sent.load(Ordering::Relaxed)
    }

    pub fn unlist(&self, remote: &str) {
        self.shared.unlisted.lock().unwrap().push(remote.to_owned());
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> Vec<String> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until clients have sent at least `n` messages; returns them all.
    pub fn wait_received(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "the fake {:?} got only {got:?}", self.kind);
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeExchange {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_acceptor(
    kind: Kind,
    addr: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    shared: Arc<Shared>,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(addr).expect("bind the fake exchange");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    shared.stop.store(false, Ordering::Relaxed);
    (addr, thread::spawn(move || accept_loop(kind, listener, shared, tls)))
}

fn accept_loop(
    kind: Kind,
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<ServerConfig>>,
) {
    let mut conns = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((tcp, _)) => {
                let (shared, tls) = (shared.clone(), tls.clone());
                conns.push(thread::spawn(move || serve(kind, tcp, &shared, tls)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("accept: {e}"),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

trait Stream: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Stream for T {}

fn serve(kind: Kind, tcp: TcpStream, shared: &Shared, tls: Option<Arc<ServerConfig>>) {
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let handle = tcp.try_clone().unwrap();
    let stream: Box<dyn Stream + Send> = match tls {
        Some(config) => Box::new(StreamOwned::new(ServerConnection::new(config).unwrap(), tcp)),
        None => Box::new(tcp),
    };
    let mut ws = match tungstenite::accept(stream) {
        Ok(ws) => ws,
        // A client that refused our certificate, or went away.
        Err(HandshakeError::Failure(_)) | Err(HandshakeError::Interrupted(_)) => return,
    };
    shared.connections.fetch_add(1, Ordering::Relaxed);
    handle.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    if kind == Kind::Kraken {
        let status = r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":12393906104898154338,"system":"online","version":"2.0.4"}]}"#;
        let _ = ws.send(Message::text(status));
    }
    let mut sent = shared.published.lock().unwrap().len();
    let mut subscribed = false;
    let mut beats = 0u64;
    let mut next_beat = Instant::now();
    let mut flood_seq = 1_000_000u64;
    let mut last_flood = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.silent.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        match read_one(&mut ws) {
            Read::Message(text) => {
                shared.received.lock().unwrap().push(text.clone());
                if let Ok(request) = serde_json::from_str::<serde_json::Value>(&text) {
                    let unlisted = shared.unlisted.lock().unwrap().clone();
                    for answer in kind.answers(&request, &unlisted) {
                        let _ = ws.send(Message::text(answer));
                    }
                    subscribed = true;
                }
            }
            Read::Nothing => {}
            Read::Closed => return,
        }
        if !subscribed {
            continue;
        }
        let now = Instant::now();
        if now >= next_beat {
            next_beat = now + Duration::from_millis(200);
            beats += 1;
            if let Some(beat) = kind.heartbeat(beats) {
                let _ = ws.send(beat);
            }
        }
        let pending: Vec<String> = {
            let published = shared.published.lock().unwrap();
            let new = published[sent.min(published.len())..].to_vec();
            sent = published.len();
            new
        };
        for msg in pending {
            if ws.send(Message::text(msg)).is_err() {
                return;
            }
        }
        let rate = shared.flood_per_sec.load(Ordering::Relaxed);
        if rate > 0 {
            // Catch up to `rate` messages per second since the last batch.
            let due = (now.duration_since(last_flood).as_secs_f64() * rate as f64) as u64;
            if due > 0 {
                last_flood = now;
                for _ in 0..due.min(rate) {
                    flood_seq += 1;
                    let price = 40_000.0 + (flood_seq % 1000) as f64 / 100.0;
                    let msg = kind.price("BTC-USD", price, now_ms(), flood_seq);
                    if ws.write(Message::text(msg)).is_err() {
                        return;
                    }
                }
                if ws.flush().is_err() {
                    return;
                }
                shared.flood_sent.fetch_add(due.min(rate), Ordering::Relaxed);
            }
        } else {
            last_flood = now;
        }
    }
}

enum Read {
    Message(String),
    Nothing,
    Closed,
}

fn read_one(ws: &mut WebSocket<Box<dyn Stream + Send>>) -> Read {
    match ws.read() {
        Ok(Message::Text(t)) => Read::Message(t.as_str().to_owned()),
        Ok(Message::Close(_)) => Read::Closed,
        Ok(_) => Read::Nothing,
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Read::Nothing
        }
        Err(_) => Read::Closed,
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

pub use crypto_ticker::source::time::format_rfc3339_ms as rfc3339;
