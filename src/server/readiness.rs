//! Graceful start: READY goes out only once the application says it is ready, and the advertised
//! capacity can ramp up over a warm-up period so callers shift load onto a new node gradually.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::loop_waker::LoopWaker;

/// Capacity the ramp starts from, in percent.
const RAMP_START: u32 = 10;
/// Steps of the ramp: READY is re-sent at most this many times while warming up.
const RAMP_STEPS: u32 = 9;

/// Lets the application say when the server is ready and at what capacity. Cheap to clone.
#[derive(Clone)]
pub struct ReadyHandle {
    target: Arc<AtomicU8>,
    waker: Arc<LoopWaker>,
}

impl ReadyHandle {
    pub(crate) fn new(target: Arc<AtomicU8>, waker: Arc<LoopWaker>) -> ReadyHandle {
        ReadyHandle { target, waker }
    }

    /// The server is ready at full capacity (after the warm-up ramp, if one is configured).
    pub fn set_ready(&self) {
        self.set_capacity(100);
    }

    /// The server is ready at `percent` of full capacity (1..=100; 0 is taken as 1).
    pub fn set_capacity(&self, percent: u8) {
        self.target.store(percent.clamp(1, 100), Ordering::Release);
        self.waker.wake();
    }

    /// Whether the application has said it is ready.
    pub fn is_ready(&self) -> bool {
        self.target.load(Ordering::Acquire) != 0
    }
}

impl std::fmt::Debug for ReadyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyHandle")
            .field("target", &self.target)
            .finish()
    }
}

/// The loop's side: turns the application's target into the capacity to advertise now.
pub(crate) struct Readiness {
    target: Arc<AtomicU8>,
    warmup: Duration,
    ramp_start: Option<Instant>,
    current: Option<u8>,
}

impl Readiness {
    pub fn new(target: Arc<AtomicU8>, warmup: Duration) -> Readiness {
        Readiness {
            target,
            warmup,
            ramp_start: None,
            current: None,
        }
    }

    /// The capacity advertised now (`None`: not ready, no READY is sent).
    pub fn capacity(&self) -> Option<u8> {
        self.current
    }

    /// Recomputes the capacity; returns the new value if it changed.
    pub fn poll_change(&mut self, now: Instant) -> Option<Option<u8>> {
        let target = u32::from(self.target.load(Ordering::Acquire));
        if target == 0 {
            return None;
        }
        let start = *self.ramp_start.get_or_insert(now);
        let want = ramp(target, self.warmup, now.saturating_duration_since(start));
        let want = Some(want);
        if want != self.current {
            self.current = want;
            return Some(want);
        }
        None
    }

    /// When the ramp takes its next step, if it is still ramping.
    pub fn next_change(&self) -> Option<Instant> {
        let start = self.ramp_start?;
        if self.warmup.is_zero() || self.current == Some(self.target.load(Ordering::Acquire)) {
            return None;
        }
        let step = self.warmup / RAMP_STEPS;
        let done = self
            .current
            .map_or(0, |c| u32::from(c).saturating_sub(RAMP_START))
            / 10;
        Some(start + step * (done + 1))
    }
}

/// The capacity `elapsed` into a warm-up of length `warmup` towards `target` percent: from 10 %
/// up in steps of 10 %, reaching `target` when the warm-up ends.
fn ramp(target: u32, warmup: Duration, elapsed: Duration) -> u8 {
    if warmup.is_zero() || elapsed >= warmup {
        return target as u8;
    }
    let steps_done = (elapsed.as_nanos() * u128::from(RAMP_STEPS) / warmup.as_nanos()) as u32;
    let pct = RAMP_START + 10 * steps_done;
    pct.min(target).max(1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_climbs_from_ten_percent_to_the_target() {
        let w = Duration::from_millis(900);
        assert_eq!(ramp(100, w, Duration::ZERO), 10);
        assert_eq!(ramp(100, w, Duration::from_millis(450)), 50);
        assert_eq!(ramp(100, w, Duration::from_millis(899)), 90);
        assert_eq!(ramp(100, w, w), 100);
        assert_eq!(
            ramp(30, w, Duration::from_millis(800)),
            30,
            "never above the target"
        );
        assert_eq!(
            ramp(100, Duration::ZERO, Duration::ZERO),
            100,
            "no warm-up: full at once"
        );
    }
}
