//! The default codec of typed services, measured: encode + decode of the benchmark struct (a
//! few integers and a 32-byte field) with postcard and with bincode 1, into a reused buffer,
//! and the encoded sizes (printed once).
//!
//! Run with `cargo bench --bench typed_codec`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gracerpc::service::{Codec, Postcard};
use serde::{Deserialize, Serialize};

/// The struct of the measurement: a few integers and a 32-byte field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    id: u64,
    count: u32,
    delta: i64,
    flags: u16,
    digest: [u8; 32],
}

/// The same, its byte field as one byte string (`serde_bytes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SampleBytes {
    id: u64,
    count: u32,
    delta: i64,
    flags: u16,
    #[serde(with = "serde_bytes")]
    digest: [u8; 32],
}

fn sample() -> Sample {
    Sample {
        id: 123_456,
        count: 42,
        delta: -7,
        flags: 3,
        digest: [0x5a; 32],
    }
}

fn codecs(c: &mut Criterion) {
    let s = sample();
    let vb = SampleBytes {
        id: s.id,
        count: s.count,
        delta: s.delta,
        flags: s.flags,
        digest: s.digest,
    };
    group(c, "typed_codec_array", s);
    group(c, "typed_codec_serde_bytes", vb);
}

fn group<V>(c: &mut Criterion, name: &str, v: V)
where
    V: Serialize + serde::de::DeserializeOwned,
{
    let mut pc = Vec::new();
    Postcard::encode(&v, &mut pc).unwrap();
    let bc = bincode::serialize(&v).unwrap();
    println!(
        "{name}: encoded size postcard {} B, bincode {} B",
        pc.len(),
        bc.len()
    );

    let mut g = c.benchmark_group(name);
    g.bench_function("postcard", |b| {
        let mut buf = Vec::with_capacity(128);
        b.iter(|| {
            buf.clear();
            Postcard::encode(black_box(&v), &mut buf).unwrap();
            let back: V = Postcard::decode(black_box(&buf)).unwrap();
            black_box(back)
        })
    });
    g.bench_function("bincode", |b| {
        let mut buf = Vec::with_capacity(128);
        b.iter(|| {
            buf.clear();
            bincode::serialize_into(&mut buf, black_box(&v)).unwrap();
            let back: V = bincode::deserialize(black_box(&buf)).unwrap();
            black_box(back)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = codecs
}
criterion_main!(benches);
