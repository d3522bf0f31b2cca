//! A [`CallSet`](super::CallSet)'s ready list: the lanes woken since they were last polled,
//! each at most once, and the parking of the thread that waits for one.
//!
//! A lane's mark ([`LaneMark`]) is set when it goes on the list and cleared just before the set
//! polls it; a wake-up while it is set adds nothing (the lane will be polled anyway). The
//! waiting thread parks only after it has said so under the list's lock and found the list
//! empty, and a push unparks whoever said so: no wake-up is lost between the two. The loom
//! model `loom_a_wake_during_a_poll_or_a_park_is_never_lost` (below) runs both sides through
//! every interleaving (`RUSTFLAGS="--cfg gracerpc_loom"`, as the server's models).

use std::time::Duration;

#[cfg(gracerpc_loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(gracerpc_loom)]
use loom::thread::{Thread, current};
#[cfg(not(gracerpc_loom))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(gracerpc_loom))]
use std::thread::{Thread, current};

#[cfg(not(gracerpc_loom))]
type Lock<T> = parking_lot::Mutex<T>;
#[cfg(gracerpc_loom)]
type Lock<T> = loom::sync::Mutex<T>;

#[cfg(not(gracerpc_loom))]
fn lock<T>(m: &Lock<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}

#[cfg(gracerpc_loom)]
fn lock<T>(m: &Lock<T>) -> loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parks the calling thread at most `slice` (loom: until unparked; a lost wake-up is then a
/// deadlock the model reports).
fn park(slice: Duration) {
    #[cfg(not(gracerpc_loom))]
    std::thread::park_timeout(slice);
    #[cfg(gracerpc_loom)]
    {
        let _ = slice;
        loom::thread::park();
    }
}

pub(super) struct ReadyList {
    inner: Lock<Inner>,
}

struct Inner {
    lanes: Vec<usize>,
    /// The thread waiting for a lane, parked (or about to): a push must unpark it.
    sleeping: Option<Thread>,
}

impl ReadyList {
    /// A list for `lanes` lanes (each is on it at most once, so it never grows past that).
    pub fn with_capacity(lanes: usize) -> ReadyList {
        ReadyList {
            inner: Lock::new(Inner {
                lanes: Vec::with_capacity(lanes),
                sleeping: None,
            }),
        }
    }

    /// Puts `lane` on the list, and unparks the thread waiting for one.
    fn push(&self, lane: usize) {
        let sleeping = {
            let mut g = lock(&self.inner);
            g.lanes.push(lane);
            g.sleeping.clone()
        };
        if let Some(t) = sleeping {
            t.unpark();
        }
    }

    /// Swaps the list with `into` (emptied first). Returns false if the list was empty.
    pub fn take(&self, into: &mut Vec<usize>) -> bool {
        into.clear();
        std::mem::swap(into, &mut lock(&self.inner).lanes);
        !into.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.inner).lanes.is_empty()
    }

    /// Parks the calling thread until a lane is pushed (at most `slice`), unless one is on the
    /// list already.
    pub fn sleep(&self, slice: Duration) {
        {
            let mut g = lock(&self.inner);
            if !g.lanes.is_empty() {
                return;
            }
            g.sleeping = Some(current());
        }
        park(slice);
        lock(&self.inner).sleeping = None;
    }
}

/// A lane's mark: set while the lane is on the list (or in the round being polled).
pub(super) struct LaneMark {
    lane: usize,
    queued: AtomicBool,
}

impl LaneMark {
    pub fn new(lane: usize) -> LaneMark {
        LaneMark {
            lane,
            queued: AtomicBool::new(false),
        }
    }

    /// Puts the lane on `list` unless it is there already.
    pub fn wake(&self, list: &ReadyList) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            list.push(self.lane);
        }
    }

    /// The set is about to poll the lane: a wake-up from now on puts it on the list again.
    pub fn polling(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

#[cfg(all(test, gracerpc_loom))]
mod loom_models {
    use loom::sync::Arc;

    use super::{LaneMark, ReadyList};

    /// A call's answer lands in its slot (a mutex, as `Slot`) and wakes its lane, while the set
    /// polls the lane (clears the mark, then looks at the slot) and, finding nothing, waits
    /// for the list: whatever the interleaving, the set sees the answer — a lost wake-up would
    /// leave it parked forever, which loom reports.
    #[test]
    fn loom_a_wake_during_a_poll_or_a_park_is_never_lost() {
        loom::model(|| {
            let list = Arc::new(ReadyList::with_capacity(1));
            let mark = Arc::new(LaneMark::new(0));
            let slot = Arc::new(loom::sync::Mutex::new(None::<u32>));
            // The lane starts on the list (a new future counts as woken).
            mark.wake(&list);
            let answer = {
                let (list, mark, slot) = (list.clone(), mark.clone(), slot.clone());
                loom::thread::spawn(move || {
                    *slot.lock().unwrap() = Some(7);
                    mark.wake(&list);
                })
            };
            let mut round = Vec::new();
            let seen = loop {
                if !list.take(&mut round) {
                    list.sleep(std::time::Duration::ZERO);
                    continue;
                }
                mark.polling();
                if let Some(v) = *slot.lock().unwrap() {
                    break v;
                }
            };
            assert_eq!(seen, 7);
            answer.join().unwrap();
        });
    }
}
