//! Which links a node's calls go to, by node index ([`Routes`]): kept beside the links, not in
//! the node table, which knows nothing of connections. Generic over the link type, so this
//! file needs nothing from `link.rs` (which uses it).
//!
//! A node has up to the client's connections per node ("lanes"). A thread keeps to one lane
//! ([`lane_hint`]: threads are spread over the lanes round robin), so threads calling at once
//! share a connection only when there are more of them than lanes.
//!
//! Lock order: a thread holding `Link::inner` may take a [`Routes`] slot; nobody takes
//! `Link::inner` while holding a `Routes` slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::table::MAX_NODES;

/// The most connections a client keeps to one node.
pub(crate) const MAX_LANES: usize = 16;

/// The connections each node's calls are sent on (by node index), while they are not
/// draining: at most [`MAX_LANES`] per node.
pub(crate) struct Routes<L> {
    slots: Box<[Mutex<Vec<Arc<L>>>]>,
}

impl<L> Routes<L> {
    pub fn new() -> Routes<L> {
        Routes {
            slots: (0..MAX_NODES).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// The node's link on lane `lane` (modulo the lanes it has now).
    pub fn get(&self, node: usize, lane: usize) -> Option<Arc<L>> {
        let lanes = self.slots.get(node)?.lock();
        match lanes.len() {
            0 => None,
            n => lanes.get(lane % n).cloned(),
        }
    }

    /// How many links the node has.
    pub fn count(&self, node: usize) -> usize {
        self.slots.get(node).map_or(0, |s| s.lock().len())
    }

    pub fn has(&self, node: usize) -> bool {
        self.count(node) > 0
    }

    /// The node's links now (a copy: check them without this lock, see the lock order).
    pub fn links(&self, node: usize) -> Vec<Arc<L>> {
        self.slots
            .get(node)
            .map(|s| s.lock().clone())
            .unwrap_or_default()
    }

    /// Adds a link to the node's lanes (the caller keeps to the lane limit).
    pub fn add(&self, node: usize, link: Arc<L>) {
        if let Some(s) = self.slots.get(node) {
            s.lock().push(link);
        }
    }

    /// Takes all of the node's links away (calls no longer choose them).
    pub fn take_all(&self, node: usize) -> Vec<Arc<L>> {
        self.slots
            .get(node)
            .map(|s| std::mem::take(&mut *s.lock()))
            .unwrap_or_default()
    }

    /// Whether `link` is one of node `node`'s current links.
    pub(super) fn is(&self, node: usize, link: &L) -> bool {
        self.slots
            .get(node)
            .is_some_and(|s| s.lock().iter().any(|l| std::ptr::eq(Arc::as_ptr(l), link)))
    }

    /// Makes node `node` stop using `link`. Returns true if it was one of the node's current
    /// links.
    pub(super) fn detach(&self, node: usize, link: &L) -> bool {
        let Some(slot) = self.slots.get(node) else {
            return false;
        };
        let mut lanes = slot.lock();
        match lanes
            .iter()
            .position(|l| std::ptr::eq(Arc::as_ptr(l), link))
        {
            Some(at) => {
                // (Order kept: the other threads keep their lanes.)
                lanes.remove(at);
                true
            }
            None => false,
        }
    }
}

/// This thread's lane: threads are numbered round robin as they first call.
pub(crate) fn lane_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    LANE.with(|l| *l)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Routes;

    #[test]
    fn lanes_are_chosen_modulo_and_detached_by_identity() {
        let r: Routes<u32> = Routes::new();
        let (a, b, c) = (Arc::new(1), Arc::new(2), Arc::new(3));
        assert!(r.get(0, 0).is_none());
        r.add(0, a.clone());
        r.add(0, b.clone());
        r.add(0, c.clone());
        assert_eq!(r.count(0), 3);
        assert_eq!(r.get(0, 4).as_deref(), Some(&2));
        assert!(r.detach(0, &b));
        assert!(!r.detach(0, &b), "detached twice");
        assert!(!r.is(0, &b));
        assert!(r.is(0, &c));
        // Two lanes left, in order: lane 4 is now the first's.
        assert_eq!(r.get(0, 4).as_deref(), Some(&1));
        assert_eq!(r.take_all(0).len(), 2);
        assert!(!r.has(0));
    }
}
