//! The server's counters, shared by the event loop, the workers and the handle: what metrics
//! and the drain report read.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::proto::RejectReason;

/// Counters shared with the handle.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Requests accepted and not yet answered-and-written.
    pub in_flight: AtomicUsize,
    /// Connections open.
    pub connections: AtomicUsize,
    /// Deferred and async requests the server answered itself at their deadline (plus the grace
    /// for deferred ones).
    pub expired: AtomicUsize,
    /// Event counters for [`ServerMetrics`](crate::server::ServerMetrics).
    pub counters: Counters,
    /// TLS handshakes: how many at once at most, how often accepting waited for them.
    pub handshakes: HandshakeStats,
}

/// Event counters, bumped where the event happens.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests handed to a handler (or answered as an unknown method).
    pub accepted: AtomicU64,
    /// Answers by outcome: OK, a handler's failure, unknown method, any other refusal (a
    /// typed method that is not idempotent asked as idempotent: never run).
    pub completed_ok: AtomicU64,
    pub completed_failed: AtomicU64,
    pub unknown_method: AtomicU64,
    pub refused: AtomicU64,
    /// A deferred or async request the caller cancelled while it ran, answered CANCELLED.
    /// (Those the server answers at the deadline are `Stats::expired`.)
    pub completed_cancelled: AtomicU64,
    /// Rejections by the server's own decision, by wire code (queue full, queued at the drain,
    /// deadline passed in the queue, cancelled).
    pub rejected: [AtomicU64; 8],
    pub connections_accepted: AtomicU64,
    pub goaways_sent: AtomicU64,
    pub drains: AtomicU64,
    pub drain_seconds_us: AtomicU64,
    pub drain_abandoned: AtomicU64,
    /// READY and no close sequence asked for: what `/readyz` reports.
    pub serving: AtomicBool,
}

impl Counters {
    pub fn reject(&self, reason: RejectReason) {
        if let Some(c) = self.rejected.get(usize::from(reason.0)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the handle reports of the TLS handshakes (see `event_loop/handshakes.rs`).
#[derive(Debug, Default)]
pub(crate) struct HandshakeStats {
    /// The most handshakes in progress at once.
    pub peak: AtomicUsize,
    /// Times accepting stopped at the cap.
    pub held: AtomicU64,
    /// Handshakes begun: every connection accepted on a TLS listener.
    pub begun: AtomicU64,
    /// Handshakes that completed (a TLS session came up).
    pub completed: AtomicU64,
}
