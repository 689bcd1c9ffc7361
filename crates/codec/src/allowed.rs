//! Which reason codes each MQTT 5 packet may carry (v5 2.4 and the reason code
//! table of each packet). The decoder treats any other value as malformed and
//! the encoder refuses to write it, so both sides agree.

use crate::ReasonCode;

/// The packets that carry reason codes, grouped by the set they allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReasonSet {
    ConnAck,
    /// PUBACK and PUBREC (3.4.2.1, 3.5.2.1).
    PubAck,
    /// PUBREL and PUBCOMP (3.6.2.1, 3.7.2.1).
    PubRel,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

/// True when `code` may appear in an MQTT 5 packet of this kind.
pub(crate) fn is_allowed(set: ReasonSet, code: ReasonCode) -> bool {
    match set {
        ReasonSet::ConnAck => matches!(
            code.0,
            0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
        ),
        ReasonSet::PubAck => matches!(
            code.0,
            0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
        ),
        ReasonSet::PubRel => matches!(code.0, 0x00 | 0x92),
        ReasonSet::SubAck => matches!(
            code.0,
            0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
        ),
        ReasonSet::UnsubAck => matches!(code.0, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
        ReasonSet::Disconnect => matches!(
            code.0,
            0x00 | 0x04
                | 0x80..=0x83
                | 0x87
                | 0x89
                | 0x8B
                | 0x8D..=0x90
                | 0x93..=0xA2
        ),
        ReasonSet::Auth => matches!(code.0, 0x00 | 0x18 | 0x19),
    }
}

/// The MQTT 3.1.1 SUBACK return codes: granted QoS 0, 1, 2 or failure 0x80.
pub(crate) fn is_v3_suback(code: u8) -> bool {
    matches!(code, 0x00..=0x02 | 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_checks_against_the_tables() {
        assert!(is_allowed(ReasonSet::ConnAck, ReasonCode::BANNED));
        assert!(!is_allowed(
            ReasonSet::ConnAck,
            ReasonCode::SERVER_SHUTTING_DOWN
        ));
        assert!(is_allowed(
            ReasonSet::PubAck,
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        ));
        assert!(!is_allowed(
            ReasonSet::PubAck,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        ));
        assert!(is_allowed(
            ReasonSet::PubRel,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        ));
        assert!(is_allowed(ReasonSet::SubAck, ReasonCode::GRANTED_QOS_2));
        assert!(!is_allowed(ReasonSet::SubAck, ReasonCode(0x03)));
        assert!(is_allowed(
            ReasonSet::UnsubAck,
            ReasonCode::NO_SUBSCRIPTION_EXISTED
        ));
        assert!(is_allowed(
            ReasonSet::Disconnect,
            ReasonCode::DISCONNECT_WITH_WILL_MESSAGE
        ));
        assert!(is_allowed(
            ReasonSet::Disconnect,
            ReasonCode::MAXIMUM_CONNECT_TIME
        ));
        assert!(!is_allowed(
            ReasonSet::Disconnect,
            ReasonCode::PACKET_IDENTIFIER_IN_USE
        ));
        assert!(!is_allowed(ReasonSet::Disconnect, ReasonCode::BANNED));
        assert!(is_allowed(ReasonSet::Auth, ReasonCode::RE_AUTHENTICATE));
        assert!(!is_allowed(ReasonSet::Auth, ReasonCode::UNSPECIFIED_ERROR));
    }
}
