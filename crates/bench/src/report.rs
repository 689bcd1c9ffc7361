//! What one scenario run measured, as a table for people or one JSON object
//! per line for scripts.

use std::io::Write;

use serde::Serialize;

use crate::stats::LatencySummary;

/// One scenario run: its parameters, then its figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    /// host:port as given.
    pub(crate) broker: String,
    pub(crate) protocol: &'static str,
    pub(crate) qos: u8,
    pub(crate) payload_bytes: usize,
    pub(crate) publishers: usize,
    pub(crate) subscribers: usize,
    /// Extra subscribers that never read (`--stalled`), not counted anywhere else.
    pub(crate) stalled_subscribers: usize,
    /// Subscribers kept persistent sessions (`--persistent`).
    pub(crate) persistent_sessions: bool,
    /// The MQTT 5 session expiry they asked for; `None` for clean sessions
    /// and in 3.1.1.
    pub(crate) session_expiry_secs: Option<u32>,
    /// "closed" or "open" (`--rate`).
    pub(crate) mode: &'static str,
    /// Closed loop: messages in flight end to end per publisher.
    pub(crate) window_per_publisher: Option<u64>,
    /// Open loop: messages per second asked for, in total.
    pub(crate) target_rate: Option<f64>,
    pub(crate) duration_secs: f64,
    pub(crate) warmup_secs: f64,
    pub(crate) drain_secs: f64,
    pub(crate) count: Option<u64>,
    /// Connecting and subscribing, not part of any rate.
    pub(crate) setup_secs: f64,
    #[serde(flatten)]
    pub(crate) flow: Option<FlowResults>,
    #[serde(flatten)]
    pub(crate) idle: Option<IdleResults>,
    #[serde(flatten)]
    pub(crate) retained: Option<RetainedResults>,
}

/// Figures of the message-flow scenarios (fan-in, fan-out, pairs, req-resp).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlowResults {
    /// From the end of warm-up to when the last publisher stopped.
    pub(crate) measured_secs: f64,
    /// Measured messages published (requests, in req-resp).
    pub(crate) sent: u64,
    pub(crate) sent_per_sec: Option<f64>,
    /// Measured copies that should have arrived (sent x receivers of each).
    pub(crate) expected: u64,
    /// Distinct measured copies that arrived.
    pub(crate) received: u64,
    /// Received per second, from the end of warm-up to the last arrival.
    pub(crate) delivered_per_sec: Option<f64>,
    pub(crate) lost: u64,
    pub(crate) loss_percent: f64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    /// QoS 1/2 messages the broker acknowledged with an error reason code.
    pub(crate) refused: u64,
    /// QoS 1/2 messages still unacknowledged when the drain time ran out.
    pub(crate) unacknowledged: u64,
    /// Closed loop: times a publisher's window was written off as lost.
    pub(crate) window_stalls: u64,
    /// Messages received that were not from this run (no or unknown header).
    pub(crate) foreign: u64,
    /// req-resp: responses whose correlation data did not match the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) correlation_mismatches: Option<u64>,
    /// req-resp: requests the responder could not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) responder_dropped: Option<u64>,
    /// "end-to-end" (publisher to subscriber) or "round-trip" (req-resp).
    pub(crate) latency_kind: &'static str,
    #[serde(rename = "latency_us")]
    pub(crate) latency: Option<LatencySummary>,
}

/// Figures of the `idle` scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdleResults {
    pub(crate) connections: usize,
    pub(crate) connect_secs: f64,
    pub(crate) connects_per_sec: f64,
    /// Connections that answered a PINGREQ at the end.
    pub(crate) alive: usize,
    pub(crate) broker_pid: Option<u32>,
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
    /// (after - before) / connections; negative if the broker shrank.
    pub(crate) bytes_per_connection: Option<f64>,
}

/// Figures of the `retained` scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RetainedResults {
    /// Retained messages stored (published and, at QoS 1/2, acknowledged).
    pub(crate) retained: u64,
    pub(crate) flood_secs: f64,
    pub(crate) flood_per_sec: Option<f64>,
    /// Distinct retained messages the subscriber got.
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    /// From SUBSCRIBE sent to the first / the last retained message.
    pub(crate) time_to_first_ms: Option<f64>,
    /// `None` unless every retained message arrived.
    pub(crate) time_to_all_ms: Option<f64>,
    pub(crate) delivered_per_sec: Option<f64>,
    /// Deleting the retained messages again (empty retained publishes).
    pub(crate) cleanup_secs: f64,
}

impl Report {
    pub(crate) fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)?;
        Ok(())
    }

    pub(crate) fn write_table(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(self.table().as_bytes())?;
        Ok(())
    }

    fn table(&self) -> String {
        let mut lines = vec![self.title()];
        if let Some(flow) = &self.flow {
            lines.extend(flow.lines());
        }
        if let Some(idle) = &self.idle {
            lines.extend(idle.lines());
        }
        if let Some(retained) = &self.retained {
            lines.extend(retained.lines());
        }
        lines.push(format!(
            "  {:<12}{}",
            "setup",
            seconds(self.setup_secs) + " (connecting and subscribing; not measured)"
        ));
        let mut text = lines.join("\n");
        text.push_str("\n\n");
        text
    }

    fn title(&self) -> String {
        let mut title = format!(
            "{} against {}  MQTT {}",
            self.scenario, self.broker, self.protocol
        );
        if self.idle.is_none() {
            title.push_str(&format!("  QoS {}  {} B", self.qos, self.payload_bytes));
        }
        if self.flow.is_some() {
            title.push_str(&format!(
                "  {} -> {}",
                plural(self.publishers, "publisher"),
                plural(self.subscribers, "subscriber")
            ));
            if self.stalled_subscribers > 0 {
                title.push_str(&format!(
                    " (+{} that never read)",
                    count(self.stalled_subscribers as f64)
                ));
            }
            if self.persistent_sessions {
                match self.session_expiry_secs {
                    Some(expiry) => {
                        title.push_str(&format!("  persistent sessions (expiry {expiry} s)"))
                    }
                    None => title.push_str("  persistent sessions"),
                }
            }
            match (self.target_rate, self.window_per_publisher) {
                (Some(rate), _) => title.push_str(&format!("  open loop {} msg/s", count(rate))),
                (None, Some(window)) => {
                    title.push_str(&format!("  closed loop (window {window}/publisher)"))
                }
                (None, None) => {}
            }
            title.push_str(&format!(
                "  {} (+{} warm-up)",
                seconds(self.duration_secs),
                seconds(self.warmup_secs)
            ));
        }
        title
    }
}

impl FlowResults {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "  {:<12}{:>14} msg  {:>12} msg/s  over {}",
                "sent",
                count(self.sent as f64),
                rate(self.sent_per_sec),
                seconds(self.measured_secs)
            ),
            format!(
                "  {:<12}{:>14} msg  {:>12} msg/s  of {} expected",
                "delivered",
                count(self.received as f64),
                rate(self.delivered_per_sec),
                count(self.expected as f64)
            ),
            format!(
                "  {:<12}{} ({:.3} %)  duplicates {}  reordered {}",
                "lost",
                count(self.lost as f64),
                self.loss_percent,
                count(self.duplicates as f64),
                count(self.reordered as f64)
            ),
        ];
        let mut notes = Vec::new();
        if self.refused > 0 {
            notes.push(format!(
                "refused by the broker {}",
                count(self.refused as f64)
            ));
        }
        if self.unacknowledged > 0 {
            notes.push(format!(
                "unacknowledged {}",
                count(self.unacknowledged as f64)
            ));
        }
        if self.window_stalls > 0 {
            notes.push(format!("window stalls {}", self.window_stalls));
        }
        if self.foreign > 0 {
            notes.push(format!("foreign messages {}", self.foreign));
        }
        if let Some(mismatches) = self.correlation_mismatches {
            notes.push(format!("correlation mismatches {mismatches}"));
        }
        if let Some(dropped) = self.responder_dropped.filter(|&dropped| dropped > 0) {
            notes.push(format!("responder dropped {dropped}"));
        }
        if !notes.is_empty() {
            lines.push(format!("  {:<12}{}", "", notes.join("  ")));
        }
        lines.push(match &self.latency {
            Some(latency) => format!(
                "  {:<12}p50 {}  p99 {}  p99.9 {}  max {}  ({} {})",
                "latency",
                micros(latency.p50_us),
                micros(latency.p99_us),
                micros(latency.p999_us),
                micros(latency.max_us),
                count(latency.samples as f64),
                self.latency_kind
            ),
            None => format!("  {:<12}no measured message arrived", "latency"),
        });
        lines
    }
}

impl IdleResults {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "  {:<12}{} in {} = {} connections/s; {} alive at the end",
            "connected",
            count(self.connections as f64),
            seconds(self.connect_secs),
            count(self.connects_per_sec),
            count(self.alive as f64)
        )];
        lines.push(
            match (
                self.rss_before_kib,
                self.rss_after_kib,
                self.bytes_per_connection,
            ) {
                (Some(before), Some(after), Some(per_connection)) => format!(
                    "  {:<12}broker VmRSS {} KiB -> {} KiB = {} bytes per connection",
                    "memory",
                    count(before as f64),
                    count(after as f64),
                    count(per_connection)
                ),
                _ => format!(
                    "  {:<12}pass --broker-pid PID to read the broker's memory per connection",
                    "memory"
                ),
            },
        );
        lines
    }
}

impl RetainedResults {
    fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "  {:<12}{} retained messages in {} = {} msg/s",
                "stored",
                count(self.retained as f64),
                seconds(self.flood_secs),
                rate(self.flood_per_sec)
            ),
            format!(
                "  {:<12}{} of {} after subscribing: first after {}, all after {} ({} msg/s)",
                "received",
                count(self.received as f64),
                count(self.retained as f64),
                millis(self.time_to_first_ms),
                millis(self.time_to_all_ms),
                rate(self.delivered_per_sec)
            ),
            format!(
                "  {:<12}{}  duplicates {}  cleanup {}",
                "lost",
                count(self.lost as f64),
                count(self.duplicates as f64),
                seconds(self.cleanup_secs)
            ),
        ]
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", count(n as f64))
    }
}

/// A whole number with thousands separators.
pub(crate) fn count(value: f64) -> String {
    let negative = value < 0.0;
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if negative {
        grouped.insert(0, '-');
    }
    grouped
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), count)
}

fn seconds(value: f64) -> String {
    format!("{value:.2} s")
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"))
}

/// Microseconds, or milliseconds once large.
fn micros(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} ms", value / 1000.0)
    } else {
        format!("{value:.1} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow_report() -> Report {
        Report {
            scenario: "fan-in",
            broker: "127.0.0.1:1883".into(),
            protocol: "5",
            qos: 1,
            payload_bytes: 16,
            publishers: 16,
            subscribers: 1,
            stalled_subscribers: 0,
            persistent_sessions: false,
            session_expiry_secs: None,
            mode: "closed",
            window_per_publisher: Some(31),
            target_rate: None,
            duration_secs: 10.0,
            warmup_secs: 1.0,
            drain_secs: 2.0,
            count: None,
            setup_secs: 0.01,
            flow: Some(FlowResults {
                measured_secs: 10.0,
                sent: 2_400_000,
                sent_per_sec: Some(240_000.0),
                expected: 2_400_000,
                received: 2_399_990,
                delivered_per_sec: Some(239_999.0),
                lost: 10,
                loss_percent: 10.0 * 100.0 / 2_400_000.0,
                duplicates: 0,
                reordered: 3,
                refused: 0,
                unacknowledged: 0,
                window_stalls: 0,
                foreign: 0,
                correlation_mismatches: None,
                responder_dropped: None,
                latency_kind: "end-to-end",
                latency: Some(LatencySummary {
                    samples: 2_399_990,
                    p50_us: 45.1,
                    p99_us: 120.0,
                    p999_us: 300.5,
                    max_us: 12_000.0,
                }),
            }),
            idle: None,
            retained: None,
        }
    }

    #[test]
    fn json_is_one_line_with_parameters_and_figures() {
        let mut out = Vec::new();
        flow_report().write_json(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["scenario"], "fan-in");
        assert_eq!(value["qos"], 1);
        assert_eq!(value["window_per_publisher"], 31);
        assert_eq!(value["sent"], 2_400_000);
        assert_eq!(value["lost"], 10);
        assert_eq!(value["latency_us"]["p999_us"], 300.5);
        assert!(value.get("correlation_mismatches").is_none());
        assert!(
            value.get("connections").is_none(),
            "idle fields only for idle"
        );
    }

    #[test]
    fn table_shows_rates_loss_and_latency() {
        let table = flow_report().table();
        assert!(
            table.contains("fan-in against 127.0.0.1:1883  MQTT 5  QoS 1  16 B"),
            "{table}"
        );
        assert!(table.contains("16 publishers -> 1 subscriber"), "{table}");
        assert!(table.contains("240,000 msg/s"), "{table}");
        assert!(table.contains("lost        10 (0.000 %)"), "{table}");
        assert!(table.contains("p50 45.1 µs"), "{table}");
        assert!(table.contains("max 12.0 ms"), "{table}");
    }

    #[test]
    fn persistent_sessions_show_in_title_and_json() {
        let mut report = flow_report();
        assert!(!report.table().contains("persistent"));
        report.persistent_sessions = true;
        report.session_expiry_secs = Some(3600);
        let table = report.table();
        assert!(
            table.contains("persistent sessions (expiry 3600 s)"),
            "{table}"
        );
        let mut out = Vec::new();
        report.write_json(&mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["persistent_sessions"], true);
        assert_eq!(value["session_expiry_secs"], 3600);
        report.session_expiry_secs = None;
        assert!(report.table().contains("persistent sessions  closed loop"));
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1000.0), "1,000");
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(-2500.0), "-2,500");
    }
}
