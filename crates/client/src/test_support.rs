//! A scripted MQTT server for tests: it decodes what the client sends with
//! the real codec and answers exactly what the test tells it to.

use bytes::BytesMut;
use switchboard_codec::{encode, ConnAck, Connect, Decoder, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) struct FakeServer<S> {
    stream: S,
    decoder: Decoder,
    buffer: BytesMut,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FakeServer<S> {
    pub(crate) fn new(stream: S) -> FakeServer<S> {
        FakeServer {
            stream,
            decoder: Decoder::server(1024 * 1024),
            buffer: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    /// The next packet from the client, or `None` once it closed the connection.
    pub(crate) async fn try_receive(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buffer).unwrap() {
                if let Packet::Connect(connect) = &packet {
                    self.version = connect.protocol;
                }
                return Some(packet);
            }
            if self.stream.read_buf(&mut self.buffer).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    pub(crate) async fn receive(&mut self) -> Packet {
        self.try_receive()
            .await
            .expect("the client closed the connection")
    }

    pub(crate) async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Reads CONNECT and answers with `connack`.
    pub(crate) async fn accept(&mut self, connack: ConnAck) -> Connect {
        let Packet::Connect(connect) = self.receive().await else {
            panic!("the first packet is not CONNECT");
        };
        self.send(Packet::ConnAck(connack)).await;
        *connect
    }
}
