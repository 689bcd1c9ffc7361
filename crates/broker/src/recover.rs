//! Rebuilding the broker from the durable store at start.
//!
//! Sessions come back detached: a session that was connected when the broker
//! stopped lost its connection then, so its expiry starts now and its will
//! (if any) is due after its delay, as after any network loss. Queued
//! messages, in-flight flows (resent at the next attach, with their packet
//! ids), inbound QoS 2 packet ids, subscriptions, retained messages and
//! delayed wills are restored; deadlines on disk are unix milliseconds, so time
//! spent down counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_codec::{QoS, RetainHandling, SubscriptionOptions};
use switchboard_session::{Delivery, Message, Session, SharedMessage};
use switchboard_store::{decode_publish, OutboundStage, Presence, Record, SessionOwner, State};
use switchboard_topic::FilterKind;

use crate::entry::{Owner, SessionEntry, SessionInner, SubscriptionRecord};
use crate::persist::{message_from_stored, will_from_publish, Store};
use crate::{Broker, Settings, Subscriber, Timer, TimerKind};

/// The MQTT 5 subscription options byte (3.8.3.1).
pub(crate) fn options_byte(options: &SubscriptionOptions) -> u8 {
    options.qos.as_u8()
        | (u8::from(options.no_local) << 2)
        | (u8::from(options.retain_as_published) << 3)
        | ((options.retain_handling as u8) << 4)
}

/// Reads back [`options_byte`]; out-of-range values fall back to the safest choice.
pub(crate) fn options_from_byte(byte: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(byte & 0b11).unwrap_or(QoS::AtLeastOnce),
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling: match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        },
    }
}

/// What recovery did, for the log and the closing report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub sessions: usize,
    pub subscriptions: usize,
    pub queued: usize,
    pub inflight: usize,
    pub retained: usize,
    pub wills: usize,
    /// Messages that could not be decoded or had expired while the broker was down.
    pub messages_skipped: usize,
}

impl Broker {
    /// A broker rebuilt from what [`Store::open`] recovered (the store's
    /// state), writing to `store` from now on.
    ///
    /// Messages are decoded as views into the state's stored form
    /// ([`decode_publish`]), so each payload is held once by both.
    pub fn with_store(settings: Settings, now: Instant, store: Store) -> (Broker, RestoreSummary) {
        let mut broker = Broker::new(settings, now);
        let store = Arc::new(store);
        // Nothing appends before the broker exists: holding the state's lock
        // while rebuilding keeps nobody waiting.
        let (summary, fixups) = store.with_state(|state| broker.restore(&store, now, state));
        store.append_detached(fixups);
        broker.store = Some(store);
        (broker, summary)
    }

    /// Rebuilds sessions, queues, flows, subscriptions, retained messages and
    /// wills from `state`; returns what it did and the records that bring the
    /// store in line with the rebuilt broker.
    fn restore(
        &mut self,
        store: &Store,
        now: Instant,
        state: &State,
    ) -> (RestoreSummary, Vec<Record>) {
        let broker = self;
        let clock = *store.clock();
        let now_ms = clock.to_unix_ms(now);
        let mut summary = RestoreSummary::default();
        let mut fixups: Vec<Record> = Vec::new();

        // Messages, decoded once and shared by every queue and the retained store.
        let mut messages: HashMap<u64, SharedMessage> = HashMap::new();
        for (id, stored) in state.messages() {
            if stored.is_expired(now_ms) {
                summary.messages_skipped += 1;
                continue;
            }
            match decode_publish(&stored.publish) {
                Ok(publish) => {
                    let expires_at = stored.expires_at_ms.map(|ms| clock.to_instant(ms));
                    messages.insert(*id, message_from_stored(*id, publish, expires_at));
                }
                Err(error) => {
                    summary.messages_skipped += 1;
                    tracing::error!(message_id = id, %error, "stored message cannot be decoded; skipped");
                }
            }
        }
        let next_id = state.max_message_id().unwrap_or(0).saturating_add(1);
        broker
            .next_message_id
            .store(next_id, std::sync::atomic::Ordering::Relaxed);

        {
            let mut retained = broker.retained.write();
            for (topic, id) in state.retained() {
                match messages.get(id) {
                    Some(message) => {
                        retained.bytes += message.size();
                        retained.tree.insert(topic, message.clone());
                        summary.retained += 1;
                    }
                    None => fixups.push(Record::RetainClear {
                        topic: topic.clone(),
                    }),
                }
            }
        }

        let placeholder: SharedMessage = Arc::new(Message {
            id: 0,
            topic: String::new(),
            payload: bytes::Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        });
        let mut registry = broker.registry.lock();
        let mut index = broker.index.write();
        let mut timers = broker.timers.lock();
        for (client_id, stored) in state.sessions() {
            let key = broker
                .next_key
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut session = Session::with_shared_limits(broker.session_limits.clone());
            let delivery_of =
                |entry: &switchboard_store::QueueEntry, message: SharedMessage| Delivery {
                    message,
                    qos: QoS::from_u8(entry.qos).unwrap_or(QoS::AtLeastOnce),
                    retain: entry.retain,
                    subscription_identifiers: entry.subscription_identifiers.clone(),
                    shared_group: entry.shared_filter.as_deref().map(Arc::from),
                };
            let queue: HashMap<u64, &switchboard_store::QueueEntry> = stored
                .queue()
                .map(|entry| (entry.message_id, entry))
                .collect();
            let mut in_flight_messages = std::collections::HashSet::new();
            for (packet_id, stage) in stored.outbound() {
                match stage {
                    OutboundStage::Publish { message_id } => {
                        let (Some(message), Some(entry)) =
                            (messages.get(&message_id), queue.get(&message_id))
                        else {
                            fixups.push(Record::OutboundComplete {
                                client_id: client_id.clone(),
                                packet_id,
                            });
                            continue;
                        };
                        in_flight_messages.insert(message_id);
                        session.restore_inflight(
                            packet_id,
                            delivery_of(entry, message.clone()),
                            false,
                        );
                    }
                    OutboundStage::Release => {
                        let delivery = Delivery {
                            message: placeholder.clone(),
                            qos: QoS::ExactlyOnce,
                            retain: false,
                            subscription_identifiers: Vec::new(),
                            shared_group: None,
                        };
                        session.restore_inflight(packet_id, delivery, true);
                    }
                }
                summary.inflight += 1;
            }
            for entry in stored.queue() {
                if in_flight_messages.contains(&entry.message_id) {
                    continue;
                }
                match messages.get(&entry.message_id) {
                    Some(message) => {
                        session.restore_queued(delivery_of(entry, message.clone()));
                        summary.queued += 1;
                    }
                    None => fixups.push(Record::Dequeue {
                        client_id: client_id.clone(),
                        message_id: entry.message_id,
                    }),
                }
            }
            for packet_id in stored.inbound_qos2() {
                session.restore_incoming_qos2(*packet_id);
            }
            session.set_journaling(true);

            let session_expiry = stored.session_expiry_secs();
            let expires_at = match stored.presence() {
                // The connection was lost when the broker stopped: expiry runs from now.
                Presence::Connected => (session_expiry != u32::MAX)
                    .then(|| now + Duration::from_secs(u64::from(session_expiry))),
                Presence::Detached { expires_at_ms } => {
                    expires_at_ms.map(|ms| clock.to_instant(ms))
                }
            };
            let pending_will = state.wills().get(client_id).and_then(|stored_will| {
                let publish = decode_publish(&stored_will.publish).ok()?;
                let will = will_from_publish(publish, stored_will.delay_secs);
                let at = match stored_will.publish_at_ms {
                    Some(ms) => clock.to_instant(ms),
                    // Connected at the stop: the will is due after its delay, or at
                    // the session's end if that is sooner.
                    None => {
                        now + Duration::from_secs(u64::from(
                            stored_will.delay_secs.min(session_expiry),
                        ))
                    }
                };
                Some((at, will))
            });
            let version = match stored.protocol_level() {
                3 => switchboard_codec::ProtocolVersion::V3_1,
                4 => switchboard_codec::ProtocolVersion::V3_1_1,
                _ => switchboard_codec::ProtocolVersion::V5,
            };
            let mut subscriptions = std::collections::BTreeMap::new();
            for (filter, subscription) in stored.subscriptions() {
                subscriptions.insert(
                    filter.clone(),
                    SubscriptionRecord {
                        options: options_from_byte(subscription.options),
                        identifier: subscription.identifier,
                    },
                );
            }
            let client_id_arc: Arc<str> = Arc::from(client_id.as_str());
            let entry = Arc::new(SessionEntry::new(
                key,
                client_id_arc.clone(),
                {
                    let mut inner = SessionInner::new(session, version, session_expiry);
                    inner.subscriptions = subscriptions.clone();
                    inner.set_expires_at(expires_at);
                    if let Some(pending) = &pending_will {
                        inner.set_pending_will(Box::new(pending.clone()));
                    }
                    inner.recorded = true;
                    inner
                },
                broker.common.clone(),
            ));
            // The same owner as before the restart: a client id reused by another
            // user starts clean ([`crate::entry::Owner::admits`]), as it would live.
            *entry.owner.lock() = match stored.owner() {
                SessionOwner::Unknown => Owner::Unknown,
                SessionOwner::Anonymous { realm } => Owner::Anonymous { realm: *realm },
                SessionOwner::User { realm, name } => Owner::User {
                    realm: *realm,
                    name: Arc::from(name.as_str()),
                },
            };
            for (filter, record) in subscriptions {
                let mut subscriber = Subscriber {
                    entry: entry.clone(),
                    options: record.options,
                    identifier: record.identifier,
                    shared_filter: None,
                };
                match switchboard_topic::parse_filter(&filter, &broker.settings.topic_limits) {
                    Ok(FilterKind::Shared {
                        group,
                        filter: inner_filter,
                    }) => {
                        subscriber.shared_filter = Some(Arc::from(filter.as_str()));
                        index.insert_shared(group, inner_filter, key, subscriber);
                    }
                    Ok(FilterKind::Plain(plain)) => {
                        index.insert(plain, key, subscriber);
                    }
                    Err(error) => {
                        tracing::warn!(client_id, %filter, %error, "stored subscription no longer valid; skipped");
                        continue;
                    }
                }
                summary.subscriptions += 1;
            }
            if let Some(at) = expires_at {
                timers.insert(Timer {
                    at,
                    key,
                    kind: TimerKind::SessionExpiry,
                    client_id: client_id_arc.clone(),
                });
            }
            if let Some((at, _)) = &pending_will {
                timers.insert(Timer {
                    at: *at,
                    key,
                    kind: TimerKind::WillDelay,
                    client_id: client_id_arc.clone(),
                });
                summary.wills += 1;
            }
            // Bring the store in line with the session's new state.
            fixups.push(Record::SessionDetached {
                client_id: client_id.clone(),
                expires_at_ms: expires_at.map(|at| clock.to_unix_ms(at)),
            });
            match &pending_will {
                Some((at, will)) => fixups.extend(store.will_record(client_id, will, Some(*at))),
                None => fixups.push(Record::WillClear {
                    client_id: client_id.clone(),
                }),
            }
            registry.insert(entry);
            summary.sessions += 1;
        }
        drop(timers);
        drop(index);
        drop(registry);
        (summary, fixups)
    }
}
