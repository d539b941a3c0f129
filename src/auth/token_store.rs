//! The token store seam: which issued tokens are live, and for whom. [`super::token::Tokens`]
//! signs and checks tokens; a store only remembers them by their random part, as the
//! rows ([`TokenEntry`]) defined here, and fails with the [`TokenError`]s of both.
//!
//! One node keeps them in [`MemoryTokenStore`]; a cluster implements [`TokenStore`] a
//! second time on a shared engine. A store whose lookups may wait on the network says so
//! with [`TokenStore::lookups_block`], and the server then verifies on a worker thread
//! instead of the event loop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use super::ids::{Actor, ApiKeyId, TokenId};

/// One row of the token table.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub actor: Arc<Actor>,
    pub policies: &'static [&'static str],
    pub api_key_id: ApiKeyId,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The requester's address (seed: `meta = {ip = req:remote_addr()}`).
    pub ip: String,
}

/// Why a token operation failed: the token itself (the first four), or its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Unknown,
    Expired,
    /// The store holds its capacity of live tokens.
    StoreFull,
    /// The store cannot be reached (a cluster store whose server is down).
    StoreUnavailable,
    /// The OS could not give randomness for a new token.
    NoRandomness,
}

/// Where issued tokens live until they expire or are revoked.
pub trait TokenStore: Send + Sync {
    /// Remembers a new token. If its API key already holds the store's bound of live
    /// tokens per key, the key's oldest is forgotten first; `StoreFull` when the store
    /// holds its capacity of live tokens all the same.
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
///
/// Two bounds, so one API key cannot lock everyone else out:
/// - `per_key`: a key holding that many live tokens gets a new one by retiring its own
///   oldest (a load test that takes a token per connection keeps working: sessions are
///   verified at upgrade only, so a retired token closes nothing);
/// - `capacity`: the whole table. A key at its bound never grows the table, so with
///   `per_key` below `capacity` the table fills only when several keys each hold many
///   tokens; then a key below its bound gets `StoreFull` (503). The server's
///   configuration keeps `per_key` at most half of `capacity` (by default a tenth, at
///   most 10,000: [`crate::config::derived_tokens_per_key`]), so no single key can
///   fill the table.
pub struct MemoryTokenStore {
    capacity: usize,
    per_key: usize,
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<TokenId, TokenEntry>,
    /// Each key's tokens in issue order. Invariant: `live` counts the key's entries in
    /// `entries`, and each of them is in `order`; a key with none has no row.
    by_key: HashMap<ApiKeyId, KeyTokens>,
}

/// One key's tokens, oldest first. `order` may still hold ids already gone from the
/// table (revoked one by one, expired): they are skipped when they reach the front, and
/// compacted away when they outnumber the live ones, so every operation stays O(1)
/// amortized and `order` stays O(live).
#[derive(Default)]
struct KeyTokens {
    live: usize,
    order: VecDeque<TokenId>,
}

/// Stale ids a key's `order` may carry beyond its live count before it is compacted.
const STALE_SLACK: usize = 32;

impl MemoryTokenStore {
    /// At most `capacity` live tokens in all, and `per_key` for any one API key.
    pub fn new(capacity: usize, per_key: usize) -> MemoryTokenStore {
        MemoryTokenStore { capacity, per_key: per_key.max(1), table: RwLock::new(Table::default()) }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    fn add(&mut self, id: TokenId, entry: TokenEntry) {
        let key = entry.api_key_id;
        if let Some(old) = self.entries.insert(id, entry) {
            // The same id twice (never with random ids; tests do it): the old entry is gone.
            self.forgotten(old.api_key_id);
        }
        let tokens = self.by_key.entry(key).or_default();
        tokens.live += 1;
        tokens.order.push_back(id);
    }

    /// Removes `key`'s oldest live token; whether it had one.
    fn retire_oldest(&mut self, key: ApiKeyId) -> bool {
        let Table { entries, by_key } = self;
        let Some(tokens) = by_key.get_mut(&key) else { return false };
        while let Some(id) = tokens.order.pop_front() {
            if entries.get(&id).is_some_and(|e| e.api_key_id == key) {
                entries.remove(&id);
                tokens.live -= 1;
                if tokens.live == 0 {
                    by_key.remove(&key);
                }
                return true;
            }
        }
        false
    }

    fn live_of(&self, key: ApiKeyId) -> usize {
        self.by_key.get(&key).map_or(0, |t| t.live)
    }

    /// Accounts for one entry of `key` removed from `entries`.
    fn forgotten(&mut self, key: ApiKeyId) {
        let Some(tokens) = self.by_key.get_mut(&key) else { return };
        tokens.live -= 1;
        if tokens.live == 0 {
            self.by_key.remove(&key);
        } else if tokens.order.len() > 2 * tokens.live + STALE_SLACK {
            let entries = &self.entries;
            tokens.order.retain(|id| entries.get(id).is_some_and(|e| e.api_key_id == key));
        }
    }

    fn purge(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        let Table { entries, by_key } = self;
        entries.retain(|_, e| {
            let live = e.expires_at > now;
            if !live && let Some(tokens) = by_key.get_mut(&e.api_key_id) {
                tokens.live -= 1;
            }
            live
        });
        by_key.retain(|key, tokens| {
            if tokens.live > 0 {
                tokens.order.retain(|id| entries.get(id).is_some_and(|e| e.api_key_id == *key));
            }
            tokens.live > 0
        });
        before - entries.len()
    }
}

impl TokenStore for MemoryTokenStore {
    fn insert(&self, id: TokenId, entry: TokenEntry, now: u64) -> Result<(), TokenError> {
        let mut table = self.write();
        let key = entry.api_key_id;
        // A key at its bound makes room among its own tokens, so it never grows the table.
        while table.live_of(key) >= self.per_key && table.retire_oldest(key) {}
        if table.entries.len() >= self.capacity {
            table.purge(now);
            if table.entries.len() >= self.capacity {
                return Err(TokenError::StoreFull);
            }
        }
        table.add(id, entry);
        Ok(())
    }

    fn get(&self, id: &TokenId) -> Result<Option<TokenEntry>, TokenError> {
        Ok(self.table.read().unwrap_or_else(PoisonError::into_inner).entries.get(id).cloned())
    }

    fn remove(&self, id: &TokenId) -> Result<bool, TokenError> {
        let mut table = self.write();
        let Some(entry) = table.entries.remove(id) else { return Ok(false) };
        table.forgotten(entry.api_key_id);
        Ok(true)
    }

    fn remove_api_key(&self, api_key_id: ApiKeyId) -> Result<usize, TokenError> {
        let mut table = self.write();
        let Some(tokens) = table.by_key.remove(&api_key_id) else { return Ok(0) };
        let mut removed = 0;
        for id in tokens.order {
            if table.entries.get(&id).is_some_and(|e| e.api_key_id == api_key_id) {
                table.entries.remove(&id);
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn purge_expired(&self, now: u64) -> usize {
        self.write().purge(now)
    }

    fn len(&self) -> usize {
        self.table.read().unwrap_or_else(PoisonError::into_inner).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const K1: ApiKeyId = ApiKeyId(1);
    const K2: ApiKeyId = ApiKeyId(2);
    const K3: ApiKeyId = ApiKeyId(3);

    fn id(n: u32) -> TokenId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        TokenId(bytes)
    }

    fn entry(key: ApiKeyId, expires_at: u64) -> TokenEntry {
        TokenEntry {
            actor: Arc::new(Actor {
                id: "user:u".into(),
                user_id: "u".into(),
                role: "user".into(),
            }),
            policies: &[],
            api_key_id: key,
            issued_at: 0,
            expires_at,
            ip: String::new(),
        }
    }

    fn live(s: &MemoryTokenStore, n: u32) -> bool {
        s.get(&id(n)).unwrap().is_some()
    }

    /// The bookkeeping behind the per-key bound agrees with the table.
    fn assert_consistent(s: &MemoryTokenStore) {
        let t = s.table.read().unwrap();
        let mut counted: HashMap<ApiKeyId, usize> = HashMap::new();
        for (id, e) in &t.entries {
            *counted.entry(e.api_key_id).or_default() += 1;
            assert!(
                t.by_key[&e.api_key_id].order.contains(id),
                "a live token missing from its key's order"
            );
        }
        assert_eq!(counted.len(), t.by_key.len(), "a key without tokens keeps a row");
        for (key, tokens) in &t.by_key {
            assert_eq!(tokens.live, counted[key]);
            assert!(tokens.order.len() <= 2 * tokens.live + STALE_SLACK + 1, "order grew stale");
        }
    }

    #[test]
    fn a_key_at_its_bound_retires_its_own_oldest_token() {
        let s = MemoryTokenStore::new(100, 3);
        for n in 0..5 {
            s.insert(id(n), entry(K1, 60), 0).unwrap();
        }
        assert!(!live(&s, 0) && !live(&s, 1), "the two oldest are retired");
        assert!(live(&s, 2) && live(&s, 3) && live(&s, 4));
        assert_eq!(s.len(), 3);
        assert_consistent(&s);
    }

    #[test]
    fn one_key_cannot_fill_the_table_and_a_full_table_needs_several_keys() {
        let s = MemoryTokenStore::new(5, 2);
        for n in 0..100 {
            s.insert(id(n), entry(K1, 60), 0).expect("a key at its bound always gets a token");
        }
        assert_eq!(s.len(), 2);
        s.insert(id(100), entry(K2, 60), 0).unwrap();
        s.insert(id(101), entry(K2, 60), 0).unwrap();
        s.insert(id(102), entry(K3, 60), 0).unwrap();
        // Five live tokens of three keys: a key below its bound is refused...
        assert_eq!(s.insert(id(103), entry(K3, 60), 0), Err(TokenError::StoreFull));
        assert_eq!(s.insert(id(104), entry(ApiKeyId(4), 60), 0), Err(TokenError::StoreFull));
        // ...and a key at its bound still replaces its own.
        s.insert(id(105), entry(K1, 60), 0).unwrap();
        assert!(!live(&s, 98) && live(&s, 99) && live(&s, 105));
        assert_eq!(s.len(), 5);
        assert_consistent(&s);
    }

    #[test]
    fn a_full_table_with_expired_tokens_makes_room() {
        let s = MemoryTokenStore::new(2, 2);
        s.insert(id(0), entry(K1, 10), 0).unwrap();
        s.insert(id(1), entry(K2, 60), 0).unwrap();
        s.insert(id(2), entry(K3, 60), 10).expect("the expired token is purged");
        assert!(!live(&s, 0));
        assert_consistent(&s);
    }

    #[test]
    fn revoked_and_expired_tokens_do_not_count_against_the_bound() {
        let s = MemoryTokenStore::new(100, 3);
        for n in 0..3 {
            s.insert(id(n), entry(K1, 60), 0).unwrap();
        }
        assert_eq!(s.remove(&id(1)), Ok(true));
        s.insert(id(3), entry(K1, 60), 0).unwrap();
        assert!(live(&s, 0), "two live tokens left room for a third: nothing retired");
        s.insert(id(4), entry(K1, 60), 0).unwrap();
        assert!(!live(&s, 0) && live(&s, 2) && live(&s, 3) && live(&s, 4));

        // Expired ones, once purged, free their places too.
        let s = MemoryTokenStore::new(100, 2);
        s.insert(id(10), entry(K1, 5), 0).unwrap();
        s.insert(id(11), entry(K1, 60), 0).unwrap();
        assert_eq!(s.purge_expired(5), 1);
        s.insert(id(12), entry(K1, 60), 6).unwrap();
        assert!(live(&s, 11) && live(&s, 12));
        assert_consistent(&s);
    }

    #[test]
    fn revoking_a_key_ends_its_tokens_only() {
        let s = MemoryTokenStore::new(100, 10);
        for n in 0..4 {
            s.insert(id(n), entry(K1, 60), 0).unwrap();
        }
        s.insert(id(9), entry(K2, 60), 0).unwrap();
        s.remove(&id(2)).unwrap();
        assert_eq!(s.remove_api_key(K1), Ok(3), "the one removed before is not counted");
        assert_eq!(s.remove_api_key(K1), Ok(0));
        assert!(live(&s, 9));
        assert_eq!(s.len(), 1);
        // A fresh start for the key: the full bound again.
        for n in 20..30 {
            s.insert(id(n), entry(K1, 60), 0).unwrap();
        }
        assert!((20..30).all(|n| live(&s, n)));
        assert_consistent(&s);
    }

    #[test]
    fn tokens_removed_one_by_one_leave_no_stale_pile() {
        let s = MemoryTokenStore::new(10_000, 5_000);
        s.insert(id(0), entry(K1, 60), 0).unwrap();
        for n in 1..5_000 {
            s.insert(id(n), entry(K1, 60), 0).unwrap();
            s.remove(&id(n)).unwrap();
            assert_consistent_len(&s);
        }
        assert!(live(&s, 0));
        assert_consistent(&s);
    }

    fn assert_consistent_len(s: &MemoryTokenStore) {
        let t = s.table.read().unwrap();
        let tokens = &t.by_key[&K1];
        assert!(tokens.order.len() <= 2 * tokens.live + STALE_SLACK + 1);
    }

    #[test]
    fn the_same_id_twice_is_one_token() {
        let s = MemoryTokenStore::new(10, 10);
        s.insert(id(1), entry(K1, 60), 0).unwrap();
        s.insert(id(1), entry(K2, 60), 0).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&id(1)).unwrap().unwrap().api_key_id, K2);
        assert_eq!(s.remove_api_key(K1), Ok(0));
        assert_consistent(&s);
    }
}
