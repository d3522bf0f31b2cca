//! Heap allocations per call after warm-up, on the server path and on the caller path, counted
//! by a global allocator in this test binary (issue: "none in the framework itself on the server
//! path; at most one on the caller path"). Each side runs against a raw peer written here that
//! allocates nothing in its loop, so every allocation counted is the library's (or the
//! handler's own reply body, which is allowed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gracerpc::client::{CallOptions, CallSet, Client};
use gracerpc::proto::frame::{Hello, Ready, Request as ReqFrame, Response};
use gracerpc::proto::{Frame, HEADER_LEN, Status, decode};
use gracerpc::server::{Request, Server};
use gracerpc::service::{Codec, Postcard};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: the tests of this binary take turns.
static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

const WARMUP: u64 = 2_000;
const CALLS: u64 = 20_000;
const DEPTH: u64 = 16;

/// Sends `calls` echo REQUESTs with `DEPTH` in flight over a raw connection and reads every
/// RESPONSE, allocating nothing once `out`/`buf` have grown.
fn raw_caller(
    s: &mut TcpStream,
    method: &str,
    first_id: &mut u64,
    calls: u64,
    out: &mut Vec<u8>,
    buf: &mut [u8],
    body: &[u8],
) {
    let (mut sent, mut got, mut have) = (0u64, 0u64, 0usize);
    while got < calls {
        out.clear();
        while sent < calls && sent - got < DEPTH {
            *first_id += 1;
            ReqFrame {
                id: *first_id,
                deadline_us: 5_000_000,
                idempotent: false,
                method,
                metadata: gracerpc::proto::frame::Metadata::EMPTY,
                body,
            }
            .encode(out);
            sent += 1;
        }
        if !out.is_empty() {
            s.write_all(out).expect("write");
        }
        let n = s.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "server closed");
        have += n;
        let mut at = 0;
        while let Ok(Some((f, used))) = decode(&buf[at..have], 1 << 20) {
            if let Frame::Response(r) = f {
                assert_eq!(r.status, Status::OK);
                got += 1;
            }
            at += used;
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
}

fn server_path(method: &str, inline: bool, metrics: bool) -> f64 {
    let mut b = Server::builder().workers(2);
    if metrics {
        b = b.metrics();
    }
    let echo = |r: &Request<'_>| Ok(r.body.to_vec());
    b = if inline {
        b.inline_handler(method, echo)
    } else {
        b.handler(method, echo)
    };
    server_path_of(b, method, &[7u8; 32])
}

fn server_path_of(b: gracerpc::server::Builder, method: &str, body: &[u8]) -> f64 {
    let server = b.spawn().expect("server");
    let mut s = TcpStream::connect(server.local_addr()).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut out = Vec::with_capacity(64 * 1024);
    Hello::ours(1 << 20).encode(&mut out);
    s.write_all(&out).expect("hello");
    let mut buf = vec![0u8; 1 << 20];
    let mut id = 0;
    raw_caller(&mut s, method, &mut id, WARMUP, &mut out, &mut buf, body);
    let before = ALLOCS.load(Ordering::SeqCst);
    raw_caller(&mut s, method, &mut id, CALLS, &mut out, &mut buf, body);
    let per_call = (ALLOCS.load(Ordering::SeqCst) - before) as f64 / CALLS as f64;
    drop(s);
    server.shutdown();
    server.wait().expect("wait");
    per_call
}

/// A raw node: HELLO + READY, then answers every REQUEST with its body, allocating nothing in
/// its loop once its buffers have grown.
fn raw_node() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut out = Vec::with_capacity(1 << 20);
        Hello::ours(1 << 20).encode(&mut out);
        Ready { capacity: 100 }.encode(&mut out);
        s.write_all(&out).expect("hello");
        let mut buf = vec![0u8; 1 << 20];
        let mut have = 0;
        loop {
            let n = match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            have += n;
            out.clear();
            let mut at = 0;
            while let Ok(Some((f, used))) = decode(&buf[at..have], 1 << 20) {
                if let Frame::Request(r) = f {
                    Response {
                        id: r.id,
                        status: Status::OK,
                        body: r.body,
                    }
                    .encode(&mut out);
                }
                at += used;
            }
            buf.copy_within(at..have, 0);
            have -= at;
            if !out.is_empty() && s.write_all(&out).is_err() {
                return;
            }
        }
    });
    addr
}

/// A client of a fresh [`raw_node`], ready.
fn raw_node_client() -> Client {
    let addr = raw_node();
    let client = Client::builder().nodes([addr]).build().expect("client");
    assert!(
        client.wait_ready(addr, Duration::from_secs(5)),
        "raw node not ready"
    );
    client
}

fn caller_path() -> f64 {
    let client = raw_node_client();
    let body = [7u8; 32];
    let opts = CallOptions::new();
    for _ in 0..WARMUP {
        client.call_with("echo", &body, &opts).expect("call");
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..CALLS {
        let r = client.call_with("echo", &body, &opts).expect("call");
        assert_eq!(r.body.len(), body.len());
    }
    (ALLOCS.load(Ordering::SeqCst) - before) as f64 / CALLS as f64
}

/// Allocations per call of 64 calls in flight on a [`CallSet`], after warm-up.
fn caller_path_set() -> f64 {
    let client = raw_node_client();
    let body = [7u8; 32];
    let opts = CallOptions::new();
    let mut set = CallSet::with_capacity(64);
    let mut run = |calls: u64| {
        let mut started = 0;
        while started < calls.min(64) {
            assert!(set.push(client.call_ref("echo", &body, &opts)).is_ok());
            started += 1;
        }
        while let Some(r) = set.next() {
            assert_eq!(r.expect("call").body.len(), body.len());
            if started < calls {
                assert!(set.push(client.call_ref("echo", &body, &opts)).is_ok());
                started += 1;
            }
        }
    };
    run(WARMUP);
    let before = ALLOCS.load(Ordering::SeqCst);
    run(CALLS);
    (ALLOCS.load(Ordering::SeqCst) - before) as f64 / CALLS as f64
}

/// The struct of the typed measurement: a few integers and a 32-byte field.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    id: u64,
    count: u32,
    delta: i64,
    flags: u16,
    digest: [u8; 32],
}

const SAMPLE: Sample = Sample {
    id: 123_456,
    count: 42,
    delta: -7,
    flags: 3,
    digest: [0x5a; 32],
};

#[gracerpc::service]
pub trait Bench {
    fn echo(&self, s: Sample) -> Result<Sample, String>;
}

struct BenchNode;
impl Bench for BenchNode {
    fn echo(&self, s: Sample) -> Result<Sample, String> {
        Ok(s)
    }
}

fn sample_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    Postcard::encode(&SAMPLE, &mut v).unwrap();
    v
}

/// The same payload both ways: a bytes worker handler echoing the encoded struct, and the typed
/// method decoding and re-encoding it.
fn server_path_typed() -> (f64, f64) {
    let body = sample_bytes();
    let bytes = Server::builder()
        .workers(2)
        .handler("bench.echo", |r| Ok(r.body().to_vec()));
    let typed = Server::builder()
        .workers(2)
        .service(BenchServer::new(BenchNode));
    (
        server_path_of(bytes, "bench.echo", &body),
        server_path_of(typed, "bench.echo", &body),
    )
}

fn caller_path_typed() -> (f64, f64) {
    let addr = raw_node();
    let client = Client::builder().nodes([addr]).build().expect("client");
    assert!(client.wait_ready(addr, Duration::from_secs(5)), "raw node");
    let body = sample_bytes();
    let typed = BenchClient::new(client.clone());
    let opts = CallOptions::new();
    for _ in 0..WARMUP {
        client.call_with("bench.echo", &body, &opts).expect("call");
        typed.echo(SAMPLE).expect("typed call");
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..CALLS {
        let r = client.call_with("bench.echo", &body, &opts).expect("call");
        assert_eq!(r.body.len(), body.len());
    }
    let mid = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..CALLS {
        let s = typed.echo(SAMPLE).expect("typed call");
        assert_eq!(s.id, SAMPLE.id);
    }
    let end = ALLOCS.load(Ordering::SeqCst);
    (
        (mid - before) as f64 / CALLS as f64,
        (end - mid) as f64 / CALLS as f64,
    )
}

#[test]
fn typed_calls_allocate_at_most_one_more_than_bytes_calls() {
    let _turn = ONE_AT_A_TIME.lock();
    let (server_bytes, server_typed) = server_path_typed();
    let (caller_bytes, caller_typed) = caller_path_typed();
    println!(
        "allocations per call, same payload: server bytes {server_bytes:.3} typed \
         {server_typed:.3}; caller bytes {caller_bytes:.3} typed {caller_typed:.3}"
    );
    assert!(
        server_typed <= server_bytes + 1.05,
        "server: typed {server_typed:.3} vs bytes {server_bytes:.3}"
    );
    assert!(
        caller_typed <= caller_bytes + 1.05,
        "caller: typed {caller_typed:.3} vs bytes {caller_bytes:.3}"
    );
}

#[test]
fn allocations_per_call_after_warmup() {
    let _turn = ONE_AT_A_TIME.lock();
    let inline = server_path("echo", true, false);
    let worker = server_path("echo", false, false);
    // With metrics on (latency histograms per method): still nothing per call.
    let inline_m = server_path("echo", true, true);
    let worker_m = server_path("echo", false, true);
    let caller = caller_path();
    let caller_set = caller_path_set();
    println!(
        "allocations per call: server inline {inline:.3}, server worker {worker:.3}, with \
         metrics {inline_m:.3} / {worker_m:.3}, caller {caller:.3}, caller on a CallSet \
         {caller_set:.3}"
    );
    assert!(
        inline_m <= 1.05 && worker_m <= 1.05,
        "server path with metrics: {inline_m:.3} (inline) / {worker_m:.3} (worker) allocations \
         per call"
    );
    // The handler's own reply body (`to_vec`) is one allocation per call; the framework adds
    // none on the server path, and the caller path costs at most one (the response body).
    assert!(
        inline <= 1.05,
        "server path, inline handler: {inline:.3} allocations per call"
    );
    assert!(
        worker <= 1.05,
        "server path, worker handler: {worker:.3} allocations per call"
    );
    assert!(
        caller <= 1.05,
        "caller path: {caller:.3} allocations per call"
    );
    assert!(
        caller_set <= 1.05,
        "caller path, 64 in flight on a CallSet: {caller_set:.3} allocations per call"
    );
}

const _: usize = HEADER_LEN;
