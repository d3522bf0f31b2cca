//! The three kinds of failure the core keeps apart: bad bytes ([`DecodeError`]), valid frames at
//! the wrong time ([`ProtocolError`]), and misuse of the core's API ([`ApiMisuse`]).

use std::fmt;

use super::codes::{ErrorCode, Kind};

/// The bytes on the wire do not form a valid frame. Each variant maps to the [`ErrorCode`] the
/// receiver sends before closing (protocol.md rule 7).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The header names a kind this version does not know.
    UnknownKind(u8),
    /// The header sets flags the kind does not define, or non-zero reserved bytes.
    ReservedBits {
        /// The frame kind.
        kind: Kind,
    },
    /// The header's body length exceeds the receiver's maximum.
    TooLarge {
        /// The frame kind.
        kind: Kind,
        /// The length the header claims.
        len: u32,
        /// The receiver's maximum.
        max: u32,
    },
    /// The body does not parse.
    Malformed {
        /// The frame kind.
        kind: Kind,
        /// What is wrong with it.
        what: &'static str,
    },
}

impl DecodeError {
    /// The code the receiver puts in its ERROR frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownKind(_) => ErrorCode::UNKNOWN_KIND,
            DecodeError::ReservedBits { .. } => ErrorCode::MALFORMED,
            DecodeError::TooLarge { .. } => ErrorCode::TOO_LARGE,
            DecodeError::Malformed { kind, .. } if *kind == Kind::HELLO => ErrorCode::HANDSHAKE,
            DecodeError::Malformed { .. } => ErrorCode::MALFORMED,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownKind(k) => write!(f, "unknown frame kind 0x{k:02x}"),
            DecodeError::ReservedBits { kind } => {
                write!(f, "{kind} frame sets reserved flag or header bits")
            }
            DecodeError::TooLarge { kind, len, max } => {
                write!(
                    f,
                    "{kind} frame body of {len} bytes exceeds the maximum of {max}"
                )
            }
            DecodeError::Malformed { kind, what } => write!(f, "malformed {kind} frame: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A well-formed frame that breaks a protocol rule: the peer caused it, and the receiver answers
/// with ERROR(`code`) and closes (protocol.md rule 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The code sent in the ERROR frame.
    pub code: ErrorCode,
    /// The request id concerned, or 0.
    pub id: u64,
    /// Which rule was broken, for logs and the ERROR frame's message.
    pub detail: &'static str,
}

impl ProtocolError {
    pub(crate) fn new(code: ErrorCode, id: u64, detail: &'static str) -> Self {
        ProtocolError { code, id, detail }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer broke the protocol ({}): {}",
            self.code, self.detail
        )?;
        if self.id != 0 {
            write!(f, " (request id {})", self.id)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProtocolError {}

/// Why a connection state machine stopped taking frames.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer sent bytes that are not a frame; an ERROR frame has been queued.
    Decode(DecodeError),
    /// The peer sent a frame that breaks a rule; an ERROR frame has been queued.
    Protocol(ProtocolError),
    /// The peer sent an ERROR frame: it found a fault in what we sent, and closes next.
    Peer {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's message, lossily decoded.
        message: String,
    },
    /// The connection failed at the transport level or timed out.
    Lost(&'static str),
}

impl ConnError {
    /// The ERROR code this side sent for the failure, if it sent one.
    pub fn sent_code(&self) -> Option<ErrorCode> {
        match self {
            ConnError::Decode(e) => Some(e.code()),
            ConnError::Protocol(e) => Some(e.code),
            ConnError::Peer { .. } | ConnError::Lost(_) => None,
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Decode(e) => write!(f, "peer sent invalid bytes: {e}"),
            ConnError::Protocol(e) => e.fmt(f),
            ConnError::Peer { code, message } => {
                write!(f, "peer reported a protocol error ({code}): {message}")
            }
            ConnError::Lost(why) => write!(f, "connection lost: {why}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<DecodeError> for ConnError {
    fn from(e: DecodeError) -> Self {
        ConnError::Decode(e)
    }
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}

/// A call into the core that its calling protocol does not allow; a bug in the driver, not in
/// the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// `respond`/`reject` named an id that is not accepted-and-unanswered on this connection.
    NotPending(u64),
    /// A REQUEST was asked for on a connection that cannot take one (not ready, draining, closed).
    NotSendable,
    /// A frame would exceed the peer's announced maximum.
    TooLarge {
        /// The body length asked for.
        len: usize,
        /// The peer's maximum.
        max: u32,
    },
    /// A method name must be 1..=255 bytes.
    BadMethod,
    /// This connection has used every request id; open a new one.
    IdsExhausted,
    /// The output already holds this much for a peer that is not reading it; the request would
    /// pass the bound (`ClientConnConfig::max_out`). Send elsewhere, or later.
    OutputFull {
        /// Bytes queued.
        queued: usize,
        /// The bound.
        max: usize,
    },
}

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiMisuse::NotPending(id) => write!(f, "request {id} is not awaiting an answer"),
            ApiMisuse::NotSendable => f.write_str("connection cannot take a request now"),
            ApiMisuse::TooLarge { len, max } => {
                write!(
                    f,
                    "request of {len} bytes exceeds the node's max_frame of {max} bytes \
                     (raise it with the server's Builder::max_frame, or send less)"
                )
            }
            ApiMisuse::BadMethod => f.write_str("method name must be 1 to 255 bytes"),
            ApiMisuse::IdsExhausted => f.write_str("request ids exhausted on this connection"),
            ApiMisuse::OutputFull { queued, max } => write!(
                f,
                "{queued} bytes already wait for the peer to read them (bound {max}): \
                 send elsewhere or later"
            ),
        }
    }
}

impl std::error::Error for ApiMisuse {}
