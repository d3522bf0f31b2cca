//! `serve --admin-listen`: the node's metrics and health on the admin endpoint.

use gracerpc::admin::AdminServer;
use gracerpc::server::ServerHandle;
use prometheus_client::registry::Registry;

/// Serves `handle`'s metrics (prefix `gracerpc_`) and readiness on `listener`.
pub fn start(
    listener: std::net::TcpListener,
    handle: &ServerHandle,
) -> std::io::Result<AdminServer> {
    let mut registry = Registry::with_prefix("gracerpc");
    let metrics = handle.metrics();
    registry.register_collector(Box::new(metrics.clone()));
    let admin = AdminServer::from_listener(listener, registry, move || metrics.is_serving())?;
    log::info!("admin endpoint on http://{}/metrics", admin.local_addr());
    Ok(admin)
}
