//! What `run` and its re-executed helper say to each other.
//!
//! The request goes to the helper's stdin as one JSON document. Status lines (JSON, one
//! per line) come back on fd 3, a pipe separate from the container's stdout/stderr so the
//! command's output can never be mistaken for a status.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::spec::{RunOutcome, RunSpec};
use super::usernet::UserNet;

/// argv[1] that turns the rbuild binary into the RUN helper.
pub const HELPER_ARG: &str = "__rbuild-exec";

/// The fd number on which the helper reports `Status` lines.
pub(crate) const STATUS_FD: i32 = 3;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperRequest {
    pub spec: RunSpec,
    /// Resolved by the parent from the image's /etc/passwd and /etc/group.
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Ulimits and the /dev/shm size for the container init.
    pub resources: crate::exec::cgroup_limits::Resources,
    /// `cgroup.procs` files of the RUN's cgroups; the helper joins them before forking.
    pub cgroups: Vec<std::path::PathBuf>,
    /// The network stack to start for `Network::Default` (found by rbuild, which has `PATH`).
    pub usernet: Option<UserNet>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Status {
    /// From the container init before `execve` (mounts, user, command not found ...).
    SetupError(String),
    /// From the helper: how the container's PID 1 ended.
    Exited(RunOutcome),
    /// The helper got SIGINT/SIGTERM/SIGHUP and killed the container.
    Interrupted,
    /// The helper itself failed before the container ran.
    HelperError(String),
}

/// The write end of the status pipe.
pub(crate) struct StatusPipe(File);

impl StatusPipe {
    pub fn new(fd: OwnedFd) -> Self {
        StatusPipe(File::from(fd))
    }

    /// Best effort: if the parent is gone there is nobody to tell.
    pub fn send(&self, status: &Status) {
        if let Ok(mut line) = serde_json::to_vec(status) {
            line.push(b'\n');
            let _ = (&self.0).write_all(&line);
        }
    }
}

/// Reads the status lines: a setup error wins over everything else, since the helper's
/// own `Exited` report then only describes the failed init.
pub(crate) fn parse_statuses(text: &str) -> Vec<Status> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
