//! Symbols and the sets subscribers choose from them.
//!
//! - [`SymbolTable`]: the configured symbols, name ↔ index; the index is the display
//!   order (the order of `--symbols` / `--symbols-file`).
//! - [`SymbolSet`]: a set of symbols as a bitset over those indices, so two sessions
//!   that chose the same symbols in any order hold equal sets.
//! - [`spec`]: the symbols and start prices as configured (`SYMBOL:PRICE`), parsed.
//! - [`sets`]: interning of the sets in use, so the ticker builds one frame per distinct
//!   set per tick and every subscriber of that set is sent the same bytes.
//!
//! Nothing here does I/O; names come from the query string or from a client's
//! `subscribe` message ([`crate::control`]).

pub mod sets;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::control::SubscriptionError;
use sets::{SetLease, SetRegistry};
pub use spec::{SymbolSpec, parse_symbol_lines, parse_symbols};

/// Index of a symbol in the configured order.
pub type SymbolIndex = u16;

/// Most symbols a server may be configured with (indices are `u16`).
pub const MAX_SYMBOLS: usize = u16::MAX as usize;

/// The configured symbols, in display order.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    names: Vec<String>,
    index: HashMap<String, SymbolIndex>,
}

impl SymbolTable {
    /// `names` must be distinct and at most [`MAX_SYMBOLS`] (config validates both).
    pub fn new<I: IntoIterator<Item = String>>(names: I) -> SymbolTable {
        let names: Vec<String> = names.into_iter().take(MAX_SYMBOLS).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i as SymbolIndex)).collect();
        SymbolTable { names, index }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, i: SymbolIndex) -> &str {
        &self.names[usize::from(i)]
    }

    pub fn lookup(&self, name: &str) -> Option<SymbolIndex> {
        self.index.get(name).copied()
    }

    /// The set of `names`, or every name that is not a configured symbol (each once, in
    /// the order given). Linear in the names: a client's list is hostile input.
    pub fn resolve<'a, I>(&self, names: I) -> Result<SymbolSet, Vec<String>>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut set = SymbolSet::empty(self.len());
        let mut unknown: Vec<String> = Vec::new();
        let mut seen: HashSet<&'a str> = HashSet::new();
        for name in names {
            match self.lookup(name) {
                Some(i) => set.insert(i),
                None if seen.insert(name) => unknown.push(name.to_owned()),
                None => {}
            }
        }
        if unknown.is_empty() { Ok(set) } else { Err(unknown) }
    }

    /// The longest list of names a session may send in one change: enough to name every
    /// symbol it may hold, once. Checked before anything is resolved.
    pub fn max_names(&self, max_symbols: usize) -> usize {
        self.len().max(max_symbols)
    }

    /// The names of `set`'s members, in display order.
    pub fn names_of<'a>(&'a self, set: &'a SymbolSet) -> impl Iterator<Item = &'a str> + 'a {
        set.members().map(|i| self.name(i))
    }
}

/// A change a session asks for.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// `?symbols=` at the upgrade: exactly these.
    Choose(&'a [String]),
    /// Add these to the set (a session that never chose starts from none).
    Subscribe(&'a [String]),
    /// Remove these from the set (a session that never chose starts from all).
    Unsubscribe(&'a [String]),
}

/// A session's new subscription.
#[derive(Debug)]
pub struct Subscribed {
    pub set: SymbolSet,
    /// `None`: every symbol, sent the all-symbols frame (no set to intern).
    pub lease: Option<SetLease>,
    /// Symbols the session did not have by choice before: the snapshot to send.
    pub added: SymbolSet,
}

/// Applies `change` to the set a session chose (`None`: it never chose). On an error the
/// session keeps what it had; nothing is acquired.
pub fn choose(
    table: &SymbolTable,
    registry: &Arc<SetRegistry>,
    max_symbols: usize,
    chosen: Option<&SymbolSet>,
    current: Option<&SetLease>,
    change: Change<'_>,
) -> Result<Subscribed, SubscriptionError> {
    let names = match change {
        Change::Choose(n) | Change::Subscribe(n) | Change::Unsubscribe(n) => n,
    };
    if names.is_empty() && !matches!(change, Change::Unsubscribe(_)) {
        return Err(SubscriptionError::EmptyList);
    }
    // The length cap comes before any lookup, so a long list costs no more than its parse.
    if names.len() > table.max_names(max_symbols) {
        return Err(SubscriptionError::TooManyNames(names.len()));
    }
    let requested = table
        .resolve(names.iter().map(String::as_str))
        .map_err(SubscriptionError::UnknownSymbols)?;
    let none = SymbolSet::empty(table.len());
    let set = match change {
        Change::Choose(_) => requested,
        Change::Subscribe(_) => chosen.unwrap_or(&none).union(&requested),
        Change::Unsubscribe(_) => match chosen {
            Some(chosen) => chosen.minus(&requested),
            None => SymbolSet::full(table.len()).minus(&requested),
        },
    };
    // Every symbol is the shared all-symbols frame: no set, no limit.
    let every = set.len() == table.len();
    if !every && set.len() > max_symbols {
        return Err(SubscriptionError::TooManySymbols(names.to_vec()));
    }
    let lease = match every {
        true => None,
        false => Some(
            registry
                .acquire(set.clone(), current)
                .map_err(|_| SubscriptionError::TooManySets(names.to_vec()))?,
        ),
    };
    let added = set.minus(chosen.unwrap_or(&none));
    Ok(Subscribed { set, lease, added })
}

/// A set of symbols: bit `i` stands for the symbol of index `i`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SymbolSet {
    words: Box<[u64]>,
}

impl SymbolSet {
    /// The empty set over a table of `n` symbols.
    pub fn empty(n: usize) -> SymbolSet {
        SymbolSet { words: vec![0; n.div_ceil(64)].into_boxed_slice() }
    }

    /// Every one of `n` symbols.
    pub fn full(n: usize) -> SymbolSet {
        let mut set = SymbolSet::empty(n);
        for i in 0..n {
            set.insert(i as SymbolIndex);
        }
        set
    }

    pub fn insert(&mut self, i: SymbolIndex) {
        let i = usize::from(i);
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub fn contains(&self, i: SymbolIndex) -> bool {
        let i = usize::from(i);
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// `self ∪ other` (both over the same table).
    pub fn union(&self, other: &SymbolSet) -> SymbolSet {
        let words = self.words.iter().zip(other.words.iter()).map(|(a, b)| a | b).collect();
        SymbolSet { words }
    }

    /// `self ∖ other` (both over the same table).
    pub fn minus(&self, other: &SymbolSet) -> SymbolSet {
        let words = self.words.iter().zip(other.words.iter()).map(|(a, b)| a & !b).collect();
        SymbolSet { words }
    }

    /// Member indices in ascending (display) order.
    pub fn members(&self) -> impl Iterator<Item = SymbolIndex> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| {
            let mut bits = bits;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some((w * 64 + bit) as SymbolIndex)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SymbolTable {
        SymbolTable::new(["BTC-USD", "ETH-USD", "SOL-USD"].map(String::from))
    }

    #[test]
    fn names_resolve_to_a_set_in_display_order_whatever_the_order_given() {
        let t = table();
        let a = t.resolve(["SOL-USD", "BTC-USD"]).unwrap();
        let b = t.resolve(["BTC-USD", "SOL-USD", "BTC-USD"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(t.names_of(&a).collect::<Vec<_>>(), ["BTC-USD", "SOL-USD"]);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn unknown_names_are_all_reported_once() {
        let t = table();
        let err = t.resolve(["X", "BTC-USD", "Y", "X"]).unwrap_err();
        assert_eq!(err, ["X", "Y"]);
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_first_subscribe_starts_from_none_and_a_first_unsubscribe_from_all() {
        let (t, registry) = (table(), SetRegistry::new(8));
        let s =
            choose(&t, &registry, 10, None, None, Change::Subscribe(&names(&["ETH-USD"]))).unwrap();
        assert_eq!(t.names_of(&s.set).collect::<Vec<_>>(), ["ETH-USD"]);
        assert_eq!(t.names_of(&s.added).collect::<Vec<_>>(), ["ETH-USD"]);
        assert!(s.lease.is_some());
        let u = choose(&t, &registry, 10, None, None, Change::Unsubscribe(&names(&["ETH-USD"])))
            .unwrap();
        assert_eq!(t.names_of(&u.set).collect::<Vec<_>>(), ["BTC-USD", "SOL-USD"]);
        // Every symbol again: the all-symbols frame, no set.
        let more = names(&["ETH-USD"]);
        let all = choose(&t, &registry, 1, Some(&u.set), None, Change::Subscribe(&more)).unwrap();
        assert!(all.lease.is_none());
        assert_eq!(t.names_of(&all.added).collect::<Vec<_>>(), ["ETH-USD"]);
        // Unsubscribing everything leaves the empty set (heartbeats only).
        let every = names(&["BTC-USD", "ETH-USD", "SOL-USD"]);
        let empty =
            choose(&t, &registry, 10, Some(&all.set), None, Change::Unsubscribe(&every)).unwrap();
        assert!(empty.set.is_empty());
    }

    #[test]
    fn refusals_acquire_nothing() {
        let (t, registry) = (table(), SetRegistry::new(1));
        let bad =
            choose(&t, &registry, 10, None, None, Change::Choose(&names(&["BTC-USD", "NOPE"])));
        assert_eq!(bad.unwrap_err(), SubscriptionError::UnknownSymbols(names(&["NOPE"])));
        let two = names(&["BTC-USD", "ETH-USD"]);
        let over = choose(&t, &registry, 1, None, None, Change::Subscribe(&two));
        assert_eq!(over.unwrap_err(), SubscriptionError::TooManySymbols(two.clone()));
        assert_eq!(
            choose(&t, &registry, 10, None, None, Change::Choose(&[])).unwrap_err(),
            SubscriptionError::EmptyList
        );
        assert!(registry.is_empty());
        let _held = choose(&t, &registry, 10, None, None, Change::Choose(&two)).unwrap();
        let other = names(&["SOL-USD"]);
        let full = choose(&t, &registry, 10, None, None, Change::Choose(&other));
        assert_eq!(full.unwrap_err(), SubscriptionError::TooManySets(other));
    }

    #[test]
    fn a_list_longer_than_the_cap_is_refused_before_any_lookup() {
        let (t, registry) = (table(), SetRegistry::new(8));
        // Three symbols, at most 2 per session: a list may name 3 (every symbol), not 4.
        let four = names(&["BTC-USD", "BTC-USD", "ETH-USD", "SOL-USD"]);
        let err = choose(&t, &registry, 2, None, None, Change::Subscribe(&four)).unwrap_err();
        assert_eq!(err, SubscriptionError::TooManyNames(4));
        assert!(err.symbols().is_empty(), "the refused list is not echoed back");
        let three = names(&["BTC-USD", "ETH-USD", "SOL-USD"]);
        assert!(choose(&t, &registry, 2, None, None, Change::Subscribe(&three)).is_ok());
    }

    #[test]
    fn many_distinct_unknown_names_resolve_in_linear_time() {
        // 50,000 distinct unknown names: quadratic de-duplication would take seconds
        // (1.25e9 comparisons); this finishes in milliseconds. Not a timed assertion:
        // the count of reported names is what is checked.
        let t = table();
        let many: Vec<String> = (0..50_000).map(|i| format!("U{i}")).collect();
        let err = t.resolve(many.iter().map(String::as_str)).unwrap_err();
        assert_eq!(err.len(), 50_000);
    }

    #[test]
    fn set_algebra_over_more_than_one_word() {
        let names: Vec<String> = (0..200).map(|i| format!("S{i}")).collect();
        let t = SymbolTable::new(names);
        let a = t.resolve(["S1", "S64", "S199"]).unwrap();
        let b = t.resolve(["S64", "S100"]).unwrap();
        let u = a.union(&b);
        assert_eq!(u.members().collect::<Vec<_>>(), [1, 64, 100, 199]);
        assert_eq!(u.minus(&a).members().collect::<Vec<_>>(), [100]);
        assert!(a.minus(&a).is_empty());
        assert_eq!(SymbolSet::full(200).len(), 200);
        assert!(u.contains(199) && !u.contains(2));
    }
}
