//! Connection options shared by every tool, and reconnecting.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use rand::Rng as _;
use switchboard_codec::{ConnAck, Disconnect, ProtocolVersion, QoS, ReasonCode, Will};
use tokio::time::Instant;

use super::property::{parse_properties, Properties, PropertyArgs, PropertyPacket};
use crate::{Client, ClientError, ClientOptions, DEFAULT_KEEP_ALIVE_SECS, DEFAULT_PORT};

/// 300 s: how long the broker keeps a reconnecting tool's session (its
/// subscriptions and queued QoS 1/2 messages) when the user asked for no
/// session of their own. Covers a broker restart or a network blip; the tool
/// sets it to 0 when it exits normally, so nothing lingers.
pub(crate) const DEFAULT_RECONNECT_SESSION_EXPIRY_SECS: u32 = 300;

/// First reconnect attempt after about 1 s ...
const RECONNECT_FIRST_DELAY: Duration = Duration::from_secs(1);
/// ... doubling up to 30 s, so a broker that is down for long is asked twice
/// a minute per client, not hammered by every client at once (hence jitter).
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);

/// A clean DISCONNECT on the way out is worth 5 s at most.
const EXIT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which tool is running: decides which `-D` packets make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    Pub,
    Sub,
    Req,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Pub => "pub",
            Tool::Sub => "sub",
            Tool::Req => "req",
        }
    }

    fn property_packets(self) -> &'static [PropertyPacket] {
        use PropertyPacket::*;
        match self {
            Tool::Pub => &[Connect, Publish, Disconnect, Will],
            Tool::Sub => &[Connect, Subscribe, Unsubscribe, Disconnect, Will],
            Tool::Req => &[Connect, Publish, Subscribe, Disconnect, Will],
        }
    }
}

/// Connection options shared by `pub`, `sub` and `req`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectArgs {
    /// Broker host name or IP address.
    #[arg(
        short = 'h',
        long = "host",
        value_name = "HOST",
        default_value = "localhost"
    )]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long = "port", value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Client identifier [default: sb<tool><random hex>, e.g. sbsub3f9c...].
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub id: Option<String>,
    /// Client identifier prefix; random hex digits are appended.
    #[arg(
        short = 'I',
        long = "id-prefix",
        value_name = "PREFIX",
        conflicts_with = "id"
    )]
    pub id_prefix: Option<String>,
    /// Keep alive interval in seconds; 0 turns keep alive off.
    #[arg(short = 'k', long = "keepalive", value_name = "SECS", default_value_t = DEFAULT_KEEP_ALIVE_SECS)]
    pub keepalive: u16,
    /// MQTT version: 5, 311 or 31 (also mqttv5, mqttv311, mqttv31).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", default_value = "5", value_parser = parse_protocol_version)]
    pub protocol_version: ProtocolVersion,
    /// Keep the session: connect without clean start/clean session (needs a fixed -i).
    #[arg(short = 'c', long = "disable-clean-session")]
    pub disable_clean_session: bool,
    /// MQTT 5 session expiry in seconds after disconnecting; -1 = never [default: -1 with -c, else 0].
    #[arg(short = 'x', long = "session-expiry", value_name = "SECS", allow_hyphen_values = true, value_parser = parse_session_expiry)]
    pub session_expiry: Option<u32>,
    /// User name.
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Will topic: the broker publishes the will if the connection is lost.
    #[arg(long = "will-topic", value_name = "TOPIC")]
    pub will_topic: Option<String>,
    /// Will payload [default: empty].
    #[arg(long = "will-payload", value_name = "PAYLOAD", requires = "will_topic")]
    pub will_payload: Option<String>,
    /// Will QoS: 0, 1 or 2.
    #[arg(long = "will-qos", value_name = "QOS", requires = "will_topic", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub will_qos: u8,
    /// Retain the will message.
    #[arg(long = "will-retain", requires = "will_topic")]
    pub will_retain: bool,
    #[command(flatten)]
    pub properties: PropertyArgs,
    /// Seconds to wait for the TCP connection and CONNACK.
    #[arg(long = "connect-timeout", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

/// `5`, `311`, `31`, `mqttv5`, `mqttv311`, `mqttv31` (as mosquitto), and the dotted forms.
pub(crate) fn parse_protocol_version(text: &str) -> Result<ProtocolVersion, String> {
    match text.to_ascii_lowercase().as_str() {
        "5" | "mqttv5" | "5.0" | "v5" => Ok(ProtocolVersion::V5),
        "311" | "mqttv311" | "3.1.1" | "4" => Ok(ProtocolVersion::V3_1_1),
        "31" | "mqttv31" | "3.1" | "3" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!(
            "unknown protocol version {text:?}; use 5, 311 or 31 (or mqttv5, mqttv311, mqttv31)"
        )),
    }
}

/// Seconds, or `-1`/`inf`/`infinite`/`∞` for a session that never expires.
pub(crate) fn parse_session_expiry(text: &str) -> Result<u32, String> {
    match text.to_ascii_lowercase().as_str() {
        "-1" | "inf" | "infinite" | "∞" | "never" => Ok(u32::MAX),
        other => other.parse::<u32>().map_err(|_| {
            format!(
                "invalid session expiry {text:?}: seconds from 0 to 4294967295, or -1 for never"
            )
        }),
    }
}

/// `sbsub` plus 18 hex digits: 23 letters and digits, the longest identifier
/// every 3.1.1 server must accept (`[MQTT-3.1.3-5]`).
fn random_client_id(tool: Tool) -> String {
    format!("sb{}{}", tool.name(), random_hex(9))
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.gen::<u8>()))
        .collect()
}

/// What a tool connects with and how it treats its session.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) options: ClientOptions,
    pub(crate) properties: Properties,
    /// Reconnect after the connection drops.
    pub(crate) reconnect: bool,
    /// Reconnects ask for the old session (clean start off).
    pub(crate) resumable: bool,
    /// The session expiry was ours, not the user's: end the session on a normal exit.
    pub(crate) discard_session_on_exit: bool,
}

impl ConnectArgs {
    /// Checks the options together and turns them into what to connect with.
    pub(crate) fn plan(&self, tool: Tool, reconnect: bool) -> anyhow::Result<Plan> {
        let version = self.protocol_version;
        let v5 = version.is_v5();
        let properties = parse_properties(&self.properties.occurrences, tool.property_packets())?;
        if !v5 && !properties.is_empty() {
            bail!("-D properties need MQTT 5 (-V 5)");
        }
        if !v5 && self.session_expiry.is_some() {
            bail!("-x needs MQTT 5 (-V 5); with MQTT 3.1.1 use -c to keep the session");
        }
        if !v5 && self.password.is_some() && self.username.is_none() {
            bail!("MQTT 3.x needs a user name (-u) to send a password (-P)");
        }
        if properties.will != Default::default() && self.will_topic.is_none() {
            bail!("-D will ... needs a will message (--will-topic)");
        }

        let client_id = match (&self.id, &self.id_prefix) {
            (Some(id), _) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", random_hex(4)),
            (None, None) => random_client_id(tool),
        };
        if client_id.is_empty() && (self.disable_clean_session || !v5) {
            bail!("an empty client identifier (-i \"\") needs MQTT 5 and a clean session (no -c)");
        }

        let explicit_expiry = match (
            self.session_expiry,
            properties.connect.session_expiry_interval,
        ) {
            (Some(a), Some(b)) if a != b => {
                bail!("session expiry given twice (-x {a} and -D connect session-expiry-interval {b})")
            }
            (a, b) => a.or(b),
        };
        let (session_expiry, discard_session_on_exit) = if !v5 {
            (None, false)
        } else if let Some(secs) = explicit_expiry {
            (Some(secs), false)
        } else if self.disable_clean_session {
            (Some(u32::MAX), false)
        } else if reconnect {
            (Some(DEFAULT_RECONNECT_SESSION_EXPIRY_SECS), true)
        } else {
            (None, false)
        };
        let resumable = if v5 {
            session_expiry.unwrap_or(0) > 0
        } else {
            self.disable_clean_session
        };
        if let Some(secs) = properties.disconnect.session_expiry_interval {
            // [MQTT-3.14.2-2]
            if secs > 0 && session_expiry.unwrap_or(0) == 0 {
                bail!("-D disconnect session-expiry-interval needs a session expiry on connect (-x or -c)");
            }
        }

        let will = self.will_topic.as_ref().map(|topic| Will {
            topic: topic.clone(),
            payload: Bytes::from(self.will_payload.clone().unwrap_or_default()),
            qos: QoS::from_u8(self.will_qos).unwrap_or_default(),
            retain: self.will_retain,
            properties: properties.will.clone(),
        });
        let mut connect_properties = properties.connect.clone();
        connect_properties.session_expiry_interval = None;

        let options = ClientOptions {
            host: self.host.clone(),
            port: self.port,
            client_id,
            version,
            clean_start: !self.disable_clean_session,
            keep_alive_secs: self.keepalive,
            session_expiry_secs: session_expiry,
            username: self.username.clone(),
            password: self.password.clone().map(Bytes::from),
            will,
            properties: connect_properties,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            ..ClientOptions::default()
        };
        Ok(Plan {
            options,
            properties,
            reconnect,
            resumable,
            discard_session_on_exit,
        })
    }
}

impl Plan {
    /// The DISCONNECT a tool sends when it is done: `-D disconnect` properties,
    /// and session expiry 0 when the session was only kept for reconnecting.
    pub(crate) fn exit_disconnect(&self) -> Disconnect {
        let mut disconnect = self.properties.disconnect.clone();
        disconnect.reason_code = ReasonCode::NORMAL_DISCONNECTION;
        if self.discard_session_on_exit && disconnect.session_expiry_interval.is_none() {
            disconnect.session_expiry_interval = Some(0);
        }
        disconnect
    }
}

/// Sends the exit DISCONNECT; a failure here changes nothing for the user.
pub(crate) async fn finish(client: &Client, plan: &Plan) {
    let disconnect = client.disconnect_with(plan.exit_disconnect());
    match tokio::time::timeout(EXIT_DISCONNECT_TIMEOUT, disconnect).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "DISCONNECT on exit failed"),
        Err(_) => tracing::debug!("DISCONNECT on exit timed out"),
    }
}

/// Opens connections for a tool: the first one, and new ones after the
/// previous dropped, with exponential backoff and jitter.
pub(crate) struct Connector {
    plan: Plan,
    delay: Duration,
}

impl Connector {
    pub(crate) fn new(plan: Plan) -> Connector {
        Connector {
            plan,
            delay: RECONNECT_FIRST_DELAY,
        }
    }

    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The first connection. Any failure is the user's to see.
    pub(crate) async fn connect(&mut self) -> Result<(Client, ConnAck), ClientError> {
        let (client, connack) = Client::connect(self.plan.options.clone()).await?;
        self.connected(&client);
        Ok((client, connack))
    }

    /// Keeps the identity (the server may have assigned it) and, when the
    /// session is resumable, asks for it back on every reconnect.
    fn connected(&mut self, client: &Client) {
        self.plan.options.client_id = client.client_id().to_owned();
        if self.plan.resumable {
            self.plan.options.clean_start = false;
        }
        self.delay = RECONNECT_FIRST_DELAY;
    }

    /// Whether to reconnect after the connection ended with `error`.
    pub(crate) fn should_reconnect(&self, error: &ClientError) -> bool {
        self.plan.reconnect && is_transient(error)
    }

    /// Connects again after `cause`, retrying transient failures with
    /// backoff. Returns the first failure that retrying cannot fix.
    pub(crate) async fn reconnect(
        &mut self,
        mut cause: ClientError,
    ) -> Result<(Client, ConnAck), ClientError> {
        loop {
            let delay = self.next_delay();
            eprintln!("{cause}; reconnecting in {:.1} s", delay.as_secs_f64());
            tokio::time::sleep(delay).await;
            match Client::connect(self.plan.options.clone()).await {
                Ok((client, connack)) => {
                    eprintln!(
                        "reconnected to {} (session {})",
                        self.plan.options.address(),
                        if connack.session_present {
                            "resumed"
                        } else {
                            "new"
                        }
                    );
                    self.connected(&client);
                    return Ok((client, connack));
                }
                Err(error) if is_transient(&error) => cause = error,
                Err(error) => return Err(error),
            }
        }
    }

    /// Full jitter over the upper half: `delay/2 ..= delay`, then doubles.
    fn next_delay(&mut self) -> Duration {
        let base = self.delay;
        self.delay = (self.delay * 2).min(RECONNECT_MAX_DELAY);
        let half = base / 2;
        let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis().max(1));
        half + Duration::from_millis(u64::try_from(jitter_ms).unwrap_or(0))
    }
}

/// Failures that may go away by themselves: the network, a restarting or
/// busy broker. Refusals (bad password, not authorized, banned), protocol
/// errors and a session taken over by another client would only repeat.
pub(crate) fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { .. }
        | ClientError::ConnectTimeout { .. }
        | ClientError::ConnectionClosed
        | ClientError::Io(_)
        | ClientError::KeepAliveTimeout(_) => true,
        ClientError::ConnectionRefused { reason_code, .. } => matches!(
            *reason_code,
            ReasonCode::SERVER_UNAVAILABLE
                | ReasonCode::SERVER_BUSY
                | ReasonCode::SERVER_SHUTTING_DOWN
                | ReasonCode::CONNECTION_RATE_EXCEEDED
                | ReasonCode::QUOTA_EXCEEDED
        ),
        ClientError::ServerDisconnected { reason_code, .. } => !matches!(
            *reason_code,
            ReasonCode::SESSION_TAKEN_OVER
                | ReasonCode::NOT_AUTHORIZED
                | ReasonCode::BANNED
                | ReasonCode::BAD_USER_NAME_OR_PASSWORD
                | ReasonCode::MALFORMED_PACKET
                | ReasonCode::PROTOCOL_ERROR
                | ReasonCode::USE_ANOTHER_SERVER
                | ReasonCode::SERVER_MOVED
                | ReasonCode::PACKET_TOO_LARGE
                | ReasonCode::TOPIC_NAME_INVALID
                | ReasonCode::TOPIC_FILTER_INVALID
        ),
        _ => false,
    }
}

/// Ctrl-C (and SIGTERM on Unix): the tools then disconnect cleanly.
pub(crate) struct Interrupt {
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    fired: bool,
}

impl Interrupt {
    pub(crate) fn from_signals() -> Interrupt {
        Interrupt::from_future(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                if let Ok(mut terminate) = signal(SignalKind::terminate()) {
                    tokio::select! {
                        result = tokio::signal::ctrl_c() => {
                            if result.is_err() {
                                terminate.recv().await;
                            }
                        }
                        _ = terminate.recv() => {}
                    }
                    return;
                }
            }
            if tokio::signal::ctrl_c().await.is_err() {
                // No signal handling: never interrupt rather than at once.
                std::future::pending::<()>().await;
            }
        })
    }

    pub(crate) fn from_future(signal: impl Future<Output = ()> + Send + 'static) -> Interrupt {
        Interrupt {
            signal: Box::pin(signal),
            fired: false,
        }
    }

    async fn fired(&mut self) {
        if !self.fired {
            (&mut self.signal).await;
            self.fired = true;
        }
    }
}

/// How waiting for something ended.
pub(crate) enum Wait<T> {
    Done(T),
    TimedOut,
    Interrupted,
}

/// Waits for `future` unless the tool's deadline passes or the user interrupts.
pub(crate) async fn wait<F: Future>(
    future: F,
    deadline: Option<Instant>,
    interrupt: &mut Interrupt,
) -> Wait<F::Output> {
    let timer = tokio::time::sleep_until(
        deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 60 * 60)),
    );
    tokio::select! {
        output = future => Wait::Done(output),
        () = timer, if deadline.is_some() => Wait::TimedOut,
        () = interrupt.fired() => Wait::Interrupted,
    }
}

/// `Some(now + secs)`, or `None` for no time limit.
pub(crate) fn deadline_after(secs: Option<u64>) -> Option<Instant> {
    secs.map(|secs| Instant::now() + Duration::from_secs(secs))
}

/// Runs a blocking read (a file, standard input) off the async threads.
/// A failure is one line: `what: reason`.
pub(crate) async fn read_blocking<T: Send + 'static>(
    what: String,
    read: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(anyhow!("{what}: {error}")),
        Err(error) => Err(anyhow!("{what}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(disable_help_flag = true)]
    struct Wrapper {
        #[command(flatten)]
        connection: ConnectArgs,
    }

    fn parse(args: &[&str]) -> ConnectArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).unwrap().connection
    }

    #[test]
    fn protocol_version_spellings() {
        for (text, version) in [
            ("5", ProtocolVersion::V5),
            ("mqttv5", ProtocolVersion::V5),
            ("311", ProtocolVersion::V3_1_1),
            ("mqttv311", ProtocolVersion::V3_1_1),
            ("MQTTv311", ProtocolVersion::V3_1_1),
            ("31", ProtocolVersion::V3_1),
            ("mqttv31", ProtocolVersion::V3_1),
        ] {
            assert_eq!(parse_protocol_version(text), Ok(version), "{text}");
        }
        assert!(parse_protocol_version("6").is_err());
        assert_eq!(
            parse(&["-V", "311"]).protocol_version,
            ProtocolVersion::V3_1_1
        );
        assert_eq!(parse(&[]).protocol_version, ProtocolVersion::V5);
    }

    #[test]
    fn session_expiry_accepts_minus_one_for_never() {
        assert_eq!(parse(&["-x", "-1"]).session_expiry, Some(u32::MAX));
        assert_eq!(parse(&["-x", "60"]).session_expiry, Some(60));
        assert!(parse_session_expiry("soon").is_err());
    }

    #[test]
    fn defaults_match_mosquitto() {
        let args = parse(&[]);
        assert_eq!(args.host, "localhost");
        assert_eq!(args.port, 1883);
        assert_eq!(args.keepalive, 60);
        let args = parse(&[
            "-h",
            "broker.example",
            "-p",
            "8883",
            "-u",
            "me",
            "-P",
            "secret",
        ]);
        assert_eq!(args.host, "broker.example");
        assert_eq!(args.port, 8883);
        assert_eq!(args.password.as_deref(), Some("secret"));
    }

    #[test]
    fn default_client_id_fits_23_characters() {
        // [MQTT-3.1.3-5]
        let plan = parse(&[]).plan(Tool::Sub, false).unwrap();
        let id = plan.options.client_id;
        assert_eq!(id.len(), 23);
        assert!(id.starts_with("sbsub"), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }

    #[test]
    fn reconnecting_v5_tool_keeps_a_session_and_drops_it_on_exit() {
        let plan = parse(&[]).plan(Tool::Sub, true).unwrap();
        assert!(plan.options.clean_start);
        assert_eq!(
            plan.options.session_expiry_secs,
            Some(DEFAULT_RECONNECT_SESSION_EXPIRY_SECS)
        );
        assert!(plan.resumable);
        assert_eq!(plan.exit_disconnect().session_expiry_interval, Some(0));
    }

    #[test]
    fn persistent_session_never_expires_unless_told() {
        let plan = parse(&["-c", "-i", "me"]).plan(Tool::Sub, true).unwrap();
        assert!(!plan.options.clean_start);
        assert_eq!(plan.options.session_expiry_secs, Some(u32::MAX));
        assert_eq!(plan.exit_disconnect().session_expiry_interval, None);

        let plan = parse(&["-c", "-x", "60"]).plan(Tool::Sub, true).unwrap();
        assert_eq!(plan.options.session_expiry_secs, Some(60));
    }

    #[test]
    fn v311_resumes_only_with_disable_clean_session() {
        let plan = parse(&["-V", "311"]).plan(Tool::Sub, true).unwrap();
        assert!(!plan.resumable);
        assert_eq!(plan.options.session_expiry_secs, None);
        let plan = parse(&["-V", "311", "-c"]).plan(Tool::Sub, true).unwrap();
        assert!(plan.resumable);
    }

    #[test]
    fn v5_only_options_are_refused_for_v311() {
        let error = parse(&["-V", "311", "-D", "connect", "receive-maximum", "5"])
            .plan(Tool::Sub, false)
            .unwrap_err();
        assert!(error.to_string().contains("MQTT 5"), "{error}");
        assert!(parse(&["-V", "311", "-x", "5"])
            .plan(Tool::Sub, false)
            .is_err());
    }

    #[test]
    fn session_expiry_given_two_ways_must_agree() {
        let args = parse(&["-x", "5", "-D", "connect", "session-expiry-interval", "6"]);
        assert!(args.plan(Tool::Pub, false).is_err());
        let args = parse(&["-D", "connect", "session-expiry-interval", "6"]);
        assert_eq!(
            args.plan(Tool::Pub, false)
                .unwrap()
                .options
                .session_expiry_secs,
            Some(6)
        );
    }

    #[test]
    fn will_options_build_a_will() {
        let plan = parse(&[
            "--will-topic",
            "status",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
            "--will-retain",
            "-D",
            "will",
            "will-delay-interval",
            "10",
        ])
        .plan(Tool::Pub, false)
        .unwrap();
        let will = plan.options.will.unwrap();
        assert_eq!(will.topic, "status");
        assert_eq!(&will.payload[..], b"gone");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
        assert_eq!(will.properties.will_delay_interval, Some(10));
    }

    #[test]
    fn will_payload_without_topic_is_refused() {
        let argv = ["test", "--will-payload", "x"];
        assert!(Wrapper::try_parse_from(argv).is_err());
    }

    #[test]
    fn only_network_and_busy_failures_are_retried() {
        assert!(is_transient(&ClientError::ConnectionClosed));
        assert!(is_transient(&ClientError::ServerDisconnected {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            reason_string: None,
            server_reference: None,
        }));
        assert!(!is_transient(&ClientError::ServerDisconnected {
            reason_code: ReasonCode::SESSION_TAKEN_OVER,
            reason_string: None,
            server_reference: None,
        }));
        assert!(!is_transient(&ClientError::ConnectionRefused {
            reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            reason_string: None,
        }));
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        let plan = parse(&[]).plan(Tool::Sub, true).unwrap();
        let mut connector = Connector::new(plan);
        let mut ceiling = RECONNECT_FIRST_DELAY;
        for _ in 0..10 {
            let delay = connector.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(RECONNECT_MAX_DELAY);
        }
        assert_eq!(connector.delay, RECONNECT_MAX_DELAY);
    }
}
