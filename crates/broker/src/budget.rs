//! The memory budget for queued messages across all sessions
//! (`Settings::max_queued_bytes_total`).
//!
//! Each session's queue is bounded on its own (messages and bytes), but ten
//! thousand sessions times a 16 MiB queue is more memory than most machines
//! have. The budget bounds the sum.
//!
//! # What is counted
//!
//! The bytes each session's queue holds, as the session counts them
//! ([`switchboard_session::Session::queued_bytes`]: topic, payload and
//! properties of every delivery not yet sent). A message shared by several
//! queues is charged to each, as the per-session bound does: that is what it
//! costs if the other holders let go. Messages in flight (sent, awaiting
//! acknowledgement) have left the queue: they are bounded per session by the
//! in-flight window, not by this budget.
//!
//! # How it is kept
//!
//! `used` is the sum, over live sessions, of the queue size last *settled*
//! for each. A session is settled whenever its lock is released (see
//! `SessionEntry::lock`), so every enqueue, poll, clear or hand-over is
//! accounted without each call site having to remember it, and a session
//! that ends gives its bytes back. A new delivery first *reserves* its size
//! (compare-and-swap, so concurrent publishers cannot together overshoot);
//! settling then corrects for whatever the session actually did with it.
//!
//! # Policy when the budget is reached
//!
//! Deliveries are admitted in three tiers; a delivery is refused when the
//! bytes already queued plus its own size would pass its tier's ceiling:
//!
//! | delivery | ceiling |
//! |---|---|
//! | to a session without a connection (offline) | 3/4 of the budget |
//! | QoS 0, to a connected session | 7/8 of the budget |
//! | QoS 1 or 2, to a connected session | the whole budget |
//!
//! So offline sessions, which may not drain for days, can never take the
//! memory that live traffic needs; QoS 0 ("at most once") gives way before
//! QoS 1 and 2. Nothing already queued is evicted: order is kept, and the
//! refused delivery is counted (`Metrics::dropped_memory_budget`). Restoring
//! queues from the durable store at start is not refused: it only brings back
//! what was accepted before.

use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_codec::QoS;

/// Which ceiling of the budget applies to a delivery (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// To a session with no connection attached.
    Offline,
    /// QoS 0 to a connected session.
    AtMostOnce,
    /// QoS 1 or 2 to a connected session.
    Reliable,
}

impl Tier {
    pub(crate) fn of(connected: bool, qos: QoS) -> Tier {
        match (connected, qos) {
            (false, _) => Tier::Offline,
            (true, QoS::AtMostOnce) => Tier::AtMostOnce,
            (true, _) => Tier::Reliable,
        }
    }
}

/// Queued bytes across all sessions, and the budget for them.
#[derive(Debug, Default)]
pub(crate) struct QueueBudget {
    /// Bytes settled for every live session plus outstanding reservations.
    used: AtomicUsize,
    /// 0 = unlimited (the sum is still tracked, for metrics).
    limit: usize,
}

impl QueueBudget {
    pub(crate) fn new(limit: usize) -> QueueBudget {
        QueueBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes queued across all sessions.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The most bytes that may be queued for deliveries of `tier`; `None` when
    /// unlimited.
    pub(crate) fn ceiling(&self, tier: Tier) -> Option<usize> {
        if self.limit == 0 {
            return None;
        }
        Some(match tier {
            Tier::Offline => self.limit - self.limit / 4,
            Tier::AtMostOnce => self.limit - self.limit / 8,
            Tier::Reliable => self.limit,
        })
    }

    /// Whether `size` more bytes would fit under `tier`'s ceiling now, without
    /// reserving them (for routing decisions made before delivery).
    pub(crate) fn has_room(&self, size: usize, tier: Tier) -> bool {
        match self.ceiling(tier) {
            None => true,
            Some(ceiling) => self.used().saturating_add(size) <= ceiling,
        }
    }

    /// Adds `size` to the bytes used if that stays under `tier`'s ceiling.
    /// The caller owns the reservation: it must become part of a session's
    /// settled bytes (or be given back with [`QueueBudget::release`]).
    pub(crate) fn try_reserve(&self, size: usize, tier: Tier) -> bool {
        let Some(ceiling) = self.ceiling(tier) else {
            self.used.fetch_add(size, Ordering::Relaxed);
            return true;
        };
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(size).filter(|after| *after <= ceiling)
            })
            .is_ok()
    }

    /// Gives back bytes that were reserved or settled.
    pub(crate) fn release(&self, size: usize) {
        if size > 0 {
            self.used.fetch_sub(size, Ordering::Relaxed);
        }
    }

    /// Moves a session's share from `settled` to `now_queued` bytes.
    pub(crate) fn settle(&self, settled: usize, now_queued: usize) {
        if now_queued > settled {
            self.used.fetch_add(now_queued - settled, Ordering::Relaxed);
        } else {
            self.release(settled - now_queued);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_tracks_but_never_refuses() {
        let budget = QueueBudget::new(0);
        assert!(budget.try_reserve(usize::MAX / 2, Tier::Offline));
        assert!(budget.has_room(usize::MAX / 2, Tier::Offline));
        assert_eq!(budget.used(), usize::MAX / 2);
        budget.release(usize::MAX / 2);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn tiers_have_rising_ceilings() {
        let budget = QueueBudget::new(800);
        assert_eq!(budget.ceiling(Tier::Offline), Some(600));
        assert_eq!(budget.ceiling(Tier::AtMostOnce), Some(700));
        assert_eq!(budget.ceiling(Tier::Reliable), Some(800));
        assert_eq!(Tier::of(false, QoS::ExactlyOnce), Tier::Offline);
        assert_eq!(Tier::of(true, QoS::AtMostOnce), Tier::AtMostOnce);
        assert_eq!(Tier::of(true, QoS::AtLeastOnce), Tier::Reliable);
    }

    #[test]
    fn offline_gives_way_first_then_qos0_then_nothing_passes_the_limit() {
        let budget = QueueBudget::new(800);
        assert!(budget.try_reserve(600, Tier::Offline));
        // The offline tier is full; live traffic still has room.
        assert!(!budget.try_reserve(1, Tier::Offline));
        assert!(!budget.has_room(1, Tier::Offline));
        assert!(budget.try_reserve(100, Tier::AtMostOnce));
        assert!(!budget.try_reserve(1, Tier::AtMostOnce));
        assert!(budget.try_reserve(100, Tier::Reliable));
        assert!(!budget.try_reserve(1, Tier::Reliable));
        assert_eq!(budget.used(), 800);
        // A refused reservation changes nothing.
        assert!(!budget.try_reserve(usize::MAX, Tier::Reliable));
        assert_eq!(budget.used(), 800);
        budget.release(300);
        assert!(budget.try_reserve(100, Tier::Offline));
    }

    #[test]
    fn settle_moves_a_share_both_ways() {
        let budget = QueueBudget::new(0);
        budget.settle(0, 50);
        budget.settle(50, 80);
        assert_eq!(budget.used(), 80);
        budget.settle(80, 10);
        assert_eq!(budget.used(), 10);
        budget.settle(10, 0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let budget = std::sync::Arc::new(QueueBudget::new(10_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .filter(|_| budget.try_reserve(3, Tier::Reliable))
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 10_000 / 3);
        assert_eq!(budget.used(), admitted * 3);
    }
}
