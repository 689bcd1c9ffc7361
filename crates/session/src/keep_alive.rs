//! The server's side of Keep Alive (3.1.2.10).

use std::time::{Duration, Instant};

/// Tracks when the client was last heard from. The server must close the
/// connection if nothing arrives within one and a half times the Keep Alive
/// interval ([MQTT-3.1.2-24] in 3.1.1, [MQTT-3.1.2-22] in 5.0); an interval
/// of 0 turns the mechanism off.
///
/// Call order: `new` when CONNECT is accepted (with the interval in force:
/// the client's, or the Server Keep Alive sent in CONNACK), `on_activity`
/// for every control packet received, and sleep until `deadline`, then ask
/// `is_expired` (activity may have moved the deadline meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// 1.5 x the interval; `None` when keep alive is off.
    grace: Option<Duration>,
    last_activity: Instant,
}

impl KeepAlive {
    pub fn new(interval_secs: u16, now: Instant) -> KeepAlive {
        let grace = (interval_secs != 0)
            .then(|| Duration::from_millis(u64::from(interval_secs).saturating_mul(1500)));
        KeepAlive {
            grace,
            last_activity: now,
        }
    }

    /// A control packet arrived: any packet counts, not only PINGREQ.
    pub fn on_activity(&mut self, now: Instant) {
        // A caller's clock that went backwards must not move the deadline back.
        if now > self.last_activity {
            self.last_activity = now;
        }
    }

    /// When the connection must be closed if nothing arrives first; `None`
    /// when keep alive is off (or the deadline is beyond what `Instant` can
    /// represent).
    pub fn deadline(&self) -> Option<Instant> {
        self.last_activity.checked_add(self.grace?)
    }

    /// True once the deadline is reached. Inclusive, so a timer that fires
    /// exactly at [`KeepAlive::deadline`] sees it expired rather than
    /// re-arming for the same instant forever.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_after_one_and_a_half_intervals_of_silence() {
        // [MQTT-3.1.2-22] (5.0), [MQTT-3.1.2-24] (3.1.1)
        let t0 = Instant::now();
        let keep_alive = KeepAlive::new(10, t0);
        assert_eq!(keep_alive.deadline(), Some(t0 + Duration::from_secs(15)));
        assert!(!keep_alive.is_expired(t0 + Duration::from_millis(14_999)));
        assert!(keep_alive.is_expired(t0 + Duration::from_secs(15)));
    }

    #[test]
    fn odd_intervals_keep_the_half_second() {
        let t0 = Instant::now();
        let keep_alive = KeepAlive::new(1, t0);
        assert_eq!(
            keep_alive.deadline(),
            Some(t0 + Duration::from_millis(1500))
        );
        let keep_alive = KeepAlive::new(u16::MAX, t0);
        assert_eq!(
            keep_alive.deadline(),
            Some(t0 + Duration::from_millis(65_535 * 1500))
        );
    }

    #[test]
    fn activity_moves_the_deadline() {
        let t0 = Instant::now();
        let mut keep_alive = KeepAlive::new(10, t0);
        keep_alive.on_activity(t0 + Duration::from_secs(12));
        assert!(!keep_alive.is_expired(t0 + Duration::from_secs(20)));
        assert_eq!(keep_alive.deadline(), Some(t0 + Duration::from_secs(27)));
        assert!(keep_alive.is_expired(t0 + Duration::from_secs(27)));
    }

    #[test]
    fn activity_from_the_past_is_ignored() {
        let t0 = Instant::now();
        let mut keep_alive = KeepAlive::new(10, t0 + Duration::from_secs(5));
        keep_alive.on_activity(t0);
        assert_eq!(keep_alive.deadline(), Some(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn interval_zero_never_expires() {
        // 3.1.2.10: a Keep Alive of 0 turns the mechanism off.
        let t0 = Instant::now();
        let keep_alive = KeepAlive::new(0, t0);
        assert_eq!(keep_alive.deadline(), None);
        assert!(!keep_alive.is_expired(t0 + Duration::from_secs(1_000_000)));
    }
}
