//! The registry flags (`serve --register`, `call`/`bench --discover`, `rollout --registry`).
//!
//! They exist in every build, so `--help` shows them; a build without the `etcd` feature says
//! clearly that the flag needs it, instead of clap's "unexpected argument".

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use gracerpc::client::{Client, ClientBuilder};
use gracerpc::server::Builder;

/// Where a caller (`call`, `bench`) finds its nodes: listed, or in a registry.
#[derive(Args, Debug)]
pub struct NodesArgs {
    /// Comma-separated node addresses (host:port; a host name such as localhost is resolved).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = crate::cli::node_addr,
        required_unless_present = "discover"
    )]
    pub nodes: Vec<SocketAddr>,
    /// Find the nodes in a registry instead: etcd://HOST:PORT/SERVICE (needs the `etcd`
    /// feature).
    #[arg(long, value_name = "URL", conflicts_with = "nodes")]
    pub discover: Option<String>,
}

impl NodesArgs {
    /// A client builder with these nodes, or this registry's discovery.
    pub fn builder(&self) -> Result<ClientBuilder, String> {
        match &self.discover {
            Some(url) => discover(Client::builder(), url),
            None => Ok(Client::builder().nodes(self.nodes.clone())),
        }
    }
}

#[cfg(not(feature = "etcd"))]
fn needs_feature(flag: &str) -> String {
    format!(
        "{flag} needs gracerpc built with the `etcd` feature \
         (cargo build --release --features etcd)"
    )
}

/// `serve --register etcd://HOST:PORT/SERVICE`: register once READY, deregister before GOAWAY.
#[cfg(feature = "etcd")]
pub fn register(
    builder: Builder,
    url: &str,
    ttl: Duration,
    advertise: Option<SocketAddr>,
) -> Result<Builder, String> {
    let service = gracerpc::etcd::Service::parse(url).map_err(|e| e.to_string())?;
    let mut registrar = service.registrar().ttl(ttl);
    if let Some(a) = advertise {
        registrar = registrar.advertise(a);
    }
    Ok(builder.registrar(registrar))
}

#[cfg(not(feature = "etcd"))]
pub fn register(
    _: Builder,
    _: &str,
    _: Duration,
    _: Option<SocketAddr>,
) -> Result<Builder, String> {
    Err(needs_feature("--register"))
}

/// `--discover etcd://HOST:PORT/SERVICE`: nodes come from the registry.
#[cfg(feature = "etcd")]
pub fn discover(builder: ClientBuilder, url: &str) -> Result<ClientBuilder, String> {
    let service = gracerpc::etcd::Service::parse(url).map_err(|e| e.to_string())?;
    Ok(builder.discovery(service.discovery()))
}

#[cfg(not(feature = "etcd"))]
pub fn discover(_: ClientBuilder, _: &str) -> Result<ClientBuilder, String> {
    Err(needs_feature("--discover"))
}

/// Waits until the client sees at least one node READY, then a little longer so that the other
/// nodes the registry listed at the same time get connected too.
pub fn wait_discovered(client: &Client, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    let events = client.subscribe();
    loop {
        let nodes = client.nodes();
        if nodes.iter().any(|n| n.state.is_choosable()) {
            let settle = Instant::now() + Duration::from_millis(300);
            while Instant::now() < settle && !client.nodes().iter().all(|n| n.state.is_choosable())
            {
                let _ = events.recv_timeout(Duration::from_millis(20));
            }
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = events.recv_timeout(left.min(Duration::from_millis(50)));
    }
}

/// A registry started for `rollout --registry etcd`: a local etcd stopped by its PID on drop.
pub struct LocalRegistry {
    /// etcd's `HOST:PORT`.
    authority: String,
    #[cfg(feature = "etcd")]
    _etcd: gracerpc::etcd::LocalEtcd,
}

impl LocalRegistry {
    /// Starts a local etcd with its data under `dir`.
    #[cfg(feature = "etcd")]
    pub fn start(dir: &Path) -> Result<LocalRegistry, String> {
        let etcd = gracerpc::etcd::LocalEtcd::start(dir)
            .map_err(|e| format!("--registry etcd: cannot start a local etcd: {e}"))?;
        log::info!(
            "local etcd (pid {}) on {}",
            etcd.pid().unwrap_or(0),
            etcd.authority()
        );
        Ok(LocalRegistry {
            authority: etcd.authority(),
            _etcd: etcd,
        })
    }

    #[cfg(not(feature = "etcd"))]
    pub fn start(_: &Path) -> Result<LocalRegistry, String> {
        Err(needs_feature("--registry etcd"))
    }

    /// The URL of `service` in this registry.
    pub fn url(&self, service: &str) -> String {
        format!("etcd://{}/{service}", self.authority)
    }
}
