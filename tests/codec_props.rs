//! Property tests of the codec: encode→decode round trips for every frame kind (REQUESTs with
//! generated metadata, up to its limits), decoding a
//! stream split at any points equals decoding it whole, and no input panics the decoder, the
//! buffers or the connection state machines.

#[allow(dead_code)] // only the decoding helpers are used here; `run` is the fuzz target's
#[path = "../fuzz/harness/decode_stream.rs"]
mod stream;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use gracerpc::proto::frame::MetadataBuf;
use gracerpc::proto::frame::{
    Cancel, ErrorFrame, GoAway, GoAwayAck, Hello, Ping, Ready, Request, Response, ShutdownReject,
};
use gracerpc::proto::{
    ClientConn, ClientConnConfig, ClientEvent, ErrorCode, Frame, GoAwayReason, HEADER_LEN, InBuf,
    RejectReason, Status, decode,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// The metadata limits of protocol.md (entries, bytes).
const MAX_ENTRIES: usize = 16;
const MAX_META_LEN: usize = 4096;

/// A frame that owns its bytes, so a strategy can produce it.
#[derive(Clone, Debug)]
enum Owned {
    Hello(Hello),
    Request {
        id: u64,
        deadline_us: u32,
        idempotent: bool,
        method: String,
        metadata: MetadataBuf,
        body: Vec<u8>,
    },
    Response {
        id: u64,
        status: u16,
        body: Vec<u8>,
    },
    Reject(ShutdownReject),
    GoAway(GoAway),
    GoAwayAck(u64),
    Ping(u64),
    Pong(u64),
    Ready(u8),
    Cancel(u64),
    Error {
        id: u64,
        code: u16,
        message: Vec<u8>,
    },
}

impl Owned {
    fn frame(&self) -> Frame<'_> {
        match self {
            Owned::Hello(h) => Frame::Hello(*h),
            Owned::Request {
                id,
                deadline_us,
                idempotent,
                method,
                metadata,
                body,
            } => Frame::Request(Request {
                id: *id,
                deadline_us: *deadline_us,
                idempotent: *idempotent,
                method,
                metadata: metadata.as_metadata(),
                body,
            }),
            Owned::Response { id, status, body } => Frame::Response(Response {
                id: *id,
                status: Status(*status),
                body,
            }),
            Owned::Reject(r) => Frame::ShutdownReject(*r),
            Owned::GoAway(g) => Frame::GoAway(*g),
            Owned::GoAwayAck(n) => Frame::GoAwayAck(GoAwayAck { last_accepted: *n }),
            Owned::Ping(v) => Frame::Ping(Ping { opaque: *v }),
            Owned::Pong(v) => Frame::Pong(Ping { opaque: *v }),
            Owned::Ready(c) => Frame::Ready(Ready { capacity: *c }),
            Owned::Cancel(id) => Frame::Cancel(Cancel { id: *id }),
            Owned::Error { id, code, message } => Frame::Error(ErrorFrame {
                id: *id,
                code: ErrorCode(*code),
                message,
            }),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.frame().encode(&mut out);
        out
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

/// Metadata within the limits (up to 16 entries, 4096 bytes, keys of `[a-z0-9._-]`, values
/// of any bytes up to `value_len`): entries are added while they fit. In frames the stream
/// tests decode (at most 4096-byte bodies), values stay short; `request_metadata_round_trips_
/// entry_by_entry` reaches the 4096-byte limit.
fn metadata(value_len: usize) -> impl Strategy<Value = MetadataBuf> {
    let entry = ("[a-z0-9._-]{1,64}", vec(any::<u8>(), 0..value_len));
    prop_oneof![
        1 => Just(MetadataBuf::new()),
        3 => vec(entry, 0..=MAX_ENTRIES + 2).prop_map(|entries| {
            let mut m = MetadataBuf::new();
            for (k, v) in entries {
                let _ = m.insert(&k, &v); // past a limit: skipped
            }
            m
        }),
    ]
}

/// Any valid frame of any kind.
fn frame() -> impl Strategy<Value = Owned> {
    let id = 1..=u64::MAX;
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u32>(), 1024..=u32::MAX).prop_map(|(a, b, f, m)| {
            Owned::Hello(Hello {
                min_version: a.min(b),
                max_version: a.max(b),
                features: f,
                max_frame: m,
            })
        }),
        (
            id.clone(),
            any::<u32>(),
            any::<bool>(),
            "\\PC{1,60}",
            metadata(100),
            body()
        )
            .prop_map(|(id, deadline_us, idempotent, method, metadata, body)| {
                Owned::Request {
                    id,
                    deadline_us,
                    idempotent,
                    method,
                    metadata,
                    body,
                }
            }),
        (id.clone(), any::<u16>(), body()).prop_map(|(id, status, body)| Owned::Response {
            id,
            status,
            body
        }),
        (id.clone(), any::<u16>()).prop_map(|(id, r)| Owned::Reject(ShutdownReject {
            id,
            reason: RejectReason(r),
        })),
        (any::<u64>(), any::<u32>(), any::<u16>()).prop_map(|(n, b, r)| Owned::GoAway(GoAway {
            last_accepted: n,
            drain_budget_ms: b,
            reason: GoAwayReason(r),
        })),
        any::<u64>().prop_map(Owned::GoAwayAck),
        any::<u64>().prop_map(Owned::Ping),
        any::<u64>().prop_map(Owned::Pong),
        (1u8..=100).prop_map(Owned::Ready),
        id.clone().prop_map(Owned::Cancel),
        (any::<u64>(), any::<u16>(), vec(any::<u8>(), 0..=256))
            .prop_map(|(id, code, message)| Owned::Error { id, code, message }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_metadata_round_trips_entry_by_entry(
        id in 1..=u64::MAX,
        method in "\\PC{1,60}",
        entries in vec(("[a-z0-9._-]{1,64}", vec(any::<u8>(), 0..600)), 0..=MAX_ENTRIES + 2),
        payload in body(),
    ) {
        let mut m = MetadataBuf::new();
        let mut kept = Vec::new();
        for (k, v) in entries {
            if m.insert(&k, &v).is_ok() {
                kept.push((k, v));
            }
        }
        prop_assert!(kept.len() <= MAX_ENTRIES);
        prop_assert!(m.as_metadata().as_bytes().len() <= MAX_META_LEN);
        let f = Frame::Request(Request {
            id,
            deadline_us: 1,
            idempotent: false,
            method: &method,
            metadata: m.as_metadata(),
            body: &payload,
        });
        let mut bytes = Vec::new();
        f.encode(&mut bytes);
        let (decoded, used) = decode(&bytes, u32::MAX).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        let Frame::Request(r) = decoded else {
            return Err(TestCaseError::fail("not a REQUEST"));
        };
        prop_assert_eq!(r.body, &payload[..]);
        let got: Vec<(String, Vec<u8>)> =
            r.metadata.iter().map(|(k, v)| (k.to_owned(), v.to_vec())).collect();
        prop_assert_eq!(got, kept);
    }

    #[test]
    fn every_frame_round_trips(f in frame()) {
        let bytes = f.bytes();
        let (decoded, used) = decode(&bytes, u32::MAX).unwrap().unwrap();
        prop_assert_eq!(decoded, f.frame());
        prop_assert_eq!(used, bytes.len());
        // The header's length field is the body length.
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        prop_assert_eq!(len + HEADER_LEN, bytes.len());
        // Every proper prefix is "need more bytes".
        for n in [0, 1, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
            prop_assert_eq!(decode(&bytes[..n.min(bytes.len() - 1)], u32::MAX), Ok(None));
        }
    }

    #[test]
    fn split_stream_of_frames_decodes_like_the_whole(
        frames in vec(frame(), 0..24),
        sizes in vec(any::<u8>(), 0..16),
    ) {
        let encoded: Vec<Vec<u8>> = frames.iter().map(Owned::bytes).collect();
        let stream_bytes = encoded.concat();
        let whole = stream::decode_whole(&stream_bytes);
        prop_assert!(whole.error.is_none());
        prop_assert_eq!(&whole.frames, &encoded);
        prop_assert_eq!(whole.rest, 0);
        prop_assert_eq!(stream::decode_pieces(&stream_bytes, &sizes), whole);
    }

    #[test]
    fn split_stream_of_any_bytes_decodes_like_the_whole(
        frames in vec(frame(), 0..6),
        noise in vec(any::<u8>(), 0..600),
        cut in any::<usize>(),
        sizes in vec(any::<u8>(), 0..16),
    ) {
        // Valid frames with noise spliced in somewhere: the decoder stops at the same place
        // with the same error, however the bytes arrive.
        let mut bytes = frames.iter().flat_map(Owned::bytes).collect::<Vec<u8>>();
        let at = cut % (bytes.len() + 1);
        bytes.splice(at..at, noise);
        let whole = stream::decode_whole(&bytes);
        prop_assert_eq!(stream::decode_pieces(&bytes, &sizes), whole);
    }

    #[test]
    fn any_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..200), max in any::<u32>()) {
        if let Err(e) = decode(&bytes, max) {
            let _ = (e.code(), e.to_string());
        }
    }

    #[test]
    fn any_header_never_panics_the_decoder(
        kind in 0u8..=0x0c,
        flags in prop_oneof![Just(0u8), any::<u8>()],
        len in prop_oneof![0u32..64, any::<u32>()],
        id in any::<u64>(),
        body in vec(any::<u8>(), 0..64),
        max in prop_oneof![Just(1024u32), any::<u32>()],
    ) {
        // Headers of known kinds get past the header checks far more often than random bytes.
        let mut bytes = vec![kind, flags, 0, 0];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(&body);
        match decode(&bytes, max) {
            Ok(Some((frame, used))) => {
                prop_assert!(used <= bytes.len());
                let mut out = Vec::new();
                frame.encode(&mut out);
            }
            Ok(None) => prop_assert!(bytes.len() < HEADER_LEN + len as usize),
            Err(e) => { let _ = e.to_string(); }
        }
    }

    #[test]
    fn in_buf_holds_exactly_what_was_put_in(ops in vec(buf_op(), 0..64)) {
        let mut buf = InBuf::new();
        let mut model: VecDeque<u8> = VecDeque::new();
        let mut next = 0u8;
        for op in ops {
            match op {
                BufOp::Extend(n) => {
                    let bytes: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    buf.extend(&bytes);
                    model.extend(&bytes);
                }
                BufOp::Read { want, limit, n } => {
                    let room = buf.spare(want, limit);
                    if room.is_empty() && want > 0 {
                        prop_assert!(model.len() >= limit.max(HEADER_LEN));
                    }
                    let n = n.min(room.len());
                    for b in &mut room[..n] {
                        next = next.wrapping_add(1);
                        *b = next;
                        model.push_back(next);
                    }
                    buf.filled(n);
                }
                BufOp::Consume(n) => {
                    buf.consume(n);
                    model.drain(..n.min(model.len()));
                }
                BufOp::Shrink(keep) => buf.shrink_if_empty(keep),
            }
            prop_assert_eq!(buf.data(), model.make_contiguous());
            prop_assert_eq!(buf.is_empty(), model.is_empty());
        }
    }

    #[test]
    fn client_conn_survives_any_server_bytes(
        chunks in vec(vec(any::<u8>(), 0..64), 0..16),
        steps in vec((any::<u8>(), any::<u16>()), 0..32),
    ) {
        // A caller connection after a valid handshake, then arbitrary server bytes interleaved
        // with requests, partial writes and time: no panic, and every id resolves at most once.
        let start = Instant::now();
        let mut now = start;
        let mut c = ClientConn::new(now, ClientConnConfig::default());
        let mut hello = Vec::new();
        Frame::Hello(Hello::ours(1 << 20)).encode(&mut hello);
        Frame::Ready(Ready { capacity: 100 }).encode(&mut hello);
        let mut input = InBuf::new();
        let mut resolved = BTreeSet::new();
        let mut feeds: Vec<Vec<u8>> = vec![hello];
        feeds.extend(chunks);
        let mut steps = steps.into_iter();
        for bytes in feeds {
            input.extend(&bytes);
            loop {
                match decode(input.data(), c.max_frame()) {
                    Ok(Some((frame, used))) => {
                        let _ = c.handle_frame(now, frame);
                        input.consume(used);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = c.handle_decode_error(e);
                        input.consume(input.data().len());
                    }
                }
            }
            if let Some((what, n)) = steps.next() {
                match what % 4 {
                    0 => {
                        let deadline = now + Duration::from_millis(u64::from(n));
                        let _ = c.send_request(now, "m", &[1, 2, 3], deadline, what & 4 != 0, 0);
                    }
                    1 => {
                        let n = usize::from(n).min(c.out_len());
                        c.written(n);
                    }
                    2 => {
                        now += Duration::from_millis(u64::from(n));
                        c.handle_timeout(now);
                    }
                    _ => {
                        if n % 7 == 0 {
                            c.handle_eof("test");
                        }
                    }
                }
            }
            while let Some(ev) = c.poll_event() {
                if let ClientEvent::Resolved { id, .. } = ev {
                    prop_assert!(resolved.insert(id), "id {} resolved twice", id);
                }
            }
            let _ = c.poll_close();
        }
    }
}

#[derive(Clone, Debug)]
enum BufOp {
    Extend(usize),
    Read { want: usize, limit: usize, n: usize },
    Consume(usize),
    Shrink(usize),
}

fn buf_op() -> impl Strategy<Value = BufOp> {
    prop_oneof![
        (0usize..100).prop_map(BufOp::Extend),
        (
            0usize..100,
            prop_oneof![0usize..200, Just(usize::MAX)],
            0usize..200
        )
            .prop_map(|(want, limit, n)| BufOp::Read { want, limit, n }),
        (0usize..120).prop_map(BufOp::Consume),
        (0usize..64).prop_map(BufOp::Shrink),
    ]
}
