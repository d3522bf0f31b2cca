//! A listener handoff with `--register etcd`: the old process does not withdraw the address
//! (the new one serves it), so a caller following etcd never sees the node removed — neither
//! at the handoff nor when the old process's lease runs out.
#![cfg(all(feature = "etcd", target_os = "linux"))]

mod etcd_support;
#[path = "support/serve.rs"]
mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gracerpc::client::{Client, NodeState};
use serve::{ServeProc, TempDir};

#[test]
fn a_handoff_keeps_the_registry_entry_no_delete_seen() {
    let Some(e) = etcd_support::etcd("handoff_keeps_entry") else {
        return;
    };
    let dir = TempDir::new("etcd-handoff");
    let service = e.etcd.service("svc");
    let url = e.etcd.url("svc");
    let sock = dir.file("up.sock");
    let args = [
        "--register",
        url.as_str(),
        "--register-ttl",
        "2",
        "--upgrade",
        sock.to_str().unwrap(),
    ];
    let mut a = ServeProc::start("A", &args);
    let addr = a.addr;
    etcd_support::wait_until(Duration::from_secs(10), "A registered", || {
        service.list().unwrap_or_default() == [addr]
    });
    let follower = Client::builder()
        .discovery(service.discovery())
        .build()
        .unwrap();
    assert!(follower.wait_ready(addr, Duration::from_secs(10)));
    let events = follower.subscribe();
    // A watcher of the registry itself: any moment the address is missing counts.
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, missing, service) = (stop.clone(), missing.clone(), e.etcd.service("svc"));
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) && n < 5_000 {
                n += 1;
                if let Ok(list) = service.list()
                    && !list.contains(&addr)
                {
                    missing.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let mut b = ServeProc::start("B", &args);
    assert_eq!(b.addr, addr);
    assert!(a.expect_exit(Duration::from_secs(30), "A drains").success());
    // Past the old lease's TTL (2 s): its expiry must not take the key with it.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Release);
    watcher.join().unwrap();

    let removed: Vec<_> = events
        .try_iter()
        .filter(|ev| ev.addr == addr && ev.state == NodeState::Removed)
        .collect();
    assert!(
        removed.is_empty(),
        "the follower saw the node removed: {removed:?}"
    );
    assert_eq!(
        missing.load(Ordering::Relaxed),
        0,
        "the address was missing from etcd during the handoff"
    );
    assert_eq!(service.list().unwrap(), [addr], "still listed, now B's");
    assert!(
        a.log()
            .contains("entry left for the process that took over")
            && !a.log().contains("deregistered from"),
        "A must not withdraw:\n{}",
        a.log()
    );
    assert_eq!(follower.call("echo", b"b").unwrap(), b"b");
    b.signal(libc::SIGTERM);
    assert!(b.expect_exit(Duration::from_secs(30), "B drains").success());
    assert_eq!(service.list().unwrap(), [], "B withdraws on a real stop");
}
