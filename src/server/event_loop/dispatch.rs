//! Handing an accepted request to its handler: inline on the loop thread, to a worker, to an
//! async runtime, or answered at once (unknown method, queue or deferred cap full).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Stats;
use super::expiry::Expiries;
use crate::proto::{Accepted, RejectReason, ServerConn, Status};
use crate::server::handler::{Placement, Request, run_handler};
use crate::server::registry::{Callable, Registry};
use crate::server::responder::{Shared, run_deferred};
use crate::server::token::ConnRef;
use crate::server::workers::{Job, JobQueue, JobState, Pools};

/// What dispatching a request needs from the loop.
pub(super) struct Dispatch<'a> {
    pub registry: &'a Registry,
    pub jobs: &'a JobQueue,
    pub stats: &'a Stats,
    pub pools: &'a mut Pools,
    pub shared: &'a Arc<Shared>,
    pub expiries: &'a mut Expiries,
    pub deferred: &'a DeferredLimits,
    pub me: ConnRef,
    pub peer: std::net::SocketAddr,
}

/// The limits on requests answered later.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeferredLimits {
    /// Deferred and async requests accepted and unanswered, at most, server-wide.
    pub max: usize,
    /// How long after its deadline the server answers a deferred request itself.
    pub grace: Duration,
}

impl Dispatch<'_> {
    /// Runs an accepted request inline, or hands it to a worker or a runtime, or answers it at
    /// once.
    pub fn dispatch(
        &mut self,
        core: &mut ServerConn,
        jobs: &mut crate::proto::IdMap<Arc<JobState>>,
        acc: Accepted<'_>,
    ) {
        self.stats.in_flight.fetch_add(1, Ordering::AcqRel);
        // Refusals: never run, final (the core sends a v1 caller its fallback status).
        let Some(reg) = self.registry.get(acc.method) else {
            let _ = core.respond(acc.id, Status::REFUSED_UNKNOWN_METHOD, b"unknown method");
            return;
        };
        if let Some((status, why)) = reg.refusal(acc.idempotent) {
            let _ = core.respond(acc.id, status, why);
            return;
        }
        let req = Request {
            id: acc.id,
            method: acc.method,
            body: acc.body,
            deadline: acc.deadline,
            idempotent: acc.idempotent,
            peer: self.peer,
            metadata: acc.metadata,
        };
        let later = !matches!(reg.handler, Callable::Now(_));
        if later {
            if self.pools.deferred() >= self.deferred.max {
                // Never started: the caller may send it elsewhere.
                let _ = core.reject(acc.id, RejectReason::OVERLOADED);
                return;
            }
            // Deferred: the server answers at the deadline plus the grace if nobody did. Async:
            // at the deadline, cancelling the future.
            let at = match reg.handler {
                Callable::Later(_) => acc.deadline + self.deferred.grace,
                _ => acc.deadline,
            };
            self.expiries.push(at, self.me, acc.id);
        }
        let state = self.pools.state(self.me, acc.id, later);
        match (&reg.handler, reg.placement) {
            (Callable::Now(h), Placement::Inline) => {
                let _ = match run_handler(h.as_ref(), &req) {
                    Ok(body) => core.respond(acc.id, Status::OK, &body),
                    Err(f) => core.respond(acc.id, f.status, &f.body),
                };
                self.pools.release_state(state);
                return;
            }
            (Callable::Later(h), Placement::Inline) => {
                jobs.insert(acc.id, state.clone());
                if Instant::now() >= acc.deadline {
                    self.shared.reject(&state, RejectReason::DEADLINE);
                } else if state.try_start() {
                    run_deferred(h.as_ref(), &req, state, self.shared);
                }
                return;
            }
            #[cfg(feature = "tokio")]
            (Callable::Async(entry), _) => {
                jobs.insert(acc.id, state.clone());
                entry.spawn(&req, state, self.shared);
                return;
            }
            _ => {}
        }
        let job = Job {
            conn: self.me,
            id: acc.id,
            method: reg.name.clone(),
            body: self.pools.buf(acc.metadata.as_bytes(), acc.body),
            meta_len: acc.metadata.as_bytes().len(),
            peer: self.peer,
            deadline: acc.deadline,
            idempotent: acc.idempotent,
            handler: reg.handler.clone(),
            state: state.clone(),
            shared: later.then(|| self.shared.clone()),
        };
        match self.jobs.push(job) {
            Ok(()) => {
                jobs.insert(acc.id, state);
            }
            Err(job) => {
                // Never started: the caller may send it elsewhere.
                let _ = core.reject(acc.id, RejectReason::OVERLOADED);
                self.pools.release_buf(job.body);
                drop(job.state);
                self.pools.release_state(state);
            }
        }
    }
}
