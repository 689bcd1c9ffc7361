//! Sessions: the offline queue and its bounds, QoS 0 while offline, Clean Start,
//! resend on resume, expiry, takeover races, and many clients at once.
//!
//! "Nothing else arrives" is checked without waiting: the client publishes a QoS 0
//! marker to itself; a session's queue is FIFO, so anything still due comes first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use switchboard_broker::Metrics;
use switchboard_codec::{
    Ack, Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Will,
    WillProperties,
};
use switchboard_server::RunningServer;
use tokio::io::{AsyncRead, AsyncWrite};

const MARKER: &str = "sessions-test/marker";

fn persistent_connect(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    let mut connect = connect_packet(version, client_id, clean_start);
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(300);
    }
    connect
}

/// Connects on TCP with Clean Start 0 (v5: Session Expiry 300 s) and returns the
/// client and Session Present.
async fn connect_persistent(
    server: &RunningServer,
    version: ProtocolVersion,
    client_id: &str,
) -> (RawClient<tokio::net::TcpStream>, bool) {
    let mut client = RawClient::tcp(addr(server), version).await;
    let connack = client
        .connect(persistent_connect(version, client_id, false))
        .await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    (client, connack.session_present)
}

/// DISCONNECT 0x00 and wait for the server to close; the broker has handled it then.
async fn disconnect<S: AsyncRead + AsyncWrite + Unpin>(mut client: RawClient<S>) {
    client.send(Packet::Disconnect(Disconnect::default())).await;
    assert_eq!(client.recv().await, None);
}

fn numbered(topic: &str, qos: QoS, n: usize) -> Publish {
    Publish {
        qos,
        topic: topic.to_string(),
        packet_id: (qos != QoS::AtMostOnce).then_some(n as u16 + 1),
        payload: bytes::Bytes::from(format!("msg-{n}")),
        ..Publish::default()
    }
}

async fn subscribe_ok<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    filters: &[(&str, QoS)],
) {
    let subscribe = switchboard_codec::Subscribe {
        packet_id: 1,
        filters: filters
            .iter()
            .map(|(f, qos)| {
                (
                    f.to_string(),
                    switchboard_codec::SubscriptionOptions {
                        qos: *qos,
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Default::default()
    };
    client.send(subscribe).await;
    let suback = client.expect_suback().await;
    assert_eq!(
        suback.reason_codes,
        filters
            .iter()
            .map(|(_, q)| ReasonCode::granted(*q))
            .collect::<Vec<_>>()
    );
}

/// Publishes at QoS 1 and waits for the PUBACK (the message is routed then).
async fn publish_acked<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    publish: Publish,
) {
    client.send(publish).await;
    client.expect_puback().await;
}

/// Publishes a QoS 0 marker to itself and returns the payloads of every PUBLISH received
/// before it (acknowledging QoS 1 ones).
async fn payloads_before_marker<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
) -> Vec<String> {
    client
        .send(publish(MARKER, QoS::AtMostOnce, None, b"marker"))
        .await;
    let mut payloads = Vec::new();
    loop {
        let publish = client.expect_publish().await;
        if publish.topic == MARKER {
            return payloads;
        }
        if let (QoS::AtLeastOnce, Some(id)) = (publish.qos, publish.packet_id) {
            client.send(Packet::PubAck(Ack::new(id))).await;
        }
        payloads.push(String::from_utf8(publish.payload.to_vec()).unwrap());
    }
}

fn messages(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("msg-{n}")).collect()
}

// [MQTT-3.1.2-5] (3.1.1) / [MQTT-3.1.2-23] (v5) with the queue bound: an offline session
// with `max_queued_messages = 5` keeps the first 5 of 10 QoS 1 messages (a full queue
// drops the NEW message, so order is never broken) and the broker counts 5 drops.
#[tokio::test]
async fn offline_queue_is_bounded_and_drops_are_counted() {
    let mut options = support::options();
    options.broker.max_queued_messages = 5;
    let server = start(options).await;
    let (mut client, _) = connect_persistent(&server, ProtocolVersion::V5, "bounded").await;
    subscribe_ok(
        &mut client,
        &[("bounded/t", QoS::AtLeastOnce), (MARKER, QoS::AtMostOnce)],
    )
    .await;
    disconnect(client).await;

    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "bounded-pub").await;
    for n in 0..10 {
        publish_acked(&mut publisher, numbered("bounded/t", QoS::AtLeastOnce, n)).await;
    }
    assert_eq!(
        Metrics::get(&server.broker().metrics().dropped_queue_full),
        5
    );
    assert_eq!(
        server.broker().session("bounded").unwrap().counts().queued,
        5
    );

    let (mut client, session_present) =
        connect_persistent(&server, ProtocolVersion::V5, "bounded").await;
    assert!(session_present);
    assert_eq!(payloads_before_marker(&mut client).await, messages(0..5));
    server.shutdown().await;
}

async fn qos0_while_offline(queue_qos0_offline: bool) -> (Vec<String>, u64) {
    let mut options = support::options();
    options.broker.queue_qos0_offline = queue_qos0_offline;
    let server = start(options).await;
    let (mut client, _) =
        connect_persistent(&server, ProtocolVersion::V3_1_1, "offline-qos0").await;
    subscribe_ok(
        &mut client,
        &[("q0/t", QoS::AtLeastOnce), (MARKER, QoS::AtMostOnce)],
    )
    .await;
    disconnect(client).await;

    let mut publisher = connected_tcp(&server, ProtocolVersion::V3_1_1, "offline-qos0-pub").await;
    for n in 0..3 {
        publisher.send(numbered("q0/t", QoS::AtMostOnce, n)).await;
    }
    // A QoS 1 message after them: its PUBACK means the QoS 0 ones were routed too.
    publish_acked(&mut publisher, numbered("q0/t", QoS::AtLeastOnce, 3)).await;
    let dropped = Metrics::get(&server.broker().metrics().dropped_qos0_offline);

    let (mut client, session_present) =
        connect_persistent(&server, ProtocolVersion::V3_1_1, "offline-qos0").await;
    assert!(session_present);
    let received = payloads_before_marker(&mut client).await;
    server.shutdown().await;
    (received, dropped)
}

// [MQTT-3.1.2-5] (3.1.1): QoS 1 and 2 messages are kept for an offline session; QoS 0
// ones MAY be and by default are not (`queue_qos0_offline = false`), counted as drops.
#[tokio::test]
async fn qos0_is_not_queued_offline_by_default() {
    let (received, dropped) = qos0_while_offline(false).await;
    assert_eq!(received, messages(3..4));
    assert_eq!(dropped, 3);
}

// With `queue_qos0_offline = true` the QoS 0 messages are queued too, in order.
#[tokio::test]
async fn qos0_is_queued_offline_when_configured() {
    let (received, dropped) = qos0_while_offline(true).await;
    assert_eq!(received, messages(0..4));
    assert_eq!(dropped, 0);
}

// [MQTT-3.1.2-4] [MQTT-3.2.2-2] (v5) / [MQTT-3.1.2-6] (3.1.1): Clean Start 1 discards the
// existing session: Session Present 0, no queued messages, no subscriptions (a QoS 1
// publish to its old topic then matches nobody: PUBACK 0x10).
#[tokio::test]
async fn clean_start_discards_the_old_session() {
    let server = start_default().await;
    let (mut client, _) = connect_persistent(&server, ProtocolVersion::V5, "cleaned").await;
    subscribe_ok(&mut client, &[("cleaned/t", QoS::AtLeastOnce)]).await;
    disconnect(client).await;
    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "cleaned-pub").await;
    publish_acked(&mut publisher, numbered("cleaned/t", QoS::AtLeastOnce, 0)).await;
    assert_eq!(
        server.broker().session("cleaned").unwrap().counts().queued,
        1
    );

    let mut client = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    let connack = client
        .connect(persistent_connect(ProtocolVersion::V5, "cleaned", true))
        .await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    subscribe_ok(&mut client, &[(MARKER, QoS::AtMostOnce)]).await;
    assert!(
        payloads_before_marker(&mut client).await.is_empty(),
        "the queued message went with the old session"
    );

    publisher
        .send(numbered("cleaned/t", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(
        publisher.expect_puback().await.reason_code,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        server
            .broker()
            .session("cleaned")
            .unwrap()
            .counts()
            .subscriptions,
        1,
        "only the marker"
    );
    server.shutdown().await;
}

// [MQTT-4.4.0-1] [MQTT-3.3.1-1] (v5 and 3.1.1): on resume, an unacknowledged QoS 1
// PUBLISH is sent again with its packet id and DUP 1, and a PUBREL is sent again for a
// QoS 2 message that was PUBREC'd but not PUBCOMP'd. Nothing is sent twice after that.
#[tokio::test]
async fn resume_resends_unacknowledged_publish_and_pubrel() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let server = start_default().await;
        let (mut client, _) = connect_persistent(&server, version, "resend").await;
        subscribe_ok(
            &mut client,
            &[
                ("resend/one", QoS::AtLeastOnce),
                ("resend/two", QoS::ExactlyOnce),
                (MARKER, QoS::AtMostOnce),
            ],
        )
        .await;
        let mut publisher = connected_tcp(&server, version, "resend-pub").await;
        publish_acked(&mut publisher, numbered("resend/one", QoS::AtLeastOnce, 0)).await;
        publisher
            .send(numbered("resend/two", QoS::ExactlyOnce, 1))
            .await;
        publisher.expect_pubrec().await;

        let first = client.expect_publish().await;
        assert!(!first.dup);
        let second = client.expect_publish().await;
        assert_eq!(second.qos, QoS::ExactlyOnce);
        let second_id = second.packet_id.unwrap();
        client.send(Packet::PubRec(Ack::new(second_id))).await;
        assert_eq!(client.expect_pubrel().await.packet_id, second_id);
        // Gone without PUBACK for the first and without PUBCOMP for the second.
        drop(client);
        wait_until(|| session_connected(&server, "resend") == Some(false)).await;

        let (mut client, session_present) = connect_persistent(&server, version, "resend").await;
        assert!(session_present);
        let again = client.expect_publish().await;
        assert!(again.dup, "{version:?}: DUP 1 on the resent PUBLISH");
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(again.payload, first.payload);
        assert_eq!(client.expect_pubrel().await.packet_id, second_id);
        client
            .send(Packet::PubAck(Ack::new(again.packet_id.unwrap())))
            .await;
        client.send(Packet::PubComp(Ack::new(second_id))).await;
        assert!(payloads_before_marker(&mut client).await.is_empty());
        assert_eq!(
            server.broker().session("resend").unwrap().counts().inflight,
            0
        );
        server.shutdown().await;
    }
}

// [MQTT-4.3.3-10] (v5) / [MQTT-4.3.3-2] (3.1.1), and 4.1 (the inbound QoS 2 state is
// session state): a QoS 2 PUBLISH resent on a new connection before PUBREL is
// acknowledged again but not routed again.
#[tokio::test]
async fn inbound_qos2_is_not_routed_twice_across_connections() {
    let server = start_default().await;
    let mut subscriber = connected_tcp(&server, ProtocolVersion::V5, "dedup-sub").await;
    subscribe_ok(
        &mut subscriber,
        &[("dedup/t", QoS::AtMostOnce), (MARKER, QoS::AtMostOnce)],
    )
    .await;

    let (mut publisher, _) = connect_persistent(&server, ProtocolVersion::V5, "dedup-pub").await;
    publisher
        .send(numbered("dedup/t", QoS::ExactlyOnce, 0))
        .await;
    assert_eq!(publisher.expect_pubrec().await.packet_id, 1);
    drop(publisher);
    wait_until(|| session_connected(&server, "dedup-pub") == Some(false)).await;

    let (mut publisher, session_present) =
        connect_persistent(&server, ProtocolVersion::V5, "dedup-pub").await;
    assert!(session_present);
    publisher
        .send(Publish {
            dup: true,
            ..numbered("dedup/t", QoS::ExactlyOnce, 0)
        })
        .await;
    assert_eq!(publisher.expect_pubrec().await.packet_id, 1);
    publisher.send(Packet::PubRel(Ack::new(1))).await;
    let pubcomp = publisher.expect_pubcomp().await;
    assert_eq!(
        (pubcomp.packet_id, pubcomp.reason_code),
        (1, ReasonCode::SUCCESS)
    );
    assert_eq!(
        payloads_before_marker(&mut subscriber).await,
        messages(0..1)
    );
    server.shutdown().await;
}

// [MQTT-4.1.0-2] [MQTT-3.1.2-23] (v5): the session outlives its connection for the
// Session Expiry Interval and not longer. Paused time, in-memory connections.
#[tokio::test(start_paused = true)]
async fn session_expires_after_its_interval() {
    let server = start_default().await;
    let connect = |clean_start| {
        let mut connect = connect_packet(ProtocolVersion::V5, "expiring", clean_start);
        connect.properties.session_expiry_interval = Some(5);
        connect
    };
    let mut client = raw_in_memory(&server, ProtocolVersion::V5);
    assert!(!client.connect(connect(true)).await.session_present);
    disconnect(client).await;

    tokio::time::advance(Duration::from_secs(4)).await;
    let mut client = raw_in_memory(&server, ProtocolVersion::V5);
    assert!(
        client.connect(connect(false)).await.session_present,
        "4 s < 5 s: still there"
    );
    disconnect(client).await;

    tokio::time::advance(Duration::from_secs(6)).await;
    let mut client = raw_in_memory(&server, ProtocolVersion::V5);
    assert!(
        !client.connect(connect(false)).await.session_present,
        "expired"
    );
    server.shutdown().await;
}

// [MQTT-3.1.4-3] (v5) / [MQTT-3.1.4-2] (3.1.1), [MQTT-3.1.2-5] (v5): the same client id
// connects 20 times at once on new TCP connections, alternating 5.0 and 3.1.1, each
// taking over from whichever came before; then once more. Every CONNECT is accepted
// with Session Present 1, every earlier connection is closed (v5: DISCONNECT 0x8E),
// and the last one owns the session with its subscription intact.
#[tokio::test]
async fn session_takeover_race() {
    let server = start_default().await;
    let (mut first, _) = connect_persistent(&server, ProtocolVersion::V5, "racer").await;
    subscribe_ok(&mut first, &[("race/t", QoS::AtLeastOnce)]).await;

    const RACERS: usize = 20;
    let version = |i: usize| {
        if i.is_multiple_of(2) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        }
    };
    let mut racers = Vec::with_capacity(RACERS);
    for i in 0..RACERS {
        let mut client = RawClient::tcp(addr(&server), version(i)).await;
        client
            .send(Packet::Connect(Box::new(persistent_connect(
                version(i),
                "racer",
                false,
            ))))
            .await;
        racers.push(client);
    }
    for (i, racer) in racers.iter_mut().enumerate() {
        match racer.expect().await {
            Packet::ConnAck(connack) => {
                assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "racer {i}");
                assert!(connack.session_present, "racer {i}");
            }
            other => panic!("racer {i}: expected CONNACK, got {other:?}"),
        }
    }

    let (mut last, session_present) =
        connect_persistent(&server, ProtocolVersion::V5, "racer").await;
    assert!(session_present);
    for (i, mut racer) in racers.into_iter().enumerate().chain([(RACERS, first)]) {
        let closing = racer.closed().await;
        if racer.version.is_v5() {
            match closing {
                Some(Packet::Disconnect(disconnect)) => assert_eq!(
                    disconnect.reason_code,
                    ReasonCode::SESSION_TAKEN_OVER,
                    "racer {i}"
                ),
                other => panic!("racer {i}: expected DISCONNECT 0x8E, got {other:?}"),
            }
        } else {
            assert_eq!(closing, None, "racer {i}: 3.1.1 gets no DISCONNECT");
        }
    }
    assert_eq!(
        Metrics::get(&server.broker().metrics().takeovers),
        RACERS as u64 + 1
    );

    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "race-pub").await;
    publish_acked(&mut publisher, numbered("race/t", QoS::AtLeastOnce, 7)).await;
    let publish = last.expect_publish().await;
    assert_eq!(&publish.payload[..], b"msg-7");
    let info = server.broker().session("racer").unwrap().info();
    assert!(info.connected);
    assert_eq!(info.subscriptions.len(), 1);
    assert_eq!(
        Metrics::get(&server.broker().metrics().connections_current),
        2
    );
    server.shutdown().await;
}

// [MQTT-4.5.0-1] under load: 50 rumqttc clients (half 3.1.1, half 5.0) connect and
// subscribe concurrently, then each publishes one QoS 1 message; every client gets all 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_every_message_arrives() {
    const CLIENTS: usize = 50;
    let server = start_default().await;
    // Everyone subscribes before anyone publishes; everyone stays connected until the
    // test has looked at the connection count.
    let subscribed = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let finished = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..CLIENTS {
        let (subscribed, finished, report) = (subscribed.clone(), finished.clone(), report.clone());
        let id = format!("many-{i}");
        if i.is_multiple_of(2) {
            let options = v4_options(&server, &id);
            tokio::spawn(async move {
                let (mut client, _) = V4::connect(options).await;
                client
                    .subscribe("many/all", rumqttc::QoS::AtLeastOnce)
                    .await;
                subscribed.wait().await;
                client
                    .publish("many/all", rumqttc::QoS::AtLeastOnce, false, id)
                    .await;
                let mut got = BTreeSet::new();
                for _ in 0..CLIENTS {
                    got.insert(
                        String::from_utf8(client.recv_publish().await.payload.to_vec()).unwrap(),
                    );
                }
                report.send((i, got)).unwrap();
                finished.wait().await;
            });
        } else {
            let options = v5_options(&server, &id);
            tokio::spawn(async move {
                let (mut client, _) = V5::connect(options).await;
                client
                    .subscribe("many/all", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                    .await;
                subscribed.wait().await;
                client
                    .publish(
                        "many/all",
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        id,
                    )
                    .await;
                let mut got = BTreeSet::new();
                for _ in 0..CLIENTS {
                    got.insert(
                        String::from_utf8(client.recv_publish().await.payload.to_vec()).unwrap(),
                    );
                }
                report.send((i, got)).unwrap();
                finished.wait().await;
            });
        }
    }
    drop(report);
    let expected: BTreeSet<String> = (0..CLIENTS).map(|i| format!("many-{i}")).collect();
    let mut reported = BTreeSet::new();
    for _ in 0..CLIENTS {
        // A client task that panicked drops its sender: `None` then, not a hang.
        let (i, got) = tokio::time::timeout(GUARD * 3, reports.recv())
            .await
            .expect("hang guard")
            .expect("a client task failed");
        assert_eq!(got, expected, "client {i}");
        reported.insert(i);
    }
    assert_eq!(reported.len(), CLIENTS);
    assert_eq!(
        Metrics::get(&server.broker().metrics().connections_current),
        CLIENTS as u64
    );
    finished.wait().await;
    server.shutdown().await;
}

// [MQTT-3.14.4-3] [MQTT-3.1.2-10] (v5): DISCONNECT 0x00 discards the Will at once, even
// while the server is still flushing its last bytes to a client that does not read. The
// broker used to detach the connection only after that flush (up to 1 s), so a reconnect
// in between found the old connection attached and the takeover published the Will.
// Paused time, in-memory connections (a 64 KiB pipe that the client leaves full).
#[tokio::test(start_paused = true)]
async fn disconnect_discards_the_will_even_while_the_close_is_flushing() {
    let server = start_default().await;
    let mut watcher = connected_in_memory(&server, ProtocolVersion::V5, "slow-watcher").await;
    subscribe_ok(
        &mut watcher,
        &[("slow/will", QoS::AtLeastOnce), (MARKER, QoS::AtMostOnce)],
    )
    .await;

    let mut slow = raw_in_memory(&server, ProtocolVersion::V5);
    let mut connect = persistent_connect(ProtocolVersion::V5, "slow", true);
    connect.will = Some(Will {
        topic: "slow/will".into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    assert_eq!(slow.connect(connect).await.reason_code, ReasonCode::SUCCESS);
    subscribe_ok(&mut slow, &[("slow/fill", QoS::AtMostOnce)]).await;

    // About 80 KiB for a client that reads nothing: the pipe takes 64 KiB, the rest waits
    // in the server's write buffer (below its 64 KiB high-water mark, so it still reads).
    let mut filler = connected_in_memory(&server, ProtocolVersion::V5, "slow-filler").await;
    for n in 0..80 {
        let publish = Publish {
            payload: bytes::Bytes::from(vec![b'x'; 1000]),
            ..numbered("slow/fill", QoS::AtLeastOnce, n)
        };
        publish_acked(&mut filler, publish).await;
    }
    slow.send(Packet::Disconnect(Disconnect::default())).await;
    wait_until(|| session_connected(&server, "slow") == Some(false)).await;

    let mut again = raw_in_memory(&server, ProtocolVersion::V5);
    let connack = again
        .connect(persistent_connect(ProtocolVersion::V5, "slow", false))
        .await;
    assert!(connack.session_present);
    assert!(
        payloads_before_marker(&mut watcher).await.is_empty(),
        "the Will was published"
    );
    drop(slow);
    server.shutdown().await;
}

// [MQTT-3.3.2-5] [MQTT-3.3.2-6] (v5): a message queued for an offline session whose
// Message Expiry Interval passes before the session returns is not sent (and counted
// as dropped); one still valid goes out with the time it waited taken off.
// Paused time, in-memory connections.
#[tokio::test(start_paused = true)]
async fn queued_message_expires_while_the_session_is_offline() {
    let server = start_default().await;
    let connect =
        |clean_start| persistent_connect(ProtocolVersion::V5, "expiry-offline", clean_start);
    let mut client = raw_in_memory(&server, ProtocolVersion::V5);
    client.connect(connect(true)).await;
    subscribe_ok(
        &mut client,
        &[("exp/t", QoS::AtLeastOnce), (MARKER, QoS::AtMostOnce)],
    )
    .await;
    disconnect(client).await;

    let mut publisher = connected_in_memory(&server, ProtocolVersion::V5, "expiry-pub").await;
    for (n, expiry) in [(0, Some(5)), (1, Some(30)), (2, None)] {
        let mut publish = numbered("exp/t", QoS::AtLeastOnce, n);
        publish.properties.message_expiry_interval = expiry;
        publish_acked(&mut publisher, publish).await;
    }
    tokio::time::advance(Duration::from_secs(10)).await;

    let mut client = raw_in_memory(&server, ProtocolVersion::V5);
    assert!(client.connect(connect(false)).await.session_present);
    let first = client.expect_publish().await;
    assert_eq!(&first.payload[..], b"msg-1");
    assert_eq!(first.properties.message_expiry_interval, Some(20));
    client
        .send(Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .await;
    let second = client.expect_publish().await;
    assert_eq!(&second.payload[..], b"msg-2");
    assert_eq!(second.properties.message_expiry_interval, None);
    client
        .send(Packet::PubAck(Ack::new(second.packet_id.unwrap())))
        .await;
    assert!(payloads_before_marker(&mut client).await.is_empty());
    assert_eq!(Metrics::get(&server.broker().metrics().dropped_expired), 1);
    server.shutdown().await;
}
