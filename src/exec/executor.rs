//! The executor contract: runs one exec operation over a root file system given as mount specs.
//!
//! The solver hands an [`Executor`] the snapshot's [`MountSpec`]s, not a mounted path: an executor
//! decides where (and whether) the root is mounted, so one that runs elsewhere (a VM, a remote
//! machine, a user namespace) fits behind the same call. docs/ARCHITECTURE.md says how.

use crate::exec::{run_with, ExecConfig, ExecError, RunOutcome, RunSpec, Stream};
use crate::snapshot::{mount_fresh, MountSpec};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Runs exec operations.
pub trait Executor: Send + Sync {
    /// Runs `spec` with the root file system `rootfs` describes, mounted writable for the run
    /// (`spec.rootfs` is the executor's to fill in). Output chunks go to `output` as they come;
    /// setting `cancel` kills the process and returns [`ExecError::Interrupted`].
    fn run(
        &self,
        rootfs: &[MountSpec],
        spec: &RunSpec,
        cancel: Option<Arc<AtomicBool>>,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<RunOutcome, ExecError>;
}

/// The executor rbuild uses: Linux namespaces on this host (`exec::run_with`), the root mounted
/// on a fresh directory under `mount_dir` for the run.
#[derive(Debug, Clone)]
pub struct NamespaceExecutor {
    pub mount_dir: PathBuf,
    pub helper_exe: PathBuf,
}

impl NamespaceExecutor {
    pub fn new(mount_dir: PathBuf) -> Self {
        NamespaceExecutor {
            mount_dir,
            helper_exe: ExecConfig::default().helper_exe,
        }
    }
}

impl Executor for NamespaceExecutor {
    fn run(
        &self,
        rootfs: &[MountSpec],
        spec: &RunSpec,
        cancel: Option<Arc<AtomicBool>>,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<RunOutcome, ExecError> {
        let root = mount_fresh(rootfs, &self.mount_dir)
            .map_err(|e| ExecError::Setup(format!("mounting the root file system: {e}")))?;
        let mut spec = spec.clone();
        spec.rootfs = root.path().to_path_buf();
        let config = ExecConfig {
            helper_exe: self.helper_exe.clone(),
            cancel,
        };
        let outcome = run_with(&spec, &config, output);
        root.unmount()
            .map_err(|e| ExecError::Setup(format!("unmounting the root file system: {e}")))?;
        outcome
    }
}
