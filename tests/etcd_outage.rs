//! etcd stopped during load: callers keep calling the nodes they know; when etcd comes back
//! (same ports, same data) the watch resumes and later changes are seen.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::etcd::Service;
use gracerpc::server::{Request, Server, ServerHandle};

use etcd_support::wait_until;

fn node(service: &Service) -> ServerHandle {
    Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .registrar(service.registrar().ttl(Duration::from_secs(2)))
        .spawn()
        .unwrap()
}

fn ready_count(client: &Client) -> usize {
    client
        .nodes()
        .iter()
        .filter(|n| n.state.is_choosable())
        .count()
}

#[test]
fn calls_flow_while_etcd_is_down_and_the_watch_resumes_when_it_returns() {
    let Some(mut e) = etcd_support::etcd("etcd_outage") else {
        return;
    };
    let service = e.etcd.service("svc");
    let a = node(&service);
    let b = node(&service);
    let client = Client::builder()
        .discovery(service.discovery())
        .build()
        .unwrap();
    assert!(client.wait_ready(a.local_addr(), Duration::from_secs(5)));
    assert!(client.wait_ready(b.local_addr(), Duration::from_secs(5)));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (c, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match c.call_with("echo", b"x", &CallOptions::new()) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    // etcd down for longer than the nodes' lease TTL.
    e.etcd.kill();
    let before = ok.load(Ordering::Relaxed);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            ready_count(&client),
            2,
            "the nodes must stay in the table while the registry is down: {:?}",
            client.nodes()
        );
    }
    let during = ok.load(Ordering::Relaxed) - before;
    assert!(
        during > 100,
        "only {during} calls succeeded in 3 s without etcd"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call may fail");

    // etcd back on the same ports and data: the watch resumes and sees later changes.
    e.etcd.restart().unwrap();
    let c = node(&service);
    assert!(
        client.wait_ready(c.local_addr(), Duration::from_secs(10)),
        "a node registered after etcd came back is discovered"
    );
    assert_eq!(ready_count(&client), 3, "{:?}", client.nodes());
    a.shutdown();
    assert!(a.wait().unwrap().clean);
    wait_until(
        Duration::from_secs(5),
        "the caller evicting the stopped node",
        || client.nodes().iter().all(|n| n.addr != a.local_addr()),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ready_count(&client), 2, "{:?}", client.nodes());

    stop.store(true, Ordering::Relaxed);
    for t in callers {
        t.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call may fail");
    for n in [b, c] {
        n.shutdown();
        assert!(n.wait().unwrap().clean);
    }
}
