//! The network side of Switchboard: listeners, one task per connection, the
//! timer task, and graceful shutdown.
//!
//! Shutdown order: stop accepting, tell each connection through its own
//! cancellation token (v5 clients get DISCONNECT 0x8B), wait for the
//! connection tasks to finish (bounded), then return.

mod auth;
mod connection;
mod limits;
mod park;
mod subject;
mod transport;
mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use limits::{Rate, RateLimits};
pub use switchboard_auth::Auth;
use switchboard_broker::{Broker, Settings};
pub use switchboard_tls::{Certificates, ReloadError, TlsError, TlsOptions};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
pub use websocket::{WebSocketOptions, DEFAULT_WEBSOCKET_PATH};

/// How long shutdown waits for connections to say goodbye before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often broker timers (will delay, session expiry) are checked.
const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// The transport a listener speaks, with what that transport needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS.
    Tls(TlsOptions),
    /// MQTT over WebSocket (binary frames; HTTP upgrade on the path).
    Ws(WebSocketOptions),
    /// MQTT over WebSocket over TLS.
    Wss(TlsOptions, WebSocketOptions),
}

impl ListenerKind {
    /// `tcp`, `tls`, `ws` or `wss`, as in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls(_) => "tls",
            ListenerKind::Ws(_) => "ws",
            ListenerKind::Wss(..) => "wss",
        }
    }

    /// The TLS settings of a `tls` or `wss` listener.
    pub fn tls(&self) -> Option<&TlsOptions> {
        match self {
            ListenerKind::Tls(tls) | ListenerKind::Wss(tls, _) => Some(tls),
            ListenerKind::Tcp | ListenerKind::Ws(_) => None,
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    pub name: String,
    pub kind: ListenerKind,
    pub address: SocketAddr,
    /// 0 = only the global limit applies.
    pub max_connections: usize,
    /// Whether clients without a user name may connect on this listener:
    /// `Some` overrides both `ServerOptions::allow_anonymous` and the
    /// loopback default; `None` leaves the decision to them.
    pub allow_anonymous: Option<bool>,
    /// This listener's own password file and ACL, in place of
    /// `ServerOptions::auth` (`None`: the server's apply). Its users are a
    /// separate realm: a session made here is not resumed by a same-named
    /// user of another realm, and its deliveries are checked against this
    /// ACL. Pass the same `Arc` to several listeners to share one realm.
    pub auth: Option<Arc<Auth>>,
    /// This listener's own rate limits, all three in place of
    /// `ServerOptions::rates` (`None`: the server's apply). Connections per
    /// address are then counted for this listener alone.
    pub rates: Option<RateLimits>,
}

impl Default for ListenerOptions {
    /// A plain TCP listener named `mqtt` on a free loopback port, with no
    /// limit or auth setting of its own.
    fn default() -> ListenerOptions {
        ListenerOptions {
            name: "mqtt".to_owned(),
            kind: ListenerKind::Tcp,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 0,
            allow_anonymous: None,
            auth: None,
            rates: None,
        }
    }
}

/// Where the broker keeps what must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Nothing on disk: a restart loses sessions, queued and retained messages.
    Memory,
    /// The durable log in `data_dir`, fsynced before anything that must be
    /// kept is acknowledged.
    Sync { data_dir: std::path::PathBuf },
    /// The durable log in `data_dir`, fsynced every `interval`: acknowledged
    /// messages survive a crash of the process, but a power loss can lose up
    /// to one interval of them.
    Periodic {
        data_dir: std::path::PathBuf,
        interval: Duration,
    },
}

/// Everything the server needs; the binary builds it from the config file and flags.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listeners: Vec<ListenerOptions>,
    /// Global connection limit (0 = unlimited).
    pub max_connections: usize,
    /// A socket that has not sent a complete CONNECT by then is closed.
    pub connect_timeout: Duration,
    /// Connections per source address, and messages and bytes per client
    /// (see the `limits` module for what happens at each); unlimited by default.
    pub rates: RateLimits,
    pub broker: Settings,
    /// Memory by default for an embedded server; the binary's default is `Sync`.
    pub durability: Durability,
    /// Password file, ACL and login throttling; [`Auth::allow_all`] by default.
    pub auth: Arc<Auth>,
    /// Whether clients without a user name may connect: `None` = only on
    /// listeners bound to a loopback address (decided per listener by
    /// [`switchboard_auth::anonymous_allowed`]).
    pub allow_anonymous: Option<bool>,
    /// Test hook: makes the durable store's disk operations fail on demand
    /// (full disk, I/O errors), so tests can check that the broker refuses
    /// messages instead of acknowledging what it could not keep. `None` in
    /// production; ignored in memory mode.
    pub store_fault_injector: Option<Arc<switchboard_store::FaultInjector>>,
    /// A plain TCP connection idle this long, holding nothing, is parked:
    /// it gives up its task, buffers and tokio registration, and waits in
    /// the server's parking lot until its socket, its session or its keep
    /// alive needs it (see `park.rs`). `None` = never park.
    pub park_idle_after: Option<Duration>,
}

/// [`ServerOptions::park_idle_after`] by default.
pub const DEFAULT_PARK_IDLE_AFTER: Duration = Duration::from_secs(2);

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listeners: vec![ListenerOptions {
                name: "default".to_string(),
                kind: ListenerKind::Tcp,
                address: SocketAddr::from(([127, 0, 0, 1], 1883)),
                ..ListenerOptions::default()
            }],
            max_connections: 0,
            connect_timeout: Duration::from_secs(10),
            rates: RateLimits::default(),
            broker: Settings::default(),
            durability: Durability::Memory,
            auth: Arc::new(Auth::allow_all()),
            allow_anonymous: None,
            store_fault_injector: None,
            park_idle_after: Some(DEFAULT_PARK_IDLE_AFTER),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address} (listener {name}): {source}")]
    Bind {
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("no listener configured")]
    NoListener,
    /// Boxed: rustls errors are large, and `ServerError` is returned often.
    #[error("cannot set up TLS for listener {name}: {source}")]
    Tls { name: String, source: Box<TlsError> },
    #[error("cannot open the data directory {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        source: switchboard_broker::persist::StoreError,
    },
}

/// State shared by every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) broker: Arc<Broker>,
    pub(crate) options: ServerOptions,
    pub(crate) auth: auth::AuthGate,
    /// New connections per source address, over all listeners without rates
    /// of their own; `None` when unlimited.
    pub(crate) connection_rate: Option<AddressRate>,
    /// Where idle connections park; set once the server starts (see `park.rs`).
    pub(crate) parking: std::sync::OnceLock<Arc<park::Lot>>,
}

/// A per-address connection limiter. A std mutex: one short, synchronous
/// check per accept.
type AddressRate = std::sync::Mutex<limits::AddressLimiter>;

impl Shared {
    /// Whether a new connection from `peer` on a listener with `policy` is
    /// within the per-address rate (the listener's own, or the server's);
    /// counts a refusal.
    fn admit_address(&self, policy: &ListenerPolicy, peer: SocketAddr) -> bool {
        let limiter = match &policy.connection_rate {
            ListenerAddressRate::Server => self.connection_rate.as_ref(),
            ListenerAddressRate::Own(limiter) => limiter.as_ref(),
        };
        let Some(limiter) = limiter else {
            return true;
        };
        let now = tokio::time::Instant::now().into_std();
        let admitted = limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(peer.ip(), now);
        if !admitted {
            tracing::debug!(%peer, "connection rate per address exceeded; closing");
            switchboard_broker::Metrics::incr(&self.broker.metrics().connections_rate_limited);
        }
        admitted
    }
}

/// A listener's auth and limit settings with the server's filled in where
/// it has none of its own: what its connections are checked against.
#[derive(Debug)]
pub(crate) struct ListenerPolicy {
    /// Whether clients without a user name may connect.
    pub(crate) anonymous_allowed: bool,
    /// The password file and ACL that apply.
    pub(crate) auth: Arc<Auth>,
    /// Which of the server's realms `auth` is (0: the server's own).
    pub(crate) realm: u32,
    /// The client message and byte rates (the connection-rate part is in
    /// `connection_rate`).
    pub(crate) rates: RateLimits,
    pub(crate) connection_rate: ListenerAddressRate,
}

/// Where a listener counts new connections per source address.
#[derive(Debug)]
pub(crate) enum ListenerAddressRate {
    /// In the server's limiter, with every listener without rates of its own.
    Server,
    /// In its own (`None`: unlimited on this listener).
    Own(Option<AddressRate>),
}

struct BoundListener {
    options: ListenerOptions,
    /// The listener's auth and limits, as its connections apply them.
    policy: Arc<ListenerPolicy>,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The transport set-up its connections share (TLS configuration).
    transport: Arc<transport::Transport>,
}

/// A bound, not yet running server.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<BoundListener>,
    certificates: Certificates,
}

impl Server {
    /// Binds every listener (port 0 picks a free port; see [`Server::local_addrs`]).
    pub async fn bind(options: ServerOptions) -> Result<Server, ServerError> {
        if options.listeners.is_empty() {
            return Err(ServerError::NoListener);
        }
        let mut bound = Vec::with_capacity(options.listeners.len());
        let mut listeners = Vec::with_capacity(options.listeners.len());
        let mut tls_listeners = Vec::new();
        for listener_options in &options.listeners {
            // Certificates first: a listener that cannot do TLS must not bind.
            let tls = match listener_options.kind.tls() {
                Some(tls_options) => {
                    let loaded =
                        switchboard_tls::TlsListener::load(&listener_options.name, tls_options)
                            .map_err(|source| ServerError::Tls {
                                name: listener_options.name.clone(),
                                source: Box::new(source),
                            })?;
                    let loaded = Arc::new(loaded);
                    tls_listeners.push(loaded.clone());
                    Some(loaded)
                }
                None => None,
            };
            let bind_error = |source| ServerError::Bind {
                name: listener_options.name.clone(),
                address: listener_options.address,
                source,
            };
            let listener = TcpListener::bind(listener_options.address)
                .await
                .map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            bound.push((listener_options.clone(), listener, local_addr, tls));
        }
        let mut realms = auth::Realms::new(options.auth.clone());
        let policies: Vec<Arc<ListenerPolicy>> = options
            .listeners
            .iter()
            .map(|listener| {
                let auth = listener
                    .auth
                    .clone()
                    .unwrap_or_else(|| options.auth.clone());
                let connection_rate = match &listener.rates {
                    None => ListenerAddressRate::Server,
                    Some(rates) => ListenerAddressRate::Own(
                        rates
                            .connections_per_address
                            .map(|rate| std::sync::Mutex::new(limits::AddressLimiter::new(rate))),
                    ),
                };
                Arc::new(ListenerPolicy {
                    anonymous_allowed: auth::anonymous_on(&options, listener),
                    realm: realms.realm_of(&auth),
                    auth,
                    rates: listener.rates.unwrap_or(options.rates),
                    connection_rate,
                })
            })
            .collect();
        let now = tokio::time::Instant::now().into_std();
        let broker = Arc::new(auth::install(open_broker(&options, now)?, &realms));
        for ((listener_options, listener, local_addr, tls), policy) in
            bound.into_iter().zip(policies)
        {
            let stats = broker.metrics().listeners.register(&listener_options.name);
            listeners.push(BoundListener {
                transport: Arc::new(transport::Transport {
                    kind: listener_options.kind.clone(),
                    tls,
                    stats,
                }),
                options: listener_options,
                policy,
                listener,
                local_addr,
            });
        }
        Ok(Server {
            shared: Arc::new(Shared {
                broker,
                parking: std::sync::OnceLock::new(),
                auth: auth::AuthGate::new(),
                connection_rate: options
                    .rates
                    .connections_per_address
                    .map(|rate| std::sync::Mutex::new(limits::AddressLimiter::new(rate))),
                options,
            }),
            listeners,
            certificates: Certificates::new(tls_listeners),
        })
    }

    /// The addresses actually bound, in listener order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local_addr).collect()
    }

    /// Each listener with the address it actually bound, in listener order.
    pub fn listeners(&self) -> impl Iterator<Item = (&ListenerOptions, SocketAddr)> {
        self.listeners
            .iter()
            .map(|bound| (&bound.options, bound.local_addr))
    }

    /// The handle that reloads the TLS listeners' certificates (SIGHUP).
    pub fn certificates(&self) -> Certificates {
        self.certificates.clone()
    }

    pub fn broker(&self) -> Arc<Broker> {
        self.shared.broker.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let running = self.start();
        shutdown.await;
        running.shutdown().await;
    }

    /// Starts the accept loops and the timer task in the background.
    pub fn start(self) -> RunningServer {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let global_limit = match self.shared.options.max_connections {
            0 => None,
            n => Some(Arc::new(Semaphore::new(n))),
        };
        let addrs = self.local_addrs();
        let policies = self
            .listeners
            .iter()
            .map(|bound| bound.policy.clone())
            .collect();
        for bound in self.listeners {
            tracing::info!(listener = %bound.options.name, kind = bound.options.kind.as_str(), address = %bound.local_addr, "listening");
            tracker.spawn(accept_loop(
                bound,
                self.shared.clone(),
                global_limit.clone(),
                cancel.clone(),
                tracker.clone(),
            ));
        }
        tracker.spawn(tick_loop(self.shared.clone(), cancel.clone()));
        if self.shared.options.park_idle_after.is_some() {
            match park::Lot::start(&self.shared, tracker.clone(), cancel.clone()) {
                Ok((lot, driver)) => {
                    let unpark: Arc<dyn switchboard_broker::Unpark> = lot.clone();
                    self.shared.broker.set_parking(&unpark);
                    let _ = self.shared.parking.set(lot);
                    tracker.spawn(driver);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot set up parking for idle connections; they keep their tasks");
                }
            }
        }
        // Connection tasks keep no cancellation future of their own (72 bytes
        // in each idle task): at shutdown every attached one is ordered closed
        // through its session, the wake-up it waits on anyway.
        let shared = self.shared.clone();
        let watched = cancel.clone();
        tracker.spawn(async move {
            watched.cancelled().await;
            shared
                .broker
                .disconnect_all(switchboard_codec::ReasonCode::SERVER_SHUTTING_DOWN);
        });
        if self.shared.broker.store().is_some() {
            tracker.spawn(checkpoint_loop(self.shared.clone(), cancel.clone()));
        }
        RunningServer {
            shared: self.shared,
            addrs,
            policies,
            global_limit,
            cancel,
            tracker,
            certificates: self.certificates,
        }
    }
}

/// A started server: its addresses, its broker, in-memory connections for tests
/// and embedding, and graceful shutdown.
pub struct RunningServer {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    /// Each listener's auth and limits, in listener order, for in-memory
    /// connections (which behave as if accepted on one of them).
    policies: Vec<Arc<ListenerPolicy>>,
    /// The global connection limit, which in-memory connections count against too.
    global_limit: Option<Arc<Semaphore>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    certificates: Certificates,
}

impl RunningServer {
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The handle that reloads the TLS listeners' certificates (SIGHUP).
    pub fn certificates(&self) -> Certificates {
        self.certificates.clone()
    }

    pub fn broker(&self) -> Arc<Broker> {
        self.shared.broker.clone()
    }

    /// Opens a connection that does not go through a socket: the server serves
    /// one end of an in-memory pipe and the caller gets the other. Behaves like a
    /// TCP connection from `peer` accepted on the first listener (which decides
    /// whether anonymous clients are allowed); used by tests that run on paused
    /// time. The per-address connection rate and the global connection limit
    /// apply (not the listener's own limit): a refused connection is closed
    /// at once, as a refused socket is.
    pub fn connect_in_memory(&self, peer: SocketAddr) -> tokio::io::DuplexStream {
        self.connect_in_memory_on(0, peer)
    }

    /// [`RunningServer::connect_in_memory`], as if accepted on listener
    /// `listener` (an index into the listeners, in order): its auth and rate
    /// limits apply (its own `max_connections` does not, nor its transport).
    /// A listener that does not exist closes the connection at once.
    pub fn connect_in_memory_on(
        &self,
        listener: usize,
        peer: SocketAddr,
    ) -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(IN_MEMORY_PIPE_BYTES);
        let Some(policy) = self.policies.get(listener).cloned() else {
            return client;
        };
        if !self.shared.admit_address(&policy, peer) {
            return client;
        }
        let Ok(permit) = acquire(&self.global_limit) else {
            switchboard_broker::Metrics::incr(&self.shared.broker.metrics().connections_refused);
            return client;
        };
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        self.tracker
            .spawn(connection::serve(Box::new(connection::Setup {
                stream: server,
                peer,
                shared,
                cancel,
                policy,
                certificate: auth::CertificateUser::NotUsed,
                guards: Guards {
                    _listener: None,
                    _permits: [permit, None],
                },
            })));
        client
    }

    /// Stops accepting, closes every connection (v5: DISCONNECT 0x8B) and waits,
    /// at most [`SHUTDOWN_GRACE`], for the connection tasks to finish.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: closing listeners and connections");
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
        }
        if let Some(store) = self.shared.broker.store().cloned() {
            // Close the loss window of periodic mode, and make everything durable
            // that was appended without waiting.
            let synced = tokio::task::spawn_blocking(move || store.sync()).await;
            match synced {
                Ok(Ok(())) => tracing::info!("durable store synced"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "final fsync of the durable store failed")
                }
                Err(error) => {
                    tracing::error!(%error, "final fsync of the durable store did not run")
                }
            }
        }
    }
}

/// Buffer of each direction of an in-memory connection.
const IN_MEMORY_PIPE_BYTES: usize = 64 * 1024;

async fn accept_loop(
    bound: BoundListener,
    shared: Arc<Shared>,
    global_limit: Option<Arc<Semaphore>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let listener_limit = match bound.options.max_connections {
        0 => None,
        n => Some(Arc::new(Semaphore::new(n))),
    };
    let stats = bound.transport.stats.clone();
    let mut backoff = limits::ACCEPT_BACKOFF_START;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = bound.listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = limits::ACCEPT_BACKOFF_START;
                pair
            }
            Err(error) => {
                // Out of file descriptors (EMFILE/ENFILE) or memory: accepting again
                // at once would fail again and spin a core. Existing connections
                // carry on meanwhile.
                switchboard_broker::Metrics::incr(&shared.broker.metrics().accept_errors);
                tracing::warn!(%error, listener = %bound.options.name, "accept failed; backing off {backoff:?}");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = limits::next_accept_backoff(backoff);
                continue;
            }
        };
        // Refused sockets are closed before any byte is read: cheaper than the
        // CONNECT timeout, and nothing about them is trusted.
        if !shared.admit_address(&bound.policy, peer) {
            drop(stream);
            continue;
        }
        let permits = (acquire(&global_limit), acquire(&listener_limit));
        let permits = match permits {
            (Ok(global), Ok(local)) => (global, local),
            _ => {
                tracing::debug!(%peer, "connection limit reached; closing");
                switchboard_broker::Metrics::incr(&shared.broker.metrics().connections_refused);
                switchboard_broker::Metrics::incr(&stats.connections_refused);
                drop(stream);
                continue;
            }
        };
        switchboard_broker::Metrics::incr(&stats.connections_total);
        let open = ListenerConnection::open(stats.clone());
        let _ = stream.set_nodelay(true);
        // One pointer for all the connection needs (see `connection::Setup`).
        // A clone of the server's token, not a child token: only the server's
        // is ever cancelled, and a child costs a 112-byte tree node per
        // connection.
        let setup = Box::new(connection::Setup {
            stream,
            peer,
            shared: shared.clone(),
            cancel: cancel.clone(),
            policy: bound.policy.clone(),
            certificate: auth::CertificateUser::NotUsed,
            guards: Guards {
                _listener: Some(open),
                _permits: [permits.0, permits.1],
            },
        });
        tracker.spawn(transport::serve(bound.transport.clone(), setup));
    }
}

/// What must live exactly as long as a connection: its places in the
/// connection limits and in its listener's count. Carried in the
/// connection's `Setup` and then its `Link` rather than in the spawned
/// future: tokio rounds every task up to a multiple of 128 bytes, and these
/// 40 bytes tipped an idle connection's task into the next size.
pub(crate) struct Guards {
    _listener: Option<ListenerConnection>,
    _permits: [Option<tokio::sync::OwnedSemaphorePermit>; 2],
}

/// One socket counted in its listener's `connections_current`, for as long
/// as this lives (whatever way the connection task ends).
struct ListenerConnection(Arc<switchboard_broker::ListenerStats>);

impl ListenerConnection {
    fn open(stats: Arc<switchboard_broker::ListenerStats>) -> ListenerConnection {
        switchboard_broker::Metrics::incr(&stats.connections_current);
        ListenerConnection(stats)
    }
}

impl Drop for ListenerConnection {
    fn drop(&mut self) {
        switchboard_broker::Metrics::decr(&self.0.connections_current);
    }
}

fn acquire(
    limit: &Option<Arc<Semaphore>>,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ()> {
    match limit {
        None => Ok(None),
        Some(semaphore) => semaphore
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| ()),
    }
}

async fn tick_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sys_interval = shared.options.broker.sys_interval;
    let mut last_sys: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now().into_std();
        shared.broker.tick(now);
        if let Some(interval) = sys_interval {
            if last_sys.is_none_or(|last| now.saturating_duration_since(last) >= interval) {
                shared.broker.publish_sys(now);
                last_sys = Some(now);
            }
        }
    }
}

/// How often the checkpoint policy is checked (a checkpoint is written only when
/// the log has grown past twice the live data plus slack, or after a write
/// failure; see the store crate).
const CHECKPOINT_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Opens the broker: in memory, or recovered from the durable log.
fn open_broker(options: &ServerOptions, now: std::time::Instant) -> Result<Broker, ServerError> {
    use switchboard_broker::persist::{LogConfig, SyncMode};
    let (data_dir, sync) = match &options.durability {
        Durability::Memory => return Ok(Broker::new(options.broker.clone(), now)),
        Durability::Sync { data_dir } => (data_dir.clone(), SyncMode::Always),
        Durability::Periodic { data_dir, interval } => {
            (data_dir.clone(), SyncMode::Periodic(*interval))
        }
    };
    let mut config = LogConfig::new(&data_dir);
    config.sync = sync;
    config.fault_injector = options.store_fault_injector.clone();
    let started = std::time::Instant::now();
    let (store, report) =
        switchboard_broker::Store::open(config, now).map_err(|source| ServerError::Store {
            dir: data_dir.clone(),
            source,
        })?;
    for damage in &report.damaged {
        tracing::error!(
            file = %damage.file.display(),
            offset = damage.offset,
            length = damage.length,
            reason = %damage.reason,
            "DATA LOSS: a damaged part of the durable store was set aside; everything else was recovered"
        );
    }
    if let Some(torn) = &report.torn_tail {
        tracing::info!(file = %torn.file.display(), offset = torn.offset, "dropped an incomplete last write (never acknowledged)");
    }
    let (broker, summary) = Broker::with_store(options.broker.clone(), now, store);
    switchboard_broker::Metrics::add(
        &broker.metrics().store_damaged_regions,
        report.damaged.len() as u64,
    );
    tracing::info!(
        dir = %data_dir.display(),
        sessions = summary.sessions,
        subscriptions = summary.subscriptions,
        queued = summary.queued,
        in_flight = summary.inflight,
        retained = summary.retained,
        wills = summary.wills,
        skipped = summary.messages_skipped,
        records = report.records_replayed + report.snapshot_records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered durable state"
    );
    Ok(broker)
}

async fn checkpoint_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHECKPOINT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(store) = shared.broker.store().cloned() else {
            return;
        };
        match tokio::task::spawn_blocking(move || store.maybe_checkpoint()).await {
            Ok(Ok(Some(report))) => tracing::info!(?report, "checkpoint written"),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::error!(%error, "checkpoint failed; will retry"),
            Err(error) => tracing::error!(%error, "checkpoint task failed"),
        }
    }
}
