//! The SQLite API-key store (seed: `migrate.lua`). Blocking: only worker threads, the
//! revocation watcher, start-up and the `keys` CLI call it.
//!
//! Keys are stored only as the hex SHA-256 of the key (column `api_key`, as the seed
//! names it) plus a short non-secret prefix for `keys list`. The demo key's plaintext is
//! kept in `demo-api-key` (mode 0600) beside the database, so every start can log it; it
//! is for demos only. Databases from the seed tutorial (plaintext keys, `user_version`
//! 0) are migrated in place. The folder and every file of the database are private to
//! their owner ([`super::db_files`]).
//!
//! Revocations are also appended to `revocations`, whose increasing `seq` lets a running
//! server notice keys revoked by another process (the CLI) within a poll interval.
//!
//! Who creates what: [`open`] creates a missing database (and its folder), for the
//! server's start and `keys create`; [`open_existing`] never does, for the commands that
//! only read or change what is there. Only the server's start makes the demo key
//! ([`migrate`]); the CLI brings the schema up to date ([`upgrade_schema`]) and nothing
//! more.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

// The queries below take and return key ids, and need the demo key's file: both are
// named here too for the callers of these queries (the CLI).
pub use super::db_files::demo_key_file;
pub use super::ids::ApiKeyId;

/// Schema version kept in `PRAGMA user_version`: 0 is the seed's, 2 adds hashing,
/// prefixes and revocation.
pub const SCHEMA_VERSION: i64 = 2;
const KEY_LEN: usize = 32;
const PREFIX_LEN: usize = 6;
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const DEMO_USER: &str = "demo";

/// What went wrong with the database, by the cause an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The file (or its folder) does not exist or cannot be opened.
    Missing,
    /// Locked by another connection past the busy timeout.
    Busy,
    /// The file is not a database, or is damaged.
    Corrupt,
    /// The disk failed or is full.
    Io,
    /// The OS could not give randomness for a new key.
    NoRandomness,
    /// A shared key store (the cluster's) cannot be reached now.
    Unreachable,
    /// Anything else SQLite reports (a bug, a schema mismatch).
    Other,
}

impl DbErrorKind {
    /// The metric label and log word for this kind.
    pub fn label(self) -> &'static str {
        match self {
            DbErrorKind::Missing => "missing",
            DbErrorKind::Busy => "busy",
            DbErrorKind::Corrupt => "corrupt",
            DbErrorKind::Io => "io",
            DbErrorKind::NoRandomness => "no_randomness",
            DbErrorKind::Unreachable => "unreachable",
            DbErrorKind::Other => "other",
        }
    }
}

/// A database error: its kind (for metrics and decisions) and SQLite's words (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub kind: DbErrorKind,
    pub detail: String,
}

impl DbError {
    pub fn new(kind: DbErrorKind, detail: impl fmt::Display) -> DbError {
        DbError { kind, detail: detail.to_string() }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database {}: {}", self.kind.label(), self.detail)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        use rusqlite::ErrorCode as C;
        let kind = match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => DbErrorKind::Busy,
            Some(C::NotADatabase | C::DatabaseCorrupt) => DbErrorKind::Corrupt,
            Some(C::CannotOpen) => DbErrorKind::Missing,
            Some(C::SystemIoFailure | C::DiskFull) => DbErrorKind::Io,
            _ => DbErrorKind::Other,
        };
        DbError::new(kind, e)
    }
}

fn query_err(e: rusqlite::Error) -> DbError {
    DbError::from(e)
}

/// The demo key and whether this start created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoKey {
    pub key: String,
    pub created: bool,
}

/// A live key, as the token exchange needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub user_id: String,
    pub role: String,
}

/// A key as `keys list` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: ApiKeyId,
    pub user_id: String,
    pub role: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Opens (creating it and its folder if needed) the database, in WAL mode so the CLI
/// and the server can use it at once. The folder is made 0700 and the files 0600, and
/// looser ones found are tightened ([`super::db_files::secure`]).
pub fn open(path: &Path) -> Result<Connection, DbError> {
    super::db_files::secure(path)
        .map_err(|e| DbError::new(DbErrorKind::Missing, format!("{}: {e}", path.display())))?;
    let conn =
        Connection::open(path).map_err(|e| DbError::new(DbError::from(e).kind, path.display()))?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(query_err)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(query_err)?;
    Ok(conn)
}

/// What a command may do with a database that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Opens the database at `path` only if it exists: creates no folder, no file, no key.
/// A missing file is [`DbErrorKind::Missing`]. Its files' modes are checked as by
/// [`open`] ([`super::db_files::tighten`]). Read-write connections use WAL, as [`open`]'s.
pub fn open_existing(path: &Path, access: Access) -> Result<Connection, DbError> {
    if !path.is_file() {
        return Err(DbError::new(
            DbErrorKind::Missing,
            format!("{}: no such file", path.display()),
        ));
    }
    super::db_files::tighten(path);
    // Without SQLITE_OPEN_CREATE: a file removed since the check is an error, not a new
    // empty database.
    let flags = match access {
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| DbError::new(DbError::from(e).kind, path.display()))?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(query_err)?;
    if access == Access::ReadWrite {
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(query_err)?;
    }
    Ok(conn)
}

/// The schema version the database is at (`PRAGMA user_version`; 0 for an empty file).
pub fn schema_version(conn: &Connection) -> Result<i64, DbError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(query_err)
}

/// Idempotent migration, run at every start: [`upgrade_schema`], then makes sure a live
/// demo key exists.
pub fn migrate(conn: &Connection, demo_key_file: &Path) -> Result<DemoKey, DbError> {
    upgrade_schema(conn, demo_key_file)?;
    ensure_demo_key(conn, demo_key_file)
}

/// Brings the schema to [`SCHEMA_VERSION`] (idempotent): creates the table in an empty
/// database, upgrades a seed database in place (its demo key's plaintext moves to
/// `demo_key_file`). Makes no key.
pub fn upgrade_schema(conn: &Connection, demo_key_file: &Path) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS api_keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            api_key TEXT UNIQUE NOT NULL,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL DEFAULT 'user',
            created_at INTEGER NOT NULL
        );",
    )
    .map_err(query_err)?;
    if schema_version(conn)? < SCHEMA_VERSION {
        upgrade_from_seed(conn, demo_key_file)?;
    }
    Ok(())
}

/// Version 0 → 2: add columns and the revocation log, hash plaintext keys in place.
fn upgrade_from_seed(conn: &Connection, demo_key_file: &Path) -> Result<(), DbError> {
    let tx = conn.unchecked_transaction().map_err(query_err)?;
    let columns: Vec<String> = {
        let mut stmt =
            tx.prepare("SELECT name FROM pragma_table_info('api_keys')").map_err(query_err)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(query_err)?
            .collect::<Result<_, _>>()
            .map_err(query_err)?
    };
    for (name, ty) in [("key_prefix", "TEXT"), ("revoked_at", "INTEGER")] {
        if !columns.iter().any(|c| c == name) {
            tx.execute_batch(&format!("ALTER TABLE api_keys ADD COLUMN {name} {ty}"))
                .map_err(query_err)?;
        }
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS revocations (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            api_key_id INTEGER NOT NULL,
            revoked_at INTEGER NOT NULL
        );",
    )
    .map_err(query_err)?;
    // Rows without a prefix still hold a plaintext key (seed databases).
    let plaintext: Vec<(i64, String, String)> = {
        let mut stmt = tx
            .prepare("SELECT id, api_key, user_id FROM api_keys WHERE key_prefix IS NULL")
            .map_err(query_err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(query_err)?
            .collect::<Result<_, _>>()
            .map_err(query_err)?
    };
    for (id, key, user_id) in plaintext {
        // The seed's demo key stays usable: its plaintext moves to the demo key file.
        if user_id == DEMO_USER && !demo_key_file.exists() {
            write_demo_file(demo_key_file, &key)?;
        }
        tx.execute(
            "UPDATE api_keys SET api_key = ?1, key_prefix = ?2 WHERE id = ?3",
            params![hash_key(&key), prefix(&key), id],
        )
        .map_err(query_err)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).map_err(query_err)?;
    tx.commit().map_err(query_err)
}

fn ensure_demo_key(conn: &Connection, demo_key_file: &Path) -> Result<DemoKey, DbError> {
    let from_file = std::fs::read_to_string(demo_key_file).ok().map(|s| s.trim().to_owned());
    if let Some(key) = from_file.filter(|k| !k.is_empty()) {
        let live: Option<i64> = conn
            .query_row(
                "SELECT id FROM api_keys WHERE api_key = ?1 AND user_id = ?2 AND revoked_at IS NULL",
                params![hash_key(&key), DEMO_USER],
                |r| r.get(0),
            )
            .optional()
            .map_err(query_err)?;
        if live.is_some() {
            return Ok(DemoKey { key, created: false });
        }
    }
    // No usable demo key: retire any old one (its plaintext is lost) and make a new one.
    let tx = conn.unchecked_transaction().map_err(query_err)?;
    let old: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT id FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL")
            .map_err(query_err)?;
        stmt.query_map([DEMO_USER], |r| r.get(0))
            .map_err(query_err)?
            .collect::<Result<_, _>>()
            .map_err(query_err)?
    };
    for id in old {
        revoke_in(&tx, id)?;
    }
    let key = random_key()?;
    insert_key(&tx, &key, DEMO_USER, "user")?;
    write_demo_file(demo_key_file, &key)?;
    tx.commit().map_err(query_err)?;
    Ok(DemoKey { key, created: true })
}

/// The live key with this plaintext, if any.
pub fn lookup(conn: &Connection, api_key: &str) -> Result<Option<ApiKeyRecord>, DbError> {
    // Cached on the connection (the key store pools them): every token exchange runs
    // this, and parsing and planning it anew took a third of an exchange's time
    // (8.0 → 5.2 µs, `cargo run --release --example token_bench -- --in-process DB`).
    conn.prepare_cached(
        "SELECT id, user_id, role FROM api_keys WHERE api_key = ?1 AND revoked_at IS NULL",
    )
    .map_err(query_err)?
    .query_row([hash_key(api_key)], |r| {
        Ok(ApiKeyRecord { id: ApiKeyId(r.get(0)?), user_id: r.get(1)?, role: r.get(2)? })
    })
    .optional()
    .map_err(query_err)
}

/// Creates a key; the plaintext is returned once and never stored.
pub fn create_key(
    conn: &Connection,
    user_id: &str,
    role: &str,
) -> Result<(ApiKeyId, String), DbError> {
    let key = random_key()?;
    let id = insert_key(conn, &key, user_id, role)?;
    Ok((ApiKeyId(id), key))
}

fn insert_key(conn: &Connection, key: &str, user_id: &str, role: &str) -> Result<i64, DbError> {
    conn.execute(
        "INSERT INTO api_keys (api_key, user_id, role, created_at, key_prefix) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash_key(key), user_id, role, unix_now(), prefix(key)],
    )
    .map_err(query_err)?;
    Ok(conn.last_insert_rowid())
}

pub fn list_keys(conn: &Connection) -> Result<Vec<KeyInfo>, DbError> {
    let mut stmt = conn
        .prepare("SELECT id, user_id, role, COALESCE(key_prefix, ''), created_at, revoked_at FROM api_keys ORDER BY id")
        .map_err(query_err)?;
    stmt.query_map([], |r| {
        Ok(KeyInfo {
            id: ApiKeyId(r.get(0)?),
            user_id: r.get(1)?,
            role: r.get(2)?,
            prefix: r.get(3)?,
            created_at: r.get(4)?,
            revoked_at: r.get(5)?,
        })
    })
    .map_err(query_err)?
    .collect::<Result<_, _>>()
    .map_err(query_err)
}

/// Revokes one key; `false` if it does not exist or was already revoked.
pub fn revoke_key(conn: &Connection, ApiKeyId(id): ApiKeyId) -> Result<bool, DbError> {
    let tx = conn.unchecked_transaction().map_err(query_err)?;
    let done = revoke_in(&tx, id)?;
    tx.commit().map_err(query_err)?;
    Ok(done)
}

/// Revokes every live key of a user; returns how many.
pub fn revoke_user(conn: &Connection, user_id: &str) -> Result<usize, DbError> {
    let tx = conn.unchecked_transaction().map_err(query_err)?;
    let ids: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT id FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL")
            .map_err(query_err)?;
        stmt.query_map([user_id], |r| r.get(0))
            .map_err(query_err)?
            .collect::<Result<_, _>>()
            .map_err(query_err)?
    };
    for id in &ids {
        revoke_in(&tx, *id)?;
    }
    tx.commit().map_err(query_err)?;
    Ok(ids.len())
}

fn revoke_in(conn: &Connection, id: i64) -> Result<bool, DbError> {
    let now = unix_now();
    let changed = conn
        .execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
            params![now, id],
        )
        .map_err(query_err)?;
    if changed > 0 {
        conn.execute(
            "INSERT INTO revocations (api_key_id, revoked_at) VALUES (?1, ?2)",
            params![id, now],
        )
        .map_err(query_err)?;
    }
    Ok(changed > 0)
}

/// Where the revocation log ends now.
pub fn revocation_cursor(conn: &Connection) -> Result<i64, DbError> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM revocations", [], |r| r.get(0))
        .map_err(query_err)
}

/// Keys revoked after `cursor`, and the new cursor.
pub fn revoked_since(conn: &Connection, cursor: i64) -> Result<(Vec<ApiKeyId>, i64), DbError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, api_key_id FROM revocations WHERE seq > ?1 ORDER BY seq")
        .map_err(query_err)?;
    let rows: Vec<(i64, i64)> = stmt
        .query_map([cursor], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(query_err)?
        .collect::<Result<_, _>>()
        .map_err(query_err)?;
    let next = rows.last().map_or(cursor, |(seq, _)| *seq);
    Ok((rows.into_iter().map(|(_, id)| ApiKeyId(id)).collect(), next))
}

/// Hex SHA-256 of a key: what the database stores.
pub fn hash_key(key: &str) -> String {
    // Every token exchange hashes its key: one allocation, not one per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(key.as_bytes()) {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    hex
}

fn prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN).collect()
}

/// 32 characters of `[A-Za-z0-9]` from the OS CSPRNG, without modulo bias.
pub fn random_key() -> Result<String, DbError> {
    let mut key = String::with_capacity(KEY_LEN);
    let mut bytes = [0u8; 64];
    while key.len() < KEY_LEN {
        getrandom::fill(&mut bytes).map_err(|e| DbError::new(DbErrorKind::NoRandomness, e))?;
        // 248 = 4 * 62: bytes at or above it would favour the first characters.
        for b in bytes.iter().filter(|b| **b < 248) {
            if key.len() == KEY_LEN {
                break;
            }
            key.push(ALPHABET[usize::from(*b % 62)] as char);
        }
    }
    Ok(key)
}

/// Writes the demo key file with mode 0600, atomically (temp file, then rename).
fn write_demo_file(path: &Path, key: &str) -> Result<(), DbError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| DbError::new(DbErrorKind::Io, format!("{}: {e}", path.display())))
}

fn unix_now() -> i64 {
    i64::try_from(super::ids::unix_now()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    #[test]
    fn a_key_is_stored_as_the_lowercase_hex_of_its_sha256() {
        // FIPS 180-2's example: what every database written so far holds for "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash_key("abc"), abc);
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("auth.db");
        (dir, db)
    }

    #[test]
    fn migration_is_idempotent_and_the_demo_key_stable() {
        let (_dir, db) = setup();
        let file = demo_key_file(&db);
        let first = migrate(&open(&db).unwrap(), &file).unwrap();
        assert!(first.created);
        assert_eq!(first.key.len(), 32);
        for _ in 0..3 {
            let again = migrate(&open(&db).unwrap(), &file).unwrap();
            assert_eq!(again, DemoKey { key: first.key.clone(), created: false });
        }
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let conn = open(&db).unwrap();
        assert_eq!(lookup(&conn, &first.key).unwrap().unwrap().user_id, "demo");
        // Only the hash is stored.
        let stored: String =
            conn.query_row("SELECT api_key FROM api_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, hash_key(&first.key));
    }

    #[test]
    fn a_lost_demo_file_retires_the_old_key_and_makes_a_new_one() {
        let (_dir, db) = setup();
        let file = demo_key_file(&db);
        let conn = open(&db).unwrap();
        let first = migrate(&conn, &file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let second = migrate(&conn, &file).unwrap();
        assert!(second.created);
        assert_ne!(first.key, second.key);
        assert_eq!(lookup(&conn, &first.key).unwrap(), None);
    }

    #[test]
    fn a_seed_database_with_plaintext_keys_is_migrated_in_place() {
        let (_dir, db) = setup();
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(
                "CREATE TABLE api_keys (id INTEGER PRIMARY KEY AUTOINCREMENT, api_key TEXT UNIQUE NOT NULL,
                 user_id TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'user', created_at INTEGER NOT NULL);
                 INSERT INTO api_keys (api_key, user_id, role, created_at) VALUES ('SeedDemoKey0123456789abcdefABCDE', 'demo', 'user', 1);
                 INSERT INTO api_keys (api_key, user_id, role, created_at) VALUES ('alice-plain-key', 'alice', 'admin', 2);",
            )
            .unwrap();
        }
        let conn = open(&db).unwrap();
        let demo = migrate(&conn, &demo_key_file(&db)).unwrap();
        assert_eq!(
            demo,
            DemoKey { key: "SeedDemoKey0123456789abcdefABCDE".into(), created: false }
        );
        assert_eq!(lookup(&conn, "alice-plain-key").unwrap().unwrap().role, "admin");
        let plaintext_left: i64 = conn
            .query_row("SELECT count(*) FROM api_keys WHERE api_key LIKE '%plain%'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(plaintext_left, 0);
        let list = list_keys(&conn).unwrap();
        assert_eq!(list[1].prefix, "alice-");
    }

    #[test]
    fn revoked_keys_stop_working_and_are_logged_for_the_server() {
        let (_dir, db) = setup();
        let conn = open(&db).unwrap();
        migrate(&conn, &demo_key_file(&db)).unwrap();
        let cursor = revocation_cursor(&conn).unwrap();
        let (a, key_a) = create_key(&conn, "alice", "user").unwrap();
        let (_, key_b) = create_key(&conn, "bob", "user").unwrap();
        assert!(revoke_key(&conn, a).unwrap());
        assert!(!revoke_key(&conn, a).unwrap());
        assert_eq!(lookup(&conn, &key_a).unwrap(), None);
        assert!(lookup(&conn, &key_b).unwrap().is_some());
        assert_eq!(revoke_user(&conn, "bob").unwrap(), 1);
        let (ids, next) = revoked_since(&conn, cursor).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], a);
        assert_eq!(revoked_since(&conn, next).unwrap().0, Vec::<ApiKeyId>::new());
    }

    #[test]
    fn random_keys_are_32_alphanumerics() {
        let k = random_key().unwrap();
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(k, random_key().unwrap());
    }
}
