//! Where a connection to the cluster's Redis goes: the one seam between a fixed URL
//! (`--redis`) and Redis Sentinel (`--redis-sentinels`).
//!
//! Every connection the cluster opens (the lease, the tick subscription, the pool the
//! workers and the revocation feed share) is made by [`connect`]. For a URL that is a
//! plain connect. For Sentinels it is, each time:
//! 1. ask the Sentinels in order for `SENTINEL get-master-addr-by-name NAME` (a Sentinel
//!    that is down costs one connect timeout);
//! 2. connect to the address named and ask `ROLE`: one that is not a master (a master
//!    that came back as a replica, named by a Sentinel that has not heard of the
//!    failover yet) is passed over for the next Sentinel's answer; when none is a
//!    master the result is `READONLY`, so the caller backs off and asks again instead of
//!    writing to a replica;
//! 3. note the address in [`MASTER`]: the log, `/healthz` and
//!    `ticker_redis_failovers_total` say which master this node uses and when it changed.
//!
//! A switchover leaves the old master running and taking writes until Sentinel turns
//! it into a replica, seconds later. So one thread per node asks the Sentinels every
//! second ([`check_master`]); when they name another master, every link drops its
//! connection before its next call ([`MasterWatch::generation`]).
//!
//! Nothing else changes with Sentinel: a connection that breaks, times out or answers a
//! write with `READONLY` is dropped ([`super::link`]), and the next connection resolves
//! the master again. The lease's fence and the followers' `seq` rule are enforced by
//! Redis and by the follow thread, whichever master serves them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use redis::{Connection, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

pub use crate::config::redis::RedisTarget;

/// Opens a connection to the target's current master, each read and write bounded by
/// `io_timeout` (the connect, and each Sentinel question, by `connect_timeout`).
pub fn connect(
    target: &RedisTarget,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> RedisResult<Connection> {
    match target {
        RedisTarget::Url(url) => open(url, connect_timeout, io_timeout),
        RedisTarget::Sentinels { sentinels, master } => {
            let (conn, addr) = find_master(sentinels, master, connect_timeout, io_timeout)?;
            MASTER.note(&addr, SystemTime::now());
            Ok(conn)
        }
    }
}

/// Asks the Sentinels whether the master moved away from the one this process's
/// connections use (a switchover leaves the old master running, and taking writes, for
/// seconds). If it did, records the new one and moves [`MasterWatch::generation`] on, so
/// every link drops its connection before its next call. Returns whether it moved.
pub fn check_master(target: &RedisTarget, timeout: Duration) -> bool {
    let RedisTarget::Sentinels { sentinels, master } = target else { return false };
    let Some(current) = MASTER.current() else { return false };
    match find_master(sentinels, master, timeout, timeout) {
        Ok((_, addr)) if addr != current.addr => MASTER.note(&addr, SystemTime::now()),
        _ => false,
    }
}

/// A connection to the master, and its `host:port`: the first address a Sentinel names
/// that says `ROLE` master. A Sentinel that is down or names a non-master (it has not
/// heard of the failover yet) is passed over for the next one.
fn find_master(
    sentinels: &[String],
    master: &str,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> RedisResult<(Connection, String)> {
    let mut last = RedisError::from((ErrorKind::EmptySentinelList, "no Sentinel configured"));
    let mut tried: Vec<String> = Vec::new();
    for sentinel in sentinels {
        let addr = match ask_sentinel(sentinel, master, connect_timeout) {
            Ok(addr) => addr,
            Err(e) => {
                last = e;
                continue;
            }
        };
        if tried.contains(&addr) {
            continue;
        }
        match open_master(&addr, connect_timeout, io_timeout) {
            Ok(conn) => return Ok((conn, addr)),
            Err(e) => last = e,
        }
        tried.push(addr);
    }
    Err(last)
}

/// The master's `host:port` as one Sentinel names it.
fn ask_sentinel(sentinel: &str, master: &str, timeout: Duration) -> RedisResult<String> {
    let mut conn = open(&format!("redis://{sentinel}/"), timeout, timeout)?;
    let named: Option<(String, u16)> =
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).query(&mut conn)?;
    match named {
        Some((host, port)) if host.contains(':') => Ok(format!("[{host}]:{port}")),
        Some((host, port)) => Ok(format!("{host}:{port}")),
        None => Err(RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "a Sentinel does not know the --redis-master name",
        ))),
    }
}

/// A connection to `addr` if it says it is a master; `READONLY` if not (a master that
/// came back as a replica, or a replica not promoted yet).
fn open_master(
    addr: &str,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> RedisResult<Connection> {
    let mut conn = open(&format!("redis://{addr}/"), connect_timeout, io_timeout)?;
    let role: Vec<Value> = redis::cmd("ROLE").query(&mut conn)?;
    if !matches!(role.first(), Some(Value::BulkString(r)) if r == b"master") {
        return Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "the Sentinels' master is not a master (yet)",
        )));
    }
    Ok(conn)
}

fn open(url: &str, connect_timeout: Duration, io_timeout: Duration) -> RedisResult<Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(connect_timeout)?;
    // The crate clears its handshake timeouts; every command must be bounded too.
    conn.set_read_timeout(Some(io_timeout))?;
    conn.set_write_timeout(Some(io_timeout))?;
    Ok(conn)
}

/// The master this process's connections use, and how often it changed. One per
/// process: a node talks to one cluster, and every thread's connection reports here.
pub static MASTER: MasterWatch = MasterWatch::new();

/// The last master a connection was verified against (Sentinel mode only).
#[derive(Debug)]
pub struct MasterWatch {
    state: Mutex<Option<Master>>,
    /// Moved on by [`check_master`] when the Sentinels name a new master: a connection
    /// made under an older generation is dropped before its next use.
    generation: AtomicU64,
}

/// One verified master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// `host:port`, as the Sentinels name it.
    pub addr: String,
    /// When this node first connected to it.
    pub since: SystemTime,
    /// Changes of master seen by this node (failovers, switchovers).
    pub failovers: u64,
}

impl MasterWatch {
    pub const fn new() -> MasterWatch {
        MasterWatch { state: Mutex::new(None), generation: AtomicU64::new(0) }
    }

    /// Moved on by [`check_master`] when the Sentinels name a new master: a connection
    /// made under an older generation is dropped before its next use. Take it before
    /// connecting.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The current master, `None` before the first Sentinel connection.
    pub fn current(&self) -> Option<Master> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Changes of master seen so far.
    pub fn failovers(&self) -> u64 {
        self.current().map_or(0, |m| m.failovers)
    }

    /// Records a verified connection to `addr`; logs the first master and every change.
    /// A change moves [`MasterWatch::generation`] on, whoever saw it first (the watch
    /// thread, or a link that reconnected by itself), so every other link drops its
    /// connection to the old master and the backoff it earned there. Returns whether
    /// the master changed (the first one is not a change).
    pub fn note(&self, addr: &str, now: SystemTime) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *state {
            Some(m) if m.addr == addr => false,
            Some(m) => {
                // Generation first: once `/healthz` names the new master, no link will
                // use a connection to the old one again.
                self.generation.fetch_add(1, Ordering::Relaxed);
                crate::warn!("cluster: Redis master changed", from = m.addr, to = addr);
                *m = Master { addr: addr.to_owned(), since: now, failovers: m.failovers + 1 };
                true
            }
            None => {
                crate::info!("cluster: Redis master", addr = addr);
                *state = Some(Master { addr: addr.to_owned(), since: now, failovers: 0 });
                false
            }
        }
    }
}

#[cfg(test)]
impl MasterWatch {
    /// What a change of master does to the links, without a Sentinel.
    pub fn note_new_generation_for_tests(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for MasterWatch {
    fn default() -> MasterWatch {
        MasterWatch::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_watch_counts_changes_of_master_not_reconnects() {
        let watch = MasterWatch::new();
        let t0 = SystemTime::UNIX_EPOCH;
        assert_eq!(watch.current(), None);
        assert!(!watch.note("10.0.0.1:6379", t0));
        assert!(!watch.note("10.0.0.1:6379", t0 + 5 * MS));
        assert_eq!(watch.failovers(), 0);
        assert_eq!(watch.generation(), 0, "the first master and reconnects to it are no change");
        assert!(watch.note("10.0.0.2:6379", t0 + 9 * MS));
        assert_eq!(watch.generation(), 1, "every link drops its connection to the old one");
        let m = watch.current().unwrap();
        assert_eq!((m.addr.as_str(), m.since, m.failovers), ("10.0.0.2:6379", t0 + 9 * MS, 1));
    }

    #[test]
    fn no_sentinel_answering_is_an_io_error_and_the_caller_backs_off() {
        let target = RedisTarget::Sentinels {
            sentinels: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            master: "mymaster".into(),
        };
        let err = connect(&target, 200 * MS, 200 * MS).err().expect("nothing listens there");
        assert!(err.is_io_error() || err.is_connection_refusal(), "{err}");
    }

    #[test]
    fn a_sentinel_that_does_not_know_the_name_says_so() {
        // A plain Redis answers SENTINEL with an error, not a master: the caller must
        // not take that for an address.
        let Some(server) = super::super::test_redis::TestRedis::start() else { return };
        let addr = server.url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let target = RedisTarget::Sentinels { sentinels: vec![addr], master: "m".into() };
        assert!(connect(&target, 500 * MS, 500 * MS).is_err());
    }
}
