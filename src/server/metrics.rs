//! The server's counters, kept as relaxed atomics where the event happens and read only when
//! scraped: [`ServerMetrics`] is a `prometheus-client` [`Collector`] that turns them into the
//! Prometheus text format. Recording takes no lock, does no hash lookup and allocates nothing:
//! each registered method's latency histogram is created with the method, at build time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::latency::MethodLatency;
use super::responder::Shared;
use super::stats::Stats;
use crate::proto::RejectReason;

/// Reject reasons the server gives (indexed by their wire code), whether the event loop decided
/// (queue full, queued at the drain) or the protocol core (not READY yet, after GOAWAY, over
/// the per-connection limit, no deadline left: `Incoming::Rejected`).
const REASONS: [(RejectReason, &str); 5] = [
    (RejectReason::SHUTTING_DOWN, "shutting_down"),
    (RejectReason::NOT_READY, "not_ready"),
    (RejectReason::OVERLOADED, "overloaded"),
    (RejectReason::DEADLINE, "deadline"),
    (RejectReason::CANCELLED, "cancelled"),
];

/// The server's metrics for a Prometheus registry: register it with
/// [`Registry::register_collector`](prometheus_client::registry::Registry::register_collector);
/// every scrape reads the counters as they are then. Get it from
/// [`ServerHandle::metrics`](crate::server::ServerHandle::metrics).
///
/// Series (prefixed by the registry's prefix, if any): `requests_in_flight`,
/// `requests_accepted_total`, `requests_completed_total{status}` (`ok`, `failed`,
/// `unknown_method`, `refused`, and for requests answered later `cancelled` and
/// `deadline_exceeded`), `requests_rejected_total{reason}`, `late_answers_total`, `connections`,
/// `connections_accepted_total`, `goaways_sent_total`, `drains_total`,
/// `drain_last_duration_seconds`, `drain_abandoned_requests_total`, `ready` (1 while
/// `/readyz` says 200), and `request_duration_seconds{method}` (a histogram per registered
/// method, recorded when the server was built with
/// [`Builder::metrics`](crate::server::Builder::metrics)).
#[derive(Clone)]
pub struct ServerMetrics {
    pub(crate) stats: Arc<Stats>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) methods: Arc<[(Arc<str>, Arc<MethodLatency>)]>,
}

impl fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// READY, and no close sequence asked for yet: false from the signal (or
    /// [`shutdown`](crate::server::ServerHandle::shutdown)) on, before the registry withdrawal
    /// and before GOAWAY.
    pub fn is_serving(&self) -> bool {
        self.stats.counters.serving.load(Ordering::Acquire)
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = ConstCounter::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> fmt::Result {
    let m = ConstGauge::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Collector for ServerMetrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.stats;
        let c = &s.counters;
        let gauge_of = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut e,
            "requests_in_flight",
            "Requests accepted and not yet answered.",
            gauge_of(s.in_flight.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "requests_accepted",
            "Requests accepted for a handler.",
            load(&c.accepted),
        )?;
        {
            let mut m = e.encode_descriptor(
                "requests_completed",
                "Requests answered, by outcome.",
                None,
                MetricType::Counter,
            )?;
            let expired = u64::try_from(s.expired.load(Ordering::Relaxed)).unwrap_or(u64::MAX);
            for (status, v) in [
                ("ok", load(&c.completed_ok)),
                ("failed", load(&c.completed_failed)),
                ("unknown_method", load(&c.unknown_method)),
                ("refused", load(&c.refused)),
                ("cancelled", load(&c.completed_cancelled)),
                ("deadline_exceeded", expired),
            ] {
                let labels = [("status", status)];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "requests_rejected",
                "Requests rejected unstarted by the server's own decision, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, name) in REASONS {
                let v = c.rejected.get(usize::from(reason.0)).map_or(0, load);
                let labels = [("reason", name)];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut e,
            "connections",
            "Connections open.",
            gauge_of(s.connections.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "connections_accepted",
            "Connections accepted.",
            load(&c.connections_accepted),
        )?;
        counter(
            &mut e,
            "goaways_sent",
            "GOAWAY frames sent (one per connection open when a close sequence starts).",
            load(&c.goaways_sent),
        )?;
        counter(
            &mut e,
            "drains",
            "Close sequences finished.",
            load(&c.drains),
        )?;
        {
            let v = load(&c.drain_seconds_us) as f64 / 1e6;
            let m = ConstGauge::new(v);
            m.encode(e.encode_descriptor(
                "drain_last_duration_seconds",
                "How long the last close sequence took.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        counter(
            &mut e,
            "late_answers",
            "Answers from responders or async handlers for requests already answered (by the \
             server at the deadline, on CANCEL, or because the connection closed), dropped.",
            self.shared.late.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "drain_abandoned_requests",
            "Requests still running when a close sequence's budget ran out.",
            load(&c.drain_abandoned),
        )?;
        gauge(
            &mut e,
            "ready",
            "1 while READY and no close sequence was asked for (what /readyz reports).",
            i64::from(self.is_serving()),
        )?;
        let mut m = e.encode_descriptor(
            "request_duration_seconds",
            "Time from accepting a request to its handler's answer, by method.",
            None,
            MetricType::Histogram,
        )?;
        for (method, lat) in self.methods.iter() {
            let (sum_seconds, count, buckets) = lat.snapshot();
            let labels = [("method", &**method)];
            m.encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum_seconds,
                    count,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
