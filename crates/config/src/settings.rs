//! The settings themselves: one struct per TOML section, every default a
//! named constant with the reason for its value, and the hard bounds that
//! validation enforces.
//!
//! Field names are the TOML key names. Durations are whole seconds with the
//! unit in the name (`connect_timeout_secs`); sizes are bytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

// ---------------------------------------------------------------------------
// Defaults. Each carries the reason for its value; change one and the example
// config test fails until switchboard.example.toml says the same.
// ---------------------------------------------------------------------------

/// Plain TCP: it needs no certificate, and the default listener is on
/// loopback, where TLS would protect nothing.
pub const DEFAULT_LISTENER_KIND: ListenerKind = ListenerKind::Tcp;
/// Loopback on the IANA MQTT port: a fresh install with no authentication
/// configured must not be reachable from the network until someone says so.
pub const DEFAULT_LISTENER_ADDRESS: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883);
/// The path MQTT-over-WebSocket clients (browser libraries, `mqtt.js`,
/// Paho) use unless told otherwise.
pub const DEFAULT_WS_PATH: &str = "/mqtt";
/// With a `client_ca_file` alone, clients choose: a certificate they present
/// is verified, and those without one log in with a password as usual.
pub const DEFAULT_REQUIRE_CLIENT_CERT: bool = false;
/// User names come from CONNECT, checked against the password file, unless
/// the operator decides that certificates identify clients.
pub const DEFAULT_USE_SUBJECT_AS_USERNAME: bool = false;
/// Relative to the working directory so a first run needs no privileges and
/// no system directory.
pub const DEFAULT_DATA_DIR: &str = "./switchboard-data";
/// An acknowledged QoS 1/2 message must survive a crash unless the operator
/// explicitly trades that away for speed.
pub const DEFAULT_DURABILITY: Durability = Durability::Sync;
/// Fresh enough for a dashboard, and a few dozen small publishes every ten
/// seconds cost nothing.
pub const DEFAULT_SYS_INTERVAL_SECS: u64 = 10;
/// Lifecycle events (listening, shutdown, refused connections) without
/// per-packet noise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Each connection costs a file descriptor and its buffers; ten thousand fits
/// a small server. Raise it together with the process's `ulimit -n`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// 1 MiB holds telemetry, commands and small files, while one client can
/// make the broker buffer 256 times less than the protocol's 256 MiB maximum.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1024 * 1024;
/// Long enough for a TCP and TLS handshake over a slow mobile link; short
/// enough that sockets that never send CONNECT do not hold connection slots.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// An idle connection parks (gives up its task and buffers, about 1 KiB)
/// after this long: long enough that a client exchanging a message every
/// second or so stays running (each parking and resuming costs a few system
/// calls), short enough that a crowd of quiet devices costs little.
pub const DEFAULT_PARK_IDLE_AFTER_MS: u64 = 2_000;
/// Parking later than an hour saves nothing worth having.
pub const MAX_PARK_IDLE_AFTER_MS: u64 = 60 * 60 * 1000;
/// Keeps a QoS 1/2 stream flowing over a 100 ms round trip (about 320
/// messages a second per client) while bounding how many unacknowledged
/// messages one session holds.
pub const DEFAULT_MAX_INFLIGHT: u16 = 32;
/// Rides out a short disconnect at typical device rates without letting one
/// absent client hold memory without bound.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1000;
/// Sixteen maximum-size packets, or the whole message quota at 16 KiB each:
/// a cap, not a reservation, so idle sessions cost nothing.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// The protocol maximum (a UTF-8 string's 16-bit length): long topics are
/// legal and `max_packet_size` already bounds them.
pub const DEFAULT_MAX_TOPIC_LENGTH: u16 = u16::MAX;
/// Real hierarchies rarely exceed ten levels; the cap bounds the work of
/// matching one topic against the subscription index.
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 128;
/// Every filter costs index memory, so unlimited would let one client grow the
/// index without bound; a thousand is far beyond what devices and services use.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 1000;
/// One retained state message per topic for a large fleet of devices, while
/// bounding a store that lives as long as the broker.
pub const DEFAULT_MAX_RETAINED_MESSAGES: usize = 100_000;
/// Retained messages are kept for the broker's lifetime; the cap stops
/// retained publishes to ever-new topics from exhausting memory.
pub const DEFAULT_MAX_RETAINED_BYTES: usize = 256 * 1024 * 1024;
/// Holds UUIDs and host-derived identifiers with room to spare and bounds the
/// memory of every session key (the protocol allows 65535 bytes).
pub const DEFAULT_MAX_CLIENT_ID_LENGTH: u16 = 256;
/// A subscription to `#` would otherwise send the whole retained store in one
/// burst to one client.
pub const DEFAULT_MAX_RETAINED_PER_SUBSCRIBE: usize = 1000;
/// Off: many devices behind one NAT share an address, and the default
/// listener is on loopback. Turn it on for listeners that face the Internet.
pub const DEFAULT_CONNECTION_RATE_PER_ADDRESS: u32 = 0;
/// Once the rate is on: a client, or a few behind one NAT, reconnect at once
/// after a network blip, while a script opening thousands is held to the rate.
pub const DEFAULT_CONNECTION_BURST_PER_ADDRESS: u32 = 20;
/// Unlimited: rates differ by orders of magnitude between deployments, and the
/// queue and in-flight bounds cap memory whatever a client sends.
pub const DEFAULT_CLIENT_MESSAGE_RATE: u32 = 0;
/// Unlimited, for the same reason as the message rate.
pub const DEFAULT_CLIENT_BYTE_RATE: u64 = 0;
/// The per-session bound times the connection limit (16 MiB x 10,000) is far
/// more than a server has; one GiB across all queues fits a small one, and is
/// a cap, not a reservation.
pub const DEFAULT_MAX_QUEUED_BYTES_TOTAL: usize = 1024 * 1024 * 1024;

/// Seven days outlasts a device switched off over a long weekend or a week's
/// holiday; a client that never returns would otherwise keep its queue forever.
pub const DEFAULT_MAX_SESSION_EXPIRY_SECS: u32 = 7 * 24 * 60 * 60;
/// QoS 0 means "at most once": queueing it for absent clients spends memory on
/// messages their senders declared expendable.
pub const DEFAULT_QUEUE_QOS0_OFFLINE: bool = false;
/// No cap: clients choose keep alive to suit their network and battery, and a
/// forced shorter one costs battery-powered devices power.
pub const DEFAULT_MAX_KEEP_ALIVE_SECS: u16 = 0;
/// Enough for the handful of hot topics a device publishes to; each alias
/// pins one topic string for the connection's lifetime.
pub const DEFAULT_TOPIC_ALIAS_MAXIMUM: u16 = 10;
/// The protocol lets a server assign an identifier [MQTT-3.1.3-6] and many
/// client libraries rely on it.
pub const DEFAULT_ALLOW_ZERO_LENGTH_CLIENT_ID: bool = true;

/// The whole protocol: QoS 2 is what clients that need exactly-once expect.
pub const DEFAULT_MAXIMUM_QOS: u8 = 2;
/// Full feature set; turn off to shed retained storage entirely.
pub const DEFAULT_RETAIN_AVAILABLE: bool = true;
/// Full feature set; turn off to allow only exact-topic subscriptions.
pub const DEFAULT_WILDCARD_SUBSCRIPTIONS: bool = true;
/// Full feature set; `$share/` load balancing is the usual way to scale out
/// consumers.
pub const DEFAULT_SHARED_SUBSCRIPTIONS: bool = true;
/// Full feature set; costs a few bytes per matched subscription.
pub const DEFAULT_SUBSCRIPTION_IDENTIFIERS: bool = true;

/// Five failed logins cover a person mistyping a password; beyond that it
/// is a script, whose next attempts are slowed down.
pub const DEFAULT_FAILED_LOGIN_LIMIT: u32 = 5;
/// A minute without a failure and an address starts afresh: about as long as
/// it takes someone locked out to find the right password.
pub const DEFAULT_FAILED_LOGIN_WINDOW_SECS: u64 = 60;
/// One second barely bothers a person and cuts a guessing script to one
/// attempt a second; the delay doubles with every further failure.
pub const DEFAULT_FAILED_LOGIN_DELAY_SECS: u64 = 1;
/// Half a minute makes guessing pointless while a legitimate client behind
/// a noisy shared address still gets through.
pub const DEFAULT_FAILED_LOGIN_MAX_DELAY_SECS: u64 = 30;
/// Ten thousand tracked addresses cost well under a megabyte; beyond that
/// the address whose last failure is oldest is forgotten.
pub const DEFAULT_FAILED_LOGIN_MAX_ADDRESSES: usize = 10_000;

/// The console, API and metrics are how an operator sees the broker; bound
/// to loopback they are safe to run by default.
pub const DEFAULT_HTTP_ENABLED: bool = true;
/// Loopback on the usual alternative HTTP port: the console can disconnect
/// clients and read every message, so it must not face the network until
/// someone gives it credentials.
pub const DEFAULT_HTTP_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// API tokens shorter than this are refused: a token is the whole secret,
/// and sixteen random characters are beyond guessing over HTTP.
pub const MIN_HTTP_TOKEN_LENGTH: usize = 16;

// ---------------------------------------------------------------------------
// Hard bounds: values outside these are refused, whatever their source.
// ---------------------------------------------------------------------------

/// The largest packet MQTT can express: a Remaining Length of 268,435,455
/// plus one byte of packet type and four of length.
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_455 + 5;
/// Smaller than this and a CONNECT with a 23-byte client id, credentials and
/// the usual v5 properties cannot fit: such a value is a typo.
pub const MIN_PACKET_SIZE: u32 = 128;
/// A client must be allowed identifiers of 1 to 23 bytes [MQTT-3.1.3-5].
pub const MIN_CLIENT_ID_LENGTH: u16 = 23;
/// Longer is no use to any client, and a bound keeps deadline arithmetic far
/// from overflow.
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 60 * 60;
/// A day between `$SYS` updates is already useless; the bound keeps timer
/// arithmetic far from overflow.
pub const MAX_SYS_INTERVAL_SECS: u64 = 24 * 60 * 60;
/// Longer than an hour per login attempt stops being a delay and becomes an
/// outage for everyone behind the same address.
pub const MAX_FAILED_LOGIN_DELAY_SECS: u64 = 60 * 60;
/// The highest QoS level MQTT defines.
pub const MAX_QOS: u8 = 2;
/// Levels accepted in `log_level`, least to most verbose.
pub const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

// ---------------------------------------------------------------------------
// Choices
// ---------------------------------------------------------------------------

/// A value given as a string that must be one of a fixed set.
pub(crate) trait Choice: Sized + Copy + 'static {
    /// Every accepted spelling and its value, in documentation order.
    const CHOICES: &'static [(&'static str, Self)];

    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::CHOICES
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, value)| *value)
    }

    /// `a, b or c`, for error messages.
    fn expected() -> String {
        let names: Vec<String> = Self::CHOICES
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        format!("one of {}", names.join(", "))
    }
}

/// A string that is not one of the accepted choices; returned by the
/// `FromStr` impls so the binary's argument parser can show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not valid: expected {expected}")]
pub struct ParseChoiceError {
    /// The string given.
    pub value: String,
    /// The accepted spellings.
    pub expected: String,
}

macro_rules! choice {
    ($type:ident { $($name:literal => $variant:ident),+ $(,)? }) => {
        impl Choice for $type {
            const CHOICES: &'static [(&'static str, Self)] = &[$(($name, $type::$variant)),+];

            fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }
        }

        impl $type {
            /// The spelling used in the config file.
            pub fn as_str(self) -> &'static str {
                Choice::name(self)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = ParseChoiceError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                <Self as Choice>::from_name(value).ok_or_else(|| ParseChoiceError {
                    value: value.to_owned(),
                    expected: <Self as Choice>::expected(),
                })
            }
        }
    };
}

/// The transport a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS; needs `cert_file` and `key_file`.
    Tls,
    /// MQTT over WebSocket, upgraded from HTTP on `path`.
    Ws,
    /// MQTT over WebSocket over TLS; needs `cert_file` and `key_file`.
    Wss,
}

impl ListenerKind {
    /// Whether the transport is TLS (`tls`, `wss`), so the listener needs a
    /// certificate and may verify client certificates.
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether the transport is WebSocket (`ws`, `wss`), so `path` applies.
    pub fn uses_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

choice!(ListenerKind { "tcp" => Tcp, "tls" => Tls, "ws" => Ws, "wss" => Wss });

/// How hard the store works to keep accepted messages across a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Flushed to disk before the acknowledgement is sent: nothing
    /// acknowledged is lost.
    Sync,
    /// Flushed on a timer: a crash loses at most the last interval.
    Periodic,
    /// Nothing written to disk: a restart loses all sessions and messages.
    Memory,
}

choice!(Durability { "sync" => Sync, "periodic" => Periodic, "memory" => Memory });

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

/// One `[[listener]]` entry: an address to accept connections on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    /// Transport; `tcp` when left out.
    pub kind: ListenerKind,
    /// An IP address and port (`127.0.0.1:1883`, `[::1]:1883`). Host names are
    /// not accepted: what a name resolves to can change under a running broker.
    pub address: SocketAddr,
    /// A label for logs and metrics; must be unique when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A cap on this listener's connections, within the global
    /// `limits.max_connections`; `None` means only the global cap applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Whether clients without a user name may connect on this listener,
    /// overriding `auth.allow_anonymous` and the loopback default; `None`
    /// leaves the decision to them. `true` on a non-loopback address is an
    /// explicit choice and passes validation without a password file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// This listener's password file, in place of `auth.password_file`
    /// (which then does not apply here). Its users are a separate set: a
    /// user of another file is unknown here. Reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// This listener's ACL file, in place of `auth.acl_file`. Reloaded on
    /// SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
    /// `limits.connection_rate_per_address` for this listener alone (0 =
    /// unlimited here); counted separately from other listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_rate_per_address: Option<u32>,
    /// `limits.connection_burst_per_address` for this listener; at least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_burst_per_address: Option<u32>,
    /// `limits.client_message_rate` for clients of this listener (0 =
    /// unlimited here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_rate: Option<u32>,
    /// `limits.client_byte_rate` for clients of this listener (0 =
    /// unlimited here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_byte_rate: Option<u64>,
    /// `tls` and `wss`: the certificate chain (PEM, server certificate
    /// first). Required for those kinds, refused for the others. Reloaded on
    /// SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// `tls` and `wss`: the certificate's private key (PEM). Required for
    /// those kinds, refused for the others. Reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// `tls` and `wss`: CA certificates (PEM) that client certificates are
    /// verified against; `None` asks clients for no certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// `tls` and `wss`: refuse clients without a valid certificate. Needs
    /// `client_ca_file`.
    #[serde(skip_serializing_if = "is_false")]
    pub require_client_cert: bool,
    /// `tls` and `wss`: the client certificate's subject common name (CN) is
    /// the user name, and the certificate replaces the password check. Needs
    /// `require_client_cert`.
    #[serde(skip_serializing_if = "is_false")]
    pub use_subject_as_username: bool,
    /// `ws` and `wss`: the HTTP path clients upgrade on; `None` means
    /// [`DEFAULT_WS_PATH`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `ws` and `wss`: the web origins (`https://app.example`) whose pages
    /// may connect; an upgrade with another `Origin` header is answered 403.
    /// Empty: every origin (MQTT authenticates in CONNECT, not with
    /// cookies; see the README).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl ListenerConfig {
    /// A plain TCP listener on `address` with no name and no own cap.
    pub fn tcp(address: SocketAddr) -> Self {
        Self {
            kind: ListenerKind::Tcp,
            address,
            ..Self::default()
        }
    }

    /// The WebSocket path: `path`, or [`DEFAULT_WS_PATH`].
    pub fn ws_path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_WS_PATH)
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            kind: DEFAULT_LISTENER_KIND,
            address: DEFAULT_LISTENER_ADDRESS,
            name: None,
            max_connections: None,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            connection_rate_per_address: None,
            connection_burst_per_address: None,
            client_message_rate: None,
            client_byte_rate: None,
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            require_client_cert: DEFAULT_REQUIRE_CLIENT_CERT,
            use_subject_as_username: DEFAULT_USE_SUBJECT_AS_USERNAME,
            path: None,
            allowed_origins: Vec::new(),
        }
    }
}

/// `[limits]`: the bounds that keep one client, or many, from exhausting the
/// broker. What the server does at each bound is documented in the server
/// crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitsConfig {
    /// Connections across all listeners; at least 1.
    pub max_connections: usize,
    /// Largest packet accepted, in bytes, fixed header included; advertised
    /// to v5 clients as Maximum Packet Size. [`MIN_PACKET_SIZE`] ..=
    /// [`MQTT_MAX_PACKET_SIZE`].
    pub max_packet_size: u32,
    /// Seconds a new connection has to send CONNECT before it is closed.
    /// 1 ..= [`MAX_CONNECT_TIMEOUT_SECS`].
    pub connect_timeout_secs: u64,
    /// Milliseconds a plain TCP connection must be idle (nothing to read,
    /// write or store) before it parks: its task, buffers and tokio socket
    /// registration are released until its socket, a delivery, a close order
    /// or its keep alive needs it. 0 = never park. At most
    /// [`MAX_PARK_IDLE_AFTER_MS`].
    pub park_idle_after_ms: u64,
    /// Unacknowledged QoS 1/2 messages per direction: advertised to v5 clients
    /// as Receive Maximum, and the cap on the server's own outbound window.
    /// 1 ..= 65535 (Receive Maximum 0 is a protocol error).
    pub max_inflight: u16,
    /// Messages queued per session (offline, or behind the in-flight window).
    pub max_queued_messages: usize,
    /// Bytes queued per session; at least `max_packet_size` so that any
    /// accepted message fits an empty queue.
    pub max_queued_bytes: usize,
    /// Longest topic name or filter, in bytes. 1 ..= 65535.
    pub max_topic_length: u16,
    /// Most `/`-separated levels in a topic name or filter; at least 1.
    pub max_topic_levels: usize,
    /// Subscriptions one client may hold at once; at least 1.
    pub max_subscriptions_per_client: usize,
    /// Retained messages held across all topics; at least 1 (turn retained
    /// messages off with `mqtt.retain_available = false`).
    pub max_retained_messages: usize,
    /// Bytes of retained messages held; at least `max_packet_size` so that any
    /// accepted message fits an empty store.
    pub max_retained_bytes: usize,
    /// Longest client identifier, in bytes. [`MIN_CLIENT_ID_LENGTH`] ..= 65535.
    pub max_client_id_length: u16,
    /// Retained messages delivered in answer to one SUBSCRIBE; at least 1.
    pub max_retained_per_subscribe: usize,
    /// New connections per second from one source address (IPv6: one /64),
    /// over all listeners; 0 = unlimited. Beyond it sockets are closed at once.
    pub connection_rate_per_address: u32,
    /// Connections one source address may open at once before its rate
    /// applies; at least 1.
    pub connection_burst_per_address: u32,
    /// PUBLISH packets per second one client may send (a burst of one
    /// second's worth); 0 = unlimited. Beyond it the broker stops reading
    /// from the client until it is back within the rate.
    pub client_message_rate: u32,
    /// Bytes per second one client may send (a burst of one second's worth);
    /// 0 = unlimited. Enforced like `client_message_rate`.
    pub client_byte_rate: u64,
    /// Bytes queued across all sessions; 0 = unlimited, otherwise at least
    /// `max_queued_bytes`. Offline sessions stop getting new messages at
    /// three quarters of it, QoS 0 for connected ones at seven eighths.
    pub max_queued_bytes_total: usize,
}

impl LimitsConfig {
    /// `connect_timeout_secs` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// `park_idle_after_ms` as a duration; `None` when parking is off.
    pub fn park_idle_after(&self) -> Option<Duration> {
        (self.park_idle_after_ms > 0).then(|| Duration::from_millis(self.park_idle_after_ms))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            park_idle_after_ms: DEFAULT_PARK_IDLE_AFTER_MS,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_topic_length: DEFAULT_MAX_TOPIC_LENGTH,
            max_topic_levels: DEFAULT_MAX_TOPIC_LEVELS,
            max_subscriptions_per_client: DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
            max_retained_messages: DEFAULT_MAX_RETAINED_MESSAGES,
            max_retained_bytes: DEFAULT_MAX_RETAINED_BYTES,
            max_client_id_length: DEFAULT_MAX_CLIENT_ID_LENGTH,
            max_retained_per_subscribe: DEFAULT_MAX_RETAINED_PER_SUBSCRIBE,
            connection_rate_per_address: DEFAULT_CONNECTION_RATE_PER_ADDRESS,
            connection_burst_per_address: DEFAULT_CONNECTION_BURST_PER_ADDRESS,
            client_message_rate: DEFAULT_CLIENT_MESSAGE_RATE,
            client_byte_rate: DEFAULT_CLIENT_BYTE_RATE,
            max_queued_bytes_total: DEFAULT_MAX_QUEUED_BYTES_TOTAL,
        }
    }
}

/// `[session]`: what the server grants to clients' session requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionConfig {
    /// Cap on the session expiry a client asks for, in seconds; a v5 client
    /// asking more is told the cap in CONNACK. 0 ends every session at
    /// disconnect.
    pub max_session_expiry_secs: u32,
    /// Whether QoS 0 messages are queued for disconnected sessions.
    pub queue_qos0_offline: bool,
    /// Cap on the keep alive a client asks for, in seconds; 0 = no cap. A v5
    /// client asking more (or 0) is told the cap as Server Keep Alive.
    pub max_keep_alive_secs: u16,
    /// Topic aliases accepted from each client (v5 Topic Alias Maximum);
    /// 0 disables them.
    pub topic_alias_maximum: u16,
    /// Whether a client may connect with an empty client identifier and be
    /// assigned one.
    pub allow_zero_length_client_id: bool,
}

impl SessionConfig {
    /// The keep alive cap, `None` when uncapped.
    pub fn max_keep_alive(&self) -> Option<Duration> {
        (self.max_keep_alive_secs != 0)
            .then(|| Duration::from_secs(u64::from(self.max_keep_alive_secs)))
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_session_expiry_secs: DEFAULT_MAX_SESSION_EXPIRY_SECS,
            queue_qos0_offline: DEFAULT_QUEUE_QOS0_OFFLINE,
            max_keep_alive_secs: DEFAULT_MAX_KEEP_ALIVE_SECS,
            topic_alias_maximum: DEFAULT_TOPIC_ALIAS_MAXIMUM,
            allow_zero_length_client_id: DEFAULT_ALLOW_ZERO_LENGTH_CLIENT_ID,
        }
    }
}

/// `[mqtt]`: optional protocol features, advertised to v5 clients in CONNACK
/// and enforced for all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MqttConfig {
    /// Highest QoS granted; 0 ..= 2.
    pub maximum_qos: u8,
    /// Whether retained messages are stored.
    pub retain_available: bool,
    /// Whether filters may contain `+` and `#`.
    pub wildcard_subscriptions: bool,
    /// Whether `$share/` subscriptions are accepted.
    pub shared_subscriptions: bool,
    /// Whether v5 Subscription Identifiers are accepted.
    pub subscription_identifiers: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            maximum_qos: DEFAULT_MAXIMUM_QOS,
            retain_available: DEFAULT_RETAIN_AVAILABLE,
            wildcard_subscriptions: DEFAULT_WILDCARD_SUBSCRIPTIONS,
            shared_subscriptions: DEFAULT_SHARED_SUBSCRIPTIONS,
            subscription_identifiers: DEFAULT_SUBSCRIPTION_IDENTIFIERS,
        }
    }
}

/// `[auth]`: who may connect, and what they may do. The formats of the two
/// files and the rules for anonymous clients are documented in the
/// `switchboard-auth` crate and the README.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// `user:argon2id-hash` lines (written by `switchboard passwd`); `None`
    /// checks no passwords. Relative paths are relative to the working
    /// directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The access control list; `None` allows every client everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect. `None`: only on
    /// loopback listeners. A listener on any other address needs a
    /// `password_file`, or this set to `true` on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Failed logins from one address (IPv6: one /64) before its further
    /// CONNECTs are delayed; 0 turns throttling off.
    pub failed_login_limit: u32,
    /// An address is forgotten this many seconds after its last failure.
    pub failed_login_window_secs: u64,
    /// The first delay, in seconds; doubles with each further failure.
    pub failed_login_delay_secs: u64,
    /// The longest delay, in seconds.
    pub failed_login_max_delay_secs: u64,
    /// Addresses tracked at once.
    pub failed_login_max_addresses: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            password_file: None,
            acl_file: None,
            allow_anonymous: None,
            failed_login_limit: DEFAULT_FAILED_LOGIN_LIMIT,
            failed_login_window_secs: DEFAULT_FAILED_LOGIN_WINDOW_SECS,
            failed_login_delay_secs: DEFAULT_FAILED_LOGIN_DELAY_SECS,
            failed_login_max_delay_secs: DEFAULT_FAILED_LOGIN_MAX_DELAY_SECS,
            failed_login_max_addresses: DEFAULT_FAILED_LOGIN_MAX_ADDRESSES,
        }
    }
}

/// `[http]`: the web console, the JSON API, Prometheus metrics and the
/// health probes, on one HTTP listener. Who may use them is described in
/// the `switchboard-console` crate and the README.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpConfig {
    /// Whether the HTTP listener runs at all.
    pub enabled: bool,
    /// An IP address and port. Any address but loopback needs credentials
    /// (`tokens`, `token_file` or the admin user).
    pub address: SocketAddr,
    /// Whether requests without credentials are served. `None`: only on a
    /// loopback address; `true` is refused on any other.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// API tokens (`Authorization: Bearer TOKEN`), each at least
    /// [`MIN_HTTP_TOKEN_LENGTH`] characters without white space.
    pub tokens: Vec<String>,
    /// More tokens, one per line, read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The admin user of the console's login form and HTTP basic auth.
    /// Without `admin_password_hash`, its password is its entry in
    /// `[auth] password_file` (which must then be set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_user: Option<String>,
    /// The admin's password as an argon2id PHC string (`$argon2id$v=19$...`,
    /// as `switchboard passwd` writes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password_hash: Option<String>,
    /// PEM certificate chain: with `key_file`, the listener serves HTTPS
    /// only. Reloaded on SIGHUP, like the MQTT TLS listeners'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl HttpConfig {
    /// Whether the listener serves HTTPS (both files are set).
    pub fn uses_tls(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Whether this section configures a credential (a token, a token file
    /// or the admin user with a hash). An admin user whose password is in
    /// `[auth] password_file` is one too, which this section alone cannot
    /// tell.
    pub fn has_credentials(&self) -> bool {
        !self.tokens.is_empty()
            || self.token_file.is_some()
            || (self.admin_user.is_some() && self.admin_password_hash.is_some())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_HTTP_ENABLED,
            address: DEFAULT_HTTP_ADDRESS,
            allow_anonymous: None,
            tokens: Vec::new(),
            token_file: None,
            admin_user: None,
            admin_password_hash: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// The broker's whole configuration, fully resolved: every layer applied and
/// every value validated (when it came from [`Config::load`] or
/// [`Config::from_toml_str`]).
///
/// Serializes to the same TOML it is read from, so the binary can print the
/// effective configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Where sessions and retained messages are stored.
    pub data_dir: PathBuf,
    /// How hard the store works to keep data across a crash.
    pub durability: Durability,
    /// Seconds between `$SYS` topic updates; 0 disables them.
    /// 0 ..= [`MAX_SYS_INTERVAL_SECS`].
    pub sys_interval_secs: u64,
    /// A tracing filter: a level (`info`) or comma-separated `target=level`
    /// directives (`info,switchboard_server=debug`).
    pub log_level: String,
    /// The `[[listener]]` entries; never empty after validation.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[http]`.
    pub http: HttpConfig,
}

impl Config {
    /// `sys_interval_secs` as a duration, `None` when `$SYS` is disabled.
    pub fn sys_interval(&self) -> Option<Duration> {
        (self.sys_interval_secs != 0).then(|| Duration::from_secs(self.sys_interval_secs))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            durability: DEFAULT_DURABILITY,
            sys_interval_secs: DEFAULT_SYS_INTERVAL_SECS,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            listeners: vec![ListenerConfig::default()],
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            mqtt: MqttConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_listener_is_tcp_on_loopback_1883() {
        let config = Config::default();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].kind, ListenerKind::Tcp);
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:1883".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn choices_round_trip_through_strings() {
        for (name, kind) in ListenerKind::CHOICES {
            assert_eq!(name.parse::<ListenerKind>().unwrap(), *kind);
            assert_eq!(kind.to_string(), *name);
        }
        for (name, durability) in Durability::CHOICES {
            assert_eq!(name.parse::<Durability>().unwrap(), *durability);
            assert_eq!(durability.to_string(), *name);
        }
        let error = "fast".parse::<Durability>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"fast\" is not valid: expected one of \"sync\", \"periodic\", \"memory\""
        );
    }

    #[test]
    fn duration_helpers() {
        let mut config = Config::default();
        assert_eq!(config.limits.connect_timeout(), Duration::from_secs(10));
        assert_eq!(config.sys_interval(), Some(Duration::from_secs(10)));
        assert_eq!(config.session.max_keep_alive(), None);
        config.sys_interval_secs = 0;
        config.session.max_keep_alive_secs = 60;
        assert_eq!(config.sys_interval(), None);
        assert_eq!(
            config.session.max_keep_alive(),
            Some(Duration::from_secs(60))
        );
    }
}
