//! Authentication and access control end to end: password checks at CONNECT
//! (v5 reason codes and 3.1.1 return codes), anonymous clients, login
//! throttling, and the ACL on PUBLISH, SUBSCRIBE, retained and live deliveries
//! and wills.
//!
//! "Nothing arrives" is checked without waiting: after the message that must
//! not arrive, an allowed marker is published on the same connection, and a
//! publisher's messages are routed in order, so the subscriber's next message
//! must be the marker.
//!
//! The rule that decides anonymous access per listener address (loopback or
//! not) is unit-tested in `switchboard-auth` (`anonymous_allowed`) and, for
//! the refusal to start, in `switchboard-config`; a test cannot bind a public
//! address, so here the listener's rule is set with `allow_anonymous`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::*;
use switchboard_auth::{hash_password_with_cost, Auth, AuthOptions, Cost, ThrottleOptions};
use switchboard_broker::Metrics;
use switchboard_codec::{
    Ack, Connect, Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions, Will,
};
use switchboard_server::{Durability, ListenerKind, ListenerOptions, RunningServer, ServerOptions};
use tokio::io::{AsyncRead, AsyncWrite};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Argon2 is slow in unoptimised test builds; the smallest cost keeps the
/// tests quick without changing what is checked.
const CHEAP: Cost = Cost {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

const USERS: &[(&str, &str)] = &[
    ("admin", "admin-secret"),
    ("alice", "wonderland"),
    ("bob", "builder"),
];

const ACL: &str = "\
# anonymous clients get nothing

user admin
topic readwrite #

user alice
topic read sensors/#
topic deny sensors/secret/#
topic readwrite alice/#
topic readwrite public/#

user bob
topic read public/#

pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

const MARKER: &str = "public/marker";

/// A running server with a password file of [`USERS`], and `acl` if given.
struct Setup {
    server: RunningServer,
    auth: Arc<Auth>,
    dir: tempfile::TempDir,
}

fn password_file(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(user, password)| {
            format!(
                "{user}:{}\n",
                hash_password_with_cost(password.as_bytes(), CHEAP).unwrap()
            )
        })
        .collect()
}

async fn start_with(acl: Option<&str>, configure: impl FnOnce(&mut ServerOptions)) -> Setup {
    start_throttled(acl, ThrottleOptions::default(), configure).await
}

async fn start_throttled(
    acl: Option<&str>,
    throttle: ThrottleOptions,
    configure: impl FnOnce(&mut ServerOptions),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    std::fs::write(&passwords, password_file(USERS)).unwrap();
    let acl_file = acl.map(|text| {
        let path = dir.path().join("acl");
        std::fs::write(&path, text).unwrap();
        path
    });
    let auth = Arc::new(
        Auth::load(AuthOptions {
            password_file: Some(passwords),
            acl_file,
            throttle,
        })
        .unwrap(),
    );
    let mut options = support::options();
    options.auth = auth.clone();
    configure(&mut options);
    Setup {
        server: start(options).await,
        auth,
        dir,
    }
}

async fn start_acl() -> Setup {
    start_with(Some(ACL), |_| {}).await
}

fn credentials(
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Connect {
    let mut connect = connect_packet(version, client_id, true);
    connect.username = user.map(str::to_owned);
    connect.password = password.map(|password| Bytes::copy_from_slice(password.as_bytes()));
    connect
}

/// Connects as `user` with the password from [`USERS`] and expects success.
async fn login(
    setup: &Setup,
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
) -> RawClient<tokio::net::TcpStream> {
    let password = USERS
        .iter()
        .find(|(name, _)| *name == user)
        .map(|(_, password)| *password);
    let mut client = RawClient::tcp(addr(&setup.server), version).await;
    let connack = client
        .connect(credentials(version, client_id, Some(user), password))
        .await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "login as {user}");
    client
}

/// CONNECT, then the CONNACK's reason code, and the connection must close
/// ([MQTT-3.2.2-7] v5, [MQTT-3.2.2-5] 3.1.1: a refusing CONNACK is followed by
/// the close).
async fn refused(setup: &Setup, connect: Connect) -> ReasonCode {
    let mut client = RawClient::tcp(addr(&setup.server), connect.protocol).await;
    let connack = client.connect(connect).await;
    assert!(!connack.session_present);
    assert_eq!(client.recv().await, None, "the connection must close");
    connack.reason_code
}

fn counter(setup: &Setup, pick: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
    Metrics::get(pick(setup.server.broker().metrics()))
}

async fn publish_qos1<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    topic: &str,
    packet_id: u16,
    payload: &'static [u8],
    retain: bool,
) -> Ack {
    let mut message = publish(topic, QoS::AtLeastOnce, Some(packet_id), payload);
    message.retain = retain;
    client.send(message).await;
    let ack = client.expect_puback().await;
    assert_eq!(ack.packet_id, packet_id);
    ack
}

// ---------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_right_password_connects_in_both_versions() {
    let setup = start_with(None, |_| {}).await;
    for version in [V4, V5] {
        login(&setup, version, "alice-client", "alice").await;
    }
    assert_eq!(counter(&setup, |m| &m.auth_failures), 0);
}

#[tokio::test]
async fn a_wrong_password_gets_0x86_or_return_code_4() {
    let setup = start_with(None, |_| {}).await;
    let code = refused(
        &setup,
        credentials(V5, "c", Some("alice"), Some("not-wonderland")),
    )
    .await;
    assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // 3.1.1: the CONNACK bytes themselves, return code 4 (3.2.2.3).
    let mut client = RawClient::tcp(addr(&setup.server), V4).await;
    client
        .send(Packet::Connect(Box::new(credentials(
            V4,
            "c",
            Some("alice"),
            Some("wrong"),
        ))))
        .await;
    assert_eq!(client.recv_raw(4).await, vec![0x20, 0x02, 0x00, 0x04]);
    assert_eq!(client.recv().await, None);
    assert_eq!(counter(&setup, |m| &m.auth_failures), 2);
}

#[tokio::test]
async fn an_unknown_user_or_a_missing_password_gets_0x86() {
    let setup = start_with(None, |_| {}).await;
    for connect in [
        credentials(V5, "c", Some("mallory"), Some("wonderland")),
        credentials(V5, "c", Some("alice"), None),
        credentials(V4, "c", Some("alice"), None),
        credentials(V4, "c", Some("Alice"), Some("wonderland")),
    ] {
        assert_eq!(
            refused(&setup, connect).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD
        );
    }
}

#[tokio::test]
async fn anonymous_clients_are_refused_where_not_allowed_with_0x87_or_return_code_5() {
    let setup = start_with(None, |options| options.allow_anonymous = Some(false)).await;
    assert_eq!(
        refused(&setup, credentials(V5, "anon", None, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // A v5 password without a user name identifies nobody.
    assert_eq!(
        refused(&setup, credentials(V5, "anon", None, Some("wonderland"))).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let mut client = RawClient::tcp(addr(&setup.server), V4).await;
    client
        .send(Packet::Connect(Box::new(credentials(
            V4, "anon", None, None,
        ))))
        .await;
    assert_eq!(client.recv_raw(4).await, vec![0x20, 0x02, 0x00, 0x05]);
    assert_eq!(client.recv().await, None);
    // Users with a password still get in.
    login(&setup, V4, "alice-client", "alice").await;
    assert_eq!(counter(&setup, |m| &m.auth_failures), 3);
}

#[tokio::test]
async fn anonymous_clients_are_allowed_on_a_loopback_listener_by_default() {
    // The test listener is 127.0.0.1: with `allow_anonymous` unset, a client
    // without a user name connects even though a password file is set.
    let setup = start_with(None, |_| {}).await;
    assert_eq!(setup.server.local_addrs()[0].ip().to_string(), "127.0.0.1");
    let mut client = RawClient::tcp(addr(&setup.server), V5).await;
    let connack = client.connect(credentials(V5, "anon", None, None)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn a_listener_allow_anonymous_overrides_the_loopback_default() {
    // Two loopback listeners: the first refuses anonymous clients on its own
    // setting, the second keeps the loopback default (allowed).
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let setup = start_with(None, |options| {
        options.listeners = vec![
            ListenerOptions {
                allow_anonymous: Some(false),
                ..listener("closed", ListenerKind::Tcp, loopback)
            },
            listener("open", ListenerKind::Tcp, loopback),
        ];
    })
    .await;
    let (closed, open) = (setup.server.local_addrs()[0], setup.server.local_addrs()[1]);

    let mut client = RawClient::tcp(closed, V5).await;
    let connack = client.connect(credentials(V5, "anon", None, None)).await;
    assert_eq!(connack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(client.recv().await, None, "the connection must close");
    let mut client = RawClient::tcp(closed, V4).await;
    client
        .send(Packet::Connect(Box::new(credentials(
            V4, "anon", None, None,
        ))))
        .await;
    assert_eq!(client.recv_raw(4).await, vec![0x20, 0x02, 0x00, 0x05]);
    assert_eq!(client.recv().await, None);

    let mut client = RawClient::tcp(open, V5).await;
    let connack = client.connect(credentials(V5, "anon", None, None)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(counter(&setup, |m| &m.auth_failures), 2);

    // Each listener counted its own sockets.
    let listeners = setup.server.broker().metrics().listeners.snapshot();
    let names: Vec<&str> = listeners.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["closed", "open"]);
    assert_eq!(Metrics::get(&listeners[0].1.connections_total), 2);
    assert_eq!(Metrics::get(&listeners[1].1.connections_total), 1);
    assert_eq!(Metrics::get(&listeners[1].1.connections_current), 1);
}

#[tokio::test]
async fn a_listener_allow_anonymous_overrides_the_global_setting() {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let setup = start_with(None, |options| {
        options.allow_anonymous = Some(false);
        options.listeners = vec![ListenerOptions {
            allow_anonymous: Some(true),
            ..listener("open", ListenerKind::Tcp, loopback)
        }];
    })
    .await;
    let mut client = RawClient::tcp(addr(&setup.server), V5).await;
    let connack = client.connect(credentials(V5, "anon", None, None)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled() {
    let delay = Duration::from_millis(200);
    let throttle = ThrottleOptions {
        max_failures: 2,
        delay,
        max_delay: delay * 4,
        ..ThrottleOptions::default()
    };
    let setup = start_throttled(None, throttle, |_| {}).await;
    let wrong = || credentials(V5, "guesser", Some("alice"), Some("guess"));
    for _ in 0..2 {
        assert_eq!(
            refused(&setup, wrong()).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD
        );
    }
    assert_eq!(counter(&setup, |m| &m.auth_throttled), 0);
    // The third attempt from this address waits before it is even checked,
    // and even the right password waits.
    let started = std::time::Instant::now();
    assert_eq!(
        refused(&setup, wrong()).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    let started = std::time::Instant::now();
    login(&setup, V5, "alice-client", "alice").await;
    assert!(started.elapsed() >= delay * 2, "{:?}", started.elapsed());
    assert_eq!(counter(&setup, |m| &m.auth_throttled), 2);
    assert_eq!(counter(&setup, |m| &m.auth_failures), 3);
}

#[tokio::test]
async fn a_will_needs_the_right_to_publish_on_its_topic() {
    let setup = start_acl().await;
    let will = |topic: &str| Will {
        topic: topic.to_string(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    for version in [V4, V5] {
        let mut connect = credentials(version, "c", Some("alice"), Some("wonderland"));
        connect.will = Some(will("sensors/alice-status"));
        assert_eq!(refused(&setup, connect).await, ReasonCode::NOT_AUTHORIZED);
        let mut connect = credentials(version, "c", Some("alice"), Some("wonderland"));
        connect.will = Some(will("alice/status"));
        let mut client = RawClient::tcp(addr(&setup.server), version).await;
        assert_eq!(
            client.connect(connect).await.reason_code,
            ReasonCode::SUCCESS
        );
    }
}

#[tokio::test]
async fn another_user_does_not_inherit_a_session() {
    let setup = start_acl().await;
    let persistent = |user: &str, password: &str, clean_start: bool| {
        let mut connect = credentials(V4, "shared-id", Some(user), Some(password));
        connect.clean_start = clean_start;
        connect
    };
    let mut alice = RawClient::tcp(addr(&setup.server), V4).await;
    let connack = alice
        .connect(persistent("alice", "wonderland", false))
        .await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    alice
        .subscribe_granted(1, "public/#", QoS::AtLeastOnce)
        .await;
    drop(alice);
    wait_until(|| session_connected(&setup.server, "shared-id") == Some(false)).await;

    // bob uses alice's client id without clean start: he gets a new session.
    let mut bob = RawClient::tcp(addr(&setup.server), V4).await;
    let connack = bob.connect(persistent("bob", "builder", false)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    drop(bob);
    wait_until(|| session_connected(&setup.server, "shared-id") == Some(false)).await;
    // ... and bob's own session does resume for bob.
    let mut bob = RawClient::tcp(addr(&setup.server), V4).await;
    let connack = bob.connect(persistent("bob", "builder", false)).await;
    assert!(connack.session_present);
}

#[tokio::test]
async fn another_user_does_not_inherit_a_session_after_a_restart() {
    // The owner is on disk with the session (`Record::SessionOwner`): a restart
    // must not hand a session to the first client that names its client id.
    let data = tempfile::tempdir().unwrap();
    let durable = |options: &mut ServerOptions| {
        options.durability = Durability::Sync {
            data_dir: data.path().to_path_buf(),
        };
    };
    let setup = start_with(Some(ACL), durable).await;
    let persistent = |client_id: &str, user: &str, password: &str| {
        let mut connect = credentials(V4, client_id, Some(user), Some(password));
        connect.clean_start = false;
        connect
    };
    for client_id in ["shared-id", "alice-own"] {
        let mut alice = RawClient::tcp(addr(&setup.server), V4).await;
        let connack = alice
            .connect(persistent(client_id, "alice", "wonderland"))
            .await;
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
        alice
            .subscribe_granted(1, "public/#", QoS::AtLeastOnce)
            .await;
        drop(alice);
        wait_until(|| session_connected(&setup.server, client_id) == Some(false)).await;
    }
    setup.server.shutdown().await;
    let mut options = support::options();
    options.auth = setup.auth.clone();
    durable(&mut options);
    let server = start(options).await;

    // bob names alice's client id: a new session, not hers.
    let mut bob = RawClient::tcp(addr(&server), V4).await;
    let connack = bob.connect(persistent("shared-id", "bob", "builder")).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    drop(bob);
    // alice's other session comes back for alice.
    let mut alice = RawClient::tcp(addr(&server), V4).await;
    let connack = alice
        .connect(persistent("alice-own", "alice", "wonderland"))
        .await;
    assert!(connack.session_present);
    drop(alice);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_v5_publish_not_authorized_gets_0x87_and_is_dropped() {
    let setup = start_acl().await;
    let mut watcher = login(&setup, V5, "watcher", "admin").await;
    watcher.subscribe_granted(1, "#", QoS::AtLeastOnce).await;
    let mut bob = login(&setup, V5, "bob-client", "bob").await;

    // bob may only read public/#.
    let ack = publish_qos1(&mut bob, "public/news", 1, b"no", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    bob.send(publish("public/news", QoS::ExactlyOnce, Some(2), b"no"))
        .await;
    let rec = bob.expect_pubrec().await;
    assert_eq!(
        (rec.packet_id, rec.reason_code),
        (2, ReasonCode::NOT_AUTHORIZED)
    );
    bob.send(publish("public/news", QoS::AtMostOnce, None, b"no"))
        .await;
    // A PUBREC with a failure code ends the QoS 2 flow: the id is free again.
    let ack = publish_qos1(&mut bob, "public/news", 2, b"no", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);

    let mut admin = login(&setup, V5, "admin-client", "admin").await;
    publish_qos1(&mut admin, MARKER, 1, b"marker", false).await;
    let first = watcher.expect_publish().await;
    assert_eq!(first.topic, MARKER, "the refused messages were not routed");
    assert_eq!(counter(&setup, |m| &m.publish_not_authorized), 4);
}

#[tokio::test]
async fn a_v311_publish_not_authorized_is_acknowledged_and_dropped() {
    // [MQTT-3.3.5-2]: 3.1.1 cannot tell the client; the server must either
    // acknowledge positively or close. Switchboard acknowledges (as Mosquitto
    // does), so the client does not resend it forever.
    let setup = start_acl().await;
    let mut watcher = login(&setup, V5, "watcher", "admin").await;
    watcher.subscribe_granted(1, "#", QoS::AtLeastOnce).await;
    let mut bob = login(&setup, V4, "bob-client", "bob").await;
    let ack = publish_qos1(&mut bob, "public/news", 1, b"no", false).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    bob.send(publish("public/news", QoS::ExactlyOnce, Some(2), b"no"))
        .await;
    assert_eq!(bob.expect_pubrec().await.packet_id, 2);
    bob.send(Packet::PubRel(Ack::new(2))).await;
    assert_eq!(bob.expect_pubcomp().await.packet_id, 2);
    bob.send(publish("public/news", QoS::AtMostOnce, None, b"no"))
        .await;
    // Still connected, and nothing was routed.
    let mut admin = login(&setup, V4, "admin-client", "admin").await;
    publish_qos1(&mut admin, MARKER, 1, b"marker", false).await;
    assert_eq!(watcher.expect_publish().await.topic, MARKER);
    bob.send(Packet::PingReq).await;
    assert_eq!(bob.expect().await, Packet::PingResp);
    assert_eq!(counter(&setup, |m| &m.publish_not_authorized), 3);
}

#[tokio::test]
async fn a_refused_retained_publish_is_not_stored() {
    let setup = start_acl().await;
    let mut bob = login(&setup, V5, "bob-client", "bob").await;
    let ack = publish_qos1(&mut bob, "public/state", 1, b"no", true).await;
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(setup.server.broker().retained_count(), 0);
    let mut alice = login(&setup, V5, "alice-client", "alice").await;
    let ack = publish_qos1(&mut alice, "public/state", 1, b"yes", true).await;
    assert!(!ack.reason_code.is_error());
    assert_eq!(setup.server.broker().retained_count(), 1);
}

#[tokio::test]
async fn patterns_substitute_the_client_id_and_the_user_name() {
    let setup = start_acl().await;
    let mut device = login(&setup, V5, "dev-7", "bob").await;
    let ack = publish_qos1(&mut device, "devices/dev-7/state", 1, b"on", false).await;
    assert!(!ack.reason_code.is_error(), "{ack:?}");
    let ack = publish_qos1(&mut device, "devices/dev-8/state", 2, b"on", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    device
        .send(subscribe(3, "inbox/bob/#", QoS::AtMostOnce))
        .await;
    assert_eq!(
        device.expect_suback().await.reason_codes,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    device
        .send(subscribe(4, "inbox/alice/#", QoS::AtMostOnce))
        .await;
    assert_eq!(
        device.expect_suback().await.reason_codes,
        vec![ReasonCode::NOT_AUTHORIZED]
    );
}

// ---------------------------------------------------------------------------
// SUBSCRIBE and deliveries
// ---------------------------------------------------------------------------

fn many(packet_id: u16, filters: &[&str]) -> Subscribe {
    Subscribe {
        packet_id,
        filters: filters
            .iter()
            .map(|filter| {
                (
                    filter.to_string(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect(),
        ..Subscribe::default()
    }
}

#[tokio::test]
async fn subscriptions_not_authorized_get_0x87_or_0x80_in_place() {
    let setup = start_acl().await;
    let filters = [
        "sensors/#",          // read sensors/#
        "#",                  // not covered by any read rule
        "sensors/secret/#",   // covered by a deny
        "a/#/b",              // not a valid filter: the broker's 0x8F
        "public/+/x",         // covered by readwrite public/#
        "$share/g/sensors/+", // shared: checked without the prefix
        "$share/g/other",
    ];
    let mut alice = login(&setup, V5, "alice-client", "alice").await;
    alice.send(many(1, &filters)).await;
    let suback = alice.expect_suback().await;
    assert_eq!(
        suback.reason_codes,
        vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
        ]
    );
    // 3.1.1 has one failure code, 0x80 (3.9.3).
    let mut alice = login(&setup, V4, "alice-v4", "alice").await;
    alice.send(many(1, &["sensors/+", "#"])).await;
    let raw = alice.recv_raw(6).await;
    assert_eq!(raw, vec![0x90, 0x04, 0x00, 0x01, 0x01, 0x80]);
    // A refused filter is not subscribed: nothing is routed to it.
    assert_eq!(setup.server.broker().subscription_count(), 4);
}

#[tokio::test]
async fn retained_and_live_messages_follow_the_read_rules() {
    let setup = start_acl().await;
    let mut admin = login(&setup, V5, "admin-client", "admin").await;
    publish_qos1(&mut admin, "sensors/kitchen", 1, b"21", true).await;
    publish_qos1(&mut admin, "sensors/secret/vault", 2, b"closed", true).await;
    publish_qos1(&mut admin, "sensors/secret", 3, b"edge", true).await;

    // alice may read sensors/# but not sensors/secret/#: the subscription is
    // allowed (the deny covers only part of it) and the secret retained
    // messages are withheld, `sensors/secret` included (`#` also matches the
    // parent level).
    let mut alice = login(&setup, V5, "alice-client", "alice").await;
    alice.send(many(1, &["sensors/#", "public/#"])).await;
    let mut topics = Vec::new();
    let mut subscribed = false;
    while !subscribed || topics.last().map(String::as_str) != Some(MARKER) {
        match alice.expect().await {
            Packet::SubAck(suback) => {
                assert_eq!(
                    suback.reason_codes,
                    vec![ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_1]
                );
                subscribed = true;
                // Retained messages are queued before the SUBACK is written.
                publish_qos1(&mut admin, MARKER, 4, b"marker", false).await;
            }
            Packet::Publish(message) => {
                if let Some(packet_id) = message.packet_id {
                    alice.send(Packet::PubAck(Ack::new(packet_id))).await;
                }
                topics.push(message.topic);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(topics, vec!["sensors/kitchen", MARKER]);

    // Live deliveries follow the same rule.
    publish_qos1(&mut admin, "sensors/secret/vault", 5, b"open", false).await;
    publish_qos1(&mut admin, "sensors/hall", 6, b"19", false).await;
    let message = alice.expect_publish().await;
    assert_eq!(message.topic, "sensors/hall");
    assert!(counter(&setup, |m| &m.dropped_not_authorized) >= 3);
}

#[tokio::test]
async fn a_reload_replaces_passwords_and_rules() {
    let setup = start_acl().await;
    let mut bob = login(&setup, V5, "bob-client", "bob").await;
    bob.send(many(1, &["sensors/#"])).await;
    assert_eq!(
        bob.expect_suback().await.reason_codes,
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    // New files: bob has a new password and may read sensors/#.
    std::fs::write(
        setup.dir.path().join("passwd"),
        password_file(&[("bob", "new-builder")]),
    )
    .unwrap();
    std::fs::write(
        setup.dir.path().join("acl"),
        format!("{ACL}\nuser bob\ntopic read sensors/#\n"),
    )
    .unwrap();
    setup.auth.reload().unwrap();
    // The open connection keeps its login; its next SUBSCRIBE sees the new rules.
    bob.send(many(2, &["sensors/#"])).await;
    assert_eq!(
        bob.expect_suback().await.reason_codes,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        refused(&setup, credentials(V5, "c", Some("bob"), Some("builder"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let mut client = RawClient::tcp(addr(&setup.server), V5).await;
    let connack = client
        .connect(credentials(V5, "c", Some("bob"), Some("new-builder")))
        .await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);

    // A broken file is refused and the rules in force stay.
    std::fs::write(setup.dir.path().join("acl"), "user bob\ntopic read a/#/b\n").unwrap();
    assert!(setup.auth.reload().is_err());
    bob.send(many(3, &["sensors/#"])).await;
    assert_eq!(
        bob.expect_suback().await.reason_codes,
        vec![ReasonCode::GRANTED_QOS_1]
    );
}

// ---------------------------------------------------------------------------
// Per-listener password files and ACLs
// ---------------------------------------------------------------------------

/// The second listener's users: `carol`, and an `alice` who is not the
/// first listener's alice (another password).
const PARTNER_USERS: &[(&str, &str)] = &[("carol", "carol-secret"), ("alice", "partner-alice")];

const PARTNER_ACL: &str = "\
user carol
topic readwrite partner/#
topic deny partner/private/#

user alice
topic read partner/#
";

/// [`start_acl`]'s server on listener `main`, plus a listener `partner` with
/// its own password file of [`PARTNER_USERS`], its own ACL
/// ([`PARTNER_ACL`]), and no anonymous clients.
async fn start_two_realms() -> (Setup, std::net::SocketAddr, Arc<Auth>) {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("partner-passwd");
    std::fs::write(&passwords, password_file(PARTNER_USERS)).unwrap();
    let acl = dir.path().join("partner-acl");
    std::fs::write(&acl, PARTNER_ACL).unwrap();
    let partner = Arc::new(
        Auth::load(AuthOptions {
            password_file: Some(passwords),
            acl_file: Some(acl),
            throttle: ThrottleOptions::default(),
        })
        .unwrap(),
    );
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let partner_auth = partner.clone();
    let setup = start_with(Some(ACL), move |options| {
        options.listeners = vec![
            listener("main", ListenerKind::Tcp, loopback),
            ListenerOptions {
                auth: Some(partner_auth),
                allow_anonymous: Some(false),
                ..listener("partner", ListenerKind::Tcp, loopback)
            },
        ];
    })
    .await;
    // Keep the partner files alive as long as the server (for reloads).
    std::mem::forget(dir);
    let partner_address = setup.server.local_addrs()[1];
    (setup, partner_address, partner)
}

/// A v5 PUBACK code that says the message was accepted.
fn accepted(code: ReasonCode) -> bool {
    code == ReasonCode::SUCCESS || code == ReasonCode::NO_MATCHING_SUBSCRIBERS
}

/// CONNECT on `address`; the CONNACK's code, and the connection must close.
async fn refused_at(address: std::net::SocketAddr, connect: Connect) -> ReasonCode {
    let mut client = RawClient::tcp(address, connect.protocol).await;
    let connack = client.connect(connect).await;
    assert_eq!(client.recv().await, None, "the connection must close");
    connack.reason_code
}

/// A 3.1.1 CONNECT on `address`: the raw CONNACK return code, then the close.
async fn v311_return_code(address: std::net::SocketAddr, connect: Connect) -> u8 {
    let mut client = RawClient::tcp(address, V4).await;
    client.send(Packet::Connect(Box::new(connect))).await;
    let connack = client.recv_raw(4).await;
    assert_eq!(connack[..3], [0x20, 0x02, 0x00]);
    assert_eq!(client.recv().await, None);
    connack[3]
}

async fn login_at(
    address: std::net::SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
    password: &str,
) -> RawClient<tokio::net::TcpStream> {
    let mut client = RawClient::tcp(address, version).await;
    let connack = client
        .connect(credentials(version, client_id, Some(user), Some(password)))
        .await;
    assert_eq!(
        connack.reason_code,
        ReasonCode::SUCCESS,
        "{user} on {address}"
    );
    client
}

#[tokio::test]
async fn each_listener_checks_its_own_password_file() {
    let (setup, partner, _) = start_two_realms().await;
    let main = setup.server.local_addrs()[0];

    // Each listener's own users get in.
    login_at(main, V5, "a", "alice", "wonderland").await;
    login_at(partner, V5, "c", "carol", "carol-secret").await;
    login_at(partner, V4, "pa", "alice", "partner-alice").await;

    // A user of the other listener's file is unknown: v5 0x86, 3.1.1 code 4.
    assert_eq!(
        refused_at(
            main,
            credentials(V5, "c", Some("carol"), Some("carol-secret"))
        )
        .await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        v311_return_code(
            main,
            credentials(V4, "c", Some("carol"), Some("carol-secret"))
        )
        .await,
        4
    );
    assert_eq!(
        refused_at(partner, credentials(V5, "b", Some("bob"), Some("builder"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // The same name with the other listener's password: 0x86 / 4 again.
    assert_eq!(
        refused_at(
            partner,
            credentials(V5, "a", Some("alice"), Some("wonderland"))
        )
        .await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        v311_return_code(
            partner,
            credentials(V4, "a", Some("alice"), Some("wonderland"))
        )
        .await,
        4
    );
    // No user name where this listener wants one: v5 0x87, 3.1.1 code 5
    // (the main listener, loopback by default, takes anonymous clients).
    assert_eq!(
        refused_at(partner, credentials(V5, "anon", None, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        v311_return_code(partner, credentials(V4, "anon", None, None)).await,
        5
    );
    let mut anonymous = RawClient::tcp(main, V5).await;
    let connack = anonymous.connect(credentials(V5, "anon", None, None)).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(counter(&setup, |m| &m.auth_failures), 7);
}

#[tokio::test]
async fn a_listener_acl_decides_for_its_own_clients() {
    let (setup, partner, _) = start_two_realms().await;
    let main = setup.server.local_addrs()[0];
    let mut admin = login_at(main, V5, "admin-client", "admin", "admin-secret").await;
    let mut carol = login_at(partner, V5, "carol-client", "carol", "carol-secret").await;

    // carol's rights come from the partner ACL: partner/# yes, public/# no
    // (the main ACL would say the opposite for any user but admin).
    assert_eq!(
        publish_qos1(&mut carol, "public/news", 1, b"x", false)
            .await
            .reason_code,
        ReasonCode::NOT_AUTHORIZED
    );
    assert!(accepted(
        publish_qos1(&mut carol, "partner/board", 2, b"x", false)
            .await
            .reason_code
    ));
    carol.send(many(3, &["partner/#", "public/#"])).await;
    assert_eq!(
        carol.expect_suback().await.reason_codes,
        vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED]
    );

    // Deliveries to carol are checked against the partner ACL too: the
    // private topic is withheld, the next one arrives.
    publish_qos1(&mut admin, "partner/private/plan", 1, b"no", false).await;
    publish_qos1(&mut admin, "partner/feed", 2, b"yes", false).await;
    let message = carol.expect_publish().await;
    assert_eq!(message.topic, "partner/feed");
    assert!(counter(&setup, |m| &m.dropped_not_authorized) >= 1);

    // The main listener's alice still follows the main ACL (alice/# is hers
    // there; the partner ACL gives its own alice only read on partner/#).
    let mut alice = login_at(main, V5, "alice-client", "alice", "wonderland").await;
    assert!(accepted(
        publish_qos1(&mut alice, "alice/diary", 1, b"x", false)
            .await
            .reason_code
    ));
    let mut partner_alice = login_at(partner, V5, "p-alice", "alice", "partner-alice").await;
    assert_eq!(
        publish_qos1(&mut partner_alice, "alice/diary", 1, b"x", false)
            .await
            .reason_code,
        ReasonCode::NOT_AUTHORIZED
    );
}

#[tokio::test]
async fn a_session_is_not_resumed_by_the_same_name_from_another_listener() {
    let (setup, partner, _) = start_two_realms().await;
    let main = setup.server.local_addrs()[0];
    let persistent = |user: &str, password: &str| {
        let mut connect = credentials(V4, "shared-id", Some(user), Some(password));
        connect.clean_start = false;
        connect
    };
    let mut alice = RawClient::tcp(main, V4).await;
    let connack = alice.connect(persistent("alice", "wonderland")).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    alice
        .subscribe_granted(1, "public/#", QoS::AtLeastOnce)
        .await;
    drop(alice);
    wait_until(|| session_connected(&setup.server, "shared-id") == Some(false)).await;

    // The partner listener's alice is another user: a new session.
    let mut other = RawClient::tcp(partner, V4).await;
    let connack = other.connect(persistent("alice", "partner-alice")).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    drop(other);
    wait_until(|| session_connected(&setup.server, "shared-id") == Some(false)).await;
    // ... whose own session resumes on its own listener.
    let mut other = RawClient::tcp(partner, V4).await;
    let connack = other.connect(persistent("alice", "partner-alice")).await;
    assert!(connack.session_present);
}

#[tokio::test]
async fn a_reload_replaces_a_listeners_own_files() {
    let (setup, partner, partner_auth) = start_two_realms().await;
    let files = partner_auth.options().clone();
    // carol's password changes and she may now write public/#.
    std::fs::write(
        files.password_file.as_ref().unwrap(),
        password_file(&[("carol", "new-secret")]),
    )
    .unwrap();
    std::fs::write(
        files.acl_file.as_ref().unwrap(),
        "user carol\ntopic readwrite public/#\n",
    )
    .unwrap();
    partner_auth.reload().unwrap();
    assert_eq!(
        refused_at(
            partner,
            credentials(V5, "c", Some("carol"), Some("carol-secret"))
        )
        .await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let mut carol = login_at(partner, V5, "c", "carol", "new-secret").await;
    assert!(accepted(
        publish_qos1(&mut carol, "public/news", 1, b"x", false)
            .await
            .reason_code
    ));
    // The main listener's files were not touched.
    login_at(
        setup.server.local_addrs()[0],
        V5,
        "a",
        "alice",
        "wonderland",
    )
    .await;
}
