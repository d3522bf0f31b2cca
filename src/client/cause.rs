//! Why a node cannot take a call: recorded by the I/O thread as connections fail, read by a
//! call that found no node, so that `CallError::NoNodeAvailable` names each node's cause.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why one node could not take a call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeCause {
    /// Its address refused connections: nothing listens there (yet).
    Refused,
    /// Connecting to it, or waiting for its HELLO, timed out.
    TimedOut,
    /// It accepted the connection but does not speak gracerpc (or an incompatible version):
    /// its first bytes were not a valid HELLO. Check the address.
    HandshakeFailed(String),
    /// Connecting failed for another reason (unreachable network, reset, …).
    ConnectFailed(String),
    /// Its connection ended before it was ready, or it went down.
    ConnectionLost(String),
    /// Connected, and waiting for the server's HELLO or READY.
    NotReady,
    /// It is shutting down (GOAWAY): it takes no new calls.
    Draining,
    /// It turned calls away as busy (OVERLOADED, NOT_READY) just now.
    Overloaded,
    /// It does not read what is sent to it: its connection's output is full.
    NotReading,
}

impl fmt::Display for NodeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeCause::Refused => f.write_str("connection refused (is the server running?)"),
            NodeCause::TimedOut => f.write_str("timed out connecting or waiting for its HELLO"),
            NodeCause::HandshakeFailed(e) => write!(f, "not a gracerpc server (bad HELLO: {e})"),
            NodeCause::ConnectFailed(e) => write!(f, "cannot connect: {e}"),
            NodeCause::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            NodeCause::NotReady => f.write_str("connected, not ready yet"),
            NodeCause::Draining => f.write_str("shutting down (GOAWAY)"),
            NodeCause::Overloaded => f.write_str("overloaded"),
            NodeCause::NotReading => f.write_str("not reading its input"),
        }
    }
}

/// One node in a [`CallError::NoNodeAvailable`](super::CallError::NoNodeAvailable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The node.
    pub addr: SocketAddr,
    /// Why it could not take the call.
    pub cause: NodeCause,
}

impl fmt::Display for NodeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.addr, self.cause)
    }
}

/// A node's latest failure, as the I/O thread saw it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Issue {
    /// The latest failure since the node was last ready.
    pub cause: Option<NodeCause>,
    /// Since when its connections have been refused without a break.
    pub refused_since: Option<Instant>,
}

impl Issue {
    /// Records a failure at `now`.
    pub fn failed(&mut self, cause: NodeCause, now: Instant) {
        if cause == NodeCause::Refused {
            self.refused_since.get_or_insert(now);
        } else {
            self.refused_since = None;
        }
        self.cause = Some(cause);
    }

    /// When, at the earliest, this node's failure makes a call give up on it without waiting
    /// for its deadline: at once after a failed handshake (it is not a gracerpc server), after
    /// `patience` of refused connections (a restart takes less). `None`: wait for it.
    pub fn hopeless_at(&self, patience: Duration, now: Instant) -> Option<Instant> {
        match (&self.cause, self.refused_since) {
            (Some(NodeCause::HandshakeFailed(_)), _) => Some(now),
            (Some(NodeCause::Refused), Some(since)) => Some(since + patience),
            _ => None,
        }
    }
}

/// Classifies a failed connect.
pub(crate) fn connect_cause(e: &std::io::Error) -> NodeCause {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => NodeCause::Refused,
        std::io::ErrorKind::TimedOut => NodeCause::TimedOut,
        _ => NodeCause::ConnectFailed(e.to_string()),
    }
}
