//! The broker's shared state: session registry, topic index, retained store,
//! wills, expiry and `$SYS`.
//!
//! There is no router thread. A publishing connection's task calls
//! [`Broker::publish`], which matches the topic in the index under a short read
//! lock, collects the targets into a buffer, releases the lock, and then hands a
//! shared [`Delivery`] to each target session's bounded queue, waking its
//! connection task. See `docs/architecture.md` for the data flow.
//!
//! Lock order (never taken in the other order, never held across `.await`):
//! `registry` -> `index` / `retained` -> one `SessionEntry::inner` at a time.
//! Routing takes `index` (read) and releases it before touching sessions.

mod budget;
mod entry;
mod metrics;
pub mod persist;
mod recover;
mod registry;
pub use recover::RestoreSummary;
mod settings;
mod sys;
mod tap;
#[cfg(test)]
mod tests;
pub use tap::{TapError, TapHandle, TapId, MAX_TAPS};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use switchboard_codec::{
    Connect, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use switchboard_session::{
    ClientParams, Delivery, EnqueueOutcome, Message, Session, SessionLimits, SharedMessage,
};
use switchboard_topic::{FilterKind, Matches, RetainedTree, TopicIndex};

pub use entry::{SessionCounts, SessionEntry, SessionInfo, SessionKey, SubscriptionRecord, Unpark};
pub use metrics::{ListenerRegistry, ListenerStats, Metrics};
pub use persist::Store;
pub use settings::Settings;
pub use switchboard_store::Record;

/// How a connection ended, as far as the will and the session are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// DISCONNECT 0x00: no will ([MQTT-3.1.2-10] v3.1.1, [MQTT-3.14.4-3] v5).
    Normal { session_expiry: Option<u32> },
    /// v5 DISCONNECT 0x04: publish the will.
    WithWill { session_expiry: Option<u32> },
    /// Network loss, protocol error, keep-alive timeout, server-initiated close:
    /// the will is published ([MQTT-3.1.2-8] v3.1.1).
    Abnormal,
    /// Server shutdown: the session is kept; the will is not published, so that a
    /// restart does not spray wills for every client.
    Shutdown,
}

/// The outcome of a successful CONNECT.
#[derive(Debug)]
pub struct Connected {
    pub entry: Arc<SessionEntry>,
    pub generation: u64,
    pub session_present: bool,
    /// PUBLISH (DUP) and PUBREL packets to send right after CONNACK.
    pub resend: Vec<switchboard_codec::Packet>,
    /// Set when the server chose the client identifier.
    pub assigned_client_id: Option<String>,
    /// The session expiry in force; differs from what the client asked when capped.
    pub session_expiry: u32,
    /// The keep alive in force (v5: Server Keep Alive when it differs from the request).
    pub keep_alive: u16,
    /// What the durable store must hold before CONNACK is sent (empty in memory
    /// mode or for a session that ends with its connection).
    pub records: Vec<Record>,
}

/// What a connection asks of the broker at CONNECT time.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    pub connect: &'a Connect,
    pub peer: std::net::SocketAddr,
    /// The user name the connection authenticated as (or claimed, without a
    /// password file). Kept on the session for [`DeliveryFilter`]; a resumed
    /// session whose user name differs starts clean instead, so that one
    /// user never inherits another's queued messages and subscriptions.
    pub username: Option<Arc<str>>,
    /// Which password file and ACL `username` belongs to: 0 for the
    /// server-wide ones, another number for a listener with files of its
    /// own. Passed back to [`DeliveryFilter::can_receive`]; a resumed session
    /// from another realm starts clean, as for another user name.
    pub realm: u32,
}

/// Decides, per delivery, whether a session may receive a message: the
/// access control list's read check, applied to retained messages sent on
/// subscribe and to live deliveries alike.
///
/// Called with one session's mutex held (it reads the session's user name
/// there), so it must be quick and must not call back into the broker.
pub trait DeliveryFilter: std::fmt::Debug + Send + Sync {
    /// `realm` is the session's [`ConnectRequest::realm`] (0 for a session
    /// restored from the store whose client has not connected since).
    fn can_receive(&self, realm: u32, client_id: &str, username: Option<&str>, topic: &str)
        -> bool;
}

/// Timers kept in a sorted set; validated against the session on firing, so a
/// cancelled timer needs no removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    SessionExpiry,
    WillDelay,
}

/// A timer for one session. The client id finds the session (see
/// [`registry`]), the key tells it from a later session with the same
/// client id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    key: SessionKey,
    kind: TimerKind,
    client_id: Arc<str>,
}

/// An entry in the topic index: the session and the options it subscribed with.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub entry: Arc<SessionEntry>,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
    /// For shared subscriptions, the full `$share/{group}/{filter}`: carried by each
    /// delivery so that what a departing member leaves unacknowledged can be handed
    /// to another member of the same shared subscription.
    pub shared_filter: Option<Arc<str>>,
}

/// One target of a routed message.
struct Target {
    entry: Arc<SessionEntry>,
    qos: QoS,
    retain: bool,
    identifiers: Vec<u32>,
    shared_group: Option<Arc<str>>,
}

impl Target {
    fn new(subscriber: &Subscriber, message: &Message, shared_group: Option<Arc<str>>) -> Target {
        Target {
            entry: subscriber.entry.clone(),
            qos: message.qos.min(subscriber.options.qos),
            // [MQTT-3.3.1-12]/[MQTT-3.3.1-13] (v5): RETAIN kept only with Retain As Published.
            retain: subscriber.options.retain_as_published && message.retain,
            identifiers: subscriber.identifier.into_iter().collect(),
            shared_group,
        }
    }
}

/// Who gets a message: the result of [`Broker::route`], carried out by
/// [`Broker::deliver_route`].
pub struct Route {
    targets: Vec<Target>,
    /// Persistent QoS 1/2 targets left out because the queue memory budget had
    /// no room for the message (see [`Route::quota_exceeded`]).
    refused_for_memory: u64,
    /// A retained message the retained store's limits have no room for: it is
    /// delivered but not retained.
    retain_refused: bool,
}

impl Route {
    /// Number of sessions the message goes to.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether any target session outlives its connection (its queue entry must
    /// then be durable before the publisher is acknowledged).
    pub fn has_persistent_target(&self) -> bool {
        self.targets
            .iter()
            .any(|target| target.entry.is_persistent())
    }

    /// Whether the broker can carry out this publish only in part: a
    /// persistent session that subscribed at QoS 1 or 2 cannot queue it (the
    /// memory budget, `Settings::max_queued_bytes_total`, is reached for it),
    /// or the retained store is full. The other targets still get it. A v5
    /// publisher is told with PUBACK/PUBREC 0x97 (Quota exceeded); 3.x has no
    /// way to say it. Decided when routing, so that what the publisher is told
    /// is exactly what happens: a target left out here is never queued, and
    /// a retained message refused here is never stored.
    pub fn quota_exceeded(&self) -> bool {
        self.refused_for_memory > 0 || self.retain_refused
    }

    /// Whether the message carries RETAIN but the retained store's limits
    /// have no room for it: it is delivered, not retained.
    pub fn retain_refused(&self) -> bool {
        self.retain_refused
    }
}

/// Work that must happen after all locks are released.
#[derive(Default)]
struct Deferred {
    wills: Vec<(Will, ProtocolVersion)>,
    /// Shared-subscription deliveries a departing member left, with that member's key.
    redeliver: Vec<(SessionKey, Delivery)>,
    /// Filters of ended sessions to remove from the index.
    unsubscribe: Vec<(SessionKey, Vec<String>)>,
    /// Records for the durable store (appended without waiting).
    records: Vec<Record>,
}

/// The broker: shared by every connection task behind an `Arc`.
#[derive(Debug)]
pub struct Broker {
    settings: Settings,
    registry: Mutex<registry::Registry>,
    index: RwLock<TopicIndex<SessionKey, Subscriber>>,
    retained: RwLock<RetainedStore>,
    timers: Mutex<BTreeSet<Timer>>,
    next_key: AtomicU64,
    next_generation: AtomicU64,
    next_message_id: AtomicU64,
    metrics: Metrics,
    /// Queued bytes across all sessions and their bound (see the `budget`
    /// module); every `SessionEntry` holds a handle to settle into.
    common: Arc<entry::Common>,
    /// The limits of every session, from `settings`: one copy that all
    /// sessions share rather than one each.
    session_limits: Arc<SessionLimits>,
    started: Instant,
    /// The durable log; `None` in memory mode.
    store: Option<Arc<Store>>,
    /// The access control list's read check; `None` = every delivery allowed.
    delivery_filter: Option<Arc<dyn DeliveryFilter>>,
    /// Observers of routed messages (the console's live view); see [`Broker::add_tap`].
    taps: tap::Taps,
}

#[derive(Debug, Default)]
struct RetainedStore {
    tree: RetainedTree<SharedMessage>,
    bytes: usize,
}

impl RetainedStore {
    /// The retained bytes after storing `message` (non-empty) in its topic,
    /// or `None` if that breaks `max_retained_messages` or
    /// `max_retained_bytes` (0 = unlimited).
    fn bytes_after(&self, settings: &Settings, message: &Message) -> Option<usize> {
        let replaced = self.tree.get(&message.topic).map(|old| old.size());
        let count_after = self.tree.len() + usize::from(replaced.is_none());
        let bytes_after = (self.bytes + message.size()).saturating_sub(replaced.unwrap_or(0));
        let refused = (settings.max_retained_messages > 0
            && count_after > settings.max_retained_messages)
            || (settings.max_retained_bytes > 0 && bytes_after > settings.max_retained_bytes);
        (!refused).then_some(bytes_after)
    }

    /// Whether storing `message` (non-empty) would be within the limits.
    fn admits(&self, settings: &Settings, message: &Message) -> bool {
        self.bytes_after(settings, message).is_some()
    }
}

impl Broker {
    pub fn new(settings: Settings, now: Instant) -> Broker {
        Broker {
            common: Arc::new(entry::Common::new(budget::QueueBudget::new(
                settings.max_queued_bytes_total,
            ))),
            session_limits: Arc::new(session_limits(&settings)),
            settings,
            registry: Mutex::new(registry::Registry::default()),
            index: RwLock::new(TopicIndex::new()),
            retained: RwLock::new(RetainedStore::default()),
            timers: Mutex::new(BTreeSet::new()),
            next_key: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            next_message_id: AtomicU64::new(1),
            metrics: Metrics::default(),
            started: now,
            store: None,
            delivery_filter: None,
            taps: tap::Taps::default(),
        }
    }

    /// Installs the check every delivery must pass (see [`DeliveryFilter`]).
    /// Deliveries it refuses are dropped and counted in
    /// `Metrics::dropped_not_authorized`.
    pub fn with_delivery_filter(mut self, filter: Arc<dyn DeliveryFilter>) -> Broker {
        self.delivery_filter = Some(filter);
        self
    }

    /// The durable store, if the broker has one.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Moves a session's journal (what its sans-IO state did) into records.
    /// Returns true when one of them must be durable before the connection
    /// writes on (see [`Store::journal_records`]).
    pub fn journal_records(
        &self,
        entry: &SessionEntry,
        events: &[switchboard_session::JournalEvent],
        records: &mut Vec<Record>,
    ) -> bool {
        match &self.store {
            Some(store) if !events.is_empty() => {
                store.journal_records(&entry.client_id, events, records)
            }
            _ => false,
        }
    }

    /// Stages what must be durable before `message` is acknowledged and
    /// delivered: the message, a queue entry for each persistent target and the
    /// retained-store change. Returns false (and stages nothing) when nothing
    /// needs to be kept: memory mode, or no persistent target and no RETAIN.
    ///
    /// A retained message the retained store's limits refuse gets no
    /// `Retain`, or it would come back after a restart although it was never
    /// retained. The decision is the route's (`Route::retain_refused`, which
    /// [`Broker::deliver_route`] follows too). A message the route admitted
    /// can still be refused when it is delivered, if other retained messages
    /// filled the store meanwhile (while this one was being written); its
    /// `Retain` is then on disk although the topic kept its old value.
    pub fn stage_publish(
        &self,
        route: &Route,
        message: &Message,
        records: &mut Vec<Record>,
    ) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        let persistent_targets = route.has_persistent_target();
        let clearing_retained = message.retain && message.payload.is_empty();
        let retaining = message.retain && !route.retain_refused;
        if !retaining && !persistent_targets {
            return false;
        }
        if !clearing_retained || persistent_targets {
            match store.message_record(message) {
                Some(record) => records.push(record),
                None => return false,
            }
        }
        for target in &route.targets {
            if target.entry.is_persistent() {
                records.push(Record::Enqueue {
                    client_id: target.entry.client_id.to_string(),
                    message_id: message.id,
                    qos: target.qos.as_u8(),
                    retain: target.retain,
                    subscription_identifiers: target.identifiers.clone(),
                    shared_filter: target.shared_group.as_deref().map(str::to_string),
                });
            }
        }
        if retaining {
            records.push(if clearing_retained {
                Record::RetainClear {
                    topic: message.topic.clone(),
                }
            } else {
                Record::Retain {
                    topic: message.topic.clone(),
                    message_id: message.id,
                }
            });
        }
        true
    }

    /// Appends records now, without waiting (memory mode: does nothing).
    fn append_detached(&self, records: Vec<Record>) {
        if let Some(store) = &self.store {
            store.append_detached(records);
        }
    }

    /// Drains a session's journal into records (for changes the broker makes
    /// itself, such as handing shared messages over or expiring queue entries).
    fn drain_journal(
        &self,
        entry: &SessionEntry,
        inner: &mut entry::SessionInner,
        records: &mut Vec<Record>,
    ) {
        if inner.session.is_journaling() {
            let mut events = Vec::new();
            inner.session.take_journal(&mut events);
            self.journal_records(entry, &events, records);
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where this broker's parked connections wait (the server's parking
    /// lot): a delivery or close order for a parked connection's session
    /// resumes it there (see [`SessionEntry::park`]). Set once; later calls
    /// are ignored.
    pub fn set_parking(&self, lot: &Arc<dyn Unpark>) {
        let _ = self.common.parking.set(Arc::downgrade(lot));
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Handles a CONNECT that passed decoding: picks or checks the client
    /// identifier, takes over an existing connection (race-free: the registry
    /// lock serialises every CONNECT), resumes or replaces the session, and
    /// attaches the new connection.
    pub fn connect(
        &self,
        request: ConnectRequest<'_>,
        now: Instant,
    ) -> Result<Connected, ReasonCode> {
        let connect = request.connect;
        let version = connect.protocol;
        let mut assigned_client_id = None;
        if let Some(will) = &connect.will {
            // [MQTT-3.2.2-12] / [MQTT-3.2.2-13] (v5): a will the server could not publish
            // as asked is refused at CONNECT time.
            if will.qos > self.settings.maximum_qos {
                return Err(ReasonCode::QOS_NOT_SUPPORTED);
            }
            if will.retain && !self.settings.retain_available {
                return Err(ReasonCode::RETAIN_NOT_SUPPORTED);
            }
        }
        let client_id: Arc<str> = if connect.client_id.is_empty() {
            // [MQTT-3.1.3-8] (3.1.1): a zero-length id needs clean session 1.
            // 3.1 requires 1..=23 characters.
            if !self.settings.allow_zero_length_client_id
                || version == ProtocolVersion::V3_1
                || (!version.is_v5() && !connect.clean_start)
            {
                return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            let id = format!(
                "auto-{:016x}",
                self.next_generation.load(Ordering::Relaxed)
                    ^ 0x5bd1_e995_0000_0000
                    ^ (now.duration_since(self.started).as_nanos() as u64)
            );
            assigned_client_id = Some(id.clone());
            Arc::from(id)
        } else {
            if connect.client_id.len() > self.settings.max_client_id_length {
                return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            Arc::from(connect.client_id.as_str())
        };

        let session_expiry = if version.is_v5() {
            connect
                .properties
                .session_expiry_interval
                .unwrap_or(0)
                .min(self.settings.max_session_expiry)
        } else if connect.clean_start {
            0
        } else {
            self.settings.max_session_expiry
        };
        let keep_alive = if version.is_v5()
            && self.settings.max_keep_alive > 0
            && (connect.keep_alive == 0 || connect.keep_alive > self.settings.max_keep_alive)
        {
            self.settings.max_keep_alive
        } else {
            connect.keep_alive
        };

        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut deferred = Deferred::default();
        let client = ClientParams {
            version,
            receive_maximum: connect.properties.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: connect.properties.maximum_packet_size,
        };
        let attached = entry::Attached {
            generation,
            connected_at: entry::Moment::of(now),
            peer: request.peer,
            keep_alive,
        };
        let username = request.username;
        let realm = request.realm;

        let mut connect_records = Vec::new();
        let (entry, session_present, resend) = {
            let mut registry = self.registry.lock();
            let mut resumed = None;
            if let Some(old) = registry.get(&client_id).cloned() {
                let mut inner = old.lock();
                // A session belongs to the user who made it: another user with the same
                // client id starts clean instead of inheriting its queue and subscriptions.
                let clean_start =
                    connect.clean_start || !old.owner.lock().admits(realm, username.as_ref());
                if let Some(previous) = inner.connection.take() {
                    // [MQTT-3.1.4-3]: the existing connection is closed (v5: 0x8E).
                    old.order_close(
                        &mut inner,
                        previous.generation,
                        ReasonCode::SESSION_TAKEN_OVER,
                    );
                    Metrics::incr(&self.metrics.takeovers);
                    // The old connection counts as gone now: its own `disconnected` call
                    // will see another generation attached and do nothing.
                    Metrics::decr(&self.metrics.connections_current);
                    inner.session.detach();
                    for delivery in inner.session.take_shared() {
                        deferred.redeliver.push((old.key, delivery));
                    }
                    if let Some(will) = inner.will.take() {
                        let delay = will_delay(&will, inner.session_expiry);
                        // The will is sent at once unless it has a delay and the session
                        // continues, in which case this reconnect cancels it ([MQTT-3.1.3-9]).
                        if delay == 0 || clean_start {
                            deferred.wills.push((*will, inner.version));
                        }
                    }
                }
                if let Some(pending) = inner.take_pending_will() {
                    // A delayed will: a new connection to the session cancels it
                    // ([MQTT-3.1.3-9]); a clean start ends the session, which sends it.
                    if clean_start {
                        deferred.wills.push((pending.1, inner.version));
                    }
                }
                let expired = inner.expires_at().is_some_and(|at| at <= now);
                if clean_start || expired || inner.ended {
                    let filters = self.end_session_locked(&old, &mut inner, &mut deferred);
                    drop(inner);
                    registry.remove(&client_id);
                    deferred.unsubscribe.push((old.key, filters));
                } else {
                    inner.set_expires_at(None);
                    drop(inner);
                    resumed = Some(old);
                }
            }
            // Remove the ended session's subscriptions before the new one is visible.
            if !deferred.unsubscribe.is_empty() {
                self.remove_from_index(&deferred.unsubscribe);
                deferred.unsubscribe.clear();
            }
            let session_present = resumed.is_some();
            let entry = match resumed {
                Some(entry) => entry,
                None => {
                    let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                    let entry = Arc::new(SessionEntry::new(
                        key,
                        client_id,
                        entry::SessionInner::new(
                            Session::with_shared_limits(self.session_limits.clone()),
                            version,
                            session_expiry,
                        ),
                        self.common.clone(),
                    ));
                    registry.insert(entry.clone());
                    entry
                }
            };
            let resend = {
                let mut inner = entry.lock();
                inner.version = version;
                inner.session_expiry = session_expiry;
                entry.set_persistent(session_expiry > 0);
                inner.will = connect.will.as_ref().map(|will| Box::new(owned_will(will)));
                inner.connection = Some(attached);
                *entry.owner.lock() = entry::Owner::of(realm, username.as_ref());
                self.record_connect(&entry, &mut inner, &mut connect_records);
                inner.session.attach(client)
            };
            (entry, session_present, resend)
        };
        Metrics::incr(&self.metrics.connections_total);
        Metrics::incr(&self.metrics.connections_current);
        self.run_deferred(deferred, now);
        Ok(Connected {
            entry,
            generation,
            session_present,
            resend,
            assigned_client_id,
            session_expiry,
            keep_alive,
            records: connect_records,
        })
    }

    /// What the store must know of a session that a connection just took:
    /// a persistent session (expiry > 0) is upserted with its will, and its
    /// sans-IO state journals from now on; a recorded session resumed with
    /// expiry 0 no longer survives a restart.
    fn record_connect(
        &self,
        entry: &SessionEntry,
        inner: &mut entry::SessionInner,
        records: &mut Vec<Record>,
    ) {
        let Some(store) = &self.store else {
            return;
        };
        let client_id = entry.client_id.to_string();
        if inner.session_expiry > 0 {
            records.push(Record::SessionUpsert {
                client_id: client_id.clone(),
                protocol_level: inner.version.level(),
                session_expiry_secs: inner.session_expiry,
            });
            // Whose it is, so that after a restart another user with the same
            // client id starts clean too (see `entry::Owner`).
            let (realm, user) = {
                let owner = entry.owner.lock();
                (owner.realm(), owner.username().map(str::to_string))
            };
            records.push(Record::SessionOwner {
                client_id: client_id.clone(),
                realm,
                user,
            });
            match &inner.will {
                Some(will) => records.extend(store.will_record(&client_id, will, None)),
                None => records.push(Record::WillClear { client_id }),
            }
            inner.recorded = true;
            inner.session.set_journaling(true);
        } else if inner.recorded {
            records.push(Record::SessionEnd { client_id });
            inner.recorded = false;
            inner.session.set_journaling(false);
        }
    }

    /// A connection ended. Publishes or schedules the will, and ends the session
    /// now or schedules its expiry. Does nothing if `generation` is no longer the
    /// session's connection (it was taken over, and the takeover did all this).
    pub fn disconnected(
        &self,
        entry: &Arc<SessionEntry>,
        generation: u64,
        reason: CloseReason,
        now: Instant,
    ) {
        let mut deferred = Deferred::default();
        {
            let mut registry = self.registry.lock();
            let mut inner = entry.lock();
            entry.forget_close_order(&mut inner, generation);
            match &inner.connection {
                Some(attached) if attached.generation == generation => {}
                _ => return,
            }
            inner.connection = None;
            Metrics::decr(&self.metrics.connections_current);
            inner.session.detach();
            match reason {
                CloseReason::Normal { session_expiry }
                | CloseReason::WithWill { session_expiry } => {
                    if let Some(expiry) = session_expiry {
                        inner.session_expiry = expiry.min(self.settings.max_session_expiry);
                        entry.set_persistent(inner.session_expiry > 0);
                    }
                }
                CloseReason::Abnormal | CloseReason::Shutdown => {}
            }
            let will = inner.will.take();
            // A shutdown publishes no will, but the session outlives the broker: its
            // will stays on disk without a publish time, so that once the broker is
            // back it is due after its delay, as after a crash (see `recover`).
            let kept_will = if reason == CloseReason::Shutdown {
                will.clone()
            } else {
                None
            };
            let publish_will =
                matches!(reason, CloseReason::WithWill { .. } | CloseReason::Abnormal);
            if let (Some(will), true) = (will, publish_will) {
                let delay = will_delay(&will, inner.session_expiry);
                if delay == 0 {
                    deferred.wills.push((*will, inner.version));
                } else {
                    let at = now + Duration::from_secs(u64::from(delay));
                    inner.set_pending_will(Box::new((at, *will)));
                    self.timers.lock().insert(Timer {
                        at,
                        key: entry.key,
                        kind: TimerKind::WillDelay,
                        client_id: entry.client_id.clone(),
                    });
                }
            }
            // A departing shared-subscription member's unacknowledged messages go to
            // another member of its group.
            for delivery in inner.session.take_shared() {
                deferred.redeliver.push((entry.key, delivery));
            }
            self.drain_journal(entry, &mut inner, &mut deferred.records);
            if inner.session_expiry == 0 && reason != CloseReason::Shutdown {
                let filters = self.end_session_locked(entry, &mut inner, &mut deferred);
                drop(inner);
                registry.remove(&entry.client_id);
                deferred.unsubscribe.push((entry.key, filters));
            } else {
                if inner.session_expiry != u32::MAX {
                    let at = now + Duration::from_secs(u64::from(inner.session_expiry));
                    inner.set_expires_at(Some(at));
                    self.timers.lock().insert(Timer {
                        at,
                        key: entry.key,
                        kind: TimerKind::SessionExpiry,
                        client_id: entry.client_id.clone(),
                    });
                }
                if inner.recorded {
                    self.record_detached(
                        entry,
                        &inner,
                        kept_will.as_deref(),
                        &mut deferred.records,
                    );
                }
            }
        }
        self.run_deferred(deferred, now);
    }

    /// Records of a session that just lost its connection: its expiry deadline
    /// and its pending will, or the will a shutdown kept for the next start
    /// (`kept_will`), or that it has none any more.
    fn record_detached(
        &self,
        entry: &SessionEntry,
        inner: &entry::SessionInner,
        kept_will: Option<&Will>,
        records: &mut Vec<Record>,
    ) {
        let Some(store) = &self.store else {
            return;
        };
        let client_id = entry.client_id.to_string();
        records.push(Record::SessionDetached {
            client_id: client_id.clone(),
            expires_at_ms: inner.expires_at().map(|at| store.clock().to_unix_ms(at)),
        });
        match (inner.pending_will(), kept_will) {
            (Some((at, will)), _) => records.extend(store.will_record(&client_id, will, Some(*at))),
            (None, Some(will)) => records.extend(store.will_record(&client_id, will, None)),
            (None, None) => records.push(Record::WillClear { client_id }),
        }
    }

    /// Marks a session ended and collects what must happen outside the locks.
    /// Returns its filters, to be removed from the index.
    fn end_session_locked(
        &self,
        entry: &SessionEntry,
        inner: &mut entry::SessionInner,
        deferred: &mut Deferred,
    ) -> Vec<String> {
        inner.ended = true;
        if inner.recorded {
            deferred.records.push(Record::SessionEnd {
                client_id: entry.client_id.to_string(),
            });
            inner.recorded = false;
        }
        inner.session.set_journaling(false);
        if let Some(pending) = inner.take_pending_will() {
            // The will is sent when the session ends, if that comes before its delay
            // ([MQTT-3.1.3-9] v5).
            deferred.wills.push((pending.1, inner.version));
        }
        for delivery in inner.session.clear() {
            deferred.redeliver.push((entry.key, delivery));
        }
        std::mem::take(&mut inner.subscriptions)
            .into_keys()
            .collect()
    }

    fn remove_from_index(&self, removals: &[(SessionKey, Vec<String>)]) {
        let mut index = self.index.write();
        for (key, filters) in removals {
            for filter in filters {
                match switchboard_topic::parse_filter(filter, &self.settings.topic_limits) {
                    Ok(FilterKind::Shared { group, filter }) => {
                        index.remove_shared(group, filter, *key);
                    }
                    Ok(FilterKind::Plain(filter)) => {
                        index.remove(filter, *key);
                    }
                    Err(_) => {}
                }
            }
        }
    }

    fn run_deferred(&self, mut deferred: Deferred, now: Instant) {
        self.append_detached(std::mem::take(&mut deferred.records));
        if !deferred.unsubscribe.is_empty() {
            self.remove_from_index(&deferred.unsubscribe);
        }
        for (will, _version) in deferred.wills.drain(..) {
            Metrics::incr(&self.metrics.wills_published);
            let message = message_from_will(will, self.next_message_id(), now);
            let _ = self.publish(None, message, now);
        }
        for (departing, delivery) in deferred.redeliver.drain(..) {
            self.redeliver_shared(departing, delivery, now);
        }
    }

    /// Fires due timers: delayed wills and session expiry. Call about once a second
    /// with the current time.
    pub fn tick(&self, now: Instant) {
        let due: Vec<Timer> = {
            let mut timers = self.timers.lock();
            let mut due = Vec::new();
            while timers.first().is_some_and(|first| first.at <= now) {
                due.extend(timers.pop_first());
            }
            due
        };
        if due.is_empty() {
            return;
        }
        let mut deferred = Deferred::default();
        {
            let mut registry = self.registry.lock();
            for Timer {
                at,
                key,
                kind,
                client_id,
            } in due
            {
                let Some(entry) = registry.get_keyed(&client_id, key).cloned() else {
                    continue;
                };
                let mut inner = entry.lock();
                match kind {
                    TimerKind::WillDelay => {
                        if inner.pending_will().is_some_and(|pending| pending.0 == at) {
                            if let Some(pending) = inner.take_pending_will() {
                                deferred.wills.push((pending.1, inner.version));
                                if inner.recorded {
                                    deferred.records.push(Record::WillClear {
                                        client_id: entry.client_id.to_string(),
                                    });
                                }
                            }
                        }
                    }
                    TimerKind::SessionExpiry => {
                        if inner.connection.is_none() && inner.expires_at() == Some(at) {
                            Metrics::incr(&self.metrics.sessions_expired);
                            let filters =
                                self.end_session_locked(&entry, &mut inner, &mut deferred);
                            drop(inner);
                            registry.remove(&entry.client_id);
                            deferred.unsubscribe.push((key, filters));
                        }
                    }
                }
            }
        }
        self.run_deferred(deferred, now);
    }

    /// Routes one message now: [`Broker::route`] then [`Broker::deliver_route`].
    /// Returns the number of sessions it was handed to. For messages the broker
    /// makes itself (wills, `$SYS`) and for connections that need no durability.
    pub fn publish(
        &self,
        origin: Option<SessionKey>,
        message: SharedMessage,
        now: Instant,
    ) -> usize {
        let route = self.route(origin, &message);
        let mut records = Vec::new();
        if self.stage_publish(&route, &message, &mut records) {
            self.append_detached(records);
        }
        self.deliver_route(route, message, now)
    }

    /// Works out who gets `message`, without changing anything: matches the
    /// topic under the index read lock, picks one member per shared group, and
    /// merges overlapping subscriptions of one session into one delivery (the
    /// highest QoS, every subscription identifier; [MQTT-3.3.4-2],
    /// [MQTT-3.3.4-3]). Shared subscriptions are separate copies.
    ///
    /// Splitting this from [`Broker::deliver_route`] lets a connection write
    /// what must be durable (the message, its queue entries for persistent
    /// sessions) between the two, so that no subscriber sees a message before it
    /// is on disk.
    pub fn route(&self, origin: Option<SessionKey>, message: &Message) -> Route {
        let mut targets: Vec<Target> = Vec::new();
        {
            let index = self.index.read();
            let mut matches = Matches::new();
            index.matches_into(&message.topic, &mut matches);
            for (subscriber_key, subscriber) in matches.plain() {
                if subscriber.options.no_local && Some(*subscriber_key) == origin {
                    // [MQTT-3.8.3-3]: not sent back to the publishing connection.
                    continue;
                }
                if !self.may_receive(&subscriber.entry, &message.topic) {
                    continue;
                }
                targets.push(Target::new(subscriber, message, None));
            }
            for shared in matches.shared() {
                let allowed = shared
                    .candidates()
                    .filter(|(_, member)| self.may_receive(&member.entry, &message.topic));
                if let Some(subscriber) = pick_member(allowed, None) {
                    let group = subscriber
                        .shared_filter
                        .clone()
                        .unwrap_or_else(|| Arc::from(shared.group()));
                    targets.push(Target::new(subscriber, message, Some(group)));
                }
            }
        }
        targets.sort_by_key(|target| (target.shared_group.is_some(), target.entry.key));
        let mut merged: Vec<Target> = Vec::with_capacity(targets.len());
        for target in targets {
            if let Some(last) = merged.last_mut() {
                if last.shared_group.is_none()
                    && target.shared_group.is_none()
                    && last.entry.key == target.entry.key
                {
                    last.qos = last.qos.max(target.qos);
                    last.retain |= target.retain;
                    last.identifiers.extend(target.identifiers);
                    continue;
                }
            }
            merged.push(target);
        }
        let mut refused_for_memory = 0;
        let size = message.size();
        if !self.common.budget.has_room(size, budget::Tier::Offline) {
            // Near the budget: a persistent QoS 1/2 target that cannot take the
            // message is left out now, so the publisher can be told (0x97). The
            // rest meet the same budget at delivery.
            merged.retain(|target| {
                if target.qos == QoS::AtMostOnce || !target.entry.is_persistent() {
                    return true;
                }
                let connected = target.entry.lock().connection.is_some();
                let fits = self
                    .common
                    .budget
                    .has_room(size, budget::Tier::of(connected, target.qos));
                refused_for_memory += u64::from(!fits);
                fits
            });
        }
        let retain_refused = message.retain
            && !message.payload.is_empty()
            && !self.retained.read().admits(&self.settings, message);
        Route {
            targets: merged,
            refused_for_memory,
            retain_refused,
        }
    }

    /// Carries out a route: updates the retained store if the message carries
    /// RETAIN, then hands a delivery to each target session's queue and wakes
    /// its connection. Returns the number of targets.
    pub fn deliver_route(&self, route: Route, message: SharedMessage, now: Instant) -> usize {
        if message.retain {
            if route.retain_refused {
                Metrics::incr(&self.metrics.retained_refused);
                tracing::warn!(topic = %message.topic, "retained store full; message not retained");
            } else {
                self.store_retained(&message);
            }
        }
        self.taps.feed(&message);
        Metrics::add(
            &self.metrics.dropped_memory_budget,
            route.refused_for_memory,
        );
        if route.targets.is_empty() {
            if route.refused_for_memory == 0 {
                Metrics::incr(&self.metrics.dropped_no_subscribers);
            }
            return 0;
        }
        let count = route.targets.len();
        for target in route.targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: target.qos,
                retain: target.retain,
                subscription_identifiers: target.identifiers,
                shared_group: target.shared_group,
            };
            self.deliver(&target.entry, delivery, now);
        }
        count
    }

    /// Registers a tap: from now on every routed message whose topic matches
    /// `filter` (a plain filter; `$share/` is refused) is offered to `sender`
    /// with `try_send`, after the retained store is updated and when it is
    /// handed to subscribers, whether or not there are any. A full channel
    /// drops the message for this tap and counts it in the handle; a closed
    /// one removes the tap. See the `tap` module for the bounds.
    pub fn add_tap(
        &self,
        filter: &str,
        sender: tokio::sync::mpsc::Sender<SharedMessage>,
    ) -> Result<TapHandle, TapError> {
        self.taps.add(filter, &self.settings.topic_limits, sender)
    }

    /// Removes a tap; true if it was still registered.
    pub fn remove_tap(&self, id: TapId) -> bool {
        self.taps.remove(id)
    }

    /// Number of registered taps.
    pub fn tap_count(&self) -> usize {
        self.taps.len()
    }

    /// A fresh message identifier (the durable store refers to messages by it).
    pub fn next_message_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the delivery filter (the ACL's read check) lets `entry`'s
    /// session receive a message on `topic`; counts a refusal. Takes only the
    /// session's leaf `owner` lock, so it may run under the index lock.
    fn may_receive(&self, entry: &SessionEntry, topic: &str) -> bool {
        let Some(filter) = &self.delivery_filter else {
            return true;
        };
        let owner = entry.owner.lock().clone();
        let allowed = filter.can_receive(owner.realm(), &entry.client_id, owner.username(), topic);
        if !allowed {
            Metrics::incr(&self.metrics.dropped_not_authorized);
        }
        allowed
    }

    /// Queues one delivery for `entry`: within the memory budget for its tier
    /// (reserved before the session sees it; see the `budget` module), then
    /// within the session's own bounds. A delivery that is not queued is
    /// counted, and for a session in the durable store its staged `Enqueue`
    /// is taken back, so that a restart does not bring back what was dropped.
    ///
    /// The records this makes are appended at once (detached, under the
    /// session's lock), which is right when the `Enqueue` is already in the
    /// log (a message is delivered only once its batch is durable).
    fn deliver(&self, entry: &SessionEntry, delivery: Delivery, now: Instant) {
        self.deliver_staging(entry, delivery, now, None);
    }

    /// [`Broker::deliver`], for a delivery whose `Enqueue` is staged in
    /// `staged` and not yet in the log (retained messages sent on
    /// SUBSCRIBE): the records it makes go after it in `staged`, so the log
    /// never sees the `Dequeue` of a dropped delivery before its `Enqueue`
    /// (which would bring the dropped message back after a restart).
    fn deliver_staging(
        &self,
        entry: &SessionEntry,
        delivery: Delivery,
        now: Instant,
        staged: Option<&mut Vec<Record>>,
    ) {
        let (queued, attached, parked, drops) = {
            let mut inner = entry.lock();
            if inner.ended {
                return;
            }
            let attached = inner.connection.is_some();
            let size = delivery.message.size();
            let message_id = delivery.message.id;
            let queued = if self
                .common
                .budget
                .try_reserve(size, budget::Tier::of(attached, delivery.qos))
            {
                // The settling when the lock is released accounts for what the
                // session does with it (queued, dropped, room made by expiry).
                entry.adopt_reservation(size);
                inner.session.enqueue(delivery, now) == EnqueueOutcome::Queued
            } else {
                Metrics::incr(&self.metrics.dropped_memory_budget);
                false
            };
            let mut records = Vec::new();
            if inner.session.is_journaling() {
                self.drain_journal(entry, &mut inner, &mut records);
            }
            if !queued && inner.recorded {
                records.push(Record::Dequeue {
                    client_id: entry.client_id.to_string(),
                    message_id,
                });
            }
            match staged {
                Some(staged) => staged.append(&mut records),
                None if !records.is_empty() => self.append_detached(records),
                None => {}
            }
            let parked = if queued {
                SessionEntry::take_parked(&mut inner)
            } else {
                None
            };
            // The session counts every drop (this one, and expired messages it
            // discarded to make room); they are taken here or by the connection's poll.
            (queued, attached, parked, inner.session.take_drops())
        };
        if !drops.is_empty() {
            self.metrics.record_drops(&drops);
        }
        match parked {
            Some(_) => entry.unpark(parked),
            None if queued && attached => entry.notify.notify_one(),
            None => {}
        }
    }

    /// Bytes queued across all sessions (messages not yet sent; see the
    /// `budget` module for what is counted).
    pub fn queued_bytes_total(&self) -> usize {
        self.common.budget.used()
    }

    /// `Settings::max_queued_bytes_total` (0 = unlimited).
    pub fn queued_bytes_limit(&self) -> usize {
        self.common.budget.limit()
    }

    /// Hands a shared-subscription delivery that its member left unacknowledged to
    /// another member of the same group, if the group still has one.
    fn redeliver_shared(&self, departing: SessionKey, delivery: Delivery, now: Instant) {
        let Some(shared) = delivery.shared_group.clone() else {
            return;
        };
        let Ok(FilterKind::Shared { group, .. }) =
            switchboard_topic::parse_filter(&shared, &self.settings.topic_limits)
        else {
            return;
        };
        let exclude = Some(departing);
        let target = {
            let index = self.index.read();
            let mut matches = Matches::new();
            index.matches_into(&delivery.message.topic, &mut matches);
            matches
                .shared()
                .iter()
                .filter(|m| m.group() == group)
                .filter(|m| {
                    m.members()
                        .first()
                        .and_then(|(_, s)| s.shared_filter.as_deref())
                        .is_some_and(|f| f == &*shared)
                })
                .find_map(|m| {
                    let allowed = m.candidates().filter(|(_, member)| {
                        self.may_receive(&member.entry, &delivery.message.topic)
                    });
                    pick_member(allowed, exclude)
                })
                .map(|member| (member.entry.clone(), member.options))
        };
        if let Some((entry, options)) = target {
            let delivery = Delivery {
                qos: delivery.message.qos.min(options.qos),
                ..delivery
            };
            if let (Some(store), true) = (&self.store, entry.is_persistent()) {
                let mut records = Vec::new();
                records.extend(store.message_record(&delivery.message));
                records.push(Record::Enqueue {
                    client_id: entry.client_id.to_string(),
                    message_id: delivery.message.id,
                    qos: delivery.qos.as_u8(),
                    retain: delivery.retain,
                    subscription_identifiers: delivery.subscription_identifiers.clone(),
                    shared_filter: delivery.shared_group.as_deref().map(str::to_string),
                });
                store.append_detached(records);
            }
            self.deliver(&entry, delivery, now);
        }
    }

    fn store_retained(&self, message: &SharedMessage) {
        let mut retained = self.retained.write();
        if message.payload.is_empty() {
            // [MQTT-3.3.1-10] (v5 [MQTT-3.3.1-6]): an empty retained message clears the topic.
            if let Some(old) = retained.tree.remove(&message.topic) {
                retained.bytes = retained.bytes.saturating_sub(old.size());
            }
            return;
        }
        let Some(bytes_after) = retained.bytes_after(&self.settings, message) else {
            Metrics::incr(&self.metrics.retained_refused);
            tracing::warn!(topic = %message.topic, "retained store full; message not retained");
            return;
        };
        retained.tree.insert(&message.topic, message.clone());
        retained.bytes = bytes_after;
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().tree.len()
    }

    /// Retained messages whose topic matches `filter`, at most `limit` (0 = all).
    pub fn retained_matching(&self, filter: &str, limit: usize) -> Vec<SharedMessage> {
        let retained = self.retained.read();
        let matching = retained
            .tree
            .matching(filter)
            .map(|(_, message)| message.clone());
        if limit == 0 {
            matching.collect()
        } else {
            matching.take(limit).collect()
        }
    }

    /// Removes one retained message (administrative action: nothing is sent
    /// to subscribers); true if there was one. The removal is journalled, so
    /// the message does not come back after a restart.
    pub fn delete_retained(&self, topic: &str) -> bool {
        let removed = {
            let mut retained = self.retained.write();
            match retained.tree.remove(topic) {
                Some(old) => {
                    retained.bytes = retained.bytes.saturating_sub(old.size());
                    true
                }
                None => false,
            }
        };
        if removed {
            self.append_detached(vec![Record::RetainClear {
                topic: topic.to_string(),
            }]);
        }
        removed
    }

    /// Handles SUBSCRIBE for a connected session. `Err` is a protocol violation that
    /// closes the connection with that reason code.
    pub fn subscribe(
        &self,
        entry: &Arc<SessionEntry>,
        generation: u64,
        subscribe: &Subscribe,
        now: Instant,
        records: &mut Vec<Record>,
    ) -> Result<SubAck, ReasonCode> {
        if subscribe.subscription_identifier.is_some() && !self.settings.subscription_identifiers {
            // [MQTT-3.8.2-?]: not supported but used: DISCONNECT 0xA1.
            return Err(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED);
        }
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained_requests: Vec<(String, SubscriptionOptions)> = Vec::new();
        let mut index_inserts: Vec<(String, SubscriptionRecord)> = Vec::new();
        {
            let mut inner = entry.lock();
            match &inner.connection {
                Some(attached) if attached.generation == generation => {}
                _ => return Err(ReasonCode::SESSION_TAKEN_OVER),
            }
            for (filter, options) in &subscribe.filters {
                let kind =
                    match switchboard_topic::parse_filter(filter, &self.settings.topic_limits) {
                        Ok(kind) => kind,
                        Err(_) => {
                            Metrics::incr(&self.metrics.subscriptions_refused);
                            reason_codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                            continue;
                        }
                    };
                let (shared, plain_filter) = match kind {
                    FilterKind::Plain(f) => (false, f),
                    FilterKind::Shared { filter: f, .. } => (true, f),
                };
                if shared && options.no_local {
                    // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
                    return Err(ReasonCode::PROTOCOL_ERROR);
                }
                let code = if shared && !self.settings.shared_subscriptions {
                    Some(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
                } else if !self.settings.wildcard_subscriptions
                    && (plain_filter.contains('+') || plain_filter.contains('#'))
                {
                    Some(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
                } else if self.settings.max_subscriptions_per_client > 0
                    && !inner.subscriptions.contains_key(filter.as_str())
                    && inner.subscriptions.len() >= self.settings.max_subscriptions_per_client
                {
                    Some(ReasonCode::QUOTA_EXCEEDED)
                } else {
                    None
                };
                if let Some(code) = code {
                    Metrics::incr(&self.metrics.subscriptions_refused);
                    reason_codes.push(code);
                    continue;
                }
                let granted = options.qos.min(self.settings.maximum_qos);
                let record = SubscriptionRecord {
                    options: SubscriptionOptions {
                        qos: granted,
                        ..*options
                    },
                    identifier: subscribe.subscription_identifier,
                };
                let existed = inner
                    .subscriptions
                    .insert(filter.clone(), record.clone())
                    .is_some();
                reason_codes.push(ReasonCode::granted(granted));
                tracing::debug!(client_id = %entry.client_id, %filter, qos = granted.as_u8(), "subscribed");
                // [MQTT-3.8.4-4]/[MQTT-3.3.1-9..11]: retained messages per Retain Handling;
                // none for shared subscriptions.
                let send_retained = !shared
                    && match options.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNew => !existed,
                        RetainHandling::DoNotSend => false,
                    };
                if send_retained {
                    retained_requests.push((plain_filter.to_string(), record.options));
                }
                if inner.recorded {
                    records.push(Record::Subscribe {
                        client_id: entry.client_id.to_string(),
                        filter: filter.clone(),
                        options: recover::options_byte(&record.options),
                        identifier: record.identifier,
                    });
                }
                index_inserts.push((filter.clone(), record));
            }
        }
        {
            let mut index = self.index.write();
            for (filter, record) in index_inserts {
                let mut subscriber = Subscriber {
                    entry: entry.clone(),
                    options: record.options,
                    identifier: record.identifier,
                    shared_filter: None,
                };
                match switchboard_topic::parse_filter(&filter, &self.settings.topic_limits) {
                    Ok(FilterKind::Shared {
                        group,
                        filter: inner_filter,
                    }) => {
                        subscriber.shared_filter = Some(Arc::from(filter.as_str()));
                        index.insert_shared(group, inner_filter, entry.key, subscriber);
                    }
                    Ok(FilterKind::Plain(filter)) => {
                        index.insert(filter, entry.key, subscriber);
                    }
                    Err(_) => {}
                }
            }
        }
        for (filter, options) in retained_requests {
            let messages =
                self.retained_matching(&filter, self.settings.max_retained_per_subscribe);
            for message in messages {
                if message.expires_at.is_some_and(|at| at <= now) {
                    continue;
                }
                if !self.may_receive(entry, &message.topic) {
                    continue;
                }
                let delivery = Delivery {
                    qos: message.qos.min(options.qos),
                    // [MQTT-3.3.1-8] (3.1.1), [MQTT-3.3.1-9] (5.0): RETAIN set when sent
                    // because of a new subscription.
                    retain: true,
                    subscription_identifiers: subscribe
                        .subscription_identifier
                        .into_iter()
                        .collect(),
                    shared_group: None,
                    message,
                };
                if self.store.is_some() && entry.is_persistent() {
                    records.push(Record::Enqueue {
                        client_id: entry.client_id.to_string(),
                        message_id: delivery.message.id,
                        qos: delivery.qos.as_u8(),
                        retain: true,
                        subscription_identifiers: delivery.subscription_identifiers.clone(),
                        shared_filter: None,
                    });
                }
                // Its records follow the staged Enqueue; the connection holds
                // the PUBLISH until that batch is durable (SUBACK is a barrier).
                self.deliver_staging(entry, delivery, now, Some(records));
            }
        }
        Ok(SubAck {
            packet_id: subscribe.packet_id,
            reason_string: None,
            user_properties: Vec::new(),
            reason_codes,
        })
    }

    /// Handles UNSUBSCRIBE.
    pub fn unsubscribe(
        &self,
        entry: &Arc<SessionEntry>,
        unsubscribe: &Unsubscribe,
        records: &mut Vec<Record>,
    ) -> UnsubAck {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        let mut removed = Vec::new();
        {
            let mut inner = entry.lock();
            for filter in &unsubscribe.filters {
                if inner.subscriptions.remove(filter.as_str()).is_some() {
                    if inner.recorded {
                        records.push(Record::Unsubscribe {
                            client_id: entry.client_id.to_string(),
                            filter: filter.clone(),
                        });
                    }
                    removed.push(filter.clone());
                    reason_codes.push(ReasonCode::SUCCESS);
                } else {
                    reason_codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
                }
            }
        }
        if !removed.is_empty() {
            self.remove_from_index(&[(entry.key, removed)]);
        }
        UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_string: None,
            user_properties: Vec::new(),
            reason_codes,
        }
    }

    /// Number of subscriptions in the index (shared memberships included).
    pub fn subscription_count(&self) -> usize {
        self.index.read().len()
    }

    /// Number of sessions, connected or not.
    pub fn session_count(&self) -> usize {
        self.registry.lock().len()
    }

    /// Every session, for listings.
    pub fn sessions(&self) -> Vec<Arc<SessionEntry>> {
        self.registry.lock().iter().cloned().collect()
    }

    pub fn session(&self, client_id: &str) -> Option<Arc<SessionEntry>> {
        self.registry.lock().get(client_id).cloned()
    }

    /// Asks a client's connection to close (administrative action). True if it was connected.
    pub fn kick(&self, client_id: &str, reason: ReasonCode) -> bool {
        let Some(entry) = self.session(client_id) else {
            return false;
        };
        let mut inner = entry.lock();
        match inner
            .connection
            .as_ref()
            .map(|attached| attached.generation)
        {
            Some(generation) => {
                entry.order_close(&mut inner, generation, reason);
                true
            }
            None => false,
        }
    }

    /// Ends a session now (administrative action): closes its connection if any,
    /// drops its queue and subscriptions. The will is not published.
    pub fn delete_session(&self, client_id: &str) -> bool {
        let mut deferred = Deferred::default();
        {
            let mut registry = self.registry.lock();
            let Some(entry) = registry.get(client_id).cloned() else {
                return false;
            };
            let mut inner = entry.lock();
            if let Some(attached) = inner.connection.take() {
                entry.order_close(
                    &mut inner,
                    attached.generation,
                    ReasonCode::ADMINISTRATIVE_ACTION,
                );
                Metrics::decr(&self.metrics.connections_current);
            }
            inner.will = None;
            inner.take_pending_will();
            let filters = self.end_session_locked(&entry, &mut inner, &mut deferred);
            deferred.wills.clear();
            drop(inner);
            registry.remove(client_id);
            deferred.unsubscribe.push((entry.key, filters));
        }
        self.run_deferred(deferred, Instant::now());
        true
    }

    /// Asks every connection to close with `reason` (shutdown).
    pub fn disconnect_all(&self, reason: ReasonCode) {
        for entry in self.sessions() {
            let mut inner = entry.lock();
            if let Some(generation) = inner
                .connection
                .as_ref()
                .map(|attached| attached.generation)
            {
                entry.order_close(&mut inner, generation, reason);
            }
        }
    }

    /// Publishes the `$SYS` topics (retained), like Mosquitto's.
    pub fn publish_sys(&self, now: Instant) {
        sys::publish(self, now);
    }
}

/// The effective will delay: the will goes out at the earlier of its delay and the
/// session's end ([MQTT-3.1.2-8] v5 wording of 3.1.3.2.2).
/// The limits of every session under `settings`.
fn session_limits(settings: &Settings) -> SessionLimits {
    SessionLimits {
        max_queued_messages: settings.max_queued_messages,
        max_queued_bytes: settings.max_queued_bytes,
        max_inflight: settings.receive_maximum,
        queue_qos0_offline: settings.queue_qos0_offline,
    }
}

fn will_delay(will: &Will, session_expiry: u32) -> u32 {
    will.properties
        .will_delay_interval
        .unwrap_or(0)
        .min(session_expiry)
}

/// Picks the member of a shared group to deliver to: the first connected one in
/// round-robin order, else the first one (its session queues the message);
/// skips `exclude` (a departing member).
fn pick_member<'a>(
    candidates: impl Iterator<Item = (SessionKey, &'a Subscriber)>,
    exclude: Option<SessionKey>,
) -> Option<&'a Subscriber> {
    let mut fallback = None;
    for (key, member) in candidates {
        if Some(key) == exclude {
            continue;
        }
        if member.entry.lock().connection.is_some() {
            return Some(member);
        }
        if fallback.is_none() {
            fallback = Some(member);
        }
    }
    fallback
}

/// A copy of a CONNECT's will that owns its bytes, so the stored will does not
/// pin the connection's read buffer.
fn owned_will(will: &Will) -> Will {
    let mut will = will.clone();
    will.payload = bytes::Bytes::copy_from_slice(&will.payload);
    if let Some(data) = will.properties.correlation_data.as_mut() {
        *data = bytes::Bytes::copy_from_slice(data);
    }
    will
}

/// Turns a CONNECT will into a message to route.
fn message_from_will(will: Will, id: u64, now: Instant) -> SharedMessage {
    let properties = switchboard_codec::PublishProperties {
        payload_format_indicator: will.properties.payload_format_indicator,
        message_expiry_interval: will.properties.message_expiry_interval,
        topic_alias: None,
        response_topic: will.properties.response_topic,
        correlation_data: will.properties.correlation_data,
        user_properties: will.properties.user_properties,
        subscription_identifiers: Vec::new(),
        content_type: will.properties.content_type,
    };
    Arc::new(Message {
        id,
        expires_at: properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs))),
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties,
    })
}

/// Turns a received PUBLISH (topic alias already resolved) into a message to route.
///
/// The payload and correlation data are copied out of the connection's read
/// buffer: the message may sit in queues or the retained store for a long time,
/// and a view into the read buffer would pin the whole buffer for as long.
pub fn message_from_publish(publish: Publish, id: u64, now: Instant) -> SharedMessage {
    let mut properties = publish.properties;
    properties.topic_alias = None;
    properties.subscription_identifiers.clear();
    if let Some(data) = properties.correlation_data.as_mut() {
        *data = bytes::Bytes::copy_from_slice(data);
    }
    let payload = bytes::Bytes::copy_from_slice(&publish.payload);
    Arc::new(Message {
        id,
        expires_at: properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs))),
        topic: publish.topic,
        payload,
        qos: publish.qos,
        retain: publish.retain,
        properties,
    })
}
