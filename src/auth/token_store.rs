//! The token store seam: which issued tokens are live, and for whom. [`super::token::Tokens`]
//! signs and checks tokens; a store only remembers them by their random part.
//!
//! One node keeps them in [`MemoryTokenStore`]; a cluster implements [`TokenStore`] a
//! second time on a shared engine. A store whose lookups may wait on the network says so
//! with [`TokenStore::lookups_block`], and the server then verifies on a worker thread
//! instead of the event loop.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use super::keys::ApiKeyId;
use super::token::{TokenEntry, TokenError, TokenId};

/// Where issued tokens live until they expire or are revoked.
pub trait TokenStore: Send + Sync {
    /// Remembers a new token. `StoreFull` when the store holds its capacity of live tokens.
    fn insert(&self, id: TokenId, entry: TokenEntry, now: u64) -> Result<(), TokenError>;
    /// The entry of a token, if it is still stored (expired entries may still be returned).
    fn get(&self, id: &TokenId) -> Result<Option<TokenEntry>, TokenError>;
    /// Forgets one token; whether it was there.
    fn remove(&self, id: &TokenId) -> Result<bool, TokenError>;
    /// Forgets every token of an API key; how many there were.
    fn remove_api_key(&self, api_key_id: ApiKeyId) -> Result<usize, TokenError>;
    /// Drops expired entries (a store with native expiry does nothing); how many.
    fn purge_expired(&self, now: u64) -> usize;
    /// Entries held now (a best-effort count for logs and metrics).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether lookups may block on I/O, so they must not run on an event loop.
    fn lookups_block(&self) -> bool {
        false
    }
}

/// The single-node store: a hash map behind a read-write lock. Lookups are a read lock
/// and a hash probe, cheap enough for the event loop.
pub struct MemoryTokenStore {
    capacity: usize,
    table: RwLock<HashMap<TokenId, TokenEntry>>,
}

impl MemoryTokenStore {
    pub fn new(capacity: usize) -> MemoryTokenStore {
        MemoryTokenStore { capacity, table: RwLock::new(HashMap::new()) }
    }
}

impl TokenStore for MemoryTokenStore {
    fn insert(&self, id: TokenId, entry: TokenEntry, now: u64) -> Result<(), TokenError> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= self.capacity {
            table.retain(|_, e| e.expires_at > now);
            if table.len() >= self.capacity {
                return Err(TokenError::StoreFull);
            }
        }
        table.insert(id, entry);
        Ok(())
    }

    fn get(&self, id: &TokenId) -> Result<Option<TokenEntry>, TokenError> {
        Ok(self.table.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned())
    }

    fn remove(&self, id: &TokenId) -> Result<bool, TokenError> {
        Ok(self.table.write().unwrap_or_else(PoisonError::into_inner).remove(id).is_some())
    }

    fn remove_api_key(&self, api_key_id: ApiKeyId) -> Result<usize, TokenError> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let before = table.len();
        table.retain(|_, e| e.api_key_id != api_key_id);
        Ok(before - table.len())
    }

    fn purge_expired(&self, now: u64) -> usize {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let before = table.len();
        table.retain(|_, e| e.expires_at > now);
        before - table.len()
    }

    fn len(&self) -> usize {
        self.table.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}
