//! MQTT 5 properties (2.2.2): identifiers, and the per-packet readers and
//! writers.
//!
//! A property block is a Variable Byte Integer length followed by
//! `identifier, value` pairs. Each packet allows its own set of identifiers
//! (v5 table 2-4); an identifier the spec does not define, or one not allowed
//! in that packet, makes the packet malformed; a property other than User
//! Property (and Subscription Identifier in PUBLISH) appearing twice, or a
//! value outside its range, is a protocol error. The writers refuse the same
//! values the readers refuse, so encode-then-decode is the identity.

use crate::reader::Reader;
use crate::varint::VARINT_MAX;
use crate::writer::{put_binary, put_string, put_varint, Counter, Sink};
use crate::{
    contains_wildcard, Auth, ConnAckProperties, ConnectProperties, DecodeError, Disconnect,
    EncodeError, PublishProperties, QoS, Subscribe, Unsubscribe, UserProperty, WillProperties,
};

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIERS_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The spec's name of a property identifier, for error messages.
pub(crate) fn property_name(id: u8) -> &'static str {
    match id {
        PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        CONTENT_TYPE => "Content Type",
        RESPONSE_TOPIC => "Response Topic",
        CORRELATION_DATA => "Correlation Data",
        SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        SERVER_KEEP_ALIVE => "Server Keep Alive",
        AUTHENTICATION_METHOD => "Authentication Method",
        AUTHENTICATION_DATA => "Authentication Data",
        REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        WILL_DELAY_INTERVAL => "Will Delay Interval",
        REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        RESPONSE_INFORMATION => "Response Information",
        SERVER_REFERENCE => "Server Reference",
        REASON_STRING => "Reason String",
        RECEIVE_MAXIMUM => "Receive Maximum",
        TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        TOPIC_ALIAS => "Topic Alias",
        MAXIMUM_QOS => "Maximum QoS",
        RETAIN_AVAILABLE => "Retain Available",
        USER_PROPERTY => "User Property",
        MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        SUBSCRIPTION_IDENTIFIERS_AVAILABLE => "Subscription Identifier Available",
        SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// One property block being read: the identifiers and values inside it.
struct Block {
    reader: Reader,
}

impl Block {
    /// Reads the block length and carves the block out of `reader`.
    fn open(reader: &mut Reader) -> Result<Block, DecodeError> {
        let length = reader.varint("property length")?;
        let length = usize::try_from(length).map_err(|_| DecodeError::UnexpectedEnd {
            packet: reader.packet(),
        })?;
        Ok(Block {
            reader: reader.sub(length)?,
        })
    }

    fn packet(&self) -> &'static str {
        self.reader.packet()
    }

    /// The next identifier, or `None` at the end of the block. Identifiers are
    /// Variable Byte Integers on the wire (2.2.2.2), though all defined ones
    /// fit in one byte.
    fn next_id(&mut self) -> Result<Option<u8>, DecodeError> {
        if self.reader.is_empty() {
            return Ok(None);
        }
        let id = self.reader.varint("property identifier")?;
        match u8::try_from(id) {
            Ok(id) if property_name(id) != "unknown" => Ok(Some(id)),
            _ => Err(DecodeError::UnknownProperty {
                packet: self.packet(),
                id,
            }),
        }
    }

    fn not_allowed(&self, id: u8) -> DecodeError {
        DecodeError::PropertyNotAllowed {
            packet: self.packet(),
            id,
        }
    }

    fn invalid(&self, id: u8) -> DecodeError {
        DecodeError::InvalidPropertyValue {
            packet: self.packet(),
            id,
        }
    }

    /// Stores a property that may appear at most once.
    fn once<T>(&self, slot: &mut Option<T>, value: T, id: u8) -> Result<(), DecodeError> {
        if slot.is_some() {
            return Err(DecodeError::DuplicateProperty {
                packet: self.packet(),
                id,
            });
        }
        *slot = Some(value);
        Ok(())
    }

    /// A Byte property that must be 0 or 1.
    fn flag(&mut self, id: u8) -> Result<bool, DecodeError> {
        match self.reader.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid(id)),
        }
    }

    /// A Two Byte Integer property that must not be 0.
    fn non_zero_u16(&mut self, id: u8) -> Result<u16, DecodeError> {
        match self.reader.u16()? {
            0 => Err(self.invalid(id)),
            value => Ok(value),
        }
    }

    /// Payload Format Indicator: 0 (unspecified bytes) or 1 (UTF-8).
    fn payload_format(&mut self) -> Result<u8, DecodeError> {
        match self.reader.u8()? {
            value @ (0 | 1) => Ok(value),
            _ => Err(self.invalid(PAYLOAD_FORMAT_INDICATOR)),
        }
    }

    /// A Response Topic is a topic name: non-empty, no wildcards ([MQTT-3.3.2-14]).
    fn response_topic(&mut self) -> Result<String, DecodeError> {
        let topic = self.reader.string()?;
        if topic.is_empty() || contains_wildcard(&topic) {
            return Err(self.invalid(RESPONSE_TOPIC));
        }
        Ok(topic)
    }

    /// A Subscription Identifier: 1 ..= 268,435,455 (3.8.2.1.2, 3.3.2.3.8).
    fn subscription_identifier(&mut self) -> Result<u32, DecodeError> {
        match self.reader.varint("subscription identifier")? {
            0 => Err(self.invalid(SUBSCRIPTION_IDENTIFIER)),
            value => Ok(value),
        }
    }

    fn user_property(&mut self) -> Result<UserProperty, DecodeError> {
        let name = self.reader.string()?;
        let value = self.reader.string()?;
        Ok((name, value))
    }
}

pub(crate) fn read_connect(reader: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut block = Block::open(reader)?;
    let mut properties = ConnectProperties::default();
    while let Some(id) = block.next_id()? {
        match id {
            SESSION_EXPIRY_INTERVAL => {
                let value = block.reader.u32()?;
                block.once(&mut properties.session_expiry_interval, value, id)?;
            }
            RECEIVE_MAXIMUM => {
                let value = block.non_zero_u16(id)?;
                block.once(&mut properties.receive_maximum, value, id)?;
            }
            MAXIMUM_PACKET_SIZE => {
                let value = block.reader.u32()?;
                if value == 0 {
                    return Err(block.invalid(id));
                }
                block.once(&mut properties.maximum_packet_size, value, id)?;
            }
            TOPIC_ALIAS_MAXIMUM => {
                let value = block.reader.u16()?;
                block.once(&mut properties.topic_alias_maximum, value, id)?;
            }
            REQUEST_RESPONSE_INFORMATION => {
                let value = block.flag(id)?;
                block.once(&mut properties.request_response_information, value, id)?;
            }
            REQUEST_PROBLEM_INFORMATION => {
                let value = block.flag(id)?;
                block.once(&mut properties.request_problem_information, value, id)?;
            }
            USER_PROPERTY => {
                let pair = block.user_property()?;
                properties.user_properties.push(pair);
            }
            AUTHENTICATION_METHOD => {
                let value = block.reader.string()?;
                block.once(&mut properties.authentication_method, value, id)?;
            }
            AUTHENTICATION_DATA => {
                let value = block.reader.binary()?;
                block.once(&mut properties.authentication_data, value, id)?;
            }
            _ => return Err(block.not_allowed(id)),
        }
    }
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthenticationDataWithoutMethod);
    }
    Ok(properties)
}

pub(crate) fn read_will(reader: &mut Reader) -> Result<WillProperties, DecodeError> {
    let mut block = Block::open(reader)?;
    let mut properties = WillProperties::default();
    while let Some(id) = block.next_id()? {
        match id {
            WILL_DELAY_INTERVAL => {
                let value = block.reader.u32()?;
                block.once(&mut properties.will_delay_interval, value, id)?;
            }
            PAYLOAD_FORMAT_INDICATOR => {
                let value = block.payload_format()?;
                block.once(&mut properties.payload_format_indicator, value, id)?;
            }
            MESSAGE_EXPIRY_INTERVAL => {
                let value = block.reader.u32()?;
                block.once(&mut properties.message_expiry_interval, value, id)?;
            }
            CONTENT_TYPE => {
                let value = block.reader.string()?;
                block.once(&mut properties.content_type, value, id)?;
            }
            RESPONSE_TOPIC => {
                let value = block.response_topic()?;
                block.once(&mut properties.response_topic, value, id)?;
            }
            CORRELATION_DATA => {
                let value = block.reader.binary()?;
                block.once(&mut properties.correlation_data, value, id)?;
            }
            USER_PROPERTY => {
                let pair = block.user_property()?;
                properties.user_properties.push(pair);
            }
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok(properties)
}

pub(crate) fn read_connack(reader: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut block = Block::open(reader)?;
    let mut properties = ConnAckProperties::default();
    while let Some(id) = block.next_id()? {
        match id {
            SESSION_EXPIRY_INTERVAL => {
                let value = block.reader.u32()?;
                block.once(&mut properties.session_expiry_interval, value, id)?;
            }
            RECEIVE_MAXIMUM => {
                let value = block.non_zero_u16(id)?;
                block.once(&mut properties.receive_maximum, value, id)?;
            }
            MAXIMUM_QOS => {
                // Only 0 or 1: an absent Maximum QoS means 2 (3.2.2.3.4).
                let value = if block.flag(id)? {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                block.once(&mut properties.maximum_qos, value, id)?;
            }
            RETAIN_AVAILABLE => {
                let value = block.flag(id)?;
                block.once(&mut properties.retain_available, value, id)?;
            }
            MAXIMUM_PACKET_SIZE => {
                let value = block.reader.u32()?;
                if value == 0 {
                    return Err(block.invalid(id));
                }
                block.once(&mut properties.maximum_packet_size, value, id)?;
            }
            ASSIGNED_CLIENT_IDENTIFIER => {
                let value = block.reader.string()?;
                block.once(&mut properties.assigned_client_identifier, value, id)?;
            }
            TOPIC_ALIAS_MAXIMUM => {
                let value = block.reader.u16()?;
                block.once(&mut properties.topic_alias_maximum, value, id)?;
            }
            REASON_STRING => {
                let value = block.reader.string()?;
                block.once(&mut properties.reason_string, value, id)?;
            }
            USER_PROPERTY => {
                let pair = block.user_property()?;
                properties.user_properties.push(pair);
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let value = block.flag(id)?;
                block.once(&mut properties.wildcard_subscription_available, value, id)?;
            }
            SUBSCRIPTION_IDENTIFIERS_AVAILABLE => {
                let value = block.flag(id)?;
                block.once(
                    &mut properties.subscription_identifiers_available,
                    value,
                    id,
                )?;
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                let value = block.flag(id)?;
                block.once(&mut properties.shared_subscription_available, value, id)?;
            }
            SERVER_KEEP_ALIVE => {
                let value = block.reader.u16()?;
                block.once(&mut properties.server_keep_alive, value, id)?;
            }
            RESPONSE_INFORMATION => {
                let value = block.reader.string()?;
                block.once(&mut properties.response_information, value, id)?;
            }
            SERVER_REFERENCE => {
                let value = block.reader.string()?;
                block.once(&mut properties.server_reference, value, id)?;
            }
            AUTHENTICATION_METHOD => {
                let value = block.reader.string()?;
                block.once(&mut properties.authentication_method, value, id)?;
            }
            AUTHENTICATION_DATA => {
                let value = block.reader.binary()?;
                block.once(&mut properties.authentication_data, value, id)?;
            }
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok(properties)
}

pub(crate) fn read_publish(reader: &mut Reader) -> Result<PublishProperties, DecodeError> {
    let mut block = Block::open(reader)?;
    let mut properties = PublishProperties::default();
    while let Some(id) = block.next_id()? {
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                let value = block.payload_format()?;
                block.once(&mut properties.payload_format_indicator, value, id)?;
            }
            MESSAGE_EXPIRY_INTERVAL => {
                let value = block.reader.u32()?;
                block.once(&mut properties.message_expiry_interval, value, id)?;
            }
            TOPIC_ALIAS => {
                let value = block.reader.u16()?;
                if value == 0 {
                    return Err(DecodeError::TopicAliasZero);
                }
                block.once(&mut properties.topic_alias, value, id)?;
            }
            RESPONSE_TOPIC => {
                let value = block.response_topic()?;
                block.once(&mut properties.response_topic, value, id)?;
            }
            CORRELATION_DATA => {
                let value = block.reader.binary()?;
                block.once(&mut properties.correlation_data, value, id)?;
            }
            USER_PROPERTY => {
                let pair = block.user_property()?;
                properties.user_properties.push(pair);
            }
            SUBSCRIPTION_IDENTIFIER => {
                // One per matching subscription: may repeat (3.3.2.3.8).
                let value = block.subscription_identifier()?;
                properties.subscription_identifiers.push(value);
            }
            CONTENT_TYPE => {
                let value = block.reader.string()?;
                block.once(&mut properties.content_type, value, id)?;
            }
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok(properties)
}

/// The properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK:
/// a reason string and user properties.
pub(crate) fn read_ack(
    reader: &mut Reader,
) -> Result<(Option<String>, Vec<UserProperty>), DecodeError> {
    let mut block = Block::open(reader)?;
    let mut reason_string = None;
    let mut user_properties = Vec::new();
    while let Some(id) = block.next_id()? {
        match id {
            REASON_STRING => {
                let value = block.reader.string()?;
                block.once(&mut reason_string, value, id)?;
            }
            USER_PROPERTY => user_properties.push(block.user_property()?),
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok((reason_string, user_properties))
}

/// SUBSCRIBE properties: at most one subscription identifier, user properties.
pub(crate) fn read_subscribe(
    reader: &mut Reader,
) -> Result<(Option<u32>, Vec<UserProperty>), DecodeError> {
    let mut block = Block::open(reader)?;
    let mut subscription_identifier = None;
    let mut user_properties = Vec::new();
    while let Some(id) = block.next_id()? {
        match id {
            SUBSCRIPTION_IDENTIFIER => {
                let value = block.subscription_identifier()?;
                block.once(&mut subscription_identifier, value, id)?;
            }
            USER_PROPERTY => user_properties.push(block.user_property()?),
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok((subscription_identifier, user_properties))
}

/// UNSUBSCRIBE properties: user properties only.
pub(crate) fn read_unsubscribe(reader: &mut Reader) -> Result<Vec<UserProperty>, DecodeError> {
    let mut block = Block::open(reader)?;
    let mut user_properties = Vec::new();
    while let Some(id) = block.next_id()? {
        match id {
            USER_PROPERTY => user_properties.push(block.user_property()?),
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok(user_properties)
}

/// DISCONNECT properties, written into `disconnect`.
pub(crate) fn read_disconnect(
    reader: &mut Reader,
    disconnect: &mut Disconnect,
) -> Result<(), DecodeError> {
    let mut block = Block::open(reader)?;
    while let Some(id) = block.next_id()? {
        match id {
            SESSION_EXPIRY_INTERVAL => {
                let value = block.reader.u32()?;
                block.once(&mut disconnect.session_expiry_interval, value, id)?;
            }
            REASON_STRING => {
                let value = block.reader.string()?;
                block.once(&mut disconnect.reason_string, value, id)?;
            }
            USER_PROPERTY => disconnect.user_properties.push(block.user_property()?),
            SERVER_REFERENCE => {
                let value = block.reader.string()?;
                block.once(&mut disconnect.server_reference, value, id)?;
            }
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok(())
}

/// AUTH properties, written into `auth`.
pub(crate) fn read_auth(reader: &mut Reader, auth: &mut Auth) -> Result<(), DecodeError> {
    let mut block = Block::open(reader)?;
    while let Some(id) = block.next_id()? {
        match id {
            AUTHENTICATION_METHOD => {
                let value = block.reader.string()?;
                block.once(&mut auth.authentication_method, value, id)?;
            }
            AUTHENTICATION_DATA => {
                let value = block.reader.binary()?;
                block.once(&mut auth.authentication_data, value, id)?;
            }
            REASON_STRING => {
                let value = block.reader.string()?;
                block.once(&mut auth.reason_string, value, id)?;
            }
            USER_PROPERTY => auth.user_properties.push(block.user_property()?),
            _ => return Err(block.not_allowed(id)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A set of properties that can be written as one block.
pub(crate) trait WriteProperties {
    /// Writes the `identifier, value` pairs (without the block length).
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError>;
}

/// Writes the block length and then the block: the length comes from a
/// counting pass over the same code.
pub(crate) fn put_block<S: Sink, P: WriteProperties>(
    sink: &mut S,
    properties: &P,
    packet: &'static str,
) -> Result<(), EncodeError> {
    let mut counter = Counter::default();
    properties.write(&mut counter, packet)?;
    let length = u32::try_from(counter.len).map_err(|_| EncodeError::PacketTooLarge { packet })?;
    put_varint(sink, length, packet)?;
    properties.write(sink, packet)
}

fn invalid(packet: &'static str, id: u8) -> EncodeError {
    EncodeError::InvalidPropertyValue { packet, id }
}

fn put_u8_property<S: Sink>(sink: &mut S, id: u8, value: Option<u8>) {
    if let Some(value) = value {
        sink.put_u8(id);
        sink.put_u8(value);
    }
}

fn put_flag_property<S: Sink>(sink: &mut S, id: u8, value: Option<bool>) {
    put_u8_property(sink, id, value.map(u8::from));
}

fn put_u16_property<S: Sink>(sink: &mut S, id: u8, value: Option<u16>) {
    if let Some(value) = value {
        sink.put_u8(id);
        sink.put_u16(value);
    }
}

fn put_u32_property<S: Sink>(sink: &mut S, id: u8, value: Option<u32>) {
    if let Some(value) = value {
        sink.put_u8(id);
        sink.put_u32(value);
    }
}

fn put_string_property<S: Sink>(
    sink: &mut S,
    id: u8,
    value: Option<&str>,
    packet: &'static str,
) -> Result<(), EncodeError> {
    if let Some(value) = value {
        sink.put_u8(id);
        put_string(sink, value, packet)?;
    }
    Ok(())
}

fn put_binary_property<S: Sink>(
    sink: &mut S,
    id: u8,
    value: Option<&[u8]>,
    packet: &'static str,
) -> Result<(), EncodeError> {
    if let Some(value) = value {
        sink.put_u8(id);
        put_binary(sink, value, packet)?;
    }
    Ok(())
}

fn put_user_properties<S: Sink>(
    sink: &mut S,
    pairs: &[UserProperty],
    packet: &'static str,
) -> Result<(), EncodeError> {
    for (name, value) in pairs {
        sink.put_u8(USER_PROPERTY);
        put_string(sink, name, packet)?;
        put_string(sink, value, packet)?;
    }
    Ok(())
}

fn check_non_zero_u16(value: Option<u16>, id: u8, packet: &'static str) -> Result<(), EncodeError> {
    if value == Some(0) {
        return Err(invalid(packet, id));
    }
    Ok(())
}

fn check_non_zero_u32(value: Option<u32>, id: u8, packet: &'static str) -> Result<(), EncodeError> {
    if value == Some(0) {
        return Err(invalid(packet, id));
    }
    Ok(())
}

fn check_payload_format(value: Option<u8>, packet: &'static str) -> Result<(), EncodeError> {
    if matches!(value, Some(value) if value > 1) {
        return Err(invalid(packet, PAYLOAD_FORMAT_INDICATOR));
    }
    Ok(())
}

fn check_response_topic(value: Option<&str>, packet: &'static str) -> Result<(), EncodeError> {
    if matches!(value, Some(topic) if topic.is_empty() || contains_wildcard(topic)) {
        return Err(invalid(packet, RESPONSE_TOPIC));
    }
    Ok(())
}

fn put_subscription_identifier<S: Sink>(
    sink: &mut S,
    value: u32,
    packet: &'static str,
) -> Result<(), EncodeError> {
    if value == 0 || value > VARINT_MAX {
        return Err(invalid(packet, SUBSCRIPTION_IDENTIFIER));
    }
    sink.put_u8(SUBSCRIPTION_IDENTIFIER);
    put_varint(sink, value, packet)
}

impl WriteProperties for ConnectProperties {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        check_non_zero_u16(self.receive_maximum, RECEIVE_MAXIMUM, packet)?;
        check_non_zero_u32(self.maximum_packet_size, MAXIMUM_PACKET_SIZE, packet)?;
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(EncodeError::AuthenticationDataWithoutMethod);
        }
        put_u32_property(sink, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16_property(sink, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u32_property(sink, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_u16_property(sink, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_flag_property(
            sink,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_flag_property(
            sink,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_string_property(
            sink,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
            packet,
        )?;
        put_binary_property(
            sink,
            AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
            packet,
        )?;
        put_user_properties(sink, &self.user_properties, packet)
    }
}

impl WriteProperties for WillProperties {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        check_payload_format(self.payload_format_indicator, packet)?;
        check_response_topic(self.response_topic.as_deref(), packet)?;
        put_u32_property(sink, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_u8_property(
            sink,
            PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        put_u32_property(sink, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_string_property(sink, CONTENT_TYPE, self.content_type.as_deref(), packet)?;
        put_string_property(sink, RESPONSE_TOPIC, self.response_topic.as_deref(), packet)?;
        put_binary_property(
            sink,
            CORRELATION_DATA,
            self.correlation_data.as_deref(),
            packet,
        )?;
        put_user_properties(sink, &self.user_properties, packet)
    }
}

impl WriteProperties for ConnAckProperties {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        check_non_zero_u16(self.receive_maximum, RECEIVE_MAXIMUM, packet)?;
        check_non_zero_u32(self.maximum_packet_size, MAXIMUM_PACKET_SIZE, packet)?;
        let maximum_qos = match self.maximum_qos {
            None => None,
            Some(QoS::AtMostOnce) => Some(0),
            Some(QoS::AtLeastOnce) => Some(1),
            // 2 is what an absent property means; the spec forbids sending it.
            Some(QoS::ExactlyOnce) => return Err(invalid(packet, MAXIMUM_QOS)),
        };
        put_u32_property(sink, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16_property(sink, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u8_property(sink, MAXIMUM_QOS, maximum_qos);
        put_flag_property(sink, RETAIN_AVAILABLE, self.retain_available);
        put_u32_property(sink, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_string_property(
            sink,
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_deref(),
            packet,
        )?;
        put_u16_property(sink, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_string_property(sink, REASON_STRING, self.reason_string.as_deref(), packet)?;
        put_flag_property(
            sink,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_flag_property(
            sink,
            SUBSCRIPTION_IDENTIFIERS_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_flag_property(
            sink,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16_property(sink, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_string_property(
            sink,
            RESPONSE_INFORMATION,
            self.response_information.as_deref(),
            packet,
        )?;
        put_string_property(
            sink,
            SERVER_REFERENCE,
            self.server_reference.as_deref(),
            packet,
        )?;
        put_string_property(
            sink,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
            packet,
        )?;
        put_binary_property(
            sink,
            AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
            packet,
        )?;
        put_user_properties(sink, &self.user_properties, packet)
    }
}

impl WriteProperties for PublishProperties {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        check_payload_format(self.payload_format_indicator, packet)?;
        check_response_topic(self.response_topic.as_deref(), packet)?;
        check_non_zero_u16(self.topic_alias, TOPIC_ALIAS, packet)?;
        put_u8_property(
            sink,
            PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        put_u32_property(sink, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_u16_property(sink, TOPIC_ALIAS, self.topic_alias);
        put_string_property(sink, RESPONSE_TOPIC, self.response_topic.as_deref(), packet)?;
        put_binary_property(
            sink,
            CORRELATION_DATA,
            self.correlation_data.as_deref(),
            packet,
        )?;
        put_user_properties(sink, &self.user_properties, packet)?;
        for identifier in &self.subscription_identifiers {
            put_subscription_identifier(sink, *identifier, packet)?;
        }
        put_string_property(sink, CONTENT_TYPE, self.content_type.as_deref(), packet)
    }
}

/// The reason string and user properties of the acknowledgements.
pub(crate) struct AckProperties<'a> {
    pub(crate) reason_string: Option<&'a str>,
    pub(crate) user_properties: &'a [UserProperty],
}

impl AckProperties<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl WriteProperties for AckProperties<'_> {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        put_string_property(sink, REASON_STRING, self.reason_string, packet)?;
        put_user_properties(sink, self.user_properties, packet)
    }
}

impl WriteProperties for Subscribe {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        if let Some(identifier) = self.subscription_identifier {
            put_subscription_identifier(sink, identifier, packet)?;
        }
        put_user_properties(sink, &self.user_properties, packet)
    }
}

impl WriteProperties for Unsubscribe {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        put_user_properties(sink, &self.user_properties, packet)
    }
}

/// True when a DISCONNECT has no properties, so the short forms apply.
pub(crate) fn disconnect_is_bare(disconnect: &Disconnect) -> bool {
    disconnect.session_expiry_interval.is_none()
        && disconnect.reason_string.is_none()
        && disconnect.user_properties.is_empty()
        && disconnect.server_reference.is_none()
}

impl WriteProperties for Disconnect {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        put_u32_property(sink, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_string_property(sink, REASON_STRING, self.reason_string.as_deref(), packet)?;
        put_string_property(
            sink,
            SERVER_REFERENCE,
            self.server_reference.as_deref(),
            packet,
        )?;
        put_user_properties(sink, &self.user_properties, packet)
    }
}

/// True when an AUTH has no properties, so the short forms apply.
pub(crate) fn auth_is_bare(auth: &Auth) -> bool {
    auth.authentication_method.is_none()
        && auth.authentication_data.is_none()
        && auth.reason_string.is_none()
        && auth.user_properties.is_empty()
}

impl WriteProperties for Auth {
    fn write<S: Sink>(&self, sink: &mut S, packet: &'static str) -> Result<(), EncodeError> {
        put_string_property(
            sink,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
            packet,
        )?;
        put_binary_property(
            sink,
            AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
            packet,
        )?;
        put_string_property(sink, REASON_STRING, self.reason_string.as_deref(), packet)?;
        put_user_properties(sink, &self.user_properties, packet)
    }
}
