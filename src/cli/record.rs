//! What one call of a load did: the record `bench` and `rollout` sum up, audit and plot.

use gracerpc::client::CallError;

/// What one call did.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// The unique token the call carried (0 when the method carries none).
    pub token: u64,
    /// Start, in microseconds since the load began.
    pub start_us: u64,
    /// Latency in microseconds.
    pub latency_us: u64,
    /// `Ok(replays)` or the error.
    pub result: Result<u32, CallError>,
}
