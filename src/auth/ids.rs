//! The names the auth modules share: which API key, which token, who a token speaks for,
//! and the clock (Unix seconds) that keys and tokens are stamped with. Every other auth
//! file depends on this one; it depends on none of them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// An API key's row id. A newtype so it cannot be confused with other integers on the
/// channels between the watcher, the workers and the event loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(pub i64);

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Length of a token's random part (its id), in bytes.
pub const TOKEN_ID_BYTES: usize = 32;

/// The random part of a token: the token table's key. `Debug` shows no bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(pub(crate) [u8; TOKEN_ID_BYTES]);

impl TokenId {
    pub fn as_bytes(&self) -> &[u8; TOKEN_ID_BYTES] {
        &self.0
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenId(..)")
    }
}

/// Who a token speaks for (seed: `security.new_actor("user:" .. user_id, {role, user_id})`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub user_id: String,
    pub role: String,
}

/// Seconds since the Unix epoch: the time unit of token expiry and of the key store.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
