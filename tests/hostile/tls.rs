//! Hostile TLS input (feature `tls`): each case ends that one connection with a clear error —
//! an alert and a FIN, never a reset — while a caller already connected keeps getting answers.
//!
//! Cases: plaintext gracerpc to a TLS port and TLS to a plaintext port; a certificate from
//! another CA; an expired certificate; no client certificate where one is required; a stalled
//! handshake (bounded by the HELLO timeout); a truncated record; a renegotiation attempt.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gracerpc::client::{CallError, Client};
use gracerpc::tls::ClientTls;

use crate::common::Target;
use crate::peer::{QUICK, frames};
use crate::rawtls::RawTls;
use crate::tls_certs::{Pki, pki};

/// A mutual-TLS target (short HELLO timeout for the stalled handshake) and a caller already
/// connected to it, whose calls must keep working through every case.
fn target(pki: &Pki) -> (Target, Client) {
    let t = Target::start_with(|b| {
        b.tls(pki.server(true))
            .hello_timeout(Duration::from_millis(600))
    });
    let good = caller(t.addr(), pki.client(true), QUICK);
    assert_eq!(
        good.call("echo", b"before").expect("the good caller"),
        b"before"
    );
    (t, good)
}

fn caller(addr: SocketAddr, tls: ClientTls, deadline: Duration) -> Client {
    Client::builder()
        .nodes([addr])
        .tls(tls)
        .default_deadline(deadline)
        .build()
        .expect("client")
}

/// The good caller still gets answers on its connection, and the target drains cleanly.
fn after(t: Target, good: Client) {
    assert_eq!(
        good.call("echo", b"after")
            .expect("the good caller after the case"),
        b"after"
    );
    drop(good);
    let s = t.server();
    crate::peer::wait_until(QUICK, "every connection to close", || s.connections() == 0);
    let s = t.server();
    s.shutdown();
    let report = s.wait().expect("report");
    assert!(report.clean, "{report:?}");
}

/// A caller whose every call must fail: the error names the TLS cause (`expect`).
fn refused(addr: SocketAddr, tls: ClientTls, what: &str, expect: &str) {
    let c = caller(addr, tls, Duration::from_millis(700));
    match c.call("echo", b"x") {
        Ok(_) => panic!("{what}: the call went through"),
        Err(e) => {
            let text = format!("{e}");
            assert!(
                !matches!(e, CallError::Status { .. }),
                "{what}: a handler answered: {text}"
            );
            assert!(
                text.contains(expect),
                "{what}: the error does not say what happened ({expect:?}): {text}"
            );
        }
    }
}

/// Reads to the peer's FIN: the bytes read. Panics on a reset (rule 4) or no FIN in time.
fn read_to_fin(s: &mut TcpStream, what: &str) -> Vec<u8> {
    s.set_read_timeout(Some(QUICK)).expect("timeout");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{what}: {e} after {} bytes (an RST breaks rule 4)",
                all.len()
            ),
        }
    }
}

/// A TLS alert record: content type 21.
fn is_alert(bytes: &[u8]) -> bool {
    bytes.first() == Some(&21)
}

fn raw_client(pki: &Pki, addr: SocketAddr, with_cert: bool) -> RawTls<rustls::ClientConnection> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.cert_pem().as_bytes()).expect("ca"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_cert {
        b.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(pki.client.cert_pem.as_bytes()).expect("cert")],
            PrivateKeyDer::from_pem_slice(pki.client.key_pem.as_bytes()).expect("key"),
        )
        .expect("client auth")
    } else {
        b.with_no_client_auth()
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    RawTls::new(
        rustls::ClientConnection::new(Arc::new(config), name).expect("session"),
        TcpStream::connect(addr).expect("connect"),
    )
}

#[test]
fn plaintext_gracerpc_to_a_tls_port_gets_an_alert_and_a_fin() {
    let pki = pki();
    let (t, good) = target(&pki);
    let mut s = TcpStream::connect(t.addr()).expect("connect");
    s.write_all(&frames::hello()).expect("HELLO");
    s.write_all(&frames::request(1, "echo", b"in the clear"))
        .expect("REQUEST");
    let got = read_to_fin(&mut s, "plaintext to a TLS port");
    assert!(
        is_alert(&got),
        "expected a TLS alert, got {:02x?}",
        &got[..got.len().min(16)]
    );
    after(t, good);
}

#[test]
fn tls_to_a_plaintext_port_fails_the_call_with_a_clear_error() {
    let pki = pki();
    let t = Target::start();
    refused(
        t.addr(),
        pki.client(false),
        "TLS to a plaintext port",
        "not TLS",
    );
    t.finish();
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let (t, good) = target(&pki);
    let other = crate::tls_certs::pki(); // another CA, its own client certificate
    let tls = ClientTls::from_pem(
        pki.ca.cert_pem().as_bytes(),
        Some((
            other.client.cert_pem.as_bytes(),
            other.client.key_pem.as_bytes(),
        )),
    )
    .expect("tls");
    refused(
        t.addr(),
        tls,
        "a client certificate from another CA",
        "could not verify us",
    );
    // And a node certificate from another CA: the caller refuses the node.
    refused(
        t.addr(),
        other.client(true),
        "a node certificate from another CA",
        "not signed by a trusted CA",
    );
    after(t, good);
}

#[test]
fn an_expired_client_certificate_is_refused() {
    let pki = pki();
    let (t, good) = target(&pki);
    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let expired = pki
        .ca
        .issue_valid("billing", &["billing.test"], now - 30 * day, now - day)
        .expect("cert");
    refused(
        t.addr(),
        pki.client_as(&expired),
        "an expired client certificate",
        "expired",
    );
    after(t, good);
}

#[test]
fn no_client_certificate_where_one_is_required_is_refused() {
    let pki = pki();
    let (t, good) = target(&pki);
    refused(
        t.addr(),
        pki.client(false),
        "no client certificate",
        "requires a client certificate",
    );
    after(t, good);
}

#[test]
fn a_stalled_handshake_ends_at_the_hello_timeout_without_a_reset() {
    let pki = pki();
    let (t, good) = target(&pki);
    // The first bytes of a real ClientHello, and nothing more (slowloris).
    let mut hello = Vec::new();
    let mut rc = raw_client(&pki, t.addr(), true);
    while rc.conn.wants_write() {
        rc.conn.write_tls(&mut hello).expect("ClientHello");
    }
    let mut s = TcpStream::connect(t.addr()).expect("connect");
    s.write_all(&hello[..20]).expect("part of a ClientHello");
    let start = Instant::now();
    let _ = read_to_fin(&mut s, "a stalled handshake");
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(600) + Duration::from_secs(3),
        "the stalled handshake was not bounded by the HELLO timeout: {took:?}"
    );
    after(t, good);
}

#[test]
fn a_truncated_record_ends_that_connection_without_a_reset() {
    let pki = pki();
    let (t, good) = target(&pki);
    let mut p = raw_client(&pki, t.addr(), true);
    p.handshake();
    let hello = p.records(&[&frames::hello()]);
    p.send_chunked(&hello, 1 << 20);
    // A record that promises 200 bytes and brings 10, then FIN.
    let record = p.records(&[&frames::request(1, "echo", &[7; 150])]);
    p.sock.write_all(&record[..10]).expect("truncated record");
    p.sock.shutdown(std::net::Shutdown::Write).expect("FIN");
    let _ = read_to_fin(&mut p.sock, "a truncated record");
    after(t, good);
}

#[test]
fn a_renegotiation_attempt_gets_an_alert_and_a_fin() {
    let pki = pki();
    let (t, good) = target(&pki);
    let mut p = raw_client(&pki, t.addr(), true);
    p.handshake();
    let hello = p.records(&[&frames::hello()]);
    p.send_chunked(&hello, 1 << 20);
    // A second ClientHello on the established connection (TLS 1.3 has no renegotiation).
    let mut again = Vec::new();
    let mut fresh = raw_client(&pki, t.addr(), true);
    while fresh.conn.wants_write() {
        fresh.conn.write_tls(&mut again).expect("ClientHello");
    }
    drop(fresh);
    p.sock.write_all(&again).expect("renegotiation attempt");
    let end = p
        .read_to_fin(QUICK)
        .expect("a renegotiation attempt must end in FIN, not an RST");
    assert!(
        end.tls_error.is_some(),
        "the node must refuse the renegotiation with an alert: {end:?}"
    );
    after(t, good);
}
