//! Async handlers (feature `tokio`): `async` methods run on a tokio runtime the user supplies.
//!
//! Built on the same per-request slot as deferred handlers (`slot.rs`):
//! * **started** means the task's first poll won QUEUED → RUNNING. A task that lost (the loop
//!   rejected it while it waited for the runtime: drain, CANCEL, deadline) runs no user code;
//! * a task dropped before its first poll (the runtime shut down, or refused it) rejects the
//!   request SHUTDOWN_REJECT(SHUTTING_DOWN): it never ran, so the caller replays it elsewhere;
//! * a started one cancelled by CANCEL or by its deadline is answered by the loop with RESPONSE
//!   status CANCELLED or DEADLINE_EXCEEDED (it ran: never a reject), and its future is dropped
//!   at its next poll; one that panics, or is dropped mid-run by the runtime, answers INTERNAL.
//!
//! The event loop spawns the task itself: no worker thread is involved.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::handler::{Failure, Reply, Request};
use super::responder::Shared;
use super::slot::JobState;
use crate::proto::frame::{Metadata, MetadataBuf};
use crate::proto::{RejectReason, Status};

/// The future an [`AsyncHandler`] returns.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// An async method implementation. Any `Fn(OwnedRequest) -> impl Future<Output = Reply>`
/// closure (`Send + Sync`, its future `Send + 'static`) is one.
pub trait AsyncHandler: Send + Sync + 'static {
    /// Starts the method; the future's output is the answer.
    fn call(&self, req: OwnedRequest) -> ReplyFuture;
}

impl<F, Fut> AsyncHandler for F
where
    F: Fn(OwnedRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    fn call(&self, req: OwnedRequest) -> ReplyFuture {
        Box::pin(self(req))
    }
}

/// A request an async handler owns (it outlives the event loop's buffers).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OwnedRequest {
    /// The request id on its connection.
    pub id: u64,
    /// The method name.
    pub method: Arc<str>,
    /// The payload.
    pub body: Vec<u8>,
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Whether the caller marked the request safe to run more than once.
    pub idempotent: bool,
    /// The caller's address.
    pub peer: SocketAddr,
    /// The caller's metadata.
    pub metadata: MetadataBuf,
    /// The caller's verified client certificate (mutual TLS).
    pub identity: Option<Arc<crate::server::PeerIdentity>>,
}

impl OwnedRequest {
    /// The borrowed view handlers and
    /// [`CallOptions::from_request`](crate::client::CallOptions::from_request) take.
    pub fn as_request(&self) -> Request<'_> {
        Request {
            id: self.id,
            method: &self.method,
            body: &self.body,
            deadline: self.deadline,
            idempotent: self.idempotent,
            peer: self.peer,
            metadata: self.metadata.as_metadata(),
            identity: self.identity.as_deref(),
        }
    }

    /// How long the caller still waits, from now.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The caller's metadata.
    pub fn metadata(&self) -> Metadata<'_> {
        self.metadata.as_metadata()
    }
}

/// A registered async method: the handler and the runtime it runs on.
pub(crate) struct AsyncEntry {
    /// The method's name, shared by every request's `OwnedRequest` (no allocation per call).
    method: Arc<str>,
    handler: Arc<dyn AsyncHandler>,
    runtime: tokio::runtime::Handle,
}

impl AsyncEntry {
    pub fn new(method: &str, h: impl AsyncHandler, runtime: &tokio::runtime::Handle) -> Self {
        AsyncEntry {
            method: Arc::from(method),
            handler: Arc::new(h),
            runtime: runtime.clone(),
        }
    }

    /// Spawns the request's task on the runtime (from the loop thread; never blocks).
    pub fn spawn(&self, req: &Request<'_>, state: Arc<JobState>, shared: &Arc<Shared>) {
        let owned = OwnedRequest {
            id: req.id,
            method: if *self.method == *req.method {
                self.method.clone()
            } else {
                Arc::from(req.method)
            },
            body: req.body.to_vec(),
            deadline: req.deadline,
            idempotent: req.idempotent,
            peer: req.peer,
            metadata: MetadataBuf::from_metadata(req.metadata),
            identity: req.identity.map(|i| Arc::new(i.clone())),
        };
        let guard = Guard {
            state,
            shared: shared.clone(),
            phase: Phase::Unpolled,
        };
        let handler = self.handler.clone();
        super::trace::log_async(req);
        #[cfg(feature = "tracing")]
        let task =
            tracing::Instrument::instrument(run(guard, handler, owned), super::trace::span(req));
        #[cfg(not(feature = "tracing"))]
        let task = run(guard, handler, owned);
        drop(self.runtime.spawn(task));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not polled yet: dropped now, the request never ran.
    Unpolled,
    /// User code is running: dropped now (panic, runtime gone), it answers INTERNAL.
    Running,
    /// Answered, or lost the start: nothing to do.
    Done,
}

/// Answers for the task whatever way it ends.
struct Guard {
    state: Arc<JobState>,
    shared: Arc<Shared>,
    phase: Phase,
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self.phase {
            Phase::Unpolled => {
                // Never polled (the runtime shut down): never ran, so a reject, never INTERNAL.
                self.shared.reject(&self.state, RejectReason::SHUTTING_DOWN);
            }
            Phase::Running => {
                let f = Failure::new(
                    Status::INTERNAL,
                    "the async handler panicked or was dropped",
                );
                self.shared.answer_quietly(&self.state, Err(f));
            }
            Phase::Done => {}
        }
    }
}

async fn run(mut guard: Guard, handler: Arc<dyn AsyncHandler>, req: OwnedRequest) {
    if !guard.state.try_start() {
        guard.phase = Phase::Done; // the loop rejected it first: no user code runs
        return;
    }
    if Instant::now() >= req.deadline {
        // Rule 6: started by this task, but past its deadline before any user code ran.
        guard.phase = Phase::Done;
        guard
            .shared
            .reject_started(&guard.state, RejectReason::DEADLINE);
        return;
    }
    guard.phase = Phase::Running;
    let mut fut = handler.call(req);
    let state = guard.state.clone();
    let out = std::future::poll_fn(|cx| {
        // Register first, then look: the loop settles the state and then wakes, so a
        // cancellation between the two is seen either here or by the wake-up.
        state.register_waker(cx.waker());
        if state.is_settled() {
            return Poll::Ready(None); // answered by the loop (CANCEL, deadline): stop
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await;
    drop(fut);
    guard.phase = Phase::Done;
    if let Some(reply) = out {
        guard.shared.answer(&guard.state, reply);
    }
}
