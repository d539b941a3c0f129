//! ticker-load: the load generator bundled with crypto-ticker.
//!
//! Table of contents, from the command line down to the bytes:
//! - [`args`]: flags → [`args::Args`]; `--help` text.
//! - [`auth`]: the blocking `POST /auth/token` before the run, one per `--url`.
//! - [`endpoint`]: each `--url` resolved and given its token; connection `i` goes to
//!   endpoint `i % n`.
//! - [`run`]: the coordinator: threads, steady window, /proc sampling, live line.
//! - [`engine`]: one mio event loop per thread over a slab of [`conn::Conn`]s; [`sock`]
//!   makes the (optionally source-bound) non-blocking connects.
//! - [`conn`]: one connection's state machine and I/O.
//! - [`handshake`], [`frame`], [`receiver`], [`scan`]: pure protocol code — the upgrade,
//!   frame headers, the byte stream → events with seq-gap tracking, and the `seq`/`ts_us`
//!   scanner.
//! - [`deflate`]: `--deflate`: the permessage-deflate offer, the answer's check, the
//!   bounded inflater; [`delta`]: `--delta`: the state rebuilt from full and change
//!   messages, and their `prev_seq` chain.
//! - [`meter`], [`stats`]: what is counted and when; histograms and percentiles;
//!   [`fairness`]: each connection's own latency record, for the fairness spread.
//! - [`summary`], [`json`], [`report`]: the table, the JSON (with the histograms), and
//!   the HTML/SVG report; [`merge`]: saved runs compared or merged.
//! - [`subscribe`]: `--subscribe` and `--subscribe-random`: the `?symbols=` of a set, the
//!   random pick, one connection's `subscribe` and its answer.
//! - [`tls`]: `https://` and `wss://`: the client configuration (`--ca` or the web
//!   PKI), server names, TLS failures as counted reasons; [`conn`] drives the sessions.
//! - [`system`]: CPU time, RSS, file limits, Ctrl-C.
#![deny(rust_2018_idioms)]
#![warn(unreachable_pub)]

mod args;
mod auth;
mod conn;
mod deflate;
mod delta;
mod endpoint;
mod engine;
mod fairness;
mod frame;
mod handshake;
mod json;
mod merge;
mod meter;
mod outcome;
mod receiver;
mod report;
mod run;
mod scan;
mod sock;
mod stats;
mod subscribe;
mod summary;
mod system;
mod tls;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::Command;
use summary::Summary;

fn main() -> ExitCode {
    let env_key = std::env::var("TICKER_LOAD_API_KEY").ok();
    let args = match args::parse(std::env::args().skip(1), env_key) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Merge(m)) => {
            return match merge::merge_files(&m.files) {
                Ok(summary) => {
                    print!("{}", summary.table());
                    write_outputs(&summary, m.json.as_deref(), &m.report)
                }
                Err(e) => {
                    eprintln!("ticker-load merge: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Compare(files)) => {
            return match merge::compare(&files) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ticker-load compare: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Help) => {
            print!("{}", args::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ticker-load {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ticker-load: {e}");
            return ExitCode::from(2);
        }
    };

    let out = match run::run(&args) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("ticker-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = Summary::new(&args, &out);
    print!("{}", summary.table());
    let written = write_outputs(&summary, args.json.as_deref(), &args.report);
    if summary.opened == 0 { ExitCode::FAILURE } else { written }
}

/// Writes the JSON file and the reports asked for; failure if any cannot be written.
fn write_outputs(summary: &Summary, json: Option<&Path>, reports: &[PathBuf]) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    let mut write = |path: &Path, text: String| {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("ticker-load: writing {}: {e}", path.display());
            status = ExitCode::FAILURE;
        }
    };
    if let Some(path) = json {
        write(path, format!("{:#}\n", json::to_json(summary)));
    }
    for path in reports {
        let is_svg = path.extension().is_some_and(|e| e == "svg");
        write(path, if is_svg { report::svg(summary) } else { report::html(summary) });
    }
    status
}
