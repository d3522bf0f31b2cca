//! etcd as the service registry (feature `etcd`): nodes register `service → address` under a
//! lease once READY and revoke it before GOAWAY; callers list and watch the service's prefix.
//!
//! # Example
//!
//! ```no_run
//! use gracerpc::client::Client;
//! use gracerpc::etcd::Service;
//! use gracerpc::server::{Request, Server};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = Service::parse("etcd://127.0.0.1:2379/echo")?;
//! let server = Server::builder()
//!     .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
//!     .registrar(service.registrar())
//!     .spawn()?;
//! let client = Client::builder().discovery(service.discovery()).build()?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it talks to etcd
//! Over etcd's v3 JSON gateway (`POST /v3/...` on the client port, etcd 3.4 and later) with
//! `ureq`, a blocking HTTP/1.1 client, and `serde_json`/`base64`, not over gRPC: etcd's Rust
//! clients bring an async gRPC stack (tonic, tokio, prost) and a runtime that this library does
//! not otherwise need, for five calls.
//!
//! # Layout in etcd
//! One key per node: `gracerpc/<service>/<ip:port>` = `<ip:port>`, attached to the node's lease.
//! A node that crashes stops renewing its lease, and etcd deletes the key when the lease's TTL
//! runs out.

mod client;
mod discovery;
mod gateway;
mod local;
mod registrar;
mod watch;

pub use discovery::EtcdDiscovery;
pub use local::LocalEtcd;
pub use registrar::EtcdRegistrar;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use client::Etcd;

/// How long one request to etcd may take (connecting, writing, and reading the answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A service in an etcd registry, from a URL `etcd://HOST:PORT/SERVICE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    authority: String,
    name: String,
}

/// A URL that is not `etcd://HOST:PORT/SERVICE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUrl(String);

impl fmt::Display for BadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected etcd://HOST:PORT/SERVICE (SERVICE: letters, digits, '.', '_', '-')",
            self.0
        )
    }
}

impl std::error::Error for BadUrl {}

impl Service {
    /// Parses `etcd://HOST:PORT/SERVICE`.
    pub fn parse(url: &str) -> Result<Service, BadUrl> {
        let bad = || BadUrl(url.to_owned());
        let rest = url.strip_prefix("etcd://").ok_or_else(bad)?;
        let (authority, name) = rest.split_once('/').ok_or_else(bad)?;
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(bad());
        }
        Ok(Service {
            authority: authority.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// etcd's `HOST:PORT`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The prefix under which the service's nodes are registered.
    pub fn prefix(&self) -> String {
        format!("gracerpc/{}/", self.name)
    }

    /// A registrar for a server of this service (lease TTL 5 s; see [`EtcdRegistrar`]).
    pub fn registrar(&self) -> EtcdRegistrar {
        EtcdRegistrar::new(self.clone())
    }

    /// A discovery for clients of this service (see [`EtcdDiscovery`]).
    pub fn discovery(&self) -> EtcdDiscovery {
        EtcdDiscovery::start(self.clone())
    }

    /// The nodes registered now (one request; for tools and tests).
    pub fn list(&self) -> io::Result<Vec<SocketAddr>> {
        let (_, kvs) = self.etcd().range_prefix(self.prefix().as_bytes())?;
        let mut nodes: Vec<SocketAddr> = kvs.iter().filter_map(|(_, v)| parse_addr(v)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        Ok(nodes)
    }

    fn etcd(&self) -> Etcd {
        Etcd::new(&self.authority, REQUEST_TIMEOUT)
    }

    fn key(&self, addr: SocketAddr) -> String {
        format!("{}{addr}", self.prefix())
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}/{}", self.authority, self.name)
    }
}

/// A registered value: `ip:port`.
fn parse_addr(value: &[u8]) -> Option<SocketAddr> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = Service::parse("etcd://127.0.0.1:2379/echo-v1.2_x").unwrap();
        assert_eq!(s.authority(), "127.0.0.1:2379");
        assert_eq!(s.name(), "echo-v1.2_x");
        assert_eq!(s.prefix(), "gracerpc/echo-v1.2_x/");
        assert_eq!(s.to_string(), "etcd://127.0.0.1:2379/echo-v1.2_x");
        assert_eq!(
            s.key("10.0.0.1:80".parse().unwrap()),
            "gracerpc/echo-v1.2_x/10.0.0.1:80"
        );
        assert!(Service::parse("etcd://localhost:2379/svc").is_ok());
        for bad in [
            "http://127.0.0.1:2379/echo",
            "etcd://127.0.0.1:2379",
            "etcd://127.0.0.1:2379/",
            "etcd://127.0.0.1/echo",
            "etcd://:2379/echo",
            "etcd://127.0.0.1:99999/echo",
            "etcd://127.0.0.1:2379/a/b",
            "etcd://127.0.0.1:2379/a b",
        ] {
            assert!(Service::parse(bad).is_err(), "{bad}");
        }
    }
}
