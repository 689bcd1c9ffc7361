//! Sans-IO MQTT session state: the per-client queue, packet identifiers, the
//! in-flight window, the QoS 1 and 2 flows in both directions, inbound topic
//! aliases and keep alive.
//!
//! Nothing here reads a socket or a clock: time comes in as `now`, packets go
//! out as values for the caller to encode and write. That is what lets every
//! rule below be tested deterministically, without sleeps.
//!
//! # Who calls what
//!
//! The broker keeps each [`Session`] in a `std::sync::Mutex` (short critical
//! sections, never held across `.await`):
//!
//! - a **publisher's** task matches a message and calls [`Session::enqueue`]
//!   on each matching session, then wakes that session's connection task;
//! - the **subscriber's own** connection task calls everything else.
//!
//! # Call order for one connection
//!
//! 1. CONNECT accepted. Clean start, or no session to resume:
//!    [`Session::clear`] (hand the returned shared deliveries to other group
//!    members). Then [`Session::attach`]; write CONNACK, then the returned
//!    packets (PUBLISH with DUP=1 and PUBREL, in original send order), before
//!    anything else.
//! 2. Loop: write [`Session::poll_publish`] results until `None`. Call it
//!    again after each enqueue and after each acknowledgement that frees the
//!    window.
//! 3. Inbound acknowledgements: [`Session::handle_puback`],
//!    [`Session::handle_pubrec`] (write the PUBREL it returns),
//!    [`Session::handle_pubcomp`].
//! 4. Inbound QoS 2 PUBLISH: [`Session::incoming_qos2`] (route only when
//!    `New`; PUBREC either way); inbound PUBREL: [`Session::handle_pubrel`]
//!    (PUBCOMP with the returned reason code).
//! 5. Connection gone: [`Session::detach`]. Shared-subscription member whose
//!    session lives on: [`Session::take_shared`]. Session ended:
//!    [`Session::clear`].
//! 6. Now and then (e.g. on each metrics tick): [`Session::take_drops`].
//! 7. A connection about to sit idle: [`Session::shrink`] frees what an
//!    empty session still holds from its last burst of traffic.
//!
//! Per connection, also [`InboundAliases`] (new for every connection) and
//! [`KeepAlive`].
//!
//! # Invariants
//!
//! - A packet id is in use from the PUBLISH that takes it until PUBACK,
//!   PUBCOMP, or a PUBREC with a reason code of 0x80 or more; it is never 0
//!   and never handed out twice at once ([MQTT-2.2.1-3], [MQTT-2.2.1-4]).
//! - At most `window` = min(`max_inflight`, the client's Receive Maximum)
//!   QoS 1 and 2 PUBLISH packets sent on the current connection await
//!   acknowledgement ([MQTT-4.9.0-2], [MQTT-3.3.4-9]). The quota is per
//!   connection (4.9): PUBRELs resent at attach do not take from it.
//! - Messages leave in the order they were queued (4.6); resends keep the
//!   original send order ([MQTT-4.6.0-1]) and go before anything new.
//! - The queue holds at most `max_queued_messages` deliveries and
//!   `max_queued_bytes` bytes (one message of any size fits an empty queue);
//!   on overflow the new delivery is dropped. Every drop is counted by reason.
//!   Only a restore ([`Session::restore_queued`]) may exceed the bounds.
//! - Nothing here panics on client input: unexpected acknowledgements are
//!   errors ([`SessionError`]) and leave the state unchanged.
//!
//! # Journal and restore
//!
//! A broker that persists sessions turns on [`Session::set_journaling`] and,
//! after each call under the session's lock, moves the recorded
//! [`JournalEvent`]s to its durable store with [`Session::take_journal`].
//! Together with what the broker already knows from return values (an
//! enqueue that returned [`EnqueueOutcome::Queued`], inbound QoS 2 ids), the
//! events are enough to keep, per session, the queue (message ids in order)
//! and the in-flight flows (packet id, message id, stage, in send order):
//!
//! | Event | Queue | In flight |
//! |---|---|---|
//! | `Sent { message_id, packet_id, qos }` | remove the oldest `message_id` | add `packet_id` -> `message_id`, awaiting PUBACK/PUBREC, last in send order |
//! | `SentQos0 { message_id }` | remove the oldest `message_id` | |
//! | `Released { packet_id }` | | `packet_id` now awaits PUBCOMP |
//! | `Completed { packet_id, .. }` | | remove `packet_id` |
//! | `Removed { packet_id: None, message_id }` | remove the oldest `message_id` (see [`JournalEvent`] for `take_shared`) | |
//! | `Removed { packet_id: Some(id), .. }` | | remove `id` |
//!
//! At start, before any attach, the broker rebuilds each session from that
//! state with [`Session::restore_queued`], [`Session::restore_inflight`] (in
//! send order) and [`Session::restore_incoming_qos2`], which emit no events,
//! then turns journaling on. With journaling off, each recording point costs
//! one branch on a `bool`.
//!
//! # Cost
//!
//! `enqueue`, `poll_publish` and the acknowledgement handlers are O(1)
//! amortised. Per message they allocate nothing but the returned `Publish`
//! (its topic `String`, and for MQTT 5 clients the cloned properties); a
//! delivery moves from the queue into its in-flight slot without a copy, and
//! the queue and in-flight containers only grow to their high-water mark
//! (the in-flight ones are freed when the last flow ends, the rest once
//! empty at [`Session::detach`], [`Session::clear`] and [`Session::shrink`]).
//!
//! An idle session that never had traffic holds no heap memory at all: 56
//! bytes inline, its limits shared with other sessions
//! ([`Session::with_shared_limits`]).
//! `attach`, `clear` and `take_shared` are O(state).

mod alias;
mod hash;
mod inflight;
mod journal;
mod keep_alive;
mod message;
mod session;

pub use alias::InboundAliases;
pub use journal::JournalEvent;
pub use keep_alive::KeepAlive;
pub use message::{Delivery, Message, SharedMessage};
pub use session::{
    AckKind, ClientParams, DropCounts, DropReason, EnqueueOutcome, IncomingQos2, Session,
    SessionError, SessionLimits,
};
