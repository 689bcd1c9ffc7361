//! Writing and reading snapshot files (layout in the crate docs).
//!
//! A snapshot is written to `snapshot-<N>.tmp`, fsynced, renamed to
//! `snapshot-<N>.snap` and the directory fsynced: a `.snap` file is therefore
//! complete or was never there. It is still verified in full when read
//! (header, every batch checksum, footer counts, nothing after the footer),
//! because disks rot.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;

use crate::error::StoreError;
use crate::fault::{FaultInjector, FaultPoint};
use crate::format::{
    self, frame_record, parse_batch, parse_snapshot_footer, parse_snapshot_header, put_batch,
    Parsed, BATCH_HEADER_LEN, BATCH_MAGIC, SNAPSHOT_FOOTER_LEN, SNAPSHOT_HEADER_LEN,
};
use crate::record::Record;
use crate::state::State;

/// Records are grouped into batches of about this size inside a snapshot:
/// large enough that framing costs nothing, small enough that reading one
/// needs little memory.
const SNAPSHOT_BATCH_BYTES: usize = 1 << 20;

/// A snapshot that was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) records: u64,
}

/// Writes `records` as the snapshot at `base_sequence` into `dir` and makes
/// it durable. On error the temporary file is removed (best effort).
pub(crate) fn write(
    dir: &Path,
    base_sequence: u64,
    records: impl IntoIterator<Item = Record>,
    fault: Option<&Arc<FaultInjector>>,
) -> Result<Written, StoreError> {
    let temp = dir.join(format::snapshot_temp_name(base_sequence));
    let target = dir.join(format::snapshot_name(base_sequence));
    let result = write_temp(&temp, base_sequence, records, fault).and_then(|written| {
        fs::rename(&temp, &target)
            .map_err(|error| StoreError::io("rename snapshot", &temp, &error))?;
        sync_dir(dir).map_err(|error| StoreError::io("sync directory", dir, &error))?;
        Ok(written)
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_temp(
    temp: &Path,
    base_sequence: u64,
    records: impl IntoIterator<Item = Record>,
    fault: Option<&Arc<FaultInjector>>,
) -> Result<Written, StoreError> {
    let failed = |error: io::Error| StoreError::io("write snapshot", temp, &error);
    let injected = || -> io::Result<()> {
        match fault.and_then(|fault| fault.check(FaultPoint::SnapshotWrite)) {
            Some(fault) => Err(io::Error::from(fault.kind)),
            None => Ok(()),
        }
    };
    injected().map_err(failed)?;
    let file = File::create(temp).map_err(failed)?;
    let mut out = BufWriter::with_capacity(SNAPSHOT_BATCH_BYTES, file);
    out.write_all(&format::snapshot_header(base_sequence))
        .map_err(failed)?;
    let mut bytes = SNAPSHOT_HEADER_LEN as u64;
    let mut body = BytesMut::with_capacity(SNAPSHOT_BATCH_BYTES);
    let mut frame = Vec::with_capacity(SNAPSHOT_BATCH_BYTES + BATCH_HEADER_LEN);
    let mut in_batch: u32 = 0;
    let mut total_records: u64 = 0;
    let mut batches: u64 = 0;
    let mut flush = |body: &mut BytesMut, in_batch: &mut u32, out: &mut BufWriter<File>| {
        frame.clear();
        put_batch(&mut frame, base_sequence, *in_batch, &[&body[..]]);
        injected()?;
        out.write_all(&frame)?;
        bytes += frame.len() as u64;
        batches += 1;
        body.clear();
        *in_batch = 0;
        io::Result::Ok(())
    };
    for record in records {
        frame_record(&mut body, &record);
        in_batch += 1;
        total_records += 1;
        if body.len() >= SNAPSHOT_BATCH_BYTES || in_batch == u32::MAX {
            flush(&mut body, &mut in_batch, &mut out).map_err(failed)?;
        }
    }
    if in_batch > 0 {
        flush(&mut body, &mut in_batch, &mut out).map_err(failed)?;
    }
    out.write_all(&format::snapshot_footer(total_records, batches))
        .map_err(failed)?;
    bytes += SNAPSHOT_FOOTER_LEN as u64;
    let file = out
        .into_inner()
        .map_err(|error| failed(error.into_error()))?;
    file.sync_all().map_err(failed)?;
    Ok(Written {
        bytes,
        records: total_records,
    })
}

/// Why a snapshot file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Defect {
    /// Where in the file the problem was found.
    pub(crate) offset: u64,
    pub(crate) reason: String,
}

/// A snapshot read in full.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) state: State,
    pub(crate) records: u64,
}

/// Reads and verifies the snapshot at `path`, whose name says
/// `base_sequence`, applying its records to a fresh state.
pub(crate) fn read(path: &Path, base_sequence: u64) -> Result<Loaded, Defect> {
    let defect = |offset: u64, reason: String| Defect { offset, reason };
    let file = File::open(path).map_err(|error| defect(0, format!("cannot open: {error}")))?;
    let length = file
        .metadata()
        .map_err(|error| defect(0, format!("cannot stat: {error}")))?
        .len();
    let mut input = BufReader::with_capacity(SNAPSHOT_BATCH_BYTES, file);
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    input
        .read_exact(&mut header)
        .map_err(|error| defect(0, format!("header unreadable: {error}")))?;
    match parse_snapshot_header(&header) {
        Some(base) if base == base_sequence => {}
        Some(base) => {
            return Err(defect(
                0,
                format!("header says base sequence {base}, the name says {base_sequence}"),
            ))
        }
        None => return Err(defect(0, "bad header or header checksum".into())),
    }
    let mut offset = SNAPSHOT_HEADER_LEN as u64;
    let mut state = State::new();
    let mut records: u64 = 0;
    let mut batches: u64 = 0;
    let mut frame = Vec::new();
    loop {
        let left = length.saturating_sub(offset);
        if left == SNAPSHOT_FOOTER_LEN as u64 {
            let mut footer = [0u8; SNAPSHOT_FOOTER_LEN];
            input
                .read_exact(&mut footer)
                .map_err(|error| defect(offset, format!("footer unreadable: {error}")))?;
            return match parse_snapshot_footer(&footer) {
                Some(counts) if counts == (records, batches) => Ok(Loaded { state, records }),
                Some((expected_records, expected_batches)) => Err(defect(
                    offset,
                    format!(
                        "footer counts {expected_records} records in {expected_batches} batches, \
                         the file holds {records} in {batches}"
                    ),
                )),
                None => Err(defect(offset, "bad footer".into())),
            };
        }
        if left < (BATCH_HEADER_LEN + SNAPSHOT_FOOTER_LEN) as u64 {
            return Err(defect(offset, "ends without a footer".into()));
        }
        frame.clear();
        frame.resize(BATCH_HEADER_LEN, 0);
        input
            .read_exact(&mut frame)
            .map_err(|error| defect(offset, format!("unreadable: {error}")))?;
        if !format::starts_with(&frame, &BATCH_MAGIC) {
            return Err(defect(offset, "no batch where one should start".into()));
        }
        let body_len = format::batch_body_len(&frame).unwrap_or(usize::MAX) as u64;
        if body_len > left - (BATCH_HEADER_LEN + SNAPSHOT_FOOTER_LEN) as u64 {
            return Err(defect(offset, "batch longer than the file".into()));
        }
        // Bounded by the file's length, checked just above.
        frame.resize(BATCH_HEADER_LEN + body_len as usize, 0);
        input
            .read_exact(frame.get_mut(BATCH_HEADER_LEN..).unwrap_or_default())
            .map_err(|error| defect(offset, format!("unreadable: {error}")))?;
        let Parsed::Batch(batch) = parse_batch(&frame) else {
            return Err(defect(offset, "bad batch header or checksum".into()));
        };
        let decoded = batch
            .records()
            .map_err(|error| defect(offset, format!("records do not decode: {error}")))?;
        for record in &decoded {
            state.apply(record);
        }
        records += decoded.len() as u64;
        batches += 1;
        offset += batch.total_len as u64;
    }
}

/// Fsyncs a directory, making created, renamed and removed entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The snapshot files in `dir` by base sequence.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(base) = name.to_str().and_then(format::parse_snapshot_name) {
            snapshots.push((base, entry.path()));
        }
    }
    snapshots.sort();
    Ok(snapshots)
}
