//! The one error type of the `snapshot` module.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid snapshot id {0:?}: expected 64 lowercase hex digits")]
    InvalidId(String),
    #[error("snapshot {0} does not exist")]
    NotFound(String),
    #[error("snapshot {id} is the parent of snapshot {child}")]
    InUse { id: String, child: String },
    #[error("{path}: corrupt snapshot metadata: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("mounting overlay on {target} (options {options:?}): {source}")]
    Mount {
        target: PathBuf,
        options: String,
        #[source]
        source: io::Error,
    },
    #[error("overlay options for {target} are {len} bytes, over the one-page limit")]
    OptionsTooLong { target: PathBuf, len: usize },
    /// A snapshotter that cannot work here; the message names the fix.
    #[error("{0}")]
    Unsupported(String),
    #[error("entering a private mount namespace: {0}")]
    Namespace(#[source] io::Error),
}

impl SnapshotError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        SnapshotError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
