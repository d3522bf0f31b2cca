//! Summaries of a load's call records (counts by outcome, latency percentiles) and the reports
//! `bench` and `rollout` print: each report is one `#[derive(Serialize)]` struct, so its JSON
//! keys (`--json`, `--json-file`) and its table come from the same definition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use hdrhistogram::Histogram;

use super::record::CallRecord;

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of<'a>(latencies: impl IntoIterator<Item = &'a CallRecord>) -> Latency {
        let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3) else {
            return Latency::default();
        };
        for r in latencies {
            let _ = h.record(r.latency_us.clamp(1, 60_000_000));
        }
        Latency::of_histogram(&h)
    }

    /// The percentiles of latencies already counted, in microseconds.
    pub fn of_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Counts by outcome.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    pub outcome_unknown: u64,
    pub replayed: u64,
}

impl Counts {
    pub fn of(records: &[CallRecord]) -> Counts {
        let mut c = Counts::default();
        for r in records {
            c.add(&r.result);
        }
        c
    }

    /// Counts one finished call: `Ok(replays)` or its error.
    pub fn add(&mut self, result: &Result<u32, gracerpc::client::CallError>) {
        self.sent += 1;
        match result {
            Ok(replays) => {
                self.ok += 1;
                self.replayed += u64::from(*replays);
            }
            Err(e) => {
                self.failed += 1;
                *self.failed_by_kind.entry(e.kind()).or_default() += 1;
                if matches!(e, gracerpc::client::CallError::OutcomeUnknown) {
                    self.outcome_unknown += 1;
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failed += other.failed;
        self.outcome_unknown += other.outcome_unknown;
        self.replayed += other.replayed;
        for (k, v) in &other.failed_by_kind {
            *self.failed_by_kind.entry(k).or_default() += v;
        }
    }
}

/// What `gracerpc bench` reports.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    pub outcome_unknown: u64,
    pub replayed: u64,
    /// Rounded to 0.1.
    pub calls_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// CPU time (user + system) of this process per call, every thread included: what the
    /// caller and its load generator cost. Rounded to 0.01.
    pub cpu_us_per_call: f64,
    /// Context switches of this process per call. Rounded to 0.001.
    pub context_switches_per_call: f64,
}

/// CPU time and context switches of this process so far (`getrusage`, all threads).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessCost {
    pub cpu: Duration,
    pub context_switches: u64,
}

impl ProcessCost {
    pub fn now() -> ProcessCost {
        // SAFETY: getrusage only writes the struct it is given; zeroes are a valid rusage.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return ProcessCost::default();
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        ProcessCost {
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
            context_switches: u64::try_from(ru.ru_nvcsw + ru.ru_nivcsw).unwrap_or(0),
        }
    }

    /// What was spent between `earlier` and this reading.
    pub fn since(self, earlier: ProcessCost) -> ProcessCost {
        ProcessCost {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            context_switches: self
                .context_switches
                .saturating_sub(earlier.context_switches),
        }
    }
}

impl BenchReport {
    pub fn new(counts: &Counts, lat: &Latency, rate: f64) -> BenchReport {
        BenchReport {
            sent: counts.sent,
            ok: counts.ok,
            failed: counts.failed,
            failed_by_kind: counts.failed_by_kind.clone(),
            outcome_unknown: counts.outcome_unknown,
            replayed: counts.replayed,
            calls_per_s: (rate * 10.0).round() / 10.0,
            p50_us: lat.p50,
            p99_us: lat.p99,
            p999_us: lat.p999,
            max_us: lat.max,
            cpu_us_per_call: 0.0,
            context_switches_per_call: 0.0,
        }
    }

    /// Adds what the calls cost this process.
    pub fn with_cost(mut self, cost: ProcessCost) -> BenchReport {
        let calls = self.sent.max(1) as f64;
        self.cpu_us_per_call = (cost.cpu.as_secs_f64() * 1e6 / calls * 100.0).round() / 100.0;
        self.context_switches_per_call =
            (cost.context_switches as f64 / calls * 1000.0).round() / 1000.0;
        self
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "calls/s      {:.0}", self.calls_per_s);
        let _ = writeln!(
            s,
            "latency us   p50 {}  p99 {}  p99.9 {}  max {}",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        let _ = writeln!(
            s,
            "calls        sent {}  ok {}  failed {}  outcome unknown {}  replayed {}",
            self.sent, self.ok, self.failed, self.outcome_unknown, self.replayed
        );
        let _ = writeln!(
            s,
            "this process {:.2} us CPU and {:.3} context switches per call",
            self.cpu_us_per_call, self.context_switches_per_call
        );
        for (k, v) in &self.failed_by_kind {
            let _ = writeln!(s, "  failed {k}: {v}");
        }
        s
    }
}

/// What `gracerpc rollout` reports (the audit's findings and the restarts' figures).
#[derive(Clone, Debug, Serialize)]
pub struct RolloutReport {
    pub mode: &'static str,
    /// Where callers found the nodes: `static` or `etcd`.
    pub discovery: &'static str,
    /// How a node's process was replaced: `plain` or `handoff`.
    pub restart: &'static str,
    /// Each node's startup time from binding to READY (`serve --startup`).
    pub startup_ms: u64,
    pub startup_burn: bool,
    /// Connections the callers' client had READY to each node when the load began (the
    /// fewest of any node).
    pub connections_per_node: usize,
    /// Connects of the probe (a new caller every 2 ms per node) and how many were refused.
    pub probe_connects: u64,
    pub conn_refused: u64,
    pub nodes: usize,
    pub restarts: usize,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    pub replayed: u64,
    pub outcome_unknown: u64,
    pub outcome_unknown_ran: u64,
    pub outcome_unknown_not_ran: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// Calls still running when the load stopped waiting (counted in `lost`).
    pub never_ended: u64,
    pub mismatched: u64,
    pub phantom: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub p99_roll_us: u64,
    /// Calls while a node drained (signal to exit): the close sequence's own cost.
    pub p99_drain_us: u64,
    pub p99_steady_us: u64,
    pub evict_us_p50: u64,
    pub evict_us_max: u64,
    /// Signal to exit, per restart, rounded to 0.1 ms.
    pub drain_ms: Vec<f64>,
    pub exit_codes: Vec<i32>,
    pub restarted_nodes: Vec<usize>,
    /// `PASS` or `FAIL`, as the exit status says.
    pub verdict: &'static str,
    /// Why, in one line.
    pub verdict_reason: String,
}

impl RolloutReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        line("mode", self.mode.into());
        line("discovery", self.discovery.into());
        line(
            "restart",
            format!(
                "{} (startup {} ms{})",
                self.restart,
                self.startup_ms,
                if self.startup_burn {
                    ", burning CPU"
                } else {
                    ""
                }
            ),
        );
        line(
            "nodes / restarts",
            format!("{} / {}", self.nodes, self.restarts),
        );
        line("connections / node", self.connections_per_node.to_string());
        line("calls sent", self.sent.to_string());
        line("ok", self.ok.to_string());
        line("FAILED", self.failed.to_string());
        for (k, v) in &self.failed_by_kind {
            line(&format!("  {k}"), v.to_string());
        }
        line("replayed (safe)", self.replayed.to_string());
        line(
            "outcome unknown",
            format!(
                "{} (ran: {}, did not run: {})",
                self.outcome_unknown, self.outcome_unknown_ran, self.outcome_unknown_not_ran
            ),
        );
        line("DUPLICATED", self.duplicates.to_string());
        line(
            "LOST",
            format!("{} (never ended: {})", self.lost, self.never_ended),
        );
        line("mismatched", self.mismatched.to_string());
        line(
            "connection refused",
            format!(
                "{} of {} probe connects",
                self.conn_refused, self.probe_connects
            ),
        );
        line(
            "latency p50/p99/p99.9",
            format!(
                "{} / {} / {} us (max {} us)",
                self.p50_us, self.p99_us, self.p999_us, self.max_us
            ),
        );
        line(
            "p99 steady / rolling",
            format!(
                "{} / {} us (while draining {} us)",
                self.p99_steady_us, self.p99_roll_us, self.p99_drain_us
            ),
        );
        line(
            "evict p50 / max",
            format!(
                "{} / {} us after the signal",
                self.evict_us_p50, self.evict_us_max
            ),
        );
        let drains: Vec<String> = self.drain_ms.iter().map(|d| format!("{d:.0}")).collect();
        line("drain ms", drains.join(" "));
        let codes: Vec<String> = self.exit_codes.iter().map(i32::to_string).collect();
        line("exit codes", codes.join(" "));
        format!(
            "gracerpc rollout\n{s}{}: {}\n",
            self.verdict, self.verdict_reason
        )
    }
}
