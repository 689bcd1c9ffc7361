//! Property tests: (a) no input panics any decoder, and whatever the decoder
//! accepts the encoder can write back; (b) encode-then-decode is the identity
//! for arbitrary valid packets of every type and version.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use crate::allowed::{is_allowed, ReasonSet};
use crate::*;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];
const MAX: u32 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Strategies for valid values
// ---------------------------------------------------------------------------

/// Any string the spec allows: well-formed UTF-8 without U+0000.
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,6}"
}

/// A topic name: non-empty, no wildcards.
fn topic() -> impl Strategy<Value = String> {
    "[^\u{0}+#]{1,8}"
}

/// A topic filter; the codec does not check filter syntax.
fn filter() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\u{0}]{1,8}",
        Just("$share/group/a/#".to_owned()),
        Just("+/b/#".to_owned())
    ]
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn user_properties(version: ProtocolVersion) -> BoxedStrategy<Vec<UserProperty>> {
    if version.is_v5() {
        vec((text(), text()), 0..3).boxed()
    } else {
        Just(Vec::new()).boxed()
    }
}

fn v5_only<T: Clone + std::fmt::Debug + 'static>(
    version: ProtocolVersion,
    strategy: impl Strategy<Value = Option<T>> + 'static,
) -> BoxedStrategy<Option<T>> {
    if version.is_v5() {
        strategy.boxed()
    } else {
        Just(None).boxed()
    }
}

/// The reason codes an MQTT 5 packet of this kind allows.
fn reason(set: ReasonSet) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=255u8)
        .map(ReasonCode)
        .filter(|code| is_allowed(set, *code))
        .collect();
    select(codes)
}

/// A reason code for an acknowledgement: any allowed one in v5, success in 3.x.
fn ack_reason(version: ProtocolVersion, set: ReasonSet) -> BoxedStrategy<ReasonCode> {
    if version.is_v5() {
        reason(set).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    }
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    1..=268_435_455u32
}

fn will_properties(version: ProtocolVersion) -> BoxedStrategy<WillProperties> {
    if !version.is_v5() {
        return Just(WillProperties::default()).boxed();
    }
    (
        option::of(any::<u32>()),
        option::of(0..=1u8),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic()),
        option::of(binary()),
        user_properties(version),
    )
        .prop_map(
            |(
                will_delay_interval,
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            )| WillProperties {
                will_delay_interval,
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            },
        )
        .boxed()
}

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic(),
        binary(),
        qos(),
        any::<bool>(),
        will_properties(version),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect_properties(version: ProtocolVersion) -> BoxedStrategy<ConnectProperties> {
    if !version.is_v5() {
        return Just(ConnectProperties::default()).boxed();
    }
    (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(1..=u32::MAX),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(version),
        option::of(text()),
        option::of(binary()),
    )
        .prop_map(
            |(
                session_expiry_interval,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                request_response_information,
                request_problem_information,
                user_properties,
                authentication_method,
                authentication_data,
            )| {
                // Authentication data needs a method (3.1.2.11.10).
                let authentication_method = match (&authentication_data, authentication_method) {
                    (Some(_), None) => Some("method".to_owned()),
                    (_, method) => method,
                };
                ConnectProperties {
                    session_expiry_interval,
                    receive_maximum,
                    maximum_packet_size,
                    topic_alias_maximum,
                    request_response_information,
                    request_problem_information,
                    user_properties,
                    authentication_method,
                    authentication_data,
                }
            },
        )
        .boxed()
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(version)),
        option::of(text()),
        option::of(binary()),
        connect_properties(version),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.x: a password needs a user name ([MQTT-3.1.2-22]).
                let username = match (&password, username) {
                    (Some(_), None) if !version.is_v5() => Some(String::new()),
                    (_, username) => username,
                };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack_properties(version: ProtocolVersion) -> BoxedStrategy<ConnAckProperties> {
    if !version.is_v5() {
        return Just(ConnAckProperties::default()).boxed();
    }
    let first = (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
        option::of(any::<bool>()),
        option::of(1..=u32::MAX),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        user_properties(version),
    );
    let second = (
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(binary()),
    );
    (first, second)
        .prop_map(
            |(
                (
                    session_expiry_interval,
                    receive_maximum,
                    maximum_qos,
                    retain_available,
                    maximum_packet_size,
                    assigned_client_identifier,
                    topic_alias_maximum,
                    reason_string,
                    user_properties,
                ),
                (
                    wildcard_subscription_available,
                    subscription_identifiers_available,
                    shared_subscription_available,
                    server_keep_alive,
                    response_information,
                    server_reference,
                    authentication_method,
                    authentication_data,
                ),
            )| ConnAckProperties {
                session_expiry_interval,
                receive_maximum,
                maximum_qos,
                retain_available,
                maximum_packet_size,
                assigned_client_identifier,
                topic_alias_maximum,
                reason_string,
                user_properties,
                wildcard_subscription_available,
                subscription_identifiers_available,
                shared_subscription_available,
                server_keep_alive,
                response_information,
                server_reference,
                authentication_method,
                authentication_data,
            },
        )
        .boxed()
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason_code = if version.is_v5() {
        reason(ReasonSet::ConnAck).boxed()
    } else {
        // The reason codes that survive the trip through a 3.x return code.
        select(vec![
            ReasonCode::SUCCESS,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ReasonCode::SERVER_UNAVAILABLE,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ])
        .boxed()
    };
    (any::<bool>(), reason_code, connack_properties(version)).prop_map(
        move |(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                // 3.1 has no session present flag; nobody has one on a refusal.
                session_present: session_present
                    && reason_code == ReasonCode::SUCCESS
                    && version != ProtocolVersion::V3_1,
                reason_code,
                properties,
            })
        },
    )
}

fn publish_properties(version: ProtocolVersion) -> BoxedStrategy<PublishProperties> {
    if !version.is_v5() {
        return Just(PublishProperties::default()).boxed();
    }
    (
        option::of(0..=1u8),
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(topic()),
        option::of(binary()),
        user_properties(version),
        vec(subscription_identifier(), 0..3),
        option::of(text()),
    )
        .prop_map(
            |(
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            )| PublishProperties {
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            },
        )
        .boxed()
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic(),
        any::<bool>(),
        packet_id(),
        publish_properties(version),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(dup, qos, retain, topic, drop_topic, packet_id, properties, payload)| {
                let at_least_once = qos != QoS::AtMostOnce;
                // v5: a topic alias may stand in for the topic name.
                let topic = if drop_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && at_least_once,
                    qos,
                    retain,
                    topic,
                    packet_id: at_least_once.then_some(packet_id),
                    properties,
                    payload: Bytes::from(payload),
                })
            },
        )
}

fn ack(version: ProtocolVersion, set: ReasonSet) -> impl Strategy<Value = Ack> {
    (
        packet_id(),
        ack_reason(version, set),
        v5_only(version, option::of(text())),
        user_properties(version),
    )
        .prop_map(
            |(packet_id, reason_code, reason_string, user_properties)| Ack {
                packet_id,
                reason_code,
                reason_string,
                user_properties,
            },
        )
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if !version.is_v5() {
        return qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            })
            .boxed();
    }
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(vec![
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ]),
    )
        .prop_map(
            |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
        .boxed()
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        v5_only(version, option::of(subscription_identifier())),
        user_properties(version),
        vec((filter(), subscription_options(version)), 1..4),
    )
        .prop_map(
            |(packet_id, subscription_identifier, user_properties, filters)| {
                // [MQTT-3.8.3-4]: no local is not allowed on a shared subscription.
                let filters = filters
                    .into_iter()
                    .map(|(filter, mut options)| {
                        if filter.starts_with("$share/") {
                            options.no_local = false;
                        }
                        (filter, options)
                    })
                    .collect();
                Packet::Subscribe(Subscribe {
                    packet_id,
                    subscription_identifier,
                    user_properties,
                    filters,
                })
            },
        )
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if version.is_v5() {
        reason(ReasonSet::SubAck).boxed()
    } else {
        select(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR,
        ])
        .boxed()
    };
    (
        packet_id(),
        v5_only(version, option::of(text())),
        user_properties(version),
        vec(code, 1..4),
    )
        .prop_map(
            |(packet_id, reason_string, user_properties, reason_codes)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    reason_string,
                    user_properties,
                    reason_codes,
                })
            },
        )
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (packet_id(), user_properties(version), vec(filter(), 1..4)).prop_map(
        |(packet_id, user_properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                user_properties,
                filters,
            })
        },
    )
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if version.is_v5() {
        vec(reason(ReasonSet::UnsubAck), 1..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        packet_id(),
        v5_only(version, option::of(text())),
        user_properties(version),
        codes,
    )
        .prop_map(
            |(packet_id, reason_string, user_properties, reason_codes)| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reason_string,
                    user_properties,
                    reason_codes,
                })
            },
        )
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        ack_reason(version, ReasonSet::Disconnect),
        v5_only(version, option::of(any::<u32>())),
        v5_only(version, option::of(text())),
        user_properties(version),
        v5_only(version, option::of(text())),
    )
        .prop_map(
            |(
                reason_code,
                session_expiry_interval,
                reason_string,
                user_properties,
                server_reference,
            )| {
                Packet::Disconnect(Disconnect {
                    reason_code,
                    session_expiry_interval,
                    reason_string,
                    user_properties,
                    server_reference,
                })
            },
        )
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        reason(ReasonSet::Auth),
        option::of(text()),
        option::of(binary()),
        option::of(text()),
        user_properties(ProtocolVersion::V5),
    )
        .prop_map(
            |(
                reason_code,
                authentication_method,
                authentication_data,
                reason_string,
                user_properties,
            )| {
                let mut auth = Auth {
                    reason_code,
                    authentication_method,
                    authentication_data,
                    reason_string,
                    user_properties,
                };
                // Only a bare success may leave out the method (3.15.2.2.2).
                let bare_success = auth.reason_code == ReasonCode::SUCCESS
                    && auth.authentication_data.is_none()
                    && auth.reason_string.is_none()
                    && auth.user_properties.is_empty();
                if !bare_success && auth.authentication_method.is_none() {
                    auth.authentication_method = Some("method".to_owned());
                }
                Packet::Auth(auth)
            },
        )
}

/// Any valid packet of `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version, ReasonSet::PubAck).prop_map(Packet::PubAck),
        ack(version, ReasonSet::PubAck).prop_map(Packet::PubRec),
        ack(version, ReasonSet::PubRel).prop_map(Packet::PubRel),
        ack(version, ReasonSet::PubRel).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![13 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn version_and_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    select(VERSIONS.to_vec()).prop_flat_map(|version| (Just(version), packet(version)))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The decoder a peer of `version` would read `packet` with.
fn decoder_for(packet: &Packet, version: ProtocolVersion) -> Decoder {
    match packet {
        Packet::Connect(_) => Decoder::server(MAX),
        _ => Decoder::client(version, MAX),
    }
}

/// Runs `decoder` over `bytes` until it wants more or fails. Checks the
/// decoder's contract on the way, and that every packet it accepts can be
/// written back and read again unchanged.
fn drain(decoder: &mut Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.clone();
        let version_before = decoder.version();
        match decoder.decode(&mut buf) {
            Ok(None) => {
                prop_assert_eq!(&buf, &before, "Ok(None) must leave the buffer untouched");
                return Ok(());
            }
            Err(error) => {
                // Every error maps to a failure reason code.
                prop_assert!(error.reason_code().is_error());
                prop_assert!(!error.to_string().is_empty());
                return Ok(());
            }
            Ok(Some(packet)) => {
                let consumed = before.len() - buf.len();
                prop_assert!(consumed >= 2);
                let version = match (&packet, decoder.version()) {
                    (Packet::Connect(connect), _) => connect.protocol,
                    (_, Some(version)) => version,
                    (_, None) => return Err(TestCaseError::fail("no version after a packet")),
                };
                // Whatever was accepted can be encoded and reads back the same.
                let mut encoded = BytesMut::new();
                encode(&packet, version, &mut encoded)
                    .map_err(|error| TestCaseError::fail(format!("{error}: {packet:?}")))?;
                prop_assert!(
                    encoded.len() <= consumed,
                    "the encoder's form is the shortest"
                );
                let mut again = match (&packet, version_before) {
                    (Packet::Connect(_), None) => Decoder::server(MAX),
                    _ => Decoder::client(version, MAX),
                };
                prop_assert_eq!(again.decode(&mut encoded), Ok(Some(packet)));
                prop_assert!(encoded.is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    })]

    /// (b) Encode then decode is the identity, and `encoded_len` is exact.
    #[test]
    fn encode_then_decode_is_the_identity((version, packet) in version_and_packet()) {
        let mut out = BytesMut::new();
        encode(&packet, version, &mut out)
            .map_err(|error| TestCaseError::fail(format!("{error}: {packet:?}")))?;
        prop_assert_eq!(encoded_len(&packet, version), Ok(out.len()));
        let bytes = out.clone().freeze();

        // Every strict prefix is "need more bytes".
        let mut decoder = decoder_for(&packet, version);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            let mut partial = BytesMut::from(&bytes[..cut]);
            prop_assert_eq!(decoder.decode(&mut partial), Ok(None));
        }
        prop_assert_eq!(decoder.decode(&mut out), Ok(Some(packet.clone())));
        prop_assert!(out.is_empty());
        if let Packet::Connect(_) = packet {
            prop_assert_eq!(decoder.version(), Some(version));
        }

        // A maximum packet size one byte short refuses it from the header alone.
        let mut small = match &packet {
            Packet::Connect(_) => Decoder::server(bytes.len() as u32 - 1),
            _ => Decoder::client(version, bytes.len() as u32 - 1),
        };
        let mut header = BytesMut::from(&bytes[..bytes.len().min(5)]);
        let refused = matches!(
            small.decode(&mut header),
            Err(DecodeError::PacketTooLarge { .. })
        );
        prop_assert!(refused);
    }

    /// (a) Arbitrary bytes never panic any decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        drain(&mut Decoder::server(MAX), &bytes)?;
        for version in VERSIONS {
            drain(&mut Decoder::client(version, MAX), &bytes)?;
            drain(&mut Decoder::client(version, 16), &bytes)?;
        }
    }

    /// (a) Valid packets with a few bytes changed, which reach far deeper into
    /// the decoder than random bytes do, never panic it either.
    #[test]
    fn mutated_packets_never_panic(
        (version, packet) in version_and_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut out = BytesMut::new();
        encode(&packet, version, &mut out)
            .map_err(|error| TestCaseError::fail(format!("{error}")))?;
        let mut bytes = out.to_vec();
        for (index, value) in edits {
            let position = index.index(bytes.len());
            bytes[position] = value;
        }
        drain(&mut decoder_for(&packet, version), &bytes)?;
        // Also truncated, as if the connection dropped mid-packet.
        bytes.truncate(cut.index(bytes.len() + 1));
        drain(&mut decoder_for(&packet, version), &bytes)?;
    }
}
