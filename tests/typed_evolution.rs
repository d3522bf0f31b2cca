//! Schema evolution under a rolling upgrade: v2 of a service adds a field (to an argument and to
//! a result) and a method, while v1 and v2 callers and nodes are mixed. Every call must succeed
//! (0 failed), none run twice (0 duplicated), and every combination must actually occur.
//!
//! The rules proven (README, `gracerpc::service`): a field is added at the end of a message with
//! a type whose zero encoding means "absent"; a method is called only once every node has it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gracerpc::client::Client;
use gracerpc::server::{Server, ServerHandle};
use parking_lot::Mutex;

mod v1 {
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Item {
        pub id: u64,
        pub name: String,
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Ack {
        pub id: u64,
        pub len: u32,
    }

    #[gracerpc::service]
    pub trait Store {
        fn put(&self, item: Item) -> Result<Ack, String>;
    }
}

mod v2 {
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Item {
        pub id: u64,
        pub name: String,
        /// New in v2, at the end; `None` from a v1 caller.
        pub tag: Option<String>,
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Ack {
        pub id: u64,
        pub len: u32,
        /// New in v2, at the end; `false` from a v1 node.
        pub tagged: bool,
    }

    #[gracerpc::service]
    pub trait Store {
        fn put(&self, item: Item) -> Result<Ack, String>;
        /// New in v2: called only once every node runs v2.
        #[idempotent]
        fn count(&self) -> Result<u64, String>;
    }
}

/// What every node, whatever its version, records.
#[derive(Default)]
struct Seen {
    ids: Mutex<HashSet<u64>>,
    duplicates: AtomicU64,
    v2_untagged: AtomicU64,
    v2_tagged: AtomicU64,
    puts: AtomicU64,
}

impl Seen {
    fn ran(&self, id: u64) {
        self.puts.fetch_add(1, Ordering::Relaxed);
        if !self.ids.lock().insert(id) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct V1Node(Arc<Seen>);
impl v1::Store for V1Node {
    fn put(&self, item: v1::Item) -> Result<v1::Ack, String> {
        self.0.ran(item.id);
        Ok(v1::Ack {
            id: item.id,
            len: item.name.len() as u32,
        })
    }
}

struct V2Node(Arc<Seen>);
impl v2::Store for V2Node {
    fn put(&self, item: v2::Item) -> Result<v2::Ack, String> {
        self.0.ran(item.id);
        let c = if item.tag.is_some() {
            &self.0.v2_tagged
        } else {
            &self.0.v2_untagged
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(v2::Ack {
            id: item.id,
            len: item.name.len() as u32,
            tagged: item.tag.is_some(),
        })
    }

    fn count(&self) -> Result<u64, String> {
        Ok(self.0.puts.load(Ordering::Relaxed))
    }
}

fn start(addr: &str, v2: bool, seen: &Arc<Seen>) -> ServerHandle {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let b = Server::builder()
            .listen(addr)
            .workers(2)
            .drain_budget(Duration::from_secs(5));
        let b = if v2 {
            b.service(v2::StoreServer::new(V2Node(seen.clone())))
        } else {
            b.service(v1::StoreServer::new(V1Node(seen.clone())))
        };
        match b.spawn() {
            Ok(h) => return h,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("start {addr}: {e}"),
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: Mutex<Vec<String>>,
    /// v2 callers: acks with `tagged` false (a v1 node answered) and true.
    untagged_acks: AtomicU64,
    tagged_acks: AtomicU64,
    counts: AtomicU64,
}

#[test]
fn v1_and_v2_nodes_and_callers_mixed_lose_no_call() {
    let seen = Arc::new(Seen::default());
    let mut nodes: Vec<(SocketAddr, Option<ServerHandle>)> = (0..3)
        .map(|_| {
            let h = start("127.0.0.1:0", false, &seen);
            (h.local_addr(), Some(h))
        })
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.0).collect();
    let clients: Vec<Client> = (0..4)
        .map(|_| {
            Client::builder()
                .nodes(addrs.clone())
                .default_deadline(Duration::from_secs(20))
                .reconnect_backoff(Duration::from_millis(2), Duration::from_millis(20))
                .build()
                .expect("client")
        })
        .collect();
    let wait_ready = |addr: SocketAddr| {
        for c in &clients {
            assert!(c.wait_ready(addr, Duration::from_secs(10)), "{addr} ready");
        }
    };
    for &a in &addrs {
        wait_ready(a);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let all_v2 = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let next_id = Arc::new(AtomicU64::new(1));
    let mut threads = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, stop, all_v2, tally, next_id) = (
            c.clone(),
            stop.clone(),
            all_v2.clone(),
            tally.clone(),
            next_id.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let v2 = i % 2 == 1;
            let (s1, s2) = (v1::StoreClient::new(c.clone()), v2::StoreClient::new(c));
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) && n < 1_000_000 && Instant::now() < deadline {
                n += 1;
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let name = format!("item-{id}");
                let result = if v2 {
                    let item = v2::Item {
                        id,
                        name: name.clone(),
                        tag: Some("t".into()),
                    };
                    s2.put(item).map(|a| {
                        let c = if a.tagged {
                            &tally.tagged_acks
                        } else {
                            &tally.untagged_acks
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                        (a.id, a.len)
                    })
                } else {
                    let item = v1::Item {
                        id,
                        name: name.clone(),
                    };
                    s1.put(item).map(|a| (a.id, a.len))
                };
                match result {
                    Ok((got, len)) if got == id && len as usize == name.len() => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(other) => tally
                        .failed
                        .lock()
                        .push(format!("{id}: wrong ack {other:?}")),
                    Err(e) => tally.failed.lock().push(format!("{id}: {e}")),
                }
                if v2 && all_v2.load(Ordering::Acquire) {
                    match s2.count() {
                        Ok(_) => {
                            tally.counts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tally.failed.lock().push(format!("count: {e}")),
                    }
                }
            }
        }));
    }

    let progress = |tally: &Tally, at_least: u64| {
        let end = Instant::now() + Duration::from_secs(20);
        let base = tally.ok.load(Ordering::Relaxed);
        while tally.ok.load(Ordering::Relaxed) < base + at_least {
            assert!(Instant::now() < end, "no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    progress(&tally, 200);
    // Roll every node from v1 to v2, one at a time, under load.
    for node in &mut nodes {
        let h = node.1.take().expect("running");
        h.shutdown();
        let report = h.wait().expect("drain report");
        assert!(report.clean, "unclean drain: {report:?}");
        node.1 = Some(start(&node.0.to_string(), true, &seen));
        wait_ready(node.0);
        progress(&tally, 200);
    }
    // Every node has `count` now: v2 callers start calling it.
    all_v2.store(true, Ordering::Release);
    let end = Instant::now() + Duration::from_secs(20);
    while tally.counts.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < end, "count never called");
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().expect("caller thread");
    }
    for c in &clients {
        c.close(Duration::from_secs(5));
    }

    let failed = tally.failed.lock();
    let ok = tally.ok.load(Ordering::Relaxed);
    eprintln!(
        "ok {ok}, failed {}, v2 nodes saw untagged {} tagged {}, v2 callers got untagged {} \
         tagged {} acks, count {}",
        failed.len(),
        seen.v2_untagged.load(Ordering::Relaxed),
        seen.v2_tagged.load(Ordering::Relaxed),
        tally.untagged_acks.load(Ordering::Relaxed),
        tally.tagged_acks.load(Ordering::Relaxed),
        tally.counts.load(Ordering::Relaxed),
    );
    assert!(
        failed.is_empty(),
        "{} failed calls: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        seen.duplicates.load(Ordering::Relaxed),
        0,
        "a put ran twice"
    );
    assert_eq!(
        seen.puts.load(Ordering::Relaxed),
        ok,
        "puts run ≠ puts answered OK (lost?)"
    );
    // Every mix happened: v1 callers on v2 nodes (field absent), v2 callers on v2 nodes (field
    // present), v2 callers answered by v1 nodes (result field absent) and by v2 nodes.
    assert!(
        seen.v2_untagged.load(Ordering::Relaxed) > 0,
        "v1 caller → v2 node never happened"
    );
    assert!(
        seen.v2_tagged.load(Ordering::Relaxed) > 0,
        "v2 caller → v2 node never happened"
    );
    assert!(
        tally.untagged_acks.load(Ordering::Relaxed) > 0,
        "v1 node → v2 caller never happened"
    );
    assert!(tally.tagged_acks.load(Ordering::Relaxed) > 0);
    for node in &mut nodes {
        let h = node.1.take().expect("running");
        h.shutdown();
        h.wait().expect("report");
    }
}
