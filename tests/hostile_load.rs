//! Hostile input in bulk: floods, slow peers, half-close and connection churn, against a real
//! server on loopback. Like `tests/hostile/`, every case ends with a normal call on a fresh
//! connection, `connections()` and `in_flight()` back to 0 and a clean drain; the floods also
//! bound this process's resident memory and check that another connection is answered promptly
//! meanwhile.
//!
//! The cases run one at a time (a lock), so that each one's RSS figure is its own.

#[path = "support/peer.rs"]
mod peer;

#[path = "hostile/common.rs"]
mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gracerpc::proto::{ErrorCode, Status};
use peer::{Gate, OwnedFrame, Peer, QUICK, connect_ready, frames, wait_until};

use common::{Target, echo_ok, expect_error_close, expect_handshake_refused, rss_bytes};

/// Memory a flood may add to this process, at most: generous, but far below what an unbounded
/// buffer would take.
const RSS_BOUND: u64 = 128 << 20;
/// How long one normal call on another connection may take while a flood goes on.
const RESPONSIVE: Duration = Duration::from_secs(1);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls `echo` on a connection of its own until stopped; returns (calls, slowest).
struct Bystander {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Duration)>,
}

impl Bystander {
    fn start(t: &Target) -> Bystander {
        let mut p = t.peer();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut n, mut worst) = (0u64, Duration::ZERO);
            let end = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Acquire) && Instant::now() < end {
                n += 1;
                let t0 = Instant::now();
                echo_ok(&mut p, n, b"bystander");
                worst = worst.max(t0.elapsed());
            }
            p.close_and_expect_eof(QUICK, "bystander close");
            (n, worst)
        });
        Bystander { stop, thread }
    }

    /// Stops it and asserts that it made calls, each within [`RESPONSIVE`].
    fn stop(self, during: &str) {
        self.stop.store(true, Ordering::Release);
        let (n, worst) = self.thread.join().expect("bystander panicked");
        println!("{during}: bystander made {n} calls, slowest {worst:?}");
        assert!(n >= 1, "{during}: the bystander made no call");
        assert!(
            worst < RESPONSIVE,
            "{during}: a call on another connection took {worst:?}"
        );
    }
}

fn rss_check(before: u64, what: &str) {
    let now = rss_bytes();
    let grew = now.saturating_sub(before);
    println!(
        "{what}: RSS {} KiB -> {} KiB (+{} KiB)",
        before >> 10,
        now >> 10,
        grew >> 10
    );
    assert!(grew < RSS_BOUND, "{what}: RSS grew by {grew} bytes");
}

/// Thousands of PINGs in one write: every one PONGed, in order, while another connection keeps
/// being answered.
#[test]
fn ping_flood_is_ponged_in_order_and_others_stay_served() {
    let _g = serial();
    let t = Target::start();
    let rss0 = rss_bytes();
    let by = Bystander::start(&t);
    let mut p = t.peer();
    const N: u64 = 50_000;
    let mut flood = Vec::with_capacity(16 * N as usize);
    for i in 1..=N {
        flood.extend(frames::ping(i));
    }
    p.send_ok(&flood, "the PING flood");
    for i in 1..=N {
        match p.next_frame(QUICK) {
            Ok(OwnedFrame::Pong(v)) if v == i => {}
            other => panic!("PONG {i} expected in order, got {other:?}"),
        }
    }
    by.stop("PING flood");
    rss_check(rss0, "PING flood");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// Thousands of tiny REQUESTs in one write: every one answered, in order (inline handler).
#[test]
fn thousands_of_tiny_frames_in_one_write_are_all_answered() {
    let _g = serial();
    let t = Target::start();
    let rss0 = rss_bytes();
    let by = Bystander::start(&t);
    let mut p = t.peer();
    const N: u64 = 20_000;
    let mut burst = Vec::new();
    for id in 1..=N {
        burst.extend(frames::request(id, "echo", &[id as u8]));
    }
    p.send_ok(&burst, "the burst");
    for id in 1..=N {
        match p.next_frame(QUICK) {
            Ok(OwnedFrame::Response {
                id: got,
                status: Status::OK,
                body,
            }) if got == id && body == [id as u8] => {}
            other => panic!("RESPONSE {id} expected in order, got {other:?}"),
        }
    }
    by.stop("tiny frames");
    rss_check(rss0, "tiny frames");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// One byte per write (paced 1 ms apart), HELLO and requests included: complete requests work.
#[test]
fn slowloris_one_byte_per_write_still_gets_answers() {
    let _g = serial();
    let t = Target::start();
    let mut p = t.raw();
    let mut bytes = frames::hello();
    for id in 1..=3 {
        bytes.extend(frames::request(id, "echo", b"slow"));
    }
    for b in &bytes {
        p.send_ok(std::slice::from_ref(b), "one byte");
        std::thread::sleep(Duration::from_millis(1)); // pacing, so that each byte is a segment
    }
    p.expect_matching(QUICK, "HELLO", |f| matches!(f, OwnedFrame::Hello { .. }));
    p.wait_ready(QUICK);
    let got = p.collect_answers(&[1, 2, 3], QUICK);
    assert!(got.values().all(
        |f| matches!(f, OwnedFrame::Response { status: Status::OK, body, .. } if body == b"slow")
    ));
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// Writes `bytes` one per `every` on another thread until told to stop or done.
fn dribble(p: &Peer, bytes: Vec<u8>, every: Duration) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let mut w = p.try_clone_stream();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut sent = 0;
        for b in bytes {
            if stop2.load(Ordering::Acquire) || w.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(every); // the attack's pace
        }
        sent
    });
    (stop, thread)
}

/// A HELLO dribbled slower than the HELLO timeout: bytes that never complete a frame do not
/// keep the connection: ERROR HANDSHAKE at the timeout, then a clean close.
#[test]
fn slowloris_hello_slower_than_the_hello_timeout_is_dropped_cleanly() {
    let _g = serial();
    let hello_timeout = Duration::from_millis(300);
    let t = Target::start_with(|b| b.hello_timeout(hello_timeout));
    let mut p = t.raw();
    let t0 = Instant::now();
    let (stop, writer) = dribble(&p, frames::hello(), Duration::from_millis(40));
    let got = p.read_to_eof(QUICK, "ERROR HANDSHAKE then FIN");
    let took = t0.elapsed();
    stop.store(true, Ordering::Release);
    let sent = writer.join().unwrap();
    assert!(sent < 32, "the HELLO was never complete ({sent} bytes)");
    assert!(
        matches!(
            got.as_slice(),
            [
                OwnedFrame::Hello { .. },
                OwnedFrame::Error {
                    code: ErrorCode::HANDSHAKE,
                    ..
                }
            ]
        ),
        "{got:?}"
    );
    assert!(
        took >= hello_timeout - Duration::from_millis(20) && took < QUICK,
        "{took:?}"
    );
    p.shutdown_write();
    t.finish();
}

/// A REQUEST dribbled after HELLO, slower than the idle and PING timeouts: no frame arrives, so
/// the server PINGs, gets no PONG (the peer is mid-frame) and ends with ERROR TIMEOUT, cleanly.
#[test]
fn slowloris_request_slower_than_the_idle_timeout_is_dropped_cleanly() {
    let _g = serial();
    let t = Target::start_with(|b| {
        b.idle_timeout(Duration::from_millis(200), Duration::from_millis(200))
    });
    let mut p = t.peer();
    let (stop, writer) = dribble(
        &p,
        frames::request(1, "count", &[b'z'; 100]),
        Duration::from_millis(30),
    );
    let got = p.read_to_eof(QUICK, "PING, ERROR TIMEOUT, FIN");
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    assert!(
        matches!(
            got.as_slice(),
            [
                OwnedFrame::Ping(0),
                OwnedFrame::Error {
                    code: ErrorCode::TIMEOUT,
                    ..
                }
            ]
        ),
        "{got:?}"
    );
    p.shutdown_write();
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

/// A peer that sends requests as fast as it can and reads nothing: the server stops reading it
/// once its output for the peer is over the limit (the peer's writes then block), its memory
/// stays bounded, other connections keep being answered promptly, and when the peer finally
/// reads, every request it wrote is answered, in order.
#[test]
fn a_peer_that_never_reads_is_paused_bounded_and_then_gets_every_answer() {
    let _g = serial();
    let t = Target::start();
    let rss0 = rss_bytes();
    let mut p = t.peer();
    let mut w = p.try_clone_stream();
    w.set_nonblocking(true).expect("nonblocking");
    let payload = vec![b'p'; 1000];
    let frame_len = frames::request(1, "echo", &payload).len();

    // Write whole frames until the server has stopped reading for 500 ms.
    let (mut next_id, mut pending, mut at) = (1u64, Vec::new(), 0usize);
    let (mut written, mut last_progress) = (0usize, Instant::now());
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        if at == pending.len() {
            pending = frames::request(next_id, "echo", &payload);
            next_id += 1;
            at = 0;
        }
        match w.write(&pending[at..]) {
            Ok(n) => {
                at += n;
                written += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if last_progress.elapsed() >= Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1)); // nothing to wait on: poll
            }
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
        assert!(
            Instant::now() < give_up && written < 1 << 30,
            "the server never stopped reading a peer that reads nothing ({written} bytes)"
        );
    }
    let sent_ids = next_id - 1; // the last one possibly in part
    println!(
        "never-reading peer: stalled after {written} bytes ({sent_ids} requests of {frame_len} \
         bytes)"
    );
    rss_check(rss0, "never-reading peer, stalled");

    // Others are not stalled.
    let mut other = t.peer();
    for id in 1..=50 {
        let t0 = Instant::now();
        echo_ok(&mut other, id, b"other");
        assert!(
            t0.elapsed() < RESPONSIVE,
            "call {id} took {:?}",
            t0.elapsed()
        );
    }
    other.close_and_expect_eof(QUICK, "other close");

    // Now read: finish the frame in part on another thread (it blocks until the server reads
    // again), and collect every answer here.
    w.set_nonblocking(false).expect("blocking");
    let rest = pending[at..].to_vec();
    let finisher = std::thread::spawn(move || w.write_all(&rest));
    for id in 1..=sent_ids {
        match p.next_frame(Duration::from_secs(10)) {
            Ok(OwnedFrame::Response {
                id: got,
                status: Status::OK,
                body,
            }) if got == id && body.len() == payload.len() => {}
            other => panic!("RESPONSE {id} of {sent_ids} expected in order, got {other:?}"),
        }
    }
    finisher.join().unwrap().expect("finishing the last frame");
    rss_check(rss0, "never-reading peer, all read");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// FIN right after the requests: every response is still delivered, then a clean close.
#[test]
fn half_close_after_requests_gets_every_response_then_a_clean_close() {
    let _g = serial();
    let t = Target::start();
    let mut p = t.peer();
    let mut bytes = Vec::new();
    for id in 1..=4 {
        bytes.extend(frames::request(id, "slow", b"100"));
    }
    for id in 5..=1004 {
        bytes.extend(frames::request(id, "echo", b"e"));
    }
    p.send_ok(&bytes, "requests");
    p.shutdown_write();
    let got = p.read_to_eof(Duration::from_secs(10), "every answer, then FIN");
    let mut ids: Vec<u64> = got
        .iter()
        .map(|f| match f {
            OwnedFrame::Response {
                id,
                status: Status::OK,
                ..
            } => *id,
            other => panic!("only RESPONSEs expected: {other:?}"),
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=1004).collect::<Vec<_>>());
    t.finish();
}

/// Closes `s` with an RST: SO_LINGER with a zero timeout.
fn close_with_reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd, and a pointer to a `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(s);
}

/// Thousands of connect/close cycles of every kind (nothing sent, HELLO only, a request; FIN
/// or RST): the server keeps up and `connections()` returns to 0.
#[test]
fn connection_churn_returns_to_zero_connections() {
    let _g = serial();
    let t = Target::start();
    let rss0 = rss_bytes();
    let by = Bystander::start(&t);
    let addr = t.addr();
    let mut hello_req = frames::hello();
    hello_req.extend(frames::request(1, "echo", b"churn"));
    const CYCLES: usize = 3_000;
    let t0 = Instant::now();
    for i in 0..CYCLES {
        let mut s =
            TcpStream::connect_timeout(&addr, QUICK).unwrap_or_else(|e| panic!("connect {i}: {e}"));
        match i % 5 {
            0 => drop(s),
            1 => {
                s.write_all(&frames::hello()).expect("HELLO");
                drop(s);
            }
            2 => {
                s.write_all(&hello_req).expect("HELLO + REQUEST");
                drop(s);
            }
            3 => {
                s.write_all(&hello_req).expect("HELLO + REQUEST");
                close_with_reset(s);
            }
            _ => {
                // Wait for the server's HELLO, so the RST hits an established connection.
                s.set_read_timeout(Some(QUICK)).unwrap();
                let mut b = [0u8; 16];
                s.read_exact(&mut b).expect("the server's HELLO header");
                close_with_reset(s);
            }
        }
    }
    println!("churn: {CYCLES} cycles in {:?}", t0.elapsed());
    by.stop("churn");
    wait_until(QUICK, "connections() and in_flight() back to 0", || {
        t.server().connections() == 0 && t.server().in_flight() == 0
    });
    rss_check(rss0, "churn");
    t.finish();
}

/// Connections reset while their requests run or wait for a worker: the server drops them, the
/// queued requests never run, the running one's answer goes nowhere, and both counters return
/// to 0.
#[test]
fn connections_reset_mid_request_are_freed() {
    let _g = serial();
    let gate = Gate::new();
    let handler = gate.handler();
    let t = Target::start_with(|b| b.workers(1).handler("gate", handler));
    const CONNS: usize = 20;
    let mut socks = Vec::new();
    for i in 0..CONNS {
        let p = connect_ready(t.addr());
        let mut s = p.try_clone_stream();
        s.write_all(&frames::request(1, "gate", format!("k{i}").as_bytes()))
            .expect("REQUEST");
        socks.push((p, s));
    }
    gate.wait_started_count(1, QUICK);
    wait_until(QUICK, "every request in flight", || {
        t.server().in_flight() == CONNS
    });
    for (p, s) in socks {
        drop(p);
        close_with_reset(s);
    }
    wait_until(QUICK, "every reset connection dropped", || {
        t.server().connections() == 0
    });
    gate.release_all();
    wait_until(QUICK, "in_flight() back to 0", || {
        t.server().in_flight() == 0
    });
    assert_eq!(
        gate.started().len(),
        1,
        "queued requests of reset connections never run"
    );
    t.finish();
}

/// Many connections at once, each sending a different kind of garbage: each gets its ERROR
/// and a clean close; the server keeps serving.
#[test]
fn many_garbage_connections_at_once_each_get_their_error() {
    let _g = serial();
    let t = Target::start();
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![0xee; 16], ErrorCode::UNKNOWN_KIND),
        (
            frames::oversize_request_header(1, u32::MAX),
            ErrorCode::TOO_LARGE,
        ),
        (frames::cancel(9), ErrorCode::UNKNOWN_ID),
        (frames::goaway_ack(0), ErrorCode::UNEXPECTED_FRAME),
        (frames::request(0, "echo", b""), ErrorCode::MALFORMED),
    ];
    let mut peers = Vec::new();
    for i in 0..200 {
        let (bytes, code) = &cases[i % cases.len()];
        let mut p = t.peer();
        p.send_ok(bytes, "garbage");
        peers.push((p, *code));
    }
    for (mut p, code) in peers {
        expect_error_close(&mut p, code, None);
    }
    let mut raw = t.raw();
    raw.send_ok(b"\x00\x00\x00\x00", "four zero bytes");
    raw.shutdown_write();
    // A torn header and EOF: nothing to answer, a clean close after the server's HELLO.
    let rest = raw.read_to_eof(QUICK, "close");
    assert!(
        matches!(rest.as_slice(), [OwnedFrame::Hello { .. }]),
        "{rest:?}"
    );
    let mut bad = t.raw();
    bad.send_ok(&[0x99; 20], "garbage first");
    expect_handshake_refused(&mut bad, ErrorCode::UNKNOWN_KIND);
    t.finish();
}
