//! Start-up: the pieces of the server, built from a [`Config`] in the order they depend
//! on each other, then the wait for the end. [`run`] reads as that list:
//!
//! 1. the auth flow ([`build_auth`]: SQLite, or the cluster's Redis through
//!    [`crate::cluster::join`]), its key store prepared and the demo key logged;
//! 2. the TLS certificate, if any ([`tls_start`]), then the listener ([`listen`]);
//! 3. one poll, waker and set of channels per shard ([`Loops`]), and what they share
//!    ([`build_shared`], with the connection limit from the descriptor limit);
//! 4. workers (and, with TLS, the handshake pool), the price source and the ticker
//!    ([`start_ticks`]: this node's own, or the cluster's tick plane), the signal
//!    thread, the revocation watcher ([`watch_revocations`]);
//! 5. the shards ([`spawn_shards`]), joined.
//!
//! Each optional part enters through one builder in its own module, which a build
//! without the part answers with "not built" (`None`): the cluster (`cluster::join`),
//! the exchanges (`source::exchanges`), TLS (`tls_start`). The configuration already
//! refuses their flags in such a build; [`StartError::NotBuiltIn`] is the same refusal
//! for a [`Config`] made by other means.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use mio::{Poll, Waker};

use super::handshakes::Pool as HandshakePool;
use super::tls_start::{self, Tls, TlsError};
use super::{Control, Reply, SessionLimits, Shared, listen, shard};
use crate::auth::Auth;
use crate::auth::key_store::{Revocation, SqliteKeyStore};
use crate::auth::keys::{DbError, DemoKey};
use crate::auth::ratelimit::{LOGIN_WINDOW, LoginLimiter};
use crate::auth::revocation;
use crate::auth::token::{MemoryTokenStore, TokenKey, TokenKeyError, Tokens};
use crate::cluster::{self, ClusterTicker, Health, LinkError, Node};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::source::exchanges::{self, ConnectError};
use crate::source::{PriceSource, SourceKind};
use crate::symbols::SymbolTable;
use crate::symbols::sets::SetRegistry;
use crate::ticker::prices::{PriceModel, Rng};
use crate::ticker::{self, Doorbell, Tick, Ticker};
use crate::workers::{self, Completion, JobSender, Mailbox};

/// Descriptors kept free for the database, files, and the 503 answers over the limit.
const FD_RESERVE: usize = 64;
/// Jobs that may wait for a worker before new ones are answered 503.
const JOB_QUEUE: usize = 4096;
/// Ticks queued per event loop: a loop keeps only the newest anyway, so this only needs
/// to absorb a loop that is a few ticks behind without the ticker ever blocking.
const TICK_QUEUE: usize = 16;
/// How often a cluster node that started without Redis tries to join.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Database(DbError),
    Bind(SocketAddr, std::io::Error),
    TokenKey(TokenKeyError),
    Redis(LinkError),
    Tls(TlsError),
    Source(ConnectError),
    /// The configuration asks for a part this build was compiled without (the feature).
    NotBuiltIn(crate::config::Part),
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database(e) => write!(f, "{e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::TokenKey(e) => write!(f, "TICKER_TOKEN_KEY: {e}"),
            StartError::Redis(e) => write!(f, "--redis: {e}"),
            StartError::Tls(e) => write!(f, "--tls-cert/--tls-key: {e}"),
            StartError::Source(e) => write!(f, "--source: {e}"),
            StartError::NotBuiltIn(part) => write!(f, "{}", part.missing()),
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
    let metrics = Arc::new(Metrics::new());
    let (auth, node) = build_auth(&config, metrics.clone())?;
    let auth = Arc::new(auth);
    let prepared = prepare_keys(&config, &auth)?;
    let tls = load_tls(&config)?;
    let listener = listen::listen(config.addr, config.backlog)
        .map_err(|e| StartError::Bind(config.addr, e))?;
    let local_addr = listener.local_addr()?;
    let backlog = listen::effective_backlog(config.backlog);

    // The event loops' channels, what they share, then the threads that feed them.
    let (jobs, job_queue) = workers::job_queue(JOB_QUEUE);
    let mut handshake_pool = HandshakePool::new(&config);
    let Loops { ends, controls, mailboxes, tick_subscribers } =
        Loops::new(&config, &mut handshake_pool)?;
    let health = node.as_ref().map(Node::health);
    let shared = build_shared(&config, auth.clone(), metrics, jobs, health, tls, controls);
    workers::start("worker", config.workers, job_queue, mailboxes)?;
    // Each shard's share of the handshake pool (none without TLS).
    let mut handshakes = handshake_pool.start()?.into_iter();
    let ticks = start_ticks(&config, node, tick_subscribers, &shared)?;
    spawn_signal_thread(shared.clone())?;
    let stop_watcher = watch_revocations(&config, auth, &shared, prepared)?;

    let handles = spawn_shards(ends, &listener, |id, ends, listener| shard::ShardParts {
        id,
        poll: ends.poll,
        listener,
        shared: shared.clone(),
        ticks: ends.ticks,
        completions: ends.completions,
        controls: ends.controls,
        handshakes: handshakes.next().flatten(),
    })?;
    drop(listener);
    log_listening(&config, &shared, local_addr, backlog);
    release_startup_memory();

    let result = join_shards(handles);
    stop_watcher.store(true, Ordering::Relaxed);
    ticks.stop();
    crate::info!("stopped");
    result
}

/// The auth flow: one node keeps keys in SQLite and tokens in memory; a cluster node
/// keeps both, and the login limit, in the shared Redis, and is a [`Node`] of it.
fn build_auth(config: &Config, metrics: Arc<Metrics>) -> Result<(Auth, Option<Node>), StartError> {
    let key = match &config.token_key {
        Some(key) => key.clone(),
        None => {
            crate::warn!(
                "TICKER_TOKEN_KEY is not set; using a random key (tokens end with this process)"
            );
            TokenKey::random().map_err(StartError::TokenKey)?
        }
    };
    let Some(target) = config.redis_target() else {
        let (ttl, failures) = (config.token_ttl, config.login_failures_per_minute);
        // The configuration refused a per-key bound above half the capacity.
        let store = MemoryTokenStore::new(config.token_capacity, config.per_key_bound());
        let auth = Auth::new(
            Tokens::new(key, ttl, Box::new(store)),
            Box::new(SqliteKeyStore::new(config.db_path.clone())),
            Box::new(LoginLimiter::new(failures, LOGIN_WINDOW)),
            config.login_concurrency,
            metrics,
        );
        return Ok((auth, None));
    };
    let parts = cluster::join(config, target, key, metrics)
        .ok_or(StartError::NotBuiltIn(crate::config::Part::Cluster))?
        .map_err(StartError::Redis)?;
    Ok((parts.auth, Some(parts.node)))
}

/// Prepares the key store; returns where its revocation feed ends. One node cannot
/// serve without its database; a cluster node starts anyway and joins when Redis
/// answers (until then it reports 503): `None`.
fn prepare_keys(config: &Config, auth: &Auth) -> Result<Option<i64>, StartError> {
    match auth.prepare() {
        Ok((demo, cursor)) => {
            log_demo_key(config, &demo);
            Ok(Some(cursor))
        }
        Err(e) if config.clustered() => {
            crate::warn!("cluster: key store unreachable; joining when it answers", error = e);
            Ok(None)
        }
        Err(e) => Err(StartError::Database(e)),
    }
}

/// With `--tls-cert` and `--tls-key`: the certificate, so that every connection speaks
/// TLS.
fn load_tls(config: &Config) -> Result<Option<Arc<Tls>>, StartError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let tls = tls_start::load(cert, key).ok_or(StartError::NotBuiltIn(crate::config::Part::Tls))?;
    Ok(Some(Arc::new(tls.map_err(StartError::Tls)?)))
}

/// One poll, waker and set of channels per event loop: the loops' ends, and the ends
/// the other threads hold (workers, ticker, control senders; the handshake pool gets
/// its own per shard).
struct Loops {
    ends: Vec<LoopEnds>,
    controls: Vec<(Sender<Control>, Arc<Waker>)>,
    mailboxes: Vec<Mailbox<Reply>>,
    tick_subscribers: Vec<ticker::Subscriber>,
}

/// What one event loop receives from.
struct LoopEnds {
    poll: Poll,
    ticks: Receiver<Tick>,
    completions: Receiver<Completion<Reply>>,
    controls: Receiver<Control>,
}

impl Loops {
    fn new(config: &Config, handshake_pool: &mut HandshakePool) -> std::io::Result<Loops> {
        let mut loops = Loops {
            ends: Vec::new(),
            controls: Vec::new(),
            mailboxes: Vec::new(),
            tick_subscribers: Vec::new(),
        };
        for _ in 0..config.io_threads {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), shard::WAKER)?);
            let (tick_tx, ticks) = bounded(TICK_QUEUE);
            let (done_tx, completions) = unbounded();
            let (ctl_tx, controls) = unbounded();
            loops.controls.push((ctl_tx, waker.clone()));
            loops.mailboxes.push(Mailbox { completions: done_tx, waker: waker.clone() });
            handshake_pool.add_shard(&waker);
            let oldest = ticks.clone();
            loops.tick_subscribers.push(ticker::Subscriber { ticks: tick_tx, oldest, waker });
            loops.ends.push(LoopEnds { poll, ticks, completions, controls });
        }
        Ok(loops)
    }
}

/// What every shard shares. The connection limit is `--max-connections`, or what the
/// descriptor limit (raised to its hard limit here) leaves after a reserve.
fn build_shared(
    config: &Config,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
    jobs: JobSender<Reply>,
    cluster_health: Option<Arc<Health>>,
    tls: Option<Arc<Tls>>,
    controls: Vec<(Sender<Control>, Arc<Waker>)>,
) -> Arc<Shared> {
    let fd_limit = listen::raise_fd_limit();
    let max_connections =
        config.max_connections.unwrap_or_else(|| fd_limit.saturating_sub(FD_RESERVE).max(16));
    let public_root = std::fs::canonicalize(&config.public_dir).unwrap_or_else(|e| {
        crate::warn!(
            "public folder not found; static files will be 404",
            path = config.public_dir.display(),
            error = e
        );
        config.public_dir.clone()
    });
    Arc::new(Shared {
        config: config.clone(),
        auth,
        metrics,
        public_root: Arc::new(public_root),
        jobs,
        cluster_health,
        ticker_bell: Arc::new(Doorbell::default()),
        symbols: Arc::new(SymbolTable::new(config.symbols.iter().map(|s| s.name.clone()))),
        symbol_sets: SetRegistry::new(config.max_symbol_sets),
        open_conns: AtomicUsize::new(0),
        max_connections,
        session_limits: SessionLimits::new(config.max_sessions_per_key, config.max_sessions_per_ip),
        tls,
        shutting_down: AtomicBool::new(false),
        controls,
    })
}

/// The price source `--source` names: the random walk (seeded with `--seed`), or an
/// exchange's stream through [`exchanges::upstream`].
fn build_source(config: &Config, metrics: Arc<Metrics>) -> Result<PriceSource, StartError> {
    let rng = match config.seed {
        Some(seed) => Rng::from_seed(seed),
        None => Rng::from_os().map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?,
    };
    let model = PriceModel::new(&config.symbols, rng).with_activity(config.sim_activity);
    match config.source {
        SourceKind::Sim => Ok(PriceSource::Sim(model)),
        SourceKind::Exchange(exchange) => exchanges::upstream(config, exchange, metrics)
            .ok_or(StartError::NotBuiltIn(crate::config::Part::Exchanges))?
            .map_err(StartError::Source),
    }
}

/// Where this node's ticks come from.
enum TickSource {
    /// Its own ticker thread.
    Local(Ticker),
    /// The cluster's leader, through Redis.
    Cluster(ClusterTicker),
}

impl TickSource {
    fn stop(self) {
        match self {
            TickSource::Local(ticker) => ticker.stop(),
            TickSource::Cluster(cluster) => cluster.stop(),
        }
    }
}

/// Starts the ticks: one node consumes its upstream from the start, in its own ticker
/// thread; a cluster node starts the cluster's tick plane, and consumes its upstream
/// only while it leads.
fn start_ticks(
    config: &Config,
    node: Option<Node>,
    subscribers: Vec<ticker::Subscriber>,
    shared: &Shared,
) -> Result<TickSource, StartError> {
    let mut source = build_source(config, shared.metrics.clone())?;
    let (metrics, sets) = (shared.metrics.clone(), shared.symbol_sets.clone());
    let interval = config.tick_interval;
    Ok(match node {
        None => {
            source.activate()?;
            let bell = shared.ticker_bell.clone();
            TickSource::Local(Ticker::start(source, interval, subscribers, metrics, bell, sets)?)
        }
        Some(node) => {
            TickSource::Cluster(node.start_ticker(source, interval, subscribers, metrics, sets)?)
        }
    })
}

/// Follows the key store's revocation feed from `prepared`, closing the sessions of
/// what is revoked; a cluster node that started without Redis (`None`) first waits to
/// join. Returns the flag that stops the watcher.
fn watch_revocations(
    config: &Config,
    auth: Arc<Auth>,
    shared: &Arc<Shared>,
    prepared: Option<i64>,
) -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_revoked = {
        let shared = shared.clone();
        move |revoked: Vec<Revocation>| {
            let mut keys = Vec::new();
            for r in revoked {
                match r {
                    Revocation::ApiKey(id) => keys.push(id),
                    Revocation::Token(id) => shared.broadcast(Control::RevokeToken(id)),
                }
            }
            if !keys.is_empty() {
                shared.broadcast(Control::RevokeApiKeys(keys));
            }
        }
    };
    match prepared {
        Some(cursor) => revocation::spawn_watcher(auth, cursor, stop.clone(), on_revoked)?,
        None => spawn_join(config.clone(), auth, stop.clone(), on_revoked)?,
    }
    Ok(stop)
}

/// One thread per event loop (`io-N`), each accepting from a clone of `listener`;
/// `parts` puts each one's pieces together.
fn spawn_shards(
    ends: Vec<LoopEnds>,
    listener: &std::net::TcpListener,
    mut parts: impl FnMut(usize, LoopEnds, mio::net::TcpListener) -> shard::ShardParts,
) -> std::io::Result<Vec<JoinHandle<std::io::Result<()>>>> {
    let mut handles = Vec::new();
    for (id, ends) in ends.into_iter().enumerate() {
        let listener = mio::net::TcpListener::from_std(listener.try_clone()?);
        let shard = shard::Shard::new(parts(id, ends, listener))?;
        handles.push(thread::Builder::new().name(format!("io-{id}")).spawn(move || shard.run())?);
    }
    Ok(handles)
}

/// Waits for every shard; the first failure is the result (a panic is logged).
fn join_shards(handles: Vec<JoinHandle<std::io::Result<()>>>) -> Result<(), StartError> {
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
    result
}

/// The line that says the server is up, and with what.
fn log_listening(config: &Config, shared: &Shared, addr: SocketAddr, backlog: usize) {
    crate::info!(
        "listening",
        addr = addr,
        io_threads = config.io_threads,
        workers = config.workers,
        max_connections = shared.max_connections,
        tls = shared.speaks_tls(),
        tls_threads = if shared.speaks_tls() { config.tls_threads } else { 0 },
        backlog = backlog,
        tick_ms = config.tick_interval.as_secs_f64() * 1000.0
    );
}

/// Hands the heap that start-up freed (the key store's first migration, the certificate
/// parse) back to the system, so a small host's idle RSS is what serving needs; glibc
/// keeps freed pages otherwise. Once, at start, off every hot path.
fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The demo key line: the one exception to "never log a key", so a new user can copy it.
fn log_demo_key(config: &Config, demo: &DemoKey) {
    let store = match config.redis_target() {
        Some(_) => "redis".to_owned(),
        None => config.db_path.display().to_string(),
    };
    if demo.created {
        crate::info!("demo API key created", api_key = demo.key, store = store);
    } else {
        crate::info!("demo API key exists", api_key = demo.key, store = store);
    }
}

/// A cluster node started while Redis was unreachable: prepares the key store once it
/// answers (logging the demo key then), and starts the revocation watcher.
fn spawn_join(
    config: Config,
    auth: Arc<Auth>,
    stop: Arc<AtomicBool>,
    on_revoked: impl Fn(Vec<Revocation>) + Send + 'static,
) -> std::io::Result<()> {
    thread::Builder::new().name("cluster-join".into()).spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            thread::sleep(JOIN_RETRY);
            if let Ok((demo, cursor)) = auth.prepare() {
                crate::info!("cluster: key store reachable; joined");
                log_demo_key(&config, &demo);
                if let Err(e) = revocation::spawn_watcher(auth, cursor, stop, on_revoked) {
                    crate::error!("cannot start the revocation watcher", error = e);
                }
                return;
            }
        }
    })?;
    Ok(())
}

/// SIGINT/SIGTERM start a graceful shutdown; a second one exits at once. SIGHUP reloads
/// the TLS certificate and key (new handshakes get them; live sessions are untouched;
/// a bad file is logged and the old certificate stays).
fn spawn_signal_thread(shared: Arc<Shared>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            if signal == SIGHUP {
                tls_start::reload(shared.tls.as_deref());
                continue;
            }
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
