//! Failed-login throttling per source address, sans-IO: the caller passes
//! `now`, so the whole policy is testable without sleeping.
//!
//! Policy: failures are counted per source (an IPv4 address, or the /64
//! prefix of an IPv6 address, since one host commonly holds a whole /64).
//! Once a source has [`ThrottleOptions::max_failures`] failures, each further
//! CONNECT from it is delayed, by [`ThrottleOptions::delay`] and then twice
//! as long per further failure, up to [`ThrottleOptions::max_delay`]. A
//! source is forgotten [`ThrottleOptions::window`] after its last failure.
//! A successful login does not clear the count: otherwise whoever holds one
//! valid account could interleave it with guesses at another.
//!
//! Memory is bounded: at most [`ThrottleOptions::max_addresses`] sources are
//! tracked; a new one beyond that evicts the one whose last failure is
//! oldest. Each operation is O(log n).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Five attempts cover a user mistyping a password a few times; beyond that
/// it is a script.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// A minute without failures and the slate is clean, so a user who locked
/// themselves out waits about as long as it takes to find the password.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// One second barely bothers a person and cuts a script to one guess a
/// second at most.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);
/// Half a minute: long enough to make guessing pointless, short enough that
/// a legitimate client stuck behind a noisy NAT still gets through.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// Ten thousand sources cost well under a megabyte.
pub const DEFAULT_MAX_ADDRESSES: usize = 10_000;

/// The throttling policy; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleOptions {
    /// Failures from one source before its CONNECTs are delayed; 0 turns
    /// throttling off.
    pub max_failures: u32,
    /// A source is forgotten this long after its last failure.
    pub window: Duration,
    /// The first delay; doubles with each further failure.
    pub delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Sources tracked at most.
    pub max_addresses: usize,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        ThrottleOptions {
            max_failures: DEFAULT_MAX_FAILURES,
            window: DEFAULT_WINDOW,
            delay: DEFAULT_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            max_addresses: DEFAULT_MAX_ADDRESSES,
        }
    }
}

/// Where failures are counted: one IPv4 address or one IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl Source {
    fn of(address: IpAddr) -> Source {
        match address.to_canonical() {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
}

/// Failed logins per source; see the module documentation.
#[derive(Debug)]
pub struct Throttle {
    options: ThrottleOptions,
    records: HashMap<Source, Record>,
    /// The same sources ordered by last failure, oldest first: for expiry and
    /// eviction. Invariant: holds exactly `(record.last_failure, source)` for
    /// every entry of `records`.
    by_age: BTreeSet<(Instant, Source)>,
}

impl Throttle {
    pub fn new(options: ThrottleOptions) -> Throttle {
        Throttle {
            options,
            records: HashMap::new(),
            by_age: BTreeSet::new(),
        }
    }

    pub fn options(&self) -> &ThrottleOptions {
        &self.options
    }

    /// How long to hold a CONNECT from `address` before looking at its
    /// credentials, or `None` to go ahead at once.
    pub fn delay(&mut self, address: IpAddr, now: Instant) -> Option<Duration> {
        if self.options.max_failures == 0 {
            return None;
        }
        self.expire(now);
        let record = self.records.get(&Source::of(address))?;
        let beyond = record.failures.checked_sub(self.options.max_failures)?;
        let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
        let delay = self
            .options
            .delay
            .checked_mul(factor)
            .unwrap_or(self.options.max_delay);
        Some(delay.min(self.options.max_delay))
    }

    /// Counts a failed login from `address`.
    pub fn record_failure(&mut self, address: IpAddr, now: Instant) {
        if self.options.max_failures == 0 || self.options.max_addresses == 0 {
            return;
        }
        self.expire(now);
        let source = Source::of(address);
        let failures = match self.records.get(&source) {
            Some(record) => {
                self.by_age.remove(&(record.last_failure, source));
                record.failures.saturating_add(1)
            }
            None => {
                if self.records.len() >= self.options.max_addresses {
                    if let Some((_, oldest)) = self.by_age.pop_first() {
                        self.records.remove(&oldest);
                    }
                }
                1
            }
        };
        // A clock that went backwards must not put the entry out of order.
        let last_failure = match self.by_age.last() {
            Some((latest, _)) if *latest > now => *latest,
            _ => now,
        };
        self.records.insert(
            source,
            Record {
                failures,
                last_failure,
            },
        );
        self.by_age.insert((last_failure, source));
    }

    /// Number of sources tracked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets sources whose last failure is a whole window old.
    fn expire(&mut self, now: Instant) {
        while let Some(&(last_failure, source)) = self.by_age.first() {
            if now.saturating_duration_since(last_failure) < self.options.window {
                break;
            }
            self.by_age.pop_first();
            self.records.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn options() -> ThrottleOptions {
        ThrottleOptions {
            max_failures: 3,
            window: Duration::from_secs(60),
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_addresses: 100,
        }
    }

    #[test]
    fn delays_start_after_the_limit_and_double_up_to_the_cap() {
        let start = Instant::now();
        let mut throttle = Throttle::new(options());
        let address = ip("192.0.2.1");
        let mut delays = Vec::new();
        for second in 0..9 {
            let now = start + Duration::from_secs(second);
            delays.push(throttle.delay(address, now).map(|d| d.as_secs()));
            throttle.record_failure(address, now);
        }
        assert_eq!(
            delays,
            vec![
                None,
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(10),
                Some(10)
            ]
        );
        // Another address is not affected.
        assert_eq!(throttle.delay(ip("192.0.2.2"), start), None);
    }

    #[test]
    fn a_source_is_forgotten_a_window_after_its_last_failure() {
        let start = Instant::now();
        let mut throttle = Throttle::new(options());
        let address = ip("192.0.2.1");
        for _ in 0..3 {
            throttle.record_failure(address, start);
        }
        let later = start + Duration::from_secs(59);
        assert_eq!(throttle.delay(address, later), Some(Duration::from_secs(1)));
        // A failure at 59 s keeps it alive until 119 s.
        throttle.record_failure(address, later);
        assert_eq!(
            throttle.delay(address, start + Duration::from_secs(118)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            throttle.delay(address, start + Duration::from_secs(119)),
            None
        );
        assert!(throttle.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_prefix_and_mapped_ipv4_as_ipv4() {
        let start = Instant::now();
        let mut throttle = Throttle::new(options());
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"] {
            throttle.record_failure(ip(host), start);
        }
        assert!(throttle.delay(ip("2001:db8::99"), start).is_some());
        assert_eq!(throttle.delay(ip("2001:db8:0:1::1"), start), None);
        for _ in 0..3 {
            throttle.record_failure(ip("::ffff:192.0.2.7"), start);
        }
        assert!(throttle.delay(ip("192.0.2.7"), start).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest() {
        let start = Instant::now();
        let mut throttle = Throttle::new(ThrottleOptions {
            max_addresses: 3,
            max_failures: 1,
            ..options()
        });
        for (second, host) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            throttle.record_failure(ip(host), start + Duration::from_secs(second as u64));
        }
        // 10.0.0.1 fails again: now the newest. Then a fourth source evicts
        // the oldest, 10.0.0.2.
        throttle.record_failure(ip("10.0.0.1"), start + Duration::from_secs(3));
        throttle.record_failure(ip("10.0.0.4"), start + Duration::from_secs(4));
        assert_eq!(throttle.len(), 3);
        let now = start + Duration::from_secs(5);
        assert!(throttle.delay(ip("10.0.0.1"), now).is_some());
        assert_eq!(throttle.delay(ip("10.0.0.2"), now), None);
        assert!(throttle.delay(ip("10.0.0.3"), now).is_some());
        assert!(throttle.delay(ip("10.0.0.4"), now).is_some());
        assert_eq!(throttle.records.len(), throttle.by_age.len());
    }

    #[test]
    fn zero_failures_turns_throttling_off() {
        let start = Instant::now();
        let mut throttle = Throttle::new(ThrottleOptions {
            max_failures: 0,
            ..options()
        });
        for _ in 0..10 {
            throttle.record_failure(ip("10.0.0.1"), start);
        }
        assert_eq!(throttle.delay(ip("10.0.0.1"), start), None);
        assert!(throttle.is_empty());
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let start = Instant::now();
        let mut throttle = Throttle::new(ThrottleOptions {
            max_failures: 1,
            max_delay: Duration::MAX,
            delay: Duration::from_secs(u64::MAX / 2),
            ..options()
        });
        for _ in 0..100 {
            throttle.record_failure(ip("10.0.0.1"), start);
        }
        assert_eq!(throttle.delay(ip("10.0.0.1"), start), Some(Duration::MAX));
    }
}
