//! The upstream thread: connect (tungstenite's client, over rustls for `wss://`),
//! subscribe, read until the connection dies, reconnect on a jittered exponential
//! backoff, subscribe again. It owns the socket; the ticker only reads the [`Book`].
//!
//! Rules:
//! - Liveness: any frame from the exchange (a price, a heartbeat, a ping, a pong) proves
//!   the link alive. Silent for half the bound, it is pinged; silent for the whole bound
//!   (`--source-timeout`), it is dead: closed and reconnected.
//! - A connection older than the exchange's limit (Binance: 24 h) is replaced before
//!   the exchange cuts it, without backoff.
//! - Every message is parsed with the exchange's pure parser and counted by kind;
//!   malformed and unknown ones are skipped. A price is offered to the book after the
//!   parse, under that symbol's lock only.
//! - While disconnected the book says so, and every price reads as stale.

use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, Message, WebSocket};

use super::{Book, Event, Offer, PriceUpdate, UpstreamConfig};
use crate::backoff::{self, Backoff, BackoffPolicy};
use crate::metrics::{Metrics, SourceMessageKind};
use crate::symbols::spec::SymbolSpec;
use crate::ticker::prices::Quote;

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Bound on resolving, connecting and the TLS + WebSocket handshakes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one blocking read waits before the thread looks at the clock and `stop`.
const READ_POLL: Duration = Duration::from_millis(100);
/// Reconnect pacing: 250 ms doubling to 10 s, ±20 %.
const BACKOFF: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(10),
    jitter_percent: 20,
};
/// Exchange messages are small; a huge one is a broken or hostile upstream.
const MAX_MESSAGE: usize = 1 << 20;

/// Why a connection could not be made (or the configuration cannot work).
#[derive(Debug)]
pub enum ConnectError {
    Url(String),
    CaFile {
        path: PathBuf,
        error: String,
    },
    Resolve(String),
    Tcp(io::Error),
    /// The server's certificate is not signed by a trusted CA (or not for this name).
    Untrusted(String),
    Tls(String),
    Handshake(String),
    Timeout,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => write!(f, "bad source URL: {e}"),
            ConnectError::CaFile { path, error } => {
                write!(f, "cannot use --source-ca {}: {error}", path.display())
            }
            ConnectError::Resolve(e) => write!(f, "cannot resolve the host: {e}"),
            ConnectError::Tcp(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Untrusted(e) => {
                write!(f, "TLS certificate not trusted ({e}); a private CA needs --source-ca PEM")
            }
            ConnectError::Tls(e) => write!(f, "TLS failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            ConnectError::Timeout => write!(f, "handshake timed out"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The TLS client: the web PKI roots, plus the CAs of `ca` when given.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, ConnectError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let ca_error = |error: String| ConnectError::CaFile { path: path.to_owned(), error };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no certificate in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An exchange feed: the book and, while active, the thread that fills it.
pub struct Upstream {
    config: UpstreamConfig,
    book: Arc<Book>,
    metrics: Arc<Metrics>,
    tls: Arc<rustls::ClientConfig>,
    thread: Option<UpstreamThread>,
    quotes: Vec<Quote>,
}

impl Upstream {
    /// Checks the configuration (URL, CA file) and logs the symbols the exchange cannot
    /// have; connects only on [`PriceSource::activate`].
    pub fn new(
        config: UpstreamConfig,
        symbols: &[SymbolSpec],
        metrics: Arc<Metrics>,
    ) -> Result<Upstream, ConnectError> {
        super::check_url(&config.url).map_err(ConnectError::Url)?;
        let tls = tls_config(config.ca.as_deref())?;
        let book = Arc::new(Book::new(symbols, config.exchange));
        for symbol in book.unmappable() {
            crate::warn!(
                "source: symbol has no name on the exchange; it stays on its start price, stale",
                source = config.exchange,
                symbol = symbol
            );
        }
        metrics.set_upstream(book.clone());
        Ok(Upstream { config, book, metrics, tls, thread: None, quotes: Vec::new() })
    }

    /// This tick's quotes: a copy of the book, staleness decided now.
    pub(super) fn next_quotes(&mut self) -> &[Quote] {
        self.book.snapshot_into(&mut self.quotes, Instant::now(), self.config.stale_after);
        &self.quotes
    }

    /// Continues from prices published before (a new cluster leader).
    pub(super) fn restore(&self, prices: &[(String, f64)]) {
        self.book.restore(prices);
    }

    pub fn book(&self) -> &Arc<Book> {
        &self.book
    }

    pub(super) fn activate(&mut self) -> std::io::Result<()> {
        if self.thread.is_none() {
            self.thread = Some(spawn(
                self.config.clone(),
                self.tls.clone(),
                self.book.clone(),
                self.metrics.clone(),
            )?);
        }
        Ok(())
    }

    pub(super) fn deactivate(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
        self.book.set_connected(false);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.deactivate();
    }
}

/// A running upstream thread.
pub struct UpstreamThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl UpstreamThread {
    /// Asks the thread to stop. It notices within [`READ_POLL`] while connected, or when
    /// its connect attempt ends; nobody waits for it (a cluster node stepping down must
    /// not stall on a slow handshake). It never touches the book after it noticed.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.handle);
    }
}

/// Starts the thread that keeps `book` filled from the exchange.
pub fn spawn(
    config: UpstreamConfig,
    tls: Arc<ClientConfig>,
    book: Arc<Book>,
    metrics: Arc<Metrics>,
) -> io::Result<UpstreamThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        thread::Builder::new()
            .name("upstream".into())
            .spawn(move || run(&config, &tls, &book, &metrics, &stop))?
    };
    Ok(UpstreamThread { stop, handle })
}

/// How a connection ended.
#[derive(Debug)]
enum Ended {
    Stopped,
    /// Replaced on schedule (Binance's 24 h limit): reconnect at once.
    Rotate,
    Lost(String),
}

fn run(
    config: &UpstreamConfig,
    tls: &Arc<ClientConfig>,
    book: &Book,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let mut backoff = Backoff::new(BACKOFF, backoff::seed());
    let mut connected_before = false;
    crate::info!("source: starting", source = config.exchange, url = config.url);
    while !stop.load(Ordering::Relaxed) {
        if let Err(wait) = backoff.check(Instant::now()) {
            thread::sleep(wait.min(READ_POLL));
            continue;
        }
        let ws = match connect(config, tls) {
            Ok(ws) => ws,
            Err(e) => {
                metrics.source_connect_failures.fetch_add(1, Ordering::Relaxed);
                let retry = backoff.on_failure(Instant::now());
                crate::warn!(
                    "source: cannot connect; retrying",
                    source = config.exchange,
                    url = config.url,
                    error = e,
                    retry_ms = retry.as_millis()
                );
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if connected_before {
            metrics.source_reconnects.fetch_add(1, Ordering::Relaxed);
        }
        connected_before = true;
        backoff.on_success();
        book.reset_sequences();
        book.set_connected(true);
        crate::info!("source: connected", source = config.exchange, url = config.url);
        let ended = session(ws, config, book, metrics, stop);
        if let Ended::Stopped = ended {
            // The owner marked the book disconnected when it stopped us, and may have
            // started a successor since: leave the book alone.
            break;
        }
        book.set_connected(false);
        match ended {
            Ended::Stopped => break,
            Ended::Rotate => {
                crate::info!("source: replacing an old connection", source = config.exchange);
            }
            Ended::Lost(why) => {
                let retry = backoff.on_failure(Instant::now());
                crate::warn!(
                    "source: connection lost; prices stale until it is back",
                    source = config.exchange,
                    reason = why,
                    retry_ms = retry.as_millis()
                );
            }
        }
    }
    crate::info!("source: stopped", source = config.exchange);
}

/// TCP connect (each resolved address in turn), then the TLS and WebSocket handshakes,
/// all bounded by [`CONNECT_TIMEOUT`].
fn connect(config: &UpstreamConfig, tls: &Arc<ClientConfig>) -> Result<Ws, ConnectError> {
    let request =
        config.url.as_str().into_client_request().map_err(|e| ConnectError::Url(e.to_string()))?;
    let uri = request.uri();
    let host = uri.host().ok_or_else(|| ConnectError::Url("no host".into()))?;
    // `[::1]` is the URI form of an IPv6 host; the resolver wants it bare.
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve(format!("{host}: {e}")))?
        .collect();
    let mut last = ConnectError::Resolve(format!("{host}: no address"));
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = ConnectError::Tcp(e),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let io = |e: io::Error| ConnectError::Tcp(e);
    tcp.set_nodelay(true).map_err(io)?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
    tcp.set_write_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
    // The same socket, kept to shorten the read timeout once the handshakes are done.
    let handle = tcp.try_clone().map_err(io)?;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connector = Connector::Rustls(tls.clone());
    match tungstenite::client_tls_with_config(request, tcp, Some(ws_config), Some(connector)) {
        Ok((ws, _response)) => {
            handle.set_read_timeout(Some(READ_POLL)).map_err(io)?;
            Ok(ws)
        }
        Err(HandshakeError::Interrupted(_)) => Err(ConnectError::Timeout),
        Err(HandshakeError::Failure(e)) => Err(classify(e)),
    }
}

/// Names a handshake failure; an untrusted certificate gets its own variant (and log
/// line), since the fix is the user's (`--source-ca`), not a retry.
fn classify(e: tungstenite::Error) -> ConnectError {
    let rustls_error = match &e {
        tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(r)) => Some((**r).clone()),
        tungstenite::Error::Io(io) => {
            io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).cloned()
        }
        _ => None,
    };
    match rustls_error {
        Some(r @ rustls::Error::InvalidCertificate(_)) => ConnectError::Untrusted(r.to_string()),
        Some(r) => ConnectError::Tls(r.to_string()),
        None => match e {
            tungstenite::Error::Io(io)
                if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                ConnectError::Timeout
            }
            tungstenite::Error::Io(io) => ConnectError::Tcp(io),
            other => ConnectError::Handshake(other.to_string()),
        },
    }
}

/// Subscribes, then reads until the connection dies, goes silent, ages out or `stop`.
fn session(
    mut ws: Ws,
    config: &UpstreamConfig,
    book: &Book,
    metrics: &Metrics,
    stop: &AtomicBool,
) -> Ended {
    let exchange = config.exchange;
    let opened = Instant::now();
    if let Err(e) = send_subscribe(&mut ws, config, book) {
        return Ended::Lost(format!("subscribe failed: {e}"));
    }
    let mut last_heard = opened;
    let mut pinged = false;
    let mut checked_silent_symbols = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return Ended::Stopped;
        }
        let now = Instant::now();
        let silent = now.saturating_duration_since(last_heard);
        if silent > config.silence {
            return Ended::Lost(format!("silent for {} ms", silent.as_millis()));
        }
        if silent > config.silence / 2 && !pinged {
            pinged = true;
            let _ = ws.send(Message::Ping(Vec::new().into()));
        }
        if exchange.max_connection_age().is_some_and(|max| now.duration_since(opened) >= max) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return Ended::Rotate;
        }
        if !checked_silent_symbols && now.duration_since(opened) > config.stale_after {
            checked_silent_symbols = true;
            report_silent_symbols(config, book, now);
        }
        let msg = match ws.read() {
            Ok(msg) => msg,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                // A pong tungstenite queued for the exchange's ping goes out here too.
                let _ = ws.flush();
                continue;
            }
            Err(e) => return Ended::Lost(e.to_string()),
        };
        last_heard = Instant::now();
        pinged = false;
        let bytes: &[u8] = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            Message::Close(frame) => {
                return Ended::Lost(match frame {
                    Some(f) => format!("closed by the exchange: {} {}", f.code, f.reason),
                    None => "closed by the exchange".into(),
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if handle_message(bytes, config, book, metrics, last_heard)
            && let Err(e) = send_subscribe(&mut ws, config, book)
        {
            return Ended::Lost(format!("subscribe failed: {e}"));
        }
    }
}

/// Parses and applies one message; `true` when the subscription must be sent again
/// (the exchange refused all of it for one bad symbol).
pub(crate) fn handle_message(
    bytes: &[u8],
    config: &UpstreamConfig,
    book: &Book,
    metrics: &Metrics,
    now: Instant,
) -> bool {
    let exchange = config.exchange;
    match exchange.parse(bytes) {
        Ok(Event::Price(u)) => offer(&u, book, metrics, now),
        Ok(Event::Prices(us)) => {
            for u in &us {
                offer(u, book, metrics, now);
            }
        }
        Ok(Event::Heartbeat) => metrics.source_message(SourceMessageKind::Heartbeat),
        Ok(Event::Control) => metrics.source_message(SourceMessageKind::Control),
        Ok(Event::Rejected { symbol, reason }) => {
            metrics.source_message(SourceMessageKind::Rejected);
            let slot = symbol.as_deref().and_then(|s| book.slot_of(s));
            match slot {
                Some(slot) => {
                    book.mark_unlisted(slot);
                    crate::warn!(
                        "source: the exchange does not list this symbol; it stays on its last price, stale",
                        source = exchange,
                        symbol = book.symbol(slot).unwrap_or("?"),
                        reason = reason
                    );
                    return exchange.rejects_whole_subscribe();
                }
                None => {
                    crate::warn!(
                        "source: the exchange refused a request",
                        source = exchange,
                        reason = reason
                    )
                }
            }
        }
        Err(e) => {
            metrics.source_message(e.message_kind());
            crate::debug!("source: message skipped", source = exchange, error = e);
        }
    }
    false
}

fn offer(u: &PriceUpdate<'_>, book: &Book, metrics: &Metrics, now: Instant) {
    let Some(slot) = book.slot_of(&u.symbol) else {
        // A symbol we did not ask for.
        metrics.source_message(SourceMessageKind::Unknown);
        return;
    };
    match book.offer(slot, u, now, unix_ms(SystemTime::now())) {
        Offer::Taken => metrics.source_message(SourceMessageKind::Price),
        Offer::OutOfOrder => metrics.source_message(SourceMessageKind::OutOfOrder),
    }
}

fn send_subscribe(ws: &mut Ws, config: &UpstreamConfig, book: &Book) -> tungstenite::Result<()> {
    let symbols = book.subscribable();
    if symbols.is_empty() {
        crate::warn!("source: no symbol to subscribe to", source = config.exchange);
        return Ok(());
    }
    let remote: Vec<&str> = symbols.iter().map(|(_, r)| *r).collect();
    for msg in config.exchange.subscribe(&remote) {
        ws.send(Message::text(msg))?;
    }
    crate::info!("source: subscribed", source = config.exchange, symbols = remote.join(","));
    Ok(())
}

/// Once per connection, after `--stale-after`: names the subscribed symbols that never
/// got a price (an exchange that ignores unknown names, like Binance, says nothing else).
fn report_silent_symbols(config: &UpstreamConfig, book: &Book, now: Instant) {
    for s in book.stats(now) {
        if s.updates == 0 && !s.unlisted && s.remote.is_some() {
            crate::warn!(
                "source: no price for this symbol yet; is it listed on the exchange?",
                source = config.exchange,
                symbol = s.symbol,
                exchange_symbol = s.remote.unwrap_or_default()
            );
        }
    }
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
