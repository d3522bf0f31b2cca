//! The close sequence: withdraw from the registry, refuse new connections, GOAWAY everywhere,
//! reject queued work, and end when every answer is written and every caller has closed — or
//! when the budget runs out.
//!
//! # Time accounting
//! The drain budget `B` bounds the whole sequence, measured from the moment it is asked for
//! (`shutdown()` or the signal), `t0`:
//!
//! ```text
//!  t0            t1 (GOAWAY)                         cut = t0 + B − L          end = t0 + B
//!  ├─ withdrawal ─┼──────── answers (announced in GOAWAY) ─┼──── linger (L) ──────┤
//!     ≤ min(registry_timeout, B/4)                          write sides shut,       the loop
//!                                                           read and discard        returns
//! ```
//!
//! * withdrawal: at most `min(registry_timeout, B/4)` (see `Builder::registrar`);
//! * GOAWAY announces `drain_budget_ms = cut − t1`: how long the caller may still get answers;
//! * `L = min(linger, B/4)`: at `cut` every connection still owing answers has its write side
//!   shut and is read until EOF, for at most what is left until `end`;
//! * at `end` whatever is still open is closed without an RST: write side shut, the input that
//!   arrived read and discarded, then closed. The loop returns at `end` at the latest (then
//!   only the worker threads are collected, see `EventLoop::finish`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::EventLoop;
use crate::proto::{GoAwayReason, RejectReason};
use crate::server::announce::Withdrawal;
use crate::server::conn::Conn;
use crate::server::report::DrainReport;

/// The state of a close sequence in progress.
pub(super) struct Drain {
    /// When the close sequence was asked for (before any registry withdrawal): `t0`.
    pub asked: Instant,
    /// The answers' deadline (`cut`): connections still owing answers are ended then.
    pub deadline: Instant,
    /// `t0 + budget`: when everything must be over, forced or not.
    pub end: Instant,
    /// The budget ran out and `report.abandoned_on` was filled in.
    pub budget_spent: bool,
    pub report: DrainReport,
    /// `Stats::expired` and `Shared::late` when the drain began.
    pub expired_at_start: usize,
    pub late_at_start: u64,
}

/// The part of the budget `B` kept for the linger at its end: `min(linger, B/4)`.
pub(crate) fn linger_reserve(budget: Duration, linger: Duration) -> Duration {
    linger.min(budget / 4)
}

/// How long the close sequence waits for the registry, at most: `min(timeout, B/4)`.
pub(crate) fn withdrawal_limit(budget: Duration, registry_timeout: Duration) -> Duration {
    registry_timeout.min(budget / 4)
}

impl EventLoop {
    pub(super) fn begin_drain(&mut self, now: Instant, why: &str) {
        if self.drain.is_some() {
            return;
        }
        // Step -1: unready from the request itself (`/readyz` answers 503 from here on), then
        // keep serving for the unready delay, so load balancers that poll it stop sending
        // first; only then the registry withdrawal and GOAWAY. The drain budget is counted
        // from the end of that delay (`t0`): the node serves normally until then.
        self.stats.counters.serving.store(false, Ordering::Release);
        let until = *self
            .unready_until
            .get_or_insert(now + self.cfg.unready_delay);
        if now < until {
            self.withdrawing
                .get_or_insert_with(|| (why.to_owned(), until));
            self.next_tick = self.next_tick.min(until);
            return;
        }
        let asked = self.withdrawing.as_ref().map_or(now, |(_, t)| *t);
        // Step 0: withdraw from the registry before GOAWAY, waiting (through the waker, never
        // blocking this thread) at most the withdrawal limit. Until then the node serves on.
        if let Some(a) = self.announcer.as_mut()
            && let Withdrawal::Wait(until) = a.withdraw(now)
        {
            self.withdrawing
                .get_or_insert_with(|| (why.to_owned(), now));
            self.next_tick = self.next_tick.min(until);
            return;
        }
        self.withdrawing = None;
        // Step 1: refuse new connections at once rather than leave them in the backlog.
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_retry = None;
        let budget = self.cfg.drain_budget;
        let end = asked + budget;
        let cut = (end - linger_reserve(budget, self.cfg.conn.linger)).max(now);
        let announced = cut - now;
        // Step 2: GOAWAY on every connection, idle ones included.
        let mut rejected = 0;
        let pools = &mut self.pools;
        for (slot, conn) in self.conns.iter_mut() {
            conn.core
                .start_drain(now, announced, GoAwayReason::SHUTDOWN);
            // Step 3: queued work no worker has started is rejected; started work is answered.
            let Conn { core, jobs, .. } = conn;
            jobs.retain(|&id, state| {
                if state.try_reject() {
                    let _ = core.reject(id, RejectReason::SHUTTING_DOWN);
                    rejected += 1;
                    pools.release_state(state.clone());
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
            "close sequence started ({why}): GOAWAY sent to {goaway_sent} connections \
             (answers for {} ms, closed by {} ms), {rejected} queued requests rejected, {} in \
             flight",
            announced.as_millis(),
            (end - now).as_millis(),
            self.stats.in_flight.load(Ordering::Acquire)
        );
        self.drain = Some(Drain {
            asked,
            deadline: cut,
            end,
            budget_spent: false,
            report: DrainReport {
                goaway_sent,
                rejected_queued: rejected,
                deferred_in_flight: self.pools.deferred(),
                ..Default::default()
            },
            expired_at_start: self.stats.expired.load(Ordering::Relaxed),
            late_at_start: self.shared.late.load(Ordering::Relaxed),
        });
        self.next_tick = now;
    }

    /// Goes on with a close sequence that waited for the registry, once it may.
    pub(super) fn resume_drain(&mut self, now: Instant) {
        if let Some((why, _)) = self.withdrawing.clone() {
            self.begin_drain(now, &why);
        }
    }

    /// Ends the loop when the drain is over: every connection closed and every answer written,
    /// or the end of the budget reached.
    pub(super) fn drain_done(&mut self, now: Instant) -> Option<DrainReport> {
        let drain = self.drain.as_mut()?;
        let in_flight = self.stats.in_flight.load(Ordering::Acquire);
        if in_flight == 0 && drain.report.answered_in.is_none() {
            drain.report.answered_in = Some(now - drain.asked);
            log::info!(
                "all in-flight requests answered in {} ms",
                (now - drain.asked).as_millis()
            );
        }
        let finished = self.conns.is_empty() && in_flight == 0;
        // Past the answers' deadline, requests still running can never be answered: once every
        // connection is gone there is nothing left to wait for.
        let given_up = self.conns.is_empty() && now >= drain.deadline;
        if !finished && !given_up && now < drain.end {
            return None;
        }
        let mut report = std::mem::take(&mut drain.report);
        report.total = now - drain.asked;
        report.deferred_expired =
            self.stats.expired.load(Ordering::Relaxed) - drain.expired_at_start;
        report.late_answers = self.shared.late.load(Ordering::Relaxed) - drain.late_at_start;
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
        Some(report)
    }

    /// The connections still open when the loop stops are closed without an RST: write side
    /// shut, the input that already arrived read and discarded, then closed.
    pub(super) fn close_all(&mut self) {
        let open = self.conns.len();
        for (_, mut conn) in std::mem::take(&mut self.conns) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            conn.close_at_stop(&mut self.scratch);
        }
        if open > 0 {
            log::info!("{open} connections still open at the end of the budget: closed");
        }
        self.stats.connections.store(0, Ordering::Relaxed);
    }

    /// When the answers' deadline passes, records where requests are still pending. It runs
    /// before the connections' own drain timers end them in this turn: a peer may close within
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
