//! What the client sends in CONNECT and how it bounds itself.

use std::time::Duration;

use bytes::Bytes;
use switchboard_codec::{Connect, ConnectProperties, ProtocolVersion, Will, WillProperties};

/// The IANA port for MQTT over plain TCP.
pub const DEFAULT_PORT: u16 = 1883;

/// 60 s: the usual default of MQTT clients. A dead link is noticed within
/// about 1.5 keep-alive periods, and a ping a minute costs nothing.
pub const DEFAULT_KEEP_ALIVE_SECS: u16 = 60;

/// 10 s for TCP connect plus CONNECT/CONNACK: a healthy broker answers in
/// milliseconds, and a command-line user should not wait for the OS default
/// (minutes) to learn that a host is unreachable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// 16 MiB: the largest packet the client accepts. It is announced to MQTT 5
/// servers as Maximum Packet Size so they never send more (`[MQTT-3.1.2-24]`);
/// a 3.x server that sends more gets the connection closed. It bounds the
/// memory one incoming packet can make us allocate.
pub const DEFAULT_MAXIMUM_PACKET_SIZE: u32 = 16 * 1024 * 1024;

/// 64 requests and 64 undelivered messages: enough to keep the socket busy
/// between calls, small enough that a slow reader applies back-pressure to the
/// server (the client stops reading the socket) instead of growing a queue.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 64;

/// Everything needed to open one MQTT connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Host name or IP address of the server.
    pub host: String,
    pub port: u16,
    /// Empty asks the server to assign one (MQTT 5 returns it in CONNACK;
    /// 3.1.1 allows this only with a clean session).
    pub client_id: String,
    /// `V3_1`, `V3_1_1` or `V5`.
    pub version: ProtocolVersion,
    /// "Clean Session" in 3.x, "Clean Start" in 5.
    pub clean_start: bool,
    /// Seconds between packets before the client sends PINGREQ; 0 turns keep alive off.
    pub keep_alive_secs: u16,
    /// MQTT 5 Session Expiry Interval in seconds; `None` means 0 (the session
    /// ends with the connection). `u32::MAX` never expires. Ignored for 3.x.
    pub session_expiry_secs: Option<u32>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<Will>,
    /// Other MQTT 5 CONNECT properties (user properties, receive maximum,
    /// topic alias maximum, ...). Its `session_expiry_interval` is ignored in
    /// favour of `session_expiry_secs`; its `maximum_packet_size`, when unset,
    /// is filled from `maximum_packet_size` below.
    pub properties: ConnectProperties,
    /// Bound on TCP connect plus the CONNECT/CONNACK exchange.
    pub connect_timeout: Duration,
    /// The largest packet accepted from the server (see [`DEFAULT_MAXIMUM_PACKET_SIZE`]).
    pub maximum_packet_size: u32,
    /// Capacity of the request queue and of the incoming-message queue.
    pub channel_capacity: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            host: "localhost".to_owned(),
            port: DEFAULT_PORT,
            client_id: String::new(),
            version: ProtocolVersion::V5,
            clean_start: true,
            keep_alive_secs: DEFAULT_KEEP_ALIVE_SECS,
            session_expiry_secs: None,
            username: None,
            password: None,
            will: None,
            properties: ConnectProperties::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            maximum_packet_size: DEFAULT_MAXIMUM_PACKET_SIZE,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
        }
    }
}

impl ClientOptions {
    /// Options for `host:port` with every other field at its default.
    pub fn new(host: impl Into<String>, port: u16) -> ClientOptions {
        ClientOptions {
            host: host.into(),
            port,
            ..ClientOptions::default()
        }
    }

    /// `host:port`, with brackets around an IPv6 address, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The largest packet the decoder accepts: what we announce, or our own bound.
    pub(crate) fn receive_packet_limit(&self) -> u32 {
        if self.version.is_v5() {
            self.properties
                .maximum_packet_size
                .unwrap_or(self.maximum_packet_size)
        } else {
            self.maximum_packet_size
        }
    }

    /// The CONNECT packet these options describe. Properties are dropped for
    /// 3.x so that the packet value says exactly what goes on the wire.
    pub fn connect_packet(&self) -> Connect {
        let (properties, will) = if self.version.is_v5() {
            let mut properties = self.properties.clone();
            properties.session_expiry_interval = self.session_expiry_secs.filter(|secs| *secs > 0);
            properties.maximum_packet_size = Some(self.receive_packet_limit());
            (properties, self.will.clone())
        } else {
            let will = self.will.clone().map(|will| Will {
                properties: WillProperties::default(),
                ..will
            });
            (ConnectProperties::default(), will)
        };
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive_secs,
            client_id: self.client_id.clone(),
            will,
            username: self.username.clone(),
            password: self.password.clone(),
            properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_connect_announces_session_expiry_and_packet_limit() {
        let options = ClientOptions {
            session_expiry_secs: Some(300),
            ..ClientOptions::new("broker", 1883)
        };
        let connect = options.connect_packet();
        assert_eq!(connect.properties.session_expiry_interval, Some(300));
        assert_eq!(
            connect.properties.maximum_packet_size,
            Some(DEFAULT_MAXIMUM_PACKET_SIZE)
        );
    }

    #[test]
    fn v3_connect_has_no_properties() {
        let mut options = ClientOptions {
            version: ProtocolVersion::V3_1_1,
            session_expiry_secs: Some(300),
            ..ClientOptions::default()
        };
        options
            .properties
            .user_properties
            .push(("a".into(), "b".into()));
        assert_eq!(
            options.connect_packet().properties,
            ConnectProperties::default()
        );
    }

    #[test]
    fn ipv6_address_is_bracketed() {
        assert_eq!(ClientOptions::new("::1", 1883).address(), "[::1]:1883");
        assert_eq!(ClientOptions::new("localhost", 1).address(), "localhost:1");
    }
}
