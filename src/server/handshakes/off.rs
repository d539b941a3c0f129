//! Without the `tls` feature: no handshake pool. [`Pool`] starts nothing and gives no
//! shard a share; [`Handshakes`] has no values, so a shard's `Option<Handshakes>` is
//! always `None` and what the shard would do with a share compiles to nothing.

use std::io;
use std::sync::Arc;

use mio::Waker;
use slab::Slab;

use super::Offer;
use crate::config::Config;
use crate::server::conn::Conn;
use crate::server::transport::Transport;
use crate::workers::ConnKey;

/// Stands in for the pool's start-up.
pub(crate) struct Pool;

impl Pool {
    pub(crate) fn new(_config: &Config) -> Pool {
        Pool
    }

    pub(crate) fn add_shard(&mut self, _waker: &Arc<Waker>) {}

    /// No shares: every shard gets `None`.
    pub(crate) fn start(self) -> io::Result<Vec<Option<Handshakes>>> {
        Ok(Vec::new())
    }
}

/// Stands in for a shard's share of the pool; it has no values.
pub(crate) enum Handshakes {}

impl Handshakes {
    pub(crate) fn offer(&mut self, _key: ConnKey, _serial: u64, _socket: &mut Transport) -> Offer {
        match *self {}
    }

    pub(crate) fn next_finished(
        &mut self,
        _conns: &mut Slab<Conn>,
    ) -> Option<(ConnKey, io::Result<()>)> {
        match *self {}
    }

    pub(crate) fn start_parked(&mut self, _conns: &mut Slab<Conn>, _dead: &mut Vec<ConnKey>) {
        match *self {}
    }

    pub(crate) fn anyone_parked(&self) -> bool {
        match *self {}
    }
}
