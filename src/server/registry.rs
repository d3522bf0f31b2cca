//! Handlers by method name, and what kind of handler each is.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::handler::{Handler, Placement, Request};
use super::latency::MethodLatency;
use super::responder::DeferredHandler;
use crate::proto::{IdHasher, Status};

/// How a method is run.
#[derive(Clone)]
pub(crate) enum Callable {
    /// Answers when it returns.
    Now(Arc<dyn Handler>),
    /// Answers later, through a responder.
    Later(Arc<dyn DeferredHandler>),
    /// An async handler on the user's tokio runtime.
    #[cfg(feature = "tokio")]
    Async(Arc<super::async_handler::AsyncEntry>),
}

pub(crate) struct Registered {
    pub name: Arc<str>,
    pub handler: Callable,
    pub placement: Placement,
    /// What the method declares: `Some(false)` refuses requests flagged IDEMPOTENT
    /// (REFUSED_NOT_IDEMPOTENT, never run); `None` (the bytes API) takes either.
    pub idempotent: Option<bool>,
    /// Its latency histogram, made with the method so recording needs no lookup.
    pub latency: Arc<MethodLatency>,
}

/// An authorization hook: whether the caller of this request may call its method.
pub(crate) type Authorize = Arc<dyn Fn(&Request<'_>) -> bool + Send + Sync>;

/// Handlers by method name.
///
/// Looked up once per request by a name from the wire, with a multiply-per-byte hash rather
/// than SipHash (a sixth of the cost): the table is filled at build time and never grows, so a
/// peer choosing names can lengthen its own lookup's probe, never degrade the table.
#[derive(Default)]
pub(crate) struct Registry {
    by_name: HashMap<String, Registered, BuildHasherDefault<IdHasher>>,
    /// The server-wide authorization hook, for methods without their own.
    pub authorize_all: Option<Authorize>,
    /// Per-method authorization hooks.
    pub authorize_method: HashMap<String, Authorize>,
    /// Record per-method latency ([`Builder::metrics`](crate::server::Builder::metrics)).
    pub timed: bool,
}

impl Registry {
    pub fn insert(
        &mut self,
        method: &str,
        handler: Callable,
        placement: Placement,
        idempotent: Option<bool>,
    ) {
        let name: Arc<str> = Arc::from(method);
        self.by_name.insert(
            method.to_owned(),
            Registered {
                name,
                handler,
                placement,
                idempotent,
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

    /// Whether the request's caller may call its method: the method's own hook, else the
    /// server-wide one, else yes.
    pub fn authorized(&self, req: &Request<'_>) -> bool {
        if self.authorize_method.is_empty() && self.authorize_all.is_none() {
            return true;
        }
        match self
            .authorize_method
            .get(req.method)
            .or(self.authorize_all.as_ref())
        {
            Some(hook) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(req)))
                .unwrap_or(false),
            None => true,
        }
    }
}

impl Registered {
    /// Why this method refuses a request before running it, if it does: a request flagged
    /// IDEMPOTENT to a method declared not idempotent (protocol.md §6.2).
    pub fn refusal(&self, idempotent: bool) -> Option<(Status, &'static [u8])> {
        (idempotent && self.idempotent == Some(false)).then_some((
            Status::REFUSED_NOT_IDEMPOTENT,
            &b"request flagged idempotent, method declared not idempotent"[..],
        ))
    }
}
