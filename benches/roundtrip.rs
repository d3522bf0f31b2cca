//! Round trips through gracerpc against a raw-TCP baseline in the same group, so every figure
//! reads as a ratio to what this machine can do.
//!
//! * raw baseline: a minimal blocking `std::net` echo of the same frame (16-byte header + body)
//!   with TCP_NODELAY, written here.
//! * gracerpc: a `Server` with an inline `echo` handler and a `Client`; sequential calls use the
//!   blocking API, pipelined and fan-in calls are `Future`s driven from one thread per caller
//!   (a tiny executor below), so keeping 64 calls in flight costs no thread per call.
//!
//! After criterion's groups, an interleaved pass runs raw and gracerpc alternately (5 rounds
//! each) and prints the medians and the ratio gracerpc / raw: the machine's speed drifts between
//! runs, so only ratios taken side by side mean anything.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use gracerpc::client::{CallFuture, CallOptions, Client};
use gracerpc::server::{Request, Server, ServerHandle};
use parking_lot::Mutex;

const HEADER: usize = 16;

// ---------------------------------------------------------------- raw TCP baseline

/// A blocking echo server: reads whole frames (16-byte header with a big-endian body length at
/// bytes 4..8) and writes back everything it has read, one thread per connection.
fn raw_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn frame(body: usize) -> Vec<u8> {
    let mut f = vec![0u8; HEADER + body];
    f[0] = 2;
    f[4..8].copy_from_slice(&(body as u32).to_be_bytes());
    f
}

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// `n` blocking ping-pongs of one frame; returns the elapsed time.
fn raw_sequential(s: &mut TcpStream, body: usize, n: u64) -> Duration {
    let f = frame(body);
    let mut back = vec![0u8; f.len()];
    let t = Instant::now();
    for _ in 0..n {
        s.write_all(&f).expect("write");
        s.read_exact(&mut back).expect("read");
    }
    t.elapsed()
}

/// `n` frames with `depth` in flight on one connection: a writer thread writes in batches, the
/// reader counts frames back.
fn raw_pipelined(addr: SocketAddr, body: usize, depth: usize, n: u64) -> Duration {
    let mut s = raw_connect(addr);
    let mut w = s.try_clone().expect("clone");
    let f = frame(body);
    let credit = Arc::new((
        parking_lot::Mutex::new(depth as u64),
        parking_lot::Condvar::new(),
    ));
    let c2 = credit.clone();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut batch = Vec::with_capacity(f.len() * depth);
        while sent < n {
            let k = {
                let (m, cv) = &*c2;
                let mut avail = m.lock();
                while *avail == 0 {
                    cv.wait(&mut avail);
                }
                let k = (*avail).min(n - sent);
                *avail -= k;
                k
            };
            batch.clear();
            for _ in 0..k {
                batch.extend_from_slice(&f);
            }
            w.write_all(&batch).expect("write");
            sent += k;
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let frame_len = (HEADER + body) as u64;
    let mut got_bytes = 0u64;
    while got_bytes < n * frame_len {
        let r = s.read(&mut buf).expect("read") as u64;
        let before = got_bytes / frame_len;
        got_bytes += r;
        let done = got_bytes / frame_len - before;
        if done > 0 {
            let (m, cv) = &*credit;
            *m.lock() += done;
            cv.notify_one();
        }
    }
    let elapsed = t.elapsed();
    writer.join().expect("writer");
    elapsed
}

/// `threads` connections × `depth` in flight each, `n` frames in all.
fn raw_fan_in(addr: SocketAddr, body: usize, threads: usize, depth: usize, n: u64) -> Duration {
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || raw_pipelined(addr, body, depth, n / threads as u64)))
        .collect();
    for h in hs {
        h.join().expect("join");
    }
    t.elapsed()
}

// ---------------------------------------------------------------- gracerpc

fn rpc_server() -> ServerHandle {
    Server::builder()
        .workers(1)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .handler("echo_worker", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("server")
}

fn rpc_client(addr: SocketAddr) -> Client {
    let c = Client::builder().nodes([addr]).build().expect("client");
    assert!(c.wait_ready(addr, Duration::from_secs(5)), "node not ready");
    c
}

fn rpc_sequential(c: &Client, body: usize, n: u64) -> Duration {
    rpc_sequential_to(c, "echo", body, n)
}

fn rpc_sequential_to(c: &Client, method: &str, body: usize, n: u64) -> Duration {
    let b = vec![0u8; body];
    let t = Instant::now();
    for _ in 0..n {
        c.call(method, &b).expect("call");
    }
    t.elapsed()
}

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

/// `n` calls with `depth` futures in flight, all polled from the calling thread.
fn rpc_pipelined(c: &Client, body: usize, depth: usize, n: u64) -> Duration {
    rpc_pipelined_to(c, "echo", body, depth, n)
}

fn rpc_pipelined_to(c: &Client, method: &str, body: usize, depth: usize, n: u64) -> Duration {
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
    let mut lanes: Vec<Option<Pin<Box<CallFuture<'_>>>>> = (0..depth).map(|_| None).collect();
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
                lanes[i] = Some(Box::pin(c.call_ref(method, &b, &opts)));
            }
            let Some(fut) = lanes[i].as_mut() else {
                continue;
            };
            let mut cx = Context::from_waker(&wakers[i]);
            if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                r.expect("call");
                done += 1;
                lanes[i] = None;
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

fn rpc_fan_in(c: &Client, body: usize, threads: usize, depth: usize, n: u64) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| rpc_pipelined(c, body, depth, n / threads as u64));
        }
    });
    t.elapsed()
}

// ---------------------------------------------------------------- criterion groups

struct Fixture {
    raw: SocketAddr,
    _server: ServerHandle,
    client: Client,
}

fn fixture() -> Fixture {
    let server = rpc_server();
    let client = rpc_client(server.local_addr());
    Fixture {
        raw: raw_server(),
        _server: server,
        client,
    }
}

fn bench_sequential(c: &mut Criterion) {
    let f = fixture();
    for body in [32usize, 4096] {
        let mut g = c.benchmark_group(format!("sequential_{body}B"));
        g.throughput(Throughput::Elements(1));
        let mut raw = raw_connect(f.raw);
        g.bench_function(BenchmarkId::new("raw_tcp", body), |b| {
            b.iter_custom(|n| raw_sequential(&mut raw, body, n))
        });
        g.bench_function(BenchmarkId::new("gracerpc", body), |b| {
            b.iter_custom(|n| rpc_sequential(&f.client, body, n))
        });
        g.finish();
    }
}

fn bench_pipelined(c: &mut Criterion) {
    let f = fixture();
    const BATCH: u64 = 2000;
    for body in [32usize, 4096] {
        let mut g = c.benchmark_group(format!("pipelined_64_{body}B"));
        g.throughput(Throughput::Elements(BATCH));
        g.bench_function(BenchmarkId::new("raw_tcp", body), |b| {
            b.iter_custom(|n| (0..n).map(|_| raw_pipelined(f.raw, body, 64, BATCH)).sum())
        });
        g.bench_function(BenchmarkId::new("gracerpc", body), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| rpc_pipelined(&f.client, body, 64, BATCH))
                    .sum()
            })
        });
        g.finish();
    }
}

fn bench_fan_in(c: &mut Criterion) {
    let f = fixture();
    const BATCH: u64 = 4000;
    let mut g = c.benchmark_group("fan_in_4x16_32B");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("raw_tcp", |b| {
        b.iter_custom(|n| (0..n).map(|_| raw_fan_in(f.raw, 32, 4, 16, BATCH)).sum())
    });
    g.bench_function("gracerpc", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| rpc_fan_in(&f.client, 32, 4, 16, BATCH))
                .sum()
        })
    });
    g.finish();
}

criterion_group! {
    name = groups;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench_sequential, bench_pipelined, bench_fan_in
}

// ---------------------------------------------------------------- interleaved ratios

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Calls per second of `run(n)` measured `rounds` times, raw and gracerpc alternating.
fn ratio(
    name: &str,
    rounds: usize,
    n: u64,
    mut raw: impl FnMut(u64) -> Duration,
    mut ours: impl FnMut(u64) -> Duration,
) {
    let (mut r, mut o) = (Vec::new(), Vec::new());
    raw(n / 10);
    ours(n / 10);
    for _ in 0..rounds {
        r.push(n as f64 / raw(n).as_secs_f64());
        o.push(n as f64 / ours(n).as_secs_f64());
    }
    let (rm, om) = (median(r), median(o));
    println!(
        "{name:<24} raw {:>9.0} calls/s ({:>6.1} us)   gracerpc {:>9.0} calls/s ({:>6.1} us)   ratio {:.2}",
        rm,
        1e6 / rm,
        om,
        1e6 / om,
        om / rm
    );
}

fn interleaved() {
    let f = fixture();
    let rounds = 5;
    println!("\ninterleaved medians of {rounds} rounds (gracerpc / raw, higher is better):");
    for body in [32usize, 4096] {
        let mut raw = raw_connect(f.raw);
        ratio(
            &format!("sequential {body}B"),
            rounds,
            20_000,
            |n| raw_sequential(&mut raw, body, n),
            |n| rpc_sequential(&f.client, body, n),
        );
        ratio(
            &format!("pipelined 64 {body}B"),
            rounds,
            50_000,
            |n| raw_pipelined(f.raw, body, 64, n),
            |n| rpc_pipelined(&f.client, body, 64, n),
        );
    }
    ratio(
        "fan-in 4x16 32B",
        rounds,
        50_000,
        |n| raw_fan_in(f.raw, 32, 4, 16, n),
        |n| rpc_fan_in(&f.client, 32, 4, 16, n),
    );
    // The same with the handler on a worker thread instead of inline.
    let mut raw = raw_connect(f.raw);
    ratio(
        "sequential 32B worker",
        rounds,
        20_000,
        |n| raw_sequential(&mut raw, 32, n),
        |n| rpc_sequential_to(&f.client, "echo_worker", 32, n),
    );
    ratio(
        "pipelined 64 32B worker",
        rounds,
        50_000,
        |n| raw_pipelined(f.raw, 32, 64, n),
        |n| rpc_pipelined_to(&f.client, "echo_worker", 32, 64, n),
    );
}

/// `GRACERPC_PROFILE=sequential|pipelined|fanin|sequential_worker|pipelined_worker`: run only gracerpc's side of one case, for a
/// profiler (callgrind, strace -c) to look at.
fn profile(case: &str) {
    let f = fixture();
    let n = 100_000;
    let t = match case {
        "sequential" => rpc_sequential(&f.client, 32, n / 5) * 5,
        "pipelined" => rpc_pipelined(&f.client, 32, 64, n),
        "sequential_worker" => rpc_sequential_to(&f.client, "echo_worker", 32, n / 5) * 5,
        "pipelined_worker" => rpc_pipelined_to(&f.client, "echo_worker", 32, 64, n),
        _ => rpc_fan_in(&f.client, 32, 4, 16, n),
    };
    println!(
        "{case}: {:.1} us per call",
        t.as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    if let Ok(case) = std::env::var("GRACERPC_PROFILE") {
        return profile(&case);
    }
    let quick = std::env::args().any(|a| a == "--ratios-only");
    if !quick {
        groups();
        Criterion::default().configure_from_args().final_summary();
    }
    interleaved();
}
