//! The mio event loop (to be written).

pub mod conn;
pub mod fanout;
