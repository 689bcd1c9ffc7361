//! The statements of `docs/conformance.md` that no other suite checked: one test each
//! (or one per group of closely related statements), against the broker on port 0 or,
//! for timing, in memory on paused time. Statement ids say which spec they come from.
//!
//! "Nothing else arrives" is checked without waiting: the client publishes a QoS 0
//! marker to itself; a session's queue is FIFO, so anything still due comes first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use support::*;
use switchboard_codec::{
    encode, Ack, Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
use switchboard_server::RunningServer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const MARKER: &str = "conformance-extra/marker";

fn encoded(packet: Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).unwrap();
    out
}

/// Connects with `connect` over TCP and asserts CONNACK 0x00.
async fn client_with(server: &RunningServer, connect: Connect) -> RawClient<TcpStream> {
    let mut client = RawClient::tcp(addr(server), connect.protocol).await;
    let connack = client.connect(connect).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    client
}

fn subscribe_many(packet_id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id,
        filters: filters
            .iter()
            .map(|(filter, qos)| {
                (
                    filter.to_string(),
                    SubscriptionOptions {
                        qos: *qos,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect(),
        ..Subscribe::default()
    }
}

fn unsubscribe(packet_id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id,
        filters: filters.iter().map(|filter| filter.to_string()).collect(),
        ..Unsubscribe::default()
    })
}

async fn expect_unsuback<S: AsyncRead + AsyncWrite + Unpin>(client: &mut RawClient<S>) -> UnsubAck {
    match client.expect().await {
        Packet::UnsubAck(unsuback) => unsuback,
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

/// Publishes at QoS 1 or 2 and completes the flow (PUBACK, or PUBREC / PUBREL / PUBCOMP).
/// Once it returns, the broker has routed the message.
async fn publish_acked<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    publish: Publish,
) {
    let packet_id = publish.packet_id.expect("QoS 1 or 2");
    let qos = publish.qos;
    client.send(publish).await;
    match qos {
        QoS::AtLeastOnce => assert_eq!(client.expect_puback().await.packet_id, packet_id),
        QoS::ExactlyOnce => {
            assert_eq!(client.expect_pubrec().await.packet_id, packet_id);
            client.send(Packet::PubRel(Ack::new(packet_id))).await;
            assert_eq!(client.expect_pubcomp().await.packet_id, packet_id);
        }
        QoS::AtMostOnce => unreachable!(),
    }
}

/// Publishes a QoS 0 marker to itself (the client must be subscribed to [`MARKER`]) and
/// returns every other PUBLISH received before it, completing their QoS 1 / 2 flows.
async fn received_before_marker<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
) -> Vec<Publish> {
    client
        .send(publish(MARKER, QoS::AtMostOnce, None, b"marker"))
        .await;
    let mut received = Vec::new();
    let mut awaiting_pubrel = 0usize;
    let mut marker_seen = false;
    while !marker_seen || awaiting_pubrel > 0 {
        match client.expect().await {
            Packet::Publish(publish) if publish.topic == MARKER => marker_seen = true,
            Packet::Publish(publish) => {
                assert!(!marker_seen, "{publish:?} arrived after the marker");
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => client.send(Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        client.send(Packet::PubRec(Ack::new(id))).await;
                        awaiting_pubrel += 1;
                    }
                    _ => {}
                }
                received.push(publish);
            }
            Packet::PubRel(release) => {
                client
                    .send(Packet::PubComp(Ack::new(release.packet_id)))
                    .await;
                awaiting_pubrel -= 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    received
}

fn payloads(publishes: &[Publish]) -> Vec<&[u8]> {
    publishes.iter().map(|p| &p.payload[..]).collect()
}

/// A PUBLISH written by hand (remaining length < 128): first byte, topic, optional
/// packet id, the v5 property block (without its length byte), payload.
fn raw_publish(first: u8, topic: &[u8], properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    body.push(properties.len() as u8);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    assert!(body.len() < 128);
    let mut packet = vec![first, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

// v5 [MQTT-1.5.4-3] / 3.1.1 [MQTT-1.5.3-3]: the bytes EF BB BF in a string are U+FEFF and
// are kept, never skipped or stripped: a topic name starting with them reaches the
// subscriber byte for byte, and is not the same topic as the name without them.
#[tokio::test]
async fn byte_order_mark_in_a_topic_name_is_kept() {
    let server = start_default().await;
    let topic = "\u{FEFF}bom/t";
    for version in [V5, V311] {
        let mut sub = connected_tcp(&server, version, &format!("bom-sub-{version:?}")).await;
        sub.send(subscribe_many(
            1,
            &[(topic, QoS::AtMostOnce), (MARKER, QoS::AtMostOnce)],
        ))
        .await;
        sub.expect_suback().await;
        let mut publisher = connected_tcp(&server, version, "bom-pub").await;
        let bytes = encoded(
            Packet::Publish(publish(topic, QoS::AtLeastOnce, Some(1), b"with")),
            version,
        );
        // Fixed header 2 bytes, topic length 2 bytes, then the topic.
        assert_eq!(&bytes[4..7], b"\xEF\xBB\xBF");
        publisher.send_bytes(&bytes).await;
        assert_eq!(publisher.expect_puback().await.packet_id, 1);
        publish_acked(
            &mut publisher,
            publish("bom/t", QoS::AtLeastOnce, Some(2), b"without"),
        )
        .await;

        // Topic of 8 bytes (3 + "bom/t"), v5 property length 0, payload "with".
        let mut expected = vec![0x30, 0x00, 0x00, 0x08, 0xEF, 0xBB, 0xBF];
        expected.extend_from_slice(b"bom/t");
        if version.is_v5() {
            expected.push(0x00);
        }
        expected.extend_from_slice(b"with");
        expected[1] = (expected.len() - 2) as u8;
        assert_eq!(sub.recv_raw(expected.len()).await, expected, "{version:?}");
        assert!(
            received_before_marker(&mut sub).await.is_empty(),
            "{version:?}: \"bom/t\" is another topic"
        );
    }
    server.shutdown().await;
}

// v5 [MQTT-2.2.2-1]: a packet without properties still carries a Property Length of 0:
// SUBACK, a forwarded PUBLISH and UNSUBACK, byte for byte.
#[tokio::test]
async fn packets_without_properties_carry_property_length_zero() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, V5, "props-zero").await;
    client.send(subscribe(1, "p0/t", QoS::AtMostOnce)).await;
    assert_eq!(
        client.recv_raw(6).await,
        vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00],
        "SUBACK: id, property length 0, granted QoS 0"
    );
    client
        .send(publish("p0/t", QoS::AtMostOnce, None, b"x"))
        .await;
    assert_eq!(
        client.recv_raw(10).await,
        vec![0x30, 0x08, 0x00, 0x04, b'p', b'0', b'/', b't', 0x00, b'x'],
        "PUBLISH: topic, property length 0, payload"
    );
    client.send(unsubscribe(2, &["p0/t"])).await;
    assert_eq!(
        client.recv_raw(6).await,
        vec![0xB0, 0x04, 0x00, 0x02, 0x00, 0x00],
        "UNSUBACK: id, property length 0, success"
    );
    server.shutdown().await;
}

// The server never sends a Topic Alias, even to a client whose Topic Alias Maximum allows
// them: every PUBLISH carries the full topic name. So v5 [MQTT-3.1.2-26], [MQTT-3.3.2-11]
// (never above the client's maximum) and the sending side of [MQTT-3.3.2-8] (never 0)
// bind nothing the server does (docs/conformance.md says so and points here).
#[tokio::test]
async fn server_never_sends_topic_aliases() {
    let server = start_default().await;
    let mut connect = connect_packet(V5, "alias-allowed", true);
    connect.properties.topic_alias_maximum = Some(10);
    let mut sub = client_with(&server, connect).await;
    sub.subscribe_granted(1, "ta/#", QoS::AtLeastOnce).await;
    let mut publisher = connected_tcp(&server, V5, "alias-pub").await;
    let topic = "ta/a/rather/long/topic/name/worth/an/alias";
    for n in 1..=5u16 {
        publish_acked(
            &mut publisher,
            publish(topic, QoS::AtLeastOnce, Some(n), b"again"),
        )
        .await;
    }
    for _ in 1..=5 {
        let message = sub.expect_publish().await;
        assert_eq!(message.topic, topic);
        assert_eq!(message.properties.topic_alias, None);
        sub.send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-29]: with Request Problem Information 0 the server sends no Reason String
// and no User Property on any packet but PUBLISH, CONNACK and DISCONNECT. Switchboard sends
// none on any packet other than PUBLISH, whatever the client asked (Request Problem
// Information absent = 1 is checked too): the rules of 3.2.2.3.9/10, 3.4.2.2 .. 3.7.2.2,
// 3.9.2.1, 3.11.2.1, 3.14.2.2 and 3.15.2.2 about leaving them out of a packet that would
// be too large then never come into play (docs/conformance.md points here).
#[tokio::test]
async fn no_reason_string_or_user_property_on_any_packet_but_publish() {
    fn assert_bare(
        what: &str,
        reason_string: &Option<String>,
        user_properties: &[(String, String)],
    ) {
        assert_eq!(reason_string, &None, "{what}: Reason String");
        assert!(user_properties.is_empty(), "{what}: User Properties");
    }
    let server = start_default().await;
    for request in [Some(false), None] {
        let id = format!("problem-{request:?}");
        let mut connect = connect_packet(V5, &id, true);
        connect.properties.request_problem_information = request;
        connect.properties.user_properties = vec![("k".into(), "v".into())];
        let mut client = RawClient::tcp(addr(&server), V5).await;
        let connack = client.connect(connect).await;
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
        assert_bare(
            "CONNACK",
            &connack.properties.reason_string,
            &connack.properties.user_properties,
        );

        // SUBACK with a granted and a refused filter.
        let mut packet =
            subscribe_many(1, &[("rs/t", QoS::ExactlyOnce), ("a/#/b", QoS::AtMostOnce)]);
        packet.user_properties = vec![("k".into(), "v".into())];
        client.send(packet).await;
        let suback = client.expect_suback().await;
        assert_eq!(
            suback.reason_codes,
            vec![ReasonCode::GRANTED_QOS_2, ReasonCode::TOPIC_FILTER_INVALID]
        );
        assert_bare("SUBACK", &suback.reason_string, &suback.user_properties);

        // UNSUBACK for a filter that was never subscribed.
        client.send(unsubscribe(2, &["never"])).await;
        let unsuback = expect_unsuback(&mut client).await;
        assert_eq!(
            unsuback.reason_codes,
            vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]
        );
        assert_bare(
            "UNSUBACK",
            &unsuback.reason_string,
            &unsuback.user_properties,
        );

        // PUBACK and PUBREC 0x10 (nobody matched), PUBCOMP, and PUBCOMP 0x92.
        let mut with_properties = publish("nobody/x", QoS::AtLeastOnce, Some(1), b"x");
        with_properties.properties.user_properties = vec![("k".into(), "v".into())];
        client.send(with_properties.clone()).await;
        let ack = client.expect_puback().await;
        assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        assert_bare("PUBACK", &ack.reason_string, &ack.user_properties);
        client
            .send(Publish {
                qos: QoS::ExactlyOnce,
                packet_id: Some(2),
                ..with_properties
            })
            .await;
        let ack = client.expect_pubrec().await;
        assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        assert_bare("PUBREC", &ack.reason_string, &ack.user_properties);
        client.send(Packet::PubRel(Ack::new(2))).await;
        let ack = client.expect_pubcomp().await;
        assert_bare("PUBCOMP", &ack.reason_string, &ack.user_properties);
        client.send(Packet::PubRel(Ack::new(77))).await;
        let ack = client.expect_pubcomp().await;
        assert_eq!(ack.reason_code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
        assert_bare("PUBCOMP 0x92", &ack.reason_string, &ack.user_properties);

        // PUBREL of an outbound QoS 2 flow.
        let mut publisher = connected_tcp(&server, V5, "problem-pub").await;
        publish_acked(
            &mut publisher,
            publish("rs/t", QoS::ExactlyOnce, Some(1), b"q2"),
        )
        .await;
        let message = client.expect_publish().await;
        client
            .send(Packet::PubRec(Ack::new(message.packet_id.unwrap())))
            .await;
        let release = client.expect_pubrel().await;
        assert_bare("PUBREL", &release.reason_string, &release.user_properties);
        client
            .send(Packet::PubComp(Ack::new(message.packet_id.unwrap())))
            .await;

        // DISCONNECT for a protocol error (a second CONNECT).
        client
            .send(Packet::Connect(Box::new(connect_packet(V5, &id, true))))
            .await;
        match client.recv().await {
            Some(Packet::Disconnect(disconnect)) => {
                assert_eq!(disconnect.reason_code, ReasonCode::PROTOCOL_ERROR);
                assert_bare(
                    "DISCONNECT",
                    &disconnect.reason_string,
                    &disconnect.user_properties,
                );
            }
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
        assert_eq!(client.recv().await, None);

        // A refused CONNECT: CONNACK 0x8C.
        let mut refused = connect_packet(V5, "problem-auth", true);
        refused.properties.request_problem_information = request;
        refused.properties.authentication_method = Some("SCRAM-SHA-1".into());
        let mut client = RawClient::tcp(addr(&server), V5).await;
        let connack = client.connect(refused).await;
        assert_eq!(connack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
        assert_bare(
            "CONNACK 0x8C",
            &connack.properties.reason_string,
            &connack.properties.user_properties,
        );
    }
    server.shutdown().await;
}

// v5 [MQTT-3.3.2-13] / [MQTT-3.3.2-19]: Response Topic and Content Type are UTF-8 strings:
// ill-formed UTF-8 or U+0000 in them is a Malformed Packet (DISCONNECT 0x81, close);
// [MQTT-3.3.2-14]: a Response Topic with a wildcard is refused (DISCONNECT 0x82, close).
// None of them is delivered.
#[tokio::test]
async fn response_topic_and_content_type_are_checked() {
    let server = start_default().await;
    let mut witness = connected_tcp(&server, V5, "rt-witness").await;
    witness.subscribe_granted(1, "rt/#", QoS::AtMostOnce).await;
    let cases: [(&[u8], ReasonCode); 5] = [
        (
            &[0x08, 0x00, 0x02, 0xC3, 0x28],
            ReasonCode::MALFORMED_PACKET,
        ), // Response Topic, bad UTF-8
        (
            &[0x08, 0x00, 0x03, b'r', 0x00, b'x'],
            ReasonCode::MALFORMED_PACKET,
        ), // Response Topic, U+0000
        (&[0x03, 0x00, 0x01, 0xFF], ReasonCode::MALFORMED_PACKET), // Content Type, bad UTF-8
        (
            &[0x03, 0x00, 0x02, b't', 0x00],
            ReasonCode::MALFORMED_PACKET,
        ), // Content Type, U+0000
        (
            &[0x08, 0x00, 0x03, b'r', b'/', b'#'],
            ReasonCode::PROTOCOL_ERROR,
        ), // Response Topic, '#'
    ];
    for (n, (properties, code)) in cases.into_iter().enumerate() {
        let mut client = connected_tcp(&server, V5, &format!("rt-bad-{n}")).await;
        client
            .send_bytes(&raw_publish(0x30, b"rt/bad", properties, b"x"))
            .await;
        client.expect_closed_with(code).await;
    }
    let mut client = connected_tcp(&server, V5, "rt-good").await;
    let mut good = publish("rt/good", QoS::AtMostOnce, None, b"ok");
    good.properties.response_topic = Some("rt/reply/\u{FEFF}é".into());
    good.properties.content_type = Some("text/plain; charset=utf-8".into());
    client.send(good).await;
    let message = witness.expect_publish().await;
    assert_eq!(
        message.topic, "rt/good",
        "the refused ones were not delivered"
    );
    assert_eq!(
        message.properties.response_topic.as_deref(),
        Some("rt/reply/\u{FEFF}é")
    );
    server.shutdown().await;
}

// v5 and 3.1.1 [MQTT-3.10.4-3]: a QoS 1 or 2 delivery that had started when its
// subscription was removed is completed: after UNSUBACK the server still holds both in
// flight, answers the PUBREC with PUBREL and takes the PUBACK and PUBCOMP.
#[tokio::test]
async fn unsubscribe_completes_deliveries_in_flight() {
    let server = start_default().await;
    for version in [V5, V311] {
        let id = format!("unsub-inflight-{version:?}");
        let mut sub = connected_tcp(&server, version, &id).await;
        sub.subscribe_granted(1, "uif/#", QoS::ExactlyOnce).await;
        let mut publisher = connected_tcp(&server, V5, "uif-pub").await;
        publish_acked(
            &mut publisher,
            publish("uif/two", QoS::ExactlyOnce, Some(1), b"two"),
        )
        .await;
        publish_acked(
            &mut publisher,
            publish("uif/one", QoS::AtLeastOnce, Some(2), b"one"),
        )
        .await;
        let two = sub.expect_publish().await;
        let one = sub.expect_publish().await;
        assert_eq!((two.qos, one.qos), (QoS::ExactlyOnce, QoS::AtLeastOnce));

        sub.send(unsubscribe(5, &["uif/#"])).await;
        assert_eq!(expect_unsuback(&mut sub).await.packet_id, 5);
        let entry = server.broker().session(&id).unwrap();
        assert_eq!(entry.counts().subscriptions, 0);
        assert_eq!(
            entry.counts().inflight,
            2,
            "{version:?}: both still in flight"
        );

        let two_id = two.packet_id.unwrap();
        sub.send(Packet::PubRec(Ack::new(two_id))).await;
        assert_eq!(sub.expect_pubrel().await.packet_id, two_id);
        sub.send(Packet::PubComp(Ack::new(two_id))).await;
        sub.send(Packet::PubAck(Ack::new(one.packet_id.unwrap())))
            .await;
        wait_until(|| entry.counts().inflight == 0).await;
        // The connection is fine, and nothing else comes.
        sub.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(sub.expect().await, Packet::PingResp);
    }
    server.shutdown().await;
}

// v5 [MQTT-4.1.0-1] / 3.1.1 [MQTT-4.1.0-2]: session state is never discarded while the
// connection is open: a v5 session with a Session Expiry Interval of 1 s, and a 3.1.1
// clean session, keep their subscription through an hour of open, idle connection.
// Paused time, in-memory connections.
#[tokio::test(start_paused = true)]
async fn session_is_kept_while_the_connection_is_open() {
    let server = start(options()).await;
    for version in [V5, V311] {
        let id = format!("open-{version:?}");
        let mut connect = connect_packet(version, &id, true);
        connect.keep_alive = 0;
        if version.is_v5() {
            connect.properties.session_expiry_interval = Some(1);
        }
        let mut client = raw_in_memory(&server, version);
        assert_eq!(
            client.connect(connect).await.reason_code,
            ReasonCode::SUCCESS
        );
        client
            .subscribe_granted(1, "open/#", QoS::AtLeastOnce)
            .await;
        let started = tokio::time::Instant::now();
        assert_eq!(client.recv_within(Duration::from_secs(3600)).await, None);
        assert!(started.elapsed() >= Duration::from_secs(3600));
        assert_eq!(session_connected(&server, &id), Some(true), "{version:?}");
        let mut publisher = connected_in_memory(&server, V5, "open-pub").await;
        publish_acked(
            &mut publisher,
            publish("open/t", QoS::AtLeastOnce, Some(1), b"still"),
        )
        .await;
        let message = client.expect_publish().await;
        assert_eq!(&message.payload[..], b"still", "{version:?}");
        client
            .send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    server.shutdown().await;
}

// v5 [MQTT-4.3.2-5]: once the server has sent PUBACK, a PUBLISH with the same identifier
// is a new message, whatever its DUP flag; [MQTT-4.3.3-12]: after PUBCOMP likewise for
// QoS 2. A v5 publisher reuses identifiers 5 and 6; every message is delivered once.
#[tokio::test]
async fn identifiers_are_new_after_the_flow_completes_v5() {
    let server = start_default().await;
    let mut sub = connected_tcp(&server, V5, "reuse-sub").await;
    sub.send(subscribe_many(
        1,
        &[("reuse/#", QoS::ExactlyOnce), (MARKER, QoS::AtMostOnce)],
    ))
    .await;
    sub.expect_suback().await;
    let mut publisher = connected_tcp(&server, V5, "reuse-pub").await;
    publish_acked(
        &mut publisher,
        publish("reuse/q1", QoS::AtLeastOnce, Some(5), b"a"),
    )
    .await;
    publish_acked(
        &mut publisher,
        publish("reuse/q1", QoS::AtLeastOnce, Some(5), b"b"),
    )
    .await;
    let mut again = publish("reuse/q1", QoS::AtLeastOnce, Some(5), b"c");
    again.dup = true;
    publish_acked(&mut publisher, again).await;
    publish_acked(
        &mut publisher,
        publish("reuse/q2", QoS::ExactlyOnce, Some(6), b"x"),
    )
    .await;
    publish_acked(
        &mut publisher,
        publish("reuse/q2", QoS::ExactlyOnce, Some(6), b"y"),
    )
    .await;
    let received = received_before_marker(&mut sub).await;
    assert_eq!(payloads(&received), vec![&b"a"[..], b"b", b"c", b"x", b"y"]);
    server.shutdown().await;
}

// v5 [MQTT-4.3.3-13]: the receiver of a QoS 2 PUBLISH completes the acknowledgement
// sequence even when it applied message expiry: the only copy (for an offline session)
// expires before the publisher's PUBREL arrives, and the PUBREL still gets PUBCOMP 0x00.
// Paused time, in-memory connections.
#[tokio::test(start_paused = true)]
async fn qos2_flow_completes_after_message_expiry() {
    let server = start(options()).await;
    let persistent = |clean_start| {
        let mut connect = connect_packet(V5, "expiry-13-sub", clean_start);
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(300);
        connect
    };
    let mut sub = raw_in_memory(&server, V5);
    sub.connect(persistent(true)).await;
    sub.subscribe_granted(1, "e13/#", QoS::ExactlyOnce).await;
    sub.send(Packet::Disconnect(Disconnect::default())).await;
    assert_eq!(sub.recv().await, None);
    wait_until(|| session_connected(&server, "expiry-13-sub") == Some(false)).await;

    let mut connect = connect_packet(V5, "expiry-13-pub", true);
    connect.keep_alive = 0;
    let mut publisher = raw_in_memory(&server, V5);
    publisher.connect(connect).await;
    let mut message = publish("e13/t", QoS::ExactlyOnce, Some(3), b"short-lived");
    message.properties.message_expiry_interval = Some(2);
    publisher.send(message).await;
    let received = publisher.expect_pubrec().await;
    assert_eq!(
        (received.packet_id, received.reason_code),
        (3, ReasonCode::SUCCESS)
    );
    tokio::time::advance(Duration::from_secs(10)).await;

    publisher.send(Packet::PubRel(Ack::new(3))).await;
    let complete = publisher.expect_pubcomp().await;
    assert_eq!(
        (complete.packet_id, complete.reason_code),
        (3, ReasonCode::SUCCESS)
    );

    let mut sub = raw_in_memory(&server, V5);
    assert!(sub.connect(persistent(false)).await.session_present);
    assert_eq!(
        sub.recv_within(Duration::from_secs(1)).await,
        None,
        "the copy expired"
    );
    assert_eq!(
        server
            .broker()
            .metrics()
            .dropped_expired
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    server.shutdown().await;
}

// v5 [MQTT-4.8.2-6]: when the member of a shared subscription chosen for a message answers
// PUBACK or PUBREC with a reason code of 0x80 or more, the message is discarded: it is not
// offered to another member, not even when the first member's session then ends.
#[tokio::test]
async fn shared_member_error_acknowledgement_discards_the_message() {
    let server = start_default().await;
    let mut first = connected_tcp(&server, V5, "shared-err-first").await;
    first
        .subscribe_granted(1, "$share/g/sherr/t", QoS::ExactlyOnce)
        .await;
    let mut publisher = connected_tcp(&server, V5, "shared-err-pub").await;
    publish_acked(
        &mut publisher,
        publish("sherr/t", QoS::AtLeastOnce, Some(1), b"q1"),
    )
    .await;
    publish_acked(
        &mut publisher,
        publish("sherr/t", QoS::ExactlyOnce, Some(2), b"q2"),
    )
    .await;
    let q1 = first.expect_publish().await;
    let q2 = first.expect_publish().await;
    assert_eq!(payloads(&[q1.clone(), q2.clone()]), vec![&b"q1"[..], b"q2"]);

    let mut second = connected_tcp(&server, V5, "shared-err-second").await;
    second
        .send(subscribe_many(
            1,
            &[
                ("$share/g/sherr/t", QoS::ExactlyOnce),
                (MARKER, QoS::AtMostOnce),
            ],
        ))
        .await;
    second.expect_suback().await;

    first
        .send(Packet::PubAck(Ack::with_reason(
            q1.packet_id.unwrap(),
            ReasonCode::UNSPECIFIED_ERROR,
        )))
        .await;
    first
        .send(Packet::PubRec(Ack::with_reason(
            q2.packet_id.unwrap(),
            ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
        )))
        .await;
    let entry = server.broker().session("shared-err-first").unwrap();
    wait_until(|| entry.counts().inflight == 0).await;
    drop(first);
    wait_until(|| session_connected(&server, "shared-err-first").is_none()).await;
    assert!(
        received_before_marker(&mut second).await.is_empty(),
        "a refused shared message went to another member"
    );
    server.shutdown().await;
}

// v5 [MQTT-3.15.1-1]: AUTH with a reserved flag bit set is malformed: DISCONNECT 0x81, close.
#[tokio::test]
async fn auth_with_reserved_flags_is_malformed() {
    let server = start_default().await;
    for first in [0xF1u8, 0xF8] {
        let mut client = connected_tcp(&server, V5, "auth-flags").await;
        client.send_bytes(&[first, 0x00]).await;
        client
            .expect_closed_with(ReasonCode::MALFORMED_PACKET)
            .await;
    }
    server.shutdown().await;
}

// v5 [MQTT-3.1.3-8] / 3.1.1 [MQTT-3.1.3-9]: a Client Identifier the server rejects (longer
// than `max_client_id_length`, or zero-length when those are not allowed) gets CONNACK
// 0x85 (3.1.1: return code 0x02), session present 0, and the connection is closed
// (v5 [MQTT-3.1.4-2] limits checked after validation). Identifiers up to the limit work.
#[tokio::test]
async fn client_identifier_rejected() {
    let mut options = options();
    options.broker.max_client_id_length = 23;
    options.broker.allow_zero_length_client_id = false;
    let server = start(options).await;
    let too_long = "a".repeat(24);
    for version in [V5, V311] {
        for id in [too_long.as_str(), ""] {
            let mut client = RawClient::tcp(addr(&server), version).await;
            client
                .send(Packet::Connect(Box::new(connect_packet(version, id, true))))
                .await;
            if version.is_v5() {
                match client.expect().await {
                    Packet::ConnAck(connack) => {
                        assert_eq!(connack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
                        assert!(!connack.session_present);
                    }
                    other => panic!("expected CONNACK 0x85, got {other:?}"),
                }
            } else {
                assert_eq!(
                    client.recv_raw(4).await,
                    vec![0x20, 0x02, 0x00, 0x02],
                    "{id:?}"
                );
            }
            assert_eq!(client.recv().await, None, "{version:?} {id:?}: closed");
            assert!(server.broker().session(id).is_none());
        }
        let mut client = client_with(&server, connect_packet(version, &"b".repeat(23), true)).await;
        client.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(client.expect().await, Packet::PingResp);
    }
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.1.4-5]: after refusing a CONNECT the server processes nothing more from
// that connection: a retained PUBLISH and a SUBSCRIBE sent right behind a refused CONNECT
// (zero-byte ClientId with CleanSession 0; unsupported protocol level) have no effect.
#[tokio::test]
async fn refused_connect_v311_processes_nothing_after_it() {
    let server = start_default().await;
    let mut retained = publish("refused/r", QoS::AtMostOnce, None, b"must not be stored");
    retained.retain = true;
    let mut behind = encoded(Packet::Publish(retained), V311);
    behind.extend_from_slice(&encoded(
        Packet::Subscribe(subscribe(1, "refused/#", QoS::AtMostOnce)),
        V311,
    ));
    let mut unsupported = encoded(
        Packet::Connect(Box::new(connect_packet(V311, "level", true))),
        V311,
    );
    unsupported[8] = 6;
    for (mut bytes, code) in [
        (
            encoded(
                Packet::Connect(Box::new(connect_packet(V311, "", false))),
                V311,
            ),
            0x02,
        ),
        (unsupported, 0x01),
    ] {
        bytes.extend_from_slice(&behind);
        let mut client = RawClient::tcp(addr(&server), V311).await;
        client.send_bytes(&bytes).await;
        assert_eq!(client.recv_raw(5).await, vec![0x20, 0x02, 0x00, code]);
        assert_eq!(client.recv().await, None);
    }
    assert_eq!(server.broker().retained_count(), 0);
    assert_eq!(server.broker().session_count(), 0);
    assert_eq!(server.broker().subscription_count(), 0);
    server.shutdown().await;
}

// 3.1.1 [MQTT-4.7.2-1]: for a 3.1.1 client too, filters starting with '#' or '+' do not
// match topic names starting with '$', and filters that spell out the '$' level do.
#[tokio::test]
async fn dollar_topics_are_not_matched_by_leading_wildcards_v311() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, V311, "dollar311").await;
    client
        .send(subscribe_many(
            1,
            &[
                ("#", QoS::AtMostOnce),
                ("+/monitor/Clients", QoS::AtMostOnce),
            ],
        ))
        .await;
    client.expect_suback().await;
    for topic in ["$SYS/monitor/Clients", "$other/x", "SYS/monitor/Clients"] {
        client
            .send(publish(topic, QoS::AtMostOnce, None, b"x"))
            .await;
    }
    // '#' matches the marker too (one copy): it ends the list.
    let topics: Vec<String> = received_before_marker(&mut client)
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert_eq!(topics, vec!["SYS/monitor/Clients"]);
    client.subscribe_granted(2, "$SYS/#", QoS::AtMostOnce).await;
    client
        .send(publish("$SYS/monitor/Clients", QoS::AtMostOnce, None, b"y"))
        .await;
    assert_eq!(client.expect_publish().await.topic, "$SYS/monitor/Clients");
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.3.1-12]: a PUBLISH from a 3.1.1 client with RETAIN 0 neither stores a
// retained message nor removes or replaces the one there, even with an empty payload.
#[tokio::test]
async fn non_retained_publish_leaves_the_retained_message_alone_v311() {
    let server = start_default().await;
    let mut publisher = connected_tcp(&server, V311, "keep311-pub").await;
    let mut retained = publish("keep311/a", QoS::AtLeastOnce, Some(1), b"kept");
    retained.retain = true;
    publish_acked(&mut publisher, retained).await;
    for (n, (topic, payload)) in [
        ("keep311/a", &b"not retained"[..]),
        ("keep311/a", b""),
        ("keep311/b", b"never stored"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut message = publish(topic, QoS::AtLeastOnce, Some(n as u16 + 2), b"");
        message.payload = Bytes::copy_from_slice(payload);
        publish_acked(&mut publisher, message).await;
    }
    assert_eq!(server.broker().retained_count(), 1);
    let mut sub = connected_tcp(&server, V311, "keep311-sub").await;
    sub.subscribe_granted(1, MARKER, QoS::AtMostOnce).await;
    sub.subscribe_granted(2, "keep311/+", QoS::AtLeastOnce)
        .await;
    let received = received_before_marker(&mut sub).await;
    assert_eq!(payloads(&received), vec![&b"kept"[..]]);
    assert!(received[0].retain);
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.8.4-3]: a SUBSCRIBE with a filter the session already has replaces that
// subscription (new maximum QoS, still one subscription), the matching retained message is
// sent again, and the flow of publications goes on: one copy of each, at the new QoS.
#[tokio::test]
async fn resubscribe_replaces_and_resends_retained_v311() {
    let server = start_default().await;
    let mut publisher = connected_tcp(&server, V311, "resub311-pub").await;
    let mut retained = publish("resub311/t", QoS::AtLeastOnce, Some(1), b"kept");
    retained.retain = true;
    publish_acked(&mut publisher, retained).await;

    let mut client = connected_tcp(&server, V311, "resub311").await;
    client.subscribe_granted(1, MARKER, QoS::AtMostOnce).await;
    for (packet_id, qos) in [(2u16, QoS::AtMostOnce), (3, QoS::ExactlyOnce)] {
        client.subscribe_granted(packet_id, "resub311/t", qos).await;
        let received = received_before_marker(&mut client).await;
        assert_eq!(
            payloads(&received),
            vec![&b"kept"[..]],
            "SUBSCRIBE {packet_id}"
        );
        assert!(received[0].retain);
        assert_eq!(received[0].qos, qos.min(QoS::AtLeastOnce));
    }
    assert_eq!(
        server
            .broker()
            .session("resub311")
            .unwrap()
            .counts()
            .subscriptions,
        2,
        "the filter and the marker"
    );
    publish_acked(
        &mut publisher,
        publish("resub311/t", QoS::ExactlyOnce, Some(2), b"live"),
    )
    .await;
    let received = received_before_marker(&mut client).await;
    assert_eq!(payloads(&received), vec![&b"live"[..]], "one copy");
    assert_eq!(received[0].qos, QoS::ExactlyOnce);
    assert!(!received[0].retain);
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.10.4-1]: UNSUBSCRIBE filters are compared character by character
// (wildcards literally) and only an exact match is deleted; [MQTT-3.10.4-6] several
// filters get a single UNSUBACK ([MQTT-3.10.4-5] with the packet identifier, also for
// filters that matched nothing).
#[tokio::test]
async fn unsubscribe_v311_compares_filters_literally_and_answers_once() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, V311, "unsub311-literal").await;
    client
        .send(subscribe_many(
            1,
            &[
                ("u311/+", QoS::AtMostOnce),
                ("u311/keep", QoS::AtMostOnce),
                (MARKER, QoS::AtMostOnce),
            ],
        ))
        .await;
    client.expect_suback().await;
    client
        .send(unsubscribe(42, &["u311/a", "u311/#", "U311/+", "u311/+"]))
        .await;
    assert_eq!(expect_unsuback(&mut client).await.packet_id, 42);
    for topic in ["u311/a", "u311/keep"] {
        client
            .send(publish(topic, QoS::AtMostOnce, None, b"x"))
            .await;
    }
    let topics: Vec<String> = received_before_marker(&mut client)
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert_eq!(topics, vec!["u311/keep"], "only u311/+ was removed");
    assert_eq!(
        server
            .broker()
            .session("unsub311-literal")
            .unwrap()
            .counts()
            .subscriptions,
        2
    );
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.9.3-2]: a 3.1.1 SUBACK carries only 0x00, 0x01, 0x02 and 0x80, whatever the
// reason for a refusal (quota exceeded, shared subscriptions off, invalid filter) and with
// the granted QoS capped by the server's maximum.
#[tokio::test]
async fn suback_v311_uses_only_its_return_codes() {
    let mut options = options();
    options.broker.maximum_qos = QoS::AtLeastOnce;
    options.broker.shared_subscriptions = false;
    options.broker.max_subscriptions_per_client = 2;
    let server = start(options).await;
    let mut client = connected_tcp(&server, V311, "suback311").await;
    client
        .send(subscribe_many(
            9,
            &[
                ("s/a", QoS::ExactlyOnce),
                ("s/b", QoS::AtMostOnce),
                ("s/c", QoS::AtLeastOnce),
                ("$share/g/s/d", QoS::AtLeastOnce),
                ("s/#/bad", QoS::AtLeastOnce),
            ],
        ))
        .await;
    assert_eq!(
        client.recv_raw(9).await,
        vec![0x90, 0x07, 0x00, 0x09, 0x01, 0x00, 0x80, 0x80, 0x80]
    );
    server.shutdown().await;
}

/// Asserts that the next packet the server sends, if any, is at most `limit` bytes. Reads
/// its fixed header only (test packets stay below 128 bytes), so that a server which
/// drops an oversized packet, or closes the connection instead, passes without a wait.
async fn assert_next_packet_fits<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    limit: usize,
) {
    let header = client.recv_raw(2).await;
    if let [_, remaining] = header[..] {
        assert!(remaining < 0x80, "a packet of 128 bytes or more");
        let length = 2 + usize::from(remaining);
        assert!(
            length <= limit,
            "a {length}-byte packet for a {limit}-byte limit"
        );
    }
}

// v5 [MQTT-3.1.2-24] for the packets the server writes itself, not only PUBLISH: a client
// that announces 12 bytes gets the bare CONNACK (its properties are all optional) instead
// of one with the server's limits; one that announces 40 and subscribes to 40 filters does
// not get the 45-byte SUBACK at all. No packet over the limit may arrive.
#[tokio::test]
async fn no_packet_exceeds_the_clients_maximum_packet_size() {
    let server = start_default().await;
    // A CONNACK with the server's limits in it does not fit in 12 bytes.
    let mut connect = connect_packet(V5, "tiny-limit", true);
    connect.properties.maximum_packet_size = Some(12);
    let mut client = RawClient::tcp(addr(&server), V5).await;
    client.send(Packet::Connect(Box::new(connect))).await;
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_next_packet_fits(&mut client, 12).await;
    // A SUBACK with 40 reason codes does not fit in 40 bytes.
    let mut connect = connect_packet(V5, "small-limit", true);
    connect.properties.maximum_packet_size = Some(40);
    let mut client = client_with(&server, connect).await;
    let filters: Vec<String> = (0..40).map(|n| format!("f/{n}")).collect();
    let filters: Vec<(&str, QoS)> = filters
        .iter()
        .map(|filter| (filter.as_str(), QoS::AtMostOnce))
        .collect();
    client.send(subscribe_many(1, &filters)).await;
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_next_packet_fits(&mut client, 40).await;
    server.shutdown().await;
}
