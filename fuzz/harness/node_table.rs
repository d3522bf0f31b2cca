//! The `node_table` target: drives a [`NodeTable`] with a list of operations (upserts of a few
//! addresses, state and capacity changes, penalties, choices with and without a node to avoid,
//! snapshots, time) on a single thread, against a model, and checks after each one:
//!
//! * `choose` returns a node only if one is choosable (Warming or Ready) at that moment, and then
//!   always one; never a Connecting, Draining, Down or Removed node;
//! * `avoid` is honoured whenever another node is choosable (and the avoided node is returned
//!   only when it is the only one);
//! * of exactly two candidates, the less loaded (outstanding per capacity, a penalized node
//!   counting a quarter of its capacity for 200 ms) wins; ties go either way;
//! * `upsert` keeps a node's slot and revives a removed node as Down; `set_capacity` makes a
//!   node Warming (below 100 %) or Ready; `snapshot` lists exactly the nodes not removed;
//! * a subscriber is told of every change of state, and of capacity, in order; no panic.
//!
//! Shared by `fuzz/fuzz_targets/node_table.rs` and `tests/fuzz_corpus.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use gracerpc::client::table::Node;
use gracerpc::client::{NodeEvent, NodeSnapshot, NodeState, NodeTable};

/// How many distinct addresses the input may name.
const ADDRS: u8 = 6;

/// How long an OVERLOADED answer lowers a node's weight (`table.rs`'s `PENALTY`).
const PENALTY: Duration = Duration::from_millis(200);

/// The whole fuzz input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// A state to set.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum StateChoice {
    /// Connecting.
    Connecting,
    /// Warming.
    Warming,
    /// Ready.
    Ready,
    /// Draining.
    Draining,
    /// Down.
    Down,
    /// Removed.
    Removed,
}

impl StateChoice {
    fn state(self) -> NodeState {
        match self {
            StateChoice::Connecting => NodeState::Connecting,
            StateChoice::Warming => NodeState::Warming,
            StateChoice::Ready => NodeState::Ready,
            StateChoice::Draining => NodeState::Draining,
            StateChoice::Down => NodeState::Down,
            StateChoice::Removed => NodeState::Removed,
        }
    }
}

/// One step. A `u8` naming a node picks one of the nodes added so far (modulo).
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Adds (or revives) the address `n % 6`.
    Upsert(u8),
    /// Sets a node's state.
    SetState(u8, StateChoice),
    /// Records a READY capacity.
    SetCapacity(u8, u8),
    /// Penalizes a node (it answered OVERLOADED).
    Penalize(u8),
    /// Chooses a node, avoiding the picked one if `Some`.
    Choose(Option<u8>),
    /// Chooses many times (exercises the random choices).
    ChooseMany(u8, Option<u8>),
    /// Takes a snapshot.
    Snapshot,
    /// Time passes (ms).
    Advance(u16),
}

/// The model of one node.
#[derive(Debug, Clone)]
struct Model {
    node: Arc<Node>,
    state: NodeState,
    capacity: u8,
    penalty_until: Option<Instant>,
}

struct Harness {
    table: NodeTable,
    events: crossbeam_channel::Receiver<NodeEvent>,
    now: Instant,
    nodes: Vec<Model>,
}

/// Builds the input from `data` and runs it.
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run_input(&input);
    }
}

/// Runs one input, checking the invariants after every operation.
pub fn run_input(input: &Input) {
    let table = NodeTable::new();
    let events = table.subscribe();
    // The table's epoch is taken in `new`: the virtual clock starts after it.
    let now = Instant::now();
    let mut h = Harness {
        table,
        events,
        now,
        nodes: Vec::new(),
    };
    for op in &input.ops {
        h.step(op);
        h.check();
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(n % ADDRS)))
}

impl Harness {
    fn pick(&self, n: u8) -> Option<usize> {
        (!self.nodes.is_empty()).then(|| usize::from(n) % self.nodes.len())
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Upsert(n) => {
                let a = addr(n);
                let node = self.table.upsert(a).expect("the table has room");
                assert_eq!(node.addr(), a);
                match self.nodes.iter().position(|m| m.node.addr() == a) {
                    Some(i) => {
                        assert_eq!(node.index(), i, "upsert moved {a}");
                        assert!(
                            Arc::ptr_eq(&node, &self.nodes[i].node),
                            "upsert replaced {a}"
                        );
                        if self.nodes[i].state == NodeState::Removed {
                            self.nodes[i].state = NodeState::Down;
                            self.expect_event(i, None);
                        }
                    }
                    None => {
                        assert_eq!(node.index(), self.nodes.len(), "new node's slot");
                        assert_eq!(node.state(), NodeState::Down, "new node's state");
                        assert_eq!(node.capacity(), 0);
                        self.nodes.push(Model {
                            node,
                            state: NodeState::Down,
                            capacity: 0,
                            penalty_until: None,
                        });
                    }
                }
            }
            Op::SetState(n, s) => {
                if let Some(i) = self.pick(n) {
                    let state = s.state();
                    self.table.set_state(&self.nodes[i].node, state, self.now);
                    if self.nodes[i].state != state {
                        self.nodes[i].state = state;
                        self.expect_event(i, Some(self.now));
                    }
                }
            }
            Op::SetCapacity(n, capacity) => {
                if let Some(i) = self.pick(n) {
                    let m = &self.nodes[i];
                    self.table.set_capacity(&m.node, capacity, self.now);
                    let state = if capacity >= 100 {
                        NodeState::Ready
                    } else {
                        NodeState::Warming
                    };
                    let changed = m.state != state || m.capacity != capacity;
                    self.nodes[i].state = state;
                    self.nodes[i].capacity = capacity;
                    if changed {
                        self.expect_event(i, Some(self.now));
                    }
                }
            }
            Op::Penalize(n) => {
                if let Some(i) = self.pick(n) {
                    self.table.penalize(&self.nodes[i].node, self.now);
                    self.nodes[i].penalty_until = Some(self.now + PENALTY);
                }
            }
            Op::Choose(avoid) => self.choose(avoid),
            Op::ChooseMany(times, avoid) => {
                for _ in 0..times % 16 {
                    self.choose(avoid);
                }
            }
            Op::Snapshot => {
                let want: Vec<NodeSnapshot> = self
                    .nodes
                    .iter()
                    .filter(|m| m.state != NodeState::Removed)
                    .map(|m| NodeSnapshot {
                        addr: m.node.addr(),
                        state: m.state,
                        capacity: m.capacity,
                        outstanding: 0,
                    })
                    .collect();
                assert_eq!(self.table.snapshot(), want, "snapshot");
            }
            Op::Advance(ms) => self.now += Duration::from_millis(u64::from(ms)),
        }
    }

    /// `avoid` names a node index (possibly one never added, which avoids nothing).
    fn choose(&mut self, avoid: Option<u8>) {
        let avoid = avoid.map(|n| usize::from(n % (ADDRS + 1)));
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].state.is_choosable())
            .collect();
        let others: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| Some(i) != avoid)
            .collect();
        let got = self.table.choose(self.now, avoid);
        let Some(node) = got else {
            assert!(candidates.is_empty(), "nothing chosen among {candidates:?}");
            return;
        };
        let i = node.index();
        assert!(i < self.nodes.len(), "chose a node never added");
        assert!(Arc::ptr_eq(&node, &self.nodes[i].node));
        let state = self.nodes[i].state;
        assert!(state.is_choosable(), "chose {i} in state {state}");
        assert!(
            node.state().is_choosable(),
            "chose {i} in state {}",
            node.state()
        );
        if Some(i) == avoid {
            assert!(others.is_empty(), "chose avoided {i} over {others:?}");
        } else {
            assert!(others.contains(&i), "chose {i}, not among {others:?}");
        }
        // With exactly two candidates, both are compared: the chosen one is not more loaded.
        if let [a, b] = others[..] {
            let other = if i == a { b } else { a };
            let (li, lo) = (self.load(i), self.load(other));
            assert!(li <= lo, "chose {i} (load {li}) over {other} (load {lo})");
        }
    }

    /// `table.rs`'s load: outstanding calls (none here) per unit of capacity.
    fn load(&self, i: usize) -> u64 {
        let m = &self.nodes[i];
        let mut capacity = u64::from(m.capacity.max(1));
        if m.penalty_until.is_some_and(|t| t > self.now) {
            capacity = (capacity / 4).max(1);
        }
        10_000 / capacity
    }

    /// The subscriber must have been told of node `i`'s new state and capacity (at `at`, if
    /// known: `upsert` reads the clock itself).
    fn expect_event(&mut self, i: usize, at: Option<Instant>) {
        let m = &self.nodes[i];
        let ev = self
            .events
            .try_recv()
            .unwrap_or_else(|e| panic!("no event for {} ({:?}): {e}", m.node.addr(), m.state));
        assert_eq!(ev.addr, m.node.addr(), "event's node");
        assert_eq!(ev.state, m.state, "event's state");
        assert_eq!(ev.capacity, m.capacity, "event's capacity");
        if let Some(at) = at {
            assert_eq!(ev.at, at, "event's time");
        }
    }

    fn check(&mut self) {
        if let Ok(ev) = self.events.try_recv() {
            panic!("unexpected event {ev:?}");
        }
        assert_eq!(self.table.nodes().count(), self.nodes.len(), "node count");
        for (i, m) in self.nodes.iter().enumerate() {
            let node = &m.node;
            assert_eq!(node.index(), i);
            assert_eq!(node.state(), m.state, "state of {}", node.addr());
            assert_eq!(node.capacity(), m.capacity, "capacity of {}", node.addr());
            assert_eq!(node.outstanding(), 0);
            let found = self.table.find(node.addr()).expect("find");
            assert!(Arc::ptr_eq(found, node), "find({})", node.addr());
        }
    }
}
