//! The option table: each flag written once — its names, value, default, help and
//! what it sets. [`help`] is the `--help` text written from it; [`super::parse`] reads
//! the command line by it (the run's flags in [`RUN`], `merge`'s in [`MERGE`]).

use std::path::PathBuf;
use std::time::Duration;

use super::option_table::{Group, Short, WhenAbsent, command, render_help, switch, value};
use super::target::DEFAULT_WS_PATH;
use super::values::Given;
use super::{ArgError, Command, Merge};
use crate::subscribe::SymbolSet;

/// The `--help` text.
pub(crate) fn help() -> String {
    render_help(USAGE, RUN, NOTES)
}

/// What the run's flags collect, checked together by [`super::parse`] once all are read.
/// It starts empty (numbers at zero): reading applies the table's default of every flag
/// not given.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub(super) urls: Vec<String>,
    pub(super) path: Option<String>,
    pub(super) ca: Option<PathBuf>,
    pub(super) api_key: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_in_query: bool,
    pub(super) no_auth: bool,
    pub(super) connections: usize,
    pub(super) ramp_per_sec: f64,
    pub(super) warmup: Duration,
    pub(super) duration: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) threads: usize,
    pub(super) bind: Vec<std::net::IpAddr>,
    pub(super) churn_per_sec: Option<f64>,
    pub(super) token_per_connection: bool,
    pub(super) sets: Vec<SymbolSet>,
    pub(super) random_k: Option<usize>,
    pub(super) seed: Option<u64>,
    pub(super) deflate: bool,
    pub(super) delta: bool,
    pub(super) server_pid: Option<u32>,
    pub(super) json: Option<PathBuf>,
    pub(super) report: Vec<PathBuf>,
    pub(super) quiet: bool,
}

/// A crypto-ticker on this host, on its default port.
const DEFAULT_URL: &str = "http://127.0.0.1:8081";

pub(super) static RUN: &[Group<Draft>] = &[
    Group {
        heading: "TARGET AND AUTH:",
        before: "",
        options: &[
            value(
                "--url",
                Short::None,
                "URL",
                WhenAbsent::Apply(DEFAULT_URL),
                |d, v| {
                    d.urls.push(v.text);
                    Ok(())
                },
                &[
                    "http://HOST:PORT (crypto-ticker: token from POST /auth/token,",
                    "stream from --path) or ws://HOST:PORT/PATH (stream from PATH);",
                    "https://HOST:PORT and wss://HOST:PORT/PATH are the same over",
                    "TLS (the token exchange too), port 443 when none is given",
                    "Repeat it for a cluster: connections go round-robin over",
                    "the URLs in the order given (connection i to URL i mod n).",
                    "Plain and TLS URLs may be mixed; each keeps its own scheme.",
                ],
            ),
            value(
                "--path",
                Short::None,
                "PATH",
                WhenAbsent::Shown(DEFAULT_WS_PATH),
                |d, v| {
                    d.path = Some(v.text);
                    Ok(())
                },
                &["WebSocket path for http(s):// URLs"],
            ),
            value(
                "--ca",
                Short::None,
                "PEM",
                WhenAbsent::Nothing,
                |d, v| {
                    d.ca = Some(v.text.into());
                    Ok(())
                },
                &[
                    "trust the CA certificates in PEM (a private CA) for https://",
                    "and wss:// URLs, instead of the web PKI roots built in",
                    "(Mozilla's list, from webpki-roots). Needs a TLS URL.",
                    "Every TLS connection makes a full handshake: no session",
                    "resumption",
                ],
            ),
            value(
                "--api-key",
                Short::None,
                "KEY",
                WhenAbsent::Nothing,
                |d, v| {
                    d.api_key = Some(v.text);
                    Ok(())
                },
                &[
                    "exchange KEY for a token at POST /auth/token, once per --url:",
                    "each connection carries a token from the node it goes to",
                    "(or set TICKER_LOAD_API_KEY, which keeps it out of `ps`)",
                ],
            ),
            value(
                "--token",
                Short::None,
                "TOKEN",
                WhenAbsent::Nothing,
                |d, v| {
                    d.token = Some(v.text);
                    Ok(())
                },
                &["use this token instead of getting one (sent to every URL)"],
            ),
            switch(
                "--token-in-query",
                Short::None,
                |d| d.token_in_query = true,
                &["send the token as ?x-auth-token= instead of", "`Authorization: Bearer`"],
            ),
            switch(
                "--no-auth",
                Short::None,
                |d| d.no_auth = true,
                &[
                    "no token: benchmark any server that sends one message per tick",
                    "(messages without `seq` are counted, not gap-checked)",
                ],
            ),
        ],
        after: "",
    },
    Group {
        heading: "LOAD:",
        before: "",
        options: &[
            value(
                "--connections",
                Short::Unlisted("-c"),
                "N",
                WhenAbsent::Apply("100"),
                |d, v| {
                    d.connections = v.positive()?;
                    Ok(())
                },
                &["subscribers to open"],
            ),
            value(
                "--ramp",
                Short::None,
                "RATE",
                WhenAbsent::Apply("500/s"),
                |d, v| {
                    d.ramp_per_sec = v.rate()?;
                    Ok(())
                },
                &["opening rate: N/s, N/m or N per second"],
            ),
            value(
                "--warmup",
                Short::None,
                "DURATION",
                WhenAbsent::Apply("1s"),
                |d, v| {
                    d.warmup = v.duration()?;
                    Ok(())
                },
                &["settle time after the ramp, not measured"],
            ),
            value(
                "--duration",
                Short::Unlisted("-d"),
                "DURATION",
                WhenAbsent::Apply("30s"),
                |d, v| {
                    d.duration = v.duration()?;
                    Ok(())
                },
                &["the steady (measured) window after the warmup"],
            ),
            value(
                "--connect-timeout",
                Short::None,
                "D",
                WhenAbsent::Apply("10s"),
                connect_timeout,
                &["bound on TCP connect + TLS + WebSocket handshake, per", "connection"],
            ),
            value(
                "--threads",
                Short::Unlisted("-t"),
                "N",
                WhenAbsent::Apply("1"),
                |d, v| {
                    d.threads = v.positive()?;
                    Ok(())
                },
                &[
                    "event-loop threads; keep it below the number of cores, or",
                    "the generator competes with the server it measures",
                ],
            ),
            value(
                "--bind",
                Short::None,
                "IP,IP,...",
                WhenAbsent::Nothing,
                |d, v| {
                    d.bind = v.addresses()?;
                    Ok(())
                },
                &[
                    "source addresses, round-robin per connection; each gives",
                    "~28k more ephemeral ports (e.g. 127.0.0.2,127.0.0.3)",
                ],
            ),
            value(
                "--churn",
                Short::None,
                "RATE",
                WhenAbsent::Nothing,
                |d, v| {
                    d.churn_per_sec = Some(v.rate()?);
                    Ok(())
                },
                &[
                    "in the steady window, close (close handshake) and reopen",
                    "connections at RATE (N/s or N/m), round the open connections.",
                    "Each reopen is a full token exchange (with --api-key: a fresh",
                    "POST /auth/token on its own connection, as a browser does) and",
                    "upgrade, to the next --url in turn. Churned closes are not",
                    "drops, reopen failures are counted apart, and a reopened",
                    "connection starts a new seq baseline (no missed ticks)",
                ],
            ),
            switch(
                "--token-per-connection",
                Short::None,
                |d| d.token_per_connection = true,
                &[
                    "with --api-key: every connection of the ramp too makes its",
                    "own token exchange (POST /auth/token on a connection of its",
                    "own) before its upgrade, as a crowd of returning browsers",
                    "does after a deploy; its handshake time then covers both",
                ],
            ),
        ],
        after: "    The run ends by itself after: the ramp (connections / rate, plus at most
    --connect-timeout for the last handshakes) + warmup + duration + at most 2 s of
    closing handshakes.
",
    },
    Group {
        heading: "SUBSCRIPTIONS (crypto-ticker: a session gets every symbol unless it chooses):",
        before: "",
        options: &[
            value(
                "--subscribe",
                Short::None,
                "A,B",
                WhenAbsent::Nothing,
                subscribe,
                &[
                    "every connection asks for these symbols only, at the upgrade:",
                    "symbols=A,B is added to the WebSocket URL's query (after any",
                    "query the URL has, --no-auth ws:// URLs too), no extra message.",
                    "Repeat it for several sets: connection i takes set i mod n",
                    "(10 flags of 3 symbols: 10 distinct sets); a churn reconnect",
                    "asks for the set of the connection it replaces. A set the",
                    "server refuses (HTTP 400 unknown symbol) fails the connection,",
                    "counted as \"subscribe refused: unknown symbol (http 400)\"",
                ],
            ),
            value(
                "--subscribe-random",
                Short::None,
                "K",
                WhenAbsent::Nothing,
                |d, v| {
                    d.random_k = Some(v.positive()?);
                    Ok(())
                },
                &[
                    "each connection reads the symbols in its first ticker message",
                    "(the snapshot after welcome lists them all), picks K of them",
                    "at random and sends {\"type\":\"subscribe\",\"symbols\":[...]}; K",
                    "above the number of symbols takes them all, with a warning.",
                    "A churn reconnect picks again. An `error` answer is counted as",
                    "\"subscribe refused: REASON\"; that connection keeps every",
                    "symbol. Not with --subscribe",
                ],
            ),
            value(
                "--seed",
                Short::None,
                "N",
                WhenAbsent::Shown("random, printed"),
                seed,
                &[
                    "seed of the random picks: connection i's pick depends on N, i",
                    "and the server's symbols only, so the same seed picks the same",
                    "sets again",
                ],
            ),
        ],
        after:
            "    A tick is counted the same with a set: seq is global on crypto-ticker, so a gap is
    a missed tick whatever the set. The `subscriptions` and `error` answers are not
    ticks, and the snapshot after a subscription change (the latest seq again) counts as
    nothing: no tick, gap, repeat or reorder. The summary reports the mode, the distinct
    sets used and, per --subscribe set, its connections, ticks and delivered %.
",
    },
    Group {
        heading: "WIRE FORMAT (what the server is asked to send):",
        before: "",
        options: &[
            switch(
                "--deflate",
                Short::None,
                |d| d.deflate = true,
                &[
                    "offer permessage-deflate (RFC 7692) at the upgrade:",
                    "Sec-WebSocket-Extensions: permessage-deflate;",
                    "client_max_window_bits. Messages with RSV1 are inflated",
                    "(reset per message when the server answers",
                    "server_no_context_takeover, else one context per",
                    "connection); one inflating past 16 MiB fails its",
                    "connection. A server that does not accept is counted, and",
                    "its sessions go on uncompressed. The tool's own messages",
                    "go uncompressed",
                ],
            ),
            switch(
                "--delta",
                Short::None,
                |d| d.delta = true,
                &[
                    "ask for changes only: delta=1 is added to the WebSocket",
                    "URL's query (after symbols= and the token). Each connection",
                    "rebuilds its symbols' state from full (\"delta\":false) and",
                    "change (\"delta\":true) messages and checks that every",
                    "prev_seq is the seq of the last ticker message it got; seq",
                    "gaps are normal there and not counted as missed ticks",
                ],
            ),
        ],
        after: "    A change off the chain is a chain break; the changes after it, until the next
    full message, are counted as unsynced (one loss counts once). Wire bytes are every
    byte read from the sockets in the steady window, after TLS decryption (frames and
    HTTP heads; no TLS records or TCP/IP headers): the summary gives them per
    subscriber per second and per message, with messages per subscriber per second, a
    subscriber being a connection the ramp opened.
",
    },
    Group {
        heading: "MEASURE AND REPORT:",
        before: "    Besides the table: fairness (the spread of each connection's own median tick
    latency in the window, over connections with 50 ticks or more: best, median and
    worst connection, worst - best), the storm (time from the first connect until all N
    are live, shown when the ramp is 1000/s or more or ran 20 % over plan), and churn
    figures when --churn is given.
",
        options: &[
            value(
                "--server-pid",
                Short::None,
                "PID",
                WhenAbsent::Nothing,
                server_pid,
                &[
                    "read /proc/PID around the steady window: server CPU per",
                    "delivered frame and RSS growth per connection (same host)",
                ],
            ),
            value(
                "--json",
                Short::None,
                "FILE",
                WhenAbsent::Nothing,
                |d, v| {
                    d.json = Some(v.text.into());
                    Ok(())
                },
                &[
                    "write the summary as JSON, with every latency histogram in",
                    "HdrHistogram's standard form (V2 compressed, base64) so that",
                    "`ticker-load merge` adds runs up exactly",
                ],
            ),
            value(
                "--report",
                Short::None,
                "FILE",
                WhenAbsent::Nothing,
                |d, v| {
                    d.report.push(v.report_path()?);
                    Ok(())
                },
                &[
                    "write a self-contained report: FILE.html or FILE.svg",
                    "(repeat the flag for both)",
                ],
            ),
            switch(
                "--quiet",
                Short::Unlisted("-q"),
                |d| d.quiet = true,
                &["no progress line on stderr"],
            ),
        ],
        after: "",
    },
    Group {
        heading: "",
        before: "",
        options: &[
            command("--help", Short::Listed("-h"), || Command::Help, &["this text"]),
            command("--version", Short::Listed("-V"), || Command::Version, &["version"]),
        ],
        after: "",
    },
];

/// `merge FILE... [--report FILE]... [--json FILE]`: listed in the help's usage.
pub(super) static MERGE: &[Group<Merge>] = &[Group {
    heading: "",
    before: "",
    options: &[
        value(
            "--report",
            Short::None,
            "FILE",
            WhenAbsent::Nothing,
            |m, v| {
                m.report.push(v.report_path()?);
                Ok(())
            },
            &[],
        ),
        value(
            "--json",
            Short::None,
            "FILE",
            WhenAbsent::Nothing,
            |m, v| {
                m.json = Some(v.text.into());
                Ok(())
            },
            &[],
        ),
    ],
    after: "",
}];

fn connect_timeout(d: &mut Draft, v: Given) -> Result<(), ArgError> {
    d.connect_timeout = v.duration()?;
    if d.connect_timeout.is_zero() {
        return Err(v.invalid("must be above zero"));
    }
    Ok(())
}

fn subscribe(d: &mut Draft, v: Given) -> Result<(), ArgError> {
    let set = SymbolSet::parse(&v.text)
        .ok_or_else(|| v.invalid("expects symbols separated by commas, e.g. BTC-USD,ETH-USD"))?;
    d.sets.push(set);
    Ok(())
}

fn seed(d: &mut Draft, v: Given) -> Result<(), ArgError> {
    let seed = v
        .text
        .parse()
        .map_err(|_| v.invalid("expects a whole number between 0 and 18446744073709551615"))?;
    d.seed = Some(seed);
    Ok(())
}

fn server_pid(d: &mut Draft, v: Given) -> Result<(), ArgError> {
    let pid = v.text.parse().map_err(|_| v.invalid("expects a process id (a whole number)"))?;
    d.server_pid = Some(pid);
    Ok(())
}

const USAGE: &str = "\
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
";

const NOTES: &str = "\
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
