//! Interoperability with a client we did not write: rumqttc's MQTT 5 API against
//! the broker on a real TCP port. Statement ids are those of MQTT 5.0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, LastWill, LastWillProperties, Packet, PubAckReason,
    PublishProperties, RetainForwardRule, SubscribeProperties, SubscribeReasonCode, UnsubAckReason,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::Event;
use support::*;

fn topic(publish: &rumqttc::v5::mqttbytes::v5::Publish) -> &str {
    std::str::from_utf8(&publish.topic).unwrap()
}

fn properties(publish: &rumqttc::v5::mqttbytes::v5::Publish) -> PublishProperties {
    publish.properties.clone().unwrap_or_default()
}

// [MQTT-3.1.4-5] [MQTT-3.2.2-2] (v5): CONNACK 0x00, Session Present 0 for Clean Start 1,
// and the server's limits announced in properties (3.2.2.3).
#[tokio::test]
async fn connack_announces_the_server_limits() {
    let server = start_default().await;
    let (client, connack) = V5::connect(v5_options(&server, "v5-connect")).await;
    assert_eq!(connack.code, ConnectReturnCode::Success);
    assert!(!connack.session_present);
    let properties = connack
        .properties
        .expect("a v5 CONNACK from this server has properties");
    assert_eq!(properties.receive_max, Some(64));
    assert_eq!(properties.topic_alias_max, Some(10));
    assert_eq!(properties.max_packet_size, Some(1024 * 1024));
    // [MQTT-3.2.2-9]: absent Maximum QoS means QoS 2 is supported.
    assert_eq!(properties.max_qos, None);
    // [MQTT-3.2.2-22]: the client's keep alive applies, so no Server Keep Alive.
    assert_eq!(properties.server_keep_alive, None);
    // [MQTT-3.1.2-28]: Request Response Information absent (0): no Response Information.
    assert_eq!(properties.response_information, None);
    client.disconnect().await;
    server.shutdown().await;
}

async fn round_trip(qos: QoS) {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-sub")).await;
    let suback = subscriber.subscribe("interop/v5/+", QoS::ExactlyOnce).await;
    // [MQTT-3.8.4-7] [MQTT-3.9.3-2]: the granted QoS.
    assert_eq!(
        suback.return_codes,
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );

    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-pub")).await;
    publisher
        .publish("interop/v5/qos", qos, false, format!("at {qos:?}"))
        .await;

    let publish = subscriber.recv_publish().await;
    // [MQTT-3.3.2-3]
    assert_eq!(topic(&publish), "interop/v5/qos");
    assert_eq!(&publish.payload[..], format!("at {qos:?}").as_bytes());
    // [MQTT-3.8.4-8]
    assert_eq!(publish.qos, qos);
    // [MQTT-3.3.1-3] [MQTT-4.3.1-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2]: a first send, DUP 0.
    assert!(!publish.dup);
    // [MQTT-3.3.1-12]: Retain As Published 0.
    assert!(!publish.retain);
    // [MQTT-2.2.1-2] [MQTT-2.2.1-4]: a packet id exactly when QoS > 0.
    assert_eq!(publish.pkid == 0, qos == QoS::AtMostOnce);
    // [MQTT-3.1.2-27]: the client announced no Topic Alias Maximum, so no alias.
    assert_eq!(properties(&publish).topic_alias, None);
    server.shutdown().await;
}

// [MQTT-4.3.1-1] (v5)
#[tokio::test]
async fn publish_subscribe_qos0() {
    round_trip(QoS::AtMostOnce).await;
}

// [MQTT-4.3.2-1] .. [MQTT-4.3.2-4] (v5), both legs.
#[tokio::test]
async fn publish_subscribe_qos1() {
    round_trip(QoS::AtLeastOnce).await;
}

// [MQTT-4.3.3-1] .. [MQTT-4.3.3-12] (v5), both legs: rumqttc completes
// PUBREC/PUBREL/PUBCOMP with the broker as sender and as receiver.
#[tokio::test]
async fn publish_subscribe_qos2() {
    round_trip(QoS::ExactlyOnce).await;
}

// [MQTT-4.6.0-5] [MQTT-4.6.0-6] (v5): one publisher, one topic, one QoS: order kept, also
// through the broker's in-flight window (Receive Maximum 64 < 200 messages).
#[tokio::test]
async fn many_messages_arrive_in_order() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-order-sub")).await;
    subscriber
        .subscribe("interop/v5/order", QoS::ExactlyOnce)
        .await;
    let (publisher, _) = V5::connect(v5_options(&server, "v5-order-pub")).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        const COUNT: usize = 200;
        for i in 0..COUNT {
            publisher
                .client
                .publish("interop/v5/order", qos, false, format!("{qos:?}-{i}"))
                .await
                .unwrap();
        }
        for i in 0..COUNT {
            let publish = subscriber.recv_publish().await;
            assert_eq!(publish.qos, qos);
            assert_eq!(
                std::str::from_utf8(&publish.payload).unwrap(),
                format!("{qos:?}-{i}")
            );
        }
    }
    server.shutdown().await;
}

// [MQTT-3.3.1-5] [MQTT-3.3.1-9] (v5): a retained message is stored and sent, with RETAIN 1,
// to a new subscription (Retain Handling 0).
#[tokio::test]
async fn retained_message_reaches_a_later_subscriber() {
    let server = start_default().await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-ret-pub")).await;
    publisher
        .publish("interop/v5/retained", QoS::AtLeastOnce, true, "kept")
        .await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-ret-sub")).await;
    subscriber.subscribe("interop/v5/#", QoS::ExactlyOnce).await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(topic(&publish), "interop/v5/retained");
    assert_eq!(&publish.payload[..], b"kept");
    assert!(publish.retain);
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    server.shutdown().await;
}

fn will_properties() -> LastWillProperties {
    LastWillProperties {
        delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        content_type: Some("text/plain".into()),
        response_topic: Some("interop/v5/will/reply".into()),
        correlation_data: Some(Bytes::from_static(b"will-correlation")),
        user_properties: vec![
            ("z".into(), "1".into()),
            ("a".into(), "2".into()),
            ("z".into(), "3".into()),
        ],
    }
}

// [MQTT-3.1.2-8] [MQTT-3.1.2-14] [MQTT-3.1.3-10] (v5): a connection lost without DISCONNECT
// has its Will published (no delay), non-retained, with its properties and the Will's
// User Properties in order.
#[tokio::test]
async fn will_is_published_when_the_connection_drops() {
    let server = start_default().await;
    let (mut watcher, _) = V5::connect(v5_options(&server, "v5-will-watcher")).await;
    watcher
        .subscribe("interop/v5/will/#", QoS::AtLeastOnce)
        .await;

    let mut options = v5_options(&server, "v5-will-dies");
    options.set_last_will(LastWill::new(
        "interop/v5/will/dies",
        "gone",
        QoS::AtLeastOnce,
        false,
        Some(will_properties()),
    ));
    let (dying, _) = V5::connect(options).await;
    dying.drop_abruptly().await;

    let will = watcher.recv_publish().await;
    assert_eq!(topic(&will), "interop/v5/will/dies");
    assert_eq!(&will.payload[..], b"gone");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(!will.retain);
    let properties = properties(&will);
    let expected = will_properties();
    assert_eq!(properties.user_properties, expected.user_properties);
    assert_eq!(properties.content_type, expected.content_type);
    assert_eq!(properties.payload_format_indicator, Some(1));
    assert_eq!(properties.response_topic, expected.response_topic);
    assert_eq!(properties.correlation_data, expected.correlation_data);
    server.shutdown().await;
}

// [MQTT-3.14.4-3] [MQTT-3.1.2-10] (v5): DISCONNECT 0x00 discards the Will.
#[tokio::test]
async fn will_is_not_published_after_normal_disconnect() {
    let server = start_default().await;
    let (mut watcher, _) = V5::connect(v5_options(&server, "v5-nowill-watcher")).await;
    watcher
        .subscribe("interop/v5/nowill/#", QoS::AtLeastOnce)
        .await;

    let mut options = v5_options(&server, "v5-nowill");
    options.set_last_will(LastWill::new(
        "interop/v5/nowill/will",
        "gone",
        QoS::AtLeastOnce,
        false,
        None,
    ));
    let (leaving, _) = V5::connect(options).await;
    // rumqttc sends DISCONNECT 0x00; returns once the server closed the connection.
    leaving.disconnect().await;

    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-nowill-pub")).await;
    publisher
        .publish(
            "interop/v5/nowill/marker",
            QoS::AtLeastOnce,
            false,
            "marker",
        )
        .await;
    let publish = watcher.recv_publish().await;
    assert_eq!(
        topic(&publish),
        "interop/v5/nowill/marker",
        "the Will was published after DISCONNECT 0x00"
    );
    server.shutdown().await;
}

// [MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-3] [MQTT-4.4.0-1] (v5): Clean Start 0 with a
// Session Expiry Interval keeps the session across connections; QoS 1 messages published
// meanwhile are delivered on return, with Session Present 1.
#[tokio::test]
async fn persistent_session_receives_messages_published_while_offline() {
    let server = start_default().await;
    let mut options = v5_options(&server, "v5-persistent");
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(300));
    let (mut subscriber, connack) = V5::connect(options.clone()).await;
    // [MQTT-3.1.2-6] [MQTT-3.2.2-3]: no session existed: a new one, Session Present 0.
    assert!(!connack.session_present);
    subscriber
        .subscribe("interop/v5/offline", QoS::AtLeastOnce)
        .await;
    subscriber.disconnect().await;

    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-persistent-pub")).await;
    for i in 0..3 {
        publisher
            .publish(
                "interop/v5/offline",
                QoS::AtLeastOnce,
                false,
                format!("offline-{i}"),
            )
            .await;
    }

    let (mut subscriber, connack) = V5::connect(options).await;
    assert!(connack.session_present);
    for i in 0..3 {
        let publish = subscriber.recv_publish().await;
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        assert_eq!(
            std::str::from_utf8(&publish.payload).unwrap(),
            format!("offline-{i}")
        );
    }
    publisher
        .publish("interop/v5/offline", QoS::AtLeastOnce, false, "online")
        .await;
    assert_eq!(&subscriber.recv_publish().await.payload[..], b"online");
    server.shutdown().await;
}

// [MQTT-3.3.2-17] [MQTT-3.3.2-18] (v5): User Properties are forwarded unchanged and in
// order, duplicates included.
#[tokio::test]
async fn user_properties_are_forwarded_in_order() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-up-sub")).await;
    subscriber
        .subscribe("interop/v5/props", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-up-pub")).await;
    let user_properties: Vec<(String, String)> = vec![
        ("region".into(), "eu".into()),
        ("trace".into(), "1".into()),
        ("region".into(), "us".into()),
        ("empty".into(), String::new()),
    ];
    let sent = PublishProperties {
        user_properties: user_properties.clone(),
        ..PublishProperties::default()
    };
    publisher
        .publish_with("interop/v5/props", QoS::AtLeastOnce, false, "p", Some(sent))
        .await;
    let publish = subscriber.recv_publish().await;
    assert_eq!(properties(&publish).user_properties, user_properties);
    server.shutdown().await;
}

// [MQTT-3.3.2-15] [MQTT-3.3.2-16] (v5), 4.10 Request / Response: a request with Response
// Topic and Correlation Data goes through the broker to a responder, whose answer on the
// Response Topic comes back with the same Correlation Data. [MQTT-3.1.2-28]: the
// requester asked for Response Information and uses it as its response topic prefix.
#[tokio::test]
async fn request_response_round_trip() {
    let server = start_default().await;
    let (mut responder, _) = V5::connect(v5_options(&server, "v5-responder")).await;
    responder
        .subscribe("interop/v5/service/echo", QoS::AtLeastOnce)
        .await;

    let mut options = v5_options(&server, "v5-requester");
    options.set_request_response_info(Some(1));
    let (mut requester, connack) = V5::connect(options).await;
    let prefix = connack
        .properties
        .and_then(|p| p.response_information)
        .expect("Response Information was requested");
    let response_topic = format!("{prefix}/echo");
    requester.subscribe(&response_topic, QoS::AtLeastOnce).await;

    for (i, correlation) in [&b"req-1"[..], &b"\x00\xffbinary"[..]]
        .into_iter()
        .enumerate()
    {
        let request = PublishProperties {
            response_topic: Some(response_topic.clone()),
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
            ..PublishProperties::default()
        };
        requester
            .publish_with(
                "interop/v5/service/echo",
                QoS::AtLeastOnce,
                false,
                format!("ping {i}"),
                Some(request),
            )
            .await;

        // The responder does what a service does: answer on the Response Topic, echoing
        // the Correlation Data.
        let received = responder.recv_publish().await;
        let received_properties = properties(&received);
        assert_eq!(
            received_properties.response_topic.as_deref(),
            Some(response_topic.as_str())
        );
        assert_eq!(
            received_properties.correlation_data.as_deref(),
            Some(correlation)
        );
        let reply = PublishProperties {
            correlation_data: received_properties.correlation_data.clone(),
            ..PublishProperties::default()
        };
        let payload = [&b"pong: "[..], &received.payload[..]].concat();
        responder
            .publish_with(
                received_properties.response_topic.as_deref().unwrap(),
                QoS::AtLeastOnce,
                false,
                payload,
                Some(reply),
            )
            .await;

        let response = requester.recv_publish().await;
        assert_eq!(topic(&response), response_topic);
        assert_eq!(
            std::str::from_utf8(&response.payload).unwrap(),
            format!("pong: ping {i}")
        );
        assert_eq!(
            properties(&response).correlation_data.as_deref(),
            Some(correlation)
        );
    }
    server.shutdown().await;
}

// [MQTT-3.3.2-20] [MQTT-3.3.2-4] (v5): Content Type and Payload Format Indicator are
// forwarded unchanged.
#[tokio::test]
async fn content_type_and_payload_format_are_forwarded() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-ct-sub")).await;
    subscriber
        .subscribe("interop/v5/ct", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-ct-pub")).await;
    let sent = PublishProperties {
        content_type: Some("application/json; charset=utf-8".into()),
        payload_format_indicator: Some(1),
        ..PublishProperties::default()
    };
    publisher
        .publish_with(
            "interop/v5/ct",
            QoS::AtLeastOnce,
            false,
            r#"{"ok":true}"#,
            Some(sent),
        )
        .await;
    let received = properties(&subscriber.recv_publish().await);
    assert_eq!(
        received.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(received.payload_format_indicator, Some(1));
    server.shutdown().await;
}

// [MQTT-3.3.2-6] (v5): the Message Expiry Interval is forwarded, reduced by the time the
// message waited in the server (here well under a second, so at most the sent value and
// more than 0); a message without one is forwarded without one.
#[tokio::test]
async fn message_expiry_interval_is_forwarded() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-exp-sub")).await;
    subscriber
        .subscribe("interop/v5/expiry", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-exp-pub")).await;
    let sent = PublishProperties {
        message_expiry_interval: Some(120),
        ..PublishProperties::default()
    };
    publisher
        .publish_with(
            "interop/v5/expiry",
            QoS::AtLeastOnce,
            false,
            "short-lived",
            Some(sent),
        )
        .await;
    publisher
        .publish("interop/v5/expiry", QoS::AtLeastOnce, false, "forever")
        .await;
    let interval = properties(&subscriber.recv_publish().await).message_expiry_interval;
    assert!(
        matches!(interval, Some(1..=120)),
        "forwarded interval {interval:?}"
    );
    assert_eq!(
        properties(&subscriber.recv_publish().await).message_expiry_interval,
        None
    );
    server.shutdown().await;
}

// [MQTT-3.3.4-3] [MQTT-3.3.4-4] (v5): a message matching a subscription made with a
// Subscription Identifier carries it; one matching a subscription without carries none.
#[tokio::test]
async fn subscription_identifiers_come_back_on_publish() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-sid-sub")).await;
    subscriber
        .client
        .subscribe_with_properties(
            "interop/v5/sid/a",
            QoS::AtLeastOnce,
            SubscribeProperties {
                id: Some(7),
                user_properties: Vec::new(),
            },
        )
        .await
        .unwrap();
    subscriber.suback().await;
    subscriber
        .client
        .subscribe_with_properties(
            "interop/v5/sid/+",
            QoS::AtLeastOnce,
            SubscribeProperties {
                id: Some(268_435_455),
                user_properties: Vec::new(),
            },
        )
        .await
        .unwrap();
    subscriber.suback().await;
    subscriber
        .subscribe("interop/v5/plain", QoS::AtLeastOnce)
        .await;

    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-sid-pub")).await;
    publisher
        .publish("interop/v5/sid/b", QoS::AtLeastOnce, false, "one")
        .await;
    publisher
        .publish("interop/v5/sid/a", QoS::AtLeastOnce, false, "both")
        .await;
    publisher
        .publish("interop/v5/plain", QoS::AtLeastOnce, false, "none")
        .await;

    assert_eq!(
        properties(&subscriber.recv_publish().await).subscription_identifiers,
        vec![268_435_455]
    );
    let mut both = properties(&subscriber.recv_publish().await).subscription_identifiers;
    both.sort_unstable();
    assert_eq!(
        both,
        vec![7, 268_435_455],
        "one copy with both identifiers, in any order"
    );
    assert!(properties(&subscriber.recv_publish().await)
        .subscription_identifiers
        .is_empty());
    server.shutdown().await;
}

// [MQTT-3.3.2-12] [MQTT-3.3.2-7] (v5): the broker accepts a Topic Alias set by the client
// (1 .. its Topic Alias Maximum of 10), resolves a later PUBLISH carrying only the alias,
// and subscribers get the full topic name. An alias may be remapped.
#[tokio::test]
async fn topic_alias_set_by_the_client_is_resolved() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-alias-sub")).await;
    subscriber
        .subscribe("interop/v5/alias/#", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-alias-pub")).await;
    let alias = |n: u16| PublishProperties {
        topic_alias: Some(n),
        ..PublishProperties::default()
    };
    publisher
        .publish_with(
            "interop/v5/alias/long/topic/name",
            QoS::AtLeastOnce,
            false,
            "first",
            Some(alias(1)),
        )
        .await;
    publisher
        .publish_with("", QoS::AtLeastOnce, false, "second", Some(alias(1)))
        .await;
    publisher
        .publish_with(
            "interop/v5/alias/other",
            QoS::AtMostOnce,
            false,
            "third",
            Some(alias(10)),
        )
        .await;
    publisher
        .publish_with("", QoS::ExactlyOnce, false, "fourth", Some(alias(10)))
        .await;
    // Remap alias 1.
    publisher
        .publish_with(
            "interop/v5/alias/remapped",
            QoS::AtLeastOnce,
            false,
            "fifth",
            Some(alias(1)),
        )
        .await;
    publisher
        .publish_with("", QoS::AtLeastOnce, false, "sixth", Some(alias(1)))
        .await;

    for (expected_topic, payload) in [
        ("interop/v5/alias/long/topic/name", "first"),
        ("interop/v5/alias/long/topic/name", "second"),
        ("interop/v5/alias/other", "third"),
        ("interop/v5/alias/other", "fourth"),
        ("interop/v5/alias/remapped", "fifth"),
        ("interop/v5/alias/remapped", "sixth"),
    ] {
        let publish = subscriber.recv_publish().await;
        assert_eq!(topic(&publish), expected_topic);
        assert_eq!(&publish.payload[..], payload.as_bytes());
        assert_eq!(properties(&publish).topic_alias, None, "[MQTT-3.1.2-27]");
    }
    server.shutdown().await;
}

// 3.4.2.1 (v5): a QoS 1 PUBLISH nobody subscribed to is acknowledged with 0x10 (No
// matching subscribers); one that matched with 0x00.
#[tokio::test]
async fn puback_says_whether_anyone_matched() {
    let server = start_default().await;
    let (mut subscriber, _) = V5::connect(v5_options(&server, "v5-nms-sub")).await;
    subscriber
        .subscribe("interop/v5/matched", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-nms-pub")).await;
    for (topic, reason) in [
        ("interop/v5/nobody", PubAckReason::NoMatchingSubscribers),
        ("interop/v5/matched", PubAckReason::Success),
    ] {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
        match publisher
            .next_where("PUBACK", |e| {
                matches!(e, Event::Incoming(Packet::PubAck(_)))
            })
            .await
        {
            Event::Incoming(Packet::PubAck(ack)) => {
                assert_eq!(ack.reason, reason, "PUBACK for {topic}")
            }
            _ => unreachable!(),
        }
    }
    server.shutdown().await;
}

// [MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6] [MQTT-3.11.3-1] (v5):
// one UNSUBACK for several filters, a reason code per filter in order: 0x00 for a
// removed subscription, 0x11 for none (filters compared literally, wildcards included).
#[tokio::test]
async fn unsubscribe_reason_codes() {
    let server = start_default().await;
    let (mut client, _) = V5::connect(v5_options(&server, "v5-unsub")).await;
    client
        .subscribe("interop/v5/unsub/+", QoS::AtLeastOnce)
        .await;
    client
        .client
        .unsubscribe("interop/v5/unsub/+")
        .await
        .unwrap();
    client
        .client
        .unsubscribe("interop/v5/unsub/x")
        .await
        .unwrap();
    for expected in [
        UnsubAckReason::Success,
        UnsubAckReason::NoSubscriptionExisted,
    ] {
        match client.incoming().await {
            Packet::UnsubAck(unsuback) => assert_eq!(unsuback.reasons, vec![expected]),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }
    server.shutdown().await;
}

// [MQTT-3.8.3-3] (v5): No Local: a client's own messages are not sent back to it on that
// subscription, while other clients' are.
#[tokio::test]
async fn no_local_suppresses_own_messages() {
    let server = start_default().await;
    let (mut client, _) = V5::connect(v5_options(&server, "v5-nolocal")).await;
    let filter = Filter {
        nolocal: true,
        ..Filter::new("interop/v5/nolocal", QoS::AtLeastOnce)
    };
    client.client.subscribe_many([filter]).await.unwrap();
    client.suback().await;
    client
        .publish("interop/v5/nolocal", QoS::AtLeastOnce, false, "own")
        .await;
    let (mut other, _) = V5::connect(v5_options(&server, "v5-nolocal-other")).await;
    other
        .publish("interop/v5/nolocal", QoS::AtLeastOnce, false, "other")
        .await;
    assert_eq!(&client.recv_publish().await.payload[..], b"other");
    server.shutdown().await;
}

// [MQTT-3.3.1-10] [MQTT-3.3.1-11] (v5) through rumqttc's subscription options: Retain
// Handling 1 sends retained messages for a new subscription only, 2 never.
#[tokio::test]
async fn retain_handling_options_from_rumqttc() {
    let server = start_default().await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-rh-pub")).await;
    publisher
        .publish("interop/v5/rh/t", QoS::AtLeastOnce, true, "kept")
        .await;

    let (mut client, _) = V5::connect(v5_options(&server, "v5-rh")).await;
    let on_new = Filter {
        retain_forward_rule: RetainForwardRule::OnNewSubscribe,
        ..Filter::new("interop/v5/rh/+", QoS::AtLeastOnce)
    };
    client
        .client
        .subscribe_many([on_new.clone()])
        .await
        .unwrap();
    client.suback().await;
    assert_eq!(&client.recv_publish().await.payload[..], b"kept");
    // Again: the subscription exists now, so nothing; then one with Retain Handling 2.
    client.client.subscribe_many([on_new]).await.unwrap();
    client.suback().await;
    let never = Filter {
        retain_forward_rule: RetainForwardRule::Never,
        ..Filter::new("interop/v5/rh/#", QoS::AtLeastOnce)
    };
    client.client.subscribe_many([never]).await.unwrap();
    client.suback().await;
    client
        .subscribe("interop/v5/marker", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("interop/v5/marker", QoS::AtLeastOnce, false, "marker")
        .await;
    assert_eq!(topic(&client.recv_publish().await), "interop/v5/marker");
    server.shutdown().await;
}

// [MQTT-3.3.4-9] [MQTT-4.9.0-2] (v5): the broker never has more unacknowledged QoS 1
// PUBLISH packets towards a client than the Receive Maximum it announced (2 here, with
// rumqttc acknowledging only when the test says so); each PUBACK lets one more through.
#[tokio::test]
async fn receive_maximum_of_the_client_is_respected() {
    let server = start_default().await;
    let mut options = v5_options(&server, "v5-rm-sub");
    options.set_receive_maximum(Some(2));
    options.set_manual_acks(true);
    let (mut subscriber, _) = V5::connect(options).await;
    subscriber
        .subscribe("interop/v5/rm", QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(v5_options(&server, "v5-rm-pub")).await;
    for i in 0..5 {
        publisher
            .publish("interop/v5/rm", QoS::AtLeastOnce, false, format!("rm-{i}"))
            .await;
    }
    // All five are routed; two are in flight, three wait in the queue.
    let first = subscriber.recv_publish().await;
    let second = subscriber.recv_publish().await;
    let counts = server.broker().session("v5-rm-sub").unwrap().counts();
    assert_eq!((counts.inflight, counts.queued), (2, 3));
    let mut received = vec![first.clone(), second];
    subscriber.client.ack(&first).await.unwrap();
    received.push(subscriber.recv_publish().await);
    let counts = server.broker().session("v5-rm-sub").unwrap().counts();
    assert_eq!((counts.inflight, counts.queued), (2, 2));
    for publish in received.clone() {
        if publish.payload != first.payload {
            subscriber.client.ack(&publish).await.unwrap();
        }
    }
    for _ in 0..2 {
        let publish = subscriber.recv_publish().await;
        subscriber.client.ack(&publish).await.unwrap();
        received.push(publish);
    }
    let payloads: Vec<_> = received
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, vec!["rm-0", "rm-1", "rm-2", "rm-3", "rm-4"]);
    server.shutdown().await;
}
