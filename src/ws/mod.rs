//! RFC 6455 WebSocket protocol, pure code over byte slices: frame headers and close
//! codes ([`frame`]), the incremental client-frame decoder ([`codec`]), and the opening
//! handshake ([`handshake`]).

pub mod codec;
pub mod deflate;
pub mod frame;
pub mod handshake;
