//! TLS's share of start-up, and the one place start-up meets the `tls` feature: the
//! certificate (`load`) and SIGHUP's reload (`reload`). The handshake pool has its own
//! seam (`handshakes.rs`, a pool with no threads without `tls`).
//!
//! A build without `tls` gets stand-ins under the same names: `load` answers `None`
//! ("not built"; start-up says so), and [`Tls`] and [`TlsError`] are types with no
//! values.

#[cfg(feature = "tls")]
pub use built::{Tls, TlsError};
#[cfg(feature = "tls")]
pub(crate) use built::{load, reload};
#[cfg(not(feature = "tls"))]
pub use stand_in::{Tls, TlsError};
#[cfg(not(feature = "tls"))]
pub(crate) use stand_in::{load, reload};

#[cfg(feature = "tls")]
mod built {
    use std::path::Path;

    pub use crate::tls::{Tls, TlsError};

    /// The certificate and key, loaded and checked; `None` only in a build without TLS.
    pub(crate) fn load(cert: &Path, key: &Path) -> Option<Result<Tls, TlsError>> {
        Some(Tls::load(cert, key))
    }

    /// SIGHUP's work: new handshakes get the files as they are now; live sessions are
    /// untouched; a bad file is logged and the old certificate stays.
    pub(crate) fn reload(tls: Option<&Tls>) {
        let Some(tls) = tls else {
            crate::info!("SIGHUP ignored: TLS is off");
            return;
        };
        match tls.reload() {
            Ok(()) => crate::info!("TLS certificate reloaded", cert = tls.cert_path().display()),
            Err(e) => crate::warn!("TLS reload failed; keeping the old certificate", error = e),
        }
    }
}

#[cfg(not(feature = "tls"))]
mod stand_in {
    use std::fmt;
    use std::path::Path;

    /// A loaded certificate: none here.
    pub enum Tls {}

    /// Why a certificate cannot be loaded: never, here.
    #[derive(Debug)]
    pub enum TlsError {}

    impl fmt::Display for TlsError {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            match *self {}
        }
    }

    impl std::error::Error for TlsError {}

    /// Always `None`: this build has no TLS.
    pub(crate) fn load(_cert: &Path, _key: &Path) -> Option<Result<Tls, TlsError>> {
        None
    }

    /// SIGHUP's work: none without TLS.
    pub(crate) fn reload(_tls: Option<&Tls>) {
        crate::info!("SIGHUP ignored: TLS is off");
    }
}
