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

// Graceful shutdown: listeners close, a v5 client is told why (DISCONNECT 0x8B, Server
// shutting down), a 3.1.1 client is simply disconnected.
#[tokio::test]
async fn shutdown_tells_v5_clients_the_server_is_shutting_down() {
    let server = start_default().await;
    let address = addr(&server);
    let mut v5 = connected_tcp(&server, ProtocolVersion::V5, "shutdown-v5").await;
    let mut v3 = connected_tcp(&server, ProtocolVersion::V3_1_1, "shutdown-v3").await;
    server.shutdown().await;
    match v5.recv().await {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason_code, ReasonCode::SERVER_SHUTTING_DOWN)
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert_eq!(v5.recv().await, None);
    assert_eq!(v3.recv().await, None);
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}
