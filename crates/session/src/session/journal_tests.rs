//! Journal events on every path, restore, and a journal -> model -> restore
//! round trip over random operation sequences.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_codec::{encoded_len, Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

use super::*;
use crate::journal::JournalEvent::{Completed, Released, Removed, Sent, SentQos0};
use crate::message::{Message, SharedMessage};

fn limits() -> SessionLimits {
    SessionLimits {
        max_queued_messages: 1000,
        max_queued_bytes: 1 << 20,
        max_inflight: u16::MAX,
        queue_qos0_offline: true,
    }
}

fn v5(receive_maximum: u16) -> ClientParams {
    ClientParams {
        version: ProtocolVersion::V5,
        receive_maximum,
        maximum_packet_size: None,
    }
}

fn message_with(id: u64, payload: Bytes, expires_at: Option<Instant>) -> SharedMessage {
    Arc::new(Message {
        id,
        topic: format!("t/{id}"),
        payload,
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at,
    })
}

/// A delivery of message `id` (topic `t/{id}`) at `qos`.
fn delivery(id: u64, qos: QoS) -> Delivery {
    Delivery::new(message_with(id, Bytes::from_static(b"p"), None), qos, false)
}

fn shared(id: u64, qos: QoS) -> Delivery {
    Delivery {
        shared_group: Some(Arc::from("group")),
        ..delivery(id, qos)
    }
}

fn big(id: u64, qos: QoS) -> Delivery {
    Delivery::new(
        message_with(id, Bytes::from(vec![0; 200]), None),
        qos,
        false,
    )
}

fn expiring(id: u64, qos: QoS, at: Instant) -> Delivery {
    Delivery::new(
        message_with(id, Bytes::from_static(b"p"), Some(at)),
        qos,
        false,
    )
}

/// A new session with journaling on, attached with this Receive Maximum.
fn journaled(receive_maximum: u16) -> Session {
    let mut session = Session::new(limits());
    session.set_journaling(true);
    assert!(session.attach(v5(receive_maximum)).is_empty());
    session
}

fn enqueue(session: &mut Session, delivery: Delivery, now: Instant) {
    assert_eq!(session.enqueue(delivery, now), EnqueueOutcome::Queued);
}

fn poll(session: &mut Session, now: Instant) -> Publish {
    session.poll_publish(now).expect("a PUBLISH to send")
}

fn poll_id(session: &mut Session, now: Instant) -> u16 {
    poll(session, now).packet_id.expect("a packet id")
}

fn journal(session: &mut Session) -> Vec<JournalEvent> {
    let mut events = Vec::new();
    session.take_journal(&mut events);
    events
}

fn encoded_size(publish: &Publish) -> u32 {
    let length = encoded_len(&Packet::Publish(publish.clone()), ProtocolVersion::V5).unwrap();
    u32::try_from(length).unwrap()
}

/// `(message id, shared, qos)` of each queued delivery, in queue order.
fn queue_state(session: &Session) -> Vec<(u64, bool, QoS)> {
    session
        .traffic
        .get()
        .into_iter()
        .flat_map(|traffic| traffic.queue.iter())
        .map(|queued| {
            let delivery = &queued.delivery;
            (
                delivery.message.id,
                delivery.shared_group.is_some(),
                delivery.qos,
            )
        })
        .collect()
}

/// `(packet id, message id, released)` of each flow, in send order.
fn inflight_state(session: &Session) -> Vec<(u16, u64, bool)> {
    session
        .inflight
        .order()
        .filter_map(|(_, packet_id)| {
            let entry = session.inflight.get(packet_id)?;
            Some((
                packet_id,
                entry.state.message_id(),
                matches!(entry.state, FlowState::Released { .. }),
            ))
        })
        .collect()
}

// ---- each path ----

#[test]
fn first_sends_are_journaled_by_qos() {
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, delivery(10, QoS::AtMostOnce), t0);
    enqueue(&mut session, delivery(11, QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery(12, QoS::ExactlyOnce), t0);
    assert!(
        journal(&mut session).is_empty(),
        "enqueue itself is not journaled"
    );
    poll(&mut session, t0);
    let q1 = poll_id(&mut session, t0);
    let q2 = poll_id(&mut session, t0);
    assert_eq!(
        journal(&mut session),
        vec![
            SentQos0 { message_id: 10 },
            Sent {
                message_id: 11,
                packet_id: q1,
                qos: QoS::AtLeastOnce
            },
            Sent {
                message_id: 12,
                packet_id: q2,
                qos: QoS::ExactlyOnce
            },
        ]
    );
}

#[test]
fn resends_are_not_journaled() {
    let t0 = Instant::now();
    let mut session = journaled(10);
    for id in 1..=3 {
        enqueue(&mut session, delivery(id, QoS::AtLeastOnce), t0);
    }
    let ids: Vec<u16> = (0..3).map(|_| poll_id(&mut session, t0)).collect();
    journal(&mut session);
    session.detach();
    // Two resent at attach, one held back and resent by poll_publish.
    assert_eq!(session.attach(v5(2)).len(), 2);
    session.handle_puback(ids[0]).unwrap();
    let held_back = poll(&mut session, t0);
    assert!(held_back.dup);
    assert_eq!(
        journal(&mut session),
        vec![Completed {
            packet_id: ids[0],
            message_id: 1
        }]
    );
}

#[test]
fn acknowledgements_are_journaled() {
    // PUBACK ends a QoS 1 flow; PUBREC moves QoS 2 to PUBREL; PUBCOMP ends it, still naming
    // the message, which was discarded at PUBREC ([MQTT-4.3.3-4]).
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, delivery(21, QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery(22, QoS::ExactlyOnce), t0);
    let q1 = poll_id(&mut session, t0);
    let q2 = poll_id(&mut session, t0);
    journal(&mut session);

    session.handle_puback(q1).unwrap();
    session.handle_pubrec(&Ack::new(q2)).unwrap();
    session.handle_pubrec(&Ack::new(q2)).unwrap(); // a repeat: PUBREL again, no event
    session.handle_pubcomp(q2).unwrap();
    assert_eq!(
        journal(&mut session),
        vec![
            Completed {
                packet_id: q1,
                message_id: 21
            },
            Released { packet_id: q2 },
            Completed {
                packet_id: q2,
                message_id: 22
            },
        ]
    );
}

#[test]
fn an_error_pubrec_completes_the_flow() {
    // [MQTT-4.4.0-2]: a PUBREC of 0x80 or more ends the flow.
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, delivery(31, QoS::ExactlyOnce), t0);
    let id = poll_id(&mut session, t0);
    journal(&mut session);
    let refused = Ack::with_reason(id, ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(session.handle_pubrec(&refused), Ok(None));
    assert_eq!(
        journal(&mut session),
        vec![Completed {
            packet_id: id,
            message_id: 31
        }]
    );
}

#[test]
fn acknowledgements_that_do_not_fit_are_not_journaled() {
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, delivery(41, QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery(42, QoS::ExactlyOnce), t0);
    let q1 = poll_id(&mut session, t0);
    let q2 = poll_id(&mut session, t0);
    journal(&mut session);
    session.handle_puback(999).unwrap_err();
    session.handle_puback(q2).unwrap_err();
    session.handle_pubrec(&Ack::new(q1)).unwrap_err();
    session.handle_pubcomp(q2).unwrap_err();
    session.handle_pubcomp(q1).unwrap_err();
    assert!(journal(&mut session).is_empty());
}

#[test]
fn deliveries_expired_in_the_queue_are_removed() {
    // [MQTT-3.3.2-5]: dropped by poll_publish, and at the head of a full queue by enqueue.
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(5);
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 2,
        ..limits()
    });
    session.set_journaling(true);
    enqueue(&mut session, expiring(51, QoS::AtLeastOnce, later), t0);
    enqueue(&mut session, expiring(52, QoS::AtMostOnce, later), t0);
    enqueue(&mut session, delivery(53, QoS::AtLeastOnce), later);
    assert_eq!(
        journal(&mut session),
        vec![
            Removed {
                message_id: 51,
                packet_id: None
            },
            Removed {
                message_id: 52,
                packet_id: None
            },
        ]
    );

    let mut session = journaled(10);
    enqueue(&mut session, expiring(54, QoS::ExactlyOnce, later), t0);
    enqueue(&mut session, delivery(55, QoS::AtMostOnce), t0);
    assert_eq!(poll(&mut session, later).topic, "t/55");
    assert_eq!(
        journal(&mut session),
        vec![
            Removed {
                message_id: 54,
                packet_id: None
            },
            SentQos0 { message_id: 55 },
        ]
    );
}

#[test]
fn deliveries_refused_by_enqueue_are_not_journaled() {
    // They were never queued.
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 1,
        queue_qos0_offline: false,
        ..limits()
    });
    session.set_journaling(true);
    let outcomes = [
        session.enqueue(delivery(61, QoS::AtMostOnce), t0),
        session.enqueue(expiring(62, QoS::AtLeastOnce, t0), t0),
        session.enqueue(delivery(63, QoS::AtLeastOnce), t0),
        session.enqueue(delivery(64, QoS::AtLeastOnce), t0),
    ];
    assert_eq!(
        outcomes,
        [
            EnqueueOutcome::Dropped(DropReason::Qos0Offline),
            EnqueueOutcome::Dropped(DropReason::Expired),
            EnqueueOutcome::Queued,
            EnqueueOutcome::Dropped(DropReason::QueueFull),
        ]
    );
    assert!(journal(&mut session).is_empty());
}

#[test]
fn a_first_send_too_large_for_the_client_is_removed_from_the_queue() {
    // [MQTT-3.1.2-25]
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    session.set_journaling(true);
    session.attach(ClientParams {
        maximum_packet_size: Some(100),
        ..v5(10)
    });
    enqueue(&mut session, big(71, QoS::AtLeastOnce), t0);
    enqueue(&mut session, big(72, QoS::AtMostOnce), t0);
    enqueue(&mut session, delivery(73, QoS::AtMostOnce), t0);
    assert_eq!(poll(&mut session, t0).topic, "t/73");
    assert_eq!(
        journal(&mut session),
        vec![
            Removed {
                message_id: 71,
                packet_id: None
            },
            Removed {
                message_id: 72,
                packet_id: None
            },
            SentQos0 { message_id: 73 },
        ]
    );
}

#[test]
fn a_resend_too_large_for_the_client_is_removed_from_flight() {
    // [MQTT-3.1.2-25], at attach and for a resend held back by the window.
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, big(81, QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery(82, QoS::AtLeastOnce), t0);
    enqueue(&mut session, big(83, QoS::ExactlyOnce), t0);
    let first = poll(&mut session, t0);
    let ids = [
        first.packet_id.unwrap(),
        poll_id(&mut session, t0),
        poll_id(&mut session, t0),
    ];
    assert!(encoded_size(&first) > 100);
    journal(&mut session);
    session.detach();
    let resent = session.attach(ClientParams {
        maximum_packet_size: Some(100),
        ..v5(1)
    });
    // 81 is dropped at attach; 82 takes the only slot; 83 is held back.
    assert_eq!(resent.len(), 1);
    assert_eq!(
        journal(&mut session),
        vec![Removed {
            message_id: 81,
            packet_id: Some(ids[0])
        }]
    );
    session.handle_puback(ids[1]).unwrap();
    assert_eq!(session.poll_publish(t0), None);
    assert_eq!(
        journal(&mut session),
        vec![
            Completed {
                packet_id: ids[1],
                message_id: 82
            },
            Removed {
                message_id: 83,
                packet_id: Some(ids[2])
            },
        ]
    );
    assert_eq!(session.inflight_len(), 0);
}

#[test]
fn take_shared_journals_every_delivery_it_returns() {
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, shared(91, QoS::AtLeastOnce), t0);
    enqueue(&mut session, shared(92, QoS::ExactlyOnce), t0);
    enqueue(&mut session, delivery(93, QoS::AtLeastOnce), t0);
    let s1 = poll_id(&mut session, t0);
    poll_id(&mut session, t0);
    poll_id(&mut session, t0);
    session.detach();
    enqueue(&mut session, delivery(94, QoS::AtLeastOnce), t0);
    enqueue(&mut session, shared(95, QoS::AtMostOnce), t0);
    journal(&mut session);

    let taken: Vec<u64> = session
        .take_shared()
        .iter()
        .map(|delivery| delivery.message.id)
        .collect();
    assert_eq!(taken, vec![91, 95]);
    assert_eq!(
        journal(&mut session),
        vec![
            Removed {
                message_id: 91,
                packet_id: Some(s1)
            },
            Removed {
                message_id: 95,
                packet_id: None
            },
        ]
    );
}

#[test]
fn clear_journals_every_delivery_queued_or_in_flight() {
    let t0 = Instant::now();
    let mut session = journaled(10);
    enqueue(&mut session, shared(101, QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery(102, QoS::ExactlyOnce), t0);
    enqueue(&mut session, delivery(103, QoS::ExactlyOnce), t0);
    let ids: Vec<u16> = (0..3).map(|_| poll_id(&mut session, t0)).collect();
    session.handle_pubrec(&Ack::new(ids[2])).unwrap();
    enqueue(&mut session, delivery(104, QoS::AtLeastOnce), t0);
    enqueue(&mut session, shared(105, QoS::AtLeastOnce), t0);
    session.incoming_qos2(7);
    journal(&mut session);

    let taken: Vec<u64> = session
        .clear()
        .iter()
        .map(|delivery| delivery.message.id)
        .collect();
    assert_eq!(taken, vec![101, 105]);
    assert_eq!(
        journal(&mut session),
        vec![
            // take_shared's part first.
            Removed {
                message_id: 101,
                packet_id: Some(ids[0])
            },
            Removed {
                message_id: 105,
                packet_id: None
            },
            // Then the rest in flight, in send order, whatever the stage.
            Removed {
                message_id: 102,
                packet_id: Some(ids[1])
            },
            Removed {
                message_id: 103,
                packet_id: Some(ids[2])
            },
            // Then the rest of the queue.
            Removed {
                message_id: 104,
                packet_id: None
            },
        ]
    );
}

/// Takes every recording path once: sends, acknowledgements, both drops,
/// take_shared and clear.
fn every_path(journaling: bool) -> Session {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(1);
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 3,
        ..limits()
    });
    session.set_journaling(journaling);
    session.attach(ClientParams {
        maximum_packet_size: Some(100),
        ..v5(10)
    });
    enqueue(&mut session, delivery(1, QoS::AtMostOnce), t0);
    enqueue(&mut session, delivery(2, QoS::AtLeastOnce), t0);
    enqueue(&mut session, delivery(3, QoS::ExactlyOnce), t0);
    let mut ids: Vec<u16> = std::iter::from_fn(|| session.poll_publish(t0))
        .filter_map(|publish| publish.packet_id)
        .collect();
    enqueue(&mut session, delivery(4, QoS::ExactlyOnce), t0);
    ids.push(poll_id(&mut session, t0));
    session.handle_puback(ids[0]).unwrap();
    session.handle_pubrec(&Ack::new(ids[1])).unwrap();
    session.handle_pubcomp(ids[1]).unwrap();
    session
        .handle_pubrec(&Ack::with_reason(ids[2], ReasonCode::UNSPECIFIED_ERROR))
        .unwrap();
    enqueue(&mut session, expiring(5, QoS::AtLeastOnce, later), t0);
    enqueue(&mut session, big(6, QoS::AtLeastOnce), t0);
    enqueue(&mut session, shared(7, QoS::AtLeastOnce), t0);
    // The queue is full: 5, expired, is shed to make room.
    enqueue(&mut session, delivery(8, QoS::AtLeastOnce), later);
    // 6 is too large for the client.
    assert_eq!(poll(&mut session, later).topic, "t/7");
    session.detach();
    session.take_shared();
    session.clear();
    assert_eq!(session.take_drops().total(), 2);
    session
}

#[test]
fn journaling_off_records_and_allocates_nothing() {
    let mut session = every_path(false);
    assert!(!session.is_journaling());
    assert!(journal(&mut session).is_empty());
    assert_eq!(session.journal_capacity(), 0);

    // The same calls with journaling on: one event per step.
    let mut session = every_path(true);
    assert_eq!(
        journal(&mut session),
        vec![
            SentQos0 { message_id: 1 },
            Sent {
                message_id: 2,
                packet_id: 1,
                qos: QoS::AtLeastOnce
            },
            Sent {
                message_id: 3,
                packet_id: 2,
                qos: QoS::ExactlyOnce
            },
            Sent {
                message_id: 4,
                packet_id: 3,
                qos: QoS::ExactlyOnce
            },
            Completed {
                packet_id: 1,
                message_id: 2
            },
            Released { packet_id: 2 },
            Completed {
                packet_id: 2,
                message_id: 3
            },
            Completed {
                packet_id: 3,
                message_id: 4
            },
            Removed {
                message_id: 5,
                packet_id: None
            },
            Removed {
                message_id: 6,
                packet_id: None
            },
            // Id 4 went to 6, which proved too large; it was never used.
            Sent {
                message_id: 7,
                packet_id: 5,
                qos: QoS::AtLeastOnce
            },
            Removed {
                message_id: 7,
                packet_id: Some(5)
            },
            Removed {
                message_id: 8,
                packet_id: None
            },
        ]
    );
}

#[test]
fn take_journal_appends_and_turning_journaling_off_discards() {
    let t0 = Instant::now();
    let mut session = journaled(10);
    for id in 1..=4 {
        enqueue(&mut session, delivery(id, QoS::AtMostOnce), t0);
    }
    poll(&mut session, t0);
    let mut out = vec![SentQos0 { message_id: 0 }];
    session.take_journal(&mut out);
    session.take_journal(&mut out);
    assert_eq!(
        out,
        vec![SentQos0 { message_id: 0 }, SentQos0 { message_id: 1 }],
        "appended, and taken once"
    );

    poll(&mut session, t0);
    session.set_journaling(false);
    assert!(!session.is_journaling());
    assert_eq!(session.journal_capacity(), 0, "the buffer is freed");
    poll(&mut session, t0);
    session.set_journaling(true);
    poll(&mut session, t0);
    assert_eq!(
        journal(&mut session),
        vec![SentQos0 { message_id: 4 }],
        "nothing from before journaling was turned off"
    );
}

// ---- restore ----

#[test]
fn restore_queued_bypasses_the_limits_and_keeps_the_order() {
    let t0 = Instant::now();
    let mut session = Session::new(SessionLimits {
        max_queued_messages: 2,
        max_queued_bytes: 1,
        queue_qos0_offline: false,
        ..limits()
    });
    session.set_journaling(true);
    for id in 1..=5 {
        let qos = if id == 3 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        session.restore_queued(delivery(id, qos));
    }
    assert_eq!(session.queued_len(), 5);
    assert_eq!(
        session.queued_bytes(),
        5 * delivery(1, QoS::AtMostOnce).message.size()
    );
    assert!(journal(&mut session).is_empty(), "restore emits nothing");
    assert_eq!(
        session.enqueue(delivery(6, QoS::AtLeastOnce), t0),
        EnqueueOutcome::Dropped(DropReason::QueueFull)
    );
    session.attach(v5(10));
    let topics: Vec<String> = std::iter::from_fn(|| session.poll_publish(t0))
        .map(|publish| publish.topic)
        .collect();
    assert_eq!(topics, ["t/1", "t/2", "t/3", "t/4", "t/5"]);
    assert_eq!(session.queued_bytes(), 0);
}

#[test]
fn a_restored_unreleased_flow_is_resent_with_dup_and_its_id() {
    // [MQTT-4.4.0-1] same packet id, [MQTT-3.3.1-1] DUP=1.
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    let restored = Delivery {
        subscription_identifiers: vec![4],
        ..expiring(7, QoS::ExactlyOnce, t0 + Duration::from_secs(60))
    };
    session.restore_inflight(300, restored, false);
    session.set_journaling(true);
    assert_eq!(session.inflight_len(), 1);
    let resent = session.attach(v5(10));
    let [Packet::Publish(publish)] = resent.as_slice() else {
        panic!("expected one PUBLISH, got {resent:?}");
    };
    assert!(publish.dup);
    assert_eq!(publish.packet_id, Some(300));
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    assert_eq!(publish.topic, "t/7");
    assert_eq!(publish.properties.subscription_identifiers, vec![4]);
    assert_eq!(
        publish.properties.message_expiry_interval, None,
        "the first send's interval is not known after a restart"
    );
    session.handle_pubrec(&Ack::new(300)).unwrap();
    session.handle_pubcomp(300).unwrap();
    assert_eq!(
        journal(&mut session),
        vec![
            Released { packet_id: 300 },
            Completed {
                packet_id: 300,
                message_id: 7
            },
        ]
    );
}

#[test]
fn a_restored_released_flow_resends_pubrel_only() {
    // [MQTT-4.4.0-1] PUBREL resent; [MQTT-4.3.3-6] the PUBLISH never again.
    let mut session = Session::new(limits());
    session.restore_inflight(9, delivery(8, QoS::ExactlyOnce), true);
    session.set_journaling(true);
    assert_eq!(session.attach(v5(10)), vec![Packet::PubRel(Ack::new(9))]);
    assert_eq!(
        session.handle_pubrec(&Ack::new(9)),
        Ok(Some(Ack::new(9))),
        "a late PUBREC gets the PUBREL again"
    );
    assert_eq!(
        session.handle_puback(9),
        Err(SessionError::UnexpectedAck {
            received: AckKind::PubAck,
            expected: AckKind::PubComp,
            packet_id: 9
        })
    );
    session.handle_pubcomp(9).unwrap();
    assert_eq!(
        journal(&mut session),
        vec![Completed {
            packet_id: 9,
            message_id: 8
        }]
    );
}

#[test]
fn restored_flows_resend_in_restore_order_within_the_new_window() {
    // [MQTT-4.6.0-1] original order; 4.9 the quota is per connection and restored flows hold
    // none of it; PUBRELs are not held back.
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    session.restore_inflight(40, delivery(1, QoS::AtLeastOnce), false);
    session.restore_inflight(7, delivery(2, QoS::ExactlyOnce), true);
    session.restore_inflight(1000, delivery(3, QoS::ExactlyOnce), false);
    session.restore_inflight(2, delivery(4, QoS::AtLeastOnce), false);
    session.restore_queued(delivery(5, QoS::AtLeastOnce));
    let resent = session.attach(v5(2));
    let kinds: Vec<(&str, u16, bool)> = resent
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => ("PUBLISH", publish.packet_id.unwrap(), publish.dup),
            Packet::PubRel(ack) => ("PUBREL", ack.packet_id, false),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("PUBLISH", 40, true),
            ("PUBREL", 7, false),
            ("PUBLISH", 1000, true)
        ]
    );
    assert_eq!(session.poll_publish(t0), None, "the window of 2 is full");
    session.handle_puback(40).unwrap();
    let held_back = poll(&mut session, t0);
    assert_eq!((held_back.packet_id, held_back.dup), (Some(2), true));
    session.handle_pubcomp(7).unwrap();
    assert_eq!(
        session.poll_publish(t0),
        None,
        "a PUBCOMP frees no quota here"
    );
    session.handle_puback(2).unwrap();
    assert_eq!(poll(&mut session, t0).topic, "t/5");
}

#[test]
fn new_sends_never_reuse_restored_ids() {
    // [MQTT-2.2.1-4]
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    // Allocation carries on after the last id restored (3), and skips 4 and 1.
    session.restore_inflight(4, delivery(1, QoS::AtLeastOnce), false);
    session.restore_inflight(1, delivery(2, QoS::ExactlyOnce), true);
    session.restore_inflight(3, delivery(3, QoS::ExactlyOnce), false);
    session.attach(v5(u16::MAX));
    for id in 10..20 {
        enqueue(&mut session, delivery(id, QoS::AtLeastOnce), t0);
    }
    let ids: Vec<u16> = (0..10).map(|_| poll_id(&mut session, t0)).collect();
    assert_eq!(ids, vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);

    // Also across the wrap-around.
    let mut session = Session::new(limits());
    session.restore_inflight(1, delivery(1, QoS::AtLeastOnce), false);
    session.restore_inflight(u16::MAX, delivery(2, QoS::AtLeastOnce), false);
    session.attach(v5(u16::MAX));
    enqueue(&mut session, delivery(3, QoS::AtLeastOnce), t0);
    assert_eq!(poll_id(&mut session, t0), 2);
}

#[test]
fn restored_incoming_qos2_ids_await_pubrel() {
    // [MQTT-4.3.3-10] a resend before PUBREL is not routed again; [MQTT-4.3.3-11] PUBREL
    // answered; [MQTT-4.3.3-12] afterwards the id starts a new message.
    let mut session = Session::new(limits());
    session.restore_incoming_qos2(12);
    session.restore_incoming_qos2(13);
    session.attach(v5(10));
    assert_eq!(session.incoming_qos2_len(), 2);
    assert_eq!(session.incoming_qos2(12), IncomingQos2::Duplicate);
    assert_eq!(session.handle_pubrel(12), ReasonCode::SUCCESS);
    assert_eq!(session.incoming_qos2(12), IncomingQos2::New);
    assert_eq!(session.handle_pubrel(13), ReasonCode::SUCCESS);
}

#[test]
fn impossible_restores_lose_no_message_and_do_not_panic() {
    let t0 = Instant::now();
    let mut session = Session::new(limits());
    session.restore_inflight(0, delivery(1, QoS::AtLeastOnce), false);
    session.restore_inflight(5, delivery(2, QoS::AtMostOnce), false);
    session.restore_inflight(0, delivery(3, QoS::ExactlyOnce), true);
    session.restore_inflight(6, delivery(4, QoS::AtLeastOnce), false);
    session.restore_inflight(6, delivery(5, QoS::ExactlyOnce), true);
    assert_eq!(session.queued_len(), 2);
    assert_eq!(inflight_state(&session), vec![(6, 5, true)]);
    assert_eq!(session.attach(v5(10)), vec![Packet::PubRel(Ack::new(6))]);
    let first = poll(&mut session, t0);
    assert_eq!((first.topic.as_str(), first.dup), ("t/1", false));
    assert_ne!(first.packet_id, Some(6));
    assert_eq!(poll(&mut session, t0).topic, "t/2");
}

// ---- journal -> model -> restore round trip ----

/// SplitMix64: a small deterministic generator, so the test needs no
/// dependency and every failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let index = usize::try_from(self.below(items.len() as u64)).unwrap();
        items[index]
    }
}

/// What a durable store keeps for one session, built only from journal
/// events and the enqueue outcomes, as the crate doc's table says.
#[derive(Default)]
struct Model {
    queue: VecDeque<Delivery>,
    /// `(packet id, delivery, released)` in send order.
    inflight: Vec<(u16, Delivery, bool)>,
}

impl Model {
    /// Removes the oldest queued delivery of `message_id` (with a shared
    /// group when `shared_only`, the rule for `take_shared`).
    fn remove_queued(&mut self, message_id: u64, shared_only: bool) -> Delivery {
        let position = self
            .queue
            .iter()
            .position(|delivery| {
                delivery.message.id == message_id
                    && (!shared_only || delivery.shared_group.is_some())
            })
            .unwrap_or_else(|| panic!("message {message_id} is not queued"));
        self.queue.remove(position).unwrap()
    }

    fn remove_inflight(&mut self, packet_id: u16, message_id: u64) {
        let position = self
            .inflight
            .iter()
            .position(|(id, _, _)| *id == packet_id)
            .unwrap_or_else(|| panic!("packet id {packet_id} is not in flight"));
        let (_, delivery, _) = self.inflight.remove(position);
        assert_eq!(delivery.message.id, message_id, "packet id {packet_id}");
    }

    fn apply(&mut self, event: JournalEvent, shared_only: bool) {
        match event {
            Sent {
                message_id,
                packet_id,
                qos,
            } => {
                let delivery = self.remove_queued(message_id, false);
                assert_eq!(delivery.qos, qos);
                assert_ne!(qos, QoS::AtMostOnce);
                assert!(self.inflight.iter().all(|(id, _, _)| *id != packet_id));
                self.inflight.push((packet_id, delivery, false));
            }
            SentQos0 { message_id } => {
                let delivery = self.remove_queued(message_id, false);
                assert_eq!(delivery.qos, QoS::AtMostOnce);
            }
            Released { packet_id } => {
                let flow = self
                    .inflight
                    .iter_mut()
                    .find(|(id, _, _)| *id == packet_id)
                    .unwrap();
                assert!(!flow.2 && flow.1.qos == QoS::ExactlyOnce);
                flow.2 = true;
            }
            Completed {
                packet_id,
                message_id,
            } => self.remove_inflight(packet_id, message_id),
            Removed {
                message_id,
                packet_id: None,
            } => {
                self.remove_queued(message_id, shared_only);
            }
            Removed {
                message_id,
                packet_id: Some(packet_id),
            } => self.remove_inflight(packet_id, message_id),
        }
    }

    fn queue_state(&self) -> Vec<(u64, bool, QoS)> {
        self.queue
            .iter()
            .map(|delivery| {
                (
                    delivery.message.id,
                    delivery.shared_group.is_some(),
                    delivery.qos,
                )
            })
            .collect()
    }

    fn inflight_state(&self) -> Vec<(u16, u64, bool)> {
        self.inflight
            .iter()
            .map(|(packet_id, delivery, released)| (*packet_id, delivery.message.id, *released))
            .collect()
    }

    /// A session rebuilt from the model, as at a restart.
    fn restore(&self, limits: SessionLimits) -> Session {
        let mut session = Session::new(limits);
        for (packet_id, delivery, released) in &self.inflight {
            session.restore_inflight(*packet_id, delivery.clone(), *released);
        }
        for delivery in &self.queue {
            session.restore_queued(delivery.clone());
        }
        session.set_journaling(true);
        session
    }
}

/// How often each kind of event and each restart happened, so that the round
/// trip can show it covered every path.
#[derive(Debug, Default)]
struct Coverage {
    sent: u64,
    sent_qos0: u64,
    released: u64,
    completed: u64,
    removed_queued: u64,
    removed_in_flight: u64,
    removed_released: u64,
    restarts_with_flows: u64,
}

impl Coverage {
    fn count(&mut self, event: JournalEvent, model: &Model) {
        let counter = match event {
            Sent { .. } => &mut self.sent,
            SentQos0 { .. } => &mut self.sent_qos0,
            Released { .. } => &mut self.released,
            Completed { .. } => &mut self.completed,
            Removed {
                packet_id: None, ..
            } => &mut self.removed_queued,
            Removed {
                packet_id: Some(packet_id),
                ..
            } => {
                if model
                    .inflight
                    .iter()
                    .any(|&(id, _, released)| id == packet_id && released)
                {
                    self.removed_released += 1;
                }
                &mut self.removed_in_flight
            }
        };
        *counter += 1;
    }
}

/// One random run: operations on a journaled session, each followed by
/// replaying its events into the model and comparing; now and then a
/// "restart" that replaces the session with one restored from the model.
fn round_trip(seed: u64, steps: usize, coverage: &mut Coverage) {
    let mut rng = Rng(seed);
    let limits = SessionLimits {
        max_queued_messages: 12,
        max_queued_bytes: 2000,
        max_inflight: 4,
        queue_qos0_offline: false,
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut session = Session::new(limits);
    session.set_journaling(true);
    let mut model = Model::default();
    let mut recent: Vec<SharedMessage> = Vec::new();
    let mut next_message_id = 1u64;
    let mut events = Vec::new();

    for step in 0..steps {
        let context = format!("seed {seed}, step {step}");
        let mut shared_only = false;
        let mut taken_ids: Option<Vec<u64>> = None;
        match rng.below(100) {
            0..=29 => {
                // A publish reaches this session; sometimes a message already routed here
                // again (an overlapping subscription, a retained copy).
                let message = if !recent.is_empty() && rng.chance(15) {
                    Arc::clone(&recent[usize::try_from(rng.below(recent.len() as u64)).unwrap()])
                } else {
                    let payload = if rng.chance(15) {
                        Bytes::from(vec![0; 200])
                    } else {
                        Bytes::from_static(b"p")
                    };
                    let expires_at = rng
                        .chance(25)
                        .then(|| now + Duration::from_millis(rng.below(3000)));
                    let message = message_with(next_message_id, payload, expires_at);
                    next_message_id += 1;
                    recent.push(Arc::clone(&message));
                    if recent.len() > 8 {
                        recent.remove(0);
                    }
                    message
                };
                let qos = rng.pick(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]);
                let mut delivery = Delivery::new(message, qos, false);
                if rng.chance(30) {
                    delivery.shared_group = Some(Arc::from("g"));
                }
                if session.enqueue(delivery.clone(), now) == EnqueueOutcome::Queued {
                    // Recorded by the broker from the outcome, after the call's events.
                    session.take_journal(&mut events);
                    for event in events.drain(..) {
                        coverage.count(event, &model);
                        model.apply(event, false);
                    }
                    model.queue.push_back(delivery);
                }
            }
            30..=49 => {
                for _ in 0..rng.below(4) {
                    session.poll_publish(now);
                }
            }
            50..=69 => {
                let index = usize::try_from(rng.below(model.inflight.len().max(1) as u64)).unwrap();
                if let Some(&(packet_id, ref delivery, released)) = model.inflight.get(index) {
                    let qos = delivery.qos;
                    match rng.below(10) {
                        // Sometimes an acknowledgement that may not fit: an error, and no event.
                        0 => drop(session.handle_puback(packet_id)),
                        1 => drop(session.handle_pubcomp(packet_id)),
                        2 => drop(session.handle_pubrec(&Ack::new(packet_id))),
                        code => {
                            let result = if qos == QoS::AtLeastOnce {
                                session.handle_puback(packet_id)
                            } else if released {
                                session.handle_pubcomp(packet_id)
                            } else {
                                let reason = if code == 3 {
                                    ReasonCode::UNSPECIFIED_ERROR
                                } else {
                                    ReasonCode::SUCCESS
                                };
                                session
                                    .handle_pubrec(&Ack::with_reason(packet_id, reason))
                                    .map(|_| ())
                            };
                            result.unwrap_or_else(|error| panic!("{context}: {error}"));
                        }
                    }
                }
            }
            70..=79 => while session.poll_publish(now).is_some() {},
            80..=86 => {
                if session.is_attached() {
                    session.detach();
                } else {
                    let client = ClientParams {
                        maximum_packet_size: rng.chance(20).then_some(120),
                        ..v5(u16::try_from(1 + rng.below(5)).unwrap())
                    };
                    let resent = session.attach(client);
                    assert!(
                        resent.iter().all(|packet| match packet {
                            Packet::Publish(publish) => publish.dup,
                            _ => true,
                        }),
                        "{context}"
                    );
                }
            }
            87..=90 => {
                if !session.is_attached() {
                    shared_only = true;
                    taken_ids = Some(
                        session
                            .take_shared()
                            .iter()
                            .map(|delivery| delivery.message.id)
                            .collect(),
                    );
                }
            }
            91 => {
                session.clear();
            }
            92..=95 => now += Duration::from_millis(rng.below(1500)),
            _ => {
                // A restart: everything not in the store is gone.
                session = model.restore(limits);
                if !model.inflight.is_empty() {
                    coverage.restarts_with_flows += 1;
                }
            }
        }

        session.take_journal(&mut events);
        if let Some(taken_ids) = taken_ids {
            let removed: Vec<u64> = events
                .iter()
                .map(|event| match event {
                    Removed { message_id, .. } => *message_id,
                    other => panic!("{context}: take_shared journaled {other:?}"),
                })
                .collect();
            assert_eq!(removed, taken_ids, "{context}");
        }
        for event in events.drain(..) {
            coverage.count(event, &model);
            model.apply(event, shared_only);
        }
        assert_eq!(queue_state(&session), model.queue_state(), "{context}");
        assert_eq!(
            inflight_state(&session),
            model.inflight_state(),
            "{context}"
        );
    }
}

#[test]
fn the_journal_replayed_into_a_model_matches_the_session_and_restores_it() {
    let mut coverage = Coverage::default();
    for seed in 0..64 {
        round_trip(seed, 600, &mut coverage);
    }
    println!("{coverage:?}");
    let Coverage {
        sent,
        sent_qos0,
        released,
        completed,
        removed_queued,
        removed_in_flight,
        removed_released,
        restarts_with_flows,
    } = coverage;
    for (name, count) in [
        ("sent", sent),
        ("sent_qos0", sent_qos0),
        ("released", released),
        ("completed", completed),
        ("removed_queued", removed_queued),
        ("removed_in_flight", removed_in_flight),
        ("removed_released", removed_released),
        ("restarts_with_flows", restarts_with_flows),
    ] {
        assert!(count >= 20, "{name} happened only {count} times");
    }
}
