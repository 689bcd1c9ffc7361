//! Durability: what a broker with a data directory keeps across a restart, and
//! what it does when its disk fails.
//!
//! A graceful restart is `RunningServer::shutdown` then a new server on the
//! same directory. A crash is simulated without killing the test process: the
//! store's commit thread is held at its gate (`FaultInjector::hold_writes`) and
//! the data directory is copied (`copy_data_dir`, exactly what `kill -9` would
//! leave) at the moment the client receives an acknowledgement. A new server on
//! that copy must then know everything the client was told. The real `kill -9`
//! test is `crates/switchboard/tests/crash.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use switchboard_broker::Metrics;
use switchboard_codec::{
    Ack, ConnAck, Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    RetainHandling, Subscribe, SubscriptionOptions, Will, WillProperties,
};
use switchboard_server::{Durability, RunningServer, Server, ServerOptions};
use switchboard_store::{copy_data_dir, Fault, FaultInjector, FaultPoint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

/// How long a held commit thread gives the connection to (wrongly) answer
/// before the test lets the write go on. Only decides which way the test
/// takes the crash copy; the assertions do not depend on it.
const EARLY_ANSWER_WINDOW: Duration = Duration::from_millis(200);

fn durable_options(dir: &Path, injector: Option<Arc<FaultInjector>>) -> ServerOptions {
    let mut options = options();
    options.durability = Durability::Sync {
        data_dir: dir.to_path_buf(),
    };
    options.store_fault_injector = injector;
    options
}

async fn start_durable(dir: &Path) -> RunningServer {
    start(durable_options(dir, None)).await
}

/// Shuts `server` down gracefully and starts a new one on the same directory.
async fn restart(server: RunningServer, dir: &Path) -> RunningServer {
    server.shutdown().await;
    start_durable(dir).await
}

/// CONNECT with Clean Start `clean_start` and, for v5, Session Expiry 3600 s
/// (3.1.1: clean session 0 makes the session persistent).
fn persistent(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    let mut connect = connect_packet(version, client_id, clean_start);
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(3600);
    }
    connect
}

async fn connect(server: &RunningServer, connect: Connect) -> (RawClient<TcpStream>, ConnAck) {
    let mut client = RawClient::tcp(addr(server), connect.protocol).await;
    let connack = client.connect(connect).await;
    (client, connack)
}

/// Connects a persistent session and asserts CONNACK 0x00 with `session_present`.
async fn connect_persistent(
    server: &RunningServer,
    version: ProtocolVersion,
    client_id: &str,
    session_present: bool,
) -> RawClient<TcpStream> {
    let (client, connack) = connect(server, persistent(version, client_id, false)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{client_id}");
    // [MQTT-3.2.2-2] / [MQTT-3.2.2-3]: Session Present says whether the session came back.
    assert_eq!(connack.session_present, session_present, "{client_id}");
    client
}

/// DISCONNECT 0x00 and wait for the server to close; the broker has handled it then.
async fn disconnect<S: AsyncRead + AsyncWrite + Unpin>(mut client: RawClient<S>) {
    client.send(Packet::Disconnect(Disconnect::default())).await;
    assert_eq!(client.recv().await, None);
}

fn message(topic: &str, qos: QoS, packet_id: u16, payload: &str) -> Publish {
    Publish {
        qos,
        topic: topic.to_string(),
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        payload: Bytes::from(payload.to_string()),
        ..Publish::default()
    }
}

/// Publishes at QoS 1 and returns the PUBACK.
async fn publish_qos1<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    publish: Publish,
) -> Ack {
    let packet_id = publish.packet_id.unwrap();
    client.send(publish).await;
    let ack = client.expect_puback().await;
    assert_eq!(ack.packet_id, packet_id);
    ack
}

/// Publishes at QoS 2, completes the flow and asserts it succeeded.
async fn publish_qos2<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    publish: Publish,
) {
    let packet_id = publish.packet_id.unwrap();
    client.send(publish).await;
    let rec = client.expect_pubrec().await;
    assert_eq!(rec.packet_id, packet_id);
    assert!(rec.reason_code.0 < 0x80, "PUBREC {}", rec.reason_code);
    client.send(Packet::PubRel(Ack::new(packet_id))).await;
    let comp = client.expect_pubcomp().await;
    assert_eq!(comp.packet_id, packet_id);
    assert_eq!(comp.reason_code, ReasonCode::SUCCESS);
}

/// Receives until `count` PUBLISH packets arrived, acknowledging like a
/// well-behaved client (PUBACK; PUBREC, and PUBCOMP for each PUBREL).
async fn receive_acking<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    count: usize,
) -> Vec<Publish> {
    let mut received = Vec::new();
    while received.len() < count {
        match client.expect().await {
            Packet::Publish(publish) => {
                let packet_id = publish.packet_id.unwrap_or(0);
                match publish.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => client.send(Packet::PubAck(Ack::new(packet_id))).await,
                    QoS::ExactlyOnce => client.send(Packet::PubRec(Ack::new(packet_id))).await,
                }
                received.push(publish);
            }
            Packet::PubRel(release) => {
                client
                    .send(Packet::PubComp(Ack::new(release.packet_id)))
                    .await;
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    received
}

/// Publishes a QoS 0 marker to a topic the client itself subscribes to and
/// asserts it is the next message: a session's queue is FIFO, so anything else
/// still due would come first.
async fn expect_only_marker<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    topic: &str,
) {
    client
        .send(message(topic, QoS::AtMostOnce, 0, "marker"))
        .await;
    let next = receive_acking(client, 1).await.remove(0);
    assert_eq!(
        (next.topic.as_str(), &next.payload[..]),
        (topic, &b"marker"[..]),
        "expected nothing but the marker, got {next:?}"
    );
}

fn payloads(messages: &[Publish]) -> Vec<&str> {
    messages
        .iter()
        .map(|publish| std::str::from_utf8(&publish.payload).unwrap())
        .collect()
}

// ----- graceful restart ---------------------------------------------------

#[tokio::test]
async fn a_restart_keeps_sessions_queued_messages_subscriptions_and_retained_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;

    let mut keeper = connect_persistent(&server, V5, "keeper", false).await;
    keeper
        .send(Subscribe {
            packet_id: 1,
            subscription_identifier: Some(9),
            filters: vec![(
                "keep/q/#".to_string(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            )],
            ..Subscribe::default()
        })
        .await;
    let suback = keeper.expect_suback().await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_2]);
    keeper
        .subscribe_granted(2, "keep/one", QoS::AtLeastOnce)
        .await;
    disconnect(keeper).await;

    let mut publisher = connected_tcp(&server, V5, "keep-publisher").await;
    let ack = publish_qos1(
        &mut publisher,
        message("keep/q/a", QoS::AtLeastOnce, 1, "one"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    publish_qos2(
        &mut publisher,
        message("keep/q/b", QoS::ExactlyOnce, 2, "two"),
    )
    .await;
    publish_qos1(
        &mut publisher,
        message("keep/one", QoS::AtLeastOnce, 3, "three"),
    )
    .await;
    let mut retained = message("keep/retained", QoS::AtLeastOnce, 4, "kept");
    retained.retain = true;
    publish_qos1(&mut publisher, retained).await;
    let mut retained_to_keeper = message("keep/q/r", QoS::AtLeastOnce, 5, "as published");
    retained_to_keeper.retain = true;
    publish_qos1(&mut publisher, retained_to_keeper).await;
    drop(publisher);

    let server = restart(server, dir.path()).await;

    let mut keeper = connect_persistent(&server, V5, "keeper", true).await;
    let received = receive_acking(&mut keeper, 4).await;
    assert_eq!(payloads(&received), ["one", "two", "three", "as published"]);
    let summary: Vec<(&str, QoS, bool, &[u32])> = received
        .iter()
        .map(|publish| {
            (
                publish.topic.as_str(),
                publish.qos,
                publish.retain,
                &publish.properties.subscription_identifiers[..],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("keep/q/a", QoS::AtLeastOnce, false, &[9][..]),
            // The granted QoS 2 survived.
            ("keep/q/b", QoS::ExactlyOnce, false, &[9][..]),
            ("keep/one", QoS::AtLeastOnce, false, &[][..]),
            // [MQTT-3.3.1-13]: Retain As Published survived.
            ("keep/q/r", QoS::AtLeastOnce, true, &[9][..]),
        ]
    );
    // [MQTT-3.8.3-3]: No Local survived: the keeper's own message on keep/q/# does
    // not come back, the marker on keep/one does.
    keeper
        .send(message("keep/q/own", QoS::AtMostOnce, 0, "own"))
        .await;
    expect_only_marker(&mut keeper, "keep/one").await;
    // The subscription exists: subscribing again with Retain Handling 1 sends no
    // retained message ([MQTT-3.3.1-10] of v5, "send if new").
    keeper
        .send(Subscribe {
            packet_id: 3,
            subscription_identifier: Some(9),
            filters: vec![(
                "keep/q/#".to_string(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            )],
            ..Subscribe::default()
        })
        .await;
    assert_eq!(
        keeper.expect_suback().await.reason_codes,
        vec![ReasonCode::GRANTED_QOS_2]
    );
    expect_only_marker(&mut keeper, "keep/one").await;

    // Retained messages came back.
    let mut reader = connected_tcp(&server, V5, "retained-reader").await;
    reader
        .subscribe_granted(1, "keep/retained", QoS::AtLeastOnce)
        .await;
    let retained = reader.expect_publish().await;
    assert_eq!(&retained.payload[..], b"kept");
    // [MQTT-3.3.1-9]: sent because of a new subscription: RETAIN set.
    assert!(retained.retain);

    // What the keeper acknowledged after the restart is not sent again after another.
    drop(keeper);
    drop(reader);
    let server = restart(server, dir.path()).await;
    let mut keeper = connect_persistent(&server, V5, "keeper", true).await;
    expect_only_marker(&mut keeper, "keep/one").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_pending_delayed_will_survives_a_restart_and_is_sent_after_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;

    let mut connect_with_will = persistent(V5, "testament", false);
    connect_with_will.will = Some(Will {
        topic: "will/testament".to_string(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(60),
            ..WillProperties::default()
        },
    });
    let (client, connack) = connect(&server, connect_with_will).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    // The network connection is lost: the will is due in 60 s.
    drop(client);
    wait_until(|| session_connected(&server, "testament") == Some(false)).await;

    let server = restart(server, dir.path()).await;
    let mut watcher = connected_tcp(&server, V5, "watcher").await;
    watcher
        .subscribe_granted(1, "will/testament", QoS::AtLeastOnce)
        .await;
    watcher
        .subscribe_granted(2, "will/marker", QoS::AtMostOnce)
        .await;

    // Not before its delay ([MQTT-3.1.3-9]).
    server
        .broker()
        .tick(Instant::now() + Duration::from_secs(30));
    expect_only_marker(&mut watcher, "will/marker").await;

    server
        .broker()
        .tick(Instant::now() + Duration::from_secs(61));
    let will = watcher.expect_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("will/testament", &b"gone"[..])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_will_of_a_client_connected_at_shutdown_survives_the_restart() {
    // recover.rs: a session connected when the broker stopped lost its connection
    // then; after the restart its will is due after its delay, as after a crash.
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;
    let mut connect_with_will = persistent(V5, "connected-testament", false);
    connect_with_will.will = Some(Will {
        topic: "will/connected".to_string(),
        payload: Bytes::from_static(b"stopped"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(60),
            ..WillProperties::default()
        },
    });
    let (client, connack) = connect(&server, connect_with_will).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);

    // Still connected: the shutdown closes it (0x8B) and publishes no will.
    let server = restart(server, dir.path()).await;
    drop(client);
    let mut watcher = connected_tcp(&server, V5, "watcher").await;
    watcher
        .subscribe_granted(1, "will/connected", QoS::AtLeastOnce)
        .await;
    watcher
        .subscribe_granted(2, "will/marker", QoS::AtMostOnce)
        .await;
    // Not before its delay, counted from the restart ([MQTT-3.1.3-9]).
    server
        .broker()
        .tick(Instant::now() + Duration::from_secs(30));
    expect_only_marker(&mut watcher, "will/marker").await;
    // A clean-start reconnect ends the session, which sends its delayed will
    // ([MQTT-3.1.3-9]: the will is sent when the delay passes or the session ends).
    let (client, connack) = connect(&server, persistent(V5, "connected-testament", true)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    let will = watcher.expect_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("will/connected", &b"stopped"[..])
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_deliveries_resume_after_a_restart() {
    for version in [V4, V5] {
        let dir = tempfile::tempdir().unwrap();
        let server = start_durable(dir.path()).await;
        let mut subscriber = connect_persistent(&server, version, "resumer", false).await;
        subscriber
            .subscribe_granted(1, "flight/#", QoS::ExactlyOnce)
            .await;
        let mut publisher = connected_tcp(&server, V5, "flight-publisher").await;
        publish_qos1(
            &mut publisher,
            message("flight/one", QoS::AtLeastOnce, 1, "one"),
        )
        .await;
        publish_qos2(
            &mut publisher,
            message("flight/two", QoS::ExactlyOnce, 2, "two"),
        )
        .await;

        // QoS 1: received, never acknowledged.
        let first = subscriber.expect_publish().await;
        assert_eq!(
            (&first.payload[..], first.qos),
            (&b"one"[..], QoS::AtLeastOnce)
        );
        // QoS 2: PUBREC sent, PUBREL received, PUBCOMP never sent.
        let second = subscriber.expect_publish().await;
        assert_eq!(
            (&second.payload[..], second.qos),
            (&b"two"[..], QoS::ExactlyOnce)
        );
        let second_id = second.packet_id.unwrap();
        subscriber.send(Packet::PubRec(Ack::new(second_id))).await;
        assert_eq!(subscriber.expect_pubrel().await.packet_id, second_id);

        drop(publisher);
        let server = restart(server, dir.path()).await;
        drop(subscriber);
        let mut subscriber = connect_persistent(&server, version, "resumer", true).await;
        // [MQTT-4.4.0-1]: the unacknowledged PUBLISH again, DUP=1, same packet id.
        let again = subscriber.expect_publish().await;
        assert_eq!(&again.payload[..], b"one", "{version:?}");
        assert!(again.dup, "{version:?}: DUP must be set on the resend");
        assert_eq!(again.packet_id, first.packet_id, "{version:?}");
        // [MQTT-4.3.3-6]: after PUBREL the PUBLISH is never sent again; PUBREL is.
        assert_eq!(
            subscriber.expect_pubrel().await.packet_id,
            second_id,
            "{version:?}"
        );
        subscriber
            .send(Packet::PubAck(Ack::new(again.packet_id.unwrap())))
            .await;
        subscriber.send(Packet::PubComp(Ack::new(second_id))).await;
        expect_only_marker(&mut subscriber, "flight/marker").await;

        // Both flows ended; another restart sends neither again.
        let server = restart(server, dir.path()).await;
        drop(subscriber);
        let mut subscriber = connect_persistent(&server, version, "resumer", true).await;
        expect_only_marker(&mut subscriber, "flight/marker").await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn an_inbound_qos2_message_is_routed_once_across_a_restart() {
    for version in [V4, V5] {
        let dir = tempfile::tempdir().unwrap();
        let server = start_durable(dir.path()).await;
        let mut subscriber = connect_persistent(&server, V5, "once-subscriber", false).await;
        subscriber
            .subscribe_granted(1, "once/#", QoS::ExactlyOnce)
            .await;
        disconnect(subscriber).await;

        let mut publisher = connect_persistent(&server, version, "once-publisher", false).await;
        publisher
            .send(message("once/x", QoS::ExactlyOnce, 7, "x"))
            .await;
        let rec = publisher.expect_pubrec().await;
        assert_eq!((rec.packet_id, rec.reason_code), (7, ReasonCode::SUCCESS));

        let server = restart(server, dir.path()).await;
        drop(publisher);
        let mut publisher = connect_persistent(&server, version, "once-publisher", true).await;
        // The client did not see PUBCOMP: it sends the PUBLISH again with DUP
        // ([MQTT-4.4.0-1]). The server remembered the packet id: it acknowledges
        // without routing again ([MQTT-4.3.3-10]).
        let mut resend = message("once/x", QoS::ExactlyOnce, 7, "x");
        resend.dup = true;
        publisher.send(resend).await;
        let rec = publisher.expect_pubrec().await;
        assert_eq!((rec.packet_id, rec.reason_code), (7, ReasonCode::SUCCESS));
        publisher.send(Packet::PubRel(Ack::new(7))).await;
        let comp = publisher.expect_pubcomp().await;
        assert_eq!((comp.packet_id, comp.reason_code), (7, ReasonCode::SUCCESS));

        // The released packet id is free after a further restart: the same id now
        // carries a new message, which is routed ([MQTT-4.3.3-12]).
        let server = restart(server, dir.path()).await;
        drop(publisher);
        let mut publisher = connect_persistent(&server, version, "once-publisher", true).await;
        publish_qos2(&mut publisher, message("once/y", QoS::ExactlyOnce, 7, "y")).await;

        let mut subscriber = connect_persistent(&server, V5, "once-subscriber", true).await;
        let received = receive_acking(&mut subscriber, 2).await;
        assert_eq!(payloads(&received), ["x", "y"], "{version:?}");
        expect_only_marker(&mut subscriber, "once/marker").await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_retained_message_dropped_on_subscribe_does_not_come_back_after_a_restart() {
    // Retained messages sent on SUBSCRIBE to a persistent session are staged
    // (`Enqueue`) with the SUBACK's batch. One the full queue drops must be
    // taken back after that Enqueue in the log, not before it, or a restart
    // would queue it again although the session never had it.
    let dir = tempfile::tempdir().unwrap();
    let mut options = durable_options(dir.path(), None);
    options.broker.max_queued_messages = 1;
    let server = start(options.clone()).await;
    let mut publisher = connected_tcp(&server, V5, "retainer").await;
    for (packet_id, topic) in [(1, "r/1"), (2, "r/2")] {
        let mut retained = message(topic, QoS::AtLeastOnce, packet_id, topic);
        retained.retain = true;
        publish_qos1(&mut publisher, retained).await;
    }
    drop(publisher);
    let mut subscriber = connect_persistent(&server, V5, "late", false).await;
    subscriber
        .subscribe_granted(1, "r/#", QoS::AtLeastOnce)
        .await;
    // One of the two (in the retained store's order); the other was dropped.
    receive_acking(&mut subscriber, 1).await;
    expect_only_marker(&mut subscriber, "r/marker").await;
    disconnect(subscriber).await;

    server.shutdown().await;
    let server = start(options).await;
    let mut subscriber = connect_persistent(&server, V5, "late", true).await;
    expect_only_marker(&mut subscriber, "r/marker").await;
    server.shutdown().await;
}

// ----- crash: the copy a kill -9 would leave, taken when the client is answered ---

/// With the commit thread held (after `hold_writes` and an action that makes the
/// connection append), returns the client's next packet, and copies `dir` to
/// `crash_dir` at the moment the client has that packet: what the client has been
/// told is then exactly what a crash at that instant leaves on disk. A packet
/// that comes while the write is still held is copied before the write; otherwise
/// the write is let go and the copy is taken when the packet arrives.
async fn next_packet_then_crash_copy<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    injector: &Arc<FaultInjector>,
    dir: &Path,
    crash_dir: &Path,
) -> Packet {
    let waiting = injector.clone();
    tokio::time::timeout(
        GUARD,
        tokio::task::spawn_blocking(move || waiting.wait_until_held()),
    )
    .await
    .expect("nothing reached the commit thread")
    .unwrap();
    let packet = match client.recv_within(EARLY_ANSWER_WINDOW).await {
        Some(Some(packet)) => {
            copy_data_dir(dir, crash_dir).unwrap();
            injector.release_writes();
            packet
        }
        Some(None) => panic!("connection closed"),
        None => {
            injector.release_writes();
            let packet = client.expect().await;
            copy_data_dir(dir, crash_dir).unwrap();
            packet
        }
    };
    packet
}

#[tokio::test]
async fn a_publish_is_on_disk_before_its_puback_and_pubrec() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let dir = tempfile::tempdir().unwrap();
        let crash_dir = tempfile::tempdir().unwrap();
        let injector = Arc::new(FaultInjector::new());
        let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
        let mut subscriber = connect_persistent(&server, V5, "offline", false).await;
        subscriber
            .subscribe_granted(1, "ack/#", QoS::ExactlyOnce)
            .await;
        disconnect(subscriber).await;
        let mut publisher = connected_tcp(&server, V5, "ack-publisher").await;

        injector.hold_writes();
        publisher
            .send(message("ack/m", qos, 1, "acknowledged"))
            .await;
        let answer =
            next_packet_then_crash_copy(&mut publisher, &injector, dir.path(), crash_dir.path())
                .await;
        match (qos, answer) {
            (QoS::AtLeastOnce, Packet::PubAck(ack)) | (QoS::ExactlyOnce, Packet::PubRec(ack)) => {
                assert_eq!((ack.packet_id, ack.reason_code), (1, ReasonCode::SUCCESS));
            }
            (_, other) => panic!("expected the acknowledgement, got {other:?}"),
        }
        drop(publisher);
        server.shutdown().await;

        // The broker restarted from what the crash left has the message.
        let crashed = start_durable(crash_dir.path()).await;
        let mut subscriber = connect_persistent(&crashed, V5, "offline", true).await;
        let received = receive_acking(&mut subscriber, 1).await;
        assert_eq!(payloads(&received), ["acknowledged"], "{qos:?}");
        crashed.shutdown().await;
    }
}

#[tokio::test]
async fn a_connection_reads_on_while_its_batch_is_written_and_answers_in_order() {
    // A pass whose batch is being written does not stop the connection: it
    // reads and stages what follows (so one fsync can carry several of its
    // passes), but holds every later answer and delivery, even of a message
    // that need not be kept, until the earlier batch is durable
    // ([MQTT-4.6.0-2]: PUBACKs in the order the PUBLISHes came).
    let dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
    let mut keeper = connect_persistent(&server, V5, "keeper", false).await;
    keeper
        .subscribe_granted(1, "keep/#", QoS::AtLeastOnce)
        .await;
    disconnect(keeper).await;
    let mut watcher = connected_tcp(&server, V5, "watcher").await;
    watcher.subscribe_granted(1, "#", QoS::AtLeastOnce).await;
    let mut publisher = connected_tcp(&server, V5, "pipeliner").await;
    let received = || Metrics::get(&server.broker().metrics().messages_received);
    let before = received();

    injector.hold_writes();
    publisher
        .send(message("keep/a", QoS::AtLeastOnce, 1, "a"))
        .await;
    let waiting = injector.clone();
    tokio::time::timeout(
        GUARD,
        tokio::task::spawn_blocking(move || waiting.wait_until_held()),
    )
    .await
    .expect("nothing reached the commit thread")
    .unwrap();
    publisher
        .send(message("free/n", QoS::AtLeastOnce, 2, "n"))
        .await;
    publisher
        .send(message("keep/b", QoS::AtLeastOnce, 3, "b"))
        .await;
    // Read and handled while the first batch is still held...
    wait_until(|| received() == before + 3).await;
    // ...but nothing overtakes the held PUBACK and delivery.
    assert_eq!(publisher.recv_within(EARLY_ANSWER_WINDOW).await, None);
    assert_eq!(watcher.recv_within(Duration::ZERO).await, None);
    injector.release_writes();
    for packet_id in [1, 2, 3] {
        let ack = publisher.expect_puback().await;
        assert_eq!(ack.packet_id, packet_id);
        assert!(ack.reason_code.0 < 0x80, "PUBACK {}", ack.reason_code);
    }
    let delivered = receive_acking(&mut watcher, 3).await;
    assert_eq!(payloads(&delivered), ["a", "n", "b"]);
    let mut keeper = connect_persistent(&server, V5, "keeper", true).await;
    let kept = receive_acking(&mut keeper, 2).await;
    assert_eq!(payloads(&kept), ["a", "b"]);
    server.shutdown().await;
}

#[tokio::test]
async fn pubrel_is_sent_only_once_its_release_is_on_disk() {
    // [MQTT-4.3.3-6] (3.1.1: [MQTT-4.3.3-1]): once PUBREL is sent the PUBLISH must
    // never be sent again, so after a crash the server must resume with PUBREL.
    // A client that got PUBREL, sent PUBCOMP and forgot the packet id would take a
    // resent PUBLISH for a new message and deliver it twice.
    let dir = tempfile::tempdir().unwrap();
    let crash_dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
    let mut subscriber = connect_persistent(&server, V5, "releaser", false).await;
    subscriber
        .subscribe_granted(1, "release/#", QoS::ExactlyOnce)
        .await;
    let mut publisher = connected_tcp(&server, V5, "release-publisher").await;
    publish_qos2(
        &mut publisher,
        message("release/m", QoS::ExactlyOnce, 1, "once"),
    )
    .await;
    let delivered = subscriber.expect_publish().await;
    let packet_id = delivered.packet_id.unwrap();

    injector.hold_writes();
    subscriber.send(Packet::PubRec(Ack::new(packet_id))).await;
    let answer =
        next_packet_then_crash_copy(&mut subscriber, &injector, dir.path(), crash_dir.path()).await;
    assert_eq!(answer, Packet::PubRel(Ack::new(packet_id)));
    drop(subscriber);
    drop(publisher);
    server.shutdown().await;

    let crashed = start_durable(crash_dir.path()).await;
    let mut subscriber = connect_persistent(&crashed, V5, "releaser", true).await;
    match subscriber.expect().await {
        Packet::PubRel(release) => assert_eq!(release.packet_id, packet_id),
        other => panic!("expected PUBREL after the crash, got {other:?}"),
    }
    subscriber.send(Packet::PubComp(Ack::new(packet_id))).await;
    expect_only_marker(&mut subscriber, "release/marker").await;
    crashed.shutdown().await;
}

// ----- failing disk -------------------------------------------------------

#[tokio::test]
async fn a_full_disk_refuses_what_must_be_kept_and_other_traffic_continues() {
    let dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
    let metrics_refusals = || Metrics::get(&server.broker().metrics().store_refusals);

    // A persistent subscriber (connected) and a non-persistent one.
    let mut keeper = connect_persistent(&server, V5, "disk-keeper", false).await;
    keeper
        .subscribe_granted(1, "disk/kept", QoS::AtLeastOnce)
        .await;
    let mut live = connected_tcp(&server, V5, "disk-live").await;
    live.subscribe_granted(1, "disk/live", QoS::AtLeastOnce)
        .await;
    let mut publisher = connected_tcp(&server, V5, "disk-publisher").await;

    injector.set(
        FaultPoint::SegmentWrite,
        Fault::new(std::io::ErrorKind::StorageFull),
    );

    // A message that must be kept is refused: 0x97 Quota exceeded.
    let ack = publish_qos1(
        &mut publisher,
        message("disk/kept", QoS::AtLeastOnce, 1, "refused"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::QUOTA_EXCEEDED);
    publisher
        .send(message("disk/kept", QoS::ExactlyOnce, 2, "refused too"))
        .await;
    let rec = publisher.expect_pubrec().await;
    assert_eq!(
        (rec.packet_id, rec.reason_code),
        (2, ReasonCode::QUOTA_EXCEEDED)
    );
    let mut retained = message("disk/retained", QoS::AtLeastOnce, 3, "not kept");
    retained.retain = true;
    let ack = publish_qos1(&mut publisher, retained).await;
    assert_eq!(ack.reason_code, ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(server.broker().retained_count(), 0);
    assert!(metrics_refusals() >= 3);
    // A new persistent session cannot be recorded either.
    let (_refused, connack) = connect(&server, persistent(V5, "disk-newcomer", false)).await;
    assert_eq!(connack.reason_code, ReasonCode::QUOTA_EXCEEDED);

    // What needs no disk still flows, on the same connection.
    publisher
        .send(message("disk/live", QoS::AtMostOnce, 0, "qos0"))
        .await;
    let ack = publish_qos1(
        &mut publisher,
        message("disk/live", QoS::AtLeastOnce, 4, "qos1"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(
        payloads(&receive_acking(&mut live, 2).await),
        ["qos0", "qos1"]
    );

    // The disk is back: accepted and delivered; the refused ones never are.
    injector.clear_all();
    let ack = publish_qos1(
        &mut publisher,
        message("disk/kept", QoS::AtLeastOnce, 5, "accepted"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let received = receive_acking(&mut keeper, 1).await;
    assert_eq!(payloads(&received), ["accepted"]);
    publish_qos2(
        &mut publisher,
        message("disk/kept", QoS::ExactlyOnce, 2, "accepted too"),
    )
    .await;
    assert_eq!(
        payloads(&receive_acking(&mut keeper, 1).await),
        ["accepted too"]
    );
    expect_only_marker(&mut keeper, "disk/kept").await;
    assert!(injector.failures(FaultPoint::SegmentWrite) >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_outbound_qos2_send_is_taken_back_and_not_delivered_twice_after_a_crash() {
    // The PUBLISH of a QoS 2 delivery waits for its `OutboundSent`. When that
    // write fails the PUBLISH is never sent and the connection closes; the
    // session must treat it as never sent (back in the queue, packet id
    // free), as the log does. Otherwise it would resend it as an in-flight
    // flow the log does not know, the release could not dequeue it, and a
    // crash after PUBREL would deliver it twice.
    let dir = tempfile::tempdir().unwrap();
    let crash_dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
    let narrow = |clean_start: bool| {
        let mut connect = persistent(V5, "narrow", clean_start);
        connect.properties.receive_maximum = Some(1);
        connect
    };
    let (mut subscriber, _) = connect(&server, narrow(true)).await;
    subscriber
        .subscribe_granted(1, "q/#", QoS::ExactlyOnce)
        .await;
    let mut publisher = connected_tcp(&server, V5, "q-publisher").await;
    publish_qos1(&mut publisher, message("q/1", QoS::AtLeastOnce, 1, "first")).await;
    publish_qos2(
        &mut publisher,
        message("q/2", QoS::ExactlyOnce, 2, "second"),
    )
    .await;
    // Receive Maximum 1: "first" is in flight, "second" waits in the queue.
    let first = subscriber.expect_publish().await;
    assert_eq!(&first.payload[..], b"first");

    // The PUBACK frees the window; the write of the QoS 2 send fails.
    injector.set(
        FaultPoint::SegmentWrite,
        Fault::new(std::io::ErrorKind::StorageFull),
    );
    subscriber
        .send(Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .await;
    loop {
        match subscriber.recv().await {
            None => break,
            Some(Packet::Disconnect(_)) => {}
            Some(other) => panic!("nothing may be sent for a refused write, got {other:?}"),
        }
    }
    injector.clear_all();

    // The next connection sends it as new, and its release is durable.
    let (mut subscriber, connack) = connect(&server, narrow(false)).await;
    assert!(connack.session_present);
    let second = subscriber.expect_publish().await;
    assert_eq!(&second.payload[..], b"second");
    assert!(!second.dup, "a send that never happened is not a resend");
    let packet_id = second.packet_id.unwrap();
    subscriber.send(Packet::PubRec(Ack::new(packet_id))).await;
    assert_eq!(
        subscriber.expect().await,
        Packet::PubRel(Ack::new(packet_id))
    );
    // A crash now: what a restart finds is the release, not the message.
    copy_data_dir(dir.path(), crash_dir.path()).unwrap();
    drop(subscriber);
    drop(publisher);
    server.shutdown().await;

    let crashed = start_durable(crash_dir.path()).await;
    let (mut subscriber, connack) = connect(&crashed, narrow(false)).await;
    assert!(connack.session_present);
    loop {
        match subscriber.expect().await {
            // The PUBACK's bookkeeping was in a failed write (kept for the next
            // checkpoint, which the crash came before): QoS 1 may come again.
            Packet::Publish(again) if &again.payload[..] == b"first" => {
                subscriber
                    .send(Packet::PubAck(Ack::new(again.packet_id.unwrap())))
                    .await;
            }
            Packet::PubRel(release) => {
                assert_eq!(release.packet_id, packet_id);
                break;
            }
            other => panic!("expected PUBREL after the crash, got {other:?}"),
        }
    }
    subscriber.send(Packet::PubComp(Ack::new(packet_id))).await;
    expect_only_marker(&mut subscriber, "q/marker").await;
    crashed.shutdown().await;
}

#[tokio::test]
async fn a_full_disk_closes_a_3_1_1_publisher_that_cannot_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
    let mut keeper = connect_persistent(&server, V5, "v4-keeper", false).await;
    keeper
        .subscribe_granted(1, "disk4/kept", QoS::AtLeastOnce)
        .await;
    let mut publisher = connected_tcp(&server, V4, "v4-publisher").await;

    injector.set(
        FaultPoint::SegmentWrite,
        Fault::new(std::io::ErrorKind::StorageFull),
    );
    publisher
        .send(message("disk4/kept", QoS::AtLeastOnce, 1, "refused"))
        .await;
    // 3.1.1 has no negative PUBACK: the connection closes without one, and the
    // client will resend on its next connection ([MQTT-4.4.0-1]).
    assert_eq!(publisher.closed().await, None);

    injector.clear_all();
    let mut publisher = connected_tcp(&server, V4, "v4-publisher").await;
    let ack = publish_qos1(
        &mut publisher,
        message("disk4/kept", QoS::AtLeastOnce, 1, "resent"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(payloads(&receive_acking(&mut keeper, 1).await), ["resent"]);
    expect_only_marker(&mut keeper, "disk4/kept").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_3_1_1_qos2_message_is_routed_when_resent() {
    // 3.1.1 cannot refuse with a PUBREC reason code: the connection closes and the
    // client resends the PUBLISH (DUP) on its next connection. The packet id must
    // not be remembered, or the resend would be taken for a duplicate of a message
    // that was routed, acknowledged and lost.
    let dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir.path(), Some(injector.clone()))).await;
    let mut keeper = connect_persistent(&server, V5, "v4q2-keeper", false).await;
    keeper
        .subscribe_granted(1, "v4q2/kept", QoS::ExactlyOnce)
        .await;
    let mut publisher = connect_persistent(&server, V4, "v4q2-publisher", false).await;

    injector.set(
        FaultPoint::SegmentWrite,
        Fault::new(std::io::ErrorKind::StorageFull),
    );
    publisher
        .send(message("v4q2/kept", QoS::ExactlyOnce, 5, "exactly once"))
        .await;
    assert_eq!(publisher.closed().await, None);
    injector.clear_all();

    let mut publisher = connect_persistent(&server, V4, "v4q2-publisher", true).await;
    let mut resend = message("v4q2/kept", QoS::ExactlyOnce, 5, "exactly once");
    resend.dup = true;
    publish_qos2(&mut publisher, resend).await;
    assert_eq!(
        payloads(&receive_acking(&mut keeper, 1).await),
        ["exactly once"]
    );
    expect_only_marker(&mut keeper, "v4q2/kept").await;
    server.shutdown().await;
}

/// Sets up a persistent subscriber to `topic` (offline) and a persistent v5
/// publisher, has the disk refuse what the publisher sends, then lets the disk
/// work again and writes the checkpoint the failure made due (as the server's
/// checkpoint loop would), and restarts.
async fn refuse_then_checkpoint_and_restart(dir: &Path, refused: Vec<Publish>) -> RunningServer {
    let injector = Arc::new(FaultInjector::new());
    let server = start(durable_options(dir, Some(injector.clone()))).await;
    let mut keeper = connect_persistent(&server, V5, "phantom-keeper", false).await;
    keeper
        .subscribe_granted(1, "phantom/#", QoS::ExactlyOnce)
        .await;
    disconnect(keeper).await;
    let mut publisher = connect_persistent(&server, V5, "phantom-publisher", false).await;
    injector.set(
        FaultPoint::SegmentWrite,
        Fault::new(std::io::ErrorKind::StorageFull),
    );
    for publish in refused {
        let packet_id = publish.packet_id.unwrap();
        let qos = publish.qos;
        publisher.send(publish).await;
        let ack = match (qos, publisher.expect().await) {
            (QoS::AtLeastOnce, Packet::PubAck(ack)) | (QoS::ExactlyOnce, Packet::PubRec(ack)) => {
                ack
            }
            (_, other) => panic!("expected an acknowledgement, got {other:?}"),
        };
        assert_eq!(
            (ack.packet_id, ack.reason_code),
            (packet_id, ReasonCode::QUOTA_EXCEEDED)
        );
    }
    injector.clear_all();
    let store = server.broker().store().cloned().unwrap();
    let report = tokio::task::spawn_blocking(move || store.maybe_checkpoint())
        .await
        .unwrap()
        .unwrap();
    assert!(
        report.is_some(),
        "a failed write must make a checkpoint due"
    );
    drop(publisher);
    restart(server, dir).await
}

#[tokio::test]
async fn refused_messages_are_not_queued_or_remembered_after_a_checkpoint_and_restart() {
    // The store's state (what a checkpoint writes) must not keep what the broker
    // refused: the subscriber would get a message its publisher was told failed,
    // and a refused QoS 2 packet id would make the publisher's next message with
    // that id look like a duplicate after the restart, and be lost.
    let dir = tempfile::tempdir().unwrap();
    let server = refuse_then_checkpoint_and_restart(
        dir.path(),
        vec![
            message("phantom/kept", QoS::AtLeastOnce, 1, "refused"),
            message("phantom/kept", QoS::ExactlyOnce, 2, "refused qos2"),
        ],
    )
    .await;
    let mut publisher = connect_persistent(&server, V5, "phantom-publisher", true).await;
    // Packet id 2 is free: a new message with it is routed ([MQTT-4.3.3-9]).
    publish_qos2(
        &mut publisher,
        message("phantom/kept", QoS::ExactlyOnce, 2, "new"),
    )
    .await;
    let mut keeper = connect_persistent(&server, V5, "phantom-keeper", true).await;
    assert_eq!(payloads(&receive_acking(&mut keeper, 1).await), ["new"]);
    expect_only_marker(&mut keeper, "phantom/kept").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_retained_message_does_not_come_back_after_a_checkpoint_and_restart() {
    // The checkpoint writes the store's state, which only ever takes records
    // whose write succeeded: the refused `Retain` is not in it.
    let dir = tempfile::tempdir().unwrap();
    let mut retained = message("phantom/retained", QoS::AtLeastOnce, 3, "refused");
    retained.retain = true;
    let server = refuse_then_checkpoint_and_restart(dir.path(), vec![retained]).await;
    assert_eq!(server.broker().retained_count(), 0);
    server.shutdown().await;
}

// ----- the data-directory lock ---------------------------------------------

#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_fails_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_durable(dir.path()).await;
    let error = match Server::bind(durable_options(dir.path(), None)).await {
        Ok(_) => panic!("a second broker opened a locked data directory"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("locked"), "{error}");
    assert!(
        error.contains(&dir.path().join("LOCK").display().to_string()),
        "{error}"
    );
    // The first one is unaffected.
    let client = connected_tcp(&first, V5, "still-here").await;
    drop(client);
    first.shutdown().await;
    // Once it stopped, the directory can be opened again.
    let again = start_durable(dir.path()).await;
    again.shutdown().await;
}
