//! `switchboard sub`: subscribe and print messages until told to stop.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{anyhow, bail};
use clap::ArgAction;
use switchboard_codec::{QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, Unsubscribe};

use super::connect::{
    deadline_after, finish, wait, ConnectArgs, Connector, Interrupt, Plan, Tool, Wait,
};
use super::format::{OutputArgs, Printer};
use crate::{describe_reason, Client, ClientError};

/// `switchboard sub`: subscribe and print messages, like mosquitto_sub.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(
    about = "Subscribe and print messages (options as mosquitto_sub)",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = super::properties_and_format_help()
)]
pub struct SubArgs {
    /// Topic filter to subscribe to; repeat for several.
    #[arg(short = 't', long = "topic", value_name = "FILTER", action = ArgAction::Append)]
    pub topics: Vec<String>,
    /// Topic filter to unsubscribe from after subscribing (cleans a -c session); repeatable.
    #[arg(short = 'U', long = "unsubscribe", value_name = "FILTER", action = ArgAction::Append)]
    pub unsubscribe: Vec<String>,
    /// Maximum QoS to receive: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Exit after printing this many messages.
    #[arg(short = 'C', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit after this many seconds (an error if -C messages have not all arrived).
    #[arg(short = 'W', long = "timeout", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Do not print stale retained messages (those with the retain flag set).
    #[arg(short = 'R', long = "no-retained")]
    pub no_retained: bool,
    /// MQTT 5: do not receive messages this client publishes.
    #[arg(long = "no-local")]
    pub no_local: bool,
    /// MQTT 5: keep the retain flag as the publisher set it.
    #[arg(long = "retain-as-published")]
    pub retain_as_published: bool,
    /// MQTT 5 retained messages on subscribe: 0 always, 1 for new subscriptions only, 2 never.
    #[arg(long = "retain-handling", value_name = "0|1|2", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub retain_handling: u8,
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

/// Subscribes as `args` says and prints messages to standard output until
/// `-C` messages arrived, `-W` seconds passed, or Ctrl-C.
///
/// When the connection drops it reconnects with backoff (unless
/// `--no-reconnect`) and subscribes again only if the server kept no session.
pub async fn run_sub(args: SubArgs) -> anyhow::Result<()> {
    let mut interrupt = Interrupt::from_signals();
    let mut stdout = std::io::stdout();
    subscribe_and_print(&args, &mut stdout, &mut interrupt).await
}

/// How one connection ended.
pub(crate) enum Ended {
    /// The tool is done, successfully or not.
    Done(anyhow::Result<()>),
    /// The connection was lost; reconnecting may help.
    Lost(ClientError),
}

pub(crate) async fn subscribe_and_print<W: Write + Send>(
    args: &SubArgs,
    out: &mut W,
    interrupt: &mut Interrupt,
) -> anyhow::Result<()> {
    if args.topics.is_empty() && args.unsubscribe.is_empty() {
        bail!("give a topic filter to subscribe to with -t (or one to unsubscribe from with -U)");
    }
    if !args.connection.protocol_version.is_v5()
        && (args.no_local || args.retain_as_published || args.retain_handling != 0)
    {
        bail!("--no-local, --retain-as-published and --retain-handling need MQTT 5 (-V 5)");
    }
    let plan = args.connection.plan(Tool::Sub, !args.no_reconnect)?;
    let printer = Printer::new(&args.output);
    let deadline = deadline_after(args.timeout);
    let mut received = 0;
    let mut connector = Connector::new(plan);

    let (mut client, _connack) = match wait(connector.connect(), deadline, interrupt).await {
        Wait::Done(connected) => connected?,
        Wait::TimedOut => return timed_out(args, received),
        Wait::Interrupted => return Ok(()),
    };
    let mut subscribe = true;
    loop {
        let mut session = Session {
            args,
            plan: connector.plan(),
            printer: &printer,
            client: &mut client,
            received: &mut received,
            out: &mut *out,
        };
        let lost = match session.run(subscribe, deadline, interrupt).await {
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
            Wait::TimedOut => return timed_out(args, received),
            Wait::Interrupted => return Ok(()),
        }
    }
}

/// `-W` ran out: fine, unless `-C` asked for messages that did not come.
fn timed_out(args: &SubArgs, received: u64) -> anyhow::Result<()> {
    match args.count {
        Some(count) if received < count => bail!(
            "timed out after {} s: received {received} of {count} messages",
            args.timeout.unwrap_or_default()
        ),
        _ => Ok(()),
    }
}

/// One connection's worth of the tool.
struct Session<'a, W> {
    args: &'a SubArgs,
    plan: &'a Plan,
    printer: &'a Printer,
    client: &'a mut Client,
    received: &'a mut u64,
    out: &'a mut W,
}

impl<W: Write + Send> Session<'_, W> {
    async fn run(
        &mut self,
        subscribe: bool,
        deadline: Option<tokio::time::Instant>,
        interrupt: &mut Interrupt,
    ) -> Ended {
        if subscribe {
            match wait(
                subscribe_all(self.client, self.args, self.plan),
                deadline,
                interrupt,
            )
            .await
            {
                Wait::Done(Ok(())) => {}
                Wait::Done(Err(Setup::Lost(error))) => return Ended::Lost(error),
                Wait::Done(Err(Setup::Refused(error))) => return self.end(Err(error)).await,
                Wait::TimedOut => {
                    let result = timed_out(self.args, *self.received);
                    return self.end(result).await;
                }
                Wait::Interrupted => return self.end(Ok(())).await,
            }
        }
        if self.args.topics.is_empty() {
            // Only -U: the unsubscribe was the whole job.
            return self.end(Ok(())).await;
        }
        loop {
            match wait(self.client.next_message(), deadline, interrupt).await {
                Wait::Done(Some(publish)) => {
                    if self.args.no_retained && publish.retain {
                        continue;
                    }
                    let bytes = self.printer.render(&publish, SystemTime::now());
                    if let Err(error) = self.out.write_all(&bytes).and_then(|()| self.out.flush()) {
                        let result = if error.kind() == std::io::ErrorKind::BrokenPipe {
                            // The reader went away (`| head`): a normal end.
                            Ok(())
                        } else {
                            Err(anyhow!("cannot write to standard output: {error}"))
                        };
                        return self.end(result).await;
                    }
                    *self.received += 1;
                    if Some(*self.received) == self.args.count {
                        return self.end(Ok(())).await;
                    }
                }
                Wait::Done(None) => {
                    let reason = self
                        .client
                        .close_reason()
                        .unwrap_or(ClientError::Disconnected);
                    return Ended::Lost(reason);
                }
                Wait::TimedOut => {
                    let result = timed_out(self.args, *self.received);
                    return self.end(result).await;
                }
                Wait::Interrupted => return self.end(Ok(())).await,
            }
        }
    }

    async fn end(&mut self, result: anyhow::Result<()>) -> Ended {
        finish(self.client, self.plan).await;
        Ended::Done(result)
    }
}

/// Why setting up subscriptions failed.
pub(crate) enum Setup {
    /// The connection broke; reconnecting may help.
    Lost(ClientError),
    /// The server said no; retrying would not help.
    Refused(anyhow::Error),
}

async fn subscribe_all(client: &Client, args: &SubArgs, plan: &Plan) -> Result<(), Setup> {
    if !args.topics.is_empty() {
        let options = SubscriptionOptions {
            qos: QoS::from_u8(args.qos).unwrap_or_default(),
            no_local: args.no_local,
            retain_as_published: args.retain_as_published,
            retain_handling: match args.retain_handling {
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            },
        };
        let subscribe = Subscribe {
            packet_id: 0,
            subscription_identifier: plan.properties.subscription_identifier,
            user_properties: plan.properties.subscribe_user_properties.clone(),
            filters: args
                .topics
                .iter()
                .map(|topic| (topic.clone(), options))
                .collect(),
        };
        let suback = client.subscribe(subscribe).await.map_err(Setup::Lost)?;
        check_suback(&args.topics, &suback).map_err(Setup::Refused)?;
    }
    if !args.unsubscribe.is_empty() {
        let unsubscribe = Unsubscribe {
            packet_id: 0,
            user_properties: plan.properties.unsubscribe_user_properties.clone(),
            filters: args.unsubscribe.clone(),
        };
        let unsuback = client.unsubscribe(unsubscribe).await.map_err(Setup::Lost)?;
        for (filter, reason_code) in args.unsubscribe.iter().zip(&unsuback.reason_codes) {
            if reason_code.is_error() {
                eprintln!(
                    "warning: unsubscribe from {filter} failed: {}",
                    describe_reason(*reason_code, unsuback.reason_string.as_deref())
                );
            }
        }
    }
    Ok(())
}

/// Every filter refused is an error; some refused is a warning per filter.
pub(crate) fn check_suback(filters: &[String], suback: &SubAck) -> anyhow::Result<()> {
    let refused: Vec<String> = filters
        .iter()
        .zip(&suback.reason_codes)
        .filter(|(_, reason_code)| reason_code.is_error())
        .map(|(filter, reason_code)| {
            format!(
                "{filter}: {}",
                describe_reason(*reason_code, suback.reason_string.as_deref())
            )
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    if refused.len() >= filters.len() {
        bail!("subscription refused: {}", refused.join("; "));
    }
    for refusal in refused {
        eprintln!("warning: subscription refused: {refusal}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use switchboard_codec::ReasonCode;

    use super::*;

    #[derive(Debug, Parser)]
    #[command(disable_help_flag = true)]
    struct Wrapper {
        #[command(flatten)]
        args: SubArgs,
    }

    pub(crate) fn parse(args: &[&str]) -> Result<SubArgs, clap::Error> {
        let mut argv = vec!["sub"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).map(|wrapper| wrapper.args)
    }

    #[test]
    fn mosquitto_sub_command_line() {
        let args = parse(&[
            "-h", "broker", "-t", "a/#", "-t", "b/+", "-q", "1", "-C", "3", "-W", "5", "-v", "-R",
            "-c", "-i", "me", "-k", "30",
        ])
        .unwrap();
        assert_eq!(args.topics, vec!["a/#", "b/+"]);
        assert_eq!(args.qos, 1);
        assert_eq!(args.count, Some(3));
        assert_eq!(args.timeout, Some(5));
        assert!(args.output.verbose);
        assert!(args.no_retained);
        assert!(args.connection.disable_clean_session);
        assert_eq!(args.connection.keepalive, 30);
    }

    #[test]
    fn output_modes_exclude_each_other() {
        assert!(parse(&["-t", "a", "--json", "-v"]).is_err());
        assert!(parse(&["-t", "a", "--json", "-F", "%t"]).is_err());
        assert!(parse(&["-t", "a", "-F", "%t %p", "-N"]).is_ok());
        assert!(parse(&["-t", "a", "-F", "%y"]).is_err());
    }

    #[test]
    fn help_lists_formats_and_properties() {
        let error = parse(&["--help"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = error.to_string();
        assert!(help.contains("%t topic"), "{help}");
        assert!(
            help.contains("-D subscribe subscription-identifier"),
            "{help}"
        );
        assert!(help.contains("--disable-clean-session"), "{help}");
    }

    #[test]
    fn all_refused_is_an_error_some_refused_a_warning() {
        let filters = vec!["a".to_owned(), "b".to_owned()];
        let suback = SubAck {
            reason_codes: vec![ReasonCode::NOT_AUTHORIZED, ReasonCode::NOT_AUTHORIZED],
            ..SubAck::default()
        };
        let error = check_suback(&filters, &suback).unwrap_err();
        assert_eq!(
            error.to_string(),
            "subscription refused: a: 0x87 Not authorized; b: 0x87 Not authorized"
        );
        let suback = SubAck {
            reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED],
            ..SubAck::default()
        };
        assert!(check_suback(&filters, &suback).is_ok());
    }

    #[test]
    fn timing_out_short_of_the_count_is_an_error() {
        let args = parse(&["-t", "a", "-C", "2", "-W", "1"]).unwrap();
        assert!(timed_out(&args, 2).is_ok());
        let error = timed_out(&args, 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 1 s: received 1 of 2 messages"
        );
        let args = parse(&["-t", "a", "-W", "1"]).unwrap();
        assert!(timed_out(&args, 0).is_ok());
    }
}
