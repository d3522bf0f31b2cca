//! A bounded measurement (not a test): calls/s of 64 concurrent calls
//! * to a back service whose 1 ms of work is a deferred responder completed by a timer (direct);
//! * to a front service (2 workers) whose async handler awaits the back service;
//! * to the same front written as a blocking handler (2 workers), for contrast.
//!
//! Run: `cargo bench --features tokio --bench deferred` (each case ~1 s, direct and async alternating
//! in `DEFERRED_BENCH_ROUNDS` rounds (5); `DEFERRED_BENCH_SECS`;
//! `DEFERRED_BENCH_ONLY` runs one case).

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gracerpc::client::{CallOptions, Client};
use gracerpc::proto::Status;
use gracerpc::server::{Failure, OwnedRequest, Placement, Request, Responder, Server};

const CONCURRENCY: usize = 64;

struct Due(Instant, Responder);
impl PartialEq for Due {
    fn eq(&self, o: &Due) -> bool {
        self.0 == o.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Due) -> std::cmp::Ordering {
        o.0.cmp(&self.0)
    }
}

type TimerState = Arc<(Mutex<BinaryHeap<Due>>, Condvar)>;

fn timer() -> TimerState {
    let t: TimerState = Arc::default();
    let t2 = t.clone();
    std::thread::spawn(move || {
        let (heap, cv) = &*t2;
        let mut h = heap.lock().unwrap();
        loop {
            let now = Instant::now();
            while h.peek().is_some_and(|d| d.0 <= now) {
                if let Some(Due(_, r)) = h.pop() {
                    let _ = r.ok(b"v".to_vec());
                }
            }
            h = match h.peek().map(|d| d.0 - now) {
                Some(w) => cv.wait_timeout(h, w).unwrap().0,
                None => cv.wait(h).unwrap(),
            };
        }
    });
    t
}

/// Keeps CONCURRENCY calls in flight for `secs` on a load runtime; returns calls/s.
fn load(rt: &tokio::runtime::Runtime, client: &Client, method: &'static str, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, stop, done, failed) =
                (client.clone(), stop.clone(), done.clone(), failed.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let opts = CallOptions::new().deadline(Duration::from_secs(5));
                    match client.call_async(method, b"k".to_vec(), opts).await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let f = failed.load(Ordering::Relaxed);
    assert_eq!(f, 0, "{method}: {f} calls failed");
    n as f64 / elapsed
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list`
    }
    let secs: f64 = std::env::var("DEFERRED_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    // The front's runtime: 2 worker threads unless `DEFERRED_FRONT_THREADS` says otherwise.
    let front_threads: usize = std::env::var("DEFERRED_FRONT_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let front_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(front_threads)
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    let t = timer();
    let back = Server::builder()
        .workers(2)
        .deferred_handler_with(
            "back",
            move |_req: &Request<'_>, r: Responder| {
                let (heap, cv) = &*t;
                heap.lock()
                    .unwrap()
                    .push(Due(Instant::now() + Duration::from_millis(1), r));
                cv.notify_one();
            },
            Placement::Inline,
        )
        .spawn()?;
    let back_client = Client::builder().nodes([back.local_addr()]).build()?;
    let bc_async = back_client.clone();
    let bc_block = back_client.clone();
    let front = Server::builder()
        .workers(2)
        .async_handler(front_rt.handle(), "front", move |req: OwnedRequest| {
            let c = bc_async.clone();
            async move {
                let opts = CallOptions::from_request(&req.as_request());
                c.call_async("back", req.body.clone(), opts)
                    .await
                    .map(|r| r.body)
                    .map_err(|e| Failure::new(Status::APP_ERROR, e.to_string()))
            }
        })
        .handler("front.blocking", move |req: &Request<'_>| {
            bc_block
                .call_with("back", req.body, &CallOptions::from_request(req))
                .map(|r| r.body)
                .map_err(|e| Failure::new(Status::APP_ERROR, e.to_string()))
        })
        .spawn()?;
    let client = Client::builder()
        .nodes([back.local_addr(), front.local_addr()])
        .build()?;
    // Separate clients per target so a call goes where it is meant to.
    let direct = Client::builder().nodes([back.local_addr()]).build()?;
    let via_front = Client::builder().nodes([front.local_addr()]).build()?;
    drop(client);
    // Warm up.
    load(&load_rt, &direct, "back", 0.3);
    load(&load_rt, &via_front, "front", 0.3);
    // `DEFERRED_BENCH_ONLY=direct|async|blocking` runs one case (to profile it alone, e.g.
    // under `perf stat` or `strace -c -f`); the others print 0.
    let only = std::env::var("DEFERRED_BENCH_ONLY").unwrap_or_default();
    let run = |case: &str, client: &Client, method: &'static str| {
        if only.is_empty() || only == case {
            load(&load_rt, client, method, secs)
        } else {
            0.0
        }
    };
    // Direct and async alternate in rounds, so a change of machine load between them moves
    // both; the ratio printed is the median of the rounds' ratios.
    let rounds: usize = std::env::var("DEFERRED_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let (mut ds, mut as_, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let d = run("direct", &direct, "back");
        let a = run("async", &via_front, "front");
        ds.push(d);
        as_.push(a);
        ratios.push(if d > 0.0 { a / d } else { 0.0 });
    }
    let b = run("blocking", &via_front, "front.blocking");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    let all: f64 = ds.iter().chain(&as_).sum::<f64>() + b;
    let (d, a, r) = (median(&mut ds), median(&mut as_), median(&mut ratios));
    println!(
        "64 concurrent calls, back = 1 ms deferred (timer), front = 2 workers, {secs} s per case, \
         median of {rounds} alternating rounds:"
    );
    println!("  direct to back:          {d:>9.0} calls/s");
    println!(
        "  front async  -> back:    {a:>9.0} calls/s  ({r:.2} x direct, median of the rounds' ratios)"
    );
    println!(
        "  front blocking -> back:  {b:>9.0} calls/s  ({:.2} x direct)",
        b / d
    );
    println!("calls: {:.0}", all * secs);
    front.shutdown();
    let fr = front.wait()?;
    back.shutdown();
    let br = back.wait()?;
    println!("front drain: {fr}");
    println!("back drain: {br}");
    Ok(())
}
