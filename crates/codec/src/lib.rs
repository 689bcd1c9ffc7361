//! MQTT 3.1, 3.1.1 and 5.0 control packets: types, decoding and encoding.
//!
//! Sans-IO: nothing here reads a socket or a clock. The decoder takes a
//! `BytesMut` holding whatever has arrived so far and either returns one whole
//! packet (consuming its bytes), returns `Ok(None)` when more bytes are needed
//! (not an error: a state), or returns a [`DecodeError`] that names the spec
//! statement violated and maps to the reason code the server must send.
//!
//! Every byte is hostile: no panics, no indexing, and no allocation larger
//! than the (bounded) packet itself.

mod packet;
mod reason;

pub use packet::*;
pub use reason::ReasonCode;
