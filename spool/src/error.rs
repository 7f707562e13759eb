//! The one error type of the spool. Every variant carries enough context to act on without a
//! debugger: which file, which operation, and (for a corrupt index) what the operator should do.

use std::fmt;
use std::path::PathBuf;

use crate::FileState;

/// Errors returned by [`crate::Spool`].
#[non_exhaustive]
#[derive(Debug)]
pub enum SpoolError {
    /// A filesystem operation failed; `context` names the operation and the path.
    Io { context: String, source: std::io::Error },
    /// The spool's filesystem is full (`ENOSPC`) or a disk quota was hit (`EDQUOT`): nothing
    /// was registered or changed by the failed call. Stop fetching (backpressure), let uploads
    /// and `remove_committed` free space, and retry; the spool keeps working once space is
    /// free. Match it with [`SpoolError::is_full`], which also recognizes such an `Io` error.
    Full { context: String, source: std::io::Error },
    /// The redb index returned an error during an operation (not at open).
    Index { context: String, detail: String },
    /// `index.redb` could not be opened because its contents are damaged.
    CorruptIndex { path: PathBuf, detail: String },
    /// Another `Spool` (in this or another process) has the directory open.
    Locked { path: PathBuf },
    /// A change was asked of a spool opened with `Spool::open_read_only`.
    ReadOnly { path: PathBuf },
    /// A spool file failed verification; it has been moved to `quarantine/` unless it was
    /// already committed.
    Corrupt { id: u64, reason: String },
    /// No record with this id.
    NotFound { id: u64 },
    /// The operation is not allowed from the file's current state (e.g. uploading a committed
    /// file, or uploading twice to different locations).
    WrongState { id: u64, state: FileState, operation: &'static str },
    /// No pending commit with this id.
    CommitNotFound { commit_id: String },
    /// `begin_commit` was refused: it contradicts the index (unknown/unuploaded file, file of
    /// another table, file already in another pending commit, or the same commit id with
    /// different contents).
    CommitConflict { commit_id: String, detail: String },
}

/// `Result` with [`SpoolError`] as the default error.
pub type Result<T, E = SpoolError> = std::result::Result<T, E>;

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Io { context, source } => write!(f, "spool I/O error: {context}: {source}"),
            SpoolError::Full { context, source } => write!(
                f,
                "spool disk full: {context}: {source} (nothing was spooled by this call; \
                 fetching must pause until uploads and removals free space)"
            ),
            SpoolError::Index { context, detail } => {
                write!(f, "spool index error: {context}: {detail}")
            }
            SpoolError::CorruptIndex { path, detail } => write!(
                f,
                "spool index {} is corrupt ({detail}). Stop the agent, move the file aside \
                 (e.g. rename it to index.redb.corrupt) and restart: a fresh index will be \
                 created; the data files in data/ can be re-read from Kafka",
                path.display()
            ),
            SpoolError::ReadOnly { path } => {
                write!(f, "spool {} is open read-only (the process that has it open changes it)", path.display())
            }
            SpoolError::Locked { path } => {
                write!(f, "spool {} is already open (by another process, or another Spool in this one)", path.display())
            }
            SpoolError::Corrupt { id, reason } => {
                write!(f, "spool file {id:020} is corrupt: {reason}")
            }
            SpoolError::NotFound { id } => write!(f, "spool file {id:020} is not in the index"),
            SpoolError::WrongState { id, state, operation } => {
                write!(f, "spool file {id:020}: cannot {operation} a file in state {state:?}")
            }
            SpoolError::CommitNotFound { commit_id } => {
                write!(f, "no pending commit with id {commit_id:?}")
            }
            SpoolError::CommitConflict { commit_id, detail } => {
                write!(f, "cannot begin commit {commit_id:?}: {detail}")
            }
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } | SpoolError::Full { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl SpoolError {
    /// True when the error means "no space left": [`SpoolError::Full`], or an I/O error whose
    /// kind is `StorageFull` / `QuotaExceeded` (ENOSPC / EDQUOT). The caller should pause
    /// fetching rather than treat it as fatal.
    pub fn is_full(&self) -> bool {
        match self {
            SpoolError::Full { .. } => true,
            SpoolError::Io { source, .. } => is_full_io(source),
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_full_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// `map_err` adapter for I/O errors: `.map_err(io(format!("rename {a} to {b}")))`. A full disk
/// becomes [`SpoolError::Full`].
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SpoolError {
    move |source| {
        let context = context.into();
        if is_full_io(&source) { SpoolError::Full { context, source } } else { SpoolError::Io { context, source } }
    }
}

/// `map_err` adapter for redb errors. They have no common type worth matching on, except a
/// full disk under redb (its file grows sparsely, so a commit can hit ENOSPC when it writes new
/// pages), which becomes [`SpoolError::Full`].
pub(crate) fn idx<E: Into<redb::Error>>(context: impl Into<String>) -> impl FnOnce(E) -> SpoolError {
    move |e| match e.into() {
        redb::Error::Io(source) if is_full_io(&source) => {
            SpoolError::Full { context: format!("index: {}", context.into()), source }
        }
        other => SpoolError::Index { context: context.into(), detail: other.to_string() },
    }
}
