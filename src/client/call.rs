//! One call: choose a node, send, wait for the outcome, and replay when — and only when — the
//! request provably did not run (or is idempotent).
//!
//! The rules come from the core's [`Outcome`]s; nothing here guesses. What to do after each
//! attempt — end, replay at once, or replay after a busy pause within the client's retry
//! budget — is decided by the sans-IO replay policy in [`policy`](super::policy), the same code
//! the whole-cluster simulation drives.
//!
//! A call never depends on the I/O thread alone to end: a blocking call parks with a timeout
//! and checks its deadline itself (running its connection's timers if they are overdue), and
//! the I/O thread's failure ends every call with `CallError::IoFailed`.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::ClientInner;
use super::driver::{self, Driver};
use super::error::CallError;
use super::link::{Link, SendFail, SendMode};
use super::policy::{Attempts, BUSY_PAUSE_MAX, Policy, Verdict};
use super::routes::lane_hint;
use super::slot::Slot;
use super::table::{Node, NodeSet, random_below};
use crate::proto::Outcome;
use crate::proto::frame::{MetadataBuf, MetadataError};

/// How long a node may refuse connections before a call gives up on it: a restart takes less,
/// a wrong address or a stopped service more. Counted from the node's first refusal, which may
/// come before the call; a call with a shorter deadline waits for the node until its deadline,
/// never less (it fails fast only on a node refusing this long already).
const REFUSED_PATIENCE: Duration = Duration::from_secs(1);
/// When the node chosen had just lost its connection (a GOAWAY racing the choice), look
/// again this soon: its state changes within microseconds.
const RACE_RETRY: Duration = Duration::from_millis(1);

/// Per-call options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// How long the call may take in all, replays included (default: the client's).
    pub deadline: Option<Duration>,
    /// The request may safely run more than once: retried even when its outcome is unknown.
    pub idempotent: bool,
    /// Key/value headers sent with the request (trace context, tenant, …), to servers that
    /// negotiated them (HELLO feature bit 1); dropped silently for older servers.
    pub metadata: MetadataBuf,
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

    /// Adds a metadata entry; fails past the limits (16 entries, 4096 bytes, keys of
    /// `[a-z0-9._-]`).
    pub fn header(
        mut self,
        key: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<CallOptions, MetadataError> {
        self.metadata.insert(key, value.as_ref())?;
        Ok(self)
    }

    /// Options for a downstream call made while handling `req`: its deadline is what the
    /// caller of `req` still waits (so a chain of services never works past what the first
    /// caller waits for), and it carries `req`'s W3C trace context (`traceparent`,
    /// `tracestate`). Add more with [`propagate`](Self::propagate).
    pub fn from_request(req: &crate::server::Request<'_>) -> CallOptions {
        let mut opts = CallOptions::new().deadline(req.remaining());
        for key in TRACE_KEYS {
            opts = opts.propagate(req, key);
        }
        opts
    }

    /// Copies `req`'s metadata entry `key`, if it has one (and if it fits: the caller's entries
    /// were within the same limits).
    pub fn propagate(mut self, req: &crate::server::Request<'_>, key: &str) -> CallOptions {
        if let Some(v) = req.metadata().get(key) {
            let _ = self.metadata.insert(key, v);
        }
        self
    }
}

/// The metadata keys [`CallOptions::from_request`] passes on.
const TRACE_KEYS: [&str; 2] = ["traceparent", "tracestate"];

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

pub(super) struct InFlight {
    pub(super) link: Arc<Link>,
    node: Arc<Node>,
    pub(super) id: u64,
}

/// A call in progress: a `Future` usable on any executor (no runtime needed). It borrows the
/// method and body for `'a`; [`Client::call_async`](super::Client::call_async) returns an owning
/// `CallFuture<'static>`. Dropping it before it completes forgets the answer and sends CANCEL (a
/// hint: the server may still run it).
#[must_use = "a call does nothing unless polled"]
pub struct CallFuture<'a> {
    pub(super) client: Arc<ClientInner>,
    method: Cow<'a, str>,
    body: Cow<'a, [u8]>,
    idempotent: bool,
    metadata: MetadataBuf,
    pub(super) deadline: Instant,
    /// Always `Some` until drop (an `Option` only so drop can move it back to the pool).
    slot: Option<Arc<Slot>>,
    pub(super) inflight: Option<InFlight>,
    /// The replay policy's memory of this call's attempts.
    attempts: Attempts,
    started: bool,
    /// Do not send again before this (a pause after busy rejections).
    pause_until: Option<Instant>,
    /// When the call wants to be polled again at the latest (its deadline, the end of a
    /// pause): a blocking wait parks no longer than this.
    pub(super) wake_at: Instant,
    /// The calling thread waits for the answer itself (`blocking::wait`): it may take the
    /// reading of its connection over before its request goes out.
    pub(super) own_read: bool,
}

/// What [`CallFuture::try_send`] found.
enum Sent {
    Yes,
    /// Nothing choosable; wait for a node (or `Some` instant to look again).
    Wait(Option<Instant>),
    /// Every node is hopeless: fail now.
    Hopeless,
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
            metadata: opts.metadata.clone(),
            deadline,
            slot: Some(super::slot::take_pooled()),
            inflight: None,
            attempts: Attempts::new(),
            started: true,
            pause_until: None,
            wake_at: deadline,
            own_read: false,
        }
    }

    /// The error of a call that found no node.
    fn no_node(&self, now: Instant) -> CallError {
        CallError::NoNodeAvailable {
            nodes: self.client.table.report(now),
        }
    }

    fn decide(&mut self, outcome: Outcome, node: &Node) -> Option<Result<Response, CallError>> {
        let cfg = &self.client.cfg;
        let stats = &self.client.stats;
        // A rejected or unknown attempt would be sent again, but the I/O thread that would
        // carry it is gone: end with that cause instead.
        if matches!(outcome, Outcome::Rejected(_) | Outcome::Unknown)
            && let Some(cause) = self.client.health.failure()
        {
            let may_have_run = matches!(outcome, Outcome::Unknown) || self.attempts.may_have_run();
            return Some(Err(CallError::IoFailed {
                cause,
                may_have_run,
            }));
        }
        let policy = Policy {
            replay: cfg.replay,
            max_replays: cfg.max_replays,
        };
        let before = (self.attempts.replays(), self.attempts.retries());
        let verdict = self.attempts.decide(
            policy,
            self.idempotent,
            outcome,
            node.index(),
            &self.client.budget,
            &mut random_below,
        );
        if self.attempts.replays() > before.0 {
            stats.replayed.fetch_add(1, Ordering::Relaxed);
        }
        if self.attempts.retries() > before.1 {
            stats.retried.fetch_add(1, Ordering::Relaxed);
        }
        match verdict {
            Verdict::Done(body) => Some(Ok(Response {
                body,
                node: node.addr(),
                replays: self.attempts.replays(),
            })),
            Verdict::Fail(e) => Some(Err(e)),
            Verdict::Again { pause } => {
                if let Some(p) = pause {
                    self.pause_until = Some(Instant::now() + p);
                }
                None
            }
        }
    }

    /// Tries to send on a chosen node. A node chosen without a usable connection (it was
    /// detached by a GOAWAY racing the choice, or its output is full) is skipped, and the
    /// others are tried.
    fn try_send(&mut self, now: Instant) -> Result<Sent, CallError> {
        let table = &self.client.table;
        let mut skip = NodeSet::default();
        let mut raced = false;
        let lane = lane_hint();
        while let Some(node) = table.choose_except(now, self.attempts.avoid(), &skip) {
            skip.insert(node.index());
            // This thread's lane first; another of the node's lanes if that one cannot take
            // the call now (still connecting, or its output full).
            let mut tried = 0;
            loop {
                let Some(link) = self.client.routes.get(node.index(), lane + tried) else {
                    raced = true;
                    break;
                };
                match link.send(
                    table,
                    now,
                    &self.method,
                    self.metadata.as_metadata(),
                    &self.body,
                    self.deadline,
                    self.idempotent,
                    self.slot.as_ref().expect("slot present until drop"),
                    self.send_mode(),
                ) {
                    Ok((id, deferred)) => {
                        if deferred {
                            super::call_set::defer_flush(&link, &self.client.table);
                        }
                        self.inflight = Some(InFlight { link, node, id });
                        return Ok(Sent::Yes);
                    }
                    Err(SendFail::NotSendable) => raced = true,
                    Err(SendFail::Full) => {}
                    Err(SendFail::Invalid(e)) => return Err(CallError::Invalid(e)),
                }
                tried += 1;
                if tried >= self.client.routes.count(node.index()) {
                    break;
                }
            }
        }
        if raced {
            return Ok(Sent::Wait(Some(now + RACE_RETRY)));
        }
        if !skip.is_empty() {
            // Every choosable node's output is full: look again shortly.
            return Ok(Sent::Wait(Some(now + BUSY_PAUSE_MAX)));
        }
        match table.hopeless(now, REFUSED_PATIENCE) {
            Ok(()) => Ok(Sent::Hopeless),
            Err(recheck) => Ok(Sent::Wait(recheck)),
        }
    }

    /// How this call's request is written, by who waits for it (see [`SendMode`]).
    fn send_mode(&self) -> SendMode {
        match driver::driver() {
            _ if self.own_read => SendMode::Claim,
            Driver::BlockOn => SendMode::Claim,
            Driver::Set { long_round } => SendMode::Defer { long_round },
            Driver::Foreign => SendMode::Now,
        }
    }

    /// Registers to be woken at `at` (or when a node becomes choosable), and notes when a
    /// blocking wait must look again.
    fn wait_until(&mut self, cx: &Context<'_>, at: Instant) {
        let at = at.min(self.deadline);
        self.wake_at = at;
        self.client.waiters.register(cx.waker(), at);
        self.client.wake_io();
    }

    /// Whether the call must end now (closed client, failed I/O thread).
    fn stopped(&self) -> Option<CallError> {
        if self.client.closed.load(Ordering::Acquire) {
            return Some(CallError::Closed);
        }
        self.client
            .health
            .failure()
            .map(|cause| CallError::IoFailed {
                cause,
                may_have_run: self.attempts.may_have_run(),
            })
    }
}

impl Future for CallFuture<'_> {
    type Output = Result<Response, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut ran_timers = false;
        loop {
            if let Some(f) = &this.inflight {
                let slot = this.slot.as_ref().expect("slot present until drop");
                let outcome = match slot.poll(cx) {
                    Poll::Ready(o) => o,
                    Poll::Pending => {
                        let now = Instant::now();
                        if now >= this.deadline && !ran_timers {
                            // The I/O thread should have ended it: do it here (it may be
                            // gone or stalled), then look at the slot again.
                            ran_timers = true;
                            f.link.run_timers(&this.client.table, now);
                            continue;
                        }
                        this.wake_at = this.deadline;
                        if driver::driver() != Driver::Foreign {
                            let table = &this.client.table;
                            driver::offer_own_read(&f.link, f.id, table, this.deadline);
                        }
                        return Poll::Pending;
                    }
                };
                let node = f.node.clone();
                this.inflight = None;
                if let Some(result) = this.decide(outcome, &node) {
                    return Poll::Ready(this.finish(result));
                }
            }
            if let Some(e) = this.stopped() {
                return Poll::Ready(this.finish(Err(e)));
            }
            let now = Instant::now();
            if now >= this.deadline {
                let err = if this.attempts.may_have_run() {
                    CallError::DeadlineExceeded { may_have_run: true }
                } else {
                    this.no_node(now)
                };
                return Poll::Ready(this.finish(Err(err)));
            }
            if let Some(until) = this.pause_until {
                if now < until {
                    this.wait_until(cx, until);
                    // Registered first, checked after: a close or failure in between still
                    // wakes us, or we see it here.
                    if let Some(e) = this.stopped() {
                        return Poll::Ready(this.finish(Err(e)));
                    }
                    return Poll::Pending;
                }
                this.pause_until = None;
            }
            // Read the epoch before choosing, so a node that becomes ready in between wakes us.
            let epoch = this.client.table.ready_epoch.load(Ordering::Acquire);
            match this.try_send(now) {
                Ok(Sent::Yes) => continue,
                Ok(Sent::Wait(recheck)) => {
                    this.wait_until(cx, recheck.unwrap_or(this.deadline));
                    if this.stopped().is_some()
                        || this.client.table.ready_epoch.load(Ordering::Acquire) != epoch
                    {
                        continue;
                    }
                    return Poll::Pending;
                }
                Ok(Sent::Hopeless) => {
                    let err = this.no_node(now);
                    return Poll::Ready(this.finish(Err(err)));
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
        let r = match r {
            // An earlier attempt of this (idempotent) call may have run: an error that says
            // "it never ran" (closed, rejected everywhere since) would be a lie.
            Err(e) if self.attempts.may_have_run() && !e.may_have_run() => {
                Err(CallError::OutcomeUnknown)
            }
            r => r,
        };
        if matches!(r, Err(CallError::OutcomeUnknown)) {
            self.client
                .stats
                .outcome_unknown
                .fetch_add(1, Ordering::Relaxed);
        }
        r
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
