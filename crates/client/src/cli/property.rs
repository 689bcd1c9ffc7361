//! `-D PACKET PROPERTY VALUE` parsing, in mosquitto's syntax.
//!
//! Each occurrence names the packet the property goes into, the property in
//! kebab-case as the MQTT 5 specification names it (2.2.2.2), and its value;
//! `user-property` takes a name and a value. A property that may appear only
//! once in a packet is refused when given twice, values are range-checked
//! here, so a typo fails before connecting and not as a server's protocol error.

use anyhow::{anyhow, bail};
use bytes::Bytes;
use clap::{Arg, ArgAction, ArgMatches, Command};
use switchboard_codec::{
    ConnectProperties, Disconnect, PublishProperties, UserProperty, WillProperties,
};

/// The clap id of `-D`.
const PROPERTY_ARG: &str = "property";

/// The `-D` occurrences as typed, one `Vec` per occurrence.
///
/// Implemented by hand rather than derived because clap's derive cannot keep
/// the words of each occurrence together (`Vec<Vec<String>>` needs its
/// unstable v5 feature), and regrouping a flat list would turn a missing word
/// into a confusing error about the next property.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyArgs {
    pub occurrences: Vec<Vec<String>>,
}

impl clap::FromArgMatches for PropertyArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<PropertyArgs, clap::Error> {
        let occurrences = matches
            .try_get_occurrences::<String>(PROPERTY_ARG)
            .map_err(|error| clap::Error::raw(clap::error::ErrorKind::InvalidValue, error))?
            .map(|occurrences| occurrences.map(|words| words.cloned().collect()).collect())
            .unwrap_or_default();
        Ok(PropertyArgs { occurrences })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = PropertyArgs::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for PropertyArgs {
    fn augment_args(command: Command) -> Command {
        command.arg(
            Arg::new(PROPERTY_ARG)
                .short('D')
                .long("property")
                .value_names(["PACKET", "PROPERTY", "VALUE"])
                .num_args(3..=4)
                .action(ArgAction::Append)
                .help("MQTT 5 property, e.g. -D publish user-property NAME VALUE (list below)"),
        )
    }

    fn augment_args_for_update(command: Command) -> Command {
        PropertyArgs::augment_args(command)
    }
}

/// The packets `-D` can put properties into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyPacket {
    Connect,
    Publish,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Will,
}

impl PropertyPacket {
    const ALL: [PropertyPacket; 6] = [
        PropertyPacket::Connect,
        PropertyPacket::Publish,
        PropertyPacket::Subscribe,
        PropertyPacket::Unsubscribe,
        PropertyPacket::Disconnect,
        PropertyPacket::Will,
    ];

    fn name(self) -> &'static str {
        match self {
            PropertyPacket::Connect => "connect",
            PropertyPacket::Publish => "publish",
            PropertyPacket::Subscribe => "subscribe",
            PropertyPacket::Unsubscribe => "unsubscribe",
            PropertyPacket::Disconnect => "disconnect",
            PropertyPacket::Will => "will",
        }
    }

    fn known_properties(self) -> &'static str {
        match self {
            PropertyPacket::Connect => "session-expiry-interval, receive-maximum, maximum-packet-size, topic-alias-maximum, request-response-information, request-problem-information, user-property",
            PropertyPacket::Publish => "content-type, correlation-data, message-expiry-interval, payload-format-indicator, response-topic, topic-alias, user-property",
            PropertyPacket::Subscribe => "subscription-identifier, user-property",
            PropertyPacket::Unsubscribe => "user-property",
            PropertyPacket::Disconnect => "session-expiry-interval, reason-string, user-property",
            PropertyPacket::Will => "will-delay-interval, content-type, correlation-data, message-expiry-interval, payload-format-indicator, response-topic, user-property",
        }
    }
}

/// Every `-D` property, sorted by the packet it goes into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Properties {
    pub(crate) connect: ConnectProperties,
    pub(crate) publish: PublishProperties,
    pub(crate) subscription_identifier: Option<u32>,
    pub(crate) subscribe_user_properties: Vec<UserProperty>,
    pub(crate) unsubscribe_user_properties: Vec<UserProperty>,
    /// Only the properties are used; the reason code is set on exit.
    pub(crate) disconnect: Disconnect,
    pub(crate) will: WillProperties,
}

impl Properties {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

/// Parses every `-D` occurrence (each 3 or 4 words, as clap collected them).
/// `allowed` lists the packets the running tool sends.
pub(crate) fn parse_properties(
    occurrences: &[Vec<String>],
    allowed: &[PropertyPacket],
) -> anyhow::Result<Properties> {
    let mut properties = Properties::default();
    for words in occurrences {
        add_property(&mut properties, words, allowed)
            .map_err(|error| anyhow!("-D {}: {error}", words.join(" ")))?;
    }
    Ok(properties)
}

fn add_property(
    properties: &mut Properties,
    words: &[String],
    allowed: &[PropertyPacket],
) -> anyhow::Result<()> {
    let (packet_word, property, values) = match words {
        [packet, property, values @ ..] if !values.is_empty() => (packet, property, values),
        _ => bail!("expected PACKET PROPERTY VALUE"),
    };
    let packet_name = packet_word.to_ascii_lowercase();
    let Some(packet) = PropertyPacket::ALL
        .into_iter()
        .find(|packet| packet.name() == packet_name)
    else {
        bail!("unknown packet {packet_word:?}; use connect, publish, subscribe, unsubscribe, disconnect or will");
    };
    if !allowed.contains(&packet) {
        let names: Vec<&str> = allowed.iter().map(|packet| packet.name()).collect();
        bail!(
            "this tool sends no {} properties; use {}",
            packet.name(),
            names.join(", ")
        );
    }
    let property = property.to_ascii_lowercase().replace('_', "-");

    if property == "user-property" {
        let pair = match values {
            [name, value] => (name.clone(), value.clone()),
            _ => bail!("user-property takes a name and a value"),
        };
        match packet {
            PropertyPacket::Connect => properties.connect.user_properties.push(pair),
            PropertyPacket::Publish => properties.publish.user_properties.push(pair),
            PropertyPacket::Subscribe => properties.subscribe_user_properties.push(pair),
            PropertyPacket::Unsubscribe => properties.unsubscribe_user_properties.push(pair),
            PropertyPacket::Disconnect => properties.disconnect.user_properties.push(pair),
            PropertyPacket::Will => properties.will.user_properties.push(pair),
        }
        return Ok(());
    }
    let value = match values {
        [value] => value.as_str(),
        _ => bail!("{property} takes one value"),
    };

    let connect = &mut properties.connect;
    let publish = &mut properties.publish;
    let will = &mut properties.will;
    match (packet, property.as_str()) {
        (PropertyPacket::Connect, "session-expiry-interval") => set_once(
            &mut connect.session_expiry_interval,
            number(value, 0, u32::MAX)?,
        ),
        (PropertyPacket::Connect, "receive-maximum") => {
            set_once(&mut connect.receive_maximum, number(value, 1, u16::MAX)?)
        }
        (PropertyPacket::Connect, "maximum-packet-size") => set_once(
            &mut connect.maximum_packet_size,
            number(value, 1, u32::MAX)?,
        ),
        (PropertyPacket::Connect, "topic-alias-maximum") => set_once(
            &mut connect.topic_alias_maximum,
            number(value, 0, u16::MAX)?,
        ),
        (PropertyPacket::Connect, "request-response-information") => {
            set_once(&mut connect.request_response_information, flag(value)?)
        }
        (PropertyPacket::Connect, "request-problem-information") => {
            set_once(&mut connect.request_problem_information, flag(value)?)
        }
        (PropertyPacket::Connect, "authentication-method" | "authentication-data") => {
            bail!("enhanced authentication (AUTH) is not supported")
        }
        (PropertyPacket::Publish, "content-type") => {
            set_once(&mut publish.content_type, value.to_owned())
        }
        (PropertyPacket::Publish, "correlation-data") => {
            set_once(&mut publish.correlation_data, Bytes::from(value.to_owned()))
        }
        (PropertyPacket::Publish, "message-expiry-interval") => set_once(
            &mut publish.message_expiry_interval,
            number(value, 0, u32::MAX)?,
        ),
        (PropertyPacket::Publish, "payload-format-indicator") => {
            set_once(&mut publish.payload_format_indicator, number(value, 0, 1)?)
        }
        (PropertyPacket::Publish, "response-topic") => {
            set_once(&mut publish.response_topic, topic_name(value)?)
        }
        (PropertyPacket::Publish, "topic-alias") => {
            set_once(&mut publish.topic_alias, number(value, 1, u16::MAX)?)
        }
        (PropertyPacket::Subscribe, "subscription-identifier") => set_once(
            &mut properties.subscription_identifier,
            // 3.8.2.1.2: a variable byte integer, 1 to 268,435,455.
            number(value, 1, 268_435_455)?,
        ),
        (PropertyPacket::Disconnect, "session-expiry-interval") => set_once(
            &mut properties.disconnect.session_expiry_interval,
            number(value, 0, u32::MAX)?,
        ),
        (PropertyPacket::Disconnect, "reason-string") => {
            set_once(&mut properties.disconnect.reason_string, value.to_owned())
        }
        (PropertyPacket::Will, "will-delay-interval") => {
            set_once(&mut will.will_delay_interval, number(value, 0, u32::MAX)?)
        }
        (PropertyPacket::Will, "content-type") => {
            set_once(&mut will.content_type, value.to_owned())
        }
        (PropertyPacket::Will, "correlation-data") => {
            set_once(&mut will.correlation_data, Bytes::from(value.to_owned()))
        }
        (PropertyPacket::Will, "message-expiry-interval") => set_once(
            &mut will.message_expiry_interval,
            number(value, 0, u32::MAX)?,
        ),
        (PropertyPacket::Will, "payload-format-indicator") => {
            set_once(&mut will.payload_format_indicator, number(value, 0, 1)?)
        }
        (PropertyPacket::Will, "response-topic") => {
            set_once(&mut will.response_topic, topic_name(value)?)
        }
        (packet, _) => bail!(
            "unknown {} property {property:?}; known: {}",
            packet.name(),
            packet.known_properties()
        ),
    }
}

/// Properties other than user properties appear at most once in a packet
/// (2.2.2.2: including one twice is a protocol error).
fn set_once<T>(slot: &mut Option<T>, value: T) -> anyhow::Result<()> {
    if slot.is_some() {
        bail!("given twice; it may appear once");
    }
    *slot = Some(value);
    Ok(())
}

fn number<T>(text: &str, minimum: T, maximum: T) -> anyhow::Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match text.parse::<T>() {
        Ok(value) if value >= minimum && value <= maximum => Ok(value),
        _ => bail!("{text:?} is not a number from {minimum} to {maximum}"),
    }
}

fn flag(text: &str) -> anyhow::Result<bool> {
    match text {
        "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        _ => bail!("{text:?} is not 0 or 1"),
    }
}

/// A response topic is a topic name: not empty, no wildcards (`[MQTT-3.3.2-14]`).
fn topic_name(text: &str) -> anyhow::Result<String> {
    if text.is_empty() || text.contains(['+', '#']) {
        bail!("{text:?} is not a topic name (empty, or contains + or #)");
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_PACKET: &[PropertyPacket] = &PropertyPacket::ALL;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    fn parse(occurrences: &[&str]) -> anyhow::Result<Properties> {
        let occurrences: Vec<Vec<String>> = occurrences.iter().map(|text| words(text)).collect();
        parse_properties(&occurrences, EVERY_PACKET)
    }

    #[test]
    fn mosquitto_examples_parse() {
        let properties = parse(&[
            "publish user-property key value",
            "publish user-property key other",
            "publish response-topic replies/here",
            "publish correlation-data abc123",
            "publish content-type text/plain",
            "publish message-expiry-interval 60",
            "connect session-expiry-interval 3600",
        ])
        .unwrap();
        let publish = &properties.publish;
        // Order and duplicates are kept ([MQTT-3.3.2-18]).
        assert_eq!(
            publish.user_properties,
            vec![
                ("key".to_owned(), "value".to_owned()),
                ("key".to_owned(), "other".to_owned())
            ]
        );
        assert_eq!(publish.response_topic.as_deref(), Some("replies/here"));
        assert_eq!(publish.correlation_data.as_deref(), Some(&b"abc123"[..]));
        assert_eq!(publish.content_type.as_deref(), Some("text/plain"));
        assert_eq!(publish.message_expiry_interval, Some(60));
        assert_eq!(properties.connect.session_expiry_interval, Some(3600));
    }

    #[test]
    fn every_packet_takes_its_properties() {
        let properties = parse(&[
            "connect receive-maximum 10",
            "connect maximum-packet-size 1024",
            "connect topic-alias-maximum 5",
            "connect request-response-information 1",
            "connect request-problem-information 0",
            "connect user-property a b",
            "publish payload-format-indicator 1",
            "publish topic-alias 3",
            "subscribe subscription-identifier 42",
            "subscribe user-property s t",
            "unsubscribe user-property u v",
            "disconnect session-expiry-interval 0",
            "disconnect reason-string bye",
            "will will-delay-interval 30",
            "will content-type json",
            "will response-topic r",
            "will correlation-data c",
            "will message-expiry-interval 9",
            "will payload-format-indicator 0",
            "will user-property w x",
        ])
        .unwrap();
        assert_eq!(properties.connect.receive_maximum, Some(10));
        assert_eq!(properties.connect.maximum_packet_size, Some(1024));
        assert_eq!(properties.connect.topic_alias_maximum, Some(5));
        assert_eq!(properties.connect.request_response_information, Some(true));
        assert_eq!(properties.connect.request_problem_information, Some(false));
        assert_eq!(properties.publish.payload_format_indicator, Some(1));
        assert_eq!(properties.publish.topic_alias, Some(3));
        assert_eq!(properties.subscription_identifier, Some(42));
        assert_eq!(properties.subscribe_user_properties.len(), 1);
        assert_eq!(properties.unsubscribe_user_properties.len(), 1);
        assert_eq!(properties.disconnect.session_expiry_interval, Some(0));
        assert_eq!(properties.disconnect.reason_string.as_deref(), Some("bye"));
        assert_eq!(properties.will.will_delay_interval, Some(30));
        assert_eq!(properties.will.content_type.as_deref(), Some("json"));
        assert_eq!(properties.will.user_properties.len(), 1);
    }

    #[test]
    fn packet_and_property_names_are_forgiving_about_case_and_underscores() {
        let properties = parse(&["PUBLISH Content_Type x"]).unwrap();
        assert_eq!(properties.publish.content_type.as_deref(), Some("x"));
    }

    #[test]
    fn mistakes_are_named() {
        let message = |text: &str| parse(&[text]).unwrap_err().to_string();
        assert!(message("publish colour red").contains("unknown publish property"));
        assert!(message("publish colour red").contains("-D publish colour red"));
        assert!(message("pubish content-type x").contains("unknown packet"));
        assert!(message("publish user-property lonely").contains("a name and a value"));
        assert!(message("publish content-type a b").contains("takes one value"));
        assert!(message("publish message-expiry-interval soon").contains("not a number"));
        assert!(message("publish payload-format-indicator 2").contains("from 0 to 1"));
        // 3.8.2.1.2: subscription identifiers are 1 ..= 268,435,455.
        assert!(message("subscribe subscription-identifier 0").contains("from 1"));
        assert!(message("subscribe subscription-identifier 268435456").contains("to 268435455"));
        assert!(message("connect receive-maximum 0").contains("from 1"));
        assert!(message("publish response-topic a/+").contains("not a topic name"));
        assert!(message("connect authentication-method x").contains("not supported"));
    }

    #[test]
    fn single_properties_may_not_repeat() {
        let error = parse(&["publish content-type a", "publish content-type b"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "-D publish content-type b: given twice; it may appear once"
        );
    }

    #[test]
    fn tools_refuse_packets_they_do_not_send() {
        let occurrences = vec![words("publish content-type x")];
        let error = parse_properties(&occurrences, &[PropertyPacket::Connect]).unwrap_err();
        assert!(
            error.to_string().contains("no publish properties"),
            "{error}"
        );
    }
}
