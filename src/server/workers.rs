//! The worker pool: threads fed through a bounded queue, writing their answers themselves on
//! plaintext connections (see `outbox.rs`), and otherwise answering through a channel and one
//! `mio::Waker`.
//!
//! Each job has one atomic [`JobState`] (see `slot.rs`). A worker and the event loop (draining,
//! cancelling, or closing the connection) race for it with a compare-and-swap, and only the
//! winner acts: a request is never both run and rejected (protocol.md rule 2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::handler::Request;
use super::loop_waker::LoopWaker;
use super::registry::Callable;
use super::responder::{Shared, run_deferred};
use super::run::run_handler;
pub(crate) use super::slot::{Answer, Completion, JobState};

use super::latency::MethodLatency;
pub(crate) use super::outbox::Direct;
use super::outbox::{Gone, Outbox};
use super::stats::Stats;
use super::token::ConnRef;
use crate::proto::RejectReason;
use crate::proto::frame::Metadata;

/// Job states and request buffers kept by the loop for reuse, so handing a request to a worker
/// allocates nothing once the pools are warm.
#[derive(Default)]
pub(crate) struct Pools {
    states: Vec<Arc<JobState>>,
    bufs: Vec<Vec<u8>>,
    deferred: usize,
}

/// Items kept per pool, at most.
const POOL: usize = 1024;
/// Request buffers larger than this are freed rather than kept.
const POOL_BUF: usize = 64 * 1024;

impl Pools {
    /// A fresh job state (queued) for request `id` on `conn`; `deferred` if it is answered
    /// through the done list (counted in [`deferred`](Self::deferred) until released).
    /// A slot for request `id` on `conn`; `timing` (when accepted, and the method's histogram)
    /// is kept only for a request answered later.
    pub fn state(
        &mut self,
        conn: ConnRef,
        id: u64,
        deferred: bool,
        timing: Option<(Instant, Arc<MethodLatency>)>,
    ) -> Arc<JobState> {
        let timing = if deferred { timing } else { None };
        let mut state = self.states.pop().unwrap_or_default();
        if let Some(s) = Arc::get_mut(&mut state) {
            s.prepare(conn, id, deferred, timing);
        } else {
            // Never: pooled states are unshared. A fresh one is correct all the same.
            state = Arc::default();
            if let Some(s) = Arc::get_mut(&mut state) {
                s.prepare(conn, id, deferred, timing);
            }
        }
        if deferred {
            self.deferred += 1;
        }
        state
    }

    /// Deferred requests accepted and not yet released by the loop.
    pub fn deferred(&self) -> usize {
        self.deferred
    }

    /// Takes back a job state the loop is done with; kept only if no worker still holds it.
    pub fn release_state(&mut self, mut state: Arc<JobState>) {
        if state.is_deferred() {
            self.deferred -= 1;
        }
        if Arc::get_mut(&mut state).is_some() && self.states.len() < POOL {
            self.states.push(state);
        }
    }

    /// A buffer holding a copy of `first` then `then`.
    pub fn buf(&mut self, first: &[u8], then: &[u8]) -> Vec<u8> {
        let mut b = self.bufs.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(first);
        b.extend_from_slice(then);
        b
    }

    /// Takes back a request buffer.
    pub fn release_buf(&mut self, b: Vec<u8>) {
        if b.capacity() <= POOL_BUF && self.bufs.len() < POOL {
            self.bufs.push(b);
        }
    }
}

/// A request handed to a worker.
pub(crate) struct Job {
    pub conn: ConnRef,
    pub id: u64,
    pub method: Arc<str>,
    /// The metadata entries (checked when decoded), then the payload.
    pub body: Vec<u8>,
    /// Bytes of `body` that are metadata.
    pub meta_len: usize,
    pub peer: SocketAddr,
    pub identity: Option<Arc<crate::server::PeerIdentity>>,
    pub deadline: Instant,
    pub idempotent: bool,
    pub handler: Callable,
    pub state: Arc<JobState>,
    /// For a deferred handler: where its responder answers.
    pub shared: Option<Arc<Shared>>,
    /// When it was accepted, and its method's histogram (with metrics on).
    pub timing: Option<(Instant, Arc<MethodLatency>)>,
    /// Where the worker may write the answer itself (a plaintext connection; see `wire.rs`).
    pub direct: Option<Direct>,
}

/// The bounded work queue between the loop and the workers.
///
/// The loop pushes every request of a turn without waking anyone, then wakes as many idle
/// workers as there is work for, once ([`JobQueue::kick`]); a worker takes its share of the
/// queue in one lock. On two shared cores a wake-up costs microseconds, so hand-offs are per
/// batch, not per call.
pub(crate) struct JobQueue {
    inner: Mutex<QueueInner>,
    ready: Condvar,
    cap: usize,
    workers: usize,
    /// Jobs queued and not yet finished by a worker: a worker counts its batch off only after
    /// sending the batch's completions, so at 0 every completion is on the channel.
    unfinished: AtomicUsize,
}

struct QueueInner {
    jobs: VecDeque<Job>,
    idle: usize,
    closed: bool,
}

impl JobQueue {
    pub fn new(cap: usize, workers: usize) -> Arc<JobQueue> {
        Arc::new(JobQueue {
            inner: Mutex::new(QueueInner {
                jobs: VecDeque::with_capacity(cap),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            cap,
            workers: workers.max(1),
            unfinished: AtomicUsize::new(0),
        })
    }

    /// Queues a job, or gives it back if the queue is full. Wakes nobody: see `kick`.
    // The job comes back whole so its buffers return to the pools; boxing it would cost an
    // allocation per request.
    #[allow(clippy::result_large_err)]
    pub fn push(&self, job: Job) -> Result<(), Job> {
        let mut q = self.inner.lock();
        if q.closed || q.jobs.len() >= self.cap {
            return Err(job);
        }
        q.jobs.push_back(job);
        self.unfinished.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Jobs queued or running, or whose completions are not yet all sent.
    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    /// Wakes as many idle workers as there are queued jobs (called once per loop turn).
    pub fn kick(&self) {
        let q = self.inner.lock();
        let n = q.idle.min(q.jobs.len());
        drop(q);
        for _ in 0..n {
            self.ready.notify_one();
        }
    }

    /// Stops the workers once the queue is empty.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.ready.notify_all();
    }

    /// Takes this worker's share of the queued jobs, waiting for some; false once closed.
    fn take(&self, out: &mut Vec<Job>) -> bool {
        let mut q = self.inner.lock();
        while q.jobs.is_empty() {
            if q.closed {
                return false;
            }
            q.idle += 1;
            self.ready.wait(&mut q);
            q.idle -= 1;
        }
        let share = q.jobs.len().div_ceil(self.workers).max(1);
        out.extend(q.jobs.drain(..share));
        true
    }
}

/// The loop's end of the queue: dropping it stops the workers.
pub(crate) struct JobSender(pub Arc<JobQueue>);

impl Drop for JobSender {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The worker threads, as the loop holds them to join them at the end.
pub(crate) struct Workers {
    handles: Vec<Option<JoinHandle<()>>>,
    /// Each worker sends its index here as its thread ends (from a drop guard: panics too).
    exited: Receiver<usize>,
    /// Workers running a handler right now.
    busy: Arc<AtomicUsize>,
}

impl Workers {
    /// Joins the workers as they end (the queue must be closed), until every worker not running
    /// a handler has ended, or until `until`. Returns the names of the workers still running —
    /// a handler that hangs past the budget: Rust cannot stop a thread, so it is left detached,
    /// and its answer goes nowhere.
    pub fn join(&mut self, until: Instant) -> Vec<String> {
        loop {
            let running = self.handles.iter().filter(|h| h.is_some()).count();
            if running == 0 || running <= self.busy.load(Ordering::Acquire) {
                break;
            }
            // Short waits: a worker that was busy may finish meanwhile (and then exits).
            let slice = (Instant::now() + Duration::from_millis(10)).min(until);
            match self.exited.recv_deadline(slice) {
                Ok(i) => {
                    if let Some(h) = self.handles.get_mut(i).and_then(Option::take)
                        && h.join().is_err()
                    {
                        log::error!("worker {i} panicked outside a handler");
                    }
                }
                Err(_) if Instant::now() >= until => break,
                Err(_) => {}
            }
        }
        self.handles
            .iter()
            .flatten()
            .map(|h| h.thread().name().unwrap_or("gracerpc-worker").to_owned())
            .collect()
    }
}

/// Sends the worker's index when its thread ends, however it ends.
struct ExitNote(Sender<usize>, usize);

impl Drop for ExitNote {
    fn drop(&mut self) {
        let _ = self.0.try_send(self.1);
    }
}

/// Starts `n` worker threads. If one cannot be started, those started stop once the caller
/// drops its [`JobSender`] (the queue closes).
pub(crate) fn spawn(
    n: usize,
    jobs: Arc<JobQueue>,
    done: Sender<Completion>,
    waker: Arc<LoopWaker>,
    stats: Arc<Stats>,
) -> std::io::Result<Workers> {
    let (exit_tx, exited) = crossbeam_channel::bounded(n);
    let busy = Arc::new(AtomicUsize::new(0));
    let handles = (0..n)
        .map(|i| {
            let (jobs, done, waker) = (jobs.clone(), done.clone(), waker.clone());
            let stats = stats.clone();
            let (note, busy) = (ExitNote(exit_tx.clone(), i), busy.clone());
            std::thread::Builder::new()
                .name(format!("gracerpc-worker-{i}"))
                .spawn(move || {
                    let _note = note;
                    work(&jobs, &done, &waker, &busy, &stats)
                })
                .map(Some)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(Workers {
        handles,
        exited,
        busy,
    })
}

fn work(
    jobs: &JobQueue,
    done: &Sender<Completion>,
    waker: &LoopWaker,
    busy: &AtomicUsize,
    stats: &Stats,
) {
    let mut batch = Vec::new();
    let mut outbox = Outbox::default();
    while jobs.take(&mut batch) {
        let taken = batch.len();
        // Answers the loop must write (or learn of) at once: it is woken for them.
        let mut wake = false;
        let mut gone = false;
        for job in batch.drain(..) {
            // One clock reading per job: its deadline, and how long the outbox waited.
            let now = Instant::now();
            if outbox.overdue(now) {
                match outbox.flush(done, stats) {
                    Ok(w) => wake |= w,
                    Err(_) => gone = true,
                }
            }
            busy.fetch_add(1, Ordering::AcqRel);
            let ran = run(job, now);
            busy.fetch_sub(1, Ordering::AcqRel);
            let sent = match ran {
                None => Ok(false),
                Some((c, Some(direct))) if matches!(c.result, Answer::Ran(_)) => {
                    outbox.add(c, direct, now, done, stats)
                }
                Some((c, _)) => done.send(c).map(|()| true).map_err(|_| Gone),
            };
            match sent {
                Ok(w) => wake |= w,
                Err(_) => gone = true,
            }
        }
        match outbox.flush(done, stats) {
            Ok(w) => wake |= w,
            Err(_) => gone = true,
        }
        // Only now: every completion of the batch is on the channel.
        jobs.unfinished.fetch_sub(taken, Ordering::AcqRel);
        if gone {
            return; // the loop is gone
        }
        if wake {
            // One wake-up for the whole batch of answers.
            waker.wake();
        }
    }
}

/// Runs one job unless the loop rejected it first. A deferred job answers through its
/// responder, not through the channel.
fn run(job: Job, now: Instant) -> Option<(Completion, Option<Direct>)> {
    if !job.state.try_start() {
        return None; // the loop rejected it and answered already
    }
    let Job {
        conn,
        id,
        method,
        mut body,
        meta_len,
        peer,
        identity,
        deadline,
        idempotent,
        handler,
        state,
        shared,
        timing,
        direct,
    } = job;
    let (meta, payload) = body.split_at(meta_len.min(body.len()));
    let req = Request {
        id,
        method: &method,
        body: payload,
        deadline,
        idempotent,
        peer,
        // Checked when the frame was decoded; an impossible failure reads as no metadata.
        metadata: Metadata::from_entries(meta).unwrap_or_default(),
        identity: identity.as_deref(),
    };
    let expired = now >= deadline;
    let handler = match handler {
        Callable::Later(h) => {
            if let Some(shared) = shared {
                if expired {
                    // Rule 6: started by this worker, but no user code runs.
                    shared.reject_started(&state, RejectReason::DEADLINE);
                } else {
                    run_deferred(h.as_ref(), &req, state, &shared);
                }
            }
            return None;
        }
        Callable::Now(h) => h,
        #[cfg(feature = "tokio")]
        Callable::Async(_) => return None, // never queued: spawned on its runtime
    };
    // Only the loop holds the state from here on, so it can reuse it once answered.
    drop(state);
    let (result, pool_answer) = if expired {
        // Rule 6: a queued request whose deadline passed is rejected, not run. The state says
        // "running", but only this worker can answer it now, and it answers with a reject.
        (Answer::Rejected(RejectReason::DEADLINE), false)
    } else {
        let reply = run_handler(handler.as_ref(), &req);
        // The typed layer encoded the answer into this worker's spare buffer: keep the
        // request's as the next spare (see `spare.rs`).
        (Answer::Ran(reply), super::spare::refill(&mut body))
    };
    let c = Completion {
        conn,
        id,
        result,
        buf: body,
        pool_answer,
        counted: false,
        timing,
    };
    Some((c, direct))
}
