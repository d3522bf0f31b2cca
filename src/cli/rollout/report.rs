//! The rollout's report: the calls, restarts and audit of a run summed up into a
//! [`RolloutReport`] with its verdict.

use super::audit;
use super::{Mode, RestartRecord};
use crate::cli::record::CallRecord;
use crate::cli::summary::{Counts, Latency, RolloutReport};

pub(super) struct Report {
    mode: Mode,
    /// Where callers found the nodes: `static` or `etcd`.
    pub(super) registry: &'static str,
    /// `plain` or `handoff`.
    pub(super) restart: &'static str,
    pub(super) startup_ms: u64,
    pub(super) startup_burn: bool,
    pub(super) connections: usize,
    /// Connects of the probe (a new caller every 2 ms per node) and how many were refused.
    pub(super) probes: u64,
    pub(super) refused: u64,
    nodes: usize,
    counts: Counts,
    all: Latency,
    roll: Latency,
    /// Calls while a node drained (signal to exit): the close sequence's own cost.
    drain: Latency,
    steady: Latency,
    restarts: Vec<RestartRecord>,
    audit: audit::Audit,
    never_ended: u64,
}

impl Report {
    pub(super) fn new(
        mode: Mode,
        nodes: usize,
        calls: &[CallRecord],
        restarts: &[RestartRecord],
        audit: &audit::Audit,
        never_ended: u64,
    ) -> Report {
        // A restart's window from SIGTERM to the new node READY; its drain from SIGTERM to
        // the old process's exit.
        let windows = spans(restarts, |r| r.ready_s);
        let drains = spans(restarts, |r| r.exit_s);
        let in_roll = |c: &CallRecord| overlaps(c, &windows);
        let in_drain = |c: &CallRecord| overlaps(c, &drains);
        let mut counts = Counts::of(calls);
        counts.sent += never_ended;
        Report {
            mode,
            registry: "static",
            restart: "plain",
            startup_ms: 0,
            startup_burn: false,
            connections: 1,
            probes: 0,
            refused: 0,
            nodes,
            counts,
            all: Latency::of(calls),
            roll: Latency::of(calls.iter().filter(|c| in_roll(c))),
            drain: Latency::of(calls.iter().filter(|c| in_drain(c))),
            steady: Latency::of(calls.iter().filter(|c| !in_roll(c))),
            restarts: restarts.to_vec(),
            audit: audit.clone(),
            never_ended,
        }
    }

    fn evict(&self) -> (u64, u64) {
        let mut v: Vec<u64> = self.restarts.iter().filter_map(|r| r.evict_us).collect();
        v.sort_unstable();
        (
            v.get(v.len() / 2).copied().unwrap_or(0),
            v.last().copied().unwrap_or(0),
        )
    }

    /// The report, with its verdict: `broken` in graceful mode if any call failed, or in any
    /// mode if the audit found a broken promise.
    pub(super) fn summary(&self) -> RolloutReport {
        let c = &self.counts;
        let a = &self.audit;
        let (ev50, evmax) = self.evict();
        let graceful = self.mode == Mode::Graceful;
        let handoff = self.restart == "handoff";
        // A handoff promises the port never closes: a refused connect breaks it.
        let broken = !a.clean() || (graceful && c.failed > 0) || (handoff && self.refused > 0);
        let mut verdict_reason = format!(
            "{} failed{}, {} duplicated, {} lost, {} mismatched, {} phantom",
            c.failed,
            if graceful {
                ""
            } else {
                " (allowed in this mode)"
            },
            a.duplicates,
            a.lost,
            a.mismatched,
            a.phantom
        );
        if handoff {
            verdict_reason += &format!(", {} connects refused", self.refused);
        }
        RolloutReport {
            mode: self.mode.name(),
            discovery: self.registry,
            restart: self.restart,
            startup_ms: self.startup_ms,
            startup_burn: self.startup_burn,
            connections_per_node: self.connections,
            probe_connects: self.probes,
            conn_refused: self.refused,
            nodes: self.nodes,
            restarts: self.restarts.len(),
            sent: c.sent,
            ok: c.ok,
            failed: c.failed,
            failed_by_kind: c.failed_by_kind.clone(),
            replayed: c.replayed,
            outcome_unknown: c.outcome_unknown,
            outcome_unknown_ran: a.unknown_ran,
            outcome_unknown_not_ran: a.unknown_not_ran,
            duplicates: a.duplicates,
            lost: a.lost,
            never_ended: self.never_ended,
            mismatched: a.mismatched,
            phantom: a.phantom,
            p50_us: self.all.p50,
            p99_us: self.all.p99,
            p999_us: self.all.p999,
            max_us: self.all.max,
            p99_roll_us: self.roll.p99,
            p99_drain_us: self.drain.p99,
            p99_steady_us: self.steady.p99,
            evict_us_p50: ev50,
            evict_us_max: evmax,
            drain_ms: self
                .restarts
                .iter()
                .map(|r| (r.drain_ms * 10.0).round() / 10.0)
                .collect(),
            exit_codes: self.restarts.iter().map(|r| r.exit_code).collect(),
            restarted_nodes: self.restarts.iter().map(|r| r.node).collect(),
            verdict: if broken { "FAIL" } else { "PASS" },
            verdict_reason,
        }
    }
}

/// Each restart's span in µs, from its SIGTERM to `end` (seconds since the run began).
fn spans(restarts: &[RestartRecord], end: impl Fn(&RestartRecord) -> f64) -> Vec<(u64, u64)> {
    restarts
        .iter()
        .map(|r| ((r.term_s * 1e6) as u64, (end(r) * 1e6) as u64))
        .collect()
}

/// Whether the call was in progress at any time during one of `spans`.
fn overlaps(c: &CallRecord, spans: &[(u64, u64)]) -> bool {
    let (s, e) = (c.start_us, c.start_us + c.latency_us);
    spans.iter().any(|&(a, b)| s <= b && e >= a)
}
