//! The handle the application holds.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use switchboard_codec::{
    encode, Ack, ConnAck, Decoder, Disconnect, Packet, Publish, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe, UserProperty,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::connection::{Command, Connection, ServerLimits, Setup, READ_CHUNK};
use crate::{ClientError, ClientOptions};

/// How a publish ended. For QoS 0 it is always success once the packet is
/// queued for the socket; for QoS 1 it is the PUBACK; for QoS 2 the PUBCOMP,
/// or the PUBREC when that carried a failure (which ends the flow).
///
/// A failure reason code (0x80 and above, for example 0x87 Not authorized) is
/// not a [`ClientError`]: the connection is fine and the caller decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishOutcome {
    pub reason_code: ReasonCode,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}

impl From<Ack> for PublishOutcome {
    fn from(ack: Ack) -> PublishOutcome {
        PublishOutcome {
            reason_code: ack.reason_code,
            reason_string: ack.reason_string,
            user_properties: ack.user_properties,
        }
    }
}

/// A connected MQTT client.
///
/// Requests (`publish`, `subscribe`, ...) take `&self` and may run
/// concurrently, from clones of [`Client::handle`] too; incoming messages come
/// from [`Client::next_message`]. Incoming QoS 1 messages are acknowledged
/// with PUBACK and QoS 2 messages with PUBREC/PUBCOMP automatically, and a
/// QoS 2 message is delivered once even when the server retransmits it.
///
/// Dropping the `Client` and every handle closes the socket *without*
/// DISCONNECT, which the server treats like a network failure (the will
/// message is published). Call [`Client::disconnect`] for a clean end.
#[derive(Debug)]
pub struct Client {
    handle: ClientHandle,
    incoming: mpsc::Receiver<Publish>,
    client_id: String,
}

/// A cloneable sender of requests to one connection, for publishing from
/// several tasks while another reads [`Client::next_message`].
#[derive(Debug, Clone)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    close_reason: Arc<OnceLock<ClientError>>,
}

impl Client {
    /// Opens a TCP connection to `options.host:options.port`, sends CONNECT
    /// and waits for CONNACK, all within `options.connect_timeout`.
    ///
    /// Fails with [`ClientError::ConnectionRefused`] when the CONNACK carries
    /// a failure reason code; the returned [`ConnAck`] is always a success
    /// and says whether a session was present.
    pub async fn connect(options: ClientOptions) -> Result<(Client, ConnAck), ClientError> {
        let address = options.address();
        let deadline = Instant::now() + options.connect_timeout;
        let connecting = TcpStream::connect((options.host.as_str(), options.port));
        let stream = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => {
                return Err(ClientError::ConnectTimeout {
                    address,
                    after: options.connect_timeout,
                })
            }
            Ok(Err(error)) => {
                return Err(ClientError::Connect {
                    address,
                    error: Arc::new(error),
                })
            }
            Ok(Ok(stream)) => stream,
        };
        // Acknowledgements are small and latency-bound.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        Client::handshake_until(stream, options, deadline).await
    }

    /// Like [`Client::connect`] over a stream the caller opened (a TLS
    /// stream, an in-memory pipe in tests).
    pub async fn connect_with_stream<S>(
        stream: S,
        options: ClientOptions,
    ) -> Result<(Client, ConnAck), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let deadline = Instant::now() + options.connect_timeout;
        Client::handshake_until(stream, options, deadline).await
    }

    async fn handshake_until<S>(
        stream: S,
        options: ClientOptions,
        deadline: Instant,
    ) -> Result<(Client, ConnAck), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let address = options.address();
        let after = options.connect_timeout;
        match tokio::time::timeout_at(deadline, Client::handshake(stream, options)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::ConnectTimeout { address, after }),
        }
    }

    async fn handshake<S>(
        stream: S,
        options: ClientOptions,
    ) -> Result<(Client, ConnAck), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let connect = Packet::Connect(Box::new(options.connect_packet()));
        let mut out = BytesMut::new();
        encode(&connect, options.version, &mut out).map_err(ClientError::Encode)?;
        writer.write_all(&out).await.map_err(ClientError::io)?;
        writer.flush().await.map_err(ClientError::io)?;

        let mut decoder = Decoder::client(options.version, options.receive_packet_limit());
        let mut read_buf = BytesMut::with_capacity(READ_CHUNK);
        let connack = loop {
            let packet = decoder.decode(&mut read_buf).map_err(ClientError::Decode)?;
            match packet {
                Some(Packet::ConnAck(connack)) => break connack,
                Some(Packet::Disconnect(disconnect)) => {
                    return Err(ClientError::ServerDisconnected {
                        reason_code: disconnect.reason_code,
                        reason_string: disconnect.reason_string,
                        server_reference: disconnect.server_reference,
                    })
                }
                Some(Packet::Auth(_)) => {
                    return Err(ClientError::protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        "AUTH received, but this client does not do enhanced authentication",
                    ))
                }
                Some(other) => {
                    return Err(ClientError::protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        format!("expected CONNACK, received {}", other.name()),
                    ))
                }
                None => {
                    read_buf.reserve(READ_CHUNK);
                    if reader
                        .read_buf(&mut read_buf)
                        .await
                        .map_err(ClientError::io)?
                        == 0
                    {
                        return Err(ClientError::ConnectionClosed);
                    }
                }
            }
        };
        if connack.reason_code.is_error() {
            return Err(ClientError::ConnectionRefused {
                reason_code: connack.reason_code,
                reason_string: connack.properties.reason_string,
            });
        }

        // [MQTT-3.2.2-21]: the server's keep alive wins.
        let keep_alive_secs = connack
            .properties
            .server_keep_alive
            .unwrap_or(options.keep_alive_secs);
        let keep_alive =
            (keep_alive_secs > 0).then(|| Duration::from_secs(u64::from(keep_alive_secs)));
        let setup = Setup {
            version: options.version,
            decoder,
            read_buf,
            keep_alive,
            limits: ServerLimits::from_connack(&connack),
            receive_maximum: options.properties.receive_maximum.unwrap_or(u16::MAX),
            topic_alias_maximum: if options.version.is_v5() {
                options.properties.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            queue_capacity: options.channel_capacity,
        };
        let capacity = options.channel_capacity.max(1);
        let (command_sender, command_receiver) = mpsc::channel(capacity);
        let (incoming_sender, incoming_receiver) = mpsc::channel(capacity);
        let close_reason = Arc::new(OnceLock::new());
        let connection = Connection::new(
            reader,
            writer,
            setup,
            command_receiver,
            incoming_sender,
            Arc::clone(&close_reason),
        );
        tokio::spawn(connection.run());

        let client_id = connack
            .properties
            .assigned_client_identifier
            .clone()
            .unwrap_or(options.client_id);
        let client = Client {
            handle: ClientHandle {
                commands: command_sender,
                close_reason,
            },
            incoming: incoming_receiver,
            client_id,
        };
        Ok((client, connack))
    }

    /// The client identifier in use: ours, or the one the server assigned.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A cloneable handle for sending requests from other tasks.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }

    /// See [`ClientHandle::publish`].
    pub async fn publish(&self, publish: Publish) -> Result<PublishOutcome, ClientError> {
        self.handle.publish(publish).await
    }

    /// See [`ClientHandle::subscribe`].
    pub async fn subscribe(&self, subscribe: Subscribe) -> Result<SubAck, ClientError> {
        self.handle.subscribe(subscribe).await
    }

    /// See [`ClientHandle::unsubscribe`].
    pub async fn unsubscribe(&self, unsubscribe: Unsubscribe) -> Result<UnsubAck, ClientError> {
        self.handle.unsubscribe(unsubscribe).await
    }

    /// See [`ClientHandle::disconnect`].
    pub async fn disconnect(&self, reason_code: ReasonCode) -> Result<(), ClientError> {
        self.handle.disconnect(reason_code).await
    }

    /// See [`ClientHandle::disconnect_with`].
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), ClientError> {
        self.handle.disconnect_with(disconnect).await
    }

    /// The next PUBLISH from the server, in the order received; `None` once
    /// the connection has ended and every message received before that was
    /// returned. [`Client::close_reason`] then says why it ended.
    ///
    /// Messages are queued (at most `channel_capacity`) until read; while the
    /// queue is full the client stops reading the socket.
    pub async fn next_message(&mut self) -> Option<Publish> {
        self.incoming.recv().await
    }

    /// Why the connection ended, once it has: for example
    /// [`ClientError::ServerDisconnected`] with the server's reason code, or
    /// [`ClientError::Disconnected`] after [`Client::disconnect`].
    pub fn close_reason(&self) -> Option<ClientError> {
        self.handle.close_reason()
    }
}

impl ClientHandle {
    /// Publishes one message and waits until its QoS flow completes: queued
    /// for the socket (QoS 0), PUBACK (QoS 1) or PUBREC+PUBREL+PUBCOMP (QoS 2).
    /// `packet_id` and `dup` are set by the client. When the server's Receive
    /// Maximum is reached the publish waits for a free slot.
    pub async fn publish(&self, publish: Publish) -> Result<PublishOutcome, ClientError> {
        self.request(|reply| Command::Publish { publish, reply })
            .await
    }

    /// Subscribes and returns the SUBACK, whose reason codes (one per filter)
    /// say which QoS was granted or why a filter was refused. `packet_id` is
    /// set by the client.
    pub async fn subscribe(&self, subscribe: Subscribe) -> Result<SubAck, ClientError> {
        self.request(|reply| Command::Subscribe { subscribe, reply })
            .await
    }

    /// Unsubscribes and returns the UNSUBACK. `packet_id` is set by the client.
    pub async fn unsubscribe(&self, unsubscribe: Unsubscribe) -> Result<UnsubAck, ClientError> {
        self.request(|reply| Command::Unsubscribe { unsubscribe, reply })
            .await
    }

    /// Sends DISCONNECT with this reason code (MQTT 5; 3.x has none) after
    /// everything queued before it, and closes the connection. Requests still
    /// waiting for an answer fail with [`ClientError::Disconnected`].
    pub async fn disconnect(&self, reason_code: ReasonCode) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::with_reason(reason_code))
            .await
    }

    /// Like [`ClientHandle::disconnect`] with a whole DISCONNECT packet, for
    /// example to change the session expiry interval on the way out.
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), ClientError> {
        self.request(|reply| Command::Disconnect { disconnect, reply })
            .await
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<ClientError> {
        self.close_reason.get().cloned()
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(command(reply)).await.is_err() {
            return Err(self.closed_error());
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.closed_error()),
        }
    }

    fn closed_error(&self) -> ClientError {
        self.close_reason().unwrap_or(ClientError::Disconnected)
    }
}
