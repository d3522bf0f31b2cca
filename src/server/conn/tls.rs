//! A server connection's TLS session (feature `tls`): the read pass, the write pass and the
//! close actions of a [`Conn`] whose bytes go through rustls. The plaintext path never comes
//! here (`Conn::tls` is `None`; without the feature the session type has no values at all).
//!
//! What changes under TLS:
//! * a read pass ends only when the socket would block and rustls holds no plaintext;
//! * a frame counts as written once rustls took its last byte, and every "output empty" check
//!   of the close sequence includes the records rustls still holds;
//! * FIN goes only after close_notify and every record are written; close_notify is sent only
//!   when the core shuts the write side (the caller closed, the budget or the linger is spent,
//!   or the connection failed) — never while answers may still be owed;
//! * a TLS failure (a bad record, a bad certificate, an alert) takes the core's failing path:
//!   the alert goes out, then FIN, and the caller's close is awaited for the linger while its
//!   bytes are read and discarded, so no RST destroys what was written.

use super::{Conn, ReadOutcome};

#[cfg(feature = "tls")]
pub(crate) use imp::{TlsConn, identity};

/// Without the feature there is no session: `Option<Box<TlsConn>>` is always `None`.
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsConn {}

#[cfg(not(feature = "tls"))]
impl Conn {
    pub(in crate::server) fn read_some_tls(
        &mut self,
        _: std::time::Instant,
        _: &mut [u8],
    ) -> ReadOutcome {
        ReadOutcome::Nothing
    }
    pub(in crate::server) fn flush_tls(&mut self) {}
    pub(in crate::server) fn tls_flushed(&self) -> bool {
        true
    }
    pub(in crate::server) fn tls_shutdown_write(&mut self) {}
    pub(in crate::server) fn tls_close(&mut self) {}
    pub(in crate::server) fn handshake_ended(&mut self, _: bool) -> Option<bool> {
        None
    }
}

/// The caller's verified client certificate, once the handshake is done.
#[cfg(not(feature = "tls"))]
pub(crate) fn identity(
    _: &Option<Box<TlsConn>>,
) -> Option<&std::sync::Arc<crate::server::PeerIdentity>> {
    None
}

#[cfg(feature = "tls")]
mod imp {
    use std::io::{self, Read};
    use std::net::Shutdown;
    use std::sync::Arc;
    use std::time::Instant;

    use rustls::ServerConnection;

    use super::{Conn, ReadOutcome};
    use crate::server::PeerIdentity;
    use crate::tls::session::{Incoming, Pulled, Pushed, flush_records, pull, push};

    /// Bytes of plaintext asked of each step into a connection's own buffer.
    const READ_CHUNK: usize = 16 * 1024;

    pub(crate) struct TlsConn {
        session: ServerConnection,
        /// Ciphertext read and not yet taken by rustls (no memory between read passes).
        incoming: Incoming,
        /// TLS is over (it failed, or the caller sent close_notify or FIN): bytes still coming
        /// are read raw and discarded until the caller's FIN.
        raw: bool,
        /// TLS failed: an alert went out instead of close_notify.
        failed: bool,
        notify_sent: bool,
        /// FIN waits for the records left to be written.
        fin_pending: bool,
        /// Counted among the event loop's handshakes in progress.
        pub counted: bool,
        identity: Option<Arc<PeerIdentity>>,
    }

    impl TlsConn {
        pub fn new(config: Arc<rustls::ServerConfig>) -> Result<TlsConn, rustls::Error> {
            Ok(TlsConn {
                session: ServerConnection::new(config)?,
                incoming: Incoming::default(),
                raw: false,
                failed: false,
                notify_sent: false,
                fin_pending: false,
                counted: true,
                identity: None,
            })
        }

        /// Whether the handshake is over (done, or failed).
        pub fn handshake_over(&self) -> bool {
            !self.session.is_handshaking() || self.failed || self.raw
        }

        /// Notes the caller's identity once the handshake is done.
        fn after_progress(&mut self) {
            if self.identity.is_none()
                && !self.session.is_handshaking()
                && let Some(cert) = self.session.peer_certificates().and_then(|c| c.first())
            {
                self.identity = crate::tls::identity_of(cert).map(Arc::new);
            }
        }
    }

    impl Conn {
        /// One step of a TLS read pass (see `Conn::read_some`): plaintext rustls holds, or one
        /// socket read and the records it completes. `Nothing` only when the socket would block
        /// and rustls holds no plaintext.
        pub(in crate::server) fn read_some_tls(
            &mut self,
            now: Instant,
            scratch: &mut [u8],
        ) -> ReadOutcome {
            let Conn {
                tls,
                stream,
                core,
                input,
                read_done,
                peer,
                ..
            } = self;
            let Some(tls) = tls.as_deref_mut() else {
                return ReadOutcome::Nothing;
            };
            if *read_done {
                return ReadOutcome::Nothing;
            }
            if tls.raw || !core.wants_frames() {
                // No frame will be read any more: read and discard, only to see the
                // caller's FIN (rule 4). The input buffer stays empty, so nothing is decoded.
                input.consume(usize::MAX);
                return match stream.read(scratch) {
                    Ok(0) => {
                        *read_done = true;
                        core.handle_eof(now);
                        ReadOutcome::Nothing
                    }
                    Ok(n) => ReadOutcome::Buffered {
                        drained: n < scratch.len(),
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        ReadOutcome::Buffered { drained: false }
                    }
                    Err(_) => {
                        *read_done = true;
                        core.handle_transport_error("read failed");
                        ReadOutcome::Nothing
                    }
                };
            }
            let limit = core.max_frame() as usize + crate::proto::HEADER_LEN;
            let buffered = !input.is_empty();
            let room = if buffered {
                input.spare(READ_CHUNK, limit.max(READ_CHUNK))
            } else {
                scratch
            };
            if room.is_empty() {
                return ReadOutcome::Nothing;
            }
            let pulled = pull(&mut tls.session, stream, &mut tls.incoming, room);
            tls.after_progress();
            if matches!(
                pulled,
                Pulled::Blocked | Pulled::Plain { drained: true, .. }
            ) {
                tls.incoming.release_if_empty();
            }
            match pulled {
                Pulled::Plain { n, drained } => {
                    if buffered {
                        input.filled(n);
                        ReadOutcome::Buffered { drained }
                    } else {
                        ReadOutcome::Scratch { n, drained }
                    }
                }
                Pulled::End { clean } => {
                    if !clean {
                        log::debug!("TLS from {peer}: closed without close_notify");
                    }
                    tls.raw = true;
                    core.handle_eof(now);
                    ReadOutcome::Buffered { drained: false }
                }
                Pulled::Blocked => ReadOutcome::Nothing,
                Pulled::Tls(e) => {
                    log::info!("TLS from {peer}: {e}");
                    tls.failed = true;
                    tls.raw = true;
                    core.handle_layer_error(now, crate::tls::session::describe(&e));
                    ReadOutcome::Buffered { drained: false }
                }
                Pulled::Io(e) => {
                    log::debug!("read from {peer} failed: {e}");
                    *read_done = true;
                    core.handle_transport_error("read failed");
                    ReadOutcome::Nothing
                }
            }
        }

        /// The write pass: the core's output into rustls, records to the socket; then the FIN
        /// that waited for them.
        pub(in crate::server) fn flush_tls(&mut self) {
            let Conn {
                tls,
                stream,
                core,
                input,
                read_done,
                write_blocked,
                peer,
                ..
            } = self;
            let Some(tls) = tls.as_deref_mut() else {
                return;
            };
            match push(&mut tls.session, stream, core) {
                Pushed::Done => {
                    *write_blocked = false;
                    if tls.fin_pending {
                        tls.fin_pending = false;
                        if let Err(e) = stream.shutdown(Shutdown::Write) {
                            log::debug!("shutdown(write) failed: {e}");
                        }
                    }
                    input.shrink_if_empty(0);
                }
                Pushed::Blocked => *write_blocked = true,
                Pushed::Io(e) => {
                    log::debug!("write to {peer} failed: {e}");
                    *read_done = true;
                    core.handle_transport_error("write failed");
                }
            }
        }

        /// Whether rustls holds no record to write (and no FIN waits for them).
        pub(in crate::server) fn tls_flushed(&self) -> bool {
            self.tls
                .as_deref()
                .is_none_or(|t| !t.session.wants_write() && !t.fin_pending)
        }

        /// The core shuts the write side: close_notify (unless TLS failed: its alert went
        /// instead), every record written, then FIN.
        pub(in crate::server) fn tls_shutdown_write(&mut self) {
            let Some(tls) = self.tls.as_deref_mut() else {
                return;
            };
            if !tls.failed && !tls.notify_sent {
                tls.session.send_close_notify();
                tls.notify_sent = true;
            }
            tls.fin_pending = true;
            self.flush_tls();
        }

        /// The connection closes (the caller closed first, or the linger is spent):
        /// close_notify if not sent yet, written if the socket takes it at once.
        pub(in crate::server) fn tls_close(&mut self) {
            let Some(tls) = self.tls.as_deref_mut() else {
                return;
            };
            if !tls.failed && !tls.notify_sent {
                tls.session.send_close_notify();
                tls.notify_sent = true;
                let _ = flush_records(&mut tls.session, &mut self.stream);
            }
        }

        /// Whether the handshake counted among the loop's handshakes in progress has ended
        /// (`Some` once), and if so whether it completed (`Some(true)`: a TLS session is up)
        /// rather than failed or was given up.
        /// With `gone`, the connection is being removed: its handshake ends however far it got.
        pub(in crate::server) fn handshake_ended(&mut self, gone: bool) -> Option<bool> {
            match self.tls.as_deref_mut() {
                Some(t) if t.counted && (gone || t.handshake_over()) => {
                    t.counted = false;
                    Some(!t.session.is_handshaking() && !t.failed && !t.raw)
                }
                _ => None,
            }
        }
    }

    /// The caller's verified client certificate, once the handshake is done.
    pub(crate) fn identity(tls: &Option<Box<TlsConn>>) -> Option<&Arc<PeerIdentity>> {
        tls.as_deref().and_then(|t| t.identity.as_ref())
    }
}
