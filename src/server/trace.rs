//! Trace context per request: the caller's W3C `traceparent` (request metadata, protocol.md
//! §4.2) is logged at debug level, and with the `tracing` feature every handler runs inside a
//! `gracerpc.request` span carrying `method`, `id` and `traceparent`, so a subscriber can join
//! the server's work to the caller's trace. Without the feature this costs one log-level check.

use super::handler::Request;

/// What keeps the request's span entered while its handler runs on this thread.
#[cfg(feature = "tracing")]
pub(crate) type Entered = tracing::span::EnteredSpan;
#[cfg(not(feature = "tracing"))]
pub(crate) struct Entered;

/// Logs the request's trace context and enters its span, for a handler about to run here.
pub(crate) fn enter(req: &Request<'_>) -> Entered {
    log_traceparent(req);
    #[cfg(feature = "tracing")]
    {
        span(req).entered()
    }
    #[cfg(not(feature = "tracing"))]
    Entered
}

fn log_traceparent(req: &Request<'_>) {
    if log::log_enabled!(log::Level::Debug)
        && let Some(tp) = req.traceparent()
    {
        log::debug!("request {} {}: traceparent {tp}", req.id, req.method);
    }
}

/// The request's span (for an async handler: attached to its task, entered at every poll).
#[cfg(feature = "tracing")]
pub(crate) fn span(req: &Request<'_>) -> tracing::Span {
    let span = tracing::info_span!(
        "gracerpc.request",
        method = req.method,
        id = req.id,
        traceparent = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(tp) = req.traceparent()
    {
        span.record("traceparent", tp);
    }
    span
}

/// Logs the trace context of an async request (its span is attached to its task).
#[cfg(feature = "tokio")]
pub(crate) fn log_async(req: &Request<'_>) {
    log_traceparent(req);
}
