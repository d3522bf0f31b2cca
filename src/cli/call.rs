//! `gracerpc call`: one call, printed.

use std::io::{Read, Write};
use std::time::Duration;

use clap::Args;
use gracerpc::client::{CallError, CallOptions};

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
    #[command(flatten)]
    target: super::registry::NodesArgs,
    /// The method to call.
    method: String,
    /// The request body, optional (empty if left out): text as given, `-` to read it from
    /// stdin, or `@PATH` to read it from a file (bytes, not only UTF-8).
    #[arg(value_name = "BODY")]
    body: Option<String>,
    /// How long the call may take (`5s`, `250ms`; a bare number is seconds).
    #[arg(long, value_parser = crate::cli::duration, default_value = "5s", value_name = "DURATION")]
    deadline: Duration,
    #[arg(long, hide = true, conflicts_with = "deadline")]
    deadline_ms: Option<u64>,
    /// Mark the call idempotent (retried if its outcome is unknown).
    #[arg(long)]
    idempotent: bool,
    #[command(flatten)]
    tls: super::tls::ClientTlsArgs,
}

/// The body as the BODY argument says: text, `-` (stdin) or `@PATH` (a file).
fn read_body(arg: Option<&str>) -> std::io::Result<Vec<u8>> {
    match arg {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut body = Vec::new();
            std::io::stdin().lock().read_to_end(&mut body)?;
            Ok(body)
        }
        Some(a) => match a.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}"))),
            None => Ok(a.as_bytes().to_vec()),
        },
    }
}

pub fn run(args: CallArgs) -> i32 {
    crate::logger::init("");
    let body = match read_body(args.body.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gracerpc call: body: {e}");
            return 2;
        }
    };
    let builder = match args.target.builder() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gracerpc call: {e}");
            return 2;
        }
    };
    let builder = match args.tls.apply(builder) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gracerpc call: {e}");
            return 2;
        }
    };
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gracerpc call: {e}");
            return 1;
        }
    };
    let opts = CallOptions::new()
        .deadline(
            args.deadline_ms
                .map_or(args.deadline, Duration::from_millis),
        )
        .idempotent(args.idempotent);
    let code = match client.call_with(&args.method, &body, &opts) {
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
