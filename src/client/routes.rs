//! Which link a node's calls go to, by node index ([`Routes`]): kept beside the links, not in
//! the node table, which knows nothing of connections. Generic over the link type, so this
//! file needs nothing from `link.rs` (which uses it).
//!
//! Lock order: a thread holding `Link::inner` may take a [`Routes`] slot; nobody takes
//! `Link::inner` while holding a `Routes` slot.

use std::sync::Arc;

use parking_lot::Mutex;

use super::table::MAX_NODES;

/// The connection each node's calls are sent on (by node index), while it has one that is not
/// draining.
pub(crate) struct Routes<L> {
    slots: Box<[Mutex<Option<Arc<L>>>]>,
}

impl<L> Routes<L> {
    pub fn new() -> Routes<L> {
        Routes {
            slots: (0..MAX_NODES).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The node's current link.
    pub fn get(&self, node: usize) -> Option<Arc<L>> {
        self.slots.get(node)?.lock().clone()
    }

    pub fn has(&self, node: usize) -> bool {
        self.slots.get(node).is_some_and(|s| s.lock().is_some())
    }

    pub fn set(&self, node: usize, link: Arc<L>) {
        if let Some(s) = self.slots.get(node) {
            *s.lock() = Some(link);
        }
    }

    /// Takes the node's current link away (calls no longer choose it).
    pub fn take(&self, node: usize) -> Option<Arc<L>> {
        self.slots.get(node)?.lock().take()
    }

    /// Whether `link` is node `node`'s current link.
    pub(super) fn is(&self, node: usize, link: &L) -> bool {
        self.slots.get(node).is_some_and(|s| {
            s.lock()
                .as_ref()
                .is_some_and(|l| std::ptr::eq(Arc::as_ptr(l), link))
        })
    }

    /// Makes node `node` stop using `link`. Returns true if it was the node's current link.
    pub(super) fn detach(&self, node: usize, link: &L) -> bool {
        let Some(slot) = self.slots.get(node) else {
            return false;
        };
        let mut cur = slot.lock();
        if cur
            .as_ref()
            .is_some_and(|l| std::ptr::eq(Arc::as_ptr(l), link))
        {
            *cur = None;
            return true;
        }
        false
    }
}
