//! Parking: idle TCP connections give up their task and wait in the server's
//! parking lot (`park.rs`); a delivery, a close order, the client's own
//! bytes or its keep-alive deadline bring them back. These tests park at
//! once (`park_idle_after` zero) and check that a parked connection behaves
//! exactly like a running one.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use switchboard_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use switchboard_server::{RunningServer, ServerOptions};

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
    server
        .broker()
        .metrics()
        .connection_parks
        .load(Ordering::Relaxed)
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
    subscriber
        .subscribe_granted(1, "park/#", QoS::AtLeastOnce)
        .await;
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
    let info = server
        .broker()
        .session("parked-sub")
        .expect("session")
        .info();
    assert_eq!(info.counts.inflight, 0, "the PUBACK was read after parking");
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_is_taken_over() {
    // [MQTT-3.1.4-3]: the existing connection is closed (v5: 0x8E), parked or not.
    let server = start(parking_options(Duration::ZERO)).await;
    let mut first = connected_tcp(&server, V5, "taken").await;
    wait_parked(&server, 1).await;
    let mut second = connected_tcp(&server, V5, "taken").await;
    first
        .expect_closed_with(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    second.send(Packet::PingReq).await;
    assert_eq!(second.expect().await, Packet::PingResp);
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_is_kicked() {
    let server = start(parking_options(Duration::ZERO)).await;
    let mut client = connected_tcp(&server, V5, "kicked").await;
    wait_parked(&server, 1).await;
    assert!(server
        .broker()
        .kick("kicked", ReasonCode::ADMINISTRATIVE_ACTION));
    client
        .expect_closed_with(ReasonCode::ADMINISTRATIVE_ACTION)
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_that_drops_publishes_its_will() {
    // [MQTT-3.1.2-8]: the will is published when the network connection
    // closes without DISCONNECT, parked or not.
    let server = start(parking_options(Duration::ZERO)).await;
    let mut watcher = connected_tcp(&server, V5, "will-watcher").await;
    watcher
        .subscribe_granted(1, "wills/#", QoS::AtMostOnce)
        .await;
    let mut dying = support::RawClient::tcp(addr(&server), V5).await;
    let mut connect = connect_packet(V5, "will-parked", true);
    connect.will = Some(switchboard_codec::Will {
        topic: "wills/parked".into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    assert_eq!(
        dying.connect(connect).await.reason_code,
        ReasonCode::SUCCESS
    );
    wait_parked(&server, 2).await;
    drop(dying);
    let will = watcher.expect_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/parked", &b"gone"[..])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_parked_connections() {
    let server = start(parking_options(Duration::ZERO)).await;
    let mut clients = Vec::new();
    for index in 0..3 {
        clients.push(connected_tcp(&server, V5, &format!("shut-{index}")).await);
    }
    wait_parked(&server, 3).await;
    server.shutdown().await;
    for mut client in clients {
        client
            .expect_closed_with(ReasonCode::SERVER_SHUTTING_DOWN)
            .await;
    }
}

#[tokio::test(start_paused = true)]
async fn keep_alive_runs_out_while_parked() {
    // [MQTT-3.1.2-22] (v5): 1.5 x keep alive without a packet closes the
    // connection (0x8D); the parking lot times it for parked connections.
    let server = start(parking_options(Duration::ZERO)).await;
    let mut client = support::RawClient::tcp(addr(&server), V5).await;
    let mut connect = connect_packet(V5, "silent", true);
    connect.keep_alive = 4;
    let started = tokio::time::Instant::now();
    assert_eq!(
        client.connect(connect).await.reason_code,
        ReasonCode::SUCCESS
    );
    wait_parked(&server, 1).await;
    client
        .expect_closed_with(ReasonCode::KEEP_ALIVE_TIMEOUT)
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(7),
        "closed after {waited:?}"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_ping_resumes_a_parked_connection_and_resets_its_keep_alive() {
    let server = start(parking_options(Duration::ZERO)).await;
    let mut client = support::RawClient::tcp(addr(&server), V5).await;
    let mut connect = connect_packet(V5, "pinger", true);
    connect.keep_alive = 4;
    assert_eq!(
        client.connect(connect).await.reason_code,
        ReasonCode::SUCCESS
    );
    for _ in 0..3 {
        wait_parked(&server, 1).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.send(Packet::PingReq).await;
        assert_eq!(client.expect().await, Packet::PingResp);
    }
    // 15 s in, over the 6 s the keep alive allows without the pings.
    assert_eq!(session_connected(&server, "pinger"), Some(true));
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_parks_only_after_the_idle_period() {
    let server = start(parking_options(Duration::from_secs(5))).await;
    let started = tokio::time::Instant::now();
    let mut client = connected_tcp(&server, V5, "patient").await;
    wait_parked(&server, 1).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "parked after {waited:?}"
    );
    client.send(Packet::PingReq).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    server.shutdown().await;
}

#[tokio::test]
async fn nothing_parks_with_parking_off() {
    let mut options = options();
    options.park_idle_after = None;
    let server = start(options).await;
    let mut client = connected_tcp(&server, V5, "unparked").await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    assert_eq!(parks(&server), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_whose_session_is_deleted_is_closed() {
    let server = start(parking_options(Duration::ZERO)).await;
    let mut client = connected_tcp(&server, V5, "deleted").await;
    wait_parked(&server, 1).await;
    assert!(server.broker().delete_session("deleted"));
    client
        .expect_closed_with(ReasonCode::ADMINISTRATIVE_ACTION)
        .await;
    assert_eq!(parked(&server), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_topic_alias_outlives_parking() {
    // 3.3.2.3.4: Topic Alias mappings belong to the Network Connection
    // ([MQTT-3.3.2-7]), which parking does not end: the alias stays mapped.
    let server = start(parking_options(Duration::ZERO)).await;
    let mut subscriber = connected_tcp(&server, V5, "alias-sub").await;
    subscriber
        .subscribe_granted(1, "alias/#", QoS::AtMostOnce)
        .await;
    let mut client = connected_tcp(&server, V5, "alias-pub").await;
    let mut first = publish("alias/a", QoS::AtMostOnce, None, b"set");
    first.properties.topic_alias = Some(1);
    client.send(first).await;
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"set");
    wait_parked(&server, 2).await;
    let mut second = publish("", QoS::AtMostOnce, None, b"used");
    second.properties.topic_alias = Some(1);
    client.send(second).await;
    let used = subscriber.expect_publish().await;
    assert_eq!(
        (used.topic.as_str(), &used.payload[..]),
        ("alias/a", &b"used"[..])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_inbound_qos2_flow_spans_parking() {
    // [MQTT-4.3.3-10]: until PUBREL, a resent PUBLISH with the same id is
    // not delivered again, parked in between or not.
    let server = start(parking_options(Duration::ZERO)).await;
    let mut subscriber = connected_tcp(&server, V5, "qos2-sub").await;
    subscriber
        .subscribe_granted(1, "qos2/#", QoS::AtMostOnce)
        .await;
    let mut client = connected_tcp(&server, V5, "qos2-pub").await;
    client
        .send(publish("qos2/a", QoS::ExactlyOnce, Some(5), b"once"))
        .await;
    assert_eq!(client.expect_pubrec().await.packet_id, 5);
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"once");
    wait_parked(&server, 2).await;
    let mut again = publish("qos2/a", QoS::ExactlyOnce, Some(5), b"once");
    again.dup = true;
    client.send(again).await;
    assert_eq!(client.expect_pubrec().await.packet_id, 5);
    wait_parked(&server, 2).await;
    client
        .send(Packet::PubRel(switchboard_codec::Ack::new(5)))
        .await;
    assert_eq!(client.expect_pubcomp().await.packet_id, 5);
    // A marker through the same subscriber: nothing came before it.
    client
        .send(publish("qos2/b", QoS::AtMostOnce, None, b"marker"))
        .await;
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"marker");
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_client_that_half_closes_publishes_its_will() {
    // [MQTT-3.1.2-8]: the end of the client's stream (FIN, not RST) wakes
    // the parked connection, which closes it as a running one would.
    use tokio::io::AsyncWriteExt;
    let server = start(parking_options(Duration::ZERO)).await;
    let mut watcher = connected_tcp(&server, V5, "half-watcher").await;
    watcher
        .subscribe_granted(1, "wills/#", QoS::AtMostOnce)
        .await;
    let mut stream = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    let mut connect = connect_packet(V5, "half-closed", true);
    connect.will = Some(switchboard_codec::Will {
        topic: "wills/half".into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let mut encoded = bytes::BytesMut::new();
    switchboard_codec::encode(&Packet::Connect(Box::new(connect)), V5, &mut encoded).unwrap();
    stream.write_all(&encoded).await.unwrap();
    wait_parked(&server, 2).await;
    stream.shutdown().await.unwrap();
    let will = watcher.expect_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/half", &b"gone"[..])
    );
    server.shutdown().await;
}

fn unparks(server: &RunningServer) -> u64 {
    server
        .broker()
        .metrics()
        .connection_unparks
        .load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_connection_resumed_for_nothing_parks_again() {
    // A delivery that is dropped when polled ([MQTT-3.1.2-25]: larger than
    // the client's Maximum Packet Size) resumes the subscriber for nothing:
    // it must not keep a task from then on.
    let server = start(parking_options(Duration::ZERO)).await;
    let mut subscriber = support::RawClient::tcp(addr(&server), V5).await;
    let mut connect = connect_packet(V5, "small-packets", true);
    connect.properties.maximum_packet_size = Some(64);
    assert_eq!(
        subscriber.connect(connect).await.reason_code,
        ReasonCode::SUCCESS
    );
    subscriber
        .subscribe_granted(1, "big/#", QoS::AtMostOnce)
        .await;
    let mut publisher = connected_tcp(&server, V5, "big-publisher").await;
    wait_parked(&server, 2).await;
    let resumed_before = unparks(&server);
    publisher
        .send(publish("big/a", QoS::AtMostOnce, None, &[7; 200]))
        .await;
    // The publisher's and the subscriber's resumes, then both park again.
    let started = std::time::Instant::now();
    while unparks(&server) < resumed_before + 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "never resumed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_parked(&server, 2).await;
    assert_eq!(
        server
            .broker()
            .metrics()
            .dropped_too_large
            .load(Ordering::Relaxed),
        1
    );
    // And it still works.
    publisher
        .send(publish("big/b", QoS::AtMostOnce, None, b"small"))
        .await;
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"small");
    server.shutdown().await;
}
