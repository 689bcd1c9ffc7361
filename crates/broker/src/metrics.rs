//! Counters the broker keeps: plain atomics, relaxed, read by `$SYS`, the console and
//! `/metrics`. Gauges that can be derived from state (sessions, subscriptions,
//! retained) are not kept here but computed on demand.

use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_session::{DropCounts, DropReason};

/// Every counter the broker updates. Relaxed ordering: these are statistics, never
/// used to synchronise anything.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub publish_received_by_qos: [AtomicU64; 3],
    pub publish_sent_by_qos: [AtomicU64; 3],
    pub dropped_queue_full: AtomicU64,
    pub dropped_queue_bytes_full: AtomicU64,
    pub dropped_qos0_offline: AtomicU64,
    pub dropped_expired: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub dropped_no_subscribers: AtomicU64,
    pub retained_refused: AtomicU64,
    /// Messages refused because the durable store could not write them.
    pub store_refusals: AtomicU64,
    /// Damaged regions of the durable store set aside at the last start.
    pub store_damaged_regions: AtomicU64,
    pub subscriptions_refused: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub keep_alive_timeouts: AtomicU64,
    pub connect_timeouts: AtomicU64,
    pub takeovers: AtomicU64,
    /// Connections closed at once because `max_connections` (global or the
    /// listener's) was reached.
    pub connections_refused: AtomicU64,
    /// Connections closed at once because their source address (IPv6: its
    /// /64) opened connections faster than `connection_rate_per_address`.
    pub connections_rate_limited: AtomicU64,
    /// Failed `accept` calls (e.g. out of file descriptors), each followed by
    /// a backoff.
    pub accept_errors: AtomicU64,
    /// Packets refused for exceeding `max_packet_size` (the connection is
    /// closed; v5: DISCONNECT 0x95). Also counted in `protocol_errors`.
    pub packets_too_large: AtomicU64,
    /// PUBLISH packets whose topic name broke the topic limits (length,
    /// levels) or rules; the connection is closed (v5: DISCONNECT 0x90).
    pub topic_names_refused: AtomicU64,
    /// Times a connection stopped reading because its client sent faster than
    /// `client_message_rate` or `client_byte_rate`.
    pub clients_throttled: AtomicU64,
    /// Deliveries refused because queued messages across all sessions reached
    /// `max_queued_bytes_total` (see the broker's `budget` module).
    pub dropped_memory_budget: AtomicU64,
    /// QoS 1/2 publishes the broker could only partly carry out: a persistent
    /// session could not queue it (memory budget), or a retained message
    /// could not be stored. v5 publishers get PUBACK/PUBREC 0x97.
    pub publish_quota_exceeded: AtomicU64,
    pub wills_published: AtomicU64,
    pub sessions_expired: AtomicU64,
    /// CONNECTs refused by authentication or access control: bad user name
    /// or password, no user name where one is required, or a will topic the
    /// client may not publish to.
    pub auth_failures: AtomicU64,
    /// CONNECTs held back because their address failed to log in too often.
    pub auth_throttled: AtomicU64,
    /// PUBLISH packets the access control list refused (dropped).
    pub publish_not_authorized: AtomicU64,
    /// Deliveries the access control list withheld from a subscriber.
    pub dropped_not_authorized: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn decr(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counter for messages dropped for `reason`.
    pub fn drop_counter(&self, reason: DropReason) -> &AtomicU64 {
        match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::QueueBytesFull => &self.dropped_queue_bytes_full,
            DropReason::Qos0Offline => &self.dropped_qos0_offline,
            DropReason::Expired => &self.dropped_expired,
            DropReason::TooLargeForClient => &self.dropped_too_large,
        }
    }

    pub fn record_drops(&self, drops: &DropCounts) {
        for (reason, count) in drops.iter() {
            Metrics::add(self.drop_counter(reason), count);
        }
    }
}
