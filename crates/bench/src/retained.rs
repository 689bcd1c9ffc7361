//! The `retained` scenario: store `--count` retained messages (one topic
//! each) as fast as the broker takes them, then subscribe to all of them at
//! once and time their arrival; finally delete them again.
//!
//! The flood is confirmed before the subscribe: at QoS 1/2 by the
//! acknowledgements, at QoS 0 by a PINGREQ after the last PUBLISH (a broker
//! handles one connection's packets in order, so its PINGRESP means every
//! PUBLISH before it was processed). Each phase is bounded by `--duration`
//! plus `--drain`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::watch;

use crate::args::{Scenario, Settings, DEFAULT_RETAINED_COUNT};
use crate::flow::{
    drive_client, ClientSpec, Clock, Pace, Progress, ReceiverConfig, SenderConfig, Topics,
};
use crate::link::{connect_all, SessionKind, Target};
use crate::payload::padding;
use crate::report::{Report, RetainedResults};
use crate::scenario::{duration_ns, protocol_name};
use crate::stats::new_histogram;

pub(crate) async fn run_retained(
    settings: &Settings,
    target: &Target,
    run_id: &str,
) -> anyhow::Result<Report> {
    let count = settings.count.unwrap_or(DEFAULT_RETAINED_COUNT);
    let topics = format!("{}/{run_id}/retained", settings.topic_prefix);
    let qos = settings.qos;
    let phase_limit = settings.duration + settings.drain;

    let setup_started = Instant::now();
    let mut links = connect_all(
        target,
        vec![
            (format!("sbb{run_id}p0"), None),
            (format!("sbb{run_id}s0"), None),
        ],
        SessionKind::Clean,
        settings.connect_concurrency,
    )
    .await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let (Some(mut subscriber), Some(mut publisher)) = (links.pop(), links.pop()) else {
        anyhow::bail!("retained: connections went missing during setup");
    };
    let (_stop_sender, mut stop) = watch::channel(false);
    let padding: Arc<[u8]> = padding(settings.payload_size).into();

    // Phase 1: the flood.
    let flood_clock = phase_clock(settings);
    let flood = drive_client(
        &mut publisher,
        flood_spec(settings, &topics, count, Some(padding)),
        &flood_clock,
        &mut stop,
    )
    .await
    .context("retained: storing the messages")?;
    let flood_secs = flood_clock.base.elapsed().as_secs_f64();
    let flood_sender = flood.sender.unwrap_or_default();
    let stored = flood_sender.sent_total;

    // Phase 2: subscribe to all of them.
    let clock = phase_clock(settings);
    let spec = ClientSpec {
        sender: None,
        receiver: Some(ReceiverConfig {
            first_publisher: 0,
            publishers: 1,
            feedback: Vec::new(),
            delivered_total: Arc::new(AtomicU64::new(0)),
            histogram: new_histogram()?,
            check_correlation: false,
            expect: Some(stored),
        }),
        responder: None,
        subscribe: Some((format!("{topics}/#"), qos)),
        inflight: u64::from(u16::MAX),
        until: Some(clock.base + phase_limit),
    };
    let delivery = drive_client(&mut subscriber, spec, &clock, &mut stop)
        .await
        .context("retained: receiving the messages")?;
    subscriber.disconnect().await;
    let receiver = delivery.receiver.unwrap_or_default();
    let subscribed_ns = delivery.subscribed_ns.unwrap_or(0);
    let since_subscribe_ms =
        |ns: Option<u64>| ns.map(|ns| ns.saturating_sub(subscribed_ns) as f64 / 1e6);
    let duplicates = receiver
        .trackers
        .iter()
        .map(|tracker| tracker.duplicates)
        .sum();
    let all_arrived = receiver.unique >= stored;
    let time_to_all_ms = if all_arrived {
        since_subscribe_ms(receiver.last_ns)
    } else {
        None
    };

    // Phase 3: delete them again (empty retained payloads), so the broker is
    // left as it was found.
    let cleanup_clock = phase_clock(settings);
    drive_client(
        &mut publisher,
        flood_spec(settings, &topics, stored, None),
        &cleanup_clock,
        &mut stop,
    )
    .await
    .context("retained: deleting the messages")?;
    let cleanup_secs = cleanup_clock.base.elapsed().as_secs_f64();
    publisher.disconnect().await;

    Ok(Report {
        scenario: Scenario::Retained.name(),
        broker: format!("{}:{}", settings.host, settings.port),
        protocol: protocol_name(settings.version),
        qos: qos.as_u8(),
        payload_bytes: settings.payload_size,
        publishers: 1,
        subscribers: 1,
        stalled_subscribers: 0,
        persistent_sessions: false,
        session_expiry_secs: None,
        mode: "closed",
        window_per_publisher: Some(settings.window),
        target_rate: None,
        duration_secs: settings.duration.as_secs_f64(),
        warmup_secs: 0.0,
        drain_secs: settings.drain.as_secs_f64(),
        count: Some(count),
        setup_secs,
        flow: None,
        idle: None,
        retained: Some(RetainedResults {
            retained: stored,
            flood_secs,
            flood_per_sec: (flood_secs > 0.0).then(|| stored as f64 / flood_secs),
            received: receiver.unique,
            lost: stored.saturating_sub(receiver.unique),
            duplicates,
            time_to_first_ms: since_subscribe_ms(receiver.first_ns),
            time_to_all_ms,
            delivered_per_sec: time_to_all_ms
                .filter(|&ms| ms > 0.0)
                .map(|ms| stored as f64 * 1000.0 / ms),
            cleanup_secs,
        }),
    })
}

/// A phase starts now, has no warm-up, and sends for at most `--duration`.
fn phase_clock(settings: &Settings) -> Clock {
    Clock {
        base: Instant::now(),
        warmup_ns: 0,
        deadline_ns: duration_ns(settings.duration),
    }
}

/// One retained PUBLISH per topic `topics/<n>`, `n` from 0; empty payloads
/// (deletes) when `padding` is `None`.
fn flood_spec(
    settings: &Settings,
    topics: &str,
    count: u64,
    padding: Option<Arc<[u8]>>,
) -> ClientSpec {
    ClientSpec {
        sender: Some(SenderConfig {
            id: 0,
            topics: Topics::numbered(topics.to_owned()),
            qos: settings.qos,
            retain: true,
            padding,
            response_topic: None,
            pace: Pace::Unpaced,
            quota: Some(count),
            copies: 1,
            progress: Progress::None,
            drain: settings.drain + settings.duration,
            sync_on_finish: true,
        }),
        receiver: None,
        responder: None,
        subscribe: None,
        inflight: crate::scenario::publisher_inflight(settings, settings.window),
        until: None,
    }
}
