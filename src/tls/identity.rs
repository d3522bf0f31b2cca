//! The identity in a verified client certificate: its subject and subject alternative names.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::server::PeerIdentity;

/// The identity in `der`, a certificate rustls has verified. `None` if it does not parse (it
/// verified, so it parsed once; a parser disagreement leaves the caller without an identity,
/// which an authorization hook refuses).
pub(crate) fn identity_of(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut id = PeerIdentity {
        subject: cert.subject().to_string(),
        ..Default::default()
    };
    id.common_names = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => id.dns_names.push((*d).to_owned()),
                GeneralName::URI(u) => id.uris.push((*u).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        id.ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        id.ips.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    Some(id)
}
