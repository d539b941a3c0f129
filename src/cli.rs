//! `crypto-ticker keys ...`: manage API keys in the same database the server uses (also
//! while it runs: SQLite WAL and a busy timeout; the server notices revocations within a
//! second and closes their sessions).

use std::fmt;

use crate::auth::keys::{self, ApiKeyId};
use crate::config::{self, ConfigError};

#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Config(ConfigError),
    Db(keys::DbError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(e) => write!(f, "{e}\n\n{}", keys_usage()),
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Db(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<keys::DbError> for CliError {
    fn from(e: keys::DbError) -> Self {
        CliError::Db(e)
    }
}

pub fn keys_usage() -> String {
    let mut usage = String::from(
        "USAGE:
    crypto-ticker keys create --user ID [--role ROLE]   print a new key (shown once)
    crypto-ticker keys list                             id, user, role, prefix, created, revoked
    crypto-ticker keys revoke ID                        revoke one key
    crypto-ticker keys revoke --user ID                 revoke every key of a user

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
const SHARED_OPTIONS: &[&str] = &["db"];

/// Runs `keys <args>`.
pub fn run_keys(args: &[String]) -> Result<(), CliError> {
    let (config, args) =
        config::parse_subset(args, |name| std::env::var(name).ok(), SHARED_OPTIONS)
            .map_err(CliError::Config)?;
    let db = config.db_path;
    let mut user = None;
    let mut role = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().ok_or_else(|| CliError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{}", keys_usage());
                return Ok(());
            }
            "--user" => user = Some(value("--user")?),
            "--role" => role = Some(value("--role")?),
            other if other.starts_with("--") => {
                return Err(CliError::Usage(format!("unknown option {other}")));
            }
            other => positional.push(other.to_owned()),
        }
    }
    let conn = keys::open(&db)?;
    keys::migrate(&conn, &keys::demo_key_file(&db))?;
    match positional.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create"] => {
            let user = user.ok_or_else(|| CliError::Usage("create needs --user ID".into()))?;
            let role = role.unwrap_or_else(|| "user".into());
            if user.is_empty() || role.is_empty() {
                return Err(CliError::Usage("--user and --role must not be empty".into()));
            }
            let (id, key) = keys::create_key(&conn, &user, &role)?;
            println!("{key}");
            eprintln!("created key {id} for user {user} (role {role}); it is shown only this once");
        }
        ["list"] => {
            println!(
                "{:>5}  {:<16} {:<8} {:<8} {:<20} revoked",
                "id", "user", "role", "prefix", "created"
            );
            for k in keys::list_keys(&conn)? {
                println!(
                    "{:>5}  {:<16} {:<8} {:<8} {:<20} {}",
                    k.id,
                    k.user_id,
                    k.role,
                    k.prefix,
                    date(k.created_at),
                    k.revoked_at.map(date).unwrap_or_else(|| "-".into())
                );
            }
        }
        ["revoke"] => {
            let user =
                user.ok_or_else(|| CliError::Usage("revoke needs an ID or --user ID".into()))?;
            let n = keys::revoke_user(&conn, &user)?;
            println!("revoked {n} key(s) of user {user}");
        }
        ["revoke", id] => {
            let id = id
                .parse()
                .map(ApiKeyId)
                .map_err(|_| CliError::Usage(format!("not a key id: {id}")))?;
            if keys::revoke_key(&conn, id)? {
                println!("revoked key {id}");
            } else {
                return Err(CliError::Usage(format!("no live key with id {id}")));
            }
        }
        [] => return Err(CliError::Usage("missing command".into())),
        other => return Err(CliError::Usage(format!("unknown command {}", other.join(" ")))),
    }
    Ok(())
}

fn date(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    crate::log::Rfc3339(t).to_string()[..19].replace('T', " ")
}
