//! The client task: one tokio task per connection, publishing, acknowledging
//! and accounting for what arrives, with no channel or lock in between.
//!
//! # The loop
//!
//! [`drive`] repeats: let the client put what it may send now into the write
//! buffer ([`Client::fill`]: as many PUBLISH packets as the window, schedule
//! and in-flight limits allow, up to [`WRITE_HIGH_WATER`] bytes, all stamped
//! with one clock reading), then wait for whichever comes first: bytes to
//! read, room to write, a freed window, a timer, or the stop signal. Reading
//! never pauses, whatever is waiting to be written: the broker may be blocked
//! writing to us, and a client that stops reading then would deadlock with it.
//! What reading adds to the write buffer (acknowledgements, responses) is
//! bounded by the broker's in-flight limits.
//!
//! # Closed-loop feedback
//!
//! A closed-loop publisher may have at most its window of messages not yet
//! received end to end. Receivers count the copies they got per publisher in
//! a [`Feedback`] (one atomic add per publisher per read batch, not per
//! message). A publisher refills its window only once half of it is free,
//! so it writes at least half a window per syscall rather than a message or
//! two; while it waits it leaves the count it waits for in the `Feedback`,
//! and only the receiver that reaches that count wakes it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Buf, BytesMut};
use switchboard_codec::{Ack, Packet, ProtocolVersion, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::link::{check_suback, put_subscribe, Link};
use crate::payload::Header;
use crate::stats::{Arrival, LatencyRecorder, SequenceTracker, SharedHistogram};
use crate::wire::{self, AckKind, PublishParts};

/// A publisher stops encoding when this much waits to be written: enough for
/// a thousand small messages per write syscall, little enough that a message
/// does not wait long behind the ones encoded before it.
pub(crate) const WRITE_HIGH_WATER: usize = 32 * 1024;

/// A closed-loop publisher whose window has been full this long without a
/// single delivery writes the outstanding messages off as lost (they are
/// counted as lost in the report) and carries on, so a broker that drops
/// messages slows the run down instead of freezing it.
const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests a responder keeps waiting for in-flight room; beyond this it
/// drops them (counted) rather than stop reading.
const RESPONDER_QUEUE_LIMIT: usize = 65_536;

/// Bytes of the payload header that requests carry as correlation data:
/// publisher id and sequence.
const CORRELATION_LEN: usize = 8;

/// The run's clock. Every client measures from one `base`, so send times in
/// payloads and receive times compare directly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) base: Instant,
    /// Messages stamped before this are warm-up: tracked, not measured.
    pub(crate) warmup_ns: u64,
    /// Publishers send nothing stamped at or after this.
    pub(crate) deadline_ns: u64,
}

impl Clock {
    pub(crate) fn ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` after the base (far in the future if that overflows).
    pub(crate) fn at(&self, ns: u64) -> Instant {
        let far = Duration::from_secs(365 * 24 * 3600);
        self.base
            .checked_add(Duration::from_nanos(ns))
            .or_else(|| self.base.checked_add(far))
            .unwrap_or(self.base)
    }
}

/// Deliveries of one publisher's messages, counted by its receivers.
#[derive(Debug)]
pub(crate) struct Feedback {
    /// Distinct copies received, warm-up included.
    delivered: AtomicU64,
    /// Wake the publisher once `delivered` reaches this (`u64::MAX`: nobody waits).
    wake_at: AtomicU64,
    notify: Notify,
}

impl Default for Feedback {
    fn default() -> Feedback {
        Feedback {
            delivered: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Feedback {
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// A receiver got `count` more copies.
    ///
    /// `SeqCst` on both sides (add then read `wake_at` here; store `wake_at`
    /// then read `delivered` in [`Feedback::wait_for`]) means at least one
    /// of the two sees the other: either this add wakes the publisher, or
    /// the publisher sees the count it wanted and does not wait.
    pub(crate) fn add(&self, count: u64) {
        let delivered = self.delivered.fetch_add(count, Ordering::SeqCst) + count;
        if delivered >= self.wake_at.load(Ordering::SeqCst) {
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Asks to be woken once `delivered` reaches `target`; false when it
    /// already has (then there is nothing to wait for).
    fn wait_for(&self, target: u64) -> bool {
        self.wake_at.store(target, Ordering::SeqCst);
        if self.delivered.load(Ordering::SeqCst) >= target {
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// How a publisher paces itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pace {
    /// At most `window` messages not yet delivered end to end.
    Closed { window: u64 },
    /// Message `k` is due `phase_ns + k * interval_ns` after the base.
    Open { interval_ns: f64, phase_ns: u64 },
    /// As fast as the socket takes them (the retained flood).
    Unpaced,
}

/// Where a publisher learns about deliveries of its messages.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    None,
    /// Other clients receive them.
    Shared(Arc<Feedback>),
    /// This client receives them itself (a requester's responses).
    Local,
}

/// Which topic each message goes to.
#[derive(Debug, Clone)]
pub(crate) enum Topics {
    Fixed(Vec<u8>),
    /// `prefix/<sequence>`: one topic per message (retained flood).
    Numbered {
        prefix: String,
        scratch: String,
    },
}

impl Topics {
    pub(crate) fn numbered(prefix: String) -> Topics {
        Topics::Numbered {
            prefix,
            scratch: String::new(),
        }
    }
}

/// Everything a publishing client is told.
#[derive(Debug, Clone)]
pub(crate) struct SenderConfig {
    pub(crate) id: u32,
    pub(crate) topics: Topics,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    /// Payload after the header; `None` sends empty payloads (retained deletes).
    pub(crate) padding: Option<Arc<[u8]>>,
    /// Requests: the topic responses should go to (correlation data follows).
    pub(crate) response_topic: Option<Vec<u8>>,
    pub(crate) pace: Pace,
    /// Measured messages to send at most.
    pub(crate) quota: Option<u64>,
    /// Receivers of each message.
    pub(crate) copies: u64,
    pub(crate) progress: Progress,
    /// After sending stops, how long to wait for acknowledgements (and local deliveries).
    pub(crate) drain: Duration,
    /// QoS 0: end with a PINGREQ and wait for its PINGRESP, so every PUBLISH
    /// before it has been processed by the broker (it reads in order).
    pub(crate) sync_on_finish: bool,
}

/// What a publisher did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SenderOutcome {
    pub(crate) id: u32,
    pub(crate) copies: u64,
    pub(crate) sent_total: u64,
    pub(crate) sent_measured: u64,
    /// Times the window was written off after [`STALL_TIMEOUT`].
    pub(crate) stalls: u64,
    /// When sending stopped, since the base.
    pub(crate) finished_ns: u64,
    /// Sent but not acknowledged when the drain time ran out.
    pub(crate) unacknowledged: u64,
}

#[derive(Debug)]
struct Sender {
    config: SenderConfig,
    sequence: u32,
    sent_total: u64,
    sent_measured: u64,
    local_delivered: u64,
    written_off: u64,
    stalls: u64,
    /// Window full since, with deliveries seen then.
    stall: Option<(Instant, u64)>,
    finished_at: Option<Instant>,
    finished_ns: u64,
    /// PINGREQ count to wait for before done (`sync_on_finish`).
    sync_ping: Option<u64>,
    blocked_on_window: bool,
    wake: Option<Instant>,
}

impl Sender {
    fn new(config: SenderConfig) -> Sender {
        Sender {
            config,
            sequence: 0,
            sent_total: 0,
            sent_measured: 0,
            local_delivered: 0,
            written_off: 0,
            stalls: 0,
            stall: None,
            finished_at: None,
            finished_ns: 0,
            sync_ping: None,
            blocked_on_window: false,
            wake: None,
        }
    }

    fn delivered(&self) -> u64 {
        match &self.config.progress {
            Progress::None => 0,
            Progress::Shared(feedback) => feedback.delivered(),
            Progress::Local => self.local_delivered,
        }
    }

    /// Copies sent and neither delivered nor written off.
    fn pending_copies(&self) -> u64 {
        let copies = self.config.copies.max(1);
        (self.sent_total * copies).saturating_sub(self.delivered() + self.written_off)
    }

    fn finish(&mut self, now: Instant, now_ns: u64, pings: &mut Pings, out: &mut BytesMut) {
        self.finished_at = Some(now);
        self.finished_ns = now_ns;
        if self.config.sync_on_finish && self.config.qos == QoS::AtMostOnce {
            wire::put_pingreq(out);
            pings.sent += 1;
            self.sync_ping = Some(pings.sent);
        }
    }

    /// Puts what may be sent now into `out`.
    fn fill(
        &mut self,
        now: Instant,
        clock: &Clock,
        version: ProtocolVersion,
        outbound: &mut Outbound,
        pings: &mut Pings,
        out: &mut BytesMut,
    ) -> anyhow::Result<()> {
        self.blocked_on_window = false;
        self.wake = None;
        if self.finished_at.is_some() {
            return Ok(());
        }
        let now_ns = clock.ns(now);
        let quota_left = self
            .config
            .quota
            .map(|quota| quota.saturating_sub(self.sent_measured));
        if now_ns >= clock.deadline_ns || quota_left == Some(0) || self.sequence == u32::MAX {
            self.finish(now, now_ns.min(clock.deadline_ns), pings, out);
            return Ok(());
        }
        self.wake = Some(clock.at(clock.deadline_ns));
        let measured = now_ns >= clock.warmup_ns;
        let room = if self.config.qos == QoS::AtMostOnce {
            u64::MAX
        } else {
            outbound.room()
        };
        let quota_cap = if measured { quota_left } else { None };
        let mut allowed = match self.config.pace {
            Pace::Unpaced => u64::MAX,
            Pace::Closed { window } => {
                // Half a window (or half the in-flight cap) at a time, never
                // more than the quota still needs.
                let mut threshold = (window / 2).max(1);
                if self.config.qos != QoS::AtMostOnce {
                    threshold = threshold.min((outbound.cap / 2).max(1));
                }
                if let Some(left) = quota_cap {
                    threshold = threshold.min(left);
                }
                let free = self.window_free(now, window, threshold);
                if free.min(room) < threshold {
                    0
                } else {
                    free
                }
            }
            Pace::Open {
                interval_ns,
                phase_ns,
            } => {
                let due = due_count(now_ns, phase_ns, interval_ns);
                let allowed = due.saturating_sub(self.sent_total);
                if allowed == 0 {
                    let next = phase_ns as f64 + self.sent_total as f64 * interval_ns;
                    self.wake_at(clock.at(next as u64));
                }
                allowed
            }
        };
        allowed = allowed.min(room);
        if let Some(left) = quota_cap {
            allowed = allowed.min(left);
        }
        let header_time = now_ns;
        while allowed > 0 && out.len() < WRITE_HIGH_WATER && self.sequence < u32::MAX {
            let packet_id = if self.config.qos == QoS::AtMostOnce {
                0
            } else {
                match outbound.allocate() {
                    Some(id) => id,
                    None => break,
                }
            };
            self.put_message(version, packet_id, header_time, out)?;
            self.sequence += 1;
            self.sent_total += 1;
            if measured {
                self.sent_measured += 1;
            }
            allowed -= 1;
        }
        Ok(())
    }

    /// Closed loop: free slots in the window. When fewer than `threshold`
    /// are free, asks the receivers to wake this publisher once there are,
    /// and arms the stall timer.
    fn window_free(&mut self, now: Instant, window: u64, threshold: u64) -> u64 {
        if matches!(self.config.progress, Progress::None) {
            return u64::MAX;
        }
        let copies = self.config.copies.max(1);
        let free = window.saturating_sub(self.pending_copies().div_ceil(copies));
        if free >= threshold {
            self.stall = None;
            return free;
        }
        if let Progress::Shared(feedback) = &self.config.progress {
            // `threshold` slots are free once at most `window - threshold`
            // messages' copies are pending.
            let target = (self.sent_total * copies)
                .saturating_sub(self.written_off)
                .saturating_sub((window - threshold) * copies);
            if !feedback.wait_for(target) {
                return window.saturating_sub(self.pending_copies().div_ceil(copies));
            }
            self.blocked_on_window = true;
        }
        let delivered = self.delivered();
        match self.stall {
            Some((since, seen)) if seen == delivered => {
                if now.saturating_duration_since(since) >= STALL_TIMEOUT {
                    self.written_off += self.pending_copies();
                    self.stalls += 1;
                    self.stall = None;
                    self.blocked_on_window = false;
                    return window;
                }
                self.wake_at(since + STALL_TIMEOUT);
            }
            _ => {
                self.stall = Some((now, delivered));
                self.wake_at(now + STALL_TIMEOUT);
            }
        }
        free
    }

    fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |wake| wake.min(at)));
    }

    fn put_message(
        &mut self,
        version: ProtocolVersion,
        packet_id: u16,
        sent_ns: u64,
        out: &mut BytesMut,
    ) -> anyhow::Result<()> {
        let header = Header {
            publisher: self.config.id,
            sequence: self.sequence,
            sent_ns,
        }
        .to_bytes();
        let (head, tail): (&[u8], &[u8]) = match &self.config.padding {
            Some(padding) => (&header, padding),
            None => (&[], &[]),
        };
        let topic: &[u8] = match &mut self.config.topics {
            Topics::Fixed(topic) => topic,
            Topics::Numbered { prefix, scratch } => {
                scratch.clear();
                let _ = write!(scratch, "{prefix}/{}", self.sequence);
                scratch.as_bytes()
            }
        };
        let correlation = header.get(..CORRELATION_LEN);
        let parts = PublishParts {
            topic,
            qos: self.config.qos,
            retain: self.config.retain,
            packet_id,
            response_topic: self.config.response_topic.as_deref(),
            correlation_data: self.config.response_topic.as_ref().and(correlation),
            head,
            tail,
        };
        wire::put_publish(out, version, &parts)?;
        Ok(())
    }

    fn is_done(&self, now: Instant, outbound: &Outbound, pings: &Pings) -> bool {
        let Some(finished_at) = self.finished_at else {
            return false;
        };
        if now.saturating_duration_since(finished_at) >= self.config.drain {
            return true;
        }
        let synced = self.sync_ping.is_none_or(|ping| pings.answered >= ping);
        let delivered = match self.config.progress {
            Progress::Local => self.pending_copies() == 0,
            _ => true,
        };
        outbound.unacknowledged == 0 && synced && delivered
    }

    fn outcome(&self, outbound: &Outbound) -> SenderOutcome {
        SenderOutcome {
            id: self.config.id,
            copies: self.config.copies,
            sent_total: self.sent_total,
            sent_measured: self.sent_measured,
            stalls: self.stalls,
            finished_ns: self.finished_ns,
            unacknowledged: outbound.unacknowledged,
        }
    }
}

/// How many of a schedule's messages are due by `now_ns`.
pub(crate) fn due_count(now_ns: u64, phase_ns: u64, interval_ns: f64) -> u64 {
    if now_ns < phase_ns || interval_ns <= 0.0 {
        return 0;
    }
    ((now_ns - phase_ns) as f64 / interval_ns) as u64 + 1
}

/// This client's QoS 1/2 publishes in flight.
#[derive(Debug)]
struct Outbound {
    ids: PacketIds,
    unacknowledged: u64,
    /// min(window, broker's Receive Maximum).
    cap: u64,
    /// Acknowledged with an error reason code (v5), e.g. quota exceeded.
    refused: u64,
}

impl Outbound {
    fn room(&self) -> u64 {
        self.cap.saturating_sub(self.unacknowledged)
    }

    fn allocate(&mut self) -> Option<u16> {
        if self.room() == 0 {
            return None;
        }
        let id = self.ids.allocate()?;
        self.unacknowledged += 1;
        Some(id)
    }

    fn release(&mut self, ack: &Ack) {
        if self.ids.release(ack.packet_id) {
            self.unacknowledged = self.unacknowledged.saturating_sub(1);
            if ack.reason_code.is_error() {
                self.refused += 1;
            }
        }
    }

    /// PUBREC: the flow goes on with PUBREL, unless the broker refused.
    fn on_pubrec(&mut self, ack: &Ack, out: &mut BytesMut) {
        if ack.reason_code.is_error() {
            self.release(ack);
        } else if self.ids.in_use(ack.packet_id) {
            wire::put_ack(out, AckKind::PubRel, ack.packet_id);
        }
    }
}

/// Packet identifiers in use: a 65,536-bit set (8 KiB), so an identifier is
/// never reused while its flow is open, whatever order acknowledgements
/// come in.
#[derive(Debug, Clone)]
pub(crate) struct PacketIds {
    in_use: Vec<u64>,
    next: u16,
}

impl PacketIds {
    pub(crate) fn new() -> PacketIds {
        PacketIds {
            in_use: vec![0; 1024],
            next: 1,
        }
    }

    fn slot(&mut self, id: u16) -> (Option<&mut u64>, u64) {
        (self.in_use.get_mut(usize::from(id / 64)), 1u64 << (id % 64))
    }

    pub(crate) fn in_use(&self, id: u16) -> bool {
        self.in_use
            .get(usize::from(id / 64))
            .is_some_and(|word| word & (1u64 << (id % 64)) != 0)
    }

    /// The next free identifier (never 0, [MQTT-2.2.1-3]); `None` when all
    /// 65,535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next;
            self.next = if self.next == u16::MAX {
                1
            } else {
                self.next + 1
            };
            if let (Some(word), bit) = self.slot(id) {
                if *word & bit == 0 {
                    *word |= bit;
                    return Some(id);
                }
            }
        }
        None
    }

    /// Frees `id`; false when it was not in use (a stray acknowledgement).
    pub(crate) fn release(&mut self, id: u16) -> bool {
        match self.slot(id) {
            (Some(word), bit) if *word & bit != 0 => {
                *word &= !bit;
                true
            }
            _ => false,
        }
    }
}

/// Everything a receiving client is told.
#[derive(Debug)]
pub(crate) struct ReceiverConfig {
    /// Publisher ids `first_publisher .. first_publisher + publishers` are tracked.
    pub(crate) first_publisher: u32,
    pub(crate) publishers: usize,
    /// Per tracked publisher, or empty: where to report deliveries.
    pub(crate) feedback: Vec<Arc<Feedback>>,
    /// Every receiver's distinct deliveries, for the coordinator.
    pub(crate) delivered_total: Arc<AtomicU64>,
    pub(crate) histogram: SharedHistogram,
    /// Responses: correlation data must equal the payload's first 8 bytes.
    pub(crate) check_correlation: bool,
    /// Done after this many distinct messages (retained).
    pub(crate) expect: Option<u64>,
}

/// What a receiver saw.
#[derive(Debug, Default)]
pub(crate) struct ReceiverOutcome {
    pub(crate) trackers: Vec<SequenceTracker>,
    /// Distinct messages, warm-up included.
    pub(crate) unique: u64,
    /// Messages that are not from this run's publishers.
    pub(crate) foreign: u64,
    pub(crate) correlation_mismatches: u64,
    pub(crate) first_ns: Option<u64>,
    pub(crate) last_ns: Option<u64>,
    /// Arrival of the last measured message.
    pub(crate) last_measured_ns: Option<u64>,
}

#[derive(Debug)]
struct Receiver {
    first_publisher: u32,
    feedback: Vec<Arc<Feedback>>,
    /// Deliveries in this read batch, per tracked publisher; and which are non-zero.
    batch: Vec<u64>,
    touched: Vec<usize>,
    batch_total: u64,
    delivered_total: Arc<AtomicU64>,
    latency: LatencyRecorder,
    check_correlation: bool,
    expect: Option<u64>,
    warmup_ns: u64,
    outcome: ReceiverOutcome,
}

impl Receiver {
    fn new(config: ReceiverConfig, warmup_ns: u64) -> Receiver {
        let batch = if config.feedback.is_empty() {
            Vec::new()
        } else {
            vec![0; config.publishers]
        };
        Receiver {
            first_publisher: config.first_publisher,
            feedback: config.feedback,
            batch,
            touched: Vec::new(),
            batch_total: 0,
            delivered_total: config.delivered_total,
            latency: LatencyRecorder::new(config.histogram),
            check_correlation: config.check_correlation,
            expect: config.expect,
            warmup_ns,
            outcome: ReceiverOutcome {
                trackers: vec![SequenceTracker::default(); config.publishers],
                ..ReceiverOutcome::default()
            },
        }
    }

    fn record(&mut self, publish: &Publish, now_ns: u64) {
        let outcome = &mut self.outcome;
        let Some(header) = Header::parse(&publish.payload) else {
            outcome.foreign += 1;
            return;
        };
        let Some(index) = header
            .publisher
            .checked_sub(self.first_publisher)
            .and_then(|index| usize::try_from(index).ok())
        else {
            outcome.foreign += 1;
            return;
        };
        let Some(tracker) = outcome.trackers.get_mut(index) else {
            outcome.foreign += 1;
            return;
        };
        if self.check_correlation
            && publish.properties.correlation_data.as_deref()
                != publish.payload.get(..CORRELATION_LEN)
        {
            outcome.correlation_mismatches += 1;
        }
        let measured = header.sent_ns >= self.warmup_ns;
        if tracker.observe(header.sequence, measured) == Arrival::Duplicate {
            return;
        }
        outcome.unique += 1;
        outcome.first_ns.get_or_insert(now_ns);
        outcome.last_ns = Some(now_ns);
        if measured {
            self.latency.record(now_ns.saturating_sub(header.sent_ns));
            outcome.last_measured_ns = Some(now_ns);
        }
        self.batch_total += 1;
        if let Some(count) = self.batch.get_mut(index) {
            if *count == 0 {
                self.touched.push(index);
            }
            *count += 1;
        }
    }

    /// Publishes this read batch's deliveries; returns how many there were.
    fn flush_batch(&mut self) -> u64 {
        for &index in &self.touched {
            if let (Some(count), Some(feedback)) =
                (self.batch.get_mut(index), self.feedback.get(index))
            {
                feedback.add(*count);
                *count = 0;
            }
        }
        self.touched.clear();
        let total = std::mem::take(&mut self.batch_total);
        if total > 0 {
            self.delivered_total.fetch_add(total, Ordering::Release);
        }
        total
    }

    fn is_done(&self) -> bool {
        self.expect
            .is_some_and(|expect| self.outcome.unique >= expect)
    }
}

/// What a responder did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResponderOutcome {
    pub(crate) requests: u64,
    pub(crate) responses: u64,
    /// Requests without a response topic, or beyond the queue limit.
    pub(crate) dropped: u64,
}

/// Answers each request on its response topic with the request's payload
/// and correlation data (MQTT 5 request-response, 4.10).
#[derive(Debug)]
struct Responder {
    qos: QoS,
    queue: VecDeque<Publish>,
    outcome: ResponderOutcome,
}

impl Responder {
    fn accept(&mut self, request: Publish) {
        self.outcome.requests += 1;
        if request.properties.response_topic.is_none() || self.queue.len() >= RESPONDER_QUEUE_LIMIT
        {
            self.outcome.dropped += 1;
            return;
        }
        self.queue.push_back(request);
    }

    fn fill(
        &mut self,
        version: ProtocolVersion,
        outbound: &mut Outbound,
        out: &mut BytesMut,
    ) -> anyhow::Result<()> {
        while out.len() < WRITE_HIGH_WATER {
            let Some(request) = self.queue.front() else {
                break;
            };
            let packet_id = if self.qos == QoS::AtMostOnce {
                0
            } else {
                match outbound.allocate() {
                    Some(id) => id,
                    None => break,
                }
            };
            let topic = request
                .properties
                .response_topic
                .as_deref()
                .unwrap_or_default();
            let parts = PublishParts {
                topic: topic.as_bytes(),
                qos: self.qos,
                retain: false,
                packet_id,
                response_topic: None,
                correlation_data: request.properties.correlation_data.as_deref(),
                head: &request.payload,
                tail: &[],
            };
            wire::put_publish(out, version, &parts)?;
            self.queue.pop_front();
            self.outcome.responses += 1;
        }
        Ok(())
    }
}

/// PINGREQs sent and PINGRESPs received.
#[derive(Debug, Default)]
struct Pings {
    sent: u64,
    answered: u64,
}

/// What a client does. A client has a sender, a receiver, both (requester),
/// or a responder.
#[derive(Debug)]
pub(crate) struct ClientSpec {
    pub(crate) sender: Option<SenderConfig>,
    pub(crate) receiver: Option<ReceiverConfig>,
    /// Respond to requests at this QoS.
    pub(crate) responder: Option<QoS>,
    /// Subscribe from inside the loop (so the SUBSCRIBE time is known and
    /// messages may arrive with the SUBACK); the time is in the outcome.
    pub(crate) subscribe: Option<(String, QoS)>,
    /// Cap on QoS 1/2 messages in flight (also capped by the broker's Receive Maximum).
    pub(crate) inflight: u64,
    /// The client stops by itself at this time whatever else happens.
    pub(crate) until: Option<Instant>,
}

/// What a client did.
#[derive(Debug, Default)]
pub(crate) struct ClientOutcome {
    pub(crate) sender: Option<SenderOutcome>,
    pub(crate) receiver: Option<ReceiverOutcome>,
    pub(crate) responder: Option<ResponderOutcome>,
    /// When the in-loop SUBSCRIBE went out, since the base.
    pub(crate) subscribed_ns: Option<u64>,
    /// QoS 1/2 messages the broker acknowledged with an error reason code.
    pub(crate) refused: u64,
}

#[derive(Debug)]
struct Client {
    sender: Option<Sender>,
    receiver: Option<Receiver>,
    responder: Option<Responder>,
    outbound: Outbound,
    subscribe: Option<(String, QoS)>,
    pending_suback: Option<String>,
    subscribed_ns: Option<u64>,
    pings: Pings,
    next_ping: Instant,
    ping_interval: Duration,
    until: Option<Instant>,
    stopped: bool,
}

impl Client {
    fn new(spec: ClientSpec, link: &Link, clock: &Clock, now: Instant) -> Client {
        let cap = spec
            .inflight
            .clamp(1, u64::from(u16::MAX))
            .min(u64::from(link.receive_maximum));
        let responder = spec.responder.map(|qos| Responder {
            qos,
            queue: VecDeque::new(),
            outcome: ResponderOutcome::default(),
        });
        Client {
            sender: spec.sender.map(Sender::new),
            receiver: spec
                .receiver
                .map(|config| Receiver::new(config, clock.warmup_ns)),
            responder,
            outbound: Outbound {
                ids: PacketIds::new(),
                unacknowledged: 0,
                cap,
                refused: 0,
            },
            subscribe: spec.subscribe,
            pending_suback: None,
            subscribed_ns: None,
            pings: Pings::default(),
            next_ping: now + link.ping_interval,
            ping_interval: link.ping_interval,
            until: spec.until,
            stopped: false,
        }
    }

    fn fill(
        &mut self,
        now: Instant,
        clock: &Clock,
        version: ProtocolVersion,
        out: &mut BytesMut,
    ) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        if let Some((filter, qos)) = self.subscribe.take() {
            put_subscribe(out, version, &filter, qos)?;
            self.subscribed_ns = Some(clock.ns(now));
            self.pending_suback = Some(filter);
        }
        if now >= self.next_ping {
            wire::put_pingreq(out);
            self.pings.sent += 1;
            self.next_ping = now + self.ping_interval;
        }
        if let Some(sender) = &mut self.sender {
            sender.fill(
                now,
                clock,
                version,
                &mut self.outbound,
                &mut self.pings,
                out,
            )?;
        }
        if let Some(responder) = &mut self.responder {
            responder.fill(version, &mut self.outbound, out)?;
        }
        Ok(())
    }

    fn handle(&mut self, packet: Packet, now_ns: u64, out: &mut BytesMut) -> anyhow::Result<()> {
        match packet {
            Packet::Publish(publish) => {
                if let Some(packet_id) = publish.packet_id {
                    match publish.qos {
                        QoS::AtLeastOnce => wire::put_ack(out, AckKind::PubAck, packet_id),
                        QoS::ExactlyOnce => wire::put_ack(out, AckKind::PubRec, packet_id),
                        QoS::AtMostOnce => {}
                    }
                }
                if let Some(responder) = &mut self.responder {
                    responder.accept(publish);
                } else if let Some(receiver) = &mut self.receiver {
                    receiver.record(&publish, now_ns);
                }
            }
            Packet::PubRel(ack) => wire::put_ack(out, AckKind::PubComp, ack.packet_id),
            Packet::PubAck(ack) | Packet::PubComp(ack) => self.outbound.release(&ack),
            Packet::PubRec(ack) => self.outbound.on_pubrec(&ack, out),
            Packet::SubAck(suback) => match self.pending_suback.take() {
                Some(filter) => check_suback(&suback, &filter)?,
                None => bail!("a SUBACK nobody asked for"),
            },
            Packet::PingResp => self.pings.answered += 1,
            Packet::Disconnect(disconnect) => bail!(
                "the broker disconnected this client: reason {}",
                disconnect.reason_code
            ),
            other => bail!("unexpected {} from the broker", other.name()),
        }
        Ok(())
    }

    fn after_batch(&mut self) {
        let Some(receiver) = &mut self.receiver else {
            return;
        };
        let delivered = receiver.flush_batch();
        if let Some(sender) = &mut self.sender {
            if matches!(sender.config.progress, Progress::Local) {
                sender.local_delivered += delivered;
            }
        }
    }

    fn is_done(&self, now: Instant) -> bool {
        if self.stopped || self.until.is_some_and(|until| now >= until) {
            return true;
        }
        if let Some(sender) = &self.sender {
            return sender.is_done(now, &self.outbound, &self.pings);
        }
        self.receiver.as_ref().is_some_and(Receiver::is_done)
    }

    fn wake(&self) -> Instant {
        let mut wake = self.next_ping;
        if let Some(until) = self.until {
            wake = wake.min(until);
        }
        if let Some(sender) = &self.sender {
            if let Some(at) = sender.wake {
                wake = wake.min(at);
            }
            if let Some(finished_at) = sender.finished_at {
                wake = wake.min(finished_at + sender.config.drain);
            }
        }
        wake
    }

    fn window_feedback(&self) -> Option<Arc<Feedback>> {
        match &self.sender.as_ref()?.config.progress {
            Progress::Shared(feedback) => Some(Arc::clone(feedback)),
            _ => None,
        }
    }

    fn outcome(mut self) -> ClientOutcome {
        if let Some(receiver) = &mut self.receiver {
            receiver.latency.flush();
        }
        ClientOutcome {
            sender: self
                .sender
                .as_ref()
                .map(|sender| sender.outcome(&self.outbound)),
            receiver: self.receiver.map(|receiver| receiver.outcome),
            responder: self.responder.map(|responder| responder.outcome),
            subscribed_ns: self.subscribed_ns,
            refused: self.outbound.refused,
        }
    }
}

/// Runs one client on its connection until it is done, told to stop, or
/// fails; then disconnects normally.
pub(crate) async fn run_client(
    mut link: Link,
    spec: ClientSpec,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ClientOutcome> {
    let outcome = drive_client(&mut link, spec, &clock, &mut stop).await?;
    link.disconnect().await;
    Ok(outcome)
}

/// Runs one client on a connection that stays open afterwards (for a
/// scenario in phases).
pub(crate) async fn drive_client(
    link: &mut Link,
    spec: ClientSpec,
    clock: &Clock,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<ClientOutcome> {
    let mut client = Client::new(spec, link, clock, Instant::now());
    drive(link, &mut client, clock, stop).await?;
    Ok(client.outcome())
}

async fn drive(
    link: &mut Link,
    client: &mut Client,
    clock: &Clock,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let version = link.version;
    let feedback = client.window_feedback();
    if *stop.borrow() {
        client.stopped = true;
    }
    // One timer and one stop future for the whole run, not one per loop: a
    // thousand subscriber tasks each registering a timer per wake-up would
    // cost more than the messages themselves.
    let mut armed = client.wake();
    let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(armed));
    tokio::pin!(timer);
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let now = Instant::now();
        client.fill(now, clock, version, &mut link.write_buf)?;
        if client.is_done(now) && link.write_buf.is_empty() {
            return Ok(());
        }
        let wake = client.wake();
        if wake != armed {
            timer.as_mut().reset(tokio::time::Instant::from_std(wake));
            armed = wake;
        }
        let blocked = client
            .sender
            .as_ref()
            .is_some_and(|sender| sender.blocked_on_window)
            && feedback.is_some();
        link.reserve_read();
        let (mut reader, mut writer) = link.stream.split();
        tokio::select! {
            biased;
            read = reader.read_buf(&mut link.read_buf) => {
                if read? == 0 {
                    bail!("the broker closed the connection");
                }
                let now_ns = clock.ns(Instant::now());
                while let Some(packet) = link.decoder.decode(&mut link.read_buf)? {
                    client.handle(packet, now_ns, &mut link.write_buf)?;
                }
                client.after_batch();
            }
            written = writer.write(&link.write_buf), if !link.write_buf.is_empty() => {
                let written = written?;
                if written == 0 {
                    bail!("the broker stopped accepting data");
                }
                link.write_buf.advance(written);
            }
            () = window_freed(feedback.as_deref()), if blocked => {}
            () = &mut timer => {}
            // A dropped sender means the coordinator is gone: stop too.
            _ = &mut stopped, if !client.stopped => client.stopped = true,
        }
    }
}

async fn window_freed(feedback: Option<&Feedback>) {
    match feedback {
        Some(feedback) => feedback.notify.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use super::*;

    #[test]
    fn packet_ids_are_never_zero_and_never_reused_while_in_use() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        assert!(ids.in_use(1));
        assert!(ids.release(1));
        assert!(
            !ids.release(1),
            "a second release is a stray acknowledgement"
        );
        assert!(!ids.in_use(1));
        // Exhaust the space: 65,534 more (2 is still in use).
        let mut count = 0;
        while ids.allocate().is_some() {
            count += 1;
        }
        assert_eq!(count, 65_534);
        assert!(ids.release(40_000));
        assert_eq!(ids.allocate(), Some(40_000));
        assert_eq!(ids.allocate(), None);
        assert!(!ids.release(0));
    }

    fn closed_sender(window: u64, feedback: &Arc<Feedback>) -> (Sender, Outbound, Clock) {
        let sender = Sender::new(SenderConfig {
            id: 0,
            topics: Topics::Fixed(b"t".to_vec()),
            qos: QoS::AtMostOnce,
            retain: false,
            padding: Some(Arc::from(&[][..])),
            response_topic: None,
            pace: Pace::Closed { window },
            quota: None,
            copies: 1,
            progress: Progress::Shared(Arc::clone(feedback)),
            drain: Duration::from_secs(1),
            sync_on_finish: false,
        });
        let outbound = Outbound {
            ids: PacketIds::new(),
            unacknowledged: 0,
            cap: 100,
            refused: 0,
        };
        let clock = Clock {
            base: Instant::now(),
            warmup_ns: 0,
            deadline_ns: u64::MAX / 2,
        };
        (sender, outbound, clock)
    }

    #[test]
    fn closed_loop_refills_half_a_window_at_a_time() {
        let feedback = Arc::new(Feedback::default());
        let (mut sender, mut outbound, clock) = closed_sender(10, &feedback);
        let mut pings = Pings::default();
        let mut out = BytesMut::new();
        let mut fill = |sender: &mut Sender, out: &mut BytesMut| {
            sender
                .fill(
                    Instant::now(),
                    &clock,
                    ProtocolVersion::V5,
                    &mut outbound,
                    &mut pings,
                    out,
                )
                .unwrap();
        };
        fill(&mut sender, &mut out);
        assert_eq!(sender.sent_total, 10, "a whole window at first");
        fill(&mut sender, &mut out);
        assert_eq!(sender.sent_total, 10);
        assert!(sender.blocked_on_window);
        // Four delivered: fewer than half the window is free, nobody is woken.
        feedback.add(4);
        assert!(!woken(&feedback));
        fill(&mut sender, &mut out);
        assert_eq!(sender.sent_total, 10, "waits for half a window");
        // The fifth frees half the window: the publisher is woken and refills it.
        feedback.add(1);
        assert!(woken(&feedback));
        fill(&mut sender, &mut out);
        assert_eq!(sender.sent_total, 15);
        assert_eq!(sender.stalls, 0);
    }

    #[test]
    fn feedback_already_reached_needs_no_wait() {
        let feedback = Feedback::default();
        feedback.add(7);
        assert!(!feedback.wait_for(7));
        assert!(feedback.wait_for(8));
        feedback.add(1);
        assert!(woken(&feedback));
    }

    /// True when a wake-up is pending (consumes it).
    fn woken(feedback: &Feedback) -> bool {
        let notified = feedback.notify.notified();
        tokio::pin!(notified);
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        notified.as_mut().poll(&mut context).is_ready()
    }

    #[test]
    fn schedule_due_counts() {
        // 1000 msg/s: one every 1 ms, phase 0.5 ms.
        let interval = 1_000_000.0;
        assert_eq!(due_count(0, 500_000, interval), 0);
        assert_eq!(due_count(500_000, 500_000, interval), 1);
        assert_eq!(due_count(1_499_999, 500_000, interval), 1);
        assert_eq!(due_count(1_500_000, 500_000, interval), 2);
        assert_eq!(due_count(1_000_500_000, 500_000, interval), 1001);
    }

    #[test]
    fn outbound_cap_and_refusals() {
        let mut outbound = Outbound {
            ids: PacketIds::new(),
            unacknowledged: 0,
            cap: 2,
            refused: 0,
        };
        let first = outbound.allocate().unwrap();
        let second = outbound.allocate().unwrap();
        assert_eq!(outbound.allocate(), None, "the cap holds");
        outbound.release(&Ack::new(first));
        assert_eq!(outbound.room(), 1);
        let mut out = BytesMut::new();
        outbound.on_pubrec(&Ack::new(second), &mut out);
        assert_eq!(
            &out[..],
            &[0x62, 2, 0, second as u8],
            "PUBREL follows PUBREC"
        );
        assert_eq!(outbound.unacknowledged, 1, "open until PUBCOMP");
        outbound.on_pubrec(
            &Ack::with_reason(second, switchboard_codec::ReasonCode::QUOTA_EXCEEDED),
            &mut out,
        );
        assert_eq!((outbound.unacknowledged, outbound.refused), (0, 1));
        outbound.release(&Ack::new(999));
        assert_eq!(
            outbound.unacknowledged, 0,
            "stray acknowledgements change nothing"
        );
    }
}
