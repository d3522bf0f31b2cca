//! One server connection as the event loop holds it: the socket, the core state machine, the
//! input buffer, and the run-or-reject states of its requests on worker threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

mod tls;

use super::token::ConnRef;
use super::wire::Wire;
use super::workers::JobState;
use crate::proto::{CloseAction, IdMap, InBuf, ServerConn, id_map};
pub(crate) use tls::{TlsConn, identity};

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
    /// The TLS session between the socket and the core, on a TLS listener (see `conn/tls.rs`).
    pub tls: Option<Box<TlsConn>>,
    /// Where workers write their answers themselves (plaintext only; see `wire.rs`).
    pub wire: Option<Arc<Wire>>,
    /// Answers written by workers in part, the rest in the wire's tail: finished once the tail
    /// is written.
    pub tails: usize,
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
        let wire = tls.is_none().then(|| Wire::new(stream.as_raw_fd()));
        Conn {
            tls,
            wire,
            tails: 0,
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

    /// Writes queued output until it is all written or the socket would block: first what a
    /// worker left on the wire, then the core's output. Opens the wire to the workers when both
    /// are written and the core can still answer.
    pub fn flush(&mut self) {
        if self.tls.is_some() {
            return self.flush_tls();
        }
        let Some(wire) = self.wire.clone() else {
            return;
        };
        if self.tails > 0 && wire.flushed() {
            // The tails they ended in are written (by an earlier flush).
            self.core
                .finished_elsewhere(std::mem::take(&mut self.tails));
        }
        if wire.is_open() && self.core.out().is_empty() && self.core.answer_encoder().is_some() {
            // Nothing to write, and the workers may go on: no need to hold them up.
            self.write_blocked = false;
            self.input.shrink_if_empty(0);
            return;
        }
        let mut w = wire.lock();
        while !w.tail().is_empty() {
            match self.stream.write(w.tail()) {
                Ok(n) if n > 0 => w.tail_written(n),
                other => {
                    if !self.write_failed(other) {
                        return;
                    }
                }
            }
        }
        if self.tails > 0 {
            self.core
                .finished_elsewhere(std::mem::take(&mut self.tails));
        }
        while !self.core.out().is_empty() {
            match self.stream.write(self.core.out()) {
                Ok(n) if n > 0 => self.core.written(n),
                other => {
                    if !self.write_failed(other) {
                        w.set_open(false);
                        return;
                    }
                }
            }
        }
        w.set_open(self.core.answer_encoder().is_some());
        drop(w);
        self.write_blocked = false;
        // An idle connection holds no input buffer: reads go to the loop's scratch buffer.
        self.input.shrink_if_empty(0);
    }

    /// A write that wrote nothing: whether to try again (interrupted). Otherwise the socket
    /// is full (wait for a writable event) or failed (the core learns it).
    fn write_failed(&mut self, r: io::Result<usize>) -> bool {
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
            Ok(_) => self.core.handle_transport_error("write returned 0"),
            Err(e) => {
                log::debug!("write to {:?} failed: {e}", self.stream.peer_addr());
                self.read_done = true;
                self.core.handle_transport_error("write failed");
            }
        }
        false
    }

    /// A worker's answer to `id` is written (`tail`: all but the rest the wire's tail holds).
    pub fn written_by_worker(&mut self, id: u64, tail: bool) {
        if let Err(e) = self.core.respond_elsewhere(id) {
            log::error!("answer written by a worker: {e}");
            return;
        }
        // The worker left the tail before it sent this completion, and a tail only grows by a
        // short write made while the wire was open (so after any earlier tail was written). So
        // with no tail on the wire now, this answer's tail was written or dropped already: it
        // is finished. Otherwise it finishes with the tail, in `flush` or `shut_wire`.
        if tail && self.wire.as_ref().is_some_and(|w| !w.flushed()) {
            self.tails += 1;
        } else {
            self.core.finished_elsewhere(1);
        }
    }

    /// Workers write no more (before the write side is shut or the socket closed); a tail
    /// left is dropped, its answers finished.
    pub fn shut_wire(&mut self) {
        if let Some(w) = &self.wire {
            w.shut();
        }
        if self.tails > 0 {
            self.core
                .finished_elsewhere(std::mem::take(&mut self.tails));
        }
    }

    /// No tail of a worker's waits to be written.
    fn wire_flushed(&self) -> bool {
        self.wire.as_ref().is_none_or(|w| w.flushed())
    }

    /// Applies the core's close decisions to the socket. Returns true when the connection is
    /// finished and must be removed.
    pub fn apply_close(&mut self, now: Instant) -> bool {
        loop {
            // Under TLS, output counts as flushed only once rustls's records are written too.
            let below = self.tls_flushed() && self.wire_flushed();
            let Some(action) = self.core.poll_close_below(now, below) else {
                break;
            };
            match action {
                CloseAction::ShutdownWrite if self.tls.is_some() => self.tls_shutdown_write(),
                CloseAction::ShutdownWrite => {
                    self.shut_wire();
                    if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                        log::debug!("shutdown(write) failed: {e}");
                    }
                }
                CloseAction::Close => {
                    self.shut_wire();
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
        self.shut_wire();
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

impl Drop for Conn {
    /// No worker writes into the socket once it is closed (its descriptor may be reused).
    fn drop(&mut self) {
        if let Some(w) = &self.wire {
            w.shut();
        }
    }
}

/// Reads (of the loop's scratch buffer) at most to empty a socket's input at the stop.
const STOP_READS: usize = 256;
