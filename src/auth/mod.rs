//! Authentication: HMAC-signed tokens in an in-memory table ([`token`]) and the SQLite
//! API-key store ([`keys`]), which only worker threads and the CLI touch.

pub mod keys;
pub mod ratelimit;
pub mod token;
