//! The running (old) process's side: listen on the upgrade socket, and for one upgrader at a
//! time hand over every listener, wait for READY, COMMIT, and on ACK tell every source that it
//! is handed off. Any failure before the ACK leaves the old process serving, logged.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::HandoffError;
use super::msg::Msg;
use super::socket::UpgradeSocket;
use super::wire::Channel;
use crate::server::ServerControl;

/// The name of the upgrade socket among the handed-over listeners (reserved).
pub const UPGRADE: &str = "upgrade";
/// The name of a [`ServerControl`]'s listener.
pub const RPC: &str = "rpc";

/// Something whose listeners are handed over: the RPC server, an admin HTTP server, …
pub trait Source: Send + 'static {
    /// The listeners to hand over now, by name (duplicates; they are closed once sent).
    fn lend(&mut self) -> io::Result<Vec<(String, OwnedFd)>>;
    /// The new process accepts on them now: stop accepting (and drain).
    fn handed_off(&mut self);
}

impl Source for ServerControl {
    fn lend(&mut self) -> io::Result<Vec<(String, OwnedFd)>> {
        Ok(vec![(RPC.to_owned(), self.dup_listener()?)])
    }

    fn handed_off(&mut self) {
        ServerControl::handed_off(self);
    }
}

/// A listener the embedding service owns (e.g. an admin port), with what to do once another
/// process accepts on it.
pub struct Named {
    name: String,
    fd: OwnedFd,
    on_handed_off: Option<Box<dyn FnOnce() + Send>>,
}

impl Named {
    /// `fd` (e.g. from `TcpListener::into()`) handed over as `name`; `on_handed_off` runs once
    /// the new process accepts on it.
    pub fn new(
        name: impl Into<String>,
        fd: impl Into<OwnedFd>,
        on_handed_off: impl FnOnce() + Send + 'static,
    ) -> Named {
        Named {
            name: name.into(),
            fd: fd.into(),
            on_handed_off: Some(Box::new(on_handed_off)),
        }
    }
}

impl Source for Named {
    fn lend(&mut self) -> io::Result<Vec<(String, OwnedFd)>> {
        Ok(vec![(self.name.clone(), self.fd.try_clone()?)])
    }

    fn handed_off(&mut self) {
        if let Some(f) = self.on_handed_off.take() {
            f();
        }
    }
}

/// How long the old process waits for each step.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From connect to HELLO.
    pub hello: Duration,
    /// From LISTENERS to READY: the new process's whole startup (default 30 s).
    pub ready: Duration,
    /// From COMMIT to ACK.
    pub ack: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            hello: Duration::from_secs(5),
            ready: Duration::from_secs(30),
            ack: Duration::from_secs(5),
        }
    }
}

/// Serves upgrades on an [`UpgradeSocket`] from a thread of its own.
pub struct Giver {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<u32>>>,
}

impl std::fmt::Debug for Giver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Giver").finish_non_exhaustive()
    }
}

impl Giver {
    /// Starts serving upgrades: each upgrader gets every listener of `sources` and the upgrade
    /// socket itself; after the first committed handoff the thread ends (the socket is the new
    /// process's now).
    pub fn spawn(
        socket: UpgradeSocket,
        sources: Vec<Box<dyn Source>>,
        timeouts: Timeouts,
    ) -> io::Result<Giver> {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicBool::new(false));
        let (flag, done) = (stop.clone(), committed.clone());
        let thread = std::thread::Builder::new()
            .name("gracerpc-upgrade".into())
            .spawn(move || serve(socket, sources, timeouts, &flag, &done))?;
        Ok(Giver {
            stop,
            committed,
            thread: Some(thread),
        })
    }

    /// Whether a handoff was committed (the thread has ended).
    pub fn handed_off(&self) -> bool {
        self.committed.load(Ordering::Acquire)
    }

    /// Stops serving upgrades; returns the pid the listeners were handed to, if they were.
    /// The upgrade socket's path is unlinked if this process still owns it.
    pub fn stop(mut self) -> Option<u32> {
        self.stop.store(true, Ordering::Release);
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for Giver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut socket: UpgradeSocket,
    mut sources: Vec<Box<dyn Source>>,
    timeouts: Timeouts,
    stop: &AtomicBool,
    committed: &AtomicBool,
) -> Option<u32> {
    log::info!("listening for upgrades on {}", socket.path().display());
    while !stop.load(Ordering::Acquire) {
        let stream = match socket.listener().accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(socket.raw(), Duration::from_millis(100));
                continue;
            }
            Err(e) => {
                log::warn!("upgrade socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match give(&socket, stream, &mut sources, timeouts) {
            Ok(pid) => {
                committed.store(true, Ordering::Release);
                for s in &mut sources {
                    s.handed_off();
                }
                socket.disown();
                log::info!(
                    "handoff committed: pid {pid} accepts on our listeners now; draining \
                     (the registry entry stays: it is pid {pid}'s)"
                );
                return Some(pid);
            }
            Err(e) => log::warn!("upgrade failed, still serving: {e}"),
        }
    }
    None
}

/// One upgrade attempt; `Ok(pid)` once the new process acknowledged the COMMIT.
fn give(
    socket: &UpgradeSocket,
    stream: std::os::unix::net::UnixStream,
    sources: &mut [Box<dyn Source>],
    t: Timeouts,
) -> Result<u32, HandoffError> {
    let mut ch = Channel::new(stream)?;
    ch.check_peer()?;
    let pid = match ch.recv("HELLO", t.hello)? {
        (Msg::Hello { pid, .. }, _) => pid,
        (m, _) => {
            return Err(HandoffError::Unexpected {
                got: m.name(),
                expected: "HELLO",
            });
        }
    };
    log::info!("upgrade requested by pid {pid}: handing over our listeners");
    let result = handshake(socket, &mut ch, sources, pid, t);
    if let Err(e) = &result
        && !matches!(
            e,
            HandoffError::Closed { .. } | HandoffError::Aborted { .. }
        )
    {
        let _ = ch.send(
            &Msg::Abort {
                reason: e.to_string(),
            },
            &[],
        );
    }
    result.map(|()| pid)
}

fn handshake(
    socket: &UpgradeSocket,
    ch: &mut Channel,
    sources: &mut [Box<dyn Source>],
    pid: u32,
    t: Timeouts,
) -> Result<(), HandoffError> {
    let mut lent: Vec<(String, OwnedFd)> = Vec::new();
    for s in sources.iter_mut() {
        lent.extend(s.lend().map_err(|source| HandoffError::Io {
            during: "duplicate a listener to hand over",
            source,
        })?);
    }
    let mut names: Vec<String> = lent.iter().map(|(n, _)| n.clone()).collect();
    names.push(UPGRADE.to_owned());
    let mut fds: Vec<_> = lent.iter().map(|(_, fd)| fd.as_fd()).collect();
    fds.push(socket.fd());
    ch.send(
        &Msg::Listeners {
            pid: std::process::id(),
            names,
        },
        &fds,
    )?;
    drop(fds);
    drop(lent); // our duplicates: the originals keep serving
    match ch.recv("READY", t.ready)? {
        (Msg::Ready { .. }, _) => {}
        (m, _) => {
            return Err(HandoffError::Unexpected {
                got: m.name(),
                expected: "READY",
            });
        }
    }
    log::info!("pid {pid} is READY (not accepting yet): COMMIT");
    ch.send(&Msg::Commit, &[])?;
    match ch.recv("ACK", t.ack)? {
        (Msg::Ack { .. }, _) => Ok(()),
        (m, _) => Err(HandoffError::Unexpected {
            got: m.name(),
            expected: "ACK",
        }),
    }
}

fn wait(fd: i32, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
}
