//! Fan-out cost inside the broker, without sockets: routing one message to
//! every subscriber of a topic and handing it to each session's queue, and
//! matching a topic against a growing set of subscriptions.
//!
//! Sessions are attached through `Broker::connect`, as a connection would do,
//! with no task waiting on their wake-ups. Each measured iteration publishes one
//! QoS 0 message; the queues are drained outside the timing, so every
//! iteration delivers to empty queues (no drops, no queue growth).
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard_broker::{Broker, ConnectRequest, Connected, Settings};
use switchboard_codec::{
    Connect, ConnectProperties, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
};
use switchboard_session::Message;

/// One attached session.
struct Client {
    connected: Connected,
}

fn connect(broker: &Broker, client_id: String, now: Instant) -> Client {
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        client_id,
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    let request = ConnectRequest {
        connect: &connect,
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1883)),
        username: None,
        realm: 0,
    };
    let connected = broker
        .connect(request, now)
        .expect("the bench CONNECT is accepted");
    Client { connected }
}

fn subscribe(broker: &Broker, client: &Client, filter: String, now: Instant) {
    let subscribe = Subscribe {
        packet_id: 1,
        subscription_identifier: None,
        user_properties: Vec::new(),
        filters: vec![(
            filter,
            SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..SubscriptionOptions::default()
            },
        )],
    };
    let mut records = Vec::new();
    broker
        .subscribe(
            &client.connected.entry,
            client.connected.generation,
            &subscribe,
            now,
            &mut records,
        )
        .expect("the bench SUBSCRIBE is accepted");
}

fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        id: 0,
        topic: topic.to_owned(),
        payload: Bytes::from_static(&[0u8; 64]),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        expires_at: None,
    })
}

/// Empties every client's queue, as their connections would.
fn drain(clients: &[Client], now: Instant, out: &mut Vec<Publish>) {
    let mut journal = Vec::new();
    for client in clients {
        out.clear();
        client.connected.entry.poll_publishes(
            client.connected.generation,
            now,
            usize::MAX,
            out,
            &mut journal,
        );
        journal.clear();
    }
}

fn broker() -> Broker {
    Broker::new(Settings::default(), Instant::now())
}

/// Route and deliver one message to 10^4 subscribers of one topic.
fn fan_out(criterion: &mut Criterion) {
    const SUBSCRIBERS: usize = 10_000;
    let now = Instant::now();
    let broker = broker();
    let clients: Vec<Client> = (0..SUBSCRIBERS)
        .map(|index| {
            let client = connect(&broker, format!("sub-{index}"), now);
            subscribe(&broker, &client, "bench/fanout".to_owned(), now);
            client
        })
        .collect();
    let mut out = Vec::new();
    let mut group = criterion.benchmark_group("fan_out");
    group.throughput(criterion::Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("route_and_deliver_10k_subscribers", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let message = message("bench/fanout");
                let start = Instant::now();
                let delivered = broker.publish(None, message, now);
                total += start.elapsed();
                assert_eq!(delivered, SUBSCRIBERS);
                drain(&clients, now, &mut out);
            }
            total
        });
    });
    group.finish();
}

/// Matching one topic among 10^3 .. 10^5 subscriptions, each on its own
/// topic (`bench/match/<n>`), with one wildcard subscriber that matches.
fn matching(criterion: &mut Criterion) {
    let now = Instant::now();
    let mut group = criterion.benchmark_group("route_matching");
    for subscriptions in [1_000usize, 10_000, 100_000] {
        let broker = broker();
        let clients: Vec<Client> = (0..subscriptions)
            .map(|index| {
                let client = connect(&broker, format!("m-{index}"), now);
                subscribe(&broker, &client, format!("bench/match/{index}"), now);
                client
            })
            .collect();
        let wildcard = connect(&broker, "wildcard".to_owned(), now);
        subscribe(&broker, &wildcard, "bench/+/7".to_owned(), now);
        let message = message("bench/match/7");
        group.bench_with_input(
            BenchmarkId::from_parameter(subscriptions),
            &subscriptions,
            |bencher, _| {
                bencher.iter(|| {
                    let route = broker.route(None, black_box(&message));
                    black_box(route.len())
                });
            },
        );
        drop(clients);
    }
    group.finish();
}

/// Routing on one thread against two, each thread publishing to a topic of
/// its own with a subscriber of its own (drained every 64 messages, as its
/// connection would): what a second core adds when nothing is shared but
/// the broker itself (the subscription index, the registry, the counters).
/// The network bench cannot show this on a two-core machine, where the load
/// generator needs one of the cores.
fn parallel_routing(criterion: &mut Criterion) {
    const PER_THREAD: usize = 20_000;
    let now = Instant::now();
    let broker = broker();
    let clients: Vec<Client> = (0..2)
        .map(|index| {
            let client = connect(&broker, format!("pair-{index}"), now);
            subscribe(&broker, &client, format!("bench/pair/{index}"), now);
            client
        })
        .collect();
    let mut group = criterion.benchmark_group("parallel_routing");
    for threads in [1usize, 2] {
        group.throughput(criterion::Throughput::Elements(
            (threads * PER_THREAD) as u64,
        ));
        group.bench_with_input(
            BenchmarkId::new("publish_and_drain", threads),
            &threads,
            |bencher, &threads| {
                bencher.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let start = Instant::now();
                        std::thread::scope(|scope| {
                            for client in clients.iter().take(threads) {
                                let broker = &broker;
                                scope.spawn(move || {
                                    let topic = client
                                        .connected
                                        .entry
                                        .client_id()
                                        .replace("pair-", "bench/pair/");
                                    let mut out = Vec::new();
                                    for sent in 1..=PER_THREAD {
                                        let delivered = broker.publish(None, message(&topic), now);
                                        assert_eq!(delivered, 1);
                                        if sent % 64 == 0 {
                                            drain(std::slice::from_ref(client), now, &mut out);
                                        }
                                    }
                                    drain(std::slice::from_ref(client), now, &mut out);
                                });
                            }
                        });
                        total += start.elapsed();
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fan_out, matching, parallel_routing);
criterion_main!(benches);
