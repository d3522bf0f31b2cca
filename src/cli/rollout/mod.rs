//! `gracerpc rollout`: a local cluster restarted node by node under load, then audited for
//! failed, lost and duplicated calls.

mod audit;
mod node;
mod plot;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use gracerpc::client::{CallOptions, Client, NodeEvent, NodeState};
use parking_lot::Mutex;

use super::load::{CallRecord, Load, LoadSpec};
use super::summary::{Counts, Latency, RolloutReport};
use node::{NodeProc, NodeSpec, audit_path, exit_number};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// SIGTERM; nodes drain (GOAWAY, answer what they accepted); callers replay rejections.
    Graceful,
    /// Nodes exit at once on SIGTERM (`serve --naive`), and callers do not replay.
    Naive,
    /// SIGKILL (a crash) with graceful callers: outcome unknown is reported, never lost.
    Kill,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Graceful => "graceful",
            Mode::Naive => "naive",
            Mode::Kill => "kill",
        }
    }
}

/// Restart every node of a local cluster under load, then audit every call.
///
/// Starts N `gracerpc serve` processes on free loopback ports, runs C closed-loop callers of the
/// non-idempotent `record` method (every call carries a unique token that the node appends to its
/// audit file when it runs it), restarts each node R times, and cross-checks every call's outcome
/// against its token's executions. Exit status: non-zero in graceful mode if any call failed, was
/// lost or ran twice, or if an outcome contradicts the audit files.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// Nodes in the cluster.
    #[arg(long, value_parser = crate::cli::nodes, default_value_t = 3)]
    nodes: usize,
    /// Rounds: every node is restarted this many times.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Calls kept in flight (closed-loop callers).
    #[arg(long, value_parser = crate::cli::concurrency, default_value_t = 32)]
    concurrency: usize,
    /// How long each `record` call works on the node (`1ms`; a bare number is seconds, like
    /// every duration flag).
    #[arg(long, value_parser = crate::cli::duration, default_value = "1ms", value_name = "DURATION")]
    work: Duration,
    #[arg(long, hide = true, conflicts_with = "work")]
    work_ms: Option<u64>,
    /// Pause after a restarted node is ready again.
    #[arg(long, value_parser = crate::cli::duration, default_value = "300ms", value_name = "DURATION")]
    settle: Duration,
    #[arg(long, hide = true, conflicts_with = "settle")]
    settle_ms: Option<u64>,
    /// Warm-up ramp of a restarted node.
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    warmup: Duration,
    #[arg(long, hide = true, conflicts_with = "warmup")]
    warmup_ms: Option<u64>,
    /// graceful (SIGTERM + drain + replay), naive (exit at once, no replay) or kill (SIGKILL).
    #[arg(long, value_enum, default_value = "graceful")]
    mode: Mode,
    /// Print the report as one JSON object on stdout instead of the table (progress and
    /// notes go to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the report as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Write a timeline of calls/s with every restart marked: an SVG to FILE.svg and a PNG
    /// beside it (FILE.png).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Seed for the order in which nodes are restarted (default: in index order).
    #[arg(long)]
    seed: Option<u64>,
    /// Node drain budget.
    #[arg(long, value_parser = crate::cli::duration, default_value = "10s", value_name = "DURATION")]
    drain_timeout: Duration,
    /// Stop restarting once this long has passed, at the end of a round (for soak runs:
    /// `--rounds` large, `--duration` the real bound).
    #[arg(long, value_parser = crate::cli::duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Worker threads per node (`record` mostly waits, like a handler doing I/O).
    #[arg(long, value_parser = crate::cli::threads, default_value_t = 16)]
    workers: usize,
    /// Discover the nodes through a registry started for the run, instead of a static list.
    #[arg(long, value_enum)]
    registry: Option<RegistryKind>,
}

/// Where the callers find the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RegistryKind {
    /// A local etcd started for the run (needs `etcd` on the PATH and the `etcd` feature):
    /// nodes register once READY and deregister before GOAWAY; the callers get no address list
    /// and discover every node through etcd.
    Etcd,
}

/// One restart, in seconds since the load started.
#[derive(Clone, Debug)]
pub struct RestartRecord {
    pub node: usize,
    pub term_s: f64,
    pub exit_s: f64,
    pub ready_s: f64,
    pub exit_code: i32,
    pub drain_ms: f64,
    pub evict_us: Option<u64>,
}

pub fn run(args: RolloutArgs) -> i32 {
    crate::logger::init("[rollout] ");
    match rollout(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gracerpc rollout: {e}");
            1
        }
    }
}

/// Live progress on a terminal.
struct Progress {
    status: Mutex<String>,
    done: AtomicBool,
}

fn rollout(args: RolloutArgs) -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let dir = std::env::temp_dir().join(format!(
        "gracerpc-rollout-{}-{}",
        std::process::id(),
        super::bench::token_base() >> 32
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Declared before the nodes, so it is stopped (by its PID) after them.
    let registry = match args.registry {
        Some(RegistryKind::Etcd) => Some(super::registry::LocalRegistry::start(&dir.join("etcd"))?),
        None => None,
    };
    let service_url = registry.as_ref().map(|r| r.url("rollout"));
    let spec = NodeSpec {
        exe,
        work_ms: args
            .work_ms
            .unwrap_or(args.work.as_millis().try_into().unwrap_or(u64::MAX)),
        warmup_ms: args
            .warmup_ms
            .unwrap_or(args.warmup.as_millis().try_into().unwrap_or(u64::MAX)),
        drain_timeout_s: args.drain_timeout.as_secs_f64(),
        naive: args.mode == Mode::Naive,
        workers: args.workers,
        dir: dir.clone(),
        register: service_url.clone(),
    };
    let n = args.nodes.max(1);
    let mut nodes: Vec<NodeProc> = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(NodeProc::start(&spec, i, "127.0.0.1:0").map_err(|e| e.to_string())?);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|p| p.addr).collect();
    let builder = match &service_url {
        // The callers get no list: every node is found through the registry.
        Some(url) => super::registry::discover(Client::builder(), url)?,
        None => Client::builder().nodes(addrs.clone()),
    };
    let client = builder
        .replay(args.mode != Mode::Naive)
        .build()
        .map_err(|e| e.to_string())?;
    let events = client.subscribe();
    for a in &addrs {
        if !client.wait_ready(*a, Duration::from_secs(10)) {
            return Err(format!("node {a} never became ready"));
        }
    }
    let order = restart_order(n, args.rounds, args.seed);
    // With --json, stdout carries the JSON object alone.
    let tty = std::io::stdout().is_terminal() && !args.json;
    let note = |msg: String| {
        if args.json {
            eprintln!("{msg}");
        } else {
            println!("{msg}");
        }
    };
    if !tty {
        let until = args
            .duration
            .map_or(String::new(), |d| format!(" (rounds stop after {d:?})"));
        note(format!(
            "rollout: {} nodes, {} restarts{until}, {} callers of `record`, mode {}",
            n,
            order.len(),
            args.concurrency,
            args.mode.name()
        ));
    }

    let load = Load::start(
        &client,
        LoadSpec {
            method: "record".into(),
            payload: 16,
            concurrency: args.concurrency.max(1),
            drivers: 2,
            opts: CallOptions::new(),
            tokens: true,
            token_base: super::bench::token_base(),
        },
    );
    let t0 = load.started;
    let secs = |t: Instant| (t - t0).as_secs_f64();
    let progress = Arc::new(Progress {
        status: Mutex::new(String::new()),
        done: AtomicBool::new(false),
    });
    let ticker =
        tty.then(|| spawn_progress(progress.clone(), load.sent.clone(), load.failed.clone(), t0));

    std::thread::sleep(Duration::from_millis(500));
    let mut restarts = Vec::new();
    let mut all_events: Vec<NodeEvent> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if k % n == 0 && args.duration.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        *progress.status.lock() = format!("restarting node {i} ({}/{})", k + 1, order.len());
        let addr = addrs[i];
        let term = Instant::now();
        let sig = if args.mode == Mode::Kill {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        nodes[i]
            .signal(sig)
            .map_err(|e| format!("signal node {i}: {e}"))?;
        let budget = args.drain_timeout + Duration::from_secs(5);
        let (status, killed) = nodes[i].wait_exit(budget).map_err(|e| e.to_string())?;
        let exited = Instant::now();
        if killed {
            log::warn!("node {i} did not exit within {budget:?}: killed");
        }
        nodes[i] = NodeProc::restart(&spec, i, addr).map_err(|e| e.to_string())?;
        if !client.wait_ready(addr, Duration::from_secs(10)) {
            return Err(format!(
                "restarted node {i} ({addr}) never became ready for the client"
            ));
        }
        let ready = Instant::now();
        all_events.extend(events.try_iter());
        let evict_us = all_events
            .iter()
            .filter(|e| e.addr == addr && e.at >= term)
            .find(|e| {
                matches!(
                    e.state,
                    NodeState::Draining
                        | NodeState::Down
                        | NodeState::Connecting
                        | NodeState::Removed
                )
            })
            .map(|e| (e.at - term).as_micros() as u64);
        restarts.push(RestartRecord {
            node: i,
            term_s: secs(term),
            exit_s: secs(exited),
            ready_s: secs(ready),
            exit_code: exit_number(status),
            drain_ms: (exited - term).as_secs_f64() * 1e3,
            evict_us,
        });
        std::thread::sleep(args.settle_ms.map_or(args.settle, Duration::from_millis));
    }
    std::thread::sleep(Duration::from_millis(300));
    *progress.status.lock() = "stopping the load".into();
    let (calls, never_ended) = load.stop(Duration::from_secs(15));
    progress.done.store(true, Ordering::Release);
    if let Some(t) = ticker {
        let _ = t.join();
    }

    // Shut every node down gracefully, so every audit file is complete.
    for (i, node) in nodes.iter_mut().enumerate() {
        if node.signal(libc::SIGTERM).is_ok() {
            let _ = node.wait_exit(args.drain_timeout + Duration::from_secs(5));
        } else {
            log::warn!("could not stop node {i}");
        }
    }
    client.close(Duration::from_secs(1));
    let files: Vec<PathBuf> = (0..n).map(|i| audit_path(&dir, i)).collect();
    let runs = audit::read_executions(&files).map_err(|e| format!("reading audit files: {e}"))?;
    let found = audit::audit(&calls, &runs, never_ended);

    let mut report = Report::new(args.mode, n, &calls, &restarts, &found, never_ended);
    report.registry = service_url.as_ref().map_or("static", |_| "etcd");
    let summary = report.summary();
    let json = serde_json::to_string(&summary).map_err(|e| format!("report: {e}"))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", summary.table());
    }
    if let Some(path) = &args.json_file {
        std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "gracerpc rollout, mode {}: {}, {}, {}",
            args.mode.name(),
            plural(n, "node"),
            plural(restarts.len(), "restart"),
            plural(args.concurrency, "caller")
        );
        let png = plot::write(path, &calls, &restarts, &title).map_err(|e| format!("plot: {e}"))?;
        note(format!(
            "timeline written to {} and {}",
            path.display(),
            png.display()
        ));
    }
    drop(registry);
    if restarts
        .iter()
        .all(|r| r.exit_code == 0 || args.mode != Mode::Graceful)
    {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        note(format!("node logs kept in {}", dir.display()));
    }
    Ok(i32::from(summary.verdict != "PASS"))
}

/// `1 node`, `3 nodes`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn restart_order(nodes: usize, rounds: usize, seed: Option<u64>) -> Vec<usize> {
    let mut order = Vec::with_capacity(nodes * rounds);
    let mut x = seed.unwrap_or(0) | 1;
    for _ in 0..rounds {
        let mut round: Vec<usize> = (0..nodes).collect();
        if seed.is_some() {
            for i in (1..round.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                round.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        order.extend(round);
    }
    order
}

fn spawn_progress(
    p: Arc<Progress>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    failed: Arc<std::sync::atomic::AtomicU64>,
    t0: Instant,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = (Instant::now(), 0u64);
        while !p.done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(250));
            let now = Instant::now();
            let s = sent.load(Ordering::Relaxed);
            let rate = (s - last.1) as f64 / (now - last.0).as_secs_f64();
            last = (now, s);
            let mut out = std::io::stdout().lock();
            let _ = write!(
                out,
                "\r\x1b[2K{:6.1}s  {:7.0} calls/s  sent {s}  failed {}  {}",
                (now - t0).as_secs_f64(),
                rate,
                failed.load(Ordering::Relaxed),
                p.status.lock()
            );
            let _ = out.flush();
        }
        println!("\r\x1b[2K");
    })
}

struct Report {
    mode: Mode,
    /// Where callers found the nodes: `static` or `etcd`.
    registry: &'static str,
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
    fn new(
        mode: Mode,
        nodes: usize,
        calls: &[CallRecord],
        restarts: &[RestartRecord],
        audit: &audit::Audit,
        never_ended: u64,
    ) -> Report {
        let windows: Vec<(u64, u64)> = restarts
            .iter()
            .map(|r| ((r.term_s * 1e6) as u64, (r.ready_s * 1e6) as u64))
            .collect();
        let in_roll = |c: &CallRecord| {
            let (s, e) = (c.start_us, c.start_us + c.latency_us);
            windows.iter().any(|&(a, b)| s <= b && e >= a)
        };
        let drains: Vec<(u64, u64)> = restarts
            .iter()
            .map(|r| ((r.term_s * 1e6) as u64, (r.exit_s * 1e6) as u64))
            .collect();
        let in_drain = |c: &CallRecord| {
            let (s, e) = (c.start_us, c.start_us + c.latency_us);
            drains.iter().any(|&(a, b)| s <= b && e >= a)
        };
        let mut counts = Counts::of(calls);
        counts.sent += never_ended;
        Report {
            mode,
            registry: "static",
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
    fn summary(&self) -> RolloutReport {
        let c = &self.counts;
        let a = &self.audit;
        let (ev50, evmax) = self.evict();
        let graceful = self.mode == Mode::Graceful;
        let broken = !a.clean() || (graceful && c.failed > 0);
        let verdict_reason = format!(
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
        RolloutReport {
            mode: self.mode.name(),
            discovery: self.registry,
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
