//! The replay policy of one call, sans-IO: given how an attempt ended, end the call or send it
//! again — and when. No threads, no clock, no sockets: [`CallFuture`](super::CallFuture) drives
//! it, and a simulation can drive the very same code under a virtual clock.
//!
//! | outcome                          | verdict                                              |
//! |----------------------------------|------------------------------------------------------|
//! | Completed OK / other status      | the body / `CallError::Status`                       |
//! | Rejected (any reason)            | again on another node (unless replay is off)         |
//! | Unknown                          | again if idempotent, else `CallError::OutcomeUnknown` |
//! | DeadlineExceeded                 | `CallError::DeadlineExceeded { may_have_run }`       |
//!
//! A node that turns a request away as busy (OVERLOADED, NOT_READY) may be the only one, or all
//! nodes may be full (the survivors of a drain): after the first such replay, the next ones wait
//! a short, doubling pause ([`BUSY_PAUSE_MIN`] to [`BUSY_PAUSE_MAX`]) within the deadline instead
//! of spending the call's replays in a burst.

use std::time::Duration;

use super::error::CallError;
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
    retries: u32,
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
    pub fn decide(
        &mut self,
        policy: Policy,
        idempotent: bool,
        outcome: Outcome,
        node: usize,
    ) -> Verdict {
        match outcome {
            Outcome::Completed { status, body } if status == Status::OK => Verdict::Done(body),
            Outcome::Completed { status, body } => {
                Verdict::Fail(CallError::Status { status, body })
            }
            Outcome::Rejected(why) => {
                if !policy.replay {
                    return Verdict::Fail(CallError::Rejected);
                }
                self.replays += 1;
                if self.replays > policy.max_replays {
                    return Verdict::Fail(CallError::Rejected);
                }
                self.avoid = Some(node);
                let busy = matches!(
                    why,
                    Rejection::Server(RejectReason::OVERLOADED | RejectReason::NOT_READY)
                );
                self.busy = if busy { self.busy + 1 } else { 0 };
                let pause = (self.busy >= 2).then(|| {
                    BUSY_PAUSE_MIN
                        .saturating_mul(1 << (self.busy - 2).min(16))
                        .min(BUSY_PAUSE_MAX)
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
