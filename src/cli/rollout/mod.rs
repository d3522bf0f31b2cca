//! `gracerpc rollout`: a local cluster restarted node by node under load, then audited for
//! failed, lost and duplicated calls.

mod audit;
pub(crate) mod node;
mod plot;
mod probe;
mod report;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use gracerpc::client::{CallOptions, Client, NodeEvent, NodeState};
use parking_lot::Mutex;

use super::load::{Load, LoadSpec};
use node::{NodeProc, NodeSpec, audit_path, exit_number};
use report::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// SIGTERM; nodes drain (GOAWAY, answer what they accepted); callers replay rejections.
    Graceful,
    /// Nodes exit at once on SIGTERM (`serve --naive`), and callers do not replay.
    Naive,
    /// SIGKILL (a crash) with graceful callers: outcome unknown is reported, never lost.
    Kill,
}

/// How a graceful restart replaces a node's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    /// SIGTERM, wait for the exit, start a new process on the same port.
    Plain,
    /// Start the new process first; it takes the listeners over (`serve --upgrade`) and the
    /// old one drains once the new one accepts: the port never closes.
    Handoff,
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
/// against its token's executions.
///
/// Exit codes: 0 the promise held (graceful mode: no call failed, none lost, none ran twice, no
/// outcome contradicts the audit files; other modes: the audit is consistent); 1 the promise was
/// broken; 2 bad arguments, or a --json/--plot path that cannot be written (checked before the
/// run); 3 the run could not be done (a node did not start or become ready; its logs are kept
/// and named); 4 the run was audited and its table printed, but a --json/--plot file could not
/// be written.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// Nodes in the cluster.
    #[arg(long, value_parser = crate::cli::nodes, default_value_t = 3)]
    nodes: usize,
    /// Rounds: every node is restarted this many times.
    #[arg(long, value_parser = crate::cli::rounds, default_value_t = 2)]
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
    /// Node drain budget (more than 0).
    #[arg(long, value_parser = crate::cli::drain_duration, default_value = "10s", value_name = "DURATION")]
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
    /// plain (stop, then start) or handoff (start the new process, which takes the
    /// listeners over; the old one drains after). Graceful mode only.
    #[arg(long, value_enum, default_value = "plain")]
    restart: Restart,
    /// Each node's startup time from binding to READY (`serve --startup`).
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    startup: Duration,
    #[arg(long, hide = true, conflicts_with = "startup")]
    startup_ms: Option<u64>,
    /// Nodes spend their startup burning CPU instead of sleeping (`serve --startup-burn`).
    #[arg(long)]
    startup_burn: bool,
    /// How the nodes' `record` waits: `deferred` serves it with a deferred responder completed
    /// by a timer (see `serve --handler-mode`).
    #[arg(long, value_enum, default_value_t = crate::cli::serve::HandlerMode::Blocking)]
    handler_mode: crate::cli::serve::HandlerMode,
    /// Connections the callers' client keeps to each node (1–16; the load's two drivers each
    /// keep to one of them).
    #[arg(long, value_parser = crate::cli::lanes, default_value_t = 1)]
    connections: usize,
    /// Run the nodes and the callers over mutual TLS: the run makes a throwaway CA, a node
    /// certificate (for 127.0.0.1) and a caller certificate itself. Reports the TLS handshake
    /// bursts the restarts caused. Needs a build with `--features tls`.
    #[arg(long)]
    tls: bool,
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

/// Exit codes (see the command's help).
const BROKEN: i32 = 1;
const USAGE: i32 = 2;
const NOT_RUN: i32 = 3;
const NOT_WRITTEN: i32 = 4;

pub fn run(args: RolloutArgs) -> i32 {
    crate::logger::init("[rollout] ");
    // Before any work: a report path that cannot be written fails now, not after the run.
    let png = args.plot.as_ref().map(|p| p.with_extension("png"));
    for path in [&args.json_file, &args.plot, &png].into_iter().flatten() {
        if let Err(e) = check_writable(path) {
            eprintln!("gracerpc rollout: {}: {e}", path.display());
            return USAGE;
        }
    }
    match rollout(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gracerpc rollout: {e}");
            NOT_RUN
        }
    }
}

/// Whether `path` can be written as a report: its folder exists and takes a new file there.
/// Leaves no file behind that was not there before.
fn check_writable(path: &std::path::Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    if !existed {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// The run's temporary folder (node logs, audit files, etcd data): removed when the run ends,
/// whatever the exit path, unless it is kept to be looked at — then its path is printed.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "gracerpc rollout: node logs kept in {}",
                self.path.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!(
                "gracerpc rollout: cannot remove {}: {e}",
                self.path.display()
            );
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
    // Declared first, so it is dropped last: after the nodes and the registry have stopped.
    // Kept (and named) if the run cannot be done: the node logs say why.
    let mut run_dir = RunDir {
        path: dir.clone(),
        keep: true,
    };
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
        startup_ms: args
            .startup_ms
            .unwrap_or(args.startup.as_millis().try_into().unwrap_or(u64::MAX)),
        startup_burn: args.startup_burn,
        handoff: args.restart == Restart::Handoff && args.mode == Mode::Graceful,
        handler_mode: args.handler_mode,
        tls: if args.tls {
            Some(super::tls::throwaway(&dir).map_err(|e| e.to_string())?)
        } else {
            None
        },
    };
    let handoff = spec.handoff;
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
    let builder = match &spec.tls {
        Some(files) => files.client(builder).map_err(|e| e.to_string())?,
        None => builder,
    };
    let client = builder
        .replay(args.mode != Mode::Naive)
        .connections_per_node(args.connections)
        .build()
        .map_err(|e| e.to_string())?;
    let events = client.subscribe();
    for a in &addrs {
        if !client.wait_ready(*a, Duration::from_secs(10)) {
            return Err(format!("node {a} never became ready"));
        }
    }
    // The report gives the connections the client has, not the flag: every node's, READY.
    let lanes_by = Instant::now() + Duration::from_secs(10);
    let lanes = loop {
        let least = addrs
            .iter()
            .map(|a| client.connections(*a))
            .min()
            .unwrap_or(0);
        if least >= args.connections || Instant::now() >= lanes_by {
            break least;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
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
            records: true,
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

    let probe = probe::Probe::start(addrs.clone());
    std::thread::sleep(Duration::from_millis(500));
    let mut restarts = Vec::new();
    let mut all_events: Vec<NodeEvent> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if k % n == 0 && args.duration.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        *progress.status.lock() = format!("restarting node {i} ({}/{})", k + 1, order.len());
        let addr = addrs[i];
        let budget = args.drain_timeout + Duration::from_secs(5);
        if handoff {
            restarts.push(restart_by_handoff(&spec, &mut nodes, i, addr, budget, t0)?);
            if !client.wait_ready(addr, Duration::from_secs(10)) {
                return Err(format!("node {i} ({addr}) not ready after its handoff"));
            }
            std::thread::sleep(args.settle_ms.map_or(args.settle, Duration::from_millis));
            continue;
        }
        let term = Instant::now();
        let sig = if args.mode == Mode::Kill {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        nodes[i]
            .signal(sig)
            .map_err(|e| format!("signal node {i}: {e}"))?;
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
    let stopped = load.stop(Duration::from_secs(15));
    let (calls, never_ended) = (stopped.records, stopped.never_ended);
    let (probes, refused) = probe.stop();
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
    report.restart = if handoff { "handoff" } else { "plain" };
    report.startup_ms = spec.startup_ms;
    report.startup_burn = args.startup_burn;
    report.connections = lanes;
    report.probes = probes;
    report.refused = refused;
    let summary = report.summary();
    let json = serde_json::to_string(&summary).map_err(|e| format!("report: {e}"))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", summary.table());
    }
    if spec.tls.is_some() {
        note(node::handshake_note(&dir, n));
    }
    let mut written = true;
    if let Some(path) = &args.json_file
        && let Err(e) = std::fs::write(
            path,
            json + "
",
        )
    {
        eprintln!(
            "gracerpc rollout: the report was not written: {}: {e}",
            path.display()
        );
        written = false;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "gracerpc rollout, mode {}: {}, {}, {}",
            args.mode.name(),
            plural(n, "node"),
            plural(restarts.len(), "restart"),
            plural(args.concurrency, "caller")
        );
        match plot::write(path, &calls, &restarts, &title) {
            Ok(png) => note(format!(
                "timeline written to {} and {}",
                path.display(),
                png.display()
            )),
            Err(e) => {
                eprintln!("gracerpc rollout: the timeline was not written: {e}");
                written = false;
            }
        }
    }
    drop(registry);
    // The logs are worth keeping when a graceful node did not exit cleanly.
    run_dir.keep = !restarts
        .iter()
        .all(|r| r.exit_code == 0 || args.mode != Mode::Graceful);
    // The verdict line (PASS/FAIL) and the exit status say the same.
    let broken = summary.verdict != "PASS";
    Ok(if broken {
        BROKEN
    } else if !written {
        NOT_WRITTEN
    } else {
        0
    })
}

/// One restart by handoff: the new process starts while the old one serves, takes its
/// listeners over and prints `ready` once it accepts; the old one then drains and exits. The
/// window recorded is from the spawn to the later of the old exit and the new `ready`.
fn restart_by_handoff(
    spec: &NodeSpec,
    nodes: &mut [NodeProc],
    i: usize,
    addr: SocketAddr,
    budget: Duration,
    t0: Instant,
) -> Result<RestartRecord, String> {
    let secs = |t: Instant| (t - t0).as_secs_f64();
    let spawned = Instant::now();
    let new = NodeProc::start(spec, i, &addr.to_string())
        .map_err(|e| format!("handoff of node {i}: {e}"))?;
    if new.addr != addr {
        return Err(format!(
            "handoff of node {i}: the new process serves {} instead of {addr}",
            new.addr
        ));
    }
    let ready = Instant::now();
    let (status, killed) = nodes[i].wait_exit(budget).map_err(|e| e.to_string())?;
    let exited = Instant::now();
    if killed {
        log::warn!("node {i}'s old process did not exit within {budget:?}: killed");
    }
    nodes[i] = new;
    Ok(RestartRecord {
        node: i,
        term_s: secs(spawned),
        exit_s: secs(exited),
        ready_s: secs(ready.max(exited)),
        exit_code: exit_number(status),
        drain_ms: (exited - ready).as_secs_f64() * 1e3,
        evict_us: None,
    })
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
