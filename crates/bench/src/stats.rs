//! Accounting: sequence tracking (loss, duplicates, reordering) and latency.
//!
//! Each receiving client keeps one [`SequenceTracker`] per publisher it hears
//! from, and records latencies into a [`LatencyRecorder`] that batches them
//! into one shared HDR histogram. Everything here is synchronous and owned by
//! one task; the only shared state is the histogram behind a mutex, taken once
//! per [`LATENCY_BATCH`] samples.

use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;

/// How far below the highest sequence seen a late arrival can still be told
/// apart from a duplicate: one bit per sequence number.
pub(crate) const REORDER_WINDOW: u64 = 128;

/// Latency samples a task buffers before taking the histogram's lock: large
/// enough that a thousand subscriber tasks do not contend, small enough that
/// the buffer is a few KiB.
const LATENCY_BATCH: usize = 512;

/// Three significant figures: 0.1 % resolution, plenty for percentiles.
const HISTOGRAM_SIGNIFICANT_FIGURES: u8 = 3;

/// What one arrival turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The next sequence, or a later one (the ones skipped may arrive late or never).
    InOrder,
    /// Below the highest sequence already seen, and not seen before.
    Reordered,
    /// Seen before (a redelivery).
    Duplicate,
}

/// Per (receiver, publisher) sequence accounting.
///
/// Invariant: `next` is one past the highest sequence seen, and bit `i` of
/// `seen` is set when sequence `next - 1 - i` has arrived. A late arrival
/// more than [`REORDER_WINDOW`] below the highest cannot be checked against
/// `seen`; it is counted as reordered (and unique): a broker that redelivers
/// a message that old, without a reconnect, would go unnoticed, which the
/// bounded memory (16 bytes per publisher and receiver) is worth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SequenceTracker {
    next: u64,
    seen: u128,
    /// Distinct messages received (duplicates excluded), warm-up included.
    pub(crate) unique: u64,
    /// Distinct messages received that were sent after the warm-up.
    pub(crate) measured: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
}

impl SequenceTracker {
    /// Accounts one arrival of `sequence`; `measured` says whether it was sent
    /// after the warm-up (only then does it count in `measured`).
    pub(crate) fn observe(&mut self, sequence: u32, measured: bool) -> Arrival {
        let sequence = u64::from(sequence);
        let arrival = if sequence >= self.next {
            let shift = sequence - self.next + 1;
            self.seen = if shift >= REORDER_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.next = sequence + 1;
            Arrival::InOrder
        } else {
            let distance = self.next - 1 - sequence;
            if distance < REORDER_WINDOW {
                let bit = 1u128 << distance;
                if self.seen & bit != 0 {
                    Arrival::Duplicate
                } else {
                    self.seen |= bit;
                    Arrival::Reordered
                }
            } else {
                Arrival::Reordered
            }
        };
        match arrival {
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::Reordered => {
                self.reordered += 1;
                self.count(measured);
            }
            Arrival::InOrder => self.count(measured),
        }
        arrival
    }

    fn count(&mut self, measured: bool) {
        self.unique += 1;
        if measured {
            self.measured += 1;
        }
    }
}

/// The one histogram of a scenario run, in nanoseconds.
pub(crate) type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

/// A fresh, empty latency histogram that grows as needed.
pub(crate) fn new_histogram() -> anyhow::Result<SharedHistogram> {
    let histogram = Histogram::new(HISTOGRAM_SIGNIFICANT_FIGURES)
        .map_err(|error| anyhow::anyhow!("cannot create the latency histogram: {error:?}"))?;
    Ok(Arc::new(Mutex::new(histogram)))
}

/// Buffers samples and adds them to the shared histogram in batches.
#[derive(Debug)]
pub(crate) struct LatencyRecorder {
    buffer: Vec<u64>,
    shared: SharedHistogram,
}

impl LatencyRecorder {
    pub(crate) fn new(shared: SharedHistogram) -> LatencyRecorder {
        LatencyRecorder {
            buffer: Vec::with_capacity(LATENCY_BATCH),
            shared,
        }
    }

    pub(crate) fn record(&mut self, nanoseconds: u64) {
        self.buffer.push(nanoseconds);
        if self.buffer.len() >= LATENCY_BATCH {
            self.flush();
        }
    }

    /// Adds what is buffered to the shared histogram.
    pub(crate) fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut histogram = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        for &value in &self.buffer {
            // `record` grows the (auto-resizing) histogram; `saturating_record`
            // would clamp to its current range instead. Growth only fails
            // beyond what a u64 of nanoseconds can hold; clamp then.
            if histogram.record(value).is_err() {
                histogram.saturating_record(value);
            }
        }
        drop(histogram);
        self.buffer.clear();
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Percentiles of a run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) samples: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

impl LatencySummary {
    /// `None` when nothing was recorded.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        let micros = |nanoseconds: u64| nanoseconds as f64 / 1000.0;
        Some(LatencySummary {
            samples: histogram.len(),
            p50_us: micros(histogram.value_at_quantile(0.5)),
            p99_us: micros(histogram.value_at_quantile(0.99)),
            p999_us: micros(histogram.value_at_quantile(0.999)),
            max_us: micros(histogram.max()),
        })
    }
}

/// Loss, duplicates and reordering summed over every tracker of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Copies that should have arrived: measured messages sent times the
    /// receivers each one is for.
    pub(crate) expected: u64,
    /// Distinct measured copies that arrived.
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
}

impl Delivery {
    pub(crate) fn add_tracker(&mut self, tracker: &SequenceTracker) {
        self.received += tracker.measured;
        self.duplicates += tracker.duplicates;
        self.reordered += tracker.reordered;
    }

    /// Expected copies that never arrived.
    pub(crate) fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Lost as a percentage of expected (0 when nothing was expected).
    pub(crate) fn loss_percent(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost() as f64 * 100.0 / self.expected as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(sequences: &[u32]) -> (SequenceTracker, Vec<Arrival>) {
        let mut tracker = SequenceTracker::default();
        let arrivals = sequences
            .iter()
            .map(|&sequence| tracker.observe(sequence, true))
            .collect();
        (tracker, arrivals)
    }

    #[test]
    fn in_order_stream_has_no_loss_or_reordering() {
        let sequences: Vec<u32> = (0..1000).collect();
        let (tracker, arrivals) = feed(&sequences);
        assert!(arrivals.iter().all(|&arrival| arrival == Arrival::InOrder));
        assert_eq!(tracker.unique, 1000);
        assert_eq!(tracker.measured, 1000);
        assert_eq!((tracker.duplicates, tracker.reordered), (0, 0));
    }

    #[test]
    fn swapped_pair_is_one_reordering() {
        let (tracker, arrivals) = feed(&[0, 2, 1, 3]);
        use Arrival::*;
        assert_eq!(arrivals, [InOrder, InOrder, Reordered, InOrder]);
        assert_eq!(
            (tracker.unique, tracker.reordered, tracker.duplicates),
            (4, 1, 0)
        );
    }

    #[test]
    fn redelivery_is_a_duplicate_not_a_message() {
        let (tracker, arrivals) = feed(&[0, 1, 1, 2, 0]);
        use Arrival::*;
        assert_eq!(arrivals, [InOrder, InOrder, Duplicate, InOrder, Duplicate]);
        assert_eq!((tracker.unique, tracker.duplicates), (3, 2));
    }

    #[test]
    fn gaps_are_loss_until_filled() {
        let (tracker, _) = feed(&[0, 1, 5, 6]);
        let mut delivery = Delivery {
            expected: 7,
            ..Delivery::default()
        };
        delivery.add_tracker(&tracker);
        assert_eq!(delivery.lost(), 3);
        assert!((delivery.loss_percent() - 300.0 / 7.0).abs() < 1e-9);
        // A late arrival inside the window fills a gap.
        let (tracker, _) = feed(&[0, 1, 5, 6, 3]);
        assert_eq!((tracker.unique, tracker.reordered), (5, 1));
    }

    #[test]
    fn window_boundary_and_beyond() {
        let last = REORDER_WINDOW as u32; // 128
                                          // Sequence 1 arrives when the highest is 128: distance 127, still in the window.
        let mut sequences: Vec<u32> = vec![0];
        sequences.push(last);
        sequences.push(1);
        sequences.push(1);
        let (tracker, arrivals) = feed(&sequences);
        assert_eq!(arrivals[2], Arrival::Reordered);
        assert_eq!(arrivals[3], Arrival::Duplicate);
        assert_eq!(tracker.unique, 3);
        // Sequence 0 is 128 below 128: outside the window, counted as a late arrival.
        let (tracker, arrivals) = feed(&[0, last + 1, 0]);
        assert_eq!(arrivals[2], Arrival::Reordered);
        assert_eq!((tracker.unique, tracker.duplicates), (3, 0));
        // A jump larger than the window forgets everything below it.
        let (tracker, _) = feed(&[0, 1_000_000, 999_999]);
        assert_eq!((tracker.unique, tracker.reordered), (3, 1));
    }

    #[test]
    fn highest_sequence_does_not_overflow() {
        let (tracker, arrivals) = feed(&[u32::MAX - 1, u32::MAX, u32::MAX]);
        assert_eq!(
            arrivals,
            [Arrival::InOrder, Arrival::InOrder, Arrival::Duplicate]
        );
        assert_eq!(tracker.unique, 2);
    }

    #[test]
    fn warm_up_messages_are_tracked_but_not_measured() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(0, false);
        tracker.observe(1, false);
        tracker.observe(2, true);
        tracker.observe(2, true);
        assert_eq!(
            (tracker.unique, tracker.measured, tracker.duplicates),
            (3, 1, 1)
        );
    }

    #[test]
    fn loss_with_several_receivers_sums_trackers() {
        // Fan-out: 10 measured messages to 3 subscribers = 30 expected copies.
        let mut delivery = Delivery {
            expected: 30,
            ..Delivery::default()
        };
        let all: Vec<u32> = (0..10).collect();
        let (complete, _) = feed(&all);
        let (missing_two, _) = feed(&[0, 1, 2, 3, 4, 5, 6, 9]);
        let (reordered, _) = feed(&[0, 1, 2, 3, 4, 5, 6, 8, 7, 9]);
        for tracker in [&complete, &missing_two, &reordered] {
            delivery.add_tracker(tracker);
        }
        assert_eq!(delivery.received, 28);
        assert_eq!(delivery.lost(), 2);
        assert_eq!(delivery.reordered, 1);
        assert_eq!(Delivery::default().loss_percent(), 0.0);
    }

    #[test]
    fn percentiles_from_known_samples() {
        let shared = new_histogram().unwrap();
        let mut recorder = LatencyRecorder::new(shared.clone());
        // 1..=1000 µs, one sample each.
        for micros in 1..=1000u64 {
            recorder.record(micros * 1000);
        }
        drop(recorder); // flushes
        let histogram = shared.lock().unwrap();
        let summary = LatencySummary::of(&histogram).unwrap();
        assert_eq!(summary.samples, 1000);
        let close =
            |value: f64, expected: f64| (value - expected).abs() <= expected * 0.001 + 0.001;
        assert!(close(summary.p50_us, 500.0), "{summary:?}");
        assert!(close(summary.p99_us, 990.0), "{summary:?}");
        assert!(close(summary.p999_us, 999.0), "{summary:?}");
        assert!(close(summary.max_us, 1000.0), "{summary:?}");
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        let shared = new_histogram().unwrap();
        assert!(LatencySummary::of(&shared.lock().unwrap()).is_none());
    }

    #[test]
    fn recorder_batches_before_locking() {
        let shared = new_histogram().unwrap();
        let mut recorder = LatencyRecorder::new(shared.clone());
        for _ in 0..LATENCY_BATCH - 1 {
            recorder.record(5_000);
        }
        assert!(shared.lock().unwrap().is_empty());
        recorder.record(5_000);
        assert_eq!(shared.lock().unwrap().len(), LATENCY_BATCH as u64);
    }
}
