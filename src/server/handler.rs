//! What a service registers: handlers by method name, and the request and reply types they see.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use crate::proto::Status;
use crate::proto::frame::Metadata;

/// A request as a handler sees it.
///
/// `#[non_exhaustive]`: later versions add context (peer, metadata, …) without breaking
/// handlers. Read it through the accessors; the public fields stay for code written before them.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The request id on its connection.
    pub id: u64,
    /// The method name.
    pub method: &'a str,
    /// The payload.
    pub body: &'a [u8],
    /// When the caller stops waiting for the answer.
    pub deadline: Instant,
    /// Whether the caller marked the request safe to run more than once.
    pub idempotent: bool,
    /// The caller's address.
    pub peer: SocketAddr,
    /// The caller's metadata (trace context, tenant, …); empty from a caller that did not
    /// negotiate it. See `context.rs` for the accessors.
    pub metadata: Metadata<'a>,
    /// The caller's verified client certificate (mutual TLS): see `context.rs`.
    pub(crate) identity: Option<&'a super::PeerIdentity>,
}

impl<'a> Request<'a> {
    /// The request id on its connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The method name.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The payload.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// When the caller stops waiting for the answer.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the caller marked the request safe to run more than once.
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }
}

/// A handler's failure: a status other than OK and an optional body for the caller.
///
/// Any `std::error::Error` converts into one (as [`Status::APP_ERROR`] with the error's message),
/// so `?` works in a handler. `Failure` itself is therefore not a `std::error::Error` (the two
/// impls would overlap, as with `anyhow::Error`); it is `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The status sent (not [`Status::OK`]).
    pub status: Status,
    /// Detail for the caller.
    pub body: Vec<u8>,
}

impl Failure {
    /// A failure with a status and a message.
    pub fn new(status: Status, message: impl Into<Vec<u8>>) -> Failure {
        Failure {
            status,
            body: message.into(),
        }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::new(Status::APP_ERROR, e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// What a handler returns: the response body, or a failure.
pub type Reply = Result<Vec<u8>, Failure>;

/// A method implementation. Any `Fn(&Request) -> Reply + Send + Sync` closure is one.
pub trait Handler: Send + Sync + 'static {
    /// Runs the method.
    fn call(&self, req: &Request<'_>) -> Reply;
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>) -> Reply + Send + Sync + 'static,
{
    fn call(&self, req: &Request<'_>) -> Reply {
        self(req)
    }
}

/// Where a handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On a worker thread (the default): the handler may block.
    Worker,
    /// On the event-loop thread, skipping the hand-off: the handler must be short and must never
    /// block, or every connection of the server waits for it.
    Inline,
}
