use super::*;
use proptest::prelude::*;

fn upsert(client: &str) -> Record {
    Record::SessionUpsert {
        client_id: client.into(),
        protocol_level: 5,
        session_expiry_secs: 3600,
    }
}

fn message(id: u64) -> Record {
    Record::Message {
        id,
        expires_at_ms: Some(1_000 + id),
        publish: Bytes::from(format!("publish {id}")),
    }
}

fn enqueue(client: &str, message_id: u64) -> Record {
    Record::Enqueue {
        client_id: client.into(),
        message_id,
        qos: 1,
        retain: false,
        subscription_identifiers: vec![7],
        shared_filter: None,
    }
}

fn dequeue(client: &str, message_id: u64) -> Record {
    Record::Dequeue {
        client_id: client.into(),
        message_id,
    }
}

fn sent(client: &str, message_id: u64, packet_id: u16) -> Record {
    Record::OutboundSent {
        client_id: client.into(),
        message_id,
        packet_id,
    }
}

fn released(client: &str, packet_id: u16) -> Record {
    Record::OutboundReleased {
        client_id: client.into(),
        packet_id,
    }
}

fn complete(client: &str, packet_id: u16) -> Record {
    Record::OutboundComplete {
        client_id: client.into(),
        packet_id,
    }
}

fn build(records: &[Record]) -> State {
    let mut state = State::new();
    for record in records {
        state.apply(record);
    }
    state
}

fn rebuilt(state: &State) -> State {
    build(&state.records().collect::<Vec<_>>())
}

fn queue_ids(state: &State, client: &str) -> Vec<u64> {
    state
        .session(client)
        .map(|session| session.queue().map(|entry| entry.message_id).collect())
        .unwrap_or_default()
}

#[test]
fn a_session_keeps_its_subscriptions_queue_and_in_flight_state() {
    let state = build(&[
        upsert("c"),
        Record::Subscribe {
            client_id: "c".into(),
            filter: "$share/g/a/#".into(),
            options: 0b0010_1110,
            identifier: Some(42),
        },
        message(1),
        message(2),
        enqueue("c", 1),
        enqueue("c", 2),
        sent("c", 1, 10),
        Record::InboundQos2 {
            client_id: "c".into(),
            packet_id: 5,
        },
        Record::SessionDetached {
            client_id: "c".into(),
            expires_at_ms: Some(99),
        },
    ]);
    let session = state.session("c").unwrap();
    assert_eq!(session.protocol_level(), 5);
    assert_eq!(
        session.presence(),
        Presence::Detached {
            expires_at_ms: Some(99)
        }
    );
    assert_eq!(
        session.subscriptions().get("$share/g/a/#"),
        Some(&Subscription {
            options: 0b0010_1110,
            identifier: Some(42)
        })
    );
    assert_eq!(queue_ids(&state, "c"), vec![1, 2]);
    assert_eq!(
        session.outbound().collect::<Vec<_>>(),
        vec![(10, OutboundStage::Publish { message_id: 1 })]
    );
    assert!(session.inbound_qos2().contains(&5));
    // Message 1: queue + outbound; message 2: queue.
    assert_eq!(state.message(1).unwrap().references(), 2);
    assert_eq!(state.message(2).unwrap().references(), 1);
    // Resuming keeps everything and marks the session connected.
    let mut resumed = state.clone();
    resumed.apply(&upsert("c"));
    assert_eq!(
        resumed.session("c").unwrap().presence(),
        Presence::Connected
    );
    assert_eq!(queue_ids(&resumed, "c"), vec![1, 2]);
}

#[test]
fn a_message_is_dropped_with_its_last_reference() {
    let mut state = build(&[
        upsert("a"),
        upsert("b"),
        message(1),
        Record::Retain {
            topic: "t".into(),
            message_id: 1,
        },
        enqueue("a", 1),
        enqueue("b", 1),
    ]);
    assert_eq!(state.message(1).unwrap().references(), 3);
    state.apply(&dequeue("a", 1));
    state.apply(&Record::RetainClear { topic: "t".into() });
    assert_eq!(state.message(1).unwrap().references(), 1);
    state.apply(&Record::SessionEnd {
        client_id: "b".into(),
    });
    assert!(state.message(1).is_none());
    assert!(state.session("b").is_none());
}

#[test]
fn a_message_not_yet_referenced_stays_until_dropped_explicitly() {
    let mut state = build(&[message(1), upsert("a")]);
    assert_eq!(state.message(1).unwrap().references(), 0);
    // A later append refers to it.
    state.apply(&enqueue("a", 1));
    assert_eq!(state.message(1).unwrap().references(), 1);
    state.apply(&message(2));
    assert_eq!(state.drop_unreferenced(), 1);
    assert!(state.message(2).is_none());
    assert!(state.message(1).is_some());
    assert_eq!(state.max_message_id(), Some(2));
}

#[test]
fn records_about_missing_sessions_or_messages_are_ignored() {
    let state = build(&[
        enqueue("nobody", 1),
        upsert("a"),
        enqueue("a", 404),
        sent("a", 404, 1),
        Record::Subscribe {
            client_id: "ghost".into(),
            filter: "x".into(),
            options: 0,
            identifier: None,
        },
    ]);
    assert_eq!(queue_ids(&state, "a"), Vec::<u64>::new());
    assert_eq!(state.session("a").unwrap().outbound().count(), 0);
    assert!(state.session("ghost").is_none());
}

#[test]
fn retaining_an_absent_message_clears_the_topic() {
    let state = build(&[
        message(1),
        Record::Retain {
            topic: "t".into(),
            message_id: 1,
        },
        Record::Retain {
            topic: "t".into(),
            message_id: 2,
        },
    ]);
    assert!(state.retained().is_empty());
    assert!(state.message(1).is_none());
}

#[test]
fn outbound_order_is_send_order_then_pubrec_order() {
    // [MQTT-4.6.0-1]: PUBLISHes are resent in the order they were sent;
    // [MQTT-4.6.0-4]: PUBRELs in the order the PUBRECs arrived.
    let state = build(&[
        upsert("c"),
        message(1),
        message(2),
        message(3),
        enqueue("c", 1),
        enqueue("c", 2),
        enqueue("c", 3),
        sent("c", 1, 1),
        sent("c", 2, 2),
        sent("c", 3, 3),
        released("c", 2),
        released("c", 1),
    ]);
    let outbound: Vec<_> = state.session("c").unwrap().outbound().collect();
    assert_eq!(
        outbound,
        vec![
            (3, OutboundStage::Publish { message_id: 3 }),
            (2, OutboundStage::Release),
            (1, OutboundStage::Release),
        ]
    );
    // The PUBREL stage no longer holds the message; the queue still does.
    assert_eq!(state.message(1).unwrap().references(), 1);
    let state = build(
        &state
            .records()
            .chain([complete("c", 2), dequeue("c", 2)])
            .collect::<Vec<_>>(),
    );
    assert!(state.message(2).is_none());
}

#[test]
fn wills_end_with_their_session() {
    let will = Record::Will {
        client_id: "c".into(),
        publish: Bytes::from_static(b"will"),
        delay_secs: 10,
        publish_at_ms: None,
    };
    let mut state = build(&[upsert("c"), will.clone()]);
    assert_eq!(state.wills().get("c").unwrap().delay_secs, 10);
    state.apply(&Record::WillClear {
        client_id: "c".into(),
    });
    assert!(state.wills().is_empty());
    state.apply(&will);
    state.apply(&Record::SessionEnd {
        client_id: "c".into(),
    });
    assert!(state.wills().is_empty());
}

#[test]
fn replay_over_a_snapshot_keeps_queue_order() {
    // A retained message is queued, delivered, queued again while another
    // message arrives; the snapshot was taken at the end, the log replayed
    // from before the first Enqueue.
    let records = vec![
        upsert("c"),
        message(1),
        Record::Retain {
            topic: "t".into(),
            message_id: 1,
        },
        enqueue("c", 1), // N
        dequeue("c", 1),
        enqueue("c", 1),
        message(2),
        enqueue("c", 2),
        Record::RetainClear { topic: "t".into() },
    ];
    let truth = build(&records);
    assert_eq!(queue_ids(&truth, "c"), vec![1, 2]);
    let mut state = rebuilt(&truth);
    let mut replay = Replay::new(&mut state);
    for record in &records[3..] {
        replay.apply(record);
    }
    replay.finish();
    assert_eq!(state, truth);
    // Plain `apply` would drop message 1 when the replayed Dequeue takes
    // what is, in the snapshot, its last reference, and get the order wrong.
    let mut naive = rebuilt(&truth);
    for record in &records[3..] {
        naive.apply(record);
    }
    assert_ne!(naive, truth);
}

/// Turns random operations into a record sequence a broker could write
/// (it follows the writer's rules in the module docs): records refer only
/// to sessions that exist and messages that are present, message ids are
/// never reused, packet ids are used only when free.
fn realistic(operations: &[(u8, u8, u8, u8)]) -> Vec<Record> {
    let clients = ["c0", "c1", "c2"];
    let mut state = State::new();
    let mut records = Vec::new();
    let mut next_id = 1u64;
    let mut emit = |state: &mut State, record: Record| {
        state.apply(&record);
        records.push(record);
    };
    for &(operation, a, b, c) in operations {
        let client = clients[usize::from(a) % clients.len()];
        let exists = state.session(client).is_some();
        let queued = queue_ids(&state, client);
        let outbound: Vec<(u16, OutboundStage)> = state
            .session(client)
            .map(|session| session.outbound().collect())
            .unwrap_or_default();
        match operation % 18 {
            0 => emit(
                &mut state,
                Record::SessionUpsert {
                    client_id: client.into(),
                    protocol_level: 4 + b % 2,
                    session_expiry_secs: u32::from(c),
                },
            ),
            1 if exists => emit(
                &mut state,
                Record::SessionDetached {
                    client_id: client.into(),
                    expires_at_ms: (b % 2 == 0).then_some(u64::from(c)),
                },
            ),
            2 => emit(
                &mut state,
                Record::SessionEnd {
                    client_id: client.into(),
                },
            ),
            3 if exists => emit(
                &mut state,
                Record::Subscribe {
                    client_id: client.into(),
                    filter: format!("f{}", b % 3),
                    options: c,
                    identifier: (c % 2 == 0).then_some(u32::from(c)),
                },
            ),
            4 if exists => emit(
                &mut state,
                Record::Unsubscribe {
                    client_id: client.into(),
                    filter: format!("f{}", b % 3),
                },
            ),
            5 => {
                // A publish: the message, maybe retained, queued for the
                // sessions picked by the bits of `a`.
                let id = next_id;
                next_id += 1;
                emit(&mut state, message(id));
                if b % 2 == 1 {
                    emit(
                        &mut state,
                        Record::Retain {
                            topic: format!("t{}", c % 3),
                            message_id: id,
                        },
                    );
                }
                for (bit, target) in clients.iter().enumerate() {
                    if a & (1 << bit) != 0 && state.session(target).is_some() {
                        emit(
                            &mut state,
                            Record::Enqueue {
                                client_id: (*target).into(),
                                message_id: id,
                                qos: c % 3,
                                retain: b % 4 == 1,
                                subscription_identifiers: vec![u32::from(c)],
                                shared_filter: (b % 3 == 0).then(|| "$share/g/t".into()),
                            },
                        );
                    }
                }
            }
            6 => {
                // A message whose references come in a later append.
                emit(&mut state, message(next_id));
                next_id += 1;
            }
            7 if exists => {
                // Queue a present message (pending or retained) again.
                let ids: Vec<u64> = state.messages().keys().copied().collect();
                if let Some(&id) = ids.get(usize::from(b) % ids.len().max(1)) {
                    if !queued.contains(&id) {
                        emit(&mut state, enqueue(client, id));
                    }
                }
            }
            8 => {
                if let Some(&id) = queued.get(usize::from(b) % queued.len().max(1)) {
                    emit(&mut state, dequeue(client, id));
                }
            }
            9 => {
                let packet_id = u16::from(c % 4) + 1;
                let free = outbound.iter().all(|(held, _)| *held != packet_id);
                if let Some(&id) = queued.get(usize::from(b) % queued.len().max(1)) {
                    if free {
                        emit(&mut state, sent(client, id, packet_id));
                    }
                }
            }
            10 => {
                let publishing: Vec<u16> = outbound
                    .iter()
                    .filter(|(_, stage)| matches!(stage, OutboundStage::Publish { .. }))
                    .map(|(packet_id, _)| *packet_id)
                    .collect();
                if let Some(&packet_id) = publishing.get(usize::from(b) % publishing.len().max(1)) {
                    emit(&mut state, released(client, packet_id));
                }
            }
            11 => {
                if let Some(&(packet_id, _)) = outbound.get(usize::from(b) % outbound.len().max(1))
                {
                    emit(&mut state, complete(client, packet_id));
                }
            }
            12 if exists => emit(
                &mut state,
                Record::InboundQos2 {
                    client_id: client.into(),
                    packet_id: u16::from(c % 4) + 1,
                },
            ),
            13 if exists => emit(
                &mut state,
                Record::InboundReleased {
                    client_id: client.into(),
                    packet_id: u16::from(c % 4) + 1,
                },
            ),
            14 => emit(
                &mut state,
                Record::RetainClear {
                    topic: format!("t{}", c % 3),
                },
            ),
            15 => emit(
                &mut state,
                Record::Will {
                    client_id: client.into(),
                    publish: Bytes::from(vec![b; 3]),
                    delay_secs: u32::from(b),
                    publish_at_ms: (c % 2 == 0).then_some(u64::from(c)),
                },
            ),
            16 => emit(
                &mut state,
                Record::WillClear {
                    client_id: client.into(),
                },
            ),
            17 => {
                // Shared-subscription hand-over: new reference first.
                let target = clients[usize::from(c) % clients.len()];
                if let Some(&id) = queued.get(usize::from(b) % queued.len().max(1)) {
                    if target != client
                        && state.session(target).is_some()
                        && !queue_ids(&state, target).contains(&id)
                    {
                        emit(&mut state, enqueue(target, id));
                        emit(&mut state, dequeue(client, id));
                    }
                }
            }
            _ => {}
        }
    }
    records
}

fn operations() -> impl Strategy<Value = Vec<(u8, u8, u8, u8)>> {
    proptest::collection::vec(any::<(u8, u8, u8, u8)>(), 0..120)
}

proptest! {
    #[test]
    fn applying_every_record_twice_is_applying_it_once(operations in operations()) {
        let records = realistic(&operations);
        let once = build(&records);
        let mut twice = State::new();
        for record in &records {
            twice.apply(record);
            twice.apply(record);
        }
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn snapshot_records_rebuild_an_equal_state(operations in operations()) {
        let state = build(&realistic(&operations));
        prop_assert_eq!(rebuilt(&state), state);
    }

    /// The checkpoint rule: a snapshot taken at any point `p` at or after the
    /// roll `n`, plus a replay of every record from `n`, gives the state of
    /// replaying everything.
    #[test]
    fn replaying_from_the_roll_over_a_later_snapshot_converges(
        operations in operations(),
        roll in any::<prop::sample::Index>(),
        capture in any::<prop::sample::Index>(),
    ) {
        let records = realistic(&operations);
        let roll = roll.index(records.len() + 1);
        let capture = roll + capture.index(records.len() - roll + 1);
        let mut truth = build(&records);
        truth.drop_unreferenced();

        let mut state = rebuilt(&build(&records[..capture]));
        let mut replay = Replay::new(&mut state);
        for record in &records[roll..] {
            replay.apply(record);
        }
        replay.finish();
        prop_assert_eq!(state, truth);
    }
}

/// One operation on an [`Ordered`] map, for the model test below.
#[derive(Debug, Clone)]
enum OrderedOperation {
    Insert(u16, u32),
    MoveToEnd(u16, u32),
    Remove(u16),
}

fn ordered_operation() -> impl Strategy<Value = OrderedOperation> {
    // Few keys, so that removals and re-insertions of the same key are
    // frequent; long runs, so that compactions happen.
    prop_oneof![
        (0u16..80, any::<u32>()).prop_map(|(key, value)| OrderedOperation::Insert(key, value)),
        (0u16..80, any::<u32>()).prop_map(|(key, value)| OrderedOperation::MoveToEnd(key, value)),
        (0u16..80).prop_map(OrderedOperation::Remove),
    ]
}

proptest! {
    /// `Ordered` behaves like a list of (key, value) in insertion order with
    /// unique keys, whatever the removals, compactions and trimming of empty
    /// slots do to positions.
    #[test]
    fn ordered_matches_an_insertion_ordered_list(
        operations in proptest::collection::vec(ordered_operation(), 0..600)
    ) {
        let mut ordered: Ordered<u16, u32> = Ordered::default();
        let mut model: Vec<(u16, u32)> = Vec::new();
        for operation in operations {
            match operation {
                OrderedOperation::Insert(key, value) => {
                    let absent = !model.iter().any(|(k, _)| *k == key);
                    if absent {
                        model.push((key, value));
                    }
                    prop_assert_eq!(ordered.insert_if_absent(key, value), absent);
                }
                OrderedOperation::MoveToEnd(key, value) => {
                    let previous = model
                        .iter()
                        .position(|(k, _)| *k == key)
                        .map(|index| model.remove(index).1);
                    model.push((key, value));
                    prop_assert_eq!(ordered.move_to_end(key, value), previous);
                }
                OrderedOperation::Remove(key) => {
                    let previous = model
                        .iter()
                        .position(|(k, _)| *k == key)
                        .map(|index| model.remove(index).1);
                    prop_assert_eq!(ordered.remove(&key), previous);
                }
            }
            prop_assert_eq!(ordered.len(), model.len());
            let contents: Vec<(u16, u32)> = ordered.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(&contents, &model);
            for (key, value) in &model {
                prop_assert_eq!(ordered.get(key), Some(value));
            }
            prop_assert!(ordered.slots.len() <= ordered.len() * 2 + ORDERED_SLACK);
        }
    }
}
