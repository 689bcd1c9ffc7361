//! CONNECT and CONNACK over the wire: versions, client identifiers, sessions,
//! advertised limits, takeover, and the CONNECT-time protocol errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use support::*;
use switchboard_codec::{
    encode, Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will, WillProperties,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn encoded(packet: Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).unwrap();
    out
}

fn connect_bytes(connect: Connect) -> BytesMut {
    let version = connect.protocol;
    encoded(Packet::Connect(Box::new(connect)), version)
}

/// A v5 CONNECT that keeps its session for `expiry` seconds.
fn persistent_v5(client_id: &str, clean_start: bool, expiry: u32) -> Connect {
    let mut connect = connect_packet(V5, client_id, clean_start);
    connect.properties.session_expiry_interval = Some(expiry);
    connect
}

/// Publishes one QoS 1 message from a fresh 3.1.1 client and waits for its PUBACK.
async fn publish_from_other(
    server: &switchboard_server::RunningServer,
    topic: &str,
    payload: &'static [u8],
) {
    let mut publisher = connected_tcp(server, V311, "other-publisher").await;
    publisher
        .send(publish(topic, QoS::AtLeastOnce, Some(1), payload))
        .await;
    assert_eq!(publisher.expect_puback().await.packet_id, 1);
    publisher
        .send(Packet::Disconnect(Disconnect::default()))
        .await;
    assert_eq!(publisher.recv().await, None);
}

/// Disconnects normally and waits until the broker has detached the session.
async fn disconnect_and_wait(
    client: &mut RawClient<tokio::net::TcpStream>,
    server: &switchboard_server::RunningServer,
    client_id: &str,
) {
    client.send(Packet::Disconnect(Disconnect::default())).await;
    assert_eq!(
        client.recv().await,
        None,
        "the server closes after DISCONNECT"
    );
    wait_until(|| session_connected(server, client_id) != Some(true)).await;
}

/// After a publisher got its PUBACK (the broker routes before acknowledging), nothing
/// was queued for or sent to `client_id`'s session, and its connection has nothing
/// pending: PINGRESP is the next packet.
async fn assert_nothing_routed_to(
    server: &switchboard_server::RunningServer,
    client: &mut RawClient<tokio::net::TcpStream>,
    client_id: &str,
) {
    let counts = server.broker().session(client_id).unwrap().counts();
    assert_eq!((counts.queued, counts.inflight), (0, 0), "nothing routed");
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(client.expect().await, Packet::PingResp);
}

// [MQTT-3.2.0-1] (3.1.1) the first packet the server sends is CONNACK;
// [MQTT-3.1.4-4] (3.1.1) return code 0; [MQTT-3.2.2-1] (3.1.1) clean session 1: session present 0.
#[tokio::test]
async fn connack_v311_is_exactly_20_02_00_00() {
    let server = start_default().await;
    let mut client = RawClient::tcp(addr(&server), V311).await;
    client
        .send(Packet::Connect(Box::new(connect_packet(
            V311, "c311", true,
        ))))
        .await;
    assert_eq!(client.recv_raw(4).await, vec![0x20, 0x02, 0x00, 0x00]);
    // The connection works: PINGREQ is answered ([MQTT-3.12.4-1]).
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    server.shutdown().await;
}

// [MQTT-3.2.0-1] (v5) CONNACK first; [MQTT-3.1.4-5] (v5) reason 0x00;
// [MQTT-3.2.2-2] (v5) clean start 1: session present 0; [MQTT-3.2.2-1] (v5) flag bits 7-1 are 0;
// [MQTT-4.12.0-6] no Authentication Method without one in CONNECT.
#[tokio::test]
async fn connack_v5_success() {
    let server = start_default().await;
    let mut client = RawClient::tcp(addr(&server), V5).await;
    client
        .send(Packet::Connect(Box::new(connect_packet(V5, "c5", true))))
        .await;
    let header = client.recv_raw(4).await;
    assert_eq!(header[0], 0x20, "CONNACK");
    assert_eq!(
        header[2], 0x00,
        "acknowledge flags: session present 0, reserved bits 0"
    );
    assert_eq!(header[3], 0x00, "reason code 0x00");
    let rest = client.recv_raw(usize::from(header[1]) - 2).await;
    assert_eq!(rest.len(), usize::from(header[1]) - 2);
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.1.2-2]: unsupported protocol level: CONNACK return code 0x01, then close.
// v5 [MQTT-3.1.2-2]: CONNACK 0x84 is optional; the 3.1.1 form 0x01 is what any client can read.
// [MQTT-3.2.2-4] (3.1.1) session present 0 on refusal; [MQTT-3.2.2-5] (3.1.1) close after it.
#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01_then_close() {
    let server = start_default().await;
    for level in [6u8, 2, 0x85] {
        let mut bytes = connect_bytes(connect_packet(V311, "level", true));
        assert_eq!(&bytes[2..8], b"\x00\x04MQTT");
        bytes[8] = level;
        let mut client = RawClient::tcp(addr(&server), V311).await;
        client.send_bytes(&bytes).await;
        assert_eq!(
            client.recv_raw(5).await,
            vec![0x20, 0x02, 0x00, 0x01],
            "level {level}"
        );
        assert_eq!(client.recv().await, None, "closed after the refusal");
    }
    // MQTT 3.1's name with a level it never had.
    let mut bytes = connect_bytes(connect_packet(ProtocolVersion::V3_1, "level", true));
    assert_eq!(&bytes[2..10], b"\x00\x06MQIsdp");
    bytes[10] = 4;
    let mut client = RawClient::tcp(addr(&server), V311).await;
    client.send_bytes(&bytes).await;
    assert_eq!(client.recv_raw(5).await, vec![0x20, 0x02, 0x00, 0x01]);
    assert_eq!(client.recv().await, None);
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// [MQTT-3.1.2-1] (3.1.1 and v5): a protocol name other than "MQTT" (or 3.1's "MQIsdp"):
// the server does not go on treating it as MQTT; it closes without a CONNACK
// ([MQTT-3.1.4-1] (3.1.1): invalid CONNECT, close without CONNACK).
#[tokio::test]
async fn bad_protocol_name_closes_without_connack() {
    let server = start_default().await;
    for version in [V311, V5] {
        let mut bytes = connect_bytes(connect_packet(version, "name", true));
        bytes[4..8].copy_from_slice(b"MQTX");
        let mut client = RawClient::tcp(addr(&server), version).await;
        client.send_bytes(&bytes).await;
        assert_eq!(
            client.recv_raw(1).await,
            Vec::<u8>::new(),
            "{version:?}: nothing sent back"
        );
    }
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// MQTT 3.1 (protocol name "MQIsdp", level 3) is accepted and served with the 3.x packets
// (3.1.1 [MQTT-3.1.2-1] lets a server follow another specification for other names).
#[tokio::test]
async fn mqtt_3_1_mqisdp_connects_and_works() {
    let server = start_default().await;
    let mut client = RawClient::tcp(addr(&server), ProtocolVersion::V3_1).await;
    let bytes = connect_bytes(connect_packet(ProtocolVersion::V3_1, "old31", true));
    assert_eq!(&bytes[2..11], b"\x00\x06MQIsdp\x03");
    client.send_bytes(&bytes).await;
    assert_eq!(client.recv_raw(4).await, vec![0x20, 0x02, 0x00, 0x00]);
    client.subscribe_granted(1, "old/+", QoS::AtLeastOnce).await;
    publish_from_other(&server, "old/x", b"31").await;
    let publish = client.expect_publish().await;
    assert_eq!(
        (publish.topic.as_str(), &publish.payload[..]),
        ("old/x", &b"31"[..])
    );
    let info = server.broker().session("old31").unwrap().info();
    assert_eq!(info.protocol, ProtocolVersion::V3_1);
    server.shutdown().await;
}

// v5 [MQTT-3.1.3-6] a zero-length Client Identifier gets a unique identifier;
// [MQTT-3.1.3-7] the CONNECT is handled as if the client had sent it, and CONNACK returns it;
// [MQTT-3.2.2-16] it is the Assigned Client Identifier, used by no other session.
#[tokio::test]
async fn zero_length_client_id_v5_gets_assigned_identifier() {
    let server = start_default().await;
    let mut first = RawClient::tcp(addr(&server), V5).await;
    let ack1 = first.connect(connect_packet(V5, "", true)).await;
    assert_eq!(ack1.reason_code, ReasonCode::SUCCESS);
    let id1 = ack1
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    let mut second = RawClient::tcp(addr(&server), V5).await;
    let ack2 = second.connect(connect_packet(V5, "", true)).await;
    let id2 = ack2
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(!id1.is_empty() && !id2.is_empty());
    assert_ne!(id1, id2, "assigned identifiers are unique");
    // Both sessions exist under their assigned ids, and both are connected.
    assert_eq!(session_connected(&server, &id1), Some(true));
    assert_eq!(session_connected(&server, &id2), Some(true));
    // The first still works (it was not taken over by the second).
    first
        .subscribe_granted(1, "assigned", QoS::AtMostOnce)
        .await;
    // A client that sent its own id gets none assigned.
    let mut named = RawClient::tcp(addr(&server), V5).await;
    let ack = named.connect(connect_packet(V5, "named", true)).await;
    assert_eq!(ack.properties.assigned_client_identifier, None);
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.1.3-8]: zero-byte ClientId with CleanSession 0: CONNACK 0x02, then close;
// [MQTT-3.2.2-4] (3.1.1) session present 0; [MQTT-3.2.2-5] (3.1.1) close.
#[tokio::test]
async fn zero_length_client_id_v311_clean_session_0_rejected() {
    let server = start_default().await;
    let mut client = RawClient::tcp(addr(&server), V311).await;
    client
        .send(Packet::Connect(Box::new(connect_packet(V311, "", false))))
        .await;
    assert_eq!(client.recv_raw(5).await, vec![0x20, 0x02, 0x00, 0x02]);
    assert_eq!(client.recv().await, None);
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.1.3-6]: zero-byte ClientId with CleanSession 1 is given an identifier
// and handled like any other client.
#[tokio::test]
async fn zero_length_client_id_v311_clean_session_1_accepted() {
    let server = start_default().await;
    let mut client = RawClient::tcp(addr(&server), V311).await;
    let connack = client.connect(connect_packet(V311, "", true)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    assert_eq!(server.broker().session_count(), 1);
    client.subscribe_granted(1, "anon", QoS::AtLeastOnce).await;
    server.shutdown().await;
}

// v5 [MQTT-3.2.2-2] clean start 1: session present 0; [MQTT-3.2.2-3] clean start 0:
// session present 1 when a session existed, else 0; [MQTT-3.1.2-5] resume its state
// (the subscription); [MQTT-3.1.2-6] new session when none; [MQTT-3.1.2-4] clean start 1
// discards it; [MQTT-3.1.2-23] kept after the connection closes when expiry > 0;
// [MQTT-3.1.4-4] clean start rules applied; [MQTT-3.1.3-2] session found by client id.
#[tokio::test]
async fn session_present_v5() {
    let server = start_default().await;
    let id = "sp5";
    let mut client = RawClient::tcp(addr(&server), V5).await;
    let ack = client.connect(persistent_v5(id, false, 300)).await;
    assert!(!ack.session_present, "no session existed");
    client.subscribe_granted(1, "sp5/#", QoS::AtLeastOnce).await;
    disconnect_and_wait(&mut client, &server, id).await;
    assert_eq!(session_connected(&server, id), Some(false), "session kept");

    let mut client = RawClient::tcp(addr(&server), V5).await;
    let ack = client.connect(persistent_v5(id, false, 300)).await;
    assert!(ack.session_present, "session resumed");
    publish_from_other(&server, "sp5/a", b"kept").await;
    assert_eq!(
        &client.expect_publish().await.payload[..],
        b"kept",
        "subscription resumed"
    );
    disconnect_and_wait(&mut client, &server, id).await;

    let mut client = RawClient::tcp(addr(&server), V5).await;
    let ack = client.connect(persistent_v5(id, true, 300)).await;
    assert!(!ack.session_present, "clean start discards the session");
    assert_eq!(
        server
            .broker()
            .session(id)
            .unwrap()
            .info()
            .subscriptions
            .len(),
        0
    );
    publish_from_other(&server, "sp5/b", b"gone").await;
    assert_nothing_routed_to(&server, &mut client, id).await;
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.2.2-1] clean session 1: session present 0; [MQTT-3.2.2-2] clean session 0
// with stored state: session present 1; [MQTT-3.2.2-3] clean session 0 without: 0;
// [MQTT-3.1.2-4] (3.1.1) resume the session; [MQTT-3.1.2-6] (3.1.1) clean session 1 discards
// it; [MQTT-3.1.4-3] (3.1.1) clean session rules applied.
#[tokio::test]
async fn session_present_v311() {
    let server = start_default().await;
    let id = "sp311";
    let mut client = RawClient::tcp(addr(&server), V311).await;
    assert!(
        !client
            .connect(connect_packet(V311, id, false))
            .await
            .session_present
    );
    client
        .subscribe_granted(1, "sp311/#", QoS::AtLeastOnce)
        .await;
    disconnect_and_wait(&mut client, &server, id).await;

    let mut client = RawClient::tcp(addr(&server), V311).await;
    assert!(
        client
            .connect(connect_packet(V311, id, false))
            .await
            .session_present
    );
    publish_from_other(&server, "sp311/a", b"kept").await;
    assert_eq!(&client.expect_publish().await.payload[..], b"kept");
    disconnect_and_wait(&mut client, &server, id).await;

    let mut client = RawClient::tcp(addr(&server), V311).await;
    assert!(
        !client
            .connect(connect_packet(V311, id, true))
            .await
            .session_present
    );
    publish_from_other(&server, "sp311/b", b"gone").await;
    assert_nothing_routed_to(&server, &mut client, id).await;
    disconnect_and_wait(&mut client, &server, id).await;
    assert_eq!(
        session_connected(&server, id),
        None,
        "a clean session ends with its connection"
    );
    server.shutdown().await;
}

// v5 3.2.2.3: CONNACK tells the client the limits the server really applies:
// Receive Maximum, Maximum Packet Size, Topic Alias Maximum, [MQTT-3.2.2-9] Maximum QoS,
// Retain Available, Wildcard / Subscription Identifier / Shared Subscription Available,
// Server Keep Alive, and the Session Expiry Interval when the server capped it.
#[tokio::test]
async fn connack_properties_advertise_the_configured_limits() {
    let mut options = options();
    let settings = &mut options.broker;
    settings.receive_maximum = 20;
    settings.max_packet_size = 5000;
    settings.topic_alias_maximum = 7;
    settings.maximum_qos = QoS::AtLeastOnce;
    settings.retain_available = false;
    settings.wildcard_subscriptions = false;
    settings.subscription_identifiers = false;
    settings.shared_subscriptions = false;
    settings.max_keep_alive = 30;
    settings.max_session_expiry = 100;
    let server = start(options.clone()).await;
    let mut client = RawClient::tcp(addr(&server), V5).await;
    let mut connect = persistent_v5("limits", true, 1000);
    connect.keep_alive = 60;
    let ack = client.connect(connect).await;
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, Some(options.broker.receive_maximum));
    assert_eq!(p.maximum_packet_size, Some(options.broker.max_packet_size));
    assert_eq!(
        p.topic_alias_maximum,
        Some(options.broker.topic_alias_maximum)
    );
    assert_eq!(p.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(p.retain_available, Some(false));
    assert_eq!(p.wildcard_subscription_available, Some(false));
    assert_eq!(p.subscription_identifiers_available, Some(false));
    assert_eq!(p.shared_subscription_available, Some(false));
    assert_eq!(p.server_keep_alive, Some(30));
    assert_eq!(p.session_expiry_interval, Some(100));
    assert_eq!(p.authentication_method, None);
    assert_eq!(
        p.response_information, None,
        "[MQTT-3.1.2-28] not requested"
    );

    // What is advertised is what is enforced.
    // [MQTT-3.2.2-10] a SUBSCRIBE asking QoS 2 is accepted and granted the maximum.
    client.send(subscribe(1, "lim/a", QoS::ExactlyOnce)).await;
    assert_eq!(
        client.expect_suback().await.reason_codes,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    // [MQTT-3.8.3-2]-like for v5: wildcards and shared subscriptions refused per filter.
    client.send(subscribe(2, "lim/#", QoS::AtMostOnce)).await;
    assert_eq!(
        client.expect_suback().await.reason_codes,
        vec![ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED]
    );
    client
        .send(subscribe(3, "$share/g/lim/a", QoS::AtMostOnce))
        .await;
    assert_eq!(
        client.expect_suback().await.reason_codes,
        vec![ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED]
    );
    // [MQTT-3.2.2-11]: PUBLISH above Maximum QoS: DISCONNECT 0x9B.
    client
        .send(publish("lim/a", QoS::ExactlyOnce, Some(1), b"q2"))
        .await;
    client
        .expect_closed_with(ReasonCode::QOS_NOT_SUPPORTED)
        .await;

    // [MQTT-3.2.2-14]: RETAIN 1 without Retain Available: DISCONNECT 0x9A.
    let mut client = connected_tcp(&server, V5, "limits2").await;
    let mut retained = publish("lim/a", QoS::AtMostOnce, None, b"r");
    retained.retain = true;
    client.send(retained).await;
    client
        .expect_closed_with(ReasonCode::RETAIN_NOT_SUPPORTED)
        .await;
    assert_eq!(server.broker().retained_count(), 0);

    // Subscription identifiers not available but used: DISCONNECT 0xA1.
    let mut client = connected_tcp(&server, V5, "limits3").await;
    let mut with_id = subscribe(1, "lim/b", QoS::AtMostOnce);
    with_id.subscription_identifier = Some(5);
    client.send(with_id).await;
    client
        .expect_closed_with(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
        .await;
    server.shutdown().await;
}

// With the default settings, CONNACK still states the receive maximum, packet size and
// alias maximum (they are below the protocol defaults), and leaves out what is fully
// supported; [MQTT-3.2.2-22] no Server Keep Alive: the client's keep alive applies.
#[tokio::test]
async fn connack_properties_with_defaults() {
    let options = options();
    let server = start(options.clone()).await;
    let mut client = RawClient::tcp(addr(&server), V5).await;
    let ack = client.connect(connect_packet(V5, "defaults", true)).await;
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, Some(options.broker.receive_maximum));
    assert_eq!(p.maximum_packet_size, Some(options.broker.max_packet_size));
    assert_eq!(
        p.topic_alias_maximum,
        Some(options.broker.topic_alias_maximum)
    );
    assert_eq!(p.maximum_qos, None, "QoS 2 supported");
    assert_eq!(p.retain_available, None);
    assert_eq!(p.wildcard_subscription_available, None);
    assert_eq!(p.shared_subscription_available, None);
    assert_eq!(p.server_keep_alive, None);
    assert_eq!(p.session_expiry_interval, None, "not capped");
    let info = server.broker().session("defaults").unwrap().info();
    assert_eq!(info.keep_alive, Some(60));
    server.shutdown().await;
}

// v5 [MQTT-3.1.4-3]: the same client id connects again: the old connection gets
// DISCONNECT 0x8E and is closed; with clean start 0 the session continues
// ([MQTT-3.1.2-5]): session present 1, and its subscription still delivers.
#[tokio::test]
async fn takeover_v5_sends_0x8e_and_the_session_continues() {
    let server = start_default().await;
    let mut first = RawClient::tcp(addr(&server), V5).await;
    assert!(
        !first
            .connect(persistent_v5("twin", false, 300))
            .await
            .session_present
    );
    first.subscribe_granted(1, "twin/#", QoS::AtLeastOnce).await;

    let mut second = RawClient::tcp(addr(&server), V5).await;
    assert!(
        second
            .connect(persistent_v5("twin", false, 300))
            .await
            .session_present
    );
    first
        .expect_closed_with(ReasonCode::SESSION_TAKEN_OVER)
        .await;

    publish_from_other(&server, "twin/1", b"to-second").await;
    let publish = second.expect_publish().await;
    assert_eq!(&publish.payload[..], b"to-second");
    assert_eq!(session_connected(&server, "twin"), Some(true));
    assert_eq!(server.broker().session_count(), 1);
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.1.4-2]: ClientId already connected: the existing client is disconnected
// (no packet in 3.1.1); clean session 0 keeps the session ([MQTT-3.1.2-4] (3.1.1)).
#[tokio::test]
async fn takeover_v311_closes_the_old_connection() {
    let server = start_default().await;
    let mut first = RawClient::tcp(addr(&server), V311).await;
    first.connect(connect_packet(V311, "twin311", false)).await;
    first.subscribe_granted(1, "t311/#", QoS::AtLeastOnce).await;
    let mut second = RawClient::tcp(addr(&server), V311).await;
    assert!(
        second
            .connect(connect_packet(V311, "twin311", false))
            .await
            .session_present
    );
    first
        .expect_closed_with(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    publish_from_other(&server, "t311/1", b"x").await;
    assert_eq!(&second.expect_publish().await.payload[..], b"x");
    server.shutdown().await;
}

// [MQTT-3.1.0-2] (v5 and 3.1.1): a second CONNECT is a protocol error: v5 gets
// DISCONNECT 0x82, both are closed; [MQTT-3.2.0-2] (v5) at most one CONNACK.
#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let server = start_default().await;
    for version in [V5, V311] {
        let id = format!("twice-{version:?}");
        let mut client = RawClient::tcp(addr(&server), version).await;
        client.connect(connect_packet(version, &id, true)).await;
        client
            .send(Packet::Connect(Box::new(connect_packet(
                version, &id, true,
            ))))
            .await;
        client.expect_closed_with(ReasonCode::PROTOCOL_ERROR).await;
    }
    server.shutdown().await;
}

// [MQTT-3.1.0-1] (v5 and 3.1.1; binds clients, the server closes): a packet before CONNECT
// closes the connection, and nothing is sent back (no CONNACK, [MQTT-3.2.0-1];
// no DISCONNECT before CONNACK, [MQTT-3.14.0-1]).
#[tokio::test]
async fn packet_before_connect_closes() {
    let server = start_default().await;
    let packets: [&[u8]; 4] = [
        &[0xC0, 0x00],                                     // PINGREQ
        &[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i'],       // PUBLISH QoS 0
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], // SUBSCRIBE
        &[0xE0, 0x00],                                     // DISCONNECT
    ];
    for bytes in packets {
        let mut client = RawClient::tcp(addr(&server), V5).await;
        client.send_bytes(bytes).await;
        assert_eq!(client.recv_raw(1).await, Vec::<u8>::new(), "{bytes:02X?}");
    }
    assert_eq!(server.broker().session_count(), 0);
    assert_eq!(server.broker().retained_count(), 0);
    server.shutdown().await;
}

// v5 [MQTT-4.12.0-1]: unsupported Authentication Method: CONNACK 0x8C, then close
// ([MQTT-3.2.2-7]); [MQTT-3.2.2-6] session present 0; [MQTT-3.1.4-6] nothing sent after
// the refused CONNECT is processed; [MQTT-3.14.0-1] no DISCONNECT before a CONNACK 0x00.
#[tokio::test]
async fn authentication_method_gets_connack_0x8c() {
    let server = start_default().await;
    let mut connect = persistent_v5("auth", false, 300);
    connect.properties.authentication_method = Some("SCRAM-SHA-1".into());
    connect.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    let mut bytes = connect_bytes(connect);
    // Packets right behind the CONNECT must not be acted on.
    let mut retained = publish("auth/r", QoS::AtMostOnce, None, b"must not be stored");
    retained.retain = true;
    bytes.extend_from_slice(&encoded(Packet::Publish(retained), V5));
    let mut client = RawClient::tcp(addr(&server), V5).await;
    client.send_bytes(&bytes).await;
    match client.expect().await {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
            assert!(!ack.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(client.recv().await, None, "closed, nothing else sent");
    assert_eq!(server.broker().retained_count(), 0);
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// v5 3.14.2.2.2: a non-zero Session Expiry Interval in DISCONNECT after CONNECT had 0 is a
// Protocol Error: DISCONNECT 0x82 ([MQTT-4.13.1-1]), and the session still ends.
#[tokio::test]
async fn disconnect_setting_session_expiry_after_zero_is_a_protocol_error() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, V5, "expiry0").await;
    client
        .send(Packet::Disconnect(Disconnect {
            session_expiry_interval: Some(60),
            ..Disconnect::default()
        }))
        .await;
    client.expect_closed_with(ReasonCode::PROTOCOL_ERROR).await;
    wait_until(|| session_connected(&server, "expiry0").is_none()).await;
    server.shutdown().await;
}

// ...whereas with a non-zero expiry in CONNECT the DISCONNECT may change it
// ([MQTT-3.1.2-23] v5: the session is kept).
#[tokio::test]
async fn disconnect_may_change_a_non_zero_session_expiry() {
    let server = start_default().await;
    let mut client = RawClient::tcp(addr(&server), V5).await;
    client.connect(persistent_v5("expiry1", true, 10)).await;
    client
        .send(Packet::Disconnect(Disconnect {
            session_expiry_interval: Some(60),
            ..Disconnect::default()
        }))
        .await;
    assert_eq!(client.recv().await, None);
    wait_until(|| session_connected(&server, "expiry1") == Some(false)).await;
    assert_eq!(
        server
            .broker()
            .session("expiry1")
            .unwrap()
            .info()
            .session_expiry,
        60
    );
    server.shutdown().await;
}

// 3.1.1 [MQTT-3.1.2-3] / v5 [MQTT-3.1.2-3]: the CONNECT reserved flag must be 0, else the
// client is disconnected; 3.1.1 [MQTT-3.1.4-1]: an invalid CONNECT is closed WITHOUT a
// CONNACK. (A v5 server may answer CONNACK 0x81 first, 4.13.1.)
#[tokio::test]
async fn connect_reserved_flag_closes() {
    let server = start_default().await;
    for version in [V311, V5] {
        let mut bytes = connect_bytes(connect_packet(version, "reserved", true));
        bytes[9] |= 0x01;
        let mut client = RawClient::tcp(addr(&server), version).await;
        client.send_bytes(&bytes).await;
        match (version, client.recv().await) {
            (_, None) => {}
            (V5, Some(Packet::ConnAck(ack))) => {
                assert_eq!(ack.reason_code, ReasonCode::MALFORMED_PACKET);
                assert_eq!(client.recv().await, None);
            }
            (_, other) => panic!("{version:?}: expected close, got {other:?}"),
        }
    }
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// v5 [MQTT-3.2.2-12] will QoS above Maximum QoS: refused (CONNACK 0x9B) and closed;
// [MQTT-3.2.2-13] will retain without Retain Available: refused (CONNACK 0x9A) and closed.
#[tokio::test]
async fn will_beyond_server_limits_is_refused() {
    let mut options = options();
    options.broker.maximum_qos = QoS::AtLeastOnce;
    options.broker.retain_available = false;
    let server = start(options).await;
    let will = |qos, retain| Will {
        topic: "will/t".into(),
        payload: Bytes::from_static(b"w"),
        qos,
        retain,
        properties: WillProperties::default(),
    };
    for (qos, retain, code) in [
        (QoS::ExactlyOnce, false, ReasonCode::QOS_NOT_SUPPORTED),
        (QoS::AtMostOnce, true, ReasonCode::RETAIN_NOT_SUPPORTED),
    ] {
        let mut connect = connect_packet(V5, "willlimits", true);
        connect.will = Some(will(qos, retain));
        let mut client = RawClient::tcp(addr(&server), V5).await;
        let ack = client.connect(connect).await;
        assert_eq!(ack.reason_code, code);
        assert!(!ack.session_present);
        assert_eq!(client.recv().await, None);
    }
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// The connect timeout: a socket that sends no CONNECT is closed (nothing sent back),
// and not before the timeout. Paused time over an in-memory pipe.
#[tokio::test(start_paused = true)]
async fn connect_timeout_closes_a_silent_connection() {
    let mut options = options();
    options.connect_timeout = Duration::from_secs(2);
    let server = start(options).await;
    let started = tokio::time::Instant::now();
    let mut silent = raw_in_memory(&server, V5);
    // A partial CONNECT does not count.
    silent.send_bytes(&[0x10, 0x10, 0x00]).await;
    assert_eq!(
        silent.recv_within(Duration::from_millis(1900)).await,
        None,
        "still open at 1.9 s"
    );
    assert_eq!(silent.recv().await, None, "closed without a packet");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
    assert_eq!(
        server
            .broker()
            .metrics()
            .connect_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    server.shutdown().await;
}

/// Sends `bytes` as the first thing on a connection and expects: v5, a CONNACK with `code`
/// then close ([MQTT-3.2.2-7], [MQTT-3.2.2-6] session present 0); 3.x, a close with nothing
/// sent (3.1.1 [MQTT-3.1.4-1]).
async fn expect_connect_refused(
    server: &switchboard_server::RunningServer,
    version: ProtocolVersion,
    bytes: &[u8],
    code: ReasonCode,
) {
    let mut client = RawClient::tcp(addr(server), version).await;
    client.send_bytes(bytes).await;
    if version.is_v5() {
        match client.expect().await {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.reason_code, code, "{bytes:02X?}");
                assert!(!ack.session_present);
            }
            other => panic!("expected CONNACK {code}, got {other:?}"),
        }
        assert_eq!(client.recv().await, None);
    } else {
        assert_eq!(
            client.recv_raw(1).await,
            Vec::<u8>::new(),
            "{version:?}: {bytes:02X?}"
        );
    }
}

// Invalid CONNECT flags: will QoS without the will flag (v5 [MQTT-3.1.2-11], 3.1.1
// [MQTT-3.1.2-13]), will QoS 3 (v5 [MQTT-3.1.2-12], 3.1.1 [MQTT-3.1.2-14]), will retain
// without the will flag (v5 [MQTT-3.1.2-13], 3.1.1 [MQTT-3.1.2-15]), and in 3.1.1 a password
// without a user name ([MQTT-3.1.2-22] 3.1.1): malformed, close ([MQTT-3.1.4-1]); v5 may say
// CONNACK 0x81 first. The server accepts nothing from such a client.
#[tokio::test]
async fn invalid_connect_flags() {
    let server = start_default().await;
    for version in [V311, V5] {
        let plain = connect_bytes(connect_packet(version, "flags", true));
        let mut with_will = connect_packet(version, "flags", true);
        with_will.will = Some(Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        });
        let with_will = connect_bytes(with_will);
        assert_eq!(plain[9], 0x02);
        let mut cases = Vec::new();
        for flags in [0x02 | 0x08, 0x02 | 0x10, 0x02 | 0x20] {
            let mut bytes = plain.clone();
            bytes[9] = flags;
            cases.push(bytes);
        }
        let mut bytes = with_will.clone();
        bytes[9] |= 0x18; // will QoS 3
        cases.push(bytes);
        if version == V311 {
            let mut bytes = plain.clone();
            bytes[9] |= 0x40; // password flag without user name flag
            cases.push(bytes);
        }
        for bytes in cases {
            expect_connect_refused(&server, version, &bytes, ReasonCode::MALFORMED_PACKET).await;
        }
    }
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// v5 3.1.2.11: Receive Maximum 0 and Maximum Packet Size 0 are protocol errors (CONNACK 0x82),
// a property twice too; a will topic with a wildcard ([MQTT-3.3.2-2]) is refused (0x90);
// a client identifier that is not UTF-8 ([MQTT-1.5.4-1]) is malformed.
#[tokio::test]
async fn invalid_connect_properties_v5() {
    let server = start_default().await;
    let mut zero_receive = connect_packet(V5, "props", true);
    zero_receive.properties.receive_maximum = Some(1);
    let mut bytes = connect_bytes(zero_receive);
    // Properties start after the 10-byte variable header: [len, 0x21, 0x00, 0x01].
    assert_eq!(&bytes[12..16], &[0x03, 0x21, 0x00, 0x01]);
    bytes[15] = 0x00;
    expect_connect_refused(&server, V5, &bytes, ReasonCode::PROTOCOL_ERROR).await;

    let mut zero_size = connect_packet(V5, "props", true);
    zero_size.properties.maximum_packet_size = Some(1);
    let mut bytes = connect_bytes(zero_size);
    assert_eq!(&bytes[12..18], &[0x05, 0x27, 0x00, 0x00, 0x00, 0x01]);
    bytes[17] = 0x00;
    expect_connect_refused(&server, V5, &bytes, ReasonCode::PROTOCOL_ERROR).await;

    // Session Expiry Interval twice: [0x0A, 0x11, 0,0,0,1, 0x11, 0,0,0,2].
    let mut twice = connect_packet(V5, "props", true);
    twice.properties.session_expiry_interval = Some(1);
    let once = connect_bytes(twice);
    assert_eq!(&once[12..18], &[0x05, 0x11, 0x00, 0x00, 0x00, 0x01]);
    let mut bytes = once[..12].to_vec();
    bytes.extend_from_slice(&[0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]);
    bytes.extend_from_slice(&once[18..]);
    bytes[1] += 5;
    expect_connect_refused(&server, V5, &bytes, ReasonCode::PROTOCOL_ERROR).await;

    let mut wildcard_will = connect_packet(V5, "props", true);
    wildcard_will.will = Some(Will {
        topic: "w/x".into(),
        payload: Bytes::from_static(b"p"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let mut bytes = connect_bytes(wildcard_will);
    let at = bytes.windows(3).position(|w| w == b"w/x").unwrap();
    bytes[at + 2] = b'#';
    expect_connect_refused(&server, V5, &bytes, ReasonCode::TOPIC_NAME_INVALID).await;

    let mut bytes = connect_bytes(connect_packet(V5, "pr", true));
    let at = bytes.windows(2).position(|w| w == b"pr").unwrap();
    bytes[at] = 0xC3;
    bytes[at + 1] = 0x28;
    expect_connect_refused(&server, V5, &bytes, ReasonCode::MALFORMED_PACKET).await;
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

// v5 [MQTT-3.1.3-5] / 3.1.1 [MQTT-3.1.3-5]: client identifiers of 1 to 23 bytes of 0-9a-zA-Z
// are accepted (longer ones and other characters too, as the server may).
#[tokio::test]
async fn client_identifiers_accepted() {
    let server = start_default().await;
    let ids = [
        "a".to_string(),
        "0123456789abcdefghijABC".to_string(),
        "with/slash+plus#hash and space".to_string(),
        "ü".repeat(40),
    ];
    for version in [V311, V5] {
        for id in &ids {
            let mut client = RawClient::tcp(addr(&server), version).await;
            let ack = client.connect(connect_packet(version, id, true)).await;
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{id:?}");
            assert_eq!(session_connected(&server, id), Some(true));
            client.send(Packet::Disconnect(Disconnect::default())).await;
            assert_eq!(client.recv().await, None);
            wait_until(|| session_connected(&server, id).is_none()).await;
        }
    }
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-28]: Request Response Information 0 (or absent): no Response Information;
// 1: the server may return one.
#[tokio::test]
async fn response_information_only_when_requested() {
    let server = start_default().await;
    for (request, expect) in [(None, false), (Some(false), false), (Some(true), true)] {
        let mut connect = connect_packet(V5, "resp-info", true);
        connect.properties.request_response_information = request;
        let mut client = RawClient::tcp(addr(&server), V5).await;
        let ack = client.connect(connect).await;
        assert_eq!(
            ack.properties.response_information.is_some(),
            expect,
            "{request:?}"
        );
    }
    server.shutdown().await;
}
