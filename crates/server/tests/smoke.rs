//! End-to-end smoke test: connect, subscribe, publish, receive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use support::*;
use switchboard_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

#[tokio::test]
async fn publish_reaches_subscriber_v5_and_v311() {
    let server = start_default().await;
    let mut subscriber = connected_tcp(&server, ProtocolVersion::V5, "sub").await;
    subscriber.send(subscribe(1, "a/+", QoS::AtLeastOnce)).await;
    match subscriber.expect().await {
        Packet::SubAck(suback) => assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_1]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let mut publisher = connected_tcp(&server, ProtocolVersion::V3_1_1, "pub").await;
    publisher
        .send(publish("a/b", QoS::AtLeastOnce, Some(7), b"hello"))
        .await;
    match publisher.expect().await {
        Packet::PubAck(ack) => assert_eq!(ack.packet_id, 7),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    match subscriber.expect().await {
        Packet::Publish(publish) => {
            assert_eq!(publish.topic, "a/b");
            assert_eq!(&publish.payload[..], b"hello");
            assert_eq!(publish.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    server.shutdown().await;
}
