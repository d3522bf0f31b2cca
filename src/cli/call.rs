//! `gracerpc call`: one call, printed.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use gracerpc::client::{CallError, CallOptions, Client};

/// Make one call and print the response body (or the typed error, exit code 1).
///
/// On failure the error says why, per node (connection refused, not a gracerpc server,
/// timed out, draining, overloaded…). A node that refuses connections for 1 s, or that does not
/// speak gracerpc, fails the call at once rather than at the deadline.
///
/// Environment: GRACERPC_LOG=error|warn|info|debug|trace logs what the client does on stderr
/// (default warn); debug shows every connection attempt and why it failed.
#[derive(Args, Debug)]
pub struct CallArgs {
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
    /// The method to call.
    method: String,
    /// The request body (UTF-8 text).
    body: Option<String>,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    deadline_ms: u64,
    /// Mark the call idempotent (retried if its outcome is unknown).
    #[arg(long)]
    idempotent: bool,
}

pub fn run(args: CallArgs) -> i32 {
    crate::logger::init("");
    let builder = match &args.discover {
        Some(url) => match super::registry::discover(Client::builder(), url) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("gracerpc call: {e}");
                return 2;
            }
        },
        None => Client::builder().nodes(args.nodes),
    };
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gracerpc call: {e}");
            return 1;
        }
    };
    let opts = CallOptions::new()
        .deadline(Duration::from_millis(args.deadline_ms))
        .idempotent(args.idempotent);
    let body = args.body.unwrap_or_default();
    let code = match client.call_with(&args.method, body.as_bytes(), &opts) {
        Ok(r) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&r.body);
            let _ = out.write_all(b"\n");
            0
        }
        Err(CallError::NoNodeAvailable { nodes }) if !nodes.is_empty() => {
            eprintln!("error (no_node_available): no node could take the call; it did not run");
            for n in nodes {
                eprintln!("  {}: {}", n.addr, n.cause);
            }
            1
        }
        Err(e) => {
            eprintln!("error ({}): {e}", e.kind());
            1
        }
    };
    client.close(Duration::from_secs(1));
    code
}
