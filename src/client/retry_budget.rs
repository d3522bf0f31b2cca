//! The client-wide budget of busy replays, in the style of gRPC's retry throttling.
//!
//! A node that turns a request away as busy (OVERLOADED, NOT_READY) may be one full node among
//! idle ones, or the whole cluster may be full. Replaying after a pause is right in the first
//! case and a storm in the second. So busy replays draw on one token bucket per client:
//!
//! * every busy rejection takes one token;
//! * every successful answer puts back `ratio` tokens (at most `max`);
//! * a busy replay is allowed only while more than half the tokens are left.
//!
//! While the cluster answers at least `1 / ratio` times as many calls as it turns away, the
//! bucket stays full and busy calls are waited out within their deadline; when it mostly turns
//! them away, the bucket empties and calls fail fast with `CallError::Busy` instead of adding
//! load. Replays after SHUTTING_DOWN, GOAWAY or an unsent frame (a node restarting) never touch
//! it: a rolling restart at full load must cost no caller an error.
//!
//! Tokens are kept in thousandths in one atomic, so the accounting takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Thousandths of a token per token.
const MILLI: u64 = 1000;

/// A token bucket of busy replays, shared by every call of a client.
#[derive(Debug)]
pub struct RetryBudget {
    /// Tokens left, in thousandths.
    milli: AtomicU64,
    max: u64,
    ratio: u64,
}

impl RetryBudget {
    /// A full bucket of `max` tokens (at least 1) refilled by `ratio` tokens per success
    /// (clamped to 0.001..=max).
    pub fn new(max: u32, ratio: f64) -> RetryBudget {
        let max = u64::from(max.max(1)) * MILLI;
        let ratio = if ratio.is_finite() {
            ((ratio * MILLI as f64) as u64).clamp(1, max)
        } else {
            MILLI
        };
        RetryBudget {
            milli: AtomicU64::new(max),
            max,
            ratio,
        }
    }

    /// A busy rejection: takes a token, and says whether the call may replay (more than half
    /// the bucket is left).
    pub fn on_busy(&self) -> bool {
        let old = self
            .milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(MILLI))
            })
            .unwrap_or(0);
        old.saturating_sub(MILLI) > self.max / 2
    }

    /// A call got its answer: puts back `ratio` tokens.
    pub fn on_success(&self) {
        if self.milli.load(Ordering::Relaxed) >= self.max {
            return; // the common case: no write on the success path
        }
        let _ = self
            .milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t + self.ratio).min(self.max))
            });
    }

    /// Tokens left (whole tokens, rounded down).
    #[cfg(test)]
    pub fn tokens(&self) -> u64 {
        self.milli.load(Ordering::Acquire) / MILLI
    }
}

#[cfg(test)]
mod tests {
    use super::RetryBudget;

    #[test]
    fn busy_replays_are_allowed_while_more_than_half_is_left() {
        let b = RetryBudget::new(10, 0.5);
        // 10 → 9, 8, 7, 6: above half (5) each time.
        for i in 0..4 {
            assert!(b.on_busy(), "replay {i} refused");
        }
        assert!(!b.on_busy(), "5 tokens left is not more than half");
        assert!(!b.on_busy());
        assert_eq!(b.tokens(), 4);
    }

    #[test]
    fn successes_refill_at_the_ratio_up_to_the_max() {
        let b = RetryBudget::new(10, 0.5);
        for _ in 0..10 {
            b.on_busy();
        }
        assert_eq!(b.tokens(), 0);
        assert!(!b.on_busy(), "an empty bucket stays empty, never wraps");
        for _ in 0..12 {
            b.on_success();
        }
        assert_eq!(b.tokens(), 6);
        assert!(!b.on_busy(), "6 → 5 tokens: 5 is not more than half");
        b.on_success();
        b.on_success();
        b.on_success();
        assert_eq!(b.tokens(), 6, "5 + 3 × 0.5 = 6.5");
        b.on_success();
        assert!(b.on_busy(), "7 → 6 tokens: more than half");
    }

    #[test]
    fn the_bucket_never_exceeds_its_max() {
        let b = RetryBudget::new(4, 1.0);
        for _ in 0..100 {
            b.on_success();
        }
        assert_eq!(b.tokens(), 4);
        assert!(b.on_busy()); // 3 > 2
        assert!(!b.on_busy()); // 2 is half
    }

    #[test]
    fn odd_settings_are_clamped() {
        let b = RetryBudget::new(0, f64::NAN);
        assert_eq!(b.tokens(), 1);
        assert!(!b.on_busy(), "a one-token bucket allows nothing above half");
        b.on_success();
        assert_eq!(b.tokens(), 1);
        let b = RetryBudget::new(3, 1e30);
        b.on_busy();
        b.on_success();
        assert_eq!(
            b.tokens(),
            3,
            "a huge ratio refills to the max, no overflow"
        );
    }

    #[test]
    fn concurrent_accounting_loses_nothing() {
        let b = std::sync::Arc::new(RetryBudget::new(100_000, 1.0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        b.on_busy();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(b.tokens(), 60_000);
    }
}
