//! Which thread delivers a call's answer: a call polled through [`Deliveries::watch`] counts,
//! each time its waker is woken, whether that happened on the thread that polled it (a caller
//! reading its own answers) or on another (the client's I/O thread).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

/// Wake-ups counted by thread: on the polling thread, elsewhere; and how many times the
/// answers went from the polling thread to another (a takeover: the other thread delivers
/// from then on, until the polling thread reads again).
#[derive(Clone, Default)]
pub struct Deliveries {
    on_caller: Arc<AtomicUsize>,
    elsewhere: Arc<AtomicUsize>,
    /// The last delivery was on the polling thread.
    last_on_caller: Arc<AtomicBool>,
    takeovers: Arc<AtomicUsize>,
}

impl Deliveries {
    /// `call`, counted.
    pub fn watch<F: Future>(&self, call: F) -> Witnessed<F> {
        Witnessed {
            call: Box::pin(call),
            count: self.clone(),
        }
    }

    /// (on the polling thread, elsewhere)
    pub fn counts(&self) -> (usize, usize) {
        (
            self.on_caller.load(Ordering::Relaxed),
            self.elsewhere.load(Ordering::Relaxed),
        )
    }

    /// Times another thread delivered right after the polling thread had (the answers
    /// before the poller first read are not one).
    #[allow(dead_code)] // (not every test crate that includes this file asks)
    pub fn takeovers(&self) -> usize {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Most answers were delivered on the polling thread (a few may come through the I/O
    /// thread: before the poller takes the reading over, or at its tick).
    pub fn assert_mostly_on_caller(&self) {
        let (mine, io) = self.counts();
        assert!(
            mine > io,
            "{mine} answers were delivered on the polling thread and {io} on another: it did \
             not read its own"
        );
    }
}

struct Witness {
    inner: Waker,
    count: Deliveries,
    caller: ThreadId,
}

impl Wake for Witness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let on_caller = std::thread::current().id() == self.caller;
        let n = if on_caller {
            &self.count.on_caller
        } else {
            &self.count.elsewhere
        };
        n.fetch_add(1, Ordering::Relaxed);
        if self.count.last_on_caller.swap(on_caller, Ordering::Relaxed) && !on_caller {
            self.count.takeovers.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.wake_by_ref();
    }
}

/// A call polled with a [`Witness`] around its executor's waker (the only clone of it the
/// call's slot holds, so an executor that proves "nothing else can wake it" still can).
pub struct Witnessed<F> {
    call: Pin<Box<F>>,
    count: Deliveries,
}

impl<F: Future> Future for Witnessed<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let w = Waker::from(Arc::new(Witness {
            inner: cx.waker().clone(),
            count: self.count.clone(),
            caller: std::thread::current().id(),
        }));
        self.call.as_mut().poll(&mut Context::from_waker(&w))
    }
}
