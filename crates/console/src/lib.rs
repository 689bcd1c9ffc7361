//! The browser side of Switchboard: the web console, the JSON HTTP API under
//! `/api/v1`, Prometheus metrics at `/metrics`, and the `/health` and
//! `/ready` probes, all on one HTTP listener.
//!
//! The binary binds the listener and calls [`serve`] next to the MQTT server;
//! [`serve`] runs until its cancellation token fires. Everything is read from
//! and done through the shared [`Broker`]: listings take the same short locks
//! as the broker itself (never across `.await`), the live message view
//! registers a broker tap (a bounded channel; a slow browser loses messages,
//! counted, and never slows routing), and administrative actions are the
//! broker's own (`kick`, `delete_session`, `delete_retained`, `publish`).
//!
//! # Access
//!
//! See [`access`] for the rules. In short: requests are let in by an API
//! token (`Authorization: Bearer`), the admin user (HTTP basic auth or the
//! console's login form, which sets a cookie), or anonymously when the
//! listener is on a loopback address and anonymous access is not turned off.
//! A listener on any other address without credentials is refused by
//! [`check_access`] (and so by [`serve`]) before it serves anything.
//!
//! # HTTPS
//!
//! With [`ConsoleOptions::tls`] the listener speaks only TLS (see
//! [`https`]): the certificate is a [`TlsListener`] the caller loaded, and
//! reloading it (SIGHUP, through `switchboard_tls::Certificates`) changes
//! what new connections get. The login cookie is then marked `Secure`. A
//! listener on another address than loopback without TLS still serves, but
//! logs a warning: its passwords, tokens and cookies cross the network in
//! clear text.
//!
//! # Bounds
//!
//! Request bodies are capped; list endpoints page (at most
//! [`api::MAX_PAGE`] items); payload previews are cut at a fixed size; at
//! most [`stream::MAX_STREAMS`] Server-Sent Event streams are open at once;
//! rate history is a fixed ring; login sessions are capped and expire.

mod access;
mod api;
mod assets;
mod https;
mod metrics;
mod payload;
mod sampler;
mod stream;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use axum::Router;
use switchboard_broker::Broker;
use tokio::net::TcpListener;

pub use access::{AccessMode, AdminCredentials, MIN_TOKEN_LENGTH};
pub use api::MAX_PAGE;
pub use stream::MAX_STREAMS;
/// Re-exported so callers can load the HTTPS certificate without a
/// dependency of their own.
pub use switchboard_tls::{Certificates, TlsError, TlsListener, TlsOptions};
/// Re-exported so callers of [`serve`] need no `tokio-util` of their own.
pub use tokio_util::sync::CancellationToken;

/// The version the API and metrics report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Ten minutes of one-second samples: the overview charts' "last minutes",
/// at 48 bytes a sample.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(600);

/// How long shutdown waits for open HTTP connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Set once the broker's listeners accept connections; `/ready` answers 200
/// from then on. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn new() -> Ready {
        Ready::default()
    }

    /// Marks the broker ready (its listeners are up).
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the console needs besides the broker and its listener.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// Whether requests without credentials are served: `None` means only
    /// when the listener is bound to a loopback address. `Some(true)` on any
    /// other address is refused by [`check_access`].
    pub allow_anonymous: Option<bool>,
    /// API tokens for scripts (`Authorization: Bearer TOKEN`); each at least
    /// [`MIN_TOKEN_LENGTH`] characters.
    pub tokens: Vec<String>,
    /// The admin user of the login form and of HTTP basic auth.
    pub admin: Option<AdminCredentials>,
    /// Set by the caller once the MQTT listeners are up.
    pub ready: Ready,
    /// How much rate history the overview keeps (one sample a second).
    pub history: Duration,
    /// Serve HTTPS with this certificate instead of plain HTTP. Load it
    /// with [`TlsListener::load`]; keep a clone in a [`Certificates`]
    /// handle to reload it.
    pub tls: Option<Arc<TlsListener>>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            allow_anonymous: None,
            tokens: Vec::new(),
            admin: None,
            ready: Ready::new(),
            history: DEFAULT_HISTORY,
            tls: None,
        }
    }
}

impl std::fmt::Debug for ConsoleOptions {
    /// Counts the tokens, never prints them.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConsoleOptions")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("tokens", &self.tokens.len())
            .field("admin", &self.admin)
            .field("ready", &self.ready.is_ready())
            .field("history", &self.history)
            .field(
                "tls",
                &self.tls.as_ref().map(|tls| tls.options().cert_file.clone()),
            )
            .finish()
    }
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "the HTTP console on {address} is not on a loopback address and has no credentials: \
         anyone who can reach it could disconnect clients and read every message. Set \
         `[http] tokens` or `token_file`, or `admin_user` and `admin_password_hash`, or \
         bind it to 127.0.0.1"
    )]
    NoCredentials { address: SocketAddr },
    #[error(
        "`[http] allow_anonymous = true` on {address}, which is not a loopback address: \
         anonymous console access is only allowed on loopback listeners"
    )]
    AnonymousNotLoopback { address: SocketAddr },
    #[error(
        "the HTTP console on {address} allows no anonymous access and has no credentials, \
         so nobody could use it: add a token or an admin user, or leave allow_anonymous out"
    )]
    NoWayIn { address: SocketAddr },
    #[error("API token number {position} is shorter than {MIN_TOKEN_LENGTH} characters or contains white space")]
    WeakToken { position: usize },
    #[error("invalid admin credentials: {0}")]
    Admin(String),
    #[error("HTTP server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decides whether the console may serve on `address` with `options`, and
/// how requests get in. Called by [`serve`]; callers may call it before
/// starting anything else, to refuse a bad configuration early.
pub fn check_access(
    options: &ConsoleOptions,
    address: SocketAddr,
) -> Result<AccessMode, ConsoleError> {
    access::check(options, address)
}

/// Serves the console, API and metrics on `listener` (HTTPS when
/// [`ConsoleOptions::tls`] is set) until `cancel` fires, then closes open
/// streams and waits (briefly) for requests in progress.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    options: ConsoleOptions,
    cancel: CancellationToken,
) -> Result<(), ConsoleError> {
    let address = listener.local_addr()?;
    let mode = check_access(&options, address)?;
    let loopback = address.ip().to_canonical().is_loopback();
    if !loopback && options.tls.is_none() {
        tracing::warn!(
            %address,
            "the HTTP console is not on a loopback address and has no TLS: passwords, API \
             tokens and login cookies cross the network in clear text. Give it a certificate \
             (--http-cert and --http-key, or [http] cert_file and key_file), or keep it \
             behind a TLS proxy"
        );
    }
    let tls = options.tls.clone();
    let state = Console::new(broker, options, mode, cancel.clone());
    tokio::spawn(sampler::run(state.clone(), cancel.clone()));
    let app = router(state.clone()).into_make_service_with_connect_info::<Peer>();
    let shutdown = cancel.clone().cancelled_owned();
    match tls {
        None => {
            tracing::info!(%address, anonymous = mode.anonymous, "HTTP console and API listening");
            let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
            until_shutdown(server, &cancel).await
        }
        Some(tls) => {
            tracing::info!(%address, anonymous = mode.anonymous, cert_file = %tls.options().cert_file.display(), "HTTPS console and API listening");
            let incoming = https::incoming(listener, address, tls, state, cancel.clone());
            let server = axum::serve(incoming, app).with_graceful_shutdown(shutdown);
            until_shutdown(server, &cancel).await
        }
    }
}

/// Runs `server` until it ends by itself after `cancel` fired, or until
/// [`SHUTDOWN_GRACE`] after that, whichever is first.
async fn until_shutdown(
    server: impl IntoFuture<Output = std::io::Result<()>>,
    cancel: &CancellationToken,
) -> Result<(), ConsoleError> {
    tokio::select! {
        result = server.into_future() => result?,
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("HTTP connections still open after {SHUTDOWN_GRACE:?}; dropped");
        }
    }
    Ok(())
}

/// The client's address, as requests see it (`ConnectInfo<Peer>`): failed
/// logins are throttled by it. Its own type so that plain and TLS
/// listeners both provide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub(crate) SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, https::TlsIncoming>> for Peer {
    fn connect_info(stream: IncomingStream<'_, https::TlsIncoming>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// State shared by every request.
#[derive(Clone)]
pub(crate) struct Console {
    inner: Arc<ConsoleInner>,
}

pub(crate) struct ConsoleInner {
    pub(crate) broker: Arc<Broker>,
    pub(crate) options: ConsoleOptions,
    pub(crate) mode: AccessMode,
    pub(crate) access: access::Sessions,
    pub(crate) sampler: sampler::Sampler,
    /// Fires at shutdown: open event streams end.
    pub(crate) cancel: CancellationToken,
    /// Event streams open now (messages and status).
    pub(crate) streams_open: AtomicU64,
    /// Messages live views missed because the browser read too slowly,
    /// summed over every stream so far.
    pub(crate) stream_dropped: AtomicU64,
    /// Requests refused for a wrong API token or admin password (not those
    /// that sent no credentials at all).
    pub(crate) auth_failures: AtomicU64,
    /// HTTPS connections whose TLS handshake failed or timed out.
    pub(crate) tls_handshake_failures: AtomicU64,
}

impl std::ops::Deref for Console {
    type Target = ConsoleInner;

    fn deref(&self) -> &ConsoleInner {
        &self.inner
    }
}

impl Console {
    fn new(
        broker: Arc<Broker>,
        options: ConsoleOptions,
        mode: AccessMode,
        cancel: CancellationToken,
    ) -> Console {
        let samples = usize::try_from(options.history.as_secs())
            .unwrap_or(usize::MAX)
            .clamp(2, 24 * 3600);
        Console {
            inner: Arc::new(ConsoleInner {
                broker,
                mode,
                access: access::Sessions::new(),
                sampler: sampler::Sampler::new(samples),
                options,
                cancel,
                streams_open: AtomicU64::new(0),
                stream_dropped: AtomicU64::new(0),
                auth_failures: AtomicU64::new(0),
                tls_handshake_failures: AtomicU64::new(0),
            }),
        }
    }
}

/// Every route. Public pages and probes need no credentials; the API and
/// metrics go through [`access::require`].
fn router(state: Console) -> Router {
    let protected = Router::new()
        .merge(api::routes(api::body_limit(&state.broker)))
        .merge(stream::routes())
        .route("/metrics", axum::routing::get(metrics::handler))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require,
        ));
    Router::new()
        .merge(protected)
        .merge(access::routes())
        .merge(assets::routes())
        .route("/health", axum::routing::get(health))
        .route("/ready", axum::routing::get(ready))
        .route("/api/v1/openapi.json", axum::routing::get(assets::openapi))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(assets::security_headers))
        .with_state(state)
}

/// 200 while the process serves HTTP at all.
async fn health() -> &'static str {
    "ok\n"
}

/// 200 once the MQTT listeners are up, 503 before.
async fn ready(
    axum::extract::State(state): axum::extract::State<Console>,
) -> (axum::http::StatusCode, &'static str) {
    if state.options.ready.is_ready() {
        (axum::http::StatusCode::OK, "ready\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}
