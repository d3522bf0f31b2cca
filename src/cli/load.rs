//! Closed-loop load: `concurrency` calls kept in flight by a few driver threads, each polling
//! its share of call futures on a [`CallSet`] (gracerpc's own executor), so a completion costs
//! no thread wake-up per call, and a driver alone on its connection reads its answers itself.
//!
//! The load generator must cost little next to the calls it measures: each driver counts
//! outcomes and latencies in a histogram of its own, merged when the load stops, and keeps a
//! record per call only when asked (the rollout audit needs every token; `bench` does not).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallFuture, CallOptions, CallSet, Client};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::record::CallRecord;
use super::summary::{Counts, Latency};

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

/// What a lane's future gives back: its token, when it started, and the call's result.
type Finished = (u64, Instant, Result<gracerpc::client::Response, CallError>);

/// One call with its bookkeeping, as a lane of the driver's [`CallSet`].
fn lane_call(call: CallFuture<'static>, token: u64) -> impl Future<Output = Finished> {
    let start = Instant::now();
    async move { (token, start, call.await) }
}

impl Driver {
    /// Keeps the driver's lanes busy on a [`CallSet`] (the calling thread writes each round's
    /// requests and reads the answers itself when it can) until told to stop, then waits for
    /// the calls in flight until the grace runs out.
    fn run(self) -> (Vec<CallRecord>, Tally, u64) {
        let mut records = Vec::with_capacity(if self.spec.records { 64 * 1024 } else { 0 });
        let mut tally = Tally::new();
        let mut body = vec![0u8; self.spec.payload.max(if self.spec.tokens { 8 } else { 0 })];
        let mut set = CallSet::with_capacity(self.lanes.max(1));
        for _ in 0..self.lanes {
            if set.push(self.start_call(&mut body)).is_err() {
                break;
            }
        }
        while !set.is_empty() {
            let Some((token, start, result)) = set.next_timeout(Duration::from_millis(50)) else {
                if self.stop.load(Ordering::Acquire)
                    && self.stop_at.lock().is_some_and(|t| Instant::now() >= t)
                {
                    // Calls still running past the grace period never ended: report them.
                    return (records, tally, set.len() as u64);
                }
                continue;
            };
            let now = Instant::now();
            if result.is_err() {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            let result = result.map(|r| r.replays);
            let latency_us = micros(now.saturating_duration_since(start));
            tally.add(&result, latency_us);
            if self.spec.records {
                records.push(CallRecord {
                    token,
                    start_us: micros(start.saturating_duration_since(self.started)),
                    latency_us,
                    result,
                });
            }
            if !self.stop.load(Ordering::Acquire) {
                // A lane just freed: there is room.
                let _ = set.push(self.start_call(&mut body));
            }
        }
        (records, tally, 0)
    }

    fn start_call(&self, body: &mut [u8]) -> impl Future<Output = Finished> + use<> {
        let mut token = 0;
        if self.spec.tokens {
            token = self.next_token.fetch_add(1, Ordering::Relaxed);
            body[..8].copy_from_slice(&token.to_be_bytes());
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let fut = self
            .client
            .call_async(&self.spec.method, body.to_vec(), self.spec.opts.clone());
        lane_call(fut, token)
    }
}

/// Whole microseconds (no u128 division, unlike `as_micros`).
fn micros(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}
