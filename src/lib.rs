//! gracerpc: an RPC framework whose server nodes can be restarted under full load without a
//! caller seeing an error, losing a request, or running one twice.
//!
//! The crate is layered (see `protocol.md` for the wire format and its numbered rules):
//! * [`proto`]: the sans-IO core — frames, codec, and the per-connection state machines.
//! * [`client`]: the caller: a lock-free node table, balancing, eviction on GOAWAY, safe replay.
//! * [`server`]: the provider: a mio event loop, a worker pool, and the graceful close and start
//!   sequences.
//! * `etcd` (feature `etcd`): etcd as the service registry — nodes register once READY and
//!   deregister before GOAWAY; callers list and watch.
#![deny(missing_docs)]

pub mod admin;
pub mod client;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod proto;
pub mod server;

/// The longest duration any setting or deadline takes: longer ones are cut to it, so that adding
/// one to `Instant::now()` can never overflow (a year is longer than any drain or call).
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// `d`, cut to [`MAX_DURATION`].
pub(crate) fn capped(d: std::time::Duration) -> std::time::Duration {
    d.min(MAX_DURATION)
}
