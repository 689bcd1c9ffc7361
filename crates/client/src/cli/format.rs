//! How `sub` and `req` print messages: the payload alone, `-v` (topic and
//! payload), `-F` (a format string) or `--json` (one JSON object per line).
//!
//! Payloads are written as raw bytes, not as text: a binary payload piped
//! into a file arrives unchanged.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use switchboard_codec::Publish;

/// Output options shared by `sub` and `req`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct OutputArgs {
    /// Print the topic before the payload ("topic payload").
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Print each message with this format (specifiers below).
    #[arg(short = 'F', long = "format", value_name = "FORMAT", value_parser = OutputFormat::parse, conflicts_with = "verbose")]
    pub format: Option<OutputFormat>,
    /// Print each message as one JSON object per line.
    #[arg(long = "json", conflicts_with_all = ["verbose", "format"])]
    pub json: bool,
    /// Do not print a newline after each message.
    #[arg(short = 'N', long = "no-newline")]
    pub no_newline: bool,
}

/// One piece of a parsed `-F` format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Payload,
    Qos,
    Retain,
    Length,
    PacketId,
    HexLower,
    HexUpper,
    Json,
    Timestamp,
    ContentType,
    CorrelationData,
    MessageExpiry,
    PayloadFormat,
    ResponseTopic,
    SubscriptionIds,
    UserProperties,
}

/// A parsed `-F` format string; parsing fails on unknown specifiers, so a
/// typo is reported before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFormat {
    pieces: Vec<Piece>,
}

impl OutputFormat {
    /// Parses `%t`-style specifiers and `\n`-style escapes (see the tool help).
    pub fn parse(text: &str) -> Result<OutputFormat, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let piece = match chars.next() {
                        Some('%') => {
                            literal.push(b'%');
                            continue;
                        }
                        Some('t') => Piece::Topic,
                        Some('p') => Piece::Payload,
                        Some('q') => Piece::Qos,
                        Some('r') => Piece::Retain,
                        Some('l') => Piece::Length,
                        Some('m') => Piece::PacketId,
                        Some('x') => Piece::HexLower,
                        Some('X') => Piece::HexUpper,
                        Some('j') => Piece::Json,
                        Some('U') => Piece::Timestamp,
                        Some('C') => Piece::ContentType,
                        Some('D') => Piece::CorrelationData,
                        Some('E') => Piece::MessageExpiry,
                        Some('F') => Piece::PayloadFormat,
                        Some('R') => Piece::ResponseTopic,
                        Some('S') => Piece::SubscriptionIds,
                        Some('P') => Piece::UserProperties,
                        Some(other) => {
                            return Err(format!(
                                "unknown format specifier %{other}; supported: %t %p %q %r %l %m %x %X %j %U %C %D %E %F %R %S %P %%"
                            ))
                        }
                        None => return Err("format ends with a lone %; write %% for a percent sign".to_owned()),
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                '\\' => {
                    let byte = match chars.next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('r') => b'\r',
                        Some('\\') => b'\\',
                        Some(other) => {
                            return Err(format!(
                                "unknown escape \\{other}; supported: \\n \\t \\r \\\\"
                            ))
                        }
                        None => {
                            return Err(
                                "format ends with a lone \\; write \\\\ for a backslash".to_owned()
                            )
                        }
                    };
                    literal.push(byte);
                }
                other => {
                    let mut buffer = [0; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(OutputFormat { pieces })
    }

    fn render(&self, publish: &Publish, received_at: SystemTime, out: &mut Vec<u8>) {
        let properties = &publish.properties;
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::Topic => out.extend_from_slice(publish.topic.as_bytes()),
                Piece::Payload => out.extend_from_slice(&publish.payload),
                Piece::Qos => push_display(out, publish.qos.as_u8()),
                Piece::Retain => push_display(out, u8::from(publish.retain)),
                Piece::Length => push_display(out, publish.payload.len()),
                Piece::PacketId => push_display(out, publish.packet_id.unwrap_or(0)),
                Piece::HexLower => out.extend_from_slice(hex(&publish.payload, false).as_bytes()),
                Piece::HexUpper => out.extend_from_slice(hex(&publish.payload, true).as_bytes()),
                Piece::Json => out.extend_from_slice(json_line(publish, received_at).as_bytes()),
                Piece::Timestamp => {
                    let since = received_at.duration_since(UNIX_EPOCH).unwrap_or_default();
                    let text = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
                    out.extend_from_slice(text.as_bytes());
                }
                Piece::ContentType => {
                    if let Some(content_type) = &properties.content_type {
                        out.extend_from_slice(content_type.as_bytes());
                    }
                }
                Piece::CorrelationData => {
                    if let Some(data) = &properties.correlation_data {
                        out.extend_from_slice(data);
                    }
                }
                Piece::MessageExpiry => {
                    if let Some(secs) = properties.message_expiry_interval {
                        push_display(out, secs);
                    }
                }
                Piece::PayloadFormat => {
                    if let Some(indicator) = properties.payload_format_indicator {
                        push_display(out, indicator);
                    }
                }
                Piece::ResponseTopic => {
                    if let Some(topic) = &properties.response_topic {
                        out.extend_from_slice(topic.as_bytes());
                    }
                }
                Piece::SubscriptionIds => {
                    let ids: Vec<String> = properties
                        .subscription_identifiers
                        .iter()
                        .map(u32::to_string)
                        .collect();
                    out.extend_from_slice(ids.join(",").as_bytes());
                }
                Piece::UserProperties => {
                    let pairs: Vec<String> = properties
                        .user_properties
                        .iter()
                        .map(|(name, value)| format!("{name}:{value}"))
                        .collect();
                    out.extend_from_slice(pairs.join(" ").as_bytes());
                }
            }
        }
    }
}

fn push_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    out.extend_from_slice(value.to_string().as_bytes());
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|byte| {
            if upper {
                format!("{byte:02X}")
            } else {
                format!("{byte:02x}")
            }
        })
        .collect()
}

/// The JSON object of `--json` and `%j`: `topic`, `qos`, `retain`,
/// `payload_length`, `timestamp` (Unix seconds), `payload` when it is UTF-8
/// or else `payload_hex`, `packet_id` for QoS 1/2, and the MQTT 5
/// `properties` that are present (user properties as `[name, value]` pairs,
/// in order).
pub(crate) fn json_object(publish: &Publish, received_at: SystemTime) -> Value {
    let mut object = Map::new();
    let timestamp = received_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    object.insert("timestamp".to_owned(), json!(timestamp));
    object.insert("topic".to_owned(), json!(publish.topic));
    object.insert("qos".to_owned(), json!(publish.qos.as_u8()));
    object.insert("retain".to_owned(), json!(publish.retain));
    if let Some(packet_id) = publish.packet_id {
        object.insert("packet_id".to_owned(), json!(packet_id));
    }
    object.insert("payload_length".to_owned(), json!(publish.payload.len()));
    insert_bytes(&mut object, "payload", &publish.payload);

    let source = &publish.properties;
    let mut properties = Map::new();
    if let Some(value) = source.payload_format_indicator {
        properties.insert("payload_format_indicator".to_owned(), json!(value));
    }
    if let Some(value) = source.message_expiry_interval {
        properties.insert("message_expiry_interval".to_owned(), json!(value));
    }
    if let Some(value) = source.topic_alias {
        properties.insert("topic_alias".to_owned(), json!(value));
    }
    if let Some(value) = &source.content_type {
        properties.insert("content_type".to_owned(), json!(value));
    }
    if let Some(value) = &source.response_topic {
        properties.insert("response_topic".to_owned(), json!(value));
    }
    if let Some(value) = &source.correlation_data {
        insert_bytes(&mut properties, "correlation_data", value);
    }
    if !source.user_properties.is_empty() {
        let pairs: Vec<Value> = source
            .user_properties
            .iter()
            .map(|(name, value)| json!([name, value]))
            .collect();
        properties.insert("user_properties".to_owned(), Value::Array(pairs));
    }
    if !source.subscription_identifiers.is_empty() {
        properties.insert(
            "subscription_identifiers".to_owned(),
            json!(source.subscription_identifiers),
        );
    }
    if !properties.is_empty() {
        object.insert("properties".to_owned(), Value::Object(properties));
    }
    Value::Object(object)
}

/// UTF-8 bytes as a string under `name`; anything else as hex under `name_hex`.
fn insert_bytes(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.to_owned(), json!(text)),
        Err(_) => object.insert(format!("{name}_hex"), json!(hex(bytes, false))),
    };
}

fn json_line(publish: &Publish, received_at: SystemTime) -> String {
    json_object(publish, received_at).to_string()
}

/// Renders messages the way the output options ask.
#[derive(Debug, Clone)]
pub(crate) struct Printer {
    mode: Mode,
    newline: bool,
}

#[derive(Debug, Clone)]
enum Mode {
    Payload,
    Verbose,
    Format(OutputFormat),
    Json,
}

impl Printer {
    pub(crate) fn new(args: &OutputArgs) -> Printer {
        let mode = if args.json {
            Mode::Json
        } else if let Some(format) = &args.format {
            Mode::Format(format.clone())
        } else if args.verbose {
            Mode::Verbose
        } else {
            Mode::Payload
        };
        Printer {
            mode,
            newline: !args.no_newline,
        }
    }

    /// The bytes to print for one message.
    pub(crate) fn render(&self, publish: &Publish, received_at: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(publish.topic.len() + publish.payload.len() + 2);
        match &self.mode {
            Mode::Payload => out.extend_from_slice(&publish.payload),
            Mode::Verbose => {
                out.extend_from_slice(publish.topic.as_bytes());
                out.push(b' ');
                if publish.payload.is_empty() {
                    // As mosquitto_sub -v prints an empty payload.
                    out.extend_from_slice(b"(null)");
                } else {
                    out.extend_from_slice(&publish.payload);
                }
            }
            Mode::Format(format) => format.render(publish, received_at, &mut out),
            Mode::Json => out.extend_from_slice(json_line(publish, received_at).as_bytes()),
        }
        if self.newline {
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use switchboard_codec::QoS;

    use super::*;

    fn message() -> Publish {
        let mut publish = Publish {
            topic: "sensors/1".to_owned(),
            qos: QoS::AtLeastOnce,
            retain: true,
            packet_id: Some(7),
            payload: Bytes::from_static(b"21.5"),
            ..Publish::default()
        };
        publish.properties.content_type = Some("text/plain".to_owned());
        publish.properties.user_properties = vec![
            ("unit".to_owned(), "C".to_owned()),
            ("room".to_owned(), "hall".to_owned()),
        ];
        publish.properties.subscription_identifiers = vec![3, 9];
        publish
    }

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_700_000_000, 5)
    }

    fn render(format: &str, publish: &Publish) -> String {
        let mut out = Vec::new();
        OutputFormat::parse(format)
            .unwrap()
            .render(publish, at(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn specifiers_render_their_fields() {
        let publish = message();
        assert_eq!(
            render("%t %p q%q r%r l%l m%m", &publish),
            "sensors/1 21.5 q1 r1 l4 m7"
        );
        assert_eq!(render("%x|%X", &publish), "32312e35|32312E35");
        assert_eq!(
            render("%C|%S|%P", &publish),
            "text/plain|3,9|unit:C room:hall"
        );
        assert_eq!(render("%U", &publish), "1700000000.000000005");
        assert_eq!(render("100%% sure", &publish), "100% sure");
        assert_eq!(render("a\\tb\\nc\\\\", &publish), "a\tb\nc\\");
        // Absent properties print nothing.
        assert_eq!(render("[%R%D%E%F]", &publish), "[]");
    }

    #[test]
    fn unknown_specifiers_and_dangling_escapes_are_refused() {
        assert!(OutputFormat::parse("%z").unwrap_err().contains("%z"));
        assert!(OutputFormat::parse("50%").is_err());
        assert!(OutputFormat::parse("\\q").is_err());
        assert!(OutputFormat::parse("end\\").is_err());
    }

    #[test]
    fn json_holds_the_message_and_present_properties() {
        let value = json_object(&message(), at());
        assert_eq!(value["topic"], "sensors/1");
        assert_eq!(value["qos"], 1);
        assert_eq!(value["retain"], true);
        assert_eq!(value["packet_id"], 7);
        assert_eq!(value["payload"], "21.5");
        assert_eq!(value["payload_length"], 4);
        assert_eq!(value["properties"]["content_type"], "text/plain");
        assert_eq!(value["properties"]["user_properties"][1][1], "hall");
        assert_eq!(value["properties"]["subscription_identifiers"][1], 9);
        assert!(value["properties"].get("response_topic").is_none());
    }

    #[test]
    fn binary_payload_goes_to_json_as_hex() {
        let publish = Publish {
            topic: "t".to_owned(),
            payload: Bytes::from_static(&[0xff, 0x00]),
            ..Publish::default()
        };
        let value = json_object(&publish, at());
        assert!(value.get("payload").is_none());
        assert_eq!(value["payload_hex"], "ff00");
        assert!(value.get("properties").is_none());
    }

    #[test]
    fn printer_modes() {
        let publish = message();
        let printer = |args: OutputArgs| Printer::new(&args).render(&publish, at());
        let base = OutputArgs {
            verbose: false,
            format: None,
            json: false,
            no_newline: false,
        };
        assert_eq!(printer(base.clone()), b"21.5\n");
        assert_eq!(
            printer(OutputArgs {
                verbose: true,
                no_newline: true,
                ..base.clone()
            }),
            b"sensors/1 21.5"
        );
        let json = printer(OutputArgs {
            json: true,
            ..base.clone()
        });
        assert!(json.ends_with(b"}\n"));
        let parsed: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed["topic"], "sensors/1");
        let empty = Publish {
            topic: "t".to_owned(),
            ..Publish::default()
        };
        let verbose = Printer::new(&OutputArgs {
            verbose: true,
            ..base
        });
        assert_eq!(verbose.render(&empty, at()), b"t (null)\n");
    }
}
