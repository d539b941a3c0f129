//! The ticker thread (to be written).

pub mod prices;
