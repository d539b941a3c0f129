//! The revocation watcher: a thread that follows the key store's revocation feed (keys
//! revoked by any process, the `keys` CLI included), ends their tokens and tells the
//! caller which keys' sessions to close. It also purges expired tokens now and then, so
//! the token table does not keep dead entries until it is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::flow::Auth;
use super::ids::unix_now;
use super::key_store::Revocation;

/// How often the feed is read: revoked sessions close within this (plus a tick).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How often expired tokens are dropped from the table.
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// Starts the watcher from `cursor` (see [`Auth::prepare`]); `on_revoked` gets the
/// revocations whose tokens were just ended. Stops when `stop` is set.
pub fn spawn_watcher(
    auth: Arc<Auth>,
    mut cursor: i64,
    stop: Arc<AtomicBool>,
    on_revoked: impl Fn(Vec<Revocation>) + Send + 'static,
) -> std::io::Result<()> {
    thread::Builder::new().name("revocations".into()).spawn(move || {
        let mut last_purge = Instant::now();
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(POLL_EVERY);
            if last_purge.elapsed() >= PURGE_EVERY {
                auth.tokens.purge_expired(unix_now());
                last_purge = Instant::now();
            }
            match auth.keys().revoked_since(cursor) {
                Ok((revoked, next)) => {
                    if failing {
                        crate::info!("revocation feed available again");
                    }
                    failing = false;
                    cursor = next;
                    if revoked.is_empty() {
                        continue;
                    }
                    for r in &revoked {
                        // A token store out of reach now still refuses these tokens
                        // later: the key is revoked in the key store, and a revoked
                        // token was deleted by the node that revoked it.
                        let _ = match r {
                            Revocation::ApiKey(id) => auth.tokens.revoke_api_key(*id).map(|_| ()),
                            Revocation::Token(id) => auth.tokens.forget(id).map(|_| ()),
                        };
                    }
                    crate::info!("revocations; closing their sessions", count = revoked.len());
                    on_revoked(revoked);
                }
                // One line per change of state, not one per poll.
                Err(e) if !failing => {
                    failing = true;
                    crate::warn!("revocation feed unavailable", error = e);
                }
                Err(_) => {}
            }
        }
    })?;
    Ok(())
}
