//! The context module's error type. Messages name the path, URL or flag involved; the integrator
//! prefixes the Dockerfile line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A contained (in-root) path operation failed.
    #[error("{path}: {reason}")]
    InRoot { path: String, reason: String },
    #[error("{file}: {source}")]
    IgnorePattern {
        file: PathBuf,
        #[source]
        source: super::ignore::PatternError,
    },
    #[error("invalid --exclude pattern: {0}")]
    ExcludePattern(#[source] super::ignore::PatternError),
    #[error("invalid source pattern {0:?}: syntax error in pattern")]
    SourcePattern(String),
    /// A source file changed between its resolution (what the cache key was computed from) and
    /// the end of its copy or hashing.
    #[error("{0}: changed while the build was reading it; its content no longer matches the cache key (re-run the build once the file is stable)")]
    SourceChanged(std::path::PathBuf),
    #[error("{0:?}: not found (or excluded by .dockerignore)")]
    NotFound(String),
    #[error("{0:?}: forbidden path outside the build context")]
    OutsideContext(String),
    #[error(
        "when using {cmd} with more than one source file, the destination must be a directory and end with a / (destination {dest:?}, {count} sources)"
    )]
    MultipleSourcesNeedDir {
        cmd: &'static str,
        dest: String,
        count: usize,
    },
    #[error(
        "cannot copy directory {src:?} to {dest:?}: destination exists and is not a directory"
    )]
    NotADirectory { src: String, dest: String },
    #[error("cannot replace directory {dest:?} with a file from {src:?}")]
    DirectoryInTheWay { src: String, dest: String },
    #[error("invalid --chown {spec:?}: {reason}")]
    Chown { spec: String, reason: String },
    #[error("invalid --chmod {spec:?}: {reason}")]
    Chmod { spec: String, reason: String },
    #[error("invalid --checksum {0:?}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("downloading {url}: larger than the limit of {limit} bytes")]
    DownloadTooLarge { url: String, limit: u64 },
    #[error("git source {remote}: {reason}")]
    Git { remote: String, reason: String },
    #[error("extracting {path}: {reason}")]
    Extract { path: PathBuf, reason: String },
    /// Flags or sources that the instruction does not allow (URL in COPY, checksum on COPY, ...).
    #[error("{0}")]
    Usage(String),
    #[error("build context tar: {0}")]
    ContextTar(String),
    #[error("interrupted")]
    Cancelled(#[from] crate::cancel::Cancelled),
    #[error("hash cache {path}: {reason}")]
    HashCache { path: PathBuf, reason: String },
}

impl ContextError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContextError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn in_root(path: impl Into<String>, reason: impl ToString) -> Self {
        ContextError::InRoot {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
