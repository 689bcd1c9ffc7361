//! Byte layouts on disk: batches (the unit of commit), segment and snapshot
//! file names, the snapshot header and footer. The crate docs describe the
//! layout for readers; this module is the one place that writes and parses it.

use std::path::Path;

use crate::error::RecordError;
use crate::record::Record;

/// Marks the start of a batch: "SBLB" (Switchboard log batch).
pub(crate) const BATCH_MAGIC: [u8; 4] = *b"SBLB";
/// The batch framing version written by this build.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// magic 4, version 1, reserved 3, first sequence 8, count 4, body length 4, crc 4.
pub(crate) const BATCH_HEADER_LEN: usize = 28;
/// The bytes of the header covered by the checksum before the body (all but
/// the checksum itself).
const CHECKSUMMED_HEADER_LEN: usize = 24;
/// Each record in a batch body is preceded by its length (u32 little endian).
pub(crate) const RECORD_LENGTH_LEN: usize = 4;

/// Marks the start of a snapshot file: "SBSN".
pub(crate) const SNAPSHOT_MAGIC: [u8; 4] = *b"SBSN";
/// magic 4, version 1, reserved 3, base sequence 8, crc 4.
pub(crate) const SNAPSHOT_HEADER_LEN: usize = 20;
/// Marks a snapshot's footer: "SBSE".
pub(crate) const SNAPSHOT_FOOTER_MAGIC: [u8; 4] = *b"SBSE";
/// magic 4, record count 8, batch count 8, crc 4.
pub(crate) const SNAPSHOT_FOOTER_LEN: usize = 24;

/// `log/<first sequence, 20 digits>.seg`: names sort in sequence order.
pub(crate) fn segment_name(first_sequence: u64) -> String {
    format!("{first_sequence:020}.seg")
}

/// The first sequence number a segment file name stands for.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    parse_digits(digits)
}

/// `snapshot-<base sequence, 20 digits>.snap`.
pub(crate) fn snapshot_name(base_sequence: u64) -> String {
    format!("snapshot-{base_sequence:020}.snap")
}

/// `snapshot-<base sequence, 20 digits>.tmp`: being written.
pub(crate) fn snapshot_temp_name(base_sequence: u64) -> String {
    format!("snapshot-{base_sequence:020}.tmp")
}

pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    parse_digits(digits)
}

pub(crate) fn is_snapshot_temp_name(name: &str) -> bool {
    name.strip_prefix("snapshot-")
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .and_then(parse_digits)
        .is_some()
}

fn parse_digits(digits: &str) -> Option<u64> {
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name (not the whole path) for logs and damage reports.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Appends a whole batch: header, then `body` (records already framed with
/// [`frame_record`]). The checksum covers the first 24 header bytes and the body.
pub(crate) fn put_batch(out: &mut Vec<u8>, first_sequence: u64, count: u32, body: &[&[u8]]) {
    let body_len: usize = body.iter().map(|part| part.len()).sum();
    let start = out.len();
    out.extend_from_slice(&BATCH_MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&first_sequence.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    // The caller keeps a batch below u32::MAX bytes (`MAX_BATCH_BODY`).
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let mut crc = crc32c::crc32c(out.get(start..).unwrap_or_default());
    for part in body {
        crc = crc32c::crc32c_append(crc, part);
    }
    out.extend_from_slice(&crc.to_le_bytes());
    for part in body {
        out.extend_from_slice(part);
    }
}

/// The largest batch body: the length field is a u32.
pub(crate) const MAX_BATCH_BODY: usize = u32::MAX as usize - BATCH_HEADER_LEN;

/// Appends one record framed for a batch body: length (u32 LE), then bytes.
pub(crate) fn frame_record(out: &mut bytes::BytesMut, record: &Record) {
    use bytes::BufMut;
    let length_at = out.len();
    out.put_u32_le(0);
    record.encode(out);
    let length = (out.len() - length_at - RECORD_LENGTH_LEN) as u32;
    if let Some(slot) = out.get_mut(length_at..length_at + RECORD_LENGTH_LEN) {
        slot.copy_from_slice(&length.to_le_bytes());
    }
}

/// A batch whose header and checksum are valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchView<'a> {
    pub(crate) first_sequence: u64,
    pub(crate) count: u32,
    pub(crate) body: &'a [u8],
    /// Header plus body.
    pub(crate) total_len: usize,
}

impl BatchView<'_> {
    /// The sequence number of the batch's last record (`first - 1` if empty).
    pub(crate) fn last_sequence(&self) -> u64 {
        (self.first_sequence + u64::from(self.count)).saturating_sub(1)
    }

    /// Decodes the records. A batch with a valid checksum whose records do
    /// not decode was written by a bug (or an incompatible build): it is
    /// treated as damage by the caller.
    pub(crate) fn records(&self) -> Result<Vec<Record>, RecordError> {
        let mut records = Vec::with_capacity((self.count as usize).min(self.body.len() / 2));
        let mut rest = self.body;
        for _ in 0..self.count {
            let (length, after) = split_u32(rest).ok_or(RecordError::UnexpectedEnd {
                field: "record length",
            })?;
            let length = length as usize;
            if length > after.len() {
                return Err(RecordError::UnexpectedEnd { field: "record" });
            }
            let (record, after) = after.split_at(length);
            records.push(Record::decode(record)?);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(RecordError::TrailingBytes { count: rest.len() });
        }
        Ok(records)
    }
}

/// What is at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    Batch(BatchView<'a>),
    /// Not a valid batch: wrong magic or version, a length past the end of
    /// the buffer (torn), or a bad checksum.
    Invalid,
}

fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

/// The header fields if `bytes` starts with a plausible header whose body
/// fits in `bytes`.
fn header(bytes: &[u8]) -> Option<(u64, u32, usize, u32)> {
    let (magic, rest) = bytes.split_first_chunk::<4>()?;
    if *magic != BATCH_MAGIC {
        return None;
    }
    let (version, rest) = rest.split_first()?;
    let (reserved, rest) = rest.split_first_chunk::<3>()?;
    if *version != FORMAT_VERSION || *reserved != [0, 0, 0] {
        return None;
    }
    let (first_sequence, rest) = split_u64(rest)?;
    let (count, rest) = split_u32(rest)?;
    let (body_len, rest) = split_u32(rest)?;
    let (crc, rest) = split_u32(rest)?;
    let body_len = body_len as usize;
    // Each record takes at least its 4-byte length.
    if body_len > rest.len() || (count as usize).saturating_mul(RECORD_LENGTH_LEN) > body_len {
        return None;
    }
    Some((first_sequence, count, body_len, crc))
}

/// Parses the batch at the start of `bytes`, verifying its checksum.
pub(crate) fn parse_batch(bytes: &[u8]) -> Parsed<'_> {
    let Some((first_sequence, count, body_len, crc)) = header(bytes) else {
        return Parsed::Invalid;
    };
    let total_len = BATCH_HEADER_LEN + body_len;
    let (Some(checksummed), Some(body)) = (
        bytes.get(..CHECKSUMMED_HEADER_LEN),
        bytes.get(BATCH_HEADER_LEN..total_len),
    ) else {
        return Parsed::Invalid;
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(checksummed), body);
    if actual != crc {
        return Parsed::Invalid;
    }
    Parsed::Batch(BatchView {
        first_sequence,
        count,
        body,
        total_len,
    })
}

/// The offset of the next valid batch at or after `from`, scanning for the
/// magic and verifying each candidate's checksum.
pub(crate) fn find_next_batch(bytes: &[u8], from: usize) -> Option<usize> {
    let mut position = from;
    while let Some(window) = bytes.get(position..) {
        let found = window
            .windows(BATCH_MAGIC.len())
            .position(|candidate| candidate == BATCH_MAGIC)?;
        let candidate = position + found;
        if let Parsed::Batch(_) = parse_batch(bytes.get(candidate..).unwrap_or_default()) {
            return Some(candidate);
        }
        position = candidate + 1;
    }
    None
}

/// The snapshot file header: magic, version, reserved, base sequence, crc32c
/// of the 16 bytes before it.
pub(crate) fn snapshot_header(base_sequence: u64) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    let mut fields = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
    fields.extend_from_slice(&SNAPSHOT_MAGIC);
    fields.push(FORMAT_VERSION);
    fields.extend_from_slice(&[0, 0, 0]);
    fields.extend_from_slice(&base_sequence.to_le_bytes());
    let crc = crc32c::crc32c(&fields);
    fields.extend_from_slice(&crc.to_le_bytes());
    header.copy_from_slice(&fields);
    header
}

/// The base sequence if `bytes` is a valid snapshot header.
pub(crate) fn parse_snapshot_header(bytes: &[u8]) -> Option<u64> {
    let (fields, rest) = bytes.split_first_chunk::<16>()?;
    let (crc, _) = split_u32(rest)?;
    if crc32c::crc32c(fields) != crc {
        return None;
    }
    let (magic, rest) = fields.split_first_chunk::<4>()?;
    let (version, rest) = rest.split_first()?;
    let (reserved, rest) = rest.split_first_chunk::<3>()?;
    if *magic != SNAPSHOT_MAGIC || *version != FORMAT_VERSION || *reserved != [0, 0, 0] {
        return None;
    }
    split_u64(rest).map(|(base, _)| base)
}

/// The snapshot footer: magic, record count, batch count, crc32c of the 20
/// bytes before it. It must be the last bytes of the file: a snapshot without
/// it is incomplete.
pub(crate) fn snapshot_footer(records: u64, batches: u64) -> [u8; SNAPSHOT_FOOTER_LEN] {
    let mut footer = [0u8; SNAPSHOT_FOOTER_LEN];
    let mut fields = Vec::with_capacity(SNAPSHOT_FOOTER_LEN);
    fields.extend_from_slice(&SNAPSHOT_FOOTER_MAGIC);
    fields.extend_from_slice(&records.to_le_bytes());
    fields.extend_from_slice(&batches.to_le_bytes());
    let crc = crc32c::crc32c(&fields);
    fields.extend_from_slice(&crc.to_le_bytes());
    footer.copy_from_slice(&fields);
    footer
}

/// (records, batches) if `bytes` is a valid footer.
pub(crate) fn parse_snapshot_footer(bytes: &[u8]) -> Option<(u64, u64)> {
    let (fields, rest) = bytes.split_first_chunk::<20>()?;
    let (crc, _) = split_u32(rest)?;
    if crc32c::crc32c(fields) != crc {
        return None;
    }
    let (magic, rest) = fields.split_first_chunk::<4>()?;
    if *magic != SNAPSHOT_FOOTER_MAGIC {
        return None;
    }
    let (records, rest) = split_u64(rest)?;
    let (batches, _) = split_u64(rest)?;
    Some((records, batches))
}

/// Reads the 4-byte magic of what comes next in a snapshot.
pub(crate) fn starts_with(bytes: &[u8], magic: &[u8; 4]) -> bool {
    bytes.get(..4) == Some(magic.as_slice())
}

/// The body length of a batch header (valid magic and version assumed
/// checked later by [`parse_batch`]), so a reader can fetch the body.
pub(crate) fn batch_body_len(header: &[u8]) -> Option<usize> {
    let lengths = header.get(20..24)?;
    let (body_len, _) = split_u32(lengths)?;
    Some(body_len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn batch(first: u64, records: &[Record]) -> Vec<u8> {
        let mut body = BytesMut::new();
        for record in records {
            frame_record(&mut body, record);
        }
        let mut out = Vec::new();
        put_batch(&mut out, first, records.len() as u32, &[&body]);
        out
    }

    fn end(client: &str) -> Record {
        Record::SessionEnd {
            client_id: client.into(),
        }
    }

    #[test]
    fn a_batch_round_trips_and_its_header_is_28_bytes() {
        let bytes = batch(42, &[end("a"), end("bb")]);
        let Parsed::Batch(view) = parse_batch(&bytes) else {
            panic!("invalid");
        };
        assert_eq!(view.first_sequence, 42);
        assert_eq!(view.last_sequence(), 43);
        assert_eq!(view.total_len, bytes.len());
        assert_eq!(view.records().unwrap(), vec![end("a"), end("bb")]);
        assert_eq!(&bytes[..4], b"SBLB");
        assert_eq!(bytes.len(), BATCH_HEADER_LEN + 2 * 4 + 4 + 5);
    }

    #[test]
    fn any_flipped_bit_or_truncation_invalidates_a_batch() {
        let bytes = batch(7, &[end("client")]);
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[index] ^= 1 << bit;
                assert!(
                    matches!(parse_batch(&damaged), Parsed::Invalid),
                    "flip at {index} bit {bit} went unnoticed"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(matches!(parse_batch(&bytes[..cut]), Parsed::Invalid));
        }
    }

    #[test]
    fn scanning_finds_the_next_valid_batch() {
        let mut bytes = b"garbage SBLB not a batch".to_vec();
        let at = bytes.len();
        bytes.extend(batch(1, &[end("x")]));
        assert_eq!(find_next_batch(&bytes, 0), Some(at));
        assert_eq!(find_next_batch(&bytes, at + 1), None);
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(parse_segment_name(&segment_name(12)), Some(12));
        assert_eq!(
            parse_snapshot_name(&snapshot_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(is_snapshot_temp_name(&snapshot_temp_name(3)));
        assert_eq!(parse_segment_name("12.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000001x.seg"), None);
    }

    #[test]
    fn snapshot_header_and_footer_round_trip() {
        assert_eq!(parse_snapshot_header(&snapshot_header(99)), Some(99));
        assert_eq!(parse_snapshot_footer(&snapshot_footer(5, 2)), Some((5, 2)));
        let mut header = snapshot_header(99);
        header[10] ^= 1;
        assert_eq!(parse_snapshot_header(&header), None);
    }
}
