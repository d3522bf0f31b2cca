//! One call: choose a node, send, wait for the outcome, and replay when — and only when — the
//! request provably did not run (or is idempotent).
//!
//! The rules come from the core's [`Outcome`]s; nothing here guesses:
//!
//! | outcome                          | what the call does                                   |
//! |----------------------------------|------------------------------------------------------|
//! | Completed OK / other status      | returns the body / `CallError::Status`               |
//! | Rejected (any reason)            | replays on another node (unless replay is off)       |
//! | Unknown                          | retries if idempotent, else `CallError::OutcomeUnknown` |
//! | DeadlineExceeded                 | `CallError::DeadlineExceeded { may_have_run }`       |
//!
//! A node that turns a request away as busy (OVERLOADED, NOT_READY) may be the only one, or all
//! nodes may be full (the survivors of a drain): after the first such replay, the next ones wait
//! a short, doubling pause ([`BUSY_PAUSE_MIN`] to [`BUSY_PAUSE_MAX`]) within the deadline instead
//! of spending the call's replays in a burst.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::ClientInner;
use super::error::CallError;
use super::link::{Link, SendFail};
use super::slot::Slot;
use super::table::Node;
use crate::proto::{Outcome, RejectReason, Rejection, Status};

/// The first pause before replaying a request a node turned away as busy.
const BUSY_PAUSE_MIN: Duration = Duration::from_millis(1);
/// The longest such pause.
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(50);

/// Per-call options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// How long the call may take in all, replays included (default: the client's).
    pub deadline: Option<Duration>,
    /// The request may safely run more than once: retried even when its outcome is unknown.
    pub idempotent: bool,
}

impl CallOptions {
    /// The defaults: the client's deadline, not idempotent.
    pub fn new() -> CallOptions {
        CallOptions::default()
    }

    /// Sets the deadline.
    pub fn deadline(mut self, d: Duration) -> CallOptions {
        self.deadline = Some(d);
        self
    }

    /// Marks the call idempotent.
    pub fn idempotent(mut self, yes: bool) -> CallOptions {
        self.idempotent = yes;
        self
    }
}

/// A successful call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The response body.
    pub body: Vec<u8>,
    /// The node that answered.
    pub node: SocketAddr,
    /// How many times the request was replayed because a node rejected it unrun.
    pub replays: u32,
}

struct InFlight {
    link: Arc<Link>,
    node: Arc<Node>,
    id: u64,
}

/// A call in progress: a `Future` usable on any executor (no runtime needed). It borrows the
/// method and body for `'a`; [`Client::call_async`](super::Client::call_async) returns an owning
/// `CallFuture<'static>`. Dropping it before it completes forgets the answer and sends CANCEL (a
/// hint: the server may still run it).
#[must_use = "a call does nothing unless polled"]
pub struct CallFuture<'a> {
    client: Arc<ClientInner>,
    method: Cow<'a, str>,
    body: Cow<'a, [u8]>,
    idempotent: bool,
    deadline: Instant,
    /// Always `Some` until drop (an `Option` only so drop can move it back to the pool).
    slot: Option<Arc<Slot>>,
    inflight: Option<InFlight>,
    replays: u32,
    retries: u32,
    avoid: Option<usize>,
    may_have_run: bool,
    started: bool,
    /// Busy rejections (OVERLOADED, NOT_READY) in a row.
    busy: u32,
    /// Do not send again before this (a pause after busy rejections).
    pause_until: Option<Instant>,
}

impl<'a> CallFuture<'a> {
    pub(crate) fn new(
        client: Arc<ClientInner>,
        method: Cow<'a, str>,
        body: Cow<'a, [u8]>,
        opts: &CallOptions,
    ) -> CallFuture<'a> {
        let budget = crate::capped(opts.deadline.unwrap_or(client.cfg.default_deadline));
        let deadline = Instant::now() + budget;
        client.active_calls.fetch_add(1, Ordering::AcqRel);
        CallFuture {
            client,
            method,
            body,
            idempotent: opts.idempotent,
            deadline,
            slot: Some(super::slot::take_pooled()),
            inflight: None,
            replays: 0,
            retries: 0,
            avoid: None,
            may_have_run: false,
            started: true,
            busy: 0,
            pause_until: None,
        }
    }

    fn decide(&mut self, outcome: Outcome, node: &Node) -> Option<Result<Response, CallError>> {
        let cfg = &self.client.cfg;
        let stats = &self.client.stats;
        match outcome {
            Outcome::Completed { status, body } if status == Status::OK => Some(Ok(Response {
                body,
                node: node.addr(),
                replays: self.replays,
            })),
            Outcome::Completed { status, body } => Some(Err(CallError::Status { status, body })),
            Outcome::Rejected(why) => {
                if !cfg.replay {
                    return Some(Err(CallError::Rejected));
                }
                self.replays += 1;
                stats.replayed.fetch_add(1, Ordering::Relaxed);
                if self.replays > cfg.max_replays {
                    return Some(Err(CallError::Rejected));
                }
                self.avoid = Some(node.index());
                let busy = matches!(
                    why,
                    Rejection::Server(RejectReason::OVERLOADED | RejectReason::NOT_READY)
                );
                self.busy = if busy { self.busy + 1 } else { 0 };
                if self.busy >= 2 {
                    let pause = BUSY_PAUSE_MIN
                        .saturating_mul(1 << (self.busy - 2).min(16))
                        .min(BUSY_PAUSE_MAX);
                    self.pause_until = Some(Instant::now() + pause);
                }
                None
            }
            Outcome::Unknown => {
                if !(cfg.replay && self.idempotent) || self.retries >= cfg.max_replays {
                    stats.outcome_unknown.fetch_add(1, Ordering::Relaxed);
                    return Some(Err(CallError::OutcomeUnknown));
                }
                self.retries += 1;
                self.may_have_run = true;
                stats.retried.fetch_add(1, Ordering::Relaxed);
                self.avoid = Some(node.index());
                None
            }
            Outcome::DeadlineExceeded { sent } => Some(Err(CallError::DeadlineExceeded {
                may_have_run: sent || self.may_have_run,
            })),
        }
    }

    /// Tries to send on a chosen node. `Ok(true)`: sent; `Ok(false)`: nothing choosable.
    fn try_send(&mut self, now: Instant) -> Result<bool, CallError> {
        let table = &self.client.table;
        for _ in 0..4 {
            let Some(node) = table.choose(now, self.avoid) else {
                return Ok(false);
            };
            let link = node.current.lock().clone();
            let Some(link) = link else { continue };
            match link.send(
                table,
                now,
                &self.method,
                &self.body,
                self.deadline,
                self.idempotent,
                self.slot.as_ref().expect("slot present until drop"),
            ) {
                Ok(id) => {
                    self.inflight = Some(InFlight { link, node, id });
                    return Ok(true);
                }
                Err(SendFail::NotSendable) => continue,
                Err(SendFail::Invalid(e)) => return Err(CallError::Invalid(e)),
            }
        }
        Ok(false)
    }
}

impl Future for CallFuture<'_> {
    type Output = Result<Response, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let Some(f) = &this.inflight {
                let slot = this.slot.as_ref().expect("slot present until drop");
                let outcome = match slot.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(o) => o,
                };
                let node = f.node.clone();
                this.inflight = None;
                if let Some(result) = this.decide(outcome, &node) {
                    return Poll::Ready(this.finish(result));
                }
            }
            if this.client.closed.load(Ordering::Acquire) {
                return Poll::Ready(this.finish(Err(CallError::Closed)));
            }
            let now = Instant::now();
            if now >= this.deadline {
                let err = if this.may_have_run {
                    CallError::DeadlineExceeded { may_have_run: true }
                } else {
                    CallError::NoNodeAvailable
                };
                return Poll::Ready(this.finish(Err(err)));
            }
            if let Some(until) = this.pause_until {
                if now < until {
                    this.client
                        .waiters
                        .register(cx.waker(), until.min(this.deadline));
                    this.client.wake_io();
                    return Poll::Pending;
                }
                this.pause_until = None;
            }
            // Read the epoch before choosing, so a node that becomes ready in between wakes us.
            let epoch = this.client.table.ready_epoch.load(Ordering::Acquire);
            match this.try_send(now) {
                Ok(true) => continue,
                Ok(false) => {
                    this.client.waiters.register(cx.waker(), this.deadline);
                    this.client.wake_io();
                    if this.client.table.ready_epoch.load(Ordering::Acquire) != epoch {
                        continue;
                    }
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(this.finish(Err(e))),
            }
        }
    }
}

impl CallFuture<'_> {
    fn finish(&mut self, r: Result<Response, CallError>) -> Result<Response, CallError> {
        if std::mem::take(&mut self.started) {
            self.client.call_ended();
        }
        match r {
            // An earlier attempt of this (idempotent) call may have run: an error that says
            // "it never ran" (closed, rejected everywhere since) would be a lie.
            Err(e) if self.may_have_run && !e.may_have_run() => Err(CallError::OutcomeUnknown),
            r => r,
        }
    }
}

impl Drop for CallFuture<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.inflight.take() {
            f.link.cancel(&self.client.table, f.id);
        }
        if self.started {
            self.client.call_ended();
        }
        if let Some(slot) = self.slot.take() {
            super::slot::return_pooled(slot);
        }
    }
}

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
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
}

impl CallFuture<'_> {
    /// Runs the call to completion on the calling thread (the blocking API). Unlike
    /// [`block_on`], while its call is the only one outstanding on its connection the thread
    /// reads the answer from the socket itself rather than parking until the I/O thread hands
    /// it over: one thread hop less per call.
    pub(crate) fn wait(mut self) -> Result<Response, CallError> {
        THREAD_WAKER.with(|waker| {
            let mut cx = Context::from_waker(waker);
            loop {
                if let Poll::Ready(v) = Pin::new(&mut self).poll(&mut cx) {
                    return v;
                }
                let read = match &self.inflight {
                    Some(f) => f.link.read_own(&self.client.table, f.id, self.deadline),
                    None => false,
                };
                if !read {
                    std::thread::park();
                }
            }
        })
    }
}

/// Runs a future to completion on the calling thread, parking between polls.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    THREAD_WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    })
}
