//! Shared test support: a broker on port 0 (or in memory, for paused time) and a
//! raw-bytes MQTT client built on our codec, so tests can send exactly the bytes
//! a spec statement talks about and see exactly what comes back.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_codec::{
    encode, ConnAck, Connect, ConnectProperties, Decoder, Packet, ProtocolVersion, Publish, QoS,
    Subscribe, SubscriptionOptions,
};
use switchboard_server::{ListenerKind, ListenerOptions, RunningServer, Server, ServerOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Guard against a hung test; not an assertion about speed.
pub const GUARD: Duration = Duration::from_secs(10);

/// Default options with one TCP listener on 127.0.0.1:0 and `$SYS` off (so it
/// does not add retained messages to what tests see).
pub fn options() -> ServerOptions {
    let mut options = ServerOptions {
        listeners: vec![ListenerOptions {
            name: "test".into(),
            kind: ListenerKind::Tcp,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 0,
            ..ListenerOptions::default()
        }],
        ..ServerOptions::default()
    };
    options.broker.sys_interval = None;
    options
}

pub async fn start(options: ServerOptions) -> RunningServer {
    Server::bind(options).await.expect("bind").start()
}

pub async fn start_default() -> RunningServer {
    start(options()).await
}

pub fn addr(server: &RunningServer) -> SocketAddr {
    server.local_addrs()[0]
}

pub fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

/// A CONNECT with the given version, client id and clean start.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        qos,
        topic: topic.to_string(),
        packet_id,
        payload: Bytes::from_static(payload),
        ..Publish::default()
    }
}

pub fn subscribe(packet_id: u16, filter: &str, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id,
        filters: vec![(
            filter.to_string(),
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        )],
        ..Subscribe::default()
    }
}

/// A client that speaks raw packets.
pub struct RawClient<S> {
    stream: S,
    decoder: Decoder,
    buffer: BytesMut,
    pub version: ProtocolVersion,
}

impl RawClient<tokio::net::TcpStream> {
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Small test packets must not wait for Nagle's algorithm.
        stream.set_nodelay(true).expect("nodelay");
        RawClient::new(stream, version)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn new(stream: S, version: ProtocolVersion) -> Self {
        RawClient {
            stream,
            decoder: Decoder::client(version, 16 * 1024 * 1024),
            buffer: BytesMut::new(),
            version,
        }
    }

    pub async fn send(&mut self, packet: impl Into<PacketArg>) {
        let packet = packet.into().0;
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The peer may already have closed; tests then look at what came back.
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next packet, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(packet)) => return Some(packet),
                Ok(None) => {}
                Err(error) => panic!("server sent a malformed packet: {error}"),
            }
            let read = tokio::time::timeout(GUARD, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("timed out waiting for a packet");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Like `recv` but fails the test on close.
    pub async fn expect(&mut self) -> Packet {
        self.recv()
            .await
            .expect("connection closed, expected a packet")
    }

    pub async fn connect(&mut self, connect: Connect) -> ConnAck {
        self.send(Packet::Connect(Box::new(connect))).await;
        match self.expect().await {
            Packet::ConnAck(connack) => connack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Asserts the server closes the connection, skipping any packets before the close
    /// except that a v5 DISCONNECT is returned.
    pub async fn closed(&mut self) -> Option<Packet> {
        let mut last = None;
        while let Some(packet) = self.recv().await {
            last = Some(packet);
        }
        last
    }
}

/// Lets `send` take a `Packet` or a bare packet struct.
pub struct PacketArg(pub Packet);

impl From<Packet> for PacketArg {
    fn from(packet: Packet) -> Self {
        PacketArg(packet)
    }
}
impl From<Publish> for PacketArg {
    fn from(publish: Publish) -> Self {
        PacketArg(Packet::Publish(publish))
    }
}
impl From<Subscribe> for PacketArg {
    fn from(subscribe: Subscribe) -> Self {
        PacketArg(Packet::Subscribe(subscribe))
    }
}

pub async fn connected_tcp(
    server: &RunningServer,
    version: ProtocolVersion,
    client_id: &str,
) -> RawClient<tokio::net::TcpStream> {
    let mut client = RawClient::tcp(addr(server), version).await;
    let connack = client
        .connect(connect_packet(version, client_id, true))
        .await;
    assert_eq!(connack.reason_code, switchboard_codec::ReasonCode::SUCCESS);
    client
}

// ----- Helpers for the raw protocol tests (connect, malformed, qos_flows, timers) -----

/// A connection to `server` through an in-memory pipe, for tests on paused time.
pub fn raw_in_memory(
    server: &RunningServer,
    version: ProtocolVersion,
) -> RawClient<tokio::io::DuplexStream> {
    RawClient::new(server.connect_in_memory(peer()), version)
}

/// An in-memory connection that sent CONNECT (clean start, no properties) and got CONNACK 0x00.
pub async fn connected_in_memory(
    server: &RunningServer,
    version: ProtocolVersion,
    client_id: &str,
) -> RawClient<tokio::io::DuplexStream> {
    let mut client = raw_in_memory(server, version);
    let connack = client
        .connect(connect_packet(version, client_id, true))
        .await;
    assert_eq!(connack.reason_code, switchboard_codec::ReasonCode::SUCCESS);
    client
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Up to `n` raw bytes exactly as the server wrote them (fewer if it closes first).
    pub async fn recv_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buffer.len() < n {
            let read = tokio::time::timeout(GUARD, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("timed out waiting for bytes");
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let take = n.min(self.buffer.len());
        self.buffer.split_to(take).to_vec()
    }

    /// `None` if nothing arrived within `wait` (the connection is still open);
    /// otherwise what `recv` returned (`Some(None)` = closed).
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(packet)) => return Some(Some(packet)),
                Ok(None) => {}
                Err(error) => panic!("server sent a malformed packet: {error}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buffer)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    pub async fn expect_publish(&mut self) -> Publish {
        match self.expect().await {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn expect_suback(&mut self) -> switchboard_codec::SubAck {
        match self.expect().await {
            Packet::SubAck(suback) => suback,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn expect_puback(&mut self) -> switchboard_codec::Ack {
        match self.expect().await {
            Packet::PubAck(ack) => ack,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    pub async fn expect_pubrec(&mut self) -> switchboard_codec::Ack {
        match self.expect().await {
            Packet::PubRec(ack) => ack,
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }

    pub async fn expect_pubrel(&mut self) -> switchboard_codec::Ack {
        match self.expect().await {
            Packet::PubRel(ack) => ack,
            other => panic!("expected PUBREL, got {other:?}"),
        }
    }

    pub async fn expect_pubcomp(&mut self) -> switchboard_codec::Ack {
        match self.expect().await {
            Packet::PubComp(ack) => ack,
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }

    /// Subscribes and asserts the SUBACK grants `qos`.
    pub async fn subscribe_granted(&mut self, packet_id: u16, filter: &str, qos: QoS) {
        self.send(subscribe(packet_id, filter, qos)).await;
        let suback = self.expect_suback().await;
        assert_eq!(suback.packet_id, packet_id);
        assert_eq!(
            suback.reason_codes,
            vec![switchboard_codec::ReasonCode::granted(qos)]
        );
    }

    /// Asserts the server closes the connection after, for v5, a DISCONNECT with `code`
    /// (3.x: without sending anything).
    pub async fn expect_closed_with(&mut self, code: switchboard_codec::ReasonCode) {
        let first = self.recv().await;
        match (self.version.is_v5(), first) {
            (true, Some(Packet::Disconnect(disconnect))) => {
                assert_eq!(disconnect.reason_code, code, "DISCONNECT reason");
                // [MQTT-3.14.2-2] (v5): the server never sends a Session Expiry Interval.
                assert_eq!(disconnect.session_expiry_interval, None);
                assert_eq!(self.recv().await, None, "nothing may follow DISCONNECT");
            }
            (true, other) => panic!("expected DISCONNECT {code} then close, got {other:?}"),
            (false, None) => {}
            (false, other) => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

/// Yields until `condition` holds: for state the server changes right after the
/// client can see it (e.g. the broker noting a closed connection). Does not move
/// tokio's clock, so it is safe on paused time; fails after [`GUARD`] of real time.
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(started.elapsed() < GUARD, "condition never became true");
        tokio::task::yield_now().await;
    }
}

/// `Some(true)` while a connection is attached to `client_id`'s session,
/// `Some(false)` while the session lives without one, `None` without a session.
pub fn session_connected(server: &RunningServer, client_id: &str) -> Option<bool> {
    server
        .broker()
        .session(client_id)
        .map(|entry| entry.info().connected)
}

// ----- rumqttc harness (interop, retained, subscriptions, sessions tests) -----

/// A rumqttc client whose event loop runs in a background task that forwards
/// every event to the test. Events the test did not ask for yet are kept, so
/// waiting for one packet never loses another. The task stops at the first
/// connection error (it does not let rumqttc reconnect), dropping the socket.
pub struct Driven<C, E, X> {
    pub client: C,
    events: tokio::sync::mpsc::UnboundedReceiver<Result<E, X>>,
    buffered: std::collections::VecDeque<E>,
    task: tokio::task::JoinHandle<()>,
}

/// rumqttc's MQTT 3.1.1 client.
pub type V4 = Driven<rumqttc::AsyncClient, rumqttc::Event, rumqttc::ConnectionError>;
/// rumqttc's MQTT 5 client.
pub type V5 = Driven<rumqttc::v5::AsyncClient, rumqttc::v5::Event, rumqttc::v5::ConnectionError>;

impl<C, E: std::fmt::Debug, X: std::fmt::Debug> Driven<C, E, X> {
    /// The first event (kept or new) for which `wanted` holds; fails the test on a
    /// connection error or after [`GUARD`].
    pub async fn next_where(&mut self, what: &str, mut wanted: impl FnMut(&E) -> bool) -> E {
        if let Some(position) = self.buffered.iter().position(&mut wanted) {
            return self.buffered.remove(position).unwrap();
        }
        loop {
            let event = match tokio::time::timeout(GUARD, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("event loop ended while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; unclaimed events: {:?}",
                    self.buffered
                ),
            };
            match event {
                Ok(event) if wanted(&event) => return event,
                Ok(event) => self.buffered.push_back(event),
                Err(error) => panic!("connection failed while waiting for {what}: {error:?}"),
            }
        }
    }

    /// Waits until the connection ends (the server closed it, or sent DISCONNECT)
    /// and returns the error rumqttc reported. Events before it are dropped.
    pub async fn closed(&mut self) -> X {
        loop {
            match tokio::time::timeout(GUARD, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(error))) => return error,
                Ok(None) => panic!("event loop ended without an error"),
                Err(_) => panic!("timed out waiting for the connection to close"),
            }
        }
    }

    /// Ends the connection without DISCONNECT: the event loop and its socket are
    /// dropped, as when a client process dies. Returns once they are gone.
    pub async fn drop_abruptly(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Dropping the client drops its event loop and socket too (without DISCONNECT), so a
/// test never leaves a connection running behind its back.
impl<C, E, X> Drop for Driven<C, E, X> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// rumqttc 3.1.1 options for `server`, keep alive 60 s, clean session.
pub fn v4_options(server: &RunningServer, client_id: &str) -> rumqttc::MqttOptions {
    let addr = addr(server);
    let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(60));
    options
}

/// rumqttc 5 options for `server`, keep alive 60 s, clean start.
pub fn v5_options(server: &RunningServer, client_id: &str) -> rumqttc::v5::MqttOptions {
    let addr = addr(server);
    let mut options = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(60));
    options
}

impl V4 {
    /// Connects and returns the CONNACK (the test fails if the server refuses).
    pub async fn connect(options: rumqttc::MqttOptions) -> (V4, rumqttc::ConnAck) {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        let (sender, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut driven = Driven {
            client,
            events,
            buffered: Default::default(),
            task,
        };
        match driven
            .next_where("CONNACK", |e| {
                matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
            })
            .await
        {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(connack)) => (driven, connack),
            _ => unreachable!(),
        }
    }

    /// The next incoming packet other than PINGRESP.
    pub async fn incoming(&mut self) -> rumqttc::Packet {
        use rumqttc::{Event, Packet};
        match self
            .next_where(
                "a packet",
                |e| matches!(e, Event::Incoming(p) if *p != Packet::PingResp),
            )
            .await
        {
            Event::Incoming(packet) => packet,
            _ => unreachable!(),
        }
    }

    pub async fn recv_publish(&mut self) -> rumqttc::Publish {
        use rumqttc::{Event, Packet};
        match self
            .next_where("PUBLISH", |e| {
                matches!(e, Event::Incoming(Packet::Publish(_)))
            })
            .await
        {
            Event::Incoming(Packet::Publish(publish)) => publish,
            _ => unreachable!(),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) -> rumqttc::SubAck {
        use rumqttc::{Event, Packet};
        self.client.subscribe(filter, qos).await.unwrap();
        match self
            .next_where("SUBACK", |e| {
                matches!(e, Event::Incoming(Packet::SubAck(_)))
            })
            .await
        {
            Event::Incoming(Packet::SubAck(suback)) => suback,
            _ => unreachable!(),
        }
    }

    /// Publishes and waits until the flow is complete: written (QoS 0), PUBACK
    /// (QoS 1) or PUBCOMP (QoS 2). Once it returns, the broker has routed it.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        use rumqttc::{Event, Outgoing, Packet, QoS};
        self.client
            .publish(topic, qos, retain, payload.into())
            .await
            .unwrap();
        let packet_id = match self
            .next_where("outgoing PUBLISH", |e| {
                matches!(e, Event::Outgoing(Outgoing::Publish(_)))
            })
            .await
        {
            Event::Outgoing(Outgoing::Publish(packet_id)) => packet_id,
            _ => unreachable!(),
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.next_where(
                    "PUBACK",
                    |e| matches!(e, Event::Incoming(Packet::PubAck(ack)) if ack.pkid == packet_id),
                )
                .await;
            }
            QoS::ExactlyOnce => {
                self.next_where(
                    "PUBCOMP",
                    |e| matches!(e, Event::Incoming(Packet::PubComp(ack)) if ack.pkid == packet_id),
                )
                .await;
            }
        }
    }

    /// DISCONNECT, then waits for the server to close the connection.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.closed().await;
    }
}

impl V5 {
    /// Connects and returns the CONNACK (the test fails if the server refuses).
    pub async fn connect(
        options: rumqttc::v5::MqttOptions,
    ) -> (V5, rumqttc::v5::mqttbytes::v5::ConnAck) {
        use rumqttc::v5::{mqttbytes::v5::Packet, Event};
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        let (sender, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut driven = Driven {
            client,
            events,
            buffered: Default::default(),
            task,
        };
        match driven
            .next_where("CONNACK", |e| {
                matches!(e, Event::Incoming(Packet::ConnAck(_)))
            })
            .await
        {
            Event::Incoming(Packet::ConnAck(connack)) => (driven, connack),
            _ => unreachable!(),
        }
    }

    /// The next incoming packet other than PINGRESP.
    pub async fn incoming(&mut self) -> rumqttc::v5::mqttbytes::v5::Packet {
        use rumqttc::v5::{mqttbytes::v5::Packet, Event};
        match self
            .next_where(
                "a packet",
                |e| matches!(e, Event::Incoming(p) if !matches!(p, Packet::PingResp(_))),
            )
            .await
        {
            Event::Incoming(packet) => packet,
            _ => unreachable!(),
        }
    }

    pub async fn recv_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        use rumqttc::v5::{mqttbytes::v5::Packet, Event};
        match self
            .next_where("PUBLISH", |e| {
                matches!(e, Event::Incoming(Packet::Publish(_)))
            })
            .await
        {
            Event::Incoming(Packet::Publish(publish)) => publish,
            _ => unreachable!(),
        }
    }

    pub async fn suback(&mut self) -> rumqttc::v5::mqttbytes::v5::SubAck {
        use rumqttc::v5::{mqttbytes::v5::Packet, Event};
        match self
            .next_where("SUBACK", |e| {
                matches!(e, Event::Incoming(Packet::SubAck(_)))
            })
            .await
        {
            Event::Incoming(Packet::SubAck(suback)) => suback,
            _ => unreachable!(),
        }
    }

    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
    ) -> rumqttc::v5::mqttbytes::v5::SubAck {
        self.client.subscribe(filter, qos).await.unwrap();
        self.suback().await
    }

    /// Publishes and waits until the flow is complete: written (QoS 0), PUBACK
    /// (QoS 1) or PUBCOMP (QoS 2). Returns the PUBACK / PUBREC reason, if any.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        properties: Option<rumqttc::v5::mqttbytes::v5::PublishProperties>,
    ) {
        use rumqttc::v5::mqttbytes::{v5::Packet, QoS};
        use rumqttc::v5::Event;
        use rumqttc::Outgoing;
        let payload = payload.into();
        match properties {
            Some(properties) => self
                .client
                .publish_with_properties(topic, qos, retain, payload, properties)
                .await
                .unwrap(),
            None => self
                .client
                .publish(topic, qos, retain, payload)
                .await
                .unwrap(),
        }
        let packet_id = match self
            .next_where("outgoing PUBLISH", |e| {
                matches!(e, Event::Outgoing(Outgoing::Publish(_)))
            })
            .await
        {
            Event::Outgoing(Outgoing::Publish(packet_id)) => packet_id,
            _ => unreachable!(),
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.next_where(
                    "PUBACK",
                    |e| matches!(e, Event::Incoming(Packet::PubAck(ack)) if ack.pkid == packet_id),
                )
                .await;
            }
            QoS::ExactlyOnce => {
                self.next_where(
                    "PUBCOMP",
                    |e| matches!(e, Event::Incoming(Packet::PubComp(ack)) if ack.pkid == packet_id),
                )
                .await;
            }
        }
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish_with(topic, qos, retain, payload, None).await;
    }

    /// DISCONNECT 0x00, then waits for the server to close the connection.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.closed().await;
    }
}

// ----- Listeners of every transport (transports tests) -----

/// A listener of `kind` on `address` (port 0 picks a free one), no own cap.
pub fn listener(name: &str, kind: ListenerKind, address: SocketAddr) -> ListenerOptions {
    ListenerOptions {
        name: name.into(),
        kind,
        address,
        max_connections: 0,
        ..ListenerOptions::default()
    }
}

/// [`options`] with these listeners instead of the one TCP listener.
pub fn options_with_listeners(listeners: Vec<ListenerOptions>) -> ServerOptions {
    let mut options = options();
    options.listeners = listeners;
    options
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// The stream under the client (a TLS stream: its peer certificates).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Flushes the stream: a TLS or WebSocket client stream may hold what
    /// `send` wrote until then.
    pub async fn flush(&mut self) {
        self.stream.flush().await.expect("flush");
    }
}
