//! One server connection as the event loop holds it: the socket, the core state machine, the
//! input buffer, and the run-or-reject states of its requests on worker threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::tls_conn::TlsConn;
use super::token::ConnRef;
use super::workers::JobState;
use crate::proto::{CloseAction, IdMap, InBuf, ServerConn, id_map};

/// Bytes asked of each `read` into a connection's own buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Size of the loop's shared read buffer.
pub(crate) const SCRATCH: usize = 64 * 1024;

pub(crate) struct Conn {
    pub me: ConnRef,
    /// The peer's address, kept from `accept`: `getpeername` fails once the socket has closed.
    pub peer: SocketAddr,
    pub stream: TcpStream,
    pub core: ServerConn,
    pub input: InBuf,
    /// Requests handed to workers and not yet answered.
    pub jobs: IdMap<Arc<JobState>>,
    /// The peer shut its side, or the socket failed: read no more.
    pub read_done: bool,
    /// Reading stopped for back-pressure (output over the limit) with input possibly waiting.
    pub read_paused: bool,
    /// Output could not all be written: wait for a writable event.
    pub write_blocked: bool,
    /// The TLS session between the socket and the core, on a TLS listener (see `tls_conn.rs`).
    pub tls: Option<Box<TlsConn>>,
}

/// What a read pass saw.
pub(crate) enum ReadOutcome {
    /// `n` bytes arrived in the loop's scratch buffer (this connection had nothing buffered).
    Scratch { n: usize, drained: bool },
    /// Bytes arrived in the connection's own input buffer (a partial frame was waiting).
    Buffered { drained: bool },
    /// Nothing new.
    Nothing,
}

impl ReadOutcome {
    /// A read shorter than the room given means the kernel had nothing more; edge-triggered,
    /// the next arrival raises a new event, so the read that would only return `WouldBlock` is
    /// skipped.
    pub fn drained(&self) -> bool {
        match self {
            ReadOutcome::Scratch { drained, .. } | ReadOutcome::Buffered { drained } => *drained,
            ReadOutcome::Nothing => true,
        }
    }
}

impl Conn {
    pub fn new(
        me: ConnRef,
        stream: TcpStream,
        peer: SocketAddr,
        core: ServerConn,
        tls: Option<Box<TlsConn>>,
    ) -> Conn {
        Conn {
            tls,
            me,
            peer,
            stream,
            core,
            input: InBuf::new(),
            jobs: id_map(0),
            read_done: false,
            read_paused: false,
            write_blocked: false,
        }
    }

    /// Reads once. With nothing buffered, into the loop's `scratch` buffer, so an idle
    /// connection holds no input buffer of its own; a partial frame left over is then copied to
    /// the connection's buffer, and later reads go there until it is consumed. EOF and failures
    /// are handed to the core.
    pub fn read_some(&mut self, now: Instant, scratch: &mut [u8]) -> ReadOutcome {
        if self.tls.is_some() {
            return self.read_some_tls(now, scratch);
        }
        if self.read_done {
            return ReadOutcome::Nothing;
        }
        if !self.core.wants_frames() {
            // Failing or closing: read and discard, only to see the peer's close (rule 4).
            self.input.consume(usize::MAX);
        }
        let limit = self.core.max_frame() as usize + crate::proto::HEADER_LEN;
        let buffered = !self.input.is_empty();
        let room = if buffered {
            self.input.spare(READ_CHUNK, limit.max(READ_CHUNK))
        } else {
            scratch
        };
        if room.is_empty() {
            return ReadOutcome::Nothing;
        }
        match self.stream.read(room) {
            Ok(0) => {
                self.read_done = true;
                self.core.handle_eof(now);
                ReadOutcome::Nothing
            }
            Ok(n) => {
                let drained = n < room.len();
                if buffered {
                    self.input.filled(n);
                    ReadOutcome::Buffered { drained }
                } else {
                    ReadOutcome::Scratch { n, drained }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                ReadOutcome::Buffered { drained: false }
            }
            Err(e) => {
                log::debug!("read from {:?} failed: {e}", self.stream.peer_addr());
                self.read_done = true;
                self.core.handle_transport_error("read failed");
                ReadOutcome::Nothing
            }
        }
    }

    /// Writes queued output until it is all written or the socket would block.
    pub fn flush(&mut self) {
        if self.tls.is_some() {
            return self.flush_tls();
        }
        while !self.core.out().is_empty() {
            match self.stream.write(self.core.out()) {
                Ok(0) => {
                    self.core.handle_transport_error("write returned 0");
                    return;
                }
                Ok(n) => self.core.written(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("write to {:?} failed: {e}", self.stream.peer_addr());
                    self.read_done = true;
                    self.core.handle_transport_error("write failed");
                    return;
                }
            }
        }
        self.write_blocked = false;
        // An idle connection holds no input buffer: reads go to the loop's scratch buffer.
        self.input.shrink_if_empty(0);
    }

    /// Applies the core's close decisions to the socket. Returns true when the connection is
    /// finished and must be removed.
    pub fn apply_close(&mut self, now: Instant) -> bool {
        loop {
            // Under TLS, output counts as flushed only once rustls's records are written too.
            let below = self.tls_flushed();
            let Some(action) = self.core.poll_close_below(now, below) else {
                break;
            };
            match action {
                CloseAction::ShutdownWrite if self.tls.is_some() => self.tls_shutdown_write(),
                CloseAction::ShutdownWrite => {
                    if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                        log::debug!("shutdown(write) failed: {e}");
                    }
                }
                CloseAction::Close => {
                    self.tls_close();
                    return true;
                }
            }
        }
        self.core.is_closed()
    }

    /// Closes at the end of the close sequence without an RST: shuts the write side (if the
    /// core has not already), reads and discards the input that already arrived — bounded —
    /// and closes. Closing with unread input would make the kernel send RST, which destroys
    /// what the caller has not read yet (rule 4).
    pub fn close_at_stop(mut self, scratch: &mut [u8]) {
        self.tls_close();
        if let Err(e) = self.stream.shutdown(Shutdown::Write) {
            log::debug!("shutdown(write) at the stop: {e}");
        }
        for _ in 0..STOP_READS {
            match self.stream.read(scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: nothing left unread
            }
        }
    }
}

/// Reads (of the loop's scratch buffer) at most to empty a socket's input at the stop.
const STOP_READS: usize = 256;
