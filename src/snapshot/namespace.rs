//! rbuild's private mount namespace.

use crate::snapshot::error::SnapshotError;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Moves the process into a new mount namespace with every mount private, so overlay mounts
/// made by rbuild never show on the host and vanish when rbuild exits, even on `kill -9`.
///
/// Must be called before any thread exists: `unshare(CLONE_NEWNS)` fails with EINVAL in a
/// multi-threaded process.
pub fn enter_private_mount_namespace() -> Result<(), SnapshotError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| SnapshotError::Namespace(e.into()))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SnapshotError::Namespace(e.into()))
}
