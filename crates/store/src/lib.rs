//! The durable storage engine: what must survive a restart.
//!
//! # The promise
//!
//! Once the broker acknowledges a message that must be kept (PUBACK for QoS
//! 1, PUBREC for QoS 2, for a retained message or one queued for a session
//! that outlives its connection), the records describing it are written and
//! fsynced, and the message is delivered after `kill -9` or power loss. The
//! broker therefore acknowledges only after the [`Ticket`] of its
//! [`Log::append`] completes with `Ok`; if it completes with an error (full
//! disk, I/O error, backlog) the broker refuses the message with a reason
//! code instead. Sessions, subscriptions, queues, in-flight QoS 1/2 state
//! both ways, retained messages and pending wills all come back, and expiry
//! deadlines are absolute wall-clock times (unix ms), so time spent down
//! counts.
//!
//! # Pieces
//!
//! - [`Record`]: one persistent event, keyed by ids and idempotent (applying
//!   it twice, or on top of a snapshot that already reflects it, changes
//!   nothing more). Messages and wills are stored as MQTT 5 PUBLISH packets
//!   encoded by the codec ([`Record::message`], [`decode_publish`]).
//! - [`State`]: what applying records in order rebuilds, and
//!   [`State::records`], the minimal records that rebuild it (a snapshot's
//!   content). The module docs of `state` list each record's effect and what
//!   the writer must respect (a `Message` before its references, new
//!   reference before old one removed when moving a message).
//! - [`Log`]: the segmented append-only log with group commit, recovery,
//!   snapshots (checkpoints) and reclamation. It keeps its own [`State`]
//!   ([`Log::with_state`]): the recovered state plus every record written
//!   since, in log order, which is what its checkpoints write.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/LOCK                              held with an exclusive file lock while open
//! <dir>/log/<first sequence:020>.seg      segments, named by their first sequence number
//! <dir>/snapshot-<N:020>.snap             snapshots; N = first sequence NOT reflected
//! <dir>/snapshot-<N:020>.tmp              a snapshot being written (removed at open)
//! <dir>/damaged/<file>-<offset>.bin       copies of damaged bytes set aside by recovery
//! ```
//!
//! # On-disk format (all integers little endian)
//!
//! A segment is a sequence of **batches**, the unit of commit:
//!
//! ```text
//! offset size  field
//!  0      4    magic "SBLB"
//!  4      1    format version (1)
//!  5      3    reserved, zero
//!  8      8    first sequence number (u64); records are numbered first, first+1, ...
//! 16      4    record count (u32)
//! 20      4    body length in bytes (u32)
//! 24      4    crc32c (Castagnoli) over bytes 0..24 and the body
//! 28      ...  body: for each record, length (u32) then the record's bytes
//! ```
//!
//! A record's bytes are its versioned encoding (byte 0 = record encoding
//! version, byte 1 = tag, then the fields; see [`Record`] and the `record`
//! module docs). Sequence numbers strictly increase across batches and
//! segments; gaps are allowed (the numbers of a batch whose write failed are
//! never reused).
//!
//! A **snapshot** file is
//!
//! ```text
//! header  20 bytes  magic "SBSN", version (1), 3 reserved zero bytes,
//!                   base sequence N (u64), crc32c of the previous 16 bytes
//! batches ...       the state's records in batches framed exactly as above
//!                   (each batch's sequence field holds N), about 1 MiB each
//! footer  24 bytes  magic "SBSE", record count (u64), batch count (u64),
//!                   crc32c of the previous 20 bytes; the last bytes of the file
//! ```
//!
//! # Commit path (group commit)
//!
//! [`Log::append`] encodes the records on the caller's thread and sends them
//! over a bounded channel (capacity [`LogConfig::queue_capacity`], default
//! 65,536 appends) to one dedicated **commit thread**; it never blocks and
//! never touches the disk. When the channel is full the append fails at once
//! with [`StoreError::Backlog`]. The commit thread takes everything waiting
//! (up to [`LogConfig::max_batch_bytes`]), assigns sequence numbers, writes
//! it as one batch with one `write`, calls `sync_data`, applies the batch's
//! records to the log's state, and then completes every ticket in it with the
//! sequence number of its last record. Whatever arrives during that fsync
//! forms the next batch, so under load each fsync carries many appends. A
//! batch made only of detached appends ([`Log::append_detached`]: nobody
//! waits for them) is written but not fsynced on its own: the next batch
//! with a waiter fsyncs it along (one fsync covers the file), or the commit
//! thread does after [`DETACHED_SYNC_DELAY`] if none comes. With
//! [`SyncMode::Periodic`] the state is updated and the tickets complete after
//! the `write`, and the fsync happens on the interval instead (loss window on
//! power failure: one interval; a process crash loses nothing written).
//!
//! **The log's state.** Only the commit thread changes it, one whole batch at
//! a time under its lock, in log order and before the batch's tickets
//! complete. So it never holds a record whose write failed (its owner refused
//! what that record described), and an owner whose ticket completed finds
//! its records in it. Each append carries its records next to their
//! encoding for this (a queued append holds its records twice). The one
//! exception is [`Log::append_detached`], for changes the owner has already
//! made and does not take back: those are applied even when their write
//! fails, so the checkpoint that the failure makes due writes them.
//!
//! A segment is closed (after an fsync) once it reaches
//! [`LogConfig::segment_bytes`] and the next batch starts a new file, whose
//! directory entry is fsynced before anything in it is acknowledged.
//!
//! **Failures.** A failed `write` or fsync fails every ticket of that batch
//! ([`StoreError::DiskFull`] for ENOSPC, else [`StoreError::Io`]) and leaves
//! the log's state without the batch (but for its detached appends); the
//! commit thread lives on. It cuts the segment back to the end of the last
//! acknowledged batch (best effort), closes it (after a failed fsync the
//! kernel may have dropped its dirty pages, so its state is unknown), sets
//! [`Log::needs_checkpoint`], and the next batch opens a new segment. Later
//! appends succeed as soon as the disk works again.
//!
//! # Recovery ([`Log::open`])
//!
//! 1. Take the directory lock (a second `Log` on the same directory gets
//!    [`StoreError::Locked`]); remove leftover `.tmp` snapshots.
//! 2. Load the newest snapshot that verifies completely (header, every batch
//!    checksum, footer counts). A damaged snapshot is copied to `damaged/`,
//!    logged at error level, removed, and the previous snapshot is tried; with
//!    none left, the state starts empty and every segment is replayed.
//! 3. Replay, in order, every batch with records at or after the snapshot's
//!    `N`, from the segment holding `N` onwards.
//!    - **Torn tail**: invalid bytes at the end of the newest segment with no
//!      valid batch after them (an incomplete write or a bad checksum of the
//!      last batch, which was never acknowledged) are truncated away, logged
//!      at info level and reported in [`RecoveryReport::torn_tail`].
//!    - **Damage**: invalid bytes anywhere else (a bad batch followed by valid
//!      data, the end of an older segment, an unreadable segment, a batch
//!      whose checksum is right but whose records do not decode) are copied
//!      to `damaged/<file>-<offset>.bin`, logged at error level with file and
//!      offset, listed in [`RecoveryReport::damaged`], and skipped: recovery
//!      resumes at the next valid batch (the end the bad header claims if a
//!      valid batch starts there, else the next magic whose batch checksum
//!      verifies).
//! 4. Drop messages nothing refers to, and start a new segment for new
//!    appends (old segments are never appended to again).
//!
//! Opening succeeds whatever the files contain; only a lock conflict or an
//! unusable directory is an error. After damage, [`Log::needs_checkpoint`]
//! is set so that a fresh snapshot soon replaces the damaged history.
//!
//! # Checkpoints and reclamation
//!
//! [`Log::checkpoint_state`] is the whole checkpoint: [`Log::begin_checkpoint`]
//! makes the commit thread close the current segment, so every record
//! appended before the call has a sequence number below `N` and every later
//! one lands in a segment named `N` or higher. The commit thread applies each
//! batch before it takes the next command, so once the roll returns the
//! log's state reflects every record below `N` that was written; it is
//! captured under the state's lock (it may reflect whole batches after `N`
//! too, which is harmless: see below) and [`Checkpoint::write`] writes it to
//! `snapshot-<N>.tmp`, fsyncs, renames it to `snapshot-<N>.snap` and fsyncs
//! the directory. Appends continue throughout. (An owner keeping a state of
//! its own can use the two steps, `begin_checkpoint` then `write`, with a
//! capture that reflects at least every written record appended before
//! `begin_checkpoint`.)
//!
//! Before capturing, `checkpoint_state` drops messages nothing refers to, so
//! the writer must append a `Message` together with (in the same
//! [`Log::append`] as) a record referring to it: a message that is still
//! unreferenced once its append is applied is then one nothing will refer to.
//!
//! Replaying the log from `N` over a snapshot that already reflects some of
//! those records needs more than per-record idempotence, and recovery adds
//! two rules (the `Replay` type in `state`): the first replayed record about
//! a queue entry or outbound packet id, if it inserts (`Enqueue`,
//! `OutboundSent`), first removes what the snapshot holds for that key, so
//! queue and resend order come out as written; and no message is dropped
//! while replaying (a replayed removal may take what is, in the snapshot, its
//! last reference), only unreferenced ones at the end. A property test checks
//! that a snapshot taken at any point after the roll plus the replay from
//! the roll equals replaying everything.
//!
//! After writing the snapshot the checkpoint deletes snapshots older than the two
//! newest, and segments wholly before the older of those two: the previous
//! snapshot plus the log after it stays a complete fallback should the newest
//! snapshot rot. (With a single snapshot no segment is deleted, so the whole
//! log is the fallback.)
//!
//! **Disk bound.** [`Log::should_checkpoint`] says yes when the log written
//! since the newest snapshot exceeds `2 x live + slack` (slack
//! [`LogConfig::checkpoint_slack_bytes`], default 64 MiB), or when
//! [`Log::needs_checkpoint`]. Checkpointing then keeps the disk at about two
//! snapshots (2 x live) plus the log since the previous snapshot (at most
//! twice `2 x live + slack` plus a segment): within 6 x live + 2 x slack +
//! 2 segments.
//!
//! # Testing hooks
//!
//! [`FaultInjector`] (set in [`LogConfig::fault_injector`]) makes segment
//! creation, writes (including short writes), fsyncs and snapshot writes fail
//! on demand, and tracks fsynced lengths so that
//! [`FaultInjector::power_loss_copy`] reproduces what a power cut leaves.

mod error;
mod fault;
mod format;
mod histogram;
mod log;
mod record;
mod recovery;
mod snapshot;
mod state;

#[cfg(test)]
mod tests;

pub use error::{RecordError, StoreError};
pub use fault::{copy_data_dir, Fault, FaultInjector, FaultPoint};
pub use histogram::{CommitStats, HistogramSnapshot, BATCH_RECORDS_BOUNDS, COMMIT_MICROS_BOUNDS};
pub use log::{
    Checkpoint, CheckpointReport, DiskUsage, Log, LogConfig, LogStats, SyncMode, Ticket,
    DEFAULT_CHECKPOINT_SLACK_BYTES, DEFAULT_MAX_BATCH_BYTES, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_SEGMENT_BYTES, DETACHED_SYNC_DELAY,
};
pub use record::{decode_publish, Record, RECORD_VERSION, STORED_PACKET_ID};
pub use recovery::{Damage, Recovered, RecoveryReport, TornTail};
pub use state::{
    OutboundStage, Presence, QueueEntry, SessionOwner, SessionState, State, StoredMessage,
    StoredWill, Subscription,
};
