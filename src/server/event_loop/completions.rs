//! What wakes the loop besides sockets: worker completions (answered into their connection,
//! unless it is gone or its slot reused), control requests from the handles, signals, and
//! readiness changes.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Control, EventLoop};
use crate::proto::Status;
use crate::server::report::DrainReport;
use crate::server::workers::{Answer, Completion};

impl EventLoop {
    pub(super) fn on_wake(&mut self, now: Instant) {
        self.waker.clear();
        self.take_completions(now);
        self.take_done(now);
        while let Ok(ctl) = self.control.try_recv() {
            match ctl {
                Control::Shutdown => self.begin_drain(now, "shutdown() called"),
                Control::StartAccepting(reply) => {
                    let _ = reply.try_send(self.start_accepting(now));
                }
                Control::DupListener(reply) => {
                    let _ = reply.try_send(self.dup_listener());
                }
                Control::HandedOff => self.handed_off(now),
            }
        }
        self.apply_readiness(now);
        self.resume_drain(now);
    }

    /// Takes every completion the workers sent. Every turn, before the sockets' events: answers
    /// workers wrote themselves wake nobody, and their requests must be off the core's pending
    /// set before the caller's next requests are counted against its limit.
    pub(super) fn take_completions(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok(c) = self.completions.try_recv() {
            self.complete(c, now);
            any = true;
        }
        any
    }

    pub(super) fn complete(&mut self, c: Completion, now: Instant) {
        // Accepted (this loop's clock at the turn it was read) to answered (at this turn): no
        // clock read of its own.
        if let Some((accepted, latency)) = &c.timing {
            latency.observe(now.saturating_duration_since(*accepted));
        }
        if c.buf.capacity() > 0 {
            self.pools.release_buf(c.buf);
        }
        let conn = match self.conns.get_mut(c.conn.slot) {
            Some(conn) if conn.me == c.conn => conn,
            _ => {
                // Its connection is gone (maybe its slot reused): the answer goes nowhere.
                self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        };
        if let Some(state) = conn.jobs.remove(&c.id) {
            self.pools.release_state(state);
        }
        let counters = &self.stats.counters;
        let res = match c.result {
            Answer::Ran(Ok(body)) => {
                if !c.counted {
                    counters.completed_ok.fetch_add(1, Ordering::Relaxed);
                }
                let res = conn.core.respond(c.id, Status::OK, &body);
                if c.pool_answer {
                    self.pools.release_buf(body);
                }
                res
            }
            Answer::Ran(Err(f)) => {
                if !c.counted {
                    counters.completed_failed.fetch_add(1, Ordering::Relaxed);
                }
                let res = conn.core.respond(c.id, f.status, &f.body);
                if c.pool_answer {
                    self.pools.release_buf(f.body);
                }
                res
            }
            Answer::Rejected(reason) => {
                counters.reject(reason);
                conn.core.reject(c.id, reason)
            }
            Answer::Written { tail } => {
                // Counted and timed by the worker.
                conn.written_by_worker(c.id, tail);
                Ok(())
            }
        };
        if let Err(e) = res {
            log::error!("completion for request {}: {e}", c.id);
        }
        self.touched.push(c.conn.slot);
    }

    pub(super) fn on_signals(&mut self, now: Instant) -> Option<DrainReport> {
        let mut got = 0;
        if let Some(signals) = self.signals.as_mut() {
            got = signals.pending().count();
        }
        for _ in 0..got {
            if self.drain.is_none() && self.withdrawing.is_none() {
                log::info!("signal received: starting the close sequence");
                self.begin_drain(now, "signal");
            } else {
                log::warn!("second signal received: stopping at once");
                let Some(drain) = self.drain.take() else {
                    // Still withdrawing from the registry: stop at once, before any GOAWAY.
                    return Some(DrainReport {
                        forced_by_signal: true,
                        clean: false,
                        abandoned: self.stats.in_flight.load(Ordering::Acquire),
                        ..Default::default()
                    });
                };
                let mut report = drain.report;
                report.forced_by_signal = true;
                report.clean = false;
                report.abandoned = self.stats.in_flight.load(Ordering::Acquire);
                report.total = now - drain.asked;
                if !drain.budget_spent {
                    report.abandoned_on = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.core.pending() > 0)
                        .map(|(_, c)| (c.peer, c.core.pending()))
                        .collect();
                }
                return Some(report);
            }
        }
        None
    }

    pub(super) fn apply_readiness(&mut self, now: Instant) {
        if let Some(capacity) = self.readiness.poll_change(now) {
            for (slot, conn) in self.conns.iter_mut() {
                conn.core.set_ready(capacity);
                self.touched.push(slot);
            }
        }
        // What `/readyz` reports: READY, accepting (a paused handoff successor is not yet),
        // and no close sequence asked for.
        let serving = self.readiness.capacity().is_some()
            && self.accepting
            && self.drain.is_none()
            && self.withdrawing.is_none();
        self.stats
            .counters
            .serving
            .store(serving, Ordering::Release);
        // Registered only once READY and accepting, and never after the close sequence began.
        if let Some(a) = self.announcer.as_mut()
            && self.accepting
            && self.readiness.capacity().is_some()
            && self.drain.is_none()
            && self.withdrawing.is_none()
        {
            a.ready();
        }
    }
}
