//! TLS apart from sockets: the server's own record layer for upgraded sessions, and the
//! certificate that every handshake presents. Nothing here reads or writes a socket:
//! the TLS stream over a connection's TCP socket, and the pool that runs handshakes off
//! the event loops, are the server's (`server/transport/tls_stream.rs`,
//! `server/handshakes.rs`).
//!
//! - [`records`]: the record layer (seal, open, the framing of what rustls is fed),
//!   pure bytes in and bytes out; `pub` for the benches and the fuzz target.
//! - `certs`: [`Tls::load`] reads and checks the certificate and key and builds the
//!   rustls server configuration, the one entry point start-up calls; [`Tls::reload`]
//!   swaps the certificate on SIGHUP.

mod certs;
pub mod records;

pub use certs::{Tls, TlsError};
