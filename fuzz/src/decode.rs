//! The decoder checks behind the `decode_server` and `decode_client` fuzz
//! targets, also replayed over the seed corpus by
//! `crates/codec/tests/corpus.rs` on every `cargo test`.
//!
//! For any input bytes, and for each decoder it applies to:
//!
//! 1. Nothing panics.
//! 2. Feeding the bytes in chunks of pseudo-random sizes gives exactly the
//!    same packets and the same final error (or the same "need more bytes")
//!    as feeding them all at once, and every `Ok(None)` leaves the buffer
//!    untouched.
//! 3. Every decoded packet encodes (`encoded_len` is exact, the encoder's
//!    form is never longer than what was read), and its encoding decodes
//!    back to the same packet in a decoder in the same state.
//! 4. The maximum packet size is exact: the packet's own size is accepted,
//!    one byte less is refused with `PacketTooLarge` naming that size.
//! 5. Every error maps to a failure reason code and has a message.
//!
//! The chunk sizes are drawn from a generator seeded by a hash of the input,
//! so that corpus files stay plain wire bytes (usable by any fuzzer) while
//! every mutation also changes the chunking.
//!
//! No `unwrap` and no indexing: this file is also compiled into the
//! workspace's tests, under the workspace lints.

use bytes::BytesMut;
use switchboard_codec::{encode, encoded_len, DecodeError, Decoder, Packet, ProtocolVersion};

/// Large enough for any packet a fuzzer produces; small enough that a header
/// announcing more is refused before anything is buffered.
const MAX_PACKET_SIZE: u32 = 1024 * 1024;

/// Every protocol level a client decoder can be set to.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// The `decode_server` target: a server's decoder, which must see CONNECT
/// first and then speaks that CONNECT's version.
pub fn check_server(data: &[u8]) {
    check(&Decoder::server(MAX_PACKET_SIZE), data);
}

/// The `decode_client` target: a client's decoder for each protocol level.
pub fn check_client(data: &[u8]) {
    for version in VERSIONS {
        check(&Decoder::client(version, MAX_PACKET_SIZE), data);
    }
}

/// How a run of the decoder over some bytes ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<Packet>,
    /// `None`: the decoder asked for more bytes after the last packet.
    error: Option<DecodeError>,
    /// Bytes left in the buffer when the run stopped for more bytes.
    left_over: usize,
}

fn check(decoder: &Decoder, data: &[u8]) {
    let whole = run_whole(decoder.clone(), data);
    let chunked = run_chunked(decoder.clone(), data, hash(data));
    assert_eq!(whole, chunked, "chunked input decodes differently");

    // A small maximum packet size: the same packets up to the first one that
    // does not fit, which is refused from its header.
    let small_max = 2 + (hash(data) % 64) as u32;
    let mut small = decoder.clone();
    small.set_max_packet_size(small_max);
    let limited = run_whole(small, data);
    assert!(limited.packets.len() <= whole.packets.len());
    assert!(
        whole.packets.starts_with(&limited.packets),
        "a smaller maximum packet size changed the packets"
    );
    if limited.packets.len() < whole.packets.len() {
        assert!(
            matches!(limited.error, Some(DecodeError::PacketTooLarge { size, max })
                if size > small_max && max == small_max),
            "a packet was refused but not for its size: {:?}",
            limited.error
        );
    }
}

/// Decodes everything from one buffer, checking each packet.
fn run_whole(mut decoder: Decoder, data: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    let error = drain(&mut decoder, &mut buf, &mut packets);
    Outcome {
        packets,
        left_over: if error.is_some() { 0 } else { buf.len() },
        error,
    }
}

/// Feeds `data` in chunks of pseudo-random sizes, decoding after each.
fn run_chunked(mut decoder: Decoder, data: &[u8], seed: u64) -> Outcome {
    let mut random = XorShift(seed | 1);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let size = random.chunk_size().min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        buf.extend_from_slice(chunk);
        if let Some(error) = drain(&mut decoder, &mut buf, &mut packets) {
            return Outcome {
                packets,
                error: Some(error),
                left_over: 0,
            };
        }
    }
    Outcome {
        packets,
        error: None,
        left_over: buf.len(),
    }
}

/// Calls `decode` until it asks for more bytes (`None`) or fails
/// (`Some(error)`), checking the decoder's contract on the way.
fn drain(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    packets: &mut Vec<Packet>,
) -> Option<DecodeError> {
    loop {
        let before = buf.clone();
        let state_before = decoder.clone();
        match decoder.decode(buf) {
            Ok(None) => {
                assert_eq!(*buf, before, "Ok(None) must leave the buffer untouched");
                return None;
            }
            Err(error) => {
                check_error(&error);
                return Some(error);
            }
            Ok(Some(packet)) => {
                let consumed = before.len() - buf.len();
                let wire = before.get(..consumed).unwrap_or_default();
                check_packet(&state_before, decoder, &packet, wire);
                packets.push(packet);
            }
        }
    }
}

fn check_error(error: &DecodeError) {
    assert!(
        error.reason_code().is_error(),
        "{error:?} maps to a success code"
    );
    assert!(!error.to_string().is_empty());
    let _ = error.connack_version();
}

/// One decoded packet: re-encodes, decodes back to itself, and its size is
/// what the maximum packet size is checked against.
fn check_packet(state_before: &Decoder, state_after: &Decoder, packet: &Packet, wire: &[u8]) {
    assert!(wire.len() >= 2, "a packet is at least two bytes");
    let version = match (packet, state_after.version()) {
        (Packet::Connect(connect), _) => connect.protocol,
        (_, Some(version)) => version,
        (_, None) => panic!(
            "a {} was decoded before the version was known",
            packet.name()
        ),
    };
    if let (Packet::Connect(connect), None) = (packet, state_before.version()) {
        // A server learns its version from the CONNECT.
        assert_eq!(state_after.version(), Some(connect.protocol));
    }

    let mut encoded = BytesMut::new();
    if let Err(error) = encode(packet, version, &mut encoded) {
        panic!("a decoded packet does not encode: {error}: {packet:?}");
    }
    assert_eq!(encoded_len(packet, version), Ok(encoded.len()));
    assert!(
        encoded.len() <= wire.len(),
        "the encoder's form ({} bytes) is longer than what was read ({} bytes)",
        encoded.len(),
        wire.len()
    );
    let mut again = state_before.clone();
    assert_eq!(
        again.decode(&mut encoded),
        Ok(Some(packet.clone())),
        "encode then decode is not the identity"
    );
    assert!(encoded.is_empty());

    // The maximum packet size counts the whole packet, fixed header included.
    let size = u32::try_from(wire.len()).unwrap_or(u32::MAX);
    let mut exact = state_before.clone();
    exact.set_max_packet_size(size);
    assert_eq!(
        exact.decode(&mut BytesMut::from(wire)),
        Ok(Some(packet.clone()))
    );
    let mut short = state_before.clone();
    short.set_max_packet_size(size - 1);
    assert_eq!(
        short.decode(&mut BytesMut::from(wire)),
        Err(DecodeError::PacketTooLarge {
            size,
            max: size - 1
        })
    );
}

/// FNV-1a: a stable hash of the input to seed the chunking.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// xorshift64: a tiny deterministic generator for the chunk sizes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Mostly tiny chunks (header and length fields split across reads),
    /// sometimes large ones.
    fn chunk_size(&mut self) -> usize {
        let value = self.next();
        if value.is_multiple_of(4) {
            1 + (value >> 8) as usize % 256
        } else {
            1 + (value >> 8) as usize % 4
        }
    }
}
