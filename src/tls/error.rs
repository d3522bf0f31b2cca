//! What can go wrong setting TLS up: reading a PEM file, a file with nothing usable in it, or a
//! certificate, key or CA rustls refuses.

use std::fmt;
use std::path::PathBuf;

/// A TLS configuration could not be made. Each variant carries its cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file or buffer could not be read or parsed.
    Pem {
        /// The file, or `None` for PEM given in memory.
        path: Option<PathBuf>,
        /// What was being read: "certificate", "private key", "CA".
        what: &'static str,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificate, key or CA (e.g. a key that does not match the
    /// certificate, or a CA bundle with no usable certificate).
    Config(rustls::Error),
    /// The client-certificate verifier could not be built from the CA bundle.
    Verifier(rustls::server::VerifierBuilderError),
    /// A server name that is neither a DNS name nor an IP address.
    ServerName(String),
    /// Making a throwaway certificate failed.
    Generate(rcgen::Error),
    /// The configuration came from memory: there is no file to reload.
    NotFromFiles,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, what, source } => match path {
                Some(p) => write!(f, "reading the {what} from {}: {source}", p.display()),
                None => write!(f, "reading the {what} PEM: {source}"),
            },
            TlsError::Config(e) => write!(f, "TLS configuration refused: {e}"),
            TlsError::Verifier(e) => write!(f, "client CA: {e}"),
            TlsError::ServerName(n) => write!(f, "{n:?} is not a DNS name or an IP address"),
            TlsError::Generate(e) => write!(f, "making a certificate: {e}"),
            TlsError::NotFromFiles => write!(f, "the TLS configuration was not read from files"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Pem { source, .. } => Some(source),
            TlsError::Config(e) => Some(e),
            TlsError::Verifier(e) => Some(e),
            TlsError::Generate(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Config(e)
    }
}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}
