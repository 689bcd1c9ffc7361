//! Encoder tests: the 3.x down-conversions, the v5 short forms, and every
//! EncodeError. The byte-exact layouts of valid packets are checked both ways
//! in `decode/tests.rs`.

use bytes::{Bytes, BytesMut};

use crate::*;

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap();
    assert_eq!(encoded_len(packet, version).unwrap(), out.len());
    out.to_vec()
}

/// Checks that encoding fails with `expected`, writes nothing, and that
/// `encoded_len` agrees.
fn refused(packet: &Packet, version: ProtocolVersion, expected: EncodeError) {
    let mut out = BytesMut::from(&b"keep"[..]);
    assert_eq!(encode(packet, version, &mut out), Err(expected));
    assert_eq!(&out[..], b"keep", "nothing may be written on error");
    assert_eq!(encoded_len(packet, version), Err(expected));
}

fn publish(topic: &str) -> Publish {
    Publish {
        topic: topic.into(),
        ..Publish::default()
    }
}

#[test]
fn v3_leaves_out_v5_only_fields() {
    let ack = Ack {
        packet_id: 7,
        reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        reason_string: Some("why".into()),
        user_properties: vec![("k".into(), "v".into())],
    };
    assert_eq!(bytes_of(&Packet::PubAck(ack), V3), [0x40, 0x02, 0x00, 0x07]);
    let disconnect = Disconnect {
        reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
        session_expiry_interval: Some(1),
        ..Disconnect::default()
    };
    assert_eq!(bytes_of(&Packet::Disconnect(disconnect), V3), [0xE0, 0x00]);
    let unsuback = UnsubAck {
        packet_id: 7,
        reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        ..UnsubAck::default()
    };
    assert_eq!(
        bytes_of(&Packet::UnsubAck(unsuback), V3),
        [0xB0, 0x02, 0x00, 0x07]
    );
    let mut message = publish("t");
    message.properties.message_expiry_interval = Some(5);
    assert_eq!(
        bytes_of(&Packet::Publish(message), V3),
        [0x30, 0x03, 0x00, 0x01, b't']
    );
    // No local, retain as published and retain handling do not exist in 3.x.
    let subscribe = Subscribe {
        packet_id: 1,
        subscription_identifier: Some(9),
        filters: vec![(
            "$share/g/t".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
        ..Subscribe::default()
    };
    let bytes = bytes_of(&Packet::Subscribe(subscribe), V3);
    assert_eq!(bytes.last(), Some(&0x01));
}

#[test]
fn v3_suback_failure_codes_become_0x80() {
    let suback = SubAck {
        packet_id: 1,
        reason_codes: vec![
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        ],
        ..SubAck::default()
    };
    assert_eq!(
        bytes_of(&Packet::SubAck(suback), V3),
        [0x90, 0x05, 0x00, 0x01, 0x02, 0x80, 0x80]
    );
}

#[test]
fn v3_connack_return_codes() {
    for (reason, code) in [
        (ReasonCode::SUCCESS, 0),
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
        (ReasonCode::SERVER_BUSY, 3),
        (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
        (ReasonCode::BANNED, 5),
    ] {
        let connack = ConnAck {
            reason_code: reason,
            ..ConnAck::default()
        };
        assert_eq!(
            bytes_of(&Packet::ConnAck(connack), V3),
            [0x20, 0x02, 0x00, code]
        );
    }
    // 3.1 has no session present flag.
    let connack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    assert_eq!(
        bytes_of(&Packet::ConnAck(connack), V3_1),
        [0x20, 0x02, 0x00, 0x00]
    );
}

#[test]
fn v5_short_forms() {
    // 3.4.2.1: success without properties is two bytes.
    assert_eq!(
        bytes_of(&Packet::PubComp(Ack::new(1)), V5),
        [0x70, 0x02, 0x00, 0x01]
    );
    // A reason code without properties omits the property length.
    assert_eq!(
        bytes_of(
            &Packet::PubRec(Ack::with_reason(1, ReasonCode::QUOTA_EXCEEDED)),
            V5
        ),
        [0x50, 0x03, 0x00, 0x01, 0x97]
    );
    // Success with properties needs the reason code and the property length.
    let ack = Ack {
        packet_id: 1,
        user_properties: vec![(String::new(), String::new())],
        ..Ack::default()
    };
    assert_eq!(
        bytes_of(&Packet::PubAck(ack), V5),
        [0x40, 0x09, 0x00, 0x01, 0x00, 0x05, 0x26, 0x00, 0x00, 0x00, 0x00]
    );
    // 3.14.2.1 and 3.15.2.1.
    assert_eq!(
        bytes_of(&Packet::Disconnect(Disconnect::default()), V5),
        [0xE0, 0x00]
    );
    assert_eq!(
        bytes_of(
            &Packet::Disconnect(Disconnect::with_reason(ReasonCode::KEEP_ALIVE_TIMEOUT)),
            V5
        ),
        [0xE0, 0x01, 0x8D]
    );
    assert_eq!(bytes_of(&Packet::Auth(Auth::default()), V5), [0xF0, 0x00]);
}

#[test]
fn auth_needs_a_method_unless_bare_success() {
    // 3.15.2.2.2
    let auth = Auth {
        reason_code: ReasonCode::RE_AUTHENTICATE,
        ..Auth::default()
    };
    refused(
        &Packet::Auth(auth.clone()),
        V5,
        EncodeError::AuthenticationMethodMissing,
    );
    let auth = Auth {
        authentication_method: Some("M".into()),
        ..auth
    };
    assert_eq!(
        bytes_of(&Packet::Auth(auth), V5),
        [0xF0, 0x06, 0x19, 0x04, 0x15, 0x00, 0x01, b'M']
    );
}

#[test]
fn qos_0_publish_has_no_packet_id_or_dup() {
    // [MQTT-2.2.1-2], [MQTT-3.3.1-2]: they do not exist at QoS 0.
    let message = Publish {
        dup: true,
        packet_id: Some(5),
        ..publish("t")
    };
    assert_eq!(
        bytes_of(&Packet::Publish(message), V3),
        [0x30, 0x03, 0x00, 0x01, b't']
    );
}

#[test]
fn auth_does_not_exist_in_3_x() {
    for version in [V3_1, V3] {
        refused(
            &Packet::Auth(Auth::default()),
            version,
            EncodeError::NotInVersion {
                packet: "AUTH",
                version,
            },
        );
    }
}

#[test]
fn oversized_strings_and_binary() {
    let long = "x".repeat(65_536);
    refused(
        &Packet::Publish(publish(&long)),
        V3,
        EncodeError::StringTooLong { packet: "PUBLISH" },
    );
    // 65,535 bytes is still fine.
    assert!(encoded_len(&Packet::Publish(publish(&long[1..])), V3).is_ok());
    let connect = Connect {
        protocol: V3,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: Some("u".into()),
        password: Some(Bytes::from(vec![0; 65_536])),
        properties: ConnectProperties::default(),
    };
    refused(
        &Packet::Connect(Box::new(connect)),
        V3,
        EncodeError::BinaryTooLong { packet: "CONNECT" },
    );
}

#[test]
fn packet_over_the_remaining_length_limit() {
    // 268,435,455 is the largest remaining length (2.1.4). The counting pass
    // never touches the zeroed payload, so this does not cost real memory.
    let message = Publish {
        payload: Bytes::from(vec![0u8; 268_435_455 - 3]),
        ..publish("t")
    };
    assert_eq!(
        encoded_len(&Packet::Publish(message.clone()), V3),
        Ok(1 + 4 + 268_435_455)
    );
    let message = Publish {
        payload: Bytes::from(vec![0u8; 268_435_455 - 2]),
        ..message
    };
    refused(
        &Packet::Publish(message),
        V3,
        EncodeError::PacketTooLarge { packet: "PUBLISH" },
    );
}

#[test]
fn packet_ids() {
    let message = Publish {
        qos: QoS::AtLeastOnce,
        ..publish("t")
    };
    refused(
        &Packet::Publish(message.clone()),
        V3,
        EncodeError::MissingPacketId { packet: "PUBLISH" },
    );
    refused(
        &Packet::Publish(Publish {
            packet_id: Some(0),
            ..message
        }),
        V5,
        EncodeError::MissingPacketId { packet: "PUBLISH" },
    );
    refused(
        &Packet::PubRel(Ack::new(0)),
        V3,
        EncodeError::MissingPacketId { packet: "PUBREL" },
    );
    refused(
        &Packet::UnsubAck(UnsubAck::default()),
        V3,
        EncodeError::MissingPacketId { packet: "UNSUBACK" },
    );
}

#[test]
fn topic_names() {
    for topic in ["", "a/+", "#"] {
        refused(
            &Packet::Publish(publish(topic)),
            V3,
            EncodeError::InvalidTopicName { packet: "PUBLISH" },
        );
    }
    // v5: empty only with a topic alias.
    let mut message = publish("");
    refused(
        &Packet::Publish(message.clone()),
        V5,
        EncodeError::InvalidTopicName { packet: "PUBLISH" },
    );
    message.properties.topic_alias = Some(1);
    assert!(encoded_len(&Packet::Publish(message.clone()), V5).is_ok());
    // A topic alias does not exist in 3.x, so it cannot stand in there.
    refused(
        &Packet::Publish(message),
        V3,
        EncodeError::InvalidTopicName { packet: "PUBLISH" },
    );
    refused(
        &Packet::Publish(publish("a\0b")),
        V3,
        EncodeError::NullCharacter { packet: "PUBLISH" },
    );
}

#[test]
fn reason_codes_the_packet_does_not_allow() {
    refused(
        &Packet::PubAck(Ack::with_reason(1, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)),
        V5,
        EncodeError::InvalidReasonCode {
            packet: "PUBACK",
            code: 0x92,
        },
    );
    refused(
        &Packet::Disconnect(Disconnect::with_reason(ReasonCode::BANNED)),
        V5,
        EncodeError::InvalidReasonCode {
            packet: "DISCONNECT",
            code: 0x8A,
        },
    );
    let suback = SubAck {
        packet_id: 1,
        reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        ..SubAck::default()
    };
    refused(
        &Packet::SubAck(suback),
        V5,
        EncodeError::InvalidReasonCode {
            packet: "SUBACK",
            code: 0x11,
        },
    );
}

#[test]
fn property_values_the_decoder_would_refuse() {
    let connack = |properties| {
        Packet::ConnAck(ConnAck {
            properties,
            ..ConnAck::default()
        })
    };
    refused(
        &connack(ConnAckProperties {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..ConnAckProperties::default()
        }),
        V5,
        EncodeError::InvalidPropertyValue {
            packet: "CONNACK",
            id: 0x24,
        },
    );
    refused(
        &connack(ConnAckProperties {
            receive_maximum: Some(0),
            ..ConnAckProperties::default()
        }),
        V5,
        EncodeError::InvalidPropertyValue {
            packet: "CONNACK",
            id: 0x21,
        },
    );
    let mut message = publish("t");
    message.properties.topic_alias = Some(0);
    refused(
        &Packet::Publish(message.clone()),
        V5,
        EncodeError::InvalidPropertyValue {
            packet: "PUBLISH",
            id: 0x23,
        },
    );
    message.properties.topic_alias = None;
    message.properties.subscription_identifiers = vec![268_435_456];
    refused(
        &Packet::Publish(message.clone()),
        V5,
        EncodeError::InvalidPropertyValue {
            packet: "PUBLISH",
            id: 0x0B,
        },
    );
    message.properties.subscription_identifiers = Vec::new();
    message.properties.payload_format_indicator = Some(2);
    refused(
        &Packet::Publish(message),
        V5,
        EncodeError::InvalidPropertyValue {
            packet: "PUBLISH",
            id: 0x01,
        },
    );
}

#[test]
fn connect_rules() {
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties::default(),
    };
    // Password without user name: fine in v5, refused in 3.1.1 ([MQTT-3.1.2-22]).
    assert!(encoded_len(&Packet::Connect(Box::new(connect.clone())), V5).is_ok());
    let v3 = Connect {
        protocol: V3,
        ..connect.clone()
    };
    refused(
        &Packet::Connect(Box::new(v3)),
        V3,
        EncodeError::PasswordWithoutUsername,
    );
    // The CONNECT says which version it is.
    refused(
        &Packet::Connect(Box::new(connect.clone())),
        V3,
        EncodeError::ConnectVersionMismatch {
            connect: V5,
            version: V3,
        },
    );
    let mut with_data = connect;
    with_data.properties.authentication_data = Some(Bytes::from_static(b"d"));
    refused(
        &Packet::Connect(Box::new(with_data)),
        V5,
        EncodeError::AuthenticationDataWithoutMethod,
    );
}

#[test]
fn empty_lists_and_session_present() {
    refused(
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            ..Subscribe::default()
        }),
        V3,
        EncodeError::Empty {
            packet: "SUBSCRIBE",
        },
    );
    refused(
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            ..Unsubscribe::default()
        }),
        V5,
        EncodeError::Empty {
            packet: "UNSUBSCRIBE",
        },
    );
    refused(
        &Packet::UnsubAck(UnsubAck {
            packet_id: 1,
            ..UnsubAck::default()
        }),
        V5,
        EncodeError::Empty { packet: "UNSUBACK" },
    );
    refused(
        &Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..ConnAck::default()
        }),
        V3,
        EncodeError::SessionPresentOnRefusal,
    );
    refused(
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(
                "$share/g/t".into(),
                SubscriptionOptions {
                    no_local: true,
                    ..SubscriptionOptions::default()
                },
            )],
            ..Subscribe::default()
        }),
        V5,
        EncodeError::NoLocalOnSharedSubscription,
    );
}

#[test]
fn encode_appends() {
    let mut out = BytesMut::from(&[0xAA][..]);
    encode(&Packet::PingReq, V3, &mut out).unwrap();
    encode(&Packet::PingResp, V5, &mut out).unwrap();
    assert_eq!(&out[..], [0xAA, 0xC0, 0x00, 0xD0, 0x00]);
}
