//! Outgoing QoS 1 and 2 messages that the client has not finished
//! acknowledging, keyed by packet identifier and kept in send order.
//!
//! Two structures, one truth: `entries` (packet id -> entry) answers every
//! acknowledgement in O(1); `order` remembers the send order that a resend must
//! follow ([MQTT-4.6.0-1]). An acknowledgement removes the entry only from
//! `entries`; its `(sequence, id)` pair stays behind in `order` as a stale
//! record, recognised because no live entry has that sequence number (the id
//! may already have been reused). Stale records are popped from the front as
//! they surface and, should out-of-order acknowledgements leave more stale
//! records than live ones, swept in one pass, so `order` stays within twice
//! the live count (plus a constant) and every operation is amortised O(1).

use std::collections::VecDeque;

use crate::hash::PacketIdMap;
use crate::message::Delivery;

/// Slack before a sweep of stale order records, so that small windows do not
/// sweep on nearly every acknowledgement.
const ORDER_SWEEP_SLACK: usize = 32;

/// What the session still owes or awaits for one packet id.
#[derive(Debug)]
pub(crate) enum FlowState {
    /// QoS 1 awaiting PUBACK, or QoS 2 awaiting PUBREC: the PUBLISH is
    /// "unacknowledged" ([MQTT-4.3.2-3], [MQTT-4.3.3-3]) and is kept for a
    /// resend.
    Unacknowledged(Delivery),
    /// QoS 2 after a successful PUBREC: the PUBREL is unacknowledged until
    /// PUBCOMP ([MQTT-4.3.3-5]). The message itself is discarded (figure 4.3)
    /// and must never be sent again ([MQTT-4.3.3-6]); only its id is kept, so
    /// that the journal can say which message completed or was removed.
    Released { message_id: u64 },
}

impl FlowState {
    /// The [`crate::Message::id`] of the message this flow delivers.
    pub(crate) fn message_id(&self) -> u64 {
        match self {
            FlowState::Unacknowledged(delivery) => delivery.message.id,
            FlowState::Released { message_id } => *message_id,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// Position in send order; unique for the life of the session.
    pub(crate) sequence: u64,
    /// True while this entry holds one unit of the current connection's send
    /// quota: its PUBLISH went out on this connection and neither PUBACK,
    /// PUBCOMP nor an error PUBREC has come back (4.9). Reset on attach,
    /// because the quota is per connection.
    pub(crate) counted: bool,
    /// The Message Expiry Interval of the first send, repeated on resends:
    /// the wait in the server ended when sending began ([MQTT-3.3.2-6]).
    /// `None` for a flow restored after a restart (the first send's interval
    /// was not recorded; see [`crate::Session::restore_inflight`]).
    pub(crate) expiry_interval: Option<u32>,
    pub(crate) state: FlowState,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// The flows, boxed and made on the first send: a session with nothing
    /// in flight (every QoS 0 or idle client, for most of its life) holds
    /// one pointer instead of two empty containers, and the box is freed
    /// again when the last flow ends.
    flows: Option<Box<Flows>>,
    next_sequence: u64,
    /// Where the search for a free packet id starts; never 0 ([MQTT-2.2.1-4]).
    next_packet_id: u16,
}

#[derive(Debug, Default)]
struct Flows {
    entries: PacketIdMap<Entry>,
    /// `(sequence, packet_id)` in send order, with stale records (see the
    /// module doc).
    order: VecDeque<(u64, u16)>,
}

impl InFlight {
    pub(crate) fn new() -> InFlight {
        InFlight {
            next_packet_id: 1,
            ..InFlight::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.as_ref().map_or(0, |flows| flows.entries.len())
    }

    pub(crate) fn get(&self, packet_id: u16) -> Option<&Entry> {
        self.flows.as_ref()?.entries.get(&packet_id)
    }

    pub(crate) fn get_mut(&mut self, packet_id: u16) -> Option<&mut Entry> {
        self.flows.as_mut()?.entries.get_mut(&packet_id)
    }

    /// True when `(sequence, packet_id)` names a live entry.
    pub(crate) fn is_live(&self, sequence: u64, packet_id: u16) -> bool {
        self.get(packet_id)
            .is_some_and(|entry| entry.sequence == sequence)
    }

    /// A packet id not used by any in-flight message, or `None` when all
    /// 65,535 are taken. Never 0, never one in use ([MQTT-2.2.1-4]); the
    /// search starts after the last id handed out, so ids are reused as late
    /// as possible and, with acknowledgements in order, the first candidate is
    /// free. Worst case (nearly every id taken) it scans the taken ones once.
    pub(crate) fn allocate_packet_id(&mut self) -> Option<u16> {
        if self.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = candidate.checked_add(1).unwrap_or(1);
            if candidate != 0 && self.get(candidate).is_none() {
                return Some(candidate);
            }
        }
    }

    /// The flows, made if there are none yet.
    fn flows_mut(&mut self) -> &mut Flows {
        self.flows.get_or_insert_with(Box::default)
    }

    /// Frees the flows once none is left (stale order records included).
    fn release_if_empty(&mut self) {
        if self
            .flows
            .as_ref()
            .is_some_and(|flows| flows.entries.is_empty())
        {
            self.flows = None;
        }
    }

    /// Records a PUBLISH just sent with `packet_id` (from
    /// [`InFlight::allocate_packet_id`]); returns its sequence number.
    pub(crate) fn insert(
        &mut self,
        packet_id: u16,
        delivery: Delivery,
        expiry_interval: Option<u32>,
    ) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let flows = self.flows_mut();
        flows.entries.insert(
            packet_id,
            Entry {
                sequence,
                counted: true,
                expiry_interval,
                state: FlowState::Unacknowledged(delivery),
            },
        );
        flows.order.push_back((sequence, packet_id));
        sequence
    }

    /// Records a flow restored after a restart, after every flow recorded so
    /// far in send order, holding no send quota. A flow already recorded
    /// under `packet_id` is replaced (the caller takes care of its quota).
    /// Packet id allocation carries on after `packet_id`, as it would have
    /// after sending it.
    pub(crate) fn restore(&mut self, packet_id: u16, state: FlowState) -> Option<Entry> {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.next_packet_id = packet_id.checked_add(1).unwrap_or(1);
        let flows = self.flows_mut();
        let replaced = flows.entries.insert(
            packet_id,
            Entry {
                sequence,
                counted: false,
                expiry_interval: None,
                state,
            },
        );
        flows.order.push_back((sequence, packet_id));
        if replaced.is_some() {
            self.tidy_order();
        }
        replaced
    }

    /// Ends the flow of `packet_id`, freeing the id.
    pub(crate) fn remove(&mut self, packet_id: u16) -> Option<Entry> {
        let entry = self.flows.as_mut()?.entries.remove(&packet_id)?;
        self.tidy_order();
        self.release_if_empty();
        Some(entry)
    }

    /// Pops stale records off the front and sweeps when they outnumber the
    /// live ones (amortised O(1), see the module doc).
    fn tidy_order(&mut self) {
        let Some(flows) = self.flows.as_mut() else {
            return;
        };
        while let Some(&(sequence, packet_id)) = flows.order.front() {
            if flows
                .entries
                .get(&packet_id)
                .is_some_and(|entry| entry.sequence == sequence)
            {
                break;
            }
            flows.order.pop_front();
        }
        let limit = flows
            .entries
            .len()
            .saturating_mul(2)
            .saturating_add(ORDER_SWEEP_SLACK);
        if flows.order.len() > limit {
            self.sweep_order();
        }
    }

    /// Drops every stale record from `order`. O(order length).
    pub(crate) fn sweep_order(&mut self) {
        let Some(flows) = self.flows.as_mut() else {
            return;
        };
        let entries = &flows.entries;
        flows.order.retain(|&(sequence, packet_id)| {
            entries
                .get(&packet_id)
                .is_some_and(|entry| entry.sequence == sequence)
        });
    }

    /// Live `(sequence, packet_id)` records in send order. Call
    /// [`InFlight::sweep_order`] first if only live records are wanted
    /// without checking [`InFlight::is_live`].
    pub(crate) fn order(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        self.flows
            .iter()
            .flat_map(|flows| flows.order.iter().copied())
            .filter(|&(sequence, packet_id)| self.is_live(sequence, packet_id))
    }

    /// Removes every entry for which `take` returns true and returns them
    /// with their packet ids, in send order; also sweeps stale order records.
    /// O(n).
    pub(crate) fn drain_where(
        &mut self,
        mut take: impl FnMut(&Entry) -> bool,
    ) -> Vec<(u16, Entry)> {
        let mut taken = Vec::new();
        let Some(flows) = self.flows.as_mut() else {
            return taken;
        };
        let entries = &mut flows.entries;
        flows.order.retain(|&(sequence, packet_id)| {
            let Some(entry) = entries.get(&packet_id) else {
                return false;
            };
            if entry.sequence != sequence {
                return false;
            }
            if !take(entry) {
                return true;
            }
            if let Some(entry) = entries.remove(&packet_id) {
                taken.push((packet_id, entry));
            }
            false
        });
        self.release_if_empty();
        taken
    }

    /// Forgets everything; packet id allocation carries on where it was.
    pub(crate) fn clear(&mut self) {
        self.flows = None;
    }

    /// Iterates over every live entry, in no particular order.
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.flows
            .iter_mut()
            .flat_map(|flows| flows.entries.values_mut())
    }

    /// Moves the packet id search; lets tests reach the wrap-around quickly.
    #[cfg(test)]
    pub(crate) fn set_next_packet_id(&mut self, packet_id: u16) {
        self.next_packet_id = packet_id;
    }

    #[cfg(test)]
    pub(crate) fn order_records(&self) -> usize {
        self.flows.as_ref().map_or(0, |flows| flows.order.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;
    use std::sync::Arc;
    use switchboard_codec::{PublishProperties, QoS};

    fn delivery() -> Delivery {
        Delivery::new(
            Arc::new(Message {
                id: 0,
                topic: "t".to_owned(),
                payload: Bytes::new(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
            }),
            QoS::AtLeastOnce,
            false,
        )
    }

    #[test]
    fn ids_start_at_one_and_skip_ids_in_use() {
        // [MQTT-2.2.1-4]
        let mut inflight = InFlight::new();
        let first = inflight.allocate_packet_id().unwrap();
        assert_eq!(first, 1);
        inflight.insert(first, delivery(), None);
        inflight.next_packet_id = 1;
        assert_eq!(inflight.allocate_packet_id(), Some(2));
    }

    #[test]
    fn ids_wrap_past_65535_to_1_skipping_ids_in_use() {
        // [MQTT-2.2.1-3] never 0, [MQTT-2.2.1-4] never one in use.
        let mut inflight = InFlight::new();
        inflight.insert(1, delivery(), None);
        inflight.insert(2, delivery(), None);
        inflight.next_packet_id = u16::MAX;
        assert_eq!(inflight.allocate_packet_id(), Some(u16::MAX));
        assert_eq!(inflight.allocate_packet_id(), Some(3));
    }

    #[test]
    fn all_ids_taken_gives_none() {
        let mut inflight = InFlight::new();
        for _ in 0..u16::MAX {
            let id = inflight.allocate_packet_id().unwrap();
            inflight.insert(id, delivery(), None);
        }
        assert_eq!(inflight.len(), 65535);
        assert_eq!(inflight.allocate_packet_id(), None);
        inflight.remove(40_000);
        assert_eq!(inflight.allocate_packet_id(), Some(40_000));
    }

    #[test]
    fn order_survives_id_reuse() {
        let mut inflight = InFlight::new();
        inflight.insert(7, delivery(), None);
        inflight.insert(8, delivery(), None);
        inflight.remove(7);
        inflight.insert(7, delivery(), None);
        let ids: Vec<u16> = inflight.order().map(|(_, id)| id).collect();
        assert_eq!(ids, vec![8, 7]);
    }

    #[test]
    fn stale_records_stay_bounded_when_the_oldest_is_never_acknowledged() {
        let mut inflight = InFlight::new();
        inflight.insert(1, delivery(), None);
        for round in 0..10_000u32 {
            let id = inflight.allocate_packet_id().unwrap();
            inflight.insert(id, delivery(), None);
            inflight.remove(id);
            assert!(
                inflight.order_records() <= 2 + ORDER_SWEEP_SLACK + 1,
                "round {round}: {} records",
                inflight.order_records()
            );
        }
        let ids: Vec<u16> = inflight.order().map(|(_, id)| id).collect();
        assert_eq!(ids, vec![1]);
    }

    #[test]
    fn restored_flows_follow_restore_order_and_hold_no_quota() {
        let mut inflight = InFlight::new();
        inflight.insert(9, delivery(), Some(5));
        assert!(inflight
            .restore(4, FlowState::Released { message_id: 1 })
            .is_none());
        assert!(inflight
            .restore(2, FlowState::Unacknowledged(delivery()))
            .is_none());
        let ids: Vec<u16> = inflight.order().map(|(_, id)| id).collect();
        assert_eq!(ids, vec![9, 4, 2]);
        let restored = inflight.get(2).unwrap();
        assert!(!restored.counted);
        assert_eq!(restored.expiry_interval, None);
        // Allocation carries on after the last id restored, skipping ids in use.
        assert_eq!(inflight.allocate_packet_id(), Some(3));
        assert_eq!(inflight.allocate_packet_id(), Some(5));
        // Restoring an id again replaces the flow and moves it to the end.
        let replaced = inflight.restore(4, FlowState::Unacknowledged(delivery()));
        assert!(matches!(
            replaced.map(|entry| entry.state),
            Some(FlowState::Released { message_id: 1 })
        ));
        let ids: Vec<u16> = inflight.order().map(|(_, id)| id).collect();
        assert_eq!(ids, vec![9, 2, 4]);
        assert_eq!(inflight.len(), 3);
        inflight.restore(u16::MAX, FlowState::Released { message_id: 2 });
        assert_eq!(inflight.allocate_packet_id(), Some(1), "never 0");
    }

    #[test]
    fn drain_where_keeps_send_order() {
        let mut inflight = InFlight::new();
        for id in [5, 3, 9, 4] {
            inflight.insert(id, delivery(), None);
        }
        let taken = inflight.drain_where(|entry| entry.sequence % 2 == 0);
        let sequences: Vec<(u16, u64)> = taken
            .iter()
            .map(|(packet_id, entry)| (*packet_id, entry.sequence))
            .collect();
        assert_eq!(sequences, vec![(5, 0), (9, 2)]);
        let left: Vec<u16> = inflight.order().map(|(_, id)| id).collect();
        assert_eq!(left, vec![3, 4]);
        assert_eq!(inflight.len(), 2);
    }
}
