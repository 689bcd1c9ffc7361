//! `switchboard pub`: publish one message, or one per line of standard input.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use clap::ArgAction;
use switchboard_codec::{Publish, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::connect::{finish, read_blocking, ConnectArgs, Tool};
use crate::{describe_reason, Client, ClientHandle, PublishOutcome};

/// How many `-l` lines may wait for their acknowledgement at once: enough to
/// hide the round trip, few enough that a refusal stops the run quickly.
const LINE_PIPELINE_DEPTH: usize = 64;

/// Lines read ahead of the publisher.
const LINE_QUEUE: usize = 64;

/// `switchboard pub`: publish a message, like mosquitto_pub.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(
    about = "Publish a message (options as mosquitto_pub)",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = super::PROPERTY_HELP
)]
pub struct PubArgs {
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Ask the broker to retain the message (with -n: clear the retained message).
    #[arg(short = 'r', long = "retain")]
    pub retain: bool,
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// Where the message comes from: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[group(required = true, multiple = false)]
pub struct MessageArgs {
    /// Message payload.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Send all of standard input as one message.
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,
    /// Send each line of standard input as a message (blank lines are skipped).
    #[arg(short = 'l', long = "stdin-line")]
    pub stdin_line: bool,
    /// Send an empty (zero-length) message.
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
}

/// Reads the single payload of `-m`, `-f` or `-s`; empty for `-n`.
pub(crate) async fn read_payload(
    message: Option<&str>,
    file: Option<&PathBuf>,
    stdin_file: bool,
) -> anyhow::Result<Bytes> {
    if let Some(text) = message {
        return Ok(Bytes::from(text.to_owned()));
    }
    if let Some(path) = file {
        let path = path.clone();
        let what = format!("cannot read {}", path.display());
        return read_blocking(what, move || std::fs::read(path))
            .await
            .map(Bytes::from);
    }
    if stdin_file {
        let read_all = || {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map(|_| bytes)
        };
        return read_blocking("cannot read standard input".to_owned(), read_all)
            .await
            .map(Bytes::from);
    }
    Ok(Bytes::new())
}

/// Refuses what no broker would accept as a topic name (`[MQTT-3.3.2-2]`, 4.7.3).
pub(crate) fn check_topic_name(topic: &str) -> anyhow::Result<()> {
    if topic.is_empty() {
        bail!("the topic (-t) cannot be empty");
    }
    if topic.contains(['+', '#']) {
        bail!("cannot publish to {topic:?}: a topic name cannot contain + or #");
    }
    Ok(())
}

/// A failure reason code in the acknowledgement becomes the tool's error.
pub(crate) fn check_outcome(topic: &str, outcome: &PublishOutcome) -> anyhow::Result<()> {
    if outcome.reason_code.is_error() {
        bail!(
            "publish to {topic} refused: {}",
            describe_reason(outcome.reason_code, outcome.reason_string.as_deref())
        );
    }
    Ok(())
}

/// Publishes as `args` says, waits for the acknowledgement (QoS 1/2) and disconnects.
pub async fn run_pub(args: PubArgs) -> anyhow::Result<()> {
    let plan = args.connection.plan(Tool::Pub, false)?;
    check_topic_name(&args.topic)?;
    let template = Publish {
        topic: args.topic.clone(),
        qos: QoS::from_u8(args.qos).unwrap_or_default(),
        retain: args.retain,
        properties: plan.properties.publish.clone(),
        ..Publish::default()
    };
    let message = &args.message;
    let payload = if message.stdin_line {
        None
    } else {
        Some(
            read_payload(
                message.message.as_deref(),
                message.file.as_ref(),
                message.stdin_file,
            )
            .await?,
        )
    };

    let (client, _connack) = Client::connect(plan.options.clone()).await?;
    let result = match payload {
        Some(payload) => {
            let publish = Publish {
                payload,
                ..template
            };
            match client.publish(publish).await {
                Ok(outcome) => check_outcome(&args.topic, &outcome),
                Err(error) => Err(error.into()),
            }
        }
        None => publish_lines(&client, template, spawn_stdin_lines()).await,
    };
    finish(&client, &plan).await;
    result
}

/// Reads standard input on a plain thread (a blocked read there does not
/// hold up the runtime's shutdown).
fn spawn_stdin_lines() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(LINE_QUEUE);
    std::thread::spawn(move || read_lines(std::io::stdin().lock(), &sender));
    receiver
}

/// Sends each line of `input` without its line ending (`\n` or `\r\n`),
/// until the end of input, a read error (sent too) or a closed receiver.
fn read_lines(mut input: impl std::io::BufRead, sender: &mpsc::Sender<std::io::Result<Vec<u8>>>) {
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if sender.blocking_send(Ok(line)).is_err() {
                    break;
                }
            }
            Err(error) => {
                let _ = sender.blocking_send(Err(error));
                break;
            }
        }
    }
}

/// Publishes each line, keeping up to [`LINE_PIPELINE_DEPTH`] in flight.
async fn publish_lines(
    client: &Client,
    template: Publish,
    mut lines: mpsc::Receiver<std::io::Result<Vec<u8>>>,
) -> anyhow::Result<()> {
    let topic = template.topic.clone();
    let mut in_flight = JoinSet::new();
    while let Some(line) = lines.recv().await {
        let line = line.map_err(|error| anyhow!("cannot read standard input: {error}"))?;
        if line.is_empty() {
            continue;
        }
        let publish = Publish {
            payload: Bytes::from(line),
            ..template.clone()
        };
        let handle: ClientHandle = client.handle();
        in_flight.spawn(async move { handle.publish(publish).await });
        while in_flight.len() >= LINE_PIPELINE_DEPTH {
            wait_one(&mut in_flight, &topic).await?;
        }
    }
    while !in_flight.is_empty() {
        wait_one(&mut in_flight, &topic).await?;
    }
    Ok(())
}

async fn wait_one(
    in_flight: &mut JoinSet<Result<PublishOutcome, crate::ClientError>>,
    topic: &str,
) -> anyhow::Result<()> {
    match in_flight.join_next().await {
        Some(Ok(result)) => check_outcome(topic, &result?),
        Some(Err(error)) => Err(anyhow!("publish task failed: {error}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use switchboard_codec::{Ack, ConnAck, Packet};

    use super::*;
    use crate::cli::connect::random_hex;
    use crate::test_support::FakeServer;
    use crate::ClientOptions;

    #[derive(Debug, Parser)]
    #[command(disable_help_flag = true)]
    struct Wrapper {
        #[command(flatten)]
        args: PubArgs,
    }

    fn parse(args: &[&str]) -> Result<PubArgs, clap::Error> {
        let mut argv = vec!["pub"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).map(|wrapper| wrapper.args)
    }

    #[test]
    fn mosquitto_pub_command_line() {
        let args = parse(&[
            "-h", "broker", "-p", "1884", "-t", "a/b", "-m", "hello", "-q", "2", "-r", "-i", "me",
            "-V", "mqttv311",
        ])
        .unwrap();
        assert_eq!(args.topic, "a/b");
        assert_eq!(args.message.message.as_deref(), Some("hello"));
        assert_eq!(args.qos, 2);
        assert!(args.retain);
        assert_eq!(args.connection.host, "broker");
        assert_eq!(args.connection.id.as_deref(), Some("me"));
    }

    #[test]
    fn exactly_one_message_source() {
        assert!(parse(&["-t", "a"]).is_err());
        assert!(parse(&["-t", "a", "-m", "x", "-n"]).is_err());
        assert!(parse(&["-t", "a", "-l"]).unwrap().message.stdin_line);
        assert!(parse(&["-t", "a", "-n"]).unwrap().message.null_message);
        assert!(parse(&["-t", "a", "-s"]).unwrap().message.stdin_file);
    }

    #[test]
    fn qos_is_0_to_2() {
        assert!(parse(&["-t", "a", "-n", "-q", "3"]).is_err());
    }

    #[test]
    fn property_flags_take_three_or_four_words() {
        let args = parse(&[
            "-t",
            "a",
            "-n",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ])
        .unwrap();
        assert_eq!(
            args.connection.properties.occurrences,
            vec![
                vec!["publish", "user-property", "k", "v"],
                vec!["publish", "content-type", "text/plain"]
            ]
        );
    }

    #[test]
    fn dash_h_is_the_host_and_help_is_long_only() {
        let args = parse(&["-h", "example", "-t", "a", "-n"]).unwrap();
        assert_eq!(args.connection.host, "example");
        let error = parse(&["--help"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = error.to_string();
        assert!(help.contains("--stdin-line"), "{help}");
        assert!(help.contains("-D publish"), "{help}");
    }

    #[test]
    fn topic_names_are_checked_before_connecting() {
        assert!(check_topic_name("a/b").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("a/+").is_err());
        assert!(check_topic_name("a/#").is_err());
    }

    #[test]
    fn lines_lose_their_endings() {
        let (sender, mut receiver) = mpsc::channel(8);
        read_lines(&b"one\r\ntwo\n\nlast"[..], &sender);
        let mut lines = Vec::new();
        while let Ok(line) = receiver.try_recv() {
            lines.push(line.unwrap());
        }
        assert_eq!(lines, vec![&b"one"[..], b"two", b"", b"last"]);
    }

    #[tokio::test]
    async fn each_line_is_a_message_and_blank_lines_are_skipped() {
        let (client_side, server_side) = tokio::io::duplex(64 * 1024);
        let mut server = FakeServer::new(server_side);
        let options = ClientOptions {
            client_id: "lines".to_owned(),
            keep_alive_secs: 0,
            ..ClientOptions::default()
        };
        let (connected, _) = tokio::join!(
            Client::connect_with_stream(client_side, options),
            server.accept(ConnAck::default())
        );
        let (client, _) = connected.unwrap();
        let (sender, lines) = mpsc::channel(8);
        for line in ["first", "", "second"] {
            sender.send(Ok(line.as_bytes().to_vec())).await.unwrap();
        }
        drop(sender);
        let acknowledging = tokio::spawn(async move {
            let mut payloads = Vec::new();
            for _ in 0..2 {
                let Packet::Publish(publish) = server.receive().await else {
                    panic!("expected PUBLISH");
                };
                server
                    .send(Packet::PubAck(Ack::new(publish.packet_id.unwrap())))
                    .await;
                payloads.push(publish.payload);
            }
            payloads
        });
        let template = Publish {
            topic: "lines".to_owned(),
            qos: QoS::AtLeastOnce,
            ..Publish::default()
        };
        publish_lines(&client, template, lines).await.unwrap();
        assert_eq!(
            acknowledging.await.unwrap(),
            vec![Bytes::from("first"), Bytes::from("second")]
        );
    }

    #[tokio::test]
    async fn file_payloads_are_read_whole_and_failures_are_one_line() {
        let path = std::env::temp_dir().join(format!("switchboard-client-{}", random_hex(8)));
        std::fs::write(&path, b"\x00binary\xff").unwrap();
        let payload = read_payload(None, Some(&path), false).await;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&payload.unwrap()[..], b"\x00binary\xff");

        let error = read_payload(None, Some(&path), false).await.unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("cannot read "), "{message}");
        assert!(message.contains(": "), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn failure_reason_codes_become_errors() {
        let refused = PublishOutcome {
            reason_code: switchboard_codec::ReasonCode::NOT_AUTHORIZED,
            reason_string: Some("acl".to_owned()),
            ..PublishOutcome::default()
        };
        let error = check_outcome("t", &refused).unwrap_err();
        assert_eq!(
            error.to_string(),
            "publish to t refused: 0x87 Not authorized (acl)"
        );
        let no_subscribers = PublishOutcome {
            reason_code: switchboard_codec::ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ..PublishOutcome::default()
        };
        assert!(check_outcome("t", &no_subscribers).is_ok());
    }
}
