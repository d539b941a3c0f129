//! Optional caps on open WebSocket sessions per API key and per client address
//! (`--max-sessions-per-key`, `--max-sessions-per-ip`; unlimited by default, because a
//! load test opens thousands of sessions with one key from one machine).
//!
//! A session holds a [`SessionPermit`] for as long as it is open; dropping the permit
//! (the session closes, fails or ends with its connection) gives the slot back, so no
//! path can leak a count. With neither cap set there is no table and no lock: the
//! upgrade pays nothing. The counts are this node's: in a cluster each node applies the
//! caps to the sessions it serves.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::auth::ids::ApiKeyId;
use crate::error::SessionCap;
use crate::metrics::SessionLimit;

impl SessionCap {
    /// The metric label.
    pub fn limit(self) -> SessionLimit {
        match self {
            SessionCap::PerKey => SessionLimit::PerKey,
            SessionCap::PerIp => SessionLimit::PerIp,
        }
    }
}

/// The caps and the open sessions they count.
#[derive(Debug)]
pub struct SessionLimits {
    per_key: Option<usize>,
    per_ip: Option<usize>,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    by_key: HashMap<ApiKeyId, usize>,
    by_ip: HashMap<IpAddr, usize>,
}

/// One open session's place in the counts; returned when dropped.
#[derive(Debug)]
pub struct SessionPermit {
    limits: Arc<SessionLimits>,
    key: ApiKeyId,
    ip: IpAddr,
}

impl SessionLimits {
    /// `None` when neither cap is set: nothing to count.
    pub fn new(per_key: Option<usize>, per_ip: Option<usize>) -> Option<Arc<SessionLimits>> {
        if per_key.is_none() && per_ip.is_none() {
            return None;
        }
        Some(Arc::new(SessionLimits { per_key, per_ip, open: Mutex::default() }))
    }

    /// Counts a new session of `key` from `ip`, or says which cap it would exceed (and
    /// counts nothing).
    pub fn admit(self: &Arc<Self>, key: ApiKeyId, ip: IpAddr) -> Result<SessionPermit, SessionCap> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if self.per_key.is_some_and(|max| count(&open.by_key, &key) >= max) {
            return Err(SessionCap::PerKey);
        }
        if self.per_ip.is_some_and(|max| count(&open.by_ip, &ip) >= max) {
            return Err(SessionCap::PerIp);
        }
        if self.per_key.is_some() {
            *open.by_key.entry(key).or_default() += 1;
        }
        if self.per_ip.is_some() {
            *open.by_ip.entry(ip).or_default() += 1;
        }
        Ok(SessionPermit { limits: self.clone(), key, ip })
    }

    /// Sessions open now for `key` and for `ip` (tests and diagnostics).
    pub fn open_for(&self, key: ApiKeyId, ip: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (count(&open.by_key, &key), count(&open.by_ip, &ip))
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let limits = &self.limits;
        let mut open = limits.open.lock().unwrap_or_else(PoisonError::into_inner);
        if limits.per_key.is_some() {
            release(&mut open.by_key, &self.key);
        }
        if limits.per_ip.is_some() {
            release(&mut open.by_ip, &self.ip);
        }
    }
}

fn count<K: Hash + Eq>(map: &HashMap<K, usize>, k: &K) -> usize {
    map.get(k).copied().unwrap_or(0)
}

/// One fewer; the entry goes when it reaches zero, so the tables hold only live counts.
fn release<K: Hash + Eq>(map: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn no_caps_means_no_table() {
        assert!(SessionLimits::new(None, None).is_none());
    }

    #[test]
    fn the_per_key_cap_refuses_the_next_session_until_one_closes() {
        let limits = SessionLimits::new(Some(2), None).unwrap();
        let first = limits.admit(ApiKeyId(1), A).unwrap();
        let _second = limits.admit(ApiKeyId(1), B).unwrap();
        assert_eq!(limits.admit(ApiKeyId(1), A).unwrap_err(), SessionCap::PerKey);
        assert!(limits.admit(ApiKeyId(2), A).is_ok(), "another key is not affected");
        drop(first);
        assert!(limits.admit(ApiKeyId(1), A).is_ok());
    }

    #[test]
    fn the_per_ip_cap_counts_every_key_from_the_address() {
        let limits = SessionLimits::new(None, Some(1)).unwrap();
        let held = limits.admit(ApiKeyId(1), A).unwrap();
        assert_eq!(limits.admit(ApiKeyId(2), A).unwrap_err(), SessionCap::PerIp);
        assert!(limits.admit(ApiKeyId(2), B).is_ok());
        drop(held);
        assert_eq!(limits.open_for(ApiKeyId(1), A), (0, 0));
    }

    #[test]
    fn a_refusal_counts_nothing_and_released_entries_leave_the_table() {
        let limits = SessionLimits::new(Some(1), Some(5)).unwrap();
        let held = limits.admit(ApiKeyId(1), A).unwrap();
        assert!(limits.admit(ApiKeyId(1), A).is_err());
        assert_eq!(limits.open_for(ApiKeyId(1), A), (1, 1));
        drop(held);
        let open = limits.open.lock().unwrap();
        assert!(open.by_key.is_empty() && open.by_ip.is_empty());
    }
}
