//! `crypto-ticker keys ...`: manage API keys where the server keeps them.
//!
//! Without `--redis`, that is the SQLite database at `--db` (also while the server runs:
//! SQLite WAL and a busy timeout). With `--redis URL` (or `TICKER_REDIS`), it is the
//! cluster's Redis ([`crate::cluster::admin_keys`]). Either way the commands go through
//! the [`KeyAdmin`] seam, a running server closes the sessions of a revoked key within
//! a second, and the output is the same. `keys import` moves a single node's SQLite
//! store into the cluster (`cluster::key_store`). A build without the `cluster` feature
//! refuses `--redis` (the tests of each build's cluster side are beside the cluster's
//! seam, `cluster/node.rs` and `cluster/absent.rs`).
//!
//! What each command may create, so that a mistyped `--db` creates nothing:
//! - `create` makes a missing database and its folder, private, as the server's first
//!   start does. Not the demo key: that is the server's to make and to log at start.
//! - `list` (read-only), `revoke` and `import` need the database to exist; a missing one
//!   is [`CliError::NoDatabase`]. `revoke` and `import` upgrade an older schema in place;
//!   `list` changes nothing and asks for that upgrade instead ([`CliError::OldSchema`]).
//! - Every error exits with status 2 (`main`).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::auth::key_store::{KeyAdmin, SqliteKeyStore};
use crate::auth::keys::{self, Access, ApiKeyId, DbError};
use crate::cluster::{self, AdminKeys, LinkError};
use crate::config::{self, ConfigError};

#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Config(ConfigError),
    /// No database at `--db` for a command that needs one (all but `create`).
    NoDatabase(PathBuf),
    /// `list` found a database at an older schema, which it does not change.
    OldSchema {
        path: PathBuf,
        version: i64,
    },
    /// `revoke ID` of a key that does not exist or is revoked already.
    NoLiveKey(ApiKeyId),
    Db(DbError),
    /// The `--redis` URL cannot be used.
    Redis(LinkError),
    /// Writing the output failed (a closed pipe).
    Output(std::io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(e) => write!(f, "{e}\n\n{}", keys_usage()),
            CliError::Config(e) => write!(f, "{e}"),
            CliError::NoDatabase(path) => write!(
                f,
                "no key database at {} (the server creates it on first start, `keys create` \
                 too; check --db)",
                path.display()
            ),
            CliError::OldSchema { path, version } => write!(
                f,
                "the key database at {} has schema version {version}, older than this \
                 version's {}; `keys list` changes nothing: start the server once, or run \
                 `keys create` or `keys revoke`, to upgrade it in place",
                path.display(),
                keys::SCHEMA_VERSION
            ),
            CliError::NoLiveKey(id) => write!(f, "no live key with id {id} (see `keys list`)"),
            CliError::Db(e) => write!(f, "{e}"),
            CliError::Redis(e) => write!(f, "{e}"),
            CliError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<DbError> for CliError {
    fn from(e: DbError) -> Self {
        CliError::Db(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Output(e)
    }
}

/// `keys --help`; lines fit [`config::HELP_WIDTH`] columns, as the server's `--help`.
pub fn keys_usage() -> String {
    let mut usage = String::from(
        "crypto-ticker keys: manage API keys where the server keeps them

USAGE:
    crypto-ticker keys create --user ID [--role ROLE]   print a new key (shown once)
    crypto-ticker keys list                             id, user, role, prefix, created, revoked
    crypto-ticker keys revoke ID                        revoke one key
    crypto-ticker keys revoke --user ID                 revoke every key of a user
    crypto-ticker keys import --db PATH --redis URL     copy a single node's keys (hashes,
                                                        roles, revocations, demo key) into
                                                        the cluster

With --redis the commands manage the cluster's keys in Redis; without it, the SQLite
database at --db. Running servers close a revoked key's sessions within a second.

A database that does not exist: `create` makes it and its folder (private, as the server's
first start does; the server adds the demo key when it starts). `list`, `revoke` and
`import` create nothing: they stop with \"no key database at PATH\". Every error exits
with status 2.

OPTIONS (the server's: same variables and defaults):
",
    );
    usage.push_str(&config::options_text(SHARED_OPTIONS));
    usage
}

/// The server's options that the `keys` subcommand shares (same flags, variables and
/// defaults, from the one option table).
const SHARED_OPTIONS: &[&str] = &["db", "redis", "redis-sentinels", "redis-master"];

/// One `keys` command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeysCommand {
    Help,
    Create { user: String, role: String },
    List,
    Revoke(ApiKeyId),
    RevokeUser(String),
    Import,
}

/// Runs `keys <args>` with the process's environment, stdout and stderr.
pub fn run_keys(args: &[String]) -> Result<(), CliError> {
    run_keys_with(
        args,
        |name| std::env::var(name).ok(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

/// Runs `keys <args>`: results to `out`, notes for the person to `note` (so a piped
/// `keys create` yields only the key).
pub fn run_keys_with(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    let (config, args) =
        config::parse_subset(args, env, SHARED_OPTIONS).map_err(CliError::Config)?;
    config::check_redis(&config).map_err(CliError::Config)?;
    let command = parse_command(&args)?;
    let (db, target) = (config.db_path.clone(), config.redis_target());
    if command == KeysCommand::Help {
        write!(out, "{}", keys_usage())?;
        return Ok(());
    }
    if command == KeysCommand::Import {
        let target = target.ok_or_else(|| {
            CliError::Usage("import needs --redis URL or --redis-sentinels (the cluster)".into())
        })?;
        return import(&db, &cluster_keys(&target)?, out);
    }
    let store: Box<dyn KeyAdmin> = match target {
        Some(target) => cluster_keys(&target)?.into_store(),
        None => Box::new(SqliteKeyStore::with_connection(db.clone(), open_sqlite(&db, &command)?)),
    };
    run_command(command, store.as_ref(), out, note)
}

/// One command of `keys`, on the store it names.
fn run_command(
    command: KeysCommand,
    store: &dyn KeyAdmin,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        KeysCommand::Create { user, role } => {
            let (id, key) = store.create_key(&user, &role)?;
            writeln!(out, "{key}")?;
            writeln!(
                note,
                "created key {id} for user {user} (role {role}); it is shown only this once"
            )?;
        }
        KeysCommand::List => {
            writeln!(
                out,
                "{:>5}  {:<16} {:<8} {:<8} {:<20} revoked",
                "id", "user", "role", "prefix", "created"
            )?;
            for k in store.list_keys()? {
                writeln!(
                    out,
                    "{:>5}  {:<16} {:<8} {:<8} {:<20} {}",
                    k.id,
                    k.user_id,
                    k.role,
                    k.prefix,
                    date(k.created_at),
                    k.revoked_at.map(date).unwrap_or_else(|| "-".into())
                )?;
            }
        }
        KeysCommand::RevokeUser(user) => {
            let n = store.revoke_user(&user)?;
            writeln!(out, "revoked {n} key(s) of user {user}")?;
        }
        KeysCommand::Revoke(id) => {
            if store.revoke_key(id)? {
                writeln!(out, "revoked key {id}")?;
            } else {
                return Err(CliError::NoLiveKey(id));
            }
        }
        KeysCommand::Help | KeysCommand::Import => {}
    }
    Ok(())
}

fn parse_command(args: &[String]) -> Result<KeysCommand, CliError> {
    let mut user = None;
    let mut role = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().ok_or_else(|| CliError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(KeysCommand::Help),
            "--user" => user = Some(value("--user")?),
            "--role" => role = Some(value("--role")?),
            other if other.starts_with("--") => {
                return Err(CliError::Usage(format!("unknown option {other}")));
            }
            other => positional.push(other.to_owned()),
        }
    }
    match positional.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create"] => {
            let user = user.ok_or_else(|| CliError::Usage("create needs --user ID".into()))?;
            let role = role.unwrap_or_else(|| "user".into());
            if user.is_empty() || role.is_empty() {
                return Err(CliError::Usage("--user and --role must not be empty".into()));
            }
            Ok(KeysCommand::Create { user, role })
        }
        ["list"] => Ok(KeysCommand::List),
        ["revoke"] => user
            .map(KeysCommand::RevokeUser)
            .ok_or_else(|| CliError::Usage("revoke needs an ID or --user ID".into())),
        ["revoke", id] => id
            .parse()
            .map(|id| KeysCommand::Revoke(ApiKeyId(id)))
            .map_err(|_| CliError::Usage(format!("not a key id: {id}"))),
        ["import"] => Ok(KeysCommand::Import),
        [] => Err(CliError::Usage("missing command".into())),
        other => Err(CliError::Usage(format!("unknown command {}", other.join(" ")))),
    }
}

/// The SQLite database at `db`, opened as `command` may (see the module's rules).
fn open_sqlite(db: &Path, command: &KeysCommand) -> Result<rusqlite::Connection, CliError> {
    let demo_key_file = keys::demo_key_file(db);
    if let KeysCommand::Create { .. } = command {
        let conn = keys::open(db)?;
        keys::upgrade_schema(&conn, &demo_key_file)?;
        return Ok(conn);
    }
    let read_only = *command == KeysCommand::List;
    let conn = open_existing(db, if read_only { Access::ReadOnly } else { Access::ReadWrite })?;
    if read_only {
        let version = keys::schema_version(&conn)?;
        if version < keys::SCHEMA_VERSION {
            return Err(CliError::OldSchema { path: db.to_path_buf(), version });
        }
    } else {
        keys::upgrade_schema(&conn, &demo_key_file)?;
    }
    Ok(conn)
}

/// [`keys::open_existing`], a missing database said in the user's terms.
fn open_existing(db: &Path, access: Access) -> Result<rusqlite::Connection, CliError> {
    if !db.is_file() {
        return Err(CliError::NoDatabase(db.to_path_buf()));
    }
    Ok(keys::open_existing(db, access)?)
}

/// The cluster's keys at `target`, or the refusal of a build without the cluster
/// (before any database is opened).
fn cluster_keys(target: &config::RedisTarget) -> Result<AdminKeys, CliError> {
    let Some(keys) = cluster::admin_keys(target) else {
        return Err(CliError::Usage(config::features::no_cluster(target)));
    };
    keys.map_err(CliError::Redis)
}

/// `keys import`: the SQLite store at `db` (which must exist: an import never creates
/// an empty one, nor a demo key) into the cluster.
fn import(db: &Path, store: &AdminKeys, out: &mut dyn Write) -> Result<(), CliError> {
    let conn = open_existing(db, Access::ReadWrite)?;
    // Upgrades a seed database in place, as a start or `keys revoke` would.
    keys::upgrade_schema(&conn, &keys::demo_key_file(db))?;
    let summary = store.import_sqlite(&conn, &keys::demo_key_file(db))?;
    write!(out, "{summary}")?;
    Ok(())
}

fn date(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    crate::log::Rfc3339(t).to_string()[..19].replace('T', " ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `keys <args>` with no environment; returns (stdout, stderr) or the error.
    /// (The tests against a real Redis are in `cluster::key_store::cli_tests`, beside the
    /// Redis fixture; those of the cluster's side in each build beside its seam,
    /// `cluster/node.rs` and `cluster/absent.rs`.)
    pub(crate) fn run(args: &[&str]) -> Result<(String, String), CliError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut note) = (Vec::new(), Vec::new());
        run_keys_with(&args, |_| None, &mut out, &mut note)?;
        Ok((String::from_utf8(out).unwrap(), String::from_utf8(note).unwrap()))
    }

    #[test]
    fn the_sqlite_path_is_unchanged_without_redis() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        run(&["create", "--user", "bob", "--db", db_arg]).unwrap();
        let (list, _) = run(&["list", "--db", db_arg]).unwrap();
        assert_eq!(list.lines().count(), 2, "header, bob: {list}");
        assert_eq!(
            run(&["revoke", "--user", "bob", "--db", db_arg]).unwrap().0,
            "revoked 1 key(s) of user bob\n"
        );
        assert!(run(&["--help"]).unwrap().0.contains("keys import --db PATH --redis URL"));
    }

    #[test]
    fn list_and_revoke_of_a_missing_database_create_nothing_and_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mistyped").join("path").join("x.db");
        let db_arg = db.to_str().unwrap();
        for args in [&["list"][..], &["revoke", "1"], &["revoke", "--user", "demo"]] {
            let err = run(&[args, &["--db", db_arg]].concat()).unwrap_err();
            assert!(matches!(err, CliError::NoDatabase(ref p) if *p == db), "{args:?}: {err}");
            assert!(err.to_string().starts_with(&format!("no key database at {db_arg} (")));
        }
        assert!(!dir.path().join("mistyped").exists(), "no folder made");
    }

    #[test]
    fn create_makes_a_missing_database_but_not_the_demo_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new").join("auth.db");
        let db_arg = db.to_str().unwrap();
        let (key, note) = run(&["create", "--user", "alice", "--db", db_arg]).unwrap();
        assert_eq!(key.trim().len(), 32);
        assert!(note.contains("created key 1 for user alice"), "{note}");
        assert!(db.is_file());
        assert!(!keys::demo_key_file(&db).exists(), "the demo key is the server's to make");
        let (list, _) = run(&["list", "--db", db_arg]).unwrap();
        assert_eq!(list.lines().count(), 2, "header, alice: {list}");
    }

    #[test]
    fn a_revoked_demo_key_stays_revoked_through_later_commands() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        // As the server's first start leaves it.
        keys::migrate(&keys::open(&db).unwrap(), &keys::demo_key_file(&db)).unwrap();
        run(&["revoke", "--user", "demo", "--db", db_arg]).unwrap();
        let demo_before = std::fs::read_to_string(keys::demo_key_file(&db)).unwrap();
        for _ in 0..2 {
            let (list, _) = run(&["list", "--db", db_arg]).unwrap();
            assert_eq!(list.lines().count(), 2, "no new demo key: {list}");
            assert!(list.lines().nth(1).is_some_and(|l| !l.ends_with(" -")), "{list}");
        }
        run(&["create", "--user", "bob", "--db", db_arg]).unwrap();
        assert_eq!(std::fs::read_to_string(keys::demo_key_file(&db)).unwrap(), demo_before);
    }

    #[test]
    fn list_changes_nothing_in_an_older_database_and_says_how_to_upgrade_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        // A seed database: plaintext keys, schema version 0.
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(
                "CREATE TABLE api_keys (id INTEGER PRIMARY KEY AUTOINCREMENT, api_key TEXT \
                 UNIQUE NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'user', \
                 created_at INTEGER NOT NULL);
                 INSERT INTO api_keys (api_key, user_id, created_at) VALUES ('plain', 'x', 1);",
            )
            .unwrap();
        let before = std::fs::read(&db).unwrap();
        let err = run(&["list", "--db", db_arg]).unwrap_err();
        assert!(matches!(err, CliError::OldSchema { version: 0, .. }), "{err}");
        assert!(err.to_string().contains("start the server once"), "{err}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "the file is unchanged");
        // A command that writes upgrades it; then list reads it.
        run(&["revoke", "--user", "nobody", "--db", db_arg]).unwrap();
        let (list, _) = run(&["list", "--db", db_arg]).unwrap();
        assert!(list.lines().nth(1).is_some_and(|l| l.contains(" x ")), "{list}");
    }

    #[test]
    fn revoking_a_key_that_is_not_live_says_so_without_the_usage() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        run(&["create", "--user", "bob", "--db", db_arg]).unwrap();
        let err = run(&["revoke", "7", "--db", db_arg]).unwrap_err();
        assert_eq!(err.to_string(), "no live key with id 7 (see `keys list`)");
    }

    #[test]
    fn every_line_of_keys_help_fits_100_columns() {
        let help = keys_usage();
        assert_eq!(config::too_wide(&help), Vec::<&str>::new());
        assert!(help.contains("--db <value>") && help.contains("TICKER_DB"), "{help}");
        assert!(help.contains("create nothing"), "{help}");
    }
}
