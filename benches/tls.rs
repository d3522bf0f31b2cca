//! TLS against plaintext, in the same criterion group and the same run: sequential calls and 64
//! in flight, 32 B and 4 KiB bodies, one node with an inline `echo`. After the group an
//! interleaved pass alternates TLS and plaintext (5 rounds each) and prints the medians and the
//! ratio TLS / plaintext: only ratios taken side by side mean anything on a shared machine.
//!
//! Run: `cargo bench --features tls --bench tls`.

use std::time::{Duration, Instant};

#[path = "support/pipeline.rs"]
mod pipeline;
use pipeline::Executor;

use criterion::{BenchmarkId, Criterion, Throughput};
use gracerpc::client::Client;
use gracerpc::server::{Request, Server, ServerHandle};
use gracerpc::tls::{ClientTls, ServerTls, ThrowawayCa};

struct Side {
    _node: ServerHandle,
    client: Client,
}

fn side(tls: bool, ca: &ThrowawayCa) -> Side {
    let mut b = Server::builder()
        .workers(1)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body().to_vec()));
    let node_cert = ca.issue("node", &["127.0.0.1"]).expect("cert");
    if tls {
        b = b.tls(
            ServerTls::from_pem(
                node_cert.cert_pem.as_bytes(),
                node_cert.key_pem.as_bytes(),
                None,
            )
            .expect("server TLS"),
        );
    }
    let node = b.spawn().expect("server");
    let addr = node.local_addr();
    let mut cb = Client::builder().nodes([addr]);
    if tls {
        cb = cb.tls(ClientTls::from_pem(ca.cert_pem().as_bytes(), None).expect("client TLS"));
    }
    let client = cb.build().expect("client");
    assert!(
        client.wait_ready(addr, Duration::from_secs(5)),
        "node not ready"
    );
    Side {
        _node: node,
        client,
    }
}

fn sequential(c: &Client, body: usize, n: u64) -> Duration {
    let b = vec![0u8; body];
    let t = Instant::now();
    for _ in 0..n {
        c.call("echo", &b).expect("call");
    }
    t.elapsed()
}

/// `n` calls with `depth` futures in flight, polled from the calling thread.
fn pipelined(c: &Client, body: usize, depth: usize, n: u64) -> Duration {
    pipeline::pipelined(c, Executor::Foreign, "echo", body, depth, n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let ca = ThrowawayCa::new("bench CA").expect("CA");
    let plain = side(false, &ca);
    let tls = side(true, &ca);
    // `GRACERPC_PROFILE=tls|plain` with `GRACERPC_BODY=32|4096` (and `GRACERPC_DEPTH=64` for
    // calls in flight, else sequential; `GRACERPC_SET=1` to poll them from a `CallSet`): only
    // one side, for a profiler (`perf stat -e
    // instructions:u`, callgrind: `scripts/callgrind_tls.sh`).
    if let Ok(case) = std::env::var("GRACERPC_PROFILE") {
        let body = std::env::var("GRACERPC_BODY")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(32);
        let s = if case == "plain" { &plain } else { &tls };
        let n: u64 = std::env::var("GRACERPC_N")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(20_000);
        let depth: usize = std::env::var("GRACERPC_DEPTH")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(1);
        let set = std::env::var("GRACERPC_SET").is_ok();
        let t = if depth > 1 && set {
            pipeline::pipelined(&s.client, Executor::Set, "echo", body, depth, n)
        } else if depth > 1 {
            pipelined(&s.client, body, depth, n)
        } else {
            sequential(&s.client, body, n)
        };
        println!(
            "{case}: {:.1} us per call",
            t.as_secs_f64() * 1e6 / n as f64
        );
        return;
    }
    if !std::env::args().any(|a| a == "--ratios-only") {
        groups(&plain, &tls);
    }
    interleaved(&plain, &tls);
}

/// Criterion's groups: TLS against plaintext, sequential and 64 in flight, 32 B and 4 KiB.
fn groups(plain: &Side, tls: &Side) {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("tls_vs_plain");
        for body in [32usize, 4096] {
            g.throughput(Throughput::Elements(1));
            for (name, s) in [("plain", plain), ("tls", tls)] {
                g.bench_with_input(
                    BenchmarkId::new(format!("sequential_{name}"), body),
                    &body,
                    |b, &body| b.iter_custom(|n| sequential(&s.client, body, n)),
                );
                g.bench_with_input(
                    BenchmarkId::new(format!("inflight64_{name}"), body),
                    &body,
                    |b, &body| b.iter_custom(|n| pipelined(&s.client, body, 64, n)),
                );
            }
        }
        g.finish();
    }
    c.final_summary();
}

/// TLS against plaintext, alternating, medians of 5 rounds. "64 in flight" polls the futures
/// from a foreign executor (the I/O thread reads and wakes); "64 in flight, set" from a
/// `CallSet`, whose thread writes its rounds' requests (encrypting them, under TLS) and, on
/// plaintext, reads the answers itself.
fn interleaved(plain: &Side, tls: &Side) {
    let rounds = 5;
    println!("\ninterleaved medians of {rounds} rounds (TLS / plaintext, higher is better):");
    for body in [32usize, 4096] {
        for (case, n) in [
            ("sequential", 10_000u64),
            ("64 in flight", 40_000),
            ("64 in flight, set", 40_000),
        ] {
            let run = |s: &Side, n| match case {
                "sequential" => sequential(&s.client, body, n),
                "64 in flight" => pipelined(&s.client, body, 64, n),
                _ => pipeline::pipelined(&s.client, Executor::Set, "echo", body, 64, n),
            };
            run(plain, n / 10);
            run(tls, n / 10);
            let (mut p, mut t) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                p.push(n as f64 / run(plain, n).as_secs_f64());
                t.push(n as f64 / run(tls, n).as_secs_f64());
            }
            let (pm, tm) = (median(p), median(t));
            println!(
                "{:<24} plaintext {pm:>9.0} calls/s   TLS {tm:>9.0} calls/s   ratio {:.2}",
                format!("{case} {body}B"),
                tm / pm
            );
        }
    }
}
