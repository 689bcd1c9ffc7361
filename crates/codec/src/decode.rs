//! The decoder: bytes in, whole packets out.
//!
//! # Call order
//!
//! Append whatever the socket delivered to one `BytesMut`, then call
//! [`Decoder::decode`] in a loop until it returns `Ok(None)` (read more) or
//! `Err` (send the error's reason code if the protocol allows, then close).
//! A server starts with [`Decoder::server`]: the protocol level is unknown
//! until the CONNECT arrives, so the first packet must be CONNECT, and the
//! decoder then switches itself to that CONNECT's version. A client knows its
//! version up front and uses [`Decoder::client`].
//!
//! # Invariants
//!
//! - `Ok(Some(packet))` consumed exactly that packet's bytes; `Ok(None)` left
//!   `buf` untouched; after `Err` the buffer's contents are unspecified and the
//!   connection must close.
//! - A packet larger than the maximum packet size is refused as soon as its
//!   fixed header is readable, before its body is buffered.
//! - Nothing panics on any input. Nothing is allocated before the whole packet
//!   is buffered, and then only in proportion to the packet's own size, which
//!   the maximum packet size bounds: strings are copied into `String`s and
//!   lists into `Vec`s, so a decoded packet can take a constant factor more
//!   memory than its wire form (worst case, a packet made only of empty user
//!   properties: 5 bytes each on the wire, 48 in the `Vec`, up to about 20x
//!   with `Vec` growth).
//! - Binary fields and the PUBLISH payload are zero-copy views into the read
//!   buffer's allocation: copy them (`Bytes::copy_from_slice`) before keeping
//!   them beyond one delivery, or a small payload pins the whole read buffer.

use bytes::{Buf, Bytes, BytesMut};

use crate::allowed::{is_allowed, is_v3_suback, ReasonSet};
use crate::properties::{self, auth_is_bare};
use crate::reader::Reader;
use crate::varint::{self, VarintError};
use crate::{
    contains_wildcard, Ack, Auth, ConnAck, Connect, DecodeError, Disconnect, Packet,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// The name of a packet type nibble, for errors.
fn type_name(packet_type: u8) -> &'static str {
    match packet_type {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        AUTH => "AUTH",
        _ => "reserved packet type",
    }
}

/// Which end of the connection this decoder serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reads what clients send: the first packet must be CONNECT, and only one.
    Server,
    /// Reads what a server sends.
    Client,
}

/// Turns bytes from the network into [`Packet`]s. See the module docs for the
/// call order.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Largest whole packet (fixed header included) accepted, in bytes; as
    /// the v5 Maximum Packet Size counts it.
    max_packet_size: u32,
    /// The connection's protocol level; `None` on a server until CONNECT.
    version: Option<ProtocolVersion>,
    role: Role,
}

impl Decoder {
    /// Server side: the protocol level is unknown until CONNECT; the first
    /// packet must be CONNECT (anything else is
    /// [`DecodeError::FirstPacketNotConnect`], [MQTT-3.1.0-1]). After a
    /// CONNECT is decoded the decoder switches itself to that CONNECT's
    /// version; a second CONNECT is [`DecodeError::SecondConnect`]
    /// ([MQTT-3.1.0-2]).
    pub fn server(max_packet_size: u32) -> Decoder {
        Decoder {
            max_packet_size,
            version: None,
            role: Role::Server,
        }
    }

    /// Client side: version known up front.
    pub fn client(version: ProtocolVersion, max_packet_size: u32) -> Decoder {
        Decoder {
            max_packet_size,
            version: Some(version),
            role: Role::Client,
        }
    }

    /// The connection's protocol version. On a server this becomes `Some` as
    /// soon as the CONNECT's protocol level has been read, even if the rest
    /// of that CONNECT then fails to decode: the server answers that failure
    /// with a CONNACK in the client's own version.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The largest packet accepted, in bytes, fixed header included.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Changes the largest packet accepted (for example once the CONNECT's
    /// properties are known). Applies from the next packet on.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// `Ok(Some(packet))` consumes exactly that packet's bytes from `buf`;
    /// `Ok(None)` = need more bytes (buf untouched); `Err` = the connection
    /// must close (with the error's reason code).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some((packet_type, flags, header_length, total)) = self.frame(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(header_length);
        let body = buf.split_to(total - header_length).freeze();
        self.decode_frame(packet_type, flags, body).map(Some)
    }

    /// Decodes the packet at the start of `packet` without copying it:
    /// binary fields and the PUBLISH payload are views into `packet`. For
    /// packets kept whole elsewhere (the durable store's messages), so that
    /// the decoded form shares their memory. Returns the packet and its
    /// length (the caller decides what bytes after it mean); `Ok(None)` if
    /// `packet` is shorter than the packet it starts.
    pub fn decode_shared(
        &mut self,
        packet: &Bytes,
    ) -> Result<Option<(Packet, usize)>, DecodeError> {
        let Some((packet_type, flags, header_length, total)) = self.frame(packet)? else {
            return Ok(None);
        };
        if packet.len() < total {
            return Ok(None);
        }
        let body = packet.slice(header_length..total);
        let decoded = self.decode_frame(packet_type, flags, body)?;
        Ok(Some((decoded, total)))
    }

    /// The fixed header at the start of `bytes`: packet type, flags, header
    /// length and total packet length, once the header is complete.
    fn frame(&self, bytes: &[u8]) -> Result<Option<(u8, u8, usize, usize)>, DecodeError> {
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let packet_type = first >> 4;
        let flags = first & 0x0F;
        self.check_first_byte(packet_type, flags)?;

        let (remaining, length_bytes) = match varint::read(bytes.get(1..).unwrap_or_default()) {
            Ok(read) => read,
            Err(VarintError::Incomplete) => return Ok(None),
            Err(VarintError::TooLong) => {
                return Err(DecodeError::VariableByteIntegerTooLong {
                    what: "remaining length",
                })
            }
            Err(VarintError::NotMinimal) => {
                return Err(DecodeError::VariableByteIntegerNotMinimal {
                    what: "remaining length",
                })
            }
        };
        // At most 1 + 4 + 268,435,455 bytes, well within u32 and usize.
        let header_length = 1 + length_bytes;
        let total = remaining.saturating_add(header_length as u32);
        if total > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.max_packet_size,
            });
        }
        Ok(Some((packet_type, flags, header_length, total as usize)))
    }

    /// Decodes a packet's body (everything after the fixed header).
    fn decode_frame(
        &mut self,
        packet_type: u8,
        flags: u8,
        body: Bytes,
    ) -> Result<Packet, DecodeError> {
        let mut reader = Reader::new(body, type_name(packet_type));
        let packet = self.decode_body(packet_type, flags, &mut reader)?;
        reader.finish()?;
        Ok(packet)
    }

    /// Everything the first byte alone can tell: the packet type is allowed
    /// here and its flags are valid ([MQTT-2.1.3-1]).
    fn check_first_byte(&self, packet_type: u8, flags: u8) -> Result<(), DecodeError> {
        if self.role == Role::Server {
            match (self.version, packet_type) {
                (None, CONNECT) => {}
                (None, _) => {
                    return Err(DecodeError::FirstPacketNotConnect {
                        packet: type_name(packet_type),
                    })
                }
                (Some(_), CONNECT) => return Err(DecodeError::SecondConnect),
                (Some(_), _) => {}
            }
        }
        let flags_ok = match packet_type {
            0 => return Err(DecodeError::ReservedPacketType { packet_type }),
            // AUTH exists only in MQTT 5. (A server still waiting for CONNECT
            // has refused it above already.)
            AUTH if self.version.is_some_and(|version| !version.is_v5()) => {
                return Err(DecodeError::ReservedPacketType { packet_type })
            }
            PUBLISH => {
                let qos = (flags >> 1) & 0b11;
                if qos == 3 {
                    return Err(DecodeError::InvalidQos);
                }
                if qos == 0 && flags & 0b1000 != 0 {
                    return Err(DecodeError::DupWithQos0);
                }
                true
            }
            // MQTT 3.1 set the DUP bit on resent PUBREL, SUBSCRIBE and
            // UNSUBSCRIBE; accept that from 3.1 peers.
            PUBREL | SUBSCRIBE | UNSUBSCRIBE => {
                flags == 0b0010 || (self.version == Some(ProtocolVersion::V3_1) && flags == 0b1010)
            }
            _ => flags == 0,
        };
        if flags_ok {
            Ok(())
        } else {
            Err(DecodeError::InvalidFixedHeaderFlags {
                packet: type_name(packet_type),
                flags,
            })
        }
    }

    fn decode_body(
        &mut self,
        packet_type: u8,
        flags: u8,
        reader: &mut Reader,
    ) -> Result<Packet, DecodeError> {
        if packet_type == CONNECT {
            let version = connect_version(reader)?;
            if self.role == Role::Server {
                self.version = Some(version);
            }
            return Ok(Packet::Connect(Box::new(connect(reader, version)?)));
        }
        let Some(version) = self.version else {
            return Err(DecodeError::FirstPacketNotConnect {
                packet: type_name(packet_type),
            });
        };
        let packet = match packet_type {
            CONNACK => Packet::ConnAck(connack(reader, version)?),
            PUBLISH => Packet::Publish(publish(reader, flags, version)?),
            PUBACK => Packet::PubAck(ack(reader, version, ReasonSet::PubAck)?),
            PUBREC => Packet::PubRec(ack(reader, version, ReasonSet::PubAck)?),
            PUBREL => Packet::PubRel(ack(reader, version, ReasonSet::PubRel)?),
            PUBCOMP => Packet::PubComp(ack(reader, version, ReasonSet::PubRel)?),
            SUBSCRIBE => Packet::Subscribe(subscribe(reader, version)?),
            SUBACK => Packet::SubAck(suback(reader, version)?),
            UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(reader, version)?),
            UNSUBACK => Packet::UnsubAck(unsuback(reader, version)?),
            PINGREQ => Packet::PingReq,
            PINGRESP => Packet::PingResp,
            DISCONNECT => Packet::Disconnect(disconnect(reader, version)?),
            AUTH if version.is_v5() => Packet::Auth(auth(reader)?),
            _ => return Err(DecodeError::ReservedPacketType { packet_type }),
        };
        Ok(packet)
    }
}

/// A packet identifier where one is required: never 0 ([MQTT-2.2.1-3]).
fn packet_id(reader: &mut Reader) -> Result<u16, DecodeError> {
    match reader.u16()? {
        0 => Err(DecodeError::ZeroPacketId {
            packet: reader.packet(),
        }),
        id => Ok(id),
    }
}

/// A reason code that must belong to `set`.
fn reason_code(reader: &mut Reader, set: ReasonSet) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode(reader.u8()?);
    if is_allowed(set, code) {
        Ok(code)
    } else {
        Err(DecodeError::InvalidReasonCode {
            packet: reader.packet(),
            code: code.0,
        })
    }
}

/// A topic name in PUBLISH or a will: no wildcards ([MQTT-3.3.2-2]). Emptiness
/// is checked by the caller, because MQTT 5 allows it with a topic alias.
fn topic_name(reader: &mut Reader) -> Result<String, DecodeError> {
    let topic = reader.string()?;
    if contains_wildcard(&topic) {
        return Err(DecodeError::TopicNameWildcard {
            packet: reader.packet(),
        });
    }
    Ok(topic)
}

/// The protocol name and level that open CONNECT (3.1.2.1, 3.1.2.2).
fn connect_version(reader: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    let name = reader.binary()?;
    let level = reader.u8()?;
    match (name.as_ref(), level) {
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQTT" | b"MQIsdp", level) => Err(DecodeError::UnsupportedProtocolLevel { level }),
        _ => Err(DecodeError::UnknownProtocolName),
    }
}

/// The rest of CONNECT after the protocol level (3.1.2.3 onwards).
fn connect(reader: &mut Reader, version: ProtocolVersion) -> Result<Connect, DecodeError> {
    let flags = reader.u8()?;
    if flags & 0b0000_0001 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b0010_0000 != 0;
    let password_flag = flags & 0b0100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    if !will_flag && will_qos != 0 {
        return Err(DecodeError::WillQosWithoutWill);
    }
    if !will_flag && will_retain {
        return Err(DecodeError::WillRetainWithoutWill);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillQos)?;
    if password_flag && !username_flag && !version.is_v5() {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = reader.u16()?;
    let properties = if version.is_v5() {
        properties::read_connect(reader)?
    } else {
        Default::default()
    };
    let client_id = reader.string()?;
    let will = if will_flag {
        let will_properties = if version.is_v5() {
            properties::read_will(reader)?
        } else {
            Default::default()
        };
        let topic = topic_name(reader)?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName { packet: "CONNECT" });
        }
        let payload = reader.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties: will_properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(reader.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(reader.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol: version,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(reader: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = reader.u8()?;
    // MQTT 3.1 had no session present flag; the byte was unused.
    let session_present = match version {
        ProtocolVersion::V3_1 => false,
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => {
            if flags & 0b1111_1110 != 0 {
                return Err(DecodeError::ConnAckReservedFlags);
            }
            flags & 1 != 0
        }
    };
    let mut connack = ConnAck {
        session_present,
        ..ConnAck::default()
    };
    if version.is_v5() {
        connack.reason_code = reason_code(reader, ReasonSet::ConnAck)?;
        connack.properties = properties::read_connack(reader)?;
    } else {
        let code = reader.u8()?;
        if code > 5 {
            return Err(DecodeError::InvalidConnAckReturnCode { code });
        }
        connack.reason_code = ReasonCode::from_v3_connack(code);
    }
    if connack.session_present && connack.reason_code != ReasonCode::SUCCESS {
        return Err(DecodeError::SessionPresentOnRefusal);
    }
    Ok(connack)
}

fn publish(
    reader: &mut Reader,
    flags: u8,
    version: ProtocolVersion,
) -> Result<Publish, DecodeError> {
    // The flags were checked in `check_first_byte`.
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQos)?;
    let dup = flags & 0b1000 != 0;
    let retain = flags & 0b0001 != 0;
    let topic = topic_name(reader)?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(reader)?)
    };
    let properties = if version.is_v5() {
        properties::read_publish(reader)?
    } else {
        Default::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName { packet: "PUBLISH" });
    }
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload: reader.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. In MQTT 5 the reason code and the
/// properties may each be cut off (3.4.2.1): a remaining length of 2 means
/// success without properties, 3 means a reason code without properties.
fn ack(reader: &mut Reader, version: ProtocolVersion, set: ReasonSet) -> Result<Ack, DecodeError> {
    let mut ack = Ack::new(packet_id(reader)?);
    if version.is_v5() && !reader.is_empty() {
        ack.reason_code = reason_code(reader, set)?;
        if !reader.is_empty() {
            let (reason_string, user_properties) = properties::read_ack(reader)?;
            ack.reason_string = reason_string;
            ack.user_properties = user_properties;
        }
    }
    Ok(ack)
}

/// The subscription options byte (3.8.3.1; in 3.x only the QoS bits exist).
fn subscription_options(
    byte: u8,
    version: ProtocolVersion,
    filter: &str,
) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() {
        0b1100_0000
    } else {
        0b1111_1100
    };
    if byte & reserved != 0 {
        return Err(DecodeError::SubscriptionOptionsReserved);
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidSubscriptionQos)?;
    let no_local = byte & 0b0000_0100 != 0;
    let retain_as_published = byte & 0b0000_1000 != 0;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    if no_local && filter.starts_with("$share/") {
        return Err(DecodeError::NoLocalOnSharedSubscription);
    }
    Ok(SubscriptionOptions {
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    })
}

/// SUBSCRIBE. Topic filter syntax (wildcard placement, shared subscription
/// form, emptiness) is left to the broker, which answers a bad filter with a
/// SUBACK failure code rather than closing the connection.
fn subscribe(reader: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let mut subscribe = Subscribe {
        packet_id: packet_id(reader)?,
        ..Subscribe::default()
    };
    if version.is_v5() {
        let (subscription_identifier, user_properties) = properties::read_subscribe(reader)?;
        subscribe.subscription_identifier = subscription_identifier;
        subscribe.user_properties = user_properties;
    }
    while !reader.is_empty() {
        let filter = reader.string()?;
        let options = subscription_options(reader.u8()?, version, &filter)?;
        subscribe.filters.push((filter, options));
    }
    if subscribe.filters.is_empty() {
        return Err(DecodeError::SubscribeWithoutFilters);
    }
    Ok(subscribe)
}

fn suback(reader: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let mut suback = SubAck {
        packet_id: packet_id(reader)?,
        ..SubAck::default()
    };
    if version.is_v5() {
        let (reason_string, user_properties) = properties::read_ack(reader)?;
        suback.reason_string = reason_string;
        suback.user_properties = user_properties;
    }
    while !reader.is_empty() {
        let code = if version.is_v5() {
            reason_code(reader, ReasonSet::SubAck)?
        } else {
            let code = reader.u8()?;
            if !is_v3_suback(code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet: "SUBACK",
                    code,
                });
            }
            ReasonCode(code)
        };
        suback.reason_codes.push(code);
    }
    if suback.reason_codes.is_empty() {
        return Err(DecodeError::NoReasonCodes { packet: "SUBACK" });
    }
    Ok(suback)
}

fn unsubscribe(reader: &mut Reader, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let mut unsubscribe = Unsubscribe {
        packet_id: packet_id(reader)?,
        ..Unsubscribe::default()
    };
    if version.is_v5() {
        unsubscribe.user_properties = properties::read_unsubscribe(reader)?;
    }
    while !reader.is_empty() {
        unsubscribe.filters.push(reader.string()?);
    }
    if unsubscribe.filters.is_empty() {
        return Err(DecodeError::UnsubscribeWithoutFilters);
    }
    Ok(unsubscribe)
}

/// UNSUBACK. In 3.x it is just the packet identifier.
fn unsuback(reader: &mut Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let mut unsuback = UnsubAck {
        packet_id: packet_id(reader)?,
        ..UnsubAck::default()
    };
    if version.is_v5() {
        let (reason_string, user_properties) = properties::read_ack(reader)?;
        unsuback.reason_string = reason_string;
        unsuback.user_properties = user_properties;
        while !reader.is_empty() {
            unsuback
                .reason_codes
                .push(reason_code(reader, ReasonSet::UnsubAck)?);
        }
        if unsuback.reason_codes.is_empty() {
            return Err(DecodeError::NoReasonCodes { packet: "UNSUBACK" });
        }
    }
    Ok(unsuback)
}

/// DISCONNECT. Empty in 3.x; in MQTT 5 a remaining length of 0 means normal
/// disconnection and 1 a reason code without properties (3.14.2.1).
fn disconnect(reader: &mut Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    if version.is_v5() && !reader.is_empty() {
        disconnect.reason_code = reason_code(reader, ReasonSet::Disconnect)?;
        if !reader.is_empty() {
            properties::read_disconnect(reader, &mut disconnect)?;
        }
    }
    Ok(disconnect)
}

/// AUTH (MQTT 5 only), with the same short forms as DISCONNECT (3.15.2.1).
/// Only a bare success may leave out the authentication method (3.15.2.2.2).
fn auth(reader: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    if !reader.is_empty() {
        auth.reason_code = reason_code(reader, ReasonSet::Auth)?;
        if !reader.is_empty() {
            properties::read_auth(reader, &mut auth)?;
        }
    }
    let bare_success = auth.reason_code == ReasonCode::SUCCESS && auth_is_bare(&auth);
    if auth.authentication_method.is_none() && !bare_success {
        return Err(DecodeError::AuthenticationMethodMissing);
    }
    Ok(auth)
}

#[cfg(test)]
mod tests;
