//! Corking: a thread that starts many calls at once (a loop polling many futures) can hold
//! their writes and send them together when it is done, one `write` per connection, instead of
//! one per call or a hand-off to the I/O thread.

use std::cell::RefCell;
use std::sync::Arc;

use super::link::Link;
use super::table::NodeTable;

#[derive(Default)]
struct Held {
    depth: usize,
    links: Vec<Arc<Link>>,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// While a [`Cork`] lives on this thread, requests it sends are queued, and written when the
/// last cork of the thread is dropped. See [`Client::cork`](super::Client::cork).
#[must_use = "the writes are held only while the cork lives"]
pub struct Cork {
    table: Arc<NodeTable>,
    // Not Send: a cork belongs to the thread that made it.
    _thread: std::marker::PhantomData<*const ()>,
}

impl std::fmt::Debug for Cork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cork")
    }
}

impl Cork {
    pub(crate) fn new(table: Arc<NodeTable>) -> Cork {
        HELD.with(|h| h.borrow_mut().depth += 1);
        Cork {
            table,
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        let links = HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.depth -= 1;
            if h.depth == 0 {
                std::mem::take(&mut h.links)
            } else {
                Vec::new()
            }
        });
        for link in links {
            link.uncork(&self.table);
        }
    }
}

/// Called by `Link::send` under the link's lock: if this thread is corked, remembers the link
/// (once: `listed` is the link's own flag) and returns true.
pub(crate) fn hold(link: &Arc<Link>, listed: &mut bool) -> bool {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.depth == 0 {
            return false;
        }
        if !*listed {
            *listed = true;
            h.links.push(link.clone());
        }
        true
    })
}
