//! Typed services end to end: `#[gracerpc::service]` server and client on real sockets; wire
//! names; idempotency as part of the contract; refusals (unknown method, undecodable body,
//! idempotency mismatch) are "not run, final" and never replayed on another node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gracerpc::client::{ApiMisuse, CallError, CallOptions, Client, Status};
use gracerpc::server::{Server, ServerHandle};
use gracerpc::service::{Codec, Postcard, ServiceError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalcError {
    Overflow,
    Negative(i64),
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub value: i64,
}

#[gracerpc::service]
pub trait Calc {
    #[idempotent]
    fn add(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    fn record(&self, entry: Entry) -> Result<u64, CalcError>;
    #[idempotent]
    fn total(&self) -> Result<i64, CalcError>;
}

#[derive(Default)]
struct Node {
    runs: AtomicUsize,
    total: parking_lot::Mutex<i64>,
}

impl Calc for Arc<Node> {
    fn add(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        a.checked_add(b).ok_or(CalcError::Overflow)
    }

    fn record(&self, entry: Entry) -> Result<u64, CalcError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if entry.value < 0 {
            return Err(CalcError::Negative(entry.value));
        }
        let mut t = self.total.lock();
        *t = t.saturating_add(entry.value);
        Ok(entry.key.len() as u64)
    }

    fn total(&self) -> Result<i64, CalcError> {
        Ok(*self.total.lock())
    }
}

fn node() -> (Arc<Node>, ServerHandle) {
    let n = Arc::new(Node::default());
    let server = Server::builder()
        .workers(2)
        .service(CalcServer::new(n.clone()))
        .spawn()
        .expect("server");
    (n, server)
}

fn client(servers: &[&ServerHandle]) -> Client {
    let c = Client::builder()
        .nodes(servers.iter().map(|s| s.local_addr()))
        .default_deadline(Duration::from_secs(10))
        .build()
        .expect("client");
    for s in servers {
        assert!(
            c.wait_ready(s.local_addr(), Duration::from_secs(10)),
            "ready"
        );
    }
    c
}

#[test]
fn typed_calls_results_and_errors() {
    let (n, server) = node();
    let calc = CalcClient::new(client(&[&server]));
    assert_eq!(calc.add(2, 40), Ok(42));
    assert_eq!(
        calc.add(i64::MAX, 1),
        Err(ServiceError::App(CalcError::Overflow))
    );
    let e = Entry {
        key: "abc".into(),
        value: 5,
    };
    assert_eq!(calc.record(e), Ok(3));
    let bad = Entry {
        key: "x".into(),
        value: -1,
    };
    let err = calc.record(bad).unwrap_err();
    assert_eq!(err, ServiceError::App(CalcError::Negative(-1)));
    assert!(err.may_have_run());
    assert_eq!(calc.total(), Ok(5));
    assert_eq!(n.runs.load(Ordering::SeqCst), 4);
    assert_eq!(
        CalcServer::<Arc<Node>>::METHODS,
        &[
            ("calc.add", true),
            ("calc.record", false),
            ("calc.total", true)
        ]
    );
}

#[test]
fn wire_names_are_callable_with_the_bytes_api() {
    let (_n, server) = node();
    let c = client(&[&server]);
    let mut args = Vec::new();
    Postcard::encode(&(20i64, 22i64), &mut args).unwrap();
    let reply = c
        .call_with("calc.add", &args, &CallOptions::new().idempotent(true))
        .expect("bytes call of a typed method");
    assert_eq!(Postcard::decode::<i64>(&reply.body), Ok(42));
}

#[test]
fn the_generated_client_sets_the_idempotent_flag_from_the_declaration() {
    // A bytes server under the typed names records the flag each request carries.
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let server = Server::builder()
        .handler("calc.add", move |r| {
            s1.lock().push(("add", r.idempotent()));
            let mut out = Vec::new();
            Postcard::encode(&1i64, &mut out)?;
            Ok(out)
        })
        .handler("calc.record", move |r| {
            s2.lock().push(("record", r.idempotent()));
            let mut out = Vec::new();
            Postcard::encode(&1u64, &mut out)?;
            Ok(out)
        })
        .spawn()
        .unwrap();
    let calc = CalcClient::new(client(&[&server]));
    calc.add(1, 2).unwrap();
    let e = Entry {
        key: "k".into(),
        value: 1,
    };
    calc.record(e).unwrap();
    assert_eq!(*seen.lock(), [("add", true), ("record", false)]);
}

/// Two nodes: a refusal must come back at once from the first node tried, never replayed on
/// the other (it is final), with `may_have_run() == false`, and nothing ran.
fn assert_refused(
    result: Result<gracerpc::client::Response, CallError>,
    want: Status,
) -> CallError {
    let err = result.expect_err("refused");
    assert!(
        matches!(&err, CallError::Refused { status, .. } if *status == want),
        "{err:?}"
    );
    assert!(!err.may_have_run(), "{err}");
    assert_eq!(err.kind(), "refused");
    err
}

#[test]
fn refusals_are_final_and_never_replayed() {
    let (n1, s1) = node();
    let (n2, s2) = node();
    let c = client(&[&s1, &s2]);
    let opts = CallOptions::new().idempotent(true);

    // Unknown method (v1 said UNKNOWN_METHOD, "it ran").
    assert_refused(
        c.call_with("calc.nope", b"", &opts),
        Status::REFUSED_UNKNOWN_METHOD,
    );
    // A body that does not decode as (i64, i64): a typed not-run-final, never a panic.
    let err = assert_refused(
        c.call_with("calc.add", &[0xff; 11], &opts),
        Status::REFUSED_BAD_BODY,
    );
    assert!(format!("{err}").contains("calc.add"), "{err}");
    // Flagged idempotent to a method declared otherwise: a stale stub or a bytes caller can
    // never get `record` retried after an unknown outcome.
    let mut args = Vec::new();
    Postcard::encode(
        &Entry {
            key: "k".into(),
            value: 1,
        },
        &mut args,
    )
    .unwrap();
    assert_refused(
        c.call_with("calc.record", &args, &opts),
        Status::REFUSED_NOT_IDEMPOTENT,
    );
    // Not flagged, the same request runs.
    c.call_with("calc.record", &args, &CallOptions::new())
        .expect("runs");

    assert_eq!(c.stats().replayed, 0, "a refusal was replayed");
    assert_eq!(c.stats().retried, 0);
    let runs = n1.runs.load(Ordering::SeqCst) + n2.runs.load(Ordering::SeqCst);
    assert_eq!(runs, 1, "only the unflagged record ran");
}

#[test]
fn typed_client_maps_refusals_and_schema_mismatches() {
    // A node serving a bytes handler under `calc.add` that answers garbage: it ran, and the
    // typed caller says so (BadReply), never a panic.
    let server = Server::builder()
        .handler("calc.add", |_| {
            Ok(vec![
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ])
        })
        .spawn()
        .unwrap();
    let calc = CalcClient::new(client(&[&server]));
    let err = calc.add(1, 2).unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::BadReply {
                status: Status::OK,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.may_have_run());
    // `total` does not exist there: refused, not run.
    let err = calc.total().unwrap_err();
    assert!(
        matches!(
            &err,
            ServiceError::Call(CallError::Refused {
                status: Status::REFUSED_UNKNOWN_METHOD,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!err.may_have_run());
}

#[test]
fn a_value_over_max_frame_is_a_typed_error_naming_the_limit() {
    let n = Arc::new(Node::default());
    let server = Server::builder()
        .max_frame(4096)
        .service(CalcServer::new(n.clone()))
        .spawn()
        .unwrap();
    let calc = CalcClient::new(client(&[&server]));
    let big = Entry {
        key: "x".repeat(10_000),
        value: 1,
    };
    let err = calc.record(big).unwrap_err();
    let ServiceError::Call(CallError::Invalid(ApiMisuse::TooLarge { max, .. })) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*max, 4096);
    let text = err.to_string();
    assert!(text.contains("max_frame of 4096 bytes"), "{text}");
    assert!(!err.may_have_run());
    assert_eq!(n.runs.load(Ordering::SeqCst), 0);
}

/// A codec chosen by the user: bincode 1, through the `Codec` trait.
struct Bincode;

impl Codec for Bincode {
    fn encode<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut Vec<u8>,
    ) -> Result<(), gracerpc::service::CodecError> {
        bincode::serialize_into(dst, value).map_err(gracerpc::service::CodecError::new)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        bytes: &[u8],
    ) -> Result<T, gracerpc::service::CodecError> {
        bincode::deserialize(bytes).map_err(gracerpc::service::CodecError::new)
    }
}

#[test]
fn the_codec_is_the_users_choice() {
    let n = Arc::new(Node::default());
    let server = Server::builder()
        .service(CalcServer::<_, Bincode>::with_codec(n.clone()))
        .spawn()
        .unwrap();
    let c = client(&[&server]);
    let calc = CalcClient::<Bincode>::with_codec(c.clone());
    assert_eq!(calc.add(40, 2), Ok(42));
    assert_eq!(
        calc.add(i64::MAX, 1),
        Err(ServiceError::App(CalcError::Overflow))
    );
    // The bytes on the wire are bincode's: 16 fixed-width bytes for two i64.
    let mut args = Vec::new();
    Bincode::encode(&(1i64, 2i64), &mut args).unwrap();
    assert_eq!(args.len(), 16);
    let r = c
        .call_with("calc.add", &args, &CallOptions::new().idempotent(true))
        .unwrap();
    assert_eq!(Bincode::decode::<i64>(&r.body), Ok(3));
    // A caller with the other codec: refused (its arguments do not decode), nothing ran.
    let before = n.runs.load(Ordering::SeqCst);
    let postcard = CalcClient::new(c);
    let err = postcard.add(1, 2).unwrap_err();
    assert!(
        matches!(
            &err,
            ServiceError::Call(CallError::Refused {
                status: Status::REFUSED_BAD_BODY,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(n.runs.load(Ordering::SeqCst), before);
}

#[test]
fn arbitrary_bodies_never_panic_a_typed_method() {
    let (_n, server) = node();
    let c = client(&[&server]);
    // A small deterministic generator: every body is some mix of lengths and bytes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..500 {
        let len = (next() % 40) as usize;
        let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let method = ["calc.add", "calc.record", "calc.total"][i % 3];
        let idem = method != "calc.record";
        let opts = CallOptions::new().idempotent(idem);
        match c.call_with(method, &body, &opts) {
            Ok(_) => {}
            Err(CallError::Status { status, .. }) => {
                assert_eq!(status, Status::APP_ERROR, "{method} {body:?}")
            }
            Err(CallError::Refused { status, .. }) => {
                assert_eq!(status, Status::REFUSED_BAD_BODY, "{method} {body:?}")
            }
            Err(e) => panic!("{method} {body:?}: {e:?}"),
        }
    }
}
