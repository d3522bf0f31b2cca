//! Where the node list comes from. The client's I/O thread asks its [`Discovery`] for changes on
//! every tick; a registry-backed implementation runs its own watch and hands over what changed.

use std::net::SocketAddr;

/// A source of node addresses.
pub trait Discovery: Send + 'static {
    /// The current set of nodes if it changed since the last call, else `None`. Called often
    /// (every few milliseconds) from the client's I/O thread: it must not block.
    fn poll(&mut self) -> Option<Vec<SocketAddr>>;
}

/// A fixed list of nodes.
#[derive(Clone, Debug)]
pub struct StaticList {
    nodes: Option<Vec<SocketAddr>>,
}

impl StaticList {
    /// The given nodes, for ever.
    pub fn new(nodes: impl IntoIterator<Item = SocketAddr>) -> StaticList {
        StaticList {
            nodes: Some(nodes.into_iter().collect()),
        }
    }
}

impl Discovery for StaticList {
    fn poll(&mut self) -> Option<Vec<SocketAddr>> {
        self.nodes.take()
    }
}
