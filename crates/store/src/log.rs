//! The segmented, group-committed log: [`Log`], its commit thread, tickets,
//! checkpoints and reclamation. The crate docs describe the on-disk format
//! and the rules; this module is the machinery.
//!
//! # Threads
//!
//! [`Log::append`] runs on the caller's thread: it encodes the records (CPU
//! only) and hands them to the commit thread through a bounded channel; it
//! never blocks and never touches the disk. The **commit thread** (a
//! dedicated std thread, because it blocks in `write` and `fsync`) takes
//! everything waiting, writes it as one batch with one `write`, fsyncs, and
//! completes every ticket in the batch. Whatever arrives during that fsync
//! forms the next batch, so the batch size grows with the load by itself.
//!
//! The commit thread also owns the log's **state** (see [`Log::with_state`]):
//! after a batch is written (and, with [`SyncMode::Always`], fsynced) it
//! applies the batch's records to it, in log order, and only then completes
//! the batch's tickets. A batch whose write fails is not applied (except for
//! detached appends, [`Log::append_detached`]). So the state is what a
//! recovery from the disk would rebuild, and an owner that sees its ticket
//! complete with `Ok` also sees its records in the state.
//!
//! Checkpoints ([`Log::checkpoint_state`], [`Log::begin_checkpoint`]) run on
//! the caller's thread (call them from `spawn_blocking`); the commit thread
//! only rolls to a new segment for them, so appends continue while the
//! snapshot is written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::fault::{FaultInjector, FaultPoint};
use crate::format::{self, frame_record, put_batch, MAX_BATCH_BODY};
use crate::histogram::{CommitStats, Histogram, BATCH_RECORDS_BOUNDS, COMMIT_MICROS_BOUNDS};
use crate::record::Record;
use crate::recovery::{self, Recovered, RecoveryReport};
use crate::snapshot;
use crate::state::State;

/// 64 MiB: large enough that rolling (one fsync of the directory) is rare,
/// small enough that reclamation frees space in useful steps and recovery
/// reads one segment into memory at a time.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// With [`SyncMode::Always`], how long a batch of detached appends only
/// (bookkeeping nobody waits for) may stay written but unsynced when no batch
/// with a waiter comes to fsync it first. A crash within it loses only such
/// bookkeeping, as a crash between its write and its fsync always could
/// (acknowledgements from clients: messages sent again after the restart).
/// 5 ms: several fsyncs' worth on a fast disk, short next to any client's
/// retry.
pub const DETACHED_SYNC_DELAY: Duration = Duration::from_millis(5);
/// 65,536 appends may wait for the commit thread. With the broker calling
/// `append` once per acknowledged PUBLISH this is seconds of backlog even on
/// a slow disk; beyond it, appends fail at once with
/// [`StoreError::Backlog`] rather than letting memory grow without bound.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
/// 8 MiB per batch: one `write` of this size costs about as much as the
/// fsync after it on an SSD; bigger batches gain little and delay tickets.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 << 20;
/// 64 MiB of log beyond twice the live data before a checkpoint is due (see
/// [`Log::should_checkpoint`]): small stores do not checkpoint constantly.
pub const DEFAULT_CHECKPOINT_SLACK_BYTES: u64 = 64 << 20;

/// When tickets complete relative to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Fsync every batch before completing its tickets: a completed ticket
    /// survives power loss.
    Always,
    /// Complete tickets after `write` (the data is in the OS page cache: it
    /// survives a crash of the process, not of the machine) and fsync at
    /// this interval. Loss window on power failure: up to one interval of
    /// acknowledged appends.
    Periodic(Duration),
}

/// How to open a [`Log`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The data directory: holds `LOCK`, `log/`, the snapshots and `damaged/`.
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    pub sync: SyncMode,
    /// Appends that may wait for the commit thread before
    /// [`StoreError::Backlog`].
    pub queue_capacity: usize,
    /// The commit thread stops adding appends to a batch at this size (one
    /// larger append still forms a batch of its own).
    pub max_batch_bytes: usize,
    /// See [`Log::should_checkpoint`].
    pub checkpoint_slack_bytes: u64,
    /// See [`DETACHED_SYNC_DELAY`].
    pub detached_sync_delay: Duration,
    /// Test hook: see [`FaultInjector`].
    pub fault_injector: Option<Arc<FaultInjector>>,
}

impl LogConfig {
    /// The defaults above, with fsync on every batch.
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync: SyncMode::Always,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            checkpoint_slack_bytes: DEFAULT_CHECKPOINT_SLACK_BYTES,
            detached_sync_delay: DETACHED_SYNC_DELAY,
            fault_injector: None,
        }
    }
}

/// The outcome of one [`Log::append`]: the sequence number of its last
/// record once the batch holding it is written (and, with
/// [`SyncMode::Always`], fsynced), or why it failed.
#[derive(Debug)]
#[must_use = "an append is only durable once its ticket completes with Ok"]
pub struct Ticket {
    receiver: oneshot::Receiver<Result<u64, StoreError>>,
}

impl Ticket {
    /// Waits for the batch. `Err(Closed)` if the log shut down first.
    pub async fn wait(self) -> Result<u64, StoreError> {
        self.receiver.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Blocks the thread until the batch completes. Panics if called from
    /// inside an async runtime (use [`Ticket::wait`] there).
    pub fn wait_blocking(self) -> Result<u64, StoreError> {
        self.receiver
            .blocking_recv()
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Polls for the outcome, for a caller that keeps the ticket in a queue
    /// and waits on it inside a `select!` (dropping the poll loses nothing).
    /// Once it has returned `Ready` the ticket is spent: drop it.
    pub fn poll_result(&mut self, context: &mut Context<'_>) -> Poll<Result<u64, StoreError>> {
        Pin::new(&mut self.receiver)
            .poll(context)
            .map(|result| result.unwrap_or(Err(StoreError::Closed)))
    }

    /// The outcome if the batch has completed, without waiting.
    pub fn try_result(&mut self) -> Option<Result<u64, StoreError>> {
        match self.receiver.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StoreError::Closed)),
        }
    }
}

/// Counters of the commit thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Batches written successfully, and the records in them.
    pub batches: u64,
    pub records: u64,
    /// Successful fsyncs of segment data.
    pub syncs: u64,
    /// Batches whose write or fsync failed (all their tickets failed).
    pub failed_batches: u64,
    /// Appends refused because the queue was full.
    pub backlog_refusals: u64,
}

/// Disk used by the log, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub segments: usize,
    pub segment_bytes: u64,
    pub snapshots: usize,
    pub snapshot_bytes: u64,
    /// Segment bytes at or after the newest snapshot: what a recovery
    /// replays, and what [`Log::should_checkpoint`] weighs.
    pub log_bytes_since_snapshot: u64,
}

impl DiskUsage {
    pub fn total_bytes(&self) -> u64 {
        self.segment_bytes + self.snapshot_bytes
    }
}

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The snapshot's base sequence `N`: it reflects every record before `N`.
    pub sequence: u64,
    pub snapshot_bytes: u64,
    pub records: u64,
    pub segments_deleted: usize,
    pub snapshots_deleted: usize,
    pub bytes_reclaimed: u64,
}

/// State shared by the `Log` handle, the commit thread and checkpoints.
#[derive(Debug)]
struct Shared {
    /// Set after any write or fsync failure and after recovering around
    /// damage: the owner should write a full snapshot (cleared by a
    /// successful checkpoint that started after it was set).
    needs_checkpoint: AtomicBool,
    /// Sizes of segment files by first sequence, and of snapshots by base.
    files: Mutex<Files>,
    batches: AtomicU64,
    records: AtomicU64,
    syncs: AtomicU64,
    failed_batches: AtomicU64,
    backlog_refusals: AtomicU64,
    /// How long successful batches took to write (and fsync); see
    /// [`Log::commit_stats`].
    commit_micros: Histogram,
    /// Records per successful batch.
    batch_records: Histogram,
    /// Bytes of successful batches.
    batch_bytes: AtomicU64,
    /// What the records written so far rebuild; see [`Log::with_state`].
    state: LogState,
}

/// The log's state: written only by the commit thread (one batch at a time,
/// under one hold of the lock, so readers and checkpoints see whole batches),
/// read by [`Log::with_state`] and [`Log::checkpoint_state`].
struct LogState(Mutex<State>);

impl LogState {
    fn lock(&self) -> MutexGuard<'_, State> {
        // `State::apply` has no panicking path; should a panic poison the
        // lock anyway, the state is still the best account there is.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Not the state itself: a `Log` in a debug message must not print every
/// session and message, nor wait for the commit thread.
impl std::fmt::Debug for LogState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LogState").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Files {
    segments: BTreeMap<u64, u64>,
    snapshots: BTreeMap<u64, u64>,
}

impl Shared {
    fn files(&self) -> MutexGuard<'_, Files> {
        // Holding only sizes: a panic elsewhere leaves nothing half-updated
        // that matters more than a wrong size.
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One append on its way to the commit thread.
struct Append {
    /// The records, framed (length + bytes each).
    body: Bytes,
    count: u32,
    /// The records themselves, applied to the log's state once `body` is
    /// written. Kept rather than decoded again from `body`, which would cost
    /// the commit thread CPU on the path of every ticket; the price is that a
    /// queued append holds its records twice.
    records: Vec<Record>,
    /// Applied to the state even if the write fails: see
    /// [`Log::append_detached`].
    detached: bool,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

enum Command {
    Append(Append),
    /// Close the current segment so the next batch starts a new one; reply
    /// with the next sequence number (the checkpoint's `N`).
    Roll(SyncSender<Result<u64, StoreError>>),
    /// Fsync whatever is written.
    Sync(SyncSender<Result<(), StoreError>>),
    Shutdown,
}

/// The durable log. See the module and crate docs. `Log` is `Send + Sync`:
/// share it with an `Arc`. Dropping it finishes every queued append, fsyncs
/// and stops the commit thread.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    sender: SyncSender<Command>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// One checkpoint at a time.
    checkpoint_lock: Mutex<()>,
    queue_capacity: usize,
    checkpoint_slack_bytes: u64,
    fault: Option<Arc<FaultInjector>>,
    /// Held (locked) for the life of the `Log`: the data-directory lock.
    _lock_file: File,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Command::Append(_) => "Append",
            Command::Roll(_) => "Roll",
            Command::Sync(_) => "Sync",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl Log {
    /// Locks the data directory, recovers its state (see the crate docs) and
    /// starts the commit thread. Fails only if another `Log` holds the
    /// directory ([`StoreError::Locked`]) or the directory is unusable;
    /// damage is reported in the [`RecoveryReport`], never an error.
    ///
    /// The recovered state becomes the log's own state: read it with
    /// [`Log::with_state`] (an owner rebuilding itself at start does so
    /// before appending). It is not copied, so that a store of millions of
    /// messages is not held twice while the owner rebuilds from it.
    pub fn open(config: LogConfig) -> Result<(Log, RecoveryReport), StoreError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|error| StoreError::io("create", &dir, &error))?;
        let lock_path = dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|error| StoreError::io("open", &lock_path, &error))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::io("lock", &lock_path, &error))
            }
        }

        let opened = recovery::recover(&dir)?;
        let Recovered { state, report } = opened.recovered;
        let needs_checkpoint = !report.damaged.is_empty();
        let shared = Arc::new(Shared {
            needs_checkpoint: AtomicBool::new(needs_checkpoint),
            files: Mutex::new(Files {
                segments: opened.segments,
                snapshots: opened.snapshots,
            }),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            backlog_refusals: AtomicU64::new(0),
            commit_micros: Histogram::new(COMMIT_MICROS_BOUNDS),
            batch_records: Histogram::new(BATCH_RECORDS_BOUNDS),
            batch_bytes: AtomicU64::new(0),
            state: LogState(Mutex::new(state)),
        });
        let queue_capacity = config.queue_capacity.max(1);
        let (sender, receiver) = mpsc::sync_channel(queue_capacity);
        let writer = Writer {
            log_dir: dir.join("log"),
            segment: None,
            next_sequence: opened.next_sequence,
            segment_bytes: config.segment_bytes.max(1),
            sync: config.sync,
            detached_sync_delay: config.detached_sync_delay,
            max_batch_bytes: config.max_batch_bytes.clamp(1, MAX_BATCH_BODY),
            shared: Arc::clone(&shared),
            fault: config.fault_injector.clone(),
            last_sync: Instant::now(),
            buffer: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || writer.run(receiver))
            .map_err(|error| StoreError::io("spawn commit thread", &dir, &error))?;
        let log = Log {
            dir,
            sender,
            thread: Some(thread),
            shared,
            checkpoint_lock: Mutex::new(()),
            queue_capacity,
            checkpoint_slack_bytes: config.checkpoint_slack_bytes,
            fault: config.fault_injector,
            _lock_file: lock_file,
        };
        Ok((log, report))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `records` to be written as part of one batch (all or none of
    /// them are in it) and returns at once. Appends are written in the
    /// order of the calls that made them; serialise calls that must be
    /// ordered (for example under the lock that orders the state change).
    ///
    /// Once the batch is written the commit thread applies the records to
    /// the log's state ([`Log::with_state`]) and then completes the ticket
    /// with `Ok`; if the write fails, the records are not applied and the
    /// ticket fails. Use this for changes the owner makes only if they are
    /// durable (it refuses them otherwise).
    ///
    /// Never blocks. If the queue is full the ticket fails at once with
    /// [`StoreError::Backlog`]; if the records exceed the 4 GiB a batch can
    /// frame, with [`StoreError::TooLarge`].
    pub fn append(&self, records: Vec<Record>) -> Ticket {
        self.send_append(records, false)
    }

    /// Queues `records` like [`Log::append`], for changes the owner has made
    /// already and does not take back whatever the disk does (bookkeeping no
    /// client waits for: acknowledgements, session detach and end, wills,
    /// drops). Their place in the order is the same, but they are applied
    /// to the state even if their batch's write fails: the write failure
    /// sets [`Log::needs_checkpoint`], and the next checkpoint writes them
    /// with the rest of the state. Until then a crash loses them.
    ///
    /// Never blocks. Records that never reach the commit thread (queue full,
    /// too large, log closed) are lost from the state too: that is logged.
    pub fn append_detached(&self, records: Vec<Record>) {
        drop(self.send_append(records, true));
    }

    fn send_append(&self, records: Vec<Record>, detached: bool) -> Ticket {
        let (reply, receiver) = oneshot::channel();
        let ticket = Ticket { receiver };
        // An append refused here never reaches the commit thread: not
        // written, not applied. Nobody waits for a detached one: say so.
        let refuse = |reply: oneshot::Sender<_>, error: StoreError| {
            if detached {
                tracing::error!(%error, "detached append refused; the log and its state miss it");
            }
            let _ = reply.send(Err(error));
        };
        let mut body = BytesMut::with_capacity(records.len() * 64);
        for record in &records {
            frame_record(&mut body, record);
        }
        let count = match u32::try_from(records.len()) {
            Ok(count) if body.len() <= MAX_BATCH_BODY => count,
            _ => {
                refuse(
                    reply,
                    StoreError::TooLarge {
                        bytes: body.len(),
                        max: MAX_BATCH_BODY,
                    },
                );
                return ticket;
            }
        };
        let append = Append {
            body: body.freeze(),
            count,
            records,
            detached,
            reply,
        };
        match self.sender.try_send(Command::Append(append)) {
            Ok(()) => {}
            Err(TrySendError::Full(Command::Append(append))) => {
                self.shared.backlog_refusals.fetch_add(1, Ordering::Relaxed);
                refuse(
                    append.reply,
                    StoreError::Backlog {
                        capacity: self.queue_capacity,
                    },
                );
            }
            Err(TrySendError::Disconnected(Command::Append(append))) => {
                refuse(append.reply, StoreError::Closed);
            }
            Err(_) => {}
        }
        ticket
    }

    /// Fsyncs everything written so far (blocking). With
    /// [`SyncMode::Periodic`] this closes the loss window on demand, for
    /// example at shutdown.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (reply, receiver) = mpsc::sync_channel(1);
        self.sender
            .send(Command::Sync(reply))
            .map_err(|_| StoreError::Closed)?;
        receiver.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// True after a write or fsync failure (the disk's contents are in
    /// doubt) and after recovering around damage: write a checkpoint soon.
    pub fn needs_checkpoint(&self) -> bool {
        self.shared.needs_checkpoint.load(Ordering::Acquire)
    }

    /// The checkpoint policy: true when [`Log::needs_checkpoint`], or when
    /// the log since the newest snapshot exceeds twice the live data plus
    /// [`LogConfig::checkpoint_slack_bytes`]. Checkpointing at that point
    /// keeps the disk use within a small multiple of the live data (see the
    /// crate docs). `live_bytes_estimate` is the size of what a snapshot
    /// would hold ([`crate::State::live_bytes`] is one estimate).
    pub fn should_checkpoint(&self, live_bytes_estimate: u64) -> bool {
        self.needs_checkpoint()
            || self.disk_usage().log_bytes_since_snapshot
                > live_bytes_estimate
                    .saturating_mul(2)
                    .saturating_add(self.checkpoint_slack_bytes)
    }

    /// Bytes on disk in segments and snapshots.
    pub fn disk_usage(&self) -> DiskUsage {
        let files = self.shared.files();
        // Segments are rolled at every snapshot's base: those at or after
        // the newest base are exactly the log a recovery replays.
        let newest_snapshot = files.snapshots.keys().next_back().copied().unwrap_or(0);
        DiskUsage {
            segments: files.segments.len(),
            segment_bytes: files.segments.values().sum(),
            snapshots: files.snapshots.len(),
            snapshot_bytes: files.snapshots.values().sum(),
            log_bytes_since_snapshot: files
                .segments
                .range(newest_snapshot..)
                .map(|(_, size)| size)
                .sum(),
        }
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            failed_batches: self.shared.failed_batches.load(Ordering::Relaxed),
            backlog_refusals: self.shared.backlog_refusals.load(Ordering::Relaxed),
        }
    }

    /// Latency and size histograms of the batches written so far, for
    /// metrics: how long the disk takes per batch and how well group
    /// commit batches.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commit_micros: self.shared.commit_micros.snapshot(),
            batch_records: self.shared.batch_records.snapshot(),
            batch_bytes: self.shared.batch_bytes.load(Ordering::Relaxed),
        }
    }

    /// Step one of a checkpoint: the commit thread closes the current
    /// segment, so every record appended before this call has a sequence
    /// number below the returned [`Checkpoint::sequence`] `N`, and every later
    /// one lands in a segment starting at or after `N`. Blocks until the roll
    /// is done (call from `spawn_blocking` in async code); appends continue.
    ///
    /// Then capture the state (it must reflect at least every record
    /// appended before this call and written; reflecting later ones too is
    /// fine, records being idempotent) and pass it to [`Checkpoint::write`].
    /// Only one checkpoint runs at a time: a second caller waits here.
    ///
    /// [`Log::checkpoint_state`] does all of it with the log's own state;
    /// this two-step form is for tests and owners that capture a state of
    /// their own.
    pub fn begin_checkpoint(&self) -> Result<Checkpoint<'_>, StoreError> {
        let guard = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let was_needed = self.shared.needs_checkpoint.swap(false, Ordering::AcqRel);
        let restore = |error: StoreError| {
            if was_needed {
                self.shared.needs_checkpoint.store(true, Ordering::Release);
            }
            error
        };
        let (reply, receiver) = mpsc::sync_channel(1);
        self.sender
            .send(Command::Roll(reply))
            .map_err(|_| restore(StoreError::Closed))?;
        let sequence = receiver
            .recv()
            .unwrap_or(Err(StoreError::Closed))
            .map_err(restore)?;
        Ok(Checkpoint {
            log: self,
            sequence,
            was_needed,
            finished: false,
            _guard: guard,
        })
    }

    /// Both steps of a checkpoint: rolls, then calls `capture` for the
    /// state's records (for example `|| state.records().collect::<Vec<_>>()`
    /// under the owner's lock, or an iterator borrowing a locked state) and
    /// writes them as the snapshot, then reclaims. Blocking.
    pub fn checkpoint<I: IntoIterator<Item = Record>>(
        &self,
        capture: impl FnOnce() -> I,
    ) -> Result<CheckpointReport, StoreError> {
        let checkpoint = self.begin_checkpoint()?;
        checkpoint.write(capture())
    }

    /// Reads the log's state: what applying, in log order, every record
    /// written so far (plus detached ones whose write failed; see
    /// [`Log::append_detached`]) to the recovered state rebuilds. A record
    /// appears here before its ticket completes, never before it is
    /// written, and never if its write failed.
    ///
    /// Holds the state's lock while `read` runs, which stops the commit
    /// thread from completing the next batch: keep `read` short.
    pub fn with_state<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        read(&self.shared.state.lock())
    }

    /// A whole checkpoint of the log's own state: rolls
    /// ([`Log::begin_checkpoint`]), then, under the state's lock, drops the
    /// messages nothing refers to ([`State::drop_unreferenced`]) and captures
    /// the state's records, and writes them as the snapshot, then reclaims.
    /// Blocking: call from a blocking thread.
    ///
    /// Correct because the commit thread applies every batch before it takes
    /// the roll command: the captured state reflects every record before the
    /// checkpoint's `N` that was written, and perhaps whole batches after it
    /// (harmless, see the crate docs). Dropping unreferenced messages
    /// relies on the writer's rule that a `Message` is appended together
    /// with a record referring to it (see the crate docs): batches are
    /// applied whole, so a message unreferenced at the capture is one
    /// nothing will refer to.
    ///
    /// Collecting the records holds the state's lock for time proportional
    /// to the state; appends queue meanwhile.
    pub fn checkpoint_state(&self) -> Result<CheckpointReport, StoreError> {
        let checkpoint = self.begin_checkpoint()?;
        let records: Vec<Record> = {
            let mut state = self.shared.state.lock();
            state.drop_unreferenced();
            state.records().collect()
        };
        checkpoint.write(records)
    }

    /// Finishes every queued append, fsyncs and stops the commit thread.
    /// The same as dropping the `Log`, but reports a failed final fsync.
    pub fn close(self) -> Result<(), StoreError> {
        self.sync()
    }

    /// Deletes snapshots older than the two newest, and segments wholly
    /// before the older of those two (so the previous snapshot plus the log
    /// after it is still a complete fallback). Returns what it deleted.
    fn reclaim(&self, base: u64, snapshot_bytes: u64) -> (usize, usize, u64) {
        let (old_snapshots, old_segments) = {
            let mut files = self.shared.files();
            files.snapshots.insert(base, snapshot_bytes);
            let keep_from = files.snapshots.keys().rev().nth(1).copied();
            let Some(keep_from) = keep_from else {
                // Only one snapshot: keep every segment, so that a damaged
                // snapshot can fall back to replaying the whole log.
                return (0, 0, 0);
            };
            let old_snapshots: Vec<(u64, u64)> = files
                .snapshots
                .range(..keep_from)
                .map(|(sequence, size)| (*sequence, *size))
                .collect();
            let old_segments: Vec<(u64, u64)> = files
                .segments
                .range(..keep_from)
                .map(|(first, size)| (*first, *size))
                .collect();
            for (sequence, _) in &old_snapshots {
                files.snapshots.remove(sequence);
            }
            for (first, _) in &old_segments {
                files.segments.remove(first);
            }
            (old_snapshots, old_segments)
        };
        let mut reclaimed = 0;
        for (sequence, size) in &old_snapshots {
            let path = self.dir.join(format::snapshot_name(*sequence));
            match std::fs::remove_file(&path) {
                Ok(()) => reclaimed += size,
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "cannot delete old snapshot")
                }
            }
        }
        let log_dir = self.dir.join("log");
        for (first, size) in &old_segments {
            let path = log_dir.join(format::segment_name(*first));
            match std::fs::remove_file(&path) {
                Ok(()) => reclaimed += size,
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "cannot delete old segment")
                }
            }
        }
        // Not needed for correctness (a deleted file that reappears after a
        // crash is only replayed again, idempotently), so best effort.
        let _ = snapshot::sync_dir(&log_dir);
        let _ = snapshot::sync_dir(&self.dir);
        (old_segments.len(), old_snapshots.len(), reclaimed)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.sender.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the store's commit thread panicked");
            }
        }
    }
}

/// A checkpoint in progress (see [`Log::begin_checkpoint`]). Dropping it
/// without [`Checkpoint::write`] abandons it harmlessly.
#[derive(Debug)]
pub struct Checkpoint<'a> {
    log: &'a Log,
    sequence: u64,
    was_needed: bool,
    finished: bool,
    _guard: MutexGuard<'a, ()>,
}

impl Checkpoint<'_> {
    /// `N`: the snapshot must reflect every record below it.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Writes `records` (the owner's state, captured after
    /// [`Log::begin_checkpoint`] returned) as `snapshot-<N>.snap` (via a
    /// `.tmp` file, fsync, rename, directory fsync), then deletes what it
    /// makes unnecessary. Blocking.
    pub fn write(
        mut self,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<CheckpointReport, StoreError> {
        let log = self.log;
        let written = snapshot::write(&log.dir, self.sequence, records, log.fault.as_ref())?;
        self.finished = true;
        let (segments_deleted, snapshots_deleted, bytes_reclaimed) =
            log.reclaim(self.sequence, written.bytes);
        tracing::info!(
            sequence = self.sequence,
            records = written.records,
            bytes = written.bytes,
            segments_deleted,
            bytes_reclaimed,
            "checkpoint written"
        );
        Ok(CheckpointReport {
            sequence: self.sequence,
            snapshot_bytes: written.bytes,
            records: written.records,
            segments_deleted,
            snapshots_deleted,
            bytes_reclaimed,
        })
    }
}

impl Drop for Checkpoint<'_> {
    fn drop(&mut self) {
        if !self.finished && self.was_needed {
            self.log
                .shared
                .needs_checkpoint
                .store(true, Ordering::Release);
        }
    }
}

/// The segment the commit thread appends to.
struct Segment {
    file: File,
    path: PathBuf,
    first_sequence: u64,
    /// Bytes written (including a failed batch's partial bytes).
    written: u64,
    /// End of the last batch whose tickets were (or are being) completed.
    committed: u64,
    /// End of the data known to be fsynced.
    synced: u64,
}

/// The commit thread's state.
struct Writer {
    log_dir: PathBuf,
    segment: Option<Segment>,
    /// The sequence number the next record gets.
    next_sequence: u64,
    segment_bytes: u64,
    sync: SyncMode,
    max_batch_bytes: usize,
    shared: Arc<Shared>,
    fault: Option<Arc<FaultInjector>>,
    last_sync: Instant,
    detached_sync_delay: Duration,
    /// Reused for every batch: header plus bodies, written with one `write`.
    buffer: Vec<u8>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Command>) {
        let mut carried: Option<Command> = None;
        loop {
            let command = match carried.take() {
                Some(command) => command,
                None => match self.next_command(&receiver) {
                    Some(command) => command,
                    None => break,
                },
            };
            match command {
                Command::Append(first) => {
                    if first.detached {
                        // Nobody waits for a detached append: let the
                        // threads that are appending run on first, so that
                        // this batch takes more of their records (on a
                        // busy core, one wake-up and one write per batch
                        // rather than per append). Returns at once when no
                        // other thread wants this core.
                        std::thread::yield_now();
                    }
                    let mut size = first.body.len();
                    let mut appends = vec![first];
                    loop {
                        match receiver.try_recv() {
                            Ok(Command::Append(next))
                                if size.saturating_add(next.body.len()) <= self.max_batch_bytes =>
                            {
                                size += next.body.len();
                                appends.push(next);
                            }
                            Ok(other) => {
                                carried = Some(other);
                                break;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    self.commit(appends);
                }
                Command::Roll(reply) => {
                    let _ = reply.send(self.roll());
                }
                Command::Sync(reply) => {
                    let _ = reply.send(self.sync_now());
                }
                Command::Shutdown => break,
            }
            self.sync_if_due();
        }
        if let Err(error) = self.sync_now() {
            tracing::error!(%error, "final fsync of the log failed");
        }
    }

    /// Waits for the next command; with unsynced data, wakes up to fsync on
    /// time (see [`Writer::sync_interval`]). `None` when every sender is gone.
    fn next_command(&mut self, receiver: &Receiver<Command>) -> Option<Command> {
        loop {
            let deadline = if self.is_dirty() {
                Some(self.last_sync + self.sync_interval())
            } else {
                None
            };
            let Some(deadline) = deadline else {
                return receiver.recv().ok();
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(command) => return Some(command),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.sync_now();
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn is_dirty(&self) -> bool {
        self.segment
            .as_ref()
            .is_some_and(|segment| segment.committed > segment.synced)
    }

    /// How long written data may stay unsynced after the last fsync: the
    /// interval with [`SyncMode::Periodic`]; with [`SyncMode::Always`],
    /// [`LogConfig::detached_sync_delay`] for batches of detached appends only (every
    /// other batch is fsynced before its tickets complete).
    fn sync_interval(&self) -> Duration {
        match self.sync {
            SyncMode::Periodic(interval) => interval,
            SyncMode::Always => self.detached_sync_delay,
        }
    }

    fn sync_if_due(&mut self) {
        if self.is_dirty() && self.last_sync.elapsed() >= self.sync_interval() {
            let _ = self.sync_now();
        }
    }

    /// Writes `appends` as one batch and completes their tickets.
    fn commit(&mut self, appends: Vec<Append>) {
        if let Some(fault) = &self.fault {
            fault.pass_gate();
        }
        let total: u64 = appends.iter().map(|append| u64::from(append.count)).sum();
        let first = self.next_sequence;
        if total == 0 {
            for append in appends {
                let _ = append.reply.send(Ok(first.saturating_sub(1)));
            }
            return;
        }
        let (Ok(count), Some(after)) = (u32::try_from(total), first.checked_add(total)) else {
            // Not reachable with `max_batch_bytes` below 4 GiB (every record
            // takes at least 6 bytes), but a wrong batch must not be written.
            self.fail(
                appends,
                &StoreError::TooLarge {
                    bytes: 0,
                    max: MAX_BATCH_BODY,
                },
            );
            return;
        };

        if let Err(error) = self.prepare_segment(first) {
            self.shared.failed_batches.fetch_add(1, Ordering::Relaxed);
            self.fail(appends, &error);
            return;
        }
        self.buffer.clear();
        let bodies: Vec<&[u8]> = appends.iter().map(|append| &append.body[..]).collect();
        put_batch(&mut self.buffer, first, count, &bodies);

        // Nobody waits for detached appends: with `SyncMode::Always` a batch
        // of only those is written now and fsynced with the next batch that
        // has a waiter (one fsync covers the whole file), or after
        // `DETACHED_SYNC_DELAY`, so bookkeeping costs no fsync of its own.
        let wanted = appends.iter().any(|append| !append.detached);
        let started = Instant::now();
        if let Err(error) = self.write_and_sync(wanted) {
            // The failed batch's sequence numbers are not reused: its bytes
            // may have reached the disk if removing them failed.
            self.next_sequence = after;
            self.shared.failed_batches.fetch_add(1, Ordering::Relaxed);
            self.fail(appends, &error);
            return;
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.commit_micros.observe(micros);
        self.shared.batch_records.observe(total);
        self.shared
            .batch_bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.next_sequence = after;
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.records.fetch_add(total, Ordering::Relaxed);
        // Before the tickets: whoever sees `Ok` also sees the records in
        // the state (the broker looks up what it wrote, see `with_state`).
        self.apply(appends.iter());
        let mut sequence = first;
        for append in appends {
            sequence += u64::from(append.count);
            let _ = append.reply.send(Ok(sequence - 1));
        }
    }

    /// Applies the records of `appends`, in order, to the log's state, under
    /// one hold of its lock (a checkpoint captures whole batches).
    fn apply<'a>(&self, appends: impl Iterator<Item = &'a Append>) {
        let mut state = self.shared.state.lock();
        for append in appends {
            for record in &append.records {
                state.apply(record);
            }
        }
    }

    /// Fails every append of a batch that was not written. Detached appends
    /// are applied to the state first (see [`Log::append_detached`]); the
    /// others are not: their owner refuses what they describe.
    fn fail(&self, appends: Vec<Append>, error: &StoreError) {
        self.apply(appends.iter().filter(|append| append.detached));
        for append in appends {
            let _ = append.reply.send(Err(error.clone()));
        }
    }

    /// Closes a full segment and opens a new one named `first` if none is open.
    fn prepare_segment(&mut self, first: u64) -> Result<(), StoreError> {
        if self
            .segment
            .as_ref()
            .is_some_and(|segment| segment.written >= self.segment_bytes)
        {
            self.close_segment();
        }
        if self.segment.is_none() {
            self.segment = Some(self.open_segment(first)?);
        }
        Ok(())
    }

    fn open_segment(&mut self, first: u64) -> Result<Segment, StoreError> {
        let path = self.log_dir.join(format::segment_name(first));
        let failed = |error: io::Error| StoreError::io("create segment", &path, &error);
        if let Some(fault) = self.injected(FaultPoint::SegmentCreate) {
            return Err(failed(io::Error::from(fault.kind)));
        }
        let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            // Left empty by a failure: nothing in it to lose.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let file = OpenOptions::new().write(true).open(&path).map_err(failed)?;
                if file.metadata().map_err(failed)?.len() != 0 {
                    return Err(failed(error));
                }
                file
            }
            Err(error) => return Err(failed(error)),
        };
        // The new name must survive power loss before anything in the file
        // is acknowledged.
        snapshot::sync_dir(&self.log_dir)
            .map_err(|error| StoreError::io("sync directory", &self.log_dir, &error))?;
        if let Some(fault) = &self.fault {
            fault.record_synced(&path, 0);
        }
        self.shared.files().segments.insert(first, 0);
        Ok(Segment {
            file,
            path,
            first_sequence: first,
            written: 0,
            committed: 0,
            synced: 0,
        })
    }

    /// Writes the buffer with one `write` and, with [`SyncMode::Always`],
    /// fsyncs. On failure the segment is given up (see `give_up_segment`).
    fn write_and_sync(&mut self, sync_wanted: bool) -> Result<(), StoreError> {
        let fault = self.fault.clone();
        let injected = |point| fault.as_ref().and_then(|fault| fault.check(point));
        let always = self.sync == SyncMode::Always && sync_wanted;
        let Some(segment) = self.segment.as_mut() else {
            return Err(StoreError::Closed);
        };
        let result = 'io: {
            if let Some(fault) = injected(FaultPoint::SegmentWrite) {
                let partial = self
                    .buffer
                    .get(..fault.partial_bytes)
                    .unwrap_or(&self.buffer);
                if segment.file.write_all(partial).is_ok() {
                    segment.written += partial.len() as u64;
                }
                break 'io Err(StoreError::io(
                    "write",
                    &segment.path,
                    &io::Error::from(fault.kind),
                ));
            }
            if let Err(error) = segment.file.write_all(&self.buffer) {
                break 'io Err(StoreError::io("write", &segment.path, &error));
            }
            segment.written += self.buffer.len() as u64;
            if always {
                let synced = match injected(FaultPoint::SegmentSync) {
                    Some(fault) => Err(io::Error::from(fault.kind)),
                    None => segment.file.sync_data(),
                };
                if let Err(error) = synced {
                    break 'io Err(StoreError::io("fsync", &segment.path, &error));
                }
                segment.synced = segment.written;
                if let Some(fault) = &fault {
                    fault.record_synced(&segment.path, segment.synced);
                }
            }
            segment.committed = segment.written;
            Ok((segment.first_sequence, segment.committed))
        };
        match result {
            Ok((first_sequence, end)) => {
                if always {
                    self.last_sync = Instant::now();
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                self.shared.files().segments.insert(first_sequence, end);
                Ok(())
            }
            Err(error) => {
                self.give_up_segment(&error);
                Err(error)
            }
        }
    }

    /// Fsyncs the current segment if it has unsynced data. On failure the
    /// segment is given up: acknowledged data in it may be lost, so
    /// [`Log::needs_checkpoint`] is set.
    fn sync_now(&mut self) -> Result<(), StoreError> {
        if !self.is_dirty() {
            return Ok(());
        }
        let injected = self.injected(FaultPoint::SegmentSync);
        let Some(segment) = self.segment.as_mut() else {
            return Ok(());
        };
        let result = match injected {
            Some(fault) => Err(io::Error::from(fault.kind)),
            None => segment.file.sync_data(),
        };
        match result {
            Ok(()) => {
                segment.synced = segment.committed;
                if let Some(fault) = &self.fault {
                    fault.record_synced(&segment.path, segment.synced);
                }
                self.last_sync = Instant::now();
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                let error = StoreError::io("fsync", &segment.path, &error);
                self.give_up_segment(&error);
                Err(error)
            }
        }
    }

    /// After a failed write or fsync: cut the file back to the end of the
    /// last acknowledged batch (removing a partial or unsynced failed batch,
    /// best effort), close it, and mark the log as needing a checkpoint,
    /// because after a failed fsync the kernel may have dropped dirty pages
    /// of this file. The next batch opens a new segment.
    fn give_up_segment(&mut self, error: &StoreError) {
        self.shared.needs_checkpoint.store(true, Ordering::Release);
        let Some(segment) = self.segment.take() else {
            return;
        };
        tracing::error!(
            file = %segment.path.display(),
            %error,
            "log write failed; the affected appends fail and the next batch starts a new segment"
        );
        let cut = segment
            .file
            .set_len(segment.committed)
            .and_then(|()| segment.file.sync_all());
        match cut {
            Ok(()) => {
                if let Some(fault) = &self.fault {
                    fault.record_synced(&segment.path, segment.committed);
                }
            }
            Err(cut_error) => tracing::error!(
                file = %segment.path.display(),
                error = %cut_error,
                "cannot cut the failed batch off the segment; recovery will report it as damage"
            ),
        }
        self.shared
            .files()
            .segments
            .insert(segment.first_sequence, segment.committed);
    }

    /// Fsyncs (if needed) and closes the current segment, so a torn tail can
    /// only ever be in the newest one.
    fn close_segment(&mut self) {
        if let Err(error) = self.sync_now() {
            tracing::error!(%error, "fsync before closing a segment failed");
        }
        self.segment = None;
    }

    /// Closes the current segment for a checkpoint; the next batch starts a
    /// new segment at the returned sequence.
    fn roll(&mut self) -> Result<u64, StoreError> {
        self.close_segment();
        Ok(self.next_sequence)
    }

    /// The fault to inject at `point`, if a test set one.
    fn injected(&self, point: FaultPoint) -> Option<crate::fault::Fault> {
        self.fault.as_ref().and_then(|fault| fault.check(point))
    }
}
