//! The auth flow behind four entry points, so the event loop and the workers only ask:
//!
//! | entry point                 | who calls it           | what it does                                  |
//! |-----------------------------|------------------------|-----------------------------------------------|
//! | [`Auth::exchange`]          | a worker               | rate limit, key lookup, sign, the 200 body    |
//! | [`Auth::authorize_upgrade`] | the loop (or a worker) | token → verified token, or 401, with metrics  |
//! | [`Auth::revoke_own`]        | the loop (or a worker) | `POST /auth/revoke`: end the bearer's token   |
//! | [`Auth::prepare`]           | start-up               | create/migrate the key store, the demo key    |
//!
//! Revocations made by other processes arrive through [`super::revocation`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::key_store::KeyStore;
use super::keys::{DbError, DbErrorKind, DemoKey};
use super::ratelimit::FailureLimiter;
use super::token::{Actor, TokenError, Tokens, VerifiedToken, unix_now};
use crate::error::HttpError;
use crate::http::response::Response;
use crate::metrics::{AuthOutcome, Metrics, WsAuthOutcome};

/// The token exchange's answer: the SPEC's 200 body.
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

/// Everything the auth flow needs: the two stores, the login limiter, the metrics.
pub struct Auth {
    pub tokens: Tokens,
    keys: Box<dyn KeyStore>,
    limiter: Box<dyn FailureLimiter>,
    metrics: Arc<Metrics>,
}

impl Auth {
    pub fn new(
        tokens: Tokens,
        keys: Box<dyn KeyStore>,
        limiter: Box<dyn FailureLimiter>,
        metrics: Arc<Metrics>,
    ) -> Auth {
        Auth { tokens, keys, limiter, metrics }
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

    /// `POST /auth/token` after its body was parsed: rate limit, key lookup, signing.
    /// Blocking (the key store): workers only.
    pub fn exchange(&self, api_key: &str, ip: IpAddr) -> Result<Grant, HttpError> {
        let m = &self.metrics;
        let now = Instant::now();
        if let Err(retry_after_secs) = self.limiter.check(ip, now) {
            m.auth(AuthOutcome::RateLimited);
            return Err(HttpError::TooManyRequests { retry_after_secs });
        }
        let record = self.keys.lookup(api_key).map_err(|e| {
            crate::warn!("key store unavailable", kind = e.kind.label(), error = e.detail);
            m.auth(AuthOutcome::DatabaseError);
            m.db_error(e.kind);
            // A shared store out of reach is the cluster's "token store unavailable";
            // a local database that fails is the SPEC's 500.
            if e.kind == DbErrorKind::Unreachable {
                HttpError::TokenStoreUnavailable
            } else {
                HttpError::DatabaseUnavailable
            }
        })?;
        let Some(record) = record else {
            self.limiter.record_failure(ip, now);
            m.auth(AuthOutcome::InvalidKey);
            return Err(HttpError::InvalidApiKey);
        };
        let actor = Actor {
            id: format!("user:{}", record.user_id),
            user_id: record.user_id.clone(),
            role: record.role.clone(),
        };
        match self.tokens.issue(actor, record.id, ip.to_string(), unix_now()) {
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
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn a_key_becomes_a_token_that_opens_an_upgrade_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), 10);
        let (demo, _) = auth.prepare().unwrap();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let grant = auth.exchange(&demo.key, ip).unwrap();
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
    fn failures_are_limited_per_address_and_a_full_store_is_503() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), 1);
        let (demo, _) = auth.prepare().unwrap();
        let ip = IpAddr::from([127, 0, 0, 9]);
        assert_eq!(auth.exchange("wrong", ip).unwrap_err(), HttpError::InvalidApiKey);
        assert_eq!(auth.exchange("wrong", ip).unwrap_err(), HttpError::InvalidApiKey);
        assert!(matches!(auth.exchange(&demo.key, ip), Err(HttpError::TooManyRequests { .. })));
        let other = IpAddr::from([127, 0, 0, 10]);
        auth.exchange(&demo.key, other).unwrap();
        assert_eq!(auth.exchange(&demo.key, other).unwrap_err(), HttpError::TokenStoreUnavailable);
    }
}
