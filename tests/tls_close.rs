//! The close sequence over TLS: GOAWAY and the drain unchanged, close_notify only once the
//! caller has closed, and a TLS failure taking the failing path with linger — never an RST
//! that would destroy what was written (protocol.md rule 4).

#[path = "support/rawtls.rs"]
mod rawtls;
#[path = "support/tls.rs"]
mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gracerpc::proto::frame::{Hello, Request as R};
use gracerpc::proto::{Frame, decode};
use gracerpc::server::{Request, Server};
use rawtls::RawTls;

const WAIT: Duration = Duration::from_secs(10);

fn encode(f: Frame<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    f.encode(&mut v);
    v
}

fn request(id: u64, body: &[u8]) -> Vec<u8> {
    encode(Frame::Request(R {
        id,
        deadline_us: 30_000_000,
        idempotent: false,
        method: "slow",
        metadata: Default::default(),
        body,
    }))
}

fn connect(pki: &tls::Pki, addr: std::net::SocketAddr) -> RawTls<rustls::ClientConnection> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.cert_pem().as_bytes()).expect("ca"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let sock = std::net::TcpStream::connect(addr).expect("connect");
    let mut p = RawTls::new(
        rustls::ClientConnection::new(Arc::new(config), name).expect("session"),
        sock,
    );
    p.handshake();
    let hello = p.records(&[&encode(Frame::Hello(Hello::ours(1 << 20)))]);
    p.send_chunked(&hello, 1 << 20);
    p
}

#[test]
fn a_drain_over_tls_answers_every_request_and_close_notify_comes_only_after_the_callers_close() {
    let pki = tls::pki();
    let node = Server::builder()
        .tls(pki.server(false))
        .workers(2)
        .handler("slow", |r: &Request<'_>| {
            std::thread::sleep(Duration::from_millis(50)); // work, not synchronisation
            Ok(r.body().to_vec())
        })
        .spawn()
        .expect("server");
    let mut p = connect(&pki, node.local_addr());
    // READY first (rule 6), then five requests.
    loop {
        let f = p.next_frame(WAIT);
        if matches!(decode(&f, 1 << 20), Ok(Some((Frame::Ready(_), _)))) {
            break;
        }
    }
    let mut bytes = Vec::new();
    for id in 1..=5u64 {
        bytes.extend(p.records(&[&request(id, &[id as u8; 100])]));
    }
    p.send_chunked(&bytes, 1 << 20);
    node.shutdown();
    // Every id is answered once (RESPONSE, or SHUTDOWN_REJECT if GOAWAY came first), and
    // GOAWAY arrives.
    let mut answers: HashMap<u64, u8> = HashMap::new();
    let mut goaway = false;
    while answers.len() < 5 || !goaway {
        let f = p.next_frame(WAIT);
        match decode(&f, 1 << 20) {
            Ok(Some((Frame::Response(r), _))) => {
                assert!(
                    answers.insert(r.id, 0).is_none(),
                    "id {} answered twice",
                    r.id
                )
            }
            Ok(Some((Frame::ShutdownReject(r), _))) => {
                assert!(
                    answers.insert(r.id, 1).is_none(),
                    "id {} answered twice",
                    r.id
                )
            }
            Ok(Some((Frame::GoAway(_), _))) => goaway = true,
            Ok(Some(_)) => {}
            other => panic!("bad frame {other:?}"),
        }
    }
    // Everything is answered, but the caller has not closed: no close_notify yet.
    p.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet_until {
        if let Ok(n) = p.conn.read_tls(&mut p.sock) {
            assert!(n > 0, "the node closed before the caller did");
            let st = p.conn.process_new_packets().expect("TLS");
            assert!(
                !st.peer_has_closed(),
                "close_notify before the caller closed"
            );
        }
    }
    // The caller closes: the node answers with close_notify and FIN — not a reset.
    p.close();
    let end = p
        .read_to_fin(WAIT)
        .expect("the node must end with FIN, not RST");
    assert!(
        end.close_notify,
        "the node's FIN came without close_notify: {end:?}"
    );
    let report = node.wait().expect("report");
    assert!(report.clean, "{report:?}");
}

#[test]
fn a_tls_failure_takes_the_failing_path_with_linger_and_no_reset() {
    let pki = tls::pki();
    let node = Server::builder()
        .tls(pki.server(false))
        .linger(Duration::from_secs(1))
        .handler("slow", |r: &Request<'_>| Ok(r.body().to_vec()))
        .spawn()
        .expect("server");
    let mut p = connect(&pki, node.local_addr());
    // A record whose ciphertext is corrupted, then more bytes: the node fails TLS after the
    // first, and must read and discard the rest (closing with them unread would be an RST).
    let mut bad = p.records(&[&request(1, &[1; 200])]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    p.send_chunked(&bad, 1 << 20);
    // The node's alert comes first ...
    let deadline = Instant::now() + WAIT;
    let alert = loop {
        assert!(Instant::now() < deadline, "no alert from the node");
        match p.conn.read_tls(&mut p.sock) {
            Ok(0) => panic!("FIN before the alert"),
            Ok(_) => {
                if let Err(e) = p.conn.process_new_packets() {
                    break e;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the alert: {e}"),
        }
    };
    assert!(
        matches!(alert, rustls::Error::AlertReceived(_)),
        "the node must say why with an alert: {alert:?}"
    );
    // ... then the node lingers, reading and discarding: bytes the caller still sends must not
    // meet a closed socket (the kernel would answer them with an RST).
    for _ in 0..8 {
        std::io::Write::write_all(&mut p.sock, &[0x17u8; 4096])
            .expect("the node must still read after its alert (linger), not reset");
        std::thread::sleep(Duration::from_millis(5));
    }
    let end = p
        .read_to_fin(WAIT)
        .expect("a TLS failure must end in FIN, not an RST");
    assert!(
        !end.close_notify,
        "after a TLS failure the node sends an alert, not close_notify"
    );
    // We never close: the node gives up at the end of its linger, having read and discarded
    // everything, so its close sends no RST (closing with input unread would).
    let deadline = Instant::now() + WAIT;
    while node.connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "the node did not close after its linger"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A read returns 0 after a FIN whatever follows; an RST shows as the socket's error.
    let quiet = Instant::now() + Duration::from_millis(200);
    while Instant::now() < quiet {
        if let Some(e) = p.sock.take_error().expect("SO_ERROR") {
            panic!("the node reset the connection at its close ({e}): it left input unread");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another connection works meanwhile.
    let mut q = connect(&pki, node.local_addr());
    let f = q.next_frame(WAIT);
    assert!(matches!(
        decode(&f, 1 << 20),
        Ok(Some((Frame::Hello(_), _)))
    ));
}

#[test]
fn a_tls_caller_that_reads_nothing_is_closed_at_the_budget_without_a_reset() {
    use std::io::Write;
    const BUDGET: Duration = Duration::from_millis(800);
    let pki = tls::pki();
    let node = Server::builder()
        .tls(pki.server(false))
        .workers(1)
        .drain_budget(BUDGET)
        .inline_handler("slow", |r: &Request<'_>| Ok(r.body().to_vec()))
        .spawn()
        .expect("server");
    let mut p = connect(&pki, node.local_addr());
    // Requests with big answers, never reading: the node's output fills and it stops reading.
    p.sock.set_nonblocking(true).expect("nonblocking");
    let body = vec![7u8; 256 * 1024];
    let (mut id, mut pending, mut blocked_since) = (0u64, Vec::new(), None::<Instant>);
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if pending.is_empty() {
            id += 1;
            pending = p.records(&[&request(id, &body)]);
        }
        match p.sock.write(&pending) {
            Ok(n) => {
                pending.drain(..n);
                blocked_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if blocked_since.get_or_insert_with(Instant::now).elapsed()
                    > Duration::from_millis(300)
                {
                    break; // nobody reads any more
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("writing requests: {e}"),
        }
    }
    assert!(id > 4, "only {id} requests fit: the node never pushed back");
    p.sock.set_nonblocking(false).expect("blocking");
    let t0 = Instant::now();
    node.shutdown();
    let report = node.wait().expect("report");
    assert!(t0.elapsed() < BUDGET + Duration::from_secs(2), "{report:?}");
    assert!(!report.clean, "{report:?}");
    // Everything the node wrote is readable, and it ends in FIN — not a reset.
    let mut buf = vec![0u8; 1 << 20];
    p.sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut total = 0usize;
    loop {
        match std::io::Read::read(&mut p.sock, &mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("after {total} bytes: {e} — the node closed with an RST (rule 4)"),
        }
    }
    assert!(total > 0, "the node wrote nothing");
}
