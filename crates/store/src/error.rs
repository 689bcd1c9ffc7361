//! Errors of the store.
//!
//! [`StoreError`] is `Clone` because one failed batch fails every ticket in it
//! with the same error; an `io::Error` is therefore carried as its kind and
//! message. [`RecordError`] says why bytes are not a record; it never carries
//! the bytes themselves.

use std::io;
use std::path::{Path, PathBuf};

/// Why an append, a checkpoint or opening the log failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another `Log` (in this or another process) holds the data directory.
    #[error("the data directory is locked by another process or Log (lock file {path})")]
    Locked { path: PathBuf },
    /// The file system has no space left (ENOSPC) or the quota is exhausted.
    /// The affected appends failed; later ones succeed once space returns.
    #[error("disk full during {operation} on {path}")]
    DiskFull {
        operation: &'static str,
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("I/O error during {operation} on {path}: {message}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        kind: io::ErrorKind,
        message: String,
    },
    /// The commit queue is full: the commit thread is that far behind (the
    /// disk is slower than the incoming load). The append was not queued;
    /// the caller refuses the message, as with a full disk.
    #[error("the commit queue is full ({capacity} appends waiting)")]
    Backlog { capacity: usize },
    /// One append's encoded records exceed what one batch can frame.
    #[error("an append of {bytes} bytes exceeds the batch limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// A record could not be encoded (for example a PUBLISH the codec refuses).
    #[error("record cannot be encoded: {0}")]
    Record(#[from] RecordError),
    /// The commit thread has stopped (the `Log` is closing, or the thread
    /// panicked, which is a bug).
    #[error("the log is closed")]
    Closed,
}

impl StoreError {
    /// Maps an `io::Error` to [`StoreError::DiskFull`] (ENOSPC, EDQUOT) or
    /// [`StoreError::Io`].
    pub(crate) fn io(operation: &'static str, path: &Path, error: &io::Error) -> StoreError {
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::DiskFull {
                operation,
                path: path.to_path_buf(),
            },
            kind => StoreError::Io {
                operation,
                path: path.to_path_buf(),
                kind,
                message: error.to_string(),
            },
        }
    }

    /// True for [`StoreError::DiskFull`].
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}

/// Why bytes are not a valid [`Record`](crate::Record), or a record's
/// PUBLISH is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record is empty")]
    Empty,
    #[error(
        "record encoding version {version} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion { version: u8, supported: u8 },
    #[error("unknown record tag {tag}")]
    UnknownTag { tag: u8 },
    #[error("record ends inside its {field} field")]
    UnexpectedEnd { field: &'static str },
    #[error("record has {count} bytes after its last field")]
    TrailingBytes { count: usize },
    #[error("record field {field} is out of range")]
    OutOfRange { field: &'static str },
    #[error("record field {field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("stored PUBLISH cannot be encoded: {0}")]
    Encode(#[from] switchboard_codec::EncodeError),
    #[error("stored PUBLISH cannot be decoded: {0}")]
    Decode(#[from] switchboard_codec::DecodeError),
    #[error("stored bytes are not one whole PUBLISH packet")]
    NotAPublish,
}
