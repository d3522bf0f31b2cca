//! The sans-IO core: frames, the codec, and the per-connection state machines of both sides.
//!
//! Nothing in this module touches a socket, a thread or a clock: the drivers (the server's event
//! loop, the caller's I/O thread, the tests' simulator) pass bytes and `Instant`s in and take
//! bytes, events and deadlines out. `protocol.md` is the specification; comments of the form
//! "rule N" point to its numbered rules.

mod buf;
mod client_conn;
mod codes;
mod error;
pub mod frame;
mod header;
mod id_hash;
mod server_conn;

pub use buf::{InBuf, OutBuf};
pub use client_conn::{ClientConn, ClientConnConfig, ClientEvent, Outcome, Rejection};
pub use codes::{ErrorCode, GoAwayReason, Kind, RejectReason, Status};
pub use error::{ApiMisuse, ConnError, DecodeError, ProtocolError};
pub use frame::{Frame, decode};
pub use header::{FLAG_IDEMPOTENT, FLAG_METADATA, HEADER_LEN, Header};
pub use id_hash::{IdHasher, IdMap, IdSet, id_map};
pub use server_conn::{
    Accepted, AnswerEncoder, CloseAction, Incoming, ServerConn, ServerConnConfig,
};
