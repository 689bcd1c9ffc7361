//! The application message as the broker holds it, and one delivery of it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchboard_codec::{PublishProperties, QoS};

/// An application message as the broker holds it once received: immutable and
/// shared (through [`SharedMessage`]) by every queue it sits in, so fanning a
/// message out to N sessions costs N reference counts, not N copies.
///
/// The payload must own its bytes (copied out of the read buffer): a `Bytes`
/// view into a read buffer would pin the whole buffer for as long as the
/// message waits in any queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// A broker-wide id, unique among the messages the broker holds: the
    /// durable store refers to a message by it, and every
    /// [`crate::JournalEvent`] names the message it concerns by it. Callers
    /// that do not persist anything may leave it 0; the session never looks
    /// at it except to put it in journal events.
    pub id: u64,
    pub topic: String,
    pub payload: Bytes,
    /// QoS as published.
    pub qos: QoS,
    /// The RETAIN flag as published.
    pub retain: bool,
    /// As received. `topic_alias` and `subscription_identifiers` are always
    /// empty here (aliases are resolved on the way in, identifiers belong to a
    /// delivery). `message_expiry_interval` is ignored on the way out: the
    /// interval sent is computed from [`Message::expires_at`].
    pub properties: PublishProperties,
    /// Received time plus the Message Expiry Interval; `None` when the message
    /// does not expire. The source of truth for expiry (3.3.2.3.3).
    pub expires_at: Option<Instant>,
}

impl Message {
    /// The bytes charged against a session's queue for holding this message:
    /// topic, payload and the variable-length properties. Roughly what the
    /// message costs in memory; the `Arc` is shared, but each queue that holds
    /// it is charged in full, because that is what it would cost the broker if
    /// the other holders went away.
    ///
    /// O(number of user properties).
    pub fn size(&self) -> usize {
        let properties = &self.properties;
        let user_properties: usize = properties
            .user_properties
            .iter()
            .map(|(key, value)| key.len().saturating_add(value.len()))
            .fold(0, usize::saturating_add);
        [
            self.topic.len(),
            self.payload.len(),
            properties.response_topic.as_ref().map_or(0, String::len),
            properties.correlation_data.as_ref().map_or(0, Bytes::len),
            properties.content_type.as_ref().map_or(0, String::len),
            user_properties,
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    /// True when the message's expiry time has come ([MQTT-3.3.2-5]).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A message shared by every queue and in-flight slot that holds it.
pub type SharedMessage = Arc<Message>;

/// One message on its way to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: SharedMessage,
    /// min(published QoS, the subscription's maximum QoS) (3.8.4).
    pub qos: QoS,
    /// The RETAIN flag to send (the broker applies Retain As Published,
    /// [MQTT-3.3.1-12], [MQTT-3.3.1-13]).
    pub retain: bool,
    /// The identifiers of every matching subscription that had one
    /// ([MQTT-3.3.4-3]); sent to MQTT 5 clients only.
    pub subscription_identifiers: Vec<u32>,
    /// `Some` when routed through a shared subscription: such a delivery can
    /// be handed to another member of the group if this session cannot take it
    /// (see [`crate::Session::take_shared`]).
    pub shared_group: Option<Arc<str>>,
}

impl Delivery {
    /// A delivery with no subscription identifiers, outside any shared group.
    pub fn new(message: SharedMessage, qos: QoS, retain: bool) -> Delivery {
        Delivery {
            message,
            qos,
            retain,
            subscription_identifiers: Vec::new(),
            shared_group: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn size_counts_topic_payload_and_properties() {
        let message = Message {
            id: 1,
            topic: "a/b".to_owned(),
            payload: Bytes::from_static(b"12345"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties {
                response_topic: Some("reply".to_owned()),
                correlation_data: Some(Bytes::from_static(b"xy")),
                content_type: Some("text".to_owned()),
                user_properties: vec![("k".to_owned(), "vv".to_owned())],
                ..PublishProperties::default()
            },
            expires_at: None,
        };
        assert_eq!(message.size(), 3 + 5 + 5 + 2 + 4 + 3);
    }

    #[test]
    fn expiry_is_reached_at_the_instant() {
        let t0 = Instant::now();
        let message = Message {
            id: 2,
            topic: "t".to_owned(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: Some(t0 + Duration::from_secs(2)),
        };
        assert!(!message.is_expired(t0 + Duration::from_millis(1999)));
        assert!(message.is_expired(t0 + Duration::from_secs(2)));
    }
}
