//! `gracerpc serve`: one node with the built-in methods `echo`, `work` and `record`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gracerpc::proto::Status;
use gracerpc::server::{Failure, Request, Server};

/// Exit code when the drain budget ran out before every request was answered.
pub const EXIT_DRAIN_TIMEOUT: i32 = 3;
/// Exit code when a second SIGTERM/SIGINT stopped the node before the drain finished.
pub const EXIT_FORCED: i32 = 4;

/// Run one node.
///
/// Methods: `echo` (returns the body), `work` (sleeps --work, then echoes), `record`
/// (non-idempotent: appends the 8-byte token at the start of the body to the audit file once per
/// execution, written before the response is sent).
///
/// Prints `ready <addr>` on stdout once it takes requests. On SIGTERM or SIGINT it runs the close
/// sequence (GOAWAY, answer what was accepted, wait for callers to close) and exits.
///
/// With --register etcd://HOST:PORT/SERVICE the node registers itself in etcd under a lease once
/// it is ready, and on SIGTERM revokes the lease before sending GOAWAY (waiting for etcd at most
/// 500 ms). Needs a build with `--features etcd`.
///
/// Exit codes: 0 drained cleanly; 1 could not start; 2 bad arguments; 3 the drain budget ran out
/// (requests abandoned or callers did not close in time); 4 a second SIGTERM/SIGINT forced the
/// exit. With --naive, SIGTERM kills the process at once (no exit code of its own).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Worker threads (default: available cores).
    #[arg(long, value_parser = crate::cli::threads)]
    workers: Option<usize>,
    /// Drain budget: how long the close sequence may take (`10s`, `500ms`; a bare number is
    /// seconds, like every duration flag).
    #[arg(long, value_parser = crate::cli::duration, default_value = "10s", value_name = "DURATION")]
    drain_timeout: Duration,
    /// How long `work` and `record` take (e.g. `5ms`).
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    work: Duration,
    #[arg(long, hide = true, conflicts_with = "work")]
    work_ms: Option<u64>,
    /// Once ready, ramp the advertised capacity from 10 % to 100 % over this long.
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    warmup: Duration,
    #[arg(long, hide = true, conflicts_with = "warmup")]
    warmup_ms: Option<u64>,
    /// File that `record` appends each executed token to.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Exit at once on SIGTERM: no GOAWAY, no drain. Exists only to show the contrast.
    #[arg(long)]
    naive: bool,
    /// Register in a registry once ready, deregister before GOAWAY:
    /// etcd://HOST:PORT/SERVICE (needs the `etcd` feature).
    #[arg(long, value_name = "URL")]
    register: Option<String>,
    /// Lease TTL for --register (whole seconds, at least 1): how long a crashed node stays
    /// listed.
    #[arg(long, value_parser = crate::cli::duration, default_value = "5s", value_name = "DURATION")]
    register_ttl: Duration,
    /// The address to register, if callers must not use the listening one (e.g. 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<std::net::SocketAddr>,
    /// Serve the admin endpoint here (HTTP): /metrics (Prometheus), /readyz (200 once ready,
    /// 503 from the signal on), /livez. Turns per-method latency histograms on.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// On SIGTERM, turn /readyz to 503 at once but keep serving this long before the registry
    /// withdrawal and GOAWAY (for load balancers that poll /readyz).
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    unready_delay: Duration,
}

pub fn run(args: ServeArgs) -> i32 {
    crate::logger::init(&format!("[serve {}] ", std::process::id()));
    match serve(args) {
        Ok(code) => code,
        Err(e) => {
            log::error!("gracerpc serve: {e}");
            1
        }
    }
}

fn serve(args: ServeArgs) -> std::io::Result<i32> {
    let audit: Option<Arc<File>> = match &args.audit {
        Some(path) => Some(Arc::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        )),
        None => None,
    };
    // Bound first, so a taken port fails the start instead of a running node.
    let admin_listener =
        match &args.admin_listen {
            Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("--admin-listen {addr}: {e}"))
            })?),
            None => None,
        };
    let work = args.work_ms.map_or(args.work, Duration::from_millis);
    let mut builder = Server::builder()
        .listen(args.listen.clone())
        .drain_budget(args.drain_timeout)
        .warmup(args.warmup_ms.map_or(args.warmup, Duration::from_millis))
        .manual_ready()
        .unready_delay(args.unready_delay)
        .inline_handler("echo", |req: &Request<'_>| Ok(req.body.to_vec()))
        .handler("work", move |req: &Request<'_>| {
            std::thread::sleep(work);
            Ok(req.body.to_vec())
        })
        .handler("record", move |req: &Request<'_>| {
            let Some(token) = req.body.first_chunk::<8>() else {
                return Err(Failure::new(
                    Status::INVALID_ARGUMENT,
                    "record needs an 8-byte token",
                ));
            };
            std::thread::sleep(work);
            if let Some(file) = &audit {
                // O_APPEND and one write(2) of 8 bytes: concurrent records never interleave.
                (&**file)
                    .write_all(token)
                    .map_err(|e| Failure::new(Status::APP_ERROR, format!("audit write: {e}")))?;
            }
            Ok(token.to_vec())
        });
    if admin_listener.is_some() {
        builder = builder.metrics();
    }
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    if !args.naive {
        builder = builder.handle_signals();
    }
    if let Some(url) = &args.register {
        builder = super::registry::register(
            builder,
            url,
            Duration::from_secs(args.register_ttl.as_secs().max(1)),
            args.advertise,
        )
        .map_err(std::io::Error::other)?;
    }
    let mut admin = None;
    let report = builder.run_with(|handle| {
        if let Some(listener) = admin_listener {
            match super::admin::start(listener, handle) {
                Ok(a) => admin = Some(a),
                Err(e) => log::error!("admin endpoint: {e}"),
            }
        }
        handle.ready().set_ready();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {}", handle.local_addr());
        let _ = out.flush();
        log::info!("listening on {}", handle.local_addr());
    })?;
    drop(admin);
    log::info!("{report}");
    Ok(if report.clean {
        0
    } else if report.forced_by_signal {
        EXIT_FORCED
    } else {
        EXIT_DRAIN_TIMEOUT
    })
}
