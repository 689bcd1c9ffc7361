//! The broker's limits under pressure: connection floods (global, per
//! listener, per source address), a subscriber that stops reading, the memory
//! budget for queued messages, a full retained store, client rates, and
//! oversized packets and topics. Each limit is counted when hit, and clients
//! within their limits keep working. Assertions are on counts and order, never
//! on real time (rates run on paused time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use support::*;
use switchboard_broker::Metrics;
use switchboard_codec::{
    encode, Ack, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
};
use switchboard_server::{
    Durability, ListenerKind, ListenerOptions, Rate, RateLimits, RunningServer,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn counter(
    server: &RunningServer,
    pick: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    Metrics::get(pick(server.broker().metrics()))
}

/// Asserts that the server closes `stream` without sending a byte.
async fn assert_closed_at_once<S: AsyncRead + Unpin>(mut stream: S) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(GUARD, stream.read(&mut byte))
        .await
        .expect("the server neither closed the connection nor wrote");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected a close, got {read:?}"
    );
}

/// A PUBLISH whose message (topic plus payload) is exactly `size` bytes, the
/// payload starting with `sequence`.
fn sized_publish(
    topic: &str,
    qos: QoS,
    packet_id: Option<u16>,
    sequence: u64,
    size: usize,
) -> Publish {
    let mut payload = sequence.to_be_bytes().to_vec();
    payload.resize(size - topic.len(), b'.');
    Publish {
        qos,
        topic: topic.to_string(),
        packet_id,
        payload: Bytes::from(payload),
        ..Publish::default()
    }
}

fn sequence_of(publish: &Publish) -> u64 {
    u64::from_be_bytes(publish.payload[..8].try_into().unwrap())
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(client: &mut RawClient<S>) {
    client.send(Packet::PingReq).await;
    assert_eq!(client.expect().await, Packet::PingResp);
}

async fn puback_code<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    publish: Publish,
) -> ReasonCode {
    let packet_id = publish.packet_id.unwrap();
    client.send(publish).await;
    let ack = client.expect_puback().await;
    assert_eq!(ack.packet_id, packet_id);
    ack.reason_code
}

// ---------------------------------------------------------------------------
// Connection floods
// ---------------------------------------------------------------------------

// More connections than `max_connections` (global, and a listener's own cap): the
// extras are closed before any byte is read and counted; connected clients carry on.
#[tokio::test]
async fn connections_beyond_the_global_and_listener_limits_are_closed() {
    let mut options = options();
    options.listeners.push(ListenerOptions {
        name: "small".into(),
        kind: ListenerKind::Tcp,
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_connections: 1,
        ..ListenerOptions::default()
    });
    options.max_connections = 3;
    let server = start(options).await;
    let (open, small) = (server.local_addrs()[0], server.local_addrs()[1]);

    let mut on_small = RawClient::tcp(small, V5).await;
    let connack = on_small.connect(connect_packet(V5, "on-small", true)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    // The listener's cap (1) is reached; the global one (3) is not.
    assert_closed_at_once(TcpStream::connect(small).await.unwrap()).await;
    assert_eq!(counter(&server, |m| &m.connections_refused), 1);

    let mut first = connected_tcp(&server, V5, "first").await;
    let mut second = connected_tcp(&server, V5, "second").await;
    // The global cap is reached: every listener refuses.
    assert_closed_at_once(TcpStream::connect(open).await.unwrap()).await;
    assert_closed_at_once(TcpStream::connect(small).await.unwrap()).await;
    assert_eq!(counter(&server, |m| &m.connections_refused), 3);
    assert_eq!(counter(&server, |m| &m.connections_current), 3);

    // The connected clients keep working.
    first
        .subscribe_granted(1, "limits/#", QoS::AtLeastOnce)
        .await;
    let message = publish("limits/a", QoS::AtLeastOnce, Some(1), b"still served");
    assert_eq!(
        puback_code(&mut on_small, message).await,
        ReasonCode::SUCCESS
    );
    let received = first.expect_publish().await;
    assert_eq!(&received.payload[..], b"still served");
    first
        .send(Packet::PubAck(Ack::new(received.packet_id.unwrap())))
        .await;
    ping(&mut second).await;
    server.shutdown().await;
}

// A burst of connections from one address beyond `connections_per_address`: the
// extras are closed at once and counted; other addresses and existing connections
// are unaffected; the address gets its rate back as time passes (paused time, so
// "one second" is exact).
#[tokio::test(start_paused = true)]
async fn a_burst_from_one_address_beyond_its_rate_is_refused() {
    let mut options = options();
    options.rates.connections_per_address = Some(Rate {
        per_second: 1,
        burst: 3,
    });
    let server = start(options).await;
    let from = |last: u8, port: u16| SocketAddr::from(([10, 0, 0, last], port));
    let connect = |peer: SocketAddr, client_id: String| {
        let server = &server;
        async move {
            let mut client = RawClient::new(server.connect_in_memory(peer), V5);
            let connack = client.connect(connect_packet(V5, &client_id, true)).await;
            assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{client_id}");
            client
        }
    };

    let mut burst = Vec::new();
    for n in 0..3 {
        burst.push(connect(from(1, 5000 + n), format!("burst-{n}")).await);
    }
    // The fourth at the same instant: closed before a byte is read.
    assert_closed_at_once(server.connect_in_memory(from(1, 5003))).await;
    assert_eq!(counter(&server, |m| &m.connections_rate_limited), 1);
    // Another address has a budget of its own; the admitted ones work on.
    let mut other = connect(from(2, 5000), "other".into()).await;
    ping(&mut other).await;
    for client in &mut burst {
        ping(client).await;
    }

    // One second later, one more from the first address; not two.
    tokio::time::advance(Duration::from_secs(1)).await;
    let mut later = connect(from(1, 5004), "later".into()).await;
    assert_closed_at_once(server.connect_in_memory(from(1, 5005))).await;
    assert_eq!(counter(&server, |m| &m.connections_rate_limited), 2);
    ping(&mut later).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// A subscriber that stops reading
// ---------------------------------------------------------------------------

/// A v5 client on a socket with a small receive buffer, so that the kernel
/// holds little of what the server sends it.
async fn small_buffer_client(server: &RunningServer, client_id: &str) -> RawClient<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr(server)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut client = RawClient::new(stream, V5);
    let connack = client.connect(connect_packet(V5, client_id, true)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    client
}

// Two subscribers stop reading their sockets (one at QoS 1, which also never
// acknowledges, one at QoS 0) while two others read. The readers get every
// message in order; the stalled sessions' queues never pass their bounds, what
// does not fit is dropped and counted, and the broker's count of queued bytes
// stays within the sum of those bounds. Once the stalled ones read again, each
// gets exactly what was kept, in order.
#[tokio::test]
async fn a_subscriber_that_stops_reading_is_bounded_and_slows_nobody() {
    const MESSAGES: u64 = 3000;
    const BATCH: u64 = 20;
    const SIZE: usize = 2048;
    const MAX_QUEUED: usize = 50;
    const WINDOW: u16 = 10;
    const TOPIC: &str = "feed/data";
    let mut options = options();
    options.broker.max_queued_messages = MAX_QUEUED;
    options.broker.max_queued_bytes = 1024 * 1024;
    options.broker.receive_maximum = WINDOW;
    let server = start(options).await;
    let broker = server.broker();

    let mut stalled_qos1 = small_buffer_client(&server, "stalled-qos1").await;
    stalled_qos1
        .subscribe_granted(1, "feed/#", QoS::AtLeastOnce)
        .await;
    let mut stalled_qos0 = small_buffer_client(&server, "stalled-qos0").await;
    stalled_qos0
        .subscribe_granted(1, "feed/#", QoS::AtMostOnce)
        .await;
    let mut reader_qos1 = connected_tcp(&server, V5, "reader-qos1").await;
    reader_qos1
        .subscribe_granted(1, "feed/#", QoS::AtLeastOnce)
        .await;
    let mut reader_qos0 = connected_tcp(&server, V5, "reader-qos0").await;
    reader_qos0
        .subscribe_granted(1, "feed/#", QoS::AtMostOnce)
        .await;
    let mut publisher = connected_tcp(&server, V5, "publisher").await;
    let queue_bound = MAX_QUEUED * SIZE;

    // In batches small enough for the readers' queues, so that only the stalled
    // subscribers can lose messages.
    for batch in 0..MESSAGES / BATCH {
        let mut bytes = BytesMut::new();
        for index in 0..BATCH {
            let packet_id = u16::try_from(index + 1).unwrap();
            let message = sized_publish(
                TOPIC,
                QoS::AtLeastOnce,
                Some(packet_id),
                batch * BATCH + index,
                SIZE,
            );
            encode(&Packet::Publish(message), V5, &mut bytes).unwrap();
        }
        publisher.send_bytes(&bytes).await;
        for index in 0..BATCH {
            let ack = publisher.expect_puback().await;
            assert_eq!(u64::from(ack.packet_id), index + 1);
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        }
        for index in 0..BATCH {
            let expected = batch * BATCH + index;
            let message = reader_qos1.expect_publish().await;
            assert_eq!(sequence_of(&message), expected);
            reader_qos1
                .send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
                .await;
            assert_eq!(sequence_of(&reader_qos0.expect_publish().await), expected);
        }
        if batch == 0 {
            // The stalled QoS 1 subscriber's window fills with the first messages
            // (it never acknowledges them); from here on its queue is all it has.
            let session = broker.session("stalled-qos1").unwrap();
            wait_until(|| session.counts().inflight == usize::from(WINDOW)).await;
        }
        for client_id in ["stalled-qos1", "stalled-qos0"] {
            let counts = broker.session(client_id).unwrap().counts();
            assert!(counts.queued <= MAX_QUEUED, "{client_id}: {counts:?}");
            assert!(
                counts.queued_bytes <= queue_bound,
                "{client_id}: {counts:?}"
            );
        }
        assert!(
            broker.queued_bytes_total() <= 2 * queue_bound,
            "queued bytes across sessions: {}",
            broker.queued_bytes_total()
        );
    }

    // The QoS 1 subscriber holds its window and a full queue; everything after
    // that was dropped. The QoS 0 one dropped what its socket and queue could
    // not hold.
    let counts = broker.session("stalled-qos1").unwrap().counts();
    assert_eq!(counts.inflight, usize::from(WINDOW));
    assert_eq!(counts.queued, MAX_QUEUED);
    let kept_qos1 = u64::from(WINDOW) + MAX_QUEUED as u64;
    let dropped = counter(&server, |m| &m.dropped_queue_full)
        + counter(&server, |m| &m.dropped_queue_bytes_full);
    let dropped_qos0 = dropped - (MESSAGES - kept_qos1);
    assert!(
        dropped_qos0 > 0,
        "{MESSAGES} messages of {SIZE} bytes should overflow a non-reading QoS 0 subscriber"
    );

    // They read again: each gets exactly what was kept, oldest first.
    for expected in 0..kept_qos1 {
        let message = stalled_qos1.expect_publish().await;
        assert_eq!(sequence_of(&message), expected);
        stalled_qos1
            .send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    let mut last = None;
    for _ in 0..MESSAGES - dropped_qos0 {
        let sequence = sequence_of(&stalled_qos0.expect_publish().await);
        assert!(last.is_none_or(|last| sequence > last), "out of order");
        last = Some(sequence);
    }
    // Nothing more was on its way: a message published now is the next for both.
    let done = publish("feed/done", QoS::AtLeastOnce, Some(1), b"done");
    assert_eq!(puback_code(&mut publisher, done).await, ReasonCode::SUCCESS);
    assert_eq!(stalled_qos1.expect_publish().await.topic, "feed/done");
    assert_eq!(stalled_qos0.expect_publish().await.topic, "feed/done");
    wait_until(|| broker.queued_bytes_total() == 0).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Memory budget for queued messages
// ---------------------------------------------------------------------------

// `max_queued_bytes_total`: offline sessions give way at 3/4 of the budget, QoS 0
// to connected ones at 7/8, QoS 1/2 to connected ones at the whole budget. A v5
// publisher whose QoS 1/2 message a persistent session could not take gets 0x97;
// every refusal is counted; the count returns to 0 once the queues drain.
#[tokio::test]
async fn the_queue_budget_refuses_offline_then_qos0_then_everything() {
    const SIZE: usize = 1000;
    let mut options = options();
    options.broker.max_queued_bytes_total = 8 * SIZE;
    let server = start(options).await;
    let broker = server.broker();
    let budget_refusals = || counter(&server, |m| &m.dropped_memory_budget);
    let quota_exceeded = || counter(&server, |m| &m.publish_quota_exceeded);

    // A persistent session, offline, subscribed at QoS 1.
    let mut offline = raw_in_memory(&server, V5);
    let mut connect = connect_packet(V5, "offline", true);
    connect.properties.session_expiry_interval = Some(3600);
    assert_eq!(
        offline.connect(connect.clone()).await.reason_code,
        ReasonCode::SUCCESS
    );
    offline
        .subscribe_granted(1, "budget/#", QoS::AtLeastOnce)
        .await;
    offline
        .send(Packet::Disconnect(Disconnect::default()))
        .await;
    assert_eq!(offline.recv().await, None);
    wait_until(|| session_connected(&server, "offline") == Some(false)).await;

    let mut publisher = connected_in_memory(&server, V5, "publisher").await;
    for packet_id in 1..=6 {
        let message = sized_publish("budget/t", QoS::AtLeastOnce, Some(packet_id), 0, SIZE);
        assert_eq!(
            puback_code(&mut publisher, message).await,
            ReasonCode::SUCCESS
        );
    }
    assert_eq!(broker.queued_bytes_total(), 6 * SIZE);
    // A seventh would take offline sessions past 3/4 of the budget.
    let message = sized_publish("budget/t", QoS::AtLeastOnce, Some(7), 0, SIZE);
    assert_eq!(
        puback_code(&mut publisher, message).await,
        ReasonCode::QUOTA_EXCEEDED
    );
    assert_eq!((budget_refusals(), quota_exceeded()), (1, 1));
    assert_eq!(broker.queued_bytes_total(), 6 * SIZE);
    assert_eq!(broker.session("offline").unwrap().counts().queued, 6);

    // A 3.1.1 publisher has no way to be told: acknowledged, and counted.
    let mut old = connected_in_memory(&server, V311, "old-publisher").await;
    let message = sized_publish("budget/t", QoS::AtLeastOnce, Some(1), 0, SIZE);
    assert_eq!(puback_code(&mut old, message).await, ReasonCode::SUCCESS);
    assert_eq!((budget_refusals(), quota_exceeded()), (2, 2));

    // QoS 2: PUBREC 0x97 ends the flow, so the same packet id is a new message
    // next time (a duplicate would be acknowledged 0x00 without routing).
    for _ in 0..2 {
        let message = sized_publish("budget/t", QoS::ExactlyOnce, Some(77), 0, SIZE);
        publisher.send(message).await;
        let ack = publisher.expect_pubrec().await;
        assert_eq!(
            (ack.packet_id, ack.reason_code),
            (77, ReasonCode::QUOTA_EXCEEDED)
        );
    }
    assert_eq!((budget_refusals(), quota_exceeded()), (4, 4));

    // A connected subscriber that takes one message at a time (Receive Maximum 1)
    // and does not acknowledge: the rest wait in its queue.
    let mut live = raw_in_memory(&server, V5);
    let mut connect_live = connect_packet(V5, "live", true);
    connect_live.properties.receive_maximum = Some(1);
    assert_eq!(
        live.connect(connect_live).await.reason_code,
        ReasonCode::SUCCESS
    );
    live.subscribe_granted(1, "live/#", QoS::AtLeastOnce).await;
    let live_session = broker.session("live").unwrap();
    let message = sized_publish("live/t", QoS::AtLeastOnce, Some(1), 0, SIZE);
    assert_eq!(
        puback_code(&mut publisher, message).await,
        ReasonCode::SUCCESS
    );
    wait_until(|| live_session.counts().inflight == 1).await;
    assert_eq!(
        broker.queued_bytes_total(),
        6 * SIZE,
        "in flight is not queued"
    );
    // QoS 1 behind the window: up to the whole budget.
    let message = sized_publish("live/t", QoS::AtLeastOnce, Some(2), 1, SIZE);
    assert_eq!(
        puback_code(&mut publisher, message).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(broker.queued_bytes_total(), 7 * SIZE);
    // QoS 0 stops at 7/8 (the PINGRESP shows the QoS 0 PUBLISH was handled).
    publisher
        .send(sized_publish("live/t", QoS::AtMostOnce, None, 99, SIZE))
        .await;
    ping(&mut publisher).await;
    assert_eq!(budget_refusals(), 5);
    let message = sized_publish("live/t", QoS::AtLeastOnce, Some(3), 2, SIZE);
    assert_eq!(
        puback_code(&mut publisher, message).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(broker.queued_bytes_total(), 8 * SIZE);
    // The budget is spent: refused at delivery. The session is not persistent, so
    // the publisher is not told (as for a full per-session queue).
    let message = sized_publish("live/t", QoS::AtLeastOnce, Some(4), 3, SIZE);
    assert_eq!(
        puback_code(&mut publisher, message).await,
        ReasonCode::SUCCESS
    );
    assert_eq!((budget_refusals(), quota_exceeded()), (6, 4));
    assert_eq!(broker.queued_bytes_total(), 8 * SIZE);
    assert_eq!(live_session.counts().queued, 2);

    // Draining gives everything back: the live client takes what was kept
    // (sequences 0, 1, 2; not the refused QoS 0 nor the last one) ...
    for expected in 0..3 {
        let message = live.expect_publish().await;
        assert_eq!(sequence_of(&message), expected);
        live.send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    ping(&mut live).await;
    // ... and the offline session comes back for its six.
    let mut back = raw_in_memory(&server, V5);
    connect.clean_start = false;
    assert!(back.connect(connect).await.session_present);
    for _ in 0..6 {
        let message = back.expect_publish().await;
        back.send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
            .await;
    }
    wait_until(|| broker.queued_bytes_total() == 0).await;
    server.shutdown().await;
}

// With the durable store: a message a persistent session's full queue dropped,
// or that the budget kept from it (0x97, answered once the pass is on disk), does
// not come back after a restart; the restored queues count against the budget.
#[tokio::test]
async fn refused_messages_stay_refused_across_a_restart() {
    const SIZE: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let durable = || {
        let mut options = options();
        options.durability = Durability::Sync {
            data_dir: dir.path().to_path_buf(),
        };
        options.broker.max_queued_messages = 2;
        // Offline sessions may hold 3/4 of it: three messages.
        options.broker.max_queued_bytes_total = 4 * SIZE;
        options
    };
    let server = start(durable()).await;
    let persistent = |client_id: &str, clean_start: bool| {
        let mut connect = connect_packet(V5, client_id, clean_start);
        connect.properties.session_expiry_interval = Some(3600);
        connect
    };
    for (client_id, filter) in [("keeper-a", "a/#"), ("keeper-b", "b/#")] {
        let mut client = raw_in_memory(&server, V5);
        client.connect(persistent(client_id, true)).await;
        client.subscribe_granted(1, filter, QoS::AtLeastOnce).await;
        client.send(Packet::Disconnect(Disconnect::default())).await;
        assert_eq!(client.recv().await, None);
        wait_until(|| session_connected(&server, client_id) == Some(false)).await;
    }
    let mut publisher = connected_in_memory(&server, V5, "publisher").await;
    let codes = [
        ("a/t", ReasonCode::SUCCESS),
        ("a/t", ReasonCode::SUCCESS),
        // keeper-a's queue is full: dropped (the publisher is not told).
        ("a/t", ReasonCode::SUCCESS),
        ("b/t", ReasonCode::SUCCESS),
        // The offline share of the budget is spent.
        ("b/t", ReasonCode::QUOTA_EXCEEDED),
    ];
    for (index, (topic, code)) in codes.into_iter().enumerate() {
        let packet_id = u16::try_from(index + 1).unwrap();
        let sequence = u64::from(packet_id);
        let message = sized_publish(topic, QoS::AtLeastOnce, Some(packet_id), sequence, SIZE);
        assert_eq!(puback_code(&mut publisher, message).await, code, "{index}");
    }
    assert_eq!(counter(&server, |m| &m.dropped_queue_full), 1);
    assert_eq!(counter(&server, |m| &m.dropped_memory_budget), 1);
    assert_eq!(server.broker().queued_bytes_total(), 3 * SIZE);

    server.shutdown().await;
    let server = start(durable()).await;
    let broker = server.broker();
    assert_eq!(broker.session("keeper-a").unwrap().counts().queued, 2);
    assert_eq!(broker.session("keeper-b").unwrap().counts().queued, 1);
    assert_eq!(broker.queued_bytes_total(), 3 * SIZE);
    for (client_id, expected) in [("keeper-a", vec![1, 2]), ("keeper-b", vec![4])] {
        let mut client = raw_in_memory(&server, V5);
        assert!(
            client
                .connect(persistent(client_id, false))
                .await
                .session_present
        );
        for sequence in expected {
            let message = client.expect_publish().await;
            assert_eq!(sequence_of(&message), sequence, "{client_id}");
            client
                .send(Packet::PubAck(Ack::new(message.packet_id.unwrap())))
                .await;
        }
        ping(&mut client).await;
    }
    wait_until(|| broker.queued_bytes_total() == 0).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Retained store
// ---------------------------------------------------------------------------

// A retained message the retained store has no room for is delivered to current
// subscribers but not retained; a v5 publisher at QoS 1/2 is told with 0x97, a
// 3.1.1 one cannot be. Replacing or clearing a stored topic is always possible.
#[tokio::test]
async fn a_full_retained_store_refuses_with_quota_exceeded() {
    let mut options = options();
    options.broker.max_retained_messages = 1;
    let server = start(options).await;
    let mut subscriber = connected_in_memory(&server, V5, "watcher").await;
    subscriber
        .subscribe_granted(1, "r/#", QoS::AtMostOnce)
        .await;
    let mut publisher = connected_in_memory(&server, V5, "publisher").await;
    let retained = |topic: &str, packet_id: u16, payload: &'static [u8]| Publish {
        retain: true,
        ..publish(topic, QoS::AtLeastOnce, Some(packet_id), payload)
    };

    assert_eq!(
        puback_code(&mut publisher, retained("r/1", 1, b"one")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        puback_code(&mut publisher, retained("r/2", 2, b"two")).await,
        ReasonCode::QUOTA_EXCEEDED
    );
    // Delivered all the same, live.
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"one");
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"two");
    assert_eq!(server.broker().retained_count(), 1);
    assert!(server.broker().retained_matching("r/2", 0).is_empty());
    assert_eq!(counter(&server, |m| &m.retained_refused), 1);
    assert_eq!(counter(&server, |m| &m.publish_quota_exceeded), 1);

    // 3.1.1: acknowledged, counted.
    let mut old = connected_in_memory(&server, V311, "old-publisher").await;
    assert_eq!(
        puback_code(&mut old, retained("r/3", 1, b"three")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(counter(&server, |m| &m.retained_refused), 2);

    // Replacing the stored topic, then clearing it, makes room.
    assert_eq!(
        puback_code(&mut publisher, retained("r/1", 3, b"uno")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        puback_code(&mut publisher, retained("r/1", 4, b"")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        puback_code(&mut publisher, retained("r/2", 5, b"two")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(server.broker().retained_matching("r/#", 0).len(), 1);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Client rates (paused time)
// ---------------------------------------------------------------------------

// Beyond `client_messages` the connection stops reading: nothing is lost, nothing
// is refused, the client is only slowed down, and keep alive waits while it is.
#[tokio::test(start_paused = true)]
async fn a_client_over_its_message_rate_is_slowed_down_not_disconnected() {
    let mut options = options();
    options.rates.client_messages = Some(Rate::per_second(10));
    let server = start(options).await;
    let mut client = raw_in_memory(&server, V5);
    let mut connect = connect_packet(V5, "eager", true);
    // 1.5 s of silence would close it, were the throttling held against it.
    connect.keep_alive = 1;
    assert_eq!(
        client.connect(connect).await.reason_code,
        ReasonCode::SUCCESS
    );
    let started = tokio::time::Instant::now();

    // Thirty at once: three seconds' worth at 10 a second, of which one second's
    // worth is the burst. All are read (they came in one read) and acknowledged.
    let mut bytes = BytesMut::new();
    for packet_id in 1..=30 {
        let message = publish("rate/t", QoS::AtLeastOnce, Some(packet_id), b"m");
        encode(&Packet::Publish(message), V5, &mut bytes).unwrap();
    }
    client.send_bytes(&bytes).await;
    for packet_id in 1..=30 {
        assert_eq!(client.expect_puback().await.packet_id, packet_id);
    }
    // The next one waits unread until the client is back within its rate:
    // 30 messages at 10/s with a burst of 10 leave two seconds of debt.
    client
        .send(publish("rate/t", QoS::AtLeastOnce, Some(31), b"m"))
        .await;
    assert_eq!(client.expect_puback().await.packet_id, 31);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert!(counter(&server, |m| &m.clients_throttled) >= 1);
    assert_eq!(counter(&server, |m| &m.keep_alive_timeouts), 0);
    ping(&mut client).await;
    server.shutdown().await;
}

// Beyond `client_bytes` likewise: a large publish puts the client in debt, and
// its next packet is read once the debt is paid.
#[tokio::test(start_paused = true)]
async fn a_client_over_its_byte_rate_is_slowed_down() {
    let mut options = options();
    options.rates.client_bytes = Some(Rate::per_second(1000));
    let server = start(options).await;
    let mut client = connected_in_memory(&server, V5, "bulky").await;
    let started = tokio::time::Instant::now();
    // About 3000 bytes against a burst of 1000: two seconds of debt.
    let message = sized_publish("bytes/t", QoS::AtLeastOnce, Some(1), 0, 3000);
    client.send(message).await;
    assert_eq!(client.expect_puback().await.packet_id, 1);
    ping(&mut client).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert!(counter(&server, |m| &m.clients_throttled) >= 1);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Oversized packets and topics
// ---------------------------------------------------------------------------

// A packet over `max_packet_size`, and a topic over the topic limits, close only
// their own connection (v5: 0x95 and 0x90), and each is counted.
#[tokio::test]
async fn oversized_packets_and_topics_are_refused_and_counted() {
    let mut options = options();
    options.broker.max_packet_size = 256;
    options.broker.topic_limits.max_levels = 3;
    let server = start(options).await;
    let mut witness = connected_in_memory(&server, V5, "witness").await;

    let mut big = connected_in_memory(&server, V5, "big").await;
    big.send(sized_publish("big/t", QoS::AtMostOnce, None, 0, 300))
        .await;
    big.expect_closed_with(ReasonCode::PACKET_TOO_LARGE).await;
    assert_eq!(counter(&server, |m| &m.packets_too_large), 1);

    let mut deep = connected_in_memory(&server, V5, "deep").await;
    deep.send(publish("a/b/c/d", QoS::AtMostOnce, None, b"x"))
        .await;
    deep.expect_closed_with(ReasonCode::TOPIC_NAME_INVALID)
        .await;
    assert_eq!(counter(&server, |m| &m.topic_names_refused), 1);

    ping(&mut witness).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Per-listener rates (paused time, in-memory connections on each listener)
// ---------------------------------------------------------------------------

// A listener's own rates replace the server's for its clients only: listener
// `public` has a strict connection rate and message rate of its own, listener
// `internal` keeps the server's (unlimited here). Connections per address are
// counted per listener, so a flood on one does not use up the other's.
#[tokio::test(start_paused = true)]
async fn a_listeners_own_rates_apply_to_its_clients_only() {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut options = options_with_listeners(vec![
        ListenerOptions {
            rates: Some(RateLimits {
                connections_per_address: Some(Rate {
                    per_second: 1,
                    burst: 2,
                }),
                client_messages: Some(Rate::per_second(10)),
                client_bytes: None,
            }),
            ..listener("public", ListenerKind::Tcp, loopback)
        },
        listener("internal", ListenerKind::Tcp, loopback),
    ]);
    options.rates = RateLimits::default();
    let server = start(options).await;
    let (public, internal) = (0, 1);
    let peer = SocketAddr::from(([10, 0, 0, 1], 5000));
    let connect = |listener: usize, client_id: &str| {
        let server = &server;
        let client_id = client_id.to_owned();
        async move {
            let mut client = RawClient::new(server.connect_in_memory_on(listener, peer), V5);
            let connack = client.connect(connect_packet(V5, &client_id, true)).await;
            assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{client_id}");
            client
        }
    };

    // The public listener's burst of two, then a refusal.
    let mut first = connect(public, "public-1").await;
    let _second = connect(public, "public-2").await;
    assert_closed_at_once(server.connect_in_memory_on(public, peer)).await;
    assert_eq!(counter(&server, |m| &m.connections_rate_limited), 1);
    // The same address on the internal listener: no limit there.
    let mut internal_clients = Vec::new();
    for n in 0..5 {
        internal_clients.push(connect(internal, &format!("internal-{n}")).await);
    }
    assert_eq!(counter(&server, |m| &m.connections_rate_limited), 1);

    // Thirty messages at once from each: the public client (10 a second)
    // is throttled, the internal one is not.
    let mut bytes = BytesMut::new();
    for packet_id in 1..=30 {
        let message = publish("rate/t", QoS::AtLeastOnce, Some(packet_id), b"m");
        encode(&Packet::Publish(message), V5, &mut bytes).unwrap();
    }
    let internal_client = &mut internal_clients[0];
    internal_client.send_bytes(&bytes).await;
    for packet_id in 1..=30 {
        assert_eq!(internal_client.expect_puback().await.packet_id, packet_id);
    }
    ping(internal_client).await;
    assert_eq!(counter(&server, |m| &m.clients_throttled), 0);
    first.send_bytes(&bytes).await;
    for packet_id in 1..=30 {
        assert_eq!(first.expect_puback().await.packet_id, packet_id);
    }
    ping(&mut first).await;
    assert!(counter(&server, |m| &m.clients_throttled) >= 1);
    server.shutdown().await;
}
