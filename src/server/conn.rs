//! One server connection as the event loop holds it: the socket, the core state machine, the
//! input buffer, and the run-or-reject states of its requests on worker threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::token::ConnRef;
use super::workers::JobState;
use crate::proto::{CloseAction, IdMap, InBuf, ServerConn, id_map};

/// Bytes asked of each `read`.
const READ_CHUNK: usize = 16 * 1024;

/// Buffers above this size are freed when they run empty, so idle connections stay small.
const KEEP_BUF: usize = 16 * 1024;

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
}

/// What a read pass saw.
pub(crate) enum ReadOutcome {
    /// Bytes arrived and more may be waiting.
    Data,
    /// Bytes arrived and the socket is drained: a read shorter than the room given means the
    /// kernel had nothing more, and (edge-triggered) the next arrival raises a new event, so the
    /// read that would only return `WouldBlock` is skipped.
    Drained,
    /// Nothing new.
    Nothing,
}

impl Conn {
    pub fn new(me: ConnRef, stream: TcpStream, peer: SocketAddr, core: ServerConn) -> Conn {
        Conn {
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

    /// Reads once into the input buffer. EOF and failures are handed to the core.
    pub fn read_some(&mut self, now: Instant) -> ReadOutcome {
        if self.read_done {
            return ReadOutcome::Nothing;
        }
        let limit = self.core.max_frame() as usize + crate::proto::HEADER_LEN;
        if !self.core.wants_frames() {
            // Failing or closing: read and discard, only to see the peer's close (rule 4).
            self.input.consume(usize::MAX);
        }
        let room = self.input.spare(READ_CHUNK, limit.max(READ_CHUNK));
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
                let short = n < room.len();
                self.input.filled(n);
                if short {
                    ReadOutcome::Drained
                } else {
                    ReadOutcome::Data
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Data,
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
        self.input.shrink_if_empty(KEEP_BUF);
    }

    /// Applies the core's close decisions to the socket. Returns true when the connection is
    /// finished and must be removed.
    pub fn apply_close(&mut self, now: Instant) -> bool {
        while let Some(action) = self.core.poll_close(now) {
            match action {
                CloseAction::ShutdownWrite => {
                    if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                        log::debug!("shutdown(write) failed: {e}");
                    }
                }
                CloseAction::Close => return true,
            }
        }
        self.core.is_closed()
    }
}
