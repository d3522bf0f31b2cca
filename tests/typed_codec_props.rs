//! The default codec is postcard's wire format: its encoder (our own, `src/service/encode.rs`)
//! writes exactly `postcard::to_allocvec`'s bytes for generated values of every serde shape;
//! its decoding (postcard's, with the schema-evolution padding of `codec.rs`) reads them back,
//! and on arbitrary or truncated bytes fails where postcard fails (an older schema's shorter
//! message aside, read with its missing trailing fields as zero), never panicking.

use std::collections::BTreeMap;

use gracerpc::service::{Codec, Postcard};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Newtype(u32);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    One(i64),
    Pair(u16, String),
    Named { a: Option<u8>, b: Vec<i32> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ints {
    a: i8,
    b: i16,
    c: i32,
    d: i64,
    e: i128,
    f: u8,
    g: u16,
    h: u32,
    i: u64,
    j: u128,
    k: usize,
    l: isize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Everything {
    ints: Ints,
    flag: bool,
    x: f32,
    y: f64,
    ch: char,
    text: String,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    digest: [u8; 32],
    maybe: Option<Newtype>,
    list: Vec<Shape>,
    map: BTreeMap<String, u16>,
    pair: (u8, i64, Unit),
}

fn ints() -> impl Strategy<Value = Ints> {
    (
        (
            any::<i8>(),
            any::<i16>(),
            any::<i32>(),
            any::<i64>(),
            any::<i128>(),
            any::<u8>(),
        ),
        (
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            any::<u128>(),
            any::<usize>(),
            any::<isize>(),
        ),
    )
        .prop_map(|((a, b, c, d, e, f), (g, h, i, j, k, l))| Ints {
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            k,
            l,
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        any::<i64>().prop_map(Shape::One),
        (any::<u16>(), ".{0,20}").prop_map(|(n, s)| Shape::Pair(n, s)),
        (
            any::<Option<u8>>(),
            prop::collection::vec(any::<i32>(), 0..5)
        )
            .prop_map(|(a, b)| Shape::Named { a, b }),
    ]
}

fn everything() -> impl Strategy<Value = Everything> {
    (
        (
            ints(),
            any::<bool>(),
            any::<f32>(),
            any::<f64>(),
            any::<char>(),
            ".{0,40}",
        ),
        (
            prop::collection::vec(any::<u8>(), 0..300),
            any::<[u8; 32]>(),
            any::<Option<u32>>(),
            prop::collection::vec(shape(), 0..6),
            prop::collection::btree_map(".{0,8}", any::<u16>(), 0..5),
            (any::<u8>(), any::<i64>()),
        ),
    )
        .prop_map(
            |((ints, flag, x, y, ch, text), (blob, digest, maybe, list, map, (p0, p1)))| {
                Everything {
                    ints,
                    flag,
                    x,
                    y,
                    ch,
                    text,
                    blob,
                    digest,
                    maybe: maybe.map(Newtype),
                    list,
                    map,
                    pair: (p0, p1, Unit),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encodes_exactly_as_postcard(v in everything(), prefix in prop::collection::vec(any::<u8>(), 0..4)) {
        let expected = postcard::to_allocvec(&v).expect("postcard encodes");
        // The codec appends: whatever is already in the buffer stays.
        let mut got = prefix.clone();
        Postcard::encode(&v, &mut got).expect("encodes");
        prop_assert_eq!(&got[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&got[prefix.len()..], &expected[..]);
        let back: Everything = postcard::from_bytes(&got[prefix.len()..]).expect("decodes");
        // NaN != NaN: compare the bits of the floats, the rest as values.
        prop_assert_eq!(back.x.to_bits(), v.x.to_bits());
        prop_assert_eq!(back.y.to_bits(), v.y.to_bits());
        prop_assert_eq!(back.ints, v.ints);
        prop_assert_eq!(back.list, v.list);
    }

    #[test]
    fn every_varint_width(n in any::<u64>(), shift in 0u32..64) {
        let v = n >> shift;
        let mut got = Vec::new();
        Postcard::encode(&(v, v as i64, v as u32, v as i32, v as u16, v as i16), &mut got).unwrap();
        let expected = postcard::to_allocvec(&(v, v as i64, v as u32, v as i32, v as u16, v as i16)).unwrap();
        prop_assert_eq!(got, expected);
    }
}

/// Floats compared by their bits (NaN != NaN).
fn same(a: &Everything, b: &Everything) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    let bits = (a.x.to_bits(), a.y.to_bits()) == (b.x.to_bits(), b.y.to_bits());
    (a.x, a.y, b.x, b.y) = (0.0, 0.0, 0.0, 0.0);
    bits && a == b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decodes_exactly_as_postcard(v in everything(), extra in prop::collection::vec(any::<u8>(), 0..4)) {
        let mut bytes = postcard::to_allocvec(&v).expect("postcard encodes");
        // Bytes after the value are ignored, by both.
        bytes.extend_from_slice(&extra);
        let ours: Everything = Postcard::decode(&bytes).expect("decodes");
        prop_assert!(same(&ours, &v), "{ours:?} != {v:?}");
    }

    #[test]
    fn arbitrary_bytes_fail_where_postcard_fails(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let theirs = postcard::from_bytes::<Everything>(&bytes);
        let ours = Postcard::decode::<Everything>(&bytes);
        match (&theirs, &ours) {
            (Ok(t), Ok(o)) => prop_assert!(same(t, o)),
            (Err(_), Err(_)) => {}
            // A message that ends early reads as an older schema's (zero padding).
            (Err(postcard::Error::DeserializeUnexpectedEnd), Ok(_)) => {}
            _ => prop_assert!(false, "postcard {theirs:?}, ours {ours:?}"),
        }
    }

    #[test]
    fn every_truncation_of_a_value_is_read_or_refused_never_a_panic(v in everything(), cut in any::<prop::sample::Index>()) {
        let bytes = postcard::to_allocvec(&v).unwrap();
        let n = cut.index(bytes.len() + 1);
        let _ = Postcard::decode::<Everything>(&bytes[..n]);
        // Primitive shapes too.
        let _ = Postcard::decode::<(u16, i32, u64, i128, char, String)>(&bytes[..n]);
        let _ = Postcard::decode::<Vec<Option<Shape>>>(&bytes[..n]);
    }

    #[test]
    fn varint_limits_as_postcard(bytes in prop::collection::vec(prop_oneof![Just(0x80u8), Just(0xFFu8), Just(0x01u8), Just(0x03u8), Just(0x0Fu8), any::<u8>()], 1..24)) {
        macro_rules! same_as_postcard {
            ($t:ty) => {{
                let theirs = postcard::from_bytes::<$t>(&bytes).ok();
                let ours = gracerpc_decode_strict::<$t>(&bytes);
                prop_assert_eq!(theirs, ours, "{}", stringify!($t));
            }};
        }
        same_as_postcard!(u16);
        same_as_postcard!(u32);
        same_as_postcard!(u64);
        same_as_postcard!(u128);
        same_as_postcard!(i16);
        same_as_postcard!(i64);
        same_as_postcard!(i128);
        same_as_postcard!(bool);
        same_as_postcard!(Option<u8>);
        same_as_postcard!(char);
    }
}

/// Our decoder without the padding retry: bytes that end early are refused, as by postcard.
fn gracerpc_decode_strict<T: serde::de::DeserializeOwned + PartialEq>(bytes: &[u8]) -> Option<T> {
    // A message postcard finds complete decodes the same with or without padding; one that
    // ends early is the only case the retry changes, and it is compared against `None` here by
    // checking that the unpadded prefix alone is complete: decode with a poisoned tail.
    let mut poisoned = bytes.to_vec();
    poisoned.extend_from_slice(&[0xFF; 32]);
    let padded: Option<T> = Postcard::decode(&poisoned).ok();
    let plain: Option<T> = Postcard::decode(bytes).ok();
    // Complete within `bytes`: the tail does not matter, both agree.
    if padded.is_some() && padded == plain {
        plain
    } else {
        None
    }
}

/// A sequence of unknown length is an error (as with postcard), never a panic.
#[test]
fn unknown_length_is_an_error() {
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(None)?;
            seq.serialize_element(&1u8)?;
            seq.end()
        }
    }
    assert!(postcard::to_allocvec(&Unsized).is_err());
    assert!(Postcard::encode(&Unsized, &mut Vec::new()).is_err());
}
