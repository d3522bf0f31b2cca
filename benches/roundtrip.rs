//! Round trips through gracerpc against a raw-TCP baseline in the same group, so every figure
//! reads as a ratio to what this machine can do.
//!
//! * raw baseline: a minimal blocking `std::net` echo of the same frame (16-byte header + body)
//!   with TCP_NODELAY, written here.
//! * gracerpc: a `Server` with an inline `echo` handler and a `Client`; sequential calls use the
//!   blocking API, pipelined and fan-in calls are `Future`s driven from one thread per caller
//!   (a tiny executor below), so keeping 64 calls in flight costs no thread per call.
//!
//! * raw + codec: the same raw TCP carrying gracerpc's own frames, encoded and decoded on both
//!   sides (REQUEST in, RESPONSE out; no HELLO, no state): what the framework adds beyond its
//!   wire format is the distance from this column to gracerpc's.
//!
//! After criterion's groups, an interleaved pass runs raw, raw + codec and gracerpc alternately
//! (5 rounds each) and prints the medians and the ratios to raw: the machine's speed drifts
//! between runs, so only ratios taken side by side mean anything. With each figure it prints
//! what a call cost each side — CPU time and context switches per call of the server's threads
//! and of everything else in the process (the caller and the load generator), from
//! `/proc/self/task` and `getrusage` — so the cost shows even where the machine is the limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/pipeline.rs"]
mod pipeline;
use pipeline::Executor;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use gracerpc::client::{CallOptions, Client};
use gracerpc::proto::frame::{Metadata, Response};
use gracerpc::proto::{Frame, Status, decode};
use gracerpc::server::{Request, Server, ServerHandle};

const HEADER: usize = 16;

// ---------------------------------------------------------------- raw TCP baseline

/// A blocking echo server: reads whole frames (16-byte header with a big-endian body length at
/// bytes 4..8) and writes back everything it has read, one thread per connection.
fn raw_server() -> SocketAddr {
    serve_raw(|mut s| {
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
    })
}

/// Listens on loopback and runs `conn` on a thread per connection, each named `raw-srv` (so
/// its cost counts as the server's) and accounted for when it ends.
fn serve_raw(conn: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let _ = s.set_nodelay(true);
            let _ = std::thread::Builder::new()
                .name("raw-srv".into())
                .spawn(move || {
                    conn(s);
                    cost::thread_ends();
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
    let f = frame(body);
    let frame_len = f.len() as u64;
    let mut got_bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    credit_pipeline(
        addr,
        depth,
        n,
        move |_, k, batch| {
            for _ in 0..k {
                batch.extend_from_slice(&f);
            }
        },
        move |s| {
            let r = s.read(&mut buf).expect("read") as u64;
            let before = got_bytes / frame_len;
            got_bytes += r;
            got_bytes / frame_len - before
        },
    )
}

/// [`raw_pipelined`], and each frame's latency in µs: its body carries the time it was written
/// (nanoseconds since a base instant), read back from the echo.
fn raw_pipelined_latencies(
    addr: SocketAddr,
    body: usize,
    depth: usize,
    n: u64,
) -> (Duration, Vec<u32>) {
    assert!(body >= 8, "the body carries an 8-byte stamp");
    let f = frame(body);
    let frame_len = f.len();
    let base = Instant::now();
    let mut lat = Vec::with_capacity(n as usize);
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::with_capacity(2 * 64 * 1024);
    let stamp_at = HEADER..HEADER + 8;
    let t = credit_pipeline(
        addr,
        depth,
        n,
        move |_, k, batch| {
            let now = (base.elapsed().as_nanos() as u64).to_be_bytes();
            for _ in 0..k {
                let at = batch.len();
                batch.extend_from_slice(&f);
                batch[at + HEADER..at + HEADER + 8].copy_from_slice(&now);
            }
        },
        |s| {
            let r = s.read(&mut buf).expect("read");
            carry.extend_from_slice(&buf[..r]);
            let now = base.elapsed().as_nanos() as u64;
            let whole = carry.len() / frame_len;
            for frame in carry.chunks_exact(frame_len) {
                let mut stamp = [0u8; 8];
                stamp.copy_from_slice(&frame[stamp_at.clone()]);
                lat.push((now.saturating_sub(u64::from_be_bytes(stamp)) / 1000) as u32);
            }
            carry.drain(..whole * frame_len);
            whole as u64
        },
    );
    (t, lat)
}

/// `n` calls with `depth` in flight on one new connection: a writer thread writes as many
/// (`write(first id, count, batch)`) as there is credit for in one `write`, the calling thread
/// reads (`read` returns how many answers completed) and gives the credit back.
fn credit_pipeline(
    addr: SocketAddr,
    depth: usize,
    n: u64,
    mut write: impl FnMut(u64, u64, &mut Vec<u8>) + Send + 'static,
    mut read: impl FnMut(&mut TcpStream) -> u64,
) -> Duration {
    let mut s = raw_connect(addr);
    let mut w = s.try_clone().expect("clone");
    let credit = Arc::new((
        parking_lot::Mutex::new(depth as u64),
        parking_lot::Condvar::new(),
    ));
    let c2 = credit.clone();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let (mut sent, mut batch) = (0u64, Vec::new());
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
            write(sent + 1, k, &mut batch);
            w.write_all(&batch).expect("write");
            sent += k;
        }
    });
    let mut done = 0;
    while done < n {
        let got = read(&mut s);
        if got > 0 {
            done += got;
            let (m, cv) = &*credit;
            *m.lock() += got;
            cv.notify_one();
        }
    }
    let elapsed = t.elapsed();
    writer.join().expect("writer");
    elapsed
}

/// `threads` connections, each running `one(n / threads)` at once; the time for all.
fn fan_in(
    threads: usize,
    n: u64,
    one: impl Fn(u64) -> Duration + Copy + Send + 'static,
) -> Duration {
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || one(n / threads as u64)))
        .collect();
    for h in hs {
        h.join().expect("join");
    }
    t.elapsed()
}

/// `threads` connections × `depth` in flight each, `n` frames in all.
fn raw_fan_in(addr: SocketAddr, body: usize, threads: usize, depth: usize, n: u64) -> Duration {
    fan_in(threads, n, move |k| raw_pipelined(addr, body, depth, k))
}

// ---------------------------------------------------------------- raw TCP + gracerpc's codec

const MAX_BODY: u32 = 1 << 24;

/// Answers every REQUEST frame with a RESPONSE frame (status OK, the request's body), decoded
/// and encoded by gracerpc's own codec, as they arrive.
fn raw_codec_server() -> SocketAddr {
    serve_raw(|mut s| {
        let (mut input, mut out) = (Vec::with_capacity(1 << 16), Vec::with_capacity(1 << 16));
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            input.extend_from_slice(&buf[..n]);
            let mut used = 0;
            while let Ok(Some((f, k))) = decode(&input[used..], MAX_BODY) {
                if let Frame::Request(r) = f {
                    let answer = Response {
                        id: r.id,
                        status: Status::OK,
                        body: r.body,
                    };
                    Frame::Response(answer).encode(&mut out);
                }
                used += k;
            }
            input.drain(..used);
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    })
}

fn encode_request(id: u64, body: &[u8], out: &mut Vec<u8>) {
    Frame::Request(gracerpc::proto::frame::Request {
        id,
        deadline_us: 5_000_000,
        idempotent: false,
        method: "echo",
        metadata: Metadata::EMPTY,
        body,
    })
    .encode(out);
}

/// Reads from `s` into `input` until it holds at least one whole frame; decodes every whole
/// RESPONSE in it and returns how many, keeping a partial frame for the next read.
fn read_responses(s: &mut TcpStream, input: &mut Vec<u8>, buf: &mut [u8]) -> u64 {
    loop {
        let (mut used, mut got) = (0, 0);
        while let Ok(Some((f, k))) = decode(&input[used..], MAX_BODY) {
            assert!(matches!(f, Frame::Response(_)), "not a RESPONSE: {f:?}");
            got += 1;
            used += k;
        }
        input.drain(..used);
        if got > 0 {
            return got;
        }
        let n = s.read(buf).expect("read");
        assert!(n > 0, "the codec server closed");
        input.extend_from_slice(&buf[..n]);
    }
}

/// `n` blocking calls, one at a time, over raw TCP with gracerpc's frames.
fn codec_sequential(s: &mut TcpStream, body: usize, n: u64) -> Duration {
    let b = vec![0u8; body];
    let (mut out, mut input, mut buf) = (Vec::new(), Vec::new(), vec![0u8; 1 << 16]);
    let t = Instant::now();
    for id in 1..=n {
        out.clear();
        encode_request(id, &b, &mut out);
        s.write_all(&out).expect("write");
        read_responses(s, &mut input, &mut buf);
    }
    t.elapsed()
}

/// `n` calls with `depth` in flight on one connection over raw TCP with gracerpc's frames (the
/// shape of `raw_pipelined`).
fn codec_pipelined(addr: SocketAddr, body: usize, depth: usize, n: u64) -> Duration {
    let b = vec![0u8; body];
    let (mut input, mut buf) = (Vec::with_capacity(1 << 16), vec![0u8; 1 << 16]);
    credit_pipeline(
        addr,
        depth,
        n,
        move |first, k, batch| {
            for id in first..first + k {
                encode_request(id, &b, batch);
            }
        },
        move |s| read_responses(s, &mut input, &mut buf),
    )
}

fn codec_fan_in(addr: SocketAddr, body: usize, threads: usize, depth: usize, n: u64) -> Duration {
    fan_in(threads, n, move |k| codec_pipelined(addr, body, depth, k))
}

// ---------------------------------------------------------------- what a call costs each side

/// CPU time and context switches of the process, split into the server's side (threads named
/// `gracerpc-server`, `gracerpc-worker-*` and the baselines' `raw-srv`) and the rest (the
/// caller: its I/O thread, the threads that call, the load generator).
mod cost {
    use std::collections::HashSet;

    use parking_lot::Mutex;

    /// CPU ns and context switches of the `raw-srv` threads that ended, and their ids (listed
    /// in /proc until they are gone, and not to be counted twice).
    static ENDED: Mutex<(u64, u64, Option<HashSet<String>>)> = Mutex::new((0, 0, None));

    /// A reading of both sides' counters.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Sides {
        server_ns: u64,
        server_cs: u64,
        all_ns: u64,
        all_cs: u64,
    }

    /// Per call, between two readings: server µs, server context switches, caller µs, caller
    /// context switches.
    pub type PerCall = [f64; 4];

    impl Sides {
        pub fn per_call(self, later: Sides, calls: u64) -> PerCall {
            let c = calls.max(1) as f64;
            let server_ns = later.server_ns.saturating_sub(self.server_ns);
            let server_cs = later.server_cs.saturating_sub(self.server_cs);
            let all_ns = later.all_ns.saturating_sub(self.all_ns);
            let all_cs = later.all_cs.saturating_sub(self.all_cs);
            [
                server_ns as f64 / c / 1e3,
                server_cs as f64 / c,
                all_ns.saturating_sub(server_ns) as f64 / c / 1e3,
                all_cs.saturating_sub(server_cs) as f64 / c,
            ]
        }
    }

    fn is_server(name: &str) -> bool {
        name == "raw-srv" || name == "gracerpc-server" || name.starts_with("gracerpc-worker")
    }

    /// (CPU ns, context switches) of one thread, from its /proc entry.
    fn thread(dir: &str) -> Option<(u64, u64)> {
        let sched = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
        let ns = sched.split_whitespace().next()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let cs = status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt") || l.starts_with("nonvoluntary_ctxt"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        Some((ns, cs))
    }

    /// A `raw-srv` thread ends: its totals move to `ENDED`, atomically with respect to `now`.
    pub fn thread_ends() {
        let mut ended = ENDED.lock();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() }.to_string();
        if let Some((ns, cs)) = thread("/proc/thread-self") {
            ended.0 += ns;
            ended.1 += cs;
        }
        ended.2.get_or_insert_with(HashSet::new).insert(tid);
    }

    /// Every live thread's CPU µs and context switches per call, by name.
    pub fn print_threads(calls: u64) {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for e in dir.flatten() {
            let path = e.path().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(format!("{path}/comm")).unwrap_or_default();
            let status = std::fs::read_to_string(format!("{path}/status")).unwrap_or_default();
            let field = |key: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if let Some((ns, _)) = thread(&path) {
                let per = |v: u64| v as f64 / calls as f64;
                println!(
                    "  {:<20} {:>7.3} us {:>6.3} voluntary + {:>6.3} involuntary context switches per call",
                    name.trim_end(),
                    per(ns) / 1e3,
                    per(field("voluntary_ctxt_switches")),
                    per(field("nonvoluntary_ctxt_switches"))
                );
            }
        }
    }

    pub fn now() -> Sides {
        let ended = ENDED.lock();
        let (mut server_ns, mut server_cs) = (ended.0, ended.1);
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for e in dir.flatten() {
                let tid = e.file_name().to_string_lossy().into_owned();
                if ended.2.as_ref().is_some_and(|s| s.contains(&tid)) {
                    continue;
                }
                let path = format!("/proc/self/task/{tid}");
                let name = std::fs::read_to_string(format!("{path}/comm")).unwrap_or_default();
                if !is_server(name.trim_end()) {
                    continue;
                }
                if let Some((ns, cs)) = thread(&path) {
                    server_ns += ns;
                    server_cs += cs;
                }
            }
        }
        drop(ended);
        // SAFETY: getrusage only fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        Sides {
            server_ns,
            server_cs,
            all_ns: ns(ru.ru_utime) + ns(ru.ru_stime),
            all_cs: (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
        }
    }
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

/// `n` calls one at a time, each a `Future` awaited by itself (`block_on`): the path of an
/// async caller that has one call outstanding.
fn rpc_sequential_future(c: &Client, body: usize, n: u64) -> Duration {
    let b = vec![0u8; body];
    let opts = CallOptions::new();
    let t = Instant::now();
    for _ in 0..n {
        gracerpc::client::block_on(c.call_ref("echo", &b, &opts)).expect("call");
    }
    t.elapsed()
}

/// `n` calls with `depth` futures in flight, all polled from the calling thread.
fn rpc_pipelined(c: &Client, body: usize, depth: usize, n: u64) -> Duration {
    pipeline::pipelined(c, Executor::Foreign, "echo", body, depth, n)
}

fn rpc_pipelined_to(c: &Client, method: &str, body: usize, depth: usize, n: u64) -> Duration {
    pipeline::pipelined(c, Executor::Foreign, method, body, depth, n)
}

/// [`rpc_pipelined_to`] on gracerpc's own executor, a [`CallSet`](gracerpc::client::CallSet).
fn rpc_pipelined_set(c: &Client, method: &str, body: usize, depth: usize, n: u64) -> Duration {
    pipeline::pipelined(c, Executor::Set, method, body, depth, n)
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

/// [`rpc_fan_in`] with each thread's calls on a [`CallSet`](gracerpc::client::CallSet).
fn rpc_fan_in_set(c: &Client, body: usize, threads: usize, depth: usize, n: u64) -> Duration {
    fan_in_sets(&vec![c; threads], body, depth, n)
}

/// [`rpc_fan_in_set`] with a client (so a connection) per thread, as raw's fan-in has.
fn rpc_fan_in_clients(
    addr: SocketAddr,
    body: usize,
    threads: usize,
    depth: usize,
    n: u64,
) -> Duration {
    let clients: Vec<Client> = (0..threads).map(|_| rpc_client(addr)).collect();
    fan_in_sets(&clients.iter().collect::<Vec<_>>(), body, depth, n)
}

/// A thread per entry of `clients`, each keeping `depth` calls in flight on a `CallSet`, `n`
/// calls in all; the time for all.
fn fan_in_sets(clients: &[&Client], body: usize, depth: usize, n: u64) -> Duration {
    let each = n / clients.len() as u64;
    let t = Instant::now();
    std::thread::scope(|s| {
        for &c in clients {
            s.spawn(move || rpc_pipelined_set(c, "echo", body, depth, each));
        }
    });
    t.elapsed()
}

/// [`rpc_fan_in_set`] on one client of a connection per thread
/// (`ClientBuilder::connections_per_node`): each thread keeps to its own.
fn rpc_fan_in_lanes(
    addr: SocketAddr,
    body: usize,
    threads: usize,
    depth: usize,
    n: u64,
) -> Duration {
    let c = Client::builder()
        .nodes([addr])
        .connections_per_node(threads)
        .build()
        .expect("client");
    let end = Instant::now() + Duration::from_secs(5);
    while c.connections(addr) < threads {
        assert!(Instant::now() < end, "{threads} connections not ready");
        std::thread::sleep(Duration::from_millis(1));
    }
    rpc_fan_in_set(&c, body, threads, depth, n)
}

// ---------------------------------------------------------------- criterion groups

struct Fixture {
    raw: SocketAddr,
    codec: SocketAddr,
    _server: ServerHandle,
    client: Client,
}

fn fixture() -> Fixture {
    let server = rpc_server();
    let client = rpc_client(server.local_addr());
    Fixture {
        raw: raw_server(),
        codec: raw_codec_server(),
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

/// Medians over rounds of one contender: calls/s and what a call cost each side.
#[derive(Default)]
struct Runs {
    rates: Vec<f64>,
    costs: Vec<cost::PerCall>,
}

impl Runs {
    fn run(&mut self, n: u64, f: &mut impl FnMut(u64) -> Duration) {
        let before = cost::now();
        let took = f(n);
        self.costs.push(before.per_call(cost::now(), n));
        self.rates.push(n as f64 / took.as_secs_f64());
    }

    /// Median calls/s, its spread (min–max), and the median of each cost column.
    fn summary(&self) -> (f64, f64, f64, cost::PerCall) {
        let lo = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.rates.iter().copied().fold(0.0, f64::max);
        let col = |i: usize| median(self.costs.iter().map(|c| c[i]).collect());
        (
            median(self.rates.clone()),
            lo,
            hi,
            [col(0), col(1), col(2), col(3)],
        )
    }
}

/// One side of a case: its label and what runs `n` of its calls.
type Contender<'a> = (&'static str, &'a mut dyn FnMut(u64) -> Duration);

/// Runs `n` calls of each contender, alternating, `rounds` times; prints per contender the
/// median calls/s with its spread, the ratio to the first (raw), and per call each side's CPU
/// µs and context switches. Returns each contender's calls/s per round.
fn ratio(name: &str, rounds: usize, n: u64, mut contenders: Vec<Contender<'_>>) -> Vec<Vec<f64>> {
    let mut runs: Vec<Runs> = contenders.iter().map(|_| Runs::default()).collect();
    for (_, c) in contenders.iter_mut() {
        c(n / 10); // warm-up
    }
    for _ in 0..rounds {
        for ((_, c), r) in contenders.iter_mut().zip(runs.iter_mut()) {
            r.run(n, c);
        }
    }
    let raw = runs[0].summary().0;
    println!("{name}");
    for ((label, _), r) in contenders.iter().zip(&runs) {
        let (rate, lo, hi, [s_us, s_cs, c_us, c_cs]) = r.summary();
        println!(
            "  {label:<14} {rate:>9.0} calls/s ({lo:>7.0}–{hi:<7.0}) ratio {:.2}   server {s_us:>5.2} us {s_cs:>5.2} cs   caller {c_us:>5.2} us {c_cs:>5.2} cs  per call",
            rate / raw
        );
    }
    runs.into_iter().map(|r| r.rates).collect()
}

/// `a` against `b` round by round (each pair ran back to back): the median ratio and its
/// spread.
fn paired(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(0.0, f64::max);
    (median(r), lo, hi)
}

/// The 99th percentile of `v` (µs).
fn p99(mut v: Vec<u32>) -> f64 {
    v.sort_unstable();
    f64::from(v[(v.len() * 99 / 100).min(v.len().saturating_sub(1))])
}

/// p99 latency at 64 in flight, 32 B: raw against gracerpc, alternating, median of `rounds`
/// (issue 17's target: gracerpc's p99 ≤ 4 × raw's). Separate from the throughput pass: timing
/// each call costs both contenders two clock readings per call.
fn latencies(f: &Fixture, rounds: usize) {
    let n = 50_000;
    let load = pipeline::Load {
        c: &f.client,
        method: "echo",
        body: 32,
        depth: 64,
        n,
    };
    let (mut raw, mut rpc, mut set) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(p99(raw_pipelined_latencies(f.raw, 32, 64, n).1));
        set.push(p99(load.latencies(Executor::Set).1));
        rpc.push(p99(load.latencies(Executor::Foreign).1));
    }
    let (raw, rpc, set) = (median(raw), median(rpc), median(set));
    println!(
        "p99 latency, 64 in flight 32B (median of {rounds} rounds)\n  raw {raw:>6.0} us   gracerpc set {set:>6.0} us ({:.1} x raw)   gracerpc {rpc:>6.0} us ({:.1} x raw; target <= 4)",
        set / raw,
        rpc / raw
    );
}

fn interleaved() {
    let f = fixture();
    let rounds = 5;
    println!(
        "\ninterleaved medians of {rounds} rounds (calls/s with min–max; ratio to raw; per call, \
         CPU time and context switches of the server's threads and of the caller's):"
    );
    for body in [32usize, 4096] {
        let mut raw = raw_connect(f.raw);
        let mut codec = raw_connect(f.codec);
        ratio(
            &format!("sequential {body}B"),
            rounds,
            20_000,
            vec![
                ("raw", &mut |n| raw_sequential(&mut raw, body, n)),
                ("raw+codec", &mut |n| codec_sequential(&mut codec, body, n)),
                ("gracerpc", &mut |n| rpc_sequential(&f.client, body, n)),
            ],
        );
        if body == 32 {
            ratio(
                "sequential 32B future",
                rounds,
                20_000,
                vec![
                    ("raw", &mut |n| raw_sequential(&mut raw, body, n)),
                    ("raw+codec", &mut |n| codec_sequential(&mut codec, body, n)),
                    ("gracerpc", &mut |n| {
                        rpc_sequential_future(&f.client, body, n)
                    }),
                ],
            );
        }
        ratio(
            &format!("pipelined 64 {body}B"),
            rounds,
            50_000,
            vec![
                ("raw", &mut |n| raw_pipelined(f.raw, body, 64, n)),
                ("raw+codec", &mut |n| codec_pipelined(f.codec, body, 64, n)),
                ("gracerpc set", &mut |n| {
                    rpc_pipelined_set(&f.client, "echo", body, 64, n)
                }),
                ("gracerpc", &mut |n| rpc_pipelined(&f.client, body, 64, n)),
            ],
        );
    }
    latencies(&f, rounds);
    let server = f._server.local_addr();
    ratio(
        "fan-in 4x16 32B",
        rounds,
        50_000,
        vec![
            ("raw", &mut |n| raw_fan_in(f.raw, 32, 4, 16, n)),
            ("raw+codec", &mut |n| codec_fan_in(f.codec, 32, 4, 16, n)),
            ("gracerpc set", &mut |n| {
                rpc_fan_in_set(&f.client, 32, 4, 16, n)
            }),
            ("gracerpc", &mut |n| rpc_fan_in(&f.client, 32, 4, 16, n)),
            ("4 clients set", &mut |n| {
                rpc_fan_in_clients(server, 32, 4, 16, n)
            }),
            ("4 lanes set", &mut |n| {
                rpc_fan_in_lanes(server, 32, 4, 16, n)
            }),
        ],
    );
    // The same with the handler on a worker thread instead of inline.
    let mut raw = raw_connect(f.raw);
    let mut codec = raw_connect(f.codec);
    ratio(
        "sequential 32B worker",
        rounds,
        20_000,
        vec![
            ("raw", &mut |n| raw_sequential(&mut raw, 32, n)),
            ("raw+codec", &mut |n| codec_sequential(&mut codec, 32, n)),
            ("gracerpc", &mut |n| {
                rpc_sequential_to(&f.client, "echo_worker", 32, n)
            }),
        ],
    );
    // Inline and worker side by side in the same rounds: issue 17's "worker within 1.5 × of
    // inline" is their ratio, round by round, not a ratio of two groups run at different times.
    let rates = ratio(
        "pipelined 64 32B worker",
        rounds,
        50_000,
        vec![
            ("raw", &mut |n| raw_pipelined(f.raw, 32, 64, n)),
            ("raw+codec", &mut |n| codec_pipelined(f.codec, 32, 64, n)),
            ("inline set", &mut |n| {
                rpc_pipelined_set(&f.client, "echo", 32, 64, n)
            }),
            ("worker set", &mut |n| {
                rpc_pipelined_set(&f.client, "echo_worker", 32, 64, n)
            }),
            ("inline", &mut |n| rpc_pipelined(&f.client, 32, 64, n)),
            ("worker", &mut |n| {
                rpc_pipelined_to(&f.client, "echo_worker", 32, 64, n)
            }),
        ],
    );
    let (set, set_lo, set_hi) = paired(&rates[3], &rates[2]);
    let (fut, fut_lo, fut_hi) = paired(&rates[5], &rates[4]);
    println!(
        "  worker / inline, round by round (target >= 0.67): set {set:.2} ({set_lo:.2}–{set_hi:.2})   futures {fut:.2} ({fut_lo:.2}–{fut_hi:.2})"
    );
}

/// `GRACERPC_PROFILE=<case>`: run only one side of one case, for a profiler (callgrind,
/// `strace -c`, `scripts/syscalls_per_call.sh`) to look at. Cases: `sequential`,
/// `sequential_future`, `pipelined`, `pipelined_set`, `fanin`, `fanin_set`, `fanin_clients`,
/// `fanin_lanes`,
/// `sequential_worker`, `pipelined_worker`, `pipelined_worker_set` (gracerpc), and `raw_sequential`, `raw_pipelined`, `raw_fanin` (the raw baseline).
fn profile(case: &str) {
    let f = fixture();
    // Sequential cases make fewer calls: each takes a round trip.
    let (n, seq) = (100_000, 20_000);
    let (t, calls) = match case {
        "sequential" => (rpc_sequential(&f.client, 32, seq), seq),
        "pipelined" => (rpc_pipelined(&f.client, 32, 64, n), n),
        "pipelined_set" => (rpc_pipelined_set(&f.client, "echo", 32, 64, n), n),
        "pipelined_worker_set" => (rpc_pipelined_set(&f.client, "echo_worker", 32, 64, n), n),
        "sequential_worker" => (rpc_sequential_to(&f.client, "echo_worker", 32, seq), seq),
        "sequential_future" => (rpc_sequential_future(&f.client, 32, seq), seq),
        "pipelined_worker" => (rpc_pipelined_to(&f.client, "echo_worker", 32, 64, n), n),
        "fanin" => (rpc_fan_in(&f.client, 32, 4, 16, n), n),
        "fanin_set" => (rpc_fan_in_set(&f.client, 32, 4, 16, n), n),
        "fanin_clients" => (rpc_fan_in_clients(f._server.local_addr(), 32, 4, 16, n), n),
        "fanin_lanes" => (rpc_fan_in_lanes(f._server.local_addr(), 32, 4, 16, n), n),
        "raw_sequential" => (raw_sequential(&mut raw_connect(f.raw), 32, seq), seq),
        "raw_pipelined" => (raw_pipelined(f.raw, 32, 64, n), n),
        "raw_fanin" => (raw_fan_in(f.raw, 32, 4, 16, n), n),
        other => panic!("GRACERPC_PROFILE: no case {other:?}"),
    };
    println!(
        "{case}: {calls} calls, {:.1} us per call",
        t.as_secs_f64() * 1e6 / calls as f64
    );
    // (The threads' whole lives, fixture included: negligible next to the calls.)
    cost::print_threads(calls);
}

fn main() {
    if let Ok(case) = std::env::var("GRACERPC_PROFILE") {
        return profile(&case);
    }
    if std::env::args().any(|a| a == "--latency-only") {
        return latencies(&fixture(), 5);
    }
    let quick = std::env::args().any(|a| a == "--ratios-only");
    if !quick {
        groups();
        Criterion::default().configure_from_args().final_summary();
    }
    interleaved();
}
