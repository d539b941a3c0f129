//! Flags and environment variables → [`Config`], validated once at start.
//!
//! Every option is one row of [`OPTIONS`]: flag, environment variable, group, default,
//! help and the function that applies it. Defaults apply first, then the environment,
//! then flags, so a flag always wins. `--help` is generated from the same table, so it
//! cannot drift ([`help`]: grouped by the rows' [`Group`], 100 columns wide).
//!
//! A refused value is a [`ValueError`] from the row's function, and the message names
//! the option as it was given (`--tick` or `TICKER_TICK`), what is accepted in the units
//! a user types, and what was given ([`value`]'s rules). Parsing reads no file but
//! `--symbols-file` and resolves no name: `--addr` takes an IP.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::token::TokenKey;
use crate::http::cors::AllowedOrigins;
use crate::http::forwarded::TrustedProxies;
use crate::http::request::Limits;
use crate::log::{Format, Level};
use crate::redact::redact_url;
use crate::source::{Exchange, SourceKind, UpstreamConfig};

mod help;
mod value;

#[cfg(test)]
pub(crate) use help::too_wide;
pub use help::{Group, WIDTH as HELP_WIDTH, help_text, options_text};
pub use value::{ValueError, duration_in, human_duration, parse_duration};
use value::{
    bytes_in, count_in, keyword_or_count, keyword_or_duration, listen_addr, non_empty_path,
};

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
    /// `None`: derived from the capacity ([`derived_tokens_per_key`]); read it through
    /// [`Config::per_key_bound`].
    pub tokens_per_key: Option<usize>,
    pub workers: usize,
    pub io_threads: usize,
    /// `None`: derived from the file-descriptor limit at start.
    pub max_connections: Option<usize>,
    /// Open WebSocket sessions one API key may hold on this node (`None`: unlimited).
    pub max_sessions_per_key: Option<usize>,
    /// Open WebSocket sessions from one client address on this node (`None`: unlimited).
    pub max_sessions_per_ip: Option<usize>,
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
    /// Token exchanges one client address may have waiting or running at once (0: no
    /// bound).
    pub login_concurrency: usize,
    /// Proxies whose `X-Forwarded-For` names the client (empty: trust nobody).
    pub trusted_proxies: TrustedProxies,
    pub shutdown_grace: Duration,
    pub log_level: Level,
    pub log_format: Format,
    /// Cluster mode: the Redis every node shares (`None`: one node, SQLite + memory).
    /// Its URL; [`Config::redis_target`] is where the cluster looks it up.
    pub redis: Option<String>,
    /// Cluster mode through Redis Sentinel: the Sentinels' `host:port`s (empty: none).
    pub redis_sentinels: Vec<String>,
    /// The master name the Sentinels monitor.
    pub redis_master: String,
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
    /// Live tokens one API key may hold: `--tokens-per-key`, or derived from
    /// `--token-capacity` when it is not set.
    pub fn per_key_bound(&self) -> usize {
        self.tokens_per_key.unwrap_or_else(|| derived_tokens_per_key(self.token_capacity))
    }

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
            tokens_per_key: None,
            workers: 1,
            io_threads: 1,
            max_sessions_per_key: None,
            max_sessions_per_ip: None,
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
            login_concurrency: 0,
            trusted_proxies: TrustedProxies::default(),
            shutdown_grace: Duration::ZERO,
            log_level: Level::Info,
            log_format: Format::Text,
            token_key: None,
            redis: None,
            redis_sentinels: Vec::new(),
            redis_master: DEFAULT_MASTER.to_owned(),
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

type Apply = fn(&mut Config, &str) -> Result<(), ValueError>;

/// One configurable option.
pub struct OptionSpec {
    pub flag: &'static str,
    pub env: &'static str,
    /// The `--help` section it is listed in.
    pub group: Group,
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

/// The option table. The first eight rows' names are fixed (scripts rely on them).
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        flag: "addr",
        env: "TICKER_ADDR",
        group: Group::Server,
        default: "0.0.0.0:8081",
        help: "address to listen on, IP:PORT (0.0.0.0 is every interface; port 0 picks a free \
               port, the log says which)",
        apply: |c, v| {
            c.addr = listen_addr(v)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "db",
        env: "TICKER_DB",
        group: Group::Auth,
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
        group: Group::Server,
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
        group: Group::Prices,
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
        group: Group::Prices,
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
        group: Group::Prices,
        default: "",
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
    },
    OptionSpec {
        flag: "max-session-symbols",
        env: "TICKER_MAX_SESSION_SYMBOLS",
        group: Group::Subscriptions,
        default: "100",
        help: "most symbols one session may subscribe to by name (a session that never \
               subscribes gets all)",
        apply: |c, v| {
            c.max_session_symbols = count_in(v, 1, crate::symbols::MAX_SYMBOLS)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-symbol-sets",
        env: "TICKER_MAX_SYMBOL_SETS",
        group: Group::Subscriptions,
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
        group: Group::Subscriptions,
        default: "10",
        help: "client frames per second a session may send (control frames included); \
               beyond it, close 1008 \"rate limit\"",
        apply: |c, v| {
            c.control_rate = count_in(v, 1, 100_000)? as u32;
            Ok(())
        },
    },
    OptionSpec {
        flag: "allowed-origins",
        env: "TICKER_ALLOWED_ORIGINS",
        group: Group::Server,
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
        group: Group::Auth,
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
        group: Group::Server,
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
        group: Group::Server,
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
        group: Group::Limits,
        default: "auto",
        help: "open connections before new ones get 503 (auto: file-descriptor limit minus a \
               reserve)",
        apply: |c, v| {
            c.max_connections = keyword_or_count(v, "auto", 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-sessions-per-key",
        env: "TICKER_MAX_SESSIONS_PER_KEY",
        group: Group::Limits,
        default: "unlimited",
        help: "open WebSocket sessions one API key may hold; beyond it the upgrade gets 503",
        apply: |c, v| {
            c.max_sessions_per_key = keyword_or_count(v, "unlimited", 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-sessions-per-ip",
        env: "TICKER_MAX_SESSIONS_PER_IP",
        group: Group::Limits,
        default: "unlimited",
        help: "open WebSocket sessions from one client address; beyond it the upgrade gets 503",
        apply: |c, v| {
            c.max_sessions_per_ip = keyword_or_count(v, "unlimited", 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "backlog",
        env: "TICKER_BACKLOG",
        group: Group::Server,
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
        group: Group::Prices,
        default: "random",
        help: "seed of the price random walk (a number makes runs reproducible)",
        apply: |c, v| {
            c.seed = if v == "random" {
                None
            } else {
                Some(v.parse().map_err(|_| ValueError::Expected {
                    what: format!("random or a whole number between 0 and {}", u64::MAX),
                    got: v.to_owned(),
                })?)
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-head",
        env: "TICKER_MAX_HEAD",
        group: Group::Limits,
        default: "16384",
        help: "largest request head in bytes (431 beyond)",
        apply: |c, v| {
            c.http_limits.max_head = bytes_in(v, 256, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-body",
        env: "TICKER_MAX_BODY",
        group: Group::Limits,
        default: "16384",
        help: "largest request body in bytes (413 beyond)",
        apply: |c, v| {
            c.http_limits.max_body = bytes_in(v, 0, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "max-headers",
        env: "TICKER_MAX_HEADERS",
        group: Group::Limits,
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
        group: Group::Limits,
        default: "32768",
        help: "largest WebSocket message from a client in bytes (close 1009 beyond)",
        apply: |c, v| {
            c.max_message = bytes_in(v, 125, 1 << 24)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "head-timeout",
        env: "TICKER_HEAD_TIMEOUT",
        group: Group::Limits,
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
        group: Group::Limits,
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
        group: Group::Limits,
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
        group: Group::Limits,
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
        group: Group::Limits,
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
        group: Group::Limits,
        default: "65536",
        help: "kernel send buffer per WebSocket session in bytes (0: kernel autotuning, up to \
               4 MiB of stale ticks per stalled subscriber)",
        apply: |c, v| {
            c.send_buffer = bytes_in(v, 0, 64 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "close-linger",
        env: "TICKER_CLOSE_LINGER",
        group: Group::Limits,
        default: "2s",
        help: "time a closing WebSocket gets to take its close frame (behind a stalled socket) \
               before it is dropped",
        apply: |c, v| {
            c.close_linger = duration_in(v, Duration::ZERO, Duration::from_secs(600))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "token-capacity",
        env: "TICKER_TOKEN_CAPACITY",
        group: Group::Auth,
        default: "100000",
        help: "live tokens held at most (503 beyond); one node only (a cluster's are in Redis)",
        apply: |c, v| {
            c.token_capacity = count_in(v, 2, 100_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "tokens-per-key",
        env: "TICKER_TOKENS_PER_KEY",
        group: Group::Auth,
        default: PER_KEY_AUTO,
        help: "live tokens one API key may hold; issuing beyond it retires that key's oldest \
               token (sessions already open stay open). auto: a tenth of --token-capacity, \
               at most 10000; more than half of --token-capacity is refused",
        apply: |c, v| {
            c.tokens_per_key = keyword_or_count(v, PER_KEY_AUTO, 1, 100_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "login-failures",
        env: "TICKER_LOGIN_FAILURES",
        group: Group::Auth,
        default: "10",
        help: "failed /auth/token attempts per client address per minute; beyond them a wrong \
               key gets 429 instead of 401 (a valid key always gets its token; 0: no limit)",
        apply: |c, v| {
            c.login_failures_per_minute = count_in(v, 0, 1_000_000)? as u32;
            Ok(())
        },
    },
    OptionSpec {
        flag: "login-concurrency",
        env: "TICKER_LOGIN_CONCURRENCY",
        group: Group::Auth,
        default: "1024",
        help: "token exchanges one client address may have waiting or running at once; \
               beyond them 429 with Retry-After: 1 and no key lookup (0: no bound)",
        apply: |c, v| {
            c.login_concurrency = count_in(v, 0, 1_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "trusted-proxies",
        env: "TICKER_TRUSTED_PROXIES",
        group: Group::Auth,
        default: "none",
        help: "proxies whose X-Forwarded-For is believed, CIDR,... (e.g. 10.0.0.0/8,::1): a \
               request from one is from the rightmost address in that header that is not a \
               trusted proxy; none: every client is its TCP peer",
        apply: |c, v| {
            c.trusted_proxies =
                TrustedProxies::parse(v).map_err(|e| ValueError::Refused(e.to_string()))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "shutdown-grace",
        env: "TICKER_SHUTDOWN_GRACE",
        group: Group::Server,
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
        group: Group::Logging,
        default: "info",
        help: "error, warn, info or debug (RUST_LOG is read too when TICKER_LOG is unset)",
        apply: |c, v| {
            c.log_level = Level::parse(v).ok_or_else(|| ValueError::Expected {
                what: "error, warn, info or debug".into(),
                got: v.to_owned(),
            })?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "log-format",
        env: "TICKER_LOG_FORMAT",
        group: Group::Logging,
        default: "text",
        help: "text (key=value) or json, one line per event on stderr",
        apply: |c, v| {
            c.log_format = Format::parse(v).ok_or_else(|| ValueError::Expected {
                what: "text or json".into(),
                got: v.to_owned(),
            })?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "redis",
        env: "TICKER_REDIS",
        group: Group::Cluster,
        default: NO_REDIS,
        help: "cluster mode: redis://HOST:PORT/DB shared by every node (keys, tokens, \
               login limit, one ticking leader); without it one node, SQLite + memory",
        apply: |c, v| {
            c.redis = match v {
                NO_REDIS | "" => None,
                url => Some(check_redis_url(url)?),
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "redis-sentinels",
        env: "TICKER_REDIS_SENTINELS",
        group: Group::Cluster,
        default: NO_SENTINELS,
        help: "cluster mode through Redis Sentinel, instead of --redis: HOST:PORT,... of the \
               Sentinels; every connection asks them for the current master, so the \
               cluster follows a failover",
        apply: |c, v| {
            c.redis_sentinels = match v {
                NO_SENTINELS | "" => Vec::new(),
                list => parse_sentinels(list)?,
            };
            Ok(())
        },
    },
    OptionSpec {
        flag: "redis-master",
        env: "TICKER_REDIS_MASTER",
        group: Group::Cluster,
        default: DEFAULT_MASTER,
        help: "with --redis-sentinels: the name of the master they monitor",
        apply: |c, v| {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err(ValueError::Expected {
                    what: "a master name (no spaces)".into(),
                    got: v.to_owned(),
                });
            }
            c.redis_master = v.to_owned();
            Ok(())
        },
    },
    OptionSpec {
        flag: "tls-cert",
        env: "TICKER_TLS_CERT",
        group: Group::Tls,
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
        group: Group::Tls,
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
        group: Group::Tls,
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
        group: Group::Prices,
        default: "sim",
        help: "where prices come from: sim (the random walk), coinbase, binance or kraken \
               (the exchange's public WebSocket stream)",
        apply: |c, v| {
            c.source = SourceKind::parse(v).ok_or_else(|| ValueError::Expected {
                what: "sim, coinbase, binance or kraken".into(),
                got: v.to_owned(),
            })?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "source-url",
        env: "TICKER_SOURCE_URL",
        group: Group::Prices,
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
        group: Group::Prices,
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
        group: Group::Prices,
        default: "auto",
        help: "treat an upstream silent this long as dead and reconnect (auto: 5s for \
               coinbase and kraken, which send heartbeats every second; 30s for binance)",
        apply: |c, v| {
            c.source_timeout = keyword_or_duration(
                v,
                "auto",
                Duration::from_millis(200),
                Duration::from_secs(3600),
            )?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "stale-after",
        env: "TICKER_STALE_AFTER",
        group: Group::Prices,
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
    group: Group::Auth,
    default: RANDOM_KEY,
    help: "HMAC key for tokens (at least 16 bytes); without it tokens die with the process",
    apply: |c, v| {
        if v != RANDOM_KEY {
            // The secret itself is never repeated: only its length.
            c.token_key = Some(
                TokenKey::from_secret(v)
                    .map_err(|e| ValueError::Refused(format!("{e} (got {} bytes)", v.len())))?,
            );
        }
        Ok(())
    },
}];

/// Marker default of `--redis`: no cluster.
const NO_REDIS: &str = "none (one node)";

/// Marker default of `--redis-sentinels`: no Sentinels.
const NO_SENTINELS: &str = "none";

/// Default of `--redis-master`: the name Redis's own sentinel.conf uses.
pub const DEFAULT_MASTER: &str = "mymaster";

/// Where a cluster node finds its Redis: a fixed URL, or the master a set of Sentinels
/// names at the moment of each connection (the cluster resolves it in
/// `cluster::target`, so a failover is followed on the next reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `--redis URL`.
    Url(String),
    /// `--redis-sentinels HOST:PORT,...` and `--redis-master NAME`.
    Sentinels { sentinels: Vec<String>, master: String },
}

impl Config {
    /// The cluster's Redis, `None` for one node. [`parse_args`] and [`check_redis`]
    /// refuse a configuration that names both a URL and Sentinels.
    pub fn redis_target(&self) -> Option<RedisTarget> {
        match (&self.redis, self.redis_sentinels.is_empty()) {
            (Some(url), _) => Some(RedisTarget::Url(url.clone())),
            (None, false) => Some(RedisTarget::Sentinels {
                sentinels: self.redis_sentinels.clone(),
                master: self.redis_master.clone(),
            }),
            (None, true) => None,
        }
    }

    /// Whether this node is one of a cluster's (`--redis` or `--redis-sentinels`).
    pub fn clustered(&self) -> bool {
        self.redis.is_some() || !self.redis_sentinels.is_empty()
    }
}

/// `--redis` and `--redis-sentinels` are two ways to name one Redis: give one.
pub fn check_redis(config: &Config) -> Result<(), ConfigError> {
    if config.redis.is_some() && !config.redis_sentinels.is_empty() {
        return Err(ConfigError(
            "--redis and --redis-sentinels name the cluster's Redis two ways: give one".into(),
        ));
    }
    Ok(())
}

/// `HOST:PORT,...`: every entry needs a host and a port (a Sentinel has no default port
/// worth guessing: 26379 is only a convention).
fn parse_sentinels(list: &str) -> Result<Vec<String>, ValueError> {
    let refused = || ValueError::Expected {
        what: "HOST:PORT,... (e.g. 10.0.0.1:26379,10.0.0.2:26379)".into(),
        got: list.to_owned(),
    };
    list.split(',')
        .map(str::trim)
        .map(|entry| {
            let (host, port) = entry.rsplit_once(':').ok_or_else(refused)?;
            let host_ok = !host.is_empty() && !host.contains(['/', '@', ' ']);
            match port.parse::<u16>() {
                Ok(p) if p > 0 && host_ok => Ok(entry.to_owned()),
                _ => Err(refused()),
            }
        })
        .collect()
}

/// Marker default of `--tokens-per-key`: [`derived_tokens_per_key`].
const PER_KEY_AUTO: &str = "auto";

/// The per-key token bound when `--tokens-per-key` is not set: a tenth of the table, so
/// that filling it takes ten keys at their bound, and at most 10,000 (one client's
/// connections on one node, about a host's file-descriptor limit).
pub fn derived_tokens_per_key(token_capacity: usize) -> usize {
    (token_capacity / 10).clamp(1, 10_000)
}

/// A `--redis` URL the cluster can use, or why not. The URL is never echoed with its
/// password ([`crate::redact::redact_url`]).
fn check_redis_url(url: &str) -> Result<String, ValueError> {
    const FORMS: &str = "redis://[[user]:password@]host[:port][/db] or unix:///path/to/socket";
    let refused = || ValueError::Expected { what: FORMS.to_owned(), got: redact_url(url) };
    if !(url.starts_with("redis://") || url.starts_with("unix://")) {
        return Err(refused());
    }
    // Parsed the way the cluster will (no connection is made), so a bad host, port or
    // database number is a configuration error at start rather than a failure later.
    #[cfg(feature = "cluster")]
    if redis::Client::open(url).is_err() {
        return Err(refused());
    }
    Ok(url.to_owned())
}

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
            (opt.apply)(&mut config, value.trim()).map_err(|e| ConfigError(e.about(opt.env)))?;
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
            .map_err(|e| ConfigError(e.about(&format!("--{name}"))))?;
        i += 1;
    }
    if config.dead_after <= config.ping_after {
        return Err(ConfigError(format!(
            "--dead-after ({}) must be longer than --ping-after ({})",
            human_duration(config.dead_after),
            human_duration(config.ping_after)
        )));
    }
    if config.tls_cert.is_some() != config.tls_key.is_some() {
        return Err(ConfigError(
            "--tls-cert and --tls-key go together: give both or neither".into(),
        ));
    }
    check_redis(&config)?;
    check_token_bounds(&config)?;
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

/// One node's token table is shared by every key, so no key may hold more than half of
/// it: otherwise one key could fill the table and every other key would get 503. A
/// cluster keeps its tokens in Redis, which `--token-capacity` does not bound.
fn check_token_bounds(config: &Config) -> Result<(), ConfigError> {
    let (per_key, capacity) = (config.per_key_bound(), config.token_capacity);
    if !config.clustered() && per_key > capacity / 2 {
        return Err(ConfigError(format!(
            "--tokens-per-key {per_key} is more than half of --token-capacity {capacity}: \
             one API key could fill the token table and lock every other key out (503). \
             Give at most {} (the default is a tenth of the capacity, at most 10000), or \
             raise --token-capacity",
            capacity / 2
        )));
    }
    Ok(())
}

/// Refuses the options of a part this binary was built without (a small-host build,
/// `--no-default-features`), instead of starting without it.
fn check_built_in(config: &Config) -> Result<(), ConfigError> {
    let wanted = [
        ("--tls-cert/--tls-key", "tls", config.tls_cert.is_some(), cfg!(feature = "tls")),
        ("--redis", "cluster", config.redis.is_some(), cfg!(feature = "cluster")),
        (
            "--redis-sentinels",
            "cluster",
            !config.redis_sentinels.is_empty(),
            cfg!(feature = "cluster"),
        ),
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
            (opt.apply)(&mut config, value.trim()).map_err(|e| ConfigError(e.about(opt.env)))?;
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
            .map_err(|e| ConfigError(e.about(&format!("--{name}"))))?;
    }
    Ok((config, rest))
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
            item.split_once(':').ok_or_else(|| format!("expected SYMBOL:PRICE (got {item:?})"))?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(format!(
                "a symbol name is 1 to 32 of A-Z, a-z, 0-9, '.', '_' and '-' (got {name:?})"
            ));
        }
        let start_price: f64 = price
            .trim()
            .parse()
            .map_err(|_| format!("the price is not a number (got {item:?})"))?;
        if !start_price.is_finite() || start_price <= 0.0 || start_price > 1e12 {
            return Err(format!(
                "a price must be above 0 and at most 1000000000000 (got {item:?})"
            ));
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
        return Err("no symbols given (SYMBOL:PRICE,...)".into());
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
    fn defaults_are_the_documented_ones() {
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
        assert_eq!((c.token_capacity, c.per_key_bound()), (100_000, 10_000));
        assert_eq!((c.login_failures_per_minute, c.login_concurrency), (10, 1024));
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.tls_threads, available_cores().div_ceil(2));
    }

    #[test]
    fn the_backlog_and_the_per_key_token_bound_are_options() {
        let c = parse(&["--backlog", "512"], &[("TICKER_TOKENS_PER_KEY", "100")]).unwrap();
        assert_eq!((c.backlog, c.per_key_bound()), (512, 100));
        let c = parse(&[], &[("TICKER_BACKLOG", "64")]).unwrap();
        assert_eq!(c.backlog, 64);
        assert!(parse(&["--backlog", "0"], &[]).unwrap_err().0.starts_with("--backlog"));
        assert!(parse(&["--backlog", "4294967296"], &[]).is_err(), "listen(2) takes an int");
        assert!(parse(&["--tokens-per-key", "0"], &[]).is_err());
        assert!((1..=i32::MAX as usize).contains(&system_somaxconn()));
    }

    #[test]
    fn the_per_key_token_bound_defaults_to_a_tenth_of_the_table_at_most_10000() {
        for (capacity, per_key) in
            [(2, 1), (19, 1), (500, 50), (100_000, 10_000), (10_000_000, 10_000)]
        {
            let c = parse(&["--token-capacity", &capacity.to_string()], &[]).unwrap();
            assert_eq!(c.per_key_bound(), per_key, "capacity {capacity}");
        }
        let c = parse(&["--tokens-per-key", "auto"], &[("TICKER_TOKEN_CAPACITY", "500")]).unwrap();
        assert_eq!(c.per_key_bound(), 50);
        assert!(parse(&["--token-capacity", "1"], &[]).is_err(), "one key would fill it");
    }

    #[test]
    fn a_per_key_bound_above_half_the_table_is_refused_with_what_to_give() {
        let c = parse(&["--token-capacity", "500", "--tokens-per-key", "250"], &[]).unwrap();
        assert_eq!(c.per_key_bound(), 250);
        let err = parse(&["--token-capacity", "500", "--tokens-per-key", "600"], &[]).unwrap_err();
        assert!(
            err.0.starts_with("--tokens-per-key 600 is more than half of --token-capacity 500")
        );
        assert!(err.0.contains("at most 250"), "{err}");
        let env = [("TICKER_TOKENS_PER_KEY", "60000")];
        assert!(parse(&[], &env).unwrap_err().0.contains("--token-capacity 100000"));
    }

    #[test]
    #[cfg(feature = "cluster")]
    fn a_cluster_has_no_token_table_to_protect_but_the_same_per_key_default() {
        let redis = ["--redis", "redis://127.0.0.1:6379/0"];
        assert_eq!(parse(&redis, &[]).unwrap().per_key_bound(), 10_000);
        let c = parse(&[&redis[..], &["--tokens-per-key", "200000"]].concat(), &[]).unwrap();
        assert_eq!(c.per_key_bound(), 200_000);
    }

    #[test]
    fn trusted_proxies_are_a_list_of_networks_and_none_by_default() {
        let c = parse(&["--trusted-proxies", "10.0.0.0/8, ::1"], &[]).unwrap();
        assert_eq!(c.trusted_proxies.to_string(), "10.0.0.0/8,::1/128");
        let c = parse(&[], &[("TICKER_TRUSTED_PROXIES", "192.168.0.0/16")]).unwrap();
        assert!(c.trusted_proxies.contains("192.168.3.4".parse().unwrap()));
        let err = parse(&["--trusted-proxies", "10.0.0.1/8"], &[]).unwrap_err();
        assert!(err.0.starts_with("--trusted-proxies") && err.0.contains("10.0.0.0/8"), "{err}");
        assert!(parse(&["--trusted-proxies", "proxy.local"], &[]).is_err());
    }

    #[test]
    fn a_refused_redis_url_never_shows_its_password() {
        for url in [
            "http://:hunter2@cache:6379/0",
            "rediss://app:hunter2@cache",
            "cache:6379",
            "redis://app:hunter2@cache:notaport/0",
            "redis://:hunter2@cache:6379/zero",
        ] {
            // (A build without the cluster refuses every --redis, in words of its own.)
            let err = parse(&["--redis", url], &[]).unwrap_err();
            assert!(!err.0.contains("hunter2"), "{err}");
            assert!(err.0.starts_with("--redis"), "{err}");
            let from_env = parse(&[], &[("TICKER_REDIS", url)]).unwrap_err();
            assert!(!from_env.0.contains("hunter2"), "{from_env}");
        }
        let err = parse(&["--redis", "http://:hunter2@cache"], &[]).unwrap_err();
        assert!(err.0.contains(r#""http://:***@cache""#), "{err}");
    }

    #[test]
    #[cfg(feature = "cluster")]
    fn sentinels_name_the_cluster_with_a_master_name_and_exclude_a_url() {
        let c = parse(&["--redis-sentinels", "10.0.0.1:26379, [::1]:26380"], &[]).unwrap();
        assert!(c.clustered());
        let sentinels = vec!["10.0.0.1:26379".to_owned(), "[::1]:26380".to_owned()];
        let master = DEFAULT_MASTER.to_owned();
        let want = RedisTarget::Sentinels { sentinels: sentinels.clone(), master };
        assert_eq!(c.redis_target(), Some(want));
        let env = [("TICKER_REDIS_SENTINELS", "10.0.0.1:26379,[::1]:26380")];
        let c = parse(&["--redis-master", "prices"], &env).unwrap();
        let want = RedisTarget::Sentinels { sentinels, master: "prices".into() };
        assert_eq!(c.redis_target(), Some(want));

        let both = ["--redis", "redis://127.0.0.1/", "--redis-sentinels", "127.0.0.1:26379"];
        let err = parse(&both, &[]).unwrap_err();
        assert!(err.0.contains("--redis and --redis-sentinels"), "{err}");
        for bad in ["127.0.0.1", "127.0.0.1:0", ":26379", "a:1,", "redis://h:1"] {
            let err = parse(&["--redis-sentinels", bad], &[]).unwrap_err();
            assert!(err.0.starts_with("--redis-sentinels"), "{bad}: {err}");
        }
        assert!(parse(&["--redis-master", ""], &env).is_err());
        assert_eq!(parse(&[], &[]).unwrap().redis_target(), None);
    }

    #[test]
    #[cfg(not(feature = "cluster"))]
    fn a_build_without_the_cluster_refuses_sentinels() {
        let err = parse(&["--redis-sentinels", "127.0.0.1:26379"], &[]).unwrap_err();
        assert!(err.0.starts_with("--redis-sentinels"), "{err}");
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
    fn every_refused_value_names_its_option_and_repeats_what_was_given() {
        let mut refused = 0;
        for opt in OPTIONS {
            for given in ["bogus!", "0", "0ms", "99999999999999999999999"] {
                let mut c = Config::default();
                let Err(e) = (opt.apply)(&mut c, given) else { continue };
                refused += 1;
                let msg = e.about(&format!("--{}", opt.flag));
                assert!(msg.starts_with(&format!("--{}", opt.flag)), "{msg}");
                assert!(msg.contains(given), "what was given: {msg}");
                assert!(!msg.contains("..="), "Rust's range syntax: {msg}");
            }
        }
        assert!(refused > 80, "{refused} refusals checked");
    }

    #[test]
    fn the_messages_of_the_issue_read_as_sentences_about_the_option() {
        let err = |args: &[&str]| parse(args, &[]).unwrap_err().0;
        assert_eq!(err(&["--tick", "0ms"]), "--tick must be between 1ms and 1h, got 0ms");
        assert!(err(&["--addr", "localhost:8085"]).starts_with("--addr expects IP:PORT"));
        assert!(err(&["--addr", ":8085"]).contains("0.0.0.0:8085 (every interface)"));
        assert_eq!(
            parse(&[], &[("TICKER_TOKEN_TTL", "31d")]).unwrap_err().0,
            "TICKER_TOKEN_TTL expects a duration between 1s and 720h with a unit: ms, s, m or \
             h (got \"31d\")"
        );
        assert_eq!(
            err(&["--ping-after", "2m"]),
            "--dead-after (1m) must be longer than --ping-after (2m)"
        );
    }

    #[test]
    fn the_token_key_comes_from_the_environment_only() {
        assert!(parse(&[], &[]).unwrap().token_key.is_none());
        let c = parse(&[], &[("TICKER_TOKEN_KEY", "0123456789abcdef")]).unwrap();
        assert!(c.token_key.is_some());
        let short = parse(&[], &[("TICKER_TOKEN_KEY", "s3cret")]).unwrap_err().0;
        assert!(short.contains("16") && short.contains("got 6 bytes"), "{short}");
        assert!(!short.contains("s3cret"), "a secret is never repeated: {short}");
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
