//! `gracerpc bench`: closed-loop load against running nodes, with latency percentiles.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use gracerpc::client::{CallOptions, Client};

use super::load::{Load, LoadSpec};
use super::summary::{Counts, Json, Latency, json_map};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Method {
    Echo,
    Work,
    Record,
}

/// Closed-loop load against running `gracerpc serve` nodes: calls/s and latency percentiles.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated node addresses (host:port; a host name such as localhost is resolved).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = crate::cli::node_addr,
        required_unless_present = "discover"
    )]
    nodes: Vec<std::net::SocketAddr>,
    /// Find the nodes in a registry instead: etcd://HOST:PORT/SERVICE (needs the `etcd`
    /// feature).
    #[arg(long, value_name = "URL", conflicts_with = "nodes")]
    discover: Option<String>,
    /// Calls kept in flight.
    #[arg(long, value_parser = crate::cli::concurrency, default_value_t = 1)]
    concurrency: usize,
    /// How long to run, in seconds.
    #[arg(long, value_parser = crate::cli::seconds, default_value_t = 5.0)]
    duration: f64,
    /// The method to call (`record` puts a fresh unique token in every call).
    #[arg(long, value_enum, default_value = "echo")]
    method: Method,
    /// Body size in bytes.
    #[arg(long, value_parser = crate::cli::payload, default_value_t = 32)]
    payload: usize,
    /// Mark calls idempotent.
    #[arg(long)]
    idempotent: bool,
    /// Turn replay off (to see what graceful shutdown saves).
    #[arg(long)]
    no_replay: bool,
    /// Driver threads polling the calls (default: 1 per 32 calls in flight, at most 2).
    #[arg(long, value_parser = crate::cli::threads)]
    drivers: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> i32 {
    crate::logger::init("");
    let builder = match &args.discover {
        Some(url) => match super::registry::discover(Client::builder(), url) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("gracerpc bench: {e}");
                return 2;
            }
        },
        None => Client::builder().nodes(args.nodes.clone()),
    };
    let client = match builder.replay(!args.no_replay).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gracerpc bench: {e}");
            return 1;
        }
    };
    if let Some(url) = &args.discover
        && !super::registry::wait_discovered(&client, Duration::from_secs(10))
    {
        eprintln!("gracerpc bench: no node of {url} became ready in 10 s");
        return 1;
    }
    for addr in &args.nodes {
        if !client.wait_ready(*addr, Duration::from_secs(5)) {
            eprintln!("gracerpc bench: node {addr} is not ready");
            return 1;
        }
    }
    let method = match args.method {
        Method::Echo => "echo",
        Method::Work => "work",
        Method::Record => "record",
    };
    let spec = LoadSpec {
        method: method.into(),
        payload: args.payload,
        concurrency: args.concurrency.max(1),
        drivers: args.drivers.unwrap_or(args.concurrency.div_ceil(32).min(2)),
        opts: CallOptions::new().idempotent(args.idempotent),
        tokens: matches!(args.method, Method::Record),
        token_base: token_base(),
    };
    let load = Load::start(&client, spec);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.duration.max(0.01)));
    let (records, _) = load.stop(Duration::from_secs(10));
    let elapsed = t0.elapsed().as_secs_f64();
    client.close(Duration::from_secs(1));
    let counts = Counts::of(&records);
    let lat = Latency::of(&records);
    let rate = counts.sent as f64 / elapsed;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut j = Json::new();
        j.num("sent", counts.sent)
            .num("ok", counts.ok)
            .num("failed", counts.failed)
            .raw(
                "failed_by_kind",
                &json_map(counts.failed_by_kind.iter().map(|(k, v)| (*k, *v))),
            )
            .num("outcome_unknown", counts.outcome_unknown)
            .num("replayed", counts.replayed)
            .num("calls_per_s", format!("{rate:.1}"))
            .num("p50_us", lat.p50)
            .num("p99_us", lat.p99)
            .num("p999_us", lat.p999)
            .num("max_us", lat.max);
        let _ = writeln!(out, "{}", j.finish());
    } else {
        let _ = writeln!(out, "calls/s      {rate:.0}");
        let _ = writeln!(
            out,
            "latency us   p50 {}  p99 {}  p99.9 {}  max {}",
            lat.p50, lat.p99, lat.p999, lat.max
        );
        let _ = writeln!(
            out,
            "calls        sent {}  ok {}  failed {}  outcome unknown {}  replayed {}",
            counts.sent, counts.ok, counts.failed, counts.outcome_unknown, counts.replayed
        );
        for (k, v) in &counts.failed_by_kind {
            let _ = writeln!(out, "  failed {k}: {v}");
        }
    }
    i32::from(counts.failed > 0)
}

/// A token base unlikely to collide with another run's tokens in the same audit file.
pub fn token_base() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos & 0xffff_ffff) << 32
}
