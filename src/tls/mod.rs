//! TLS and mutual TLS (feature `tls`), with rustls.
//!
//! rustls's connections are sans-IO: bytes in with `read_tls` and `process_new_packets`,
//! plaintext out through `reader()`, plaintext in through `writer()`, bytes out with
//! `write_tls`. So a TLS session sits between the mio socket and the protocol core exactly as
//! the core itself is driven — no second event loop, no async runtime — and the plaintext
//! path does not change: a connection without TLS never touches this module.
//!
//! * [`ServerTls`]: a node's certificate and key, and (mutual TLS) the CA its callers'
//!   certificates must be signed by. [`Builder::tls`](crate::server::Builder::tls).
//! * [`ClientTls`]: the CA a caller trusts, its own certificate (mutual TLS), and the name it
//!   expects each node's certificate to carry. [`ClientBuilder::tls`](crate::client::ClientBuilder::tls).
//! * Both reload without a restart: [`ServerTls::reload`] and [`ClientTls::reload`] re-read
//!   their PEM files; connections made afterwards use the new ones, open ones keep theirs.
//! * [`ThrowawayCa`]: a CA made on the spot, and certificates it signs (for tests and for
//!   `gracerpc rollout --tls`).
//!
//! Choices: the `aws-lc-rs` crypto provider, rustls's default: it builds with a C compiler
//! alone (no cmake, Go or bindgen for its non-FIPS build on Linux), offers the post-quantum
//! hybrid key exchange X25519MLKEM768 first, and its AES-GCM uses AVX-512/VAES where the CPU
//! has them (rustls deprecates `ring`'s default provider for lacking the post-quantum group);
//! TLS 1.3 only (no renegotiation exists in it, and every peer is gracerpc); 0-RTT off on both
//! sides (early data can be replayed, and replays are what gracerpc exists to rule out); PEM
//! parsed by `rustls-pki-types`, as rustls recommends.

mod client;
mod error;
mod identity;
mod pem;
mod server;
pub(crate) mod session;
mod throwaway;

pub use client::ClientTls;
pub use error::TlsError;
pub use server::ServerTls;
pub use throwaway::{Issued, ThrowawayCa};

pub(crate) use identity::identity_of;

use std::sync::Arc;

/// The one crypto provider both sides use: aws-lc-rs's, with AES-128-GCM first.
///
/// Its default order puts AES-256-GCM first, and the node takes the first of the caller's
/// suites it also has. AES-128-GCM (TLS 1.3's mandatory suite, RFC 8446 §9.1) runs 10 AES
/// rounds a block where AES-256 runs 14. The other suites stay, in the provider's order, for a
/// peer that does not offer AES-128-GCM.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

/// TLS 1.3 only.
pub(crate) static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

#[cfg(test)]
mod tests {
    #[test]
    fn aes_128_gcm_comes_first() {
        let p = super::provider();
        let suites: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites.first(),
            Some(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert!(suites.contains(&rustls::CipherSuite::TLS13_AES_256_GCM_SHA384));
    }
}
