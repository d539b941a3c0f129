//! [`Lease`]: which node ticks, and the fencing that makes a wrong answer harmless.
//!
//! The leader holds `{prefix}leader = <node_id>:<fence>` with a ttl and renews it well
//! before it expires. Every acquisition takes a new fence from `INCR {prefix}fence`, so
//! fences only grow (while Redis keeps its data). Each step is one Lua script, so no
//! other client's command can land between its read and its write:
//! - acquire or renew: take the key if it is absent, extend it if it is ours, else
//!   report the holder;
//! - release: delete the key only if it still holds our exact value;
//! - publish: write `{prefix}last` and `PUBLISH` the tick only if the key still holds
//!   our exact `<node_id>:<fence>`.
//!
//! The publish check is the guarantee: a leader that was paused past its ttl (swapped
//! out, stopped by a debugger, cut off by the network) wakes up believing it leads, and
//! its ticks are refused by Redis itself. Local clocks only ever make a
//! node step down *earlier* than Redis would (see [`LeaseState::Leader::until`]).
//!
//! `node_id` must be unique per process (two processes sharing one would share a lease):
//! [`unique_node_id`] makes one.

use std::time::{Duration, Instant};

use redis::{Connection, ErrorKind, RedisResult, Script, Value};

use super::Keys;

/// Takes the lease if free (new fence), renews it if ours (same fence).
/// Returns `{1, fence}` if we hold it afterwards, else `{0, value of the holder}`.
const ACQUIRE_OR_RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then
  local fence = redis.call('INCR', KEYS[2])
  -- No NX needed: nothing can set the key between the GET and this SET.
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. string.format('%d', fence), 'PX', ARGV[2])
  return {1, fence}
end
-- The fence is the digits after the last colon, so node ids may contain colons.
local holder, fence = string.match(cur, '^(.*):(%d+)$')
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(fence)}
end
return {0, cur}
";

/// Compare-and-delete: returns 1 if it deleted our lease, 0 if the key was not ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The fenced publish: returns 1 if it stored and published the tick, 0 if the lease is
/// no longer exactly ours (in which case it wrote nothing).
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// What this node is after an acquire-or-renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This node holds the lease with `fence`.
    Leader {
        fence: u64,
        /// The node may act as leader until this instant unless it renews: the `now`
        /// given to [`Lease::try_acquire_or_renew`] plus the ttl. Since `now` was taken
        /// before the request reached Redis, Redis keeps the key at least as long.
        until: Instant,
    },
    /// Another node holds the lease. `leader` is its node id, or `None` if the key holds
    /// something that is not `<node_id>:<fence>` (written by something else).
    Follower { leader: Option<String> },
}

/// One node's handle on the cluster lease. Holds no connection and no state of its own
/// beyond its identity: Redis is the only truth about who leads.
#[derive(Debug, Clone)]
pub struct Lease {
    keys: Keys,
    node_id: String,
    ttl: Duration,
    acquire: Script,
    release: Script,
    publish: Script,
}

impl Lease {
    /// `prefix` as in [`Keys::new`]; `ttl` is how long a silent leader keeps the lease
    /// (renew at a fraction of it, e.g. a third).
    pub fn new(prefix: &str, node_id: String, ttl: Duration) -> Lease {
        Lease {
            keys: Keys::new(prefix),
            node_id,
            ttl,
            acquire: Script::new(ACQUIRE_OR_RENEW),
            release: Script::new(RELEASE),
            publish: Script::new(PUBLISH),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Takes the lease if nobody holds it, renews it if this node does. Take `now` just
    /// before the call: the returned deadline is measured from it.
    ///
    /// A node that lost a reply (timeout) and calls again gets its lease back with the
    /// same fence, since the key names it.
    pub fn try_acquire_or_renew(
        &self,
        conn: &mut Connection,
        now: Instant,
    ) -> RedisResult<LeaseState> {
        let reply: (i64, Value) = self
            .acquire
            .key(&self.keys.leader)
            .key(&self.keys.fence)
            .arg(&self.node_id)
            .arg(self.ttl_ms())
            .invoke(conn)?;
        match reply {
            (1, Value::Int(fence)) => {
                let fence = u64::try_from(fence)
                    .map_err(|_| type_error("lease script returned a negative fence"))?;
                Ok(LeaseState::Leader { fence, until: now + self.ttl })
            }
            (0, Value::BulkString(holder)) => {
                Ok(LeaseState::Follower { leader: holder_node(&holder).map(str::to_owned) })
            }
            _ => Err(type_error("lease script returned an unexpected reply")),
        }
    }

    /// Gives the lease up (on shutdown) so another node need not wait out the ttl.
    /// Returns whether it was still ours with `fence`.
    pub fn release(&self, conn: &mut Connection, fence: u64) -> RedisResult<bool> {
        let deleted: i64 =
            self.release.key(&self.keys.leader).arg(self.value(fence)).invoke(conn)?;
        Ok(deleted == 1)
    }

    /// Stores `payload` as `{prefix}last` and publishes it on `channel`, both only if
    /// this node still holds the lease with `fence`. Returns whether it did; `false`
    /// means step down. Nothing is written when it returns `false`.
    pub fn publish_tick(
        &self,
        conn: &mut Connection,
        fence: u64,
        channel: &str,
        payload: &[u8],
    ) -> RedisResult<bool> {
        let published: i64 = self
            .publish
            .key(&self.keys.leader)
            .key(&self.keys.last)
            .arg(self.value(fence))
            .arg(channel)
            .arg(payload)
            .invoke(conn)?;
        Ok(published == 1)
    }

    /// The leader key's value while this node leads with `fence`.
    fn value(&self, fence: u64) -> String {
        format!("{}:{fence}", self.node_id)
    }

    /// At least 1: `PX 0` is an error, and a zero ttl would be a lease nobody holds.
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

/// The node id in a `<node_id>:<fence>` value (everything before the last colon, if
/// digits follow it).
fn holder_node(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (node, fence) = value.rsplit_once(':')?;
    let digits = !fence.is_empty() && fence.bytes().all(|b| b.is_ascii_digit());
    digits.then_some(node)
}

fn type_error(what: &'static str) -> redis::RedisError {
    (ErrorKind::UnexpectedReturnType, what).into()
}

/// `name-<pid>-<8 random hex digits>`: readable in logs, unique per process even when
/// two nodes on one host share a name (or a restarted node reuses its pid).
pub fn unique_node_id(name: &str) -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the clock's nanoseconds still differ between processes.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    format!("{name}-{}-{:08x}", std::process::id(), u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_redis::TestRedis;
    use redis::Commands;

    const TTL: Duration = Duration::from_millis(300);

    fn leader_fence(state: LeaseState) -> u64 {
        match state {
            LeaseState::Leader { fence, .. } => fence,
            other => panic!("expected leader, got {other:?}"),
        }
    }

    #[test]
    fn holder_node_reads_the_id_before_the_last_colon() {
        assert_eq!(holder_node(b"a:1"), Some("a"));
        assert_eq!(holder_node(b"host:8080:12"), Some("host:8080"));
        assert_eq!(holder_node(b":5"), Some(""));
        assert_eq!(holder_node(b"a:"), None);
        assert_eq!(holder_node(b"a:1x"), None);
        assert_eq!(holder_node(b"nocolon"), None);
        assert_eq!(holder_node(&[0xff, b':', b'1']), None);
    }

    #[test]
    fn unique_node_ids_differ_and_keep_the_name() {
        let (a, b) = (unique_node_id("node"), unique_node_id("node"));
        assert!(a.starts_with("node-") && b.starts_with("node-"));
        assert_ne!(a, b);
    }

    #[test]
    fn only_one_of_two_nodes_leads_and_renewing_keeps_the_fence() {
        let Some(server) = TestRedis::start() else { return };
        let mut conn = server.conn();
        let a = Lease::new("t:", "a".into(), TTL);
        let b = Lease::new("t:", "b".into(), TTL);
        let now = Instant::now();
        let fence = leader_fence(a.try_acquire_or_renew(&mut conn, now).unwrap());
        assert_eq!(fence, 1);
        let state = b.try_acquire_or_renew(&mut conn, now).unwrap();
        assert_eq!(state, LeaseState::Follower { leader: Some("a".into()) });
        // Renewing (or retrying after a lost reply) returns the same fence.
        let renewed = a.try_acquire_or_renew(&mut conn, now).unwrap();
        assert_eq!(renewed, LeaseState::Leader { fence, until: now + TTL });
        let value: String = conn.get("t:leader").unwrap();
        assert_eq!(value, "a:1");
        let pttl: i64 = conn.pttl("t:leader").unwrap();
        assert!(pttl > 0 && pttl <= 300, "{pttl}");
    }

    #[test]
    fn a_node_id_that_extends_another_does_not_steal_its_lease() {
        let Some(server) = TestRedis::start() else { return };
        let mut conn = server.conn();
        let now = Instant::now();
        let a = Lease::new("t:", "a".into(), TTL);
        let a1 = Lease::new("t:", "a:1".into(), TTL);
        leader_fence(a1.try_acquire_or_renew(&mut conn, now).unwrap());
        // The value is "a:1:1"; "a" must not read it as its own lease with fence "1:1".
        let state = a.try_acquire_or_renew(&mut conn, now).unwrap();
        assert_eq!(state, LeaseState::Follower { leader: Some("a:1".into()) });
        assert!(!a.publish_tick(&mut conn, 1, "t:ticks", b"x").unwrap());
    }

    #[test]
    fn release_deletes_only_our_own_lease() {
        let Some(server) = TestRedis::start() else { return };
        let mut conn = server.conn();
        let now = Instant::now();
        let a = Lease::new("t:", "a".into(), TTL);
        let b = Lease::new("t:", "b".into(), TTL);
        let fence = leader_fence(a.try_acquire_or_renew(&mut conn, now).unwrap());
        assert!(!b.release(&mut conn, fence).unwrap());
        assert!(!a.release(&mut conn, fence + 1).unwrap());
        assert!(a.release(&mut conn, fence).unwrap());
        // Released: the other node takes it at once, with a new fence.
        assert_eq!(leader_fence(b.try_acquire_or_renew(&mut conn, now).unwrap()), fence + 1);
    }

    #[test]
    fn an_ex_leader_cannot_publish_after_its_lease_expired() {
        let Some(server) = TestRedis::start() else { return };
        let mut conn = server.conn();
        let mut sub = server.conn();
        sub.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut sub = sub.as_pubsub();
        sub.subscribe("t:ticks").unwrap();

        let a = Lease::new("t:", "a".into(), TTL);
        let b = Lease::new("t:", "b".into(), TTL);
        let fence_a = leader_fence(a.try_acquire_or_renew(&mut conn, Instant::now()).unwrap());
        assert!(a.publish_tick(&mut conn, fence_a, "t:ticks", b"from a").unwrap());
        let msg = sub.get_message().unwrap();
        assert_eq!(msg.get_payload_bytes(), b"from a");

        // `a` stops renewing (paused); `b` polls until Redis expires a's key.
        let deadline = Instant::now() + Duration::from_secs(5);
        let fence_b = loop {
            match b.try_acquire_or_renew(&mut conn, Instant::now()).unwrap() {
                LeaseState::Leader { fence, .. } => break fence,
                LeaseState::Follower { leader } => assert_eq!(leader.as_deref(), Some("a")),
            }
            assert!(Instant::now() < deadline, "b never took the lease");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(fence_b > fence_a);

        // `a` wakes up and tries to publish with its old fence: refused, nothing written.
        assert!(!a.publish_tick(&mut conn, fence_a, "t:ticks", b"stale a").unwrap());
        let last: Vec<u8> = conn.get("t:last").unwrap();
        assert_eq!(last, b"from a");
        assert!(b.publish_tick(&mut conn, fence_b, "t:ticks", b"from b").unwrap());
        // Pub/sub keeps order: had a's publish gone out, it would arrive before b's.
        let msg = sub.get_message().unwrap();
        assert_eq!(msg.get_payload_bytes(), b"from b");
        let last: Vec<u8> = conn.get("t:last").unwrap();
        assert_eq!(last, b"from b");
        // And `a` renewing now learns it is a follower.
        let state = a.try_acquire_or_renew(&mut conn, Instant::now()).unwrap();
        assert_eq!(state, LeaseState::Follower { leader: Some("b".into()) });
    }
}
