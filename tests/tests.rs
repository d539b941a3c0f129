//! Integration tests: one binary, a module per surface of the server. Every test starts
//! the real server binary on an ephemeral port with its own temporary data folder.
//! The modules of optional parts (TLS, cluster, exchanges) run when the binary has them
//! (the default features); `small_build` runs when it has none of them.

mod util;

mod auth;
mod browser;
mod cli;
#[cfg(feature = "cluster")]
mod cluster;
mod compression;
mod cors;
mod docs;
mod hostile;
mod isolation;
mod limits;
mod load_tool;
mod migration;
mod ops;
mod python_client;
#[cfg(feature = "cluster")]
mod redis_server;
#[cfg(feature = "cluster")]
mod sentinel;
mod small_build;
// The fake exchange serves wss with the TLS tests' CA.
#[cfg(all(feature = "exchanges", feature = "tls"))]
mod source;
mod static_files;
mod subscriptions;
#[cfg(feature = "tls")]
mod tls;
mod ws;
