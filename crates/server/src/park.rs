//! Parking: idle connections wait without a task of their own.
//!
//! A connected client that has nothing to do for [`crate::ServerOptions::park_idle_after`]
//! (nothing to write, nothing half read, nothing waiting for the store, no
//! output for its session) gives up its tokio task, its tokio socket
//! registration and its buffers. What it still needs to run again (its
//! socket, its decoder, its keep alive, its limits: `connection::Parked`) is
//! kept here, in a slot of the [`Lot`], and its socket is watched by a second
//! epoll instance that tokio's own reactor watches in turn (one registration
//! for all parked sockets). A parked connection is resumed, on a fresh task,
//! by the first of:
//! - its socket: the client sent something, or closed;
//! - its session: the broker queued a delivery or ordered a close (takeover,
//!   kick, shutdown), through the [`Unpark`] mark the session holds
//!   (`SessionEntry::park`);
//! - its keep-alive deadline, which the lot's driver times.
//!
//! Races: a connection first reserves a slot, then marks its session as
//! parked (under the session lock, refused if the session has work), then
//! fills the slot. An unpark that comes between the last two finds the slot
//! reserved and flags it; the fill then fails and the task carries on. A
//! token (slot and sequence) names one parking, so a late wake-up for an
//! earlier one is ignored.
//!
//! Lock rule: the slots' mutex is a leaf. It may be taken under a session
//! lock (the broker unparks while holding one), never the other way round,
//! and nothing awaits while holding it.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use switchboard_broker::{Metrics, Unpark};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{self, Parked};
use crate::Shared;

/// Events taken from the parking epoll per call.
const EVENTS_PER_POLL: usize = 256;
/// Keep-alive deadlines are found by a scan of every parked connection (no
/// timer per connection: a heap of deadlines cost 24 bytes each); at most
/// one scan per this interval, so a deadline may be acted on up to this late
/// when many connections park at once.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Where parked connections wait. One per running server.
#[derive(Debug)]
pub(crate) struct Lot {
    /// The parking epoll's registry: sockets are added and removed from any
    /// thread; the driver alone polls.
    registry: mio::Registry,
    slots: Mutex<Slots>,
    /// Resumed connections run on the server's tracker, so shutdown waits
    /// for them as for any connection.
    tracker: TaskTracker,
    /// The runtime to resume on: unparking may happen on a thread outside it.
    handle: tokio::runtime::Handle,
    /// The server's shutdown, handed to resumed connections.
    cancel: CancellationToken,
    /// Wakes the driver when a keep-alive deadline earlier than the one it
    /// sleeps for was added.
    timer: Notify,
    broker: Arc<switchboard_broker::Broker>,
    /// The server, handed back to resumed connections. Weak: the server
    /// holds the lot, and a dropped server must close its parked sockets.
    shared: std::sync::Weak<Shared>,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Slot>,
    /// Indices of free entries.
    free: Vec<u32>,
    /// Numbers the parkings, so that a token names one.
    sequence: u32,
    /// Entries that hold a parked connection.
    parked: usize,
    /// When the driver next scans for keep-alive deadlines (`None`: no
    /// parked connection has one).
    next_scan: Option<Instant>,
    /// Set at shutdown: no more parking.
    closed: bool,
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Free,
    /// A connection is parking here; `wake` is set if it was unparked before
    /// it was done.
    Reserved {
        token: u64,
        wake: bool,
    },
    Parked {
        token: u64,
        connection: Box<Parked>,
    },
}

fn token(index: u32, sequence: u32) -> u64 {
    (u64::from(index) << 32) | u64::from(sequence)
}

fn index_of(token: u64) -> usize {
    (token >> 32) as usize
}

impl Slots {
    fn slot_mut(&mut self, token: u64) -> Option<&mut Slot> {
        self.entries.get_mut(index_of(token))
    }

    fn release(&mut self, token: u64) {
        if let Some(slot) = self.slot_mut(token) {
            *slot = Slot::Free;
            // Indices come from `u32` tokens.
            self.free.push((token >> 32) as u32);
        }
    }

    /// Whether the connection that reserved `token` may fill its slot: not
    /// if it was unparked meanwhile, nor once the lot is closed (no driver
    /// would watch its socket or keep alive any more). A slot it may not
    /// fill is given back.
    fn claim(&mut self, token: u64) -> bool {
        let closed = self.closed;
        match self.slot_mut(token) {
            Some(Slot::Reserved {
                token: reserved,
                wake,
            }) if *reserved == token => {
                if *wake || closed {
                    self.release(token);
                    return false;
                }
                true
            }
            _ => false,
        }
    }

    /// Takes the connection parked under `token`, if it still is.
    fn take(&mut self, token: u64) -> Option<Box<Parked>> {
        let slot = self.slot_mut(token)?;
        match slot {
            Slot::Parked { token: parked, .. } if *parked == token => {}
            Slot::Reserved {
                token: reserved,
                wake,
            } if *reserved == token => {
                *wake = true;
                return None;
            }
            _ => return None,
        }
        let Slot::Parked { connection, .. } = std::mem::take(slot) else {
            return None;
        };
        self.release(token);
        self.parked = self.parked.saturating_sub(1);
        Some(connection)
    }
}

impl Lot {
    /// The lot of a server starting now, and the driver task to run on the
    /// server's tracker (it ends at shutdown, after resuming every parked
    /// connection).
    pub(crate) fn start(
        shared: &Arc<Shared>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> std::io::Result<(
        Arc<Lot>,
        impl std::future::Future<Output = ()> + Send + 'static,
    )> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        // `with_interest` is deprecated because an arbitrary `AsRawFd` may
        // close or swap its descriptor while registered; a `mio::Poll` owns
        // its epoll descriptor for its whole life, and the `AsyncFd` owns the
        // `Poll`. (The replacement is an `unsafe fn`, which this workspace
        // forbids.)
        #[allow(deprecated)]
        let poll = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
        let lot = Arc::new(Lot {
            registry,
            slots: Mutex::new(Slots::default()),
            tracker,
            handle: tokio::runtime::Handle::current(),
            cancel,
            timer: Notify::new(),
            broker: shared.broker.clone(),
            shared: Arc::downgrade(shared),
        });
        let driver = drive(lot.clone(), poll);
        Ok((lot, driver))
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection about to park; `None` once the server shuts down.
    pub(crate) fn reserve(&self) -> Option<std::num::NonZeroU64> {
        let mut slots = self.slots();
        if slots.closed || self.cancel.is_cancelled() {
            return None;
        }
        // Never 0, so that no token is (a session's `parked` is non-zero).
        slots.sequence = slots.sequence.wrapping_add(1).max(1);
        let sequence = slots.sequence;
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(slots.entries.len()).ok()?;
                slots.entries.push(Slot::Free);
                index
            }
        };
        let token = token(index, sequence);
        if let Some(slot) = slots.slot_mut(token) {
            *slot = Slot::Reserved { token, wake: false };
        }
        std::num::NonZeroU64::new(token)
    }

    /// Gives back a reserved slot the connection did not park in after all.
    pub(crate) fn cancel(&self, token: u64) {
        let mut slots = self.slots();
        if matches!(slots.slot_mut(token), Some(Slot::Reserved { token: reserved, .. }) if *reserved == token)
        {
            slots.release(token);
        }
    }

    /// Parks `connection` in the slot reserved under `token` and watches its
    /// socket. Gives it back when it was unparked while parking, the lot
    /// closed meanwhile, or its socket cannot be watched: its task must carry on.
    pub(crate) fn fill(&self, token: u64, connection: Box<Parked>) -> Result<(), Box<Parked>> {
        let mut slots = self.slots();
        if !slots.claim(token) {
            return Err(connection);
        }
        let fd = connection.socket().as_raw_fd();
        // Edge-triggered, and reported at once if the socket is already
        // readable (epoll checks on registration).
        let registered = self.registry.register(
            &mut SourceFd(&fd),
            mio::Token(token as usize),
            mio::Interest::READABLE,
        );
        if let Err(error) = registered {
            tracing::debug!(%error, "cannot watch a socket for parking; the connection stays active");
            slots.release(token);
            return Err(connection);
        }
        let deadline = connection.deadline();
        if let Some(slot) = slots.slot_mut(token) {
            *slot = Slot::Parked { token, connection };
        }
        slots.parked += 1;
        // Counted before the slot's lock is released: from then on the
        // driver or an unpark may take the connection and count it out, and
        // the gauge must not wrap below zero meanwhile.
        let metrics = self.broker.metrics();
        Metrics::incr(&metrics.connections_parked);
        Metrics::incr(&metrics.connection_parks);
        if let Some(when) = deadline {
            if slots.next_scan.is_none_or(|next| when < next) {
                slots.next_scan = Some(when);
                self.timer.notify_one();
            }
        }
        drop(slots);
        Ok(())
    }

    /// Resumes each of `connections`, taken out of their slots, on a task of
    /// its own.
    fn resume(&self, connections: Vec<(u64, Box<Parked>)>) {
        if connections.is_empty() {
            return;
        }
        let metrics = self.broker.metrics();
        for (token, connection) in connections {
            Metrics::decr(&metrics.connections_parked);
            Metrics::incr(&metrics.connection_unparks);
            let fd = connection.socket().as_raw_fd();
            // Failing only if the socket was not registered, which a parked one is.
            let _ = self.registry.deregister(&mut SourceFd(&fd));
            self.respawn(token, connection);
        }
    }

    /// Runs `connection` again on a task of its own: one taken out of its
    /// slot, or one unparked while parking (not counted as parked, and not
    /// registered).
    pub(crate) fn respawn(&self, token: u64, connection: Box<Parked>) {
        // Without its server the connection has nothing to run on: dropped,
        // its socket closes.
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let resumed = connection::resume(connection, token, shared, self.cancel.clone());
        self.tracker.spawn_on(resumed, &self.handle);
    }

    /// When the driver should next scan for keep-alive deadlines.
    fn next_scan(&self) -> Option<Instant> {
        self.slots().next_scan
    }

    /// Resumes the connections whose keep-alive deadline has come, by a
    /// scan of all parked connections, and plans the next scan: at the
    /// soonest deadline left, but not within [`SCAN_INTERVAL`] of this one.
    fn expire(&self, now: Instant) {
        let due = {
            let mut slots = self.slots();
            if slots.next_scan.is_none_or(|next| next > now) {
                return;
            }
            let mut due = Vec::new();
            let mut soonest: Option<Instant> = None;
            for index in 0..slots.entries.len() {
                let Some(Slot::Parked { token, connection }) = slots.entries.get(index) else {
                    continue;
                };
                let token = *token;
                match connection.deadline() {
                    Some(when) if when <= now => {
                        if let Some(connection) = slots.take(token) {
                            due.push((token, connection));
                        }
                    }
                    Some(when) => soonest = Some(soonest.map_or(when, |soonest| soonest.min(when))),
                    None => {}
                }
            }
            slots.next_scan = soonest.map(|when| when.max(now + SCAN_INTERVAL));
            due
        };
        self.resume(due);
    }

    /// Resumes the connections whose sockets the parking epoll reported.
    fn ready(&self, events: &mio::Events) {
        let due = {
            let mut slots = self.slots();
            events
                .iter()
                .filter_map(|event| {
                    let token = event.token().0 as u64;
                    slots.take(token).map(|connection| (token, connection))
                })
                .collect()
        };
        self.resume(due);
    }

    /// Shutdown: no more parking, and every parked connection resumes (to
    /// see the shutdown and close).
    fn close(&self) {
        let due = {
            let mut slots = self.slots();
            slots.closed = true;
            slots.next_scan = None;
            let tokens: Vec<u64> = slots
                .entries
                .iter()
                .filter_map(|slot| match slot {
                    Slot::Parked { token, .. } => Some(*token),
                    _ => None,
                })
                .collect();
            tokens
                .into_iter()
                .filter_map(|token| slots.take(token).map(|connection| (token, connection)))
                .collect()
        };
        self.resume(due);
    }
}

impl Unpark for Lot {
    fn unpark(&self, token: u64) {
        let taken = self.slots().take(token);
        if let Some(connection) = taken {
            self.resume(vec![(token, connection)]);
        }
    }
}

/// The lot's driver: resumes connections for their sockets and keep-alive
/// deadlines until shutdown.
async fn drive(lot: Arc<Lot>, mut poll: AsyncFd<mio::Poll>) {
    let mut events = mio::Events::with_capacity(EVENTS_PER_POLL);
    loop {
        let sleep = lot
            .next_scan()
            .map(|when| tokio::time::sleep_until(tokio::time::Instant::from_std(when)));
        tokio::select! {
            _ = lot.cancel.cancelled() => break,
            ready = poll.readable_mut() => {
                let Ok(mut guard) = ready else {
                    tracing::error!("the parking epoll failed; parked connections resume only for deliveries and keep alive");
                    break;
                };
                loop {
                    events.clear();
                    match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(error) => {
                            tracing::warn!(%error, "polling the parking epoll failed");
                            break;
                        }
                    }
                    lot.ready(&events);
                    if events.iter().count() < EVENTS_PER_POLL {
                        break;
                    }
                }
                guard.clear_ready();
            }
            _ = async { if let Some(sleep) = sleep { sleep.await } else { std::future::pending::<()>().await } } => {}
            _ = lot.timer.notified() => {}
        }
        lot.expire(tokio::time::Instant::now().into_std());
    }
    lot.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_connection_stays_small() {
        let parked = std::mem::size_of::<Parked>();
        let slot = std::mem::size_of::<Slot>();
        let entry = std::mem::size_of::<switchboard_broker::SessionEntry>();
        println!("Parked {parked} Slot {slot} SessionEntry {entry}");
        // 192 is an allocation class of jemalloc (the binary's allocator).
        assert!(parked <= 192, "Parked is {parked} bytes");
        assert!(slot <= 24, "Slot is {slot} bytes");
    }

    #[test]
    fn an_unpark_while_parking_is_remembered_and_stale_tokens_do_nothing() {
        let mut slots = Slots::default();
        let parking = token(0, 7);
        slots.entries.push(Slot::Reserved {
            token: parking,
            wake: false,
        });
        // An earlier parking in the same slot, and a slot that does not exist.
        assert!(slots.take(token(0, 6)).is_none());
        assert!(slots.take(token(3, 7)).is_none());
        assert!(matches!(
            slots.entries[0],
            Slot::Reserved { wake: false, .. }
        ));
        // The unpark itself: nothing to resume yet, but the fill will fail.
        assert!(slots.take(parking).is_none());
        assert!(matches!(
            slots.entries[0],
            Slot::Reserved { wake: true, .. }
        ));
        assert_eq!(index_of(parking), 0);
        assert_eq!(index_of(token(5, u32::MAX)), 5);
        // So its fill is refused, and the slot given back.
        assert!(!slots.claim(parking));
        assert!(matches!(slots.entries[0], Slot::Free));
        assert_eq!(slots.free, vec![0]);
    }

    #[test]
    fn a_slot_reserved_before_the_lot_closed_is_not_filled() {
        // The driver resumes what is parked when it stops (shutdown, or a
        // failed epoll) and watches nothing after: a connection that had
        // reserved a slot just before must not park in it, or its socket and
        // keep alive would go unwatched.
        let mut slots = Slots::default();
        let parking = token(0, 1);
        slots.entries.push(Slot::Reserved {
            token: parking,
            wake: false,
        });
        slots.closed = true;
        assert!(!slots.claim(parking));
        assert!(matches!(slots.entries[0], Slot::Free));
        assert_eq!(slots.free, vec![0]);
    }

    #[test]
    fn a_reserved_slot_is_claimed_once_and_only_by_its_token() {
        let mut slots = Slots::default();
        let parking = token(0, 9);
        slots.entries.push(Slot::Reserved {
            token: parking,
            wake: false,
        });
        assert!(!slots.claim(token(0, 8)));
        assert!(!slots.claim(token(1, 9)));
        assert!(slots.claim(parking));
        assert!(matches!(slots.entries[0], Slot::Reserved { .. }));
    }
}
