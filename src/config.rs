//! Flags and environment variables → [`Config`], validated once at start.
//!
//! Every option is one row of [`OPTIONS`]: flag, environment variable, default, help and
//! the function that applies it. Defaults apply first, then the environment, then flags,
//! so a flag always wins. `--help` is generated from the same table, so it cannot drift.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::token::TokenKey;
use crate::http::cors::AllowedOrigins;
use crate::http::request::Limits;
use crate::log::{Format, Level};
use crate::source::{Exchange, SourceKind, UpstreamConfig};

/// One traded symbol and its start price.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    pub name: String,
    pub start_price: f64,
}

/// The whole validated configuration of the server.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// `listen(2)` backlog: connections the kernel queues before the loop accepts them.
    pub backlog: usize,
    pub db_path: PathBuf,
    pub public_dir: PathBuf,
    pub tick_interval: Duration,
    pub symbols: Vec<SymbolSpec>,
    /// Most symbols one session may subscribe to by name.
    pub max_session_symbols: usize,
    /// Most distinct symbol sets served at once (each costs one frame per tick).
    pub max_symbol_sets: usize,
    /// Client text messages a session may send per second (a burst of as many).
    pub control_rate: u32,
    pub allowed_origins: AllowedOrigins,
    pub token_ttl: Duration,
    pub token_capacity: usize,
    /// Live tokens one API key may hold; issuing beyond it retires that key's oldest.
    pub tokens_per_key: usize,
    pub workers: usize,
    pub io_threads: usize,
    /// `None`: derived from the file-descriptor limit at start.
    pub max_connections: Option<usize>,
    pub seed: Option<u64>,
    pub http_limits: Limits,
    pub max_message: usize,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub ping_after: Duration,
    pub dead_after: Duration,
    pub slow_consumer_timeout: Duration,
    /// How long a WebSocket being closed by the server may take to deliver its close frame.
    pub close_linger: Duration,
    /// `SO_SNDBUF` for WebSocket sessions; 0 leaves the kernel's autotuning.
    pub send_buffer: usize,
    pub login_failures_per_minute: u32,
    pub shutdown_grace: Duration,
    pub log_level: Level,
    pub log_format: Format,
    /// Cluster mode: the Redis every node shares (`None`: one node, SQLite + memory).
    pub redis: Option<String>,
    /// TLS: the PEM certificate chain (leaf first) and private key; both or neither.
    /// With them the port speaks only TLS; SIGHUP reads both files again.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// TLS: threads that run the handshakes' crypto (the event loops never do).
    pub tls_threads: usize,
    /// The HMAC key for tokens; `None`: a random key made at start (tokens die with the
    /// process). Environment only (see [`ENV_ONLY`]).
    pub token_key: Option<TokenKey>,
    /// Where prices come from: the random walk (default) or an exchange's stream.
    pub source: SourceKind,
    /// The exchange's endpoint (`None`: its public one).
    pub source_url: Option<String>,
    /// Extra trusted CAs (PEM) for the exchange's TLS.
    pub source_ca: Option<PathBuf>,
    /// Silence after which the upstream connection counts as dead (`None`: the
    /// exchange's own bound).
    pub source_timeout: Option<Duration>,
    /// A symbol without an update for this long is marked stale.
    pub stale_after: Duration,
}

impl Config {
    /// The upstream settings for `exchange`, defaults filled in.
    pub fn upstream_config(&self, exchange: Exchange) -> UpstreamConfig {
        UpstreamConfig {
            exchange,
            url: self.source_url.clone().unwrap_or_else(|| exchange.default_url().to_owned()),
            ca: self.source_ca.clone(),
            silence: self.source_timeout.unwrap_or_else(|| exchange.default_silence()),
            stale_after: self.stale_after,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            backlog: 1,
            db_path: PathBuf::new(),
            public_dir: PathBuf::new(),
            tick_interval: Duration::ZERO,
            symbols: Vec::new(),
            max_session_symbols: 1,
            max_symbol_sets: 1,
            control_rate: 1,
            allowed_origins: AllowedOrigins::Any,
            token_ttl: Duration::ZERO,
            token_capacity: 0,
            tokens_per_key: 1,
            workers: 1,
            io_threads: 1,
            max_connections: None,
            seed: None,
            http_limits: Limits::default(),
            max_message: 0,
            head_timeout: Duration::ZERO,
            keepalive_timeout: Duration::ZERO,
            ping_after: Duration::ZERO,
            dead_after: Duration::ZERO,
            slow_consumer_timeout: Duration::ZERO,
            close_linger: Duration::ZERO,
            send_buffer: 0,
            login_failures_per_minute: 0,
            shutdown_grace: Duration::ZERO,
            log_level: Level::Info,
            log_format: Format::Text,
            token_key: None,
            redis: None,
            tls_cert: None,
            tls_key: None,
            tls_threads: 1,
            source: SourceKind::Sim,
            source_url: None,
            source_ca: None,
            source_timeout: None,
            stale_after: Duration::ZERO,
        };
        for opt in OPTIONS {
            let default = opt.default_value();
            // The defaults are literals in this file and covered by a unit test.
            (opt.apply)(&mut config, &default)
                .unwrap_or_else(|e| panic!("default of --{}: {e}", opt.flag));
        }
        config
    }
}

/// A configuration error, with the option it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    Help,
    Version,
}

type Apply = fn(&mut Config, &str) -> Result<(), String>;

/// One configurable option.
pub struct OptionSpec {
    pub flag: &'static str,
    pub env: &'static str,
    default: &'static str,
    pub help: &'static str,
    apply: Apply,
}

impl OptionSpec {
    pub fn default_value(&self) -> String {
        match self.default {
            CORES => available_cores().to_string(),
            HALF_CORES => available_cores().div_ceil(2).to_string(),
            SOMAXCONN => system_somaxconn().to_string(),
            other => other.to_owned(),
        }
    }
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

/// The option table. The first eight rows are fixed by the SPEC (scripts rely on them).
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        flag: "addr",
        env: "TICKER_ADDR",
        default: "0.0.0.0:8081",
        help: "address to listen on (port 0 picks a free port; the log says which)",
        apply: |c, v| {
            c.addr = v.parse().map_err(|_| format!("not an address: {v:?}"))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "db",
        env: "TICKER_DB",
        default: "./data/auth.db",
        help: "SQLite database of API keys (created with its folder on first start)",
        apply: |c, v| {
            c.db_path = non_empty_path(v)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "public",
        env: "TICKER_PUBLIC",
        default: "./public",
        help: "folder of static files served at /",
        apply: |c, v| {
            c.public_dir = non_empty_path(v)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "tick",
        env: "TICKER_TICK",
        default: "10ms",
        help: "tick interval (1ms to 1h)",
        apply: |c, v| {
            c.tick_interval = duration_in(v, Duration::from_millis(1), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "symbols",
        env: "TICKER_SYMBOLS",
        default: "BTC-USD:42000,ETH-USD:2500,SOL-USD:95",
        help: "symbols and start prices, SYMBOL:PRICE,... in display order",
        apply: |c, v| {
            c.symbols = parse_symbols(v)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "symbols-file",
        env: "TICKER_SYMBOLS_FILE",
        default: "",
        help: "read the symbols from a file, one SYMBOL:PRICE per line (# comments); replaces --symbols",
        apply: |c, v| {
            if !v.is_empty() {
                let text = std::fs::read_to_string(v).map_err(|e| format!("{v}: {e}"))?;
                c.symbols = parse_symbol_lines(&text).map_err(|e| format!("{v}: {e}"))?;
            }
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-session-symbols",
        env: "TICKER_MAX_SESSION_SYMBOLS",
        default: "100",
        help: "most symbols one session may subscribe to by name (a session that never subscribes gets all)",
        apply: |c, v| {
            c.max_session_symbols = count_in(v, 1, crate::symbols::MAX_SYMBOLS)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-symbol-sets",
        env: "TICKER_MAX_SYMBOL_SETS",
        default: "1024",
        help: "most distinct symbol sets served at once (each is one more frame per tick)",
        apply: |c, v| {
            c.max_symbol_sets = count_in(v, 1, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "control-rate",
        env: "TICKER_CONTROL_RATE",
        default: "10",
        help: "client messages per second a session may send; beyond it, close 1008 \"rate limit\"",
        apply: |c, v| {
            c.control_rate = count_in(v, 1, 100_000)? as u32;
            Ok(())
        },
    },
    OptionSpec {
        flag: "allowed-origins",
        env: "TICKER_ALLOWED_ORIGINS",
        default: "*",
        help: "origins allowed for CORS and WebSocket upgrades: * or a comma list",
        apply: |c, v| {
            c.allowed_origins = AllowedOrigins::parse(v)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "token-ttl",
        env: "TICKER_TOKEN_TTL",
        default: "1h",
        help: "lifetime of issued tokens",
        apply: |c, v| {
            c.token_ttl = duration_in(v, Duration::from_secs(1), Duration::from_secs(30 * 86400))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "workers",
        env: "TICKER_WORKERS",
        default: CORES,
        help: "worker threads for blocking work (SQLite, token signing, file reads)",
        apply: |c, v| {
            c.workers = count_in(v, 1, 256)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "io-threads",
        env: "TICKER_IO_THREADS",
        default: "1",
        help: "event-loop threads; each owns its share of the connections",
        apply: |c, v| {
            c.io_threads = count_in(v, 1, 64)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-connections",
        env: "TICKER_MAX_CONNECTIONS",
        default: "auto",
        help: "open connections before new ones get 503 (auto: file-descriptor limit minus a reserve)",
        apply: |c, v| {
            c.max_connections = if v == "auto" { None } else { Some(count_in(v, 1, 10_000_000)?) };
            Ok(())
        },
    },
    OptionSpec {
        flag: "backlog",
        env: "TICKER_BACKLOG",
        default: SOMAXCONN,
        help: "listen backlog: connections the kernel holds before they are accepted \
               (capped by net.core.somaxconn)",
        apply: |c, v| {
            c.backlog = count_in(v, 1, i32::MAX as usize)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "seed",
        env: "TICKER_SEED",
        default: "random",
        help: "seed of the price random walk (a number makes runs reproducible)",
        apply: |c, v| {
            c.seed = if v == "random" {
                None
            } else {
                Some(v.parse().map_err(|_| format!("not a number: {v:?}"))?)
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-head",
        env: "TICKER_MAX_HEAD",
        default: "16384",
        help: "largest request head in bytes (431 beyond)",
        apply: |c, v| {
            c.http_limits.max_head = count_in(v, 256, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-body",
        env: "TICKER_MAX_BODY",
        default: "16384",
        help: "largest request body in bytes (413 beyond)",
        apply: |c, v| {
            c.http_limits.max_body = count_in(v, 0, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-headers",
        env: "TICKER_MAX_HEADERS",
        default: "100",
        help: "most header fields in a request (431 beyond)",
        apply: |c, v| {
            c.http_limits.max_headers = count_in(v, 1, 1000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-message",
        env: "TICKER_MAX_MESSAGE",
        default: "32768",
        help: "largest WebSocket message from a client in bytes (close 1009 beyond)",
        apply: |c, v| {
            c.max_message = count_in(v, 125, 1 << 24)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "head-timeout",
        env: "TICKER_HEAD_TIMEOUT",
        default: "10s",
        help: "close a connection whose request head is incomplete for this long",
        apply: |c, v| {
            c.head_timeout = duration_in(v, Duration::from_millis(100), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "keepalive-timeout",
        env: "TICKER_KEEPALIVE_TIMEOUT",
        default: "30s",
        help: "close an idle keep-alive HTTP connection after this long",
        apply: |c, v| {
            c.keepalive_timeout =
                duration_in(v, Duration::from_millis(100), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "ping-after",
        env: "TICKER_PING_AFTER",
        default: "30s",
        help: "send a WebSocket ping after this long without a frame from the client",
        apply: |c, v| {
            c.ping_after = duration_in(v, Duration::from_millis(100), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "dead-after",
        env: "TICKER_DEAD_AFTER",
        default: "60s",
        help: "close (1001) a WebSocket after this long without a frame from the client",
        apply: |c, v| {
            c.dead_after = duration_in(v, Duration::from_millis(100), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "slow-consumer-timeout",
        env: "TICKER_SLOW_CONSUMER_TIMEOUT",
        default: "10s",
        help: "close (1008) a subscriber that makes no write progress for this long",
        apply: |c, v| {
            c.slow_consumer_timeout =
                duration_in(v, Duration::from_millis(100), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "send-buffer",
        env: "TICKER_SEND_BUFFER",
        default: "65536",
        help: "kernel send buffer per WebSocket session in bytes (0: kernel autotuning, up to 4 MiB of stale ticks per stalled subscriber)",
        apply: |c, v| {
            c.send_buffer = count_in(v, 0, 64 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "close-linger",
        env: "TICKER_CLOSE_LINGER",
        default: "2s",
        help: "time a closing WebSocket gets to take its close frame (behind a stalled socket) before it is dropped",
        apply: |c, v| {
            c.close_linger = duration_in(v, Duration::ZERO, Duration::from_secs(600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "token-capacity",
        env: "TICKER_TOKEN_CAPACITY",
        default: "100000",
        help: "live tokens held at most (503 beyond)",
        apply: |c, v| {
            c.token_capacity = count_in(v, 1, 100_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "tokens-per-key",
        env: "TICKER_TOKENS_PER_KEY",
        default: "10000",
        help: "live tokens one API key may hold; issuing beyond it retires that key's oldest \
               token (sessions already open stay open)",
        apply: |c, v| {
            c.tokens_per_key = count_in(v, 1, 100_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "login-failures",
        env: "TICKER_LOGIN_FAILURES",
        default: "10",
        help: "failed /auth/token attempts per client IP per minute before 429 (0: no limit)",
        apply: |c, v| {
            c.login_failures_per_minute = count_in(v, 0, 1_000_000)? as u32;
            Ok(())
        },
    },
    OptionSpec {
        flag: "shutdown-grace",
        env: "TICKER_SHUTDOWN_GRACE",
        default: "3s",
        help: "on SIGINT/SIGTERM, time given to sessions to finish their close handshake",
        apply: |c, v| {
            c.shutdown_grace = duration_in(v, Duration::ZERO, Duration::from_secs(4))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "log-level",
        env: "TICKER_LOG",
        default: "info",
        help: "error, warn, info or debug (RUST_LOG is read too when TICKER_LOG is unset)",
        apply: |c, v| {
            c.log_level = Level::parse(v).ok_or_else(|| format!("not a log level: {v:?}"))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "log-format",
        env: "TICKER_LOG_FORMAT",
        default: "text",
        help: "text (key=value) or json, one line per event on stderr",
        apply: |c, v| {
            c.log_format = Format::parse(v).ok_or_else(|| format!("not a log format: {v:?}"))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "redis",
        env: "TICKER_REDIS",
        default: NO_REDIS,
        help: "cluster mode: redis://HOST:PORT/DB shared by every node (keys, tokens, \
               login limit, one ticking leader); without it one node, SQLite + memory",
        apply: |c, v| {
            c.redis = match v {
                NO_REDIS | "" => None,
                url if url.starts_with("redis://") || url.starts_with("unix://") => {
                    Some(url.to_owned())
                }
                other => return Err(format!("not a redis:// URL: {other:?}")),
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "tls-cert",
        env: "TICKER_TLS_CERT",
        default: NO_TLS,
        help: "PEM certificate chain, leaf first: the port then speaks only TLS (1.2, 1.3); \
               needs --tls-key; SIGHUP reloads both files",
        apply: |c, v| {
            c.tls_cert = optional_path(v, NO_TLS);
            Ok(())
        },
    },
    OptionSpec {
        flag: "tls-key",
        env: "TICKER_TLS_KEY",
        default: NO_TLS,
        help: "PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert",
        apply: |c, v| {
            c.tls_key = optional_path(v, NO_TLS);
            Ok(())
        },
    },
    OptionSpec {
        flag: "tls-threads",
        env: "TICKER_TLS_THREADS",
        default: HALF_CORES,
        help: "threads that run TLS handshakes (key exchange, signature); the event loops \
               only move their bytes",
        apply: |c, v| {
            c.tls_threads = count_in(v, 1, 64)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "source",
        env: "TICKER_SOURCE",
        default: "sim",
        help: "where prices come from: sim (the random walk), coinbase, binance or kraken \
               (the exchange's public WebSocket stream)",
        apply: |c, v| {
            c.source = SourceKind::parse(v)
                .ok_or_else(|| format!("not a source: {v:?} (sim, coinbase, binance, kraken)"))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "source-url",
        env: "TICKER_SOURCE_URL",
        default: EXCHANGE_DEFAULT,
        help: "the exchange's WebSocket endpoint, ws:// or wss:// (a proxy, a test server)",
        apply: |c, v| {
            c.source_url = if v == EXCHANGE_DEFAULT || v.is_empty() {
                None
            } else {
                crate::source::check_url(v)?;
                Some(v.to_owned())
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "source-ca",
        env: "TICKER_SOURCE_CA",
        default: WEB_PKI,
        help: "PEM file of CAs to trust for the exchange's TLS, besides the web PKI roots",
        apply: |c, v| {
            c.source_ca = optional_path(v, WEB_PKI);
            Ok(())
        },
    },
    OptionSpec {
        flag: "source-timeout",
        env: "TICKER_SOURCE_TIMEOUT",
        default: "auto",
        help: "treat an upstream silent this long as dead and reconnect (auto: 5s for \
               coinbase and kraken, which send heartbeats every second; 30s for binance)",
        apply: |c, v| {
            c.source_timeout = if v == "auto" {
                None
            } else {
                Some(duration_in(v, Duration::from_millis(200), Duration::from_secs(3600))?)
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "stale-after",
        env: "TICKER_STALE_AFTER",
        default: "10s",
        help: "mark a symbol stale when the upstream sent no price for it this long",
        apply: |c, v| {
            c.stale_after = duration_in(v, Duration::from_millis(10), Duration::from_secs(86400))?;
            Ok(())
        },
    },
];

/// Marker default of `--source-url`: the exchange's public endpoint.
const EXCHANGE_DEFAULT: &str = "the exchange's public endpoint";
/// Marker default of `--source-ca`: only the web PKI roots.
const WEB_PKI: &str = "none (web PKI roots)";

/// Marker default of `--tls-cert`/`--tls-key`: plain TCP.
const NO_TLS: &str = "none (plain TCP)";

/// A path option whose default marker (or an empty value) means "not set".
fn optional_path(v: &str, marker: &str) -> Option<PathBuf> {
    (v != marker && !v.is_empty()).then(|| PathBuf::from(v))
}

/// Options read only from the environment: secrets, which a flag would show to every
/// user of the machine through `ps`.
pub const ENV_ONLY: &[OptionSpec] = &[OptionSpec {
    flag: "token-key",
    env: "TICKER_TOKEN_KEY",
    default: RANDOM_KEY,
    help: "HMAC key for tokens (at least 16 bytes); without it tokens die with the process",
    apply: |c, v| {
        if v != RANDOM_KEY {
            c.token_key = Some(TokenKey::from_secret(v).map_err(|e| e.to_string())?);
        }
        Ok(())
    },
}];

/// Marker default of `--redis`: no cluster.
const NO_REDIS: &str = "none (one node)";

/// Marker default of the token key: made at random at start.
const RANDOM_KEY: &str = "random at start";

/// Parses `args` (without the program name) and the environment read through `env`.
pub fn parse_args<E>(args: &[String], env: E) -> Result<Command, ConfigError>
where
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::default();
    for opt in OPTIONS.iter().chain(ENV_ONLY) {
        let value = env(opt.env).or_else(|| {
            // RUST_LOG is the conventional fallback for the log level.
            (opt.env == "TICKER_LOG").then(|| env("RUST_LOG")).flatten()
        });
        if let Some(value) = value {
            (opt.apply)(&mut config, value.trim())
                .map_err(|e| ConfigError(format!("{}: {e}", opt.env)))?;
        }
    }
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(name) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!("unexpected argument {arg:?} (see --help)")));
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (name, None),
        };
        if let Some(secret) = ENV_ONLY.iter().find(|o| o.flag == name) {
            return Err(ConfigError(format!(
                "--{name} is not accepted on the command line; set {} instead",
                secret.env
            )));
        }
        let opt = OPTIONS
            .iter()
            .find(|o| o.flag == name)
            .ok_or_else(|| ConfigError(format!("unknown option --{name} (see --help)")))?;
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| ConfigError(format!("--{name} needs a value")))?
            }
        };
        (opt.apply)(&mut config, value.trim())
            .map_err(|e| ConfigError(format!("--{name}: {e}")))?;
        i += 1;
    }
    if config.dead_after <= config.ping_after {
        return Err(ConfigError("--dead-after must be longer than --ping-after".into()));
    }
    if config.tls_cert.is_some() != config.tls_key.is_some() {
        return Err(ConfigError(
            "--tls-cert and --tls-key go together: give both or neither".into(),
        ));
    }
    if config.source == SourceKind::Sim
        && (config.source_url.is_some() || config.source_ca.is_some())
    {
        return Err(ConfigError(
            "--source-url and --source-ca need --source coinbase|binance|kraken".into(),
        ));
    }
    check_built_in(&config)?;
    Ok(Command::Serve(Box::new(config)))
}

/// Refuses the options of a part this binary was built without (a small-host build,
/// `--no-default-features`), instead of starting without it.
fn check_built_in(config: &Config) -> Result<(), ConfigError> {
    let wanted = [
        ("--tls-cert/--tls-key", "tls", config.tls_cert.is_some(), cfg!(feature = "tls")),
        ("--redis", "cluster", config.redis.is_some(), cfg!(feature = "cluster")),
        ("--source", "exchanges", config.source != SourceKind::Sim, cfg!(feature = "exchanges")),
    ];
    match wanted.iter().find(|(_, _, asked, built)| *asked && !*built) {
        Some((flag, feature, ..)) => Err(ConfigError(format!("{flag}: {}", not_built_in(feature)))),
        None => Ok(()),
    }
}

/// The optional parts this binary was built with, for `--version`.
pub fn built_in_parts() -> String {
    let parts = [
        ("tls", cfg!(feature = "tls")),
        ("cluster", cfg!(feature = "cluster")),
        ("exchanges", cfg!(feature = "exchanges")),
    ];
    let built: Vec<&str> = parts.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
    if built.is_empty() { "no optional parts".to_owned() } else { built.join(", ") }
}

/// What a missing part says: which feature it needs and how to get it.
pub fn not_built_in(feature: &str) -> String {
    format!(
        "this build has no `{feature}` (built with --no-default-features); \
         `cargo build --release` builds every part"
    )
}

/// The rows of [`OPTIONS`] named in `flags`, from the environment and then from `args`
/// (`--flag value` or `--flag=value`), for subcommands that share a few of the server's
/// options (the `keys` CLI's `--db`). Returns the configuration and the other arguments.
pub fn parse_subset<E>(
    args: &[String],
    env: E,
    flags: &[&str],
) -> Result<(Config, Vec<String>), ConfigError>
where
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::default();
    let rows: Vec<&OptionSpec> = OPTIONS.iter().filter(|o| flags.contains(&o.flag)).collect();
    for opt in &rows {
        if let Some(value) = env(opt.env) {
            (opt.apply)(&mut config, value.trim())
                .map_err(|e| ConfigError(format!("{}: {e}", opt.env)))?;
        }
    }
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.strip_prefix("--").map(|n| n.split_once('=')) {
            Some(Some((n, v))) => (n, Some(v.to_owned())),
            Some(None) => (&arg[2..], None),
            None => ("", None),
        };
        let Some(opt) = rows.iter().find(|o| !name.is_empty() && o.flag == name) else {
            rest.push(arg.clone());
            continue;
        };
        let value = match inline {
            Some(v) => v,
            None => {
                it.next().cloned().ok_or_else(|| ConfigError(format!("--{name} needs a value")))?
            }
        };
        (opt.apply)(&mut config, value.trim())
            .map_err(|e| ConfigError(format!("--{name}: {e}")))?;
    }
    Ok((config, rest))
}

/// The `--help` text, generated from [`OPTIONS`] and [`ENV_ONLY`].
pub fn help_text() -> String {
    let mut out = String::from(
        "crypto-ticker: authenticated WebSocket price ticker\n\n\
         USAGE:\n    crypto-ticker [OPTIONS]          serve (every option has a default)\n    \
         crypto-ticker keys <COMMAND>     manage API keys (crypto-ticker keys --help)\n    \
         crypto-ticker source-check --source NAME   try a price source (--help)\n\n\
         OPTIONS (flag, environment variable, default):\n",
    );
    for opt in OPTIONS {
        out.push_str(&format!(
            "    --{:<24} {:<30} [default: {}]\n        {}\n",
            format!("{} <value>", opt.flag),
            opt.env,
            opt.default_value(),
            opt.help
        ));
    }
    for opt in ENV_ONLY {
        out.push_str(&format!(
            "    {:<26} {:<30} [default: {}]\n        {}\n",
            "(environment only)",
            opt.env,
            opt.default_value(),
            opt.help
        ));
    }
    out.push_str("    -h, --help / -V, --version\n");
    out
}

/// Parses `10ms`, `2s`, `5m`, `1h`. A unit is required: `10` alone is ambiguous.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 =
        number.parse().map_err(|_| format!("not a duration: {v:?} (use e.g. 10ms, 2s, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("not a duration: {v:?} (units: ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration out of range: {v:?}"))
}

fn duration_in(v: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d < min || d > max {
        return Err(format!("{v:?} is outside {min:?}..={max:?}"));
    }
    Ok(d)
}

fn count_in(v: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = v.parse().map_err(|_| format!("not a whole number: {v:?}"))?;
    if n < min || n > max {
        return Err(format!("{n} is outside {min}..={max}"));
    }
    Ok(n)
}

fn non_empty_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(v))
}

/// Parses `BTC-USD:42000,ETH-USD:2500`: names of `[A-Za-z0-9._-]`, positive finite prices.
pub fn parse_symbols(v: &str) -> Result<Vec<SymbolSpec>, String> {
    parse_symbol_items(v.split(','))
}

/// Parses a symbols file: one `SYMBOL:PRICE` per line; blank lines and lines starting
/// with `#` are skipped.
pub fn parse_symbol_lines(text: &str) -> Result<Vec<SymbolSpec>, String> {
    parse_symbol_items(text.lines().filter(|l| !l.trim_start().starts_with('#')))
}

fn parse_symbol_items<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<SymbolSpec>, String> {
    let mut symbols: Vec<SymbolSpec> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in items.map(str::trim).filter(|s| !s.is_empty()) {
        let (name, price) =
            item.split_once(':').ok_or_else(|| format!("expected SYMBOL:PRICE, got {item:?}"))?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(format!("bad symbol name {name:?}"));
        }
        let start_price: f64 =
            price.trim().parse().map_err(|_| format!("bad price in {item:?}"))?;
        if !start_price.is_finite() || start_price <= 0.0 || start_price > 1e12 {
            return Err(format!("price out of range in {item:?}"));
        }
        if !seen.insert(name) {
            return Err(format!("symbol {name} listed twice"));
        }
        if symbols.len() == crate::symbols::MAX_SYMBOLS {
            return Err(format!("more than {} symbols", crate::symbols::MAX_SYMBOLS));
        }
        symbols.push(SymbolSpec { name: name.to_owned(), start_price });
    }
    if symbols.is_empty() {
        return Err("no symbols".into());
    }
    Ok(symbols)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse_args(&args, |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))? {
            Command::Serve(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_specs() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:8081");
        assert_eq!(c.db_path, PathBuf::from("./data/auth.db"));
        assert_eq!(c.public_dir, PathBuf::from("./public"));
        assert_eq!(c.tick_interval, Duration::from_millis(10));
        assert_eq!(c.symbols.len(), 3);
        assert_eq!(c.symbols[0], SymbolSpec { name: "BTC-USD".into(), start_price: 42000.0 });
        assert_eq!(c.token_ttl, Duration::from_secs(3600));
        assert_eq!(c.workers, available_cores());
        assert_eq!(c.http_limits.max_head, 16384);
        assert_eq!(c.max_message, 32768);
        assert_eq!(c.slow_consumer_timeout, Duration::from_secs(10));
        assert_eq!(c.backlog, system_somaxconn());
        assert_eq!(c.tokens_per_key, 10_000);
        assert_eq!(c.tls_threads, available_cores().div_ceil(2));
    }

    #[test]
    fn the_backlog_and_the_per_key_token_bound_are_options() {
        let c = parse(&["--backlog", "512"], &[("TICKER_TOKENS_PER_KEY", "100")]).unwrap();
        assert_eq!((c.backlog, c.tokens_per_key), (512, 100));
        let c = parse(&[], &[("TICKER_BACKLOG", "64")]).unwrap();
        assert_eq!(c.backlog, 64);
        assert!(parse(&["--backlog", "0"], &[]).unwrap_err().0.starts_with("--backlog"));
        assert!(parse(&["--backlog", "4294967296"], &[]).is_err(), "listen(2) takes an int");
        assert!(parse(&["--tokens-per-key", "0"], &[]).is_err());
        assert!((1..=i32::MAX as usize).contains(&system_somaxconn()));
    }

    #[test]
    #[cfg(feature = "tls")]
    fn tls_takes_a_certificate_and_a_key_together() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!((c.tls_cert, c.tls_key), (None, None));
        let c = parse(&["--tls-cert", "c.pem"], &[("TICKER_TLS_KEY", "k.pem")]).unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
        let alone = parse(&["--tls-cert", "c.pem"], &[]).unwrap_err();
        assert!(alone.0.contains("--tls-key"), "{alone}");
        assert!(parse(&[], &[("TICKER_TLS_KEY", "k.pem")]).is_err());
    }

    #[test]
    #[cfg(feature = "exchanges")]
    fn the_price_source_is_sim_unless_an_exchange_is_named() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!((c.source, c.stale_after), (SourceKind::Sim, Duration::from_secs(10)));
        let c = parse(
            &["--source", "coinbase", "--source-url", "ws://127.0.0.1:9/x"],
            &[("TICKER_STALE_AFTER", "2s"), ("TICKER_SOURCE_CA", "ca.pem")],
        )
        .unwrap();
        assert_eq!(c.source, SourceKind::Exchange(Exchange::Coinbase));
        let up = c.upstream_config(Exchange::Coinbase);
        assert_eq!(up.url, "ws://127.0.0.1:9/x");
        assert_eq!((up.silence, up.stale_after), (Duration::from_secs(5), Duration::from_secs(2)));
        assert_eq!(up.ca, Some(PathBuf::from("ca.pem")));
        let c = parse(&[], &[("TICKER_SOURCE", "kraken")]).unwrap();
        assert_eq!(c.upstream_config(Exchange::Kraken).url, "wss://ws.kraken.com/v2");
        assert!(parse(&["--source", "ftx"], &[]).is_err());
        assert!(parse(&["--source", "binance", "--source-url", "http://x"], &[]).is_err());
        assert!(parse(&["--source-url", "wss://x/"], &[]).unwrap_err().0.contains("--source"));
    }

    #[test]
    fn flags_override_environment_which_overrides_defaults() {
        let c =
            parse(&["--tick", "20ms"], &[("TICKER_TICK", "5s"), ("TICKER_ADDR", "127.0.0.1:0")])
                .unwrap();
        assert_eq!(c.tick_interval, Duration::from_millis(20));
        assert_eq!(c.addr.to_string(), "127.0.0.1:0");
        let c = parse(&["--token-ttl=2m"], &[]).unwrap();
        assert_eq!(c.token_ttl, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_name_the_option() {
        let err = parse(&["--tick", "10"], &[]).unwrap_err();
        assert!(err.0.starts_with("--tick"), "{err}");
        let err = parse(&[], &[("TICKER_SYMBOLS", "BTC:abc")]).unwrap_err();
        assert!(err.0.starts_with("TICKER_SYMBOLS"), "{err}");
        assert!(parse(&["--nope", "1"], &[]).is_err());
        assert!(parse(&["--addr"], &[]).is_err());
        assert!(parse(&["--symbols", "A:1,A:2"], &[]).is_err());
    }

    #[test]
    fn the_token_key_comes_from_the_environment_only() {
        assert!(parse(&[], &[]).unwrap().token_key.is_none());
        let c = parse(&[], &[("TICKER_TOKEN_KEY", "0123456789abcdef")]).unwrap();
        assert!(c.token_key.is_some());
        assert!(parse(&[], &[("TICKER_TOKEN_KEY", "short")]).unwrap_err().0.contains("16"));
        let err = parse(&["--token-key", "0123456789abcdef"], &[]).unwrap_err();
        assert!(err.0.contains("TICKER_TOKEN_KEY"), "{err}");
    }

    #[test]
    fn a_subset_reads_its_rows_and_leaves_the_rest() {
        let args: Vec<String> =
            ["list", "--db", "/tmp/x.db", "--user", "u"].iter().map(|s| s.to_string()).collect();
        let (c, rest) = parse_subset(&args, |_| None, &["db"]).unwrap();
        assert_eq!(c.db_path, PathBuf::from("/tmp/x.db"));
        assert_eq!(rest, ["list", "--user", "u"]);
        let env = |k: &str| (k == "TICKER_DB").then(|| "/tmp/env.db".to_string());
        let (c, _) = parse_subset(&[], env, &["db"]).unwrap();
        assert_eq!(c.db_path, PathBuf::from("/tmp/env.db"));
    }

    #[test]
    fn help_lists_every_option_and_its_variable() {
        let help = help_text();
        for opt in OPTIONS {
            assert!(help.contains(&format!("--{}", opt.flag)));
            assert!(help.contains(opt.env));
        }
        for opt in ENV_ONLY {
            assert!(help.contains(opt.env));
        }
    }
}
