//! `/metrics` in the Prometheus text exposition format (version 0.0.4),
//! written by hand: a few dozen families do not need a metrics library.
//!
//! Naming: `switchboard_` prefix, base units (bytes, seconds), counters end
//! in `_total`. Gauges summed over sessions (queued messages and bytes,
//! in-flight) cost one walk over the sessions per scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use switchboard_broker::persist::HistogramSnapshot;
use switchboard_broker::{ListenerStats, Metrics, Store};

use crate::Console;

/// The content type Prometheus expects for the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Accumulates metric families.
struct Exposition {
    out: String,
}

impl Exposition {
    fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(8 * 1024),
        }
    }

    /// A family: its HELP and TYPE lines and one sample per label set.
    fn family<V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: &[(&[(&str, &str)], V)],
    ) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.is_empty() {
                self.out.push('{');
                for (index, (label, label_value)) in labels.iter().enumerate() {
                    if index > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{label}=\"{}\"", escape_label(label_value));
                }
                self.out.push('}');
            }
            let _ = writeln!(self.out, " {value}");
        }
    }

    fn single<V: std::fmt::Display>(&mut self, name: &str, kind: Kind, help: &str, value: V) {
        self.family(name, kind, help, &[(&[], value)]);
    }

    /// A histogram without labels: cumulative `_bucket` samples by `le`,
    /// then `_sum` and `_count`. Bounds and the sum are divided by `scale`
    /// (microseconds to seconds: 1e6; plain counts: 1).
    fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot, scale: f64) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} histogram");
        for (bound, count) in snapshot.cumulative() {
            let _ = writeln!(
                self.out,
                "{name}_bucket{{le=\"{}\"}} {count}",
                bound as f64 / scale
            );
        }
        let count = snapshot.count();
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.out, "{name}_sum {}", snapshot.sum as f64 / scale);
        let _ = writeln!(self.out, "{name}_count {count}");
    }
}

/// HELP text escapes backslash and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape backslash, double quote and newline.
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub(crate) fn render(state: &Console) -> String {
    let broker = &state.broker;
    let metrics = broker.metrics();
    let get = Metrics::get;
    let gauges = crate::api::gauges(broker);
    let mut out = Exposition::new();
    use Kind::{Counter, Gauge};

    out.family(
        "switchboard_build_info",
        Gauge,
        "Always 1; the version is in the label.",
        &[(&[("version", crate::VERSION)], 1)],
    );
    out.single(
        "switchboard_uptime_seconds",
        Gauge,
        "Seconds since the broker started.",
        Instant::now()
            .saturating_duration_since(broker.started())
            .as_secs(),
    );
    out.single(
        "switchboard_ready",
        Gauge,
        "1 once the MQTT listeners accept connections.",
        u8::from(state.options.ready.is_ready()),
    );
    out.single(
        "switchboard_connections",
        Gauge,
        "MQTT connections open now.",
        get(&metrics.connections_current),
    );
    out.single(
        "switchboard_connections_parked",
        Gauge,
        "MQTT connections parked now: idle, waiting without a task of their own.",
        get(&metrics.connections_parked),
    );
    out.single(
        "switchboard_connection_parks_total",
        Counter,
        "Times an idle connection was parked since start.",
        get(&metrics.connection_parks),
    );
    out.single(
        "switchboard_connection_unparks_total",
        Counter,
        "Times a parked connection was resumed (for its socket, a delivery, a close order or its keep alive) since start.",
        get(&metrics.connection_unparks),
    );
    out.single(
        "switchboard_connections_total",
        Counter,
        "MQTT connections accepted (CONNECT succeeded) since start.",
        get(&metrics.connections_total),
    );
    out.single(
        "switchboard_connections_refused_total",
        Counter,
        "Connections closed at once because a connection limit was reached.",
        get(&metrics.connections_refused),
    );
    out.single(
        "switchboard_connections_rate_limited_total",
        Counter,
        "Connections closed at once because their source address connected too fast.",
        get(&metrics.connections_rate_limited),
    );
    out.single(
        "switchboard_accept_errors_total",
        Counter,
        "Failed accept calls (e.g. out of file descriptors), each followed by a backoff.",
        get(&metrics.accept_errors),
    );
    out.single(
        "switchboard_tls_handshake_failures_total",
        Counter,
        "TLS handshakes that failed or timed out (tls and wss listeners).",
        get(&metrics.tls_handshake_failures),
    );
    out.single(
        "switchboard_websocket_origins_refused_total",
        Counter,
        "WebSocket upgrades refused (HTTP 403) because their Origin is not allowed.",
        get(&metrics.websocket_origins_refused),
    );
    let listeners = metrics.listeners.snapshot();
    let listener_samples =
        |counter: fn(&ListenerStats) -> &AtomicU64| -> Vec<(Vec<(&str, &str)>, u64)> {
            listeners
                .iter()
                .map(|(name, stats)| (vec![("listener", name.as_str())], get(counter(stats))))
                .collect()
        };
    out.family(
        "switchboard_listener_connections",
        Gauge,
        "Sockets open now, by listener.",
        &borrow_labels(&listener_samples(|stats| &stats.connections_current)),
    );
    out.family(
        "switchboard_listener_connections_total",
        Counter,
        "Sockets accepted since start, by listener.",
        &borrow_labels(&listener_samples(|stats| &stats.connections_total)),
    );
    out.family(
        "switchboard_listener_connections_refused_total",
        Counter,
        "Sockets closed at once because a connection limit was reached, by listener.",
        &borrow_labels(&listener_samples(|stats| &stats.connections_refused)),
    );
    out.family(
        "switchboard_listener_tls_handshake_failures_total",
        Counter,
        "TLS handshakes that failed or timed out, by listener.",
        &borrow_labels(&listener_samples(|stats| &stats.tls_handshake_failures)),
    );
    out.family(
        "switchboard_listener_websocket_origins_refused_total",
        Counter,
        "WebSocket upgrades refused for their Origin, by listener.",
        &borrow_labels(&listener_samples(|stats| &stats.websocket_origins_refused)),
    );
    out.single(
        "switchboard_sessions",
        Gauge,
        "Sessions, connected or not.",
        gauges.sessions,
    );
    out.single(
        "switchboard_subscriptions",
        Gauge,
        "Subscriptions in the topic index, shared memberships included.",
        broker.subscription_count(),
    );
    out.single(
        "switchboard_retained_messages",
        Gauge,
        "Retained messages stored.",
        broker.retained_count(),
    );
    out.single(
        "switchboard_queued_messages",
        Gauge,
        "Messages waiting in session queues, summed over sessions.",
        gauges.queued_messages,
    );
    out.single(
        "switchboard_queued_bytes",
        Gauge,
        "Bytes of messages waiting in session queues, summed over sessions.",
        gauges.queued_bytes,
    );
    out.single(
        "switchboard_queued_bytes_budget_used",
        Gauge,
        "Bytes counted against limits.max_queued_bytes_total (the broker-wide queue memory budget).",
        broker.queued_bytes_total(),
    );
    out.single(
        "switchboard_queued_bytes_budget_limit",
        Gauge,
        "limits.max_queued_bytes_total; 0 means unlimited.",
        broker.queued_bytes_limit(),
    );
    out.single(
        "switchboard_inflight_messages",
        Gauge,
        "Outgoing QoS 1 and 2 messages sent and not yet acknowledged, summed over sessions.",
        gauges.inflight,
    );

    let by_qos = |counters: &[AtomicU64; 3]| -> Vec<u64> { counters.iter().map(get).collect() };
    let received = by_qos(&metrics.publish_received_by_qos);
    let sent = by_qos(&metrics.publish_sent_by_qos);
    let bytes_received = by_qos(&metrics.bytes_received_by_qos);
    let bytes_sent = by_qos(&metrics.bytes_sent_by_qos);
    let qos_samples = |values: &[u64]| -> Vec<(&'static [(&'static str, &'static str)], u64)> {
        const LABELS: [&[(&str, &str)]; 3] = [&[("qos", "0")], &[("qos", "1")], &[("qos", "2")]];
        LABELS.iter().copied().zip(values.iter().copied()).collect()
    };
    out.family(
        "switchboard_messages_received_total",
        Counter,
        "PUBLISH packets received from clients, by QoS.",
        &qos_samples(&received),
    );
    out.family(
        "switchboard_messages_sent_total",
        Counter,
        "PUBLISH packets sent to clients, by QoS.",
        &qos_samples(&sent),
    );
    out.family(
        "switchboard_publish_payload_bytes_received_total",
        Counter,
        "Payload bytes of the PUBLISH packets received from clients, by QoS.",
        &qos_samples(&bytes_received),
    );
    out.family(
        "switchboard_publish_payload_bytes_sent_total",
        Counter,
        "Payload bytes of the PUBLISH packets sent to clients, by QoS.",
        &qos_samples(&bytes_sent),
    );
    out.single(
        "switchboard_bytes_received_total",
        Counter,
        "Bytes read from MQTT connections (all packets).",
        get(&metrics.bytes_received),
    );
    out.single(
        "switchboard_bytes_sent_total",
        Counter,
        "Bytes written to MQTT connections (all packets).",
        get(&metrics.bytes_sent),
    );
    out.family(
        "switchboard_messages_dropped_total",
        Counter,
        "Messages not delivered, by reason.",
        &[
            (
                &[("reason", "queue_full")],
                get(&metrics.dropped_queue_full),
            ),
            (
                &[("reason", "queue_bytes_full")],
                get(&metrics.dropped_queue_bytes_full),
            ),
            (
                &[("reason", "qos0_offline")],
                get(&metrics.dropped_qos0_offline),
            ),
            (&[("reason", "expired")], get(&metrics.dropped_expired)),
            (&[("reason", "too_large")], get(&metrics.dropped_too_large)),
            (
                &[("reason", "no_subscribers")],
                get(&metrics.dropped_no_subscribers),
            ),
            (
                &[("reason", "not_authorized")],
                get(&metrics.dropped_not_authorized),
            ),
            (
                &[("reason", "memory_budget")],
                get(&metrics.dropped_memory_budget),
            ),
        ],
    );
    out.single(
        "switchboard_publish_quota_exceeded_total",
        Counter,
        "QoS 1 and 2 publishes only partly carried out (queue memory budget or retained store full).",
        get(&metrics.publish_quota_exceeded),
    );
    out.single(
        "switchboard_store_refusals_total",
        Counter,
        "Messages refused because the durable store could not write them.",
        get(&metrics.store_refusals),
    );
    out.single(
        "switchboard_store_damaged_regions",
        Gauge,
        "Damaged regions of the durable store set aside at the last start.",
        get(&metrics.store_damaged_regions),
    );
    if let Some(store) = broker.store() {
        store_families(&mut out, store);
    }
    out.single(
        "switchboard_retained_refused_total",
        Counter,
        "Retained messages not stored because the retained store was full.",
        get(&metrics.retained_refused),
    );
    out.single(
        "switchboard_subscriptions_refused_total",
        Counter,
        "Subscription requests refused (invalid filter, quota, feature off).",
        get(&metrics.subscriptions_refused),
    );
    out.single(
        "switchboard_auth_failures_total",
        Counter,
        "CONNECTs refused for bad or missing credentials.",
        get(&metrics.auth_failures),
    );
    out.single(
        "switchboard_auth_throttled_total",
        Counter,
        "CONNECTs delayed because their address failed to log in too often.",
        get(&metrics.auth_throttled),
    );
    out.single(
        "switchboard_publish_not_authorized_total",
        Counter,
        "PUBLISH packets the access control list refused.",
        get(&metrics.publish_not_authorized),
    );
    out.single(
        "switchboard_protocol_errors_total",
        Counter,
        "Connections closed for a protocol error or malformed packet.",
        get(&metrics.protocol_errors),
    );
    out.single(
        "switchboard_packets_too_large_total",
        Counter,
        "Packets refused for exceeding max_packet_size (also in protocol errors).",
        get(&metrics.packets_too_large),
    );
    out.single(
        "switchboard_topic_names_refused_total",
        Counter,
        "PUBLISH packets whose topic name broke the topic limits or rules.",
        get(&metrics.topic_names_refused),
    );
    out.single(
        "switchboard_clients_throttled_total",
        Counter,
        "Times a connection stopped reading because its client exceeded its message or byte rate.",
        get(&metrics.clients_throttled),
    );
    out.single(
        "switchboard_keep_alive_timeouts_total",
        Counter,
        "Connections closed because the client went silent past its keep alive.",
        get(&metrics.keep_alive_timeouts),
    );
    out.single(
        "switchboard_connect_timeouts_total",
        Counter,
        "Sockets closed for not sending CONNECT in time.",
        get(&metrics.connect_timeouts),
    );
    out.single(
        "switchboard_takeovers_total",
        Counter,
        "Connections closed because another connected with the same client id.",
        get(&metrics.takeovers),
    );
    out.single(
        "switchboard_wills_published_total",
        Counter,
        "Will messages published.",
        get(&metrics.wills_published),
    );
    out.single(
        "switchboard_sessions_expired_total",
        Counter,
        "Sessions ended by their expiry interval.",
        get(&metrics.sessions_expired),
    );
    out.single(
        "switchboard_console_streams",
        Gauge,
        "Live event streams open in the web console.",
        state.streams_open.load(Ordering::Relaxed),
    );
    out.single(
        "switchboard_console_stream_dropped_total",
        Counter,
        "Messages the console's live views missed because a browser read too slowly (closed streams).",
        state.stream_dropped.load(Ordering::Relaxed),
    );
    out.single(
        "switchboard_console_logins",
        Gauge,
        "Console logins (cookies) held now.",
        state.access.count(),
    );
    out.single(
        "switchboard_console_auth_failures_total",
        Counter,
        "Console and API requests refused for a wrong API token or admin password.",
        state.auth_failures.load(Ordering::Relaxed),
    );
    if state.options.tls.is_some() {
        out.single(
            "switchboard_console_tls_handshake_failures_total",
            Counter,
            "HTTPS connections to the console whose TLS handshake failed or timed out.",
            state.tls_handshake_failures.load(Ordering::Relaxed),
        );
    }
    out.out
}

/// The durable store's commit thread: batches, their latency and size, and
/// the disk it uses. Only when the broker keeps data on disk.
fn store_families(out: &mut Exposition, store: &Store) {
    use Kind::{Counter, Gauge};
    let stats = store.stats();
    let commits = store.commit_stats();
    let disk = store.disk_usage();
    out.histogram(
        "switchboard_store_commit_seconds",
        "Time to write one batch to the durable log and fsync it (durability = sync; \
         periodic: the write alone).",
        &commits.commit_micros,
        1e6,
    );
    out.histogram(
        "switchboard_store_batch_records",
        "Records per batch written to the durable log (group commit: grows with the load).",
        &commits.batch_records,
        1.0,
    );
    out.single(
        "switchboard_store_batch_bytes_total",
        Counter,
        "Bytes of the batches written to the durable log.",
        commits.batch_bytes,
    );
    out.single(
        "switchboard_store_records_total",
        Counter,
        "Records written to the durable log.",
        stats.records,
    );
    out.single(
        "switchboard_store_syncs_total",
        Counter,
        "fsyncs of the durable log.",
        stats.syncs,
    );
    out.single(
        "switchboard_store_failed_batches_total",
        Counter,
        "Batches whose write or fsync failed (their messages were refused).",
        stats.failed_batches,
    );
    out.single(
        "switchboard_store_backlog_refusals_total",
        Counter,
        "Appends refused because the commit queue was full (the disk is behind the load).",
        stats.backlog_refusals,
    );
    out.family(
        "switchboard_store_disk_bytes",
        Gauge,
        "Bytes on disk of the durable store, by kind.",
        &[
            (&[("kind", "log")], disk.segment_bytes),
            (&[("kind", "snapshot")], disk.snapshot_bytes),
        ],
    );
}

/// `family` takes borrowed label slices; samples built at run time (one per
/// listener) own theirs, so this lends them out.
fn borrow_labels<'a>(
    samples: &'a [(Vec<(&'a str, &'a str)>, u64)],
) -> Vec<(&'a [(&'a str, &'a str)], u64)> {
    samples
        .iter()
        .map(|(labels, value)| (labels.as_slice(), *value))
        .collect()
}

pub(crate) async fn handler(State(state): State<Console>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_with_help_type_and_escaped_labels() {
        let mut out = Exposition::new();
        out.family(
            "x_total",
            Kind::Counter,
            "a\\b\nc",
            &[(&[("a", "q\"u\\o\nte")], 3), (&[("a", "b"), ("c", "d")], 4)],
        );
        out.single("y", Kind::Gauge, "plain", 1.5);
        assert_eq!(
            out.out,
            "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\"} 3\nx_total{a=\"b\",c=\"d\"} 4\n\
             # HELP y plain\n# TYPE y gauge\ny 1.5\n"
        );
    }
    #[test]
    fn histograms_have_cumulative_buckets_a_sum_and_a_count() {
        let mut out = Exposition::new();
        let snapshot = HistogramSnapshot {
            bounds: &[100, 2_500_000],
            counts: vec![1, 2, 3],
            sum: 1_500_000,
        };
        out.histogram("h_seconds", "help", &snapshot, 1e6);
        assert_eq!(
            out.out,
            "# HELP h_seconds help\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{le=\"0.0001\"} 1\nh_seconds_bucket{le=\"2.5\"} 3\n\
             h_seconds_bucket{le=\"+Inf\"} 6\nh_seconds_sum 1.5\nh_seconds_count 6\n"
        );
    }
}
