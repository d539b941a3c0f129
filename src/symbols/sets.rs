//! Interning of the symbol sets in use: every session that chose the same symbols holds
//! a [`SetLease`] on the same [`SetId`], and the ticker builds one frame per active set
//! per tick ([`ActiveSets`]), which every subscriber of the set is then sent.
//!
//! What bounds the ticker's work: at most `max_sets` distinct sets are active (asking for
//! one more is refused with [`TooManySets`]), each of at most the per-session symbol
//! limit, so a tick costs at most `max_sets × max_session_symbols` copied entries on top
//! of formatting each symbol once. A session on every symbol takes no set at all: it
//! is sent the all-symbols frame.
//!
//! The registry is touched only when a session subscribes, unsubscribes or ends (one
//! short lock), and by the ticker once per tick (an atomic load; the lock only when the
//! sets changed). Never per subscriber per tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{SymbolIndex, SymbolSet};

/// A distinct set in use (an index into each tick's table of set frames).
pub type SetId = u32;

/// The id of the empty set's leases: no tick has a frame for it.
const EMPTY: SetId = SetId::MAX;

/// Every distinct set the ticker builds a frame for, as of one moment.
#[derive(Debug, Default)]
pub struct ActiveSets {
    /// `(id, members in display order)`; members are never empty.
    pub sets: Vec<(SetId, Arc<[SymbolIndex]>)>,
    /// One past the largest id in use: the length of a tick's table of set frames.
    pub slots: usize,
}

/// Refused: the server already serves `max_sets` distinct sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySets;

impl std::fmt::Display for TooManySets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many distinct symbol sets")
    }
}

impl std::error::Error for TooManySets {}

#[derive(Debug)]
struct Entry {
    set: SymbolSet,
    members: Arc<[SymbolIndex]>,
    leases: usize,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashMap<SymbolSet, SetId>,
    /// Indexed by id; `None` is a free slot (reused lowest first, so ids stay small).
    entries: Vec<Option<Entry>>,
    active: Arc<ActiveSets>,
}

impl Inner {
    fn rebuild_active(&mut self) {
        let sets = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(id, e)| e.as_ref().map(|e| (id as SetId, e.members.clone())))
            .filter(|(_, members)| !members.is_empty())
            .collect::<Vec<_>>();
        let slots = sets.last().map_or(0, |(id, _)| *id as usize + 1);
        self.active = Arc::new(ActiveSets { sets, slots });
    }
}

/// The sets in use by this node's sessions.
#[derive(Debug)]
pub struct SetRegistry {
    inner: Mutex<Inner>,
    /// Bumped on every change of the active sets, so the ticker relocks only then.
    generation: AtomicU64,
    max_sets: usize,
}

impl SetRegistry {
    pub fn new(max_sets: usize) -> Arc<SetRegistry> {
        Arc::new(SetRegistry {
            inner: Mutex::new(Inner::default()),
            generation: AtomicU64::new(0),
            max_sets,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves `Inner` consistent before it can panic (no user code runs
        // under the lock), so a poisoned lock is still a valid registry.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A lease on `set`'s id, interning it if no session holds it yet. `replacing` is
    /// the lease the session will drop for this one: a change that frees a set does
    /// not count against the cap. The empty set is never interned (it has no frame).
    pub fn acquire(
        self: &Arc<Self>,
        set: SymbolSet,
        replacing: Option<&SetLease>,
    ) -> Result<SetLease, TooManySets> {
        if set.is_empty() {
            let members: Arc<[SymbolIndex]> = Arc::from(Vec::new());
            return Ok(SetLease { registry: self.clone(), id: EMPTY, members });
        }
        let mut inner = self.lock();
        if let Some(&id) = inner.ids.get(&set) {
            if let Some(Some(entry)) = inner.entries.get_mut(id as usize) {
                entry.leases += 1;
                let members = entry.members.clone();
                return Ok(SetLease { registry: self.clone(), id, members });
            }
            // Every interned id has its entry; were one lost, intern the set afresh
            // rather than panic in an event loop.
            inner.ids.remove(&set);
        }
        let frees_one = replacing.is_some_and(
            |old| matches!(inner.entries.get(old.id as usize), Some(Some(e)) if e.leases == 1),
        );
        if inner.ids.len() - usize::from(frees_one) >= self.max_sets {
            return Err(TooManySets);
        }
        let members: Arc<[SymbolIndex]> = set.members().collect();
        let id = match inner.entries.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                inner.entries.push(None);
                inner.entries.len() - 1
            }
        } as SetId;
        inner.ids.insert(set.clone(), id);
        inner.entries[id as usize] = Some(Entry { set, members: members.clone(), leases: 1 });
        inner.rebuild_active();
        self.generation.fetch_add(1, Ordering::Release);
        Ok(SetLease { registry: self.clone(), id, members })
    }

    fn release(&self, id: SetId) {
        let mut inner = self.lock();
        let Some(Some(entry)) = inner.entries.get_mut(id as usize) else { return };
        entry.leases -= 1;
        if entry.leases > 0 {
            return;
        }
        if let Some(entry) = inner.entries[id as usize].take() {
            inner.ids.remove(&entry.set);
        }
        while matches!(inner.entries.last(), Some(None)) {
            inner.entries.pop();
        }
        inner.rebuild_active();
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Distinct sets in use now.
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The active sets, refreshing `cache` only when they changed since it was taken
    /// (the ticker's once-per-tick call: an atomic load in the steady state).
    pub fn active<'a>(&self, cache: &'a mut ActiveCache) -> &'a Arc<ActiveSets> {
        let generation = self.generation.load(Ordering::Acquire);
        if cache.generation != Some(generation) {
            cache.sets = self.lock().active.clone();
            cache.generation = Some(generation);
        }
        &cache.sets
    }
}

/// The ticker's copy of [`ActiveSets`] and the generation it was taken at.
#[derive(Debug, Default)]
pub struct ActiveCache {
    generation: Option<u64>,
    sets: Arc<ActiveSets>,
}

/// A session's hold on an interned set; dropping it releases the set (and the set's
/// frame stops being built once no session holds it).
#[derive(Debug)]
pub struct SetLease {
    registry: Arc<SetRegistry>,
    id: SetId,
    members: Arc<[SymbolIndex]>,
}

impl SetLease {
    pub fn id(&self) -> SetId {
        self.id
    }

    /// The set's symbols in display order (empty for the empty set).
    pub fn members(&self) -> &Arc<[SymbolIndex]> {
        &self.members
    }
}

impl Drop for SetLease {
    fn drop(&mut self) {
        self.registry.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::SymbolTable;

    fn table() -> SymbolTable {
        SymbolTable::new((0..10).map(|i| format!("S{i}")))
    }

    #[test]
    fn equal_sets_share_one_id_and_the_last_lease_frees_it() {
        let t = table();
        let registry = SetRegistry::new(10);
        let a = registry.acquire(t.resolve(["S1", "S2"]).unwrap(), None).unwrap();
        let b = registry.acquire(t.resolve(["S2", "S1"]).unwrap(), None).unwrap();
        let c = registry.acquire(t.resolve(["S3"]).unwrap(), None).unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(&a.members()[..], [1, 2]);
        assert_eq!(registry.len(), 2);
        drop(a);
        assert_eq!(registry.len(), 2, "b still holds the set");
        drop(b);
        assert_eq!(registry.len(), 1);
        // The freed id is reused.
        let d = registry.acquire(t.resolve(["S4"]).unwrap(), None).unwrap();
        assert_eq!(d.id(), 0);
        drop((c, d));
        assert!(registry.is_empty());
    }

    #[test]
    fn beyond_the_cap_new_sets_are_refused_but_existing_ones_are_shared() {
        let t = table();
        let registry = SetRegistry::new(2);
        let _a = registry.acquire(t.resolve(["S1"]).unwrap(), None).unwrap();
        let _b = registry.acquire(t.resolve(["S2"]).unwrap(), None).unwrap();
        assert_eq!(registry.acquire(t.resolve(["S3"]).unwrap(), None).unwrap_err(), TooManySets);
        assert!(registry.acquire(t.resolve(["S1"]).unwrap(), None).is_ok());
        // A session leaving a set only it holds may take a new one at the cap.
        let a2 = registry.acquire(t.resolve(["S2", "S5"]).unwrap(), Some(&_b)).unwrap();
        drop(_b);
        assert_eq!(registry.len(), 2);
        // The empty set is never interned, so it never counts.
        let none = registry.acquire(SymbolSet::empty(t.len()), None).unwrap();
        assert!(none.members().is_empty());
        drop((a2, none));
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn the_ticker_sees_the_active_sets_and_their_changes() {
        let t = table();
        let registry = SetRegistry::new(10);
        let mut cache = ActiveCache::default();
        assert_eq!(registry.active(&mut cache).slots, 0);
        let a = registry.acquire(t.resolve(["S1"]).unwrap(), None).unwrap();
        let empty = registry.acquire(SymbolSet::empty(t.len()), None).unwrap();
        let active = registry.active(&mut cache).clone();
        // The empty set is leased but has no frame to build.
        assert_eq!(active.sets.len(), 1);
        assert_eq!(active.sets[0].0, a.id());
        assert_eq!(active.slots, a.id() as usize + 1);
        drop((a, empty));
        assert!(registry.active(&mut cache).sets.is_empty());
    }
}
