//! Listening sockets inherited as raw file descriptors (from a parent, systemd socket
//! activation, or a listener handoff), checked before a server is built on them.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::os::fd::{FromRawFd, OwnedFd};
//! // SAFETY: fd 3 was passed to us open, and nothing else in this process owns it.
//! let fd = unsafe { OwnedFd::from_raw_fd(3) };
//! let listener = gracerpc::server::inherit::tcp_listener(fd, None)?;
//! let server = gracerpc::server::Server::builder().listener(listener).spawn()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// An address family a listener may be required to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &std::net::SocketAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// Why an inherited file descriptor cannot be served on.
#[derive(Debug)]
#[non_exhaustive]
pub enum InheritError {
    /// The descriptor is not a socket (or not open): pass a listening TCP socket.
    NotASocket {
        /// The descriptor.
        fd: RawFd,
        /// What fstat/getsockopt said.
        source: io::Error,
    },
    /// The socket is not a stream socket of the Internet families (e.g. a Unix or UDP socket).
    NotTcp {
        /// The descriptor.
        fd: RawFd,
        /// Its `SO_DOMAIN` and `SO_TYPE`.
        domain: i32,
        /// Its `SO_TYPE`.
        kind: i32,
    },
    /// The socket is bound but `listen(2)` was never called on it.
    NotListening {
        /// The descriptor.
        fd: RawFd,
    },
    /// The socket is of the other IP family than the one asked for.
    WrongFamily {
        /// The descriptor.
        fd: RawFd,
        /// The family asked for.
        want: Family,
        /// The family it has.
        got: Family,
    },
    /// Setting it non-blocking or reading its address failed.
    Io {
        /// The descriptor.
        fd: RawFd,
        /// The cause.
        source: io::Error,
    },
}

impl fmt::Display for InheritError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritError::NotASocket { fd, source } => write!(
                f,
                "inherited fd {fd} is not a socket ({source}): pass a listening TCP socket"
            ),
            InheritError::NotTcp { fd, domain, kind } => write!(
                f,
                "inherited fd {fd} is not a TCP socket (domain {domain}, type {kind}): \
                 pass a listening TCP socket"
            ),
            InheritError::NotListening { fd } => write!(
                f,
                "inherited fd {fd} is a TCP socket that is not listening: call listen(2) first \
                 (systemd: ListenStream=, not Accept=yes)"
            ),
            InheritError::WrongFamily { fd, want, got } => write!(
                f,
                "inherited fd {fd} listens on {got:?}, but {want:?} was asked for"
            ),
            InheritError::Io { fd, source } => {
                write!(f, "inherited fd {fd}: {source}")
            }
        }
    }
}

impl std::error::Error for InheritError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InheritError::NotASocket { source, .. } | InheritError::Io { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl From<InheritError> for io::Error {
    fn from(e: InheritError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, an int we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Checks that `fd` is a listening TCP socket (`SO_ACCEPTCONN`, `SO_TYPE`, `SO_DOMAIN`; of
/// `family` if given), sets it non-blocking and close-on-exec, and returns it as a listener.
/// On error the descriptor is closed.
pub fn tcp_listener(fd: OwnedFd, family: Option<Family>) -> Result<TcpListener, InheritError> {
    let raw = fd.as_raw_fd();
    let kind = sockopt(raw, libc::SO_TYPE)
        .map_err(|source| InheritError::NotASocket { fd: raw, source })?;
    let domain =
        sockopt(raw, libc::SO_DOMAIN).map_err(|source| InheritError::Io { fd: raw, source })?;
    let got = match domain {
        libc::AF_INET => Family::V4,
        libc::AF_INET6 => Family::V6,
        _ => {
            return Err(InheritError::NotTcp {
                fd: raw,
                domain,
                kind,
            });
        }
    };
    if kind != libc::SOCK_STREAM {
        return Err(InheritError::NotTcp {
            fd: raw,
            domain,
            kind,
        });
    }
    let listening =
        sockopt(raw, libc::SO_ACCEPTCONN).map_err(|source| InheritError::Io { fd: raw, source })?;
    if listening == 0 {
        return Err(InheritError::NotListening { fd: raw });
    }
    if let Some(want) = family
        && want != got
    {
        return Err(InheritError::WrongFamily { fd: raw, want, got });
    }
    set_cloexec(raw).map_err(|source| InheritError::Io { fd: raw, source })?;
    let listener = TcpListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|source| InheritError::Io { fd: raw, source })?;
    Ok(listener)
}

/// Sets `FD_CLOEXEC`, so a process this one spawns does not inherit the descriptor.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; F_GETFD/F_SETFD touch only its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    #[test]
    fn a_listening_socket_is_accepted_and_made_non_blocking() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let l = tcp_listener(OwnedFd::from(l), Some(Family::V4)).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        let e = l.accept().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "must be non-blocking");
    }

    #[test]
    fn bad_descriptors_are_typed_errors() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = tcp_listener(OwnedFd::from(l), Some(Family::V6)).unwrap_err();
        assert!(matches!(e, InheritError::WrongFamily { .. }), "{e}");

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = tcp_listener(OwnedFd::from(udp), None).unwrap_err();
        assert!(matches!(e, InheritError::NotTcp { .. }), "{e}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let e = tcp_listener(OwnedFd::from(file), None).unwrap_err();
        assert!(matches!(e, InheritError::NotASocket { .. }), "{e}");

        // A connected (not listening) TCP socket.
        let srv = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(srv.local_addr().unwrap()).unwrap();
        let e = tcp_listener(OwnedFd::from(s), None).unwrap_err();
        assert!(matches!(e, InheritError::NotListening { .. }), "{e}");

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = tcp_listener(OwnedFd::from(a), None).unwrap_err();
        assert!(matches!(e, InheritError::NotTcp { .. }), "{e}");
    }
}
