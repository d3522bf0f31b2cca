//! `gracerpc serve`: one node with the built-in methods `echo`, `work` and `record`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gracerpc::proto::Status;
use gracerpc::server::{Builder, Failure, Placement, Request, Responder, Server};

use super::timer::Timer;

/// Exit code when the drain budget ran out before every request was answered.
pub const EXIT_DRAIN_TIMEOUT: i32 = 3;
/// Exit code when a second SIGTERM/SIGINT stopped the node before the drain finished.
pub const EXIT_FORCED: i32 = 4;

/// Run one node.
///
/// Methods: `echo` (returns the body), `work` (sleeps --work-ms, then echoes), `record`
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
    /// Drain budget in seconds: how long the close sequence may take.
    #[arg(long, value_parser = crate::cli::seconds, default_value_t = 10.0)]
    drain_timeout: f64,
    /// How long `work` and `record` take, in milliseconds.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// Once ready, ramp the advertised capacity from 10 % to 100 % over this many milliseconds.
    #[arg(long, default_value_t = 0)]
    warmup_ms: u64,
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
    /// Lease TTL in seconds for --register: how long a crashed node stays listed.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    register_ttl: u64,
    /// The address to register, if callers must not use the listening one (e.g. 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<std::net::SocketAddr>,
    /// How `work` and `record` wait their --work-ms: `blocking` sleeps on a worker; `deferred`
    /// hands the responder to a timer thread (no worker held), which writes the audit token and
    /// answers.
    #[arg(long, value_enum, default_value_t = HandlerMode::Blocking)]
    handler_mode: HandlerMode,
}

/// How the built-in methods wait (see `--handler-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HandlerMode {
    /// Sleep on a worker thread.
    Blocking,
    /// A deferred responder completed by a timer.
    Deferred,
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
    let work = Duration::from_millis(args.work_ms);
    let mut builder = Server::builder()
        .listen(args.listen.clone())
        .drain_budget(Duration::from_secs_f64(args.drain_timeout.max(0.0)))
        .warmup(Duration::from_millis(args.warmup_ms))
        .manual_ready()
        .inline_handler("echo", |req: &Request<'_>| Ok(req.body.to_vec()));
    builder = match args.handler_mode {
        HandlerMode::Blocking => blocking(builder, work, audit),
        HandlerMode::Deferred => deferred(builder, work, audit)?,
    };
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
            Duration::from_secs(args.register_ttl.max(1)),
            args.advertise,
        )
        .map_err(std::io::Error::other)?;
    }
    let report = builder.run_with(|handle| {
        handle.ready().set_ready();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {}", handle.local_addr());
        let _ = out.flush();
        log::info!("listening on {}", handle.local_addr());
    })?;
    log::info!("{report}");
    Ok(if report.clean {
        0
    } else if report.forced_by_signal {
        EXIT_FORCED
    } else {
        EXIT_DRAIN_TIMEOUT
    })
}

fn token_of(body: &[u8]) -> Result<[u8; 8], Failure> {
    body.first_chunk::<8>()
        .copied()
        .ok_or_else(|| Failure::new(Status::INVALID_ARGUMENT, "record needs an 8-byte token"))
}

fn write_token(audit: &Option<Arc<File>>, token: &[u8; 8]) -> Result<(), Failure> {
    if let Some(file) = audit {
        // O_APPEND and one write(2) of 8 bytes: concurrent records never interleave.
        (&**file)
            .write_all(token)
            .map_err(|e| Failure::new(Status::APP_ERROR, format!("audit write: {e}")))?;
    }
    Ok(())
}

/// `work` and `record` sleep on a worker.
fn blocking(b: Builder, work: Duration, audit: Option<Arc<File>>) -> Builder {
    b.handler("work", move |req: &Request<'_>| {
        std::thread::sleep(work);
        Ok(req.body.to_vec())
    })
    .handler("record", move |req: &Request<'_>| {
        let token = token_of(req.body)?;
        std::thread::sleep(work);
        write_token(&audit, &token)?;
        Ok(token.to_vec())
    })
}

/// `work` and `record` hand their responder to a timer: no worker waits.
fn deferred(b: Builder, work: Duration, audit: Option<Arc<File>>) -> std::io::Result<Builder> {
    let timer = Timer::start()?;
    let t2 = timer.clone();
    Ok(b.deferred_handler_with(
        "work",
        move |req: &Request<'_>, r: Responder| {
            let body = req.body.to_vec();
            timer.after(work, move || {
                let _ = r.ok(body);
            });
        },
        Placement::Inline,
    )
    .deferred_handler_with(
        "record",
        move |req: &Request<'_>, r: Responder| {
            let token = match token_of(req.body) {
                Ok(t) => t,
                Err(f) => {
                    let _ = r.fail(f);
                    return;
                }
            };
            let audit = audit.clone();
            t2.after(work, move || {
                // A request the server already answered (deadline, cancel) records nothing.
                if r.is_answered() {
                    return;
                }
                let reply = write_token(&audit, &token).map(|()| token.to_vec());
                let _ = r.respond(reply);
            });
        },
        Placement::Inline,
    ))
}
