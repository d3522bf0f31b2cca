//! Instructions per call with the server's metrics on against off (issue 15's cost target:
//! ≤ 1.05 ×), for an inline handler and a worker handler, 64 calls in flight, server and caller
//! in this one process. Meant to run under callgrind; it only makes the calls:
//!
//! ```text
//! scripts/callgrind_per_call.sh metrics_cost inline inline_metrics worker worker_metrics
//! ```

use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::server::{Request, Server};

const IN_FLIGHT: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mode = args.next().unwrap_or_else(|| "inline".into());
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(4000);
    let mut b = Server::builder()
        .workers(2)
        .inline_handler("inline", |r: &Request<'_>| Ok(r.body.to_vec()))
        .handler("worker", |r: &Request<'_>| Ok(r.body.to_vec()));
    if mode.ends_with("_metrics") {
        b = b.metrics();
    }
    let method = if mode.starts_with("inline") {
        "inline"
    } else {
        "worker"
    };
    let server = b.spawn().expect("server");
    let client = Client::builder()
        .nodes([server.local_addr()])
        .default_deadline(Duration::from_secs(600))
        .build()
        .expect("client");
    assert!(client.wait_ready(server.local_addr(), Duration::from_secs(60)));
    let body = [0x5au8; 32];
    let per_thread = calls / IN_FLIGHT;
    std::thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            let client = &client;
            s.spawn(move || {
                let opts = CallOptions::new();
                for _ in 0..per_thread {
                    let r = client.call_with(method, &body, &opts).expect("call");
                    assert_eq!(r.body.len(), body.len());
                }
            });
        }
    });
    client.close(Duration::from_secs(5));
    server.shutdown();
    server.wait().expect("server");
    println!("{mode}: {} calls", per_thread * IN_FLIGHT);
}
