//! Start-up: the pieces of the server, built from a [`Config`] in the order they depend
//! on each other, then the wait for the end.
//!
//! 1. file-descriptor limit → connection limit;
//! 2. the auth flow (key store prepared, demo key logged);
//! 3. the TLS certificate, if any, then the listener (made with `libc`, for its
//!    `--backlog`);
//! 4. one poll, waker and set of channels per shard;
//! 5. workers (and, with TLS, the handshake pool), ticker, signal thread, revocation
//!    watcher;
//! 6. the shards, joined.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use mio::{Poll, Waker};

use super::{Control, SessionLimits, Shared, handshakes, shard};
use crate::auth::Auth;
use crate::auth::key_store::{Revocation, SqliteKeyStore};
use crate::auth::keys::DbError;
use crate::auth::keys::DemoKey;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::revocation;
use crate::auth::token::{MemoryTokenStore, TokenKey, TokenKeyError, Tokens};
#[cfg(feature = "cluster")]
use crate::cluster::{
    self, key_store::RedisKeyStore, limiter::RedisLimiter, link::LinkError, pool::LinkPool,
    ticks::ClusterTicker, ticks::Health, token_store::RedisTokenStore,
};
use crate::config::Config;
use crate::metrics::Metrics;
#[cfg(feature = "exchanges")]
use crate::source::Upstream;
use crate::source::{PriceSource, SourceKind};
use crate::symbols::SymbolTable;
use crate::symbols::sets::SetRegistry;
use crate::ticker::prices::{PriceModel, Rng};
use crate::ticker::{self, Doorbell, Ticker};
use crate::workers::{self, Mailbox};

/// Descriptors kept free for the database, files, and the 503 answers over the limit.
const FD_RESERVE: usize = 64;
/// Jobs that may wait for a worker before new ones are answered 503.
const JOB_QUEUE: usize = 4096;
/// Ticks queued per event loop: a loop keeps only the newest anyway, so this only needs
/// to absorb a loop that is a few ticks behind without the ticker ever blocking.
const TICK_QUEUE: usize = 16;
/// How often a cluster node that started without Redis tries to join.
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// The window of the failed-login limit.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Database(DbError),
    Bind(SocketAddr, std::io::Error),
    TokenKey(TokenKeyError),
    #[cfg(feature = "cluster")]
    Redis(LinkError),
    #[cfg(feature = "tls")]
    Tls(super::TlsError),
    #[cfg(feature = "exchanges")]
    Source(crate::source::upstream::ConnectError),
    /// The configuration asks for a part this build was compiled without (the feature).
    NotBuiltIn(&'static str),
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database(e) => write!(f, "{e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::TokenKey(e) => write!(f, "TICKER_TOKEN_KEY: {e}"),
            #[cfg(feature = "cluster")]
            StartError::Redis(e) => write!(f, "--redis: {e}"),
            #[cfg(feature = "tls")]
            StartError::Tls(e) => write!(f, "--tls-cert/--tls-key: {e}"),
            #[cfg(feature = "exchanges")]
            StartError::Source(e) => write!(f, "--source: {e}"),
            StartError::NotBuiltIn(feature) => {
                write!(f, "{}", crate::config::not_built_in(feature))
            }
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
    let metrics = Arc::new(Metrics::new());

    let auth = Arc::new(build_auth(&config, metrics.clone())?);
    // One node cannot serve without its database; a cluster node starts anyway and
    // joins when Redis answers (until then it reports 503).
    let prepared = match auth.prepare() {
        Ok(prepared) => {
            log_demo_key(&config, &prepared.0);
            Some(prepared.1)
        }
        Err(e) if config.clustered() => {
            crate::warn!("cluster: key store unreachable; joining when it answers", error = e);
            None
        }
        Err(e) => return Err(StartError::Database(e)),
    };

    #[cfg(not(feature = "tls"))]
    if config.tls_cert.is_some() {
        return Err(StartError::NotBuiltIn("tls"));
    }
    #[cfg(feature = "tls")]
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(Arc::new(crate::tls::Tls::load(cert, key).map_err(StartError::Tls)?))
        }
        _ => None,
    };
    let std_listener =
        listen(config.addr, config.backlog).map_err(|e| StartError::Bind(config.addr, e))?;
    let local_addr = std_listener.local_addr()?;
    let somaxconn = crate::config::system_somaxconn();
    if config.backlog > somaxconn {
        crate::warn!(
            "--backlog is above net.core.somaxconn; the kernel caps it there",
            backlog = config.backlog,
            somaxconn = somaxconn
        );
    }

    // One Poll, waker and set of channels per shard.
    let (job_tx, job_rx) = workers::job_queue(JOB_QUEUE);
    let mut polls = Vec::new();
    let mut controls = Vec::new();
    let mut mailboxes = Vec::new();
    let mut tick_subscribers = Vec::new();
    let mut receivers = Vec::new();
    let mut handshake_pool = handshakes::Pool::new(&config);
    for _ in 0..config.io_threads {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), shard::WAKER)?);
        let (tick_tx, tick_rx) = bounded(TICK_QUEUE);
        let (done_tx, done_rx) = unbounded();
        let (ctl_tx, ctl_rx) = unbounded();
        controls.push((ctl_tx, waker.clone()));
        mailboxes.push(Mailbox { completions: done_tx, waker: waker.clone() });
        handshake_pool.add_shard(&waker);
        tick_subscribers.push(ticker::Subscriber { ticks: tick_tx, waker });
        receivers.push((tick_rx, done_rx, ctl_rx));
        polls.push(poll);
    }

    let public_root = std::fs::canonicalize(&config.public_dir).unwrap_or_else(|e| {
        crate::warn!(
            "public folder not found; static files will be 404",
            path = config.public_dir.display(),
            error = e
        );
        config.public_dir.clone()
    });
    #[cfg(feature = "cluster")]
    let cluster_health = config.clustered().then(|| Arc::new(Health::default()));
    let ticker_bell = Arc::new(Doorbell::default());
    let symbols = Arc::new(SymbolTable::new(config.symbols.iter().map(|s| s.name.clone())));
    let symbol_sets = SetRegistry::new(config.max_symbol_sets);
    let shared = Arc::new(Shared {
        config: config.clone(),
        auth: auth.clone(),
        metrics: metrics.clone(),
        public_root: Arc::new(public_root),
        jobs: job_tx,
        #[cfg(feature = "cluster")]
        cluster_health: cluster_health.clone(),
        ticker_bell: ticker_bell.clone(),
        symbols,
        symbol_sets: symbol_sets.clone(),
        open_conns: AtomicUsize::new(0),
        max_connections,
        session_limits: SessionLimits::new(config.max_sessions_per_key, config.max_sessions_per_ip),
        #[cfg(feature = "tls")]
        tls,
        shutting_down: AtomicBool::new(false),
        controls,
    });
    workers::start("worker", config.workers, job_rx, mailboxes)?;
    let mut shard_handshakes = handshake_pool.start()?.into_iter();

    let rng = match config.seed {
        Some(seed) => Rng::from_seed(seed),
        None => Rng::from_os().map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?,
    };
    let model = PriceModel::new(&config.symbols, rng);
    let mut source = match config.source {
        SourceKind::Sim => PriceSource::Sim(model),
        #[cfg(feature = "exchanges")]
        SourceKind::Exchange(exchange) => PriceSource::Upstream(
            Upstream::new(config.upstream_config(exchange), &config.symbols, metrics.clone())
                .map_err(StartError::Source)?,
        ),
        #[cfg(not(feature = "exchanges"))]
        SourceKind::Exchange(_) => return Err(StartError::NotBuiltIn("exchanges")),
    };
    let ticks = match config.redis_target() {
        None => TickSource::Local(Ticker::start(
            {
                // One node consumes its upstream from the start; a cluster node only
                // while it leads.
                source.activate()?;
                source
            },
            config.tick_interval,
            tick_subscribers,
            metrics.clone(),
            ticker_bell.clone(),
            symbol_sets.clone(),
        )?),
        #[cfg(not(feature = "cluster"))]
        Some(_) => return Err(StartError::NotBuiltIn("cluster")),
        #[cfg(feature = "cluster")]
        Some(target) => TickSource::Cluster(ClusterTicker::start(
            target,
            cluster::DEFAULT_PREFIX,
            source,
            config.tick_interval,
            tick_subscribers,
            metrics.clone(),
            cluster_health.clone().unwrap_or_default(),
            symbol_sets.clone(),
        )?),
    };

    spawn_signal_thread(shared.clone())?;
    let stop_watcher = Arc::new(AtomicBool::new(false));
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
        Some(cursor) => revocation::spawn_watcher(auth, cursor, stop_watcher.clone(), on_revoked)?,
        None => spawn_join(config.clone(), auth, stop_watcher.clone(), on_revoked)?,
    }

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
            handshakes: shard_handshakes.next().flatten(),
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
        tls = shared.speaks_tls(),
        tls_threads = if shared.speaks_tls() { config.tls_threads } else { 0 },
        backlog = config.backlog.min(somaxconn),
        tick_ms = config.tick_interval.as_secs_f64() * 1000.0
    );
    release_startup_memory();

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
    stop_watcher.store(true, std::sync::atomic::Ordering::Relaxed);
    match ticks {
        TickSource::Local(ticker) => ticker.stop(),
        #[cfg(feature = "cluster")]
        TickSource::Cluster(cluster) => cluster.stop(),
    }
    crate::info!("stopped");
    result
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

/// Where this node's ticks come from.
enum TickSource {
    /// Its own ticker thread.
    Local(Ticker),
    /// The cluster's leader, through Redis.
    #[cfg(feature = "cluster")]
    Cluster(ClusterTicker),
}

/// The auth flow: one node keeps keys in SQLite and tokens in memory; a cluster node
/// keeps both, and the login limit, in the shared Redis.
fn build_auth(config: &Config, metrics: Arc<Metrics>) -> Result<Auth, StartError> {
    let key = match &config.token_key {
        Some(key) => key.clone(),
        None => {
            crate::warn!(
                "TICKER_TOKEN_KEY is not set; using a random key (tokens end with this process)"
            );
            TokenKey::random().map_err(StartError::TokenKey)?
        }
    };
    let (ttl, failures) = (config.token_ttl, config.login_failures_per_minute);
    let Some(target) = config.redis_target() else {
        // The configuration refused a per-key bound above half the capacity.
        let store = MemoryTokenStore::new(config.token_capacity, config.per_key_bound());
        return Ok(Auth::new(
            Tokens::new(key, ttl, Box::new(store)),
            Box::new(SqliteKeyStore::new(config.db_path.clone())),
            Box::new(LoginLimiter::new(failures, LOGIN_WINDOW)),
            config.login_concurrency,
            metrics,
        ));
    };
    #[cfg(not(feature = "cluster"))]
    {
        let _ = target;
        Err(StartError::NotBuiltIn("cluster"))
    }
    #[cfg(feature = "cluster")]
    cluster_auth(config, &target, key, metrics)
}

/// A cluster node's auth flow: keys, tokens and the login limit in the shared Redis.
#[cfg(feature = "cluster")]
fn cluster_auth(
    config: &Config,
    target: &cluster::target::RedisTarget,
    key: TokenKey,
    metrics: Arc<Metrics>,
) -> Result<Auth, StartError> {
    let (ttl, failures) = (config.token_ttl, config.login_failures_per_minute);
    if config.token_key.is_none() {
        crate::warn!(
            "cluster: without TICKER_TOKEN_KEY a token works only on the node that made it"
        );
    }
    // One connection per worker (they run every blocking call) and one for the watcher.
    let pool = Arc::new(
        LinkPool::to_target(target, config.workers + 1, cluster::link::LinkConfig::default())
            .map_err(StartError::Redis)?,
    );
    let prefix = cluster::DEFAULT_PREFIX;
    Ok(Auth::new(
        Tokens::new(
            key,
            ttl,
            Box::new(
                RedisTokenStore::new(pool.clone(), prefix).tokens_per_key(config.per_key_bound()),
            ),
        ),
        Box::new(RedisKeyStore::new(pool.clone(), prefix)),
        Box::new(RedisLimiter::new(pool, prefix, failures, LOGIN_WINDOW)),
        config.login_concurrency,
        metrics,
    ))
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
                reload_tls(&shared);
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

/// SIGHUP's work.
fn reload_tls(shared: &Shared) {
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        match tls.reload() {
            Ok(()) => crate::info!("TLS certificate reloaded", cert = tls.cert_path().display()),
            Err(e) => crate::warn!("TLS reload failed; keeping the old certificate", error = e),
        }
        return;
    }
    let _ = shared;
    crate::info!("SIGHUP ignored: TLS is off");
}

/// The listening socket, made by hand: `std::net::TcpListener::bind` always asks for a
/// backlog of 128, and a reconnect storm of thousands of clients overflows that queue:
/// the kernel drops their SYNs, and each dropped client retries only after 1 s, then
/// 3 s, then 7 s. As std does, `SO_REUSEADDR` lets a restarted server bind while old
/// connections sit in `TIME_WAIT`. The socket is nonblocking and close-on-exec.
fn listen(addr: SocketAddr, backlog: usize) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn check(ret: libc::c_int) -> std::io::Result<()> {
        if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }
    // Linux sets both flags in the same call that makes the socket; elsewhere they are
    // set on the new descriptor below.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = 0;
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2) takes no pointers; its result is checked before any use.
    let raw = unsafe { libc::socket(family, libc::SOCK_STREAM | flags, 0) };
    check(raw)?;
    // SAFETY: `raw` is a descriptor just made and owned by nothing else; `OwnedFd`
    // closes it on every early return below.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: fcntl(2) on a descriptor this function owns; takes no pointers.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int and its exact size is passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    let sockaddr = RawSockAddr::from(addr);
    let (ptr, len) = sockaddr.as_ptr_len();
    // SAFETY: `ptr` points to `len` initialised bytes of a sockaddr of `family`,
    // alive until the call returns.
    check(unsafe { libc::bind(fd.as_raw_fd(), ptr, len) })?;
    // The kernel caps it at net.core.somaxconn by itself.
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen(2) takes no pointers.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A socket address as `bind(2)` takes it.
enum RawSockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl From<SocketAddr> for RawSockAddr {
    fn from(addr: SocketAddr) -> RawSockAddr {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_in is a plain C struct; all zeroes is a valid value
                // (and zeroes the padding and, on the BSDs, the length field).
                let mut raw: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                raw.sin_family = libc::AF_INET as libc::sa_family_t;
                raw.sin_port = a.port().to_be();
                // The octets are already in network order; keep their bytes as they are.
                raw.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
                RawSockAddr::V4(raw)
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let mut raw: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                raw.sin6_port = a.port().to_be();
                raw.sin6_flowinfo = a.flowinfo();
                raw.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
                raw.sin6_scope_id = a.scope_id();
                RawSockAddr::V6(raw)
            }
        }
    }
}

impl RawSockAddr {
    fn as_ptr_len(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            RawSockAddr::V4(a) => (
                (a as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            RawSockAddr::V6(a) => (
                (a as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::os::fd::AsRawFd;

    use super::*;

    /// Accepts the one pending connection, waiting for it a little.
    fn accept_one(l: &std::net::TcpListener) -> std::net::TcpStream {
        for _ in 0..200 {
            match l.accept() {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        panic!("the connection never arrived");
    }

    #[test]
    fn the_listener_is_nonblocking_close_on_exec_and_serves_ipv4_and_ipv6() {
        let l = listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        // SAFETY: fcntl(F_GETFD) on a descriptor this test owns.
        let fd_flags = unsafe { libc::fcntl(l.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
        let addr = l.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        accept_one(&l);
        // Not where this host has no IPv6 loopback.
        if let Ok(l6) = listen("[::1]:0".parse().unwrap(), 16) {
            let _client = std::net::TcpStream::connect(l6.local_addr().unwrap()).unwrap();
            accept_one(&l6);
        }
    }

    #[test]
    fn a_port_in_use_is_an_error_and_a_huge_backlog_is_capped_not_refused() {
        let l = listen("127.0.0.1:0".parse().unwrap(), usize::MAX).unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(listen(addr, 16).unwrap_err().kind(), ErrorKind::AddrInUse);
    }
}
