//! Replays the decoder fuzz targets' seed corpus (`fuzz/corpus/decode_*`)
//! and every regression input (`fuzz/regressions/decode_*`) through the very
//! checks the fuzz targets run (`fuzz/src/decode.rs`), so that every
//! `cargo test` exercises them without a fuzzer.
//!
//! The seed corpus is written by the ignored test `write_seed_corpus`:
//! `cargo test -p switchboard-codec --test corpus -- --ignored write_seed_corpus`.

// Test code: a panic is a failed test. (The included fuzz checks need
// neither; they are written to the workspace lints.)
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../../../fuzz/src/decode.rs"]
pub mod decode;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use switchboard_codec::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file of the target's seed corpus and regression inputs, sorted.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        files.len() >= 10,
        "the seed corpus of {target} is missing: {} files",
        files.len()
    );
    for (path, bytes) in files {
        // Shown only when the check below panics.
        println!("replaying {}", path.display());
        check(&bytes);
    }
}

#[test]
fn decode_server_corpus() {
    replay("decode_server", decode::check_server);
}

#[test]
fn decode_client_corpus() {
    replay("decode_client", decode::check_client);
}

/// The seeds are accepted as what they are meant to be, so that a change
/// that makes the decoder refuse them (and the corpus useless) is noticed.
#[test]
fn seeds_decode_as_written() {
    for (name, version, packets) in seed_files() {
        let mut decoder = Decoder::client(version, 1024 * 1024);
        let mut buf = BytesMut::from(&encode_all(&packets, version)[..]);
        for packet in &packets {
            assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())), "{name}");
        }
        assert!(buf.is_empty(), "{name}");
    }
}

/// Writes the seed corpus: every packet type in MQTT 3.1.1 and 5.0 (and some
/// in 3.1), encoded by the codec's own encoder. `decode_client` gets each
/// file on its own; `decode_server` gets each behind the CONNECT of its
/// version, since a server's decoder refuses anything before CONNECT.
#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    let client_dir = fuzz_dir().join("corpus/decode_client");
    let server_dir = fuzz_dir().join("corpus/decode_server");
    fs::create_dir_all(&client_dir).unwrap();
    fs::create_dir_all(&server_dir).unwrap();
    for (name, version, packets) in seed_files() {
        let bytes = encode_all(&packets, version);
        fs::write(client_dir.join(&name), &bytes).unwrap();
        let mut with_connect = match packets.first() {
            Some(Packet::Connect(_)) => Vec::new(),
            _ => encode_all(&[connect(version)], version),
        };
        with_connect.extend_from_slice(&bytes);
        fs::write(server_dir.join(&name), with_connect).unwrap();
    }
}

fn encode_all(packets: &[Packet], version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    for packet in packets {
        encode(packet, version, &mut out).unwrap();
    }
    out.to_vec()
}

fn seed_files() -> Vec<(String, ProtocolVersion, Vec<Packet>)> {
    let mut files = Vec::new();
    for (prefix, version) in [
        ("v3.1", ProtocolVersion::V3_1),
        ("v3.1.1", ProtocolVersion::V3_1_1),
        ("v5", ProtocolVersion::V5),
    ] {
        let packets = all_packets(version);
        // MQTT 3.1 only gets the whole conversation, in one file.
        if version != ProtocolVersion::V3_1 {
            for (name, packet) in &packets {
                files.push((format!("{prefix}-{name}"), version, vec![packet.clone()]));
            }
        }
        // One CONNECT only: a server's decoder refuses a second one.
        files.push((
            format!("{prefix}-conversation"),
            version,
            packets
                .into_iter()
                .filter(|(name, _)| *name != "connect")
                .map(|(_, packet)| packet)
                .collect(),
        ));
    }
    files
}

fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn user_properties(version: ProtocolVersion) -> Vec<UserProperty> {
    if version.is_v5() {
        vec![
            ("region".to_owned(), "eu".to_owned()),
            ("region".to_owned(), "us".to_owned()),
        ]
    } else {
        Vec::new()
    }
}

fn v5<T>(version: ProtocolVersion, value: T) -> Option<T> {
    version.is_v5().then_some(value)
}

fn connect(version: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: "fuzz-seed".to_owned(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }))
}

fn full_connect(version: ProtocolVersion) -> Packet {
    let v5_properties = version.is_v5();
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: false,
        keep_alive: 30,
        client_id: "sensor-17".to_owned(),
        will: Some(Will {
            topic: "sensors/17/status".to_owned(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: if v5_properties {
                WillProperties {
                    will_delay_interval: Some(10),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(3600),
                    content_type: text("text/plain"),
                    response_topic: text("sensors/17/ack"),
                    correlation_data: Some(Bytes::from_static(b"c-1")),
                    user_properties: user_properties(version),
                }
            } else {
                WillProperties::default()
            },
        }),
        username: text("user"),
        password: Some(Bytes::from_static(b"secret")),
        properties: if v5_properties {
            ConnectProperties {
                session_expiry_interval: Some(300),
                receive_maximum: Some(20),
                maximum_packet_size: Some(65_536),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: user_properties(version),
                authentication_method: text("SCRAM-SHA-256"),
                authentication_data: Some(Bytes::from_static(b"client-first")),
            }
        } else {
            ConnectProperties::default()
        },
    }))
}

fn ack(version: ProtocolVersion, packet_id: u16, reason_code: ReasonCode) -> Ack {
    if version.is_v5() {
        Ack {
            packet_id,
            reason_code,
            reason_string: text("because"),
            user_properties: user_properties(version),
        }
    } else {
        Ack::new(packet_id)
    }
}

/// One packet of every type (several forms of some), named.
fn all_packets(version: ProtocolVersion) -> Vec<(&'static str, Packet)> {
    let is_v5 = version.is_v5();
    let mut packets = vec![
        ("connect", connect(version)),
        ("connect-will-user", full_connect(version)),
        (
            "connack",
            Packet::ConnAck(ConnAck {
                session_present: version != ProtocolVersion::V3_1,
                reason_code: ReasonCode::SUCCESS,
                properties: if is_v5 {
                    ConnAckProperties {
                        session_expiry_interval: Some(300),
                        receive_maximum: Some(100),
                        maximum_qos: Some(QoS::AtLeastOnce),
                        retain_available: Some(true),
                        maximum_packet_size: Some(1 << 20),
                        assigned_client_identifier: text("auto-1"),
                        topic_alias_maximum: Some(16),
                        reason_string: text("welcome"),
                        user_properties: user_properties(version),
                        wildcard_subscription_available: Some(true),
                        subscription_identifiers_available: Some(true),
                        shared_subscription_available: Some(false),
                        server_keep_alive: Some(45),
                        response_information: text("replies/"),
                        server_reference: None,
                        authentication_method: None,
                        authentication_data: None,
                    }
                } else {
                    ConnAckProperties::default()
                },
            }),
        ),
        (
            "connack-refused",
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::NOT_AUTHORIZED,
                properties: ConnAckProperties::default(),
            }),
        ),
        (
            "publish-qos0",
            Packet::Publish(Publish {
                topic: "a/b".to_owned(),
                payload: Bytes::from_static(b"hello"),
                ..Publish::default()
            }),
        ),
        (
            "publish-qos1-dup",
            Packet::Publish(Publish {
                dup: true,
                qos: QoS::AtLeastOnce,
                topic: "sensors/1/temperature".to_owned(),
                packet_id: Some(1),
                payload: Bytes::from_static(b"21.5"),
                ..Publish::default()
            }),
        ),
        (
            "publish-qos2-retain",
            Packet::Publish(Publish {
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "$SYS/broker/uptime".to_owned(),
                packet_id: Some(65_535),
                properties: PublishProperties {
                    payload_format_indicator: v5(version, 1),
                    message_expiry_interval: v5(version, 120),
                    topic_alias: v5(version, 3),
                    response_topic: v5(version, "replies/1".to_owned()),
                    correlation_data: v5(version, Bytes::from_static(b"\x00\x01")),
                    user_properties: user_properties(version),
                    subscription_identifiers: if is_v5 {
                        vec![1, 268_435_455]
                    } else {
                        Vec::new()
                    },
                    content_type: v5(version, "application/json".to_owned()),
                },
                payload: Bytes::from_static(b"{\"up\":42}"),
                ..Publish::default()
            }),
        ),
        (
            "puback",
            Packet::PubAck(ack(version, 1, ReasonCode::SUCCESS)),
        ),
        ("puback-short", Packet::PubAck(Ack::new(2))),
        (
            "pubrec",
            Packet::PubRec(ack(version, 3, ReasonCode::NO_MATCHING_SUBSCRIBERS)),
        ),
        (
            "pubrel",
            Packet::PubRel(ack(version, 3, ReasonCode::SUCCESS)),
        ),
        ("pubcomp", Packet::PubComp(Ack::new(3))),
        (
            "subscribe",
            Packet::Subscribe(Subscribe {
                packet_id: 7,
                subscription_identifier: v5(version, 42),
                user_properties: user_properties(version),
                filters: vec![
                    (
                        "sport/tennis/+".to_owned(),
                        SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: is_v5,
                            retain_as_published: is_v5,
                            retain_handling: if is_v5 {
                                RetainHandling::SendIfNew
                            } else {
                                RetainHandling::SendAtSubscribe
                            },
                        },
                    ),
                    (
                        "$share/group/sensors/#".to_owned(),
                        SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            ..SubscriptionOptions::default()
                        },
                    ),
                    ("#".to_owned(), SubscriptionOptions::default()),
                ],
            }),
        ),
        (
            "suback",
            Packet::SubAck(SubAck {
                packet_id: 7,
                reason_string: v5(version, "ok".to_owned()),
                user_properties: user_properties(version),
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::GRANTED_QOS_2,
                    ReasonCode::UNSPECIFIED_ERROR,
                ],
            }),
        ),
        (
            "unsubscribe",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 8,
                user_properties: user_properties(version),
                filters: vec!["sport/tennis/+".to_owned(), "#".to_owned()],
            }),
        ),
        (
            "unsuback",
            Packet::UnsubAck(UnsubAck {
                packet_id: 8,
                reason_string: None,
                user_properties: Vec::new(),
                reason_codes: if is_v5 {
                    vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
                } else {
                    Vec::new()
                },
            }),
        ),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        ("disconnect", Packet::Disconnect(Disconnect::default())),
    ];
    if is_v5 {
        packets.extend([
            (
                "publish-alias-only",
                Packet::Publish(Publish {
                    qos: QoS::AtLeastOnce,
                    topic: String::new(),
                    packet_id: Some(9),
                    properties: PublishProperties {
                        topic_alias: Some(3),
                        ..PublishProperties::default()
                    },
                    payload: Bytes::new(),
                    ..Publish::default()
                }),
            ),
            (
                "puback-reason-only",
                Packet::PubAck(Ack::with_reason(4, ReasonCode::QUOTA_EXCEEDED)),
            ),
            (
                "disconnect-properties",
                Packet::Disconnect(Disconnect {
                    reason_code: ReasonCode::SERVER_MOVED,
                    session_expiry_interval: Some(0),
                    reason_string: text("moving"),
                    user_properties: user_properties(version),
                    server_reference: text("other.example:1883"),
                }),
            ),
            (
                "disconnect-reason-only",
                Packet::Disconnect(Disconnect::with_reason(
                    ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                )),
            ),
            (
                "auth",
                Packet::Auth(Auth {
                    reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                    authentication_method: text("SCRAM-SHA-256"),
                    authentication_data: Some(Bytes::from_static(b"server-first")),
                    reason_string: text("continue"),
                    user_properties: user_properties(version),
                }),
            ),
            ("auth-bare", Packet::Auth(Auth::default())),
        ]);
    }
    packets
}
