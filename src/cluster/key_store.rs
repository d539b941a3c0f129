//! [`RedisKeyStore`]: the cluster's API keys and revocation feed, in the shared Redis.
//!
//! The cluster's side of the [`KeyStore`] seam, plus what the `keys` CLI needs (create,
//! list, revoke, and [`RedisKeyStore::import_from_sqlite`] in `import.rs`). The layout is
//! the table in [`super`]; in short:
//! - A key is stored only as the hex SHA-256 of its plaintext ([`keys::hash_key`]), in
//!   the hash `{prefix}key:<sha256>` with its id, user, role, the non-secret 6-character
//!   prefix, `created_at` and, once revoked, `revoked_at`. `{prefix}keyid:<id>` maps an
//!   id back to the hash (revoke by id, list); ids come from `INCR {prefix}key-ids`.
//! - `{prefix}revlog` is the revocation feed every node polls (`k:<id>` for a key,
//!   `t:<hex token id>` for one token ended by `POST /auth/revoke`). A cursor is an
//!   absolute position: entries trimmed off the head (past [`REVLOG_MAX`]) are counted
//!   in `{prefix}revlog-base`, so a cursor stays valid across trims. A revoked token's id
//!   is no secret any more: its entry is gone from the token store, and a token is
//!   useless without its HMAC signature anyway.
//! - `{prefix}demo-key` holds the demo key's plaintext, so every node can log it at
//!   start. It is the cluster's `demo-api-key` file: for demos only.
//!
//! Every write that reads first (create, revoke, the demo key) is one Lua script, so two
//! nodes or CLIs acting at once cannot interleave between the read and the write. The
//! scripts build some key names from the prefix inside Lua, so they need one Redis (not
//! Redis Cluster), which is what cluster mode uses.

#[cfg(test)]
mod cli_tests;
mod import;

use std::sync::Arc;

use redis::{Script, Value};

use super::Keys;
use super::pool::{LinkPool, db_error};
use crate::auth::ids::{ApiKeyId, TokenId, unix_now};
use crate::auth::key_store::{KeyAdmin, KeyStore, Revocation};
use crate::auth::keys::{self, ApiKeyRecord, DEMO_USER, DbError, DbErrorKind, DemoKey, KeyInfo};

pub use import::{DemoImport, ImportSummary};

/// The feed keeps at most this many entries; past it the older half is trimmed. Nodes
/// read it every 250 ms, so only a node cut off for a long time misses entries.
pub const REVLOG_MAX: i64 = 100_000;
/// Most feed entries returned by one [`KeyStore::revoked_since`]; the rest come next poll.
const FEED_BATCH: i64 = 10_000;
/// Attempts at the demo key when other nodes keep changing it under us.
const DEMO_ATTEMPTS: usize = 5;
/// Length of the non-secret key prefix kept for `keys list` (as in SQLite).
const PREFIX_LEN: usize = 6;

/// Lua helpers shared by the scripts (prepended to each).
const LUA_HELPERS: &str = r"
-- Appends one entry to the feed; past `max` entries, trims the older half and counts
-- what it trimmed in `base`, so absolute cursors stay valid.
local function revlog_append(log, base, max, entry)
  local n = redis.call('RPUSH', log, entry)
  if n > max then
    local drop = n - math.floor(max / 2)
    redis.call('LTRIM', log, drop, -1)
    redis.call('INCRBY', base, drop)
  end
end
-- The next free key id (an import may have taken ids ahead of the counter).
local function new_id(counter, idprefix)
  local id
  repeat
    id = redis.call('INCR', counter)
  until redis.call('EXISTS', idprefix .. id) == 0
  return id
end
local function put_key(rec, idkey, id, sha, user, role, prefix, created)
  redis.call('HSET', rec, 'id', id, 'user_id', user, 'role', role, 'prefix', prefix,
    'created_at', created)
  redis.call('SET', idkey, sha)
end
";

/// KEYS: key:<sha>, key-ids. ARGV: sha, user, role, prefix, created_at, keyid prefix.
/// Returns the new id, or -1 if a key with this hash exists (a retry draws a new key).
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local id = new_id(KEYS[2], ARGV[6])
put_key(KEYS[1], ARGV[6] .. id, id, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return id
";

/// Compare-and-set of the demo key. KEYS: demo-key, key-ids. ARGV: [1] the demo key
/// the caller saw ('' if none), [2] key record prefix, [3] SHA-256 of [1], [4] a new
/// candidate key, [5] its SHA-256, [6] its prefix, [7] now, [8] keyid prefix, [9] user.
/// Returns {0, current} if the demo key changed since the caller looked or is live
/// (the caller compares), {1, id} if it stored the candidate, {-1, ''} on a hash clash.
const ENSURE_DEMO: &str = r"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return {0, cur} end
if cur ~= '' then
  local rec = ARGV[2] .. ARGV[3]
  if redis.call('HEXISTS', rec, 'id') == 1 and redis.call('HEXISTS', rec, 'revoked_at') == 0 then
    return {0, cur}
  end
end
local crec = ARGV[2] .. ARGV[5]
if redis.call('EXISTS', crec) == 1 then return {-1, ''} end
local id = new_id(KEYS[2], ARGV[8])
put_key(crec, ARGV[8] .. id, id, ARGV[5], ARGV[9], 'user', ARGV[6], ARGV[7])
redis.call('SET', KEYS[1], ARGV[4])
return {1, id}
";

/// KEYS: keyid:<id>, revlog, revlog-base. ARGV: now, key record prefix, id, feed max.
/// Returns 1 if it revoked a live key (and fed it), 0 if none or already revoked.
const REVOKE: &str = r"
local sha = redis.call('GET', KEYS[1])
if not sha then return 0 end
local rec = ARGV[2] .. sha
if redis.call('HEXISTS', rec, 'id') == 0 or redis.call('HEXISTS', rec, 'revoked_at') == 1 then
  return 0
end
redis.call('HSET', rec, 'revoked_at', ARGV[1])
revlog_append(KEYS[2], KEYS[3], tonumber(ARGV[4]), 'k:' .. ARGV[3])
return 1
";

/// KEYS: revlog, revlog-base. ARGV: entry, feed max.
const APPEND: &str = r"
revlog_append(KEYS[1], KEYS[2], tonumber(ARGV[2]), ARGV[1])
return 1
";

/// KEYS: revlog, revlog-base. ARGV: cursor, batch. Returns {status, next cursor,
/// entries}: status 0 normal, 1 the feed is behind the cursor (Redis was reset: read
/// from its start), 2 the cursor fell off the trimmed head (entries were missed).
const READ_FEED: &str = r"
local base = tonumber(redis.call('GET', KEYS[2]) or '0')
local len = redis.call('LLEN', KEYS[1])
local cursor = tonumber(ARGV[1])
local status = 0
if cursor > base + len then
  cursor = base
  status = 1
elseif cursor < base then
  cursor = base
  status = 2
end
local from = cursor - base
local items = redis.call('LRANGE', KEYS[1], from, from + tonumber(ARGV[2]) - 1)
return {status, cursor + #items, items}
";

/// The cluster's API keys, over a [`LinkPool`] shared with the other cluster stores.
#[derive(Debug)]
pub struct RedisKeyStore {
    pool: Arc<LinkPool>,
    keys: Keys,
    /// [`REVLOG_MAX`]; a field so tests can trim a short feed.
    revlog_max: i64,
    create: Script,
    ensure_demo: Script,
    revoke: Script,
    append: Script,
    read_feed: Script,
    import: Script,
    carry_demo: Script,
}

impl RedisKeyStore {
    /// The store under `prefix` (see [`Keys::new`]). Does not connect.
    pub fn new(pool: Arc<LinkPool>, prefix: &str) -> RedisKeyStore {
        let script = |body: &str| Script::new(&format!("{LUA_HELPERS}{body}"));
        RedisKeyStore {
            pool,
            keys: Keys::new(prefix),
            revlog_max: REVLOG_MAX,
            create: script(CREATE),
            ensure_demo: script(ENSURE_DEMO),
            revoke: script(REVOKE),
            append: script(APPEND),
            read_feed: script(READ_FEED),
            import: script(import::IMPORT),
            carry_demo: script(import::CARRY_DEMO),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Creates a key; the plaintext is returned once and never stored.
    pub fn create_key(&self, user_id: &str, role: &str) -> Result<(ApiKeyId, String), DbError> {
        // A clash of two random 190-bit keys will not happen; the loop only keeps a
        // broken random source from looping forever.
        for _ in 0..3 {
            let key = keys::random_key()?;
            let sha = keys::hash_key(&key);
            let id: i64 = self.call(|c| {
                self.create
                    .key(self.keys.api_key(&sha))
                    .key(&self.keys.key_ids)
                    .arg(&sha)
                    .arg(user_id)
                    .arg(role)
                    .arg(key_prefix(&key))
                    .arg(unix_now())
                    .arg(self.keys.api_key_id(""))
                    .invoke(c)
            })?;
            if id > 0 {
                return Ok((ApiKeyId(id), key));
            }
        }
        Err(DbError::new(DbErrorKind::Other, "new keys keep clashing with stored ones"))
    }

    /// Every key the cluster knows, by id (never the keys themselves).
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, DbError> {
        let max: Option<i64> = self.call(|c| redis::cmd("GET").arg(&self.keys.key_ids).query(c))?;
        let mut out = Vec::new();
        let mut from = 1;
        let max = max.unwrap_or(0);
        while from <= max {
            let to = max.min(from + 999);
            let ids: Vec<i64> = (from..=to).collect();
            let rows: Vec<(i64, Vec<(String, String)>)> = self.call(|c| {
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("GET").arg(self.keys.api_key_id(&id.to_string()));
                }
                let shas: Vec<Option<String>> = pipe.query(c)?;
                let found: Vec<(i64, String)> =
                    ids.iter().zip(shas).filter_map(|(id, sha)| Some((*id, sha?))).collect();
                let mut pipe = redis::pipe();
                for (_, sha) in &found {
                    pipe.cmd("HGETALL").arg(self.keys.api_key(sha));
                }
                let records: Vec<Vec<(String, String)>> =
                    if found.is_empty() { Vec::new() } else { pipe.query(c)? };
                Ok(found.into_iter().map(|(id, _)| id).zip(records).collect())
            })?;
            for (id, fields) in rows {
                out.push(key_info(ApiKeyId(id), &fields)?);
            }
            from = to + 1;
        }
        Ok(out)
    }

    /// Revokes one key and feeds it to every node; `false` if it does not exist or was
    /// already revoked.
    pub fn revoke_key(&self, id: ApiKeyId) -> Result<bool, DbError> {
        let done: i64 = self.call(|c| {
            self.revoke
                .key(self.keys.api_key_id(&id.to_string()))
                .key(&self.keys.revlog)
                .key(&self.keys.revlog_base)
                .arg(unix_now())
                .arg(self.keys.api_key(""))
                .arg(id.0)
                .arg(self.revlog_max)
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    /// Revokes every live key of a user; returns how many. Each revocation is atomic;
    /// a key created for the user while this runs may stay live.
    pub fn revoke_user(&self, user_id: &str) -> Result<usize, DbError> {
        let mut n = 0;
        for k in self.list_keys()? {
            if k.user_id == user_id && k.revoked_at.is_none() && self.revoke_key(k.id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Runs `f` on a pooled connection, with Redis errors as [`DbError`]s.
    fn call<T>(
        &self,
        f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, DbError> {
        self.pool.with_conn(f).map_err(db_error)
    }

    /// Whether the stored demo key is a live key.
    fn demo_is_live(&self, key: &str) -> Result<bool, DbError> {
        Ok(self.lookup(key)?.is_some())
    }

    /// After a new demo key replaced a lost or revoked one: retire the other live keys
    /// of the demo user, as SQLite does (their plaintext is no longer logged anywhere).
    fn retire_old_demo_keys(&self, keep: ApiKeyId) -> Result<(), DbError> {
        for k in self.list_keys()? {
            if k.user_id == DEMO_USER && k.revoked_at.is_none() && k.id != keep {
                self.revoke_key(k.id)?;
            }
        }
        Ok(())
    }
}

/// The `keys` CLI's operations: the methods above, through the seam it shares with SQLite.
impl KeyAdmin for RedisKeyStore {
    fn create_key(&self, user_id: &str, role: &str) -> Result<(ApiKeyId, String), DbError> {
        RedisKeyStore::create_key(self, user_id, role)
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>, DbError> {
        RedisKeyStore::list_keys(self)
    }

    fn revoke_key(&self, id: ApiKeyId) -> Result<bool, DbError> {
        RedisKeyStore::revoke_key(self, id)
    }

    fn revoke_user(&self, user_id: &str) -> Result<usize, DbError> {
        RedisKeyStore::revoke_user(self, user_id)
    }
}

impl KeyStore for RedisKeyStore {
    /// Makes sure the cluster has one live demo key. Nodes starting at once race
    /// through a compare-and-set script: exactly one creates it (`created: true`),
    /// every other one returns that same key.
    fn prepare(&self) -> Result<DemoKey, DbError> {
        for _ in 0..DEMO_ATTEMPTS {
            let seen: Option<String> =
                self.call(|c| redis::cmd("GET").arg(&self.keys.demo_key).query(c))?;
            let seen = seen.unwrap_or_default();
            // Most starts find a live key; then no candidate is needed.
            if !seen.is_empty() && self.demo_is_live(&seen)? {
                return Ok(DemoKey { key: seen, created: false });
            }
            let seen_sha = if seen.is_empty() { String::new() } else { keys::hash_key(&seen) };
            let candidate = keys::random_key()?;
            let candidate_sha = keys::hash_key(&candidate);
            let (status, value): (i64, Value) = self.call(|c| {
                self.ensure_demo
                    .key(&self.keys.demo_key)
                    .key(&self.keys.key_ids)
                    .arg(&seen)
                    .arg(self.keys.api_key(""))
                    .arg(&seen_sha)
                    .arg(&candidate)
                    .arg(&candidate_sha)
                    .arg(key_prefix(&candidate))
                    .arg(unix_now())
                    .arg(self.keys.api_key_id(""))
                    .arg(DEMO_USER)
                    .invoke(c)
            })?;
            match (status, value) {
                (1, Value::Int(id)) => {
                    if let Err(e) = self.retire_old_demo_keys(ApiKeyId(id)) {
                        crate::warn!("old demo keys not retired", error = e);
                    }
                    return Ok(DemoKey { key: candidate, created: true });
                }
                // Live after all (an import restored its record between our two calls).
                (0, Value::BulkString(cur)) if cur == seen.as_bytes() && !seen.is_empty() => {
                    return Ok(DemoKey { key: seen, created: false });
                }
                // Another node changed it: look again.
                (0, _) | (-1, _) => {}
                _ => return Err(corrupt("unexpected reply from the demo key script")),
            }
        }
        Err(DbError::new(DbErrorKind::Busy, "the demo key kept changing under this node"))
    }

    fn lookup(&self, api_key: &str) -> Result<Option<ApiKeyRecord>, DbError> {
        let rec = self.keys.api_key(&keys::hash_key(api_key));
        let (id, user_id, role, revoked): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = self.call(|c| {
            redis::cmd("HMGET").arg(&rec).arg(&["id", "user_id", "role", "revoked_at"]).query(c)
        })?;
        let (Some(id), None) = (id, revoked) else { return Ok(None) };
        let id = id.parse().map_err(|_| corrupt("a key record's id is not a number"))?;
        match (user_id, role) {
            (Some(user_id), Some(role)) => {
                Ok(Some(ApiKeyRecord { id: ApiKeyId(id), user_id, role }))
            }
            _ => Err(corrupt(format!("key record {id} lacks user_id or role"))),
        }
    }

    fn revocation_cursor(&self) -> Result<i64, DbError> {
        let (base, len): (Option<i64>, i64) = self.call(|c| {
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&self.keys.revlog_base)
                .cmd("LLEN")
                .arg(&self.keys.revlog)
                .query(c)
        })?;
        Ok(base.unwrap_or(0) + len)
    }

    fn revoked_since(&self, cursor: i64) -> Result<(Vec<Revocation>, i64), DbError> {
        let (status, next, entries): (i64, i64, Vec<String>) = self.call(|c| {
            self.read_feed
                .key(&self.keys.revlog)
                .key(&self.keys.revlog_base)
                .arg(cursor)
                .arg(FEED_BATCH)
                .invoke(c)
        })?;
        match status {
            1 => crate::debug!(
                "revocation feed is behind our cursor (Redis was reset); reading it from its start",
                cursor = cursor,
                next = next
            ),
            2 => crate::warn!(
                "revocation feed was trimmed past our cursor; some revocations were missed",
                cursor = cursor
            ),
            _ => {}
        }
        let revoked = entries
            .iter()
            .filter_map(|e| {
                let parsed = parse_entry(e);
                if parsed.is_none() {
                    crate::debug!("unknown revocation feed entry skipped", entry = e);
                }
                parsed
            })
            .collect();
        Ok((revoked, next))
    }

    fn announce_token_revoked(&self, token: TokenId) -> Result<(), DbError> {
        let entry = format!("t:{}", hex(token.as_bytes()));
        let _: i64 = self.call(|c| {
            self.append
                .key(&self.keys.revlog)
                .key(&self.keys.revlog_base)
                .arg(&entry)
                .arg(self.revlog_max)
                .invoke(c)
        })?;
        Ok(())
    }
}

/// A feed entry: `k:<id>` or `t:<64 hex digits>`; anything else is `None`.
fn parse_entry(entry: &str) -> Option<Revocation> {
    match entry.split_once(':')? {
        ("k", id) => id.parse().ok().map(|id| Revocation::ApiKey(ApiKeyId(id))),
        ("t", h) => unhex32(h).map(|bytes| Revocation::Token(TokenId(bytes))),
        _ => None,
    }
}

/// A key record's fields as `keys list` shows them.
fn key_info(id: ApiKeyId, fields: &[(String, String)]) -> Result<KeyInfo, DbError> {
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let number = |name: &str| -> Result<Option<i64>, DbError> {
        get(name)
            .map(|v| v.parse().map_err(|_| corrupt(format!("key {id}: {name} is not a number"))))
            .transpose()
    };
    let (Some(user_id), Some(role), Some(created_at)) =
        (get("user_id"), get("role"), number("created_at")?)
    else {
        return Err(corrupt(format!("key {id}: record missing or incomplete")));
    };
    Ok(KeyInfo {
        id,
        user_id: user_id.to_owned(),
        role: role.to_owned(),
        prefix: get("prefix").unwrap_or_default().to_owned(),
        created_at,
        revoked_at: number("revoked_at")?,
    })
}

fn key_prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN).collect()
}

fn corrupt(detail: impl std::fmt::Display) -> DbError {
    DbError::new(DbErrorKind::Corrupt, detail)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    // Hex digits only: `from_str_radix` alone would accept a sign.
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
