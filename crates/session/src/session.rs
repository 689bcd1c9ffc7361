//! The per-session state machine: the outgoing queue, the in-flight window,
//! the QoS 1 and 2 flows in both directions. See the crate doc for the call
//! order.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use switchboard_codec::{
    encoded_len, Ack, Packet, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode,
};

use crate::hash::PacketIdSet;
use crate::inflight::{Entry, FlowState, InFlight};
use crate::journal::{Journal, JournalEvent};
use crate::message::Delivery;

/// Bounds on one session's state. Set by the broker from its configuration;
/// may change while the session lives ([`Session::set_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most deliveries waiting in the queue (not counting in-flight ones).
    pub max_queued_messages: usize,
    /// Most bytes ([`crate::Message::size`]) waiting in the queue. A single
    /// message larger than this is still accepted into an empty queue, so
    /// that no message is undeliverable merely for its size: the bound is
    /// really max(this, one message).
    pub max_queued_bytes: usize,
    /// The broker's own cap on unacknowledged QoS 1 and 2 PUBLISH packets per
    /// connection; the window is the smaller of this and the client's Receive
    /// Maximum. 0 is treated as 1 (a window of 0 would stall QoS 1 and 2).
    pub max_inflight: u16,
    /// Whether QoS 0 messages are queued while no connection is attached
    /// (4.1 lists them as optional session state).
    pub queue_qos0_offline: bool,
}

/// What the session needs to know about the connection that attaches to it,
/// taken from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientParams {
    pub version: ProtocolVersion,
    /// The client's Receive Maximum (3.1.2.11.3); 65,535 when absent. 0 (a
    /// protocol error the broker rejects first) is treated as 1.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (3.1.2.11.4); `None` when absent
    /// (always for 3.x).
    pub maximum_packet_size: Option<u32>,
}

impl ClientParams {
    /// Parameters for a 3.x client: no Receive Maximum, no Maximum Packet Size.
    pub fn v3(version: ProtocolVersion) -> ClientParams {
        ClientParams {
            version,
            receive_maximum: u16::MAX,
            maximum_packet_size: None,
        }
    }
}

/// The result of [`Session::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued,
    /// Not queued; the drop is also counted in [`Session::take_drops`].
    Dropped(DropReason),
}

/// Why a delivery was dropped instead of sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue already held `max_queued_messages` deliveries.
    QueueFull,
    /// The delivery would have taken the queue past `max_queued_bytes`.
    QueueBytesFull,
    /// QoS 0 while no connection was attached and `queue_qos0_offline` was off.
    Qos0Offline,
    /// The Message Expiry Interval passed before sending began ([MQTT-3.3.2-5]).
    Expired,
    /// The PUBLISH would exceed the client's Maximum Packet Size; discarded as
    /// if sent ([MQTT-3.1.2-24], [MQTT-3.1.2-25]).
    TooLargeForClient,
}

impl DropReason {
    /// Every reason, for exporting metrics.
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::QueueBytesFull,
        DropReason::Qos0Offline,
        DropReason::Expired,
        DropReason::TooLargeForClient,
    ];

    /// A short stable name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::QueueBytesFull => "queue_bytes_full",
            DropReason::Qos0Offline => "qos0_offline",
            DropReason::Expired => "expired",
            DropReason::TooLargeForClient => "too_large_for_client",
        }
    }
}

/// Drops counted since the last [`Session::take_drops`], by reason. A fixed
/// struct rather than a `Vec` so taking it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    pub queue_full: u64,
    pub queue_bytes_full: u64,
    pub qos0_offline: u64,
    pub expired: u64,
    pub too_large_for_client: u64,
}

impl DropCounts {
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.queue_full,
            DropReason::QueueBytesFull => self.queue_bytes_full,
            DropReason::Qos0Offline => self.qos0_offline,
            DropReason::Expired => self.expired,
            DropReason::TooLargeForClient => self.too_large_for_client,
        }
    }

    fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::QueueBytesFull => &mut self.queue_bytes_full,
            DropReason::Qos0Offline => &mut self.qos0_offline,
            DropReason::Expired => &mut self.expired,
            DropReason::TooLargeForClient => &mut self.too_large_for_client,
        };
        *counter = counter.saturating_add(1);
    }

    /// The non-zero counts.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|reason| (reason, self.get(reason)))
            .filter(|&(_, count)| count > 0)
    }

    pub fn total(&self) -> u64 {
        DropReason::ALL
            .into_iter()
            .map(|reason| self.get(reason))
            .fold(0, u64::saturating_add)
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// The result of [`Session::incoming_qos2`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingQos2 {
    /// A new message: route it, then send PUBREC.
    New,
    /// The id still awaits PUBREL: this is a resend of a message already
    /// routed. Send PUBREC again and do NOT route it ([MQTT-4.3.3-10]).
    Duplicate,
}

/// Which acknowledgement a client sent, for [`SessionError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubComp,
}

impl fmt::Display for AckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckKind::PubAck => "PUBACK",
            AckKind::PubRec => "PUBREC",
            AckKind::PubComp => "PUBCOMP",
        })
    }
}

/// An acknowledgement from the client that does not fit the session state.
/// The session is left unchanged. The broker may log and ignore it, or close
/// the connection with [`SessionError::reason_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No message is in flight with this id ([MQTT-2.2.1-5]: an
    /// acknowledgement carries the id of the PUBLISH it acknowledges).
    #[error("[MQTT-2.2.1-5] {received} with packet id {packet_id}, which is not in flight")]
    UnknownPacketId { received: AckKind, packet_id: u16 },
    /// The id is in flight but at another step: PUBACK for a QoS 2 message,
    /// PUBREC for a QoS 1 message ([MQTT-4.3.2-3], [MQTT-4.3.3-3]), PUBCOMP
    /// before the PUBREL was sent ([MQTT-4.3.3-5]).
    #[error(
        "[MQTT-4.3.2-3] [MQTT-4.3.3-3] [MQTT-4.3.3-5] {received} with packet id {packet_id}, \
         which awaits {expected}"
    )]
    UnexpectedAck {
        received: AckKind,
        expected: AckKind,
        packet_id: u16,
    },
}

impl SessionError {
    /// The reason code for a DISCONNECT, should the broker close for it.
    pub fn reason_code(&self) -> ReasonCode {
        ReasonCode::PROTOCOL_ERROR
    }
}

/// A delivery waiting to be sent, with the bytes it was charged.
#[derive(Debug)]
struct Queued {
    delivery: Delivery,
    size: usize,
}

/// The state of one MQTT session (4.1) as the server holds it, across any
/// number of connections. See the crate doc for the call order.
///
/// Small while idle: every connected client has one, and most of them,
/// most of the time, have nothing queued, nothing in flight and nothing to
/// count. What only traffic fills lives in [`Traffic`], made on first use;
/// the limits, the same for nearly every session, are shared.
#[derive(Debug)]
pub struct Session {
    limits: Arc<SessionLimits>,
    /// The connection's parameters while one is attached.
    client: Option<ClientParams>,
    /// Outgoing QoS 1 and 2 messages not fully acknowledged.
    inflight: InFlight,
    /// Entries with `counted` set: the send quota used on this connection
    /// (4.9). Never above the window except after [`Session::set_limits`]
    /// shrinks it; a `u16` because no more than 65,535 flows exist at once.
    quota_used: u16,
    /// Whether to record [`JournalEvent`]s ([`Session::set_journaling`]).
    journaling: bool,
    traffic: LazyTraffic,
}

/// What only traffic fills: empty for a session that has never had any,
/// and again once everything has been sent, acknowledged and collected.
#[derive(Debug, Default)]
struct Traffic {
    /// Deliveries not yet sent, oldest first.
    queue: VecDeque<Queued>,
    /// Sum of `size` over `queue`.
    queued_bytes: usize,
    /// In-flight `(sequence, packet_id)` whose PUBLISH must be resent (DUP=1)
    /// on this connection but did not fit the window at attach; send order.
    /// Served before the queue. Stale records are skipped.
    resend: VecDeque<(u64, u16)>,
    /// Ids of inbound QoS 2 messages routed but not yet released by PUBREL
    /// (4.1: part of the session state). At most 65,535 entries.
    incoming_qos2: PacketIdSet,
    drops: DropCounts,
    /// What a durable store must record; empty unless the session is
    /// journaling ([`Session::set_journaling`]).
    journal: Journal,
}

impl Traffic {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
            && self.resend.is_empty()
            && self.incoming_qos2.is_empty()
            && self.drops.is_empty()
            && self.journal.is_empty()
    }
}

/// A session's [`Traffic`], boxed and made on first use: an idle session
/// holds one null pointer instead of 168 bytes of empty containers.
/// Freed again when all of it is empty at [`Session::detach`],
/// [`Session::clear`] and [`Session::shrink`], not on the hot paths: a
/// busy session would otherwise allocate it again for every message.
///
/// A field of its own (with methods borrowing only it) so that recording a
/// journal event or a drop leaves the rest of the session free to borrow.
#[derive(Debug, Default)]
struct LazyTraffic(Option<Box<Traffic>>);

impl LazyTraffic {
    fn get(&self) -> Option<&Traffic> {
        self.0.as_deref()
    }

    /// The traffic state if there is any; does not make it.
    fn get_mut(&mut self) -> Option<&mut Traffic> {
        self.0.as_deref_mut()
    }

    /// The traffic state, made if there is none yet.
    fn make(&mut self) -> &mut Traffic {
        self.0.get_or_insert_with(Box::default)
    }

    /// Records `event` if `journaling` (the session's switch).
    #[inline]
    fn record(&mut self, journaling: bool, event: JournalEvent) {
        if journaling {
            self.make().journal.record(event);
        }
    }

    fn count_drop(&mut self, reason: DropReason) {
        self.make().drops.count(reason);
    }

    fn release_if_empty(&mut self) {
        if self.0.as_deref().is_some_and(Traffic::is_empty) {
            self.0 = None;
        }
    }
}

impl Session {
    pub fn new(limits: SessionLimits) -> Session {
        Session::with_shared_limits(Arc::new(limits))
    }

    /// A session whose limits are shared with others (the broker gives every
    /// session the same `Arc`): 8 bytes per session instead of a copy.
    pub fn with_shared_limits(limits: Arc<SessionLimits>) -> Session {
        Session {
            limits,
            client: None,
            inflight: InFlight::new(),
            quota_used: 0,
            journaling: false,
            traffic: LazyTraffic::default(),
        }
    }

    /// Replaces the limits. The queue bounds apply to later enqueues (nothing
    /// queued is dropped); a smaller in-flight cap stops new sends until
    /// enough acknowledgements come back.
    pub fn set_limits(&mut self, limits: SessionLimits) {
        self.limits = Arc::new(limits);
    }

    /// [`Session::set_limits`] with limits shared with other sessions.
    pub fn set_shared_limits(&mut self, limits: Arc<SessionLimits>) {
        self.limits = limits;
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// Frees the memory of a session with nothing queued, in flight or left
    /// to collect (drops, journal events), which an idle session would
    /// otherwise keep at its last high-water mark. Changes nothing else:
    /// for a connection about to sit idle. O(1).
    pub fn shrink(&mut self) {
        self.traffic.release_if_empty();
    }

    /// The attached connection's parameters, if any.
    pub fn client(&self) -> Option<&ClientParams> {
        self.client.as_ref()
    }

    /// A connection takes this session. Returns the packets to write before
    /// anything else, in original send order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]):
    /// each unacknowledged PUBLISH again with DUP=1 ([MQTT-3.3.1-1]) and its
    /// original packet id, and a PUBREL for each QoS 2 message PUBREC'd but
    /// not PUBCOMP'd. 3.1.1 sessions get the same resend.
    ///
    /// The send quota is per connection (4.9): at most `window` PUBLISH
    /// packets are returned here; the rest follow from
    /// [`Session::poll_publish`] (still DUP=1, same id, same order) as
    /// acknowledgements free the window, before any queued message. PUBRELs
    /// are never held back: they are not PUBLISH packets.
    ///
    /// In-flight messages are never expired ([MQTT-3.3.2-5]: sending began;
    /// [MQTT-4.3.3-7]) and go out with the Message Expiry Interval of their
    /// first send: the wait in the server ended then ([MQTT-3.3.2-6]), and so
    /// no clock is needed here. One that no longer fits a smaller Maximum
    /// Packet Size is discarded and counted as
    /// [`DropReason::TooLargeForClient`] ([MQTT-3.1.2-25]).
    ///
    /// Attaching while attached replaces the previous connection. O(in-flight).
    pub fn attach(&mut self, client: ClientParams) -> Vec<Packet> {
        self.client = Some(client);
        self.quota_used = 0;
        if let Some(traffic) = self.traffic.get_mut() {
            traffic.resend.clear();
        }
        self.inflight.sweep_order();
        for entry in self.inflight.entries_mut() {
            entry.counted = false;
        }
        let window = window(&self.limits, &client);
        let order: Vec<(u64, u16)> = self.inflight.order().collect();
        let mut packets = Vec::with_capacity(order.len());
        for (sequence, packet_id) in order {
            let Some(entry) = self.inflight.get_mut(packet_id) else {
                continue;
            };
            let delivery = match &entry.state {
                FlowState::Released { .. } => {
                    packets.push(Packet::PubRel(Ack::new(packet_id)));
                    continue;
                }
                FlowState::Unacknowledged(delivery) => delivery,
            };
            let message_id = delivery.message.id;
            if usize::from(self.quota_used) >= window {
                self.traffic.make().resend.push_back((sequence, packet_id));
                continue;
            }
            let publish = build_publish(
                delivery,
                &client,
                Some(packet_id),
                true,
                entry.expiry_interval,
            );
            match checked_size(publish, &client) {
                Some(packet) => {
                    entry.counted = true;
                    self.quota_used = self.quota_used.saturating_add(1);
                    packets.push(packet);
                }
                None => {
                    self.drop_resend_too_large(packet_id, message_id);
                }
            }
        }
        packets
    }

    /// The connection is gone; everything is kept for a later
    /// [`Session::attach`] (and, with nothing kept, memory is freed as by
    /// [`Session::shrink`]).
    pub fn detach(&mut self) {
        self.client = None;
        self.quota_used = 0;
        if let Some(traffic) = self.traffic.get_mut() {
            traffic.resend.clear();
        }
        self.traffic.release_if_empty();
    }

    pub fn is_attached(&self) -> bool {
        self.client.is_some()
    }

    /// Drops all session state (clean start, or the session ended): the queue,
    /// the outgoing flows, the inbound QoS 2 ids. Leaves the attachment, the
    /// limits and the uncollected drop counts alone.
    ///
    /// Returns the shared-subscription deliveries that were queued, or sent
    /// at QoS 1 but not yet acknowledged, so the broker can give them to
    /// another member of the group; in-flight ones first (send order), then
    /// queued ones (queue order). A QoS 2 delivery already sent is never
    /// returned: it belongs to this member until it completes, and dies with
    /// the session ([MQTT-4.8.2-4], [MQTT-4.8.2-5]). O(n).
    ///
    /// Journal: [`JournalEvent::Removed`] for every delivery returned or
    /// discarded, queued or in flight (any stage): first those of
    /// [`Session::take_shared`], then the remaining in-flight ones in send
    /// order, then the remaining queued ones in queue order. The inbound
    /// QoS 2 ids are not journaled (see [`JournalEvent`]).
    pub fn clear(&mut self) -> Vec<Delivery> {
        let shared = self.take_shared();
        if self.journaling {
            for (_, packet_id) in self.inflight.order() {
                if let Some(entry) = self.inflight.get(packet_id) {
                    self.traffic.record(
                        true,
                        JournalEvent::Removed {
                            message_id: entry.state.message_id(),
                            packet_id: Some(packet_id),
                        },
                    );
                }
            }
            if let Some(Traffic { queue, journal, .. }) = self.traffic.get_mut() {
                for queued in queue.iter() {
                    journal.record(JournalEvent::Removed {
                        message_id: queued.delivery.message.id,
                        packet_id: None,
                    });
                }
            }
        }
        self.inflight.clear();
        self.quota_used = 0;
        if let Some(traffic) = self.traffic.get_mut() {
            traffic.queue.clear();
            traffic.queued_bytes = 0;
            traffic.resend.clear();
            traffic.incoming_qos2.clear();
        }
        self.traffic.release_if_empty();
        shared
    }

    /// The same selection as [`Session::clear`] returns, removed from the
    /// session while everything else stays: for a shared-subscription member
    /// whose connection went away but whose session lives on. Call it on a
    /// detached session: a client still attached would later acknowledge ids
    /// this frees. O(n).
    ///
    /// Journal: [`JournalEvent::Removed`] for each delivery returned, in the
    /// order returned (in flight with `Some(packet_id)`, queued with `None`).
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        let mut shared = Vec::new();
        // QoS 2 stays: its delivery must be completed by this member on
        // reconnect ([MQTT-4.8.2-4]) and never go to another ([MQTT-4.8.2-5]).
        let taken = self.inflight.drain_where(|entry| {
            matches!(&entry.state, FlowState::Unacknowledged(delivery)
                if delivery.shared_group.is_some() && delivery.qos != QoS::ExactlyOnce)
        });
        for (packet_id, entry) in taken {
            if entry.counted {
                self.quota_used = self.quota_used.saturating_sub(1);
            }
            self.traffic.record(
                self.journaling,
                JournalEvent::Removed {
                    message_id: entry.state.message_id(),
                    packet_id: Some(packet_id),
                },
            );
            if let FlowState::Unacknowledged(delivery) = entry.state {
                shared.push(delivery);
            }
        }
        let journaling = self.journaling;
        let Some(Traffic {
            queue,
            queued_bytes,
            journal,
            ..
        }) = self.traffic.get_mut()
        else {
            return shared;
        };
        if queue
            .iter()
            .any(|queued| queued.delivery.shared_group.is_some())
        {
            let mut kept = VecDeque::with_capacity(queue.len());
            for queued in queue.drain(..) {
                if queued.delivery.shared_group.is_some() {
                    *queued_bytes = queued_bytes.saturating_sub(queued.size);
                    if journaling {
                        journal.record(JournalEvent::Removed {
                            message_id: queued.delivery.message.id,
                            packet_id: None,
                        });
                    }
                    shared.push(queued.delivery);
                } else {
                    kept.push_back(queued);
                }
            }
            *queue = kept;
        }
        shared
    }

    /// Queues a delivery for [`Session::poll_publish`]. O(1) amortised.
    ///
    /// Overflow policy: the NEW delivery is dropped (reported, and counted in
    /// [`Session::take_drops`]); what is queued keeps its place, so order is
    /// never broken and the oldest messages, which waited longest, are not
    /// the ones lost. Before declaring the queue full, expired deliveries at
    /// its head are discarded (each is removed once, so this stays amortised
    /// O(1)).
    ///
    /// In order of checking: an already expired message is dropped
    /// ([`DropReason::Expired`]); while detached, QoS 0 is dropped unless
    /// `queue_qos0_offline` ([`DropReason::Qos0Offline`]); then the count
    /// bound ([`DropReason::QueueFull`]) and the byte bound
    /// ([`DropReason::QueueBytesFull`]), which admits any one message into an
    /// empty queue.
    ///
    /// Journal: nothing for the delivery itself (the caller records
    /// [`EnqueueOutcome::Queued`]); [`JournalEvent::Removed`] for each expired
    /// delivery discarded from the head of a full queue.
    pub fn enqueue(&mut self, delivery: Delivery, now: Instant) -> EnqueueOutcome {
        let outcome = self.admit(&delivery, now);
        match outcome {
            EnqueueOutcome::Queued => self.push_queued(delivery),
            EnqueueOutcome::Dropped(reason) => self.traffic.count_drop(reason),
        }
        outcome
    }

    fn admit(&mut self, delivery: &Delivery, now: Instant) -> EnqueueOutcome {
        if delivery.message.is_expired(now) {
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
            self.discard_expired_head(now);
            if self.queued_len() >= self.limits.max_queued_messages {
                return EnqueueOutcome::Dropped(DropReason::QueueFull);
            }
            if self.queue_is_full(size) {
                return EnqueueOutcome::Dropped(DropReason::QueueBytesFull);
            }
        }
        EnqueueOutcome::Queued
    }

    fn queue_is_full(&self, size: usize) -> bool {
        let length = self.queued_len();
        length >= self.limits.max_queued_messages
            || (length > 0
                && self.queued_bytes().saturating_add(size) > self.limits.max_queued_bytes)
    }

    /// Appends to the queue (the bounds were checked, or are bypassed).
    fn push_queued(&mut self, delivery: Delivery) {
        let size = delivery.message.size();
        let traffic = self.traffic.make();
        traffic.queued_bytes = traffic.queued_bytes.saturating_add(size);
        traffic.queue.push_back(Queued { delivery, size });
    }

    /// Removes expired deliveries from the front of the queue, counting them.
    fn discard_expired_head(&mut self, now: Instant) {
        while let Some(queued) = self.traffic.get().and_then(|traffic| traffic.queue.front()) {
            if !queued.delivery.message.is_expired(now) {
                break;
            }
            self.drop_queued_head(DropReason::Expired);
        }
    }

    /// Drops the delivery at the head of the queue, which was never sent:
    /// counted, and journaled as removed.
    fn drop_queued_head(&mut self, reason: DropReason) {
        if let Some(delivery) = self.pop_queued() {
            self.traffic.count_drop(reason);
            self.traffic.record(
                self.journaling,
                JournalEvent::Removed {
                    message_id: delivery.message.id,
                    packet_id: None,
                },
            );
        }
    }

    fn pop_queued(&mut self) -> Option<Delivery> {
        let traffic = self.traffic.get_mut()?;
        let queued = traffic.queue.pop_front()?;
        traffic.queued_bytes = traffic.queued_bytes.saturating_sub(queued.size);
        Some(queued.delivery)
    }

    /// The next PUBLISH to write, or `None` when there is nothing to send, no
    /// connection, or the window is full for the message at the head. Call it
    /// until `None` after attach, after each enqueue and after each
    /// acknowledgement that frees the window. O(1) amortised.
    ///
    /// - Resends that did not fit the window at attach go first (DUP=1).
    /// - Then the queue, strictly FIFO (4.6, [MQTT-4.6.0-6]): a QoS 0 message
    ///   behind a QoS 1 or 2 message blocked by the window waits.
    /// - The window is min(`max_inflight`, client Receive Maximum) QoS 1 and 2
    ///   PUBLISH packets sent on this connection and not yet PUBACK'd,
    ///   PUBCOMP'd or refused by PUBREC ([MQTT-4.9.0-2], [MQTT-3.3.4-9]).
    /// - QoS 1 and 2 get a free packet id: never 0, never one in use
    ///   ([MQTT-2.2.1-3], [MQTT-2.2.1-4]).
    /// - Expired messages are dropped and counted ([MQTT-3.3.2-5]); for the
    ///   rest the Message Expiry Interval sent is the received one minus the
    ///   whole seconds waited, i.e. the remaining time rounded up
    ///   ([MQTT-3.3.2-6]).
    /// - A PUBLISH over the client's Maximum Packet Size is dropped and
    ///   counted ([MQTT-3.1.2-24], [MQTT-3.1.2-25]).
    /// - 3.x clients get no properties (the encoder would ignore them, so they
    ///   are not cloned); MQTT 5 clients get the message's properties with the
    ///   delivery's subscription identifiers ([MQTT-3.3.4-3]) and no alias.
    ///
    /// Journal: [`JournalEvent::Sent`] or [`JournalEvent::SentQos0`] for a
    /// first send, [`JournalEvent::Removed`] for each delivery dropped
    /// (expired or too large; with its packet id for a held-back resend that
    /// no longer fits); nothing for a resend.
    pub fn poll_publish(&mut self, now: Instant) -> Option<Publish> {
        let client = self.client?;
        let window = window(&self.limits, &client);
        if let Some(publish) = self.poll_resend(&client, window) {
            return Some(publish);
        }
        let traffic = self.traffic.get()?;
        if !traffic.resend.is_empty() {
            // Resends wait for the window; nothing may overtake them.
            return None;
        }
        loop {
            let head = &self.traffic.get()?.queue.front()?.delivery;
            if head.message.is_expired(now) {
                self.drop_queued_head(DropReason::Expired);
                continue;
            }
            let packet_id = if head.qos == QoS::AtMostOnce {
                None
            } else {
                if usize::from(self.quota_used) >= window {
                    return None;
                }
                // None only when all 65,535 ids are in flight: wait as for a full window.
                Some(self.inflight.allocate_packet_id()?)
            };
            let expiry_interval = head
                .message
                .expires_at
                .map(|expires_at| remaining_whole_seconds(expires_at, now));
            let publish = build_publish(head, &client, packet_id, false, expiry_interval);
            let Some(Packet::Publish(publish)) = checked_size(publish, &client) else {
                self.drop_queued_head(DropReason::TooLargeForClient);
                continue;
            };
            let delivery = self.pop_queued()?;
            let message_id = delivery.message.id;
            match packet_id {
                Some(packet_id) => {
                    self.traffic.record(
                        self.journaling,
                        JournalEvent::Sent {
                            message_id,
                            packet_id,
                            qos: delivery.qos,
                        },
                    );
                    self.inflight.insert(packet_id, delivery, expiry_interval);
                    self.quota_used = self.quota_used.saturating_add(1);
                }
                None => self
                    .traffic
                    .record(self.journaling, JournalEvent::SentQos0 { message_id }),
            }
            return Some(publish);
        }
    }

    /// Takes back a first send that never reached the client: the server
    /// held the PUBLISH for a durable record and the store refused that
    /// record, so the log still has the message queued and no flow for
    /// `packet_id`. The session is put back the same way, as if the PUBLISH
    /// had never been polled: the delivery returns to the head of the queue
    /// (unsend several in reverse order of sending to keep their order), the
    /// packet id is free and the quota unit is returned. It is sent again,
    /// as new and journaled again, on the next poll. Without this, memory
    /// would hold a flow the log does not, and a later PUBREC would release
    /// a message the log still has queued: a restart would then deliver a
    /// QoS 2 message twice.
    ///
    /// Returns false (and changes nothing) unless `packet_id` is a flow
    /// still awaiting its first acknowledgement. Journal: nothing.
    pub fn unsend(&mut self, packet_id: u16) -> bool {
        if !matches!(
            self.inflight.get(packet_id),
            Some(Entry {
                state: FlowState::Unacknowledged(_),
                ..
            })
        ) {
            return false;
        }
        let Some(entry) = self.inflight.remove(packet_id) else {
            return false;
        };
        if entry.counted {
            self.quota_used = self.quota_used.saturating_sub(1);
        }
        if let FlowState::Unacknowledged(delivery) = entry.state {
            let size = delivery.message.size();
            let traffic = self.traffic.make();
            traffic.queued_bytes = traffic.queued_bytes.saturating_add(size);
            traffic.queue.push_front(Queued { delivery, size });
        }
        true
    }

    /// Drops an in-flight flow whose resend no longer fits the client's
    /// Maximum Packet Size: counted, and journaled as removed.
    fn drop_resend_too_large(&mut self, packet_id: u16, message_id: u64) {
        self.inflight.remove(packet_id);
        self.traffic.count_drop(DropReason::TooLargeForClient);
        self.traffic.record(
            self.journaling,
            JournalEvent::Removed {
                message_id,
                packet_id: Some(packet_id),
            },
        );
    }

    /// The next deferred resend, if the window has room for it.
    fn poll_resend(&mut self, client: &ClientParams, window: usize) -> Option<Publish> {
        loop {
            let resend = &mut self.traffic.get_mut()?.resend;
            let &(sequence, packet_id) = resend.front()?;
            let still_unacknowledged = self.inflight.get(packet_id).is_some_and(|entry| {
                entry.sequence == sequence && matches!(entry.state, FlowState::Unacknowledged(_))
            });
            if !still_unacknowledged {
                resend.pop_front();
                continue;
            }
            if usize::from(self.quota_used) >= window {
                return None;
            }
            resend.pop_front();
            let entry = self.inflight.get_mut(packet_id)?;
            let FlowState::Unacknowledged(delivery) = &entry.state else {
                continue;
            };
            let message_id = delivery.message.id;
            let publish = build_publish(
                delivery,
                client,
                Some(packet_id),
                true,
                entry.expiry_interval,
            );
            match checked_size(publish, client) {
                Some(Packet::Publish(publish)) => {
                    entry.counted = true;
                    self.quota_used = self.quota_used.saturating_add(1);
                    return Some(publish);
                }
                _ => {
                    self.drop_resend_too_large(packet_id, message_id);
                }
            }
        }
    }

    /// Drops counted since the last call (from `enqueue`, `poll_publish` and
    /// `attach`), by reason; resets the counts. Every drop is counted here,
    /// including those `enqueue` also reports in its return value, so metrics
    /// should be fed from this alone. Cheap when nothing was dropped (no
    /// traffic state: one branch), as it is called after every poll.
    pub fn take_drops(&mut self) -> DropCounts {
        self.traffic
            .get_mut()
            .map_or_else(DropCounts::default, |traffic| {
                std::mem::take(&mut traffic.drops)
            })
    }

    /// PUBACK from the client: the QoS 1 flow ends and the id is free, whatever
    /// the reason code ([MQTT-4.4.0-2]: an error PUBACK also acknowledges).
    /// Journal: [`JournalEvent::Completed`].
    pub fn handle_puback(&mut self, packet_id: u16) -> Result<(), SessionError> {
        let entry = self
            .inflight
            .get(packet_id)
            .ok_or(SessionError::UnknownPacketId {
                received: AckKind::PubAck,
                packet_id,
            })?;
        match &entry.state {
            FlowState::Unacknowledged(delivery) if delivery.qos == QoS::AtLeastOnce => {}
            state => {
                return Err(SessionError::UnexpectedAck {
                    received: AckKind::PubAck,
                    expected: expected_ack(state),
                    packet_id,
                })
            }
        }
        self.end_flow(packet_id);
        Ok(())
    }

    /// PUBREC from the client for a QoS 2 message. A reason code below 0x80:
    /// the message is discarded, the id now awaits PUBCOMP, and the returned
    /// PUBREL must be sent ([MQTT-4.3.3-4]). 0x80 or above: the flow ends
    /// here, the id is free and nothing is sent or ever resent
    /// ([MQTT-4.4.0-2], 4.9). A repeated PUBREC for an id already awaiting
    /// PUBCOMP gets the PUBREL again.
    ///
    /// Journal: [`JournalEvent::Released`] on success,
    /// [`JournalEvent::Completed`] on an error code, nothing for a repeat.
    pub fn handle_pubrec(&mut self, ack: &Ack) -> Result<Option<Ack>, SessionError> {
        let packet_id = ack.packet_id;
        let entry = self
            .inflight
            .get_mut(packet_id)
            .ok_or(SessionError::UnknownPacketId {
                received: AckKind::PubRec,
                packet_id,
            })?;
        let message_id = match &entry.state {
            FlowState::Unacknowledged(delivery) if delivery.qos == QoS::ExactlyOnce => {
                delivery.message.id
            }
            FlowState::Released { .. } => return Ok(Some(Ack::new(packet_id))),
            state => {
                return Err(SessionError::UnexpectedAck {
                    received: AckKind::PubRec,
                    expected: expected_ack(state),
                    packet_id,
                })
            }
        };
        if ack.reason_code.is_error() {
            self.end_flow(packet_id);
            return Ok(None);
        }
        entry.state = FlowState::Released { message_id };
        self.traffic
            .record(self.journaling, JournalEvent::Released { packet_id });
        Ok(Some(Ack::new(packet_id)))
    }

    /// PUBCOMP from the client: the QoS 2 flow ends and the id is free.
    /// Journal: [`JournalEvent::Completed`].
    pub fn handle_pubcomp(&mut self, packet_id: u16) -> Result<(), SessionError> {
        let entry = self
            .inflight
            .get(packet_id)
            .ok_or(SessionError::UnknownPacketId {
                received: AckKind::PubComp,
                packet_id,
            })?;
        if let FlowState::Unacknowledged(_) = &entry.state {
            return Err(SessionError::UnexpectedAck {
                received: AckKind::PubComp,
                expected: expected_ack(&entry.state),
                packet_id,
            });
        }
        self.end_flow(packet_id);
        Ok(())
    }

    /// Removes a finished flow, gives its quota back and journals it as
    /// completed.
    fn end_flow(&mut self, packet_id: u16) {
        if let Some(entry) = self.inflight.remove(packet_id) {
            if entry.counted {
                self.quota_used = self.quota_used.saturating_sub(1);
            }
            self.traffic.record(
                self.journaling,
                JournalEvent::Completed {
                    packet_id,
                    message_id: entry.state.message_id(),
                },
            );
        }
    }

    /// An inbound QoS 2 PUBLISH with this id. `New`: route it, then PUBREC.
    /// `Duplicate`: the id still awaits PUBREL, so this is a resend of a
    /// message already routed: PUBREC again without routing
    /// ([MQTT-4.3.3-10]). The id is remembered across connections until
    /// PUBREL (4.1). The broker bounds how many it accepts with
    /// [`Session::incoming_qos2_len`] against its Receive Maximum
    /// ([MQTT-3.3.4-7]); the set can hold at most 65,535 ids in any case.
    pub fn incoming_qos2(&mut self, packet_id: u16) -> IncomingQos2 {
        if self.traffic.make().incoming_qos2.insert(packet_id) {
            IncomingQos2::New
        } else {
            IncomingQos2::Duplicate
        }
    }

    /// Forgets an inbound QoS 2 id without a PUBREL: for when the broker
    /// answered its PUBLISH with an error PUBREC, after which the id starts a
    /// new message ([MQTT-4.3.3-9]). Returns whether it was known.
    pub fn abandon_incoming_qos2(&mut self, packet_id: u16) -> bool {
        self.remove_incoming_qos2(packet_id)
    }

    /// PUBREL from the client: returns the reason code for the PUBCOMP
    /// ([MQTT-4.3.3-11]): `SUCCESS`, or `PACKET_IDENTIFIER_NOT_FOUND` when the
    /// id was not awaiting release. Afterwards the id starts a new message
    /// ([MQTT-4.3.3-12]).
    pub fn handle_pubrel(&mut self, packet_id: u16) -> ReasonCode {
        if self.remove_incoming_qos2(packet_id) {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        }
    }

    /// Inbound QoS 2 ids awaiting PUBREL.
    pub fn incoming_qos2_len(&self) -> usize {
        self.traffic
            .get()
            .map_or(0, |traffic| traffic.incoming_qos2.len())
    }

    fn remove_incoming_qos2(&mut self, packet_id: u16) -> bool {
        self.traffic
            .get_mut()
            .is_some_and(|traffic| traffic.incoming_qos2.remove(&packet_id))
    }

    /// Whether anything waits to be sent: queued deliveries, or in-flight
    /// ones to resend. A connection with nothing of either may wait without
    /// a task of its own (the server's parking), since only a new delivery or
    /// the client itself can give it work.
    pub fn has_output(&self) -> bool {
        self.traffic
            .get()
            .is_some_and(|traffic| !traffic.queue.is_empty() || !traffic.resend.is_empty())
    }

    /// Deliveries waiting in the queue (not counting in-flight ones).
    pub fn queued_len(&self) -> usize {
        self.traffic.get().map_or(0, |traffic| traffic.queue.len())
    }

    /// Bytes charged for the queued deliveries ([`crate::Message::size`]).
    pub fn queued_bytes(&self) -> usize {
        self.traffic.get().map_or(0, |traffic| traffic.queued_bytes)
    }

    /// Outgoing QoS 1 and 2 flows not finished (awaiting PUBACK, PUBREC or
    /// PUBCOMP), whatever connection sent them.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// True when [`Session::poll_publish`] may have something to return now
    /// (it can still return `None` if only expired or oversized messages are
    /// left). Lets the connection task skip taking the lock for nothing.
    pub fn has_pending(&self) -> bool {
        if self.client.is_none() {
            return false;
        }
        self.traffic
            .get()
            .is_some_and(|traffic| !traffic.resend.is_empty() || !traffic.queue.is_empty())
    }

    /// Starts or stops recording [`JournalEvent`]s. Off by default, and then
    /// recording costs one branch per event and allocates nothing.
    ///
    /// Turning it off DISCARDS the events not yet taken (and frees their
    /// buffer): call [`Session::take_journal`] first if they are wanted. So a
    /// journal turned on again always starts empty, never with events from
    /// before that the store has not seen.
    ///
    /// Turn it on before the first call whose effects the store must see
    /// (right after the restore calls, or right after [`Session::new`]). It
    /// does not describe the state the session already holds: a store that
    /// starts following a session with deliveries already queued or in flight
    /// must learn about them some other way.
    pub fn set_journaling(&mut self, on: bool) {
        self.journaling = on;
        if !on {
            if let Some(traffic) = self.traffic.get_mut() {
                traffic.journal = Journal::default();
            }
            self.traffic.release_if_empty();
        }
    }

    pub fn is_journaling(&self) -> bool {
        self.journaling
    }

    /// Moves the events recorded since the last call into `out` (appends), in
    /// the order they happened. Call it before releasing the session's lock
    /// after any call that may record (`enqueue`, `poll_publish`, `attach`,
    /// the acknowledgement handlers, `take_shared`, `clear`), so that the
    /// store sees one session's events in order and the buffer stays small.
    /// Allocates nothing once `out` has grown to its high-water mark.
    pub fn take_journal(&mut self, out: &mut Vec<JournalEvent>) {
        if let Some(traffic) = self.traffic.get_mut() {
            traffic.journal.take(out);
        }
    }

    /// What the journal buffer has allocated, to show that journaling off
    /// allocates nothing.
    #[cfg(test)]
    pub(crate) fn journal_capacity(&self) -> usize {
        self.traffic
            .get()
            .map_or(0, |traffic| traffic.journal.capacity())
    }

    /// Appends a delivery to the queue as it was before the restart. Bypasses
    /// the queue limits: nothing that was acknowledged to a publisher may be
    /// dropped at restart (later [`Session::enqueue`] calls see a full queue
    /// until it drains below the limits). Emits no journal event. O(1).
    ///
    /// Call order at start: [`Session::new`], the restore calls (queued
    /// deliveries in queue order, in-flight flows in send order, in any
    /// interleaving), [`Session::set_journaling`], then the first
    /// [`Session::attach`].
    pub fn restore_queued(&mut self, delivery: Delivery) {
        self.push_queued(delivery);
    }

    /// Restores an outbound flow that was in flight:
    ///
    /// - `released = false`: the PUBLISH with this packet id awaits PUBACK
    ///   (QoS 1) or PUBREC (QoS 2); it is resent with DUP=1 and this id at
    ///   the next [`Session::attach`] ([MQTT-4.4.0-1]).
    /// - `released = true`: PUBREC was received; PUBREL is resent at the next
    ///   attach and PUBCOMP awaited. The delivery is kept only for its
    ///   message id ([MQTT-4.3.3-6]: the PUBLISH is never sent again).
    ///
    /// Restored flows keep their send order = the order of restore calls,
    /// after any flow already in flight; they hold none of the send quota
    /// (no connection sent them). New sends never take a restored id while
    /// its flow lasts ([MQTT-2.2.1-4]); allocation carries on after the last
    /// id restored. Emits no journal event. O(1) amortised.
    ///
    /// The Message Expiry Interval of the first send was not recorded, and
    /// `attach` reads no clock to recompute it, so a restored PUBLISH is
    /// resent WITHOUT a Message Expiry Interval. Like any in-flight message
    /// it no longer expires here ([MQTT-3.3.2-5], [MQTT-4.3.3-7]).
    ///
    /// Input that no session could have produced (only a corrupt store gives
    /// it) is handled without panicking and without losing a message: an
    /// unreleased delivery with packet id 0 or at QoS 0 cannot be resumed as
    /// a flow and is appended to the queue instead (sent again as new, with
    /// DUP=0 and a fresh id); a released flow with packet id 0 is ignored
    /// (the client already has the message; no PUBREL can carry id 0). A
    /// packet id restored twice keeps the later flow only.
    pub fn restore_inflight(&mut self, packet_id: u16, delivery: Delivery, released: bool) {
        let state = if released {
            if packet_id == 0 {
                return;
            }
            FlowState::Released {
                message_id: delivery.message.id,
            }
        } else {
            if packet_id == 0 || delivery.qos == QoS::AtMostOnce {
                self.restore_queued(delivery);
                return;
            }
            FlowState::Unacknowledged(delivery)
        };
        if let Some(replaced) = self.inflight.restore(packet_id, state) {
            if replaced.counted {
                self.quota_used = self.quota_used.saturating_sub(1);
            }
        }
    }

    /// Restores an inbound QoS 2 packet id awaiting PUBREL (4.1): a PUBLISH
    /// with this id is then a [`IncomingQos2::Duplicate`] and a PUBREL for it
    /// succeeds. At most 65,535 ids can be held, whatever the input.
    pub fn restore_incoming_qos2(&mut self, packet_id: u16) {
        self.traffic.make().incoming_qos2.insert(packet_id);
    }
}

/// The acknowledgement an in-flight entry awaits.
fn expected_ack(state: &FlowState) -> AckKind {
    match state {
        FlowState::Unacknowledged(delivery) if delivery.qos == QoS::AtLeastOnce => AckKind::PubAck,
        FlowState::Unacknowledged(_) => AckKind::PubRec,
        FlowState::Released { .. } => AckKind::PubComp,
    }
}

/// The send quota of a connection: min(broker cap, client Receive Maximum), at
/// least 1 (4.9, [MQTT-4.9.0-1]: non-zero).
fn window(limits: &SessionLimits, client: &ClientParams) -> usize {
    usize::from(limits.max_inflight.min(client.receive_maximum).max(1))
}

/// The PUBLISH for one delivery, with the Message Expiry Interval to send.
fn build_publish(
    delivery: &Delivery,
    client: &ClientParams,
    packet_id: Option<u16>,
    dup: bool,
    expiry_interval: Option<u32>,
) -> Publish {
    let message = &delivery.message;
    let properties = if client.version.is_v5() {
        PublishProperties {
            payload_format_indicator: message.properties.payload_format_indicator,
            message_expiry_interval: expiry_interval,
            topic_alias: None,
            response_topic: message.properties.response_topic.clone(),
            correlation_data: message.properties.correlation_data.clone(),
            user_properties: message.properties.user_properties.clone(),
            subscription_identifiers: delivery.subscription_identifiers.clone(),
            content_type: message.properties.content_type.clone(),
        }
    } else {
        PublishProperties::default()
    };
    Publish {
        // DUP only marks a retransmission, and never at QoS 0 ([MQTT-3.3.1-1],
        // [MQTT-3.3.1-2], [MQTT-3.3.1-3]).
        dup: dup && delivery.qos != QoS::AtMostOnce,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: message.topic.clone(),
        packet_id,
        properties,
        payload: message.payload.clone(),
    }
}

/// Seconds left until `expires_at`, rounded up: the received interval minus
/// the whole seconds the message has waited ([MQTT-3.3.2-6]). At least 1: an
/// unexpired message must not go out with an interval that reads as expired.
fn remaining_whole_seconds(expires_at: Instant, now: Instant) -> u32 {
    let remaining = expires_at.saturating_duration_since(now);
    let seconds = remaining
        .as_secs()
        .saturating_add(u64::from(remaining.subsec_nanos() > 0));
    u32::try_from(seconds).unwrap_or(u32::MAX).max(1)
}

/// Wraps the PUBLISH in a packet, or returns `None` when it would exceed the
/// client's Maximum Packet Size or cannot be encoded at all
/// ([MQTT-3.1.2-24]). Only computes the size when the client set a maximum.
fn checked_size(publish: Publish, client: &ClientParams) -> Option<Packet> {
    let packet = Packet::Publish(publish);
    let Some(maximum) = client.maximum_packet_size else {
        return Some(packet);
    };
    match encoded_len(&packet, client.version) {
        Ok(length) if u64::try_from(length).is_ok_and(|length| length <= u64::from(maximum)) => {
            Some(packet)
        }
        _ => None,
    }
}

#[cfg(test)]
mod journal_tests;
#[cfg(test)]
mod tests;
