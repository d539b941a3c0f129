//! TLS's share of start-up, and the one place start-up meets the `tls` feature: the
//! certificate (`load`), the handshake pool with each shard's share of it
//! (`HandshakePool`), and SIGHUP's reload (`reload`).
//!
//! A build without `tls` gets stand-ins under the same names: `load` answers `None`
//! ("not built"; start-up says so), the pool has no threads, and [`Tls`] and
//! [`TlsError`] are types with no values.

#[cfg(feature = "tls")]
pub(crate) use built::{HandshakePool, load, reload};
#[cfg(feature = "tls")]
pub use built::{Tls, TlsError};
#[cfg(not(feature = "tls"))]
pub(crate) use stand_in::{HandshakePool, load, reload};
#[cfg(not(feature = "tls"))]
pub use stand_in::{Tls, TlsError};

#[cfg(feature = "tls")]
mod built {
    use std::path::Path;
    use std::sync::Arc;

    use crossbeam_channel::{Receiver, unbounded};
    use mio::Waker;

    pub use super::super::tls::{Tls, TlsError};
    use crate::config::Config;
    use crate::server::handshakes::{self, Handshakes, Stepped};
    use crate::workers::{self, Completion, Mailbox};

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

    /// The handshake pool (`handshakes.rs`), when the port speaks TLS: one completion
    /// channel per shard, each woken through its shard's waker.
    pub(crate) struct HandshakePool {
        threads: usize,
        shards: usize,
        on: bool,
        mailboxes: Vec<Mailbox<Stepped>>,
        receivers: Vec<Receiver<Completion<Stepped>>>,
    }

    impl HandshakePool {
        pub(crate) fn new(config: &Config, on: bool) -> HandshakePool {
            HandshakePool {
                threads: config.tls_threads,
                shards: config.io_threads,
                on,
                mailboxes: Vec::new(),
                receivers: Vec::new(),
            }
        }

        pub(crate) fn add_shard(&mut self, waker: &Arc<Waker>) {
            if self.on {
                let (done_tx, done_rx) = unbounded();
                self.mailboxes.push(Mailbox { completions: done_tx, waker: waker.clone() });
                self.receivers.push(done_rx);
            }
        }

        /// Starts the threads (at a lower priority); returns each shard's share (none
        /// without TLS).
        pub(crate) fn start(self) -> std::io::Result<Vec<Option<Handshakes>>> {
            if !self.on {
                return Ok((0..self.shards).map(|_| None).collect());
            }
            let slots = handshakes::slots_per_shard(self.threads, self.shards);
            let capacity = handshakes::queue_capacity(self.threads, self.shards);
            let (jobs, queue) = workers::job_queue(capacity);
            let (threads, mailboxes) = (self.threads, self.mailboxes);
            workers::start_with("tls", threads, queue, mailboxes, handshakes::lower_priority)?;
            let shares = self.receivers.into_iter().enumerate();
            Ok(shares
                .map(|(id, done)| Some(Handshakes::new(id, jobs.clone(), done, slots)))
                .collect())
        }
    }
}

#[cfg(not(feature = "tls"))]
mod stand_in {
    use std::fmt;
    use std::path::Path;
    use std::sync::Arc;

    use mio::Waker;

    use crate::config::Config;

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

    /// No handshake pool without TLS.
    pub(crate) struct HandshakePool;

    impl HandshakePool {
        pub(crate) fn new(_config: &Config, _on: bool) -> HandshakePool {
            HandshakePool
        }

        pub(crate) fn add_shard(&mut self, _waker: &Arc<Waker>) {}
    }
}
