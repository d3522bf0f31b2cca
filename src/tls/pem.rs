//! Certificates, keys and CA bundles from PEM, in files or in memory.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Where PEM comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source<'a> {
    File(&'a Path),
    Mem(&'a [u8]),
}

fn pem_err(src: &Source<'_>, what: &'static str, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: match src {
            Source::File(p) => Some(p.to_path_buf()),
            Source::Mem(_) => None,
        },
        what,
        source: e,
    }
}

/// Every certificate in the PEM (a chain: the leaf first). At least one.
pub(crate) fn certs(
    src: &Source<'_>,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let all: Result<Vec<_>, _> = match src {
        Source::File(p) => match CertificateDer::pem_file_iter(p) {
            Ok(it) => it.collect(),
            Err(e) => Err(e),
        },
        Source::Mem(b) => CertificateDer::pem_slice_iter(b).collect(),
    };
    let all = all.map_err(|e| pem_err(src, what, e))?;
    if all.is_empty() {
        return Err(pem_err(
            src,
            what,
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(all)
}

/// The first private key in the PEM (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn key(src: &Source<'_>) -> Result<PrivateKeyDer<'static>, TlsError> {
    match src {
        Source::File(p) => PrivateKeyDer::from_pem_file(p),
        Source::Mem(b) => PrivateKeyDer::from_pem_slice(b),
    }
    .map_err(|e| pem_err(src, "private key", e))
}

/// A CA bundle as a root store.
pub(crate) fn roots(src: &Source<'_>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(src, "CA")? {
        store.add(c)?;
    }
    Ok(store)
}
