//! A caller's TLS settings: the CA it trusts, its own certificate for mutual TLS, and the
//! name it expects on each node's certificate. Discovery yields addresses, so the name is set
//! per service ([`ClientTls::server_name`]) or per node ([`ClientTls::node_server_name`]);
//! without either, a node's IP address is the name checked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::pem::{self, Source};
use super::{TlsError, VERSIONS, provider};

#[derive(Clone, Debug)]
enum Origin {
    Files {
        ca: PathBuf,
        cert_key: Option<(PathBuf, PathBuf)>,
    },
    Mem,
}

/// A caller's TLS configuration (see
/// [`ClientBuilder::tls`](crate::client::ClientBuilder::tls)). Cheap to clone; clones share it.
#[derive(Clone)]
pub struct ClientTls {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Arc<ClientConfig>>,
    origin: Mutex<Origin>,
    service_name: RwLock<Option<ServerName<'static>>>,
    node_names: RwLock<HashMap<SocketAddr, ServerName<'static>>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("origin", &*self.inner.origin.lock())
            .field("server_name", &*self.inner.service_name.read())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trust the CAs in the PEM file `ca`; with `cert_key` (certificate chain, private key),
    /// present that certificate to nodes that ask for one (mutual TLS).
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert_key: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let origin = Origin::Files {
            ca: ca.as_ref().to_path_buf(),
            cert_key: cert_key.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
        };
        let config = build_from(&origin)?;
        Ok(ClientTls::with(config, origin))
    }

    /// The same from PEM in memory.
    pub fn from_pem(ca: &[u8], cert_key: Option<(&[u8], &[u8])>) -> Result<ClientTls, TlsError> {
        let config = build(
            Source::Mem(ca),
            cert_key.map(|(c, k)| (Source::Mem(c), Source::Mem(k))),
        )?;
        Ok(ClientTls::with(config, Origin::Mem))
    }

    fn with(config: ClientConfig, origin: Origin) -> ClientTls {
        ClientTls {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(config)),
                origin: Mutex::new(origin),
                service_name: RwLock::new(None),
                node_names: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The name every node's certificate must carry (a DNS name, or an IP address), unless a
    /// node has its own ([`node_server_name`](Self::node_server_name)): the service's name.
    pub fn server_name(self, name: &str) -> Result<ClientTls, TlsError> {
        *self.inner.service_name.write() = Some(parse_name(name)?);
        Ok(self)
    }

    /// The name the certificate of the node at `addr` must carry.
    pub fn node_server_name(self, addr: SocketAddr, name: &str) -> Result<ClientTls, TlsError> {
        self.inner
            .node_names
            .write()
            .insert(addr, parse_name(name)?);
        Ok(self)
    }

    /// Reads the PEM files again; connections made from now on use them (a rotated client
    /// certificate or CA bundle, without a restart). On an error the configuration in use
    /// stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let origin = self.inner.origin.lock().clone();
        let config = build_from(&origin)?;
        *self.inner.current.write() = Arc::new(config);
        Ok(())
    }

    /// Uses this CA bundle and client certificate (PEM in memory) for connections made from
    /// now on.
    pub fn replace_pem(&self, ca: &[u8], cert_key: Option<(&[u8], &[u8])>) -> Result<(), TlsError> {
        let config = build(
            Source::Mem(ca),
            cert_key.map(|(c, k)| (Source::Mem(c), Source::Mem(k))),
        )?;
        *self.inner.current.write() = Arc::new(config);
        *self.inner.origin.lock() = Origin::Mem;
        Ok(())
    }

    /// A new session to the node at `addr`.
    pub(crate) fn connect(&self, addr: SocketAddr) -> Result<ClientConnection, TlsError> {
        let name = self
            .inner
            .node_names
            .read()
            .get(&addr)
            .cloned()
            .or_else(|| self.inner.service_name.read().clone())
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let config = self.inner.current.read().clone();
        Ok(ClientConnection::new(config, name)?)
    }
}

fn parse_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))
}

fn build_from(origin: &Origin) -> Result<ClientConfig, TlsError> {
    match origin {
        Origin::Files { ca, cert_key } => build(
            Source::File(ca),
            cert_key
                .as_ref()
                .map(|(c, k)| (Source::File(c), Source::File(k))),
        ),
        Origin::Mem => Err(TlsError::NotFromFiles),
    }
}

fn build(
    ca: Source<'_>,
    cert_key: Option<(Source<'_>, Source<'_>)>,
) -> Result<ClientConfig, TlsError> {
    let roots = pem::roots(&ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots);
    let mut config = match cert_key {
        Some((cert, key)) => {
            builder.with_client_auth_cert(pem::certs(&cert, "certificate")?, pem::key(&key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    // 0-RTT off: early data could be replayed to run a request twice.
    config.enable_early_data = false;
    Ok(config)
}
