//! Byte-exact vectors for every frame kind: the same bytes as the examples in `protocol.md`.
//!
//! Each vector is decoded (the frame must equal the expected value and use every byte) and the
//! expected frame is encoded (the bytes must equal the vector). If either direction changes, the
//! wire format changed: update `protocol.md` in the same commit, or undo the change.

use gracerpc::proto::frame::{
    Cancel, ErrorFrame, FEATURE_METADATA, FEATURE_REFUSALS, GoAway, GoAwayAck, Hello, Metadata,
    MetadataBuf, MetadataError, Ping, Ready, Request, Response, ShutdownReject,
};
use gracerpc::proto::{
    DecodeError, ErrorCode, Frame, GoAwayReason, HEADER_LEN, Header, Kind, RejectReason, Status,
    decode,
};

/// The receiver's maximum body length used for the vectors (the default of 1 MiB).
const MAX: u32 = 1 << 20;

/// Parses hex as written in protocol.md: pairs of digits, spaces and newlines ignored.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Checks both directions: `bytes` decodes to `frame` using every byte, and `frame` encodes to
/// `bytes`.
fn check(bytes: &str, frame: Frame<'_>) {
    let bytes = hex(bytes);
    let (decoded, used) = decode(&bytes, MAX)
        .expect("vector must decode")
        .expect("vector must be a whole frame");
    assert_eq!(decoded, frame, "decoded frame");
    assert_eq!(used, bytes.len(), "bytes used by {:?}", frame.kind());
    let mut out = Vec::new();
    frame.encode(&mut out);
    assert_eq!(out, bytes, "encoding of {frame:?}");
    // One byte short of the whole frame is "need more bytes", never an error.
    assert_eq!(decode(&bytes[..bytes.len() - 1], MAX), Ok(None));
}

#[test]
fn hello() {
    check(
        "01 00 0000 00000010 0000000000000000
         47524143 0001 0001 00000000 00100000",
        Frame::Hello(Hello {
            min_version: 1,
            max_version: 1,
            features: 0,
            max_frame: 1 << 20,
        }),
    );
}

#[test]
fn hello_ours_sets_refusals_and_metadata() {
    check(
        "01 00 0000 00000010 0000000000000000
         47524143 0001 0001 00000003 00100000",
        Frame::Hello(Hello::ours(1 << 20)),
    );
    assert_eq!(
        Hello::ours(1 << 20).features,
        FEATURE_REFUSALS | FEATURE_METADATA
    );
}

#[test]
fn hello_range_and_optional_feature() {
    // A later node speaking versions 1..=3 with optional feature bit 0 and a 64 KiB maximum.
    check(
        "01 00 0000 00000010 0000000000000000
         47524143 0001 0003 00000001 00010000",
        Frame::Hello(Hello {
            min_version: 1,
            max_version: 3,
            features: 1,
            max_frame: 64 * 1024,
        }),
    );
}

#[test]
fn hello_longer_body_is_accepted_and_extra_ignored() {
    let bytes = hex("01 00 0000 00000014 0000000000000000
                     47524143 0001 0002 00000000 00100000 deadbeef");
    let (frame, used) = decode(&bytes, MAX).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        frame,
        Frame::Hello(Hello {
            min_version: 1,
            max_version: 2,
            features: 0,
            max_frame: 1 << 20,
        })
    );
}

#[test]
fn request() {
    check(
        "02 01 0000 0000000b 0000000000000001
         0003d090 04 6563686f 6869",
        Frame::Request(Request {
            id: 1,
            deadline_us: 250_000,
            idempotent: true,
            method: "echo",
            metadata: Metadata::EMPTY,
            body: b"hi",
        }),
    );
}

#[test]
fn request_not_idempotent_empty_payload() {
    check(
        "02 00 0000 00000008 0000000000000002
         00000000 03 707574",
        Frame::Request(Request {
            id: 2,
            deadline_us: 0,
            idempotent: false,
            method: "put",
            metadata: Metadata::EMPTY,
            body: b"",
        }),
    );
}

#[test]
fn request_with_metadata() {
    // Flags 0x03: IDEMPOTENT | METADATA. 100 ms, method `get`, metadata tenant=acme, payload `k1`.
    let entries = hex("06 74656e616e74 0004 61636d65");
    check(
        "02 03 0000 00000019 0000000000000003
         000186a0 03 676574 000d 06 74656e616e74 0004 61636d65 6b31",
        Frame::Request(Request {
            id: 3,
            deadline_us: 100_000,
            idempotent: true,
            method: "get",
            metadata: Metadata::from_entries(&entries).expect("valid entries"),
            body: b"k1",
        }),
    );
    let m = Metadata::from_entries(&entries).unwrap();
    assert_eq!(m.get_str("tenant"), Some("acme"));
    let mut built = MetadataBuf::new();
    built.insert("tenant", b"acme").unwrap();
    assert_eq!(
        built.as_metadata(),
        m,
        "MetadataBuf encodes the same entries"
    );
}

#[test]
fn request_with_two_metadata_entries_and_empty_payload() {
    // a="" and b.c="x"; not idempotent; 1 s; method `put`.
    let entries = hex("01 61 0000 03 622e63 0001 78");
    check(
        "02 02 0000 00000015 0000000000000004
         000f4240 03 707574 000b 01 61 0000 03 622e63 0001 78",
        Frame::Request(Request {
            id: 4,
            deadline_us: 1_000_000,
            idempotent: false,
            method: "put",
            metadata: Metadata::from_entries(&entries).expect("valid entries"),
            body: b"",
        }),
    );
    let m = Metadata::from_entries(&entries).unwrap();
    let all: Vec<(&str, &[u8])> = m.iter().collect();
    assert_eq!(all, vec![("a", &b""[..]), ("b.c", &b"x"[..])]);
}

#[test]
fn metadata_limits_are_typed_errors_when_built_and_malformed_on_the_wire() {
    let mut m = MetadataBuf::new();
    for i in 0..16 {
        m.insert(&format!("k{i}"), b"v").unwrap();
    }
    assert_eq!(
        m.insert("k16", b"v"),
        Err(MetadataError::TooManyEntries { max: 16 })
    );
    let mut big = MetadataBuf::new();
    assert!(matches!(
        big.insert("k", &[0u8; 4096]),
        Err(MetadataError::TooLarge { max: 4096, .. })
    ));
    for bad in ["", "Upper", "sp ace", &"k".repeat(65)] {
        assert!(
            matches!(
                MetadataBuf::new().insert(bad, b""),
                Err(MetadataError::BadKey { .. })
            ),
            "{bad:?}"
        );
    }
    // On the wire: 17 entries, a bad key, a value past the block, a block past the body.
    let mut seventeen = Vec::new();
    for i in 0..17u8 {
        seventeen.extend_from_slice(&[1, b'a' + i, 0, 0]);
    }
    let mut frame17 = Vec::new();
    let body_len = 4 + 1 + 1 + 2 + seventeen.len();
    frame17.extend_from_slice(&hex("02 02 0000"));
    frame17.extend_from_slice(&(body_len as u32).to_be_bytes());
    frame17.extend_from_slice(&hex("0000000000000001 000f4240 01 61"));
    frame17.extend_from_slice(&(seventeen.len() as u16).to_be_bytes());
    frame17.extend_from_slice(&seventeen);
    let cases = [
        frame17,
        hex("02 02 0000 0000000c 0000000000000001 000f4240 01 61 0004 01 41 0000"),
        hex("02 02 0000 0000000c 0000000000000001 000f4240 01 61 0004 01 61 0005"),
        hex("02 02 0000 00000008 0000000000000001 000f4240 01 61 0004"),
    ];
    for b in cases {
        let err = decode(&b, MAX).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Malformed {
                    kind: Kind::REQUEST,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::MALFORMED);
    }
}

#[test]
fn response() {
    check(
        "03 00 0000 00000004 0000000000000001
         0000 6869",
        Frame::Response(Response {
            id: 1,
            status: Status::OK,
            body: b"hi",
        }),
    );
}

#[test]
fn response_app_status() {
    check(
        "03 00 0000 00000002 0000000000000009
         0102",
        Frame::Response(Response {
            id: 9,
            status: Status(0x102),
            body: b"",
        }),
    );
}

#[test]
fn response_refusals() {
    check(
        "03 00 0000 00000004 0000000000000005
         0040 6e6f",
        Frame::Response(Response {
            id: 5,
            status: Status::REFUSED_UNKNOWN_METHOD,
            body: b"no",
        }),
    );
    check(
        "03 00 0000 00000002 0000000000000006
         0042",
        Frame::Response(Response {
            id: 6,
            status: Status::REFUSED_NOT_IDEMPOTENT,
            body: b"",
        }),
    );
}

#[test]
fn refusal_range_and_v1_fallbacks() {
    // The whole range is refusals, named or not; nothing outside it is.
    for code in 0u16..=0x01ff {
        assert_eq!(
            Status(code).is_refusal(),
            (0x40..=0x7f).contains(&code),
            "{code:#x}"
        );
    }
    assert_eq!(Status::REFUSED_BAD_BODY, Status(0x41));
    assert_eq!(Status::REFUSED_PERMISSION_DENIED, Status(0x43));
    // What a v1 caller gets instead: statuses it reads as "ran", so it never replays them.
    assert_eq!(
        Status::REFUSED_UNKNOWN_METHOD.v1_fallback(),
        Status::UNKNOWN_METHOD
    );
    for s in [
        Status::REFUSED_BAD_BODY,
        Status::REFUSED_NOT_IDEMPOTENT,
        Status::REFUSED_PERMISSION_DENIED,
        Status(0x7f),
    ] {
        assert_eq!(s.v1_fallback(), Status::INVALID_ARGUMENT, "{s}");
    }
    assert_eq!(Status::OK.v1_fallback(), Status::OK);
    assert_eq!(Status(0x102).v1_fallback(), Status(0x102));
}

#[test]
fn shutdown_reject() {
    check(
        "04 00 0000 00000002 0000000000000007
         0001",
        Frame::ShutdownReject(ShutdownReject {
            id: 7,
            reason: RejectReason::SHUTTING_DOWN,
        }),
    );
}

#[test]
fn goaway() {
    check(
        "05 00 0000 00000006 0000000000000005
         00007530 0001",
        Frame::GoAway(GoAway {
            last_accepted: 5,
            drain_budget_ms: 30_000,
            reason: GoAwayReason::SHUTDOWN,
        }),
    );
}

#[test]
fn goaway_nothing_accepted() {
    check(
        "05 00 0000 00000006 0000000000000000
         00002710 0002",
        Frame::GoAway(GoAway {
            last_accepted: 0,
            drain_budget_ms: 10_000,
            reason: GoAwayReason::IDLE,
        }),
    );
}

#[test]
fn goaway_ack() {
    check(
        "06 00 0000 00000000 0000000000000005",
        Frame::GoAwayAck(GoAwayAck { last_accepted: 5 }),
    );
}

#[test]
fn ping() {
    check(
        "07 00 0000 00000000 000000000000002a",
        Frame::Ping(Ping { opaque: 42 }),
    );
}

#[test]
fn pong() {
    check(
        "08 00 0000 00000000 000000000000002a",
        Frame::Pong(Ping { opaque: 42 }),
    );
}

#[test]
fn ready() {
    check(
        "09 00 0000 00000001 0000000000000000
         19",
        Frame::Ready(Ready { capacity: 25 }),
    );
    check(
        "09 00 0000 00000001 0000000000000000
         64",
        Frame::Ready(Ready { capacity: 100 }),
    );
}

#[test]
fn cancel() {
    check(
        "0a 00 0000 00000000 0000000000000003",
        Frame::Cancel(Cancel { id: 3 }),
    );
}

#[test]
fn error() {
    check(
        "0b 00 0000 0000000a 0000000000000004
         0008 6964206f72646572",
        Frame::Error(ErrorFrame {
            id: 4,
            code: ErrorCode::ID_ORDER,
            message: b"id order",
        }),
    );
}

#[test]
fn error_without_message() {
    check(
        "0b 00 0000 00000002 0000000000000000
         0004",
        Frame::Error(ErrorFrame {
            id: 0,
            code: ErrorCode::HANDSHAKE,
            message: b"",
        }),
    );
}

#[test]
fn unknown_codes_survive_a_round_trip() {
    check(
        "04 00 0000 00000002 0000000000000007
         00ff",
        Frame::ShutdownReject(ShutdownReject {
            id: 7,
            reason: RejectReason(0xff),
        }),
    );
    check(
        "05 00 0000 00000006 0000000000000001
         00000000 beef",
        Frame::GoAway(GoAway {
            last_accepted: 1,
            drain_budget_ms: 0,
            reason: GoAwayReason(0xbeef),
        }),
    );
}

// ---- header-level checks ----

fn header(s: &str) -> [u8; HEADER_LEN] {
    hex(s).try_into().expect("16 bytes")
}

#[test]
fn header_fields_are_big_endian() {
    let h = Header::parse(&header("02 01 0000 01020304 0102030405060708"), u32::MAX).unwrap();
    assert_eq!(
        h,
        Header {
            kind: Kind::REQUEST,
            flags: 0x01,
            len: 0x0102_0304,
            id: 0x0102_0304_0506_0708,
        }
    );
}

#[test]
fn unknown_kinds_are_refused() {
    for kind in [0x00u8, 0x0c, 0x7f, 0xff] {
        let mut b = header("00 00 0000 00000000 0000000000000001");
        b[0] = kind;
        let err = decode(&b, MAX).unwrap_err();
        assert_eq!(err, DecodeError::UnknownKind(kind));
        assert_eq!(err.code(), ErrorCode::UNKNOWN_KIND);
    }
}

#[test]
fn flags_a_kind_does_not_define_are_refused() {
    // REQUEST defines only 0x01 and 0x02.
    let err = decode(&hex("02 04 0000 00000000 0000000000000001"), MAX).unwrap_err();
    assert_eq!(
        err,
        DecodeError::ReservedBits {
            kind: Kind::REQUEST
        }
    );
    assert_eq!(err.code(), ErrorCode::MALFORMED);
    // Every other kind defines none.
    for kind in 0x01u8..=0x0b {
        if kind == Kind::REQUEST.0 {
            continue;
        }
        for flag in [0x01u8, 0x80] {
            let mut b = header("00 00 0000 00000000 0000000000000000");
            b[0] = kind;
            b[1] = flag;
            assert_eq!(
                decode(&b, MAX).unwrap_err(),
                DecodeError::ReservedBits { kind: Kind(kind) },
                "kind 0x{kind:02x} flag 0x{flag:02x}"
            );
        }
    }
}

#[test]
fn reserved_bytes_must_be_zero() {
    for reserved in ["0001", "0100", "ffff"] {
        let b = hex(&format!("07 00 {reserved} 00000000 0000000000000000"));
        let err = decode(&b, MAX).unwrap_err();
        assert_eq!(err, DecodeError::ReservedBits { kind: Kind::PING });
        assert_eq!(err.code(), ErrorCode::MALFORMED);
    }
}

#[test]
fn oversize_length_is_refused_from_the_header_alone() {
    // Exactly the 16 header bytes: no body byte is present, and none is waited for.
    let b = hex("02 00 0000 00100001 0000000000000001");
    assert_eq!(b.len(), HEADER_LEN);
    let err = decode(&b, MAX).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge {
            kind: Kind::REQUEST,
            len: MAX + 1,
            max: MAX,
        }
    );
    assert_eq!(err.code(), ErrorCode::TOO_LARGE);
    // The largest length that fits is only "need more bytes".
    assert_eq!(
        decode(&hex("02 00 0000 00100000 0000000000000001"), MAX),
        Ok(None)
    );
    // u32::MAX is refused just the same.
    assert!(matches!(
        decode(&hex("03 00 0000 ffffffff 0000000000000001"), MAX),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn header_errors_are_found_in_order_kind_flags_length() {
    // Unknown kind wins over bad flags and a huge length.
    assert_eq!(
        decode(&hex("20 ff ffff ffffffff 0000000000000000"), MAX),
        Err(DecodeError::UnknownKind(0x20))
    );
    // Bad flags win over a huge length.
    assert_eq!(
        decode(&hex("03 01 0000 ffffffff 0000000000000000"), MAX),
        Err(DecodeError::ReservedBits {
            kind: Kind::RESPONSE
        })
    );
}

#[test]
fn partial_input_is_need_more_bytes() {
    let frame = hex("02 01 0000 0000000b 0000000000000001 0003d090 04 6563686f 6869");
    for n in 0..frame.len() {
        assert_eq!(decode(&frame[..n], MAX), Ok(None), "{n} bytes");
    }
    assert!(decode(&frame, MAX).unwrap().is_some());
}

#[test]
fn malformed_bodies_are_refused() {
    let cases: &[(&str, Kind)] = &[
        // HELLO: id not 0, short body, wrong magic, min > max, max_frame below 1024.
        (
            "01 00 0000 00000010 0000000000000001 47524143 0001 0001 00000000 00100000",
            Kind::HELLO,
        ),
        (
            "01 00 0000 0000000f 0000000000000000 47524143 0001 0001 00000000 001000",
            Kind::HELLO,
        ),
        (
            "01 00 0000 00000010 0000000000000000 47524144 0001 0001 00000000 00100000",
            Kind::HELLO,
        ),
        (
            "01 00 0000 00000010 0000000000000000 47524143 0002 0001 00000000 00100000",
            Kind::HELLO,
        ),
        (
            "01 00 0000 00000010 0000000000000000 47524143 0001 0001 00000000 000003ff",
            Kind::HELLO,
        ),
        // REQUEST: id 0, short body, empty method, method past the body, method not UTF-8.
        (
            "02 00 0000 00000006 0000000000000000 00000001 01 61",
            Kind::REQUEST,
        ),
        (
            "02 00 0000 00000004 0000000000000001 00000001",
            Kind::REQUEST,
        ),
        (
            "02 00 0000 00000005 0000000000000001 00000001 00",
            Kind::REQUEST,
        ),
        (
            "02 00 0000 00000006 0000000000000001 00000001 02 61",
            Kind::REQUEST,
        ),
        (
            "02 00 0000 00000006 0000000000000001 00000001 01 ff",
            Kind::REQUEST,
        ),
        // RESPONSE: id 0, short body.
        ("03 00 0000 00000002 0000000000000000 0000", Kind::RESPONSE),
        ("03 00 0000 00000001 0000000000000001 00", Kind::RESPONSE),
        // SHUTDOWN_REJECT: id 0, body not 2 bytes.
        (
            "04 00 0000 00000002 0000000000000000 0001",
            Kind::SHUTDOWN_REJECT,
        ),
        (
            "04 00 0000 00000003 0000000000000001 000100",
            Kind::SHUTDOWN_REJECT,
        ),
        // GOAWAY: body not 6 bytes.
        (
            "05 00 0000 00000005 0000000000000001 00000000 00",
            Kind::GOAWAY,
        ),
        // Header-only kinds with a body; CANCEL for id 0.
        ("06 00 0000 00000001 0000000000000001 00", Kind::GOAWAY_ACK),
        ("07 00 0000 00000001 0000000000000001 00", Kind::PING),
        ("08 00 0000 00000001 0000000000000001 00", Kind::PONG),
        ("0a 00 0000 00000001 0000000000000001 00", Kind::CANCEL),
        ("0a 00 0000 00000000 0000000000000000", Kind::CANCEL),
        // READY: id not 0, capacity 0 or above 100, body not 1 byte.
        ("09 00 0000 00000001 0000000000000001 64", Kind::READY),
        ("09 00 0000 00000001 0000000000000000 00", Kind::READY),
        ("09 00 0000 00000001 0000000000000000 65", Kind::READY),
        ("09 00 0000 00000002 0000000000000000 6400", Kind::READY),
        // ERROR: body shorter than 2 bytes.
        ("0b 00 0000 00000001 0000000000000000 00", Kind::ERROR),
    ];
    for (bytes, kind) in cases {
        let err = decode(&hex(bytes), MAX).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed { kind: k, .. } if k == *kind),
            "{bytes}: {err:?}"
        );
        let want = if *kind == Kind::HELLO {
            ErrorCode::HANDSHAKE
        } else {
            ErrorCode::MALFORMED
        };
        assert_eq!(err.code(), want, "{bytes}");
    }
}

#[test]
fn error_message_may_exceed_what_a_sender_writes() {
    // A receiver takes any message length; a sender cuts its own at 256 bytes.
    let msg = vec![b'x'; 300];
    let mut bytes = hex("0b 00 0000 0000012e 0000000000000000 0001");
    bytes.extend_from_slice(&msg);
    let (frame, _) = decode(&bytes, MAX).unwrap().unwrap();
    let Frame::Error(e) = frame else {
        panic!("not ERROR: {frame:?}")
    };
    assert_eq!(e.message.len(), 300);
    let mut out = Vec::new();
    frame.encode(&mut out);
    assert_eq!(out.len(), HEADER_LEN + 2 + 256);
    assert_eq!(&out[4..8], &[0, 0, 0x01, 0x02]);
}

#[test]
fn two_frames_back_to_back() {
    let bytes = hex("07 00 0000 00000000 0000000000000001
                     09 00 0000 00000001 0000000000000000 64");
    let (first, used) = decode(&bytes, MAX).unwrap().unwrap();
    assert_eq!(first, Frame::Ping(Ping { opaque: 1 }));
    let (second, used2) = decode(&bytes[used..], MAX).unwrap().unwrap();
    assert_eq!(second, Frame::Ready(Ready { capacity: 100 }));
    assert_eq!(used + used2, bytes.len());
}

// ---- protocol.md itself ----

#[test]
fn every_hex_example_in_protocol_md_is_checked_here() {
    // Every code block of protocol.md made only of hex digits and spaces is a frame example;
    // each must appear (as bytes) among this file's vectors, so the spec and the tests cannot
    // drift apart.
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.md"))
        .expect("protocol.md at the repository root");
    let this = include_str!("vectors.rs");
    let ours: Vec<Vec<u8>> = this
        .split('"')
        .filter(|s| {
            let t = s.trim();
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
        })
        .filter(|s| s.split_whitespace().count() > 1)
        .map(hex)
        .collect();
    let mut kinds = std::collections::BTreeSet::new();
    let mut examples = 0;
    for block in spec.split("```text\n").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        let is_hex = !block.trim().is_empty()
            && block
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
        if !is_hex {
            continue;
        }
        let bytes = hex(block);
        let mut at = 0;
        while at < bytes.len() {
            let (frame, used) = decode(&bytes[at..], MAX)
                .expect("example decodes")
                .expect("example is whole frames");
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(out, bytes[at..at + used], "example re-encodes: {frame:?}");
            assert!(
                ours.iter().any(|v| *v == bytes[at..at + used]),
                "protocol.md example not in tests/vectors.rs: {frame:?}"
            );
            kinds.insert(frame.kind());
            examples += 1;
            at += used;
        }
    }
    assert_eq!(kinds.len(), 11, "an example for every kind: {kinds:?}");
    assert!(examples >= 18, "{examples} examples");
}
