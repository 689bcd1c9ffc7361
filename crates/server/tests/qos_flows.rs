//! QoS 1 and 2 flows in both directions, flow control, resend on resume, ordering,
//! and the PUBLISH properties the server must honour or pass through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use support::*;
use switchboard_codec::{
    encode, Ack, Connect, Disconnect, Packet, ProtocolVersion, Publish, PublishProperties, QoS,
    ReasonCode, SubscriptionOptions,
};
use switchboard_server::RunningServer;
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn persistent(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    let mut connect = connect_packet(version, client_id, clean_start);
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(300);
    }
    connect
}

async fn client_with(server: &RunningServer, connect: Connect) -> RawClient<TcpStream> {
    let mut client = RawClient::tcp(addr(server), connect.protocol).await;
    let ack = client.connect(connect).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    client
}

async fn subscriber(
    server: &RunningServer,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) -> RawClient<TcpStream> {
    let mut client = connected_tcp(server, version, id).await;
    client.subscribe_granted(1, filter, qos).await;
    client
}

fn options_with(qos: QoS, configure: impl FnOnce(&mut SubscriptionOptions)) -> SubscriptionOptions {
    let mut options = SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    };
    configure(&mut options);
    options
}

/// The connection is closed by the client and the broker has detached the session.
async fn drop_and_wait(client: RawClient<TcpStream>, server: &RunningServer, id: &str) {
    drop(client);
    wait_until(|| session_connected(server, id) != Some(true)).await;
}

// QoS 1 inbound, 3.1.1, exact bytes: [MQTT-3.3.4-1] (3.1.1 and v5) the receiver answers
// PUBACK; 3.1.1 [MQTT-2.3.1-6] / v5 [MQTT-2.2.1-5] with the PUBLISH's packet identifier;
// v5 [MQTT-4.3.2-4] / 3.1.1 [MQTT-4.3.2-2] after taking ownership (the subscriber gets it);
// v5 [MQTT-4.3.2-5] afterwards the same identifier is a new message.
#[tokio::test]
async fn qos1_inbound_puback_exact() {
    let server = start_default().await;
    let mut sub = subscriber(&server, V5, "q1-sub", "q1/#", QoS::AtLeastOnce).await;
    let mut publisher = connected_tcp(&server, V311, "q1-pub").await;
    for round in 0..2u8 {
        publisher
            .send(publish("q1/a", QoS::AtLeastOnce, Some(10), b"one"))
            .await;
        assert_eq!(
            publisher.recv_raw(4).await,
            vec![0x40, 0x02, 0x00, 0x0A],
            "round {round}"
        );
        let message = sub.expect_publish().await;
        assert_eq!(
            (message.qos, &message.payload[..]),
            (QoS::AtLeastOnce, &b"one"[..])
        );
        sub.send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    server.shutdown().await;
}

// QoS 1 inbound, v5: PUBACK 0x00 when someone matched, 0x10 (No matching subscribers)
// otherwise ([MQTT-3.4.2-1]: PUBACK reason codes only).
#[tokio::test]
async fn qos1_inbound_puback_v5_reason_codes() {
    let server = start_default().await;
    let mut sub = subscriber(&server, V5, "q1v5-sub", "q1v5/matched", QoS::AtLeastOnce).await;
    let mut publisher = connected_tcp(&server, V5, "q1v5-pub").await;
    publisher
        .send(publish("q1v5/matched", QoS::AtLeastOnce, Some(1), b"m"))
        .await;
    let ack = publisher.expect_puback().await;
    assert_eq!((ack.packet_id, ack.reason_code), (1, ReasonCode::SUCCESS));
    publisher
        .send(publish("q1v5/nobody", QoS::AtLeastOnce, Some(2), b"n"))
        .await;
    let ack = publisher.expect_puback().await;
    assert_eq!(
        (ack.packet_id, ack.reason_code),
        (2, ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
    assert_eq!(&sub.expect_publish().await.payload[..], b"m");
    server.shutdown().await;
}

// QoS 1 outbound: v5 [MQTT-4.3.2-1]/[MQTT-4.3.2-2], 3.1.1 [MQTT-4.3.2-1]: a fresh non-zero
// unused identifier, QoS 1, DUP 0; v5 [MQTT-2.2.1-4] / 3.1.1 [MQTT-2.3.1-4] not in use:
// two unacknowledged messages have different identifiers; [MQTT-4.3.2-3] unacknowledged
// until PUBACK; [MQTT-3.3.1-3] (v5 and 3.1.1) the incoming DUP is not passed on.
#[tokio::test]
async fn qos1_outbound() {
    let server = start_default().await;
    for version in [V5, V311] {
        let id = format!("q1out-{version:?}");
        let mut sub = subscriber(&server, version, &id, "q1out/+", QoS::AtLeastOnce).await;
        let mut publisher = connected_tcp(&server, V5, "q1out-pub").await;
        let mut first = publish("q1out/a", QoS::AtLeastOnce, Some(5), b"first");
        first.dup = true;
        publisher.send(first).await;
        publisher
            .send(publish("q1out/a", QoS::AtLeastOnce, Some(6), b"second"))
            .await;
        let one = sub.expect_publish().await;
        let two = sub.expect_publish().await;
        for message in [&one, &two] {
            assert_eq!(message.qos, QoS::AtLeastOnce);
            assert!(!message.dup, "DUP 0 on a first delivery");
            assert!(message.packet_id.is_some_and(|id| id != 0));
        }
        assert_ne!(one.packet_id, two.packet_id);
        let entry = server.broker().session(&id).unwrap();
        wait_until(|| entry.counts().inflight == 2).await;
        sub.send(Packet::PubAck(Ack::new(one.packet_id.unwrap())))
            .await;
        sub.send(Packet::PubAck(Ack::new(two.packet_id.unwrap())))
            .await;
        wait_until(|| entry.counts().inflight == 0).await;
    }
    server.shutdown().await;
}

// QoS 2 inbound, exact bytes (3.1.1): [MQTT-4.3.3-8] (v5) / [MQTT-4.3.3-2] (3.1.1) PUBREC
// with the identifier; [MQTT-4.3.3-10] (v5) a repeat (DUP 1, same id) before PUBREL is
// answered with PUBREC again and not delivered twice; [MQTT-4.3.3-11] PUBREL answered
// with PUBCOMP, same id; [MQTT-4.3.3-12] afterwards the id is a new message.
#[tokio::test]
async fn qos2_inbound_exactly_once() {
    let server = start_default().await;
    let mut sub = subscriber(&server, V5, "q2in-sub", "q2in/#", QoS::ExactlyOnce).await;
    let mut publisher = connected_tcp(&server, V311, "q2in-pub").await;
    publisher
        .send(publish("q2in/a", QoS::ExactlyOnce, Some(20), b"once"))
        .await;
    assert_eq!(publisher.recv_raw(4).await, vec![0x50, 0x02, 0x00, 0x14]);
    let mut again = publish("q2in/a", QoS::ExactlyOnce, Some(20), b"once");
    again.dup = true;
    publisher.send(again.clone()).await;
    assert_eq!(
        publisher.recv_raw(4).await,
        vec![0x50, 0x02, 0x00, 0x14],
        "PUBREC again"
    );
    publisher.send(again).await;
    assert_eq!(
        publisher.recv_raw(4).await,
        vec![0x50, 0x02, 0x00, 0x14],
        "and again"
    );
    publisher.send(Packet::PubRel(Ack::new(20))).await;
    assert_eq!(publisher.recv_raw(4).await, vec![0x70, 0x02, 0x00, 0x14]);

    let message = sub.expect_publish().await;
    assert_eq!(
        (message.qos, &message.payload[..]),
        (QoS::ExactlyOnce, &b"once"[..])
    );
    assert!(!message.dup);
    sub.send(Packet::PubRec(Ack::new(message.packet_id.unwrap())))
        .await;
    assert_eq!(
        sub.expect_pubrel().await.packet_id,
        message.packet_id.unwrap()
    );
    sub.send(Packet::PubComp(Ack::new(message.packet_id.unwrap())))
        .await;
    // Nothing else: the repeats were not routed. PINGRESP is the next packet.
    sub.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(sub.expect().await, Packet::PingResp);

    // After PUBCOMP the identifier starts a new message.
    publisher
        .send(publish("q2in/a", QoS::ExactlyOnce, Some(20), b"new"))
        .await;
    assert_eq!(publisher.recv_raw(4).await, vec![0x50, 0x02, 0x00, 0x14]);
    publisher.send(Packet::PubRel(Ack::new(20))).await;
    assert_eq!(publisher.recv_raw(4).await, vec![0x70, 0x02, 0x00, 0x14]);
    assert_eq!(&sub.expect_publish().await.payload[..], b"new");
    server.shutdown().await;
}

// QoS 2 outbound: [MQTT-4.3.3-1]/[MQTT-4.3.3-2] (v5) fresh id, QoS 2, DUP 0;
// [MQTT-4.3.3-3] unacknowledged until PUBREC; [MQTT-4.3.3-4] PUBREC answered by PUBREL
// with the same id (3.1.1 exact bytes 62 02 id; [MQTT-3.6.1-1] flags 0010);
// [MQTT-4.3.3-5] unacknowledged until PUBCOMP; 3.1.1 [MQTT-4.3.3-1].
#[tokio::test]
async fn qos2_outbound() {
    let server = start_default().await;
    for version in [V311, V5] {
        let id = format!("q2out-{version:?}");
        let mut sub = subscriber(&server, version, &id, "q2out/#", QoS::ExactlyOnce).await;
        let mut publisher = connected_tcp(&server, V5, "q2out-pub").await;
        publisher
            .send(publish("q2out/a", QoS::ExactlyOnce, Some(1), b"two"))
            .await;
        assert_eq!(publisher.expect_pubrec().await.packet_id, 1);
        let message = sub.expect_publish().await;
        assert_eq!(message.qos, QoS::ExactlyOnce);
        assert!(!message.dup);
        let packet_id = message.packet_id.unwrap();
        assert_ne!(packet_id, 0);
        let entry = server.broker().session(&id).unwrap();
        assert_eq!(entry.counts().inflight, 1);
        sub.send(Packet::PubRec(Ack::new(packet_id))).await;
        if version == V311 {
            let [hi, lo] = packet_id.to_be_bytes();
            assert_eq!(sub.recv_raw(4).await, vec![0x62, 0x02, hi, lo]);
        } else {
            let release = sub.expect_pubrel().await;
            assert_eq!(
                (release.packet_id, release.reason_code),
                (packet_id, ReasonCode::SUCCESS)
            );
        }
        assert_eq!(entry.counts().inflight, 1, "awaiting PUBCOMP");
        sub.send(Packet::PubComp(Ack::new(packet_id))).await;
        wait_until(|| entry.counts().inflight == 0).await;
        publisher.send(Packet::PubRel(Ack::new(1))).await;
        assert_eq!(publisher.expect_pubcomp().await.packet_id, 1);
    }
    server.shutdown().await;
}

// A PUBREL for an identifier the server does not know: v5 PUBCOMP 0x92 (Packet Identifier
// not found, [MQTT-3.7.2-1] a PUBCOMP reason code); 3.1.1 plain PUBCOMP
// ([MQTT-4.3.3-11] v5 answer PUBREL with PUBCOMP, same id). The connection stays up.
#[tokio::test]
async fn unknown_pubrel_gets_pubcomp() {
    let server = start_default().await;
    let mut v5 = connected_tcp(&server, V5, "relv5").await;
    v5.send(Packet::PubRel(Ack::new(77))).await;
    let complete = v5.expect_pubcomp().await;
    assert_eq!(
        (complete.packet_id, complete.reason_code),
        (77, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
    let mut v311 = connected_tcp(&server, V311, "relv311").await;
    v311.send(Packet::PubRel(Ack::new(77))).await;
    assert_eq!(v311.recv_raw(4).await, vec![0x70, 0x02, 0x00, 0x4D]);
    for client in [&mut v311] {
        client.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(client.expect().await, Packet::PingResp);
    }
    v5.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(v5.expect().await, Packet::PingResp);
    server.shutdown().await;
}

// Outbound flow control: [MQTT-3.3.4-9] (v5) never more unacknowledged QoS 1/2 PUBLISH than
// the client's Receive Maximum; [MQTT-4.9.0-1] initial quota = Receive Maximum;
// [MQTT-4.9.0-2] at quota 0 no more QoS > 0 PUBLISH; each PUBACK lets exactly one more go;
// [MQTT-3.3.4-10] / [MQTT-4.9.0-3] other packets (PINGRESP, SUBACK) are not held back.
#[tokio::test]
async fn outbound_receive_maximum() {
    let server = start_default().await;
    let mut connect = connect_packet(V5, "rm2", true);
    connect.properties.receive_maximum = Some(2);
    let mut sub = client_with(&server, connect).await;
    sub.subscribe_granted(1, "rm/#", QoS::AtLeastOnce).await;
    let mut publisher = connected_tcp(&server, V5, "rm-pub").await;
    for n in 1..=5u16 {
        let payload: &'static [u8] = [b"m1", b"m2", b"m3", b"m4", b"m5"][usize::from(n - 1)];
        publisher
            .send(publish("rm/a", QoS::AtLeastOnce, Some(n), payload))
            .await;
        assert_eq!(publisher.expect_puback().await.packet_id, n);
    }
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    assert_eq!(
        (&first.payload[..], &second.payload[..]),
        (&b"m1"[..], &b"m2"[..])
    );
    // Other packets still flow while the quota is zero.
    sub.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(sub.expect().await, Packet::PingResp);
    sub.send(subscribe(2, "rm-other", QoS::AtMostOnce)).await;
    assert_eq!(sub.expect_suback().await.packet_id, 2);
    let entry = server.broker().session("rm2").unwrap();
    let counts = entry.counts();
    assert_eq!(
        (counts.inflight, counts.queued),
        (2, 3),
        "two in flight, three waiting"
    );

    sub.send(Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .await;
    let third = sub.expect_publish().await;
    assert_eq!(&third.payload[..], b"m3");
    sub.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(
        sub.expect().await,
        Packet::PingResp,
        "only one more after one PUBACK"
    );
    let counts = entry.counts();
    assert_eq!((counts.inflight, counts.queued), (2, 2));
    for message in [second, third] {
        sub.send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    let fourth = sub.expect_publish().await;
    let fifth = sub.expect_publish().await;
    assert_eq!(
        (&fourth.payload[..], &fifth.payload[..]),
        (&b"m4"[..], &b"m5"[..])
    );
    server.shutdown().await;
}

// Inbound flow control: more unacknowledged QoS 2 PUBLISH than the server's Receive
// Maximum: DISCONNECT 0x93 ([MQTT-3.3.4-7], binds clients; the server reacts).
#[tokio::test]
async fn inbound_receive_maximum_exceeded() {
    let mut options = options();
    options.broker.receive_maximum = 2;
    let server = start(options).await;
    let mut client = connected_tcp(&server, V5, "flood").await;
    for id in 1..=2 {
        client
            .send(publish("flood", QoS::ExactlyOnce, Some(id), b"x"))
            .await;
        assert_eq!(client.expect_pubrec().await.packet_id, id);
    }
    client
        .send(publish("flood", QoS::ExactlyOnce, Some(3), b"x"))
        .await;
    client
        .expect_closed_with(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        .await;
    server.shutdown().await;
}

// Resend on resume: v5 and 3.1.1 [MQTT-4.4.0-1]: reconnecting with clean start 0, the
// unacknowledged QoS 1 PUBLISH is sent again with its original identifier and
// [MQTT-3.3.1-1] DUP 1; a QoS 2 message that was PUBREC'd gets its PUBREL again and
// [MQTT-4.3.3-6] (v5) never the PUBLISH; [MQTT-3.2.0-1] all after the CONNACK.
#[tokio::test]
async fn resend_with_dup_on_session_resume() {
    let server = start_default().await;
    for version in [V5, V311] {
        let id = format!("resume-{version:?}");
        let mut sub = client_with(&server, persistent(version, &id, false)).await;
        sub.subscribe_granted(1, "resume/#", QoS::ExactlyOnce).await;
        let mut publisher = connected_tcp(&server, V5, "resume-pub").await;
        publisher
            .send(publish("resume/q1", QoS::AtLeastOnce, Some(1), b"q1"))
            .await;
        publisher.expect_puback().await;
        publisher
            .send(publish("resume/q2", QoS::ExactlyOnce, Some(2), b"q2"))
            .await;
        publisher.expect_pubrec().await;
        publisher.send(Packet::PubRel(Ack::new(2))).await;
        publisher.expect_pubcomp().await;

        let q1 = sub.expect_publish().await;
        let q2 = sub.expect_publish().await;
        assert_eq!((q1.qos, q2.qos), (QoS::AtLeastOnce, QoS::ExactlyOnce));
        sub.send(Packet::PubRec(Ack::new(q2.packet_id.unwrap())))
            .await;
        assert_eq!(sub.expect_pubrel().await.packet_id, q2.packet_id.unwrap());
        // Gone without acknowledging q1 or completing q2.
        drop_and_wait(sub, &server, &id).await;

        let mut sub = RawClient::tcp(addr(&server), version).await;
        let ack = sub.connect(persistent(version, &id, false)).await;
        assert!(ack.session_present, "{version:?}");
        let resent = sub.expect_publish().await;
        assert_eq!(resent.packet_id, q1.packet_id, "original identifier");
        assert!(resent.dup, "DUP 1 on the resend");
        assert_eq!(
            (resent.topic.as_str(), &resent.payload[..]),
            ("resume/q1", &b"q1"[..])
        );
        let release = sub.expect_pubrel().await;
        assert_eq!(release.packet_id, q2.packet_id.unwrap());
        // No PUBLISH of q2 again: next is our PINGRESP.
        sub.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(sub.expect().await, Packet::PingResp);
        sub.send(Packet::PubAck(Ack::new(q1.packet_id.unwrap())))
            .await;
        sub.send(Packet::PubComp(Ack::new(q2.packet_id.unwrap())))
            .await;
        let entry = server.broker().session(&id).unwrap();
        wait_until(|| entry.counts().inflight == 0).await;
        // [MQTT-4.4.0-1] (v5): re-send at no other time: a second resume sends nothing.
        drop_and_wait(sub, &server, &id).await;
        let mut sub = RawClient::tcp(addr(&server), version).await;
        assert!(
            sub.connect(persistent(version, &id, false))
                .await
                .session_present
        );
        sub.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(sub.expect().await, Packet::PingResp);
    }
    server.shutdown().await;
}

// [MQTT-4.6.0-5] / [MQTT-4.6.0-6] (v5 and 3.1.1): messages of one publisher on a topic reach
// the subscriber in the order sent; the PUBACKs / PUBRECs come back in the order the
// PUBLISHes arrived (4.6's rule for acknowledgements, [MQTT-4.6.0-2]/[MQTT-4.6.0-3]).
#[tokio::test]
async fn ordering_of_messages_and_acknowledgements() {
    let server = start_default().await;
    let mut sub = subscriber(&server, V5, "order-sub", "order/#", QoS::ExactlyOnce).await;
    let mut publisher = connected_tcp(&server, V311, "order-pub").await;
    let count = 40u16;
    let mut burst = BytesMut::new();
    for n in 1..=count {
        let qos = if n % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let mut message = publish("order/t", qos, Some(n), b"");
        message.payload = Bytes::from(n.to_string());
        encode(&Packet::Publish(message), V311, &mut burst).unwrap();
    }
    publisher.send_bytes(&burst).await;
    for n in 1..=count {
        match publisher.expect().await {
            Packet::PubAck(ack) if n % 2 == 0 => assert_eq!(ack.packet_id, n),
            Packet::PubRec(ack) if n % 2 == 1 => assert_eq!(ack.packet_id, n),
            other => panic!("acknowledgement {n}: got {other:?}"),
        }
    }
    for n in (1..=count).filter(|n| n % 2 == 1) {
        publisher.send(Packet::PubRel(Ack::new(n))).await;
        assert_eq!(publisher.expect_pubcomp().await.packet_id, n);
    }
    let mut received = Vec::new();
    while received.len() < usize::from(count) {
        match sub.expect().await {
            Packet::Publish(message) => {
                let packet_id = message.packet_id.unwrap();
                match message.qos {
                    QoS::AtLeastOnce => sub.send(Packet::PubAck(Ack::new(packet_id))).await,
                    _ => sub.send(Packet::PubRec(Ack::new(packet_id))).await,
                }
                received.push(String::from_utf8(message.payload.to_vec()).unwrap());
            }
            Packet::PubRel(release) => sub.send(Packet::PubComp(Ack::new(release.packet_id))).await,
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<String> = (1..=count).map(|n| n.to_string()).collect();
    assert_eq!(received, expected);
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-24]: never send a packet larger than the client's Maximum Packet Size;
// [MQTT-3.1.2-25]: such a message is dropped for that client, which carries on; other
// subscribers get it.
#[tokio::test]
async fn client_maximum_packet_size() {
    let server = start_default().await;
    let mut connect = connect_packet(V5, "small", true);
    connect.properties.maximum_packet_size = Some(100);
    let mut small = client_with(&server, connect).await;
    small.subscribe_granted(1, "size/#", QoS::AtLeastOnce).await;
    let mut large = subscriber(&server, V5, "large", "size/#", QoS::AtLeastOnce).await;
    let mut publisher = connected_tcp(&server, V5, "size-pub").await;
    let mut big = publish("size/big", QoS::AtLeastOnce, Some(1), b"");
    big.payload = Bytes::from(vec![b'b'; 200]);
    publisher.send(big).await;
    publisher.expect_puback().await;
    publisher
        .send(publish("size/small", QoS::AtLeastOnce, Some(2), b"fits"))
        .await;
    publisher.expect_puback().await;

    assert_eq!(large.expect_publish().await.payload.len(), 200);
    assert_eq!(&large.expect_publish().await.payload[..], b"fits");
    let first = small.expect_publish().await;
    assert_eq!(&first.payload[..], b"fits", "the big one was never sent");
    let mut out = BytesMut::new();
    encode(&Packet::Publish(first.clone()), V5, &mut out).unwrap();
    assert!(out.len() <= 100);
    small
        .send(Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .await;
    let entry = server.broker().session("small").unwrap();
    wait_until(|| entry.counts().inflight == 0 && entry.counts().queued == 0).await;
    assert!(
        server
            .broker()
            .metrics()
            .dropped_too_large
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    server.shutdown().await;
}

// v5 topic alias from the client: [MQTT-3.3.2-12] every alias 1..=Topic Alias Maximum is
// accepted: set with a topic, then used with an empty topic; remapping replaces it;
// [MQTT-3.1.2-27] the server sends no alias to a client that allowed none; [MQTT-3.3.2-7]
// mappings do not carry over to a new connection (unknown alias: protocol error 0x82).
#[tokio::test]
async fn topic_alias_from_client() {
    let options = options();
    let maximum = options.broker.topic_alias_maximum;
    let server = start(options).await;
    let mut sub = subscriber(&server, V5, "alias-sub", "alias/#", QoS::AtMostOnce).await;
    let mut publisher = connected_tcp(&server, V5, "alias-pub").await;
    let aliased = |topic: &str, alias: u16, payload: &'static [u8]| {
        let mut message = publish(topic, QoS::AtMostOnce, None, payload);
        message.properties.topic_alias = Some(alias);
        message
    };
    publisher.send(aliased("alias/one", 1, b"set 1")).await;
    publisher.send(aliased("", 1, b"use 1")).await;
    publisher
        .send(aliased("alias/max", maximum, b"set max"))
        .await;
    publisher.send(aliased("", maximum, b"use max")).await;
    publisher.send(aliased("alias/two", 1, b"remap 1")).await;
    publisher.send(aliased("", 1, b"use remapped 1")).await;
    let expected = [
        ("alias/one", "set 1"),
        ("alias/one", "use 1"),
        ("alias/max", "set max"),
        ("alias/max", "use max"),
        ("alias/two", "remap 1"),
        ("alias/two", "use remapped 1"),
    ];
    for (topic, payload) in expected {
        let message = sub.expect_publish().await;
        assert_eq!(
            (message.topic.as_str(), &message.payload[..]),
            (topic, payload.as_bytes())
        );
        assert_eq!(message.properties.topic_alias, None);
    }
    // A new connection starts without mappings.
    drop_and_wait(publisher, &server, "alias-pub").await;
    let mut publisher = connected_tcp(&server, V5, "alias-pub").await;
    publisher.send(aliased("", 1, b"stale")).await;
    publisher
        .expect_closed_with(ReasonCode::PROTOCOL_ERROR)
        .await;
    server.shutdown().await;
}

// v5 [MQTT-3.3.2-8] alias 0 is never sent, [MQTT-3.3.2-9] / [MQTT-3.2.2-17] never above the
// server's Topic Alias Maximum (binds clients; the server reacts): DISCONNECT 0x94;
// [MQTT-3.2.2-18] with a Topic Alias Maximum of 0, any alias is invalid.
#[tokio::test]
async fn invalid_topic_alias() {
    let options = options();
    let maximum = options.broker.topic_alias_maximum;
    let server = start(options).await;
    for alias in [0, maximum + 1, u16::MAX] {
        let mut client = connected_tcp(&server, V5, "alias-bad").await;
        let mut message = publish("alias/x", QoS::AtMostOnce, None, b"x");
        message.properties.topic_alias = Some(alias);
        let mut bytes = BytesMut::new();
        if alias == 0 {
            // The encoder refuses alias 0; write it by hand: topic "a", properties [23 00 00].
            bytes.extend_from_slice(&[0x30, 0x08, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00, b'x']);
        } else {
            encode(&Packet::Publish(message), V5, &mut bytes).unwrap();
        }
        client.send_bytes(&bytes).await;
        client
            .expect_closed_with(ReasonCode::TOPIC_ALIAS_INVALID)
            .await;
    }
    let mut options = support::options();
    options.broker.topic_alias_maximum = 0;
    let server2 = start(options).await;
    let mut client = RawClient::tcp(addr(&server2), V5).await;
    let ack = client.connect(connect_packet(V5, "no-alias", true)).await;
    assert_eq!(ack.properties.topic_alias_maximum, None, "absent means 0");
    let mut message = publish("alias/x", QoS::AtMostOnce, None, b"x");
    message.properties.topic_alias = Some(1);
    client.send(message).await;
    client
        .expect_closed_with(ReasonCode::TOPIC_ALIAS_INVALID)
        .await;
    server.shutdown().await;
    server2.shutdown().await;
}

// Request / response: v5 [MQTT-3.3.2-15] Response Topic, [MQTT-3.3.2-16] Correlation Data,
// [MQTT-3.3.2-20] Content Type, [MQTT-3.3.2-17]/[MQTT-3.3.2-18] User Properties (all, in
// order, duplicates kept), [MQTT-3.3.2-4] Payload Format Indicator: forwarded unchanged.
// A 3.1.1 subscriber gets the same message without properties.
#[tokio::test]
async fn request_response_properties_pass_through() {
    let server = start_default().await;
    let mut sub5 = subscriber(&server, V5, "rr-sub5", "rr/#", QoS::AtLeastOnce).await;
    let mut sub311 = subscriber(&server, V311, "rr-sub311", "rr/#", QoS::AtLeastOnce).await;
    let mut requester = connected_tcp(&server, V5, "rr-req").await;
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("rr-reply/for/me".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr\xFF")),
        content_type: Some("application/json; charset=utf-8".into()),
        user_properties: vec![
            ("z".into(), "1".into()),
            ("a".into(), "2".into()),
            ("z".into(), "3".into()),
            ("".into(), "empty name".into()),
        ],
        ..PublishProperties::default()
    };
    let request = Publish {
        properties: properties.clone(),
        ..publish("rr/service", QoS::AtLeastOnce, Some(1), b"{\"q\":1}")
    };
    requester.send(request).await;
    assert_eq!(
        requester.expect_puback().await.reason_code,
        ReasonCode::SUCCESS
    );
    let got = sub5.expect_publish().await;
    assert_eq!(got.properties, properties);
    assert_eq!(&got.payload[..], b"{\"q\":1}");
    let got = sub311.expect_publish().await;
    assert_eq!(got.properties, PublishProperties::default());
    assert_eq!(&got.payload[..], b"{\"q\":1}");
    server.shutdown().await;
}

// v5 3.3.2.3.2: Payload Format Indicator 1 with a payload that is not UTF-8: QoS 1 gets
// PUBACK 0x99, QoS 2 PUBREC 0x99, QoS 0 DISCONNECT 0x99; not delivered. [MQTT-4.3.3-9]
// after a PUBREC >= 0x80 the identifier starts a new message.
#[tokio::test]
async fn payload_format_invalid() {
    let server = start_default().await;
    let mut sub = subscriber(&server, V5, "pfi-sub", "pfi/#", QoS::ExactlyOnce).await;
    let mut publisher = connected_tcp(&server, V5, "pfi-pub").await;
    let bad = |qos, packet_id| Publish {
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            ..PublishProperties::default()
        },
        ..publish("pfi/a", qos, packet_id, b"\xC3\x28 not utf-8")
    };
    publisher.send(bad(QoS::AtLeastOnce, Some(1))).await;
    let ack = publisher.expect_puback().await;
    assert_eq!(
        (ack.packet_id, ack.reason_code),
        (1, ReasonCode::PAYLOAD_FORMAT_INVALID)
    );
    publisher.send(bad(QoS::ExactlyOnce, Some(2))).await;
    let ack = publisher.expect_pubrec().await;
    assert_eq!(
        (ack.packet_id, ack.reason_code),
        (2, ReasonCode::PAYLOAD_FORMAT_INVALID)
    );
    // Id 2 is free again: a valid message with it is new, not a duplicate.
    publisher
        .send(publish("pfi/a", QoS::ExactlyOnce, Some(2), b"valid"))
        .await;
    let ack = publisher.expect_pubrec().await;
    assert_eq!((ack.packet_id, ack.reason_code), (2, ReasonCode::SUCCESS));
    publisher.send(Packet::PubRel(Ack::new(2))).await;
    assert_eq!(
        publisher.expect_pubcomp().await.reason_code,
        ReasonCode::SUCCESS
    );
    let message = sub.expect_publish().await;
    assert_eq!(
        &message.payload[..],
        b"valid",
        "the invalid ones were not delivered"
    );
    // A UTF-8 payload with the indicator passes, indicator and all.
    let good = Publish {
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            ..PublishProperties::default()
        },
        ..publish("pfi/a", QoS::AtMostOnce, None, "grüße".as_bytes())
    };
    publisher.send(good).await;
    sub.send(Packet::PubRec(Ack::new(message.packet_id.unwrap())))
        .await;
    sub.expect_pubrel().await;
    let message = sub.expect_publish().await;
    assert_eq!(message.properties.payload_format_indicator, Some(1));
    publisher.send(bad(QoS::AtMostOnce, None)).await;
    publisher
        .expect_closed_with(ReasonCode::PAYLOAD_FORMAT_INVALID)
        .await;
    server.shutdown().await;
}

// v5 [MQTT-3.3.4-3]/[MQTT-3.3.4-4]: overlapping subscriptions of one session give one copy
// carrying every matching Subscription Identifier; [MQTT-3.3.4-2] at the highest granted
// QoS; a subscription without an identifier adds none.
#[tokio::test]
async fn subscription_identifiers_delivered() {
    let server = start_default().await;
    let mut sub = connected_tcp(&server, V5, "sid").await;
    for (packet_id, filter, identifier, qos) in [
        (1, "sid/+", Some(7), QoS::AtMostOnce),
        (2, "sid/#", Some(9), QoS::AtLeastOnce),
        (3, "sid/a", None, QoS::AtMostOnce),
    ] {
        let mut packet = subscribe(packet_id, filter, qos);
        packet.subscription_identifier = identifier;
        sub.send(packet).await;
        assert_eq!(
            sub.expect_suback().await.reason_codes,
            vec![ReasonCode::granted(qos)]
        );
    }
    let mut publisher = connected_tcp(&server, V5, "sid-pub").await;
    publisher
        .send(publish("sid/a", QoS::ExactlyOnce, Some(1), b"x"))
        .await;
    publisher.expect_pubrec().await;
    let message = sub.expect_publish().await;
    let mut identifiers = message.properties.subscription_identifiers.clone();
    identifiers.sort_unstable();
    assert_eq!(identifiers, vec![7, 9]);
    assert_eq!(message.qos, QoS::AtLeastOnce);
    sub.send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
        .await;
    // Only "sid/#" matches this one.
    publisher
        .send(publish("sid/b/c", QoS::AtMostOnce, None, b"y"))
        .await;
    let message = sub.expect_publish().await;
    assert_eq!(message.properties.subscription_identifiers, vec![9]);
    sub.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(sub.expect().await, Packet::PingResp, "one copy only");
    server.shutdown().await;
}

// v5 [MQTT-3.8.3-3]: No Local: a message is not sent back to the connection that published it;
// other publishers' messages still arrive.
#[tokio::test]
async fn no_local() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, V5, "nolocal").await;
    let mut packet = subscribe(1, "nl/#", QoS::AtLeastOnce);
    packet.filters[0].1 = options_with(QoS::AtLeastOnce, |o| o.no_local = true);
    client.send(packet).await;
    client.expect_suback().await;
    client
        .send(publish("nl/own", QoS::AtLeastOnce, Some(1), b"own"))
        .await;
    let ack = client.expect_puback().await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "no one else matched"
    );
    let mut other = connected_tcp(&server, V5, "nolocal-other").await;
    other
        .send(publish("nl/other", QoS::AtLeastOnce, Some(1), b"other"))
        .await;
    other.expect_puback().await;
    let message = client.expect_publish().await;
    assert_eq!(&message.payload[..], b"other");
    server.shutdown().await;
}

// Retain As Published: v5 [MQTT-3.3.1-13] 1 keeps the RETAIN flag, [MQTT-3.3.1-12] 0 clears it
// for an established subscription; 3.1.1 [MQTT-3.3.1-9] RETAIN 0 on an established
// subscription; v5 [MQTT-3.3.1-9] / 3.1.1 [MQTT-3.3.1-8] RETAIN 1 when sent because of a new
// subscription.
#[tokio::test]
async fn retain_as_published() {
    let server = start_default().await;
    let mut keep = connected_tcp(&server, V5, "rap1").await;
    let mut packet = subscribe(1, "rap/#", QoS::AtMostOnce);
    packet.filters[0].1 = options_with(QoS::AtMostOnce, |o| o.retain_as_published = true);
    keep.send(packet).await;
    keep.expect_suback().await;
    let mut clear = subscriber(&server, V5, "rap0", "rap/#", QoS::AtMostOnce).await;
    let mut old = subscriber(&server, V311, "rap311", "rap/#", QoS::AtMostOnce).await;
    let mut publisher = connected_tcp(&server, V5, "rap-pub").await;
    let mut retained = publish("rap/r", QoS::AtMostOnce, None, b"retained");
    retained.retain = true;
    publisher.send(retained).await;
    publisher
        .send(publish("rap/n", QoS::AtMostOnce, None, b"plain"))
        .await;
    for (client, first_retain) in [(&mut keep, true), (&mut clear, false), (&mut old, false)] {
        let message = client.expect_publish().await;
        assert_eq!(
            (&message.payload[..], message.retain),
            (&b"retained"[..], first_retain)
        );
        let message = client.expect_publish().await;
        assert_eq!(
            (&message.payload[..], message.retain),
            (&b"plain"[..], false)
        );
    }
    // A new subscription gets the retained message with RETAIN 1, whatever the option.
    for (client, packet_id) in [(&mut clear, 5u16), (&mut old, 5)] {
        client
            .send(subscribe(packet_id, "rap/r", QoS::AtMostOnce))
            .await;
        client.expect_suback().await;
        let message = client.expect_publish().await;
        assert_eq!(
            (&message.payload[..], message.retain),
            (&b"retained"[..], true)
        );
    }
    server.shutdown().await;
}

// v5 [MQTT-3.8.4-8] / 3.1.1 [MQTT-3.8.4-6]: delivered QoS = min(published, granted);
// v5 [MQTT-2.2.1-2] / 3.1.1 [MQTT-2.3.1-5]: a QoS 0 PUBLISH has no packet identifier;
// [MQTT-3.3.1-2] and DUP 0; [MQTT-4.3.1-1] QoS 0 sender.
#[tokio::test]
async fn delivered_qos_is_the_minimum() {
    let server = start_default().await;
    for version in [V5, V311] {
        let id = format!("minqos-{version:?}");
        let mut sub0 = subscriber(&server, version, &id, "minq/#", QoS::AtMostOnce).await;
        let mut publisher = connected_tcp(&server, V5, "minq-pub").await;
        publisher
            .send(publish("minq/a", QoS::ExactlyOnce, Some(1), b"2->0"))
            .await;
        publisher.expect_pubrec().await;
        publisher.send(Packet::PubRel(Ack::new(1))).await;
        publisher.expect_pubcomp().await;
        let message = sub0.expect_publish().await;
        assert_eq!(
            (message.qos, message.packet_id, message.dup),
            (QoS::AtMostOnce, None, false)
        );
    }
    server.shutdown().await;
}

// v5 [MQTT-3.3.2-5]: a message whose expiry passes while it waits for an offline session is
// not delivered; [MQTT-3.3.2-6]: one still alive goes out with its expiry interval minus the
// time it waited. Paused time, in-memory connections.
#[tokio::test(start_paused = true)]
async fn message_expiry_while_queued_offline() {
    let server = start(options()).await;
    let mut sub = raw_in_memory(&server, V5);
    sub.connect(persistent(V5, "exp-sub", true)).await;
    sub.subscribe_granted(1, "exp/#", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Disconnect::default())).await;
    assert_eq!(sub.recv().await, None);
    wait_until(|| session_connected(&server, "exp-sub") == Some(false)).await;

    let mut publisher = connected_in_memory(&server, V5, "exp-pub").await;
    for (packet_id, expiry, payload) in [
        (1u16, 5u32, &b"short"[..]),
        (2, 60, b"long"),
        (3, 0, b"none"),
    ] {
        let mut message = publish("exp/a", QoS::AtLeastOnce, Some(packet_id), b"");
        message.payload = Bytes::from_static(payload);
        if expiry > 0 {
            message.properties.message_expiry_interval = Some(expiry);
        }
        publisher.send(message).await;
        assert_eq!(
            publisher.expect_puback().await.reason_code,
            ReasonCode::SUCCESS
        );
    }
    tokio::time::advance(Duration::from_secs(10)).await;

    let mut sub = raw_in_memory(&server, V5);
    assert!(
        sub.connect(persistent(V5, "exp-sub", false))
            .await
            .session_present
    );
    let long = sub.expect_publish().await;
    assert_eq!(
        &long.payload[..],
        b"long",
        "the expired message was dropped"
    );
    assert_eq!(long.properties.message_expiry_interval, Some(50));
    let none = sub.expect_publish().await;
    assert_eq!(
        (&none.payload[..], none.properties.message_expiry_interval),
        (&b"none"[..], None)
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

// v5 [MQTT-3.3.2-6] for a connected subscriber: a message that waited behind a full
// in-flight window goes out with the interval reduced by the wait; [MQTT-3.3.2-5] one that
// expired meanwhile is not sent.
#[tokio::test(start_paused = true)]
async fn message_expiry_decremented_while_waiting_online() {
    let server = start(options()).await;
    let mut sub = raw_in_memory(&server, V5);
    let mut connect = connect_packet(V5, "exp-online", true);
    connect.properties.receive_maximum = Some(1);
    sub.connect(connect).await;
    sub.subscribe_granted(1, "expo/#", QoS::AtLeastOnce).await;
    let mut publisher = connected_in_memory(&server, V5, "expo-pub").await;
    for (packet_id, expiry, payload) in [
        (1u16, 100u32, &b"first"[..]),
        (2, 3, b"dies"),
        (3, 30, b"waits"),
    ] {
        let mut message = publish("expo/a", QoS::AtLeastOnce, Some(packet_id), b"");
        message.payload = Bytes::from_static(payload);
        message.properties.message_expiry_interval = Some(expiry);
        publisher.send(message).await;
        publisher.expect_puback().await;
    }
    let first = sub.expect_publish().await;
    assert_eq!(
        (&first.payload[..], first.properties.message_expiry_interval),
        (&b"first"[..], Some(100))
    );
    tokio::time::advance(Duration::from_secs(12)).await;
    sub.send(Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .await;
    let next = sub.expect_publish().await;
    assert_eq!(
        (&next.payload[..], next.properties.message_expiry_interval),
        (&b"waits"[..], Some(18))
    );
    server.shutdown().await;
}

// Inbound QoS 2 state is session state (v5 [MQTT-4.1.0-1] kept for the session's life):
// a publisher that lost its connection after PUBREC and resends the PUBLISH (DUP 1, same
// id) on its resumed session gets PUBREC again and the message is not routed twice
// ([MQTT-4.3.3-10] v5, [MQTT-4.3.3-2] 3.1.1).
#[tokio::test]
async fn inbound_qos2_dedup_survives_reconnect() {
    let server = start_default().await;
    let mut sub = subscriber(&server, V5, "dedup-sub", "dedup/#", QoS::ExactlyOnce).await;
    for version in [V5, V311] {
        let id = format!("dedup-pub-{version:?}");
        let mut publisher = client_with(&server, persistent(version, &id, false)).await;
        publisher
            .send(publish("dedup/a", QoS::ExactlyOnce, Some(9), b"once"))
            .await;
        assert_eq!(publisher.expect_pubrec().await.packet_id, 9);
        drop_and_wait(publisher, &server, &id).await;

        let mut publisher = RawClient::tcp(addr(&server), version).await;
        assert!(
            publisher
                .connect(persistent(version, &id, false))
                .await
                .session_present
        );
        let mut again = publish("dedup/a", QoS::ExactlyOnce, Some(9), b"once");
        again.dup = true;
        publisher.send(again).await;
        assert_eq!(publisher.expect_pubrec().await.packet_id, 9);
        publisher.send(Packet::PubRel(Ack::new(9))).await;
        assert_eq!(publisher.expect_pubcomp().await.packet_id, 9);

        let message = sub.expect_publish().await;
        assert_eq!(&message.payload[..], b"once");
        let packet_id = message.packet_id.unwrap();
        sub.send(Packet::PubRec(Ack::new(packet_id))).await;
        sub.expect_pubrel().await;
        sub.send(Packet::PubComp(Ack::new(packet_id))).await;
        sub.send_bytes(&[0xC0, 0x00]).await;
        assert_eq!(
            sub.expect().await,
            Packet::PingResp,
            "{version:?}: delivered once"
        );
    }
    server.shutdown().await;
}

// v5 [MQTT-4.4.0-2]: a PUBLISH answered by PUBACK or PUBREC >= 0x80 counts as acknowledged:
// no PUBREL follows the failed PUBREC ([MQTT-4.3.3-4] PUBREL only for PUBREC < 0x80), the
// window is freed, and nothing is re-sent on resume.
#[tokio::test]
async fn error_acknowledgements_end_the_flow() {
    let server = start_default().await;
    let id = "refuser";
    let mut connect = persistent(V5, id, false);
    connect.properties.receive_maximum = Some(1);
    let mut sub = client_with(&server, connect.clone()).await;
    sub.subscribe_granted(1, "refuse/#", QoS::ExactlyOnce).await;
    let mut publisher = connected_tcp(&server, V5, "refuse-pub").await;
    publisher
        .send(publish("refuse/a", QoS::ExactlyOnce, Some(1), b"q2"))
        .await;
    publisher.expect_pubrec().await;
    publisher
        .send(publish("refuse/a", QoS::AtLeastOnce, Some(2), b"q1"))
        .await;
    publisher.expect_puback().await;
    publisher
        .send(publish("refuse/a", QoS::AtLeastOnce, Some(3), b"last"))
        .await;
    publisher.expect_puback().await;

    let q2 = sub.expect_publish().await;
    assert_eq!(&q2.payload[..], b"q2");
    sub.send(Packet::PubRec(Ack::with_reason(
        q2.packet_id.unwrap(),
        ReasonCode::UNSPECIFIED_ERROR,
    )))
    .await;
    // No PUBREL: the next packet is the next message (the window of 1 was freed).
    let q1 = sub.expect_publish().await;
    assert_eq!(&q1.payload[..], b"q1");
    sub.send(Packet::PubAck(Ack::with_reason(
        q1.packet_id.unwrap(),
        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
    )))
    .await;
    let last = sub.expect_publish().await;
    assert_eq!(&last.payload[..], b"last");
    sub.send(Packet::PubAck(Ack::new(last.packet_id.unwrap())))
        .await;
    let entry = server.broker().session(id).unwrap();
    wait_until(|| entry.counts().inflight == 0).await;
    drop_and_wait(sub, &server, id).await;
    let mut sub = RawClient::tcp(addr(&server), V5).await;
    assert!(sub.connect(connect).await.session_present);
    sub.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(sub.expect().await, Packet::PingResp, "nothing re-sent");
    server.shutdown().await;
}

// v5 [MQTT-3.3.2-5]: a retained message whose expiry has passed is not sent to a new
// subscriber; [MQTT-3.3.2-6]: before that it is sent with the remaining interval.
#[tokio::test(start_paused = true)]
async fn retained_message_expiry() {
    let server = start(options()).await;
    let mut publisher = connected_in_memory(&server, V5, "ret-exp-pub").await;
    let mut retained = publish("retexp/a", QoS::AtLeastOnce, Some(1), b"short-lived");
    retained.retain = true;
    retained.properties.message_expiry_interval = Some(10);
    publisher.send(retained).await;
    publisher.expect_puback().await;
    tokio::time::advance(Duration::from_secs(4)).await;
    let mut early = connected_in_memory(&server, V5, "ret-exp-early").await;
    early
        .subscribe_granted(1, "retexp/#", QoS::AtLeastOnce)
        .await;
    let message = early.expect_publish().await;
    assert!(message.retain);
    assert_eq!(message.properties.message_expiry_interval, Some(6));
    tokio::time::advance(Duration::from_secs(7)).await;
    let mut late = connected_in_memory(&server, V5, "ret-exp-late").await;
    late.subscribe_granted(1, "retexp/#", QoS::AtLeastOnce)
        .await;
    assert_eq!(
        late.recv_within(Duration::from_secs(1)).await,
        None,
        "expired: not sent"
    );
    server.shutdown().await;
}

// v5 [MQTT-3.3.2-5] expiry applies only until onward delivery starts ([MQTT-4.3.3-7]: no
// expiry once the PUBLISH was sent): an in-flight message whose interval has passed is
// still re-sent on resume, with the interval it was first sent with.
#[tokio::test(start_paused = true)]
async fn inflight_message_is_resent_after_its_expiry() {
    let server = start(options()).await;
    let mut sub = raw_in_memory(&server, V5);
    sub.connect(persistent(V5, "inflight-exp", false)).await;
    sub.subscribe_granted(1, "ifexp/#", QoS::ExactlyOnce).await;
    let mut publisher = connected_in_memory(&server, V5, "ifexp-pub").await;
    for (packet_id, qos) in [(1u16, QoS::AtLeastOnce), (2, QoS::ExactlyOnce)] {
        let mut message = publish("ifexp/a", qos, Some(packet_id), b"in flight");
        message.properties.message_expiry_interval = Some(5);
        publisher.send(message).await;
        if qos == QoS::AtLeastOnce {
            publisher.expect_puback().await;
        } else {
            publisher.expect_pubrec().await;
        }
    }
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    drop(sub);
    wait_until(|| session_connected(&server, "inflight-exp") == Some(false)).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let mut sub = raw_in_memory(&server, V5);
    assert!(
        sub.connect(persistent(V5, "inflight-exp", false))
            .await
            .session_present
    );
    for original in [first, second] {
        let resent = sub.expect_publish().await;
        assert_eq!(resent.packet_id, original.packet_id);
        assert!(resent.dup);
        assert_eq!(resent.properties.message_expiry_interval, Some(5));
    }
    server.shutdown().await;
}
