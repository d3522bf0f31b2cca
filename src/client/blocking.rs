//! Waiting for calls on the calling thread: the blocking API ([`CallFuture::wait`]) and
//! [`block_on`].
//!
//! Both read the answer from the socket themselves when they can (see `Link::read_own`)
//! instead of parking until the I/O thread hands it over: one thread hop less per call.
//! `wait` always can. `block_on` runs any future, which may wait for other things too (a
//! timer, a channel), and a thread blocked on a socket would not see their wake-ups; so it
//! reads its own answer only when nothing but that call can wake it: the call offered the
//! read while it was polled (`driver::offer_own_read`), and the call's slot holds the only
//! clone of the thread's waker (a waker nobody else holds cannot be woken by anybody else).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::call::{CallFuture, Response};
use super::driver::{Driver, OwnRead, driven_by, with_offers};
use super::error::CallError;

/// The longest a blocked [`block_on`] parks before it polls its future again, so a call's
/// deadline holds even if the I/O thread that would wake it is gone.
const BLOCK_ON_SLICE: Duration = Duration::from_millis(20);

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// This thread's waker; its strong count tells how many clones of it exist.
    static THREAD_WAKER: Arc<ThreadWaker> = Arc::new(ThreadWaker(std::thread::current()));
}

/// The read offered during the last poll, if there was exactly one and nothing but that call
/// can wake the thread. Every other offer gives back the reading its call may have claimed.
fn own_read_to_do(arc: &Arc<ThreadWaker>) -> Option<OwnRead> {
    with_offers(|offers| {
        let one = offers.len() == 1 && only_the_call_can_wake(arc);
        let chosen = if one { offers.pop() } else { None };
        for o in offers.drain(..) {
            o.link.give_back_claim(o.id);
        }
        chosen
    })
}

impl CallFuture<'_> {
    /// Runs the call to completion on the calling thread (the blocking API). Unlike
    /// [`block_on`], while its call is the only one outstanding on its connection the thread
    /// reads the answer from the socket itself rather than parking until the I/O thread hands
    /// it over, and it may take the reading over before its request is written.
    pub(crate) fn wait(mut self) -> Result<Response, CallError> {
        self.own_read = true;
        // A blocking call made inside a future that `block_on` or a `CallSet` polls reads for
        // itself here; it offers nothing to the outer driver.
        driven_by(Driver::Foreign, || self.wait_here())
    }

    fn wait_here(mut self) -> Result<Response, CallError> {
        THREAD_WAKER.with(|arc| {
            let waker = Waker::from(arc.clone());
            let mut cx = Context::from_waker(&waker);
            loop {
                if let Poll::Ready(v) = Pin::new(&mut self).poll(&mut cx) {
                    return v;
                }
                let read = match &self.inflight {
                    Some(f) => f.link.read_own(&self.client.table, f.id, self.deadline),
                    None => false,
                };
                if !read {
                    // Never longer than the call wants: its deadline holds without the I/O
                    // thread (which normally wakes it sooner).
                    let left = self.wake_at.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        std::thread::park_timeout(left);
                    }
                }
            }
        })
    }
}

/// Runs a future to completion on the calling thread, parking between polls (at most 20 ms at
/// a time, so a [`CallFuture`]'s deadline holds even if nothing wakes it). When the future
/// waits for nothing but one call, the thread reads that call's answer from the socket itself
/// (see the module docs).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    THREAD_WAKER.with(|arc| {
        let waker = Waker::from(arc.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            let polled = driven_by(Driver::BlockOn, || fut.as_mut().poll(&mut cx));
            let own = own_read_to_do(arc);
            if let Poll::Ready(v) = polled {
                // The future ended with a call still pending in it (it returned or dropped
                // the call): that call reads nothing here.
                if let Some(o) = own {
                    o.link.give_back_claim(o.id);
                }
                return v;
            }
            if let Some(o) = own
                && o.link.read_own(&o.table, o.id, o.deadline)
            {
                continue;
            }
            std::thread::park_timeout(BLOCK_ON_SLICE);
        }
    })
}

/// Whether the only clone of this thread's waker besides the thread-local and `block_on`'s
/// own is the one the offering call's slot holds. (A `wait` nested in the future has
/// returned, and dropped its clone, by now.)
fn only_the_call_can_wake(arc: &Arc<ThreadWaker>) -> bool {
    Arc::strong_count(arc) == 3
}
