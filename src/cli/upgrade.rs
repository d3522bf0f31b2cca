//! `serve`'s listener sources and restarts without a gap: take over from a running node
//! (`--upgrade PATH`), systemd socket activation and notifications, a slow start
//! (`--startup-ms`), and re-executing itself on SIGHUP.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gracerpc::handoff::{self, HandoffError, Takeover, UpgradeSocket};
use gracerpc::server::inherit;

/// The name of the admin endpoint's listener in a handoff and under socket activation
/// (FileDescriptorName=admin).
pub const ADMIN: &str = "admin";

/// Where the listeners come from.
pub struct Listeners {
    /// The listener to serve on, if not bound from `--listen`.
    pub rpc: Option<TcpListener>,
    /// The admin endpoint's listener, if not bound from `--admin-listen`.
    pub admin: Option<TcpListener>,
    /// A handoff in progress: serve paused, commit once started.
    pub takeover: Option<Takeover>,
    /// The upgrade socket to serve the next upgrade on.
    pub upgrade: Option<UpgradeSocket>,
}

/// With `--upgrade PATH`: take over from the node on PATH if one answers, else create PATH.
/// Without it: systemd's socket (LISTEN_FDS), if any.
pub fn listeners(upgrade: Option<&Path>, timeout: Duration) -> std::io::Result<Listeners> {
    let mut out = Listeners {
        rpc: None,
        admin: None,
        takeover: None,
        upgrade: None,
    };
    if let Some(path) = upgrade {
        match handoff::take_over(path, timeout) {
            Ok(mut t) => {
                log::info!(
                    "taking over from pid {} on {}: received {:?}",
                    t.old_pid(),
                    path.display(),
                    t.names()
                );
                out.rpc = Some(t.tcp_listener(handoff::RPC, None)?);
                if t.names().contains(&ADMIN) {
                    out.admin = Some(t.tcp_listener(ADMIN, None)?);
                }
                out.upgrade = Some(t.upgrade_socket(path)?);
                out.takeover = Some(t);
                return Ok(out);
            }
            Err(HandoffError::NoUpgradeSocket { .. }) => {
                log::info!("no node on {}: starting fresh", path.display());
            }
            Err(e) => return Err(e.into()),
        }
    }
    (out.rpc, out.admin) = systemd_listeners()?;
    if let Some(path) = upgrade {
        out.upgrade = Some(UpgradeSocket::bind(path)?);
    }
    Ok(out)
}

/// The sockets systemd passed (LISTEN_FDS, for this pid): the RPC one named `rpc`
/// (FileDescriptorName=rpc), else the first not named `admin`; and the one named `admin`.
fn systemd_listeners() -> std::io::Result<(Option<TcpListener>, Option<TcpListener>)> {
    let fds: Vec<(i32, String)> = sd_notify::listen_fds_with_names()?.collect();
    let pick = fds
        .iter()
        .position(|(_, n)| n == handoff::RPC)
        .or_else(|| fds.iter().position(|(_, n)| n != ADMIN));
    let (mut rpc, mut admin) = (None, None);
    for (i, (fd, name)) in fds.into_iter().enumerate() {
        // SAFETY: systemd passed these descriptors to this pid (LISTEN_PID checked by
        // sd_notify); nothing else in this process owns them.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if Some(i) == pick {
            log::info!("socket activation: serving on fd {fd} ({name})");
            rpc = Some(inherit::tcp_listener(owned, None)?);
        } else if name == ADMIN && admin.is_none() {
            log::info!("socket activation: admin endpoint on fd {fd}");
            admin = Some(inherit::tcp_listener(owned, None)?);
        }
    }
    Ok((rpc, admin))
}

/// The startup work before READY: sleep, or burn CPU (`burn`), for `ms`. Returns early with
/// `false` if `give_up` says so (the old node aborted the handoff).
pub fn start_up(ms: u64, burn: bool, mut give_up: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while Instant::now() < end {
        if give_up() {
            return false;
        }
        if burn {
            let slice = Instant::now() + Duration::from_millis(5);
            while Instant::now() < slice {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
        } else {
            let left = end.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(5)));
        }
    }
    !give_up()
}

/// Tells systemd (if it runs us: NOTIFY_SOCKET) something; failures are only logged.
pub fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("sd_notify: {e}");
    }
}

/// Starts this same command again (for SIGHUP with `--upgrade`): the new process finds this
/// one on the upgrade path and takes over. Not waited for: it outlives this process.
pub fn respawn_self() -> std::io::Result<u32> {
    let exe: PathBuf = std::env::current_exe()?;
    let child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(child.id())
}
