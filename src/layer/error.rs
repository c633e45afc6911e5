//! The one error type of the `layer` module.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("walking {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("writing layer stream: {0}")]
    Write(#[source] io::Error),
    #[error("reading layer stream: {0}")]
    Read(#[source] io::Error),
    /// redirect_dir / metacopy entries keep data outside the upper dir; rbuild mounts with them off.
    #[error(
        "{path}: overlay xattr {name} is not supported (mount with redirect_dir=off,metacopy=off)"
    )]
    OverlayFeature { path: PathBuf, name: String },
    #[error("tar entry {name:?}: path escapes the extraction root")]
    Escape { name: String },
    #[error("tar entry {name:?}: invalid whiteout")]
    InvalidWhiteout { name: String },
    #[error("tar entry {name:?}: hardlink target {target:?} escapes the extraction root")]
    HardlinkEscape { name: String, target: String },
    #[error("tar entry {name:?}: truncated archive ({got} of {want} data bytes)")]
    Truncated { name: String, got: u64, want: u64 },
    #[error("layer exceeds the size cap of {cap} bytes")]
    SizeCap { cap: u64 },
    /// An archive bomb: see `layer::limits`.
    #[error("the archive {why}, at tar entry {entry:?}")]
    TooLarge {
        entry: String,
        why: crate::layer::limits::Exceeded,
    },
    #[error("tar entry {name:?}: unsupported entry type {kind:?}")]
    Unsupported { name: String, kind: tar::EntryType },
    #[error("tar entry {name:?}: {op}: {source}")]
    Entry {
        name: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {name:?}: {op} inside root {root}: {source}")]
    Resolve {
        name: String,
        op: &'static str,
        root: PathBuf,
        #[source]
        source: pathrs::error::Error,
    },
}

impl LayerError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        LayerError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn entry(name: &str, op: &'static str, source: impl Into<io::Error>) -> Self {
        LayerError::Entry {
            name: name.to_string(),
            op,
            source: source.into(),
        }
    }
}
