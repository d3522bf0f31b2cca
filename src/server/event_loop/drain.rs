//! The close sequence: withdraw from the registry, refuse new connections, GOAWAY everywhere,
//! reject queued work, and end when every answer is written and every caller has closed — or
//! when the budget runs out.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::EventLoop;
use crate::proto::{GoAwayReason, RejectReason};
use crate::server::announce::Withdrawal;
use crate::server::conn::Conn;
use crate::server::report::DrainReport;

/// The state of a close sequence in progress.
pub(super) struct Drain {
    pub started: Instant,
    pub deadline: Instant,
    /// When everything must be over, forced or not.
    pub hard_stop: Instant,
    /// The budget ran out and `report.abandoned_on` was filled in.
    pub budget_spent: bool,
    pub report: DrainReport,
}

impl EventLoop {
    pub(super) fn begin_drain(&mut self, now: Instant, why: &str) {
        if self.drain.is_some() {
            return;
        }
        // Step -1: unready from the request itself (`/readyz` answers 503 from here on), then
        // keep serving for the unready delay, so load balancers that poll it stop sending
        // first; only then the registry withdrawal and GOAWAY.
        self.stats.counters.serving.store(false, Ordering::Release);
        let until = *self
            .unready_until
            .get_or_insert(now + self.cfg.unready_delay);
        if now < until {
            self.withdrawing.get_or_insert_with(|| why.to_owned());
            self.next_tick = self.next_tick.min(until);
            return;
        }
        // Step 0: withdraw from the registry before GOAWAY, waiting (through the waker, never
        // blocking this thread) at most the withdrawal timeout. Until then the node serves on.
        if let Some(a) = self.announcer.as_mut()
            && let Withdrawal::Wait(until) = a.withdraw(now)
        {
            self.withdrawing.get_or_insert_with(|| why.to_owned());
            self.next_tick = self.next_tick.min(until);
            return;
        }
        self.withdrawing = None;
        // Step 1: refuse new connections at once rather than leave them in the backlog.
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        // Step 2: GOAWAY on every connection, idle ones included.
        let budget = self.cfg.drain_budget;
        let mut rejected = 0;
        for (slot, conn) in self.conns.iter_mut() {
            conn.core.start_drain(now, budget, GoAwayReason::SHUTDOWN);
            // Step 3: queued work no worker has started is rejected; started work is answered.
            let Conn { core, jobs, .. } = conn;
            jobs.retain(|&id, state| {
                if state.try_reject() {
                    let _ = core.reject(id, RejectReason::SHUTTING_DOWN);
                    rejected += 1;
                    false
                } else {
                    true
                }
            });
            self.touched.push(slot);
        }
        let goaway_sent = self.conns.len();
        let counters = &self.stats.counters;
        counters
            .goaways_sent
            .fetch_add(goaway_sent as u64, Ordering::Relaxed);
        counters.rejected[usize::from(RejectReason::SHUTTING_DOWN.0)]
            .fetch_add(rejected as u64, Ordering::Relaxed);
        log::info!(
            "close sequence started ({why}): GOAWAY sent to {goaway_sent} connections, \
             {rejected} queued requests rejected, {} in flight",
            self.stats.in_flight.load(Ordering::Acquire)
        );
        let linger = self.cfg.conn.linger;
        self.drain = Some(Drain {
            started: now,
            deadline: now + budget,
            hard_stop: now + budget + linger + Duration::from_millis(100),
            budget_spent: false,
            report: DrainReport {
                goaway_sent,
                rejected_queued: rejected,
                ..Default::default()
            },
        });
        self.next_tick = now;
    }

    /// Goes on with a close sequence that waited for the registry, once it may.
    pub(super) fn resume_drain(&mut self, now: Instant) {
        if let Some(why) = self.withdrawing.clone() {
            self.begin_drain(now, &why);
        }
    }

    /// Ends the loop when the drain is over: every connection closed and every answer written,
    /// or the hard stop reached.
    pub(super) fn drain_done(&mut self, now: Instant) -> Option<DrainReport> {
        let drain = self.drain.as_mut()?;
        let in_flight = self.stats.in_flight.load(Ordering::Acquire);
        if in_flight == 0 && drain.report.answered_in.is_none() {
            drain.report.answered_in = Some(now - drain.started);
            log::info!(
                "all in-flight requests answered in {} ms",
                (now - drain.started).as_millis()
            );
        }
        let finished = self.conns.is_empty() && in_flight == 0;
        // Past the budget, requests still running can never be answered: once every connection
        // is gone there is nothing left to wait for.
        let given_up = self.conns.is_empty() && now >= drain.deadline;
        if !finished && !given_up && now < drain.hard_stop {
            return None;
        }
        let mut report = std::mem::take(&mut drain.report);
        report.total = now - drain.started;
        report.abandoned = in_flight;
        report.clean = finished && now < drain.deadline;
        let counters = &self.stats.counters;
        counters.drains.fetch_add(1, Ordering::Relaxed);
        counters.drain_seconds_us.store(
            u64::try_from(report.total.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        counters
            .drain_abandoned
            .fetch_add(in_flight as u64, Ordering::Relaxed);
        if report.clean {
            log::info!("drained cleanly in {} ms", report.total.as_millis());
        } else {
            let on: Vec<String> = report
                .abandoned_on
                .iter()
                .map(|(peer, n)| format!("{peer} ({n})"))
                .collect();
            log::warn!(
                "drain budget spent after {} ms: {} requests abandoned on {} connections: [{}]",
                report.total.as_millis(),
                report.abandoned,
                report.abandoned_on.len(),
                on.join(", ")
            );
        }
        self.conns.clear();
        Some(report)
    }

    /// When the drain budget runs out, records where requests are still pending. It runs before
    /// the connections' own drain timers end them in this turn: a peer may close within
    /// microseconds of our FIN, and then neither the connection nor its peer address (the
    /// socket goes to TCP_CLOSE, getpeername fails) is there to look at afterwards.
    pub(super) fn note_budget_spent(&mut self, now: Instant) {
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        if now < drain.deadline || drain.budget_spent {
            return;
        }
        drain.budget_spent = true;
        for (_, conn) in self.conns.iter() {
            if conn.core.pending() > 0 {
                drain
                    .report
                    .abandoned_on
                    .push((conn.peer, conn.core.pending()));
            }
        }
    }
}
