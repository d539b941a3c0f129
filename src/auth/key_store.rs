//! The key store seam: API key → (id, user, role), and the feed of revoked keys.
//!
//! One node keeps keys in SQLite ([`SqliteKeyStore`], over [`super::keys`]); a cluster
//! implements [`KeyStore`] a second time on a shared engine. Every method may block, so
//! only worker threads, the revocation watcher and start-up call them.
//!
//! [`KeyAdmin`] is the `keys` CLI's side of the same stores: create, list, revoke.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::db_files::demo_key_file;
use super::ids::{ApiKeyId, TokenId};
use super::keys::{self, ApiKeyRecord, DbError, DbErrorKind, DemoKey, KeyInfo};

/// How long a lookup waits on a locked database before answering 500.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// One entry of the revocation feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Every token of this key ends, and its sessions close.
    ApiKey(ApiKeyId),
    /// This one token ends (`POST /auth/revoke` on another node of a cluster).
    Token(TokenId),
}

/// Where API keys live.
pub trait KeyStore: Send + Sync {
    /// Creates or upgrades the store and makes sure a live demo key exists.
    fn prepare(&self) -> Result<DemoKey, DbError>;
    /// The live key with this plaintext, if any.
    fn lookup(&self, api_key: &str) -> Result<Option<ApiKeyRecord>, DbError>;
    /// Where the revocation feed ends now: later revocations are after it.
    fn revocation_cursor(&self) -> Result<i64, DbError>;
    /// Revocations after `cursor` (by any process), and the new cursor.
    fn revoked_since(&self, cursor: i64) -> Result<(Vec<Revocation>, i64), DbError>;
    /// Appends a token's revocation to the feed, for stores that other nodes follow;
    /// a single node's store has no one to tell and does nothing.
    fn announce_token_revoked(&self, _token: TokenId) -> Result<(), DbError> {
        Ok(())
    }
}

/// What the `keys` CLI does with a store; the server never does it (keys are made and
/// revoked by a person, not by a request).
pub trait KeyAdmin {
    /// A new key for `user_id` with `role`: its id and its plaintext (shown once).
    fn create_key(&self, user_id: &str, role: &str) -> Result<(ApiKeyId, String), DbError>;
    /// Every key, live or revoked, by id.
    fn list_keys(&self) -> Result<Vec<KeyInfo>, DbError>;
    /// Revokes one key; `false` when no live key has this id.
    fn revoke_key(&self, id: ApiKeyId) -> Result<bool, DbError>;
    /// Revokes every live key of a user; how many.
    fn revoke_user(&self, user_id: &str) -> Result<usize, DbError>;
}

/// The single-node store: the SQLite file at `path`. Connections are pooled so workers
/// look keys up in parallel; each is reopened when the file goes away or is replaced,
/// so the server recovers by itself once the database is back.
pub struct SqliteKeyStore {
    path: PathBuf,
    idle: Mutex<Vec<(Connection, u64)>>,
}

impl SqliteKeyStore {
    pub fn new(path: PathBuf) -> SqliteKeyStore {
        SqliteKeyStore { path, idle: Mutex::new(Vec::new()) }
    }

    /// The store at `path`, starting from a connection its caller opened there (the
    /// `keys` CLI opens it as each command may: read-only for `list`, after its checks).
    pub fn with_connection(path: PathBuf, conn: Connection) -> SqliteKeyStore {
        let store = SqliteKeyStore::new(path);
        // Pooled under the file's inode, so `with_conn` takes this connection first.
        if let Ok(meta) = std::fs::metadata(&store.path) {
            store.idle.lock().unwrap_or_else(PoisonError::into_inner).push((conn, meta.ino()));
        }
        store
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection to the file as it is now; a connection that
    /// failed is dropped, not returned to the pool.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        // The file's inode tells a deleted or replaced database from the one we hold.
        let inode = std::fs::metadata(&self.path)
            .map_err(|e| {
                DbError::new(DbErrorKind::Missing, format!("{}: {e}", self.path.display()))
            })?
            .ino();
        let pooled = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|(_, ino)| *ino == inode);
            idle.pop()
        };
        let conn = match pooled {
            Some((conn, _)) => conn,
            None => open_existing(&self.path)?,
        };
        let result = f(&conn);
        if result.is_ok() {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push((conn, inode));
        }
        result
    }
}

impl KeyStore for SqliteKeyStore {
    fn prepare(&self) -> Result<DemoKey, DbError> {
        let conn = keys::open(&self.path)?;
        keys::migrate(&conn, &demo_key_file(&self.path))
    }

    fn lookup(&self, api_key: &str) -> Result<Option<ApiKeyRecord>, DbError> {
        self.with_conn(|conn| keys::lookup(conn, api_key))
    }

    fn revocation_cursor(&self) -> Result<i64, DbError> {
        self.with_conn(keys::revocation_cursor)
    }

    fn revoked_since(&self, cursor: i64) -> Result<(Vec<Revocation>, i64), DbError> {
        let (ids, next) = self.with_conn(|conn| keys::revoked_since(conn, cursor))?;
        Ok((ids.into_iter().map(Revocation::ApiKey).collect(), next))
    }
}

impl KeyAdmin for SqliteKeyStore {
    fn create_key(&self, user_id: &str, role: &str) -> Result<(ApiKeyId, String), DbError> {
        self.with_conn(|conn| keys::create_key(conn, user_id, role))
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>, DbError> {
        self.with_conn(keys::list_keys)
    }

    fn revoke_key(&self, id: ApiKeyId) -> Result<bool, DbError> {
        self.with_conn(|conn| keys::revoke_key(conn, id))
    }

    fn revoke_user(&self, user_id: &str) -> Result<usize, DbError> {
        self.with_conn(|conn| keys::revoke_user(conn, user_id))
    }
}

/// Opens the database without creating it: a missing file is an error here, not an
/// empty database (only start-up migration creates it).
fn open_existing(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Fail now, not on the first query, when the file is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_missing_corrupt_and_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.db");
        let store = SqliteKeyStore::new(path.clone());
        assert_eq!(store.lookup("k").unwrap_err().kind, DbErrorKind::Missing);

        let demo = store.prepare().unwrap();
        assert!(store.lookup(&demo.key).unwrap().is_some());

        // A garbage file renamed over the database: the pooled connection is for the old
        // inode, so the new file is opened and found not to be a database.
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        std::fs::rename(&garbage, &path).unwrap();
        assert_eq!(store.lookup(&demo.key).unwrap_err().kind, DbErrorKind::Corrupt);
    }

    #[test]
    fn a_locked_database_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.db");
        let store = SqliteKeyStore::new(path.clone());
        let demo = store.prepare().unwrap();
        // An exclusive lock held by another connection outlasts the busy timeout.
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
        let err = store.lookup(&demo.key).unwrap_err();
        assert_eq!(err.kind, DbErrorKind::Busy, "{err}");
        holder.execute_batch("COMMIT").unwrap();
    }
}
