//! Handing an accepted request to its handler: inline on the loop thread, to a worker, or
//! answered at once (unknown method, queue full).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Stats;
use crate::proto::{Accepted, RejectReason, ServerConn, Status};
use crate::server::handler::{Placement, Registry, Request, run_handler};
use crate::server::token::ConnRef;
use crate::server::workers::{Job, JobQueue, JobState, Pools};

/// What dispatching a request needs from the loop.
pub(super) struct Dispatch<'a> {
    pub registry: &'a Registry,
    pub jobs: &'a JobQueue,
    pub stats: &'a Stats,
    pub pools: &'a mut Pools,
    pub me: ConnRef,
    /// This turn's clock reading: when the request was accepted, for its latency.
    pub now: Instant,
}

impl Dispatch<'_> {
    /// Runs an accepted request inline, or hands it to a worker, or answers it at once.
    pub fn dispatch(
        &mut self,
        core: &mut ServerConn,
        jobs: &mut crate::proto::IdMap<Arc<JobState>>,
        acc: Accepted<'_>,
    ) {
        self.stats.in_flight.fetch_add(1, Ordering::AcqRel);
        let counters = &self.stats.counters;
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        // Refusals: never run, final (the core sends a v1 caller its fallback status).
        let Some(reg) = self.registry.get(acc.method) else {
            // Method names come from the wire: all unknown ones share this one counter.
            counters.unknown_method.fetch_add(1, Ordering::Relaxed);
            let _ = core.respond(acc.id, Status::REFUSED_UNKNOWN_METHOD, b"unknown method");
            return;
        };
        if let Some((status, why)) = reg.refusal(acc.idempotent) {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = core.respond(acc.id, status, why);
            return;
        }
        let started = self.registry.timed.then_some(self.now);
        let req = Request {
            id: acc.id,
            method: acc.method,
            body: acc.body,
            deadline: acc.deadline,
            idempotent: acc.idempotent,
        };
        if reg.placement == Placement::Inline {
            let reply = run_handler(reg.handler.as_ref(), &req);
            if let Some(t) = started {
                reg.latency
                    .observe(Instant::now().saturating_duration_since(t));
            }
            let _ = match reply {
                Ok(body) => {
                    counters.completed_ok.fetch_add(1, Ordering::Relaxed);
                    core.respond(acc.id, Status::OK, &body)
                }
                Err(f) => {
                    counters.completed_failed.fetch_add(1, Ordering::Relaxed);
                    core.respond(acc.id, f.status, &f.body)
                }
            };
            return;
        }
        let state = self.pools.state();
        let job = Job {
            conn: self.me,
            id: acc.id,
            method: reg.name.clone(),
            body: self.pools.buf(acc.body),
            deadline: acc.deadline,
            idempotent: acc.idempotent,
            handler: reg.handler.clone(),
            state: state.clone(),
            timing: started.map(|t| (t, reg.latency.clone())),
        };
        match self.jobs.push(job) {
            Ok(()) => {
                jobs.insert(acc.id, state);
            }
            Err(job) => {
                // Never started: the caller may send it elsewhere.
                counters.reject(RejectReason::OVERLOADED);
                let _ = core.reject(acc.id, RejectReason::OVERLOADED);
                self.pools.release_buf(job.body);
                drop(job.state);
                self.pools.release_state(state);
            }
        }
    }
}
