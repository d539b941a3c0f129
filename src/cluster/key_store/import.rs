//! `crypto-ticker keys import`: moves a single node's SQLite key store into the cluster.
//!
//! What moves: every key's hash, prefix, user, role, `created_at` and `revoked_at` (the
//! plaintext keys were never stored, so users keep the keys they have), and the demo
//! key's plaintext from the `demo-api-key` file. What does not: the SQLite revocation
//! log (nothing in the cluster holds tokens of keys it did not know yet).
//!
//! Rules, each applied per key in one script:
//! - Idempotent by hash: a key already in the cluster is not added again. If SQLite has
//!   revoked it since, the revocation is carried over (and fed to the nodes); a revoked
//!   key is never made live again.
//! - Ids are kept when free in the cluster, and `{prefix}key-ids` is raised past them so
//!   new keys never take them. A taken id gets a new one; the summary lists each such
//!   mapping so operators can translate ids in their notes.
//! - The demo key file's key becomes the cluster's demo key unless the cluster already
//!   has a live demo key (nodes started before the import made one); the file's key
//!   then stays a working key of user `demo`, and the summary says so.

use std::fmt;
use std::path::Path;

use rusqlite::Connection;

use super::RedisKeyStore;
use crate::auth::ids::ApiKeyId;
use crate::auth::keys::{self, DbError, DbErrorKind};

/// KEYS: key:<sha>, key-ids, revlog, revlog-base. ARGV: [1] sha, [2] wanted id, [3]
/// user, [4] role, [5] prefix, [6] created_at, [7] revoked_at or '', [8] keyid prefix,
/// [9] feed max, [10] the largest SQLite id. Returns {id in the cluster, 1 added | 0 already there | 2 already
/// there and now revoked}.
pub(super) const IMPORT: &str = r"
local existing = redis.call('HGET', KEYS[1], 'id')
if existing then
  if ARGV[7] ~= '' and redis.call('HEXISTS', KEYS[1], 'revoked_at') == 0 then
    redis.call('HSET', KEYS[1], 'revoked_at', ARGV[7])
    revlog_append(KEYS[3], KEYS[4], tonumber(ARGV[9]), 'k:' .. existing)
    return {tonumber(existing), 2}
  end
  return {tonumber(existing), 0}
end
-- New ids start past every SQLite id, so a renumbered key never takes the id of a
-- key imported after it.
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[10]) then
  redis.call('SET', KEYS[2], ARGV[10])
end
local id = tonumber(ARGV[2])
if id == nil or id < 1 or redis.call('EXISTS', ARGV[8] .. ARGV[2]) == 1 then
  id = new_id(KEYS[2], ARGV[8])
end
put_key(KEYS[1], ARGV[8] .. id, id, ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'revoked_at', ARGV[7]) end
return {id, 1}
";

/// KEYS: demo-key. ARGV: [1] the file's key, [2] key record prefix, [3] SHA-256 of [1],
/// [4] the demo key the caller saw ('' if none), [5] SHA-256 of [4] ('' if none).
pub(super) const CARRY_DEMO: &str = r"
local rec = ARGV[2] .. ARGV[3]
if redis.call('HEXISTS', rec, 'id') == 0 or redis.call('HEXISTS', rec, 'revoked_at') == 1 then
  return 'not-live'
end
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[4] then return 'changed' end
if cur == ARGV[1] then return 'same' end
if cur ~= '' then
  local crec = ARGV[2] .. ARGV[5]
  if redis.call('HEXISTS', crec, 'id') == 1 and redis.call('HEXISTS', crec, 'revoked_at') == 0 then
    return 'kept'
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 'carried'
";

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Keys added to the cluster.
    pub imported: usize,
    /// Of `imported`, how many were already revoked in SQLite.
    pub imported_revoked: usize,
    /// Keys the cluster already had (same hash).
    pub already_present: usize,
    /// Of `already_present`, how many SQLite had revoked since: now revoked here too.
    pub newly_revoked: usize,
    /// `(SQLite id, cluster id)` of added keys whose id was taken in the cluster.
    pub renumbered: Vec<(ApiKeyId, ApiKeyId)>,
    /// Rows that do not hold a SHA-256 (not imported).
    pub skipped: usize,
    pub demo_key: DemoImport,
}

/// What happened to the demo key file's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoImport {
    /// No demo key file (or an empty one).
    NoFile,
    /// It is now the cluster's demo key.
    Carried,
    /// It already was the cluster's demo key.
    AlreadyThere,
    /// The cluster has another live demo key, which stays; the file's key still works.
    KeptCluster,
    /// The file's key is not a live key (revoked, or not in the database): not carried.
    NotLive,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} key(s) ({} of them revoked); {} already in the cluster ({} newly revoked); {} skipped",
            self.imported,
            self.imported_revoked,
            self.already_present,
            self.newly_revoked,
            self.skipped
        )?;
        for (old, new) in &self.renumbered {
            writeln!(f, "key {old} is key {new} in the cluster (id {old} was taken)")?;
        }
        let demo = match self.demo_key {
            DemoImport::NoFile => "no demo key file; the first node to start makes one",
            DemoImport::Carried => "carried over",
            DemoImport::AlreadyThere => "already the cluster's",
            DemoImport::KeptCluster => {
                "the cluster already has a live one and keeps it; the file's key still works"
            }
            DemoImport::NotLive => "the file's key is not a live key; not carried over",
        };
        writeln!(f, "demo key: {demo}")
    }
}

/// One `api_keys` row.
struct Row {
    id: i64,
    sha: String,
    user_id: String,
    role: String,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl RedisKeyStore {
    /// Copies every key of a migrated SQLite key store (`conn`, see [`keys::migrate`])
    /// and its demo key file into the cluster. Safe to run again: see the module doc.
    pub fn import_from_sqlite(
        &self,
        conn: &Connection,
        demo_key_file: &Path,
    ) -> Result<ImportSummary, DbError> {
        let mut summary = ImportSummary {
            imported: 0,
            imported_revoked: 0,
            already_present: 0,
            newly_revoked: 0,
            renumbered: Vec::new(),
            skipped: 0,
            demo_key: DemoImport::NoFile,
        };
        let rows = read_rows(conn)?;
        let max_id = rows.iter().map(|r| r.id).max().unwrap_or(0);
        for row in rows {
            if !is_sha256_hex(&row.sha) {
                summary.skipped += 1;
                continue;
            }
            let (id, status): (i64, i64) = self.call(|c| {
                self.import
                    .key(self.keys.api_key(&row.sha))
                    .key(&self.keys.key_ids)
                    .key(&self.keys.revlog)
                    .key(&self.keys.revlog_base)
                    .arg(&row.sha)
                    .arg(row.id)
                    .arg(&row.user_id)
                    .arg(&row.role)
                    .arg(&row.prefix)
                    .arg(row.created_at)
                    .arg(row.revoked_at.map(|t| t.to_string()).unwrap_or_default())
                    .arg(self.keys.api_key_id(""))
                    .arg(self.revlog_max)
                    .arg(max_id)
                    .invoke(c)
            })?;
            match status {
                1 => {
                    summary.imported += 1;
                    summary.imported_revoked += usize::from(row.revoked_at.is_some());
                    if id != row.id {
                        summary.renumbered.push((ApiKeyId(row.id), ApiKeyId(id)));
                    }
                }
                2 => {
                    summary.already_present += 1;
                    summary.newly_revoked += 1;
                }
                _ => summary.already_present += 1,
            }
        }
        summary.demo_key = self.carry_demo_key(demo_key_file)?;
        Ok(summary)
    }

    fn carry_demo_key(&self, file: &Path) -> Result<DemoImport, DbError> {
        let key = match std::fs::read_to_string(file) {
            Ok(text) => text.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(DbError::new(DbErrorKind::Io, format!("{}: {e}", file.display())));
            }
        };
        if key.is_empty() {
            return Ok(DemoImport::NoFile);
        }
        let sha = keys::hash_key(&key);
        // Compare-and-set: retried if a starting node changes the demo key meanwhile.
        for _ in 0..5 {
            let seen: Option<String> =
                self.call(|c| redis::cmd("GET").arg(&self.keys.demo_key).query(c))?;
            let seen = seen.unwrap_or_default();
            let seen_sha = if seen.is_empty() { String::new() } else { keys::hash_key(&seen) };
            let outcome: String = self.call(|c| {
                self.carry_demo
                    .key(&self.keys.demo_key)
                    .arg(&key)
                    .arg(self.keys.api_key(""))
                    .arg(&sha)
                    .arg(&seen)
                    .arg(&seen_sha)
                    .invoke(c)
            })?;
            return Ok(match outcome.as_str() {
                "carried" => DemoImport::Carried,
                "same" => DemoImport::AlreadyThere,
                "kept" => DemoImport::KeptCluster,
                "not-live" => DemoImport::NotLive,
                _ => continue,
            });
        }
        Err(DbError::new(DbErrorKind::Busy, "the cluster's demo key kept changing"))
    }
}

fn read_rows(conn: &Connection) -> Result<Vec<Row>, DbError> {
    // Only a migrated store holds hashes and prefixes; a seed one still has plaintext.
    let migrated: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('api_keys') WHERE name = 'key_prefix'",
        [],
        |r| r.get(0),
    )?;
    if migrated == 0 {
        return Err(DbError::new(
            DbErrorKind::Other,
            "not a migrated crypto-ticker key database (start the server on it once, or run `crypto-ticker keys list --db PATH`)",
        ));
    }
    let mut stmt = conn.prepare(
        "SELECT id, api_key, user_id, role, COALESCE(key_prefix, ''), created_at, revoked_at
         FROM api_keys ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Row {
                id: r.get(0)?,
                sha: r.get(1)?,
                user_id: r.get(2)?,
                role: r.get(3)?,
                prefix: r.get(4)?,
                created_at: r.get(5)?,
                revoked_at: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::key_store::{KeyStore, Revocation};
    use crate::cluster::pool::LinkPool;
    use crate::cluster::test_redis::TestRedis;

    /// A single-node store: the demo key, alice (live), bob (revoked).
    fn sqlite(dir: &Path) -> (std::path::PathBuf, Connection, String, String, String) {
        let db = dir.join("auth.db");
        let conn = keys::open(&db).unwrap();
        let demo = keys::migrate(&conn, &keys::demo_key_file(&db)).unwrap().key;
        let (_, alice) = keys::create_key(&conn, "alice", "admin").unwrap();
        let (bob_id, bob) = keys::create_key(&conn, "bob", "user").unwrap();
        keys::revoke_key(&conn, bob_id).unwrap();
        (db, conn, demo, alice, bob)
    }

    #[test]
    fn an_import_moves_hashes_roles_revocations_and_the_demo_key_once() {
        let Some(server) = TestRedis::start() else { return };
        let dir = tempfile::tempdir().unwrap();
        let (db, conn, demo, alice, bob) = sqlite(dir.path());
        let s = RedisKeyStore::new(Arc::new(LinkPool::new(&server.url(), 1).unwrap()), "t:");
        // A key made in the cluster first takes id 1, which SQLite's demo key has.
        let (taken, _) = s.create_key("carol", "user").unwrap();
        assert_eq!(taken, ApiKeyId(1));

        let summary = s.import_from_sqlite(&conn, &keys::demo_key_file(&db)).unwrap();
        assert_eq!((summary.imported, summary.imported_revoked), (3, 1));
        assert_eq!((summary.already_present, summary.skipped), (0, 0));
        assert_eq!(summary.renumbered.len(), 1);
        let (old, new) = summary.renumbered[0];
        assert_eq!(old, ApiKeyId(1));
        assert!(new.0 > 3, "a fresh id past the imported ones, got {new}");
        assert_eq!(summary.demo_key, DemoImport::Carried);

        let rec = s.lookup(&alice).unwrap().unwrap();
        assert_eq!(
            (rec.id, rec.user_id.as_str(), rec.role.as_str()),
            (ApiKeyId(2), "alice", "admin")
        );
        assert_eq!(s.lookup(&bob).unwrap(), None, "revoked stays revoked");
        assert_eq!(s.lookup(&demo).unwrap().unwrap().id, new);
        assert_eq!(s.prepare().unwrap(), keys::DemoKey { key: demo.clone(), created: false });
        // New keys never take an imported id.
        assert!(s.create_key("dave", "user").unwrap().0.0 > new.0);
        let sqlite_list = keys::list_keys(&conn).unwrap();
        let cluster_list = s.list_keys().unwrap();
        let alice_row = cluster_list.iter().find(|k| k.user_id == "alice").unwrap();
        assert_eq!(alice_row, &sqlite_list[1], "same id, prefix, created_at");

        // Again, after SQLite revoked alice: nothing duplicated, the revocation carried
        // over and fed to the nodes.
        let cursor = s.revocation_cursor().unwrap();
        keys::revoke_key(&conn, ApiKeyId(2)).unwrap();
        let again = s.import_from_sqlite(&conn, &keys::demo_key_file(&db)).unwrap();
        assert_eq!((again.imported, again.already_present, again.newly_revoked), (0, 3, 1));
        assert!(again.renumbered.is_empty());
        assert_eq!(again.demo_key, DemoImport::AlreadyThere);
        assert_eq!(s.list_keys().unwrap().len(), cluster_list.len(), "nothing duplicated");
        assert_eq!(s.lookup(&alice).unwrap(), None);
        assert_eq!(s.revoked_since(cursor).unwrap().0, vec![Revocation::ApiKey(ApiKeyId(2))]);
        assert!(again.to_string().contains("0 key(s)"));
    }

    #[test]
    fn a_cluster_demo_key_made_before_the_import_is_kept() {
        let Some(server) = TestRedis::start() else { return };
        let dir = tempfile::tempdir().unwrap();
        let (db, conn, demo, _, _) = sqlite(dir.path());
        let s = RedisKeyStore::new(Arc::new(LinkPool::new(&server.url(), 1).unwrap()), "t:");
        let cluster_demo = s.prepare().unwrap();
        let summary = s.import_from_sqlite(&conn, &keys::demo_key_file(&db)).unwrap();
        assert_eq!(summary.demo_key, DemoImport::KeptCluster);
        assert_eq!(s.prepare().unwrap().key, cluster_demo.key);
        assert!(s.lookup(&demo).unwrap().is_some(), "the file's key still works");
    }

    #[test]
    fn a_seed_database_is_refused_until_migrated() {
        let Some(server) = TestRedis::start() else { return };
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, api_key TEXT, user_id TEXT,
             role TEXT, created_at INTEGER)",
        )
        .unwrap();
        let s = RedisKeyStore::new(Arc::new(LinkPool::new(&server.url(), 1).unwrap()), "t:");
        let err = s.import_from_sqlite(&conn, Path::new("/nonexistent/demo")).unwrap_err();
        assert!(err.detail.contains("not a migrated"), "{err}");
    }
}
