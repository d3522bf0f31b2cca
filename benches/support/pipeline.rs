//! The futures driver the benchmarks share: `depth` calls in flight, polled from one thread.
//!
//! Include it with `#[path = "support/pipeline.rs"] mod pipeline;`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use gracerpc::client::{CallFuture, CallOptions, CallSet, Client};
use parking_lot::Mutex;

struct QueueWaker {
    lane: usize,
    ready: Arc<Mutex<Vec<usize>>>,
    thread: std::thread::Thread,
}

impl Wake for QueueWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.lock().push(self.lane);
        self.thread.unpark();
    }
}

/// Which executor polls the futures.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // (not every bench that includes this file uses both)
pub enum Executor {
    /// A tiny executor of the bench's own, standing for any async runtime: a woken lane's
    /// index goes on a ready list, the thread parks when it is empty (the client's I/O thread
    /// reads the answers and wakes it).
    Foreign,
    /// gracerpc's own [`CallSet`]: the polling thread writes each round's requests and reads
    /// the answers itself.
    Set,
}

/// `n` calls of `method` with `body`-byte bodies, `depth` futures in flight, on `c`.
pub struct Load<'a> {
    pub c: &'a Client,
    pub method: &'a str,
    pub body: usize,
    pub depth: usize,
    pub n: u64,
}

impl Load<'_> {
    /// Runs the calls, all polled from the calling thread by `on`.
    pub fn run(&self, on: Executor) -> Duration {
        self.drive(on, None)
    }

    /// [`run`](Self::run), and each call's latency in µs (from its future's creation to its
    /// completion seen by the executor).
    #[allow(dead_code)] // (not every bench that includes this file times calls)
    pub fn latencies(&self, on: Executor) -> (Duration, Vec<u32>) {
        let mut lat = Vec::with_capacity(self.n as usize);
        let t = self.drive(on, Some(&mut lat));
        (t, lat)
    }

    fn drive(&self, on: Executor, latencies: Option<&mut Vec<u32>>) -> Duration {
        match on {
            Executor::Foreign => run(self, latencies),
            Executor::Set => run_set(self, latencies),
        }
    }
}

/// [`Load::run`] in one line.
pub fn pipelined(
    c: &Client,
    on: Executor,
    method: &str,
    body: usize,
    depth: usize,
    n: u64,
) -> Duration {
    let load = Load {
        c,
        method,
        body,
        depth,
        n,
    };
    load.run(on)
}

fn run(load: &Load<'_>, mut latencies: Option<&mut Vec<u32>>) -> Duration {
    let &Load {
        c,
        method,
        body,
        depth,
        n,
    } = load;
    let b = vec![0u8; body];
    let ready = Arc::new(Mutex::new(Vec::new()));
    let wakers: Vec<Waker> = (0..depth)
        .map(|lane| {
            Waker::from(Arc::new(QueueWaker {
                lane,
                ready: ready.clone(),
                thread: std::thread::current(),
            }))
        })
        .collect();
    let opts = CallOptions::new();
    // One box per lane, reused by every call of the lane: the load generator allocates nothing
    // per call.
    let mut lanes: Vec<Pin<Box<Option<CallFuture<'_>>>>> =
        (0..depth).map(|_| Box::pin(None)).collect();
    // When each lane's call started (read only when latencies are asked for).
    let mut started_at = vec![None::<Instant>; depth];
    let t = Instant::now();
    let (mut started, mut done) = (0u64, 0u64);
    let mut batch: Vec<usize> = (0..depth).collect();
    while done < n {
        for &i in &batch {
            if lanes[i].is_none() {
                if started == n {
                    continue;
                }
                started += 1;
                if latencies.is_some() {
                    started_at[i] = Some(Instant::now());
                }
                lanes[i].set(Some(c.call_ref(method, &b, &opts)));
            }
            let Some(fut) = lanes[i].as_mut().as_pin_mut() else {
                continue;
            };
            let mut cx = Context::from_waker(&wakers[i]);
            if let Poll::Ready(r) = fut.poll(&mut cx) {
                r.expect("call");
                if let (Some(l), Some(t0)) = (latencies.as_deref_mut(), started_at[i]) {
                    l.push(t0.elapsed().as_micros() as u32);
                }
                done += 1;
                lanes[i].set(None);
                ready.lock().push(i);
            }
        }
        batch.clear();
        loop {
            std::mem::swap(&mut batch, &mut *ready.lock());
            if !batch.is_empty() || done == n {
                break;
            }
            std::thread::park();
        }
    }
    t.elapsed()
}

fn run_set(load: &Load<'_>, mut latencies: Option<&mut Vec<u32>>) -> Duration {
    let &Load {
        c,
        method,
        body,
        depth,
        n,
    } = load;
    let b = vec![0u8; body];
    let opts = CallOptions::new();
    let timed = latencies.is_some();
    let call = || {
        let started = timed.then(Instant::now);
        let fut = c.call_ref(method, &b, &opts);
        async move { (started, fut.await) }
    };
    let mut set = CallSet::with_capacity(depth);
    let t = Instant::now();
    let mut started = 0u64;
    while started < n && set.len() < depth {
        started += 1;
        assert!(set.push(call()).is_ok(), "room");
    }
    while let Some((t0, r)) = set.next() {
        r.expect("call");
        if let (Some(l), Some(t0)) = (latencies.as_deref_mut(), t0) {
            l.push(t0.elapsed().as_micros() as u32);
        }
        if started < n {
            started += 1;
            assert!(set.push(call()).is_ok(), "room");
        }
    }
    t.elapsed()
}
