//! Where the encoder writes: either a real buffer or a byte counter.
//!
//! The encoder runs the same code twice, first into a [`Counter`] to learn the
//! exact remaining length (which precedes the body on the wire), then into the
//! `BytesMut`. So `encoded_len` and `encode` cannot disagree, every check
//! fails before a single byte is written, and nothing is copied twice.

use bytes::{BufMut, BytesMut};

use crate::varint;
use crate::EncodeError;

/// A destination for encoded bytes.
pub(crate) trait Sink {
    fn put_u8(&mut self, value: u8);
    fn put_u16(&mut self, value: u16);
    fn put_u32(&mut self, value: u32);
    fn put_slice(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put_u8(&mut self, value: u8) {
        BufMut::put_u8(self, value);
    }
    fn put_u16(&mut self, value: u16) {
        BufMut::put_u16(self, value);
    }
    fn put_u32(&mut self, value: u32) {
        BufMut::put_u32(self, value);
    }
    fn put_slice(&mut self, bytes: &[u8]) {
        BufMut::put_slice(self, bytes);
    }
}

/// Counts the bytes that would be written.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    /// Bytes "written" so far; saturating, so an absurd packet cannot wrap.
    pub(crate) len: usize,
}

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.len = self.len.saturating_add(1);
    }
    fn put_u16(&mut self, _: u16) {
        self.len = self.len.saturating_add(2);
    }
    fn put_u32(&mut self, _: u32) {
        self.len = self.len.saturating_add(4);
    }
    fn put_slice(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len());
    }
}

/// Writes a Variable Byte Integer; values over 268,435,455 cannot be encoded.
pub(crate) fn put_varint<S: Sink>(
    sink: &mut S,
    value: u32,
    packet: &'static str,
) -> Result<(), EncodeError> {
    if varint::len(value).is_none() {
        return Err(EncodeError::PacketTooLarge { packet });
    }
    let (bytes, used) = varint::encode(value);
    sink.put_slice(bytes.get(..used).unwrap_or(&bytes));
    Ok(())
}

/// Writes Binary Data: a two-byte length and the bytes.
pub(crate) fn put_binary<S: Sink>(
    sink: &mut S,
    bytes: &[u8],
    packet: &'static str,
) -> Result<(), EncodeError> {
    let length = u16::try_from(bytes.len()).map_err(|_| EncodeError::BinaryTooLong { packet })?;
    sink.put_u16(length);
    sink.put_slice(bytes);
    Ok(())
}

/// Writes a UTF-8 Encoded String. Rust strings are always well-formed UTF-8;
/// U+0000 is refused because the receiver must treat it as malformed
/// ([MQTT-1.5.4-2]).
pub(crate) fn put_string<S: Sink>(
    sink: &mut S,
    text: &str,
    packet: &'static str,
) -> Result<(), EncodeError> {
    let length = u16::try_from(text.len()).map_err(|_| EncodeError::StringTooLong { packet })?;
    if text.contains('\0') {
        return Err(EncodeError::NullCharacter { packet });
    }
    sink.put_u16(length);
    sink.put_slice(text.as_bytes());
    Ok(())
}
