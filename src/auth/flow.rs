//! The auth flow behind four entry points, so the event loop and the workers only ask:
//!
//! | entry point                 | who calls it           | what it does                                  |
//! |-----------------------------|------------------------|-----------------------------------------------|
//! | [`Auth::admit`]             | the loop               | a lookup slot for the client's address, or 429 |
//! | [`Auth::exchange`]          | a worker               | key lookup, sign, the 200 body; 401 or 429    |
//! | [`Auth::authorize_upgrade`] | the loop (or a worker) | token → verified token, or 401, with metrics  |
//! | [`Auth::revoke_own`]        | the loop (or a worker) | `POST /auth/revoke`: end the bearer's token   |
//! | [`Auth::prepare`]           | start-up               | create/migrate the key store, the demo key    |
//!
//! A token exchange takes two steps: the loop admits it ([`Auth::admit`], at most
//! `--login-concurrency` per address at once) before it queues it for a worker, and the
//! worker looks the key up and answers ([`Auth::exchange`]). The key is always looked
//! up, so a valid key always gets its token; only a wrong key from an address beyond
//! its failure limit gets 429 instead of 401 ([`super::ratelimit`] has the reasoning).
//!
//! Revocations made by other processes arrive through [`super::revocation`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::ids::{Actor, unix_now};
use super::key_store::KeyStore;
use super::keys::{DbError, DbErrorKind, DemoKey};
use super::ratelimit::{FailureLimiter, LookupGate, LookupPermit};
use super::token::{Tokens, VerifiedToken};
use super::token_store::TokenError;
use crate::error::HttpError;
use crate::http::response::Response;
use crate::metrics::{AuthOutcome, Metrics, WsAuthOutcome};

/// The token exchange's answer: the 200 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token: String,
    pub user_id: String,
    pub role: String,
    pub expires_in: u64,
}

impl Grant {
    pub fn to_response(&self) -> Response {
        Response::json(
            200,
            &serde_json::json!({
                "token": self.token,
                "user_id": self.user_id,
                "role": self.role,
                "expires_in": self.expires_in,
            }),
        )
    }
}

/// Everything the auth flow needs: the two stores, the login limits, the metrics.
pub struct Auth {
    pub tokens: Tokens,
    keys: Box<dyn KeyStore>,
    limiter: Box<dyn FailureLimiter>,
    lookups: Arc<LookupGate>,
    metrics: Arc<Metrics>,
}

impl Auth {
    /// `lookups_per_address`: token exchanges one address may have in flight at once
    /// (`--login-concurrency`; 0: no bound).
    pub fn new(
        tokens: Tokens,
        keys: Box<dyn KeyStore>,
        limiter: Box<dyn FailureLimiter>,
        lookups_per_address: usize,
        metrics: Arc<Metrics>,
    ) -> Auth {
        let lookups = LookupGate::new(lookups_per_address, metrics.clone());
        Auth { tokens, keys, limiter, lookups, metrics }
    }

    pub fn keys(&self) -> &dyn KeyStore {
        self.keys.as_ref()
    }

    /// Creates or upgrades the key store and logs the demo key, as the seed's migrate.lua
    /// does. Returns where the revocation feed ends, so the watcher misses no later one.
    pub fn prepare(&self) -> Result<(DemoKey, i64), DbError> {
        let demo = self.keys.prepare()?;
        Ok((demo, self.keys.revocation_cursor()?))
    }

    /// `POST /auth/token` from the client at `ip`, before it is queued for a worker: a
    /// permit for one lookup, or 429 ([`HttpError::AddressBusy`]) when the address
    /// already has its bound in flight. Never blocks: the event loop calls it.
    pub fn admit(&self, ip: IpAddr) -> Result<LookupPermit, HttpError> {
        self.lookups.try_enter(ip).ok_or_else(|| {
            self.metrics.auth(AuthOutcome::AddressBusy);
            HttpError::AddressBusy
        })
    }

    /// `POST /auth/token` after its body was parsed and the exchange admitted: key
    /// lookup, then the token, or 401 (429 beyond the address's failure limit). The
    /// permit's slot is free again when this returns. Blocking (the key store): workers
    /// only.
    pub fn exchange(&self, api_key: &str, permit: LookupPermit) -> Result<Grant, HttpError> {
        let m = &self.metrics;
        let ip = permit.ip();
        let record = self.keys.lookup(api_key).map_err(|e| {
            crate::warn!("key store unavailable", kind = e.kind.label(), error = e.detail);
            m.auth(AuthOutcome::DatabaseError);
            m.db_error(e.kind);
            // A shared store out of reach is the cluster's "token store unavailable";
            // a local database that fails is a 500.
            if e.kind == DbErrorKind::Unreachable {
                HttpError::TokenStoreUnavailable
            } else {
                HttpError::DatabaseUnavailable
            }
        })?;
        let Some(record) = record else {
            if let Some(retry_after_secs) = self.limiter.record_failure(ip, Instant::now()) {
                m.auth(AuthOutcome::RateLimited);
                return Err(HttpError::TooManyRequests { retry_after_secs });
            }
            m.auth(AuthOutcome::InvalidKey);
            return Err(HttpError::InvalidApiKey);
        };
        let actor = Actor {
            id: format!("user:{}", record.user_id),
            user_id: record.user_id.clone(),
            role: record.role.clone(),
        };
        let issued = self.tokens.issue(actor, record.id, ip.to_string(), unix_now());
        drop(permit);
        match issued {
            Ok(issued) => {
                m.auth(AuthOutcome::Issued);
                crate::info!(
                    "token issued",
                    user_id = record.user_id,
                    ip = ip,
                    token = Tokens::fingerprint(&issued.token)
                );
                Ok(Grant {
                    token: issued.token,
                    user_id: record.user_id,
                    role: record.role,
                    expires_in: issued.expires_in,
                })
            }
            Err(TokenError::StoreFull) => {
                m.auth(AuthOutcome::StoreFull);
                crate::warn!("token table full", live_tokens = self.tokens.len());
                Err(HttpError::TokenStoreUnavailable)
            }
            Err(TokenError::StoreUnavailable) => {
                m.auth(AuthOutcome::StoreFull);
                crate::warn!("token store unreachable");
                Err(HttpError::TokenStoreUnavailable)
            }
            Err(TokenError::NoRandomness) => {
                crate::error!("no OS randomness for a token");
                Err(HttpError::Internal)
            }
            Err(e) => {
                crate::error!("token issue failed", error = format!("{e:?}"));
                Err(HttpError::Internal)
            }
        }
    }

    /// The token check of `GET /ws/ticker`, before any upgrade: a verified token, or
    /// the refusal to send (401, or 503 when the store cannot be reached). Counts the
    /// refusals; the caller counts `accepted` once the session really opens.
    pub fn authorize_upgrade(&self, token: Option<&str>) -> Result<VerifiedToken, HttpError> {
        let m = &self.metrics;
        let Some(token) = token else {
            m.ws_auth(WsAuthOutcome::Missing);
            return Err(HttpError::AuthenticationRequired);
        };
        self.tokens.verify(token, unix_now()).map_err(|e| match e {
            TokenError::StoreUnavailable => HttpError::TokenStoreUnavailable,
            TokenError::Expired => {
                m.ws_auth(WsAuthOutcome::Expired);
                HttpError::AuthenticationRequired
            }
            _ => {
                m.ws_auth(WsAuthOutcome::Invalid);
                HttpError::AuthenticationRequired
            }
        })
    }

    /// `POST /auth/revoke`: ends the bearer's own token. Returns it (so the caller can
    /// close its sessions), or 401 when it was not a live token.
    pub fn revoke_own(&self, token: &str) -> Result<VerifiedToken, HttpError> {
        let verified = self.tokens.verify(token, unix_now()).map_err(|e| match e {
            TokenError::StoreUnavailable => HttpError::TokenStoreUnavailable,
            _ => HttpError::AuthenticationRequired,
        })?;
        self.tokens.revoke_token(token).map_err(|_| HttpError::TokenStoreUnavailable)?;
        // Other nodes of a cluster close its sessions when they read the feed.
        if let Err(e) = self.keys.announce_token_revoked(verified.id) {
            crate::warn!("token revocation not announced", error = e);
        }
        crate::info!(
            "token revoked by its holder",
            user_id = verified.actor.user_id,
            token = Tokens::fingerprint(token)
        );
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::key_store::SqliteKeyStore;
    use crate::auth::ratelimit::LoginLimiter;
    use crate::auth::token::TokenKey;

    fn auth(dir: &std::path::Path, capacity: usize) -> Auth {
        Auth::new(
            Tokens::in_memory(
                TokenKey::from_secret("0123456789abcdef-test").unwrap(),
                Duration::from_secs(60),
                capacity,
            ),
            Box::new(SqliteKeyStore::new(dir.join("auth.db"))),
            Box::new(LoginLimiter::new(2, Duration::from_secs(60))),
            2,
            Arc::new(Metrics::new()),
        )
    }

    fn exchange(auth: &Auth, key: &str, ip: IpAddr) -> Result<Grant, HttpError> {
        auth.exchange(key, auth.admit(ip)?)
    }

    #[test]
    fn a_key_becomes_a_token_that_opens_an_upgrade_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), 10);
        let (demo, _) = auth.prepare().unwrap();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let grant = exchange(&auth, &demo.key, ip).unwrap();
        assert_eq!((grant.user_id.as_str(), grant.expires_in), ("demo", 60));
        let verified = auth.authorize_upgrade(Some(&grant.token)).unwrap();
        assert_eq!(verified.actor.id, "user:demo");
        assert_eq!(auth.authorize_upgrade(None).unwrap_err(), HttpError::AuthenticationRequired);
        auth.revoke_own(&grant.token).unwrap();
        assert_eq!(
            auth.authorize_upgrade(Some(&grant.token)).unwrap_err(),
            HttpError::AuthenticationRequired
        );
        assert_eq!(auth.revoke_own(&grant.token).unwrap_err(), HttpError::AuthenticationRequired);
    }

    #[test]
    fn a_valid_key_is_never_refused_for_its_addresss_failures_but_a_wrong_one_gets_429() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), 10);
        let (demo, _) = auth.prepare().unwrap();
        let ip = IpAddr::from([127, 0, 0, 9]);
        assert_eq!(exchange(&auth, "wrong", ip).unwrap_err(), HttpError::InvalidApiKey);
        assert_eq!(exchange(&auth, "wrong", ip).unwrap_err(), HttpError::InvalidApiKey);
        assert!(matches!(
            exchange(&auth, "wrong", ip),
            Err(HttpError::TooManyRequests { retry_after_secs: 1..=60 })
        ));
        assert_eq!(exchange(&auth, &demo.key, ip).unwrap().user_id, "demo");
        assert!(matches!(exchange(&auth, "wrong", ip), Err(HttpError::TooManyRequests { .. })));
    }

    #[test]
    fn an_address_with_its_bound_of_lookups_in_flight_gets_429_before_any_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), 10);
        let (demo, _) = auth.prepare().unwrap();
        let (ip, other) = (IpAddr::from([127, 0, 0, 9]), IpAddr::from([127, 0, 0, 10]));
        let held = [auth.admit(ip).unwrap(), auth.admit(ip).unwrap()];
        assert_eq!(auth.admit(ip).unwrap_err(), HttpError::AddressBusy);
        assert_eq!(exchange(&auth, &demo.key, other).unwrap().user_id, "demo");
        let [first, second] = held;
        // A finished exchange gives its slot back, whatever its outcome.
        assert_eq!(auth.exchange("wrong", first).unwrap_err(), HttpError::InvalidApiKey);
        assert_eq!(exchange(&auth, &demo.key, ip).unwrap().user_id, "demo");
        drop(second);
    }

    #[test]
    fn a_full_store_is_503() {
        let dir = tempfile::tempdir().unwrap();
        // `Tokens::in_memory` has no per-key bound: one key fills this table of one.
        let auth = auth(dir.path(), 1);
        let (demo, _) = auth.prepare().unwrap();
        let ip = IpAddr::from([127, 0, 0, 10]);
        exchange(&auth, &demo.key, ip).unwrap();
        assert_eq!(exchange(&auth, &demo.key, ip).unwrap_err(), HttpError::TokenStoreUnavailable);
    }
}
