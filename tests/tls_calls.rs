//! Calls over TLS and mutual TLS (feature `tls`): both client paths (the caller reading its
//! own answer, the I/O thread), payloads that span many records, the caller's identity in the
//! request context, the authorization hook's refusal, server names, and 0-RTT off.

#[path = "support/tls.rs"]
mod tls;
#[path = "support/witness.rs"]
mod witness;

use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallOptions, CallSet, Client};
use gracerpc::server::{Request, Server, Status};

fn echo_server(tls: gracerpc::tls::ServerTls) -> gracerpc::server::ServerHandle {
    Server::builder()
        .tls(tls)
        .handler("echo", |r: &Request<'_>| Ok(r.body().to_vec()))
        .handler("whoami", |r: &Request<'_>| {
            Ok(r.identity()
                .and_then(|i| i.name())
                .unwrap_or("nobody")
                .as_bytes()
                .to_vec())
        })
        .spawn()
        .expect("server")
}

fn client(addr: std::net::SocketAddr, tls: gracerpc::tls::ClientTls) -> Client {
    Client::builder()
        .nodes([addr])
        .tls(tls)
        .default_deadline(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[test]
fn sequential_calls_over_tls_read_their_own_answers_of_every_size() {
    let pki = tls::pki();
    let node = echo_server(pki.server(false));
    let c = client(node.local_addr(), pki.client(false));
    // 32 B, 4 KiB, and bodies over one record (16 KiB) and over one 16 KiB read: frames split
    // across records, records split across reads.
    for size in [32usize, 4096, 16 * 1024 + 1, 200 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        for round in 0..20 {
            let got = c.call("echo", &body).unwrap_or_else(|e| {
                panic!("echo of {size} bytes, round {round}: {e}");
            });
            assert!(got == body, "echo of {size} bytes came back different");
        }
    }
}

#[test]
fn concurrent_calls_over_tls_go_through_the_io_thread() {
    let pki = tls::pki();
    let node = echo_server(pki.server(false));
    let c = client(node.local_addr(), pki.client(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for round in 0..10 {
            let calls: Vec<_> = (0..64u32)
                .map(|i| {
                    let body = vec![i as u8; if i % 2 == 0 { 32 } else { 20_000 }];
                    c.call_async("echo", body, CallOptions::default())
                })
                .collect();
            for (i, call) in calls.into_iter().enumerate() {
                let r = call
                    .await
                    .unwrap_or_else(|e| panic!("round {round} call {i}: {e}"));
                assert_eq!(
                    r.body[0], i as u8,
                    "round {round} call {i}: someone else's answer"
                );
            }
        }
    });
}

/// Echo calls through a `CallSet` of `lanes` on `c`, each counted by `count`: call `i` sends
/// `size(i)` bytes of `i as u8`, and each answer must be exactly its own body. A new call goes
/// in as each ends while `more(calls started)` says so.
fn echo_through_a_set(
    c: &Client,
    count: &witness::Deliveries,
    lanes: usize,
    size: impl Fn(usize) -> usize,
    mut more: impl FnMut(usize) -> bool,
) {
    let opts = CallOptions::default();
    let call = |i: usize| {
        let fut = count.watch(c.call_async("echo", vec![i as u8; size(i)], opts.clone()));
        async move { (i, fut.await) }
    };
    let mut set = CallSet::with_capacity(lanes);
    let mut started = 0;
    while started < lanes {
        assert!(set.push(call(started)).is_ok());
        started += 1;
    }
    while let Some((i, r)) = set.next() {
        let r = r.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(r.body.len(), size(i), "call {i}");
        assert!(
            r.body.iter().all(|&b| b == i as u8),
            "call {i}: someone else's answer"
        );
        if more(started) {
            assert!(set.push(call(started)).is_ok());
            started += 1;
        }
    }
}

/// A `CallSet` alone on its TLS connection reads and decrypts its answers on its own thread
/// (waiting in poll(2)), frames split across records and records across reads included, and
/// every call gets its own answer.
#[test]
fn a_call_set_over_tls_reads_its_own_answers() {
    let pki = tls::pki();
    let node = echo_server(pki.server(false));
    let c = client(node.local_addr(), pki.client(false));
    let count = witness::Deliveries::default();
    let sizes = [32usize, 4096, 16 * 1024 + 1, 40_000];
    echo_through_a_set(
        &c,
        &count,
        16,
        |i| sizes[i % sizes.len()],
        |started| started < 2000,
    );
    count.assert_mostly_on_caller();
}

/// A `CallSet` keeping 64 calls of 4 KiB in flight over TLS stays the reader of its
/// connection: the I/O thread's ticks (at least every 100 ms; the run lasts several) do not
/// take the socket back into its poll while the set reads it or between its rounds, so the
/// set's answers are not decrypted and handed over by another thread. (The first round's
/// answers come through the I/O thread: the connection is in its poll until the set first
/// reads.)
#[test]
fn a_call_set_over_tls_stays_the_reader_while_the_io_thread_ticks() {
    let pki = tls::pki();
    let node = echo_server(pki.server(false));
    let c = client(node.local_addr(), pki.client(false));
    let count = witness::Deliveries::default();
    // At least 16,000 calls and 500 ms (five ticks), at most 400,000 calls.
    let (lanes, least, most) = (64, 16_000, 400_000);
    let (begun, long_enough) = (Instant::now(), Duration::from_millis(500));
    echo_through_a_set(
        &c,
        &count,
        lanes,
        |_| 4096,
        |started| started < most && (started < least || begun.elapsed() < long_enough),
    );
    // The first round's answers come through the I/O thread (before the set first reads),
    // and a set thread descheduled for longer than a tick (a loaded machine) has its
    // connection watched again: a takeover, whose rounds then come through the I/O thread
    // until the set reads again (975 answers once in CI). That is at most one per tick (100
    // ms). A tick that takes the socket back while the set reads it, or between its rounds,
    // is a takeover at nearly every I/O wake-up: 178 to 513 in runs of 0.65 s with that rule
    // put back; 0 or 1 with it.
    let ran = begun.elapsed();
    let (mine, io) = count.counts();
    let takeovers = count.takeovers();
    eprintln!(
        "answers: {mine} read by the set, {io} delivered by the I/O thread in {takeovers} \
         takeovers, {ran:?}"
    );
    let one_per_tick = 2 + (ran.as_millis() / 100) as usize;
    assert!(
        takeovers <= one_per_tick,
        "the I/O thread took the reading over from the set {takeovers} times ({io} of {} \
         answers)",
        mine + io
    );
}

#[test]
fn mutual_tls_identity_reaches_the_handler_and_the_hook_refuses_without_closing() {
    let pki = tls::pki();
    let intruder = pki.ca.issue("intruder", &["intruder.test"]).expect("cert");
    let node = Server::builder()
        .tls(pki.server(true))
        .handler("whoami", |r: &Request<'_>| {
            let id = r.identity().expect("a mutual-TLS caller has an identity");
            Ok(format!("{}|{}", id.name().unwrap_or(""), id.dns_names.join(",")).into_bytes())
        })
        .handler("pay", |_: &Request<'_>| Ok(b"paid".to_vec()))
        .authorize_method("pay", |r: &Request<'_>| {
            r.identity().is_some_and(|i| i.has_name("billing"))
        })
        .spawn()
        .expect("server");
    let billing = client(node.local_addr(), pki.client(true));
    assert_eq!(
        billing.call("whoami", b"").expect("whoami"),
        b"billing|billing.test"
    );
    assert_eq!(billing.call("pay", b"").expect("billing may pay"), b"paid");

    let other = client(node.local_addr(), pki.client_as(&intruder));
    match other.call("pay", b"") {
        Err(CallError::Refused { status, .. }) => {
            assert_eq!(status, Status::REFUSED_PERMISSION_DENIED)
        }
        r => panic!("an unauthorized caller must be refused (did not run, final): {r:?}"),
    }
    // Refused, not disconnected: the same connection answers the next call.
    assert_eq!(
        other
            .call("whoami", b"")
            .expect("the connection still works"),
        b"intruder|intruder.test"
    );
    assert_eq!(node.connections(), 2, "the refusal closed no connection");
}

#[test]
fn a_certificate_with_only_a_dns_name_needs_the_server_name() {
    let pki = tls::pki();
    let dns_only = pki.ca.issue("svc", &["calc.internal"]).expect("cert");
    let tls = gracerpc::tls::ServerTls::from_pem(
        dns_only.cert_pem.as_bytes(),
        dns_only.key_pem.as_bytes(),
        None,
    )
    .expect("server TLS");
    let node = echo_server(tls);
    let addr = node.local_addr();
    // Per service.
    let named = Client::builder()
        .nodes([addr])
        .tls(
            pki.client(false)
                .server_name("calc.internal")
                .expect("name"),
        )
        .build()
        .expect("client");
    assert_eq!(named.call("echo", b"hi").expect("named call"), b"hi");
    // Per node.
    let per_node = Client::builder()
        .nodes([addr])
        .tls(
            pki.client(false)
                .node_server_name(addr, "calc.internal")
                .expect("name"),
        )
        .build()
        .expect("client");
    assert_eq!(per_node.call("echo", b"hi").expect("per-node call"), b"hi");
    // Without a name the node's IP is checked, which the certificate does not carry.
    let unnamed = Client::builder()
        .nodes([addr])
        .tls(pki.client(false))
        .default_deadline(Duration::from_millis(800))
        .build()
        .expect("client");
    assert!(
        unnamed.call("echo", b"hi").is_err(),
        "a certificate without the node's IP must not verify"
    );
}
