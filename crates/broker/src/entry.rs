//! One client's session as the broker holds it: the sans-IO [`Session`] plus what
//! the broker needs around it (subscriptions, the attached connection, will,
//! expiry), behind one short-held mutex.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use switchboard_codec::{ProtocolVersion, Publish, SubscriptionOptions, Will};
use switchboard_session::Session;
use tokio::sync::{mpsc, Notify};

use crate::Control;

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
    pub(crate) inner: Mutex<SessionInner>,
    /// Mirrors `session_expiry > 0` so routing can tell, without the lock, whether a
    /// message for this session must be made durable.
    pub(crate) persistent: AtomicBool,
    /// Wakes the attached connection's task when something was queued for it.
    /// A `Notify` keeps one permit, so a wake-up between two polls is not lost.
    pub(crate) notify: Notify,
    /// Who the session belongs to: set at each CONNECT, read by the delivery
    /// filter and listings. A leaf lock: taken alone or under `inner`, never
    /// the other way round, and held only to read or replace the value.
    pub(crate) owner: Mutex<Owner>,
}

/// The user a session belongs to, for access control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Restored from the store, which does not record it: the next
    /// connection to the session adopts it.
    Unknown,
    /// Connected without a user name.
    Anonymous,
    User(Arc<str>),
}

impl Owner {
    pub(crate) fn of(username: Option<&Arc<str>>) -> Owner {
        match username {
            Some(user) => Owner::User(user.clone()),
            None => Owner::Anonymous,
        }
    }

    /// Whether a connection with `username` may take over what the session
    /// holds (its queue and subscriptions).
    pub(crate) fn admits(&self, username: Option<&Arc<str>>) -> bool {
        match (self, username) {
            (Owner::Unknown, _) | (Owner::Anonymous, None) => true,
            (Owner::User(owner), Some(user)) => owner == user,
            _ => false,
        }
    }

    pub(crate) fn username(&self) -> Option<&str> {
        match self {
            Owner::User(user) => Some(user),
            Owner::Unknown | Owner::Anonymous => None,
        }
    }
}

/// A subscription as the session remembers it (for listing, for removal on session
/// end, and for retain handling 1).
#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// The connection currently attached to a session.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) generation: u64,
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) connected_at: Instant,
    pub(crate) peer: String,
    pub(crate) keep_alive: u16,
}

#[derive(Debug)]
pub(crate) struct SessionInner {
    pub(crate) session: Session,
    /// Keyed by the filter exactly as subscribed (`$share/g/f` included).
    pub(crate) subscriptions: HashMap<String, SubscriptionRecord>,
    pub(crate) connection: Option<Attached>,
    pub(crate) version: ProtocolVersion,
    /// Seconds; `u32::MAX` = never expires.
    pub(crate) session_expiry: u32,
    /// When a detached session ends (None while attached, or never).
    pub(crate) expires_at: Option<Instant>,
    /// The will of the attached connection, armed at CONNECT.
    pub(crate) will: Option<Will>,
    /// A will waiting for its delay interval after the connection ended.
    pub(crate) pending_will: Option<(Instant, Will)>,
    /// Set once the session has ended; a publisher holding a stale handle then skips it.
    pub(crate) ended: bool,
    /// Whether the durable store holds this session (a SessionUpsert was written
    /// and no SessionEnd since).
    pub(crate) recorded: bool,
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
}

impl SessionEntry {
    pub(crate) fn new(key: SessionKey, client_id: Arc<str>, inner: SessionInner) -> SessionEntry {
        SessionEntry {
            key,
            client_id,
            persistent: AtomicBool::new(inner.session_expiry > 0),
            inner: Mutex::new(inner),
            notify: Notify::new(),
            owner: Mutex::new(Owner::Unknown),
        }
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

    /// Waits until something may have been queued for this session's connection.
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Runs `f` on the sans-IO session if `generation` is still the attached
    /// connection; `None` if that connection was taken over or closed meanwhile.
    /// The closure runs under the session lock: keep it short and never await in it.
    pub fn with_session<R>(&self, generation: u64, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        let mut inner = self.inner.lock();
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
        let mut inner = self.inner.lock();
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
        let inner = self.inner.lock();
        SessionCounts {
            queued: inner.session.queued_len(),
            queued_bytes: inner.session.queued_bytes(),
            inflight: inner.session.inflight_len(),
            subscriptions: inner.subscriptions.len(),
        }
    }

    pub fn info(&self) -> SessionInfo {
        let inner = self.inner.lock();
        let mut subscriptions: Vec<_> = inner
            .subscriptions
            .iter()
            .map(|(filter, record)| (filter.clone(), record.clone()))
            .collect();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        SessionInfo {
            client_id: self.client_id.to_string(),
            connected: inner.connection.is_some(),
            peer: inner.connection.as_ref().map(|c| c.peer.clone()),
            protocol: inner.version,
            keep_alive: inner.connection.as_ref().map(|c| c.keep_alive),
            connected_since: inner.connection.as_ref().map(|c| c.connected_at),
            session_expiry: inner.session_expiry,
            expires_at: inner.expires_at,
            username: self.owner.lock().username().map(str::to_string),
            counts: SessionCounts {
                queued: inner.session.queued_len(),
                queued_bytes: inner.session.queued_bytes(),
                inflight: inner.session.inflight_len(),
                subscriptions: inner.subscriptions.len(),
            },
            subscriptions,
        }
    }
}
