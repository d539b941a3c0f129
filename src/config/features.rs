//! The optional parts of the server (cargo features), which options need which, and
//! the one way a build without a part refuses it: "this build has no `X`".
//!
//! A small-host build (`--no-default-features`) refuses the options of a part it lacks
//! when the configuration is parsed, instead of starting without it. Start-up, the
//! `keys` CLI and `main` say the same refusal through [`Part::missing`] and
//! [`refusal`].

use super::ConfigError;
use super::options::Config;
use super::redis::RedisTarget;
use crate::source::SourceKind;

/// An optional part of the server: a cargo feature of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `--tls-cert`/`--tls-key`: the port speaks TLS.
    Tls,
    /// `--redis`, `--redis-sentinels`: several nodes share one Redis.
    Cluster,
    /// `--source`: prices from an exchange's stream.
    Exchanges,
}

impl Part {
    /// Every part, in the order `--version` lists them.
    pub const ALL: [Part; 3] = [Part::Tls, Part::Cluster, Part::Exchanges];

    /// The cargo feature that builds it.
    pub fn feature(self) -> &'static str {
        match self {
            Part::Tls => "tls",
            Part::Cluster => "cluster",
            Part::Exchanges => "exchanges",
        }
    }

    /// Whether this binary was built with it.
    pub fn is_built_in(self) -> bool {
        match self {
            Part::Tls => cfg!(feature = "tls"),
            Part::Cluster => cfg!(feature = "cluster"),
            Part::Exchanges => cfg!(feature = "exchanges"),
        }
    }

    /// What a missing part says: which feature it needs and how to get it.
    pub fn missing(self) -> String {
        not_built_in(self.feature())
    }
}

/// An option that needs a part, as a message names it, and whether a configuration
/// asks for it.
struct Need {
    option: &'static str,
    part: Part,
    asked: fn(&Config) -> bool,
}

/// Which options need which part, in the order a refusal names them.
const NEEDS: [Need; 4] = [
    Need { option: "--tls-cert/--tls-key", part: Part::Tls, asked: |c| c.tls_cert.is_some() },
    Need { option: "--redis", part: Part::Cluster, asked: |c| c.redis.is_some() },
    Need {
        option: "--redis-sentinels",
        part: Part::Cluster,
        asked: |c| !c.redis_sentinels.is_empty(),
    },
    Need { option: "--source", part: Part::Exchanges, asked: |c| c.source != SourceKind::Sim },
];

/// Refuses the options of a part this binary was built without, naming the first.
pub fn check_built_in(config: &Config) -> Result<(), ConfigError> {
    match NEEDS.iter().find(|need| (need.asked)(config) && !need.part.is_built_in()) {
        Some(need) => Err(ConfigError(refusal(need.option, need.part))),
        None => Ok(()),
    }
}

/// The refusal of `option`, which needs `part`: `--redis: this build has no ...`.
pub fn refusal(option: &str, part: Part) -> String {
    format!("{option}: {}", part.missing())
}

/// The refusal of the cluster's Redis in a build without the cluster (the `keys` CLI,
/// which reads `--redis` and `--redis-sentinels` but not the server's other options).
pub fn no_cluster(target: &RedisTarget) -> String {
    refusal(target.option(), Part::Cluster)
}

/// The optional parts this binary was built with, for `--version`.
pub fn built_in_parts() -> String {
    let built: Vec<&str> =
        Part::ALL.iter().filter(|p| p.is_built_in()).map(|p| p.feature()).collect();
    if built.is_empty() { "no optional parts".to_owned() } else { built.join(", ") }
}

/// What a missing part says, by feature name ([`Part::missing`]).
pub fn not_built_in(feature: &str) -> String {
    format!(
        "this build has no `{feature}` (built with --no-default-features); \
         `cargo build --release` builds every part"
    )
}
