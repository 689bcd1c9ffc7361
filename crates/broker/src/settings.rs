//! What the broker needs to know of the configuration.
//!
//! The broker does not depend on the config crate: the server maps the
//! user-facing `Config` onto these settings, so the broker can be embedded and
//! tested without a config file.

use std::time::Duration;

use switchboard_codec::QoS;
use switchboard_topic::TopicLimits;

/// Limits and feature switches enforced by the broker. See `switchboard.example.toml`
/// for what each one means to a user and why its default is what it is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest packet accepted from a client, and advertised in CONNACK.
    pub max_packet_size: u32,
    /// The server's Receive Maximum (inbound QoS 1/2 in flight per client) and the cap on
    /// its own outbound in-flight window.
    pub receive_maximum: u16,
    /// Per-session queue bound, in messages.
    pub max_queued_messages: usize,
    /// Per-session queue bound, in bytes.
    pub max_queued_bytes: usize,
    /// Bound on the bytes queued across all sessions (0 = unlimited); see the
    /// `budget` module for who gives way first when it is reached.
    pub max_queued_bytes_total: usize,
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0_offline: bool,
    /// Cap on the session expiry interval a client may ask for; also the expiry of 3.1.1
    /// persistent sessions. `u32::MAX` means "never expires".
    pub max_session_expiry: u32,
    /// Cap on the keep alive a v5 client may ask for (0 = no cap). Told to the client as
    /// Server Keep Alive.
    pub max_keep_alive: u16,
    /// Topic Alias Maximum the server accepts from clients (0 = none).
    pub topic_alias_maximum: u16,
    pub maximum_qos: QoS,
    pub retain_available: bool,
    pub wildcard_subscriptions: bool,
    pub shared_subscriptions: bool,
    pub subscription_identifiers: bool,
    pub topic_limits: TopicLimits,
    /// Per-client subscription count bound (0 = unlimited).
    pub max_subscriptions_per_client: usize,
    /// Retained store bounds (0 = unlimited).
    pub max_retained_messages: usize,
    pub max_retained_bytes: usize,
    /// At most this many retained messages are sent for one subscription (0 = unlimited).
    pub max_retained_per_subscribe: usize,
    pub max_client_id_length: usize,
    pub allow_zero_length_client_id: bool,
    /// How often `$SYS` topics are refreshed; `None` turns them off.
    pub sys_interval: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_packet_size: 1024 * 1024,
            receive_maximum: 64,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_queued_bytes_total: 0,
            queue_qos0_offline: false,
            max_session_expiry: 7 * 24 * 3600,
            max_keep_alive: 0,
            topic_alias_maximum: 10,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscriptions: true,
            shared_subscriptions: true,
            subscription_identifiers: true,
            topic_limits: TopicLimits::default(),
            max_subscriptions_per_client: 0,
            max_retained_messages: 0,
            max_retained_bytes: 0,
            max_retained_per_subscribe: 0,
            max_client_id_length: 65535,
            allow_zero_length_client_id: true,
            sys_interval: Some(Duration::from_secs(10)),
        }
    }
}
