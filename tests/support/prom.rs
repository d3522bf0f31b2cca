//! A server's metrics as a Prometheus scrape reads them (prefix `gracerpc`).
//!
//! Include it with `#[path = "support/prom.rs"] mod prom;`.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// The text exposition of `s`'s metrics.
pub fn scrape(s: &gracerpc::server::ServerHandle) -> String {
    let mut registry = Registry::with_prefix("gracerpc");
    registry.register_collector(Box::new(s.metrics()));
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    text
}
