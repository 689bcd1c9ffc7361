//! Malformed packets and protocol errors after CONNECT: each closes the offending
//! connection (v5: after a DISCONNECT with the reason code), and the server carries
//! on serving a client that was already connected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use bytes::BytesMut;
use support::*;
use switchboard_codec::{
    encode, Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions, Unsubscribe,
};
use switchboard_server::{RunningServer, ServerOptions};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A server and a witness: a v5 client connected before any bad packet arrives,
/// subscribed to `witness/#`, that must go on working afterwards.
struct Fixture {
    server: RunningServer,
    witness: RawClient<TcpStream>,
    next_id: u16,
    clients: u32,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with(options()).await
    }

    async fn with(options: ServerOptions) -> Fixture {
        let server = start(options).await;
        // No Nagle delay: the witness writes PUBLISH and PUBACK back to back.
        let stream = TcpStream::connect(addr(&server)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut witness = RawClient::new(stream, V5);
        witness.connect(connect_packet(V5, "witness", true)).await;
        witness
            .subscribe_granted(1, "witness/#", QoS::AtLeastOnce)
            .await;
        Fixture {
            server,
            witness,
            next_id: 1,
            clients: 0,
        }
    }

    /// A fresh connected client of `version`.
    async fn client(&mut self, version: ProtocolVersion) -> RawClient<TcpStream> {
        self.clients += 1;
        connected_tcp(&self.server, version, &format!("bad-{}", self.clients)).await
    }

    /// The witness publishes QoS 1 to its own subscription: it gets the PUBACK and the message.
    async fn assert_server_carries_on(&mut self) {
        self.next_id += 1;
        let id = self.next_id;
        let topic = format!("witness/{id}");
        self.witness
            .send(publish(&topic, QoS::AtLeastOnce, Some(id), b"still here"))
            .await;
        let mut got_ack = false;
        let mut got_message = false;
        while !(got_ack && got_message) {
            match self.witness.expect().await {
                Packet::PubAck(ack) => {
                    assert_eq!(ack.packet_id, id);
                    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
                    got_ack = true;
                }
                Packet::Publish(publish) => {
                    assert_eq!(publish.topic, topic);
                    assert_eq!(&publish.payload[..], b"still here");
                    self.witness
                        .send(Packet::PubAck(switchboard_codec::Ack::new(
                            publish.packet_id.unwrap(),
                        )))
                        .await;
                    got_message = true;
                }
                other => panic!("witness: unexpected {other:?}"),
            }
        }
    }

    /// Sends `bytes` on a fresh connection of `version`, expects the close (v5: with
    /// DISCONNECT `code`), then checks the server still serves the witness.
    async fn expect_rejected(&mut self, version: ProtocolVersion, bytes: &[u8], code: ReasonCode) {
        let mut client = self.client(version).await;
        client.send_bytes(bytes).await;
        client.expect_closed_with(code).await;
        self.assert_server_carries_on().await;
    }
}

fn encoded(packet: Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).unwrap();
    out.to_vec()
}

/// A PUBLISH put together by hand (remaining length < 128): first byte, topic bytes,
/// optional packet id, for v5 the property block (without its length byte), payload.
fn raw_publish(
    version: ProtocolVersion,
    first: u8,
    topic: &[u8],
    packet_id: Option<u16>,
    properties: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if version.is_v5() {
        body.push(properties.len() as u8);
        body.extend_from_slice(properties);
    }
    body.extend_from_slice(payload);
    assert!(body.len() < 128);
    let mut packet = vec![first, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

// [MQTT-1.5.5-1] (v5) a Variable Byte Integer uses the fewest bytes; a remaining length
// of more than 4 bytes (§1.5.5 / §2.1.4) is malformed: v5 DISCONNECT 0x81 and close
// ([MQTT-4.13.1-1] v5, [MQTT-4.8.0-1] 3.1.1).
#[tokio::test]
async fn remaining_length_over_four_bytes_or_not_minimal() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        fixture
            .expect_rejected(
                version,
                &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
                ReasonCode::MALFORMED_PACKET,
            )
            .await;
        // PINGREQ with its remaining length 0 written in two bytes.
        fixture
            .expect_rejected(version, &[0xC0, 0x80, 0x00], ReasonCode::MALFORMED_PACKET)
            .await;
    }
    fixture.server.shutdown().await;
}

// v5 [MQTT-2.1.3-1], 3.1.1 [MQTT-2.2.2-1]/[MQTT-2.2.2-2]: reserved fixed-header flags must
// have their listed values, else malformed and close: [MQTT-3.6.1-1] PUBREL,
// [MQTT-3.8.1-1] SUBSCRIBE, [MQTT-3.10.1-1] UNSUBSCRIBE, [MQTT-3.14.1-1] DISCONNECT, and
// PINGREQ / PUBACK; plus reserved packet type 0, and AUTH (15) in 3.1.1.
#[tokio::test]
async fn reserved_fixed_header_flags() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        let subscribe_packet = encoded(
            Packet::Subscribe(subscribe(1, "a", QoS::AtMostOnce)),
            version,
        );
        let unsubscribe_packet = encoded(
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 1,
                filters: vec!["a".into()],
                ..Unsubscribe::default()
            }),
            version,
        );
        let mut cases: Vec<Vec<u8>> = vec![
            vec![0xC1, 0x00],             // PINGREQ, flags 0001
            vec![0x60, 0x02, 0x00, 0x01], // PUBREL, flags 0000 instead of 0010
            vec![0x6A, 0x02, 0x00, 0x01], // PUBREL, flags 1010 (only 3.1 may)
            vec![0x41, 0x02, 0x00, 0x01], // PUBACK, flags 0001
            vec![0xE2, 0x00],             // DISCONNECT, flags 0010
            vec![0x00, 0x00],             // reserved packet type 0
        ];
        for flags in [0x0, 0x3, 0xA] {
            let mut bad = subscribe_packet.clone();
            bad[0] = 0x80 | flags;
            cases.push(bad);
            let mut bad = unsubscribe_packet.clone();
            bad[0] = 0xA0 | flags;
            cases.push(bad);
        }
        if version == V311 {
            cases.push(vec![0xF0, 0x00]); // AUTH does not exist in 3.1.1
        }
        for bytes in cases {
            fixture
                .expect_rejected(version, &bytes, ReasonCode::MALFORMED_PACKET)
                .await;
        }
    }
    fixture.server.shutdown().await;
}

// [MQTT-3.3.1-4] (v5 and 3.1.1): QoS 3 in PUBLISH is malformed; [MQTT-3.3.1-2] (v5 and
// 3.1.1): DUP 1 on QoS 0 is malformed.
#[tokio::test]
async fn publish_qos_3_and_dup_on_qos_0() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        let qos3 = raw_publish(version, 0x36, b"a", Some(1), &[], b"x");
        fixture
            .expect_rejected(version, &qos3, ReasonCode::MALFORMED_PACKET)
            .await;
        let dup0 = raw_publish(version, 0x38, b"a", None, &[], b"x");
        fixture
            .expect_rejected(version, &dup0, ReasonCode::MALFORMED_PACKET)
            .await;
    }
    fixture.server.shutdown().await;
}

// v5 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1]: QoS > 0 PUBLISH, SUBSCRIBE and UNSUBSCRIBE carry a
// non-zero packet identifier; 0 is a protocol error: v5 DISCONNECT 0x82, close.
#[tokio::test]
async fn packet_identifier_zero() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        for first in [0x32, 0x34] {
            let publish = raw_publish(version, first, b"a", Some(0), &[], b"x");
            fixture
                .expect_rejected(version, &publish, ReasonCode::PROTOCOL_ERROR)
                .await;
        }
        let mut subscribe_packet = encoded(
            Packet::Subscribe(subscribe(1, "a", QoS::AtMostOnce)),
            version,
        );
        subscribe_packet[3] = 0; // packet id 0x0001 -> 0x0000
        fixture
            .expect_rejected(version, &subscribe_packet, ReasonCode::PROTOCOL_ERROR)
            .await;
        let mut unsubscribe_packet = encoded(
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 1,
                filters: vec!["a".into()],
                ..Unsubscribe::default()
            }),
            version,
        );
        unsubscribe_packet[3] = 0;
        fixture
            .expect_rejected(version, &unsubscribe_packet, ReasonCode::PROTOCOL_ERROR)
            .await;
        // PUBACK 0 from the client.
        fixture
            .expect_rejected(
                version,
                &[0x40, 0x02, 0x00, 0x00],
                ReasonCode::PROTOCOL_ERROR,
            )
            .await;
    }
    fixture.server.shutdown().await;
}

// v5 [MQTT-1.5.4-1] / 3.1.1 [MQTT-1.5.3-1]: ill-formed UTF-8 (and surrogates) in a string is
// malformed; v5 [MQTT-1.5.4-2] / 3.1.1 [MQTT-1.5.3-2] and [MQTT-4.7.3-2]: U+0000 in a topic
// is malformed; [MQTT-3.3.2-1] the topic name is a UTF-8 string; v5 [MQTT-1.5.7-1] user
// property strings obey the same rules.
#[tokio::test]
async fn invalid_utf8_and_null_in_topic() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        let topics: [&[u8]; 5] = [
            b"a\xC3\x28",    // bad continuation byte
            b"\xED\xA0\x80", // U+D800, a surrogate
            b"\xC0\xAF",     // over-long encoding of '/'
            b"a\x00b",       // U+0000
            b"\xFF",         // never valid
        ];
        for topic in topics {
            let bytes = raw_publish(version, 0x30, topic, None, &[], b"x");
            fixture
                .expect_rejected(version, &bytes, ReasonCode::MALFORMED_PACKET)
                .await;
        }
        // The same in a SUBSCRIBE topic filter.
        let mut filter = encoded(
            Packet::Subscribe(subscribe(1, "ab", QoS::AtMostOnce)),
            version,
        );
        let at = filter.len() - 3; // "ab" then the options byte
        filter[at..at + 2].copy_from_slice(b"\x00\x00");
        fixture
            .expect_rejected(version, &filter, ReasonCode::MALFORMED_PACKET)
            .await;
    }
    // A user property value with invalid UTF-8 (v5).
    let property = [0x26, 0x00, 0x01, b'k', 0x00, 0x01, 0xFF];
    let bytes = raw_publish(V5, 0x30, b"a", None, &property, b"x");
    fixture
        .expect_rejected(V5, &bytes, ReasonCode::MALFORMED_PACKET)
        .await;
    fixture.server.shutdown().await;
}

// [MQTT-3.3.2-2] (v5 and 3.1.1), v5 [MQTT-4.7.0-1], 3.1.1 [MQTT-4.7.1-1]: a topic name with
// a wildcard: v5 DISCONNECT 0x90 (Topic Name invalid), close. v5 [MQTT-4.7.3-1]: an empty
// topic without a topic alias is a protocol error.
#[tokio::test]
async fn wildcard_or_empty_topic_name() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        for topic in [&b"a/+"[..], b"#", b"a/#", b"+"] {
            for (first, packet_id) in [(0x30, None), (0x32, Some(1))] {
                let bytes = raw_publish(version, first, topic, packet_id, &[], b"x");
                fixture
                    .expect_rejected(version, &bytes, ReasonCode::TOPIC_NAME_INVALID)
                    .await;
            }
        }
        let empty = raw_publish(version, 0x30, b"", None, &[], b"x");
        fixture
            .expect_rejected(version, &empty, ReasonCode::PROTOCOL_ERROR)
            .await;
    }
    fixture.server.shutdown().await;
}

// v5 §2.2.2.2: an unknown property identifier, or one that does not belong in the packet,
// makes it malformed: DISCONNECT 0x81 ([MQTT-4.13.1-1]).
#[tokio::test]
async fn unknown_or_misplaced_property() {
    let mut fixture = Fixture::new().await;
    let cases: [&[u8]; 4] = [
        &[0x7F, 0x00],        // no property has id 0x7F
        &[0x00],              // nor 0x00
        &[0x11, 0, 0, 0, 10], // Session Expiry Interval belongs in CONNECT
        &[0x22, 0x00, 0x05],  // Topic Alias Maximum belongs in CONNECT / CONNACK
    ];
    for properties in cases {
        let bytes = raw_publish(V5, 0x30, b"a", None, properties, b"x");
        fixture
            .expect_rejected(V5, &bytes, ReasonCode::MALFORMED_PACKET)
            .await;
    }
    // In SUBSCRIBE too: packet id 1, properties [0x01, 0x01] (Payload Format Indicator).
    let subscribe_packet = [0x82, 0x08, 0x00, 0x01, 0x02, 0x01, 0x01, 0x00, 0x01, b'a'];
    let mut bytes = subscribe_packet.to_vec();
    bytes.push(0x00);
    bytes[1] = (bytes.len() - 2) as u8;
    fixture
        .expect_rejected(V5, &bytes, ReasonCode::MALFORMED_PACKET)
        .await;
    fixture.server.shutdown().await;
}

// v5 §2.2.2.2 / 3.3.2.3: a property that may appear once, appearing twice, is a protocol
// error: DISCONNECT 0x82; so is an invalid value (Payload Format Indicator 2).
#[tokio::test]
async fn duplicated_property_or_invalid_value() {
    let mut fixture = Fixture::new().await;
    let cases: [&[u8]; 4] = [
        &[0x01, 0x01, 0x01, 0x01],             // Payload Format Indicator twice
        &[0x02, 0, 0, 0, 9, 0x02, 0, 0, 0, 9], // Message Expiry Interval twice
        &[0x03, 0x00, 0x01, b't', 0x03, 0x00, 0x01, b't'], // Content Type twice
        &[0x01, 0x02],                         // Payload Format Indicator 2
    ];
    for properties in cases {
        let bytes = raw_publish(V5, 0x30, b"a", None, properties, b"x");
        fixture
            .expect_rejected(V5, &bytes, ReasonCode::PROTOCOL_ERROR)
            .await;
    }
    fixture.server.shutdown().await;
}

// v5 [MQTT-3.3.4-6] (binds clients; the server reacts): a PUBLISH from a client carries no
// Subscription Identifier: protocol error, DISCONNECT 0x82.
#[tokio::test]
async fn subscription_identifier_in_client_publish() {
    let mut fixture = Fixture::new().await;
    let bytes = raw_publish(V5, 0x30, b"witness/x", None, &[0x0B, 0x05], b"x");
    fixture
        .expect_rejected(V5, &bytes, ReasonCode::PROTOCOL_ERROR)
        .await;
    // The witness got nothing from it: the next thing it sees is its own message.
    fixture.assert_server_carries_on().await;
    fixture.server.shutdown().await;
}

// v5 [MQTT-3.2.2-15] (binds clients; the server reacts): a packet over the Maximum Packet
// Size the server advertised: DISCONNECT 0x95 (Packet too large), close; 3.1.1: close.
#[tokio::test]
async fn oversize_packet() {
    let mut options = options();
    options.broker.max_packet_size = 256;
    let mut fixture = Fixture::with(options).await;
    let mut client = RawClient::tcp(addr(&fixture.server), V5).await;
    let ack = client.connect(connect_packet(V5, "big", true)).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(256));
    drop(client);
    for version in [V5, V311] {
        // Exactly at the limit is fine.
        let mut client = fixture.client(version).await;
        // Fixed header 1 + remaining length 2 + topic 2 + 2 (+ v5 property length 1).
        let overhead = 1 + 2 + 2 + 2 + usize::from(version.is_v5());
        let payload = vec![b'p'; 256 - overhead];
        let mut at_limit = publish("ok", QoS::AtMostOnce, None, b"");
        at_limit.payload = payload.clone().into();
        let bytes = encoded(Packet::Publish(at_limit), version);
        assert_eq!(bytes.len(), 256);
        client.send_bytes(&bytes).await;
        client.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(
            client.expect().await,
            Packet::PingResp,
            "{version:?}: 256 bytes accepted"
        );
        // One byte more is not.
        let mut over = publish("ok", QoS::AtMostOnce, None, b"");
        let mut payload = payload;
        payload.push(b'p');
        over.payload = payload.into();
        let bytes = encoded(Packet::Publish(over), version);
        assert_eq!(bytes.len(), 257);
        client.send_bytes(&bytes).await;
        client
            .expect_closed_with(ReasonCode::PACKET_TOO_LARGE)
            .await;
        fixture.assert_server_carries_on().await;
        // A header announcing a huge packet is refused before its body is awaited.
        fixture
            .expect_rejected(
                version,
                &[0x30, 0xFF, 0xFF, 0xFF, 0x7F],
                ReasonCode::PACKET_TOO_LARGE,
            )
            .await;
    }
    fixture.server.shutdown().await;
}

// v5 and 3.1.1 [MQTT-3.8.3-3]: SUBSCRIBE has at least one filter (protocol error otherwise:
// v5 DISCONNECT 0x82); v5 [MQTT-3.10.3-2] / 3.1.1 same for UNSUBSCRIBE.
#[tokio::test]
async fn subscribe_or_unsubscribe_without_filters() {
    let mut fixture = Fixture::new().await;
    fixture
        .expect_rejected(
            V5,
            &[0x82, 0x03, 0x00, 0x01, 0x00],
            ReasonCode::PROTOCOL_ERROR,
        )
        .await;
    fixture
        .expect_rejected(V311, &[0x82, 0x02, 0x00, 0x01], ReasonCode::PROTOCOL_ERROR)
        .await;
    fixture
        .expect_rejected(
            V5,
            &[0xA2, 0x03, 0x00, 0x01, 0x00],
            ReasonCode::PROTOCOL_ERROR,
        )
        .await;
    fixture
        .expect_rejected(V311, &[0xA2, 0x02, 0x00, 0x01], ReasonCode::PROTOCOL_ERROR)
        .await;
    fixture.server.shutdown().await;
}

// v5 [MQTT-3.8.3-5] / 3.1.1 [MQTT-3.8.3-4]: reserved bits in the subscription options, or
// QoS 3, are malformed; v5: Retain Handling 3 is malformed; v5 [MQTT-3.8.3-4]: No Local on
// a shared subscription is a protocol error.
#[tokio::test]
async fn bad_subscription_options() {
    let mut fixture = Fixture::new().await;
    // 3.8.3.1 (v5): reserved bits are malformed; QoS 3 and Retain Handling 3 are protocol errors.
    let v5_options = [
        (0xC0u8, ReasonCode::MALFORMED_PACKET),
        (0x03, ReasonCode::PROTOCOL_ERROR),
        (0x30, ReasonCode::PROTOCOL_ERROR),
    ];
    for (options_byte, code) in v5_options {
        let mut bytes = encoded(Packet::Subscribe(subscribe(1, "a", QoS::AtMostOnce)), V5);
        *bytes.last_mut().unwrap() = options_byte;
        fixture.expect_rejected(V5, &bytes, code).await;
    }
    for options_byte in [0x04u8, 0x03, 0x80] {
        let mut bytes = encoded(Packet::Subscribe(subscribe(1, "a", QoS::AtMostOnce)), V311);
        *bytes.last_mut().unwrap() = options_byte;
        fixture
            .expect_rejected(V311, &bytes, ReasonCode::MALFORMED_PACKET)
            .await;
    }
    let mut bytes = encoded(
        Packet::Subscribe(subscribe(1, "$share/g/a", QoS::AtMostOnce)),
        V5,
    );
    *bytes.last_mut().unwrap() = 0x04; // No Local
    fixture
        .expect_rejected(V5, &bytes, ReasonCode::PROTOCOL_ERROR)
        .await;
    fixture.server.shutdown().await;
}

// An invalid topic filter is refused in the SUBACK, not by closing: v5 0x8F (Topic Filter
// invalid), 3.1.1 0x80 (failure) ([MQTT-3.9.3-2] 3.1.1); [MQTT-4.7.1-2]/[MQTT-4.7.1-3] (v5)
// wildcard placement, [MQTT-4.7.3-1] non-empty, [MQTT-4.8.2-1]/[MQTT-4.8.2-2] (v5) share
// names; [MQTT-3.8.4-5]..[MQTT-3.8.4-7] (v5) / [MQTT-3.8.4-4], [MQTT-3.8.4-5] (3.1.1) one
// code per filter, the valid ones granted, [MQTT-3.9.3-1] in order.
#[tokio::test]
async fn invalid_topic_filter_in_subscribe() {
    let mut fixture = Fixture::new().await;
    let filters = [
        "ok/a",
        "a/#/b",
        "a+",
        "",
        "#/a",
        "$share/g",
        "$share//x",
        "$share/g+/x",
        "ok/+/b",
    ];
    for version in [V5, V311] {
        let mut client = fixture.client(version).await;
        let mut packet = subscribe(7, "x", QoS::AtLeastOnce);
        packet.filters = filters
            .iter()
            .map(|filter| {
                (
                    filter.to_string(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect();
        client.send(packet).await;
        let suback = client.expect_suback().await;
        assert_eq!(suback.packet_id, 7);
        let failure = if version.is_v5() {
            ReasonCode::TOPIC_FILTER_INVALID
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        let mut expected = vec![failure; filters.len()];
        expected[0] = ReasonCode::GRANTED_QOS_1;
        expected[filters.len() - 1] = ReasonCode::GRANTED_QOS_1;
        assert_eq!(suback.reason_codes, expected, "{version:?}");
        // The connection stays up and the valid subscriptions work.
        let mut publisher = fixture.client(V311).await;
        publisher
            .send(publish("ok/x/b", QoS::AtLeastOnce, Some(3), b"valid"))
            .await;
        assert_eq!(publisher.expect_puback().await.packet_id, 3);
        assert_eq!(&client.expect_publish().await.payload[..], b"valid");
        fixture.assert_server_carries_on().await;
    }
    fixture.server.shutdown().await;
}

// Packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP), and v5 AUTH without an
// Authentication Method in CONNECT ([MQTT-4.12.0-6] side: no AUTH exchange was begun), are
// protocol errors from a client: v5 DISCONNECT 0x82 ([MQTT-4.13.1-1]), close; 3.1.1 close
// ([MQTT-4.8.0-1]).
#[tokio::test]
async fn server_only_packets_from_a_client() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        let mut cases: Vec<Vec<u8>> = vec![
            vec![0xD0, 0x00], // PINGRESP
        ];
        if version.is_v5() {
            cases.push(vec![0x20, 0x03, 0x00, 0x00, 0x00]); // CONNACK
            cases.push(vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00]); // SUBACK
            cases.push(vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x00]); // UNSUBACK
            cases.push(vec![0xF0, 0x00]); // AUTH
        } else {
            cases.push(vec![0x20, 0x02, 0x00, 0x00]);
            cases.push(vec![0x90, 0x03, 0x00, 0x01, 0x00]);
            cases.push(vec![0xB0, 0x02, 0x00, 0x01]);
        }
        for bytes in cases {
            fixture
                .expect_rejected(version, &bytes, ReasonCode::PROTOCOL_ERROR)
                .await;
        }
    }
    fixture.server.shutdown().await;
}

// A packet cut short or with bytes left over (§2.1.4; v5 [MQTT-4.13.1-1]): a PUBACK whose
// remaining length is 1, a DISCONNECT whose property length runs past its end, a SUBSCRIBE
// whose options byte is missing.
#[tokio::test]
async fn truncated_or_overlong_packets() {
    let mut fixture = Fixture::new().await;
    for version in [V5, V311] {
        let mut cases: Vec<Vec<u8>> = vec![
            vec![0x40, 0x01, 0x00],                         // PUBACK, 1 byte body
            vec![0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], // SUBSCRIBE without options (3.1.1 form)
        ];
        if version.is_v5() {
            cases.push(vec![0xE0, 0x02, 0x00, 0x05]); // DISCONNECT, properties overrun
            cases.push(vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a']); // no options
        } else {
            cases.push(vec![0xE0, 0x01, 0x00]); // 3.1.1 DISCONNECT has no body
            cases.push(vec![0xC0, 0x01, 0x00]); // PINGREQ with a body
        }
        for bytes in cases {
            fixture
                .expect_rejected(version, &bytes, ReasonCode::MALFORMED_PACKET)
                .await;
        }
    }
    fixture.server.shutdown().await;
}
