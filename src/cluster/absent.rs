//! A build without the `cluster` feature: the cluster's seam (`node.rs` in a full build)
//! under the same names, so start-up, `/healthz` and the `keys` CLI need no `cfg`.
//!
//! The builders answer `None` ("this build has no cluster"; the caller says so in its
//! own terms), and the types have no values: code that holds one cannot run here. The
//! configuration refuses `--redis` and `--redis-sentinels` in such a build anyway.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::auth::key_store::KeyAdmin;
use crate::auth::keys::DbError;
use crate::auth::token::TokenKey;
use crate::config::{Config, RedisTarget};
use crate::metrics::Metrics;
use crate::source::{PriceSource, SourceHealth};
use crate::symbols::sets::SetRegistry;
use crate::ticker::Subscriber;

/// Why a Redis connection cannot be made: never, here.
#[derive(Debug)]
pub enum LinkError {}

impl fmt::Display for LinkError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for LinkError {}

/// A cluster node's link to the cluster: none here.
#[derive(Debug)]
pub enum Health {}

impl Health {
    pub fn unhealthy_reason(&self) -> Option<String> {
        match *self {}
    }

    pub fn source(&self) -> SourceHealth {
        match *self {}
    }
}

/// The tick plane of a cluster node: none here.
pub enum ClusterTicker {}

impl ClusterTicker {
    pub fn stop(self) {
        match self {}
    }
}

/// A cluster node's auth flow and the rest of the node: none here.
pub struct ClusterParts {
    pub auth: Auth,
    pub node: Node,
}

/// One node of a cluster: none here.
pub enum Node {}

/// Always `None`: this build has no cluster.
pub fn join(
    _config: &Config,
    _target: RedisTarget,
    _key: TokenKey,
    _metrics: Arc<Metrics>,
) -> Option<Result<ClusterParts, LinkError>> {
    None
}

impl Node {
    pub fn health(&self) -> Arc<Health> {
        match *self {}
    }

    pub fn start_ticker(
        self,
        _source: PriceSource,
        _interval: Duration,
        _subscribers: Vec<Subscriber>,
        _metrics: Arc<Metrics>,
        _sets: Arc<SetRegistry>,
    ) -> std::io::Result<ClusterTicker> {
        match self {}
    }
}

/// No master: this build has no cluster.
pub fn current_master() -> Option<(String, u64, u64)> {
    None
}

/// The cluster's keys: none here.
pub enum AdminKeys {}

/// Always `None`: this build has no cluster.
pub fn admin_keys(_target: &RedisTarget) -> Option<Result<AdminKeys, LinkError>> {
    None
}

impl AdminKeys {
    pub fn into_store(self) -> Box<dyn KeyAdmin> {
        match self {}
    }

    pub fn import_sqlite(
        &self,
        _conn: &rusqlite::Connection,
        _demo_key_file: &Path,
    ) -> Result<String, DbError> {
        match *self {}
    }
}

/// The `keys` CLI in a build without the cluster (`node.rs` has the other build's).
#[cfg(test)]
mod tests {
    use crate::cli::CliError;
    use crate::cli::tests::run;

    #[test]
    fn a_build_without_the_cluster_refuses_redis_and_touches_no_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        for args in [
            &["list", "--db", db_arg, "--redis", "redis://127.0.0.1:1/"][..],
            &["import", "--db", db_arg, "--redis", "redis://127.0.0.1:1/"][..],
        ] {
            let err = run(args).unwrap_err();
            assert!(matches!(err, CliError::Usage(ref e) if e.contains("no `cluster`")), "{err}");
        }
        assert!(!db.exists(), "refused before any database is opened");
    }
}
