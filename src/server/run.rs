//! Running a user's handler: inside the request's trace span, with a panic turned into an
//! answer.

use super::handler::{Failure, Handler, Reply, Request};
use super::trace;
use crate::proto::Status;

/// Runs a handler, turning a panic into [`Status::INTERNAL`] (it ran, and may have had effects).
pub(crate) fn run_handler(handler: &dyn Handler, req: &Request<'_>) -> Reply {
    let _span = trace::enter(req);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.call(req))) {
        Ok(reply) => reply,
        Err(_) => Err(Failure::new(Status::INTERNAL, "handler panicked")),
    }
}
