//! The snapshotter contract, in containerd's shape: a snapshotter prepares, views, commits and
//! removes snapshots and says *how* to mount them ([`MountSpec`]); it never mounts. The mount step
//! ([`crate::snapshot::mounted::mount`]) turns specs into mounts. docs/ARCHITECTURE.md says how other
//! snapshotters (user namespace, fuse-overlayfs) plug in here.

use crate::snapshot::SnapshotError;
use std::path::PathBuf;

/// One mount to make, as containerd's `mount.Mount`: a file system type, a source and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// `overlay`, `bind`, `fuse.fuse-overlayfs`, ...
    pub fstype: String,
    pub source: String,
    /// Comma-separated in the mount call; `ro` makes the mount read-only, `bind`/`rbind` bind it.
    pub options: Vec<String>,
    /// The directory that relative paths in `options` are relative to. Overlay2 uses short
    /// relative `l/` links so that 100+ layers fit the kernel's one-page option limit.
    pub base: Option<PathBuf>,
}

/// A writable snapshot just prepared: its key and how to mount its read-write view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub key: String,
    pub mounts: Vec<MountSpec>,
}

/// Snapshots of layered file systems, keyed by opaque strings (the layer records' cache-ids).
///
/// Every key handed out by [`Snapshotter::prepare`] is either committed or removed by the caller.
pub trait Snapshotter: Send + Sync {
    /// A new active snapshot on top of committed `parent` (or of nothing).
    fn prepare(&self, parent: Option<&str>) -> Result<Active, SnapshotError>;

    /// The mounts of a read-only view of committed snapshot `key` and its parents.
    fn view(&self, key: &str) -> Result<Vec<MountSpec>, SnapshotError>;

    /// The directory holding only `key`'s own changes, deletions as overlay whiteouts: what the
    /// layer differ walks, where layers are unpacked, and where a write that touches nothing of
    /// the parents may go directly (no mount needed).
    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError>;

    /// Seals active snapshot `key`: from now on it is read-only and may be a parent.
    fn commit(&self, key: &str) -> Result<(), SnapshotError>;

    /// Deletes snapshot `key` (refused while another snapshot builds on it).
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;

    /// Drops a complete snapshot that duplicates a committed one. Snapshotters that can defer
    /// the deletion (overlay2 sets it aside for `prune`) override this.
    fn discard(&self, key: &str) -> Result<(), SnapshotError> {
        self.remove(key)
    }
}
