//! The error a call returns. Every variant says whether the request may have run.

use std::fmt;

use super::cause::NodeReport;
use crate::proto::{ApiMisuse, RejectReason, Status};

/// Why a call did not return a successful response.
///
/// `Debug` prints bodies as text when they are UTF-8 (and as bytes otherwise).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The deadline passed before an answer came. If the request had been written, it may have
    /// run (a non-idempotent call is then "may have run", never "failed").
    DeadlineExceeded {
        /// Whether a server may have read and run the request.
        may_have_run: bool,
    },
    /// No node could take the call: before the deadline, or sooner when every node listed is
    /// hopeless (it failed the handshake — not a gracerpc server — or has refused connections
    /// for 1 s, counted from its first refusal). It never ran. `nodes` says why each node
    /// could not take it (empty: no node is listed at all).
    NoNodeAvailable {
        /// Each listed node and its cause.
        nodes: Vec<NodeReport>,
    },
    /// The handler ran and answered with a status other than OK.
    Status {
        /// The handler's status.
        status: Status,
        /// The handler's detail.
        body: Vec<u8>,
    },
    /// The connection ended after the request was written and before its answer: it may or may
    /// not have run. Only idempotent calls are retried in this case; an idempotent call whose
    /// retry then could not complete (client closed, rejected everywhere) also ends here.
    OutcomeUnknown,
    /// Every replay the call was allowed was rejected (overload or shutdown everywhere). It never
    /// ran.
    Rejected,
    /// The request itself is invalid (method name, size). It never ran.
    Invalid(ApiMisuse),
    /// The client is closed. It never ran.
    Closed,
    /// The server refused the request: it did not run, and no other node would run it either
    /// (unknown method, a body that does not decode, an idempotency flag the method does not
    /// allow, a caller not permitted). Fix the call; replaying it is pointless.
    Refused {
        /// The refusal status ([`Status::is_refusal`]).
        status: Status,
        /// The server's detail.
        body: Vec<u8>,
    },
    /// Nodes turned the request away as busy (OVERLOADED or NOT_READY, given in `reason`) and
    /// the client's budget of busy replays is spent: the cluster turns away more calls than it
    /// answers, and replaying would only add load. It never ran; back off before trying again.
    Busy {
        /// The last node's reason.
        reason: RejectReason,
    },
    /// The client's I/O thread stopped (`cause`: a bug that panicked, or a failed poll), so the
    /// client can make no more calls: build a new one. `may_have_run` says whether the request
    /// had been sent.
    IoFailed {
        /// Why the thread stopped.
        cause: String,
        /// Whether a server may have read and run the request.
        may_have_run: bool,
    },
}

impl CallError {
    /// Whether the request may have run on some node. `false` means it provably did not, and
    /// sending it again is safe.
    pub fn may_have_run(&self) -> bool {
        match self {
            CallError::DeadlineExceeded { may_have_run }
            | CallError::IoFailed { may_have_run, .. } => *may_have_run,
            CallError::Status { .. } | CallError::OutcomeUnknown => true,
            CallError::NoNodeAvailable { .. }
            | CallError::Rejected
            | CallError::Invalid(_)
            | CallError::Closed
            | CallError::Refused { .. }
            | CallError::Busy { .. } => false,
        }
    }

    /// A short stable name for the kind of error, for reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::DeadlineExceeded { .. } => "deadline_exceeded",
            CallError::NoNodeAvailable { .. } => "no_node_available",
            CallError::Status { .. } => "status",
            CallError::OutcomeUnknown => "outcome_unknown",
            CallError::Rejected => "rejected",
            CallError::Invalid(_) => "invalid",
            CallError::Closed => "closed",
            CallError::Refused { .. } => "refused",
            CallError::Busy { .. } => "busy",
            CallError::IoFailed { .. } => "io_failed",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::DeadlineExceeded { may_have_run: true } => {
                f.write_str("deadline exceeded after the request was sent: it may have run")
            }
            CallError::DeadlineExceeded {
                may_have_run: false,
            } => f.write_str("deadline exceeded before the request was sent: it did not run"),
            CallError::NoNodeAvailable { nodes } if nodes.is_empty() => f.write_str(
                "no node is listed (check the node list or discovery): the request did not run",
            ),
            CallError::NoNodeAvailable { nodes } => {
                f.write_str("no node could take the call, the request did not run: ")?;
                for (i, n) in nodes.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
            CallError::Status { status, body } => {
                write!(
                    f,
                    "handler answered {status}: {}",
                    String::from_utf8_lossy(body)
                )
            }
            CallError::OutcomeUnknown => f.write_str(
                "connection lost after the request was sent: it may or may not have run \
                 (retried only if the call is idempotent)",
            ),
            CallError::Rejected => {
                f.write_str("every node rejected the request (it did not run); try again later")
            }
            CallError::Invalid(e) => write!(f, "invalid request: {e}"),
            CallError::Closed => f.write_str("the client is closed: the request did not run"),
            CallError::Refused { status, body } => write!(
                f,
                "the server refused the request ({status}: {}); it did not run, and replaying \
                 it will not help",
                String::from_utf8_lossy(body)
            ),
            CallError::Busy { reason } => write!(
                f,
                "the nodes are busy ({reason}) and the client's replay budget is spent: the \
                 request did not run; back off and try again later"
            ),
            CallError::IoFailed {
                cause,
                may_have_run,
            } => write!(
                f,
                "the client's I/O thread stopped ({cause}): the request {}; build a new client",
                if *may_have_run {
                    "may have run"
                } else {
                    "did not run"
                }
            ),
        }
    }
}

/// A body in `Debug` output: its text when it is UTF-8, its bytes otherwise.
struct BodyDebug<'a>(&'a [u8]);

impl fmt::Debug for BodyDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(text) => fmt::Debug::fmt(text, f),
            Err(_) => fmt::Debug::fmt(self.0, f),
        }
    }
}

impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::DeadlineExceeded { may_have_run } => f
                .debug_struct("DeadlineExceeded")
                .field("may_have_run", may_have_run)
                .finish(),
            CallError::NoNodeAvailable { nodes } => f
                .debug_struct("NoNodeAvailable")
                .field("nodes", nodes)
                .finish(),
            CallError::Status { status, body } => f
                .debug_struct("Status")
                .field("status", status)
                .field("body", &BodyDebug(body))
                .finish(),
            CallError::OutcomeUnknown => f.write_str("OutcomeUnknown"),
            CallError::Rejected => f.write_str("Rejected"),
            CallError::Invalid(e) => f.debug_tuple("Invalid").field(e).finish(),
            CallError::Closed => f.write_str("Closed"),
            CallError::Refused { status, body } => f
                .debug_struct("Refused")
                .field("status", status)
                .field("body", &BodyDebug(body))
                .finish(),
            CallError::Busy { reason } => f.debug_struct("Busy").field("reason", reason).finish(),
            CallError::IoFailed {
                cause,
                may_have_run,
            } => f
                .debug_struct("IoFailed")
                .field("cause", cause)
                .field("may_have_run", may_have_run)
                .finish(),
        }
    }
}

impl std::error::Error for CallError {}
