//! Rebuilding the state at open: newest valid snapshot, then every batch
//! after it. Corruption never stops the open; see the crate docs for the
//! rules and [`RecoveryReport`] for what is reported.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::format::{self, find_next_batch, parse_batch, Parsed, BATCH_HEADER_LEN};
use crate::snapshot;
use crate::state::{Replay, State};

/// What recovery found and rebuilt. [`Log::open`](crate::Log::open) keeps
/// the state as the log's own and returns the report.
#[derive(Debug)]
pub struct Recovered {
    /// The state as of the last batch found on disk.
    pub state: State,
    pub report: RecoveryReport,
}

/// How recovery went. Anything in `damaged` was also logged at error level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Base sequence of the snapshot the state was loaded from, if any.
    pub snapshot: Option<u64>,
    /// Records read from that snapshot.
    pub snapshot_records: u64,
    /// Snapshots that failed verification (also listed in `damaged`).
    pub snapshots_rejected: usize,
    /// Segment files read.
    pub segments_read: usize,
    /// Batches (and records in them) applied after the snapshot.
    pub batches_replayed: u64,
    pub records_replayed: u64,
    /// The incomplete last batch that was cut off the newest segment: the
    /// normal result of a crash during a write, never acknowledged.
    pub torn_tail: Option<TornTail>,
    /// Damage set aside: everything else was recovered around it.
    pub damaged: Vec<Damage>,
    /// The highest sequence number found (0 if none).
    pub last_sequence: u64,
    /// Messages that nothing referred to at the end, dropped.
    pub unreferenced_messages_dropped: usize,
}

impl RecoveryReport {
    /// Bytes set aside as damaged.
    pub fn damaged_bytes(&self) -> u64 {
        self.damaged.iter().map(|damage| damage.length).sum()
    }

    /// True when nothing but possibly a torn tail was found wrong.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// A torn tail that was truncated away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// The new length of the file: where the incomplete batch started.
    pub offset: u64,
    /// Bytes removed.
    pub length: u64,
}

/// A region of a file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: PathBuf,
    /// Where the damage starts in `file`.
    pub offset: u64,
    /// How many bytes were skipped (for a snapshot: from `offset` to its end).
    pub length: u64,
    pub reason: String,
    /// Where a copy of the damaged bytes was put (`damaged/<file>-<offset>.bin`,
    /// the offset being where the copied bytes start in `file`); `None` if
    /// copying failed.
    pub copied_to: Option<PathBuf>,
}

/// Everything `Log::open` needs besides the report.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) recovered: Recovered,
    pub(crate) next_sequence: u64,
    /// Segment sizes by first sequence, after recovery.
    pub(crate) segments: BTreeMap<u64, u64>,
    /// Snapshot sizes by base sequence, after recovery.
    pub(crate) snapshots: BTreeMap<u64, u64>,
}

/// Recovers the data directory `dir` (already locked by the caller).
pub(crate) fn recover(dir: &Path) -> Result<Opened, StoreError> {
    let log_dir = dir.join("log");
    fs::create_dir_all(&log_dir).map_err(|error| StoreError::io("create", &log_dir, &error))?;
    let mut report = RecoveryReport::default();

    // Unfinished snapshot writes.
    let entries = fs::read_dir(dir).map_err(|error| StoreError::io("list", dir, &error))?;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(format::is_snapshot_temp_name)
        {
            let _ = fs::remove_file(entry.path());
        }
    }

    // The newest snapshot that verifies.
    let mut state = State::new();
    let mut base = 0;
    let mut snapshots = BTreeMap::new();
    let listed = snapshot::list(dir).map_err(|error| StoreError::io("list", dir, &error))?;
    for (sequence, path) in listed.iter().rev() {
        if report.snapshot.is_some() {
            snapshots.insert(*sequence, file_len(path));
            continue;
        }
        match snapshot::read(path, *sequence) {
            Ok(loaded) => {
                tracing::info!(snapshot = %path.display(), records = loaded.records, "loaded snapshot");
                state = loaded.state;
                base = *sequence;
                report.snapshot = Some(*sequence);
                report.snapshot_records = loaded.records;
                snapshots.insert(*sequence, file_len(path));
            }
            Err(defect) => {
                let length = file_len(path);
                let copied_to = set_aside(dir, path, 0, length);
                tracing::error!(
                    file = %path.display(),
                    offset = defect.offset,
                    reason = %defect.reason,
                    "snapshot is damaged; falling back to the previous one (or the whole log)"
                );
                // Moved aside so that it is not tried again and reclamation
                // counts only usable snapshots; kept if the copy failed.
                if copied_to.is_some() {
                    let _ = fs::remove_file(path);
                }
                report.snapshots_rejected += 1;
                report.damaged.push(Damage {
                    file: path.clone(),
                    offset: defect.offset,
                    length: length.saturating_sub(defect.offset),
                    reason: format!("snapshot: {}", defect.reason),
                    copied_to,
                });
            }
        }
    }

    // Segments, oldest first; empty ones (created just before a crash) go.
    let mut segments: Vec<(u64, PathBuf, u64)> = Vec::new();
    let entries =
        fs::read_dir(&log_dir).map_err(|error| StoreError::io("list", &log_dir, &error))?;
    for entry in entries.flatten() {
        let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(format::parse_segment_name)
        else {
            continue;
        };
        let path = entry.path();
        let length = file_len(&path);
        if length == 0 {
            let _ = fs::remove_file(&path);
            continue;
        }
        segments.push((first, path, length));
    }
    segments.sort();
    // Segments wholly before the snapshot: the one holding `base` is the
    // last whose first sequence is at most `base`.
    let start = segments
        .iter()
        .rposition(|(first, _, _)| *first <= base)
        .unwrap_or(0);
    let last_index = segments.len().saturating_sub(1);
    let mut next_sequence = base.max(1);
    let mut replay = Replay::new(&mut state);
    for (index, (first, path, length)) in segments.iter().enumerate() {
        next_sequence = next_sequence.max(first.saturating_add(1));
        if index < start {
            continue;
        }
        report.segments_read += 1;
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(file = %path.display(), offset = 0, %error, "segment is unreadable; skipped");
                report.damaged.push(Damage {
                    file: path.clone(),
                    offset: 0,
                    length: *length,
                    reason: format!("unreadable: {error}"),
                    copied_to: None,
                });
                continue;
            }
        };
        replay_segment(
            dir,
            path,
            &bytes,
            index == last_index,
            base,
            &mut replay,
            &mut report,
        );
    }
    report.unreferenced_messages_dropped = replay.finish();
    next_sequence = next_sequence.max(report.last_sequence.saturating_add(1));

    let mut sizes = BTreeMap::new();
    for (first, path, _) in &segments {
        let length = file_len(path);
        if length > 0 {
            sizes.insert(*first, length);
        }
    }
    if !report.damaged.is_empty() {
        tracing::error!(
            damaged = report.damaged.len(),
            bytes = report.damaged_bytes(),
            "recovered around damage; copies are in {}",
            dir.join("damaged").display()
        );
    }
    Ok(Opened {
        recovered: Recovered { state, report },
        next_sequence,
        segments: sizes,
        snapshots,
    })
}

/// Applies every valid batch of one segment at or after `base`, setting
/// damage aside and cutting a torn tail off the newest segment.
fn replay_segment(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    is_newest: bool,
    base: u64,
    replay: &mut Replay<'_>,
    report: &mut RecoveryReport,
) {
    let mut position = 0usize;
    while let Some(rest) = bytes.get(position..).filter(|rest| !rest.is_empty()) {
        match parse_batch(rest) {
            Parsed::Batch(batch) => {
                match batch.records() {
                    Ok(records) => {
                        if batch.last_sequence() >= base && batch.count > 0 {
                            if batch.first_sequence <= report.last_sequence {
                                tracing::warn!(
                                    file = %path.display(),
                                    offset = position,
                                    sequence = batch.first_sequence,
                                    after = report.last_sequence,
                                    "batch sequence does not increase; applied in file order"
                                );
                            }
                            for (sequence, record) in (batch.first_sequence..).zip(&records) {
                                if sequence >= base {
                                    replay.apply(record);
                                    report.records_replayed += 1;
                                }
                            }
                            report.batches_replayed += 1;
                        }
                        report.last_sequence = report.last_sequence.max(batch.last_sequence());
                    }
                    Err(error) => damaged(
                        dir,
                        path,
                        position,
                        batch.total_len,
                        format!("batch checksum is valid but its records do not decode: {error}"),
                        report,
                    ),
                }
                position += batch.total_len;
            }
            Parsed::Invalid => match resume_point(bytes, position) {
                Some(next) => {
                    damaged(
                        dir,
                        path,
                        position,
                        next - position,
                        "invalid batch (bad header, length or checksum) followed by valid data"
                            .into(),
                        report,
                    );
                    position = next;
                }
                None if is_newest => {
                    let length = (bytes.len() - position) as u64;
                    tracing::info!(
                        file = %path.display(),
                        offset = position,
                        bytes = length,
                        "dropping the torn tail of the log (an unacknowledged write cut short)"
                    );
                    if let Err(error) = truncate(path, position as u64) {
                        tracing::warn!(file = %path.display(), %error, "cannot truncate the torn tail; it will be skipped again next time");
                    }
                    report.torn_tail = Some(TornTail {
                        file: path.to_path_buf(),
                        offset: position as u64,
                        length,
                    });
                    return;
                }
                None => {
                    damaged(
                        dir,
                        path,
                        position,
                        bytes.len() - position,
                        "invalid bytes at the end of a segment that is not the newest".into(),
                        report,
                    );
                    return;
                }
            },
        }
    }
}

/// Where to resume after an invalid batch at `position`: the end its header
/// claims if a valid batch starts there (the usual case, a damaged body), or
/// else the next valid batch found by scanning. Trying the claimed end first
/// keeps a PUBLISH payload that happens to contain a batch from being taken
/// for one.
fn resume_point(bytes: &[u8], position: usize) -> Option<usize> {
    let rest = bytes.get(position..)?;
    if let Some(body_len) = format::batch_body_len(rest).filter(|_| {
        format::starts_with(rest, &format::BATCH_MAGIC) && rest.len() >= BATCH_HEADER_LEN
    }) {
        let claimed = position
            .saturating_add(BATCH_HEADER_LEN)
            .saturating_add(body_len);
        if let Some(Parsed::Batch(_)) = bytes
            .get(claimed..)
            .filter(|tail| !tail.is_empty())
            .map(parse_batch)
        {
            return Some(claimed);
        }
    }
    find_next_batch(bytes, position + 1)
}

/// Reports a damaged region: copied aside, logged at error level, listed.
fn damaged(
    dir: &Path,
    path: &Path,
    offset: usize,
    length: usize,
    reason: String,
    report: &mut RecoveryReport,
) {
    let copied_to = set_aside(dir, path, offset as u64, length as u64);
    tracing::error!(
        file = %path.display(),
        offset,
        length,
        reason = %reason,
        "damaged log data set aside; recovery continues after it"
    );
    report.damaged.push(Damage {
        file: path.to_path_buf(),
        offset: offset as u64,
        length: length as u64,
        reason,
        copied_to,
    });
}

/// Copies `length` bytes at `offset` of `path` to
/// `dir/damaged/<file>-<offset>.bin`. Returns the copy's path, or `None`
/// (logged) if it could not be made.
fn set_aside(dir: &Path, path: &Path, offset: u64, length: u64) -> Option<PathBuf> {
    let damaged_dir = dir.join("damaged");
    let target = damaged_dir.join(format!("{}-{offset}.bin", format::file_name(path)));
    let copy = || -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        fs::create_dir_all(&damaged_dir)?;
        let mut source = fs::File::open(path)?;
        source.seek(SeekFrom::Start(offset))?;
        let mut target_file = fs::File::create(&target)?;
        io::copy(&mut source.take(length), &mut target_file)?;
        target_file.sync_all()
    };
    match copy() {
        Ok(()) => Some(target),
        Err(error) => {
            tracing::error!(file = %path.display(), offset, %error, "cannot copy damaged bytes aside");
            None
        }
    }
}

fn truncate(path: &Path, length: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(length)?;
    file.sync_all()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0)
}
