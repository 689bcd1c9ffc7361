//! Counters the broker keeps: plain atomics, relaxed, read by `$SYS`, the console and
//! `/metrics`. Gauges that can be derived from state (sessions, subscriptions,
//! retained) are not kept here but computed on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use switchboard_session::{DropCounts, DropReason};

/// Every counter the broker updates. Relaxed ordering: these are statistics, never
/// used to synchronise anything.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_current: AtomicU64,
    /// Connections parked now: idle, waiting without a task of their own
    /// (the server's parking lot).
    pub connections_parked: AtomicU64,
    /// Times an idle connection was parked, and resumed, since start.
    pub connection_parks: AtomicU64,
    pub connection_unparks: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub publish_received_by_qos: [AtomicU64; 3],
    pub publish_sent_by_qos: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH packets counted in
    /// `publish_received_by_qos`, by QoS. Payload only (not the topic,
    /// properties or header): what the clients asked to carry.
    pub bytes_received_by_qos: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH packets counted in
    /// `publish_sent_by_qos`, by QoS (payload only, as above).
    pub bytes_sent_by_qos: [AtomicU64; 3],
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
    /// TLS handshakes on `tls` and `wss` listeners that failed or did not
    /// finish within the connect timeout: plain bytes on a TLS port, a client
    /// certificate that does not verify, no common protocol version. Also
    /// counted per listener.
    pub tls_handshake_failures: AtomicU64,
    /// WebSocket upgrades answered 403 because their `Origin` header is not
    /// in the listener's `allowed_origins`. Also counted per listener.
    pub websocket_origins_refused: AtomicU64,
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
    /// Socket counts of each listener, registered when the server binds it.
    pub listeners: ListenerRegistry,
}

/// Socket counts of one listener. A socket counts from `accept` (after the
/// per-address rate and the connection limits let it in) until it closes,
/// whether or not it ever sends a valid CONNECT.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Sockets open now.
    pub connections_current: AtomicU64,
    /// Sockets accepted since start.
    pub connections_total: AtomicU64,
    /// Sockets closed at once because `max_connections` (global or the
    /// listener's) was reached; also counted in `Metrics::connections_refused`.
    pub connections_refused: AtomicU64,
    /// Failed TLS handshakes (`tls` and `wss` only); also counted in
    /// `Metrics::tls_handshake_failures`.
    pub tls_handshake_failures: AtomicU64,
    /// WebSocket upgrades refused for their `Origin` (`ws` and `wss` only);
    /// also counted in `Metrics::websocket_origins_refused`.
    pub websocket_origins_refused: AtomicU64,
}

/// The listeners' counts by name, in registration order. A lock, not a map of
/// atomics, because listeners are registered once at bind time and read only
/// by the exporters; connections hold their listener's `Arc` and never lock.
#[derive(Debug, Default)]
pub struct ListenerRegistry {
    listeners: Mutex<Vec<(String, Arc<ListenerStats>)>>,
}

impl ListenerRegistry {
    /// The counts of listener `name`, created on first use: binding the same
    /// name twice (a restarted server on the same broker) shares the counts.
    pub fn register(&self, name: &str) -> Arc<ListenerStats> {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, stats)) = listeners.iter().find(|(known, _)| known == name) {
            return stats.clone();
        }
        let stats = Arc::new(ListenerStats::default());
        listeners.push((name.to_owned(), stats.clone()));
        stats
    }

    /// Every registered listener with its counts, in registration order.
    pub fn snapshot(&self) -> Vec<(String, Arc<ListenerStats>)> {
        self.listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
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

    /// Counts one PUBLISH of `payload_bytes` in `counts` and `bytes` at
    /// `qos` (0..=2; anything else is ignored rather than trusted as an index).
    pub fn record_publish(
        counts: &[AtomicU64; 3],
        bytes: &[AtomicU64; 3],
        qos: usize,
        payload_bytes: usize,
    ) {
        if let (Some(count), Some(total)) = (counts.get(qos), bytes.get(qos)) {
            Metrics::incr(count);
            Metrics::add(total, u64::try_from(payload_bytes).unwrap_or(u64::MAX));
        }
    }

    pub fn record_drops(&self, drops: &DropCounts) {
        for (reason, count) in drops.iter() {
            Metrics::add(self.drop_counter(reason), count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_are_counted_with_their_payload_bytes_by_qos() {
        let metrics = Metrics::default();
        let (counts, bytes) = (&metrics.publish_sent_by_qos, &metrics.bytes_sent_by_qos);
        Metrics::record_publish(counts, bytes, 1, 10);
        Metrics::record_publish(counts, bytes, 1, 5);
        Metrics::record_publish(counts, bytes, 2, 0);
        // Not a QoS: ignored, not a panic.
        Metrics::record_publish(counts, bytes, 3, 7);
        let read = |array: &[AtomicU64; 3]| array.iter().map(Metrics::get).collect::<Vec<_>>();
        assert_eq!(read(counts), [0, 2, 1]);
        assert_eq!(read(bytes), [0, 15, 0]);
    }

    #[test]
    fn listeners_are_registered_once_by_name_in_order() {
        let registry = ListenerRegistry::default();
        let plain = registry.register("plain");
        let web = registry.register("web");
        Metrics::incr(&plain.connections_total);
        let again = registry.register("plain");
        assert!(Arc::ptr_eq(&plain, &again));
        assert!(!Arc::ptr_eq(&plain, &web));
        let names: Vec<String> = registry
            .snapshot()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["plain", "web"]);
        assert_eq!(Metrics::get(&again.connections_total), 1);
    }
}
