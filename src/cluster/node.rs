//! The way into the cluster from outside it: what start-up and the `keys` CLI build
//! when the configuration names a Redis (`--redis` or `--redis-sentinels`).
//!
//! - [`join`]: a node's auth flow on the shared Redis (keys, tokens, login limit), and
//!   its [`Node`], which later starts the tick plane ([`Node::start_ticker`]);
//! - [`admin_keys`]: the cluster's keys as the `keys` CLI manages them;
//! - [`current_master`]: the master this process's connections use (`/healthz`).
//!
//! A build without the `cluster` feature has the same names (`absent.rs`): the builders
//! answer `None`, "not built", and the types have no values, so their callers need no
//! `cfg` of their own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::key_store::RedisKeyStore;
use super::limiter::RedisLimiter;
use super::link::{LinkConfig, LinkError};
use super::pool::LinkPool;
use super::target::{MASTER, RedisTarget};
use super::ticks::{ClusterTicker, Health};
use super::token_store::RedisTokenStore;
use crate::auth::Auth;
use crate::auth::key_store::KeyAdmin;
use crate::auth::keys::DbError;
use crate::auth::ratelimit::LOGIN_WINDOW;
use crate::auth::token::{TokenKey, Tokens};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::source::PriceSource;
use crate::symbols::sets::SetRegistry;
use crate::ticker::Subscriber;

/// A cluster node's auth flow, and the rest of the node for later in start-up.
pub struct ClusterParts {
    pub auth: Auth,
    pub node: Node,
}

/// One node of a cluster, between its auth flow and its tick plane.
pub struct Node {
    target: RedisTarget,
    health: Arc<Health>,
}

/// A cluster node's auth flow: keys, tokens and the login limit in the shared Redis.
/// `None` in a build without the cluster.
pub fn join(
    config: &Config,
    target: RedisTarget,
    key: TokenKey,
    metrics: Arc<Metrics>,
) -> Option<Result<ClusterParts, LinkError>> {
    Some(join_cluster(config, target, key, metrics))
}

fn join_cluster(
    config: &Config,
    target: RedisTarget,
    key: TokenKey,
    metrics: Arc<Metrics>,
) -> Result<ClusterParts, LinkError> {
    let (ttl, failures) = (config.token_ttl, config.login_failures_per_minute);
    if config.token_key.is_none() {
        crate::warn!(
            "cluster: without TICKER_TOKEN_KEY a token works only on the node that made it"
        );
    }
    // One connection per worker (they run every blocking call) and one for the watcher.
    let pool = Arc::new(LinkPool::to_target(&target, config.workers + 1, LinkConfig::default())?);
    let prefix = super::DEFAULT_PREFIX;
    let tokens = RedisTokenStore::new(pool.clone(), prefix).tokens_per_key(config.per_key_bound());
    let auth = Auth::new(
        Tokens::new(key, ttl, Box::new(tokens)),
        Box::new(RedisKeyStore::new(pool.clone(), prefix)),
        Box::new(RedisLimiter::new(pool, prefix, failures, LOGIN_WINDOW)),
        config.login_concurrency,
        metrics,
    );
    Ok(ClusterParts { auth, node: Node { target, health: Arc::new(Health::default()) } })
}

impl Node {
    /// Whether this node is connected to the cluster, for `/healthz`.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Starts the tick plane: this node follows the leader's ticks, and ticks from
    /// `source` while it leads.
    pub fn start_ticker(
        self,
        source: PriceSource,
        interval: Duration,
        subscribers: Vec<Subscriber>,
        metrics: Arc<Metrics>,
        sets: Arc<SetRegistry>,
    ) -> std::io::Result<ClusterTicker> {
        ClusterTicker::start(
            self.target,
            super::DEFAULT_PREFIX,
            source,
            interval,
            subscribers,
            metrics,
            self.health,
            sets,
        )
    }
}

/// With `--redis-sentinels`: the master this process's connections use (`host:port`),
/// since when (Unix seconds), and the changes of master it has seen.
pub fn current_master() -> Option<(String, u64, u64)> {
    let m = MASTER.current()?;
    let since = m.since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Some((m.addr, since, m.failovers))
}

/// The cluster's keys, as the `keys` CLI manages them.
pub struct AdminKeys(RedisKeyStore);

/// The cluster's keys at `target`, with the CLI's bounds (longer than a server's: a
/// person waits, not a request). `None` in a build without the cluster.
pub fn admin_keys(target: &RedisTarget) -> Option<Result<AdminKeys, LinkError>> {
    let link = LinkConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(5),
        ..LinkConfig::default()
    };
    let pool = LinkPool::to_target(target, 1, link);
    Some(pool.map(|pool| AdminKeys(RedisKeyStore::new(Arc::new(pool), super::DEFAULT_PREFIX))))
}

impl AdminKeys {
    /// `keys create`, `list`, `revoke`: through the seam the SQLite store shares.
    pub fn into_store(self) -> Box<dyn KeyAdmin> {
        Box::new(self.0)
    }

    /// `keys import`: a single node's SQLite store (`conn`, with its demo key file) into
    /// the cluster; the summary to print.
    pub fn import_sqlite(
        &self,
        conn: &rusqlite::Connection,
        demo_key_file: &Path,
    ) -> Result<String, DbError> {
        Ok(self.0.import_from_sqlite(conn, demo_key_file)?.to_string())
    }
}

/// The `keys` CLI's cluster side, in a build with the cluster (`absent.rs` has the
/// other build's; the tests against a real Redis are in `key_store/cli_tests.rs`).
#[cfg(test)]
mod tests {
    use crate::auth::keys::DbErrorKind;
    use crate::cli::CliError;
    use crate::cli::tests::run;

    #[test]
    fn import_needs_the_cluster_and_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("missing.db");
        let db_arg = db.to_str().unwrap();
        assert!(matches!(run(&["import", "--db", db_arg]), Err(CliError::Usage(_))));
        let err = run(&["import", "--db", db_arg, "--redis", "redis://127.0.0.1:1/"]);
        assert!(matches!(err, Err(CliError::NoDatabase(ref p)) if *p == db), "{err:?}");
        assert!(!db.exists(), "an import never creates a database");
        assert!(matches!(run(&["list", "--redis", "http://x"]), Err(CliError::Config(_))));
    }

    #[test]
    fn an_unreachable_cluster_is_a_clear_error() {
        let err = run(&["list", "--redis", "redis://127.0.0.1:1/"]).unwrap_err();
        assert!(matches!(err, CliError::Db(ref e) if e.kind == DbErrorKind::Unreachable), "{err}");
    }
}
