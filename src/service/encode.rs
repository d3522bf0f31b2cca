//! The postcard encoder of the default codec: postcard's wire format (the stable "postcard
//! 1.0" specification), written straight into a `Vec` by a serde `Serializer` of our own.
//!
//! Why not postcard's: its serializer writes each varint into a zeroed 10-byte array, then
//! hands the slice to an output "flavor" one call and one `Result` at a time. For the typed-call
//! benchmark's struct (four integers and a 32-byte field, encoded twice per call) that was most
//! of the instructions a typed call spends beyond a bytes call. This one writes one-byte
//! varints with a single push and inlines every field. Decoding stays postcard's own.
//!
//! The output is byte-for-byte postcard's: `tests/codec_props.rs` compares the two on
//! generated values of every serde shape.

use std::fmt;

use serde::Serialize;
use serde::ser;

/// Why a value does not encode (only a sequence or map of unknown length, a failing
/// `Display`, or the value's own `Serialize` error).
#[derive(Debug)]
pub(crate) struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, EncodeError>;

/// Appends `value`'s postcard encoding to `out`.
#[inline]
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result {
    value.serialize(&mut Encoder { out })
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn varint_long(&mut self, mut v: u128) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// A tuple or struct variant: its index, then its fields (written by the caller).
    #[inline]
    fn variant(&mut self, index: u32) -> Result<&mut Self> {
        self.varint(index as u64);
        Ok(self)
    }
}

fn unknown_length() -> EncodeError {
    EncodeError("a sequence or map of unknown length does not encode".into())
}

impl<'a> ser::Serializer for &mut Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.out.push(v as u8);
        Ok(())
    }

    #[inline]
    fn serialize_i8(self, v: i8) -> Result {
        self.out.push(v as u8);
        Ok(())
    }

    #[inline]
    fn serialize_i16(self, v: i16) -> Result {
        self.varint(((v << 1) ^ (v >> 15)) as u16 as u64);
        Ok(())
    }

    #[inline]
    fn serialize_i32(self, v: i32) -> Result {
        self.varint(((v << 1) ^ (v >> 31)) as u32 as u64);
        Ok(())
    }

    #[inline]
    fn serialize_i64(self, v: i64) -> Result {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result {
        self.varint_long(((v << 1) ^ (v >> 127)) as u128);
        Ok(())
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> Result {
        self.out.push(v);
        Ok(())
    }

    #[inline]
    fn serialize_u16(self, v: u16) -> Result {
        self.varint(v as u64);
        Ok(())
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> Result {
        self.varint(v as u64);
        Ok(())
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> Result {
        self.varint(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result {
        self.varint_long(v);
        Ok(())
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result {
        self.bytes(v.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result {
        self.bytes(v.as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result {
        self.bytes(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.out.push(0);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.out.push(1);
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result {
        self.varint(index as u64);
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result {
        self.varint(index as u64);
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.varint(len.ok_or_else(unknown_length)? as u64);
        Ok(self)
    }

    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.variant(index)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.varint(len.ok_or_else(unknown_length)? as u64);
        Ok(self)
    }

    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.variant(index)
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result {
        // Rare (types that serialize through `Display`): format, then write as a str.
        self.bytes(value.to_string().as_bytes());
        Ok(())
    }
}

/// Every compound form writes its elements in order, with nothing between or after them.
macro_rules! compound {
    ($($trait:ident, $method:ident $(, $key:ident)?;)*) => {$(
        impl<'a> ser::$trait for &mut Encoder<'a> {
            type Ok = ();
            type Error = EncodeError;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq, serialize_element;
    SerializeTuple, serialize_element;
    SerializeTupleStruct, serialize_field;
    SerializeTupleVariant, serialize_field;
    SerializeStruct, serialize_field, key;
    SerializeStructVariant, serialize_field, key;
}

impl<'a> ser::SerializeMap for &mut Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        key.serialize(&mut **self)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result {
        Ok(())
    }
}
