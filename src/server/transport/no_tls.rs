//! Without the `tls` feature: a stand-in for the TLS stream that has no values. The
//! `Tls` variant of `Transport` holds one unboxed, so it cannot be built and takes no
//! room: the transport is its socket, and every arm that handles TLS compiles to
//! nothing.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::server::Shared;

/// Stands in for the TLS stream; it has no values.
pub(crate) enum TlsStream {}

/// Unboxed: a type with no values takes no room.
pub(crate) type TlsBox = TlsStream;

/// Never called: without TLS no port speaks it.
pub(super) fn accept(
    socket: TcpStream,
    _shared: &Shared,
    _peer: SocketAddr,
) -> Result<TlsBox, TcpStream> {
    Err(socket)
}

impl TlsStream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match *self {}
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        match *self {}
    }

    pub(crate) fn send_ciphertext(&mut self) -> io::Result<bool> {
        match *self {}
    }

    pub(crate) fn start_session(&mut self) {
        match *self {}
    }

    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn key_nearly_used_up(&self) -> bool {
        match *self {}
    }
}

impl Read for TlsStream {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }
}

impl Write for TlsStream {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        match *self {}
    }

    fn flush(&mut self) -> io::Result<()> {
        match *self {}
    }
}
