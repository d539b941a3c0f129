//! The server: start-up, the event loops ("shards"), and shutdown. Only this module
//! touches sockets and mio.
//!
//! ```text
//!  ticker thread ──Tick(Arc<[u8]>)──► shard 0..n (mio Poll + Slab<Conn>) ◄──► sockets
//!                                      │  ▲
//!                        Job (try_send)│  │Completion + Waker
//!                                      ▼  │
//!                                  worker pool (SQLite, signing, files)
//!  signal thread, revocation watcher ──Control──► every shard
//! ```
//!
//! Each shard owns its connections outright; they share only [`Shared`] (config,
//! token table, metrics, counters), so the hot path takes no lock.

mod conn;
pub mod fanout;
mod handle;
mod shard;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use conn::Outbox;
use crossbeam_channel::{Sender, bounded, unbounded};
use mio::{Poll, Waker};

use crate::auth::keys;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::token::{TokenId, TokenKey, TokenStore};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ticker::prices::{PriceModel, Rng};
use crate::ticker::{self, Ticker};
use crate::workers::{self, Job, ShardMailbox, WorkerContext};

/// Descriptors kept free for the database, files, and the 503 answers over the limit.
const FD_RESERVE: usize = 64;
/// Jobs that may wait for a worker before new ones are answered 503.
const JOB_QUEUE: usize = 4096;
/// How often the database is polled for revocations made by other processes.
const REVOCATION_POLL: Duration = Duration::from_millis(250);
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// Messages from outside the event loops.
#[derive(Debug, Clone)]
pub enum Control {
    Shutdown,
    /// Close the sessions opened with tokens of these API keys.
    RevokeApiKeys(Vec<i64>),
    /// Close the sessions opened with this token.
    RevokeToken(TokenId),
}

/// What every shard shares.
pub struct Shared {
    pub config: Config,
    pub tokens: Arc<TokenStore>,
    pub metrics: Arc<Metrics>,
    pub jobs: Sender<Job>,
    pub open_conns: AtomicUsize,
    pub max_connections: usize,
    shutting_down: AtomicBool,
    controls: Vec<(Sender<Control>, Arc<Waker>)>,
}

impl Shared {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Sends a control message to every shard and wakes it.
    pub fn broadcast(&self, control: Control) {
        if matches!(control, Control::Shutdown) {
            self.shutting_down.store(true, Ordering::Relaxed);
        }
        for (tx, waker) in &self.controls {
            if tx.send(control.clone()).is_ok() {
                let _ = waker.wake();
            }
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Database(keys::DbError),
    Bind(SocketAddr, std::io::Error),
    TokenKey(String),
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database(e) => write!(f, "database: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::TokenKey(e) => write!(f, "TICKER_TOKEN_KEY: {e}"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

/// Runs the server until SIGINT/SIGTERM; returns once every shard has finished.
pub fn run(config: Config) -> Result<(), StartError> {
    let fd_limit = raise_fd_limit();
    let max_connections =
        config.max_connections.unwrap_or_else(|| fd_limit.saturating_sub(FD_RESERVE).max(16));

    let key = match std::env::var("TICKER_TOKEN_KEY") {
        Ok(secret) => {
            TokenKey::from_secret(&secret).map_err(|e| StartError::TokenKey(format!("{e:?}")))?
        }
        Err(_) => {
            crate::warn!(
                "TICKER_TOKEN_KEY is not set; using a random key (tokens end with this process)"
            );
            TokenKey::random().map_err(|e| StartError::TokenKey(format!("{e:?}")))?
        }
    };
    let revocation_cursor = migrate(&config.db_path)?;

    let std_listener =
        std::net::TcpListener::bind(config.addr).map_err(|e| StartError::Bind(config.addr, e))?;
    std_listener.set_nonblocking(true)?;
    let local_addr = std_listener.local_addr()?;

    let metrics = Arc::new(Metrics::new());
    let tokens = Arc::new(TokenStore::new(key, config.token_ttl, config.token_capacity));
    let (job_tx, job_rx) = bounded(JOB_QUEUE);

    // One Poll, waker and set of channels per shard.
    let mut polls = Vec::new();
    let mut controls = Vec::new();
    let mut mailboxes = Vec::new();
    let mut tick_subscribers = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..config.io_threads {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), shard::WAKER)?);
        let (tick_tx, tick_rx) = bounded(16);
        let (done_tx, done_rx) = unbounded();
        let (ctl_tx, ctl_rx) = unbounded();
        controls.push((ctl_tx, waker.clone()));
        mailboxes.push(ShardMailbox { completions: done_tx, waker: waker.clone() });
        tick_subscribers.push(ticker::Subscriber { ticks: tick_tx, waker });
        receivers.push((tick_rx, done_rx, ctl_rx));
        polls.push(poll);
    }

    let shared = Arc::new(Shared {
        config: config.clone(),
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        jobs: job_tx,
        open_conns: AtomicUsize::new(0),
        max_connections,
        shutting_down: AtomicBool::new(false),
        controls,
    });

    let public_root = std::fs::canonicalize(&config.public_dir).unwrap_or_else(|e| {
        crate::warn!(
            "public folder not found; static files will be 404",
            path = config.public_dir.display(),
            error = e
        );
        config.public_dir.clone()
    });
    let worker_ctx = Arc::new(WorkerContext {
        db_path: config.db_path.clone(),
        public_root,
        tokens: tokens.clone(),
        limiter: Arc::new(LoginLimiter::new(
            config.login_failures_per_minute,
            Duration::from_secs(60),
        )),
        metrics: metrics.clone(),
        shards: mailboxes,
    });
    workers::start(config.workers, job_rx, worker_ctx)?;

    let rng = match config.seed {
        Some(seed) => Rng::from_seed(seed),
        None => Rng::from_os().map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?,
    };
    let ticker = Ticker::start(
        PriceModel::new(&config.symbols, rng),
        config.tick_interval,
        tick_subscribers,
        metrics.clone(),
    )?;

    spawn_signal_thread(shared.clone())?;
    spawn_revocation_watcher(shared.clone(), revocation_cursor)?;

    let mut handles = Vec::new();
    for (id, (poll, (ticks, completions, controls))) in polls.into_iter().zip(receivers).enumerate()
    {
        let listener = mio::net::TcpListener::from_std(std_listener.try_clone()?);
        let shard = shard::Shard::new(shard::ShardParts {
            id,
            poll,
            listener,
            shared: shared.clone(),
            ticks,
            completions,
            controls,
        })?;
        handles.push(thread::Builder::new().name(format!("io-{id}")).spawn(move || shard.run())?);
    }
    drop(std_listener);
    crate::info!(
        "listening",
        addr = local_addr,
        io_threads = config.io_threads,
        workers = config.workers,
        max_connections = max_connections,
        tick_ms = config.tick_interval.as_secs_f64() * 1000.0
    );

    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                crate::error!("event loop failed", error = e);
                result = Err(StartError::Io(e));
            }
            Err(_) => crate::error!("event loop panicked"),
        }
    }
    ticker.stop();
    crate::info!("stopped");
    result
}

/// Creates or upgrades the database and logs the demo key, as the seed's migrate.lua does.
/// Returns where the revocation log ends, so the watcher misses no later revocation.
fn migrate(db_path: &Path) -> Result<i64, StartError> {
    let conn = keys::open(db_path).map_err(StartError::Database)?;
    let demo = keys::migrate(&conn, &keys::demo_key_file(db_path)).map_err(StartError::Database)?;
    // The SPEC's one exception to "never log a key": the demo key, so a new user can copy it.
    if demo.created {
        crate::info!("demo API key created", api_key = demo.key, db = db_path.display());
    } else {
        crate::info!("demo API key exists", api_key = demo.key, db = db_path.display());
    }
    keys::revocation_cursor(&conn).map_err(StartError::Database)
}

/// SIGINT/SIGTERM start a graceful shutdown; a second signal exits at once.
fn spawn_signal_thread(shared: Arc<Shared>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen > 1 {
                crate::warn!("second signal; exiting now", signal = signal);
                std::process::exit(1);
            }
            crate::info!("shutting down", signal = signal);
            shared.broadcast(Control::Shutdown);
        }
    })?;
    Ok(())
}

/// Polls the database for API keys revoked by any process (the CLI included), ends their
/// tokens and closes their sessions; purges expired tokens now and then.
fn spawn_revocation_watcher(shared: Arc<Shared>, mut cursor: i64) -> std::io::Result<()> {
    thread::Builder::new().name("revocations".into()).spawn(move || {
        let mut conn = None;
        let mut last_purge = Instant::now();
        while !shared.is_shutting_down() {
            thread::sleep(REVOCATION_POLL);
            if last_purge.elapsed() >= PURGE_EVERY {
                shared.tokens.purge_expired(crate::auth::token::unix_now());
                last_purge = Instant::now();
            }
            if conn.is_none() {
                conn = keys::open(&shared.config.db_path).ok();
            }
            let Some(db) = &conn else { continue };
            match keys::revoked_since(db, cursor) {
                Ok((ids, next)) => {
                    cursor = next;
                    if !ids.is_empty() {
                        for id in &ids {
                            shared.tokens.revoke_api_key(*id);
                        }
                        crate::info!("API keys revoked; closing their sessions", count = ids.len());
                        shared.broadcast(Control::RevokeApiKeys(ids));
                    }
                }
                Err(_) => conn = None,
            }
        }
    })?;
    Ok(())
}

/// Raises the soft file-descriptor limit to the hard limit; returns the soft limit now.
fn raise_fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
}
