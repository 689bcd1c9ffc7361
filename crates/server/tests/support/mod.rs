//! Shared test support: a broker on port 0 (or in memory, for paused time) and a
//! raw-bytes MQTT client built on our codec, so tests can send exactly the bytes
//! a spec statement talks about and see exactly what comes back.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

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
        self.recv().await.expect("connection closed, expected a packet")
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
    let connack = client.connect(connect_packet(version, client_id, true)).await;
    assert_eq!(connack.reason_code, switchboard_codec::ReasonCode::SUCCESS);
    client
}
