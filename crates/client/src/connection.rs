//! The background task that owns the socket.
//!
//! One task per connection reads and writes the socket; the [`crate::Client`]
//! handle talks to it over a bounded request channel with a oneshot reply per
//! request, and receives PUBLISH packets over a bounded channel. Only this
//! task allocates packet identifiers, so they need no lock.
//!
//! Every wait is in one `select!`: reading, writing, taking requests,
//! handing messages to the application and the keep-alive timer. Writing goes
//! through `write_buf`, so a server that stops reading never stops us from
//! reading (no deadlock where both sides block in `write`).
//!
//! Bounds: at most `queue_capacity` undelivered messages (then the task stops
//! reading the socket, which pushes back on the server), at most
//! [`MAX_WRITE_BACKLOG`] bytes queued for writing before new requests and
//! reads wait, at most the server's Receive Maximum QoS 1/2 publishes in
//! flight (the rest wait in a queue of `queue_capacity`), and one packet of at
//! most the announced Maximum Packet Size in the read buffer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use switchboard_codec::{
    encode, Ack, ConnAck, Decoder, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{ClientError, PublishOutcome};

/// 256 KiB queued for writing: enough for many packets per system call;
/// beyond it the task stops taking requests and reading until the socket drains.
pub(crate) const MAX_WRITE_BACKLOG: usize = 256 * 1024;

/// How much room to make in the read buffer before each read.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// A local DISCONNECT is written within 5 s or the socket is dropped anyway:
/// the caller is leaving and must not hang on a server that stopped reading.
const DISCONNECT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// When the server broke the protocol we tell it why (MQTT 5) but wait at
/// most 1 s: the connection is being closed either way.
const ERROR_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Packet identifiers are 1..=65535 (`[MQTT-2.2.1-3]`).
const PACKET_ID_COUNT: usize = u16::MAX as usize;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A request from a [`crate::ClientHandle`] to the task.
pub(crate) enum Command {
    Publish {
        publish: Publish,
        reply: Reply<PublishOutcome>,
    },
    Subscribe {
        subscribe: Subscribe,
        reply: Reply<SubAck>,
    },
    Unsubscribe {
        unsubscribe: Unsubscribe,
        reply: Reply<UnsubAck>,
    },
    Disconnect {
        disconnect: Disconnect,
        reply: Reply<()>,
    },
}

impl Command {
    fn fail(self, error: ClientError) {
        // A dropped receiver means the caller stopped waiting; nothing to tell.
        match self {
            Command::Publish { reply, .. } => drop(reply.send(Err(error))),
            Command::Subscribe { reply, .. } => drop(reply.send(Err(error))),
            Command::Unsubscribe { reply, .. } => drop(reply.send(Err(error))),
            Command::Disconnect { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// What an outgoing packet identifier is waiting for.
enum Pending {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    PubAck(Reply<PublishOutcome>),
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    PubRec(Reply<PublishOutcome>),
    /// PUBREL sent, waiting for PUBCOMP.
    PubComp(Reply<PublishOutcome>),
    SubAck(Reply<SubAck>),
    UnsubAck(Reply<UnsubAck>),
}

impl Pending {
    fn expects(&self) -> &'static str {
        match self {
            Pending::PubAck(_) => "PUBACK",
            Pending::PubRec(_) => "PUBREC",
            Pending::PubComp(_) => "PUBCOMP",
            Pending::SubAck(_) => "SUBACK",
            Pending::UnsubAck(_) => "UNSUBACK",
        }
    }

    fn fail(self, error: ClientError) {
        match self {
            Pending::PubAck(reply) | Pending::PubRec(reply) | Pending::PubComp(reply) => {
                drop(reply.send(Err(error)));
            }
            Pending::SubAck(reply) => drop(reply.send(Err(error))),
            Pending::UnsubAck(reply) => drop(reply.send(Err(error))),
        }
    }
}

/// What the server allows us, from its CONNACK (3.2.2.3). 3.x servers send
/// no properties, so every limit is at its "no limit" default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerLimits {
    /// QoS 1/2 publishes we may have unacknowledged (`[MQTT-3.3.4-7]`).
    pub(crate) receive_maximum: u16,
    /// `None`: no limit beyond the protocol's.
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) maximum_qos: QoS,
    pub(crate) retain_available: bool,
    pub(crate) subscription_identifiers_available: bool,
}

impl ServerLimits {
    pub(crate) fn from_connack(connack: &ConnAck) -> ServerLimits {
        let properties = &connack.properties;
        ServerLimits {
            // 0 is a protocol error the decoder rejects; max(1) keeps us moving regardless.
            receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX).max(1),
            maximum_packet_size: properties.maximum_packet_size,
            maximum_qos: properties.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: properties.retain_available.unwrap_or(true),
            subscription_identifiers_available: properties
                .subscription_identifiers_available
                .unwrap_or(true),
        }
    }
}

/// Everything the task needs besides the socket and the channels.
pub(crate) struct Setup {
    pub(crate) version: ProtocolVersion,
    pub(crate) decoder: Decoder,
    /// Bytes read after CONNACK during the handshake.
    pub(crate) read_buf: BytesMut,
    /// `None` when keep alive is off.
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) limits: ServerLimits,
    /// Our Receive Maximum: QoS 2 messages the server may leave un-released.
    pub(crate) receive_maximum: u16,
    /// Our Topic Alias Maximum: 0 means the server must not use aliases.
    pub(crate) topic_alias_maximum: u16,
    pub(crate) queue_capacity: usize,
}

/// What woke the task up; handled after `select!` has released its borrows.
enum Event {
    Read(std::io::Result<usize>),
    Written(std::io::Result<usize>),
    Command(Option<Command>),
    Delivered,
    KeepAlive,
}

/// Why the task stopped without an error.
enum Stop {
    /// The application asked for DISCONNECT and it was written.
    Disconnected,
    /// Every handle was dropped.
    HandlesDropped,
}

pub(crate) struct Connection<R, W> {
    reader: R,
    writer: W,
    version: ProtocolVersion,
    decoder: Decoder,
    read_buf: BytesMut,
    write_buf: BytesMut,
    commands: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Publish>,
    /// Decoded messages not yet handed to the application; at most `queue_capacity`.
    deliveries: VecDeque<Publish>,
    /// Outgoing packet identifiers in use and what each waits for.
    pending: HashMap<u16, Pending>,
    next_packet_id: u16,
    /// QoS 1/2 publishes waiting for the server's Receive Maximum to allow them.
    waiting: VecDeque<(Publish, Reply<PublishOutcome>)>,
    /// QoS 1/2 publishes sent and not yet finished (counts against Receive Maximum).
    inflight_publishes: usize,
    limits: ServerLimits,
    /// Incoming QoS 2 packet identifiers delivered but not yet released by
    /// PUBREL: a retransmitted PUBLISH with one of these is acknowledged but
    /// not delivered again, which makes QoS 2 exactly-once (4.3.3).
    incoming_qos2: HashSet<u16>,
    receive_maximum: u16,
    topic_alias_maximum: u16,
    /// Incoming topic aliases, at most `topic_alias_maximum` entries.
    topic_aliases: HashMap<u16, String>,
    keep_alive: Option<Duration>,
    /// When the last packet was queued for sending: keep alive counts from here.
    last_sent: Instant,
    /// When our unanswered PINGREQ was sent.
    ping_sent_at: Option<Instant>,
    queue_capacity: usize,
    close_reason: Arc<OnceLock<ClientError>>,
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(crate) fn new(
        reader: R,
        writer: W,
        setup: Setup,
        commands: mpsc::Receiver<Command>,
        incoming: mpsc::Sender<Publish>,
        close_reason: Arc<OnceLock<ClientError>>,
    ) -> Connection<R, W> {
        Connection {
            reader,
            writer,
            version: setup.version,
            decoder: setup.decoder,
            read_buf: setup.read_buf,
            write_buf: BytesMut::new(),
            commands,
            incoming,
            deliveries: VecDeque::new(),
            pending: HashMap::new(),
            next_packet_id: 1,
            waiting: VecDeque::new(),
            inflight_publishes: 0,
            limits: setup.limits,
            incoming_qos2: HashSet::new(),
            receive_maximum: setup.receive_maximum.max(1),
            topic_alias_maximum: setup.topic_alias_maximum,
            topic_aliases: HashMap::new(),
            keep_alive: setup.keep_alive,
            last_sent: Instant::now(),
            ping_sent_at: None,
            queue_capacity: setup.queue_capacity.max(1),
            close_reason,
        }
    }

    /// Runs until the application disconnects, every handle is dropped, or
    /// the connection fails; then records why, fails everything still
    /// waiting with that reason, and hands over the messages already received.
    pub(crate) async fn run(mut self) {
        let reason = match self.drive().await {
            Ok(Stop::Disconnected | Stop::HandlesDropped) => ClientError::Disconnected,
            Err(error) => {
                self.disconnect_after(&error).await;
                error
            }
        };
        tracing::debug!(%reason, "MQTT connection closed");
        // Set before any reply is dropped: whoever sees a closed channel finds the reason.
        let _ = self.close_reason.set(reason.clone());
        for (_, pending) in self.pending.drain() {
            pending.fail(reason.clone());
        }
        for (_, reply) in self.waiting.drain(..) {
            drop(reply.send(Err(reason.clone())));
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            command.fail(reason.clone());
        }
        let Connection {
            reader,
            writer,
            deliveries,
            incoming,
            ..
        } = self;
        drop((reader, writer));
        for publish in deliveries {
            if incoming.send(publish).await.is_err() {
                break;
            }
        }
    }

    async fn drive(&mut self) -> Result<Stop, ClientError> {
        self.process_buffered()?;
        loop {
            let can_read = self.deliveries.len() < self.queue_capacity
                && self.write_buf.len() < MAX_WRITE_BACKLOG;
            let can_take_command = self.waiting.len() < self.queue_capacity
                && self.write_buf.len() < MAX_WRITE_BACKLOG
                && self.pending.len() < PACKET_ID_COUNT;
            let has_output = !self.write_buf.is_empty();
            let has_delivery = !self.deliveries.is_empty();
            let keep_alive_deadline = self.keep_alive_deadline();
            let keep_alive_timer =
                tokio::time::sleep_until(keep_alive_deadline.unwrap_or_else(far_future));
            if can_read {
                self.read_buf.reserve(READ_CHUNK);
            }

            let event = tokio::select! {
                read = self.reader.read_buf(&mut self.read_buf), if can_read => Event::Read(read),
                written = self.writer.write_buf(&mut self.write_buf), if has_output => {
                    Event::Written(written)
                }
                command = self.commands.recv(), if can_take_command => Event::Command(command),
                permit = self.incoming.reserve(), if has_delivery => {
                    match permit {
                        Ok(permit) => {
                            if let Some(publish) = self.deliveries.pop_front() {
                                permit.send(publish);
                            }
                        }
                        // Nobody reads messages any more: drop them rather than stall.
                        Err(_) => self.deliveries.clear(),
                    }
                    Event::Delivered
                }
                () = keep_alive_timer, if keep_alive_deadline.is_some() => Event::KeepAlive,
            };

            match event {
                Event::Read(read) => {
                    if read.map_err(ClientError::io)? == 0 {
                        return Err(ClientError::ConnectionClosed);
                    }
                    self.process_buffered()?;
                }
                Event::Written(written) => {
                    if written.map_err(ClientError::io)? == 0 {
                        return Err(ClientError::io(std::io::ErrorKind::WriteZero.into()));
                    }
                    if self.write_buf.is_empty() {
                        // Buffered writers (TLS) hold bytes until flushed.
                        self.writer.flush().await.map_err(ClientError::io)?;
                    }
                }
                Event::Command(None) => return Ok(Stop::HandlesDropped),
                Event::Command(Some(Command::Disconnect { disconnect, reply })) => {
                    if let Some(stop) = self.disconnect(disconnect, reply).await {
                        return Ok(stop);
                    }
                }
                Event::Command(Some(command)) => self.handle_command(command),
                Event::Delivered => self.process_buffered()?,
                Event::KeepAlive => self.handle_keep_alive()?,
            }
        }
    }

    /// Decodes and handles whole packets from the read buffer while there is
    /// room for another delivery. Bytes of further packets stay buffered.
    fn process_buffered(&mut self) -> Result<(), ClientError> {
        while self.deliveries.len() < self.queue_capacity {
            let packet = self
                .decoder
                .decode(&mut self.read_buf)
                .map_err(ClientError::Decode)?;
            match packet {
                Some(packet) => self.handle_packet(packet)?,
                None => break,
            }
        }
        Ok(())
    }

    // ---- the keep-alive timer ----

    fn keep_alive_deadline(&self) -> Option<Instant> {
        let period = self.keep_alive?;
        Some(match self.ping_sent_at {
            Some(sent) => sent + period,
            None => self.last_sent + period,
        })
    }

    /// Sends PINGREQ when nothing was sent for one keep-alive period
    /// (`[MQTT-3.1.2-23]` of 3.1.1, 3.1.2.10 of 5.0), and gives up when the
    /// PINGRESP has not come back one period later.
    fn handle_keep_alive(&mut self) -> Result<(), ClientError> {
        let Some(period) = self.keep_alive else {
            return Ok(());
        };
        let now = Instant::now();
        match self.ping_sent_at {
            Some(sent) if now >= sent + period => Err(ClientError::KeepAliveTimeout(period)),
            Some(_) => Ok(()),
            None if now >= self.last_sent + period => {
                self.queue(&Packet::PingReq)?;
                self.ping_sent_at = Some(now);
                Ok(())
            }
            None => Ok(()),
        }
    }

    // ---- requests from the application ----

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { publish, reply } => self.start_publish(publish, reply),
            Command::Subscribe {
                mut subscribe,
                reply,
            } => {
                if subscribe.filters.is_empty() {
                    // [MQTT-3.8.3-2]
                    let error = ClientError::InvalidArgument(
                        "SUBSCRIBE needs at least one topic filter".to_owned(),
                    );
                    drop(reply.send(Err(error)));
                    return;
                }
                if subscribe.subscription_identifier.is_some()
                    && !self.limits.subscription_identifiers_available
                {
                    let error = ClientError::InvalidArgument(
                        "the server does not support subscription identifiers".to_owned(),
                    );
                    drop(reply.send(Err(error)));
                    return;
                }
                let Some(packet_id) = self.allocate_packet_id() else {
                    drop(reply.send(Err(no_packet_id())));
                    return;
                };
                subscribe.packet_id = packet_id;
                match self.queue(&Packet::Subscribe(subscribe)) {
                    Ok(()) => {
                        self.pending.insert(packet_id, Pending::SubAck(reply));
                    }
                    Err(error) => drop(reply.send(Err(error))),
                }
            }
            Command::Unsubscribe {
                mut unsubscribe,
                reply,
            } => {
                if unsubscribe.filters.is_empty() {
                    // [MQTT-3.10.3-2]
                    let error = ClientError::InvalidArgument(
                        "UNSUBSCRIBE needs at least one topic filter".to_owned(),
                    );
                    drop(reply.send(Err(error)));
                    return;
                }
                let Some(packet_id) = self.allocate_packet_id() else {
                    drop(reply.send(Err(no_packet_id())));
                    return;
                };
                unsubscribe.packet_id = packet_id;
                match self.queue(&Packet::Unsubscribe(unsubscribe)) {
                    Ok(()) => {
                        self.pending.insert(packet_id, Pending::UnsubAck(reply));
                    }
                    Err(error) => drop(reply.send(Err(error))),
                }
            }
            Command::Disconnect { reply, .. } => {
                // Handled in `drive`, which owns the write path; never routed here.
                drop(reply.send(Err(ClientError::Disconnected)));
            }
        }
    }

    /// Writes DISCONNECT and everything queued before it, then shuts the
    /// socket down. Returns `None` when the packet could not be encoded (the
    /// connection stays up and the caller gets the error).
    async fn disconnect(&mut self, disconnect: Disconnect, reply: Reply<()>) -> Option<Stop> {
        if let Err(error) = self.queue(&Packet::Disconnect(disconnect)) {
            drop(reply.send(Err(error)));
            return None;
        }
        let flushed = tokio::time::timeout(DISCONNECT_FLUSH_TIMEOUT, async {
            self.writer.write_all_buf(&mut self.write_buf).await?;
            self.writer.flush().await?;
            self.writer.shutdown().await
        })
        .await;
        let result = match flushed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ClientError::io(error)),
            Err(_) => Err(ClientError::io(std::io::ErrorKind::TimedOut.into())),
        };
        drop(reply.send(result));
        Some(Stop::Disconnected)
    }

    /// Checks a publish against what the server allows, then sends it or,
    /// when the server's Receive Maximum is used up, queues it.
    fn start_publish(&mut self, mut publish: Publish, reply: Reply<PublishOutcome>) {
        if let Err(error) = self.check_publish(&publish) {
            drop(reply.send(Err(error)));
            return;
        }
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            publish.packet_id = None;
            let result = self
                .queue(&Packet::Publish(publish))
                .map(|()| PublishOutcome::default());
            drop(reply.send(result));
        } else if self.inflight_publishes < usize::from(self.limits.receive_maximum) {
            self.send_publish(publish, reply);
        } else {
            self.waiting.push_back((publish, reply));
        }
    }

    fn check_publish(&self, publish: &Publish) -> Result<(), ClientError> {
        if publish.qos > self.limits.maximum_qos {
            // [MQTT-3.2.2-11]
            return Err(ClientError::QosNotSupported {
                requested: publish.qos,
                maximum: self.limits.maximum_qos,
            });
        }
        if publish.retain && !self.limits.retain_available {
            // [MQTT-3.2.2-14]
            return Err(ClientError::RetainNotSupported);
        }
        if publish.topic.is_empty() && publish.properties.topic_alias.is_none() {
            return Err(ClientError::InvalidArgument(
                "PUBLISH needs a topic name".to_owned(),
            ));
        }
        Ok(())
    }

    fn send_publish(&mut self, mut publish: Publish, reply: Reply<PublishOutcome>) {
        let Some(packet_id) = self.allocate_packet_id() else {
            self.waiting.push_front((publish, reply));
            return;
        };
        publish.packet_id = Some(packet_id);
        let qos = publish.qos;
        match self.queue(&Packet::Publish(publish)) {
            Ok(()) => {
                let pending = if qos == QoS::ExactlyOnce {
                    Pending::PubRec(reply)
                } else {
                    Pending::PubAck(reply)
                };
                self.pending.insert(packet_id, pending);
                self.inflight_publishes += 1;
            }
            Err(error) => drop(reply.send(Err(error))),
        }
    }

    /// A QoS 1/2 flow ended: its slot in the server's Receive Maximum is free.
    fn finish_publish(&mut self) {
        self.inflight_publishes = self.inflight_publishes.saturating_sub(1);
        while self.inflight_publishes < usize::from(self.limits.receive_maximum) {
            let Some((publish, reply)) = self.waiting.pop_front() else {
                break;
            };
            self.send_publish(publish, reply);
        }
    }

    /// The next identifier not in use, searching at most once around.
    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..PACKET_ID_COUNT {
            let packet_id = self.next_packet_id;
            self.next_packet_id = packet_id.checked_add(1).unwrap_or(1);
            if !self.pending.contains_key(&packet_id) {
                return Some(packet_id);
            }
        }
        None
    }

    /// Encodes one packet onto the write buffer. Fails, leaving the buffer as
    /// it was, when the packet cannot be encoded or is larger than the
    /// server's Maximum Packet Size (`[MQTT-3.1.2-24]` binds the server; 3.2.2.3.6
    /// binds us the same way).
    fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        let start = self.write_buf.len();
        if let Err(error) = encode(packet, self.version, &mut self.write_buf) {
            self.write_buf.truncate(start);
            return Err(ClientError::Encode(error));
        }
        let size = self.write_buf.len() - start;
        if let Some(maximum) = self.limits.maximum_packet_size {
            if size > usize::try_from(maximum).unwrap_or(usize::MAX) {
                self.write_buf.truncate(start);
                return Err(ClientError::PacketTooLarge {
                    packet: packet.name(),
                    size,
                    maximum,
                });
            }
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    // ---- packets from the server ----

    fn handle_packet(&mut self, packet: Packet) -> Result<(), ClientError> {
        tracing::trace!(packet = packet.name(), "received");
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => match self.pending.remove(&ack.packet_id) {
                Some(Pending::PubAck(reply)) => {
                    drop(reply.send(Ok(PublishOutcome::from(ack))));
                    self.finish_publish();
                    Ok(())
                }
                other => self.unexpected_ack("PUBACK", ack.packet_id, other),
            },
            Packet::PubRec(ack) => match self.pending.remove(&ack.packet_id) {
                Some(Pending::PubRec(reply)) => {
                    if ack.reason_code.is_error() {
                        // A failing PUBREC ends the flow: no PUBREL (4.3.3).
                        drop(reply.send(Ok(PublishOutcome::from(ack))));
                        self.finish_publish();
                        return Ok(());
                    }
                    let packet_id = ack.packet_id;
                    self.pending.insert(packet_id, Pending::PubComp(reply));
                    self.queue_ack(Packet::PubRel(Ack::new(packet_id)))
                }
                None => {
                    // A PUBREC for a flow we no longer know (for example from
                    // before a reconnect): answer so the server can finish it.
                    let reason = if self.version.is_v5() {
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                    } else {
                        ReasonCode::SUCCESS
                    };
                    self.queue_ack(Packet::PubRel(Ack::with_reason(ack.packet_id, reason)))
                }
                other => self.unexpected_ack("PUBREC", ack.packet_id, other),
            },
            Packet::PubComp(ack) => match self.pending.remove(&ack.packet_id) {
                Some(Pending::PubComp(reply)) => {
                    drop(reply.send(Ok(PublishOutcome::from(ack))));
                    self.finish_publish();
                    Ok(())
                }
                other => self.unexpected_ack("PUBCOMP", ack.packet_id, other),
            },
            Packet::PubRel(ack) => {
                let reason = if self.incoming_qos2.remove(&ack.packet_id) || !self.version.is_v5() {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.queue_ack(Packet::PubComp(Ack::with_reason(ack.packet_id, reason)))
            }
            Packet::SubAck(suback) => match self.pending.remove(&suback.packet_id) {
                Some(Pending::SubAck(reply)) => {
                    drop(reply.send(Ok(suback)));
                    Ok(())
                }
                other => self.unexpected_ack("SUBACK", suback.packet_id, other),
            },
            Packet::UnsubAck(unsuback) => match self.pending.remove(&unsuback.packet_id) {
                Some(Pending::UnsubAck(reply)) => {
                    drop(reply.send(Ok(unsuback)));
                    Ok(())
                }
                other => self.unexpected_ack("UNSUBACK", unsuback.packet_id, other),
            },
            Packet::PingResp => {
                self.ping_sent_at = None;
                Ok(())
            }
            Packet::Disconnect(disconnect) => Err(ClientError::ServerDisconnected {
                reason_code: disconnect.reason_code,
                reason_string: disconnect.reason_string,
                server_reference: disconnect.server_reference,
            }),
            Packet::Auth(_) => Err(ClientError::protocol(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH received, but this client does not do enhanced authentication",
            )),
            other @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq) => Err(ClientError::protocol(
                ReasonCode::PROTOCOL_ERROR,
                format!("{} is not sent by a server after CONNACK", other.name()),
            )),
        }
    }

    /// An acknowledgement whose packet identifier is not waiting for it. An
    /// unknown identifier is ignored (a late duplicate is harmless); one that
    /// waits for a different packet is a protocol error.
    fn unexpected_ack(
        &mut self,
        received: &'static str,
        packet_id: u16,
        pending: Option<Pending>,
    ) -> Result<(), ClientError> {
        match pending {
            None => {
                tracing::debug!(
                    packet = received,
                    packet_id,
                    "acknowledgement for an unknown packet identifier"
                );
                Ok(())
            }
            Some(pending) => {
                let message = format!(
                    "{received} for packet identifier {packet_id}, which waits for {}",
                    pending.expects()
                );
                self.pending.insert(packet_id, pending);
                Err(ClientError::protocol(ReasonCode::PROTOCOL_ERROR, message))
            }
        }
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Result<(), ClientError> {
        self.resolve_topic_alias(&mut publish)?;
        match publish.qos {
            QoS::AtMostOnce => {
                self.deliver(publish);
                Ok(())
            }
            QoS::AtLeastOnce => {
                let packet_id = incoming_packet_id(&publish)?;
                // Acknowledged once queued for the application: at least
                // once holds for the client process, not for what the
                // application later does with the message.
                self.deliver(publish);
                self.queue_ack(Packet::PubAck(Ack::new(packet_id)))
            }
            QoS::ExactlyOnce => {
                let packet_id = incoming_packet_id(&publish)?;
                if !self.incoming_qos2.contains(&packet_id) {
                    if self.incoming_qos2.len() >= usize::from(self.receive_maximum) {
                        // [MQTT-3.3.4-9]
                        return Err(ClientError::protocol(
                            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                            format!(
                                "more than {} unreleased QoS 2 messages",
                                self.receive_maximum
                            ),
                        ));
                    }
                    self.incoming_qos2.insert(packet_id);
                    self.deliver(publish);
                }
                self.queue_ack(Packet::PubRec(Ack::new(packet_id)))
            }
        }
    }

    /// Replaces an empty topic by the one its alias stands for, and records
    /// new aliases (3.3.2.3.4). Aliases live only as long as this connection.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), ClientError> {
        let Some(alias) = publish.properties.topic_alias else {
            if publish.topic.is_empty() {
                return Err(ClientError::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "PUBLISH with an empty topic and no topic alias",
                ));
            }
            return Ok(());
        };
        if alias == 0 || alias > self.topic_alias_maximum {
            return Err(ClientError::protocol(
                ReasonCode::TOPIC_ALIAS_INVALID,
                format!(
                    "topic alias {alias} is outside 1..={} (our Topic Alias Maximum)",
                    self.topic_alias_maximum
                ),
            ));
        }
        if publish.topic.is_empty() {
            match self.topic_aliases.get(&alias) {
                Some(topic) => publish.topic.clone_from(topic),
                None => {
                    return Err(ClientError::protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        format!("topic alias {alias} was never set on this connection"),
                    ))
                }
            }
        } else {
            self.topic_aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn deliver(&mut self, publish: Publish) {
        if !self.incoming.is_closed() {
            self.deliveries.push_back(publish);
        }
    }

    /// Queues an acknowledgement we owe the server. Failing to encode one
    /// (only possible if the server's Maximum Packet Size is absurdly small)
    /// ends the connection: the flow cannot complete.
    fn queue_ack(&mut self, packet: Packet) -> Result<(), ClientError> {
        self.queue(&packet)
    }

    /// After a failure the server caused, tell it why (MQTT 5, 4.13) before
    /// the socket is dropped, without waiting long.
    async fn disconnect_after(&mut self, error: &ClientError) {
        if !self.version.is_v5() {
            return;
        }
        let reason_code = match error {
            ClientError::Decode(error) => error.reason_code(),
            ClientError::Protocol { reason_code, .. } => *reason_code,
            _ => return,
        };
        if self
            .queue(&Packet::Disconnect(Disconnect::with_reason(reason_code)))
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(ERROR_DISCONNECT_TIMEOUT, async {
            self.writer.write_all_buf(&mut self.write_buf).await?;
            self.writer.flush().await
        })
        .await;
    }
}

fn incoming_packet_id(publish: &Publish) -> Result<u16, ClientError> {
    publish.packet_id.ok_or_else(|| {
        // [MQTT-2.2.1-2]; the decoder should already refuse this.
        ClientError::protocol(
            ReasonCode::PROTOCOL_ERROR,
            "QoS 1 or 2 PUBLISH without a packet identifier",
        )
    })
}

fn no_packet_id() -> ClientError {
    ClientError::InvalidArgument("all 65,535 packet identifiers are in use".to_owned())
}

/// A deadline that never comes, for a disabled timer branch.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 60 * 60)
}
