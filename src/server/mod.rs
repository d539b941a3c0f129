//! The server: the event loops ("shards"), the per-connection state machine, the
//! fan-out hot path, and start-up. Only this module touches mio, the listening socket
//! and the clients' connections (the only other sockets are outgoing ones: an
//! exchange's stream in `source::upstream`, the Redis connections in `cluster::target`).
//!
//! ```text
//!  ticker thread ──Tick(Arc<[u8]>)──► shard 0..n (mio Poll + Slab<Conn>) ◄──► sockets
//!                                      │  ▲                      │  ▲
//!                        Job (try_send)│  │Completion + Waker    │  │ TLS handshake steps
//!                                      ▼  │                      ▼  │ (bounded) + Waker
//!                                  worker pool (key lookups,   handshake pool (key
//!                                  signing, files)             exchange, signature)
//!  signal thread, revocation watcher ──Control──► every shard
//! ```
//!
//! - [`startup`]: builds all of the above from a [`Config`] and waits for the end;
//!   `listen` makes the listening socket (by hand, with `libc`, for its backlog) and
//!   raises the descriptor limit; [`tls_start`] is TLS's share of start-up (certificate,
//!   handshake pool, reload), with stand-ins in a build without TLS.
//! - `shard`: one event loop; its module doc states the loop's rules.
//! - `conn` (+ `outbox`): one connection and every transition of its state machine.
//! - `handle`: what a connection does with the bytes it reads (HTTP, upgrade, frames).
//! - [`fanout`]: the hot path, one shared frame to every subscriber.
//! - `transport`: plain TCP or TLS per connection, the same byte stream to everything
//!   above (certificates and the record layer are in `crate::tls`).
//! - `handshakes`: the TLS handshake pool; its module doc states the rules (the loops
//!   never run handshake crypto, a bounded number of steps in flight, what a flood costs).
//!
//! Each shard owns its connections outright; they share only [`Shared`] (config, the
//! auth flow, metrics, counters), so the hot path takes no lock.

mod conn;
pub mod fanout;
mod handle;
mod handshakes;
mod listen;
mod outbox;
pub(crate) mod session_limits;
mod shard;
mod startup;
pub mod tls_start;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use conn::Outbox;
use crossbeam_channel::Sender;
use mio::Waker;
pub use session_limits::{SessionLimits, SessionPermit};
pub use startup::{StartError, run};
pub use tls_start::TlsError;

use crate::auth::Auth;
use crate::auth::ids::{ApiKeyId, TokenId};
use crate::auth::token::VerifiedToken;
use crate::config::Config;
use crate::error::HttpError;
use crate::http::response::Response;
use crate::metrics::Metrics;
use crate::workers::JobSender;

/// Messages from outside the event loops.
#[derive(Debug, Clone)]
pub enum Control {
    Shutdown,
    /// Close the sessions opened with tokens of these API keys.
    RevokeApiKeys(Vec<ApiKeyId>),
    /// Close the sessions opened with this token.
    RevokeToken(TokenId),
}

/// What a worker hands back to an event loop.
#[derive(Debug)]
pub enum Reply {
    /// A finished HTTP answer.
    Answer(Response),
    /// The token check of an upgrade, run on a worker because the token store's
    /// lookups may block (a cluster's shared store).
    Authorized(Result<VerifiedToken, HttpError>),
}

/// What every shard shares.
pub struct Shared {
    pub config: Config,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// Canonical public folder, for the static-file jobs.
    pub public_root: Arc<PathBuf>,
    pub jobs: JobSender<Reply>,
    /// Cluster mode: whether this node is connected to the cluster (for `/healthz`).
    pub cluster_health: Option<Arc<crate::cluster::Health>>,
    /// Wakes the ticker, which sleeps while no session is open.
    pub ticker_bell: Arc<crate::ticker::Doorbell>,
    /// The configured symbols, for `?symbols=` and `subscribe` messages.
    pub symbols: Arc<crate::symbols::SymbolTable>,
    /// The distinct symbol sets sessions chose (shared with the ticker).
    pub symbol_sets: Arc<crate::symbols::sets::SetRegistry>,
    pub open_conns: AtomicUsize,
    pub max_connections: usize,
    /// `--max-sessions-per-key` / `--max-sessions-per-ip`; `None` when neither is set.
    pub session_limits: Option<Arc<SessionLimits>>,
    /// With `--tls-cert`/`--tls-key`: every connection speaks TLS.
    pub tls: Option<Arc<tls_start::Tls>>,
    shutting_down: AtomicBool,
    controls: Vec<(Sender<Control>, Arc<Waker>)>,
}

impl Shared {
    /// Why `/healthz` should answer 503, if it should.
    pub fn unhealthy_reason(&self) -> Option<String> {
        self.cluster_health.as_ref().and_then(|h| h.unhealthy_reason())
    }

    /// The price source's state for `/healthz`: a cluster node reports the leader's (as
    /// its newest tick says), a single node its own upstream's book.
    pub fn source_health(&self) -> crate::source::SourceHealth {
        if let Some(health) = &self.cluster_health {
            return health.source();
        }
        match self.metrics.upstream() {
            Some(upstream) => {
                let now = std::time::Instant::now();
                let (stale, of) = upstream.stale_symbols(now, self.config.stale_after);
                crate::source::SourceHealth::from_counts(stale, of)
            }
            None => crate::source::SourceHealth::Simulated,
        }
    }

    /// With `--redis-sentinels`: the master this node's connections use (`host:port`),
    /// since when (Unix seconds), and the changes of master it has seen.
    pub fn redis_master(&self) -> Option<(String, u64, u64)> {
        self.cluster_health.as_ref().and_then(|_| crate::cluster::current_master())
    }

    /// Whether this node is one of a cluster's (`--redis`).
    pub fn clustered(&self) -> bool {
        self.cluster_health.is_some()
    }

    /// Whether this port speaks TLS (`--tls-cert`/`--tls-key`).
    pub fn speaks_tls(&self) -> bool {
        self.tls.is_some()
    }

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
