//! The one way in to the exchanges' part (the `exchanges` feature) from outside
//! `source/`: the upstream price source start-up builds ([`upstream`]) and the
//! `source-check` subcommand ([`check`]).
//!
//! A build without `exchanges` gets stand-ins under the same names: [`upstream`]
//! answers `None` ("not built"; start-up says so), [`check`] refuses with the one
//! message every missing part uses, and [`ConnectError`] has no values.

#[cfg(feature = "exchanges")]
pub use built::{ConnectError, check, upstream};
#[cfg(not(feature = "exchanges"))]
pub use stand_in::{ConnectError, check, upstream};

#[cfg(feature = "exchanges")]
mod built {
    use std::sync::Arc;

    pub use super::super::upstream::ConnectError;
    use super::super::{Exchange, PriceSource, Upstream};
    use crate::config::Config;
    use crate::metrics::Metrics;

    /// The exchange's stream as the price source (not connected yet: it connects once
    /// activated). `None` only in a build without the exchanges.
    pub fn upstream(
        config: &Config,
        exchange: Exchange,
        metrics: Arc<Metrics>,
    ) -> Option<Result<PriceSource, ConnectError>> {
        let upstream = Upstream::new(config.upstream_config(exchange), &config.symbols, metrics);
        Some(upstream.map(PriceSource::Upstream))
    }

    /// `crypto-ticker source-check ...`: `Ok(true)` when at least one price arrived.
    pub fn check(args: &[String]) -> Result<bool, String> {
        super::super::check::run(args)
    }
}

#[cfg(not(feature = "exchanges"))]
mod stand_in {
    use std::fmt;
    use std::sync::Arc;

    use super::super::{Exchange, PriceSource};
    use crate::config::Config;
    use crate::metrics::Metrics;

    /// Why an exchange's stream cannot be used: never, here.
    #[derive(Debug)]
    pub enum ConnectError {}

    impl fmt::Display for ConnectError {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            match *self {}
        }
    }

    impl std::error::Error for ConnectError {}

    /// Always `None`: this build has no exchanges.
    pub fn upstream(
        _config: &Config,
        _exchange: Exchange,
        _metrics: Arc<Metrics>,
    ) -> Option<Result<PriceSource, ConnectError>> {
        None
    }

    /// `source-check` in a build without the exchanges: refused, whatever the arguments.
    pub fn check(_args: &[String]) -> Result<bool, String> {
        Err(crate::config::Part::Exchanges.missing())
    }
}
