//! gracerpc: an RPC framework whose server nodes can be restarted under full load without a
//! caller seeing an error, losing a request, or running one twice.
//!
//! The crate is layered (see `protocol.md` for the wire format and its numbered rules):
//! * [`proto`]: the sans-IO core — frames, codec, and the per-connection state machines.
//! * [`client`]: the caller: a lock-free node table, balancing, eviction on GOAWAY, safe replay.
//! * [`server`]: the provider: a mio event loop, a worker pool, and the graceful close and start
//!   sequences.
//! * [`service`](mod@service): typed services — `#[gracerpc::service]` on a trait gives the
//!   node a trait to implement and the caller a typed client; serde values, postcard by default.
//! * `etcd` (feature `etcd`): etcd as the service registry — nodes register once READY and
//!   deregister before GOAWAY; callers list and watch.
//! * [`handoff`] (Linux): pass a running node's listeners to its replacement, so a single node
//!   restarts without closing its port.
//!
//! # Example
//!
//! ```
//! use gracerpc::{client::Client, server::Server};
//!
//! #[gracerpc::service]
//! pub trait Calc {
//!     #[idempotent] // safe to run twice: retried after an unknown outcome
//!     fn add(&self, a: i64, b: i64) -> Result<i64, String>;
//!     fn record(&self, note: String) -> Result<u64, String>; // never retried blindly
//! }
//!
//! struct MyCalc;
//! impl Calc for MyCalc {
//!     fn add(&self, a: i64, b: i64) -> Result<i64, String> {
//!         a.checked_add(b).ok_or("overflow".into())
//!     }
//!     fn record(&self, note: String) -> Result<u64, String> {
//!         Ok(note.len() as u64)
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Server::builder().service(CalcServer::new(MyCalc)).spawn()?;
//! let calc = CalcClient::new(Client::builder().nodes([node.local_addr()]).build()?);
//! assert_eq!(calc.add(2, 3)?, 5);
//! assert_eq!(calc.record("hello".into())?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! The bytes API underneath stays available: [`server::Builder::handler`] and
//! [`client::Client::call`].
#![deny(missing_docs)]

pub mod admin;
pub mod client;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(target_os = "linux")]
pub mod handoff;
pub mod proto;
pub mod server;
pub mod service;
mod sock;
#[cfg(feature = "tls")]
pub mod tls;

/// Turns a trait into a typed service: a trait to implement, `<Name>Server` to register and
/// `<Name>Client` to call it (see [`service`](mod@service)).
pub use gracerpc_macros::service;

/// The longest duration any setting or deadline takes: longer ones are cut to it, so that adding
/// one to `Instant::now()` can never overflow (a year is longer than any drain or call).
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// `d`, cut to [`MAX_DURATION`].
pub(crate) fn capped(d: std::time::Duration) -> std::time::Duration {
    d.min(MAX_DURATION)
}

/// The README's code blocks, compiled and run as doctests so the README cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
