//! Answers given later: a [`Responder`] a handler keeps and completes from any thread.
//!
//! Completing one is a compare-and-swap on the request's slot and a push of that slot on the
//! loop's done list (see `slot.rs`): it never blocks and never allocates. Exactly one answer
//! per request goes out — the responder's, or the server's if it answered first (the caller
//! cancelled, the deadline plus the grace passed, the connection closed); a later answer is
//! dropped and counted ([`ServerHandle::late_answers`](super::ServerHandle::late_answers)). A
//! responder dropped unanswered answers [`Status::INTERNAL`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::handler::{Failure, Reply, Request};
use super::loop_waker::LoopWaker;
use super::slot::{Answer, DoneList, JobState};
use crate::proto::{RejectReason, Status};

/// What responders share with the loop: the done list, the waker, and the counters.
pub(crate) struct Shared {
    pub done: DoneList,
    pub waker: Arc<LoopWaker>,
    /// Answers dropped because the request was already answered.
    pub late: AtomicU64,
}

impl Shared {
    pub fn new(waker: Arc<LoopWaker>) -> Arc<Shared> {
        Arc::new(Shared {
            done: DoneList::default(),
            waker,
            late: AtomicU64::new(0),
        })
    }

    /// Answers a running slot if nobody did yet: true if this answer goes out.
    pub fn answer(&self, slot: &Arc<JobState>, reply: Reply) -> bool {
        self.finish(slot, JobState::try_answer, Answer::Ran(reply), true)
    }

    /// Rejects a slot still queued (its runner dropped it unstarted): true if this one goes out.
    pub fn reject(&self, slot: &Arc<JobState>, reason: RejectReason) -> bool {
        self.finish(slot, JobState::try_reject, Answer::Rejected(reason), false)
    }

    /// Rejects a slot that this runner started but must not run (its deadline passed while it
    /// was queued, rule 6): the state is RUNNING, but no user code ran.
    pub fn reject_started(&self, slot: &Arc<JobState>, reason: RejectReason) -> bool {
        self.finish(slot, JobState::try_answer, Answer::Rejected(reason), false)
    }

    /// Answers a running slot unless someone did; a loss is not counted (nothing was said).
    pub fn answer_quietly(&self, slot: &Arc<JobState>, reply: Reply) -> bool {
        self.finish(slot, JobState::try_answer, Answer::Ran(reply), false)
    }

    fn finish(
        &self,
        slot: &Arc<JobState>,
        win: fn(&JobState) -> bool,
        a: Answer,
        count_late: bool,
    ) -> bool {
        if !win(slot) {
            if count_late {
                self.late.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        }
        slot.set_answer(a);
        self.done.push(slot.clone());
        self.waker.wake();
        true
    }
}

/// The way to answer a request later, from any thread. Given to a deferred handler
/// ([`Builder::deferred_handler`](super::Builder::deferred_handler)).
///
/// Answer it once with [`respond`](Self::respond) (or [`ok`](Self::ok) / [`fail`](Self::fail)).
/// Dropped unanswered, it answers [`Status::INTERNAL`]. Kept and never answered, the server
/// answers [`Status::DEADLINE_EXCEEDED`] at the request's deadline plus the grace
/// ([`Builder::deferred_grace`](super::Builder::deferred_grace)).
#[must_use = "a responder dropped unanswered answers INTERNAL"]
pub struct Responder {
    slot: Option<Arc<JobState>>,
    shared: Arc<Shared>,
    deadline: Instant,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.slot.as_ref().map(|s| s.id()))
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Responder {
    pub(crate) fn new(slot: Arc<JobState>, shared: Arc<Shared>, deadline: Instant) -> Responder {
        Responder {
            slot: Some(slot),
            shared,
            deadline,
        }
    }

    /// Sends the answer. Returns false if the request was already answered (cancelled by the
    /// caller, past its deadline and grace, or its connection closed): this answer is dropped.
    pub fn respond(mut self, reply: Reply) -> bool {
        match self.slot.take() {
            Some(slot) => self.shared.answer(&slot, reply),
            None => false,
        }
    }

    /// Answers with [`Status::OK`] and `body`.
    pub fn ok(self, body: impl Into<Vec<u8>>) -> bool {
        self.respond(Ok(body.into()))
    }

    /// Answers with a failure.
    pub fn fail(self, failure: Failure) -> bool {
        self.respond(Err(failure))
    }

    /// Whether the server answered for this request already (the caller cancelled it, its
    /// deadline plus the grace passed, or its connection closed): work on it may stop.
    pub fn is_answered(&self) -> bool {
        self.slot.as_ref().is_none_or(|s| s.is_settled())
    }

    /// The request id.
    pub fn id(&self) -> u64 {
        self.slot.as_ref().map_or(0, |s| s.id())
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How long the caller still waits, from now.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let f = Failure::new(
                Status::INTERNAL,
                "the handler dropped its responder unanswered",
            );
            self.shared.answer_quietly(&slot, Err(f));
        }
    }
}

/// A method implementation that answers later through a [`Responder`]. Any
/// `Fn(&Request, Responder) + Send + Sync` closure is one.
pub trait DeferredHandler: Send + Sync + 'static {
    /// Starts the method; `responder` answers it, now or later, from any thread.
    fn call(&self, req: &Request<'_>, responder: Responder);
}

impl<F> DeferredHandler for F
where
    F: Fn(&Request<'_>, Responder) + Send + Sync + 'static,
{
    fn call(&self, req: &Request<'_>, responder: Responder) {
        self(req, responder)
    }
}

/// Starts a deferred handler on a slot this thread just started: a panic before the responder
/// was answered drops it, which answers INTERNAL.
pub(crate) fn run_deferred(
    handler: &dyn DeferredHandler,
    req: &Request<'_>,
    slot: Arc<JobState>,
    shared: &Arc<Shared>,
) {
    let responder = Responder::new(slot, shared.clone(), req.deadline);
    let _span = super::trace::enter(req);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handler.call(req, responder)
    }));
}
