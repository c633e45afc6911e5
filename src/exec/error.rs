//! Errors of the RUN executor.

use std::path::PathBuf;

/// Everything that can go wrong running a RUN step (the command's own non-zero exit is
/// not an error: it is reported in `RunOutcome`).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid RUN spec: {0}")]
    InvalidSpec(String),

    #[error("user {user:?} not found in {rootfs}/etc/passwd")]
    UserNotFound { user: String, rootfs: PathBuf },

    #[error("group {group:?} not found in {rootfs}/etc/group")]
    GroupNotFound { group: String, rootfs: PathBuf },

    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },

    #[error("{path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: pathrs::error::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start the RUN helper {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Setting up the container or starting the command failed (reported from inside).
    #[error("RUN setup failed: {0}")]
    Setup(String),

    #[error("RUN was interrupted; the container was killed")]
    Interrupted,

    #[error("RUN helper failed: {0}")]
    Helper(String),

    /// Creating, joining or removing the RUN's cgroup failed.
    #[error("RUN cgroup: {0}")]
    Cgroup(String),

    /// The command failed and the kernel reports that a resource limit stopped it; the text
    /// names the limit and its flag.
    #[error("{0}")]
    LimitExceeded(String),
    /// `Network::Default` without slirp4netns or pasta: never a silent fallback to the host.
    #[error(
        "RUN --network=default needs slirp4netns or pasta: install the Debian package \
         slirp4netns (or passt), or build with --network none"
    )]
    NoUserNet,

    #[error("RUN network: {0}")]
    UserNet(String),
}

impl ExecError {
    pub(crate) fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        ExecError::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    pub(crate) fn path(path: impl Into<PathBuf>, source: pathrs::error::Error) -> Self {
        ExecError::Path {
            path: path.into(),
            source,
        }
    }
}
