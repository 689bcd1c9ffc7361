//! `kill -9` under load: what the broker acknowledged survives.
//!
//! The promise: once the broker sends PUBACK (QoS 1) or PUBREC (QoS 2) for a
//! message that must be kept (retained, or matching a session that outlives
//! its connection), the message survives `kill -9` and reaches every such
//! session after the restart, QoS 1 at least once and QoS 2 exactly once;
//! sessions, subscriptions and retained messages survive, and the broker
//! always starts again.
//!
//! The test runs the real binary with `--durability sync`. Persistent
//! subscribers are set up and go offline; publishers (rumqttc, MQTT 5 and
//! 3.1.1) send QoS 1 and QoS 2 messages, some retained, as fast as they can and
//! note each one the broker acknowledges (PUBACK / PUBREC with success). At a
//! random moment the broker is killed with SIGKILL and restarted on the same
//! data directory; this repeats for several rounds. Finally the subscribers
//! come back and everything they receive is checked against the notes.
//!
//! The kill moments come from a seeded generator: the seed is printed, and
//! `SWITCHBOARD_CRASH_SEED=<seed>` replays the same schedule (the timing of a
//! real process is never exactly the same, so a replay is not bit-identical).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Kill-and-restart rounds before the final check.
const ROUNDS: usize = 4;
/// Each round is killed after this many milliseconds of publishing (a value
/// drawn from the range by the seeded generator).
const KILL_AFTER_MS: std::ops::Range<u64> = 50..450;
/// A publisher stops after this many messages in one round (and waits for the
/// kill), so that a fast machine does not make the final check slow.
const MAX_PER_ROUND: u64 = 3000;
/// The final collection ends after this long without a new message.
const QUIET: Duration = Duration::from_secs(1);
/// Publishers: MQTT 5 or 3.1.1 (rumqttc).
const PUBLISHERS: [Version; 3] = [Version::V5, Version::V311, Version::V5];
/// rumqttc's request queue per publisher: keeps the pipeline full.
const PUBLISH_QUEUE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V5,
    V311,
}

/// A persistent subscriber: client id, version, and (filter, QoS, subscription
/// identifier) for each subscription.
struct SubscriberSpec {
    client_id: &'static str,
    version: Version,
    filters: &'static [(&'static str, u8, Option<usize>)],
}

const SUBSCRIBERS: [SubscriberSpec; 3] = [
    SubscriberSpec {
        client_id: "crash-subscriber-a",
        version: Version::V5,
        filters: &[("crash/+/q1", 1, None), ("crash/+/q2", 2, Some(7))],
    },
    SubscriberSpec {
        client_id: "crash-subscriber-b",
        version: Version::V5,
        filters: &[("crash/#", 2, Some(42))],
    },
    SubscriberSpec {
        client_id: "crash-subscriber-c",
        version: Version::V311,
        filters: &[("crash/+/q2", 2, None), ("crash/p0/q1", 1, None)],
    },
];

/// splitmix64: small, seedable, good enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }
}

/// One message a publisher sent; its payload is `p<publisher>-<seq>`.
#[derive(Debug, Clone)]
struct Sent {
    publisher: usize,
    seq: u64,
    topic: String,
    qos: u8,
    retain: bool,
}

impl Sent {
    fn payload(&self) -> String {
        format!("p{}-{}", self.publisher, self.seq)
    }
}

/// What the publishers sent and what the broker acknowledged, by payload.
#[derive(Debug, Default)]
struct Ledger {
    sent: HashMap<String, Sent>,
    acked: HashSet<String>,
    /// Acknowledgements with a failure reason code (none expected: the disk works).
    refused: Vec<String>,
}

/// What publisher `publisher` sends as its message number `seq`: mostly QoS 1
/// and QoS 2 to its own topics, and every tenth a retained message (QoS 1 or 2).
fn plan(publisher: usize, seq: u64) -> Sent {
    let (topic, qos, retain) = match seq % 10 {
        0 => (
            format!("crash/retained/p{publisher}"),
            if seq.is_multiple_of(20) { 1 } else { 2 },
            true,
        ),
        n if n % 2 == 1 => (format!("crash/p{publisher}/q1"), 1, false),
        _ => (format!("crash/p{publisher}/q2"), 2, false),
    };
    Sent {
        publisher,
        seq,
        topic,
        qos,
        retain,
    }
}

/// MQTT topic filter matching (enough for the filters above).
fn matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (exact, Some(actual)) if exact == actual => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Publishes [`MAX_PER_ROUND`] messages or until its connection breaks (the
/// broker was killed), noting in the ledger each message whose PUBACK / PUBREC
/// came back; returns once the connection is gone.
///
/// rumqttc numbers PUBLISH packets itself; it reports each one as
/// `Outgoing::Publish(packet_id)` in the order the requests were made, so a
/// FIFO of submitted messages maps packet ids to messages. (rumqttc may reuse a
/// QoS 2 packet id before its PUBCOMP arrived; that is harmless here because
/// its PUBREL went out first on the same connection.) Every publisher connects
/// with a clean session, so nothing is resent across connections.
fn run_publisher(
    port: u16,
    publisher: usize,
    version: Version,
    next_seq: &AtomicU64,
    ledger: &Mutex<Ledger>,
) {
    let client_id = format!("crash-publisher-{publisher}");
    let submitted: Mutex<VecDeque<Sent>> = Mutex::new(VecDeque::new());
    let acknowledged = |in_flight: &mut HashMap<u16, Sent>, packet_id: u16, success: bool| {
        if let Some(sent) = in_flight.remove(&packet_id) {
            let mut ledger = ledger.lock().unwrap();
            if success {
                ledger.acked.insert(sent.payload());
            } else {
                ledger.refused.push(sent.payload());
            }
        }
    };
    let submit = |publish: &dyn Fn(&Sent) -> bool| {
        for _ in 0..MAX_PER_ROUND {
            let sent = plan(publisher, next_seq.fetch_add(1, Ordering::Relaxed));
            ledger
                .lock()
                .unwrap()
                .sent
                .insert(sent.payload(), sent.clone());
            submitted.lock().unwrap().push_back(sent.clone());
            if !publish(&sent) {
                return;
            }
        }
    };
    thread::scope(|scope| match version {
        Version::V5 => {
            use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason};
            use rumqttc::v5::mqttbytes::QoS;
            use rumqttc::v5::{Client, Event, MqttOptions};
            use rumqttc::Outgoing;
            let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
            options.set_keep_alive(Duration::from_secs(30));
            let (client, mut connection) = Client::new(options, PUBLISH_QUEUE);
            scope.spawn(|| {
                let mut in_flight = HashMap::new();
                for event in connection.iter() {
                    match event {
                        Ok(Event::Outgoing(Outgoing::Publish(packet_id))) => {
                            if let Some(sent) = submitted.lock().unwrap().pop_front() {
                                in_flight.insert(packet_id, sent);
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            let success = ack.reason == PubAckReason::Success;
                            acknowledged(&mut in_flight, ack.pkid, success);
                        }
                        Ok(Event::Incoming(Packet::PubRec(rec))) => {
                            let success = rec.reason == PubRecReason::Success;
                            acknowledged(&mut in_flight, rec.pkid, success);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                // Dropping the event loop makes the publishing side's next call fail.
                drop(connection);
            });
            submit(&|sent: &Sent| {
                let qos = if sent.qos == 1 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                client
                    .publish(sent.topic.clone(), qos, sent.retain, sent.payload())
                    .is_ok()
            });
        }
        Version::V311 => {
            use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
            let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
            options.set_keep_alive(Duration::from_secs(30));
            let (client, mut connection) = Client::new(options, PUBLISH_QUEUE);
            scope.spawn(|| {
                let mut in_flight = HashMap::new();
                for event in connection.iter() {
                    match event {
                        Ok(Event::Outgoing(Outgoing::Publish(packet_id))) => {
                            if let Some(sent) = submitted.lock().unwrap().pop_front() {
                                in_flight.insert(packet_id, sent);
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            acknowledged(&mut in_flight, ack.pkid, true);
                        }
                        Ok(Event::Incoming(Packet::PubRec(rec))) => {
                            acknowledged(&mut in_flight, rec.pkid, true);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                drop(connection);
            });
            submit(&|sent: &Sent| {
                let qos = if sent.qos == 1 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                client
                    .publish(sent.topic.clone(), qos, sent.retain, sent.payload())
                    .is_ok()
            });
        }
    });
}

/// A message a subscriber received.
#[derive(Debug, Clone)]
struct Received {
    subscriber: usize,
    topic: String,
    payload: String,
    qos: u8,
    retain: bool,
    subscription_identifiers: Vec<usize>,
}

/// What a subscriber's event thread reports.
#[derive(Debug)]
enum SubscriberEvent {
    ConnAck {
        subscriber: usize,
        session_present: bool,
    },
    /// Return codes of one SUBACK: the granted QoS, or `None` for a failure.
    SubAck {
        subscriber: usize,
        granted: Vec<Option<u8>>,
    },
    Message(Received),
    Closed {
        subscriber: usize,
    },
}

/// A subscriber's connection: requests go through `disconnect`; events arrive
/// on the channel given to [`Subscriber::connect`].
enum SubscriberClient {
    V5(rumqttc::v5::Client),
    V311(rumqttc::Client),
}

impl SubscriberClient {
    fn disconnect(&self) {
        let _ = match self {
            SubscriberClient::V5(client) => client.disconnect().map_err(|_| ()),
            SubscriberClient::V311(client) => client.disconnect().map_err(|_| ()),
        };
    }
}

/// Connects subscriber `index` with a persistent session (clean start 0; MQTT 5:
/// session expiry 3600 s), subscribing to its filters if `subscribe`. Its events
/// go to `events` from a background thread that ends with the connection.
fn connect_subscriber(
    port: u16,
    index: usize,
    subscribe: bool,
    events: mpsc::Sender<SubscriberEvent>,
) -> SubscriberClient {
    let spec = &SUBSCRIBERS[index];
    match spec.version {
        Version::V5 => {
            use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeProperties, SubscribeReasonCode};
            use rumqttc::v5::mqttbytes::QoS;
            use rumqttc::v5::{Client, Event, MqttOptions};
            let mut options = MqttOptions::new(spec.client_id, "127.0.0.1", port);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_start(false);
            options.set_session_expiry_interval(Some(3600));
            let (client, mut connection) = Client::new(options, 16);
            if subscribe {
                for (filter, qos, identifier) in spec.filters {
                    let qos = if *qos == 1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::ExactlyOnce
                    };
                    let properties = SubscribeProperties {
                        id: *identifier,
                        user_properties: Vec::new(),
                    };
                    client
                        .subscribe_with_properties(*filter, qos, properties)
                        .unwrap();
                }
            }
            thread::spawn(move || {
                for event in connection.iter() {
                    let report = match event {
                        Ok(Event::Incoming(Packet::ConnAck(connack))) => SubscriberEvent::ConnAck {
                            subscriber: index,
                            session_present: connack.session_present,
                        },
                        Ok(Event::Incoming(Packet::SubAck(suback))) => SubscriberEvent::SubAck {
                            subscriber: index,
                            granted: suback
                                .return_codes
                                .iter()
                                .map(|code| match code {
                                    SubscribeReasonCode::Success(qos) => Some(*qos as u8),
                                    _ => None,
                                })
                                .collect(),
                        },
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            SubscriberEvent::Message(Received {
                                subscriber: index,
                                topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                                payload: String::from_utf8_lossy(&publish.payload).into_owned(),
                                qos: publish.qos as u8,
                                retain: publish.retain,
                                subscription_identifiers: publish
                                    .properties
                                    .map(|properties| properties.subscription_identifiers)
                                    .unwrap_or_default(),
                            })
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    if events.send(report).is_err() {
                        break;
                    }
                }
                let _ = events.send(SubscriberEvent::Closed { subscriber: index });
            });
            SubscriberClient::V5(client)
        }
        Version::V311 => {
            use rumqttc::{Client, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
            let mut options = MqttOptions::new(spec.client_id, "127.0.0.1", port);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_session(false);
            let (client, mut connection) = Client::new(options, 16);
            if subscribe {
                for (filter, qos, _) in spec.filters {
                    let qos = if *qos == 1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::ExactlyOnce
                    };
                    client.subscribe(*filter, qos).unwrap();
                }
            }
            thread::spawn(move || {
                for event in connection.iter() {
                    let report = match event {
                        Ok(Event::Incoming(Packet::ConnAck(connack))) => SubscriberEvent::ConnAck {
                            subscriber: index,
                            session_present: connack.session_present,
                        },
                        Ok(Event::Incoming(Packet::SubAck(suback))) => SubscriberEvent::SubAck {
                            subscriber: index,
                            granted: suback
                                .return_codes
                                .iter()
                                .map(|code| match code {
                                    SubscribeReasonCode::Success(qos) => Some(*qos as u8),
                                    SubscribeReasonCode::Failure => None,
                                })
                                .collect(),
                        },
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            SubscriberEvent::Message(Received {
                                subscriber: index,
                                topic: publish.topic.clone(),
                                payload: String::from_utf8_lossy(&publish.payload).into_owned(),
                                qos: publish.qos as u8,
                                retain: publish.retain,
                                subscription_identifiers: Vec::new(),
                            })
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    if events.send(report).is_err() {
                        break;
                    }
                }
                let _ = events.send(SubscriberEvent::Closed { subscriber: index });
            });
            SubscriberClient::V311(client)
        }
    }
}

fn start_broker(data_dir: &str, config: &str, what: &str) -> Broker {
    match start_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--durability",
        "sync",
        // Connections park whenever idle for a millisecond: the crash
        // rounds then also cover parking and resuming (subscribers between
        // messages, publishers waiting for acknowledgements) under kill -9.
        "--park-idle-after-ms",
        "1",
        // The listening line the test waits for is logged at info level.
        "--log-level",
        "info",
        "--config",
        config,
    ]) {
        Ok(broker) => broker,
        Err((status, log)) => panic!(
            "the broker did not start ({what}): exit {status:?}, log:\n{}",
            log.join("\n")
        ),
    }
}

/// Creates the persistent subscribers and disconnects them.
fn set_up_subscribers(port: u16) {
    let (sender, events) = mpsc::channel();
    let clients: Vec<SubscriberClient> = (0..SUBSCRIBERS.len())
        .map(|index| connect_subscriber(port, index, true, sender.clone()))
        .collect();
    let mut subacks: Vec<Vec<Option<u8>>> = vec![Vec::new(); SUBSCRIBERS.len()];
    let expected: usize = SUBSCRIBERS.iter().map(|spec| spec.filters.len()).sum();
    let mut count = 0;
    while count < expected {
        match events.recv_timeout(GUARD).expect("no SUBACK") {
            SubscriberEvent::SubAck {
                subscriber,
                granted,
            } => {
                subacks[subscriber].extend(granted);
                count += 1;
            }
            SubscriberEvent::Closed { subscriber } => {
                panic!("subscriber {subscriber} lost its connection while subscribing")
            }
            _ => {}
        }
    }
    for (index, spec) in SUBSCRIBERS.iter().enumerate() {
        let wanted: Vec<Option<u8>> = spec.filters.iter().map(|(_, qos, _)| Some(*qos)).collect();
        assert_eq!(subacks[index], wanted, "{}", spec.client_id);
    }
    // SUBACK came once the subscriptions were on disk; the subscribers go offline.
    for client in &clients {
        client.disconnect();
    }
    let mut closed = 0;
    while closed < SUBSCRIBERS.len() {
        if let SubscriberEvent::Closed { .. } = events.recv_timeout(GUARD).expect("no close") {
            closed += 1;
        }
    }
}

/// A second broker on a data directory in use must refuse to start, naming the lock.
fn assert_second_broker_refused(data_dir: &str, config: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--durability",
            "sync",
            "--config",
            config,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            panic!("a second broker started on a data directory in use");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("LOCK"),
        "the error must name the lock: {stderr}"
    );
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let started = Instant::now();
    let seed = match std::env::var("SWITCHBOARD_CRASH_SEED") {
        Ok(value) => value.parse().expect("SWITCHBOARD_CRASH_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("crash test seed {seed} (replay with SWITCHBOARD_CRASH_SEED={seed})");
    let mut rng = Rng(seed);

    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let config = work.path().join("switchboard.toml");
    // Subscribers stay offline through every round: their queues must hold it all.
    std::fs::write(
        &config,
        "[limits]\nmax_queued_messages = 1_000_000\nmax_queued_bytes = 1_073_741_824\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let mut logs: Vec<String> = Vec::new();
    let ledger = Mutex::new(Ledger::default());
    let next_seqs: Vec<AtomicU64> = PUBLISHERS.iter().map(|_| AtomicU64::new(0)).collect();

    let mut broker = start_broker(data_dir, config, "first start");
    set_up_subscribers(broker.addr.port());

    let mut kill_after = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            broker = start_broker(data_dir, config, &format!("restart {round}"));
        }
        let port = broker.addr.port();
        let delay = Duration::from_millis(rng.in_range(KILL_AFTER_MS));
        let before = {
            let ledger = ledger.lock().unwrap();
            (ledger.sent.len(), ledger.acked.len())
        };
        thread::scope(|scope| {
            for (publisher, version) in PUBLISHERS.iter().enumerate() {
                let next_seq = &next_seqs[publisher];
                let ledger = &ledger;
                scope.spawn(move || run_publisher(port, publisher, *version, next_seq, ledger));
            }
            thread::sleep(delay);
            broker.kill_hard();
        });
        logs.extend(broker.log_lines());
        let ledger = ledger.lock().unwrap();
        kill_after.push(format!(
            "{} ms: {} sent, {} acked",
            delay.as_millis(),
            ledger.sent.len() - before.0,
            ledger.acked.len() - before.1
        ));
    }

    let rounds_took = started.elapsed();

    // The final start: everything acknowledged must be there.
    let broker = start_broker(data_dir, config, "final restart");
    let port = broker.addr.port();
    assert_second_broker_refused(data_dir, config);

    let (sender, events) = mpsc::channel();
    let clients: Vec<SubscriberClient> = (0..SUBSCRIBERS.len())
        .map(|index| connect_subscriber(port, index, false, sender.clone()))
        .collect();
    let mut received: Vec<Received> = Vec::new();
    let mut session_present = vec![None; SUBSCRIBERS.len()];
    let collect_until = |received: &mut Vec<Received>,
                         session_present: &mut Vec<Option<bool>>,
                         done: &dyn Fn(&[Received]) -> bool| {
        let start = Instant::now();
        loop {
            if done(received) {
                return;
            }
            assert!(
                start.elapsed() < GUARD,
                "subscribers still receiving after {GUARD:?}"
            );
            match events.recv_timeout(QUIET) {
                Ok(SubscriberEvent::Message(message)) => received.push(message),
                Ok(SubscriberEvent::ConnAck {
                    subscriber,
                    session_present: present,
                }) => session_present[subscriber] = Some(present),
                Ok(SubscriberEvent::Closed { subscriber }) => {
                    panic!("subscriber {subscriber} lost its connection")
                }
                Ok(SubscriberEvent::SubAck { .. }) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return,
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("subscriber threads ended"),
            }
        }
    };
    // Until nothing new arrives for QUIET.
    collect_until(&mut received, &mut session_present, &|_| false);
    for (index, spec) in SUBSCRIBERS.iter().enumerate() {
        assert_eq!(
            session_present[index],
            Some(true),
            "{}: the session must survive",
            spec.client_id
        );
    }
    let backlog = received.len();
    let drain_took = started.elapsed() - rounds_took;

    // Subscriptions survived: new messages reach every subscriber.
    {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{Client, Event, MqttOptions};
        let (client, mut connection) =
            Client::new(MqttOptions::new("crash-marker", "127.0.0.1", port), 8);
        client
            .publish("crash/p0/q1", QoS::AtLeastOnce, false, "marker-q1")
            .unwrap();
        client
            .publish("crash/p0/q2", QoS::ExactlyOnce, false, "marker-q2")
            .unwrap();
        let mut completed = 0;
        for event in connection.iter() {
            match event.expect("marker publisher failed") {
                Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => {
                    completed += 1;
                    if completed == 2 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    let markers_everywhere = |received: &[Received]| {
        (0..SUBSCRIBERS.len()).all(|subscriber| {
            ["marker-q1", "marker-q2"].iter().all(|marker| {
                received
                    .iter()
                    .any(|message| message.subscriber == subscriber && message.payload == *marker)
            })
        })
    };
    collect_until(&mut received, &mut session_present, &markers_everywhere);
    assert!(
        markers_everywhere(&received),
        "a subscription did not survive: markers received {:?}",
        received
            .iter()
            .filter(|message| message.payload.starts_with("marker"))
            .map(|message| (message.subscriber, &message.payload))
            .collect::<Vec<_>>()
    );
    for client in &clients {
        client.disconnect();
    }

    // Retained messages survived.
    let retained = read_retained(port);
    logs.extend(broker.log_lines());
    drop(broker);

    // ----- the checks -----
    let ledger = ledger.into_inner().unwrap();
    assert!(
        ledger.refused.is_empty(),
        "the broker refused messages: {:?}",
        &ledger.refused[..ledger.refused.len().min(10)]
    );
    let mut problems: Vec<String> = Vec::new();
    for (index, spec) in SUBSCRIBERS.iter().enumerate() {
        let mine: Vec<&Received> = received
            .iter()
            .filter(|message| message.subscriber == index && !message.payload.starts_with("marker"))
            .collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for message in &mine {
            *counts.entry(message.payload.as_str()).or_default() += 1;
            let Some(sent) = ledger.sent.get(&message.payload) else {
                problems.push(format!(
                    "{}: received {:?}, which nobody sent",
                    spec.client_id, message.payload
                ));
                continue;
            };
            let matching: Vec<&(&str, u8, Option<usize>)> = spec
                .filters
                .iter()
                .filter(|(filter, _, _)| matches(filter, &sent.topic))
                .collect();
            if matching.is_empty() || message.topic != sent.topic {
                problems.push(format!(
                    "{}: received {:?} on {}, which none of its subscriptions matches",
                    spec.client_id, message.payload, message.topic
                ));
                continue;
            }
            let granted = matching.iter().map(|(_, qos, _)| *qos).max().unwrap_or(0);
            if message.qos != sent.qos.min(granted) {
                problems.push(format!(
                    "{}: {:?} arrived at QoS {}, expected {}",
                    spec.client_id,
                    message.payload,
                    message.qos,
                    sent.qos.min(granted)
                ));
            }
            if message.retain {
                // Retain As Published is off: a queued message has RETAIN 0.
                problems.push(format!(
                    "{}: {:?} arrived with RETAIN set",
                    spec.client_id, message.payload
                ));
            }
            let mut identifiers: Vec<usize> =
                matching.iter().filter_map(|(_, _, id)| *id).collect();
            let mut got = message.subscription_identifiers.clone();
            identifiers.sort_unstable();
            got.sort_unstable();
            if spec.version == Version::V5 && got != identifiers {
                problems.push(format!(
                    "{}: {:?} carried subscription identifiers {got:?}, expected {identifiers:?}",
                    spec.client_id, message.payload
                ));
            }
        }
        for sent in ledger.sent.values() {
            let matching: Vec<u8> = spec
                .filters
                .iter()
                .filter(|(filter, _, _)| matches(filter, &sent.topic))
                .map(|(_, qos, _)| *qos)
                .collect();
            let Some(granted) = matching.iter().copied().max() else {
                continue;
            };
            let payload = sent.payload();
            let count = counts.get(payload.as_str()).copied().unwrap_or(0);
            let acked = ledger.acked.contains(&payload);
            let exactly_once = sent.qos.min(granted) == 2;
            if acked && count == 0 {
                problems.push(format!(
                    "{}: acknowledged {payload} (QoS {}) was lost",
                    spec.client_id, sent.qos
                ));
            }
            if exactly_once && count > 1 {
                problems.push(format!(
                    "{}: QoS 2 {payload} ({}) arrived {count} times",
                    spec.client_id,
                    if acked {
                        "acknowledged"
                    } else {
                        "not acknowledged"
                    }
                ));
            }
        }
    }

    // Retained: per topic, the last acknowledged value or a later one.
    let mut last_acked: BTreeMap<String, u64> = BTreeMap::new();
    for sent in ledger.sent.values().filter(|sent| sent.retain) {
        if ledger.acked.contains(&sent.payload()) {
            let entry = last_acked.entry(sent.topic.clone()).or_insert(sent.seq);
            *entry = (*entry).max(sent.seq);
        }
    }
    for (topic, seq) in &last_acked {
        match retained.get(topic) {
            None => problems.push(format!(
                "retained message on {topic} lost (last acknowledged #{seq})"
            )),
            Some(payload) => match ledger.sent.get(payload) {
                Some(sent) if sent.topic == *topic && sent.retain && sent.seq >= *seq => {}
                _ => problems.push(format!(
                    "retained message on {topic} is {payload:?}, expected #{seq} or a later one"
                )),
            },
        }
    }
    for (topic, payload) in &retained {
        if !matches!(ledger.sent.get(payload), Some(sent) if sent.topic == *topic && sent.retain) {
            problems.push(format!(
                "retained message on {topic} is {payload:?}, never published as retained there"
            ));
        }
    }

    // Recovery never found damage: kill -9 can only tear the tail.
    for line in &logs {
        if line.contains("DATA LOSS") {
            problems.push(format!("broker log: {line}"));
        }
    }

    let acked_by_qos = |qos: u8| {
        ledger
            .sent
            .values()
            .filter(|sent| sent.qos == qos && ledger.acked.contains(&sent.payload()))
            .count()
    };
    let torn_tails = logs
        .iter()
        .filter(|line| line.contains("dropped an incomplete last write"))
        .count();
    eprintln!(
        "crash test: seed {seed}, {ROUNDS} kills ({kill_after:?}); {} messages sent, {} acknowledged (QoS 1: {}, QoS 2: {}), {} retained topics; {backlog} deliveries after the last restart; {torn_tails} torn tails dropped; rounds {:.1} s, drain {:.1} s, total {:.1} s",
        ledger.sent.len(),
        ledger.acked.len(),
        acked_by_qos(1),
        acked_by_qos(2),
        retained.len(),
        rounds_took.as_secs_f64(),
        drain_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        ledger.acked.len() > 100,
        "too few messages acknowledged for the test to mean anything"
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problems, the first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(30)].join("\n")
    );
}

/// The retained messages under `crash/retained/+`, by topic, read by a fresh
/// MQTT 5 client (clean start).
fn read_retained(port: u16) -> BTreeMap<String, String> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Event, MqttOptions};
    let (client, mut connection) = Client::new(
        MqttOptions::new("crash-retained-reader", "127.0.0.1", port),
        8,
    );
    client
        .subscribe("crash/retained/+", QoS::AtLeastOnce)
        .unwrap();
    let mut retained = BTreeMap::new();
    let mut subscribed = false;
    loop {
        match connection.recv_timeout(QUIET) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = true,
            Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                assert!(publish.retain, "a retained message arrives with RETAIN set");
                retained.insert(
                    String::from_utf8_lossy(&publish.topic).into_owned(),
                    String::from_utf8_lossy(&publish.payload).into_owned(),
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("retained reader failed: {error:?}"),
            // Retained messages are sent right after SUBACK; a quiet second ends it.
            Err(_) if subscribed => break,
            Err(_) => panic!("no SUBACK for the retained reader"),
        }
    }
    let _ = client.disconnect();
    retained
}
