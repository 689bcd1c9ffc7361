//! One MQTT connection of the load generator: a TCP stream, its buffers and
//! decoder, and the handshake.
//!
//! Not the client library: that one runs a background task per connection and
//! answers every request through channels, which is right for tools and wrong
//! for a generator that must outrun a broker. Here the task that drives a
//! client owns its [`Link`] outright; reads and writes go through two
//! `BytesMut` buffers that are reused for the whole run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use switchboard_codec::{
    encode, ConnAck, Connect, ConnectProperties, Decoder, Packet, ProtocolVersion, QoS, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::wire;

/// Keep alive asked for in CONNECT. Runs are short; a connection pings at half
/// the interval (or half the broker's Server Keep Alive) when a run is long.
pub(crate) const KEEP_ALIVE_SECS: u16 = 60;

/// Read buffer growth step: one read syscall can take up to this much.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Room kept free in the read buffer before each read.
const READ_MIN_FREE: usize = 16 * 1024;

/// Largest packet accepted from the broker beyond the payload size: the
/// topic, properties and headers of a benchmark message are far smaller.
const PACKET_OVERHEAD: usize = 64 * 1024;

/// Where and how to connect; shared by every client of a run.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Resolved once, so ten thousand connections do not mean ten thousand
    /// name lookups; the only address load is sent to.
    pub(crate) address: SocketAddr,
    pub(crate) version: ProtocolVersion,
    pub(crate) connect_timeout: Duration,
    /// Largest packet this client accepts, announced in a v5 CONNECT.
    pub(crate) max_packet_size: u32,
}

impl Target {
    pub(crate) async fn resolve(
        host: &str,
        port: u16,
        version: ProtocolVersion,
        connect_timeout: Duration,
        payload_size: usize,
    ) -> anyhow::Result<Target> {
        let address = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}:{port}"))?
            .next()
            .ok_or_else(|| anyhow!("{host}:{port} resolves to no address"))?;
        let max_packet_size =
            u32::try_from(payload_size.saturating_add(PACKET_OVERHEAD)).unwrap_or(u32::MAX);
        Ok(Target {
            address,
            version,
            connect_timeout,
            max_packet_size,
        })
    }
}

/// A connected, accepted MQTT client connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) stream: TcpStream,
    pub(crate) read_buf: BytesMut,
    pub(crate) write_buf: BytesMut,
    pub(crate) decoder: Decoder,
    pub(crate) version: ProtocolVersion,
    /// The broker's Receive Maximum (v5; 65,535 when absent or 3.1.1).
    pub(crate) receive_maximum: u16,
    /// Send a PINGREQ this often to stay within keep alive.
    pub(crate) ping_interval: Duration,
}

impl Link {
    /// TCP connect, CONNECT, CONNACK; within the target's connect timeout.
    pub(crate) async fn connect(target: &Target, client_id: &str) -> anyhow::Result<Link> {
        tokio::time::timeout(target.connect_timeout, Link::handshake(target, client_id))
            .await
            .map_err(|_| {
                anyhow!(
                    "no CONNACK from {} within {:?} (client {client_id})",
                    target.address,
                    target.connect_timeout
                )
            })?
    }

    async fn handshake(target: &Target, client_id: &str) -> anyhow::Result<Link> {
        let stream = TcpStream::connect(target.address)
            .await
            .map_err(|error| connect_error(target.address, error))?;
        // Latency is measured per message; Nagle would add up to 40 ms.
        stream.set_nodelay(true)?;
        let version = target.version;
        let mut link = Link {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            decoder: Decoder::client(version, target.max_packet_size),
            version,
            receive_maximum: u16::MAX,
            ping_interval: Duration::from_secs(u64::from(KEEP_ALIVE_SECS) / 2),
        };
        let properties = if version.is_v5() {
            ConnectProperties {
                receive_maximum: Some(u16::MAX),
                maximum_packet_size: Some(target.max_packet_size),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Connect {
            protocol: version,
            clean_start: true,
            keep_alive: KEEP_ALIVE_SECS,
            client_id: client_id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties,
        };
        encode(
            &Packet::Connect(Box::new(connect)),
            version,
            &mut link.write_buf,
        )?;
        link.flush().await?;
        match link.read_packet().await? {
            Packet::ConnAck(connack) => link.accept(&connack)?,
            other => bail!("expected CONNACK, got {}", other.name()),
        }
        Ok(link)
    }

    fn accept(&mut self, connack: &ConnAck) -> anyhow::Result<()> {
        if connack.reason_code.is_error() {
            bail!(
                "the broker refused the connection: reason {}",
                connack.reason_code
            );
        }
        if let Some(maximum) = connack.properties.receive_maximum {
            self.receive_maximum = maximum.max(1);
        }
        if let Some(keep_alive) = connack.properties.server_keep_alive {
            if keep_alive > 0 {
                self.ping_interval = Duration::from_secs(u64::from(keep_alive)) / 2;
            }
        }
        Ok(())
    }

    /// SUBSCRIBE to one filter and wait for its SUBACK (before any message
    /// flows: nothing else can arrive first).
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        put_subscribe(&mut self.write_buf, self.version, filter, qos)?;
        self.flush().await?;
        match self.read_packet().await? {
            Packet::SubAck(suback) => check_suback(&suback, filter),
            other => bail!("expected SUBACK for {filter}, got {}", other.name()),
        }
    }

    /// Writes the whole write buffer.
    pub(crate) async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        Ok(())
    }

    /// The next whole packet (reads as needed).
    pub(crate) async fn read_packet(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.read_buf)? {
                return Ok(packet);
            }
            self.reserve_read();
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }

    /// Makes room for the next read.
    pub(crate) fn reserve_read(&mut self) {
        if self.read_buf.capacity() - self.read_buf.len() < READ_MIN_FREE {
            self.read_buf.reserve(READ_CHUNK);
        }
    }

    /// A normal DISCONNECT, best effort, then the socket closes on drop.
    pub(crate) async fn disconnect(mut self) {
        wire::put_disconnect(&mut self.write_buf);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// A SUBSCRIBE for one filter, packet identifier 1.
pub(crate) fn put_subscribe(
    out: &mut BytesMut,
    version: ProtocolVersion,
    filter: &str,
    qos: QoS,
) -> anyhow::Result<()> {
    let subscribe = Subscribe {
        packet_id: 1,
        filters: vec![(
            filter.to_owned(),
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        )],
        ..Subscribe::default()
    };
    encode(&Packet::Subscribe(subscribe), version, out)?;
    Ok(())
}

/// A SUBACK refusing the filter ends the run: nothing would be measured.
pub(crate) fn check_suback(suback: &switchboard_codec::SubAck, filter: &str) -> anyhow::Result<()> {
    match suback.reason_codes.first() {
        Some(code) if !code.is_error() => Ok(()),
        Some(code) => bail!("the broker refused the subscription to {filter}: reason {code}"),
        None => bail!("SUBACK for {filter} carries no reason code"),
    }
}

fn connect_error(address: SocketAddr, error: std::io::Error) -> anyhow::Error {
    // EMFILE / ENFILE: this process ran out of file descriptors.
    if matches!(error.raw_os_error(), Some(23 | 24)) {
        anyhow!(
            "cannot connect to {address}: {error}; raise the open-files limit (ulimit -n) \
             for this many connections"
        )
    } else {
        anyhow!("cannot connect to {address}: {error}")
    }
}

/// What to do with each connection once it is up, e.g. subscribe.
pub(crate) type Prepare = Option<(String, QoS)>;

/// Connects `client_ids.len()` clients, at most `concurrency` at a time; each
/// subscribes to its filter if it has one. Returns the links in the order of
/// `client_ids`, or the first error (the rest are dropped, which closes them).
pub(crate) async fn connect_all(
    target: &Target,
    clients: Vec<(String, Prepare)>,
    concurrency: usize,
) -> anyhow::Result<Vec<Link>> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let count = clients.len();
    for (index, (client_id, prepare)) in clients.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        let target = target.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut link = Link::connect(&target, &client_id).await?;
            if let Some((filter, qos)) = prepare {
                tokio::time::timeout(target.connect_timeout, link.subscribe(&filter, qos))
                    .await
                    .map_err(|_| {
                        anyhow!("no SUBACK for {filter} within {:?}", target.connect_timeout)
                    })??;
            }
            anyhow::Ok((index, link))
        });
    }
    let mut links: Vec<Option<Link>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, link) = joined.context("a connecting task failed")??;
        if let Some(slot) = links.get_mut(index) {
            *slot = Some(link);
        }
    }
    links
        .into_iter()
        .map(|link| link.ok_or_else(|| anyhow!("a connection went missing during setup")))
        .collect()
}
