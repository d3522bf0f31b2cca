//! The caller threads' invariants, each a named stress test (bounded in count and time), so
//! that later performance work on the calling path (per-thread batching, a caller reading its
//! own answer, pooled slots) cannot break one unseen:
//!
//! * `id_order_equals_wire_order`: REQUEST ids strictly increase on the wire, with many threads
//!   serializing and writing at once (section 5);
//! * `no_write_outside_the_core_accounting`: every byte the client writes is a whole, valid
//!   frame the core produced — no torn or interleaved frames, no CANCEL for an id never sent,
//!   no REQUEST body but one a call passed — with cancels, expiries and large bodies mixed in;
//! * `no_late_answer_reaches_a_reused_pooled_slot`: an answer that comes after its call gave up
//!   never completes the next call that reused the slot;
//! * `a_poll_never_blocks`: polling a call never waits on the network, even when the server
//!   has stopped reading and every socket buffer is full.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use cluster::{Got, RawServer, wait_all_ready};
use gracerpc::client::{CallError, CallOptions, Client, block_on};
use gracerpc::proto::frame::Response;
use gracerpc::proto::{Frame, Status};

/// What a checking server saw that breaks an invariant.
#[derive(Default)]
struct Seen {
    violations: Vec<String>,
    requests: u64,
}

/// The body a call of (thread, seq) sends: its token, padded to a length that varies.
fn body(thread: usize, seq: u64) -> Vec<u8> {
    let mut b = format!("t{thread}s{seq}:").into_bytes();
    let pad = [0usize, 10, 1000, 40_000][(seq % 4) as usize];
    b.resize(b.len() + pad, b'.');
    b
}

/// Whether `b` is a body some call made.
fn well_formed(b: &[u8]) -> bool {
    let Some(colon) = b.iter().position(|&c| c == b':') else {
        return false;
    };
    let head = &b[..=colon];
    let Some(s) = std::str::from_utf8(head).ok() else {
        return false;
    };
    let Some((t, seq)) = s
        .strip_prefix('t')
        .and_then(|s| s.strip_suffix(':'))
        .and_then(|s| s.split_once('s'))
    else {
        return false;
    };
    match (t.parse(), seq.parse()) {
        (Ok(t), Ok(seq)) => body(t, seq) == b,
        _ => false,
    }
}

/// A server that checks every frame it reads and answers each REQUEST with its body after
/// `delay` (from a writer thread, in arrival order).
fn checking_server(delay: Duration) -> (RawServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    let raw = RawServer::spawn(move |_, mut c| {
        if c.handshake(Some(100)).is_err() {
            return;
        }
        let Ok(mut out) = c.stream.try_clone() else {
            return;
        };
        let (tx, rx) = crossbeam_channel::unbounded::<(Instant, u64, Vec<u8>)>();
        let writer = std::thread::spawn(move || {
            for (at, id, body) in rx {
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut buf = Vec::new();
                Frame::Response(Response {
                    id,
                    status: Status::OK,
                    body: &body,
                })
                .encode(&mut buf);
                if out.write_all(&buf).is_err() {
                    return;
                }
            }
        });
        let mut last = 0u64;
        let mut sent = HashSet::new();
        loop {
            let got = match c.next() {
                Ok(g) => g,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) => {
                    seen2.lock().unwrap().violations.push(format!("read: {e}"));
                    break;
                }
            };
            let mut s = seen2.lock().unwrap();
            match got {
                Got::Request { id, body, .. } => {
                    s.requests += 1;
                    if id <= last {
                        s.violations.push(format!("REQUEST {id} after {last}"));
                    }
                    if !well_formed(&body) {
                        s.violations
                            .push(format!("REQUEST {id}: a body no call sent"));
                    }
                    last = id;
                    sent.insert(id);
                    let _ = tx.send((Instant::now() + delay, id, body));
                }
                Got::Cancel(id) if !sent.contains(&id) => {
                    s.violations
                        .push(format!("CANCEL {id} for an id never sent"));
                }
                Got::Cancel(_) => {}
                other => s.violations.push(format!("unexpected {other:?}")),
            }
        }
        drop(tx);
        let _ = writer.join();
    });
    (raw, seen)
}

fn check(seen: &Mutex<Seen>) -> u64 {
    let s = seen.lock().unwrap();
    assert!(
        s.violations.is_empty(),
        "{:?}",
        &s.violations[..s.violations.len().min(20)]
    );
    s.requests
}

/// `threads` closed-loop callers, each making `calls` calls with `f`.
fn callers(
    client: &Client,
    threads: usize,
    f: impl Fn(&Client, usize, u64) + Send + Sync + 'static,
    calls: u64,
) {
    let f = Arc::new(f);
    let end = Instant::now() + Duration::from_secs(60);
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (client, f) = (client.clone(), f.clone());
            std::thread::spawn(move || {
                for seq in 0..calls {
                    assert!(Instant::now() < end, "the load took longer than 60 s");
                    f(&client, t, seq);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn id_order_equals_wire_order() {
    let (raw, seen) = checking_server(Duration::ZERO);
    let client = cluster::client(&[raw.addr], |b| b);
    wait_all_ready(&client, &[raw.addr]);
    callers(
        &client,
        8,
        |c, t, seq| {
            let b = body(t, seq);
            let opts = CallOptions::new().deadline(Duration::from_secs(20));
            let r = if seq % 2 == 0 {
                c.call_with("x", &b, &opts)
            } else {
                block_on(c.call_async("x", b.clone(), opts))
            };
            assert_eq!(r.expect("call").body, b);
        },
        300,
    );
    assert_eq!(check(&seen), 8 * 300);
}

#[test]
fn no_write_outside_the_core_accounting() {
    // Answers come 2 ms late: calls with a 1 ms deadline expire (their frames may be cut from
    // the output), dropped futures send CANCEL, others complete.
    let (raw, seen) = checking_server(Duration::from_millis(2));
    let client = cluster::client(&[raw.addr], |b| b);
    wait_all_ready(&client, &[raw.addr]);
    callers(
        &client,
        8,
        |c, t, seq| {
            let b = body(t, seq);
            match seq % 3 {
                0 => {
                    let opts = CallOptions::new().deadline(Duration::from_millis(1));
                    match c.call_with("x", &b, &opts) {
                        Ok(r) => assert_eq!(r.body, b),
                        Err(CallError::DeadlineExceeded { .. }) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
                1 => {
                    // Polled once (sent), then dropped: CANCEL.
                    let mut fut = c.call_async("x", b, CallOptions::new());
                    let mut cx = Context::from_waker(Waker::noop());
                    let _ = Pin::new(&mut fut).poll(&mut cx);
                }
                _ => {
                    let opts = CallOptions::new().deadline(Duration::from_secs(20));
                    assert_eq!(c.call_with("x", &b, &opts).expect("call").body, b);
                }
            }
        },
        200,
    );
    client.close(Duration::from_secs(5));
    check(&seen);
}

#[test]
fn no_late_answer_reaches_a_reused_pooled_slot() {
    // Every answer comes 2 ms late. Every other call gives up — its future dropped about when
    // its answer arrives, or its 1 ms deadline passed — and its thread's next call reuses the
    // pooled slot at once. An answer delivered to the old call's slot after that would show
    // as a body that is not the new call's own.
    let (raw, seen) = checking_server(Duration::from_millis(2));
    let client = cluster::client(&[raw.addr], |b| b);
    wait_all_ready(&client, &[raw.addr]);
    callers(
        &client,
        6,
        |c, t, seq| {
            let b = body(t, seq);
            match seq % 4 {
                0 => {
                    let mut fut = c.call_async("x", b, CallOptions::new());
                    let mut cx = Context::from_waker(Waker::noop());
                    let _ = Pin::new(&mut fut).poll(&mut cx);
                    std::thread::sleep(Duration::from_micros(1500 + 100 * (seq % 10)));
                    let _ = Pin::new(&mut fut).poll(&mut cx);
                }
                2 => {
                    let opts = CallOptions::new().deadline(Duration::from_millis(1));
                    match c.call_with("x", &b, &opts) {
                        Ok(r) => assert!(r.body == b, "call t{t}s{seq} got another call's answer"),
                        Err(CallError::DeadlineExceeded { .. }) => {}
                        Err(e) => panic!("t{t}s{seq}: {e:?}"),
                    }
                }
                _ => {
                    let opts = CallOptions::new().deadline(Duration::from_secs(20));
                    let r = c.call_with("x", &b, &opts).expect("call");
                    assert!(r.body == b, "call t{t}s{seq} got another call's answer");
                }
            }
        },
        300,
    );
    check(&seen);
}

#[test]
fn a_poll_never_blocks() {
    // The server handshakes and then never reads: the socket buffers fill, and the client's
    // output reaches its bound. Polling calls must still return at once (Pending), never
    // wait for the socket.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let raw = RawServer::spawn(move |_, mut c| {
        if c.handshake(Some(100)).is_ok() {
            while !stop2.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let client = cluster::client(&[raw.addr], |b| b);
    wait_all_ready(&client, &[raw.addr]);
    let opts = CallOptions::new().deadline(Duration::from_secs(30));
    let big = vec![7u8; 256 * 1024];
    let mut futs: Vec<_> = (0..64)
        .map(|_| client.call_async("x", big.clone(), opts.clone()))
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut slowest = Duration::ZERO;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        for f in &mut futs {
            let t0 = Instant::now();
            let r = Pin::new(f).poll(&mut cx);
            slowest = slowest.max(t0.elapsed());
            assert!(r.is_pending(), "a call ended: {r:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A poll that waited on the socket would take until the deadline (30 s). Generous bound
    // for a loaded machine; this is no speed measurement.
    assert!(
        slowest < Duration::from_secs(2),
        "one poll took {slowest:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Release);
    drop(futs);
}
