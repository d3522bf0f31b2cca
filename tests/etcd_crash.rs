//! A node killed with SIGKILL cannot deregister: it leaves etcd when its lease expires, and the
//! callers following etcd evict it then.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gracerpc::client::Client;

use etcd_support::wait_until;

/// A `gracerpc serve` child, killed by PID on drop if still running.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(url: &str, ttl_s: u64) -> (Node, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args([
            "serve",
            "--register",
            url,
            "--register-ttl",
            &ttl_s.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gracerpc serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("serve printed {line:?}"));
    (Node(child), addr)
}

#[test]
fn a_killed_node_leaves_etcd_when_its_lease_expires_and_callers_evict_it() {
    let Some(e) = etcd_support::etcd("killed_node") else {
        return;
    };
    let service = e.etcd.service("svc");
    let url = e.etcd.url("svc");
    let ttl = Duration::from_secs(2);
    let (mut node, addr) = serve(&url, ttl.as_secs());
    let client = Client::builder()
        .discovery(service.discovery())
        .build()
        .unwrap();
    assert!(
        client.wait_ready(addr, Duration::from_secs(5)),
        "the caller discovers the node"
    );
    assert_eq!(client.call("echo", b"x").unwrap(), b"x");

    node.0.kill().unwrap(); // SIGKILL, by PID
    node.0.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(
        service.list().unwrap(),
        [addr],
        "a killed node cannot deregister: its key stays until the lease expires"
    );

    wait_until(ttl + Duration::from_secs(4), "the lease to expire", || {
        !service.list().unwrap().contains(&addr)
    });
    let expired = killed.elapsed();
    assert!(
        expired >= ttl / 2,
        "the key went away after {expired:?}, sooner than a lease of {ttl:?} can expire"
    );
    wait_until(
        Duration::from_secs(3),
        "the caller evicting the node",
        || client.nodes().iter().all(|n| n.addr != addr),
    );
}
