//! Per-method latency, accepted to answered: a fixed-bucket histogram of atomics recorded where
//! the answer is written (loop or worker), and the loop turn's batch of inline answers timed by
//! one clock reading. [`ServerMetrics`](super::metrics::ServerMetrics) reads them when scraped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the latency buckets, in microseconds (50 µs to 10 s).
const BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// One method's latency histogram (accepted to answered), fixed buckets, atomics only.
#[derive(Debug, Default)]
pub(crate) struct MethodLatency {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl MethodLatency {
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` requests that each took `d`.
    pub fn observe_n(&self, d: Duration, n: u64) {
        // (No u128 division: `as_micros` costs more than the rest of this.)
        let us = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.sum_us
            .fetch_add(us.saturating_mul(n), Ordering::Relaxed);
    }
    /// The sum in seconds, the count, and each bucket's upper bound in seconds with its
    /// count (per bucket, not cumulative; the last bound is infinite), as they are now.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BOUNDS_US.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let le = BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((le, n));
        }
        (
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count,
            buckets,
        )
    }
}

/// The inline answers of one loop turn, waiting for their latency. All were accepted at the
/// turn's clock reading and all are written when the turn flushes its connections, so one
/// clock reading just before that flush times them all: no clock read per call.
#[derive(Debug, Default)]
pub(crate) struct TurnTimings {
    /// The earliest acceptance among them.
    since: Option<Instant>,
    /// Each method answered this turn (distinct, so at most the registered methods) and how
    /// many times.
    methods: Vec<(Arc<MethodLatency>, u64)>,
}

impl TurnTimings {
    /// One inline answer of `latency`'s method, to a request accepted at `accepted`.
    pub fn add(&mut self, accepted: Instant, latency: &Arc<MethodLatency>) {
        self.since = Some(self.since.map_or(accepted, |t| t.min(accepted)));
        match self
            .methods
            .iter_mut()
            .find(|(l, _)| Arc::ptr_eq(l, latency))
        {
            Some((_, n)) => *n += 1,
            None => self.methods.push((latency.clone(), 1)),
        }
    }

    /// Records them all as answered at `now`.
    pub fn record(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            let d = now.saturating_duration_since(since);
            for (latency, n) in self.methods.drain(..) {
                latency.observe_n(d, n);
            }
        }
    }

    /// Whether any answer waits for its latency.
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
    }
}
