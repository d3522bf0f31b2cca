//! A whole-cluster deterministic simulation, in the style of FoundationDB's simulator or
//! TigerBeetle's VOPR: several server cores and callers, each caller with the real
//! [`NodeTable`] and the real replay policy ([`Attempts`]), joined by the virtual network of
//! [`Sim`] (one `Sim` per connection) under one seeded virtual clock, with faults.
//!
//! What is real: every protocol decision ([`ServerConn`](gracerpc::proto::ServerConn),
//! [`ClientConn`](gracerpc::proto::ClientConn)), node choice ([`NodeTable::choose`]) and replay
//! decision ([`Attempts::decide`]). What is modelled here, after `src/client/link.rs` and
//! `io_loop.rs` (which own sockets and threads): the mapping of connection events to the table
//! (READY → capacity, GOAWAY → Draining, close → Down, busy hints → penalty), reconnection with
//! backoff, and discovery. The server application is modelled too: it starts, finishes and
//! (while overloaded) rejects requests at random.
//!
//! Faults: crash (every connection of a node cut), graceful restart (GOAWAY, drain budget, exit
//! at its end), silence after GOAWAY (the node stops answering and its packets stop), partition
//! of one caller from one node and heal, slow reader, overload, discovery flaps.
//!
//! Checks: every call resolves exactly once and by its deadline; Completed ⇒ ran once (at
//! least once if idempotent); an error that says "never ran" ⇒ never ran; a non-idempotent call
//! never runs twice; once the faults heal and the calls end, no connection is left beyond one
//! per caller and node, and no buffer, queue or table grows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gracerpc::client::CallError;
use gracerpc::client::NodeState;
use gracerpc::client::policy::{Attempts, Policy, Verdict};
use gracerpc::client::retry_budget::RetryBudget;
use gracerpc::client::table::{NodeTable, random_below, seed_thread_rng};
use gracerpc::proto::{ClientConnConfig, ClientEvent, Outcome, RejectReason, ServerConnConfig};

use super::sim::{Ev, MS, Mode, Sim, SimConfig};

/// splitmix64: small, fast, and enough to pick schedules.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// A fault, injected at a chosen virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The node's host dies: every connection cut; back after `down`.
    Crash { node: usize, down: Duration },
    /// SIGTERM: GOAWAY with `budget`, exit when drained or at the budget; back after `down`.
    Restart {
        node: usize,
        budget: Duration,
        down: Duration,
    },
    /// GOAWAY, then nothing: no answer, no packet (a host that froze while draining).
    SilentAfterGoaway {
        node: usize,
        budget: Duration,
        down: Duration,
    },
    /// Nothing passes between `client` and `node` for `len`.
    Partition {
        client: usize,
        node: usize,
        len: Duration,
    },
    /// The caller reads answers from `node` a few bytes at a time for `len`.
    SlowReader {
        client: usize,
        node: usize,
        len: Duration,
    },
    /// The node rejects queued work as OVERLOADED (at random) for `len`.
    Overload { node: usize, len: Duration },
    /// Discovery drops `node` for `client`, and lists it again after `len`.
    Flap {
        client: usize,
        node: usize,
        len: Duration,
    },
}

/// The shape of one simulated cluster, drawn from a seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub nodes: usize,
    pub clients: usize,
    pub calls: usize,
    /// Calls arrive over this period.
    pub load: Duration,
    pub faults: Vec<(Duration, Fault)>,
    pub server: ServerConnConfig,
    pub client: ClientConnConfig,
    pub policy: Policy,
    /// The caller's driver closes a connection discovery removed once nothing is outstanding
    /// on it (off: it is left open, as `io_loop.rs` did before issue 11, finding 4).
    pub close_removed: bool,
}

impl Scenario {
    /// A random scenario.
    pub fn random(rng: &mut Rng) -> Scenario {
        let nodes = 2 + rng.below(3) as usize;
        let clients = 1 + rng.below(3) as usize;
        let load = rng.ms(500, 3_000);
        let mut faults = Vec::new();
        for _ in 0..rng.below(7) {
            let at = rng.ms(0, load.as_millis() as u64);
            let node = rng.below(nodes as u64) as usize;
            let client = rng.below(clients as u64) as usize;
            let f = match rng.below(7) {
                0 => Fault::Crash {
                    node,
                    down: rng.ms(10, 800),
                },
                1 => Fault::Restart {
                    node,
                    budget: rng.ms(50, 1_500),
                    down: rng.ms(10, 300),
                },
                2 => Fault::SilentAfterGoaway {
                    node,
                    budget: rng.ms(50, 1_500),
                    down: rng.ms(10, 300),
                },
                3 => Fault::Partition {
                    client,
                    node,
                    len: rng.ms(10, 1_500),
                },
                4 => Fault::SlowReader {
                    client,
                    node,
                    len: rng.ms(10, 1_000),
                },
                5 => Fault::Overload {
                    node,
                    len: rng.ms(10, 800),
                },
                _ => Fault::Flap {
                    client,
                    node,
                    len: rng.ms(1, 500),
                },
            };
            faults.push((at, f));
        }
        faults.sort_by_key(|(t, _)| *t);
        Scenario {
            nodes,
            clients,
            calls: 50 + rng.below(250) as usize,
            load,
            faults,
            server: ServerConnConfig {
                max_in_flight: 2 + rng.below(64) as usize,
                idle_timeout: rng.ms(200, 3_000),
                ping_timeout: rng.ms(100, 1_000),
                linger: rng.ms(20, 500),
                hello_timeout: rng.ms(200, 2_000),
                ..ServerConnConfig::default()
            },
            client: ClientConnConfig {
                ping_interval: rng.ms(100, 2_000),
                ping_timeout: rng.ms(100, 1_000),
                hello_timeout: rng.ms(200, 2_000),
                ..ClientConnConfig::default()
            },
            policy: Policy {
                replay: true,
                max_replays: 16,
            },
            close_removed: true,
        }
    }
}

struct Node {
    addr: SocketAddr,
    /// Listening (connections succeed).
    up: bool,
    /// Draining: the listener is closed.
    draining: bool,
    /// Its application answers nothing.
    hung: bool,
    overloaded_until: Instant,
    /// The process exits then (drain budget spent).
    exit_at: Option<Instant>,
    /// Back (listening again) then.
    back_at: Option<Instant>,
    /// Downtime after the exit.
    down: Duration,
}

struct Conn {
    sim: Sim,
    client: usize,
    node: usize,
    /// Events of `sim` already handled.
    seen: usize,
    /// Wire id → call, while unresolved.
    wire: BTreeMap<u64, usize>,
    /// Wire id → call, kept after resolution: a server may still run a request whose outcome
    /// the caller saw as unknown (a partition), and that run counts.
    sent: BTreeMap<u64, usize>,
    /// The node's current connection for its caller.
    current: bool,
    /// The driver half-closed it (discovery removed its node).
    closing: bool,
    slow_until: Option<Instant>,
    partitioned_until: Option<Instant>,
}

impl Conn {
    fn live(&self) -> bool {
        !(self.sim.server_closed() && self.sim.client_closed())
    }
}

struct Client {
    table: NodeTable,
    /// The client-wide budget of busy replays (the client's defaults).
    budget: RetryBudget,
    /// Per node: the current connection (an index into `World::conns`).
    current: Vec<Option<usize>>,
    retry_at: Vec<Instant>,
    backoff: Vec<Duration>,
    /// Per node: listed by discovery, or listed again at that time.
    listed: Vec<bool>,
    relist_at: Vec<Option<Instant>>,
    /// Per node: connections refused until then (a partition).
    cut_until: Vec<Option<Instant>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Arriving(Instant),
    Waiting(Instant),
    InFlight { conn: usize, id: u64 },
    Done(Result<(), CallError>, Instant),
}

struct Call {
    client: usize,
    deadline: Instant,
    idempotent: bool,
    attempts: Attempts,
    state: State,
}

/// The simulated cluster.
pub struct World {
    pub seed: u64,
    rng: Rng,
    sc: Scenario,
    base: Instant,
    pub now: Instant,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    conns: Vec<Conn>,
    calls: Vec<Call>,
    /// Executions per call.
    ran: Vec<u32>,
    faults: Vec<(Instant, Fault)>,
    trace: Vec<String>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// While something is happening, the clock moves at most this far per step (the application
/// and callers act at step boundaries).
const STEP: Duration = Duration::from_millis(1);

impl World {
    /// A world for `seed`, built from `sc` (usually `Scenario::random` of the same seed).
    pub fn new(seed: u64, sc: Scenario) -> World {
        seed_thread_rng(seed);
        let mut rng = Rng(seed ^ 0x5eed);
        let nodes: Vec<SocketAddr> = (0..sc.nodes)
            .map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000)))
            .collect();
        let clients: Vec<Client> = (0..sc.clients)
            .map(|_| {
                let table = NodeTable::new();
                for a in &nodes {
                    table.upsert(*a);
                }
                Client {
                    table,
                    budget: RetryBudget::new(100, 10.0),
                    current: vec![None; sc.nodes],
                    retry_at: Vec::new(),
                    backoff: vec![BACKOFF_MIN; sc.nodes],
                    listed: vec![true; sc.nodes],
                    relist_at: vec![None; sc.nodes],
                    cut_until: vec![None; sc.nodes],
                }
            })
            .collect();
        // After the tables: their epoch must not be later than the virtual clock.
        let base = Instant::now();
        let mut clients = clients;
        for c in &mut clients {
            c.retry_at = vec![base; sc.nodes];
        }
        let calls = (0..sc.calls)
            .map(|_| {
                let start = base + rng.ms(0, sc.load.as_millis() as u64);
                Call {
                    client: rng.below(sc.clients as u64) as usize,
                    deadline: start + rng.ms(20, 3_000),
                    idempotent: rng.one_in(4),
                    attempts: Attempts::new(),
                    state: State::Arriving(start),
                }
            })
            .collect::<Vec<_>>();
        let ran = vec![0; calls.len()];
        let faults = sc.faults.iter().map(|(t, f)| (base + *t, *f)).collect();
        World {
            seed,
            rng,
            base,
            now: base,
            nodes: nodes
                .into_iter()
                .map(|addr| Node {
                    addr,
                    up: true,
                    draining: false,
                    hung: false,
                    overloaded_until: base,
                    exit_at: None,
                    back_at: None,
                    down: Duration::ZERO,
                })
                .collect(),
            clients,
            conns: Vec::new(),
            calls,
            ran,
            faults,
            trace: Vec::new(),
            sc,
        }
    }

    fn note(&mut self, what: String) {
        let t = self.now - self.base;
        self.trace.push(format!("{:>10.3?}  {what}", t));
    }

    /// Fails the run with the seed, the trace and how to replay it.
    fn fail(&self, why: String) -> ! {
        let mut s = String::new();
        for line in self.trace.iter().rev().take(60).rev() {
            let _ = writeln!(s, "{line}");
        }
        panic!(
            "cluster simulation, seed {}: {why}\nlast events:\n{s}\nreplay: SIM_CLUSTER_SEED={} \
             cargo test --release --all-features --test sim_cluster -- --nocapture (or SEED={} \
             scripts/sim.sh)",
            self.seed, self.seed, self.seed
        );
    }

    /// Runs the scenario to its end and checks everything. Returns a one-line summary.
    pub fn run(mut self) -> String {
        let horizon = self.base + self.sc.load + Duration::from_secs(30);
        let mut steps = 0u64;
        loop {
            steps += 1;
            if steps > 2_000_000 || self.now > horizon {
                let nodes: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "up {} draining {} exit {:?} back {:?}",
                            n.up,
                            n.draining,
                            n.exit_at.map(|t| t - self.base),
                            n.back_at.map(|t| t - self.base)
                        )
                    })
                    .collect();
                let open: Vec<String> = self
                    .calls
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !matches!(c.state, State::Done(..)))
                    .map(|(i, c)| {
                        let conn = match c.state {
                            State::InFlight { conn, .. } => {
                                let k = &self.conns[conn];
                                format!(
                                    " (conn {conn}: server closed {}, caller closed {}, timer \
                                     {:?})\n{}",
                                    k.sim.server_closed(),
                                    k.sim.client_closed(),
                                    k.sim.next_timer().map(|t| t - self.base),
                                    k.sim.dump()
                                )
                            }
                            _ => String::new(),
                        };
                        format!(
                            "call {i}: {:?}, deadline {:?}{conn}",
                            c.state,
                            c.deadline - self.base
                        )
                    })
                    .collect();
                self.fail(format!(
                    "did not settle in {steps} steps: nodes {nodes:?}; calls not ended {open:?}; \
                     faults left {}",
                    self.faults.len()
                ));
            }
            self.step();
            if self.all_done() && self.faults.is_empty() && self.healed() {
                break;
            }
            self.advance();
        }
        // Let timers, PINGs and closes play out with nothing else happening.
        let settle = self.now + Duration::from_secs(5);
        while self.now < settle {
            self.step();
            self.advance_until(settle);
        }
        self.step();
        self.check_calls();
        self.check_no_growth();
        let (ok, failed): (Vec<_>, Vec<_>) = self
            .calls
            .iter()
            .partition(|c| matches!(c.state, State::Done(Ok(()), _)));
        format!(
            "seed {}: {} nodes, {} callers, {} calls ({} ok, {} ended otherwise), {} faults, {} \
             connections, {steps} steps, {:?} virtual",
            self.seed,
            self.sc.nodes,
            self.sc.clients,
            self.calls.len(),
            ok.len(),
            failed.len(),
            self.sc.faults.len(),
            self.conns.len(),
            self.now - self.base
        )
    }

    fn all_done(&self) -> bool {
        self.calls
            .iter()
            .all(|c| matches!(c.state, State::Done(..)))
    }

    fn healed(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.up && !n.draining && n.back_at.is_none() && n.exit_at.is_none())
            && self.clients.iter().all(|c| {
                c.relist_at.iter().all(Option::is_none) && c.cut_until.iter().all(Option::is_none)
            })
            && self
                .conns
                .iter()
                .all(|c| c.slow_until.is_none() && c.partitioned_until.is_none())
    }

    // ---- one step at `now` ----

    fn step(&mut self) {
        self.apply_faults();
        self.timers();
        for _ in 0..3 {
            self.pump_all();
            self.apps();
        }
        self.pump_all();
        self.maintain();
        self.calls_step();
        self.pump_all();
    }

    fn pump_all(&mut self) {
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            // A connection cut by a fault is no longer live but has its last events to hand out.
            if c.live() || c.seen < c.sim.log_len() {
                self.pump(ci);
            }
        }
    }

    fn pump(&mut self, ci: usize) {
        let now = self.now;
        let conn = &mut self.conns[ci];
        if conn.live() {
            conn.sim.now = now;
            conn.sim.run();
        }
        let evs = conn.sim.events_from(conn.seen);
        conn.seen = conn.sim.log_len();
        for ev in evs {
            self.on_event(ci, ev);
        }
    }

    fn on_event(&mut self, ci: usize, ev: Ev) {
        let now = self.now;
        let (client, node, current) = {
            let c = &self.conns[ci];
            (c.client, c.node, c.current)
        };
        match ev {
            Ev::Started(id) => {
                let Some(&call) = self.conns[ci].sent.get(&id) else {
                    self.fail(format!("conn {ci}: request {id} started, no call sent it"));
                };
                self.ran[call] += 1;
                if self.ran[call] > 1 && !self.calls[call].idempotent {
                    self.fail(format!("call {call} (not idempotent) ran twice"));
                }
            }
            Ev::Client(ClientEvent::Ready(capacity)) if current => {
                let t = &self.clients[client].table;
                let n = t.nodes().nth(node).cloned().expect("node");
                if n.state() != NodeState::Removed {
                    t.set_capacity(&n, capacity, now);
                }
            }
            Ev::Client(ClientEvent::GoAway { .. })
            | Ev::Client(ClientEvent::NodeHint(RejectReason::SHUTTING_DOWN))
                if current =>
            {
                self.detach(ci);
                self.set_state(client, node, NodeState::Draining);
            }
            Ev::Client(ClientEvent::NodeHint(
                RejectReason::OVERLOADED | RejectReason::NOT_READY,
            )) => {
                let t = &self.clients[client].table;
                let n = t.nodes().nth(node).cloned().expect("node");
                t.penalize(&n, now);
            }
            Ev::Client(ClientEvent::Resolved { id, outcome, .. }) => {
                let Some(call) = self.conns[ci].wire.remove(&id) else {
                    self.fail(format!(
                        "conn {ci}: request {id} resolved twice or never sent"
                    ));
                };
                self.resolve(call, ci, id, outcome);
            }
            Ev::Client(ClientEvent::Closed { error }) => {
                self.note(format!(
                    "conn {ci} (caller {client} → node {node}) closed: {error:?}"
                ));
                if current {
                    self.detach(ci);
                    self.set_state(client, node, NodeState::Down);
                }
            }
            _ => {}
        }
    }

    fn set_state(&self, client: usize, node: usize, state: NodeState) {
        let t = &self.clients[client].table;
        let n = t.nodes().nth(node).cloned().expect("node");
        if n.state() != NodeState::Removed {
            t.set_state(&n, state, self.now);
        }
    }

    fn detach(&mut self, ci: usize) {
        let (client, node) = (self.conns[ci].client, self.conns[ci].node);
        self.conns[ci].current = false;
        if self.clients[client].current[node] == Some(ci) {
            self.clients[client].current[node] = None;
        }
    }

    fn resolve(&mut self, call: usize, ci: usize, id: u64, outcome: Outcome) {
        let now = self.now;
        let c = &mut self.calls[call];
        if c.state != (State::InFlight { conn: ci, id }) {
            let state = c.state.clone();
            self.fail(format!(
                "call {call}: an outcome for conn {ci} id {id} while it is {state:?}"
            ));
        }
        let node = self.conns[ci].node;
        let client = self.conns[ci].client;
        if let Some(n) = self.clients[client].table.nodes().nth(node) {
            n.sub_outstanding();
        }
        let c = &mut self.calls[call];
        let budget = &self.clients[client].budget;
        match c.attempts.decide(
            self.sc.policy,
            c.idempotent,
            outcome.clone(),
            node,
            budget,
            &mut random_below,
        ) {
            Verdict::Done(_) => c.state = State::Done(Ok(()), now),
            Verdict::Fail(e) => {
                // As CallFuture::finish: an earlier attempt may have run.
                let e = if c.attempts.may_have_run() && !e.may_have_run() {
                    CallError::OutcomeUnknown
                } else {
                    e
                };
                c.state = State::Done(Err(e), now);
            }
            Verdict::Again { pause } => {
                c.state = State::Waiting(now + pause.unwrap_or(Duration::ZERO));
            }
        }
        let state = self.calls[call].state.clone();
        self.note(format!(
            "call {call}: {outcome:?} on node {node} → {state:?}"
        ));
    }

    // ---- the servers' applications ----

    fn apps(&mut self) {
        let now = self.now;
        for ci in 0..self.conns.len() {
            let node = self.conns[ci].node;
            if !self.conns[ci].live() || self.conns[ci].sim.server_closed() || self.nodes[node].hung
            {
                continue;
            }
            let overloaded = self.nodes[node].overloaded_until > now;
            let queued: Vec<u64> = self.conns[ci].sim.app.queued.keys().copied().collect();
            for id in queued {
                match self.rng.below(8) {
                    0 if overloaded => self.conns[ci].sim.reject(id, RejectReason::OVERLOADED),
                    0..=3 => {
                        self.conns[ci].sim.start(id);
                    }
                    _ => {}
                }
            }
            let running: Vec<u64> = self.conns[ci].sim.app.running.iter().copied().collect();
            for id in running {
                if self.rng.below(4) == 0 {
                    self.conns[ci].sim.finish(id);
                }
            }
        }
    }

    // ---- the callers' drivers ----

    fn maintain(&mut self) {
        let now = self.now;
        for cl in 0..self.clients.len() {
            for n in 0..self.nodes.len() {
                if let Some(t) = self.clients[cl].relist_at[n]
                    && t <= now
                {
                    self.clients[cl].relist_at[n] = None;
                    self.clients[cl].listed[n] = true;
                    self.clients[cl].table.upsert(self.nodes[n].addr);
                    self.clients[cl].retry_at[n] = now;
                    self.note(format!("caller {cl}: node {n} listed again"));
                }
                if let Some(t) = self.clients[cl].cut_until[n]
                    && t <= now
                {
                    self.clients[cl].cut_until[n] = None;
                }
                let c = &self.clients[cl];
                if !c.listed[n] || c.current[n].is_some() || now < c.retry_at[n] {
                    continue;
                }
                let (backoff, cut) = (c.backoff[n], c.cut_until[n].is_some());
                self.clients[cl].retry_at[n] = now + backoff;
                self.clients[cl].backoff[n] = (backoff * 2).min(BACKOFF_MAX);
                let node = &self.nodes[n];
                let reachable = node.up && !node.draining && !cut;
                let state = {
                    let t = &self.clients[cl].table;
                    t.nodes().nth(n).map(|x| x.state())
                };
                if !reachable {
                    if state != Some(NodeState::Draining) {
                        self.set_state(cl, n, NodeState::Down);
                    }
                    continue;
                }
                let sim = Sim::with_at(
                    SimConfig {
                        server: Some(self.sc.server.clone()),
                        client: Some(self.sc.client.clone()),
                        ready: Some(100),
                        mode: Mode::Manual,
                    },
                    now,
                );
                let ci = self.conns.len();
                self.conns.push(Conn {
                    sim,
                    client: cl,
                    node: n,
                    seen: 0,
                    wire: BTreeMap::new(),
                    sent: BTreeMap::new(),
                    current: true,
                    closing: false,
                    slow_until: None,
                    partitioned_until: None,
                });
                self.clients[cl].current[n] = Some(ci);
                self.clients[cl].backoff[n] = BACKOFF_MIN;
                if state != Some(NodeState::Draining) {
                    self.set_state(cl, n, NodeState::Connecting);
                }
                self.note(format!("conn {ci}: caller {cl} → node {n}"));
            }
        }
        // A connection discovery removed is closed once nothing is outstanding on it.
        if self.sc.close_removed {
            for ci in 0..self.conns.len() {
                let c = &mut self.conns[ci];
                if c.live()
                    && !c.current
                    && !c.closing
                    && !c.sim.client_closed()
                    && c.sim.client().outstanding() == 0
                {
                    c.closing = true;
                    c.sim.client_shutdown_write();
                }
            }
        }
    }

    fn calls_step(&mut self) {
        let now = self.now;
        for call in 0..self.calls.len() {
            let c = &self.calls[call];
            let ready_at = match c.state {
                State::Arriving(t) | State::Waiting(t) => t,
                _ => continue,
            };
            if now >= c.deadline {
                let err = if c.attempts.may_have_run() {
                    CallError::DeadlineExceeded { may_have_run: true }
                } else {
                    CallError::NoNodeAvailable { nodes: Vec::new() }
                };
                self.calls[call].state = State::Done(Err(err), now);
                continue;
            }
            if now < ready_at {
                continue;
            }
            let cl = c.client;
            for _ in 0..4 {
                let c = &self.calls[call];
                let Some(node) = self.clients[cl].table.choose(now, c.attempts.avoid()) else {
                    break;
                };
                let n = node.index();
                let Some(ci) = self.clients[cl].current[n] else {
                    continue;
                };
                let (deadline, idem) = (c.deadline, c.idempotent);
                let conn = &mut self.conns[ci];
                conn.sim.now = now;
                if !conn.sim.client().is_sendable() {
                    continue;
                }
                match conn.sim.try_send_as(deadline, idem) {
                    Ok(id) => {
                        conn.wire.insert(id, call);
                        conn.sent.insert(id, call);
                        node.add_outstanding();
                        self.calls[call].state = State::InFlight { conn: ci, id };
                        break;
                    }
                    Err(_) => continue,
                }
            }
        }
    }

    // ---- faults ----

    fn apply_faults(&mut self) {
        let now = self.now;
        while self.faults.first().is_some_and(|(t, _)| *t <= now) {
            let (_, f) = self.faults.remove(0);
            self.note(format!("FAULT {f:?}"));
            match f {
                Fault::Crash { node, down } => {
                    if self.nodes[node].up {
                        self.exit(node);
                        self.nodes[node].back_at = Some(now + down);
                    }
                }
                Fault::Restart { node, budget, down }
                | Fault::SilentAfterGoaway { node, budget, down } => {
                    let n = &mut self.nodes[node];
                    if !n.up || n.draining {
                        continue;
                    }
                    n.draining = true;
                    n.exit_at = Some(now + budget);
                    n.down = down;
                    let silent = matches!(f, Fault::SilentAfterGoaway { .. });
                    for ci in self.conns_of(None, node) {
                        let c = &mut self.conns[ci];
                        if c.sim.server_closed() {
                            continue;
                        }
                        c.sim.now = now;
                        c.sim.start_drain(budget);
                        if silent {
                            c.sim.run(); // the GOAWAY goes out, then silence
                            c.sim.s2c.hold = true;
                        }
                    }
                    if silent {
                        self.nodes[node].hung = true;
                    }
                }
                Fault::Partition { client, node, len } => {
                    self.clients[client].cut_until[node] = Some(now + len);
                    for ci in self.conns_of(Some(client), node) {
                        let c = &mut self.conns[ci];
                        c.sim.c2s.hold = true;
                        c.sim.s2c.hold = true;
                        c.partitioned_until = Some(now + len);
                    }
                }
                Fault::SlowReader { client, node, len } => {
                    for ci in self.conns_of(Some(client), node) {
                        let c = &mut self.conns[ci];
                        c.sim.s2c.read_limit = Some(7);
                        c.slow_until = Some(now + len);
                    }
                }
                Fault::Overload { node, len } => {
                    self.nodes[node].overloaded_until = now + len;
                }
                Fault::Flap { client, node, len } => {
                    let c = &mut self.clients[client];
                    if !c.listed[node] {
                        continue;
                    }
                    c.listed[node] = false;
                    c.relist_at[node] = Some(now + len);
                    if let Some(ci) = c.current[node].take() {
                        self.conns[ci].current = false;
                    }
                    let t = &self.clients[client].table;
                    let n = t.nodes().nth(node).cloned().expect("node");
                    t.set_state(&n, NodeState::Removed, now);
                }
            }
        }
    }

    /// Timed ends of faults.
    fn timers(&mut self) {
        let now = self.now;
        for node in 0..self.nodes.len() {
            if self.nodes[node].exit_at.is_some_and(|t| t <= now) {
                self.nodes[node].exit_at = None;
                self.exit(node);
                self.nodes[node].back_at = Some(now + self.nodes[node].down);
            }
            if self.nodes[node].draining
                && self.nodes[node].exit_at.is_some()
                && self
                    .conns_of(None, node)
                    .iter()
                    .all(|&ci| self.conns[ci].sim.server_closed())
            {
                // Drained: every connection closed, the process exits.
                self.nodes[node].exit_at = None;
                self.exit(node);
                self.nodes[node].back_at = Some(now + self.nodes[node].down);
            }
            if self.nodes[node].back_at.is_some_and(|t| t <= now) {
                let n = &mut self.nodes[node];
                n.back_at = None;
                n.up = true;
                n.draining = false;
                n.hung = false;
                self.note(format!("node {node} back"));
            }
        }
        for ci in 0..self.conns.len() {
            let c = &mut self.conns[ci];
            if c.slow_until.is_some_and(|t| t <= now) {
                c.slow_until = None;
                c.sim.s2c.read_limit = None;
            }
            if c.partitioned_until.is_some_and(|t| t <= now) {
                c.partitioned_until = None;
                c.sim.c2s.hold = false;
                c.sim.s2c.hold = false;
            }
        }
    }

    /// The node's process ends: whatever is still connected is cut.
    fn exit(&mut self, node: usize) {
        self.nodes[node].up = false;
        self.nodes[node].draining = false;
        for ci in self.conns_of(None, node) {
            let c = &mut self.conns[ci];
            c.sim.now = self.now;
            if !c.sim.server_closed() || !c.sim.client_closed() {
                c.sim.kill();
            }
        }
        self.note(format!("node {node} exits"));
    }

    fn conns_of(&self, client: Option<usize>, node: usize) -> Vec<usize> {
        (0..self.conns.len())
            .filter(|&ci| {
                let c = &self.conns[ci];
                c.live() && c.node == node && client.is_none_or(|cl| c.client == cl)
            })
            .collect()
    }

    // ---- the clock ----

    fn busy(&self) -> bool {
        self.conns.iter().any(|c| {
            c.live()
                && !self.nodes[c.node].hung
                && (!c.sim.app.queued.is_empty() || !c.sim.app.running.is_empty())
        }) || self
            .calls
            .iter()
            .any(|c| matches!(c.state, State::Waiting(t) if t <= self.now))
    }

    fn next_event(&self) -> Option<Instant> {
        let mut next: Vec<Instant> = Vec::new();
        if self.busy() {
            next.push(self.now + STEP);
        }
        next.extend(
            self.conns
                .iter()
                .filter(|c| c.live())
                .filter_map(|c| c.sim.next_timer()),
        );
        for c in &self.calls {
            match c.state {
                State::Arriving(t) | State::Waiting(t) => {
                    next.push(t.max(self.now + STEP).min(c.deadline));
                }
                _ => {}
            }
        }
        next.extend(self.faults.first().map(|(t, _)| *t));
        for n in &self.nodes {
            next.extend(n.exit_at);
            next.extend(n.back_at);
        }
        for (cl, c) in self.clients.iter().enumerate() {
            for n in 0..self.nodes.len() {
                next.extend(c.relist_at[n]);
                next.extend(c.cut_until[n]);
                let _ = cl;
                if c.listed[n] && c.current[n].is_none() {
                    next.push(c.retry_at[n]);
                }
            }
        }
        for c in &self.conns {
            next.extend(c.slow_until);
            next.extend(c.partitioned_until);
        }
        next.into_iter().min()
    }

    fn advance(&mut self) {
        let t = self.next_event().unwrap_or(self.now + STEP);
        self.now = t.max(self.now);
    }

    fn advance_until(&mut self, end: Instant) {
        let t = self.next_event().unwrap_or(end).min(end);
        self.now = t.max(self.now + MS).min(end.max(self.now));
    }

    // ---- the checks ----

    fn check_calls(&self) {
        for (i, c) in self.calls.iter().enumerate() {
            let State::Done(r, at) = &c.state else {
                self.fail(format!("call {i} never ended: {:?}", c.state));
            };
            if *at > c.deadline {
                self.fail(format!(
                    "call {i} ended {:?} after its deadline: {r:?}",
                    *at - c.deadline
                ));
            }
            let ran = self.ran[i];
            match r {
                Ok(()) if ran == 0 => self.fail(format!("call {i} completed but never ran")),
                Ok(()) if ran > 1 && !c.idempotent => {
                    self.fail(format!("call {i} completed and ran {ran} times"))
                }
                Err(e) if !e.may_have_run() && ran > 0 => self.fail(format!(
                    "call {i} ended with {e:?} (never ran) but ran {ran} times"
                )),
                _ => {}
            }
        }
    }

    fn check_no_growth(&self) {
        for (cl, c) in self.clients.iter().enumerate() {
            let open: Vec<usize> = (0..self.conns.len())
                .filter(|&ci| self.conns[ci].client == cl && !self.conns[ci].sim.client_closed())
                .collect();
            if open.len() > self.nodes.len() {
                self.fail(format!(
                    "caller {cl} holds {} open connections to {} nodes after the faults healed: \
                     {open:?}",
                    open.len(),
                    self.nodes.len()
                ));
            }
            if c.table.nodes().count() > self.nodes.len() {
                self.fail(format!("caller {cl}'s table grew"));
            }
            for n in c.table.nodes() {
                if n.outstanding() != 0 {
                    self.fail(format!(
                        "caller {cl}: node {} counts {} outstanding calls with none left",
                        n.addr(),
                        n.outstanding()
                    ));
                }
            }
        }
        for n in 0..self.nodes.len() {
            let open = (0..self.conns.len())
                .filter(|&ci| self.conns[ci].node == n && !self.conns[ci].sim.server_closed())
                .count();
            if open > self.clients.len() {
                self.fail(format!(
                    "node {n} holds {open} connections from {} callers after the faults healed",
                    self.clients.len()
                ));
            }
        }
        for (ci, c) in self.conns.iter().enumerate() {
            if c.sim.server_closed() && c.sim.client_closed() {
                continue;
            }
            let client_out = c.sim.client.as_ref().map_or(0, |x| x.out_len());
            let server_out = c.sim.server.as_ref().map_or(0, |x| x.out_len());
            let piped = c.sim.c2s.buffered() + c.sim.s2c.buffered();
            let app = c.sim.app.queued.len() + c.sim.app.running.len();
            if client_out + server_out + piped + app + c.wire.len() > 0 {
                self.fail(format!(
                    "conn {ci} still holds data with nothing to do: out {client_out}/{server_out} \
                     bytes, {piped} in the network, {app} requests in the app, {} wire ids",
                    c.wire.len()
                ));
            }
        }
    }
}
