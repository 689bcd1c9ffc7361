//! Fixed-bucket histograms of the commit thread's work (how long a batch
//! takes to reach the disk, how many records it carries), for the broker's
//! metrics. The commit thread adds with relaxed atomics; a reader takes a
//! [`HistogramSnapshot`] at any time without stopping it. A snapshot taken
//! while a batch is being counted may see that batch in some fields and not
//! others; metrics tolerate that.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds of the commit latency histogram, in microseconds: from a
/// fast NVMe fsync (~100 µs) to a disk in trouble (seconds).
pub const COMMIT_MICROS_BOUNDS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// Bucket bounds of the records-per-batch histogram: powers of two, since
/// group commit grows batches with the load by itself.
pub const BATCH_RECORDS_BOUNDS: &[u64] =
    &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 4_096, 16_384];

/// Counts of observations at or below each bound, and above the last.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus one for everything above the last.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, value: u64) {
        let index = self.bounds.partition_point(|bound| *bound < value);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .buckets
                .iter()
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Upper bounds (inclusive) of the buckets, ascending.
    pub bounds: &'static [u64],
    /// Observations per bucket (not cumulative): `counts[i]` are those above
    /// `bounds[i - 1]` and at most `bounds[i]`; the last, one more than
    /// `bounds`, those above every bound.
    pub counts: Vec<u64>,
    /// Sum of all observed values.
    pub sum: u64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(bound, observations at or below it)` for each bound, as Prometheus
    /// `le` buckets want them; the `+Inf` bucket is [`Self::count`].
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut total = 0u64;
        self.bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count;
                (*bound, total)
            })
            .collect()
    }
}

/// What the commit thread has measured so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStats {
    /// Microseconds from the start of a batch's write to the end of its
    /// fsync (with `SyncMode::Periodic`, the write alone), successful
    /// batches only. Bounds: [`COMMIT_MICROS_BOUNDS`].
    pub commit_micros: HistogramSnapshot,
    /// Records per successfully written batch. Bounds:
    /// [`BATCH_RECORDS_BOUNDS`].
    pub batch_records: HistogramSnapshot,
    /// Bytes of successfully written batches, framing included.
    pub batch_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = Histogram::new(&[1, 10, 100]);
        for value in [0, 1, 2, 10, 11, 100, 101, 5_000] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 2, 2, 2]);
        assert_eq!(snapshot.count(), 8);
        assert_eq!(snapshot.sum, 5_225);
        assert_eq!(snapshot.cumulative(), vec![(1, 2), (10, 4), (100, 6)]);
    }

    #[test]
    fn bounds_ascend() {
        for bounds in [COMMIT_MICROS_BOUNDS, BATCH_RECORDS_BOUNDS] {
            assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
