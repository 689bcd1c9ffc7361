use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_codec::{encoded_len, Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

use super::*;
use crate::message::Message;

fn limits() -> SessionLimits {
    SessionLimits {
        max_queued_messages: 1000,
        max_queued_bytes: 1 << 20,
        max_inflight: u16::MAX,
        queue_qos0_offline: false,
    }
}

fn v5(receive_maximum: u16) -> ClientParams {
    ClientParams {
        version: ProtocolVersion::V5,
        receive_maximum,
        maximum_packet_size: None,
    }
}

fn message(topic: &str, payload: &'static [u8], qos: QoS) -> Message {
    Message {
        id: 0,
        topic: topic.to_owned(),
        payload: Bytes::from_static(payload),
        qos,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
    }
}

fn delivery(topic: &str, qos: QoS) -> Delivery {
    Delivery::new(Arc::new(message(topic, b"payload", qos)), qos, false)
}

fn shared(topic: &str, qos: QoS) -> Delivery {
    Delivery {
        shared_group: Some(Arc::from("group")),
        ..delivery(topic, qos)
    }
}

fn attached(receive_maximum: u16) -> Session {
    let mut session = Session::new(limits());
    assert!(session.attach(v5(receive_maximum)).is_empty());
    session
}

/// Enqueues `delivery` and asserts it was queued.
fn enqueue(session: &mut Session, delivery: Delivery, now: Instant) {
    assert_eq!(session.enqueue(delivery, now), EnqueueOutcome::Queued);
}

fn poll(session: &mut Session, now: Instant) -> Publish {
    session.poll_publish(now).expect("a PUBLISH to send")
}

fn topics(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => {
                format!("PUBLISH {} {:?}", publish.topic, publish.packet_id)
            }
            Packet::PubRel(ack) => format!("PUBREL {}", ack.packet_id),
            other => other.name().to_owned(),
        })
        .collect()
}

// ---- sending and packet ids ----

#[test]
fn nothing_is_sent_without_a_connection() {
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    assert!(!session.is_attached());
    assert_eq!(session.poll_publish(t0), None);
    assert!(!session.has_pending());
    session.attach(v5(10));
    assert!(session.has_pending());
    assert_eq!(poll(&mut session, t0).topic, "a");
}

#[test]
fn qos0_goes_out_without_packet_id_or_dup() {
    // [MQTT-2.2.1-2] no packet id at QoS 0, [MQTT-4.3.1-1] DUP=0.
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("a", QoS::AtMostOnce), t0);
    let publish = poll(&mut session, t0);
    assert_eq!(publish.qos, QoS::AtMostOnce);
    assert_eq!(publish.packet_id, None);
    assert!(!publish.dup);
    assert_eq!(session.inflight_len(), 0);
    assert_eq!(session.poll_publish(t0), None);
}

#[test]
fn qos1_and_qos2_get_fresh_nonzero_ids() {
    // [MQTT-2.2.1-3], [MQTT-2.2.1-4], [MQTT-4.3.2-1], [MQTT-4.3.3-1]; DUP=0 on first send
    // ([MQTT-4.3.2-2], [MQTT-4.3.3-2]).
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("b", QoS::ExactlyOnce), t0);
    let first = poll(&mut session, t0);
    let second = poll(&mut session, t0);
    assert_eq!(first.packet_id, Some(1));
    assert_eq!(second.packet_id, Some(2));
    assert_eq!(second.qos, QoS::ExactlyOnce);
    assert!(!first.dup && !second.dup);
    assert_eq!(session.inflight_len(), 2);
}

#[test]
fn packet_ids_wrap_around_skipping_zero_and_ids_in_use() {
    // [MQTT-2.2.1-3] never 0, [MQTT-2.2.1-4] never an id still in use.
    let t0 = Instant::now();
    let mut session = attached(u16::MAX);
    for topic in ["one", "two"] {
        enqueue(&mut session, delivery(topic, QoS::AtLeastOnce), t0);
    }
    assert_eq!(poll(&mut session, t0).packet_id, Some(1));
    assert_eq!(poll(&mut session, t0).packet_id, Some(2));
    session.inflight.set_next_packet_id(u16::MAX - 1);
    for topic in ["c", "d", "e", "f"] {
        enqueue(&mut session, delivery(topic, QoS::AtLeastOnce), t0);
    }
    assert_eq!(poll(&mut session, t0).packet_id, Some(u16::MAX - 1));
    assert_eq!(poll(&mut session, t0).packet_id, Some(u16::MAX));
    // 0 is skipped, 1 and 2 are still in flight.
    assert_eq!(poll(&mut session, t0).packet_id, Some(3));
    session.handle_puback(1).unwrap();
    assert_eq!(poll(&mut session, t0).packet_id, Some(4));
}

#[test]
fn every_id_in_flight_blocks_instead_of_reusing_one() {
    // [MQTT-2.2.1-4] with all 65,535 ids taken.
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 70_000,
        max_queued_bytes: usize::MAX,
        ..limits()
    });
    session.attach(v5(u16::MAX));
    let shared_message = Arc::new(message("t", b"", QoS::AtLeastOnce));
    for _ in 0..=u16::MAX {
        enqueue(
            &mut session,
            Delivery::new(Arc::clone(&shared_message), QoS::AtLeastOnce, false),
            t0,
        );
    }
    for _ in 0..u16::MAX {
        session.poll_publish(t0).unwrap();
    }
    assert_eq!(session.inflight_len(), 65_535);
    assert_eq!(session.poll_publish(t0), None);
    session.handle_puback(777).unwrap();
    assert_eq!(poll(&mut session, t0).packet_id, Some(777));
}

// ---- the window ----

#[test]
fn receive_maximum_1_allows_one_unacknowledged_publish() {
    // [MQTT-4.9.0-2], [MQTT-3.3.4-9]
    let t0 = Instant::now();
    let mut session = attached(1);
    for topic in ["a", "b"] {
        enqueue(&mut session, delivery(topic, QoS::AtLeastOnce), t0);
    }
    let first = poll(&mut session, t0);
    assert_eq!(session.poll_publish(t0), None);
    session.handle_puback(first.packet_id.unwrap()).unwrap();
    assert_eq!(poll(&mut session, t0).topic, "b");
}

#[test]
fn receive_maximum_2_allows_two() {
    let t0 = Instant::now();
    let mut session = attached(2);
    for topic in ["a", "b", "c"] {
        enqueue(&mut session, delivery(topic, QoS::ExactlyOnce), t0);
    }
    let a = poll(&mut session, t0);
    poll(&mut session, t0);
    assert_eq!(session.poll_publish(t0), None);
    // A successful PUBREC does not free the slot: the quota returns on PUBCOMP (4.9).
    let pubrel = session
        .handle_pubrec(&Ack::new(a.packet_id.unwrap()))
        .unwrap();
    assert_eq!(pubrel, Some(Ack::new(a.packet_id.unwrap())));
    assert_eq!(session.poll_publish(t0), None);
    session.handle_pubcomp(a.packet_id.unwrap()).unwrap();
    assert_eq!(poll(&mut session, t0).topic, "c");
}

#[test]
fn the_window_is_the_smaller_of_max_inflight_and_receive_maximum() {
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_inflight: 3,
        ..limits()
    });
    session.attach(v5(u16::MAX));
    for _ in 0..5 {
        enqueue(&mut session, delivery("t", QoS::AtLeastOnce), t0);
    }
    let sent = std::iter::from_fn(|| session.poll_publish(t0)).count();
    assert_eq!(sent, 3);

    let mut session = Session::new(limits());
    session.attach(v5(u16::MAX));
    for _ in 0..300 {
        enqueue(&mut session, delivery("t", QoS::AtLeastOnce), t0);
    }
    let sent = std::iter::from_fn(|| session.poll_publish(t0)).count();
    assert_eq!(sent, 300, "65,535 is effectively no limit here");
}

#[test]
fn a_zero_window_is_treated_as_one() {
    // [MQTT-4.9.0-1]: the send quota is non-zero.
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_inflight: 0,
        ..limits()
    });
    session.attach(v5(0));
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("b", QoS::AtLeastOnce), t0);
    assert!(session.poll_publish(t0).is_some());
    assert_eq!(session.poll_publish(t0), None);
}

#[test]
fn qos0_behind_a_blocked_qos1_waits() {
    // 4.6 ordering, [MQTT-4.6.0-6]: the queue is FIFO across QoS levels.
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("first", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("second", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("third", QoS::AtMostOnce), t0);
    let first = poll(&mut session, t0);
    assert_eq!(session.poll_publish(t0), None, "QoS 0 must not overtake");
    session.handle_puback(first.packet_id.unwrap()).unwrap();
    assert_eq!(poll(&mut session, t0).topic, "second");
    // The window is full again, but QoS 0 itself is not limited by it.
    assert_eq!(poll(&mut session, t0).topic, "third");
    assert_eq!(session.poll_publish(t0), None);
}

#[test]
fn qos0_is_not_limited_by_the_window() {
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("q1", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("q0a", QoS::AtMostOnce), t0);
    enqueue(&mut session, delivery("q0b", QoS::AtMostOnce), t0);
    poll(&mut session, t0);
    assert_eq!(poll(&mut session, t0).topic, "q0a");
    assert_eq!(poll(&mut session, t0).topic, "q0b");
}

#[test]
fn error_pubrec_ends_the_flow_and_frees_the_slot() {
    // [MQTT-4.4.0-2], 4.9: a PUBREC of 0x80 or more returns the quota and the id; no PUBREL.
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("a", QoS::ExactlyOnce), t0);
    enqueue(&mut session, delivery("b", QoS::ExactlyOnce), t0);
    let a = poll(&mut session, t0);
    let id = a.packet_id.unwrap();
    let refused = Ack::with_reason(id, ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(session.handle_pubrec(&refused), Ok(None));
    assert_eq!(session.inflight_len(), 0);
    assert!(session.handle_pubcomp(id).is_err(), "the flow is over");
    assert_eq!(poll(&mut session, t0).topic, "b");
    // Not resent on a new connection either.
    session.handle_pubrec(&refused).unwrap_err();
}

#[test]
fn error_puback_also_acknowledges() {
    // [MQTT-4.4.0-2]; 4.9: PUBACK returns the quota whatever its reason code.
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    let a = poll(&mut session, t0);
    session.handle_puback(a.packet_id.unwrap()).unwrap();
    session.detach();
    assert!(session.attach(v5(1)).is_empty());
}

#[test]
fn shrinking_max_inflight_holds_new_sends_until_acks_catch_up() {
    let t0 = Instant::now();
    let mut session = attached(10);
    for _ in 0..5 {
        enqueue(&mut session, delivery("t", QoS::AtLeastOnce), t0);
    }
    let ids: Vec<u16> = (0..3)
        .map(|_| poll(&mut session, t0).packet_id.unwrap())
        .collect();
    session.set_limits(SessionLimits {
        max_inflight: 2,
        ..limits()
    });
    assert_eq!(session.poll_publish(t0), None);
    session.handle_puback(ids[0]).unwrap();
    assert_eq!(session.poll_publish(t0), None, "still 2 in flight");
    session.handle_puback(ids[1]).unwrap();
    assert!(session.poll_publish(t0).is_some());
}

// ---- acknowledgements that do not fit ----

#[test]
fn ack_of_an_unknown_id_is_an_error() {
    // [MQTT-2.2.1-5]
    let mut session = attached(10);
    assert_eq!(
        session.handle_puback(9),
        Err(SessionError::UnknownPacketId {
            received: AckKind::PubAck,
            packet_id: 9
        })
    );
    assert_eq!(
        session.handle_pubrec(&Ack::new(9)),
        Err(SessionError::UnknownPacketId {
            received: AckKind::PubRec,
            packet_id: 9
        })
    );
    assert_eq!(
        session.handle_pubcomp(9),
        Err(SessionError::UnknownPacketId {
            received: AckKind::PubComp,
            packet_id: 9
        })
    );
    let error = session.handle_puback(0).unwrap_err();
    assert!(error.to_string().contains("[MQTT-2.2.1-5]"));
    assert_eq!(error.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn ack_of_the_wrong_kind_is_an_error_and_changes_nothing() {
    // [MQTT-4.3.2-3] QoS 1 ends with PUBACK, [MQTT-4.3.3-3] QoS 2 continues with PUBREC,
    // [MQTT-4.3.3-5] PUBCOMP answers a PUBREL.
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("q1", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("q2", QoS::ExactlyOnce), t0);
    let q1 = poll(&mut session, t0).packet_id.unwrap();
    let q2 = poll(&mut session, t0).packet_id.unwrap();

    assert_eq!(
        session.handle_puback(q2),
        Err(SessionError::UnexpectedAck {
            received: AckKind::PubAck,
            expected: AckKind::PubRec,
            packet_id: q2
        })
    );
    assert_eq!(
        session.handle_pubrec(&Ack::new(q1)),
        Err(SessionError::UnexpectedAck {
            received: AckKind::PubRec,
            expected: AckKind::PubAck,
            packet_id: q1
        })
    );
    assert_eq!(
        session.handle_pubcomp(q2),
        Err(SessionError::UnexpectedAck {
            received: AckKind::PubComp,
            expected: AckKind::PubRec,
            packet_id: q2
        })
    );
    assert_eq!(
        session.handle_pubcomp(q1),
        Err(SessionError::UnexpectedAck {
            received: AckKind::PubComp,
            expected: AckKind::PubAck,
            packet_id: q1
        })
    );
    assert_eq!(session.inflight_len(), 2);

    session.handle_pubrec(&Ack::new(q2)).unwrap();
    assert_eq!(
        session.handle_puback(q2),
        Err(SessionError::UnexpectedAck {
            received: AckKind::PubAck,
            expected: AckKind::PubComp,
            packet_id: q2
        })
    );
    session.handle_puback(q1).unwrap();
    session.handle_pubcomp(q2).unwrap();
    assert_eq!(session.inflight_len(), 0);
}

#[test]
fn a_repeated_pubrec_gets_the_pubrel_again() {
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("q2", QoS::ExactlyOnce), t0);
    let id = poll(&mut session, t0).packet_id.unwrap();
    assert_eq!(session.handle_pubrec(&Ack::new(id)), Ok(Some(Ack::new(id))));
    assert_eq!(session.handle_pubrec(&Ack::new(id)), Ok(Some(Ack::new(id))));
    assert_eq!(session.inflight_len(), 1);
}

// ---- resending on attach ----

#[test]
fn unacknowledged_qos1_is_resent_with_dup_and_the_same_id() {
    // [MQTT-4.4.0-1] same packet id, [MQTT-3.3.1-1] DUP=1 on a resend.
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    let sent = poll(&mut session, t0);
    session.detach();
    assert!(!session.is_attached());
    assert_eq!(session.poll_publish(t0), None);

    let resent = session.attach(v5(10));
    assert_eq!(resent.len(), 1);
    let Some(Packet::Publish(publish)) = resent.first() else {
        panic!("expected a PUBLISH, got {resent:?}");
    };
    assert!(publish.dup);
    assert_eq!(publish.packet_id, sent.packet_id);
    assert_eq!(
        Publish {
            dup: false,
            ..publish.clone()
        },
        sent
    );
    session.handle_puback(sent.packet_id.unwrap()).unwrap();
    assert_eq!(session.inflight_len(), 0);
}

#[test]
fn pubrec_then_reconnect_resends_pubrel_not_publish() {
    // [MQTT-4.4.0-1] PUBREL is resent; [MQTT-4.3.3-6] the PUBLISH is never sent again once
    // the PUBREL was.
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("a", QoS::ExactlyOnce), t0);
    let id = poll(&mut session, t0).packet_id.unwrap();
    assert_eq!(session.handle_pubrec(&Ack::new(id)), Ok(Some(Ack::new(id))));
    session.detach();
    let resent = session.attach(v5(10));
    assert_eq!(resent, vec![Packet::PubRel(Ack::new(id))]);
    session.handle_pubcomp(id).unwrap();
    assert_eq!(session.inflight_len(), 0);
}

#[test]
fn resends_follow_the_original_send_order() {
    // [MQTT-4.6.0-1], [MQTT-4.4.0-1]
    let t0 = Instant::now();
    let mut session = attached(100);
    for topic in ["a", "b", "c", "d", "e"] {
        let qos = if topic == "b" || topic == "d" {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        enqueue(&mut session, delivery(topic, qos), t0);
    }
    let ids: Vec<u16> = (0..5)
        .map(|_| poll(&mut session, t0).packet_id.unwrap())
        .collect();
    let [a, b, c, _d, e] = ids.as_slice() else {
        panic!()
    };
    session.handle_pubrec(&Ack::new(*b)).unwrap(); // b: PUBREL owed
    session.handle_puback(*c).unwrap(); // c: done
    session.handle_puback(*a).unwrap(); // a: done
                                        // Reuse an id so that order is not id order: f takes a fresh id after e's.
    enqueue(&mut session, delivery("f", QoS::AtLeastOnce), t0);
    let f = poll(&mut session, t0).packet_id.unwrap();
    session.handle_puback(*e).unwrap();
    session.detach();

    let resent = session.attach(v5(100));
    assert_eq!(
        topics(&resent),
        vec![
            format!("PUBREL {b}"),
            format!("PUBLISH d Some({})", ids[3]),
            format!("PUBLISH f Some({f})"),
        ]
    );
    assert!(resent.iter().all(|packet| match packet {
        Packet::Publish(publish) => publish.dup,
        _ => true,
    }));
}

#[test]
fn a_resumed_311_session_resends_everything_in_flight() {
    // 3.1.1 [MQTT-4.4.0-1]: unacknowledged PUBLISH and PUBREL are re-sent on reconnect.
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    session.attach(ClientParams::v3(ProtocolVersion::V3_1_1));
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("b", QoS::ExactlyOnce), t0);
    enqueue(&mut session, delivery("c", QoS::ExactlyOnce), t0);
    let a = poll(&mut session, t0).packet_id.unwrap();
    let b = poll(&mut session, t0).packet_id.unwrap();
    let c = poll(&mut session, t0).packet_id.unwrap();
    session.handle_pubrec(&Ack::new(b)).unwrap();
    session.detach();
    let resent = session.attach(ClientParams::v3(ProtocolVersion::V3_1_1));
    assert_eq!(
        topics(&resent),
        vec![
            format!("PUBLISH a Some({a})"),
            format!("PUBREL {b}"),
            format!("PUBLISH c Some({c})"),
        ]
    );
}

#[test]
fn resends_beyond_a_smaller_window_wait_for_acknowledgements() {
    // 4.9: the quota is per connection; [MQTT-3.3.4-9] holds on the new connection too.
    // The held-back resends keep DUP=1, their ids and their order, and go before new messages.
    let t0 = Instant::now();
    let mut session = attached(10);
    for topic in ["a", "b", "c", "d"] {
        enqueue(&mut session, delivery(topic, QoS::AtLeastOnce), t0);
    }
    let ids: Vec<u16> = (0..4)
        .map(|_| poll(&mut session, t0).packet_id.unwrap())
        .collect();
    session.detach();
    enqueue(&mut session, delivery("new", QoS::AtLeastOnce), t0);

    let resent = session.attach(v5(2));
    assert_eq!(
        topics(&resent),
        vec![
            format!("PUBLISH a Some({})", ids[0]),
            format!("PUBLISH b Some({})", ids[1]),
        ]
    );
    assert_eq!(session.poll_publish(t0), None);
    assert!(session.has_pending());
    session.handle_puback(ids[0]).unwrap();
    let c = poll(&mut session, t0);
    assert_eq!(
        (c.topic.as_str(), c.packet_id, c.dup),
        ("c", Some(ids[2]), true)
    );
    assert_eq!(session.poll_publish(t0), None);
    session.handle_puback(ids[1]).unwrap();
    session.handle_puback(ids[2]).unwrap();
    let d = poll(&mut session, t0);
    assert_eq!(
        (d.topic.as_str(), d.packet_id, d.dup),
        ("d", Some(ids[3]), true)
    );
    let new = poll(&mut session, t0);
    assert_eq!((new.topic.as_str(), new.dup), ("new", false));
    assert!(!ids.contains(&new.packet_id.unwrap()));
}

#[test]
fn a_held_back_resend_acknowledged_early_is_not_resent() {
    let t0 = Instant::now();
    let mut session = attached(10);
    for topic in ["a", "b"] {
        enqueue(&mut session, delivery(topic, QoS::AtLeastOnce), t0);
    }
    let a = poll(&mut session, t0).packet_id.unwrap();
    let b = poll(&mut session, t0).packet_id.unwrap();
    session.detach();
    assert_eq!(session.attach(v5(1)).len(), 1);
    // The client acknowledges b, which it had received on the old connection.
    session.handle_puback(b).unwrap();
    session.handle_puback(a).unwrap();
    assert_eq!(session.poll_publish(t0), None);
    assert_eq!(session.inflight_len(), 0);
}

#[test]
fn pubrels_from_an_earlier_connection_do_not_use_the_new_quota() {
    // 4.9: the send quota is re-initialised per connection and PUBREL is not a PUBLISH; a
    // PUBCOMP for an old flow must not raise the quota above its initial value.
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("old", QoS::ExactlyOnce), t0);
    let old = poll(&mut session, t0).packet_id.unwrap();
    session.handle_pubrec(&Ack::new(old)).unwrap();
    session.detach();
    enqueue(&mut session, delivery("x", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("y", QoS::AtLeastOnce), t0);

    assert_eq!(session.attach(v5(1)), vec![Packet::PubRel(Ack::new(old))]);
    let x = poll(&mut session, t0);
    assert_eq!(x.topic, "x");
    session.handle_pubcomp(old).unwrap();
    assert_eq!(
        session.poll_publish(t0),
        None,
        "x still holds the only slot"
    );
    session.handle_puback(x.packet_id.unwrap()).unwrap();
    assert_eq!(poll(&mut session, t0).topic, "y");
}

#[test]
fn attach_while_attached_starts_a_new_quota() {
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("b", QoS::AtLeastOnce), t0);
    let a = poll(&mut session, t0);
    let resent = session.attach(v5(2));
    assert_eq!(
        topics(&resent),
        vec![format!("PUBLISH a {:?}", a.packet_id)]
    );
    assert_eq!(poll(&mut session, t0).topic, "b");
}

// ---- queue bounds ----

#[test]
fn the_queue_is_bounded_by_count_and_drops_the_new_message() {
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 2,
        ..limits()
    });
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("b", QoS::AtLeastOnce), t0);
    assert_eq!(
        session.enqueue(delivery("c", QoS::AtLeastOnce), t0),
        EnqueueOutcome::Dropped(DropReason::QueueFull)
    );
    assert_eq!(session.queued_len(), 2);
    let drops = session.take_drops();
    assert_eq!(drops.queue_full, 1);
    assert_eq!(drops.total(), 1);
    assert!(session.take_drops().is_empty(), "taking resets");

    // The old messages kept their places.
    session.attach(v5(10));
    assert_eq!(poll(&mut session, t0).topic, "a");
    assert_eq!(poll(&mut session, t0).topic, "b");
    assert_eq!(session.poll_publish(t0), None);
}

#[test]
fn the_queue_is_bounded_by_bytes() {
    let t0 = Instant::now();
    let item = delivery("t", QoS::AtLeastOnce);
    let size = item.message.size();
    let mut session = Session::new(SessionLimits {
        max_queued_bytes: 2 * size + 1,
        ..limits()
    });
    enqueue(&mut session, item.clone(), t0);
    enqueue(&mut session, item.clone(), t0);
    assert_eq!(session.queued_bytes(), 2 * size);
    assert_eq!(
        session.enqueue(item.clone(), t0),
        EnqueueOutcome::Dropped(DropReason::QueueBytesFull)
    );
    assert_eq!(session.take_drops().queue_bytes_full, 1);

    session.attach(v5(10));
    poll(&mut session, t0);
    assert_eq!(session.queued_bytes(), size);
    enqueue(&mut session, item, t0);
}

#[test]
fn one_message_larger_than_the_byte_bound_fits_an_empty_queue() {
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_queued_bytes: 4,
        ..limits()
    });
    enqueue(&mut session, delivery("big", QoS::AtLeastOnce), t0);
    assert_eq!(
        session.enqueue(delivery("big", QoS::AtLeastOnce), t0),
        EnqueueOutcome::Dropped(DropReason::QueueBytesFull)
    );
}

#[test]
fn a_full_queue_first_sheds_expired_messages_at_its_head() {
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 2,
        ..limits()
    });
    let short_lived = Message {
        expires_at: Some(t0 + Duration::from_secs(1)),
        ..message("short", b"x", QoS::AtLeastOnce)
    };
    enqueue(
        &mut session,
        Delivery::new(Arc::new(short_lived), QoS::AtLeastOnce, false),
        t0,
    );
    enqueue(&mut session, delivery("b", QoS::AtLeastOnce), t0);
    let later = t0 + Duration::from_secs(2);
    enqueue(&mut session, delivery("c", QoS::AtLeastOnce), later);
    assert_eq!(session.queued_len(), 2);
    let drops = session.take_drops();
    assert_eq!((drops.expired, drops.queue_full), (1, 0));
}

#[test]
fn qos0_offline_is_dropped_unless_configured() {
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    assert_eq!(
        session.enqueue(delivery("q0", QoS::AtMostOnce), t0),
        EnqueueOutcome::Dropped(DropReason::Qos0Offline)
    );
    enqueue(&mut session, delivery("q1", QoS::AtLeastOnce), t0);
    assert_eq!(session.take_drops().qos0_offline, 1);

    let mut session = Session::new(SessionLimits {
        queue_qos0_offline: true,
        ..limits()
    });
    enqueue(&mut session, delivery("q0", QoS::AtMostOnce), t0);
    session.attach(v5(10));
    assert_eq!(poll(&mut session, t0).topic, "q0");

    // Attached: QoS 0 is queued whatever the setting.
    let mut session = attached(10);
    enqueue(&mut session, delivery("q0", QoS::AtMostOnce), t0);
}

// ---- expiry ----

fn expiring(topic: &str, t0: Instant, seconds: u64) -> Delivery {
    let message = Message {
        properties: PublishProperties {
            message_expiry_interval: Some(u32::try_from(seconds).unwrap()),
            ..PublishProperties::default()
        },
        expires_at: Some(t0 + Duration::from_secs(seconds)),
        ..message(topic, b"x", QoS::AtLeastOnce)
    };
    Delivery::new(Arc::new(message), QoS::AtLeastOnce, false)
}

#[test]
fn the_expiry_interval_sent_is_what_remains() {
    // [MQTT-3.3.2-6]: the received value minus the time waited in the server.
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, expiring("a", t0, 10), t0);
    enqueue(&mut session, expiring("b", t0, 10), t0);
    enqueue(&mut session, expiring("c", t0, 10), t0);
    let a = poll(&mut session, t0);
    assert_eq!(a.properties.message_expiry_interval, Some(10));
    let b = poll(&mut session, t0 + Duration::from_millis(3500));
    assert_eq!(
        b.properties.message_expiry_interval,
        Some(7),
        "3 whole seconds waited"
    );
    let c = poll(&mut session, t0 + Duration::from_secs(4));
    assert_eq!(c.properties.message_expiry_interval, Some(6));
}

#[test]
fn a_message_that_expires_while_queued_is_dropped() {
    // [MQTT-3.3.2-5]
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, expiring("gone", t0, 5), t0);
    enqueue(&mut session, delivery("kept", QoS::AtLeastOnce), t0);
    let later = t0 + Duration::from_secs(5);
    assert_eq!(poll(&mut session, later).topic, "kept");
    assert_eq!(session.take_drops().expired, 1);
    assert_eq!(session.queued_bytes(), 0);
}

#[test]
fn an_expired_message_is_not_queued() {
    let t0 = Instant::now();
    let mut session = attached(10);
    assert_eq!(
        session.enqueue(expiring("late", t0, 1), t0 + Duration::from_secs(1)),
        EnqueueOutcome::Dropped(DropReason::Expired)
    );
    assert_eq!(session.take_drops().expired, 1);
}

#[test]
fn an_expired_message_blocked_by_the_window_is_still_dropped() {
    let t0 = Instant::now();
    let mut session = attached(1);
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    enqueue(&mut session, expiring("b", t0, 1), t0);
    enqueue(&mut session, delivery("c", QoS::AtMostOnce), t0);
    poll(&mut session, t0);
    let later = t0 + Duration::from_secs(2);
    assert_eq!(poll(&mut session, later).topic, "c");
    assert_eq!(session.take_drops().expired, 1);
}

#[test]
fn in_flight_messages_do_not_expire_and_resend_with_their_first_interval() {
    // [MQTT-4.3.3-7] no expiry once a QoS 2 PUBLISH was sent; [MQTT-3.3.2-5] only messages
    // not yet sent are deleted.
    let t0 = Instant::now();
    let mut session = attached(10);
    let mut q2 = expiring("q2", t0, 5);
    q2.qos = QoS::ExactlyOnce;
    enqueue(&mut session, expiring("q1", t0, 5), t0);
    enqueue(&mut session, q2, t0);
    let sent_at = t0 + Duration::from_secs(2);
    let q1 = poll(&mut session, sent_at);
    let q2 = poll(&mut session, sent_at);
    assert_eq!(q1.properties.message_expiry_interval, Some(3));
    session.detach();
    let resent = session.attach(v5(10));
    let expected: Vec<Packet> = [q1, q2]
        .into_iter()
        .map(|publish| {
            Packet::Publish(Publish {
                dup: true,
                ..publish
            })
        })
        .collect();
    assert_eq!(resent, expected);
}

// ---- maximum packet size ----

fn encoded_size(publish: &Publish, version: ProtocolVersion) -> u32 {
    let length = encoded_len(&Packet::Publish(publish.clone()), version).unwrap();
    u32::try_from(length).unwrap()
}

#[test]
fn a_publish_over_the_clients_maximum_packet_size_is_dropped() {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: discarded, as if sent; the next message goes on.
    let t0 = Instant::now();
    let mut probe = attached(10);
    enqueue(&mut probe, delivery("a", QoS::AtLeastOnce), t0);
    let size = encoded_size(&poll(&mut probe, t0), ProtocolVersion::V5);

    for (maximum, sent) in [(size - 1, false), (size, true)] {
        let mut session = Session::new(limits());
        session.attach(ClientParams {
            maximum_packet_size: Some(maximum),
            ..v5(10)
        });
        enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
        enqueue(&mut session, delivery("z", QoS::AtMostOnce), t0);
        let first = poll(&mut session, t0);
        let expected = if sent { "a" } else { "z" };
        assert_eq!(first.topic, expected, "maximum {maximum}, size {size}");
        let drops = session.take_drops();
        assert_eq!(drops.too_large_for_client, u64::from(!sent));
        assert_eq!(session.inflight_len(), usize::from(sent));
    }
}

#[test]
fn a_resend_over_a_smaller_maximum_packet_size_is_dropped() {
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, delivery("a", QoS::AtLeastOnce), t0);
    let sent = poll(&mut session, t0);
    session.detach();
    let resent = session.attach(ClientParams {
        maximum_packet_size: Some(encoded_size(&sent, ProtocolVersion::V5) - 1),
        ..v5(10)
    });
    assert!(resent.is_empty());
    assert_eq!(session.inflight_len(), 0);
    assert_eq!(session.take_drops().too_large_for_client, 1);
}

// ---- versions and properties ----

fn rich_delivery() -> Delivery {
    let message = Message {
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            response_topic: Some("reply".to_owned()),
            correlation_data: Some(Bytes::from_static(b"id")),
            user_properties: vec![("k".to_owned(), "v".to_owned())],
            content_type: Some("text/plain".to_owned()),
            ..PublishProperties::default()
        },
        ..message("t", b"body", QoS::ExactlyOnce)
    };
    Delivery {
        subscription_identifiers: vec![3, 70_000],
        ..Delivery::new(Arc::new(message), QoS::AtLeastOnce, true)
    }
}

#[test]
fn v5_clients_get_the_properties_and_subscription_identifiers() {
    // [MQTT-3.3.4-3] subscription identifiers; [MQTT-3.3.2-11] no alias the client did not
    // allow (this server sends none).
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, rich_delivery(), t0);
    let publish = poll(&mut session, t0);
    assert_eq!(
        publish.qos,
        QoS::AtLeastOnce,
        "the delivery's QoS, not the published one"
    );
    assert!(publish.retain);
    assert_eq!(publish.payload, Bytes::from_static(b"body"));
    let properties = &publish.properties;
    assert_eq!(properties.subscription_identifiers, vec![3, 70_000]);
    assert_eq!(properties.topic_alias, None);
    assert_eq!(properties.payload_format_indicator, Some(1));
    assert_eq!(properties.response_topic.as_deref(), Some("reply"));
    assert_eq!(properties.correlation_data, Some(Bytes::from_static(b"id")));
    assert_eq!(properties.user_properties.len(), 1);
    assert_eq!(properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(properties.message_expiry_interval, None);
}

#[test]
fn v3_clients_get_no_properties() {
    let t0 = Instant::now();
    for version in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1] {
        let mut session = Session::new(limits());
        session.attach(ClientParams::v3(version));
        enqueue(&mut session, rich_delivery(), t0);
        let publish = poll(&mut session, t0);
        assert_eq!(publish.properties, PublishProperties::default());
        assert_eq!(publish.topic, "t");
        assert_eq!(publish.packet_id, Some(1));
    }
}

// ---- shared subscriptions ----

#[test]
fn take_shared_returns_shared_qos1_and_queued_deliveries() {
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, shared("s-q1-unacked", QoS::AtLeastOnce), t0);
    enqueue(&mut session, shared("s-q2-released", QoS::ExactlyOnce), t0);
    enqueue(&mut session, delivery("own-q1", QoS::AtLeastOnce), t0);
    enqueue(&mut session, shared("s-q2-unacked", QoS::ExactlyOnce), t0);
    enqueue(&mut session, shared("s-q1-acked", QoS::AtLeastOnce), t0);
    let ids: Vec<u16> = (0..5)
        .map(|_| poll(&mut session, t0).packet_id.unwrap())
        .collect();
    session.handle_pubrec(&Ack::new(ids[1])).unwrap();
    session.handle_puback(ids[4]).unwrap();
    session.detach();
    enqueue(&mut session, shared("s-queued", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("own-queued", QoS::AtLeastOnce), t0);
    let bytes_before = session.queued_bytes();

    let taken = session.take_shared();
    let taken_topics: Vec<&str> = taken
        .iter()
        .map(|delivery| delivery.message.topic.as_str())
        .collect();
    // [MQTT-4.8.2-4]: a QoS 2 delivery already sent stays with this member.
    assert_eq!(taken_topics, vec!["s-q1-unacked", "s-queued"]);
    assert_eq!(session.queued_len(), 1);
    assert!(session.queued_bytes() < bytes_before);
    assert_eq!(
        session.inflight_len(),
        3,
        "the PUBREC'd one, the non-shared one and the unacknowledged QoS 2 one"
    );

    let resent = session.attach(v5(10));
    assert_eq!(
        topics(&resent),
        vec![
            format!("PUBREL {}", ids[1]),
            format!("PUBLISH own-q1 Some({})", ids[2]),
            format!("PUBLISH s-q2-unacked Some({})", ids[3]),
        ]
    );
    assert_eq!(poll(&mut session, t0).topic, "own-queued");
}

#[test]
fn clear_returns_the_shared_deliveries_and_forgets_everything() {
    let t0 = Instant::now();
    let mut session = attached(10);
    enqueue(&mut session, shared("s-inflight", QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery("own", QoS::ExactlyOnce), t0);
    poll(&mut session, t0);
    poll(&mut session, t0);
    enqueue(&mut session, shared("s-queued", QoS::AtMostOnce), t0);
    enqueue(&mut session, delivery("own-queued", QoS::AtLeastOnce), t0);
    assert_eq!(session.incoming_qos2(5), IncomingQos2::New);

    let taken = session.clear();
    let taken_topics: Vec<&str> = taken
        .iter()
        .map(|delivery| delivery.message.topic.as_str())
        .collect();
    assert_eq!(taken_topics, vec!["s-inflight", "s-queued"]);
    assert_eq!(session.queued_len(), 0);
    assert_eq!(session.queued_bytes(), 0);
    assert_eq!(session.inflight_len(), 0);
    assert_eq!(session.incoming_qos2_len(), 0);
    assert!(session.is_attached(), "clear does not detach");
    assert_eq!(session.poll_publish(t0), None);
    session.detach();
    assert!(session.attach(v5(10)).is_empty());
}

// ---- inbound QoS 2 ----

#[test]
fn incoming_qos2_duplicates_are_recognised_until_pubrel() {
    // [MQTT-4.3.3-10] a resend before PUBREL must not be routed again;
    // [MQTT-4.3.3-11] PUBREL answered; [MQTT-4.3.3-12] afterwards the id is a new message.
    let mut session = attached(10);
    assert_eq!(session.incoming_qos2(10), IncomingQos2::New);
    assert_eq!(session.incoming_qos2(11), IncomingQos2::New);
    assert_eq!(session.incoming_qos2(10), IncomingQos2::Duplicate);
    assert_eq!(session.incoming_qos2_len(), 2);
    assert_eq!(session.handle_pubrel(10), ReasonCode::SUCCESS);
    assert_eq!(session.incoming_qos2(10), IncomingQos2::New);
    assert_eq!(session.incoming_qos2_len(), 2);
}

#[test]
fn pubrel_for_an_unknown_id_reports_not_found() {
    // 3.7.2.1: PUBCOMP reason 0x92 Packet Identifier not found.
    let mut session = attached(10);
    assert_eq!(
        session.handle_pubrel(42),
        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
    );
    session.incoming_qos2(42);
    assert_eq!(session.handle_pubrel(42), ReasonCode::SUCCESS);
    assert_eq!(
        session.handle_pubrel(42),
        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
    );
}

#[test]
fn incoming_qos2_state_survives_a_reconnect() {
    // 4.1: QoS 2 messages received but not completely acknowledged are session state.
    let mut session = attached(10);
    session.incoming_qos2(7);
    session.detach();
    session.attach(v5(10));
    assert_eq!(session.incoming_qos2(7), IncomingQos2::Duplicate);
    assert_eq!(session.handle_pubrel(7), ReasonCode::SUCCESS);
}

#[test]
fn an_abandoned_incoming_id_starts_a_new_message() {
    // [MQTT-4.3.3-9]: after an error PUBREC the id is a new message.
    let mut session = attached(10);
    session.incoming_qos2(3);
    assert!(session.abandon_incoming_qos2(3));
    assert_eq!(session.incoming_qos2(3), IncomingQos2::New);
    assert!(!session.abandon_incoming_qos2(4));
}

// ---- misc ----

#[test]
fn session_can_move_between_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
    assert_send_sync::<Delivery>();
    assert_send_sync::<crate::InboundAliases>();
}

#[test]
fn drop_counts_list_only_non_zero_reasons() {
    let mut counts = DropCounts::default();
    counts.count(DropReason::Expired);
    counts.count(DropReason::Expired);
    counts.count(DropReason::QueueFull);
    let listed: Vec<(DropReason, u64)> = counts.iter().collect();
    assert_eq!(
        listed,
        vec![(DropReason::QueueFull, 1), (DropReason::Expired, 2)]
    );
    assert_eq!(counts.total(), 3);
    assert_eq!(DropReason::Expired.as_str(), "expired");
}

// ---- a send the server could not make durable ----

#[test]
fn an_unsent_publish_goes_back_to_the_head_of_the_queue_as_if_never_polled() {
    let now = Instant::now();
    let mut session = attached(2);
    enqueue(&mut session, delivery("a", QoS::ExactlyOnce), now);
    enqueue(&mut session, delivery("b", QoS::AtLeastOnce), now);
    enqueue(&mut session, delivery("c", QoS::AtLeastOnce), now);
    let first = poll(&mut session, now);
    let second = poll(&mut session, now);
    // The window (2) is full.
    assert!(session.poll_publish(now).is_none());
    // Both were refused by the store: taken back in reverse order.
    assert!(session.unsend(second.packet_id.unwrap()));
    assert!(session.unsend(first.packet_id.unwrap()));
    assert_eq!(session.inflight_len(), 0);
    assert_eq!(session.queued_len(), 3);
    // A PUBREC for the id is now unknown: the flow is gone.
    assert!(session
        .handle_pubrec(&Ack::new(first.packet_id.unwrap()))
        .is_err());
    // Sent again in the original order, as new (no DUP), window restored.
    let again: Vec<Publish> = (0..2).map(|_| poll(&mut session, now)).collect();
    assert_eq!(again[0].topic, "a");
    assert_eq!(again[1].topic, "b");
    assert!(!again[0].dup && !again[1].dup);
    assert!(session.poll_publish(now).is_none());
}

#[test]
fn only_a_flow_awaiting_its_first_acknowledgement_can_be_unsent() {
    let now = Instant::now();
    let mut session = attached(10);
    assert!(!session.unsend(1));
    enqueue(&mut session, delivery("a", QoS::ExactlyOnce), now);
    let publish = poll(&mut session, now);
    let packet_id = publish.packet_id.unwrap();
    // Released (PUBREC came back): the client has it; nothing to take back.
    assert!(session
        .handle_pubrec(&Ack::new(packet_id))
        .unwrap()
        .is_some());
    assert!(!session.unsend(packet_id));
    assert_eq!(session.inflight_len(), 1);
    assert_eq!(session.queued_len(), 0);
}

// ---- memory of an idle session ----

/// Sizes every connected client pays for, idle or not; printed with
/// `--nocapture`. The bounds catch a field added in passing.
#[test]
fn an_idle_session_is_small() {
    use std::mem::size_of;
    let sizes = [
        ("Session", size_of::<Session>(), 56),
        ("InFlight", size_of::<InFlight>(), 24),
        (
            "Option<ClientParams>",
            size_of::<Option<ClientParams>>(),
            12,
        ),
        // Only sessions with traffic have one (boxed).
        ("Traffic", size_of::<Traffic>(), 168),
    ];
    for (name, size, bound) in sizes {
        println!("{name}: {size} bytes (bound {bound})");
        assert!(size <= bound, "{name} is {size} bytes, bound {bound}");
    }
}

#[test]
fn a_session_without_traffic_allocates_nothing_for_it() {
    let t0 = Instant::now();
    let mut session = attached(10);
    assert!(session.poll_publish(t0).is_none());
    assert!(session.take_drops().is_empty());
    let mut journal = Vec::new();
    session.take_journal(&mut journal);
    assert!(!session.has_pending());
    assert_eq!(
        session.handle_pubrel(3),
        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
    );
    assert!(!session.abandon_incoming_qos2(3));
    session.set_journaling(true);
    session.set_journaling(false);
    assert!(session.traffic.get().is_none());
}

#[test]
fn traffic_state_is_freed_once_empty_at_shrink_detach_and_clear() {
    let t0 = Instant::now();
    // Shrink: kept while anything is left, freed once all is sent and collected.
    let mut session = attached(10);
    enqueue(&mut session, delivery("t", QoS::AtMostOnce), t0);
    session.shrink();
    assert!(session.traffic.get().is_some(), "a message is queued");
    poll(&mut session, t0);
    assert!(session.traffic.get().is_some(), "kept on the hot path");
    session.shrink();
    assert!(session.traffic.get().is_none());

    // Uncollected drops keep it: they are still to be counted.
    let mut session = attached(10);
    session.set_journaling(true);
    enqueue(&mut session, delivery("t", QoS::AtLeastOnce), t0);
    poll(&mut session, t0);
    session.detach();
    assert!(session.traffic.get().is_some(), "journal events not taken");
    let mut journal = Vec::new();
    session.take_journal(&mut journal);
    assert_eq!(journal.len(), 1);
    session.shrink();
    assert!(
        session.traffic.get().is_none(),
        "in flight is not traffic state"
    );
    assert_eq!(session.inflight_len(), 1);

    // Turning journaling off discards the events, and with them the state.
    let mut session = attached(10);
    session.set_journaling(true);
    enqueue(&mut session, delivery("t", QoS::AtMostOnce), t0);
    poll(&mut session, t0);
    session.set_journaling(false);
    assert!(session.traffic.get().is_none());

    // Detach with nothing left frees it; an inbound QoS 2 id keeps it.
    let mut session = attached(10);
    assert_eq!(session.incoming_qos2(7), IncomingQos2::New);
    session.detach();
    assert_eq!(
        session.incoming_qos2_len(),
        1,
        "kept across connections (4.1)"
    );
    assert_eq!(session.handle_pubrel(7), ReasonCode::SUCCESS);
    session.detach();
    assert!(session.traffic.get().is_none());

    // Clear frees it unless drops are left to collect.
    let mut session = Session::new(limits());
    enqueue(&mut session, delivery("t", QoS::AtLeastOnce), t0);
    assert_eq!(
        session.enqueue(delivery("t", QoS::AtMostOnce), t0),
        EnqueueOutcome::Dropped(DropReason::Qos0Offline)
    );
    session.clear();
    assert!(session.traffic.get().is_some(), "one drop to collect");
    assert_eq!(session.take_drops().qos0_offline, 1);
    session.clear();
    assert!(session.traffic.get().is_none());
}

#[test]
fn shared_limits_are_not_copied() {
    let limits = Arc::new(limits());
    let mut one = Session::with_shared_limits(limits.clone());
    let two = Session::with_shared_limits(limits.clone());
    assert_eq!(Arc::strong_count(&limits), 3);
    assert_eq!(one.limits(), two.limits());
    one.set_limits(SessionLimits {
        max_inflight: 1,
        ..*limits
    });
    assert_eq!(Arc::strong_count(&limits), 2);
    assert_eq!(one.limits().max_inflight, 1);
    one.set_shared_limits(limits);
    assert_eq!(one.limits(), two.limits());
}
