//! The option table: every option's flag, environment variable, `--help` group,
//! default, help text and parser, one row each, and the [`Config`] built from them
//! ([`super::table`] says how a row becomes a field, a row of [`OPTIONS`] and a
//! default).
//!
//! A default is a value as a user would type it (`10ms`, `auto`), or a marker for a
//! value of this machine ([`CORES`], [`HALF_CORES`], [`SOMAXCONN`]) resolved at start.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::help::Group;
use super::redis::{DEFAULT_MASTER, check_redis_url, parse_master, parse_sentinels};
use super::table::options;
use super::value::{
    ValueError, bytes_in, count_in, duration_in, keyword_or_count, keyword_or_duration,
    listen_addr, non_empty_path,
};
use crate::auth::token::TokenKey;
use crate::http::cors::AllowedOrigins;
use crate::http::forwarded::TrustedProxies;
use crate::log::{Format, Level};
use crate::source::SourceKind;
use crate::symbols::spec::{SymbolSpec, parse_symbol_lines, parse_symbols};
use crate::ws::deflate::Compression;

type Apply = fn(&mut Config, &str) -> Result<(), ValueError>;

/// One configurable option.
pub struct OptionSpec {
    pub flag: &'static str,
    pub env: &'static str,
    /// The `--help` section it is listed in.
    pub group: Group,
    default: &'static str,
    pub help: &'static str,
    pub(super) apply: Apply,
}

impl OptionSpec {
    /// The default as `--help` shows it, markers resolved for this machine.
    pub fn default_value(&self) -> String {
        resolve(self.default)
    }
}

/// `default` with a marker replaced by this machine's value.
fn resolve(default: &str) -> String {
    match default {
        CORES => available_cores().to_string(),
        HALF_CORES => available_cores().div_ceil(2).to_string(),
        SOMAXCONN => system_somaxconn().to_string(),
        other => other.to_owned(),
    }
}

/// A field's starting value: its row's default, parsed by its row. The defaults are
/// literals in the table and a unit test parses every one, so a refusal here is a bug
/// in the table, not in anything a user gave.
///
/// A function pointer, not inlined: one copy per field type, not one per row inlined
/// into `Config::default` (that was 17 KB of the binary).
#[inline(never)]
fn initial<T, E: fmt::Display>(flag: &str, default: &str, parse: fn(&str) -> Result<T, E>) -> T {
    parse(&resolve(default)).unwrap_or_else(|e| panic!("default of --{flag}: {e}"))
}

/// Marker default: the number of cores of this machine.
const CORES: &str = "<cores>";
/// Marker default: half the cores of this machine, rounded up.
const HALF_CORES: &str = "<half the cores>";
/// Marker default: the system's `net.core.somaxconn`.
const SOMAXCONN: &str = "<somaxconn>";
/// The backlog when `/proc/sys/net/core/somaxconn` cannot be read (Linux's default
/// since 5.4).
const FALLBACK_SOMAXCONN: usize = 4096;

/// Marker default of `--tokens-per-key`: [`super::derived_tokens_per_key`].
const PER_KEY_AUTO: &str = "auto";
/// Marker default of `--redis`: no cluster.
const NO_REDIS: &str = "none (one node)";
/// Marker default of `--redis-sentinels`: no Sentinels.
const NO_SENTINELS: &str = "none";
/// Marker default of `--tls-cert`/`--tls-key`: plain TCP.
const NO_TLS: &str = "none (plain TCP)";
/// Marker default of `--source-url`: the exchange's public endpoint.
const EXCHANGE_DEFAULT: &str = "the exchange's public endpoint";
/// Marker default of `--source-ca`: only the web PKI roots.
const WEB_PKI: &str = "none (web PKI roots)";
/// Marker default of the token key: made at random at start.
const RANDOM_KEY: &str = "random at start";

options! {
    /// The whole validated configuration of the server.
    #[derive(Debug, Clone)]
    pub struct Config;

    field addr: SocketAddr {
        flag: "addr", env: "TICKER_ADDR", group: Server, default: "0.0.0.0:8081",
        help: "address to listen on, IP:PORT (0.0.0.0 is every interface; port 0 picks a free \
               port, the log says which)",
        parse: listen_addr,
    }
    field db_path: PathBuf {
        flag: "db", env: "TICKER_DB", group: Auth, default: "./data/auth.db",
        help: "SQLite database of API keys (created with its folder on first start)",
        parse: non_empty_path,
    }
    field public_dir: PathBuf {
        flag: "public", env: "TICKER_PUBLIC", group: Server, default: "./public",
        help: "folder of static files served at /",
        parse: non_empty_path,
    }
    field tick_interval: Duration {
        flag: "tick", env: "TICKER_TICK", group: Prices, default: "10ms",
        help: "tick interval (1ms to 1h)",
        parse: |v| duration_in(v, Duration::from_millis(1), Duration::from_secs(3600)),
    }
    field symbols: Vec<SymbolSpec> {
        flag: "symbols", env: "TICKER_SYMBOLS", group: Prices,
        default: "BTC-USD:42000,ETH-USD:2500,SOL-USD:95",
        help: "symbols and start prices, SYMBOL:PRICE,... in display order",
        parse: parse_symbols,
    }
    extra {
        flag: "symbols-file", env: "TICKER_SYMBOLS_FILE", group: Prices, default: "",
        help: "read the symbols from a file, one SYMBOL:PRICE per line (# comments); \
               replaces --symbols",
        apply: |c, v| {
            if !v.is_empty() {
                let text =
                    std::fs::read_to_string(v).map_err(|e| format!("cannot read {v:?}: {e}"))?;
                c.symbols = parse_symbol_lines(&text).map_err(|e| format!("{v}: {e}"))?;
            }
            Ok(())
        },
    }
    /// Most symbols one session may subscribe to by name.
    field max_session_symbols: usize {
        flag: "max-session-symbols", env: "TICKER_MAX_SESSION_SYMBOLS", group: Subscriptions,
        default: "100",
        help: "most symbols one session may subscribe to by name (a session that never \
               subscribes gets all)",
        parse: |v| count_in(v, 1, crate::symbols::MAX_SYMBOLS),
    }
    /// Most distinct symbol sets served at once (each costs one frame per tick).
    field max_symbol_sets: usize {
        flag: "max-symbol-sets", env: "TICKER_MAX_SYMBOL_SETS", group: Subscriptions,
        default: "1024",
        help: "most distinct symbol sets served at once (each is one more frame per tick)",
        parse: |v| count_in(v, 1, 1 << 20),
    }
    /// Client text messages a session may send per second (a burst of as many).
    field control_rate: u32 {
        flag: "control-rate", env: "TICKER_CONTROL_RATE", group: Subscriptions, default: "10",
        help: "client frames per second a session may send (control frames included); \
               beyond it, close 1008 \"rate limit\"",
        parse: |v| count_in(v, 1, 100_000).map(|n| n as u32),
    }
    field allowed_origins: AllowedOrigins {
        flag: "allowed-origins", env: "TICKER_ALLOWED_ORIGINS", group: Server, default: "*",
        help: "origins allowed for CORS and WebSocket upgrades: * or a comma list",
        parse: AllowedOrigins::parse,
    }
    field token_ttl: Duration {
        flag: "token-ttl", env: "TICKER_TOKEN_TTL", group: Auth, default: "1h",
        help: "lifetime of issued tokens",
        parse: |v| duration_in(v, Duration::from_secs(1), Duration::from_secs(30 * 86400)),
    }
    field workers: usize {
        flag: "workers", env: "TICKER_WORKERS", group: Server, default: CORES,
        help: "worker threads for blocking work (SQLite, token signing, file reads)",
        parse: |v| count_in(v, 1, 256),
    }
    field io_threads: usize {
        flag: "io-threads", env: "TICKER_IO_THREADS", group: Server, default: "1",
        help: "event-loop threads; each owns its share of the connections",
        parse: |v| count_in(v, 1, 64),
    }
    /// `None`: derived from the file-descriptor limit at start.
    field max_connections: Option<usize> {
        flag: "max-connections", env: "TICKER_MAX_CONNECTIONS", group: Limits, default: "auto",
        help: "open connections before new ones get 503 (auto: file-descriptor limit minus a \
               reserve)",
        parse: |v| keyword_or_count(v, "auto", 1, 10_000_000),
    }
    /// Open WebSocket sessions one API key may hold on this node (`None`: unlimited).
    field max_sessions_per_key: Option<usize> {
        flag: "max-sessions-per-key", env: "TICKER_MAX_SESSIONS_PER_KEY", group: Limits,
        default: "unlimited",
        help: "open WebSocket sessions one API key may hold; beyond it the upgrade gets 503",
        parse: |v| keyword_or_count(v, "unlimited", 1, 10_000_000),
    }
    /// Open WebSocket sessions from one client address on this node (`None`: unlimited).
    field max_sessions_per_ip: Option<usize> {
        flag: "max-sessions-per-ip", env: "TICKER_MAX_SESSIONS_PER_IP", group: Limits,
        default: "unlimited",
        help: "open WebSocket sessions from one client address; beyond it the upgrade gets 503",
        parse: |v| keyword_or_count(v, "unlimited", 1, 10_000_000),
    }
    /// `listen(2)` backlog: connections the kernel queues before the loop accepts them.
    field backlog: usize {
        flag: "backlog", env: "TICKER_BACKLOG", group: Server, default: SOMAXCONN,
        help: "listen backlog: connections the kernel holds before they are accepted \
               (capped by net.core.somaxconn)",
        parse: |v| count_in(v, 1, i32::MAX as usize),
    }
    field seed: Option<u64> {
        flag: "seed", env: "TICKER_SEED", group: Prices, default: "random",
        help: "seed of the price random walk (a number makes runs reproducible)",
        parse: parse_seed,
    }
    /// The request head bound ([`Config::http_limits`]).
    field max_head: usize {
        flag: "max-head", env: "TICKER_MAX_HEAD", group: Limits, default: "16384",
        help: "largest request head in bytes (431 beyond)",
        parse: |v| bytes_in(v, 256, 1 << 20),
    }
    /// The request body bound ([`Config::http_limits`]).
    field max_body: usize {
        flag: "max-body", env: "TICKER_MAX_BODY", group: Limits, default: "16384",
        help: "largest request body in bytes (413 beyond)",
        parse: |v| bytes_in(v, 0, 1 << 20),
    }
    /// The bound on header fields in a request ([`Config::http_limits`]).
    field max_headers: usize {
        flag: "max-headers", env: "TICKER_MAX_HEADERS", group: Limits, default: "100",
        help: "most header fields in a request (431 beyond)",
        parse: |v| count_in(v, 1, 1000),
    }
    field max_message: usize {
        flag: "max-message", env: "TICKER_MAX_MESSAGE", group: Limits, default: "32768",
        help: "largest WebSocket message from a client in bytes (close 1009 beyond)",
        parse: |v| bytes_in(v, 125, 1 << 24),
    }
    field head_timeout: Duration {
        flag: "head-timeout", env: "TICKER_HEAD_TIMEOUT", group: Limits, default: "10s",
        help: "close a connection whose request head is incomplete for this long",
        parse: |v| duration_in(v, Duration::from_millis(100), Duration::from_secs(3600)),
    }
    field keepalive_timeout: Duration {
        flag: "keepalive-timeout", env: "TICKER_KEEPALIVE_TIMEOUT", group: Limits,
        default: "30s",
        help: "close an idle keep-alive HTTP connection after this long",
        parse: |v| duration_in(v, Duration::from_millis(100), Duration::from_secs(3600)),
    }
    field ping_after: Duration {
        flag: "ping-after", env: "TICKER_PING_AFTER", group: Limits, default: "30s",
        help: "send a WebSocket ping after this long without a frame from the client",
        parse: |v| duration_in(v, Duration::from_millis(100), Duration::from_secs(3600)),
    }
    field dead_after: Duration {
        flag: "dead-after", env: "TICKER_DEAD_AFTER", group: Limits, default: "60s",
        help: "close (1001) a WebSocket after this long without a frame from the client",
        parse: |v| duration_in(v, Duration::from_millis(100), Duration::from_secs(3600)),
    }
    field slow_consumer_timeout: Duration {
        flag: "slow-consumer-timeout", env: "TICKER_SLOW_CONSUMER_TIMEOUT", group: Limits,
        default: "10s",
        help: "close (1008) a subscriber that makes no write progress for this long",
        parse: |v| duration_in(v, Duration::from_millis(100), Duration::from_secs(3600)),
    }
    /// `SO_SNDBUF` for WebSocket sessions; 0 leaves the kernel's autotuning.
    field send_buffer: usize {
        flag: "send-buffer", env: "TICKER_SEND_BUFFER", group: Limits, default: "65536",
        help: "kernel send buffer per WebSocket session in bytes (0: kernel autotuning, up to \
               4 MiB of stale ticks per stalled subscriber)",
        parse: |v| bytes_in(v, 0, 64 << 20),
    }
    /// How long a WebSocket being closed by the server may take to deliver its close frame.
    field close_linger: Duration {
        flag: "close-linger", env: "TICKER_CLOSE_LINGER", group: Limits, default: "2s",
        help: "time a closing WebSocket gets to take its close frame (behind a stalled socket) \
               before it is dropped",
        parse: |v| duration_in(v, Duration::ZERO, Duration::from_secs(600)),
    }
    field token_capacity: usize {
        flag: "token-capacity", env: "TICKER_TOKEN_CAPACITY", group: Auth, default: "100000",
        help: "live tokens held at most (503 beyond); one node only (a cluster's are in Redis)",
        parse: |v| count_in(v, 2, 100_000_000),
    }
    /// Live tokens one API key may hold; issuing beyond it retires that key's oldest.
    /// `None`: derived from the capacity ([`super::derived_tokens_per_key`]); read it
    /// through [`Config::per_key_bound`].
    field tokens_per_key: Option<usize> {
        flag: "tokens-per-key", env: "TICKER_TOKENS_PER_KEY", group: Auth, default: PER_KEY_AUTO,
        help: "live tokens one API key may hold; issuing beyond it retires that key's oldest \
               token (sessions already open stay open). auto: a tenth of --token-capacity, \
               at most 10000; more than half of --token-capacity is refused",
        parse: |v| keyword_or_count(v, PER_KEY_AUTO, 1, 100_000_000),
    }
    field login_failures_per_minute: u32 {
        flag: "login-failures", env: "TICKER_LOGIN_FAILURES", group: Auth, default: "10",
        help: "failed /auth/token attempts per client address per minute; beyond them a wrong \
               key gets 429 instead of 401 (a valid key always gets its token; 0: no limit)",
        parse: |v| count_in(v, 0, 1_000_000).map(|n| n as u32),
    }
    /// Token exchanges one client address may have waiting or running at once (0: no
    /// bound).
    field login_concurrency: usize {
        flag: "login-concurrency", env: "TICKER_LOGIN_CONCURRENCY", group: Auth,
        default: "1024",
        help: "token exchanges one client address may have waiting or running at once; \
               beyond them 429 with Retry-After: 1 and no key lookup (0: no bound)",
        parse: |v| count_in(v, 0, 1_000_000),
    }
    /// Proxies whose `X-Forwarded-For` names the client (empty: trust nobody).
    field trusted_proxies: TrustedProxies {
        flag: "trusted-proxies", env: "TICKER_TRUSTED_PROXIES", group: Auth, default: "none",
        help: "proxies whose X-Forwarded-For is believed, CIDR,... (e.g. 10.0.0.0/8,::1): a \
               request from one is from the rightmost address in that header that is not a \
               trusted proxy; none: every client is its TCP peer",
        parse: |v| TrustedProxies::parse(v).map_err(|e| ValueError::Refused(e.to_string())),
    }
    field shutdown_grace: Duration {
        flag: "shutdown-grace", env: "TICKER_SHUTDOWN_GRACE", group: Server, default: "3s",
        help: "on SIGINT/SIGTERM, time given to sessions to finish their close handshake",
        parse: |v| duration_in(v, Duration::ZERO, Duration::from_secs(4)),
    }
    field log_level: Level {
        flag: "log-level", env: "TICKER_LOG", group: Logging, default: "info",
        help: "error, warn, info or debug (RUST_LOG is read too when TICKER_LOG is unset)",
        parse: |v| Level::parse(v).ok_or_else(|| expected("error, warn, info or debug", v)),
    }
    field log_format: Format {
        flag: "log-format", env: "TICKER_LOG_FORMAT", group: Logging, default: "text",
        help: "text (key=value) or json, one line per event on stderr",
        parse: |v| Format::parse(v).ok_or_else(|| expected("text or json", v)),
    }
    /// Whether sessions that offer permessage-deflate get compressed frames.
    field compression: Compression {
        flag: "compression", env: "TICKER_COMPRESSION", group: Server, default: "deflate",
        help: "deflate: accept permessage-deflate when a client offers it (frames compressed \
               once per tick for everyone); off: never",
        parse: |v| Compression::parse(v).ok_or_else(|| expected("off or deflate", v)),
    }
    /// Cluster mode: the Redis every node shares (`None`: one node, SQLite + memory).
    /// Its URL; [`Config::redis_target`] is where the cluster looks it up.
    field redis: Option<String> {
        flag: "redis", env: "TICKER_REDIS", group: Cluster, default: NO_REDIS,
        help: "cluster mode: redis://HOST:PORT/DB shared by every node (keys, tokens, \
               login limit, one ticking leader); without it one node, SQLite + memory",
        parse: |v| match v {
            NO_REDIS | "" => Ok(None),
            url => check_redis_url(url).map(Some),
        },
    }
    /// Cluster mode through Redis Sentinel: the Sentinels' `host:port`s (empty: none).
    field redis_sentinels: Vec<String> {
        flag: "redis-sentinels", env: "TICKER_REDIS_SENTINELS", group: Cluster,
        default: NO_SENTINELS,
        help: "cluster mode through Redis Sentinel, instead of --redis: HOST:PORT,... of the \
               Sentinels; every connection asks them for the current master, so the \
               cluster follows a failover",
        parse: |v| match v {
            NO_SENTINELS | "" => Ok(Vec::new()),
            list => parse_sentinels(list),
        },
    }
    /// The master name the Sentinels monitor.
    field redis_master: String {
        flag: "redis-master", env: "TICKER_REDIS_MASTER", group: Cluster,
        default: DEFAULT_MASTER,
        help: "with --redis-sentinels: the name of the master they monitor",
        parse: parse_master,
    }
    /// TLS: the PEM certificate chain (leaf first) and private key; both or neither.
    /// With them the port speaks only TLS; SIGHUP reads both files again.
    field tls_cert: Option<PathBuf> {
        flag: "tls-cert", env: "TICKER_TLS_CERT", group: Tls, default: NO_TLS,
        help: "PEM certificate chain, leaf first: the port then speaks only TLS (1.2, 1.3); \
               needs --tls-key; SIGHUP reloads both files",
        parse: |v| optional_path(v, NO_TLS),
    }
    field tls_key: Option<PathBuf> {
        flag: "tls-key", env: "TICKER_TLS_KEY", group: Tls, default: NO_TLS,
        help: "PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert",
        parse: |v| optional_path(v, NO_TLS),
    }
    /// TLS: threads that run the handshakes' crypto (the event loops never do).
    field tls_threads: usize {
        flag: "tls-threads", env: "TICKER_TLS_THREADS", group: Tls, default: HALF_CORES,
        help: "threads that run TLS handshakes (key exchange, signature); the event loops \
               only move their bytes",
        parse: |v| count_in(v, 1, 64),
    }
    /// Where prices come from: the random walk (default) or an exchange's stream.
    field source: SourceKind {
        flag: "source", env: "TICKER_SOURCE", group: Prices, default: "sim",
        help: "where prices come from: sim (the random walk), coinbase, binance or kraken \
               (the exchange's public WebSocket stream)",
        parse: |v| {
            SourceKind::parse(v).ok_or_else(|| expected("sim, coinbase, binance or kraken", v))
        },
    }
    /// The chance that a simulated symbol's price moves in a tick.
    field sim_activity: f64 {
        flag: "sim-activity", env: "TICKER_SIM_ACTIVITY", group: Prices, default: "1",
        help: "chance, 0 to 1, that a simulated price moves in a tick (1: every price every \
               tick; 0.02: like a quiet real feed)",
        parse: parse_probability,
    }
    /// The exchange's endpoint (`None`: its public one).
    field source_url: Option<String> {
        flag: "source-url", env: "TICKER_SOURCE_URL", group: Prices, default: EXCHANGE_DEFAULT,
        help: "the exchange's WebSocket endpoint, ws:// or wss:// (a proxy, a test server)",
        parse: parse_source_url,
    }
    /// Extra trusted CAs (PEM) for the exchange's TLS.
    field source_ca: Option<PathBuf> {
        flag: "source-ca", env: "TICKER_SOURCE_CA", group: Prices, default: WEB_PKI,
        help: "PEM file of CAs to trust for the exchange's TLS, besides the web PKI roots",
        parse: |v| optional_path(v, WEB_PKI),
    }
    /// Silence after which the upstream connection counts as dead (`None`: the
    /// exchange's own bound).
    field source_timeout: Option<Duration> {
        flag: "source-timeout", env: "TICKER_SOURCE_TIMEOUT", group: Prices, default: "auto",
        help: "treat an upstream silent this long as dead and reconnect (auto: 5s for \
               coinbase and kraken, which send heartbeats every second; 30s for binance)",
        parse: |v| {
            keyword_or_duration(v, "auto", Duration::from_millis(200), Duration::from_secs(3600))
        },
    }
    /// A symbol without an update for this long is marked stale.
    field stale_after: Duration {
        flag: "stale-after", env: "TICKER_STALE_AFTER", group: Prices, default: "10s",
        help: "mark a symbol stale when the upstream sent no price for it this long",
        parse: |v| duration_in(v, Duration::from_millis(10), Duration::from_secs(86400)),
    }
    /// The HMAC key for tokens; `None`: a random key made at start (tokens die with the
    /// process). Environment only (see [`ENV_ONLY`]).
    secret token_key: Option<TokenKey> {
        flag: "token-key", env: "TICKER_TOKEN_KEY", group: Auth, default: RANDOM_KEY,
        help: "HMAC key for tokens (at least 16 bytes); without it tokens die with the process",
        parse: parse_token_key,
    }
}

/// A refusal that says what is accepted.
fn expected(what: &str, got: &str) -> ValueError {
    ValueError::Expected { what: what.to_owned(), got: got.to_owned() }
}

/// A path option whose default marker (or an empty value) means "not set".
fn optional_path(v: &str, marker: &str) -> Result<Option<PathBuf>, ValueError> {
    Ok((v != marker && !v.is_empty()).then(|| PathBuf::from(v)))
}

/// `--sim-activity`: a probability, 0 to 1.
fn parse_probability(v: &str) -> Result<f64, ValueError> {
    match v.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(_) => Err(ValueError::OutOfRange { min: "0".into(), max: "1".into(), got: v.into() }),
        Err(_) => Err(expected("a number from 0 to 1", v)),
    }
}

/// `--seed`: `random`, or a number that makes runs reproducible.
fn parse_seed(v: &str) -> Result<Option<u64>, ValueError> {
    if v == "random" {
        return Ok(None);
    }
    let seed = v.parse().map_err(|_| {
        expected(&format!("random or a whole number between 0 and {}", u64::MAX), v)
    })?;
    Ok(Some(seed))
}

/// `--source-url`: the exchange's public endpoint unless a `ws://` or `wss://` URL.
fn parse_source_url(v: &str) -> Result<Option<String>, ValueError> {
    if v == EXCHANGE_DEFAULT || v.is_empty() {
        return Ok(None);
    }
    crate::source::check_url(v)?;
    Ok(Some(v.to_owned()))
}

/// `TICKER_TOKEN_KEY`: the secret itself is never repeated in a refusal, only its length.
fn parse_token_key(v: &str) -> Result<Option<TokenKey>, ValueError> {
    if v == RANDOM_KEY {
        return Ok(None);
    }
    let key = TokenKey::from_secret(v)
        .map_err(|e| ValueError::Refused(format!("{e} (got {} bytes)", v.len())))?;
    Ok(Some(key))
}

/// The kernel's cap on a listen backlog (`net.core.somaxconn`), or 4096 when it cannot
/// be read (not Linux, no `/proc`).
pub fn system_somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| (1..=i32::MAX as usize).contains(n))
        .unwrap_or(FALLBACK_SOMAXCONN)
}

/// Cores available to this process (1 when unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
