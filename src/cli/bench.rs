//! `gracerpc bench`: closed-loop load against running nodes, with latency percentiles.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use gracerpc::client::CallOptions;

use super::load::{Load, LoadSpec};
use super::summary::{BenchReport, ProcessCost};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Method {
    Echo,
    Work,
    Record,
}

/// Closed-loop load against running `gracerpc serve` nodes: calls/s and latency percentiles.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    target: super::registry::NodesArgs,
    /// Calls kept in flight.
    #[arg(long, value_parser = crate::cli::concurrency, default_value_t = 1)]
    concurrency: usize,
    /// How long to run (`5s`, `500ms`; a bare number is seconds).
    #[arg(long, value_parser = crate::cli::duration, default_value = "5s", value_name = "DURATION")]
    duration: Duration,
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
    /// Driver threads polling the calls [default: 1]. A driver alone on its connection writes
    /// and reads it itself (no I/O thread hop): one is fastest until its core is busy.
    #[arg(long, value_parser = crate::cli::threads)]
    drivers: Option<usize>,
    /// Connections to each node (1–16) [default: 1]. With several drivers, one per driver
    /// gives each its own connection, which it then reads itself.
    #[arg(long, value_parser = crate::cli::lanes, default_value_t = 1)]
    connections: usize,
    /// Print the report as one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the report as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    json_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: super::tls::ClientTlsArgs,
}

pub fn run(args: BenchArgs) -> i32 {
    crate::logger::init("");
    let builder = match args.target.builder() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gracerpc bench: {e}");
            return 2;
        }
    };
    let builder = match args.tls.apply(builder) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gracerpc bench: {e}");
            return 2;
        }
    };
    let client = match builder
        .replay(!args.no_replay)
        .connections_per_node(args.connections)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gracerpc bench: {e}");
            return 1;
        }
    };
    if let Some(url) = &args.target.discover
        && !super::registry::wait_discovered(&client, Duration::from_secs(10))
    {
        eprintln!("gracerpc bench: no node of {url} became ready in 10 s");
        return 1;
    }
    for addr in &args.target.nodes {
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
        drivers: args.drivers.unwrap_or(1),
        opts: CallOptions::new().idempotent(args.idempotent),
        tokens: matches!(args.method, Method::Record),
        token_base: token_base(),
        records: false,
    };
    let before = ProcessCost::now();
    let load = Load::start(&client, spec);
    let t0 = Instant::now();
    std::thread::sleep(args.duration.max(Duration::from_millis(10)));
    let stopped = load.stop(Duration::from_secs(10));
    let elapsed = t0.elapsed().as_secs_f64();
    let cost = ProcessCost::now().since(before);
    client.close(Duration::from_secs(1));
    let counts = &stopped.tally.counts;
    let rate = counts.sent as f64 / elapsed;
    let report = BenchReport::new(counts, &stopped.tally.latency(), rate).with_cost(cost);
    let json = match serde_json::to_string(&report) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("gracerpc bench: report: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = writeln!(out, "{json}");
    } else {
        let _ = write!(out, "{}", report.table());
    }
    if let Some(path) = &args.json_file
        && let Err(e) = std::fs::write(path, json + "\n")
    {
        eprintln!("gracerpc bench: {}: {e}", path.display());
        return 1;
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
