//! One task per connection: reads and decodes packets, drives the session, and
//! writes what the session and the broker produce.
//!
//! The task never blocks on one direction: reads, writes, the session's wake-ups
//! (deliveries, and close orders: takeover, kick), shutdown and the keep-alive
//! deadline are all branches of one `select!`. Backpressure: when more than
//! [`WRITE_HIGH_WATER`] bytes wait to be written, the task stops reading the
//! socket and stops pulling from the session queue, so a client that does not
//! read slows down only itself; messages for it then wait in its bounded queue.
//! A client that sends faster than its message or byte rate is slowed down the
//! same way, by not reading its socket (see `crate::limits`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use switchboard_broker::persist::{StoreError, Ticket};
use switchboard_broker::{
    message_from_publish, CloseReason, ConnectRequest, Connected, Metrics, SessionEntry,
};
use switchboard_broker::{Record, Route};
use switchboard_codec::{
    encode, Ack, ConnAck, ConnAckProperties, Connect, DecodeError, Decoder, Disconnect, Packet,
    ProtocolVersion, Publish, QoS, ReasonCode,
};
use switchboard_session::{InboundAliases, IncomingQos2, JournalEvent, KeepAlive, SharedMessage};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio_util::sync::CancellationToken;

use crate::limits::TokenBucket;
use crate::{Guards, Shared};

/// Above this many unwritten bytes the task stops reading and stops pulling
/// messages from the session queue until the socket drains.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Messages pulled from the session queue per wake-up, so one busy subscriber
/// cannot starve its own reads.
const POLL_BATCH: usize = 64;
/// Read buffer reserved while the client keeps the socket busy; grows with the
/// largest packet seen, up to the packet limit. An idle connection holds none:
/// the buffer is released whenever a read pass leaves it empty without having
/// filled it, so an idle client costs the few bytes `read_buf` reserves itself.
const READ_BUFFER: usize = 4 * 1024;
/// Passes a connection may have in the durable store at once (staged, handed
/// over, not yet durable). A connection keeps reading and staging while its
/// earlier batches are being written, so that one fsync carries several of
/// its passes instead of one; at this bound it stops reading until the oldest
/// completes, which is also how a client that sends faster than the disk
/// writes is slowed down. 32 passes of at most one read buffer each bound
/// what one connection holds back.
const MAX_PENDING_PASSES: usize = 32;
/// How long a closing connection may take to flush its last packets.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Why the main loop ended: what to tell the client and the broker.
struct Close {
    /// DISCONNECT reason for v5 clients; `None` = close without a DISCONNECT.
    send: Option<ReasonCode>,
    reason: CloseReason,
}

impl Close {
    fn protocol(code: ReasonCode) -> Close {
        Close {
            send: Some(code),
            reason: CloseReason::Abnormal,
        }
    }
}

/// An accepted connection, before its CONNECT: what the set-up needs. Boxed
/// and passed as one pointer, so that the task's future does not keep a copy
/// of every argument for the connection's whole life (an `async fn` keeps its
/// arguments in its state even after moving them on).
pub(crate) struct Setup<S> {
    pub(crate) stream: S,
    pub(crate) peer: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cancel: CancellationToken,
    /// The listener's auth and limits.
    pub(crate) policy: Arc<crate::ListenerPolicy>,
    /// The user name the TLS client certificate gives (see `crate::auth`).
    pub(crate) certificate: crate::auth::CertificateUser,
    /// Held until the connection ends (see [`Guards`]).
    pub(crate) guards: Guards,
}

impl<S> Setup<S> {
    /// Takes the stream out, for a transport handshake (TLS, WebSocket) that
    /// turns it into another; [`Setup::with_stream`] puts the result back.
    pub(crate) fn take_stream(self) -> (S, Setup<()>) {
        let Setup {
            stream,
            peer,
            shared,
            cancel,
            policy,
            certificate,
            guards,
        } = self;
        let rest = Setup {
            stream: (),
            peer,
            shared,
            cancel,
            policy,
            certificate,
            guards,
        };
        (stream, rest)
    }
}

impl Setup<()> {
    /// The connection on the stream a handshake made, with the user name
    /// its client certificate gives.
    pub(crate) fn with_stream<T>(
        self,
        stream: T,
        certificate: crate::auth::CertificateUser,
    ) -> Box<Setup<T>> {
        Box::new(Setup {
            stream,
            peer: self.peer,
            shared: self.shared,
            cancel: self.cancel,
            policy: self.policy,
            certificate,
            guards: self.guards,
        })
    }
}

/// A byte stream a connection is served on. Only a plain TCP socket can be
/// parked (see `crate::park`): TLS and WebSocket streams hold state of their
/// own, and in-memory pipes have no socket to watch.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// Whether [`Stream::into_socket`] can succeed; nothing tries to park a
    /// stream that cannot.
    const PARKABLE: bool = false;

    /// The bare socket, out of tokio's reactor, for parking. An error means
    /// the stream is gone (tokio could not let go of the socket, or the
    /// stream is not one that parks).
    fn into_socket(self) -> std::io::Result<std::net::TcpStream> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this transport does not park",
        ))
    }
}

impl Stream for tokio::net::TcpStream {
    const PARKABLE: bool = true;

    fn into_socket(self) -> std::io::Result<std::net::TcpStream> {
        self.into_std()
    }
}

impl Stream for tokio::io::DuplexStream {}

impl<S: Stream> Stream for tokio_rustls::server::TlsStream<S> {}

impl<S: Stream> Stream for crate::websocket::WebSocketIo<S> {}

/// A connected client: everything its task needs between packets, in one
/// heap block. The task's own future holds only this pointer and the state
/// of the wait (see [`Connection::serve`]); the set-up (CONNECT, login, the
/// broker's answer) ran in a future of its own that is freed by then.
struct Link<S> {
    stream: S,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    decoder: Decoder,
    cancel: CancellationToken,
    peer: SocketAddr,
    connection: Connection,
    /// Bytes were handed to the stream since its last flush.
    unflushed: bool,
    /// Whether the last read filled the read buffer: the client is sending
    /// faster than one buffer per read, so keep a full-size buffer for it.
    read_full: bool,
    /// When the connection last did anything (read, wrote, was woken): it
    /// parks once idle for `park_idle_after` since then.
    busy_at: Instant,
    /// Released when the connection ends, with this.
    guards: Guards,
}

/// How [`Link::serve`] ended.
enum Exit {
    Close(Close),
    /// Idle for `park_idle_after`, with nothing held: park it.
    Park,
}

/// A connected client parked while idle (see `crate::park`): its socket and
/// what its next task needs, without buffers, registration or task.
pub(crate) struct Parked {
    /// The peer's address is not kept (32 bytes): the socket tells it again.
    socket: std::net::TcpStream,
    decoder: Decoder,
    guards: Guards,
    state: ConnectionState,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Parked")
            .field("client_id", &self.state.entry.client_id())
            .field("generation", &self.state.generation)
            .finish_non_exhaustive()
    }
}

impl Parked {
    pub(crate) fn socket(&self) -> &std::net::TcpStream {
        &self.socket
    }

    /// When its keep alive runs out, if it has one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.state.keep_alive.deadline()
    }
}

/// What of a [`Connection`] outlives a pass: its state between packets, as
/// it starts and while it is parked.
///
/// Not the server's `Shared`: the lot holds parked connections, and the
/// server's `Shared` holds the lot, so a pointer back would keep a dropped
/// server's parked sockets open forever. The lot hands `Shared` back on resume.
struct ConnectionState {
    /// The listener's auth and limits.
    policy: Arc<crate::ListenerPolicy>,
    entry: Arc<SessionEntry>,
    generation: u64,
    version: ProtocolVersion,
    keep_alive: KeepAlive,
    aliases: InboundAliases,
    /// [MQTT-3.14.2-2]: a DISCONNECT may not set a non-zero expiry if CONNECT had 0.
    session_expiry_was_zero: bool,
    request_problem_information: bool,
    /// The client's Maximum Packet Size (v5 only).
    client_limit: Option<u32>,
    /// The user name the client logged in with, for the ACL checks.
    username: Option<Arc<str>>,
    /// PUBLISH packets the client may send (`RateLimits::client_messages`).
    /// Boxed, like `byte_rate`: rates are seldom configured, and every
    /// connection would otherwise carry 40 bytes for each.
    message_rate: Option<Box<TokenBucket>>,
    /// Bytes the client may send (`RateLimits::client_bytes`).
    byte_rate: Option<Box<TokenBucket>>,
}

/// Serves one connection: set-up, the packet loop, the close.
///
/// The stream may buffer writes (TLS, WebSocket): the task flushes it
/// whenever its own write buffer has been handed over.
pub(crate) async fn serve<S: Stream>(setup: Box<Setup<S>>) {
    // Boxed: once the client is connected, the set-up's state is freed
    // rather than kept in every idle connection's task.
    let Some(link) = Box::pin(establish(setup)).await else {
        return;
    };
    run(link).await;
}

/// The connected client's packet loop, until it closes or parks.
async fn run<S: Stream>(mut link: Box<Link<S>>) {
    loop {
        match link.serve().await {
            Exit::Close(close) => {
                link.close(close).await;
                return;
            }
            Exit::Park => match link.park() {
                Ok(()) => return,
                Err(back) => link = back,
            },
        }
    }
}

/// A parked connection's new task: from its parking lot, back to its
/// packet loop (see `crate::park`).
pub(crate) async fn resume(
    parked: Box<Parked>,
    token: u64,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    parked.state.entry.unparked(token);
    if let Some(link) = Link::unpark(*parked, shared, cancel) {
        run(link).await;
    }
}

/// From an accepted stream to a connected client: CONNECT within the connect
/// timeout, authentication, the broker's session, CONNACK queued. `None` when
/// the connection ended instead (everything is then already answered and
/// closed).
async fn establish<S: Stream>(setup: Box<Setup<S>>) -> Option<Box<Link<S>>> {
    let Setup {
        stream,
        peer,
        shared,
        cancel,
        policy,
        certificate,
        guards,
    } = *setup;
    let mut stream = stream;
    // Empty until the first read: a connection that never sends costs no buffer.
    let mut read_buffer = BytesMut::new();
    let mut decoder = Decoder::server(shared.options.broker.max_packet_size);
    let metrics = shared.broker.metrics();

    // Phase 1: a CONNECT within the connect timeout, or the socket is closed.
    let connect = tokio::select! {
        _ = cancel.cancelled() => return None,
        first = tokio::time::timeout(
            shared.options.connect_timeout,
            read_first_packet(&mut stream, &mut read_buffer, &mut decoder),
        ) => first,
    };
    let connect = match connect {
        Err(_) => {
            Metrics::incr(&metrics.connect_timeouts);
            tracing::debug!(%peer, "no CONNECT within the connect timeout; closing");
            return None;
        }
        Ok(Err(FirstPacketError::Io)) => return None,
        Ok(Err(FirstPacketError::Decode(error))) => {
            Metrics::incr(&metrics.protocol_errors);
            if error.reason_code() == ReasonCode::PACKET_TOO_LARGE {
                Metrics::incr(&metrics.packets_too_large);
            }
            tracing::debug!(%peer, %error, "bad CONNECT");
            // [MQTT-3.1.2-2]: answer in a form the client can read, then close. A 3.x
            // CONNECT that is merely invalid gets no CONNACK ([MQTT-3.1.4-1] of 3.1.1:
            // close without one); a v5 client may be told why (4.13.1).
            let version = error
                .connack_version()
                .or(decoder.version().filter(|version| version.is_v5()));
            if let Some(version) = version {
                let connack = ConnAck {
                    session_present: false,
                    reason_code: error.reason_code(),
                    properties: ConnAckProperties::default(),
                };
                let mut out = BytesMut::new();
                if encode(&Packet::ConnAck(connack), version, &mut out).is_ok() {
                    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, stream.write_all(&out)).await;
                }
            }
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, stream.shutdown()).await;
            return None;
        }
        Ok(Ok(connect)) => connect,
    };
    let version = connect.protocol;

    let mut write_buffer = BytesMut::new();

    // [MQTT-4.12.0-1]: enhanced authentication is not supported.
    if connect.properties.authentication_method.is_some() {
        refuse(&mut stream, version, ReasonCode::BAD_AUTHENTICATION_METHOD).await;
        return None;
    }
    // Authentication, before the broker sees the client: a refused client
    // must not take over or resume anybody's session.
    let mut connect = connect;
    let certified =
        match crate::auth::apply_certificate(&shared, &mut connect, &certificate, peer.ip()) {
            Ok(certified) => certified,
            Err(code) => {
                refuse(&mut stream, version, code).await;
                return None;
            }
        };
    if let Err(code) =
        crate::auth::login(&shared, &policy, &connect, peer.ip(), certified, &cancel).await
    {
        refuse(&mut stream, version, code).await;
        return None;
    }
    let username: Option<Arc<str>> = connect.username.as_deref().map(Arc::from);
    let request = ConnectRequest {
        connect: &connect,
        peer,
        username: username.clone(),
        realm: policy.realm,
    };
    let connected = match shared.broker.connect(request, now()) {
        Ok(connected) => connected,
        Err(code) => {
            tracing::debug!(%peer, client_id = %connect.client_id, %code, "CONNECT refused");
            refuse(&mut stream, version, code).await;
            return None;
        }
    };
    tracing::debug!(%peer, client_id = %connected.entry.client_id(), ?version, session_present = connected.session_present, "connected");
    // A persistent session must be on disk before the client is told it exists.
    if let Some(store) = shared
        .broker
        .store()
        .filter(|_| !connected.records.is_empty())
    {
        let records = connected.records.clone();
        if let Err(error) = store.append(records).wait().await {
            tracing::error!(%error, client_id = %connected.entry.client_id(), "cannot store session; refusing connection");
            shared.broker.disconnected(
                &connected.entry,
                connected.generation,
                CloseReason::Shutdown,
                now(),
            );
            let code = if error.is_disk_full() {
                ReasonCode::QUOTA_EXCEEDED
            } else {
                ReasonCode::UNSPECIFIED_ERROR
            };
            refuse(&mut stream, version, code).await;
            return None;
        }
    }
    let connack = connack_for(&shared, &connect, &connected);
    // [MQTT-3.1.2-24] (v5): nothing larger than the client's Maximum Packet Size.
    let client_limit = connect
        .properties
        .maximum_packet_size
        .filter(|_| version.is_v5());
    push(
        &mut write_buffer,
        &Packet::ConnAck(connack),
        version,
        metrics,
        client_limit,
    );
    for packet in &connected.resend {
        push(&mut write_buffer, packet, version, metrics, client_limit);
    }

    let state = ConnectionState {
        entry: connected.entry.clone(),
        generation: connected.generation,
        version,
        keep_alive: KeepAlive::new(connected.keep_alive, now()),
        aliases: InboundAliases::new(shared.options.broker.topic_alias_maximum),
        session_expiry_was_zero: connected.session_expiry == 0,
        request_problem_information: connect
            .properties
            .request_problem_information
            .unwrap_or(true),
        client_limit,
        username,
        message_rate: policy
            .rates
            .client_messages
            .map(|rate| Box::new(TokenBucket::new(rate, now()))),
        byte_rate: policy
            .rates
            .client_bytes
            .map(|rate| Box::new(TokenBucket::new(rate, now()))),
        policy,
    };
    let connection = Connection::new(state, shared);
    drop(connect);
    Some(Box::new(Link {
        stream,
        read_buffer,
        write_buffer,
        decoder,
        cancel,
        peer,
        connection,
        unflushed: false,
        read_full: false,
        busy_at: now(),
        guards,
    }))
}

impl Link<tokio::net::TcpStream> {
    /// A parked connection, running again on its socket (registered with
    /// tokio anew). `None` if the socket cannot be: the connection is then
    /// closed, and the broker told (as for any connection lost).
    fn unpark(parked: Parked, shared: Arc<Shared>, cancel: CancellationToken) -> Option<Box<Self>> {
        let Parked {
            socket,
            decoder,
            guards,
            state,
        } = parked;
        // Only for logs: a client that has gone (and is about to be found
        // gone) has no address any more.
        let peer = socket
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        // What the client sent while parked is read now, not at tokio's next
        // turn (a fresh registration reports readiness only then): a
        // keep-alive deadline that woke the connection must not win over a
        // PINGREQ that came in time, and nothing that woke it stays unread
        // should it park again (a later arrival is reported by whichever
        // epoll the socket is in). One read; more is reported as readiness.
        let mut read_buffer = BytesMut::new();
        let mut chunk = [0u8; READ_BUFFER];
        // EOF and errors are left to the first read on the tokio stream,
        // which finds them again.
        let arrived = match std::io::Read::read(&mut &socket, &mut chunk) {
            Ok(bytes) => chunk.get(..bytes).unwrap_or_default(),
            Err(_) => &[],
        };
        read_buffer.extend_from_slice(arrived);
        // On failure `from_std` has closed the socket: only the rest is left.
        let stream = match tokio::net::TcpStream::from_std(socket) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, client_id = %state.entry.client_id(), "cannot resume a parked connection; closing it");
                shared.broker.disconnected(
                    &state.entry,
                    state.generation,
                    CloseReason::Abnormal,
                    now(),
                );
                return None;
            }
        };
        let mut link = Box::new(Link {
            stream,
            read_buffer,
            write_buffer: BytesMut::new(),
            decoder,
            cancel,
            peer,
            connection: Connection::new(state, shared),
            unflushed: false,
            read_full: false,
            busy_at: now(),
            guards,
        });
        let arrived = link.read_buffer.len();
        if arrived > 0 {
            link.connection.count_read(arrived);
        }
        Some(link)
    }
}

impl<S: Stream> Link<S> {
    /// The packet loop: reads, writes, deliveries and close orders, until
    /// the connection must close, and why.
    ///
    /// While idle this future is what the connection's task holds (with the
    /// pointer to this `Link`): keep its locals few and short-lived.
    async fn serve(&mut self) -> Exit {
        // A clone, not a borrow of `self.connection`: the wake-up future
        // below lives across the branches that need the connection mutably.
        // Everything else is reached through `self`, so that the future keeps
        // one pointer rather than one per field.
        let entry = self.connection.state.entry.clone();
        // Packets that arrived together with CONNECT.
        if let Err(close) = self.connection.drain_packets(
            &mut self.read_buffer,
            &mut self.write_buffer,
            &mut self.decoder,
        ) {
            return Exit::Close(close);
        }
        if self.read_buffer.is_empty() {
            self.read_buffer = BytesMut::new();
        }
        if let Err(close) = self.connection.end_pass(&mut self.write_buffer) {
            return Exit::Close(close);
        }
        loop {
            // Registered before the checks below, so that a delivery or an
            // order that comes after them still wakes the `select!`.
            let notified = entry.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(close) = self.connection.ordered_close(&self.cancel) {
                return Exit::Close(close);
            }
            // Queued messages stay queued while the store holds the most passes
            // (what is pulled then would wait in them, outside the queue's bounds).
            if self.write_buffer.len() < WRITE_HIGH_WATER
                && self.connection.pending.len() < MAX_PENDING_PASSES
            {
                if let Err(close) = self.connection.pull_messages(&mut self.write_buffer) {
                    return Exit::Close(close);
                }
                if let Err(close) = self.connection.end_pass(&mut self.write_buffer) {
                    return Exit::Close(close);
                }
            }
            // Over its message or byte rate, the client is slowed down by not
            // reading its socket (see the `limits` module for why not 0x96);
            // keep alive waits too, since its packets wait unread. So one
            // timer serves both: the throttle's end, or else the keep-alive
            // deadline.
            // Likewise while reading waits for the store (the disk is slow,
            // not the client): no keep-alive deadline then.
            let (reading, waiting, wake_at) = {
                let throttle = self.connection.throttle_until(now());
                let store_bound = self.connection.pending.len() >= MAX_PENDING_PASSES;
                let reading = self.write_buffer.len() < WRITE_HIGH_WATER
                    && throttle.is_none()
                    && !store_bound;
                let waiting = self
                    .connection
                    .pending
                    .front()
                    .is_some_and(|pass| pass.ticket.is_some());
                let wake_at = match throttle {
                    Some(until) => Some(until),
                    None if store_bound => None,
                    None => self.connection.state.keep_alive.deadline(),
                };
                let park_at = self.park_at();
                let wake_at = match (wake_at, park_at) {
                    (Some(wake_at), Some(park_at)) => Some(wake_at.min(park_at)),
                    (wake_at, park_at) => wake_at.or(park_at),
                };
                (
                    reading,
                    waiting,
                    wake_at.map(tokio::time::Instant::from_std),
                )
            };
            if self.read_full {
                self.read_buffer.reserve(READ_BUFFER);
            }
            let sleep = wake_at.map(tokio::time::sleep_until);
            tokio::pin!(sleep);
            let event = std::future::poll_fn(|context| {
                self.poll_event(context, notified.as_mut(), sleep.as_mut(), reading, waiting)
            })
            .await;
            if !matches!(event, Event::Timer) {
                self.busy_at = now();
            }
            match event {
                Event::Written(written) => {
                    match written {
                        Ok(Written::Bytes(0)) | Err(_) => {
                            return Exit::Close(Close {
                                send: None,
                                reason: CloseReason::Abnormal,
                            })
                        }
                        Ok(Written::Bytes(bytes)) => {
                            self.connection.state.entry.count_sent(bytes as u64);
                            self.unflushed = true;
                        }
                        Ok(Written::Flushed) => self.unflushed = false,
                    }
                    if self.write_buffer.is_empty() {
                        // Drained: release it, so an idle connection holds no
                        // write buffer (encoding reserves a fresh one).
                        self.write_buffer = BytesMut::new();
                    }
                }
                Event::Read(Ok(Read { bytes: 0, .. })) | Event::Read(Err(_)) => {
                    return Exit::Close(Close {
                        send: None,
                        reason: CloseReason::Abnormal,
                    })
                }
                Event::Read(Ok(Read { bytes, full })) => {
                    let connection = &mut self.connection;
                    connection.count_read(bytes);
                    self.read_full = full;
                    if let Err(close) = connection.drain_packets(
                        &mut self.read_buffer,
                        &mut self.write_buffer,
                        &mut self.decoder,
                    ) {
                        return Exit::Close(close);
                    }
                    if self.read_buffer.is_empty() && !self.read_full {
                        // The socket had no more for now: release the buffer
                        // (and with it the memory the decoded packets do not share).
                        self.read_buffer = BytesMut::new();
                    }
                    if let Err(close) = connection.end_pass(&mut self.write_buffer) {
                        return Exit::Close(close);
                    }
                }
                Event::Stored(result) => {
                    let connection = &mut self.connection;
                    if let Err(close) = connection.complete_oldest(result, &mut self.write_buffer) {
                        return Exit::Close(close);
                    }
                    if let Err(close) = connection.release_completed(&mut self.write_buffer) {
                        return Exit::Close(close);
                    }
                }
                Event::Woken => {}
                Event::Timer => {
                    // The throttle's end, or the keep-alive deadline (never
                    // while throttled: the client's packets wait unread).
                    if !self.connection.throttled
                        && self.connection.state.keep_alive.is_expired(now())
                    {
                        // [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): 1.5 x keep alive without a packet.
                        Metrics::incr(&self.connection.shared.broker.metrics().keep_alive_timeouts);
                        return Exit::Close(Close::protocol(ReasonCode::KEEP_ALIVE_TIMEOUT));
                    }
                    if self.park_at().is_some_and(|at| at <= now()) {
                        return Exit::Park;
                    }
                }
            }
        }
    }

    /// When this connection parks if nothing happens first: `park_idle_after`
    /// past its last activity, provided it holds nothing (no bytes to write or
    /// flush, no partial packet, nothing waiting for the store, no throttle).
    /// `None` for streams that cannot park, or with parking off.
    fn park_at(&self) -> Option<Instant> {
        if !S::PARKABLE {
            return None;
        }
        let after = self.connection.shared.options.park_idle_after?;
        let connection = &self.connection;
        let idle = self.write_buffer.is_empty()
            && !self.unflushed
            && self.read_buffer.is_empty()
            && connection.pending.is_empty()
            && connection.held.is_empty()
            && connection.records.is_empty()
            && !connection.throttled;
        idle.then(|| self.busy_at + after)
    }

    /// Parks the connection (see `crate::park`): its task ends, and the lot
    /// resumes it on a new one. `Err` with the connection back when it may
    /// not park after all (its session has work, a close was ordered, the
    /// server shuts down): it carries on, and tries again only after
    /// another idle period.
    fn park(mut self: Box<Self>) -> Result<(), Box<Self>> {
        self.busy_at = now();
        if !S::PARKABLE {
            return Err(self);
        }
        let shared = self.connection.shared.clone();
        let Some(lot) = shared.parking.get() else {
            return Err(self);
        };
        let Some(token) = lot.reserve() else {
            return Err(self);
        };
        let entry = self.connection.state.entry.clone();
        if !entry.park(self.connection.state.generation, token) {
            lot.cancel(token.get());
            return Err(self);
        }
        // From here the session may unpark it at any moment: the lot holds
        // the wake-up until the slot is filled.
        let Link {
            stream,
            decoder,
            connection,
            guards,
            ..
        } = *self;
        let socket = match stream.into_socket() {
            Ok(socket) => socket,
            Err(error) => {
                // The stream is gone with its socket: so is the connection.
                lot.cancel(token.get());
                entry.unparked(token.get());
                tracing::warn!(%error, client_id = %entry.client_id(), "cannot park a connection; closing it");
                shared.broker.disconnected(
                    &entry,
                    connection.state.generation,
                    CloseReason::Abnormal,
                    now(),
                );
                return Ok(());
            }
        };
        let parked = Box::new(Parked {
            socket,
            decoder,
            guards,
            state: connection.state,
        });
        if let Err(parked) = lot.fill(token.get(), parked) {
            // Unparked while parking: it carries on, on a task of its own
            // (this one's stream type is gone with the socket).
            lot.respawn(token.get(), parked);
        }
        Ok(())
    }

    /// One turn of the wait, in priority order: write (or flush) what is
    /// buffered, read if `reading`, then the session's wake-up, then the
    /// timer. A hand-written `select!` over the one unsplit stream: no
    /// `tokio::io::split` (an `Arc` and a lock per connection) and no
    /// per-branch futures in the task. Cancel-safe: a turn that returns
    /// `Pending` has changed nothing.
    ///
    /// While the read buffer has no spare room (always, for an idle
    /// connection), the read goes to a stack buffer and is copied in, so an
    /// idle connection holds no read buffer even while waiting to read.
    fn poll_event(
        &mut self,
        context: &mut Context<'_>,
        notified: Pin<&mut Notified<'_>>,
        sleep: Pin<&mut Option<tokio::time::Sleep>>,
        reading: bool,
        waiting: bool,
    ) -> Poll<Event> {
        if !self.write_buffer.is_empty() {
            if let Poll::Ready(written) =
                Pin::new(&mut self.stream).poll_write(context, &self.write_buffer)
            {
                return Poll::Ready(Event::Written(written.map(|bytes| {
                    self.write_buffer.advance(bytes);
                    Written::Bytes(bytes)
                })));
            }
        } else if self.unflushed {
            // TLS and WebSocket streams hold written bytes until flushed (for
            // TCP the flush completes at once).
            if let Poll::Ready(flushed) = Pin::new(&mut self.stream).poll_flush(context) {
                return Poll::Ready(Event::Written(flushed.map(|()| Written::Flushed)));
            }
        }
        if reading {
            if let Poll::Ready(read) = self.poll_read(context) {
                return Poll::Ready(Event::Read(read));
            }
        }
        if waiting {
            // Cancel-safe: the ticket stays in the queue until the event is
            // handled, which pops it.
            if let Some(ticket) = self
                .connection
                .pending
                .front_mut()
                .and_then(|pass| pass.ticket.as_mut())
            {
                if let Poll::Ready(result) = ticket.poll_result(context) {
                    return Poll::Ready(Event::Stored(result));
                }
            }
        }
        if notified.poll(context).is_ready() {
            return Poll::Ready(Event::Woken);
        }
        if let Some(sleep) = sleep.as_pin_mut() {
            if sleep.poll(context).is_ready() {
                return Poll::Ready(Event::Timer);
            }
        }
        Poll::Pending
    }

    /// Reads into the read buffer: straight into its spare room if it has
    /// some (a busy client keeps a reserved buffer), else through a stack
    /// buffer of [`READ_BUFFER`] bytes.
    fn poll_read(&mut self, context: &mut Context<'_>) -> Poll<std::io::Result<Read>> {
        if self.read_buffer.capacity() > self.read_buffer.len() {
            let before = self.read_buffer.len();
            return tokio_util::io::poll_read_buf(
                Pin::new(&mut self.stream),
                context,
                &mut self.read_buffer,
            )
            .map_ok(|bytes| Read {
                bytes,
                full: before + bytes == self.read_buffer.capacity(),
            });
        }
        let mut chunk = [0u8; READ_BUFFER];
        let mut buffer = tokio::io::ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.stream).poll_read(context, &mut buffer) {
            Poll::Ready(Ok(())) => {
                let filled = buffer.filled();
                self.read_buffer.extend_from_slice(filled);
                Poll::Ready(Ok(Read {
                    bytes: filled.len(),
                    full: filled.len() == READ_BUFFER,
                }))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Ends the connection for `close`: finishes the pass, tells the broker,
    /// sends a v5 client the DISCONNECT, flushes, and closes the socket.
    async fn close(&mut self, close: Close) {
        let connection = &mut self.connection;
        let write_buffer = &mut self.write_buffer;
        // A pass that ended in a protocol error still carried out what came before the
        // bad packet (acknowledgements from the client, messages received): finish it,
        // and wait for every pass still in the store, so the store and the
        // subscribers see the same history as the client.
        connection.finish(write_buffer).await;

        // Tell the broker before the (up to CLOSE_FLUSH_TIMEOUT) flush and the close: a
        // client that sent DISCONNECT 0x00 and reconnects at once must not find its old
        // connection still attached, or the takeover would publish the Will that the
        // DISCONNECT discarded ([MQTT-3.14.4-3], [MQTT-3.1.2-10]). It also means that once
        // a client sees the socket close, the broker has finished with the connection.
        let shared = connection.shared.clone();
        shared.broker.disconnected(
            &connection.state.entry,
            connection.state.generation,
            close.reason,
            now(),
        );
        let version = connection.state.version;
        if let (Some(code), true) = (close.send, version.is_v5()) {
            let mut disconnect = Disconnect::with_reason(code);
            if !connection.state.request_problem_information {
                disconnect.reason_string = None;
            }
            push(
                write_buffer,
                &Packet::Disconnect(disconnect),
                version,
                shared.broker.metrics(),
                connection.state.client_limit,
            );
        }
        if !write_buffer.is_empty() {
            let _ = tokio::time::timeout(
                CLOSE_FLUSH_TIMEOUT,
                self.stream.write_all(&self.write_buffer),
            )
            .await;
        }
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, self.stream.shutdown()).await;
        tracing::debug!(peer = %self.peer, client_id = %self.connection.state.entry.client_id(), "connection closed");
    }
}

enum FirstPacketError {
    Io,
    Decode(DecodeError),
}

async fn read_first_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Box<Connect>, FirstPacketError> {
    loop {
        match decoder.decode(buffer) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(_)) => {
                // The decoder already rejects this ([MQTT-3.1.0-1]); be defensive.
                return Err(FirstPacketError::Io);
            }
            Ok(None) => {}
            Err(error) => return Err(FirstPacketError::Decode(error)),
        }
        match reader.read_buf(buffer).await {
            Ok(0) | Err(_) => return Err(FirstPacketError::Io),
            Ok(_) => {}
        }
    }
}

impl Connection {
    /// A connection with `state` and nothing in hand: as it starts, and as it
    /// resumes from parking.
    fn new(state: ConnectionState, shared: Arc<Shared>) -> Connection {
        Connection {
            shared,
            state,
            outgoing: Vec::new(),
            records: Vec::new(),
            barrier: false,
            held: Vec::new(),
            pending: VecDeque::new(),
            refused_qos2: Vec::new(),
            events: Vec::new(),
            throttled: false,
        }
    }
}

/// What one turn of the wait ([`Link::poll_event`]) brought.
enum Event {
    Written(std::io::Result<Written>),
    Read(std::io::Result<Read>),
    /// The batch of the oldest pending pass completed (see
    /// [`Connection::pending`]).
    Stored(Result<u64, StoreError>),
    /// The session's wake-up: something was queued, or a close ordered.
    Woken,
    /// The throttle's end or the keep-alive deadline.
    Timer,
}

/// A read that returned.
struct Read {
    /// Bytes read; 0 = end of stream.
    bytes: usize,
    /// Whether the read filled all the room it had: the client sends faster
    /// than one buffer per read.
    full: bool,
}

/// What a write turn did.
enum Written {
    /// Handed this many bytes of the write buffer to the stream.
    Bytes(usize),
    /// Flushed the stream.
    Flushed,
}

/// CONNACK with a failure code, then close ([MQTT-3.2.2-7] v5 / [MQTT-3.2.2-5] 3.1.1).
async fn refuse<W: AsyncWrite + Unpin>(writer: &mut W, version: ProtocolVersion, code: ReasonCode) {
    let connack = ConnAck {
        session_present: false,
        reason_code: code,
        properties: ConnAckProperties::default(),
    };
    let mut out = BytesMut::new();
    if encode(&Packet::ConnAck(connack), version, &mut out).is_ok() {
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, writer.write_all(&out)).await;
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, writer.shutdown()).await;
}

/// The CONNACK that tells a v5 client the server's real limits (3.2.2.3).
fn connack_for(shared: &Shared, connect: &Connect, connected: &Connected) -> ConnAck {
    let settings = &shared.options.broker;
    let mut properties = ConnAckProperties::default();
    if connect.protocol.is_v5() {
        let requested_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
        if connected.session_expiry != requested_expiry {
            properties.session_expiry_interval = Some(connected.session_expiry);
        }
        if settings.receive_maximum != u16::MAX {
            properties.receive_maximum = Some(settings.receive_maximum);
        }
        if settings.maximum_qos != QoS::ExactlyOnce {
            properties.maximum_qos = Some(settings.maximum_qos);
        }
        if !settings.retain_available {
            properties.retain_available = Some(false);
        }
        properties.maximum_packet_size = Some(settings.max_packet_size);
        properties.assigned_client_identifier = connected.assigned_client_id.clone();
        if settings.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(settings.topic_alias_maximum);
        }
        if !settings.wildcard_subscriptions {
            properties.wildcard_subscription_available = Some(false);
        }
        if !settings.subscription_identifiers {
            properties.subscription_identifiers_available = Some(false);
        }
        if !settings.shared_subscriptions {
            properties.shared_subscription_available = Some(false);
        }
        if connected.keep_alive != connect.keep_alive {
            properties.server_keep_alive = Some(connected.keep_alive);
        }
        if connect.properties.request_response_information == Some(true) {
            // A per-client prefix under which the client may put its response topics.
            properties.response_information = Some(format!(
                "switchboard/response/{}",
                connected.entry.client_id()
            ));
        }
    }
    ConnAck {
        // [MQTT-3.2.2-2]/[MQTT-3.2.2-3]: session present only when a session was resumed.
        session_present: connected.session_present,
        reason_code: ReasonCode::SUCCESS,
        properties,
    }
}

/// Encodes a packet into the write buffer, counting it.
/// Encodes a packet into the write buffer, counting it. `limit` is the client's
/// Maximum Packet Size (v5): a packet that would exceed it is not sent
/// ([MQTT-3.1.2-24]); a CONNACK is first cut down to its bare form (every
/// CONNACK property is optional), since the client cannot work without one.
fn push(
    out: &mut BytesMut,
    packet: &Packet,
    version: ProtocolVersion,
    metrics: &Metrics,
    limit: Option<u32>,
) {
    let before = out.len();
    match encode(packet, version, out) {
        Ok(()) => {
            let size = out.len() - before;
            if limit.is_some_and(|limit| size > limit as usize) {
                out.truncate(before);
                if let Packet::ConnAck(connack) = packet {
                    if !connack.properties.eq(&ConnAckProperties::default()) {
                        let bare = ConnAck {
                            properties: ConnAckProperties::default(),
                            ..connack.clone()
                        };
                        return push(out, &Packet::ConnAck(bare), version, metrics, limit);
                    }
                }
                Metrics::incr(&metrics.dropped_too_large);
                tracing::debug!(
                    packet = packet.name(),
                    size,
                    "packet over the client's maximum packet size; not sent"
                );
                return;
            }
            Metrics::add(&metrics.bytes_sent, size as u64);
            if let Packet::Publish(publish) = packet {
                Metrics::incr(&metrics.messages_sent);
                Metrics::record_publish(
                    &metrics.publish_sent_by_qos,
                    &metrics.bytes_sent_by_qos,
                    usize::from(publish.qos.as_u8()),
                    publish.payload.len(),
                );
            }
        }
        Err(error) => {
            tracing::warn!(%error, packet = packet.name(), "cannot encode packet; not sent");
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    /// What outlives the pass (and a parking).
    state: ConnectionState,
    /// Reused buffer for PUBLISH packets polled from the session; released when
    /// a poll finds the queue empty, so an idle subscriber holds no batch.
    outgoing: Vec<Publish>,
    /// Records for the durable store staged during the current pass (one read of
    /// packets, or one pull from the queue); appended as one batch at its end.
    records: Vec<Record>,
    /// Set once a staged record must be durable before the output that follows
    /// it: from then on, until the pass's batch is on disk, output is held.
    barrier: bool,
    /// Output of the current pass held behind the barrier (or behind earlier
    /// passes still pending), in order.
    held: Vec<Held>,
    /// Ended passes whose output waits for the store, oldest first. Output is
    /// released strictly in this order, each pass once its own batch and all
    /// before it are durable; while any pass is pending, all new output is
    /// held too, so nothing (not even the acknowledgement of a message that
    /// need not be kept) overtakes what an earlier pass holds
    /// ([MQTT-4.6.0-2], [MQTT-4.6.0-3]). At most [`MAX_PENDING_PASSES`].
    pending: VecDeque<PendingPass>,
    /// Inbound QoS 2 packet ids whose PUBREC was refused after a store
    /// failure while later passes were pending: a later pass may hold a
    /// PUBREC for the same id (the client resent the PUBLISH), which must not
    /// claim success for a message that was not kept. Cleared once nothing is
    /// pending.
    refused_qos2: Vec<u16>,
    /// Reused buffer for the session's journal events.
    events: Vec<JournalEvent>,
    /// Whether reading is paused for the rates, so that each pause is counted once.
    throttled: bool,
}

/// An ended pass waiting for the store.
struct PendingPass {
    /// The pass's own batch; `None` when it staged nothing that must be
    /// durable and only waits for the passes before it.
    ticket: Option<Ticket>,
    held: Vec<Held>,
    /// Inbound QoS 2 packet ids the batch records (abandoned if it fails).
    inbound_qos2: Vec<u16>,
}

/// Output waiting for the pass's records to be durable.
enum Held {
    Packet(Packet),
    /// A received message to hand to its subscribers.
    Deliver {
        route: Route,
        message: SharedMessage,
    },
}

impl Connection {
    /// Why the session no longer has this connection attached: the order
    /// that detached it (takeover, session deleted), if the task has not seen
    /// it yet; otherwise a close without DISCONNECT.
    fn detached(&self) -> Close {
        self.broker_order().unwrap_or(Close {
            send: None,
            reason: CloseReason::Abnormal,
        })
    }

    /// The close the broker ordered for this connection (takeover, kick,
    /// session deleted, shutdown), if any. Two atomic loads when there is none.
    ///
    /// Shutdown needs no `select!` branch of its own (a cancellation future
    /// is 72 bytes in every idle task): the server cancels `cancel`, then
    /// orders every attached connection closed ([`crate::RunningServer`]'s
    /// shutdown watcher), and a task checks `cancel` here, after registering
    /// for wake-ups, so that one attached in between sees it.
    fn ordered_close(&self, cancel: &CancellationToken) -> Option<Close> {
        if cancel.is_cancelled() {
            return Some(Close {
                send: Some(ReasonCode::SERVER_SHUTTING_DOWN),
                reason: CloseReason::Shutdown,
            });
        }
        self.broker_order()
    }

    /// The close the broker ordered for this connection, if any. One atomic
    /// load when there is none.
    fn broker_order(&self) -> Option<Close> {
        let code = self.state.entry.close_order(self.state.generation)?;
        if code == ReasonCode::SESSION_TAKEN_OVER {
            // The wake-up this task last consumed may have been a delivery
            // for the connection that took over: pass it on.
            self.state.entry.wake();
        }
        // For a takeover, the broker has already dealt with the will and the
        // session; `disconnected` then finds another generation and does nothing.
        Some(Close {
            send: Some(code),
            reason: CloseReason::Abnormal,
        })
    }

    /// Counts `bytes` read from the client: the broker's and the session's
    /// byte counts, and the client's byte rate.
    fn count_read(&mut self, bytes: usize) {
        Metrics::add(&self.shared.broker.metrics().bytes_received, bytes as u64);
        self.state.entry.count_received(bytes as u64);
        if let Some(bucket) = &mut self.state.byte_rate {
            bucket.charge(now(), bytes as u64);
        }
    }

    /// `None` while the client is within its message and byte rates; otherwise
    /// when reading may resume. Counts each new pause.
    fn throttle_until(&mut self, now: Instant) -> Option<Instant> {
        let until = [&self.state.message_rate, &self.state.byte_rate]
            .into_iter()
            .flatten()
            .filter_map(|bucket| bucket.resume_at(now))
            .max();
        if until.is_some() && !self.throttled {
            Metrics::incr(&self.shared.broker.metrics().clients_throttled);
            tracing::debug!(client_id = %self.state.entry.client_id(), "over its message or byte rate; reading paused");
        }
        self.throttled = until.is_some();
        until
    }

    /// Moves queued messages into the write buffer, up to a batch.
    fn pull_messages(&mut self, write_buffer: &mut BytesMut) -> Result<(), Close> {
        let shared = self.shared.clone();
        let metrics = shared.broker.metrics();
        self.outgoing.clear();
        let drops = self.state.entry.poll_publishes(
            self.state.generation,
            now(),
            POLL_BATCH,
            &mut self.outgoing,
            &mut self.events,
        );
        self.stage_journal();
        match drops {
            None => return Err(self.detached()),
            Some(drops) => metrics.record_drops(&drops),
        }
        if self.outgoing.is_empty() {
            // Nothing queued: do not keep a batch's capacity while idle.
            self.outgoing = Vec::new();
            return Ok(());
        }
        let mut outgoing = std::mem::take(&mut self.outgoing);
        for publish in outgoing.drain(..) {
            self.emit(write_buffer, Packet::Publish(publish));
        }
        self.outgoing = outgoing;
        Ok(())
    }

    /// Converts the session's journal events into staged records.
    fn stage_journal(&mut self) {
        if !self.events.is_empty() {
            self.barrier |= self.shared.broker.journal_records(
                &self.state.entry,
                &self.events,
                &mut self.records,
            );
            self.events.clear();
        }
    }

    /// Whether this connection's session is kept in the durable store.
    fn durable(&self) -> bool {
        self.state.entry.is_persistent() && self.shared.broker.store().is_some()
    }

    /// Ends a pass: appends the staged records as one batch and queues what
    /// the pass held behind it (and behind the passes still pending), then
    /// releases whatever has become durable. Never waits: the connection
    /// reads on while the batch is written (see [`Connection::pending`]).
    fn end_pass(&mut self, write_buffer: &mut BytesMut) -> Result<(), Close> {
        let records = std::mem::take(&mut self.records);
        let barrier = std::mem::take(&mut self.barrier);
        let mut inbound_qos2 = Vec::new();
        let ticket = match self.shared.broker.store() {
            Some(store) if !records.is_empty() => {
                if barrier {
                    inbound_qos2.extend(records.iter().filter_map(|record| match record {
                        Record::InboundQos2 { packet_id, .. } => Some(*packet_id),
                        _ => None,
                    }));
                    Some(store.append(records))
                } else {
                    // Nobody waits for these (acknowledgements from the client, queue
                    // bookkeeping): a failed write still leaves them in the store's
                    // state, and the checkpoint the failure makes due writes them.
                    // They keep their place in the log's order all the same.
                    store.append_detached(records);
                    None
                }
            }
            _ => None,
        };
        let held = std::mem::take(&mut self.held);
        if ticket.is_none() && self.pending.is_empty() {
            return self.release(Ok(()), held, write_buffer);
        }
        if ticket.is_some() || !held.is_empty() {
            self.pending.push_back(PendingPass {
                ticket,
                held,
                inbound_qos2,
            });
        }
        self.release_completed(write_buffer)
    }

    /// Releases, in order, the pending passes whose batches have completed,
    /// up to the first that has not.
    fn release_completed(&mut self, write_buffer: &mut BytesMut) -> Result<(), Close> {
        loop {
            let result = match self.pending.front_mut() {
                None => break,
                Some(pass) => match &mut pass.ticket {
                    None => Ok(0),
                    Some(ticket) => match ticket.try_result() {
                        Some(result) => result,
                        None => break,
                    },
                },
            };
            self.complete_oldest(result, write_buffer)?;
        }
        if self.pending.is_empty() {
            self.refused_qos2.clear();
        }
        Ok(())
    }

    /// Releases (or refuses) the oldest pending pass, whose batch completed
    /// with `result`.
    fn complete_oldest(
        &mut self,
        result: Result<u64, StoreError>,
        write_buffer: &mut BytesMut,
    ) -> Result<(), Close> {
        let Some(pass) = self.pending.pop_front() else {
            return Ok(());
        };
        let result = result.map(|_| ());
        if result.is_err() {
            // What was held is refused: its inbound QoS 2 ids must start new
            // messages ([MQTT-4.3.3-9]; a 3.x client, which is disconnected instead
            // of told, resends the PUBLISH). The store needs nothing undone: a
            // batch whose write failed never reaches its state, so no checkpoint
            // writes it.
            for packet_id in pass.inbound_qos2 {
                let _ = self
                    .state
                    .entry
                    .with_session(self.state.generation, |session| {
                        session.abandon_incoming_qos2(packet_id)
                    });
                if !self.pending.is_empty() {
                    self.refused_qos2.push(packet_id);
                }
            }
        }
        self.release(result, pass.held, write_buffer)
    }

    /// At the end of the connection: ends the current pass and waits for
    /// every pending one, releasing each in order (deliveries happen, packets
    /// go to the write buffer for the final flush), so that what the store
    /// holds was also carried out.
    async fn finish(&mut self, write_buffer: &mut BytesMut) {
        let _ = self.end_pass(write_buffer);
        while !self.pending.is_empty() {
            let result = oldest_ticket(&mut self.pending).await;
            let _ = self.complete_oldest(result, write_buffer);
            let _ = self.release_completed(write_buffer);
        }
    }

    /// Writes (or, after a store failure, refuses) what was held.
    fn release(
        &mut self,
        result: Result<(), StoreError>,
        held: Vec<Held>,
        write_buffer: &mut BytesMut,
    ) -> Result<(), Close> {
        if held.is_empty() {
            return Ok(());
        }
        let broker = self.shared.broker.clone();
        let metrics = broker.metrics();
        let error = match result {
            Ok(()) => return self.release_durable(held, write_buffer),
            Err(error) => error,
        };
        // Nothing held may claim success now: messages are refused (v5 reason
        // code; 3.x has none, so the connection closes and the client resends).
        tracing::error!(%error, client_id = %self.state.entry.client_id(), "durable store failed; refusing messages");
        let code = if error.is_disk_full() {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        let mut close = false;
        // First sends of PUBLISH packets that never reach the client.
        let mut unsent = Vec::new();
        for item in held {
            match item {
                Held::Deliver { .. } => Metrics::incr(&metrics.store_refusals),
                Held::Packet(Packet::Publish(publish)) => {
                    if let (Some(packet_id), false) = (publish.packet_id, publish.dup) {
                        unsent.push(packet_id);
                    }
                    close = true;
                }
                Held::Packet(Packet::PubAck(ack)) if self.state.version.is_v5() => {
                    let refusal = Ack::with_reason(ack.packet_id, code);
                    push(
                        write_buffer,
                        &Packet::PubAck(refusal),
                        self.state.version,
                        metrics,
                        self.state.client_limit,
                    );
                }
                Held::Packet(Packet::PubRec(ack)) if self.state.version.is_v5() => {
                    let _ = self
                        .state
                        .entry
                        .with_session(self.state.generation, |session| {
                            session.abandon_incoming_qos2(ack.packet_id)
                        });
                    let refusal = Ack::with_reason(ack.packet_id, code);
                    push(
                        write_buffer,
                        &Packet::PubRec(refusal),
                        self.state.version,
                        metrics,
                        self.state.client_limit,
                    );
                }
                Held::Packet(_) => close = true,
            }
        }
        // The batch with their `OutboundSent` failed, so the log still has
        // these messages queued: the session takes the sends back too (last
        // first, so they keep their order at the head of the queue), and the
        // next connection sends them as new. Passes already pending after
        // this one keep their own outcome, so a later PUBLISH that was made
        // durable goes out (or is resent) before these: order can change
        // across a store failure, nothing is lost or duplicated.
        if !unsent.is_empty() {
            let _ = self
                .state
                .entry
                .with_session(self.state.generation, |session| {
                    for packet_id in unsent.iter().rev() {
                        session.unsend(*packet_id);
                    }
                });
        }
        if close {
            Err(Close::protocol(code))
        } else {
            Ok(())
        }
    }

    /// Releases a pass whose batch (and every one before it) is durable:
    /// packets go out, messages to their subscribers. Only after a refused
    /// pass with later ones pending is anything still refused: a PUBREC for
    /// an inbound QoS 2 id that refusal abandoned (see
    /// [`Connection::refused_qos2`], empty otherwise).
    fn release_durable(
        &mut self,
        held: Vec<Held>,
        write_buffer: &mut BytesMut,
    ) -> Result<(), Close> {
        let broker = self.shared.broker.clone();
        let metrics = broker.metrics();
        let mut close = false;
        for item in held {
            match item {
                Held::Packet(Packet::PubRec(ack)) if self.refused_qos2.contains(&ack.packet_id) => {
                    if self.state.version.is_v5() {
                        let refusal =
                            Ack::with_reason(ack.packet_id, ReasonCode::UNSPECIFIED_ERROR);
                        push(
                            write_buffer,
                            &Packet::PubRec(refusal),
                            self.state.version,
                            metrics,
                            self.state.client_limit,
                        );
                    } else {
                        close = true;
                    }
                }
                Held::Packet(packet) => push(
                    write_buffer,
                    &packet,
                    self.state.version,
                    metrics,
                    self.state.client_limit,
                ),
                Held::Deliver { route, message } => {
                    broker.deliver_route(route, message, now());
                }
            }
        }
        if close {
            Err(Close::protocol(ReasonCode::UNSPECIFIED_ERROR))
        } else {
            Ok(())
        }
    }

    fn drain_packets(
        &mut self,
        read_buffer: &mut BytesMut,
        write_buffer: &mut BytesMut,
        decoder: &mut Decoder,
    ) -> Result<(), Close> {
        loop {
            match decoder.decode(read_buffer) {
                Ok(Some(packet)) => {
                    // Keep alive counts whole control packets ([MQTT-3.1.2-22] v5,
                    // [MQTT-3.1.2-24] 3.1.1): bytes of an unfinished packet trickled in
                    // slowly must not hold the connection open.
                    self.state.keep_alive.on_activity(now());
                    self.handle_packet(packet, write_buffer)?;
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    let metrics = self.shared.broker.metrics();
                    Metrics::incr(&metrics.protocol_errors);
                    if error.reason_code() == ReasonCode::PACKET_TOO_LARGE {
                        Metrics::incr(&metrics.packets_too_large);
                    }
                    tracing::debug!(client_id = %self.state.entry.client_id(), %error, "malformed packet; closing");
                    return Err(Close::protocol(error.reason_code()));
                }
            }
        }
    }

    /// Whether output must be held: behind a barrier in this pass, or behind
    /// passes still waiting for the store.
    fn holding(&self) -> bool {
        self.barrier || !self.pending.is_empty()
    }

    /// Sends a packet: into the write buffer, or behind the barrier if output is
    /// being held for durable records.
    fn emit(&mut self, write_buffer: &mut BytesMut, packet: Packet) {
        if self.holding() {
            self.held.push(Held::Packet(packet));
        } else {
            push(
                write_buffer,
                &packet,
                self.state.version,
                self.shared.broker.metrics(),
                self.state.client_limit,
            );
        }
    }

    /// The session lock for this connection, or a close if the session was taken
    /// over. What the session journals meanwhile is staged for the store.
    fn session<R>(
        &mut self,
        f: impl FnOnce(&mut switchboard_session::Session) -> R,
    ) -> Result<R, Close> {
        let events = &mut self.events;
        let result = self
            .state
            .entry
            .with_session(self.state.generation, |session| {
                let result = f(session);
                if session.is_journaling() {
                    session.take_journal(events);
                }
                result
            })
            .ok_or_else(|| self.detached())?;
        self.stage_journal();
        Ok(result)
    }

    fn handle_packet(&mut self, packet: Packet, write_buffer: &mut BytesMut) -> Result<(), Close> {
        let broker = self.shared.broker.clone();
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, write_buffer),
            Packet::PubAck(ack) => {
                // An acknowledgement for an unknown id (e.g. after a resend) is ignored.
                let _ = self.session(|s| s.handle_puback(ack.packet_id))?;
                Ok(())
            }
            Packet::PubRec(ack) => {
                let release = self.session(|s| s.handle_pubrec(&ack))?;
                let release = match release {
                    Ok(release) => release,
                    // PUBREC for an id we don't know: answer PUBREL 0x92 so the client's flow ends.
                    Err(_) if self.state.version.is_v5() => Some(Ack::with_reason(
                        ack.packet_id,
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                    )),
                    Err(_) => Some(Ack::new(ack.packet_id)),
                };
                if let Some(release) = release {
                    self.emit(write_buffer, Packet::PubRel(release));
                }
                Ok(())
            }
            Packet::PubRel(ack) => {
                let code = self.session(|s| s.handle_pubrel(ack.packet_id))?;
                let code = if self.state.version.is_v5() {
                    code
                } else {
                    ReasonCode::SUCCESS
                };
                if self.durable() {
                    // The packet id may be reused once PUBCOMP is out: its release must
                    // be durable first, or a restart would take the reuse for a resend.
                    self.records.push(Record::InboundReleased {
                        client_id: self.state.entry.client_id().to_string(),
                        packet_id: ack.packet_id,
                    });
                    self.barrier = true;
                }
                self.emit(
                    write_buffer,
                    Packet::PubComp(Ack::with_reason(ack.packet_id, code)),
                );
                Ok(())
            }
            Packet::PubComp(ack) => {
                let _ = self.session(|s| s.handle_pubcomp(ack.packet_id))?;
                Ok(())
            }
            Packet::Subscribe(subscribe) => {
                let staged = self.records.len();
                // Filters the ACL refuses never reach the broker (SUBACK 0x87 / 0x80).
                let check = crate::auth::SubscribeCheck::new(
                    &self.shared,
                    &self.state.policy.auth,
                    self.state.entry.client_id(),
                    self.state.username.as_deref(),
                    subscribe,
                );
                let suback = broker
                    .subscribe(
                        &self.state.entry,
                        self.state.generation,
                        &check.allowed,
                        now(),
                        &mut self.records,
                    )
                    .map_err(Close::protocol)?;
                let suback = check.merge(suback);
                // SUBACK only once the subscription would survive a restart.
                self.barrier |= self.records.len() > staged;
                self.emit(write_buffer, Packet::SubAck(suback));
                Ok(())
            }
            Packet::Unsubscribe(unsubscribe) => {
                let unsuback =
                    broker.unsubscribe(&self.state.entry, &unsubscribe, &mut self.records);
                self.emit(write_buffer, Packet::UnsubAck(unsuback));
                Ok(())
            }
            Packet::PingReq => {
                self.emit(write_buffer, Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                if self.state.session_expiry_was_zero
                    && disconnect.session_expiry_interval.is_some_and(|e| e > 0)
                {
                    // [MQTT-3.14.2-2]
                    return Err(Close::protocol(ReasonCode::PROTOCOL_ERROR));
                }
                let session_expiry = disconnect.session_expiry_interval;
                let reason = if disconnect.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
                    CloseReason::WithWill { session_expiry }
                } else {
                    CloseReason::Normal { session_expiry }
                };
                Err(Close { send: None, reason })
            }
            Packet::Connect(_) => {
                // [MQTT-3.1.0-2]: a second CONNECT is a protocol error.
                Err(Close::protocol(ReasonCode::PROTOCOL_ERROR))
            }
            // AUTH without an authentication method in CONNECT, or packets only a
            // server sends: protocol errors ([MQTT-4.12.0-?], 4.13).
            Packet::Auth(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => Err(Close::protocol(ReasonCode::PROTOCOL_ERROR)),
        }
    }

    fn handle_publish(
        &mut self,
        mut publish: Publish,
        write_buffer: &mut BytesMut,
    ) -> Result<(), Close> {
        let broker = self.shared.broker.clone();
        let settings = &self.shared.options.broker;
        let metrics = broker.metrics();
        Metrics::incr(&metrics.messages_received);
        if let Some(bucket) = &mut self.state.message_rate {
            bucket.charge(now(), 1);
        }
        Metrics::record_publish(
            &metrics.publish_received_by_qos,
            &metrics.bytes_received_by_qos,
            usize::from(publish.qos.as_u8()),
            publish.payload.len(),
        );
        if self.state.version.is_v5() {
            if !publish.properties.subscription_identifiers.is_empty() {
                // [MQTT-3.3.4-6]: only the server puts Subscription Identifiers in a PUBLISH.
                return Err(Close::protocol(ReasonCode::PROTOCOL_ERROR));
            }
            self.state
                .aliases
                .resolve(&mut publish)
                .map_err(Close::protocol)?;
        }
        if switchboard_topic::validate_topic_name(&publish.topic, &settings.topic_limits).is_err() {
            Metrics::incr(&metrics.topic_names_refused);
            return Err(Close::protocol(ReasonCode::TOPIC_NAME_INVALID));
        }
        if publish.qos > settings.maximum_qos {
            // [MQTT-3.2.2-11]: QoS above Maximum QoS is answered with DISCONNECT 0x9B.
            return Err(Close::protocol(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if publish.retain && !settings.retain_available {
            // [MQTT-3.2.2-14]
            return Err(Close::protocol(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
        let packet_id = publish.packet_id.unwrap_or(0);
        if !self.state.policy.auth.can_publish(
            self.state.entry.client_id(),
            self.state.username.as_deref(),
            &publish.topic,
        ) {
            // Dropped, retained or not. v5 tells the client with 0x87 on PUBACK/PUBREC
            // (a QoS 2 flow ends there). 3.1.1 has no way to say it: the server MUST
            // acknowledge positively or close the connection [MQTT-3.3.5-2]; like
            // Mosquitto we acknowledge, so the client does not resend forever, and a
            // QoS 2 flow completes with PUBREL/PUBCOMP as usual.
            Metrics::incr(&metrics.publish_not_authorized);
            tracing::debug!(client_id = %self.state.entry.client_id(), user = ?self.state.username, topic = %publish.topic, "publish not authorized; dropped");
            let code = if self.state.version.is_v5() {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            match publish.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.emit(
                        write_buffer,
                        Packet::PubAck(Ack::with_reason(packet_id, code)),
                    );
                }
                QoS::ExactlyOnce => {
                    self.emit(
                        write_buffer,
                        Packet::PubRec(Ack::with_reason(packet_id, code)),
                    );
                }
            }
            return Ok(());
        }
        // [MQTT-3.3.2-4]: a payload declared UTF-8 that is not.
        if publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            return match publish.qos {
                QoS::AtMostOnce => Err(Close::protocol(ReasonCode::PAYLOAD_FORMAT_INVALID)),
                QoS::AtLeastOnce => {
                    self.emit(
                        write_buffer,
                        Packet::PubAck(Ack::with_reason(
                            packet_id,
                            ReasonCode::PAYLOAD_FORMAT_INVALID,
                        )),
                    );
                    Ok(())
                }
                QoS::ExactlyOnce => {
                    self.emit(
                        write_buffer,
                        Packet::PubRec(Ack::with_reason(
                            packet_id,
                            ReasonCode::PAYLOAD_FORMAT_INVALID,
                        )),
                    );
                    Ok(())
                }
            };
        }
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            let receive_maximum = usize::from(settings.receive_maximum);
            let (status, pending) = self.session(|s| {
                let status = s.incoming_qos2(packet_id);
                (status, s.incoming_qos2_len())
            })?;
            match status {
                IncomingQos2::Duplicate => {
                    // Exactly once: already routed; acknowledge again ([MQTT-4.3.3-?]).
                    self.emit(write_buffer, Packet::PubRec(Ack::new(packet_id)));
                    return Ok(());
                }
                IncomingQos2::New if self.state.version.is_v5() && pending > receive_maximum => {
                    // [MQTT-3.3.4-7] (v5): more unacknowledged QoS 2 than the Receive Maximum
                    // we announced. 3.x has no Receive Maximum (a 3.1.1 client may keep any
                    // number in flight); there the packet id space bounds the set.
                    return Err(Close::protocol(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
                }
                IncomingQos2::New => {}
            }
            if self.durable() {
                // Exactly once across a restart: the packet id must be remembered
                // before PUBREC tells the client the message arrived.
                self.records.push(Record::InboundQos2 {
                    client_id: self.state.entry.client_id().to_string(),
                    packet_id,
                });
                self.barrier = true;
            }
        }
        let mut message = message_from_publish(publish, broker.next_message_id(), now());
        let route = broker.route(Some(self.state.entry.key()), &message);
        let quota_exceeded = route.quota_exceeded() && qos != QoS::AtMostOnce;
        let code = if !self.state.version.is_v5() {
            // 3.x has no negative acknowledgement: a persistent session that
            // could not queue the message, or a full retained store, is only
            // counted.
            ReasonCode::SUCCESS
        } else if quota_exceeded {
            // Other subscribers still get the message; this tells the publisher
            // that a persistent session's queue or the retained store could not
            // take it (see `Route::quota_exceeded`).
            ReasonCode::QUOTA_EXCEEDED
        } else if route.is_empty() {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        if quota_exceeded {
            Metrics::incr(&metrics.publish_quota_exceeded);
        }
        if code == ReasonCode::QUOTA_EXCEEDED && qos == QoS::ExactlyOnce {
            // A PUBREC of 0x80 or more ends the QoS 2 flow: the packet id starts
            // a new message next time, as after a store refusal.
            self.session(|s| s.abandon_incoming_qos2(packet_id))?;
            if self.durable() {
                self.records.push(Record::InboundReleased {
                    client_id: self.state.entry.client_id().to_string(),
                    packet_id,
                });
            }
        }
        // A message that must survive a crash is acknowledged and delivered only
        // once it is on disk; anything after it on this connection waits too, so
        // acknowledgements stay in order ([MQTT-4.6.0-2]).
        let staged = self.records.len();
        if broker.stage_publish(&route, &message, &mut self.records) {
            self.barrier = true;
            switchboard_broker::persist::share_stored_payload(
                &mut message,
                self.records.get(staged..).unwrap_or_default(),
            );
        }
        if self.holding() {
            self.held.push(Held::Deliver { route, message });
        } else {
            broker.deliver_route(route, message, now());
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.emit(
                write_buffer,
                Packet::PubAck(Ack::with_reason(packet_id, code)),
            ),
            QoS::ExactlyOnce => self.emit(
                write_buffer,
                Packet::PubRec(Ack::with_reason(packet_id, code)),
            ),
        }
        Ok(())
    }
}

/// The outcome of the oldest pending pass's batch. Cancel-safe: the ticket
/// stays in the queue until the caller pops it after `Ready`. A pass without
/// a ticket of its own is ready as soon as it is the oldest; with nothing
/// pending this never completes.
async fn oldest_ticket(pending: &mut VecDeque<PendingPass>) -> Result<u64, StoreError> {
    std::future::poll_fn(|context| match pending.front_mut() {
        Some(PendingPass {
            ticket: Some(ticket),
            ..
        }) => ticket.poll_result(context),
        Some(_) => Poll::Ready(Ok(0)),
        None => Poll::Pending,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a one-argument function returns, without calling it.
    fn future_size_1<F, A, Fut>(_: &F) -> usize
    where
        F: Fn(A) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// The same for two arguments.
    fn future_size_2<F, A, B, Fut>(_: &F) -> usize
    where
        F: Fn(A, B) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connection task holds its whole `async` state machine for as long
    /// as it lives, idle or not: it must stay small next to the per-connection
    /// budget (Mosquitto spends under 1 KB per idle client). The set-up and the
    /// TLS and WebSocket handshakes are boxed and freed once done, so what is
    /// left is the wait of an idle connection.
    #[test]
    fn the_connection_task_stays_small() {
        let serve_size = future_size_1(&serve::<tokio::net::TcpStream>);
        // What the listener spawns for every socket, whatever its transport.
        let task_size = future_size_2(&crate::transport::serve);
        eprintln!("connection future: {serve_size} bytes; spawned task future: {task_size} bytes");
        // Debug builds lay futures out less tightly than release builds
        // (release: 360 and 376 bytes when this was written).
        assert!(
            serve_size <= 1024,
            "connection future is {serve_size} bytes"
        );
        assert!(
            task_size <= 1024,
            "spawned task future is {task_size} bytes"
        );
    }
}
