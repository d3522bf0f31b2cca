//! What a connection's core events do outside it: node states in the table (READY, GOAWAY,
//! hints, the connection's end) and answers handed to their calls' slots.

use std::time::Instant;

use super::cause::NodeCause;
use super::link::{Deliveries, Link, LinkInner};
use super::table::{NodeState, NodeTable};
use crate::proto::{ClientConn, ClientEvent, RejectReason};

impl Link {
    /// Acts on the core's events: node state changes, and answers for their slots.
    pub(super) fn process(
        &self,
        g: &mut LinkInner,
        table: &NodeTable,
        now: Instant,
        d: &mut Deliveries,
    ) {
        while let Some(ev) = g.core.poll_event() {
            match ev {
                ClientEvent::Ready(capacity) => {
                    if self.routes.is(self.node.index(), self) {
                        self.node.note_usable();
                        table.set_capacity(&self.node, capacity, now);
                    }
                }
                ClientEvent::GoAway { .. } => {
                    table
                        .goaways_received
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Stop choosing the node at once; answers up to last_accepted still come here.
                    // (A newer connection already current is a restarted node: leave it be.)
                    let was_current = self.routes.detach(self.node.index(), self);
                    // A node discovery removed (a registry withdraws a node before its GOAWAY)
                    // stays removed: Draining would have it reconnected.
                    if (was_current || !self.routes.has(self.node.index()))
                        && self.node.state() != NodeState::Removed
                    {
                        table.set_state(&self.node, NodeState::Draining, now);
                    }
                }
                ClientEvent::NodeHint(reason) => match reason {
                    RejectReason::OVERLOADED | RejectReason::NOT_READY => {
                        // Busy (or not ready yet): a lower weight for a while, never an eviction,
                        // or a drain that shifts load onto the survivors would evict them too.
                        table.penalize(&self.node, now)
                    }
                    // Normally its GOAWAY came first; either way, stop choosing the node now —
                    // unless a newer connection (a restarted node) is already current.
                    RejectReason::SHUTTING_DOWN if self.routes.detach(self.node.index(), self) => {
                        table.set_state(&self.node, NodeState::Draining, now);
                    }
                    _ => {}
                },
                ClientEvent::Resolved { id, user, outcome } => {
                    if let Some(slot) = g.slots.try_remove(user as usize) {
                        self.node.sub_outstanding();
                        d.push((slot, outcome));
                    }
                    if g.claimed == Some(id) {
                        // Ended before its caller came to read (a failed write, a GOAWAY).
                        self.release_claim(g);
                    }
                }
                ClientEvent::Closed { error } => {
                    if let Some(e) = &error {
                        log::debug!("connection to {} ended: {e}", self.node.addr());
                    }
                    // The node is down once its last connection is (another lane may
                    // still work).
                    if self.routes.detach(self.node.index(), self)
                        && !self.routes.has(self.node.index())
                        && self.node.state() != NodeState::Removed
                    {
                        if let Some(cause) = closed_cause(&g.core, error.as_ref(), g.connected) {
                            table.note_failure(&self.node, cause, now);
                        }
                        table.set_state(&self.node, NodeState::Down, now);
                    }
                }
            }
        }
    }
}

/// Why a connection that ended leaves its node unusable, for the call that finds no node.
fn closed_cause(
    core: &ClientConn,
    error: Option<&crate::proto::ConnError>,
    connected: bool,
) -> Option<NodeCause> {
    use crate::proto::ConnError;
    let error = error?;
    if !connected {
        // The connect itself failed (noted by the caller with its cause) or timed out.
        return matches!(error, ConnError::Protocol(_)).then_some(NodeCause::TimedOut);
    }
    if core.handshake_done() {
        return Some(NodeCause::ConnectionLost(error.to_string()));
    }
    Some(match error {
        ConnError::Protocol(p) if p.detail == "HELLO did not arrive in time" => NodeCause::TimedOut,
        ConnError::Protocol(_) | ConnError::Decode(_) | ConnError::Peer { .. } => {
            NodeCause::HandshakeFailed(error.to_string())
        }
        // Closed before its HELLO: a node stopping, or not ours; a restart waits it out.
        _ => NodeCause::ConnectionLost(error.to_string()),
    })
}
