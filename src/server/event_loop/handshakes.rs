//! TLS handshakes in progress on the loop thread, capped: when every caller reconnects at once
//! (a restart under load), the connections past the cap wait in the listen backlog until a
//! handshake ends, so the loop's time goes to the connections it already serves.

use std::sync::atomic::Ordering;

use crate::server::stats::HandshakeStats;

/// The loop's count of handshakes in progress.
#[derive(Debug)]
pub(crate) struct Handshakes {
    /// At most this many at once (`usize::MAX` without TLS).
    pub cap: usize,
    pub open: usize,
    /// Accepting stopped at the cap with connections possibly left in the backlog.
    pub held: bool,
}

impl Handshakes {
    pub fn new(cap: usize) -> Handshakes {
        Handshakes {
            cap,
            open: 0,
            held: false,
        }
    }

    /// Whether a new TLS connection must wait (and notes that accepting stopped).
    pub fn full(&mut self, stats: &HandshakeStats) -> bool {
        if self.open < self.cap {
            return false;
        }
        if !self.held {
            self.held = true;
            stats.held.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    pub fn begin(&mut self, stats: &HandshakeStats) {
        self.open += 1;
        stats.begun.fetch_add(1, Ordering::Relaxed);
        stats.peak.fetch_max(self.open, Ordering::Relaxed);
    }

    /// A handshake ended: `completed` (a session came up), or failed or given up.
    pub fn end(&mut self, completed: bool, stats: &HandshakeStats) {
        self.open = self.open.saturating_sub(1);
        if completed {
            stats.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether accepting stopped at the cap and may go on now.
    pub fn resume(&mut self) -> bool {
        if self.held && self.open < self.cap {
            self.held = false;
            return true;
        }
        false
    }
}

use super::EventLoop;
use crate::server::conn::TlsConn;

impl EventLoop {
    /// The TLS session for a connection accepted now (with the configuration current now), or
    /// `None` on a plaintext listener. `Err`: rustls could not make one; the connection is
    /// dropped.
    pub(super) fn tls_session(
        &self,
        peer: std::net::SocketAddr,
    ) -> Result<Option<Box<TlsConn>>, ()> {
        #[cfg(feature = "tls")]
        if let Some(t) = &self.cfg.tls {
            return match TlsConn::new(t.config()) {
                Ok(c) => Ok(Some(Box::new(c))),
                Err(e) => {
                    log::warn!("TLS session for {peer}: {e}");
                    Err(())
                }
            };
        }
        let _ = peer;
        Ok(None)
    }
}
