//! Snapshots: the [`Snapshotter`] contract (containerd's shape: prepare/view/commit/remove, returning
//! mount specs), the mount step that turns specs into mounts, and the overlay2-shaped implementation
//! ([`OverlaySnapshotter`]: diff/work/link/lower per layer).
//!
//! See [`overlay`] for the on-disk layout and crash-safety rules.

pub mod api;
mod copy;
pub mod driver;
pub mod error;
mod ids;
pub mod mounted;
pub mod namespace;
pub mod overlay;

pub use api::{Active, MountSpec, Snapshotter};
pub use driver::{Driver, SNAPSHOTTER_ENV};
pub use error::SnapshotError;
pub use mounted::{mount, mount_fresh, Mounted};
pub use namespace::enter_private_mount_namespace;
pub use overlay::{OverlaySnapshotter, Snapshot};
