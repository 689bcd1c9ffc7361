//! The hot-path packets, written straight into a connection's write buffer.
//!
//! The codec's [`encode`](switchboard_codec::encode) takes a whole
//! [`Publish`](switchboard_codec::Publish), which owns its topic and payload:
//! building one per message would cost two allocations and a copy of the
//! payload before the copy into the write buffer. A benchmark publisher sends
//! the same topic and padding millions of times, so these writers take
//! borrowed parts and append the wire form directly; they write exactly what
//! the codec would (the tests decode their output with the codec's decoder).
//! Setup packets (CONNECT, SUBSCRIBE) go through the codec.

use bytes::{BufMut, BytesMut};
use switchboard_codec::{ProtocolVersion, QoS};

/// PUBLISH property identifiers used here (MQTT 5, 2.2.2.2).
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;

/// Largest Remaining Length a Variable Byte Integer can carry (2.1.4).
const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A fixed-header first byte for the acknowledgements (2.1.2); PUBREL carries
/// the reserved flags 0b0010 ([MQTT-3.6.1-1]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the packets are called that
pub(crate) enum AckKind {
    PubAck = 0x40,
    PubRec = 0x50,
    PubRel = 0x62,
    PubComp = 0x70,
}

/// A packet these writers refuse because it cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("a PUBLISH of {0} bytes is larger than MQTT allows (256 MiB)")]
    TooLarge(usize),
    #[error("a topic or property of {0} bytes does not fit MQTT's 65,535-byte strings")]
    StringTooLong(usize),
}

/// The parts of one PUBLISH. The payload is `head` followed by `tail`, so a
/// benchmark message (16-byte header + shared padding) needs no assembly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishParts<'a> {
    pub(crate) topic: &'a [u8],
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    /// Ignored at QoS 0 (no packet identifier on the wire, [MQTT-2.2.1-2]).
    pub(crate) packet_id: u16,
    /// MQTT 5 only; ignored for 3.x.
    pub(crate) response_topic: Option<&'a [u8]>,
    /// MQTT 5 only; ignored for 3.x.
    pub(crate) correlation_data: Option<&'a [u8]>,
    pub(crate) head: &'a [u8],
    pub(crate) tail: &'a [u8],
}

/// Appends one PUBLISH to `out`, or nothing on error.
pub(crate) fn put_publish(
    out: &mut BytesMut,
    version: ProtocolVersion,
    parts: &PublishParts<'_>,
) -> Result<(), WireError> {
    let topic_len = string_len(parts.topic)?;
    let mut properties_len = 0usize;
    if version.is_v5() {
        if let Some(topic) = parts.response_topic {
            string_len(topic)?;
            properties_len += 3 + topic.len();
        }
        if let Some(data) = parts.correlation_data {
            string_len(data)?;
            properties_len += 3 + data.len();
        }
    }
    let mut remaining = 2 + parts.topic.len() + parts.head.len() + parts.tail.len();
    if parts.qos != QoS::AtMostOnce {
        remaining += 2;
    }
    if version.is_v5() {
        remaining += varint_len(properties_len) + properties_len;
    }
    if remaining > MAX_REMAINING_LENGTH {
        return Err(WireError::TooLarge(remaining));
    }
    out.reserve(1 + varint_len(remaining) + remaining);
    let mut first = 0x30 | (parts.qos.as_u8() << 1);
    if parts.retain {
        first |= 1;
    }
    out.put_u8(first);
    put_varint(out, remaining);
    out.put_u16(topic_len);
    out.put_slice(parts.topic);
    if parts.qos != QoS::AtMostOnce {
        out.put_u16(parts.packet_id);
    }
    if version.is_v5() {
        put_varint(out, properties_len);
        if let Some(topic) = parts.response_topic {
            out.put_u8(RESPONSE_TOPIC);
            out.put_u16(string_len(topic)?);
            out.put_slice(topic);
        }
        if let Some(data) = parts.correlation_data {
            out.put_u8(CORRELATION_DATA);
            out.put_u16(string_len(data)?);
            out.put_slice(data);
        }
    }
    out.put_slice(parts.head);
    out.put_slice(parts.tail);
    Ok(())
}

/// Appends a successful PUBACK/PUBREC/PUBREL/PUBCOMP. Remaining length 2 is
/// valid in every version: in MQTT 5 it means reason Success, no properties
/// (3.4.2.1).
pub(crate) fn put_ack(out: &mut BytesMut, kind: AckKind, packet_id: u16) {
    out.put_u8(kind as u8);
    out.put_u8(2);
    out.put_u16(packet_id);
}

/// Appends a PINGREQ (3.12).
pub(crate) fn put_pingreq(out: &mut BytesMut) {
    out.put_slice(&[0xC0, 0x00]);
}

/// Appends a normal DISCONNECT: empty in 3.x, and in MQTT 5 remaining length
/// 0 means reason 0x00 Normal disconnection (3.14.2.1).
pub(crate) fn put_disconnect(out: &mut BytesMut) {
    out.put_slice(&[0xE0, 0x00]);
}

fn string_len(bytes: &[u8]) -> Result<u16, WireError> {
    u16::try_from(bytes.len()).map_err(|_| WireError::StringTooLong(bytes.len()))
}

/// Bytes a Variable Byte Integer takes (1.5.5); callers keep `value` within
/// [`MAX_REMAINING_LENGTH`].
fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchboard_codec::{Ack, Decoder, Disconnect, Packet, Publish, PublishProperties};

    use super::*;

    fn decode_one(version: ProtocolVersion, bytes: &mut BytesMut) -> Packet {
        let packet = Decoder::client(version, 1 << 28)
            .decode(bytes)
            .unwrap()
            .unwrap();
        assert!(bytes.is_empty(), "one whole packet");
        packet
    }

    fn parts<'a>(qos: QoS, head: &'a [u8], tail: &'a [u8]) -> PublishParts<'a> {
        PublishParts {
            topic: b"bench/in/7",
            qos,
            retain: false,
            packet_id: 513,
            response_topic: None,
            correlation_data: None,
            head,
            tail,
        }
    }

    #[test]
    fn publish_decodes_as_the_codec_reads_it_every_version_and_qos() {
        let tail = vec![0xAB; 300]; // remaining length needs two bytes
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut out = BytesMut::new();
                put_publish(&mut out, version, &parts(qos, b"head", &tail)).unwrap();
                let mut payload = b"head".to_vec();
                payload.extend_from_slice(&tail);
                let expected = Publish {
                    qos,
                    topic: "bench/in/7".into(),
                    packet_id: (qos != QoS::AtMostOnce).then_some(513),
                    payload: Bytes::from(payload),
                    ..Publish::default()
                };
                assert_eq!(
                    decode_one(version, &mut out),
                    Packet::Publish(expected),
                    "{version:?} {qos:?}"
                );
            }
        }
    }

    #[test]
    fn publish_carries_retain_response_topic_and_correlation_data_in_v5() {
        let mut request = parts(QoS::AtLeastOnce, b"0123", b"");
        request.retain = true;
        request.response_topic = Some(b"bench/resp/7");
        request.correlation_data = Some(&[0, 0, 0, 7, 0, 0, 0, 1]);
        let mut out = BytesMut::new();
        put_publish(&mut out, ProtocolVersion::V5, &request).unwrap();
        let Packet::Publish(publish) = decode_one(ProtocolVersion::V5, &mut out) else {
            panic!("not a PUBLISH");
        };
        assert!(publish.retain);
        assert_eq!(
            publish.properties,
            PublishProperties {
                response_topic: Some("bench/resp/7".into()),
                correlation_data: Some(Bytes::from_static(&[0, 0, 0, 7, 0, 0, 0, 1])),
                ..PublishProperties::default()
            }
        );
        assert_eq!(&publish.payload[..], b"0123");

        // 3.1.1 has no properties: they are left out, not refused.
        let mut out = BytesMut::new();
        put_publish(&mut out, ProtocolVersion::V3_1_1, &request).unwrap();
        let Packet::Publish(publish) = decode_one(ProtocolVersion::V3_1_1, &mut out) else {
            panic!("not a PUBLISH");
        };
        assert_eq!(publish.properties, PublishProperties::default());
    }

    #[test]
    fn publish_empty_payload_is_a_retained_delete() {
        let mut delete = parts(QoS::AtMostOnce, b"", b"");
        delete.retain = true;
        let mut out = BytesMut::new();
        put_publish(&mut out, ProtocolVersion::V5, &delete).unwrap();
        let Packet::Publish(publish) = decode_one(ProtocolVersion::V5, &mut out) else {
            panic!("not a PUBLISH");
        };
        assert!(publish.retain && publish.payload.is_empty());
    }

    #[test]
    fn oversized_topic_is_refused_and_writes_nothing() {
        let topic = vec![b'a'; 70_000];
        let mut long = parts(QoS::AtMostOnce, b"", b"");
        long.topic = &topic;
        let mut out = BytesMut::new();
        assert_eq!(
            put_publish(&mut out, ProtocolVersion::V5, &long),
            Err(WireError::StringTooLong(70_000))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn acks_ping_and_disconnect_decode() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let cases = [
                (AckKind::PubAck, Packet::PubAck(Ack::new(9))),
                (AckKind::PubRec, Packet::PubRec(Ack::new(9))),
                (AckKind::PubRel, Packet::PubRel(Ack::new(9))),
                (AckKind::PubComp, Packet::PubComp(Ack::new(9))),
            ];
            for (kind, expected) in cases {
                let mut out = BytesMut::new();
                put_ack(&mut out, kind, 9);
                // The client decoder refuses client-to-server packets, so read
                // these as the server does, after a CONNECT.
                assert_eq!(server_decode(version, &mut out), expected);
            }
            let mut out = BytesMut::new();
            put_pingreq(&mut out);
            assert_eq!(server_decode(version, &mut out), Packet::PingReq);
            let mut out = BytesMut::new();
            put_disconnect(&mut out);
            assert_eq!(
                server_decode(version, &mut out),
                Packet::Disconnect(Disconnect::default())
            );
        }
    }

    fn server_decode(version: ProtocolVersion, bytes: &mut BytesMut) -> Packet {
        let connect = switchboard_codec::Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 0,
            client_id: "x".into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        let mut stream = BytesMut::new();
        switchboard_codec::encode(&Packet::Connect(Box::new(connect)), version, &mut stream)
            .unwrap();
        stream.extend_from_slice(bytes);
        let mut decoder = Decoder::server(1 << 20);
        assert!(matches!(
            decoder.decode(&mut stream),
            Ok(Some(Packet::Connect(_)))
        ));
        let packet = decoder.decode(&mut stream).unwrap().unwrap();
        assert!(stream.is_empty());
        packet
    }

    #[test]
    fn varint_lengths_match_the_spec_table() {
        // 1.5.5: boundaries of 1, 2, 3 and 4 byte Variable Byte Integers.
        for (value, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (268_435_455, 4),
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), len, "{value}");
            assert_eq!(varint_len(value), len, "{value}");
        }
    }
}
