//! Handing an accepted request to its handler: inline on the loop thread, to a worker, to an
//! async runtime, or answered at once (unknown method, queue or deferred cap full).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Stats;
use super::expiry::Expiries;
use crate::proto::{Accepted, RejectReason, ServerConn, Status};
use crate::server::handler::{Placement, Request};
use crate::server::latency::TurnTimings;
use crate::server::registry::{Callable, Registry};
use crate::server::responder::{Shared, run_deferred};
use crate::server::run::run_handler;
use crate::server::token::ConnRef;
use crate::server::wire::Wire;
use crate::server::workers::{Direct, Job, JobQueue, JobState, Pools};

/// What dispatching a request needs from the loop.
pub(super) struct Dispatch<'a> {
    pub registry: &'a Registry,
    pub jobs: &'a JobQueue,
    pub stats: &'a Stats,
    pub pools: &'a mut Pools,
    pub shared: &'a Arc<Shared>,
    pub expiries: &'a mut Expiries,
    /// Inline answers of this turn, timed together when the turn flushes.
    pub timings: &'a mut TurnTimings,
    pub deferred: &'a DeferredLimits,
    pub me: ConnRef,
    pub peer: std::net::SocketAddr,
    /// The caller's verified client certificate, on a mutual-TLS connection.
    pub identity: Option<&'a Arc<crate::server::PeerIdentity>>,
    /// The connection's socket for workers to write their answers to (plaintext only).
    pub wire: Option<&'a Arc<Wire>>,
    /// This turn's clock reading: when the request was accepted, for its latency.
    pub now: Instant,
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
            peer: self.peer,
            metadata: acc.metadata,
            identity: self.identity.map(|a| &**a),
        };
        if !self.registry.authorized(&req) {
            // Never run, final: another node would refuse it too.
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = core.respond(
                acc.id,
                Status::REFUSED_PERMISSION_DENIED,
                b"permission denied",
            );
            return;
        }
        let later = !matches!(reg.handler, Callable::Now(_));
        if later {
            if self.pools.deferred() >= self.deferred.max {
                // Never started: the caller may send it elsewhere.
                counters.reject(RejectReason::OVERLOADED);
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
        if let (Callable::Now(h), Placement::Inline) = (&reg.handler, reg.placement) {
            // Runs and is answered right here: no slot to race for.
            let reply = run_handler(h.as_ref(), &req);
            if let Some(t) = started {
                self.timings.add(t, &reg.latency);
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
        let timing = match started {
            Some(t) if later => Some((t, reg.latency.clone())),
            _ => None,
        };
        let state = self.pools.state(self.me, acc.id, later, timing);
        match (&reg.handler, reg.placement) {
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
            identity: self.identity.cloned(),
            deadline: acc.deadline,
            idempotent: acc.idempotent,
            handler: reg.handler.clone(),
            state: state.clone(),
            shared: later.then(|| self.shared.clone()),
            timing: started.map(|t| (t, reg.latency.clone())),
            // Deferred answers go through the done list.
            direct: match (self.wire, core.answer_encoder()) {
                (Some(wire), Some(encoder)) if !later => Some(Direct {
                    wire: wire.clone(),
                    encoder,
                }),
                _ => None,
            },
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
