//! Parking: idle TCP connections give up their task and wait in the server's
//! parking lot (`park.rs`); a delivery, a close order, the client's own
//! bytes or its keep-alive deadline bring them back. These tests park at
//! once (`park_idle_after` zero) and check that a parked connection behaves
//! exactly like a running one.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use switchboard_server::{RunningServer, ServerOptions};
use support::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn parking_options(after: Duration) -> ServerOptions {
    let mut options = options();
    options.park_idle_after = Some(after);
    options
}

fn parked(server: &RunningServer) -> u64 {
    server
        .broker()
        .metrics()
        .connections_parked
        .load(Ordering::Relaxed)
}

fn parks(server: &RunningServer) -> u64 {
    server.broker().metrics().parks.load(Ordering::Relaxed)
}

async fn wait_parked(server: &RunningServer, count: u64) {
    let started = std::time::Instant::now();
    while parked(server) != count {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} connections parked, expected {count}",
            parked(server)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_parked_subscriber_gets_its_messages() {
    let server = start(parking_options(Duration::ZERO)).await;
    let mut subscriber = connected_tcp(&server, V5, "parked-sub").await;
    subscriber.subscribe_granted(1, "park/#", QoS::AtLeastOnce).await;
    wait_parked(&server, 1).await;

    let mut publisher = connected_tcp(&server, V5, "parked-pub").await;
    publisher
        .send(publish("park/a", QoS::AtMostOnce, None, b"zero"))
        .await;
    let first = subscriber.expect_publish().await;
    assert_eq!(&first.payload[..], b"zero");
    wait_parked(&server, 2).await;

    // QoS 1 both ways while parked: the PUBACK the subscriber sends wakes
    // it through its socket.
    publisher
        .send(publish("park/b", QoS::AtLeastOnce, Some(7), b"one"))
        .await;
    assert_eq!(publisher.expect_puback().await.packet_id, 7);
    let second = subscriber.expect_publish().await;
    assert_eq!(&second.payload[..], b"one");
    let packet_id = second.packet_id.expect("QoS 1 has an id");
    subscriber
        .send(Packet::PubAck(switchboard_codec::Ack::new(packet_id)))
        .await;
    wait_parked(&server, 2).await;
    assert!(parks(&server) >= 4);
    let info = server.broker().session("parked-sub").expect("session").info();
    assert_eq!(info.counts.inflight, 0, "the PUBACK was read after parking");
    server.shutdown().await;
}
