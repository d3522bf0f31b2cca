//! Certificates rotated without a restart: a node reloads its certificate and client CA from
//! its PEM files, a caller reloads its CA bundle and client certificate; connections made
//! afterwards use the new ones, open connections keep working. And the handshake cap: when
//! callers connect all at once, handshakes in progress never exceed it.

#[path = "support/tls.rs"]
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use gracerpc::client::Client;
use gracerpc::server::{Request, Server};
use gracerpc::tls::{ClientTls, ServerTls, ThrowawayCa};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gracerpc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(path: &PathBuf, text: &str) {
    std::fs::write(path, text).expect("write PEM");
}

fn caller(addr: std::net::SocketAddr, tls: ClientTls) -> Client {
    Client::builder()
        .nodes([addr])
        .tls(tls)
        .default_deadline(Duration::from_millis(1500))
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .build()
        .expect("client")
}

#[test]
fn a_node_and_a_caller_rotate_certificates_and_cas_without_a_restart() {
    let d = dir("rotate");
    let (cert, key, client_ca) = (d.join("node.pem"), d.join("node-key.pem"), d.join("ca.pem"));
    let old = ThrowawayCa::new("old CA").expect("CA");
    let new = ThrowawayCa::new("new CA").expect("CA");
    let node_old = old.issue("node", &["127.0.0.1"]).expect("cert");
    let node_new = new.issue("node", &["127.0.0.1"]).expect("cert");
    let caller_old = old.issue("caller", &["caller.test"]).expect("cert");
    let caller_new = new.issue("caller", &["caller.test"]).expect("cert");
    write(&cert, &node_old.cert_pem);
    write(&key, &node_old.key_pem);
    write(&client_ca, old.cert_pem());
    let node_tls = ServerTls::from_pem_files(&cert, &key, Some(&client_ca)).expect("node TLS");
    let node = Server::builder()
        .tls(node_tls.clone())
        .handler("echo", |r: &Request<'_>| Ok(r.body().to_vec()))
        .spawn()
        .expect("server");
    let addr = node.local_addr();

    // The caller's files: it trusts the old CA and presents the old certificate.
    let (ca_file, ccert, ckey) = (d.join("c-ca.pem"), d.join("c.pem"), d.join("c-key.pem"));
    write(&ca_file, old.cert_pem());
    write(&ccert, &caller_old.cert_pem);
    write(&ckey, &caller_old.key_pem);
    let caller_tls = ClientTls::from_pem_files(&ca_file, Some((&ccert, &ckey))).expect("TLS");
    let open = caller(addr, caller_tls.clone());
    assert_eq!(open.call("echo", b"1").expect("before the rotation"), b"1");

    // The node rotates to the new CA: new certificate, new client CA. No restart.
    write(&cert, &node_new.cert_pem);
    write(&key, &node_new.key_pem);
    write(&client_ca, new.cert_pem());
    node_tls.reload().expect("node reload");
    // The open connection keeps working.
    assert_eq!(
        open.call("echo", b"2")
            .expect("open connection after reload"),
        b"2"
    );
    // A new caller with the old files can no longer connect ...
    let stale = caller(
        addr,
        ClientTls::from_pem_files(&ca_file, Some((&ccert, &ckey))).expect("TLS"),
    );
    assert!(
        stale.call("echo", b"3").is_err(),
        "the old CA still accepted for new connections"
    );
    drop(stale);
    // ... until the caller rotates its files too and reloads: then its new connections work.
    write(&ca_file, new.cert_pem());
    write(&ccert, &caller_new.cert_pem);
    write(&ckey, &caller_new.key_pem);
    caller_tls.reload().expect("caller reload");
    let fresh = caller(addr, caller_tls);
    assert_eq!(fresh.call("echo", b"4").expect("after both reloads"), b"4");
    // A bad file leaves the configuration in use.
    write(&cert, "not PEM");
    assert!(
        node_tls.reload().is_err(),
        "a broken certificate file must not load"
    );
    assert_eq!(fresh.call("echo", b"5").expect("still serving"), b"5");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn handshakes_in_progress_stay_under_the_cap_and_only_sessions_count_as_completed() {
    let pki = tls::pki();
    let node = Server::builder()
        .tls(pki.server(true).max_handshakes(2))
        .handler("echo", |r: &Request<'_>| Ok(r.body().to_vec()))
        .spawn()
        .expect("server");
    let addr = node.local_addr();
    // A bare connect closed at once (a port probe): begun, never completed. Accepted before
    // the callers' connections (the backlog is first in, first out).
    drop(std::net::TcpStream::connect(addr).expect("bare connect"));
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let tls = pki.client(true);
            std::thread::spawn(move || {
                let c = caller(addr, tls);
                c.call("echo", &[i as u8]).map(|b| b == [i as u8])
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("caller thread").ok(), Some(true));
    }
    let h = node.handshakes();
    assert!(h.completed >= 24, "every caller's session counts: {h:?}");
    assert!(
        h.begun > h.completed,
        "the bare connect counts as begun, not completed: {h:?}"
    );
    assert!(h.peak <= 2, "more handshakes at once than the cap: {h:?}");
}
