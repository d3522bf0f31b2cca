//! Instructions per call of a typed call against a bytes call with the same payload (a struct of
//! a few integers and a 32-byte field), 64 in flight, server and caller in this one process.
//! Meant to run under callgrind; it only makes the calls:
//!
//! ```text
//! cargo bench --bench typed_calls --no-run
//! valgrind --tool=callgrind target/release/deps/typed_calls-* bytes 4000
//! valgrind --tool=callgrind target/release/deps/typed_calls-* typed 4000
//! valgrind --tool=callgrind target/release/deps/typed_calls-* typed_serde_bytes 4000
//! ```
//!
//! Run each with two call counts: (Ir(2N) − Ir(N)) / N is the cost of one call, with start-up
//! and warm-up cancelled out (`scripts/typed_callgrind.sh` does it).

use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::server::Server;
use gracerpc::service::{Codec, Postcard};
use serde::{Deserialize, Serialize};

/// The struct of the measurement, its 32-byte field as serde sees a `[u8; 32]` by default: 32
/// elements, each through the codec's generic path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    id: u64,
    count: u32,
    delta: i64,
    flags: u16,
    digest: [u8; 32],
}

/// The same struct with the field as one byte string (`serde_bytes`), as the README advises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleBytes {
    id: u64,
    count: u32,
    delta: i64,
    flags: u16,
    #[serde(with = "serde_bytes")]
    digest: [u8; 32],
}

const SAMPLE: Sample = Sample {
    id: 123_456,
    count: 42,
    delta: -7,
    flags: 3,
    digest: [0x5a; 32],
};

const SAMPLE_BYTES: SampleBytes = SampleBytes {
    id: 123_456,
    count: 42,
    delta: -7,
    flags: 3,
    digest: [0x5a; 32],
};

#[gracerpc::service]
pub trait Bench {
    fn echo(&self, s: Sample) -> Result<Sample, String>;
    fn bytes(&self, s: SampleBytes) -> Result<SampleBytes, String>;
}

struct Node;
impl Bench for Node {
    fn echo(&self, s: Sample) -> Result<Sample, String> {
        Ok(s)
    }

    fn bytes(&self, s: SampleBytes) -> Result<SampleBytes, String> {
        Ok(s)
    }
}

const IN_FLIGHT: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mode = args.next().unwrap_or_else(|| "typed".into());
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(4000);
    let server = Server::builder()
        .workers(2)
        .handler("bytes.echo", |r| Ok(r.body().to_vec()))
        .service(BenchServer::new(Node))
        .spawn()
        .expect("server");
    let client = Client::builder()
        .nodes([server.local_addr()])
        .default_deadline(Duration::from_secs(600))
        .build()
        .expect("client");
    assert!(client.wait_ready(server.local_addr(), Duration::from_secs(60)));
    let mut body = Vec::new();
    Postcard::encode(&SAMPLE, &mut body).unwrap();
    let typed = BenchClient::new(client.clone());
    let per_thread = calls / IN_FLIGHT;
    std::thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            let (client, typed, body, mode) = (&client, &typed, &body, &mode);
            s.spawn(move || {
                let opts = CallOptions::new();
                for _ in 0..per_thread {
                    match mode.as_str() {
                        "bytes" => {
                            let r = client.call_with("bytes.echo", body, &opts).expect("call");
                            assert_eq!(r.body.len(), body.len());
                        }
                        "typed_serde_bytes" => {
                            let r = typed.bytes(SAMPLE_BYTES).expect("typed call");
                            assert_eq!(r.id, SAMPLE.id);
                        }
                        _ => {
                            let r = typed.echo(SAMPLE).expect("typed call");
                            assert_eq!(r.id, SAMPLE.id);
                        }
                    }
                }
            });
        }
    });
    client.close(Duration::from_secs(5));
    server.shutdown();
    server.wait().expect("server");
    println!("{mode}: {} calls", per_thread * IN_FLIGHT);
}
