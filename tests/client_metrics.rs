//! The caller's metrics against a real server: per-node series while the node is in the table
//! (its READY connections among them), and the GOAWAY of a draining node counted.

use std::time::{Duration, Instant};

use gracerpc::client::Client;
use gracerpc::server::{Request, Server};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("encode");
    text
}

#[test]
fn client_metrics_show_nodes_and_count_goaways() {
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("server");
    let addr = server.local_addr();
    let client = Client::builder()
        .nodes([addr])
        .connections_per_node(2)
        .build()
        .expect("client");
    assert!(
        client.wait_ready(addr, Duration::from_secs(10)),
        "never ready"
    );
    let t = Instant::now();
    while client.connections(addr) < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never two connections"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut registry = Registry::with_prefix("gracerpc");
    registry.register_collector(Box::new(client.metrics()));
    client.call("echo", b"x").expect("echo");
    let text = scrape(&registry);
    let ready = format!("gracerpc_client_node_ready{{node=\"{addr}\"}} 1");
    assert!(text.lines().any(|l| l == ready), "no {ready:?} in\n{text}");
    let lanes = format!("gracerpc_client_node_connections{{node=\"{addr}\"}} 2");
    assert!(text.lines().any(|l| l == lanes), "no {lanes:?} in\n{text}");
    assert!(
        text.lines()
            .any(|l| l == "gracerpc_client_goaways_received_total 0"),
        "{text}"
    );

    server.shutdown();
    let t = Instant::now();
    loop {
        let text = scrape(&registry);
        if text
            .lines()
            // One GOAWAY on each of its two connections.
            .any(|l| l == "gracerpc_client_goaways_received_total 2")
        {
            assert!(
                !text.lines().any(|l| l == ready),
                "a draining node is not ready: {text}"
            );
            let none = format!("gracerpc_client_node_connections{{node=\"{addr}\"}} 0");
            assert!(
                text.lines().any(|l| l == none),
                "a draining node's connections take no call: {text}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the GOAWAY was never counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.wait().expect("drain");
    client.close(Duration::from_secs(1));
    drop(client);
    assert_eq!(
        scrape(&registry).trim(),
        "# EOF",
        "a dropped client shows nothing"
    );
}
