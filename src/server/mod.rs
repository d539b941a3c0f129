//! The server: the event loops ("shards"), the per-connection state machine, the
//! fan-out hot path, and start-up. Only this module touches sockets and mio.
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
//! - [`startup`]: builds all of the above from a [`Config`] and waits for the end.
//! - `shard`: one event loop; its module doc states the loop's rules.
//! - `conn` (+ `outbox`): one connection and every transition of its state machine.
//! - `handle`: what a connection does with the bytes it reads (HTTP, upgrade, frames).
//! - [`fanout`]: the hot path, one shared frame to every subscriber.
//! - [`tls`] (+ `transport`): certificates and their reload; plain TCP or TLS per
//!   connection, the same byte stream to everything above.
//! - `handshakes`: the TLS handshake pool; its module doc states the rules (the loops
//!   never run handshake crypto, a bounded number of steps in flight, what a flood costs).
//!
//! Each shard owns its connections outright; they share only [`Shared`] (config, the
//! auth flow, metrics, counters), so the hot path takes no lock.

mod conn;
pub mod fanout;
mod handle;
#[cfg(feature = "tls")]
mod handshakes;
mod outbox;
#[cfg(feature = "tls")]
pub mod records;
mod session_limits;
mod shard;
mod startup;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use conn::Outbox;
use crossbeam_channel::Sender;
use mio::Waker;
pub use session_limits::{SessionLimits, SessionPermit};
pub use startup::{StartError, run};
#[cfg(feature = "tls")]
pub use tls::TlsError;

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
    #[cfg(feature = "cluster")]
    pub cluster_health: Option<Arc<crate::cluster::ticks::Health>>,
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
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<tls::Tls>>,
    shutting_down: AtomicBool,
    controls: Vec<(Sender<Control>, Arc<Waker>)>,
}

impl Shared {
    /// Why `/healthz` should answer 503, if it should.
    pub fn unhealthy_reason(&self) -> Option<String> {
        #[cfg(feature = "cluster")]
        return self.cluster_health.as_ref().and_then(|h| h.unhealthy_reason());
        #[cfg(not(feature = "cluster"))]
        None
    }

    /// The price source's state for `/healthz`: a cluster node reports the leader's (as
    /// its newest tick says), a single node its own upstream's book.
    pub fn source_health(&self) -> crate::source::SourceHealth {
        #[cfg(feature = "cluster")]
        if let Some(health) = &self.cluster_health {
            return health.source();
        }
        match self.metrics.source_book() {
            Some(book) => book.health(std::time::Instant::now(), self.config.stale_after),
            None => crate::source::SourceHealth::Simulated,
        }
    }

    /// With `--redis-sentinels`: the master this node's connections use (`host:port`),
    /// since when (Unix seconds), and the changes of master it has seen.
    pub fn redis_master(&self) -> Option<(String, u64, u64)> {
        #[cfg(feature = "cluster")]
        if self.cluster_health.is_some() {
            let m = crate::cluster::target::MASTER.current()?;
            let since = m.since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            return Some((m.addr, since, m.failovers));
        }
        None
    }

    /// Whether this node is one of a cluster's (`--redis`).
    pub fn clustered(&self) -> bool {
        #[cfg(feature = "cluster")]
        return self.cluster_health.is_some();
        #[cfg(not(feature = "cluster"))]
        false
    }

    /// Whether this port speaks TLS (`--tls-cert`/`--tls-key`).
    pub fn speaks_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
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
