//! Registration with a real etcd: a node is listed only once READY, and it is withdrawn before
//! its GOAWAY — within a bounded wait even when etcd does not answer.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gracerpc::client::{CallOptions, Client, NodeState};
use gracerpc::server::{Registrar, Request, Server};
use parking_lot::Mutex;

use etcd_support::wait_until;

/// Wraps a registrar, records when its deregistration returned, and returns `pause` later.
struct Timed<R> {
    inner: R,
    deregistered: Arc<Mutex<Option<Instant>>>,
    pause: Duration,
}

impl<R: Registrar> Registrar for Timed<R> {
    fn register(&mut self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        self.inner.register(addr)
    }

    fn deregister(&mut self) -> std::io::Result<()> {
        let r = self.inner.deregister();
        *self.deregistered.lock() = Some(Instant::now());
        std::thread::sleep(self.pause);
        r
    }
}

#[test]
fn a_node_appears_to_callers_only_after_ready() {
    let Some(e) = etcd_support::etcd("appears_after_ready") else {
        return;
    };
    let service = e.etcd.service("svc");
    let server = Server::builder()
        .manual_ready()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .registrar(service.registrar())
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    let client = Client::builder()
        .discovery(service.discovery())
        .build()
        .unwrap();
    let events = client.subscribe();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        service.list().unwrap(),
        [],
        "a node that is not READY must not be registered"
    );
    assert_eq!(
        client.nodes(),
        [],
        "callers must not know a node before its READY"
    );

    let ready_at = Instant::now();
    server.ready().set_ready();
    wait_until(Duration::from_secs(5), "the registration in etcd", || {
        service.list().unwrap() == [addr]
    });
    assert!(
        client.wait_ready(addr, Duration::from_secs(5)),
        "the caller discovers the node through etcd and sees its READY"
    );
    let first = events.try_iter().find(|ev| ev.addr == addr).unwrap();
    assert!(
        first.at >= ready_at,
        "the caller saw the node before its READY"
    );
    assert_eq!(client.call("echo", b"hi").unwrap(), b"hi");

    server.shutdown();
    assert!(server.wait().unwrap().clean);
    assert_eq!(service.list().unwrap(), [], "deregistered on shutdown");
}

#[test]
fn a_node_is_withdrawn_from_etcd_before_its_goaway() {
    let Some(e) = etcd_support::etcd("withdrawn_before_goaway") else {
        return;
    };
    let service = e.etcd.service("svc");
    let deregistered = Arc::new(Mutex::new(None));
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .handler("work", |r: &Request<'_>| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(r.body.to_vec())
        })
        .registrar(Timed {
            inner: service.registrar(),
            deregistered: deregistered.clone(),
            // Long enough for callers following etcd to see the withdrawal before the GOAWAY.
            pause: Duration::from_millis(400),
        })
        .registry_timeout(Duration::from_secs(2))
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    // Where the connected caller's replays go.
    let other = Server::builder()
        .handler("work", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .unwrap();
    // A caller already connected (it learns of the drain from GOAWAY) ...
    let connected = Client::builder()
        .nodes([addr, other.local_addr()])
        .build()
        .unwrap();
    // ... and one that only follows the registry.
    let follower = Client::builder()
        .discovery(service.discovery())
        .build()
        .unwrap();
    assert!(connected.wait_ready(addr, Duration::from_secs(5)));
    assert!(connected.wait_ready(other.local_addr(), Duration::from_secs(5)));
    assert!(follower.wait_ready(addr, Duration::from_secs(5)));
    let connected_events = connected.subscribe();
    let follower_events = follower.subscribe();

    // Calls in flight on the connected caller while the node closes.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (c, stop, failed) = (connected.clone(), stop.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if c.call_with("work", b"x", &CallOptions::new()).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));

    server.shutdown();
    let goaway = loop {
        let ev = connected_events
            .recv_timeout(Duration::from_secs(5))
            .expect("the connected caller never saw GOAWAY");
        if ev.addr == addr && ev.state == NodeState::Draining {
            break ev.at;
        }
    };
    // Right after the GOAWAY the registry must already be without the node.
    let listed = service.list().unwrap();
    let withdrawn = deregistered
        .lock()
        .expect("the node sent GOAWAY without deregistering");
    assert!(
        withdrawn <= goaway,
        "deregistration finished {:?} after the caller saw GOAWAY",
        withdrawn - goaway
    );
    assert!(
        !listed.contains(&addr),
        "the node was still registered when its GOAWAY arrived"
    );

    // A caller that starts now, following etcd, never hears of the draining node.
    let newcomer = Client::builder()
        .discovery(service.discovery())
        .build()
        .unwrap();
    let newcomer_events = newcomer.subscribe();
    // The caller that followed etcd (and was connected) evicted the node before the GOAWAY
    // came, and the GOAWAY did not bring it back.
    wait_until(
        Duration::from_secs(5),
        "the follower evicting the node",
        || follower.nodes().iter().all(|n| n.addr != addr),
    );
    std::thread::sleep(Duration::from_millis(500));
    let seen: Vec<NodeState> = follower_events
        .try_iter()
        .filter(|ev| ev.addr == addr)
        .map(|ev| ev.state)
        .collect();
    assert_eq!(
        seen,
        [NodeState::Removed],
        "removed by etcd first, then no state change (no reconnection) on GOAWAY"
    );
    assert!(
        newcomer_events.try_iter().all(|ev| ev.addr != addr) && newcomer.nodes().is_empty(),
        "a caller that was not connected discovered the draining node"
    );

    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    assert!(server.wait().unwrap().clean);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call may fail");
    other.shutdown();
    let _ = other.wait();
}

#[test]
fn an_unresponsive_registry_delays_goaway_by_the_timeout_only() {
    let Some(mut e) = etcd_support::etcd("unresponsive_registry") else {
        return;
    };
    let service = e.etcd.service("svc");
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .registrar(service.registrar())
        .registry_timeout(Duration::from_millis(500))
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    wait_until(Duration::from_secs(5), "the registration", || {
        service.list().unwrap() == [addr]
    });
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert!(client.wait_ready(addr, Duration::from_secs(5)));
    let events = client.subscribe();

    // etcd frozen: connections are accepted by the kernel, nothing answers.
    let pid = e.etcd.pid().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on the PID of the etcd this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let t0 = Instant::now();
    server.shutdown();
    let goaway = loop {
        let ev = events
            .recv_timeout(Duration::from_secs(5))
            .expect("no GOAWAY while etcd is frozen");
        if ev.addr == addr && ev.state == NodeState::Draining {
            break ev.at;
        }
    };
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let waited = goaway - t0;
    assert!(
        waited >= Duration::from_millis(450),
        "GOAWAY came {waited:?} after shutdown(): it did not wait for the registry"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "GOAWAY came {waited:?} after shutdown(): the registry delayed it too much"
    );
    assert!(server.wait().unwrap().clean);
    e.etcd.kill();
}
