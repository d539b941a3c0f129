//! Checks across options, once every option has its value: each row of the table
//! checks only its own value, these check how values fit together.

use super::ConfigError;
use super::options::Config;
use super::value::human_duration;
use crate::source::SourceKind;

/// Every check, in the order their refusals are reported.
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    check_liveness(config)?;
    check_tls_pair(config)?;
    check_redis(config)?;
    check_token_bounds(config)?;
    check_source_options(config)
}

/// A ping must have time to be answered before the session counts as dead.
fn check_liveness(config: &Config) -> Result<(), ConfigError> {
    if config.dead_after <= config.ping_after {
        return Err(ConfigError(format!(
            "--dead-after ({}) must be longer than --ping-after ({})",
            human_duration(config.dead_after),
            human_duration(config.ping_after)
        )));
    }
    Ok(())
}

/// A certificate is useless without its key and the other way round.
fn check_tls_pair(config: &Config) -> Result<(), ConfigError> {
    if config.tls_cert.is_some() != config.tls_key.is_some() {
        return Err(ConfigError(
            "--tls-cert and --tls-key go together: give both or neither".into(),
        ));
    }
    Ok(())
}

/// `--redis` and `--redis-sentinels` are two ways to name one Redis: give one.
pub fn check_redis(config: &Config) -> Result<(), ConfigError> {
    if config.redis.is_some() && !config.redis_sentinels.is_empty() {
        return Err(ConfigError(
            "--redis and --redis-sentinels name the cluster's Redis two ways: give one".into(),
        ));
    }
    Ok(())
}

/// One node's token table is shared by every key, so no key may hold more than half of
/// it: otherwise one key could fill the table and every other key would get 503. A
/// cluster keeps its tokens in Redis, which `--token-capacity` does not bound.
fn check_token_bounds(config: &Config) -> Result<(), ConfigError> {
    let (per_key, capacity) = (config.per_key_bound(), config.token_capacity);
    if !config.clustered() && per_key > capacity / 2 {
        return Err(ConfigError(format!(
            "--tokens-per-key {per_key} is more than half of --token-capacity {capacity}: \
             one API key could fill the token table and lock every other key out (503). \
             Give at most {} (the default is a tenth of the capacity, at most 10000), or \
             raise --token-capacity",
            capacity / 2
        )));
    }
    Ok(())
}

/// The random walk has no endpoint and no TLS: an exchange's options need an exchange.
fn check_source_options(config: &Config) -> Result<(), ConfigError> {
    if config.source == SourceKind::Sim
        && (config.source_url.is_some() || config.source_ca.is_some())
    {
        return Err(ConfigError(
            "--source-url and --source-ca need --source coinbase|binance|kraken".into(),
        ));
    }
    Ok(())
}
