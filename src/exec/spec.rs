//! What a RUN step executes: the request (`RunSpec`), its mounts, and the outcome.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cgroup_limits::Resources;

/// One RUN step to execute in a fresh set of namespaces over `rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The snapshot's merged dir, already mounted writable by the caller.
    pub rootfs: PathBuf,
    /// Final argv (the caller already prepended SHELL for the shell form).
    pub argv: Vec<String>,
    /// `K=V` entries: exactly the environment the process gets (nothing from the host).
    pub env: Vec<String>,
    /// USER: `name`, `uid`, `name:group`, `uid:gid`; `None` runs as root.
    pub user: Option<String>,
    /// Absolute working directory, created (0755, root) if missing.
    pub workdir: String,
    pub hostname: String,
    pub network: Network,
    /// Extra mounts for `RUN --mount`, applied in order after the system mounts.
    pub mounts: Vec<Mount>,
    /// `--add-host` entries `(hostname, ip)` appended to `/etc/hosts`.
    pub extra_hosts: Vec<(String, String)>,
}

/// Network namespace choice for a RUN step (README "Network modes").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// A new network namespace with outbound TCP/UDP/DNS through a user-mode stack
    /// (slirp4netns or pasta, `usernet`); the host's loopback and abstract sockets are out of reach.
    #[default]
    Default,
    /// Share the host's network namespace (an explicit opt-in).
    Host,
    /// A new, empty network namespace with only `lo` up.
    None,
}

impl std::str::FromStr for Network {
    type Err = String;

    /// Docker's names: `default`, `host`, `none`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Network::Default),
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => Err(format!(
                "unsupported network mode {other:?} (default, host or none)"
            )),
        }
    }
}

/// One `RUN --mount` mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container; resolved inside the rootfs.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Bind a host path the caller prepared (and already confined) onto `target`; always
    /// nosuid and nodev (cache mounts are binds too).
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs (nosuid, nodev); `size` in bytes, `DEFAULT_TMPFS_SIZE` when `None`.
    Tmpfs { size: Option<u64> },
    /// A read-only file at `target` holding a copy of `source`, owned `uid:gid` with `mode`.
    Secret {
        source: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// Which of the process's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the RUN command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The exit status, or `128 + signal` when killed by a signal (shell convention).
    pub exit_code: i32,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none()
    }
}

/// How `run_with` starts its helper; `run` uses `ExecConfig::default()`.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// An executable whose `main` calls `exec::helper_main_if_requested()` first.
    /// Default `/proc/self/exe` (the running rbuild).
    pub helper_exe: PathBuf,
    /// When set to `true` while running, the container is killed and `run` returns
    /// `ExecError::Interrupted`. The CLI sets it from its SIGINT/SIGTERM handler.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Resource limits (cgroup, ulimits, /dev/shm size) of the RUN.
    pub resources: Resources,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            helper_exe: PathBuf::from("/proc/self/exe"),
            cancel: None,
            resources: Resources::default(),
        }
    }
}
