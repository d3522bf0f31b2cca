//! The replay policy of one call, sans-IO: given how an attempt ended, end the call or send it
//! again — and when. No threads, no clock, no sockets: [`CallFuture`](super::CallFuture) drives
//! it, and a simulation can drive the very same code under a virtual clock.
//!
//! | outcome                          | verdict                                              |
//! |----------------------------------|------------------------------------------------------|
//! | Completed OK / other status      | the body / `CallError::Status`                       |
//! | Refused (not run, final)         | `CallError::Refused`                                 |
//! | Rejected, shutting down / unsent | again on another node at once (unless replay is off) |
//! | Rejected, busy                   | again after a pause, while the retry budget allows   |
//! | Unknown                          | again if idempotent, else `CallError::OutcomeUnknown` |
//! | DeadlineExceeded                 | `CallError::DeadlineExceeded { may_have_run }`       |
//!
//! A node that turns a request away as busy (OVERLOADED, NOT_READY) may be the only one, or all
//! nodes may be full (the survivors of a drain): the call replays at once on another node, then
//! after a doubling, jittered pause ([`BUSY_PAUSE_MIN`] to [`BUSY_PAUSE_MAX`]) — within its
//! deadline, for as long as the client-wide [`RetryBudget`] allows; when the budget is spent it
//! fails fast with `CallError::Busy`. Replays after a shutdown never take from the budget (a
//! rolling restart at load must not turn into failed calls); they are bounded by `max_replays`.

use std::time::Duration;

use super::error::CallError;
use super::retry_budget::RetryBudget;
use crate::proto::{Outcome, RejectReason, Rejection, Status};

/// The first pause before replaying a request a node turned away as busy.
pub const BUSY_PAUSE_MIN: Duration = Duration::from_millis(1);
/// The longest such pause.
pub const BUSY_PAUSE_MAX: Duration = Duration::from_millis(50);

/// The client-wide settings the policy follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Replays are on (off: a rejection ends the call).
    pub replay: bool,
    /// Replays (and, separately, retries of an idempotent call) allowed per call.
    pub max_replays: u32,
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The call succeeded with this body.
    Done(Vec<u8>),
    /// The call ends with this error.
    Fail(CallError),
    /// Send it again, avoiding [`Attempts::avoid`] if another node is choosable, not before
    /// `pause` has passed (if any).
    Again {
        /// Wait this long first.
        pause: Option<Duration>,
    },
}

/// The policy's memory of one call's attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    replays: u32,
    /// Replays after a shutdown or an unsent frame (bounded by `max_replays`).
    shutdown_replays: u32,
    retries: u32,
    /// Busy rejections (OVERLOADED, NOT_READY) in a row.
    busy: u32,
    may_have_run: bool,
    avoid: Option<usize>,
}

impl Attempts {
    /// A call not yet sent.
    pub fn new() -> Attempts {
        Attempts::default()
    }

    /// Replays after a rejection so far (the last one refused by `max_replays` included).
    pub fn replays(&self) -> u32 {
        self.replays
    }

    /// Retries of an idempotent call after an unknown outcome so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// An earlier attempt may have run (its outcome was unknown).
    pub fn may_have_run(&self) -> bool {
        self.may_have_run
    }

    /// The node (table index) the last attempt went to, to be avoided by the next.
    pub fn avoid(&self) -> Option<usize> {
        self.avoid
    }

    /// Decides after an attempt on the node at table index `node` ended with `outcome`.
    /// Successes refill `budget`, busy replays take from it; `random_below(n)` (a value in
    /// `0..n`) jitters busy pauses — the client passes its thread-local generator, a
    /// simulation a seeded one.
    pub fn decide(
        &mut self,
        policy: Policy,
        idempotent: bool,
        outcome: Outcome,
        node: usize,
        budget: &RetryBudget,
        random_below: &mut dyn FnMut(usize) -> usize,
    ) -> Verdict {
        match outcome {
            Outcome::Completed { status, body } if status == Status::OK => {
                budget.on_success();
                Verdict::Done(body)
            }
            Outcome::Completed { status, body } => {
                budget.on_success();
                Verdict::Fail(CallError::Status { status, body })
            }
            // Not run, and final: no other node would take it either.
            Outcome::Refused { status, body } => Verdict::Fail(CallError::Refused { status, body }),
            Outcome::Rejected(why) => {
                if !policy.replay {
                    return Verdict::Fail(CallError::Rejected);
                }
                self.replays += 1;
                self.avoid = Some(node);
                let busy = match why {
                    Rejection::Server(r @ (RejectReason::OVERLOADED | RejectReason::NOT_READY)) => {
                        Some(r)
                    }
                    _ => None,
                };
                let Some(reason) = busy else {
                    // A node shutting down, or a frame never sent: replay elsewhere at once,
                    // at no cost to the budget.
                    self.busy = 0;
                    self.shutdown_replays += 1;
                    if self.shutdown_replays > policy.max_replays {
                        return Verdict::Fail(CallError::Rejected);
                    }
                    return Verdict::Again { pause: None };
                };
                if !budget.on_busy() {
                    return Verdict::Fail(CallError::Busy { reason });
                }
                self.busy += 1;
                let pause = (self.busy >= 2).then(|| {
                    let pause = BUSY_PAUSE_MIN
                        .saturating_mul(1 << (self.busy - 2).min(16))
                        .min(BUSY_PAUSE_MAX);
                    // Jitter (50–100 %): callers turned away together do not return together.
                    let micros = pause.as_micros() as usize;
                    Duration::from_micros((micros / 2 + random_below(micros / 2 + 1)) as u64)
                });
                Verdict::Again { pause }
            }
            Outcome::Unknown => {
                if !(policy.replay && idempotent) || self.retries >= policy.max_replays {
                    return Verdict::Fail(CallError::OutcomeUnknown);
                }
                self.retries += 1;
                self.may_have_run = true;
                self.avoid = Some(node);
                Verdict::Again { pause: None }
            }
            Outcome::DeadlineExceeded { sent } => Verdict::Fail(CallError::DeadlineExceeded {
                may_have_run: sent || self.may_have_run,
            }),
        }
    }
}
