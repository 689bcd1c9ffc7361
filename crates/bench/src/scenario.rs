//! The message-flow scenarios: fan-in, fan-out, pairs and req-resp.
//!
//! A run goes: connect and subscribe every client (not measured); take the
//! base `Instant`; start every client task; the publishers send for the
//! warm-up plus the duration (or until `--count`), then wait for their
//! acknowledgements; the coordinator waits until every copy has arrived or
//! the drain time has passed; then it stops the receivers and adds up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use switchboard_codec::ProtocolVersion;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::{Scenario, Settings};
use crate::flow::{
    run_client, ClientOutcome, ClientSpec, Clock, Feedback, Pace, Progress, ReceiverConfig,
    SenderConfig, Topics,
};
use crate::link::{connect_all, end_sessions, SessionKind, Target};
use crate::payload::padding;
use crate::report::{FlowResults, Report};
use crate::stats::{new_histogram, Delivery, LatencySummary};

/// How long, beyond the run's own bounds, to wait for client tasks before
/// calling the run failed (a broker that stopped answering).
pub(crate) const TASK_GUARD: Duration = Duration::from_secs(10);

/// How often the coordinator looks at the delivery count while draining.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// The shape of one flow scenario.
#[derive(Debug)]
struct Topology {
    publishers: Vec<PublisherPlan>,
    receivers: Vec<ReceiverPlan>,
    /// req-resp: the responder's filter.
    responder: Option<String>,
    /// Receivers of each message.
    copies: u64,
    /// Closed loop: messages in flight per publisher.
    window: u64,
}

#[derive(Debug)]
struct PublisherPlan {
    topic: String,
    /// req-resp: responses come here, and the requester subscribes to it.
    response_topic: Option<String>,
}

#[derive(Debug)]
struct ReceiverPlan {
    filter: String,
    first_publisher: u32,
    publishers: usize,
}

impl Topology {
    fn new(
        scenario: Scenario,
        clients: usize,
        window: u64,
        prefix: &str,
    ) -> anyhow::Result<Topology> {
        let per_publisher = |publishers: usize| (window / publishers as u64).max(1);
        let topology = match scenario {
            Scenario::FanIn => Topology {
                publishers: (0..clients)
                    .map(|index| PublisherPlan {
                        topic: format!("{prefix}/in/{index}"),
                        response_topic: None,
                    })
                    .collect(),
                receivers: vec![ReceiverPlan {
                    filter: format!("{prefix}/in/+"),
                    first_publisher: 0,
                    publishers: clients,
                }],
                responder: None,
                copies: 1,
                window: per_publisher(clients),
            },
            Scenario::FanOut => Topology {
                publishers: vec![PublisherPlan {
                    topic: format!("{prefix}/out"),
                    response_topic: None,
                }],
                receivers: (0..clients)
                    .map(|_| ReceiverPlan {
                        filter: format!("{prefix}/out"),
                        first_publisher: 0,
                        publishers: 1,
                    })
                    .collect(),
                responder: None,
                copies: clients as u64,
                window,
            },
            Scenario::Pairs => Topology {
                publishers: (0..clients)
                    .map(|index| PublisherPlan {
                        topic: format!("{prefix}/pair/{index}"),
                        response_topic: None,
                    })
                    .collect(),
                receivers: (0..clients)
                    .map(|index| ReceiverPlan {
                        filter: format!("{prefix}/pair/{index}"),
                        first_publisher: index as u32,
                        publishers: 1,
                    })
                    .collect(),
                responder: None,
                copies: 1,
                window,
            },
            Scenario::ReqResp => Topology {
                publishers: (0..clients)
                    .map(|index| PublisherPlan {
                        topic: format!("{prefix}/req/{index}"),
                        response_topic: Some(format!("{prefix}/resp/{index}")),
                    })
                    .collect(),
                receivers: Vec::new(),
                responder: Some(format!("{prefix}/req/+")),
                copies: 1,
                window: per_publisher(clients),
            },
            Scenario::Idle | Scenario::Retained => {
                bail!("{} is not a message-flow scenario", scenario.name())
            }
        };
        if u32::try_from(topology.publishers.len()).is_err() {
            bail!("too many publishers");
        }
        Ok(topology)
    }
}

/// A task's role, so the coordinator knows when the publishers are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Receiver,
}

pub(crate) async fn run_flow(
    settings: &Settings,
    target: &Target,
    scenario: Scenario,
    run_id: &str,
) -> anyhow::Result<Report> {
    if scenario == Scenario::ReqResp && !settings.version.is_v5() {
        bail!("req-resp needs MQTT 5 (response topic and correlation data): use -V 5");
    }
    let clients = settings.clients_for(scenario);
    let prefix = format!("{}/{run_id}", settings.topic_prefix);
    let topology = Topology::new(scenario, clients, settings.window, &prefix)?;
    let qos = settings.qos;

    let session = settings.subscriber_session;
    let subscriber_prefix = subscriber_id_prefix(session, scenario, run_id);

    // Setup: receivers (and the responder) first, so that nothing published is missed.
    let setup_started = Instant::now();
    let mut receiver_ids: Vec<(String, Option<(String, _)>)> = topology
        .receivers
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            (
                format!("{subscriber_prefix}s{index}"),
                Some((plan.filter.clone(), qos)),
            )
        })
        .collect();
    if let Some(filter) = &topology.responder {
        receiver_ids.push((format!("{subscriber_prefix}r"), Some((filter.clone(), qos))));
    }
    let mut subscriber_ids: Vec<String> = receiver_ids.iter().map(|(id, _)| id.clone()).collect();
    let mut receiver_links =
        connect_all(target, receiver_ids, session, settings.connect_concurrency).await?;
    // Stalled subscribers: same filter as the first receiver, never read.
    let stalled_filter = topology
        .receivers
        .first()
        .map(|plan| plan.filter.clone())
        .or_else(|| topology.responder.clone());
    let stalled_ids = match (&stalled_filter, settings.stalled) {
        (Some(filter), stalled) => (0..stalled)
            .map(|index| {
                (
                    format!("{subscriber_prefix}x{index}"),
                    Some((filter.clone(), qos)),
                )
            })
            .collect(),
        (None, _) => Vec::new(),
    };
    subscriber_ids.extend(stalled_ids.iter().map(|(id, _)| id.clone()));
    let stalled_links =
        connect_all(target, stalled_ids, session, settings.connect_concurrency).await?;
    let publisher_ids = topology
        .publishers
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            let subscribe = plan.response_topic.clone().map(|topic| (topic, qos));
            (format!("sbb{run_id}p{index}"), subscribe)
        })
        .collect();
    let publisher_links = connect_all(
        target,
        publisher_ids,
        SessionKind::Clean,
        settings.connect_concurrency,
    )
    .await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let warmup_ns = duration_ns(settings.warmup);
    let clock = Clock {
        base: Instant::now(),
        warmup_ns,
        deadline_ns: warmup_ns.saturating_add(duration_ns(settings.duration)),
    };
    let feedback: Vec<Arc<Feedback>> = topology
        .publishers
        .iter()
        .map(|_| Arc::new(Feedback::default()))
        .collect();
    let delivered_total = Arc::new(AtomicU64::new(0));
    let histogram = new_histogram()?;
    let padding: Arc<[u8]> = padding(settings.payload_size).into();
    let (stop_sender, stop) = watch::channel(false);
    let mut tasks: JoinSet<(Role, anyhow::Result<ClientOutcome>)> = JoinSet::new();

    let responder_link = if topology.responder.is_some() {
        receiver_links.pop()
    } else {
        None
    };
    for (plan, link) in topology.receivers.iter().zip(receiver_links) {
        let first = plan.first_publisher as usize;
        let spec = ClientSpec {
            sender: None,
            receiver: Some(ReceiverConfig {
                first_publisher: plan.first_publisher,
                publishers: plan.publishers,
                feedback: feedback
                    .get(first..first + plan.publishers)
                    .map(<[Arc<Feedback>]>::to_vec)
                    .unwrap_or_default(),
                delivered_total: Arc::clone(&delivered_total),
                histogram: Arc::clone(&histogram),
                check_correlation: false,
                expect: None,
            }),
            responder: None,
            subscribe: None,
            inflight: u64::from(u16::MAX),
            until: None,
        };
        let stop = stop.clone();
        tasks.spawn(async move { (Role::Receiver, run_client(link, spec, clock, stop).await) });
    }
    if let Some(link) = responder_link {
        let spec = ClientSpec {
            sender: None,
            receiver: None,
            responder: Some(qos),
            subscribe: None,
            inflight: settings.max_inflight.map_or(u64::from(u16::MAX), u64::from),
            until: None,
        };
        let stop = stop.clone();
        tasks.spawn(async move { (Role::Receiver, run_client(link, spec, clock, stop).await) });
    }
    let publishers = topology.publishers.len();
    for (index, (plan, link)) in topology.publishers.iter().zip(publisher_links).enumerate() {
        let requester = plan.response_topic.is_some();
        let pace = match settings.rate {
            Some(rate) => Pace::Open {
                interval_ns: 1e9 * publishers as f64 / rate,
                phase_ns: (1e9 * index as f64 / rate) as u64,
            },
            None => Pace::Closed {
                window: topology.window,
            },
        };
        let quota = settings.count.map(|count| {
            let publishers = publishers as u64;
            count / publishers + u64::from((index as u64) < count % publishers)
        });
        let progress = match (requester, feedback.get(index)) {
            (true, _) => Progress::Local,
            (false, Some(feedback)) => Progress::Shared(Arc::clone(feedback)),
            (false, None) => Progress::None,
        };
        let sender = SenderConfig {
            id: index as u32,
            topics: Topics::Fixed(plan.topic.clone().into_bytes()),
            qos,
            retain: false,
            padding: Some(Arc::clone(&padding)),
            response_topic: plan.response_topic.clone().map(String::into_bytes),
            pace,
            quota,
            copies: topology.copies,
            progress,
            drain: settings.drain,
            sync_on_finish: false,
        };
        let receiver = requester.then(|| ReceiverConfig {
            first_publisher: index as u32,
            publishers: 1,
            feedback: Vec::new(),
            delivered_total: Arc::clone(&delivered_total),
            histogram: Arc::clone(&histogram),
            check_correlation: true,
            expect: None,
        });
        let spec = ClientSpec {
            sender: Some(sender),
            receiver,
            responder: None,
            subscribe: None,
            inflight: publisher_inflight(settings, topology.window),
            until: None,
        };
        let stop = stop.clone();
        tasks.spawn(async move { (Role::Publisher, run_client(link, spec, clock, stop).await) });
    }
    for link in stalled_links {
        let mut stop = stop.clone();
        tasks.spawn(async move {
            // Holds the socket without reading until the run ends, then
            // drops it: its buffers are full, a DISCONNECT might never leave.
            let _ = stop.wait_for(|stopped| *stopped).await;
            drop(link);
            (Role::Receiver, Ok(ClientOutcome::default()))
        });
    }
    drop(stop);

    let outcomes = coordinate(
        &mut tasks,
        &stop_sender,
        &clock,
        settings.drain,
        publishers,
        &delivered_total,
    )
    .await;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            let _ = stop_sender.send(true);
            tasks.abort_all();
            return Err(error);
        }
    };
    if session != SessionKind::Clean {
        // Leave nothing queued on the broker. The figures stand either way:
        // a failure here is reported, not fatal.
        if let Err(error) = end_sessions(target, subscriber_ids, settings.connect_concurrency).await
        {
            eprintln!("switchboard bench: could not end the persistent sessions: {error:#}");
        }
    }

    let histogram = histogram
        .lock()
        .map_err(|_| anyhow!("a client task panicked while recording latency"))?;
    let latency = LatencySummary::of(&histogram);
    drop(histogram);
    let flow = flow_results(&outcomes, &clock, scenario, latency);
    Ok(Report {
        scenario: scenario.name(),
        broker: format!("{}:{}", settings.host, settings.port),
        protocol: protocol_name(settings.version),
        qos: qos.as_u8(),
        payload_bytes: settings.payload_size,
        publishers,
        subscribers: topology.receivers.len() + usize::from(topology.responder.is_some()),
        stalled_subscribers: settings.stalled,
        persistent_sessions: session != SessionKind::Clean,
        session_expiry_secs: match session {
            SessionKind::Persistent { expiry_secs } if settings.version.is_v5() => {
                Some(expiry_secs)
            }
            _ => None,
        },
        mode: if settings.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        window_per_publisher: settings.rate.is_none().then_some(topology.window),
        target_rate: settings.rate,
        duration_secs: settings.duration.as_secs_f64(),
        warmup_secs: settings.warmup.as_secs_f64(),
        drain_secs: settings.drain.as_secs_f64(),
        count: settings.count,
        setup_secs,
        flow: Some(flow),
        idle: None,
        retained: None,
    })
}

/// What subscriber client ids start with. Clean sessions: the run id, so runs
/// never meet. Persistent sessions: the scenario name alone, fixed from run to
/// run, so that a rerun (which ends these sessions first) replaces the last
/// run's sessions instead of adding to them, even when a run was killed before
/// it could end its own. Two persistent runs of one scenario at once against
/// one broker would take over each other's sessions: run them one at a time.
fn subscriber_id_prefix(session: SessionKind, scenario: Scenario, run_id: &str) -> String {
    match session {
        SessionKind::Clean => format!("sbb{run_id}"),
        SessionKind::Persistent { .. } => format!("sbb-{}-", scenario.name()),
    }
}

/// Waits for the publishers, then for the last copies (or the drain time),
/// then stops everyone; returns every client's outcome.
async fn coordinate(
    tasks: &mut JoinSet<(Role, anyhow::Result<ClientOutcome>)>,
    stop: &watch::Sender<bool>,
    clock: &Clock,
    drain: Duration,
    publishers: usize,
    delivered_total: &AtomicU64,
) -> anyhow::Result<Vec<ClientOutcome>> {
    let mut outcomes = Vec::new();
    let mut publishers_left = publishers;
    let guard =
        tokio::time::Instant::from_std(clock.at(clock.deadline_ns) + drain + drain + TASK_GUARD);
    while publishers_left > 0 {
        let joined = tokio::time::timeout_at(guard, tasks.join_next())
            .await
            .map_err(|_| anyhow!("publishers did not finish in time (is the broker stuck?)"))?;
        let Some(joined) = joined else {
            bail!("client tasks ended before the publishers finished");
        };
        let (role, outcome) = joined.context("a client task failed")?;
        outcomes.push(outcome?);
        if role == Role::Publisher {
            publishers_left -= 1;
        }
    }

    let expected: u64 = outcomes
        .iter()
        .filter_map(|outcome| outcome.sender.as_ref())
        .map(|sender| sender.sent_total * sender.copies)
        .sum();
    let last_finished = outcomes
        .iter()
        .filter_map(|outcome| outcome.sender.as_ref())
        .map(|sender| sender.finished_ns)
        .max()
        .unwrap_or(clock.deadline_ns);
    let drain_until = tokio::time::Instant::from_std(clock.at(last_finished) + drain);
    while delivered_total.load(Ordering::Acquire) < expected
        && tokio::time::Instant::now() < drain_until
    {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => {
                    let (_, outcome) = joined.context("a client task failed")?;
                    outcomes.push(outcome?);
                }
                None => break,
            },
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }

    let _ = stop.send(true);
    let guard = tokio::time::Instant::now() + TASK_GUARD;
    while let Some(joined) = tokio::time::timeout_at(guard, tasks.join_next())
        .await
        .map_err(|_| anyhow!("clients did not stop in time"))?
    {
        let (_, outcome) = joined.context("a client task failed")?;
        outcomes.push(outcome?);
    }
    Ok(outcomes)
}

fn flow_results(
    outcomes: &[ClientOutcome],
    clock: &Clock,
    scenario: Scenario,
    latency: Option<LatencySummary>,
) -> FlowResults {
    let mut delivery = Delivery::default();
    let mut sent = 0;
    let mut last_finished_ns = 0;
    let mut last_arrival_ns = 0;
    let mut unacknowledged = 0;
    let mut stalls = 0;
    let mut refused = 0;
    let mut foreign = 0;
    let mut mismatches = 0;
    let mut responder_dropped = 0;
    for outcome in outcomes {
        refused += outcome.refused;
        if let Some(sender) = &outcome.sender {
            sent += sender.sent_measured;
            delivery.expected += sender.sent_measured * sender.copies;
            last_finished_ns = last_finished_ns.max(sender.finished_ns);
            unacknowledged += sender.unacknowledged;
            stalls += sender.stalls;
        }
        if let Some(receiver) = &outcome.receiver {
            for tracker in &receiver.trackers {
                delivery.add_tracker(tracker);
            }
            if let Some(last) = receiver.last_measured_ns {
                last_arrival_ns = last_arrival_ns.max(last);
            }
            foreign += receiver.foreign;
            mismatches += receiver.correlation_mismatches;
        }
        if let Some(responder) = &outcome.responder {
            responder_dropped += responder.dropped;
        }
    }
    let per_second = |amount: u64, end_ns: u64| {
        let secs = end_ns.saturating_sub(clock.warmup_ns) as f64 / 1e9;
        (secs > 0.0 && amount > 0).then(|| amount as f64 / secs)
    };
    let request_response = scenario == Scenario::ReqResp;
    FlowResults {
        measured_secs: last_finished_ns.saturating_sub(clock.warmup_ns) as f64 / 1e9,
        sent,
        sent_per_sec: per_second(sent, last_finished_ns),
        expected: delivery.expected,
        received: delivery.received,
        delivered_per_sec: per_second(delivery.received, last_arrival_ns),
        lost: delivery.lost(),
        loss_percent: delivery.loss_percent(),
        duplicates: delivery.duplicates,
        reordered: delivery.reordered,
        refused,
        unacknowledged,
        window_stalls: stalls,
        foreign,
        correlation_mismatches: request_response.then_some(mismatches),
        responder_dropped: request_response.then_some(responder_dropped),
        latency_kind: if request_response {
            "round-trip"
        } else {
            "end-to-end"
        },
        latency,
    }
}

/// QoS 1/2 messages a publisher may have unacknowledged: its closed-loop
/// window (or `--window` in open loop), capped by `--max-inflight` (3.1.1:
/// 20 by default); the broker's Receive Maximum caps it again per connection.
pub(crate) fn publisher_inflight(settings: &Settings, window: u64) -> u64 {
    let window = if settings.rate.is_some() {
        settings.window
    } else {
        window
    };
    settings
        .max_inflight
        .map_or(window, |max| window.min(u64::from(max)))
}

pub(crate) fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V5 => "5",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V3_1 => "3.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies() {
        let fan_in = Topology::new(Scenario::FanIn, 16, 500, "p").unwrap();
        assert_eq!(fan_in.publishers.len(), 16);
        assert_eq!(fan_in.publishers[3].topic, "p/in/3");
        assert_eq!(fan_in.receivers.len(), 1);
        assert_eq!(fan_in.receivers[0].filter, "p/in/+");
        assert_eq!(fan_in.receivers[0].publishers, 16);
        assert_eq!(
            (fan_in.copies, fan_in.window),
            (1, 31),
            "the window is shared"
        );

        let fan_out = Topology::new(Scenario::FanOut, 100, 500, "p").unwrap();
        assert_eq!(fan_out.publishers.len(), 1);
        assert_eq!(fan_out.receivers.len(), 100);
        assert_eq!((fan_out.copies, fan_out.window), (100, 500));

        let pairs = Topology::new(Scenario::Pairs, 4, 500, "p").unwrap();
        assert_eq!(pairs.receivers[2].filter, "p/pair/2");
        assert_eq!(pairs.receivers[2].first_publisher, 2);

        let requests = Topology::new(Scenario::ReqResp, 2, 500, "p").unwrap();
        assert_eq!(
            requests.publishers[1].response_topic.as_deref(),
            Some("p/resp/1")
        );
        assert_eq!(requests.responder.as_deref(), Some("p/req/+"));

        let tiny = Topology::new(Scenario::FanIn, 1000, 500, "p").unwrap();
        assert_eq!(tiny.window, 1, "never below one message");
        assert!(Topology::new(Scenario::Idle, 1, 1, "p").is_err());
    }

    #[test]
    fn persistent_subscriber_ids_are_fixed_and_short() {
        let persistent = SessionKind::Persistent { expiry_secs: 60 };
        for run_id in ["0badcafe", "12345678"] {
            assert_eq!(
                subscriber_id_prefix(persistent, Scenario::FanOut, run_id),
                "sbb-fan-out-"
            );
            assert_eq!(
                subscriber_id_prefix(SessionKind::Clean, Scenario::FanOut, run_id),
                format!("sbb{run_id}")
            );
        }
        // MQTT guarantees client ids of 23 bytes ([MQTT-3.1.3-5]); the longest
        // prefix leaves room for six-digit indexes.
        for scenario in [
            Scenario::FanIn,
            Scenario::FanOut,
            Scenario::Pairs,
            Scenario::ReqResp,
        ] {
            let id = format!("{}s999999", subscriber_id_prefix(persistent, scenario, "x"));
            assert!(id.len() <= 23, "{id}");
        }
    }

    fn sender(sent_measured: u64, copies: u64, finished_ns: u64) -> ClientOutcome {
        ClientOutcome {
            sender: Some(crate::flow::SenderOutcome {
                sent_total: sent_measured + 10,
                sent_measured,
                copies,
                finished_ns,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn results_add_up_across_clients() {
        use crate::stats::SequenceTracker;
        let clock = Clock {
            base: Instant::now(),
            warmup_ns: 1_000_000_000,
            deadline_ns: 3_000_000_000,
        };
        // Fan-out, two subscribers: 100 measured messages -> 200 copies expected.
        let mut receivers = Vec::new();
        for missing in [0u32, 5] {
            let mut tracker = SequenceTracker::default();
            for sequence in 0..110u32 {
                if sequence != 50 || missing == 0 {
                    tracker.observe(sequence, sequence >= 10);
                }
            }
            receivers.push(ClientOutcome {
                receiver: Some(crate::flow::ReceiverOutcome {
                    trackers: vec![tracker],
                    last_measured_ns: Some(3_000_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let mut outcomes = vec![sender(100, 2, 3_000_000_000)];
        outcomes.extend(receivers);
        let results = flow_results(&outcomes, &clock, Scenario::FanOut, None);
        assert_eq!(results.sent, 100);
        assert_eq!(results.expected, 200);
        assert_eq!(results.received, 199);
        assert_eq!(results.lost, 1);
        assert_eq!(results.measured_secs, 2.0);
        assert_eq!(results.sent_per_sec, Some(50.0));
        assert_eq!(results.delivered_per_sec, Some(99.5));
        assert_eq!(results.correlation_mismatches, None);
        assert_eq!(results.latency_kind, "end-to-end");
    }
}
