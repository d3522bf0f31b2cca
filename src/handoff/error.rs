//! What can go wrong in a handoff, typed.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::msg::MsgError;
use crate::server::inherit::InheritError;

/// Why a listener handoff did not happen. On every one of these the old process keeps
/// serving (its listeners are untouched); the new one has accepted nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoffError {
    /// Nothing listens on the upgrade path (no file, or a stale socket of a dead process):
    /// start without a handoff.
    NoUpgradeSocket {
        /// The path.
        path: PathBuf,
        /// What connect(2) said.
        source: io::Error,
    },
    /// A socket operation failed.
    Io {
        /// What was being done.
        during: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The peer sent bytes that are not the handoff protocol.
    Protocol(MsgError),
    /// The peer runs as another user (SO_PEERCRED): only the same user or root may take over.
    Untrusted {
        /// The peer's pid.
        pid: i32,
        /// The peer's uid.
        uid: u32,
    },
    /// The peer sent a message out of turn.
    Unexpected {
        /// What came.
        got: &'static str,
        /// What was awaited.
        expected: &'static str,
    },
    /// The peer gave up, saying why.
    Aborted {
        /// Its reason.
        reason: String,
    },
    /// The peer did not send the next message in time.
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// The peer closed the connection (it exited, or crashed).
    Closed {
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// LISTENERS named a different number of listeners than descriptors came with it.
    FdCount {
        /// Names in the message.
        names: usize,
        /// Descriptors received.
        fds: usize,
    },
    /// A listener this process needs was not among those handed over.
    MissingListener {
        /// Its name.
        name: String,
    },
    /// A descriptor handed over is not a listening TCP socket.
    BadListener {
        /// Its name.
        name: String,
        /// What is wrong with it.
        source: InheritError,
    },
    /// A handoff is already in progress on this upgrade socket (try again once it ends).
    Busy,
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::NoUpgradeSocket { path, source } => write!(
                f,
                "no running node listens for upgrades on {} ({source}): starting fresh",
                path.display()
            ),
            HandoffError::Io { during, source } => write!(f, "handoff: {during}: {source}"),
            HandoffError::Protocol(e) => write!(f, "handoff: {e}"),
            HandoffError::Untrusted { pid, uid } => write!(
                f,
                "handoff refused: peer pid {pid} runs as uid {uid}, neither our user nor root"
            ),
            HandoffError::Unexpected { got, expected } => {
                write!(f, "handoff: got {got} while waiting for {expected}")
            }
            HandoffError::Aborted { reason } => write!(f, "handoff aborted by the peer: {reason}"),
            HandoffError::Timeout { waiting_for, after } => write!(
                f,
                "handoff: no {waiting_for} within {} ms",
                after.as_millis()
            ),
            HandoffError::Closed { waiting_for } => write!(
                f,
                "handoff: the peer closed the connection before {waiting_for} (it exited?)"
            ),
            HandoffError::FdCount { names, fds } => write!(
                f,
                "handoff: LISTENERS named {names} listeners but carried {fds} descriptors"
            ),
            HandoffError::MissingListener { name } => write!(
                f,
                "handoff: the running node handed over no listener named `{name}`"
            ),
            HandoffError::BadListener { name, source } => {
                write!(f, "handoff: listener `{name}`: {source}")
            }
            HandoffError::Busy => write!(
                f,
                "handoff refused: another upgrade is in progress; retry when it has ended"
            ),
        }
    }
}

impl std::error::Error for HandoffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandoffError::NoUpgradeSocket { source, .. } | HandoffError::Io { source, .. } => {
                Some(source)
            }
            HandoffError::Protocol(e) => Some(e),
            HandoffError::BadListener { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<HandoffError> for io::Error {
    fn from(e: HandoffError) -> io::Error {
        io::Error::other(e)
    }
}

impl From<MsgError> for HandoffError {
    fn from(e: MsgError) -> HandoffError {
        HandoffError::Protocol(e)
    }
}

pub(crate) fn io_err(during: &'static str) -> impl FnOnce(io::Error) -> HandoffError {
    move |source| HandoffError::Io { during, source }
}
