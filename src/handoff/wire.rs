//! One handoff connection: messages over a Unix stream socket, descriptors as SCM_RIGHTS
//! (through the `sendfd` crate), every wait bounded, the peer's credentials checked.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use sendfd::{RecvWithFd, SendWithFd};

use super::error::{HandoffError, io_err};
use super::msg::{self, MAX_LISTENERS, Msg};
use crate::server::inherit::set_cloexec;

/// A handoff connection.
pub(crate) struct Channel {
    stream: UnixStream,
    input: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

impl Channel {
    pub fn new(stream: UnixStream) -> Result<Channel, HandoffError> {
        stream
            .set_nonblocking(true)
            .map_err(io_err("set the upgrade connection non-blocking"))?;
        Ok(Channel {
            stream,
            input: Vec::new(),
            fds: VecDeque::new(),
        })
    }

    /// The peer's pid and uid; an error unless it is our user or root.
    pub fn check_peer(&self) -> Result<i32, HandoffError> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own.
        let rc = unsafe {
            libc::getsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(HandoffError::Io {
                during: "read the peer's credentials (SO_PEERCRED)",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if cred.uid != me && cred.uid != 0 {
            return Err(HandoffError::Untrusted {
                pid: cred.pid,
                uid: cred.uid,
            });
        }
        Ok(cred.pid)
    }

    /// Sends `m` with `fds` (which must match [`Msg::fd_count`]).
    pub fn send(&mut self, m: &Msg, fds: &[BorrowedFd<'_>]) -> Result<(), HandoffError> {
        let mut bytes = Vec::new();
        msg::encode(m, &mut bytes)?;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        // Blocking for the send: a few hundred bytes into an empty socket buffer.
        self.stream
            .set_nonblocking(false)
            .map_err(io_err("send a handoff message"))?;
        self.stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(io_err("send a handoff message"))?;
        let res = (|| {
            let n = self.stream.send_with_fd(&bytes, &raw)?;
            (&self.stream).write_all(&bytes[n..])
        })();
        let _ = self.stream.set_nonblocking(true);
        res.map_err(|source| HandoffError::Io {
            during: "send a handoff message",
            source,
        })
    }

    /// The next message and the descriptors that came with it, waiting at most `timeout`.
    pub fn recv(
        &mut self,
        waiting_for: &'static str,
        timeout: Duration,
    ) -> Result<(Msg, Vec<OwnedFd>), HandoffError> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((m, n)) = msg::decode(&self.input)? {
                self.input.drain(..n);
                if let Msg::Abort { reason } = m {
                    return Err(HandoffError::Aborted { reason });
                }
                let want = m.fd_count();
                if self.fds.len() < want {
                    return Err(HandoffError::FdCount {
                        names: want,
                        fds: self.fds.len(),
                    });
                }
                let fds = self.fds.drain(..want).collect();
                return Ok((m, fds));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandoffError::Timeout {
                    waiting_for,
                    after: timeout,
                });
            }
            if !wait_readable(self.stream.as_raw_fd(), left)? {
                continue;
            }
            let mut buf = [0u8; 1024];
            let mut fds = [-1 as RawFd; MAX_LISTENERS];
            match self.stream.recv_with_fd(&mut buf, &mut fds) {
                Ok((0, _)) => return Err(HandoffError::Closed { waiting_for }),
                Ok((n, nfds)) => {
                    for &fd in &fds[..nfds] {
                        // SAFETY: the kernel just installed `fd` in our table for us.
                        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                        let _ = set_cloexec(owned.as_raw_fd());
                        // Bounded: a peer cannot make us hold more than one handoff's worth.
                        if self.fds.len() < MAX_LISTENERS {
                            self.fds.push_back(owned);
                        }
                    }
                    if self.input.len() + n > 2 * msg::MAX_PAYLOAD {
                        return Err(HandoffError::Protocol(msg::MsgError::TooLong(
                            self.input.len() + n,
                        )));
                    }
                    self.input.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(HandoffError::Io {
                        during: "receive a handoff message",
                        source,
                    });
                }
            }
        }
    }

    /// Whether the peer has sent something or closed (without consuming it).
    pub fn peer_stirred(&self, timeout: Duration) -> bool {
        wait_readable(self.stream.as_raw_fd(), timeout).unwrap_or(true)
    }
}

/// poll(2) for input (or hang-up) on `fd`, at most `timeout`.
fn wait_readable(fd: RawFd, timeout: Duration) -> Result<bool, HandoffError> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, 60_000) as libc::c_int;
    // SAFETY: one pollfd we own.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(HandoffError::Io {
            during: "wait for the peer",
            source: e,
        });
    }
    Ok(rc > 0)
}
