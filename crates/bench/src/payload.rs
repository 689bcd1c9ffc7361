//! The header every benchmark message carries at the start of its payload.
//!
//! All clients of a run live in this one process, so one monotonic `Instant`
//! (the run's base) serves every clock: a publisher stamps the time since the
//! base, the receiver subtracts it from its own time since the same base, and
//! the difference is the end-to-end latency with no clock synchronisation.
//!
//! Layout, big-endian, 16 bytes so that the smallest benchmark payload (16 B,
//! the customary MQTT comparison) is the header alone:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | publisher id (index of the publishing client in this run) |
//! | 4..8 | sequence number, per publisher, from 0 |
//! | 8..16 | send time, nanoseconds since the run's base |
//!
//! The rest of the payload, up to the requested size, is padding that is
//! built once per run and copied, never generated per message.

/// Bytes of header at the start of every payload; also the smallest payload.
pub(crate) const HEADER_LEN: usize = 16;

/// What a receiver needs to account for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) publisher: u32,
    pub(crate) sequence: u32,
    /// Nanoseconds since the run's base `Instant`.
    pub(crate) sent_ns: u64,
}

impl Header {
    /// The header's wire form.
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        let (publisher, rest) = bytes.split_at_mut(4);
        let (sequence, sent) = rest.split_at_mut(4);
        publisher.copy_from_slice(&self.publisher.to_be_bytes());
        sequence.copy_from_slice(&self.sequence.to_be_bytes());
        sent.copy_from_slice(&self.sent_ns.to_be_bytes());
        bytes
    }

    /// Reads the header from the start of a payload; `None` when the payload
    /// is too short to hold one (a message that is not ours).
    pub(crate) fn parse(payload: &[u8]) -> Option<Header> {
        let publisher = payload.get(0..4)?.try_into().ok()?;
        let sequence = payload.get(4..8)?.try_into().ok()?;
        let sent = payload.get(8..16)?.try_into().ok()?;
        Some(Header {
            publisher: u32::from_be_bytes(publisher),
            sequence: u32::from_be_bytes(sequence),
            sent_ns: u64::from_be_bytes(sent),
        })
    }
}

/// The padding after the header for a payload of `payload_size` bytes: a
/// recognisable, incompressible-enough pattern rather than zeros, so a broker
/// or link that compresses does not flatter itself.
pub(crate) fn padding(payload_size: usize) -> Vec<u8> {
    (0..payload_size.saturating_sub(HEADER_LEN))
        .map(|index| (index % 251) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            publisher: 0x0102_0304,
            sequence: u32::MAX,
            sent_ns: 0x0A0B_0C0D_0E0F_1011,
        };
        let bytes = header.to_bytes();
        assert_eq!(
            bytes,
            [1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11]
        );
        assert_eq!(Header::parse(&bytes), Some(header));
    }

    #[test]
    fn header_ignores_padding_after_it() {
        let header = Header {
            publisher: 7,
            sequence: 9,
            sent_ns: 123_456_789,
        };
        let mut payload = header.to_bytes().to_vec();
        payload.extend_from_slice(&padding(1024));
        assert_eq!(payload.len(), 16 + 1008);
        assert_eq!(Header::parse(&payload), Some(header));
    }

    #[test]
    fn short_payload_has_no_header() {
        assert_eq!(Header::parse(&[]), None);
        assert_eq!(Header::parse(&[0; HEADER_LEN - 1]), None);
        assert!(Header::parse(&[0; HEADER_LEN]).is_some());
    }

    #[test]
    fn padding_fills_up_to_the_size() {
        assert!(padding(0).is_empty());
        assert!(padding(HEADER_LEN).is_empty());
        assert_eq!(padding(HEADER_LEN + 300).len(), 300);
    }
}
