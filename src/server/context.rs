//! What a handler knows about the request beyond its payload: the remaining deadline, the
//! caller's address, the request id and the caller's metadata.

use std::net::SocketAddr;
use std::time::Duration;

use super::handler::Request;
use crate::proto::frame::Metadata;

impl<'a> Request<'a> {
    /// How long the caller still waits, from now (zero once the deadline has passed). A
    /// downstream call should take no longer: see
    /// [`CallOptions::from_request`](crate::client::CallOptions::from_request).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(std::time::Instant::now())
    }

    /// The caller's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The request id on its connection.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The caller's metadata (empty from a caller that did not negotiate it).
    pub fn metadata(&self) -> Metadata<'a> {
        self.metadata
    }

    /// Who the caller is, as its verified client certificate says (mutual TLS; see
    /// [`ServerTls`](crate::tls::ServerTls)). `None` on plaintext connections and on TLS
    /// connections without a client certificate.
    pub fn identity(&self) -> Option<&'a super::PeerIdentity> {
        self.identity
    }

    /// The W3C trace context of the call (`traceparent`), if the caller sent one.
    pub fn traceparent(&self) -> Option<&'a str> {
        self.metadata.get_str("traceparent")
    }
}
