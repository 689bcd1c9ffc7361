//! `$SYS` topics, named like Mosquitto's so existing dashboards keep working.
//! Published as retained messages on an interval by the server's tick task.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchboard_codec::{PublishProperties, QoS};
use switchboard_session::Message;

use crate::{Broker, Metrics};

/// The version string published on `$SYS/broker/version`.
pub(crate) const VERSION: &str = concat!("switchboard ", env!("CARGO_PKG_VERSION"));

pub(crate) fn publish(broker: &Broker, now: Instant) {
    let metrics = broker.metrics();
    let uptime = now.saturating_duration_since(broker.started()).as_secs();
    let connected = Metrics::get(&metrics.connections_current);
    let sessions = broker.session_count() as u64;
    let values: [(&str, String); 13] = [
        ("$SYS/broker/version", VERSION.to_string()),
        ("$SYS/broker/uptime", format!("{uptime} seconds")),
        ("$SYS/broker/clients/connected", connected.to_string()),
        (
            "$SYS/broker/clients/disconnected",
            sessions.saturating_sub(connected).to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            sessions.max(connected).to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            Metrics::get(&metrics.messages_received).to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            Metrics::get(&metrics.messages_sent).to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            Metrics::get(&metrics.bytes_received).to_string(),
        ),
        (
            "$SYS/broker/bytes/sent",
            Metrics::get(&metrics.bytes_sent).to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            broker.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            broker.retained_count().to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            (Metrics::get(&metrics.dropped_queue_full)
                + Metrics::get(&metrics.dropped_queue_bytes_full)
                + Metrics::get(&metrics.dropped_qos0_offline)
                + Metrics::get(&metrics.dropped_expired)
                + Metrics::get(&metrics.dropped_too_large)
                + Metrics::get(&metrics.dropped_memory_budget))
            .to_string(),
        ),
        // Bytes of messages waiting in session queues (Mosquitto's name).
        (
            "$SYS/broker/store/messages/bytes",
            broker.queued_bytes_total().to_string(),
        ),
    ];
    for (topic, value) in values {
        let message = Arc::new(Message {
            id: broker.next_message_id(),
            topic: topic.to_string(),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: PublishProperties::default(),
            expires_at: None,
        });
        // Not through `publish`: `$SYS` values are regenerated, never stored.
        let route = broker.route(None, &message);
        broker.deliver_route(route, message, now);
    }
}
