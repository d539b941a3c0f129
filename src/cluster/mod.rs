//! Cluster mode: N nodes share one Redis, one of them (the leader) ticks, and every node
//! fans the leader's ticks out to its own subscribers, so the frames for one `seq` are
//! byte-identical on every node.
//!
//! The way in from outside: [`node`] ([`join`] for start-up, [`admin_keys`] for the
//! `keys` CLI), re-exported here. A build without the `cluster` feature mounts
//! `absent.rs` as this module instead: the same names, answering "not built".
//!
//! The building blocks, each in its own file:
//! - [`link`]: [`link::RedisLink`], one synchronous connection that reconnects by itself,
//!   paced by a jittered backoff, with timeouts on every call (no async runtime, ever).
//! - [`lease`]: [`lease::Lease`], leader election with a fencing token; the only way to
//!   publish a tick is through it, and a node that lost the lease cannot publish.
//! - [`leadership`]: [`leadership::Leadership`], the lead thread's decisions (contend,
//!   renew, publish, step down) as functions of `now` and Redis's replies, without I/O.
//! - [`target`]: where a connection goes, a fixed URL or the master the Redis Sentinels
//!   name at that moment ([`target::connect`]); every link resolves it on reconnect.
//! - [`wire`]: [`wire::TickData`], a tick as data on the Redis channel (not a WebSocket
//!   frame), and [`wire::last_tick`] for a new leader to continue `seq` and prices.
//!
//! # Redis key layout
//!
//! Every key and channel lives under one prefix ([`DEFAULT_PREFIX`], `ticker:`), so
//! several clusters can share a Redis. [`Keys`] is the one place the names are built.
//!
//! | name | type | written by | content |
//! |---|---|---|---|
//! | `{prefix}leader` | string, `PX` ttl | [`lease`] scripts | `<node_id>:<fence>` of the leader |
//! | `{prefix}fence` | integer, no ttl | [`lease`] acquire script | `INCR`ed on every acquisition |
//! | `{prefix}last` | string, no ttl | [`lease`] publish script | the last published [`wire::TickData`] |
//! | `{prefix}ticks` | pub/sub channel | [`lease`] publish script | every [`wire::TickData`], in order |
//! | `{prefix}key:<sha256>` | hash, no ttl | [`key_store`] scripts | one API key by the hex SHA-256 of its plaintext: `id`, `user_id`, `role`, `prefix` (its first 6 characters), `created_at`, `revoked_at` (absent while live); never the key itself |
//! | `{prefix}keyid:<id>` | string, no ttl | [`key_store`] scripts | the SHA-256 of key `<id>` (revoke by id, list) |
//! | `{prefix}key-ids` | integer, no ttl | [`key_store`] scripts | the last key id given (`INCR`; raised to the ids an import keeps) |
//! | `{prefix}revlog` | list, no ttl | [`key_store`] scripts | the revocation feed: `k:<id>` (a key) or `t:<hex token id>` (one revoked token); its oldest half is trimmed past 100 000 entries |
//! | `{prefix}revlog-base` | integer, no ttl | [`key_store`] scripts | entries trimmed off the head of `revlog`; a feed cursor is `revlog-base + LLEN` |
//! | `{prefix}demo-key` | string, no ttl | [`key_store`] demo script | the demo key's plaintext, for demos only (the cluster's `demo-api-key` file) |
//! | `{prefix}tok:<sha256>` | string, `EX` token ttl | [`token_store`] | compact JSON of one token, by the hex SHA-256 of its random part (never the token) |
//! | `{prefix}keytoks:<id>` | sorted set, ttl of its latest token | [`token_store`] scripts | the token hashes of key `<id>`, scored by expiry (revoking a key ends them all) |
//! | `{prefix}login:<ip>` | integer, `PX` window | [`limiter`] script | failed logins from `<ip>` in its current window |
//!
//! Invariants:
//! - `{prefix}last` and `{prefix}ticks` are written only by the publish script, in the
//!   same atomic step, and only while `{prefix}leader` still names the publisher and its
//!   fence. So they never carry a tick from a leader that lost its lease.
//! - Fences grow while Redis keeps its data. A Redis that restarts empty (no persistence)
//!   starts fences again at 1: a consumer must treat a smaller fence as a Redis reset,
//!   not as a stale leader, or it would ignore the new leader forever.

pub mod key_store;
pub mod leadership;
pub mod lease;
pub mod limiter;
pub mod link;
pub mod node;
pub mod pool;
pub mod target;
pub mod ticks;
pub mod token_store;
pub mod wire;

#[cfg(test)]
mod test_redis;

pub use link::LinkError;
pub use node::{AdminKeys, ClusterParts, Node, admin_keys, current_master, join};
pub use ticks::{ClusterTicker, Health};

/// The prefix every key and channel gets unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "ticker:";

/// The full names of the cluster's keys and channel under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `{prefix}leader`: `<node_id>:<fence>` of the lease holder, with a ttl.
    pub leader: String,
    /// `{prefix}fence`: the fencing counter.
    pub fence: String,
    /// `{prefix}last`: the last published tick.
    pub last: String,
    /// `{prefix}ticks`: the pub/sub channel of ticks.
    pub ticks: String,
    /// `{prefix}key-ids`: the API key id counter.
    pub key_ids: String,
    /// `{prefix}revlog`: the revocation feed.
    pub revlog: String,
    /// `{prefix}revlog-base`: how many entries were trimmed off the feed's head.
    pub revlog_base: String,
    /// `{prefix}demo-key`: the demo key's plaintext.
    pub demo_key: String,
    /// The prefix itself, for the names built per key, token or address below.
    pub prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            leader: format!("{prefix}leader"),
            fence: format!("{prefix}fence"),
            last: format!("{prefix}last"),
            ticks: format!("{prefix}ticks"),
            key_ids: format!("{prefix}key-ids"),
            revlog: format!("{prefix}revlog"),
            revlog_base: format!("{prefix}revlog-base"),
            demo_key: format!("{prefix}demo-key"),
            prefix: prefix.to_owned(),
        }
    }

    /// `{prefix}key:<sha256>`: an API key's record, by [`crate::auth::keys::hash_key`].
    /// With `""`, the name prefix scripts append a hash to.
    pub fn api_key(&self, sha256_hex: &str) -> String {
        format!("{}key:{sha256_hex}", self.prefix)
    }

    /// `{prefix}keyid:<id>`, or with `""` the name prefix scripts append an id to.
    pub fn api_key_id(&self, id: &str) -> String {
        format!("{}keyid:{id}", self.prefix)
    }

    /// `{prefix}tok:<sha256>`: a token's entry, by the hash of its random part. With
    /// `""`, the name prefix scripts append a hash to.
    pub fn token(&self, sha256_hex: &str) -> String {
        format!("{}tok:{sha256_hex}", self.prefix)
    }

    /// `{prefix}keytoks:<id>`: the tokens of one API key.
    pub fn key_tokens(&self, id: crate::auth::ids::ApiKeyId) -> String {
        format!("{}keytoks:{id}", self.prefix)
    }

    /// `{prefix}login:<ip>`: failed logins from one address.
    pub fn login(&self, ip: std::net::IpAddr) -> String {
        format!("{}login:{ip}", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new(DEFAULT_PREFIX)
    }
}
