//! The Variable Byte Integer (v5 1.5.5, 3.1.1 2.2.3): 7 bits per byte, low
//! group first, the top bit set on every byte but the last, at most 4 bytes.
//!
//! Used for the Remaining Length, property lengths, property identifiers and
//! the Subscription Identifier.

/// The largest value four bytes can carry (v5 1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Why a Variable Byte Integer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The slice ended before the last byte (top bit clear) arrived.
    Incomplete,
    /// A fifth byte would be needed.
    TooLong,
    /// A longer encoding than necessary, e.g. `0x80 0x00` for 0 (`[MQTT-1.5.5-1]`).
    NotMinimal,
}

/// Reads one Variable Byte Integer from the front of `bytes`, returning the
/// value and how many bytes it took. Never reads past `bytes`.
pub(crate) fn read(bytes: &[u8]) -> Result<(u32, usize), VarintError> {
    let mut value: u32 = 0;
    for (index, byte) in bytes.iter().copied().take(4).enumerate() {
        // index < 4, so the shift is at most 21 and the value stays below 2^28.
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            let used = index + 1;
            if used > 1 && byte == 0 {
                return Err(VarintError::NotMinimal);
            }
            return Ok((value, used));
        }
    }
    if bytes.len() >= 4 {
        Err(VarintError::TooLong)
    } else {
        Err(VarintError::Incomplete)
    }
}

/// How many bytes `value` takes on the wire; `None` above [`VARINT_MAX`].
pub(crate) fn len(value: u32) -> Option<usize> {
    match value {
        0..=127 => Some(1),
        128..=16_383 => Some(2),
        16_384..=2_097_151 => Some(3),
        2_097_152..=VARINT_MAX => Some(4),
        _ => None,
    }
}

/// The encoded bytes of `value` (must be at most [`VARINT_MAX`], which callers
/// check with [`len`] first) and how many of the four are used.
pub(crate) fn encode(value: u32) -> ([u8; 4], usize) {
    let mut out = [0u8; 4];
    let mut rest = value;
    let mut used = 0;
    for slot in out.iter_mut() {
        let mut byte = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest > 0 {
            byte |= 0x80;
        }
        *slot = byte;
        used += 1;
        if rest == 0 {
            break;
        }
    }
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_round_trip() {
        // The boundary values of v5 table 1-1.
        for (value, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let (encoded, used) = encode(value);
            assert_eq!(&encoded[..used], bytes);
            assert_eq!(len(value), Some(used));
            assert_eq!(read(bytes), Ok((value, used)));
        }
        assert_eq!(len(VARINT_MAX + 1), None);
    }

    #[test]
    fn five_bytes_are_too_long() {
        assert_eq!(
            read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(VarintError::TooLong)
        );
        assert_eq!(read(&[0x80, 0x80, 0x80, 0x80]), Err(VarintError::TooLong));
    }

    #[test]
    fn incomplete_and_not_minimal() {
        assert_eq!(read(&[]), Err(VarintError::Incomplete));
        assert_eq!(read(&[0x80, 0x80]), Err(VarintError::Incomplete));
        // [MQTT-1.5.5-1]
        assert_eq!(read(&[0x80, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(read(&[0xFF, 0x80, 0x00]), Err(VarintError::NotMinimal));
    }
}
