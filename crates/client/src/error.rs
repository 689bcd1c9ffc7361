//! The one error type of the client library.
//!
//! Messages are one self-contained line (no error chain), because the
//! command-line tools print them as they are.
//!
//! `ClientError` is `Clone` because one failure (the connection dropped) has
//! to be reported to every operation that was waiting on it, and to whoever
//! asks later through [`crate::Client::close_reason`]. I/O errors are kept
//! behind an `Arc` for that reason.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use switchboard_codec::{DecodeError, EncodeError, QoS, ReasonCode};

/// Why a client operation or the whole connection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("{}", describe_connect_failure(address, error))]
    Connect {
        address: String,
        error: Arc<io::Error>,
    },
    /// TCP connect plus CONNECT/CONNACK did not finish in time.
    #[error("timed out after {} s connecting to {address}", after.as_secs_f32())]
    ConnectTimeout { address: String, after: Duration },
    /// The server answered CONNECT with a failure reason code (3.2.2.2).
    #[error("server refused the connection: {}", describe_reason(*reason_code, reason_string.as_deref()))]
    ConnectionRefused {
        reason_code: ReasonCode,
        reason_string: Option<String>,
    },
    /// The server sent DISCONNECT (MQTT 5).
    #[error("server disconnected: {}", describe_reason(*reason_code, reason_string.as_deref()))]
    ServerDisconnected {
        reason_code: ReasonCode,
        reason_string: Option<String>,
        server_reference: Option<String>,
    },
    /// The server closed the TCP connection without a DISCONNECT.
    #[error("the server closed the connection")]
    ConnectionClosed,
    /// Reading or writing the socket failed.
    #[error("connection error: {0}")]
    Io(Arc<io::Error>),
    /// The server sent bytes that are not a valid MQTT packet.
    #[error("invalid packet from server: {0}")]
    Decode(DecodeError),
    /// A packet could not be encoded (for example a string longer than
    /// 65,535 bytes, or a topic name with a wildcard).
    #[error("cannot send: {0}")]
    Encode(EncodeError),
    /// The server broke the protocol in a way the decoder cannot see
    /// (wrong packet at this point, unknown topic alias, ...). `reason_code`
    /// is what the client sends in its DISCONNECT (MQTT 5) before closing.
    #[error("protocol error from server: {message}")]
    Protocol {
        reason_code: ReasonCode,
        message: String,
    },
    /// No PINGRESP came back within one keep-alive period of our PINGREQ.
    #[error("keep alive timeout: no PINGRESP from the server within {} s", .0.as_secs())]
    KeepAliveTimeout(Duration),
    /// The packet is larger than the server's Maximum Packet Size (`[MQTT-3.1.2-24]`).
    #[error(
        "{packet} of {size} bytes exceeds the server's maximum packet size of {maximum} bytes"
    )]
    PacketTooLarge {
        packet: &'static str,
        size: usize,
        maximum: u32,
    },
    /// The server's CONNACK said it does not accept this QoS (`[MQTT-3.2.2-11]`).
    #[error("the server accepts at most QoS {}, not QoS {}", maximum.as_u8(), requested.as_u8())]
    QosNotSupported { requested: QoS, maximum: QoS },
    /// The server's CONNACK said it does not keep retained messages (`[MQTT-3.2.2-14]`).
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    /// The arguments of an operation are not valid MQTT.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The client disconnected (or was dropped) before the operation finished.
    #[error("the client is disconnected")]
    Disconnected,
}

impl ClientError {
    pub(crate) fn io(error: io::Error) -> ClientError {
        ClientError::Io(Arc::new(error))
    }

    pub(crate) fn protocol(reason_code: ReasonCode, message: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            reason_code,
            message: message.into(),
        }
    }

    /// The reason code the server gave, when the error came from a CONNACK or DISCONNECT.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            ClientError::ConnectionRefused { reason_code, .. }
            | ClientError::ServerDisconnected { reason_code, .. } => Some(*reason_code),
            _ => None,
        }
    }
}

fn describe_connect_failure(address: &str, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => format!("connection refused: {address}"),
        _ => format!("cannot connect to {address}: {error}"),
    }
}

/// `0x87 Not authorized (reason string)`, for messages meant for people.
pub fn describe_reason(reason_code: ReasonCode, reason_string: Option<&str>) -> String {
    match reason_string {
        Some(text) if !text.is_empty() => {
            format!("{reason_code} {} ({text})", reason_name(reason_code))
        }
        _ => format!("{reason_code} {}", reason_name(reason_code)),
    }
}

/// The name the MQTT 5 specification gives a reason code (2.4).
///
/// Codes below 0x80 mean different things in different packets (0x00 is
/// "Success", "Normal disconnection" and "Granted QoS 0"); this returns the
/// most common meaning.
pub fn reason_name(reason_code: ReasonCode) -> &'static str {
    match reason_code.0 {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x11 => "No subscription existed",
        0x18 => "Continue authentication",
        0x19 => "Re-authenticate",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription Identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "Unknown reason code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_refused_reads_like_the_shell() {
        let error = ClientError::Connect {
            address: "127.0.0.1:1883".to_owned(),
            error: Arc::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(error.to_string(), "connection refused: 127.0.0.1:1883");
    }

    #[test]
    fn server_disconnect_names_code_and_reason_string() {
        let error = ClientError::ServerDisconnected {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            reason_string: Some("maintenance".to_owned()),
            server_reference: None,
        };
        assert_eq!(
            error.to_string(),
            "server disconnected: 0x8B Server shutting down (maintenance)"
        );
        assert_eq!(error.reason_code(), Some(ReasonCode::SERVER_SHUTTING_DOWN));
    }
}
