//! `gracerpc serve`: one node with the built-in methods `echo`, `work` and `record`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gracerpc::admin::AdminServer;
use gracerpc::handoff::{Giver, Named, Source, Takeover, Timeouts, UpgradeSocket};
use gracerpc::proto::Status;
use gracerpc::server::{
    Builder, Failure, Placement, ReadyHandle, Request, Responder, Server, ServerControl,
};
use parking_lot::Mutex;
use sd_notify::NotifyState;

use super::timer::Timer;
use super::upgrade::{ADMIN, notify, respawn_self, start_up};

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
/// With --upgrade PATH the node restarts with no gap: it listens for upgrades on the Unix
/// socket PATH (created 0600), and a new `serve --upgrade PATH` started while it runs takes
/// over automatically — it receives the listening sockets (RPC, and admin with
/// --admin-listen), starts (--startup) without accepting, says READY; the old node commits, the
/// new one accepts, and only then does the old one stop accepting, send GOAWAY and drain
/// (keeping its registry entry, now the new node's). If the new node fails or is not ready
/// within --upgrade-timeout, it exits having accepted nothing and the old one keeps serving.
/// SIGHUP makes the node start its own replacement this way (systemd: ExecReload=kill -HUP
/// $MAINPID). Linux only.
///
/// Under systemd it serves on the socket passed by socket activation (LISTEN_FDS; the one
/// named `rpc`, else the first not named `admin`; the one named `admin` serves the admin
/// endpoint), and notifies READY=1, STOPPING=1 and, after a takeover, MAINPID=.
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
    /// Drain budget: how long the whole close sequence may take, registry withdrawal and the
    /// final linger included (`10s`, `500ms`; a bare number is seconds, like every duration
    /// flag). 0 ends every connection at once on SIGTERM (no RST, but nothing in flight gets
    /// its answer).
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
    /// Listen for upgrades on this Unix socket; if a node already listens there, take over
    /// its listeners (the RPC one, and the admin one if it has one) instead of binding
    /// --listen and --admin-listen.
    #[arg(long, value_name = "PATH")]
    upgrade: Option<PathBuf>,
    /// How long an upgrade may take: the old node waits this long for the new one's READY.
    #[arg(long, value_parser = crate::cli::duration, default_value = "30s", value_name = "DURATION")]
    upgrade_timeout: Duration,
    /// Startup time after binding and before READY (like loading state; e.g. `400ms`).
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    startup: Duration,
    #[arg(long, hide = true, conflicts_with = "startup")]
    startup_ms: Option<u64>,
    /// Spend the startup burning CPU instead of sleeping.
    #[arg(long)]
    startup_burn: bool,
    /// Serve the admin endpoint here (HTTP): /metrics (Prometheus), /readyz (200 once ready,
    /// 503 from the signal on), /livez. Turns per-method latency histograms on.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// On SIGTERM, turn /readyz to 503 at once but keep serving this long before the registry
    /// withdrawal and GOAWAY (for load balancers that poll /readyz).
    #[arg(long, value_parser = crate::cli::duration, default_value = "0s", value_name = "DURATION")]
    unready_delay: Duration,
    /// How `work` and `record` wait their --work-ms: `blocking` sleeps on a worker; `deferred`
    /// hands the responder to a timer thread (no worker held), which writes the audit token and
    /// answers.
    #[arg(long, value_enum, default_value_t = HandlerMode::Blocking)]
    handler_mode: HandlerMode,
    #[command(flatten)]
    tls: super::tls::ServerTlsArgs,
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
    // Listeners first (taken over, from systemd, or bound), so a taken port fails the start
    // instead of a running node.
    let src = super::upgrade::listeners(args.upgrade.as_deref(), args.upgrade_timeout)?;
    let admin_listener =
        match (src.admin, &args.admin_listen) {
            (Some(l), _) => Some(l),
            (None, Some(addr)) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("--admin-listen {addr}: {e}"))
            })?),
            (None, None) => None,
        };
    let work = args.work_ms.map_or(args.work, Duration::from_millis);
    let mut builder = Server::builder()
        .listen(args.listen.clone())
        .drain_budget(args.drain_timeout)
        .warmup(args.warmup_ms.map_or(args.warmup, Duration::from_millis))
        .manual_ready()
        .unready_delay(args.unready_delay)
        .inline_handler("echo", |req: &Request<'_>| Ok(req.body.to_vec()));
    builder = match args.handler_mode {
        HandlerMode::Blocking => blocking(builder, work, audit),
        HandlerMode::Deferred => deferred(builder, work, audit)?,
    };
    if admin_listener.is_some() {
        builder = builder.metrics();
    }
    builder = args.tls.apply(builder)?;
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    if !args.naive {
        builder = builder.handle_signals();
    }
    if let Some(l) = src.rpc {
        builder = builder.listener(l);
    }
    if src.takeover.is_some() {
        builder = builder.accept_paused();
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
    let giver: Arc<Mutex<Option<Giver>>> = Arc::new(Mutex::new(None));
    let admin: Arc<Mutex<Option<AdminServer>>> = Arc::new(Mutex::new(None));
    let start = Startup {
        ms: args
            .startup_ms
            .unwrap_or_else(|| u64::try_from(args.startup.as_millis()).unwrap_or(u64::MAX)),
        burn: args.startup_burn,
        takeover: src.takeover,
        upgrade: src.upgrade,
        timeouts: Timeouts {
            ready: args.upgrade_timeout,
            ..Timeouts::default()
        },
        giver: giver.clone(),
        admin_fd: match &admin_listener {
            Some(l) => Some(l.try_clone()?.into()),
            None => None,
        },
        admin: admin.clone(),
    };
    let stopping = Arc::new(Mutex::new(false));
    if !args.naive {
        watch_signals(args.upgrade.is_some(), giver.clone(), stopping.clone());
    }
    let report = builder.run_with(|handle| {
        if let Some(listener) = admin_listener {
            match super::admin::start(listener, handle) {
                Ok(a) => *admin.lock() = Some(a),
                Err(e) => log::error!("admin endpoint: {e}"),
            }
        }
        let control = handle.control();
        let ready = handle.ready().clone();
        std::thread::spawn(move || start.run(control, ready));
    })?;
    drop(admin.lock().take());
    log::info!("{report}");
    let handed_to = giver.lock().take().and_then(Giver::stop);
    match handed_to {
        Some(pid) => log::info!("exiting: pid {pid} serves our listeners"),
        // The signal thread may not have run before a quick drain ended: say it now (the
        // lock waits for a notification it is sending).
        None => notify_stopping(&stopping),
    }
    Ok(if report.clean {
        0
    } else if report.forced_by_signal {
        EXIT_FORCED
    } else {
        EXIT_DRAIN_TIMEOUT
    })
}

/// What happens between binding and READY, on a thread of its own (the event loop runs on the
/// main thread meanwhile).
struct Startup {
    ms: u64,
    burn: bool,
    takeover: Option<Takeover>,
    upgrade: Option<UpgradeSocket>,
    timeouts: Timeouts,
    giver: Arc<Mutex<Option<Giver>>>,
    /// The admin listener, handed over (as `admin`) with the RPC one on an upgrade.
    admin_fd: Option<OwnedFd>,
    /// The admin endpoint, stopped once a new process accepts on its listener.
    admin: Arc<Mutex<Option<AdminServer>>>,
}

impl Startup {
    fn run(self, control: ServerControl, ready: ReadyHandle) {
        let addr = control.local_addr();
        let takeover = self.takeover;
        let started = start_up(self.ms, self.burn, || {
            takeover
                .as_ref()
                .is_some_and(|t| t.old_gave_up(Duration::ZERO))
        });
        if !started {
            // The old node aborted (or exited): it serves on; we accepted nothing.
            log::error!("upgrade abandoned by the old node while starting: exiting");
            std::process::exit(1);
        }
        ready.set_ready();
        if let Some(t) = takeover {
            let c = control.clone();
            match t.commit(self.timeouts.ack, move || c.start_accepting()) {
                Ok(old) => log::info!("committed: accepting; pid {old} stops accepting and drains"),
                Err(e) => {
                    log::error!("upgrade failed: {e}; exiting having accepted nothing");
                    std::process::exit(1);
                }
            }
        }
        let pid = std::process::id();
        let mainpid = format!("{pid}");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {addr}");
        let _ = out.flush();
        drop(out);
        log::info!("listening on {addr}");
        notify(&[
            NotifyState::MainPid(pid),
            NotifyState::Ready,
            NotifyState::Status(&format!("serving on {addr} (pid {mainpid})")),
        ]);
        if let Some(socket) = self.upgrade {
            let mut sources: Vec<Box<dyn Source>> = vec![Box::new(control)];
            if let Some(fd) = self.admin_fd {
                let admin = self.admin;
                sources.push(Box::new(Named::new(ADMIN, fd, move || {
                    drop(admin.lock().take());
                })));
            }
            match Giver::spawn(socket, sources, self.timeouts) {
                Ok(g) => *self.giver.lock() = Some(g),
                Err(e) => log::error!("cannot serve upgrades: {e}"),
            }
        }
    }
}

/// SIGTERM/SIGINT: tell systemd STOPPING=1 (unless the listeners were handed off: the new
/// process is the service now). SIGHUP with --upgrade: start our replacement.
/// Sends STOPPING=1 once.
fn notify_stopping(sent: &Mutex<bool>) {
    let mut sent = sent.lock();
    if !*sent {
        notify(&[NotifyState::Stopping]);
        *sent = true;
    }
}

fn watch_signals(upgrade: bool, giver: Arc<Mutex<Option<Giver>>>, stopping: Arc<Mutex<bool>>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot watch signals for systemd and SIGHUP: {e}");
            return;
        }
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            match sig {
                SIGHUP if upgrade => match respawn_self() {
                    Ok(pid) => log::info!("SIGHUP: started pid {pid} to take over"),
                    Err(e) => log::error!("SIGHUP: cannot start a replacement: {e}"),
                },
                SIGHUP => log::warn!("SIGHUP ignored: no --upgrade socket"),
                _ => {
                    let handed = giver.lock().as_ref().is_some_and(|g| g.handed_off());
                    if !handed {
                        notify_stopping(&stopping);
                    }
                }
            }
        }
    });
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
