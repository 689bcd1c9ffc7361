//! Checked readers over one packet's body.
//!
//! Every read checks `remaining()` first, so running off the end is an
//! [`DecodeError::UnexpectedEnd`] and never a panic. Binary fields are
//! zero-copy slices of the packet's `Bytes`; strings are validated and copied
//! (at most 65,535 bytes each, and never more than the packet holds).

use bytes::{Buf, Bytes};

use crate::varint::{self, VarintError};
use crate::DecodeError;

/// A cursor over the bytes after the fixed header of one packet (or over one
/// property block inside it).
pub(crate) struct Reader {
    bytes: Bytes,
    /// The packet's name, for error messages.
    packet: &'static str,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes, packet: &'static str) -> Reader {
        Reader { bytes, packet }
    }

    pub(crate) fn packet(&self) -> &'static str {
        self.packet
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn need(&self, count: usize) -> Result<(), DecodeError> {
        if self.bytes.remaining() < count {
            Err(DecodeError::UnexpectedEnd {
                packet: self.packet,
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.bytes.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.bytes.get_u32())
    }

    /// A Variable Byte Integer; `what` names it in errors.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match varint::read(&self.bytes) {
            Ok((value, used)) => {
                self.bytes.advance(used);
                Ok(value)
            }
            Err(VarintError::Incomplete) => Err(DecodeError::UnexpectedEnd {
                packet: self.packet,
            }),
            Err(VarintError::TooLong) => Err(DecodeError::VariableByteIntegerTooLong { what }),
            Err(VarintError::NotMinimal) => {
                Err(DecodeError::VariableByteIntegerNotMinimal { what })
            }
        }
    }

    /// The next `count` bytes, zero-copy.
    pub(crate) fn take(&mut self, count: usize) -> Result<Bytes, DecodeError> {
        self.need(count)?;
        Ok(self.bytes.split_to(count))
    }

    /// Everything left, zero-copy (the PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.bytes)
    }

    /// Binary Data (1.5.6): a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let length = self.u16()?;
        self.take(usize::from(length))
    }

    /// A UTF-8 Encoded String (1.5.4): well-formed UTF-8 (which excludes the
    /// surrogates U+D800..U+DFFF) and no U+0000.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8 {
            packet: self.packet,
        })?;
        if text.contains('\0') {
            return Err(DecodeError::NullCharacter {
                packet: self.packet,
            });
        }
        Ok(text.to_owned())
    }

    /// A nested reader over the next `count` bytes (a property block).
    pub(crate) fn sub(&mut self, count: usize) -> Result<Reader, DecodeError> {
        let bytes = self.take(count)?;
        Ok(Reader::new(bytes, self.packet))
    }

    /// Fails if anything is left: the remaining length promised less content
    /// than the packet holds.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors() {
        let mut reader = Reader::new(Bytes::from_static(&[0x01]), "TEST");
        assert_eq!(
            reader.u16(),
            Err(DecodeError::UnexpectedEnd { packet: "TEST" })
        );
        assert_eq!(reader.u8(), Ok(1));
        assert!(reader.u8().is_err());
        assert!(reader.u32().is_err());
        assert!(reader.take(1).is_err());
        assert!(reader.binary().is_err());
    }

    #[test]
    fn string_checks() {
        // [MQTT-1.5.4-1]: 0xC0 0x80 is an overlong encoding, and ED A0 80 a surrogate.
        for bad in [
            &[0x00, 0x02, 0xC0, 0x80][..],
            &[0x00, 0x03, 0xED, 0xA0, 0x80],
        ] {
            let mut reader = Reader::new(Bytes::copy_from_slice(bad), "TEST");
            assert_eq!(
                reader.string(),
                Err(DecodeError::InvalidUtf8 { packet: "TEST" })
            );
        }
        // [MQTT-1.5.4-2]
        let mut reader = Reader::new(Bytes::from_static(&[0x00, 0x02, b'a', 0x00]), "TEST");
        assert_eq!(
            reader.string(),
            Err(DecodeError::NullCharacter { packet: "TEST" })
        );
        // The string length runs past the end.
        let mut reader = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']), "TEST");
        assert!(matches!(
            reader.string(),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
        let mut reader = Reader::new(Bytes::from_static(&[0x00, 0x02, 0xC3, 0xA9]), "TEST");
        assert_eq!(reader.string().as_deref(), Ok("é"));
        assert!(reader.finish().is_ok());
    }
}
