//! A small async MQTT 3.1.1/5.0 client over tokio, and the `pub`, `sub` and
//! `req` command-line tools built on it.
//!
//! The client is for tools and tests (and the benchmark), not a full-featured
//! SDK: one TCP connection per [`Client`], no automatic reconnect (the
//! command-line tools reconnect by connecting again), no enhanced
//! authentication (AUTH). What it does, it does by the specification: QoS 1
//! and 2 flows in both directions, exactly-once delivery of incoming QoS 2,
//! keep alive, the server's Receive Maximum, Maximum Packet Size, Maximum QoS
//! and Retain Available, and incoming topic aliases.
//!
//! ```no_run
//! # async fn example() -> Result<(), switchboard_client::ClientError> {
//! use switchboard_client::{Client, ClientOptions};
//! use switchboard_client::codec::{Publish, QoS, ReasonCode};
//!
//! let (client, _connack) = Client::connect(ClientOptions::new("localhost", 1883)).await?;
//! let outcome = client
//!     .publish(Publish {
//!         topic: "greetings".to_owned(),
//!         qos: QoS::AtLeastOnce,
//!         payload: "hello".into(),
//!         ..Publish::default()
//!     })
//!     .await?;
//! assert!(!outcome.reason_code.is_error());
//! client.disconnect(ReasonCode::NORMAL_DISCONNECTION).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Design: one background task owns the socket (see `connection.rs`); the
//! [`Client`] talks to it through bounded channels with a oneshot reply per
//! request, and the task allocates packet identifiers.

pub mod cli;
mod client;
mod connection;
mod error;
mod options;

pub use client::{Client, ClientHandle, PublishOutcome};
pub use error::{describe_reason, reason_name, ClientError};
pub use options::{
    ClientOptions, DEFAULT_CHANNEL_CAPACITY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE_SECS,
    DEFAULT_MAXIMUM_PACKET_SIZE, DEFAULT_PORT,
};
/// The packet types the client speaks in.
pub use switchboard_codec as codec;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
