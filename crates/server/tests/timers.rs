//! Keep alive, wills (and their delay), and session expiry, on paused time over
//! in-memory connections: tokio's clock only moves when every task is idle, so
//! each deadline is hit exactly and the tests take no real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;
use switchboard_codec::{
    Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will, WillProperties,
};
use switchboard_server::RunningServer;
use tokio::io::DuplexStream;
use tokio::time::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

type Client = RawClient<DuplexStream>;

async fn connect_with(server: &RunningServer, connect: Connect) -> (Client, bool) {
    let mut client = raw_in_memory(server, connect.protocol);
    let ack = client.connect(connect).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    (client, ack.session_present)
}

fn with_keep_alive(version: ProtocolVersion, client_id: &str, keep_alive: u16) -> Connect {
    let mut connect = connect_packet(version, client_id, true);
    connect.keep_alive = keep_alive;
    connect
}

fn will(topic: &str, payload: &'static [u8]) -> Will {
    Will {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    }
}

/// A CONNECT carrying a will, keep alive off, and for v5 the given session expiry and
/// will delay.
fn with_will(
    version: ProtocolVersion,
    client_id: &str,
    session_expiry: u32,
    will_delay: Option<u32>,
) -> Connect {
    let mut connect = connect_packet(version, client_id, true);
    connect.keep_alive = 0;
    let mut the_will = will("will/topic", b"gone");
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(session_expiry);
        the_will.properties.will_delay_interval = will_delay;
    } else {
        connect.clean_start = session_expiry == 0;
    }
    connect.will = Some(the_will);
    connect
}

/// A v5 client subscribed to `filter` at QoS 1, keep alive off.
async fn watcher(server: &RunningServer, filter: &str) -> Client {
    let mut connect = connect_packet(V5, &format!("watcher-{filter}"), true);
    connect.keep_alive = 0;
    let (mut client, _) = connect_with(server, connect).await;
    client.subscribe_granted(1, filter, QoS::AtLeastOnce).await;
    client
}

/// Nothing arrives at `client` within `wait` of (paused) time.
async fn assert_silent(client: &mut Client, wait: Duration) {
    let got = client.recv_within(wait).await;
    assert_eq!(got, None, "expected nothing within {wait:?}");
}

async fn disconnect(client: &mut Client, disconnect: Disconnect) {
    client.send(Packet::Disconnect(disconnect)).await;
    assert_eq!(
        client.recv().await,
        None,
        "the server closes after DISCONNECT"
    );
}

// v5 [MQTT-3.1.2-22] / 3.1.1 [MQTT-3.1.2-24]: with Keep Alive 2 s and nothing received,
// the server closes after 1.5 x 2 = 3 s, as if the network had failed (v5: DISCONNECT
// 0x8D first), and not before: still open at 2.9 s.
#[tokio::test(start_paused = true)]
async fn keep_alive_enforced_at_one_and_a_half_times() {
    let server = start(options()).await;
    for version in [V5, V311] {
        let (mut client, _) = connect_with(&server, with_keep_alive(version, "silent", 2)).await;
        let connected_at = Instant::now();
        assert_silent(&mut client, Duration::from_millis(2900)).await;
        assert_eq!(connected_at.elapsed(), Duration::from_millis(2900));
        client
            .expect_closed_with(ReasonCode::KEEP_ALIVE_TIMEOUT)
            .await;
        assert_eq!(
            connected_at.elapsed(),
            Duration::from_secs(3),
            "{version:?}"
        );
    }
    assert_eq!(
        server
            .broker()
            .metrics()
            .keep_alive_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    server.shutdown().await;
}

// Any packet resets the keep-alive timer, not only PINGREQ ([MQTT-3.1.2-22] counts from the
// last packet received); [MQTT-3.12.4-1] PINGREQ is answered with PINGRESP.
#[tokio::test(start_paused = true)]
async fn keep_alive_counts_from_the_last_packet() {
    let server = start(options()).await;
    let (mut client, _) = connect_with(&server, with_keep_alive(V5, "talker", 2)).await;
    let started = Instant::now();
    tokio::time::advance(Duration::from_millis(2500)).await;
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    tokio::time::advance(Duration::from_millis(2500)).await;
    client
        .send(publish("talk", QoS::AtMostOnce, None, b"x"))
        .await;
    assert_silent(&mut client, Duration::from_millis(2900)).await;
    client
        .expect_closed_with(ReasonCode::KEEP_ALIVE_TIMEOUT)
        .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(8),
        "3 s after the PUBLISH at 5 s"
    );
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-22] / 3.1.1 [MQTT-3.1.2-24] count whole control packets: bytes of a packet
// that never completes do not keep the connection alive (else one byte a second holds a
// connection open for ever).
#[tokio::test(start_paused = true)]
async fn keep_alive_needs_whole_packets() {
    let server = start(options()).await;
    for version in [V5, V311] {
        let (mut client, _) = connect_with(&server, with_keep_alive(version, "dribbler", 2)).await;
        let connected_at = Instant::now();
        // A PUBLISH of 16 bytes, sent one byte a second.
        for byte in [0x30u8, 0x0E, 0x00, 0x01, b'd'] {
            tokio::time::advance(Duration::from_secs(1)).await;
            if connected_at.elapsed() >= Duration::from_secs(3) {
                break;
            }
            client.send_bytes(&[byte]).await;
        }
        client
            .expect_closed_with(ReasonCode::KEEP_ALIVE_TIMEOUT)
            .await;
        assert_eq!(
            connected_at.elapsed(),
            Duration::from_secs(3),
            "{version:?}"
        );
    }
    server.shutdown().await;
}

// Keep Alive 0 turns the mechanism off: an idle connection stays open.
#[tokio::test(start_paused = true)]
async fn keep_alive_zero_never_times_out() {
    let server = start(options()).await;
    let (mut client, _) = connect_with(&server, with_keep_alive(V311, "forever", 0)).await;
    assert_silent(&mut client, Duration::from_secs(3600)).await;
    client.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    server.shutdown().await;
}

// v5 3.2.2.3.14: the server's cap on keep alive is told as Server Keep Alive and then
// applied ([MQTT-3.2.2-21] binds the client to use it; the server enforces it):
// client asks 60 s, server says 2 s, silent client closed after 3 s.
#[tokio::test(start_paused = true)]
async fn server_keep_alive_is_enforced() {
    let mut options = options();
    options.broker.max_keep_alive = 2;
    let server = start(options).await;
    let mut client = raw_in_memory(&server, V5);
    let ack = client.connect(with_keep_alive(V5, "capped", 60)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(2));
    let connected_at = Instant::now();
    assert_silent(&mut client, Duration::from_millis(2900)).await;
    client
        .expect_closed_with(ReasonCode::KEEP_ALIVE_TIMEOUT)
        .await;
    assert_eq!(connected_at.elapsed(), Duration::from_secs(3));
    server.shutdown().await;
}

// Will on keep-alive timeout: v5 [MQTT-3.1.2-8] / 3.1.1 [MQTT-3.1.2-8]: the will is
// published when the connection closes without DISCONNECT 0x00; v5 [MQTT-3.1.2-7] it was
// stored at CONNECT.
#[tokio::test(start_paused = true)]
async fn will_published_on_keep_alive_timeout() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    for version in [V5, V311] {
        let mut connect = with_will(version, "ka-will", 0, None);
        connect.keep_alive = 2;
        let (mut client, _) = connect_with(&server, connect).await;
        let connected_at = Instant::now();
        let message = watch.expect_publish().await;
        assert_eq!(
            (message.topic.as_str(), &message.payload[..]),
            ("will/topic", &b"gone"[..])
        );
        assert_eq!(
            connected_at.elapsed(),
            Duration::from_secs(3),
            "{version:?}"
        );
        watch
            .send(Packet::PubAck(switchboard_codec::Ack::new(
                message.packet_id.unwrap(),
            )))
            .await;
        client
            .expect_closed_with(ReasonCode::KEEP_ALIVE_TIMEOUT)
            .await;
    }
    server.shutdown().await;
}

// Will on network loss (the client vanishes without DISCONNECT): v5 and 3.1.1 [MQTT-3.1.2-8];
// [MQTT-3.1.2-10] the will is then removed: it is published once only.
#[tokio::test(start_paused = true)]
async fn will_published_on_network_loss() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    for version in [V5, V311] {
        let (client, _) = connect_with(&server, with_will(version, "lost", 0, None)).await;
        drop(client);
        let message = watch.expect_publish().await;
        assert_eq!(&message.payload[..], b"gone", "{version:?}");
        watch
            .send(Packet::PubAck(switchboard_codec::Ack::new(
                message.packet_id.unwrap(),
            )))
            .await;
        assert_silent(&mut watch, Duration::from_secs(10)).await;
    }
    assert_eq!(
        server
            .broker()
            .metrics()
            .wills_published
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    server.shutdown().await;
}

// No will on DISCONNECT 0x00: v5 [MQTT-3.14.4-3] / [MQTT-3.1.2-10], 3.1.1 [MQTT-3.14.4-3]
// and [MQTT-3.1.2-10]; 3.1.1 [MQTT-3.1.2-12] and no will when none was given.
#[tokio::test(start_paused = true)]
async fn no_will_on_normal_disconnect() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    for version in [V5, V311] {
        let (mut client, _) = connect_with(&server, with_will(version, "polite", 0, None)).await;
        disconnect(&mut client, Disconnect::default()).await;
        // Without a will at all, nothing either.
        let (client, _) = connect_with(&server, with_keep_alive(version, "willless", 0)).await;
        drop(client);
    }
    assert_silent(&mut watch, Duration::from_secs(30)).await;
    assert_eq!(
        server
            .broker()
            .metrics()
            .wills_published
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}

// v5 DISCONNECT 0x04 (Disconnect with Will Message): the will is published.
#[tokio::test(start_paused = true)]
async fn will_published_on_disconnect_with_will_message() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    let (mut client, _) = connect_with(&server, with_will(V5, "with-will", 0, None)).await;
    disconnect(
        &mut client,
        Disconnect::with_reason(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE),
    )
    .await;
    assert_eq!(&watch.expect_publish().await.payload[..], b"gone");
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-15] / 3.1.1 [MQTT-3.1.2-17]: Will Retain 1 publishes a retained message;
// v5 [MQTT-3.1.2-14] / 3.1.1 [MQTT-3.1.2-16]: Will Retain 0 a non-retained one;
// v5 [MQTT-3.1.3-10] the will's user properties keep their order, and its other
// properties go out with it.
#[tokio::test(start_paused = true)]
async fn will_retain_and_properties() {
    let server = start(options()).await;
    for (version, retain) in [(V5, true), (V311, true), (V5, false), (V311, false)] {
        let topic = format!("wr/{version:?}/{retain}");
        let mut connect = with_will(version, "retainer", 0, None);
        let the_will = connect.will.as_mut().unwrap();
        the_will.topic = topic.clone();
        the_will.retain = retain;
        if version.is_v5() {
            the_will.properties.user_properties = vec![
                ("b".into(), "1".into()),
                ("a".into(), "2".into()),
                ("b".into(), "3".into()),
            ];
            the_will.properties.content_type = Some("text/plain".into());
            the_will.properties.response_topic = Some("wr/reply".into());
            the_will.properties.correlation_data = Some(Bytes::from_static(b"cd"));
            the_will.properties.payload_format_indicator = Some(1);
        }
        let (client, _) = connect_with(&server, connect).await;
        drop(client);
        wait_until(|| session_connected(&server, "retainer").is_none()).await;
        let retained = server.broker().retained_matching(&topic, 0);
        assert_eq!(
            retained.len(),
            usize::from(retain),
            "{version:?} retain {retain}"
        );
        // A new subscriber sees it as retained only if it was.
        let mut late = watcher(&server, &topic).await;
        if retain {
            let message = late.expect_publish().await;
            assert!(message.retain);
            assert_eq!(&message.payload[..], b"gone");
            if version.is_v5() {
                let p = &message.properties;
                let names: Vec<_> = p
                    .user_properties
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                assert_eq!(names, vec!["b=1", "a=2", "b=3"]);
                assert_eq!(p.content_type.as_deref(), Some("text/plain"));
                assert_eq!(p.response_topic.as_deref(), Some("wr/reply"));
                assert_eq!(p.correlation_data.as_deref(), Some(&b"cd"[..]));
                assert_eq!(p.payload_format_indicator, Some(1));
            }
        } else {
            assert_silent(&mut late, Duration::from_secs(1)).await;
        }
    }
    server.shutdown().await;
}

// v5 3.1.3.2.2 / [MQTT-3.1.2-8]: with a Will Delay Interval the will goes out once the delay
// has passed (timers are checked every second), not before.
#[tokio::test(start_paused = true)]
async fn will_delay_interval() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    let (client, _) = connect_with(&server, with_will(V5, "delayed", 100, Some(5))).await;
    drop(client);
    let lost_at = Instant::now();
    wait_until(|| session_connected(&server, "delayed") == Some(false)).await;
    assert_silent(&mut watch, Duration::from_millis(4900)).await;
    let message = watch.expect_publish().await;
    assert_eq!(&message.payload[..], b"gone");
    let waited = lost_at.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(6),
        "{waited:?}"
    );
    server.shutdown().await;
}

// v5 [MQTT-3.1.3-9]: a new connection to the session before the Will Delay Interval passes:
// the will is not sent, not then and not later.
#[tokio::test(start_paused = true)]
async fn will_delay_cancelled_by_reconnect() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    let (client, _) = connect_with(&server, with_will(V5, "comeback", 100, Some(5))).await;
    drop(client);
    wait_until(|| session_connected(&server, "comeback") == Some(false)).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut again = connect_packet(V5, "comeback", false);
    again.keep_alive = 0;
    again.properties.session_expiry_interval = Some(100);
    let (_client, present) = connect_with(&server, again).await;
    assert!(present);
    assert_silent(&mut watch, Duration::from_secs(30)).await;
    assert_eq!(
        server
            .broker()
            .metrics()
            .wills_published
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-8]: the will goes out when the delay passes OR the session ends, whichever
// comes first: delay 60 s, session expiry 3 s: published at about 3 s.
#[tokio::test(start_paused = true)]
async fn will_delay_cut_short_by_session_expiry() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    let (client, _) = connect_with(&server, with_will(V5, "short-session", 3, Some(60))).await;
    drop(client);
    let lost_at = Instant::now();
    let message = watch.expect_publish().await;
    assert_eq!(&message.payload[..], b"gone");
    let waited = lost_at.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_secs(4),
        "{waited:?}"
    );
    wait_until(|| session_connected(&server, "short-session").is_none()).await;
    server.shutdown().await;
}

// v5 [MQTT-3.1.4-3]: on takeover the old connection's will (no delay) is published, as for
// any close without DISCONNECT 0x00; with a will delay and the session resumed, the
// takeover is a new connection to the session and cancels it ([MQTT-3.1.3-9]).
#[tokio::test(start_paused = true)]
async fn will_on_takeover() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    let (mut first, _) = connect_with(&server, with_will(V5, "taken", 100, None)).await;
    let (_second, present) = connect_with(&server, with_will(V5, "taken", 100, None)).await;
    assert!(!present, "clean start 1");
    first
        .expect_closed_with(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    let message = watch.expect_publish().await;
    assert_eq!(&message.payload[..], b"gone");
    watch
        .send(Packet::PubAck(switchboard_codec::Ack::new(
            message.packet_id.unwrap(),
        )))
        .await;

    let (mut first, _) = connect_with(&server, with_will(V5, "taken-delay", 100, Some(5))).await;
    let mut resume = with_will(V5, "taken-delay", 100, Some(5));
    resume.clean_start = false;
    let (_second, present) = connect_with(&server, resume).await;
    assert!(present);
    first
        .expect_closed_with(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    assert_silent(&mut watch, Duration::from_secs(30)).await;
    server.shutdown().await;
}

// v5 [MQTT-3.1.2-23] the session is kept after the connection closes while its expiry runs
// (reconnect: session present 1, subscription and queued messages there); [MQTT-4.1.0-2]
// (v5) discarded once the interval has passed (reconnect: session present 0, nothing left).
#[tokio::test(start_paused = true)]
async fn session_expiry() {
    let server = start(options()).await;
    let persistent = |clean_start| {
        let mut connect = connect_packet(V5, "expiring", clean_start);
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(5);
        connect
    };
    let (mut client, present) = connect_with(&server, persistent(true)).await;
    assert!(!present);
    client.subscribe_granted(1, "exp/#", QoS::AtLeastOnce).await;
    disconnect(&mut client, Disconnect::default()).await;
    wait_until(|| session_connected(&server, "expiring") == Some(false)).await;

    // Kept before the interval: at 4 s, with what was queued meanwhile.
    let mut publisher = connected_in_memory(&server, V5, "exp-pub").await;
    publisher
        .send(publish("exp/a", QoS::AtLeastOnce, Some(1), b"queued"))
        .await;
    assert_eq!(
        publisher.expect_puback().await.reason_code,
        ReasonCode::SUCCESS
    );
    tokio::time::advance(Duration::from_secs(4)).await;
    let (mut client, present) = connect_with(&server, persistent(false)).await;
    assert!(present, "session kept before its expiry");
    assert_eq!(&client.expect_publish().await.payload[..], b"queued");
    client
        .send(Packet::PubAck(switchboard_codec::Ack::new(1)))
        .await;
    disconnect(&mut client, Disconnect::default()).await;
    wait_until(|| session_connected(&server, "expiring") == Some(false)).await;

    // Gone after it: the expiry restarts at each disconnect, so 4 s is still fine...
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(session_connected(&server, "expiring"), Some(false));
    // ...but not 6 s (the timer task checks every second).
    publisher
        .send(publish("exp/a", QoS::AtLeastOnce, Some(2), b"lost"))
        .await;
    publisher.expect_puback().await;
    assert_silent(&mut publisher, Duration::from_secs(2)).await;
    assert_eq!(
        session_connected(&server, "expiring"),
        None,
        "session ended"
    );
    let (mut client, present) = connect_with(&server, persistent(false)).await;
    assert!(!present, "session expired");
    assert_eq!(
        server
            .broker()
            .session("expiring")
            .unwrap()
            .info()
            .subscriptions
            .len(),
        0
    );
    assert_silent(&mut client, Duration::from_secs(1)).await;
    server.shutdown().await;
}

// v5 Session Expiry Interval 0 (or absent): the session ends with the connection;
// 3.1.1 clean session 1 likewise ([MQTT-3.1.2-6] 3.1.1), while clean session 0 lasts.
#[tokio::test(start_paused = true)]
async fn session_expiry_zero_ends_with_the_connection() {
    let server = start(options()).await;
    for (version, clean_start) in [(V5, false), (V311, true)] {
        let mut connect = connect_packet(version, "brief", clean_start);
        connect.keep_alive = 0;
        let (client, _) = connect_with(&server, connect.clone()).await;
        drop(client);
        wait_until(|| session_connected(&server, "brief").is_none()).await;
        connect.clean_start = false;
        let (client, present) = connect_with(&server, connect).await;
        assert!(!present, "{version:?}");
        drop(client);
        if version.is_v5() {
            wait_until(|| session_connected(&server, "brief").is_none()).await;
        }
    }
    let mut connect = connect_packet(V311, "lasting", false);
    connect.keep_alive = 0;
    let (client, _) = connect_with(&server, connect.clone()).await;
    drop(client);
    assert_silent(&mut watcher(&server, "x").await, Duration::from_secs(3600)).await;
    let (_client, present) = connect_with(&server, connect).await;
    assert!(
        present,
        "3.1.1 persistent session still there an hour later"
    );
    server.shutdown().await;
}

// v5 3.14.2.2.2: DISCONNECT may set a new Session Expiry Interval (CONNECT had a non-zero
// one): the new value applies.
#[tokio::test(start_paused = true)]
async fn session_expiry_changed_at_disconnect() {
    let server = start(options()).await;
    let mut connect = connect_packet(V5, "extend", true);
    connect.keep_alive = 0;
    connect.properties.session_expiry_interval = Some(2);
    let (mut client, _) = connect_with(&server, connect).await;
    disconnect(
        &mut client,
        Disconnect {
            session_expiry_interval: Some(60),
            ..Disconnect::default()
        },
    )
    .await;
    wait_until(|| session_connected(&server, "extend") == Some(false)).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        session_connected(&server, "extend"),
        Some(false),
        "kept past the first 2 s"
    );
    let mut watch = watcher(&server, "nothing").await;
    assert_silent(&mut watch, Duration::from_secs(31)).await;
    assert_eq!(
        session_connected(&server, "extend"),
        None,
        "gone after 60 s"
    );
    server.shutdown().await;
}

// The session expiry is checked at CONNECT too, not only by the timer task: a reconnect
// after the interval but before the next tick finds no session (v5 [MQTT-4.1.0-2]).
#[tokio::test(start_paused = true)]
async fn session_expiry_checked_at_reconnect_between_ticks() {
    let server = start(options()).await;
    let persistent = |clean_start| {
        let mut connect = connect_packet(V5, "between", clean_start);
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(2);
        connect
    };
    tokio::time::advance(Duration::from_millis(500)).await;
    let (mut client, _) = connect_with(&server, persistent(true)).await;
    client
        .subscribe_granted(1, "between/#", QoS::AtLeastOnce)
        .await;
    disconnect(&mut client, Disconnect::default()).await;
    wait_until(|| session_connected(&server, "between") == Some(false)).await;
    // Expiry due at 2.5 s; ticks come at whole seconds. Reconnect at 2.7 s.
    tokio::time::advance(Duration::from_millis(2200)).await;
    let (_client, present) = connect_with(&server, persistent(false)).await;
    assert!(!present, "expired at 2.5 s, before the tick at 3 s");
    assert_eq!(
        server
            .broker()
            .session("between")
            .unwrap()
            .info()
            .subscriptions
            .len(),
        0
    );
    server.shutdown().await;
}

// 3.1.1 and v5 [MQTT-3.1.2-8]: a connection closed by the server for a protocol error
// publishes the will too (it did not end with DISCONNECT 0x00).
#[tokio::test(start_paused = true)]
async fn will_published_after_a_protocol_error() {
    let server = start(options()).await;
    let mut watch = watcher(&server, "will/#").await;
    for version in [V5, V311] {
        let (mut client, _) = connect_with(&server, with_will(version, "clumsy", 0, None)).await;
        client
            .send_bytes(&[0x36, 0x04, 0x00, 0x01, b'a', 0x00])
            .await; // QoS 3
        client
            .expect_closed_with(ReasonCode::MALFORMED_PACKET)
            .await;
        let message = watch.expect_publish().await;
        assert_eq!(&message.payload[..], b"gone", "{version:?}");
        watch
            .send(Packet::PubAck(switchboard_codec::Ack::new(
                message.packet_id.unwrap(),
            )))
            .await;
    }
    server.shutdown().await;
}
