//! Integration tests: one binary, a module per surface of the SPEC. Every test starts
//! the real server binary on an ephemeral port with its own temporary data folder.

mod util;

mod auth;
mod browser;
mod cluster;
mod cors;
mod hostile;
mod limits;
mod load_tool;
mod migration;
mod ops;
mod redis_server;
mod source;
mod static_files;
mod subscriptions;
mod tls;
mod ws;
