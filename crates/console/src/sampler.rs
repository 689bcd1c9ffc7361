//! Message and byte rates over the last minutes, for the overview charts
//! and `GET /api/v1/status`.
//!
//! One task reads the broker's counters once a second and keeps the rates
//! in a fixed ring (the history). While at least one browser watches the
//! status stream, the same task also builds the status document once a
//! second and broadcasts it, so that N watchers cost one walk over the
//! sessions, not N.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use switchboard_broker::{Broker, Metrics};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Console;

/// One sample a second.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// `status.rates` averages this many samples, so one burst does not make the
/// number jump.
pub(crate) const RATE_WINDOW: usize = 5;
/// Status documents a slow stream may fall behind before it skips ahead.
const STATUS_BACKLOG: usize = 4;

/// Rates over one sampling interval.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Sample {
    /// When the interval ended, in Unix milliseconds.
    pub(crate) t: u64,
    pub(crate) messages_in: f64,
    pub(crate) messages_out: f64,
    pub(crate) bytes_in: f64,
    pub(crate) bytes_out: f64,
    /// Connections at the end of the interval.
    pub(crate) connections: u64,
}

#[derive(Debug, Clone, Copy)]
struct Totals {
    at: Instant,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Totals {
    fn read(metrics: &Metrics, at: Instant) -> Totals {
        Totals {
            at,
            messages_in: Metrics::get(&metrics.messages_received),
            messages_out: Metrics::get(&metrics.messages_sent),
            bytes_in: Metrics::get(&metrics.bytes_received),
            bytes_out: Metrics::get(&metrics.bytes_sent),
        }
    }
}

pub(crate) struct Sampler {
    capacity: usize,
    history: Mutex<VecDeque<Sample>>,
    /// The status document as JSON, once a second while anyone listens.
    status: broadcast::Sender<Arc<str>>,
}

impl Sampler {
    pub(crate) fn new(capacity: usize) -> Sampler {
        let (status, _) = broadcast::channel(STATUS_BACKLOG);
        Sampler {
            capacity,
            history: Mutex::new(VecDeque::with_capacity(capacity)),
            status,
        }
    }

    fn push(&self, sample: Sample) {
        let mut history = self.history.lock();
        if history.len() >= self.capacity {
            history.pop_front();
        }
        history.push_back(sample);
    }

    /// Every sample kept, oldest first.
    pub(crate) fn history(&self) -> Vec<Sample> {
        self.history.lock().iter().copied().collect()
    }

    /// The average of the last [`RATE_WINDOW`] samples (zeros before the first).
    pub(crate) fn recent(&self) -> Sample {
        let history = self.history.lock();
        let count = history.len().min(RATE_WINDOW);
        let mut average = Sample::default();
        if count == 0 {
            return average;
        }
        for sample in history.iter().rev().take(count) {
            average.messages_in += sample.messages_in;
            average.messages_out += sample.messages_out;
            average.bytes_in += sample.bytes_in;
            average.bytes_out += sample.bytes_out;
        }
        let divisor = count as f64;
        average.messages_in /= divisor;
        average.messages_out /= divisor;
        average.bytes_in /= divisor;
        average.bytes_out /= divisor;
        if let Some(last) = history.back() {
            average.t = last.t;
            average.connections = last.connections;
        }
        average
    }

    /// The newest sample.
    pub(crate) fn last(&self) -> Option<Sample> {
        self.history.lock().back().copied()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.status.subscribe()
    }
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds of a monotonic instant in the past (or now).
pub(crate) fn instant_to_unix_ms(at: Instant, now: Instant, wall_now: SystemTime) -> u64 {
    let ago = now.saturating_duration_since(at);
    unix_ms(wall_now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
}

fn rate(now: u64, before: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / seconds
}

fn sample(broker: &Broker, previous: &Totals, current: &Totals) -> Sample {
    let seconds = current
        .at
        .saturating_duration_since(previous.at)
        .as_secs_f64();
    Sample {
        t: unix_ms(SystemTime::now()),
        messages_in: rate(current.messages_in, previous.messages_in, seconds),
        messages_out: rate(current.messages_out, previous.messages_out, seconds),
        bytes_in: rate(current.bytes_in, previous.bytes_in, seconds),
        bytes_out: rate(current.bytes_out, previous.bytes_out, seconds),
        connections: Metrics::get(&broker.metrics().connections_current),
    }
}

/// The sampling task; ends when `cancel` fires.
pub(crate) async fn run(state: Console, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = Totals::read(state.broker.metrics(), Instant::now());
    // The first tick completes at once; the first sample needs an interval.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let current = Totals::read(state.broker.metrics(), Instant::now());
        state
            .sampler
            .push(sample(&state.broker, &previous, &current));
        previous = current;
        if state.sampler.status.receiver_count() > 0 {
            let status = crate::api::status(&state);
            if let Ok(json) = serde_json::to_string(&status) {
                let _ = state.sampler.status.send(Arc::from(json));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_samples_and_averages_the_window() {
        let sampler = Sampler::new(3);
        for index in 0..5u32 {
            sampler.push(Sample {
                t: u64::from(index),
                messages_in: f64::from(index),
                ..Sample::default()
            });
        }
        let history = sampler.history();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].t, 2);
        assert_eq!(history[2].t, 4);
        // The window covers the three samples kept: (2 + 3 + 4) / 3.
        assert_eq!(sampler.recent().messages_in, 3.0);
        assert_eq!(sampler.recent().t, 4);
        assert_eq!(Sampler::new(3).recent().messages_in, 0.0);
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(rate(150, 50, 2.0), 50.0);
        assert_eq!(rate(50, 150, 2.0), 0.0);
        assert_eq!(rate(150, 50, 0.0), 0.0);
    }

    #[test]
    fn instants_become_wall_clock_times() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(100);
        let earlier = now.checked_sub(Duration::from_secs(10)).unwrap();
        assert_eq!(instant_to_unix_ms(earlier, now, wall), 90_000);
        assert_eq!(instant_to_unix_ms(now, now, wall), 100_000);
    }
}
