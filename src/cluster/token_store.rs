//! [`RedisTokenStore`]: the cluster's table of issued tokens, in the shared Redis, so a
//! token issued by one node opens a WebSocket on any node.
//!
//! What is stored, per token: `{prefix}tok:<sha256>`, where the hash is of the token's
//! 32 random bytes, never the bytes themselves (a dump of Redis yields no usable token,
//! and no token can be rebuilt from it without the HMAC key either). The value is the
//! entry as compact JSON, and the key expires with the token (`SET .. EX`), so Redis
//! purges expired tokens by itself.
//!
//! `{prefix}keytoks:<api key id>` indexes one key's token hashes (a sorted set scored by
//! expiry on Redis's clock, to the microsecond), so revoking a key deletes all its
//! tokens in one script. Every insert drops the index's expired members, removing one
//! token drops its member, and the index itself expires with its latest token, so it
//! stays as small as the key's live tokens.
//!
//! Capacity: one key holds at most `--tokens-per-key` live tokens across the cluster:
//! the insert script, past that bound, pops the index's lowest scores (the oldest
//! tokens: every node issues with the same TTL) and deletes their tokens, atomically
//! with the insert. Sessions opened with them stay open. The bound's default is the
//! single node's (a tenth of `--token-capacity`, at most 10,000:
//! [`crate::config::derived_tokens_per_key`]). The single node's table is also bounded by
//! `--token-capacity`; here Redis's memory bounds it (`maxmemory`), so no key can lock
//! the others out by filling a table, and [`TokenStore::insert`] never answers
//! `StoreFull`. A token costs about 300 bytes. Any Redis error is
//! [`TokenError::StoreUnavailable`] (the exchange answers 503, an upgrade 503): never a
//! silent "unknown token".

use std::sync::Arc;

use redis::Script;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Keys;
use super::pool::{LinkPool, token_error};
use crate::auth::ids::{Actor, ApiKeyId, TokenId};
use crate::auth::token::USER_POLICY_NAME;
use crate::auth::token_store::{TokenEntry, TokenError, TokenStore};

/// The policies every token has today; stored names map back to this static list.
const POLICIES: &[&str] = &[USER_POLICY_NAME];
/// `len` examines at most this many `SCAN` pages (of about 1000 names each).
const LEN_SCAN_PAGES: usize = 100;

/// KEYS: tok:<hash>, keytoks:<api key id>. ARGV: entry JSON, ttl seconds, hash, tokens
/// per key (0: no bound), token name prefix. Returns how many old tokens it retired.
const INSERT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
-- Scores are expiry times on Redis's clock, so no node's clock can prune a live token;
-- in seconds (as older versions wrote them) with microseconds, so tokens issued within
-- one second keep their order for the bound below.
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%.17g', now))
redis.call('ZADD', KEYS[2], string.format('%.17g', now + ttl), ARGV[3])
if redis.call('TTL', KEYS[2]) < ttl then
  redis.call('EXPIRE', KEYS[2], ttl)
end
local retired = 0
local bound = tonumber(ARGV[4])
if bound > 0 then
  local over = redis.call('ZCARD', KEYS[2]) - bound
  if over > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[2], over)
    for i = 1, #oldest, 2 do
      retired = retired + redis.call('DEL', ARGV[5] .. oldest[i])
    end
  end
end
return retired
";

/// KEYS: tok:<hash>. ARGV: hash, index name prefix (`keytoks:`). Deletes the token and
/// its member of its key's index (so a removed token no longer counts against the
/// key's bound); returns whether the token was there.
const REMOVE: &str = r"
local json = redis.call('GET', KEYS[1])
if not json then
  return 0
end
local ok, entry = pcall(cjson.decode, json)
if ok and type(entry) == 'table' and type(entry.api_key_id) == 'number' then
  redis.call('ZREM', ARGV[2] .. string.format('%d', entry.api_key_id), ARGV[1])
end
return redis.call('DEL', KEYS[1])
";

/// KEYS: keytoks:<api key id>. ARGV: token name prefix. Returns how many tokens it ended.
const REMOVE_API_KEY: &str = r"
local n = 0
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
return n
";

/// A [`TokenEntry`] as stored: every field, in plain names for whoever reads Redis.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    actor_id: String,
    user_id: String,
    role: String,
    api_key_id: i64,
    issued_at: u64,
    expires_at: u64,
    ip: String,
    policies: Vec<String>,
}

/// The cluster's token table, over a [`LinkPool`] shared with the other cluster stores.
#[derive(Debug)]
pub struct RedisTokenStore {
    pool: Arc<LinkPool>,
    keys: Keys,
    /// Live tokens one API key may hold; 0: no bound.
    per_key: usize,
    /// `{prefix}keytoks:`, the name of a key's index without the key's id.
    index_prefix: String,
    insert: Script,
    remove: Script,
    remove_api_key: Script,
}

impl RedisTokenStore {
    /// The store under `prefix` (see [`Keys::new`]), with no bound per key. Does not
    /// connect.
    pub fn new(pool: Arc<LinkPool>, prefix: &str) -> RedisTokenStore {
        let keys = Keys::new(prefix);
        let index = keys.key_tokens(ApiKeyId(0));
        // The index name is the prefix followed by the id, here "0".
        let index_prefix = index.strip_suffix('0').unwrap_or(&index).to_owned();
        RedisTokenStore {
            pool,
            keys,
            per_key: 0,
            index_prefix,
            insert: Script::new(INSERT),
            remove: Script::new(REMOVE),
            remove_api_key: Script::new(REMOVE_API_KEY),
        }
    }

    /// At most `n` live tokens per API key: each insert beyond it retires that key's
    /// oldest (`--tokens-per-key`).
    pub fn tokens_per_key(mut self, n: usize) -> RedisTokenStore {
        self.per_key = n;
        self
    }

    fn call<T>(
        &self,
        f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, TokenError> {
        self.pool.with_conn(f).map_err(token_error)
    }
}

impl TokenStore for RedisTokenStore {
    fn insert(&self, id: TokenId, entry: TokenEntry, now: u64) -> Result<(), TokenError> {
        let hash = token_hash(&id);
        let api_key = entry.api_key_id;
        // `EX 0` is an error; an already-expired token still gets its second, and
        // `verify` calls it expired.
        let ttl = entry.expires_at.saturating_sub(now).max(1);
        let json = serde_json::to_string(&Stored::from(entry))
            .map_err(|_| TokenError::StoreUnavailable)?;
        let retired: i64 = self.call(|c| {
            self.insert
                .key(self.keys.token(&hash))
                .key(self.keys.key_tokens(api_key))
                .arg(&json)
                .arg(ttl)
                .arg(&hash)
                .arg(self.per_key)
                .arg(self.keys.token(""))
                .invoke(c)
        })?;
        if retired > 0 {
            crate::debug!(
                "tokens retired: key at its bound",
                api_key_id = api_key,
                retired = retired
            );
        }
        Ok(())
    }

    fn get(&self, id: &TokenId) -> Result<Option<TokenEntry>, TokenError> {
        let name = self.keys.token(&token_hash(id));
        let json: Option<String> = self.call(|c| redis::cmd("GET").arg(&name).query(c))?;
        let Some(json) = json else { return Ok(None) };
        match serde_json::from_str::<Stored>(&json).map_err(|e| e.to_string()).and_then(decode) {
            Ok(entry) => Ok(Some(entry)),
            // Not ours (another version, a hand edit): refusing the token is safe.
            Err(e) => {
                crate::warn!("unreadable token entry in Redis; token refused", error = e);
                Ok(None)
            }
        }
    }

    fn remove(&self, id: &TokenId) -> Result<bool, TokenError> {
        let hash = token_hash(id);
        let n: i64 = self.call(|c| {
            self.remove.key(self.keys.token(&hash)).arg(&hash).arg(&self.index_prefix).invoke(c)
        })?;
        Ok(n > 0)
    }

    fn remove_api_key(&self, api_key_id: ApiKeyId) -> Result<usize, TokenError> {
        let n: i64 = self.call(|c| {
            self.remove_api_key
                .key(self.keys.key_tokens(api_key_id))
                .arg(self.keys.token(""))
                .invoke(c)
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Redis expires entries by itself.
    fn purge_expired(&self, _now: u64) -> usize {
        0
    }

    /// Best effort, for logs: the tokens found by a bounded `SCAN` (a lower bound when
    /// Redis holds more than about 100 000 names), 0 when Redis cannot be reached.
    fn len(&self) -> usize {
        let pattern = format!("{}*", glob_escape(&self.keys.token("")));
        let counted = self.call(|c| {
            let mut cursor = 0u64;
            let mut n = 0usize;
            for _ in 0..LEN_SCAN_PAGES {
                let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                n += names.len();
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            Ok(n)
        });
        counted.unwrap_or(0)
    }

    /// Every lookup is a Redis round trip: never on the event loop.
    fn lookups_block(&self) -> bool {
        true
    }
}

impl From<TokenEntry> for Stored {
    fn from(e: TokenEntry) -> Stored {
        Stored {
            actor_id: e.actor.id.clone(),
            user_id: e.actor.user_id.clone(),
            role: e.actor.role.clone(),
            api_key_id: e.api_key_id.0,
            issued_at: e.issued_at,
            expires_at: e.expires_at,
            ip: e.ip,
            policies: e.policies.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

fn decode(s: Stored) -> Result<TokenEntry, String> {
    // The entry holds a static policy list: only names this build knows are accepted.
    if s.policies.iter().map(String::as_str).ne(POLICIES.iter().copied()) {
        return Err(format!("unknown policies {:?}", s.policies));
    }
    Ok(TokenEntry {
        actor: Arc::new(Actor { id: s.actor_id, user_id: s.user_id, role: s.role }),
        policies: POLICIES,
        api_key_id: ApiKeyId(s.api_key_id),
        issued_at: s.issued_at,
        expires_at: s.expires_at,
        ip: s.ip,
    })
}

/// Hex SHA-256 of a token's random part: its name in Redis.
fn token_hash(id: &TokenId) -> String {
    Sha256::digest(id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` with the `SCAN MATCH` glob characters escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE;

    use super::*;
    use crate::auth::ids::unix_now;
    use crate::auth::token::{TokenKey, Tokens};
    use crate::cluster::test_redis::TestRedis;

    fn store(server: &TestRedis) -> RedisTokenStore {
        RedisTokenStore::new(Arc::new(LinkPool::new(&server.url(), 2).unwrap()), "t:")
    }

    fn entry(key: i64, now: u64, ttl: u64) -> TokenEntry {
        TokenEntry {
            actor: Arc::new(Actor {
                id: "user:alice".into(),
                user_id: "alice".into(),
                role: "admin".into(),
            }),
            policies: POLICIES,
            api_key_id: ApiKeyId(key),
            issued_at: now,
            expires_at: now + ttl,
            ip: "10.1.2.3".into(),
        }
    }

    #[test]
    fn tokens_are_inserted_read_and_removed() {
        let Some(server) = TestRedis::start() else { return };
        let s = store(&server);
        let now = unix_now();
        let (a, b) = (TokenId([1; 32]), TokenId([2; 32]));
        s.insert(a, entry(5, now, 3600), now).unwrap();
        s.insert(b, entry(6, now, 3600), now).unwrap();

        let got = s.get(&a).unwrap().unwrap();
        assert_eq!(*got.actor, *entry(5, now, 3600).actor);
        assert_eq!((got.api_key_id, got.issued_at, got.expires_at), (ApiKeyId(5), now, now + 3600));
        assert_eq!((got.ip.as_str(), got.policies), ("10.1.2.3", POLICIES));
        assert_eq!(s.len(), 2);
        assert!(s.lookups_block());
        assert_eq!(s.purge_expired(now + 7200), 0);

        assert_eq!(s.remove(&a), Ok(true));
        assert_eq!(s.remove(&a), Ok(false));
        assert!(s.get(&a).unwrap().is_none());
        assert!(s.get(&b).unwrap().is_some());

        let ttl: i64 =
            redis::cmd("TTL").arg(s.keys.token(&token_hash(&b))).query(&mut server.conn()).unwrap();
        assert!(ttl > 3500 && ttl <= 3600, "the key expires with the token: {ttl}");
    }

    #[test]
    fn revoking_a_key_removes_all_its_tokens_and_only_those() {
        let Some(server) = TestRedis::start() else { return };
        let s = store(&server);
        let now = unix_now();
        for n in 0..5 {
            s.insert(TokenId([n; 32]), entry(7, now, 60 + u64::from(n)), now).unwrap();
        }
        s.insert(TokenId([9; 32]), entry(8, now, 60), now).unwrap();
        s.remove(&TokenId([0; 32])).unwrap();
        assert_eq!(s.remove_api_key(ApiKeyId(7)), Ok(4), "removed ones are not counted");
        assert_eq!(s.remove_api_key(ApiKeyId(7)), Ok(0));
        assert!((0..5).all(|n| s.get(&TokenId([n; 32])).unwrap().is_none()));
        assert!(s.get(&TokenId([9; 32])).unwrap().is_some());
        let ttl: i64 = redis::cmd("TTL")
            .arg(s.keys.key_tokens(ApiKeyId(8)))
            .query(&mut server.conn())
            .unwrap();
        assert!(ttl > 0 && ttl <= 60, "the index expires with its tokens: {ttl}");
    }

    #[test]
    fn tokens_expire_in_redis_and_leave_the_index() {
        let Some(server) = TestRedis::start() else { return };
        let s = store(&server);
        let now = unix_now();
        s.insert(TokenId([1; 32]), entry(3, now, 1), now).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.get(&TokenId([1; 32])).unwrap().is_some() {
            assert!(Instant::now() < deadline, "the token never expired");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The next insert prunes the dead member (once Redis's clock passed its score).
        let index = s.keys.key_tokens(ApiKeyId(3));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = unix_now();
            s.insert(TokenId([2; 32]), entry(3, now, 60), now).unwrap();
            let members: i64 = redis::cmd("ZCARD").arg(&index).query(&mut server.conn()).unwrap();
            if members == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the index kept {members} members");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn only_hashes_of_token_ids_are_stored() {
        let Some(server) = TestRedis::start() else { return };
        let s = store(&server);
        let now = unix_now();
        let ids: Vec<TokenId> = (0..3u8).map(|n| TokenId([0xa0 + n; 32])).collect();
        for id in &ids {
            s.insert(*id, entry(1, now, 60), now).unwrap();
        }
        let mut c = server.conn();
        let names: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        let mut everything: Vec<u8> = Vec::new();
        for name in &names {
            everything.extend_from_slice(name);
            // Values as Redis holds them (not `DUMP`, whose compression could hide one).
            let ty: String = redis::cmd("TYPE").arg(name).query(&mut c).unwrap();
            let values: Vec<Vec<u8>> = match ty.as_str() {
                "string" => vec![redis::cmd("GET").arg(name).query(&mut c).unwrap()],
                "zset" => redis::cmd("ZRANGE").arg(name).arg(0).arg(-1).query(&mut c).unwrap(),
                other => panic!("unexpected type {other}"),
            };
            values.iter().for_each(|v| everything.extend_from_slice(v));
        }
        let contains = |needle: &[u8]| everything.windows(needle.len()).any(|w| w == needle);
        for id in &ids {
            let bytes = id.as_bytes();
            let hexed: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!contains(bytes), "raw token bytes stored");
            assert!(!contains(hexed.as_bytes()), "hex token id stored");
            assert!(!contains(URL_SAFE.encode(bytes).as_bytes()), "base64 token stored");
            assert!(contains(token_hash(id).as_bytes()), "stored by hash");
        }
    }

    #[test]
    fn a_token_issued_on_one_node_verifies_on_another() {
        let Some(server) = TestRedis::start() else { return };
        let node = |s: RedisTokenStore| {
            let key = TokenKey::from_secret("shared-cluster-secret-0123").unwrap();
            Tokens::new(key, Duration::from_secs(60), Box::new(s))
        };
        let (a, b) = (node(store(&server)), node(store(&server)));
        let actor = Actor { id: "user:demo".into(), user_id: "demo".into(), role: "user".into() };
        let issued = a.issue(actor, ApiKeyId(1), "::1".into(), unix_now()).unwrap();
        let verified = b.verify(&issued.token, unix_now()).unwrap();
        assert_eq!(verified.actor.user_id, "demo");
        assert_eq!(b.revoke_token(&issued.token), Ok(true));
        assert_eq!(a.verify(&issued.token, unix_now()).unwrap_err(), TokenError::Unknown);
    }

    #[test]
    fn a_key_at_its_bound_retires_its_oldest_tokens_on_every_node() {
        let Some(server) = TestRedis::start() else { return };
        // Two nodes share the bound: it is counted in Redis, not per process.
        let nodes = [store(&server).tokens_per_key(3), store(&server).tokens_per_key(3)];
        let now = unix_now();
        // Issued within the same second: the order still holds, to the microsecond.
        for n in 0..5u8 {
            nodes[usize::from(n % 2)].insert(TokenId([n; 32]), entry(7, now, 3600), now).unwrap();
        }
        nodes[0].insert(TokenId([50; 32]), entry(8, now, 3600), now).unwrap();
        let live = |n: u8| nodes[1].get(&TokenId([n; 32])).unwrap().is_some();
        assert!(!live(0) && !live(1), "the two oldest are retired");
        assert!(live(2) && live(3) && live(4) && live(50));
        let members: i64 = redis::cmd("ZCARD")
            .arg(nodes[0].keys.key_tokens(ApiKeyId(7)))
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(members, 3);
        assert_eq!(nodes[0].remove_api_key(ApiKeyId(7)), Ok(3));
    }

    #[test]
    fn a_removed_token_frees_its_place_under_the_bound() {
        let Some(server) = TestRedis::start() else { return };
        let s = store(&server).tokens_per_key(2);
        let now = unix_now();
        s.insert(TokenId([1; 32]), entry(4, now, 3600), now).unwrap();
        s.insert(TokenId([2; 32]), entry(4, now, 3600), now).unwrap();
        assert_eq!(s.remove(&TokenId([1; 32])), Ok(true));
        let index = s.keys.key_tokens(ApiKeyId(4));
        let members: i64 = redis::cmd("ZCARD").arg(&index).query(&mut server.conn()).unwrap();
        assert_eq!(members, 1, "removing a token drops it from its key's index");
        s.insert(TokenId([3; 32]), entry(4, now, 3600), now).unwrap();
        assert!(s.get(&TokenId([2; 32])).unwrap().is_some(), "nothing retired below the bound");
        assert!(s.get(&TokenId([3; 32])).unwrap().is_some());
        // Without a bound (the default of `new`), a key keeps every token.
        let unbounded = store(&server);
        for n in 10..20u8 {
            unbounded.insert(TokenId([n; 32]), entry(5, now, 3600), now).unwrap();
        }
        assert!((10..20u8).all(|n| unbounded.get(&TokenId([n; 32])).unwrap().is_some()));
    }

    #[test]
    fn an_unreachable_redis_is_store_unavailable_never_unknown() {
        let s =
            RedisTokenStore::new(Arc::new(LinkPool::new("redis://127.0.0.1:1/", 1).unwrap()), "t:");
        let now = unix_now();
        assert_eq!(
            s.insert(TokenId([1; 32]), entry(1, now, 60), now),
            Err(TokenError::StoreUnavailable)
        );
        assert_eq!(s.get(&TokenId([1; 32])).unwrap_err(), TokenError::StoreUnavailable);
        assert_eq!(s.remove_api_key(ApiKeyId(1)), Err(TokenError::StoreUnavailable));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_foreign_entry_refuses_the_token() {
        let Some(server) = TestRedis::start() else { return };
        let s = store(&server);
        let id = TokenId([3; 32]);
        let _: () = redis::cmd("SET")
            .arg(s.keys.token(&token_hash(&id)))
            .arg("{not json")
            .query(&mut server.conn())
            .unwrap();
        assert!(s.get(&id).unwrap().is_none());
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
