//! A deterministic simulation of one connection, in the style of quinn-proto's `tests/util.rs`.
//!
//! A [`ServerConn`] and a [`ClientConn`] (either may be replaced by a *raw* peer the test scripts
//! byte by byte) are joined by two in-memory [`Pipe`]s. A virtual clock starts at a fixed
//! `Instant` and only moves when nothing else can happen, to the earliest `poll_timeout()` of
//! either side. Every step is recorded as an [`Ev`] with its virtual time, so a test asserts the
//! exact sequence: "requests 1..5 accepted, start_drain, GOAWAY(5) read, request 6 read,
//! SHUTDOWN_REJECT(6), responses 1..5, close".
//!
//! The simulator also plays the server's application ([`App`]): accepted requests queue; the test
//! starts, finishes or rejects them (or [`Mode::Auto`] answers each one at once).
//!
//! It fails the test (panics, printing the log) on what no schedule may ever do:
//! * the server closes while the caller may still write — a reset (rule 4), unless the linger
//!   that follows a shut write side has ended;
//! * the server writes after shutting its write side, or closes with output unwritten;
//! * a timer that stays due after `handle_timeout` (the driver would spin);
//! * the application is asked to reject a request that started (rule 2).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use gracerpc::proto::{
    self, ClientConn, ClientConnConfig, ClientEvent, CloseAction, ConnError, GoAwayReason,
    HEADER_LEN, InBuf, Incoming, Outcome, RejectReason, ServerConn, ServerConnConfig, Status,
};

use super::wire::F;

/// One millisecond.
pub const MS: Duration = Duration::from_millis(1);
/// One second.
pub const SEC: Duration = Duration::from_secs(1);

/// One byte stream. The writer appends, the reader takes from the front.
#[derive(Debug, Default)]
pub struct Pipe {
    data: VecDeque<u8>,
    /// The writer shut its write side or closed: the reader sees EOF after `data`.
    fin: bool,
    /// The reader closed its socket: a write now fails (the writer sees a reset).
    reader_gone: bool,
    /// Most bytes the writer may put in per step (`None`: all it has). Makes partial writes.
    pub write_limit: Option<usize>,
    /// Most bytes the reader takes per step (`None`: all there is).
    pub read_limit: Option<usize>,
    /// The writer cannot write at all (its socket buffer is full).
    pub hold: bool,
}

impl Pipe {
    /// Bytes written and not yet read.
    pub fn buffered(&self) -> usize {
        self.data.len()
    }
}

/// One step of the simulation.
#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    /// The server side decoded a frame from the caller.
    ServerGot(F),
    /// The caller side decoded a frame from the server.
    ClientGot(F),
    /// The server connection reported a failure (from a frame, bad bytes or a timeout).
    ServerErr(ConnError),
    /// The caller connection reported a failure from `handle_frame`/`handle_decode_error`.
    ClientErr(ConnError),
    /// The caller queued REQUEST `id`.
    Sent(u64),
    /// The application received request `id`.
    Accepted(u64),
    /// The application started running `id`.
    Started(u64),
    /// The application finished `id` and answered it.
    Finished(u64),
    /// The application rejected `id` unrun.
    AppRejected(u64, RejectReason),
    /// The server connection passed on a CANCEL for `id`.
    CancelHint(u64),
    /// `start_drain` was called; the GOAWAY carries this last id.
    Drain(u64),
    /// An event from the caller connection.
    Client(ClientEvent),
    /// The server shut its write side.
    ServerShutdownWrite,
    /// The server closed its socket.
    ServerClose,
    /// The server side read EOF.
    ServerEof,
    /// The server socket failed (the caller reset it).
    ServerReset,
    /// The caller shut its write side (half-close by the caller's driver).
    ClientShutdownWrite,
    /// The caller closed its socket.
    ClientClose,
    /// The caller side read EOF.
    ClientEof,
    /// The caller socket failed (the server reset it).
    ClientReset,
    /// The test cut the connection (both sockets fail).
    Killed,
}

/// How the simulated application answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The test starts, finishes and rejects requests itself.
    Manual,
    /// Each accepted request is started and answered at once.
    Auto,
}

/// The server's application: which requests are queued, running and done.
#[derive(Debug)]
pub struct App {
    /// How it answers.
    pub mode: Mode,
    /// At `start_drain`, reject every request queued and not started (SHUTTING_DOWN).
    pub reject_queued_on_drain: bool,
    /// Accepted and not started, with the deadline the connection computed.
    pub queued: BTreeMap<u64, Instant>,
    /// Started and not finished.
    pub running: BTreeSet<u64>,
    /// Every id accepted, in order.
    pub accepted: Vec<u64>,
    /// How many times each id started.
    pub started: BTreeMap<u64, u32>,
    /// Ids finished (answered with RESPONSE).
    pub finished: BTreeSet<u64>,
    /// Ids rejected unrun.
    pub rejected: BTreeSet<u64>,
}

/// The simulation's set-up. `server`/`client` set to `None` make that side a raw peer.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The server connection's config, or `None` for a raw server.
    pub server: Option<ServerConnConfig>,
    /// The caller connection's config, or `None` for a raw caller.
    pub client: Option<ClientConnConfig>,
    /// Capacity the server's application is ready at from the start.
    pub ready: Option<u8>,
    /// How the application answers.
    pub mode: Mode,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            server: Some(ServerConnConfig::default()),
            client: Some(ClientConnConfig::default()),
            ready: Some(100),
            mode: Mode::Manual,
        }
    }
}

#[derive(Debug, Default)]
struct Sock {
    /// The socket is closed (by us or by a failure).
    closed: bool,
    /// Our write side is shut.
    write_shut: bool,
    /// EOF was handed to the connection.
    eof_seen: bool,
    /// The peer reset us: the next I/O fails.
    reset: bool,
}

/// The simulation.
pub struct Sim {
    base: Instant,
    /// The virtual time.
    pub now: Instant,
    /// The server connection (`None`: raw server).
    pub server: Option<ServerConn>,
    /// The caller connection (`None`: raw caller).
    pub client: Option<ClientConn>,
    server_in: InBuf,
    client_in: InBuf,
    /// Caller → server bytes.
    pub c2s: Pipe,
    /// Server → caller bytes.
    pub s2c: Pipe,
    server_sock: Sock,
    client_sock: Sock,
    /// The server's application.
    pub app: App,
    log: Vec<(Duration, Ev)>,
    /// Sum of `take_finished_answers()`.
    pub finished_answers: usize,
    linger: Duration,
    shutdown_write_at: Option<Instant>,
    /// The caller's driver is hung: it neither reads, writes nor runs timers.
    pub client_frozen: bool,
    next_user: u64,
}

impl Sim {
    /// Default configs, both sides real, ready at 100 %, manual application.
    pub fn new() -> Sim {
        Sim::with(SimConfig::default())
    }

    /// A simulation from `cfg`. Nothing has moved yet: call [`run`](Self::run).
    pub fn with(cfg: SimConfig) -> Sim {
        // Any fixed instant will do: only differences are ever looked at.
        Sim::with_at(cfg, Instant::now())
    }

    /// A simulation from `cfg` whose clock starts at `base` (a connection opened at that
    /// moment of a larger simulation's virtual clock, which then sets [`now`](Self::now)).
    pub fn with_at(cfg: SimConfig, base: Instant) -> Sim {
        let linger = cfg.server.as_ref().map_or(SEC, |c| c.linger);
        let server = cfg.server.map(|c| {
            let mut s = ServerConn::new(base, c);
            s.set_ready(cfg.ready);
            s
        });
        let client = cfg.client.map(|c| ClientConn::new(base, c));
        Sim {
            base,
            now: base,
            server,
            client,
            server_in: InBuf::new(),
            client_in: InBuf::new(),
            c2s: Pipe::default(),
            s2c: Pipe::default(),
            server_sock: Sock::default(),
            client_sock: Sock::default(),
            app: App {
                mode: cfg.mode,
                reject_queued_on_drain: true,
                queued: BTreeMap::new(),
                running: BTreeSet::new(),
                accepted: Vec::new(),
                started: BTreeMap::new(),
                finished: BTreeSet::new(),
                rejected: BTreeSet::new(),
            },
            log: Vec::new(),
            finished_answers: 0,
            linger,
            shutdown_write_at: None,
            client_frozen: false,
            next_user: 1000,
        }
    }

    // ---- accessors ----

    /// The server connection (panics for a raw server).
    pub fn server(&mut self) -> &mut ServerConn {
        self.server.as_mut().expect("the server is raw")
    }

    /// The caller connection (panics for a raw caller).
    pub fn client(&mut self) -> &mut ClientConn {
        self.client.as_mut().expect("the caller is raw")
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The recorded events.
    pub fn events(&self) -> Vec<Ev> {
        self.log.iter().map(|(_, e)| e.clone()).collect()
    }

    /// The log, one event per line with its virtual time, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (t, e) in &self.log {
            let _ = writeln!(s, "{:>10.3?}  {e:?}", t);
        }
        s
    }

    /// How many events are recorded so far.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// The events recorded from index `from` on.
    pub fn events_from(&self, from: usize) -> Vec<Ev> {
        self.log[from.min(self.log.len())..]
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Every frame the server side read, in order.
    pub fn to_server(&self) -> Vec<F> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::ServerGot(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    /// Every frame the caller side read, in order.
    pub fn to_client(&self) -> Vec<F> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::ClientGot(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    /// Every resolution the caller reported, by id, in order.
    pub fn outcomes(&self) -> BTreeMap<u64, Vec<Outcome>> {
        let mut m: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
        for (_, e) in &self.log {
            if let Ev::Client(ClientEvent::Resolved { id, outcome, .. }) = e {
                m.entry(*id).or_default().push(outcome.clone());
            }
        }
        m
    }

    /// The one outcome of `id`; fails if it resolved zero or several times (rule 1).
    pub fn outcome(&self, id: u64) -> Outcome {
        let all = self.outcomes().remove(&id).unwrap_or_default();
        assert_eq!(
            all.len(),
            1,
            "id {id} must resolve exactly once, got {all:?}\n{}",
            self.dump()
        );
        all.into_iter().next().unwrap_or(Outcome::Unknown)
    }

    /// The caller events other than resolutions, in order.
    pub fn client_events(&self) -> Vec<ClientEvent> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Client(ClientEvent::Resolved { .. }) => None,
                Ev::Client(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Index of the first event equal to `ev`, if any.
    pub fn find(&self, ev: &Ev) -> Option<usize> {
        self.log.iter().position(|(_, e)| e == ev)
    }

    /// Virtual time of the first event equal to `ev`; fails if it never happened.
    pub fn time_of(&self, ev: &Ev) -> Duration {
        match self.log.iter().find(|(_, e)| e == ev) {
            Some((t, _)) => *t,
            None => panic!("{ev:?} never happened\n{}", self.dump()),
        }
    }

    /// Whether `ev` happened.
    pub fn saw(&self, ev: &Ev) -> bool {
        self.find(ev).is_some()
    }

    /// Asserts that `evs` happened in this order (other events may come between).
    pub fn expect_order(&self, evs: &[Ev]) {
        let mut at = 0;
        for ev in evs {
            match self.log[at..].iter().position(|(_, e)| e == ev) {
                Some(i) => at += i + 1,
                None => panic!(
                    "expected {ev:?} after event #{at} (order {evs:?})\n{}",
                    self.dump()
                ),
            }
        }
    }

    /// Whether the server socket is closed (always true for a raw server once the test closed it).
    pub fn server_closed(&self) -> bool {
        self.server_sock.closed
    }

    /// Whether the caller's write side is over (shut, closed, or reset).
    pub fn c2s_fin(&self) -> bool {
        self.c2s.fin
    }

    /// Index and last id of the `Drain` event, if the server drained.
    pub fn find_drain(&self) -> Option<(usize, u64)> {
        self.log.iter().enumerate().find_map(|(i, (_, e))| match e {
            Ev::Drain(last) => Some((i, *last)),
            _ => None,
        })
    }

    /// Whether the caller socket is closed.
    pub fn client_closed(&self) -> bool {
        self.client_sock.closed
    }

    // ---- the caller's actions ----

    /// Sends a request with a 10 s deadline; returns its id.
    pub fn send(&mut self) -> u64 {
        let deadline = self.now + 10 * SEC;
        self.send_with(deadline)
    }

    /// Sends a request with `deadline`; returns its id.
    pub fn send_with(&mut self, deadline: Instant) -> u64 {
        self.try_send(deadline)
            .unwrap_or_else(|e| panic!("send_request failed: {e}\n{}", self.dump()))
    }

    /// Sends a request if the caller allows it.
    pub fn try_send(&mut self, deadline: Instant) -> Result<u64, gracerpc::proto::ApiMisuse> {
        self.try_send_as(deadline, false)
    }

    /// Sends a request, idempotent or not, if the caller allows it.
    pub fn try_send_as(
        &mut self,
        deadline: Instant,
        idempotent: bool,
    ) -> Result<u64, gracerpc::proto::ApiMisuse> {
        let now = self.now;
        let user = self.next_user;
        self.next_user += 1;
        let client = self.client.as_mut().expect("the caller is raw");
        let id = client.send_request(now, "echo", b"hi", deadline, idempotent, user)?;
        self.push(Ev::Sent(id));
        self.drain_client_events();
        Ok(id)
    }

    /// Sends `n` requests; returns their ids.
    pub fn send_n(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.send()).collect()
    }

    /// The caller gives up on `id` (CANCEL hint).
    pub fn cancel(&mut self, id: u64) -> Option<u64> {
        let r = self.client().cancel(id);
        self.drain_client_events();
        r
    }

    /// The caller's driver shuts its write side (half-close); it keeps reading.
    pub fn client_shutdown_write(&mut self) {
        self.client_sock.write_shut = true;
        self.c2s.fin = true;
        self.push(Ev::ClientShutdownWrite);
    }

    // ---- raw peers ----

    /// A raw caller writes these bytes.
    pub fn raw_to_server(&mut self, bytes: &[u8]) {
        assert!(self.client.is_none(), "the caller is not raw");
        assert!(!self.c2s.fin, "raw caller already shut its write side");
        self.c2s.data.extend(bytes);
    }

    /// A raw server writes these bytes.
    pub fn raw_to_client(&mut self, bytes: &[u8]) {
        assert!(self.server.is_none(), "the server is not raw");
        assert!(!self.s2c.fin, "raw server already shut its write side");
        self.s2c.data.extend(bytes);
    }

    /// The raw caller closes its socket.
    pub fn raw_client_close(&mut self) {
        assert!(self.client.is_none(), "the caller is not raw");
        self.c2s.fin = true;
        self.s2c.reader_gone = true;
        self.client_sock.closed = true;
        self.push(Ev::ClientClose);
    }

    /// The raw server closes its socket.
    pub fn raw_server_close(&mut self) {
        assert!(self.server.is_none(), "the server is not raw");
        self.s2c.fin = true;
        self.c2s.reader_gone = true;
        self.server_sock.closed = true;
        self.push(Ev::ServerClose);
    }

    // ---- the server's application ----

    /// Starts queued request `id`. Returns false (and rejects it, rule 6) if its deadline passed.
    pub fn start(&mut self, id: u64) -> bool {
        let Some(deadline) = self.app.queued.remove(&id) else {
            panic!("start({id}): not queued\n{}", self.dump())
        };
        if self.now >= deadline {
            self.app.queued.insert(id, deadline);
            self.reject(id, RejectReason::DEADLINE);
            return false;
        }
        self.app.running.insert(id);
        *self.app.started.entry(id).or_default() += 1;
        self.push(Ev::Started(id));
        true
    }

    /// Starts every queued request.
    pub fn start_all(&mut self) {
        let ids: Vec<u64> = self.app.queued.keys().copied().collect();
        for id in ids {
            self.start(id);
        }
    }

    /// Finishes running request `id`: RESPONSE(OK).
    pub fn finish(&mut self, id: u64) {
        assert!(
            self.app.running.remove(&id),
            "finish({id}): not running\n{}",
            self.dump()
        );
        self.app.finished.insert(id);
        self.push(Ev::Finished(id));
        let r = self.server().respond(id, Status::OK, &id.to_be_bytes());
        r.unwrap_or_else(|e| panic!("respond({id}): {e}\n{}", self.dump()));
    }

    /// Finishes every running request.
    pub fn finish_all(&mut self) {
        let ids: Vec<u64> = self.app.running.iter().copied().collect();
        for id in ids {
            self.finish(id);
        }
    }

    /// Rejects queued request `id` unrun.
    pub fn reject(&mut self, id: u64, reason: RejectReason) {
        assert!(
            !self.app.started.contains_key(&id),
            "rule 2: the application may not reject {id}, which started\n{}",
            self.dump()
        );
        assert!(
            self.app.queued.remove(&id).is_some(),
            "reject({id}): not queued\n{}",
            self.dump()
        );
        self.app.rejected.insert(id);
        self.push(Ev::AppRejected(id, reason));
        let r = self.server().reject(id, reason);
        r.unwrap_or_else(|e| panic!("reject({id}): {e}\n{}", self.dump()));
    }

    /// The server starts draining (GOAWAY), and — unless `app.reject_queued_on_drain` is off —
    /// the application rejects every request that has not started.
    pub fn start_drain(&mut self, budget: Duration) {
        let now = self.now;
        let server = self.server();
        server.start_drain(now, budget, GoAwayReason::SHUTDOWN);
        let last = server.last_accepted();
        if let Some(last) = last {
            self.push(Ev::Drain(last));
        }
        if self.app.reject_queued_on_drain {
            let ids: Vec<u64> = self.app.queued.keys().copied().collect();
            for id in ids {
                self.reject(id, RejectReason::SHUTTING_DOWN);
            }
        }
    }

    /// The server's application changes its capacity.
    pub fn set_ready(&mut self, capacity: Option<u8>) {
        self.server().set_ready(capacity);
    }

    /// Cuts the connection: both sockets fail at once.
    pub fn kill(&mut self) {
        self.push(Ev::Killed);
        self.c2s.data.clear();
        self.s2c.data.clear();
        if let Some(s) = self.server.as_mut()
            && !self.server_sock.closed
        {
            s.handle_transport_error("killed");
        }
        if let Some(c) = self.client.as_mut()
            && !self.client_sock.closed
        {
            c.handle_eof("killed");
            c.abandon_output();
        }
        self.server_sock.closed = true;
        self.client_sock.closed = true;
        self.collect_answers();
        self.drain_client_events();
    }

    // ---- running ----

    /// Runs until nothing more happens without the clock moving.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            if !self.pump() {
                return;
            }
        }
        panic!("livelock: the simulation never settled\n{}", self.dump());
    }

    /// Runs, then moves the clock to the next timer and runs again. False if no timer is set.
    pub fn advance(&mut self) -> bool {
        self.run();
        let Some(t) = self.next_timer() else {
            return false;
        };
        self.now = self.now.max(t);
        self.run();
        true
    }

    /// Runs for `d` of virtual time, firing every timer due on the way.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            self.run();
            match self.next_timer() {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => {
                    self.now = end;
                    self.run();
                    return;
                }
            }
        }
        panic!("run_for: timers never settled\n{}", self.dump());
    }

    /// Runs, moving the clock, until both sockets are closed; fails if the connection gets
    /// stuck with no timer to move it on.
    pub fn run_until_closed(&mut self) {
        for _ in 0..10_000 {
            self.run();
            if self.server_sock.closed && self.client_sock.closed {
                return;
            }
            if !self.advance() {
                panic!(
                    "stuck: sockets open, nothing pending, no timer\n{}",
                    self.dump()
                );
            }
        }
        panic!("run_until_closed: never closed\n{}", self.dump());
    }

    /// The earliest timer of the live sides.
    pub fn next_timer(&self) -> Option<Instant> {
        let s = self
            .server
            .as_ref()
            .filter(|_| !self.server_sock.closed)
            .and_then(ServerConn::poll_timeout);
        let c = self
            .client
            .as_ref()
            .filter(|_| !self.client_sock.closed && !self.client_frozen)
            .and_then(ClientConn::poll_timeout);
        [s, c].into_iter().flatten().min()
    }

    /// One round of every kind of progress (each side writes what it may, reads what arrived,
    /// acts on timers and closes); false if nothing moved. Lets a test stop mid-flight, e.g.
    /// with a frame half written.
    pub fn step(&mut self) -> bool {
        self.pump()
    }

    fn pump(&mut self) -> bool {
        let mut progress = self.timers();
        progress |= self.drain_client_events();
        progress |= self.resets();
        progress |= self.client_write();
        progress |= self.server_write();
        progress |= self.server_read();
        progress |= self.client_read();
        progress |= self.drain_client_events();
        progress |= self.auto_app();
        progress |= self.close_polls();
        self.collect_answers();
        progress |= self.drain_client_events();
        progress
    }

    fn push(&mut self, ev: Ev) {
        self.log.push((self.now - self.base, ev));
    }

    fn collect_answers(&mut self) {
        if let Some(s) = self.server.as_mut() {
            self.finished_answers += s.take_finished_answers();
        }
    }

    fn drain_client_events(&mut self) -> bool {
        let mut progress = false;
        while let Some(e) = self.client.as_mut().and_then(ClientConn::poll_event) {
            self.push(Ev::Client(e));
            progress = true;
        }
        progress
    }

    fn timers(&mut self) -> bool {
        let now = self.now;
        let mut progress = false;
        if let Some(s) = self.server.as_mut().filter(|_| !self.server_sock.closed)
            && s.poll_timeout().is_some_and(|t| t <= now)
        {
            let had_error = s.error().is_some();
            s.handle_timeout(now);
            progress = true;
            let err = s.error().filter(|_| !had_error).cloned();
            if let Some(t) = s.poll_timeout().filter(|&t| t <= now) {
                let late = now - t;
                panic!(
                    "server timer spin: poll_timeout() is {late:?} in the past after \
                     handle_timeout(now)\n{}",
                    self.dump()
                );
            }
            if let Some(e) = err {
                self.push(Ev::ServerErr(e));
            }
        }
        if let Some(c) = self
            .client
            .as_mut()
            .filter(|_| !self.client_sock.closed && !self.client_frozen)
            && c.poll_timeout().is_some_and(|t| t <= now)
        {
            c.handle_timeout(now);
            progress = true;
            if let Some(t) = c.poll_timeout().filter(|&t| t <= now) {
                let late = now - t;
                panic!(
                    "caller timer spin: poll_timeout() is {late:?} in the past after \
                     handle_timeout(now)\n{}",
                    self.dump()
                );
            }
        }
        progress
    }

    /// Delivers a reset to a side whose peer closed with unread data.
    fn resets(&mut self) -> bool {
        let mut progress = false;
        if self.server_sock.reset && !self.server_sock.closed {
            self.server_sock.closed = true;
            self.c2s.data.clear();
            self.c2s.reader_gone = true;
            self.s2c.fin = true;
            if let Some(s) = self.server.as_mut() {
                s.handle_transport_error("connection reset by peer");
            }
            self.push(Ev::ServerReset);
            progress = true;
        }
        if self.client_sock.reset && !self.client_sock.closed {
            self.client_sock.closed = true;
            self.s2c.data.clear();
            self.s2c.reader_gone = true;
            self.c2s.fin = true;
            if let Some(c) = self.client.as_mut() {
                c.handle_eof("connection reset by peer");
                c.abandon_output();
            }
            self.push(Ev::ClientReset);
            progress = true;
        }
        progress
    }

    fn client_write(&mut self) -> bool {
        let Some(c) = self.client.as_mut() else {
            return false;
        };
        if self.client_sock.closed || self.client_frozen || self.c2s.hold {
            return false;
        }
        let pending = c.out();
        if pending.is_empty() {
            return false;
        }
        if self.client_sock.write_shut {
            // The driver half-closed: what the caller queues since cannot be written.
            c.abandon_output();
            return true;
        }
        if self.c2s.reader_gone {
            self.client_sock.reset = true;
            return true;
        }
        let n = pending
            .len()
            .min(self.c2s.write_limit.unwrap_or(usize::MAX));
        self.c2s.data.extend(&pending[..n]);
        c.written(n);
        true
    }

    fn server_write(&mut self) -> bool {
        let Some(s) = self.server.as_mut() else {
            return false;
        };
        if self.server_sock.closed || self.s2c.hold {
            return false;
        }
        let pending = s.out();
        if pending.is_empty() {
            return false;
        }
        if self.server_sock.write_shut {
            let n = pending.len();
            panic!(
                "server has {n} bytes to write after shutting its write side\n{}",
                self.dump()
            );
        }
        if self.s2c.reader_gone {
            self.server_sock.reset = true;
            return true;
        }
        let n = pending
            .len()
            .min(self.s2c.write_limit.unwrap_or(usize::MAX));
        self.s2c.data.extend(&pending[..n]);
        s.written(n);
        true
    }

    fn server_read(&mut self) -> bool {
        if self.server_sock.closed {
            return false;
        }
        let now = self.now;
        let Some(s) = self.server.as_mut() else {
            return raw_read(
                &mut self.c2s,
                &mut self.server_in,
                &mut self.server_sock,
                &mut self.log,
                self.now - self.base,
                Ev::ServerGot,
                Ev::ServerEof,
            );
        };
        let mut evs = Vec::new();
        let limit = s.max_frame() as usize + HEADER_LEN;
        let moved = fill(&mut self.c2s, &mut self.server_in, limit);
        let mut progress = moved > 0;
        loop {
            if !s.wants_frames() {
                // Failing or closing: read and discard so the caller's close is seen (rule 4).
                let n = self.server_in.data().len();
                self.server_in.consume(n);
                break;
            }
            match proto::decode(self.server_in.data(), s.max_frame()) {
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    evs.push(Ev::ServerGot(F::of(&frame)));
                    match s.handle_frame(now, frame) {
                        Ok(Incoming::None | Incoming::Rejected { .. }) => {}
                        Ok(Incoming::Request(a)) => {
                            evs.push(Ev::Accepted(a.id));
                            self.app.accepted.push(a.id);
                            self.app.queued.insert(a.id, a.deadline);
                        }
                        Ok(Incoming::Cancel(id)) => evs.push(Ev::CancelHint(id)),
                        Err(e) => evs.push(Ev::ServerErr(e)),
                    }
                    self.server_in.consume(used);
                    progress = true;
                }
                Err(e) => {
                    evs.push(Ev::ServerErr(s.handle_decode_error(now, e)));
                    progress = true;
                }
            }
        }
        if self.c2s.fin && self.c2s.data.is_empty() && !self.server_sock.eof_seen {
            self.server_sock.eof_seen = true;
            s.handle_eof(now);
            evs.push(Ev::ServerEof);
            progress = true;
        }
        for e in evs {
            // A CANCEL for a request not started: the driver rejects it (CANCELLED).
            if let Ev::CancelHint(id) = e {
                self.push(e);
                if self.app.queued.contains_key(&id) {
                    self.reject(id, RejectReason::CANCELLED);
                }
            } else {
                self.push(e);
            }
        }
        progress
    }

    fn client_read(&mut self) -> bool {
        if self.client_sock.closed || self.client_frozen {
            return false;
        }
        let Some(c) = self.client.as_mut() else {
            return raw_read(
                &mut self.s2c,
                &mut self.client_in,
                &mut self.client_sock,
                &mut self.log,
                self.now - self.base,
                Ev::ClientGot,
                Ev::ClientEof,
            );
        };
        let now = self.now;
        let mut evs = Vec::new();
        let limit = c.max_frame() as usize + HEADER_LEN;
        let moved = fill(&mut self.s2c, &mut self.client_in, limit);
        let mut progress = moved > 0;
        loop {
            if c.is_closed() {
                let n = self.client_in.data().len();
                self.client_in.consume(n);
                break;
            }
            match proto::decode(self.client_in.data(), c.max_frame()) {
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    evs.push(Ev::ClientGot(F::of(&frame)));
                    if let Err(e) = c.handle_frame(now, frame) {
                        evs.push(Ev::ClientErr(e));
                    }
                    self.client_in.consume(used);
                    progress = true;
                }
                Err(e) => {
                    evs.push(Ev::ClientErr(c.handle_decode_error(e)));
                    progress = true;
                }
            }
        }
        if self.s2c.fin && self.s2c.data.is_empty() && !self.client_sock.eof_seen {
            self.client_sock.eof_seen = true;
            c.handle_eof("eof");
            evs.push(Ev::ClientEof);
            progress = true;
        }
        for e in evs {
            self.push(e);
        }
        progress
    }

    fn auto_app(&mut self) -> bool {
        if self.app.mode != Mode::Auto || self.app.queued.is_empty() {
            return false;
        }
        let ids: Vec<u64> = self.app.queued.keys().copied().collect();
        for id in ids {
            if self.start(id) {
                self.finish(id);
            }
        }
        true
    }

    fn close_polls(&mut self) -> bool {
        let mut progress = false;
        let now = self.now;
        while let Some(a) = self
            .server
            .as_mut()
            .filter(|_| !self.server_sock.closed)
            .and_then(|s| s.poll_close(now))
        {
            progress = true;
            match a {
                CloseAction::ShutdownWrite => {
                    assert!(
                        !self.server_sock.write_shut,
                        "ShutdownWrite twice\n{}",
                        self.dump()
                    );
                    self.server_sock.write_shut = true;
                    self.s2c.fin = true;
                    self.shutdown_write_at = Some(now);
                    self.push(Ev::ServerShutdownWrite);
                }
                CloseAction::Close => {
                    let peer_done = self.c2s.fin && self.c2s.data.is_empty();
                    let lingered = self
                        .shutdown_write_at
                        .is_some_and(|t| now >= t + self.linger);
                    if !peer_done && !lingered {
                        panic!(
                            "rule 4: the server closed while the caller may still write \
                             (a reset)\n{}",
                            self.dump()
                        );
                    }
                    let unwritten = self.server.as_ref().map_or(0, ServerConn::out_len);
                    assert_eq!(
                        unwritten,
                        0,
                        "server closed with bytes unwritten\n{}",
                        self.dump()
                    );
                    self.server_sock.closed = true;
                    self.s2c.fin = true;
                    self.c2s.reader_gone = true;
                    if !self.c2s.data.is_empty() {
                        self.client_sock.reset = true;
                    }
                    self.push(Ev::ServerClose);
                }
            }
        }
        let close = self
            .client
            .as_mut()
            .filter(|_| !self.client_sock.closed && !self.client_frozen)
            .is_some_and(ClientConn::poll_close);
        if close {
            progress = true;
            self.client_sock.closed = true;
            self.c2s.fin = true;
            self.s2c.reader_gone = true;
            if !self.s2c.data.is_empty() {
                // Closing with unread input resets the peer.
                self.server_sock.reset = true;
            }
            self.push(Ev::ClientClose);
        }
        progress
    }
}

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}

/// Moves bytes from `pipe` into `inb` through `spare`/`filled`, at most `limit` buffered.
fn fill(pipe: &mut Pipe, inb: &mut InBuf, limit: usize) -> usize {
    let avail = pipe.data.len().min(pipe.read_limit.unwrap_or(usize::MAX));
    if avail == 0 {
        return 0;
    }
    let room = inb.spare(avail, limit);
    let n = room.len().min(avail);
    for (dst, src) in room[..n].iter_mut().zip(pipe.data.drain(..n)) {
        *dst = src;
    }
    inb.filled(n);
    n
}

/// A raw side reads: it decodes what it can for the log and keeps nothing.
fn raw_read(
    pipe: &mut Pipe,
    inb: &mut InBuf,
    sock: &mut Sock,
    log: &mut Vec<(Duration, Ev)>,
    t: Duration,
    got: fn(F) -> Ev,
    eof: Ev,
) -> bool {
    let moved = fill(pipe, inb, usize::MAX);
    loop {
        match proto::decode(inb.data(), u32::MAX) {
            Ok(Some((f, used))) => {
                log.push((t, got(F::of(&f))));
                inb.consume(used);
            }
            Ok(None) => break,
            Err(e) => panic!("raw peer got bad bytes: {e}"),
        }
    }
    if pipe.fin && pipe.data.is_empty() && !sock.eof_seen {
        sock.eof_seen = true;
        log.push((t, eof));
        return true;
    }
    moved > 0
}
