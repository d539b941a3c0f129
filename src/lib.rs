//! crypto-ticker: a hand-rolled mio server that exchanges API keys for HMAC-signed
//! tokens and streams simulated prices over authenticated WebSockets.
//!
//! Table of contents, from the outside in:
//! - [`config`]: flags and environment variables, validated once into a [`config::Config`].
//! - [`server`]: the mio event loops, the per-connection state machine, the per-tick
//!   fan-out hot path, and start-up (each optional part entering through one builder).
//! - [`http`]: pure HTTP/1.1 parsing (over byte slices), responses, routing, CORS and
//!   static files.
//! - [`ws`]: pure RFC 6455 framing: frame headers, the incremental decoder, the handshake.
//! - `tls` (feature `tls`): the TLS record layer of upgraded sessions (pure, like `ws`)
//!   and the certificate handling (loading, checking, reloading; the rustls configuration).
//! - [`auth`]: the whole auth flow: API keys → HMAC tokens → authorized upgrades, with
//!   the key-store and token-store seams (SQLite and in-memory on one node).
//! - [`source`]: where prices come from: the random walk or an exchange's stream
//!   (the upstream thread, the latest-price book, the exchange parsers).
//! - [`cluster`]: cluster mode over a shared Redis (keys, tokens, the login limit and
//!   the leader's ticks); without the `cluster` feature, its seam's stand-ins.
//! - [`symbols`]: the symbol table and the sets sessions subscribe to (interned, so
//!   each distinct set's frame is built once per tick).
//! - [`control`]: the client's JSON messages (`ping`, `subscribe`, `unsubscribe`) and
//!   the server's answers, parsed and built apart from any socket.
//! - [`ticker`]: the price model and the supervised ticker thread that builds each
//!   tick's frame once.
//! - [`backoff`]: the jittered reconnect schedule (Redis link, upstream client).
//! - [`workers`]: a generic thread pool for blocking work, replying through a waker.
//! - [`metrics`], [`log`]: counters for `/metrics` and one-line structured logs (control
//!   characters escaped).
//! - [`redact`]: passwords kept out of messages (the `--redis` URL's).
//! - [`error`]: every error the server answers with, and the one place each becomes a
//!   status or close code.
//! - [`cli`]: the `keys` subcommand (API keys in SQLite or in the cluster's Redis).
//! - `fuzz_checks` (tests and `cargo fuzz` only): the invariants the fuzz targets in
//!   `fuzz/` assert, also replayed over the committed corpora by the unit tests.
//!
//! Sockets: [`server`] owns mio, the listening socket (`server/listen.rs`) and every
//! client connection. The only other sockets are outgoing, and never on an event
//! loop's thread: an exchange's stream (`source/upstream.rs`) and the connections to Redis,
//! all made by `cluster/target.rs` (for `cluster/link.rs`, the tick subscriber and the
//! Sentinel checks). Workers and the ticker reach the event loops only through
//! channels and a waker.
//!
//! Optional parts (Cargo features `tls`, `cluster`, `exchanges`) each enter through one
//! module that a build without the part answers with stand-ins: `server/tls_start.rs`,
//! [`cluster`] (`cluster/node.rs`, or `cluster/absent.rs`), `source/exchanges.rs`.
#![deny(rust_2018_idioms)]
#![warn(unreachable_pub)]

pub mod auth;
pub mod backoff;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(not(feature = "cluster"))]
#[path = "cluster/absent.rs"]
pub mod cluster;
pub mod config;
pub mod control;
pub mod error;
#[cfg(any(test, fuzzing))]
pub mod fuzz_checks;
pub mod http;
pub mod log;
pub mod metrics;
pub mod parse;
pub mod redact;
pub mod server;
pub mod source;
pub mod symbols;
pub mod ticker;
#[cfg(feature = "tls")]
pub mod tls;
pub mod workers;
pub mod ws;
