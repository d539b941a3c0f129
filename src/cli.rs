//! `crypto-ticker keys ...`: manage API keys where the server keeps them.
//!
//! Without `--redis`, that is the SQLite database at `--db` (also while the server runs:
//! SQLite WAL and a busy timeout). With `--redis URL` (or `TICKER_REDIS`), it is the
//! cluster's Redis ([`RedisKeyStore`]). Either way a running server closes the sessions
//! of a revoked key within a second, and the output is the same. `keys import` moves a
//! single node's SQLite store into the cluster (`cluster::key_store`). A build without
//! the `cluster` feature refuses `--redis`.

use std::fmt;
use std::io::Write;
// The cluster's key store (`--redis`, `keys import`).
#[cfg(feature = "cluster")]
use {
    crate::auth::keys::DbErrorKind,
    crate::cluster::link::{LinkConfig, LinkError},
    crate::cluster::{DEFAULT_PREFIX, key_store::RedisKeyStore, pool::LinkPool},
    std::{path::Path, sync::Arc, time::Duration},
};

use crate::auth::keys::{self, ApiKeyId, DbError, KeyInfo};
use crate::config::{self, ConfigError};

#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Config(ConfigError),
    Db(DbError),
    /// The `--redis` URL cannot be used.
    #[cfg(feature = "cluster")]
    Redis(LinkError),
    /// Writing the output failed (a closed pipe).
    Output(std::io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(e) => write!(f, "{e}\n\n{}", keys_usage()),
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Db(e) => write!(f, "{e}"),
            #[cfg(feature = "cluster")]
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

pub fn keys_usage() -> String {
    let mut usage = String::from(
        "USAGE:
    crypto-ticker keys create --user ID [--role ROLE]   print a new key (shown once)
    crypto-ticker keys list                             id, user, role, prefix, created, revoked
    crypto-ticker keys revoke ID                        revoke one key
    crypto-ticker keys revoke --user ID                 revoke every key of a user
    crypto-ticker keys import --db PATH --redis URL     copy a single node's keys (hashes, roles,
                                                        revocations, demo key) into the cluster

With --redis the commands manage the cluster's keys in Redis; without it, the SQLite
database at --db. Running servers close a revoked key's sessions within a second.

OPTIONS (the server's, same variables and defaults):
",
    );
    for opt in config::OPTIONS.iter().filter(|o| SHARED_OPTIONS.contains(&o.flag)) {
        usage.push_str(&format!(
            "    --{} <value>    env {}, default {}: {}\n",
            opt.flag,
            opt.env,
            opt.default_value(),
            opt.help
        ));
    }
    usage
}

/// The server's options that the `keys` subcommand shares (same flags, variables and
/// defaults, from the one option table).
const SHARED_OPTIONS: &[&str] = &["db", "redis"];

/// Bounds for the CLI's Redis calls: longer than a server's, since a person waits, not
/// a request.
#[cfg(feature = "cluster")]
fn cli_link() -> LinkConfig {
    LinkConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(5),
        ..LinkConfig::default()
    }
}

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

/// Where the keys are.
enum Store {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "cluster")]
    Redis(Box<RedisKeyStore>),
}

impl Store {
    fn create_key(&self, user: &str, role: &str) -> Result<(ApiKeyId, String), DbError> {
        match self {
            Store::Sqlite(conn) => keys::create_key(conn, user, role),
            #[cfg(feature = "cluster")]
            Store::Redis(store) => store.create_key(user, role),
        }
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>, DbError> {
        match self {
            Store::Sqlite(conn) => keys::list_keys(conn),
            #[cfg(feature = "cluster")]
            Store::Redis(store) => store.list_keys(),
        }
    }

    fn revoke_key(&self, id: ApiKeyId) -> Result<bool, DbError> {
        match self {
            Store::Sqlite(conn) => keys::revoke_key(conn, id),
            #[cfg(feature = "cluster")]
            Store::Redis(store) => store.revoke_key(id),
        }
    }

    fn revoke_user(&self, user: &str) -> Result<usize, DbError> {
        match self {
            Store::Sqlite(conn) => keys::revoke_user(conn, user),
            #[cfg(feature = "cluster")]
            Store::Redis(store) => store.revoke_user(user),
        }
    }
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
    let command = parse_command(&args)?;
    let db = config.db_path;
    if command == KeysCommand::Help {
        write!(out, "{}", keys_usage())?;
        return Ok(());
    }
    if command == KeysCommand::Import {
        let url = config
            .redis
            .ok_or_else(|| CliError::Usage("import needs --redis URL (the cluster)".into()))?;
        #[cfg(feature = "cluster")]
        return import(&db, &redis_store(&url)?, out);
        #[cfg(not(feature = "cluster"))]
        return Err(no_cluster(&url));
    }
    let store = match config.redis {
        #[cfg(feature = "cluster")]
        Some(url) => Store::Redis(Box::new(redis_store(&url)?)),
        #[cfg(not(feature = "cluster"))]
        Some(url) => return Err(no_cluster(&url)),
        None => {
            let conn = keys::open(&db)?;
            keys::migrate(&conn, &keys::demo_key_file(&db))?;
            Store::Sqlite(conn)
        }
    };
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
                return Err(CliError::Usage(format!("no live key with id {id}")));
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

#[cfg(not(feature = "cluster"))]
fn no_cluster(_url: &str) -> CliError {
    CliError::Usage(format!("--redis: {}", config::not_built_in("cluster")))
}

#[cfg(feature = "cluster")]
fn redis_store(url: &str) -> Result<RedisKeyStore, CliError> {
    let pool = LinkPool::with_config(url, 1, cli_link()).map_err(CliError::Redis)?;
    Ok(RedisKeyStore::new(Arc::new(pool), DEFAULT_PREFIX))
}

/// `keys import`: the SQLite store at `db` (which must exist: an import never creates
/// an empty one) into the cluster.
#[cfg(feature = "cluster")]
fn import(db: &Path, store: &RedisKeyStore, out: &mut dyn Write) -> Result<(), CliError> {
    if !db.is_file() {
        return Err(CliError::Db(DbError::new(
            DbErrorKind::Missing,
            format!("{}: no such database to import", db.display()),
        )));
    }
    let conn = keys::open(db)?;
    // Upgrades a seed database in place, as any start or `keys` command would.
    keys::migrate(&conn, &keys::demo_key_file(db))?;
    let summary = store.import_from_sqlite(&conn, &keys::demo_key_file(db))?;
    write!(out, "{summary}")?;
    Ok(())
}

fn date(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    crate::log::Rfc3339(t).to_string()[..19].replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `keys <args>` with no environment; returns (stdout, stderr) or the error.
    /// (The tests against a real Redis are in `cluster::key_store::cli_tests`, beside the
    /// Redis fixture.)
    fn run(args: &[&str]) -> Result<(String, String), CliError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut note) = (Vec::new(), Vec::new());
        run_keys_with(&args, |_| None, &mut out, &mut note)?;
        Ok((String::from_utf8(out).unwrap(), String::from_utf8(note).unwrap()))
    }

    #[test]
    #[cfg(feature = "cluster")]
    fn import_needs_the_cluster_and_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("missing.db");
        let db_arg = db.to_str().unwrap();
        assert!(matches!(run(&["import", "--db", db_arg]), Err(CliError::Usage(_))));
        let err = run(&["import", "--db", db_arg, "--redis", "redis://127.0.0.1:1/"]);
        assert!(
            matches!(err, Err(CliError::Db(ref e)) if e.kind == DbErrorKind::Missing),
            "{err:?}"
        );
        assert!(!db.exists(), "an import never creates a database");
        assert!(matches!(run(&["list", "--redis", "http://x"]), Err(CliError::Config(_))));
    }

    #[test]
    #[cfg(feature = "cluster")]
    fn an_unreachable_cluster_is_a_clear_error() {
        let err = run(&["list", "--redis", "redis://127.0.0.1:1/"]).unwrap_err();
        assert!(matches!(err, CliError::Db(ref e) if e.kind == DbErrorKind::Unreachable), "{err}");
    }

    #[test]
    #[cfg(not(feature = "cluster"))]
    fn a_build_without_the_cluster_refuses_redis_and_touches_no_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        for args in [
            &["list", "--db", db_arg, "--redis", "redis://127.0.0.1:1/"][..],
            &["import", "--db", db_arg, "--redis", "redis://127.0.0.1:1/"][..],
        ] {
            let err = run(args).unwrap_err();
            assert!(matches!(err, CliError::Usage(ref e) if e.contains("no `cluster`")), "{err}");
        }
        assert!(!db.exists(), "refused before any database is opened");
    }

    #[test]
    fn the_sqlite_path_is_unchanged_without_redis() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let db_arg = db.to_str().unwrap();
        run(&["create", "--user", "bob", "--db", db_arg]).unwrap();
        let (list, _) = run(&["list", "--db", db_arg]).unwrap();
        assert_eq!(list.lines().count(), 3, "header, demo, bob: {list}");
        assert_eq!(
            run(&["revoke", "--user", "bob", "--db", db_arg]).unwrap().0,
            "revoked 1 key(s) of user bob\n"
        );
        assert!(run(&["--help"]).unwrap().0.contains("keys import --db PATH --redis URL"));
    }
}
