//! crypto-ticker: a hand-rolled mio server that exchanges API keys for HMAC-signed
//! tokens and streams simulated prices over authenticated WebSockets.
//!
//! Table of contents, from the outside in:
//! - [`config`]: flags and environment variables, validated once into a [`config::Config`].
//! - [`server`]: the mio event loops (the only code that touches sockets), the
//!   per-connection state machine and the per-tick fan-out hot path.
//! - [`http`]: pure HTTP/1.1 parsing (over byte slices), responses, routing, CORS and
//!   static files.
//! - [`ws`]: pure RFC 6455 framing: frame headers, the incremental decoder, the handshake.
//! - [`auth`]: HMAC tokens and their in-memory table; the SQLite API-key store.
//! - [`ticker`]: the price model and the supervised ticker thread that builds each
//!   tick's frame once.
//! - [`workers`]: the thread pool that runs blocking work (SQLite, signing, file reads).
//! - [`metrics`], [`log`]: counters for `/metrics` and one-line structured logs.
//! - [`error`]: every error the SPEC names, and the one place each becomes a status or
//!   close code.
//! - [`fuzz_checks`]: the invariants the fuzz targets in `fuzz/` assert, also replayed
//!   over the committed corpora by the test suite.
#![deny(rust_2018_idioms)]
#![warn(unreachable_pub)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod fuzz_checks;
pub mod http;
pub mod log;
pub mod metrics;
pub mod parse;
pub mod server;
pub mod ticker;
pub mod workers;
pub mod ws;
