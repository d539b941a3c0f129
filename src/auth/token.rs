//! HMAC-signed tokens (seed: `security.token_store`, `token_length: 32`,
//! `default_expiration: 1h`), over a table of the issued ones ([`super::token_store`]).
//!
//! A token is `base64url(32 random bytes) "." base64url(HMAC-SHA256(key, first part))`,
//! padded as the seed's runtime does: 44 + 1 + 44 characters. Verification checks the
//! shape, then the signature in constant time, and only then looks the random part up in
//! the table, so forged tokens never reach the table's lock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::ids::{Actor, ApiKeyId, TOKEN_ID_BYTES, TokenId};
// `Tokens` works over a store; one node's is the in-memory one.
pub use super::token_store::{MemoryTokenStore, TokenStore};
use super::token_store::{TokenEntry, TokenError};

type HmacSha256 = Hmac<Sha256>;

/// Length of the random part (the token's id) and of the signature (HMAC-SHA256), in
/// bytes: both are 32.
const PART_BYTES: usize = TOKEN_ID_BYTES;
/// Length of one padded base64url part: 4 * ceil(32 / 3).
const PART_CHARS: usize = 44;
/// Shortest secret accepted from `TICKER_TOKEN_KEY`.
const MIN_SECRET: usize = 16;

/// The policy attached to every issued token (seed: `user_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub name: &'static str,
    pub actions: &'static str,
    pub resources: &'static str,
    pub effect: &'static str,
    pub groups: &'static [&'static str],
}

pub const USER_POLICY_NAME: &str = "user_policy";

pub const USER_POLICY: Policy = Policy {
    name: USER_POLICY_NAME,
    actions: "*",
    resources: "*",
    effect: "allow",
    groups: &["user"],
};

/// The HMAC key. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKeyError {
    TooShort { min: usize },
    NoRandomness(String),
}

impl fmt::Display for TokenKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKeyError::TooShort { min } => write!(f, "the key must be at least {min} bytes"),
            TokenKeyError::NoRandomness(e) => write!(f, "no OS randomness: {e}"),
        }
    }
}

impl TokenKey {
    pub fn from_secret(secret: &str) -> Result<TokenKey, TokenKeyError> {
        if secret.len() < MIN_SECRET {
            return Err(TokenKeyError::TooShort { min: MIN_SECRET });
        }
        Ok(TokenKey(secret.as_bytes().to_vec()))
    }

    pub fn random() -> Result<TokenKey, TokenKeyError> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| TokenKeyError::NoRandomness(e.to_string()))?;
        Ok(TokenKey(key))
    }

    fn sign(&self, message: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(message);
        mac
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub id: TokenId,
    pub actor: Arc<Actor>,
    pub api_key_id: ApiKeyId,
    pub expires_at: u64,
}

/// Checks the shape only: two padded base64url parts of 32 bytes each around a dot.
/// Returns the random part and the signature. Never panics, whatever the input.
pub fn parse_token(s: &str) -> Result<(TokenId, [u8; PART_BYTES]), TokenError> {
    let (id, sig) = s.split_once('.').ok_or(TokenError::Malformed)?;
    if id.len() != PART_CHARS || sig.len() != PART_CHARS {
        return Err(TokenError::Malformed);
    }
    Ok((TokenId(decode_part(id)?), decode_part(sig)?))
}

fn decode_part(part: &str) -> Result<[u8; PART_BYTES], TokenError> {
    let mut out = [0u8; PART_BYTES + 2];
    match URL_SAFE.decode_slice(part, &mut out) {
        Ok(PART_BYTES) => {
            let mut bytes = [0u8; PART_BYTES];
            bytes.copy_from_slice(&out[..PART_BYTES]);
            Ok(bytes)
        }
        _ => Err(TokenError::Malformed),
    }
}

/// Tokens: the HMAC key and TTL that make and check them, over a [`TokenStore`] that
/// remembers which ones were issued (in memory for one node; the cluster's is shared).
pub struct Tokens {
    key: TokenKey,
    ttl: Duration,
    store: Box<dyn TokenStore>,
}

impl Tokens {
    pub fn new(key: TokenKey, ttl: Duration, store: Box<dyn TokenStore>) -> Tokens {
        Tokens { key, ttl, store }
    }

    /// Tokens kept in this process, at most `capacity` live at once, with no bound per
    /// API key (the server sets one: [`MemoryTokenStore::new`]).
    pub fn in_memory(key: TokenKey, ttl: Duration, capacity: usize) -> Tokens {
        Tokens::new(key, ttl, Box::new(MemoryTokenStore::new(capacity, usize::MAX)))
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Live tokens in the store (expired ones may be counted until purged).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a lookup may wait on the network: then it must run on a worker.
    pub fn lookups_block(&self) -> bool {
        self.store.lookups_block()
    }

    /// Issues a token for `actor`, valid for the TTL from `now` (Unix seconds).
    pub fn issue(
        &self,
        actor: Actor,
        api_key_id: ApiKeyId,
        ip: String,
        now: u64,
    ) -> Result<IssuedToken, TokenError> {
        let mut random = [0u8; PART_BYTES];
        getrandom::fill(&mut random).map_err(|_| TokenError::NoRandomness)?;
        let id_part = URL_SAFE.encode(random);
        let signature = self.key.sign(id_part.as_bytes()).finalize().into_bytes();
        let token = format!("{id_part}.{}", URL_SAFE.encode(signature));

        let ttl = self.ttl.as_secs();
        let entry = TokenEntry {
            actor: Arc::new(actor),
            policies: &[USER_POLICY_NAME],
            api_key_id,
            issued_at: now,
            expires_at: now + ttl,
            ip,
        };
        self.store.insert(TokenId(random), entry, now)?;
        Ok(IssuedToken { token, expires_in: ttl })
    }

    /// Shape, then signature (constant time), then store lookup, then expiry.
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        let id = self.check_signature(token)?;
        let entry = self.store.get(&id)?.ok_or(TokenError::Unknown)?;
        if now >= entry.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(VerifiedToken {
            id,
            actor: entry.actor,
            api_key_id: entry.api_key_id,
            expires_at: entry.expires_at,
        })
    }

    fn check_signature(&self, token: &str) -> Result<TokenId, TokenError> {
        let (id, signature) = parse_token(token)?;
        let id_part = token.split_once('.').map(|(p, _)| p).ok_or(TokenError::Malformed)?;
        // verify_slice compares in constant time.
        self.key
            .sign(id_part.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(id)
    }

    /// Ends one token; `false` if it was not a valid live token.
    pub fn revoke_token(&self, token: &str) -> Result<bool, TokenError> {
        let Ok(id) = self.check_signature(token) else { return Ok(false) };
        self.store.remove(&id)
    }

    /// Ends a token known by its id (a revocation announced by another node).
    pub fn forget(&self, id: &TokenId) -> Result<bool, TokenError> {
        self.store.remove(id)
    }

    /// Ends every token issued for an API key; returns how many.
    pub fn revoke_api_key(&self, api_key_id: ApiKeyId) -> Result<usize, TokenError> {
        self.store.remove_api_key(api_key_id)
    }

    /// Drops expired entries; returns how many.
    pub fn purge_expired(&self, now: u64) -> usize {
        self.store.purge_expired(now)
    }

    /// A log correlation id for a token: 8 hex characters of its SHA-256, never the token.
    pub fn fingerprint(token: &str) -> String {
        let digest = Sha256::digest(token.as_bytes());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: usize) -> Tokens {
        Tokens::in_memory(
            TokenKey::from_secret("0123456789abcdef-test").unwrap(),
            Duration::from_secs(3600),
            capacity,
        )
    }

    const K1: ApiKeyId = ApiKeyId(1);
    const K2: ApiKeyId = ApiKeyId(2);

    fn actor() -> Actor {
        Actor { id: "user:demo".into(), user_id: "demo".into(), role: "user".into() }
    }

    #[test]
    fn an_issued_token_verifies_and_has_the_documented_shape() {
        let s = store(10);
        let t = s.issue(actor(), K1, "127.0.0.1".into(), 1000).unwrap();
        assert_eq!(t.token.len(), 89);
        assert_eq!(t.expires_in, 3600);
        let v = s.verify(&t.token, 1001).unwrap();
        assert_eq!(v.actor.id, "user:demo");
        assert_eq!((v.api_key_id, v.expires_at), (K1, 4600));
    }

    #[test]
    fn tampering_with_either_part_breaks_the_signature() {
        let s = store(10);
        let t = s.issue(actor(), K1, String::new(), 0).unwrap().token;
        for i in [0, 10, 50, 80] {
            let mut b = t.clone().into_bytes();
            if b[i] == b'.' || b[i] == b'=' {
                continue;
            }
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(b).unwrap();
            assert!(
                matches!(
                    s.verify(&forged, 1),
                    Err(TokenError::BadSignature | TokenError::Malformed)
                ),
                "{i}"
            );
        }
    }

    #[test]
    fn a_well_signed_token_from_another_table_is_unknown() {
        let (a, b) = (store(10), store(10));
        let t = a.issue(actor(), K1, String::new(), 0).unwrap().token;
        assert_eq!(b.verify(&t, 1).unwrap_err(), TokenError::Unknown);
        let other = Tokens::in_memory(
            TokenKey::from_secret("another-secret-key!!").unwrap(),
            Duration::from_secs(60),
            10,
        );
        assert_eq!(other.verify(&t, 1).unwrap_err(), TokenError::BadSignature);
    }

    #[test]
    fn tokens_expire_and_a_full_table_recovers_after_expiry() {
        let s = store(2);
        let t = s.issue(actor(), K1, String::new(), 0).unwrap().token;
        s.issue(actor(), K1, String::new(), 0).unwrap();
        assert_eq!(s.issue(actor(), K1, String::new(), 10).unwrap_err(), TokenError::StoreFull);
        assert_eq!(s.verify(&t, 3600).unwrap_err(), TokenError::Expired);
        assert!(s.issue(actor(), K1, String::new(), 3600).is_ok(), "expired entries make room");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn revoking_ends_tokens() {
        let s = store(10);
        let a = s.issue(actor(), K1, String::new(), 0).unwrap().token;
        let b = s.issue(actor(), K2, String::new(), 0).unwrap().token;
        assert_eq!(s.revoke_api_key(K1), Ok(1));
        assert_eq!(s.verify(&a, 1).unwrap_err(), TokenError::Unknown);
        assert_eq!(s.revoke_token(&b), Ok(true));
        assert_eq!(s.revoke_token(&b), Ok(false));
        assert_eq!(s.purge_expired(0), 0);
    }

    #[test]
    fn malformed_shapes_never_panic() {
        let s = store(1);
        let good = s.issue(actor(), K1, String::new(), 0).unwrap().token;
        let cases = [
            String::new(),
            ".".into(),
            "a.b".into(),
            good.replace('.', ""),
            format!("{good}x"),
            good.replacen('=', "!", 1),
            format!("{}.{}", "é".repeat(22), "A".repeat(44)),
            "A".repeat(89),
        ];
        for c in cases {
            assert_eq!(parse_token(&c).map(|_| ()), Err(TokenError::Malformed), "{c:?}");
        }
        assert!(parse_token(&good).is_ok());
        assert_eq!(Tokens::fingerprint(&good).len(), 8);
        assert_eq!(
            format!("{:?}", TokenKey::from_secret("0123456789abcdef").unwrap()),
            "TokenKey(..)"
        );
    }
}
