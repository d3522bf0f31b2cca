//! The provider side: a server a service embeds, which can be stopped at any moment under load
//! without a caller seeing an error.
//!
//! # Example
//!
//! ```
//! use gracerpc::server::Server;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Server::builder()
//!     .listen("127.0.0.1:0")
//!     .handler("echo", |req: &gracerpc::server::Request<'_>| Ok(req.body.to_vec()))
//!     .spawn()?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown(); // GOAWAY to every caller, answer what was accepted, then stop
//! let report = server.wait()?;
//! assert!(report.clean);
//! # Ok(())
//! # }
//! ```
//!
//! # The close sequence
//! On [`ServerHandle::shutdown`] (or SIGTERM/SIGINT with [`Builder::handle_signals`]): the
//! listener closes at once; every connection gets GOAWAY(its last accepted id); requests queued
//! and not started are rejected (callers replay them elsewhere); started work is answered; each
//! connection closes once its caller has closed (never with an RST); the drain report says
//! whether it all finished within the budget. A second signal stops at once.
//!
//! With a [`Registrar`] ([`Builder::registrar`]), the node is published in a service registry
//! once READY, and the close sequence starts by withdrawing it — then GOAWAY, as above. The
//! GOAWAY waits for the registry at most [`Builder::registry_timeout`] (default 500 ms), and
//! never more than a quarter of the drain budget.
//!
//! ## Time accounting
//! The drain budget `B` ([`Builder::drain_budget`], default 10 s) bounds the **whole** sequence,
//! from the moment it is asked for (`t0`) until [`ServerHandle::wait`] returns:
//!
//! * the registry withdrawal takes at most `min(registry_timeout, B/4)`;
//! * GOAWAY (sent at `t1`) announces `t0 + B − L − t1` as its `drain_budget_ms`, where
//!   `L = min(linger, B/4)`: answers are written until then (default: 8 s, or 7.5 s after a
//!   500 ms withdrawal);
//! * then every connection still owing answers has its write side shut and is read until its
//!   caller closes, until `t0 + B`;
//! * at `t0 + B` the connections still open are closed without an RST (write side shut, the
//!   input already arrived read and discarded);
//! * finally the worker threads are joined: every worker not running a handler ends at once;
//!   a handler still running is left to finish on its own thread, named in
//!   [`DrainReport::stuck_workers`]. This takes at most 100 ms past `t0 + B`.
//!
//! The library never exits the process: signal handling is opt-in, and even then the server only
//! returns its report.

mod announce;
#[cfg(feature = "tokio")]
mod async_handler;
mod builder;
mod conn;
mod context;
mod event_loop;
mod handle;
mod handler;
mod identity;
#[cfg(target_os = "linux")]
pub mod inherit;
mod latency;
#[cfg(all(test, gracerpc_loom))]
mod loom_models;
mod loop_waker;
mod metrics;
mod outbox;
mod readiness;
mod registry;
mod report;
mod responder;
mod run;
mod slot;
mod spare;
mod stats;
mod sync;
mod token;
mod trace;
mod wire;
mod workers;

/// Re-exported so a service needs no `proto` import for its statuses.
pub use crate::proto::Status;
pub use announce::Registrar;
#[cfg(feature = "tokio")]
pub use async_handler::{AsyncHandler, OwnedRequest, ReplyFuture};
pub use builder::Builder;
pub use handle::{HandshakeReport, ServerControl, ServerHandle};
pub use handler::{Failure, Handler, Placement, Reply, Request};
pub use identity::PeerIdentity;
pub use metrics::ServerMetrics;
pub use readiness::ReadyHandle;
pub use report::DrainReport;
pub use responder::{DeferredHandler, Responder};
pub(crate) use spare::take as spare_buffer;

/// Entry point: see [`Server::builder`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the defaults: listen on 127.0.0.1:0, one worker per core, drain budget
    /// 10 s, ready as soon as it listens.
    pub fn builder() -> Builder {
        Builder::default()
    }
}
