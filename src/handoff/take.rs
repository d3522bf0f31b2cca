//! The new process's side: connect to the upgrade socket, receive the listeners, start
//! (without accepting), say READY, and on COMMIT start accepting and ACK.

use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::error::HandoffError;
use super::give::UPGRADE;
use super::msg::{Msg, VERSION};
use super::socket::UpgradeSocket;
use super::wire::Channel;
use crate::server::inherit::{self, Family};

/// Listeners received from a running node, not yet committed: nothing has been accepted on
/// them by this process, and the old process still accepts.
pub struct Takeover {
    ch: Channel,
    old_pid: u32,
    listeners: Vec<(String, OwnedFd)>,
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Takeover")
            .field("old_pid", &self.old_pid)
            .field(
                "listeners",
                &self.listeners.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Connects to the node listening for upgrades on `path` and receives its listeners, waiting
/// at most `timeout` for them (the old node serves one upgrade at a time: a second upgrader
/// waits for the first to end). [`HandoffError::NoUpgradeSocket`] if no node listens there.
pub fn take_over(path: impl AsRef<Path>, timeout: Duration) -> Result<Takeover, HandoffError> {
    let path = path.as_ref();
    let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            HandoffError::NoUpgradeSocket {
                path: path.to_path_buf(),
                source,
            }
        }
        _ => HandoffError::Io {
            during: "connect to the upgrade socket",
            source,
        },
    })?;
    let mut ch = Channel::new(stream)?;
    ch.check_peer()?;
    ch.send(
        &Msg::Hello {
            version: VERSION,
            pid: std::process::id(),
        },
        &[],
    )?;
    match ch.recv("LISTENERS", timeout)? {
        (Msg::Listeners { pid, names }, fds) => Ok(Takeover {
            ch,
            old_pid: pid,
            listeners: names.into_iter().zip(fds).collect(),
        }),
        (m, _) => Err(HandoffError::Unexpected {
            got: m.name(),
            expected: "LISTENERS",
        }),
    }
}

impl Takeover {
    /// The old process's pid.
    pub fn old_pid(&self) -> u32 {
        self.old_pid
    }

    /// The names of the listeners received.
    pub fn names(&self) -> Vec<&str> {
        self.listeners.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Takes the descriptor of listener `name`.
    pub fn take(&mut self, name: &str) -> Result<OwnedFd, HandoffError> {
        let i = self
            .listeners
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| HandoffError::MissingListener {
                name: name.to_owned(),
            })?;
        Ok(self.listeners.remove(i).1)
    }

    /// Takes listener `name`, checked to be a listening TCP socket (of `family` if given).
    pub fn tcp_listener(
        &mut self,
        name: &str,
        family: Option<Family>,
    ) -> Result<TcpListener, HandoffError> {
        let fd = self.take(name)?;
        inherit::tcp_listener(fd, family).map_err(|source| HandoffError::BadListener {
            name: name.to_owned(),
            source,
        })
    }

    /// Takes the upgrade socket at `path` itself, to serve the next upgrade once committed.
    pub fn upgrade_socket(
        &mut self,
        path: impl AsRef<Path>,
    ) -> Result<UpgradeSocket, HandoffError> {
        let fd = self.take(UPGRADE)?;
        UpgradeSocket::inherited(fd, path)
    }

    /// Whether the old process has given up (sent ABORT or closed) — poll it while starting,
    /// to stop at once instead of at READY.
    pub fn old_gave_up(&self, wait: Duration) -> bool {
        self.ch.peer_stirred(wait)
    }

    /// Says READY, waits at most `timeout` for COMMIT, calls `start_accepting`, and
    /// acknowledges. Returns the old pid. On an error nothing was accepted by this process
    /// unless `start_accepting` itself had succeeded (then the error is the ACK's send, and
    /// both processes accept from the same queue until the old one learns otherwise).
    pub fn commit(
        mut self,
        timeout: Duration,
        start_accepting: impl FnOnce() -> io::Result<()>,
    ) -> Result<u32, HandoffError> {
        let me = std::process::id();
        self.ch.send(&Msg::Ready { pid: me }, &[])?;
        match self.ch.recv("COMMIT", timeout)? {
            (Msg::Commit, _) => {}
            (m, _) => {
                return Err(HandoffError::Unexpected {
                    got: m.name(),
                    expected: "COMMIT",
                });
            }
        }
        if let Err(e) = start_accepting() {
            let _ = self.ch.send(
                &Msg::Abort {
                    reason: format!("pid {me} could not start accepting: {e}"),
                },
                &[],
            );
            return Err(HandoffError::Io {
                during: "start accepting after COMMIT",
                source: e,
            });
        }
        self.ch.send(&Msg::Ack { pid: me }, &[])?;
        Ok(self.old_pid)
    }

    /// Gives up: tells the old process why (it keeps serving).
    pub fn abort(mut self, reason: &str) {
        let _ = self.ch.send(
            &Msg::Abort {
                reason: reason.to_owned(),
            },
            &[],
        );
    }
}
