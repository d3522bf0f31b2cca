//! Closed-loop load: `concurrency` calls kept in flight by a few driver threads, each polling
//! its share of call futures (a tiny executor), so a completion costs no thread wake-up per call.
//!
//! The load generator must cost little next to the calls it measures: each driver counts
//! outcomes and latencies in a histogram of its own, merged when the load stops, and keeps a
//! record per call only when asked (the rollout audit needs every token; `bench` does not).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallFuture, CallOptions, Client};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::summary::{Counts, Latency};

/// What one call did.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// The unique token the call carried (0 when the method carries none).
    pub token: u64,
    /// Start, in microseconds since the load began.
    pub start_us: u64,
    /// Latency in microseconds.
    pub latency_us: u64,
    /// `Ok(replays)` or the error.
    pub result: Result<u32, CallError>,
}

/// How the load is shaped.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub method: String,
    pub payload: usize,
    pub concurrency: usize,
    pub drivers: usize,
    pub opts: CallOptions,
    /// Put a unique 8-byte token at the start of every body (for `record`).
    pub tokens: bool,
    /// First token value (tokens then count up).
    pub token_base: u64,
    /// Keep a [`CallRecord`] per call (else only the drivers' tallies).
    pub records: bool,
}

/// Outcomes and latencies of calls, counted as they end.
pub struct Tally {
    pub counts: Counts,
    latency_us: Option<Histogram<u64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            counts: Counts::default(),
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        }
    }

    fn add(&mut self, result: &Result<u32, CallError>, latency_us: u64) {
        self.counts.add(result);
        if let Some(h) = self.latency_us.as_mut() {
            let _ = h.record(latency_us.clamp(1, 60_000_000));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.counts.merge(&other.counts);
        if let (Some(h), Some(o)) = (self.latency_us.as_mut(), other.latency_us.as_ref()) {
            let _ = h.add(o);
        }
    }

    pub fn latency(&self) -> Latency {
        self.latency_us
            .as_ref()
            .map_or_else(Latency::default, Latency::of_histogram)
    }
}

/// What a stopped load did.
pub struct Stopped {
    /// Every finished call, by start time (empty unless [`LoadSpec::records`]).
    pub records: Vec<CallRecord>,
    /// Every finished call, counted.
    pub tally: Tally,
    /// Calls still running when the grace ran out.
    pub never_ended: u64,
}

/// A running load; stop it with [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    stop_at: Arc<Mutex<Option<Instant>>>,
    drivers: Vec<JoinHandle<(Vec<CallRecord>, Tally, u64)>>,
    pub started: Instant,
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl Load {
    pub fn start(client: &Client, spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_at = Arc::new(Mutex::new(None));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let next_token = Arc::new(AtomicU64::new(spec.token_base));
        let started = Instant::now();
        let drivers = spec.drivers.clamp(1, spec.concurrency.max(1));
        let handles = (0..drivers)
            .map(|d| {
                let lanes =
                    spec.concurrency / drivers + usize::from(d < spec.concurrency % drivers);
                let driver = Driver {
                    client: client.clone(),
                    spec: spec.clone(),
                    lanes,
                    stop: stop.clone(),
                    stop_at: stop_at.clone(),
                    sent: sent.clone(),
                    failed: failed.clone(),
                    next_token: next_token.clone(),
                    started,
                };
                std::thread::Builder::new()
                    .name(format!("load-{d}"))
                    .spawn(move || driver.run())
                    .expect("spawn load driver")
            })
            .collect();
        Load {
            stop,
            stop_at,
            drivers: handles,
            started,
            sent,
            failed,
        }
    }

    /// Stops starting calls, waits up to `grace` for the calls in flight, and returns what
    /// the finished calls did and how many never ended.
    pub fn stop(self, grace: Duration) -> Stopped {
        *self.stop_at.lock() = Some(Instant::now() + grace);
        self.stop.store(true, Ordering::Release);
        let mut out = Stopped {
            records: Vec::new(),
            tally: Tally::new(),
            never_ended: 0,
        };
        for d in self.drivers {
            if let Ok((mut recs, tally, unfinished)) = d.join() {
                out.records.append(&mut recs);
                out.tally.merge(tally);
                out.never_ended += unfinished;
            }
        }
        out.records.sort_by_key(|r| r.start_us);
        out
    }
}

struct Driver {
    client: Client,
    spec: LoadSpec,
    lanes: usize,
    stop: Arc<AtomicBool>,
    stop_at: Arc<Mutex<Option<Instant>>>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    next_token: Arc<AtomicU64>,
    started: Instant,
}

struct Lane {
    /// The lane's call; the box is allocated once and reused by every call of the lane.
    fut: Pin<Box<Option<CallFuture<'static>>>>,
    token: u64,
    start: Instant,
    waker: Waker,
}

/// Wakes one lane: queues its index and unparks the driver.
struct LaneWaker {
    lane: usize,
    queue: Arc<ReadyQueue>,
}

struct ReadyQueue {
    ready: Mutex<Vec<usize>>,
    thread: std::thread::Thread,
}

impl Wake for LaneWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.ready.lock().push(self.lane);
        self.queue.thread.unpark();
    }
}

impl Driver {
    fn run(self) -> (Vec<CallRecord>, Tally, u64) {
        let queue = Arc::new(ReadyQueue {
            ready: Mutex::new(Vec::new()),
            thread: std::thread::current(),
        });
        let mut lanes: Vec<Lane> = (0..self.lanes)
            .map(|lane| Lane {
                fut: Box::pin(None),
                token: 0,
                start: Instant::now(),
                waker: Waker::from(Arc::new(LaneWaker {
                    lane,
                    queue: queue.clone(),
                })),
            })
            .collect();
        let mut records = Vec::with_capacity(if self.spec.records { 64 * 1024 } else { 0 });
        let mut tally = Tally::new();
        let mut body = vec![0u8; self.spec.payload.max(if self.spec.tokens { 8 } else { 0 })];
        let mut batch = Vec::new();
        for (i, lane) in lanes.iter_mut().enumerate() {
            self.start_call(lane, &mut body);
            batch.push(i);
        }
        let mut active = lanes.len();
        while active > 0 {
            for &i in &batch {
                let lane = &mut lanes[i];
                let Some(fut) = lane.fut.as_mut().as_pin_mut() else {
                    continue;
                };
                let mut cx = Context::from_waker(&lane.waker);
                let Poll::Ready(result) = fut.poll(&mut cx) else {
                    continue;
                };
                lane.fut.set(None);
                let now = Instant::now();
                if result.is_err() {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
                let result = result.map(|r| r.replays);
                let latency_us = micros(now.saturating_duration_since(lane.start));
                tally.add(&result, latency_us);
                if self.spec.records {
                    records.push(CallRecord {
                        token: lane.token,
                        start_us: micros(lane.start.saturating_duration_since(self.started)),
                        latency_us,
                        result,
                    });
                }
                if self.stop.load(Ordering::Acquire) {
                    active -= 1;
                } else {
                    self.start_call(lane, &mut body);
                    queue.ready.lock().push(i);
                }
            }
            batch.clear();
            loop {
                std::mem::swap(&mut batch, &mut *queue.ready.lock());
                if !batch.is_empty() || active == 0 {
                    break;
                }
                if self.stop.load(Ordering::Acquire)
                    && self.stop_at.lock().is_some_and(|t| Instant::now() >= t)
                {
                    // Calls still running past the grace period never ended: report them.
                    return (records, tally, active as u64);
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
        }
        (records, tally, 0)
    }

    fn start_call(&self, lane: &mut Lane, body: &mut [u8]) {
        lane.token = 0;
        if self.spec.tokens {
            lane.token = self.next_token.fetch_add(1, Ordering::Relaxed);
            body[..8].copy_from_slice(&lane.token.to_be_bytes());
        }
        lane.start = Instant::now();
        self.sent.fetch_add(1, Ordering::Relaxed);
        let fut = self
            .client
            .call_async(&self.spec.method, body.to_vec(), self.spec.opts.clone());
        lane.fut.set(Some(fut));
    }
}

/// Whole microseconds (no u128 division, unlike `as_micros`).
fn micros(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}
