//! Taps: read-only observers of the messages the broker routes, for the web
//! console's live message view (and anything else that wants to watch
//! traffic without being an MQTT session).
//!
//! Why not an internal session: a session has a queue, an in-flight window,
//! a client id that shows up in listings and takeovers, and would have to be
//! acknowledged. A tap is just a filter and a bounded channel. It sees a
//! message when [`crate::Broker::deliver_route`] hands it to subscribers
//! (so after it was made durable, exactly when subscribers see it), whether
//! or not anyone subscribes to it.
//!
//! Bounds: at most [`MAX_TAPS`] taps at once, each a bounded channel chosen
//! by its owner. A full channel drops the message for that tap only and
//! counts it ([`TapHandle::dropped`]); routing never waits on a tap. A tap
//! whose receiver was dropped is removed on the next message that reaches it.
//!
//! Lock rule: `taps` is a leaf lock, taken (read) for one pass over the taps
//! while routing holds no other lock; nothing is called out to under it
//! except `try_send`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use switchboard_session::SharedMessage;
use switchboard_topic::{FilterKind, TopicError, TopicLimits};
use tokio::sync::mpsc;

/// Most taps at once: each costs one filter match per routed message.
pub const MAX_TAPS: usize = 256;

/// Identifies a tap for [`crate::Broker::remove_tap`]; never reused.
pub type TapId = u64;

/// Why a tap was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    #[error("invalid topic filter: {0}")]
    InvalidFilter(#[from] TopicError),
    /// `$share/...`: a tap observes, it does not take part in load balancing.
    #[error(
        "a shared subscription filter cannot be tapped; use the filter after $share/{{group}}/"
    )]
    SharedFilter,
    #[error("too many taps (at most {MAX_TAPS})")]
    TooMany,
}

/// The owner's side of a registered tap.
#[derive(Debug, Clone)]
pub struct TapHandle {
    id: TapId,
    dropped: Arc<AtomicU64>,
}

impl TapHandle {
    pub fn id(&self) -> TapId {
        self.id
    }

    /// Messages this tap missed because its channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Tap {
    id: TapId,
    filter: String,
    sender: mpsc::Sender<SharedMessage>,
    dropped: Arc<AtomicU64>,
}

/// The broker's taps.
#[derive(Debug, Default)]
pub(crate) struct Taps {
    /// Mirrors `taps.len()` so that routing skips the lock when there are
    /// none (the common case).
    count: AtomicUsize,
    next_id: AtomicU64,
    taps: RwLock<Vec<Tap>>,
}

impl Taps {
    pub(crate) fn add(
        &self,
        filter: &str,
        limits: &TopicLimits,
        sender: mpsc::Sender<SharedMessage>,
    ) -> Result<TapHandle, TapError> {
        match switchboard_topic::parse_filter(filter, limits)? {
            FilterKind::Plain(_) => {}
            FilterKind::Shared { .. } => return Err(TapError::SharedFilter),
        }
        let mut taps = self.taps.write();
        if taps.len() >= MAX_TAPS {
            return Err(TapError::TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        taps.push(Tap {
            id,
            filter: filter.to_string(),
            sender,
            dropped: dropped.clone(),
        });
        self.count.store(taps.len(), Ordering::Relaxed);
        Ok(TapHandle { id, dropped })
    }

    pub(crate) fn remove(&self, id: TapId) -> bool {
        let mut taps = self.taps.write();
        let before = taps.len();
        taps.retain(|tap| tap.id != id);
        self.count.store(taps.len(), Ordering::Relaxed);
        taps.len() != before
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Offers `message` to every tap whose filter matches its topic.
    pub(crate) fn feed(&self, message: &SharedMessage) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut closed = false;
        {
            let taps = self.taps.read();
            for tap in taps.iter() {
                if !switchboard_topic::matches(&tap.filter, &message.topic) {
                    continue;
                }
                match tap.sender.try_send(message.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tap.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                }
            }
        }
        if closed {
            let mut taps = self.taps.write();
            taps.retain(|tap| !tap.sender.is_closed());
            self.count.store(taps.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_codec::QoS;
    use switchboard_session::Message;

    fn message(topic: &str) -> SharedMessage {
        Arc::new(Message {
            id: 0,
            topic: topic.to_string(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        })
    }

    #[test]
    fn matching_messages_reach_the_tap_and_a_full_channel_counts_drops() {
        let taps = Taps::default();
        let (sender, mut receiver) = mpsc::channel(1);
        let handle = taps.add("a/+", &TopicLimits::default(), sender).unwrap();
        taps.feed(&message("a/b"));
        taps.feed(&message("b/c"));
        taps.feed(&message("a/c"));
        assert_eq!(receiver.try_recv().unwrap().topic, "a/b");
        assert!(receiver.try_recv().is_err());
        assert_eq!(handle.dropped(), 1);
    }

    #[test]
    fn closed_taps_are_removed_and_bad_filters_refused() {
        let taps = Taps::default();
        let (sender, receiver) = mpsc::channel(1);
        taps.add("#", &TopicLimits::default(), sender).unwrap();
        assert_eq!(taps.len(), 1);
        drop(receiver);
        taps.feed(&message("a"));
        assert_eq!(taps.len(), 0);
        let (sender, _receiver) = mpsc::channel(1);
        assert_eq!(
            taps.add("$share/g/a", &TopicLimits::default(), sender.clone())
                .unwrap_err(),
            TapError::SharedFilter
        );
        assert!(matches!(
            taps.add("a/#/b", &TopicLimits::default(), sender),
            Err(TapError::InvalidFilter(_))
        ));
    }

    #[test]
    fn removal_by_id() {
        let taps = Taps::default();
        let (sender, _receiver) = mpsc::channel(1);
        let handle = taps.add("#", &TopicLimits::default(), sender).unwrap();
        assert!(taps.remove(handle.id()));
        assert!(!taps.remove(handle.id()));
        assert_eq!(taps.len(), 0);
    }
}
