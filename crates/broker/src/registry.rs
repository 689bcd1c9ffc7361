//! Every session the broker holds, found by client id.
//!
//! One set of entries, keyed by the entry's own client id: no second copy
//! or handle of the client id per session, and no second map by
//! [`SessionKey`] (the timers, the only ones that looked sessions up by
//! key, carry the client id and check the key). Per session that is one
//! pointer and a control byte (about 18 bytes at the table's load factor)
//! where a map by client id plus one by key took 42 (about 86).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::entry::{SessionEntry, SessionKey};

#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: HashSet<ByClientId>,
}

impl Registry {
    pub(crate) fn get(&self, client_id: &str) -> Option<&Arc<SessionEntry>> {
        self.sessions.get(client_id).map(|found| &found.0)
    }

    /// The session of `client_id` if its key is `key`: a session that ended
    /// and was replaced under the same client id is not it.
    pub(crate) fn get_keyed(&self, client_id: &str, key: SessionKey) -> Option<&Arc<SessionEntry>> {
        self.get(client_id).filter(|entry| entry.key == key)
    }

    /// Adds `entry`, replacing any session with the same client id.
    pub(crate) fn insert(&mut self, entry: Arc<SessionEntry>) {
        self.sessions.replace(ByClientId(entry));
    }

    pub(crate) fn remove(&mut self, client_id: &str) {
        self.sessions.remove(client_id);
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<SessionEntry>> {
        self.sessions.iter().map(|found| &found.0)
    }
}

/// A session as an element of the set: equal, hashed and borrowed as its
/// client id (the `Borrow` contract holds: `str`'s `Hash` and `Eq`).
#[derive(Debug)]
struct ByClientId(Arc<SessionEntry>);

impl Borrow<str> for ByClientId {
    fn borrow(&self) -> &str {
        self.0.client_id()
    }
}

impl PartialEq for ByClientId {
    fn eq(&self, other: &ByClientId) -> bool {
        self.0.client_id() == other.0.client_id()
    }
}

impl Eq for ByClientId {}

impl Hash for ByClientId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.client_id().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use switchboard_codec::ProtocolVersion;
    use switchboard_session::{Session, SessionLimits};

    use super::*;
    use crate::budget::QueueBudget;
    use crate::entry::SessionInner;

    fn entry(key: SessionKey, client_id: &str) -> Arc<SessionEntry> {
        let limits = SessionLimits {
            max_queued_messages: 10,
            max_queued_bytes: 1000,
            max_inflight: 10,
            queue_qos0_offline: false,
        };
        let inner = SessionInner::new(Session::new(limits), ProtocolVersion::V5, 0);
        Arc::new(SessionEntry::new(
            key,
            Arc::from(client_id),
            inner,
            Arc::new(crate::entry::Common::new(QueueBudget::new(0))),
        ))
    }

    #[test]
    fn finds_by_client_id_and_tells_sessions_apart_by_key() {
        let mut registry = Registry::default();
        registry.insert(entry(1, "a"));
        registry.insert(entry(2, "b"));
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.get("a").map(|found| found.key), Some(1));
        assert_eq!(registry.get_keyed("a", 1).map(|found| found.key), Some(1));
        assert!(
            registry.get_keyed("a", 2).is_none(),
            "another session's key"
        );
        assert!(registry.get("c").is_none());

        // A new session under the same client id replaces the old one.
        registry.insert(entry(3, "a"));
        assert_eq!(registry.len(), 2);
        assert!(
            registry.get_keyed("a", 1).is_none(),
            "a timer of the old one"
        );
        assert_eq!(registry.get_keyed("a", 3).map(|found| found.key), Some(3));

        registry.remove("a");
        assert!(registry.get("a").is_none());
        let mut keys: Vec<_> = registry.iter().map(|found| found.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec![2]);
    }

    /// One pointer per session (plus the table's control byte and slack);
    /// printed with `--nocapture`.
    #[test]
    fn an_element_is_one_pointer() {
        let size = std::mem::size_of::<ByClientId>();
        println!("registry element: {size} bytes");
        assert_eq!(size, std::mem::size_of::<usize>());
    }
}
