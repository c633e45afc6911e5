//! RUN: executes a command in Linux namespaces over a snapshot.
//!
//! `run` (in rbuild, multi-threaded) re-executes the rbuild binary as a single-threaded
//! helper (`helper_main_if_requested`, called first in `main`). The helper unshares
//! mount/pid/uts/ipc namespaces, and net unless `Network::Host` (for
//! `Network::Default` it starts slirp4netns or pasta first, `usernet`), and forks the container's
//! PID 1, which builds the filesystem view (`rootfs`), drops privileges and execs the
//! command. Mount points missing from the image are stubbed for the run and removed
//! afterwards (`stubs`), so they never reach the layer.
//!
//! Integration: `main()` must call `helper_main_if_requested()` before anything else
//! (before threads, before the CLI's own `unshare`); `src/main.rs` does. The CLI's
//! SIGINT/SIGTERM handler sets the build's cancel flag, which `solve/` passes as
//! `ExecConfig::cancel`; a terminal's Ctrl-C also reaches the helper directly, which kills the
//! container and reports `Interrupted`.

mod cgroup;
mod cgroup_bpf;
mod cgroup_cleanup;
mod cgroup_limits;
mod cgroup_rootless;
mod container;
mod devices;
pub mod emulation;
mod error;
mod etc_files;
pub mod executor;
mod fdmount;
mod helper;
mod launch;
mod netns;
mod privileges;
mod protocol;
mod rootfs;
mod runner;
mod sealed_exe;
mod seccomp;
mod secret;
mod spec;
mod stubs;
mod user;
mod usernet;

pub use cgroup::sweep_stale as sweep_stale_cgroups;
pub use cgroup_limits::{
    parse_size, Resources, Ulimit, DEFAULT_PIDS_LIMIT, DEFAULT_SHM_SIZE, DEFAULT_TMPFS_SIZE,
};
pub use cgroup_rootless::rootless_note_if_unlimited as rootless_cgroup_note;
pub use emulation::EmulatedExecutor;
pub use error::ExecError;
pub use executor::{Executor, NamespaceExecutor};
pub use helper::helper_main_if_requested;
pub use netns::host_gateway_ip;
pub use privileges::DOCKER_DEFAULT_CAPS;
pub use protocol::HELPER_ARG;
pub use runner::{run, run_with};
pub use secret::{read_secret, MAX_SECRET};
pub use spec::{ExecConfig, Mount, MountKind, Network, RunOutcome, RunSpec, Stream};
pub use user::{resolve_chown, resolve_group, resolve_user};
pub use usernet::{find_usernet, UserNet, UserNetKind, USERNET_ENV};
