//! The server's registry hook without any registry: registered once READY, withdrawn before
//! GOAWAY, and a registrar that hangs delays GOAWAY by the timeout only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use gracerpc::client::{Client, NodeState};
use gracerpc::server::{Registrar, Request, Server};

#[derive(Debug)]
enum Call {
    Register(SocketAddr, Instant),
    Deregister(Instant),
}

/// Reports every call; `deregister` then sleeps `hang`.
struct Recorder {
    tx: Sender<Call>,
    hang: Duration,
}

impl Registrar for Recorder {
    fn register(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let _ = self.tx.send(Call::Register(addr, Instant::now()));
        Ok(())
    }

    fn deregister(&mut self) -> std::io::Result<()> {
        let _ = self.tx.send(Call::Deregister(Instant::now()));
        std::thread::sleep(self.hang);
        Ok(())
    }
}

fn goaway_seen(events: &Receiver<gracerpc::client::NodeEvent>, addr: SocketAddr) -> Instant {
    loop {
        let ev = events
            .recv_timeout(Duration::from_secs(5))
            .expect("no GOAWAY within 5 s");
        if ev.addr == addr && ev.state == NodeState::Draining {
            return ev.at;
        }
    }
}

#[test]
fn registered_once_ready_and_withdrawn_before_goaway() {
    let (tx, calls) = crossbeam_channel::unbounded();
    let server = Server::builder()
        .manual_ready()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .registrar(Recorder {
            tx,
            hang: Duration::ZERO,
        })
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    assert!(
        calls.recv_timeout(Duration::from_millis(300)).is_err(),
        "registered before READY"
    );
    let ready = Instant::now();
    server.ready().set_ready();
    match calls.recv_timeout(Duration::from_secs(2)) {
        Ok(Call::Register(a, at)) => {
            assert_eq!(a, addr);
            assert!(at >= ready);
        }
        other => panic!("expected register, got {other:?}"),
    }
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert!(client.wait_ready(addr, Duration::from_secs(5)));
    let events = client.subscribe();
    server.shutdown();
    let goaway = goaway_seen(&events, addr);
    match calls.try_recv() {
        Ok(Call::Deregister(at)) => assert!(at <= goaway, "GOAWAY before deregistration"),
        other => panic!("GOAWAY came without a deregistration first: {other:?}"),
    }
    assert!(server.wait().unwrap().clean);
    assert!(calls.try_recv().is_err(), "each hook is called once");
}

#[test]
fn a_hung_registrar_delays_goaway_by_the_timeout_only() {
    let (tx, _calls) = crossbeam_channel::unbounded();
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .registrar(Recorder {
            tx,
            hang: Duration::from_secs(30),
        })
        .registry_timeout(Duration::from_millis(300))
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert!(client.wait_ready(addr, Duration::from_secs(5)));
    let events = client.subscribe();
    let t0 = Instant::now();
    server.shutdown();
    let waited = goaway_seen(&events, addr) - t0;
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
        "GOAWAY {waited:?} after shutdown(), with a 300 ms registry timeout"
    );
    assert!(server.wait().unwrap().clean);
}
