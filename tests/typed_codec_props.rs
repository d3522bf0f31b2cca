//! The default codec's encoder (our own, `src/service/encode.rs`) writes exactly postcard's
//! bytes: compared with `postcard::to_allocvec` on generated values of every serde shape, and
//! decoded back by postcard.

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
