//! What a session did that a durable store must record, so that the store
//! can follow the session and rebuild it after a restart (see the crate doc,
//! "Journal and restore").

use switchboard_codec::QoS;

/// What the session did that a durable store must record. Produced only while
/// journaling is on ([`crate::Session::set_journaling`]), in the order it
/// happened; collected with [`crate::Session::take_journal`].
///
/// Deliveries that are queued are named by message id only: a store that
/// keeps the queue by message id removes the oldest queued delivery with that
/// id (the session only ever sends or drops the head of its queue). The one
/// exception is [`crate::Session::take_shared`], which removes queued
/// deliveries that have a shared group wherever they are: for its
/// `Removed { packet_id: None, .. }` events, remove the oldest queued
/// delivery with that id *and a shared group*. (This only matters when the
/// same message is queued more than once for one session.) In-flight
/// deliveries are named by packet id, which is unique among them.
///
/// Not journaled, because the caller already knows them from the return
/// values: enqueueing ([`crate::EnqueueOutcome::Queued`]), inbound QoS 2 ids
/// ([`crate::Session::incoming_qos2`], [`crate::Session::handle_pubrel`],
/// [`crate::Session::abandon_incoming_qos2`], and their loss in
/// [`crate::Session::clear`]), and resends, which change nothing durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalEvent {
    /// A queued delivery was sent for the first time as a QoS 1/2 PUBLISH with this packet id.
    Sent {
        message_id: u64,
        packet_id: u16,
        qos: QoS,
    },
    /// A QoS 0 delivery left the queue (written out; nothing more will happen to it).
    SentQos0 { message_id: u64 },
    /// PUBREC accepted for this packet id: the flow is at the PUBREL stage.
    Released { packet_id: u16 },
    /// The flow for this packet id finished (PUBACK, PUBCOMP, or a PUBREC with an error code)
    /// and the packet id is free; the message was delivered (or refused by the client).
    Completed { packet_id: u16, message_id: u64 },
    /// A delivery that was queued (`packet_id: None`) or in flight (`Some`)
    /// is gone without completing: dropped (expired while queued, too large
    /// for the client's Maximum Packet Size), or removed by
    /// [`crate::Session::take_shared`] / [`crate::Session::clear`]. A delivery
    /// dropped by [`crate::Session::enqueue`] (queue full, expired, QoS 0
    /// offline) is NOT reported: it was never queued.
    Removed {
        message_id: u64,
        packet_id: Option<u16>,
    },
}

/// The events a session recorded and the store has not taken yet.
///
/// Whether to record at all is the session's `journaling` switch, kept
/// outside: this buffer lives in the session's lazily made traffic state
/// (nothing is allocated for a session that records nothing), and recording
/// borrows only that state, not the whole session (the in-flight entry
/// being acted on is often still borrowed). When off, recording is one
/// branch on a `bool`.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Grows by at most a few events per session call; the caller drains it
    /// with [`Journal::take`] after each lock hold, so it stays at the
    /// high-water mark of one call (O(state) for `clear`).
    events: Vec<JournalEvent>,
}

impl Journal {
    #[inline]
    pub(crate) fn record(&mut self, event: JournalEvent) {
        self.events.push(event);
    }

    /// Appends the recorded events to `out`; keeps the buffer's capacity.
    pub(crate) fn take(&mut self, out: &mut Vec<JournalEvent>) {
        out.append(&mut self.events);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// What the buffer has allocated, to show that journaling off allocates nothing.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.events.capacity()
    }
}
