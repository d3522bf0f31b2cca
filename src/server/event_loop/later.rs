//! The loop's side of requests answered later: taking the answers responders and async tasks
//! left on the done list, answering for them at their deadline, and cancelling them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::EventLoop;
use crate::proto::{IdMap, RejectReason, ServerConn, Status};
use crate::server::slot::Answer;
use crate::server::stats::Counters;
use crate::server::workers::{Completion, JobState, Pools};

impl EventLoop {
    /// Answers every request whose slot is on the done list.
    pub(super) fn take_done(&mut self, now: Instant) {
        for slot in self.shared.done.take_all() {
            let Some(result) = slot.take_answer() else {
                continue; // never: a slot is pushed with its answer
            };
            // Accepted to answered, read off this turn's clock like a worker's answer.
            if let (Some((accepted, latency)), Answer::Ran(_)) = (slot.timing(), &result) {
                latency.observe(now.saturating_duration_since(*accepted));
            }
            let c = Completion {
                conn: slot.conn(),
                id: slot.id(),
                result,
                buf: Vec::new(),
                pool_answer: false,
                counted: false,
                timing: None,
            };
            // The loop's own reference (in the connection's table) is the last one left, so the
            // slot can go back to the pool.
            drop(slot);
            self.complete(c, now);
        }
    }

    /// The server answers deferred requests past their deadline plus the grace, and async ones
    /// past their deadline (cancelling the future): "ran, deadline passed". A leaked responder
    /// holds neither the request nor a drain longer than that.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((me, id)) = self.expiries.pop_due(now) {
            let Some(conn) = self.conns.get_mut(me.slot) else {
                continue;
            };
            if conn.me != me {
                continue;
            }
            let Some(state) = conn.jobs.get(&id) else {
                continue; // answered already
            };
            if state.try_answer() {
                state.wake_runner();
                let _ = conn.core.respond(
                    id,
                    Status::DEADLINE_EXCEEDED,
                    b"the handler did not answer before the deadline",
                );
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
            } else if state.try_reject() {
                // Still queued (workers busy, or a runtime that never polled it): never ran.
                self.stats.counters.reject(RejectReason::DEADLINE);
                let _ = conn.core.reject(id, RejectReason::DEADLINE);
            } else {
                continue; // its answer is on the done list
            }
            if let Some(state) = conn.jobs.remove(&id) {
                self.pools.release_state(state);
            }
            self.touched.push(me.slot);
        }
    }
}

/// CANCEL(id) (rule 9): a request not started is rejected CANCELLED; a deferred or async one
/// already running is answered [`Status::CANCELLED`] now (an async future is dropped, a
/// responder sees [`is_answered`](crate::server::Responder::is_answered)); a blocking one
/// running on a worker is answered as usual.
pub(super) fn cancel(
    core: &mut ServerConn,
    jobs: &mut IdMap<Arc<JobState>>,
    pools: &mut Pools,
    counters: &Counters,
    id: u64,
) {
    let Some(state) = jobs.get(&id) else {
        return;
    };
    if state.try_reject() {
        counters.reject(RejectReason::CANCELLED);
        let _ = core.reject(id, RejectReason::CANCELLED);
    } else if state.is_deferred() && state.try_answer() {
        state.wake_runner();
        counters.completed_cancelled.fetch_add(1, Ordering::Relaxed);
        let _ = core.respond(id, Status::CANCELLED, b"cancelled by the caller");
    } else {
        return;
    }
    if let Some(state) = jobs.remove(&id) {
        pools.release_state(state);
    }
}
