//! The encoder: packets out as bytes.
//!
//! # Invariants
//!
//! - [`encode`] appends exactly [`encoded_len`] bytes, or nothing at all: every
//!   check runs in a counting pass before the first byte is written.
//! - The encoder refuses what the decoder refuses (reason codes a packet does
//!   not allow, property values out of range, packet identifier 0, ...), so
//!   for every packet it accepts, decoding its output gives the packet back.
//!   Fields that do not exist in the requested version (v5 properties and
//!   reason codes in 3.x) are left out, not refused; so are the packet
//!   identifier and DUP flag of a QoS 0 PUBLISH, which do not exist on the
//!   wire ([MQTT-2.2.1-2], [MQTT-3.3.1-2]).
//! - MQTT 5 short forms are used where the spec allows them: an
//!   acknowledgement with reason 0x00 and no properties has remaining length
//!   2, a DISCONNECT or AUTH with reason 0x00 and no properties is empty, and
//!   a reason code without properties omits the property length.

use bytes::BytesMut;

use crate::allowed::{is_allowed, ReasonSet};
use crate::properties::{auth_is_bare, disconnect_is_bare, put_block, AckProperties};
use crate::varint::{self, VARINT_MAX};
use crate::writer::{put_binary, put_string, put_varint, Counter, Sink};
use crate::{
    contains_wildcard, Ack, Auth, ConnAck, Connect, Disconnect, EncodeError, Packet,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// Appends the packet's wire form for `version` to `out`.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let first = first_byte(packet, version)?;
    let remaining = remaining_length(packet, version)?;
    let length_bytes = varint::len(remaining).unwrap_or(4);
    out.reserve(1 + length_bytes + remaining as usize);
    out.put_u8(first);
    put_varint(out, remaining, packet.name())?;
    write_body(packet, version, out)
}

/// Exact number of bytes `encode` would write (for maximum-packet-size checks
/// before sending).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    first_byte(packet, version)?;
    let remaining = remaining_length(packet, version)?;
    let length_bytes = varint::len(remaining).unwrap_or(4);
    Ok(1 + length_bytes + remaining as usize)
}

/// Runs the body writer into a counter: checks everything and measures.
fn remaining_length(packet: &Packet, version: ProtocolVersion) -> Result<u32, EncodeError> {
    let mut counter = Counter::default();
    write_body(packet, version, &mut counter)?;
    match u32::try_from(counter.len) {
        Ok(length) if length <= VARINT_MAX => Ok(length),
        _ => Err(EncodeError::PacketTooLarge {
            packet: packet.name(),
        }),
    }
}

/// The packet type and flags byte (2.1.2, 2.1.3).
fn first_byte(packet: &Packet, version: ProtocolVersion) -> Result<u8, EncodeError> {
    let byte = match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(publish) => {
            let mut byte = 0x30 | (publish.qos.as_u8() << 1);
            if publish.dup && publish.qos != QoS::AtMostOnce {
                byte |= 0b1000;
            }
            if publish.retain {
                byte |= 0b0001;
            }
            byte
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) if version.is_v5() => 0xF0,
        Packet::Auth(_) => {
            return Err(EncodeError::NotInVersion {
                packet: "AUTH",
                version,
            })
        }
    };
    Ok(byte)
}

/// Writes everything after the remaining length.
fn write_body<S: Sink>(
    packet: &Packet,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(connect) => write_connect(connect, version, sink),
        Packet::ConnAck(connack) => write_connack(connack, version, sink),
        Packet::Publish(publish) => write_publish(publish, version, sink),
        Packet::PubAck(ack) => write_ack(ack, "PUBACK", ReasonSet::PubAck, version, sink),
        Packet::PubRec(ack) => write_ack(ack, "PUBREC", ReasonSet::PubAck, version, sink),
        Packet::PubRel(ack) => write_ack(ack, "PUBREL", ReasonSet::PubRel, version, sink),
        Packet::PubComp(ack) => write_ack(ack, "PUBCOMP", ReasonSet::PubRel, version, sink),
        Packet::Subscribe(subscribe) => write_subscribe(subscribe, version, sink),
        Packet::SubAck(suback) => write_suback(suback, version, sink),
        Packet::Unsubscribe(unsubscribe) => write_unsubscribe(unsubscribe, version, sink),
        Packet::UnsubAck(unsuback) => write_unsuback(unsuback, version, sink),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(disconnect) => write_disconnect(disconnect, version, sink),
        Packet::Auth(auth) => write_auth(auth, version, sink),
    }
}

fn put_packet_id<S: Sink>(sink: &mut S, id: u16, packet: &'static str) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::MissingPacketId { packet });
    }
    sink.put_u16(id);
    Ok(())
}

fn check_reason(set: ReasonSet, code: ReasonCode, packet: &'static str) -> Result<(), EncodeError> {
    if is_allowed(set, code) {
        Ok(())
    } else {
        Err(EncodeError::InvalidReasonCode {
            packet,
            code: code.0,
        })
    }
}

fn write_connect<S: Sink>(
    connect: &Connect,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "CONNECT";
    if connect.protocol != version {
        return Err(EncodeError::ConnectVersionMismatch {
            connect: connect.protocol,
            version,
        });
    }
    if connect.password.is_some() && connect.username.is_none() && !version.is_v5() {
        return Err(EncodeError::PasswordWithoutUsername);
    }
    let name: &[u8] = match version {
        ProtocolVersion::V3_1 => b"MQIsdp",
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => b"MQTT",
    };
    put_binary(sink, name, PACKET)?;
    sink.put_u8(version.level());

    let mut flags = 0u8;
    if connect.clean_start {
        flags |= 0b0000_0010;
    }
    if let Some(will) = &connect.will {
        flags |= 0b0000_0100 | (will.qos.as_u8() << 3);
        if will.retain {
            flags |= 0b0010_0000;
        }
    }
    if connect.password.is_some() {
        flags |= 0b0100_0000;
    }
    if connect.username.is_some() {
        flags |= 0b1000_0000;
    }
    sink.put_u8(flags);
    sink.put_u16(connect.keep_alive);
    if version.is_v5() {
        put_block(sink, &connect.properties, PACKET)?;
    }
    put_string(sink, &connect.client_id, PACKET)?;
    if let Some(will) = &connect.will {
        if version.is_v5() {
            put_block(sink, &will.properties, PACKET)?;
        }
        if will.topic.is_empty() || contains_wildcard(&will.topic) {
            return Err(EncodeError::InvalidTopicName { packet: PACKET });
        }
        put_string(sink, &will.topic, PACKET)?;
        put_binary(sink, &will.payload, PACKET)?;
    }
    if let Some(username) = &connect.username {
        put_string(sink, username, PACKET)?;
    }
    if let Some(password) = &connect.password {
        put_binary(sink, password, PACKET)?;
    }
    Ok(())
}

fn write_connack<S: Sink>(
    connack: &ConnAck,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "CONNACK";
    let refused = match version {
        ProtocolVersion::V5 => connack.reason_code != ReasonCode::SUCCESS,
        _ => connack.reason_code.to_v3_connack() != 0,
    };
    if connack.session_present && refused {
        return Err(EncodeError::SessionPresentOnRefusal);
    }
    match version {
        // 3.1 has no session present flag: the byte is unused.
        ProtocolVersion::V3_1 => {
            sink.put_u8(0);
            sink.put_u8(connack.reason_code.to_v3_connack());
        }
        ProtocolVersion::V3_1_1 => {
            sink.put_u8(u8::from(connack.session_present));
            sink.put_u8(connack.reason_code.to_v3_connack());
        }
        ProtocolVersion::V5 => {
            check_reason(ReasonSet::ConnAck, connack.reason_code, PACKET)?;
            sink.put_u8(u8::from(connack.session_present));
            sink.put_u8(connack.reason_code.0);
            put_block(sink, &connack.properties, PACKET)?;
        }
    }
    Ok(())
}

fn write_publish<S: Sink>(
    publish: &Publish,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "PUBLISH";
    let alias_stands_in = version.is_v5() && publish.properties.topic_alias.is_some();
    if contains_wildcard(&publish.topic) || (publish.topic.is_empty() && !alias_stands_in) {
        return Err(EncodeError::InvalidTopicName { packet: PACKET });
    }
    put_string(sink, &publish.topic, PACKET)?;
    if publish.qos != QoS::AtMostOnce {
        match publish.packet_id {
            Some(id) => put_packet_id(sink, id, PACKET)?,
            None => return Err(EncodeError::MissingPacketId { packet: PACKET }),
        }
    }
    if version.is_v5() {
        put_block(sink, &publish.properties, PACKET)?;
    }
    sink.put_slice(&publish.payload);
    Ok(())
}

fn write_ack<S: Sink>(
    ack: &Ack,
    packet: &'static str,
    set: ReasonSet,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    put_packet_id(sink, ack.packet_id, packet)?;
    if !version.is_v5() {
        return Ok(());
    }
    check_reason(set, ack.reason_code, packet)?;
    let properties = AckProperties {
        reason_string: ack.reason_string.as_deref(),
        user_properties: &ack.user_properties,
    };
    if properties.is_empty() {
        if ack.reason_code != ReasonCode::SUCCESS {
            sink.put_u8(ack.reason_code.0);
        }
        return Ok(());
    }
    sink.put_u8(ack.reason_code.0);
    put_block(sink, &properties, packet)
}

/// The subscription options byte (3.8.3.1); 3.x has only the QoS bits.
fn options_byte(options: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let mut byte = options.qos.as_u8();
    if version.is_v5() {
        if options.no_local {
            byte |= 0b0000_0100;
        }
        if options.retain_as_published {
            byte |= 0b0000_1000;
        }
        let retain_handling = match options.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        };
        byte |= retain_handling << 4;
    }
    byte
}

fn write_subscribe<S: Sink>(
    subscribe: &Subscribe,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "SUBSCRIBE";
    if subscribe.filters.is_empty() {
        return Err(EncodeError::Empty { packet: PACKET });
    }
    put_packet_id(sink, subscribe.packet_id, PACKET)?;
    if version.is_v5() {
        put_block(sink, subscribe, PACKET)?;
    }
    for (filter, options) in &subscribe.filters {
        if version.is_v5() && options.no_local && filter.starts_with("$share/") {
            return Err(EncodeError::NoLocalOnSharedSubscription);
        }
        put_string(sink, filter, PACKET)?;
        sink.put_u8(options_byte(options, version));
    }
    Ok(())
}

fn write_suback<S: Sink>(
    suback: &SubAck,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "SUBACK";
    if suback.reason_codes.is_empty() {
        return Err(EncodeError::Empty { packet: PACKET });
    }
    put_packet_id(sink, suback.packet_id, PACKET)?;
    if version.is_v5() {
        let properties = AckProperties {
            reason_string: suback.reason_string.as_deref(),
            user_properties: &suback.user_properties,
        };
        put_block(sink, &properties, PACKET)?;
        for code in &suback.reason_codes {
            check_reason(ReasonSet::SubAck, *code, PACKET)?;
            sink.put_u8(code.0);
        }
    } else {
        for code in &suback.reason_codes {
            // 3.x knows only the granted QoS and one failure code.
            let code = match code.0 {
                granted @ 0x00..=0x02 => granted,
                _ => 0x80,
            };
            sink.put_u8(code);
        }
    }
    Ok(())
}

fn write_unsubscribe<S: Sink>(
    unsubscribe: &Unsubscribe,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "UNSUBSCRIBE";
    if unsubscribe.filters.is_empty() {
        return Err(EncodeError::Empty { packet: PACKET });
    }
    put_packet_id(sink, unsubscribe.packet_id, PACKET)?;
    if version.is_v5() {
        put_block(sink, unsubscribe, PACKET)?;
    }
    for filter in &unsubscribe.filters {
        put_string(sink, filter, PACKET)?;
    }
    Ok(())
}

fn write_unsuback<S: Sink>(
    unsuback: &UnsubAck,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "UNSUBACK";
    put_packet_id(sink, unsuback.packet_id, PACKET)?;
    if !version.is_v5() {
        return Ok(());
    }
    if unsuback.reason_codes.is_empty() {
        return Err(EncodeError::Empty { packet: PACKET });
    }
    let properties = AckProperties {
        reason_string: unsuback.reason_string.as_deref(),
        user_properties: &unsuback.user_properties,
    };
    put_block(sink, &properties, PACKET)?;
    for code in &unsuback.reason_codes {
        check_reason(ReasonSet::UnsubAck, *code, PACKET)?;
        sink.put_u8(code.0);
    }
    Ok(())
}

fn write_disconnect<S: Sink>(
    disconnect: &Disconnect,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "DISCONNECT";
    if !version.is_v5() {
        return Ok(());
    }
    check_reason(ReasonSet::Disconnect, disconnect.reason_code, PACKET)?;
    if disconnect_is_bare(disconnect) {
        if disconnect.reason_code != ReasonCode::NORMAL_DISCONNECTION {
            sink.put_u8(disconnect.reason_code.0);
        }
        return Ok(());
    }
    sink.put_u8(disconnect.reason_code.0);
    put_block(sink, disconnect, PACKET)
}

fn write_auth<S: Sink>(
    auth: &Auth,
    version: ProtocolVersion,
    sink: &mut S,
) -> Result<(), EncodeError> {
    const PACKET: &str = "AUTH";
    if !version.is_v5() {
        return Err(EncodeError::NotInVersion {
            packet: PACKET,
            version,
        });
    }
    check_reason(ReasonSet::Auth, auth.reason_code, PACKET)?;
    let bare = auth_is_bare(auth);
    if auth.authentication_method.is_none() && !(bare && auth.reason_code == ReasonCode::SUCCESS) {
        return Err(EncodeError::AuthenticationMethodMissing);
    }
    if bare {
        if auth.reason_code != ReasonCode::SUCCESS {
            sink.put_u8(auth.reason_code.0);
        }
        return Ok(());
    }
    sink.put_u8(auth.reason_code.0);
    put_block(sink, auth, PACKET)
}

#[cfg(test)]
mod tests;
