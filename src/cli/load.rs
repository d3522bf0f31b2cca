//! Closed-loop load: `concurrency` calls kept in flight by a few driver threads, each polling
//! its share of call futures (a tiny executor), so a completion costs no thread wake-up per call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallFuture, CallOptions, Client};
use parking_lot::Mutex;

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
}

/// A running load; stop it with [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    stop_at: Arc<Mutex<Option<Instant>>>,
    drivers: Vec<JoinHandle<(Vec<CallRecord>, u64)>>,
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

    /// Stops starting calls, waits up to `grace` for the calls in flight, and returns every
    /// finished call's record and how many calls never ended.
    pub fn stop(self, grace: Duration) -> (Vec<CallRecord>, u64) {
        *self.stop_at.lock() = Some(Instant::now() + grace);
        self.stop.store(true, Ordering::Release);
        let mut all = Vec::new();
        let mut never_ended = 0;
        for d in self.drivers {
            if let Ok((mut recs, unfinished)) = d.join() {
                all.append(&mut recs);
                never_ended += unfinished;
            }
        }
        all.sort_by_key(|r| r.start_us);
        (all, never_ended)
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
    fut: Option<Pin<Box<CallFuture<'static>>>>,
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
    fn run(self) -> (Vec<CallRecord>, u64) {
        let queue = Arc::new(ReadyQueue {
            ready: Mutex::new(Vec::new()),
            thread: std::thread::current(),
        });
        let mut lanes: Vec<Lane> = (0..self.lanes)
            .map(|lane| Lane {
                fut: None,
                token: 0,
                start: Instant::now(),
                waker: Waker::from(Arc::new(LaneWaker {
                    lane,
                    queue: queue.clone(),
                })),
            })
            .collect();
        let mut records = Vec::with_capacity(64 * 1024);
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
                let Some(fut) = lane.fut.as_mut() else {
                    continue;
                };
                let mut cx = Context::from_waker(&lane.waker);
                let Poll::Ready(result) = fut.as_mut().poll(&mut cx) else {
                    continue;
                };
                lane.fut = None;
                let now = Instant::now();
                if result.is_err() {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
                records.push(CallRecord {
                    token: lane.token,
                    start_us: (lane.start - self.started).as_micros() as u64,
                    latency_us: (now - lane.start).as_micros() as u64,
                    result: result.map(|r| r.replays),
                });
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
                    return (records, active as u64);
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
        }
        (records, 0)
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
        lane.fut = Some(Box::pin(fut));
    }
}
