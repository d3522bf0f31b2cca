//! A node's TLS settings: its certificate and key, and (mutual TLS) the CA its callers'
//! certificates must be signed by. Reloadable: new connections take the configuration current
//! when they are accepted; open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use super::pem::{self, Source};
use super::{TlsError, VERSIONS, provider};

/// Where the PEM came from, to read it again on [`ServerTls::reload`].
#[derive(Clone, Debug)]
enum Origin {
    Files {
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    },
    Mem,
}

/// A node's TLS configuration (see [`Builder::tls`](crate::server::Builder::tls)). Cheap to
/// clone: clones share it, so a clone kept aside can [`reload`](Self::reload) the running
/// node's certificates.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Arc<ServerConfig>>,
    origin: Mutex<Origin>,
    /// Handshakes the event loop runs at once, at most (see [`ServerTls::max_handshakes`]).
    max_handshakes: usize,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("origin", &*self.inner.origin.lock())
            .finish_non_exhaustive()
    }
}

/// Handshakes in progress on one event loop, at most, by default.
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;

impl ServerTls {
    /// The node's certificate chain and private key from PEM files; with `client_ca`, callers
    /// must present a certificate signed by a CA in that PEM bundle (mutual TLS).
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<&Path>,
    ) -> Result<ServerTls, TlsError> {
        let origin = Origin::Files {
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
            client_ca: client_ca.map(Path::to_path_buf),
        };
        let config = build_from(&origin)?;
        Ok(ServerTls::with(config, origin))
    }

    /// The same from PEM in memory.
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<ServerTls, TlsError> {
        let config = build(
            Source::Mem(cert),
            Source::Mem(key),
            client_ca.map(Source::Mem),
        )?;
        Ok(ServerTls::with(config, Origin::Mem))
    }

    fn with(config: ServerConfig, origin: Origin) -> ServerTls {
        ServerTls {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(config)),
                origin: Mutex::new(origin),
                max_handshakes: DEFAULT_MAX_HANDSHAKES,
            }),
        }
    }

    /// Handshakes the event loop runs at once, at most (default 64; at least 1). When every
    /// caller reconnects at once — a restart under load — the connections past it wait in the
    /// listen backlog until a handshake ends, so the loop keeps serving the connections it has.
    /// A handshake its peer stalls holds its place until the HELLO timeout
    /// ([`Builder::hello_timeout`](crate::server::Builder::hello_timeout)), so on a node open to
    /// untrusted networks keep that timeout short. Only before the configuration is shared with
    /// a server.
    pub fn max_handshakes(mut self, n: usize) -> ServerTls {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.max_handshakes = n.max(1);
        }
        self
    }

    pub(crate) fn handshake_cap(&self) -> usize {
        self.inner.max_handshakes
    }

    /// Reads the PEM files again and uses them for every connection accepted from now on (a
    /// rotated certificate or client CA, without a restart). On an error the configuration in
    /// use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let origin = self.inner.origin.lock().clone();
        if matches!(origin, Origin::Mem) {
            return Err(TlsError::NotFromFiles);
        }
        let config = build_from(&origin)?;
        *self.inner.current.write() = Arc::new(config);
        Ok(())
    }

    /// Uses this certificate, key and client CA (PEM in memory) for every connection accepted
    /// from now on.
    pub fn replace_pem(
        &self,
        cert: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<(), TlsError> {
        let config = build(
            Source::Mem(cert),
            Source::Mem(key),
            client_ca.map(Source::Mem),
        )?;
        *self.inner.current.write() = Arc::new(config);
        *self.inner.origin.lock() = Origin::Mem;
        Ok(())
    }

    /// The configuration for a connection accepted now: one read lock per new connection.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.inner.current.read().clone()
    }
}

fn build_from(origin: &Origin) -> Result<ServerConfig, TlsError> {
    match origin {
        Origin::Files {
            cert,
            key,
            client_ca,
        } => build(
            Source::File(cert),
            Source::File(key),
            client_ca.as_deref().map(Source::File),
        ),
        Origin::Mem => Err(TlsError::NotFromFiles),
    }
}

fn build(
    cert: Source<'_>,
    key: Source<'_>,
    client_ca: Option<Source<'_>>,
) -> Result<ServerConfig, TlsError> {
    let chain = pem::certs(&cert, "certificate")?;
    let key = pem::key(&key)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(pem::roots(&ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(TlsError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // 0-RTT off: early data can be replayed by anyone who saw it.
    config.max_early_data_size = 0;
    Ok(config)
}
