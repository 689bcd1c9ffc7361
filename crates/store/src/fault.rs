//! A test hook for failures the disk rarely produces on demand: a full disk,
//! failing writes and fsyncs, and power loss.
//!
//! The commit thread and the snapshot writer consult the injector (if
//! [`LogConfig::fault_injector`](crate::LogConfig::fault_injector) is set)
//! before each file operation, and record what has been made durable
//! (fsynced) so that a test can reproduce what a power cut leaves behind with
//! [`FaultInjector::power_loss_copy`]. Without an injector the cost is one
//! `Option` check per operation.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The file operations a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Creating a new segment file (and syncing its directory entry).
    SegmentCreate,
    /// Writing a batch to a segment.
    SegmentWrite,
    /// `sync_data` of a segment.
    SegmentSync,
    /// Creating or writing a snapshot file.
    SnapshotWrite,
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The error the operation returns; `StorageFull` is ENOSPC.
    pub kind: io::ErrorKind,
    /// For [`FaultPoint::SegmentWrite`]: how many bytes of the batch really
    /// reach the file before the error (a short write), so that recovery of
    /// the partial bytes is exercised.
    pub partial_bytes: usize,
}

impl Fault {
    pub fn new(kind: io::ErrorKind) -> Fault {
        Fault {
            kind,
            partial_bytes: 0,
        }
    }

    /// A short write of `partial_bytes` bytes, then the error.
    pub fn partial(kind: io::ErrorKind, partial_bytes: usize) -> Fault {
        Fault {
            kind,
            partial_bytes,
        }
    }
}

/// Injects faults and tracks durable lengths. Share it with an `Arc`
/// between the test and [`LogConfig`](crate::LogConfig).
#[derive(Debug, Default)]
pub struct FaultInjector {
    inner: Mutex<Inner>,
    /// Signals changes of the write gate.
    gate: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    /// Active faults; each stays until cleared.
    faults: HashMap<FaultPoint, Fault>,
    /// How many times each point has failed, for assertions.
    failures: HashMap<FaultPoint, u64>,
    /// The fsynced length of each segment file written through the log.
    synced: BTreeMap<PathBuf, u64>,
    /// While true the commit thread stops before writing its next batch.
    held: bool,
    /// True while the commit thread is stopped at the gate.
    waiting: bool,
}

impl FaultInjector {
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic in a test thread must not hide the injector from others.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every operation at `point` fail with `fault` until cleared.
    pub fn set(&self, point: FaultPoint, fault: Fault) {
        self.inner().faults.insert(point, fault);
    }

    /// Stops failing at `point`.
    pub fn clear(&self, point: FaultPoint) {
        self.inner().faults.remove(&point);
    }

    /// Stops failing anywhere.
    pub fn clear_all(&self) {
        self.inner().faults.clear();
    }

    /// How many operations at `point` have failed.
    pub fn failures(&self, point: FaultPoint) -> u64 {
        self.inner().failures.get(&point).copied().unwrap_or(0)
    }

    /// Stops the commit thread before it writes its next batch, until
    /// [`FaultInjector::release_writes`]: appends made meanwhile queue up and
    /// form the following batch, which makes batching deterministic in tests.
    pub fn hold_writes(&self) {
        self.inner().held = true;
    }

    /// Lets the commit thread go on.
    pub fn release_writes(&self) {
        self.inner().held = false;
        self.gate.notify_all();
    }

    /// Blocks until the commit thread is stopped at the gate (after
    /// [`FaultInjector::hold_writes`] and an append).
    pub fn wait_until_held(&self) {
        let mut inner = self.inner();
        while !inner.waiting {
            inner = self
                .gate
                .wait(inner)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Called by the commit thread before each batch: waits while held.
    pub(crate) fn pass_gate(&self) {
        let mut inner = self.inner();
        if !inner.held {
            return;
        }
        inner.waiting = true;
        self.gate.notify_all();
        while inner.held {
            inner = self
                .gate
                .wait(inner)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        inner.waiting = false;
    }

    /// The fault to inject at `point` now, if any (counted as a failure).
    pub(crate) fn check(&self, point: FaultPoint) -> Option<Fault> {
        let mut inner = self.inner();
        let fault = inner.faults.get(&point).copied()?;
        *inner.failures.entry(point).or_insert(0) += 1;
        Some(fault)
    }

    /// Records that `path` is durable up to `length` bytes.
    pub(crate) fn record_synced(&self, path: &Path, length: u64) {
        self.inner().synced.insert(path.to_path_buf(), length);
    }

    /// The fsynced length of every segment file the log has written.
    pub fn synced_lengths(&self) -> BTreeMap<PathBuf, u64> {
        self.inner().synced.clone()
    }

    /// Copies the data directory `from` to `to` as a power cut would leave
    /// it: every tracked segment file keeps only its fsynced bytes; the
    /// newest segment (where a write may have been in flight) and every file
    /// that had unsynced bytes get `garbage_bytes` of junk after them (a
    /// disk may persist anything of an unfinished write). A tracked file that
    /// no longer exists is skipped. Untracked files (snapshots, which are
    /// complete before they are renamed into place) are copied as they are.
    /// Take the copy while no append is in flight.
    pub fn power_loss_copy(&self, from: &Path, to: &Path, garbage_bytes: usize) -> io::Result<()> {
        copy_tree(from, to)?;
        let synced = self.synced_lengths();
        let newest = synced.keys().filter(|path| path.exists()).max().cloned();
        for (path, length) in synced {
            let Ok(relative) = path.strip_prefix(from) else {
                continue;
            };
            let target = to.join(relative);
            let Ok(metadata) = fs::metadata(&target) else {
                continue;
            };
            if metadata.len() <= length && newest.as_ref() != Some(&path) {
                continue;
            }
            let file = fs::OpenOptions::new().write(true).open(&target)?;
            file.set_len(length)?;
            let mut file = fs::OpenOptions::new().append(true).open(&target)?;
            file.write_all(&garbage(garbage_bytes, length))?;
        }
        Ok(())
    }
}

/// Deterministic junk (a linear congruential sequence seeded by `seed`).
fn garbage(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// Copies a directory tree (files and folders only); a lock file is copied
/// as a plain file, so the copy is not locked.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies a directory tree: the "kill -9" copy of a data directory (what a
/// process crash leaves is exactly what was written, synced or not).
pub fn copy_data_dir(from: &Path, to: &Path) -> io::Result<()> {
    copy_tree(from, to)
}
