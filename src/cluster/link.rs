//! [`RedisLink`]: one synchronous Redis connection that reconnects by itself.
//!
//! The server has no async runtime, so Redis is reached with blocking calls from a
//! thread that may block (the ticker, a worker), never from the mio loop. What this
//! file owns:
//! - Every call is bounded: a connect timeout and read/write timeouts on the socket, so
//!   a Redis that stops answering costs a thread at most one timeout, never a hang.
//! - After a timeout or an I/O error the connection is dropped, because a late reply
//!   would otherwise be read as the answer to the next command. The next call reconnects.
//! - Reconnects are paced by a jittered exponential [`Backoff`]. While it runs, calls
//!   fail at once with [`LinkError::Backoff`]: no spinning and no sleeping in here; the
//!   caller keeps its own rhythm (the next tick, the next job).
//!
//! [`Backoff`] takes `now` as an argument, so its schedule is tested without sleeps.

use std::fmt;
use std::time::{Duration, Instant};

use redis::{Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, ServerErrorKind};

use super::target::{self, RedisTarget};
use crate::backoff::seed as jitter_seed;
pub use crate::backoff::{Backoff, BackoffPolicy};
use crate::metrics::{Label, RedisErrorKind};

/// Timeouts and reconnect pacing of a [`RedisLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Bound on TCP connect plus the connection handshake.
    pub connect_timeout: Duration,
    /// Read and write timeout of every command.
    pub io_timeout: Duration,
    pub backoff: BackoffPolicy,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            connect_timeout: Duration::from_millis(500),
            io_timeout: Duration::from_millis(500),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// Why a [`RedisLink`] call failed, by what the caller should do about it.
#[derive(Debug, Clone)]
pub enum LinkError {
    /// The URL is not a Redis URL. Permanent: fix the configuration.
    Url(RedisError),
    /// Could not connect, or the connection broke. The link reconnects after a backoff.
    Unreachable(RedisError),
    /// Redis did not answer in time. The command may or may not have run; the link
    /// reconnects after a backoff.
    Timeout(RedisError),
    /// An earlier attempt failed and the next connect is not due yet; nothing was sent.
    Backoff { retry_in: Duration },
    /// Redis answered with an error reply (or a reply of an unexpected type), or refused
    /// the connection handshake (authentication).
    Protocol(RedisError),
}

impl LinkError {
    /// Its kind, as the metrics count it.
    pub fn kind(&self) -> RedisErrorKind {
        match self {
            LinkError::Url(_) => RedisErrorKind::Url,
            LinkError::Unreachable(_) => RedisErrorKind::Unreachable,
            LinkError::Timeout(_) => RedisErrorKind::Timeout,
            LinkError::Backoff { .. } => RedisErrorKind::Backoff,
            LinkError::Protocol(_) => RedisErrorKind::Protocol,
        }
    }

    /// A short stable label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        self.kind().value()
    }

    /// Sorts an error from the redis crate; `Url` is only produced by [`RedisLink::new`].
    fn classify(err: RedisError) -> LinkError {
        match LinkError::kind_of(&err) {
            RedisErrorKind::Timeout => LinkError::Timeout(err),
            RedisErrorKind::Unreachable => LinkError::Unreachable(err),
            _ => LinkError::Protocol(err),
        }
    }

    /// The metric label of an error from the redis crate, sorted as [`LinkError`] sorts
    /// it (for callers that hold a connection of their own: the tick subscription).
    pub fn kind_of(err: &RedisError) -> RedisErrorKind {
        if err.is_timeout() {
            RedisErrorKind::Timeout
        } else if err.is_io_error() || err.is_connection_dropped() {
            RedisErrorKind::Unreachable
        } else {
            RedisErrorKind::Protocol
        }
    }

    /// Whether the connection can no longer be trusted to pair requests with replies
    /// (or is talking to a Redis that cannot serve us), so it must be dropped.
    fn breaks_connection(&self) -> bool {
        match self {
            LinkError::Timeout(_) | LinkError::Unreachable(_) => true,
            LinkError::Protocol(err) => {
                err.is_unrecoverable_error()
                    // A demoted primary: reconnecting may reach the new one.
                    || err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            }
            LinkError::Url(_) | LinkError::Backoff { .. } => false,
        }
    }
}

impl LinkError {
    /// What a connection that died while idle reports on its next use: a closed socket,
    /// or `READONLY` from a master demoted since. Redis ran nothing in the second case,
    /// and almost never in the first.
    fn may_be_a_stale_connection(&self) -> bool {
        match self {
            LinkError::Unreachable(_) => true,
            LinkError::Protocol(err) => err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly),
            LinkError::Url(_) | LinkError::Timeout(_) | LinkError::Backoff { .. } => false,
        }
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The URL itself is never printed: it may hold a password.
            LinkError::Url(err) => write!(f, "invalid Redis URL: {err}"),
            LinkError::Unreachable(err) => write!(f, "Redis unreachable: {err}"),
            LinkError::Timeout(err) => write!(f, "Redis timed out: {err}"),
            LinkError::Backoff { retry_in } => {
                write!(f, "Redis reconnect backing off for {} ms", retry_in.as_millis())
            }
            LinkError::Protocol(err) => write!(f, "Redis error: {err}"),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::Url(e) | LinkError::Unreachable(e) | LinkError::Timeout(e) => Some(e),
            LinkError::Protocol(e) => Some(e),
            LinkError::Backoff { .. } => None,
        }
    }
}

/// A lazily connected, self-healing synchronous Redis connection. One per thread: it is
/// `Send` but calls block, so share it by moving it, not by locking it.
pub struct RedisLink {
    /// Resolved again on every connect: with Sentinels, a reconnect finds a new master.
    target: RedisTarget,
    config: LinkConfig,
    conn: Option<Connection>,
    /// [`target::MASTER`]'s generation when `conn` was made (Sentinels only).
    generation: u64,
    backoff: Backoff,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the target: a URL may hold the password.
        f.debug_struct("RedisLink")
            .field("config", &self.config)
            .field("connected", &self.conn.is_some())
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl RedisLink {
    /// Parses `url` (`redis://[user:password@]host[:port][/db]`) with the default
    /// timeouts. Does not connect: the first [`RedisLink::with_conn`] does.
    pub fn new(url: &str) -> Result<RedisLink, LinkError> {
        RedisLink::with_config(url, LinkConfig::default())
    }

    pub fn with_config(url: &str, config: LinkConfig) -> Result<RedisLink, LinkError> {
        RedisLink::to_target(RedisTarget::Url(url.to_owned()), config)
    }

    /// A link to `target`'s master: for Sentinels, resolved anew on every connect.
    pub fn to_target(target: RedisTarget, config: LinkConfig) -> Result<RedisLink, LinkError> {
        if let RedisTarget::Url(url) = &target {
            redis::Client::open(url.as_str()).map_err(LinkError::Url)?;
        }
        let backoff = Backoff::new(config.backoff, jitter_seed());
        Ok(RedisLink { target, config, conn: None, generation: 0, backoff })
    }

    /// Runs `f` on the connection, connecting first if needed (unless the backoff says
    /// not yet). A timeout or I/O error from `f` drops the connection and starts the
    /// backoff; an error reply from Redis leaves the connection in place.
    ///
    /// A connection kept from an earlier call may have died since, with its Redis (a
    /// restart, a failover: the master is gone or was demoted). When `f` fails on such
    /// a connection with a closed socket or `READONLY`, it runs once more at once on a
    /// fresh connection (with Sentinels, to the master they name now), so a failover
    /// costs a caller a reconnect, not an error. `f` may thus run twice; a timeout is
    /// never retried (the command may still be running). Every caller's commands are
    /// safe to repeat: reads, `SET`s, the lease scripts (a repeated publish carries the
    /// same `seq`, which followers drop), a revocation appended twice; a failed login may
    /// count twice.
    pub fn with_conn<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, LinkError> {
        let reused = self.conn.is_some();
        match self.attempt(&mut f, true) {
            Err(err) if reused && err.may_be_a_stale_connection() => self.attempt(&mut f, false),
            result => result,
        }
    }

    fn attempt<T>(
        &mut self,
        f: &mut impl FnMut(&mut Connection) -> RedisResult<T>,
        obey_backoff: bool,
    ) -> Result<T, LinkError> {
        // The Sentinels named another master since this connection was made: drop the
        // connection, and the backoff too. That backoff was earned against the old
        // master while it was down (the revocation feed polls through the same links all
        // through a failover); keeping it would refuse logins with 503 for up to its
        // 2 s cap after the new master is already serving.
        if self.generation != target::MASTER.generation()
            && matches!(self.target, RedisTarget::Sentinels { .. })
        {
            self.conn = None;
            self.generation = target::MASTER.generation();
            self.backoff.on_success();
        }
        // Taken out while in use: if `f` panics, a connection in an unknown state is dropped.
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                if obey_backoff {
                    let now = Instant::now();
                    self.backoff.check(now).map_err(|retry_in| LinkError::Backoff { retry_in })?;
                }
                match self.connect() {
                    Ok(conn) => conn,
                    Err(err) => {
                        self.backoff.on_failure(Instant::now());
                        return Err(err);
                    }
                }
            }
        };
        match f(&mut conn) {
            Ok(value) => {
                self.backoff.on_success();
                // The crate marks a connection it knows is broken; don't keep it.
                if conn.is_open() {
                    self.conn = Some(conn);
                }
                Ok(value)
            }
            Err(err) => {
                let err = LinkError::classify(err);
                if err.breaks_connection() || !conn.is_open() {
                    self.backoff.on_failure(Instant::now());
                } else {
                    // Redis answered: the link itself is healthy.
                    self.backoff.on_success();
                    self.conn = Some(conn);
                }
                Err(err)
            }
        }
    }

    /// Whether a connection is currently open (it may still turn out broken).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drops the connection; the next call reconnects (subject to the backoff).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    fn connect(&mut self) -> Result<Connection, LinkError> {
        self.generation = target::MASTER.generation();
        target::connect(&self.target, self.config.connect_timeout, self.config.io_timeout)
            .map_err(LinkError::classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_redis::TestRedis;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_bad_url_is_a_url_error_and_a_good_one_does_not_connect() {
        let err = RedisLink::new("http://nope").unwrap_err();
        assert_eq!(err.kind_label(), "url");
        // Nothing listens on port 1, yet `new` succeeds: it only parses.
        let link = RedisLink::new("redis://127.0.0.1:1/").unwrap();
        assert!(!link.is_connected());
    }

    #[test]
    fn an_unreachable_redis_fails_once_then_backs_off_without_connecting() {
        let mut link = RedisLink::new("redis://127.0.0.1:1/").unwrap();
        let err = link.with_conn(|c| redis::cmd("PING").query::<String>(c)).unwrap_err();
        assert_eq!(err.kind_label(), "unreachable", "{err}");
        let err = link.with_conn(|c| redis::cmd("PING").query::<String>(c)).unwrap_err();
        match err {
            LinkError::Backoff { retry_in } => assert!(retry_in <= 60 * MS, "{retry_in:?}"),
            other => panic!("expected backoff, got {other}"),
        }
    }

    #[test]
    fn a_connection_that_died_while_idle_costs_a_reconnect_not_an_error() {
        let Some(server) = TestRedis::start() else { return };
        let mut link = RedisLink::new(&server.url()).unwrap();
        let me: i64 = link.with_conn(|c| redis::cmd("CLIENT").arg("ID").query(c)).unwrap();
        // Redis closes our idle connection (as a restart or a failover would).
        let killed: i64 =
            redis::cmd("CLIENT").arg("KILL").arg("ID").arg(me).query(&mut server.conn()).unwrap();
        assert_eq!(killed, 1);
        let mut runs = 0;
        let id: i64 = link
            .with_conn(|c| {
                runs += 1;
                redis::cmd("CLIENT").arg("ID").query(c)
            })
            .unwrap();
        assert_ne!(id, me, "a fresh connection");
        assert_eq!(runs, 2, "once on the dead connection, once on the fresh one");
        // A fresh connection that fails is not retried: that is Redis being down.
        let mut down = RedisLink::new("redis://127.0.0.1:1/").unwrap();
        let mut runs = 0;
        let err = down.with_conn(|c| {
            runs += 1;
            redis::cmd("PING").query::<String>(c)
        });
        assert_eq!(err.unwrap_err().kind_label(), "unreachable");
        assert_eq!(runs, 0, "never connected, so never ran");
    }

    #[test]
    fn a_new_master_ends_the_backoff_earned_against_the_old_one() {
        let target = RedisTarget::Sentinels {
            sentinels: vec!["127.0.0.1:1".into()],
            master: "mymaster".into(),
        };
        let mut link = RedisLink::to_target(target, LinkConfig::default()).unwrap();
        let ping = |link: &mut RedisLink| link.with_conn(|c| redis::cmd("PING").query::<String>(c));
        assert_eq!(ping(&mut link).unwrap_err().kind_label(), "unreachable");
        assert_eq!(ping(&mut link).unwrap_err().kind_label(), "backoff");
        // The Sentinels name another master: the next call tries it at once instead of
        // waiting out the backoff (nothing listens here, so it fails to connect again).
        target::MASTER.note_new_generation_for_tests();
        assert_eq!(ping(&mut link).unwrap_err().kind_label(), "unreachable");
        assert_eq!(ping(&mut link).unwrap_err().kind_label(), "backoff");
    }

    #[test]
    fn an_error_reply_keeps_the_connection_and_a_timeout_drops_it() {
        let Some(server) = TestRedis::start() else { return };
        let config = LinkConfig { io_timeout: 100 * MS, ..LinkConfig::default() };
        let mut link = RedisLink::with_config(&server.url(), config).unwrap();
        let pong: String = link.with_conn(|c| redis::cmd("PING").query(c)).unwrap();
        assert_eq!(pong, "PONG");

        let err = link.with_conn(|c| redis::cmd("NOSUCHCOMMAND").query::<()>(c)).unwrap_err();
        assert_eq!(err.kind_label(), "protocol", "{err}");
        assert!(link.is_connected());

        // BLPOP blocks server-side longer than the read timeout.
        let err = link.with_conn(|c| redis::cmd("BLPOP").arg("nothing").arg(1).query::<()>(c));
        assert_eq!(err.unwrap_err().kind_label(), "timeout");
        assert!(!link.is_connected());

        // The late BLPOP reply must not be read as this PING's answer: a fresh connection.
        let mut pong = None;
        for _ in 0..100 {
            match link.with_conn(|c| redis::cmd("PING").query::<String>(c)) {
                Ok(p) => {
                    pong = Some(p);
                    break;
                }
                Err(LinkError::Backoff { retry_in }) => std::thread::sleep(retry_in),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(pong.as_deref(), Some("PONG"));
    }
}
