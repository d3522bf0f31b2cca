//! What a service registers: handlers by method name, and the request and reply types they see.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::proto::Status;
use crate::server::metrics::MethodLatency;

/// A request as a handler sees it.
#[derive(Clone, Copy, Debug)]
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
}

/// A handler's failure: a status other than OK and an optional body for the caller.
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

pub(crate) struct Registered {
    pub name: Arc<str>,
    pub handler: Arc<dyn Handler>,
    pub placement: Placement,
    /// Its latency histogram, made with the method so recording needs no lookup.
    pub latency: Arc<MethodLatency>,
}

/// Handlers by method name.
#[derive(Default)]
pub(crate) struct Registry {
    by_name: HashMap<String, Registered>,
    /// Record per-method latency ([`Builder::metrics`](crate::server::Builder::metrics)).
    pub timed: bool,
}

impl Registry {
    pub fn insert(&mut self, method: &str, handler: Arc<dyn Handler>, placement: Placement) {
        let name: Arc<str> = Arc::from(method);
        self.by_name.insert(
            method.to_owned(),
            Registered {
                name,
                handler,
                placement,
                latency: Arc::default(),
            },
        );
    }

    /// Every method and its latency histogram, for `ServerMetrics`.
    pub fn latencies(&self) -> Vec<(Arc<str>, Arc<MethodLatency>)> {
        let mut v: Vec<_> = self
            .by_name
            .values()
            .map(|r| (r.name.clone(), r.latency.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn get(&self, method: &str) -> Option<&Registered> {
        self.by_name.get(method)
    }
}

/// Runs a handler, turning a panic into [`Status::INTERNAL`] (it ran, and may have had effects).
pub(crate) fn run_handler(handler: &dyn Handler, req: &Request<'_>) -> Reply {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.call(req))) {
        Ok(reply) => reply,
        Err(_) => Err(Failure::new(Status::INTERNAL, "handler panicked")),
    }
}
