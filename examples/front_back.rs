//! Two services: a front whose async handler calls a back service, passing on the deadline the
//! first caller gave and its W3C trace context. The back service's 1 ms of work is a wait, not
//! a blocked thread: a deferred handler hands its responder to a timer.
//!
//! Run: `cargo run --release --features tokio --example front_back`.

use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gracerpc::client::{CallOptions, Client};
use gracerpc::proto::Status;
use gracerpc::server::{Failure, OwnedRequest, Placement, Request, Responder, Server};

/// A timer thread that answers responders when their time comes.
#[derive(Clone)]
struct Timer(Arc<(Mutex<BinaryHeap<Due>>, Condvar)>);

struct Due(Instant, Responder, Vec<u8>);
impl PartialEq for Due {
    fn eq(&self, o: &Due) -> bool {
        self.0 == o.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Due) -> std::cmp::Ordering {
        o.0.cmp(&self.0) // earliest first
    }
}

impl Timer {
    fn start() -> Timer {
        let t = Timer(Arc::default());
        let t2 = t.clone();
        std::thread::spawn(move || t2.run());
        t
    }

    fn answer_after(&self, d: Duration, r: Responder, body: Vec<u8>) {
        let (heap, cv) = &*self.0;
        heap.lock().unwrap().push(Due(Instant::now() + d, r, body));
        cv.notify_one();
    }

    fn run(&self) {
        let (heap, cv) = &*self.0;
        let mut h = heap.lock().unwrap();
        loop {
            let now = Instant::now();
            while h.peek().is_some_and(|d| d.0 <= now) {
                if let Some(Due(_, r, body)) = h.pop() {
                    let _ = r.ok(body);
                }
            }
            h = match h.peek().map(|d| d.0 - now) {
                Some(wait) => cv.wait_timeout(h, wait).unwrap().0,
                None => cv.wait(h).unwrap(),
            };
        }
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;

    // The back service: 1 ms of (non-blocking) work, then the answer says what it saw.
    let timer = Timer::start();
    let back = Server::builder()
        .deferred_handler_with(
            "back.lookup",
            move |req: &Request<'_>, r: Responder| {
                let seen = format!(
                    "value-of-{} (trace {}, {} ms left)",
                    String::from_utf8_lossy(req.body),
                    req.traceparent().unwrap_or("none"),
                    req.remaining().as_millis()
                );
                timer.answer_after(Duration::from_millis(1), r, seen.into_bytes());
            },
            Placement::Inline,
        )
        .spawn()?;
    let back_client = Client::builder().nodes([back.local_addr()]).build()?;

    // The front service: an async handler that awaits the back service with the deadline and
    // trace context of the call it serves.
    let front = Server::builder()
        .workers(2)
        .async_handler(rt.handle(), "front.get", move |req: OwnedRequest| {
            let back = back_client.clone();
            async move {
                let opts = CallOptions::from_request(&req.as_request());
                let reply = back
                    .call_async("back.lookup", req.body.clone(), opts)
                    .await
                    .map_err(|e| Failure::new(Status::APP_ERROR, e.to_string()))?;
                Ok(reply.body)
            }
        })
        .spawn()?;

    let client = Client::builder().nodes([front.local_addr()]).build()?;
    let opts = CallOptions::new()
        .deadline(Duration::from_millis(800))
        .header("traceparent", TRACEPARENT)?;
    let reply = client.call_with("front.get", b"user-42", &opts)?;
    let text = String::from_utf8(reply.body)?;
    println!("front.get -> {text}");
    assert!(
        text.contains(TRACEPARENT),
        "the trace context reached the back service"
    );
    let left: u128 = text
        .rsplit_once(", ")
        .and_then(|(_, t)| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u128::MAX);
    assert!(
        left <= 800,
        "the back service works within the first caller's deadline"
    );

    client.close(Duration::from_secs(1));
    front.shutdown();
    println!("front: {}", front.wait()?);
    back.shutdown();
    println!("back: {}", back.wait()?);
    Ok(())
}

#[test]
fn front_back_runs() {
    main().expect("the example runs");
}
