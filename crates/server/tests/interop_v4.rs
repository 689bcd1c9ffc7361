//! Interoperability with a client we did not write: rumqttc's MQTT 3.1.1 API
//! against the broker on a real TCP port. Statement ids are those of MQTT 3.1.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use rumqttc::{ConnectReturnCode, LastWill, QoS, SubscribeReasonCode};
use support::*;

// [MQTT-3.1.4-4] [MQTT-3.2.2-1] (3.1.1): an accepted CONNECT with CleanSession 1 gets
// CONNACK 0 with Session Present 0.
#[tokio::test]
async fn connects_with_clean_session() {
    let server = start_default().await;
    let (client, connack) = V4::connect(v4_options(&server, "v4-connect")).await;
    assert_eq!(connack.code, ConnectReturnCode::Success);
    assert!(!connack.session_present);
    client.disconnect().await;
    server.shutdown().await;
}

/// Subscribes at QoS 2, publishes at `qos` and checks what arrives.
async fn round_trip(qos: QoS) {
    let server = start_default().await;
    let (mut subscriber, _) = V4::connect(v4_options(&server, "v4-sub")).await;
    let suback = subscriber.subscribe("interop/v4/+", QoS::ExactlyOnce).await;
    // [MQTT-3.8.4-5] [MQTT-3.9.3-2] (3.1.1): the granted QoS.
    assert_eq!(
        suback.return_codes,
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );

    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-pub")).await;
    // Returns once the PUBACK / PUBCOMP arrived: [MQTT-3.3.4-1], [MQTT-4.3.2-2], [MQTT-4.3.3-2].
    publisher
        .publish("interop/v4/qos", qos, false, format!("at {qos:?}"))
        .await;

    let publish = subscriber.recv_publish().await;
    // [MQTT-3.3.2-3] (3.1.1): the topic name matches the filter.
    assert_eq!(publish.topic, "interop/v4/qos");
    assert_eq!(&publish.payload[..], format!("at {qos:?}").as_bytes());
    // [MQTT-3.8.4-6] (3.1.1): min(published, granted) = published here.
    assert_eq!(publish.qos, qos);
    // [MQTT-3.3.1-3] [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1] (3.1.1): a first send, DUP 0.
    assert!(!publish.dup);
    // [MQTT-3.3.1-9] (3.1.1): an established subscription gets RETAIN 0.
    assert!(!publish.retain);
    // [MQTT-2.3.1-1] [MQTT-2.3.1-5] (3.1.1): a packet id exactly when QoS > 0.
    assert_eq!(publish.pkid == 0, qos == QoS::AtMostOnce);

    subscriber.disconnect().await;
    publisher.disconnect().await;
    server.shutdown().await;
}

// [MQTT-4.3.1-1] (3.1.1): QoS 0 end to end.
#[tokio::test]
async fn publish_subscribe_qos0() {
    round_trip(QoS::AtMostOnce).await;
}

// [MQTT-4.3.2-1] [MQTT-4.3.2-2] (3.1.1): QoS 1 end to end, both legs.
#[tokio::test]
async fn publish_subscribe_qos1() {
    round_trip(QoS::AtLeastOnce).await;
}

// [MQTT-4.3.3-1] [MQTT-4.3.3-2] (3.1.1): QoS 2 end to end, both legs (rumqttc
// completes PUBREC/PUBREL/PUBCOMP with the broker on each side).
#[tokio::test]
async fn publish_subscribe_qos2() {
    round_trip(QoS::ExactlyOnce).await;
}

// [MQTT-3.8.4-6] (3.1.1): a QoS 2 message on a QoS 1 subscription is delivered at QoS 1.
#[tokio::test]
async fn delivery_qos_is_the_minimum_of_published_and_granted() {
    let server = start_default().await;
    let (mut subscriber, _) = V4::connect(v4_options(&server, "v4-min-sub")).await;
    subscriber
        .subscribe("interop/v4/min", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-min-pub")).await;
    publisher
        .publish("interop/v4/min", QoS::ExactlyOnce, false, "two")
        .await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    server.shutdown().await;
}

// [MQTT-4.6.0-5] [MQTT-4.6.0-6] (3.1.1): messages from one publisher on one topic at one
// QoS arrive in the order they were published.
#[tokio::test]
async fn many_messages_arrive_in_order() {
    let server = start_default().await;
    let (mut subscriber, _) = V4::connect(v4_options(&server, "v4-order-sub")).await;
    subscriber
        .subscribe("interop/v4/order", QoS::ExactlyOnce)
        .await;
    let (publisher, _) = V4::connect(v4_options(&server, "v4-order-pub")).await;

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        const COUNT: usize = 200;
        // Published without waiting for each acknowledgement: rumqttc pipelines them.
        for i in 0..COUNT {
            publisher
                .client
                .publish("interop/v4/order", qos, false, format!("{qos:?}-{i}"))
                .await
                .unwrap();
        }
        for i in 0..COUNT {
            let publish = subscriber.recv_publish().await;
            assert_eq!(publish.qos, qos);
            assert_eq!(
                std::str::from_utf8(&publish.payload).unwrap(),
                format!("{qos:?}-{i}"),
                "message {i} at {qos:?} out of order"
            );
        }
    }
    server.shutdown().await;
}

// [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] (3.1.1): a retained message is stored and
// sent with RETAIN 1 to a later subscriber.
#[tokio::test]
async fn retained_message_reaches_a_later_subscriber() {
    let server = start_default().await;
    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-ret-pub")).await;
    publisher
        .publish("interop/v4/retained", QoS::AtLeastOnce, true, "kept")
        .await;

    let (mut subscriber, _) = V4::connect(v4_options(&server, "v4-ret-sub")).await;
    subscriber.subscribe("interop/v4/#", QoS::AtLeastOnce).await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(publish.topic, "interop/v4/retained");
    assert_eq!(&publish.payload[..], b"kept");
    assert!(
        publish.retain,
        "sent because of a new subscription: RETAIN 1"
    );
    assert_eq!(publish.qos, QoS::AtLeastOnce);

    // [MQTT-3.3.1-9] (3.1.1): to the established subscription, a retained publish goes
    // out with RETAIN 0.
    publisher
        .publish("interop/v4/retained", QoS::AtLeastOnce, true, "again")
        .await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(&publish.payload[..], b"again");
    assert!(!publish.retain);
    server.shutdown().await;
}

// [MQTT-3.1.2-8] [MQTT-3.1.2-16] (3.1.1): a connection that ends without DISCONNECT has
// its Will published, as a non-retained message when Will Retain is 0.
#[tokio::test]
async fn will_is_published_when_the_connection_drops() {
    let server = start_default().await;
    let (mut watcher, _) = V4::connect(v4_options(&server, "v4-will-watcher")).await;
    watcher
        .subscribe("interop/v4/will/#", QoS::AtLeastOnce)
        .await;

    let mut options = v4_options(&server, "v4-will-dies");
    options.set_last_will(LastWill::new(
        "interop/v4/will/dies",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (dying, _) = V4::connect(options).await;
    dying.drop_abruptly().await;

    let will = watcher.recv_publish().await;
    assert_eq!(will.topic, "interop/v4/will/dies");
    assert_eq!(&will.payload[..], b"gone");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(!will.retain);
    server.shutdown().await;
}

// [MQTT-3.1.2-17] (3.1.1): Will Retain 1 publishes the Will as a retained message, so a
// subscriber that comes later still gets it.
#[tokio::test]
async fn retained_will_reaches_a_later_subscriber() {
    let server = start_default().await;
    let mut options = v4_options(&server, "v4-will-retained");
    options.set_last_will(LastWill::new(
        "interop/v4/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (dying, _) = V4::connect(options).await;
    // A watcher that saw it live proves it was published before we look for the retained copy.
    let (mut live, _) = V4::connect(v4_options(&server, "v4-will-live")).await;
    live.subscribe("interop/v4/status", QoS::AtLeastOnce).await;
    dying.drop_abruptly().await;
    assert_eq!(&live.recv_publish().await.payload[..], b"offline");

    let (mut later, _) = V4::connect(v4_options(&server, "v4-will-later")).await;
    later.subscribe("interop/v4/status", QoS::AtLeastOnce).await;
    let publish = later.recv_publish().await;
    assert_eq!(&publish.payload[..], b"offline");
    assert!(publish.retain);
    server.shutdown().await;
}

// [MQTT-3.14.4-3] [MQTT-3.1.2-10] (3.1.1): after DISCONNECT the Will is discarded, never
// published.
#[tokio::test]
async fn will_is_not_published_after_disconnect() {
    let server = start_default().await;
    let (mut watcher, _) = V4::connect(v4_options(&server, "v4-nowill-watcher")).await;
    watcher
        .subscribe("interop/v4/nowill/#", QoS::AtLeastOnce)
        .await;

    let mut options = v4_options(&server, "v4-nowill");
    options.set_last_will(LastWill::new(
        "interop/v4/nowill/will",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (leaving, _) = V4::connect(options).await;
    // Returns once the server closed the connection, which it does after handling it.
    leaving.disconnect().await;

    // A marker published afterwards must be the first thing the watcher sees: a Will
    // published at the close would have been queued before it.
    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-nowill-pub")).await;
    publisher
        .publish(
            "interop/v4/nowill/marker",
            QoS::AtLeastOnce,
            false,
            "marker",
        )
        .await;
    let publish = watcher.recv_publish().await;
    assert_eq!(
        publish.topic, "interop/v4/nowill/marker",
        "the Will was published after DISCONNECT"
    );
    server.shutdown().await;
}

// [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2] [MQTT-4.4.0-1] (3.1.1): a CleanSession 0
// session keeps its subscription while disconnected, collects QoS 1 messages, and hands
// them over on reconnect with Session Present 1.
#[tokio::test]
async fn persistent_session_receives_messages_published_while_offline() {
    let server = start_default().await;
    let mut options = v4_options(&server, "v4-persistent");
    options.set_clean_session(false);
    let (mut subscriber, connack) = V4::connect(options.clone()).await;
    // [MQTT-3.2.2-3] (3.1.1): no stored session yet.
    assert!(!connack.session_present);
    subscriber
        .subscribe("interop/v4/offline", QoS::AtLeastOnce)
        .await;
    subscriber.disconnect().await;

    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-persistent-pub")).await;
    for i in 0..3 {
        publisher
            .publish(
                "interop/v4/offline",
                QoS::AtLeastOnce,
                false,
                format!("offline-{i}"),
            )
            .await;
    }

    let (mut subscriber, connack) = V4::connect(options).await;
    assert!(connack.session_present);
    for i in 0..3 {
        let publish = subscriber.recv_publish().await;
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        assert_eq!(
            std::str::from_utf8(&publish.payload).unwrap(),
            format!("offline-{i}")
        );
    }
    // The subscription itself survived: a message published now arrives too.
    publisher
        .publish("interop/v4/offline", QoS::AtLeastOnce, false, "online")
        .await;
    assert_eq!(&subscriber.recv_publish().await.payload[..], b"online");
    server.shutdown().await;
}

// [MQTT-3.1.2-6] [MQTT-3.2.2-1] (3.1.1): CleanSession 1 discards the stored session: no
// Session Present, no queued messages, no subscription.
#[tokio::test]
async fn clean_session_discards_the_stored_session() {
    let server = start_default().await;
    let mut options = v4_options(&server, "v4-cleaned");
    options.set_clean_session(false);
    let (mut subscriber, _) = V4::connect(options.clone()).await;
    subscriber
        .subscribe("interop/v4/cleaned", QoS::AtLeastOnce)
        .await;
    subscriber.disconnect().await;

    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-cleaned-pub")).await;
    publisher
        .publish("interop/v4/cleaned", QoS::AtLeastOnce, false, "queued")
        .await;

    options.set_clean_session(true);
    let (mut subscriber, connack) = V4::connect(options).await;
    assert!(!connack.session_present);
    // Subscribe to a marker topic only: if the old session had survived, its queued
    // message would arrive before the marker.
    subscriber
        .subscribe("interop/v4/marker", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("interop/v4/cleaned", QoS::AtLeastOnce, false, "after")
        .await;
    publisher
        .publish("interop/v4/marker", QoS::AtLeastOnce, false, "marker")
        .await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(publish.topic, "interop/v4/marker");
    server.shutdown().await;
}

// [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5] (3.1.1): UNSUBSCRIBE is answered with
// UNSUBACK, and messages for the removed filter stop.
#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = start_default().await;
    let (mut subscriber, _) = V4::connect(v4_options(&server, "v4-unsub")).await;
    subscriber
        .subscribe("interop/v4/unsub/a", QoS::AtLeastOnce)
        .await;
    subscriber
        .subscribe("interop/v4/unsub/marker", QoS::AtLeastOnce)
        .await;
    subscriber
        .client
        .unsubscribe("interop/v4/unsub/a")
        .await
        .unwrap();
    match subscriber.incoming().await {
        rumqttc::Packet::UnsubAck(_) => {}
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let (mut publisher, _) = V4::connect(v4_options(&server, "v4-unsub-pub")).await;
    publisher
        .publish("interop/v4/unsub/a", QoS::AtLeastOnce, false, "dropped")
        .await;
    publisher
        .publish("interop/v4/unsub/marker", QoS::AtLeastOnce, false, "marker")
        .await;
    assert_eq!(
        subscriber.recv_publish().await.topic,
        "interop/v4/unsub/marker"
    );
    server.shutdown().await;
}

// 3.1.1 has no Receive Maximum: a client may keep any number of QoS 2 messages waiting
// for PUBREL (rumqttc keeps up to 100 in flight by default). The broker used to apply
// its v5 Receive Maximum (64) and close such a 3.1.1 connection; [MQTT-3.3.4-7] binds
// v5 clients only. [MQTT-4.3.3-2] (3.1.1): each gets its PUBREC.
#[tokio::test]
async fn v311_client_may_keep_more_qos2_unreleased_than_receive_maximum() {
    use switchboard_codec::{Packet, ProtocolVersion, QoS};
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V3_1_1, "v4-many-qos2").await;
    for packet_id in 1..=100u16 {
        client
            .send(publish(
                "interop/v4/q2",
                QoS::ExactlyOnce,
                Some(packet_id),
                b"x",
            ))
            .await;
    }
    for packet_id in 1..=100u16 {
        match client.recv().await {
            Some(Packet::PubRec(ack)) => assert_eq!(ack.packet_id, packet_id),
            other => panic!("expected PUBREC {packet_id}, got {other:?}"),
        }
    }
    // Each is then released normally ([MQTT-4.3.3-2]: PUBCOMP for PUBREL).
    for packet_id in 1..=100u16 {
        client
            .send(Packet::PubRel(switchboard_codec::Ack::new(packet_id)))
            .await;
        match client.recv().await {
            Some(Packet::PubComp(ack)) => assert_eq!(ack.packet_id, packet_id),
            other => panic!("expected PUBCOMP {packet_id}, got {other:?}"),
        }
    }
    server.shutdown().await;
}
