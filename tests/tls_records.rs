//! The TLS byte stream shaped by a hand-made rustls peer: frames split across records, records
//! split across reads, KeyUpdate and NewSessionTicket arriving in the middle of a call — on the
//! caller's own-answer read, on the client's I/O thread, and on the server's event loop — and
//! 0-RTT off.

#[path = "support/rawtls.rs"]
mod rawtls;
#[path = "support/tls.rs"]
mod tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::proto::frame::{Hello, Ready, Response};
use gracerpc::proto::{Frame, Status, decode};
use gracerpc::server::{Request, Server};
use rawtls::RawTls;

const WAIT: Duration = Duration::from_secs(10);

fn encode(f: Frame<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    f.encode(&mut v);
    v
}

fn server_config(pki: &tls::Pki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(pki.node.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(pki.node.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("config");
    c.send_tls13_tickets = 2;
    Arc::new(c)
}

/// A hand-made gracerpc node over TLS serving `conns` connections: HELLO and READY go out as
/// 0.5-RTT data, so the caller's first request arrives with its Finished, and the tickets the
/// server then issues reach the caller in the middle of that call. Every answer comes after a
/// KeyUpdate, split into three records, sent in 7-byte writes.
fn shaped_node(
    pki: &tls::Pki,
    conns: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = server_config(pki);
    let t = std::thread::spawn(move || {
        for _ in 0..conns {
            let (sock, _) = listener.accept().expect("accept");
            let mut p = RawTls::new(
                rustls::ServerConnection::new(config.clone()).expect("session"),
                sock,
            );
            // The ClientHello, then our flight with HELLO and READY as 0.5-RTT data.
            while p.conn.is_handshaking() && !p.conn.wants_write() {
                p.conn.read_tls(&mut p.sock).ok();
                p.conn.process_new_packets().expect("ClientHello");
            }
            let mut first = p.pending();
            first.extend(p.records(&[
                &encode(Frame::Hello(Hello::ours(1 << 20))),
                &encode(Frame::Ready(Ready { capacity: 100 })),
            ]));
            std::io::Write::write_all(&mut p.sock, &first).expect("flight");
            let mut served = 0;
            // Until the caller closes.
            while let Some(frame) = p.try_next_frame(Duration::from_secs(60)) {
                let Ok(Some((Frame::Request(r), _))) = decode(&frame, 1 << 20) else {
                    continue; // the caller's HELLO
                };
                // Mid-call: the tickets (first call only) in pieces, then a KeyUpdate.
                let tickets = p.pending();
                p.send_chunked(&tickets, 5);
                p.conn.refresh_traffic_keys().expect("KeyUpdate");
                let ku = p.pending();
                p.send_chunked(&ku, 3);
                let answer = encode(Frame::Response(Response {
                    id: r.id,
                    status: Status::OK,
                    body: r.body,
                }));
                let (a, rest) = answer.split_at(5);
                let (b, c) = rest.split_at(rest.len() / 2);
                let bytes = p.records(&[a, b, c]);
                p.send_chunked(&bytes, 7);
                served += 1;
                if served > 100 {
                    break;
                }
            }
        }
    });
    (addr, t)
}

fn client(addr: std::net::SocketAddr, pki: &tls::Pki) -> Client {
    Client::builder()
        .nodes([addr])
        .tls(pki.client(false))
        .default_deadline(WAIT)
        .build()
        .expect("client")
}

#[test]
fn key_update_and_tickets_mid_call_on_the_own_answer_read() {
    let pki = tls::pki();
    let (addr, node) = shaped_node(&pki, 1);
    let c = client(addr, &pki);
    for i in 0..5u8 {
        let body = vec![i; 300];
        assert_eq!(c.call("echo", &body).expect("call"), body, "call {i}");
    }
    drop(c);
    node.join().expect("node thread");
}

#[test]
fn key_update_and_tickets_mid_call_on_the_io_thread() {
    let pki = tls::pki();
    let (addr, node) = shaped_node(&pki, 1);
    let c = client(addr, &pki);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for i in 0..5u8 {
            let body = vec![i; 300];
            let r = c
                .call_async("echo", body.clone(), CallOptions::default())
                .await
                .expect("call");
            assert_eq!(r.body, body, "call {i}");
        }
    });
    drop(c);
    node.join().expect("node thread");
}

#[test]
fn the_server_reads_frames_split_across_records_and_reads_with_a_key_update_inside() {
    let pki = tls::pki();
    let node = Server::builder()
        .tls(pki.server(false))
        .handler("echo", |r: &Request<'_>| Ok(r.body().to_vec()))
        .spawn()
        .expect("server");
    let sock = std::net::TcpStream::connect(node.local_addr()).expect("connect");
    let config = client_config(&pki, false);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut p = RawTls::new(
        rustls::ClientConnection::new(config, name).expect("session"),
        sock,
    );
    p.handshake();
    let hello = encode(Frame::Hello(Hello::ours(1 << 20)));
    let bytes = p.records(&[&hello]);
    p.send_chunked(&bytes, 4);
    for i in 0..3u64 {
        let body = vec![i as u8; 40_000];
        let req = peer_request(i + 1, &body);
        // Header in one record, the body over many, a KeyUpdate between two of them.
        let (head, rest) = req.split_at(9);
        let (mid, tail) = rest.split_at(rest.len() / 2);
        let mut bytes = p.records(&[head, mid]);
        p.conn.refresh_traffic_keys().expect("KeyUpdate");
        bytes.extend(p.pending());
        bytes.extend(p.records(&[tail]));
        p.send_chunked(&bytes, 1500);
        loop {
            let f = p.next_frame(WAIT);
            match decode(&f, 1 << 20) {
                Ok(Some((Frame::Response(r), _))) => {
                    assert_eq!(r.id, i + 1);
                    assert_eq!(r.status, Status::OK);
                    assert_eq!(
                        r.body,
                        &body[..],
                        "request {i}: the body came back different"
                    );
                    break;
                }
                Ok(Some(_)) => {} // HELLO, READY
                other => panic!("bad frame: {other:?}"),
            }
        }
    }
}

#[test]
fn zero_rtt_is_off() {
    let pki = tls::pki();
    let node = Server::builder()
        .tls(pki.server(false))
        .handler("echo", |r: &Request<'_>| Ok(r.body().to_vec()))
        .spawn()
        .expect("server");
    // A caller that wants 0-RTT and keeps its tickets.
    let config = client_config(&pki, true);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut first = RawTls::new(
        rustls::ClientConnection::new(config.clone(), name.clone()).expect("session"),
        std::net::TcpStream::connect(node.local_addr()).expect("connect"),
    );
    first.handshake();
    let hello = encode(Frame::Hello(Hello::ours(1 << 20)));
    let b = first.records(&[&hello]);
    first.send_chunked(&b, 1 << 20);
    let _ = first.next_frame(WAIT); // the node's HELLO, after its tickets
    assert!(
        first.conn.tls13_tickets_received() > 0,
        "the node issued no ticket: the test proves nothing"
    );
    let mut second = rustls::ClientConnection::new(config, name).expect("session");
    assert!(
        second.early_data().is_none(),
        "the node's tickets allow early data: 0-RTT must be off"
    );
}

fn client_config(pki: &tls::Pki, early: bool) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.cert_pem().as_bytes()).expect("ca"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.enable_early_data = early;
    Arc::new(c)
}

fn peer_request(id: u64, body: &[u8]) -> Vec<u8> {
    use gracerpc::proto::frame::Request as R;
    encode(Frame::Request(R {
        id,
        deadline_us: 30_000_000,
        idempotent: false,
        method: "echo",
        metadata: Default::default(),
        body,
    }))
}
