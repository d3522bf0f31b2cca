//! Feature `tracing`: a handler runs inside a `gracerpc.request` span that carries the caller's
//! W3C `traceparent`, on every kind of handler (inline, worker, deferred).
#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::server::{Placement, Request, Responder, Server};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Spans' fields, the stack of entered spans per thread, and for each event (one per handler)
/// the fields of the span it was emitted in.
#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    /// Every span: its name and fields.
    spans: Mutex<HashMap<u64, Named>>,
    /// Every event: its message, and the span it was emitted in.
    events: Mutex<Vec<(String, Named)>>,
}

/// A span's name and fields.
type Named = (String, HashMap<String, String>);

thread_local! {
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let name = span.metadata().name().to_owned();
        self.spans.lock().unwrap().insert(id, (name, fields));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let current = STACK.with(|s| s.borrow().last().copied());
        let span = current
            .and_then(|id| self.spans.lock().unwrap().get(&id).cloned())
            .unwrap_or_default();
        self.events.lock().unwrap().push((message, span));
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| s.borrow_mut().pop());
    }
}

#[test]
fn every_handler_runs_in_a_span_carrying_the_traceparent() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    tracing::subscriber::set_global_default(recorder).expect("the only subscriber");
    let server = Server::builder()
        .handler_with(
            "inline",
            |_r: &Request<'_>| {
                tracing::info!("in inline");
                Ok(Vec::new())
            },
            Placement::Inline,
        )
        .handler("worker", |_r: &Request<'_>| {
            tracing::info!("in worker");
            Ok(Vec::new())
        })
        .deferred_handler("deferred", |_r: &Request<'_>, resp: Responder| {
            tracing::info!("in deferred");
            resp.ok(Vec::new());
        })
        .spawn()
        .expect("server");
    let client = Client::builder()
        .nodes([server.local_addr()])
        .build()
        .expect("client");
    assert!(client.wait_ready(server.local_addr(), Duration::from_secs(10)));
    let opts = CallOptions::new()
        .header("traceparent", TRACEPARENT)
        .expect("a valid header");
    for method in ["inline", "worker", "deferred"] {
        client.call_with(method, b"", &opts).expect(method);
    }
    // A call without trace context still gets its span, with no traceparent.
    client
        .call("worker", b"")
        .expect("worker without traceparent");
    let events = recorder.events.lock().unwrap().clone();
    for method in ["inline", "worker", "deferred"] {
        let (_, (span, fields)) = events
            .iter()
            .find(|(m, _)| *m == format!("in {method}"))
            .unwrap_or_else(|| panic!("no event from the {method} handler: {events:?}"));
        assert_eq!(span, "gracerpc.request", "{method}: {fields:?}");
        assert_eq!(fields.get("method").map(String::as_str), Some(method));
        assert_eq!(
            fields.get("traceparent").map(String::as_str),
            Some(TRACEPARENT),
            "{method}: the span carries the caller's traceparent"
        );
        assert!(fields.contains_key("id"), "{method}: {fields:?}");
    }
    let plain: Vec<_> = events.iter().filter(|(m, _)| m == "in worker").collect();
    assert_eq!(plain.len(), 2, "{events:?}");
    assert!(
        !plain[1].1.1.contains_key("traceparent"),
        "no traceparent sent, none recorded: {:?}",
        plain[1]
    );
    client.close(Duration::from_secs(1));
    server.shutdown();
    server.wait().expect("drain");
}
