//! One MQTT connection of the load generator: a TCP stream, its buffers and
//! decoder, and the handshake.
//!
//! Not the client library: that one runs a background task per connection and
//! answers every request through channels, which is right for tools and wrong
//! for a generator that must outrun a broker. Here the task that drives a
//! client owns its [`Link`] outright; reads and writes go through two
//! `BytesMut` buffers that are reused for the whole run.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use switchboard_codec::{
    encode, ConnAck, Connect, ConnectProperties, Decoder, Packet, ProtocolVersion, QoS, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
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

/// What a client asks the broker to do with its session at CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SessionKind {
    /// Clean start 1 (3.1.1: clean session 1), no session expiry: the broker
    /// forgets the session when the connection ends, and keeps nothing on
    /// disk for it.
    #[default]
    Clean,
    /// Clean start 0 (3.1.1: clean session 0) and, in MQTT 5, this session
    /// expiry interval: the broker keeps the session, its subscriptions and
    /// every QoS 1/2 message queued for it across a disconnect, which a
    /// durable broker must write to disk before acknowledging the publish.
    Persistent { expiry_secs: u32 },
}

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
    /// Local addresses to connect from, taken in turn; empty = the system's
    /// choice. Loopback offers about 28k ephemeral ports per source address
    /// (32768-60999 by default), so 100k connections need four or more.
    pub(crate) sources: Arc<[IpAddr]>,
    /// Which of `sources` the next connection uses.
    next_source: Arc<AtomicUsize>,
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
            sources: Arc::from(Vec::new()),
            next_source: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Connects from `sources` in turn (see the field). Each must be of the
    /// broker address's family.
    pub(crate) fn with_sources(mut self, sources: &[IpAddr]) -> anyhow::Result<Target> {
        if let Some(source) = sources
            .iter()
            .find(|source| source.is_ipv4() != self.address.is_ipv4())
        {
            bail!(
                "--source-address {source} is not of the same IP version as the broker address {}",
                self.address
            );
        }
        self.sources = Arc::from(sources);
        Ok(self)
    }

    /// A TCP connection to the broker, from the next source address if any.
    async fn open(&self) -> std::io::Result<TcpStream> {
        let turn = self.next_source.fetch_add(1, Ordering::Relaxed);
        let Some(&source) = self.sources.get(turn % self.sources.len().max(1)) else {
            return TcpStream::connect(self.address).await;
        };
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Port 0: the kernel picks a free ephemeral port on that address.
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.address).await
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
    pub(crate) async fn connect(
        target: &Target,
        client_id: &str,
        session: SessionKind,
    ) -> anyhow::Result<Link> {
        tokio::time::timeout(
            target.connect_timeout,
            Link::handshake(target, client_id, session),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "no CONNACK from {} within {:?} (client {client_id})",
                target.address,
                target.connect_timeout
            )
        })?
    }

    async fn handshake(
        target: &Target,
        client_id: &str,
        session: SessionKind,
    ) -> anyhow::Result<Link> {
        let stream = target
            .open()
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
        let (clean_start, session_expiry_interval) = match session {
            SessionKind::Clean => (true, None),
            SessionKind::Persistent { expiry_secs } => (false, Some(expiry_secs)),
        };
        let properties = if version.is_v5() {
            ConnectProperties {
                receive_maximum: Some(u16::MAX),
                maximum_packet_size: Some(target.max_packet_size),
                session_expiry_interval,
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Connect {
            protocol: version,
            clean_start,
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
///
/// Persistent clients first end whatever session their client id has on the
/// broker (an earlier run's, with its subscriptions and queue), so every run
/// starts from empty sessions whatever happened before.
pub(crate) async fn connect_all(
    target: &Target,
    clients: Vec<(String, Prepare)>,
    session: SessionKind,
    concurrency: usize,
) -> anyhow::Result<Vec<Link>> {
    if session != SessionKind::Clean {
        let client_ids = clients.iter().map(|(client_id, _)| client_id.clone());
        end_sessions(target, client_ids.collect(), concurrency).await?;
    }
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let count = clients.len();
    for (index, (client_id, prepare)) in clients.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        let target = target.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut link = Link::connect(&target, &client_id, session).await?;
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

/// Ends the broker's sessions of `client_ids`, if it has any: each connects
/// with clean start 1 (3.1.1: clean session 1) and no expiry, which discards
/// the old session, and disconnects, which ends the new one. Persistent runs
/// call it before (a rerun does not inherit the last run's sessions) and after
/// (nothing is left queued on the broker).
pub(crate) async fn end_sessions(
    target: &Target,
    client_ids: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for client_id in client_ids {
        let permits = Arc::clone(&permits);
        let target = target.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            Link::connect(&target, &client_id, SessionKind::Clean)
                .await
                .with_context(|| format!("ending the session of {client_id}"))?
                .disconnect()
                .await;
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a task ending sessions failed")??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use switchboard_server::{ListenerKind, ListenerOptions, RunningServer, Server, ServerOptions};

    use super::*;

    async fn start_broker() -> RunningServer {
        let mut options = ServerOptions {
            listeners: vec![ListenerOptions {
                name: "bench-link-test".into(),
                kind: ListenerKind::Tcp,
                address: SocketAddr::from(([127, 0, 0, 1], 0)),
                max_connections: 0,
                ..ListenerOptions::default()
            }],
            ..ServerOptions::default()
        };
        options.broker.sys_interval = None;
        Server::bind(options).await.unwrap().start()
    }

    async fn target(server: &RunningServer, version: ProtocolVersion) -> Target {
        let port = server.local_addrs()[0].port();
        Target::resolve("127.0.0.1", port, version, Duration::from_secs(5), 16)
            .await
            .unwrap()
    }

    /// Polls `condition` until it holds; fails the test after 10 s. The
    /// broker handles a DISCONNECT on its own task, after the client is done.
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn subscription_filters(server: &RunningServer, client_id: &str) -> Vec<String> {
        let entry = server.broker().session(client_id).unwrap();
        entry
            .info()
            .subscriptions
            .into_iter()
            .map(|(filter, _)| filter)
            .collect()
    }

    #[tokio::test]
    async fn connections_come_from_the_source_addresses_in_turn() {
        let server = start_broker().await;
        let sources: Vec<IpAddr> = vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
        let target = target(&server, ProtocolVersion::V5)
            .await
            .with_sources(&sources)
            .unwrap();
        let mut links = Vec::new();
        for index in 0..4 {
            let link = Link::connect(&target, &format!("source-{index}"), SessionKind::Clean)
                .await
                .unwrap();
            links.push(link);
        }
        let seen: Vec<IpAddr> = links
            .iter()
            .map(|link| link.stream.local_addr().unwrap().ip())
            .collect();
        assert_eq!(seen, [sources[0], sources[1], sources[0], sources[1]]);
        // The broker sees them too (the links are still open).
        let peer = server.broker().session("source-1").unwrap().info().peer;
        assert!(peer.unwrap().starts_with("127.0.0.3:"));
    }

    #[tokio::test]
    async fn a_source_address_of_the_other_family_is_refused() {
        let server = start_broker().await;
        let target = target(&server, ProtocolVersion::V5).await;
        let error = target
            .with_sources(&[IpAddr::from(std::net::Ipv6Addr::LOCALHOST)])
            .unwrap_err();
        assert!(error.to_string().contains("same IP version"), "{error}");
    }

    #[tokio::test]
    async fn persistent_sessions_outlive_the_connection_and_a_rerun_starts_afresh() {
        let server = start_broker().await;
        for (version, client_id) in [
            (ProtocolVersion::V5, "sbb-test-s0"),
            (ProtocolVersion::V3_1_1, "sbb-test-s1"),
        ] {
            let target = target(&server, version).await;
            let persistent = SessionKind::Persistent { expiry_secs: 60 };
            let subscribe = |filter: &str| {
                vec![(
                    client_id.to_owned(),
                    Some((filter.to_owned(), QoS::AtLeastOnce)),
                )]
            };

            let links = connect_all(&target, subscribe("old/#"), persistent, 4)
                .await
                .unwrap();
            let entry = server.broker().session(client_id).unwrap();
            assert!(entry.is_persistent(), "{version:?}");
            if version.is_v5() {
                // [MQTT-3.1.2-23]: kept for the expiry the client asked for.
                assert_eq!(entry.info().session_expiry, 60);
            }
            for link in links {
                link.disconnect().await;
            }
            eventually("the session is detached", || {
                !server.broker().session(client_id).unwrap().info().connected
            })
            .await;
            assert_eq!(subscription_filters(&server, client_id), ["old/#"]);

            // A rerun ends the old session first: only its own subscription remains.
            let links = connect_all(&target, subscribe("new/#"), persistent, 4)
                .await
                .unwrap();
            assert_eq!(subscription_filters(&server, client_id), ["new/#"]);
            for link in links {
                link.disconnect().await;
            }

            end_sessions(&target, vec![client_id.to_owned()], 4)
                .await
                .unwrap();
            eventually("the session is gone", || {
                server.broker().session(client_id).is_none()
            })
            .await;
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn clean_sessions_end_with_the_connection() {
        let server = start_broker().await;
        let target = target(&server, ProtocolVersion::V5).await;
        let link = Link::connect(&target, "sbb-test-clean", SessionKind::Clean)
            .await
            .unwrap();
        assert!(!server
            .broker()
            .session("sbb-test-clean")
            .unwrap()
            .is_persistent());
        link.disconnect().await;
        eventually("the session is gone", || {
            server.broker().session("sbb-test-clean").is_none()
        })
        .await;
        server.shutdown().await;
    }
}
