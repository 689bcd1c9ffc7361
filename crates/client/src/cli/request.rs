//! `switchboard req`: MQTT 5 request/response, like mosquitto_rr.
//!
//! Subscribes to a response topic first, then publishes the request with
//! Response Topic and Correlation Data properties (4.10), and prints the
//! first message on the response topic that carries the same correlation
//! data. Anything else arriving there is ignored.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use clap::ArgAction;
use switchboard_codec::{Publish, QoS, Subscribe, SubscriptionOptions};
use tokio::time::Instant;

use super::connect::{
    finish, random_hex, wait, ConnectArgs, Connector, Interrupt, Plan, Tool, Wait,
};
use super::format::{OutputArgs, Printer};
use super::publish::{check_outcome, check_topic_name, read_payload};
use super::subscribe::{check_suback, Ended, Setup};
use crate::{Client, ClientError};

/// 10 s: long for a service on the same network, short enough that a script
/// waiting on a responder that is not running fails promptly.
pub(crate) const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 10;

/// `switchboard req`: send a request and print the response, like mosquitto_rr.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(
    about = "Send an MQTT 5 request and print the response (options as mosquitto_rr)",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = super::properties_and_format_help()
)]
pub struct ReqArgs {
    /// Topic to send the request to.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Topic to receive the response on [default: switchboard/rr/<client id>/<random hex>].
    #[arg(short = 'e', long = "response-topic", value_name = "TOPIC")]
    pub response_topic: Option<String>,
    #[command(flatten)]
    pub message: RequestMessageArgs,
    /// QoS of the request and of the response subscription: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Seconds to wait for the response; then exit with an error.
    #[arg(short = 'W', long = "timeout", value_name = "SECS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Exit when the connection drops instead of reconnecting.
    #[arg(long = "no-reconnect")]
    pub no_reconnect: bool,
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// The request payload: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[group(required = true, multiple = false)]
pub struct RequestMessageArgs {
    /// Request payload.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Send the contents of a file as the request.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Send all of standard input as the request.
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,
    /// Send an empty (zero-length) request.
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
}

/// Sends the request, prints the response's payload (or the `-v`/`-F`/`--json`
/// form) and disconnects. No response within `-W` seconds is an error.
pub async fn run_req(args: ReqArgs) -> anyhow::Result<()> {
    let mut interrupt = Interrupt::from_signals();
    let mut stdout = std::io::stdout();
    request_and_print(&args, &mut stdout, &mut interrupt).await
}

/// Everything about the one request this run makes.
struct Request {
    publish: Publish,
    response_topic: String,
    correlation_data: Bytes,
}

pub(crate) async fn request_and_print<W: Write + Send>(
    args: &ReqArgs,
    out: &mut W,
    interrupt: &mut Interrupt,
) -> anyhow::Result<()> {
    if !args.connection.protocol_version.is_v5() {
        bail!("req needs MQTT 5 (-V 5): response topic and correlation data are MQTT 5 properties");
    }
    check_topic_name(&args.topic)?;
    let plan = args.connection.plan(Tool::Req, !args.no_reconnect)?;
    let request = build_request(args, &plan).await?;
    let printer = Printer::new(&args.output);
    let deadline = Some(Instant::now() + std::time::Duration::from_secs(args.timeout));
    let mut connector = Connector::new(plan);

    let (mut client, _connack) = match wait(connector.connect(), deadline, interrupt).await {
        Wait::Done(connected) => connected?,
        Wait::TimedOut => return Err(no_response(args, &request)),
        Wait::Interrupted => return Ok(()),
    };
    let mut subscribe = true;
    let mut request_sent = false;
    loop {
        let mut exchange = Exchange {
            args,
            plan: connector.plan(),
            request: &request,
            printer: &printer,
            client: &mut client,
            request_sent: &mut request_sent,
        };
        let lost = match exchange.run(subscribe, deadline, interrupt, out).await {
            Ended::Done(result) => return result,
            Ended::Lost(error) => error,
        };
        if !connector.should_reconnect(&lost) {
            return Err(lost.into());
        }
        match wait(connector.reconnect(lost), deadline, interrupt).await {
            Wait::Done(Ok((new_client, connack))) => {
                client = new_client;
                subscribe = !connack.session_present;
            }
            Wait::Done(Err(error)) => return Err(error.into()),
            Wait::TimedOut => return Err(no_response(args, &request)),
            Wait::Interrupted => return Ok(()),
        }
    }
}

async fn build_request(args: &ReqArgs, plan: &Plan) -> anyhow::Result<Request> {
    let mut properties = plan.properties.publish.clone();
    let response_topic = match (&args.response_topic, &properties.response_topic) {
        (Some(a), Some(b)) if a != b => {
            bail!("two response topics: -e {a} and -D publish response-topic {b}")
        }
        (Some(topic), _) | (None, Some(topic)) => topic.clone(),
        (None, None) => format!(
            "switchboard/rr/{}/{}",
            plan.options.client_id,
            random_hex(8)
        ),
    };
    if response_topic.is_empty() || response_topic.contains(['+', '#']) {
        // [MQTT-3.3.2-14]
        bail!("the response topic {response_topic:?} cannot be empty or contain + or #");
    }
    let correlation_data = properties
        .correlation_data
        .clone()
        .unwrap_or_else(|| Bytes::from(random_hex(16)));
    properties.response_topic = Some(response_topic.clone());
    properties.correlation_data = Some(correlation_data.clone());
    let message = &args.message;
    let payload = read_payload(
        message.message.as_deref(),
        message.file.as_ref(),
        message.stdin_file,
    )
    .await?;
    let publish = Publish {
        topic: args.topic.clone(),
        qos: QoS::from_u8(args.qos).unwrap_or_default(),
        properties,
        payload,
        ..Publish::default()
    };
    Ok(Request {
        publish,
        response_topic,
        correlation_data,
    })
}

fn no_response(args: &ReqArgs, request: &Request) -> anyhow::Error {
    anyhow!(
        "no response on {} within {} s",
        request.response_topic,
        args.timeout
    )
}

/// One connection's worth of the exchange.
struct Exchange<'a> {
    args: &'a ReqArgs,
    plan: &'a Plan,
    request: &'a Request,
    printer: &'a Printer,
    client: &'a mut Client,
    /// Survives reconnects: the request is sent again only if it was never acknowledged.
    request_sent: &'a mut bool,
}

impl Exchange<'_> {
    async fn run<W: Write + Send>(
        &mut self,
        subscribe: bool,
        deadline: Option<Instant>,
        interrupt: &mut Interrupt,
        out: &mut W,
    ) -> Ended {
        if subscribe {
            match wait(self.subscribe(), deadline, interrupt).await {
                Wait::Done(Ok(())) => {}
                Wait::Done(Err(Setup::Lost(error))) => return Ended::Lost(error),
                Wait::Done(Err(Setup::Refused(error))) => return self.end(Err(error)).await,
                Wait::TimedOut => return self.timed_out().await,
                Wait::Interrupted => return self.end(Ok(())).await,
            }
        }
        if !*self.request_sent {
            let publish = self.client.publish(self.request.publish.clone());
            match wait(publish, deadline, interrupt).await {
                Wait::Done(Ok(outcome)) => {
                    if let Err(error) = check_outcome(&self.args.topic, &outcome) {
                        return self.end(Err(error)).await;
                    }
                    *self.request_sent = true;
                }
                Wait::Done(Err(error)) => return Ended::Lost(error),
                Wait::TimedOut => return self.timed_out().await,
                Wait::Interrupted => return self.end(Ok(())).await,
            }
        }
        loop {
            match wait(self.client.next_message(), deadline, interrupt).await {
                Wait::Done(Some(publish)) => {
                    if !self.is_response(&publish) {
                        tracing::debug!(topic = %publish.topic, "ignoring a message that is not our response");
                        continue;
                    }
                    let bytes = self.printer.render(&publish, SystemTime::now());
                    let written = out.write_all(&bytes).and_then(|()| out.flush());
                    let result = match written {
                        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                            Err(anyhow!("cannot write to standard output: {error}"))
                        }
                        _ => Ok(()),
                    };
                    return self.end(result).await;
                }
                Wait::Done(None) => {
                    let reason = self
                        .client
                        .close_reason()
                        .unwrap_or(ClientError::Disconnected);
                    return Ended::Lost(reason);
                }
                Wait::TimedOut => return self.timed_out().await,
                Wait::Interrupted => return self.end(Ok(())).await,
            }
        }
    }

    /// The response comes on our response topic with our correlation data.
    fn is_response(&self, publish: &Publish) -> bool {
        publish.topic == self.request.response_topic
            && publish.properties.correlation_data.as_ref() == Some(&self.request.correlation_data)
    }

    async fn subscribe(&self) -> Result<(), Setup> {
        let filters = vec![self.request.response_topic.clone()];
        let options = SubscriptionOptions {
            qos: QoS::from_u8(self.args.qos).unwrap_or_default(),
            ..SubscriptionOptions::default()
        };
        let subscribe = Subscribe {
            packet_id: 0,
            subscription_identifier: self.plan.properties.subscription_identifier,
            user_properties: self.plan.properties.subscribe_user_properties.clone(),
            filters: filters
                .iter()
                .map(|filter| (filter.clone(), options))
                .collect(),
        };
        let suback = self
            .client
            .subscribe(subscribe)
            .await
            .map_err(Setup::Lost)?;
        check_suback(&filters, &suback).map_err(Setup::Refused)
    }

    async fn timed_out(&mut self) -> Ended {
        let error = no_response(self.args, self.request);
        self.end(Err(error)).await
    }

    async fn end(&mut self, result: anyhow::Result<()>) -> Ended {
        finish(self.client, self.plan).await;
        Ended::Done(result)
    }
}
