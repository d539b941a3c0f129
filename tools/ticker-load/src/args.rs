//! Command-line arguments: parsed by hand (no dependency), validated once into [`Args`].
//! [`options`] is the table of flags (the `--help` text and the defaults come from it),
//! [`option_table`] reads a command line by such a table and writes its help, [`values`]
//! reads the flags' values, [`target`] reads each `--url`.

mod option_table;
mod options;
mod target;
mod values;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use options::help;
pub(crate) use target::Target;
use target::parse_url;

use crate::subscribe::{self, Subscription, SymbolSet};
use options::Draft;

/// How the tool authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    ApiKey(String),
    Token(String),
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Args {
    /// One per `--url`, in the order given; never empty. Connections go round-robin.
    pub(crate) targets: Vec<Target>,
    pub(crate) auth: Auth,
    pub(crate) token_in_query: bool,
    /// `--ca`: the PEM file of CA certificates TLS targets are checked against; the web
    /// PKI's roots when `None`. Only given with at least one TLS target.
    pub(crate) ca: Option<PathBuf>,
    pub(crate) connections: usize,
    /// Connections opened per second.
    pub(crate) ramp_per_sec: f64,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) threads: usize,
    pub(crate) bind: Vec<IpAddr>,
    /// `--churn`: closes and reopens per second in the steady window.
    pub(crate) churn_per_sec: Option<f64>,
    /// `--token-per-connection`: a token exchange before every ramp upgrade too.
    pub(crate) token_per_connection: bool,
    /// `--subscribe` (repeatable) or `--subscribe-random K` (with `--seed`, or a seed
    /// drawn here); every symbol when neither is given.
    pub(crate) subscription: Subscription,
    /// `--deflate`: offer permessage-deflate at the upgrade.
    pub(crate) deflate: bool,
    /// `--delta`: ask for changes only (`delta=1`) and check their chain.
    pub(crate) delta: bool,
    pub(crate) server_pid: Option<u32>,
    pub(crate) json: Option<PathBuf>,
    /// Reports to write (`.html` or `.svg`); the flag may repeat.
    pub(crate) report: Vec<PathBuf>,
    pub(crate) quiet: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Run(Box<Args>),
    Compare(Vec<PathBuf>),
    Merge(Merge),
    Help,
    Version,
}

/// `ticker-load merge`: saved runs to add up, and where to write the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merge {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) report: Vec<PathBuf>,
    pub(crate) json: Option<PathBuf>,
}

/// Why the arguments were refused. Every message names the flag; a refused value is
/// repeated, after what the flag accepts (`--connections must be a whole number of at
/// least 1 (got "0")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgError {
    Unknown(String),
    MissingValue(&'static str),
    /// `why` follows the flag's name: "must ...", "expects ...".
    Invalid {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    NoAuth,
    Conflict(&'static str),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(arg) => write!(f, "unknown argument `{arg}` (see --help)"),
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::Invalid { flag, value, why } => write!(f, "{flag} {why} (got {value:?})"),
            ArgError::NoAuth => f.write_str("give --api-key KEY, --token TOKEN or --no-auth"),
            ArgError::Conflict(what) => f.write_str(what),
        }
    }
}

/// Parses the arguments after the program name. `env_api_key` is `TICKER_LOAD_API_KEY`.
pub(crate) fn parse<I>(args: I, env_api_key: Option<String>) -> Result<Command, ArgError>
where
    I: IntoIterator<Item = String>,
{
    let mut it = args.into_iter().peekable();
    if it.peek().is_some_and(|a| a == "compare") {
        let files: Vec<PathBuf> = it.skip(1).map(PathBuf::from).collect();
        if files.is_empty() {
            return Err(ArgError::MissingValue("compare"));
        }
        return Ok(Command::Compare(files));
    }
    if it.peek().is_some_and(|a| a == "merge") {
        it.next();
        return parse_merge(it);
    }
    let mut draft = Draft::default();
    if let Some(command) =
        option_table::read(options::RUN, it, &mut draft, |_, arg| Err(ArgError::Unknown(arg)))?
    {
        return Ok(command);
    }
    Ok(Command::Run(Box::new(checked(draft, env_api_key)?)))
}

/// `merge FILE... [--report FILE]... [--json FILE]`.
fn parse_merge(args: impl Iterator<Item = String>) -> Result<Command, ArgError> {
    let mut merge = Merge { files: Vec::new(), report: Vec::new(), json: None };
    option_table::read(options::MERGE, args, &mut merge, |m, file| {
        m.files.push(file.into());
        Ok(())
    })?;
    if merge.files.is_empty() {
        return Err(ArgError::MissingValue("merge"));
    }
    Ok(Command::Merge(merge))
}

/// The run's flags checked together, once all are read.
fn checked(d: Draft, env_api_key: Option<String>) -> Result<Args, ArgError> {
    let targets: Vec<Target> =
        d.urls.iter().map(|url| parse_url(url, d.path.as_deref())).collect::<Result<_, _>>()?;
    // A CA for plaintext URLs only would be silently unused: most likely a wrong URL.
    if d.ca.is_some() && !targets.iter().any(|t| t.tls) {
        return Err(ArgError::Conflict("--ca is for https:// and wss:// URLs"));
    }
    let api_key = d.api_key.or(env_api_key.filter(|k| !k.is_empty()));
    let auth = match (api_key, d.token, d.no_auth) {
        (None, None, true) => Auth::None,
        (Some(key), None, false) => Auth::ApiKey(key),
        (None, Some(token), false) => Auth::Token(token),
        (None, None, false) => return Err(ArgError::NoAuth),
        _ => return Err(ArgError::Conflict("use only one of --api-key, --token, --no-auth")),
    };
    if d.token_per_connection && !matches!(auth, Auth::ApiKey(_)) {
        return Err(ArgError::Conflict("--token-per-connection needs --api-key"));
    }
    if d.token_in_query && auth == Auth::None {
        return Err(ArgError::Conflict("--token-in-query needs a token"));
    }
    // The tool reads a session by its own flag: a `delta` in the URL would go unchecked.
    if targets.iter().any(|t| subscribe::has_param(&t.ws_path, "delta")) {
        return Err(ArgError::Conflict(
            "leave delta= out of the URL: --delta asks for changes only and checks them",
        ));
    }
    let subscription = subscription(d.sets, d.random_k, d.seed, &targets)?;
    Ok(Args {
        targets,
        auth,
        token_in_query: d.token_in_query,
        ca: d.ca,
        connections: d.connections,
        ramp_per_sec: d.ramp_per_sec,
        warmup: d.warmup,
        duration: d.duration,
        connect_timeout: d.connect_timeout,
        threads: d.threads.min(d.connections),
        bind: d.bind,
        churn_per_sec: d.churn_per_sec,
        token_per_connection: d.token_per_connection,
        subscription,
        deflate: d.deflate,
        delta: d.delta,
        server_pid: d.server_pid,
        json: d.json,
        report: d.report,
        quiet: d.quiet,
    })
}

/// `--subscribe` (repeated), `--subscribe-random` and `--seed`, checked together.
fn subscription(
    sets: Vec<SymbolSet>,
    random_k: Option<usize>,
    seed: Option<u64>,
    targets: &[Target],
) -> Result<Subscription, ArgError> {
    if seed.is_some() && random_k.is_none() {
        return Err(ArgError::Conflict("--seed is for --subscribe-random"));
    }
    match (sets.is_empty(), random_k) {
        (true, None) => Ok(Subscription::All),
        (false, None) => {
            if targets.iter().any(|t| subscribe::has_symbols_param(&t.ws_path)) {
                return Err(ArgError::Conflict(
                    "--subscribe adds ?symbols= to the WebSocket URL, which has one already",
                ));
            }
            Ok(Subscription::Sets(sets))
        }
        (true, Some(k)) => Ok(Subscription::Random { k, seed: seed.unwrap_or_else(random_seed) }),
        (false, Some(_)) => {
            Err(ArgError::Conflict("use only one of --subscribe and --subscribe-random"))
        }
    }
}

/// A seed for `--subscribe-random` without `--seed`; printed with the results, so the
/// run can be made again. 32 bits: short to retype, and exact in any JSON reader.
fn random_seed() -> u64 {
    let bits = getrandom::u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
    });
    bits & u64::from(u32::MAX)
}

#[cfg(test)]
mod tests;
