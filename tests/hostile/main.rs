//! The hostile-input suite (issue 7, part 1): a real server on loopback is fed whatever a broken
//! or malicious peer could send, and a real client is pointed at raw servers that misbehave.
//!
//! Every server case asserts the exact outcome — ERROR with the right code followed by a clean
//! close (the peer reads a FIN, never a reset: rule 4), or a typed answer on a connection that
//! stays open — and then [`common::Target::finish`] checks that a fresh connection still gets a
//! normal answer, that `connections()` and `in_flight()` return to 0, and that the server still
//! drains cleanly. The caller cases assert the `CallError` variant and its `may_have_run()`.
//!
//! Floods, slow peers and churn are in `hostile_load.rs`; 10,000 idle connections in
//! `hostile_conns.rs` (each in a process of its own, for their memory figures).

#[path = "../support/peer.rs"]
mod peer;

#[path = "../support/cluster.rs"]
mod cluster;

mod caller;
mod common;
mod frames;
mod handshake;
mod requests;

#[cfg(feature = "tls")]
#[path = "../support/rawtls.rs"]
mod rawtls;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
#[path = "../support/tls.rs"]
mod tls_certs;
