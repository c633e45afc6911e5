//! File operations on snapshots: a COPY/ADD applied to an active snapshot.
//!
//! The copy itself is `context::copy`; this module decides where it writes. When nothing the
//! copy can touch exists in the parents, it writes straight into the snapshot's upper dir (the
//! fast path: no overlay lookups in every lower layer, and `copy_file_range` between files of
//! one file system); otherwise it mounts the snapshot's read-write view (the mount step of
//! `snapshot`) and copies into that.

use crate::context::{self, ContextError, CopyEnv, CopyRequest, CopyStats, Resolution};
use crate::snapshot::{Active, SnapshotError, Snapshotter};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    #[error(transparent)]
    Copy(#[from] ContextError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Where a file operation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The snapshot's upper dir, unmounted.
    Upper,
    /// The mounted read-write view, on a fresh mount point under `mount_dir`.
    Mounted,
}

/// Runs `req` against active snapshot `active`, writing the sources as `resolution` found them
/// (the resolution the cache key was computed from).
pub fn apply_copy(
    snapshots: &dyn Snapshotter,
    active: &Active,
    target: Target,
    mount_dir: &Path,
    (req, resolution): (&CopyRequest, &Resolution),
    env: &CopyEnv,
) -> Result<CopyStats, FileOpError> {
    match target {
        Target::Upper => {
            let upper = snapshots.upper_dir(&active.key)?;
            Ok(context::copy_resolved(req, resolution, &upper, env)?)
        }
        Target::Mounted => {
            let root = crate::snapshot::mount_fresh(&active.mounts, mount_dir)?;
            let stats = context::copy_resolved(req, resolution, root.path(), env)?;
            root.unmount()?;
            Ok(stats)
        }
    }
}

/// Where a COPY may write: the upper dir when its destination's top-level component exists in
/// no parent (`parents`: the snapshot keys below, any order), not even as a whiteout. Then
/// everything it writes lands under a directory or file that only the new layer has, and
/// overlayfs would store exactly the same entries in the upper dir. The kernel refuses
/// `copy_file_range` across the overlay and ext4 superblocks (std then falls back to sendfile),
/// so this also makes the data copy cheaper. ADD (archives can hold symlinks leading elsewhere
/// in the image) and `--chown` (names are looked up in the image's /etc/passwd) need the merged
/// view, and so does a destination of `/` itself.
pub fn choose_target(
    snapshots: &dyn Snapshotter,
    parents: &[&str],
    req: &CopyRequest,
    needs_merged_view: bool,
) -> Target {
    if parents.is_empty() {
        // With no parent the merged view shows only the upper dir anyway.
        return Target::Upper;
    }
    if needs_merged_view {
        return Target::Mounted;
    }
    let (dest, _) = context::copy::dest_path(&req.dest, &req.workdir);
    let Some(top) = dest.split('/').find(|s| !s.is_empty()) else {
        return Target::Mounted;
    };
    let absent_everywhere = parents.iter().all(|p| {
        snapshots.upper_dir(p).is_ok_and(|upper| {
            matches!(
                std::fs::symlink_metadata(upper.join(top)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            )
        })
    });
    if absent_everywhere {
        Target::Upper
    } else {
        Target::Mounted
    }
}
