//! Small maps and sets keyed by request id.
//!
//! Ids are sequential, so they are spread with a Fibonacci multiply instead of SipHash: one
//! multiplication per lookup, and no allocation once the table has reached its working size.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for `u64` keys.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Build = BuildHasherDefault<IdHasher>;

/// A map from request id to `V`.
pub type IdMap<V> = HashMap<u64, V, Build>;

/// A set of request ids.
#[derive(Debug, Default)]
pub struct IdSet(HashSet<u64, Build>);

impl IdSet {
    /// An empty set with room for `n` ids.
    pub fn with_capacity(n: usize) -> IdSet {
        IdSet(HashSet::with_capacity_and_hasher(n, Build::default()))
    }

    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: u64) -> bool {
        self.0.insert(id)
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: u64) -> bool {
        self.0.remove(&id)
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        self.0.contains(&id)
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A new empty id map with room for `n` entries.
pub fn id_map<V>(n: usize) -> IdMap<V> {
    HashMap::with_capacity_and_hasher(n, Build::default())
}
