//! Arguments and environment → [`Config`]: the environment first, then the flags in
//! the order given, each value applied by its row of the table, so a flag always wins
//! and the first refused value is the one reported.
//!
//! One loop reads the flags of both the server ([`parse_args`]: every option, anything
//! else refused) and of subcommands that share a few options ([`parse_subset`]: those
//! rows only, anything else left for the subcommand).

use super::options::{Config, ENV_ONLY, OPTIONS, OptionSpec};
use super::{Command, ConfigError, features, validate};

/// Which rows a parse reads, and what becomes of an argument that is none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    /// The server: every row; `--help`, `--version`; anything else is refused.
    Server,
    /// A subcommand: the rows named here; anything else is the subcommand's.
    Subset(&'a [&'a str]),
}

impl Scope<'_> {
    /// The rows of [`OPTIONS`] (and [`ENV_ONLY`] for the server) this parse reads.
    fn rows(self) -> impl Iterator<Item = &'static OptionSpec> {
        let env_only = if self == Scope::Server { ENV_ONLY } else { &[] };
        OPTIONS.iter().filter(move |o| self.includes(o)).chain(env_only)
    }

    fn includes(self, opt: &OptionSpec) -> bool {
        match self {
            Scope::Server => true,
            Scope::Subset(flags) => flags.contains(&opt.flag),
        }
    }
}

/// How the flag loop ended.
enum Flags {
    /// Every argument read; those that were not options (a subset's), in order.
    Read(Vec<String>),
    /// The server's `--help` or `--version`: stop there.
    Stop(Command),
}

/// Parses `args` (without the program name) and the environment read through `env`.
pub fn parse_args<E>(args: &[String], env: E) -> Result<Command, ConfigError>
where
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::default();
    read_env(&mut config, Scope::Server, &env)?;
    if let Flags::Stop(command) = read_flags(&mut config, args, Scope::Server)? {
        return Ok(command);
    }
    validate::check(&config)?;
    features::check_built_in(&config)?;
    Ok(Command::Serve(Box::new(config)))
}

/// The rows of [`OPTIONS`] named in `flags`, from the environment and then from `args`
/// (`--flag value` or `--flag=value`), for subcommands that share a few of the server's
/// options (the `keys` CLI's `--db`). Returns the configuration and the other arguments.
pub fn parse_subset<E>(
    args: &[String],
    env: E,
    flags: &[&str],
) -> Result<(Config, Vec<String>), ConfigError>
where
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::default();
    let scope = Scope::Subset(flags);
    read_env(&mut config, scope, &env)?;
    match read_flags(&mut config, args, scope)? {
        Flags::Read(rest) => Ok((config, rest)),
        // Never: a subset's `--help` is its subcommand's, left in the rest.
        Flags::Stop(_) => Ok((config, args.to_vec())),
    }
}

/// Applies the variables of `scope`'s rows that are set, in table order.
fn read_env<E>(config: &mut Config, scope: Scope<'_>, env: &E) -> Result<(), ConfigError>
where
    E: Fn(&str) -> Option<String>,
{
    for opt in scope.rows() {
        let value = env(opt.env).or_else(|| {
            // RUST_LOG is the conventional fallback for the log level.
            (opt.env == "TICKER_LOG").then(|| env("RUST_LOG")).flatten()
        });
        if let Some(value) = value {
            apply(config, opt, &value, opt.env)?;
        }
    }
    Ok(())
}

/// The one flag loop: `--flag value` and `--flag=value` for `scope`'s rows.
fn read_flags(
    config: &mut Config,
    args: &[String],
    scope: Scope<'_>,
) -> Result<Flags, ConfigError> {
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if scope == Scope::Server {
            match arg.as_str() {
                "-h" | "--help" => return Ok(Flags::Stop(Command::Help)),
                "-V" | "--version" => return Ok(Flags::Stop(Command::Version)),
                _ => {}
            }
        }
        let (name, inline) = match arg.strip_prefix("--") {
            Some(flag) => match flag.split_once('=') {
                Some((name, value)) => (Some(name), Some(value)),
                None => (Some(flag), None),
            },
            None => (None, None),
        };
        let row =
            name.and_then(|name| OPTIONS.iter().find(|o| o.flag == name && scope.includes(o)));
        let Some(opt) = row else {
            if scope == Scope::Server {
                return Err(not_an_option(arg, name));
            }
            rest.push(arg.clone());
            continue;
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .map(String::as_str)
                .ok_or_else(|| ConfigError(format!("--{} needs a value", opt.flag)))?,
        };
        apply(config, opt, value, &format!("--{}", opt.flag))?;
    }
    Ok(Flags::Read(rest))
}

/// Why the server refuses an argument that is none of its options.
fn not_an_option(arg: &str, name: Option<&str>) -> ConfigError {
    let Some(name) = name else {
        return ConfigError(format!("unexpected argument {arg:?} (see --help)"));
    };
    match ENV_ONLY.iter().find(|o| o.flag == name) {
        Some(secret) => ConfigError(format!(
            "--{name} is not accepted on the command line; set {} instead",
            secret.env
        )),
        None => ConfigError(format!("unknown option --{name} (see --help)")),
    }
}

/// `value` applied by `opt`'s row; a refusal names the option as it was given (`given`).
fn apply(
    config: &mut Config,
    opt: &OptionSpec,
    value: &str,
    given: &str,
) -> Result<(), ConfigError> {
    (opt.apply)(config, value.trim()).map_err(|e| ConfigError(e.about(given)))
}
