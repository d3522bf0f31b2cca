//! `gracerpc serve`: one node with the built-in methods `echo`, `work` and `record`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gracerpc::handoff::{Giver, Takeover, Timeouts, UpgradeSocket};
use gracerpc::proto::Status;
use gracerpc::server::{
    Builder, Failure, Placement, ReadyHandle, Request, Responder, Server, ServerControl,
};
use parking_lot::Mutex;
use sd_notify::NotifyState;

use super::timer::Timer;
use super::upgrade::{notify, respawn_self, start_up};

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
/// With --upgrade PATH the node restarts with no gap: it listens for upgrades on the Unix
/// socket PATH (created 0600), and a new `serve --upgrade PATH` started while it runs takes
/// over automatically — it receives the listening sockets, starts (--startup-ms) without
/// accepting, says READY; the old node commits, the new one accepts, and only then does the old
/// one stop accepting, send GOAWAY and drain (keeping its registry entry, now the new node's).
/// If the new node fails or is not ready within --upgrade-timeout, it exits having accepted
/// nothing and the old one keeps serving. SIGHUP makes the node start its own replacement
/// this way (systemd: ExecReload=kill -HUP $MAINPID). Linux only.
///
/// Under systemd it serves on the socket passed by socket activation (LISTEN_FDS; the one
/// named `rpc`, else the first), and notifies READY=1, STOPPING=1 and, after a takeover,
/// MAINPID=.
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
    /// Drain budget in seconds: how long the whole close sequence may take (registry
    /// withdrawal and the final linger included). 0 ends every connection at once on SIGTERM
    /// (no RST, but nothing in flight gets its answer).
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
    /// Listen for upgrades on this Unix socket; if a node already listens there, take over
    /// its listeners instead of binding --listen.
    #[arg(long, value_name = "PATH")]
    upgrade: Option<PathBuf>,
    /// Seconds an upgrade may take: the old node waits this long for the new one's READY.
    #[arg(long, value_parser = crate::cli::seconds, default_value_t = 30.0)]
    upgrade_timeout: f64,
    /// Startup time after binding and before READY, in milliseconds (like loading state).
    #[arg(long, default_value_t = 0)]
    startup_ms: u64,
    /// Spend --startup-ms burning CPU instead of sleeping.
    #[arg(long)]
    startup_burn: bool,
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
    let upgrade_timeout = Duration::from_secs_f64(args.upgrade_timeout);
    let src = super::upgrade::listeners(args.upgrade.as_deref(), upgrade_timeout)?;
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
            Duration::from_secs(args.register_ttl.max(1)),
            args.advertise,
        )
        .map_err(std::io::Error::other)?;
    }
    let giver: Arc<Mutex<Option<Giver>>> = Arc::new(Mutex::new(None));
    let start = Startup {
        ms: args.startup_ms,
        burn: args.startup_burn,
        takeover: src.takeover,
        upgrade: src.upgrade,
        timeouts: Timeouts {
            ready: upgrade_timeout,
            ..Timeouts::default()
        },
        giver: giver.clone(),
    };
    let stopping = Arc::new(Mutex::new(false));
    if !args.naive {
        watch_signals(args.upgrade.is_some(), giver.clone(), stopping.clone());
    }
    let report = builder.run_with(|handle| {
        let control = handle.control();
        let ready = handle.ready().clone();
        std::thread::spawn(move || start.run(control, ready));
    })?;
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
            match Giver::spawn(socket, vec![Box::new(control)], self.timeouts) {
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
