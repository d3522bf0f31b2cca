//! Proves that decoding makes no heap allocation per frame once warmed up: a counting global
//! allocator in this test binary counts the allocations made by the test's own thread while
//! frames stream through an `InBuf` and `decode`, and while frames are encoded into a warmed
//! `Vec`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use gracerpc::proto::frame::{
    Cancel, ErrorFrame, GoAway, GoAwayAck, Ping, Ready, Request, Response, ShutdownReject,
};
use gracerpc::proto::{ErrorCode, Frame, GoAwayReason, InBuf, RejectReason, Status, decode};

struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the slot may be gone while the thread exits.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(Cell::get)
}

/// One of every frame kind a busy connection carries, repeated to `n` frames.
fn stream(n: usize) -> Vec<u8> {
    let payload = [7u8; 40];
    let mut out = Vec::new();
    for i in 0..n as u64 {
        let id = i + 1;
        let frame = match i % 8 {
            0 | 1 => Frame::Request(Request {
                id,
                deadline_us: 50_000,
                idempotent: i % 2 == 0,
                method: "echo",
                metadata: gracerpc::proto::frame::Metadata::EMPTY,
                body: &payload,
            }),
            2 | 3 => Frame::Response(Response {
                id,
                status: Status::OK,
                body: &payload,
            }),
            4 => Frame::ShutdownReject(ShutdownReject {
                id,
                reason: RejectReason::OVERLOADED,
            }),
            5 => Frame::Ping(Ping { opaque: id }),
            6 => Frame::Cancel(Cancel { id }),
            _ => Frame::Ready(Ready { capacity: 80 }),
        };
        frame.encode(&mut out);
    }
    Frame::GoAway(GoAway {
        last_accepted: n as u64,
        drain_budget_ms: 1000,
        reason: GoAwayReason::SHUTDOWN,
    })
    .encode(&mut out);
    Frame::GoAwayAck(GoAwayAck {
        last_accepted: n as u64,
    })
    .encode(&mut out);
    Frame::Error(ErrorFrame {
        id: 0,
        code: ErrorCode::TIMEOUT,
        message: b"done",
    })
    .encode(&mut out);
    out
}

/// Feeds `bytes` through `buf` in reads of up to `read` bytes, decoding every complete frame
/// as a driver does; returns the number of frames.
fn drive(buf: &mut InBuf, bytes: &[u8], read: usize) -> usize {
    let mut frames = 0;
    for chunk in bytes.chunks(read) {
        let room = buf.spare(chunk.len(), 1 << 20);
        room[..chunk.len()].copy_from_slice(chunk);
        buf.filled(chunk.len());
        while let Some((frame, used)) = decode(buf.data(), 1 << 20).expect("valid stream") {
            black_box(frame);
            buf.consume(used);
            frames += 1;
        }
    }
    frames
}

#[test]
fn decoding_and_encoding_allocate_nothing_per_frame_after_warm_up() {
    const FRAMES: usize = 1000;
    let bytes = stream(FRAMES);
    let mut buf = InBuf::new();
    let reads = [1500, 4096, 17, 1 << 16];
    // Warm-up: the input buffer grows to its working size (the largest read).
    for read in reads {
        assert_eq!(drive(&mut buf, &bytes, read), FRAMES + 3);
    }

    let before = allocations();
    let mut decoded = 0;
    for read in reads {
        decoded += drive(&mut buf, &bytes, read);
    }
    let decode_allocs = allocations() - before;
    assert_eq!(decoded, 4 * (FRAMES + 3));
    assert_eq!(
        decode_allocs, 0,
        "{decode_allocs} allocations while decoding {decoded} frames"
    );

    // Encoding every decoded frame again into a warmed, cleared Vec.
    let mut out = Vec::with_capacity(bytes.len());
    let before = allocations();
    for _ in 0..4 {
        out.clear();
        let mut at = 0;
        while let Some((frame, used)) = decode(&bytes[at..], 1 << 20).expect("valid stream") {
            frame.encode(&mut out);
            at += used;
        }
        assert_eq!(out, bytes);
    }
    let encode_allocs = allocations() - before;
    assert_eq!(
        encode_allocs, 0,
        "{encode_allocs} allocations while encoding"
    );
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that counts nothing.
    let before = allocations();
    let v: Vec<u64> = black_box(Vec::with_capacity(16));
    drop(v);
    assert!(allocations() > before);
}
