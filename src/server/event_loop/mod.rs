//! The server's event loop, hand-written on mio: a listener, a slab of connections, one waker
//! for worker completions and control requests, and (opt-in) the signal self-pipe.
//!
//! The loop moves bytes and runs the close sequence; every protocol decision is made by the core
//! ([`ServerConn`]): the loop never re-implements a rule.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

mod accepting;
mod completions;
mod dispatch;
mod drain;
mod expiry;
mod handshakes;
mod later;

pub(crate) use drain::withdrawal_limit;
use handshakes::Handshakes;

pub(crate) use dispatch::DeferredLimits;
use dispatch::Dispatch;
use drain::Drain;
use expiry::Expiries;

use super::announce::Announcer;
use super::conn::{Conn, ReadOutcome};
use super::latency::TurnTimings;
use super::loop_waker::LoopWaker;
use super::readiness::Readiness;
use super::registry::Registry;
use super::report::DrainReport;
use super::responder::Shared;
pub(crate) use super::stats::Stats;
use super::token::{ConnRef, LISTENER, MAX_SLOTS, SIGNALS, WAKER};
use super::workers::{Completion, JobSender, Pools, Workers};
use crate::proto::{Incoming, ServerConn, ServerConnConfig, decode};

/// Control requests from the [`ServerHandle`](super::ServerHandle).
pub(crate) enum Control {
    Shutdown,
    /// Start accepting (a server built with `accept_paused`); the reply says it does.
    StartAccepting(crossbeam_channel::Sender<io::Result<()>>),
    /// A duplicate of the listening socket, to hand to another process (see `handoff`).
    DupListener(crossbeam_channel::Sender<io::Result<std::os::fd::OwnedFd>>),
    /// Another process now accepts on our listener: stop accepting, keep the registry entry
    /// (it is the new process's now), GOAWAY and drain.
    HandedOff,
}

/// Limits the loop enforces.
pub(crate) struct LoopConfig {
    pub conn: ServerConnConfig,
    pub max_connections: usize,
    pub drain_budget: Duration,
    /// Limits on deferred and async requests.
    pub deferred: DeferredLimits,
    /// How long the node keeps serving after it turned unready, before the registry withdrawal
    /// and GOAWAY.
    pub unready_delay: Duration,
    /// Output bytes queued for one connection above which the loop stops reading from it.
    pub out_limit: usize,
    /// TLS on every accepted connection.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ServerTls>,
}

pub(crate) struct EventLoop {
    pub poll: Poll,
    pub listener: Option<TcpListener>,
    /// The listener is registered with the poll: connections are being accepted. False until
    /// `StartAccepting` for a server built with `accept_paused` (e.g. the new process of a
    /// handoff, which must not accept before COMMIT).
    pub accepting: bool,
    pub signals: Option<Signals>,
    pub conns: Slab<Conn>,
    pub next_generation: u32,
    pub cfg: LoopConfig,
    pub registry: Registry,
    pub jobs: JobSender,
    pub completions: Receiver<Completion>,
    pub control: Receiver<Control>,
    pub waker: Arc<LoopWaker>,
    pub stats: Arc<Stats>,
    pub readiness: Readiness,
    /// The registry hook (see `announce.rs`), if the server registers itself.
    pub announcer: Option<Announcer>,
    /// The close sequence was asked for (why, and its `t0`: when asked, or when the unready
    /// delay ends) and waits for the unready delay or the registry withdrawal.
    withdrawing: Option<(String, Instant)>,
    /// `accept` failed (EMFILE, ENFILE, ...) with connections left in the backlog: try again
    /// then. The listener is edge-triggered, so no new event would come for them.
    accept_retry: Option<Instant>,
    /// The worker threads, joined when the loop ends.
    pub workers: Option<Workers>,
    /// When the unready delay of a close sequence asked for ends.
    unready_until: Option<Instant>,
    /// Slots touched in this turn, to flush and check for close once at its end.
    touched: Vec<usize>,
    /// Slots whose paused reading goes on in the next turn (see `finish_turn`): that turn
    /// polls without waiting.
    resume_next: Vec<usize>,
    /// Inline answers of this turn waiting for their latency (metrics on).
    timings: TurnTimings,
    /// The shared read buffer (see `Conn::read_some`).
    scratch: Vec<u8>,
    pools: Pools,
    /// Where responders and async tasks leave their answers.
    pub shared: Arc<Shared>,
    expiries: Expiries,
    drain: Option<Drain>,
    next_tick: Instant,
    handshakes: Handshakes,
    /// The current wait for answers workers wrote (see `sleep`).
    lag: Duration,
}

/// How soon the loop looks for answers workers wrote themselves, at first; it doubles up to
/// [`LAG_MAX`] while none come (slow handlers), and is back to this when some do.
const LAG_MIN: Duration = Duration::from_millis(1);
const LAG_MAX: Duration = Duration::from_millis(32);

/// How often timers are scanned at most: timeouts are at least this coarse.
const TICK: Duration = Duration::from_millis(5);

/// How long the loop waits at least for idle workers to exit once the queue is closed.
const JOIN_GRACE: Duration = Duration::from_millis(100);

/// How soon `accept` is tried again after it failed for want of resources.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// Resumed reads of one paused connection per turn, at most (see `finish_turn`).
const RESUME_ROUNDS: usize = 4;

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        signals: Option<Signals>,
        cfg: LoopConfig,
        registry: Registry,
        jobs: JobSender,
        completions: Receiver<Completion>,
        control: Receiver<Control>,
        waker: Arc<LoopWaker>,
        stats: Arc<Stats>,
        readiness: Readiness,
        accepting: bool,
        shared: Arc<Shared>,
    ) -> EventLoop {
        #[cfg(feature = "tls")]
        let cap = cfg.tls.as_ref().map_or(usize::MAX, |t| t.handshake_cap());
        #[cfg(not(feature = "tls"))]
        let cap = usize::MAX;
        EventLoop {
            handshakes: Handshakes::new(cap),
            poll,
            listener: Some(listener),
            accepting,
            signals,
            conns: Slab::new(),
            next_generation: 0,
            cfg,
            registry,
            jobs,
            completions,
            control,
            waker,
            stats,
            readiness,
            announcer: None,
            withdrawing: None,
            accept_retry: None,
            workers: None,
            unready_until: None,
            touched: Vec::new(),
            resume_next: Vec::new(),
            timings: TurnTimings::default(),
            scratch: vec![0; super::conn::SCRATCH],
            pools: Pools::default(),
            shared,
            expiries: Expiries::default(),
            drain: None,
            next_tick: Instant::now(),
            lag: LAG_MIN,
        }
    }

    /// Runs until the close sequence ends, then closes what is left and collects the workers.
    pub fn run(mut self) -> io::Result<DrainReport> {
        let report = self.run_loop()?;
        Ok(self.finish(report))
    }

    /// How long the next poll may wait: until the next timer, and no longer than the lag while
    /// workers hold jobs — answers they write themselves wake nobody, so the loop comes to
    /// count them.
    fn sleep(&self) -> Duration {
        if !self.resume_next.is_empty() {
            return Duration::ZERO;
        }
        let timers = self.next_tick.saturating_duration_since(Instant::now());
        if !self.completions.is_empty() {
            Duration::ZERO
        } else if self.jobs.0.unfinished() > 0 {
            timers.min(self.lag)
        } else {
            timers
        }
    }

    fn run_loop(&mut self) -> io::Result<DrainReport> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.sleep();
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                // A signal landed: not an error; the self-pipe reports it as an event.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if self.take_completions(now) {
                self.lag = LAG_MIN;
            } else if events.is_empty() {
                // Woken for answers that were not there: the workers are slow, look less often.
                self.lag = (self.lag * 2).min(LAG_MAX);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => self.on_wake(now),
                    SIGNALS => {
                        if let Some(report) = self.on_signals(now) {
                            return Ok(report);
                        }
                    }
                    token => {
                        let r = ConnRef::from_token(token);
                        let Some(conn) = self.conns.get_mut(r.slot) else {
                            continue;
                        };
                        if conn.me != r {
                            continue; // a stale event for a connection that is gone
                        }
                        if event.is_writable() {
                            conn.write_blocked = false;
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // After a FIN, read until the 0 that reports it: no new event comes.
                            let to_end = event.is_read_closed() || event.is_error();
                            self.read_conn(r.slot, now, to_end);
                        }
                        self.touched.push(r.slot);
                    }
                }
            }
            if now >= self.next_tick {
                self.on_tick(now);
            }
            self.touched.append(&mut self.resume_next);
            self.finish_turn(now);
            if let Some(report) = self.drain_done(now) {
                return Ok(report);
            }
        }
    }

    /// After the loop: closes the connections left (without an RST), stops the workers and
    /// joins those that are not running a handler; the others are named in the report.
    fn finish(&mut self, mut report: DrainReport) -> DrainReport {
        let h = &self.stats.handshakes;
        report.handshakes = crate::server::HandshakeReport {
            peak: h.peak.load(Ordering::Relaxed),
            held: h.held.load(Ordering::Relaxed),
            begun: h.begun.load(Ordering::Relaxed),
            completed: h.completed.load(Ordering::Relaxed),
        };
        self.close_all();
        self.jobs.0.close();
        if let Some(workers) = self.workers.as_mut() {
            let now = Instant::now();
            let until = self
                .drain
                .as_ref()
                .map_or(now, |d| d.end)
                .max(now + JOIN_GRACE);
            report.stuck_workers = workers.join(until);
            if !report.stuck_workers.is_empty() {
                log::warn!(
                    "{} worker threads still run a handler: {}; they are left to finish on \
                     their own, their answers go nowhere",
                    report.stuck_workers.len(),
                    report.stuck_workers.join(", ")
                );
            }
        }
        report
    }

    // ---- accepting ----

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            if self.handshakes.full(&self.stats.handshakes) {
                // The rest wait in the backlog until a handshake ends (see `finish_turn`).
                return;
            }
            let (stream, peer) = match listener.accept() {
                Ok(pair) => {
                    if self.accept_retry.take().is_some() {
                        log::info!("accept works again");
                    }
                    pair
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // e.g. EMFILE: the rest wait in the backlog. Edge-triggered, the listener
                    // raises no new event for them, so a timer tries again while it lasts.
                    if self.accept_retry.is_none() {
                        log::warn!(
                            "accept failed: {e}; retrying every {} ms",
                            ACCEPT_RETRY.as_millis()
                        );
                    }
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            if self.conns.len() >= self.cfg.max_connections.min(MAX_SLOTS) {
                log::warn!(
                    "connection from {peer} refused: {} connections open",
                    self.conns.len()
                );
                continue; // dropped: the peer has sent nothing that could be lost
            }
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("TCP_NODELAY on {peer}: {e}");
            }
            let Ok(tls) = self.tls_session(peer) else {
                continue; // dropped: the peer has sent nothing that could be lost
            };
            let entry = self.conns.vacant_entry();
            let me = ConnRef {
                slot: entry.key(),
                generation: self.next_generation,
            };
            self.next_generation = self.next_generation.wrapping_add(1);
            let mut core = ServerConn::new(now, self.cfg.conn.clone());
            core.set_ready(self.readiness.capacity());
            let counted = tls.is_some();
            let mut conn = Conn::new(me, stream, peer, core, tls);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut conn.stream, me.token(), interest)
            {
                log::warn!("cannot register connection from {peer}: {e}");
                continue;
            }
            entry.insert(conn);
            if counted {
                self.handshakes.begin(&self.stats.handshakes);
            }
            self.stats
                .counters
                .connections_accepted
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .connections
                .store(self.conns.len(), Ordering::Relaxed);
            self.touched.push(me.slot);
        }
    }

    // ---- reading and dispatching ----

    /// Reads and handles input until the socket is drained or back-pressure stops it. With
    /// `to_end`, a short read does not count as drained (the peer's FIN may follow the data).
    fn read_conn(&mut self, slot: usize, now: Instant, to_end: bool) {
        let out_limit = self.cfg.out_limit;
        loop {
            let Some(conn) = self.conns.get_mut(slot) else {
                return;
            };
            if conn.core.out_len() > out_limit {
                // The peer does not read its answers: stop reading its requests.
                conn.read_paused = true;
                return;
            }
            conn.read_paused = false;
            let outcome = conn.read_some(now, &mut self.scratch);
            let drained = outcome.drained();
            match outcome {
                ReadOutcome::Scratch { n, .. } => {
                    let scratch = std::mem::take(&mut self.scratch);
                    let used = self.handle_input(slot, now, Some(&scratch[..n]));
                    if let Some(conn) = self.conns.get_mut(slot)
                        && used < n
                        && conn.core.wants_frames()
                    {
                        // A partial frame: it waits in the connection's own buffer.
                        conn.input.extend(&scratch[used..n]);
                    }
                    self.scratch = scratch;
                }
                ReadOutcome::Buffered { .. } => {
                    self.handle_input(slot, now, None);
                }
                ReadOutcome::Nothing => return,
            }
            if drained && !to_end {
                return;
            }
        }
    }

    /// Decodes and handles every complete frame in `data` (or, if `None`, in the connection's
    /// input buffer, consuming what it decodes). Returns the bytes of `data` used.
    fn handle_input(&mut self, slot: usize, now: Instant, data: Option<&[u8]>) -> usize {
        let Some(conn) = self.conns.get_mut(slot) else {
            return 0;
        };
        let Conn {
            input,
            core,
            jobs,
            stream,
            tls,
            wire,
            me,
            peer,
            ..
        } = conn;
        let mut ctx = Dispatch {
            registry: &self.registry,
            jobs: &self.jobs.0,
            stats: &self.stats,
            pools: &mut self.pools,
            shared: &self.shared,
            expiries: &mut self.expiries,
            timings: &mut self.timings,
            deferred: &self.cfg.deferred,
            me: *me,
            peer: *peer,
            identity: crate::server::conn::identity(tls),
            wire: wire.as_ref(),
            now,
        };
        let buf = data.unwrap_or_else(|| input.data());
        let mut used = 0;
        while core.wants_frames() {
            match decode(&buf[used..], core.max_frame()) {
                Ok(Some((frame, n))) => {
                    match core.handle_frame(now, frame) {
                        Ok(Incoming::Request(acc)) => ctx.dispatch(core, jobs, acc),
                        Ok(Incoming::Cancel(id)) => {
                            later::cancel(core, jobs, ctx.pools, &ctx.stats.counters, id)
                        }
                        Ok(Incoming::Rejected { reason, .. }) => {
                            ctx.stats.counters.reject(reason);
                        }
                        Ok(Incoming::None) => {}
                        Err(e) => log::info!("connection {:?}: {e}", conn_peer(stream)),
                    }
                    used += n;
                }
                Ok(None) => break,
                Err(e) => {
                    let e = core.handle_decode_error(now, e);
                    log::info!("connection {:?}: {e}", conn_peer(stream));
                    break;
                }
            }
        }
        if !core.wants_frames() {
            used = buf.len();
        }
        if data.is_none() {
            input.consume(used);
        }
        used
    }

    // ---- timers and the end of a turn ----

    fn on_tick(&mut self, now: Instant) {
        self.note_budget_spent(now);
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept(now);
        }
        self.expire(now);
        let mut next = now + Duration::from_millis(250);
        if let Some(t) = self.accept_retry {
            next = next.min(t);
        }
        if let Some(t) = self.expiries.next() {
            next = next.min(t);
        }
        for (slot, conn) in self.conns.iter_mut() {
            if let Some(t) = conn.core.poll_timeout() {
                if t <= now {
                    conn.core.handle_timeout(now);
                    self.touched.push(slot);
                } else {
                    next = next.min(t);
                }
            }
        }
        self.apply_readiness(now);
        self.resume_drain(now);
        if let Some(t) = self.readiness.next_change() {
            next = next.min(t);
        }
        if self.withdrawing.is_some() {
            next = now; // waiting for the registry: check its timeout every tick
        }
        if let Some(d) = &self.drain {
            next = next.min(if now < d.deadline { d.deadline } else { d.end });
        }
        self.next_tick = next.max(now + TICK);
    }

    /// Flushes every touched connection once, resumes paused reads, and closes what is done.
    fn finish_turn(&mut self, now: Instant) {
        // The requests of this turn go to the workers with one round of wake-ups.
        self.jobs.0.kick();
        // Inline answers are written below: their latency ends now (recorded before a caller
        // can have read them).
        if !self.timings.is_empty() {
            self.timings.record(Instant::now());
        }
        while let Some(slot) = self.touched.pop() {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if !conn.write_blocked {
                conn.flush();
            }
            // Close decisions first: shutting the write side drops the unwritten output, which
            // may be what paused reading — input must then be read and discarded (rule 4), or
            // it would still be unread when the connection closes (an RST).
            let mut done = conn.apply_close(now);
            // Reading paused (the peer did not read its answers) goes on once they drained.
            // Again after each resumed read whose answers drained in the write that followed:
            // no event would come for it (its requests are in the socket already, and the
            // write never blocked). A few rounds per turn, then the next turn, so one such
            // peer does not hold the loop.
            let mut rounds = 0;
            while !done
                && self
                    .conns
                    .get(slot)
                    .is_some_and(|c| c.read_paused && c.core.out_len() <= self.cfg.out_limit)
            {
                if rounds == RESUME_ROUNDS {
                    self.resume_next.push(slot);
                    break;
                }
                rounds += 1;
                self.read_conn(slot, now, true);
                let Some(conn) = self.conns.get_mut(slot) else {
                    break;
                };
                if !conn.write_blocked {
                    conn.flush();
                }
                done = conn.apply_close(now);
            }
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if let Some(completed) = conn.handshake_ended(false) {
                self.handshakes.end(completed, &self.stats.handshakes);
            }
            let finished = conn.core.take_finished_answers();
            if finished > 0 {
                self.stats.in_flight.fetch_sub(finished, Ordering::AcqRel);
            }
            if done {
                self.remove(slot);
            }
        }
        // Reads resumed above may have queued more.
        self.jobs.0.kick();
        if self.handshakes.resume() {
            // Connections held in the backlog: the listener raises no new event for them.
            self.accept(now);
        }
    }

    fn remove(&mut self, slot: usize) {
        let mut conn = self.conns.remove(slot);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(completed) = conn.handshake_ended(true) {
            self.handshakes.end(completed, &self.stats.handshakes);
        }
        // Answers whose last bytes waited in the wire's tail go nowhere now: finished.
        conn.shut_wire();
        // Queued work for a closed connection is not run: its answer could go nowhere.
        let mut dropped = conn.core.take_finished_answers();
        for (_, state) in conn.jobs.drain() {
            // A deferred request still running is claimed here: its answer could go nowhere,
            // and a responder that never answers must not keep it in flight.
            if state.try_reject() || (state.is_deferred() && state.try_answer()) {
                state.wake_runner();
                dropped += 1;
                self.pools.release_state(state);
            } else if state.is_deferred() {
                // Answered, its slot on the done list: counted when it comes off it.
                self.pools.release_state(state);
            }
        }
        if dropped > 0 {
            self.stats.in_flight.fetch_sub(dropped, Ordering::AcqRel);
        }
        self.stats
            .connections
            .store(self.conns.len(), Ordering::Relaxed);
        if let Some(err) = conn.core.error() {
            log::debug!("connection {:?} closed: {err}", conn_peer(&conn.stream));
        }
    }
}

fn conn_peer(stream: &mio::net::TcpStream) -> Option<std::net::SocketAddr> {
    stream.peer_addr().ok()
}
