//! The cluster's Redis as the options name it: a URL (`--redis`) or a set of Sentinels
//! and the master they monitor (`--redis-sentinels`, `--redis-master`), and the
//! parsers of those values. Nothing here connects: `cluster::target` does.

use super::value::ValueError;
use crate::redact::redact_url;

/// Default of `--redis-master`: the name Redis's own sentinel.conf uses.
pub const DEFAULT_MASTER: &str = "mymaster";

/// Where a cluster node finds its Redis: a fixed URL, or the master a set of Sentinels
/// names at the moment of each connection (the cluster resolves it in
/// `cluster::target`, so a failover is followed on the next reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `--redis URL`.
    Url(String),
    /// `--redis-sentinels HOST:PORT,...` and `--redis-master NAME`.
    Sentinels { sentinels: Vec<String>, master: String },
}

impl RedisTarget {
    /// The option that names this target, as a message gives it.
    pub fn option(&self) -> &'static str {
        match self {
            RedisTarget::Url(_) => "--redis",
            RedisTarget::Sentinels { .. } => "--redis-sentinels",
        }
    }
}

/// `HOST:PORT,...`: every entry needs a host and a port (a Sentinel has no default port
/// worth guessing: 26379 is only a convention).
pub(super) fn parse_sentinels(list: &str) -> Result<Vec<String>, ValueError> {
    let refused = || ValueError::Expected {
        what: "HOST:PORT,... (e.g. 10.0.0.1:26379,10.0.0.2:26379)".into(),
        got: list.to_owned(),
    };
    list.split(',')
        .map(str::trim)
        .map(|entry| {
            let (host, port) = entry.rsplit_once(':').ok_or_else(refused)?;
            let host_ok = !host.is_empty() && !host.contains(['/', '@', ' ']);
            match port.parse::<u16>() {
                Ok(p) if p > 0 && host_ok => Ok(entry.to_owned()),
                _ => Err(refused()),
            }
        })
        .collect()
}

/// `--redis-master`: a name without spaces or control characters.
pub(super) fn parse_master(v: &str) -> Result<String, ValueError> {
    if v.is_empty() || v.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(ValueError::Expected {
            what: "a master name (no spaces)".into(),
            got: v.to_owned(),
        });
    }
    Ok(v.to_owned())
}

/// A `--redis` URL the cluster can use, or why not. The URL is never echoed with its
/// password ([`crate::redact::redact_url`]).
pub(super) fn check_redis_url(url: &str) -> Result<String, ValueError> {
    const FORMS: &str = "redis://[[user]:password@]host[:port][/db] or unix:///path/to/socket";
    let refused = || ValueError::Expected { what: FORMS.to_owned(), got: redact_url(url) };
    if !(url.starts_with("redis://") || url.starts_with("unix://")) {
        return Err(refused());
    }
    // Parsed the way the cluster will (no connection is made), so a bad host, port or
    // database number is a configuration error at start rather than a failure later.
    #[cfg(feature = "cluster")]
    if redis::Client::open(url).is_err() {
        return Err(refused());
    }
    Ok(url.to_owned())
}
