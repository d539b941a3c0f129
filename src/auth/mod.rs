//! Authentication, the whole flow in one place: API keys become HMAC-signed tokens, and
//! tokens open WebSocket sessions until they expire or are revoked.
//!
//! - [`flow`]: the entry points the server calls ([`Auth::exchange`],
//!   [`Auth::authorize_upgrade`], [`Auth::revoke_own`], [`Auth::prepare`]).
//! - [`request`]: what the auth routes read from a request (body, bearer, query, cookie).
//! - [`token`]: signing and checking tokens (constant time), over a [`TokenStore`].
//! - [`key_store`] and [`token_store`]: the two seams a cluster implements a second time.
//!   One node: SQLite keys ([`key_store::SqliteKeyStore`] over [`keys`]) and an in-memory
//!   token table ([`token_store::MemoryTokenStore`]).
//! - [`ids`]: the names every other file here shares (API key and token ids, the actor a
//!   token speaks for) and their clock; it depends on none of them.
//! - [`db_files`]: the database's folder 0700 and files 0600, whatever the umask.
//! - [`revocation`]: the thread that follows revocations made by other processes.
//! - [`ratelimit`]: the limits per client address (failed logins, lookups in flight),
//!   built so that a valid key is never refused for what others on its address did.

pub mod db_files;
pub mod flow;
pub mod ids;
pub mod key_store;
pub mod keys;
pub mod ratelimit;
pub mod request;
pub mod revocation;
pub mod token;
pub mod token_store;

pub use flow::{Auth, Grant};
pub use key_store::KeyStore;
pub use token_store::TokenStore;
