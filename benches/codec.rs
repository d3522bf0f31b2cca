//! Codec benchmarks: encode and decode of a REQUEST with a 32-byte and a 4 KiB body, a stream of
//! 1,000 small frames through an `InBuf`, and the round trip of one small frame (the ns-per-frame
//! figure). A plain copy of the same bytes sits in each group as the machine's baseline.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gracerpc::proto::frame::{Ping, Request, Response};
use gracerpc::proto::{Frame, InBuf, Status, decode};

const MAX: u32 = 1 << 20;

fn request_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Frame::Request(Request {
        id: 42,
        deadline_us: 250_000,
        idempotent: true,
        method: "echo",
        metadata: gracerpc::proto::frame::Metadata::EMPTY,
        body,
    })
    .encode(&mut out);
    out
}

fn request(c: &mut Criterion) {
    for (name, size) in [("request_32B", 32usize), ("request_4KiB", 4096)] {
        let body = vec![0x5a; size];
        let bytes = request_bytes(&body);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("encode", |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                Frame::Request(Request {
                    id: black_box(42),
                    deadline_us: 250_000,
                    idempotent: true,
                    method: "echo",
                    metadata: gracerpc::proto::frame::Metadata::EMPTY,
                    body: black_box(&body),
                })
                .encode(&mut out);
                black_box(out.len())
            })
        });
        g.bench_function("decode", |b| {
            b.iter(|| {
                let (frame, used) = decode(black_box(&bytes), MAX).unwrap().unwrap();
                black_box((frame, used))
            })
        });
        g.bench_function("copy_baseline", |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&bytes));
                black_box(out.len())
            })
        });
        g.finish();
    }
}

/// 1,000 small frames of the kinds a busy connection carries most.
fn small_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=1000u64 {
        match i % 3 {
            0 => Frame::Ping(Ping { opaque: i }).encode(&mut out),
            1 => Frame::Request(Request {
                id: i,
                deadline_us: 10_000,
                idempotent: false,
                method: "get",
                metadata: gracerpc::proto::frame::Metadata::EMPTY,
                body: b"key-0001",
            })
            .encode(&mut out),
            _ => Frame::Response(Response {
                id: i,
                status: Status::OK,
                body: b"value-00000001",
            })
            .encode(&mut out),
        }
    }
    out
}

fn stream(c: &mut Criterion) {
    let bytes = small_stream();
    let mut g = c.benchmark_group("stream_1000_small");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_via_inbuf", |b| {
        let mut buf = InBuf::new();
        b.iter(|| {
            let mut n = 0;
            for chunk in bytes.chunks(4096) {
                let room = buf.spare(chunk.len(), 1 << 20);
                room[..chunk.len()].copy_from_slice(chunk);
                buf.filled(chunk.len());
                while let Some((frame, used)) = decode(buf.data(), MAX).unwrap() {
                    black_box(frame);
                    buf.consume(used);
                    n += 1;
                }
            }
            assert_eq!(n, 1000);
        })
    });
    g.bench_function("decode_encode", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            let mut at = 0;
            while let Some((frame, used)) = decode(&bytes[at..], MAX).unwrap() {
                frame.encode(&mut out);
                at += used;
            }
            black_box(out.len())
        })
    });
    g.bench_function("copy_baseline", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&bytes));
            black_box(out.len())
        })
    });
    g.finish();
}

fn small_round_trip(c: &mut Criterion) {
    let bytes = request_bytes(&[0x5a; 32]);
    let mut g = c.benchmark_group("small_frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_plus_encode", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            let (frame, _) = decode(black_box(&bytes), MAX).unwrap().unwrap();
            frame.encode(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, request, stream, small_round_trip);
criterion_main!(benches);
