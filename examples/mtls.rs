//! A node that requires mutual TLS and lets only `billing` call `pay`, and a caller presenting
//! its certificate. The certificates are made on the spot by a throwaway CA; in production
//! they come from PEM files (`ServerTls::from_pem_files`, `ClientTls::from_pem_files`).
//!
//! `cargo run --example mtls --features tls`

use gracerpc::client::{CallError, Client};
use gracerpc::server::{Request, Server};
use gracerpc::tls::{ClientTls, ServerTls, ThrowawayCa};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ca = ThrowawayCa::new("example CA")?;
    let (node_cert, billing) = (ca.issue("node", &["127.0.0.1"])?, ca.issue("billing", &[])?);
    let ca_pem = ca.cert_pem().as_bytes();

    // The node: its certificate, and the CA its callers' certificates must come from.
    let tls = ServerTls::from_pem(
        node_cert.cert_pem.as_bytes(),
        node_cert.key_pem.as_bytes(),
        Some(ca_pem),
    )?;
    let node = Server::builder()
        .tls(tls)
        .handler("pay", |r: &Request<'_>| {
            Ok(format!("paid by {:?}", r.identity().and_then(|i| i.name())).into_bytes())
        })
        .authorize_method("pay", |r: &Request<'_>| {
            r.identity().is_some_and(|i| i.has_name("billing"))
        })
        .spawn()?;

    // The caller: the CA it trusts, and its own certificate.
    let tls = ClientTls::from_pem(
        ca_pem,
        Some((billing.cert_pem.as_bytes(), billing.key_pem.as_bytes())),
    )?;
    let client = Client::builder()
        .nodes([node.local_addr()])
        .tls(tls)
        .build()?;
    println!(
        "{}",
        String::from_utf8_lossy(&client.call("pay", b"10 EUR")?)
    );

    // Another certificate of the same CA connects, but may not call `pay`: refused, never run.
    let other = ca.issue("reports", &[])?;
    let tls = ClientTls::from_pem(
        ca_pem,
        Some((other.cert_pem.as_bytes(), other.key_pem.as_bytes())),
    )?;
    let reports = Client::builder()
        .nodes([node.local_addr()])
        .tls(tls)
        .build()?;
    match reports.call("pay", b"10 EUR") {
        Err(e @ CallError::Refused { .. }) => println!("reports: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn mtls_runs() {
    main().expect("the example runs");
}
