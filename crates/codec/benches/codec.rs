//! Decode and encode cost of the packets on the hot path: PUBLISH (small and
//! 1 KiB payloads, 3.1.1 and 5 with a few properties), CONNECT, SUBSCRIBE and
//! PUBACK. Run with `cargo bench -p switchboard-codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchboard_codec::{
    encode, Ack, Connect, ConnectProperties, Decoder, Packet, ProtocolVersion, Publish,
    PublishProperties, QoS, Subscribe, SubscriptionOptions,
};

const MAX_PACKET_SIZE: u32 = 1024 * 1024;

fn publish(payload_size: usize, version: ProtocolVersion) -> Packet {
    let properties = if version.is_v5() {
        PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            content_type: Some("application/json".into()),
            user_properties: vec![("trace".into(), "4bf92f3577b34da6".into())],
            ..PublishProperties::default()
        }
    } else {
        PublishProperties::default()
    };
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "sensors/building-7/floor-3/temperature".into(),
        packet_id: Some(4711),
        properties,
        payload: Bytes::from(vec![b'x'; payload_size]),
        ..Publish::default()
    })
}

fn connect(version: ProtocolVersion) -> Packet {
    let properties = if version.is_v5() {
        ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(100),
            maximum_packet_size: Some(MAX_PACKET_SIZE),
            ..ConnectProperties::default()
        }
    } else {
        ConnectProperties::default()
    };
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: "bench-client-0001".into(),
        will: None,
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties,
    }))
}

fn subscribe() -> Packet {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        filters: vec![
            ("sensors/+/floor-3/#".into(), options),
            ("alerts/#".into(), options),
        ],
        ..Subscribe::default()
    })
}

/// The wire form of `packet`; a bench with a broken encoder must not run.
fn wire(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    if let Err(error) = encode(packet, version, &mut out) {
        panic!("cannot encode the bench packet: {error}");
    }
    out.freeze()
}

fn cases() -> Vec<(String, Packet, ProtocolVersion)> {
    let v3 = ProtocolVersion::V3_1_1;
    let v5 = ProtocolVersion::V5;
    vec![
        ("publish-16B-v3.1.1".into(), publish(16, v3), v3),
        ("publish-1KiB-v3.1.1".into(), publish(1024, v3), v3),
        ("publish-16B-v5".into(), publish(16, v5), v5),
        ("publish-1KiB-v5".into(), publish(1024, v5), v5),
        ("connect-v3.1.1".into(), connect(v3), v3),
        ("connect-v5".into(), connect(v5), v5),
        ("subscribe-v5".into(), subscribe(), v5),
        ("puback-v3.1.1".into(), Packet::PubAck(Ack::new(4711)), v3),
        ("puback-v5".into(), Packet::PubAck(Ack::new(4711)), v5),
    ]
}

fn decode_benches(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("decode");
    for (name, packet, version) in cases() {
        let bytes = wire(&packet, version);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |bencher| {
            bencher.iter_batched(
                || {
                    let decoder = match packet {
                        Packet::Connect(_) => Decoder::server(MAX_PACKET_SIZE),
                        _ => Decoder::client(version, MAX_PACKET_SIZE),
                    };
                    (decoder, BytesMut::from(&bytes[..]))
                },
                |(mut decoder, mut buf)| black_box(decoder.decode(&mut buf)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn encode_benches(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("encode");
    for (name, packet, version) in cases() {
        let length = wire(&packet, version).len();
        group.throughput(Throughput::Bytes(length as u64));
        let mut out = BytesMut::with_capacity(length);
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                out.clear();
                black_box(encode(black_box(&packet), version, &mut out))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode_benches, encode_benches);
criterion_main!(benches);
