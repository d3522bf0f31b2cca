//! Nodes that change under the calls (issue 11, findings 3 and 4): a choice racing a node's
//! loss of its connection tries the other nodes instead of waiting for its deadline; a node
//! removed and re-added by discovery leaves no connection open behind.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, WAIT, token, wait_all_ready, wait_until};
use gracerpc::client::{CallOptions, Client, Discovery, NodeState};

#[test]
fn a_choice_racing_a_lost_connection_goes_to_the_ready_node() {
    // Node A reads Ready in the table but its connection cannot take a request — the window
    // between a GOAWAY detaching a link and the state store, held open here: A accepts and
    // never says HELLO, and the test writes Ready/100 % over its Connecting. Node B is ready
    // the whole time. Each call must go to B, not wait for a readiness change of A.
    let a = RawServer::spawn(|_, mut c| while c.next().is_ok() {});
    let b = TestNode::plain();
    let client = cluster::client(&[a.addr, b.addr], |b| b);
    wait_all_ready(&client, &[b.addr]);
    wait_until("the client connected to A", WAIT, || {
        a.accepted.load(Ordering::Acquire) >= 1
    });
    let stop = Arc::new(AtomicBool::new(false));
    let forcer = {
        let (client, stop, a) = (client.clone(), stop.clone(), a.addr);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if let Some(n) = client.table().find(a)
                    && n.state() == NodeState::Connecting
                {
                    client.table().set_capacity(n, 100, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    wait_until("A reads Ready", WAIT, || {
        cluster::state_of(&client, a.addr) == Some(NodeState::Ready)
    });
    let opts = CallOptions::new().deadline(Duration::from_millis(200));
    let mut failed = Vec::new();
    for i in 0..1000 {
        if let Err(e) = client.call_with("record", &token(0, i), &opts) {
            failed.push(format!("call {i}: {e}"));
        }
    }
    stop.store(true, Ordering::Release);
    forcer.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    assert_eq!(b.rec.total(), 1000);
}

/// A discovery whose list the test sets.
#[derive(Clone, Default)]
struct Flapping(Arc<Mutex<Option<Vec<SocketAddr>>>>);

impl Discovery for Flapping {
    fn poll(&mut self) -> Option<Vec<SocketAddr>> {
        self.0.lock().unwrap().take()
    }
}

impl Flapping {
    fn set(&self, nodes: &[SocketAddr]) {
        *self.0.lock().unwrap() = Some(nodes.to_vec());
    }
}

#[test]
fn a_node_removed_and_re_added_leaves_no_connection_behind() {
    let node = TestNode::plain();
    let d = Flapping::default();
    d.set(&[node.addr]);
    let client = Client::builder().discovery(d.clone()).build().unwrap();
    wait_all_ready(&client, &[node.addr]);
    for cycle in 0..4 {
        assert!(client.call("record", &token(1, cycle)).is_ok());
        d.set(&[]);
        wait_until("the node removed", WAIT, || client.nodes().is_empty());
        d.set(&[node.addr]);
        wait_all_ready(&client, &[node.addr]);
    }
    // An etcd lease flap does this: each removal used to leave its connection open for ever.
    wait_until(
        "the server holds one connection from the client",
        WAIT,
        || node.handle().connections() == 1,
    );
    assert!(client.call("record", b"after").is_ok());
    assert_eq!(node.rec.total(), 5);
}
