//! Decoder tests: hand-written byte vectors from the spec's packet layouts
//! (each valid one is also checked against the encoder's output), and one
//! malformed case per check, asserting the error and its reason code.

use bytes::{Bytes, BytesMut};

use crate::*;

const MAX: u32 = 1024 * 1024;
const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A packet with its remaining length computed: `first` then `body`.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut length = body.len();
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Decodes one whole packet with a client decoder and checks it consumed everything.
fn decode(version: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut decoder = Decoder::client(version, MAX);
    let mut buf = BytesMut::from(bytes);
    let packet = decoder.decode(&mut buf)?.expect("a whole packet");
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(packet)
}

/// Checks the vector both ways: it decodes to `packet`, and `packet` encodes to it.
fn both_ways(version: ProtocolVersion, bytes: &[u8], packet: Packet) {
    assert_eq!(decode(version, bytes).unwrap(), packet);
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).unwrap();
    assert_eq!(&out[..], bytes, "encoding of {packet:?}");
    assert_eq!(encoded_len(&packet, version).unwrap(), bytes.len());
}

/// Decodes with a client decoder and returns the error, checking its reason code.
fn fails(version: ProtocolVersion, bytes: &[u8], reason: ReasonCode) -> DecodeError {
    let error = decode(version, bytes).expect_err("should be refused");
    assert_eq!(error.reason_code(), reason, "{error}");
    error
}

fn string(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A 3.1.1 CONNECT body with the given flags and payload.
fn connect_v3(flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(
        0x10,
        &cat(&[b"\x00\x04MQTT\x04", &[flags], b"\x00\x0a", payload]),
    )
}

/// A v5 CONNECT with the given flags, property block (with length) and payload.
fn connect_v5(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(
        0x10,
        &cat(&[
            b"\x00\x04MQTT\x05",
            &[flags],
            b"\x00\x0a",
            properties,
            payload,
        ]),
    )
}

// ---------------------------------------------------------------------------
// Valid vectors, 3.1.1
// ---------------------------------------------------------------------------

#[test]
fn connect_v3_1_1_with_will_username_password() {
    // 3.1.2.10: flags 0xCE = user name, password, will QoS 1, will, clean session.
    let bytes = [
        0x10, 0x1E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00,
        0x0A, // variable header
        0x00, 0x02, b'c', b'1', // client id
        0x00, 0x03, b'w', b'/', b't', // will topic
        0x00, 0x03, b'b', b'y', b'e', // will message
        0x00, 0x01, b'u', // user name
        0x00, 0x01, b'p', // password
    ];
    let connect = Connect {
        protocol: V3,
        clean_start: true,
        keep_alive: 10,
        client_id: "c1".into(),
        will: Some(Will {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties::default(),
    };
    both_ways(V3, &bytes, Packet::Connect(Box::new(connect)));
}

#[test]
fn connect_v3_1_uses_mqisdp() {
    let bytes = frame(
        0x10,
        &cat(&[b"\x00\x06MQIsdp\x03\x02\x00\x3c", &string("old")]),
    );
    let connect = Connect {
        protocol: V3_1,
        clean_start: true,
        keep_alive: 60,
        client_id: "old".into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    both_ways(V3_1, &bytes, Packet::Connect(Box::new(connect)));
}

#[test]
fn connack_v3_1_1() {
    both_ways(
        V3,
        &[0x20, 0x02, 0x01, 0x00],
        Packet::ConnAck(ConnAck {
            session_present: true,
            ..ConnAck::default()
        }),
    );
    // Return code 5, not authorized.
    both_ways(
        V3,
        &[0x20, 0x02, 0x00, 0x05],
        Packet::ConnAck(ConnAck {
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..ConnAck::default()
        }),
    );
}

#[test]
fn publish_v3_1_1_qos1() {
    both_ways(
        V3,
        &[
            0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
        ],
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: "a/b".into(),
            packet_id: Some(10),
            payload: Bytes::from_static(b"hi"),
            ..Publish::default()
        }),
    );
}

#[test]
fn publish_v3_1_1_qos2_dup_retain_empty_payload() {
    both_ways(
        V3,
        &[0x3D, 0x05, 0x00, 0x01, b't', 0xFF, 0xFF],
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: "t".into(),
            packet_id: Some(0xFFFF),
            ..Publish::default()
        }),
    );
}

#[test]
fn acks_v3_1_1() {
    both_ways(V3, &[0x40, 0x02, 0x00, 0x0A], Packet::PubAck(Ack::new(10)));
    both_ways(V3, &[0x50, 0x02, 0x00, 0x0A], Packet::PubRec(Ack::new(10)));
    both_ways(V3, &[0x62, 0x02, 0x00, 0x0A], Packet::PubRel(Ack::new(10)));
    both_ways(V3, &[0x70, 0x02, 0x00, 0x0A], Packet::PubComp(Ack::new(10)));
}

#[test]
fn subscribe_v3_1_1() {
    let bytes = [
        0x82, 0x0C, 0x00, 0x0A, // packet id 10
        0x00, 0x03, b'a', b'/', b'b', 0x01, // a/b QoS 1
        0x00, 0x01, b'#', 0x02, // # QoS 2
    ];
    let options = |qos| SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    };
    both_ways(
        V3,
        &bytes,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                ("a/b".into(), options(QoS::AtLeastOnce)),
                ("#".into(), options(QoS::ExactlyOnce)),
            ],
            ..Subscribe::default()
        }),
    );
}

#[test]
fn suback_v3_1_1() {
    both_ways(
        V3,
        &[0x90, 0x04, 0x00, 0x0A, 0x01, 0x80],
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
            ..SubAck::default()
        }),
    );
}

#[test]
fn unsubscribe_and_unsuback_v3_1_1() {
    both_ways(
        V3,
        &[0xA2, 0x05, 0x00, 0x0A, 0x00, 0x01, b'#'],
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 10,
            filters: vec!["#".into()],
            ..Unsubscribe::default()
        }),
    );
    both_ways(
        V3,
        &[0xB0, 0x02, 0x00, 0x0A],
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            ..UnsubAck::default()
        }),
    );
}

#[test]
fn ping_and_disconnect_v3_1_1() {
    both_ways(V3, &[0xC0, 0x00], Packet::PingReq);
    both_ways(V3, &[0xD0, 0x00], Packet::PingResp);
    both_ways(V3, &[0xE0, 0x00], Packet::Disconnect(Disconnect::default()));
}

// ---------------------------------------------------------------------------
// Valid vectors, 5.0
// ---------------------------------------------------------------------------

#[test]
fn connect_v5_with_properties() {
    // 3.1.2.12: user name, password, clean start; session expiry 10.
    let bytes = [
        0x10, 0x1A, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xC2, 0x00, 0x0A, // header
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // properties
        0x00, 0x02, b'c', b'1', // client id
        0x00, 0x01, b'u', // user name
        0x00, 0x01, b'p', // password
    ];
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: "c1".into(),
        will: None,
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties {
            session_expiry_interval: Some(10),
            ..ConnectProperties::default()
        },
    };
    both_ways(V5, &bytes, Packet::Connect(Box::new(connect)));
}

#[test]
fn connect_v5_will_properties_and_password_without_username() {
    // Will with delay 5 and a user property; password without user name is
    // allowed in MQTT 5 (3.1.2.9).
    let bytes = connect_v5(
        0x6E, // password, will retain, will QoS 1, will, clean start
        b"\x00",
        &cat(&[
            &string("c"),
            b"\x0c\x18\x00\x00\x00\x05\x26\x00\x01k\x00\x01v",
            &string("w"),
            b"\x00\x01x",
            b"\x00\x02pw",
        ]),
    );
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: "c".into(),
        will: Some(Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                user_properties: vec![("k".into(), "v".into())],
                ..WillProperties::default()
            },
        }),
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: ConnectProperties::default(),
    };
    both_ways(V5, &bytes, Packet::Connect(Box::new(connect)));
}

#[test]
fn connack_v5_with_property() {
    both_ways(
        V5,
        &[0x20, 0x06, 0x00, 0x00, 0x03, 0x22, 0x00, 0x0A],
        Packet::ConnAck(ConnAck {
            properties: ConnAckProperties {
                topic_alias_maximum: Some(10),
                ..ConnAckProperties::default()
            },
            ..ConnAck::default()
        }),
    );
    both_ways(
        V5,
        &[0x20, 0x03, 0x00, 0x8A, 0x00],
        Packet::ConnAck(ConnAck {
            reason_code: ReasonCode::BANNED,
            ..ConnAck::default()
        }),
    );
}

#[test]
fn publish_v5_with_properties() {
    let bytes = [
        0x31, 0x0D, 0x00, 0x03, b'a', b'/', b'b', // retain, QoS 0, topic a/b
        0x05, 0x01, 0x01, 0x23, 0x00, 0x05, // payload format 1, topic alias 5
        b'h', b'i',
    ];
    both_ways(
        V5,
        &bytes,
        Packet::Publish(Publish {
            retain: true,
            topic: "a/b".into(),
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                topic_alias: Some(5),
                ..PublishProperties::default()
            },
            payload: Bytes::from_static(b"hi"),
            ..Publish::default()
        }),
    );
}

#[test]
fn publish_v5_empty_topic_with_alias_and_repeated_subscription_ids() {
    // 3.3.2.3.4: an empty topic name with a topic alias; 3.3.2.3.8: several
    // subscription identifiers.
    let bytes = frame(
        0x32,
        b"\x00\x00\x00\x07\x08\x23\x00\x02\x0b\x01\x0b\x80\x01payload",
    );
    both_ways(
        V5,
        &bytes,
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: String::new(),
            packet_id: Some(7),
            properties: PublishProperties {
                topic_alias: Some(2),
                subscription_identifiers: vec![1, 128],
                ..PublishProperties::default()
            },
            payload: Bytes::from_static(b"payload"),
            ..Publish::default()
        }),
    );
}

#[test]
fn acks_v5_short_and_long_forms() {
    // 3.4.2.1: remaining length 2 means success without properties.
    both_ways(V5, &[0x40, 0x02, 0x00, 0x0A], Packet::PubAck(Ack::new(10)));
    // Remaining length 3: a reason code without properties.
    both_ways(
        V5,
        &[0x40, 0x03, 0x00, 0x0A, 0x10],
        Packet::PubAck(Ack::with_reason(10, ReasonCode::NO_MATCHING_SUBSCRIBERS)),
    );
    // Full form with a reason string.
    both_ways(
        V5,
        &[0x50, 0x08, 0x00, 0x0A, 0x80, 0x04, 0x1F, 0x00, 0x01, b'x'],
        Packet::PubRec(Ack {
            packet_id: 10,
            reason_code: ReasonCode::UNSPECIFIED_ERROR,
            reason_string: Some("x".into()),
            user_properties: Vec::new(),
        }),
    );
    both_ways(
        V5,
        &[0x62, 0x03, 0x00, 0x0A, 0x92],
        Packet::PubRel(Ack::with_reason(
            10,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        )),
    );
    both_ways(V5, &[0x70, 0x02, 0x00, 0x0A], Packet::PubComp(Ack::new(10)));
    // The long forms of a plain success decode too (the encoder writes the short one).
    assert_eq!(
        decode(V5, &[0x40, 0x03, 0x00, 0x0A, 0x00]).unwrap(),
        Packet::PubAck(Ack::new(10))
    );
    assert_eq!(
        decode(V5, &[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00]).unwrap(),
        Packet::PubAck(Ack::new(10))
    );
}

#[test]
fn subscribe_v5_with_identifier_and_options() {
    let bytes = [
        0x82, 0x0B, 0x00, 0x0A, // packet id 10
        0x02, 0x0B, 0x05, // subscription identifier 5
        0x00, 0x03, b'a', b'/', b'b',
        0x2D, // QoS 1, no local, retain as published, handling 2
    ];
    both_ways(
        V5,
        &bytes,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            subscription_identifier: Some(5),
            user_properties: Vec::new(),
            filters: vec![(
                "a/b".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
        }),
    );
}

#[test]
fn suback_unsubscribe_unsuback_v5() {
    both_ways(
        V5,
        &[0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x8F],
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::TOPIC_FILTER_INVALID],
            ..SubAck::default()
        }),
    );
    both_ways(
        V5,
        &[0xA2, 0x06, 0x00, 0x0A, 0x00, 0x00, 0x01, b'#'],
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 10,
            filters: vec!["#".into()],
            ..Unsubscribe::default()
        }),
    );
    both_ways(
        V5,
        &[0xB0, 0x04, 0x00, 0x0A, 0x00, 0x11],
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
            ..UnsubAck::default()
        }),
    );
}

#[test]
fn disconnect_v5_forms() {
    // 3.14.2.1: remaining length 0 is a normal disconnection.
    both_ways(V5, &[0xE0, 0x00], Packet::Disconnect(Disconnect::default()));
    both_ways(
        V5,
        &[0xE0, 0x01, 0x04],
        Packet::Disconnect(Disconnect::with_reason(
            ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        )),
    );
    both_ways(
        V5,
        &[0xE0, 0x07, 0x8E, 0x05, 0x11, 0x00, 0x00, 0x00, 0x3C],
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SESSION_TAKEN_OVER,
            session_expiry_interval: Some(60),
            ..Disconnect::default()
        }),
    );
}

#[test]
fn auth_v5() {
    both_ways(V5, &[0xF0, 0x00], Packet::Auth(Auth::default()));
    both_ways(
        V5,
        &[
            0xF0, 0x09, 0x18, 0x07, 0x15, 0x00, 0x04, b'S', b'C', b'R', b'A',
        ],
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            authentication_method: Some("SCRA".into()),
            ..Auth::default()
        }),
    );
}

#[test]
fn auth_needs_a_method_unless_bare_success() {
    // 3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method".
    for bytes in [
        &[0xF0, 0x01, 0x18][..],
        &[0xF0, 0x02, 0x19, 0x00],
        &[0xF0, 0x06, 0x00, 0x04, 0x1F, 0x00, 0x01, b'x'],
    ] {
        let error = fails(V5, bytes, ReasonCode::PROTOCOL_ERROR);
        assert_eq!(error, DecodeError::AuthenticationMethodMissing);
    }
    // The short and long forms of a bare success need none.
    assert_eq!(
        decode(V5, &[0xF0, 0x02, 0x00, 0x00]).unwrap(),
        Packet::Auth(Auth::default())
    );
}

// ---------------------------------------------------------------------------
// Framing and decoder state
// ---------------------------------------------------------------------------

#[test]
fn partial_input_leaves_the_buffer_untouched() {
    let whole = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
    ];
    let mut decoder = Decoder::client(V3, MAX);
    for cut in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(&buf[..], &whole[..cut]);
    }
}

#[test]
fn consumes_exactly_one_packet() {
    let mut buf = BytesMut::from(&[0xC0, 0x00, 0xD0, 0x00, 0x40][..]);
    let mut decoder = Decoder::client(V3, MAX);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingResp)));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], &[0x40]);
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    let error = fails(
        V3,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ReasonCode::MALFORMED_PACKET,
    );
    assert!(matches!(
        error,
        DecodeError::VariableByteIntegerTooLong { .. }
    ));
    // Four continuation bytes are enough to know, before a fifth arrives.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF][..]);
    assert!(Decoder::client(V3, MAX).decode(&mut buf).is_err());
}

#[test]
fn remaining_length_not_minimal_is_malformed() {
    // [MQTT-1.5.5-1]
    let error = fails(V3, &[0xC0, 0x80, 0x00], ReasonCode::MALFORMED_PACKET);
    assert!(matches!(
        error,
        DecodeError::VariableByteIntegerNotMinimal { .. }
    ));
}

#[test]
fn packet_too_large_is_refused_from_the_fixed_header_alone() {
    // [MQTT-3.2.2-15]: 255 bytes of body announced, only the header buffered.
    let mut decoder = Decoder::client(V3, 100);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0x01][..]);
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        error,
        DecodeError::PacketTooLarge {
            size: 258,
            max: 100
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // Exactly at the limit is fine; the limit counts the fixed header.
    let mut decoder = Decoder::client(V3, 4);
    let mut buf = BytesMut::from(&[0x40, 0x02, 0x00, 0x01][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::PubAck(Ack::new(1))))
    );
    decoder.set_max_packet_size(3);
    let mut buf = BytesMut::from(&[0x40, 0x02][..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 4, max: 3 })
    ));
}

#[test]
fn remaining_length_shorter_than_content() {
    // The packet identifier needs two bytes, the remaining length gives one.
    let error = fails(V3, &[0x40, 0x01, 0x00], ReasonCode::MALFORMED_PACKET);
    assert_eq!(error, DecodeError::UnexpectedEnd { packet: "PUBACK" });
    // A string length that runs past the remaining length.
    fails(
        V3,
        &[0x30, 0x03, 0x00, 0x05, b'a'],
        ReasonCode::MALFORMED_PACKET,
    );
    // A v5 property length that runs past the remaining length.
    fails(
        V5,
        &[0x30, 0x05, 0x00, 0x01, b't', 0x09, 0x01],
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn remaining_length_longer_than_content() {
    let error = fails(
        V3,
        &[0x40, 0x03, 0x00, 0x0A, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::TrailingBytes { packet: "PUBACK" });
    fails(V3, &[0xC0, 0x01, 0x00], ReasonCode::MALFORMED_PACKET);
    fails(V3, &[0xE0, 0x01, 0x00], ReasonCode::MALFORMED_PACKET);
    fails(
        V3,
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V3,
        &[0xB0, 0x03, 0x00, 0x0A, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V5,
        &[0x20, 0x04, 0x00, 0x00, 0x00, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V5,
        &[0x40, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn server_requires_connect_first() {
    // [MQTT-3.1.0-1]: refused from the first byte, without waiting for more.
    let mut decoder = Decoder::server(MAX);
    let mut buf = BytesMut::from(&[0x30][..]);
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        error,
        DecodeError::FirstPacketNotConnect { packet: "PUBLISH" }
    );
    assert_eq!(error.reason_code(), ReasonCode::PROTOCOL_ERROR);
    let mut buf = BytesMut::from(&[0xC0, 0x00][..]);
    assert!(matches!(
        Decoder::server(MAX).decode(&mut buf),
        Err(DecodeError::FirstPacketNotConnect { .. })
    ));
}

#[test]
fn server_switches_to_the_connect_version_and_refuses_a_second_connect() {
    let mut decoder = Decoder::server(MAX);
    assert_eq!(decoder.version(), None);
    let mut buf = BytesMut::from(&connect_v5(0x02, b"\x00", &string("c"))[..]);
    buf.extend_from_slice(&[0xE0, 0x01, 0x04]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(decoder.version(), Some(V5));
    // Decoded as v5: the DISCONNECT carries a reason code.
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Disconnect(Disconnect::with_reason(
            ReasonCode::DISCONNECT_WITH_WILL_MESSAGE
        ))))
    );
    // [MQTT-3.1.0-2]
    let mut buf = BytesMut::from(&connect_v5(0x02, b"\x00", &string("c"))[..]);
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(error, DecodeError::SecondConnect);
    assert_eq!(error.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn server_knows_the_version_of_a_connect_that_failed() {
    // A v5 CONNECT with receive maximum 0: the server answers CONNACK 0x82 in v5.
    let mut decoder = Decoder::server(MAX);
    let mut buf = BytesMut::from(&connect_v5(0x02, b"\x03\x21\x00\x00", &string("c"))[..]);
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(error.reason_code(), ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error.connack_version(), None);
    assert_eq!(decoder.version(), Some(V5));
}

#[test]
fn unsupported_protocol_level_is_answered_in_3_1_1() {
    // [MQTT-3.1.2-2]
    let bytes = frame(0x10, &cat(&[b"\x00\x04MQTT\x06\x02\x00\x0a", &string("c")]));
    let mut decoder = Decoder::server(MAX);
    let error = decoder.decode(&mut BytesMut::from(&bytes[..])).unwrap_err();
    assert_eq!(error, DecodeError::UnsupportedProtocolLevel { level: 6 });
    assert_eq!(
        error.reason_code(),
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
    );
    assert_eq!(error.connack_version(), Some(V3));
    // MQIsdp with level 4 is not a version either.
    let bytes = frame(
        0x10,
        &cat(&[b"\x00\x06MQIsdp\x04\x02\x00\x0a", &string("c")]),
    );
    let error = fails(V3, &bytes, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(error, DecodeError::UnsupportedProtocolLevel { level: 4 });
}

#[test]
fn unknown_protocol_name() {
    // [MQTT-3.1.2-1]: not MQTT at all; the server just closes.
    let bytes = frame(0x10, &cat(&[b"\x00\x04MQTX\x04\x02\x00\x0a", &string("c")]));
    let error = fails(V3, &bytes, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(error, DecodeError::UnknownProtocolName);
    assert_eq!(error.connack_version(), None);
}

#[test]
fn reserved_packet_types() {
    let error = fails(V3, &[0x00, 0x00], ReasonCode::MALFORMED_PACKET);
    assert_eq!(error, DecodeError::ReservedPacketType { packet_type: 0 });
    // AUTH does not exist before MQTT 5.
    let error = fails(V3, &[0xF0, 0x00], ReasonCode::MALFORMED_PACKET);
    assert_eq!(error, DecodeError::ReservedPacketType { packet_type: 15 });
}

// ---------------------------------------------------------------------------
// Fixed header flags
// ---------------------------------------------------------------------------

#[test]
fn reserved_fixed_header_flags() {
    // [MQTT-2.1.3-1]: PUBREL, SUBSCRIBE and UNSUBSCRIBE must be 0b0010, the rest 0.
    for (version, bytes) in [
        (V3, &[0x60, 0x02, 0x00, 0x01][..]),
        (V3, &[0x63, 0x02, 0x00, 0x01]),
        (V3, &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
        (V3, &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
        (V3, &[0x41, 0x02, 0x00, 0x01]),
        (V3, &[0x52, 0x02, 0x00, 0x01]),
        (V3, &[0x78, 0x02, 0x00, 0x01]),
        (V3, &[0x21, 0x02, 0x00, 0x00]),
        (V3, &[0x94, 0x03, 0x00, 0x01, 0x00]),
        (V3, &[0xB2, 0x02, 0x00, 0x01]),
        (V3, &[0xC1, 0x00]),
        (V3, &[0xD8, 0x00]),
        (V3, &[0xE2, 0x00]),
        (V5, &[0xF1, 0x00]),
        // MQTT 3.1's DUP on PUBREL is only tolerated from 3.1 peers.
        (V3, &[0x6A, 0x02, 0x00, 0x01]),
        (V5, &[0x6A, 0x02, 0x00, 0x01]),
    ] {
        let error = fails(version, bytes, ReasonCode::MALFORMED_PACKET);
        assert!(
            matches!(error, DecodeError::InvalidFixedHeaderFlags { .. }),
            "{bytes:02X?}: {error}"
        );
    }
    // CONNECT flags are checked too, on the server.
    let mut bytes = connect_v3(0x02, &string("c"));
    bytes[0] = 0x11;
    let error = Decoder::server(MAX)
        .decode(&mut BytesMut::from(&bytes[..]))
        .unwrap_err();
    assert!(matches!(error, DecodeError::InvalidFixedHeaderFlags { .. }));
    assert_eq!(
        decode(V3_1, &[0x6A, 0x02, 0x00, 0x01]).unwrap(),
        Packet::PubRel(Ack::new(1))
    );
}

#[test]
fn publish_qos_3_is_malformed() {
    // [MQTT-3.3.1-4]: refused from the first byte.
    let mut buf = BytesMut::from(&[0x36][..]);
    let error = Decoder::client(V3, MAX).decode(&mut buf).unwrap_err();
    assert_eq!(error, DecodeError::InvalidQos);
    assert_eq!(error.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn publish_dup_with_qos_0_is_malformed() {
    // [MQTT-3.3.1-2]
    let error = fails(
        V3,
        &[0x38, 0x03, 0x00, 0x01, b't'],
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::DupWithQos0);
}

// ---------------------------------------------------------------------------
// Packet identifiers, strings and topics
// ---------------------------------------------------------------------------

#[test]
fn packet_id_zero() {
    // [MQTT-2.2.1-3]
    for (version, bytes, packet) in [
        (
            V3,
            &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00][..],
            "PUBLISH",
        ),
        (
            V5,
            &[0x34, 0x06, 0x00, 0x01, b't', 0x00, 0x00, 0x00],
            "PUBLISH",
        ),
        (V3, &[0x40, 0x02, 0x00, 0x00], "PUBACK"),
        (V5, &[0x50, 0x02, 0x00, 0x00], "PUBREC"),
        (V3, &[0x62, 0x02, 0x00, 0x00], "PUBREL"),
        (V3, &[0x70, 0x02, 0x00, 0x00], "PUBCOMP"),
        (
            V3,
            &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00],
            "SUBSCRIBE",
        ),
        (V3, &[0x90, 0x03, 0x00, 0x00, 0x00], "SUBACK"),
        (
            V3,
            &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'],
            "UNSUBSCRIBE",
        ),
        (V3, &[0xB0, 0x02, 0x00, 0x00], "UNSUBACK"),
    ] {
        let error = fails(version, bytes, ReasonCode::PROTOCOL_ERROR);
        assert_eq!(error, DecodeError::ZeroPacketId { packet });
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    // [MQTT-1.5.4-1] / 3.1.1 [MQTT-1.5.3-1]: an overlong encoding of '/'.
    let client_id = b"\x00\x02\xC0\xAF";
    let error = fails(
        V3,
        &connect_v3(0x02, client_id),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::InvalidUtf8 { packet: "CONNECT" });
    // A PUBLISH topic name, 3.1.1 and 5.
    fails(
        V3,
        &[0x30, 0x04, 0x00, 0x02, 0xED, 0xA0],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V5,
        &[0x30, 0x06, 0x00, 0x03, 0xED, 0xA0, 0x80, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    // A SUBSCRIBE filter and an UNSUBSCRIBE filter.
    let error = fails(
        V3,
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0xFF, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(
        error,
        DecodeError::InvalidUtf8 {
            packet: "SUBSCRIBE"
        }
    );
    fails(
        V3,
        &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 0x80],
        ReasonCode::MALFORMED_PACKET,
    );
    // A user property in v5.
    fails(
        V5,
        &[
            0x30, 0x0A, 0x00, 0x01, b't', 0x06, 0x26, 0x00, 0x01, 0xFE, 0x00, 0x00,
        ],
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn null_character_is_malformed() {
    // [MQTT-1.5.4-2] / 3.1.1 [MQTT-1.5.3-2]
    let error = fails(
        V3,
        &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'],
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::NullCharacter { packet: "PUBLISH" });
    fails(
        V5,
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V3,
        &connect_v3(0x82, &cat(&[&string("c"), b"\x00\x01\x00"])),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn topic_name_with_wildcards() {
    // [MQTT-3.3.2-2]
    for topic in ["a/+", "#", "a/#", "+"] {
        let bytes = frame(0x30, &string(topic));
        let error = fails(V3, &bytes, ReasonCode::TOPIC_NAME_INVALID);
        assert_eq!(error, DecodeError::TopicNameWildcard { packet: "PUBLISH" });
    }
    // The will topic of CONNECT is a topic name too.
    let bytes = connect_v3(0x06, &cat(&[&string("c"), &string("w/#"), b"\x00\x00"]));
    fails(V3, &bytes, ReasonCode::TOPIC_NAME_INVALID);
}

#[test]
fn empty_topic_name() {
    // [MQTT-4.7.3-1] in 3.1.1; v5 3.3.2.3.4 without a topic alias.
    let error = fails(V3, &[0x30, 0x02, 0x00, 0x00], ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error, DecodeError::EmptyTopicName { packet: "PUBLISH" });
    fails(
        V5,
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        ReasonCode::PROTOCOL_ERROR,
    );
    let bytes = connect_v3(0x06, &cat(&[&string("c"), &string(""), b"\x00\x00"]));
    fails(V3, &bytes, ReasonCode::PROTOCOL_ERROR);
}

// ---------------------------------------------------------------------------
// CONNECT and CONNACK
// ---------------------------------------------------------------------------

#[test]
fn connect_reserved_flag() {
    // [MQTT-3.1.2-3]
    let error = fails(
        V3,
        &connect_v3(0x03, &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::ConnectReservedFlag);
    fails(
        V5,
        &connect_v5(0x03, b"\x00", &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn will_flags_consistency() {
    // [MQTT-3.1.2-11] (3.1.1: -13): will QoS 1 without a will.
    let error = fails(
        V3,
        &connect_v3(0x0A, &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::WillQosWithoutWill);
    // [MQTT-3.1.2-13] (3.1.1: -15): will retain without a will.
    let error = fails(
        V3,
        &connect_v3(0x22, &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::WillRetainWithoutWill);
    // [MQTT-3.1.2-12] (3.1.1: -14): will QoS 3.
    let payload = cat(&[&string("c"), &string("w"), b"\x00\x00"]);
    let error = fails(
        V3,
        &connect_v3(0x1E, &payload),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::InvalidWillQos);
    let error = fails(
        V5,
        &connect_v5(
            0x1E,
            b"\x00",
            &cat(&[&string("c"), b"\x00", &string("w"), b"\x00\x00"]),
        ),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::InvalidWillQos);
}

#[test]
fn password_without_username() {
    // [MQTT-3.1.2-22] in 3.1.1 ...
    let payload = cat(&[&string("c"), b"\x00\x01p"]);
    let error = fails(
        V3,
        &connect_v3(0x42, &payload),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::PasswordWithoutUsername);
    // ... but allowed in MQTT 5 (3.1.2.9).
    let Packet::Connect(connect) = decode(V5, &connect_v5(0x42, b"\x00", &payload)).unwrap() else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.username, None);
    assert_eq!(connect.password, Some(Bytes::from_static(b"p")));
}

#[test]
fn connect_truncated_payload() {
    // The user name flag is set but no user name follows.
    let error = fails(
        V3,
        &connect_v3(0x82, &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(error, DecodeError::UnexpectedEnd { packet: "CONNECT" });
}

#[test]
fn authentication_data_without_method() {
    // 3.1.2.11.10
    let error = fails(
        V5,
        &connect_v5(0x02, b"\x04\x16\x00\x01\x01", &string("c")),
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_eq!(error, DecodeError::AuthenticationDataWithoutMethod);
}

#[test]
fn connack_checks() {
    // [MQTT-3.2.2-1]: reserved acknowledge flags.
    let error = fails(V3, &[0x20, 0x02, 0x02, 0x00], ReasonCode::MALFORMED_PACKET);
    assert_eq!(error, DecodeError::ConnAckReservedFlags);
    fails(
        V5,
        &[0x20, 0x03, 0x80, 0x00, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    // 3.1.1 return codes 6..255 are reserved.
    let error = fails(V3, &[0x20, 0x02, 0x00, 0x06], ReasonCode::MALFORMED_PACKET);
    assert_eq!(error, DecodeError::InvalidConnAckReturnCode { code: 6 });
    // [MQTT-3.2.2-6] (3.1.1: [MQTT-3.2.2-4]): session present on a refusal.
    let error = fails(V3, &[0x20, 0x02, 0x01, 0x05], ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error, DecodeError::SessionPresentOnRefusal);
    fails(
        V5,
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        ReasonCode::PROTOCOL_ERROR,
    );
    // 3.1 had no session present flag: the byte is ignored.
    assert_eq!(
        decode(V3_1, &[0x20, 0x02, 0x00, 0x00]).unwrap(),
        Packet::ConnAck(ConnAck::default())
    );
}

// ---------------------------------------------------------------------------
// SUBSCRIBE and UNSUBSCRIBE
// ---------------------------------------------------------------------------

#[test]
fn subscribe_without_filters() {
    // [MQTT-3.8.3-3]
    let error = fails(V3, &[0x82, 0x02, 0x00, 0x0A], ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error, DecodeError::SubscribeWithoutFilters);
    fails(
        V5,
        &[0x82, 0x03, 0x00, 0x0A, 0x00],
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn unsubscribe_without_filters() {
    // [MQTT-3.10.3-2]
    let error = fails(V3, &[0xA2, 0x02, 0x00, 0x0A], ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error, DecodeError::UnsubscribeWithoutFilters);
    fails(
        V5,
        &[0xA2, 0x03, 0x00, 0x0A, 0x00],
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn subscription_options() {
    let subscribe = |version: ProtocolVersion, options: u8| {
        let properties: &[u8] = if version.is_v5() { b"\x00" } else { b"" };
        frame(
            0x82,
            &cat(&[b"\x00\x0a", properties, &string("a/b"), &[options]]),
        )
    };
    // [MQTT-3.8.3-5] (3.1.1: [MQTT-3-8.3-4]): reserved bits.
    for (version, options) in [(V3, 0x04), (V3, 0x80), (V5, 0x40), (V5, 0x80)] {
        let error = fails(
            version,
            &subscribe(version, options),
            ReasonCode::MALFORMED_PACKET,
        );
        assert_eq!(error, DecodeError::SubscriptionOptionsReserved);
    }
    // QoS 3.
    for version in [V3, V5] {
        let error = fails(
            version,
            &subscribe(version, 0x03),
            ReasonCode::PROTOCOL_ERROR,
        );
        assert_eq!(error, DecodeError::InvalidSubscriptionQos);
    }
    // 3.8.3.1: retain handling 3.
    let error = fails(V5, &subscribe(V5, 0x30), ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error, DecodeError::InvalidRetainHandling);
    // [MQTT-3.8.3-4]: no local on a shared subscription.
    let bytes = frame(
        0x82,
        &cat(&[b"\x00\x0a\x00", &string("$share/g/a"), b"\x04"]),
    );
    let error = fails(V5, &bytes, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(error, DecodeError::NoLocalOnSharedSubscription);
    // Missing options byte after a filter.
    fails(
        V3,
        &frame(0x82, &cat(&[b"\x00\x0a", &string("a")])),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn suback_checks() {
    let error = fails(V3, &[0x90, 0x02, 0x00, 0x0A], ReasonCode::MALFORMED_PACKET);
    assert_eq!(error, DecodeError::NoReasonCodes { packet: "SUBACK" });
    fails(
        V5,
        &[0x90, 0x03, 0x00, 0x0A, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V5,
        &[0xB0, 0x03, 0x00, 0x0A, 0x00],
        ReasonCode::MALFORMED_PACKET,
    );
    // 3.1.1 return codes are 0, 1, 2 and 0x80 only.
    let error = fails(
        V3,
        &[0x90, 0x03, 0x00, 0x0A, 0x03],
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(
        error,
        DecodeError::InvalidReasonCode {
            packet: "SUBACK",
            code: 3
        }
    );
    fails(
        V3,
        &[0x90, 0x03, 0x00, 0x0A, 0x87],
        ReasonCode::MALFORMED_PACKET,
    );
}

// ---------------------------------------------------------------------------
// Reason codes
// ---------------------------------------------------------------------------

#[test]
fn reason_codes_not_allowed_in_the_packet() {
    for (bytes, packet, code) in [
        (&[0x20, 0x03, 0x00, 0x8B, 0x00][..], "CONNACK", 0x8B),
        (&[0x20, 0x03, 0x00, 0x01, 0x00], "CONNACK", 0x01),
        (&[0x40, 0x03, 0x00, 0x01, 0x92], "PUBACK", 0x92),
        (&[0x50, 0x03, 0x00, 0x01, 0x11], "PUBREC", 0x11),
        (&[0x62, 0x03, 0x00, 0x01, 0x10], "PUBREL", 0x10),
        (&[0x70, 0x03, 0x00, 0x01, 0x80], "PUBCOMP", 0x80),
        (&[0x90, 0x04, 0x00, 0x01, 0x00, 0x03], "SUBACK", 0x03),
        (&[0xB0, 0x04, 0x00, 0x01, 0x00, 0x10], "UNSUBACK", 0x10),
        (&[0xE0, 0x01, 0x8A], "DISCONNECT", 0x8A),
        (&[0xE0, 0x01, 0x01], "DISCONNECT", 0x01),
        (&[0xF0, 0x01, 0x80], "AUTH", 0x80),
    ] {
        let error = fails(V5, bytes, ReasonCode::MALFORMED_PACKET);
        assert_eq!(error, DecodeError::InvalidReasonCode { packet, code });
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// A v5 PUBLISH to `t` at QoS 0 with the given property block contents.
fn publish_with(properties: &[u8]) -> Vec<u8> {
    frame(
        0x30,
        &cat(&[&string("t"), &[properties.len() as u8], properties]),
    )
}

#[test]
fn unknown_property_is_malformed() {
    // 2.2.2.2
    let error = fails(V5, &publish_with(b"\x7f\x00"), ReasonCode::MALFORMED_PACKET);
    assert_eq!(
        error,
        DecodeError::UnknownProperty {
            packet: "PUBLISH",
            id: 0x7F
        }
    );
    // A multi-byte identifier is unknown too.
    fails(
        V5,
        &publish_with(b"\x80\x01\x00"),
        ReasonCode::MALFORMED_PACKET,
    );
    // Identifier 0 is not a property.
    fails(V5, &publish_with(b"\x00"), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn property_not_allowed_in_the_packet_is_malformed() {
    // 2.2.2.2: session expiry interval in PUBLISH.
    let error = fails(
        V5,
        &publish_with(b"\x11\x00\x00\x00\x01"),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(
        error,
        DecodeError::PropertyNotAllowed {
            packet: "PUBLISH",
            id: 0x11
        }
    );
    // A reason string in CONNECT, a topic alias in PUBACK, will delay in CONNECT properties.
    fails(
        V5,
        &connect_v5(0x02, b"\x04\x1f\x00\x01x", &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V5,
        &[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
        ReasonCode::MALFORMED_PACKET,
    );
    fails(
        V5,
        &connect_v5(0x02, b"\x05\x18\x00\x00\x00\x01", &string("c")),
        ReasonCode::MALFORMED_PACKET,
    );
    // Subscription identifier in UNSUBSCRIBE.
    fails(
        V5,
        &frame(0xA2, &cat(&[b"\x00\x01\x02\x0b\x01", &string("a")])),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn duplicate_property_is_a_protocol_error() {
    let error = fails(
        V5,
        &publish_with(b"\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02"),
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_eq!(
        error,
        DecodeError::DuplicateProperty {
            packet: "PUBLISH",
            id: 0x02
        }
    );
    // A second subscription identifier in SUBSCRIBE (3.8.2.1.2).
    fails(
        V5,
        &frame(
            0x82,
            &cat(&[b"\x00\x01\x04\x0b\x01\x0b\x02", &string("a"), b"\x00"]),
        ),
        ReasonCode::PROTOCOL_ERROR,
    );
    // Two reason strings in DISCONNECT.
    fails(
        V5,
        &[
            0xE0, 0x0A, 0x00, 0x08, 0x1F, 0x00, 0x01, b'a', 0x1F, 0x00, 0x01, b'b',
        ],
        ReasonCode::PROTOCOL_ERROR,
    );
    // User properties may repeat.
    assert!(decode(
        V5,
        &publish_with(b"\x26\x00\x00\x00\x00\x26\x00\x00\x00\x00")
    )
    .is_ok());
}

#[test]
fn property_values_out_of_range() {
    for (properties, id) in [
        (&b"\x03\x21\x00\x00"[..], 0x21),    // receive maximum 0
        (b"\x05\x27\x00\x00\x00\x00", 0x27), // maximum packet size 0
        (b"\x02\x19\x02", 0x19),             // request response information 2
        (b"\x02\x17\x02", 0x17),             // request problem information 2
        (b"\x02\x17\xff", 0x17),
        (b"\x07\x26\x00\x00\x00\x00\x19\x05", 0x19), // after a user property
    ] {
        let error = fails(
            V5,
            &connect_v5(0x02, properties, &string("c")),
            ReasonCode::PROTOCOL_ERROR,
        );
        assert_eq!(
            error,
            DecodeError::InvalidPropertyValue {
                packet: "CONNECT",
                id
            }
        );
    }
    // Payload format indicator 2, in PUBLISH and in the will.
    fails(V5, &publish_with(b"\x01\x02"), ReasonCode::PROTOCOL_ERROR);
    let payload = cat(&[&string("c"), b"\x02\x01\x02", &string("w"), b"\x00\x00"]);
    fails(
        V5,
        &connect_v5(0x06, b"\x00", &payload),
        ReasonCode::PROTOCOL_ERROR,
    );
    // CONNACK: maximum QoS 2, receive maximum 0, retain available 2,
    // wildcard / subscription identifier / shared subscription available 2.
    for properties in [
        &b"\x02\x24\x02"[..],
        b"\x03\x21\x00\x00",
        b"\x02\x25\x02",
        b"\x02\x28\x02",
        b"\x02\x29\x02",
        b"\x02\x2a\x02",
        b"\x05\x27\x00\x00\x00\x00",
    ] {
        let bytes = frame(0x20, &cat(&[b"\x00\x00", properties]));
        fails(V5, &bytes, ReasonCode::PROTOCOL_ERROR);
    }
    // Subscription identifier 0, in SUBSCRIBE and in PUBLISH.
    let error = fails(
        V5,
        &frame(
            0x82,
            &cat(&[b"\x00\x01\x02\x0b\x00", &string("a"), b"\x00"]),
        ),
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_eq!(
        error,
        DecodeError::InvalidPropertyValue {
            packet: "SUBSCRIBE",
            id: 0x0B
        }
    );
    fails(V5, &publish_with(b"\x0b\x00"), ReasonCode::PROTOCOL_ERROR);
    // A response topic with a wildcard ([MQTT-3.3.2-14]).
    fails(
        V5,
        &publish_with(b"\x08\x00\x01#"),
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn topic_alias_zero() {
    // [MQTT-3.3.2-8]
    let error = fails(
        V5,
        &publish_with(b"\x23\x00\x00"),
        ReasonCode::TOPIC_ALIAS_INVALID,
    );
    assert_eq!(error, DecodeError::TopicAliasZero);
}

#[test]
fn property_varints_longer_than_four_bytes() {
    // A property length of five bytes.
    let error = fails(
        V5,
        &frame(0x30, &cat(&[&string("t"), b"\x80\x80\x80\x80\x01"])),
        ReasonCode::MALFORMED_PACKET,
    );
    assert!(matches!(
        error,
        DecodeError::VariableByteIntegerTooLong { .. }
    ));
    // A subscription identifier of five bytes.
    fails(
        V5,
        &publish_with(b"\x0b\xff\xff\xff\xff\x01"),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn error_messages_name_the_spec_statement() {
    assert_eq!(
        DecodeError::ZeroPacketId { packet: "PUBLISH" }.to_string(),
        "[MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-1]) PUBLISH has packet identifier 0"
    );
    assert_eq!(
        DecodeError::DuplicateProperty {
            packet: "CONNECT",
            id: 0x21
        }
        .to_string(),
        "[§2.2.2.2] property Receive Maximum (0x21) appears more than once in CONNECT"
    );
    // Small enough to pass around by value.
    assert!(std::mem::size_of::<DecodeError>() <= 24);
}

#[test]
fn decode_shared_views_the_packet_it_is_given() {
    // PUBLISH QoS 1, topic "a/b", packet id 7, no properties, payload "hello".
    let bytes = Bytes::from(frame(
        0x32,
        &cat(&[&string("a/b"), &[0, 7], &[0], b"hello"]),
    ));
    let mut decoder = Decoder::client(V5, MAX);
    let (packet, length) = decoder.decode_shared(&bytes).unwrap().unwrap();
    assert_eq!(length, bytes.len());
    assert_eq!(Ok(packet.clone()), decode(V5, &bytes));
    let Packet::Publish(publish) = packet else {
        panic!("not a PUBLISH");
    };
    // Not a copy: the payload lies inside the given bytes.
    assert!(bytes.as_ptr_range().contains(&publish.payload.as_ptr()));
    // Too short for the packet it starts: need more, not an error.
    let short = bytes.slice(..bytes.len() - 1);
    assert_eq!(decoder.decode_shared(&short), Ok(None));
    // Trailing bytes are left to the caller, who is told the length.
    let mut longer = bytes.to_vec();
    longer.push(0);
    let (_, length) = decoder
        .decode_shared(&Bytes::from(longer))
        .unwrap()
        .unwrap();
    assert_eq!(length, bytes.len());
}
