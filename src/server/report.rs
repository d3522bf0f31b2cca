//! The drain report a server returns when it stops.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How a server's close sequence ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Every accepted request was answered and flushed, and every connection closed by its
    /// caller before the budget ran out.
    pub clean: bool,
    /// A second signal forced the stop before the drain finished.
    pub forced_by_signal: bool,
    /// Connections open when the close sequence started (each got GOAWAY).
    pub goaway_sent: usize,
    /// Queued requests rejected unstarted at the start of the drain.
    pub rejected_queued: usize,
    /// Requests accepted and never answered: their handlers were still running when the budget
    /// ran out (or a second signal came).
    pub abandoned: usize,
    /// Per connection, where the budget ran out with requests still pending: the peer address
    /// and the number of requests pending on it.
    pub abandoned_on: Vec<(SocketAddr, usize)>,
    /// Deferred and async requests started and unanswered when the close sequence began
    /// (answered during the drain like any started request).
    pub deferred_in_flight: usize,
    /// Deferred and async requests the server answered itself during the drain, because their
    /// handler had not answered by the deadline (plus the grace): `DEADLINE_EXCEEDED`.
    pub deferred_expired: usize,
    /// Answers given during the drain for requests already answered (dropped).
    pub late_answers: u64,
    /// From the start of the close sequence until every in-flight request was answered.
    pub answered_in: Option<Duration>,
    /// From the start of the close sequence until the server stopped.
    pub total: Duration,
    /// Worker threads still running a handler when the server stopped (their thread names).
    /// Every other worker was joined before the report was returned; these are left to finish
    /// on their own (a thread cannot be stopped from outside), and their answers go nowhere.
    pub stuck_workers: Vec<String>,
    /// TLS handshakes over the server's life (all zero without TLS).
    pub handshakes: super::HandshakeReport,
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.clean {
            "drained cleanly"
        } else if self.forced_by_signal {
            "stopped by a second signal"
        } else {
            "drain budget spent"
        };
        write!(
            f,
            "{how} in {} ms: GOAWAY sent to {} connections, {} queued requests rejected, {} \
             abandoned, {} deferred in flight ({} answered by the server at their deadline)",
            self.total.as_millis(),
            self.goaway_sent,
            self.rejected_queued,
            self.abandoned,
            self.deferred_in_flight,
            self.deferred_expired
        )?;
        let h = &self.handshakes;
        if h.begun > 0 {
            write!(
                f,
                ", TLS handshakes: {} begun, {} completed, peak {} at once, accepting held {} \
                 times at the cap",
                h.begun, h.completed, h.peak, h.held
            )?;
        }
        if !self.stuck_workers.is_empty() {
            write!(
                f,
                ", {} workers still running a handler",
                self.stuck_workers.len()
            )?;
        }
        Ok(())
    }
}
