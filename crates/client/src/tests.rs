//! The client against a scripted server over an in-memory pipe.
//!
//! Time is paused where keep alive or "nothing is sent" matters, so the
//! tests wait on virtual time and never sleep.

use std::time::Duration;

use bytes::Bytes;
use switchboard_codec::{
    Ack, ConnAck, ConnAckProperties, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use tokio::io::DuplexStream;

use crate::test_support::FakeServer;
use crate::{Client, ClientError, ClientOptions};

fn options() -> ClientOptions {
    ClientOptions {
        client_id: "tester".to_owned(),
        keep_alive_secs: 0,
        ..ClientOptions::default()
    }
}

/// Connects `options` to a fake server that answers with `connack`.
async fn connect_with(
    options: ClientOptions,
    connack: ConnAck,
) -> (Client, ConnAck, FakeServer<DuplexStream>) {
    let (client_side, server_side) = tokio::io::duplex(64 * 1024);
    let mut server = FakeServer::new(server_side);
    let (connected, _connect) = tokio::join!(
        Client::connect_with_stream(client_side, options),
        server.accept(connack)
    );
    let (client, connack) = connected.unwrap();
    (client, connack, server)
}

async fn connect() -> (Client, FakeServer<DuplexStream>) {
    let (client, _, server) = connect_with(options(), ConnAck::default()).await;
    (client, server)
}

fn message(topic: &str, qos: QoS, payload: &'static str) -> Publish {
    Publish {
        topic: topic.to_owned(),
        qos,
        payload: Bytes::from_static(payload.as_bytes()),
        ..Publish::default()
    }
}

fn incoming(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &'static str) -> Packet {
    Packet::Publish(Publish {
        packet_id,
        ..message(topic, qos, payload)
    })
}

#[tokio::test]
async fn connect_sends_options_and_returns_connack() {
    let (client_side, server_side) = tokio::io::duplex(4096);
    let mut server = FakeServer::new(server_side);
    let options = ClientOptions {
        client_id: "me".to_owned(),
        clean_start: false,
        keep_alive_secs: 30,
        session_expiry_secs: Some(120),
        username: Some("user".to_owned()),
        password: Some(Bytes::from_static(b"secret")),
        ..ClientOptions::default()
    };
    let connack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    let (connected, connect) = tokio::join!(
        Client::connect_with_stream(client_side, options),
        server.accept(connack)
    );
    let (client, connack) = connected.unwrap();
    assert!(connack.session_present);
    assert_eq!(client.client_id(), "me");
    assert_eq!(connect.protocol, ProtocolVersion::V5);
    assert_eq!(connect.client_id, "me");
    assert!(!connect.clean_start);
    assert_eq!(connect.keep_alive, 30);
    assert_eq!(connect.username.as_deref(), Some("user"));
    assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(connect.properties.session_expiry_interval, Some(120));
}

#[tokio::test]
async fn assigned_client_identifier_is_adopted() {
    let connack = ConnAck {
        properties: ConnAckProperties {
            assigned_client_identifier: Some("given".to_owned()),
            ..ConnAckProperties::default()
        },
        ..ConnAck::default()
    };
    let options = ClientOptions {
        client_id: String::new(),
        ..options()
    };
    let (client, _, _server) = connect_with(options, connack).await;
    assert_eq!(client.client_id(), "given");
}

#[tokio::test]
async fn refused_connack_is_an_error_with_its_reason() {
    let (client_side, server_side) = tokio::io::duplex(4096);
    let mut server = FakeServer::new(server_side);
    let connack = ConnAck {
        reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ..ConnAck::default()
    };
    let (connected, _) = tokio::join!(
        Client::connect_with_stream(client_side, options()),
        server.accept(connack)
    );
    let error = connected.unwrap_err();
    assert!(matches!(
        error,
        ClientError::ConnectionRefused {
            reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "server refused the connection: 0x86 Bad User Name or Password"
    );
}

#[tokio::test(start_paused = true)]
async fn silent_server_times_out_the_connect() {
    let (client_side, _server_side) = tokio::io::duplex(4096);
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(3),
        ..options()
    };
    let error = Client::connect_with_stream(client_side, options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::ConnectTimeout { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn qos0_publish_completes_without_acknowledgement() {
    let (client, mut server) = connect().await;
    let outcome = client
        .publish(message("a/b", QoS::AtMostOnce, "hi"))
        .await
        .unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::SUCCESS);
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(publish.topic, "a/b");
    assert_eq!(publish.packet_id, None);
    assert_eq!(&publish.payload[..], b"hi");
}

#[tokio::test]
async fn qos1_publish_waits_for_puback_and_returns_its_reason_code() {
    let (client, mut server) = connect().await;
    let handle = client.handle();
    let publishing =
        tokio::spawn(async move { handle.publish(message("a", QoS::AtLeastOnce, "x")).await });
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    // [MQTT-2.2.1-3] a non-zero packet identifier.
    let packet_id = publish.packet_id.unwrap();
    assert_ne!(packet_id, 0);
    assert!(!publishing.is_finished());
    server
        .send(Packet::PubAck(Ack::with_reason(
            packet_id,
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
        )))
        .await;
    let outcome = publishing.await.unwrap().unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

#[tokio::test]
async fn qos2_publish_runs_pubrec_pubrel_pubcomp() {
    let (client, mut server) = connect().await;
    let handle = client.handle();
    let publishing =
        tokio::spawn(async move { handle.publish(message("a", QoS::ExactlyOnce, "x")).await });
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    let packet_id = publish.packet_id.unwrap();
    server.send(Packet::PubRec(Ack::new(packet_id))).await;
    assert_eq!(server.receive().await, Packet::PubRel(Ack::new(packet_id)));
    assert!(!publishing.is_finished());
    server.send(Packet::PubComp(Ack::new(packet_id))).await;
    let outcome = publishing.await.unwrap().unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn failing_pubrec_ends_the_qos2_flow() {
    let (client, mut server) = connect().await;
    let handle = client.handle();
    let publishing =
        tokio::spawn(async move { handle.publish(message("a", QoS::ExactlyOnce, "x")).await });
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    let packet_id = publish.packet_id.unwrap();
    server
        .send(Packet::PubRec(Ack::with_reason(
            packet_id,
            ReasonCode::NOT_AUTHORIZED,
        )))
        .await;
    let outcome = publishing.await.unwrap().unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::NOT_AUTHORIZED);
    // No PUBREL follows: the next packet is the next request.
    client
        .publish(message("next", QoS::AtMostOnce, ""))
        .await
        .unwrap();
    let Packet::Publish(next) = server.receive().await else {
        panic!("expected the next PUBLISH, not a PUBREL");
    };
    assert_eq!(next.topic, "next");
}

#[tokio::test]
async fn incoming_qos1_is_delivered_and_acknowledged() {
    let (mut client, mut server) = connect().await;
    server
        .send(incoming("t", QoS::AtLeastOnce, Some(9), "one"))
        .await;
    let publish = client.next_message().await.unwrap();
    assert_eq!(publish.topic, "t");
    assert_eq!(&publish.payload[..], b"one");
    assert_eq!(server.receive().await, Packet::PubAck(Ack::new(9)));
}

#[tokio::test]
async fn incoming_qos2_is_delivered_once_despite_retransmission() {
    // 4.3.3: the receiver keeps the packet identifier until PUBREL, so a
    // retransmitted PUBLISH (DUP) is acknowledged but not delivered again.
    let (mut client, mut server) = connect().await;
    server
        .send(incoming("t", QoS::ExactlyOnce, Some(5), "once"))
        .await;
    assert_eq!(server.receive().await, Packet::PubRec(Ack::new(5)));
    let again = Publish {
        dup: true,
        packet_id: Some(5),
        ..message("t", QoS::ExactlyOnce, "once")
    };
    server.send(Packet::Publish(again)).await;
    assert_eq!(server.receive().await, Packet::PubRec(Ack::new(5)));
    server.send(Packet::PubRel(Ack::new(5))).await;
    assert_eq!(server.receive().await, Packet::PubComp(Ack::new(5)));
    server
        .send(incoming("marker", QoS::AtMostOnce, None, ""))
        .await;

    let first = client.next_message().await.unwrap();
    assert_eq!(first.topic, "t");
    let second = client.next_message().await.unwrap();
    assert_eq!(
        second.topic, "marker",
        "the QoS 2 message was delivered twice"
    );
}

#[tokio::test]
async fn pubrel_for_an_unknown_packet_id_still_gets_pubcomp() {
    let (_client, mut server) = connect().await;
    server.send(Packet::PubRel(Ack::new(77))).await;
    assert_eq!(
        server.receive().await,
        Packet::PubComp(Ack::with_reason(
            77,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        ))
    );
}

#[tokio::test]
async fn subscribe_and_unsubscribe_return_their_acknowledgements() {
    let (client, mut server) = connect().await;
    let handle = client.handle();
    let subscribing = tokio::spawn(async move {
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        };
        handle
            .subscribe(Subscribe {
                subscription_identifier: Some(7),
                filters: vec![("a/#".to_owned(), options)],
                ..Subscribe::default()
            })
            .await
    });
    let Packet::Subscribe(subscribe) = server.receive().await else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(subscribe.filters[0].0, "a/#");
    assert_eq!(subscribe.subscription_identifier, Some(7));
    server
        .send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reason_codes: vec![ReasonCode::GRANTED_QOS_1],
            ..SubAck::default()
        }))
        .await;
    let suback = subscribing.await.unwrap().unwrap();
    assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);

    let handle = client.handle();
    let unsubscribing = tokio::spawn(async move {
        handle
            .unsubscribe(Unsubscribe {
                filters: vec!["a/#".to_owned()],
                ..Unsubscribe::default()
            })
            .await
    });
    let Packet::Unsubscribe(unsubscribe) = server.receive().await else {
        panic!("expected UNSUBSCRIBE");
    };
    // Identifiers of finished flows may be reused, but not while in use.
    server
        .send(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_codes: vec![ReasonCode::SUCCESS],
            ..UnsubAck::default()
        }))
        .await;
    let unsuback = unsubscribing.await.unwrap().unwrap();
    assert_eq!(unsuback.reason_codes, vec![ReasonCode::SUCCESS]);
}

#[tokio::test]
async fn empty_subscribe_is_refused_locally() {
    // [MQTT-3.8.3-2]
    let (client, _server) = connect().await;
    let error = client.subscribe(Subscribe::default()).await.unwrap_err();
    assert!(matches!(error, ClientError::InvalidArgument(_)), "{error}");
}

#[tokio::test]
async fn server_disconnect_ends_everything_with_its_reason() {
    let (mut client, mut server) = connect().await;
    let handle = client.handle();
    let publishing =
        tokio::spawn(async move { handle.publish(message("a", QoS::AtLeastOnce, "x")).await });
    let _ = server.receive().await;
    server
        .send(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            reason_string: Some("maintenance".to_owned()),
            ..Disconnect::default()
        }))
        .await;
    assert!(client.next_message().await.is_none());
    let reason = client.close_reason().unwrap();
    assert_eq!(
        reason.to_string(),
        "server disconnected: 0x8B Server shutting down (maintenance)"
    );
    let error = publishing.await.unwrap().unwrap_err();
    assert_eq!(error.reason_code(), Some(ReasonCode::SERVER_SHUTTING_DOWN));
    // Later requests fail with the same reason.
    let error = client
        .publish(message("b", QoS::AtMostOnce, ""))
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), Some(ReasonCode::SERVER_SHUTTING_DOWN));
}

#[tokio::test]
async fn closed_socket_is_reported() {
    let (mut client, server) = connect().await;
    drop(server);
    assert!(client.next_message().await.is_none());
    assert!(matches!(
        client.close_reason(),
        Some(ClientError::ConnectionClosed)
    ));
}

#[tokio::test]
async fn messages_received_before_a_close_are_still_delivered() {
    let (mut client, mut server) = connect().await;
    server
        .send(incoming("last", QoS::AtMostOnce, None, "words"))
        .await;
    drop(server);
    assert_eq!(client.next_message().await.unwrap().topic, "last");
    assert!(client.next_message().await.is_none());
}

#[tokio::test]
async fn disconnect_sends_its_reason_and_closes() {
    let (client, mut server) = connect().await;
    client
        .disconnect_with(Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            session_expiry_interval: Some(0),
            ..Disconnect::default()
        })
        .await
        .unwrap();
    let Packet::Disconnect(disconnect) = server.receive().await else {
        panic!("expected DISCONNECT");
    };
    assert_eq!(
        disconnect.reason_code,
        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE
    );
    assert_eq!(disconnect.session_expiry_interval, Some(0));
    assert!(server.try_receive().await.is_none());
    assert!(matches!(
        client.publish(message("a", QoS::AtMostOnce, "")).await,
        Err(ClientError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn keep_alive_pings_and_gives_up_without_pingresp() {
    let options = ClientOptions {
        keep_alive_secs: 5,
        ..options()
    };
    let (mut client, _, mut server) = connect_with(options, ConnAck::default()).await;
    let started = tokio::time::Instant::now();
    assert_eq!(server.receive().await, Packet::PingReq);
    assert!(started.elapsed() >= Duration::from_secs(5));
    server.send(Packet::PingResp).await;
    assert_eq!(server.receive().await, Packet::PingReq);
    // No PINGRESP this time: one keep-alive period later the client gives up.
    assert!(client.next_message().await.is_none());
    assert!(matches!(
        client.close_reason(),
        Some(ClientError::KeepAliveTimeout(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn server_keep_alive_replaces_ours() {
    // [MQTT-3.2.2-21]
    let connack = ConnAck {
        properties: ConnAckProperties {
            server_keep_alive: Some(2),
            ..ConnAckProperties::default()
        },
        ..ConnAck::default()
    };
    let options = ClientOptions {
        keep_alive_secs: 60,
        ..options()
    };
    let (_client, _, mut server) = connect_with(options, connack).await;
    let started = tokio::time::Instant::now();
    assert_eq!(server.receive().await, Packet::PingReq);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn server_receive_maximum_limits_publishes_in_flight() {
    // [MQTT-3.3.4-7]
    let connack = ConnAck {
        properties: ConnAckProperties {
            receive_maximum: Some(1),
            ..ConnAckProperties::default()
        },
        ..ConnAck::default()
    };
    let (client, _, mut server) = connect_with(options(), connack).await;
    let first = client.handle();
    let second = client.handle();
    let first =
        tokio::spawn(async move { first.publish(message("1", QoS::AtLeastOnce, "")).await });
    let second =
        tokio::spawn(async move { second.publish(message("2", QoS::AtLeastOnce, "")).await });
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    let nothing = tokio::time::timeout(Duration::from_secs(10), server.receive()).await;
    assert!(
        nothing.is_err(),
        "a second PUBLISH was sent beyond Receive Maximum"
    );
    server
        .send(Packet::PubAck(Ack::new(publish.packet_id.unwrap())))
        .await;
    let Packet::Publish(next) = server.receive().await else {
        panic!("expected the waiting PUBLISH");
    };
    assert_ne!(next.topic, publish.topic);
    server
        .send(Packet::PubAck(Ack::new(next.packet_id.unwrap())))
        .await;
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}

#[tokio::test]
async fn server_maximum_qos_and_retain_available_are_respected() {
    let connack = ConnAck {
        properties: ConnAckProperties {
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            ..ConnAckProperties::default()
        },
        ..ConnAck::default()
    };
    let (client, _, mut server) = connect_with(options(), connack).await;
    // [MQTT-3.2.2-11]
    let error = client
        .publish(message("a", QoS::ExactlyOnce, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::QosNotSupported { .. }),
        "{error}"
    );
    // [MQTT-3.2.2-14]
    let retained = Publish {
        retain: true,
        ..message("a", QoS::AtMostOnce, "")
    };
    let error = client.publish(retained).await.unwrap_err();
    assert!(matches!(error, ClientError::RetainNotSupported), "{error}");
    // Nothing reached the server; the connection is still fine.
    client
        .publish(message("ok", QoS::AtMostOnce, ""))
        .await
        .unwrap();
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(publish.topic, "ok");
}

#[tokio::test]
async fn server_maximum_packet_size_is_respected() {
    let connack = ConnAck {
        properties: ConnAckProperties {
            maximum_packet_size: Some(64),
            ..ConnAckProperties::default()
        },
        ..ConnAck::default()
    };
    let (client, _, _server) = connect_with(options(), connack).await;
    let big = Publish {
        payload: Bytes::from(vec![0; 100]),
        ..message("a", QoS::AtMostOnce, "")
    };
    let error = client.publish(big).await.unwrap_err();
    assert!(
        matches!(error, ClientError::PacketTooLarge { maximum: 64, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn incoming_topic_aliases_are_resolved() {
    let mut options = options();
    options.properties.topic_alias_maximum = Some(4);
    let (mut client, _, mut server) = connect_with(options, ConnAck::default()).await;
    let mut first = message("long/topic/name", QoS::AtMostOnce, "1");
    first.properties.topic_alias = Some(2);
    let mut second = message("", QoS::AtMostOnce, "2");
    second.properties.topic_alias = Some(2);
    server.send(Packet::Publish(first)).await;
    server.send(Packet::Publish(second)).await;
    assert_eq!(
        client.next_message().await.unwrap().topic,
        "long/topic/name"
    );
    assert_eq!(
        client.next_message().await.unwrap().topic,
        "long/topic/name"
    );
}

#[tokio::test]
async fn topic_alias_beyond_our_maximum_is_a_protocol_error() {
    // Our Topic Alias Maximum is 0: the server may not use aliases at all.
    let (mut client, mut server) = connect().await;
    let mut aliased = message("t", QoS::AtMostOnce, "");
    aliased.properties.topic_alias = Some(1);
    server.send(Packet::Publish(aliased)).await;
    assert!(client.next_message().await.is_none());
    assert!(matches!(
        client.close_reason(),
        Some(ClientError::Protocol {
            reason_code: ReasonCode::TOPIC_ALIAS_INVALID,
            ..
        })
    ));
    // The client tells the server why before closing (4.13).
    let Packet::Disconnect(disconnect) = server.receive().await else {
        panic!("expected DISCONNECT");
    };
    assert_eq!(disconnect.reason_code, ReasonCode::TOPIC_ALIAS_INVALID);
}

#[tokio::test]
async fn mqtt_311_qos1_round_trip() {
    let options = ClientOptions {
        version: ProtocolVersion::V3_1_1,
        ..options()
    };
    let (mut client, _, mut server) = connect_with(options, ConnAck::default()).await;
    let handle = client.handle();
    let publishing =
        tokio::spawn(async move { handle.publish(message("a", QoS::AtLeastOnce, "x")).await });
    let Packet::Publish(publish) = server.receive().await else {
        panic!("expected PUBLISH");
    };
    server
        .send(Packet::PubAck(Ack::new(publish.packet_id.unwrap())))
        .await;
    assert_eq!(
        publishing.await.unwrap().unwrap().reason_code,
        ReasonCode::SUCCESS
    );
    server
        .send(incoming("b", QoS::AtLeastOnce, Some(3), "y"))
        .await;
    assert_eq!(client.next_message().await.unwrap().topic, "b");
    assert_eq!(server.receive().await, Packet::PubAck(Ack::new(3)));
}
