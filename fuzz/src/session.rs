//! The checks behind the `session` fuzz target, also replayed over the seed
//! corpus by `crates/session/tests/corpus.rs` on every `cargo test`.
//!
//! The input bytes are read as a sequence of [`Op`]s (see [`decode`] for the
//! format; [`encode`] writes it, for the seed corpus), which drive one
//! [`Session`] (with the connection's [`InboundAliases`] and [`KeepAlive`])
//! and, beside it, a reference model written from the crate's
//! documentation: the queue, the in-flight flows in send order, the send
//! quota, the inbound QoS 2 ids, the drop counts, the journal, the alias
//! mappings and the keep alive deadline. After every operation the session
//! must have returned exactly what the model predicts (each PUBLISH field by
//! field, each acknowledgement result, each journal event, each drop, each
//! alias resolution, the deadline), and:
//!
//! - nothing panics;
//! - a first send takes a packet id that is not 0 and not in use
//!   ([MQTT-2.2.1-3], [MQTT-2.2.1-4]); QoS 0 carries none;
//! - the PUBLISH packets sent on the current connection and not yet
//!   acknowledged never exceed the window, min(`max_inflight`, Receive
//!   Maximum) ([MQTT-4.9.0-2]). (`inflight_len` itself may exceed the window:
//!   flows from an earlier connection with a larger window stay in flight,
//!   and only `window` of them are resent at attach.);
//! - an enqueue that is accepted leaves at most `max_queued_messages`
//!   deliveries and at most `max_queued_bytes` bytes queued (or a single
//!   delivery of any size);
//! - every PUBLISH handed out encodes in the client's version and fits its
//!   Maximum Packet Size ([MQTT-3.1.2-24]).
//!
//! No `unwrap` and no indexing: this file is also compiled into the
//! workspace's tests, under the workspace lints.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_codec::{
    encoded_len, Ack, Packet, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode,
};
use switchboard_session::{
    AckKind, ClientParams, Delivery, DropCounts, DropReason, EnqueueOutcome, InboundAliases,
    IncomingQos2, JournalEvent, KeepAlive, Message, Session, SessionError, SessionLimits,
};

/// The `session` fuzz target.
pub fn check(data: &[u8]) {
    run(&decode(data));
}

// ---------------------------------------------------------------------------
// Operations and their byte format
// ---------------------------------------------------------------------------

/// One message to enqueue or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpec {
    /// 0, 1 or 2: the delivery's QoS.
    pub qos: u8,
    /// The payload is four times this many bytes.
    pub payload_quads: u8,
    /// Index into [`TOPICS`] (modulo its length).
    pub topic: u8,
    /// Expires this many milliseconds after it is made; `None`: never.
    pub expiry_millis: Option<u16>,
    /// Routed through a shared subscription.
    pub shared: bool,
    pub retain: bool,
    /// Carries MQTT 5 properties (content type, response topic, ...).
    pub properties: bool,
    /// 0 to 3 subscription identifiers.
    pub subscription_identifiers: u8,
}

/// A packet id for an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRef {
    /// The n-th flow in flight, in send order (modulo their number; the
    /// value itself when nothing is in flight): mostly valid acknowledgements.
    InFlight(u8),
    /// Any id, 0 included.
    Raw(u16),
}

/// One step driving the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Enqueue(MessageSpec),
    /// One `poll_publish`.
    Poll,
    /// `poll_publish` until it returns `None`.
    PollAll,
    PubAck(IdRef),
    PubRec {
        id: IdRef,
        reason_code: u8,
    },
    PubComp(IdRef),
    IncomingQos2(u16),
    PubRel(u16),
    AbandonIncomingQos2(u16),
    Attach {
        /// 0: 3.1, 1: 3.1.1, 2: 5.0.
        version: u8,
        receive_maximum: u16,
        maximum_packet_size: Option<u16>,
    },
    Detach,
    Clear,
    TakeShared,
    SetJournaling(bool),
    TakeJournal,
    /// Moves the clock forward.
    Advance {
        millis: u16,
    },
    SetLimits {
        max_queued_messages: u8,
        max_queued_bytes: u16,
        max_inflight: u16,
        queue_qos0_offline: bool,
    },
    TakeDrops,
    /// Ignored while attached (restores happen before the first attach).
    RestoreQueued(MessageSpec),
    /// Ignored while attached.
    RestoreInflight {
        packet_id: u16,
        released: bool,
        message: MessageSpec,
    },
    RestoreIncomingQos2(u16),
    /// A new connection's `InboundAliases` with this Topic Alias Maximum.
    NewAliases {
        maximum: u8,
    },
    /// An inbound PUBLISH through the aliases. `topic`: 0 for an empty
    /// topic, else an index into [`TOPICS`] plus one; `alias`: 0 for none,
    /// else the alias plus one.
    ResolveAlias {
        topic: u8,
        alias: u8,
    },
    /// A new `KeepAlive` with this interval, starting now.
    KeepAliveStart {
        interval_secs: u8,
    },
    /// A packet arrived, this many milliseconds before now (a caller's clock
    /// may lag); then the deadline is checked.
    KeepAliveActivity {
        back_millis: u16,
    },
}

const OP_COUNT: u8 = 25;

/// Topics of different lengths, `$` and multi-level included; the long one
/// makes a PUBLISH exceed small Maximum Packet Sizes.
pub const TOPICS: [&str; 5] = [
    "a",
    "a/b",
    "sensors/1/temperature",
    "$SYS/broker/load",
    "a/very/long/topic/name/that/takes/up/a/good/part/of/a/small/maximum/packet/size/all/by/itself/0123456789",
];

/// The limits a run starts with (an `Op::SetLimits` changes them).
pub const START_LIMITS: SessionLimits = SessionLimits {
    max_queued_messages: 16,
    max_queued_bytes: 4096,
    max_inflight: 8,
    queue_qos0_offline: false,
};

/// Reads bytes front to back; past the end every read gives 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A window-like value: 0 to 254 as is, 255 for 65,535 (no limit).
    fn window(&mut self) -> u16 {
        match self.byte() {
            u8::MAX => u16::MAX,
            value => u16::from(value),
        }
    }
}

/// The inverse of [`Input::window`] for the values it produces.
fn put_window(out: &mut Vec<u8>, value: u16) {
    out.push(match value {
        u16::MAX => u8::MAX,
        value => u8::try_from(value).unwrap_or(254).min(254),
    });
}

impl MessageSpec {
    /// One flags byte (bits 0-1 QoS, 2 shared, 3 retain, 4 properties,
    /// 5 expiry present, 6-7 identifier count), the payload size, the topic,
    /// and the expiry as two bytes when present.
    fn read(input: &mut Input<'_>) -> MessageSpec {
        let flags = input.byte();
        let payload_quads = input.byte();
        let topic = input.byte();
        let expiry_millis = (flags & 0b0010_0000 != 0).then(|| input.u16());
        MessageSpec {
            qos: (flags & 0b11).min(2),
            payload_quads,
            topic,
            expiry_millis,
            shared: flags & 0b0100 != 0,
            retain: flags & 0b1000 != 0,
            properties: flags & 0b0001_0000 != 0,
            subscription_identifiers: flags >> 6,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let flags = self.qos.min(2)
            | u8::from(self.shared) << 2
            | u8::from(self.retain) << 3
            | u8::from(self.properties) << 4
            | u8::from(self.expiry_millis.is_some()) << 5
            | self.subscription_identifiers.min(3) << 6;
        out.extend([flags, self.payload_quads, self.topic]);
        if let Some(millis) = self.expiry_millis {
            out.extend(millis.to_le_bytes());
        }
    }
}

impl IdRef {
    /// A byte below 0x80 is `InFlight` with that index; otherwise two bytes
    /// follow with a raw id.
    fn read(input: &mut Input<'_>) -> IdRef {
        match input.byte() {
            index @ 0..=0x7F => IdRef::InFlight(index),
            _ => IdRef::Raw(input.u16()),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            IdRef::InFlight(index) => out.push(index & 0x7F),
            IdRef::Raw(id) => {
                out.push(0x80);
                out.extend(id.to_le_bytes());
            }
        }
    }
}

/// The operations in `data`: each starts with a byte whose value modulo 25
/// selects it (in the order of [`Op`]'s variants), followed by its fields,
/// integers little-endian. A field cut off by the end of the input reads as
/// zeros; the sequence ends with the input.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut input = Input(data);
    let mut ops = Vec::new();
    while !input.0.is_empty() {
        let op = match input.byte() % OP_COUNT {
            0 => Op::Enqueue(MessageSpec::read(&mut input)),
            1 => Op::Poll,
            2 => Op::PollAll,
            3 => Op::PubAck(IdRef::read(&mut input)),
            4 => Op::PubRec {
                id: IdRef::read(&mut input),
                reason_code: input.byte(),
            },
            5 => Op::PubComp(IdRef::read(&mut input)),
            6 => Op::IncomingQos2(input.u16()),
            7 => Op::PubRel(input.u16()),
            8 => Op::AbandonIncomingQos2(input.u16()),
            9 => {
                let version = input.byte() % 3;
                let receive_maximum = input.window();
                let maximum_packet_size = input.bool().then(|| input.u16());
                Op::Attach {
                    version,
                    receive_maximum,
                    maximum_packet_size,
                }
            }
            10 => Op::Detach,
            11 => Op::Clear,
            12 => Op::TakeShared,
            13 => Op::SetJournaling(input.bool()),
            14 => Op::TakeJournal,
            15 => Op::Advance {
                millis: input.u16(),
            },
            16 => Op::SetLimits {
                max_queued_messages: input.byte(),
                max_queued_bytes: input.u16(),
                max_inflight: input.window(),
                queue_qos0_offline: input.bool(),
            },
            17 => Op::TakeDrops,
            18 => Op::RestoreQueued(MessageSpec::read(&mut input)),
            19 => Op::RestoreInflight {
                packet_id: input.u16(),
                released: input.bool(),
                message: MessageSpec::read(&mut input),
            },
            20 => Op::RestoreIncomingQos2(input.u16()),
            21 => Op::NewAliases {
                maximum: input.byte(),
            },
            22 => Op::ResolveAlias {
                topic: input.byte(),
                alias: input.byte(),
            },
            23 => Op::KeepAliveStart {
                interval_secs: input.byte(),
            },
            _ => Op::KeepAliveActivity {
                back_millis: input.u16(),
            },
        };
        ops.push(op);
    }
    ops
}

/// The bytes [`decode`] reads back as `ops` (for values it can produce:
/// QoS at most 2, at most 3 identifiers, windows 0 to 254 or 65,535).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Enqueue(message) => {
                out.push(0);
                message.write(&mut out);
            }
            Op::Poll => out.push(1),
            Op::PollAll => out.push(2),
            Op::PubAck(id) => {
                out.push(3);
                id.write(&mut out);
            }
            Op::PubRec { id, reason_code } => {
                out.push(4);
                id.write(&mut out);
                out.push(*reason_code);
            }
            Op::PubComp(id) => {
                out.push(5);
                id.write(&mut out);
            }
            Op::IncomingQos2(id) => {
                out.push(6);
                out.extend(id.to_le_bytes());
            }
            Op::PubRel(id) => {
                out.push(7);
                out.extend(id.to_le_bytes());
            }
            Op::AbandonIncomingQos2(id) => {
                out.push(8);
                out.extend(id.to_le_bytes());
            }
            Op::Attach {
                version,
                receive_maximum,
                maximum_packet_size,
            } => {
                out.extend([9, *version % 3]);
                put_window(&mut out, *receive_maximum);
                match maximum_packet_size {
                    Some(size) => {
                        out.push(1);
                        out.extend(size.to_le_bytes());
                    }
                    None => out.push(0),
                }
            }
            Op::Detach => out.push(10),
            Op::Clear => out.push(11),
            Op::TakeShared => out.push(12),
            Op::SetJournaling(on) => out.extend([13, u8::from(*on)]),
            Op::TakeJournal => out.push(14),
            Op::Advance { millis } => {
                out.push(15);
                out.extend(millis.to_le_bytes());
            }
            Op::SetLimits {
                max_queued_messages,
                max_queued_bytes,
                max_inflight,
                queue_qos0_offline,
            } => {
                out.extend([16, *max_queued_messages]);
                out.extend(max_queued_bytes.to_le_bytes());
                put_window(&mut out, *max_inflight);
                out.push(u8::from(*queue_qos0_offline));
            }
            Op::TakeDrops => out.push(17),
            Op::RestoreQueued(message) => {
                out.push(18);
                message.write(&mut out);
            }
            Op::RestoreInflight {
                packet_id,
                released,
                message,
            } => {
                out.push(19);
                out.extend(packet_id.to_le_bytes());
                out.push(u8::from(*released));
                message.write(&mut out);
            }
            Op::RestoreIncomingQos2(id) => {
                out.push(20);
                out.extend(id.to_le_bytes());
            }
            Op::NewAliases { maximum } => out.extend([21, *maximum]),
            Op::ResolveAlias { topic, alias } => out.extend([22, *topic, *alias]),
            Op::KeepAliveStart { interval_secs } => out.extend([23, *interval_secs]),
            Op::KeepAliveActivity { back_millis } => {
                out.push(24);
                out.extend(back_millis.to_le_bytes());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// Runs `ops` against a session and the model, then ends the session and
/// checks that it is empty.
pub fn run(ops: &[Op]) {
    let mut harness = Harness::new();
    let mut trace = Trace { ops, step: 0 };
    for (step, op) in ops.iter().enumerate() {
        trace.step = step;
        harness.apply(*op);
        harness.check_state();
    }
    trace.step = ops.len();
    harness.apply(Op::TakeJournal);
    harness.apply(Op::TakeDrops);
    harness.apply(Op::Clear);
    harness.apply(Op::TakeJournal);
    harness.check_state();
    assert_eq!(harness.session.queued_len(), 0);
    assert_eq!(harness.session.queued_bytes(), 0);
    assert_eq!(harness.session.inflight_len(), 0);
    assert_eq!(harness.session.incoming_qos2_len(), 0);
}

/// On a failed check, prints the operations and which one failed.
struct Trace<'a> {
    ops: &'a [Op],
    step: usize,
}

impl Drop for Trace<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("session ops (failed at step {}):", self.step);
            for (step, op) in self.ops.iter().enumerate() {
                eprintln!("  {step:4} {op:?}");
            }
        }
    }
}

/// Where a flow in flight is.
#[derive(Debug, Clone)]
enum Stage {
    /// Awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Unacknowledged(Delivery),
    /// PUBREC received, awaiting PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
struct Flow {
    stage: Stage,
    message_id: u64,
    /// Send order.
    sequence: u64,
    /// Holds one unit of the current connection's send quota.
    counted: bool,
    /// The Message Expiry Interval of the first send, repeated on resends.
    expiry_interval: Option<u32>,
}

/// What the model says `poll_publish` returns.
enum Expected {
    Nothing,
    /// A held-back resend, exactly this PUBLISH.
    Resend(Publish),
    /// The head of the queue, first send, with this expiry interval; the
    /// packet id is the session's choice, checked when it is seen.
    First {
        expiry_interval: Option<u32>,
    },
}

struct Harness {
    session: Session,
    now: Instant,
    next_message_id: u64,

    // The model.
    limits: SessionLimits,
    client: Option<ClientParams>,
    queue: VecDeque<Delivery>,
    flows: BTreeMap<u16, Flow>,
    next_sequence: u64,
    incoming: BTreeSet<u16>,
    drops: DropCounts,
    journal_on: bool,
    journal: Vec<JournalEvent>,

    /// The connection's inbound aliases, and what they should hold.
    aliases: InboundAliases,
    alias_maximum: u16,
    alias_topics: BTreeMap<u16, String>,
    /// Keep alive, and its model: 1.5 times the interval after the latest
    /// activity.
    keep_alive: KeepAlive,
    keep_alive_grace: Option<Duration>,
    last_activity: Instant,
}

impl Harness {
    fn new() -> Harness {
        let now = Instant::now();
        Harness {
            session: Session::new(START_LIMITS),
            now,
            next_message_id: 1,
            limits: START_LIMITS,
            client: None,
            queue: VecDeque::new(),
            flows: BTreeMap::new(),
            next_sequence: 0,
            incoming: BTreeSet::new(),
            drops: DropCounts::default(),
            journal_on: false,
            journal: Vec::new(),
            aliases: InboundAliases::new(0),
            alias_maximum: 0,
            alias_topics: BTreeMap::new(),
            keep_alive: KeepAlive::new(0, now),
            keep_alive_grace: None,
            last_activity: now,
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Enqueue(spec) => self.enqueue(spec),
            Op::Poll => {
                self.poll();
            }
            Op::PollAll => {
                // Each send or drop takes a delivery from the queue or a
                // resend from the flows, so this ends; the bound is a guard.
                let mut rounds = self.queue.len() + self.flows.len() + 1;
                while self.poll() {
                    rounds -= 1;
                    assert!(rounds > 0, "poll_publish keeps returning packets");
                }
            }
            Op::PubAck(id) => self.puback(self.resolve(id)),
            Op::PubRec { id, reason_code } => {
                self.pubrec(Ack::with_reason(self.resolve(id), ReasonCode(reason_code)));
            }
            Op::PubComp(id) => self.pubcomp(self.resolve(id)),
            Op::IncomingQos2(id) => {
                let expected = if self.incoming.insert(id) {
                    IncomingQos2::New
                } else {
                    IncomingQos2::Duplicate
                };
                assert_eq!(self.session.incoming_qos2(id), expected);
            }
            Op::PubRel(id) => {
                let expected = if self.incoming.remove(&id) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                assert_eq!(self.session.handle_pubrel(id), expected);
            }
            Op::AbandonIncomingQos2(id) => {
                let expected = self.incoming.remove(&id);
                assert_eq!(self.session.abandon_incoming_qos2(id), expected);
            }
            Op::Attach {
                version,
                receive_maximum,
                maximum_packet_size,
            } => {
                let version = match version % 3 {
                    0 => ProtocolVersion::V3_1,
                    1 => ProtocolVersion::V3_1_1,
                    _ => ProtocolVersion::V5,
                };
                self.attach(ClientParams {
                    version,
                    receive_maximum,
                    maximum_packet_size: maximum_packet_size.map(u32::from),
                });
            }
            Op::Detach => {
                self.session.detach();
                self.client = None;
                for flow in self.flows.values_mut() {
                    flow.counted = false;
                }
            }
            Op::Clear => {
                let expected = self.clear();
                assert_eq!(self.session.clear(), expected, "clear");
            }
            Op::TakeShared => {
                let expected = self.take_shared();
                assert_eq!(self.session.take_shared(), expected, "take_shared");
            }
            Op::SetJournaling(on) => {
                self.session.set_journaling(on);
                self.journal_on = on;
                if !on {
                    self.journal.clear();
                }
            }
            Op::TakeJournal => {
                let mut events = Vec::new();
                self.session.take_journal(&mut events);
                assert_eq!(events, self.journal, "journal");
                self.journal.clear();
            }
            Op::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(millis));
            }
            Op::SetLimits {
                max_queued_messages,
                max_queued_bytes,
                max_inflight,
                queue_qos0_offline,
            } => {
                self.limits = SessionLimits {
                    max_queued_messages: usize::from(max_queued_messages),
                    max_queued_bytes: usize::from(max_queued_bytes),
                    max_inflight,
                    queue_qos0_offline,
                };
                self.session.set_limits(self.limits);
            }
            Op::TakeDrops => {
                assert_eq!(self.session.take_drops(), self.drops, "drop counts");
                self.drops = DropCounts::default();
            }
            Op::RestoreQueued(spec) => {
                if self.client.is_none() {
                    let delivery = self.delivery(spec);
                    self.session.restore_queued(delivery.clone());
                    self.queue.push_back(delivery);
                }
            }
            Op::RestoreInflight {
                packet_id,
                released,
                message,
            } => {
                if self.client.is_none() {
                    let delivery = self.delivery(message);
                    self.session
                        .restore_inflight(packet_id, delivery.clone(), released);
                    self.restore_inflight(packet_id, delivery, released);
                }
            }
            Op::RestoreIncomingQos2(id) => {
                self.session.restore_incoming_qos2(id);
                self.incoming.insert(id);
            }
            Op::NewAliases { maximum } => {
                self.aliases = InboundAliases::new(u16::from(maximum));
                self.alias_maximum = u16::from(maximum);
                self.alias_topics.clear();
            }
            Op::ResolveAlias { topic, alias } => self.resolve_alias(topic, alias),
            Op::KeepAliveStart { interval_secs } => {
                self.keep_alive = KeepAlive::new(u16::from(interval_secs), self.now);
                self.keep_alive_grace = (interval_secs != 0)
                    .then(|| Duration::from_millis(u64::from(interval_secs) * 1500));
                self.last_activity = self.now;
                self.check_keep_alive();
            }
            Op::KeepAliveActivity { back_millis } => {
                let at = self
                    .now
                    .checked_sub(Duration::from_millis(u64::from(back_millis)))
                    .unwrap_or(self.now);
                self.keep_alive.on_activity(at);
                // A clock that went backwards does not move the deadline back.
                self.last_activity = self.last_activity.max(at);
                self.check_keep_alive();
            }
        }
    }

    /// [MQTT-3.3.2-8], [MQTT-3.3.2-9], [MQTT-3.3.2-12]: alias 0 or above the
    /// maximum is invalid; a topic with an alias sets the mapping; an empty
    /// topic takes it from the mapping; an empty topic without a usable
    /// mapping is a protocol error. On error the PUBLISH is left as it was.
    fn resolve_alias(&mut self, topic: u8, alias: u8) {
        let topic = match topic {
            0 => "",
            index => TOPICS
                .get(usize::from(index - 1) % TOPICS.len())
                .copied()
                .unwrap_or("a"),
        };
        let alias = alias.checked_sub(1).map(u16::from);
        let mut publish = Publish {
            topic: topic.to_owned(),
            properties: PublishProperties {
                topic_alias: alias,
                ..PublishProperties::default()
            },
            ..Publish::default()
        };
        let before = publish.clone();
        let result = self.aliases.resolve(&mut publish);
        let expected = match alias {
            None if topic.is_empty() => Err(ReasonCode::PROTOCOL_ERROR),
            None => Ok(topic.to_owned()),
            Some(alias) if alias == 0 || alias > self.alias_maximum => {
                Err(ReasonCode::TOPIC_ALIAS_INVALID)
            }
            Some(alias) if topic.is_empty() => self
                .alias_topics
                .get(&alias)
                .cloned()
                .ok_or(ReasonCode::PROTOCOL_ERROR),
            Some(alias) => {
                self.alias_topics.insert(alias, topic.to_owned());
                Ok(topic.to_owned())
            }
        };
        match expected {
            Ok(topic) => {
                assert_eq!(
                    result,
                    Ok(()),
                    "alias {alias:?} with topic {:?}",
                    before.topic
                );
                assert_eq!(publish.topic, topic);
                assert_eq!(publish.properties.topic_alias, None, "the alias is cleared");
            }
            Err(code) => {
                assert_eq!(
                    result,
                    Err(code),
                    "alias {alias:?} with topic {:?}",
                    before.topic
                );
                assert_eq!(publish, before, "a refused PUBLISH is left as it was");
            }
        }
        assert_eq!(self.aliases.len(), self.alias_topics.len());
        assert_eq!(self.aliases.is_empty(), self.alias_topics.is_empty());
    }

    /// [MQTT-3.1.2-22] (5.0): the deadline is 1.5 times the interval after
    /// the latest activity, inclusive; interval 0 never expires.
    fn check_keep_alive(&self) {
        let deadline = self
            .keep_alive_grace
            .and_then(|grace| self.last_activity.checked_add(grace));
        assert_eq!(self.keep_alive.deadline(), deadline, "keep alive deadline");
        let expired = deadline.is_some_and(|deadline| self.now >= deadline);
        assert_eq!(self.keep_alive.is_expired(self.now), expired);
    }

    /// What the session reports must be what the model holds.
    fn check_state(&self) {
        let session = &self.session;
        assert_eq!(session.queued_len(), self.queue.len(), "queued_len");
        assert_eq!(session.queued_bytes(), self.queued_bytes(), "queued_bytes");
        assert_eq!(session.inflight_len(), self.flows.len(), "inflight_len");
        assert_eq!(session.incoming_qos2_len(), self.incoming.len());
        assert_eq!(session.client(), self.client.as_ref());
        assert_eq!(session.is_attached(), self.client.is_some());
        assert_eq!(session.is_journaling(), self.journal_on);
        assert_eq!(session.limits(), &self.limits);
        assert!(!self.flows.contains_key(&0), "packet id 0 in flight");
        let pending =
            self.client.is_some() && (self.first_deferred().is_some() || !self.queue.is_empty());
        if pending {
            assert!(
                session.has_pending(),
                "has_pending is false with work to do"
            );
        }
        if self.client.is_none() {
            assert!(!session.has_pending(), "has_pending while detached");
        }
        self.check_keep_alive();
    }

    // ----- the model, from the crate documentation -----

    fn delivery(&mut self, spec: MessageSpec) -> Delivery {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let qos = match spec.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let topic = TOPICS
            .get(usize::from(spec.topic) % TOPICS.len())
            .copied()
            .unwrap_or("a");
        let properties = if spec.properties {
            PublishProperties {
                payload_format_indicator: Some(1),
                content_type: Some("text/plain".to_owned()),
                response_topic: Some("reply/to".to_owned()),
                correlation_data: Some(Bytes::from_static(b"42")),
                user_properties: vec![("key".to_owned(), "value".to_owned())],
                ..PublishProperties::default()
            }
        } else {
            PublishProperties::default()
        };
        let message = Message {
            id,
            topic: topic.to_owned(),
            payload: Bytes::from(vec![id as u8; usize::from(spec.payload_quads) * 4]),
            qos,
            retain: spec.retain,
            properties,
            expires_at: spec
                .expiry_millis
                .map(|millis| self.now + Duration::from_millis(u64::from(millis))),
        };
        Delivery {
            message: Arc::new(message),
            qos,
            retain: spec.retain,
            subscription_identifiers: (1..=u32::from(spec.subscription_identifiers)).collect(),
            shared_group: spec.shared.then(|| Arc::from("group")),
        }
    }

    fn resolve(&self, id: IdRef) -> u16 {
        match id {
            IdRef::Raw(id) => id,
            IdRef::InFlight(index) => {
                let order = self.send_order();
                order
                    .get(usize::from(index) % order.len().max(1))
                    .copied()
                    .unwrap_or(u16::from(index))
            }
        }
    }

    fn send_order(&self) -> Vec<u16> {
        let mut order: Vec<(u64, u16)> = self
            .flows
            .iter()
            .map(|(id, flow)| (flow.sequence, *id))
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, id)| id).collect()
    }

    fn queued_bytes(&self) -> usize {
        self.queue
            .iter()
            .map(|delivery| delivery.message.size())
            .fold(0, usize::saturating_add)
    }

    fn record(&mut self, event: JournalEvent) {
        if self.journal_on {
            self.journal.push(event);
        }
    }

    fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::QueueFull => &mut self.drops.queue_full,
            DropReason::QueueBytesFull => &mut self.drops.queue_bytes_full,
            DropReason::Qos0Offline => &mut self.drops.qos0_offline,
            DropReason::Expired => &mut self.drops.expired,
            DropReason::TooLargeForClient => &mut self.drops.too_large_for_client,
        };
        *counter += 1;
    }

    /// The send quota: min(`max_inflight`, Receive Maximum), at least 1.
    fn window(&self, client: &ClientParams) -> usize {
        usize::from(self.limits.max_inflight.min(client.receive_maximum).max(1))
    }

    fn quota_used(&self) -> usize {
        self.flows.values().filter(|flow| flow.counted).count()
    }

    fn next_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        sequence
    }

    fn is_expired(&self, delivery: &Delivery) -> bool {
        delivery
            .message
            .expires_at
            .is_some_and(|expires_at| self.now >= expires_at)
    }

    fn queue_is_full(&self, size: usize) -> bool {
        self.queue.len() >= self.limits.max_queued_messages
            || (!self.queue.is_empty()
                && self.queued_bytes().saturating_add(size) > self.limits.max_queued_bytes)
    }

    /// Drops the head of the queue, never sent.
    fn drop_head(&mut self, reason: DropReason) {
        if let Some(delivery) = self.queue.pop_front() {
            self.count_drop(reason);
            self.record(JournalEvent::Removed {
                message_id: delivery.message.id,
                packet_id: None,
            });
        }
    }

    fn enqueue(&mut self, spec: MessageSpec) {
        let delivery = self.delivery(spec);
        let actual = self.session.enqueue(delivery.clone(), self.now);
        let expected = self.admit(&delivery);
        assert_eq!(actual, expected, "enqueue of {delivery:?}");
        match expected {
            EnqueueOutcome::Queued => {
                self.queue.push_back(delivery);
                let session = &self.session;
                assert!(session.queued_len() <= self.limits.max_queued_messages);
                assert!(
                    session.queued_len() == 1
                        || session.queued_bytes() <= self.limits.max_queued_bytes
                );
            }
            EnqueueOutcome::Dropped(reason) => self.count_drop(reason),
        }
    }

    /// Expired, QoS 0 while detached, queue full by count, then by bytes
    /// (after discarding expired deliveries at the head).
    fn admit(&mut self, delivery: &Delivery) -> EnqueueOutcome {
        if self.is_expired(delivery) {
            return EnqueueOutcome::Dropped(DropReason::Expired);
        }
        if self.client.is_none()
            && delivery.qos == QoS::AtMostOnce
            && !self.limits.queue_qos0_offline
        {
            return EnqueueOutcome::Dropped(DropReason::Qos0Offline);
        }
        let size = delivery.message.size();
        if self.queue_is_full(size) {
            while self.queue.front().is_some_and(|head| self.is_expired(head)) {
                self.drop_head(DropReason::Expired);
            }
            if self.queue.len() >= self.limits.max_queued_messages {
                return EnqueueOutcome::Dropped(DropReason::QueueFull);
            }
            if self.queue_is_full(size) {
                return EnqueueOutcome::Dropped(DropReason::QueueBytesFull);
            }
        }
        EnqueueOutcome::Queued
    }

    /// The oldest flow awaiting a resend on this connection.
    fn first_deferred(&self) -> Option<u16> {
        self.flows
            .iter()
            .filter(|(_, flow)| !flow.counted && matches!(flow.stage, Stage::Unacknowledged(_)))
            .min_by_key(|(_, flow)| flow.sequence)
            .map(|(id, _)| *id)
    }

    /// One `poll_publish` against the model; returns whether it sent.
    fn poll(&mut self) -> bool {
        let actual = self.session.poll_publish(self.now);
        let expected = self.expected_poll();
        let Some(client) = self.client else {
            assert_eq!(actual, None, "poll_publish while detached");
            return false;
        };
        match (expected, actual) {
            (Expected::Nothing, None) => false,
            (Expected::Resend(expected), Some(actual)) => {
                assert_eq!(actual, expected, "resend");
                check_sendable(&actual, &client);
                true
            }
            (Expected::First { expiry_interval }, Some(actual)) => {
                check_sendable(&actual, &client);
                let Some(delivery) = self.queue.pop_front() else {
                    panic!("the model has no delivery to send");
                };
                let packet_id = if delivery.qos == QoS::AtMostOnce {
                    None
                } else {
                    let Some(id) = actual.packet_id else {
                        panic!("QoS {:?} PUBLISH without a packet id", delivery.qos);
                    };
                    assert_ne!(id, 0, "[MQTT-2.2.1-3] packet id 0");
                    assert!(
                        !self.flows.contains_key(&id),
                        "[MQTT-2.2.1-4] packet id {id} is already in use"
                    );
                    Some(id)
                };
                let expected =
                    expected_publish(&delivery, &client, packet_id, false, expiry_interval);
                assert_eq!(actual, expected, "first send");
                let message_id = delivery.message.id;
                match packet_id {
                    Some(packet_id) => {
                        self.record(JournalEvent::Sent {
                            message_id,
                            packet_id,
                            qos: delivery.qos,
                        });
                        let sequence = self.next_sequence();
                        self.flows.insert(
                            packet_id,
                            Flow {
                                stage: Stage::Unacknowledged(delivery),
                                message_id,
                                sequence,
                                counted: true,
                                expiry_interval,
                            },
                        );
                        assert!(
                            self.quota_used() <= self.window(&client),
                            "[MQTT-4.9.0-2] more PUBLISH packets unacknowledged than the window"
                        );
                    }
                    None => self.record(JournalEvent::SentQos0 { message_id }),
                }
                true
            }
            (Expected::Nothing, Some(actual)) => {
                panic!("poll_publish sent {actual:?}, the model expected nothing")
            }
            (_, None) => panic!("poll_publish sent nothing, the model expected a PUBLISH"),
        }
    }

    /// Held-back resends first (in send order, within the window), then the
    /// queue strictly in order: expired heads and heads too large for the
    /// client are dropped; QoS 1 and 2 wait for the window.
    fn expected_poll(&mut self) -> Expected {
        let Some(client) = self.client else {
            return Expected::Nothing;
        };
        let window = self.window(&client);
        while let Some(id) = self.first_deferred() {
            if self.quota_used() >= window {
                return Expected::Nothing;
            }
            let Some(flow) = self.flows.get_mut(&id) else {
                break;
            };
            let Stage::Unacknowledged(delivery) = &flow.stage else {
                break;
            };
            let publish = expected_publish(delivery, &client, Some(id), true, flow.expiry_interval);
            if fits(&publish, &client) {
                flow.counted = true;
                return Expected::Resend(publish);
            }
            let message_id = flow.message_id;
            self.flows.remove(&id);
            self.count_drop(DropReason::TooLargeForClient);
            self.record(JournalEvent::Removed {
                message_id,
                packet_id: Some(id),
            });
        }
        loop {
            let Some(head) = self.queue.front() else {
                return Expected::Nothing;
            };
            if self.is_expired(head) {
                self.drop_head(DropReason::Expired);
                continue;
            }
            if head.qos != QoS::AtMostOnce && self.quota_used() >= window {
                return Expected::Nothing;
            }
            let expiry_interval = head
                .message
                .expires_at
                .map(|expires_at| remaining_whole_seconds(expires_at, self.now));
            // Any non-zero id: the size does not depend on which.
            let packet_id = (head.qos != QoS::AtMostOnce).then_some(1);
            let publish = expected_publish(head, &client, packet_id, false, expiry_interval);
            if !fits(&publish, &client) {
                self.drop_head(DropReason::TooLargeForClient);
                continue;
            }
            return Expected::First { expiry_interval };
        }
    }

    /// The result the model expects for an acknowledgement `received` of
    /// `id`, given which one the flow awaits.
    fn unexpected(&self, received: AckKind, id: u16) -> SessionError {
        match self.flows.get(&id) {
            None => SessionError::UnknownPacketId {
                received,
                packet_id: id,
            },
            Some(flow) => SessionError::UnexpectedAck {
                received,
                expected: match &flow.stage {
                    Stage::Unacknowledged(delivery) if delivery.qos == QoS::AtLeastOnce => {
                        AckKind::PubAck
                    }
                    Stage::Unacknowledged(_) => AckKind::PubRec,
                    Stage::Released => AckKind::PubComp,
                },
                packet_id: id,
            },
        }
    }

    fn end_flow(&mut self, id: u16) {
        if let Some(flow) = self.flows.remove(&id) {
            self.record(JournalEvent::Completed {
                packet_id: id,
                message_id: flow.message_id,
            });
        }
    }

    fn puback(&mut self, id: u16) {
        let awaits_puback = matches!(
            self.flows.get(&id).map(|flow| &flow.stage),
            Some(Stage::Unacknowledged(delivery)) if delivery.qos == QoS::AtLeastOnce
        );
        let expected = if awaits_puback {
            Ok(())
        } else {
            Err(self.unexpected(AckKind::PubAck, id))
        };
        assert_eq!(self.session.handle_puback(id), expected, "PUBACK {id}");
        if awaits_puback {
            self.end_flow(id);
        }
    }

    fn pubrec(&mut self, ack: Ack) {
        let id = ack.packet_id;
        let actual = self.session.handle_pubrec(&ack);
        let expected = match self.flows.get(&id).map(|flow| &flow.stage) {
            Some(Stage::Unacknowledged(delivery)) if delivery.qos == QoS::ExactlyOnce => {
                if ack.reason_code.is_error() {
                    // [MQTT-4.4.0-2] the flow ends; nothing more is sent.
                    self.end_flow(id);
                    Ok(None)
                } else {
                    if let Some(flow) = self.flows.get_mut(&id) {
                        flow.stage = Stage::Released;
                    }
                    self.record(JournalEvent::Released { packet_id: id });
                    Ok(Some(Ack::new(id)))
                }
            }
            // A repeated PUBREC gets the PUBREL again.
            Some(Stage::Released) => Ok(Some(Ack::new(id))),
            _ => Err(self.unexpected(AckKind::PubRec, id)),
        };
        assert_eq!(actual, expected, "PUBREC {ack:?}");
    }

    fn pubcomp(&mut self, id: u16) {
        let released = matches!(
            self.flows.get(&id).map(|flow| &flow.stage),
            Some(Stage::Released)
        );
        let expected = if released {
            Ok(())
        } else {
            Err(self.unexpected(AckKind::PubComp, id))
        };
        assert_eq!(self.session.handle_pubcomp(id), expected, "PUBCOMP {id}");
        if released {
            self.end_flow(id);
        }
    }

    /// In send order: a PUBREL for each released flow; each unacknowledged
    /// PUBLISH again with DUP=1 while the window has room (the rest wait for
    /// `poll_publish`), or dropped if too large for the new connection.
    fn attach(&mut self, client: ClientParams) {
        let actual = self.session.attach(client);
        self.client = Some(client);
        for flow in self.flows.values_mut() {
            flow.counted = false;
        }
        let window = self.window(&client);
        let mut quota = 0;
        let mut expected = Vec::new();
        for id in self.send_order() {
            let Some(flow) = self.flows.get_mut(&id) else {
                continue;
            };
            let delivery = match &flow.stage {
                Stage::Released => {
                    expected.push(Packet::PubRel(Ack::new(id)));
                    continue;
                }
                Stage::Unacknowledged(delivery) => delivery,
            };
            if quota >= window {
                continue;
            }
            let publish = expected_publish(delivery, &client, Some(id), true, flow.expiry_interval);
            if fits(&publish, &client) {
                flow.counted = true;
                quota += 1;
                expected.push(Packet::Publish(publish));
            } else {
                let message_id = flow.message_id;
                self.flows.remove(&id);
                self.count_drop(DropReason::TooLargeForClient);
                self.record(JournalEvent::Removed {
                    message_id,
                    packet_id: Some(id),
                });
            }
        }
        assert_eq!(actual, expected, "attach({client:?})");
        for packet in &actual {
            if let Packet::Publish(publish) = packet {
                check_sendable(publish, &client);
            }
        }
    }

    /// Shared deliveries that may go to another member: unacknowledged
    /// QoS 1 flows (send order), then queued ones (queue order).
    fn take_shared(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        for id in self.send_order() {
            let take = matches!(
                self.flows.get(&id).map(|flow| &flow.stage),
                Some(Stage::Unacknowledged(delivery))
                    if delivery.shared_group.is_some() && delivery.qos != QoS::ExactlyOnce
            );
            if !take {
                continue;
            }
            if let Some(Flow {
                stage: Stage::Unacknowledged(delivery),
                message_id,
                ..
            }) = self.flows.remove(&id)
            {
                self.record(JournalEvent::Removed {
                    message_id,
                    packet_id: Some(id),
                });
                taken.push(delivery);
            }
        }
        let mut kept = VecDeque::new();
        for delivery in std::mem::take(&mut self.queue) {
            if delivery.shared_group.is_some() {
                self.record(JournalEvent::Removed {
                    message_id: delivery.message.id,
                    packet_id: None,
                });
                taken.push(delivery);
            } else {
                kept.push_back(delivery);
            }
        }
        self.queue = kept;
        taken
    }

    fn clear(&mut self) -> Vec<Delivery> {
        let shared = self.take_shared();
        for id in self.send_order() {
            if let Some(message_id) = self.flows.get(&id).map(|flow| flow.message_id) {
                self.record(JournalEvent::Removed {
                    message_id,
                    packet_id: Some(id),
                });
            }
        }
        for message_id in self
            .queue
            .iter()
            .map(|delivery| delivery.message.id)
            .collect::<Vec<_>>()
        {
            self.record(JournalEvent::Removed {
                message_id,
                packet_id: None,
            });
        }
        self.queue.clear();
        self.flows.clear();
        self.incoming.clear();
        shared
    }

    /// `restore_inflight` as documented: a released flow with id 0 is
    /// ignored; an unreleased one with id 0 or at QoS 0 is queued instead;
    /// otherwise the flow goes last in send order, holding no quota,
    /// replacing any flow with that id.
    fn restore_inflight(&mut self, packet_id: u16, delivery: Delivery, released: bool) {
        let message_id = delivery.message.id;
        let stage = if released {
            if packet_id == 0 {
                return;
            }
            Stage::Released
        } else {
            if packet_id == 0 || delivery.qos == QoS::AtMostOnce {
                self.queue.push_back(delivery);
                return;
            }
            Stage::Unacknowledged(delivery)
        };
        let sequence = self.next_sequence();
        self.flows.insert(
            packet_id,
            Flow {
                stage,
                message_id,
                sequence,
                counted: false,
                expiry_interval: None,
            },
        );
    }
}

/// The PUBLISH for a delivery: MQTT 5 clients get the message's properties,
/// the delivery's subscription identifiers, the given expiry interval and
/// no alias; 3.x clients no properties. DUP never at QoS 0.
fn expected_publish(
    delivery: &Delivery,
    client: &ClientParams,
    packet_id: Option<u16>,
    dup: bool,
    expiry_interval: Option<u32>,
) -> Publish {
    let message = &delivery.message;
    let properties = if client.version.is_v5() {
        PublishProperties {
            message_expiry_interval: expiry_interval,
            topic_alias: None,
            subscription_identifiers: delivery.subscription_identifiers.clone(),
            ..message.properties.clone()
        }
    } else {
        PublishProperties::default()
    };
    Publish {
        dup: dup && delivery.qos != QoS::AtMostOnce,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: message.topic.clone(),
        packet_id,
        properties,
        payload: message.payload.clone(),
    }
}

/// Whether the PUBLISH fits the client's Maximum Packet Size.
fn fits(publish: &Publish, client: &ClientParams) -> bool {
    let Some(maximum) = client.maximum_packet_size else {
        return true;
    };
    encoded_len(&Packet::Publish(publish.clone()), client.version)
        .is_ok_and(|length| length as u64 <= u64::from(maximum))
}

/// A PUBLISH handed to the connection can be written: it encodes, within
/// the client's Maximum Packet Size, with a packet id exactly when QoS > 0.
fn check_sendable(publish: &Publish, client: &ClientParams) {
    assert_eq!(publish.packet_id.is_some(), publish.qos != QoS::AtMostOnce);
    assert_ne!(publish.packet_id, Some(0));
    assert!(!(publish.dup && publish.qos == QoS::AtMostOnce));
    let length = encoded_len(&Packet::Publish(publish.clone()), client.version);
    assert!(length.is_ok(), "an unencodable PUBLISH: {length:?}");
    assert!(
        fits(publish, client),
        "[MQTT-3.1.2-24] PUBLISH over the client's maximum"
    );
}

/// The received interval minus the whole seconds waited: the time left,
/// rounded up, at least 1 ([MQTT-3.3.2-6]).
fn remaining_whole_seconds(expires_at: Instant, now: Instant) -> u32 {
    let remaining = expires_at.saturating_duration_since(now);
    let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    u32::try_from(seconds).unwrap_or(u32::MAX).max(1)
}
