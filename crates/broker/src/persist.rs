//! The bridge between the broker's in-memory state and the durable log.
//!
//! The broker stays the source of truth while it runs; the log is a journal of
//! what must survive a crash, in the form of idempotent [`Record`]s. A
//! [`Store`] wraps the log with:
//! - checkpoints of the log's own state ([`Log::checkpoint_state`]): the log's
//!   commit thread applies each batch to that state once it is written, so a
//!   checkpoint writes exactly what the log holds, never records whose write
//!   failed (a refused message cannot come back from a snapshot). This is how
//!   the log's space is reclaimed;
//! - a wall clock, because deadlines on disk are unix milliseconds (time spent
//!   down counts) while the broker runs on `Instant`s.
//!
//! Two kinds of append: [`Store::append`] for records whose change the broker
//! makes only once they are durable (it waits for the ticket and refuses on
//! failure; a failed batch is then in neither the log nor its state), and
//! [`Store::append_detached`] for changes already made that no client waits
//! for (these reach the log's state even if their write fails, and the
//! checkpoint the failure makes due writes them).
//!
//! What is recorded, and when the connection waits for it (see
//! `docs/architecture.md`, "Durability"):
//! - a message that is retained or goes to a persistent session: `Message`,
//!   one `Enqueue` per persistent target, `Retain` — the publisher's PUBACK /
//!   PUBREC and the delivery to subscribers wait for it;
//! - sessions with expiry > 0: `SessionUpsert` with `SessionOwner` (CONNACK waits), `Subscribe`
//!   (SUBACK waits), `Unsubscribe`, `SessionDetached`, `SessionEnd`, `Will`;
//! - outbound flows of persistent sessions: `OutboundSent` (a QoS 2 PUBLISH
//!   waits for it, so a resend after a crash reuses its packet id),
//!   `OutboundReleased` (PUBREL waits for it: once PUBREL is out the PUBLISH
//!   must never be sent again, [MQTT-4.3.3-6], so a restart must resume with
//!   PUBREL), `OutboundDone` (the flow's end and the message leaving the
//!   queue, in one record), `Dequeue`;
//! - inbound QoS 2 of persistent sessions: `InboundQos2` (with the message;
//!   PUBREC waits) and `InboundReleased` (PUBCOMP waits).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard_codec::{Publish, PublishProperties, QoS, Will};
use switchboard_session::{JournalEvent, Message, SharedMessage};
pub use switchboard_store::{
    CheckpointReport, CommitStats, DiskUsage, HistogramSnapshot, LogConfig, LogStats, Record,
    Recovered, RecoveryReport, State, StoreError, SyncMode, Ticket,
};
use switchboard_store::{Log, OutboundStage};

/// Converts between the broker's `Instant`s and the unix milliseconds kept on
/// disk, from one pair of readings taken at start.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base_instant: Instant,
    base_unix_ms: u64,
}

impl WallClock {
    pub fn new(now: Instant) -> WallClock {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        WallClock {
            base_instant: now,
            base_unix_ms,
        }
    }

    pub fn to_unix_ms(&self, instant: Instant) -> u64 {
        match instant.checked_duration_since(self.base_instant) {
            Some(after) => self
                .base_unix_ms
                .saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            None => {
                let before = self.base_instant.duration_since(instant);
                self.base_unix_ms
                    .saturating_sub(u64::try_from(before.as_millis()).unwrap_or(u64::MAX))
            }
        }
    }

    /// The `Instant` of a unix-ms deadline; deadlines already past map to the
    /// base instant (due now).
    pub fn to_instant(&self, unix_ms: u64) -> Instant {
        let ahead = unix_ms.saturating_sub(self.base_unix_ms);
        self.base_instant + Duration::from_millis(ahead)
    }
}

/// The durable log plus its clock.
#[derive(Debug)]
pub struct Store {
    log: Log,
    clock: WallClock,
}

impl Store {
    /// Opens (and recovers) the log in `config.dir`. The recovered state is
    /// the log's ([`Store::with_state`]); [`Broker::with_store`](crate::Broker::with_store)
    /// rebuilds the broker from it.
    pub fn open(config: LogConfig, now: Instant) -> Result<(Store, RecoveryReport), StoreError> {
        let (log, report) = Log::open(config)?;
        let store = Store {
            log,
            clock: WallClock::new(now),
        };
        Ok((store, report))
    }

    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// Appends records as one batch, for a change the broker makes only once
    /// it is durable: wait for the ticket, and refuse the change if it fails
    /// (the records then reach neither the disk nor the log's state). Never
    /// blocks on the disk.
    pub fn append(&self, records: Vec<Record>) -> Ticket {
        self.log.append(records)
    }

    /// Appends without waiting for the outcome, for state changes the broker
    /// has made already and no client is told about. If the write fails the
    /// records still reach the log's state ([`Log::append_detached`]) and the
    /// failure sets the log's "needs checkpoint" flag, so the next checkpoint
    /// writes them.
    pub fn append_detached(&self, records: Vec<Record>) {
        if !records.is_empty() {
            self.log.append_detached(records);
        }
    }

    /// Reads the log's state: what the records written so far rebuild (see
    /// [`Log::with_state`]). Holds the state's lock while `read` runs, which
    /// holds up the commit thread: keep `read` short.
    pub fn with_state<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        self.log.with_state(read)
    }

    /// Writes a checkpoint if the log has grown past its policy (or after a
    /// write failure). Blocking: call from a blocking thread.
    pub fn maybe_checkpoint(&self) -> Result<Option<CheckpointReport>, StoreError> {
        let live = self.log.with_state(State::live_bytes);
        if !self.log.should_checkpoint(live) {
            return Ok(None);
        }
        self.log.checkpoint_state().map(Some)
    }

    /// The commit thread's counters (batches, records, fsyncs, failures).
    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Commit latency and batch size histograms, for metrics.
    pub fn commit_stats(&self) -> CommitStats {
        self.log.commit_stats()
    }

    /// Disk used by the log's segments and snapshots.
    pub fn disk_usage(&self) -> DiskUsage {
        self.log.disk_usage()
    }

    /// Fsyncs everything written so far (blocking; for shutdown).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.log.sync()
    }

    /// The message id a PUBLISH-stage outbound flow refers to, from the log's
    /// state: only records already written are there. See
    /// [`Store::journal_records`] for why the lookup still finds the flows it
    /// is asked about.
    fn outbound_message(&self, client_id: &str, packet_id: u16) -> Option<u64> {
        self.log.with_state(|state| {
            state
                .session(client_id)?
                .outbound()
                .find_map(|(id, stage)| match stage {
                    OutboundStage::Publish { message_id } if id == packet_id => Some(message_id),
                    _ => None,
                })
        })
    }

    /// Converts a session's journal events into records. Returns true when one
    /// of them must be durable before the connection writes what follows (a
    /// QoS 2 PUBLISH: its packet id must survive a crash; a PUBREL: after it,
    /// a restart must not send the PUBLISH again).
    ///
    /// A `Released` event needs the message id of its flow, to write the
    /// `Dequeue` with the `OutboundReleased`; it is looked up in the log's
    /// state, which holds only written records. That finds it because the
    /// `OutboundSent` of a QoS 2 flow is a barrier: the PUBLISH is held until
    /// the batch holding `OutboundSent` is written, and the log applies a
    /// batch to its state before completing its ticket, so the record is in
    /// the state before the client can see the PUBLISH, let alone answer
    /// PUBREC (a flow restored after a restart is in the recovered state).
    /// A flow whose `OutboundSent` write failed is not there, and is not in
    /// the session either: the held PUBLISH was never sent, the connection
    /// closed, and the session took the send back (`Session::unsend`), so
    /// the next connection sends it as new and journals it again. Should the
    /// lookup still miss (a corrupt store), the `Dequeue` is written later
    /// with `Completed` (idempotent).
    pub fn journal_records(
        &self,
        client_id: &str,
        events: &[JournalEvent],
        records: &mut Vec<Record>,
    ) -> bool {
        let mut barrier = false;
        for event in events {
            let client_id = client_id.to_string();
            match *event {
                JournalEvent::Sent {
                    message_id,
                    packet_id,
                    qos,
                } => {
                    barrier |= qos == QoS::ExactlyOnce;
                    records.push(Record::OutboundSent {
                        client_id,
                        message_id,
                        packet_id,
                    });
                }
                JournalEvent::SentQos0 { message_id } => {
                    records.push(Record::Dequeue {
                        client_id,
                        message_id,
                    });
                }
                JournalEvent::Released { packet_id } => {
                    // The client has the message: it leaves the queue, and only the
                    // packet id remains (PUBREL stage). A client that got PUBREL may
                    // answer PUBCOMP and forget the id; a PUBLISH resent after a
                    // crash would then be a new message to it, delivered twice.
                    barrier = true;
                    let message_id = self.outbound_message(&client_id, packet_id);
                    records.push(Record::OutboundReleased {
                        client_id: client_id.clone(),
                        packet_id,
                    });
                    if let Some(message_id) = message_id {
                        records.push(Record::Dequeue {
                            client_id,
                            message_id,
                        });
                    }
                }
                JournalEvent::Completed {
                    packet_id,
                    message_id,
                }
                | JournalEvent::Removed {
                    message_id,
                    packet_id: Some(packet_id),
                } => {
                    records.push(Record::OutboundDone {
                        client_id,
                        packet_id,
                        message_id,
                    });
                }
                JournalEvent::Removed {
                    message_id,
                    packet_id: None,
                } => {
                    records.push(Record::Dequeue {
                        client_id,
                        message_id,
                    });
                }
            }
        }
        barrier
    }

    /// The `Message` record of a message.
    pub fn message_record(&self, message: &Message) -> Option<Record> {
        let publish = stored_publish(message);
        let expires_at_ms = message.expires_at.map(|at| self.clock.to_unix_ms(at));
        match Record::message(message.id, expires_at_ms, &publish) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::error!(%error, topic = %message.topic, "cannot store message");
                None
            }
        }
    }

    /// The `Will` record of a will (`publish_at` set once its connection ended).
    pub fn will_record(
        &self,
        client_id: &str,
        will: &Will,
        publish_at: Option<Instant>,
    ) -> Option<Record> {
        let publish = will_publish(will);
        let delay = will.properties.will_delay_interval.unwrap_or(0);
        let publish_at_ms = publish_at.map(|at| self.clock.to_unix_ms(at));
        match Record::will(client_id, &publish, delay, publish_at_ms) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::error!(%error, client_id, "cannot store will");
                None
            }
        }
    }
}

/// Makes `message`'s payload a view into its stored form (its `Message`
/// record among `records`, as [`Broker::stage_publish`](crate::Broker::stage_publish)
/// staged it), so that a message kept for persistent sessions or retained
/// is held once: the log's state, the queues and the retained store share
/// one buffer instead of the broker's copy plus the store's. The payload is
/// the tail of the stored PUBLISH. Does nothing if the message is already
/// shared (its `Arc` has other owners) or no record matches.
pub fn share_stored_payload(message: &mut SharedMessage, records: &[Record]) {
    let id = message.id;
    let Some(stored) = records.iter().find_map(|record| match record {
        Record::Message {
            id: stored,
            publish,
            ..
        } if *stored == id => Some(publish),
        _ => None,
    }) else {
        return;
    };
    let Some(message) = Arc::get_mut(message) else {
        return;
    };
    let Some(start) = stored.len().checked_sub(message.payload.len()) else {
        return;
    };
    let view = stored.slice(start..);
    if view == message.payload {
        message.payload = view;
    }
}

/// A message in the PUBLISH form the store keeps.
fn stored_publish(message: &Message) -> Publish {
    Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        packet_id: None,
        properties: message.properties.clone(),
        payload: message.payload.clone(),
    }
}

fn will_publish(will: &Will) -> Publish {
    Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        packet_id: None,
        properties: PublishProperties {
            payload_format_indicator: will.properties.payload_format_indicator,
            message_expiry_interval: will.properties.message_expiry_interval,
            topic_alias: None,
            response_topic: will.properties.response_topic.clone(),
            correlation_data: will.properties.correlation_data.clone(),
            user_properties: will.properties.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: will.properties.content_type.clone(),
        },
        payload: will.payload.clone(),
    }
}

/// Rebuilds a will from its stored PUBLISH form.
pub(crate) fn will_from_publish(publish: Publish, delay_secs: u32) -> Will {
    Will {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: switchboard_codec::WillProperties {
            will_delay_interval: (delay_secs > 0).then_some(delay_secs),
            payload_format_indicator: publish.properties.payload_format_indicator,
            message_expiry_interval: publish.properties.message_expiry_interval,
            content_type: publish.properties.content_type,
            response_topic: publish.properties.response_topic,
            correlation_data: publish.properties.correlation_data,
            user_properties: publish.properties.user_properties,
        },
    }
}

/// Rebuilds a message from its stored PUBLISH form.
pub(crate) fn message_from_stored(
    id: u64,
    publish: Publish,
    expires_at: Option<Instant>,
) -> SharedMessage {
    let mut properties = publish.properties;
    properties.topic_alias = None;
    properties.subscription_identifiers.clear();
    Arc::new(Message {
        id,
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties,
        expires_at,
    })
}
