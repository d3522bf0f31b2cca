//! Certificates made by the test itself (a throwaway CA), and the TLS settings built from them.

#![allow(dead_code)]

use gracerpc::tls::{ClientTls, Issued, ServerTls, ThrowawayCa};

/// A CA, a node certificate for 127.0.0.1 and `node.test`, and a client certificate.
pub struct Pki {
    pub ca: ThrowawayCa,
    pub node: Issued,
    pub client: Issued,
}

pub fn pki() -> Pki {
    let ca = ThrowawayCa::new("gracerpc test CA").expect("CA");
    let node = ca
        .issue("node", &["127.0.0.1", "node.test"])
        .expect("node cert");
    let client = ca.issue("billing", &["billing.test"]).expect("client cert");
    Pki { ca, node, client }
}

impl Pki {
    /// The node's TLS; with `mutual`, callers must present a certificate from this CA.
    pub fn server(&self, mutual: bool) -> ServerTls {
        ServerTls::from_pem(
            self.node.cert_pem.as_bytes(),
            self.node.key_pem.as_bytes(),
            mutual.then_some(self.ca.cert_pem().as_bytes()),
        )
        .expect("server TLS")
    }

    /// A caller trusting this CA; with `cert`, presenting the client certificate.
    pub fn client(&self, cert: bool) -> ClientTls {
        let id = cert.then_some((
            self.client.cert_pem.as_bytes(),
            self.client.key_pem.as_bytes(),
        ));
        ClientTls::from_pem(self.ca.cert_pem().as_bytes(), id).expect("client TLS")
    }

    /// A caller presenting `who` (issued by this CA or another).
    pub fn client_as(&self, who: &Issued) -> ClientTls {
        ClientTls::from_pem(
            self.ca.cert_pem().as_bytes(),
            Some((who.cert_pem.as_bytes(), who.key_pem.as_bytes())),
        )
        .expect("client TLS")
    }
}
