//! The state that records rebuild: what the broker reloads at start.
//!
//! [`State::apply`] applies one [`Record`]; [`State::records`] yields a
//! minimal record sequence that rebuilds an equal state (the content of a
//! snapshot). Reading is through accessors only, because the message
//! reference counts are an invariant of the whole structure: every queue
//! entry, retained topic and outbound in-flight entry in the PUBLISH stage
//! points at a message that is present, and each message counts them.
//!
//! # How records apply
//!
//! Every record sets the state of its key, so applying it twice, or to a
//! state that already reflects it, changes nothing more (idempotence):
//!
//! | record | effect |
//! |---|---|
//! | `SessionUpsert` | creates the session, or updates level and expiry of an existing one (keeping subscriptions, queue, in-flight); marks it connected |
//! | `SessionOwner` | sets the session's owner (the user name it connected with, or none) |
//! | `SessionDetached` | marks the session detached with that expiry deadline |
//! | `SessionEnd` | removes the session, everything in it, and the client's will |
//! | `Subscribe` / `Unsubscribe` | sets / removes the filter's subscription |
//! | `Message` | sets the message's content (keeping its references) |
//! | `Enqueue` | appends an entry for the message unless the session already has one for it (one entry per session and message) |
//! | `Dequeue` | removes the session's entry for the message |
//! | `OutboundSent` | puts the packet id last in the outbound order, awaiting PUBACK/PUBREC for the message (unchanged if already exactly so) |
//! | `OutboundReleased` | puts the packet id last, in the PUBREL stage (creating it if unknown); the message is no longer referenced by it |
//! | `OutboundComplete` | frees the packet id |
//! | `OutboundDone` | `OutboundComplete` then `Dequeue`, in one record |
//! | `InboundQos2` / `InboundReleased` | holds / frees an inbound QoS 2 packet id |
//! | `Retain` / `RetainClear` | sets / clears the topic's retained message |
//! | `Will` / `WillClear` | sets / clears the client's pending will |
//!
//! A record about a session that does not exist, or referring to a message
//! that is not present, is ignored (`Retain` of an absent message clears the
//! topic). A message whose last reference goes away is dropped at once. A
//! message that has never been referenced stays, so that a `Message` and the
//! records referring to it may arrive in different appends;
//! [`State::drop_unreferenced`] removes such messages once nothing more can
//! refer to them (recovery calls it at the end).
//!
//! Recovery replays the log on top of a snapshot that may already reflect
//! some of the replayed records; it applies them through `Replay`, which adds
//! two rules so that order and liveness come out as they were (see `Replay`).
//!
//! # What the writer must respect
//!
//! - Write a `Message` before (or in the same append as, earlier in the
//!   `Vec`) any record that refers to it, and a `SessionUpsert` before any
//!   record about that session. With [`crate::Log::checkpoint_state`], which
//!   drops unreferenced messages, write a `Message` in the same append as
//!   the first record referring to it.
//! - When moving a message between sessions (shared subscription hand-over),
//!   write the new `Enqueue` before the old `Dequeue`: the message is dropped
//!   as soon as nothing refers to it, and is not referenced again after that.
//! - Write `Enqueue` only for a message the session does not already have
//!   queued, and `OutboundSent` only for a free packet id (or one whose
//!   earlier flow is complete): writes that change nothing now may move the
//!   entry when replayed over a snapshot.
//! - Write all records about one session in the order of its state changes
//!   (append under the session's lock), and capture a checkpoint's state of
//!   one session consistently (under the same lock).
//! - Never reuse a message id for a different message while the old one may
//!   still be referenced. Reusing the id of a message that was dropped is
//!   safe (a later `Message` replaces the content), but the simplest rule is
//!   to start the id counter above [`State::max_message_id`] and never reuse.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use crate::record::Record;

/// Whether a session has a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Connected when last recorded. After a crash the connection is gone:
    /// the broker decides the session's fate (for example, expire it
    /// `session_expiry_secs` after start).
    Connected,
    /// Detached; the session ends at `expires_at_ms` (unix ms) or never.
    Detached { expires_at_ms: Option<u64> },
}

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The MQTT 5 subscription options byte.
    pub options: u8,
    pub identifier: Option<u32>,
}

/// A message queued for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub message_id: u64,
    pub qos: u8,
    pub retain: bool,
    pub subscription_identifiers: Vec<u32>,
    pub shared_filter: Option<String>,
}

/// The user a session belongs to (see [`Record::SessionOwner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOwner {
    /// Not recorded: written before owners were, or no `SessionOwner` yet.
    Unknown,
    /// Connected without a user name, in this authentication realm.
    Anonymous { realm: u32 },
    /// Connected as this user of this authentication realm.
    User { realm: u32, name: String },
}

/// The stage of an outbound QoS 1/2 delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundStage {
    /// PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2); on resume the
    /// PUBLISH is sent again with DUP set.
    Publish { message_id: u64 },
    /// PUBREC received, awaiting PUBCOMP; on resume PUBREL is sent again.
    Release,
}

impl OutboundStage {
    /// The message this stage holds a reference to.
    fn message_id(self) -> Option<u64> {
        match self {
            OutboundStage::Publish { message_id } => Some(message_id),
            OutboundStage::Release => None,
        }
    }
}

/// One persistent session.
///
/// The queue holds every message queued and not yet dequeued, in queue
/// order, including those currently in flight: a message sent with a packet
/// id appears both in [`SessionState::queue`] and, in its PUBLISH stage, in
/// [`SessionState::outbound`], until the broker writes `Dequeue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    protocol_level: u8,
    session_expiry_secs: u32,
    presence: Presence,
    owner: SessionOwner,
    subscriptions: BTreeMap<String, Subscription>,
    queue: Ordered<u64, QueueEntry>,
    outbound: Ordered<u16, OutboundStage>,
    inbound_qos2: BTreeSet<u16>,
}

impl SessionState {
    fn new(protocol_level: u8, session_expiry_secs: u32) -> SessionState {
        SessionState {
            protocol_level,
            session_expiry_secs,
            presence: Presence::Connected,
            owner: SessionOwner::Unknown,
            subscriptions: BTreeMap::new(),
            queue: Ordered::default(),
            outbound: Ordered::default(),
            inbound_qos2: BTreeSet::new(),
        }
    }

    /// 3, 4 or 5 (MQTT 3.1, 3.1.1, 5.0), as last connected.
    pub fn protocol_level(&self) -> u8 {
        self.protocol_level
    }

    pub fn session_expiry_secs(&self) -> u32 {
        self.session_expiry_secs
    }

    pub fn presence(&self) -> Presence {
        self.presence
    }

    /// Who the session belongs to.
    pub fn owner(&self) -> &SessionOwner {
        &self.owner
    }

    /// Subscriptions by topic filter (`$share/...` filters included).
    pub fn subscriptions(&self) -> &BTreeMap<String, Subscription> {
        &self.subscriptions
    }

    /// Queued messages, oldest first.
    pub fn queue(&self) -> impl Iterator<Item = &QueueEntry> + '_ {
        self.queue.values()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Outbound in-flight packet ids in the order of their last transition:
    /// PUBLISH-stage ids in the order the PUBLISHes were sent, PUBREL-stage
    /// ids in the order the PUBRECs arrived. Resend in this order on resume
    /// ([MQTT-4.6.0-1], [MQTT-4.6.0-4]).
    pub fn outbound(&self) -> impl Iterator<Item = (u16, OutboundStage)> + '_ {
        self.outbound
            .iter()
            .map(|(packet_id, stage)| (*packet_id, *stage))
    }

    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub fn inbound_qos2(&self) -> &BTreeSet<u16> {
        &self.inbound_qos2
    }

    /// Every message id this session holds a reference to (queue entries and
    /// PUBLISH-stage outbound entries), with repetitions.
    fn references(&self) -> impl Iterator<Item = u64> + '_ {
        self.queue.values().map(|entry| entry.message_id).chain(
            self.outbound
                .values()
                .filter_map(|stage| stage.message_id()),
        )
    }
}

/// A kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Unix ms; `None` = never expires.
    pub expires_at_ms: Option<u64>,
    /// The MQTT 5 PUBLISH form; see [`crate::decode_publish`].
    pub publish: Bytes,
    /// Queue entries, retained topics and PUBLISH-stage outbound entries
    /// referring to this message.
    references: u32,
}

impl StoredMessage {
    /// How many queue entries, retained topics and outbound entries refer to
    /// this message. Zero only for a message not yet referenced.
    pub fn references(&self) -> u32 {
        self.references
    }

    /// True once the wall clock (unix ms) has reached the expiry deadline.
    pub fn is_expired(&self, now_unix_ms: u64) -> bool {
        self.expires_at_ms
            .is_some_and(|deadline| now_unix_ms >= deadline)
    }
}

/// A pending will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// The MQTT 5 PUBLISH form; see [`crate::decode_publish`].
    pub publish: Bytes,
    pub delay_secs: u32,
    /// Unix ms at which a detached client's delayed will is due.
    pub publish_at_ms: Option<u64>,
}

/// Everything that survives a restart. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct State {
    sessions: BTreeMap<String, SessionState>,
    messages: BTreeMap<u64, StoredMessage>,
    retained: BTreeMap<String, u64>,
    wills: BTreeMap<String, StoredWill>,
    /// The highest message id ever applied, even if the message has since
    /// been dropped; not part of equality (see `PartialEq`), so it is a hint.
    max_message_id: Option<u64>,
    /// True while recovery replays the log on top of a snapshot: messages
    /// are not dropped when their last reference goes (see [`Replay`]).
    replaying: bool,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn sessions(&self) -> &BTreeMap<String, SessionState> {
        &self.sessions
    }

    pub fn session(&self, client_id: &str) -> Option<&SessionState> {
        self.sessions.get(client_id)
    }

    pub fn messages(&self) -> &BTreeMap<u64, StoredMessage> {
        &self.messages
    }

    pub fn message(&self, id: u64) -> Option<&StoredMessage> {
        self.messages.get(&id)
    }

    /// Retained message id by topic.
    pub fn retained(&self) -> &BTreeMap<String, u64> {
        &self.retained
    }

    /// Pending wills by client id.
    pub fn wills(&self) -> &BTreeMap<String, StoredWill> {
        &self.wills
    }

    /// The highest message id this state has seen applied, including
    /// messages already dropped. Start the broker's id counter above it.
    pub fn max_message_id(&self) -> Option<u64> {
        self.max_message_id
    }

    /// The bytes of message content held (PUBLISH forms of messages and
    /// wills): an estimate of the live data a snapshot will hold, for
    /// [`crate::Log::should_checkpoint`].
    pub fn live_bytes(&self) -> u64 {
        let messages: usize = self.messages.values().map(|m| m.publish.len()).sum();
        let wills: usize = self.wills.values().map(|w| w.publish.len()).sum();
        (messages + wills) as u64
    }

    /// Applies one record (see the module docs for each record's effect).
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::SessionUpsert {
                client_id,
                protocol_level,
                session_expiry_secs,
            } => match self.sessions.get_mut(client_id) {
                Some(session) => {
                    session.protocol_level = *protocol_level;
                    session.session_expiry_secs = *session_expiry_secs;
                    session.presence = Presence::Connected;
                }
                None => {
                    self.sessions.insert(
                        client_id.clone(),
                        SessionState::new(*protocol_level, *session_expiry_secs),
                    );
                }
            },
            Record::SessionOwner {
                client_id,
                realm,
                user,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.owner = match user {
                        Some(user) => SessionOwner::User {
                            realm: *realm,
                            name: user.clone(),
                        },
                        None => SessionOwner::Anonymous { realm: *realm },
                    };
                }
            }
            Record::SessionDetached {
                client_id,
                expires_at_ms,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.presence = Presence::Detached {
                        expires_at_ms: *expires_at_ms,
                    };
                }
            }
            Record::SessionEnd { client_id } => {
                if let Some(session) = self.sessions.remove(client_id) {
                    let released: Vec<u64> = session.references().collect();
                    for message_id in released {
                        self.release(message_id);
                    }
                }
                self.wills.remove(client_id);
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
                identifier,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.subscriptions.insert(
                        filter.clone(),
                        Subscription {
                            options: *options,
                            identifier: *identifier,
                        },
                    );
                }
            }
            Record::Unsubscribe { client_id, filter } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.subscriptions.remove(filter);
                }
            }
            Record::Message {
                id,
                expires_at_ms,
                publish,
            } => {
                self.max_message_id = Some(self.max_message_id.map_or(*id, |max| max.max(*id)));
                let message = self.messages.entry(*id).or_insert_with(|| StoredMessage {
                    expires_at_ms: None,
                    publish: Bytes::new(),
                    references: 0,
                });
                message.expires_at_ms = *expires_at_ms;
                message.publish = publish.clone();
            }
            Record::Enqueue {
                client_id,
                message_id,
                qos,
                retain,
                subscription_identifiers,
                shared_filter,
            } => {
                let Some(session) = self.sessions.get_mut(client_id) else {
                    return;
                };
                let Some(message) = self.messages.get_mut(message_id) else {
                    return;
                };
                let entry = QueueEntry {
                    message_id: *message_id,
                    qos: *qos,
                    retain: *retain,
                    subscription_identifiers: subscription_identifiers.clone(),
                    shared_filter: shared_filter.clone(),
                };
                if session.queue.insert_if_absent(*message_id, entry) {
                    message.references = message.references.saturating_add(1);
                }
            }
            Record::Dequeue {
                client_id,
                message_id,
            } => {
                let removed = self
                    .sessions
                    .get_mut(client_id)
                    .and_then(|session| session.queue.remove(message_id));
                if removed.is_some() {
                    self.release(*message_id);
                }
            }
            Record::OutboundSent {
                client_id,
                message_id,
                packet_id,
            } => {
                let Some(session) = self.sessions.get_mut(client_id) else {
                    return;
                };
                let stage = OutboundStage::Publish {
                    message_id: *message_id,
                };
                if session.outbound.get(packet_id) == Some(&stage) {
                    return;
                }
                let Some(message) = self.messages.get_mut(message_id) else {
                    return;
                };
                message.references = message.references.saturating_add(1);
                // A new send: last in the resend order.
                let previous = session.outbound.move_to_end(*packet_id, stage);
                if let Some(old) = previous.and_then(OutboundStage::message_id) {
                    self.release(old);
                }
            }
            Record::OutboundReleased {
                client_id,
                packet_id,
            } => {
                let Some(session) = self.sessions.get_mut(client_id) else {
                    return;
                };
                // PUBRELs are resent in the order their PUBRECs arrived
                // ([MQTT-4.6.0-4]): last in the order. Created if unknown
                // (its PUBLISH stage was lost), because PUBREL must still go.
                let previous = session
                    .outbound
                    .move_to_end(*packet_id, OutboundStage::Release);
                if let Some(old) = previous.and_then(OutboundStage::message_id) {
                    self.release(old);
                }
            }
            Record::OutboundComplete {
                client_id,
                packet_id,
            } => {
                let previous = self
                    .sessions
                    .get_mut(client_id)
                    .and_then(|session| session.outbound.remove(packet_id));
                if let Some(old) = previous.and_then(OutboundStage::message_id) {
                    self.release(old);
                }
            }
            Record::OutboundDone {
                client_id,
                packet_id,
                message_id,
            } => {
                let (previous, removed) = match self.sessions.get_mut(client_id) {
                    Some(session) => (
                        session.outbound.remove(packet_id),
                        session.queue.remove(message_id),
                    ),
                    None => (None, None),
                };
                if let Some(old) = previous.and_then(OutboundStage::message_id) {
                    self.release(old);
                }
                if removed.is_some() {
                    self.release(*message_id);
                }
            }
            Record::InboundQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.inbound_qos2.insert(*packet_id);
                }
            }
            Record::InboundReleased {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.inbound_qos2.remove(packet_id);
                }
            }
            Record::Retain { topic, message_id } => {
                if self.retained.get(topic) == Some(message_id) {
                    return;
                }
                match self.messages.get_mut(message_id) {
                    Some(message) => {
                        message.references = message.references.saturating_add(1);
                        if let Some(old) = self.retained.insert(topic.clone(), *message_id) {
                            self.release(old);
                        }
                    }
                    None => {
                        // The retained message is gone (a damaged log): the
                        // topic has no retained message rather than an
                        // older one.
                        if let Some(old) = self.retained.remove(topic) {
                            self.release(old);
                        }
                    }
                }
            }
            Record::RetainClear { topic } => {
                if let Some(old) = self.retained.remove(topic) {
                    self.release(old);
                }
            }
            Record::Will {
                client_id,
                publish,
                delay_secs,
                publish_at_ms,
            } => {
                self.wills.insert(
                    client_id.clone(),
                    StoredWill {
                        publish: publish.clone(),
                        delay_secs: *delay_secs,
                        publish_at_ms: *publish_at_ms,
                    },
                );
            }
            Record::WillClear { client_id } => {
                self.wills.remove(client_id);
            }
        }
    }

    /// Drops one reference to a message, and the message with its last one.
    fn release(&mut self, message_id: u64) {
        if let Some(message) = self.messages.get_mut(&message_id) {
            message.references = message.references.saturating_sub(1);
            if message.references == 0 && !self.replaying {
                self.messages.remove(&message_id);
            }
        }
    }

    /// Removes messages nothing refers to (written, but their references
    /// never were). Returns how many were removed.
    pub fn drop_unreferenced(&mut self) -> usize {
        let before = self.messages.len();
        self.messages.retain(|_, message| message.references > 0);
        before - self.messages.len()
    }

    /// A minimal record sequence that rebuilds an equal state when applied
    /// to an empty one: messages first, then retained topics, sessions (each
    /// with its subscriptions, queue in order, outbound in send order,
    /// inbound ids), then wills.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let messages = self.messages.iter().map(|(id, message)| Record::Message {
            id: *id,
            expires_at_ms: message.expires_at_ms,
            publish: message.publish.clone(),
        });
        let retained = self
            .retained
            .iter()
            .map(|(topic, message_id)| Record::Retain {
                topic: topic.clone(),
                message_id: *message_id,
            });
        let sessions = self
            .sessions
            .iter()
            .flat_map(|(client_id, session)| session_records(client_id, session));
        let wills = self.wills.iter().map(|(client_id, will)| Record::Will {
            client_id: client_id.clone(),
            publish: will.publish.clone(),
            delay_secs: will.delay_secs,
            publish_at_ms: will.publish_at_ms,
        });
        messages.chain(retained).chain(sessions).chain(wills)
    }
}

/// Applies records replayed from the log on top of a snapshot that may
/// already reflect some of them (a checkpoint's state is captured while
/// appends continue; see the crate docs).
///
/// [`State::apply`] is idempotent record by record, but replaying a stretch
/// of records over a state that already reflects part of it needs two more
/// rules:
///
/// - **Order.** A queue entry or outbound packet id that the snapshot holds
///   at the position of a later insert would otherwise keep that position
///   while an earlier insert of the same key is replayed, and come back in
///   the wrong place after a removal. So the first record of the replay
///   about a queue entry (session, message) or outbound packet id (session,
///   packet id), if it inserts (`Enqueue`, `OutboundSent`), first removes
///   what the snapshot holds for that key: from then on the key goes through
///   exactly the states it went through when the records were written, and
///   keys the replay never touches keep their snapshot order, before all
///   the others, as they were.
/// - **Liveness.** A replayed removal can take away what is, in the
///   snapshot, a message's last reference, with the reference that keeps it
///   alive coming later in the replay. So messages are not dropped while
///   replaying; [`Replay::finish`] drops what is unreferenced at the end.
///
/// This relies on the writer's rules in the module docs; in particular an
/// `Enqueue` is only written for a message the session does not already
/// have queued.
pub(crate) struct Replay<'a> {
    state: &'a mut State,
    touched_queue: HashSet<(String, u64)>,
    touched_outbound: HashSet<(String, u16)>,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(state: &'a mut State) -> Replay<'a> {
        state.replaying = true;
        Replay {
            state,
            touched_queue: HashSet::new(),
            touched_outbound: HashSet::new(),
        }
    }

    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Enqueue {
                client_id,
                message_id,
                ..
            } => {
                let first_touch = self.touched_queue.insert((client_id.clone(), *message_id));
                if first_touch {
                    self.state.forget_queue_entry(client_id, *message_id);
                }
            }
            Record::Dequeue {
                client_id,
                message_id,
            } => {
                self.touched_queue.insert((client_id.clone(), *message_id));
            }
            Record::OutboundSent {
                client_id,
                packet_id,
                ..
            } => {
                let first_touch = self
                    .touched_outbound
                    .insert((client_id.clone(), *packet_id));
                if first_touch {
                    self.state.forget_outbound(client_id, *packet_id);
                }
            }
            Record::OutboundReleased {
                client_id,
                packet_id,
            }
            | Record::OutboundComplete {
                client_id,
                packet_id,
            } => {
                self.touched_outbound
                    .insert((client_id.clone(), *packet_id));
            }
            Record::OutboundDone {
                client_id,
                packet_id,
                message_id,
            } => {
                self.touched_outbound
                    .insert((client_id.clone(), *packet_id));
                self.touched_queue.insert((client_id.clone(), *message_id));
            }
            _ => {}
        }
        self.state.apply(record);
    }

    /// Ends the replay: drops messages nothing refers to; returns how many.
    pub(crate) fn finish(self) -> usize {
        self.state.replaying = false;
        self.state.drop_unreferenced()
    }
}

impl Drop for Replay<'_> {
    fn drop(&mut self) {
        self.state.replaying = false;
    }
}

impl State {
    /// Removes a queue entry without dropping its message (replay only).
    fn forget_queue_entry(&mut self, client_id: &str, message_id: u64) {
        let removed = self
            .sessions
            .get_mut(client_id)
            .and_then(|session| session.queue.remove(&message_id));
        if removed.is_some() {
            self.release(message_id);
        }
    }

    /// Removes an outbound entry without dropping its message (replay only).
    fn forget_outbound(&mut self, client_id: &str, packet_id: u16) {
        let removed = self
            .sessions
            .get_mut(client_id)
            .and_then(|session| session.outbound.remove(&packet_id));
        if let Some(old) = removed.and_then(OutboundStage::message_id) {
            self.release(old);
        }
    }
}

/// Equal when they hold the same sessions, messages, retained topics and
/// wills; [`State::max_message_id`] is a hint and not compared.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.sessions == other.sessions
            && self.messages == other.messages
            && self.retained == other.retained
            && self.wills == other.wills
    }
}

impl Eq for State {}

/// The records that rebuild one session.
fn session_records<'a>(
    client_id: &'a str,
    session: &'a SessionState,
) -> impl Iterator<Item = Record> + 'a {
    let upsert = std::iter::once(Record::SessionUpsert {
        client_id: client_id.to_owned(),
        protocol_level: session.protocol_level,
        session_expiry_secs: session.session_expiry_secs,
    });
    let owner = match &session.owner {
        SessionOwner::Unknown => None,
        SessionOwner::Anonymous { realm } => Some(Record::SessionOwner {
            client_id: client_id.to_owned(),
            realm: *realm,
            user: None,
        }),
        SessionOwner::User { realm, name } => Some(Record::SessionOwner {
            client_id: client_id.to_owned(),
            realm: *realm,
            user: Some(name.clone()),
        }),
    };
    let detached = match session.presence {
        Presence::Connected => None,
        Presence::Detached { expires_at_ms } => Some(Record::SessionDetached {
            client_id: client_id.to_owned(),
            expires_at_ms,
        }),
    };
    let subscriptions = session
        .subscriptions
        .iter()
        .map(move |(filter, subscription)| Record::Subscribe {
            client_id: client_id.to_owned(),
            filter: filter.clone(),
            options: subscription.options,
            identifier: subscription.identifier,
        });
    let queue = session.queue.values().map(move |entry| Record::Enqueue {
        client_id: client_id.to_owned(),
        message_id: entry.message_id,
        qos: entry.qos,
        retain: entry.retain,
        subscription_identifiers: entry.subscription_identifiers.clone(),
        shared_filter: entry.shared_filter.clone(),
    });
    let outbound = session
        .outbound
        .iter()
        .map(move |(packet_id, stage)| match stage {
            OutboundStage::Publish { message_id } => Record::OutboundSent {
                client_id: client_id.to_owned(),
                message_id: *message_id,
                packet_id: *packet_id,
            },
            OutboundStage::Release => Record::OutboundReleased {
                client_id: client_id.to_owned(),
                packet_id: *packet_id,
            },
        });
    let inbound = session
        .inbound_qos2
        .iter()
        .map(move |packet_id| Record::InboundQos2 {
            client_id: client_id.to_owned(),
            packet_id: *packet_id,
        });
    upsert
        .chain(owner)
        .chain(detached)
        .chain(subscriptions)
        .chain(queue)
        .chain(outbound)
        .chain(inbound)
}

/// 2^64 / golden ratio, odd: multiplying by it is a bijection that mixes low
/// input bits into the high ones `hashbrown` takes its control byte from.
const FIBONACCI_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Hashes the integer keys of [`Ordered`] (message ids, packet ids) with one
/// multiplication. SipHash, the std default, resists floods of chosen keys;
/// these keys are chosen by the broker (ids it assigns), and the commit
/// thread looks them up for every record it applies, and the default costs
/// a measurable share of its time.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher {
    hash: u64,
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by integer keys; kept correct for any other key type.
        for &byte in bytes {
            self.hash =
                (self.hash.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI_MULTIPLIER);
        }
    }

    fn write_u16(&mut self, value: u16) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.hash = (value ^ self.hash).wrapping_mul(FIBONACCI_MULTIPLIER);
    }
}

/// A map that remembers insertion order: the session queue (by message id)
/// and the outbound window (by packet id). Removing by key and iterating in
/// order are both cheap, so a long queue is rebuilt in O(n), not O(n^2).
/// Equality compares the ordered contents, not the positions.
///
/// Entries sit in a deque of slots, in insertion order; a removed entry
/// leaves an empty slot. Empty slots at either end are dropped at once, so a
/// queue drained from the front (the usual case: oldest first) never holds
/// any; empty slots in the middle are squeezed out once they outnumber the
/// entries (see [`Ordered::compact`]), so the deque stays within a small
/// multiple of the live entries and each operation is O(1) amortised. The
/// commit thread applies a queue or outbound change for every record of a
/// QoS 1/2 delivery; a B-tree keyed by position cost it several node
/// searches and element moves per record.
#[derive(Debug, Clone)]
struct Ordered<K, V> {
    /// The position of the first slot: positions only grow (until a
    /// compaction renumbers them), so the slot of position `p` is
    /// `p - first_position`.
    first_position: u64,
    slots: VecDeque<Option<(K, V)>>,
    position: HashMap<K, u64, BuildHasherDefault<IdHasher>>,
}

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered {
            first_position: 0,
            slots: VecDeque::new(),
            position: HashMap::default(),
        }
    }
}

/// Empty slots tolerated beyond twice the entries before a compaction: a
/// small map is not compacted at every removal.
const ORDERED_SLACK: usize = 32;

impl<K: std::hash::Hash + Eq + Copy, V> Ordered<K, V> {
    /// Appends unless the key is present; true if appended.
    fn insert_if_absent(&mut self, key: K, value: V) -> bool {
        if self.position.contains_key(&key) {
            return false;
        }
        let position = self.first_position + self.slots.len() as u64;
        self.position.insert(key, position);
        self.slots.push_back(Some((key, value)));
        true
    }

    /// The slot index of a position.
    fn index(&self, position: u64) -> Option<usize> {
        usize::try_from(position.checked_sub(self.first_position)?).ok()
    }

    fn get(&self, key: &K) -> Option<&V> {
        let index = self.index(*self.position.get(key)?)?;
        self.slots.get(index)?.as_ref().map(|(_, value)| value)
    }

    /// Puts `key` last with `value`; returns the value it replaced.
    fn move_to_end(&mut self, key: K, value: V) -> Option<V> {
        let previous = self.remove(&key);
        self.insert_if_absent(key, value);
        previous
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let position = self.position.remove(key)?;
        let index = self.index(position)?;
        let (_, value) = self.slots.get_mut(index)?.take()?;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first_position += 1;
        }
        while matches!(self.slots.back(), Some(None)) {
            self.slots.pop_back();
        }
        if self.slots.len() > self.position.len() * 2 + ORDERED_SLACK {
            self.compact();
        }
        Some(value)
    }

    /// Drops the empty slots and renumbers the entries from 0, in order.
    /// O(n), done only once the empty slots outnumber the entries by
    /// [`ORDERED_SLACK`], so at least that many removals apart.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.first_position = 0;
        for (position, slot) in (0u64..).zip(self.slots.iter()) {
            if let Some((key, _)) = slot {
                self.position.insert(*key, position);
            }
        }
    }

    fn len(&self) -> usize {
        self.position.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.slots.iter().flatten().map(|(key, value)| (key, value))
    }

    fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.slots.iter().flatten().map(|(_, value)| value)
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for Ordered<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.position.len() == other.position.len()
            && self
                .slots
                .iter()
                .flatten()
                .zip(other.slots.iter().flatten())
                .all(|(a, b)| a == b)
    }
}

impl<K: Eq, V: Eq> Eq for Ordered<K, V> {}

#[cfg(test)]
mod tests;
