//! A worker's outbox: the answers it writes to plaintext connections itself, with no hand-off
//! to the event loop (see `wire.rs`).
//!
//! Answers are gathered per connection so that a batch goes out in one write. The loop learns
//! of them from their completions at its next turn: nothing wakes it for answers already
//! written (it bounds its sleep while jobs are out; see `EventLoop::sleep`). It is woken only for
//! what it must write itself: answers the wire refused, and the tail of a short write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::slot::{Answer, Completion};
use super::stats::Stats;
use super::wire::{Sent, Wire};
use crate::proto::{AnswerEncoder, Status};

/// A plaintext connection's socket, and how its answers are encoded.
pub(crate) struct Direct {
    pub wire: Arc<Wire>,
    pub encoder: AnswerEncoder,
}

/// The answers one worker gathered for one connection.
#[derive(Default)]
pub(crate) struct Outbox {
    wire: Option<Arc<Wire>>,
    frames: Vec<u8>,
    /// The answers encoded in `frames`, each with the offset its frame ends at.
    answers: Vec<(Completion, usize)>,
    /// When they must go out at the latest: [`OUTBOX_WAIT`] after the job of the first of them
    /// began (a slow handler after it holds it not much longer than itself).
    due: Option<Instant>,
}

/// Bytes gathered before they are written.
const OUTBOX_BYTES: usize = 64 * 1024;
/// How long an answer waits for the batch's next ones: a job that begins later than this after
/// the first answer's job began writes what was gathered first.
const OUTBOX_WAIT: Duration = Duration::from_micros(100);

impl Outbox {
    /// Adds a ran job's answer; writes what was gathered first if it is for another connection,
    /// or when enough is gathered or it waited long enough. Whether the loop must be woken.
    pub fn add(
        &mut self,
        c: Completion,
        direct: Direct,
        began: Instant,
        done: &Sender<Completion>,
        stats: &Stats,
    ) -> Result<bool, Gone> {
        let mut wake = false;
        if self
            .wire
            .as_ref()
            .is_some_and(|w| !Arc::ptr_eq(w, &direct.wire))
        {
            wake |= self.flush(done, stats)?;
        }
        let (status, body) = match &c.result {
            Answer::Ran(Ok(body)) => (Status::OK, body),
            Answer::Ran(Err(f)) => (f.status, &f.body),
            _ => return done.send(c).map(|()| true).map_err(|_| Gone),
        };
        direct.encoder.encode(c.id, status, body, &mut self.frames);
        self.answers.push((c, self.frames.len()));
        self.wire.get_or_insert(direct.wire);
        self.due.get_or_insert_with(|| began + OUTBOX_WAIT);
        if self.frames.len() >= OUTBOX_BYTES {
            wake |= self.flush(done, stats)?;
        }
        Ok(wake)
    }

    /// Whether what was gathered waited long enough (`now`: before the next job).
    pub fn overdue(&self, now: Instant) -> bool {
        self.due.is_some_and(|t| now >= t)
    }

    /// Writes what was gathered (or hands it to the loop if the wire is closed), then sends the
    /// completions. Whether the loop must be woken: for answers it must write.
    pub fn flush(&mut self, done: &Sender<Completion>, stats: &Stats) -> Result<bool, Gone> {
        let Some(wire) = self.wire.take() else {
            return Ok(false);
        };
        self.due = None;
        // Counted and timed before they can have been read, as the loop does with its answers.
        let now = self
            .answers
            .iter()
            .any(|(c, _)| c.timing.is_some())
            .then(Instant::now);
        for (c, _) in &mut self.answers {
            count(c, now, stats);
        }
        let sent = wire.send(&self.frames);
        let mut wake = false;
        let mut gone = false;
        for (mut c, end) in self.answers.drain(..) {
            if let Sent::Wrote(n) = sent {
                let tail = end > n;
                // The rest waits in the wire's tail: the loop writes it.
                wake |= tail;
                written(&mut c, tail);
            } else {
                // The loop writes it.
                wake = true;
            }
            gone |= done.send(c).is_err();
        }
        self.frames.clear();
        if self.frames.capacity() > 4 * OUTBOX_BYTES {
            self.frames = Vec::new();
        }
        if gone { Err(Gone) } else { Ok(wake) }
    }
}

/// The loop is gone: its end of the completion channel was dropped.
pub(crate) struct Gone;

/// Counts a ran job's answer among the completed ones and records its latency (metrics on).
fn count(c: &mut Completion, now: Option<Instant>, stats: &Stats) {
    let counters = &stats.counters;
    match &c.result {
        Answer::Ran(Ok(_)) => counters.completed_ok.fetch_add(1, Ordering::Relaxed),
        _ => counters.completed_failed.fetch_add(1, Ordering::Relaxed),
    };
    if let (Some((accepted, latency)), Some(now)) = (c.timing.take(), now) {
        latency.observe(now.saturating_duration_since(accepted));
    }
    c.counted = true;
}

/// Turns a ran job's completion into one of an answer this worker wrote, the answer's buffer
/// back to the loop's pool if the worker kept the request's.
fn written(c: &mut Completion, tail: bool) {
    let body = match std::mem::replace(&mut c.result, Answer::Written { tail }) {
        Answer::Ran(Ok(body)) => body,
        Answer::Ran(Err(f)) => f.body,
        other => {
            c.result = other;
            return;
        }
    };
    if c.pool_answer {
        c.buf = body;
    }
}
