//! One client's session as the broker holds it: the sans-IO [`Session`] plus what
//! the broker needs around it (subscriptions, the attached connection, will,
//! expiry), behind one short-held mutex.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use switchboard_codec::{ProtocolVersion, Publish, ReasonCode, SubscriptionOptions, Will};
use switchboard_session::Session;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::budget::QueueBudget;

/// A compact, never reused handle for a session; the topic index stores these.
pub type SessionKey = u64;

/// A session that outlives (or not) its connections.
///
/// Lock rule: `inner` is held only for short, synchronous sections. It may be
/// taken while holding the registry lock or the index read lock, never the
/// other way round (nobody takes the registry or the index while holding it).
#[derive(Debug)]
pub struct SessionEntry {
    pub(crate) key: SessionKey,
    pub(crate) client_id: Arc<str>,
    /// Take it with [`SessionEntry::lock`], never directly: the guard keeps
    /// the broker's count of queued bytes right.
    pub(crate) inner: Mutex<SessionInner>,
    /// Mirrors `session_expiry > 0` so routing can tell, without the lock, whether a
    /// message for this session must be made durable.
    pub(crate) persistent: AtomicBool,
    /// Wakes the attached connection's task when something was queued for it
    /// (`notify_one`: a `Notify` keeps one permit, so a wake-up between two
    /// polls is not lost), and every connection task of the session when a
    /// close is ordered (`notify_waiters`: during a takeover two tasks wait
    /// here, and the order is for the old one). It is the only wake-up a
    /// connection has: no channel per connection (see [`SessionEntry::order_close`]).
    pub(crate) notify: Notify,
    /// Whether `SessionInner::close_orders` holds anything: lets a
    /// connection task check for an order on every wake-up without taking
    /// the lock. Changed only under `inner`.
    close_pending: AtomicBool,
    /// Who the session belongs to: set at each CONNECT, read by the delivery
    /// filter and listings. A leaf lock: taken alone or under `inner`, never
    /// the other way round, and held only to read or replace the value.
    pub(crate) owner: Mutex<Owner>,
    /// The broker's budget for queued bytes and its parking lot.
    common: Arc<Common>,
    /// This session's queued bytes as last settled into `budget`. Changed only
    /// under `inner` (an atomic only so that the entry stays `Sync`).
    settled: AtomicUsize,
    /// Bytes read from and written to the session's connections (all
    /// packets, after CONNECT), for the console's client details. Counted by
    /// the connection task without the session lock; not kept across a
    /// restart.
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

/// The session lock, held: settles the session's queued bytes into the
/// broker's budget when released, so that no call site that changes the
/// queue can forget to.
pub(crate) struct SessionGuard<'a> {
    entry: &'a SessionEntry,
    inner: MutexGuard<'a, SessionInner>,
}

impl Deref for SessionGuard<'_> {
    type Target = SessionInner;

    fn deref(&self) -> &SessionInner {
        &self.inner
    }
}

impl DerefMut for SessionGuard<'_> {
    fn deref_mut(&mut self) -> &mut SessionInner {
        &mut self.inner
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.entry.settle(self.inner.session.queued_bytes());
    }
}

impl Drop for SessionEntry {
    /// A session that goes away gives back whatever it still had settled.
    fn drop(&mut self) {
        self.common.budget.release(*self.settled.get_mut());
    }
}

/// The user a session belongs to, for access control: a user name within an
/// authentication realm (one password file and ACL; see
/// [`crate::ConnectRequest::realm`]). The same name in two realms is two
/// users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Restored from a store written before owners were recorded
    /// (`Record::SessionOwner`): the next connection to the session adopts it.
    Unknown,
    /// Connected without a user name.
    Anonymous {
        realm: u32,
    },
    User {
        realm: u32,
        name: Arc<str>,
    },
}

impl Owner {
    pub(crate) fn of(realm: u32, username: Option<&Arc<str>>) -> Owner {
        match username {
            Some(user) => Owner::User {
                realm,
                name: user.clone(),
            },
            None => Owner::Anonymous { realm },
        }
    }

    /// Whether a connection with `username` in `realm` may take over what
    /// the session holds (its queue and subscriptions).
    pub(crate) fn admits(&self, realm: u32, username: Option<&Arc<str>>) -> bool {
        match (self, username) {
            (Owner::Unknown, _) => true,
            (Owner::Anonymous { realm: owner_realm }, None) => *owner_realm == realm,
            (
                Owner::User {
                    realm: owner_realm,
                    name,
                },
                Some(user),
            ) => *owner_realm == realm && name == user,
            _ => false,
        }
    }

    pub(crate) fn username(&self) -> Option<&str> {
        match self {
            Owner::User { name, .. } => Some(name),
            Owner::Unknown | Owner::Anonymous { .. } => None,
        }
    }

    /// The realm the owner authenticated in; 0 (the server-wide one) while
    /// unknown.
    pub(crate) fn realm(&self) -> u32 {
        match self {
            Owner::User { realm, .. } | Owner::Anonymous { realm } => *realm,
            Owner::Unknown => 0,
        }
    }
}

/// Wakes a parked connection: one that waits without a task of its own
/// while idle (the server's parking lot). The broker calls it, at most once
/// per parking, when it gives the connection work; it must never block, and
/// may be called with the session lock held (the lot's own lock is a leaf).
pub trait Unpark: Send + Sync + std::fmt::Debug {
    /// Resumes the connection parked under `token`, if it still is.
    fn unpark(&self, token: u64);
}

/// What all sessions of one broker share, reached from each entry through
/// one pointer (the entry's size decides its allocation class, so every
/// field counts).
#[derive(Debug)]
pub(crate) struct Common {
    /// The broker's budget for queued bytes, which each session's queue is
    /// part of (see the `budget` module).
    pub(crate) budget: QueueBudget,
    /// Where parked connections wait; set once by the server
    /// ([`crate::Broker::set_parking`]).
    /// Weak: the server owns the lot, and the lot the broker.
    pub(crate) parking: OnceLock<std::sync::Weak<dyn Unpark>>,
}

impl Common {
    pub(crate) fn new(budget: QueueBudget) -> Common {
        Common {
            budget,
            parking: OnceLock::new(),
        }
    }

    fn unpark(&self, token: Option<NonZeroU64>) {
        let lot = self.parking.get().and_then(std::sync::Weak::upgrade);
        if let (Some(token), Some(lot)) = (token, lot) {
            lot.unpark(token.get());
        }
    }
}

/// An `Instant` in 8 bytes rather than 16: signed nanoseconds from an
/// origin the process picks once (about ±292 years of range). For times
/// kept in every session, where 8 bytes decide the entry's allocation class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moment(i64);

static ORIGIN: OnceLock<Instant> = OnceLock::new();

impl Moment {
    pub(crate) fn of(instant: Instant) -> Moment {
        let origin = *ORIGIN.get_or_init(Instant::now);
        let nanos =
            |duration: std::time::Duration| i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
        match instant.checked_duration_since(origin) {
            Some(after) => Moment(nanos(after)),
            None => Moment(-nanos(origin.duration_since(instant))),
        }
    }

    pub(crate) fn instant(self) -> Instant {
        let origin = *ORIGIN.get_or_init(Instant::now);
        let offset = std::time::Duration::from_nanos(self.0.unsigned_abs());
        let instant = if self.0 >= 0 {
            origin.checked_add(offset)
        } else {
            origin.checked_sub(offset)
        };
        instant.unwrap_or(origin)
    }
}

/// A subscription as the session remembers it (for listing, for removal on session
/// end, and for retain handling 1).
#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// The connection currently attached to a session. Inline and without heap
/// parts: every connected client has one.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) generation: u64,
    pub(crate) connected_at: Moment,
    pub(crate) peer: SocketAddr,
    pub(crate) keep_alive: u16,
}

#[derive(Debug)]
pub(crate) struct SessionInner {
    pub(crate) session: Session,
    /// Keyed by the filter exactly as subscribed (`$share/g/f` included). A
    /// `BTreeMap`: 24 bytes and no allocation while empty (a `HashMap` with
    /// its random state is 48), sorted for listings, and a client has few.
    pub(crate) subscriptions: BTreeMap<String, SubscriptionRecord>,
    pub(crate) connection: Option<Attached>,
    /// Where the attached connection waits while parked (no task of its own;
    /// see [`SessionEntry::park`]): whoever gives it work (a delivery, a
    /// close order) takes this and unparks it. `None` while it runs.
    /// The lot's token for it (see `Unpark`); 8 bytes rather than a
    /// pointer to the lot too, which all sessions share (`Common`).
    pub(crate) parked: Option<NonZeroU64>,
    /// The will of the attached connection, armed at CONNECT. Boxed: a
    /// `Will` is about 200 bytes, and most sessions have none. Not with the
    /// [`Rare`] state: many clients do set a will, for as long as they are
    /// connected.
    pub(crate) will: Option<Box<Will>>,
    /// See [`Rare`]; made on first use, freed once empty.
    rare: Option<Box<Rare>>,
    pub(crate) version: ProtocolVersion,
    /// Seconds; `u32::MAX` = never expires.
    pub(crate) session_expiry: u32,
    /// Set once the session has ended; a publisher holding a stale handle then skips it.
    pub(crate) ended: bool,
    /// Whether the durable store holds this session (a SessionUpsert was written
    /// and no SessionEnd since).
    pub(crate) recorded: bool,
}

/// What a session holds only now and then, boxed so that a connected,
/// idle session (nearly all of them) pays one null pointer for it instead
/// of 48 bytes: the close orders between the order and its taking, the
/// expiry deadline while detached, a will waiting for its delay.
#[derive(Debug, Default)]
struct Rare {
    /// Closes the broker ordered, `(generation, reason)`, not yet taken by
    /// the connection task of that generation (see
    /// [`SessionEntry::order_close`]); at most one entry per connection task
    /// of this session.
    close_orders: Vec<(u64, ReasonCode)>,
    /// When a detached session ends (None while attached, or never).
    expires_at: Option<Instant>,
    /// A will waiting for its delay interval after the connection ended.
    /// Boxed, like [`SessionInner::will`].
    pending_will: Option<Box<(Instant, Will)>>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.close_orders.is_empty() && self.expires_at.is_none() && self.pending_will.is_none()
    }
}

impl SessionInner {
    /// A session with no subscriptions, no connection, no will, not ended
    /// and not recorded.
    pub(crate) fn new(session: Session, version: ProtocolVersion, session_expiry: u32) -> Self {
        SessionInner {
            session,
            subscriptions: BTreeMap::new(),
            connection: None,
            parked: None,
            will: None,
            rare: None,
            version,
            session_expiry,
            ended: false,
            recorded: false,
        }
    }

    /// When the session ends if no connection takes it first: `None` while
    /// attached, or if it never expires.
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.rare.as_ref()?.expires_at
    }

    pub(crate) fn set_expires_at(&mut self, expires_at: Option<Instant>) {
        match expires_at {
            Some(_) => self.rare_mut().expires_at = expires_at,
            None => {
                if let Some(rare) = &mut self.rare {
                    rare.expires_at = None;
                    self.release_rare_if_empty();
                }
            }
        }
    }

    /// The will waiting for its delay (the time it is due, and the will).
    pub(crate) fn pending_will(&self) -> Option<&(Instant, Will)> {
        self.rare.as_ref()?.pending_will.as_deref()
    }

    pub(crate) fn set_pending_will(&mut self, pending: Box<(Instant, Will)>) {
        self.rare_mut().pending_will = Some(pending);
    }

    pub(crate) fn take_pending_will(&mut self) -> Option<Box<(Instant, Will)>> {
        let pending = self.rare.as_mut()?.pending_will.take();
        self.release_rare_if_empty();
        pending
    }

    /// The close orders not yet taken (see [`SessionEntry::order_close`]).
    #[cfg(test)]
    pub(crate) fn close_orders(&self) -> &[(u64, ReasonCode)] {
        self.rare
            .as_ref()
            .map_or(&[], |rare| rare.close_orders.as_slice())
    }

    /// Whether the rarely used state is allocated, to show it is freed.
    #[cfg(test)]
    pub(crate) fn holds_rare(&self) -> bool {
        self.rare.is_some()
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn release_rare_if_empty(&mut self) {
        if self.rare.as_deref().is_some_and(Rare::is_empty) {
            self.rare = None;
        }
    }
}

/// What a connection task needs to know about its session, read in one lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    pub queued: usize,
    pub queued_bytes: usize,
    pub inflight: usize,
    pub subscriptions: usize,
}

/// A snapshot of one session for listings (console, API, `$SYS`).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub client_id: String,
    pub connected: bool,
    pub peer: Option<String>,
    pub protocol: ProtocolVersion,
    pub keep_alive: Option<u16>,
    pub connected_since: Option<Instant>,
    pub session_expiry: u32,
    /// When a disconnected session ends; `None` while connected or if it never expires.
    pub expires_at: Option<Instant>,
    /// The user name of the session's owner, if it connected with one.
    pub username: Option<String>,
    pub counts: SessionCounts,
    pub subscriptions: Vec<(String, SubscriptionRecord)>,
    /// Bytes read from the session's connections since it began (in this
    /// process), every packet after CONNECT.
    pub bytes_received: u64,
    /// Bytes written to the session's connections since it began.
    pub bytes_sent: u64,
}

impl SessionEntry {
    pub(crate) fn new(
        key: SessionKey,
        client_id: Arc<str>,
        inner: SessionInner,
        common: Arc<Common>,
    ) -> SessionEntry {
        // A restored session arrives with its queue: it counts from the start.
        let queued = inner.session.queued_bytes();
        common.budget.settle(0, queued);
        SessionEntry {
            key,
            client_id,
            persistent: AtomicBool::new(inner.session_expiry > 0),
            inner: Mutex::new(inner),
            notify: Notify::new(),
            close_pending: AtomicBool::new(false),
            owner: Mutex::new(Owner::Unknown),
            common,
            settled: AtomicUsize::new(queued),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    /// Counts bytes read from the session's connection.
    pub fn count_received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts bytes written to the session's connection.
    pub fn count_sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes the session lock. Every access goes through here (not through
    /// `inner` directly), so the queue's size is settled into the budget
    /// whenever the lock is released.
    pub(crate) fn lock(&self) -> SessionGuard<'_> {
        SessionGuard {
            entry: self,
            inner: self.inner.lock(),
        }
    }

    /// Records that the queue now holds `queued` bytes. Call with the lock held.
    fn settle(&self, queued: usize) {
        // Most lock sections leave the queue alone: one load, no write.
        if self.settled.load(Ordering::Relaxed) != queued {
            let settled = self.settled.swap(queued, Ordering::Relaxed);
            self.common.budget.settle(settled, queued);
        }
    }

    /// Counts `size` bytes, reserved in the budget for a delivery about to be
    /// queued, as already settled: the settling at unlock then accounts for
    /// what the session really did with it. Call with the lock held.
    pub(crate) fn adopt_reservation(&self, size: usize) {
        self.settled.fetch_add(size, Ordering::Relaxed);
    }

    /// Whether the session outlives its connection (session expiry > 0).
    pub fn is_persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }

    pub(crate) fn set_persistent(&self, persistent: bool) {
        self.persistent.store(persistent, Ordering::Relaxed);
    }

    pub fn key(&self) -> SessionKey {
        self.key
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Resolves when something may have been queued for this session's
    /// connection, or a close may have been ordered. To miss nothing, a
    /// connection task creates this, calls `Notified::enable` on it, and only
    /// then checks [`SessionEntry::close_order`] and polls its queue before
    /// awaiting it.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Wakes the attached connection's task, as a delivery would. A task that
    /// leaves because its session was taken over calls this: the wake-up it
    /// may have consumed could have been meant for its successor.
    pub fn wake(&self) {
        // A parked connection needs no wake-up: it parked with nothing
        // pending, and whatever came since unparked it.
        if self.lock().parked.is_none() {
            self.notify.notify_one();
        }
    }

    /// Parks the connection of `generation`: from now on it has no task,
    /// and whoever gives it work unparks it through `at` (a delivery queued
    /// for it, a close order; its socket and keep alive the lot watches
    /// itself). Refused (`false`) when that connection is no longer
    /// attached, a close is ordered for it, or its session has something to
    /// send: the task must then carry on. Checked under the session lock,
    /// which every delivery and order takes, so none falls between the
    /// check and the parking.
    pub fn park(&self, generation: u64, token: NonZeroU64) -> bool {
        let mut inner = self.lock();
        let attached =
            matches!(&inner.connection, Some(attached) if attached.generation == generation);
        if !attached || self.close_pending.load(Ordering::Acquire) || inner.session.has_output() {
            return false;
        }
        inner.parked = Some(token);
        // Idle from now on: nothing kept at its last high-water mark.
        inner.session.shrink();
        true
    }

    /// The connection parked under `token` runs again (its lot resumed it
    /// for its socket or keep alive): forgets the mark, if still there.
    pub fn unparked(&self, token: u64) {
        let mut inner = self.lock();
        if inner.parked.is_some_and(|parked| parked.get() == token) {
            inner.parked = None;
        }
    }

    /// Takes the parked connection's mark, to unpark it with
    /// [`SessionEntry::unpark`] once the session lock is released. Call with
    /// the lock held.
    pub(crate) fn take_parked(inner: &mut SessionInner) -> Option<NonZeroU64> {
        inner.parked.take()
    }

    /// Resumes the connection parked under `token` (from
    /// [`SessionEntry::take_parked`]).
    pub(crate) fn unpark(&self, token: Option<NonZeroU64>) {
        self.common.unpark(token);
    }

    /// Orders the connection task of `generation` to close, telling a v5
    /// client `reason` (0x8E takeover, 0x98 administrative action, 0x8B
    /// shutting down). Call with the session lock held. Never waits: the
    /// order is a field and a wake-up, which is what a connection task
    /// needs of a control channel without the channel's allocation (about
    /// half a KiB per connection). A later order for the same generation
    /// replaces an earlier one.
    pub(crate) fn order_close(
        &self,
        inner: &mut SessionInner,
        generation: u64,
        reason: ReasonCode,
    ) {
        let close_orders = &mut inner.rare_mut().close_orders;
        match close_orders
            .iter_mut()
            .find(|(ordered, _)| *ordered == generation)
        {
            Some(order) => order.1 = reason,
            None => close_orders.push((generation, reason)),
        }
        self.close_pending.store(true, Ordering::Release);
        self.notify.notify_waiters();
        // The lot's lock is a leaf: unparking under the session lock is allowed.
        self.common.unpark(inner.parked.take());
    }

    /// The close ordered for the connection of `generation`, if any; taking
    /// it removes it. One atomic load when there is none.
    pub fn close_order(&self, generation: u64) -> Option<ReasonCode> {
        if !self.close_pending.load(Ordering::Acquire) {
            return None;
        }
        let mut inner = self.lock();
        let close_orders = &mut inner.rare.as_mut()?.close_orders;
        let position = close_orders
            .iter()
            .position(|(ordered, _)| *ordered == generation)?;
        let (_, reason) = close_orders.swap_remove(position);
        if close_orders.is_empty() {
            *close_orders = Vec::new();
            self.close_pending.store(false, Ordering::Release);
            inner.release_rare_if_empty();
        }
        Some(reason)
    }

    /// Forgets any order for `generation`, whose task is gone. Call with the
    /// session lock held.
    pub(crate) fn forget_close_order(&self, inner: &mut SessionInner, generation: u64) {
        let Some(rare) = inner.rare.as_mut() else {
            return;
        };
        if rare.close_orders.is_empty() {
            return;
        }
        rare.close_orders
            .retain(|(ordered, _)| *ordered != generation);
        if rare.close_orders.is_empty() {
            rare.close_orders = Vec::new();
            self.close_pending.store(false, Ordering::Release);
            inner.release_rare_if_empty();
        }
    }

    /// Runs `f` on the sans-IO session if `generation` is still the attached
    /// connection; `None` if that connection was taken over or closed meanwhile.
    /// The closure runs under the session lock: keep it short and never await in it.
    pub fn with_session<R>(&self, generation: u64, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        let mut inner = self.lock();
        match &inner.connection {
            Some(attached) if attached.generation == generation => Some(f(&mut inner.session)),
            _ => None,
        }
    }

    /// Polls up to `max` PUBLISH packets to send, appending to `out`. Returns `None` when
    /// this connection no longer owns the session.
    pub fn poll_publishes(
        &self,
        generation: u64,
        now: Instant,
        max: usize,
        out: &mut Vec<Publish>,
        journal: &mut Vec<switchboard_session::JournalEvent>,
    ) -> Option<switchboard_session::DropCounts> {
        let mut inner = self.lock();
        match &inner.connection {
            Some(attached) if attached.generation == generation => {}
            _ => return None,
        }
        for _ in 0..max {
            match inner.session.poll_publish(now) {
                Some(publish) => out.push(publish),
                None => break,
            }
        }
        if inner.session.is_journaling() {
            inner.session.take_journal(journal);
        }
        Some(inner.session.take_drops())
    }

    pub fn counts(&self) -> SessionCounts {
        let inner = self.lock();
        SessionCounts {
            queued: inner.session.queued_len(),
            queued_bytes: inner.session.queued_bytes(),
            inflight: inner.session.inflight_len(),
            subscriptions: inner.subscriptions.len(),
        }
    }

    pub fn info(&self) -> SessionInfo {
        let inner = self.lock();
        let mut subscriptions: Vec<_> = inner
            .subscriptions
            .iter()
            .map(|(filter, record)| (filter.clone(), record.clone()))
            .collect();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        SessionInfo {
            client_id: self.client_id.to_string(),
            connected: inner.connection.is_some(),
            peer: inner.connection.as_ref().map(|c| c.peer.to_string()),
            protocol: inner.version,
            keep_alive: inner.connection.as_ref().map(|c| c.keep_alive),
            connected_since: inner.connection.as_ref().map(|c| c.connected_at.instant()),
            session_expiry: inner.session_expiry,
            expires_at: inner.expires_at(),
            username: self.owner.lock().username().map(str::to_string),
            counts: SessionCounts {
                queued: inner.session.queued_len(),
                queued_bytes: inner.session.queued_bytes(),
                inflight: inner.session.inflight_len(),
                subscriptions: inner.subscriptions.len(),
            },
            subscriptions,
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod size_tests;
