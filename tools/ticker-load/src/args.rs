//! Command-line arguments: parsed by hand (no dependency), validated once into [`Args`];
//! [`target`] reads each `--url`.

mod target;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use target::Target;
use target::parse_url;

use crate::subscribe::{self, Subscription, SymbolSet};

const DEFAULT_URL: &str = "http://127.0.0.1:8081";

pub(crate) const HELP: &str = "\
ticker-load: open many WebSocket subscribers to a ticker server and measure what they get

USAGE:
    ticker-load --url http://127.0.0.1:8081 --api-key KEY [OPTIONS]
    ticker-load --url https://HOST:PORT --ca ca.pem --api-key KEY [OPTIONS]
    ticker-load --url ws://HOST:PORT/PATH --no-auth [OPTIONS]
    ticker-load --url http://NODE1:8081 --url http://NODE2:8081 --api-key KEY [OPTIONS]
    ticker-load compare RUN.json...     one table row per saved --json run
    ticker-load merge RUN.json... [--report FILE]... [--json FILE]
                                        one summary of runs started together (several
                                        load machines): counts summed, histograms
                                        merged, percentiles from the merged histograms

TARGET AND AUTH:
    --url URL             http://HOST:PORT (crypto-ticker: token from POST /auth/token,
                          stream from --path) or ws://HOST:PORT/PATH (stream from PATH);
                          https://HOST:PORT and wss://HOST:PORT/PATH are the same over
                          TLS (the token exchange too), port 443 when none is given
                                                              [default: http://127.0.0.1:8081]
                          Repeat it for a cluster: connections go round-robin over
                          the URLs in the order given (connection i to URL i mod n).
                          Plain and TLS URLs may be mixed; each keeps its own scheme.
    --path PATH           WebSocket path for http(s):// URLs  [default: /ws/ticker]
    --ca PEM              trust the CA certificates in PEM (a private CA) for https://
                          and wss:// URLs, instead of the web PKI roots built in
                          (Mozilla's list, from webpki-roots). Needs a TLS URL.
                          Every TLS connection makes a full handshake: no session
                          resumption
    --api-key KEY         exchange KEY for a token at POST /auth/token, once per --url:
                          each connection carries a token from the node it goes to
                          (or set TICKER_LOAD_API_KEY, which keeps it out of `ps`)
    --token TOKEN         use this token instead of getting one (sent to every URL)
    --token-in-query      send the token as ?x-auth-token= instead of
                          `Authorization: Bearer`
    --no-auth             no token: benchmark any server that sends one message per tick
                          (messages without `seq` are counted, not gap-checked)

LOAD:
    --connections N       subscribers to open                          [default: 100]
    --ramp RATE           opening rate: N/s, N/m or N per second       [default: 500/s]
    --warmup DURATION     settle time after the ramp, not measured     [default: 1s]
    --duration DURATION   the steady (measured) window after the warmup [default: 30s]
    --connect-timeout D   bound on TCP connect + TLS + WebSocket handshake, per
                          connection                                   [default: 10s]
    --threads N           event-loop threads; keep it below the number of cores, or
                          the generator competes with the server it measures [default: 1]
    --bind IP,IP,...      source addresses, round-robin per connection; each gives
                          ~28k more ephemeral ports (e.g. 127.0.0.2,127.0.0.3)
    --churn RATE          in the steady window, close (close handshake) and reopen
                          connections at RATE (N/s or N/m), round the open connections.
                          Each reopen is a full token exchange (with --api-key: a fresh
                          POST /auth/token on its own connection, as a browser does) and
                          upgrade, to the next --url in turn. Churned closes are not
                          drops, reopen failures are counted apart, and a reopened
                          connection starts a new seq baseline (no missed ticks)
    --token-per-connection
                          with --api-key: every connection of the ramp too makes its
                          own token exchange (POST /auth/token on a connection of its
                          own) before its upgrade, as a crowd of returning browsers
                          does after a deploy; its handshake time then covers both

    The run ends by itself after: the ramp (connections / rate, plus at most
    --connect-timeout for the last handshakes) + warmup + duration + at most 2 s of
    closing handshakes.

SUBSCRIPTIONS (crypto-ticker: a session gets every symbol unless it chooses):
    --subscribe A,B       every connection asks for these symbols only, at the upgrade:
                          symbols=A,B is added to the WebSocket URL's query (after any
                          query the URL has, --no-auth ws:// URLs too), no extra message.
                          Repeat it for several sets: connection i takes set i mod n
                          (10 flags of 3 symbols: 10 distinct sets); a churn reconnect
                          asks for the set of the connection it replaces. A set the
                          server refuses (HTTP 400 unknown symbol) fails the connection,
                          counted as \"subscribe refused: unknown symbol (http 400)\"
    --subscribe-random K  each connection reads the symbols in its first ticker message
                          (the snapshot after welcome lists them all), picks K of them
                          at random and sends {\"type\":\"subscribe\",\"symbols\":[...]}; K
                          above the number of symbols takes them all, with a warning.
                          A churn reconnect picks again. An `error` answer is counted as
                          \"subscribe refused: REASON\"; that connection keeps every
                          symbol. Not with --subscribe
    --seed N              seed of the random picks: connection i's pick depends on N, i
                          and the server's symbols only, so the same seed picks the same
                          sets again
                                                              [default: random, printed]

    A tick is counted the same with a set: seq is global on crypto-ticker, so a gap is
    a missed tick whatever the set. The `subscriptions` and `error` answers are not
    ticks, and the snapshot after a subscription change (the latest seq again) counts as
    nothing: no tick, gap, repeat or reorder. The summary reports the mode, the distinct
    sets used and, per --subscribe set, its connections, ticks and delivered %.

MEASURE AND REPORT:
    Besides the table: fairness (the spread of each connection's own median tick
    latency in the window, over connections with 50 ticks or more: best, median and
    worst connection, worst - best), the storm (time from the first connect until all N
    are live, shown when the ramp is 1000/s or more or ran 20 % over plan), and churn
    figures when --churn is given.

    --server-pid PID      read /proc/PID around the steady window: server CPU per
                          delivered frame and RSS growth per connection (same host)
    --json FILE           write the summary as JSON, with every latency histogram in
                          HdrHistogram's standard form (V2 compressed, base64) so that
                          `ticker-load merge` adds runs up exactly
    --report FILE         write a self-contained report: FILE.html or FILE.svg
                          (repeat the flag for both)
    --quiet               no progress line on stderr

    -h, --help            this text
    -V, --version         version

DURATIONS take ms, s or m: 500ms, 30s, 2m.

The steady window starts when every connection has opened or failed, plus --warmup.
Tick latency (receive time - ts_us), messages, seq gaps and CPU figures cover only the
steady window; connections and handshake latency cover the ramp (churn reconnects are
reported apart, with their own latency). Handshake latency runs from the start of the
TCP connect to the 101 answer, so over TLS it includes the TLS handshake. Latency compares
two clocks: across hosts, they must be synchronised (PTP/NTP) to mean anything. One live line
per second goes to stderr; the table goes to stdout. Ctrl-C ends the run early and
still reports. Exit status: 0 when at least one connection opened, 1 otherwise,
2 for bad arguments.
";

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

    let mut urls: Vec<String> = Vec::new();
    let mut path = None;
    let mut api_key = None;
    let mut token = None;
    let mut no_auth = false;
    let mut args = Args {
        targets: Vec::new(),
        auth: Auth::None,
        token_in_query: false,
        ca: None,
        connections: 100,
        ramp_per_sec: 500.0,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        threads: 1,
        bind: Vec::new(),
        churn_per_sec: None,
        token_per_connection: false,
        subscription: Subscription::All,
        server_pid: None,
        json: None,
        report: Vec::new(),
        quiet: false,
    };
    let mut sets: Vec<SymbolSet> = Vec::new();
    let mut random_k: Option<usize> = None;
    let mut seed: Option<u64> = None;

    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &'static str| -> Result<String, ArgError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or(ArgError::MissingValue(name)),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--url" => urls.push(value("--url")?),
            "--path" => path = Some(value("--path")?),
            "--ca" => args.ca = Some(value("--ca")?.into()),
            "--api-key" => api_key = Some(value("--api-key")?),
            "--token" => token = Some(value("--token")?),
            "--token-in-query" => args.token_in_query = true,
            "--no-auth" => no_auth = true,
            "--connections" | "-c" => {
                args.connections = positive("--connections", &value("--connections")?)?;
            }
            "--ramp" => args.ramp_per_sec = parse_rate("--ramp", &value("--ramp")?)?,
            "--churn" => args.churn_per_sec = Some(parse_rate("--churn", &value("--churn")?)?),
            "--token-per-connection" => args.token_per_connection = true,
            "--warmup" => args.warmup = duration("--warmup", &value("--warmup")?)?,
            "--duration" | "-d" => args.duration = duration("--duration", &value("--duration")?)?,
            "--connect-timeout" => {
                let v = value("--connect-timeout")?;
                args.connect_timeout = duration("--connect-timeout", &v)?;
                if args.connect_timeout.is_zero() {
                    return Err(invalid("--connect-timeout", &v, "must be above zero"));
                }
            }
            "--threads" | "-t" => args.threads = positive("--threads", &value("--threads")?)?,
            "--bind" => args.bind = parse_bind(&value("--bind")?)?,
            "--subscribe" => {
                let v = value("--subscribe")?;
                let set = SymbolSet::parse(&v).ok_or_else(|| {
                    invalid(
                        "--subscribe",
                        &v,
                        "expects symbols separated by commas, e.g. BTC-USD,ETH-USD",
                    )
                })?;
                sets.push(set);
            }
            "--subscribe-random" => {
                random_k = Some(positive("--subscribe-random", &value("--subscribe-random")?)?);
            }
            "--seed" => {
                let v = value("--seed")?;
                seed = Some(v.parse().map_err(|_| {
                    invalid(
                        "--seed",
                        &v,
                        "expects a whole number between 0 and 18446744073709551615",
                    )
                })?);
            }
            "--server-pid" => {
                let v = value("--server-pid")?;
                args.server_pid = Some(v.parse().map_err(|_| {
                    invalid("--server-pid", &v, "expects a process id (a whole number)")
                })?);
            }
            "--json" => args.json = Some(value("--json")?.into()),
            "--report" => args.report.push(report_path(value("--report")?)?),
            "--quiet" | "-q" => args.quiet = true,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }

    if urls.is_empty() {
        urls.push(DEFAULT_URL.to_string());
    }
    args.targets =
        urls.iter().map(|url| parse_url(url, path.as_deref())).collect::<Result<_, _>>()?;
    // A CA for plaintext URLs only would be silently unused: most likely a wrong URL.
    if args.ca.is_some() && !args.targets.iter().any(|t| t.tls) {
        return Err(ArgError::Conflict("--ca is for https:// and wss:// URLs"));
    }
    let api_key = api_key.or(env_api_key.filter(|k| !k.is_empty()));
    args.auth = match (api_key, token, no_auth) {
        (None, None, true) => Auth::None,
        (Some(key), None, false) => Auth::ApiKey(key),
        (None, Some(token), false) => Auth::Token(token),
        (None, None, false) => return Err(ArgError::NoAuth),
        _ => return Err(ArgError::Conflict("use only one of --api-key, --token, --no-auth")),
    };
    if args.token_per_connection && !matches!(args.auth, Auth::ApiKey(_)) {
        return Err(ArgError::Conflict("--token-per-connection needs --api-key"));
    }
    if args.token_in_query && args.auth == Auth::None {
        return Err(ArgError::Conflict("--token-in-query needs a token"));
    }
    args.subscription = subscription(sets, random_k, seed, &args.targets)?;
    args.threads = args.threads.min(args.connections);
    Ok(Command::Run(Box::new(args)))
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

/// `merge FILE... [--report FILE]... [--json FILE]`.
fn parse_merge(args: impl Iterator<Item = String>) -> Result<Command, ArgError> {
    let mut merge = Merge { files: Vec::new(), report: Vec::new(), json: None };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value =
            |name| inline.clone().or_else(|| it.next()).ok_or(ArgError::MissingValue(name));
        match flag.as_str() {
            "--report" => merge.report.push(report_path(value("--report")?)?),
            "--json" => merge.json = Some(value("--json")?.into()),
            f if f.starts_with('-') => return Err(ArgError::Unknown(arg)),
            _ => merge.files.push(arg.into()),
        }
    }
    if merge.files.is_empty() {
        return Err(ArgError::MissingValue("merge"));
    }
    Ok(Command::Merge(merge))
}

fn report_path(v: String) -> Result<PathBuf, ArgError> {
    if !(v.ends_with(".html") || v.ends_with(".svg")) {
        return Err(invalid("--report", &v, "must end in .html or .svg"));
    }
    Ok(v.into())
}

fn invalid(flag: &'static str, value: &str, why: &'static str) -> ArgError {
    ArgError::Invalid { flag, value: value.to_string(), why }
}

fn positive(flag: &'static str, v: &str) -> Result<usize, ArgError> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(flag, v, "must be a whole number of at least 1")),
    }
}

/// `500ms`, `30s`, `2m`; `0` alone is allowed.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn duration(flag: &'static str, v: &str) -> Result<Duration, ArgError> {
    parse_duration(v).ok_or_else(|| {
        invalid(flag, v, "expects a duration with a unit: ms, s or m (500ms, 30s, 2m)")
    })
}

/// `500/s`, `6000/m` or `500`: per second (`--ramp`, `--churn`).
pub(crate) fn parse_rate(flag: &'static str, v: &str) -> Result<f64, ArgError> {
    let (number, per) = match v.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 60.0),
        Some(_) => return Err(invalid(flag, v, "expects a rate: N/s, N/m or N (per second)")),
        None => (v, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / per),
        _ => Err(invalid(flag, v, "expects a rate above zero: N/s, N/m or N (per second)")),
    }
}

fn parse_bind(v: &str) -> Result<Vec<IpAddr>, ArgError> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim().parse().map_err(|_| {
                invalid("--bind", v, "expects IP addresses separated by commas (no names)")
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|ips| {
            if ips.is_empty() {
                Err(invalid("--bind", v, "expects at least one IP address"))
            } else {
                Ok(ips)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Args, ArgError> {
        match parse(line.split_whitespace().map(String::from), None)? {
            Command::Run(args) => Ok(*args),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let a = run("--url http://127.0.0.1:8081 --api-key KEY --connections 2000 --ramp 500/s --duration 30s")
            .unwrap();
        assert_eq!(
            a.targets,
            [Target {
                host: "127.0.0.1".into(),
                port: 8081,
                ws_path: "/ws/ticker".into(),
                tls: false
            }]
        );
        assert_eq!(a.auth, Auth::ApiKey("KEY".into()));
        assert_eq!(a.connections, 2000);
        assert_eq!(a.ramp_per_sec, 500.0);
        assert_eq!(a.duration, Duration::from_secs(30));
        assert_eq!(a.threads, 1);
        assert_eq!(a.targets[0].ws_url(), "ws://127.0.0.1:8081/ws/ticker");
    }

    #[test]
    fn every_option_is_read_with_a_space_or_an_equals_sign() {
        let a =
            run("--url=ws://[::1]:9000/feed?x=1 --no-auth -c 5 --ramp=60/m --warmup 500ms -d 2m \
                     --connect-timeout 3s --threads 2 --bind 127.0.0.2,127.0.0.3 --server-pid 42 \
                     --json out.json --report r.html --quiet")
            .unwrap();
        assert_eq!(
            a.targets,
            [Target { host: "[::1]".into(), port: 9000, ws_path: "/feed?x=1".into(), tls: false }]
        );
        assert_eq!(a.auth, Auth::None);
        assert_eq!((a.connections, a.ramp_per_sec, a.threads), (5, 1.0, 2));
        assert_eq!(a.warmup, Duration::from_millis(500));
        assert_eq!(a.duration, Duration::from_secs(120));
        assert_eq!(a.connect_timeout, Duration::from_secs(3));
        assert_eq!(a.bind.len(), 2);
        assert_eq!(a.server_pid, Some(42));
        assert_eq!(a.json, Some(PathBuf::from("out.json")));
        assert_eq!(a.report, [PathBuf::from("r.html")]);
        assert!(a.quiet);
    }

    #[test]
    fn a_repeated_url_gives_every_target_in_the_order_given() {
        let a = run("--no-auth --url ws://b:2/x --url=ws://a:1/y --url ws://c:3/z").unwrap();
        let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
        assert_eq!(urls, ["ws://b:2/x", "ws://a:1/y", "ws://c:3/z"]);
    }

    #[test]
    fn path_applies_to_every_http_url_and_the_default_is_one_local_url() {
        let a = run("--token t --url http://n1:8081 --path /feed --url http://n2:8081").unwrap();
        let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
        assert_eq!(urls, ["ws://n1:8081/feed", "ws://n2:8081/feed"]);
        let a = run("--no-auth").unwrap();
        let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
        assert_eq!(urls, ["ws://127.0.0.1:8081/ws/ticker"]);
    }

    #[test]
    fn https_and_wss_urls_are_tls_targets_on_port_443_by_default() {
        let a = run("--api-key k --url https://ticker.example --path /feed").unwrap();
        assert_eq!(
            a.targets,
            [Target {
                host: "ticker.example".into(),
                port: 443,
                ws_path: "/feed".into(),
                tls: true
            }]
        );
        assert_eq!(a.targets[0].ws_url(), "wss://ticker.example:443/feed");
        assert_eq!(a.targets[0].host_header(), "ticker.example:443");
        assert_eq!(a.ca, None, "without --ca: the web PKI roots");

        let a = run("--no-auth --url wss://[::1]:8443/ws/ticker?x=1 --url=wss://h").unwrap();
        let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
        assert_eq!(urls, ["wss://[::1]:8443/ws/ticker?x=1", "wss://h:443/"]);
        assert!(a.targets.iter().all(|t| t.tls));

        let a = run("--token t --url https://127.0.0.1:8443/").unwrap();
        assert_eq!((a.targets[0].port, a.targets[0].ws_path.as_str()), (8443, "/ws/ticker"));
        assert!(matches!(run("--no-auth --url wss://h/x --path /y"), Err(ArgError::Conflict(_))));
    }

    #[test]
    fn ca_names_a_pem_file_and_needs_a_tls_url() {
        let a = run("--api-key k --url https://h:8443 --ca ca.pem").unwrap();
        assert_eq!(a.ca, Some(PathBuf::from("ca.pem")));
        let a = run("--api-key k --ca=/etc/ca.pem --url wss://h/ws").unwrap();
        assert_eq!(a.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            run("--api-key k --url http://h:8081 --ca ca.pem"),
            Err(ArgError::Conflict("--ca is for https:// and wss:// URLs"))
        );
        assert_eq!(run("--no-auth --url wss://h --ca"), Err(ArgError::MissingValue("--ca")));
    }

    #[test]
    fn plain_and_tls_urls_may_be_mixed_each_with_its_own_scheme() {
        let a =
            run("--api-key k --url http://a:8081 --url https://b --url wss://c:9/s --ca ca.pem")
                .unwrap();
        let schemes: Vec<(bool, u16)> = a.targets.iter().map(|t| (t.tls, t.port)).collect();
        assert_eq!(schemes, [(false, 8081), (true, 443), (true, 9)]);
        let a = run("--no-auth --url ws://a --url wss://b").unwrap();
        let ports: Vec<u16> = a.targets.iter().map(|t| t.port).collect();
        assert_eq!(ports, [80, 443]);
    }

    #[test]
    fn one_bad_url_among_several_is_an_error() {
        assert!(matches!(
            run("--no-auth --url ws://a:1/ --url ftp://b/"),
            Err(ArgError::Invalid { flag: "--url", .. })
        ));
        assert!(matches!(
            run("--no-auth --url http://a:1 --url ws://b:2/ --path /p"),
            Err(ArgError::Conflict(_))
        ));
    }

    #[test]
    fn durations_accept_ms_s_and_m_only() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "5h", "s", "-1s", "1.2.3s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn ramps_are_per_second_or_per_minute() {
        let parse_ramp = |v| parse_rate("--ramp", v);
        assert_eq!(parse_ramp("500/s"), Ok(500.0));
        assert_eq!(parse_ramp("120/m"), Ok(2.0));
        assert_eq!(parse_ramp("7"), Ok(7.0));
        assert!(parse_ramp("0/s").is_err());
        assert!(parse_ramp("5/h").is_err());
    }

    #[test]
    fn token_per_connection_needs_an_api_key() {
        assert!(!run("--api-key K").unwrap().token_per_connection);
        assert!(run("--api-key K --token-per-connection").unwrap().token_per_connection);
        for other in ["--no-auth", "--token T"] {
            assert_eq!(
                run(&format!("{other} --token-per-connection")),
                Err(ArgError::Conflict("--token-per-connection needs --api-key"))
            );
        }
    }

    #[test]
    fn churn_is_a_rate_and_off_by_default() {
        assert_eq!(run("--no-auth").unwrap().churn_per_sec, None);
        assert_eq!(run("--no-auth --churn 50/s").unwrap().churn_per_sec, Some(50.0));
        assert_eq!(run("--no-auth --churn=600/m").unwrap().churn_per_sec, Some(10.0));
        assert!(matches!(
            run("--no-auth --churn 0"),
            Err(ArgError::Invalid { flag: "--churn", .. })
        ));
    }

    #[test]
    fn subscribe_repeats_one_set_per_flag_in_the_order_given() {
        assert_eq!(run("--no-auth").unwrap().subscription, Subscription::All);
        let a = run("--no-auth --subscribe BTC-USD,ETH-USD --subscribe=SOL-USD --subscribe A,,B,A")
            .unwrap();
        let Subscription::Sets(sets) = &a.subscription else { panic!("{:?}", a.subscription) };
        let texts: Vec<String> = sets.iter().map(SymbolSet::text).collect();
        assert_eq!(texts, ["BTC-USD,ETH-USD", "SOL-USD", "A,B"]);
        assert!(matches!(
            run("--no-auth --subscribe ,"),
            Err(ArgError::Invalid { flag: "--subscribe", .. })
        ));
        assert_eq!(run("--no-auth --subscribe"), Err(ArgError::MissingValue("--subscribe")));
        // Also on a ws:// URL with a query of its own, but not over a symbols= it has.
        let a = run("--no-auth --url ws://h/feed?x=1 --subscribe A").unwrap();
        assert!(matches!(a.subscription, Subscription::Sets(_)));
        assert!(matches!(
            run("--no-auth --url ws://h/feed?symbols=B --subscribe A"),
            Err(ArgError::Conflict(_))
        ));
    }

    #[test]
    fn subscribe_random_takes_k_above_zero_and_a_seed_or_draws_one() {
        let a = run("--no-auth --subscribe-random 5 --seed 42").unwrap();
        assert_eq!(a.subscription, Subscription::Random { k: 5, seed: 42 });
        let a = run("--no-auth --subscribe-random=3").unwrap();
        assert!(matches!(a.subscription, Subscription::Random { k: 3, .. }));
        for bad in ["0", "-1", "x", ""] {
            assert!(
                matches!(
                    run(&format!("--no-auth --subscribe-random={bad}")),
                    Err(ArgError::Invalid { flag: "--subscribe-random", .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            run("--no-auth --subscribe-random 2 --seed x"),
            Err(ArgError::Invalid { flag: "--seed", .. })
        ));
    }

    #[test]
    fn subscribe_and_subscribe_random_exclude_each_other_and_seed_needs_random() {
        assert_eq!(
            run("--no-auth --subscribe A --subscribe-random 2"),
            Err(ArgError::Conflict("use only one of --subscribe and --subscribe-random"))
        );
        assert_eq!(
            run("--no-auth --subscribe A --seed 1"),
            Err(ArgError::Conflict("--seed is for --subscribe-random"))
        );
        assert_eq!(
            run("--no-auth --seed 1"),
            Err(ArgError::Conflict("--seed is for --subscribe-random"))
        );
    }

    #[test]
    fn merge_takes_files_reports_and_a_json_output() {
        let p = |s: &str| parse(s.split_whitespace().map(String::from), None);
        assert_eq!(
            p("merge a.json b.json --report m.html --report=m.svg --json m.json"),
            Ok(Command::Merge(Merge {
                files: vec!["a.json".into(), "b.json".into()],
                report: vec!["m.html".into(), "m.svg".into()],
                json: Some("m.json".into()),
            }))
        );
        assert_eq!(p("merge"), Err(ArgError::MissingValue("merge")));
        assert_eq!(p("merge --json"), Err(ArgError::MissingValue("--json")));
        assert!(matches!(p("merge a.json --report x.pdf"), Err(ArgError::Invalid { .. })));
        assert_eq!(p("merge a.json --bogus"), Err(ArgError::Unknown("--bogus".into())));
    }

    #[test]
    fn auth_must_be_chosen_exactly_once() {
        assert_eq!(run("--connections 1"), Err(ArgError::NoAuth));
        assert!(matches!(run("--api-key a --token b"), Err(ArgError::Conflict(_))));
        assert!(matches!(run("--no-auth --token-in-query"), Err(ArgError::Conflict(_))));
        let from_env = parse(Vec::<String>::new(), Some("ENVKEY".into())).unwrap();
        assert!(matches!(from_env, Command::Run(a) if a.auth == Auth::ApiKey("ENVKEY".into())));
    }

    #[test]
    fn bad_values_say_which_flag() {
        assert!(matches!(
            run("--no-auth --connections 0"),
            Err(ArgError::Invalid { flag: "--connections", .. })
        ));
        assert!(matches!(
            run("--no-auth --bind 1.2.3"),
            Err(ArgError::Invalid { flag: "--bind", .. })
        ));
        assert!(matches!(
            run("--no-auth --report r.pdf"),
            Err(ArgError::Invalid { flag: "--report", .. })
        ));
        assert!(matches!(
            run("--no-auth --url ftp://x/"),
            Err(ArgError::Invalid { flag: "--url", .. })
        ));
        assert!(matches!(
            run("--no-auth --url https://x:1/ws"),
            Err(ArgError::Invalid { flag: "--url", .. })
        ));
        assert!(matches!(
            run("--no-auth --url wss://x:0/"),
            Err(ArgError::Invalid { flag: "--url", .. })
        ));
        assert!(matches!(
            run("--no-auth --url http://x:1/ws"),
            Err(ArgError::Invalid { flag: "--url", .. })
        ));
        assert_eq!(run("--no-auth --threads"), Err(ArgError::MissingValue("--threads")));
        assert_eq!(run("--bogus"), Err(ArgError::Unknown("--bogus".into())));
    }

    #[test]
    fn a_refused_value_is_named_by_its_flag_and_repeated_after_what_is_accepted() {
        let err = |line: &str| run(line).unwrap_err().to_string();
        assert_eq!(
            err("--no-auth --connections 0"),
            "--connections must be a whole number of at least 1 (got \"0\")"
        );
        assert_eq!(
            err("--no-auth --duration 30"),
            "--duration expects a duration with a unit: ms, s or m (500ms, 30s, 2m) (got \"30\")"
        );
        assert_eq!(
            err("--no-auth --bind localhost"),
            "--bind expects IP addresses separated by commas (no names) (got \"localhost\")"
        );
        assert_eq!(
            err("--no-auth --url http://h:0"),
            "--url expects a port between 1 and 65535 (got \"http://h:0\")"
        );
        assert_eq!(
            err("--no-auth --ramp 0/s"),
            "--ramp expects a rate above zero: N/s, N/m or N (per second) (got \"0/s\")"
        );
    }

    #[test]
    fn threads_never_exceed_connections_and_ws_urls_default_to_root() {
        let a = run("--no-auth --url ws://h --connections 2 --threads 8").unwrap();
        assert_eq!(a.threads, 2);
        assert_eq!(
            a.targets,
            [Target { host: "h".into(), port: 80, ws_path: "/".into(), tls: false }]
        );
    }

    #[test]
    fn help_version_and_compare_are_commands() {
        let p = |s: &str| parse(s.split_whitespace().map(String::from), None);
        assert_eq!(p("--api-key k --help"), Ok(Command::Help));
        assert_eq!(p("-V"), Ok(Command::Version));
        assert_eq!(
            p("compare a.json b.json"),
            Ok(Command::Compare(vec!["a.json".into(), "b.json".into()]))
        );
        assert!(p("compare").is_err());
    }
}
