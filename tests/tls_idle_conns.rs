//! 10,000 idle TLS connections on one server (the callers in a child process, so this
//! process's RSS is the server's alone): prints the RSS growth per idle TLS connection
//! (`--nocapture`; the target is at most 40 KiB), then a normal call still works and
//! every connection closes.

#[path = "support/peer.rs"]
mod peer;

#[path = "hostile/common.rs"]
mod common;

#[path = "support/holder.rs"]
mod holder;

#[path = "support/rawtls.rs"]
mod rawtls;

#[path = "support/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Target, rss_bytes};
use holder::{Holder, raise_nofile};
use peer::{QUICK, frames, wait_until};

const CONNS: usize = 10_000;
const TARGET_PER_CONN: u64 = 40 << 10;
const HOLDER_ENV: &str = "GRACERPC_TLS_HOLDER_ADDR";
const CA_ENV: &str = "GRACERPC_TLS_HOLDER_CA";

/// Run as a child process by the test below: opens the TLS connections (handshake, HELLO sent,
/// HELLO and READY read), prints `opened`, holds them until stdin closes.
#[test]
fn tls_connection_holder_child_process() {
    let (Ok(addr), Ok(ca)) = (std::env::var(HOLDER_ENV), std::env::var(CA_ENV)) else {
        return;
    };
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let addr: std::net::SocketAddr = addr.parse().expect("holder address");
    assert!(
        raise_nofile((CONNS + 256) as u64),
        "the holder cannot open {CONNS} sockets"
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut conns = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let s = TcpStream::connect_timeout(&addr, QUICK)
            .unwrap_or_else(|e| panic!("connect {i} of {CONNS}: {e}"));
        let mut p = rawtls::RawTls::new(
            rustls::ClientConnection::new(config.clone(), name.clone()).expect("session"),
            s,
        );
        p.handshake();
        let hello = p.records(&[&frames::hello()]);
        p.send_chunked(&hello, 1 << 20);
        let _hello = p.next_frame(QUICK);
        let _ready = p.next_frame(QUICK);
        conns.push(p);
    }
    println!("opened {}", conns.len());
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(conns);
}

#[test]
fn ten_thousand_idle_tls_connections() {
    if std::env::var(HOLDER_ENV).is_ok() {
        return; // this process is the holder
    }
    let pki = tls::pki();
    // Opening 10,000 TLS connections takes tens of seconds here: no idle PING meanwhile.
    let t = Target::start_with(|b| {
        b.max_connections(CONNS + 64)
            .idle_timeout(Duration::from_secs(600), Duration::from_secs(60))
            .tls(pki.server(false))
    });
    if !raise_nofile((CONNS + 1024) as u64) {
        println!("SKIPPED ten_thousand_idle_tls_connections: RLIMIT_NOFILE too low");
        return;
    }
    let check = || {
        let c = gracerpc::client::Client::builder()
            .nodes([t.addr()])
            .tls(pki.client(false))
            .build()
            .expect("client");
        assert_eq!(c.call("echo", b"still").expect("a call over TLS"), b"still");
    };
    check(); // warm up: the first connection's lazy allocations are not per-connection costs
    wait_until(QUICK, "the check connection to close", || {
        t.server().connections() == 0
    });
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let mut holder = Holder::spawn(
        "tls_connection_holder_child_process",
        &[
            (HOLDER_ENV, t.addr().to_string()),
            (CA_ENV, pki.ca.cert_pem().to_string()),
        ],
    );
    holder.wait_opened(CONNS, Duration::from_secs(240));
    let took = t0.elapsed();
    assert_eq!(t.server().connections(), CONNS);
    let rss1 = rss_bytes();
    let per_conn = rss1.saturating_sub(rss0) / CONNS as u64;
    println!(
        "{CONNS} idle TLS connections opened in {took:?}: server RSS {} KiB -> {} KiB, {per_conn} \
         bytes ({:.1} KiB) per idle TLS connection (target {} KiB)",
        rss0 >> 10,
        rss1 >> 10,
        per_conn as f64 / 1024.0,
        TARGET_PER_CONN >> 10
    );
    // Bounded memory: generous here; the figure is reported.
    assert!(
        per_conn < 256 << 10,
        "{per_conn} bytes per idle TLS connection"
    );
    check();
    holder.release();
    wait_until(Duration::from_secs(30), "connections() back to 0", || {
        t.server().connections() <= 1
    });
    let _ = holder.wait();
}
