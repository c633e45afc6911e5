//! Build errors. Step failures name the Dockerfile, the line and show its text.

use std::path::{Path, PathBuf};

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Parse(#[source] crate::dockerfile::ParseError),
    #[error("{0}")]
    Plan(#[source] crate::plan::PlanError),
    /// A step failed: `Dockerfile:7: COPY failed: ...` followed by the line itself.
    #[error("{file}:{line}: {message}\n  {line} | {text}")]
    Step {
        file: PathBuf,
        line: usize,
        text: String,
        message: String,
        /// For RUN failures: the command's exit code, which rbuild exits with.
        exit_code: Option<i32>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[source] Source),
    #[error("snapshot: {0}")]
    Snapshot(#[source] Source),
    #[error("{0}")]
    Context(#[source] Source),
    #[error("{0}")]
    Layer(#[source] Source),
    #[error("{0}")]
    Export(#[source] Source),
    #[error("{0}")]
    Usage(String),
    #[error("interrupted")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuildError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn store(e: impl Into<Source>) -> Self {
        BuildError::Store(e.into())
    }
    pub fn snapshot(e: impl Into<Source>) -> Self {
        BuildError::Snapshot(e.into())
    }
    pub fn context(e: impl Into<Source>) -> Self {
        BuildError::Context(e.into())
    }
    pub fn layer(e: impl Into<Source>) -> Self {
        BuildError::Layer(e.into())
    }
    pub fn export(e: impl Into<Source>) -> Self {
        BuildError::Export(e.into())
    }

    /// The process exit code for this error: a failing RUN passes its own code through.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Step {
                exit_code: Some(c), ..
            } if *c > 0 && *c < 256 => *c,
            BuildError::Interrupted => 130,
            _ => 1,
        }
    }
}
