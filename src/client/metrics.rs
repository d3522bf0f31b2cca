//! The caller's metrics: counters the client keeps anyway, and one series per node read from
//! the node table at scrape time, so a node's series go when the node leaves the table.

use std::fmt;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{ClientInner, NodeSnapshot};

/// A client's metrics for a Prometheus registry (from [`Client::metrics`](super::Client::metrics)):
/// `client_replayed_total`, `client_retried_total`, `client_outcome_unknown_total`,
/// `client_goaways_received_total`, and per node (`node="ip:port"`) `client_node_outstanding`,
/// `client_node_ready` (1 while it is chosen for new calls) and `client_node_connections` (its
/// connections that can take a call, up to `ClientBuilder::connections_per_node`).
#[derive(Clone)]
pub struct ClientMetrics {
    pub(super) inner: Weak<ClientInner>,
}

impl fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMetrics").finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: &AtomicU64) -> fmt::Result {
    let m = ConstCounter::new(v.load(Ordering::Relaxed));
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

/// One gauge with a series per node (`node="ip:port"`).
fn node_gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    nodes: &[NodeSnapshot],
    value: impl Fn(&NodeSnapshot) -> i64,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for n in nodes {
        let addr = n.addr.to_string();
        let labels = [("node", addr.as_str())];
        ConstGauge::new(value(n)).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ClientMetrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let s = &inner.stats;
        counter(
            &mut e,
            "client_replayed",
            "Requests sent again because a node rejected them unrun.",
            &s.replayed,
        )?;
        counter(
            &mut e,
            "client_retried",
            "Idempotent requests retried after an unknown outcome.",
            &s.retried,
        )?;
        counter(
            &mut e,
            "client_outcome_unknown",
            "Calls that ended with an unknown outcome (may or may not have run).",
            &s.outcome_unknown,
        )?;
        counter(
            &mut e,
            "client_goaways_received",
            "GOAWAY frames received from nodes.",
            &inner.table.goaways_received,
        )?;
        let nodes = inner.table.snapshot();
        node_gauge(
            &mut e,
            "client_node_outstanding",
            "Calls outstanding on the node.",
            &nodes,
            |n| i64::from(n.outstanding),
        )?;
        node_gauge(
            &mut e,
            "client_node_ready",
            "1 while the node is chosen for new calls.",
            &nodes,
            |n| i64::from(n.state == super::NodeState::Ready),
        )?;
        node_gauge(
            &mut e,
            "client_node_connections",
            "The node's connections that can take a call now (READY, not draining).",
            &nodes,
            |n| {
                let lanes = inner
                    .table
                    .find(n.addr)
                    .map_or(0, |node| inner.ready_connections(node.index()));
                lanes as i64
            },
        )?;
        Ok(())
    }
}
