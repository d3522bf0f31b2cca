//! Who the caller is, as a verified client certificate says (mutual TLS): what a handler and
//! the authorization hook see through [`Request::identity`](super::Request::identity).

use std::net::IpAddr;

/// The identity in a client certificate the server verified against its client CA: the
/// certificate's subject and subject alternative names. Plaintext connections, and TLS ones
/// without a client certificate, have none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The subject's distinguished name, as text (e.g. `CN=billing, O=example`).
    pub subject: String,
    /// The subject's common name(s) (`CN`).
    pub common_names: Vec<String>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// URIs among the subject alternative names (SPIFFE ids: `spiffe://trust-domain/path`).
    pub uris: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ips: Vec<IpAddr>,
}

impl PeerIdentity {
    /// The first common name, or the first DNS name, or the first URI: a short name for logs
    /// and simple allow lists.
    pub fn name(&self) -> Option<&str> {
        self.common_names
            .first()
            .or(self.dns_names.first())
            .or(self.uris.first())
            .map(String::as_str)
    }

    /// Whether any of the certificate's names (common name, DNS name, URI) is `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.common_names
            .iter()
            .chain(&self.dns_names)
            .chain(&self.uris)
            .any(|n| n == name)
    }
}
