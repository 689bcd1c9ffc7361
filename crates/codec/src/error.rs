//! Decode and encode errors.
//!
//! A [`DecodeError`] means the connection must close. Each variant names the
//! spec statement it enforces (the MQTT 5 number first, the 3.1.1 number in
//! brackets where it differs) and maps to the reason code the server sends in
//! its DISCONNECT or CONNACK in exactly one place, [`DecodeError::reason_code`].
//! The errors are small and `Copy`: they carry identifiers, never payloads.

use crate::properties::property_name;
use crate::{ProtocolVersion, ReasonCode};

/// Why incoming bytes are not a valid packet. The connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    // ----- framing -----
    #[error("[§1.5.5] a variable byte integer ({what}) is longer than 4 bytes")]
    VariableByteIntegerTooLong { what: &'static str },
    #[error(
        "[MQTT-1.5.5-1] a variable byte integer ({what}) does not use the minimum number of bytes"
    )]
    VariableByteIntegerNotMinimal { what: &'static str },
    #[error("[MQTT-3.2.2-15] (client side: [MQTT-3.1.2-24]) a packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: u32, max: u32 },
    #[error("[§2.1.2] packet type {packet_type} is reserved in this protocol version")]
    ReservedPacketType { packet_type: u8 },
    #[error("[MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-1]) {packet} has reserved fixed header flags 0x{flags:X}")]
    InvalidFixedHeaderFlags { packet: &'static str, flags: u8 },
    #[error("[§2.1.4] {packet} is longer than its remaining length says")]
    UnexpectedEnd { packet: &'static str },
    #[error("[§2.1.4] {packet} has bytes left over after its last field")]
    TrailingBytes { packet: &'static str },

    // ----- CONNECT -----
    #[error("[MQTT-3.1.0-1] the first packet from a client is {packet}, not CONNECT")]
    FirstPacketNotConnect { packet: &'static str },
    #[error("[MQTT-3.1.0-2] a second CONNECT on the same connection")]
    SecondConnect,
    #[error("[MQTT-3.1.2-1] CONNECT protocol name is neither \"MQTT\" nor \"MQIsdp\"")]
    UnknownProtocolName,
    #[error("[MQTT-3.1.2-2] unsupported protocol level {level}")]
    UnsupportedProtocolLevel { level: u8 },
    #[error("[MQTT-3.1.2-3] CONNECT reserved flag is set")]
    ConnectReservedFlag,
    #[error("[MQTT-3.1.2-11] (3.1.1: [MQTT-3.1.2-13]) will QoS is set without a will")]
    WillQosWithoutWill,
    #[error("[MQTT-3.1.2-12] (3.1.1: [MQTT-3.1.2-14]) will QoS is 3")]
    InvalidWillQos,
    #[error("[MQTT-3.1.2-13] (3.1.1: [MQTT-3.1.2-15]) will retain is set without a will")]
    WillRetainWithoutWill,
    #[error("[MQTT-3.1.2-22] password flag is set without the user name flag")]
    PasswordWithoutUsername,
    #[error("[§3.1.2.11.10] authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,
    #[error("[§3.15.2.2.2] AUTH without an authentication method")]
    AuthenticationMethodMissing,

    // ----- CONNACK -----
    #[error("[MQTT-3.2.2-1] CONNACK acknowledge flags have reserved bits set")]
    ConnAckReservedFlags,
    #[error("[MQTT-3.2.2-6] (3.1.1: [MQTT-3.2.2-4]) CONNACK refuses the connection but says a session is present")]
    SessionPresentOnRefusal,
    #[error("[§3.2.2.3 of 3.1.1] CONNACK return code {code} is reserved")]
    InvalidConnAckReturnCode { code: u8 },

    // ----- strings and topics -----
    #[error(
        "[MQTT-1.5.4-1] (3.1.1: [MQTT-1.5.3-1]) a string in {packet} is not well-formed UTF-8"
    )]
    InvalidUtf8 { packet: &'static str },
    #[error("[MQTT-1.5.4-2] (3.1.1: [MQTT-1.5.3-2]) a string in {packet} contains U+0000")]
    NullCharacter { packet: &'static str },
    #[error("[MQTT-3.3.2-2] a topic name in {packet} contains a wildcard character")]
    TopicNameWildcard { packet: &'static str },
    #[error("[MQTT-4.7.3-1] (v5: 3.3.2.3.4) a topic name in {packet} is empty and no topic alias stands in for it")]
    EmptyTopicName { packet: &'static str },

    // ----- PUBLISH and packet identifiers -----
    #[error("[MQTT-3.3.1-4] PUBLISH has QoS 3")]
    InvalidQos,
    #[error("[MQTT-3.3.1-2] PUBLISH with QoS 0 has the DUP flag set")]
    DupWithQos0,
    #[error("[MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-1]) {packet} has packet identifier 0")]
    ZeroPacketId { packet: &'static str },
    #[error("[MQTT-3.3.2-8] PUBLISH has topic alias 0")]
    TopicAliasZero,

    // ----- SUBSCRIBE and UNSUBSCRIBE -----
    #[error("[MQTT-3.8.3-3] SUBSCRIBE has no topic filter")]
    SubscribeWithoutFilters,
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE has no topic filter")]
    UnsubscribeWithoutFilters,
    #[error("[MQTT-3.8.3-5] (3.1.1: [MQTT-3-8.3-4]) SUBSCRIBE options have reserved bits set")]
    SubscriptionOptionsReserved,
    #[error("[§3.8.3.1] (3.1.1: [MQTT-3-8.3-4]) SUBSCRIBE requests QoS 3")]
    InvalidSubscriptionQos,
    #[error("[§3.8.3.1] SUBSCRIBE has retain handling 3")]
    InvalidRetainHandling,
    #[error("[MQTT-3.8.3-4] SUBSCRIBE sets no local on a shared subscription")]
    NoLocalOnSharedSubscription,
    #[error("[§3.9.3] {packet} carries no reason code")]
    NoReasonCodes { packet: &'static str },

    // ----- reason codes and properties -----
    #[error("[§2.4] {packet} carries reason code 0x{code:02X}, which that packet does not allow")]
    InvalidReasonCode { packet: &'static str, code: u8 },
    #[error("[§2.2.2.2] unknown property identifier 0x{id:02X} in {packet}")]
    UnknownProperty { packet: &'static str, id: u32 },
    #[error("[§2.2.2.2] property {} (0x{id:02X}) is not allowed in {packet}", property_name(*.id))]
    PropertyNotAllowed { packet: &'static str, id: u8 },
    #[error("[§2.2.2.2] property {} (0x{id:02X}) appears more than once in {packet}", property_name(*.id))]
    DuplicateProperty { packet: &'static str, id: u8 },
    #[error("[§2.2.2.2] property {} (0x{id:02X}) in {packet} has a value the spec forbids", property_name(*.id))]
    InvalidPropertyValue { packet: &'static str, id: u8 },
}

impl DecodeError {
    /// The MQTT 5 reason code for this error: what the server puts in its
    /// DISCONNECT (or CONNACK, for an error in CONNECT) before closing. For
    /// 3.x connections map it with [`ReasonCode::to_v3_connack`] or just close.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnknownProtocolName | UnsupportedProtocolLevel { .. } => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            TopicNameWildcard { .. } => ReasonCode::TOPIC_NAME_INVALID,
            TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            FirstPacketNotConnect { .. }
            | SecondConnect
            | AuthenticationDataWithoutMethod
            | AuthenticationMethodMissing
            | SessionPresentOnRefusal
            | EmptyTopicName { .. }
            | ZeroPacketId { .. }
            | SubscribeWithoutFilters
            | UnsubscribeWithoutFilters
            | InvalidSubscriptionQos
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. } => ReasonCode::PROTOCOL_ERROR,
            VariableByteIntegerTooLong { .. }
            | VariableByteIntegerNotMinimal { .. }
            | ReservedPacketType { .. }
            | InvalidFixedHeaderFlags { .. }
            | UnexpectedEnd { .. }
            | TrailingBytes { .. }
            | ConnectReservedFlag
            | WillQosWithoutWill
            | InvalidWillQos
            | WillRetainWithoutWill
            | PasswordWithoutUsername
            | ConnAckReservedFlags
            | InvalidConnAckReturnCode { .. }
            | InvalidUtf8 { .. }
            | NullCharacter { .. }
            | InvalidQos
            | DupWithQos0
            | SubscriptionOptionsReserved
            | NoReasonCodes { .. }
            | InvalidReasonCode { .. }
            | UnknownProperty { .. }
            | PropertyNotAllowed { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }

    /// For an error the server must answer with a CONNACK in a protocol
    /// version other than the one the client asked for: the version whose
    /// CONNACK format to use. An unsupported protocol level is answered with
    /// the 3.1.1 CONNACK return code 0x01 ([MQTT-3.1.2-2] of 3.1.1: a client
    /// of any level can read the 2-byte 3.1.1 form).
    ///
    /// `None` otherwise: either no CONNACK is owed (an unknown protocol name
    /// means the peer is not speaking MQTT and the server just closes,
    /// [MQTT-3.1.2-1]), or the CONNACK goes in the client's own version, which
    /// [`Decoder::version`](crate::Decoder::version) reports once the
    /// CONNECT's protocol level was read.
    pub fn connack_version(&self) -> Option<ProtocolVersion> {
        match self {
            DecodeError::UnsupportedProtocolLevel { .. } => Some(ProtocolVersion::V3_1_1),
            _ => None,
        }
    }
}

/// Why a packet cannot be put on the wire in the requested version. Nothing
/// has been written to the output buffer when this is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("[§1.5.4] a string in {packet} is longer than 65,535 bytes")]
    StringTooLong { packet: &'static str },
    #[error("[§1.5.6] binary data in {packet} is longer than 65,535 bytes")]
    BinaryTooLong { packet: &'static str },
    #[error("[MQTT-1.5.4-2] a string in {packet} contains U+0000")]
    NullCharacter { packet: &'static str },
    #[error("[§2.1.4] {packet} would have a remaining length over 268,435,455 bytes")]
    PacketTooLarge { packet: &'static str },
    #[error("[§2.1.2] {packet} does not exist in MQTT {version:?}")]
    NotInVersion {
        packet: &'static str,
        version: ProtocolVersion,
    },
    #[error("[MQTT-2.2.1-3] {packet} needs a non-zero packet identifier")]
    MissingPacketId { packet: &'static str },
    #[error("[MQTT-3.3.2-2] a topic name in {packet} is empty or contains a wildcard character")]
    InvalidTopicName { packet: &'static str },
    #[error("[MQTT-3.8.3-3] {packet} needs at least one topic filter or reason code")]
    Empty { packet: &'static str },
    #[error("[§2.4] reason code 0x{code:02X} is not allowed in {packet}")]
    InvalidReasonCode { packet: &'static str, code: u8 },
    #[error("[§2.2.2.2] property {} (0x{id:02X}) in {packet} has a value the spec forbids", property_name(*.id))]
    InvalidPropertyValue { packet: &'static str, id: u8 },
    #[error("[§3.1.2.11.10] authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,
    #[error(
        "[MQTT-3.2.2-6] a CONNACK that refuses the connection cannot have session present set"
    )]
    SessionPresentOnRefusal,
    #[error("[MQTT-3.8.3-4] no local cannot be set on a shared subscription")]
    NoLocalOnSharedSubscription,
    #[error("[MQTT-3.1.2-22] a 3.x CONNECT cannot carry a password without a user name")]
    PasswordWithoutUsername,
    #[error("[§3.15.2.2.2] an AUTH other than a bare success needs an authentication method")]
    AuthenticationMethodMissing,
    #[error("[MQTT-3.1.2-2] a CONNECT for protocol {connect:?} cannot be encoded as {version:?}")]
    ConnectVersionMismatch {
        connect: ProtocolVersion,
        version: ProtocolVersion,
    },
}
