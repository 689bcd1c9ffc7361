//! Subscriptions end to end: wildcard matching, `$` topics, overlapping subscriptions,
//! UNSUBSCRIBE, replacing a subscription, shared subscriptions, and the settings that
//! refuse or downgrade subscriptions.
//!
//! "Nothing else arrives" is checked without waiting: after the messages under test
//! the client publishes a QoS 0 marker to itself; a session's queue is FIFO, so anything
//! that was going to arrive comes before the marker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::{BTreeSet, HashMap};

use support::*;
use switchboard_codec::{
    Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    Unsubscribe,
};
use switchboard_server::RunningServer;
use tokio::io::{AsyncRead, AsyncWrite};

const MARKER: &str = "subscriptions-test/marker";

fn subscribe_many(packet_id: u16, filters: &[(&str, QoS)], identifier: Option<u32>) -> Subscribe {
    Subscribe {
        packet_id,
        subscription_identifier: identifier,
        filters: filters
            .iter()
            .map(|(filter, qos)| {
                (
                    filter.to_string(),
                    SubscriptionOptions {
                        qos: *qos,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect(),
        ..Subscribe::default()
    }
}

async fn suback_codes<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    subscribe: Subscribe,
) -> Vec<ReasonCode> {
    let packet_id = subscribe.packet_id;
    client.send(subscribe).await;
    let suback = client.expect_suback().await;
    // [MQTT-3.8.4-2] (v5) / [MQTT-2.3.1-7] (3.1.1)
    assert_eq!(suback.packet_id, packet_id);
    suback.reason_codes
}

/// Publishes a QoS 0 marker to itself and returns every PUBLISH received before it,
/// acknowledging them (QoS 2 flows are completed before it returns).
async fn received_before_marker<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
) -> Vec<Publish> {
    client
        .send(publish(MARKER, QoS::AtMostOnce, None, b"marker"))
        .await;
    let mut received = Vec::new();
    let mut awaiting_pubrel = 0usize;
    let mut marker_seen = false;
    while !marker_seen || awaiting_pubrel > 0 {
        match client.expect().await {
            Packet::Publish(publish) if publish.topic == MARKER => marker_seen = true,
            Packet::Publish(publish) => {
                assert!(!marker_seen, "{publish:?} arrived after the marker");
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => client.send(Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        client.send(Packet::PubRec(Ack::new(id))).await;
                        awaiting_pubrel += 1;
                    }
                    _ => {}
                }
                received.push(publish);
            }
            Packet::PubRel(ack) => {
                client.send(Packet::PubComp(Ack::new(ack.packet_id))).await;
                awaiting_pubrel -= 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    received
}

/// A PUBLISH with payload `job-{n}` (packet id n + 1 when QoS > 0).
fn numbered(topic: &str, qos: QoS, n: usize) -> Publish {
    Publish {
        qos,
        topic: topic.to_string(),
        packet_id: (qos != QoS::AtMostOnce).then_some(n as u16 + 1),
        payload: bytes::Bytes::from(format!("job-{n}")),
        ..Publish::default()
    }
}

fn topics(publishes: &[Publish]) -> Vec<String> {
    publishes.iter().map(|p| p.topic.clone()).collect()
}

/// For each filter: a fresh client subscribes to it (and the marker), publishes every
/// topic to itself at QoS 0, and must receive exactly the expected ones, in order.
async fn check_matching(version: ProtocolVersion, table: &[(&str, &[&str], &[&str])]) {
    let server = start_default().await;
    for (n, (filter, matching, not_matching)) in table.iter().enumerate() {
        let mut client = connected_tcp(&server, version, &format!("match-{n}")).await;
        let codes = suback_codes(
            &mut client,
            subscribe_many(
                1,
                &[(filter, QoS::AtMostOnce), (MARKER, QoS::AtMostOnce)],
                None,
            ),
        )
        .await;
        assert_eq!(codes, vec![ReasonCode::GRANTED_QOS_0; 2], "{filter}");
        let mut all: Vec<&str> = matching
            .iter()
            .chain(not_matching.iter())
            .copied()
            .collect();
        all.sort_unstable();
        for topic in &all {
            client
                .send(publish(topic, QoS::AtMostOnce, None, b"x"))
                .await;
        }
        let received = topics(&received_before_marker(&mut client).await);
        let expected: Vec<String> = all
            .iter()
            .filter(|t| matching.contains(t))
            .map(|t| t.to_string())
            .collect();
        assert_eq!(received, expected, "filter {filter:?}");
    }
    server.shutdown().await;
}

// [MQTT-4.7.1-2] (v5) / [MQTT-4.7.1-3] (3.1.1): '+' matches exactly one whole level,
// empty levels included, at any position. [MQTT-3.3.2-3]: every topic sent matches.
#[tokio::test]
async fn single_level_wildcard_matching() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "sport/tennis/+",
            &[
                "sport/tennis/player1",
                "sport/tennis/player2",
                "sport/tennis/",
            ],
            &[
                "sport/tennis/player1/ranking",
                "sport/tennis",
                "sport/golf/player1",
            ],
        ),
        (
            "sport/+",
            &["sport/", "sport/x"],
            &["sport", "sport/x/y", "/sport/x"],
        ),
        ("+", &["a", "sport"], &["a/b", "/a", "/"]),
        ("+/+", &["/", "a/b", "/finance"], &["a", "a/b/c"]),
        ("/+", &["/finance", "/"], &["finance", "a/b"]),
        (
            "+/tennis/#",
            &["sport/tennis", "sport/tennis/player1", "x/tennis/a/b"],
            &["tennis", "sport/golf"],
        ),
    ];
    check_matching(ProtocolVersion::V5, table).await;
    check_matching(ProtocolVersion::V3_1_1, table).await;
}

// [MQTT-4.7.1-1] (v5) / [MQTT-4.7.1-2] (3.1.1): '#' matches the parent level and any
// number of child levels; [MQTT-4.7.3-4]: no normalisation (case, spaces, empty levels).
#[tokio::test]
async fn multi_level_wildcard_matching() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "sport/#",
            &[
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1/ranking",
            ],
            &["sports", "Sport/tennis", "x/sport"],
        ),
        ("#", &["a", "a/b/c", "/", "//"], &[]),
        (
            "sport/tennis/player1/#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
            &["sport/tennis/player2", "sport/tennis"],
        ),
        (
            "Accounts/a b",
            &["Accounts/a b"],
            &[
                "accounts/a b",
                "Accounts/a  b",
                "Accounts/a b/",
                "Accounts//a b",
            ],
        ),
    ];
    check_matching(ProtocolVersion::V5, table).await;
    check_matching(ProtocolVersion::V3_1_1, table).await;
}

// [MQTT-4.7.2-1]: filters starting with a wildcard do not match topic names starting
// with '$'; filters that spell out the '$' level do.
#[tokio::test]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "#",
            &["SYS/monitor/Clients", "a"],
            &["$SYS/monitor/Clients", "$SYS", "$other/x"],
        ),
        (
            "+/monitor/Clients",
            &["SYS/monitor/Clients"],
            &["$SYS/monitor/Clients"],
        ),
        ("+", &["SYS"], &["$SYS"]),
        (
            "$SYS/#",
            &["$SYS", "$SYS/monitor/Clients"],
            &["SYS/monitor/Clients", "$other/x"],
        ),
        (
            "$SYS/monitor/+",
            &["$SYS/monitor/Clients"],
            &["$SYS/monitor", "$other/monitor/Clients"],
        ),
        ("$other/+", &["$other/x"], &["$SYS/x"]),
    ];
    check_matching(ProtocolVersion::V5, table).await;
}

// [MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4] (v5): overlapping subscriptions of one
// client give ONE copy, at the highest QoS of the matching subscriptions, carrying the
// Subscription Identifier of every matching subscription that has one.
// Switchboard's choice (the spec allows one copy per subscription too): always one copy.
#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "overlap").await;
    // One identifier per SUBSCRIBE, so three of them.
    suback_codes(
        &mut client,
        subscribe_many(1, &[("ov/#", QoS::AtMostOnce)], Some(1)),
    )
    .await;
    suback_codes(
        &mut client,
        subscribe_many(2, &[("ov/+", QoS::ExactlyOnce)], Some(2)),
    )
    .await;
    suback_codes(
        &mut client,
        subscribe_many(
            3,
            &[("ov/a", QoS::AtLeastOnce), (MARKER, QoS::AtMostOnce)],
            None,
        ),
    )
    .await;

    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "overlap-pub").await;
    for (packet_id, topic) in [(1, "ov/a"), (2, "ov/b"), (3, "ov/b/c")] {
        publisher
            .send(publish(topic, QoS::ExactlyOnce, Some(packet_id), b"x"))
            .await;
        publisher.expect_pubrec().await;
        publisher.send(Packet::PubRel(Ack::new(packet_id))).await;
        publisher.expect_pubcomp().await;
    }
    let received = received_before_marker(&mut client).await;
    assert_eq!(
        topics(&received),
        vec!["ov/a", "ov/b", "ov/b/c"],
        "one copy each"
    );
    let summary: Vec<(QoS, BTreeSet<u32>)> = received
        .iter()
        .map(|p| {
            (
                p.qos,
                p.properties
                    .subscription_identifiers
                    .iter()
                    .copied()
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (QoS::ExactlyOnce, BTreeSet::from([1, 2])), // ov/#, ov/+ and ov/a
            (QoS::ExactlyOnce, BTreeSet::from([1, 2])), // ov/# and ov/+
            (QoS::AtMostOnce, BTreeSet::from([1])),     // ov/# only
        ]
    );
    server.shutdown().await;
}

// [MQTT-3.3.5-1] (3.1.1): overlapping subscriptions: one copy at the highest QoS.
#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_v311() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V3_1_1, "overlap311").await;
    let codes = suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[
                ("ov/#", QoS::AtMostOnce),
                ("ov/+", QoS::AtLeastOnce),
                (MARKER, QoS::AtMostOnce),
            ],
            None,
        ),
    )
    .await;
    // [MQTT-3.8.4-4] [MQTT-3.9.3-1] (3.1.1): one SUBACK, a code per filter, in order.
    assert_eq!(
        codes,
        vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_0
        ]
    );
    let mut publisher = connected_tcp(&server, ProtocolVersion::V3_1_1, "overlap311-pub").await;
    publisher
        .send(publish("ov/a", QoS::ExactlyOnce, Some(1), b"x"))
        .await;
    publisher.expect_pubrec().await;
    let received = received_before_marker(&mut client).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].qos, QoS::AtLeastOnce);
    server.shutdown().await;
}

// [MQTT-3.8.4-5] [MQTT-3.8.4-6] [MQTT-3.9.3-1] [MQTT-3.9.3-2] (v5): several filters in one
// SUBSCRIBE get one SUBACK with one code per filter, in order, failures included.
#[tokio::test]
async fn one_suback_per_subscribe_with_codes_in_order() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "multi").await;
    let codes = suback_codes(
        &mut client,
        subscribe_many(
            7,
            &[
                ("m/a", QoS::ExactlyOnce),
                ("m/#/x", QoS::AtLeastOnce),
                ("m/+", QoS::AtMostOnce),
                ("m/b+", QoS::AtLeastOnce),
                ("m/c", QoS::AtLeastOnce),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_1,
        ]
    );
    server.shutdown().await;
}

// [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6]
// [MQTT-3.11.3-1] [MQTT-3.11.3-2] (v5): one UNSUBACK for several filters, 0x00 where a
// subscription was deleted and 0x11 where none existed (filters compared character by
// character, wildcards literally); messages for the deleted filters stop.
#[tokio::test]
async fn unsubscribe_reason_codes_and_effect() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "unsub").await;
    suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[
                ("u/+", QoS::AtLeastOnce),
                ("$share/g/u/s", QoS::AtLeastOnce),
                ("u/keep", QoS::AtLeastOnce),
                (MARKER, QoS::AtMostOnce),
            ],
            None,
        ),
    )
    .await;
    client
        .send(Packet::Unsubscribe(Unsubscribe {
            packet_id: 42,
            filters: vec![
                "u/a".into(),
                "u/+".into(),
                "u/#".into(),
                "$share/g/u/s".into(),
                "$share/h/u/s".into(),
            ],
            ..Unsubscribe::default()
        }))
        .await;
    match client.expect().await {
        Packet::UnsubAck(unsuback) => {
            assert_eq!(unsuback.packet_id, 42);
            assert_eq!(
                unsuback.reason_codes,
                vec![
                    ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    ReasonCode::SUCCESS,
                    ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    ReasonCode::SUCCESS,
                    ReasonCode::NO_SUBSCRIPTION_EXISTED,
                ]
            );
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    for topic in ["u/a", "u/s", "u/keep"] {
        client
            .send(publish(topic, QoS::AtMostOnce, None, b"x"))
            .await;
    }
    assert_eq!(
        topics(&received_before_marker(&mut client).await),
        vec!["u/keep"]
    );
    assert_eq!(server.broker().subscription_count(), 2);
    server.shutdown().await;
}

// [MQTT-3.10.4-4] [MQTT-3.10.4-5] (3.1.1): UNSUBACK carries the packet id, even when
// nothing was deleted.
#[tokio::test]
async fn unsuback_for_nothing_v311() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V3_1_1, "unsub311").await;
    client
        .send(Packet::Unsubscribe(Unsubscribe {
            packet_id: 9,
            filters: vec!["never/subscribed".into()],
            ..Unsubscribe::default()
        }))
        .await;
    match client.expect().await {
        Packet::UnsubAck(unsuback) => assert_eq!(unsuback.packet_id, 9),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    server.shutdown().await;
}

// [MQTT-3.8.4-3] (v5 and 3.1.1): SUBSCRIBE with a filter the session already has replaces
// that subscription: new QoS and Subscription Identifier, still one subscription and one
// copy per message.
#[tokio::test]
async fn resubscribe_replaces_the_options() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "resub").await;
    suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[("re/t", QoS::AtMostOnce), (MARKER, QoS::AtMostOnce)],
            Some(5),
        ),
    )
    .await;
    let codes = suback_codes(
        &mut client,
        subscribe_many(2, &[("re/t", QoS::ExactlyOnce)], Some(6)),
    )
    .await;
    assert_eq!(codes, vec![ReasonCode::GRANTED_QOS_2]);
    assert_eq!(
        server.broker().subscription_count(),
        2,
        "re/t and the marker"
    );

    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "resub-pub").await;
    publisher
        .send(publish("re/t", QoS::ExactlyOnce, Some(1), b"x"))
        .await;
    publisher.expect_pubrec().await;
    let received = received_before_marker(&mut client).await;
    assert_eq!(received.len(), 1, "one copy");
    assert_eq!(received[0].qos, QoS::ExactlyOnce);
    assert_eq!(received[0].properties.subscription_identifiers, vec![6]);

    // And down again: QoS 0 now.
    suback_codes(
        &mut client,
        subscribe_many(3, &[("re/t", QoS::AtMostOnce)], None),
    )
    .await;
    publisher
        .send(publish("re/t", QoS::ExactlyOnce, Some(2), b"y"))
        .await;
    publisher.expect_pubrec().await;
    let received = received_before_marker(&mut client).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].qos, QoS::AtMostOnce);
    assert!(received[0].properties.subscription_identifiers.is_empty());
    server.shutdown().await;
}

/// A shared-subscription member: acknowledges what it gets and reports each payload
/// with its own index.
fn spawn_member<S>(
    index: usize,
    mut client: RawClient<S>,
    report: tokio::sync::mpsc::UnboundedSender<(usize, QoS, String)>,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(packet) = client.recv().await {
            match packet {
                Packet::Publish(publish) => {
                    match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => {
                            client.send(Packet::PubAck(Ack::new(id))).await
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            client.send(Packet::PubRec(Ack::new(id))).await
                        }
                        _ => {}
                    }
                    let payload = String::from_utf8(publish.payload.to_vec()).unwrap();
                    if report.send((index, publish.qos, payload)).is_err() {
                        return;
                    }
                }
                Packet::PubRel(ack) => client.send(Packet::PubComp(Ack::new(ack.packet_id))).await,
                _ => {}
            }
        }
    })
}

// 4.8.2 (v5): each message of a shared subscription goes to ONE member: spread over the
// three members (each gets some), every message delivered once, none twice.
// [MQTT-4.8.2-3]: at the QoS granted to the member that gets it.
#[tokio::test]
async fn shared_subscription_balances_messages_across_members() {
    let server = start_default().await;
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let mut members = Vec::new();
    let granted = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for (index, qos) in granted.into_iter().enumerate() {
        let mut client =
            connected_tcp(&server, ProtocolVersion::V5, &format!("member-{index}")).await;
        let codes = suback_codes(
            &mut client,
            subscribe_many(1, &[("$share/workers/jobs/+", qos)], None),
        )
        .await;
        assert_eq!(codes, vec![ReasonCode::granted(qos)]);
        members.push(spawn_member(index, client, report.clone()));
    }

    const COUNT: usize = 30;
    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "jobs-pub").await;
    for i in 0..COUNT {
        // QoS 2, so that each member gets its granted QoS. The publisher's PUBRELs are
        // not needed for routing (that happens on PUBLISH) and are left out.
        publisher
            .send(numbered("jobs/new", QoS::ExactlyOnce, i))
            .await;
        publisher.expect_pubrec().await;
    }
    let mut per_member: HashMap<usize, usize> = HashMap::new();
    let mut payloads = BTreeSet::new();
    for _ in 0..COUNT {
        let (index, qos, payload) = tokio::time::timeout(GUARD, reports.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(qos, granted[index], "[MQTT-4.8.2-3] member {index}");
        assert!(
            payloads.insert(payload.clone()),
            "{payload} delivered twice"
        );
        *per_member.entry(index).or_default() += 1;
    }
    assert_eq!(
        payloads,
        (0..COUNT)
            .map(|i| format!("job-{i}"))
            .collect::<BTreeSet<_>>()
    );
    for member in members {
        member.abort();
    }
    assert_eq!(per_member.values().sum::<usize>(), COUNT);
    assert_eq!(per_member.len(), 3, "every member got some: {per_member:?}");
    server.shutdown().await;
}

async fn connect_v5<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    client_id: &str,
    clean_start: bool,
    session_expiry: Option<u32>,
) -> switchboard_codec::ConnAck {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, clean_start);
    connect.properties.session_expiry_interval = session_expiry;
    let connack = client.connect(connect).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    connack
}

/// A member of a shared subscription gets three QoS 1 messages and goes away without
/// acknowledging them; they go to the other member.
async fn shared_member_leaves(persistent: bool) {
    let server = start_default().await;
    let session_expiry = persistent.then_some(300);
    let mut first = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    connect_v5(&mut first, "shared-first", true, session_expiry).await;
    suback_codes(
        &mut first,
        subscribe_many(1, &[("$share/g/work", QoS::AtLeastOnce)], None),
    )
    .await;

    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "shared-pub").await;
    for i in 0..3 {
        publisher.send(numbered("work", QoS::AtLeastOnce, i)).await;
        publisher.expect_puback().await;
    }
    for i in 0..3 {
        let publish = first.expect_publish().await;
        assert_eq!(&publish.payload[..], format!("job-{i}").as_bytes());
    }

    // A second member joins; then the first one's connection drops.
    let mut second = connected_tcp(&server, ProtocolVersion::V5, "shared-second").await;
    suback_codes(
        &mut second,
        subscribe_many(
            1,
            &[
                ("$share/g/work", QoS::AtLeastOnce),
                (MARKER, QoS::AtMostOnce),
            ],
            None,
        ),
    )
    .await;
    drop(first);

    for i in 0..3 {
        let publish = second.expect_publish().await;
        assert_eq!(
            &publish.payload[..],
            format!("job-{i}").as_bytes(),
            "redelivered in order"
        );
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        second
            .send(Packet::PubAck(Ack::new(publish.packet_id.unwrap())))
            .await;
    }
    assert!(
        received_before_marker(&mut second).await.is_empty(),
        "each message once"
    );

    if persistent {
        // The first member's session lived on, but what it left was handed over: its
        // return brings no second copy.
        let mut first = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
        let connack = connect_v5(&mut first, "shared-first", false, session_expiry).await;
        assert!(connack.session_present);
        suback_codes(
            &mut first,
            subscribe_many(2, &[(MARKER, QoS::AtMostOnce)], None),
        )
        .await;
        assert!(
            received_before_marker(&mut first).await.is_empty(),
            "no duplicate after the handover"
        );
    }
    server.shutdown().await;
}

// 4.8.2 (v5; the spec leaves this to the server): what a departing shared-subscription
// member left unacknowledged goes to another member of the group (see
// docs/architecture.md), each message once. Here its session ends with the connection.
#[tokio::test]
async fn shared_member_disconnecting_hands_unacknowledged_messages_to_another() {
    shared_member_leaves(false).await;
}

// The same when the departing member's session outlives the connection (Session Expiry
// 300): the messages are handed over at once, and not resent when it returns.
#[tokio::test]
async fn shared_member_with_persistent_session_hands_messages_over() {
    shared_member_leaves(true).await;
}

// [MQTT-3.8.3-4] (v5): No Local on a shared subscription is a Protocol Error: DISCONNECT
// 0x82 and close.
#[tokio::test]
async fn shared_subscription_with_no_local_is_a_protocol_error() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "shared-nolocal").await;
    // Our encoder refuses to write this, so encode it without No Local and set the bit
    // (bit 2 of the options byte, the last byte of the packet).
    let mut bytes = bytes::BytesMut::new();
    switchboard_codec::encode(
        &Packet::Subscribe(subscribe_many(1, &[("$share/g/t", QoS::AtLeastOnce)], None)),
        ProtocolVersion::V5,
        &mut bytes,
    )
    .unwrap();
    let last = bytes.len() - 1;
    bytes[last] |= 0b0000_0100;
    client.send_bytes(&bytes).await;
    client.expect_closed_with(ReasonCode::PROTOCOL_ERROR).await;
    server.shutdown().await;
}

// [MQTT-3.2.2-9] [MQTT-3.2.2-10] [MQTT-3.8.4-7] (v5): with Maximum QoS 1 the server says so
// in CONNACK, still accepts SUBSCRIBE at QoS 2 and grants 1; messages are delivered at
// most at QoS 1. [MQTT-3.2.2-11] (server reaction): a QoS 2 PUBLISH gets DISCONNECT 0x9B.
#[tokio::test]
async fn maximum_qos_downgrades_subscriptions() {
    let mut options = support::options();
    options.broker.maximum_qos = QoS::AtLeastOnce;
    let server = start(options).await;
    let mut client = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    let connack = connect_v5(&mut client, "maxqos", true, None).await;
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    let codes = suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[
                ("mq/two", QoS::ExactlyOnce),
                ("mq/zero", QoS::AtMostOnce),
                (MARKER, QoS::AtMostOnce),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_0
        ]
    );

    // 3.1.1 (which cannot be told the maximum): granted 1 as well.
    let mut old = connected_tcp(&server, ProtocolVersion::V3_1_1, "maxqos311").await;
    let codes = suback_codes(
        &mut old,
        subscribe_many(1, &[("mq/two", QoS::ExactlyOnce)], None),
    )
    .await;
    assert_eq!(codes, vec![ReasonCode::GRANTED_QOS_1]);

    client
        .send(publish("mq/two", QoS::AtLeastOnce, Some(1), b"x"))
        .await;
    let mut received = Vec::new();
    loop {
        match client.expect().await {
            Packet::PubAck(_) => {}
            Packet::Publish(publish) => received.push(publish.qos),
            other => panic!("unexpected {other:?}"),
        }
        if received.len() == 1 {
            break;
        }
    }
    assert_eq!(received, vec![QoS::AtLeastOnce]);
    client
        .send(publish("mq/two", QoS::ExactlyOnce, Some(2), b"x"))
        .await;
    let mut last = None;
    while let Some(packet) = client.recv().await {
        last = Some(packet);
    }
    match last {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason_code, ReasonCode::QOS_NOT_SUPPORTED)
        }
        other => panic!("expected DISCONNECT 0x9B, got {other:?}"),
    }
    server.shutdown().await;
}

// 3.2.2.3.11 / 3.9.3 (v5): with wildcard subscriptions disabled, CONNACK says so and a
// filter with '+' or '#' is refused with 0xA2; [MQTT-3.8.3-2] (3.1.1): refused (0x80).
#[tokio::test]
async fn wildcard_subscriptions_disabled() {
    let mut options = support::options();
    options.broker.wildcard_subscriptions = false;
    let server = start(options).await;
    let mut client = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    let connack = connect_v5(&mut client, "nowild", true, None).await;
    assert_eq!(
        connack.properties.wildcard_subscription_available,
        Some(false)
    );
    let filters = [
        ("w/+", QoS::AtLeastOnce),
        ("w/#", QoS::AtLeastOnce),
        ("w/b", QoS::AtLeastOnce),
        ("$share/g/w/+", QoS::AtLeastOnce),
    ];
    let codes = suback_codes(&mut client, subscribe_many(1, &filters, None)).await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        ]
    );
    let mut old = connected_tcp(&server, ProtocolVersion::V3_1_1, "nowild311").await;
    let codes = suback_codes(&mut old, subscribe_many(1, &filters[..3], None)).await;
    assert_eq!(
        codes,
        vec![
            ReasonCode(0x80),
            ReasonCode(0x80),
            ReasonCode::GRANTED_QOS_1
        ]
    );
    server.shutdown().await;
}

// 3.2.2.3.13 / 3.9.3 (v5): with shared subscriptions disabled, CONNACK says so and a
// `$share/` filter is refused with 0x9E.
#[tokio::test]
async fn shared_subscriptions_disabled() {
    let mut options = support::options();
    options.broker.shared_subscriptions = false;
    let server = start(options).await;
    let mut client = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    let connack = connect_v5(&mut client, "noshare", true, None).await;
    assert_eq!(
        connack.properties.shared_subscription_available,
        Some(false)
    );
    let codes = suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[("$share/g/t", QoS::AtLeastOnce), ("t", QoS::AtLeastOnce)],
            None,
        ),
    )
    .await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::GRANTED_QOS_1
        ]
    );
    server.shutdown().await;
}

// 3.2.2.3.12 / 3.8.2.1.2 (v5): with Subscription Identifiers disabled, CONNACK says so and
// a SUBSCRIBE carrying one is answered with DISCONNECT 0xA1.
#[tokio::test]
async fn subscription_identifiers_disabled() {
    let mut options = support::options();
    options.broker.subscription_identifiers = false;
    let server = start(options).await;
    let mut client = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    let connack = connect_v5(&mut client, "nosid", true, None).await;
    assert_eq!(
        connack.properties.subscription_identifiers_available,
        Some(false)
    );
    client
        .send(subscribe_many(1, &[("t", QoS::AtLeastOnce)], Some(3)))
        .await;
    client
        .expect_closed_with(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
        .await;
    server.shutdown().await;
}

// 3.9.3 (v5): past `max_subscriptions_per_client` a new filter is refused with 0x97
// (Quota exceeded); replacing an existing one is still allowed.
#[tokio::test]
async fn subscription_quota() {
    let mut options = support::options();
    options.broker.max_subscriptions_per_client = 2;
    let server = start(options).await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "quota").await;
    let codes = suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[
                ("q/a", QoS::AtMostOnce),
                ("q/b", QoS::AtMostOnce),
                ("q/c", QoS::AtMostOnce),
                ("q/a", QoS::AtLeastOnce),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::QUOTA_EXCEEDED,
            ReasonCode::GRANTED_QOS_1
        ]
    );
    server.shutdown().await;
}

/// A shared-subscription member granted QoS 2 gets a QoS 2 message, sends no PUBREC and
/// loses its connection while another member is subscribed.
async fn shared_qos2_member_leaves(
    session_expiry: Option<u32>,
) -> (RawClient<tokio::net::TcpStream>, RunningServer) {
    let server = start_default().await;
    let mut first = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    connect_v5(&mut first, "shared2-first", true, session_expiry).await;
    suback_codes(
        &mut first,
        subscribe_many(1, &[("$share/g/exact", QoS::ExactlyOnce)], None),
    )
    .await;
    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "shared2-pub").await;
    publisher.send(numbered("exact", QoS::ExactlyOnce, 0)).await;
    publisher.expect_pubrec().await;
    let publish = first.expect_publish().await;
    assert_eq!(publish.qos, QoS::ExactlyOnce);

    let mut second = connected_tcp(&server, ProtocolVersion::V5, "shared2-second").await;
    suback_codes(
        &mut second,
        subscribe_many(
            1,
            &[
                ("$share/g/exact", QoS::ExactlyOnce),
                (MARKER, QoS::AtMostOnce),
            ],
            None,
        ),
    )
    .await;
    drop(first);
    wait_until(|| session_connected(&server, "shared2-first") != Some(true)).await;
    assert!(
        received_before_marker(&mut second).await.is_empty(),
        "the QoS 2 message went to another member"
    );
    (second, server)
}

// [MQTT-4.8.2-4] (v5): a QoS 2 delivery to a shared-subscription member cut by
// disconnection is completed with that member when it reconnects, not handed to another.
#[tokio::test]
async fn shared_qos2_delivery_is_completed_by_the_same_member() {
    let (_second, server) = shared_qos2_member_leaves(Some(300)).await;
    let mut first = RawClient::tcp(addr(&server), ProtocolVersion::V5).await;
    assert!(
        connect_v5(&mut first, "shared2-first", false, Some(300))
            .await
            .session_present
    );
    let again = first.expect_publish().await;
    assert!(again.dup);
    assert_eq!(&again.payload[..], b"job-0");
    server.shutdown().await;
}

// [MQTT-4.8.2-5] (v5): if that member's session ends before it reconnects, the QoS 2
// message is not sent to another member.
#[tokio::test]
async fn shared_qos2_delivery_is_not_handed_over_when_the_session_ends() {
    let (_second, server) = shared_qos2_member_leaves(None).await;
    server.shutdown().await;
}

// [MQTT-3.3.4-5] (v5): a client with a shared and a non-shared subscription that both
// match gets two copies: Switchboard merges only non-shared subscriptions of a session;
// the shared one is a separate delivery with its own Subscription Identifier.
#[tokio::test]
async fn shared_and_non_shared_overlap_gives_two_copies() {
    let server = start_default().await;
    let mut client = connected_tcp(&server, ProtocolVersion::V5, "overlap-shared").await;
    suback_codes(
        &mut client,
        subscribe_many(
            1,
            &[("os/t", QoS::AtLeastOnce), (MARKER, QoS::AtMostOnce)],
            Some(1),
        ),
    )
    .await;
    suback_codes(
        &mut client,
        subscribe_many(2, &[("$share/g/os/+", QoS::AtLeastOnce)], Some(2)),
    )
    .await;
    let mut publisher = connected_tcp(&server, ProtocolVersion::V5, "overlap-shared-pub").await;
    publisher.send(numbered("os/t", QoS::AtLeastOnce, 0)).await;
    publisher.expect_puback().await;
    let received = received_before_marker(&mut client).await;
    let mut identifiers: Vec<Vec<u32>> = received
        .iter()
        .map(|p| p.properties.subscription_identifiers.clone())
        .collect();
    identifiers.sort();
    assert_eq!(identifiers, vec![vec![1], vec![2]]);
    server.shutdown().await;
}
