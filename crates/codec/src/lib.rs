//! MQTT 3.1, 3.1.1 and 5.0 control packets: types, decoding and encoding.
//!
//! Sans-IO: nothing here reads a socket or a clock. The decoder takes a
//! `BytesMut` holding whatever has arrived so far and either returns one whole
//! packet (consuming its bytes), returns `Ok(None)` when more bytes are needed
//! (not an error: a state), or returns a [`DecodeError`] that names the spec
//! statement violated and maps to the reason code the server must send.
//!
//! Every byte is hostile: no panics, no indexing, and no allocation larger
//! than a small constant factor of the (bounded) packet itself.
//!
//! # Call order
//!
//! ```
//! use bytes::BytesMut;
//! use switchboard_codec::{encode, Decoder, Packet, ProtocolVersion};
//!
//! // A server reads a CONNECT first; the decoder learns the version from it.
//! let mut decoder = Decoder::server(1024 * 1024);
//! let mut incoming = BytesMut::from(&b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"[..]);
//! let Ok(Some(Packet::Connect(connect))) = decoder.decode(&mut incoming) else {
//!     panic!("a whole CONNECT was buffered");
//! };
//! assert_eq!(decoder.version(), Some(ProtocolVersion::V3_1_1));
//! assert!(incoming.is_empty());
//!
//! // Replies are encoded in the connection's version.
//! let mut outgoing = BytesMut::new();
//! encode(&Packet::PingResp, connect.protocol, &mut outgoing).unwrap();
//! assert_eq!(&outgoing[..], b"\xd0\x00");
//! ```
//!
//! 1. Append bytes from the socket to one `BytesMut`.
//! 2. Call [`Decoder::decode`] until it returns `Ok(None)`; each `Ok(Some)`
//!    consumed exactly one packet.
//! 3. On `Err`, send [`DecodeError::reason_code`] if the protocol allows
//!    (a DISCONNECT in v5; a CONNACK if the error was in CONNECT, in
//!    [`DecodeError::connack_version`] or else [`Decoder::version`]), then
//!    close the connection. The decoder is not meant to be used after an error.
//! 4. Before sending, [`encoded_len`] tells the exact size (to honour the
//!    peer's Maximum Packet Size); [`encode`] appends the packet or nothing.
//!
//! The packet model ([`Packet`] and friends) is shared by all versions; fields
//! that exist only in MQTT 5 are left at their defaults for 3.x.

mod allowed;
mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reader;
mod reason;
mod varint;
mod writer;

#[cfg(test)]
mod proptests;

pub use decode::Decoder;
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use reason::ReasonCode;

/// True when a topic name holds a wildcard character, which topic names must
/// not ([MQTT-3.3.2-2]); topic filters are checked by the broker.
pub(crate) fn contains_wildcard(topic: &str) -> bool {
    topic.contains(['+', '#'])
}
