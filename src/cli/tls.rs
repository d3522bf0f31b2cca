//! The TLS flags: `serve --tls-cert --tls-key [--tls-client-ca]` and `call`/`bench --tls-ca
//! [--tls-cert --tls-key] [--tls-server-name]`. In a build without `--features tls` the flags
//! exist and say so when given.

use std::io;
use std::path::PathBuf;

use clap::Args;
use gracerpc::client::ClientBuilder;
use gracerpc::server::Builder;

/// A node's TLS flags.
#[derive(Args, Clone, Debug, Default)]
pub struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: callers must present a certificate signed by a CA in this bundle (PEM).
    /// SIGUSR1 makes the node read all three files again: connections accepted afterwards use
    /// the new certificate and client CA (rotation without a restart).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// A caller's TLS flags.
#[derive(Args, Clone, Debug, Default)]
pub struct ClientTlsArgs {
    /// Call over TLS, trusting the CAs in this bundle (PEM).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: present this certificate chain (PEM); needs --tls-key and --tls-ca.
    #[arg(long = "tls-cert", value_name = "PEM", requires_all = ["tls_ca", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long = "tls-key", value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The name every node's certificate must carry (default: the node's IP address).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
}

#[cfg(not(feature = "tls"))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this gracerpc was built without TLS (cargo build --features tls)",
    )
}

impl ServerTlsArgs {
    /// The node's builder with TLS, if asked for.
    pub fn apply(&self, b: Builder) -> io::Result<Builder> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(b);
        };
        #[cfg(feature = "tls")]
        {
            let tls =
                gracerpc::tls::ServerTls::from_pem_files(cert, key, self.tls_client_ca.as_deref())?;
            reload_on_sigusr1(tls.clone())?;
            Ok(b.tls(tls))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (cert, key, b);
            Err(unsupported())
        }
    }
}

impl ClientTlsArgs {
    /// The caller's builder with TLS, if asked for.
    pub fn apply(&self, b: ClientBuilder) -> io::Result<ClientBuilder> {
        let Some(ca) = &self.tls_ca else {
            return Ok(b);
        };
        #[cfg(feature = "tls")]
        {
            let pair = match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                _ => None,
            };
            let mut tls = gracerpc::tls::ClientTls::from_pem_files(ca, pair)?;
            if let Some(name) = &self.tls_server_name {
                tls = tls.server_name(name)?;
            }
            Ok(b.tls(tls))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (ca, b);
            Err(unsupported())
        }
    }
}

/// Re-reads the node's PEM files on every SIGUSR1 (on a thread of its own).
#[cfg(feature = "tls")]
fn reload_on_sigusr1(tls: gracerpc::tls::ServerTls) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match tls.reload() {
                    Ok(()) => log::info!("SIGUSR1: TLS certificates reloaded for new connections"),
                    Err(e) => log::error!("SIGUSR1: TLS reload failed, the old ones stay: {e}"),
                }
            }
        })?;
    Ok(())
}

/// The throwaway PEM files of `rollout --tls`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Makes a CA, a node certificate for 127.0.0.1 and a caller certificate, written to `dir`.
#[cfg(feature = "tls")]
pub fn throwaway(dir: &std::path::Path) -> io::Result<TlsFiles> {
    let ca = gracerpc::tls::ThrowawayCa::new("gracerpc rollout CA")?;
    let node = ca.issue("rollout-node", &["127.0.0.1", "localhost"])?;
    let caller = ca.issue("rollout-caller", &["rollout-caller.local"])?;
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        node_cert: dir.join("node.pem"),
        node_key: dir.join("node-key.pem"),
        client_cert: dir.join("caller.pem"),
        client_key: dir.join("caller-key.pem"),
    };
    std::fs::write(&files.ca, ca.cert_pem())?;
    std::fs::write(&files.node_cert, &node.cert_pem)?;
    std::fs::write(&files.node_key, &node.key_pem)?;
    std::fs::write(&files.client_cert, &caller.cert_pem)?;
    std::fs::write(&files.client_key, &caller.key_pem)?;
    Ok(files)
}

#[cfg(not(feature = "tls"))]
pub fn throwaway(_: &std::path::Path) -> io::Result<TlsFiles> {
    Err(unsupported())
}

impl TlsFiles {
    /// The caller's builder over mutual TLS with the caller certificate.
    pub fn client(&self, b: ClientBuilder) -> io::Result<ClientBuilder> {
        ClientTlsArgs {
            tls_ca: Some(self.ca.clone()),
            client_cert: Some(self.client_cert.clone()),
            client_key: Some(self.client_key.clone()),
            tls_server_name: None,
        }
        .apply(b)
    }
}
