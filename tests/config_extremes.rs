//! Settings and deadlines at their extremes (`Duration::MAX`) are cut to `MAX_DURATION`, never
//! a panic from `Instant + Duration` overflowing.

use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::server::{Request, Server};

#[test]
fn duration_max_everywhere_serves_and_drains() {
    let server = Server::builder()
        .drain_budget(Duration::MAX)
        .idle_timeout(Duration::MAX, Duration::MAX)
        .hello_timeout(Duration::MAX)
        .linger(Duration::MAX)
        .warmup(Duration::ZERO)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("server");
    let client = Client::builder()
        .nodes([server.local_addr()])
        .default_deadline(Duration::MAX)
        .ping(Duration::MAX, Duration::MAX)
        .reconnect_backoff(Duration::MAX, Duration::MAX)
        .build()
        .expect("client");
    let opts = CallOptions::new().deadline(Duration::MAX);
    let reply = client.call_with("echo", b"far", &opts).expect("call");
    assert_eq!(reply.body, b"far");
    assert_eq!(client.call("echo", b"default").expect("call"), b"default");
    client.close(Duration::from_secs(2));
    server.shutdown();
    let report = server.wait().expect("wait");
    assert!(report.clean, "{report}");
}
