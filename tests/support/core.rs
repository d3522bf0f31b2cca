//! Driving the sans-IO connections by hand: decode what one wrote, and a caller connection
//! already open (its HELLO written, the server's HELLO and READY handled).
//!
//! Include it with `#[path = "support/core.rs"] mod core_support;`.
#![allow(dead_code)]

use std::time::Instant;

use gracerpc::proto::frame::{Hello, Ready};
use gracerpc::proto::{ClientConn, ClientConnConfig, Frame, decode};

/// Every whole frame in `bytes` (our own encoders wrote them: they decode).
pub fn frames(bytes: &[u8]) -> Vec<Frame<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((f, used)) = decode(&bytes[at..], u32::MAX).expect("our own frames decode") {
        out.push(f);
        at += used;
    }
    out
}

/// A caller connection that has written its HELLO and handled the server's HELLO and READY.
pub fn open_client(now: Instant) -> ClientConn {
    let mut c = ClientConn::new(now, ClientConnConfig::default());
    let n = c.out().len();
    c.written(n); // our HELLO
    let mut b = Vec::new();
    Frame::Hello(Hello::ours(1 << 20)).encode(&mut b);
    Frame::Ready(Ready { capacity: 100 }).encode(&mut b);
    for f in frames(&b) {
        c.handle_frame(now, f)
            .expect("the server's HELLO and READY");
    }
    c
}
