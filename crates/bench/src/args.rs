//! The command line, and the validated settings a run uses.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, ValueEnum};
use switchboard_codec::{ProtocolVersion, QoS};

use crate::link::SessionKind;
use crate::payload::HEADER_LEN;

/// 127.0.0.1: a benchmark sends load only where it is pointed, and by default
/// that is this machine.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// 1883, the registered MQTT port.
pub const DEFAULT_PORT: u16 = 1883;

/// 10 s measured: long enough for steady state on a busy broker, short enough
/// to run a whole comparison in a few minutes.
pub const DEFAULT_DURATION_SECS: f64 = 10.0;

/// 1 s of warm-up (not measured): buffers grow, caches fill, the allocator
/// settles.
pub const DEFAULT_WARMUP_SECS: f64 = 1.0;

/// 2 s to wait, after the publishers stop, for messages still in flight.
pub const DEFAULT_DRAIN_SECS: f64 = 2.0;

/// 500 messages in flight end to end per receiving client: below the
/// per-client queues of Switchboard (1000) and Mosquitto (1000 queued + 20 in
/// flight), so a closed-loop run measures throughput, not queue overflow.
pub const DEFAULT_WINDOW: u64 = 500;

/// 16 bytes: the header alone, the customary small-message comparison.
pub const DEFAULT_PAYLOAD_SIZE: usize = HEADER_LEN;

/// Connections set up at once: enough to make 10k connections take seconds,
/// not minutes, without a SYN flood against the listen backlog.
pub const DEFAULT_CONNECT_CONCURRENCY: usize = 64;

/// QoS 1/2 messages in flight per publisher in MQTT 3.1.1, where the broker
/// cannot announce its limit: Mosquitto's default `max_inflight_messages`.
/// Mosquitto acknowledges and silently drops a 3.1.1 client's messages beyond
/// it, which a benchmark must not provoke by default.
pub const DEFAULT_INFLIGHT_V311: u16 = 20;

/// Session expiry asked for by `--persistent` subscribers (MQTT 5): an hour
/// outlasts any run, and a session that a killed run could not end goes away
/// by itself within the hour instead of collecting messages for a week.
pub const DEFAULT_SESSION_EXPIRY_SECS: u32 = 3600;

/// Largest payload accepted: MQTT's limit is 256 MiB per packet; 64 MiB keeps
/// a typo from allocating gigabytes of write buffers.
const MAX_PAYLOAD_SIZE: usize = 64 * 1024 * 1024;

/// Retained messages in the `retained` scenario when `--count` is not given:
/// Switchboard delivers at most 1000 per subscribe by default
/// (`max_retained_per_subscribe`).
pub(crate) const DEFAULT_RETAINED_COUNT: u64 = 1000;

/// The load patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Scenario {
    /// Many publishers, each on its own topic; one subscriber on a wildcard.
    FanIn,
    /// One publisher; many subscribers to its topic.
    FanOut,
    /// Independent publisher -> subscriber pairs, one topic each.
    Pairs,
    /// Many idle connections: connect rate, and broker memory per connection with --broker-pid.
    Idle,
    /// A flood of retained messages, then one subscribe to all of them.
    Retained,
    /// MQTT 5 request-response: requesters and one responder, response topic + correlation data.
    ReqResp,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
            Scenario::Pairs => "pairs",
            Scenario::Idle => "idle",
            Scenario::Retained => "retained",
            Scenario::ReqResp => "req-resp",
        }
    }

    /// What `--clients` counts in this scenario, when not given.
    pub(crate) fn default_clients(self) -> usize {
        match self {
            Scenario::FanIn | Scenario::Pairs | Scenario::ReqResp => 16,
            Scenario::FanOut => 100,
            Scenario::Idle => 1000,
            Scenario::Retained => 1,
        }
    }
}

/// `switchboard bench`: load for an MQTT broker, and what it measured.
///
/// The load goes only to `--host`/`--port` (127.0.0.1:1883 unless told
/// otherwise); nothing is discovered or scanned.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(
    about = "Load-test an MQTT broker: throughput, loss, reordering, latency, memory per connection",
    long_about = "Load-test an MQTT broker (Switchboard or any other): throughput, loss, \
                  reordering, end-to-end latency percentiles, connect rate and memory per \
                  connection.\n\n\
                  Load is sent only to the given --host and --port (127.0.0.1:1883 by default); \
                  nothing is discovered or scanned. Every run is bounded by --duration and/or \
                  --count, then waits at most --drain for messages in flight, reports, and exits.",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = "Scenarios:\n  \
        fan-in    --clients publishers on topics <prefix>/in/<n>, one subscriber to <prefix>/in/+\n  \
        fan-out   one publisher, --clients subscribers to its topic\n  \
        pairs     --clients publisher/subscriber pairs, one topic each\n  \
        idle      --clients idle connections; with --broker-pid, broker VmRSS per connection\n  \
        retained  --count retained messages, then one subscriber to all: time to receive them\n  \
        req-resp  --clients requesters, one responder (MQTT 5: response topic, correlation data)\n\n\
        Closed loop (no --rate): each publisher keeps at most its share of --window messages \
        not yet received end to end. Open loop (--rate N): N messages/s in total on a fixed \
        schedule. Latency is from the send time stamped in each payload to its arrival, on \
        this process's monotonic clock.\n\n\
        Example: switchboard bench fan-in -q 1 -s 1024 --duration 5"
)]
pub struct BenchArgs {
    /// Scenarios to run, one after the other.
    #[arg(value_enum, required = true, value_name = "SCENARIO")]
    pub scenarios: Vec<Scenario>,
    /// Broker host name or address: the only place load is sent.
    #[arg(short = 'h', long = "host", value_name = "HOST", default_value = DEFAULT_HOST)]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long = "port", value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// MQTT version: 5 or 311 (also mqttv5, mqttv311).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", default_value = "5", value_parser = parse_protocol_version)]
    pub protocol_version: ProtocolVersion,
    /// Quality of service of every message and subscription: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 16: publisher id, sequence, send time).
    #[arg(short = 's', long = "payload-size", value_name = "BYTES", default_value_t = DEFAULT_PAYLOAD_SIZE)]
    pub payload_size: usize,
    /// Clients on the "many" side: fan-in publishers (16), fan-out subscribers (100),
    /// pairs (16), idle connections (1000), req-resp requesters (16).
    #[arg(short = 'c', long = "clients", value_name = "N")]
    pub clients: Option<usize>,
    /// Open loop: messages per second in total, on a fixed schedule [default: closed loop].
    #[arg(short = 'r', long = "rate", value_name = "MSG/S")]
    pub rate: Option<f64>,
    /// Closed loop: messages in flight end to end per receiving client, shared by its publishers.
    #[arg(short = 'w', long = "window", value_name = "N", default_value_t = DEFAULT_WINDOW)]
    pub window: u64,
    /// QoS 1/2 messages a publisher has unacknowledged at most [default: the broker's
    /// Receive Maximum in MQTT 5; 20 in 3.1.1, which has no way to ask].
    #[arg(long = "max-inflight", value_name = "N")]
    pub max_inflight: Option<u16>,
    /// Seconds of measured load (after the warm-up).
    #[arg(short = 'd', long = "duration", value_name = "SECS", default_value_t = DEFAULT_DURATION_SECS)]
    pub duration: f64,
    /// Stop after this many measured messages in total (retained: messages to store) [default: none; retained 1000].
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Seconds of load before measuring starts.
    #[arg(long = "warmup", value_name = "SECS", default_value_t = DEFAULT_WARMUP_SECS)]
    pub warmup: f64,
    /// Seconds to wait for messages in flight after the publishers stop.
    #[arg(long = "drain", value_name = "SECS", default_value_t = DEFAULT_DRAIN_SECS)]
    pub drain: f64,
    /// Extra subscribers, on the first subscriber's filter, that never read: a
    /// broker should keep serving the others (slow-consumer isolation).
    #[arg(long = "stalled", value_name = "N", default_value_t = 0)]
    pub stalled: usize,
    /// Subscribers keep persistent sessions (clean start 0, MQTT 5 session expiry
    /// --session-expiry) under fixed client ids, so the broker must keep every message
    /// it queues for them: a durable broker writes each to disk before acknowledging it.
    /// Their sessions are ended before and after the run. fan-in, fan-out, pairs, req-resp.
    #[arg(long = "persistent")]
    pub persistent: bool,
    /// With --persistent: the MQTT 5 session expiry interval asked for, in seconds
    /// [default: 3600]. 3.1.1 has none: the broker keeps the session as long as it likes.
    #[arg(long = "session-expiry", value_name = "SECS", requires = "persistent")]
    pub session_expiry: Option<u32>,
    /// Broker process id: read its VmRSS from /proc/PID/status before and after (idle).
    /// Use a freshly started broker: RSS keeps the high-water mark of earlier load.
    #[arg(long = "broker-pid", value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Print one JSON object per scenario run instead of a table.
    #[arg(long = "json")]
    pub json: bool,
    /// Local addresses to connect from, in turn (repeat or separate with commas),
    /// e.g. 127.0.0.2,127.0.0.3: on loopback each source address has about 28k
    /// ephemeral ports, so 100k idle connections need at least four [default: the
    /// system's choice].
    #[arg(long = "source-address", value_name = "ADDR", value_delimiter = ',')]
    pub source_addresses: Vec<std::net::IpAddr>,
    /// Connections being set up at once.
    #[arg(long = "connect-concurrency", value_name = "N", default_value_t = DEFAULT_CONNECT_CONCURRENCY)]
    pub connect_concurrency: usize,
    /// Seconds to wait for the TCP connection and CONNACK (and SUBACK).
    #[arg(long = "connect-timeout", value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Idle: seconds to hold the connections before reading the broker's memory.
    #[arg(long = "settle", value_name = "SECS", default_value_t = 1.0)]
    pub settle: f64,
    /// First topic level of every topic used (a per-run level follows it).
    #[arg(
        long = "topic-prefix",
        value_name = "PREFIX",
        default_value = "switchboard-bench"
    )]
    pub topic_prefix: String,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// `5`, `311` and their spellings as mosquitto takes them. MQTT 3.1 is left
/// out: it is 3.1.1 for a benchmark's purposes and few brokers still care.
pub(crate) fn parse_protocol_version(text: &str) -> Result<ProtocolVersion, String> {
    match text.to_ascii_lowercase().as_str() {
        "5" | "mqttv5" | "5.0" | "v5" => Ok(ProtocolVersion::V5),
        "311" | "mqttv311" | "3.1.1" | "4" => Ok(ProtocolVersion::V3_1_1),
        _ => Err(format!(
            "unknown protocol version {text:?}; use 5 or 311 (or mqttv5, mqttv311)"
        )),
    }
}

/// Validated settings shared by every scenario of one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) version: ProtocolVersion,
    pub(crate) qos: QoS,
    pub(crate) payload_size: usize,
    pub(crate) clients: Option<usize>,
    /// Messages per second in total; `None` = closed loop.
    pub(crate) rate: Option<f64>,
    pub(crate) window: u64,
    /// QoS 1/2 in flight per publisher; `None` = the broker's Receive Maximum.
    pub(crate) max_inflight: Option<u16>,
    pub(crate) duration: Duration,
    pub(crate) count: Option<u64>,
    pub(crate) warmup: Duration,
    pub(crate) drain: Duration,
    pub(crate) stalled: usize,
    /// How subscribers (receivers, the responder, stalled ones) connect;
    /// publishers always use clean sessions.
    pub(crate) subscriber_session: SessionKind,
    pub(crate) broker_pid: Option<u32>,
    pub(crate) json: bool,
    pub(crate) connect_concurrency: usize,
    /// Local addresses to connect from, in turn; empty = the system's choice.
    pub(crate) source_addresses: Vec<std::net::IpAddr>,
    pub(crate) connect_timeout: Duration,
    pub(crate) settle: Duration,
    pub(crate) topic_prefix: String,
}

impl Settings {
    pub(crate) fn from_args(args: &BenchArgs) -> anyhow::Result<Settings> {
        if args.payload_size < HEADER_LEN {
            bail!(
                "--payload-size {} is too small: every message carries a {HEADER_LEN}-byte header \
                 (publisher id, sequence number, send time)",
                args.payload_size
            );
        }
        if args.payload_size > MAX_PAYLOAD_SIZE {
            bail!(
                "--payload-size {} is larger than the {MAX_PAYLOAD_SIZE} bytes allowed",
                args.payload_size
            );
        }
        if let Some(rate) = args.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of messages per second");
            }
        }
        if args.window == 0 {
            bail!("--window must be at least 1");
        }
        if args.max_inflight == Some(0) {
            bail!("--max-inflight must be at least 1");
        }
        if args.count == Some(0) {
            bail!("--count must be at least 1");
        }
        if args.clients == Some(0) {
            bail!("--clients must be at least 1");
        }
        if args.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        if args.session_expiry == Some(0) {
            bail!(
                "--session-expiry must be at least 1 second: with 0 the session ends at \
                 disconnect, and the broker has nothing to keep"
            );
        }
        if args.persistent {
            if let Some(scenario) = args
                .scenarios
                .iter()
                .find(|scenario| matches!(scenario, Scenario::Idle | Scenario::Retained))
            {
                bail!(
                    "--persistent applies to fan-in, fan-out, pairs and req-resp, not {}",
                    scenario.name()
                );
            }
        }
        let prefix = &args.topic_prefix;
        if prefix.is_empty() || prefix.contains(['+', '#', '\0']) || prefix.starts_with('$') {
            bail!("--topic-prefix {prefix:?} must be a non-empty topic name without wildcards or a leading $");
        }
        Ok(Settings {
            host: args.host.clone(),
            port: args.port,
            version: args.protocol_version,
            qos: QoS::from_u8(args.qos).context("--qos must be 0, 1 or 2")?,
            payload_size: args.payload_size,
            clients: args.clients,
            rate: args.rate,
            window: args.window,
            max_inflight: match (args.max_inflight, args.protocol_version) {
                (Some(max), _) => Some(max),
                (None, ProtocolVersion::V5) => None,
                (None, _) => Some(DEFAULT_INFLIGHT_V311),
            },
            duration: seconds("--duration", args.duration, false)?,
            count: args.count,
            warmup: seconds("--warmup", args.warmup, true)?,
            drain: seconds("--drain", args.drain, true)?,
            stalled: args.stalled,
            subscriber_session: if args.persistent {
                SessionKind::Persistent {
                    expiry_secs: args.session_expiry.unwrap_or(DEFAULT_SESSION_EXPIRY_SECS),
                }
            } else {
                SessionKind::Clean
            },
            broker_pid: args.broker_pid,
            json: args.json,
            connect_concurrency: args.connect_concurrency,
            source_addresses: args.source_addresses.clone(),
            connect_timeout: seconds("--connect-timeout", args.connect_timeout, false)?,
            settle: seconds("--settle", args.settle, true)?,
            topic_prefix: prefix.clone(),
        })
    }

    /// The "many" side of `scenario`.
    pub(crate) fn clients_for(&self, scenario: Scenario) -> usize {
        self.clients.unwrap_or_else(|| scenario.default_clients())
    }
}

/// A number of seconds as a `Duration`: finite, at most a day, positive
/// unless `zero_ok`.
fn seconds(flag: &str, value: f64, zero_ok: bool) -> anyhow::Result<Duration> {
    const DAY: f64 = 86_400.0;
    let valid = value.is_finite() && value <= DAY && (value > 0.0 || (zero_ok && value == 0.0));
    if !valid {
        let lower = if zero_ok { "0" } else { "more than 0" };
        bail!("{flag} {value} must be {lower} and at most {DAY} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    #[command(disable_help_flag = true)]
    struct Wrapper {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).map(|wrapper| wrapper.args)
    }

    #[test]
    fn defaults() {
        let args = parse(&["fan-in"]).unwrap();
        assert_eq!(args.scenarios, [Scenario::FanIn]);
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(settings.host, "127.0.0.1");
        assert_eq!(settings.port, 1883);
        assert_eq!(settings.version, ProtocolVersion::V5);
        assert_eq!(settings.qos, QoS::AtMostOnce);
        assert_eq!(settings.payload_size, 16);
        assert_eq!(settings.rate, None);
        assert_eq!(settings.window, DEFAULT_WINDOW);
        assert_eq!(settings.max_inflight, None, "v5: the broker says");
        let v311 = Settings::from_args(&parse(&["fan-in", "-V", "311"]).unwrap()).unwrap();
        assert_eq!(v311.max_inflight, Some(DEFAULT_INFLIGHT_V311));
        assert_eq!(settings.duration, Duration::from_secs(10));
        assert_eq!(settings.warmup, Duration::from_secs(1));
        assert_eq!(settings.drain, Duration::from_secs(2));
        assert_eq!(settings.count, None);
        assert_eq!(settings.subscriber_session, SessionKind::Clean);
        assert!(!settings.json);
        assert_eq!(settings.clients_for(Scenario::FanIn), 16);
        assert_eq!(settings.clients_for(Scenario::FanOut), 100);
        assert_eq!(settings.clients_for(Scenario::Idle), 1000);
    }

    #[test]
    fn source_addresses_by_list_or_repeated() {
        let listed = parse(&["idle", "--source-address", "127.0.0.2,127.0.0.3"]).unwrap();
        let repeated = parse(&[
            "idle",
            "--source-address",
            "127.0.0.2",
            "--source-address",
            "127.0.0.3",
        ])
        .unwrap();
        let expected: Vec<std::net::IpAddr> = vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
        assert_eq!(listed.source_addresses, expected);
        assert_eq!(
            Settings::from_args(&repeated).unwrap().source_addresses,
            expected
        );
        assert!(Settings::from_args(&parse(&["idle"]).unwrap())
            .unwrap()
            .source_addresses
            .is_empty());
        assert!(parse(&["idle", "--source-address", "not-an-address"]).is_err());
    }

    #[test]
    fn every_option_in_mosquitto_style() {
        let args = parse(&[
            "fan-out",
            "pairs",
            "-h",
            "broker.test",
            "-p",
            "18831",
            "-V",
            "mqttv311",
            "-q",
            "2",
            "-s",
            "1024",
            "-c",
            "1000",
            "--rate",
            "20000",
            "-w",
            "64",
            "--max-inflight",
            "7",
            "-d",
            "5.5",
            "-n",
            "777",
            "--warmup",
            "0",
            "--drain",
            "0.5",
            "--broker-pid",
            "4242",
            "--json",
            "--connect-concurrency",
            "8",
            "--settle",
            "3",
            "--topic-prefix",
            "lab/bench",
            "--stalled",
            "2",
        ])
        .unwrap();
        assert_eq!(args.scenarios, [Scenario::FanOut, Scenario::Pairs]);
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(settings.host, "broker.test");
        assert_eq!(settings.port, 18831);
        assert_eq!(settings.version, ProtocolVersion::V3_1_1);
        assert_eq!(settings.qos, QoS::ExactlyOnce);
        assert_eq!(settings.payload_size, 1024);
        assert_eq!(settings.clients_for(Scenario::FanOut), 1000);
        assert_eq!(settings.rate, Some(20_000.0));
        assert_eq!(settings.window, 64);
        assert_eq!(settings.max_inflight, Some(7));
        assert_eq!(settings.duration, Duration::from_millis(5500));
        assert_eq!(settings.count, Some(777));
        assert_eq!(settings.warmup, Duration::ZERO);
        assert_eq!(settings.drain, Duration::from_millis(500));
        assert_eq!(settings.broker_pid, Some(4242));
        assert_eq!(settings.stalled, 2);
        assert!(settings.json);
        assert_eq!(settings.connect_concurrency, 8);
        assert_eq!(settings.settle, Duration::from_secs(3));
        assert_eq!(settings.topic_prefix, "lab/bench");
    }

    #[test]
    fn persistent_subscribers() {
        let settings = Settings::from_args(&parse(&["fan-in", "--persistent"]).unwrap()).unwrap();
        assert_eq!(
            settings.subscriber_session,
            SessionKind::Persistent {
                expiry_secs: DEFAULT_SESSION_EXPIRY_SECS
            }
        );
        let args = parse(&[
            "fan-out",
            "pairs",
            "req-resp",
            "--persistent",
            "--session-expiry",
            "60",
        ])
        .unwrap();
        assert!(args.persistent);
        assert_eq!(args.session_expiry, Some(60));
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(
            settings.subscriber_session,
            SessionKind::Persistent { expiry_secs: 60 }
        );
        // 3.1.1 has no expiry to send, but the session is persistent all the same.
        let v311 = parse(&["fan-in", "--persistent", "-V", "311"]).unwrap();
        assert!(matches!(
            Settings::from_args(&v311).unwrap().subscriber_session,
            SessionKind::Persistent { .. }
        ));
    }

    #[test]
    fn persistent_refusals() {
        assert!(
            parse(&["fan-in", "--session-expiry", "60"]).is_err(),
            "--session-expiry needs --persistent"
        );
        assert!(parse(&["fan-in", "--persistent", "--session-expiry", "-1"]).is_err());
        assert!(parse(&["fan-in", "--persistent", "--session-expiry", "4294967296"]).is_err());
        let invalid: &[&[&str]] = &[
            &["fan-in", "--persistent", "--session-expiry", "0"],
            &["idle", "--persistent"],
            &["fan-in", "retained", "--persistent"],
        ];
        for args in invalid {
            let parsed = parse(args).unwrap();
            assert!(Settings::from_args(&parsed).is_err(), "{args:?}");
        }
    }

    #[test]
    fn scenario_names() {
        for (text, scenario) in [
            ("fan-in", Scenario::FanIn),
            ("fan-out", Scenario::FanOut),
            ("pairs", Scenario::Pairs),
            ("idle", Scenario::Idle),
            ("retained", Scenario::Retained),
            ("req-resp", Scenario::ReqResp),
        ] {
            assert_eq!(parse(&[text]).unwrap().scenarios, [scenario]);
            assert_eq!(scenario.name(), text);
        }
        assert!(parse(&["fan-sideways"]).is_err());
        assert!(parse(&[]).is_err(), "a scenario is required");
    }

    #[test]
    fn refuses_what_cannot_be_measured() {
        let bad: &[&[&str]] = &[
            &["fan-in", "-q", "3"],
            &["fan-in", "-V", "6"],
            &["fan-in", "-p", "70000"],
        ];
        for args in bad {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let invalid: &[&[&str]] = &[
            &["fan-in", "-s", "15"],
            &["fan-in", "-s", "999999999"],
            &["fan-in", "--rate", "0"],
            &["fan-in", "--rate", "NaN"],
            &["fan-in", "-w", "0"],
            &["fan-in", "--max-inflight", "0"],
            &["fan-in", "-n", "0"],
            &["fan-in", "-c", "0"],
            &["fan-in", "-d", "0"],
            &["fan-in", "--duration=-1"],
            &["fan-in", "-d", "inf"],
            &["fan-in", "--warmup=-1"],
            &["fan-in", "--connect-concurrency", "0"],
            &["fan-in", "--topic-prefix", "a/+"],
            &["fan-in", "--topic-prefix", "$SYS"],
            &["fan-in", "--topic-prefix", ""],
        ];
        for args in invalid {
            let parsed = parse(args).unwrap();
            assert!(Settings::from_args(&parsed).is_err(), "{args:?}");
        }
    }

    #[test]
    fn protocol_version_spellings() {
        for text in ["5", "mqttv5", "5.0", "V5"] {
            assert_eq!(parse_protocol_version(text), Ok(ProtocolVersion::V5));
        }
        for text in ["311", "mqttv311", "3.1.1", "4"] {
            assert_eq!(parse_protocol_version(text), Ok(ProtocolVersion::V3_1_1));
        }
        assert!(parse_protocol_version("31").is_err());
    }
}
