//! The broker's persistent events and their binary encoding.
//!
//! Every record is keyed by ids (client id, message id, packet id, topic) and
//! says what the state for that key *is* after the event, never a relative
//! change: applying a record twice, or applying it to a snapshot that already
//! reflects it, gives the same state. That is what lets the log be replayed on
//! top of a snapshot taken while appends continued (see the crate docs).
//!
//! # Encoding (version 1)
//!
//! ```text
//! byte 0   encoding version (1)
//! byte 1   tag (which record, see `Tag`)
//! ...      fields in declaration order:
//!          integers   unsigned LEB128 (at most 10 bytes; u8 fields are 1 raw byte)
//!          bool       1 byte, 0 or 1
//!          Option<T>  1 byte 0 (None) or 1 (Some) then T
//!          String     LEB128 length, then that many UTF-8 bytes
//!          Bytes      LEB128 length, then the bytes
//!          Vec<u32>   LEB128 count, then each element
//! ```
//!
//! A decoder reading an unknown version or tag refuses the record rather than
//! guessing; a new field or record therefore needs a new version or tag.
//! Decoding never panics and never allocates more than the input's length.

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_codec::{encode, Decoder, Packet, ProtocolVersion, Publish, QoS};

use crate::error::RecordError;

/// The encoding version written by this build.
pub const RECORD_VERSION: u8 = 1;

/// The packet identifier written into a stored QoS 1/2 PUBLISH. The
/// publisher's packet id means nothing once the message is stored (each
/// delivery gets the receiving session's own id), so the stored form uses a
/// fixed placeholder: the same message always encodes to the same bytes.
pub const STORED_PACKET_ID: u16 = 1;

/// One persistent event of the broker. See the module docs for the
/// idempotence rule and the crate docs for how [`State`](crate::State)
/// applies each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A session exists (created, or resumed by a CONNECT with clean start 0)
    /// and is connected. Keeps the session's subscriptions, queue and
    /// in-flight state if it already exists.
    SessionUpsert {
        client_id: String,
        /// 3, 4 or 5 (MQTT 3.1, 3.1.1, 5.0).
        protocol_level: u8,
        session_expiry_secs: u32,
    },
    /// Who the session belongs to, written with every `SessionUpsert`: the
    /// user name its client connected with (`None`: none). A client id
    /// reused by another user must not inherit the session after a restart
    /// either.
    SessionOwner {
        client_id: String,
        /// The authentication realm (a listener with its own password file
        /// or ACL has its own; 0 is the server-wide one).
        realm: u32,
        user: Option<String>,
    },
    /// The session's connection ended; the session lives until
    /// `expires_at_ms` (unix milliseconds; `None` = never expires).
    SessionDetached {
        client_id: String,
        expires_at_ms: Option<u64>,
    },
    /// The session ended: removes it, its subscriptions, queue, in-flight
    /// state and its will.
    SessionEnd {
        client_id: String,
    },
    /// A subscription was made or replaced.
    Subscribe {
        client_id: String,
        /// The topic filter as the client sent it, `$share/group/...` included.
        filter: String,
        /// The MQTT 5 subscription options byte (QoS, no local, retain as
        /// published, retain handling) as on the wire.
        options: u8,
        identifier: Option<u32>,
    },
    Unsubscribe {
        client_id: String,
        filter: String,
    },
    /// A message that must be kept. `publish` is the message as an MQTT 5
    /// PUBLISH packet (see [`Record::message`]).
    Message {
        id: u64,
        /// Unix milliseconds; `None` = never expires.
        expires_at_ms: Option<u64>,
        publish: Bytes,
    },
    /// The message was queued for a session, at the end of its queue.
    Enqueue {
        client_id: String,
        message_id: u64,
        /// The QoS of this delivery (the minimum of message and subscription).
        qos: u8,
        /// The RETAIN flag of this delivery.
        retain: bool,
        subscription_identifiers: Vec<u32>,
        /// The `$share/...` filter that chose this session, if any.
        shared_filter: Option<String>,
    },
    /// The queued message was delivered and acknowledged, or dropped.
    Dequeue {
        client_id: String,
        message_id: u64,
    },
    /// The message was sent with this packet id and awaits PUBACK or PUBREC.
    OutboundSent {
        client_id: String,
        message_id: u64,
        packet_id: u16,
    },
    /// PUBREC arrived for this packet id: PUBREL stage, awaiting PUBCOMP.
    OutboundReleased {
        client_id: String,
        packet_id: u16,
    },
    /// PUBACK or PUBCOMP arrived: the packet id is free.
    OutboundComplete {
        client_id: String,
        packet_id: u16,
    },
    /// A flow that ended with its message leaving the queue: the same as
    /// `OutboundComplete` then `Dequeue` (the order of their effects), in one
    /// record, since every delivery the client acknowledges needs both.
    OutboundDone {
        client_id: String,
        packet_id: u16,
        message_id: u64,
    },
    /// A QoS 2 PUBLISH from the client was acknowledged with PUBREC; its
    /// packet id is held until PUBREL (exactly-once deduplication).
    InboundQos2 {
        client_id: String,
        packet_id: u16,
    },
    /// PUBREL arrived for this inbound packet id.
    InboundReleased {
        client_id: String,
        packet_id: u16,
    },
    /// The message is now the retained message of this topic.
    Retain {
        topic: String,
        message_id: u64,
    },
    /// The topic has no retained message any more.
    RetainClear {
        topic: String,
    },
    /// The client's will, pending until published, cleared or its session ends.
    Will {
        client_id: String,
        /// The will as an MQTT 5 PUBLISH packet (see [`Record::will`]).
        publish: Bytes,
        delay_secs: u32,
        /// When a detached client's delayed will is due (unix ms); `None`
        /// while the client is connected.
        publish_at_ms: Option<u64>,
    },
    WillClear {
        client_id: String,
    },
}

/// Record tags on the wire. Never reuse a number.
mod tag {
    pub(super) const SESSION_UPSERT: u8 = 1;
    pub(super) const SESSION_DETACHED: u8 = 2;
    pub(super) const SESSION_END: u8 = 3;
    pub(super) const SUBSCRIBE: u8 = 4;
    pub(super) const UNSUBSCRIBE: u8 = 5;
    pub(super) const MESSAGE: u8 = 6;
    pub(super) const ENQUEUE: u8 = 7;
    pub(super) const DEQUEUE: u8 = 8;
    pub(super) const OUTBOUND_SENT: u8 = 9;
    pub(super) const OUTBOUND_RELEASED: u8 = 10;
    pub(super) const OUTBOUND_COMPLETE: u8 = 11;
    pub(super) const INBOUND_QOS2: u8 = 12;
    pub(super) const INBOUND_RELEASED: u8 = 13;
    pub(super) const RETAIN: u8 = 14;
    pub(super) const RETAIN_CLEAR: u8 = 15;
    pub(super) const WILL: u8 = 16;
    pub(super) const WILL_CLEAR: u8 = 17;
    pub(super) const SESSION_OWNER: u8 = 18;
    pub(super) const OUTBOUND_DONE: u8 = 19;
}

impl Record {
    /// A [`Record::Message`] holding `publish` in the stored form: an MQTT 5
    /// PUBLISH with DUP cleared, no topic alias and, for QoS 1/2, the packet
    /// id [`STORED_PACKET_ID`]. Fails if the codec cannot encode it (for
    /// example an empty topic, which must have been resolved from its alias
    /// before storing).
    pub fn message(
        id: u64,
        expires_at_ms: Option<u64>,
        publish: &Publish,
    ) -> Result<Record, RecordError> {
        Ok(Record::Message {
            id,
            expires_at_ms,
            publish: encode_publish(publish)?,
        })
    }

    /// A [`Record::Will`] holding the will in the same stored form as
    /// [`Record::message`].
    pub fn will(
        client_id: impl Into<String>,
        publish: &Publish,
        delay_secs: u32,
        publish_at_ms: Option<u64>,
    ) -> Result<Record, RecordError> {
        Ok(Record::Will {
            client_id: client_id.into(),
            publish: encode_publish(publish)?,
            delay_secs,
            publish_at_ms,
        })
    }

    /// Appends the encoded record (see the module docs) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(RECORD_VERSION);
        match self {
            Record::SessionUpsert {
                client_id,
                protocol_level,
                session_expiry_secs,
            } => {
                out.put_u8(tag::SESSION_UPSERT);
                put_str(out, client_id);
                out.put_u8(*protocol_level);
                put_varint(out, u64::from(*session_expiry_secs));
            }
            Record::SessionOwner {
                client_id,
                realm,
                user,
            } => {
                out.put_u8(tag::SESSION_OWNER);
                put_str(out, client_id);
                put_varint(out, u64::from(*realm));
                match user {
                    None => out.put_u8(0),
                    Some(user) => {
                        out.put_u8(1);
                        put_str(out, user);
                    }
                }
            }
            Record::SessionDetached {
                client_id,
                expires_at_ms,
            } => {
                out.put_u8(tag::SESSION_DETACHED);
                put_str(out, client_id);
                put_opt_varint(out, *expires_at_ms);
            }
            Record::SessionEnd { client_id } => {
                out.put_u8(tag::SESSION_END);
                put_str(out, client_id);
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
                identifier,
            } => {
                out.put_u8(tag::SUBSCRIBE);
                put_str(out, client_id);
                put_str(out, filter);
                out.put_u8(*options);
                put_opt_varint(out, identifier.map(u64::from));
            }
            Record::Unsubscribe { client_id, filter } => {
                out.put_u8(tag::UNSUBSCRIBE);
                put_str(out, client_id);
                put_str(out, filter);
            }
            Record::Message {
                id,
                expires_at_ms,
                publish,
            } => {
                out.put_u8(tag::MESSAGE);
                put_varint(out, *id);
                put_opt_varint(out, *expires_at_ms);
                put_bytes(out, publish);
            }
            Record::Enqueue {
                client_id,
                message_id,
                qos,
                retain,
                subscription_identifiers,
                shared_filter,
            } => {
                out.put_u8(tag::ENQUEUE);
                put_str(out, client_id);
                put_varint(out, *message_id);
                out.put_u8(*qos);
                out.put_u8(u8::from(*retain));
                put_varint(out, subscription_identifiers.len() as u64);
                for identifier in subscription_identifiers {
                    put_varint(out, u64::from(*identifier));
                }
                match shared_filter {
                    None => out.put_u8(0),
                    Some(filter) => {
                        out.put_u8(1);
                        put_str(out, filter);
                    }
                }
            }
            Record::Dequeue {
                client_id,
                message_id,
            } => {
                out.put_u8(tag::DEQUEUE);
                put_str(out, client_id);
                put_varint(out, *message_id);
            }
            Record::OutboundSent {
                client_id,
                message_id,
                packet_id,
            } => {
                out.put_u8(tag::OUTBOUND_SENT);
                put_str(out, client_id);
                put_varint(out, *message_id);
                put_varint(out, u64::from(*packet_id));
            }
            Record::OutboundReleased {
                client_id,
                packet_id,
            } => {
                out.put_u8(tag::OUTBOUND_RELEASED);
                put_str(out, client_id);
                put_varint(out, u64::from(*packet_id));
            }
            Record::OutboundComplete {
                client_id,
                packet_id,
            } => {
                out.put_u8(tag::OUTBOUND_COMPLETE);
                put_str(out, client_id);
                put_varint(out, u64::from(*packet_id));
            }
            Record::OutboundDone {
                client_id,
                packet_id,
                message_id,
            } => {
                out.put_u8(tag::OUTBOUND_DONE);
                put_str(out, client_id);
                put_varint(out, u64::from(*packet_id));
                put_varint(out, *message_id);
            }
            Record::InboundQos2 {
                client_id,
                packet_id,
            } => {
                out.put_u8(tag::INBOUND_QOS2);
                put_str(out, client_id);
                put_varint(out, u64::from(*packet_id));
            }
            Record::InboundReleased {
                client_id,
                packet_id,
            } => {
                out.put_u8(tag::INBOUND_RELEASED);
                put_str(out, client_id);
                put_varint(out, u64::from(*packet_id));
            }
            Record::Retain { topic, message_id } => {
                out.put_u8(tag::RETAIN);
                put_str(out, topic);
                put_varint(out, *message_id);
            }
            Record::RetainClear { topic } => {
                out.put_u8(tag::RETAIN_CLEAR);
                put_str(out, topic);
            }
            Record::Will {
                client_id,
                publish,
                delay_secs,
                publish_at_ms,
            } => {
                out.put_u8(tag::WILL);
                put_str(out, client_id);
                put_bytes(out, publish);
                put_varint(out, u64::from(*delay_secs));
                put_opt_varint(out, *publish_at_ms);
            }
            Record::WillClear { client_id } => {
                out.put_u8(tag::WILL_CLEAR);
                put_str(out, client_id);
            }
        }
    }

    /// The encoded size in bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        // Cheap enough: records are small except for their PUBLISH bytes,
        // which are counted without copying them.
        let mut out = BytesMut::new();
        match self {
            Record::Message {
                id,
                expires_at_ms,
                publish,
            } => {
                out.put_u8(0);
                out.put_u8(0);
                put_varint(&mut out, *id);
                put_opt_varint(&mut out, *expires_at_ms);
                put_varint(&mut out, publish.len() as u64);
                out.len() + publish.len()
            }
            Record::Will {
                client_id,
                publish,
                delay_secs,
                publish_at_ms,
            } => {
                out.put_u8(0);
                out.put_u8(0);
                put_str(&mut out, client_id);
                put_varint(&mut out, publish.len() as u64);
                put_varint(&mut out, u64::from(*delay_secs));
                put_opt_varint(&mut out, *publish_at_ms);
                out.len() + publish.len()
            }
            other => {
                other.encode(&mut out);
                out.len()
            }
        }
    }

    /// Decodes one whole record. Refuses trailing bytes, unknown versions and
    /// tags, and out-of-range values; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let mut reader = Reader { rest: bytes };
        let version = reader.u8("version").map_err(|_| RecordError::Empty)?;
        if version != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion {
                version,
                supported: RECORD_VERSION,
            });
        }
        let record = match reader.u8("tag")? {
            tag::SESSION_UPSERT => Record::SessionUpsert {
                client_id: reader.string("client_id")?,
                protocol_level: reader.u8("protocol_level")?,
                session_expiry_secs: reader.u32("session_expiry_secs")?,
            },
            tag::SESSION_OWNER => Record::SessionOwner {
                client_id: reader.string("client_id")?,
                realm: reader.u32("realm")?,
                user: if reader.bool("user")? {
                    Some(reader.string("user")?)
                } else {
                    None
                },
            },
            tag::SESSION_DETACHED => Record::SessionDetached {
                client_id: reader.string("client_id")?,
                expires_at_ms: reader.opt_u64("expires_at_ms")?,
            },
            tag::SESSION_END => Record::SessionEnd {
                client_id: reader.string("client_id")?,
            },
            tag::SUBSCRIBE => Record::Subscribe {
                client_id: reader.string("client_id")?,
                filter: reader.string("filter")?,
                options: reader.u8("options")?,
                identifier: reader.opt_u32("identifier")?,
            },
            tag::UNSUBSCRIBE => Record::Unsubscribe {
                client_id: reader.string("client_id")?,
                filter: reader.string("filter")?,
            },
            tag::MESSAGE => Record::Message {
                id: reader.varint("id")?,
                expires_at_ms: reader.opt_u64("expires_at_ms")?,
                publish: reader.bytes("publish")?,
            },
            tag::ENQUEUE => {
                let client_id = reader.string("client_id")?;
                let message_id = reader.varint("message_id")?;
                let qos = reader.u8("qos")?;
                if qos > 2 {
                    return Err(RecordError::OutOfRange { field: "qos" });
                }
                let retain = reader.bool("retain")?;
                let count = reader.varint("subscription_identifiers")?;
                // Each identifier takes at least one byte: a count larger than
                // what is left is garbage, and is refused before allocating.
                if count > reader.rest.len() as u64 {
                    return Err(RecordError::UnexpectedEnd {
                        field: "subscription_identifiers",
                    });
                }
                let mut subscription_identifiers = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    subscription_identifiers.push(reader.u32("subscription_identifiers")?);
                }
                let shared_filter = if reader.bool("shared_filter")? {
                    Some(reader.string("shared_filter")?)
                } else {
                    None
                };
                Record::Enqueue {
                    client_id,
                    message_id,
                    qos,
                    retain,
                    subscription_identifiers,
                    shared_filter,
                }
            }
            tag::DEQUEUE => Record::Dequeue {
                client_id: reader.string("client_id")?,
                message_id: reader.varint("message_id")?,
            },
            tag::OUTBOUND_SENT => Record::OutboundSent {
                client_id: reader.string("client_id")?,
                message_id: reader.varint("message_id")?,
                packet_id: reader.u16("packet_id")?,
            },
            tag::OUTBOUND_RELEASED => Record::OutboundReleased {
                client_id: reader.string("client_id")?,
                packet_id: reader.u16("packet_id")?,
            },
            tag::OUTBOUND_COMPLETE => Record::OutboundComplete {
                client_id: reader.string("client_id")?,
                packet_id: reader.u16("packet_id")?,
            },
            tag::OUTBOUND_DONE => Record::OutboundDone {
                client_id: reader.string("client_id")?,
                packet_id: reader.u16("packet_id")?,
                message_id: reader.varint("message_id")?,
            },
            tag::INBOUND_QOS2 => Record::InboundQos2 {
                client_id: reader.string("client_id")?,
                packet_id: reader.u16("packet_id")?,
            },
            tag::INBOUND_RELEASED => Record::InboundReleased {
                client_id: reader.string("client_id")?,
                packet_id: reader.u16("packet_id")?,
            },
            tag::RETAIN => Record::Retain {
                topic: reader.string("topic")?,
                message_id: reader.varint("message_id")?,
            },
            tag::RETAIN_CLEAR => Record::RetainClear {
                topic: reader.string("topic")?,
            },
            tag::WILL => Record::Will {
                client_id: reader.string("client_id")?,
                publish: reader.bytes("publish")?,
                delay_secs: reader.u32("delay_secs")?,
                publish_at_ms: reader.opt_u64("publish_at_ms")?,
            },
            tag::WILL_CLEAR => Record::WillClear {
                client_id: reader.string("client_id")?,
            },
            tag => return Err(RecordError::UnknownTag { tag }),
        };
        if !reader.rest.is_empty() {
            return Err(RecordError::TrailingBytes {
                count: reader.rest.len(),
            });
        }
        Ok(record)
    }

    /// The client id this record is keyed by, if it is a session record.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Record::SessionUpsert { client_id, .. }
            | Record::SessionOwner { client_id, .. }
            | Record::SessionDetached { client_id, .. }
            | Record::SessionEnd { client_id }
            | Record::Subscribe { client_id, .. }
            | Record::Unsubscribe { client_id, .. }
            | Record::Enqueue { client_id, .. }
            | Record::Dequeue { client_id, .. }
            | Record::OutboundSent { client_id, .. }
            | Record::OutboundReleased { client_id, .. }
            | Record::OutboundComplete { client_id, .. }
            | Record::OutboundDone { client_id, .. }
            | Record::InboundQos2 { client_id, .. }
            | Record::InboundReleased { client_id, .. }
            | Record::Will { client_id, .. }
            | Record::WillClear { client_id } => Some(client_id),
            Record::Message { .. } | Record::Retain { .. } | Record::RetainClear { .. } => None,
        }
    }
}

/// Encodes `publish` in the stored form (see [`Record::message`]).
fn encode_publish(publish: &Publish) -> Result<Bytes, RecordError> {
    let mut stored = publish.clone();
    stored.dup = false;
    stored.properties.topic_alias = None;
    stored.packet_id = match stored.qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(STORED_PACKET_ID),
    };
    let mut out = BytesMut::new();
    encode(&Packet::Publish(stored), ProtocolVersion::V5, &mut out)?;
    Ok(out.freeze())
}

/// Decodes the stored form of a message or will back into a [`Publish`].
///
/// The payload and binary properties of the result are views into `bytes`
/// itself, not a copy: a message the broker restores at start shares its
/// memory with the log's state, so a million queued messages are held once,
/// not twice. The store keeps each message in a buffer of exactly its size
/// (records decode into fresh exact-size buffers, see [`Record::decode`]), so
/// keeping the views pins nothing else. For QoS 1/2 the packet id is the
/// placeholder [`STORED_PACKET_ID`].
pub fn decode_publish(bytes: &Bytes) -> Result<Publish, RecordError> {
    let mut decoder = Decoder::client(ProtocolVersion::V5, u32::MAX);
    match decoder.decode_shared(bytes)? {
        Some((Packet::Publish(publish), length)) if length == bytes.len() => Ok(publish),
        _ => Err(RecordError::NotAPublish),
    }
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn put_opt_varint(out: &mut BytesMut, value: Option<u64>) {
    match value {
        None => out.put_u8(0),
        Some(value) => {
            out.put_u8(1);
            put_varint(out, value);
        }
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

fn put_str(out: &mut BytesMut, value: &str) {
    put_bytes(out, value.as_bytes());
}

/// A cursor over a record's bytes; every read checks what is left.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        let (&first, rest) = self
            .rest
            .split_first()
            .ok_or(RecordError::UnexpectedEnd { field })?;
        self.rest = rest;
        Ok(first)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::OutOfRange { field }),
        }
    }

    /// Unsigned LEB128, at most 10 bytes, no bits beyond 64.
    fn varint(&mut self, field: &'static str) -> Result<u64, RecordError> {
        let mut value: u64 = 0;
        for index in 0..10u32 {
            let byte = self.u8(field)?;
            let bits = u64::from(byte & 0x7F);
            if index == 9 && bits > 1 {
                return Err(RecordError::OutOfRange { field });
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::OutOfRange { field })
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        u32::try_from(self.varint(field)?).map_err(|_| RecordError::OutOfRange { field })
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        u16::try_from(self.varint(field)?).map_err(|_| RecordError::OutOfRange { field })
    }

    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, RecordError> {
        if self.bool(field)? {
            Ok(Some(self.varint(field)?))
        } else {
            Ok(None)
        }
    }

    fn opt_u32(&mut self, field: &'static str) -> Result<Option<u32>, RecordError> {
        if self.bool(field)? {
            Ok(Some(self.u32(field)?))
        } else {
            Ok(None)
        }
    }

    fn slice(&mut self, field: &'static str) -> Result<&'a [u8], RecordError> {
        let length = self.varint(field)?;
        let length = usize::try_from(length).map_err(|_| RecordError::OutOfRange { field })?;
        if length > self.rest.len() {
            return Err(RecordError::UnexpectedEnd { field });
        }
        let (value, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(value)
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        Ok(Bytes::copy_from_slice(self.slice(field)?))
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        let slice = self.slice(field)?;
        String::from_utf8(slice.to_vec()).map_err(|_| RecordError::InvalidUtf8 { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use switchboard_codec::PublishProperties;

    fn publish(topic: &str, qos: QoS, payload: &[u8]) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: true,
            topic: topic.to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then_some(77),
            properties: PublishProperties {
                content_type: Some("text/plain".into()),
                message_expiry_interval: Some(60),
                ..PublishProperties::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn round_trip(record: &Record) -> Record {
        let mut out = BytesMut::new();
        record.encode(&mut out);
        assert_eq!(out.len(), record.encoded_len());
        Record::decode(&out).unwrap()
    }

    #[test]
    fn message_helper_stores_a_canonical_v5_publish() {
        let mut original = publish("a/b", QoS::ExactlyOnce, b"hello");
        original.dup = true;
        original.properties.topic_alias = Some(3);
        let record = Record::message(9, Some(1_700_000_000_000), &original).unwrap();
        let Record::Message {
            publish: stored, ..
        } = &record
        else {
            panic!("not a message");
        };
        let decoded = decode_publish(stored).unwrap();
        // The payload is a view into the stored form, not a copy of it.
        let stored_range = stored.as_ptr_range();
        assert!(stored_range.contains(&decoded.payload.as_ptr()));
        assert!(!decoded.dup);
        assert_eq!(decoded.packet_id, Some(STORED_PACKET_ID));
        assert_eq!(decoded.properties.topic_alias, None);
        assert_eq!(decoded.topic, "a/b");
        assert_eq!(decoded.qos, QoS::ExactlyOnce);
        assert!(decoded.retain);
        assert_eq!(
            decoded.properties.content_type.as_deref(),
            Some("text/plain")
        );
        assert_eq!(&decoded.payload[..], b"hello");
        // The publisher's packet id does not change the stored bytes.
        let mut other = original;
        other.packet_id = Some(5);
        assert_eq!(
            Record::message(9, Some(1_700_000_000_000), &other).unwrap(),
            record
        );
        assert_eq!(round_trip(&record), record);
    }

    #[test]
    fn message_helper_refuses_what_the_codec_refuses() {
        // An empty topic must be resolved from its alias before storing.
        let mut aliased = publish("", QoS::AtMostOnce, b"");
        aliased.properties.topic_alias = Some(1);
        assert!(Record::message(1, None, &aliased).is_err());
    }

    #[test]
    fn decode_publish_refuses_other_packets_and_trailing_bytes() {
        assert_eq!(
            decode_publish(&Bytes::from_static(b"\xd0\x00")).unwrap_err(),
            RecordError::NotAPublish
        );
        let Record::Message {
            publish: stored, ..
        } = Record::message(1, None, &publish("t", QoS::AtMostOnce, b"x")).unwrap()
        else {
            panic!("not a message");
        };
        let mut longer = stored.to_vec();
        longer.push(0);
        assert!(decode_publish(&Bytes::from(longer)).is_err());
        assert!(decode_publish(&stored.slice(..stored.len() - 1)).is_err());
    }

    #[test]
    fn decode_refuses_unknown_versions_tags_and_trailing_bytes() {
        assert_eq!(Record::decode(&[]), Err(RecordError::Empty));
        assert!(matches!(
            Record::decode(&[2, 1]),
            Err(RecordError::UnsupportedVersion { version: 2, .. })
        ));
        assert_eq!(
            Record::decode(&[1, 200]),
            Err(RecordError::UnknownTag { tag: 200 })
        );
        let mut out = BytesMut::new();
        Record::SessionEnd {
            client_id: "c".into(),
        }
        .encode(&mut out);
        out.put_u8(0);
        assert_eq!(
            Record::decode(&out),
            Err(RecordError::TrailingBytes { count: 1 })
        );
        // A varint longer than 64 bits.
        assert!(Record::decode(&[
            1,
            tag::DEQUEUE,
            1,
            b'c',
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0x02
        ])
        .is_err());
        // u64::MAX itself is fine.
        let record = Record::Dequeue {
            client_id: "c".into(),
            message_id: u64::MAX,
        };
        assert_eq!(round_trip(&record), record);
        // QoS 3 is not a QoS.
        let mut out = BytesMut::new();
        Record::Enqueue {
            client_id: "c".into(),
            message_id: 1,
            qos: 3,
            retain: false,
            subscription_identifiers: vec![],
            shared_filter: None,
        }
        .encode(&mut out);
        assert_eq!(
            Record::decode(&out),
            Err(RecordError::OutOfRange { field: "qos" })
        );
        // A count of identifiers larger than the record.
        assert!(Record::decode(&[1, tag::ENQUEUE, 1, b'c', 1, 1, 0, 0xFF, 0xFF, 0x03]).is_err());
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z/+#$é]{0,12}"
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    pub(crate) fn any_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (text(), any::<u8>(), any::<u32>()).prop_map(
                |(client_id, protocol_level, session_expiry_secs)| {
                    Record::SessionUpsert {
                        client_id,
                        protocol_level,
                        session_expiry_secs,
                    }
                }
            ),
            (text(), any::<Option<u64>>()).prop_map(|(client_id, expires_at_ms)| {
                Record::SessionDetached {
                    client_id,
                    expires_at_ms,
                }
            }),
            text().prop_map(|client_id| Record::SessionEnd { client_id }),
            (text(), any::<u32>(), proptest::option::of(text())).prop_map(
                |(client_id, realm, user)| Record::SessionOwner {
                    client_id,
                    realm,
                    user
                }
            ),
            (text(), text(), any::<u8>(), any::<Option<u32>>()).prop_map(
                |(client_id, filter, options, identifier)| Record::Subscribe {
                    client_id,
                    filter,
                    options,
                    identifier
                }
            ),
            (text(), text())
                .prop_map(|(client_id, filter)| Record::Unsubscribe { client_id, filter }),
            (any::<u64>(), any::<Option<u64>>(), bytes()).prop_map(
                |(id, expires_at_ms, publish)| Record::Message {
                    id,
                    expires_at_ms,
                    publish
                }
            ),
            (
                text(),
                any::<u64>(),
                0u8..=2,
                any::<bool>(),
                proptest::collection::vec(any::<u32>(), 0..4),
                proptest::option::of(text())
            )
                .prop_map(
                    |(
                        client_id,
                        message_id,
                        qos,
                        retain,
                        subscription_identifiers,
                        shared_filter,
                    )| {
                        Record::Enqueue {
                            client_id,
                            message_id,
                            qos,
                            retain,
                            subscription_identifiers,
                            shared_filter,
                        }
                    }
                ),
            (text(), any::<u64>()).prop_map(|(client_id, message_id)| Record::Dequeue {
                client_id,
                message_id
            }),
            (text(), any::<u64>(), any::<u16>()).prop_map(|(client_id, message_id, packet_id)| {
                Record::OutboundSent {
                    client_id,
                    message_id,
                    packet_id,
                }
            }),
            (text(), any::<u16>()).prop_map(|(client_id, packet_id)| Record::OutboundReleased {
                client_id,
                packet_id
            }),
            (text(), any::<u16>()).prop_map(|(client_id, packet_id)| Record::OutboundComplete {
                client_id,
                packet_id
            }),
            (text(), any::<u16>(), any::<u64>()).prop_map(|(client_id, packet_id, message_id)| {
                Record::OutboundDone {
                    client_id,
                    packet_id,
                    message_id,
                }
            }),
            (text(), any::<u16>()).prop_map(|(client_id, packet_id)| Record::InboundQos2 {
                client_id,
                packet_id
            }),
            (text(), any::<u16>()).prop_map(|(client_id, packet_id)| Record::InboundReleased {
                client_id,
                packet_id
            }),
            (text(), any::<u64>())
                .prop_map(|(topic, message_id)| Record::Retain { topic, message_id }),
            text().prop_map(|topic| Record::RetainClear { topic }),
            (text(), bytes(), any::<u32>(), any::<Option<u64>>()).prop_map(
                |(client_id, publish, delay_secs, publish_at_ms)| Record::Will {
                    client_id,
                    publish,
                    delay_secs,
                    publish_at_ms
                }
            ),
            text().prop_map(|client_id| Record::WillClear { client_id }),
        ]
    }

    proptest! {
        #[test]
        fn every_record_round_trips(record in any_record()) {
            prop_assert_eq!(round_trip(&record), record);
        }

        #[test]
        fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Record::decode(&garbage);
            let _ = decode_publish(&Bytes::from(garbage));
        }

        #[test]
        fn any_prefix_of_a_record_is_refused(record in any_record(), cut in any::<prop::sample::Index>()) {
            let mut out = BytesMut::new();
            record.encode(&mut out);
            let cut = cut.index(out.len());
            prop_assert!(Record::decode(&out[..cut]).is_err());
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(
            tag in 0u8..20,
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![RECORD_VERSION, tag];
            bytes.extend_from_slice(&garbage);
            let _ = Record::decode(&bytes);
        }
    }
}
