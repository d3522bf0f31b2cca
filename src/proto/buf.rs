//! Input and output byte buffers owned by a connection and filled or drained by the driver.
//!
//! Both are bounded by their users (the input buffer by the maximum frame size, the output buffer
//! by the driver's back-pressure limit) and give their memory back when they run empty, so an
//! idle connection holds no buffer at all.

use super::codes::Kind;
use super::frame::frame_len_at;
use super::header::HEADER_LEN;

/// Bytes read from the peer and not yet decoded.
#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// An empty buffer that allocates on first use.
    pub fn new() -> InBuf {
        InBuf::default()
    }

    /// The bytes waiting to be decoded.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether no bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` bytes at the front as decoded.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into: at least `want` bytes unless `limit` (the buffer's largest size)
    /// forbids it. Returns an empty slice only when `limit` bytes are already waiting.
    pub fn spare(&mut self, want: usize, limit: usize) -> &mut [u8] {
        if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let need = (self.end + want).min(limit.max(HEADER_LEN));
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into the slice [`spare`](Self::spare) returned.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends bytes (for drivers that read elsewhere first, and for tests).
    pub fn extend(&mut self, bytes: &[u8]) {
        let room = self.spare(bytes.len(), usize::MAX);
        room[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// Frees the buffer's memory if nothing is waiting and it holds more than `keep` bytes.
    pub fn shrink_if_empty(&mut self, keep: usize) {
        if self.is_empty() && self.buf.capacity() > keep {
            self.buf = Vec::new();
        }
    }

    /// Bytes of memory held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Encoded frames waiting to be written to the peer.
///
/// Invariant: `buf[0]` is always the start of a frame, so the frames can be walked from their
/// headers. That lets the owner learn which frames were fully written (`consume`) and cut the
/// frames not yet started (`cut_unstarted`).
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    /// Bytes already written to the peer.
    pos: usize,
    /// Start of the first frame not yet fully written.
    walk: usize,
    /// Bytes after `pos` lent to a writer (see [`lend`](Self::lend)): they may be on the
    /// wire already, so the frames they touch count as started until the writer reports.
    lent: usize,
    /// Set by a cut during a loan: the end of the lent frames it kept only because they were
    /// lent. When the writer reports, the ones it did not start are dropped as the cut would
    /// have dropped them (else a frame never started would go out after GOAWAY or the end).
    recut: usize,
}

impl OutBuf {
    /// The bytes still to be written.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Whether everything encoded has been written.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Bytes still to be written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes of memory held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The vector to encode frames into (whole frames only).
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Lends every pending byte to a writer that will write them without holding the owner
    /// (a lock released during the syscall): until [`consume`](Self::consume) reports how many
    /// went out, every frame they touch counts as started, so no cut can take back a frame
    /// that may already be on the wire.
    pub(crate) fn lend(&mut self) {
        self.lent = self.len();
    }

    /// The end of the bytes that may have been written: written, or lent to a writer.
    fn started_end(&self) -> usize {
        self.pos + self.lent
    }

    /// Records that `n` bytes were written (and ends a loan: bytes lent but not written are
    /// pending again); calls `done(header)` for every frame that is now written in full.
    pub(crate) fn consume(&mut self, n: usize, mut done: impl FnMut(&[u8; HEADER_LEN])) {
        self.lent = 0;
        self.pos = (self.pos + n).min(self.buf.len());
        while let Some(len) = frame_len_at(&self.buf[self.walk..]) {
            if self.walk + len > self.pos {
                break;
            }
            if let Some(head) = self.buf[self.walk..].first_chunk::<HEADER_LEN>() {
                done(head);
            }
            self.walk += len;
        }
        let recut = std::mem::take(&mut self.recut);
        if recut > 0 {
            self.cut_between(recut);
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.walk = 0;
        } else if self.walk > 0 && self.walk >= self.buf.len() / 2 {
            self.buf.drain(..self.walk);
            self.pos -= self.walk;
            self.walk = 0;
        }
    }

    /// Drops every frame of which no byte has been written yet, calling `cut(header)` for each;
    /// a frame partly written is kept, so the peer never sees half a frame. A HELLO not yet
    /// written is kept too: every connection must open with it, whatever follows.
    pub(crate) fn cut_unstarted(&mut self, mut cut: impl FnMut(&[u8; HEADER_LEN])) {
        let mut at = self.walk;
        while at < self.started_end() || self.buf.get(at) == Some(&Kind::HELLO.0) {
            match frame_len_at(&self.buf[at..]) {
                Some(len) => at += len,
                None => return,
            }
        }
        let keep = at;
        if self.lent > 0 {
            self.recut = keep;
        }
        while let Some(head) = self
            .buf
            .get(at..)
            .and_then(|b| b.first_chunk::<HEADER_LEN>())
        {
            cut(head);
            match frame_len_at(&self.buf[at..]) {
                Some(len) => at += len,
                None => break,
            }
        }
        self.buf.truncate(keep);
    }

    /// Drops the frames not started that lie before `end` (a HELLO excepted, as in
    /// [`cut_unstarted`](Self::cut_unstarted)); the frames from `end` on stay.
    fn cut_between(&mut self, end: usize) {
        let mut from = self.walk;
        while from < self.pos || self.buf.get(from) == Some(&Kind::HELLO.0) {
            match frame_len_at(&self.buf[from..]) {
                Some(len) => from += len,
                None => return,
            }
        }
        if from < end {
            self.buf.drain(from..end);
        }
    }

    /// Drops the REQUEST frame for `id` if no byte of it has been written yet; true if it was
    /// dropped (the peer can never read it). Frames before and after it are kept.
    pub(crate) fn cut_request(&mut self, id: u64) -> bool {
        let mut at = self.walk;
        while let Some(head) = self
            .buf
            .get(at..)
            .and_then(|b| b.first_chunk::<HEADER_LEN>())
        {
            let Some(len) = frame_len_at(&self.buf[at..]) else {
                return false;
            };
            if at >= self.started_end()
                && head[0] == Kind::REQUEST.0
                && head[8..16] == id.to_be_bytes()
            {
                self.buf.drain(at..at + len);
                return true;
            }
            at += len;
        }
        false
    }

    /// The id of the last REQUEST of which a byte may have been written (partly written, or
    /// lent to a writer) and that is not yet written in full, if any.
    pub(crate) fn started_request(&self) -> Option<u64> {
        let mut at = self.walk;
        let mut last = None;
        while at < self.started_end() {
            let head = self.buf.get(at..)?.first_chunk::<HEADER_LEN>()?;
            if head[0] == Kind::REQUEST.0 {
                last = Some(u64::from_be_bytes([
                    head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
                ]));
            }
            at += frame_len_at(&self.buf[at..])?;
        }
        last
    }

    /// Drops everything not yet written in full, calling `gone(header)` for each frame dropped
    /// (the frame partly written included).
    pub(crate) fn discard(&mut self, mut gone: impl FnMut(&[u8; HEADER_LEN])) {
        let mut at = self.walk;
        while let Some(head) = self
            .buf
            .get(at..)
            .and_then(|b| b.first_chunk::<HEADER_LEN>())
        {
            gone(head);
            match frame_len_at(&self.buf[at..]) {
                Some(len) => at += len,
                None => break,
            }
        }
        self.buf.clear();
        self.pos = 0;
        self.walk = 0;
        self.lent = 0;
        self.recut = 0;
    }

    /// Frees the buffer's memory if nothing is waiting and it holds more than `keep` bytes.
    pub fn shrink_if_empty(&mut self, keep: usize) {
        if self.is_empty() && self.buf.capacity() > keep {
            self.buf = Vec::new();
        }
    }
}
