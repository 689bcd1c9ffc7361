//! `switchboard`: the broker (`serve`, the default), the command-line clients
//! (`pub`, `sub`, `req`) and the password file tool (`passwd`).

mod passwd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchboard_config::{Config, Overrides};
use switchboard_server::{
    Durability, ListenerKind, ListenerOptions, Server, ServerOptions, TlsOptions, WebSocketOptions,
};

/// The server's rate limits from `[limits]` (0 = unlimited).
fn rate_limits(limits: &switchboard_config::LimitsConfig) -> switchboard_server::RateLimits {
    rates_from(
        limits.connection_rate_per_address,
        limits.connection_burst_per_address,
        limits.client_message_rate,
        limits.client_byte_rate,
    )
}

/// A listener's own rate limits, when it sets any: each key it sets in
/// place of the `[limits]` one, the others from `[limits]`.
fn listener_rate_limits(
    listener: &switchboard_config::ListenerConfig,
    limits: &switchboard_config::LimitsConfig,
) -> Option<switchboard_server::RateLimits> {
    let own = listener.connection_rate_per_address.is_some()
        || listener.connection_burst_per_address.is_some()
        || listener.client_message_rate.is_some()
        || listener.client_byte_rate.is_some();
    own.then(|| {
        rates_from(
            listener
                .connection_rate_per_address
                .unwrap_or(limits.connection_rate_per_address),
            listener
                .connection_burst_per_address
                .unwrap_or(limits.connection_burst_per_address),
            listener
                .client_message_rate
                .unwrap_or(limits.client_message_rate),
            listener.client_byte_rate.unwrap_or(limits.client_byte_rate),
        )
    })
}

fn rates_from(
    connection_rate: u32,
    connection_burst: u32,
    message_rate: u32,
    byte_rate: u64,
) -> switchboard_server::RateLimits {
    let rate = |per_second: u64| {
        (per_second > 0).then(|| switchboard_server::Rate::per_second(per_second))
    };
    switchboard_server::RateLimits {
        connections_per_address: (connection_rate > 0).then(|| switchboard_server::Rate {
            per_second: u64::from(connection_rate),
            burst: u64::from(connection_burst),
        }),
        client_messages: rate(u64::from(message_rate)),
        client_bytes: rate(byte_rate),
    }
}

/// `durability = "periodic"` fsyncs this often: the most a power loss can take.
const PERIODIC_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: an MQTT 3.1.1 and 5.0 broker, and clients to talk to it",
    long_about = "Switchboard: an MQTT 3.1.1 and 5.0 broker, and clients to talk to it.\n\n\
                  With no command, `switchboard` runs `switchboard serve`: a broker on 127.0.0.1:1883 \
                  with no configuration needed."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Publish messages (like mosquitto_pub).
    Pub(switchboard_client::cli::PubArgs),
    /// Subscribe and print messages (like mosquitto_sub).
    Sub(switchboard_client::cli::SubArgs),
    /// Send a request and wait for its response (MQTT 5 request-response, like mosquitto_rr).
    Req(switchboard_client::cli::ReqArgs),
    /// Add a user to a password file or change their password (argon2id); --delete removes them.
    Passwd(passwd::PasswdArgs),
    /// Load-test an MQTT broker: throughput, loss, latency, memory per connection.
    Bench(switchboard_bench::BenchArgs),
}

/// Settings come from, lowest to highest precedence: built-in defaults, the config
/// file, environment variables, command-line flags.
#[derive(Debug, Default, Args)]
struct ServeArgs {
    /// TOML config file (see switchboard.example.toml).
    #[arg(short = 'c', long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plain TCP listener address; repeatable. Replaces the config file's tcp listeners.
    #[arg(
        long,
        env = "SWITCHBOARD_LISTEN",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    listen: Vec<std::net::SocketAddr>,
    /// MQTT over TLS listener address; repeatable. Uses --cert and --key. Replaces the
    /// config file's tls listeners.
    #[arg(
        long,
        env = "SWITCHBOARD_LISTEN_TLS",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    listen_tls: Vec<std::net::SocketAddr>,
    /// MQTT over WebSocket listener address (path /mqtt); repeatable. Replaces the config
    /// file's ws listeners.
    #[arg(
        long,
        env = "SWITCHBOARD_LISTEN_WS",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    listen_ws: Vec<std::net::SocketAddr>,
    /// MQTT over secure WebSocket listener address (path /mqtt); repeatable. Uses --cert
    /// and --key. Replaces the config file's wss listeners.
    #[arg(
        long,
        env = "SWITCHBOARD_LISTEN_WSS",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    listen_wss: Vec<std::net::SocketAddr>,
    /// Certificate chain (PEM) for the --listen-tls and --listen-wss listeners. SIGHUP
    /// reloads it.
    #[arg(long, env = "SWITCHBOARD_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Private key (PEM) for the --listen-tls and --listen-wss listeners. SIGHUP reloads it.
    #[arg(long, env = "SWITCHBOARD_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Where durable state is kept (used by durability modes that write to disk).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log level or tracing filter (error, warn, info, debug, trace). RUST_LOG wins if set.
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Maximum simultaneous connections (0 = unlimited).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Maximum packet size in bytes, both directions.
    #[arg(long, env = "SWITCHBOARD_MAX_PACKET_SIZE", value_name = "BYTES")]
    max_packet_size: Option<u32>,
    /// sync (default), periodic or memory.
    #[arg(long, env = "SWITCHBOARD_DURABILITY", value_name = "MODE")]
    durability: Option<switchboard_config::Durability>,
    /// Seconds between `$SYS` updates (0 turns them off).
    #[arg(long, env = "SWITCHBOARD_SYS_INTERVAL_SECS", value_name = "SECS")]
    sys_interval_secs: Option<u64>,
    /// Seconds a new connection has to send CONNECT.
    #[arg(long, env = "SWITCHBOARD_CONNECT_TIMEOUT_SECS", value_name = "SECS")]
    connect_timeout_secs: Option<u64>,
    /// Milliseconds a plain TCP connection must be idle before it parks (its
    /// task and buffers released until it is needed); 0 = never park.
    #[arg(long, env = "SWITCHBOARD_PARK_IDLE_AFTER_MS", value_name = "MS")]
    park_idle_after_ms: Option<u64>,
    /// Receive Maximum: QoS 1/2 messages in flight per client, each way.
    #[arg(long, env = "SWITCHBOARD_MAX_INFLIGHT", value_name = "N")]
    max_inflight: Option<u16>,
    /// Cap on the session expiry interval clients may ask for.
    #[arg(long, env = "SWITCHBOARD_MAX_SESSION_EXPIRY_SECS", value_name = "SECS")]
    max_session_expiry_secs: Option<u32>,
    /// Password file of `user:argon2id-hash` lines (see `switchboard passwd`).
    #[arg(long, env = "SWITCHBOARD_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Access control list (format in the README). SIGHUP reloads it and the password file.
    #[arg(long, env = "SWITCHBOARD_ACL_FILE", value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// Accept clients without a user name on every listener (`=false`: on none). By
    /// default they are accepted on loopback listeners only.
    #[arg(
        long,
        env = "SWITCHBOARD_ALLOW_ANONYMOUS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    allow_anonymous: Option<bool>,
    /// Address of the web console, HTTP API and /metrics (default 127.0.0.1:8080).
    #[arg(
        long,
        env = "SWITCHBOARD_HTTP",
        value_name = "ADDR:PORT",
        conflicts_with = "no_http"
    )]
    http: Option<std::net::SocketAddr>,
    /// Serve no web console, HTTP API or metrics.
    #[arg(long)]
    no_http: bool,
    /// Certificate chain (PEM) for the web console: with --http-key it serves HTTPS only.
    /// SIGHUP reloads it.
    #[arg(long, env = "SWITCHBOARD_HTTP_CERT", value_name = "FILE")]
    http_cert: Option<PathBuf>,
    /// Private key (PEM) of --http-cert. SIGHUP reloads it.
    #[arg(long, env = "SWITCHBOARD_HTTP_KEY", value_name = "FILE")]
    http_key: Option<PathBuf>,
}

/// jemalloc rather than glibc's malloc: it keeps each size of allocation on
/// pages of its own and gives pages back to the system once they are free,
/// where glibc keeps whatever the busiest moment took. That matters for
/// parked connections: ten thousand clients connecting at once each have a
/// task and buffers until they park, and with glibc the process kept that
/// peak (2,048 bytes per idle connection measured against about 1,000 once
/// the freed memory is returned; see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the system within about a second (jemalloc's
/// default is ten), from a background thread, so an idle broker shrinks
/// too. Best effort: the broker runs the same without.
fn tune_allocator() {
    use tikv_jemalloc_ctl::{Access, AsName};
    const DECAY_MS: isize = 1_000;
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(%error, "jemalloc background thread not started");
    }
    let mut keys = vec![
        "arenas.dirty_decay_ms\0".to_string(),
        "arenas.muzzy_decay_ms\0".to_string(),
    ];
    // Arenas made before this point keep the decay they were made with.
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read().unwrap_or(0);
    for arena in 0..arenas {
        keys.push(format!("arena.{arena}.dirty_decay_ms\0"));
        keys.push(format!("arena.{arena}.muzzy_decay_ms\0"));
    }
    for key in keys {
        // Arenas not in use yet refuse the write; they get the new default.
        let _ = key.as_str().name().write(DECAY_MS);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => serve(args).await,
            Command::Pub(args) => switchboard_client::cli::run_pub(args).await,
            Command::Sub(args) => switchboard_client::cli::run_sub(args).await,
            Command::Req(args) => switchboard_client::cli::run_req(args).await,
            Command::Passwd(args) => passwd::run(args),
            Command::Bench(args) => switchboard_bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        listen_tls: args.listen_tls,
        listen_ws: args.listen_ws,
        listen_wss: args.listen_wss,
        cert_file: args.cert,
        key_file: args.key,
        data_dir: args.data_dir,
        log_level: args.log_level,
        max_connections: args.max_connections,
        max_packet_size: args.max_packet_size,
        durability: args.durability,
        sys_interval_secs: args.sys_interval_secs,
        connect_timeout_secs: args.connect_timeout_secs,
        park_idle_after_ms: args.park_idle_after_ms,
        max_inflight: args.max_inflight,
        max_session_expiry_secs: args.max_session_expiry_secs,
        password_file: args.password_file,
        acl_file: args.acl_file,
        allow_anonymous: args.allow_anonymous,
        http_address: args.http,
        http_enabled: args.no_http.then_some(false),
        http_cert_file: args.http_cert,
        http_key_file: args.http_key,
    };
    let config = match Config::load(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(errors) => anyhow::bail!("invalid configuration:\n{errors}"),
    };
    init_logging(&config.log_level);
    let shutdown = shutdown_signal()?;
    let auth = load_auth(&config)?;
    // Filled in once the listeners have loaded their certificates.
    let certificates = Arc::new(std::sync::OnceLock::new());
    reload_on_hangup(auth.all(), certificates.clone())?;
    let console = console_options(&config, &auth.server)?;
    let options = server_options(&config, auth)?;
    let server = Server::bind(options)
        .await
        .context("cannot start the broker")?;
    // One SIGHUP reloads the MQTT listeners' certificates and the console's.
    let mut reloadable = server.certificates();
    if let Some(tls) = console.as_ref().and_then(|console| console.tls.clone()) {
        reloadable = reloadable.with_listener(tls);
    }
    let _ = certificates.set(reloadable);
    for (listener, address) in server.listeners() {
        tracing::info!(
            listener = %listener.name,
            "switchboard {} listening on {address} ({})",
            env!("CARGO_PKG_VERSION"),
            listener.kind.as_str()
        );
    }
    let http = match console {
        Some(console) => {
            let address = config.http.address;
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => Some((listener, console)),
                // A zero-configuration broker must not fail to start because
                // some other program has 127.0.0.1:8080; an address asked for
                // explicitly must be served or the start fails.
                Err(error) if address == switchboard_config::DEFAULT_HTTP_ADDRESS => {
                    tracing::warn!(
                        %address,
                        %error,
                        "web console not started: its default address is taken; choose \
                         another with --http ADDR:PORT or [http] address, or set --no-http"
                    );
                    None
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!(
                            "cannot listen for HTTP (the web console) on {address}; move it \
                             with --http ADDR:PORT or turn it off with --no-http"
                        )
                    })
                }
            }
        }
        None => None,
    };
    let running = server.start();
    let cancel = switchboard_console::CancellationToken::new();
    let console_task = http.map(|(listener, console)| {
        if let Ok(address) = listener.local_addr() {
            let scheme = if console.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!("web console and HTTP API on {scheme}://{address}/");
        }
        let ready = console.ready.clone();
        let task = tokio::spawn(switchboard_console::serve(
            listener,
            running.broker(),
            console,
            cancel.clone(),
        ));
        // The MQTT listeners were bound by `Server::bind` and accept from now on.
        ready.set_ready();
        task
    });
    shutdown.await;
    cancel.cancel();
    if let Some(task) = console_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the HTTP console failed"),
            Err(error) => tracing::error!(%error, "the HTTP console task failed"),
        }
    }
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so that a signal arriving
/// between start-up and the serving loop is not lost (the default action would
/// kill the process instead of shutting down gracefully).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// The password files and ACLs: the server's (`[auth]`), and each
/// listener's own where it names any (`None` for a listener that uses the
/// server's).
struct AuthSet {
    server: Arc<switchboard_auth::Auth>,
    /// In `config.listeners` order.
    listeners: Vec<Option<Arc<switchboard_auth::Auth>>>,
}

impl AuthSet {
    /// Every distinct one, for the SIGHUP reload.
    fn all(&self) -> Vec<Arc<switchboard_auth::Auth>> {
        std::iter::once(self.server.clone())
            .chain(self.listeners.iter().flatten().cloned())
            .collect()
    }
}

/// Loads the password and ACL files named in the configuration, `[auth]`'s
/// and each listener's; every problem in any is reported, with file and line.
///
/// A listener with its own `password_file` or `acl_file` gets an `Auth` of
/// its own: the file it names replaces `[auth]`'s, the one it does not name
/// is `[auth]`'s (so a listener may keep the server's users and only narrow
/// their ACL). Failed-login throttling follows `[auth]` and is counted per
/// `Auth`.
fn load_auth(config: &Config) -> anyhow::Result<AuthSet> {
    let settings = &config.auth;
    let throttle = switchboard_auth::ThrottleOptions {
        max_failures: settings.failed_login_limit,
        window: std::time::Duration::from_secs(settings.failed_login_window_secs),
        delay: std::time::Duration::from_secs(settings.failed_login_delay_secs),
        max_delay: std::time::Duration::from_secs(settings.failed_login_max_delay_secs),
        max_addresses: settings.failed_login_max_addresses,
    };
    let server_options = switchboard_auth::AuthOptions {
        password_file: settings.password_file.clone(),
        acl_file: settings.acl_file.clone(),
        throttle: throttle.clone(),
    };
    let mut problems = Vec::new();
    let server = match switchboard_auth::Auth::load(server_options) {
        Ok(auth) => Some(Arc::new(auth)),
        Err(errors) => {
            problems.push(errors.to_string());
            None
        }
    };
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        if listener.password_file.is_none() && listener.acl_file.is_none() {
            listeners.push(None);
            continue;
        }
        let options = switchboard_auth::AuthOptions {
            password_file: listener
                .password_file
                .clone()
                .or_else(|| settings.password_file.clone()),
            acl_file: listener
                .acl_file
                .clone()
                .or_else(|| settings.acl_file.clone()),
            throttle: throttle.clone(),
        };
        match switchboard_auth::Auth::load(options) {
            Ok(auth) => listeners.push(Some(Arc::new(auth))),
            Err(errors) => {
                problems.push(errors.to_string());
                listeners.push(None);
            }
        }
    }
    let Some(server) = server.filter(|_| problems.is_empty()) else {
        anyhow::bail!("invalid authentication files:\n{}", problems.join("\n"));
    };
    for (listener, own) in config.listeners.iter().zip(&listeners) {
        let auth = own.as_ref().unwrap_or(&server);
        if auth.has_acl() && !auth.has_password_file() {
            tracing::warn!(
                address = %listener.address,
                "an ACL file is set but no password file: user names are not verified, so \
                 any client can claim a user name and get its rules"
            );
        }
        let anonymous = listener.allow_anonymous.unwrap_or_else(|| {
            switchboard_auth::anonymous_allowed(settings.allow_anonymous, listener.address.ip())
        });
        tracing::info!(
            address = %listener.address,
            anonymous,
            passwords = auth.has_password_file(),
            acl = auth.has_acl(),
            own_files = own.is_some(),
            "authentication"
        );
    }
    Ok(AuthSet { server, listeners })
}

/// Reloads every password and ACL file (the server's and the listeners'
/// own) and the TLS certificates on SIGHUP. Installed before the listeners
/// start, so an early SIGHUP does not kill the process (its default
/// action). A file with errors leaves the old ones of its `Auth` in force
/// (logged); the others are still reloaded.
fn reload_on_hangup(
    auths: Vec<Arc<switchboard_auth::Auth>>,
    certificates: Arc<std::sync::OnceLock<switchboard_server::Certificates>>,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the password and ACL files");
                let auths = auths.clone();
                // File reading is blocking I/O; errors are logged by `reload`.
                let _ = tokio::task::spawn_blocking(move || {
                    for auth in &auths {
                        let _ = auth.reload();
                    }
                })
                .await;
                // TLS certificates: new handshakes get the new ones; a listener
                // whose files fail keeps its old one (logged by `reload`).
                if let Some(certificates) = certificates.get().filter(|c| !c.is_empty()) {
                    tracing::info!("SIGHUP: reloading the TLS certificates");
                    let certificates = certificates.clone();
                    let _ = tokio::task::spawn_blocking(move || certificates.reload()).await;
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (auths, certificates);
    Ok(())
}

/// The web console's options from `[http]`, or `None` when it is off. Reads
/// the token file and checks the admin hash and the access rule now, so
/// that a bad setting stops the broker before it listens.
fn console_options(
    config: &Config,
    auth: &Arc<switchboard_auth::Auth>,
) -> anyhow::Result<Option<switchboard_console::ConsoleOptions>> {
    let http = &config.http;
    if !http.enabled {
        return Ok(None);
    }
    let mut tokens = http.tokens.clone();
    if let Some(path) = &http.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the HTTP token file {}", path.display()))?;
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string),
        );
    }
    let admin = match (&http.admin_user, &http.admin_password_hash) {
        (Some(user), Some(hash)) => Some(
            switchboard_console::AdminCredentials::new(user, hash)
                .context("invalid [http] admin credentials")?,
        ),
        // The admin's password is its entry in the password file.
        (Some(user), None) => Some(
            switchboard_console::AdminCredentials::from_password_file(user, auth.clone())
                .context("invalid [http] admin_user")?,
        ),
        _ => None,
    };
    let tls = match (&http.cert_file, &http.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let options = switchboard_console::TlsOptions::new(cert_file, key_file);
            let loaded = switchboard_console::TlsListener::load("http", &options).context(
                "cannot load the web console's certificate ([http] cert_file, key_file)",
            )?;
            Some(Arc::new(loaded))
        }
        _ => None,
    };
    let options = switchboard_console::ConsoleOptions {
        allow_anonymous: http.allow_anonymous,
        tokens,
        admin,
        tls,
        ..switchboard_console::ConsoleOptions::default()
    };
    switchboard_console::check_access(&options, http.address)
        .context("cannot start the web console")?;
    Ok(Some(options))
}

/// Maps the user-facing configuration onto what the server and broker take.
fn server_options(config: &Config, auth: AuthSet) -> anyhow::Result<ServerOptions> {
    let mut listeners = Vec::new();
    for (listener, own_auth) in config.listeners.iter().zip(auth.listeners) {
        let tls = || TlsOptions {
            // Validation guarantees both for tls and wss listeners.
            cert_file: listener.cert_file.clone().unwrap_or_default(),
            key_file: listener.key_file.clone().unwrap_or_default(),
            client_ca_file: listener.client_ca_file.clone(),
            require_client_cert: listener.require_client_cert,
            use_subject_as_username: listener.use_subject_as_username,
        };
        let websocket = || WebSocketOptions {
            path: listener.ws_path().to_owned(),
            allowed_origins: listener.allowed_origins.clone(),
        };
        let kind = match listener.kind {
            switchboard_config::ListenerKind::Tcp => ListenerKind::Tcp,
            switchboard_config::ListenerKind::Tls => ListenerKind::Tls(tls()),
            switchboard_config::ListenerKind::Ws => ListenerKind::Ws(websocket()),
            switchboard_config::ListenerKind::Wss => ListenerKind::Wss(tls(), websocket()),
        };
        listeners.push(ListenerOptions {
            name: listener
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", listener.kind.as_str(), listener.address)),
            kind,
            address: listener.address,
            max_connections: listener.max_connections.unwrap_or(0),
            allow_anonymous: listener.allow_anonymous,
            auth: own_auth,
            rates: listener_rate_limits(listener, &config.limits),
        });
    }
    let limits = &config.limits;
    let session = &config.session;
    let mqtt = &config.mqtt;
    let broker = switchboard_broker::Settings {
        max_packet_size: limits.max_packet_size,
        receive_maximum: limits.max_inflight,
        max_queued_messages: limits.max_queued_messages,
        max_queued_bytes: limits.max_queued_bytes,
        max_queued_bytes_total: limits.max_queued_bytes_total,
        queue_qos0_offline: session.queue_qos0_offline,
        max_session_expiry: session.max_session_expiry_secs,
        max_keep_alive: session.max_keep_alive_secs,
        topic_alias_maximum: session.topic_alias_maximum,
        maximum_qos: switchboard_codec::QoS::from_u8(mqtt.maximum_qos)
            .unwrap_or(switchboard_codec::QoS::ExactlyOnce),
        retain_available: mqtt.retain_available,
        wildcard_subscriptions: mqtt.wildcard_subscriptions,
        shared_subscriptions: mqtt.shared_subscriptions,
        subscription_identifiers: mqtt.subscription_identifiers,
        topic_limits: switchboard_topic::TopicLimits {
            max_length: usize::from(limits.max_topic_length),
            max_levels: limits.max_topic_levels,
        },
        max_subscriptions_per_client: limits.max_subscriptions_per_client,
        max_retained_messages: limits.max_retained_messages,
        max_retained_bytes: limits.max_retained_bytes,
        max_retained_per_subscribe: limits.max_retained_per_subscribe,
        max_client_id_length: usize::from(limits.max_client_id_length),
        allow_zero_length_client_id: session.allow_zero_length_client_id,
        sys_interval: config.sys_interval(),
    };
    let durability = match config.durability {
        switchboard_config::Durability::Memory => Durability::Memory,
        switchboard_config::Durability::Sync => Durability::Sync {
            data_dir: config.data_dir.clone(),
        },
        switchboard_config::Durability::Periodic => Durability::Periodic {
            data_dir: config.data_dir.clone(),
            interval: PERIODIC_SYNC_INTERVAL,
        },
    };
    Ok(ServerOptions {
        listeners,
        max_connections: limits.max_connections,
        connect_timeout: limits.connect_timeout(),
        rates: rate_limits(limits),
        broker,
        durability,
        store_fault_injector: None,
        auth: auth.server,
        allow_anonymous: config.auth.allow_anonymous,
        park_idle_after: limits.park_idle_after(),
    })
}
