//! A CA made on the spot, and the certificates it signs: for tests, and for
//! `gracerpc rollout --tls`, which runs its nodes and callers over mutual TLS with no files
//! prepared.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::TlsError;

/// A certificate and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
}

/// A self-signed CA held in memory.
pub struct ThrowawayCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for ThrowawayCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrowawayCa").finish_non_exhaustive()
    }
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e)
}

impl ThrowawayCa {
    /// A new CA whose certificate has common name `name`.
    pub fn new(name: &str) -> Result<ThrowawayCa, TlsError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(ThrowawayCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA's certificate (PEM): what callers trust, or what a node requires of callers.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate with common name `common_name` and subject alternative names `names`
    /// (each an IP address or a DNS name), valid from an hour ago for a year.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Result<Issued, TlsError> {
        let now = SystemTime::now();
        self.issue_valid(
            common_name,
            names,
            now - Duration::from_secs(3600),
            now + Duration::from_secs(365 * 24 * 3600),
        )
    }

    /// The same with an explicit validity (an expired certificate, for tests).
    pub fn issue_valid(
        &self,
        common_name: &str,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        for n in names {
            params.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().map_err(gen_err)?),
            });
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
