//! [`LinkPool`]: a few [`RedisLink`]s shared by the threads that call Redis at once.
//!
//! A [`RedisLink`] is one connection and its calls block, so one link behind one lock
//! would make the workers take turns. The pool holds a small fixed number of links: a
//! call takes the first idle one (round-robin start, `try_lock`), and only when all are
//! busy waits for one. Each link keeps its own reconnect backoff, so a Redis outage
//! costs each caller at most one timeout before the links fail fast.
//!
//! The stores of the cluster ([`super::key_store`], [`super::token_store`],
//! [`super::limiter`]) share one pool and turn its [`LinkError`]s into their own error
//! types with [`db_error`] and [`token_error`], in one place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::{Connection, ErrorKind, RedisResult, ServerErrorKind};

use super::link::{LinkConfig, LinkError, RedisLink};
use super::target::RedisTarget;
use crate::auth::keys::{DbError, DbErrorKind};
use crate::auth::token_store::TokenError;

/// A fixed set of self-healing Redis connections for parallel callers.
#[derive(Debug)]
pub struct LinkPool {
    links: Vec<Mutex<RedisLink>>,
    /// Where the next call starts looking, so the links share the load.
    next: AtomicUsize,
}

impl LinkPool {
    /// `size` links (at least one) to `url`, with the default timeouts. Connects
    /// lazily: only a bad URL fails here.
    pub fn new(url: &str, size: usize) -> Result<LinkPool, LinkError> {
        LinkPool::with_config(url, size, LinkConfig::default())
    }

    pub fn with_config(url: &str, size: usize, config: LinkConfig) -> Result<LinkPool, LinkError> {
        LinkPool::to_target(&RedisTarget::Url(url.to_owned()), size, config)
    }

    /// `size` links to `target`'s master, each resolving it on its own reconnects.
    pub fn to_target(
        target: &RedisTarget,
        size: usize,
        config: LinkConfig,
    ) -> Result<LinkPool, LinkError> {
        let links = (0..size.max(1))
            .map(|_| RedisLink::to_target(target.clone(), config).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LinkPool { links, next: AtomicUsize::new(0) })
    }

    /// How many links the pool holds.
    pub fn size(&self) -> usize {
        self.links.len()
    }

    /// Runs `f` on an idle link's connection (see [`RedisLink::with_conn`]: `f` runs
    /// a second time on a fresh connection when the link's kept one had died), waiting
    /// for one only when every link is busy.
    pub fn with_conn<T>(
        &self,
        f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, LinkError> {
        self.take().with_conn(f)
    }

    fn take(&self) -> MutexGuard<'_, RedisLink> {
        let n = self.links.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.links[(start + i) % n].try_lock() {
                Ok(link) => return link,
                // A panic inside `with_conn` drops the connection it had taken out, so a
                // poisoned link is still consistent.
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.links[start].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A pool error as a key-store error: anything that says "Redis cannot serve now" is
/// [`DbErrorKind::Unreachable`] (the token exchange answers 503); a reply we do not
/// understand is [`DbErrorKind::Other`] (a bug or foreign data: 500).
pub fn db_error(err: LinkError) -> DbError {
    let kind = match &err {
        LinkError::Unreachable(_) | LinkError::Timeout(_) | LinkError::Backoff { .. } => {
            DbErrorKind::Unreachable
        }
        LinkError::Protocol(e) if is_unavailable(e) => DbErrorKind::Unreachable,
        LinkError::Protocol(_) | LinkError::Url(_) => DbErrorKind::Other,
    };
    DbError::new(kind, err)
}

/// A pool error as a token-store error: the store cannot answer.
pub fn token_error(_err: LinkError) -> TokenError {
    TokenError::StoreUnavailable
}

/// Error replies that mean "not now" rather than "wrong request": loading, read-only
/// replica, failover, refused credentials.
fn is_unavailable(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::NoPerm
            )
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;
    use crate::cluster::test_redis::TestRedis;

    #[test]
    fn callers_use_different_links_at_once() {
        let Some(server) = TestRedis::start() else { return };
        let pool = Arc::new(LinkPool::new(&server.url(), 3).unwrap());
        assert_eq!(pool.size(), 3);
        // Three callers each hold a connection while the others take theirs: with one
        // shared link the barrier would never open.
        let barrier = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (pool, barrier) = (pool.clone(), barrier.clone());
                std::thread::spawn(move || {
                    pool.with_conn(|c| {
                        let id: i64 = redis::cmd("CLIENT").arg("ID").query(c)?;
                        barrier.wait();
                        Ok(id)
                    })
                    .unwrap()
                })
            })
            .collect();
        let mut ids: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "three distinct connections");
    }

    #[test]
    fn a_busy_pool_makes_the_caller_wait_rather_than_fail() {
        let Some(server) = TestRedis::start() else { return };
        let pool = Arc::new(LinkPool::new(&server.url(), 1).unwrap());
        let holder = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                pool.with_conn(|c| {
                    std::thread::sleep(Duration::from_millis(50));
                    redis::cmd("PING").query::<String>(c)
                })
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        let pong: String = pool.with_conn(|c| redis::cmd("PING").query(c)).unwrap();
        assert_eq!(pong, "PONG");
        assert_eq!(holder.join().unwrap().unwrap(), "PONG");
    }

    #[test]
    fn an_unreachable_redis_maps_to_unreachable_and_store_unavailable() {
        let pool = LinkPool::new("redis://127.0.0.1:1/", 2).unwrap();
        let err = pool.with_conn(|c| redis::cmd("PING").query::<String>(c)).unwrap_err();
        assert_eq!(db_error(err.clone()).kind, DbErrorKind::Unreachable);
        assert_eq!(token_error(err), TokenError::StoreUnavailable);
        let bad = LinkPool::new("http://nope", 1).unwrap_err();
        assert_eq!(bad.kind_label(), "url");
    }
}
