//! Starting and stopping the accept path for a listener handoff: a server built paused starts
//! accepting on request; a running one lends a duplicate of its listener and, once another
//! process accepts on it, stops and drains without withdrawing from the registry.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use mio::Interest;

use super::EventLoop;
use crate::server::token::LISTENER;

impl EventLoop {
    /// Registers the listener: from now on connections are accepted. Connections that waited in
    /// the accept queue meanwhile are accepted on the first event.
    pub(super) fn start_accepting(&mut self, now: Instant) -> io::Result<()> {
        if self.accepting {
            return Ok(());
        }
        let Some(listener) = self.listener.as_mut() else {
            return Err(io::Error::other(
                "the server is closing: it no longer has a listener to accept on",
            ));
        };
        self.poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)?;
        self.accepting = true;
        // Connections may already wait in the queue (edge-triggered: look now).
        self.accept(now);
        self.apply_readiness(now);
        Ok(())
    }

    /// A duplicate of the listening socket (same socket, same accept queue).
    pub(super) fn dup_listener(&self) -> io::Result<OwnedFd> {
        if self.drain.is_some() || self.withdrawing.is_some() {
            return Err(io::Error::other(
                "the server is closing: its listener cannot be handed over",
            ));
        }
        let Some(listener) = self.listener.as_ref() else {
            return Err(io::Error::other("the server has no listener"));
        };
        listener.as_fd().try_clone_to_owned()
    }

    /// Another process accepts on our listener now: keep the registry entry (the address is the
    /// new process's), then the close sequence as usual.
    pub(super) fn handed_off(&mut self, now: Instant) {
        if let Some(a) = self.announcer.as_mut() {
            a.hand_off();
        }
        // No unready delay: the address stays served, by the new process.
        self.unready_until.get_or_insert(now);
        self.begin_drain(now, "listeners handed off to a new process");
    }
}
