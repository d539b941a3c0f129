//! Flags and environment variables → [`Config`], validated once at start.
//!
//! Every option is one row of [`OPTIONS`]: flag, environment variable, group, default,
//! help and the parser that applies it. Defaults apply first, then the environment,
//! then flags, so a flag always wins. `--help` is generated from the same table, so it
//! cannot drift ([`help`]: grouped by the rows' [`Group`], 100 columns wide).
//!
//! A refused value is a [`ValueError`] from the row's parser, and the message names
//! the option as it was given (`--tick` or `TICKER_TICK`), what is accepted in the units
//! a user types, and what was given ([`value`]'s rules). Parsing reads no file but
//! `--symbols-file` and resolves no name: `--addr` takes an IP.
//!
//! - [`options`]: the table, and [`Config`] built from it (one field per row).
//! - [`parse`]: the environment and the flags, one loop for the server and the
//!   subcommands ([`parse_args`], [`parse_subset`]).
//! - [`validate`]: the checks across options (token bounds, TLS pair, one Redis...).
//! - [`features`]: the optional parts and the refusal of an option whose part this
//!   build lacks.
//! - [`redis`], [`value`], [`help`]: the cluster's Redis as options name it, the rules
//!   for values, and `--help`.

use std::fmt;

use crate::http::request::Limits;
use crate::source::{Exchange, UpstreamConfig};

pub mod features;
mod help;
pub mod options;
mod parse;
pub mod redis;
mod table;
mod validate;
mod value;

pub use features::{Part, built_in_parts, check_built_in, not_built_in, refusal};
#[cfg(test)]
pub(crate) use help::too_wide;
pub use help::{Group, WIDTH as HELP_WIDTH, help_text, options_text};
pub use options::{Config, ENV_ONLY, OPTIONS, OptionSpec, available_cores, system_somaxconn};
pub use parse::{parse_args, parse_subset};
pub use redis::{DEFAULT_MASTER, RedisTarget};
pub use validate::check_redis;
pub use value::{ValueError, duration_in, human_duration, parse_duration};

/// A configuration error, with the option it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    Help,
    Version,
}

impl Config {
    /// Live tokens one API key may hold: `--tokens-per-key`, or derived from
    /// `--token-capacity` when it is not set.
    pub fn per_key_bound(&self) -> usize {
        self.tokens_per_key.unwrap_or_else(|| derived_tokens_per_key(self.token_capacity))
    }

    /// The bounds on an HTTP request: `--max-head`, `--max-body`, `--max-headers`.
    pub fn http_limits(&self) -> Limits {
        Limits { max_head: self.max_head, max_body: self.max_body, max_headers: self.max_headers }
    }

    /// The upstream settings for `exchange`, defaults filled in.
    pub fn upstream_config(&self, exchange: Exchange) -> UpstreamConfig {
        UpstreamConfig {
            exchange,
            url: self.source_url.clone().unwrap_or_else(|| exchange.default_url().to_owned()),
            ca: self.source_ca.clone(),
            silence: self.source_timeout.unwrap_or_else(|| exchange.default_silence()),
            stale_after: self.stale_after,
        }
    }

    /// The cluster's Redis, `None` for one node. [`parse_args`] and [`check_redis`]
    /// refuse a configuration that names both a URL and Sentinels.
    pub fn redis_target(&self) -> Option<RedisTarget> {
        match (&self.redis, self.redis_sentinels.is_empty()) {
            (Some(url), _) => Some(RedisTarget::Url(url.clone())),
            (None, false) => Some(RedisTarget::Sentinels {
                sentinels: self.redis_sentinels.clone(),
                master: self.redis_master.clone(),
            }),
            (None, true) => None,
        }
    }

    /// Whether this node is one of a cluster's (`--redis` or `--redis-sentinels`).
    pub fn clustered(&self) -> bool {
        self.redis.is_some() || !self.redis_sentinels.is_empty()
    }
}

/// The per-key token bound when `--tokens-per-key` is not set: a tenth of the table, so
/// that filling it takes ten keys at their bound, and at most 10,000 (one client's
/// connections on one node, about a host's file-descriptor limit).
pub fn derived_tokens_per_key(token_capacity: usize) -> usize {
    (token_capacity / 10).clamp(1, 10_000)
}

#[cfg(test)]
mod tests;
