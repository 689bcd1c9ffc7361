//! Rate limits, sans-IO: token buckets that take `now` and never read a clock,
//! so every rule here is tested without sockets or sleeps.
//!
//! - [`TokenBucket`]: one rate with a burst.
//! - [`AddressLimiter`]: new connections per source address (an IPv4
//!   address, or an IPv6 /64, since one host commonly holds a whole /64).
//! - [`next_accept_backoff`]: how long the accept loop waits after a failed
//!   `accept` (e.g. EMFILE).
//!
//! What the server does at each limit:
//!
//! | limit | when reached |
//! |---|---|
//! | `max_connections` (global, per listener) | the new socket is closed at once, before any byte is read (`connections_refused`) |
//! | connections per address | the new socket is closed at once (`connections_rate_limited`) |
//! | client message / byte rate | the connection stops reading its socket until the client is back within its rate (`clients_throttled`); nothing is dropped and nothing is sent |
//! | failed `accept` | the listener waits 10 ms, doubling up to 1 s while failures continue (`accept_errors`) |
//!
//! Each listener applies either the server's [`RateLimits`] or, when it has
//! them, its own (`ListenerOptions::rates`), all three together.
//!
//! Why throttling rather than MQTT 5's DISCONNECT 0x96 (Message rate too
//! high): a client that publishes faster than allowed is slowed down by TCP
//! flow control, the same for 3.x and 5.0 clients, without losing a message
//! or its session; it cannot tell throttling from a slow network, which is
//! what it must cope with anyway. Keep alive is not enforced while a client is
//! throttled: its PINGREQs wait in the socket unread, through no fault of its
//! own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A rate with a burst: on average `per_second` units a second, up to `burst`
/// at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// At least 1.
    pub per_second: u64,
    /// At least 1.
    pub burst: u64,
}

impl Rate {
    /// A rate whose burst is one second's worth.
    pub fn per_second(per_second: u64) -> Rate {
        Rate {
            per_second,
            burst: per_second,
        }
    }
}

/// The rate limits of a server; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// New connections per source address (IPv4 address, IPv6 /64), over all
    /// listeners that use the server's rates; a listener with rates of its
    /// own (`ListenerOptions::rates`) counts its connections apart. Refused
    /// connections are closed at once.
    pub connections_per_address: Option<Rate>,
    /// PUBLISH packets per second from one client; beyond it the connection
    /// stops reading.
    pub client_messages: Option<Rate>,
    /// Bytes per second from one client (everything it sends); beyond it the
    /// connection stops reading.
    pub client_bytes: Option<Rate>,
}

/// One rate limit as a generic cell rate algorithm: the state is the instant
/// at which the bucket would be full again. Taking `n` units moves it `n`
/// unit-costs later; the bucket holds `burst` units, so taking is allowed
/// while that instant stays within `burst` unit-costs of `now`.
///
/// Two ways to use it: [`TokenBucket::try_take`] refuses what does not fit
/// (connections), [`TokenBucket::charge`] always takes and lets the bucket
/// run into debt, with [`TokenBucket::resume_at`] telling when the debt is
/// paid (bytes already read cannot be refused, only the next read delayed).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_second: u64,
    /// How far past `now` `full_at` may be: `burst` units.
    tolerance: Duration,
    /// When the bucket is full again; at or before `now` it is full.
    full_at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: Rate, now: Instant) -> TokenBucket {
        let per_second = rate.per_second.max(1);
        let mut bucket = TokenBucket {
            per_second,
            tolerance: Duration::ZERO,
            full_at: now,
        };
        bucket.tolerance = bucket.cost(rate.burst.max(1));
        bucket
    }

    /// The time `units` units take at the rate.
    fn cost(&self, units: u64) -> Duration {
        let nanos = u128::from(units) * 1_000_000_000 / u128::from(self.per_second);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Where the bucket stands after taking `units` now.
    fn after(&self, now: Instant, units: u64) -> Instant {
        let base = self.full_at.max(now);
        // Unreachable overflow (centuries of debt) leaves the bucket as it is
        // rather than panicking.
        base.checked_add(self.cost(units)).unwrap_or(base)
    }

    /// Takes `units` if the bucket holds them; otherwise changes nothing.
    pub(crate) fn try_take(&mut self, now: Instant, units: u64) -> bool {
        let after = self.after(now, units);
        let fits = now
            .checked_add(self.tolerance)
            .is_none_or(|limit| after <= limit);
        if fits {
            self.full_at = after;
        }
        fits
    }

    /// Takes `units` whether or not the bucket holds them.
    pub(crate) fn charge(&mut self, now: Instant, units: u64) {
        self.full_at = self.after(now, units);
    }

    /// `None` while the bucket is not in debt; otherwise when it stops being.
    pub(crate) fn resume_at(&self, now: Instant) -> Option<Instant> {
        let resume = self
            .full_at
            .checked_sub(self.tolerance)
            .unwrap_or(self.full_at);
        (resume > now).then_some(resume)
    }

    /// Whether the bucket is full: it then remembers nothing a fresh bucket
    /// would not.
    fn is_full(&self, now: Instant) -> bool {
        self.full_at <= now
    }
}

/// Where connections are counted: one IPv4 address, or one IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Sources tracked at once. A bucket that has refilled is forgotten when room
/// is needed; beyond this many busy sources the one that would refill first
/// is forgotten (it starts afresh). So a flood spread over more sources than
/// this gets past the per-address limit, and meets only the global
/// `max_connections`; the bound keeps the limiter's own memory and work
/// (one scan of this many entries, only when full) small.
pub(crate) const MAX_TRACKED_SOURCES: usize = 10_000;

/// New connections per source address; see the module documentation.
#[derive(Debug)]
pub(crate) struct AddressLimiter {
    rate: Rate,
    buckets: HashMap<Source, TokenBucket>,
}

impl AddressLimiter {
    pub(crate) fn new(rate: Rate) -> AddressLimiter {
        AddressLimiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Whether a new connection from `address` is within its rate (and takes
    /// its share of it).
    pub(crate) fn admit(&mut self, address: IpAddr, now: Instant) -> bool {
        let source = Source::of(address);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            self.make_room(now);
        }
        let rate = self.rate;
        self.buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::new(rate, now))
            .try_take(now, 1)
    }

    /// Forgets refilled buckets; if none has, the one closest to refilling.
    fn make_room(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| !bucket.is_full(now));
        if self.buckets.len() < MAX_TRACKED_SOURCES {
            return;
        }
        let closest = self
            .buckets
            .iter()
            .min_by_key(|(_, bucket)| bucket.full_at)
            .map(|(source, _)| *source);
        if let Some(source) = closest {
            self.buckets.remove(&source);
        }
    }

    /// Sources currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// First wait after a failed `accept`.
pub(crate) const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);
/// Longest wait between failed `accept`s: long enough not to spin a core
/// while out of file descriptors, short enough to recover soon after.
pub(crate) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The wait after another failed `accept`, given the last one: doubling,
/// capped at [`ACCEPT_BACKOFF_MAX`]. A successful accept starts again from
/// [`ACCEPT_BACKOFF_START`].
pub(crate) fn next_accept_backoff(current: Duration) -> Duration {
    current.saturating_mul(2).min(ACCEPT_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u64, burst: u64) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_burst_passes_then_one_unit_per_interval() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(2, 3), t0);
        assert!(bucket.try_take(t0, 1));
        assert!(bucket.try_take(t0, 1));
        assert!(bucket.try_take(t0, 1));
        assert!(!bucket.try_take(t0, 1), "burst of 3 used up");
        // Half a second later (rate 2/s) exactly one more.
        let later = t0 + Duration::from_millis(500);
        assert!(!bucket.try_take(later - Duration::from_nanos(1), 1));
        assert!(bucket.try_take(later, 1));
        assert!(!bucket.try_take(later, 1));
        // A long quiet spell refills to the burst, not beyond.
        let quiet = later + Duration::from_secs(60);
        assert!(bucket.is_full(quiet));
        for _ in 0..3 {
            assert!(bucket.try_take(quiet, 1));
        }
        assert!(!bucket.try_take(quiet, 1));
    }

    #[test]
    fn a_refused_take_changes_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(1, 2), t0);
        assert!(!bucket.try_take(t0, 3));
        assert!(bucket.try_take(t0, 2));
    }

    #[test]
    fn charging_runs_into_debt_and_says_when_it_is_paid() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(100, 100), t0);
        bucket.charge(t0, 100);
        assert_eq!(bucket.resume_at(t0), None, "exactly the burst: not in debt");
        bucket.charge(t0, 50);
        // 50 units over at 100/s: half a second.
        assert_eq!(bucket.resume_at(t0), Some(t0 + Duration::from_millis(500)));
        assert_eq!(bucket.resume_at(t0 + Duration::from_millis(500)), None);
        // The rate holds on average: after the pause, 50 more fit in 0.5 s.
        let t1 = t0 + Duration::from_millis(500);
        bucket.charge(t1, 50);
        assert_eq!(bucket.resume_at(t1), Some(t1 + Duration::from_millis(500)));
    }

    #[test]
    fn fast_rates_and_huge_charges_do_not_overflow() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(u64::MAX, u64::MAX), t0);
        assert!(bucket.try_take(t0, u64::MAX));
        let mut slow = TokenBucket::new(rate(1, 1), t0);
        slow.charge(t0, u64::MAX);
        slow.charge(t0, u64::MAX);
        assert!(slow.resume_at(t0).is_some());
        // A zero rate or burst (refused by config validation) acts as 1.
        let mut zero = TokenBucket::new(rate(0, 0), t0);
        assert!(zero.try_take(t0, 1));
        assert!(!zero.try_take(t0, 1));
    }

    #[test]
    fn addresses_are_limited_separately_and_ipv6_by_prefix() {
        let t0 = Instant::now();
        let mut limiter = AddressLimiter::new(rate(1, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.admit(a, t0));
        assert!(limiter.admit(a, t0));
        assert!(!limiter.admit(a, t0), "third connection within the burst");
        assert!(limiter.admit(b, t0), "another address has its own bucket");
        assert!(limiter.admit(a, t0 + Duration::from_secs(1)));
        // One IPv6 /64 is one source; an IPv4-mapped address is the IPv4 one.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        let v6c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(limiter.admit(v6a, t0));
        assert!(limiter.admit(v6b, t0));
        assert!(!limiter.admit(v6a, t0));
        assert!(limiter.admit(v6c, t0));
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert!(limiter.admit(mapped, t0));
        assert!(!limiter.admit(b, t0));
    }

    #[test]
    fn tracked_sources_stay_bounded() {
        let t0 = Instant::now();
        let mut limiter = AddressLimiter::new(rate(1, 1));
        for n in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            assert!(limiter.admit(IpAddr::from(n.to_be_bytes()), t0));
            assert!(limiter.tracked() <= MAX_TRACKED_SOURCES);
        }
        // Once their buckets refill, the old sources are forgotten first.
        let later = t0 + Duration::from_secs(2);
        assert!(limiter.admit("198.51.100.7".parse().unwrap(), later));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn accept_backoff_doubles_up_to_the_cap() {
        let mut backoff = ACCEPT_BACKOFF_START;
        let mut waits = vec![backoff];
        for _ in 0..10 {
            backoff = next_accept_backoff(backoff);
            waits.push(backoff);
        }
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[2], Duration::from_millis(40));
        assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
        assert_eq!(next_accept_backoff(ACCEPT_BACKOFF_MAX), ACCEPT_BACKOFF_MAX);
    }
}
