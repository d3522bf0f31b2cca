//! Listener handoff: restart a node with no gap, by passing its listening sockets to the new
//! process over a Unix socket (SCM_RIGHTS), in two phases. Linux only (SO_PEERCRED, `poll`
//! flags); elsewhere a server can still be built on an inherited
//! [`std::net::TcpListener`](crate::server::Builder::listener).
//!
//! ```text
//!   new process                               old process (serving, accepting)
//!   connect(PATH) ─────────────────────────►  accept; SO_PEERCRED: same uid or root
//!   HELLO(version, pid) ───────────────────►
//!                    ◄───────────────────────  LISTENERS(names) + fds: rpc, …, upgrade
//!   build the server on them, paused;
//!   start up (load state, warm caches)        … keeps accepting from the shared queue
//!   READY ─────────────────────────────────►
//!                    ◄───────────────────────  COMMIT
//!   start accepting; ACK ──────────────────►
//!                                              stop accepting; GOAWAY; drain; exit
//!                                              (no registry withdrawal: the address is
//!                                               the new process's)
//! ```
//!
//! Both processes hold the *same* listening sockets (one accept queue each, shared), so no
//! connection waiting in a queue is lost and the port is never closed. Until the ACK the old
//! process serves as if nothing happened: if the new one exits, aborts, or is not READY within
//! [`Timeouts::ready`], the old logs `upgrade failed, still serving: …` and waits for the next
//! upgrader. The new process must not accept before COMMIT
//! ([`Builder::accept_paused`](crate::server::Builder::accept_paused)); if COMMIT does not come
//! it exits having accepted nothing.
//!
//! The upgrade socket itself is among the listeners handed over (`upgrade`): the new process
//! serves the next upgrade on the very same socket, so the path never disappears, and a second
//! upgrader that connects during a handoff waits in its queue and is served by whichever
//! process owns it next. Only the process that still owns the socket file unlinks it (see
//! [`UpgradeSocket`]).

mod error;
mod give;
pub mod msg;
mod socket;
mod take;
mod wire;

pub use error::HandoffError;
pub use give::{Giver, Named, RPC, Source, Timeouts, UPGRADE};
pub use socket::UpgradeSocket;
pub use take::{Takeover, take_over};
