//! Overlay2-shaped snapshots: diff/work/merged/link/lower per layer, overlay mounts.
//!
//! See [`snapshotter`] for the on-disk layout and crash-safety rules.

pub mod error;
mod ids;
pub mod mounted;
pub mod namespace;
pub mod snapshotter;

pub use error::SnapshotError;
pub use mounted::Mounted;
pub use namespace::enter_private_mount_namespace;
pub use snapshotter::{Snapshot, Snapshotter};
