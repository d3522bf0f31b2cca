//! Wire codes: integer newtypes with named constants.
//!
//! An unknown code survives a round trip unchanged and prints as hex, so a newer peer's code never
//! turns into a decode error (protocol.md, "Codes").

use std::fmt;

macro_rules! wire_code {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($repr:ty);
        $( $(#[$cmeta:meta])* $konst:ident = $value:expr, )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($value); )*

            /// The constant's name, if this code is one the protocol defines.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}(0x{:x})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

wire_code! {
    /// The kind of a frame: byte 0 of the header.
    pub struct Kind(u8);
    /// Opens every connection, in both directions.
    HELLO = 0x01,
    /// Caller → server: run a method.
    REQUEST = 0x02,
    /// Server → caller: the request ran; status and body.
    RESPONSE = 0x03,
    /// Server → caller: the request was received and will never run; send it elsewhere.
    SHUTDOWN_REJECT = 0x04,
    /// Server → caller: the server is closing this connection; ids above `last_accepted` are rejected.
    GOAWAY = 0x05,
    /// Caller → server: GOAWAY was read; the caller writes nothing more.
    GOAWAY_ACK = 0x06,
    /// Either direction: liveness probe.
    PING = 0x07,
    /// Either direction: answer to PING.
    PONG = 0x08,
    /// Server → caller: the connection takes requests, at this capacity.
    READY = 0x09,
    /// Caller → server: the caller no longer wants this answer (a hint).
    CANCEL = 0x0a,
    /// Either direction: a protocol violation; the sender closes next.
    ERROR = 0x0b,
}

wire_code! {
    /// The status of a RESPONSE. 0 is success; codes from 0x100 up belong to applications.
    ///
    /// Codes in [`Status::REFUSALS`] (`0x0040..=0x007f`) are **refusals**: the request did not
    /// run and sending it elsewhere cannot help (protocol.md §6.2). A server sends them only to
    /// a caller whose HELLO set [`FEATURE_REFUSALS`](crate::proto::frame::FEATURE_REFUSALS); to
    /// any other caller the core sends [`Status::v1_fallback`] instead.
    pub struct Status(u16);
    /// The handler succeeded.
    OK = 0,
    /// No handler is registered under the method name.
    UNKNOWN_METHOD = 1,
    /// The handler ran and failed.
    APP_ERROR = 2,
    /// The handler ran and refused its input.
    INVALID_ARGUMENT = 3,
    /// The handler panicked; it may have had effects.
    INTERNAL = 4,
    /// The handler ran and had not answered by the request's deadline (plus the server's grace
    /// for a deferred handler): the server answered for it. It may have had effects.
    DEADLINE_EXCEEDED = 5,
    /// The handler ran and the caller cancelled it (CANCEL): the server answered for it and
    /// stopped the work it could stop. It may have had effects.
    CANCELLED = 6,
    /// Refusal: no handler is registered under the method name. Never ran; final.
    REFUSED_UNKNOWN_METHOD = 0x40,
    /// Refusal: the payload does not decode as the method's argument. Never ran; final.
    REFUSED_BAD_BODY = 0x41,
    /// Refusal: the request was flagged IDEMPOTENT and the method is declared not idempotent.
    /// Never ran; final.
    REFUSED_NOT_IDEMPOTENT = 0x42,
    /// Refusal (reserved for an authorization hook): the caller may not call this method.
    /// Never ran; final.
    REFUSED_PERMISSION_DENIED = 0x43,
}

impl Status {
    /// The refusal range: "not run, final" (protocol.md §6.2). A code in it that this version
    /// does not name is a refusal all the same, so a later version can add refusals.
    pub const REFUSALS: std::ops::RangeInclusive<u16> = 0x40..=0x7f;

    /// Whether this status is a refusal: the request did not run, and replaying it on another
    /// node cannot help.
    pub fn is_refusal(self) -> bool {
        Status::REFUSALS.contains(&self.0)
    }

    /// What a server sends in place of this status to a caller that did not negotiate
    /// refusals (a version-1 caller treats every RESPONSE as "ran", so it never replays these):
    /// UNKNOWN_METHOD for an unknown method, INVALID_ARGUMENT for every other refusal; any
    /// status outside the range is sent unchanged.
    pub fn v1_fallback(self) -> Status {
        match self {
            Status::REFUSED_UNKNOWN_METHOD => Status::UNKNOWN_METHOD,
            s if s.is_refusal() => Status::INVALID_ARGUMENT,
            s => s,
        }
    }
}

wire_code! {
    /// Why a SHUTDOWN_REJECT was sent. Every reason means "received, never run".
    pub struct RejectReason(u16);
    /// The server is draining (rule 2).
    SHUTTING_DOWN = 1,
    /// The connection has not sent READY yet (rule 6).
    NOT_READY = 2,
    /// The server's queue or a limit is full.
    OVERLOADED = 3,
    /// The deadline passed before the request started (rule 6).
    DEADLINE = 4,
    /// The caller cancelled before the request started.
    CANCELLED = 5,
}

wire_code! {
    /// Why a GOAWAY was sent.
    pub struct GoAwayReason(u16);
    /// The server process is shutting down or restarting.
    SHUTDOWN = 1,
    /// The server closes this connection because it was idle.
    IDLE = 2,
    /// The server sheds this connection to rebalance load.
    REBALANCE = 3,
}

wire_code! {
    /// The code of an ERROR frame: which protocol rule the peer broke.
    pub struct ErrorCode(u16);
    /// A frame's body does not parse (too short, bad UTF-8, value out of range).
    MALFORMED = 1,
    /// A frame's length exceeds the receiver's maximum.
    TOO_LARGE = 2,
    /// The header names a frame kind the receiver does not know.
    UNKNOWN_KIND = 3,
    /// The first frame was not a valid HELLO, or the HELLO did not arrive in time.
    HANDSHAKE = 4,
    /// The HELLO's version range does not meet the receiver's.
    UNSUPPORTED_VERSION = 5,
    /// The HELLO sets a critical feature bit the receiver does not know.
    UNSUPPORTED_FEATURE = 6,
    /// A valid frame arrived in the wrong direction or at the wrong time.
    UNEXPECTED_FRAME = 7,
    /// A request id was zero or not strictly greater than the previous one.
    ID_ORDER = 8,
    /// A frame names a request id that was never sent.
    UNKNOWN_ID = 9,
    /// The peer did not answer a PING in time.
    TIMEOUT = 10,
}
